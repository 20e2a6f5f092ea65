//! The admin port's guard. First against browsers: whatever the network, a web page must not
//! be able to drive the admin API (security review F3). Three checks before any handler:
//! - `Sec-Fetch-Site: cross-site` is refused: a browser says so on requests another site made;
//! - an `Origin` that is neither the admin URL's own nor listed in `serve.admin.cors` is
//!   refused (browsers send `Origin` on every cross-origin POST, even "simple" ones);
//! - the `Host` must be the admin URL's host (or a loopback name on the same port), so a DNS
//!   rebinding page cannot read the API under its own domain: 421 otherwise.
//!
//! Requests without these headers (curl, SDKs, backends) pass: the port is for servers.
//!
//! Then the admin API key, when `serve.admin.api_keys` lists any: `Authorization: Bearer
//! <key>` (the header Ory's SDKs send for an access token), judged by the core, which audits
//! a refusal; 401 with `WWW-Authenticate: Bearer` otherwise. Exempt are the health probes (an
//! orchestrator's liveness check has no key) and the Clerk face under `/v1`, whose SDKs send
//! their own `Bearer sk_…` secret key in the same header. A request that passes carries
//! [`AdminKeyId`], so handlers can name the key as the actor of what they change.

use crate::error::{ApiError, EdgeError};
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_core::audit::{Actor, Origin};

/// The admin API key a request was admitted with: its configured id, or `None` when no keys
/// are configured (or on the exempt paths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminKeyId(pub Option<String>);

impl AdminKeyId {
    /// The audit log's actor for what this request changes (handlers read it through
    /// [`crate::extract::Acting`]).
    pub fn actor(&self) -> Actor {
        Actor::Admin {
            key_id: self.0.clone(),
        }
    }
}

pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(e) = check(&st, &req) {
        tracing::warn!(reason = %e.reason(), "admin request refused");
        return if is_clerk(req.uri().path()) {
            crate::clerk::edge_refusal(&e).into_response()
        } else {
            e.into_response()
        };
    }
    let (mut parts, body) = req.into_parts();
    match admit(&st, &parts).await {
        Ok(key_id) => {
            parts.extensions.insert(AdminKeyId(key_id));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => {
            let mut resp = e.into_response();
            if resp.status() == axum::http::StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
                );
            }
            resp
        }
    }
}

fn is_clerk(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Paths an unauthenticated probe must reach.
fn is_health(path: &str) -> bool {
    matches!(
        path,
        "/health/alive" | "/health/ready" | "/admin/health/alive" | "/admin/health/ready"
    )
}

/// The admin API key check, by the core; the id of the key presented, if keys are configured.
async fn admit(st: &AppState, parts: &Parts) -> Result<Option<String>, ApiError> {
    let path = parts.uri.path();
    if is_health(path) || is_clerk(path) {
        return Ok(None);
    }
    let trust = st.core.config().serve.admin.trust_forwarded_headers;
    let origin = Origin {
        ip: crate::extract::client_ip(parts, trust).map(|ip| ip.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let request = format!("{} {path}", parts.method);
    Ok(st
        .core
        .admit_admin_request(bearer(&parts.headers), &request, &origin, st.core.now())
        .await?)
}

/// The credentials of `Authorization: Bearer <key>` (the scheme in any case, RFC 9110).
fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

fn check(st: &AppState, req: &Request) -> Result<(), EdgeError> {
    let h = req.headers();
    let cfg = &st.core.config().serve.admin;
    let base = url::Url::parse(&cfg.base_url).ok();
    if h.get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return Err(EdgeError::Forbidden(
            "The admin API refuses requests made by another web site (Sec-Fetch-Site: cross-site)."
                .into(),
        ));
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let own = base
            .as_ref()
            .map(|b| b.origin().ascii_serialization())
            .is_some_and(|o| o.eq_ignore_ascii_case(origin));
        let listed = cfg.cors.enabled
            && cfg.cors.allowed_origins.iter().any(|p| {
                crate::origin_matches(&p.to_ascii_lowercase(), &origin.to_ascii_lowercase())
            });
        if !own && !listed {
            return Err(EdgeError::Forbidden(format!(
                "The admin API refuses requests from the origin {:?}; list it in serve.admin.cors to allow it.",
                origin.chars().take(200).collect::<String>()
            )));
        }
    }
    if let (Some(host), Some(base)) = (h.get(header::HOST).and_then(|v| v.to_str().ok()), &base) {
        if !host_allowed(host, base) {
            return Err(EdgeError::MisdirectedRequest);
        }
    }
    Ok(())
}

/// The admin URL's host and port, or a loopback name with that port.
fn host_allowed(host: &str, base: &url::Url) -> bool {
    let Ok(given) = url::Url::parse(&format!("http://{host}/")) else {
        return false;
    };
    let port = base.port_or_known_default();
    let given_port = given
        .port()
        .or(port.filter(|_| given.port().is_none() && base.port().is_none()));
    if given_port != port {
        return false;
    }
    let given_host = given.host_str().unwrap_or("").to_ascii_lowercase();
    let base_host = base.host_str().unwrap_or("").to_ascii_lowercase();
    given_host == base_host || matches!(given_host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_must_name_the_admin_url_or_loopback_on_its_port() {
        let base = url::Url::parse("http://127.0.0.1:4434/").unwrap();
        assert!(host_allowed("127.0.0.1:4434", &base));
        assert!(host_allowed("localhost:4434", &base));
        assert!(host_allowed("[::1]:4434", &base));
        assert!(!host_allowed("rebind.attacker.example:4434", &base));
        assert!(!host_allowed("127.0.0.1:9999", &base));
        assert!(!host_allowed("127.0.0.1", &base));
        let named = url::Url::parse("https://admin.internal.example/").unwrap();
        assert!(host_allowed("admin.internal.example", &named));
        assert!(host_allowed("admin.internal.example:443", &named));
        assert!(!host_allowed("evil.example", &named));
    }
}
