//! Configuration: a YAML file using Kratos's `kratos.yml` key names, overridden by
//! `PORTCULLIS_<UPPER_SNAKE_PATH>` environment variables (arrays and objects as JSON).
//!
//! Loading is strict: an unknown key (in the file or the environment) is an error that names
//! its path, and a bad value names the key and the form it expects. The set of known paths is
//! derived from the serialised defaults, so a new field is overridable from the environment
//! without extra code.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub const ENV_PREFIX: &str = "PORTCULLIS_";
/// Variables with this prefix belong to the test harness, not to the server.
const ENV_RESERVED: &[&str] = &["PORTCULLIS_TEST_"];

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

/// A duration written the Go way, as Kratos does: `1h`, `15m`, `1h30m`, `500ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn parse(s: &str) -> Option<Dur> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s == "0" {
            return Some(Dur(Duration::ZERO));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (num, tail) = rest.split_at(num_end);
            let value: f64 = num.parse().ok()?;
            let unit_end = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, next) = tail.split_at(unit_end);
            let secs = match unit {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
            total += Duration::try_from_secs_f64(value * secs).ok()?;
            rest = next;
        }
        Some(Dur(total))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() != 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out += &format!("{h}h");
        }
        if m > 0 {
            out += &format!("{m}m");
        }
        if s > 0 || out.is_empty() {
            out += &format!("{s}s");
        }
        f.write_str(&out)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: expected a duration such as \"30s\", \"15m\", \"24h\" or \"1h30m\""
            ))
        })
    }
}

/// A size in bytes written with a unit: `19MiB`, `128MB`, `1GiB`, `512KiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Option<ByteSize> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1000 * 1000,
            "MiB" => 1 << 20,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(mult).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let text = if b.is_multiple_of(1 << 30) && b > 0 {
            format!("{}GiB", b >> 30)
        } else if b.is_multiple_of(1 << 20) && b > 0 {
            format!("{}MiB", b >> 20)
        } else if b.is_multiple_of(1 << 10) && b > 0 {
            format!("{}KiB", b >> 10)
        } else {
            format!("{b}B")
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ByteSize::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {s:?}: expected a size such as \"19MiB\", \"128MB\" or \"1GiB\""
            ))
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://…`. Empty in dev mode means `sqlite://portcullis.sqlite`.
    pub dsn: String,
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
    pub clerk: ClerkConfig,
    pub ui: UiConfig,
    /// Derived at load: the anti-CSRF cookie's name (see [`Config::csrf_cookie_name`]).
    #[serde(skip)]
    csrf_cookie_name: String,
}

/// The hosted UI served on the public port under `/ui`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve `/ui/*`. Turn off when an external UI takes every `selfservice.flows.*.ui_url`.
    pub enabled: bool,
    /// Used when neither `?lang=`, the language cookie nor `Accept-Language` picks a known one.
    pub default_language: String,
    /// A folder of `<lang>.json` files whose entries extend or replace the built-in
    /// translations (a new file adds a language).
    pub translations_dir: String,
    /// A folder of templates that replace the built-in ones by file name (`layout.html`, …).
    pub templates_dir: String,
    pub theme: ThemeConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThemeConfig {
    /// Shown above every form; an absolute URL or a path on the public port.
    pub logo_url: String,
    /// The product name shown in titles and above forms.
    pub name: String,
    /// CSS custom properties, without the `--pc-` prefix: `primary: "#4f46e5"`.
    pub colors: std::collections::BTreeMap<String, String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            default_language: "en".into(),
            translations_dir: String::new(),
            templates_dir: String::new(),
            theme: ThemeConfig::default(),
        }
    }
}

/// `serve.<port>.cors`: which other origins may call the API from a browser.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    pub enabled: bool,
    /// Exact origins (`https://app.example.com`), `https://*.example.com` for subdomains.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub allow_credentials: bool,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            enabled: false,
            allowed_origins: vec![],
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            allowed_headers: [
                "Authorization",
                "Content-Type",
                "Accept",
                "X-Session-Token",
                "X-CSRF-Token",
            ]
            .map(String::from)
            .to_vec(),
            exposed_headers: vec!["Content-Type".into()],
            allow_credentials: true,
            max_age: 0,
        }
    }
}

/// `after:` of a flow: where a browser goes when it completes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AfterConfig {
    pub default_browser_return_url: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogoutFlowConfig {
    pub after: AfterConfig,
}

/// The Clerk Backend API face (`/v1` on the admin port).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClerkConfig {
    /// Accepted `Authorization: Bearer sk_…` keys (besides keys created through the admin API).
    pub secret_keys: Vec<String>,
}

/// Outgoing webhooks (endpoints themselves are managed through `/admin/webhooks`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow endpoints on loopback, private and link-local addresses (always allowed with `--dev`).
    pub allow_private_networks: bool,
    /// Which traits fill Clerk's `User` fields in `clerk`-format payloads (dotted paths).
    pub clerk_mapping: crate::webhooks::ClerkMapping,
    /// Endpoints declared here are created or brought up to date at start-up.
    pub endpoints: Vec<ConfiguredEndpoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredEndpoint {
    /// Stable id (`ep_…`), so restarts update rather than duplicate.
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default = "default_format")]
    pub format: String,
    /// `whsec_<base64>`.
    pub secret: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_format() -> String {
    "clerk".into()
}

