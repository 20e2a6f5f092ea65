//! Clerk's Frontend API on the public port, so Clerk's browser SDK (clerk-js, and the React
//! components on it) runs against Portcullis unchanged (`../shared/reference/clerk/FAPI-NOTES.md`).
//! clerk-js finds this server through the publishable key (`portcullis keys clerk
//! publishable`) or the app's `proxyUrl`, loads its own bundles from here (`assets.rs`), and
//! talks form-encoded REST under `/v1`: answers are Clerk's resources (snake_case, times in
//! Unix milliseconds), mutations wrapped as `{response, client}`, errors as `{errors: [{code,
//! message, long_message, meta}], meta}`.
//!
//! Served: the environment, the client (`client.rs`), sign-in with a password or a mailed
//! code (or a new password after a reset code) and then a second factor (`sign_ins.rs`),
//! sign-up with a mailed code (`sign_ups.rs`), the sessions and their tokens, sign-out
//! (`sessions.rs`), and the signed-in user's own account (`me.rs`, its second factors
//! `me_factors.rs`, its picture `me_image.rs`). Other routes answer
//! Clerk's 404.

mod assets;
mod client;
mod environment;
mod me;
mod me_factors;
mod me_image;
mod sessions;
mod sign_ins;
mod sign_ups;

use crate::AppState;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use portcullis_core::config::Config;
use portcullis_core::selfservice::FieldProblem;
use serde_json::json;
use std::collections::HashMap;

pub fn router(config: &Config) -> Router<AppState> {
    if !config.clerk.frontend.enabled {
        return Router::new();
    }
    let env = environment::environment(config);
    // PATCH (clerk-js's "touch" on development instances) arrives as `POST ?_method=PATCH`.
    let env_post = env.clone();
    let guard = axum::middleware::from_fn_with_state(config.serve.public.clone(), same_origin_only);
    Router::new()
        .route(
            "/v1/environment",
            get(move || async move { Json(env) }).post(move || async move { Json(env_post) }),
        )
        .route("/v1/client", get(client).post(client_post))
        .route("/v1/client/sign_ins", post(sign_ins::create))
        .route("/v1/client/sign_ins/{id}", get(sign_ins::get))
        .route(
            "/v1/client/sign_ins/{id}/prepare_first_factor",
            post(sign_ins::prepare_first_factor),
        )
        .route(
            "/v1/client/sign_ins/{id}/attempt_first_factor",
            post(sign_ins::attempt_first_factor),
        )
        .route(
            "/v1/client/sign_ins/{id}/attempt_second_factor",
            post(sign_ins::attempt_second_factor),
        )
        .route(
            "/v1/client/sign_ins/{id}/reset_password",
            post(sign_ins::reset_password),
        )
        .route("/v1/client/sign_ups", post(sign_ups::create))
        .route(
            "/v1/client/sign_ups/{id}",
            get(sign_ups::get).post(sign_ups::update),
        )
        .route(
            "/v1/client/sign_ups/{id}/prepare_verification",
            post(sign_ups::prepare_verification),
        )
        .route(
            "/v1/client/sign_ups/{id}/attempt_verification",
            post(sign_ups::attempt_verification),
        )
        .route("/v1/client/sessions", post(sessions_post))
        .route("/v1/client/sessions/{id}/touch", post(sessions::touch))
        .route("/v1/client/sessions/{id}/tokens", post(sessions::tokens))
        .route("/v1/client/sessions/{id}/end", post(sessions::end))
        .route("/v1/client/sessions/{id}/remove", post(sessions::end))
        .route("/v1/me", get(me::get).post(me::post))
        .route("/v1/me/change_password", post(me::change_password))
        .route(
            "/v1/me/totp",
            post(me_factors::totp).delete(me_factors::remove_totp),
        )
        .route(
            "/v1/me/totp/attempt_verification",
            post(me_factors::verify_totp),
        )
        .route("/v1/me/backup_codes", post(me_factors::backup_codes))
        .route("/v1/me/backup_codes/", post(me_factors::backup_codes))
        .route(
            "/v1/me/profile_image",
            post(me_image::upload)
                .delete(me_image::remove)
                .layer(crate::profile_images::upload_limit()),
        )
        .route("/v1/me/sessions/active", get(me::active_sessions))
        .route("/v1/me/sessions/{id}/revoke", post(me::revoke_session))
        .route("/v1/me/email_addresses", post(me::add_address))
        .route("/v1/me/email_addresses/{id}", post(me::remove_address))
        .route(
            "/v1/me/email_addresses/{id}/prepare_verification",
            post(me::prepare_address),
        )
        .route(
            "/v1/me/email_addresses/{id}/attempt_verification",
            post(me::attempt_address),
        )
        .route("/v1/{*rest}", any(not_found))
        .route_layer(guard)
        .route(
            "/npm/@clerk/{package}/dist/{*file}",
            get(assets::bundle_file),
        )
}

/// The client cookie is set and used by these POSTs, which a page of another site could
/// send as a form (login CSRF: the victim's browser signed in to the attacker's account, or
/// signed out). clerk-js sends every POST with its page's `Origin`: it must be ours or one
/// `serve.public.cors` lists (the app's, through a same-origin proxy or across origins).
async fn same_origin_only(
    State(public): State<portcullis_core::config::EndpointConfig>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::POST {
        let allowed = req
            .headers()
            .get(axum::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| crate::own_or_listed_origin(&public, o));
        if !allowed {
            return clerk_error(
                StatusCode::FORBIDDEN,
                "origin_invalid",
                "Origin not allowed.",
                "This request's Origin is neither Portcullis's nor one serve.public.cors lists.",
            );
        }
    }
    next.run(req).await
}

