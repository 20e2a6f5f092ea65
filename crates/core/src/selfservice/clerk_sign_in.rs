//! Sign-ins from Clerk's Frontend API (`<SignIn/>`): a first factor (the password, or a code
//! mailed to the address), then the identity's second factor if it has one this face asks
//! for (an authenticator app's code, or a backup code). Each step is the Kratos login's: its
//! counters, web hooks, `require_verified_address`, `revoke_active_sessions` and events. The
//! session is made only when the last step passes, with every method it proved, so a sign-in
//! left at its second step leaves no session behind (Kratos keeps an aal1 one).
//!
//! The emailed code is the Kratos code login's (`selfservice.methods.code.passwordless_enabled`),
//! on a stored login API flow the browser's sealed Clerk client names: an address without an
//! account is answered like one with and mailed nothing, so no code ever matches.

use super::clerk_reset_password::PendingReset;
use crate::error::{Result, SubmitError};
use crate::flow::{FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::factor::Checked;
use crate::methods::{Aal, Method};
use crate::service::{Caller, Core};
use crate::store::Effects;
use crate::webhooks::EventKind;
use time::OffsetDateTime;
use uuid::Uuid;

/// A first factor, by its Clerk strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFactor {
    Password,
    EmailCode,
    /// "Forgot password?": a code mailed to the address, then a new password
    /// (`clerk_reset_password.rs`).
    ResetPasswordEmailCode,
}

/// A second factor, by its Clerk strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    BackupCode,
}

impl FirstFactor {
    pub const fn strategy(self) -> &'static str {
        match self {
            FirstFactor::Password => "password",
            FirstFactor::EmailCode => "email_code",
            FirstFactor::ResetPasswordEmailCode => "reset_password_email_code",
        }
    }
    pub fn parse(strategy: &str) -> Option<Self> {
        [
            FirstFactor::Password,
            FirstFactor::EmailCode,
            FirstFactor::ResetPasswordEmailCode,
        ]
        .into_iter()
        .find(|f| f.strategy() == strategy)
    }
    const fn method(self) -> Method {
        match self {
            FirstFactor::Password => Method::Password,
            FirstFactor::EmailCode => Method::Code,
            FirstFactor::ResetPasswordEmailCode => Method::CodeRecovery,
        }
    }
}

impl SecondFactor {
    pub const fn strategy(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::BackupCode => "backup_code",
        }
    }
    pub fn parse(strategy: &str) -> Option<Self> {
        [SecondFactor::Totp, SecondFactor::BackupCode]
            .into_iter()
            .find(|f| f.strategy() == strategy)
    }
    const fn method(self) -> Method {
        match self {
            SecondFactor::Totp => Method::Totp,
            SecondFactor::BackupCode => Method::LookupSecret,
        }
    }
}

/// A sign-in's first factor, passed: by whom, which, and when.
#[derive(Debug, Clone)]
pub struct FirstPassed {
    pub identity: Uuid,
    pub first: FirstFactor,
    pub at: OffsetDateTime,
    /// A new password waiting for the second factor ("Forgot password?").
    pub reset: Option<PendingReset>,
}

/// Where a Clerk sign-in stands after a step.
pub enum SignedIn {
    /// A new session (its token, for the client to keep) for the identity.
    Session(Box<crate::session::Session>, String, Box<Identity>),
    /// The identifier and the password (or the code) do not match an active account: one
    /// answer for every reason, as the Kratos face gives.
    Refused,
    /// The first factor passed; the identity's second factor comes next, one of `factors`.
    SecondFactor {
        identity: Uuid,
        factors: Vec<SecondFactor>,
        /// A new password that is set only once the second factor passes.
        reset: Option<PendingReset>,
    },
    /// The account's only second factor is one this face does not ask for (a security key,
    /// an emailed code), and `session.whoami.required_aal` requires it.
    SecondFactorElsewhere,
    /// A code is on its way to the address (or seems to be); good until `expires_at`.
    CodeSent {
        flow_id: Uuid,
        expires_at: OffsetDateTime,
    },
    /// The step came too late (its code, or the wait for the second factor): start again.
    Expired,
    /// A reset code came back right: the identity's new password comes next.
    NewPasswordNeeded { identity: Uuid },
    /// The new password is refused (the policy's reason).
    PasswordRefused(crate::ui::UiText),
}

