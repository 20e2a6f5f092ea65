//! `<UserProfile/>`'s "Two-step verification" through the Frontend API: an authenticator app
//! set up by its code (backup codes alongside), new backup codes, the app removed; each the
//! Kratos credential every other face sees, and only from a recent session.

use crate::clerk_frontend::{fapi, frontend, APP};
use crate::clerk_me::signed_in;
use crate::helpers::{unique_email, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend! {
    an_authenticator_app_is_set_up_from_the_profile_and_then_asked_for with frontend,
    second_factors_change_only_from_a_recent_session with frontend,
}

/// The base32 secret of an `otpauth://` URL.
fn secret_of(uri: &str) -> String {
    let url = url::Url::parse(uri).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// The signed-in user of the client `cookie`.
pub(crate) async fn me(app: &TestApp, cookie: &str) -> Value {
    let r = app
        .request(reqwest::Method::GET, "/v1/me")
        .header("origin", APP)
        .header("cookie", format!("__client={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["response"].clone()
}

/// A password sign-in's answer, without finishing it.
async fn password_sign_in(app: &TestApp, email: &str) -> (Value, String) {
    let form = [
        ("identifier", email),
        ("strategy", "password"),
        ("password", PASSWORD),
    ];
    let (st, body, cookie) = fapi(app, "/v1/client/sign_ins", &form, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    (body["response"].clone(), cookie.unwrap())
}

async fn an_authenticator_app_is_set_up_from_the_profile_and_then_asked_for(app: TestApp) {
    let email = unique_email("fapi-mfa");
    let (identity, _) = app.register(&email, PASSWORD).await;
    // The environment offers both, so the profile shows "Two-step verification".
    let (_, env) = app.get_json("/v1/environment").await;
    let attributes = &env["user_settings"]["attributes"];
    assert_eq!(
        attributes["authenticator_app"]["second_factors"],
        json!(["totp"])
    );
    assert_eq!(
        attributes["backup_code"]["second_factors"],
        json!(["backup_code"])
    );
    assert_eq!(
        attributes["authenticator_app"]["used_for_second_factor"],
        true
    );
    let (cookie, _) = signed_in(&app, &email, PASSWORD).await;
    assert_eq!(me(&app, &cookie).await["totp_enabled"], false);

    // A key to scan; nothing linked until its code comes back.
    let (st, created, c) = fapi(&app, "/v1/me/totp", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{created}");
    let totp = &created["response"];
    assert_eq!(
        (totp["object"].as_str(), totp["verified"].as_bool()),
        (Some("totp"), Some(false))
    );
    let uri = totp["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = secret_of(uri);
    assert_eq!(totp["secret"], secret.as_str());
    let cookie = c.unwrap();
    let (_, kratos) = app
        .admin_get_json(&format!(
            "/admin/identities/{identity}?include_credential=totp"
        ))
        .await;
    assert!(kratos["credentials"].get("totp").is_none(), "{kratos}");

    // A wrong code at the field; the app's code links it, with backup codes shown once.
    let right = crate::helpers::mfa::code(&app, &secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let verify = |code: String, cookie: String| {
        let app = &app;
        async move {
            fapi(
                app,
                "/v1/me/totp/attempt_verification",
                &[("code", &code)],
                Some(&cookie),
            )
            .await
        }
    };
    let (st, refused, _) = verify(wrong.into(), cookie.clone()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_code_incorrect");
    assert_eq!(refused["errors"][0]["meta"]["param_name"], "code");
    // What <UserProfile/> shows at the code field.
    assert_eq!(refused["errors"][0]["long_message"], "Incorrect code");
    let (st, linked, c) = verify(right.clone(), cookie.clone()).await;
    assert_eq!(st, StatusCode::OK, "{linked}");
    let cookie = c.unwrap();
    assert_eq!(linked["response"]["verified"], true);
    assert!(linked["response"]["secret"].is_null());
    let backup: Vec<String> = linked["response"]["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(backup.len(), 12);
    // The session that set it up stays signed in, now with the factor; the Kratos admin
    // API sees both credentials.
    let user = me(&app, &cookie).await;
    assert_eq!(
        (
            &user["totp_enabled"],
            &user["backup_code_enabled"],
            &user["two_factor_enabled"]
        ),
        (&json!(true), &json!(true), &json!(true))
    );
    let (_, kratos) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    let kinds = kratos["credentials"].as_object().unwrap();
    assert!(
        kinds.contains_key("totp") && kinds.contains_key("lookup_secret"),
        "{kratos}"
    );
    // The same key again: the pending one is spent, and a second app is refused.
    let (st, _, _) = verify(right, cookie.clone()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, again, _) = fapi(&app, "/v1/me/totp", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{again}");
    assert_eq!(again["errors"][0]["code"], "totp_already_enabled");

    // The next sign-in asks for it, and a backup code from the profile passes.
    let (asked, other) = password_sign_in(&app, &email).await;
    assert_eq!(asked["status"], "needs_second_factor");
    assert_eq!(
        asked["supported_second_factors"],
        json!([{"strategy": "totp"}, {"strategy": "backup_code"}])
    );
    let id = asked["id"].as_str().unwrap();
    let path = format!("/v1/client/sign_ins/{id}/attempt_second_factor");
    let form = [("strategy", "backup_code"), ("code", backup[0].as_str())];
    let (st, done, _) = fapi(&app, &path, &form, Some(&other)).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["response"]["status"], "complete");

    // New backup codes replace the old ones.
    let (st, fresh, c) = fapi(&app, "/v1/me/backup_codes/", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{fresh}");
    let cookie = c.unwrap();
    assert_eq!(fresh["response"]["object"], "backup_code");
    let codes = fresh["response"]["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 12);
    let (asked, other) = password_sign_in(&app, &email).await;
    let path = format!(
        "/v1/client/sign_ins/{}/attempt_second_factor",
        asked["id"].as_str().unwrap()
    );
    let (st, old, _) = fapi(
        &app,
        &path,
        &[("strategy", "backup_code"), ("code", backup[1].as_str())],
        Some(&other),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{old}");

    // Removed (clerk-js sends DELETE as `_method`): the app is no longer asked for.
    let (st, removed, c) = fapi(&app, "/v1/me/totp?_method=DELETE", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{removed}");
    assert_eq!(removed["response"]["deleted"], true);
    assert_eq!(me(&app, &c.unwrap()).await["totp_enabled"], false);
    let (asked, _) = password_sign_in(&app, &email).await;
    assert_eq!(
        asked["supported_second_factors"],
        json!([{"strategy": "backup_code"}])
    );
}

async fn second_factors_change_only_from_a_recent_session(app: TestApp) {
    let email = unique_email("fapi-mfa-old");
    app.register(&email, PASSWORD).await;
    // Signed out: Clerk's 401.
    let (st, _, _) = fapi(&app, "/v1/me/totp", &[], None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (cookie, _) = signed_in(&app, &email, PASSWORD).await;
    let (st, _, c) = fapi(&app, "/v1/me/totp", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK);
    let pending = c.unwrap();
    // Past `privileged_session_max_age` (1h): sign in again first, even with a key pending.
    app.clock.advance(Duration::from_secs(3600 + 60));
    for (path, cookie) in [("/v1/me/totp", &cookie), ("/v1/me/backup_codes", &cookie)] {
        let (st, old, _) = fapi(&app, path, &[], Some(cookie)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {old}");
        assert_eq!(old["errors"][0]["code"], "session_reverification_required");
    }
    let (st, old, _) = fapi(
        &app,
        "/v1/me/totp/attempt_verification",
        &[("code", "123456")],
        Some(&pending),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{old}");
    assert_eq!(me(&app, &pending).await["two_factor_enabled"], false);
}
