//! `<SignIn/>`'s other factors on the Frontend API: a code mailed to the address
//! (`prepare_first_factor`/`attempt_first_factor` with `strategy=email_code`), and the
//! identity's second factor after the first (`attempt_second_factor` with `totp` or
//! `backup_code`), and "Forgot password?" (`reset_password_email_code`, then
//! `reset_password`). Chromium runs the same steps in `tests/browser/clerk.test.mjs`.

use crate::clerk_frontend::{fapi, frontend};
use crate::helpers::mfa::{code, link_totp, node, settings_flow, submit_settings};
use crate::helpers::{unique_email, TestApp, PASSWORD};
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend! {
    a_mailed_code_signs_in_and_tells_no_addresses_apart with code_sign_in,
    a_second_factor_follows_the_first_and_only_then_is_there_a_session with code_sign_in,
    backup_codes_sign_in_once_each with frontend,
    a_forgotten_password_is_reset_by_a_mailed_code_once with frontend,
    a_reset_password_still_needs_the_second_factor with frontend,
}

fn code_sign_in(c: &mut Config) {
    frontend(c);
    c.selfservice.methods.code.passwordless_enabled = true;
}

/// The sessions of `identity` the admin API lists as active.
async fn active_sessions(app: &TestApp, identity: &str) -> Vec<Value> {
    app.admin_get_list(&format!(
        "/admin/identities/{identity}/sessions?active=true"
    ))
    .await
}

