//! Clerk's Frontend API on the public port, so Clerk's browser SDK (clerk-js, and the React
//! components on it) runs against Portcullis unchanged (`../shared/reference/clerk/FAPI-NOTES.md`).
//! clerk-js finds this server through the publishable key (`portcullis keys clerk
//! publishable`) or the app's `proxyUrl`, loads its own bundles from here (`assets.rs`), and
//! talks form-encoded REST under `/v1`: answers are Clerk's resources (snake_case, times in
//! Unix milliseconds), mutations wrapped as `{response, client}`, errors as `{errors: [{code,
//! message, long_message, meta}], meta}`.
//!
//! Served so far: the environment and an empty client, which is what clerk-js needs to load
//! and draw `<SignIn/>` and `<SignUp/>`. Sign-ins, sign-ups, sessions and their tokens are
//! not served yet (issue 14): those routes answer Clerk's 404.

mod assets;
mod environment;

use crate::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use portcullis_core::config::Config;
use serde_json::json;

pub fn router(config: &Config) -> Router<AppState> {
    if !config.clerk.frontend.enabled {
        return Router::new();
    }
    let env = environment::environment(config);
    // PATCH (clerk-js's "touch" on development instances) arrives as `POST ?_method=PATCH`.
    let env_post = env.clone();
    Router::new()
        .route(
            "/v1/environment",
            get(move || async move { Json(env) }).post(move || async move { Json(env_post) }),
        )
        .route("/v1/client", get(client))
        .route("/v1/{*rest}", any(not_found))
        .route(
            "/npm/@clerk/{package}/dist/{*file}",
            get(assets::bundle_file),
        )
}

/// `GET /v1/client`: no client yet (no `__client` cookie), as Clerk answers a new browser.
async fn client() -> Json<serde_json::Value> {
    Json(json!({ "response": null, "client": null }))
}

/// Clerk's error envelope.
pub(super) fn clerk_error(status: StatusCode, code: &str, message: &str, long: &str) -> Response {
    let body = json!({
        "errors": [{ "code": code, "message": message, "long_message": long, "meta": {} }],
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
