//! Credential use cases: find an identity by its password identifier, check a password at
//! equal cost whether or not the identity exists, the password policy, and what a new
//! password ends.

use crate::error::Result;
use crate::identity::Identity;
use crate::password::check_policy;
use crate::service::Core;
use crate::store::IdentityQuery;
use crate::ui::{msg, UiText};
use time::OffsetDateTime;
use uuid::Uuid;

impl Core {
    /// Looks `identifier` up as written, then lower-cased: email identifiers are stored
    /// lower-cased, other identifiers as written, so `Ada@Example.com` still finds its owner.
    async fn find_by_password_identifier(&self, identifier: &str) -> Result<Option<Identity>> {
        let found = self
            .store
            .find_identity_by_identifier("password", identifier)
            .await?;
        match lowered(identifier) {
            Some(lower) if found.is_none() => Ok(self
                .store
                .find_identity_by_identifier("password", &lower)
                .await?),
            _ => Ok(found),
        }
    }

    /// `GET /admin/identities`: a page of identities, with the same lower-cased retry as sign-in
    /// when a `credentials_identifier` filter finds nothing as written.
    pub async fn list_identities(&self, q: IdentityQuery) -> Result<Vec<Identity>> {
        let rows = self.store.list_identities(&q).await?;
        let lower = q.credentials_identifier.as_deref().and_then(lowered);
        match lower {
            Some(lower) if rows.is_empty() => Ok(self
                .store
                .list_identities(&IdentityQuery {
                    credentials_identifier: Some(lower),
                    ..q
                })
                .await?),
            _ => Ok(rows),
        }
    }

    /// Finds the identity with this password identifier and checks the password, at the same
    /// cost whether or not it exists (a dummy hash stands in). With `only`, an identifier of any
    /// other identity counts as unknown. A verified hash of an older algorithm or weaker
    /// parameters is upgraded. Returns the identity only when the password is right; the caller
    /// decides what an inactive identity may do.
    pub async fn verify_password_login(
        &self,
        identifier: &str,
        password: &str,
        only: Option<Uuid>,
        now: OffsetDateTime,
    ) -> Result<Option<Identity>> {
        let mut found = self.find_by_password_identifier(identifier.trim()).await?;
        if let (Some(i), Some(owner)) = (&found, only) {
            if i.id != owner {
                found = None;
            }
        }
        let hash = found
            .as_ref()
            .and_then(|i| i.password_hash().map(str::to_string));
        let verified = self.hasher.verify(password.to_string(), hash).await?;
        let Some(mut identity) = found.filter(|_| verified.ok) else {
            return Ok(None);
        };
        if verified.needs_rehash {
            let new_hash = self.hasher.hash(password.to_string()).await?;
            let ids = identity
                .credentials
                .get("password")
                .map(|c| c.identifiers.clone())
                .unwrap_or_default();
            identity.set_password_hash(new_hash, ids, now);
            identity.updated_at = now;
            self.store.update_identity(&mut identity).await?;
        }
        Ok(Some(identity))
    }

    /// Checks `password` against the identity's own hash (Clerk's `verify_password`). `None`
    /// when the identity has no password at all.
    pub async fn check_identity_password(
        &self,
        identity: &Identity,
        password: &str,
    ) -> Result<Option<bool>> {
        let Some(hash) = identity.password_hash().map(str::to_string) else {
            return Ok(None);
        };
        let v = self.hasher.verify(password.to_string(), Some(hash)).await?;
        Ok(Some(v.ok))
    }

    /// The first password-policy violation, including the hasher's own input limit.
    pub(crate) fn password_problem(
        &self,
        password: &str,
        identifiers: &[String],
    ) -> Option<UiText> {
        if let Some(max) = self.hasher.max_password_bytes() {
            if password.len() > max {
                return Some(msg::password_max_length(max, password.len()));
            }
        }
        self.password_policy_problem(password, identifiers)
    }

    /// The configured password policy alone (Clerk checks it before the hasher's limit).
    pub fn password_policy_problem(
        &self,
        password: &str,
        identifiers: &[String],
    ) -> Option<UiText> {
        check_policy(
            password,
            identifiers,
            &self.config.selfservice.methods.password.config,
        )
    }

    /// A new password ends the identity's refresh-token families (configurable).
    pub(crate) async fn password_changed(&self, identity_id: Uuid) -> Result<()> {
        if self.config.tokens.revoke_on_password_change {
            self.store
                .revoke_identity_refresh_tokens(identity_id)
                .await?;
        }
        Ok(())
    }
}

/// The lower-cased identifier, when lower-casing changes it.
fn lowered(identifier: &str) -> Option<String> {
    let lower = identifier.to_lowercase();
    (lower != identifier).then_some(lower)
}
