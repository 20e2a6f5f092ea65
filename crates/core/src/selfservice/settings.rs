//! The settings flow: start one for the signed-in identity, show it to its owner only, and
//! submit a profile or password change, or link and unlink a second factor. Changing a
//! password, a trait that identifies the user, or a second factor needs a privileged
//! (recently authenticated) session; with `required_aal: highest_available` the session must
//! also hold the identity's second factor.

use super::form::{fill_trait_values, method_submit, password_input};
use super::web_hook::Stage;
use crate::audit::{Actor, AuditKind, AuditRecord};
use crate::error::{Error, Result, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::lookup::LookupAction;
use crate::methods::Method;
use crate::service::{Caller, Core};
use crate::store::{Effects, StoreError};
use crate::ui::{msg, UiNode, UiText};
use crate::webhooks::EventKind;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// A settings submit, as the face parsed it from the request body.
#[derive(Debug, Clone)]
pub struct SettingsSubmit {
    pub method: SettingsMethod,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SettingsMethod {
    /// `method=profile`: new traits; `form` when they came as HTML form strings.
    Profile { traits: Value, form: bool },
    /// `method=password`: a new password (empty when absent).
    Password { password: String },
    /// `method=totp`: a code of the key the form shows, or `totp_unlink`.
    Totp { code: String, unlink: bool },
    /// `method=lookup_secret` with one of its `lookup_secret_*` buttons (none: nothing asked).
    LookupSecret { action: Option<LookupAction> },
    /// `method=webauthn`: a new security key's answer and name, or `webauthn_remove` (the
    /// key id in hex).
    WebAuthn {
        register: String,
        display_name: String,
        remove: Option<String>,
    },
    /// `method=passkey`: a new passkey's answer, or `passkey_remove` (the key id in hex).
    Passkey {
        register: String,
        remove: Option<String>,
    },
    /// `method=oidc`: `link` a provider (through it) or `unlink` one.
    Oidc {
        link: Option<String>,
        unlink: Option<String>,
    },
    /// A method this server does not offer (or none).
    Unknown,
}

impl SettingsMethod {
    /// The method's name in `after.<method>` (and the flow's `active`).
    pub fn name(&self) -> &'static str {
        match self {
            SettingsMethod::Profile { .. } => "profile",
            SettingsMethod::Password { .. } => "password",
            SettingsMethod::Totp { .. } => "totp",
            SettingsMethod::LookupSecret { .. } => "lookup_secret",
            SettingsMethod::WebAuthn { .. } => "webauthn",
            SettingsMethod::Passkey { .. } => "passkey",
            SettingsMethod::Oidc { .. } => "oidc",
            SettingsMethod::Unknown => "",
        }
    }
}

impl Core {
    pub async fn new_settings_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        identity: &Identity,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let cfg = &self.config.selfservice.flows.settings;
        let mut flow = Flow::new(
            FlowKind::Settings,
            flow_type,
            request_url,
            self.public_url(),
            cfg.lifespan.0,
            now,
        );
        flow.identity_id = Some(identity.id);
        self.render_settings_nodes(&mut flow, identity, false)?;
        self.attach_csrf(&mut flow, caller);
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    /// Draws the form afresh (Kratos's order: profile, password, backup codes, TOTP, security
    /// keys, passkeys); the
    /// backup codes are shown when `reveal`.
    pub(crate) fn render_settings_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
        reveal: bool,
    ) -> Result<()> {
        let schema = self.schema(&identity.schema_id)?;
        let keep: Vec<UiNode> = flow
            .ui
            .nodes
            .iter()
            .filter(|n| n.name() == "csrf_token")
            .cloned()
            .collect();
        flow.ui.nodes = keep;
        for f in &schema.fields {
            flow.ui
                .nodes
                .push(f.node("profile", f.get(&identity.traits)));
        }
        flow.ui
            .nodes
            .push(method_submit("profile", msg::label_save()));
        flow.ui.nodes.push(password_input("new-password"));
        flow.ui
            .nodes
            .push(method_submit("password", msg::label_save()));
        let lookup = self.lookup_settings_nodes(flow, identity, reveal)?;
        flow.ui.nodes.extend(lookup);
        let totp = self.totp_settings_nodes(flow, identity)?;
        flow.ui.nodes.extend(totp);
        let keys = self.webauthn_settings_nodes(flow, identity)?;
        flow.ui.nodes.extend(keys);
        let passkeys = self.passkey_settings_nodes(flow, identity)?;
        flow.ui.nodes.extend(passkeys);
        let providers = self.oidc_settings_nodes(flow, identity);
        flow.ui.nodes.extend(providers);
        Ok(())
    }

    /// Changing a second factor needs a session that proved every factor the identity has,
    /// whatever `settings.required_aal` says: otherwise a password alone could replace or
    /// remove the second factor (and linking would then raise that session to aal2).
    pub(crate) fn require_factors_proven(
        &self,
        session: &crate::session::Session,
        identity: &Identity,
        back: &str,
    ) -> Result<()> {
        use crate::config::RequiredAal;
        self.require_aal(session, identity, RequiredAal::HighestAvailable, Some(back))
    }

    /// `selfservice.flows.settings.required_aal` for a settings request; a browser sent to
    /// the second step comes back to `back`.
    fn require_settings_aal(&self, caller: &Caller, back: &str) -> Result<()> {
        let Some((session, identity)) = &caller.session else {
            return Err(Error::SessionInactive);
        };
        let required = self.config.selfservice.flows.settings.required_aal;
        self.require_aal(session, identity, required, Some(back))
    }

    pub async fn create_settings_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Flow, Identity)> {
        let return_to = self.validate_return_to(return_to)?;
        let Some((_, identity)) = &caller.session else {
            return Err(Error::SessionInactive);
        };
        let back = self.browser_flow_url(FlowKind::Settings, false, return_to.as_deref());
        self.require_settings_aal(caller, &back)?;
        let mut flow = self
            .new_settings_flow(flow_type, request_url, identity, caller, now)
            .await?;
        // After it is stored: a refused settings flow is never seen, and expires.
        self.before_flow(&flow, caller).await?;
        self.remember_return_to(&mut flow, return_to).await?;
        Ok((flow, identity.clone()))
    }

    /// Loads a settings flow for its owner (refused without a session, or for someone else).
    pub async fn get_settings_flow(
        &self,
        id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Flow, Identity)> {
        let identity = signed_in(caller)?;
        let flow = self.load_flow(FlowKind::Settings, id, caller, now).await?;
        let back = format!("{}self-service/settings?flow={id}", self.public_url());
        self.require_settings_aal(caller, &back)?;
        owned(flow, identity)
    }

    pub async fn submit_settings(
        &self,
        flow_id: Uuid,
        submit: SettingsSubmit,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<(Flow, Identity)> {
        let identity = signed_in(caller)?;
        let flow = self
            .load_flow_for_submit(
                FlowKind::Settings,
                flow_id,
                caller,
                submit.csrf_token.as_deref(),
                now,
            )
            .await?;
        let (mut flow, mut identity) = owned(flow, identity)?;
        let Some((session, _)) = &caller.session else {
            return Err(Error::SessionInactive.into());
        };
        let back = format!(
            "{}self-service/settings?flow={}",
            self.public_url(),
            flow.id
        );
        self.require_settings_aal(caller, &back)?;
        let mut reveal = false;
        let mut saved = true;
        flow.ui.reset_messages();
        flow.continue_with.clear();
        let privileged = self.is_privileged(session, now);
        let method = submit.method.name();
        let hooks = self
            .config
            .after(FlowKind::Settings)
            .hooks_for(method)
            .unwrap_or_default();
        // The other methods change credentials, which no receiver rewrites: their hooks that
        // parse may only refuse, before the change (a profile's run before it is stored, below).
        if !matches!(method, "profile" | "") && privileged {
            if let Err(stop) = self
                .run_web_hooks(hooks, Stage::PrePersist, &flow, None, caller)
                .await
            {
                return Err(self.stopped(&mut flow, stop, Some(&identity), now).await);
            }
        }
        match submit.method {
            SettingsMethod::Profile { mut traits, form } => {
                flow.active = Some("profile".into());
                let schema = self.schema(&identity.schema_id)?;
                if form {
                    schema.coerce_form(&mut traits);
                }
                fill_trait_values(&mut flow, &traits);
                let violations = schema.validate(&traits);
                if !violations.is_empty() {
                    for (node, text) in violations {
                        flow.ui.add_message(node.as_deref(), text);
                    }
                    return Err(self.reject(&mut flow, Some(&identity), now).await);
                }
                let derived = schema.derive(&traits);
                let old = schema.derive(&identity.traits);
                if (derived.password_identifiers != old.password_identifiers
                    || derived.verifiable != old.verifiable
                    || derived.recovery != old.recovery)
                    && !privileged
                {
                    return Err(self.refresh_required(flow.id).into());
                }
                // The addresses are where recovery and emailed codes go: changing them is a
                // factor change, so it needs every factor the identity has.
                if derived.verifiable != old.verifiable || derived.recovery != old.recovery {
                    self.require_factors_proven(session, &identity, &back)?;
                }
                identity.traits = traits;
                identity.apply_derived(&derived, now);
                identity.updated_at = now;
                let changed = identity.traits.clone();
                if let Err(stop) = self
                    .run_web_hooks(hooks, Stage::PrePersist, &flow, Some(&mut identity), caller)
                    .await
                {
                    return Err(self.stopped(&mut flow, stop, Some(&identity), now).await);
                }
                // A receiver that changed the traits again: they must fit the schema too.
                if identity.traits != changed {
                    let violations = schema.validate(&identity.traits);
                    if !violations.is_empty() {
                        for (node, text) in violations {
                            flow.ui.add_message(node.as_deref(), text);
                        }
                        return Err(self.reject(&mut flow, Some(&identity), now).await);
                    }
                    identity.apply_derived(&schema.derive(&identity.traits), now);
                }
                // A new address is verified afresh: its code goes out with the change.
                let known: Vec<String> = old.verifiable.iter().map(|(v, _)| v.clone()).collect();
                let started = self
                    .start_verifications(
                        &mut identity,
                        |a| !known.iter().any(|k| k == a),
                        flow.flow_type,
                        caller,
                        caller.csrf_secret.clone(),
                        now,
                    )
                    .await?;
                let mut fx =
                    self.settings_effects(AuditKind::ProfileChanged, &identity, caller, now);
                for s in &started {
                    if let Some(m) = &s.message {
                        fx = fx.message(m.clone());
                    }
                }
                flow.continue_with = started.iter().map(|s| s.continue_with(self)).collect();
                match self.store.update_identity(&mut identity, &fx).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => {
                        flow.ui.messages.push(msg::duplicate_credentials());
                        return Err(self.reject(&mut flow, Some(&identity), now).await);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            SettingsMethod::Password { password } => {
                flow.active = Some("password".into());
                if !privileged {
                    return Err(self.refresh_required(flow.id).into());
                }
                let schema = self.schema(&identity.schema_id)?;
                let ids = schema.derive(&identity.traits).password_identifiers;
                let problem = if password.is_empty() {
                    Some(msg::required("password"))
                } else {
                    self.password_problem(&password, &ids)
                };
                if let Some(t) = problem {
                    flow.ui.add_message(Some("password"), t);
                    return Err(self.reject(&mut flow, Some(&identity), now).await);
                }
                let hash = self.hasher.hash(password).await?;
                identity.set_password_hash(hash, ids, now);
                identity.updated_at = now;
                let mut fx =
                    self.settings_effects(AuditKind::PasswordChanged, &identity, caller, now);
                for m in self.password_changed_notices(&identity, caller, now)? {
                    fx = fx.message(m);
                }
                self.store.update_identity(&mut identity, &fx).await?;
                self.password_changed(identity.id).await?;
                if self.password_change_ends_other_sessions() {
                    let (origin, reason) = (caller.origin(), "password_changed");
                    self.revoke_other_sessions(identity.id, session.id, &origin, reason)
                        .await?;
                }
            }
            SettingsMethod::Totp { code, unlink } if self.factor_enabled(Method::Totp) => {
                flow.active = Some("totp".into());
                if !privileged {
                    return Err(self.refresh_required(flow.id).into());
                }
                self.require_factors_proven(session, &identity, &back)?;
                let origin = caller.origin();
                if unlink {
                    let by = Actor::Identity(identity.id);
                    self.remove_factor(&mut identity, Method::Totp, by, &origin, now)
                        .await?;
                } else {
                    if let Err(text) = self
                        .link_totp(&flow, &mut identity, &code, &origin, now)
                        .await?
                    {
                        flow.ui.add_message(Some("totp_code"), text);
                        return Err(self.reject(&mut flow, Some(&identity), now).await);
                    }
                    if let Some(p) = flow.pending.as_mut() {
                        p.totp = None;
                    }
                    self.second_factor_linked(&identity, session, Method::Totp, now)
                        .await?;
                }
            }
            SettingsMethod::LookupSecret {
                action: Some(action),
            } if self.factor_enabled(Method::LookupSecret) => {
                flow.active = Some("lookup_secret".into());
                if !privileged {
                    return Err(self.refresh_required(flow.id).into());
                }
                self.require_factors_proven(session, &identity, &back)?;
                let origin = caller.origin();
                saved = self
                    .lookup_settings_action(action, &mut flow, &mut identity, &origin, now)
                    .await?;
                reveal = action == LookupAction::Reveal;
                if action == LookupAction::Confirm {
                    self.second_factor_linked(&identity, session, Method::LookupSecret, now)
                        .await?;
                }
            }
            SettingsMethod::WebAuthn {
                register,
                display_name,
                remove,
            } if (self.security_keys_enabled() || self.passwordless_keys_enabled())
                && flow.flow_type == FlowType::Browser =>
            {
                flow.active = Some("webauthn".into());
                if !privileged {
                    return Err(self.refresh_required(flow.id).into());
                }
                self.require_factors_proven(session, &identity, &back)?;
                let origin = caller.origin();
                if let Some(hex_id) = remove {
                    if let Err(text) = self
                        .remove_security_key(&mut identity, &hex_id, &origin, now)
                        .await?
                    {
                        flow.ui.messages.push(text);
                        return Err(self.reject(&mut flow, Some(&identity), now).await);
                    }
                } else {
                    if let Err((node, text)) = self
                        .link_security_key(
                            &flow,
                            &mut identity,
                            &register,
                            &display_name,
                            &origin,
                            now,
                        )
                        .await?
                    {
                        flow.ui.add_message(node, text);
                        return Err(self.reject(&mut flow, Some(&identity), now).await);
                    }
                    // A passwordless key is a first factor: the session stays as it is.
                    if self.security_keys_enabled() {
                        self.second_factor_linked(&identity, session, Method::WebAuthn, now)
                            .await?;
                    }
                }
            }
            SettingsMethod::Passkey { register, remove }
                if self.passkeys_enabled() && flow.flow_type == FlowType::Browser =>
            {
                flow.active = Some("passkey".into());
                if !privileged {
                    return Err(self.refresh_required(flow.id).into());
                }
                self.require_factors_proven(session, &identity, &back)?;
                let origin = caller.origin();
                let done = match remove {
                    Some(hex_id) => {
                        self.remove_passkey(&mut identity, &hex_id, &origin, now)
                            .await?
                    }
                    None => {
                        self.link_passkey(&flow, &mut identity, &register, &origin, now)
                            .await?
                    }
                };
                if let Err(text) = done {
                    flow.ui.messages.push(text);
                    return Err(self.reject(&mut flow, Some(&identity), now).await);
                }
            }
            SettingsMethod::Oidc { link, unlink } if self.oidc_enabled() => {
                if !privileged {
                    return Err(self.refresh_required(flow.id).into());
                }
                self.oidc_settings(
                    &mut flow,
                    &mut identity,
                    link,
                    unlink,
                    &caller.origin(),
                    now,
                )
                .await?;
            }
            SettingsMethod::Totp { .. }
            | SettingsMethod::Oidc { .. }
            | SettingsMethod::LookupSecret { .. }
            | SettingsMethod::WebAuthn { .. }
            | SettingsMethod::Passkey { .. }
            | SettingsMethod::Unknown => {
                flow.ui.messages.push(UiText::error(
                    4010004,
                    "Could not find a strategy to update your settings. Did you fill out the form correctly?",
                    None,
                ));
                return Err(self.reject(&mut flow, Some(&identity), now).await);
            }
        }
        self.render_settings_nodes(&mut flow, &identity, reveal)?;
        if saved {
            flow.state = "success".into();
            flow.ui.messages = vec![msg::settings_saved()];
        } else {
            // New or revealed codes: the form again, showing them (Kratos's "return to UI").
            flow.state = "show_form".into();
        }
        flow.updated_at = now;
        self.store.update_flow(&flow).await?;
        let stored = Some(&mut identity);
        let _ = self
            .run_web_hooks(hooks, Stage::PostPersist, &flow, stored, caller)
            .await;
        Ok((flow, identity))
    }

    /// Whether a new password chosen while signed in ends the identity's other sessions
    /// (`security.password_change.revoke_other_sessions`, or the settings flow's
    /// `revoke_active_sessions` hook for `password`).
    pub(crate) fn password_change_ends_other_sessions(&self) -> bool {
        self.config.security.password_change.revoke_other_sessions
            || self.config.after(FlowKind::Settings).runs(
                "password",
                crate::config::HookName::RevokeActiveSessions,
                false,
            )
    }

    /// "Your password was changed", to every e-mail address of the identity, when the courier
    /// has somewhere to send it (a flow that mails is enabled).
    pub(crate) fn password_changed_notices(
        &self,
        identity: &Identity,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Vec<crate::courier::Message>> {
        if !self.config.selfservice.sends_mail() {
            return Ok(vec![]);
        }
        let mut to: Vec<&str> = identity
            .verifiable_addresses
            .iter()
            .filter(|a| a.via == "email")
            .map(|a| a.value.as_str())
            .chain(
                identity
                    .recovery_addresses
                    .iter()
                    .filter(|a| a.via == "email")
                    .map(|a| a.value.as_str()),
            )
            .collect();
        to.sort_unstable();
        to.dedup();
        let model = serde_json::json!({
            "Identity": identity.to_api_json(self.public_url(), crate::identity::View::Public),
            "RecoveryURL": self.browser_flow_url(FlowKind::Recovery, false, None),
        });
        to.into_iter()
            .map(|addr| {
                self.compose(
                    crate::courier::TemplateKind::PasswordChanged,
                    addr,
                    caller.locale,
                    &model,
                    Some(identity.id),
                    now,
                )
            })
            .collect()
    }

    /// Whether `session` is recent enough for a privileged change
    /// (`selfservice.flows.settings.privileged_session_max_age`).
    pub(crate) fn is_privileged(
        &self,
        session: &crate::session::Session,
        now: OffsetDateTime,
    ) -> bool {
        now - session.authenticated_at
            <= self
                .config
                .selfservice
                .flows
                .settings
                .privileged_session_max_age
                .0
    }

    /// The session is too old for this change: re-authenticate, then come back to the flow.
    pub(crate) fn refresh_required(&self, flow_id: Uuid) -> Error {
        let back = format!("{}self-service/settings?flow={flow_id}", self.public_url());
        Error::RefreshRequired {
            redirect_browser_to: self.browser_flow_url(FlowKind::Login, true, Some(&back)),
        }
    }

    /// What a settings change writes with itself: `user.updated` and its audit record, by
    /// the signed-in identity.
    fn settings_effects(
        &self,
        kind: AuditKind,
        identity: &Identity,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Effects {
        let record = AuditRecord::new(kind, Actor::Identity(identity.id), &caller.origin(), now)
            .about(identity.id);
        Effects::event(EventKind::UserUpdated).audited(record)
    }
}

fn signed_in(caller: &Caller) -> Result<&Identity> {
    match &caller.session {
        Some((_, identity)) => Ok(identity),
        None => Err(Error::SessionInactive),
    }
}

/// A settings flow belongs to the identity it was started for.
fn owned(flow: Flow, identity: &Identity) -> Result<(Flow, Identity)> {
    if flow.identity_id != Some(identity.id) {
        return Err(Error::IdentityMismatch);
    }
    Ok((flow, identity.clone()))
}
