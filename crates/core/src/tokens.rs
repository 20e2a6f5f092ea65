//! JWTs: the signing key ring, the simplejwt-compatible token pair (obtain, refresh with
//! rotation and reuse detection, verify, blacklist), session tokenization and the checks every
//! token Portcullis accepts must pass.
//!
//! Verification never trusts the token's header beyond `kid`: the key named by `kid` fixes the
//! one acceptable algorithm (so `none` and HS256-with-a-public-key confusion cannot pass), and
//! `exp`/`nbf`/`iat` are checked against the caller's `now` with the configured leeway, so time
//! stays a parameter as everywhere else in the core.

use crate::config::TokenAlgorithm;
use crate::error::{Error, Result};
use crate::identity::View;
use crate::keys::{self, LoadedKey};
use crate::service::{Caller, Core};
use crate::session::{hash_token, Session};
use crate::store::RefreshToken;
use jsonwebtoken::{Header, Validation};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

/// How long a loaded key ring is trusted before the database is read again, so a rotation
/// made by another instance reaches this one within this time. An unknown `kid` forces a
/// reload at once.
const RING_TTL: Duration = Duration::from_secs(30);

/// Errors in the simplejwt face's own vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenError {
    /// 400: `{"<field>": ["This field is required."]}`.
    Missing(Vec<String>),
    /// 401: wrong identifier or password, or an inactive account.
    BadCredentials,
    /// 401 `token_not_valid` with simplejwt's message.
    Invalid(&'static str),
    /// 401: the token's identity or session is gone or inactive.
    NoActiveAccount,
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        Error::Token(e)
    }
}

pub struct Ring {
    pub current: Arc<LoadedKey>,
    pub keys: HashMap<String, Arc<LoadedKey>>,
    pub jwks: Value,
    /// When the signing key became current (scheduled rotation counts from it).
    pub current_activated_at: Option<OffsetDateTime>,
}

#[derive(Default)]
pub struct KeyRingCache {
    cached: tokio::sync::RwLock<Option<(Instant, Arc<Ring>)>>,
}

