//! `selfservice`: the self-service flows (their UI pages, lifespans and where a browser goes
//! after them); the methods are in `methods.rs`.

use super::hooks::{check_hooks, BeforeConfig, HookConfig, HookName, MethodAfterConfig};
use super::methods::MethodsConfig;
use super::session::RequiredAal;
use super::{ConfigError, Ctx, Dur};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfServiceConfig {
    pub default_browser_return_url: String,
    pub allowed_return_urls: Vec<String>,
    pub methods: MethodsConfig,
    pub flows: FlowsConfig,
}

/// How long a flow may be completed after it starts.
const FLOW_LIFESPAN: Dur = Dur::hours(1);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    pub login: FlowConfig,
    pub registration: RegistrationFlowConfig,
    pub settings: SettingsFlowConfig,
    pub recovery: AddressFlowConfig,
    pub verification: AddressFlowConfig,
    pub error: UiUrlConfig,
    pub logout: LogoutFlowConfig,
}

choice! {
    /// The method a recovery or verification flow uses.
    pub enum AddressMethod {
        #[default]
        Code = "code",
        Link = "link",
    }
    ignore_case: false,
    error: "{:?}: expected code or link"
}

/// `selfservice.flows.recovery` and `.verification`: flows that send a code to an address.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressFlowConfig {
    /// Off by default (as in Kratos); on in dev mode unless set. Read it with
    /// [`AddressFlowConfig::is_enabled`].
    pub enabled: Option<bool>,
    #[serde(rename = "use")]
    pub method: AddressMethod,
    pub ui_url: String,
    pub lifespan: Dur,
    /// Send a "someone asked for a code for this address" message to addresses without an
    /// account (otherwise nothing is sent; the answer is the same either way).
    pub notify_unknown_recipients: bool,
    pub before: BeforeConfig,
    pub after: AfterConfig,
}

impl Default for AddressFlowConfig {
    fn default() -> Self {
        AddressFlowConfig {
            enabled: None,
            method: AddressMethod::Code,
            ui_url: String::new(),
            lifespan: FLOW_LIFESPAN,
            notify_unknown_recipients: false,
            before: BeforeConfig::default(),
            after: AfterConfig::default(),
        }
    }
}

