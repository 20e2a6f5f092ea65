//! The Kratos public API (port 4433): flow init for API clients, reading and submitting flows
//! of either type (a browser flow's outcome is answered by `browser`), sessions and schemas.

use crate::browser;
use crate::error::{submit_error_json, ApiError, ApiResult, EdgeError};
use crate::extract::{
    parse_uuid, request_url, truthy, wants_json, CallerCtx, JsonBody, Query, SubmitBody,
};
use crate::paging::{Page, PageQuery};
use crate::AppState;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::identity::View;
use portcullis_core::selfservice::SubmitError;
use portcullis_core::service::{Authenticated, Caller};
use portcullis_core::store::SessionQuery;
use portcullis_core::Error;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The routes; self-service submits take at most `serve.max_submit_size` (F6).
pub fn router(config: &portcullis_core::config::Config) -> Router<AppState> {
    let submit_limit = DefaultBodyLimit::max(
        usize::try_from(config.serve.max_submit_size.0).unwrap_or(usize::MAX),
    );
    Router::new()
        .route("/self-service/login/api", get(init_login))
        .route("/self-service/registration/api", get(init_registration))
        .route("/self-service/settings/api", get(init_settings))
        .route("/self-service/{flow}/flows", get(get_flow))
        .route(
            "/self-service/login",
            post(submit_login).layer(submit_limit),
        )
        .route(
            "/self-service/registration",
            post(submit_registration).layer(submit_limit),
        )
        .route(
            "/self-service/settings",
            post(submit_settings)
                .get(continue_settings)
                .layer(submit_limit),
        )
        .route(
            "/self-service/logout/api",
            delete(logout_api).layer(submit_limit),
        )
        .route("/sessions/whoami", any(whoami))
        .route("/sessions/token-exchange", get(token_exchange))
        .route(
            "/sessions",
            get(list_my_sessions).delete(revoke_my_other_sessions),
        )
        .route("/sessions/{id}", delete(revoke_my_session))
        .route("/schemas", get(list_schemas))
        .route("/schemas/{id}", get(get_schema))
        .route("/.well-known/ory/webauthn.js", get(webauthn_script))
}

/// The script of the WebAuthn and passkey forms. Pages load it with an integrity hash and
/// `crossorigin="anonymous"`, so pages of another origin (a UI of its own) may read it. Not
/// cached without asking: after an upgrade a stale copy would fail the pages' hash.
async fn webauthn_script() -> Response {
    use axum::http::header;
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=UTF-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        portcullis_core::methods::webauthn::SCRIPT,
    )
        .into_response()
}

