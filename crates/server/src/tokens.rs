//! The token face on the public port: simplejwt's obtain/refresh/verify/blacklist endpoints
//! (paths configurable), an optional cookie mode, and the JWKS.
//!
//! Errors here use simplejwt's (Django REST framework's) shapes, not the Kratos envelope:
//! `{"detail": …, "code": "token_not_valid"}` for bad tokens, field errors for missing fields.

use crate::error::EdgeError;
use crate::extract::cookie;
use crate::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::config::Config;
use portcullis_core::service::Caller;
use portcullis_core::tokens::{ObtainRequest, TokenError, TokenPair};
use portcullis_core::Error;
use serde_json::{json, Map, Value};

pub fn router(config: &Config) -> Router<AppState> {
    let p = &config.tokens.paths;
    // Beside obtain: tokens for the browser's own session (`/api/token/session/`).
    let session = format!("{}/session/", p.obtain.trim_end_matches('/'));
    let mut r = Router::new()
        .route(&session, get(session_csrf).post(session_tokens))
        .route(&p.obtain, post(obtain))
        .route(&p.refresh, post(refresh))
        .route(&p.verify, post(verify))
        .route(&p.blacklist, post(blacklist));
    if config.tokens.cookies.enabled {
        r = r
            .route(&p.logout, post(logout))
            .route_layer(axum::middleware::from_fn_with_state(
                config.serve.public.clone(),
                same_site_only,
            ));
    }
    r.route("/.well-known/jwks.json", get(jwks))
}

/// In cookie mode these endpoints set and use cookies, so a page of another site must not be
/// able to post to them (login CSRF: the victim's browser would get the attacker's tokens).
/// SameSite does not protect an endpoint that *sets* cookies (security review F7). A
/// request a browser makes for another site says so (`Sec-Fetch-Site: cross-site`, or an
/// `Origin` that is neither ours nor listed in `serve.public.cors`), and a cross-site form
/// cannot send JSON without a preflight: forms are refused here in cookie mode.
async fn same_site_only(
    State(public): State<portcullis_core::config::EndpointConfig>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let h = req.headers();
    let cross_site = h
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    let foreign_origin = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| !crate::own_or_listed_origin(&public, o));
    if cross_site || foreign_origin {
        return SjError::Edge(EdgeError::Forbidden(
            "Cross-site requests are not allowed on the token endpoints in cookie mode.".into(),
        ))
        .into_response();
    }
    // A body must be JSON (a form is what a cross-site page can post); no body at all, as a
    // cookie-only refresh sends, is fine: a page's body-less POST still carries its Origin.
    let ct = crate::extract::content_type(h);
    if !ct.is_empty() && !crate::extract::is_json_media_type(&ct) {
        return SjError::Edge(EdgeError::UnsupportedMediaType(
            "In cookie mode the token endpoints take application/json only.".into(),
        ))
        .into_response();
    }
    next.run(req).await
}

/// A simplejwt-face error: the one place that maps core errors to DRF's shapes.
pub enum SjError {
    Core(Error),
    Edge(EdgeError),
}

impl From<Error> for SjError {
    fn from(e: Error) -> Self {
        SjError::Core(e)
    }
}

impl From<EdgeError> for SjError {
    fn from(e: EdgeError) -> Self {
        SjError::Edge(e)
    }
}

