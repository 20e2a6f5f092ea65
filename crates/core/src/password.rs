//! Password hashing on a bounded blocking pool, and the password policy.
//!
//! Hashing never runs on the async executor: it runs on a dedicated pool of threads sized from
//! `dedicated_memory ÷ m_cost` and the core count, so at most that many hashes (and that much
//! memory) are in flight. The pool's threads run at a lower scheduling priority (nice ≈ 10,
//! SCHED_BATCH), so during a login flood the executor threads that answer session checks still
//! get the CPU first; hashing takes whatever is left, which is all of it when nothing else
//! runs. An unknown account is verified against a dummy hash of the same parameters, so a login
//! costs the same whether or not the identifier exists.

use crate::config::{HasherAlgorithm, HashersConfig, PasswordPolicyConfig};
use crate::ui::{msg, UiText};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Internal(String),
    #[error("unsupported password hash format; expected $argon2id$, $argon2i$ or bcrypt ($2a$, $2b$, $2y$)")]
    UnsupportedFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash is of another algorithm or weaker parameters than configured.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce(&Inner) + Send>;

#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
    jobs: mpsc::Sender<Job>,
}

struct Inner {
    algorithm: HasherAlgorithm,
    params: Params,
    bcrypt_cost: u32,
    pool_size: usize,
    /// Made on the pool right after start-up (not before the server is ready).
    dummy: std::sync::OnceLock<String>,
}

impl Hasher {
    pub fn new(cfg: &HashersConfig) -> Result<Self, HashError> {
        let a = &cfg.argon2;
        let m_kib = u32::try_from(a.memory.0 / 1024)
            .map_err(|_| HashError::Internal("argon2 memory too large".into()))?;
        let params = Params::new(m_kib, a.iterations, a.parallelism, None)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let by_memory = (a.dedicated_memory.0 / a.memory.0.max(1)).max(1) as usize;
        let pool_size = cores.min(by_memory).max(1);
        let inner = Inner {
            algorithm: cfg.algorithm,
            params,
            bcrypt_cost: cfg.bcrypt.cost,
            pool_size,
            dummy: std::sync::OnceLock::new(),
        };
        let inner = Arc::new(inner);
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..pool_size {
            let (inner, rx) = (inner.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("portcullis-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The workers exit when every `Hasher` clone (every sender) is gone.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&inner),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Internal(format!("cannot start hashing thread: {e}")))?;
        }
        // The dummy hash is the pool's first job, so start-up does not wait for it.
        let _ = jobs.send(Box::new(|inner: &Inner| {
            inner.dummy();
        }));
        Ok(Hasher { inner, jobs })
    }

    pub fn pool_size(&self) -> usize {
        self.inner.pool_size
    }

    /// The longest password (in bytes) the configured algorithm hashes without truncating.
    pub fn max_password_bytes(&self) -> Option<usize> {
        (self.inner.algorithm == HasherAlgorithm::Bcrypt).then_some(72)
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move |inner| inner.hash_blocking(&password)).await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is none.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<Verified, HashError> {
        self.run(move |inner| match hash {
            Some(h) => inner.verify_blocking(&password, &h),
            None => {
                let _ = inner.verify_blocking(&password, inner.dummy());
                Ok(Verified {
                    ok: false,
                    needs_rehash: false,
                })
            }
        })
        .await
    }

    /// Checks that an imported hash is in a format we can verify.
    pub fn check_importable(hash: &str) -> Result<(), HashError> {
        if is_bcrypt(hash) {
            return hash
                .parse::<bcrypt::HashParts>()
                .map(|_| ())
                .map_err(|_| HashError::UnsupportedFormat);
        }
        if hash.starts_with("$argon2id$") || hash.starts_with("$argon2i$") {
            let parsed = PasswordHash::new(hash).map_err(|_| HashError::UnsupportedFormat)?;
            return argon2_params_bounded(&parsed)
                .then_some(())
                .ok_or(HashError::UnsupportedFormat);
        }
        Err(HashError::UnsupportedFormat)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |inner| {
            let _ = tx.send(f(inner));
        });
        self.jobs
            .send(job)
            .map_err(|_| HashError::Internal("the hashing pool has stopped".into()))?;
        rx.await
            .map_err(|_| HashError::Internal("a hashing thread died".into()))?
    }
}

/// Best effort: a failure (e.g. a platform without niceness) leaves the default priority.
fn lower_priority() {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    let Ok(value) = ThreadPriorityValue::try_from(25u8) else {
        return;
    };
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        policy,
    ) {
        tracing::debug!(error = ?e, "could not lower the hashing threads' priority");
    }
}

