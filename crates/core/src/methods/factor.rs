//! What the second factors (TOTP, backup codes) share: the secret a settings flow shows
//! before it is saved, sealed at rest; the per-identity budget of wrong codes; the audit
//! record of every change and every wrong code; and what linking a factor does to sessions.

use super::{Aal, Method};
use crate::audit::{Actor, AuditKind, AuditRecord, Origin};
use crate::config::RequiredAal;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::sealed::{self, Purpose};
use crate::service::{urlencode, Core};
use crate::session::Session;
use crate::store::Effects;
use crate::webhooks::EventKind;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Wrong second-factor codes an identity may submit per hour, across flows and faces. A TOTP
/// guess wins with probability 3 in a million (the window of three steps), so this keeps an
/// attacker who has the password far from the second factor.
pub const MAX_WRONG_PER_HOUR: u32 = 10;

/// A secret a settings flow shows but has not saved yet, sealed under `secrets.cipher` and
/// bound to the identity: a new TOTP key, or new backup codes waiting for confirmation. Kept
/// with the flow, never in API responses. The nodes that show secrets are stored empty and
/// filled from here (or from the credential, to reveal codes) only in the answer
/// ([`Core::show_factor_secrets`]), so no flow row holds a secret in the clear.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<String>,
    /// The saved backup codes are shown until then (after `lookup_secret_reveal`; long
    /// enough for the answer and the page a browser is sent to).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub reveal_until: Option<OffsetDateTime>,
    /// The security-key ceremony the form started (registration in settings, sign-in in the
    /// second step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn: Option<super::webauthn::Ceremony>,
    /// The passkey ceremony the form started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passkey: Option<super::webauthn::Ceremony>,
    /// The account a registration mailed a sign-up code for: its id (the code's) and the
    /// traits the code was sent for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_up: Option<SignUp>,
    /// The social sign-in round trip under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<super::oidc::Started>,
    /// The provider account a sign-in on this flow links (account linking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<super::oidc::link::Link>,
    /// A native app's exchange code (`return_session_token_exchange_code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<super::oidc::native::Exchange>,
    /// The address a Clerk user's code would make theirs (`/v1/me/email_addresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignUp {
    pub identity_id: Uuid,
    pub traits: serde_json::Value,
    /// The password the account gets with its code (a Clerk sign-up), hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

/// The outcome of checking a second-factor code.
pub enum Checked {
    /// Right: the identity as saved with the code used up.
    Accepted(Box<Identity>),
    /// Wrong, used, or the factor is missing: the message for the flow.
    Refused(crate::ui::UiText),
}

fn wrong_key(identity: Uuid) -> String {
    format!("mfa-wrong:{identity}")
}

