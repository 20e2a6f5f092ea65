//! Second factors: TOTP linked in settings, the second sign-in step (`aal=aal2`) that raises
//! the same session, `required_aal` on whoami, settings, tokens and the browser answers, the
//! Clerk and admin faces, bad input and throttling. Backup codes, emailed codes and the seed
//! deployment are in `mfa_codes.rs`; the helpers in `helpers/mfa.rs`.

use crate::helpers::mfa::{
    aal2_flow, code, link_totp, node, password_login, settings_flow, submit_login, submit_settings,
    whoami,
};
use crate::helpers::{
    csrf, expect_error, json_of, location, message_ids, unique_email, Browser, TestApp, PASSWORD,
};
use portcullis_core::config::{Config, RequiredAal};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend!(
    totp_links_steps_the_same_session_up_and_refuses_a_replayed_code,
    whoami_settings_and_tokens_enforce_the_second_factor,
    aal1_enforcement_lets_a_first_factor_session_through with aal1_everywhere,
    browsers_are_sent_to_the_second_step,
    admins_and_clerk_remove_second_factors_with_events_and_records,
    bad_second_factor_input_gets_kratos_answers,
    wrong_codes_are_throttled_per_identity,
);

fn aal1_everywhere(c: &mut Config) {
    c.session.whoami.required_aal = RequiredAal::Aal1;
    c.selfservice.flows.settings.required_aal = RequiredAal::Aal1;
}

