//! A browser's Clerk client: its current sign-in and its sessions, kept sealed in the
//! `__client` cookie (HttpOnly, on the Frontend API's host), so any instance reads it and none
//! stores it. The sessions are Portcullis sessions: the cookie holds their tokens, each checked
//! on every request, so a session ended anywhere (sign-out, an admin, a password change) is
//! gone from the client at once.

use crate::AppState;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use portcullis_core::webhooks::clerk_user_id;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

pub(super) const COOKIE: &str = "__client";
/// The most sessions a client holds: each is checked, and given a token, on every read.
const MAX_SESSIONS: usize = 5;
/// A client lives as long as a session may.
const COOKIE_DAYS: i64 = 365;

/// What the cookie holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct ClientState {
    pub id: String,
    /// Session tokens (`ory_st_…`), newest last.
    pub sessions: Vec<String>,
    pub sign_in: Option<SignInState>,
    #[serde(default)]
    pub sign_up: Option<SignUpState>,
    /// An authenticator app being set up in `<UserProfile/>` (`me_factors.rs`).
    #[serde(default)]
    pub pending_totp: Option<PendingTotp>,
    pub created_at: i64,
}

/// A key shown to its user and not linked yet: sealed to the identity, so only its own
/// account's code links it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PendingTotp {
    pub id: String,
    pub identity_id: uuid::Uuid,
    pub sealed: String,
    pub created_at: i64,
}

/// A sign-up under way: its registration flow, and what the browser sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SignUpState {
    pub id: String,
    pub flow_id: uuid::Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `missing_requirements` or `complete`.
    pub status: String,
    /// When the code sent last stops working (ms).
    pub expire_at: i64,
    /// When the sign-up began and mailed its first code (ms; see
    /// `sign_ups::prepare_verification`).
    #[serde(default)]
    pub created_at: i64,
    pub attempts: u32,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
}

/// A sign-in under way (`sign_ins.rs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct SignInState {
    pub id: String,
    pub identifier: String,
    /// `needs_first_factor`, `needs_new_password`, `needs_second_factor` or `complete`.
    pub status: String,
    pub session_id: Option<String>,
    /// The id the mailed-code factors name the address by, made for this sign-in alone
    /// (alike for an address without an account); `None` when no code factor is on.
    #[serde(default)]
    pub email_address_id: Option<String>,
    /// The strategies the address is offered with besides the password (`email_code`,
    /// `reset_password_email_code`), fixed when the sign-in starts.
    #[serde(default)]
    pub address_factors: Vec<String>,
    /// The flow the last mailed code went out on (a login flow for `email_code`, a recovery
    /// flow for a reset), for which strategy, and when the code stops working (ms).
    #[serde(default)]
    pub code_flow: Option<uuid::Uuid>,
    #[serde(default)]
    pub code_strategy: Option<String>,
    #[serde(default)]
    pub code_expire_at: i64,
    /// The first factor that passed (its strategy), whose identity, and when (ms).
    #[serde(default)]
    pub first_factor: Option<String>,
    #[serde(default)]
    pub identity: Option<uuid::Uuid>,
    #[serde(default)]
    pub first_factor_at: i64,
    /// The second factors asked for, then the one that passed.
    #[serde(default)]
    pub second_factors: Vec<String>,
    #[serde(default)]
    pub second_factor: Option<String>,
    /// "Forgot password?" on an account with a second factor: the new password, set only
    /// once the second factor passes.
    #[serde(default)]
    pub reset: Option<portcullis_core::selfservice::PendingReset>,
}

/// Milliseconds since the epoch, Clerk's timestamps.
pub(super) fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(super) fn random_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The client a request's cookie names, if it is one this server sealed.
pub(super) fn read(st: &AppState, headers: &HeaderMap) -> Option<ClientState> {
    let value = crate::extract::cookies(headers, COOKIE).next()?.to_string();
    let plain = st.core.open_clerk_client(&value)?;
    serde_json::from_slice(&plain).ok()
}

/// The request's client, or a new one (its cookie is set with the answer).
pub(super) fn read_or_new(st: &AppState, headers: &HeaderMap, now: OffsetDateTime) -> ClientState {
    read(st, headers).unwrap_or_else(|| ClientState {
        id: random_id("client"),
        created_at: ms(now),
        ..ClientState::default()
    })
}

/// Adds a new session's token to the client. A client keeps its newest few sessions (the
/// environment is single-session); an older one is only forgotten by the client, not ended.
pub(super) fn add_session(c: &mut ClientState, token: String) {
    c.sessions.push(token);
    let excess = c.sessions.len().saturating_sub(MAX_SESSIONS);
    c.sessions.drain(..excess);
}

/// A client's sessions that are still alive, with their identities and tokens; the others
/// are forgotten.
pub(super) async fn live_sessions(
    st: &AppState,
    c: &mut ClientState,
    now: OffsetDateTime,
) -> Vec<(Session, Identity, String)> {
    let mut live = vec![];
    let mut kept = vec![];
    for token in &c.sessions {
        match st.core.authenticate(token, now).await {
            // Short of the second factor its account now has (`required_aal:
            // highest_available`): not signed in on this face, whose sign-in asks for it.
            Ok((s, i)) if st.core.require_whoami_aal(&s, &i).is_err() => {}
            Ok((s, i)) => {
                live.push((s, i, token.clone()));
                kept.push(token.clone());
            }
            // Ended: forgotten. Unreadable now (the database): kept for the next request.
            Err(portcullis_core::Error::SessionInactive) => {}
            Err(_) => kept.push(token.clone()),
        }
    }
    c.sessions = kept;
    live
}

