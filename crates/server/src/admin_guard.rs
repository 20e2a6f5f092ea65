//! The admin port's guard against browsers: whatever the network, a web page must not be able
//! to drive the admin API (security review F3). Three checks before any handler:
//! - `Sec-Fetch-Site: cross-site` is refused: a browser says so on requests another site made;
//! - an `Origin` that is neither the admin URL's own nor listed in `serve.admin.cors` is
//!   refused (browsers send `Origin` on every cross-origin POST, even "simple" ones);
//! - the `Host` must be the admin URL's host (or a loopback name on the same port), so a DNS
//!   rebinding page cannot read the API under its own domain: 421 otherwise.
//!
//! Requests without these headers (curl, SDKs, backends) pass: the port is for servers.

use crate::error::EdgeError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match check(&st, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::warn!(reason = e.reason(), "admin request refused");
            if req.uri().path().starts_with("/v1/") {
                crate::clerk::edge_refusal(&e).into_response()
            } else {
                e.into_response()
            }
        }
    }
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
