//! The self-service and admin use cases, independent of HTTP and SQL.
//!
//! Every method takes `now` (a [`Clock`] reading taken once per request) so expiry rules are
//! exact in tests.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::{Identity, View};
use crate::password::{check_policy, Hasher};
use crate::schema::IdentitySchema;
use crate::session::{new_token, Device, Session};
use crate::store::Store;
use crate::ui::{msg, UiNode};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// What the HTTP layer knows about the caller of a flow endpoint.
#[derive(Debug, Default, Clone)]
pub struct Caller {
    pub session: Option<(Session, Identity)>,
    pub has_cookies: bool,
    pub has_origin: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The anti-CSRF secret of a browser: from its cookie, or freshly issued by a flow init
    /// that will set the cookie.
    pub csrf_secret: Option<String>,
    /// The `X-CSRF-Token` header, an alternative to the `csrf_token` body field.
    pub csrf_header: Option<String>,
    /// The body came as `application/x-www-form-urlencoded`: trait values arrive as strings
    /// and are coerced to the schema's types.
    pub form: bool,
}

/// The successful outcome of a native login or registration.
pub struct Authenticated {
    pub identity: Identity,
    pub session: Session,
    /// Present when a new session was issued.
    pub token: Option<String>,
    pub flow_type: FlowType,
    /// The flow's validated `return_to`, if it had one.
    pub return_to: Option<String>,
}

pub struct Core {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub hasher: Hasher,
    pub schemas: HashMap<String, IdentitySchema>,
    pub clock: Arc<dyn Clock>,
    pub keyring: crate::tokens::KeyRingCache,
}

impl Core {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn public_url(&self) -> &str {
        self.config.public_url()
    }

    pub fn schema(&self, id: &str) -> Result<&IdentitySchema> {
        self.schemas.get(id).ok_or_else(|| {
            Error::bad_request(format!("The identity schema {id:?} is not configured."))
        })
    }

    fn default_schema(&self) -> Result<&IdentitySchema> {
        self.schema(&self.config.identity.default_schema_id)
    }

    // ---------------------------------------------------------------- sessions

    /// Resolves a session token into a valid session and its identity.
    pub async fn authenticate(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Session, Identity)> {
        if token.starts_with("eyJ") {
            // One of our access tokens (`Authorization: Bearer <jwt>`), not an opaque session token.
            return self.authenticate_access_token(token, now).await;
        }
        let hash = crate::session::hash_token(token);
        match self.store.session_by_token_hash(&hash).await? {
            Some((s, i)) if s.is_valid(&i, now) => Ok((s, i)),
            _ => Err(Error::session_inactive()),
        }
    }

    pub(crate) async fn issue_session(
        &self,
        identity: &Identity,
        method: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Session, String)> {
        let (s, token) = self.new_session(identity, method, caller, now);
        self.store.insert_session(&s).await?;
        Ok((s, token))
    }