/// The active session of `identity` whose Clerk id is `sid`: its methods in order, and its
/// assurance level.
async fn session_of(app: &TestApp, identity: &str, sid: &str) -> (Vec<String>, String) {
    let sessions = active_sessions(app, identity).await;
    let session = sessions
        .iter()
        .find(|s| format!("sess_{}", s["id"].as_str().unwrap().replace('-', "")) == sid)
        .unwrap_or_else(|| panic!("{sid} among {sessions:?}"));
    let methods = session["authentication_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap().to_string())
        .collect();
    let aal = session["authenticator_assurance_level"].as_str().unwrap();
    (methods, aal.to_string())
}

/// A new sign-in for `email`: its id, the answer, and the client cookie.
async fn start(app: &TestApp, email: &str) -> (String, Value, String) {
    let (st, started, cookie) =
        fapi(app, "/v1/client/sign_ins", &[("identifier", email)], None).await;
    assert_eq!(st, StatusCode::OK, "{started}");
    let id = started["response"]["id"].as_str().unwrap().to_string();
    (
        id,
        started["response"].clone(),
        cookie.expect("the client cookie"),
    )
}

/// A step of the sign-in `id`: `step` is `prepare_first_factor`, `attempt_first_factor` or
/// `attempt_second_factor`.
async fn step(
    app: &TestApp,
    id: &str,
    step: &str,
    form: &[(&str, &str)],
    cookie: &str,
) -> (StatusCode, Value, Option<String>) {
    fapi(
        app,
        &format!("/v1/client/sign_ins/{id}/{step}"),
        form,
        Some(cookie),
    )
    .await
}

async fn a_mailed_code_signs_in_and_tells_no_addresses_apart(app: TestApp) {
    let email = unique_email("fapi-code");
    let (identity, _) = app.register(&email, PASSWORD).await;
    let before = active_sessions(&app, &identity).await.len();
    // The environment offers the code; each sign-in names the address by an id of its own,
    // so a known address and an unknown one are offered the same factors.
    let (st, env) = app.get_json("/v1/environment").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        env["user_settings"]["attributes"]["email_address"]["first_factors"],
        json!(["email_code"])
    );
    let stranger = unique_email("fapi-nobody");
    let (id, known, cookie) = start(&app, &email).await;
    let (other_id, unknown, other_cookie) = start(&app, &stranger).await;
    let factor = |s: &Value| s["supported_first_factors"][1].clone();
    for (s, address) in [(&known, &email), (&unknown, &stranger)] {
        assert_eq!(
            s["supported_first_factors"][0],
            json!({"strategy": "password"})
        );
        let f = factor(s);
        assert_eq!(f["strategy"], "email_code");
        assert_eq!(f["safe_identifier"], address.as_str());
        assert!(f["email_address_id"].as_str().unwrap().starts_with("idn_"));
    }
    assert_ne!(
        factor(&known)["email_address_id"],
        factor(&unknown)["email_address_id"]
    );
    let address_id = factor(&known)["email_address_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Before a code was sent there is none to check; another sign-in's address id is refused.
    let (st, early, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", "123456")],
        &cookie,
    )
    .await;
    assert_eq!(
        (st, early["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("verification_missing"))
    );
    let foreign = factor(&unknown)["email_address_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, bad, _) = step(
        &app,
        &id,
        "prepare_first_factor",
        &[("strategy", "email_code"), ("email_address_id", &foreign)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["errors"][0]["meta"]["param_name"], "email_address_id");
    assert!(app
        .messages_to(&email)
        .await
        .iter()
        .all(|m| m["template_type"] != "login_code_valid"));

    // Prepared: the known address is mailed a login code, the unknown one nothing, and both
    // answers say a code is on its way.
    let (st, sent, cookie2) = step(
        &app,
        &id,
        "prepare_first_factor",
        &[
            ("strategy", "email_code"),
            ("email_address_id", &address_id),
        ],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{sent}");
    let cookie = cookie2.unwrap();
    let other_address = factor(&unknown)["email_address_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, alike, other_cookie2) = step(
        &app,
        &other_id,
        "prepare_first_factor",
        &[
            ("strategy", "email_code"),
            ("email_address_id", &other_address),
        ],
        &other_cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{alike}");
    for s in [&sent["response"], &alike["response"]] {
        assert_eq!(s["status"], "needs_first_factor");
        assert_eq!(s["first_factor_verification"]["status"], "unverified");
        assert_eq!(s["first_factor_verification"]["strategy"], "email_code");
        assert!(
            s["first_factor_verification"]["expire_at"]
                .as_i64()
                .unwrap()
                > 0
        );
    }
    assert!(app.messages_to(&stranger).await.is_empty());
    let mailed = app.mailed_code(&email, "login_code_valid").await;

    // Wrong: Clerk's form error at the code; the unknown address fails alike with any code.
    let wrong = if mailed == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (st, refused, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", wrong)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_code_incorrect");
    assert_eq!(refused["errors"][0]["meta"]["param_name"], "code");
    let (st, also, _) = step(
        &app,
        &other_id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", &mailed)],
        &other_cookie2.unwrap(),
    )
    .await;
    assert_eq!(
        (st, &also["errors"][0]["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("form_code_incorrect")
        )
    );
    // Another browser holding the sign-in's id but not its client cannot use the code.
    let (st, _, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", &mailed)],
        &other_cookie,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Right: a session signed in by the code, in the client.
    let (st, done, done_cookie) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", &mailed)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["response"]["status"], "complete");
    assert_eq!(
        done["response"]["first_factor_verification"]["status"],
        "verified"
    );
    assert_eq!(
        done["response"]["first_factor_verification"]["strategy"],
        "email_code"
    );
    let sid = done["response"]["created_session_id"].as_str().unwrap();
    assert_eq!(done["client"]["sessions"][0]["id"], sid);
    assert_eq!(active_sessions(&app, &identity).await.len(), before + 1);
    let (methods, _) = session_of(&app, &identity, sid).await;
    assert_eq!(methods, ["code"]);
    // The sign-in is finished: the code (or any factor) goes no further.
    let (st, again, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", &mailed)],
        &done_cookie.unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{again}");
    // A replay of the client from before the code was used: the code is spent.
    let (st, replay, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", &mailed)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{replay}");
    assert_eq!(active_sessions(&app, &identity).await.len(), before + 1);
}

async fn a_second_factor_follows_the_first_and_only_then_is_there_a_session(app: TestApp) {
    let email = unique_email("fapi-totp");
    let (identity, token) = app.register(&email, PASSWORD).await;
    // A browser signed in by the password alone, before the account had a second factor.
    let (id, _, cookie) = start(&app, &email).await;
    let (st, _, early) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "password"), ("password", PASSWORD)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let early = early.unwrap();
    let client = |cookie: String| {
        let app = &app;
        async move {
            let r = app
                .request(reqwest::Method::GET, "/v1/client")
                .header("cookie", format!("__client={cookie}"))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        client(early.clone()).await["response"]["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let secret = link_totp(&app, &token).await;
    // Linked: that session falls short of the level whoami asks for, and is signed in no
    // more on this face (its sign-in asks for the app's code).
    assert_eq!(client(early).await["response"]["sessions"], json!([]));
    let before = active_sessions(&app, &identity).await.len();
    let (id, _, cookie) = start(&app, &email).await;
    // The password is right: the second factor is asked for, and no session is made yet.
    let (st, asked, cookie2) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "password"), ("password", PASSWORD)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{asked}");
    let cookie = cookie2.unwrap();
    let s = &asked["response"];
    assert_eq!(s["status"], "needs_second_factor");
    assert_eq!(s["supported_second_factors"], json!([{"strategy": "totp"}]));
    assert_eq!(s["first_factor_verification"]["status"], "verified");
    assert_eq!(s["first_factor_verification"]["strategy"], "password");
    assert_eq!(s["created_session_id"], Value::Null);
    assert_eq!(asked["client"]["sessions"], json!([]));
    assert_eq!(active_sessions(&app, &identity).await.len(), before);
    // Not at the first factor any more; a factor the account has not is refused; a wrong
    // code is Clerk's form error at the code.
    let (st, _, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "password"), ("password", PASSWORD)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, other, _) = step(
        &app,
        &id,
        "attempt_second_factor",
        &[("strategy", "backup_code"), ("code", "abcdefgh")],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other["errors"][0]["code"], "strategy_for_user_invalid");
    // The code of the next period (linking used this one's).
    app.clock.advance(Duration::from_secs(30));
    let right = code(&app, &secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (st, refused, _) = step(
        &app,
        &id,
        "attempt_second_factor",
        &[("strategy", "totp"), ("code", wrong)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_code_incorrect");
    assert_eq!(refused["errors"][0]["meta"]["param_name"], "code");
    // The code from the app: one session, with both methods, at aal2.
    let (st, done, _) = step(
        &app,
        &id,
        "attempt_second_factor",
        &[("strategy", "totp"), ("code", &right)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["response"]["status"], "complete");
    assert_eq!(
        done["response"]["second_factor_verification"]["strategy"],
        "totp"
    );
    let sid = done["response"]["created_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(done["client"]["last_active_session_id"], sid.as_str());
    assert_eq!(active_sessions(&app, &identity).await.len(), before + 1);
    let (methods, aal) = session_of(&app, &identity, &sid).await;
    assert_eq!(
        (methods, aal.as_str()),
        (vec!["password".into(), "totp".into()], "aal2")
    );
    // The same code again, on a replay of the client at its second step: refused (each
    // period's code signs in once), and no second session.
    let (st, replay, _) = step(
        &app,
        &id,
        "attempt_second_factor",
        &[("strategy", "totp"), ("code", &right)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{replay}");
    assert_eq!(active_sessions(&app, &identity).await.len(), before + 1);

    // The mailed code is a first factor like the password: the app's code follows it too.
    let (id, started, cookie) = start(&app, &email).await;
    let address_id = started["supported_first_factors"][1]["email_address_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, cookie2) = step(
        &app,
        &id,
        "prepare_first_factor",
        &[
            ("strategy", "email_code"),
            ("email_address_id", &address_id),
        ],
        &cookie,
    )
    .await;
    let cookie = cookie2.unwrap();
    let mailed = app.mailed_code(&email, "login_code_valid").await;
    let (st, asked, cookie2) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", "email_code"), ("code", &mailed)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{asked}");
    assert_eq!(asked["response"]["status"], "needs_second_factor");
    assert_eq!(
        asked["response"]["first_factor_verification"]["strategy"],
        "email_code"
    );
    let cookie = cookie2.unwrap();
    // The wait for the second factor is the login flow's lifespan: after it, start again.
    app.clock.advance(Duration::from_secs(3600 + 60));
    let late = code(&app, &secret, 0);
    let (st, expired, _) = step(
        &app,
        &id,
        "attempt_second_factor",
        &[("strategy", "totp"), ("code", &late)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{expired}");
    assert_eq!(expired["errors"][0]["code"], "verification_expired");
    assert_eq!(active_sessions(&app, &identity).await.len(), before + 1);
}

async fn backup_codes_sign_in_once_each(app: TestApp) {
    let email = unique_email("fapi-lookup");
    let (identity, token) = app.register(&email, PASSWORD).await;
    let flow = settings_flow(&app, &token).await;
    let regenerate = json!({ "method": "lookup_secret", "lookup_secret_regenerate": true });
    let (st, shown) = submit_settings(&app, &token, &flow, regenerate).await;
    assert_eq!(st, StatusCode::OK, "{shown}");
    let codes: Vec<String> = node(&shown, "lookup_secret_codes").unwrap()["attributes"]["text"]
        ["context"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["context"]["secret"].as_str().unwrap().to_string())
        .collect();
    let confirm = json!({ "method": "lookup_secret", "lookup_secret_confirm": true });
    let (st, _) = submit_settings(&app, &token, &flow, confirm).await;
    assert_eq!(st, StatusCode::OK);
    let sign_in = |code: String| {
        let (app, email) = (&app, email.clone());
        async move {
            let (id, _, cookie) = start(app, &email).await;
            let (st, asked, cookie2) = step(
                app,
                &id,
                "attempt_first_factor",
                &[("strategy", "password"), ("password", PASSWORD)],
                &cookie,
            )
            .await;
            assert_eq!(st, StatusCode::OK, "{asked}");
            assert_eq!(
                asked["response"]["supported_second_factors"],
                json!([{"strategy": "backup_code"}])
            );
            let (st, answer, _) = step(
                app,
                &id,
                "attempt_second_factor",
                &[("strategy", "backup_code"), ("code", &code)],
                &cookie2.unwrap(),
            )
            .await;
            (st, answer)
        }
    };
    let (st, done) = sign_in(codes[0].to_uppercase()).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["response"]["status"], "complete");
    let sid = done["response"]["created_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (methods, _) = session_of(&app, &identity, &sid).await;
    assert_eq!(methods, ["password", "lookup_secret"]);
    // Used: refused the second time; another of the twelve still works.
    let (st, used) = sign_in(codes[0].clone()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{used}");
    assert_eq!(used["errors"][0]["code"], "form_code_incorrect");
    let (st, _) = sign_in(codes[1].clone()).await;
    assert_eq!(st, StatusCode::OK);
}

/// The factor `strategy` a sign-in offers.
fn offered(sign_in: &Value, strategy: &str) -> Value {
    sign_in["supported_first_factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["strategy"] == strategy)
        .cloned()
        .unwrap_or_else(|| panic!("{strategy} in {sign_in}"))
}

async fn a_forgotten_password_is_reset_by_a_mailed_code_once(app: TestApp) {
    const NEW: &str = "a-brand-new-passphrase-7";
    let email = unique_email("fapi-reset");
    let (identity, _) = app.register(&email, PASSWORD).await;
    let before = active_sessions(&app, &identity).await;
    assert_eq!(before.len(), 1);
    let (_, id_before) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(id_before["verifiable_addresses"][0]["verified"], false);

    // Known and unknown addresses are offered the reset alike; only the known one is mailed.
    let stranger = unique_email("fapi-reset-nobody");
    let (id, known, cookie) = start(&app, &email).await;
    let (other_id, unknown, other_cookie) = start(&app, &stranger).await;
    let reset = "reset_password_email_code";
    for (s, address) in [(&known, &email), (&unknown, &stranger)] {
        let f = offered(s, reset);
        assert_eq!(f["safe_identifier"], address.as_str());
        assert!(f["email_address_id"].as_str().unwrap().starts_with("idn_"));
    }
    // Nothing to set before a code came back, and no code to check before one was sent.
    let (st, early, _) = step(&app, &id, "reset_password", &[("password", NEW)], &cookie).await;
    assert_eq!(
        (st, early["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sign_in_state_invalid"))
    );
    let (st, early, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", reset), ("code", "123456")],
        &cookie,
    )
    .await;
    assert_eq!(
        (st, early["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("verification_missing"))
    );
    let prepare = |s: &Value| {
        vec![
            ("strategy".to_string(), reset.to_string()),
            (
                "email_address_id".to_string(),
                offered(s, reset)["email_address_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
        ]
    };
    let form = prepare(&known);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (st, sent, c) = step(&app, &id, "prepare_first_factor", &form, &cookie).await;
    assert_eq!(st, StatusCode::OK, "{sent}");
    let cookie = c.unwrap();
    let other_form = prepare(&unknown);
    let other_form: Vec<(&str, &str)> = other_form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (st, alike, c) = step(
        &app,
        &other_id,
        "prepare_first_factor",
        &other_form,
        &other_cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{alike}");
    let other_cookie = c.unwrap();
    for s in [&sent["response"], &alike["response"]] {
        assert_eq!(s["status"], "needs_first_factor");
        assert_eq!(s["first_factor_verification"]["status"], "unverified");
        assert_eq!(s["first_factor_verification"]["strategy"], reset);
    }
    assert!(app.messages_to(&stranger).await.is_empty());
    let mailed = app.mailed_code(&email, "recovery_code_valid").await;
    let (st, refused, _) = step(
        &app,
        &other_id,
        "attempt_first_factor",
        &[("strategy", reset), ("code", &mailed)],
        &other_cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_code_incorrect");

    // A wrong code at the field; the right one asks for the new password and makes no session.
    let wrong = if mailed == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (st, refused, _) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", reset), ("code", wrong)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["meta"]["param_name"], "code");
    let (st, verified, c) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", reset), ("code", &mailed)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{verified}");
    let cookie = c.unwrap();
    let v = &verified["response"];
    assert_eq!(v["status"], "needs_new_password");
    assert_eq!(v["first_factor_verification"]["status"], "verified");
    assert_eq!(v["first_factor_verification"]["strategy"], reset);
    assert!(v["created_session_id"].is_null());
    assert_eq!(active_sessions(&app, &identity).await.len(), 1);

    // The policy refuses at the password field, and the code is not spent by it.
    let (st, weak, _) = step(
        &app,
        &id,
        "reset_password",
        &[("password", "short")],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{weak}");
    assert_eq!(weak["errors"][0]["meta"]["param_name"], "password");
    assert!(weak["errors"][0]["code"]
        .as_str()
        .unwrap()
        .starts_with("form_password_"));

    // Set: a session, every other one signed out as asked, the address proven by the code.
    let (st, done, _) = step(
        &app,
        &id,
        "reset_password",
        &[("password", NEW), ("sign_out_of_other_sessions", "true")],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["response"]["status"], "complete");
    let sid = done["response"]["created_session_id"].as_str().unwrap();
    assert_eq!(done["client"]["sessions"][0]["id"], sid);
    let now = active_sessions(&app, &identity).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0]["id"], before[0]["id"]);
    assert_eq!(
        format!("sess_{}", now[0]["id"].as_str().unwrap().replace('-', "")),
        sid
    );
    let (_, id_after) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(id_after["verifiable_addresses"][0]["verified"], true);
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.login(&email, NEW).await.status(), StatusCode::OK);

    // The client as it stood before the reset sets no second password: the code is spent.
    let (st, replayed, _) = step(
        &app,
        &id,
        "reset_password",
        &[("password", "yet-another-passphrase-9")],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{replayed}");
    assert_eq!(replayed["errors"][0]["code"], "verification_expired");
    assert_eq!(app.login(&email, NEW).await.status(), StatusCode::OK);
}

async fn a_reset_password_still_needs_the_second_factor(app: TestApp) {
    const NEW: &str = "a-brand-new-passphrase-7";
    let reset = "reset_password_email_code";
    let email = unique_email("fapi-reset-totp");
    let (identity, token) = app.register(&email, PASSWORD).await;
    let secret = link_totp(&app, &token).await;
    let before = active_sessions(&app, &identity).await.len();
    let (id, started, cookie) = start(&app, &email).await;
    let address_id = offered(&started, reset)["email_address_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _, c) = step(
        &app,
        &id,
        "prepare_first_factor",
        &[("strategy", reset), ("email_address_id", &address_id)],
        &cookie,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let mailed = app.mailed_code(&email, "recovery_code_valid").await;
    let (st, _, c) = step(
        &app,
        &id,
        "attempt_first_factor",
        &[("strategy", reset), ("code", &mailed)],
        &c.unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // The mailed code stands for the password only: the app's code is still asked for, and
    // until it is given nothing has changed: the old password still works, the new one not.
    let (st, asked, c) = step(
        &app,
        &id,
        "reset_password",
        &[("password", NEW)],
        &c.unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{asked}");
    assert_eq!(asked["response"]["status"], "needs_second_factor");
    assert_eq!(
        asked["response"]["supported_second_factors"],
        json!([{"strategy": "totp"}])
    );
    assert!(asked["response"]["created_session_id"].is_null());
    assert_eq!(asked["client"]["sessions"], json!([]));
    assert_eq!(active_sessions(&app, &identity).await.len(), before);
    assert_eq!(
        app.login(&email, NEW).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(30));
    let (st, done, _) = step(
        &app,
        &id,
        "attempt_second_factor",
        &[("strategy", "totp"), ("code", &code(&app, &secret, 0))],
        &c.unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["response"]["status"], "complete");
    let sid = done["response"]["created_session_id"].as_str().unwrap();
    let (methods, aal) = session_of(&app, &identity, sid).await;
    assert_eq!(
        (methods, aal.as_str()),
        (vec!["code_recovery".into(), "totp".into()], "aal2")
    );
    assert_eq!(app.login(&email, NEW).await.status(), StatusCode::OK);
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
}