async fn totp_links_steps_the_same_session_up_and_refuses_a_replayed_code(app: TestApp) {
    let email = unique_email("totp");
    let (id, first) = app.register(&email, PASSWORD).await;
    let flow = settings_flow(&app, &first).await;
    // The form Kratos draws: a QR code, the secret as text, a code input and Save.
    let qr = node(&flow, "totp_qr").unwrap();
    assert_eq!(qr["type"], "img");
    assert!(qr["attributes"]["src"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(qr["meta"]["label"]["id"], 1050005);
    let text = node(&flow, "totp_secret_key").unwrap();
    assert_eq!(text["attributes"]["text"]["id"], 1050006);
    let secret = text["attributes"]["text"]["context"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        node(&flow, "totp_code").unwrap()["meta"]["label"]["id"],
        1070006
    );
    // A wrong code is refused on the input.
    let wrong = json!({ "method": "totp", "totp_code": "000000" });
    let wrong = if code(&app, &secret, 0) == "000000" {
        json!({ "method": "totp", "totp_code": "111111" })
    } else {
        wrong
    };
    let (s, refused) = submit_settings(&app, &first, &flow, wrong).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&refused, Some("totp_code")), vec![4000008]);
    // The same key after the refusal (the app already holds it): its code links it.
    let now = code(&app, &secret, 0);
    let (s, saved) = submit_settings(
        &app,
        &first,
        &flow,
        json!({ "method": "totp", "totp_code": now }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    assert_eq!(message_ids(&saved, None), vec![1050001]);
    assert!(node(&saved, "totp_unlink").is_some());
    // The enrolling session now proves both factors.
    let (s, me) = whoami(&app, &first).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["authenticator_assurance_level"], "aal2");
    let methods: Vec<&str> = me["authentication_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["password", "totp"]);
    // Admins see the credential, never the key.
    let (_, admin) = app
        .admin_get_json(&format!("/admin/identities/{id}?include_credential=totp"))
        .await;
    let cfg = admin["credentials"]["totp"]["config"].to_string();
    assert!(!cfg.contains(&secret) && !cfg.contains("otpauth"), "{cfg}");

    // A new password sign-in is aal1, shows no identity, and whoami sends it on.
    let (s, body) = password_login(&app, &email).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["session"]["authenticator_assurance_level"], "aal1");
    assert!(body["session"]["identity"].is_null(), "{body}");
    let second = body["session_token"].as_str().unwrap().to_string();
    let session_id = body["session"]["id"].clone();
    let r = app.get_with_token("/sessions/whoami", &second).await;
    let e = expect_error(r, StatusCode::FORBIDDEN).await;
    assert_eq!(e["error"]["id"], "session_aal2_required");
    assert!(e["redirect_browser_to"]
        .as_str()
        .unwrap()
        .ends_with("/self-service/login/browser?aal=aal2"));

    // The second step, as Kratos draws it.
    let step = aal2_flow(&app, &second).await;
    assert_eq!(step["requested_aal"], "aal2");
    assert_eq!(message_ids(&step, None), vec![1010004]);
    let names: Vec<&str> = step["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["attributes"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["totp_code", "method"]);
    // The enrolment's code is used up: a replay is wrong, and empties the input.
    let (s, replay) = submit_login(
        &app,
        &step,
        json!({ "method": "totp", "totp_code": now }),
        &second,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{replay}");
    assert_eq!(message_ids(&replay, None), vec![4000008]);
    assert_eq!(
        node(&replay, "totp_code").unwrap()["attributes"]["value"],
        ""
    );
    // The next period's code raises the same session.
    app.clock.advance(Duration::from_secs(30));
    let next = code(&app, &secret, 0);
    let (s, done) = submit_login(
        &app,
        &step,
        json!({ "method": "totp", "totp_code": next }),
        &second,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["session"]["id"], session_id);
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    let (s, me) = whoami(&app, &second).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["id"], session_id);
    // The flow completes once; its code cannot be used again elsewhere either.
    let (s, _) = password_login(&app, &email).await;
    assert_eq!(s, StatusCode::OK);
    let third = app.login_token(&email).await;
    let step = aal2_flow(&app, &third).await;
    let (s, again) = submit_login(
        &app,
        &step,
        json!({ "method": "totp", "totp_code": next }),
        &third,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&again, None), vec![4000008]);

    // Unlinking (from an aal2 session) ends the step-up.
    let flow = settings_flow(&app, &first).await;
    let (s, unlinked) = submit_settings(
        &app,
        &first,
        &flow,
        json!({ "method": "totp", "totp_unlink": true }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{unlinked}");
    assert!(node(&unlinked, "totp_secret_key").is_some());
    let (s, body) = password_login(&app, &email).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        whoami(&app, body["session_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::OK
    );
}

/// The matrix: an identity with and without a second factor × whoami, settings, tokens.
async fn whoami_settings_and_tokens_enforce_the_second_factor(app: TestApp) {
    // Without a second factor, highest_available is aal1.
    let plain = unique_email("plain");
    app.register(&plain, PASSWORD).await;
    let token = app.login_token(&plain).await;
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    settings_flow(&app, &token).await;
    let (s, _) = app
        .post_json(
            "/api/token/",
            &json!({ "email": plain, "password": PASSWORD }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // With TOTP: an aal1 session reaches none of them.
    let email = unique_email("matrix");
    let (_, enrolling) = app.register(&email, PASSWORD).await;
    // Tokens obtained before the second factor lose their refresh token when it is added.
    let (_, before) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    let secret = link_totp(&app, &enrolling).await;
    let (s, old) = app
        .post_json(
            "/api/token/refresh/",
            &json!({ "refresh": before["refresh"] }),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{old}");
    let aal1 = app.login_token(&email).await;
    assert_eq!(whoami(&app, &aal1).await.0, StatusCode::FORBIDDEN);
    // Nor may it list or end the sessions that did use the second factor.
    for (m, path) in [(Method::GET, "/sessions"), (Method::DELETE, "/sessions")] {
        let r = app
            .request(m, path)
            .header("X-Session-Token", &aal1)
            .send()
            .await
            .unwrap();
        let e = expect_error(r, StatusCode::FORBIDDEN).await;
        assert_eq!(e["error"]["id"], "session_aal2_required");
    }
    assert_eq!(whoami(&app, &enrolling).await.0, StatusCode::OK);
    let e = expect_error(
        app.get_with_token("/self-service/settings/api", &aal1)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(e["error"]["id"], "session_aal2_required");
    // A settings flow of the aal2 session, submitted by nobody else, still works for it.
    settings_flow(&app, &enrolling).await;
    // Tokens: the password alone is not enough; a code of the authenticator is.
    let (s, b) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        (s, b["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("second_factor_required"))
    );
    let (s, b) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD, "otp": "12345" }),
        )
        .await;
    assert_eq!(
        (s, b["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("second_factor_invalid"))
    );
    app.clock.advance(Duration::from_secs(30));
    let (s, b) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD, "otp": code(&app, &secret, 0) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = app
        .get_with_bearer("/sessions/whoami", b["access"].as_str().unwrap())
        .await;
    let (s, me) = json_of(r).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["authenticator_assurance_level"], "aal2");
}

/// With `required_aal: aal1` the second factor is offered but not demanded.
async fn aal1_enforcement_lets_a_first_factor_session_through(app: TestApp) {
    let email = unique_email("aal1");
    let (_, enrolling) = app.register(&email, PASSWORD).await;
    link_totp(&app, &enrolling).await;
    let (s, body) = password_login(&app, &email).await;
    assert_eq!(s, StatusCode::OK);
    // Nothing asks for the second step: the identity is shown and whoami answers.
    assert_eq!(body["session"]["identity"]["traits"]["email"], json!(email));
    let token = body["session_token"].as_str().unwrap();
    let (s, me) = whoami(&app, token).await;
    assert_eq!(
        (s, me["authenticator_assurance_level"].clone()),
        (StatusCode::OK, json!("aal1"))
    );
    settings_flow(&app, token).await;
    let (s, _) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The step-up is still there for who asks for it.
    let step = aal2_flow(&app, token).await;
    assert!(node(&step, "totp_code").is_some());
    // But a password alone can neither remove nor replace the second factor (nor would
    // linking backup codes make this session aal2).
    let flow = settings_flow(&app, token).await;
    for change in [
        json!({ "method": "totp", "totp_unlink": true }),
        json!({ "method": "lookup_secret", "lookup_secret_regenerate": true }),
        json!({ "method": "profile", "traits": { "email": unique_email("taken-over") } }),
    ] {
        let r = app
            .submit(
                "settings",
                flow["id"].as_str().unwrap(),
                change,
                Some(token),
            )
            .await;
        let e = expect_error(r, StatusCode::FORBIDDEN).await;
        assert_eq!(e["error"]["id"], "session_aal2_required");
    }
    assert_eq!(
        whoami(&app, token).await.1["authenticator_assurance_level"],
        "aal1"
    );
}

async fn browsers_are_sent_to_the_second_step(app: TestApp) {
    let email = unique_email("browser-mfa");
    let (_, token) = app.register(&email, PASSWORD).await;
    link_totp(&app, &token).await;
    // An HTML form sign-in goes on to the second step, with the cookie already set.
    let mut b = Browser::new(&app);
    let flow = b.flow("login").await;
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    let r = b
        .post_form(
            &action,
            &[
                ("csrf_token", csrf(&flow)),
                ("method", "password"),
                ("identifier", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let next = location(&r);
    assert!(
        next.ends_with("/self-service/login/browser?aal=aal2"),
        "{next}"
    );
    assert!(b.has_session_cookie());
    let r = b.get(&next).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("/ui/login?flow="), "{}", location(&r));
    // Its "sign out everywhere else" form, with the token of its own second-step page,
    // cannot end the sessions that used the second factor.
    let step = b.get_json(&next).await.json::<Value>().await.unwrap();
    let r = b
        .post_form("/ui/sessions/revoke-others", &[("csrf_token", csrf(&step))])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("aal=aal2"), "{}", location(&r));
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    // The welcome page and the settings page of that session go there too.
    let r = b.get("/ui/welcome").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("aal=aal2"), "{}", location(&r));
    let r = b.get("/self-service/settings/browser").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("aal=aal2"), "{}", location(&r));
    // An SPA is told to navigate (422 browser_location_change_required).
    let mut spa = Browser::new(&app);
    let flow = spa.flow("login").await;
    let r = spa
        .post_json(
            flow["ui"]["action"].as_str().unwrap(),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "identifier": email, "password": PASSWORD }),
        )
        .await;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["error"]["id"], "browser_location_change_required");
    assert!(e["redirect_browser_to"]
        .as_str()
        .unwrap()
        .contains("aal=aal2"));
}

async fn admins_and_clerk_remove_second_factors_with_events_and_records(app: TestApp) {
    let email = unique_email("admin-mfa");
    let (id, token) = app.register(&email, PASSWORD).await;
    link_totp(&app, &token).await;
    let k: Value = app
        .admin_request(Method::POST, "/admin/clerk/keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = k["secret_key"].as_str().unwrap().to_string();
    let clerk = |m: Method, path: String| {
        app.http
            .request(m, app.admin_url(&format!("/v1{path}")))
            .bearer_auth(&key)
    };
    let user_id = format!("user_{}", id.replace('-', ""));
    let found: Vec<Value> = clerk(Method::GET, format!("/users?email_address={email}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = &found[0];
    let clerk_id = user["id"].as_str().unwrap().to_string();
    assert_eq!(user["two_factor_enabled"], true);
    assert_eq!(user["totp_enabled"], true);
    assert_eq!(user["backup_code_enabled"], false);
    assert!(user["mfa_enabled_at"].is_i64());
    let _ = user_id;
    // Kratos admin: a password cannot be removed this way; TOTP can, once.
    let path = format!("/admin/identities/{id}/credentials/password");
    expect_error(app.admin_delete(&path).await, StatusCode::BAD_REQUEST).await;
    let path = format!("/admin/identities/{id}/credentials/totp");
    assert_eq!(
        app.admin_delete(&path).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(app.admin_delete(&path).await, StatusCode::NOT_FOUND).await;
    assert_eq!(
        whoami(&app, &app.login_token(&email).await).await.0,
        StatusCode::OK
    );
    // Clerk: DELETE /v1/users/{id}/mfa after it is set up again.
    link_totp(&app, &token).await;
    let r = clerk(Method::DELETE, format!("/users/{clerk_id}/mfa"))
        .send()
        .await
        .unwrap();
    let (s, body) = json_of(r).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], json!(clerk_id));
    let user: Value = clerk(Method::GET, format!("/users/{clerk_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["two_factor_enabled"], false);
    assert_eq!(user["totp_enabled"], false);
    // Every change has its audit record.
    let records = app
        .admin_get_list(&format!("/admin/audit?identity_id={id}"))
        .await;
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "second_factor.added")
            .count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "second_factor.removed")
            .count(),
        2,
        "{kinds:?}"
    );
}

async fn bad_second_factor_input_gets_kratos_answers(app: TestApp) {
    let email = unique_email("bad-mfa");
    let (_, token) = app.register(&email, PASSWORD).await;
    // Asking for a level that does not exist, or aal2 without a session or a second factor.
    let r = app.get("/self-service/login/api?aal=aal3").await;
    let e = expect_error(r, StatusCode::BAD_REQUEST).await;
    assert!(
        e["error"]["reason"].as_str().unwrap().contains("aal3"),
        "{e}"
    );
    let e = expect_error(
        app.get("/self-service/login/api?aal=aal2").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(e["error"]["id"], "session_aal1_required");
    let r = app
        .get_with_token("/self-service/login/api?aal=aal2", &token)
        .await;
    let e = expect_error(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(e["error"]["id"], "session_aal_already_fulfilled");
    // A second factor on a first-step flow is no strategy there.
    let flow = app.flow("login").await;
    let (s, refused) = json_of(
        app.submit(
            "login",
            flow["id"].as_str().unwrap(),
            json!({ "method": "totp", "totp_code": "123456" }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&refused, None), vec![4010002]);
    // Oversized and malformed codes are wrong codes, never a 500.
    link_totp(&app, &token).await;
    let aal1 = app.login_token(&email).await;
    let step = aal2_flow(&app, &aal1).await;
    for junk in [
        json!("9".repeat(5_000)),
        json!("12 34 56"),
        json!(123456),
        json!(null),
    ] {
        let (s, body) = submit_login(
            &app,
            &step,
            json!({ "method": "totp", "totp_code": junk }),
            &aal1,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(message_ids(&body, None), vec![4000008]);
    }
    // A backup code from an account that has none.
    let (s, body) = submit_login(
        &app,
        &step,
        json!({ "method": "lookup_secret", "lookup_secret": "abcd1234" }),
        &aal1,
    )
    .await;
    assert_eq!(
        (s, message_ids(&body, None)),
        (StatusCode::BAD_REQUEST, vec![4000014])
    );
    // Someone else's session cannot finish this flow.
    let other = unique_email("other");
    let (_, stranger) = app.register(&other, PASSWORD).await;
    let r = app
        .submit(
            "login",
            step["id"].as_str().unwrap(),
            json!({ "method": "totp", "totp_code": "123456" }),
            Some(&stranger),
        )
        .await;
    let e = expect_error(r, StatusCode::FORBIDDEN).await;
    assert_eq!(e["error"]["id"], "security_identity_mismatch");
}

/// Ten wrong codes an hour per identity, across flows: then 429 before any code is looked at.
async fn wrong_codes_are_throttled_per_identity(app: TestApp) {
    let email = unique_email("throttle");
    let (id, token) = app.register(&email, PASSWORD).await;
    let secret = link_totp(&app, &token).await;
    let right = code(&app, &secret, 1);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..10 {
        let aal1 = app.login_token(&email).await;
        let step = aal2_flow(&app, &aal1).await;
        let (s, _) = submit_login(
            &app,
            &step,
            json!({ "method": "totp", "totp_code": wrong }),
            &aal1,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    let aal1 = app.login_token(&email).await;
    let step = aal2_flow(&app, &aal1).await;
    let r = app
        .submit(
            "login",
            step["id"].as_str().unwrap(),
            json!({ "method": "totp", "totp_code": right }),
            Some(&aal1),
        )
        .await;
    assert!(r.headers().contains_key("retry-after"));
    let e = expect_error(r, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(e["error"]["id"], "rate_limit_exceeded");
    let records = app
        .admin_get_list(&format!(
            "/admin/audit?identity_id={id}&type=second_factor.failed"
        ))
        .await;
    assert_eq!(records.len(), 10);
    // An hour later the right code works.
    app.clock.advance(Duration::from_secs(3601));
    let step = aal2_flow(&app, &aal1).await;
    let (s, _) = submit_login(
        &app,
        &step,
        json!({ "method": "totp", "totp_code": code(&app, &secret, 0) }),
        &aal1,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}
