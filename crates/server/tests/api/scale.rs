//! Several stateless instances on one PostgreSQL database behave as one server.

use crate::helpers::{unique_email, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn instances_sharing_one_postgres_database_see_each_others_writes() {
    let dsn = portcullis_store::testing::fresh_postgres_database().await;
    let a = TestApp::spawn_on(&dsn, |_| {}).await;
    let b = TestApp::spawn_on(&dsn, |_| {}).await;
    let email = unique_email("scale");
    // A flow started on one instance is completed on the other.
    let flow = a.flow("registration").await;
    let r = b
        .submit(
            "registration",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "password": PASSWORD, "traits": { "email": email } }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token = body["session_token"].as_str().unwrap().to_string();
    let id = body["identity"]["id"].as_str().unwrap().to_string();
    assert_eq!(a.whoami_status(&token).await, StatusCode::OK);
    // A revocation through one instance is seen by the other at once.
    let r = b
        .request(Method::DELETE, "/self-service/logout/api")
        .json(&json!({ "session_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(a.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    // An admin change on one instance applies to logins on the other.
    let login: Value = a.login(&email, PASSWORD).await.json().await.unwrap();
    let token = login["session_token"].as_str().unwrap().to_string();
    let r = b.deactivate(&id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(a.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Both instances apply the same migrations without stepping on each other.
    let c = TestApp::spawn_on(&dsn, |_| {}).await;
    assert_eq!(c.get("/health/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn several_instances_deliver_each_webhook_message_once() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = s2.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                *seen.lock().unwrap().entry(id).or_default() += 1;
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let dsn = portcullis_store::testing::fresh_postgres_database().await;
    let a = TestApp::spawn_on(&dsn, |_| {}).await;
    let b = TestApp::spawn_on(&dsn, |_| {}).await;
    let r = a
        .admin_post(
            "/admin/webhooks",
            &json!({ "url": url, "events": ["user.created"] }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for n in 0..20 {
        let app = if n % 2 == 0 { &a } else { &b };
        let r = app
            .admin_post(
                "/admin/identities",
                &json!({ "traits": { "email": unique_email(&format!("multi{n}")) } }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20, "every message arrived");
    assert!(
        seen.values().all(|n| *n == 1),
        "no message was sent twice: {seen:?}"
    );
}