fn is_bcrypt(h: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| h.starts_with(p))
}

impl Inner {
    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            self.hash_blocking("portcullis-dummy-password-for-timing")
                .unwrap_or_default()
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_blocking(&self, password: &str) -> Result<String, HashError> {
        if self.algorithm == HasherAlgorithm::Bcrypt {
            return bcrypt::hash(password, self.bcrypt_cost)
                .map_err(|e| HashError::Internal(e.to_string()));
        }
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError::Internal(e.to_string()))
    }

    fn verify_blocking(&self, password: &str, hash: &str) -> Result<Verified, HashError> {
        if is_bcrypt(hash) {
            // bcrypt only looks at the first 72 bytes; refuse longer inputs rather than truncate silently.
            if password.len() > 72 {
                return Ok(Verified {
                    ok: false,
                    needs_rehash: false,
                });
            }
            let ok = bcrypt::verify(password, hash).unwrap_or(false);
            let cost_ok = hash
                .parse::<bcrypt::HashParts>()
                .map(|p| p.get_cost() >= self.bcrypt_cost)
                .unwrap_or(false);
            return Ok(Verified {
                ok,
                needs_rehash: ok && (self.algorithm != HasherAlgorithm::Bcrypt || !cost_ok),
            });
        }
        let Ok(parsed) = PasswordHash::new(hash) else {
            tracing::warn!("stored password hash is not in a supported format; the login fails");
            return Ok(Verified {
                ok: false,
                needs_rehash: false,
            });
        };
        if !argon2_params_bounded(&parsed) {
            tracing::warn!(
                "stored argon2 hash has parameters beyond the allowed bounds; the login fails"
            );
            return Ok(Verified {
                ok: false,
                needs_rehash: false,
            });
        }
        let m = parsed.params.get_decimal("m").unwrap_or(0);
        // Verification uses the parameters embedded in the hash (PHC string).
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        let same = parsed.algorithm.as_str() == "argon2id"
            && m == self.params.m_cost()
            && parsed.params.get_decimal("t") == Some(self.params.t_cost())
            && parsed.params.get_decimal("p") == Some(self.params.p_cost());
        Ok(Verified {
            ok,
            needs_rehash: ok && (self.algorithm != HasherAlgorithm::Argon2 || !same),
        })
    }
}

/// Imported Argon2 hashes must stay within bounds so one login cannot take the machine:
/// memory ≤ 1 GiB (as Kratos), iterations ≤ 32, parallelism ≤ 16.
fn argon2_params_bounded(h: &PasswordHash<'_>) -> bool {
    let get = |k| h.params.get_decimal(k);
    matches!((get("m"), get("t"), get("p")), (Some(m), Some(t), Some(p)) if m <= 1 << 20 && (1..=32).contains(&t) && (1..=16).contains(&p))
}

/// Checks a new password against the policy; returns the first violation.
pub fn check_policy(
    password: &str,
    identifiers: &[String],
    cfg: &PasswordPolicyConfig,
) -> Option<UiText> {
    let len = password.chars().count();
    if len < cfg.min_password_length {
        return Some(msg::password_min_length(cfg.min_password_length, len));
    }
    if len > cfg.max_password_length {
        return Some(msg::password_max_length(cfg.max_password_length, len));
    }
    if cfg.identifier_similarity_check_enabled
        && identifiers.iter().any(|id| too_similar(id, password))
    {
        return Some(msg::password_too_similar());
    }
    if cfg.common_password_check_enabled && is_common(password) {
        return Some(msg::password_breached());
    }
    None
}

