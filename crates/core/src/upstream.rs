//! The port through which the core talks to other servers: social sign-in providers
//! (discovery, keys, token exchange, userinfo) and flow web hooks. The core builds the
//! requests and reads the answers; the server sends them through its one guarded client
//! (timeouts, no redirects, no private addresses, bounded bodies), so no rule of outbound
//! HTTP lives twice.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// A method by its name, any case (a web hook's `method`).
    pub fn parse(name: &str) -> Option<HttpMethod> {
        Some(match name.to_ascii_uppercase().as_str() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            _ => return None,
        })
    }

    /// Whether requests of this method carry a body (GET and DELETE do not, as in Kratos).
    pub fn has_body(self) -> bool {
        matches!(self, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch)
    }
}

/// What a request carries.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    None,
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(&'static str, String)>),
    /// `application/json`, already serialised.
    Json(String),
}

/// One request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: HttpBody,
    /// `Authorization: Basic` with these (`client_secret_basic`).
    pub basic_auth: Option<(String, String)>,
    /// The URL is the operator's own, written in the configuration (a flow's web hook), not
    /// one a caller registered or a provider's document named: it may be on a private
    /// network, as the services a web hook calls usually are.
    pub configured_target: bool,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: HttpMethod::Get,
            url: url.into(),
            headers: vec![("accept".into(), "application/json".into())],
            body: HttpBody::None,
            basic_auth: None,
            configured_target: false,
        }
    }

    pub fn post_form(url: impl Into<String>, form: Vec<(&'static str, String)>) -> HttpRequest {
        HttpRequest {
            method: HttpMethod::Post,
            body: HttpBody::Form(form),
            ..HttpRequest::get(url)
        }
    }

    pub fn bearer(self, token: &str) -> HttpRequest {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The body, cut at the client's limit.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why no answer came: refused by the guard, unreachable, timed out. Safe to log, never shown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UpstreamError(pub String);

#[async_trait::async_trait]
pub trait Upstream: Send + Sync {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, UpstreamError>;
}

/// The upstream of a core that talks to no one (tests of other features, tools): every
/// request fails.
pub struct Offline;

#[async_trait::async_trait]
impl Upstream for Offline {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, UpstreamError> {
        Err(UpstreamError(format!(
            "no outbound client to reach {}",
            req.url
        )))
    }
}
