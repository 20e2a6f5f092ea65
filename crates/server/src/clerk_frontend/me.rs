//! `/v1/me`, what `<UserProfile/>` and `user.update()` call: the signed-in user (`GET`), the
//! names (`PATCH`), the password (`change_password`), a new e-mail address with its code, the
//! active sessions and their revocation, and the account's deletion where
//! `clerk.frontend.delete_self` allows it. The session is the client's
//! `_clerk_session_id` (or its active one; the [`Me`] extractor), held to the whoami check;
//! another client's session is not found. The changes themselves are the core's
//! (`clerk_account.rs`).

use super::client::{self, ClientState};
use super::{clerk_error, field_error, problems};
use crate::extract::CallerCtx;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::identity::Identity;
use portcullis_core::selfservice::{AccountChange, NewAddress};
use portcullis_core::session::Session;
use portcullis_core::webhooks::clerk_user_id;
use serde_json::{json, Value};
use std::collections::HashMap;

type Params = Query<HashMap<String, String>>;

/// The signed-in user of a request: the client, and the session and identity it names.
pub(super) struct Me {
    pub client: ClientState,
    pub session: Session,
    pub identity: Identity,
}

impl axum::extract::FromRequestParts<AppState> for Me {
    type Rejection = Response;

    /// The client's session `_clerk_session_id` (else its active one), held to the whoami
    /// check (a second factor where `highest_available` enforces it) like every account route.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_out = || {
            clerk_error(
                StatusCode::UNAUTHORIZED,
                "authentication_invalid",
                "Unauthorized request",
                "You are signed out; sign in again.",
            )
        };
        let wanted = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "_clerk_session_id")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty());
        let mut c = client::read(st, &parts.headers).ok_or_else(signed_out)?;
        let live = client::live_sessions(st, &mut c, st.core.now()).await;
        let found = match wanted {
            Some(sid) => live
                .into_iter()
                .find(|(s, _, _)| format!("sess_{}", s.id.simple()) == sid),
            None => live.into_iter().last(),
        };
        // `live_sessions` has already dropped a session short of the account's second factor.
        let (session, identity, _) = found.ok_or_else(signed_out)?;
        Ok(Me {
            client: c,
            session,
            identity,
        })
    }
}

/// The id of the account's (one) address, as its `User` names it.
fn primary_address(st: &AppState, i: &Identity) -> Option<String> {
    client::user_json(st, i)
        .get("primary_email_address_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub(super) fn method(q: &HashMap<String, String>) -> String {
    q.get("_method")
        .map(|m| m.to_ascii_uppercase())
        .unwrap_or_default()
}

/// A change's answer: the user as saved, with the client.
async fn saved(st: &AppState, headers: &HeaderMap, m: Me, change: AccountChange) -> Response {
    match change {
        AccountChange::Saved(identity) => {
            let user = client::user_json(st, &identity);
            client::answer(st, headers, m.client, user).await
        }
        AccountChange::Refused(list) => problems(&list),
    }
}

/// `GET /v1/me`.
pub(super) async fn get(State(st): State<AppState>, headers: HeaderMap, m: Me) -> Response {
    let user = client::user_json(&st, &m.identity);
    client::answer(&st, &headers, m.client, user).await
}

/// `POST /v1/me?_method=PATCH` (names) and `?_method=DELETE` (the account).
pub(super) async fn post(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    Query(q): Params,
    CallerCtx(caller): CallerCtx,
    super::Form(f): super::Form,
) -> Response {
    let now = st.core.now();
    match method(&q).as_str() {
        "PATCH" => {
            if let Some(id) = f.get("primary_email_address_id") {
                if primary_address(&st, &m.identity).as_deref() != Some(id.as_str()) {
                    return field_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "form_param_value_invalid",
                        "This email address cannot be made primary.",
                        "The account holds one address; verify a new one to replace it.",
                        "primary_email_address_id",
                    );
                }
            }
            let change = st
                .core
                .clerk_set_names(
                    &m.session,
                    &m.identity,
                    f.get("first_name").map(String::as_str),
                    f.get("last_name").map(String::as_str),
                    &caller.origin(),
                    now,
                )
                .await;
            match change {
                Ok(change) => saved(&st, &headers, m, change).await,
                Err(e) => super::core_error(e),
            }
        }
        "DELETE" => {
            if !st.core.config().clerk.frontend.delete_self {
                return clerk_error(
                    StatusCode::FORBIDDEN,
                    "not_allowed_access",
                    "Deleting your account is not allowed.",
                    "Self-deletion is not enabled (clerk.frontend.delete_self).",
                );
            }
            let user_id = clerk_user_id(&m.identity.id.to_string());
            if let Err(e) = st
                .core
                .clerk_delete_self(&m.session, &m.identity, &caller.origin())
                .await
            {
                return super::core_error(e);
            }
            let deleted = json!({ "object": "user", "id": user_id, "deleted": true });
            client::answer(&st, &headers, m.client, deleted).await
        }
        _ => super::not_found().await,
    }
}

