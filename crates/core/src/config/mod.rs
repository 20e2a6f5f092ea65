//! Configuration: a YAML file using Kratos's `kratos.yml` key names, overridden by
//! `PORTCULLIS_<UPPER_SNAKE_PATH>` environment variables (arrays and objects as JSON).
//!
//! Loading is strict: an unknown key (in the file or the environment) is an error that names
//! its path, and a bad value names the key and the form it expects. The set of known paths is
//! derived from the serialised defaults ([`env`]), so a new field is overridable from the
//! environment without extra code.
//!
//! One file per section. Each section states its defaults once (its `Default`), fills what it
//! derives from the rest (`fill_defaults`) and checks itself (`validate`); [`Config::finish`]
//! only calls them in order. Settings that are choices are enums ([`choice!`]) that serde
//! refuses with the allowed values; secrets are a [`Secret`], which prints as `<redacted>`.

use crate::flow::FlowKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A setting that is one of a few words: an enum read and written as that word, whose parse
/// error names the value and the allowed ones (serde adds the key path in front).
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
        ignore_case: $ignore_case:literal,
        error: $error:literal
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word as the configuration (and the wire) spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| {
                        if $ignore_case {
                            v.as_str().eq_ignore_ascii_case(s)
                        } else {
                            v.as_str() == s
                        }
                    })
                    .ok_or_else(|| format!($error, s))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod clerk;
mod courier;
mod env;
mod hashers;
mod hooks;
mod identity;
mod kratos;
mod log;
mod methods;
mod mfa;
mod oidc;
mod redact;
mod secrets;
mod security;
mod selfservice;
mod serve;
mod session;
mod tokens;
mod ui;
mod units;
mod webhooks;

pub use clerk::{ClerkConfig, ClerkFrontendConfig};
pub use courier::{CourierConfig, CourierWorkerConfig, SmtpConfig};
pub use env::ENV_PREFIX;
pub use hashers::{Argon2Config, BcryptConfig, HasherAlgorithm, HashersConfig};
pub use hooks::{
    ApiKeyPlace, BeforeConfig, HookConfig, HookName, MethodAfterConfig, WebHookAuth, WebHookConfig,
    WebHookResponse,
};
pub use identity::{IdentityConfig, SchemaRef};
pub use log::{LogConfig, LogFormat, LogLevel};
pub use methods::{
    CodeConfig, CodeMethodConfig, EnabledConfig, LinkConfig, LinkMethodConfig, MethodsConfig,
    PasswordMethodConfig, PasswordPolicyConfig, MAX_CODE_LIFESPAN,
};
pub use mfa::{
    LookupSecretMethodConfig, PasskeyMethodConfig, RelyingParty, TotpConfig, TotpMethodConfig,
    WebauthnMethodConfig,
};
pub use oidc::{
    AccountLinkingMode, ClaimsSource, OidcConfig, OidcMethodConfig, OidcProviderConfig,
    OidcProviderKind, Pkce, SubjectSource, UpdateIdentityOnLogin,
};
pub use redact::Secret;
pub use secrets::SecretsConfig;
pub use security::{AccountEnumerationConfig, AuditConfig, PasswordChangeConfig, SecurityConfig};
pub use selfservice::{
    AddressFlowConfig, AddressMethod, AfterConfig, FlowConfig, FlowsConfig, LogoutFlowConfig,
    RegistrationFlowConfig, SelfServiceConfig, SettingsFlowConfig, UiUrlConfig,
};
pub use serve::{AdminEndpointConfig, CorsConfig, EndpointConfig, ServeConfig};
pub use session::{
    RequiredAal, SameSite, SessionConfig, SessionCookieConfig, TokenizerConfig, TokenizerTemplate,
    WhoamiConfig,
};
pub use tokens::{TokenAlgorithm, TokenCookiesConfig, TokenPathsConfig, TokensConfig};
pub use ui::{ThemeConfig, UiConfig};
pub use units::{ByteSize, Dur};
pub use webhooks::{ConfiguredEndpoint, WebhookFormat, WebhooksConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://…`. Empty in dev mode means `sqlite://portcullis.sqlite`.
    #[serde(serialize_with = "redact::serialize_dsn")]
    pub dsn: String,
    /// Dev mode. Only the `--dev` flag sets it (the `dev` argument of [`Config::load`]): a
    /// key in the file or the environment could switch off the production checks unnoticed.
    #[serde(skip)]
    pub dev: bool,
    pub log: LogConfig,
    pub serve: ServeConfig,
    pub identity: IdentityConfig,
    pub session: SessionConfig,
    pub selfservice: SelfServiceConfig,
    pub hashers: HashersConfig,
    pub secrets: SecretsConfig,
    pub tokens: TokensConfig,
    pub webhooks: WebhooksConfig,
    pub courier: CourierConfig,
    pub clerk: ClerkConfig,
    pub ui: UiConfig,
    pub security: SecurityConfig,
    /// Derived at load: the anti-CSRF cookie's name (see [`Config::csrf_cookie_name`]).
    #[serde(skip)]
    csrf_cookie_name: String,
    /// Found at load: values that look unfinished (see [`Config::notes`]).
    #[serde(skip)]
    load_notes: Vec<String>,
}

