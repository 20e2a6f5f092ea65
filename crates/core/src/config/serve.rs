//! `serve`: the public and admin ports, their base URLs, CORS, the admin API keys, and the
//! body size limits.

use super::{ByteSize, ConfigError};
use crate::admin_keys::{valid_id, AdminApiKey};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub public: EndpointConfig,
    pub admin: AdminEndpointConfig,
    /// Largest request body accepted on either port.
    pub max_body_size: ByteSize,
    /// Largest body of a self-service submit (`/self-service/…`), which anyone may send: a
    /// form of traits and a password needs far less than `max_body_size` (security review F6).
    pub max_submit_size: ByteSize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            public: EndpointConfig::on_port(4433),
            admin: AdminEndpointConfig::default(),
            max_body_size: ByteSize::mib(1),
            max_submit_size: ByteSize(64 << 10),
        }
    }
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

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig::on_port(0)
    }
}

impl EndpointConfig {
    fn on_port(port: u16) -> Self {
        EndpointConfig {
            host: "127.0.0.1".into(),
            port,
            base_url: String::new(),
            trust_forwarded_headers: false,
            cors: CorsConfig::default(),
        }
    }
}

/// `serve.admin`: the same settings as `serve.public`, and the admin API keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminEndpointConfig {
    pub host: String,
    pub port: u16,
    /// Defaults to `http://<host>:<port>/`.
    pub base_url: String,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_forwarded_headers: bool,
    pub cors: CorsConfig,
    /// When any is listed, every admin request (health probes and the Clerk `/v1` face, which
    /// has its own keys, excepted) must send one as `Authorization: Bearer <key>`. Only hashes
    /// are configured ([`crate::admin_keys`]).
    pub api_keys: Vec<AdminApiKey>,
}

impl Default for AdminEndpointConfig {
    fn default() -> Self {
        let EndpointConfig {
            host,
            port,
            base_url,
            trust_forwarded_headers,
            cors,
        } = EndpointConfig::on_port(4434);
        AdminEndpointConfig {
            host,
            port,
            base_url,
            trust_forwarded_headers,
            cors,
            api_keys: vec![],
        }
    }
}

impl AdminEndpointConfig {
    fn validate_keys(&self) -> Result<(), ConfigError> {
        for (i, k) in self.api_keys.iter().enumerate() {
            if !valid_id(&k.id) {
                return Err(ConfigError::Invalid(format!(
                    "serve.admin.api_keys.{i}.id: {:?} must be 1 to 64 of A-Z a-z 0-9 . _ -",
                    k.id.chars().take(80).collect::<String>()
                )));
            }
            let earlier = self.api_keys.get(..i).unwrap_or_default();
            if earlier.iter().any(|e| e.id == k.id) {
                return Err(ConfigError::Invalid(format!(
                    "serve.admin.api_keys.{i}.id: {:?} is listed twice",
                    k.id
                )));
            }
            if earlier.iter().any(|e| e.hash == k.hash) {
                return Err(ConfigError::Invalid(format!(
                    "serve.admin.api_keys.{i}.hash: the same key is listed twice"
                )));
            }
        }
        Ok(())
    }
}

/// The base URL, when not set: where a port is reachable from the machine itself.
fn fill_base_url(host: &str, port: u16, base_url: &mut String) {
    if base_url.is_empty() {
        let host = match host {
            "0.0.0.0" | "" => "127.0.0.1".to_string(),
            "::" | "[::]" => "[::1]".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        *base_url = format!("http://{host}:{port}/");
    }
}

/// Parses a base URL, then gives it its trailing `/` (URLs are joined onto it).
fn finish_base_url(key: &str, base_url: &mut String) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(base_url).map_err(|e| {
        ConfigError::Invalid(format!(
            "{key}.base_url: {base_url:?} is not an absolute URL: {e}"
        ))
    })?;
    if !base_url.ends_with('/') {
        base_url.push('/');
    }
    Ok(parsed)
}

impl ServeConfig {
    /// Fills and checks the base URLs; the rest of the configuration builds on the public one.
    pub(super) fn finish_base_urls(&mut self, dev: bool) -> Result<(), ConfigError> {
        let p = &mut self.public;
        fill_base_url(&p.host, p.port, &mut p.base_url);
        let parsed = finish_base_url("serve.public", &mut p.base_url)?;
        if !dev && parsed.scheme() != "https" {
            return Err(ConfigError::Invalid(format!(
                "serve.public.base_url: {:?} is plain http; session cookies must be Secure outside dev mode. \
                 Use an https URL (TLS at a proxy is fine) or run with --dev",
                p.base_url
            )));
        }
        let a = &mut self.admin;
        fill_base_url(&a.host, a.port, &mut a.base_url);
        finish_base_url("serve.admin", &mut a.base_url)?;
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.public.cors.validate("public")?;
        self.admin.cors.validate("admin")?;
        self.admin.validate_keys()?;
        if self.max_submit_size.0 > self.max_body_size.0 {
            return Err(ConfigError::Invalid(
                "serve.max_submit_size: is larger than serve.max_body_size".into(),
            ));
        }
        Ok(())
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
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            enabled: false,
            allowed_origins: vec![],
            allowed_methods: strings(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
            allowed_headers: strings(&[
                "Authorization",
                "Content-Type",
                "Accept",
                "X-Session-Token",
                "X-CSRF-Token",
            ]),
            exposed_headers: strings(&["Content-Type"]),
            allow_credentials: true,
            max_age: 0,
        }
    }
}

impl CorsConfig {
    fn validate(&self, port: &str) -> Result<(), ConfigError> {
        // Browsers never send credentials to a wildcard; echoing every origin instead
        // would let any site act as the signed-in user.
        for (key, list) in [
            ("allowed_origins", &self.allowed_origins),
            ("allowed_methods", &self.allowed_methods),
            ("allowed_headers", &self.allowed_headers),
            ("exposed_headers", &self.exposed_headers),
        ] {
            if self.allow_credentials && list.iter().any(|v| v == "*") {
                return Err(ConfigError::Invalid(format!(
                    "serve.{port}.cors.{key}: \"*\" cannot be combined with allow_credentials: true; list the values"
                )));
            }
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
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
        Ok(())
    }
}