    fn new_session(
        &self,
        identity: &Identity,
        method: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> (Session, String) {
        let t = new_token();
        let device = Device {
            id: Uuid::new_v4(),
            ip_address: caller.ip.clone(),
            user_agent: caller.user_agent.clone(),
            location: None,
        };
        let s = Session::new(
            identity.id,
            method,
            t.hash,
            self.config.session.lifespan.0,
            device,
            now,
        );
        (s, t.token)
    }

    /// The first password-policy violation, including the hasher's own input limit.
    fn password_problem(
        &self,
        password: &str,
        identifiers: &[String],
    ) -> Option<crate::ui::UiText> {
        if let Some(max) = self.hasher.max_password_bytes() {
            if password.len() > max {
                return Some(msg::password_max_length(max, password.len()));
            }
        }
        check_policy(
            password,
            identifiers,
            &self.config.selfservice.methods.password.config,
        )
    }

    pub async fn logout_token(&self, token: &str, now: OffsetDateTime) -> Result<()> {
        let hash = crate::session::hash_token(token);
        match self.store.session_by_token_hash(&hash).await? {
            Some((mut s, _)) if s.active => {
                s.active = false;
                s.expires_at = s.expires_at.min(now);
                self.store.update_session(&s, now).await?;
                Ok(())
            }
            _ => Err(Error::bad_request("Unable to log out because the session token does not exist or is no longer active.")),
        }
    }

    pub fn session_json(
        &self,
        s: &Session,
        identity: Option<&Identity>,
        view: View<'_>,
        now: OffsetDateTime,
    ) -> Value {
        s.to_api_json(identity, self.public_url(), view, now)
    }

    // ---------------------------------------------------------------- flows: common

    /// API flows refuse browser requests; browser flows need the anti-CSRF token (body field
    /// `csrf_token` or header `X-CSRF-Token`) to match the browser's CSRF cookie.
    fn guard_request(&self, flow: &Flow, caller: &Caller, body: &Value) -> Result<()> {
        match flow.flow_type {
            FlowType::Api if caller.has_origin || caller.has_cookies => Err(Error::bad_request(
                "The request carries an Origin header or cookies, which is not allowed for API flows. Use a browser flow instead.",
            )),
            FlowType::Api => Ok(()),
            FlowType::Browser => {
                let submitted = body
                    .get("csrf_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .or(caller.csrf_header.as_deref());
                match (&caller.csrf_secret, submitted) {
                    (None, _) => Err(csrf_violation("The anti-CSRF cookie was not sent with the request.")),
                    (Some(_), None) => Err(csrf_violation("The anti-CSRF token was not sent in the csrf_token field or the X-CSRF-Token header.")),
                    (Some(s), Some(t)) if crate::csrf::verify(s, t) => Ok(()),
                    _ => Err(csrf_violation("The anti-CSRF token does not match the anti-CSRF cookie.")),
                }
            }
        }
    }

    /// Gives a new browser flow its anti-CSRF token: stored on the flow and rendered as the
    /// hidden `csrf_token` node, first in the form.
    fn attach_csrf(&self, flow: &mut Flow, caller: &Caller) {
        if flow.flow_type != FlowType::Browser {
            return;
        }
        let Some(token) = caller.csrf_secret.as_deref().and_then(crate::csrf::mask) else {
            return;
        };
        let mut node = UiNode::input("default", "csrf_token", "hidden", None)
            .with_attr("required", json!(true));
        node.set_value(json!(token));
        flow.ui.nodes.retain(|n| n.name() != "csrf_token");
        flow.ui.nodes.insert(0, node);
        flow.csrf_token = Some(token);
    }

    /// Whether the caller's CSRF cookie is the one a browser flow was issued with.
    fn check_flow_cookie(&self, flow: &Flow, caller: &Caller) -> Result<()> {
        if flow.flow_type != FlowType::Browser {
            return Ok(());
        }
        match (&caller.csrf_secret, &flow.csrf_token) {
            (Some(s), Some(t)) if crate::csrf::verify(s, t) => Ok(()),
            _ => Err(csrf_violation(
                "The anti-CSRF cookie is missing or does not belong to this flow.",
            )),
        }
    }

    /// Loads a flow of `kind` for reading; an expired flow yields 410.
    pub async fn load_flow(
        &self,
        kind: FlowKind,
        id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        self.load_flow_inner(kind, id, caller, now, None).await
    }

    /// Loads a flow of `kind` for a submit of `body`: the request must pass the flow type's
    /// guard (CSRF for browsers) before anything else, and an expired flow yields 410 with the
    /// id of a fresh replacement flow (`use_flow_id`) that tells the user why.
    async fn load_flow_for_submit(
        &self,
        kind: FlowKind,
        id: Uuid,
        caller: &Caller,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        self.load_flow_inner(kind, id, caller, now, Some(body))
            .await
    }

    async fn load_flow_inner(
        &self,
        kind: FlowKind,
        id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
        submit: Option<&Value>,
    ) -> Result<Flow> {
        let flow = match self.store.get_flow(id).await? {
            Some(f) if f.kind == kind => f,
            _ => {
                return Err(Error::not_found(format!(
                    "The {} flow could not be found.",
                    kind.as_str()
                )))
            }
        };
        let replace = match submit {
            Some(body) => {
                self.guard_request(&flow, caller, body)?;
                true
            }
            None => false,
        };
        if flow.is_expired(now) {
            let since_ns = (now - flow.expires_at).whole_nanoseconds() as i64;
            let expired_at = crate::identity::rfc3339(flow.expires_at);
            let err = Error::api(
                410,
                Some("self_service_flow_expired"),
                "The self-service flow has expired. Please retry the flow.",
            );
            if !replace {
                let mut details = json!({ "since": since_ns, "expired_at": expired_at });
                if flow.flow_type == FlowType::Browser {
                    // A browser starts over at the flow's init URL, heading where it was.
                    details["redirect_to"] =
                        json!(self.browser_flow_url(kind, false, flow.return_to.as_deref()));
                }
                return Err(err
                    .with_details(details)
                    .with_extra(json!({ "since": since_ns, "expired_at": expired_at })));
            }
            let mut replacement = match kind {
                FlowKind::Login => {
                    self.new_login_flow(
                        flow.flow_type,
                        flow.request_url.clone(),
                        false,
                        None,
                        caller,
                        now,
                    )
                    .await?
                }
                FlowKind::Registration => {
                    self.new_registration_flow(
                        flow.flow_type,
                        flow.request_url.clone(),
                        caller,
                        now,
                    )
                    .await?
                }
                FlowKind::Settings => match &caller.session {
                    Some((_, i)) => {
                        self.new_settings_flow(
                            flow.flow_type,
                            flow.request_url.clone(),
                            i,
                            caller,
                            now,
                        )
                        .await?
                    }
                    None => return Err(Error::session_inactive()),
                },
            };
            let minutes = since_ns as f64 / 60e9;
            replacement.ui.messages.push(msg::flow_expired(
                kind.as_str(),
                minutes,
                &expired_at,
                flow.expires_at.unix_timestamp(),
            ));
            replacement.return_to = flow.return_to.clone();
            self.store.update_flow(&replacement).await?;
            return Err(err
                .with_details(json!({ "id": replacement.id, "since": since_ns, "expired_at": expired_at }))
                .with_extra(json!({ "use_flow_id": replacement.id, "since": since_ns, "expired_at": expired_at })));
        }
        if !replace {
            // Reading a browser flow needs the CSRF cookie it was issued with.
            self.check_flow_cookie(&flow, caller)?;
        }
        Ok(flow)
    }

    fn flow_json(&self, flow: &Flow, identity: Option<&Identity>) -> Value {
        flow.to_api_json(identity.map(|i| i.to_api_json(self.public_url(), View::Public)))
    }

    async fn fail(
        &self,
        flow: &mut Flow,
        identity: Option<&Identity>,
        now: OffsetDateTime,
    ) -> Error {
        flow.updated_at = now;
        if let Err(e) = self.store.update_flow(flow).await {
            return e.into();
        }
        Error::FlowInvalid(Box::new(self.flow_json(flow, identity)))
    }

    pub fn flow_response(&self, flow: &Flow, identity: Option<&Identity>) -> Value {
        self.flow_json(flow, identity)
    }

    // ---------------------------------------------------------------- registration

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
        flow.ui.nodes.push(
            UiNode::input("password", "method", "submit", Some(msg::sign_up()))
                .with_attr("value", json!("password")),
        );
        self.attach_csrf(&mut flow, caller);
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
        let return_to = self.checked_return_to(return_to)?;
        if caller.session.is_some() {
            return Err(already_logged_in());
        }
        let mut flow = self
            .new_registration_flow(flow_type, request_url, caller, now)
            .await?;
        self.remember_return_to(&mut flow, return_to).await?;
        Ok(flow)
    }

    /// `return_to` must match `selfservice.allowed_return_urls` or point at our own public URL.
    fn checked_return_to(&self, return_to: Option<String>) -> Result<Option<String>> {
        match return_to.filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(r)
                if return_to_allowed(
                    &r,
                    self.public_url(),
                    &self.config.selfservice.allowed_return_urls,
                ) =>
            {
                // Kept as parsed, so what was checked is what redirects (the parser drops
                // tabs and newlines that would otherwise reach a Location header).
                Ok(url::Url::parse(&r).map(|u| u.to_string()).ok())
            }
            Some(r) => Err(Error::api(
                400,
                Some("self_service_flow_return_to_forbidden"),
                format!("Requested return_to URL {r:?} is not allowed."),
            )),
        }
    }

