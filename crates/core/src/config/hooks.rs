//! Flow hooks: `selfservice.flows.<flow>.after[.<method>].hooks[]`, the actions that run when
//! a flow completes. Each hook is allowed only where Kratos allows it; `web_hook` and the
//! `before` hooks are refused by name until they are implemented.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
        /// Kratos's web hook: refused at load until the Jsonnet engine arrives.
        WebHook = "web_hook",
    }
    ignore_case: false,
    error: "unknown hook {:?}: expected session, show_verification_ui, verification, require_verified_address, revoke_active_sessions or web_hook"
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub hook: HookName,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
}

/// `after.<method>` of a flow: a per-method return URL and hooks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodAfterConfig {
    pub default_browser_return_url: String,
    /// `None` when not configured (the flow-level hooks apply).
    pub hooks: Option<Vec<HookConfig>>,
}

/// `before:` of a flow. Kratos allows only `web_hook` there, which is not supported yet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeforeConfig {
    pub hooks: Vec<HookConfig>,
}

impl BeforeConfig {
    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match self.hooks.first() {
            None => Ok(()),
            Some(h) => Err(not_supported(&format!("{key}.before.hooks"), h.hook)),
        }
    }
}

/// Checks that every hook in `hooks` may run at `key` (one of `allowed`).
pub(super) fn check_hooks(
    key: &str,
    hooks: &[HookConfig],
    allowed: &[HookName],
) -> Result<(), ConfigError> {
    for h in hooks {
        if h.hook == HookName::WebHook {
            return Err(not_supported(key, h.hook));
        }
        if !allowed.contains(&h.hook) {
            let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
            return Err(ConfigError::Invalid(format!(
                "{key}: the {} hook cannot run here (allowed: {})",
                h.hook,
                names.join(", ")
            )));
        }
    }
    Ok(())
}

fn not_supported(key: &str, hook: HookName) -> ConfigError {
    ConfigError::Invalid(format!(
        "{key}: the {hook} hook is not supported by Portcullis yet"
    ))
}
