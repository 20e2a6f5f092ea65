//! Admin API keys (`serve.admin.api_keys`): for deployments where the admin port cannot be
//! kept private. With at least one key configured, every admin request must present one; with
//! none, the admin API is open as in Kratos (keep the port private).
//!
//! The configuration holds only each key's SHA-256 (`sha256:<hex>`), never the key. A plain
//! hash is enough because keys are 256 random bits made by `portcullis keys admin create`:
//! there is nothing to guess offline, so the hash is no secret and `config check` prints it.
//! A presented key is hashed once and compared in constant time with every configured hash;
//! which one matched is picked without a branch, so timing tells neither whether an early or a
//! late entry matched nor how many there are beyond the loop's length.
//!
//! A refusal changes nothing, so its audit record is written on its own.

use crate::audit::{Actor, AuditKind, AuditRecord, Origin};
use crate::error::{Error, Result};
use crate::service::Core;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use time::OffsetDateTime;

/// What a generated key starts with, so secret scanners and people can tell what it is.
pub const KEY_PREFIX: &str = "pc_admin_";

/// One configured key: a name for the audit log, and the key's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminApiKey {
    /// Shown as the actor of what the key does (`Actor::Admin { key_id }`); 1–64 of
    /// `A-Z a-z 0-9 . _ -`.
    pub id: String,
    pub hash: KeyHash,
}

/// The SHA-256 of a key, written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for KeyHash {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<KeyHash, String> {
        let bad = || {
            format!(
                "expected \"sha256:\" and 64 hex digits (from `portcullis keys admin create`), got {:?}",
                s.chars().take(80).collect::<String>()
            )
        };
        let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| bad())?;
        Ok(KeyHash(out))
    }
}

impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A new key (`pc_admin_` and 64 hex digits of 256 random bits) and its configuration entry.
pub fn generate(id: &str, rng: &mut (impl RngCore + CryptoRng)) -> (String, AdminApiKey) {
    let mut raw = [0u8; 32];
    rng.fill_bytes(&mut raw);
    let key = format!("{KEY_PREFIX}{}", hex::encode(raw));
    let entry = AdminApiKey {
        id: id.to_string(),
        hash: KeyHash::of(&key),
    };
    (key, entry)
}

/// Whether `id` may name a key: short, and safe to show in logs and audit records.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The index of the entry whose hash is `want`'s, found in constant time: every entry is
/// compared, and the index is selected rather than branched on.
fn find(keys: &[AdminApiKey], want: &KeyHash) -> Option<usize> {
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for (i, k) in keys.iter().enumerate() {
        let hit = k.hash.0.ct_eq(&want.0);
        index = u64::conditional_select(&index, &(i as u64), hit);
        found |= hit;
    }
    bool::from(found)
        .then(|| usize::try_from(index).ok())
        .flatten()
}

impl Core {
    /// Admits an admin request that presented `key` (the bearer token, if any): `Ok(None)` when
    /// no admin key is configured, `Ok(Some(id))` with the id of the key it presented. A missing
    /// or unknown key is refused ([`Error::AdminKeyRefused`]) and the refusal audited, with
    /// `request` (method and path) as its target.
    pub async fn admit_admin_request(
        &self,
        key: Option<&str>,
        request: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Option<String>> {
        let keys = &self.config.serve.admin.api_keys;
        if keys.is_empty() {
            return Ok(None);
        }
        let matched = key.and_then(|k| find(keys, &KeyHash::of(k)));
        if let Some(i) = matched {
            return Ok(keys.get(i).map(|k| k.id.clone()));
        }
        let missing = key.is_none();
        let record = AuditRecord::new(AuditKind::AdminKeyRefused, Actor::Anonymous, origin, now)
            .failed(if missing { "missing" } else { "invalid" })
            .details(json!({ "request": request.chars().take(256).collect::<String>() }));
        self.store.insert_audit(&record).await?;
        Err(Error::AdminKeyRefused { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &str) -> AdminApiKey {
        AdminApiKey {
            id: id.into(),
            hash: KeyHash::of(key),
        }
    }

    #[test]
    fn hashes_read_and_print_as_sha256_hex() {
        let h = KeyHash::of("abc");
        let text = h.to_string();
        assert_eq!(
            text,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(text.parse::<KeyHash>(), Ok(h));
        for bad in ["ba7816bf", "sha256:zz", "sha1:ba78", "sha256:ba7816bf"] {
            assert!(bad.parse::<KeyHash>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_entry_is_searched_and_the_matching_one_is_found() {
        let keys = [entry("a", "k1"), entry("b", "k2"), entry("c", "k3")];
        assert_eq!(find(&keys, &KeyHash::of("k1")), Some(0));
        assert_eq!(find(&keys, &KeyHash::of("k3")), Some(2));
        assert_eq!(find(&keys, &KeyHash::of("k4")), None);
        assert_eq!(find(&[], &KeyHash::of("k1")), None);
    }

    #[test]
    fn generated_keys_are_random_prefixed_and_match_their_entry() {
        let (k1, e1) = generate("ops", &mut rand::rngs::OsRng);
        let (k2, _) = generate("ops", &mut rand::rngs::OsRng);
        assert_ne!(k1, k2);
        assert!(k1.starts_with(KEY_PREFIX) && k1.len() == KEY_PREFIX.len() + 64);
        assert_eq!(e1.hash, KeyHash::of(&k1));
        assert_eq!(e1.id, "ops");
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(valid_id("ops") && valid_id("ci-deploy_2.x"));
        for bad in ["", "has space", "ünï", &"x".repeat(65), "a\nb"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
