//! A client's sessions: `touch` (clerk-js's `setActive` and focus), `tokens` (`getToken()`),
//! `end` and `remove` (sign-out of one), and sign-out of all (`DELETE /v1/client/sessions`,
//! `DELETE /v1/client`). Only a session of the request's own client answers: another
//! client's is not found.

use super::client::{self, ClientState};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use serde_json::{json, Value};

/// A live session of the request's client: the session, its identity, its token.
type Live = (Session, Identity, String);

/// The client's live session `sid`, and all its live sessions.
async fn own_session(
    st: &AppState,
    headers: &HeaderMap,
    sid: &str,
) -> Option<(ClientState, Vec<Live>, Live)> {
    let mut c = client::read(st, headers)?;
    let live = client::live_sessions(st, &mut c, st.core.now()).await;
    let own = live
        .iter()
        .find(|(s, _, _)| format!("sess_{}", s.id.simple()) == sid)?
        .clone();
    Some((c, live, own))
}

async fn with_client(
    st: &AppState,
    headers: &HeaderMap,
    c: &ClientState,
    resource: Value,
    live: &[(Session, Identity, String)],
) -> Response {
    let now = st.core.now();
    let azp = client::origin(st, headers);
    let client = client::client_json(st, c, live, azp.as_deref(), now).await;
    let body = json!({ "response": resource, "client": client });
    let mut resp = Json(body).into_response();
    client::set_cookie(st, &mut resp, c);
    resp
}

/// `POST /v1/client/sessions/{id}/touch`.
pub(super) async fn touch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let Some((c, live, (s, i, _))) = own_session(&st, &headers, &sid).await else {
        return super::not_found().await;
    };
    let now = st.core.now();
    let azp = client::origin(&st, &headers);
    let jwt = st
        .core
        .clerk_token_for(&s, &i, None, azp.as_deref(), now)
        .await
        .ok();
    let resource = client::session_json(&st, &s, &i, jwt.as_deref(), now);
    with_client(&st, &headers, &c, resource, &live).await
}

/// `POST /v1/client/sessions/{id}/tokens`: the bare `{object: "token", jwt}`, for the
/// browser's origin (`azp`).
pub(super) async fn tokens(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let Some((_, _, (session, identity, _))) = own_session(&st, &headers, &sid).await else {
        return super::not_found().await;
    };
    let origin = client::origin(&st, &headers);
    match st
        .core
        .clerk_token_for(&session, &identity, None, origin.as_deref(), st.core.now())
        .await
    {
        Ok(jwt) => Json(json!({ "object": "token", "jwt": jwt })).into_response(),
        Err(e) => super::core_error(e),
    }
}

/// `POST /v1/client/sessions/{id}/end` and `…/remove`: signs that session out.
pub(super) async fn end(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let Some((mut c, _, (s, i, token))) = own_session(&st, &headers, &sid).await else {
        return super::not_found().await;
    };
    let now = st.core.now();
    let ended = match st
        .core
        .clerk_end_session(&token, &Default::default(), now)
        .await
    {
        Ok(Some(ended)) => ended,
        Ok(None) => s.clone(),
        Err(e) => return super::core_error(e),
    };
    c.sessions.retain(|t| *t != token);
    c.sign_in = None;
    let resource = client::session_json(&st, &ended, &i, None, now);
    let rest = client::live_sessions(&st, &mut c, now).await;
    with_client(&st, &headers, &c, resource, &rest).await
}

/// `DELETE /v1/client/sessions` and `DELETE /v1/client`: signs every session of the client out.
pub(super) async fn end_all(st: &AppState, headers: &HeaderMap) -> Response {
    let Some(mut c) = client::read(st, headers) else {
        return Json(json!({ "response": null, "client": null })).into_response();
    };
    let now = st.core.now();
    // Every session is ended, whichever fails; a failure keeps its token and is answered.
    let mut failed = None;
    let mut kept = vec![];
    for token in &c.sessions {
        let ended = st
            .core
            .clerk_end_session(token, &Default::default(), now)
            .await;
        if let Err(e) = ended {
            kept.push(token.clone());
            failed = Some(e);
        }
    }
    c.sessions = kept;
    if let Some(e) = failed {
        let mut resp = super::core_error(e);
        client::set_cookie(st, &mut resp, &c);
        return resp;
    }
    c.sign_in = None;
    let client = client::client_json(st, &c, &[], None, now).await;
    let mut resp = Json(json!({ "response": client.clone(), "client": client })).into_response();
    client::set_cookie(st, &mut resp, &c);
    resp
}