    async fn remember_return_to(&self, flow: &mut Flow, return_to: Option<String>) -> Result<()> {
        if return_to.is_some() {
            flow.return_to = return_to;
            self.store.update_flow(flow).await?;
        }
        Ok(())
    }

    pub async fn submit_registration(
        &self,
        flow_id: Uuid,
        body: &Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Authenticated> {
        if !self.config.selfservice.flows.registration.enabled {
            return Err(registration_disabled());
        }
        let mut flow = self
            .load_flow_for_submit(FlowKind::Registration, flow_id, caller, body, now)
            .await?;
        if caller.session.is_some() {
            return Err(already_logged_in());
        }
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            flow.ui.messages.push(crate::ui::UiText::error(
                4040002,
                "The request was already completed successfully and can not be retried.",
                None,
            ));
            return Err(self.fail(&mut flow, None, now).await);
        }
        let method = body
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut traits = body.get("traits").cloned().unwrap_or_else(|| json!({}));
        if caller.form {
            self.default_schema()?.coerce_form(&mut traits);
        }
        fill_trait_values(&mut flow, &traits);
        if method != "password" {
            flow.ui.messages.push(crate::ui::UiText::error(
                4010003,
                "Could not find a strategy to sign you up with. Did you fill out the form correctly?",
                None,
            ));
            return Err(self.fail(&mut flow, None, now).await);
        }
        flow.active = Some("password".into());
        let schema = self.default_schema()?;
        let violations = schema.validate(&traits);
        let password = body
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let derived = schema.derive(&traits);
        let mut failed = !violations.is_empty();
        for (node, text) in violations {
            flow.ui.add_message(node.as_deref(), text);
        }
        if password.is_empty() {
            flow.ui
                .add_message(Some("password"), msg::required("password"));
            failed = true;
        } else if let Some(t) = self.password_problem(&password, &derived.password_identifiers) {
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
            return Err(self.fail(&mut flow, None, now).await);
        }
        let hash = self.hasher.hash(password).await?;
        let mut identity = Identity::new(&schema.id, traits, now);
        identity.set_password_hash(hash, derived.password_identifiers.clone(), now);
        identity.apply_derived(&derived, now);
        let (session, token) = self.new_session(&identity, "password", caller, now);
        match self
            .store
            .insert_identity_with_session(&identity, &session)
            .await
        {
            Ok(()) => {}
            Err(crate::store::StoreError::Conflict(_)) => {
                flow.ui.messages.push(msg::duplicate_credentials());
                return Err(self.fail(&mut flow, None, now).await);
            }
            Err(e) => return Err(e.into()),
        }
        flow.state = "passed_challenge".into();
        flow.updated_at = now;
        self.store.complete_flow(&flow).await?;
        Ok(Authenticated {
            identity,
            session,
            token: Some(token),
            flow_type: flow.flow_type,
            return_to: flow.return_to,
        })
    }

