//! Sessions and their opaque tokens.
//!
//! A token is 32 alphanumeric characters from the OS CSPRNG (~190 bits). Only its SHA-256 is
//! stored: tokens are high-entropy, so a fast hash is enough and a database leak reveals none.

use crate::identity::{rfc3339, Identity, View};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

pub const TOKEN_PREFIX: &str = "ory_st_";

/// How many completed methods a session keeps (a refresh sign-in adds one each time).
const MAX_METHODS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthMethod {
    pub method: String,
    pub aal: String,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
    /// The social sign-in provider's id, for `oidc` (Kratos's `provider`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: Uuid,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub token_hash: String,
    pub identity_id: Uuid,
    pub active: bool,
    pub aal: String,
    pub authentication_methods: Vec<AuthMethod>,
    pub devices: Vec<Device>,
    pub issued_at: OffsetDateTime,
    pub authenticated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A freshly minted token: the secret goes to the client once, the hash to the store.
pub struct NewToken {
    pub token: String,
    pub hash: String,
}

pub fn new_token() -> NewToken {
    let body: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let token = format!("{TOKEN_PREFIX}{body}");
    let hash = hash_token(&token);
    NewToken { token, hash }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Session {
    pub fn new(
        identity_id: Uuid,
        method: crate::methods::Method,
        token_hash: String,
        lifespan: std::time::Duration,
        device: Device,
        now: OffsetDateTime,
    ) -> Self {
        Session {
            id: Uuid::new_v4(),
            token_hash,
            identity_id,
            active: true,
            aal: method.aal().as_str().into(),
            authentication_methods: vec![AuthMethod {
                method: method.as_str().into(),
                aal: method.aal().as_str().into(),
                completed_at: now,
                provider: None,
            }],
            devices: vec![device],
            issued_at: now,
            authenticated_at: now,
            expires_at: now + lifespan,
        }
    }

    /// Records a method completed `now` (a refresh sign-in, a second factor) and recomputes
    /// the level as Kratos does: aal2 when the session holds both a first and a second factor.
    /// Bounded to the newest [`MAX_METHODS`], keeping the last method of each level.
    pub fn add_method(&mut self, method: crate::methods::Method, now: OffsetDateTime) {
        use crate::methods::Aal;
        self.authenticated_at = now;
        self.authentication_methods.push(AuthMethod {
            method: method.as_str().into(),
            aal: method.aal().as_str().into(),
            completed_at: now,
            provider: None,
        });
        while self.authentication_methods.len() > MAX_METHODS {
            // Drop the oldest entry whose level another entry still proves.
            let methods = &self.authentication_methods;
            let spare = methods
                .iter()
                .position(|m| methods.iter().filter(|o| o.aal == m.aal).count() > 1);
            self.authentication_methods.remove(spare.unwrap_or(0));
        }
        let has = |aal: Aal| {
            self.authentication_methods
                .iter()
                .any(|m| m.aal == aal.as_str())
        };
        self.aal = if has(Aal::Aal1) && has(Aal::Aal2) {
            Aal::Aal2
        } else {
            Aal::Aal1
        }
        .as_str()
        .into();
    }

    /// Names the provider of the method completed last (a social sign-in).
    pub fn name_provider(&mut self, provider: Option<&str>) {
        if let (Some(p), Some(last)) = (provider, self.authentication_methods.last_mut()) {
            last.provider = Some(p.to_string());
        }
    }

    /// The assurance level the session proves.
    pub fn level(&self) -> crate::methods::Aal {
        crate::methods::Aal::parse(&self.aal).unwrap_or(crate::methods::Aal::Aal1)
    }

    /// The token of this session's logout link: an HMAC of a fixed label keyed by the stored
    /// token hash, so it needs no storage, changes with every session and cannot be derived
    /// by anyone who has not read the database.
    pub fn logout_token(&self) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.token_hash.as_bytes()) else {
            return String::new();
        };
        mac.update(b"portcullis logout token");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is this session's logout token (constant time).
    pub fn is_logout_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.logout_token();
        !token.is_empty() && expected.as_bytes().ct_eq(token.as_bytes()).into()
    }

    /// Active, not expired, and its identity is active.
    pub fn is_valid(&self, identity: &Identity, now: OffsetDateTime) -> bool {
        self.active && self.expires_at > now && identity.is_active()
    }

    pub fn to_api_json(
        &self,
        identity: Option<&Identity>,
        public_url: &str,
        view: View<'_>,
        now: OffsetDateTime,
    ) -> Value {
        let mut v = json!({
            "id": self.id,
            "active": self.active && self.expires_at > now,
            "expires_at": rfc3339(self.expires_at),
            "authenticated_at": rfc3339(self.authenticated_at),
            "authenticator_assurance_level": self.aal,
            "authentication_methods": self.authentication_methods.iter().map(|m| {
                let mut v = json!({
                    "method": m.method, "aal": m.aal, "completed_at": rfc3339(m.completed_at)
                });
                if let (Some(p), Some(o)) = (&m.provider, v.as_object_mut()) {
                    o.insert("provider".into(), json!(p));
                }
                v
            }).collect::<Vec<_>>(),
            "issued_at": rfc3339(self.issued_at),
            "devices": self.devices,
        });
        if let (Some(i), Some(o)) = (identity, v.as_object_mut()) {
            o.insert("identity".into(), i.to_api_json(public_url, view));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_factor_raises_the_level_and_the_method_list_stays_bounded() {
        use crate::methods::{Aal, Method};
        let now = OffsetDateTime::UNIX_EPOCH;
        let device = Device {
            id: Uuid::nil(),
            ip_address: None,
            user_agent: None,
            location: None,
        };
        let mut s = Session::new(
            Uuid::nil(),
            Method::Password,
            String::new(),
            std::time::Duration::from_secs(60),
            device,
            now,
        );
        assert_eq!(s.level(), Aal::Aal1);
        s.add_method(Method::Totp, now + time::Duration::SECOND);
        assert_eq!(s.level(), Aal::Aal2);
        assert_eq!(s.authenticated_at, now + time::Duration::SECOND);
        for _ in 0..40 {
            s.add_method(Method::Password, now);
        }
        assert_eq!(s.authentication_methods.len(), MAX_METHODS);
        // The one second factor is kept however many refreshes follow.
        assert_eq!(s.level(), Aal::Aal2);
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), TOKEN_PREFIX.len() + 32);
        assert_eq!(a.hash, hash_token(&a.token));
        assert_ne!(a.hash, a.token);
    }
}
