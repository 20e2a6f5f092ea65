//! `/ui/login`, `/ui/registration`, `/ui/settings`: one page for every flow kind, drawn from
//! the flow's nodes by `view::flow_view`.

use super::{Page, PageQuery};
use crate::extract::{CallerCtx, Query};
use crate::ui::view::flow_view;
use crate::AppState;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use portcullis_core::flow::FlowKind;
use serde_json::{json, Value};

fn init_url(st: &AppState, kind: FlowKind, q: &PageQuery) -> String {
    let refresh = kind == FlowKind::Login && crate::extract::truthy(&q.refresh);
    st.core
        .browser_flow_url(kind, refresh, q.return_to.as_deref())
}

/// `/ui/login`, `/ui/registration`, `/ui/settings`: a flow's page.
pub(in crate::ui) async fn flow_page(
    State(st): State<AppState>,
    Path(segment): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let kind = match crate::browser::flow_kind(&segment) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let page = Page::new(&st, &uri, &q, &headers);
    let Some(id) = q
        .flow
        .as_deref()
        .and_then(|f| uuid::Uuid::parse_str(f).ok())
    else {
        return page.redirect(&init_url(&st, kind, &q));
    };
    let core = &st.core;
    let now = core.now();
    let loaded = match kind {
        FlowKind::Settings => core
            .get_settings_flow(id, &caller, now)
            .await
            .map(|(f, i)| core.flow_response(&f, Some(&i))),
        _ => core
            .load_flow(kind, id, &caller, now)
            .await
            .map(|f| core.flow_response(&f, None)),
    };
    let flow = match loaded {
        Ok(f) => f,
        Err(e) => {
            let step = crate::browser::Step::ShowPage {
                restart: init_url(&st, kind, &q),
                has_csrf_cookie: caller.csrf_secret.is_some(),
            };
            let mut resp = crate::browser::html_error(&st, kind, step, e.into()).await;
            page.finish(&mut resp);
            return resp;
        }
    };
    let lang = page.lang.clone();
    let (messages, forms) = flow_view(&st, &lang, &flow, kind == FlowKind::Settings);
    let ui = &st.ui;
    let refresh = flow.get("refresh").and_then(Value::as_bool) == Some(true);
    let title = match kind {
        FlowKind::Login if refresh => ui.t(&lang, "page.login.refresh"),
        FlowKind::Login => ui.t(&lang, "page.login"),
        FlowKind::Registration => ui.t(&lang, "page.registration"),
        FlowKind::Settings => ui.t(&lang, "page.settings"),
        FlowKind::Recovery => ui.t(&lang, "page.recovery"),
        FlowKind::Verification => ui.t(&lang, "page.verification"),
    };
    let base = core.public_url();
    let links = match kind {
        FlowKind::Login if refresh => vec![
            json!({ "href": format!("{base}ui/welcome"), "text": ui.t(&lang, "link.welcome") }),
        ],
        FlowKind::Login if core.config().selfservice.flows.registration.enabled => vec![
            json!({ "href": format!("{base}ui/registration"), "text": ui.t(&lang, "link.registration") }),
        ],
        FlowKind::Login => vec![],
        FlowKind::Registration => {
            vec![json!({ "href": format!("{base}ui/login"), "text": ui.t(&lang, "link.login") })]
        }
        FlowKind::Settings | FlowKind::Recovery | FlowKind::Verification => vec![
            json!({ "href": format!("{base}ui/welcome"), "text": ui.t(&lang, "link.welcome") }),
        ],
    };
    let mut page = page;
    page.set("title", json!(title));
    page.set("messages", json!(messages));
    page.set("forms", json!(forms));
    page.set("links", json!(links));
    page.render("flow.html")
}