impl Core {
    /// The identity `id` while it is active; a sign-in of a disabled or deleted one goes no
    /// further.
    pub(super) async fn active_identity(&self, id: Uuid) -> Result<Option<Identity>> {
        Ok(self
            .store
            .get_identity(id)
            .await?
            .filter(Identity::is_active))
    }

    /// Whether a sign-in may ask for a code mailed to its address
    /// (`selfservice.methods.code.passwordless_enabled`).
    pub fn clerk_email_code_enabled(&self) -> bool {
        self.config.selfservice.methods.code.passwordless_enabled
    }

    /// A password sign-in: what the Kratos face's password login does, then the second
    /// factor or a session.
    pub async fn clerk_password_sign_in(
        &self,
        identifier: &str,
        password: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignedIn> {
        use crate::config::HookName;
        let hooked = self.flowless_login(caller, now);
        if let Some(flow) = &hooked {
            self.flowless_login_hooks(flow, None, caller).await?;
        }
        let identity = self
            .verify_password_login(identifier, password, None, &caller.origin(), now)
            .await?;
        let Some(identity) = identity.filter(Identity::is_active) else {
            return Ok(SignedIn::Refused);
        };
        let after = self.config.after(FlowKind::Login);
        // An account without a verified address is refused like a wrong password: a password
        // sign-in mails no code, and under enumeration mitigation a fresh sign-up must not be
        // told from a taken address by signing in with its password.
        if after.runs(
            Method::Password.as_str(),
            HookName::RequireVerifiedAddress,
            false,
        ) && !identity.verifiable_addresses.iter().any(|a| a.verified)
        {
            return Ok(SignedIn::Refused);
        }
        if let Some(flow) = &hooked {
            self.flowless_login_hooks(flow, Some(&identity), caller)
                .await?;
        }
        self.clerk_first_factor_passed(identity, FirstFactor::Password, caller, now)
            .await
    }

    /// An emailed-code sign-in for `identifier`: without `code`, mails one (a new login flow
    /// unless `flow_id` names the sign-in's); with it, checks it. The code's own rules are the
    /// Kratos code login's: its attempts, its lifespan, its send limits.
    pub async fn clerk_code_sign_in(
        &self,
        flow_id: Option<Uuid>,
        identifier: &str,
        code: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignedIn> {
        let started = tokio::time::Instant::now();
        if !self.clerk_email_code_enabled() {
            return Ok(SignedIn::Refused);
        }
        let mut flow = match flow_id {
            Some(id) => self.stored_flow(FlowKind::Login, id).await?,
            None => {
                let url = format!("{}/v1/client/sign_ins", self.public_url());
                self.new_login_flow(FlowType::Api, url, false, Aal::Aal1, None, caller, now)
                    .await?
            }
        };
        if flow.is_expired(now) {
            return Ok(SignedIn::Expired);
        }
        if flow.state == "passed_challenge" {
            return Ok(SignedIn::Refused);
        }
        flow.ui.reset_messages();
        let checked = self
            .login_with_code(
                &mut flow,
                Some(identifier.to_string()),
                code.map(str::to_string),
                caller,
                now,
            )
            .await;
        let identity = match checked {
            Ok(identity) => identity,
            Err(SubmitError::FlowInvalid { flow, .. }) => {
                // Mailing a code takes as long as mailing none (an address without an
                // account), so the answer's time tells no addresses apart.
                if code.is_none() {
                    tokio::time::sleep_until(started + crate::methods::code::SEND_FLOOR).await;
                }
                let refused = flow.ui.messages.iter().any(|t| t.kind == "error");
                return Ok(match (&flow.code, refused || code.is_some()) {
                    (Some(sent), false) => SignedIn::CodeSent {
                        flow_id: flow.id,
                        expires_at: sent.expires_at,
                    },
                    _ => SignedIn::Refused,
                });
            }
            Err(SubmitError::Refused(e)) => return Err(e),
        };
        // One sign-in per code: of two racing checks, one goes on.
        let flow = match self.complete_login_flow(flow, now).await {
            Ok(flow) => flow,
            Err(SubmitError::FlowInvalid { .. }) => return Ok(SignedIn::Refused),
            Err(SubmitError::Refused(e)) => return Err(e),
        };
        self.after_login_hooks(&flow, &identity, Method::Code, caller)
            .await?;
        self.clerk_first_factor_passed(identity, FirstFactor::EmailCode, caller, now)
            .await
    }

    /// The second factor of a sign-in whose first factor `passed`.
    /// Its guesses are counted per identity, as on the Kratos face's second step, however
    /// often the browser replays its client.
    pub async fn clerk_second_factor(
        &self,
        passed: FirstPassed,
        factor: SecondFactor,
        code: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignedIn> {
        let FirstPassed {
            identity,
            first,
            at: passed_at,
            reset,
        } = passed;
        if now - passed_at > self.config.selfservice.flows.login.lifespan.0 {
            return Ok(SignedIn::Expired);
        }
        let Some(identity) = self.active_identity(identity).await? else {
            return Ok(SignedIn::Refused);
        };
        if !self.clerk_second_factors(&identity).contains(&factor) {
            return Ok(SignedIn::Refused);
        }
        let origin = caller.origin();
        let checked = match factor {
            SecondFactor::Totp => self.check_totp(&identity, code, &origin, now).await?,
            SecondFactor::BackupCode => self.check_lookup(&identity, code, &origin, now).await?,
        };
        let Checked::Accepted(identity) = checked else {
            return Ok(SignedIn::Refused);
        };
        let identity = match reset {
            Some(reset) => match self.apply_reset(*identity, &reset, caller, now).await? {
                Some(reset) => Box::new(reset),
                None => return Ok(SignedIn::Expired),
            },
            None => identity,
        };
        let (mut session, token) = self.new_session(&identity, first.method(), None, caller, now);
        session.add_method(factor.method(), now);
        let record = crate::audit::AuditRecord::new(
            crate::audit::AuditKind::LoginSucceeded,
            crate::audit::Actor::Identity(identity.id),
            &origin,
            now,
        )
        .about(identity.id)
        .details(serde_json::json!({ "method": factor.method().as_str(), "aal": session.aal }));
        self.store
            .insert_session(
                &session,
                &Effects::event(EventKind::SessionCreated).audited(record),
            )
            .await?;
        self.clerk_session_made(session, token, *identity, caller)
            .await
    }

    /// The second factors `identity` has that this face asks for.
    fn clerk_second_factors(&self, identity: &Identity) -> Vec<SecondFactor> {
        [SecondFactor::Totp, SecondFactor::BackupCode]
            .into_iter()
            .filter(|f| {
                let m = f.method();
                self.factor_enabled(m) && identity.credentials.contains_key(m.as_str())
            })
            .collect()
    }

    /// What comes after the first factor when it is not a session yet: the identity's
    /// second factor here (`reset` waiting for it), or one only the hosted pages ask for.
    pub(super) fn clerk_second_step(
        &self,
        identity: &Identity,
        reset: Option<PendingReset>,
    ) -> Option<SignedIn> {
        let factors = self.clerk_second_factors(identity);
        if !factors.is_empty() {
            return Some(SignedIn::SecondFactor {
                identity: identity.id,
                factors,
                reset,
            });
        }
        let enforced =
            self.config.session.whoami.required_aal == crate::config::RequiredAal::HighestAvailable;
        (enforced && self.available_aal(identity) >= Aal::Aal2)
            .then_some(SignedIn::SecondFactorElsewhere)
    }

    /// After the first factor: the second one, when the identity has one, or a session.
    pub(super) async fn clerk_first_factor_passed(
        &self,
        identity: Identity,
        first: FirstFactor,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignedIn> {
        if let Some(next) = self.clerk_second_step(&identity, None) {
            return Ok(next);
        }
        let (session, token) = self
            .issue_session(&identity, first.method(), None, caller, now)
            .await?;
        self.clerk_session_made(session, token, identity, caller)
            .await
    }

    /// A sign-in's new session: the login's `revoke_active_sessions` hook ends the others.
    async fn clerk_session_made(
        &self,
        session: crate::session::Session,
        token: String,
        identity: Identity,
        caller: &Caller,
    ) -> Result<SignedIn> {
        let first = session
            .authentication_methods
            .first()
            .map(|m| m.method.clone())
            .unwrap_or_default();
        let revoke = self.config.after(FlowKind::Login).runs(
            &first,
            crate::config::HookName::RevokeActiveSessions,
            false,
        );
        if revoke {
            self.revoke_other_sessions(identity.id, session.id, &caller.origin(), "login_hook")
                .await?;
        }
        Ok(SignedIn::Session(
            Box::new(session),
            token,
            Box::new(identity),
        ))
    }
}
