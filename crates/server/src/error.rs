//! The Kratos faces' error mapping: the one place that turns a core error into a status code
//! and the herodot envelope `{"error": {code, status, reason, message, id?, details?}, …}`
//! (with top-level siblings such as `use_flow_id` and `redirect_browser_to`). Internal causes
//! are logged, never returned. The browser (HTML redirect) mapping is `browser::html_error`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::flow::Flow;
use portcullis_core::identity::{rfc3339, Identity};
use portcullis_core::selfservice::SubmitError;
use portcullis_core::service::Core;
use portcullis_core::Error;
use serde_json::{json, Map, Value};

pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<portcullis_core::store::StoreError> for ApiError {
    fn from(e: portcullis_core::store::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl ApiError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ApiError(Error::bad_request(reason))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Error::Internal(cause) = &self.0 {
            tracing::error!(%cause, "internal error");
        }
        let h = Herodot::of(&self.0);
        with_retry_after(&self.0, (h.status, Json(h.body())).into_response())
    }
}

/// `Retry-After` on a throttled or busy answer, whatever the face.
pub fn with_retry_after(e: &Error, mut resp: Response) -> Response {
    if let Error::RateLimited { retry_after } | Error::Busy { retry_after } = e {
        if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// What the HTTP edge refuses before the core sees a request.
#[derive(Debug)]
pub enum EdgeError {
    BadRequest(String),
    MethodNotAllowed,
    UnsupportedMediaType(String),
    /// The body is larger than the limit the configuration key names.
    PayloadTooLarge(&'static str),
    Forbidden(String),
    /// The `Host` is not this server's (DNS rebinding): 421.
    MisdirectedRequest,
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EdgeError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            EdgeError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::Forbidden(_) => StatusCode::FORBIDDEN,
            EdgeError::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    pub fn reason(&self) -> std::borrow::Cow<'_, str> {
        match self {
            EdgeError::BadRequest(r)
            | EdgeError::UnsupportedMediaType(r)
            | EdgeError::Forbidden(r) => r.into(),
            EdgeError::MisdirectedRequest => {
                "The Host header does not name this server (serve.admin.base_url).".into()
            }
            EdgeError::MethodNotAllowed => {
                "The HTTP method is not allowed on this resource.".into()
            }
            EdgeError::PayloadTooLarge(key) => {
                format!("The request body exceeds the configured limit ({key}).").into()
            }
        }
    }

    /// The herodot error object, as the error store keeps it for a browser's error page.
    pub fn object(&self) -> Value {
        Herodot::plain(self.status(), Some(self.reason().into_owned())).object()
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let h = Herodot::plain(self.status(), Some(self.reason().into_owned()));
        (h.status, Json(h.body())).into_response()
    }
}

/// A failed self-service submit, answered in JSON: the flow with its messages (400), or the
/// error envelope.
pub fn submit_error_json(core: &Core, e: SubmitError) -> Response {
    match e {
        SubmitError::FlowInvalid { flow, identity } => (
            StatusCode::BAD_REQUEST,
            Json(flow_json(core, &flow, identity.as_deref())),
        )
            .into_response(),
        SubmitError::Refused(e) => ApiError(e).into_response(),
    }
}

fn flow_json(core: &Core, flow: &Flow, identity: Option<&Identity>) -> Value {
    core.flow_response(flow, identity)
}

/// The herodot error object (the value under `error`), as the error store keeps it.
pub fn error_object(e: &Error) -> Value {
    Herodot::of(e).object()
}

/// A kept error for `/self-service/errors?id=`, or one of Kratos' stubs (`stub:500`,
/// `stub:404`, `stub:400`) for UI work.
pub async fn stored_error(core: &Core, id: &str) -> Result<Value, Error> {
    let stub = match id {
        "stub:500" => Some(Error::Internal("This is a stub error.".into())),
        "stub:404" => Some(Error::not_found("This is a stub error.")),
        "stub:400" => Some(Error::bad_request("This is a stub error.")),
        _ => None,
    };
    match stub {
        Some(e) => {
            let at = rfc3339(core.now());
            Ok(json!({ "id": id, "error": error_object(&e), "created_at": at, "updated_at": at }))
        }
        None => core.flow_error(id).await,
    }
}

/// One error in Kratos' terms.
struct Herodot {
    status: StatusCode,
    id: Option<&'static str>,
    reason: Option<String>,
    details: Option<Value>,
    /// Top-level siblings of `error`.
    extra: Option<Value>,
}

impl Herodot {
    fn plain(status: StatusCode, reason: Option<String>) -> Self {
        Herodot {
            status,
            id: None,
            reason,
            details: None,
            extra: None,
        }
    }

    fn with_id(status: StatusCode, id: &'static str, e: &Error) -> Self {
        Herodot {
            id: Some(id),
            ..Herodot::plain(status, Some(e.to_string()))
        }
    }

    fn of(e: &Error) -> Self {
        let reason = Some(e.to_string());
        match e {
            Error::BadRequest { .. } => Herodot::plain(StatusCode::BAD_REQUEST, reason),
            Error::IdentityInvalid { errors, .. } => {
                let messages: Vec<Value> = errors
                    .iter()
                    .map(|(node, t)| json!({ "instance_ptr": node.as_deref().map(|n| format!("#/{}", n.replace('.', "/"))), "messages": [t] }))
                    .collect();
                Herodot {
                    details: Some(json!({ "messages": messages })),
                    ..Herodot::plain(StatusCode::BAD_REQUEST, reason)
                }
            }
            Error::NotFound { .. } => Herodot::plain(StatusCode::NOT_FOUND, reason),
            Error::Conflict { .. } => Herodot::plain(StatusCode::CONFLICT, reason),
            Error::SessionInactive => {
                Herodot::with_id(StatusCode::UNAUTHORIZED, "session_inactive", e)
            }
            Error::AlreadySignedIn => {
                Herodot::with_id(StatusCode::BAD_REQUEST, "session_already_available", e)
            }
            Error::IdentityMismatch => {
                Herodot::with_id(StatusCode::FORBIDDEN, "security_identity_mismatch", e)
            }
            Error::CsrfViolation { hint } => Herodot {
                details: hint.map(|hint| {
                    json!({
                        "docs": "https://www.ory.sh/kratos/docs/debug/csrf",
                        "hint": hint,
                        "reject_reason": hint,
                    })
                }),
                ..Herodot::with_id(StatusCode::FORBIDDEN, "security_csrf_violation", e)
            },
            Error::FlowExpired {
                since,
                expired_at,
                replacement,
                restart_url,
                ..
            } => {
                let since = since.whole_nanoseconds() as i64;
                let expired_at = rfc3339(*expired_at);
                let (details, extra) = match replacement {
                    Some(id) => (
                        json!({ "id": id, "since": since, "expired_at": expired_at }),
                        json!({ "use_flow_id": id, "since": since, "expired_at": expired_at }),
                    ),
                    None => {
                        let mut details = json!({ "since": since, "expired_at": expired_at });
                        if let (Some(url), Some(o)) = (restart_url, details.as_object_mut()) {
                            o.insert("redirect_to".into(), json!(url));
                        }
                        (details, json!({ "since": since, "expired_at": expired_at }))
                    }
                };
                Herodot {
                    details: Some(details),
                    extra: Some(extra),
                    ..Herodot::with_id(StatusCode::GONE, "self_service_flow_expired", e)
                }
            }
            Error::RefreshRequired {
                redirect_browser_to,
            } => Herodot {
                details: Some(json!({ "redirect_browser_to": redirect_browser_to })),
                extra: Some(json!({ "redirect_browser_to": redirect_browser_to })),
                ..Herodot::with_id(StatusCode::FORBIDDEN, "session_refresh_required", e)
            },
            Error::Aal2Required {
                redirect_browser_to,
            } => Herodot {
                details: Some(json!({ "redirect_browser_to": redirect_browser_to })),
                extra: Some(json!({ "redirect_browser_to": redirect_browser_to })),
                ..Herodot::with_id(StatusCode::FORBIDDEN, "session_aal2_required", e)
            },
            Error::Aal1Required => {
                Herodot::with_id(StatusCode::UNAUTHORIZED, "session_aal1_required", e)
            }
            Error::AalAlreadyFulfilled => {
                Herodot::with_id(StatusCode::UNAUTHORIZED, "session_aal_already_fulfilled", e)
            }
            Error::BrowserLocationChangeRequired {
                redirect_browser_to,
            } => Herodot {
                details: Some(json!({ "redirect_browser_to": redirect_browser_to })),
                extra: Some(json!({ "redirect_browser_to": redirect_browser_to })),
                ..Herodot::with_id(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "browser_location_change_required",
                    e,
                )
            },
            Error::AddressNotVerified { continue_with } => Herodot {
                details: Some(json!({ "continue_with": continue_with })),
                ..Herodot::with_id(
                    StatusCode::FORBIDDEN,
                    "session_verified_address_required",
                    e,
                )
            },
            Error::FlowDisabled { .. } => {
                Herodot::with_id(StatusCode::BAD_REQUEST, "self_service_flow_disabled", e)
            }
            Error::ReturnToForbidden { .. } => Herodot::with_id(
                StatusCode::BAD_REQUEST,
                "self_service_flow_return_to_forbidden",
                e,
            ),
            Error::LogoutTokenMismatch => Herodot::plain(StatusCode::FORBIDDEN, reason),
            Error::RateLimited { .. } => {
                Herodot::with_id(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", e)
            }
            Error::Busy { .. } => Herodot::plain(StatusCode::SERVICE_UNAVAILABLE, reason),
            Error::HookRefused { .. } => Herodot::plain(StatusCode::BAD_REQUEST, reason),
            Error::HookFailed => Herodot::plain(StatusCode::BAD_GATEWAY, reason),
            // herodot's ErrUnauthorized, as Ory's API-key-protected admin APIs answer.
            Error::AdminKeyRefused { .. } => Herodot::plain(StatusCode::UNAUTHORIZED, reason),
            // A bad access token on a Kratos endpoint is simply no session.
            Error::Token(_) => Herodot::of(&Error::SessionInactive),
            Error::Internal(_) => Herodot::plain(StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }

    fn object(&self) -> Value {
        let code = self.status.as_u16();
        let mut v = Map::new();
        v.insert("code".into(), json!(code));
        v.insert("status".into(), json!(status_text(code)));
        if let Some(r) = &self.reason {
            v.insert("reason".into(), json!(r));
        }
        v.insert("message".into(), json!(message_for(code)));
        if let Some(id) = self.id {
            v.insert("id".into(), json!(id));
        }
        if let Some(d) = &self.details {
            v.insert("details".into(), d.clone());
        }
        Value::Object(v)
    }

    fn body(&self) -> Value {
        let mut body = json!({ "error": self.object() });
        if let (Some(Value::Object(extra)), Some(obj)) = (&self.extra, body.as_object_mut()) {
            obj.extend(extra.clone());
        }
        body
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

fn message_for(code: u16) -> &'static str {
    match code {
        400 => "The request was malformed or contained invalid parameters",
        401 => "The request could not be authorized",
        403 => "The requested action was forbidden",
        404 => "The requested resource could not be found",
        405 => "The requested method is not allowed on this resource",
        409 => "The resource could not be created due to a conflict",
        410 => "The requested resource is no longer available",
        413 => "The request body is too large",
        415 => "The request's content type is not supported",
        421 => "The request was directed at a server that is not able to produce a response",
        422 => "The request was well-formed but was unable to be followed due to semantic errors",
        429 => "Too many requests have been sent; please wait and retry",
        502 => "A service this request depends on did not answer as it should",
        503 => "The service is temporarily unavailable; please retry",
        _ => "An internal server error occurred, please contact the system administrator",
    }
}
