//! The Kratos admin API (port 4434, `/admin` prefix): identities and sessions.

use crate::error::{error_object, ApiError, ApiResult};
use crate::extract::{parse_uuid, Acting, JsonBody, Query};
use crate::paging::{Page, PageQuery};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use portcullis_core::identity::View;
use portcullis_core::store::{IdentityQuery, SessionQuery};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/identities",
            get(list_identities)
                .post(create_identity)
                .patch(batch_identities),
        )
        .route(
            "/admin/identities/{id}",
            get(get_identity)
                .put(replace_identity)
                .patch(patch_identity)
                .delete(delete_identity),
        )
        .route(
            "/admin/identities/{id}/credentials/{kind}",
            axum::routing::delete(delete_credential),
        )
        .route(
            "/admin/identities/{id}/sessions",
            get(list_identity_sessions).delete(delete_identity_sessions),
        )
        .route("/admin/sessions", get(list_sessions))
        .route(
            "/admin/sessions/{id}",
            get(get_session).delete(disable_session),
        )
        .route("/admin/sessions/{id}/extend", patch(extend_session))
        .route("/admin/keys", get(list_keys))
        .route("/admin/keys/rotate", axum::routing::post(rotate_keys))
}

/// Repeated query parameters (`include_credential`, `ids`, `expand`) that serde_urlencoded cannot collect.
fn multi(raw: &Option<String>, key: &str) -> Vec<String> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn single(raw: &Option<String>, key: &str) -> Option<String> {
    multi(raw, key).into_iter().next().filter(|v| !v.is_empty())
}

fn page_query(raw: &Option<String>) -> PageQuery {
    PageQuery {
        page_size: single(raw, "page_size"),
        page_token: single(raw, "page_token"),
    }
}

async fn list_identities(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let core = &st.core;
    let include = multi(&raw, "include_credential");
    let ci = single(&raw, "credentials_identifier");
    let ids = multi(&raw, "ids")
        .iter()
        .map(|s| parse_uuid(s, "identity id"))
        .collect::<Result<Vec<_>, _>>()?;
    let page = Page::from_query(&page_query(&raw))?
        .keep("credentials_identifier", ci.as_deref())
        .keep_all("ids", &multi(&raw, "ids"))
        .keep_all("include_credential", &include);
    let q = IdentityQuery {
        page_size: page.size + 1,
        after: page.after,
        credentials_identifier: ci.as_deref().map(|c| c.trim().to_string()),
        ids,
    };
    let rows = core.list_identities(q).await?;
    let items = rows
        .iter()
        .map(|i| {
            core.identity_json(
                i,
                View::AdminList {
                    include_credentials: &include,
                },
            )
        })
        .collect();
    Ok(page.respond(
        &st.admin_url,
        "admin/identities",
        items,
        rows.iter().map(|i| i.id).collect(),
    ))
}

async fn create_identity(
    State(st): State<AppState>,
    Acting(by): Acting,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let core = &st.core;
    let identity = core.admin_create_identity(body, core.now(), &by).await?;
    Ok((
        StatusCode::CREATED,
        Json(core.identity_json(
            &identity,
            View::Admin {
                include_credentials: &[],
            },
        )),
    )
        .into_response())
}

async fn batch_identities(
    State(st): State<AppState>,
    Acting(by): Acting,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let items = st.core.admin_batch(body, st.core.now(), &by).await?;
    let out: Vec<Value> = items
        .into_iter()
        .map(|item| match item.outcome {
            Ok(id) => json!({ "action": "create", "identity": id, "patch_id": item.patch_id }),
            Err(e) => {
                json!({ "action": "error", "patch_id": item.patch_id, "error": error_object(&e) })
            }
        })
        .collect();
    Ok(Json(json!({ "identities": out })))
}

async fn get_identity(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "identity id")?;
    let include = multi(&raw, "include_credential");
    let identity = st.core.admin_get_identity(id).await?;
    Ok(Json(st.core.identity_json(
        &identity,
        View::Admin {
            include_credentials: &include,
        },
    )))
}

async fn replace_identity(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "identity id")?;
    let identity = st
        .core
        .admin_replace_identity(id, body, st.core.now(), &by)
        .await?;
    Ok(Json(st.core.identity_json(
        &identity,
        View::Admin {
            include_credentials: &[],
        },
    )))
}

async fn patch_identity(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "identity id")?;
    let identity = st
        .core
        .admin_patch_identity(id, body, st.core.now(), &by)
        .await?;
    Ok(Json(st.core.identity_json(
        &identity,
        View::Admin {
            include_credentials: &[],
        },
    )))
}

