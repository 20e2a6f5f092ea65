//! The Clerk Backend API subset under `/v1` on the admin port, so `clerk-backend-api` clients
//! manage the same identities the Kratos APIs show. Users are identities: `user_<uuid hex>`
//! ids, `public_metadata` ↔ `metadata_public`, `private_metadata` ↔ `metadata_admin`. Every
//! write goes through the core's admin use cases, so validation and events are the same.
//!
//! Errors use Clerk's envelope `{errors: [{message, long_message, code}], clerk_trace_id}`.

mod images;
mod sessions;
mod users;

use crate::extract::Acting;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::audit::{Actor, By};
use portcullis_core::clerk::Block;
use portcullis_core::identity::Identity;
use portcullis_core::webhooks::clerk_user;
use portcullis_core::Error;
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/users", get(users::list_users).post(users::create_user))
        .route("/v1/users/count", get(users::count_users))
        .route(
            "/v1/users/{id}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user),
        )
        .route(
            "/v1/users/{id}/metadata",
            axum::routing::patch(users::merge_metadata).put(users::replace_metadata),
        )
        .route(
            "/v1/users/{id}/ban",
            post(|s, p, a| users::set_block(s, p, a, Block::Banned, true)),
        )
        .route(
            "/v1/users/{id}/unban",
            post(|s, p, a| users::set_block(s, p, a, Block::Banned, false)),
        )
        .route(
            "/v1/users/{id}/lock",
            post(|s, p, a| users::set_block(s, p, a, Block::Locked, true)),
        )
        .route(
            "/v1/users/{id}/unlock",
            post(|s, p, a| users::set_block(s, p, a, Block::Locked, false)),
        )
        .route(
            "/v1/users/{id}/verify_password",
            post(users::verify_password),
        )
        .route(
            "/v1/users/{id}/profile_image",
            post(images::set)
                .delete(images::delete)
                .layer(crate::profile_images::upload_limit()),
        )
        .route(
            "/v1/users/{id}/mfa",
            axum::routing::delete(users::disable_mfa),
        )
        .route("/v1/sessions", get(sessions::list_sessions))
        .route("/v1/sessions/{id}/revoke", post(sessions::revoke_session))
        .route("/v1/sessions/{id}/tokens", post(sessions::create_token))
        .route("/v1/jwks", get(jwks))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_secret_key,
        ))
        // Outermost: a request is counted before its key is checked, so guesses are too.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::limit_clerk,
        ))
}

/// A Clerk error response.
pub struct ClerkError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (throttled or busy answers).
    retry_after: Option<u64>,
}

fn cerr(status: StatusCode, code: &'static str, message: impl Into<String>) -> ClerkError {
    ClerkError {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

impl IntoResponse for ClerkError {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{ "message": self.message, "long_message": self.message, "code": self.code }],
            "clerk_trace_id": Uuid::new_v4().simple().to_string(),
        });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// An edge refusal (the admin guard's) in Clerk's error format.
pub(crate) fn edge_refusal(e: &crate::error::EdgeError) -> ClerkError {
    let code = match e.status() {
        StatusCode::FORBIDDEN => "authorization_invalid",
        _ => "request_invalid",
    };
    cerr(e.status(), code, e.reason().to_string())
}

/// The one mapping of core errors to Clerk's codes. A taken identifier (a unique value of
/// the store) is Clerk's `form_identifier_exists`; every other refusal is an invalid parameter.
impl From<Error> for ClerkError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => {
                cerr(StatusCode::NOT_FOUND, "resource_not_found", "not found")
            }
            Error::Conflict { reason } => cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_identifier_exists",
                reason,
            ),
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error on the Clerk face");
                cerr(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_clerk_error",
                    "There was an internal error on our servers.",
                )
            }
            e @ Error::Token(_) => cerr(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            Error::RateLimited { retry_after } => ClerkError {
                retry_after: Some(retry_after),
                ..cerr(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "Too many requests, retry later.",
                )
            },
            Error::Busy { retry_after } => ClerkError {
                retry_after: Some(retry_after),
                ..cerr(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "The service is busy, retry later.",
                )
            },
            e => cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_invalid",
                e.to_string(),
            ),
        }
    }
}

