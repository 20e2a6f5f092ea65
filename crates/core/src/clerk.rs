//! Use cases of the Clerk Backend API face: its secret keys, and ban/lock. Users are
//! identities; their Clerk-only state (the ban and lock flags) lives in `metadata_admin.clerk`.

use crate::audit::{AuditKind, By};
use crate::error::Result;
use crate::identity::Identity;
use crate::service::Core;
use crate::store::Effects;
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

/// What stops a Clerk user from signing in; either one makes the identity inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Banned,
    Locked,
}

impl Block {
    fn key(self) -> &'static str {
        match self {
            Block::Banned => "banned",
            Block::Locked => "locked",
        }
    }
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Core {
    /// The id of the Clerk secret key `presented`, if it is one: a configured key (its id is
    /// `config_<n>`, its place in `clerk.secret_keys`) or one created through the admin API.
    /// Every hash is compared in constant time, and the search never stops early.
    pub async fn clerk_key_id(&self, presented: &str) -> Result<Option<String>> {
        let want = key_hash(presented);
        let mut keys: Vec<(String, String)> = self
            .config
            .clerk
            .secret_keys
            .iter()
            .enumerate()
            .map(|(n, k)| (format!("config_{n}"), key_hash(k.expose())))
            .collect();
        keys.extend(self.store.clerk_keys().await?);
        Ok(keys.into_iter().fold(None, |found, (id, h)| {
            let hit = bool::from(h.as_bytes().ct_eq(want.as_bytes()));
            if hit && found.is_none() {
                Some(id)
            } else {
                found
            }
        }))
    }

    /// Creates a Clerk secret key; returns its id and the key, which is shown once (only its
    /// hash is stored).
    pub async fn create_clerk_key(&self, now: OffsetDateTime, by: &By) -> Result<(String, String)> {
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let key = format!("sk_live_{}", hex::encode(raw));
        let id = format!("key_{}", Uuid::new_v4().simple());
        let fx = Effects::none().audited(
            by.record(AuditKind::ClerkKeyCreated, now)
                .target(format!("clerk_key:{id}")),
        );
        self.store
            .insert_clerk_key(&id, &key_hash(&key), now, &fx)
            .await?;
        Ok((id, key))
    }

    /// Revokes a created key; `false` when no active key has this id.
    pub async fn revoke_clerk_key(&self, id: &str, now: OffsetDateTime, by: &By) -> Result<bool> {
        let fx = Effects::none().audited(
            by.record(AuditKind::ClerkKeyRevoked, now)
                .target(format!("clerk_key:{id}")),
        );
        Ok(self.store.revoke_clerk_key(id, now, &fx).await?)
    }

    /// Every identity (Clerk's list filters run over all of them).
    pub async fn all_identities(&self) -> Result<Vec<Identity>> {
        Ok(self.store.all_identities().await?)
    }

    /// Sets or clears a ban or lock, and derives the identity's state from the two flags:
    /// inactive while either is set (its sessions end), active otherwise. The change is saved
    /// through the admin replace, so validation and events are the same as for any update.
    ///
    /// Security review S3: the state is computed from the Clerk flags alone, so unbanning an
    /// identity deactivated through the Kratos admin API re-activates it. This is today's
    /// behaviour, kept as is; the fix belongs here.
    pub async fn set_clerk_block(
        &self,
        mut identity: Identity,
        block: Block,
        on: bool,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<Identity> {
        let mut admin = match identity.metadata_admin.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        // A `clerk` value that is not an object is replaced, like a `metadata_admin` that is
        // not one.
        let flags = admin.entry("clerk").or_insert_with(|| json!({}));
        if !flags.is_object() {
            *flags = json!({});
        }
        if let Some(flags) = flags.as_object_mut() {
            flags.insert(block.key().into(), json!(on));
        }
        let blocked = [Block::Banned, Block::Locked].iter().any(|b| {
            admin
                .get("clerk")
                .and_then(|f| f.get(b.key()))
                .and_then(Value::as_bool)
                == Some(true)
        });
        identity.metadata_admin = Some(Value::Object(admin));
        identity.state = if blocked {
            "inactive".into()
        } else {
            "active".into()
        };
        self.admin_replace_identity(identity.id, replace_body(&identity, None), now, by)
            .await
    }
}

/// The admin replace body that keeps `identity` as it is, optionally with a new password.
pub fn replace_body(identity: &Identity, password: Option<&str>) -> Value {
    let i = identity;
    let mut body = json!({
        "schema_id": i.schema_id, "state": i.state, "traits": i.traits,
        "metadata_public": i.metadata_public, "metadata_admin": i.metadata_admin, "external_id": i.external_id,
    });
    if let (Some(p), Some(b)) = (password, body.as_object_mut()) {
        b.insert(
            "credentials".into(),
            json!({ "password": { "config": { "password": p } } }),
        );
    }
    body
}

/// Clerk's publishable key for the Frontend API at `public_url`'s host (and port): `pk_live_`
/// (or `pk_test_`) and the unpadded base64 of `<host>$`, which clerk-js decodes to find its
/// server. clerk-js refuses a host without a dot (`localhost:4433`), so that is refused here.
pub fn publishable_key(public_url: &str, live: bool) -> std::result::Result<String, String> {
    use base64::Engine;
    let url = url::Url::parse(public_url).map_err(|e| format!("{public_url:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{public_url:?} has no host"))?;
    if !host.contains('.') {
        return Err(format!(
            "clerk-js refuses a publishable key for {host:?}, a host without a dot; serve Portcullis on 127.0.0.1 or a dotted name (e.g. clerk.example.com)"
        ));
    }
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("{host}$"));
    Ok(format!(
        "pk_{}_{encoded}",
        if live { "live" } else { "test" }
    ))
}

#[cfg(test)]
mod publishable_tests {
    use super::publishable_key;

    #[test]
    fn publishable_keys_name_the_host_as_clerk_js_decodes_it() {
        // The values clerk-js's own parser gives for these hosts (FAPI-NOTES §1.1).
        assert_eq!(
            publishable_key("http://127.0.0.1:4433/", false).unwrap(),
            "pk_test_MTI3LjAuMC4xOjQ0MzMk"
        );
        assert_eq!(
            publishable_key("https://auth.example.com/", true).unwrap(),
            "pk_live_YXV0aC5leGFtcGxlLmNvbSQ"
        );
        let err = publishable_key("http://localhost:4433/", true).unwrap_err();
        assert!(err.contains("without a dot"), "{err}");
    }
}
