//! Kratos browser flows: flow init with the CSRF cookie, the 303-or-JSON answer of every
//! step, the session cookie on success, logout links and the error store; and
//! [`html_error`], the one place that decides where a browser goes when a step fails (with
//! [`html_edge_error`] for a submit the edge refused before the core saw it).
//!
//! A request is answered in JSON when it sends JSON or prefers it (`Accept`), as SPAs and the
//! SDKs do; otherwise (an HTML form, a link) it gets `303 See Other` to the page that shows the
//! outcome: the flow's UI, the return URL, or the error page.

use crate::cookies::{csrf_cookie, session_cookie};
use crate::error::{error_object, stored_error, ApiError, ApiResult};
use crate::extract::{request_url, truthy, wants_json, CallerCtx, Query};
use crate::AppState;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::identity::View;
use portcullis_core::selfservice::SubmitError;
use portcullis_core::service::{Authenticated, Caller, Core};
use portcullis_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/self-service/{flow}/browser", get(init))
        .route("/self-service/logout/browser", get(create_logout_url))
        .route("/self-service/logout", get(logout))
        .route("/self-service/errors", get(get_error))
}

#[derive(Deserialize)]
pub struct InitQuery {
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    aal: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => ApiError::bad_request("The redirect target is not a valid header value.")
            .into_response(),
    }
}

pub use portcullis_core::service::with_query;

/// Gives the caller a CSRF secret if its browser has none yet (or, signed in, none bound to
/// its session); returns the new one, which the response must set as a cookie.
pub fn ensure_csrf(core: &Core, caller: &mut Caller) -> Option<String> {
    if caller.csrf_secret.is_some() {
        return None;
    }
    let s = core.new_csrf_secret(caller.session.as_ref().map(|(s, _)| s));
    caller.csrf_secret = Some(s.clone());
    Some(s)
}

