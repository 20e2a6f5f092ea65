//! Clerk session tokens: the short-lived JWTs Clerk's SDKs mint for a session and Clerk's
//! backend SDKs verify (`@clerk/backend`'s `verifyToken`, `clerk-backend-api`'s
//! `authenticate_request`). They are RS256 with an RSA-2048 key (e = 65537): `@clerk/backend`
//! reads a PEM `jwtKey` by cutting the fixed prefix of a 2048-bit key, so no other size works.
//! The key is the instance's, made once and kept sealed in the database (`kv`), so every
//! instance on one database signs with it; it is published at the Backend API's `/v1/jwks`
//! and, as the PEM Clerk's dashboard shows, at `GET /admin/clerk/jwt-key`.
//!
//! Claims are Clerk's v2 session claims (FAPI-NOTES §4.1): `iss` (the Frontend API's URL),
//! `sub` (`user_…`), `sid` (`sess_…`), `iat`, `nbf`, `exp`, `jti`, `v: 2`, `fva`, `sts`, and
//! `azp` (the browser's origin) when one asked. No `aud`: PyJWT refuses a token with one
//! when no audience is configured.

use crate::error::{Error, Result};
use crate::keys::{self, LoadedKey, StoredKey};
use crate::service::Core;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where the key is kept.
const KV_KEY: &str = "clerk.session_key";
/// Clerk's default lifetime of a session token; clerk-js refreshes it before it ends.
pub const LIFETIME_SECONDS: i64 = 60;
/// The longest lifetime the Backend API's `expires_in_seconds` may ask for (a day; the token
/// never outlives its session either).
pub const MAX_LIFETIME_SECONDS: i64 = 86_400;

/// The instance's session-token key, loaded.
pub struct ClerkKey {
    key: LoadedKey,
    jwk: Value,
    pem: String,
}

impl Core {
    /// The session-token key: the stored one, or a new one stored first (the first instance
    /// to store it wins, and every other uses that one).
    async fn clerk_key(&self) -> Result<Arc<ClerkKey>> {
        self.clerk_key
            .get_or_try_init(|| async {
                let secrets = self.cipher_secrets();
                let secret = secrets.first().cloned().unwrap_or_default();
                let fresh = keys::generate(
                    crate::config::TokenAlgorithm::Rs256,
                    "current",
                    &secret,
                    self.now(),
                )
                .map_err(|e| Error::Internal(e.to_string()))?;
                let fresh =
                    serde_json::to_string(&fresh).map_err(|e| Error::Internal(e.to_string()))?;
                let kept = self.store.get_or_init_kv(KV_KEY, &fresh).await?;
                let stored: StoredKey =
                    serde_json::from_str(&kept).map_err(|e| Error::Internal(e.to_string()))?;
                let key = LoadedKey::from_stored(&stored, &secrets)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                let pem = public_pem(&stored, &secrets)?;
                Ok(Arc::new(ClerkKey {
                    key,
                    jwk: stored.public_jwk,
                    pem,
                }))
            })
            .await
            .cloned()
    }

    /// The Backend API's `/v1/jwks`: the session-token key.
    pub async fn clerk_jwks(&self) -> Result<Value> {
        Ok(json!({ "keys": [self.clerk_key().await?.jwk] }))
    }

    /// The session-token key's public half as a PEM (`-----BEGIN PUBLIC KEY-----`), what
    /// Clerk's backend SDKs take as `jwtKey` / `jwt_key` to verify without a network call.
    pub async fn clerk_jwt_key_pem(&self) -> Result<String> {
        Ok(self.clerk_key().await?.pem.clone())
    }