/// What a section's checks need from the rest of the configuration, settled before they run.
pub(crate) struct Ctx {
    pub dev: bool,
    /// `serve.public.base_url`, filled and ending in `/`.
    pub public_url: String,
    pub ui_enabled: bool,
    pub user_id_claim: String,
}

impl Config {
    /// Loads the configuration: defaults, then the YAML file (if any), then `PORTCULLIS_*`
    /// variables from `env`, then `--dev`. Kratos keys that are not fields are accepted or
    /// refused by [`kratos::RULES`] before the tree is deserialised.
    pub fn load(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        dev: bool,
    ) -> Result<Config, ConfigError> {
        let defaults = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut tree = match file {
            Some(path) => env::read_file(path)?,
            None => Value::Object(Map::new()),
        };
        env::apply_env(&mut tree, &defaults, env)?;
        kratos::apply(&mut tree)?;
        let load_notes = kratos::placeholder_notes(&tree);
        let mut cfg = env::deserialize_named(tree)?;
        cfg.load_notes = load_notes;
        if dev {
            cfg.dev = true;
        }
        cfg.finish()?;
        Ok(cfg)
    }

    /// Fills derived defaults and runs every section's checks, in the order a reader would
    /// fix them: storage, ports, secrets, then what builds on the public URL.
    fn finish(&mut self) -> Result<(), ConfigError> {
        self.finish_dsn()?;
        self.serve.finish_base_urls(self.dev)?;
        let ctx = Ctx {
            dev: self.dev,
            public_url: self.serve.public.base_url.clone(),
            ui_enabled: self.ui.enabled,
            user_id_claim: self.tokens.user_id_claim.clone(),
        };
        self.csrf_cookie_name = csrf_cookie_name(&ctx.public_url, self.host_cookies_allowed());
        self.webhooks.clerk_mapping.image_base = format!("{}clerk/images/", ctx.public_url);
        self.serve.validate()?;
        self.secrets.validate(&ctx)?;
        self.hashers.validate(&ctx)?;
        self.webhooks.validate()?;
        self.clerk.validate()?;
        self.security.validate()?;
        self.selfservice.fill_defaults(&ctx)?;
        self.selfservice.validate()?;
        self.courier.validate(&ctx, self.selfservice.sends_mail())?;
        self.check_enumeration_mitigation()?;
        self.ui.fill_defaults();
        self.ui.validate()?;
        self.session.validate(&ctx)?;
        self.tokens.fill_defaults(&ctx);
        self.tokens.validate(&ctx)
    }

    /// `security.account_enumeration.mitigate` can only hide a taken identifier at sign-up
    /// when sign-up waits for e-mail verification instead of signing in.
    fn check_enumeration_mitigation(&self) -> Result<(), ConfigError> {
        if !self.security.account_enumeration.mitigate {
            return Ok(());
        }
        const KEY: &str = "security.account_enumeration.mitigate";
        if !self.selfservice.flows.verification.is_enabled() {
            return Err(ConfigError::Invalid(format!(
                "{KEY}: needs selfservice.flows.verification.enabled (sign-up must wait for the e-mail)"
            )));
        }
        let after = &self.selfservice.flows.registration.after;
        // Every method that signs up without the address's code answers a taken address
        // like a free one, so none may sign in at once (a session that never was would tell).
        let m = &self.selfservice.methods;
        let signs_up = [
            ("password", true),
            ("passkey", m.passkey.enabled),
            (
                "webauthn",
                m.webauthn.enabled && m.webauthn.config.passwordless,
            ),
        ];
        for (method, on) in signs_up {
            if on && after.runs(method, HookName::Session, true) {
                return Err(ConfigError::Invalid(format!(
                    "{KEY}: registration must not sign in at once: list selfservice.flows.registration.after.{method}.hooks without `session` (for example [] or [show_verification_ui])"
                )));
            }
        }
        if !self.selfservice.flows.login.after.runs(
            "password",
            HookName::RequireVerifiedAddress,
            false,
        ) {
            return Err(ConfigError::Invalid(format!(
                "{KEY}: sign-in must wait for a verified address too (else signing in with a fresh sign-up's password tells it from a taken one): add require_verified_address to selfservice.flows.login.after.password.hooks"
            )));
        }
        Ok(())
    }

