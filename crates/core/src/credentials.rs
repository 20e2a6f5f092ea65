//! Credential use cases: find an identity by its password identifier, check a password at
//! equal cost whether or not the identity exists, the password policy, and what a new
//! password ends.

use crate::audit::{Actor, AuditKind, AuditRecord, Origin};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::password::check_policy;
use crate::ratelimit::{self, Decision};
use crate::service::Core;
use crate::store::{Effects, IdentityQuery};
use crate::ui::{msg, UiText};
use crate::webhooks::EventKind;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

impl Core {
    /// Looks `identifier` up as written, then lower-cased: email identifiers are stored
    /// lower-cased, other identifiers as written, so `Ada@Example.com` still finds its owner.
    pub(crate) async fn find_by_password_identifier(
        &self,
        identifier: &str,
    ) -> Result<Option<Identity>> {
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
    ///
    /// Brute-force protection comes first ([`crate::ratelimit`]): a throttled attempt is
    /// refused with [`Error::RateLimited`] before any hash runs, the same way for known and
    /// unknown identifiers. Every outcome goes to the audit log.
    pub async fn verify_password_login(
        &self,
        identifier: &str,
        password: &str,
        only: Option<Uuid>,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Option<Identity>> {
        let identifier = identifier.trim();
        let mut found = self.find_by_password_identifier(identifier).await?;
        if let (Some(i), Some(owner)) = (&found, only) {
            if i.id != owner {
                found = None;
            }
        }
        let (account, pair) = ratelimit::keys(identifier, origin.ip.as_deref());
        let keys = [account, pair];
        self.admit_password_attempt(&keys, found.as_ref(), origin, now)
            .await?;
        let hash = found
            .as_ref()
            .and_then(|i| i.password_hash().map(str::to_string));
        let found_id = found.as_ref().map(|i| i.id);
        let verified = self.hasher.verify(password.to_string(), hash).await?;
        let Some(mut identity) = found.filter(|_| verified.ok) else {
            self.password_attempt_failed(&keys, found_id, origin, now)
                .await?;
            return Ok(None);
        };
        if identity.is_active() {
            self.password_attempt_succeeded(&keys, identity.id, origin, now)
                .await?;
        } else {
            // The password matched, but nobody signs in: not a success (found by the attack).
            let record = AuditRecord::new(AuditKind::LoginFailed, Actor::Anonymous, origin, now)
                .about(identity.id)
                .failed("identity_inactive")
                .details(json!({ "method": "password" }));
            self.store.insert_audit(&record).await?;
        }
        if verified.needs_rehash {
            let new_hash = self.hasher.hash(password.to_string()).await?;
            let ids = identity
                .credentials
                .get("password")
                .map(|c| c.identifiers.clone())
                .unwrap_or_default();
            identity.set_password_hash(new_hash, ids, now);
            identity.updated_at = now;
            // A rehash changes no secret the user knows: an event, no audit record.
            let fx = Effects::event(EventKind::UserUpdated);
            self.store.update_identity(&mut identity, &fx).await?;
        }
        Ok(Some(identity))
    }

    /// Checks `password` against the identity's own hash (Clerk's `verify_password`). `None`
    /// when the identity has no password at all. The account's failures are counted and
    /// throttled like sign-in attempts (keyed by the identity, since no identifier is typed).
    pub async fn check_identity_password(
        &self,
        identity: &Identity,
        password: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Option<bool>> {
        let Some(hash) = identity.password_hash().map(str::to_string) else {
            return Ok(None);
        };
        let (account, pair) =
            ratelimit::keys(&format!("identity:{}", identity.id), origin.ip.as_deref());
        let keys = [account, pair];
        self.admit_password_attempt(&keys, Some(identity), origin, now)
            .await?;
        let v = self.hasher.verify(password.to_string(), Some(hash)).await?;
        if v.ok {
            self.password_attempt_succeeded(&keys, identity.id, origin, now)
                .await?;
        } else {
            self.password_attempt_failed(&keys, Some(identity.id), origin, now)
                .await?;
        }
        Ok(Some(v.ok))
    }

    /// Refuses a password attempt the throttle does not admit (and records the trip).
    async fn admit_password_attempt(
        &self,
        keys: &[String; 2],
        found: Option<&Identity>,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        let cfg = &self.config.security.brute_force;
        if !cfg.enabled {
            return Ok(());
        }
        let counters = self.store.login_failures(keys).await?;
        let get = |key: &String| counters.iter().find(|(k, _)| k == key).map(|(_, f)| f);
        let (account, pair) = (get(&keys[0]), get(&keys[1]));
        let mut decision = cfg.decide(account, pair, false, now);
        if let (Decision::Deny { .. }, Some(identity), Some(ip)) =
            (decision, found, origin.ip.as_deref())
        {
            // Only now is it worth asking whether this is one of the account's own devices.
            let since = now - cfg.known_device_window.0;
            if self
                .store
                .has_session_from_ip(identity.id, ip, since)
                .await?
            {
                decision = cfg.decide(account, pair, true, now);
            }
        }
        let Decision::Deny { retry_after } = decision else {
            return Ok(());
        };
        let mut record = AuditRecord::new(AuditKind::RateLimited, Actor::Anonymous, origin, now)
            .failed("password_attempts")
            .details(json!({ "retry_after": retry_after.as_secs() }));
        if let Some(i) = found {
            record = record.about(i.id);
        }
        self.store.insert_audit(&record).await?;
        Err(Error::RateLimited {
            retry_after: retry_after.as_secs(),
        })
    }

    async fn password_attempt_failed(
        &self,
        keys: &[String; 2],
        identity: Option<Uuid>,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        if self.config.security.brute_force.enabled {
            self.store.record_login_failure(keys, now).await?;
        }
        let mut record = AuditRecord::new(AuditKind::LoginFailed, Actor::Anonymous, origin, now)
            .failed("invalid_credentials")
            .details(json!({ "method": "password" }));
        if let Some(id) = identity {
            record = record.about(id);
        }
        self.store.insert_audit(&record).await?;
        Ok(())
    }

    async fn password_attempt_succeeded(
        &self,
        keys: &[String; 2],
        identity: Uuid,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        if self.config.security.brute_force.enabled {
            self.store.reset_login_failures(keys).await?;
        }
        let record = AuditRecord::new(
            AuditKind::LoginSucceeded,
            Actor::Identity(identity),
            origin,
            now,
        )
        .about(identity)
        .reason("password");
        self.store.insert_audit(&record).await?;
        Ok(())
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