/// Keys to retire `(kid, expected state, drop_after)` and keys to insert.
type KeyTransition = (
    Vec<(String, &'static str, OffsetDateTime)>,
    Vec<keys::StoredKey>,
);

/// An issued access/refresh pair.
pub struct TokenPair {
    pub access: String,
    pub refresh: Option<String>,
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn new_jti() -> String {
    Uuid::new_v4().simple().to_string()
}

fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

impl Core {
    // ------------------------------------------------------------------ keys

    fn key_secrets(&self) -> Vec<String> {
        let s = &self.config.secrets;
        s.cipher
            .iter()
            .chain(&s.default)
            .map(|k| k.expose().to_string())
            .collect()
    }

    /// The key ring, loaded from the database at most every [`RING_TTL`]; the first call creates
    /// the signing key if there is none.
    pub async fn ring(&self, now: OffsetDateTime) -> Result<Arc<Ring>> {
        if let Some((at, ring)) = self.keyring.cached.read().await.as_ref() {
            if at.elapsed() < RING_TTL {
                return Ok(ring.clone());
            }
        }
        self.reload_ring(now).await
    }

    pub async fn reload_ring(&self, now: OffsetDateTime) -> Result<Arc<Ring>> {
        let mut guard = self.keyring.cached.write().await;
        let mut stored = self.store.signing_keys().await?;
        if let Some((retire, insert)) = self.missing_keys(&stored, now)? {
            // Losing this race to another instance is fine: its keys are as good as ours.
            self.store
                .transition_signing_keys(&retire, None, &insert, now)
                .await?;
            stored = self.store.signing_keys().await?;
        }
        let secrets = self.key_secrets();
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
        let alg = self.config.tokens.algorithm;
        if alg == TokenAlgorithm::Hs256 {
            return Ok(None);
        }
        let current = stored.iter().find(|k| k.state == "current");
        let next = stored.iter().find(|k| k.state == "next");
        let mut retire = vec![];
        let mut insert = vec![];
        if current.is_none_or(|c| c.alg != alg.as_str()) {
            if let Some(c) = current {
                retire.push((c.kid.clone(), "current", now + self.longest_token_life()));
            }
            insert.push(self.new_key("current", now)?);
        }
        let next_ok = next.is_some_and(|n| n.alg == alg.as_str()) && retire.is_empty();
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
            .key_secrets()
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
    pub async fn rotate_signing_key(&self, now: OffsetDateTime) -> Result<String> {
        self.rotate_from(None, now).await
    }

    /// Rotates away from `expected` (or whatever key is current when `None`). If another
    /// rotation already replaced `expected`, nothing more happens: deciding "due" from a stale
    /// view must not rotate twice.
    async fn rotate_from(&self, expected: Option<&str>, now: OffsetDateTime) -> Result<String> {
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
            let won = self
                .store
                .transition_signing_keys(&retire, Some(&n.kid), &[self.new_key("next", now)?], now)
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
                let after = self.rotate_from(Some(&before), now).await?;
                Ok((after != before).then_some(after))
            }
            _ => Ok(None),
        }
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

    fn sign(&self, ring: &Ring, claims: &Map<String, Value>) -> Result<String> {
        let mut header = Header::new(ring.current.alg);
        header.kid = Some(ring.current.kid.clone());
        let key = ring
            .current
            .encoding
            .as_ref()
            .ok_or_else(|| Error::Internal("current key cannot sign".into()))?;
        jsonwebtoken::encode(&header, claims, key)
            .map_err(|e| Error::Internal(format!("signing failed: {e}")))
    }

    /// Checks signature, algorithm, `kid`, time claims, `iss`, `aud` and `token_type`.
    pub async fn verify_jwt(
        &self,
        token: &str,
        expected_type: Option<&str>,
        now: OffsetDateTime,
    ) -> std::result::Result<Map<String, Value>, Error> {
        let invalid = || Error::Token(TokenError::Invalid("Token is invalid"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let kid = header.kid.clone().ok_or_else(invalid)?;
        let mut ring = self.ring(now).await?;
        if !ring.keys.contains_key(&kid) {
            ring = self.reload_ring(now).await?;
        }
        let key = ring.keys.get(&kid).ok_or_else(invalid)?;
        if header.alg != key.alg {
            return Err(invalid());
        }
        // The signature and algorithm only; every claim is checked below against `now`.
        let mut v = Validation::new(key.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v)
            .map_err(|_| invalid())?;
        let claims = data.claims;
        let t = &self.config.tokens;
        let leeway = t.leeway.0.as_secs() as i64;
        let now_s = unix(now);
        // NumericDate may be fractional (RFC 7519); huge values saturate instead of overflowing.
        let num = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        };
        let Some(exp) = num("exp") else {
            return Err(Error::Token(TokenError::Invalid(
                "Token has no 'exp' claim",
            )));
        };
        if exp.saturating_add(leeway) <= now_s {
            return Err(Error::Token(TokenError::Invalid("Token is expired")));
        }
        if num("nbf").is_some_and(|nbf| nbf > now_s.saturating_add(leeway))
            || num("iat").is_some_and(|iat| iat > now_s.saturating_add(leeway))
        {
            return Err(invalid());
        }
        if claims.get("iss").and_then(Value::as_str) != Some(t.issuer.as_str()) {
            return Err(invalid());
        }
        if !t.audience.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => t.audience.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| t.audience.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(invalid());
            }
        }
        if let Some(expected) = expected_type {
            match claims.get("token_type").and_then(Value::as_str) {
                None => return Err(Error::Token(TokenError::Invalid("Token has no type"))),
                Some(tt) if tt != expected => {
                    return Err(Error::Token(TokenError::Invalid("Token has wrong type")))
                }
                Some(_) => {}
            }
            if !claims.get("jti").is_some_and(Value::is_string) {
                return Err(Error::Token(TokenError::Invalid("Token has no id")));
            }
        }
        Ok(claims)
    }

    fn base_claims(
        &self,
        token_type: &str,
        identity_id: Uuid,
        session_id: Uuid,
        now: OffsetDateTime,
        life: Duration,
    ) -> Map<String, Value> {
        let t = &self.config.tokens;
        let mut c = Map::new();
        c.insert("token_type".into(), json!(token_type));
        c.insert("exp".into(), json!(unix(now + life)));
        c.insert("iat".into(), json!(unix(now)));
        c.insert("jti".into(), json!(new_jti()));
        c.insert(t.user_id_claim.clone(), json!(identity_id.to_string()));
        c.insert("iss".into(), json!(t.issuer));
        match t.audience.len() {
            0 => {}
            1 => {
                c.insert("aud".into(), json!(t.audience[0]));
            }
            _ => {
                c.insert("aud".into(), json!(t.audience));
            }
        }
        c.insert("sub".into(), json!(identity_id.to_string()));
        c.insert("sid".into(), json!(session_id.to_string()));
        c
    }

    fn access_token(
        &self,
        ring: &Ring,
        identity_id: Uuid,
        session_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<String> {
        let claims = self.base_claims(
            "access",
            identity_id,
            session_id,
            now,
            self.config.tokens.access_token_lifetime.0,
        );
        self.sign(ring, &claims)
    }

    /// Signs a refresh token of `family` and returns it with its row.
    fn refresh_token(
        &self,
        ring: &Ring,
        family: Uuid,
        identity_id: Uuid,
        session_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(String, RefreshToken)> {
        let life = self.config.tokens.refresh_token_lifetime.0;
        let claims = self.base_claims("refresh", identity_id, session_id, now, life);
        let token = self.sign(ring, &claims)?;
        let row = RefreshToken {
            token_hash: hash_token(&token),
            jti: claims
                .get("jti")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            family_id: family,
            identity_id,
            session_id,
            state: "active".into(),
            expires_at: now + life,
            created_at: now,
            rotated_at: None,
        };
        Ok((token, row))
    }

    // ------------------------------------------------------------------ simplejwt face

    /// `POST /api/token/`: identifier + password → access and refresh tokens (and a session).
    pub async fn obtain_tokens(
        &self,
        body: &Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<TokenPair> {
        let t = &self.config.tokens;
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let identifier = [t.username_field.as_str(), "email", "username", "identifier"]
            .into_iter()
            .find_map(field);
        let password = body
            .get("password")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let mut missing = vec![];
        if identifier.is_none() {
            missing.push(t.username_field.clone());
        }
        if password.is_none() {
            missing.push("password".to_string());
        }
        let (Some(identifier), Some(password)) = (identifier, password) else {
            return Err(TokenError::Missing(missing).into());
        };
        let identity = self
            .verify_password_login(identifier, password, None, now)
            .await?
            .ok_or(TokenError::BadCredentials)?;
        if !identity.is_active() {
            return Err(TokenError::BadCredentials.into());
        }
        let (session, _opaque) = self
            .issue_session(&identity, "password", caller, now)
            .await?;
        let ring = self.ring(now).await?;
        let access = self.access_token(&ring, identity.id, session.id, now)?;
        let (refresh, row) =
            self.refresh_token(&ring, Uuid::new_v4(), identity.id, session.id, now)?;
        self.store.insert_refresh_token(&row).await?;
        Ok(TokenPair {
            access,
            refresh: Some(refresh),
        })
    }

    /// `POST /api/token/refresh/`: a new access token, and with rotation a new refresh token.
    /// Reusing a rotated token revokes its whole family (and the session behind it).
    pub async fn refresh_tokens(&self, refresh: &str, now: OffsetDateTime) -> Result<TokenPair> {
        let claims = self.verify_jwt(refresh, Some("refresh"), now).await?;
        let uuid_claim = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        };
        let (Some(identity_id), Some(session_id)) = (uuid_claim("sub"), uuid_claim("sid")) else {
            return Err(TokenError::Invalid("Token is invalid").into());
        };
        let hash = hash_token(refresh);
        let ring = self.ring(now).await?;
        if self.config.tokens.rotate_refresh_tokens {
            // The fast path is a single write: it succeeds only if the token is active and its
            // session and identity still are. Anything else is explained by `refresh_refused`.
            let (new_refresh, new_row) =
                self.refresh_token(&ring, Uuid::nil(), identity_id, session_id, now)?;
            if self
                .store
                .rotate_refresh_token(&hash, &new_row, None)
                .await?
            {
                let access = self.access_token(&ring, identity_id, session_id, now)?;
                return Ok(TokenPair {
                    access,
                    refresh: Some(new_refresh),
                });
            }
            return Err(self.refresh_refused(&hash, now).await);
        }
        match self.store.refresh_token_with_session(&hash).await? {
            Some((row, Some((s, i))))
                if row.state == "active" && s.id == session_id && s.is_valid(&i, now) =>
            {
                Ok(TokenPair {
                    access: self.access_token(&ring, i.id, s.id, now)?,
                    refresh: None,
                })
            }
            _ => Err(self.refresh_refused(&hash, now).await),
        }
    }

    /// Why a refresh was refused, with the side effects of reuse: a rotated token presented
    /// again after the grace window revokes its whole family and the session behind it.
    async fn refresh_refused(&self, hash: &str, now: OffsetDateTime) -> Error {
        let found = match self.store.refresh_token_with_session(hash).await {
            Ok(f) => f,
            Err(e) => return e.into(),
        };
        let Some((row, session)) = found else {
            return TokenError::Invalid("Token is invalid").into();
        };
        match row.state.as_str() {
            // Presented again this soon after its rotation, the token comes from a client racing
            // itself (two tabs refreshing at once), not a thief: refused, the family survives.
            "rotated"
                if row
                    .rotated_at
                    .is_some_and(|at| now - at < self.config.tokens.rotation_grace.0) =>
            {
                TokenError::Invalid("Token is blacklisted").into()
            }
            "rotated" => {
                tracing::warn!(family = %row.family_id, identity = %row.identity_id, "refresh token reuse detected; revoking the family");
                if let Err(e) = self.store.revoke_refresh_family(row.family_id).await {
                    return e.into();
                }
                if let Some((mut s, _)) = session {
                    s.active = false;
                    if let Err(e) = self.store.update_session(&s, now).await {
                        return e.into();
                    }
                }
                TokenError::Invalid("Token is blacklisted").into()
            }
            "active" => match session {
                // Active and valid: a concurrent refresh of the same token won the rotation.
                Some((s, i)) if s.is_valid(&i, now) => {
                    TokenError::Invalid("Token is blacklisted").into()
                }
                _ => TokenError::NoActiveAccount.into(),
            },
            _ => TokenError::Invalid("Token is blacklisted").into(),
        }
    }

    /// `POST /api/token/verify/`: any of our tokens; refresh tokens must not be revoked or rotated.
    pub async fn verify_any_token(&self, token: &str, now: OffsetDateTime) -> Result<()> {
        let claims = self.verify_jwt(token, None, now).await?;
        if claims.get("token_type").and_then(Value::as_str) == Some("refresh") {
            match self.store.get_refresh_token(&hash_token(token)).await? {
                Some(r) if r.state == "active" => {}
                Some(_) => return Err(TokenError::Invalid("Token is blacklisted").into()),
                None => return Err(TokenError::Invalid("Token is invalid").into()),
            }
        }
        Ok(())
    }

    /// `POST /api/token/blacklist/`: revokes one refresh token.
    pub async fn blacklist_refresh(&self, refresh: &str, now: OffsetDateTime) -> Result<()> {
        self.verify_jwt(refresh, Some("refresh"), now).await?;
        if self
            .store
            .revoke_refresh_token(&hash_token(refresh))
            .await?
        {
            Ok(())
        } else {
            Err(TokenError::Invalid("Token is blacklisted").into())
        }
    }

    /// Cookie-mode logout: blacklists the refresh token and ends its session.
    pub async fn logout_refresh(&self, refresh: &str, now: OffsetDateTime) -> Result<()> {
        self.verify_jwt(refresh, Some("refresh"), now).await?;
        let hash = hash_token(refresh);
        let row = self
            .store
            .get_refresh_token(&hash)
            .await?
            .ok_or(TokenError::Invalid("Token is invalid"))?;
        self.store.revoke_refresh_family(row.family_id).await?;
        if let Some((mut s, _)) = self.store.get_session(row.session_id).await? {
            s.active = false;
            self.store.update_session(&s, now).await?;
        }
        Ok(())
    }

    /// A session by one of our access tokens (`Authorization: Bearer <jwt>` on whoami).
    pub async fn authenticate_access_token(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Session, crate::identity::Identity)> {
        if !looks_like_jwt(token) {
            return Err(Error::session_inactive());
        }
        let claims = match self.verify_jwt(token, Some("access"), now).await {
            Ok(c) => c,
            Err(Error::Token(_)) => return Err(Error::session_inactive()),
            Err(e) => return Err(e),
        };
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(Error::session_inactive)?;
        match self.store.get_session(sid).await? {
            Some((s, i)) if s.is_valid(&i, now) => Ok((s, i)),
            _ => Err(Error::session_inactive()),
        }
    }

    /// `whoami?tokenize_as=<template>`: the session as a signed JWT.
    pub async fn tokenize(
        &self,
        session: &Session,
        identity: &crate::identity::Identity,
        template: &str,
        now: OffsetDateTime,
    ) -> Result<String> {
        let tpl = self
            .config
            .session
            .whoami
            .tokenizer
            .templates
            .get(template)
            .ok_or_else(|| {
                Error::bad_request(format!("Unable to find tokenizer template {template:?}."))
            })?;
        let session_json = self.session_json(session, Some(identity), View::Public, now);
        let mut claims = Map::new();
        for (claim, path) in &tpl.claims {
            let value = path.split('.').try_fold(&session_json, |v, seg| v.get(seg));
            if let Some(v) = value {
                claims.insert(claim.clone(), v.clone());
            }
        }
        claims.insert("jti".into(), json!(Uuid::new_v4().to_string()));
        // The configured audience, so Portcullis's own verifier (and simplejwt's) accepts it.
        match self.config.tokens.audience.as_slice() {
            [] => {}
            [one] => {
                claims.insert("aud".into(), json!(one));
            }
            many => {
                claims.insert("aud".into(), json!(many));
            }
        }
        claims.insert("iss".into(), json!(self.config.tokens.issuer));
        claims.insert("sub".into(), json!(identity.id.to_string()));
        claims.insert("sid".into(), json!(session.id.to_string()));
        claims.insert("iat".into(), json!(unix(now)));
        claims.insert("nbf".into(), json!(unix(now)));
        claims.insert("exp".into(), json!(unix(now + tpl.ttl.0)));
        let ring = self.ring(now).await?;
        self.sign(&ring, &claims)
    }
}
