//! Sign-ins: `POST /v1/client/sign_ins` (an identifier, and with a password the password at
//! once), `GET /v1/client/sign_ins/{id}`, `…/prepare_first_factor` (a code mailed to the
//! address, to sign in or to reset the password), `…/attempt_first_factor` (the password or
//! that code), `…/reset_password` (the new password after a reset code) and
//! `…/attempt_second_factor` (an authenticator app's code or a backup code). A sign-in offers
//! the same factors whatever the identifier: an address without an account is answered like
//! one with, and refused like a wrong password or code, as the Kratos face does.

use super::client::{self, ClientState, SignInState};
use super::{clerk_error, field_error, Form};
use crate::extract::CallerCtx;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::selfservice::{
    FieldProblem, FirstFactor, FirstPassed, SecondFactor, SignedIn,
};
use portcullis_core::service::Caller;
use serde_json::{json, Value};
use time::OffsetDateTime;

pub(super) fn sign_in_json(s: &SignInState) -> Value {
    let complete = s.status == "complete";
    let mut first_factors = vec![json!({ "strategy": "password" })];
    if let Some(address_id) = &s.email_address_id {
        first_factors.extend(s.address_factors.iter().map(|strategy| {
            json!({
                "strategy": strategy,
                "safe_identifier": s.identifier,
                "email_address_id": address_id,
                "primary": true,
            })
        }));
    }
    let verified = |strategy: &Option<String>| json!({ "status": "verified", "strategy": strategy, "attempts": null, "expire_at": null });
    let first = match (&s.first_factor, s.code_flow) {
        (Some(_), _) => verified(&s.first_factor),
        (None, Some(_)) => json!({
            "status": "unverified",
            "strategy": s.code_strategy,
            "attempts": null,
            "expire_at": s.code_expire_at,
        }),
        (None, None) => Value::Null,
    };
    let second_factors: Vec<Value> = s
        .second_factors
        .iter()
        .map(|f| json!({ "strategy": f }))
        .collect();
    json!({
        "object": "sign_in",
        "id": s.id,
        "status": s.status,
        "supported_identifiers": ["email_address"],
        "identifier": s.identifier,
        "supported_first_factors": if complete { json!([]) } else { json!(first_factors) },
        "supported_second_factors": if second_factors.is_empty() { Value::Null } else { json!(second_factors) },
        "first_factor_verification": first,
        "second_factor_verification": s.second_factor.as_ref().map(|_| verified(&s.second_factor)),
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

fn wrong_code() -> Response {
    field_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "form_code_incorrect",
        "Incorrect code",
        // Clerk's own words: the components show `long_message` at the code.
        "Incorrect code",
        "code",
    )
}

fn strategy_invalid(long: &str) -> Response {
    field_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "strategy_for_user_invalid",
        "This strategy is not available.",
        long,
        "strategy",
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
    let address_factors: Vec<String> = [
        (st.core.clerk_email_code_enabled(), FirstFactor::EmailCode),
        (
            st.core.clerk_reset_password_enabled(),
            FirstFactor::ResetPasswordEmailCode,
        ),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, f)| f.strategy().to_string())
    .collect();
    let mut sign_in = SignInState {
        id: client::random_id("sia"),
        identifier: identifier.trim().to_string(),
        status: "needs_first_factor".into(),
        email_address_id: (!address_factors.is_empty()).then(|| client::random_id("idn")),
        address_factors,
        ..SignInState::default()
    };
    // clerk-js sends `strategy=password` with an autofilled password; Core 3's
    // `signIn.password()` sends the password alone.
    let strategy = f.get("strategy").map(String::as_str);
    if let (None | Some("password"), Some(password)) = (strategy, f.get("password")) {
        let signed = password_step(&st, &sign_in, password, &caller, now).await;
        if let Err(r) = settle(
            &mut c,
            &mut sign_in,
            signed,
            Some(FirstFactor::Password),
            now,
        ) {
            return r;
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
    match own(&st, &headers, &id) {
        Some((_, s)) => {
            Json(json!({ "response": sign_in_json(&s), "client": null })).into_response()
        }
        None => super::not_found().await,
    }
}

/// The request's client and its sign-in `id`.
/// The client with its sign-in `s` as it now stands, and the sign-in as the answer.
async fn answer(
    st: &AppState,
    headers: &HeaderMap,
    mut c: ClientState,
    s: SignInState,
) -> Response {
    let body = sign_in_json(&s);
    c.sign_in = Some(s);
    client::answer(st, headers, c, body).await
}

fn own(st: &AppState, headers: &HeaderMap, id: &str) -> Option<(ClientState, SignInState)> {
    let c = client::read(st, headers)?;
    let s = c.sign_in.clone().filter(|s| s.id == id)?;
    Some((c, s))
}

/// `POST /v1/client/sign_ins/{id}/prepare_first_factor` with `strategy=email_code` or
/// `strategy=reset_password_email_code` and the factor's `email_address_id`: mails the code
/// (again, on a second call).
pub(super) async fn prepare_first_factor(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some((mut c, mut s)) = own(&st, &headers, &id) else {
        return super::not_found().await;
    };
    if let Err(r) = first_factor_open(&s) {
        return r;
    }
    let strategy = f.get("strategy").map(String::as_str).unwrap_or_default();
    if strategy == FirstFactor::Password.strategy() {
        return answer(&st, &headers, c, s).await;
    }
    let Some(factor) = address_factor(&s, strategy) else {
        return strategy_invalid(STRATEGIES);
    };
    if f.get("email_address_id") != s.email_address_id.as_ref() {
        return field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_format_invalid",
            "Email address is invalid.",
            "email_address_id is not this sign-in's address.",
            "email_address_id",
        );
    }
    let now = st.core.now();
    // Asking again for the same strategy mails a new code on the same flow.
    let flow = s
        .code_flow
        .filter(|_| s.code_strategy.as_deref() == Some(strategy));
    let signed = code_step(&st, factor, flow, &s.identifier, None, &caller, now).await;
    if let Err(r) = settle(&mut c, &mut s, signed, Some(factor), now) {
        return r;
    }
    s.code_strategy = Some(strategy.to_string());
    answer(&st, &headers, c, s).await
}

const STRATEGIES: &str = "Portcullis signs in with strategy=password, or email_code and reset_password_email_code where they are enabled.";

/// The mailed-code factor `strategy` names, if the sign-in offers it.
fn address_factor(s: &SignInState, strategy: &str) -> Option<FirstFactor> {
    FirstFactor::parse(strategy)
        .filter(|f| *f != FirstFactor::Password)
        .filter(|_| s.email_address_id.is_some() && s.address_factors.iter().any(|a| a == strategy))
}

/// Mails (without `code`) or checks a sign-in or reset code.
async fn code_step(
    st: &AppState,
    factor: FirstFactor,
    flow: Option<uuid::Uuid>,
    identifier: &str,
    code: Option<&str>,
    caller: &Caller,
    now: OffsetDateTime,
) -> portcullis_core::Result<SignedIn> {
    match factor {
        FirstFactor::ResetPasswordEmailCode => {
            st.core
                .clerk_reset_code(flow, identifier, code, caller, now)
                .await
        }
        _ => {
            st.core
                .clerk_code_sign_in(flow, identifier, code, caller, now)
                .await
        }
    }
}

/// `POST /v1/client/sign_ins/{id}/attempt_first_factor`: `strategy=password&password=…`, or
/// `strategy=email_code&code=…` (or `reset_password_email_code`) after `prepare_first_factor`.
pub(super) async fn attempt_first_factor(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some((mut c, mut s)) = own(&st, &headers, &id) else {
        return super::not_found().await;
    };
    if let Err(r) = first_factor_open(&s) {
        return r;
    }
    let now = st.core.now();
    let strategy = f.get("strategy").map(String::as_str).unwrap_or_default();
    let settled = if strategy == FirstFactor::Password.strategy() {
        let password = f.get("password").map(String::as_str).unwrap_or_default();
        let signed = password_step(&st, &s, password, &caller, now).await;
        settle(&mut c, &mut s, signed, Some(FirstFactor::Password), now)
    } else {
        let Some(factor) = address_factor(&s, strategy) else {
            return strategy_invalid(STRATEGIES);
        };
        let Some(flow) = s
            .code_flow
            .filter(|_| s.code_strategy.as_deref() == Some(strategy))
        else {
            return clerk_error(
                StatusCode::BAD_REQUEST,
                "verification_missing",
                "No code was sent yet.",
                "Call prepare_first_factor with this strategy first.",
            );
        };
        let code = f.get("code").map(String::as_str).unwrap_or_default();
        if code.trim().is_empty() {
            return wrong_code();
        }
        let signed = code_step(
            &st,
            factor,
            Some(flow),
            &s.identifier,
            Some(code),
            &caller,
            now,
        )
        .await;
        settle(&mut c, &mut s, signed, Some(factor), now)
    };
    if let Err(r) = settled {
        return r;
    }
    answer(&st, &headers, c, s).await
}

/// `POST /v1/client/sign_ins/{id}/reset_password` with `password` and
/// `sign_out_of_other_sessions`, once the reset code came back.
pub(super) async fn reset_password(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some((mut c, mut s)) = own(&st, &headers, &id) else {
        return super::not_found().await;
    };
    let (Some(identity), Some(flow), "needs_new_password") =
        (s.identity, s.code_flow, s.status.as_str())
    else {
        return clerk_error(
            StatusCode::BAD_REQUEST,
            "sign_in_state_invalid",
            "This sign-in does not need a new password.",
            "Verify a reset_password_email_code first.",
        );
    };
    let password = f.get("password").map(String::as_str).unwrap_or_default();
    let sign_out_others = f
        .get("sign_out_of_other_sessions")
        .is_some_and(|v| v == "true");
    let now = st.core.now();
    let signed = st
        .core
        .clerk_reset_password(flow, identity, password, sign_out_others, &caller, now)
        .await;
    if let Err(r) = settle(
        &mut c,
        &mut s,
        signed,
        Some(FirstFactor::ResetPasswordEmailCode),
        now,
    ) {
        return r;
    }
    answer(&st, &headers, c, s).await
}

/// `POST /v1/client/sign_ins/{id}/attempt_second_factor` with `strategy=totp` or
/// `strategy=backup_code`, and `code`.
pub(super) async fn attempt_second_factor(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CallerCtx(caller): CallerCtx,
    Form(f): Form,
) -> Response {
    let Some((mut c, mut s)) = own(&st, &headers, &id) else {
        return super::not_found().await;
    };
    let (Some(identity), Some(first), "needs_second_factor") = (
        s.identity,
        s.first_factor.as_deref().and_then(FirstFactor::parse),
        s.status.as_str(),
    ) else {
        return clerk_error(
            StatusCode::BAD_REQUEST,
            "sign_in_state_invalid",
            "This sign-in does not need a second factor.",
            "Pass the first factor first; a complete sign-in takes no more.",
        );
    };
    let strategy = f.get("strategy").map(String::as_str).unwrap_or_default();
    let Some(factor) =
        SecondFactor::parse(strategy).filter(|_| s.second_factors.iter().any(|f| f == strategy))
    else {
        return strategy_invalid("This account's second factors are supported_second_factors.");
    };
    let code = f.get("code").map(String::as_str).unwrap_or_default();
    if code.trim().is_empty() {
        return wrong_code();
    }
    let now = st.core.now();
    let passed = FirstPassed {
        identity,
        first,
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(s.first_factor_at) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        reset: s.reset.clone(),
    };
    let signed = st
        .core
        .clerk_second_factor(passed, factor, code, &caller, now)
        .await;
    if let Err(r) = settle(&mut c, &mut s, signed, None, now) {
        return r;
    }
    s.second_factor = Some(strategy.to_string());
    answer(&st, &headers, c, s).await
}

/// A finished sign-in, or one at its second factor, takes no first factor.
#[allow(clippy::result_large_err)]
fn first_factor_open(s: &SignInState) -> Result<(), Response> {
    match s.status.as_str() {
        "needs_first_factor" => Ok(()),
        _ => Err(clerk_error(
            StatusCode::BAD_REQUEST,
            "sign_in_already_complete",
            "This sign-in is past its first factor.",
            "Start a new sign-in.",
        )),
    }
}

async fn password_step(
    st: &AppState,
    s: &SignInState,
    password: &str,
    caller: &Caller,
    now: OffsetDateTime,
) -> portcullis_core::Result<SignedIn> {
    if password.is_empty() {
        return Ok(SignedIn::Refused);
    }
    st.core
        .clerk_password_sign_in(&s.identifier, password, caller, now)
        .await
}

/// Applies a step's outcome to the sign-in and its client: the first factor `step` (`None`:
/// the second factor), refused as a wrong password or a wrong code.
#[allow(clippy::result_large_err)]
fn settle(
    c: &mut ClientState,
    s: &mut SignInState,
    signed: portcullis_core::Result<SignedIn>,
    step: Option<FirstFactor>,
    now: OffsetDateTime,
) -> Result<(), Response> {
    let refused = match step {
        Some(FirstFactor::Password) => wrong_password,
        _ => wrong_code,
    };
    let first = |s: &mut SignInState| {
        if let Some(f) = step {
            s.first_factor = Some(f.strategy().into());
        }
    };
    match signed.map_err(super::core_error)? {
        SignedIn::Session(session, token, _) => {
            first(s);
            s.status = "complete".into();
            s.session_id = Some(format!("sess_{}", session.id.simple()));
            s.identity = None;
            s.reset = None;
            client::add_session(c, token);
            Ok(())
        }
        SignedIn::SecondFactor {
            identity,
            factors,
            reset,
        } => {
            first(s);
            s.reset = reset;
            s.status = "needs_second_factor".into();
            s.identity = Some(identity);
            s.first_factor_at = client::ms(now);
            s.second_factors = factors.iter().map(|f| f.strategy().to_string()).collect();
            Ok(())
        }
        SignedIn::CodeSent {
            flow_id,
            expires_at,
        } => {
            s.code_flow = Some(flow_id);
            s.code_expire_at = client::ms(expires_at);
            Ok(())
        }
        SignedIn::Refused => Err(refused()),
        SignedIn::Expired => Err(clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "verification_expired",
            "This verification has expired.",
            "This sign-in has expired; start again.",
        )),
        SignedIn::NewPasswordNeeded { identity } => {
            first(s);
            s.status = "needs_new_password".into();
            s.identity = Some(identity);
            Ok(())
        }
        SignedIn::PasswordRefused(text) => Err(super::problems(&[FieldProblem {
            param: Some("password".into()),
            text,
        }])),
        SignedIn::SecondFactorElsewhere => Err(clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "second_factor_required",
            "This account has a second factor.",
            "This account's second factor (a security key, or a mailed code) is asked for on the hosted pages only.",
        )),
    }
}