/// Sets the cookie holding `c` on `resp`.
pub(super) fn set_cookie(st: &AppState, resp: &mut Response, c: &ClientState) {
    let Ok(plain) = serde_json::to_vec(c) else {
        return;
    };
    let Ok(sealed) = st.core.seal_clerk_client(&plain) else {
        return;
    };
    let secure = st.core.public_url().starts_with("https://");
    let cookie = format!(
        "{COOKIE}={sealed}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        COOKIE_DAYS * 24 * 3600,
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The `User` a browser reads of its own account: Clerk's backend `User` less what only a
/// backend sees (`private_metadata`), and `delete_self_enabled` as configured.
pub(super) fn user_json(st: &AppState, i: &Identity) -> Value {
    let config = st.core.config();
    let mut user = portcullis_core::webhooks::clerk_user(i, &config.webhooks.clerk_mapping);
    if let Some(o) = user.as_object_mut() {
        o.remove("private_metadata");
        o.insert(
            "delete_self_enabled".into(),
            json!(config.clerk.frontend.delete_self),
        );
    }
    user
}

/// The session as clerk-js reads it, with `user` and a fresh `last_active_token`.
pub(super) fn session_json(
    st: &AppState,
    s: &Session,
    i: &Identity,
    token: Option<&str>,
    now: OffsetDateTime,
) -> Value {
    let user = user_json(st, i);
    let status = if s.active && s.expires_at > now {
        "active"
    } else {
        "ended"
    };
    json!({
        "object": "session",
        "id": format!("sess_{}", s.id.simple()),
        "status": status,
        "expire_at": ms(s.expires_at),
        "abandon_at": ms(s.expires_at),
        "last_active_at": ms(s.authenticated_at),
        "last_active_organization_id": null,
        "last_active_token": token.map(|jwt| json!({ "object": "token", "jwt": jwt })),
        "factor_verification_age": [0, -1],
        "actor": null,
        "tasks": null,
        "user": user,
        "public_user_data": {
            "first_name": user.get("first_name"),
            "last_name": user.get("last_name"),
            "image_url": user.get("image_url"),
            "has_image": user.get("has_image"),
            "identifier": user.pointer("/email_addresses/0/email_address"),
            "user_id": clerk_user_id(&i.id.to_string()),
        },
        "created_at": ms(s.issued_at),
        "updated_at": ms(s.authenticated_at),
    })
}

/// The browser's origin, for a token's `azp`: `Origin` (on every POST), else the origin of
/// the `Referer` (a same-origin GET goes without `Origin`); only Portcullis's own and the
/// ones `serve.public.cors` lists, so no page picks the party its token names.
pub(super) fn origin(st: &AppState, headers: &HeaderMap) -> Option<String> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    header(header::ORIGIN)
        .filter(|o| *o != "null")
        .map(str::to_string)
        .or_else(|| {
            let referer = url::Url::parse(header(header::REFERER)?).ok()?;
            Some(referer.origin().ascii_serialization()).filter(|o| o != "null")
        })
        .filter(|o| crate::own_or_listed_origin(&st.core.config().serve.public, o))
}

/// The answer of a mutation: the resource and the whole client, and the cookie.
pub(super) async fn answer(
    st: &AppState,
    headers: &HeaderMap,
    mut c: ClientState,
    resource: Value,
) -> Response {
    let now = st.core.now();
    let live = live_sessions(st, &mut c, now).await;
    let azp = origin(st, headers);
    let client = client_json(st, &c, &live, azp.as_deref(), now).await;
    let body = json!({ "response": resource, "client": client });
    let mut resp = Json(body).into_response();
    set_cookie(st, &mut resp, &c);
    resp
}

/// The Client resource. The active session (the newest) carries a fresh token
/// (`last_active_token`): clerk-js reads the signed-in user's claims from it.
pub(super) async fn client_json(
    st: &AppState,
    c: &ClientState,
    live: &[(Session, Identity, String)],
    azp: Option<&str>,
    now: OffsetDateTime,
) -> Value {
    let mut sessions = vec![];
    for (n, (s, i, _)) in live.iter().enumerate() {
        let jwt = match n + 1 == live.len() {
            true => st.core.clerk_token_for(s, i, None, azp, now).await.ok(),
            false => None,
        };
        sessions.push(session_json(st, s, i, jwt.as_deref(), now));
    }
    let last = live
        .last()
        .map(|(s, _, _)| format!("sess_{}", s.id.simple()));
    json!({
        "object": "client",
        "id": c.id,
        "sessions": sessions,
        "sign_in": c.sign_in.as_ref().map(super::sign_ins::sign_in_json),
        "sign_up": c.sign_up.as_ref().map(super::sign_ups::sign_up_json),
        "last_active_session_id": last,
        "last_authentication_strategy": null,
        "cookie_expires_at": null,
        "captcha_bypass": false,
        "created_at": c.created_at,
        "updated_at": ms(now),
    })
}
