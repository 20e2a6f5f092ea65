//! The login flow: start one (a first sign-in, a re-authentication with `refresh`, or the
//! second step with `aal=aal2`), and submit it with a method: the password, a mailed code or
//! a passkey first, then a second factor. A new method is a new [`LoginMethod`] arm.

use super::form::{already_completed, method_submit, password_input};
use super::web_hook::Stage;
use crate::audit::Origin;
use crate::config::{HookName, RequiredAal};
use crate::error::{Error, Result, SubmitError, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::{Aal, Method};
use crate::service::{Authenticated, Caller, Core};
use crate::store::Effects;
use crate::ui::{msg, UiNode, UiText};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// A login submit, as the face parsed it from the request body.
#[derive(Debug, Clone, Default)]
pub struct LoginSubmit {
    pub method: LoginMethod,
    /// The `csrf_token` body field (browser flows).
    pub csrf_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub enum LoginMethod {
    /// `method=password`; absent fields are empty, and are reported as missing.
    Password {
        identifier: String,
        password: String,
    },
    /// `method=totp` with `totp_code` (a second step).
    Totp { code: String },
    /// `method=lookup_secret` with `lookup_secret` (a second step).
    LookupSecret { code: String },
    /// `method=code`: in a second step, `address` to send a code to; signing in by code
    /// (`code.passwordless_enabled`), the `identifier`; then the `code` that was sent.
    Code {
        identifier: Option<String>,
        address: Option<String>,
        code: Option<String>,
    },
    /// `method=webauthn`: a security key's answer (`webauthn_login`) in a second step; with
    /// passwordless keys the `identifier` first, then the answer.
    WebAuthn {
        identifier: String,
        response: String,
    },
    /// `passkey_login`: a passkey's answer, which names the account itself.
    Passkey { response: String },
    /// `provider`: sign in with a social sign-in provider (or with its ID token).
    Oidc(crate::methods::oidc::OidcSubmit),
    /// A method this server does not offer (or none).
    #[default]
    Unknown,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub async fn new_login_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        refresh: bool,
        aal: Aal,
        identity: Option<&Identity>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let cfg = &self.config.selfservice.flows.login;
        let mut flow = Flow::new(
            FlowKind::Login,
            flow_type,
            request_url,
            self.public_url(),
            cfg.lifespan.0,
            now,
        );
        flow.refresh = refresh;
        if let (Aal::Aal2, Some(i)) = (aal, identity) {
            flow.requested_aal = Aal::Aal2.as_str().into();
            flow.identity_id = Some(i.id);
            let nodes = self.second_factor_nodes(&mut flow, i)?;
            flow.ui.nodes.extend(nodes);
            flow.ui.messages.push(UiText::info(
                1010004,
                "Please complete the second authentication challenge.",
            ));
            self.attach_csrf(&mut flow, caller);
            self.before_flow(&flow, caller).await?;
            self.store.insert_flow(&flow).await?;
            return Ok(flow);
        }
        let schema = self.default_schema()?;
        let mut id_node = UiNode::input(
            "default",
            "identifier",
            "text",
            Some(schema.identifier_label()),
        )
        .with_attr("required", json!(true));
        if self.passkeys_enabled() && flow_type == FlowType::Browser {
            // The browser offers passkeys in the field's autofill (conditional mediation).
            id_node = id_node.with_attr("autocomplete", json!("username webauthn"));
        }
        if let (true, Some(i)) = (refresh, identity) {
            flow.identity_id = Some(i.id);
            // The identifier it signs in with: its password's, else the address it signs in
            // by code with.
            let ident = ["password", "code"]
                .iter()
                .find_map(|k| i.credentials.get(*k))
                .and_then(|c| c.identifiers.first().cloned())
                .unwrap_or_default();
            id_node = id_node.with_attr("type", json!("hidden"));
            id_node.set_value(json!(ident));
            flow.ui.messages.push(msg::reauthenticate());
        }
        // A re-authentication asks for what the identity has: its password, its passkeys.
        let has = |m: Method| identity.is_none_or(|i| i.credentials.contains_key(m.as_str()));
        if !refresh || has(Method::Password) {
            flow.ui.nodes.push(id_node.clone());
            flow.ui.nodes.push(password_input("current-password"));
            flow.ui
                .nodes
                .push(method_submit("password", msg::sign_in_with_password()));
        }
        if self.config.selfservice.methods.code.passwordless_enabled
            && (!refresh || has(Method::Code))
        {
            if refresh && !has(Method::Password) {
                flow.ui.nodes.push(id_node);
            }
            flow.ui.nodes.push(method_submit(
                "code",
                UiText::info(1010015, "Send sign in code"),
            ));
        }
        if !refresh || has(Method::Passkey) {
            let passkey = self.passkey_login_nodes(&mut flow)?;
            flow.ui.nodes.extend(passkey);
        }
        match (refresh, identity) {
            (true, Some(i)) => self.reauthentication_key_nodes(&mut flow, i)?,
            _ => {
                let keys = self.passwordless_login_nodes(&flow);
                flow.ui.nodes.extend(keys);
            }
        }
        // A re-authentication offers the providers the identity has linked.
        let linked = identity.filter(|_| refresh);
        flow.ui
            .nodes
            .extend(self.oidc_buttons(FlowKind::Login, linked));
        self.attach_csrf(&mut flow, caller);
        self.before_flow(&flow, caller).await?;
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    /// Starts a login flow. `aal` is the `aal` query parameter: `aal2` asks the signed-in
    /// caller for its second factor.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_login_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        refresh: bool,
        aal: Option<&str>,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let aal = match aal.filter(|a| !a.is_empty()) {
            None => Aal::Aal1,
            Some(raw) => Aal::parse(raw).ok_or_else(|| {
                Error::bad_request(format!(
                    "Unable to parse AuthenticationMethod Assurance Level (AAL): expected one of [aal1, aal2] but got {}",
                    crate::ui::echo(raw)
                ))
            })?,
        };
        let return_to = self.validate_return_to(return_to)?;
        let mut flow = match (&caller.session, refresh, aal) {
            (None, _, Aal::Aal2) => return Err(Error::Aal1Required),
            (Some((s, i)), _, Aal::Aal2) => {
                if self.available_aal(i) < Aal::Aal2 {
                    return Err(Error::AalAlreadyFulfilled);
                }
                if s.level() >= Aal::Aal2 && !refresh {
                    return Err(Error::AlreadySignedIn);
                }
                self.new_login_flow(flow_type, request_url, refresh, aal, Some(i), caller, now)
                    .await?
            }
            (Some(_), false, _) => return Err(Error::AlreadySignedIn),
            (Some((_, i)), true, _) => {
                self.new_login_flow(flow_type, request_url, true, aal, Some(i), caller, now)
                    .await?
            }
            (None, _, _) => {
                self.new_login_flow(flow_type, request_url, false, aal, None, caller, now)
                    .await?
            }
        };
        self.remember_return_to(&mut flow, return_to).await?;
        Ok(flow)
    }

    pub async fn submit_login(
        &self,
        flow_id: Uuid,
        submit: LoginSubmit,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Authenticated> {
        let mut flow = self
            .load_flow_for_submit(
                FlowKind::Login,
                flow_id,
                caller,
                submit.csrf_token.as_deref(),
                now,
            )
            .await?;
        if flow.requested_aal == Aal::Aal2.as_str() {
            return self
                .submit_second_factor(flow, submit.method, caller, now)
                .await;
        }
        if caller.session.is_some() && !flow.refresh {
            return Err(Error::AlreadySignedIn.into());
        }
        if flow.refresh && caller.session.as_ref().map(|(_, i)| i.id) != flow.identity_id {
            return Err(Error::IdentityMismatch.into());
        }
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            flow.ui.messages.push(already_completed(4010007));
            return Err(self.reject(&mut flow, None, now).await);
        }
        if flow.refresh {
            flow.ui.messages.push(msg::reauthenticate());
        }
        let passwordless = self.config.selfservice.methods.code.passwordless_enabled;
        match submit.method {
            LoginMethod::Password {
                identifier,
                password,
            } => {
                let identity = self
                    .login_with_password(&mut flow, &identifier, &password, &caller.origin(), now)
                    .await?;
                self.complete_login(flow, identity, Method::Password, None, caller, now)
                    .await
            }
            LoginMethod::Code {
                identifier, code, ..
            } if passwordless => {
                let identity = self
                    .login_with_code(&mut flow, identifier, code, caller, now)
                    .await?;
                if flow.refresh && flow.identity_id != Some(identity.id) {
                    return Err(Error::IdentityMismatch.into());
                }
                self.complete_login(flow, identity, Method::Code, None, caller, now)
                    .await
            }
            LoginMethod::Passkey { response } if self.passkeys_enabled() => {
                flow.active = Some(Method::Passkey.as_str().into());
                let checked = self
                    .check_passkey(&flow, &response, &caller.origin(), now)
                    .await?;
                // A re-authentication is the flow's identity's, whoever's passkey answers.
                if let Ok(i) = &checked {
                    if flow.refresh && flow.identity_id != Some(i.id) {
                        return Err(Error::IdentityMismatch.into());
                    }
                }
                let identity = self.signed_in_by(&mut flow, checked, now).await?;
                self.complete_login(flow, identity, Method::Passkey, None, caller, now)
                    .await
            }
            LoginMethod::WebAuthn {
                identifier,
                response,
            } if self.passwordless_keys_enabled() => {
                flow.active = Some(Method::WebAuthn.as_str().into());
                if response.trim().is_empty() {
                    let asked = self.ask_for_key(&mut flow, identifier.trim(), now).await;
                    return Err(asked.into());
                }
                let checked = self
                    .check_passwordless_key(&flow, &response, &caller.origin(), now)
                    .await?;
                // A re-authentication is the flow's identity's, whoever's key answers.
                if let Ok(i) = &checked {
                    if flow.refresh && flow.identity_id != Some(i.id) {
                        return Err(Error::IdentityMismatch.into());
                    }
                }
                let identity = self.signed_in_by(&mut flow, checked, now).await?;
                self.complete_login(
                    flow,
                    identity,
                    Method::WebAuthnPasswordless,
                    None,
                    caller,
                    now,
                )
                .await
            }
            LoginMethod::Oidc(submit) if self.oidc_enabled() => {
                self.submit_oidc(flow, submit, serde_json::json!({}), caller, now)
                    .await
            }
            // A second factor belongs to the second step (`aal=aal2`), never the first.
            _ => {
                flow.ui.messages.push(UiText::error(
                    4010002,
                    "Could not find a strategy to log you in with. Did you fill out the form correctly?",
                    None,
                ));
                Err(self.reject(&mut flow, None, now).await)
            }
        }
    }

    /// What a key or passkey's check found: the identity to sign in, or the flow back with
    /// why not.
    async fn signed_in_by(
        &self,
        flow: &mut Flow,
        checked: std::result::Result<Identity, UiText>,
        now: OffsetDateTime,
    ) -> SubmitResult<Identity> {
        let refused = match checked {
            Ok(identity) if identity.is_active() => return Ok(identity),
            Ok(_) => msg::identity_disabled(),
            Err(text) => text,
        };
        flow.ui.messages.push(refused);
        Err(self.reject(flow, None, now).await)
    }

    /// The password method: the identity whose identifier and password these are, or the
    /// flow with the reason it is not.
    async fn login_with_password(
        &self,
        flow: &mut Flow,
        identifier: &str,
        password: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> SubmitResult<Identity> {
        flow.active = Some("password".into());
        let identifier = identifier.trim();
        if !flow.refresh {
            if let Some(n) = flow.ui.nodes.iter_mut().find(|n| n.name() == "identifier") {
                // No identifier is this long; a huge one is not kept or sent back (F6).
                n.set_value(json!(crate::ui::echo(identifier)));
            }
        }
        let mut missing = false;
        if identifier.is_empty() {
            flow.ui
                .add_message(Some("identifier"), msg::required("identifier"));
            missing = true;
        }
        if password.is_empty() {
            flow.ui
                .add_message(Some("password"), msg::required("password"));
            missing = true;
        }
        if missing {
            return Err(self.reject(flow, None, now).await);
        }
        let only = if flow.refresh { flow.identity_id } else { None };
        let Some(identity) = self
            .verify_password_login(identifier, password, only, origin, now)
            .await?
        else {
            flow.ui.messages.push(msg::invalid_credentials());
            return Err(self.reject(flow, None, now).await);
        };
        if !identity.is_active() {
            flow.ui.messages.push(msg::identity_disabled());
            return Err(self.reject(flow, None, now).await);
        }
        Ok(identity)
    }

    /// Completes the flow once (two racing submits succeed once), then issues a session, or
    /// for a re-authentication refreshes the caller's own; `provider`: the social sign-in
    /// provider `method` went through.
    pub(crate) async fn complete_login(
        &self,
        mut flow: Flow,
        mut identity: Identity,
        method: Method,
        provider: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Authenticated> {
        let after = self.config.after(FlowKind::Login);
        let hook = |h: HookName| after.runs(method.as_str(), h, false);
        if hook(HookName::RequireVerifiedAddress)
            && !identity.verifiable_addresses.iter().any(|a| a.verified)
        {
            let refusal = self
                .address_not_verified(&identity, &flow, caller, now)
                .await?;
            // With enumeration mitigation an unverified account refuses like a wrong
            // password (its owner has the verification mail), so a fresh sign-up cannot be
            // told from a taken address by signing in with its password.
            if self.config.security.account_enumeration.mitigate {
                flow.ui.reset_messages();
                flow.ui.messages.push(msg::invalid_credentials());
                return Err(self.reject(&mut flow, None, now).await);
            }
            return Err(refusal.into());
        }
        let hooks = after.hooks_for(method.as_str()).unwrap_or_default();
        if let Err(stop) = self
            .run_web_hooks(hooks, Stage::Blocking, &flow, Some(&mut identity), caller)
            .await
        {
            return Err(self.stopped(&mut flow, stop, None, now).await);
        }
        // A linking flow joins its provider account to the identity (or refuses).
        self.link_on_sign_in(&mut flow, &mut identity, &caller.origin(), now)
            .await?;
        let flow = self.complete_login_flow(flow, now).await?;
        let (session, token) = match (&caller.session, flow.refresh) {
            (Some((s, _)), true) => {
                let mut s = s.clone();
                s.add_method(method, now);
                s.name_provider(provider);
                // Ended while the password was checked (a password change elsewhere, an admin):
                // it stays ended, and this sign-in is refused.
                if !self.store.update_session(&s, now, &Effects::none()).await? {
                    return Err(Error::SessionInactive.into());
                }
                (s, None)
            }
            _ => {
                let (s, t) = self
                    .issue_session(&identity, method, provider, caller, now)
                    .await?;
                (s, Some(t))
            }
        };
        if token.is_some() && hook(HookName::RevokeActiveSessions) {
            self.revoke_other_sessions(identity.id, session.id, &caller.origin(), "login_hook")
                .await?;
        }
        let mut continue_with = vec![];
        let show_ui = hook(HookName::ShowVerificationUi);
        if hook(HookName::Verification) {
            let csrf = self.verification_csrf(flow.flow_type, Some(&session), caller);
            for v in self
                .send_verifications(&identity, flow.flow_type, caller, csrf, now)
                .await?
            {
                continue_with.push(v);
            }
        }
        if !show_ui && flow.flow_type == FlowType::Browser {
            // Browsers hear of the verification flow only with `show_verification_ui`.
            continue_with.clear();
        }
        let next_page = match continue_with.first() {
            Some(v) if show_ui => v
                .pointer("/flow/url")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        // The session misses the identity's second factor that whoami will ask for: the
        // client goes on to the second step (Kratos's post-login AAL check).
        let whoami = self.config.session.whoami.required_aal;
        let second_factor = (whoami == RequiredAal::HighestAvailable
            && session.level() < self.available_aal(&identity))
        .then(|| self.aal2_login_url(flow.return_to.as_deref()));
        Ok(Authenticated {
            identity,
            session: Some(session),
            token,
            flow_type: flow.flow_type,
            return_to: flow.return_to,
            continue_with,
            next_page,
            second_factor,
        })
    }

    /// Marks a login flow passed, once: of two racing submits the second gets the flow
    /// back with 4010007.
    pub(super) async fn complete_login_flow(
        &self,
        mut flow: Flow,
        now: OffsetDateTime,
    ) -> SubmitResult<Flow> {
        flow.state = "passed_challenge".into();
        flow.updated_at = now;
        if self.store.complete_flow(&flow).await? {
            return Ok(flow);
        }
        let mut fresh = self.store.get_flow(flow.id).await?.unwrap_or(flow);
        fresh.ui.reset_messages();
        fresh.ui.messages.push(already_completed(4010007));
        Err(SubmitError::FlowInvalid {
            flow: Box::new(fresh),
            identity: None,
        })
    }

    /// The `require_verified_address` hook's refusal: a verification flow for the first
    /// e-mail address, with its code sent, for the client to continue with.
    async fn address_not_verified(
        &self,
        identity: &Identity,
        flow: &Flow,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Error> {
        let csrf = self.verification_csrf(flow.flow_type, None, caller);
        let mut started = self
            .send_verifications(identity, flow.flow_type, caller, csrf, now)
            .await?;
        started.truncate(1);
        Ok(Error::AddressNotVerified {
            continue_with: started,
        })
    }
}