fn add_cookie(resp: &mut Response, v: Option<HeaderValue>) {
    if let Some(v) = v {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Sets a newly issued anti-CSRF secret (from [`ensure_csrf`]) as the browser's cookie.
pub fn add_csrf_cookie(core: &Core, resp: &mut Response, secret: &str) {
    add_cookie(resp, csrf_cookie(core, secret));
}

/// The flow of a path segment; anything else is 404 like an unknown route.
pub fn flow_kind(segment: &str) -> Result<FlowKind, ApiError> {
    FlowKind::parse(segment).ok_or_else(|| {
        ApiError(Error::not_found(
            "The requested resource could not be found",
        ))
    })
}

/// `GET /self-service/{login,registration,settings}/browser`.
async fn init(
    State(st): State<AppState>,
    Path(segment): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<InitQuery>,
    CallerCtx(mut caller): CallerCtx,
) -> Response {
    let kind = match flow_kind(&segment) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let core = &st.core;
    let json = wants_json(&headers);
    let fresh = ensure_csrf(core, &mut caller);
    let now = core.now();
    let url = request_url(core.public_url(), &uri);
    let step = Step::Init {
        return_to: q.return_to.clone(),
    };
    let created = match kind {
        FlowKind::Login => core
            .create_login_flow(
                FlowType::Browser,
                url,
                truthy(&q.refresh),
                q.aal.as_deref(),
                q.return_to,
                &caller,
                now,
            )
            .await
            .map(|f| (f, None)),
        FlowKind::Registration => core
            .create_registration_flow(FlowType::Browser, url, q.return_to, &caller, now)
            .await
            .map(|f| (f, None)),
        FlowKind::Settings => core
            .create_settings_flow(FlowType::Browser, url, q.return_to, &caller, now)
            .await
            .map(|(f, i)| (f, Some(i))),
        FlowKind::Recovery => core
            .create_recovery_flow(FlowType::Browser, url, q.return_to, &caller, now)
            .await
            .map(|f| (f, None)),
        FlowKind::Verification => core
            .create_verification_flow(FlowType::Browser, url, q.return_to, &caller, now)
            .await
            .map(|f| (f, None)),
    };
    let mut resp = match created {
        Ok((flow, identity)) if json => {
            Json(core.flow_response(&flow, identity.as_ref())).into_response()
        }
        Ok((flow, _)) => see_other(&with_query(
            core.config().ui_url(kind),
            "flow",
            &flow.id.to_string(),
        )),
        Err(e) if json => ApiError(e).into_response(),
        Err(e) => html_error(&st, kind, step, e.into()).await,
    };
    if let Some(secret) = fresh {
        add_cookie(&mut resp, csrf_cookie(core, &secret));
    }
    resp
}

/// The step of a browser flow that failed; some failures mean different things per step.
pub enum Step {
    /// Starting a flow; a signed-in browser simply goes where it was heading.
    Init { return_to: Option<String> },
    /// A submit, or another action inside a flow (logout).
    Submit,
    /// Showing a flow on a hosted page: an unknown, expired or foreign flow starts afresh at
    /// `restart`, unless the browser sent no CSRF cookie at all (blocked cookies would only
    /// loop).
    ShowPage {
        restart: String,
        has_csrf_cookie: bool,
    },
}

/// Where a browser (not a JSON client) goes when a step of flow `kind` fails: back to the
/// flow's page, to a replacement or fresh flow, where it was heading, to re-authenticate, or
/// to the error page with the error kept for it.
pub async fn html_error(st: &AppState, kind: FlowKind, step: Step, e: SubmitError) -> Response {
    let core = &st.core;
    let config = core.config();
    let ui = config.ui_url(kind);
    let e = match e {
        // The flow now carries its messages: show it again.
        SubmitError::FlowInvalid { flow, .. } => {
            return see_other(&with_query(ui, "flow", &flow.id.to_string()))
        }
        SubmitError::Refused(e) => e,
    };
    match (&step, &e) {
        (Step::Init { return_to }, Error::AlreadySignedIn | Error::AalAlreadyFulfilled) => {
            let target = core
                .validate_return_to(return_to.clone())
                .ok()
                .flatten()
                .unwrap_or_else(|| config.after_url(kind).to_string());
            return see_other(&target);
        }
        (
            Step::ShowPage {
                restart,
                has_csrf_cookie,
            },
            e,
        ) => {
            let forbidden = matches!(
                e,
                Error::CsrfViolation { .. }
                    | Error::IdentityMismatch
                    | Error::RefreshRequired { .. }
                    | Error::LogoutTokenMismatch
            );
            // A settings page of a session without its second factor: on to the second step.
            if let Error::Aal2Required {
                redirect_browser_to,
            } = e
            {
                return see_other(redirect_browser_to);
            }
            let gone = matches!(e, Error::NotFound { .. } | Error::FlowExpired { .. });
            if gone || (forbidden && *has_csrf_cookie) {
                return see_other(restart);
            }
        }
        _ => {}
    }
    match &e {
        Error::FlowExpired {
            replacement: Some(id),
            ..
        } => return see_other(&with_query(ui, "flow", &id.to_string())),
        // Reading an expired flow: start a new one.
        Error::FlowExpired { .. } => return see_other(&core.browser_flow_url(kind, false, None)),
        Error::AlreadySignedIn => return see_other(config.after_url(kind)),
        Error::RefreshRequired {
            redirect_browser_to,
        }
        | Error::Aal2Required {
            redirect_browser_to,
        }
        | Error::BrowserLocationChangeRequired {
            redirect_browser_to,
        } => return see_other(redirect_browser_to),
        // Sign-in waits for a verified address: on to the verification flow just started.
        Error::AddressNotVerified { continue_with } => {
            if let Some(url) = continue_with
                .first()
                .and_then(|c| c.pointer("/flow/url"))
                .and_then(Value::as_str)
            {
                return see_other(url);
            }
        }
        Error::SessionInactive if kind == FlowKind::Settings => {
            let back = core.browser_flow_url(FlowKind::Settings, false, None);
            return see_other(&core.browser_flow_url(FlowKind::Login, false, Some(&back)));
        }
        Error::Internal(cause) => tracing::error!(%cause, "internal error in a browser flow"),
        _ => {}
    }
    match core.record_flow_error(error_object(&e), core.now()).await {
        Ok(id) => see_other(&with_query(config.error_ui_url(), "id", &id.to_string())),
        Err(store) => ApiError(store).into_response(),
    }
}

/// Where a browser goes when the edge refused its submit before the core saw it (a form too
/// large, say): the error page, with the error kept for it, as Kratos forwards browser errors.
pub async fn html_edge_error(st: &AppState, e: crate::error::EdgeError) -> Response {
    let core = &st.core;
    match core.record_flow_error(e.object(), core.now()).await {
        Ok(id) => see_other(&with_query(
            core.config().error_ui_url(),
            "id",
            &id.to_string(),
        )),
        Err(store) => ApiError(store).into_response(),
    }
}

/// The answer to a successful browser login or registration: the session cookie (if one
/// began), then 303 to the return URL (or the page a hook sends it to), or for JSON clients
/// the session with `continue_with` pointing there. `method` picks the after URL
/// (`selfservice.flows.<kind>.after.<method>.default_browser_return_url`).
pub fn authenticated(
    st: &AppState,
    kind: FlowKind,
    method: &str,
    a: &Authenticated,
    json: bool,
) -> Response {
    let core = &st.core;
    let target = a
        .return_to
        .clone()
        .unwrap_or_else(|| core.config().after_method_url(kind, method).to_string());
    let mut resp = if let Some(next) = &a.second_factor {
        // Signed in with the first factor; the second step comes next (the session cookie
        // is set either way, as in Kratos).
        if json {
            ApiError(Error::BrowserLocationChangeRequired {
                redirect_browser_to: next.clone(),
            })
            .into_response()
        } else {
            see_other(next)
        }
    } else if json {
        let now = core.now();
        let mut continue_with = a.continue_with.clone();
        continue_with
            .push(json!({ "action": "redirect_browser_to", "redirect_browser_to": target }));
        let mut body = json!({ "continue_with": continue_with });
        if let Some(o) = body.as_object_mut() {
            if let Some(s) = &a.session {
                o.insert(
                    "session".into(),
                    core.session_json(s, Some(&a.identity), View::Public, now),
                );
            }
            if kind == FlowKind::Registration {
                o.insert(
                    "identity".into(),
                    core.identity_json(&a.identity, View::Public),
                );
            }
        }
        Json(body).into_response()
    } else {
        see_other(a.next_page.as_deref().unwrap_or(&target))
    };
    if let (Some(token), Some(session)) = (&a.token, &a.session) {
        signed_in_cookies(core, &mut resp, token, session);
    }
    resp
}

/// Sets the cookies of a new session: the session cookie and a new CSRF secret bound to it,
/// so a token planted before sign-in is worthless, and so is any cookie planted after.
pub fn signed_in_cookies(
    core: &Core,
    resp: &mut Response,
    token: &str,
    session: &portcullis_core::session::Session,
) {
    add_cookie(resp, session_cookie(core, Some(token)));
    add_cookie(resp, csrf_cookie(core, &core.session_csrf_secret(session)));
}

/// A saved browser settings flow: JSON clients get the flow (with `continue_with` when the
/// flow has a return URL); browsers go to the return URL or back to the page, which now says
/// the changes were saved.
pub fn settings_saved(
    st: &AppState,
    flow: &Value,
    return_to: Option<&str>,
    json: bool,
) -> Response {
    let core = &st.core;
    let saved = flow.get("state").and_then(Value::as_str) == Some("success");
    if json && !saved {
        // New or revealed backup codes: the flow itself, to show them.
        return Json(flow.clone()).into_response();
    }
    if !saved {
        return see_other(&with_query(
            core.config().ui_url(FlowKind::Settings),
            "flow",
            flow.get("id").and_then(Value::as_str).unwrap_or_default(),
        ));
    }
    if json {
        let mut body = flow.clone();
        if let (Some(to), Some(o)) = (return_to, body.as_object_mut()) {
            let redirect = json!({ "action": "redirect_browser_to", "redirect_browser_to": to });
            match o.get_mut("continue_with") {
                Some(Value::Array(items)) => items.push(redirect),
                _ => {
                    o.insert("continue_with".into(), json!([redirect]));
                }
            }
        }
        return Json(body).into_response();
    }
    // Kratos' order: the flow's return_to, the settings flow's own after URL, else back to
    // the page (which now says the changes were saved).
    let after = &core
        .config()
        .selfservice
        .flows
        .settings
        .after
        .default_browser_return_url;
    match (return_to, after.is_empty()) {
        (Some(to), _) => see_other(to),
        (None, false) => see_other(after),
        (None, true) => see_other(&with_query(
            core.config().ui_url(FlowKind::Settings),
            "flow",
            flow.get("id").and_then(Value::as_str).unwrap_or_default(),
        )),
    }
}

#[derive(Deserialize)]
struct LogoutUrlQuery {
    #[serde(default)]
    return_to: Option<String>,
}

async fn create_logout_url(
    State(st): State<AppState>,
    Query(q): Query<LogoutUrlQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let (session, _) = caller
        .session
        .as_ref()
        .ok_or(ApiError(Error::SessionInactive))?;
    let return_to = core.validate_return_to(q.return_to)?;
    let token = session.logout_token();
    let mut url = with_query(
        &format!("{}self-service/logout", core.public_url()),
        "token",
        &token,
    );
    if let Some(r) = return_to {
        url = with_query(&url, "return_to", &r);
    }
    Ok(Json(json!({ "logout_url": url, "logout_token": token })))
}

#[derive(Deserialize)]
struct LogoutQuery {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LogoutQuery>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let core = &st.core;
    let json = wants_json(&headers);
    let outcome = async {
        let return_to = core.validate_return_to(q.return_to)?;
        let token = q.token.unwrap_or_default();
        if token.is_empty() {
            return Err(Error::bad_request(
                "The query parameter `token` (the logout token) is required.",
            ));
        }
        // Already signed out: nothing to end, go on.
        let session = caller.session.as_ref().map(|(s, _)| s);
        core.logout_with_token(session, &token, &caller.origin(), core.now())
            .await?;
        Ok(return_to)
    }
    .await;
    match outcome {
        Ok(return_to) => {
            let mut resp = if json {
                StatusCode::NO_CONTENT.into_response()
            } else {
                see_other(
                    return_to
                        .as_deref()
                        .unwrap_or_else(|| core.config().after_logout_url()),
                )
            };
            add_cookie(&mut resp, session_cookie(core, None));
            // A new CSRF secret, so nothing issued during the session stays usable.
            add_cookie(
                &mut resp,
                csrf_cookie(core, &portcullis_core::csrf::new_secret()),
            );
            resp
        }
        Err(e) if json => ApiError(e).into_response(),
        Err(e) => html_error(&st, FlowKind::Login, Step::Submit, e.into()).await,
    }
}

#[derive(Deserialize)]
struct ErrorQuery {
    #[serde(default)]
    id: Option<String>,
}

async fn get_error(
    State(st): State<AppState>,
    Query(q): Query<ErrorQuery>,
) -> ApiResult<Json<Value>> {
    let id =
        q.id.filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::bad_request("The query parameter `id` is required."))?;
    Ok(Json(stored_error(&st.core, &id).await?))
}
