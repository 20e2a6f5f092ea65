//! The port through which the core talks to other servers: social sign-in providers
//! (discovery, keys, token exchange, userinfo) and, next, flow web hooks. The core builds the
//! requests and reads the answers; the server sends them through its one guarded client
//! (timeouts, no redirects, no private addresses, bounded bodies), so no rule of outbound
//! HTTP lives twice.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// One request: `form` is sent as `application/x-www-form-urlencoded` (POST).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub form: Vec<(&'static str, String)>,
    /// `Authorization: Basic` with these (`client_secret_basic`).
    pub basic_auth: Option<(String, String)>,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: HttpMethod::Get,
            url: url.into(),
            headers: vec![("accept", "application/json".into())],
            form: vec![],
            basic_auth: None,
        }
    }

    pub fn post_form(url: impl Into<String>, form: Vec<(&'static str, String)>) -> HttpRequest {
        HttpRequest {
            method: HttpMethod::Post,
            form,
            ..HttpRequest::get(url)
        }
    }

    pub fn bearer(mut self, token: &str) -> HttpRequest {
        self.headers
            .push(("authorization", format!("Bearer {token}")));
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
