//! Address verification by code: after registration (API and browser), started by the user,
//! after an e-mail change in settings; and the flow hooks around it (`session`,
//! `show_verification_ui`, `require_verified_address`, `verification`).

use crate::helpers::{csrf, location, message_ids, unique_email, Browser, TestApp, PASSWORD};
use portcullis_core::config::{Config, HookConfig, HookName};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend!(
    registration_sends_a_code_and_the_code_verifies_the_address,
    a_user_can_ask_for_a_verification_code_again,
    a_wrong_verification_code_is_refused,
    an_email_change_in_settings_is_verified_afresh,
    registration_without_the_session_hook_signs_nobody_in with no_session_hook,
    show_verification_ui_sends_the_browser_to_the_verification_page with show_ui_hook,
    require_verified_address_refuses_sign_in_until_verified with require_verified,
    the_verification_hook_sends_a_code_on_sign_in with verification_hook,
    a_password_change_is_announced_by_email,
    enumeration_mitigation_answers_a_taken_identifier_like_a_new_one with mitigate,
    a_verified_address_reaches_webhooks_as_user_updated,
);

/// Clerk's `user.updated` carries the address's verification once it is verified.
async fn a_verified_address_reaches_webhooks_as_user_updated(app: TestApp) {
    use crate::webhooks::{endpoint, Receiver};
    let (rx, url) = Receiver::start().await;
    endpoint(&app, &url, json!({ "events": ["user.updated"] })).await;
    let email = unique_email("hooked");
    app.register(&email, PASSWORD).await;
    let (_, flow) = app.get_json("/self-service/verification/api").await;
    let fid = flow["id"].as_str().unwrap().to_string();
    app.post_json(
        &format!("/self-service/verification?flow={fid}"),
        &json!({ "method": "code", "email": email }),
    )
    .await;
    let code = app.mailed_code(&email, "verification_code_valid").await;
    let (s, _) = submit_code(&app, &fid, &code).await;
    assert_eq!(s, StatusCode::OK);
    let got = rx.wait_for(1).await;
    let updated = got
        .iter()
        .find(|b| b["type"] == "user.updated")
        .unwrap_or_else(|| panic!("no user.updated in {got:?}"));
    let address = &updated["data"]["email_addresses"][0];
    assert_eq!(address["email_address"], json!(email));
    assert_eq!(address["verification"]["status"], "verified");
}

fn mitigate(c: &mut Config) {
    c.security.account_enumeration.mitigate = true;
    c.selfservice.flows.registration.after.password.hooks = hooks(&[]);
    c.selfservice.flows.login.after.password.hooks = hooks(&[HookName::RequireVerifiedAddress]);
}

/// Security review F19 (registration leaks accounts): with mitigation, signing up with a
/// taken address looks exactly like signing up with a new one, and mails nobody a code.
async fn enumeration_mitigation_answers_a_taken_identifier_like_a_new_one(app: TestApp) {
    async fn sign_up(app: &TestApp, email: &str) -> (StatusCode, Value, Value) {
        let flow = app.flow("registration").await;
        let id = flow["id"].as_str().unwrap().to_string();
        let body =
            json!({ "method": "password", "password": PASSWORD, "traits": { "email": email } });
        let r = app.submit("registration", &id, body.clone(), None).await;
        let status = r.status();
        let first: Value = r.json().await.unwrap();
        let again: Value = app
            .submit("registration", &id, body, None)
            .await
            .json()
            .await
            .unwrap();
        (status, first, again)
    }
    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
    let taken = unique_email("taken");
    let (s, _, _) = sign_up(&app, &taken).await;
    assert_eq!(s, StatusCode::OK);
    let mailed = app.messages_to(&taken).await.len();
    let (s_dup, dup, dup_again) = sign_up(&app, &taken).await;
    let fresh = unique_email("fresh");
    let (s_new, new, new_again) = sign_up(&app, &fresh).await;
    assert_eq!(s_dup, s_new);
    assert_eq!(keys(&dup), keys(&new));
    assert!(dup.get("session_token").is_none());
    assert_eq!(
        verification_item(&dup)["flow"]["verifiable_address"],
        json!(taken)
    );
    assert_eq!(keys(&dup["identity"]), keys(&new["identity"]));
    assert_eq!(message_ids(&dup_again, None), message_ids(&new_again, None));
    assert_eq!(
        app.messages_to(&taken).await.len(),
        mailed,
        "no code for a taken address"
    );
    // Sign-up that signs in at once cannot hide it: refused at load.
    let env = vec![(
        "PORTCULLIS_SECURITY_ACCOUNT_ENUMERATION_MITIGATE".to_string(),
        "true".to_string(),
    )];
    let e = Config::load(None, env, true).unwrap_err().to_string();
    assert!(e.contains("security.account_enumeration.mitigate"), "{e}");
}

