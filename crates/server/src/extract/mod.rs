//! Request extractors that answer bad input in the Kratos error format.

use crate::error::{ApiError, EdgeError};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use portcullis_core::audit::{Actor, By, Origin};
use portcullis_core::identity::Identity;
use portcullis_core::service::{Caller, Core};
use portcullis_core::session::Session;
use portcullis_core::Error;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

mod submit;
pub use submit::SubmitBody;

/// A JSON request body: `application/json`, within the configured size limit, well-formed.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = EdgeError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = content_type(req.headers());
        if !is_json_media_type(&ct) {
            return Err(EdgeError::UnsupportedMediaType(format!(
                "Content-Type {ct:?} is not supported here; send application/json."
            )));
        }
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(EdgeError::BadRequest(
                "The request body is empty; a JSON document is required.".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| EdgeError::BadRequest(format!("The request body is not valid JSON: {e}")))
    }
}

/// `application/json` or `application/<anything>+json` (such as `json-patch+json`), judged on
/// the media type's essence alone. A substring test would take `text/plain;+json`, which
/// browsers send cross-site without a preflight (security review F3).
pub(crate) fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => {
            sub == "json"
                || sub
                    .strip_suffix("+json")
                    .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        }
        _ => false,
    }
}

pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The body within `serve.max_body_size` (413 beyond it); each face wraps the error in its
/// own format.
pub(crate) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, EdgeError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            EdgeError::PayloadTooLarge("serve.max_body_size")
        } else {
            EdgeError::BadRequest(format!("The request body could not be read: {rej}"))
        }
    })
}

/// Most fields a form may have, and most dotted segments in a name: generous for any
/// identity schema, and a bound on the work (and the nesting depth) a request can cause.
const FORM_MAX_FIELDS: usize = 256;
const FORM_MAX_DEPTH: usize = 16;

/// `a.b=1&c=2` → `{"a":{"b":"1"},"c":"2"}`; the first value of a repeated name wins.
pub fn form_to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut root = serde_json::Map::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if k.is_empty() || !seen.insert(k.to_string()) {
            continue;
        }
        if seen.len() > FORM_MAX_FIELDS {
            return Err(format!("The form has more than {FORM_MAX_FIELDS} fields."));
        }
        let parts: Vec<&str> = k.split('.').collect();
        if parts.len() > FORM_MAX_DEPTH {
            return Err(format!(
                "The form field name {:?} has more than {FORM_MAX_DEPTH} dotted parts.",
                k.chars().take(64).collect::<String>()
            ));
        }
        insert_path(&mut root, &parts, Value::String(v.into_owned()));
    }
    Ok(Value::Object(root))
}

fn insert_path(obj: &mut serde_json::Map<String, Value>, path: &[&str], v: Value) {
    match path {
        [] => {}
        [last] => {
            obj.insert(last.to_string(), v);
        }
        [first, rest @ ..] => {
            let slot = obj
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if !slot.is_object() {
                *slot = Value::Object(Default::default());
            }
            if let Value::Object(next) = slot {
                insert_path(next, rest, v);
            }
        }
    }
}

/// Kratos' content negotiation: JSON when the body is JSON or `Accept` prefers
/// `application/json` over `text/html`: by q, then by how specifically each is named
/// (`application/json, */*` means JSON); a full tie, or no `Accept`, means HTML.
pub fn wants_json(headers: &HeaderMap) -> bool {
    if content_type(headers).starts_with("application/json") {
        return true;
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // The q of the most specific range that matches each offer.
    let q_for = |ty: &str, sub: &str| -> (u8, f32) {
        let mut best: Option<(u8, f32)> = None;
        for range in accept.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (t, s) = media.split_once('/').unwrap_or((media.as_str(), ""));
            let specificity = match (t, s) {
                (t, s) if t == ty && s == sub => 3,
                (t, "*") if t == ty => 2,
                ("*", "*") => 1,
                _ => continue,
            };
            if best.is_none_or(|(sp, _)| specificity > sp) {
                best = Some((specificity, q));
            }
        }
        best.unwrap_or((0, 0.0))
    };
    let (json_spec, json_q) = q_for("application", "json");
    let (html_spec, html_q) = q_for("text", "html");
    json_q > 0.0 && (json_q > html_q || (json_q == html_q && json_spec > html_spec))
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    cookies(headers, name).next()
}

