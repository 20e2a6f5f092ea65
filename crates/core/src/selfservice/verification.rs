//! The verification flow (`code` method): prove you own an address. A code goes to the
//! address (started by the user, by registration, or by a login hook) and the right code marks
//! the identity's address verified. Registration and settings call [`Core::verification_for`]
//! to start a flow with the code already sent.

use super::address::{AddressStep, AddressSubmit, AddressTexts, CodeCheck};
use super::form::already_completed;
use super::web_hook::Stage;
use crate::audit::{Actor, AuditKind, AuditRecord};
use crate::courier::{Message, TemplateKind};
use crate::error::{Error, Result, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::service::{Caller, Core};
use crate::store::{Effects, StoreError};
use crate::ui::{UiNode, UiText};
use crate::webhooks::EventKind;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

fn texts() -> AddressTexts {
    AddressTexts {
        code_label: UiText::info(1070011, "Verification code"),
        sent: UiText::info(
            1080003,
            "An email containing a verification code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with.",
        ),
        wrong: UiText::error(
            4070006,
            "The verification code is invalid or has already been used. Please try again.",
            None,
        ),
        exhausted: UiText::error(
            4070003,
            "The verification flow reached a failure state and must be retried.",
            None,
        ),
        templates: (
            TemplateKind::VerificationCodeValid,
            TemplateKind::VerificationCodeInvalid,
        ),
        completed: 4070002,
        no_strategy: UiText::error(
            4010006,
            "Could not find a strategy to verify your account with. Did you fill out the form correctly?",
            None,
        ),
    }
}

/// A verification flow started for an identity's address, with its code's message: the flow
/// is stored; the caller queues the message with the write that caused it.
pub struct StartedVerification {
    pub flow: Flow,
    /// `None` past the identity's hourly send cap (the flow then holds no valid code).
    pub message: Option<Message>,
}

impl StartedVerification {
    /// Kratos's `continue_with` item that points a client at this flow.
    pub fn continue_with(&self, core: &Core) -> Value {
        let address = self
            .flow
            .code
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or_default();
        json!({
            "action": "show_verification_ui",
            "flow": {
                "id": self.flow.id,
                "verifiable_address": address,
                "url": core.flow_page_url(FlowKind::Verification, self.flow.id),
            },
        })
    }
}

impl Core {
    pub fn verification_enabled(&self) -> bool {
        self.config.selfservice.flows.verification.is_enabled()
    }

    fn require_verification(&self) -> Result<()> {
        if self.verification_enabled() {
            Ok(())
        } else {
            Err(Error::FlowDisabled {
                kind: FlowKind::Verification,
            })
        }
    }

    fn blank_verification_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        now: OffsetDateTime,
    ) -> Flow {
        let cfg = &self.config.selfservice.flows.verification;
        let mut flow = Flow::new(
            FlowKind::Verification,
            flow_type,
            request_url,
            self.public_url(),
            cfg.lifespan.0,
            now,
        );
        flow.active = Some("code".into());
        flow
    }

    pub(super) async fn new_verification_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        self.require_verification()?;
        let mut flow = self.blank_verification_flow(flow_type, request_url, now);
        self.render_choose_method(&mut flow);
        self.attach_csrf(&mut flow, caller);
        self.before_flow(&flow, caller).await?;
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    /// `GET /self-service/verification/{browser,api}`; a signed-in caller may verify too.
    pub async fn create_verification_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        self.require_verification()?;
        let return_to = self.validate_return_to(return_to)?;
        let mut flow = self
            .new_verification_flow(flow_type, request_url, caller, now)
            .await?;
        self.remember_return_to(&mut flow, return_to).await?;
        Ok(flow)
    }

    /// A verification flow for `address` of `identity`, in the `sent_email` state, stored, with
    /// the message carrying its code (to queue with the write that caused it). `csrf_secret`
    /// is the anti-CSRF secret of the browser that will complete it (browser flows).
    pub async fn verification_for(
        &self,
        identity: &Identity,
        address: &str,
        flow_type: FlowType,
        caller: &Caller,
        csrf_secret: Option<String>,
        now: OffsetDateTime,
    ) -> Result<StartedVerification> {
        let url = format!(
            "{}self-service/verification/{}",
            self.public_url(),
            match flow_type {
                FlowType::Browser => "browser",
                FlowType::Api => "api",
            }
        );
        let mut flow = self.blank_verification_flow(flow_type, url, now);
        let mut owner = caller.clone();
        owner.csrf_secret = csrf_secret;
        self.attach_csrf(&mut flow, &owner);
        let message = self
            .issue_code(
                &mut flow,
                address,
                Some(identity),
                texts().templates,
                false,
                caller,
                now,
            )
            .await?;
        self.render_sent(&mut flow, &texts());
        flow.ui.messages = vec![texts().sent];
        self.store.insert_flow(&flow).await?;
        Ok(StartedVerification { flow, message })
    }

    /// Verification flows (with their codes) for every e-mail address of `identity` that is
    /// not verified yet and for which `wanted` holds, marking each `sent`; the caller stores
    /// `identity` with the messages.
    pub async fn start_verifications(
        &self,
        identity: &mut Identity,
        wanted: impl Fn(&str) -> bool,
        flow_type: FlowType,
        caller: &Caller,
        csrf_secret: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Vec<StartedVerification>> {
        if !self.verification_enabled() {
            return Ok(vec![]);
        }
        let pending: Vec<String> = identity
            .verifiable_addresses
            .iter()
            .filter(|a| !a.verified && a.via == "email" && wanted(&a.value))
            .map(|a| a.value.clone())
            .collect();
        let mut started = vec![];
        for address in pending {
            let s = self
                .verification_for(
                    identity,
                    &address,
                    flow_type,
                    caller,
                    csrf_secret.clone(),
                    now,
                )
                .await?;
            started.push(s);
            if let Some(a) = identity
                .verifiable_addresses
                .iter_mut()
                .find(|a| a.value == address)
            {
                a.status = "sent".into();
                a.updated_at = now;
            }
        }
        Ok(started)
    }

    /// The anti-CSRF secret of the browser that completes a verification flow started by
    /// another flow: bound to the new session when one was issued (the response sets it).
    pub(crate) fn verification_csrf(
        &self,
        flow_type: FlowType,
        session: Option<&crate::session::Session>,
        caller: &Caller,
    ) -> Option<String> {
        match (flow_type, session) {
            (FlowType::Api, _) => None,
            (FlowType::Browser, Some(s)) => Some(self.session_csrf_secret(s)),
            (FlowType::Browser, None) => caller.csrf_secret.clone(),
        }
    }

    /// For a stored identity (a login hook): a verification flow with its code for every
    /// e-mail address not verified yet, each stored with its message; returns their
    /// `continue_with` items.
    pub(crate) async fn send_verifications(
        &self,
        identity: &Identity,
        flow_type: FlowType,
        caller: &Caller,
        csrf_secret: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Vec<Value>> {
        if !self.verification_enabled() {
            return Ok(vec![]);
        }
        let mut out = vec![];
        for a in identity
            .verifiable_addresses
            .iter()
            .filter(|a| !a.verified && a.via == "email")
        {
            let s = self
                .verification_for(
                    identity,
                    &a.value,
                    flow_type,
                    caller,
                    csrf_secret.clone(),
                    now,
                )
                .await?;
            let fx = match &s.message {
                Some(m) => Effects::none().message(m.clone()),
                None => Effects::none(),
            };
            self.store.update_flow_with(&s.flow, &fx).await?;
            out.push(s.continue_with(self));
        }
        Ok(out)
    }

    /// `POST /self-service/verification?flow=`: an address (send a code), or a code.
    pub async fn submit_verification(
        &self,
        flow_id: Uuid,
        submit: AddressSubmit,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Flow> {
        let started = tokio::time::Instant::now();
        self.require_verification()?;
        let flow = self
            .load_flow_for_submit(
                FlowKind::Verification,
                flow_id,
                caller,
                submit.csrf_token.as_deref(),
                now,
            )
            .await?;
        let t = texts();
        let (mut flow, address) = match self.address_step(flow, submit.method, &t, now).await? {
            (flow, AddressStep::Code(code)) => {
                return self.verify_with_code(flow, &code, &t, caller, now).await
            }
            (flow, AddressStep::Address(address)) => (flow, address),
        };
        let identity = self
            .store
            .find_identity_by_address("verifiable", &address)
            .await?;
        let notify = self
            .config
            .selfservice
            .flows
            .verification
            .notify_unknown_recipients;
        self.send_code(
            &mut flow,
            &address,
            identity.as_ref(),
            notify,
            &t,
            Effects::none(),
            caller,
            now,
            started,
        )
        .await?;
        Ok(flow)
    }

    async fn verify_with_code(
        &self,
        mut flow: Flow,
        code: &str,
        t: &AddressTexts,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Flow> {
        let identity_id = match self.check_code(&flow, code, now).await? {
            CodeCheck::Valid(id) => id,
            CodeCheck::Wrong => {
                flow.ui.messages.push(t.wrong.clone());
                return Err(self.reject(&mut flow, None, now).await);
            }
            CodeCheck::Exhausted => {
                flow.ui.messages.push(t.exhausted.clone());
                return Err(self.reject(&mut flow, None, now).await);
            }
        };
        let address = flow
            .code
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or_default();
        let mut completed = flow.clone();
        completed.state = "passed_challenge".into();
        completed.code = None;
        completed.updated_at = now;
        completed.ui.nodes.retain(|n| n.name() == "csrf_token");
        let target = completed
            .return_to
            .clone()
            .unwrap_or_else(|| self.config.after_url(FlowKind::Verification).to_string());
        completed.ui.nodes.push(continue_link(&target));
        completed.ui.messages = vec![UiText::success(
            1080002,
            "You successfully verified your email address.",
        )];
        if !self.store.complete_flow(&completed).await? {
            flow.ui.messages.push(already_completed(4070002));
            return Err(self.reject(&mut flow, None, now).await);
        }
        let mut identity = self
            .mark_verified(identity_id, &address, caller, now)
            .await?;
        let hooks = self.config.after(FlowKind::Verification).hooks_for("code");
        let _ = self
            .run_web_hooks(
                hooks.unwrap_or_default(),
                Stage::PostPersist,
                &completed,
                identity.as_mut(),
                caller,
            )
            .await;
        Ok(completed)
    }

    /// Marks `address` of the identity verified (`completed`, `verified_at`), with
    /// `user.updated` and an audit record. A concurrent change of the identity is re-read
    /// once; an address that is gone by now is left alone. Returns the identity as it is now.
    async fn mark_verified(
        &self,
        identity_id: Uuid,
        address: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Option<Identity>> {
        for _ in 0..2 {
            let Some(mut identity) = self.store.get_identity(identity_id).await? else {
                return Ok(None);
            };
            let Some(a) = identity
                .verifiable_addresses
                .iter_mut()
                .find(|a| a.value == address)
            else {
                return Ok(Some(identity));
            };
            if a.verified {
                return Ok(Some(identity));
            }
            a.verified = true;
            a.status = "completed".into();
            a.verified_at = Some(now);
            a.updated_at = now;
            identity.updated_at = now;
            let record = AuditRecord::new(
                AuditKind::AddressVerified,
                Actor::Identity(identity_id),
                &caller.origin(),
                now,
            )
            .about(identity_id)
            .target(format!("address:{address}"));
            let fx = Effects::event(EventKind::UserUpdated).audited(record);
            match self.store.update_identity(&mut identity, &fx).await {
                Ok(()) => return Ok(Some(identity)),
                Err(StoreError::Stale) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Stale.into())
    }
}

/// The `a` node a completed verification shows: where to go on (1070009 Continue).
fn continue_link(href: &str) -> UiNode {
    UiNode::anchor("code", "continue", href, UiText::info(1070009, "Continue"))
}
