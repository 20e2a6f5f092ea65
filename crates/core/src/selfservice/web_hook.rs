//! Kratos's `web_hook` hook: an HTTP call from a flow, with a body written in Jsonnet
//! (`function(ctx) {…}`), sent through the [`Upstream`](crate::upstream::Upstream) port.
//!
//! Where each hook runs ([`Stage`]), as in Kratos:
//! - **before** a flow (`before.hooks`): when it is created; a refusal or a failure stops the
//!   creation.
//! - **login** (`after[.method].hooks`): once the credentials are proven, before the session is
//!   stored; a refusal ends on the flow with the receiver's messages.
//! - **registration and settings**: hooks that parse the answer (`response.parse`, or the
//!   deprecated `can_interrupt`) run before the identity is stored and may refuse, or change
//!   its traits and metadata; the others run once it is stored.
//! - **recovery and verification**: once the flow's result is stored (the configuration
//!   refuses `parse` there).
//!
//! A hook with `response.ignore`, and every hook that runs once the result is stored, is sent
//! in the background and never waited for (at most [`MAX_BACKGROUND`] at once): it cannot
//! undo the result, so its failure is logged and the answer stays a success (Kratos answers
//! an error for a change it has made all the same), and a slow receiver does not show in the
//! answer's timing. Only a 2xx answer is a success; redirects are not followed.
//!
//! The context a body sees is Kratos's: `flow`, `identity` (without credentials),
//! `request_headers` (an allow-list), `request_method`, `request_url`, `request_cookies` (here
//! without the session's, the anti-CSRF and the token cookies, which are credentials),
//! `transient_payload`; the flow's anti-CSRF token is blank. A body that fails with
//! `error 'cancel'` skips its call.

use crate::config::{ApiKeyPlace, Config, HookConfig, WebHookAuth, WebHookConfig};
use crate::error::{Error, SubmitError};
use crate::flow::Flow;
use crate::identity::{Identity, View};
use crate::jsonnet::{JsonnetError, Vars};
use crate::service::{Caller, Core};
use crate::ui::UiText;
use crate::upstream::{HttpBody, HttpMethod, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// The request headers a body sees (`ctx.request_headers`): Kratos's default allow-list.
pub const HEADER_ALLOWLIST: [&str; 17] = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Content-Length",
    "Content-Type",
    "Origin",
    "Priority",
    "Referer",
    "Sec-Ch-Ua",
    "Sec-Ch-Ua-Mobile",
    "Sec-Ch-Ua-Platform",
    "Sec-Fetch-Dest",
    "Sec-Fetch-Mode",
    "Sec-Fetch-Site",
    "Sec-Fetch-User",
    "True-Client-Ip",
    "User-Agent",
];

/// A refusal shows at most this many messages, each cut at [`MAX_TEXT`] characters: the
/// receiver is the operator's, but what it echoes may be a stranger's input.
const MAX_MESSAGES: usize = 20;
const MAX_TEXT: usize = 500;

/// Calls sent in the background (`response.ignore`, and every hook once a result is
/// stored) at once per server; more are dropped and logged, so a flood of flows cannot pile
/// up tasks and connections without bound.
const MAX_BACKGROUND: usize = 64;

/// The web hooks' bodies, read when the server starts so a missing file stops the start.
pub struct WebHooks {
    bodies: HashMap<String, Arc<str>>,
    configured: bool,
    background: Arc<tokio::sync::Semaphore>,
}

impl Default for WebHooks {
    fn default() -> Self {
        WebHooks {
            bodies: HashMap::new(),
            configured: false,
            background: Arc::new(tokio::sync::Semaphore::new(MAX_BACKGROUND)),
        }
    }
}

impl WebHooks {
    pub fn load(config: &Config) -> Result<WebHooks, String> {
        let mut w = WebHooks::default();
        for h in config.selfservice.web_hooks() {
            w.configured = true;
            if h.body.is_empty() || w.bodies.contains_key(&h.body) {
                continue;
            }
            let source = crate::jsonnet::read_source(&h.body, true)
                .map_err(|e| format!("web hook {}: body: {e}", h.name()))?;
            w.bodies.insert(h.body.clone(), source.into());
        }
        Ok(w)
    }

    /// Whether any flow has a web hook (the faces then fill [`Caller::request`]).
    pub fn configured(&self) -> bool {
        self.configured
    }
}