    fn finish_dsn(&mut self) -> Result<(), ConfigError> {
        // Kratos's name for its in-memory SQLite database.
        if self.dsn == "memory" {
            self.dsn = "sqlite::memory:".into();
        }
        if self.dsn.is_empty() {
            if !self.dev {
                return Err(ConfigError::Invalid(
                    "dsn: required (e.g. \"sqlite://portcullis.sqlite\" or \"postgres://user@host/db\"); \
                     or run with --dev for an embedded SQLite default"
                        .into(),
                ));
            }
            self.dsn = "sqlite://portcullis.sqlite".into();
        }
        if !(self.dsn.starts_with("sqlite:")
            || self.dsn.starts_with("postgres://")
            || self.dsn.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "dsn: unsupported {:?}: expected sqlite://PATH, sqlite::memory: or postgres://…",
                redact::redact_dsn(&self.dsn)
            )));
        }
        Ok(())
    }

    /// Things an operator should know that are not errors: `${NAME}` placeholders used as
    /// they are written. `serve` logs each as a warning at start-up and `config check` prints
    /// them.
    pub fn notes(&self) -> Vec<String> {
        self.load_notes.clone()
    }

    pub fn public_url(&self) -> &str {
        &self.serve.public.base_url
    }

    /// Kratos' name for the anti-CSRF cookie, `csrf_token_<hex(sha256(public base URL))>`,
    /// so two deployments on one domain do not overwrite each other's.
    pub fn csrf_cookie_name(&self) -> &str {
        &self.csrf_cookie_name
    }

    /// Where a browser lands after completing a flow of `kind` when no `return_to` was given:
    /// the flow's own `after.default_browser_return_url`, else the self-service default.
    pub fn after_url(&self, kind: FlowKind) -> &str {
        self.or_default_return_url(self.after(kind))
    }

    /// `selfservice.flows.<kind>.after`: return URLs and hooks.
    pub fn after(&self, kind: FlowKind) -> &AfterConfig {
        let f = &self.selfservice.flows;
        match kind {
            FlowKind::Login => &f.login.after,
            FlowKind::Registration => &f.registration.after,
            FlowKind::Settings => &f.settings.after,
            FlowKind::Recovery => &f.recovery.after,
            FlowKind::Verification => &f.verification.after,
        }
    }

    /// `selfservice.flows.<kind>.before.hooks`.
    pub fn before_hooks(&self, kind: FlowKind) -> &[HookConfig] {
        let f = &self.selfservice.flows;
        &match kind {
            FlowKind::Login => &f.login.before,
            FlowKind::Registration => &f.registration.before,
            FlowKind::Settings => &f.settings.before,
            FlowKind::Recovery => &f.recovery.before,
            FlowKind::Verification => &f.verification.before,
        }
        .hooks
    }

    /// Where a browser lands after `method` completes a flow of `kind`: the method's
    /// `after.<method>.default_browser_return_url`, else [`Config::after_url`].
    pub fn after_method_url(&self, kind: FlowKind, method: &str) -> &str {
        let after = self.after(kind);
        match after.method_return_url(method) {
            Some(url) => url,
            None => self.after_url(kind),
        }
    }

    /// Where a browser lands after signing out when no `return_to` was given.
    pub fn after_logout_url(&self) -> &str {
        self.or_default_return_url(&self.selfservice.flows.logout.after)
    }

    fn or_default_return_url<'a>(&'a self, after: &'a AfterConfig) -> &'a str {
        if after.default_browser_return_url.is_empty() {
            &self.selfservice.default_browser_return_url
        } else {
            &after.default_browser_return_url
        }
    }

    /// The UI page of a flow of `kind`.
    pub fn ui_url(&self, kind: FlowKind) -> &str {
        let f = &self.selfservice.flows;
        match kind {
            FlowKind::Login => &f.login.ui_url,
            FlowKind::Registration => &f.registration.ui_url,
            FlowKind::Settings => &f.settings.ui_url,
            FlowKind::Recovery => &f.recovery.ui_url,
            FlowKind::Verification => &f.verification.ui_url,
        }
    }

    /// The UI page that shows a kept error (`/self-service/errors?id=`).
    pub fn error_ui_url(&self) -> &str {
        &self.selfservice.flows.error.ui_url
    }

    /// Cookies carry `Secure` whenever the public URL is https (always, outside dev mode).
    /// Whether a cookie may carry the `__Host-` prefix here: sent only over https, to this
    /// host alone (no `session.cookie.domain`); the CSRF cookie is always on `/`.
    pub fn host_cookies_allowed(&self) -> bool {
        self.secure_cookies() && self.session.cookie.domain.is_empty()
    }

    pub fn secure_cookies(&self) -> bool {
        url::Url::parse(&self.serve.public.base_url).is_ok_and(|u| u.scheme() == "https")
    }

    /// The configuration as YAML. Secrets print as `<redacted>` and DSN passwords are blanked
    /// by their own serialisers, so nothing here lists the secret fields.
    pub fn redacted_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

/// `csrf_token_<sha256 of the public URL>`, as Kratos names it; with the `__Host-` prefix
/// where the deployment allows one, so a sibling subdomain cannot plant or shadow it
/// (security review F18).
fn csrf_cookie_name(public_url: &str, host_prefix: bool) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "{}csrf_token_{}",
        if host_prefix { "__Host-" } else { "" },
        hex::encode(Sha256::digest(public_url.as_bytes()))
    )
}

#[cfg(test)]
mod kratos_tests;
#[cfg(test)]
mod tests;