impl AddressFlowConfig {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    pub ui_url: String,
    pub lifespan: Dur,
    pub before: BeforeConfig,
    pub after: AfterConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            ui_url: String::new(),
            lifespan: FLOW_LIFESPAN,
            before: BeforeConfig::default(),
            after: AfterConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationFlowConfig {
    pub enabled: bool,
    pub ui_url: String,
    pub lifespan: Dur,
    pub before: BeforeConfig,
    pub after: AfterConfig,
}

impl Default for RegistrationFlowConfig {
    fn default() -> Self {
        let FlowConfig {
            ui_url,
            lifespan,
            before,
            after,
        } = FlowConfig::default();
        RegistrationFlowConfig {
            enabled: true,
            ui_url,
            lifespan,
            before,
            after,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsFlowConfig {
    pub ui_url: String,
    pub lifespan: Dur,
    pub privileged_session_max_age: Dur,
    /// `highest_available`: a session without the second factor its identity has is sent to
    /// sign in with it first.
    pub required_aal: RequiredAal,
    pub before: BeforeConfig,
    pub after: AfterConfig,
}

impl Default for SettingsFlowConfig {
    fn default() -> Self {
        let FlowConfig {
            ui_url,
            lifespan,
            before,
            after,
        } = FlowConfig::default();
        SettingsFlowConfig {
            ui_url,
            lifespan,
            privileged_session_max_age: Dur::hours(1),
            required_aal: RequiredAal::default(),
            before,
            after,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiUrlConfig {
    pub ui_url: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogoutFlowConfig {
    pub after: AfterConfig,
}

/// `after:` of a flow: where a browser goes when it completes, and the hooks that run, for
/// the flow as a whole (`hooks`) or for one method (`password`, `code`, …).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AfterConfig {
    pub default_browser_return_url: String,
    pub hooks: Option<Vec<HookConfig>>,
    pub password: MethodAfterConfig,
    pub code: MethodAfterConfig,
    pub profile: MethodAfterConfig,
    pub oidc: MethodAfterConfig,
    pub totp: MethodAfterConfig,
    pub lookup_secret: MethodAfterConfig,
    pub webauthn: MethodAfterConfig,
    pub passkey: MethodAfterConfig,
}

impl AfterConfig {
    /// The hooks that run after `method` completes the flow: the method's own list when it
    /// has one (even an empty one), else the flow's.
    pub fn hooks_for(&self, method: &str) -> Option<&[HookConfig]> {
        self.method(method)
            .and_then(|m| m.hooks.as_deref())
            .or(self.hooks.as_deref())
    }

    /// Whether `hook` runs after `method`, with `default` when no list is configured.
    pub fn runs(&self, method: &str, hook: HookName, default: bool) -> bool {
        match self.hooks_for(method) {
            Some(hooks) => hooks.iter().any(|h| h.hook == hook),
            None => default,
        }
    }

    /// The method's own `default_browser_return_url`, when it has one.
    pub fn method_return_url(&self, method: &str) -> Option<&str> {
        self.method(method)
            .map(|m| m.default_browser_return_url.as_str())
            .filter(|u| !u.is_empty())
    }

    fn method(&self, method: &str) -> Option<&MethodAfterConfig> {
        Some(match method {
            "password" => &self.password,
            "code" => &self.code,
            "profile" => &self.profile,
            "oidc" => &self.oidc,
            "totp" => &self.totp,
            "lookup_secret" => &self.lookup_secret,
            "webauthn" => &self.webauthn,
            "passkey" => &self.passkey,
            _ => return None,
        })
    }

    fn methods(&self) -> [(&'static str, &MethodAfterConfig); 8] {
        [
            ("password", &self.password),
            ("code", &self.code),
            ("profile", &self.profile),
            ("oidc", &self.oidc),
            ("totp", &self.totp),
            ("lookup_secret", &self.lookup_secret),
            ("webauthn", &self.webauthn),
            ("passkey", &self.passkey),
        ]
    }

    /// Checks the hooks of `selfservice.flows.<flow>.after` against those that may run there;
    /// `interrupt`: whether a web hook may still stop the flow there.
    fn validate(
        &self,
        flow: &str,
        allowed: &[HookName],
        interrupt: bool,
    ) -> Result<(), ConfigError> {
        let key = format!("selfservice.flows.{flow}.after");
        if let Some(h) = &self.hooks {
            check_hooks(&format!("{key}.hooks"), h, allowed, interrupt)?;
        }
        for (name, m) in self.methods() {
            if let Some(h) = &m.hooks {
                check_hooks(&format!("{key}.{name}.hooks"), h, allowed, interrupt)?;
            }
            if !m.default_browser_return_url.is_empty() {
                check_absolute(
                    &format!("{key}.{name}.default_browser_return_url"),
                    &m.default_browser_return_url,
                )?;
            }
        }
        if !self.default_browser_return_url.is_empty() {
            check_absolute(
                &format!("{key}.default_browser_return_url"),
                &self.default_browser_return_url,
            )?;
        }
        Ok(())
    }
}

impl SelfServiceConfig {
    /// Every `web_hook` of every flow, before and after.
    pub fn web_hooks(&self) -> Vec<super::WebHookConfig> {
        let f = &self.flows;
        let before = [
            &f.login.before,
            &f.registration.before,
            &f.settings.before,
            &f.recovery.before,
            &f.verification.before,
        ]
        .into_iter()
        .flat_map(|b| b.hooks.iter());
        let after = [
            &f.login.after,
            &f.registration.after,
            &f.settings.after,
            &f.recovery.after,
            &f.verification.after,
        ]
        .into_iter()
        .flat_map(|a| {
            let methods = a
                .methods()
                .into_iter()
                .filter_map(|(_, m)| m.hooks.as_ref());
            a.hooks.iter().chain(methods).flatten()
        });
        before
            .chain(after)
            .filter_map(HookConfig::web_hook)
            .collect()
    }

    /// An empty `ui_url` means the hosted page; with the hosted UI off there is none, so every
    /// flow needs one. An empty return URL means the hosted welcome page (or the public URL).
    pub(super) fn fill_defaults(&mut self, ctx: &Ctx) -> Result<(), ConfigError> {
        let public = &ctx.public_url;
        let f = &mut self.flows;
        for flow in [&mut f.recovery, &mut f.verification] {
            flow.enabled = Some(flow.enabled.unwrap_or(ctx.dev));
        }
        let m = &mut self.methods;
        m.totp.enabled = Some(m.totp.enabled.unwrap_or(ctx.dev));
        m.lookup_secret.enabled = Some(m.lookup_secret.enabled.unwrap_or(ctx.dev));
        if m.totp.config.issuer.is_empty() {
            m.totp.config.issuer = super::mfa::default_issuer(public);
        }
        for (key, url) in [
            ("login", &mut f.login.ui_url),
            ("registration", &mut f.registration.ui_url),
            ("settings", &mut f.settings.ui_url),
            ("recovery", &mut f.recovery.ui_url),
            ("verification", &mut f.verification.ui_url),
            ("error", &mut f.error.ui_url),
        ] {
            if url.is_empty() {
                if !ctx.ui_enabled {
                    return Err(ConfigError::Invalid(format!(
                        "selfservice.flows.{key}.ui_url: required when the hosted UI is off (ui.enabled: false)"
                    )));
                }
                *url = format!("{public}ui/{key}");
            }
        }
        if self.default_browser_return_url.is_empty() {
            self.default_browser_return_url = if ctx.ui_enabled {
                format!("{public}ui/welcome")
            } else {
                public.clone()
            };
        }
        // The pages that run WebAuthn ceremonies are the relying party's default origins.
        let f = &self.flows;
        let pages =
            [&f.login.ui_url, &f.registration.ui_url, &f.settings.ui_url].map(|u| u.as_str());
        let m = &mut self.methods;
        m.webauthn.config.rp.fill_defaults(public, &pages);
        m.passkey.config.rp.fill_defaults(public, &pages);
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.flows;
        for (key, url) in [
            ("login", &f.login.ui_url),
            ("registration", &f.registration.ui_url),
            ("settings", &f.settings.ui_url),
            ("recovery", &f.recovery.ui_url),
            ("verification", &f.verification.ui_url),
            ("error", &f.error.ui_url),
        ] {
            check_absolute(&format!("selfservice.flows.{key}.ui_url"), url)?;
        }
        check_absolute(
            "selfservice.default_browser_return_url",
            &self.default_browser_return_url,
        )?;
        use HookName::*;
        f.login.after.validate(
            "login",
            &[
                RevokeActiveSessions,
                RequireVerifiedAddress,
                Verification,
                ShowVerificationUi,
                WebHook,
            ],
            true,
        )?;
        f.registration.after.validate(
            "registration",
            &[Session, ShowVerificationUi, WebHook],
            true,
        )?;
        f.settings
            .after
            .validate("settings", &[RevokeActiveSessions, WebHook], true)?;
        // Recovery and verification hooks run once the flow's result is stored.
        f.recovery
            .after
            .validate("recovery", &[RevokeActiveSessions, WebHook], false)?;
        f.verification
            .after
            .validate("verification", &[WebHook], false)?;
        f.logout.after.validate("logout", &[], false)?;
        for (key, before) in [
            ("selfservice.flows.login", &f.login.before),
            ("selfservice.flows.registration", &f.registration.before),
            ("selfservice.flows.settings", &f.settings.before),
            ("selfservice.flows.recovery", &f.recovery.before),
            ("selfservice.flows.verification", &f.verification.before),
        ] {
            before.validate(key)?;
        }
        for (key, flow) in [("recovery", &f.recovery), ("verification", &f.verification)] {
            if flow.is_enabled() && flow.method == AddressMethod::Link {
                return Err(ConfigError::Invalid(format!(
                    "selfservice.flows.{key}.use: link is not supported by Portcullis yet for self-service {key} (use code)"
                )));
            }
            if flow.is_enabled() && !self.methods.code.enabled {
                return Err(ConfigError::Invalid(format!(
                    "selfservice.flows.{key}.enabled: needs selfservice.methods.code.enabled"
                )));
            }
        }
        self.methods.validate()
    }

    /// Whether any flow sends messages (so the courier needs a way to deliver them).
    pub fn sends_mail(&self) -> bool {
        self.flows.recovery.is_enabled()
            || self.flows.verification.is_enabled()
            || self.methods.code.mfa_enabled
            || self.methods.code.passwordless_enabled
    }
}

fn check_absolute(key: &str, url: &str) -> Result<(), ConfigError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(ConfigError::Invalid(format!(
            "{key}: {url:?} is not an absolute http(s) URL"
        ))),
    }
}
