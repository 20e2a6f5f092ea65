//! Events and signed webhooks, delivered to a real HTTP receiver.

use crate::helpers::{unique_email, TestApp, PASSWORD};
use axum::body::Bytes;
use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

crate::on_every_backend!(
    every_change_reaches_the_receiver_signed_and_in_order,
    failures_are_retried_on_schedule_and_logged,
    a_410_disables_the_endpoint,
    rotated_secrets_sign_twice_and_messages_can_be_resent_and_replayed,
    endpoint_admin_refuses_bad_input,
    secret_rotation_refuses_an_overlap_beyond_30_days,
);

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub(crate) async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let code = state.answers.lock().unwrap().pop_front().unwrap_or(200);
                    if code == 200 {
                        state.got.lock().unwrap().push((headers, body));
                    }
                    StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (r, url)
    }

    pub(crate) fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }

    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.bodies()
    }
}

pub(crate) async fn endpoint(app: &TestApp, url: &str, body: Value) -> Value {
    let mut b = body;
    b["url"] = json!(url);
    let r = app.admin_post("/admin/webhooks", &b).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let id = headers["webhook-id"].to_str().unwrap();
    let ts: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = portcullis_core::webhooks::sign(secret, id, ts, body).unwrap();
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
        && headers["svix-signature"] == headers["webhook-signature"]
        && headers["svix-id"] == headers["webhook-id"]
}

async fn every_change_reaches_the_receiver_signed_and_in_order(app: TestApp) {
    let (rx, url) = Receiver::start().await;
    let ep = endpoint(&app, &url, json!({ "format": "clerk" })).await;
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let email = unique_email("hooks");
    let (id, _) = app.register(&email, PASSWORD).await;
    app.admin_patch(
        &format!("/admin/identities/{id}"),
        &json!([{ "op": "add", "path": "/metadata_public", "value": { "plan": "pro" } }]),
    )
    .await;
    app.admin_delete(&format!("/admin/identities/{id}")).await;
    let got = rx.wait_for(5).await;
    let types: Vec<&str> = got.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "user.created",
            "session.created",
            "user.updated",
            "session.removed",
            "user.deleted"
        ]
    );
    let user = &got[0]["data"];
    assert_eq!(got[0]["object"], "event");
    assert_eq!(user["object"], "user");
    assert_eq!(user["id"], format!("user_{}", id.replace('-', "")));
    assert_eq!(user["email_addresses"][0]["email_address"], email.as_str());
    assert_eq!(user["first_name"], "Ada");
    assert_eq!(
        user["primary_email_address_id"],
        user["email_addresses"][0]["id"]
    );
    assert_eq!(got[2]["data"]["public_metadata"]["plan"], "pro");
    assert_eq!(
        got[4]["data"],
        json!({ "object": "user", "deleted": true, "id": user["id"] })
    );
    assert_eq!(got[1]["data"]["object"], "session");
    assert_eq!(
        got[1]["data"]["user"]["id"], user["id"],
        "session events embed the user"
    );
    assert_eq!(got[3]["data"]["status"], "removed");
    assert_eq!(
        got[3]["data"]["created_at"], got[1]["data"]["created_at"],
        "an ended session keeps its own times"
    );
    for (headers, body) in rx.got.lock().unwrap().iter() {
        assert!(
            verify(&secret, headers, body),
            "every message is signed under both header names"
        );
    }
    // A filtered native endpoint gets only its types, as Kratos JSON.
    let (rx2, url2) = Receiver::start().await;
    endpoint(
        &app,
        &url2,
        json!({ "format": "native", "events": ["user.created"] }),
    )
    .await;
    let (id2, _) = app.register(&unique_email("native"), PASSWORD).await;
    let got = rx2.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx2.bodies().len(), 1);
    assert_eq!(got[0]["type"], "user.created");
    assert_eq!(got[0]["data"]["id"], id2.as_str());
    assert_eq!(got[0]["data"]["schema_id"], "default");
    assert!(got[0]["data"]["credentials"]["password"]
        .get("config")
        .is_none());
}

