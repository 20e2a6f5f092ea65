//! Sign-ups through Clerk's Frontend API, as `<SignUp/>` makes them: the address, a password
//! and the names, then the code the courier mailed. The account exists only once the code came
//! back; it is the identity every other face sees, and its events reach the webhooks.

use crate::clerk_frontend::{fapi, frontend};
use crate::helpers::{unique_email, TestApp, PASSWORD};
use crate::webhooks::{endpoint, Receiver};
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend! {
    a_sign_up_mails_a_code_and_the_code_makes_the_account with frontend,
    a_sign_up_is_refused_at_the_field_as_clerk_shows_it with frontend,
    under_mitigation_a_taken_address_signs_up_alike_and_no_code_matches with mitigated,
}

fn mitigated(c: &mut Config) {
    frontend(c);
    c.security.account_enumeration.mitigate = true;
}

async fn start(app: &TestApp, email: &str) -> (StatusCode, Value, Option<String>) {
    fapi(
        app,
        "/v1/client/sign_ups",
        &[
            ("email_address", email),
            ("password", PASSWORD),
            ("first_name", "Grace"),
            ("last_name", "Hopper"),
            ("locale", "en-US"),
        ],
        None,
    )
    .await
}

async fn identities_with(app: &TestApp, email: &str) -> Vec<Value> {
    app.admin_get_list(&format!("/admin/identities?credentials_identifier={email}"))
        .await
}