/// Which hooks of a list run, and what their failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing is stored yet (a flow starts, a login's session): every hook runs, and a refusal
    /// or a failure stops the flow.
    Blocking,
    /// Before an identity is stored: the hooks that parse the answer, which may refuse or
    /// change the identity.
    PrePersist,
    /// Once the result is stored: the hooks that do not parse; a failure is logged.
    PostPersist,
}

/// Why a flow stops at a hook.
pub(crate) enum Stop {
    /// The receiver refused, with messages: for the node they point at (`None`: the flow).
    Refused(Vec<(Option<String>, UiText)>),
    /// The hook could not complete (cause logged).
    Failed,
}

impl Stop {
    /// For a flow being created, which has no form to show the messages on yet.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Stop::Refused(messages) => Error::HookRefused {
                reason: messages
                    .iter()
                    .map(|(_, t)| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            Stop::Failed => Error::HookFailed,
        }
    }
}

/// What the web hooks of a flow are given.
pub(crate) struct HookCtx<'a> {
    pub flow: &'a Flow,
    pub identity: Option<&'a Identity>,
    pub caller: &'a Caller,
}

/// One hook's call, ready but for its body: what a background task needs, owned.
struct Prepared {
    name: String,
    req: HttpRequest,
    /// The body's Jsonnet, its file name and its `ctx`.
    body: Option<(Arc<str>, String, Value)>,
}

impl Prepared {
    /// The request with its body, or `None` when the body cancels it (`error 'cancel'`).
    async fn finish(
        self,
        jsonnet: &dyn crate::jsonnet::Evaluator,
    ) -> Result<Option<HttpRequest>, String> {
        let Prepared { mut req, body, .. } = self;
        if let Some((source, file, ctx)) = body {
            match jsonnet.evaluate(source, &file, Vars::tla("ctx", ctx)).await {
                Ok(body) => req.body = HttpBody::Json(body.to_string()),
                Err(JsonnetError::Eval(m)) if m.trim() == "cancel" => return Ok(None),
                Err(e) => return Err(format!("its body failed: {e}")),
            }
        }
        Ok(Some(req))
    }
}

