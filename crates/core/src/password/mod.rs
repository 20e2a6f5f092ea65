//! Password hashing on a bounded blocking pool, and the password policy.
//!
//! Hashing never runs on the async executor: it runs on a dedicated pool of threads sized from
//! `dedicated_memory ÷ m_cost` and the core count, so at most that many hashes (and that much
//! memory) are in flight. The pool's threads run at a lower scheduling priority (nice ≈ 10,
//! SCHED_BATCH), so during a login flood the executor threads that answer session checks still
//! get the CPU first; hashing takes whatever is left, which is all of it when nothing else
//! runs. An unknown account is verified against a dummy hash of the same parameters, so a login
//! costs the same whether or not the identifier exists.
//!
//! Admission is bounded twice (security review F5): every job holds permits from a budget of
//! `dedicated_memory`, weighted by the memory its hash needs (an imported Argon2 hash at 256 MiB
//! takes 256 MiB of the budget, not one thread's share), and at most [`QUEUE_PER_THREAD`] jobs
//! per thread may wait; beyond that a request fails fast with [`HashError::Busy`] (503 with
//! `Retry-After`) instead of queueing without bound. A failed verification never answers sooner
//! than the slowest verification seen recently (the dummy's cost at least), so an account whose
//! imported hash is cheaper or dearer than ours is not told apart from an unknown one by timing
//! (F8).

use crate::config::{HasherAlgorithm, HashersConfig};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod policy;
pub use policy::check_policy;

/// How many hashing jobs may wait per pool thread before new ones are refused as busy. At the
/// OWASP parameters (about 25 ms a hash) a full queue is under a second of work.
pub const QUEUE_PER_THREAD: usize = 32;
/// The highest bcrypt cost an imported hash may have: cost 14 already takes about 1.5 s per
/// attempt on the reference machine; every step doubles it.
pub const MAX_BCRYPT_COST: u32 = 14;
/// Imported Argon2 bounds: memory ≤ 256 MiB, iterations ≤ 10, parallelism ≤ 16, and memory ×
/// iterations ≤ 1 GiB-pass, so one login costs at most a few hundred milliseconds and 256 MiB.
const ARGON2_MAX_M_KIB: u32 = 256 * 1024;
const ARGON2_MAX_T: u32 = 10;
const ARGON2_MAX_P: u32 = 16;
const ARGON2_MAX_M_TIMES_T_KIB: u64 = 1 << 20;
/// The budget weight of a bcrypt job: bcrypt needs 4 KiB, but every job costs a thread.
const BCRYPT_WEIGHT_KIB: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Internal(String),
    #[error("unsupported password hash format; expected $argon2id$, $argon2i$ or bcrypt ($2a$, $2b$, $2y$) within the allowed cost bounds")]
    UnsupportedFormat,
    /// The hashing queue is full: the caller should answer 503 with `Retry-After`.
    #[error("too many password checks are in progress; retry in a moment")]
    Busy,
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
    admission: Arc<Admission>,
}

struct Inner {
    algorithm: HasherAlgorithm,
    params: Params,
    bcrypt_cost: u32,
    pool_size: usize,
    /// Made on the pool right after start-up (not before the server is ready).
    dummy: std::sync::OnceLock<String>,
}

/// The memory-weighted budget and the bounded wait in front of the pool.
struct Admission {
    /// Permits in KiB of `dedicated_memory`.
    budget: Arc<tokio::sync::Semaphore>,
    budget_kib: u32,
    /// Jobs admitted to wait or run; at most `max_waiting`.
    waiting: AtomicUsize,
    max_waiting: usize,
    /// The slowest verification seen lately, in nanoseconds: failures are padded up to it.
    /// It rises at once and decays by 1/64 per faster verification, so one slow outlier
    /// does not slow logins for long.
    floor_ns: AtomicU64,
}

impl Admission {
    fn observe(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .floor_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |floor| {
                Some(if took >= floor {
                    took
                } else {
                    floor - (floor - took) / 64
                })
            });
    }

    fn floor(&self) -> Duration {
        Duration::from_nanos(self.floor_ns.load(Ordering::Relaxed))
    }
}

