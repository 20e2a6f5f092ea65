//! The courier on the wire: what a registration queues (dev mode enables verification, so a
//! code goes to the new address), the admin API's shapes, filters, pages and refusals, the dev
//! mailbox, the `email.created` webhook, and templates checked at start-up. Delivery over a
//! real SMTP server is tested against the binary in tests/interop/python/test_courier.py.

use crate::helpers::{expect_error, unique_email, TestApp, PASSWORD};
use crate::webhooks::{endpoint, Receiver};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend!(
    a_registration_queues_its_verification_code_for_the_admin_api,
    courier_messages_filter_by_status_and_recipient_and_page_with_link,
    bad_courier_input_gets_the_kratos_error_envelope,
    the_dev_mailbox_shows_the_codes,
    the_dev_mailbox_is_off_outside_dev_mode with not_dev,
    email_created_reaches_only_endpoints_that_subscribe_to_it,
);

fn not_dev(cfg: &mut portcullis_core::config::Config) {
    cfg.dev = false;
}

/// The six-digit code in a message body.
fn code_in(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body:?}"))
        .to_string()
}

async fn messages(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app
        .admin_get(&format!("/admin/courier/messages{query}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn a_registration_queues_its_verification_code_for_the_admin_api(app: TestApp) {
    let email = unique_email("courier");
    app.register(&email, PASSWORD).await;
    let list = messages(&app, "").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let m = &list[0];
    assert_eq!(m["recipient"], email);
    assert_eq!(m["template_type"], "verification_code_valid");
    assert_eq!(m["status"], "queued", "dev mode without SMTP sends nothing");
    assert_eq!(m["type"], "email");
    assert_eq!(m["channel"], "email");
    assert_eq!(m["send_count"], 0);
    assert_eq!(m["subject"], "Please verify your email address");
    for k in ["id", "body", "created_at", "updated_at"] {
        assert!(m[k].is_string(), "{k}: {m}");
    }
    let code = code_in(m["body"].as_str().unwrap());
    // The one message, with its (empty) dispatch log.
    let (status, one) = app
        .admin_get_json(&format!(
            "/admin/courier/messages/{}",
            m["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], m["id"]);
    assert_eq!(one["dispatches"], json!([]));
    assert!(one["body"].as_str().unwrap().contains(&code));
    // The code in the message verifies the address (the message is what was sent).
    let (_, identity) = app
        .admin_get_json(&format!("/admin/identities?credentials_identifier={email}"))
        .await;
    assert_eq!(
        identity[0]["verifiable_addresses"][0]["status"], "sent",
        "{identity}"
    );
}

async fn courier_messages_filter_by_status_and_recipient_and_page_with_link(app: TestApp) {
    let a = unique_email("a");
    let b = unique_email("b");
    for e in [&a, &b] {
        app.register(e, PASSWORD).await;
    }
    let c = unique_email("c");
    app.register(&c, PASSWORD).await;
    let all = messages(&app, "").await;
    let recipients: Vec<&str> = all
        .iter()
        .map(|m| m["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(
        recipients,
        vec![c.as_str(), b.as_str(), a.as_str()],
        "newest first"
    );
    let only_b = messages(&app, &format!("?recipient={b}")).await;
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0]["recipient"], b);
    assert_eq!(messages(&app, "?status=queued").await.len(), 3);
    assert!(messages(&app, "?status=sent").await.is_empty());
    assert!(messages(&app, "?recipient=nobody@example.com")
        .await
        .is_empty());
    // Pages of two: a `next` link (keeping the filter) until the last page.
    let r = app
        .admin_get("/admin/courier/messages?page_size=2&status=queued")
        .await;
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let first: Vec<Value> = r.json().await.unwrap();
    assert_eq!(first.len(), 2);
    let next = link
        .split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .and_then(|l| l.strip_prefix('<'))
        .and_then(|l| l.split('>').next())
        .unwrap_or_else(|| panic!("no next link in {link}"));
    assert!(next.contains("status=queued"), "{next}");
    let r = app.admin_get(next).await;
    assert!(!r.headers()["link"]
        .to_str()
        .unwrap()
        .contains("rel=\"next\""));
    let second: Vec<Value> = r.json().await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["recipient"], a);
}

async fn bad_courier_input_gets_the_kratos_error_envelope(app: TestApp) {
    for path in [
        "/admin/courier/messages?status=delivered",
        "/admin/courier/messages?page_token=not-a-token",
        "/admin/courier/messages?page_size=0",
        "/admin/courier/messages?page_size=lots",
        "/admin/courier/messages/not-a-uuid",
    ] {
        let body = expect_error(app.admin_get(path).await, StatusCode::BAD_REQUEST).await;
        assert!(body["error"]["reason"].is_string(), "{path}: {body}");
    }
    expect_error(
        app.admin_get("/admin/courier/messages/0192c3a4-0000-7000-8000-000000000000")
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn the_dev_mailbox_shows_the_codes(app: TestApp) {
    let email = unique_email("mailbox");
    app.register(&email, PASSWORD).await;
    let list = messages(&app, "").await;
    let code = code_in(list[0]["body"].as_str().unwrap());
    let r = app.admin_get("/admin/dev/mailbox").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = r.text().await.unwrap();
    assert!(page.contains(&email) && page.contains(&code), "{page}");
    assert!(page.contains("Please verify your email address"));
    assert!(!page.contains("<script"));
    // Filtered by recipient: another address shows nothing.
    let other = app
        .admin_get("/admin/dev/mailbox?recipient=%3Cb%3Enobody%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(other.contains("No messages yet.") && !other.contains(&code));
    assert!(
        other.contains("&lt;b&gt;nobody@example.com"),
        "the filter is echoed escaped"
    );
}

async fn the_dev_mailbox_is_off_outside_dev_mode(app: TestApp) {
    let r = app.admin_get("/admin/dev/mailbox").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The admin API stays.
    assert_eq!(
        app.admin_get("/admin/courier/messages").await.status(),
        StatusCode::OK
    );
}

async fn email_created_reaches_only_endpoints_that_subscribe_to_it(app: TestApp) {
    let (emails, emails_url) = Receiver::start().await;
    let (users, users_url) = Receiver::start().await;
    let (all, all_url) = Receiver::start().await;
    endpoint(&app, &emails_url, json!({ "events": ["email.created"] })).await;
    endpoint(&app, &users_url, json!({ "events": ["user.created"] })).await;
    endpoint(&app, &all_url, json!({})).await;
    let email = unique_email("hooked");
    let (id, _) = app.register(&email, PASSWORD).await;
    let got = emails.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let e = &got[0];
    assert_eq!(e["type"], "email.created");
    assert_eq!(e["object"], "event");
    let d = &e["data"];
    assert_eq!(d["object"], "email");
    assert_eq!(d["to_email_address"], email);
    assert_eq!(d["slug"], "verification_code_valid");
    assert_eq!(d["status"], "queued");
    assert_eq!(d["subject"], "Please verify your email address");
    assert_eq!(d["user_id"], format!("user_{}", id.replace('-', "")));
    assert!(d["id"].as_str().unwrap().starts_with("ema_"));
    assert!(d["body"].as_str().unwrap().starts_with("<!DOCTYPE html>"));
    let list = messages(&app, "").await;
    let code = code_in(list[0]["body"].as_str().unwrap());
    assert!(d["body_plain"].as_str().unwrap().contains(&code));
    assert!(d["data"].is_object() && d["delivered_by_clerk"].is_boolean());
    assert!(d["from_email_name"].is_string());
    // The others got what they subscribe to, and no email.
    let u = users.wait_for(1).await;
    let a = all.wait_for(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for body in users.bodies().iter().chain(all.bodies().iter()) {
        assert_ne!(body["type"], "email.created", "{body}");
    }
    assert_eq!(u[0]["type"], "user.created");
    assert!(a.iter().any(|b| b["type"] == "session.created"));
    assert_eq!(emails.bodies().len(), 1);
}

/// A broken override stops the start-up, naming the file.
#[tokio::test]
async fn a_broken_template_override_is_a_startup_error_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("pc-courier-tpl-{}", uuid::Uuid::new_v4()));
    let file = dir.join("recovery_code/valid/email.body.plaintext.gotmpl");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{{ if .RecoveryCode }}no end").unwrap();
    let env = vec![(
        "PORTCULLIS_DSN".to_string(),
        crate::helpers::dsn(crate::helpers::Backend::Sqlite).await,
    )];
    let mut cfg = portcullis_core::config::Config::load(None, env, true).unwrap();
    cfg.courier.template_override_path = dir.display().to_string();
    let err = match portcullis_server::build(cfg).await {
        Ok(_) => panic!("a broken template was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("recovery_code/valid/email.body.plaintext.gotmpl"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
