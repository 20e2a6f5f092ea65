//! `/ui/login`, `/ui/registration`, `/ui/settings`, `/ui/recovery`, `/ui/verification`: one
//! page for every flow kind, drawn from the flow's nodes by `view::flow_view`. Without
//! `?flow=` a page starts a browser flow of its kind, which comes back here with one.

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

/// `/ui/{login,registration,settings,recovery,verification}`: a flow's page.
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
    let (messages, forms) = flow_view(&st, &lang, &flow, kind);
    let ui = &st.ui;
    let refresh = flow.get("refresh").and_then(Value::as_bool) == Some(true);
    let second_step = flow.get("requested_aal").and_then(Value::as_str) == Some("aal2");
    let title = match kind {
        FlowKind::Login if second_step => ui.t(&lang, "page.login.aal2"),
        FlowKind::Login if refresh => ui.t(&lang, "page.login.refresh"),
        FlowKind::Login => ui.t(&lang, "page.login"),
        FlowKind::Registration => ui.t(&lang, "page.registration"),
        FlowKind::Settings => ui.t(&lang, "page.settings"),
        FlowKind::Recovery => ui.t(&lang, "page.recovery"),
        FlowKind::Verification => ui.t(&lang, "page.verification"),
    };
    let signed_in = caller.session.is_some();
    let links = links(&st, &lang, kind, refresh || second_step, signed_in);
    let mut page = page;
    page.set("title", json!(title));
    page.set("messages", json!(messages));
    page.set("forms", json!(forms));
    page.set("links", json!(links));
    // The one script a page may load: the WebAuthn ceremonies', when the form has them.
    let script = flow
        .pointer("/ui/nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|n| n.get("type").and_then(Value::as_str) == Some("script"))
        .and_then(|n| n.get("attributes").cloned());
    let Some(script) = script else {
        return page.render("flow.html");
    };
    let nonce = crate::ui::script_nonce();
    let attr = |k: &str| script.get(k).cloned().unwrap_or(Value::Null);
    page.set(
        "script",
        json!({ "src": attr("src"), "integrity": attr("integrity"), "nonce": nonce }),
    );
    let mut resp = page.render("flow.html");
    st.ui.allow_script(&mut resp, &nonce);
    resp
}

/// The links under a flow's form: where else this person may want to go from here.
fn links(st: &AppState, lang: &str, kind: FlowKind, refresh: bool, signed_in: bool) -> Vec<Value> {
    let (ui, core) = (&st.ui, &st.core);
    let flows = &core.config().selfservice.flows;
    let base = core.public_url();
    let link = |page: &str, text: &str| json!({ "href": format!("{base}ui/{page}"), "text": ui.t(lang, text) });
    match kind {
        FlowKind::Login if refresh => vec![link("welcome", "link.welcome")],
        FlowKind::Login => {
            let mut links = vec![];
            if flows.recovery.is_enabled() {
                links.push(link("recovery", "link.recovery"));
            }
            if flows.registration.enabled {
                links.push(link("registration", "link.registration"));
            }
            links
        }
        FlowKind::Registration => vec![link("login", "link.login")],
        FlowKind::Settings => vec![link("welcome", "link.welcome")],
        // Verifying may happen signed in (from the welcome page) or not (from an email).
        FlowKind::Verification if signed_in => vec![link("welcome", "link.welcome")],
        FlowKind::Recovery | FlowKind::Verification => {
            vec![link("login", "link.back_to_login")]
        }
    }
}
