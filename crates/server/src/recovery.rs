//! The recovery flow on the Kratos public API (API flow init, submit, the link an admin made)
//! and its admin routes (`POST /admin/recovery/code`, `/admin/recovery/link`). Browser init
//! goes through `browser`, like every flow.

use crate::browser::{self, see_other, signed_in_cookies, with_query};
use crate::error::{submit_error_json, ApiError, ApiResult, EdgeError};
use crate::extract::{parse_uuid, request_url, wants_json, CallerCtx, JsonBody, Query, SubmitBody};
use crate::public::{flow_id, refused_body, FlowInitQuery, SubmitQuery};
use crate::AppState;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::selfservice::{parse_expires_in, Recovered, RecoveryOutcome, SubmitError};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router(config: &portcullis_core::config::Config) -> Router<AppState> {
    let submit_limit = DefaultBodyLimit::max(
        usize::try_from(config.serve.max_submit_size.0).unwrap_or(usize::MAX),
    );
    Router::new()
        .route("/self-service/recovery/api", get(init_api))
        .route(
            "/self-service/recovery",
            post(submit).get(open_link).layer(submit_limit),
        )
}

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/recovery/code", post(admin_code))
        .route("/admin/recovery/link", post(admin_link))
}

async fn init_api(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<FlowInitQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let flow = core
        .create_recovery_flow(
            FlowType::Api,
            request_url(core.public_url(), &uri),
            q.return_to,
            &caller,
            core.now(),
        )
        .await?;
    Ok(Json(core.flow_response(&flow, None)))
}

async fn submit(
    State(st): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    CallerCtx(caller): CallerCtx,
    submitted: Result<SubmitBody, EdgeError>,
) -> Response {
    let json = wants_json(&headers);
    let submitted = match submitted {
        Ok(s) => s,
        Err(e) => return refused_body(&st, &headers, e).await,
    };
    let core = &st.core;
    let outcome = async {
        let id = flow_id(q.flow, "flow").map_err(|ApiError(e)| SubmitError::Refused(e))?;
        core.submit_recovery(id, submitted.address(), &caller, core.now())
            .await
    }
    .await;
    match outcome {
        Ok(RecoveryOutcome::Sent(flow)) if json || flow.flow_type == FlowType::Api => {
            Json(core.flow_response(&flow, None)).into_response()
        }
        Ok(RecoveryOutcome::Sent(flow)) => {
            see_other(&core.flow_page_url(FlowKind::Recovery, flow.id))
        }
        Ok(RecoveryOutcome::Recovered(r)) => recovered(&st, &r, json),
        Err(e) if json => submit_error_json(core, e),
        Err(e) => browser::html_error(&st, FlowKind::Recovery, browser::Step::Submit, e).await,
    }
}

/// A completed recovery. An app gets the flow with `continue_with` carrying its session
/// token and the settings flow; a browser gets the session cookie and goes to the settings
/// page (or, asking for JSON, the same flow with `continue_with`).
fn recovered(st: &AppState, r: &Recovered, json: bool) -> Response {
    let core = &st.core;
    let mut body = core.flow_response(&r.flow, None);
    let api = r.flow.flow_type == FlowType::Api;
    if api {
        if let Some(Value::Array(items)) = body.get_mut("continue_with") {
            items.insert(
                0,
                json!({ "action": "set_ory_session_token", "ory_session_token": r.token }),
            );
        }
        return Json(body).into_response();
    }
    let mut resp = if json {
        Json(body).into_response()
    } else {
        see_other(&core.flow_page_url(FlowKind::Settings, r.settings.id))
    };
    signed_in_cookies(core, &mut resp, &r.token, &r.session);
    resp
}

#[derive(Deserialize)]
struct LinkQuery {
    flow: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// `GET /self-service/recovery?flow=&token=`: a recovery link signs the browser in and goes
/// to the settings page. Without a token, the recovery page of the flow.
async fn open_link(
    State(st): State<AppState>,
    Query(q): Query<LinkQuery>,
    CallerCtx(mut caller): CallerCtx,
) -> Response {
    let core = &st.core;
    let id = match flow_id(q.flow, "flow") {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        // A flow an admin made for a browser gets this browser's anti-CSRF secret now.
        let fresh = browser::ensure_csrf(core, &mut caller);
        let mut resp = match core.adopt_flow(FlowKind::Recovery, id, &caller).await {
            Ok(()) => see_other(&core.flow_page_url(FlowKind::Recovery, id)),
            Err(e) => {
                return browser::html_error(
                    &st,
                    FlowKind::Recovery,
                    browser::Step::Submit,
                    e.into(),
                )
                .await
            }
        };
        if let Some(secret) = fresh {
            browser::add_csrf_cookie(core, &mut resp, &secret);
        }
        return resp;
    };
    match core
        .recover_with_link(id, &token, &caller, core.now())
        .await
    {
        Ok(r) => recovered(&st, &r, false),
        Err(e) => browser::html_error(&st, FlowKind::Recovery, browser::Step::Submit, e).await,
    }
}

fn admin_body(body: &Value) -> ApiResult<(uuid::Uuid, Option<std::time::Duration>)> {
    let id = body
        .get("identity_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("The field `identity_id` is required."))?;
    let id = parse_uuid(id, "identity_id")?;
    let expires_in = parse_expires_in(body.get("expires_in").unwrap_or(&Value::Null))?;
    Ok((id, expires_in))
}

/// `POST /admin/recovery/code`: 201 `{recovery_link, recovery_code, expires_at}`.
async fn admin_code(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let core = &st.core;
    let (id, expires_in) = admin_body(&body)?;
    let flow_type = match body.get("flow_type").and_then(Value::as_str) {
        None | Some("browser") => FlowType::Browser,
        Some("api") => FlowType::Api,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "flow_type must be \"browser\" or \"api\", not {other:?}."
            )))
        }
    };
    let r = core
        .admin_recovery(id, expires_in, flow_type, false, core.now())
        .await?;
    let link = with_query(
        &format!("{}self-service/recovery", core.public_url()),
        "flow",
        &r.flow.id.to_string(),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "recovery_link": link,
            "recovery_code": r.secret,
            "expires_at": portcullis_core::identity::rfc3339(r.expires_at),
        })),
    )
        .into_response())
}

/// `POST /admin/recovery/link`: 200 `{recovery_link, expires_at}`.
async fn admin_link(
    State(st): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let (id, expires_in) = admin_body(&body)?;
    let r = core
        .admin_recovery(id, expires_in, FlowType::Browser, true, core.now())
        .await?;
    Ok(Json(json!({
        "recovery_link": r.secret,
        "expires_at": portcullis_core::identity::rfc3339(r.expires_at),
    })))
}