/// `GET /v1/client`: the browser's client, or none (no `__client` cookie) as Clerk answers a
/// new browser.
async fn client(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(mut c) = client::read(&st, &headers) else {
        return Json(json!({ "response": null, "client": null })).into_response();
    };
    let now = st.core.now();
    let live = client::live_sessions(&st, &mut c, now).await;
    let azp = client::origin(&st, &headers);
    let body = client::client_json(&st, &c, &live, azp.as_deref(), now).await;
    let mut resp = Json(json!({ "response": body, "client": null })).into_response();
    client::set_cookie(&st, &mut resp, &c);
    resp
}

/// clerk-js sends every method but GET as POST with `_method`.
#[derive(serde::Deserialize)]
pub(super) struct Method {
    #[serde(rename = "_method", default)]
    pub method: String,
}

/// `POST /v1/client?_method=DELETE`: sign-out of every session of the client.
async fn client_post(
    State(st): State<AppState>,
    Query(m): Query<Method>,
    headers: HeaderMap,
) -> Response {
    match m.method.to_ascii_uppercase().as_str() {
        "DELETE" => sessions::end_all(&st, &headers).await,
        _ => not_found().await,
    }
}

/// `POST /v1/client/sessions?_method=DELETE`: the same.
async fn sessions_post(
    State(st): State<AppState>,
    Query(m): Query<Method>,
    headers: HeaderMap,
) -> Response {
    client_post(State(st), Query(m), headers).await
}

/// A form-encoded body (clerk-js's), read whatever the `Content-Type` says; the first value of
/// each field.
pub(super) struct Form(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut fields = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(&body) {
            fields
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
        Ok(Form(fields))
    }
}

/// A core error in Clerk's envelope: a refusal the request caused, or a 500 (logged).
pub(super) fn core_error(e: portcullis_core::Error) -> Response {
    use portcullis_core::Error;
    match e {
        Error::NotFound { .. } => clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "not found",
            "The resource was not found.",
        ),
        Error::HookFailed => clerk_error(
            StatusCode::BAD_GATEWAY,
            "hook_failed",
            "A service this sign-in depends on did not answer.",
            "A web hook of the login flow failed; try again later.",
        ),
        Error::Aal2Required { .. } => clerk_error(
            StatusCode::FORBIDDEN,
            "second_factor_required",
            "This session needs the account's second factor.",
            "Sign in again with the second factor to change this account.",
        ),
        Error::Conflict { reason } => clerk_error(
            StatusCode::CONFLICT,
            "conflict",
            "The account was changed meanwhile.",
            &reason,
        ),
        Error::RateLimited { .. } => clerk_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many requests.",
            "Too many requests; please wait and retry.",
        ),
        Error::Internal(cause) => {
            tracing::error!(%cause, "internal error on the Clerk Frontend API");
            clerk_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_clerk_error",
                "Oops, an unexpected error occurred",
                "There was an internal error on our servers.",
            )
        }
        other => clerk_error(
            StatusCode::BAD_REQUEST,
            "request_invalid",
            "Request invalid.",
            &other.to_string(),
        ),
    }
}

/// Problems with a form's fields (or the whole form), each with Clerk's code for it and at the
/// field it names, as `<SignUp/>` and `<UserProfile/>` show them.
pub(super) fn problems(list: &[FieldProblem]) -> Response {
    let errors: Vec<serde_json::Value> = list
        .iter()
        .map(|p| {
            let code = match p.text.id {
                4000007 => "form_identifier_exists",
                4000008 | 4040003 | 4070006 => "form_code_incorrect",
                4000002 => "form_param_missing",
                4000032 => "form_password_length_too_short",
                4000033 => "form_password_length_too_long",
                4000034 => "form_password_pwned",
                4000005 | 4000031 => "form_password_validation_failed",
                4000006 => "form_password_incorrect",
                4000001 if p.param.is_some() => "form_param_format_invalid",
                _ => "form_param_invalid",
            };
            let message = match code {
                "form_identifier_exists" => "That email address is taken. Please try another.",
                "form_code_incorrect" => "Incorrect code",
                "form_password_incorrect" => {
                    "Password is incorrect. Try again, or use another method."
                }
                _ => p.text.text.as_str(),
            };
            // The components show `long_message` at the field: for a wrong code, Clerk's
            // words, whichever of the core's refusals it was.
            let long = match code {
                "form_code_incorrect" => message,
                _ => p.text.text.as_str(),
            };
            let meta = match &p.param {
                Some(name) => json!({ "param_name": name }),
                None => json!({}),
            };
            json!({ "code": code, "message": message, "long_message": long, "meta": meta })
        })
        .collect();
    let body = json!({ "errors": errors, "meta": {} });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// Clerk's error envelope.
pub(super) fn clerk_error(status: StatusCode, code: &str, message: &str, long: &str) -> Response {
    error_body(status, code, message, long, json!({}))
}

/// Clerk's error envelope for a form field: clerk-js shows it at the field `meta.param_name`
/// names.
pub(super) fn field_error(
    status: StatusCode,
    code: &str,
    message: &str,
    long: &str,
    param: &str,
) -> Response {
    error_body(status, code, message, long, json!({ "param_name": param }))
}

fn error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    long: &str,
    meta: serde_json::Value,
) -> Response {
    let body = json!({
        "errors": [{ "code": code, "message": message, "long_message": long, "meta": meta }],
        "meta": {},
    });
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    clerk_error(
        StatusCode::NOT_FOUND,
        "resource_not_found",
        "not found",
        "This route of Clerk's Frontend API is not served by Portcullis yet.",
    )
}