/// True when most of the password is the identifier (or the part of an email before `@`).
fn too_similar(identifier: &str, password: &str) -> bool {
    let id = identifier.to_lowercase();
    let pw = password.to_lowercase();
    let local = id.split('@').next().unwrap_or(&id).to_string();
    [id.as_str(), local.as_str()].iter().any(|cand| {
        if cand.len() < 3 {
            return false;
        }
        if pw == *cand {
            return true;
        }
        let lcs = longest_common_substring(cand, &pw);
        lcs * 2 >= pw.chars().count() && lcs >= 4
    })
}

fn longest_common_substring(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev = vec![0usize; b.len() + 1];
    let mut best = 0;
    for i in 1..=a.len() {
        let mut cur = vec![0usize; b.len() + 1];
        for j in 1..=b.len() {
            if a[i - 1] == b[j - 1] {
                cur[j] = prev[j - 1] + 1;
                best = best.max(cur[j]);
            }
        }
        prev = cur;
    }
    best
}

/// True when the whole password is one entry of zxcvbn's bundled list of the most common
/// (breached) passwords, ignoring case, l33t substitutions and reversal.
fn is_common(password: &str) -> bool {
    use zxcvbn::matching::patterns::MatchPattern;
    use zxcvbn::matching::Match;
    // zxcvbn's cost grows with length; a long password is never a whole-list entry.
    if password.chars().count() > 64 {
        return false;
    }
    let entropy = zxcvbn::zxcvbn(password, &[]);
    let seq: &[Match] = entropy.sequence();
    seq.len() == 1
        && matches!(&seq[0].pattern, MatchPattern::Dictionary(d)
            // zxcvbn does not export `DictionaryType`; its default variant is `Passwords`.
            if d.dictionary_name == Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cheap() -> HashersConfig {
        let mut c = Config::default().hashers;
        c.argon2.memory = crate::config::ByteSize(64 * 1024);
        c.argon2.iterations = 1;
        c
    }

    #[tokio::test]
    async fn argon2id_round_trip_and_wrong_password() {
        let h = Hasher::new(&cheap()).unwrap();
        let hash = h.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(
            h.verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
                .ok
        );
        assert!(!h.verify("wrong".into(), Some(hash)).await.unwrap().ok);
        assert!(!h.verify("anything".into(), None).await.unwrap().ok);
    }

    #[tokio::test]
    async fn bcrypt_and_weaker_argon2_hashes_verify_and_ask_for_rehash() {
        let h = Hasher::new(&cheap()).unwrap();
        let bc = bcrypt::hash("imported pass", 4).unwrap();
        let v = h.verify("imported pass".into(), Some(bc)).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        let mut other = cheap();
        other.argon2.iterations = 2;
        let old = Hasher::new(&other)
            .unwrap()
            .hash("some pass".into())
            .await
            .unwrap();
        assert_eq!(
            h.verify("some pass".into(), Some(old)).await.unwrap(),
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        assert!(Hasher::check_importable("plain").is_err());
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(Hasher::check_importable(huge).is_err());
        let v = h.verify("x".into(), Some(huge.into())).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: false,
                needs_rehash: false
            }
        );
        assert!(
            !h.verify("x".into(), Some("$2b$garbage".into()))
                .await
                .unwrap()
                .ok
        );
    }

    #[test]
    fn policy_rejects_short_similar_and_common_passwords() {
        let cfg = PasswordPolicyConfig::default();
        let ids = vec!["ada.lovelace@example.com".to_string()];
        assert_eq!(
            check_policy("short", &ids, &cfg).map(|t| t.id),
            Some(4000032)
        );
        assert_eq!(
            check_policy("ada.lovelace1", &ids, &cfg).map(|t| t.id),
            Some(4000031)
        );
        assert_eq!(
            check_policy("password123", &ids, &cfg).map(|t| t.id),
            Some(4000034)
        );
        assert_eq!(
            check_policy("Password1", &ids, &cfg).map(|t| t.id),
            Some(4000034)
        );
        assert_eq!(
            check_policy(&"x".repeat(1025), &ids, &cfg).map(|t| t.id),
            Some(4000033)
        );
        assert_eq!(check_policy("tangerine violin sleepy", &ids, &cfg), None);
        assert_eq!(
            check_policy(&"long passphrase words ".repeat(3), &ids, &cfg),
            None
        );
    }
}