async fn delete_identity(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> ApiResult<StatusCode> {
    let id = parse_uuid(&id, "identity id")?;
    st.core.admin_delete_identity(id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/identities/{id}/credentials/{type}`: removes a second factor.
async fn delete_credential(
    State(st): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    Acting(by): Acting,
) -> ApiResult<StatusCode> {
    let id = parse_uuid(&id, "identity id")?;
    st.core.admin_delete_credential(id, &kind, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn active_filter(raw: &Option<String>) -> Result<Option<bool>, ApiError> {
    match single(raw, "active").as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(format!(
            "active must be true or false, got {other:?}."
        ))),
    }
}

async fn list_identity_sessions(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = parse_uuid(&id, "identity id")?;
    let core = &st.core;
    core.admin_get_identity(id).await?;
    let active = active_filter(&raw)?;
    let page =
        Page::from_query(&page_query(&raw))?.keep("active", single(&raw, "active").as_deref());
    let now = core.now();
    let q = SessionQuery {
        identity_id: Some(id),
        active,
        page_size: page.size + 1,
        after: page.after,
        except: None,
    };
    let rows = core.list_sessions(&q, now).await?;
    let items = rows
        .iter()
        .map(|(s, i)| {
            core.session_json(
                s,
                Some(i),
                View::Admin {
                    include_credentials: &[],
                },
                now,
            )
        })
        .collect();
    Ok(page.respond(
        &st.admin_url,
        &format!("admin/identities/{id}/sessions"),
        items,
        rows.iter().map(|(s, _)| s.id).collect(),
    ))
}

async fn delete_identity_sessions(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> ApiResult<StatusCode> {
    let id = parse_uuid(&id, "identity id")?;
    st.core.delete_identity_sessions(id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ExpandQuery {
    expand: Option<String>,
}

async fn list_sessions(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let core = &st.core;
    let active = active_filter(&raw)?;
    let expand = multi(&raw, "expand");
    let with_identity = expand.iter().any(|e| e == "identity");
    let page =
        Page::from_query(&page_query(&raw))?.keep("active", single(&raw, "active").as_deref());
    let now = core.now();
    let q = SessionQuery {
        identity_id: None,
        active,
        page_size: page.size + 1,
        after: page.after,
        except: None,
    };
    let rows = core.list_sessions(&q, now).await?;
    let view = View::Admin {
        include_credentials: &[],
    };
    let items = rows
        .iter()
        .map(|(s, i)| core.session_json(s, with_identity.then_some(i), view, now))
        .collect();
    Ok(page.respond(
        &st.admin_url,
        "admin/sessions",
        items,
        rows.iter().map(|(s, _)| s.id).collect(),
    ))
}

async fn load_session(
    st: &AppState,
    id: &str,
) -> ApiResult<(
    portcullis_core::session::Session,
    portcullis_core::identity::Identity,
)> {
    let id = parse_uuid(id, "session id")?;
    Ok(st.core.session_by_id(id).await?)
}

async fn get_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExpandQuery>,
) -> ApiResult<Json<Value>> {
    let (s, i) = load_session(&st, &id).await?;
    let with_identity = q
        .expand
        .as_deref()
        .is_some_and(|e| e.split(',').any(|x| x == "identity"));
    let now = st.core.now();
    Ok(Json(st.core.session_json(
        &s,
        with_identity.then_some(&i),
        View::Admin {
            include_credentials: &[],
        },
        now,
    )))
}

async fn disable_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> ApiResult<StatusCode> {
    let id = parse_uuid(&id, "session id")?;
    st.core.revoke_session_by_id(id, st.core.now(), &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn extend_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "session id")?;
    let now = st.core.now();
    let (s, i) = st.core.extend_session(id, now, &by).await?;
    Ok(Json(st.core.session_json(
        &s,
        Some(&i),
        View::Admin {
            include_credentials: &[],
        },
        now,
    )))
}

/// The signing keys still published: kid, algorithm, state and when a retired key leaves the JWKS.
async fn list_keys(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let keys = st.core.signing_keys().await?;
    let rfc = portcullis_core::identity::rfc3339;
    Ok(Json(Value::Array(
        keys.iter()
            .map(|k| {
                serde_json::json!({
                    "kid": k.kid, "alg": k.alg, "state": k.state,
                    "created_at": rfc(k.created_at),
                    "drop_after": k.drop_after.map(rfc),
                })
            })
            .collect(),
    )))
}

/// Retires the current signing key and creates a new one (as `portcullis keys rotate`).
async fn rotate_keys(State(st): State<AppState>, Acting(by): Acting) -> ApiResult<Json<Value>> {
    let kid = st.core.rotate_signing_key(st.core.now(), &by).await?;
    Ok(Json(serde_json::json!({ "kid": kid })))
}
