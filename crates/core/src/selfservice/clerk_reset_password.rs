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
use crate::methods::code::normalise_address;
use crate::service::{Caller, Core};
use crate::ui::msg;
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
    /// `flow_id`. Saved under the policy (the address the code went to verified, refresh
    /// tokens ended as on every password change, and every session when `sign_out_others`
    /// or the recovery's `revoke_active_sessions` hook says so); then the sign-in goes on to
    /// the second factor or a session.
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
        let Some(sent) = flow
            .code
            .clone()
            .filter(|c| c.identity_id == Some(identity_id))
        else {
            return Ok(SignedIn::Expired);
        };
        if flow.is_expired(now) || flow.state == "passed_challenge" {
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
        // The code sets one password: of two racing resets, one goes on.
        let mut spent = flow.clone();
        spent.state = "passed_challenge".into();
        spent.code = None;
        spent.updated_at = now;
        if !self.store.complete_flow(&spent).await? {
            return Ok(SignedIn::Expired);
        }
        let origin = caller.origin();
        let mut changed = identity.clone();
        let hash = self.hasher.hash(password.to_string()).await?;
        changed.set_password_hash(hash, identifiers, now);
        changed.verify_address(&sent.address, now);
        let by = By {
            actor: Actor::Identity(identity.id),
            origin: origin.clone(),
        };
        let record = AuditRecord::new(AuditKind::RecoverySucceeded, by.actor.clone(), &origin, now)
            .about(identity.id)
            .reason(FirstFactor::ResetPasswordEmailCode.strategy());
        self.save_identity_with(&identity, &mut changed, &by, Some(record), now)
            .await?;
        self.password_changed(identity.id).await?;
        let hooked = self.config.after(FlowKind::Recovery).runs(
            "code",
            crate::config::HookName::RevokeActiveSessions,
            false,
        );
        if sign_out_others || hooked {
            self.revoke_other_sessions(identity.id, Uuid::nil(), &origin, "recovered")
                .await?;
        }
        self.clerk_first_factor_passed(changed, FirstFactor::ResetPasswordEmailCode, caller, now)
            .await
    }
}
