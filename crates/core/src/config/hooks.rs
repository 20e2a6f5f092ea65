//! Flow hooks: `selfservice.flows.<flow>.after[.<method>].hooks[]`, the actions that run when
//! a flow completes, and `selfservice.flows.<flow>.before.hooks[]`, those that run when one
//! starts. Each hook is allowed only where Kratos allows it; `before` runs only `web_hook`.

use super::{ConfigError, Secret};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

choice! {
    /// The hooks Portcullis runs.
    pub enum HookName {
        /// After registration: sign the new identity in.
        #[default]
        Session = "session",
        /// After registration (and login): continue with the verification flow of the new address.
        ShowVerificationUi = "show_verification_ui",
        /// After login: send a verification code to addresses that are not verified yet.
        Verification = "verification",
        /// After login: refuse to sign in until an address is verified.
        RequireVerifiedAddress = "require_verified_address",
        /// After login, recovery or a settings change: end the identity's other sessions.
        RevokeActiveSessions = "revoke_active_sessions",
        /// Kratos's web hook: an HTTP call with a Jsonnet body ([`WebHookConfig`]).
        WebHook = "web_hook",
    }
    ignore_case: false,
    error: "unknown hook {:?}: expected session, show_verification_ui, verification, require_verified_address, revoke_active_sessions or web_hook"
}

#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub hook: HookName,
    /// The hook's settings; for `web_hook`, a [`WebHookConfig`] (checked at load, read with
    /// [`HookConfig::web_hook`]).
    #[serde(default)]
    pub config: Value,
}

impl HookConfig {
    /// The settings of a `web_hook` hook (none for the other hooks, or before the load checked
    /// them).
    pub fn web_hook(&self) -> Option<WebHookConfig> {
        (self.hook == HookName::WebHook)
            .then(|| serde_json::from_value(self.config.clone()).ok())
            .flatten()
    }
}

/// Shown as it prints: a web hook's credentials redacted.
impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = serde_json::to_value(self).unwrap_or_default();
        write!(f, "HookConfig({shown})")
    }
}

/// Printed with a web hook's credentials and header values redacted.
impl Serialize for HookConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("hook", &self.hook)?;
        match self.web_hook() {
            Some(w) => m.serialize_entry("config", &w)?,
            None if self.hook == HookName::WebHook => {
                m.serialize_entry("config", super::redact::REDACTED)?
            }
            None if !self.config.is_null() => m.serialize_entry("config", &self.config)?,
            None => {}
        }
        m.end()
    }
}

/// `web_hook`: Kratos's HTTP call from a flow. The body is Jsonnet (`function(ctx) {…}`); the
/// answer is read when `response.parse` (or the deprecated `can_interrupt`) says so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebHookConfig {
    /// Names the hook in logs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Printed with its userinfo and query values blanked.
    #[serde(serialize_with = "super::redact::serialize_url")]
    pub url: String,
    pub method: String,
    /// Sent as they are; redacted in print (they often carry a token).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// The Jsonnet of the body: `file://`, `base64://`, or a bare path (deprecated in Kratos).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<WebHookAuth>,
    #[serde(default)]
    pub response: WebHookResponse,
    /// Deprecated in Kratos for `response.parse`, and the same here.
    #[serde(default)]
    pub can_interrupt: bool,
    /// Kratos's tracing events; Portcullis logs each call (at debug) either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_analytics_event: Option<bool>,
}

impl WebHookConfig {
    /// Whether the answer is read: it may stop the flow (and, before an identity is stored,
    /// change it).
    pub fn parses(&self) -> bool {
        self.response.parse || self.can_interrupt
    }

    /// A name for logs and errors: the `id`, else the URL with its credentials blanked.
    pub fn name(&self) -> String {
        if self.id.is_empty() {
            super::redact::redact_url(&self.url)
        } else {
            self.id.clone()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebHookResponse {
    /// Fire and forget: sent in the background, the flow does not wait.
    pub ignore: bool,
    /// Read the answer before the flow's result is stored (see [`WebHookConfig::parses`]).
    pub parse: bool,
}

/// How a web hook authenticates to its receiver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum WebHookAuth {
    ApiKey {
        name: String,
        value: Secret,
        #[serde(rename = "in")]
        place: ApiKeyPlace,
    },
    BasicAuth {
        user: String,
        password: Secret,
    },
}

choice! {
    /// Where an API key goes.
    pub enum ApiKeyPlace {
        #[default]
        Header = "header",
        Cookie = "cookie",
    }
    ignore_case: false,
    error: "unknown api_key place {:?}: expected header or cookie"
}

/// `after.<method>` of a flow: a per-method return URL and hooks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodAfterConfig {
    pub default_browser_return_url: String,
    /// `None` when not configured (the flow-level hooks apply).
    pub hooks: Option<Vec<HookConfig>>,
}

/// `before:` of a flow: only `web_hook` runs there, as in Kratos.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeforeConfig {
    pub hooks: Vec<HookConfig>,
}

impl BeforeConfig {
    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        check_hooks(
            &format!("{key}.before.hooks"),
            &self.hooks,
            &[HookName::WebHook],
            true,
        )
    }
}

/// Checks that every hook in `hooks` may run at `key` (one of `allowed`), and that each web
/// hook is complete; `interrupt`: whether a web hook here may stop the flow.
pub(super) fn check_hooks(
    key: &str,
    hooks: &[HookConfig],
    allowed: &[HookName],
    interrupt: bool,
) -> Result<(), ConfigError> {
    for (i, h) in hooks.iter().enumerate() {
        if !allowed.contains(&h.hook) {
            let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
            return Err(ConfigError::Invalid(format!(
                "{key}: the {} hook cannot run here (allowed: {})",
                h.hook,
                names.join(", ")
            )));
        }
        if h.hook == HookName::WebHook {
            check_web_hook(&format!("{key}[{i}].config"), h, interrupt)?;
        }
    }
    Ok(())
}

fn check_web_hook(key: &str, h: &HookConfig, interrupt: bool) -> Result<(), ConfigError> {
    let w: WebHookConfig = serde_json::from_value(h.config.clone())
        .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
    let bad = |what: String| Err(ConfigError::Invalid(format!("{key}.{what}")));
    match url::Url::parse(&w.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return bad(format!("url: {:?} is not an http(s) URL", w.url)),
    }
    if crate::upstream::HttpMethod::parse(&w.method).is_none() {
        return bad(format!(
            "method: {:?} is not one of GET, POST, PUT, PATCH, DELETE",
            w.method
        ));
    }
    if w.body.starts_with("http://") || w.body.starts_with("https://") {
        return bad(format!(
            "body: {:?}: only file:// and base64:// bodies are supported (fetch it into a file)",
            w.body
        ));
    }
    if w.response.ignore && w.parses() {
        return bad(
            "response: an ignored answer cannot be parsed (ignore with parse or can_interrupt)"
                .into(),
        );
    }
    if w.parses() && !interrupt {
        return bad(
            "response.parse: a web hook here runs once the flow's result is stored, so it cannot stop it"
                .into(),
        );
    }
    Ok(())
}
