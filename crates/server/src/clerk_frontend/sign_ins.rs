//! Sign-ins: `POST /v1/client/sign_ins` (an identifier, and with `strategy=password` its
//! password at once), `GET /v1/client/sign_ins/{id}` and `…/attempt_first_factor`. A sign-in
//! offers the password whatever the identifier: an address without an account is answered
//! like one with, and refused like a wrong password, as the Kratos face does.

use super::client::{self, ClientState, SignInState};
use super::{clerk_error, field_error, Form};
use crate::extract::CallerCtx;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::clerk_session::SignedIn;
use serde_json::{json, Value};

pub(super) fn sign_in_json(s: &SignInState) -> Value {
    let complete = s.status == "complete";
    json!({
        "object": "sign_in",
        "id": s.id,
        "status": s.status,
        "supported_identifiers": ["email_address"],
        "identifier": s.identifier,
        "supported_first_factors": if complete { json!([]) } else { json!([{ "strategy": "password" }]) },
        "supported_second_factors": null,
        "first_factor_verification": if complete {
            json!({ "status": "verified", "strategy": "password", "attempts": null, "expire_at": null })
        } else {
            Value::Null
        },
        "second_factor_verification": null,
        "created_session_id": s.session_id,
        "user_data": null,
        "client_trust_state": null,
        "protect_check": null,
        "abandon_at": null,
    })
}

fn wrong_password() -> Response {
    field_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "form_password_incorrect",
        "Password is incorrect. Try again, or use another method.",
        "Password is incorrect. Try again, or use another method.",
        "password",
    )
}

/// `POST /v1/client/sign_ins`.
pub(super) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let now = st.core.now();
    let mut c = client::read_or_new(&st, &headers, now);
    let Some(identifier) = f.get("identifier").filter(|i| !i.trim().is_empty()) else {
        return field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
            "Enter email address.",
            "identifier must be included.",
            "identifier",
        );
    };
    let mut sign_in = SignInState {
        id: client::random_id("sia"),
        identifier: identifier.trim().to_string(),
        status: "needs_first_factor".into(),
        session_id: None,
    };
    if let (Some("password"), Some(password)) =
        (f.get("strategy").map(String::as_str), f.get("password"))
    {
        match attempt(&st, &mut c, &mut sign_in, password, &caller).await {
            Ok(()) => {}
            Err(r) => return r,
        }
    }
    c.sign_in = Some(sign_in.clone());
    client::answer(&st, &headers, c, sign_in_json(&sign_in)).await
}

/// `GET /v1/client/sign_ins/{id}`.
pub(super) async fn get(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match client::read(&st, &headers)
        .and_then(|c| c.sign_in)
        .filter(|s| s.id == id)
    {
        Some(s) => Json(json!({ "response": sign_in_json(&s), "client": null })).into_response(),
        None => super::not_found().await,
    }
}

/// `POST /v1/client/sign_ins/{id}/attempt_first_factor` with `strategy=password`.
pub(super) async fn attempt_first_factor(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some(mut c) = client::read(&st, &headers) else {
        return super::not_found().await;
    };
    let Some(mut sign_in) = c.sign_in.clone().filter(|s| s.id == id) else {
        return super::not_found().await;
    };
    if f.get("strategy").map(String::as_str) != Some("password") {
        return field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "strategy_for_user_invalid",
            "This strategy is not available.",
            "Only the password strategy is served by Portcullis yet.",
            "strategy",
        );
    }
    let password = f.get("password").cloned().unwrap_or_default();
    if let Err(r) = attempt(&st, &mut c, &mut sign_in, &password, &caller).await {
        return r;
    }
    c.sign_in = Some(sign_in.clone());
    client::answer(&st, &headers, c, sign_in_json(&sign_in)).await
}

/// Checks the password of `sign_in`'s identifier; right, the client gains the new session.
async fn attempt(
    st: &AppState,
    c: &mut ClientState,
    sign_in: &mut SignInState,
    password: &str,
    caller: &portcullis_core::service::Caller,
) -> Result<(), Response> {
    if sign_in.status == "complete" {
        return Err(clerk_error(
            StatusCode::BAD_REQUEST,
            "sign_in_already_complete",
            "This sign-in is complete.",
            "Start a new sign-in.",
        ));
    }
    if password.is_empty() {
        return Err(wrong_password());
    }
    let now = st.core.now();
    match st
        .core
        .clerk_password_sign_in(&sign_in.identifier, password, caller, now)
        .await
    {
        Ok(SignedIn::Session(session, token, _)) => {
            sign_in.status = "complete".into();
            sign_in.session_id = Some(format!("sess_{}", session.id.simple()));
            client::add_session(c, token);
            Ok(())
        }
        Ok(SignedIn::Refused) => Err(wrong_password()),
        Ok(SignedIn::SecondFactorRequired) => Err(clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "second_factor_required",
            "This account has a second factor.",
            "Signing in with a second factor is not served by Portcullis's Frontend API yet; use the hosted pages.",
        )),
        Err(e) => Err(super::core_error(e)),
    }
}
