//! The courier's admin API, in Kratos's shapes: `GET /admin/courier/messages` (newest first,
//! filtered by `status` and `recipient`, paged with `page_size`/`page_token` and `Link`) and
//! `GET /admin/courier/messages/{id}` (with its dispatches). Bad input answers in the Kratos
//! error envelope (400), an unknown id 404.

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_uuid, Query};
use crate::paging::{Page, PageQuery};
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::courier::{MessageQuery, MessageStatus};
use serde::Deserialize;
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/courier/messages", get(list))
        .route("/admin/courier/messages/{id}", get(one))
}

#[derive(Deserialize)]
struct Filters {
    status: Option<String>,
    recipient: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list(State(st): State<AppState>, Query(f): Query<Filters>) -> ApiResult<Response> {
    let page = Page::from_query(&f.page)?;
    let status = f
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Unknown message status {s:?}; expected one of queued, processing, sent, abandoned."
                ))
            })
        })
        .transpose()?;
    let recipient = f.recipient.as_deref().filter(|r| !r.is_empty());
    let query = MessageQuery {
        status,
        recipient: recipient.map(str::to_string),
        before: page.after,
        page_size: page.size + 1,
    };
    let messages = st.core.courier_messages(&query).await?;
    let ids = messages.iter().map(|m| m.id).collect();
    let items: Vec<Value> = messages.iter().map(|m| m.to_api_json(None)).collect();
    let page = page
        .keep("status", f.status.as_deref())
        .keep("recipient", recipient);
    Ok(page.respond(&st.admin_url, "admin/courier/messages", items, ids))
}

async fn one(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "message id")?;
    let (message, dispatches) = st.core.courier_message(id).await?;
    Ok(Json(message.to_api_json(Some(&dispatches))))
}