impl IntoResponse for SjError {
    fn into_response(self) -> Response {
        let detail = |status: StatusCode, reason: String| (status, json!({ "detail": reason }));
        let (status, body) = match self {
            SjError::Edge(e) => detail(e.status(), e.reason().to_string()),
            SjError::Core(Error::Token(TokenError::Missing(fields))) => {
                let m: Map<String, Value> = fields
                    .into_iter()
                    .map(|f| (f, json!(["This field is required."])))
                    .collect();
                (StatusCode::BAD_REQUEST, Value::Object(m))
            }
            SjError::Core(Error::Token(TokenError::BadCredentials)) => (
                StatusCode::UNAUTHORIZED,
                json!({ "detail": "No active account found with the given credentials" }),
            ),
            SjError::Core(Error::Token(TokenError::SecondFactorRequired)) => (
                StatusCode::UNAUTHORIZED,
                json!({
                    "detail": "This account has a second factor: send a code of your authenticator app (or a backup code) as otp.",
                    "code": "second_factor_required",
                }),
            ),
            SjError::Core(Error::Token(TokenError::SecondFactorInvalid)) => (
                StatusCode::UNAUTHORIZED,
                json!({ "detail": "The second-factor code is invalid or was already used.", "code": "second_factor_invalid" }),
            ),
            SjError::Core(Error::Token(TokenError::Invalid(msg))) => (
                StatusCode::UNAUTHORIZED,
                json!({ "detail": msg, "code": "token_not_valid" }),
            ),
            SjError::Core(Error::Token(TokenError::NoActiveAccount)) => (
                StatusCode::UNAUTHORIZED,
                json!({ "detail": "No active account found for the given token.", "code": "no_active_account" }),
            ),
            SjError::Core(Error::Internal(cause)) => {
                tracing::error!(%cause, "internal error on the token face");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "detail": "A server error occurred." }),
                )
            }
            SjError::Core(e @ Error::NotFound { .. }) => {
                detail(StatusCode::NOT_FOUND, e.to_string())
            }
            SjError::Core(e @ Error::Conflict { .. }) => {
                detail(StatusCode::CONFLICT, e.to_string())
            }
            SjError::Core(e @ Error::SessionInactive) => {
                detail(StatusCode::UNAUTHORIZED, e.to_string())
            }
            SjError::Core(
                e @ (Error::IdentityMismatch
                | Error::CsrfViolation { .. }
                | Error::RefreshRequired { .. }
                | Error::LogoutTokenMismatch),
            ) => detail(StatusCode::FORBIDDEN, e.to_string()),
            SjError::Core(e @ Error::FlowExpired { .. }) => detail(StatusCode::GONE, e.to_string()),
            // Django REST framework's `Throttled` body.
            SjError::Core(ref e @ Error::RateLimited { retry_after }) => {
                let body = json!({
                    "detail": format!("Request was throttled. Expected available in {retry_after} seconds."),
                    "code": "throttled",
                });
                let resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                return crate::error::with_retry_after(e, resp);
            }
            SjError::Core(ref e @ Error::Busy { .. }) => {
                let resp = detail(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                return crate::error::with_retry_after(e, (resp.0, Json(resp.1)).into_response());
            }
            SjError::Core(e @ Error::HookFailed) => detail(StatusCode::BAD_GATEWAY, e.to_string()),
            // Every other refusal is the request's fault.
            SjError::Core(e) => detail(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        resp
    }
}

type SjResult<T> = Result<T, SjError>;

/// A JSON or form-encoded body, as DRF's default parsers accept.
pub struct SjBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for SjBody {
    type Rejection = SjError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = crate::extract::content_type(req.headers());
        let bytes = crate::extract::read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(SjBody(json!({})));
        }
        if ct.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| EdgeError::BadRequest(format!("JSON parse error - {e}")))?;
            if !v.is_object() {
                return Err(
                    EdgeError::BadRequest("Invalid data. Expected a dictionary.".into()).into(),
                );
            }
            return Ok(SjBody(v));
        }
        if ct.starts_with("application/x-www-form-urlencoded") {
            let m: Map<String, Value> = url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            return Ok(SjBody(Value::Object(m)));
        }
        Err(
            EdgeError::UnsupportedMediaType(format!("Unsupported media type \"{ct}\" in request."))
                .into(),
        )
    }
}

