//! Second factors beyond an authenticator app: backup codes (generate, confirm, use once,
//! disable), a code mailed as the second factor (`code.mfa_enabled`), and the seed
//! deployment's `kratos.yml` stepping a TOTP user up at whoami and settings.

use crate::helpers::mfa::{
    aal2_flow, code, node, password_login, settings_flow, submit_login, submit_settings, whoami,
};
use crate::helpers::{expect_error, message_ids, unique_email, TestApp, PASSWORD};
use portcullis_core::config::{Config, RequiredAal};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend!(
    backup_codes_are_generated_confirmed_used_once_and_disabled,
    the_seed_deployment_steps_a_totp_user_up_at_whoami_and_settings with seed_requiring_aal2,
    an_emailed_code_is_the_second_factor_when_codes_are_mfa with code_mfa,
);

fn code_mfa(c: &mut Config) {
    c.selfservice.methods.code.mfa_enabled = true;
}

/// `code.mfa_enabled`: every identity with an e-mail address has a second factor, a code
/// mailed to it through the courier.
async fn an_emailed_code_is_the_second_factor_when_codes_are_mfa(app: TestApp) {
    // An unverified address is no second factor: a password alone could have put it there.
    let fresh = unique_email("code-mfa-unverified");
    app.register(&fresh, PASSWORD).await;
    let (s, body) = password_login(&app, &fresh).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["session"]["identity"]["traits"]["email"], json!(fresh));
    let email = unique_email("code-mfa");
    let r = app
        .create_identity(json!({
            "schema_id": "default",
            "traits": { "email": email },
            "verifiable_addresses": [{ "value": email, "verified": true, "via": "email" }],
            "credentials": { "password": { "config": { "password": PASSWORD } } },
        }))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (s, body) = password_login(&app, &email).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body["session"]["identity"].is_null(), "{body}");
    let token = body["session_token"].as_str().unwrap().to_string();
    assert_eq!(whoami(&app, &token).await.0, StatusCode::FORBIDDEN);
    let step = aal2_flow(&app, &token).await;
    let send = node(&step, "address").unwrap();
    assert_eq!(send["attributes"]["value"], json!(email));
    assert_eq!(send["meta"]["label"]["id"], 1010023);
    assert_eq!(send["meta"]["label"]["context"]["address"], json!(email));
    // Only the identity's own addresses.
    let (s, other) = submit_login(
        &app,
        &step,
        json!({ "method": "code", "address": "someone@else.example" }),
        &token,
    )
    .await;
    assert_eq!(
        (s, message_ids(&other, None)),
        (StatusCode::BAD_REQUEST, vec![4010002])
    );
    let (s, sent) = submit_login(
        &app,
        &step,
        json!({ "method": "code", "address": email }),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(message_ids(&sent, None), vec![1010025]);
    assert!(node(&sent, "code").is_some());
    let code = app.mailed_code(&email, "login_code_valid").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, bad) = submit_login(
        &app,
        &step,
        json!({ "method": "code", "code": wrong }),
        &token,
    )
    .await;
    assert_eq!(
        (s, message_ids(&bad, None)),
        (StatusCode::BAD_REQUEST, vec![4010008])
    );
    let (s, done) = submit_login(
        &app,
        &step,
        json!({ "method": "code", "code": code }),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    let last = done["session"]["authentication_methods"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        (last["method"].clone(), last["aal"].clone()),
        (json!("code"), json!("aal2"))
    );
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    // The token face cannot mail a code: it asks only for TOTP and backup codes.
    let (s, _) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// The seed deployment's `kratos.yml` (TOTP on, issuer ImpRun) with the two `required_aal`
/// settings its operators add, from the environment as they would.
fn seed_requiring_aal2(c: &mut Config) {
    crate::seed::seed_with(
        c,
        &[
            (
                "PORTCULLIS_SESSION_WHOAMI_REQUIRED_AAL",
                "highest_available",
            ),
            (
                "PORTCULLIS_SELFSERVICE_FLOWS_SETTINGS_REQUIRED_AAL",
                "highest_available",
            ),
        ],
    );
}

async fn the_seed_deployment_steps_a_totp_user_up_at_whoami_and_settings(app: TestApp) {
    let cfg = app.state.core.config();
    assert_eq!(cfg.selfservice.methods.totp.config.issuer, "ImpRun");
    assert_eq!(
        cfg.session.whoami.required_aal,
        RequiredAal::HighestAvailable
    );
    let email = unique_email("seed-totp");
    // The Go backend reaches the admin API as `kratos:4434`.
    let r = app
        .admin_request(Method::POST, "/admin/identities")
        .header("host", "kratos:4434")
        .json(&json!({
            "schema_id": cfg.identity.default_schema_id,
            "traits": { "email": email },
            "credentials": { "password": { "config": { "password": PASSWORD } } },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let first = app.login_token(&email).await;
    let flow = settings_flow(&app, &first).await;
    // The QR code's URL names the seed's issuer.
    let secret = node(&flow, "totp_secret_key").unwrap()["attributes"]["text"]["context"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "method": "totp", "totp_code": code(&app, &secret, 0) });
    assert_eq!(
        submit_settings(&app, &first, &flow, body).await.0,
        StatusCode::OK
    );
    let aal1 = app.login_token(&email).await;
    let e = expect_error(
        app.get_with_token("/sessions/whoami", &aal1).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(e["error"]["id"], "session_aal2_required");
    // Every URL carries the proxy's prefix.
    assert!(e["redirect_browser_to"]
        .as_str()
        .unwrap()
        .starts_with("http://localhost:3000/.ory/self-service/login/browser?aal=aal2"));
    let r = app
        .get_with_token("/self-service/settings/api", &aal1)
        .await;
    assert_eq!(
        expect_error(r, StatusCode::FORBIDDEN).await["error"]["id"],
        "session_aal2_required"
    );
    app.clock.advance(Duration::from_secs(30));
    let step = aal2_flow(&app, &aal1).await;
    let (s, _) = submit_login(
        &app,
        &step,
        json!({ "method": "totp", "totp_code": code(&app, &secret, 0) }),
        &aal1,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(whoami(&app, &aal1).await.0, StatusCode::OK);
    settings_flow(&app, &aal1).await;
}

fn codes_of(flow: &Value) -> Vec<String> {
    node(flow, "lookup_secret_codes").unwrap()["attributes"]["text"]["context"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["context"]["secret"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn backup_codes_are_generated_confirmed_used_once_and_disabled(app: TestApp) {
    let email = unique_email("lookup");
    let (_, token) = app.register(&email, PASSWORD).await;
    let flow = settings_flow(&app, &token).await;
    assert!(node(&flow, "lookup_secret_regenerate").is_some());
    // Confirming before generating is refused.
    let (s, _) = submit_settings(
        &app,
        &token,
        &flow,
        json!({ "method": "lookup_secret", "lookup_secret_confirm": true }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, shown) = submit_settings(
        &app,
        &token,
        &flow,
        json!({ "method": "lookup_secret", "lookup_secret_regenerate": true }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{shown}");
    assert_eq!(shown["state"], "show_form");
    let codes = codes_of(&shown);
    assert_eq!(codes.len(), 12);
    assert!(codes.iter().all(|c| c.len() == 8));
    assert!(node(&shown, "lookup_secret_confirm").is_some());
    assert!(node(&shown, "lookup_secret_regenerate").is_none());
    let (s, saved) = submit_settings(
        &app,
        &token,
        &flow,
        json!({ "method": "lookup_secret", "lookup_secret_confirm": true }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    assert_eq!(saved["state"], "success");
    assert!(node(&saved, "lookup_secret_reveal").is_some());
    assert_eq!(
        whoami(&app, &token).await.1["authenticator_assurance_level"],
        "aal2"
    );

    // Sign in with a backup code, once.
    let aal1 = app.login_token(&email).await;
    let step = aal2_flow(&app, &aal1).await;
    assert!(node(&step, "lookup_secret").is_some() && node(&step, "totp_code").is_none());
    let (s, bad) = submit_login(
        &app,
        &step,
        json!({ "method": "lookup_secret", "lookup_secret": "zzzzzzzz" }),
        &aal1,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&bad, None), vec![4000016]);
    let (s, ok) = submit_login(
        &app,
        &step,
        json!({ "method": "lookup_secret", "lookup_secret": codes[0].to_uppercase() }),
        &aal1,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{ok}");
    assert_eq!(ok["session"]["authenticator_assurance_level"], "aal2");
    let again = app.login_token(&email).await;
    let step = aal2_flow(&app, &again).await;
    let (s, used) = submit_login(
        &app,
        &step,
        json!({ "method": "lookup_secret", "lookup_secret": codes[0] }),
        &again,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&used, None), vec![4000012]);
    // Revealed, the used code reads "used".
    let flow = settings_flow(&app, &token).await;
    let (s, revealed) = submit_settings(
        &app,
        &token,
        &flow,
        json!({ "method": "lookup_secret", "lookup_secret_reveal": true }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let text = &node(&revealed, "lookup_secret_codes").unwrap()["attributes"]["text"];
    assert!(
        text["text"].as_str().unwrap().starts_with("used, "),
        "{text}"
    );
    assert_eq!(text["context"]["secrets"][0]["id"], 1050014);
    // Disabled, a password is enough again.
    let (s, _) = submit_settings(
        &app,
        &token,
        &flow,
        json!({ "method": "lookup_secret", "lookup_secret_disable": true }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let plain = app.login_token(&email).await;
    assert_eq!(whoami(&app, &plain).await.0, StatusCode::OK);
}