/// `POST /v1/me/change_password`.
pub(super) async fn change_password(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    CallerCtx(caller): CallerCtx,
    super::Form(f): super::Form,
) -> Response {
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let others = matches!(field("sign_out_of_other_sessions"), "true" | "1");
    let change = st
        .core
        .clerk_change_password(
            &m.session,
            &m.identity,
            field("current_password"),
            field("new_password"),
            others,
            &caller,
            st.core.now(),
        )
        .await;
    match change {
        Ok(change) => saved(&st, &headers, m, change).await,
        Err(e) => super::core_error(e),
    }
}

/// A session as `<UserProfile/>`'s device list shows it.
fn session_activity(s: &Session, status: &str) -> Value {
    let device = s.devices.last();
    let agent = device
        .and_then(|d| d.user_agent.clone())
        .unwrap_or_default();
    let mobile = agent.contains("Mobile");
    json!({
        "object": "session",
        "id": format!("sess_{}", s.id.simple()),
        "status": status,
        "expire_at": client::ms(s.expires_at),
        "abandon_at": client::ms(s.expires_at),
        "last_active_at": client::ms(s.authenticated_at),
        "latest_activity": {
            "object": "session_activity",
            "id": format!("sess_activity_{}", s.id.simple()),
            "device_type": if mobile { "Mobile" } else { "Desktop" },
            "is_mobile": mobile,
            "browser_name": browser_name(&agent),
            "browser_version": null,
            "ip_address": device.and_then(|d| d.ip_address.clone()),
            "city": device.and_then(|d| d.location.clone()),
            "country": null,
        },
        "actor": null,
        "created_at": client::ms(s.issued_at),
        "updated_at": client::ms(s.authenticated_at),
    })
}

fn browser_name(agent: &str) -> Option<&'static str> {
    ["Edg", "Firefox", "Chrome", "Safari"]
        .into_iter()
        .find(|b| agent.contains(b))
        .map(|b| if b == "Edg" { "Edge" } else { b })
}

/// `GET /v1/me/sessions/active`.
pub(super) async fn active_sessions(State(st): State<AppState>, m: Me) -> Response {
    match st.core.clerk_own_sessions(&m.identity, st.core.now()).await {
        Ok(list) => {
            let body: Vec<Value> = list.iter().map(|s| session_activity(s, "active")).collect();
            Json(Value::Array(body)).into_response()
        }
        Err(e) => super::core_error(e),
    }
}

/// `POST /v1/me/sessions/{id}/revoke`: one of the user's other sessions.
pub(super) async fn revoke_session(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    m: Me,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let Some(id) = sid
        .strip_prefix("sess_")
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
    else {
        return super::not_found().await;
    };
    let now = st.core.now();
    if let Err(e) = st
        .core
        .revoke_own_session(&m.session, id, &caller.origin(), now)
        .await
    {
        return super::core_error(e);
    }
    match st.core.session_by_id(id).await {
        Ok((s, _)) => {
            let body = session_activity(&s, "revoked");
            client::answer(&st, &headers, m.client, body).await
        }
        Err(e) => super::core_error(e),
    }
}