impl Core {
    /// Runs the web hooks of `hooks` that belong to `stage`, in order. With
    /// [`Stage::PrePersist`], `identity` takes the changes a receiver answers with.
    pub(crate) async fn run_web_hooks(
        &self,
        hooks: &[HookConfig],
        stage: Stage,
        flow: &Flow,
        mut identity: Option<&mut Identity>,
        caller: &Caller,
    ) -> Result<(), Stop> {
        for hook in hooks.iter().filter_map(HookConfig::web_hook) {
            let runs = match stage {
                Stage::Blocking => true,
                Stage::PrePersist => hook.parses(),
                Stage::PostPersist => !hook.parses(),
            };
            if !runs {
                continue;
            }
            let ctx = HookCtx {
                flow,
                identity: identity.as_deref(),
                caller,
            };
            let prepared = self.prepare_web_hook(&hook, &ctx);
            // Fire and forget, and every call once the result is stored: the flow never
            // waits (so neither a slow receiver nor its absence on a refused duplicate
            // sign-up shows in the answer's timing), and a failure is only logged.
            if hook.response.ignore || stage == Stage::PostPersist {
                self.send_in_background(prepared);
                continue;
            }
            let name = prepared.name.clone();
            let req = match prepared.finish(self.jsonnet.as_ref()).await {
                Ok(Some(req)) => req,
                Ok(None) => continue,
                Err(cause) => {
                    tracing::warn!(hook = %name, %cause, "a web hook failed");
                    return Err(Stop::Failed);
                }
            };
            let answer = match self.upstream.send(req).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(hook = %name, cause = %e, "a web hook could not be reached");
                    return Err(Stop::Failed);
                }
            };
            tracing::debug!(hook = %name, status = answer.status, "web hook called");
            match (answer.status, hook.parses()) {
                (s, _) if (200..300).contains(&s) => {
                    if let (Stage::PrePersist, Some(i)) = (stage, identity.as_deref_mut()) {
                        apply_answer(i, &answer);
                    }
                }
                // Redirects are not followed: a 3xx (a login page in front of the receiver)
                // is a failure, never a pass.
                (s, true) if s >= 400 => match refusal(&answer) {
                    Some(messages) => return Err(Stop::Refused(messages)),
                    None => {
                        tracing::warn!(hook = %name, status = s, "a web hook refused without messages");
                        return Err(Stop::Failed);
                    }
                },
                (status, _) => {
                    tracing::warn!(hook = %name, status, "a web hook answered with an error");
                    return Err(Stop::Failed);
                }
            }
        }
        Ok(())
    }

    /// Sends `prepared` on a task of its own, within [`MAX_BACKGROUND`].
    fn send_in_background(&self, prepared: Prepared) {
        let Ok(permit) = self.web_hooks.background.clone().try_acquire_owned() else {
            tracing::warn!(hook = %prepared.name, "a web hook was dropped: too many are being sent");
            return;
        };
        let (jsonnet, upstream) = (self.jsonnet.clone(), self.upstream.clone());
        tokio::spawn(async move {
            let name = prepared.name.clone();
            let outcome = match prepared.finish(jsonnet.as_ref()).await {
                Ok(Some(req)) => upstream.send(req).await.map_err(|e| e.to_string()),
                Ok(None) => return,
                Err(cause) => Err(cause),
            };
            match outcome {
                Ok(r) if (200..300).contains(&r.status) => {
                    tracing::debug!(hook = %name, status = r.status, "web hook called")
                }
                Ok(r) => tracing::warn!(hook = %name, status = r.status, "a web hook refused"),
                Err(cause) => tracing::warn!(hook = %name, %cause, "a web hook failed"),
            }
            drop(permit);
        });
    }

    /// The request of one hook, its body still to evaluate.
    fn prepare_web_hook(&self, hook: &WebHookConfig, ctx: &HookCtx<'_>) -> Prepared {
        // The configuration's checks ran: the method is one of these.
        let method = HttpMethod::parse(&hook.method).unwrap_or(HttpMethod::Post);
        let mut req = HttpRequest {
            method,
            configured_target: true,
            ..HttpRequest::get(&hook.url)
        };
        for (name, value) in &hook.headers {
            req = req.header(name.clone(), value.expose());
        }
        match &hook.auth {
            Some(WebHookAuth::ApiKey { name, value, place }) => {
                req = match place {
                    ApiKeyPlace::Header => req.header(name.clone(), value.expose()),
                    ApiKeyPlace::Cookie => {
                        req.header("cookie", format!("{name}={}", value.expose()))
                    }
                };
            }
            Some(WebHookAuth::BasicAuth { user, password }) => {
                req.basic_auth = Some((user.clone(), password.expose().to_string()));
            }
            None => {}
        }
        let body = match (method.has_body(), self.web_hooks.bodies.get(&hook.body)) {
            (true, Some(source)) => Some((
                source.clone(),
                hook.body.clone(),
                self.web_hook_context(ctx),
            )),
            _ => None,
        };
        Prepared {
            name: hook.name(),
            req,
            body,
        }
    }

    /// `ctx`, as Kratos gives it to a body.
    fn web_hook_context(&self, ctx: &HookCtx<'_>) -> Value {
        let r = &ctx.caller.request;
        let mut headers = Map::new();
        for (name, value) in &r.headers {
            let values = headers.entry(name.clone()).or_insert_with(|| json!([]));
            if let Some(list) = values.as_array_mut() {
                list.push(json!(value));
            }
        }
        let cookies: Map<String, Value> = r
            .cookies
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut out = Map::from_iter([
            ("flow".to_string(), flow_without_csrf(ctx.flow)),
            ("request_headers".to_string(), Value::Object(headers)),
            ("request_method".to_string(), json!(r.method)),
            ("request_url".to_string(), json!(r.url)),
            ("request_cookies".to_string(), Value::Object(cookies)),
            // Portcullis takes no transient payloads yet: always empty, as Kratos sends it when
            // none was submitted.
            ("transient_payload".to_string(), json!({})),
        ]);
        if let Some(i) = ctx.identity {
            let view = View::AdminList {
                include_credentials: &[],
            };
            out.insert("identity".into(), i.to_api_json(self.public_url(), view));
        }
        // The caller's session (settings; a refreshing login), as whoami shows it.
        if let Some((s, _)) = &ctx.caller.session {
            let session = s.to_api_json(None, self.public_url(), View::Public, self.now());
            out.insert("session".into(), session);
        }
        Value::Object(out)
    }

    /// The login flow a password sign-in without one (the token face's `POST /api/token/`)
    /// gives its web hooks, so a hook that gates sign-ins (a deny-list, a policy) gates this
    /// way in too: an API login flow made for them and never stored. `None` when no login
    /// hook is a web hook.
    pub(crate) fn flowless_login(&self, caller: &Caller, now: OffsetDateTime) -> Option<Flow> {
        let method = crate::methods::Method::Password.as_str();
        let after = self.config.after(crate::flow::FlowKind::Login);
        let before = self.config.before_hooks(crate::flow::FlowKind::Login);
        let hooked = |hooks: &[HookConfig]| {
            hooks
                .iter()
                .any(|h| h.hook == crate::config::HookName::WebHook)
        };
        if !hooked(before) && !hooked(after.hooks_for(method).unwrap_or_default()) {
            return None;
        }
        let mut flow = Flow::new(
            crate::flow::FlowKind::Login,
            crate::flow::FlowType::Api,
            caller.request.url.clone(),
            self.public_url(),
            self.config.selfservice.flows.login.lifespan.0,
            now,
        );
        flow.active = Some(method.into());
        Some(flow)
    }

    /// The web hooks of a [`Core::flowless_login`] flow: its `before` hooks without an
    /// identity (before the password is checked), its `after.password` hooks with one. A
    /// refusal's messages become the error's reason, as for a flow being created.
    pub(crate) async fn flowless_login_hooks(
        &self,
        flow: &Flow,
        identity: Option<&Identity>,
        caller: &Caller,
    ) -> crate::error::Result<()> {
        let Some(identity) = identity else {
            return self.before_flow(flow, caller).await;
        };
        self.after_login_hooks(flow, identity, crate::methods::Method::Password, caller)
            .await
    }

    /// The `after.<method>` web hooks of a login `flow` that signs `identity` in outside
    /// [`Core::complete_login`] (Clerk's sign-ins); a refusal is an error.
    pub(crate) async fn after_login_hooks(
        &self,
        flow: &Flow,
        identity: &Identity,
        method: crate::methods::Method,
        caller: &Caller,
    ) -> crate::error::Result<()> {
        let method = method.as_str();
        let hooks = self
            .config
            .after(crate::flow::FlowKind::Login)
            .hooks_for(method);
        let mut identity = identity.clone();
        self.run_web_hooks(
            hooks.unwrap_or_default(),
            Stage::Blocking,
            flow,
            Some(&mut identity),
            caller,
        )
        .await
        .map_err(Stop::into_error)
    }

    /// Runs the `before` hooks of a flow being created.
    pub(crate) async fn before_flow(
        &self,
        flow: &Flow,
        caller: &Caller,
    ) -> crate::error::Result<()> {
        let hooks = self.config.before_hooks(flow.kind);
        self.run_web_hooks(hooks, Stage::Blocking, flow, None, caller)
            .await
            .map_err(Stop::into_error)
    }

    /// The flow with a hook's refusal on it, or the hook's failure.
    pub(crate) async fn stopped(
        &self,
        flow: &mut Flow,
        stop: Stop,
        identity: Option<&Identity>,
        now: OffsetDateTime,
    ) -> SubmitError {
        match stop {
            Stop::Refused(messages) => {
                for (node, text) in messages {
                    flow.ui.add_message(node.as_deref(), text);
                }
                self.reject(flow, identity, now).await
            }
            Stop::Failed => Error::HookFailed.into(),
        }
    }
}