fn hooks(list: &[HookName]) -> Option<Vec<HookConfig>> {
    Some(
        list.iter()
            .map(|h| HookConfig {
                hook: *h,
                config: Value::Null,
            })
            .collect(),
    )
}

fn no_session_hook(c: &mut Config) {
    c.selfservice.flows.registration.after.password.hooks = hooks(&[]);
}

fn show_ui_hook(c: &mut Config) {
    c.selfservice.flows.registration.after.password.hooks =
        hooks(&[HookName::Session, HookName::ShowVerificationUi]);
}

fn require_verified(c: &mut Config) {
    c.selfservice.flows.login.after.password.hooks = hooks(&[HookName::RequireVerifiedAddress]);
}

fn verification_hook(c: &mut Config) {
    c.selfservice.flows.login.after.hooks = hooks(&[HookName::Verification]);
}

fn verification_item(body: &Value) -> Value {
    body["continue_with"]
        .as_array()
        .unwrap_or_else(|| panic!("no continue_with in {body}"))
        .iter()
        .find(|c| c["action"] == "show_verification_ui")
        .cloned()
        .unwrap_or_else(|| panic!("no show_verification_ui in {body}"))
}

async fn submit_code(app: &TestApp, flow_id: &str, code: &str) -> (StatusCode, Value) {
    app.post_json(
        &format!("/self-service/verification?flow={flow_id}"),
        &json!({ "method": "code", "code": code }),
    )
    .await
}

async fn address(app: &TestApp, identity_id: &str) -> Value {
    let (_, i) = app
        .admin_get_json(&format!("/admin/identities/{identity_id}"))
        .await;
    i["verifiable_addresses"][0].clone()
}

/// Native registration: the response points at the verification flow, the address is
/// `sent`, the mailed code completes the flow and the address becomes verified.
async fn registration_sends_a_code_and_the_code_verifies_the_address(app: TestApp) {
    let email = unique_email("verify");
    let flow = app.flow("registration").await;
    let r = app
        .submit(
            "registration",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "password": PASSWORD, "traits": { "email": email } }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let id = body["identity"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        body["identity"]["verifiable_addresses"][0]["status"],
        "sent"
    );
    let item = verification_item(&body);
    assert_eq!(item["flow"]["verifiable_address"], json!(email));
    let vflow = item["flow"]["id"].as_str().unwrap().to_string();
    let (s, f) = app
        .get_json(&format!("/self-service/verification/flows?id={vflow}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(f["state"], "sent_email");
    assert_eq!(f["active"], "code");
    assert_eq!(message_ids(&f, None), vec![1080003]);
    let code = app.mailed_code(&email, "verification_code_valid").await;
    let (s, done) = submit_code(&app, &vflow, &code).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "passed_challenge");
    assert_eq!(message_ids(&done, None), vec![1080002]);
    let cont = done["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["id"] == "continue")
        .unwrap();
    assert_eq!(cont["type"], "a");
    let a = address(&app, &id).await;
    assert_eq!(a["verified"], true);
    assert_eq!(a["status"], "completed");
    assert!(a["verified_at"].is_string());
    // Used once.
    let (s, again) = submit_code(&app, &vflow, &code).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&again, None), vec![4070002]);
}