impl Core {
    /// Seals a factor secret of `identity` (see [`crate::sealed`]).
    pub(crate) fn seal_factor(&self, identity: Uuid, plain: &[u8]) -> Result<String> {
        let secret = self.cipher_secrets().into_iter().next().unwrap_or_default();
        sealed::seal(&secret, Purpose::Factor, plain, &identity.to_string())
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Opens a factor secret sealed for `identity`.
    pub(crate) fn open_factor(&self, identity: Uuid, blob: &str) -> Result<Zeroizing<Vec<u8>>> {
        sealed::open(
            &self.cipher_secrets(),
            Purpose::Factor,
            blob,
            &identity.to_string(),
        )
        .map(Zeroizing::new)
        .map_err(|e| Error::Internal(format!("a second-factor secret: {e}")))
    }

    /// Refuses a second-factor check once `identity` has used up its hourly budget of wrong
    /// codes ([`MAX_WRONG_PER_HOUR`]); no code is looked at then. (Read here, counted by
    /// [`Core::second_factor_failed`]: a burst of concurrent guesses can overrun the budget
    /// by the guesses in flight.)
    pub(crate) async fn admit_second_factor(
        &self,
        identity: Uuid,
        now: OffsetDateTime,
    ) -> Result<()> {
        let found = self.store.login_failures(&[wrong_key(identity)]).await?;
        let Some((_, f)) = found.first() else {
            return Ok(());
        };
        let window_end = f.window_start + time::Duration::HOUR;
        if f.count >= MAX_WRONG_PER_HOUR && now < window_end {
            let retry_after = u64::try_from((window_end - now).whole_seconds()).unwrap_or(1);
            return Err(Error::RateLimited {
                retry_after: retry_after.max(1),
            });
        }
        Ok(())
    }

    /// Counts a wrong code against `identity` and audits it.
    pub(crate) async fn second_factor_failed(
        &self,
        identity: Uuid,
        method: Method,
        reason: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.store
            .record_login_failure(&[wrong_key(identity)], now)
            .await?;
        let record = AuditRecord::new(AuditKind::SecondFactorFailed, Actor::Anonymous, origin, now)
            .about(identity)
            .failed(reason)
            .details(json!({ "method": method.as_str() }));
        self.store.insert_audit(&record).await?;
        Ok(())
    }

    /// What a change of a second factor writes with itself: `user.updated` and its record.
    pub(crate) fn factor_effects(
        &self,
        kind: AuditKind,
        method: Method,
        identity: Uuid,
        actor: Actor,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Effects {
        let record = AuditRecord::new(kind, actor, origin, now)
            .about(identity)
            .details(json!({ "method": method.as_str() }));
        Effects::event(EventKind::UserUpdated).audited(record)
    }

    /// Saves a change its owner made to a credential of `identity` (a factor added or
    /// removed), with its `user.updated` event and audit record.
    pub(crate) async fn save_credential_change(
        &self,
        identity: &mut Identity,
        kind: AuditKind,
        method: Method,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        identity.updated_at = now;
        let by = Actor::Identity(identity.id);
        let fx = self.factor_effects(kind, method, identity.id, by, origin, now);
        self.store.update_identity(identity, &fx).await?;
        Ok(())
    }

    /// After a second factor was linked from `session`: that session proves it (so its owner
    /// is not stepped up right after setting it up, as in Kratos), and refresh tokens issued
    /// before end, since the token face would otherwise keep sessions that never showed it.
    pub(crate) async fn second_factor_linked(
        &self,
        identity: &Identity,
        session: &Session,
        method: Method,
        now: OffsetDateTime,
    ) -> Result<()> {
        // Revoked first: whatever becomes of the session, no older token survives.
        self.store
            .revoke_identity_refresh_tokens(identity.id)
            .await?;
        let mut s = session.clone();
        s.add_method(method, now);
        if !self.store.update_session(&s, now, &Effects::none()).await? {
            return Err(Error::SessionInactive);
        }
        Ok(())
    }

    /// Whether `session` satisfies `required` for `identity`: with `highest_available` it
    /// must prove every level the identity can reach. Otherwise the caller is sent to sign in
    /// with the second factor (`return_to` comes back after it).
    pub fn require_aal(
        &self,
        session: &Session,
        identity: &Identity,
        required: RequiredAal,
        return_to: Option<&str>,
    ) -> Result<()> {
        if required == RequiredAal::HighestAvailable
            && session.level() < self.available_aal(identity)
        {
            return Err(Error::Aal2Required {
                redirect_browser_to: self.aal2_login_url(return_to),
            });
        }
        Ok(())
    }

    /// The highest assurance level `identity` can reach on the Kratos faces: aal2 with TOTP
    /// or backup codes, or with a verified e-mail address when codes are a second factor
    /// (`code.mfa_enabled`). The token face cannot mail a code and uses
    /// [`Identity::available_aal`] (the identity's own factors) instead.
    pub fn available_aal(&self, identity: &Identity) -> Aal {
        let by_mail = self.config.selfservice.methods.code.mfa_enabled
            && !crate::selfservice::code_addresses(identity).is_empty();
        if by_mail {
            Aal::Aal2
        } else {
            identity.available_aal()
        }
    }

    /// `GET /sessions/whoami`'s check (`session.whoami.required_aal`).
    pub fn require_whoami_aal(&self, session: &Session, identity: &Identity) -> Result<()> {
        let required = self.config.session.whoami.required_aal;
        self.require_aal(session, identity, required, None)
    }

    /// Where a browser signs in with its second factor: the login flow with `aal=aal2`.
    pub fn aal2_login_url(&self, return_to: Option<&str>) -> String {
        let mut url = format!(
            "{}self-service/login/browser?aal={}",
            self.public_url(),
            Aal::Aal2.as_str()
        );
        if let Some(r) = return_to.filter(|r| !r.is_empty()) {
            url += &format!("&return_to={}", urlencode(r));
        }
        url
    }

    /// Removes a second factor of `identity` (settings, the Kratos admin API, Clerk's
    /// `DELETE /v1/users/{id}/mfa`), with its event and record. `false` when it had none.
    pub(crate) async fn remove_factor(
        &self,
        identity: &mut Identity,
        method: Method,
        actor: Actor,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<bool> {
        if method == Method::WebAuthn {
            // Passwordless keys sign in on their own: only the second-factor keys go.
            let mut list = crate::methods::webauthn::KeyList::of(identity, method);
            let before = list.credentials.len();
            list.credentials.retain(|k| k.is_passwordless);
            if list.credentials.len() == before {
                return Ok(false);
            }
            let ids = identity
                .credentials
                .get(method.as_str())
                .map(|c| c.identifiers.clone())
                .unwrap_or_default();
            list.save(identity, method, ids, now);
        } else if identity.credentials.remove(method.as_str()).is_none() {
            return Ok(false);
        }
        identity.updated_at = now;
        let fx = self.factor_effects(
            AuditKind::SecondFactorRemoved,
            method,
            identity.id,
            actor,
            origin,
            now,
        );
        self.store.update_identity(identity, &fx).await?;
        Ok(true)
    }

    /// `DELETE /admin/identities/{id}/credentials/{type}` (Kratos): removes a second factor.
    /// First factors (password, code) cannot be removed this way, as in Kratos.
    pub async fn admin_delete_credential(
        &self,
        id: Uuid,
        kind: &str,
        by: &crate::audit::By,
    ) -> Result<()> {
        let method = match kind {
            "totp" => Method::Totp,
            "lookup_secret" => Method::LookupSecret,
            "webauthn" => Method::WebAuthn,
            "password" | "code" | "passkey" => {
                return Err(Error::bad_request(format!(
                    "You cannot remove first factor credentials ({}).",
                    crate::ui::echo(kind)
                )))
            }
            _ => {
                return Err(Error::bad_request(format!(
                    "Unknown or unsupported credential type {:?}.",
                    crate::ui::echo(kind)
                )))
            }
        };
        let mut identity = self
            .store
            .get_identity(id)
            .await?
            .ok_or_else(|| Error::not_found("Unable to locate the resource"))?;
        let now = self.now();
        if !self
            .remove_factor(&mut identity, method, by.actor.clone(), &by.origin, now)
            .await?
        {
            return Err(Error::not_found(format!(
                "You tried to remove a {kind} but this user has no {kind} set up."
            )));
        }
        Ok(())
    }

    /// Clerk's `DELETE /v1/users/{id}/mfa`: removes every second factor; the identity after.
    pub async fn disable_second_factors(
        &self,
        id: Uuid,
        by: &crate::audit::By,
    ) -> Result<Identity> {
        let mut identity = self
            .store
            .get_identity(id)
            .await?
            .ok_or_else(|| Error::not_found("Unable to locate the resource"))?;
        let now = self.now();
        for method in [Method::Totp, Method::LookupSecret, Method::WebAuthn] {
            self.remove_factor(&mut identity, method, by.actor.clone(), &by.origin, now)
                .await?;
        }
        Ok(identity)
    }

    /// Fills the secret-bearing nodes of a settings flow's answer: the pending TOTP key (QR
    /// code and text), pending or revealed backup codes. A secret that cannot be opened (the
    /// key was rotated out) is left empty and logged.
    pub(crate) fn show_factor_secrets(&self, flow: &mut crate::flow::Flow, identity: &Identity) {
        let Some(pending) = flow.pending.clone() else {
            return;
        };
        if let Some(sealed) = &pending.totp {
            if let Err(e) = self.show_totp_key(flow, identity, sealed) {
                tracing::error!(error = %e, "a pending TOTP key cannot be shown");
            }
        }
        if let Err(e) = self.show_lookup_codes(flow, identity, &pending) {
            tracing::error!(error = %e, "backup codes cannot be shown");
        }
    }

    /// Whether a second factor of `method` is switched on.
    pub(crate) fn factor_enabled(&self, method: Method) -> bool {
        let m = &self.config.selfservice.methods;
        match method {
            Method::Totp => m.totp.is_enabled(),
            Method::LookupSecret => m.lookup_secret.is_enabled(),
            Method::WebAuthn => self.security_keys_enabled(),
            _ => false,
        }
    }
}