/// The flow as the API shows it, but its anti-CSRF token blank: unmasked, it is the
/// browser's anti-CSRF cookie, which a receiver has no use for.
fn flow_without_csrf(flow: &Flow) -> Value {
    let mut v = flow.to_api_json(None);
    let nodes = v
        .get_mut("ui")
        .and_then(|ui| ui.get_mut("nodes"))
        .and_then(Value::as_array_mut);
    for node in nodes.into_iter().flatten() {
        let Some(a) = node.get_mut("attributes").and_then(Value::as_object_mut) else {
            continue;
        };
        if a.get("name").and_then(Value::as_str) == Some("csrf_token") {
            a.insert("value".into(), json!(""));
        }
    }
    v
}

/// A 2xx answer's `{"identity": {…}}`: the traits and metadata it names replace the
/// identity's (the caller validates the traits again). Not `state`: a hook that must keep
/// someone out refuses instead.
fn apply_answer(identity: &mut Identity, answer: &HttpResponse) {
    let Some(Value::Object(i)) = answer.json().and_then(|v| v.get("identity").cloned()) else {
        return;
    };
    if let Some(traits @ Value::Object(_)) = i.get("traits") {
        identity.traits = traits.clone();
    }
    if let Some(m) = i.get("metadata_public") {
        identity.metadata_public = Some(m.clone()).filter(|m| !m.is_null());
    }
    if let Some(m) = i.get("metadata_admin") {
        identity.metadata_admin = Some(m.clone()).filter(|m| !m.is_null());
    }
}

