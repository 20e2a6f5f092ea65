//! The admin API for webhook endpoints (`/admin/webhooks/*`): register, change, rotate
//! secrets, read attempts, resend and replay. Delivery itself is `workers::webhooks`; URLs
//! are checked by the outbound guard in `outbound.rs`.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Acting, JsonBody};
use crate::outbound::{allow_private, check_url};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::endpoints::{EndpointChanges, NewEndpoint};
use portcullis_core::webhooks::WebhookEndpoint;
use portcullis_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use portcullis_core::webhooks::EVENT_TYPES;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(list).post(create))
        .route(
            "/admin/webhooks/{id}",
            get(read).patch(update).delete(remove),
        )
        .route("/admin/webhooks/{id}/secret", get(secret))
        .route("/admin/webhooks/{id}/secret/rotate", post(rotate_secret))
        .route("/admin/webhooks/{id}/attempts", get(attempts))
        .route(
            "/admin/webhooks/{id}/messages/{msg_id}/resend",
            post(resend),
        )
        .route("/admin/webhooks/{id}/replay", post(replay))
}

fn rfc(t: OffsetDateTime) -> String {
    portcullis_core::identity::rfc3339(t)
}

fn endpoint_json(ep: &WebhookEndpoint) -> Value {
    json!({
        "id": ep.id, "url": ep.url, "enabled": ep.enabled, "events": ep.event_types, "format": ep.format,
        "description": ep.description, "disabled_reason": ep.disabled_reason,
        "failing_since": ep.failing_since.map(rfc),
        "created_at": rfc(ep.created_at), "updated_at": rfc(ep.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    format: Option<String>,
    enabled: Option<bool>,
    description: Option<String>,
}

fn parse(body: Value) -> Result<EndpointBody, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}")))
}

fn check_fields(b: &EndpointBody) -> Result<(), ApiError> {
    if let Some(events) = &b.events {
        if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
            return Err(ApiError::bad_request(format!(
                "Unknown event type {bad:?}; known: {}.",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    if let Some(f) = &b.format {
        if !matches!(f.as_str(), "clerk" | "native") {
            return Err(ApiError::bad_request(
                "`format` must be \"clerk\" or \"native\".",
            ));
        }
    }
    Ok(())
}

async fn load(st: &AppState, id: &str) -> ApiResult<WebhookEndpoint> {
    Ok(st.core.webhook_endpoint(id).await?)
}

async fn create(
    State(st): State<AppState>,
    Acting(by): Acting,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let b = parse(body)?;
    check_fields(&b)?;
    let url = b
        .url
        .clone()
        .ok_or_else(|| ApiError::bad_request("`url` is required."))?;
    check_url(&url, allow_private(&st))?;
    let new = NewEndpoint {
        url,
        enabled: b.enabled,
        events: b.events,
        format: b.format,
        description: b.description,
    };
    let ep = st
        .core
        .create_webhook_endpoint(new, st.core.now(), &by)
        .await?;
    let mut v = endpoint_json(&ep);
    // A new endpoint has exactly one secret; the answer is the only time it is shown.
    if let (Some(s), Some(o)) = (ep.secrets.first(), v.as_object_mut()) {
        o.insert("secret".into(), json!(s.secret));
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let eps = st.core.webhook_endpoints().await?;
    Ok(Json(Value::Array(eps.iter().map(endpoint_json).collect())))
}

async fn read(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(endpoint_json(&load(&st, &id).await?)))
}

async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let b = parse(body)?;
    check_fields(&b)?;
    load(&st, &id).await?;
    if let Some(url) = &b.url {
        check_url(url, allow_private(&st))?;
    }
    let changes = EndpointChanges {
        url: b.url,
        enabled: b.enabled,
        events: b.events,
        format: b.format,
        description: b.description,
    };
    let ep = st
        .core
        .change_webhook_endpoint(&id, changes, st.core.now(), &by)
        .await?;
    Ok(Json(endpoint_json(&ep)))
}

async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> ApiResult<StatusCode> {
    st.core.delete_webhook_endpoint(&id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn secret(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let ep = load(&st, &id).await?;
    Ok(Json(
        json!({ "secret": ep.secrets.first().map(|s| s.secret.clone()) }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the old secret keeps signing next to the new one (default 24 h, at most
    /// [`MAX_OVERLAP_SECONDS`]).
    overlap_seconds: Option<u64>,
}

/// 30 days: longer than any receiver needs to roll out a new secret, and small enough that
/// `now + overlap` can never overflow a timestamp.
const MAX_OVERLAP_SECONDS: u64 = 30 * 24 * 3600;

async fn rotate_secret(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let b: RotateBody = if body.is_empty() {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}")))?
    };
    let overlap = b.overlap_seconds.unwrap_or(24 * 3600);
    if overlap > MAX_OVERLAP_SECONDS {
        return Err(ApiError::bad_request(format!(
            "`overlap_seconds` must be at most {MAX_OVERLAP_SECONDS} (30 days)."
        )));
    }
    let now = st.core.now();
    let (fresh, previous_until) = st
        .core
        .rotate_webhook_secret(&id, std::time::Duration::from_secs(overlap), now, &by)
        .await?;
    Ok(Json(
        json!({ "secret": fresh, "previous_secret_expires_at": rfc(previous_until) }),
    ))
}

async fn attempts(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let list = st.core.webhook_attempts(&id).await?;
    Ok(Json(serde_json::to_value(list).unwrap_or_default()))
}

async fn resend(
    State(st): State<AppState>,
    Path((id, msg)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.core
        .resend_webhook_message(&id, &msg, st.core.now())
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    since: String,
}

async fn replay(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    load(&st, &id).await?;
    let b: ReplayBody = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}")))?;
    let since = OffsetDateTime::parse(&b.since, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::bad_request("`since` must be an RFC 3339 time."))?;
    let n = st.core.replay_webhooks(&id, since, st.core.now()).await?;
    Ok(Json(json!({ "queued": n })))
}

/// Creates or updates the endpoints declared in `webhooks.endpoints`.
pub async fn sync_configured_endpoints(st: &AppState) -> Result<(), Error> {
    let allow = allow_private(st);
    st.core
        .sync_configured_endpoints(|url| check_url(url, allow).map_err(|e| e.0), st.core.now())
        .await
}