    // ---------------------------------------------------------------- login

    pub async fn new_login_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        refresh: bool,
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
        let schema = self.default_schema()?;
        let mut id_node = UiNode::input(
            "default",
            "identifier",
            "text",
            Some(schema.identifier_label()),
        )
        .with_attr("required", json!(true));
        if let (true, Some(i)) = (refresh, identity) {
            flow.identity_id = Some(i.id);
            let ident = i
                .credentials
                .get("password")
                .and_then(|c| c.identifiers.first().cloned())
                .unwrap_or_default();
            id_node = id_node.with_attr("type", json!("hidden"));
            id_node.set_value(json!(ident));
            flow.ui.messages.push(msg::reauthenticate());
        }
        flow.ui.nodes.push(id_node);
        flow.ui.nodes.push(password_input("current-password"));
        flow.ui.nodes.push(
            UiNode::input(
                "password",
                "method",
                "submit",
                Some(msg::sign_in_with_password()),
            )
            .with_attr("value", json!("password")),
        );
        self.attach_csrf(&mut flow, caller);
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    pub async fn create_login_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        refresh: bool,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let return_to = self.checked_return_to(return_to)?;
        let mut flow = match (&caller.session, refresh) {
            (Some(_), false) => return Err(already_logged_in()),
            (Some((_, i)), true) => {
                self.new_login_flow(flow_type, request_url, true, Some(i), caller, now)
                    .await?
            }
            (None, _) => {
                self.new_login_flow(flow_type, request_url, false, None, caller, now)
                    .await?
            }
        };
        self.remember_return_to(&mut flow, return_to).await?;
        Ok(flow)
    }

    pub async fn submit_login(
        &self,
        flow_id: Uuid,
        body: &Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Authenticated> {
        let mut flow = self
            .load_flow_for_submit(FlowKind::Login, flow_id, caller, body, now)
            .await?;
        if caller.session.is_some() && !flow.refresh {
            return Err(already_logged_in());
        }
        if flow.refresh && caller.session.as_ref().map(|(_, i)| i.id) != flow.identity_id {
            return Err(Error::api(
                403,
                Some("security_identity_mismatch"),
                "The flow was initiated by someone else.",
            ));
        }
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            flow.ui.messages.push(crate::ui::UiText::error(
                4010007,
                "The request was already completed successfully and can not be retried.",
                None,
            ));
            return Err(self.fail(&mut flow, None, now).await);
        }
        if flow.refresh {
            flow.ui.messages.push(msg::reauthenticate());
        }
        let method = body
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if method != "password" {
            flow.ui.messages.push(crate::ui::UiText::error(
                4010002,
                "Could not find a strategy to log you in with. Did you fill out the form correctly?",
                None,
            ));
            return Err(self.fail(&mut flow, None, now).await);
        }
        flow.active = Some("password".into());
        let identifier = body
            .get("identifier")
            .or_else(|| body.get("password_identifier"))
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        let password = body
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !flow.refresh {
            if let Some(n) = flow.ui.nodes.iter_mut().find(|n| n.name() == "identifier") {
                n.set_value(json!(identifier));
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
            return Err(self.fail(&mut flow, None, now).await);
        }
        let only = if flow.refresh { flow.identity_id } else { None };
        let Some(identity) = self
            .verify_password_login(&identifier, &password, only, now)
            .await?
        else {
            flow.ui.messages.push(msg::invalid_credentials());
            return Err(self.fail(&mut flow, None, now).await);
        };
        if !identity.is_active() {
            flow.ui.messages.push(msg::identity_disabled());
            return Err(self.fail(&mut flow, None, now).await);
        }
        flow.state = "passed_challenge".into();
        flow.updated_at = now;
        if !self.store.complete_flow(&flow).await? {
            // A concurrent submit of the same flow won.
            let mut fresh = self.store.get_flow(flow.id).await?.unwrap_or(flow);
            fresh.ui.reset_messages();
            fresh.ui.messages.push(crate::ui::UiText::error(
                4010007,
                "The request was already completed successfully and can not be retried.",
                None,
            ));
            return Err(Error::FlowInvalid(Box::new(self.flow_json(&fresh, None))));
        }
        match (&caller.session, flow.refresh) {
            (Some((s, _)), true) => {
                let mut s = s.clone();
                s.authenticated_at = now;
                s.authentication_methods.push(crate::session::AuthMethod {
                    method: "password".into(),
                    aal: "aal1".into(),
                    completed_at: now,
                });
                self.store.update_session(&s, now).await?;
                Ok(Authenticated {
                    identity,
                    session: s,
                    token: None,
                    flow_type: flow.flow_type,
                    return_to: flow.return_to,
                })
            }
            _ => {
                let (session, token) = self
                    .issue_session(&identity, "password", caller, now)
                    .await?;
                Ok(Authenticated {
                    identity,
                    session,
                    token: Some(token),
                    flow_type: flow.flow_type,
                    return_to: flow.return_to,
                })
            }
        }
    }

    // ---------------------------------------------------------------- settings

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
        self.render_settings_nodes(&mut flow, identity)?;
        self.attach_csrf(&mut flow, caller);
        self.store.insert_flow(&flow).await?;
        Ok(flow)
    }

    fn render_settings_nodes(&self, flow: &mut Flow, identity: &Identity) -> Result<()> {
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
        flow.ui.nodes.push(
            UiNode::input("profile", "method", "submit", Some(msg::label_save()))
                .with_attr("value", json!("profile")),
        );
        flow.ui.nodes.push(password_input("new-password"));
        flow.ui.nodes.push(
            UiNode::input("password", "method", "submit", Some(msg::label_save()))
                .with_attr("value", json!("password")),
        );
        Ok(())
    }

    pub async fn create_settings_flow(
        &self,
        flow_type: FlowType,
        request_url: String,
        return_to: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Flow, Identity)> {
        let return_to = self.checked_return_to(return_to)?;
        let Some((_, identity)) = &caller.session else {
            return Err(Error::session_inactive());
        };
        let mut flow = self
            .new_settings_flow(flow_type, request_url, identity, caller, now)
            .await?;
        self.remember_return_to(&mut flow, return_to).await?;
        Ok((flow, identity.clone()))
    }

    /// Loads a settings flow for its owner (401 without a session, 403 for someone else).
    pub async fn get_settings_flow(
        &self,
        id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Flow, Identity)> {
        self.owned_settings_flow(id, caller, now, None).await
    }

    /// A settings flow of the caller's identity, for reading or (with the body) a submit.
    async fn owned_settings_flow(
        &self,
        id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
        submit: Option<&Value>,
    ) -> Result<(Flow, Identity)> {
        let Some((_, identity)) = &caller.session else {
            return Err(Error::session_inactive());
        };
        let flow = self
            .load_flow_inner(FlowKind::Settings, id, caller, now, submit)
            .await?;
        if flow.identity_id != Some(identity.id) {
            return Err(Error::api(
                403,
                Some("security_identity_mismatch"),
                "The flow was initiated by someone else.",
            ));
        }
        Ok((flow, identity.clone()))
    }

    pub async fn submit_settings(
        &self,
        flow_id: Uuid,
        body: &Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Flow, Identity)> {
        let (mut flow, mut identity) = self
            .owned_settings_flow(flow_id, caller, now, Some(body))
            .await?;
        let Some((session, _)) = &caller.session else {
            return Err(Error::session_inactive());
        };
        flow.ui.reset_messages();
        let method = body
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let privileged = now - session.authenticated_at
            <= self
                .config
                .selfservice
                .flows
                .settings
                .privileged_session_max_age
                .0;
        let flow_id = flow.id;
        let refresh_required = || {
            let back = format!("{}self-service/settings?flow={flow_id}", self.public_url());
            let url = self.browser_flow_url(FlowKind::Login, true, Some(&back));
            Error::api(403, Some("session_refresh_required"), "The login session is too old and thus not allowed to update these fields. Please re-authenticate.")
                .with_details(json!({ "redirect_browser_to": url }))
                .with_extra(json!({ "redirect_browser_to": url }))
        };
        match method {
            "profile" => {
                flow.active = Some("profile".into());
                let mut traits = body.get("traits").cloned().unwrap_or_else(|| json!({}));
                let schema = self.schema(&identity.schema_id)?;
                if caller.form {
                    schema.coerce_form(&mut traits);
                }
                fill_trait_values(&mut flow, &traits);
                let violations = schema.validate(&traits);
                if !violations.is_empty() {
                    for (node, text) in violations {
                        flow.ui.add_message(node.as_deref(), text);
                    }
                    return Err(self.fail(&mut flow, Some(&identity), now).await);
                }
                let derived = schema.derive(&traits);
                let old = schema.derive(&identity.traits);
                if (derived.password_identifiers != old.password_identifiers
                    || derived.verifiable != old.verifiable
                    || derived.recovery != old.recovery)
                    && !privileged
                {
                    return Err(refresh_required());
                }
                identity.traits = traits;
                identity.apply_derived(&derived, now);
                identity.updated_at = now;
                match self.store.update_identity(&mut identity).await {
                    Ok(()) => {}
                    Err(crate::store::StoreError::Conflict(_)) => {
                        flow.ui.messages.push(msg::duplicate_credentials());
                        return Err(self.fail(&mut flow, Some(&identity), now).await);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            "password" => {
                flow.active = Some("password".into());
                if !privileged {
                    return Err(refresh_required());
                }
                let password = body
                    .get("password")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let schema = self.schema(&identity.schema_id)?;
                let ids = schema.derive(&identity.traits).password_identifiers;
                let problem = if password.is_empty() {
                    Some(msg::required("password"))
                } else {
                    self.password_problem(&password, &ids)
                };
                if let Some(t) = problem {
                    flow.ui.add_message(Some("password"), t);
                    return Err(self.fail(&mut flow, Some(&identity), now).await);
                }
                let hash = self.hasher.hash(password).await?;
                identity.set_password_hash(hash, ids, now);
                identity.updated_at = now;
                self.store.update_identity(&mut identity).await?;
                self.password_changed(identity.id).await?;
            }
            _ => {
                flow.ui.messages.push(crate::ui::UiText::error(
                    4010004,
                    "Could not find a strategy to update your settings. Did you fill out the form correctly?",
                    None,
                ));
                return Err(self.fail(&mut flow, Some(&identity), now).await);
            }
        }
        self.render_settings_nodes(&mut flow, &identity)?;
        flow.state = "success".into();
        flow.ui.messages = vec![msg::settings_saved()];
        flow.updated_at = now;
        self.store.update_flow(&flow).await?;
        Ok((flow, identity))
    }
}

impl Core {
    /// Keeps an error a browser was redirected away from, for the error page
    /// (`/self-service/errors?id=`), and returns its id. Errors live as long as a login flow.
    pub async fn record_flow_error(&self, err: &Error, now: OffsetDateTime) -> Result<Uuid> {
        let id = Uuid::new_v4();
        let at = crate::identity::rfc3339(now);
        let body = json!({
            "id": id,
            "error": crate::admin::error_body(err),
            "created_at": at,
            "updated_at": at,
        });
        let keep = self.config.selfservice.flows.login.lifespan.0;
        self.store.insert_flow_error(id, &body, now + keep).await?;
        Ok(id)
    }

    /// A kept error, or one of Kratos' stubs (`stub:500`, `stub:404`, `stub:400`) for UI work.
    pub async fn flow_error(&self, id: &str, now: OffsetDateTime) -> Result<Value> {
        let stub = match id {
            "stub:500" => Some(Error::Internal("This is a stub error.".into())),
            "stub:404" => Some(Error::not_found("This is a stub error.")),
            "stub:400" => Some(Error::bad_request("This is a stub error.")),
            _ => None,
        };
        if let Some(e) = stub {
            let at = crate::identity::rfc3339(now);
            return Ok(
                json!({ "id": id, "error": crate::admin::error_body(&e), "created_at": at, "updated_at": at }),
            );
        }
        let missing = || Error::not_found("The requested error could not be found.");
        let uuid = Uuid::parse_str(id).map_err(|_| missing())?;
        self.store.get_flow_error(uuid).await?.ok_or_else(missing)
    }

    /// Ends a session (logout): inactive from now on.
    pub async fn end_session(&self, session: &Session, now: OffsetDateTime) -> Result<()> {
        let mut s = session.clone();
        s.active = false;
        s.expires_at = s.expires_at.min(now);
        self.store.update_session(&s, now).await?;
        Ok(())
    }

    /// The URL that starts a browser flow of `kind`: `<public>self-service/<kind>/browser`,
    /// with `refresh=true` (re-authentication) and `return_to` when given.
    pub fn browser_flow_url(
        &self,
        kind: FlowKind,
        refresh: bool,
        return_to: Option<&str>,
    ) -> String {
        let mut url = format!(
            "{}self-service/{}/browser",
            self.public_url(),
            kind.as_str()
        );
        let mut sep = '?';
        if refresh {
            url += "?refresh=true";
            sep = '&';
        }
        if let Some(r) = return_to.filter(|r| !r.is_empty()) {
            url += &format!("{sep}return_to={}", urlencode(r));
        }
        url
    }

    /// Checks a `return_to` against the allow-list (400 `self_service_flow_return_to_forbidden`).
    pub fn validate_return_to(&self, return_to: Option<String>) -> Result<Option<String>> {
        self.checked_return_to(return_to)
    }

    /// A new password ends the identity's refresh-token families (configurable).
    pub(crate) async fn password_changed(&self, identity_id: Uuid) -> Result<()> {
        if self.config.tokens.revoke_on_password_change {
            self.store
                .revoke_identity_refresh_tokens(identity_id)
                .await?;
        }
        Ok(())
    }

    /// Finds the identity with this password identifier and checks the password, at the same
    /// cost whether or not it exists (a dummy hash stands in). With `only`, an identifier of any
    /// other identity counts as unknown. A verified hash of an older algorithm or weaker
    /// parameters is upgraded. Returns the identity only when the password is right; the caller
    /// decides what an inactive identity may do.
    pub async fn verify_password_login(
        &self,
        identifier: &str,
        password: &str,
        only: Option<Uuid>,
        now: OffsetDateTime,
    ) -> Result<Option<Identity>> {
        let identifier = identifier.trim();
        let mut found = self
            .store
            .find_identity_by_identifier("password", identifier)
            .await?;
        if found.is_none() && identifier.chars().any(char::is_uppercase) {
            found = self
                .store
                .find_identity_by_identifier("password", &identifier.to_lowercase())
                .await?;
        }
        if let (Some(i), Some(owner)) = (&found, only) {
            if i.id != owner {
                found = None;
            }
        }
        let hash = found
            .as_ref()
            .and_then(|i| i.password_hash().map(str::to_string));
        let verified = self.hasher.verify(password.to_string(), hash).await?;
        let Some(mut identity) = found.filter(|_| verified.ok) else {
            return Ok(None);
        };
        if verified.needs_rehash {
            let new_hash = self.hasher.hash(password.to_string()).await?;
            let ids = identity
                .credentials
                .get("password")
                .map(|c| c.identifiers.clone())
                .unwrap_or_default();
            identity.set_password_hash(new_hash, ids, now);
            identity.updated_at = now;
            self.store.update_identity(&mut identity).await?;
        }
        Ok(Some(identity))
    }
}

fn csrf_violation(hint: &str) -> Error {
    Error::api(403, Some("security_csrf_violation"), "Please retry the flow and optionally clear your cookies. The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF) which could cause account takeover, leaking personal information, and other serious security issues.")
        .with_details(json!({
            "docs": "https://www.ory.sh/kratos/docs/debug/csrf",
            "hint": hint,
            "reject_reason": hint,
        }))
}

pub fn already_logged_in() -> Error {
    Error::api(400, Some("session_already_available"), "A valid session was detected and thus this flow cannot be started or completed. To sign in again, use `?refresh=true` on a login flow.")
}

fn registration_disabled() -> Error {
    Error::api(
        400,
        Some("self_service_flow_disabled"),
        "Registration is not allowed because it was disabled.",
    )
}

/// The `password` input of the password group; `autocomplete` tells password managers whether
/// to fill in (`current-password`) or to offer a new one (`new-password`).
fn password_input(autocomplete: &str) -> UiNode {
    UiNode::input(
        "password",
        "password",
        "password",
        Some(msg::label_password()),
    )
    .with_attr("required", json!(true))
    .with_attr("autocomplete", json!(autocomplete))
}

/// Puts submitted trait values back into the form so the user need not retype them.
fn fill_trait_values(flow: &mut Flow, traits: &Value) {
    let mut flat = Map::new();
    flatten("traits", traits, &mut flat);
    flow.ui.fill_values(&flat);
}

fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                flatten(&format!("{prefix}.{k}"), child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Kratos's return_to rule: same scheme, host (exact, or `*.example.com` for any subdomain) and
/// port as an allowed URL, and a path under the allowed URL's path. Our own public URL is
/// always allowed.
pub fn return_to_allowed(candidate: &str, public_url: &str, allowed: &[String]) -> bool {
    let Ok(c) = url::Url::parse(candidate) else {
        return false;
    };
    let Some(host) = c.host_str() else {
        return false;
    };
    let matches = |pattern: &str| -> bool {
        let Some((scheme, rest)) = pattern.split_once("://") else {
            return false;
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (phost, pport) = match authority.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|ch| ch.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
            _ => (authority, None),
        };
        let port_ok = pport.or_else(|| {
            url::Url::parse(&format!("{scheme}://x"))
                .ok()
                .and_then(|u| u.port_or_known_default())
        }) == c.port_or_known_default();
        let host_ok = match phost.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len()
                    && host
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
            }
            None => host.eq_ignore_ascii_case(phost),
        };
        c.scheme().eq_ignore_ascii_case(scheme) && host_ok && port_ok && c.path().starts_with(path)
    };
    matches(public_url) || allowed.iter().any(|a| matches(a))
}

#[cfg(test)]
mod tests {
    use super::return_to_allowed;

    #[test]
    fn return_to_matches_scheme_host_port_and_path_prefix() {
        let allowed = vec![
            "https://app.example.com/dashboard".to_string(),
            "https://*.example.org".to_string(),
        ];
        let public = "https://id.example.com/";
        assert!(return_to_allowed(
            "https://app.example.com/dashboard/x?y=1",
            public,
            &allowed
        ));
        assert!(return_to_allowed(
            "https://id.example.com/anything",
            public,
            &allowed
        ));
        assert!(return_to_allowed(
            "https://a.b.example.org/",
            public,
            &allowed
        ));
        assert!(!return_to_allowed("https://example.org/", public, &allowed));
        assert!(!return_to_allowed(
            "http://app.example.com/dashboard",
            public,
            &allowed
        ));
        assert!(!return_to_allowed(
            "https://app.example.com/other",
            public,
            &allowed
        ));
        assert!(!return_to_allowed(
            "https://app.example.com:8443/dashboard",
            public,
            &allowed
        ));
        assert!(!return_to_allowed(
            "https://evil.com/?https://app.example.com/dashboard",
            public,
            &allowed
        ));
        assert!(!return_to_allowed("javascript:alert(1)", public, &allowed));
    }
}
