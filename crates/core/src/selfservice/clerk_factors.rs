//! The second factors a signed-in user sets up from Clerk's `<UserProfile/>`: an
//! authenticator app (a key shown once, linked when a code of it comes back, with backup codes
//! alongside when the account has none yet) and backup codes (twelve new ones, shown once).
//! They are the Kratos `totp` and `lookup_secret` credentials the hosted settings page links,
//! under the same rules: a session recent enough for a privileged change
//! (`selfservice.flows.settings.privileged_session_max_age`) that proved every factor the
//! account has, wrong codes counted against the account's second-factor budget, the change
//! saved with its `user.updated` event and audit record, and the session raised to the new
//! factor so its owner stays signed in.

use crate::audit::{Actor, AuditKind, Origin};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::methods::totp::NewTotpKey;
use crate::methods::Method;
use crate::service::Core;
use crate::session::Session;
use crate::ui::UiText;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// What a code for a pending authenticator app ends in.
pub enum TotpVerified {
    /// Linked; with the backup codes made alongside, when the account had none.
    Linked {
        identity: Box<Identity>,
        backup_codes: Option<Zeroizing<Vec<String>>>,
    },
    /// Not one of the key's codes (or none was sent): the message for the code field.
    Refused(UiText),
}

impl Core {
    /// Whether `session` may change the second factors of `identity` now.
    fn factor_change_allowed(
        &self,
        session: &Session,
        identity: &Identity,
        method: Method,
        now: OffsetDateTime,
    ) -> Result<()> {
        if !self.factor_enabled(method) || session.identity_id != identity.id {
            return Err(Error::bad_request(
                "This second factor is not enabled on this server.",
            ));
        }
        self.require_whoami_aal(session, identity)?;
        self.require_factors_proven(session, identity, self.public_url())?;
        if !self.is_privileged(session, now) {
            return Err(Error::RefreshRequired {
                redirect_browser_to: self.public_url().to_string(),
            });
        }
        Ok(())
    }

    /// `POST /v1/me/totp`: a new key for the account's authenticator app, not linked until a
    /// code of it comes back. `None` when the account has one already.
    pub fn clerk_totp_start(
        &self,
        session: &Session,
        identity: &Identity,
        now: OffsetDateTime,
    ) -> Result<Option<NewTotpKey>> {
        self.factor_change_allowed(session, identity, Method::Totp, now)?;
        if identity.credentials.contains_key(Method::Totp.as_str()) {
            return Ok(None);
        }
        self.new_totp_key(identity).map(Some)
    }

    /// `POST /v1/me/totp/attempt_verification`: links the key `sealed` (from
    /// [`Core::clerk_totp_start`]) when `code` is one of its codes.
    pub async fn clerk_totp_verify(
        &self,
        session: &Session,
        identity: &Identity,
        sealed: Option<String>,
        code: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<TotpVerified> {
        self.factor_change_allowed(session, identity, Method::Totp, now)?;
        let (Some(sealed), false) = (
            sealed,
            identity.credentials.contains_key(Method::Totp.as_str()),
        ) else {
            return Ok(TotpVerified::Refused(
                crate::methods::totp::msg::wrong_code(),
            ));
        };
        if code.trim().is_empty() {
            return Ok(TotpVerified::Refused(crate::ui::msg::required("code")));
        }
        let credential = match self
            .proven_totp_key(identity.id, sealed, code, origin, now)
            .await?
        {
            Ok(c) => c,
            Err(text) => return Ok(TotpVerified::Refused(text)),
        };
        let mut linked = identity.clone();
        linked
            .credentials
            .insert(Method::Totp.as_str().into(), credential);
        let lookup = Method::LookupSecret;
        let backup_codes =
            if self.factor_enabled(lookup) && !identity.credentials.contains_key(lookup.as_str()) {
                let (codes, sealed) = self.new_lookup_codes(identity.id)?;
                let credential = self.lookup_credential(identity.id, &codes, sealed, now);
                linked
                    .credentials
                    .insert(lookup.as_str().into(), credential);
                Some(codes)
            } else {
                None
            };
        self.save_credential_change(
            &mut linked,
            AuditKind::SecondFactorAdded,
            Method::Totp,
            origin,
            now,
        )
        .await?;
        self.second_factor_linked(&linked, session, Method::Totp, now)
            .await?;
        Ok(TotpVerified::Linked {
            identity: Box::new(linked),
            backup_codes,
        })
    }

    /// `DELETE /v1/me/totp`: unlinks the authenticator app. `false` when there was none.
    pub async fn clerk_totp_remove(
        &self,
        session: &Session,
        identity: &Identity,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<bool> {
        self.factor_change_allowed(session, identity, Method::Totp, now)?;
        let mut changed = identity.clone();
        let by = Actor::Identity(identity.id);
        self.remove_factor(&mut changed, Method::Totp, by, origin, now)
            .await
    }

    /// `POST /v1/me/backup_codes`: twelve new backup codes in place of any the account had,
    /// shown this once.
    pub async fn clerk_backup_codes(
        &self,
        session: &Session,
        identity: &Identity,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Zeroizing<Vec<String>>> {
        let lookup = Method::LookupSecret;
        self.factor_change_allowed(session, identity, lookup, now)?;
        let (codes, sealed) = self.new_lookup_codes(identity.id)?;
        let mut changed = identity.clone();
        let credential = self.lookup_credential(identity.id, &codes, sealed, now);
        changed
            .credentials
            .insert(lookup.as_str().into(), credential);
        self.save_credential_change(
            &mut changed,
            AuditKind::SecondFactorAdded,
            lookup,
            origin,
            now,
        )
        .await?;
        self.second_factor_linked(&changed, session, lookup, now)
            .await?;
        Ok(codes)
    }
}