fn default_true() -> bool {
    true
}

/// JWTs for API backends: the simplejwt-compatible endpoints, signing keys and the JWKS.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Algorithm of new signing keys: `ES256` (default), `EdDSA`, `RS256`, or `HS256` (needs `hs256_secret`).
    pub algorithm: String,
    /// Shared secret for HS256, for simplejwt setups that verify with `SIGNING_KEY`.
    pub hs256_secret: String,
    /// `iss` of every token; defaults to the public base URL without its trailing `/`.
    pub issuer: String,
    /// `aud` of every token (and what verification requires); empty = no audience.
    pub audience: Vec<String>,
    pub access_token_lifetime: Dur,
    pub refresh_token_lifetime: Dur,
    /// Refresh returns a new refresh token and retires the old one (reuse revokes the family).
    pub rotate_refresh_tokens: bool,
    /// A password change revokes the identity's refresh tokens.
    pub revoke_on_password_change: bool,
    /// A rotated refresh token presented again within this window is refused without revoking
    /// its family: two tabs refreshing at once is a race, not theft. `0s` disables the window.
    pub rotation_grace: Dur,
    /// Claim holding the identity id (simplejwt's `USER_ID_CLAIM`).
    pub user_id_claim: String,
    /// Body field accepted for the identifier on obtain, besides `email`, `username` and `identifier`.
    pub username_field: String,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`.
    pub leeway: Dur,
    /// Rotate the signing key this often (`0s` = only by `portcullis keys rotate`).
    pub key_rotation_interval: Dur,
    pub paths: TokenPathsConfig,
    pub cookies: TokenCookiesConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPathsConfig {
    pub obtain: String,
    pub refresh: String,
    pub verify: String,
    pub blacklist: String,
    /// Cookie mode only: clears both cookies and blacklists the refresh token.
    pub logout: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCookiesConfig {
    pub enabled: bool,
    pub access_name: String,
    pub refresh_name: String,
    pub domain: String,
    pub path: String,
    /// `Lax`, `Strict` or `None`.
    pub same_site: String,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            algorithm: "ES256".into(),
            hs256_secret: String::new(),
            issuer: String::new(),
            audience: vec![],
            access_token_lifetime: Dur(Duration::from_secs(300)),
            refresh_token_lifetime: Dur(Duration::from_secs(24 * 3600)),
            rotate_refresh_tokens: true,
            revoke_on_password_change: true,
            rotation_grace: Dur(Duration::from_secs(5)),
            user_id_claim: "user_id".into(),
            username_field: "email".into(),
            leeway: Dur(Duration::from_secs(10)),
            key_rotation_interval: Dur(Duration::ZERO),
            paths: TokenPathsConfig::default(),
            cookies: TokenCookiesConfig::default(),
        }
    }
}

impl Default for TokenPathsConfig {
    fn default() -> Self {
        TokenPathsConfig {
            obtain: "/api/token/".into(),
            refresh: "/api/token/refresh/".into(),
            verify: "/api/token/verify/".into(),
            blacklist: "/api/token/blacklist/".into(),
            logout: "/api/token/logout/".into(),
        }
    }
}

impl Default for TokenCookiesConfig {
    fn default() -> Self {
        TokenCookiesConfig {
            enabled: false,
            access_name: "access_token".into(),
            refresh_name: "refresh_token".into(),
            domain: String::new(),
            path: "/".into(),
            same_site: "Lax".into(),
        }
    }
}

/// `session.whoami.tokenizer.templates.<name>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerTemplate {
    pub ttl: Dur,
    /// Claim name → dotted path into the session (`identity.traits.email`,
    /// `identity.metadata_public.plan`, `authenticator_assurance_level`, …).
    pub claims: std::collections::BTreeMap<String, String>,
}