/// The Clerk `EmailAddress` of an address on its way to replacing the account's.
fn address_json(a: &NewAddress, now: i64) -> Value {
    let verification = match (a.verified, a.expires_at) {
        (true, _) => json!({
            "object": "verification_otp", "status": "verified", "strategy": "email_code",
            "attempts": null, "expire_at": null,
        }),
        (false, Some(t)) => json!({
            "object": "verification_otp", "status": "unverified", "strategy": "email_code",
            "attempts": 0, "expire_at": client::ms(t),
        }),
        (false, None) => Value::Null,
    };
    json!({
        "object": "email_address",
        "id": format!("idn_{}", a.flow_id.simple()),
        "email_address": a.address,
        "verification": verification,
        "linked_to": [],
        "reserved": false,
        "matches_sso_connection": false,
        "created_at": now,
        "updated_at": now,
    })
}

/// The answer of an address step: the address with the client, or why not.
async fn address_answer(
    st: &AppState,
    headers: &HeaderMap,
    m: Me,
    step: Result<NewAddress, AccountChange>,
    now: time::OffsetDateTime,
) -> Response {
    match step {
        Ok(a) => client::answer(st, headers, m.client, address_json(&a, client::ms(now))).await,
        Err(change) => saved(st, headers, m, change).await,
    }
}

fn address_flow(id: &str) -> Option<uuid::Uuid> {
    id.strip_prefix("idn_")
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
}

/// `POST /v1/me/email_addresses`: an address to verify; verified, it replaces the account's.
pub(super) async fn add_address(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    CallerCtx(caller): CallerCtx,
    super::Form(f): super::Form,
) -> Response {
    let address = f.get("email_address").map(|a| a.trim()).unwrap_or_default();
    if address.is_empty() {
        return field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
            "Enter email address.",
            "email_address must be included.",
            "email_address",
        );
    }
    let now = st.core.now();
    match st
        .core
        .clerk_new_address(&m.session, &m.identity, address, &caller.origin(), now)
        .await
    {
        Ok(step) => address_answer(&st, &headers, m, step, now).await,
        Err(e) => super::core_error(e),
    }
}

/// `POST /v1/me/email_addresses/{id}/prepare_verification` with `strategy=email_code`.
pub(super) async fn prepare_address(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    m: Me,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let Some(flow) = address_flow(&id) else {
        return super::not_found().await;
    };
    let now = st.core.now();
    match st
        .core
        .clerk_send_address_code(&m.session, &m.identity, flow, &caller, now)
        .await
    {
        Ok(a) => address_answer(&st, &headers, m, Ok(a), now).await,
        Err(e) => super::core_error(e),
    }
}

/// `POST /v1/me/email_addresses/{id}/attempt_verification` with `code`.
pub(super) async fn attempt_address(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    m: Me,
    CallerCtx(caller): CallerCtx,
    super::Form(f): super::Form,
) -> Response {
    let Some(flow) = address_flow(&id) else {
        return super::not_found().await;
    };
    let code = f.get("code").map(String::as_str).unwrap_or_default();
    let now = st.core.now();
    match st
        .core
        .clerk_verify_address(&m.session, &m.identity, flow, code, &caller.origin(), now)
        .await
    {
        Ok(step) => address_answer(&st, &headers, m, step, now).await,
        Err(e) => super::core_error(e),
    }
}

/// `POST /v1/me/email_addresses/{id}?_method=DELETE`: only an unverified new address goes;
/// the account's one address stays.
pub(super) async fn remove_address(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    m: Me,
    Query(q): Params,
) -> Response {
    if method(&q) != "DELETE" {
        return super::not_found().await;
    }
    if primary_address(&st, &m.identity).as_deref() == Some(id.as_str()) {
        return clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_value_invalid",
            "The primary email address cannot be removed.",
            "The account needs an address: verify a new one to replace it.",
        );
    }
    let deleted = json!({ "object": "email_address", "id": id, "deleted": true });
    client::answer(&st, &headers, m.client, deleted).await
}
