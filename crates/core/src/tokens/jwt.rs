//! The JWTs themselves: signing with the current key, the claims every token carries, and
//! the checks every token Portcullis accepts must pass.
//!
//! Verification never trusts the token's header beyond `kid`: the key named by `kid` fixes the
//! one acceptable algorithm (so `none` and HS256-with-a-public-key confusion cannot pass), and
//! `exp`/`nbf`/`iat` are checked against the caller's `now` with the configured leeway, so time
//! stays a parameter as everywhere else in the core.

use crate::error::{Error, Result, TokenError};
use crate::keys::Ring;
use crate::service::Core;
use crate::session::hash_token;
use crate::store::RefreshToken;
use jsonwebtoken::{Header, Validation};
use serde_json::{json, Map, Value};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub(super) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// The JOSE `typ` of each kind of token, so verifiers that look at the header alone tell an
/// access token (RFC 9068's `at+jwt`) from a refresh token (security review F17). Session
/// (`tokenize_as`) tokens keep the plain `JWT`.
pub(super) fn jose_type(token_type: Option<&str>) -> &'static str {
    match token_type {
        Some("access") => "at+jwt",
        Some("refresh") => "refresh+jwt",
        _ => "JWT",
    }
}

fn new_jti() -> String {
    Uuid::new_v4().simple().to_string()
}

impl Core {
    pub(super) fn sign(&self, ring: &Ring, claims: &Map<String, Value>) -> Result<String> {
        let mut header = Header::new(ring.current.alg);
        header.kid = Some(ring.current.kid.clone());
        header.typ = Some(jose_type(claims.get("token_type").and_then(Value::as_str)).to_string());
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
            // A JOSE type that names a kind must name this one (RFC 8725 §3.11): our refresh
            // tokens (`refresh+jwt`) are never access tokens. A plain `JWT` (or none), as
            // simplejwt and other HS256 signers write, leaves it to the `token_type` claim.
            if let Some(typ) = header.typ.as_deref() {
                if !typ.eq_ignore_ascii_case("JWT") && typ != jose_type(Some(expected)) {
                    return Err(Error::Token(TokenError::Invalid("Token has wrong type")));
                }
            }
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
        match t.audience.as_slice() {
            [] => {}
            [one] => {
                c.insert("aud".into(), json!(one));
            }
            _ => {
                c.insert("aud".into(), json!(t.audience));
            }
        }
        c.insert("sub".into(), json!(identity_id.to_string()));
        c.insert("sid".into(), json!(session_id.to_string()));
        c
    }

    pub(super) fn access_token(
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
    pub(super) fn refresh_token(
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
}