impl From<portcullis_core::store::StoreError> for ClerkError {
    fn from(e: portcullis_core::store::StoreError) -> Self {
        Error::from(e).into()
    }
}

type CResult<T> = Result<T, ClerkError>;

/// `Authorization: Bearer sk_…`: a configured key or one created through the admin API.
async fn require_secret_key(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| k.starts_with("sk_"));
    let Some(presented) = presented else {
        return cerr(
            StatusCode::UNAUTHORIZED,
            "authentication_invalid",
            "Unauthorized request: a secret key (Bearer sk_…) is required.",
        )
        .into_response();
    };
    let key_id = match st.core.clerk_key_id(presented).await {
        Ok(id) => id,
        Err(e) => return ClerkError::from(e).into_response(),
    };
    let Some(key_id) = key_id else {
        return cerr(
            StatusCode::UNAUTHORIZED,
            "authentication_invalid",
            "Unauthorized request: the secret key is not valid.",
        )
        .into_response();
    };
    // The changes this request makes are audited as done with this key.
    req.extensions_mut().insert(Actor::ClerkKey(key_id));
    next.run(req).await
}

fn identity_id(user_id: &str) -> CResult<Uuid> {
    user_id
        .strip_prefix("user_")
        .and_then(|hex| Uuid::parse_str(hex).ok())
        .ok_or_else(|| {
            cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                format!("No user was found with id {user_id}."),
            )
        })
}

async fn load(st: &AppState, user_id: &str) -> CResult<Identity> {
    let id = identity_id(user_id)?;
    match st.core.admin_get_identity(id).await {
        Err(Error::NotFound { .. }) => Err(cerr(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            format!("No user was found with id {user_id}."),
        )),
        found => Ok(found?),
    }
}

fn user(st: &AppState, i: &Identity) -> Value {
    clerk_user(i, &st.core.config().webhooks.clerk_mapping)
}

fn pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn values(p: &[(String, String)], key: &str) -> Vec<String> {
    p.iter()
        .filter(|(k, _)| k == key || k == &format!("{key}[]"))
        .map(|(_, v)| v.clone())
        .collect()
}

fn number(p: &[(String, String)], key: &str, default: usize, max: usize) -> CResult<usize> {
    match values(p, key).into_iter().next() {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                format!("{key} must be a number up to {max}."),
            )),
        },
    }
}

fn body_object(body: axum::body::Bytes) -> CResult<Map<String, Value>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(cerr(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "The request body must be a JSON object.",
        )),
    }
}

/// `GET /v1/jwks`: the keys of the session tokens (RS256), as Clerk's backend SDKs fetch them.
async fn jwks(State(st): State<AppState>) -> CResult<Json<Value>> {
    Ok(Json(st.core.clerk_jwks().await?))
}

/// `GET /admin/clerk/jwt-key`: the session tokens' public key as a PEM, the "JWT public key"
/// Clerk's dashboard shows, for `jwtKey` / `jwt_key` (verification without a network call).
async fn admin_jwt_key(State(st): State<AppState>) -> Result<Response, crate::ApiError> {
    let pem = st.core.clerk_jwt_key_pem().await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

/// Creates a Clerk secret key (returned once; only its hash is stored).
pub async fn create_key(st: &AppState, by: &By) -> Result<(String, String), Error> {
    st.core.create_clerk_key(st.core.now(), by).await
}

/// `POST /admin/clerk/keys`, `DELETE /admin/clerk/keys/{id}`.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/clerk/keys", post(admin_create_key))
        .route("/admin/clerk/jwt-key", get(admin_jwt_key))
        .route(
            "/admin/clerk/keys/{id}",
            axum::routing::delete(admin_revoke_key),
        )
}

async fn admin_create_key(
    State(st): State<AppState>,
    Acting(by): Acting,
) -> Result<Response, crate::ApiError> {
    let (id, key) = create_key(&st, &by).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "secret_key": key })),
    )
        .into_response())
}

async fn admin_revoke_key(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> Result<StatusCode, crate::ApiError> {
    if st.core.revoke_clerk_key(&id, st.core.now(), &by).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(crate::ApiError(Error::not_found(
            "No active key with this id.",
        )))
    }
}