/// A refusal's messages: `{"messages": [{"instance_ptr": "#/traits/email", "messages": [{id,
/// text, type, context}]}]}`; `instance_ptr` `#/` (or none) is the flow itself.
fn refusal(answer: &HttpResponse) -> Option<Vec<(Option<String>, UiText)>> {
    let body = answer.json()?;
    let mut out = vec![];
    for group in body.get("messages")?.as_array()? {
        let node = group
            .get("instance_ptr")
            .and_then(Value::as_str)
            .map(|p| {
                p.trim_start_matches('#')
                    .trim_matches('/')
                    .replace('/', ".")
            })
            .filter(|p| !p.is_empty());
        for m in group
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(text) = m.get("text").and_then(Value::as_str) else {
                continue;
            };
            let text: String = text.chars().take(MAX_TEXT).collect();
            let id = m
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(4000000);
            let context = m.get("context").filter(|c| c.is_object()).cloned();
            let mut t = UiText::error(id, text, context);
            if let Some(kind @ ("info" | "success")) = m.get("type").and_then(Value::as_str) {
                t.kind = kind.to_string();
            }
            out.push((node.clone(), t));
        }
    }
    out.truncate(MAX_MESSAGES);
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn a_refusal_puts_each_message_on_its_node_or_the_flow() {
        let got = refusal(&answer(
            400,
            json!({"messages": [
                {"instance_ptr": "#/traits/email", "messages": [{"id": 4000001, "text": "Not invited.", "type": "error", "context": {"why": "list"}}]},
                {"instance_ptr": "#/", "messages": [{"text": "Try later.", "type": "info"}]},
            ]}),
        ))
        .unwrap();
        assert_eq!(got[0].0.as_deref(), Some("traits.email"));
        assert_eq!(
            (got[0].1.id, got[0].1.text.as_str()),
            (4000001, "Not invited.")
        );
        assert_eq!(got[0].1.context, Some(json!({"why": "list"})));
        assert_eq!(got[1].0, None);
        assert_eq!((got[1].1.id, got[1].1.kind.as_str()), (4000000, "info"));
    }

    #[test]
    fn a_refusal_without_messages_is_none_and_many_are_capped() {
        assert!(refusal(&answer(400, json!({"error": "no"}))).is_none());
        assert!(refusal(&HttpResponse {
            status: 400,
            body: b"oops".to_vec()
        })
        .is_none());
        let many: Vec<Value> = (0..50)
            .map(|i| json!({"text": format!("m{i}{}", "x".repeat(900))}))
            .collect();
        let got = refusal(&answer(
            400,
            json!({"messages": [{"instance_ptr": "#/", "messages": many}]}),
        ))
        .unwrap();
        assert_eq!(got.len(), MAX_MESSAGES);
        assert_eq!(got[0].1.text.chars().count(), MAX_TEXT);
    }

    #[test]
    fn an_answer_changes_traits_and_metadata_only() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut i = Identity::new("default", json!({"email": "a@example.com"}), now);
        let id = i.id;
        apply_answer(
            &mut i,
            &answer(
                200,
                json!({"identity": {
                    "id": "00000000-0000-0000-0000-000000000000",
                    "traits": {"email": "b@example.com"},
                    "metadata_public": {"plan": "free"},
                    "metadata_admin": {"crm": 7},
                    "state": "inactive",
                }}),
            ),
        );
        assert_eq!(i.id, id);
        assert_eq!(i.traits, json!({"email": "b@example.com"}));
        assert_eq!(i.metadata_public, Some(json!({"plan": "free"})));
        assert_eq!(i.metadata_admin, Some(json!({"crm": 7})));
        assert_eq!(i.state, "active");
        apply_answer(&mut i, &answer(200, json!({"identity": {"traits": "x"}})));
        assert_eq!(i.traits, json!({"email": "b@example.com"}));
    }
}