/// Leaves the waiting count when the job is done (or given up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
        let budget_kib = u32::try_from(a.dedicated_memory.0 / 1024)
            .unwrap_or(u32::MAX)
            .max(m_kib)
            .min(tokio::sync::Semaphore::MAX_PERMITS as u32);
        let admission = Arc::new(Admission {
            budget: Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
            budget_kib,
            waiting: AtomicUsize::new(0),
            max_waiting: pool_size * QUEUE_PER_THREAD,
            floor_ns: AtomicU64::new(0),
        });
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
        // The dummy hash is the pool's first job, so start-up does not wait for it; timing it
        // seeds the failure floor.
        let seed = admission.clone();
        let _ = jobs.send(Box::new(move |inner: &Inner| {
            let dummy = inner.dummy().to_string();
            let started = Instant::now();
            let _ = inner.verify_blocking("portcullis-dummy-password-for-timing", &dummy);
            seed.observe(started.elapsed());
        }));
        Ok(Hasher {
            inner,
            jobs,
            admission,
        })
    }

    pub fn pool_size(&self) -> usize {
        self.inner.pool_size
    }

    /// The longest password (in bytes) the configured algorithm hashes without truncating.
    pub fn max_password_bytes(&self) -> Option<usize> {
        (self.inner.algorithm == HasherAlgorithm::Bcrypt).then_some(72)
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let weight = self.own_weight();
        self.run(weight, move |inner| inner.hash_blocking(&password))
            .await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is none. A
    /// failure answers no sooner than the slowest recent verification, whatever the account.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<Verified, HashError> {
        let weight = hash.as_deref().map_or_else(|| self.own_weight(), weight_of);
        let admission = self.admission.clone();
        let (verified, took) = self
            .run(weight, move |inner| {
                let started = Instant::now();
                let verified = match hash {
                    Some(h) => inner.verify_blocking(&password, &h),
                    None => {
                        let _ = inner.verify_blocking(&password, inner.dummy());
                        Ok(Verified {
                            ok: false,
                            needs_rehash: false,
                        })
                    }
                };
                let took = started.elapsed();
                admission.observe(took);
                verified.map(|v| (v, took))
            })
            .await?;
        if !verified.ok {
            let floor = self.admission.floor();
            if took < floor {
                tokio::time::sleep(floor - took).await;
            }
        }
        Ok(verified)
    }

    /// The budget weight of hashing with the configured parameters.
    fn own_weight(&self) -> u32 {
        if self.inner.algorithm == HasherAlgorithm::Bcrypt {
            BCRYPT_WEIGHT_KIB
        } else {
            self.inner.params.m_cost()
        }
    }

    /// Checks that an imported hash is in a format we can verify, within the cost bounds.
    pub fn check_importable(hash: &str) -> Result<(), HashError> {
        if is_bcrypt(hash) {
            return hash
                .parse::<bcrypt::HashParts>()
                .ok()
                .filter(|p| p.get_cost() <= MAX_BCRYPT_COST)
                .map(|_| ())
                .ok_or(HashError::UnsupportedFormat);
        }
        if hash.starts_with("$argon2id$") || hash.starts_with("$argon2i$") {
            let parsed = PasswordHash::new(hash).map_err(|_| HashError::UnsupportedFormat)?;
            return argon2_params_bounded(&parsed)
                .then_some(())
                .ok_or(HashError::UnsupportedFormat);
        }
        Err(HashError::UnsupportedFormat)
    }

    /// Runs `f` on the pool once `weight` KiB of the memory budget are free; refuses at once
    /// when too many jobs are already waiting or running.
    async fn run<T: Send + 'static>(
        &self,
        weight: u32,
        f: impl FnOnce(&Inner) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let a = &self.admission;
        if a.waiting.fetch_add(1, Ordering::Relaxed) >= a.max_waiting {
            a.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(HashError::Busy);
        }
        // Held until the job is done: waiting and running jobs count alike.
        let _slot = Waiting(&a.waiting);
        let permit = a
            .budget
            .clone()
            .acquire_many_owned(weight.clamp(1, a.budget_kib))
            .await
            .map_err(|_| HashError::Internal("the hashing pool has stopped".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |inner| {
            let _ = tx.send(f(inner));
            drop(permit);
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
            // bcrypt only looks at the first 72 bytes; refuse longer inputs rather than truncate
            // silently, after a full dummy verification so the refusal takes the usual time.
            if password.len() > 72 {
                let _ = self.verify_blocking(password, self.dummy());
                return Ok(Verified {
                    ok: false,
                    needs_rehash: false,
                });
            }
            let Some(cost) = hash
                .parse::<bcrypt::HashParts>()
                .ok()
                .map(|p| p.get_cost())
                .filter(|c| *c <= MAX_BCRYPT_COST)
            else {
                tracing::warn!(
                    "stored bcrypt hash is malformed or beyond the allowed cost; the login fails"
                );
                let _ = self.verify_blocking(password, self.dummy());
                return Ok(Verified {
                    ok: false,
                    needs_rehash: false,
                });
            };
            let ok = bcrypt::verify(password, hash).unwrap_or(false);
            let cost_ok = cost >= self.bcrypt_cost;
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

/// Imported Argon2 hashes must stay within bounds so one login cannot take the machine (see
/// the `ARGON2_MAX_*` constants).
fn argon2_params_bounded(h: &PasswordHash<'_>) -> bool {
    let get = |k| h.params.get_decimal(k);
    matches!((get("m"), get("t"), get("p")), (Some(m), Some(t), Some(p))
        if (1..=ARGON2_MAX_M_KIB).contains(&m)
            && (1..=ARGON2_MAX_T).contains(&t)
            && (1..=ARGON2_MAX_P).contains(&p)
            && u64::from(m) * u64::from(t) <= ARGON2_MAX_M_TIMES_T_KIB)
}

/// The memory (KiB) verifying `hash` needs, for the admission budget.
fn weight_of(hash: &str) -> u32 {
    if is_bcrypt(hash) {
        return BCRYPT_WEIGHT_KIB;
    }
    PasswordHash::new(hash)
        .ok()
        .and_then(|p| p.params.get_decimal("m"))
        .map_or(BCRYPT_WEIGHT_KIB, |m| m.min(ARGON2_MAX_M_KIB))
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
    fn imported_hashes_beyond_the_cost_bounds_are_refused() {
        for cost in [15, 20, 31] {
            let h = format!("$2b${cost}$abcdefghijklmnopqrstuu5sJ5sYVwLj0dG8o2KfKx2PqQ5tZq3P2");
            assert!(Hasher::check_importable(&h).is_err(), "bcrypt cost {cost}");
        }
        let bc = bcrypt::hash("x", 4).unwrap();
        assert!(Hasher::check_importable(&bc).is_ok());
        let argon = |m: u32, t: u32, p: u32| {
            format!("$argon2id$v=19$m={m},t={t},p={p}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
        };
        assert!(Hasher::check_importable(&argon(1 << 20, 32, 16)).is_err());
        assert!(Hasher::check_importable(&argon(512 * 1024, 1, 1)).is_err());
        assert!(Hasher::check_importable(&argon(19456, 11, 1)).is_err());
        assert!(Hasher::check_importable(&argon(256 * 1024, 5, 1)).is_err());
        assert!(Hasher::check_importable(&argon(256 * 1024, 4, 1)).is_ok());
        assert!(Hasher::check_importable(&argon(19456, 2, 1)).is_ok());
    }

    #[tokio::test]
    async fn a_stored_bcrypt_hash_beyond_the_bound_fails_without_running_it() {
        let h = Hasher::new(&cheap()).unwrap();
        // A real cost-31 hash would take days; refusing it must be immediate.
        let heavy = "$2b$31$abcdefghijklmnopqrstuu5sJ5sYVwLj0dG8o2KfKx2PqQ5tZq3P2".to_string();
        let v = tokio::time::timeout(Duration::from_secs(5), h.verify("x".into(), Some(heavy)))
            .await
            .expect("a cost-31 hash is refused, not run")
            .unwrap();
        assert!(!v.ok);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting() {
        let mut cfg = cheap();
        // One thread and a budget of one job's memory: one runs, the rest wait their turn.
        cfg.argon2.dedicated_memory = cfg.argon2.memory;
        let h = Hasher::new(&cfg).unwrap();
        assert_eq!(h.pool_size(), 1);
        let hash = h.hash("pw".into()).await.unwrap();
        let jobs = (0..100).map(|_| h.verify("pw".into(), Some(hash.clone())));
        let results = join_all(jobs).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy)))
            .count();
        let ok = results
            .iter()
            .filter(|r| matches!(r, Ok(v) if v.ok))
            .count();
        assert_eq!(ok, QUEUE_PER_THREAD);
        assert_eq!(busy, 100 - QUEUE_PER_THREAD);
        // Once the queue drains, checks are admitted again.
        assert!(h.verify("pw".into(), Some(hash)).await.unwrap().ok);
    }

    /// Polls every future once, in order, before polling any of them again (what the queue
    /// test relies on), until all are done.
    async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut pending: Vec<_> = futs.map(|f| Some(Box::pin(f))).collect();
        let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            for (fut, slot) in pending.iter_mut().zip(done.iter_mut()) {
                if let Some(f) = fut {
                    if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                        *slot = Some(v);
                        *fut = None;
                    }
                }
            }
            if pending.iter().all(Option::is_none) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        done.into_iter().flatten().collect()
    }

    #[tokio::test]
    async fn an_unknown_account_fails_no_faster_than_an_imported_slow_hash() {
        let h = Hasher::new(&cheap()).unwrap();
        // Warm: the pool's first job (the dummy hash) is done.
        assert!(!h.verify("warm".into(), None).await.unwrap().ok);
        let imported = bcrypt::hash("their password", 8).unwrap();
        let mut slow = Duration::MAX;
        for _ in 0..2 {
            let started = Instant::now();
            assert!(
                !h.verify("wrong".into(), Some(imported.clone()))
                    .await
                    .unwrap()
                    .ok
            );
            slow = slow.min(started.elapsed());
        }
        let started = Instant::now();
        assert!(!h.verify("wrong".into(), None).await.unwrap().ok);
        let unknown = started.elapsed();
        assert!(
            unknown * 10 >= slow * 7,
            "unknown account {unknown:?} against imported bcrypt {slow:?}"
        );
        // A password over bcrypt's 72 bytes is refused at the same cost, not at once.
        let started = Instant::now();
        assert!(!h.verify("p".repeat(100), Some(imported)).await.unwrap().ok);
        assert!(started.elapsed() * 10 >= slow * 7);
    }
}
