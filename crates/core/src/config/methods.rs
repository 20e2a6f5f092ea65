//! `selfservice.methods`: the methods a flow can use, their switches and settings, and the
//! password policy. The second factors and OIDC have files of their own (`mfa.rs`, `oidc.rs`).

use super::mfa::{
    LookupSecretMethodConfig, PasskeyMethodConfig, TotpMethodConfig, WebauthnMethodConfig,
};
use super::oidc::OidcMethodConfig;
use super::{ConfigError, Dur};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodsConfig {
    pub password: PasswordMethodConfig,
    pub profile: EnabledConfig,
    pub code: CodeMethodConfig,
    pub link: LinkMethodConfig,
    pub totp: TotpMethodConfig,
    pub lookup_secret: LookupSecretMethodConfig,
    pub webauthn: WebauthnMethodConfig,
    pub passkey: PasskeyMethodConfig,
    /// Social sign-in; see [`OidcMethodConfig`].
    pub oidc: OidcMethodConfig,
}

impl MethodsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (name, on) in [
            ("password", self.password.enabled),
            ("profile", self.profile.enabled),
        ] {
            if !on {
                return Err(ConfigError::Invalid(format!(
                    "selfservice.methods.{name}.enabled: false is not supported by Portcullis yet (the {name} method is always on)"
                )));
            }
        }
        self.code.validate()?;
        self.oidc.validate()?;
        if self.webauthn.enabled {
            self.webauthn
                .config
                .rp
                .origin_urls("selfservice.methods.webauthn.config.rp")
                .map_err(ConfigError::Invalid)?;
        }
        if self.passkey.enabled {
            self.passkey
                .config
                .rp
                .origin_urls("selfservice.methods.passkey.config.rp")
                .map_err(ConfigError::Invalid)?;
        }
        self.password.config.validate()
    }
}

/// `selfservice.methods.code`: one-time codes sent to an address (recovery, verification).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeMethodConfig {
    pub enabled: bool,
    /// Sign-in by a code mailed to the identifier, instead of the password.
    pub passwordless_enabled: bool,
    /// A code mailed to an address of the identity as a second factor: every identity with
    /// an e-mail address then has aal2 available (as in Kratos).
    pub mfa_enabled: bool,
    pub config: CodeConfig,
}

impl Default for CodeMethodConfig {
    fn default() -> Self {
        CodeMethodConfig {
            enabled: true,
            passwordless_enabled: false,
            mfa_enabled: false,
            config: CodeConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeConfig {
    /// How long a sent code stays valid. At most 15 minutes: a recovery code is as good as
    /// the password (Kratos defaults to an hour).
    pub lifespan: Dur,
    /// Wrong codes a flow accepts before it must be started over.
    pub max_submissions: u32,
}

/// The longest a code may live.
pub const MAX_CODE_LIFESPAN: Dur = Dur::secs(15 * 60);

impl Default for CodeConfig {
    fn default() -> Self {
        CodeConfig {
            lifespan: Dur::secs(10 * 60),
            max_submissions: 5,
        }
    }
}

/// `selfservice.methods.link`: recovery links (used by `POST /admin/recovery/link`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkMethodConfig {
    pub enabled: bool,
    pub config: LinkConfig,
}

impl Default for LinkMethodConfig {
    fn default() -> Self {
        LinkMethodConfig {
            enabled: true,
            config: LinkConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// How long a link stays valid when the request does not say.
    pub lifespan: Dur,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            lifespan: Dur::hours(1),
        }
    }
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

impl CodeMethodConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "selfservice.methods.code";
        if self.mfa_enabled && !self.enabled {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.mfa_enabled: needs {KEY}.enabled (the second factor is a code)"
            )));
        }
        if self.passwordless_enabled && self.mfa_enabled {
            return Err(ConfigError::Invalid(format!(
                "{KEY}: passwordless_enabled and mfa_enabled exclude each other (as in Kratos)"
            )));
        }
        if self.passwordless_enabled && !self.enabled {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.passwordless_enabled: needs {KEY}.enabled"
            )));
        }
        if self.config.lifespan.0 > MAX_CODE_LIFESPAN.0 || self.config.lifespan.0.is_zero() {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.config.lifespan: must be between 1s and 15m (a recovery code is as good as the password)"
            )));
        }
        if !(1..=10).contains(&self.config.max_submissions) {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.config.max_submissions: must be between 1 and 10"
            )));
        }
        Ok(())
    }
}
