//! Sign-ups (`<SignUp/>`): `POST /v1/client/sign_ups` (address, password, names) mails a code
//! and answers `missing_requirements` with the address unverified by `email_code`, which
//! clerk-js takes to mean the code is on its way; `prepare_verification` mails a new one;
//! `attempt_verification` takes it and answers `complete` with the new session, which the
//! client holds from then on. `GET` and `PATCH` (nothing is ever missing) read it. The core
//! runs each step as a registration on the code method's path (`clerk_sign_up.rs`).

use super::client::{self, ClientState, SignUpState};
use super::{clerk_error, problems, Form, Method};
use crate::extract::CallerCtx;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::selfservice::{ClerkSignUp, SignUpStep};
use portcullis_core::webhooks::clerk_user_id;
use serde_json::{json, Value};

pub(super) fn sign_up_json(s: &SignUpState) -> Value {
    let complete = s.status == "complete";
    json!({
        "object": "sign_up",
        "id": s.id,
        "status": s.status,
        "required_fields": ["email_address", "password"],
        "optional_fields": ["first_name", "last_name"],
        "missing_fields": [],
        "unverified_fields": if complete { json!([]) } else { json!(["email_address"]) },
        "verifications": {
            "email_address": {
                "object": "verification",
                "status": if complete { "verified" } else { "unverified" },
                "strategy": "email_code",
                "attempts": s.attempts,
                "expire_at": s.expire_at,
                "next_action": if complete { "" } else { "needs_attempt" },
                "supported_strategies": ["email_code"],
            },
            "phone_number": null,
            "web3_wallet": null,
            "external_account": null,
        },
        "username": null,
        "email_address": s.email,
        "phone_number": null,
        "web3_wallet": null,
        "first_name": s.first_name,
        "last_name": s.last_name,
        // clerk-js reads `has_password`; the spec names it `password_enabled`.
        "has_password": true,
        "password_enabled": true,
        "unsafe_metadata": {},
        "public_metadata": {},
        "custom_action": false,
        "external_id": null,
        "created_session_id": s.session_id,
        "created_user_id": s.user_id,
        "abandon_at": s.expire_at,
        "legal_accepted_at": null,
        "locale": null,
        "protect_check": null,
    })
}

/// How soon after the sign-up began a `prepare_verification` is clerk-js 5's own, not a
/// "Resend" (the UI counts down 30 s before it offers one).
const AUTO_PREPARE_MS: i64 = 20_000;

/// The sign-up `id` of the request's client.
fn own(st: &AppState, headers: &HeaderMap, id: &str) -> Option<(ClientState, SignUpState)> {
    let c = client::read(st, headers)?;
    let s = c.sign_up.clone().filter(|s| s.id == id)?;
    Some((c, s))
}

/// `POST /v1/client/sign_ups`.
pub(super) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let now = st.core.now();
    let mut c = client::read_or_new(&st, &headers, now);
    if let Some(strategy) = f.get("strategy").filter(|s| !s.is_empty()) {
        return clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "strategy_for_user_invalid",
            "This strategy is not available.",
            &format!("Signing up with {strategy:?} is not served by Portcullis; send an email address and a password."),
        );
    }
    let text = |k: &str| {
        f.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let fields = ClerkSignUp {
        email: text("email_address").unwrap_or_default(),
        password: f.get("password").cloned().unwrap_or_default(),
        first_name: text("first_name"),
        last_name: text("last_name"),
    };
    let mut sign_up = SignUpState {
        id: String::new(),
        flow_id: uuid::Uuid::nil(),
        email: fields.email.clone(),
        first_name: fields.first_name.clone(),
        last_name: fields.last_name.clone(),
        status: "missing_requirements".into(),
        expire_at: 0,
        created_at: client::ms(now),
        attempts: 0,
        session_id: None,
        user_id: None,
    };
    match st.core.clerk_sign_up(fields, &caller, now).await {
        Ok(SignUpStep::CodeSent {
            flow_id,
            expires_at,
        }) => {
            sign_up.id = format!("sua_{}", flow_id.simple());
            sign_up.flow_id = flow_id;
            sign_up.expire_at = client::ms(expires_at);
        }
        Ok(other) => return refusal(other),
        Err(e) => return super::core_error(e),
    }
    c.sign_up = Some(sign_up.clone());
    client::answer(&st, &headers, c, sign_up_json(&sign_up)).await
}

/// `GET /v1/client/sign_ups/{id}`.
pub(super) async fn get(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match own(&st, &headers, &id) {
        Some((_, s)) => {
            Json(json!({ "response": sign_up_json(&s), "client": null })).into_response()
        }
        None => super::not_found().await,
    }
}

