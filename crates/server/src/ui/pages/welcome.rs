//! `/ui/welcome`: who is signed in, their addresses (with a way to verify one that is not),
//! their sessions, and the button that signs out the others.

use super::{Page, PageQuery};
use crate::browser::see_other;
use crate::cookies::csrf_cookie;
use crate::extract::{form_to_json, CallerCtx, Query};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use portcullis_core::flow::FlowKind;
use portcullis_core::service::urlencode;
use portcullis_core::store::SessionQuery;
use portcullis_core::Error;
use serde_json::{json, Value};

pub(in crate::ui) async fn to_welcome(State(st): State<AppState>) -> Response {
    see_other(&format!("{}ui/welcome", st.core.public_url()))
}

pub(in crate::ui) async fn welcome_page(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let mut page = Page::new(&st, &uri, &q, &headers);
    let core = &st.core;
    let Some((current, identity)) = &caller.session else {
        return page.redirect(&core.browser_flow_url(FlowKind::Login, false, None));
    };
    // The page shows what whoami shows: a session without its second factor signs in with
    // it first.
    if let Err(Error::Aal2Required {
        redirect_browser_to,
    }) = core.require_whoami_aal(current, identity)
    {
        return page.redirect(&redirect_browser_to);
    }
    let now = core.now();
    let query = SessionQuery {
        identity_id: Some(identity.id),
        active: Some(true),
        page_size: 50,
        after: None,
        except: None,
    };
    let sessions = match core.list_sessions(&query, now).await {
        Ok(rows) => rows,
        Err(e) => return crate::error::ApiError(e).into_response(),
    };
    let fmt = |t: time::OffsetDateTime| {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
        t.to_offset(time::UtcOffset::UTC)
            .format(&f)
            .unwrap_or_default()
    };
    let mut views: Vec<Value> = sessions
        .iter()
        .map(|(s, _)| {
            json!({
                "current": s.id == current.id,
                "authenticated_at": portcullis_core::identity::rfc3339(s.authenticated_at),
                "authenticated_at_text": fmt(s.authenticated_at),
                "expires_at": portcullis_core::identity::rfc3339(s.expires_at),
                "expires_at_text": fmt(s.expires_at),
                "device": s.devices.last().and_then(|d| d.user_agent.clone()),
            })
        })
        .collect();
    views.sort_by_key(|v| v["current"] != true);
    let who = identity
        .traits
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            identity
                .credentials
                .get("password")
                .and_then(|c| c.identifiers.first().cloned())
        })
        .unwrap_or_else(|| identity.id.to_string());
    let mut caller = caller.clone();
    let fresh = crate::browser::ensure_csrf(core, &mut caller);
    let csrf = caller
        .csrf_secret
        .as_deref()
        .and_then(portcullis_core::csrf::mask)
        .unwrap_or_default();
    let lang = page.lang.clone();
    let mut messages = vec![];
    if let Some(n) = q.revoked {
        messages.push(json!({
            "id": 0, "type": "success",
            "text": st.ui.t(&lang, "welcome.revoked").replace("{count}", &n.to_string()),
        }));
    }
    // The addresses and whether each is verified; a notice with a way to verify the first
    // that is not, when verification is on.
    let addresses: Vec<Value> = identity
        .verifiable_addresses
        .iter()
        .map(|a| json!({ "value": a.value, "verified": a.verified }))
        .collect();
    // Verification flows send codes by email only.
    let unverified = identity
        .verifiable_addresses
        .iter()
        .find(|a| !a.verified && a.via == "email");
    if let (Some(a), true) = (unverified, core.verification_enabled()) {
        page.set(
            "verify",
            json!({
                "text": st.ui.t(&lang, "welcome.verify_notice").replace("{address}", &a.value),
                "href": format!("{}ui/verification", core.public_url()),
            }),
        );
    }
    page.set("addresses", json!(addresses));
    page.set("title", json!(st.ui.t(&lang, "page.welcome")));
    page.set("messages", json!(messages));
    page.set("who", json!(who));
    page.set("sessions", json!(views));
    page.set("other_sessions", json!(sessions.len().saturating_sub(1)));
    page.set("csrf_token", json!(csrf));
    page.set(
        "logout_url",
        json!(format!(
            "{}self-service/logout?token={}",
            core.public_url(),
            urlencode(&current.logout_token())
        )),
    );
    page.set(
        "settings_url",
        json!(format!("{}ui/settings", core.public_url())),
    );
    let mut resp = page.render("welcome.html");
    if let Some(secret) = fresh {
        if let Some(v) = csrf_cookie(core, &secret) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The welcome page's "sign out of all other sessions" button (a CSRF-checked form post).
pub(in crate::ui) async fn revoke_others(
    State(st): State<AppState>,
    CallerCtx(caller): CallerCtx,
    body: Bytes,
) -> Response {
    let core = &st.core;
    let form = form_to_json(&body).unwrap_or_default();
    let token = form
        .get("csrf_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match core.revoke_other_sessions_by_form(&caller, token).await {
        Ok(Some(n)) => see_other(&format!("{}ui/welcome?revoked={n}", core.public_url())),
        Ok(None) => see_other(&core.browser_flow_url(FlowKind::Login, false, None)),
        Err(Error::Aal2Required {
            redirect_browser_to,
        }) => see_other(&redirect_browser_to),
        Err(e @ Error::CsrfViolation { .. }) => {
            let step = crate::browser::Step::Submit;
            crate::browser::html_error(&st, FlowKind::Login, step, e.into()).await
        }
        Err(e) => crate::error::ApiError(e).into_response(),
    }
}