fn caller(headers: &HeaderMap, ip: Option<std::net::IpAddr>) -> Caller {
    Caller {
        ip: ip.map(|ip| ip.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ..Caller::default()
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `Set-Cookie` for a token (or its removal with `None`).
fn token_cookie(
    st: &AppState,
    name: &str,
    value: Option<&str>,
    max_age: u64,
) -> Option<HeaderValue> {
    let c = &st.core.config().tokens.cookies;
    crate::cookies::set_cookie(
        st.core.config(),
        name,
        value,
        Some(max_age),
        &c.path,
        &c.domain,
        c.same_site,
    )
}

fn pair_response(st: &AppState, pair: TokenPair) -> Response {
    let mut body = Map::new();
    body.insert("access".into(), json!(pair.access));
    if let Some(r) = &pair.refresh {
        body.insert("refresh".into(), json!(r));
    }
    let mut resp = Json(body).into_response();
    let t = &st.core.config().tokens;
    if t.cookies.enabled {
        let h = resp.headers_mut();
        if let Some(v) = token_cookie(
            st,
            &t.cookies.access_name,
            Some(&pair.access),
            t.access_token_lifetime.0.as_secs(),
        ) {
            h.append(header::SET_COOKIE, v);
        }
        if let Some(r) = &pair.refresh {
            if let Some(v) = token_cookie(
                st,
                &t.cookies.refresh_name,
                Some(r),
                t.refresh_token_lifetime.0.as_secs(),
            ) {
                h.append(header::SET_COOKIE, v);
            }
        }
    }
    resp
}

async fn jwks(State(st): State<AppState>) -> Response {
    match st.core.jwks(st.core.now()).await {
        Ok(v) => {
            let mut resp = Json(v).into_response();
            // Verifiers may cache the set briefly; rotation keeps old keys listed long enough.
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            );
            resp
        }
        Err(e) => crate::error::ApiError(e).into_response(),
    }
}

async fn obtain(
    State(st): State<AppState>,
    crate::extract::ClientAddr(ip): crate::extract::ClientAddr,
    parts: axum::http::request::Parts,
    SjBody(body): SjBody,
) -> SjResult<Response> {
    let mut caller = caller(&parts.headers, ip);
    // The login web hooks run here too, and see the request.
    if st.core.has_web_hooks() {
        caller.request = crate::extract::request_info(&parts, &st.core);
    }
    let pair = st
        .core
        .obtain_tokens(obtain_request(&st, &body), &caller, st.core.now())
        .await?;
    Ok(pair_response(&st, pair))
}

/// `GET /api/token/session/`: the anti-CSRF token a signed-in browser sends back with the
/// POST (`X-CSRF-Token`), masked from its cookie. Readable only where CORS lets a page read.
async fn session_csrf(
    crate::extract::CallerCtx(caller): crate::extract::CallerCtx,
) -> SjResult<Response> {
    if caller.session.is_none() {
        return Err(Error::SessionInactive.into());
    }
    let token = caller
        .csrf_secret
        .as_deref()
        .and_then(portcullis_core::csrf::mask)
        .ok_or(Error::CsrfViolation { hint: None })?;
    Ok(Json(json!({ "csrf_token": token })).into_response())
}

/// `POST /api/token/session/`: an access/refresh pair (or the token cookies) for the session
/// of this browser, signed in by any method; the `X-CSRF-Token` header must match its cookie.
async fn session_tokens(
    State(st): State<AppState>,
    crate::extract::CallerCtx(caller): crate::extract::CallerCtx,
) -> SjResult<Response> {
    let (session, identity) = caller.session.as_ref().ok_or(Error::SessionInactive)?;
    let proven = match (&caller.csrf_secret, &caller.csrf_header) {
        (Some(secret), Some(token)) => portcullis_core::csrf::verify(secret, token),
        _ => false,
    };
    if !proven {
        return Err(Error::CsrfViolation {
            hint: Some("send the csrf_token of GET on this path as the X-CSRF-Token header"),
        }
        .into());
    }
    let pair = st
        .core
        .session_tokens(session, identity, st.core.now())
        .await?;
    Ok(pair_response(&st, pair))
}

/// The identifier (the configured username field, then `email`, `username`, `identifier`)
/// and password of an obtain request, trimmed.
fn obtain_request(st: &AppState, body: &Value) -> ObtainRequest {
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let username_field = st.core.config().tokens.username_field.as_str();
    ObtainRequest {
        identifier: [username_field, "email", "username", "identifier"]
            .into_iter()
            .find_map(field)
            .map(str::to_string),
        password: str_field(body, "password").map(str::to_string),
        otp: field("otp").map(str::to_string),
    }
}

/// The refresh token from the body, or in cookie mode from its cookie.
fn refresh_from(st: &AppState, headers: &HeaderMap, body: &Value) -> Result<String, SjError> {
    if let Some(r) = str_field(body, "refresh") {
        return Ok(r.to_string());
    }
    let c = &st.core.config().tokens.cookies;
    if c.enabled {
        if let Some(r) = cookie(headers, &c.refresh_name) {
            return Ok(r.to_string());
        }
    }
    Err(Error::Token(TokenError::Missing(vec!["refresh".into()])).into())
}

async fn refresh(
    State(st): State<AppState>,
    headers: HeaderMap,
    SjBody(body): SjBody,
) -> SjResult<Response> {
    let token = refresh_from(&st, &headers, &body)?;
    let pair = st.core.refresh_tokens(&token, st.core.now()).await?;
    Ok(pair_response(&st, pair))
}

async fn verify(State(st): State<AppState>, SjBody(body): SjBody) -> SjResult<Json<Value>> {
    let token = str_field(&body, "token")
        .ok_or_else(|| SjError::from(Error::Token(TokenError::Missing(vec!["token".into()]))))?;
    st.core.verify_any_token(token, st.core.now()).await?;
    Ok(Json(json!({})))
}

async fn blacklist(
    State(st): State<AppState>,
    headers: HeaderMap,
    SjBody(body): SjBody,
) -> SjResult<Json<Value>> {
    let token = refresh_from(&st, &headers, &body)?;
    st.core.blacklist_refresh(&token, st.core.now()).await?;
    Ok(Json(json!({})))
}

/// Cookie mode: clears both cookies, blacklists the refresh token and ends its session.
async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    crate::extract::ClientAddr(ip): crate::extract::ClientAddr,
    SjBody(body): SjBody,
) -> SjResult<Response> {
    let token = refresh_from(&st, &headers, &body)?;
    let origin = caller(&headers, ip).origin();
    let result = st.core.logout_refresh(&token, &origin, st.core.now()).await;
    let t = &st.core.config().tokens;
    let mut resp = match result {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => SjError::Core(e).into_response(),
    };
    for name in [&t.cookies.access_name, &t.cookies.refresh_name] {
        if let Some(v) = token_cookie(&st, name, None, 0) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}