async fn a_sign_up_mails_a_code_and_the_code_makes_the_account(app: TestApp) {
    let (rx, url) = Receiver::start().await;
    endpoint(&app, &url, json!({ "format": "clerk" })).await;
    let email = unique_email("signup");
    let (st, started, cookie) = start(&app, &email).await;
    assert_eq!(st, StatusCode::OK, "{started}");
    let cookie = cookie.expect("the client cookie");
    let s = &started["response"];
    let id = s["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sua_"), "{id}");
    assert_eq!(s["status"], "missing_requirements");
    assert_eq!(s["unverified_fields"], json!(["email_address"]));
    // clerk-js skips `prepare_verification` when the code is already on its way.
    assert_eq!(s["verifications"]["email_address"]["status"], "unverified");
    assert_eq!(
        s["verifications"]["email_address"]["strategy"],
        "email_code"
    );
    assert!(
        s["verifications"]["email_address"]["expire_at"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(s["email_address"], email.as_str());
    assert_eq!(s["first_name"], "Grace");
    assert_eq!(started["client"]["sign_up"]["id"], id.as_str());
    // Nothing exists before the code comes back.
    assert!(identities_with(&app, &email).await.is_empty());
    let first = app.mailed_code(&email, "registration_code_valid").await;
    // clerk-js 5 prepares on its own as the code page opens: that mails nothing more.
    let unprepared = cookie.clone();
    let (st, prepared, kept) = fapi(
        &app,
        &format!("/v1/client/sign_ups/{id}/prepare_verification"),
        &[("strategy", "email_code")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{prepared}");
    let cookie = kept.unwrap_or(cookie);
    assert_eq!(prepared["response"]["status"], "missing_requirements");
    assert_eq!(app.messages_to(&email).await.len(), 1);
    // And again (its first request aborted as the page drew again, the cookie kept): the
    // first code still works.
    let (st, _, kept) = fapi(
        &app,
        &format!("/v1/client/sign_ups/{id}/prepare_verification"),
        &[("strategy", "email_code")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let cookie = kept.unwrap_or(cookie);
    assert_eq!(app.messages_to(&email).await.len(), 1);

    let attempt = format!("/v1/client/sign_ups/{id}/attempt_verification");
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (st, refused, _) = fapi(
        &app,
        &attempt,
        &[("strategy", "email_code"), ("code", wrong)],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_code_incorrect");
    assert_eq!(refused["errors"][0]["meta"]["param_name"], "code");
    // Only another strategy's verification is refused as such.
    let (st, other, _) = fapi(
        &app,
        &attempt,
        &[("strategy", "phone_code"), ("code", &first)],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other["errors"][0]["code"], "strategy_for_user_invalid");
    // Another browser (no cookie, or its own) does not find the sign-up.
    let (_, _, stranger) = start(&app, &unique_email("stranger")).await;
    for c in [None, stranger.as_deref()] {
        let (st, _, _) = fapi(
            &app,
            &attempt,
            &[("strategy", "email_code"), ("code", &first)],
            c,
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }

    // "Resend", once the UI's countdown allows it: a new code, and the first one stops working.
    // Even as the sign-up's first prepare (clerk-js 6 never sent one), so from the cookie
    // before the one above.
    app.clock.advance(std::time::Duration::from_secs(31));
    let (st, again, _) = fapi(
        &app,
        &format!("/v1/client/sign_ups/{id}/prepare_verification"),
        &[("strategy", "email_code")],
        Some(&unprepared),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    let mails = app.messages_to(&email).await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    let second = app.mailed_code(&email, "registration_code_valid").await;
    if second != first {
        let (st, _, _) = fapi(
            &app,
            &attempt,
            &[("strategy", "email_code"), ("code", &first)],
            Some(&cookie),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (st, done, cookie) = fapi(
        &app,
        &attempt,
        &[("strategy", "email_code"), ("code", &second)],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let cookie = cookie.unwrap();
    let d = &done["response"];
    assert_eq!(d["status"], "complete");
    assert_eq!(d["unverified_fields"], json!([]));
    let sid = d["created_session_id"].as_str().unwrap();
    let uid = d["created_user_id"].as_str().unwrap();
    assert_eq!(done["client"]["last_active_session_id"], sid);
    let session = &done["client"]["sessions"][0];
    assert_eq!(session["id"], sid);
    assert_eq!(session["status"], "active");
    assert_eq!(session["user"]["id"], uid);
    assert_eq!(session["user"]["first_name"], "Grace");
    assert_eq!(session["user"]["last_name"], "Hopper");
    assert_eq!(
        session["user"]["email_addresses"][0]["verification"]["status"],
        "verified"
    );
    assert!(session["last_active_token"]["jwt"].is_string());

    // The identity every face sees: the address verified, the password set.
    let found = identities_with(&app, &email).await;
    assert_eq!(found.len(), 1);
    let identity = found[0]["id"].as_str().unwrap();
    assert_eq!(uid, format!("user_{}", identity.replace('-', "")));
    let (_, full) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(full["verifiable_addresses"][0]["verified"], true);
    assert_eq!(full["traits"]["name"]["first"], "Grace");
    let (st, tokens) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    // The code is spent: the finished sign-up takes no more.
    let (st, replay, _) = fapi(
        &app,
        &attempt,
        &[("strategy", "email_code"), ("code", &second)],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{replay}");
    assert_eq!(identities_with(&app, &email).await.len(), 1);
    // The webhooks learn of the user and of the session, as Clerk sends them.
    let got = rx.wait_for(3).await;
    let types: Vec<&str> = got.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types[..2], ["user.created", "session.created"], "{types:?}");
    assert_eq!(got[0]["data"]["id"], uid);
    assert_eq!(got[1]["data"]["id"], sid);
}

async fn a_sign_up_is_refused_at_the_field_as_clerk_shows_it(app: TestApp) {
    let taken = unique_email("taken");
    app.register(&taken, PASSWORD).await;
    let before = app.messages_to(&taken).await.len();
    let (st, dup, cookie) = start(&app, &taken).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{dup}");
    assert_eq!(dup["errors"][0]["code"], "form_identifier_exists");
    assert_eq!(dup["errors"][0]["meta"]["param_name"], "email_address");
    assert!(cookie.is_none());
    assert_eq!(app.messages_to(&taken).await.len(), before, "no mail");

    let fresh = unique_email("weak");
    for (password, code) in [
        ("short", "form_password_length_too_short"),
        ("", "form_param_missing"),
    ] {
        let (st, weak, _) = fapi(
            &app,
            "/v1/client/sign_ups",
            &[("email_address", fresh.as_str()), ("password", password)],
            None,
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{weak}");
        let e = &weak["errors"][0];
        assert_eq!(e["code"], code, "{weak}");
        assert_eq!(e["meta"]["param_name"], "password");
    }
    // A malformed address, and none: at the address field, each in Clerk's envelope.
    for (email, code) in [
        ("not-an-address", "form_param_format_invalid"),
        ("", "form_param_missing"),
    ] {
        let (st, bad, _) = fapi(
            &app,
            "/v1/client/sign_ups",
            &[("email_address", email), ("password", PASSWORD)],
            None,
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let e = bad["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["meta"]["param_name"] == "email_address")
            .unwrap_or_else(|| panic!("no address error in {bad}"));
        assert_eq!(e["code"], code, "{bad}");
    }
    assert!(app.messages_to(&fresh).await.is_empty());
    // Strategies this server does not serve.
    let (st, oauth, _) = fapi(
        &app,
        "/v1/client/sign_ups",
        &[("strategy", "oauth_google")],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(oauth["errors"][0]["code"], "strategy_for_user_invalid");
    // A foreign page cannot start one.
    let r = app
        .request(reqwest::Method::POST, "/v1/client/sign_ups")
        .header("origin", "https://evil.example")
        .form(&[("email_address", fresh.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// With enumeration mitigation a taken address gets the answer a free one gets, and its owner
/// no code; whatever code comes back is wrong, and the account stays as it was.
async fn under_mitigation_a_taken_address_signs_up_alike_and_no_code_matches(app: TestApp) {
    let taken = unique_email("taken");
    app.register(&taken, PASSWORD).await;
    let before = app.messages_to(&taken).await.len();
    let fresh = unique_email("fresh");
    let (st_taken, t, cookie) = start(&app, &taken).await;
    let (st_fresh, f, _) = start(&app, &fresh).await;
    assert_eq!(
        (st_taken, st_fresh),
        (StatusCode::OK, StatusCode::OK),
        "{t}"
    );
    let shape = |v: &Value| {
        let s = &v["response"];
        (
            s["status"].clone(),
            s["unverified_fields"].clone(),
            s["verifications"]["email_address"]["status"].clone(),
            s["verifications"]["email_address"]["strategy"].clone(),
        )
    };
    assert_eq!(shape(&t), shape(&f));
    assert_eq!(
        app.messages_to(&taken).await.len(),
        before,
        "no code mailed"
    );
    assert_eq!(app.messages_to(&fresh).await.len(), 1);
    let id = t["response"]["id"].as_str().unwrap();
    for code in ["000000", "123456"] {
        let (st, wrong, _) = fapi(
            &app,
            &format!("/v1/client/sign_ups/{id}/attempt_verification"),
            &[("strategy", "email_code"), ("code", code)],
            cookie.as_deref(),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{wrong}");
        assert_eq!(wrong["errors"][0]["code"], "form_code_incorrect");
    }
    assert_eq!(identities_with(&app, &taken).await.len(), 1);
}
