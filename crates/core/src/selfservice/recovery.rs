//! The recovery flow (`code` method): the user names an address, a code goes to it if it
//! belongs to an account, and the right code signs the user in with a privileged session and
//! continues to a settings flow to set a new password. The answer to the address step is the
//! same for every address; an admin can also issue a code or a link for an identity.

use super::address::{AddressStep, AddressSubmit, AddressTexts, CodeCheck};
use super::form::already_completed;
use super::web_hook::Stage;
use crate::audit::{Actor, AuditKind, AuditRecord};
use crate::config::HookName;
use crate::courier::TemplateKind;
use crate::error::{Error, Result, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::{rfc3339, Identity};
use crate::methods::code::{self, SentCode};
use crate::methods::Method;
use crate::service::{Caller, Core};
use crate::session::Session;
use crate::store::Effects;
use crate::ui::{msg, UiText};
use crate::webhooks::EventKind;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// A completed recovery: the signed-in session and the settings flow to continue with.
pub struct Recovered {
    pub flow: Flow,
    pub identity: Identity,
    pub session: Session,
    /// The new session's token (the face sets it as the cookie, or returns it to an app).
    pub token: String,
    pub settings: Flow,
}

/// What a recovery submit did.
#[allow(clippy::large_enum_variant)] // returned once per submit, never stored
pub enum RecoveryOutcome {
    /// A code was sent (as far as anyone can tell): the flow asks for it now.
    Sent(Box<Flow>),
    Recovered(Box<Recovered>),
}

/// What `POST /admin/recovery/code` and `/link` hand back.
pub struct AdminRecovery {
    pub flow: Flow,
    /// The code (code) or the URL with the token (link), shown once.
    pub secret: String,
    pub expires_at: OffsetDateTime,
}

fn texts() -> AddressTexts {
    AddressTexts {
        code_label: UiText::info(1070010, "Recovery code"),
        sent: UiText::info(
            1060003,
            "An email containing a recovery code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with.",
        ),
        wrong: UiText::error(
            4060006,
            "The recovery code is invalid or has already been used. Please try again.",
            None,
        ),
        exhausted: UiText::error(
            4060002,
            "The recovery flow reached a failure state and must be retried.",
            None,
        ),
        templates: (
            TemplateKind::RecoveryCodeValid,
            TemplateKind::RecoveryCodeInvalid,
        ),
        completed: 4060001,
        no_strategy: UiText::error(
            4010005,
            "Could not find a strategy to recover your account with. Did you fill out the form correctly?",
            None,
        ),
    }
}

impl Core {
    fn recovery_enabled(&self) -> Result<()> {
        if self.config.selfservice.flows.recovery.is_enabled() {
            Ok(())
        } else {
            Err(Error::FlowDisabled {
                kind: FlowKind::Recovery,
            })
        }
    }

    pub(super) async fn new_recovery_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        self.recovery_enabled()?;
        let cfg = &self.config.selfservice.flows.recovery;
        let mut flow = Flow::new(
            FlowKind::Recovery,
            flow_type,
            request_url,
            self.public_url(),
            cfg.lifespan.0,
            now,
        );
        flow.active = Some("code".into());
        self.render_choose_method(&mut flow);
        self.attach_csrf(&mut flow, caller);
        self.before_flow(&flow, caller).await?;
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    /// `GET /self-service/recovery/{browser,api}`: refused to a signed-in caller.
    pub async fn create_recovery_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        self.recovery_enabled()?;
        let return_to = self.validate_return_to(return_to)?;
        if caller.session.is_some() {
            return Err(Error::AlreadySignedIn);
        }
        let mut flow = self
            .new_recovery_flow(flow_type, request_url, caller, now)
            .await?;
        self.remember_return_to(&mut flow, return_to).await?;
        Ok(flow)
    }

    /// `POST /self-service/recovery?flow=`: an address (send a code), or a code.
    pub async fn submit_recovery(
        &self,
        flow_id: Uuid,
        submit: AddressSubmit,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<RecoveryOutcome> {
        let started = tokio::time::Instant::now();
        self.recovery_enabled()?;
        let flow = self
            .load_flow_for_submit(
                FlowKind::Recovery,
                flow_id,
                caller,
                submit.csrf_token.as_deref(),
                now,
            )
            .await?;
        if caller.session.is_some() {
            return Err(Error::AlreadySignedIn.into());
        }
        let t = texts();
        let (mut flow, address) = match self.address_step(flow, submit.method, &t, now).await? {
            (flow, AddressStep::Code(code)) => {
                return self.recover_with_code(flow, &code, &t, caller, now).await
            }
            (flow, AddressStep::Address(address)) => (flow, address),
        };
        self.send_recovery_code(&mut flow, &address, caller, now, started)
            .await?;
        Ok(RecoveryOutcome::Sent(Box::new(flow)))
    }

    /// Mails a recovery code for `address` on `flow` if it is an active account's recovery
    /// address (else, as configured, a note or nothing), answering alike either way.
    pub(super) async fn send_recovery_code(
        &self,
        flow: &mut Flow,
        address: &str,
        caller: &Caller,
        now: OffsetDateTime,
        started: tokio::time::Instant,
    ) -> Result<()> {
        let identity = self
            .store
            .find_identity_by_address("recovery", address)
            .await?
            .filter(Identity::is_active);
        let record = AuditRecord::new(
            AuditKind::RecoveryRequested,
            identity
                .as_ref()
                .map_or(Actor::Anonymous, |i| Actor::Identity(i.id)),
            &caller.origin(),
            now,
        );
        let record = match &identity {
            Some(i) => record.about(i.id),
            None => record.reason("unknown_address"),
        };
        let notify = self
            .config
            .selfservice
            .flows
            .recovery
            .notify_unknown_recipients;
        self.send_code(
            flow,
            address,
            identity.as_ref(),
            notify,
            &texts(),
            Effects::none().audited(record),
            caller,
            now,
            started,
        )
        .await
    }

    async fn recover_with_code(
        &self,
        mut flow: Flow,
        code: &str,
        t: &AddressTexts,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<RecoveryOutcome> {
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
        self.complete_recovery(flow, identity_id, Method::CodeRecovery, caller, now)
            .await
            .map(|r| RecoveryOutcome::Recovered(Box::new(r)))
    }

    /// Signs the identity in after a recovery: completes the flow once (a code or link works
    /// once even under concurrent submits), starts a privileged session and a settings flow.
    async fn complete_recovery(
        &self,
        mut flow: Flow,
        identity_id: Uuid,
        method: Method,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Recovered> {
        let identity = match self.store.get_identity(identity_id).await? {
            Some(i) if i.is_active() => i,
            _ => {
                flow.ui.messages.push(msg::identity_disabled());
                return Err(self.reject(&mut flow, None, now).await);
            }
        };
        let mut completed = flow.clone();
        completed.state = "passed_challenge".into();
        completed.code = None;
        completed.updated_at = now;
        if !self.store.complete_flow(&completed).await? {
            flow.ui.messages.push(already_completed(4060001));
            return Err(self.reject(&mut flow, None, now).await);
        }
        let (session, token) = self.new_session(&identity, method, None, caller, now);
        let record = AuditRecord::new(
            AuditKind::RecoverySucceeded,
            Actor::Identity(identity.id),
            &caller.origin(),
            now,
        )
        .about(identity.id)
        .target(format!("session:{}", session.id))
        .reason(method.as_str());
        self.store
            .insert_session(
                &session,
                &Effects::event(EventKind::SessionCreated).audited(record),
            )
            .await?;
        let after = self.config.after(FlowKind::Recovery);
        if after.runs(method.group(), HookName::RevokeActiveSessions, false) {
            self.revoke_other_sessions(identity.id, session.id, &caller.origin(), "recovered")
                .await?;
        }
        let mut recovered = identity.clone();
        let _ = self
            .run_web_hooks(
                after.hooks_for(method.group()).unwrap_or_default(),
                Stage::PostPersist,
                &completed,
                Some(&mut recovered),
                caller,
            )
            .await;
        // The settings flow belongs to the new session's browser: its anti-CSRF token is the
        // one the response sets, bound to that session.
        let mut next = caller.clone();
        next.csrf_secret = Some(self.session_csrf_secret(&session));
        next.session = Some((session.clone(), identity.clone()));
        let settings_url = self.browser_flow_url(FlowKind::Settings, false, None);
        let mut settings = self
            .new_settings_flow(completed.flow_type, settings_url, &identity, &next, now)
            .await?;
        // The settings flow is created as every other one is: after its `before` hooks (as
        // Kratos does; the recovery itself is done and stays done).
        self.before_flow(&settings, &next).await?;
        let max_age = self
            .config
            .selfservice
            .flows
            .settings
            .privileged_session_max_age
            .0;
        let until = now + max_age;
        settings.ui.messages.push(UiText::success_with(
            1060001,
            format!(
                "You successfully recovered your account. Please change your password or set up an alternative login method (e.g. social sign in) within the next {:.2} minutes.",
                max_age.as_secs_f64() / 60.0
            ),
            json!({
                "privileged_session_expires_at": rfc3339(until),
                "privileged_session_expires_at_unix": until.unix_timestamp(),
            }),
        ));
        settings.return_to = completed.return_to.clone();
        self.store.update_flow(&settings).await?;
        completed.continue_with = vec![json!({
            "action": "show_settings_ui",
            "flow": { "id": settings.id, "url": self.flow_page_url(FlowKind::Settings, settings.id) },
        })];
        self.store.update_flow(&completed).await?;
        Ok(Recovered {
            flow: completed,
            identity,
            session,
            token,
            settings,
        })
    }

    /// `POST /admin/recovery/code` (`link: false`) and `/admin/recovery/link` (`link: true`):
    /// a recovery flow for `identity_id` that the identity's owner completes with the code
    /// (or by opening the link), valid for `expires_in`.
    pub async fn admin_recovery(
        &self,
        identity_id: Uuid,
        expires_in: Option<std::time::Duration>,
        flow_type: FlowType,
        link: bool,
        now: OffsetDateTime,
    ) -> Result<AdminRecovery> {
        self.recovery_enabled()?;
        if link && !self.config.selfservice.methods.link.enabled {
            return Err(Error::bad_request(
                "The recovery link method is disabled (selfservice.methods.link.enabled).",
            ));
        }
        let identity = self
            .store
            .get_identity(identity_id)
            .await?
            .ok_or_else(|| Error::not_found("The identity could not be found."))?;
        let lifespan = match (expires_in, link) {
            (Some(d), _) => d,
            (None, true) => self.config.selfservice.methods.link.config.lifespan.0,
            (None, false) => self.config.selfservice.methods.code.config.lifespan.0,
        };
        if lifespan.is_zero() || lifespan > std::time::Duration::from_secs(7 * 24 * 3600) {
            return Err(Error::bad_request(
                "expires_in must be a positive duration of at most 168h.",
            ));
        }
        let url = format!(
            "{}self-service/recovery/{}",
            self.public_url(),
            match flow_type {
                FlowType::Browser => "browser",
                FlowType::Api => "api",
            }
        );
        let mut flow = Flow::new(
            FlowKind::Recovery,
            flow_type,
            url,
            self.public_url(),
            lifespan,
            now,
        );
        let secret = if link {
            code::new_link_token()
        } else {
            code::new_code()
        };
        let address = identity
            .recovery_addresses
            .first()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        flow.code = Some(SentCode {
            hash: self.hash_code(flow.id, &secret),
            address,
            identity_id: Some(identity.id),
            expires_at: now + lifespan,
        });
        flow.state = "sent_email".into();
        flow.active = Some(if link { "link" } else { "code" }.into());
        self.render_sent(&mut flow, &texts());
        self.store.insert_flow(&flow).await?;
        let secret = if link {
            format!(
                "{}self-service/recovery?flow={}&token={}",
                self.public_url(),
                flow.id,
                crate::service::urlencode(&secret)
            )
        } else {
            secret
        };
        Ok(AdminRecovery {
            expires_at: now + lifespan,
            flow,
            secret,
        })
    }

    /// `GET /self-service/recovery?flow=&token=`: a recovery link an admin made. The token
    /// works once, until the flow expires; the browser that opens it is signed in.
    pub async fn recover_with_link(
        &self,
        flow_id: Uuid,
        token: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Recovered> {
        self.recovery_enabled()?;
        let flow = self.stored_flow(FlowKind::Recovery, flow_id).await?;
        let valid = flow.active.as_deref() == Some("link")
            && flow.state == "sent_email"
            && !flow.is_expired(now)
            && flow
                .code
                .as_ref()
                .is_some_and(|c| c.expires_at > now && self.code_matches(c, flow.id, token));
        let identity_id = match (valid, flow.code.as_ref().and_then(|c| c.identity_id)) {
            (true, Some(id)) => id,
            _ => return Err(Error::bad_request(
                "The recovery token is invalid or has already been used. Please retry the flow.",
            )
            .into()),
        };
        self.complete_recovery(flow, identity_id, Method::LinkRecovery, caller, now)
            .await
    }

    /// The hosted (or configured) page that shows flow `id` of `kind`.
    pub fn flow_page_url(&self, kind: FlowKind, id: Uuid) -> String {
        let ui = self.config.ui_url(kind);
        let sep = if ui.contains('?') { '&' } else { '?' };
        format!("{ui}{sep}flow={id}")
    }
}

/// `expires_in` of the admin recovery bodies (`1h`, `15m`, `30s`).
pub fn parse_expires_in(v: &Value) -> Result<Option<std::time::Duration>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => crate::config::Dur::parse(s)
            .map(|d| Some(d.0))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "expires_in: {s:?} is not a duration such as \"1h\" or \"15m\"."
                ))
            }),
        _ => Err(Error::bad_request(
            "expires_in must be a string such as \"1h\".",
        )),
    }
}