/// `POST /v1/client/sign_ups/{id}?_method=PATCH`: clerk-js's `update` fills missing fields;
/// none ever is, so the sign-up is answered as it stands.
pub(super) async fn update(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(m): Query<Method>,
) -> Response {
    if !m.method.eq_ignore_ascii_case("PATCH") {
        return super::not_found().await;
    }
    match own(&st, &headers, &id) {
        Some((c, s)) => client::answer(&st, &headers, c, sign_up_json(&s)).await,
        None => super::not_found().await,
    }
}

/// `POST /v1/client/sign_ups/{id}/prepare_verification` with `strategy=email_code`.
pub(super) async fn prepare_verification(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some((mut c, mut s)) = own(&st, &headers, &id) else {
        return super::not_found().await;
    };
    if let Err(r) = email_code_only(&f, &s) {
        return r;
    }
    let now = st.core.now();
    // The sign-up mailed its code already. clerk-js 6 sees that (`strategy: email_code`) and
    // goes straight to the code; clerk-js 5 asks to prepare anyway as its code page opens,
    // sometimes twice (a first request aborted as the page renders again). Those prepares,
    // sooner than any "Resend" the UI allows, mail nothing more: one sign-up, one mail, one
    // code that works, on either generation.
    if client::ms(now) - s.created_at < AUTO_PREPARE_MS {
        c.sign_up = Some(s.clone());
        return client::answer(&st, &headers, c, sign_up_json(&s)).await;
    }
    match st.core.clerk_sign_up_resend(s.flow_id, &caller, now).await {
        Ok(SignUpStep::CodeSent { expires_at, .. }) => {
            s.expire_at = client::ms(expires_at);
            s.attempts = 0;
        }
        Ok(other) => return refusal(other),
        Err(e) => return super::core_error(e),
    }
    c.sign_up = Some(s.clone());
    client::answer(&st, &headers, c, sign_up_json(&s)).await
}

/// `POST /v1/client/sign_ups/{id}/attempt_verification` with `strategy=email_code&code=…`.
pub(super) async fn attempt_verification(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some((mut c, mut s)) = own(&st, &headers, &id) else {
        return super::not_found().await;
    };
    if let Err(r) = email_code_only(&f, &s) {
        return r;
    }
    let code = f.get("code").map(String::as_str).unwrap_or_default();
    let now = st.core.now();
    match st
        .core
        .clerk_sign_up_verify(s.flow_id, code, &caller, now)
        .await
    {
        Ok(SignUpStep::Complete(done)) => {
            s.status = "complete".into();
            s.user_id = Some(clerk_user_id(&done.identity.id.to_string()));
            if let (Some(session), Some(token)) = (&done.session, done.token.clone()) {
                s.session_id = Some(format!("sess_{}", session.id.simple()));
                client::add_session(&mut c, token);
            }
        }
        Ok(other) => {
            // A wrong code counts; the sign-up shows it.
            s.attempts = s.attempts.saturating_add(1);
            let mut resp = refusal(other);
            c.sign_up = Some(s);
            client::set_cookie(&st, &mut resp, &c);
            return resp;
        }
        Err(e) => return super::core_error(e),
    }
    c.sign_in = None;
    c.sign_up = Some(s.clone());
    client::answer(&st, &headers, c, sign_up_json(&s)).await
}

/// Verifications other than a mailed code are not served; a finished sign-up takes none.
#[allow(clippy::result_large_err)]
fn email_code_only(
    f: &std::collections::HashMap<String, String>,
    s: &SignUpState,
) -> Result<(), Response> {
    if s.status == "complete" {
        return Err(clerk_error(
            StatusCode::BAD_REQUEST,
            "verification_already_verified",
            "This email address has already been verified.",
            "The sign-up is complete.",
        ));
    }
    match f.get("strategy").map(String::as_str) {
        Some("email_code") => Ok(()),
        _ => Err(super::field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "strategy_for_user_invalid",
            "This strategy is not available.",
            "Portcullis verifies sign-ups by a code mailed to the address (strategy=email_code).",
            "strategy",
        )),
    }
}

/// A step that did not go on: the fields' problems, or an expired sign-up.
fn refusal(step: SignUpStep) -> Response {
    match step {
        SignUpStep::Refused(list) => problems(&list),
        SignUpStep::Expired => clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "verification_expired",
            "This verification has expired.",
            "This sign-up has expired; start again.",
        ),
        SignUpStep::CodeSent { .. } | SignUpStep::Complete(_) => clerk_error(
            StatusCode::CONFLICT,
            "sign_up_state_invalid",
            "The sign-up is not in that state.",
            "Start a new sign-up.",
        ),
    }
}