/// Every non-empty value of the cookie `name`, in the order the browser sent them (a browser
/// sends one per matching domain and path, so there can be several).
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .filter(move |(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// Query-string parameters; malformed ones get a Kratos 400 instead of axum's plain text.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| {
                ApiError::bad_request(format!("The query string is invalid: {}", e.body_text()))
            })
    }
}

pub fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::bad_request(format!("The {what} {raw:?} is not a valid UUID.")))
}

/// How a request presents its session.
pub enum Presented<'a> {
    /// `X-Session-Token` or `Authorization: Bearer`: one token.
    Token(&'a str),
    /// Session cookies: usually one, several when another domain or path planted its own.
    Cookies(Vec<&'a str>),
    None,
}

/// The session of the request: `X-Session-Token`, then the session cookies, then
/// `Authorization: Bearer`.
pub fn presented_session<'a>(headers: &'a HeaderMap, cookie_name: &'a str) -> Presented<'a> {
    if let Some(t) = headers
        .get("x-session-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Presented::Token(t);
    }
    let mut jar: Vec<&str> = vec![];
    for c in cookies(headers, cookie_name) {
        if !jar.contains(&c) {
            jar.push(c);
        }
    }
    if !jar.is_empty() {
        return Presented::Cookies(jar);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map_or(Presented::None, Presented::Token)
}

/// The valid session of the request, if it presents one (the rules for several cookies are
/// the core's, see [`Core::authenticate_cookies`]).
pub async fn session_of(
    core: &Core,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<(Session, Identity), Error> {
    match presented_session(headers, &core.config().session.cookie.name) {
        Presented::Token(t) => core.authenticate(t, now).await,
        Presented::Cookies(jar) => core.authenticate_cookies(&jar, now).await,
        Presented::None => Err(Error::SessionInactive),
    }
}

/// The caller of a public endpoint, with its session if the request carries a valid one.
pub struct CallerCtx(pub Caller);

impl FromRequestParts<AppState> for CallerCtx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let core = &state.core;
        let h = &parts.headers;
        let config = core.config();
        let session = match session_of(core, h, core.now()).await {
            Ok(s) => Some(s),
            Err(Error::Internal(cause)) => return Err(ApiError(Error::Internal(cause))),
            Err(_) => None,
        };
        let ip =
            client_ip(parts, config.serve.public.trust_forwarded_headers).map(|ip| ip.to_string());
        let csrf_secret = core.browser_csrf_secret(
            session.as_ref().map(|(s, _)| s),
            cookies(h, config.csrf_cookie_name()),
        );
        Ok(CallerCtx(Caller {
            csrf_secret,
            csrf_header: h
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            session,
            has_cookies: h.contains_key(header::COOKIE),
            has_origin: h.contains_key(header::ORIGIN),
            ip,
            user_agent: h
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            locale: caller_locale(h),
            request: if core.has_web_hooks() {
                request_info(parts, core)
            } else {
                Default::default()
            },
        }))
    }
}

/// The request as a flow's web hooks see it: the allow-listed headers, and the cookies but
/// the credentials among them (the session's, the anti-CSRF one, the token cookies).
pub(crate) fn request_info(parts: &Parts, core: &Core) -> portcullis_core::service::RequestInfo {
    use portcullis_core::selfservice::web_hook::HEADER_ALLOWLIST;
    let config = core.config();
    let h = &parts.headers;
    let headers = HEADER_ALLOWLIST
        .iter()
        .flat_map(|name| {
            h.get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect();
    let secret = [
        config.session.cookie.name.as_str(),
        config.csrf_cookie_name(),
        config.tokens.cookies.access_name.as_str(),
        config.tokens.cookies.refresh_name.as_str(),
        // Clerk's Frontend API client: it holds session tokens.
        "__client",
    ];
    let cookies = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| !secret.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .trim_start_matches('/');
    portcullis_core::service::RequestInfo {
        method: parts.method.to_string(),
        url: format!("{}{path}", core.public_url()),
        headers,
        cookies,
    }
}

/// The language messages for this caller are written in: the hosted UI's language cookie,
/// else `Accept-Language`.
fn caller_locale(h: &HeaderMap) -> portcullis_core::courier::Locale {
    use portcullis_core::courier::Locale;
    let chosen = cookies(h, crate::ui::LANG_COOKIE)
        .next()
        .map(str::to_string);
    let accept = h
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    chosen
        .or(accept)
        .map_or(Locale::En, |t| Locale::from_tag(&t))
}

/// The client's address: the peer, or with `trust_forwarded_headers` the address the proxy in
/// front of us saw, which is the **rightmost** `X-Forwarded-For` entry (the one that proxy
/// appended). Entries to its left are whatever the client chose to send, so they are never
/// believed (security review F16).
pub fn client_ip(parts: &Parts, trust_forwarded: bool) -> Option<std::net::IpAddr> {
    let forwarded = trust_forwarded
        .then(|| parts.headers.get_all("x-forwarded-for").iter().next_back())
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|s| s.trim().parse().ok());
    forwarded.or_else(|| {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

/// The client's address as an extractor (see [`client_ip`]).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let trust = state.core.config().serve.public.trust_forwarded_headers;
        Ok(ClientAddr(client_ip(parts, trust)))
    }
}

/// Who is acting on the admin or Clerk face, for the audit records of the changes it makes:
/// the key its guard accepted (the guard puts the [`Actor`] into the request's extensions; the
/// admin port without API keys is `Admin { key_id: None }`) and where the request came from.
pub struct Acting(pub By);

impl FromRequestParts<AppState> for Acting {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The Clerk face's key (set after the admin guard) wins over the admin key.
        let actor = parts
            .extensions
            .get::<Actor>()
            .cloned()
            .or_else(|| {
                parts
                    .extensions
                    .get::<crate::admin_guard::AdminKeyId>()
                    .map(crate::admin_guard::AdminKeyId::actor)
            })
            .unwrap_or(Actor::Admin { key_id: None });
        // Both faces live on the admin port.
        let trust = state.core.config().serve.admin.trust_forwarded_headers;
        let origin = Origin {
            ip: client_ip(parts, trust).map(|ip| ip.to_string()),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        Ok(Acting(By { actor, origin }))
    }
}

/// The full URL of the request as the client sent it, for `request_url`.
pub fn request_url(public_url: &str, parts_uri: &axum::http::Uri) -> String {
    let base = public_url.trim_end_matches('/');
    format!(
        "{base}{}",
        parts_uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    )
}

/// A yes/no query parameter (`?refresh=true`), as Kratos reads it.
pub fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(a: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(a).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn negotiation_prefers_json_only_when_asked_for_it() {
        for (a, json) in [
            ("application/json", true),
            ("application/json, text/plain, */*", true), // axios' default
            (
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                false,
            ), // Chromium
            ("*/*", false),
            ("text/html, application/json", false),
            ("application/json;q=0.5, text/html;q=0.4", true),
            ("application/*", true),
            ("text/*, application/json;q=0", false),
            ("", false),
        ] {
            assert_eq!(wants_json(&accept(a)), json, "Accept: {a}");
        }
        assert!(!wants_json(&HeaderMap::new()));
        let mut h = accept("text/html");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(wants_json(&h), "a JSON body is a JSON request");
    }

    #[test]
    fn forms_nest_dotted_names_within_bounds() {
        let v =
            form_to_json(b"traits.name.first=Ada&traits.email=a%40b.c&method=password&method=x")
                .unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({ "traits": { "name": { "first": "Ada" }, "email": "a@b.c" }, "method": "password" })
        );
        let deep = format!("{}=1", vec!["a"; 17].join("."));
        assert!(form_to_json(deep.as_bytes()).is_err());
        let wide: String = (0..300).map(|i| format!("f{i}=1&")).collect();
        assert!(form_to_json(wide.as_bytes()).is_err());
        // A name that is both a value and a parent ends up a parent.
        let v = form_to_json(b"a=1&a.b=2").unwrap_or_default();
        assert_eq!(v, serde_json::json!({ "a": { "b": "2" } }));
    }
}