#[derive(Deserialize)]
struct InitQuery {
    /// A native app signing in with a provider asks for an exchange code.
    #[serde(default)]
    return_session_token_exchange_code: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    aal: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

/// The query of a flow init that takes only `return_to`.
#[derive(Deserialize)]
pub(crate) struct FlowInitQuery {
    #[serde(default)]
    pub return_to: Option<String>,
}

#[derive(Deserialize)]
struct FlowIdQuery {
    id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SubmitQuery {
    pub flow: Option<String>,
}

pub(crate) fn flow_id(raw: Option<String>, param: &str) -> Result<uuid::Uuid, ApiError> {
    match raw {
        Some(r) if !r.is_empty() => parse_uuid(&r, "flow id"),
        _ => Err(ApiError::bad_request(format!(
            "The query parameter `{param}` (the flow id) is required."
        ))),
    }
}

async fn init_login(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<InitQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let now = core.now();
    let mut flow = core
        .create_login_flow(
            FlowType::Api,
            request_url(core.public_url(), &uri),
            truthy(&q.refresh),
            q.aal.as_deref(),
            q.return_to,
            &caller,
            now,
        )
        .await?;
    let exchange = truthy(&q.return_session_token_exchange_code);
    api_flow_answer(core, &mut flow, exchange, now).await
}

/// An API flow, with its `session_token_exchange_code` when the app asked for one (shown
/// once: only its hash is kept).
async fn api_flow_answer(
    core: &portcullis_core::service::Core,
    flow: &mut portcullis_core::flow::Flow,
    exchange: bool,
    now: time::OffsetDateTime,
) -> ApiResult<Json<Value>> {
    let code = match exchange {
        true => Some(core.add_token_exchange(flow, now).await?),
        false => None,
    };
    let mut body = core.flow_response(flow, None);
    if let (Some(code), Some(o)) = (code, body.as_object_mut()) {
        o.insert("session_token_exchange_code".into(), json!(code));
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct ExchangeQuery {
    #[serde(default)]
    init_code: Option<String>,
    #[serde(default)]
    return_to_code: Option<String>,
}

/// `GET /sessions/token-exchange`: a native app's session token after a social sign-in in
/// the system browser.
async fn token_exchange(
    State(st): State<AppState>,
    Query(q): Query<ExchangeQuery>,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let now = core.now();
    let (token, session, identity) = core
        .exchange_session_token(
            q.init_code.as_deref().unwrap_or_default(),
            q.return_to_code.as_deref().unwrap_or_default(),
            now,
        )
        .await?;
    Ok(Json(json!({
        "session_token": token,
        "session": core.session_json(&session, Some(&identity), View::Public, now),
    })))
}

async fn init_registration(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<InitQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let now = core.now();
    let mut flow = core
        .create_registration_flow(
            FlowType::Api,
            request_url(core.public_url(), &uri),
            q.return_to,
            &caller,
            now,
        )
        .await?;
    let exchange = truthy(&q.return_session_token_exchange_code);
    api_flow_answer(core, &mut flow, exchange, now).await
}

async fn init_settings(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<InitQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let (flow, identity) = core
        .create_settings_flow(
            FlowType::Api,
            request_url(core.public_url(), &uri),
            q.return_to,
            &caller,
            core.now(),
        )
        .await?;
    Ok(Json(core.flow_response(&flow, Some(&identity))))
}

/// `GET /self-service/{login,registration,settings}/flows?id=`.
async fn get_flow(
    State(st): State<AppState>,
    Path(segment): Path<String>,
    Query(q): Query<FlowIdQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let kind = browser::flow_kind(&segment)?;
    let caller = &caller;
    let core = &st.core;
    let id = flow_id(q.id, "id")?;
    let now = core.now();
    if kind == FlowKind::Settings {
        let (flow, identity) = core.get_settings_flow(id, caller, now).await?;
        return Ok(Json(core.flow_response(&flow, Some(&identity))));
    }
    let flow = core.load_flow(kind, id, caller, now).await?;
    Ok(Json(core.flow_response(&flow, None)))
}

fn authenticated_body(st: &AppState, a: &Authenticated, with_identity: bool) -> Value {
    let core = &st.core;
    let now = core.now();
    let mut v = Map::new();
    if let Some(s) = &a.session {
        let mut session = core.session_json(s, Some(&a.identity), View::Public, now);
        // A session that still needs its second factor shows no identity (Kratos sets it
        // to null): the app continues with an `aal=aal2` flow and the token.
        if let (Some(_), Some(o)) = (&a.second_factor, session.as_object_mut()) {
            o.insert("identity".into(), Value::Null);
        }
        v.insert("session".into(), session);
    }
    if with_identity {
        v.insert(
            "identity".into(),
            core.identity_json(&a.identity, View::Public),
        );
    }
    let mut continue_with = a.continue_with.clone();
    if let Some(t) = &a.token {
        v.insert("session_token".into(), json!(t));
        continue_with.insert(
            0,
            json!({ "action": "set_ory_session_token", "ory_session_token": t }),
        );
    }
    v.insert("continue_with".into(), Value::Array(continue_with));
    Value::Object(v)
}

/// A submit whose body the edge refused: an HTML form too large for `serve.max_submit_size`
/// gets the error page, as a failed browser submit does, since a user sent it and a browser
/// would show a bare JSON error; every other refusal is the error itself.
pub(crate) async fn refused_body(
    st: &AppState,
    headers: &axum::http::HeaderMap,
    e: EdgeError,
) -> Response {
    let form =
        crate::extract::content_type(headers).starts_with("application/x-www-form-urlencoded");
    if form && !wants_json(headers) && matches!(e, EdgeError::PayloadTooLarge(_)) {
        browser::html_edge_error(st, e).await
    } else {
        e.into_response()
    }
}

/// Submits a login or registration flow of either type. API flows answer JSON with a session
/// token; browser flows set the session cookie and answer 303 or JSON (see `browser`).
async fn submit_authenticating(
    st: AppState,
    kind: FlowKind,
    q: SubmitQuery,
    headers: axum::http::HeaderMap,
    caller: Caller,
    submitted: Result<SubmitBody, EdgeError>,
) -> Response {
    let json = wants_json(&headers);
    let submitted = match submitted {
        Ok(s) => s,
        Err(e) => return refused_body(&st, &headers, e).await,
    };
    let outcome = async {
        let id = flow_id(q.flow, "flow").map_err(|ApiError(e)| SubmitError::Refused(e))?;
        let now = st.core.now();
        match kind {
            FlowKind::Registration => {
                st.core
                    .submit_registration(id, submitted.registration(), &caller, now)
                    .await
            }
            _ => {
                st.core
                    .submit_login(id, submitted.login(), &caller, now)
                    .await
            }
        }
    }
    .await;
    match outcome {
        Ok(a) if a.flow_type == FlowType::Browser => {
            browser::authenticated(&st, kind, "password", &a, json)
        }
        Ok(a) => Json(authenticated_body(&st, &a, kind == FlowKind::Registration)).into_response(),
        Err(e) if json => submit_error_json(&st.core, e),
        Err(e) => browser::html_error(&st, kind, browser::Step::Submit, e).await,
    }
}

async fn submit_login(
    State(st): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: axum::http::HeaderMap,
    CallerCtx(caller): CallerCtx,
    body: Result<SubmitBody, EdgeError>,
) -> Response {
    submit_authenticating(st, FlowKind::Login, q, headers, caller, body).await
}

async fn submit_registration(
    State(st): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: axum::http::HeaderMap,
    CallerCtx(caller): CallerCtx,
    body: Result<SubmitBody, EdgeError>,
) -> Response {
    submit_authenticating(st, FlowKind::Registration, q, headers, caller, body).await
}

async fn submit_settings(
    State(st): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: axum::http::HeaderMap,
    CallerCtx(caller): CallerCtx,
    submitted: Result<SubmitBody, EdgeError>,
) -> Response {
    let json = wants_json(&headers);
    let submitted = match submitted {
        Ok(s) => s,
        Err(e) => return refused_body(&st, &headers, e).await,
    };
    let outcome = async {
        let id = flow_id(q.flow, "flow").map_err(|ApiError(e)| SubmitError::Refused(e))?;
        st.core
            .submit_settings(id, submitted.settings(), &caller, st.core.now())
            .await
    }
    .await;
    match outcome {
        Ok((flow, identity)) => {
            let body = st.core.flow_response(&flow, Some(&identity));
            if flow.flow_type == FlowType::Browser {
                browser::settings_saved(&st, &body, flow.return_to.as_deref(), json)
            } else {
                Json(body).into_response()
            }
        }
        Err(e) if json => submit_error_json(&st.core, e),
        Err(e) => browser::html_error(&st, FlowKind::Settings, browser::Step::Submit, e).await,
    }
}

/// `GET /self-service/settings?flow=`: where a re-authentication returns to; shows the flow
/// again on its page.
async fn continue_settings(
    State(st): State<AppState>,
    Query(q): Query<SubmitQuery>,
) -> ApiResult<Response> {
    let id = flow_id(q.flow, "flow")?;
    let ui = st.core.config().ui_url(FlowKind::Settings);
    Ok(browser::see_other(&browser::with_query(
        ui,
        "flow",
        &id.to_string(),
    )))
}

async fn logout_api(
    State(st): State<AppState>,
    CallerCtx(caller): CallerCtx,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    let token = body
        .get("session_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("The field `session_token` is required."))?;
    st.core
        .logout_token(token, &caller.origin(), st.core.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's session for `/sessions*`: it must satisfy `session.whoami.required_aal`
/// too, or a password alone could list and end the sessions that used the second factor.
fn require_session<'c>(
    st: &AppState,
    caller: &'c Caller,
) -> Result<
    &'c (
        portcullis_core::session::Session,
        portcullis_core::identity::Identity,
    ),
    ApiError,
> {
    let found = caller
        .session
        .as_ref()
        .ok_or(ApiError(Error::SessionInactive))?;
    st.core.require_whoami_aal(&found.0, &found.1)?;
    Ok(found)
}

#[derive(Deserialize)]
struct WhoamiQuery {
    tokenize_as: Option<String>,
}

/// The one endpoint that also takes an access JWT: it only reads. Minting a `tokenize_as`
/// token needs the session token itself, or an access token would mint longer-lived ones.
async fn whoami(
    State(st): State<AppState>,
    Query(q): Query<WhoamiQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let now = st.core.now();
    use crate::extract::{presented_session, Presented};
    use portcullis_core::sessions::Credential;
    let (s, i, credential) =
        match presented_session(&headers, &st.core.config().session.cookie.name) {
            Presented::Token(t) => st.core.authenticate_to_read(t, now).await?,
            Presented::Cookies(jar) => {
                let (s, i) = st.core.authenticate_cookies(&jar, now).await?;
                (s, i, Credential::SessionToken)
            }
            Presented::None => return Err(ApiError(Error::SessionInactive)),
        };
    let (s, i) = (&s, &i);
    st.core.require_whoami_aal(s, i)?;
    let mut body = st.core.session_json(s, Some(i), View::Public, now);
    if let Some(template) = q.tokenize_as.filter(|t| !t.is_empty()) {
        if credential == Credential::AccessToken {
            return Err(ApiError(Error::SessionInactive));
        }
        let tokenized = st.core.tokenize(s, i, &template, now).await?;
        if let Some(o) = body.as_object_mut() {
            o.insert("tokenized".into(), Value::String(tokenized));
        }
    }
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&i.id.to_string()) {
        resp.headers_mut()
            .insert("x-kratos-authenticated-identity-id", v);
    }
    Ok(resp)
}

async fn list_my_sessions(
    State(st): State<AppState>,
    Query(pq): Query<PageQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Response> {
    let (s, i) = require_session(&st, &caller)?;
    let core = &st.core;
    let now = core.now();
    let page = Page::from_query(&pq)?;
    let q = SessionQuery {
        identity_id: Some(i.id),
        active: Some(true),
        page_size: page.size + 1,
        after: page.after,
        except: Some(s.id),
    };
    let rows = core.list_sessions(&q, now).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|(s, i)| core.session_json(s, Some(i), View::Public, now))
        .collect();
    Ok(page.respond(
        core.public_url(),
        "sessions",
        items,
        rows.iter().map(|(s, _)| s.id).collect(),
    ))
}

async fn revoke_my_other_sessions(
    State(st): State<AppState>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let (s, i) = require_session(&st, &caller)?;
    let n = st
        .core
        .revoke_other_sessions(i.id, s.id, &caller.origin(), "sign_out_others")
        .await?;
    Ok(Json(json!({ "count": n })))
}

async fn revoke_my_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<StatusCode> {
    let (current, _) = require_session(&st, &caller)?;
    let id = parse_uuid(&id, "session id")?;
    st.core
        .revoke_own_session(current, id, &caller.origin(), st.core.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_schemas(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        st.core
            .schemas()
            .into_iter()
            .map(|s| json!({ "id": s.id, "schema": s.raw }))
            .collect(),
    ))
}

async fn get_schema(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let schemas = st.core.schemas();
    let by_id = |want: &str| schemas.iter().find(|s| s.id == want).copied();
    let schema = by_id(&id)
        .or_else(|| decoded.as_deref().and_then(by_id))
        .ok_or_else(|| {
            ApiError(Error::not_found(format!(
                "The identity schema {id:?} does not exist."
            )))
        })?;
    Ok(Json(schema.raw.clone()))
}
