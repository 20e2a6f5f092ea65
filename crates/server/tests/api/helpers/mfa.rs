//! Shared by the second-factor scenarios (`mfa.rs`, `mfa_codes.rs`): the settings and
//! login steps of an API client, and TOTP codes computed with `totp-rs` from the secret the
//! settings form shows, at the test clock's time.

use super::{json_of, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub fn node<'a>(flow: &'a Value, name_or_id: &str) -> Option<&'a Value> {
    flow["ui"]["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["attributes"]["name"] == name_or_id || n["attributes"]["id"] == name_or_id)
}

/// The code of `secret` (base32) at the server's clock, `steps` periods later.
pub fn code(app: &TestApp, secret: &str, steps: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .unwrap();
    let t = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes);
    let now = app.state.core.now().unix_timestamp() + steps * 30;
    t.generate(u64::try_from(now).unwrap())
}

pub async fn settings_flow(app: &TestApp, token: &str) -> Value {
    let (s, flow) = app
        .get_json_with_token("/self-service/settings/api", token)
        .await;
    assert_eq!(s, StatusCode::OK, "{flow}");
    flow
}

pub async fn submit_settings(
    app: &TestApp,
    token: &str,
    flow: &Value,
    body: Value,
) -> (StatusCode, Value) {
    json_of(
        app.submit("settings", flow["id"].as_str().unwrap(), body, Some(token))
            .await,
    )
    .await
}

/// Links TOTP from `token`'s session; returns the base32 secret.
pub async fn link_totp(app: &TestApp, token: &str) -> String {
    let flow = settings_flow(app, token).await;
    let secret = node(&flow, "totp_secret_key").unwrap()["attributes"]["text"]["context"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "method": "totp", "totp_code": code(app, &secret, 0) });
    let (s, saved) = submit_settings(app, token, &flow, body).await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    assert_eq!(saved["state"], "success");
    secret
}

/// A password login through an API flow: (status, body).
pub async fn password_login(app: &TestApp, email: &str) -> (StatusCode, Value) {
    json_of(app.login(email, PASSWORD).await).await
}

/// Starts the second step for `token`'s session.
pub async fn aal2_flow(app: &TestApp, token: &str) -> Value {
    let (s, flow) = app
        .get_json_with_token("/self-service/login/api?aal=aal2", token)
        .await;
    assert_eq!(s, StatusCode::OK, "{flow}");
    flow
}

pub async fn submit_login(
    app: &TestApp,
    flow: &Value,
    body: Value,
    token: &str,
) -> (StatusCode, Value) {
    json_of(
        app.submit("login", flow["id"].as_str().unwrap(), body, Some(token))
            .await,
    )
    .await
}

pub async fn whoami(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.get_json_with_token("/sessions/whoami", token).await
}