async fn failures_are_retried_on_schedule_and_logged(app: TestApp) {
    let (rx, url) = Receiver::start().await;
    rx.answers.lock().unwrap().extend([500, 503]);
    let ep = endpoint(&app, &url, json!({ "events": ["user.created"] })).await;
    app.register(&unique_email("retry"), PASSWORD).await;
    // First attempt at once; the retries wait 5 s and 5 min on the server's clock.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.bodies().is_empty());
    app.clock.advance(Duration::from_secs(6));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.bodies().is_empty());
    app.clock.advance(Duration::from_secs(331));
    assert_eq!(rx.wait_for(1).await.len(), 1);
    // The receiver has the body before the server has recorded the answer: wait for the log.
    let attempts_url = app.admin_url(&format!(
        "/admin/webhooks/{}/attempts",
        ep["id"].as_str().unwrap()
    ));
    let mut attempts: Vec<Value> = vec![];
    for _ in 0..50 {
        attempts = app.get(&attempts_url).await.json().await.unwrap();
        if attempts.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut codes: Vec<i64> = attempts
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, vec![200, 500, 503]);
    assert!(attempts
        .iter()
        .all(|a| a["latency_ms"].is_i64() && a["attempted_at"].is_string()));
    let (_, state) = app
        .get_json(&app.admin_url(&format!("/admin/webhooks/{}", ep["id"].as_str().unwrap())))
        .await;
    assert_eq!(state["failing_since"], Value::Null, "recovered");
}

