//! Request extractors that answer bad input in the Kratos error format.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use portcullis_core::service::Caller;
use portcullis_core::Error;
use serde_json::Value;
use uuid::Uuid;

/// A JSON request body: `application/json`, within the configured size limit, well-formed.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !(ct.starts_with("application/json") || ct.contains("+json")) {
            return Err(ApiError(Error::api(
                415,
                None,
                format!("Content-Type {ct:?} is not supported here; send application/json."),
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::api(
                    413,
                    None,
                    "The request body exceeds the configured limit (serve.max_body_size).",
                ))
            } else {
                ApiError::bad_request(format!("The request body could not be read: {rej}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "The request body is empty; a JSON document is required.",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))
    }
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

/// The session token of the request: `X-Session-Token`, then the session cookie, then `Authorization: Bearer`.
pub fn session_token(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    if let Some(t) = headers
        .get("x-session-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    for raw in headers.get_all(header::COOKIE) {
        let Ok(raw) = raw.to_str() else { continue };
        for pair in raw.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == cookie_name && !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
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
        let session = match session_token(h, &core.config.session.cookie.name) {
            Some(t) => match core.authenticate(&t, core.now()).await {
                Ok(s) => Some(s),
                Err(Error::Internal(cause)) => return Err(ApiError(Error::Internal(cause))),
                Err(_) => None,
            },
            None => None,
        };
        let trust_proxy = core.config.serve.public.trust_forwarded_headers;
        let ip = h
            .get("x-forwarded-for")
            .filter(|_| trust_proxy)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|s| s.trim().to_string())
            .or_else(|| {
                parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
            });
        Ok(CallerCtx(Caller {
            session,
            has_cookies: h.contains_key(header::COOKIE),
            has_origin: h.contains_key(header::ORIGIN),
            ip,
            user_agent: h
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }))
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
