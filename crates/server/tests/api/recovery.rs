//! The recovery flow by code: emailed codes (read back through the courier's admin API),
//! the attempt budget, expiry, single use, the same answer for unknown addresses, admin codes
//! and links, and the privileged session and settings flow a recovery ends in.

use crate::helpers::{csrf, location, message_ids, unique_email, Browser, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend!(
    an_emailed_code_recovers_the_account_and_a_new_password_signs_in,
    a_wrong_code_is_refused_and_the_sixth_attempt_ends_the_flow,
    malformed_codes_do_not_use_up_attempts,
    a_code_works_once,
    an_expired_code_is_refused,
    an_unknown_address_gets_the_same_answer_and_no_code,
    a_disabled_identity_gets_no_code,
    an_admin_code_recovers_through_an_api_flow,
    an_admin_link_signs_the_browser_in_once,
    a_browser_cannot_submit_a_code_to_another_browsers_flow,
    recovery_can_end_the_other_sessions with revoke_hook,
    bad_recovery_input_gets_clear_errors,
    resending_in_a_loop_is_throttled with email_limit,
);

fn email_limit(c: &mut portcullis_core::config::Config) {
    c.security.rate_limit.email = portcullis_core::ratelimit::Quota {
        per_minute: 1,
        burst: 3,
    };
}

/// Asking for codes again and again (to flood someone's inbox) is cut off per client.
async fn resending_in_a_loop_is_throttled(app: TestApp) {
    let email = unique_email("loop");
    app.register(&email, PASSWORD).await;
    let (_, flow) = app.get_json("/self-service/recovery/api").await;
    let path = submit_path(&flow);
    let mut statuses = vec![];
    for _ in 0..5 {
        let r = app
            .post(&path, &json!({ "method": "code", "email": email }))
            .await;
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().get("retry-after").is_some());
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["id"], "rate_limit_exceeded");
        }
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    assert_eq!(&statuses[3..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    let sent = app
        .messages_to(&email)
        .await
        .into_iter()
        .filter(|m| m["template_type"] == "recovery_code_valid")
        .count();
    assert_eq!(sent, 3);
}

fn revoke_hook(c: &mut portcullis_core::config::Config) {
    c.selfservice.flows.recovery.after.hooks = Some(vec![portcullis_core::config::HookConfig {
        hook: portcullis_core::config::HookName::RevokeActiveSessions,
        config: Value::Null,
    }]);
}

/// Starts an API recovery flow and asks for a code for `email`; returns the flow.
async fn request_code(app: &TestApp, email: &str) -> Value {
    let (s, flow) = app.get_json("/self-service/recovery/api").await;
    assert_eq!(s, StatusCode::OK, "{flow}");
    assert_eq!(flow["state"], "choose_method");
    assert_eq!(flow["active"], "code");
    let (s, sent) = app
        .post_json(
            &submit_path(&flow),
            &json!({ "method": "code", "email": email }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    sent
}

fn submit_path(flow: &Value) -> String {
    format!(
        "/self-service/recovery?flow={}",
        flow["id"].as_str().unwrap()
    )
}

async fn submit_code(app: &TestApp, flow: &Value, code: &str) -> (StatusCode, Value) {
    app.post_json(
        &submit_path(flow),
        &json!({ "method": "code", "code": code }),
    )
    .await
}

/// A code that is well formed but not `code`.
fn other_code(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

fn session_token(body: &Value) -> String {
    body["continue_with"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "set_ory_session_token")
        .and_then(|c| c["ory_session_token"].as_str())
        .unwrap_or_else(|| panic!("no session token in {body}"))
        .to_string()
}

fn settings_flow_id(body: &Value) -> String {
    body["continue_with"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "show_settings_ui")
        .and_then(|c| c["flow"]["id"].as_str())
        .unwrap_or_else(|| panic!("no settings flow in {body}"))
        .to_string()
}

async fn an_emailed_code_recovers_the_account_and_a_new_password_signs_in(app: TestApp) {
    let email = unique_email("recover");
    app.register(&email, PASSWORD).await;
    let flow = request_code(&app, &email).await;
    assert_eq!(message_ids(&flow, None), vec![1060003]);
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    let (s, done) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "passed_challenge");
    let token = session_token(&done);
    let (s, me) = app.get_json_with_token("/sessions/whoami", &token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["identity"]["traits"]["email"], email);
    assert_eq!(me["authentication_methods"][0]["method"], "code_recovery");
    // The settings flow it continues with says what happened, and takes a new password
    // right away: the session is privileged.
    let settings = settings_flow_id(&done);
    let (s, sf) = app
        .get_json_with_token(
            &format!("/self-service/settings/flows?id={settings}"),
            &token,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sf}");
    assert_eq!(message_ids(&sf, None), vec![1060001]);
    let new_password = "a fresh recovered passphrase";
    let r = app
        .request(
            reqwest::Method::POST,
            &format!("/self-service/settings?flow={settings}"),
        )
        .header("X-Session-Token", &token)
        .json(&json!({ "method": "password", "password": new_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.login(&email, new_password).await.status(),
        StatusCode::OK
    );
}

async fn a_wrong_code_is_refused_and_the_sixth_attempt_ends_the_flow(app: TestApp) {
    let email = unique_email("wrongcode");
    app.register(&email, PASSWORD).await;
    let flow = request_code(&app, &email).await;
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    for _ in 0..5 {
        let (s, f) = submit_code(&app, &flow, &other_code(&code)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(message_ids(&f, None), vec![4060006]);
        assert_eq!(f["state"], "sent_email");
    }
    // The budget is spent: even the right code is refused now.
    let (s, f) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&f, None), vec![4060002]);
}

async fn malformed_codes_do_not_use_up_attempts(app: TestApp) {
    let email = unique_email("malformed");
    app.register(&email, PASSWORD).await;
    let flow = request_code(&app, &email).await;
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    for bad in [
        "12345",
        "1234567",
        "abcdef",
        "12 456",
        "١٢٣٤٥٦",
        "' OR 1=1",
        &"9".repeat(5000),
    ] {
        let (s, f) = submit_code(&app, &flow, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(message_ids(&f, None), vec![4060006]);
    }
    let (s, done) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::OK, "{done}");
}

async fn a_code_works_once(app: TestApp) {
    let email = unique_email("once");
    app.register(&email, PASSWORD).await;
    let flow = request_code(&app, &email).await;
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    let (s, _) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::OK);
    let (s, again) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{again}");
    assert_eq!(message_ids(&again, None), vec![4060001]);
    assert!(again.get("continue_with").is_none_or(|c| c
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["action"] != "set_ory_session_token")));
}

async fn an_expired_code_is_refused(app: TestApp) {
    let email = unique_email("expired");
    app.register(&email, PASSWORD).await;
    let flow = request_code(&app, &email).await;
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    // Codes live 10 minutes by default; the flow itself an hour.
    app.clock.advance(std::time::Duration::from_secs(11 * 60));
    let (s, f) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{f}");
    assert_eq!(message_ids(&f, None), vec![4060006]);
}

/// The flow, stripped of what differs between any two flows (ids, times, the address).
fn shape(flow: &Value, address: &str) -> String {
    let id = flow["id"].as_str().unwrap();
    let mut v = flow.clone();
    for k in ["id", "expires_at", "issued_at"] {
        v[k] = Value::Null;
    }
    v.to_string().replace(id, "ID").replace(address, "ADDRESS")
}

async fn an_unknown_address_gets_the_same_answer_and_no_code(app: TestApp) {
    let known = unique_email("known");
    app.register(&known, PASSWORD).await;
    let unknown = unique_email("nobody");
    let a = request_code(&app, &known).await;
    let b = request_code(&app, &unknown).await;
    assert_eq!(shape(&a, &known), shape(&b, &unknown));
    assert!(app.messages_to(&unknown).await.is_empty());
    // Every code is wrong for the unknown address.
    let (s, f) = submit_code(&app, &b, "000000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&f, None), vec![4060006]);
}

async fn a_disabled_identity_gets_no_code(app: TestApp) {
    let email = unique_email("disabled");
    let (id, _) = app.register(&email, PASSWORD).await;
    assert_eq!(app.deactivate(&id).await.status(), StatusCode::OK);
    let flow = request_code(&app, &email).await;
    assert_eq!(flow["state"], "sent_email");
    assert!(
        app.messages_to(&email)
            .await
            .iter()
            .all(|m| m["template_type"] != "recovery_code_valid"),
        "a disabled identity is answered like an unknown address"
    );
}

async fn an_admin_code_recovers_through_an_api_flow(app: TestApp) {
    let email = unique_email("admincode");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (s, r) = app
        .admin_post_json(
            "/admin/recovery/code",
            &json!({ "identity_id": id, "expires_in": "15m", "flow_type": "api" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let code = r["recovery_code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    let link = r["recovery_link"].as_str().unwrap();
    let flow_id = link.split("flow=").nth(1).unwrap();
    let flow = json!({ "id": flow_id });
    let (s, done) = submit_code(&app, &flow, code).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let token = session_token(&done);
    assert_eq!(app.whoami_status(&token).await, StatusCode::OK);
    // Unknown identity: 404; a bad duration: 400.
    let (s, _) = app
        .admin_post_json(
            "/admin/recovery/code",
            &json!({ "identity_id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = app
        .admin_post_json(
            "/admin/recovery/code",
            &json!({ "identity_id": id, "expires_in": "soon" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

async fn an_admin_link_signs_the_browser_in_once(app: TestApp) {
    let email = unique_email("adminlink");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (s, r) = app
        .admin_post_json("/admin/recovery/link", &json!({ "identity_id": id }))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let link = r["recovery_link"].as_str().unwrap().to_string();
    let mut b = Browser::new(&app);
    let resp = b.get(&link).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&resp).contains("/ui/settings?flow="),
        "{}",
        location(&resp)
    );
    assert!(b.has_session_cookie());
    let mut other = Browser::new(&app);
    let resp = other.get(&link).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(!other.has_session_cookie(), "a link works once");
}

async fn a_browser_cannot_submit_a_code_to_another_browsers_flow(app: TestApp) {
    let email = unique_email("csrfrecovery");
    app.register(&email, PASSWORD).await;
    let mut alice = Browser::new(&app);
    let flow = alice.flow("recovery").await;
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    let r = alice
        .post_json(
            &action,
            &json!({ "method": "code", "email": email, "csrf_token": csrf(&flow) }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    let mut mallory = Browser::new(&app);
    let theirs = mallory.flow("recovery").await;
    let r = mallory
        .post_json(
            &action,
            &json!({ "method": "code", "code": code, "csrf_token": csrf(&theirs) }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!mallory.has_session_cookie());
    // The owner still can.
    let r = alice
        .post_json(
            &action,
            &json!({ "method": "code", "code": code, "csrf_token": csrf(&flow) }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(alice.has_session_cookie());
}

async fn recovery_can_end_the_other_sessions(app: TestApp) {
    let email = unique_email("revokeafter");
    let (_, thief) = app.register(&email, PASSWORD).await;
    let flow = request_code(&app, &email).await;
    let code = app.mailed_code(&email, "recovery_code_valid").await;
    let (s, done) = submit_code(&app, &flow, &code).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.whoami_status(&thief).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.whoami_status(&session_token(&done)).await,
        StatusCode::OK
    );
}

async fn bad_recovery_input_gets_clear_errors(app: TestApp) {
    let (s, e) = app
        .post_json(
            "/self-service/recovery?flow=nope",
            &json!({"method": "code"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let missing = format!("/self-service/recovery?flow={}", uuid::Uuid::new_v4());
    let (s, _) = app
        .post_json(&missing, &json!({"method": "code", "email": "a@b.c"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, flow) = app.get_json("/self-service/recovery/api").await;
    let (s, f) = app
        .post_json(&submit_path(&flow), &json!({"method": "code"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&f, Some("email")), vec![4000002]);
    let (s, f) = app
        .post_json(
            &submit_path(&flow),
            &json!({"method": "link", "email": "a@b.c"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&f, None), vec![4010005]);
    let r = app
        .post_raw(&submit_path(&flow), "application/json", vec![b'{'; 200_000])
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A signed-in caller cannot start one.
    let (_, token) = app.register(&unique_email("signedin"), PASSWORD).await;
    let (s, e) = app
        .get_json_with_token("/self-service/recovery/api", &token)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}