async fn a_410_disables_the_endpoint(app: TestApp) {
    let (rx, url) = Receiver::start().await;
    rx.answers.lock().unwrap().push_back(410);
    let ep = endpoint(&app, &url, json!({ "events": ["user.created"] })).await;
    let id = ep["id"].as_str().unwrap().to_string();
    app.register(&unique_email("gone"), PASSWORD).await;
    let mut state = Value::Null;
    for _ in 0..100 {
        state = app
            .admin_get(&format!("/admin/webhooks/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if state["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state["enabled"], false);
    assert!(state["disabled_reason"].as_str().unwrap().contains("410"));
    app.register(&unique_email("after"), PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.bodies().is_empty(), "a disabled endpoint gets nothing");
}

async fn rotated_secrets_sign_twice_and_messages_can_be_resent_and_replayed(app: TestApp) {
    let (rx, url) = Receiver::start().await;
    let ep = endpoint(&app, &url, json!({ "events": ["user.created"] })).await;
    let id = ep["id"].as_str().unwrap().to_string();
    let old = ep["secret"].as_str().unwrap().to_string();
    let (_, rotated) = app
        .admin_post_json(
            &format!("/admin/webhooks/{id}/secret/rotate"),
            &json!({ "overlap_seconds": 3600 }),
        )
        .await;
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    app.register(&unique_email("rot"), PASSWORD).await;
    rx.wait_for(1).await;
    let (headers, body) = rx.got.lock().unwrap()[0].clone();
    assert_eq!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(verify(&old, &headers, &body) && verify(&new, &headers, &body));
    let msg = headers["webhook-id"].to_str().unwrap().to_string();
    let r = app
        .admin_request(
            Method::POST,
            &format!("/admin/webhooks/{id}/messages/{msg}/resend"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let got = rx.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        rx.got.lock().unwrap()[1].0["webhook-id"],
        msg.as_str(),
        "the same message id, so receivers de-duplicate"
    );
    let since =
        portcullis_core::identity::rfc3339(app.state.core.now() - Duration::from_secs(3600));
    let (_, replayed) = app
        .admin_post_json(
            &format!("/admin/webhooks/{id}/replay"),
            &json!({ "since": since }),
        )
        .await;
    assert!(replayed["queued"].as_u64().unwrap() >= 1);
    assert!(rx.wait_for(3).await.len() >= 3);
    let r = app
        .admin_request(
            Method::POST,
            &format!("/admin/webhooks/{id}/messages/msg_nope/resend"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn endpoint_admin_refuses_bad_input(app: TestApp) {
    let hooks = app.admin_url("/admin/webhooks");
    for bad in [
        json!({}),
        json!({ "url": "not a url" }),
        json!({ "url": "ftp://x.example/" }),
        json!({ "url": "http://x.example/", "events": ["user.exploded"] }),
        json!({ "url": "http://x.example/", "format": "xml" }),
        json!({ "url": "http://x.example/", "extra": 1 }),
    ] {
        let r = app.post(&hooks, &bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], 400);
    }
    let ep = endpoint(&app, "http://127.0.0.1:9/hook", json!({})).await;
    let id = ep["id"].as_str().unwrap();
    assert_eq!(ep["format"], "clerk");
    assert_eq!(ep["events"], json!([]));
    let r = app
        .http
        .patch(format!("{hooks}/{id}"))
        .json(&json!({ "enabled": false, "events": ["user.deleted"] }))
        .send()
        .await
        .unwrap();
    let patched: Value = r.json().await.unwrap();
    assert_eq!(
        (patched["enabled"].clone(), patched["events"].clone()),
        (json!(false), json!(["user.deleted"]))
    );
    let list = app.get_list(&hooks).await;
    assert!(list
        .iter()
        .any(|e| e["id"] == id && e.get("secret").is_none()));
    let (_, s) = app.get_json(&format!("{hooks}/{id}/secret")).await;
    assert_eq!(s["secret"], ep["secret"]);
    assert_eq!(
        app.http
            .delete(format!("{hooks}/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("{hooks}/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn secret_rotation_refuses_an_overlap_beyond_30_days(app: TestApp) {
    let ep = endpoint(&app, "http://127.0.0.1:9/hook", json!({})).await;
    let rotate = format!(
        "{}/admin/webhooks/{}/secret/rotate",
        app.admin,
        ep["id"].as_str().unwrap()
    );
    // u64::MAX once overflowed the expiry and panicked the handler (an empty reply).
    for too_long in [json!(2_592_001u64), json!(u64::MAX)] {
        let r = app
            .post(&rotate, &json!({ "overlap_seconds": too_long }))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{too_long}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], 400);
        assert_eq!(e["error"]["status"], "Bad Request");
        assert!(
            e["error"]["reason"]
                .as_str()
                .unwrap()
                .contains("overlap_seconds"),
            "{e}"
        );
    }
    // The refused rotations changed nothing: the secret is the one issued at creation.
    let s: Value = app
        .get(&format!(
            "{}/admin/webhooks/{}/secret",
            app.admin,
            ep["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["secret"], ep["secret"]);
    // Exactly 30 days is allowed.
    let r = app
        .post(&rotate, &json!({ "overlap_seconds": 2_592_000u64 }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    let until = time::OffsetDateTime::parse(
        rotated["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let now = portcullis_core::service::Clock::now(app.clock.as_ref());
    assert_eq!((until - now).whole_days(), 30);
}

#[tokio::test]
async fn endpoints_declared_in_the_configuration_are_kept_in_step() {
    let (rx, url) = Receiver::start().await;
    let secret = portcullis_core::webhooks::new_secret();
    let declared = portcullis_core::config::ConfiguredEndpoint {
        id: "ep_config".into(),
        url: url.clone(),
        events: vec!["user.created".into()],
        format: portcullis_core::config::WebhookFormat::Native,
        secret: secret.clone().into(),
        enabled: true,
    };
    let dsn = crate::helpers::dsn(crate::helpers::Backend::Sqlite).await;
    let d = declared.clone();
    let app = TestApp::spawn_on(&dsn, move |c| c.webhooks.endpoints = vec![d]).await;
    app.register(&unique_email("cfg"), PASSWORD).await;
    rx.wait_for(1).await;
    let (headers, body) = rx.got.lock().unwrap()[0].clone();
    assert!(verify(&secret, &headers, &body));
    drop(app);
    // A restart with a changed declaration updates the same endpoint instead of adding one.
    let mut changed = declared;
    changed.events = vec!["user.created".into(), "user.deleted".into()];
    let again = TestApp::spawn_on(&dsn, move |c| c.webhooks.endpoints = vec![changed]).await;
    let list = again.admin_get_list("/admin/webhooks").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "ep_config");
    assert_eq!(list[0]["events"], json!(["user.created", "user.deleted"]));
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (rx, url) = Receiver::start().await;
    rx.answers
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(500, 100));
    let ep = endpoint(&app, &url, json!({ "events": ["user.created"] })).await;
    let id = ep["id"].as_str().unwrap().to_string();
    app.register(&unique_email("flaky"), PASSWORD).await;
    let state = |app: &TestApp| {
        let url = app.admin_url(&format!("/admin/webhooks/{id}"));
        let http = app.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    for _ in 0..100 {
        if state(&app).await["failing_since"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(state(&app).await["failing_since"].is_string());
    // New messages keep failing; once it has failed for five days the endpoint is turned off.
    for n in 0..9 {
        app.clock.advance(Duration::from_secs(16 * 3600));
        app.register(&unique_email(&format!("flaky{n}")), PASSWORD)
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let s = state(&app).await;
    assert_eq!(s["enabled"], false, "{s}");
    assert!(
        s["disabled_reason"].as_str().unwrap().contains("5 days"),
        "{s}"
    );
}