impl Default for TokenizerTemplate {
    fn default() -> Self {
        TokenizerTemplate {
            ttl: Dur(Duration::from_secs(60)),
            claims: Default::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhoamiConfig {
    pub tokenizer: TokenizerConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    pub templates: std::collections::BTreeMap<String, TokenizerTemplate>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    pub leak_sensitive_values: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub public: EndpointConfig,
    pub admin: EndpointConfig,
    /// Largest request body accepted on either port.
    pub max_body_size: ByteSize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    pub host: String,
    pub port: u16,
    /// Defaults to `http://<host>:<port>/`.
    pub base_url: String,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_forwarded_headers: bool,
    pub cors: CorsConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub default_schema_id: String,
    pub schemas: Vec<SchemaRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRef {
    pub id: String,
    /// `file://PATH` or `base64://…`.
    pub url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub lifespan: Dur,
    pub earliest_possible_extend: Dur,
    pub cookie: SessionCookieConfig,
    pub whoami: WhoamiConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionCookieConfig {
    pub name: String,
    pub domain: String,
    pub path: String,
    pub persistent: bool,
    /// `Lax`, `Strict` or `None`.
    pub same_site: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct SelfServiceConfig {
    pub default_browser_return_url: String,
    pub allowed_return_urls: Vec<String>,
    pub methods: MethodsConfig,
    pub flows: FlowsConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordMethodConfig {
    pub enabled: bool,
    pub config: PasswordPolicyConfig,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationFlowConfig {
    pub enabled: bool,
    pub ui_url: String,
    pub lifespan: Dur,
    pub after: AfterConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsFlowConfig {
    pub ui_url: String,
    pub lifespan: Dur,
    pub privileged_session_max_age: Dur,
    pub after: AfterConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct UiUrlConfig {
    pub ui_url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashersConfig {
    /// `argon2` (default) or `bcrypt`.
    pub algorithm: String,
    pub argon2: Argon2Config,
    pub bcrypt: BcryptConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory: ByteSize,
    pub iterations: u32,
    pub parallelism: u32,
    /// Upper bound on memory all concurrent hashes may use; sizes the hashing pool.
    pub dedicated_memory: ByteSize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BcryptConfig {
    pub cost: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct SecretsConfig {
    pub default: Vec<String>,
    pub cookie: Vec<String>,
    pub cipher: Vec<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
            leak_sensitive_values: false,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            public: EndpointConfig {
                host: "127.0.0.1".into(),
                port: 4433,
                base_url: String::new(),
                trust_forwarded_headers: false,
                cors: CorsConfig::default(),
            },
            admin: EndpointConfig {
                host: "127.0.0.1".into(),
                port: 4434,
                base_url: String::new(),
                trust_forwarded_headers: false,
                cors: CorsConfig::default(),
            },
            max_body_size: ByteSize(1 << 20),
        }
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            host: "127.0.0.1".into(),
            port: 0,
            base_url: String::new(),
            trust_forwarded_headers: false,
            cors: CorsConfig::default(),
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            default_schema_id: "default".into(),
            schemas: vec![],
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lifespan: Dur(Duration::from_secs(24 * 3600)),
            earliest_possible_extend: Dur(Duration::from_secs(24 * 3600)),
            cookie: SessionCookieConfig::default(),
            whoami: WhoamiConfig::default(),
        }
    }
}

impl Default for SessionCookieConfig {
    fn default() -> Self {
        SessionCookieConfig {
            name: "ory_kratos_session".into(),
            domain: String::new(),
            path: "/".into(),
            persistent: true,
            same_site: "Lax".into(),
        }
    }
}

impl Default for MethodsConfig {
    fn default() -> Self {
        MethodsConfig {
            password: PasswordMethodConfig::default(),
            profile: EnabledConfig { enabled: true },
        }
    }
}

impl Default for EnabledConfig {
    fn default() -> Self {
        EnabledConfig { enabled: true }
    }
}

impl Default for PasswordMethodConfig {
    fn default() -> Self {
        PasswordMethodConfig {
            enabled: true,
            config: PasswordPolicyConfig::default(),
        }
    }
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

const HOUR: Duration = Duration::from_secs(3600);

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            login: FlowConfig {
                ui_url: String::new(),
                lifespan: Dur(HOUR),
                after: AfterConfig::default(),
            },
            registration: RegistrationFlowConfig {
                enabled: true,
                ui_url: String::new(),
                lifespan: Dur(HOUR),
                after: AfterConfig::default(),
            },
            settings: SettingsFlowConfig {
                ui_url: String::new(),
                lifespan: Dur(HOUR),
                privileged_session_max_age: Dur(HOUR),
                after: AfterConfig::default(),
            },
            error: UiUrlConfig::default(),
            logout: LogoutFlowConfig::default(),
        }
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            ui_url: String::new(),
            lifespan: Dur(HOUR),
            after: AfterConfig::default(),
        }
    }
}

impl Default for RegistrationFlowConfig {
    fn default() -> Self {
        RegistrationFlowConfig {
            enabled: true,
            ui_url: String::new(),
            lifespan: Dur(HOUR),
            after: AfterConfig::default(),
        }
    }
}

impl Default for SettingsFlowConfig {
    fn default() -> Self {
        SettingsFlowConfig {
            ui_url: String::new(),
            lifespan: Dur(HOUR),
            privileged_session_max_age: Dur(HOUR),
            after: AfterConfig::default(),
        }
    }
}

impl Default for HashersConfig {
    fn default() -> Self {
        HashersConfig {
            algorithm: "argon2".into(),
            argon2: Argon2Config::default(),
            bcrypt: BcryptConfig { cost: 12 },
        }
    }
}

impl Default for Argon2Config {
    fn default() -> Self {
        // OWASP's first recommended Argon2id setting: m=19 MiB, t=2, p=1.
        Argon2Config {
            memory: ByteSize(19 << 20),
            iterations: 2,
            parallelism: 1,
            dedicated_memory: ByteSize(1 << 30),
        }
    }
}

impl Default for BcryptConfig {
    fn default() -> Self {
        BcryptConfig { cost: 12 }
    }
}

impl Config {
    /// Loads the configuration: defaults, then the YAML file (if any), then `PORTCULLIS_*`
    /// variables from `env`, then `--dev`.
    pub fn load(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        dev: bool,
    ) -> Result<Config, ConfigError> {
        let defaults = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_string(),
                    source,
                })?;
                let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{path}: not valid YAML: {e}")))?;
                let v = serde_json::to_value(yaml)
                    .map_err(|e| ConfigError::Invalid(format!("{path}: {e}")))?;
                match v {
                    Value::Null => Value::Object(Map::new()),
                    Value::Object(_) => v,
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "{path}: the top level must be a mapping of keys"
                        )))
                    }
                }
            }
            None => Value::Object(Map::new()),
        };
        apply_env(&mut tree, &defaults, env)?;
        let mut cfg: Config = deserialize_named(tree)?;
        if dev {
            cfg.dev = true;
        }
        cfg.finish()?;
        Ok(cfg)
    }

    /// Fills derived defaults and checks cross-field rules.
    fn finish(&mut self) -> Result<(), ConfigError> {
        if self.dsn.is_empty() {
            if self.dev {
                self.dsn = "sqlite://portcullis.sqlite".into();
            } else {
                return Err(ConfigError::Invalid(
                    "dsn: required (e.g. \"sqlite://portcullis.sqlite\" or \"postgres://user@host/db\"); \
                     or run with --dev for an embedded SQLite default"
                        .into(),
                ));
            }
        }
        if !(self.dsn.starts_with("sqlite:")
            || self.dsn.starts_with("postgres://")
            || self.dsn.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "dsn: unsupported {:?}: expected sqlite://PATH, sqlite::memory: or postgres://…",
                redact_dsn(&self.dsn)
            )));
        }
        for (key, ep) in [
            ("serve.public", &mut self.serve.public),
            ("serve.admin", &mut self.serve.admin),
        ] {
            if ep.base_url.is_empty() {
                let host = match ep.host.as_str() {
                    "0.0.0.0" | "" => "127.0.0.1".to_string(),
                    "::" | "[::]" => "[::1]".to_string(),
                    h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
                    h => h.to_string(),
                };
                ep.base_url = format!("http://{host}:{}/", ep.port);
            }
            let parsed = url::Url::parse(&ep.base_url).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{key}.base_url: {:?} is not an absolute URL: {e}",
                    ep.base_url
                ))
            })?;
            if !ep.base_url.ends_with('/') {
                ep.base_url.push('/');
            }
            if key == "serve.public" && !self.dev && parsed.scheme() != "https" {
                return Err(ConfigError::Invalid(format!(
                    "serve.public.base_url: {:?} is plain http; session cookies must be Secure outside dev mode. \
                     Use an https URL (TLS at a proxy is fine) or run with --dev",
                    ep.base_url
                )));
            }
        }
        if self.secrets.default.is_empty() && !self.dev {
            return Err(ConfigError::Invalid(
                "secrets.default: at least one secret of 32 or more characters is required outside dev mode \
                 (e.g. PORTCULLIS_SECRETS_DEFAULT='[\"<random 32+ chars>\"]')"
                    .into(),
            ));
        }
        for (key, list) in [
            ("default", &self.secrets.default),
            ("cookie", &self.secrets.cookie),
            ("cipher", &self.secrets.cipher),
        ] {
            for (i, s) in list.iter().enumerate() {
                let n = s.chars().count();
                if n < 32 {
                    return Err(ConfigError::Invalid(format!(
                        "secrets.{key}.{i}: {n} characters long; every secret must have at least 32"
                    )));
                }
            }
        }
        if !matches!(
            self.log.level.to_ascii_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "error" | "off"
        ) {
            return Err(ConfigError::Invalid(format!(
                "log.level: {:?} is not a level: expected trace, debug, info, warn or error",
                self.log.level
            )));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log.format: {:?}: expected \"text\" or \"json\"",
                self.log.format
            )));
        }
        match self.hashers.algorithm.as_str() {
            "argon2" | "bcrypt" => {}
            other => {
                return Err(ConfigError::Invalid(format!(
                "hashers.algorithm: {other:?} is not supported: expected \"argon2\" or \"bcrypt\""
            )))
            }
        }
        let a = &self.hashers.argon2;
        if a.iterations == 0
            || a.parallelism == 0
            || a.memory.0 < 8 * 1024 * u64::from(a.parallelism)
        {
            return Err(ConfigError::Invalid(
                "hashers.argon2: iterations and parallelism must be at least 1 and memory at least 8KiB per lane".into(),
            ));
        }
        if !self.dev
            && (a.memory.0 < 19 << 20 || a.iterations < 2)
            && self.hashers.algorithm == "argon2"
        {
            return Err(ConfigError::Invalid(
                "hashers.argon2: below the OWASP minimum (memory 19MiB, iterations 2); lower values are allowed only with --dev".into(),
            ));
        }
        for (i, e) in self.webhooks.endpoints.iter().enumerate() {
            let key = format!("webhooks.endpoints.{i}");
            if !e.id.starts_with("ep_") || e.id.len() < 4 {
                return Err(ConfigError::Invalid(format!(
                    "{key}.id: {:?} must look like ep_<name>",
                    e.id
                )));
            }
            if url::Url::parse(&e.url)
                .map(|u| !matches!(u.scheme(), "http" | "https"))
                .unwrap_or(true)
            {
                return Err(ConfigError::Invalid(format!(
                    "{key}.url: {:?} is not an http(s) URL",
                    e.url
                )));
            }
            if crate::webhooks::sign(&e.secret, "x", 0, b"").is_none()
                || !e.secret.starts_with("whsec_")
            {
                return Err(ConfigError::Invalid(format!(
                    "{key}.secret: expected whsec_<base64>"
                )));
            }
            if !matches!(e.format.as_str(), "clerk" | "native") {
                return Err(ConfigError::Invalid(format!(
                    "{key}.format: expected \"clerk\" or \"native\""
                )));
            }
            if let Some(bad) = e
                .events
                .iter()
                .find(|t| !crate::webhooks::EVENT_TYPES.contains(&t.as_str()))
            {
                return Err(ConfigError::Invalid(format!(
                    "{key}.events: unknown event type {bad:?}"
                )));
            }
        }
        for (i, k) in self.clerk.secret_keys.iter().enumerate() {
            if !k.starts_with("sk_") || k.len() < 20 {
                return Err(ConfigError::Invalid(format!(
                    "clerk.secret_keys.{i}: expected a key of the form sk_test_… or sk_live_… (at least 20 characters)"
                )));
            }
        }
        self.finish_browser()?;
        let t = &mut self.tokens;
        match t.algorithm.as_str() {
            "ES256" | "EdDSA" | "RS256" => {}
            "HS256" if t.hs256_secret.chars().count() >= 32 => {}
            "HS256" => {
                return Err(ConfigError::Invalid(
                    "tokens.hs256_secret: HS256 needs a shared secret of at least 32 characters".into(),
                ))
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "tokens.algorithm: {other:?} is not supported: expected ES256, EdDSA, RS256 or HS256"
                )))
            }
        }
        if t.issuer.is_empty() {
            t.issuer = self.serve.public.base_url.trim_end_matches('/').to_string();
        }
        if t.access_token_lifetime.0.is_zero() || t.refresh_token_lifetime.0.is_zero() {
            return Err(ConfigError::Invalid(
                "tokens: token lifetimes must be longer than 0s".into(),
            ));
        }
        if t.user_id_claim.is_empty()
            || [
                "exp",
                "iat",
                "nbf",
                "jti",
                "iss",
                "aud",
                "token_type",
                "sid",
            ]
            .contains(&t.user_id_claim.as_str())
        {
            return Err(ConfigError::Invalid(format!(
                "tokens.user_id_claim: {:?} is empty or a registered claim",
                t.user_id_claim
            )));
        }
        for (name, p) in [
            ("obtain", &t.paths.obtain),
            ("refresh", &t.paths.refresh),
            ("verify", &t.paths.verify),
            ("blacklist", &t.paths.blacklist),
            ("logout", &t.paths.logout),
        ] {
            if !p.starts_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "tokens.paths.{name}: {p:?} must start with /"
                )));
            }
        }
        for (name, tpl) in &self.session.whoami.tokenizer.templates {
            if tpl.ttl.0.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "session.whoami.tokenizer.templates.{name}.ttl: must be longer than 0s"
                )));
            }
            for claim in tpl.claims.keys() {
                // Registered claims, and the ones that would let a tokenized session pass for
                // one of our access or refresh tokens, are set by Portcullis only.
                let reserved = [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "jti",
                    "sid",
                    "token_type",
                ];
                if reserved.contains(&claim.as_str()) || *claim == t.user_id_claim {
                    return Err(ConfigError::Invalid(format!(
                        "session.whoami.tokenizer.templates.{name}.claims.{claim}: this claim is set by Portcullis"
                    )));
                }
            }
        }
        if !(4..=31).contains(&self.hashers.bcrypt.cost) {
            return Err(ConfigError::Invalid(
                "hashers.bcrypt.cost: expected a number from 4 to 31".into(),
            ));
        }
        if self.selfservice.methods.password.config.min_password_length < 6 {
            return Err(ConfigError::Invalid(
                "selfservice.methods.password.config.min_password_length: must be at least 6"
                    .into(),
            ));
        }
        let pw = &self.selfservice.methods.password.config;
        if pw.min_password_length > pw.max_password_length {
            return Err(ConfigError::Invalid(
                "selfservice.methods.password.config: min_password_length is larger than max_password_length".into(),
            ));
        }
        if self.selfservice.methods.password.config.max_password_length < 64 {
            return Err(ConfigError::Invalid(
                "selfservice.methods.password.config.max_password_length: must be at least 64"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn public_url(&self) -> &str {
        &self.serve.public.base_url
    }

    /// Browser-facing defaults (hosted UI URLs, return URLs) and their checks.
    fn finish_browser(&mut self) -> Result<(), ConfigError> {
        let public = self.serve.public.base_url.clone();
        self.csrf_cookie_name = {
            use sha2::{Digest, Sha256};
            format!(
                "csrf_token_{}",
                hex::encode(Sha256::digest(public.as_bytes()))
            )
        };
        if !self.ui.enabled {
            let f = &self.selfservice.flows;
            for (key, url) in [
                ("login", &f.login.ui_url),
                ("registration", &f.registration.ui_url),
                ("settings", &f.settings.ui_url),
                ("error", &f.error.ui_url),
            ] {
                if url.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "selfservice.flows.{key}.ui_url: required when the hosted UI is off (ui.enabled: false)"
                    )));
                }
            }
        }
        let f = &mut self.selfservice.flows;
        for (key, url, page) in [
            ("login", &mut f.login.ui_url, "login"),
            ("registration", &mut f.registration.ui_url, "registration"),
            ("settings", &mut f.settings.ui_url, "settings"),
            ("error", &mut f.error.ui_url, "error"),
        ] {
            if url.is_empty() {
                *url = format!("{public}ui/{page}");
            }
            check_absolute(&format!("selfservice.flows.{key}.ui_url"), url)?;
        }
        let s = &mut self.selfservice;
        if s.default_browser_return_url.is_empty() {
            s.default_browser_return_url = if self.ui.enabled {
                format!("{public}ui/welcome")
            } else {
                public.clone()
            };
        }
        check_absolute(
            "selfservice.default_browser_return_url",
            &s.default_browser_return_url,
        )?;
        for (key, after) in [
            ("login", &s.flows.login.after),
            ("registration", &s.flows.registration.after),
            ("settings", &s.flows.settings.after),
            ("logout", &s.flows.logout.after),
        ] {
            if !after.default_browser_return_url.is_empty() {
                check_absolute(
                    &format!("selfservice.flows.{key}.after.default_browser_return_url"),
                    &after.default_browser_return_url,
                )?;
            }
        }
        for (port, cors) in [
            ("public", &self.serve.public.cors),
            ("admin", &self.serve.admin.cors),
        ] {
            // Browsers never send credentials to a wildcard; echoing every origin instead
            // would let any site act as the signed-in user.
            for (key, list) in [
                ("allowed_origins", &cors.allowed_origins),
                ("allowed_methods", &cors.allowed_methods),
                ("allowed_headers", &cors.allowed_headers),
                ("exposed_headers", &cors.exposed_headers),
            ] {
                if cors.allow_credentials && list.iter().any(|v| v == "*") {
                    return Err(ConfigError::Invalid(format!(
                        "serve.{port}.cors.{key}: \"*\" cannot be combined with allow_credentials: true; list the values"
                    )));
                }
            }
            for (i, o) in cors.allowed_origins.iter().enumerate() {
                let probe = o.replacen("*.", "", 1);
                let ok = o == "*"
                    || url::Url::parse(&probe)
                        .map(|u| u.path() == "/" && !o.ends_with('/') && u.host().is_some())
                        .unwrap_or(false);
                if !ok {
                    return Err(ConfigError::Invalid(format!(
                        "serve.{port}.cors.allowed_origins.{i}: {o:?} is not an origin: expected scheme://host[:port], \
                         optionally with a leading *. for subdomains"
                    )));
                }
            }
        }
        let t = &self.ui.theme;
        for (k, v) in &t.colors {
            let safe = |s: &str, extra: &str| {
                !s.is_empty()
                    && s.chars().all(|c| {
                        c.is_ascii_alphanumeric() || " #%.,()-_".contains(c) || extra.contains(c)
                    })
            };
            if !safe(k, "") || !safe(v, "") {
                return Err(ConfigError::Invalid(format!(
                    "ui.theme.colors.{k}: {v:?}: names and values may hold only letters, digits, spaces and # % . , ( ) - _"
                )));
            }
        }
        if !t.logo_url.is_empty()
            && (t.logo_url.contains(['"', '\'', '(', ')', '\\', '<', '>'])
                || !(t.logo_url.starts_with('/') || url::Url::parse(&t.logo_url).is_ok()))
        {
            return Err(ConfigError::Invalid(format!(
                "ui.theme.logo_url: {:?} is not a URL or a path",
                t.logo_url
            )));
        }
        for (key, value) in [
            ("session.cookie.same_site", &self.session.cookie.same_site),
            ("tokens.cookies.same_site", &self.tokens.cookies.same_site),
        ] {
            match value.to_ascii_lowercase().as_str() {
                "lax" | "strict" => {}
                // Browsers drop SameSite=None cookies that are not Secure.
                "none" if public.to_ascii_lowercase().starts_with("https://") => {}
                "none" => {
                    return Err(ConfigError::Invalid(format!(
                        "{key}: None needs an https public URL (browsers refuse SameSite=None cookies without Secure)"
                    )))
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{key}: {value:?}: expected Lax, Strict or None"
                    )))
                }
            }
        }
        if self.ui.default_language.is_empty() {
            self.ui.default_language = "en".into();
        }
        Ok(())
    }

    /// Kratos' name for the anti-CSRF cookie, `csrf_token_<hex(sha256(public base URL))>`,
    /// so two deployments on one domain do not overwrite each other's.
    pub fn csrf_cookie_name(&self) -> &str {
        &self.csrf_cookie_name
    }

    /// Where a browser lands after completing `flow` (`login`, `registration`, `settings`,
    /// `logout`) when no `return_to` was given.
    pub fn after_url(&self, flow: &str) -> &str {
        let f = &self.selfservice.flows;
        let own = match flow {
            "login" => &f.login.after.default_browser_return_url,
            "registration" => &f.registration.after.default_browser_return_url,
            "settings" => &f.settings.after.default_browser_return_url,
            "logout" => &f.logout.after.default_browser_return_url,
            _ => "",
        };
        if own.is_empty() {
            &self.selfservice.default_browser_return_url
        } else {
            own
        }
    }

    /// The UI page of a flow (`login`, `registration`, `settings`, `error`).
    pub fn ui_url(&self, flow: &str) -> &str {
        let f = &self.selfservice.flows;
        match flow {
            "login" => &f.login.ui_url,
            "registration" => &f.registration.ui_url,
            "settings" => &f.settings.ui_url,
            _ => &f.error.ui_url,
        }
    }

    /// Cookies carry `Secure` whenever the public URL is https (always, outside dev mode).
    pub fn secure_cookies(&self) -> bool {
        url::Url::parse(&self.serve.public.base_url).is_ok_and(|u| u.scheme() == "https")
    }

    /// The configuration as YAML with secrets and DSN passwords redacted.
    pub fn redacted_yaml(&self) -> String {
        let mut c = self.clone();
        c.dsn = redact_dsn(&c.dsn);
        for list in [
            &mut c.secrets.default,
            &mut c.secrets.cookie,
            &mut c.secrets.cipher,
        ] {
            for s in list.iter_mut() {
                *s = "<redacted>".into();
            }
        }
        for e in c.webhooks.endpoints.iter_mut() {
            e.secret = "<redacted>".into();
        }
        for k in c.clerk.secret_keys.iter_mut() {
            *k = "<redacted>".into();
        }
        if !c.tokens.hs256_secret.is_empty() {
            c.tokens.hs256_secret = "<redacted>".into();
        }
        serde_yaml::to_string(&c).unwrap_or_default()
    }
}