async fn a_user_can_ask_for_a_verification_code_again(app: TestApp) {
    let email = unique_email("reverify");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (s, flow) = app.get_json("/self-service/verification/api").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(flow["state"], "choose_method");
    let path = format!(
        "/self-service/verification?flow={}",
        flow["id"].as_str().unwrap()
    );
    let (s, sent) = app
        .post_json(
            &path,
            &json!({ "method": "code", "email": email.to_uppercase() }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    let code = app.mailed_code(&email, "verification_code_valid").await;
    let (s, _) = submit_code(&app, flow["id"].as_str().unwrap(), &code).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(address(&app, &id).await["verified"], true);
    // An address nobody has gets the same answer and no message.
    let (_, flow) = app.get_json("/self-service/verification/api").await;
    let path = format!(
        "/self-service/verification?flow={}",
        flow["id"].as_str().unwrap()
    );
    let nobody = unique_email("nobody");
    let (s, sent) = app
        .post_json(&path, &json!({ "method": "code", "email": nobody }))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sent["state"], "sent_email");
    assert!(app.messages_to(&nobody).await.is_empty());
}

async fn a_wrong_verification_code_is_refused(app: TestApp) {
    let email = unique_email("wrongverify");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (_, flow) = app.get_json("/self-service/verification/api").await;
    let fid = flow["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .post_json(
            &format!("/self-service/verification?flow={fid}"),
            &json!({ "method": "code", "email": email }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let code = app.mailed_code(&email, "verification_code_valid").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (s, f) = submit_code(&app, &fid, wrong).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&f, None), vec![4070006]);
    assert_eq!(address(&app, &id).await["verified"], false);
}

async fn an_email_change_in_settings_is_verified_afresh(app: TestApp) {
    let email = unique_email("before");
    let (id, token) = app.register(&email, PASSWORD).await;
    assert_eq!(address(&app, &id).await["status"], "sent");
    let newer = unique_email("after");
    let (s, flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = app
        .request(
            reqwest::Method::POST,
            &format!(
                "/self-service/settings?flow={}",
                flow["id"].as_str().unwrap()
            ),
        )
        .header("X-Session-Token", &token)
        .json(&json!({ "method": "profile", "traits": { "email": newer } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let item = verification_item(&body);
    assert_eq!(item["flow"]["verifiable_address"], json!(newer));
    let a = address(&app, &id).await;
    assert_eq!(a["value"], json!(newer));
    assert_eq!(a["verified"], false);
    assert_eq!(a["status"], "sent");
    let code = app.mailed_code(&newer, "verification_code_valid").await;
    let (s, _) = submit_code(&app, item["flow"]["id"].as_str().unwrap(), &code).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(address(&app, &id).await["verified"], true);
}

async fn registration_without_the_session_hook_signs_nobody_in(app: TestApp) {
    let email = unique_email("nosession");
    let flow = app.flow("registration").await;
    let r = app
        .submit(
            "registration",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "password": PASSWORD, "traits": { "email": email } }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["identity"]["id"].is_string());
    assert!(body.get("session").is_none(), "{body}");
    assert!(body.get("session_token").is_none(), "{body}");
    // The account exists: signing in works.
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

async fn show_verification_ui_sends_the_browser_to_the_verification_page(app: TestApp) {
    let mut b = Browser::new(&app);
    let email = unique_email("showui");
    let flow = b.flow("registration").await;
    let r = b.post_registration(&flow, &email).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.contains("/ui/verification?flow="), "{to}");
    assert!(b.has_session_cookie());
    // That flow belongs to this browser (its new, session-bound CSRF secret).
    let id = to.split("flow=").nth(1).unwrap().to_string();
    let f = b.fetch_flow("verification", &id).await;
    assert_eq!(f["state"], "sent_email");
    let code = app.mailed_code(&email, "verification_code_valid").await;
    let r = b
        .post_form(
            f["ui"]["action"].as_str().unwrap(),
            &[
                ("csrf_token", csrf(&f)),
                ("method", "code"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let done = b.fetch_flow("verification", &id).await;
    assert_eq!(done["state"], "passed_challenge");
}

async fn require_verified_address_refuses_sign_in_until_verified(app: TestApp) {
    let email = unique_email("mustverify");
    app.register(&email, PASSWORD).await;
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "session_verified_address_required");
    let item = &e["error"]["details"]["continue_with"][0];
    assert_eq!(item["action"], "show_verification_ui");
    let vflow = item["flow"]["id"].as_str().unwrap();
    let code = app.mailed_code(&email, "verification_code_valid").await;
    let (s, _) = submit_code(&app, vflow, &code).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

async fn the_verification_hook_sends_a_code_on_sign_in(app: TestApp) {
    let email = unique_email("loginverify");
    app.register(&email, PASSWORD).await;
    let before = app.messages_to(&email).await.len();
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["session_token"].is_string());
    verification_item(&body);
    assert_eq!(app.messages_to(&email).await.len(), before + 1);
}

async fn a_password_change_is_announced_by_email(app: TestApp) {
    let email = unique_email("announce");
    let (_, token) = app.register(&email, PASSWORD).await;
    app.change_password(&token, "another long passphrase").await;
    let m = app.messages_to(&email).await;
    assert!(
        m.iter().any(|m| m["template_type"] == "password_changed"),
        "{m:?}"
    );
}
