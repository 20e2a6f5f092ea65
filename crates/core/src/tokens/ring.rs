//! The signing-key ring as a use case: load and decrypt it (installing the keys a fresh
//! database or a changed algorithm lacks), rotate on demand or on schedule, publish the JWKS.
//! The key material itself (generation, encryption at rest) is `crate::keys`.

use crate::audit::{AuditKind, By};
use crate::config::TokenAlgorithm;
use crate::error::{Error, Result};
use crate::keys::{self, LoadedKey, Ring};
use crate::service::Core;
use crate::store::Effects;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Keys to retire `(kid, expected state, drop_after)` and keys to insert.
type KeyTransition = (
    Vec<(String, &'static str, OffsetDateTime)>,
    Vec<keys::StoredKey>,
);

impl Core {
    pub(crate) fn cipher_secrets(&self) -> Vec<String> {
        let s = &self.config.secrets;
        s.cipher
            .iter()
            .chain(&s.default)
            .map(|k| k.expose().to_string())
            .collect()
    }

    /// The key ring, loaded from the database at most every [`keys::RING_TTL`]; the first call creates
    /// the signing key if there is none.
    pub async fn ring(&self, now: OffsetDateTime) -> Result<Arc<Ring>> {
        if let Some(ring) = self.keyring.fresh().await {
            return Ok(ring);
        }
        self.reload_ring(now).await
    }

    pub async fn reload_ring(&self, now: OffsetDateTime) -> Result<Arc<Ring>> {
        let mut guard = self.keyring.cached.write().await;
        let mut stored = self.store.signing_keys().await?;
        if let Some((retire, insert)) = self.missing_keys(&stored, now)? {
            // Losing this race to another instance is fine: its keys are as good as ours.
            self.store
                .transition_signing_keys(&retire, None, &insert, now, &Effects::none())
                .await?;
            stored = self.store.signing_keys().await?;
        }
        let secrets = self.cipher_secrets();
        let mut keys = HashMap::new();
        let mut current = None;
        let mut current_activated_at = None;
        let mut jwks = vec![];
        for k in stored
            .iter()
            .filter(|k| k.state != "retired" || k.drop_after.is_some_and(|d| d > now))
        {
            let loaded = Arc::new(
                LoadedKey::from_stored(k, &secrets).map_err(|e| Error::Internal(e.to_string()))?,
            );
            if let Some(j) = &loaded.public_jwk {
                jwks.push(j.clone());
            }
            if loaded.current {
                current = Some(loaded.clone());
                current_activated_at = Some(k.activated_at.unwrap_or(k.created_at));
            }
            keys.insert(loaded.kid.clone(), loaded);
        }
        if self.config.tokens.algorithm == TokenAlgorithm::Hs256 {
            let hs = Arc::new(LoadedKey::hs256(self.config.tokens.hs256_secret.expose()));
            keys.insert(hs.kid.clone(), hs.clone());
            current = Some(hs);
        }
        let current = current
            .ok_or_else(|| Error::Internal("no current signing key after installing one".into()))?;
        let ring = Arc::new(Ring {
            current,
            keys,
            jwks: json!({ "keys": jwks }),
            current_activated_at,
        });
        *guard = Some((Instant::now(), ring.clone()));
        Ok(ring)
    }

    /// What the key set lacks for the configured algorithm: a `current` key (first start, or
    /// the algorithm changed — then the new key signs at once) and a `next` key published
    /// ahead of the next rotation. HS256 needs neither.
    fn missing_keys(
        &self,
        stored: &[keys::StoredKey],
        now: OffsetDateTime,
    ) -> Result<Option<KeyTransition>> {
        let alg = self.config.tokens.algorithm.as_str();
        if self.config.tokens.algorithm == TokenAlgorithm::Hs256 {
            return Ok(None);
        }
        let current = stored.iter().find(|k| k.state == "current");
        let next = stored.iter().find(|k| k.state == "next");
        let mut retire = vec![];
        let mut insert = vec![];
        if current.is_none_or(|c| c.alg != alg) {
            if let Some(c) = current {
                retire.push((c.kid.clone(), "current", now + self.longest_token_life()));
            }
            insert.push(self.new_key("current", now)?);
        }
        let next_ok = next.is_some_and(|n| n.alg == alg) && retire.is_empty();
        if !next_ok {
            if let Some(n) = next {
                // A next key never signed anything: it can leave the JWKS at once.
                retire.push((n.kid.clone(), "next", now));
            }
            insert.push(self.new_key("next", now)?);
        }
        Ok((!insert.is_empty()).then_some((retire, insert)))
    }

    fn new_key(&self, state: &str, now: OffsetDateTime) -> Result<keys::StoredKey> {
        let secret = self
            .cipher_secrets()
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("no secret to encrypt signing keys with".into()))?;
        keys::generate(self.config.tokens.algorithm, state, &secret, now)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// How long a retired key must stay in the JWKS: the longest-lived token it may have signed.
    fn longest_token_life(&self) -> Duration {
        let t = &self.config.tokens;
        let tpl = self
            .config
            .session
            .whoami
            .tokenizer
            .templates
            .values()
            .map(|t| t.ttl.0)
            .max()
            .unwrap_or_default();
        t.access_token_lifetime
            .0
            .max(t.refresh_token_lifetime.0)
            .max(tpl)
            + t.leeway.0
    }

    /// Rotates: the current key retires (it stays in the JWKS until the tokens it signed
    /// expire), the `next` key — published since the previous rotation, so verifiers already
    /// know it — starts signing, and a fresh `next` key is published. Returns the signing kid.
    pub async fn rotate_signing_key(&self, now: OffsetDateTime, by: &By) -> Result<String> {
        self.rotate_from(None, now, by).await
    }

    /// Rotates away from `expected` (or whatever key is current when `None`). If another
    /// rotation already replaced `expected`, nothing more happens: deciding "due" from a stale
    /// view must not rotate twice.
    async fn rotate_from(
        &self,
        expected: Option<&str>,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<String> {
        if self.config.tokens.algorithm == TokenAlgorithm::Hs256 {
            return Err(Error::bad_request(
                "HS256 uses the shared tokens.hs256_secret; rotate it in the configuration.",
            ));
        }
        self.reload_ring(now).await?;
        let stored = self.store.signing_keys().await?;
        let current = stored.iter().find(|k| k.state == "current");
        let next = stored.iter().find(|k| k.state == "next");
        if let (Some(c), Some(n)) = (current, next) {
            if expected.is_some_and(|e| e != c.kid) {
                return Ok(self.reload_ring(now).await?.current.kid.clone());
            }
            let retire = [(c.kid.clone(), "current", now + self.longest_token_life())];
            let record = by
                .record(AuditKind::KeysRotated, now)
                .target(format!("key:{}", n.kid))
                .details(serde_json::json!({ "retired": c.kid }));
            let fx = Effects::none().audited(record);
            let fresh = [self.new_key("next", now)?];
            let won = self
                .store
                .transition_signing_keys(&retire, Some(&n.kid), &fresh, now, &fx)
                .await?;
            if !won {
                tracing::info!("another instance rotated the signing key first");
            }
        }
        Ok(self.reload_ring(now).await?.current.kid.clone())
    }

    /// Rotates when the configured interval has passed since the current key started signing.
    pub async fn rotate_if_due(&self, now: OffsetDateTime) -> Result<Option<String>> {
        let interval = self.config.tokens.key_rotation_interval.0;
        if interval.is_zero() || self.config.tokens.algorithm == TokenAlgorithm::Hs256 {
            return Ok(None);
        }
        let ring = self.reload_ring(now).await?;
        match ring.current_activated_at {
            Some(activated) if activated + interval <= now => {
                let before = ring.current.kid.clone();
                let after = self.rotate_from(Some(&before), now, &By::system()).await?;
                Ok((after != before).then_some(after))
            }
            _ => Ok(None),
        }
    }

    /// The signing keys still stored, in every state (the admin listing).
    pub async fn signing_keys(&self) -> Result<Vec<keys::StoredKey>> {
        Ok(self.store.signing_keys().await?)
    }

    pub async fn jwks(&self, now: OffsetDateTime) -> Result<Value> {
        Ok(self.ring(now).await?.jwks.clone())
    }

    /// Signs arbitrary claims with the current key (tests use it to build tokens that must be refused).
    pub async fn sign_claims(
        &self,
        claims: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<String> {
        let ring = self.ring(now).await?;
        self.sign(&ring, claims)
    }
}