    /// A session token for the session `id` (active, its identity too), valid for
    /// `lifetime` seconds (default [`LIFETIME_SECONDS`]); `azp`: the origin it is for.
    pub async fn clerk_session_token(
        &self,
        id: Uuid,
        lifetime: Option<i64>,
        azp: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<String> {
        let gone = || Error::not_found("Session not found");
        let (session, identity) = self.store.get_session(id).await?.ok_or_else(gone)?;
        self.clerk_token_for(&session, &identity, lifetime, azp, now)
            .await
    }

    /// [`Core::clerk_session_token`] for a session already read (a client's, just checked).
    pub async fn clerk_token_for(
        &self,
        session: &crate::session::Session,
        identity: &crate::identity::Identity,
        lifetime: Option<i64>,
        azp: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<String> {
        let gone = || Error::not_found("Session not found");
        if !session.is_valid(identity, now) {
            return Err(gone());
        }
        // A session that has not shown the second factor its account now has is refused, as
        // whoami refuses it under `highest_available`.
        let enforced =
            self.config.session.whoami.required_aal == crate::config::RequiredAal::HighestAvailable;
        if enforced && session.level() < identity.available_aal() {
            return Err(gone());
        }
        let lifetime = lifetime.unwrap_or(LIFETIME_SECONDS);
        if !(1..=MAX_LIFETIME_SECONDS).contains(&lifetime) {
            return Err(Error::bad_request(format!(
                "expires_in_seconds must be between 1 and {MAX_LIFETIME_SECONDS}"
            )));
        }
        let key = self.clerk_key().await?;
        let iat = now.unix_timestamp();
        // Minutes since the first and the second factor were shown (-1: never).
        let age = |aal: &str| {
            session
                .authentication_methods
                .iter()
                .filter(|m| m.aal == aal)
                .map(|m| (now - m.completed_at).whole_minutes())
                .min()
                .unwrap_or(-1)
        };
        let mut claims = json!({
            "iss": self.public_url().trim_end_matches('/'),
            "sub": crate::webhooks::clerk_user_id(&identity.id.to_string()),
            "sid": format!("sess_{}", session.id.simple()),
            "iat": iat,
            "nbf": iat,
            // Never past the session's own end: a verifier with the PEM checks nothing online.
            "exp": (iat + lifetime).min(session.expires_at.unix_timestamp()),
            "jti": Uuid::new_v4().simple().to_string(),
            "v": 2,
            "fva": [age("aal1"), age("aal2")],
            "sts": "active",
        });
        if let (Some(azp), Some(o)) = (azp, claims.as_object_mut()) {
            o.insert("azp".into(), json!(azp));
        }
        let custom = &self.config.clerk.session_claims;
        if let (false, Some(o)) = (custom.is_empty(), claims.as_object_mut()) {
            let user = crate::webhooks::clerk_user(identity, &self.config.webhooks.clerk_mapping);
            for (k, v) in custom {
                o.insert(k.clone(), render(v, &user));
            }
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(key.key.kid.clone());
        header.typ = Some("JWT".into());
        let signing = key
            .key
            .encoding
            .as_ref()
            .ok_or_else(|| Error::Internal("the session-token key cannot sign".into()))?;
        jsonwebtoken::encode(&header, &claims, signing).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The SubjectPublicKeyInfo PEM of a stored RSA key.
fn public_pem(stored: &StoredKey, secrets: &[String]) -> Result<String> {
    let private = crate::sealed::open(
        secrets,
        crate::sealed::Purpose::SigningKey,
        &stored.private_enc,
        &stored.kid,
    )
    .map_err(|_| Error::Internal("the Clerk session-token key cannot be opened".into()))?;
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&private)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let der = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Ok(format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    ))
}

impl Core {
    /// Ends the session of `token` (a Clerk sign-out); `None` when it had already ended.
    pub async fn clerk_end_session(
        &self,
        token: &str,
        origin: &crate::audit::Origin,
        now: OffsetDateTime,
    ) -> Result<Option<crate::session::Session>> {
        match self.authenticate(token, now).await {
            Ok((s, i)) => {
                let by = crate::audit::By {
                    actor: crate::audit::Actor::Identity(i.id),
                    origin: origin.clone(),
                };
                self.revoke_session(&s, "logout", &by, now).await.map(Some)
            }
            Err(Error::SessionInactive) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Seals a browser's Clerk client for its cookie.
    pub fn seal_clerk_client(&self, plain: &[u8]) -> Result<String> {
        let secret = self.cipher_secrets().into_iter().next().unwrap_or_default();
        crate::sealed::seal(
            &secret,
            crate::sealed::Purpose::ClerkClient,
            plain,
            "client",
        )
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Opens a `__client` cookie; `None` for anything this server did not seal.
    pub fn open_clerk_client(&self, sealed: &str) -> Option<Vec<u8>> {
        crate::sealed::open(
            &self.cipher_secrets(),
            crate::sealed::Purpose::ClerkClient,
            sealed,
            "client",
        )
        .ok()
    }
}

/// A `clerk.session_claims` value for `user` (the Clerk User object): a string that is one
/// shortcode (`"{{user.public_metadata.role}}"`) becomes that value, whatever its type (null
/// when absent); shortcodes inside a longer string are replaced by their text (empty when
/// absent); objects and arrays are rendered member by member. Clerk's own shortcuts
/// `user.primary_email_address` and `user.full_name` are there too.
fn render(template: &Value, user: &Value) -> Value {
    match template {
        Value::String(s) => render_string(s, user),
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, user)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render(v, user)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn shortcode(path: &str, user: &Value) -> Value {
    let Some(field) = path.trim().strip_prefix("user.") else {
        return Value::Null;
    };
    let text = |k: &str| {
        user.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match field {
        "primary_email_address" => user
            .get("email_addresses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|e| e.get("id") == user.get("primary_email_address_id"))
            })
            .and_then(|e| e.get("email_address"))
            .cloned()
            .unwrap_or(Value::Null),
        "full_name" => {
            let full = format!("{} {}", text("first_name"), text("last_name"));
            json!(full.trim())
        }
        path => path
            .split('.')
            .try_fold(user, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null),
    }
}

fn render_string(s: &str, user: &Value) -> Value {
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
    {
        if !inner.contains("{{") {
            return shortcode(inner, user);
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        match shortcode(&rest[start + 2..start + len], user) {
            Value::String(t) => out.push_str(&t),
            Value::Null => {}
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Value::String(out)
}

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::json;

    #[test]
    fn shortcodes_take_the_users_values_as_clerk_renders_them() {
        let user = json!({
            "id": "user_1", "first_name": "Ada", "last_name": "Lovelace",
            "public_metadata": {"role": "admin", "teams": ["a", "b"]},
            "primary_email_address_id": "idn_2",
            "email_addresses": [{"id": "idn_1", "email_address": "old@example.com"}, {"id": "idn_2", "email_address": "ada@example.com"}],
        });
        let claims = json!({
            "role": "{{user.public_metadata.role}}",
            "teams": "{{ user.public_metadata.teams }}",
            "meta": "{{user.public_metadata}}",
            "email": "{{user.primary_email_address}}",
            "greeting": "Hello {{user.full_name}} ({{user.id}}){{user.nothing}}",
            "missing": "{{user.public_metadata.plan}}",
            "fixed": {"tier": 3, "names": ["{{user.first_name}}"]},
        });
        assert_eq!(
            render(&claims, &user),
            json!({
                "role": "admin",
                "teams": ["a", "b"],
                "meta": {"role": "admin", "teams": ["a", "b"]},
                "email": "ada@example.com",
                "greeting": "Hello Ada Lovelace (user_1)",
                "missing": null,
                "fixed": {"tier": 3, "names": ["Ada"]},
            })
        );
    }
}
