//! `<UserProfile/>`'s "Two-step verification": `POST /v1/me/totp` (a new key, kept sealed in
//! the client until a code of it comes back), `…/totp/attempt_verification` (linked, with the
//! backup codes made alongside when the account has none), `DELETE /v1/me/totp` (clerk-js
//! sends `POST …?_method=DELETE`) and `POST /v1/me/backup_codes` (twelve new ones). The
//! rules are the core's (`clerk_factors.rs`).

use super::client::{self, PendingTotp};
use super::me::{method, Me};
use super::{clerk_error, problems};
use crate::extract::CallerCtx;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::selfservice::{FieldProblem, TotpVerified};
use portcullis_core::Error;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Clerk's TOTP object: the key while it is pending, never once linked.
fn totp_json(id: &str, key: Option<(&str, &str)>, codes: Option<&[String]>, at: i64) -> Value {
    json!({
        "object": "totp",
        "id": id,
        "secret": key.map(|(secret, _)| secret),
        "uri": key.map(|(_, uri)| uri),
        "verified": key.is_none(),
        "backup_codes": codes,
        "created_at": at,
        "updated_at": at,
    })
}

/// A refusal of the core in Clerk's envelope; a session too old to change the factors is
/// asked to sign in again.
fn refused(e: Error) -> Response {
    match e {
        Error::RefreshRequired { .. } => clerk_error(
            StatusCode::FORBIDDEN,
            "session_reverification_required",
            "Sign in again to change your two-step verification.",
            "This session signed in too long ago (selfservice.flows.settings.privileged_session_max_age).",
        ),
        e => super::core_error(e),
    }
}

/// `POST /v1/me/totp`: a key to scan, or `?_method=DELETE`, unlinking the app.
pub(super) async fn totp(
    State(st): State<AppState>,
    headers: HeaderMap,
    mut m: Me,
    Query(q): Query<HashMap<String, String>>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    if method(&q) == "DELETE" {
        return remove_totp(State(st), headers, m, CallerCtx(caller)).await;
    }
    let now = st.core.now();
    let key = match st.core.clerk_totp_start(&m.session, &m.identity, now) {
        Ok(Some(key)) => key,
        Ok(None) => {
            return clerk_error(
                StatusCode::BAD_REQUEST,
                "totp_already_enabled",
                "An authenticator app is already set up.",
                "Remove the authenticator app before adding another.",
            )
        }
        Err(e) => return refused(e),
    };
    let at = client::ms(now);
    let pending = PendingTotp {
        id: client::random_id("totp"),
        identity_id: m.identity.id,
        sealed: key.sealed.clone(),
        created_at: at,
    };
    let body = totp_json(&pending.id, Some((&key.secret, &key.url)), None, at);
    m.client.pending_totp = Some(pending);
    client::answer(&st, &headers, m.client, body).await
}

/// `POST /v1/me/totp/attempt_verification` with `code`.
pub(super) async fn verify_totp(
    State(st): State<AppState>,
    headers: HeaderMap,
    mut m: Me,
    CallerCtx(caller): CallerCtx,
    super::Form(f): super::Form,
) -> Response {
    let now = st.core.now();
    let pending = m
        .client
        .pending_totp
        .clone()
        .filter(|p| p.identity_id == m.identity.id);
    let code = f.get("code").map(String::as_str).unwrap_or_default();
    let verified = st
        .core
        .clerk_totp_verify(
            &m.session,
            &m.identity,
            pending.as_ref().map(|p| p.sealed.clone()),
            code,
            &caller.origin(),
            now,
        )
        .await;
    match verified {
        Ok(TotpVerified::Linked { backup_codes, .. }) => {
            m.client.pending_totp = None;
            let id = pending.map(|p| p.id).unwrap_or_default();
            let body = totp_json(
                &id,
                None,
                backup_codes.as_deref().map(Vec::as_slice),
                client::ms(now),
            );
            client::answer(&st, &headers, m.client, body).await
        }
        Ok(TotpVerified::Refused(text)) => problems(&[FieldProblem {
            param: Some("code".into()),
            text,
        }]),
        Err(e) => refused(e),
    }
}

/// `DELETE /v1/me/totp`.
pub(super) async fn remove_totp(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let now = st.core.now();
    match st
        .core
        .clerk_totp_remove(&m.session, &m.identity, &caller.origin(), now)
        .await
    {
        Ok(true) => {
            let deleted = json!({ "object": "totp", "id": null, "deleted": true });
            client::answer(&st, &headers, m.client, deleted).await
        }
        Ok(false) => super::not_found().await,
        Err(e) => refused(e),
    }
}

/// `POST /v1/me/backup_codes`: twelve new codes, shown this once.
pub(super) async fn backup_codes(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let now = st.core.now();
    match st
        .core
        .clerk_backup_codes(&m.session, &m.identity, &caller.origin(), now)
        .await
    {
        Ok(codes) => {
            let at = client::ms(now);
            let body = json!({
                "object": "backup_code",
                "id": client::random_id("bc"),
                "codes": &*codes,
                "created_at": at,
                "updated_at": at,
            });
            client::answer(&st, &headers, m.client, body).await
        }
        Err(e) => refused(e),
    }
}
