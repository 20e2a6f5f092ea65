//! The registration flow: start one, and submit traits with a method (a password or a
//! passkey). The
//! identity and its first session are stored together, so a duplicate identifier leaves
//! nothing behind.

use super::form::{already_completed, fill_trait_values, method_submit, password_input};
use super::web_hook::Stage;
use crate::audit::{Actor, AuditKind, AuditRecord};
use crate::config::HookName;
use crate::error::{Error, Result, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::Method;
use crate::service::{Authenticated, Caller, Core};
use crate::store::{Effects, StoreError};
use crate::ui::{msg, UiText};
use crate::webhooks::EventKind;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// A registration submit, as the face parsed it from the request body.
#[derive(Debug, Clone)]
pub struct RegistrationSubmit {
    pub method: RegistrationMethod,
    /// The submitted `traits` (an empty object when absent).
    pub traits: Value,
    /// The body was an HTML form: trait values arrive as strings and are coerced to the
    /// schema's types.
    pub form: bool,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RegistrationMethod {
    /// `method=password`; an absent password is empty and reported as missing.
    Password { password: String },
    /// `passkey_register`: the answer of the form's passkey ceremony.
    Passkey { response: String },
    /// `webauthn_register` and `webauthn_register_displayname`: a passwordless security key.
    WebAuthn {
        response: String,
        display_name: String,
    },
    /// `method=code`: sends a sign-up code to the traits' address (or again, with `resend`),
    /// then takes the `code`.
    Code { code: Option<String>, resend: bool },
    /// `provider`: sign up with a social sign-in provider (or with its ID token).
    Oidc(crate::methods::oidc::OidcSubmit),
    /// A method this server does not offer (or none).
    Unknown,
}

impl Core {
    pub async fn new_registration_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let cfg = &self.config.selfservice.flows.registration;
        if !cfg.enabled {
            return Err(registration_disabled());
        }
        let mut flow = Flow::new(
            FlowKind::Registration,
            flow_type,
            request_url,
            self.public_url(),
            cfg.lifespan.0,
            now,
        );
        let schema = self.default_schema()?;
        for f in &schema.fields {
            flow.ui.nodes.push(f.node("default", None));
        }
        flow.ui.nodes.push(password_input("new-password"));
        flow.ui
            .nodes
            .push(method_submit("password", msg::sign_up()));
        if self.config.selfservice.methods.code.passwordless_enabled {
            flow.ui.nodes.push(method_submit(
                "code",
                UiText::info(1040006, "Send sign up code"),
            ));
        }
        let passkey = self.passkey_registration_nodes(&mut flow)?;
        flow.ui.nodes.extend(passkey);
        let keys = self.passwordless_registration_nodes(&mut flow)?;
        flow.ui.nodes.extend(keys);
        flow.ui
            .nodes
            .extend(self.oidc_buttons(FlowKind::Registration, None));
        self.attach_csrf(&mut flow, caller);
        self.before_flow(&flow, caller).await?;
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    pub async fn create_registration_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let return_to = self.validate_return_to(return_to)?;
        if caller.session.is_some() {
            return Err(Error::AlreadySignedIn);
        }
        let mut flow = self
            .new_registration_flow(flow_type, request_url, caller, now)
            .await?;
        self.remember_return_to(&mut flow, return_to).await?;
        Ok(flow)
    }

    pub async fn submit_registration(
        &self,
        flow_id: Uuid,
        submit: RegistrationSubmit,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Authenticated> {
        if !self.config.selfservice.flows.registration.enabled {
            return Err(registration_disabled().into());
        }
        let mut flow = self
            .load_flow_for_submit(
                FlowKind::Registration,
                flow_id,
                caller,
                submit.csrf_token.as_deref(),
                now,
            )
            .await?;
        if caller.session.is_some() {
            return Err(Error::AlreadySignedIn.into());
        }
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            flow.ui.messages.push(already_completed(4040002));
            return Err(self.reject(&mut flow, None, now).await);
        }
        let mut traits = submit.traits;
        if submit.form {
            self.default_schema()?.coerce_form(&mut traits);
        }
        fill_trait_values(&mut flow, &traits);
        // `proof`: the password, the passkey ceremony's answer, or the code.
        let passwordless = self.config.selfservice.methods.code.passwordless_enabled;
        let (mut resend, mut key_name) = (false, String::new());
        let (method, proof) = match submit.method {
            RegistrationMethod::Password { password } => (Method::Password, password),
            RegistrationMethod::Passkey { response } if self.passkeys_enabled() => {
                (Method::Passkey, response)
            }
            RegistrationMethod::WebAuthn {
                response,
                display_name,
            } if self.passwordless_keys_enabled() => {
                key_name = display_name;
                (Method::WebAuthnPasswordless, response)
            }
            RegistrationMethod::Code {
                code,
                resend: again,
            } if passwordless => {
                resend = again;
                (Method::Code, code.unwrap_or_default())
            }
            // The traits go along and win over what the provider's mapper makes (registration
            // completion).
            RegistrationMethod::Oidc(submit) if self.oidc_enabled() => {
                return self.submit_oidc(flow, submit, traits, caller, now).await;
            }
            _ => {
                flow.ui.messages.push(UiText::error(
                    4010003,
                    "Could not find a strategy to sign you up with. Did you fill out the form correctly?",
                    None,
                ));
                return Err(self.reject(&mut flow, None, now).await);
            }
        };
        flow.active = Some(method.as_str().into());
        let schema = self.default_schema()?;
        let violations = schema.validate(&traits);
        let derived = schema.derive(&traits);
        let mut failed = !violations.is_empty();
        for (node, text) in violations {
            flow.ui.add_message(node.as_deref(), text);
        }
        let mut identity = Identity::new(&schema.id, traits, now);
        identity.apply_derived(&derived, now);
        if method == Method::Password {
            let password = proof;
            if password.is_empty() {
                flow.ui
                    .add_message(Some("password"), msg::required("password"));
                failed = true;
            } else if let Some(t) = self.password_problem(&password, &derived.password_identifiers)
            {
                flow.ui.add_message(Some("password"), t);
                failed = true;
            }
            if !failed && derived.password_identifiers.is_empty() {
                flow.ui.messages.push(msg::generic(
                    "No login identifiers found in the traits. Make sure the identity schema marks at least one trait as a password identifier.",
                ));
                failed = true;
            }
            if failed {
                return Err(self.reject(&mut flow, None, now).await);
            }
            let hash = self.hasher.hash(password).await?;
            identity.set_password_hash(hash, derived.password_identifiers.clone(), now);
        } else if failed {
            return Err(self.reject(&mut flow, None, now).await);
        } else if method == Method::WebAuthnPasswordless {
            if let Err((node, text)) =
                self.register_key(&flow, &mut identity, &proof, &key_name, now)?
            {
                flow.ui.add_message(node, text);
                return Err(self.reject(&mut flow, None, now).await);
            }
        } else if method == Method::Code {
            let code = Some(proof).filter(|c| !c.is_empty());
            self.register_with_code(&mut flow, &mut identity, code, resend, None, caller, now)
                .await?;
        } else if let Err(text) = self.add_passkey(&flow, &mut identity, &proof, now)? {
            flow.ui.messages.push(text);
            return Err(self.reject(&mut flow, None, now).await);
        }
        self.finish_registration(flow, identity, method, None, caller, now)
            .await
    }

    /// Stores a new identity (its first session, its verification flows, its events) and
    /// completes its flow, all in one transaction: a taken identifier leaves nothing behind.
    pub(crate) async fn finish_registration(
        &self,
        mut flow: Flow,
        mut identity: Identity,
        method: Method,
        provider: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Authenticated> {
        let after = self.config.after(FlowKind::Registration);
        let hooks = after.hooks_for(method.as_str()).unwrap_or_default();
        let traits = identity.traits.clone();
        if let Err(stop) = self
            .run_web_hooks(hooks, Stage::PrePersist, &flow, Some(&mut identity), caller)
            .await
        {
            return Err(self.stopped(&mut flow, stop, None, now).await);
        }
        // A receiver that changed the traits: they must still fit the schema, and the
        // addresses and identifiers follow them.
        if identity.traits != traits {
            let schema = self.schema(&identity.schema_id)?;
            let violations = schema.validate(&identity.traits);
            if !violations.is_empty() {
                for (node, text) in violations {
                    flow.ui.add_message(node.as_deref(), text);
                }
                return Err(self.reject(&mut flow, None, now).await);
            }
            identity.apply_derived(&schema.derive(&identity.traits), now);
        }
        // Without any configured hook Portcullis signs the new identity in (Kratos needs the
        // `session` hook listed for that).
        let session = after
            .runs(method.as_str(), HookName::Session, true)
            .then(|| self.new_session(&identity, method, provider, caller, now));
        // A code to each new e-mail address, queued with the account (its flows first; a
        // registration that then fails leaves only flows that expire).
        let csrf = self.verification_csrf(flow.flow_type, session.as_ref().map(|(s, _)| s), caller);
        let started = self
            .start_verifications(&mut identity, |_| true, flow.flow_type, caller, csrf, now)
            .await?;
        // The flow completes in the same transaction that creates the account, so of
        // concurrent submits of one flow exactly one registers (security review F13).
        let mut completed = flow.clone();
        completed.state = "passed_challenge".into();
        completed.updated_at = now;
        let mut record = AuditRecord::new(
            AuditKind::Registration,
            Actor::Identity(identity.id),
            &caller.origin(),
            now,
        )
        .about(identity.id)
        .reason(method.as_str());
        let mut fx = Effects::event(EventKind::UserCreated);
        if let Some((s, _)) = &session {
            record = record.target(format!("session:{}", s.id));
            fx = fx.and_event(EventKind::SessionCreated);
        }
        let mut fx = fx.audited(record);
        for s in &started {
            if let Some(m) = &s.message {
                fx = fx.message(m.clone());
            }
        }
        match self
            .store
            .complete_registration(&completed, &identity, session.as_ref().map(|(s, _)| s), &fx)
            .await
        {
            Ok(true) => {
                let stored = Some(&mut identity);
                let _ = self
                    .run_web_hooks(hooks, Stage::PostPersist, &completed, stored, caller)
                    .await;
            }
            Ok(false) => {
                flow.ui.messages.push(already_completed(4040002));
                return Err(self.reject(&mut flow, None, now).await);
            }
            // With enumeration mitigation a taken identifier is answered like a new account:
            // the same body, with verification flows whose codes were never sent (their
            // messages rolled back with the account).
            // The flow completes all the same, so a second submit is refused alike.
            Err(StoreError::Conflict(_)) if self.config.security.account_enumeration.mitigate => {
                self.store.complete_flow(&completed).await?;
            }
            Err(StoreError::Conflict(_)) => {
                flow.ui.messages.push(msg::duplicate_credentials());
                return Err(self.reject(&mut flow, None, now).await);
            }
            Err(e) => return Err(e.into()),
        }
        // Apps always learn of the verification flow; browsers with `show_verification_ui`.
        let show_ui = after.runs(method.as_str(), HookName::ShowVerificationUi, false);
        let continue_with: Vec<Value> = if show_ui || completed.flow_type == FlowType::Api {
            started.iter().map(|s| s.continue_with(self)).collect()
        } else {
            vec![]
        };
        let next_page = match started.first() {
            Some(s) if show_ui => Some(self.flow_page_url(FlowKind::Verification, s.flow.id)),
            _ => None,
        };
        let (session, token) = match session {
            Some((s, t)) => (Some(s), Some(t)),
            None => (None, None),
        };
        Ok(Authenticated {
            identity,
            session,
            token,
            flow_type: completed.flow_type,
            return_to: completed.return_to,
            continue_with,
            next_page,
            // A new identity has no second factor yet.
            second_factor: None,
        })
    }
}

fn registration_disabled() -> Error {
    Error::FlowDisabled {
        kind: FlowKind::Registration,
    }
}
