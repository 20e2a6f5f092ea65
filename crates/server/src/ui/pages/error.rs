//! `/ui/error`: a stored flow error, explained in the reader's language.

use super::{Page, PageQuery};
use crate::extract::Query;
use crate::AppState;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

pub(in crate::ui) async fn error_page(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut page = Page::new(&st, &uri, &q, &headers);
    let lang = page.lang.clone();
    let error = match q.id.as_deref() {
        Some(id) => crate::error::stored_error(&st.core, id)
            .await
            .ok()
            .map(|stored| {
                let mut e = stored.get("error").cloned().unwrap_or_default();
                // A sentence for people, by error id or status, in their language; the
                // server's reason stays below it for support.
                let by_id = e
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|i| format!("error.{i}"));
                let by_code = format!("error.{}", e.get("code").unwrap_or(&Value::Null));
                let text = by_id
                    .and_then(|k| st.ui.lookup(&lang, &k))
                    .or_else(|| st.ui.lookup(&lang, &by_code));
                if let (Some(text), Some(o)) = (text, e.as_object_mut()) {
                    o.insert("message".into(), json!(text));
                }
                e
            }),
        None => None,
    };
    page.set("title", json!(st.ui.t(&lang, "page.error")));
    page.set("error", error.unwrap_or(Value::Null));
    let mut resp = page.render("error.html");
    if q.id.is_none() {
        *resp.status_mut() = StatusCode::NOT_FOUND;
    }
    resp
}
