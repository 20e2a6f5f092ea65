//! "Forgot password?" in Clerk's `<SignIn/>` (`reset_password_email_code`): a code mailed to
//! the address on a Kratos recovery flow (`selfservice.flows.recovery` with its `code`
//! method: its lifespan, send limits and per-flow and per-identity attempt budgets), then a
//! new password under the policy, then the second factor or a session, as every Clerk
//! sign-in. An address without an account is answered alike and mailed nothing (or, with
//! `notify_unknown_recipients`, told that someone asked), so no code ever matches.
//!
//! The right code only lets the sign-in ask for the new password; the flow is spent when the
//! password is set, so one code sets one password however often the browser replays its
//! client.

use super::clerk_sign_in::{FirstFactor, SignedIn};
use crate::audit::{Actor, AuditKind, AuditRecord, By};
use crate::config::AddressMethod;
use crate::error::Result;
use crate::flow::{FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::code::normalise_address;
use crate::service::{Caller, Core};
use crate::ui::msg;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

impl Core {
    /// Whether a sign-in may reset its password by a mailed code (recovery by code is on).
    pub fn clerk_reset_password_enabled(&self) -> bool {
        let recovery = &self.config.selfservice.flows.recovery;
        recovery.is_enabled() && recovery.method == AddressMethod::Code
    }

    /// A reset code for `identifier`: without `code`, mails one (on a new recovery flow unless
    /// `flow_id` names the sign-in's); with it, checks it, and a right one asks for the new
    /// password.
    pub async fn clerk_reset_code(
        &self,
        flow_id: Option<Uuid>,
        identifier: &str,
        code: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignedIn> {
        let started = tokio::time::Instant::now();
        if !self.clerk_reset_password_enabled() {
            return Ok(SignedIn::Refused);
        }
        let mut flow = match flow_id {
            Some(id) => self.stored_flow(FlowKind::Recovery, id).await?,
            None => {
                let url = format!("{}/v1/client/sign_ins", self.public_url());
                self.new_recovery_flow(FlowType::Api, url, caller, now)
                    .await?
            }
        };
        if flow.is_expired(now) {
            return Ok(SignedIn::Expired);
        }
        if flow.state == "passed_challenge" {
            return Ok(SignedIn::Refused);
        }
        let Some(code) = code else {
            let address = normalise_address(identifier);
            self.send_recovery_code(&mut flow, &address, caller, now, started)
                .await?;
            let expires_at = flow.code.as_ref().map_or(now, |c| c.expires_at);
            return Ok(SignedIn::CodeSent {
                flow_id: flow.id,
                expires_at,
            });
        };
        Ok(match self.check_code(&flow, code, now).await? {
            super::address::CodeCheck::Valid(identity) => SignedIn::NewPasswordNeeded { identity },
            _ => SignedIn::Refused,
        })
    }

    /// `reset_password`: the new password of the identity whose reset code came back on
    /// `flow_id`, checked against the policy. An account with a second factor gets it asked
    /// for first, and nothing changes until it passes (the mailbox alone neither sets the
    /// password nor signs anyone out); otherwise the password is set at once
    /// ([`Core::apply_reset`]) and the sign-in gets its session.
    pub async fn clerk_reset_password(
        &self,
        flow_id: Uuid,
        identity_id: Uuid,
        password: &str,
        sign_out_others: bool,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignedIn> {
        let flow = self.stored_flow(FlowKind::Recovery, flow_id).await?;
        let sent_to_identity = flow
            .code
            .as_ref()
            .is_some_and(|c| c.identity_id == Some(identity_id));
        if !sent_to_identity || flow.is_expired(now) || flow.state == "passed_challenge" {
            return Ok(SignedIn::Expired);
        }
        let Some(identity) = self.active_identity(identity_id).await? else {
            return Ok(SignedIn::Expired);
        };
        let identifiers = self
            .schema(&identity.schema_id)?
            .derive(&identity.traits)
            .password_identifiers;
        let problem = match password {
            "" => Some(msg::required("password")),
            p => self.password_problem(p, &identifiers),
        };
        if let Some(text) = problem {
            return Ok(SignedIn::PasswordRefused(text));
        }
        let reset = PendingReset {
            flow_id,
            password_hash: self.hasher.hash(password.to_string()).await?,
            sign_out_others,
        };
        if let Some(next) = self.clerk_second_step(&identity, Some(reset.clone())) {
            return Ok(next);
        }
        let Some(identity) = self.apply_reset(identity, &reset, caller, now).await? else {
            return Ok(SignedIn::Expired);
        };
        self.clerk_first_factor_passed(identity, FirstFactor::ResetPasswordEmailCode, caller, now)
            .await
    }

    /// Sets the password `reset` holds for `identity`, once: the recovery flow is claimed
    /// (`None` when it is spent, expired or another identity's), the address the code went
    /// to is verified, the change saved with its event, its audit record and the "password
    /// changed" mail, refresh tokens end as on every password change, and the other sessions
    /// when the user asked, `security.password_change.revoke_other_sessions` says so or the
    /// recovery's `revoke_active_sessions` hook runs.
    pub(super) async fn apply_reset(
        &self,
        identity: Identity,
        reset: &PendingReset,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Option<Identity>> {
        let flow = self.stored_flow(FlowKind::Recovery, reset.flow_id).await?;
        let Some(sent) = flow
            .code
            .clone()
            .filter(|c| c.identity_id == Some(identity.id))
        else {
            return Ok(None);
        };
        if flow.is_expired(now) || flow.state == "passed_challenge" {
            return Ok(None);
        }
        // The code sets one password: of two racing resets, one goes on.
        let mut spent = flow.clone();
        spent.state = "passed_challenge".into();
        spent.code = None;
        spent.updated_at = now;
        if !self.store.complete_flow(&spent).await? {
            return Ok(None);
        }
        let identifiers = self
            .schema(&identity.schema_id)?
            .derive(&identity.traits)
            .password_identifiers;
        let origin = caller.origin();
        let mut changed = identity.clone();
        changed.set_password_hash(reset.password_hash.clone(), identifiers, now);
        changed.verify_address(&sent.address, now);
        let by = By {
            actor: Actor::Identity(identity.id),
            origin: origin.clone(),
        };
        let record = AuditRecord::new(AuditKind::RecoverySucceeded, by.actor.clone(), &origin, now)
            .about(identity.id)
            .reason(FirstFactor::ResetPasswordEmailCode.strategy());
        let notices = self.password_changed_notices(&changed, caller, now)?;
        self.save_identity_with(&identity, &mut changed, &by, Some(record), notices, now)
            .await?;
        self.password_changed(identity.id).await?;
        let hooked = self.config.after(FlowKind::Recovery).runs(
            "code",
            crate::config::HookName::RevokeActiveSessions,
            false,
        );
        if reset.sign_out_others
            || hooked
            || self.config.security.password_change.revoke_other_sessions
        {
            self.revoke_other_sessions(identity.id, Uuid::nil(), &origin, "recovered")
                .await?;
        }
        Ok(Some(changed))
    }
}

/// A new password chosen after a reset code, waiting for the account's second factor; the
/// sign-in keeps it (sealed in its client) until then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingReset {
    pub flow_id: Uuid,
    /// The new password, hashed.
    pub password_hash: String,
    pub sign_out_others: bool,
}
