//! `selfservice`: the self-service flows (their UI pages, lifespans and where a browser goes
//! after them), the methods, and the password policy.

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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodsConfig {
    pub password: PasswordMethodConfig,
    pub profile: EnabledConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnabledConfig {
    pub enabled: bool,
}

impl Default for EnabledConfig {
    fn default() -> Self {
        EnabledConfig { enabled: true }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordMethodConfig {
    pub enabled: bool,
    pub config: PasswordPolicyConfig,
}

impl Default for PasswordMethodConfig {
    fn default() -> Self {
        PasswordMethodConfig {
            enabled: true,
            config: PasswordPolicyConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicyConfig {
    pub min_password_length: usize,
    pub max_password_length: usize,
    pub identifier_similarity_check_enabled: bool,
    /// Rejects passwords found in the bundled list of common (breached) passwords.
    pub common_password_check_enabled: bool,
}

impl Default for PasswordPolicyConfig {
    fn default() -> Self {
        PasswordPolicyConfig {
            min_password_length: 8,
            max_password_length: 1024,
            identifier_similarity_check_enabled: true,
            common_password_check_enabled: true,
        }
    }
}

impl PasswordPolicyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "selfservice.methods.password.config";
        if self.min_password_length < 6 {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.min_password_length: must be at least 6"
            )));
        }
        if self.min_password_length > self.max_password_length {
            return Err(ConfigError::Invalid(format!(
                "{KEY}: min_password_length is larger than max_password_length"
            )));
        }
        if self.max_password_length < 64 {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.max_password_length: must be at least 64"
            )));
        }
        Ok(())
    }
}

/// How long a flow may be completed after it starts.
const FLOW_LIFESPAN: Dur = Dur::hours(1);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    pub login: FlowConfig,
    pub registration: RegistrationFlowConfig,
    pub settings: SettingsFlowConfig,
    pub error: UiUrlConfig,
    pub logout: LogoutFlowConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    pub ui_url: String,
    pub lifespan: Dur,
    pub after: AfterConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            ui_url: String::new(),
            lifespan: FLOW_LIFESPAN,
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
    pub after: AfterConfig,
}

impl Default for RegistrationFlowConfig {
    fn default() -> Self {
        let FlowConfig {
            ui_url,
            lifespan,
            after,
        } = FlowConfig::default();
        RegistrationFlowConfig {
            enabled: true,
            ui_url,
            lifespan,
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
    pub after: AfterConfig,
}

impl Default for SettingsFlowConfig {
    fn default() -> Self {
        let FlowConfig {
            ui_url,
            lifespan,
            after,
        } = FlowConfig::default();
        SettingsFlowConfig {
            ui_url,
            lifespan,
            privileged_session_max_age: Dur::hours(1),
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

/// `after:` of a flow: where a browser goes when it completes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AfterConfig {
    pub default_browser_return_url: String,
}

impl SelfServiceConfig {
    /// An empty `ui_url` means the hosted page; with the hosted UI off there is none, so every
    /// flow needs one. An empty return URL means the hosted welcome page (or the public URL).
    pub(super) fn fill_defaults(&mut self, ctx: &Ctx) -> Result<(), ConfigError> {
        let public = &ctx.public_url;
        let f = &mut self.flows;
        for (key, url) in [
            ("login", &mut f.login.ui_url),
            ("registration", &mut f.registration.ui_url),
            ("settings", &mut f.settings.ui_url),
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
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.flows;
        for (key, url) in [
            ("login", &f.login.ui_url),
            ("registration", &f.registration.ui_url),
            ("settings", &f.settings.ui_url),
            ("error", &f.error.ui_url),
        ] {
            check_absolute(&format!("selfservice.flows.{key}.ui_url"), url)?;
        }
        check_absolute(
            "selfservice.default_browser_return_url",
            &self.default_browser_return_url,
        )?;
        for (key, after) in [
            ("login", &f.login.after),
            ("registration", &f.registration.after),
            ("settings", &f.settings.after),
            ("logout", &f.logout.after),
        ] {
            if !after.default_browser_return_url.is_empty() {
                check_absolute(
                    &format!("selfservice.flows.{key}.after.default_browser_return_url"),
                    &after.default_browser_return_url,
                )?;
            }
        }
        self.methods.password.config.validate()
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
