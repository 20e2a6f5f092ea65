//! Clerk sessions: list an identity's sessions in Clerk's shape, and revoke one.

use super::{body_object, cerr, identity_id, number, pairs, values, CResult};
use crate::extract::Acting;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::session::Session;
use portcullis_core::store::SessionQuery;
use portcullis_core::webhooks::clerk_user_id;
use portcullis_core::Error;
use serde_json::{json, Value};
use uuid::Uuid;

fn session_json(s: &Session, now: time::OffsetDateTime) -> Value {
    let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let status = if s.active && s.expires_at > now {
        "active"
    } else if s.active {
        "expired"
    } else {
        "revoked"
    };
    json!({
        "object": "session",
        "id": format!("sess_{}", s.id.simple()),
        "user_id": clerk_user_id(&s.identity_id.to_string()),
        "client_id": "client_portcullis",
        "status": status,
        "last_active_at": ms(s.authenticated_at),
        "expire_at": ms(s.expires_at),
        "abandon_at": ms(s.expires_at),
        "updated_at": ms(s.authenticated_at),
        "created_at": ms(s.issued_at),
    })
}

pub(super) async fn list_sessions(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> CResult<Json<Value>> {
    let p = pairs(&raw);
    let user_id = values(&p, "user_id").into_iter().next().ok_or_else(|| {
        cerr(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
            "user_id is required.",
        )
    })?;
    let identity = identity_id(&user_id)?;
    let limit = number(&p, "limit", 10, 500)?.max(1) as u32;
    let now = st.core.now();
    let status = values(&p, "status").into_iter().next();
    let q = SessionQuery {
        identity_id: Some(identity),
        active: status.as_deref().map(|s| s == "active"),
        page_size: limit,
        after: None,
        except: None,
    };
    let rows = st.core.list_sessions(&q, now).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|(s, _)| session_json(s, now)).collect(),
    )))
}

/// A `sess_…` id, or Clerk's 404.
fn session_id(id: &str) -> CResult<Uuid> {
    id.strip_prefix("sess_")
        .and_then(|h| Uuid::parse_str(h).ok())
        .ok_or_else(|| {
            cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                "No session with this id.",
            )
        })
}

/// `POST /v1/sessions/{id}/tokens`: a session token for an active session (`expires_in_seconds`
/// sets its lifetime, 60 s by default).
pub(super) async fn create_token(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CResult<Json<Value>> {
    let sid = session_id(&id)?;
    let b = body_object(body)?;
    let lifetime = match b.get("expires_in_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_format_invalid",
                "expires_in_seconds must be a whole number.",
            )
        })?),
    };
    let jwt = match st
        .core
        .clerk_session_token(sid, lifetime, None, st.core.now())
        .await
    {
        Err(Error::NotFound { .. }) => {
            return Err(cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                "No active session with this id.",
            ))
        }
        Err(Error::BadRequest { reason, .. }) => {
            return Err(cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                reason,
            ))
        }
        minted => minted?,
    };
    Ok(Json(json!({ "object": "token", "jwt": jwt })))
}

pub(super) async fn revoke_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> CResult<Json<Value>> {
    let sid = session_id(&id)?;
    let now = st.core.now();
    let s = match st.core.revoke_session_by_id(sid, now, &by).await {
        Err(Error::NotFound { .. }) => {
            return Err(cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                "No session with this id.",
            ))
        }
        revoked => revoked?,
    };
    Ok(Json(session_json(&s, now)))
}
