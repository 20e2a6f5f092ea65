//! `GET /admin/audit`: the audit log, newest first, filtered by identity, event type and time
//! range, paged with Kratos's `page_size`/`page_token` and `Link` headers.

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_uuid, Query};
use crate::paging::{Page, PageQuery};
use crate::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use portcullis_core::audit::{AuditKind, AuditQuery, AuditRecord};
use portcullis_core::identity::rfc3339;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/audit", get(list))
}

#[derive(Deserialize)]
struct Filters {
    identity_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

fn time_param(name: &str, raw: Option<&str>) -> ApiResult<Option<OffsetDateTime>> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                ApiError::bad_request(format!("{name} must be an RFC 3339 time, got {s:?}."))
            })
        })
        .transpose()
}

async fn list(State(st): State<AppState>, Query(f): Query<Filters>) -> ApiResult<Response> {
    let page = Page::from_query(&f.page)?;
    let identity_id = f
        .identity_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_uuid(s, "identity_id"))
        .transpose()?;
    let kind = f
        .kind
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            AuditKind::parse(s).ok_or_else(|| {
                let known: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::bad_request(format!(
                    "Unknown audit event type {s:?}; expected one of {}.",
                    known.join(", ")
                ))
            })
        })
        .transpose()?;
    let query = AuditQuery {
        identity_id,
        kind,
        since: time_param("since", f.since.as_deref())?,
        until: time_param("until", f.until.as_deref())?,
        page_size: page.size + 1,
        before: page.after,
    };
    let records = st.core.audit_log(&query).await?;
    let ids = records.iter().map(|r| r.id).collect();
    let items = records.iter().map(record_json).collect();
    let page = page
        .keep("identity_id", f.identity_id.as_deref())
        .keep("type", f.kind.as_deref())
        .keep("since", f.since.as_deref())
        .keep("until", f.until.as_deref());
    Ok(page.respond(&st.admin_url, "admin/audit", items, ids))
}

fn record_json(r: &AuditRecord) -> Value {
    json!({
        "id": r.id,
        "time": rfc3339(r.at),
        "type": r.kind.as_str(),
        "actor": { "type": r.actor.kind(), "id": r.actor.id() },
        "identity_id": r.identity_id,
        "target": r.target,
        "ip_address": r.ip,
        "user_agent": r.user_agent,
        "outcome": r.outcome.as_str(),
        "reason": r.reason,
        "details": r.details,
    })
}