fn redact_dsn(dsn: &str) -> String {
    match url::Url::parse(dsn) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => dsn.to_string(),
    }
}

fn deserialize_named(tree: Value) -> Result<Config, ConfigError> {
    // Report the dotted key path of the first bad key or value.
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "<root>".to_string()
        } else {
            path
        };
        ConfigError::Invalid(format!("{path}: {}", e.into_inner()))
    })
}

/// The known key paths (upper-snake joined) mapped to their default value.
fn known_paths(defaults: &Value) -> BTreeMap<String, (Vec<String>, Value)> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeMap<String, (Vec<String>, Value)>) {
        if !path.is_empty() {
            out.insert(path.join("_").to_uppercase(), (path.clone(), v.clone()));
        }
        if let Value::Object(m) = v {
            for (k, child) in m {
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(defaults, &mut vec![], &mut out);
    out
}

fn apply_env(
    tree: &mut Value,
    defaults: &Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let known = known_paths(defaults);
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with(ENV_PREFIX) && !ENV_RESERVED.iter().any(|r| k.starts_with(r))
        })
        .collect();
    // Parents first, so `PORTCULLIS_SERVE_PUBLIC='{…}'` does not undo `PORTCULLIS_SERVE_PUBLIC_PORT`.
    vars.sort_by_key(|(k, _)| k.len());
    for (key, raw) in vars {
        let suffix = &key[ENV_PREFIX.len()..];
        let Some((path, default)) = known.get(suffix) else {
            return Err(ConfigError::Invalid(format!(
                "environment variable {key} does not name a configuration key"
            )));
        };
        let value = if default.is_string() {
            Value::String(raw)
        } else {
            let parsed: serde_yaml::Value = serde_yaml::from_str(&raw).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{key}: not a valid value ({e}); arrays and objects are written as JSON"
                ))
            })?;
            serde_json::to_value(parsed).map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?
        };
        set_path(tree, path, value);
    }
    Ok(())
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut cur = tree;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        if i == path.len() - 1 {
            m.insert(seg.clone(), value);
            return;
        }
        cur = m
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn browser_defaults_point_at_the_hosted_ui_and_are_checked() {
        let c = Config::load(None, env(&[("PORTCULLIS_SERVE_PUBLIC_PORT", "4455")]), true).unwrap();
        assert_eq!(c.ui_url("login"), "http://127.0.0.1:4455/ui/login");
        assert_eq!(c.ui_url("error"), "http://127.0.0.1:4455/ui/error");
        assert_eq!(c.after_url("logout"), "http://127.0.0.1:4455/ui/welcome");
        assert_eq!(c.csrf_cookie_name().len(), "csrf_token_".len() + 64);
        assert!(!c.secure_cookies(), "dev mode on plain http");
        let c = Config::load(
            None,
            env(&[
                (
                    "PORTCULLIS_SELFSERVICE_FLOWS_LOGIN_AFTER_DEFAULT_BROWSER_RETURN_URL",
                    "https://app.example.com/home",
                ),
                (
                    "PORTCULLIS_SERVE_PUBLIC_CORS_ALLOWED_ORIGINS",
                    r#"["https://app.example.com","https://*.example.org"]"#,
                ),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(c.after_url("login"), "https://app.example.com/home");
        assert_eq!(
            c.after_url("registration"),
            c.selfservice.default_browser_return_url
        );
        for (key, value, complaint) in [
            (
                "PORTCULLIS_UI_ENABLED",
                "false",
                "selfservice.flows.login.ui_url: required",
            ),
            (
                "PORTCULLIS_SERVE_PUBLIC_CORS_ALLOWED_ORIGINS",
                r#"["https://app.example.com/path"]"#,
                "is not an origin",
            ),
            (
                "PORTCULLIS_SELFSERVICE_FLOWS_SETTINGS_UI_URL",
                "/relative",
                "not an absolute http(s) URL",
            ),
            (
                "PORTCULLIS_UI_THEME_COLORS",
                r#"{"primary":"red;} body{display:none"}"#,
                "ui.theme.colors.primary",
            ),
            (
                "PORTCULLIS_SERVE_PUBLIC_CORS_ALLOWED_ORIGINS",
                r#"["*"]"#,
                "cannot be combined with allow_credentials",
            ),
            (
                "PORTCULLIS_SERVE_ADMIN_CORS_ALLOWED_HEADERS",
                r#"["*"]"#,
                "serve.admin.cors.allowed_headers",
            ),
            (
                "PORTCULLIS_SESSION_COOKIE_SAME_SITE",
                "None",
                "None needs an https public URL",
            ),
            (
                "PORTCULLIS_TOKENS_COOKIES_SAME_SITE",
                "Loose",
                "expected Lax, Strict or None",
            ),
        ] {
            let err = Config::load(None, env(&[(key, value)]), true)
                .unwrap_err()
                .to_string();
            assert!(err.contains(complaint), "{key}={value}: {err}");
        }
    }

    #[test]
    fn durations_parse_the_go_way() {
        assert_eq!(
            Dur::parse("1h30m").map(|d| d.0),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            Dur::parse("500ms").map(|d| d.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(Dur::parse("24h").map(|d| d.to_string()), Some("24h".into()));
        assert!(Dur::parse("1 day").is_none());
        assert!(Dur::parse("").is_none());
    }

    #[test]
    fn env_overrides_scalars_and_arrays_as_json() {
        let cfg = Config::load(
            None,
            env(&[
                ("PORTCULLIS_SERVE_PUBLIC_PORT", "5000"),
                ("PORTCULLIS_DSN", "sqlite::memory:"),
                (
                    "PORTCULLIS_IDENTITY_SCHEMAS",
                    r#"[{"id":"x","url":"file:///tmp/x.json"}]"#,
                ),
                ("PORTCULLIS_SESSION_LIFESPAN", "2h"),
                ("PORTCULLIS_TEST_POSTGRES_URL", "ignored"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(cfg.serve.public.port, 5000);
        assert_eq!(cfg.identity.schemas[0].id, "x");
        assert_eq!(cfg.session.lifespan.0, Duration::from_secs(7200));
        assert_eq!(cfg.serve.public.base_url, "http://127.0.0.1:5000/");
    }

    #[test]
    fn unknown_env_key_is_an_error_naming_it() {
        let err =
            Config::load(None, env(&[("PORTCULLIS_SERVE_PUBLIK_PORT", "1")]), true).unwrap_err();
        assert!(
            err.to_string().contains("PORTCULLIS_SERVE_PUBLIK_PORT"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_key_and_bad_value_name_the_path() {
        let dir = std::env::temp_dir().join(format!("pc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.yml");
        std::fs::write(&f, "serve:\n  public:\n    prot: 1\n").unwrap();
        let err = Config::load(Some(f.to_str().unwrap()), vec![], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("serve.public.prot"), "{err}");
        std::fs::write(&f, "session:\n  lifespan: forever\n").unwrap();
        let err = Config::load(Some(f.to_str().unwrap()), vec![], true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("session.lifespan") && err.contains("24h"),
            "{err}"
        );
        std::fs::write(&f, "serve:\n  admin:\n    port: high\n").unwrap();
        let err = Config::load(Some(f.to_str().unwrap()), vec![], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("serve.admin.port"), "{err}");
    }

    #[test]
    fn production_mode_requires_secrets_and_https() {
        let err = Config::load(None, env(&[("PORTCULLIS_DSN", "sqlite::memory:")]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("serve.public.base_url"), "{err}");
        let err = Config::load(
            None,
            env(&[
                ("PORTCULLIS_DSN", "sqlite::memory:"),
                (
                    "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
                    "https://id.example.com/",
                ),
            ]),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secrets.default"), "{err}");
    }

    #[test]
    fn token_settings_are_checked_and_the_shared_secret_redacted() {
        let err = Config::load(None, env(&[("PORTCULLIS_TOKENS_ALGORITHM", "HS256")]), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokens.hs256_secret"), "{err}");
        let err = Config::load(None, env(&[("PORTCULLIS_TOKENS_ALGORITHM", "none")]), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokens.algorithm"), "{err}");
        for claim in ["token_type", "aud", "user_id", "sub"] {
            let tpl = format!(
                r#"{{"api":{{"ttl":"1m","claims":{{"{claim}":"identity.traits.email"}}}}}}"#
            );
            let err = Config::load(
                None,
                env(&[("PORTCULLIS_SESSION_WHOAMI_TOKENIZER_TEMPLATES", &tpl)]),
                true,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("claims.{claim}")), "{err}");
        }
        let secret = "a shared secret of more than 32 chars";
        let cfg = Config::load(
            None,
            env(&[
                ("PORTCULLIS_TOKENS_ALGORITHM", "HS256"),
                ("PORTCULLIS_TOKENS_HS256_SECRET", secret),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(cfg.tokens.issuer, "http://127.0.0.1:4433");
        assert!(!cfg.redacted_yaml().contains(secret));
    }

    #[test]
    fn dev_mode_defaults_to_an_embedded_sqlite_file() {
        let cfg = Config::load(None, vec![], true).unwrap();
        assert_eq!(cfg.dsn, "sqlite://portcullis.sqlite");
        assert_eq!(cfg.serve.public.port, 4433);
        assert_eq!(cfg.serve.admin.port, 4434);
    }
}
