//! Behaviour that depends on configuration.

use crate::helpers::{message_ids, unique_email, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn disabled_registration_refuses_new_and_existing_flows() {
    let open = TestApp::spawn(Backend::Sqlite).await;
    let flow = open.flow("registration").await;
    drop(open);
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.selfservice.flows.registration.enabled = false
    })
    .await;
    let r = app.get("/self-service/registration/api").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "self_service_flow_disabled");
    let r = app
        .submit(
            "registration",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password" }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_external_ui_takes_over_when_the_hosted_one_is_off() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ui.enabled = false;
        c.selfservice.flows.login.ui_url = "https://login.example.com/sign-in".into();
    })
    .await;
    let r = app.get("/ui/login").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.get("/self-service/login/browser").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("https://login.example.com/sign-in?flow="),
        "{to}"
    );
}

#[tokio::test]
async fn bcrypt_hasher_refuses_passwords_it_would_truncate() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.hashers.algorithm = portcullis_core::config::HasherAlgorithm::Bcrypt;
        c.hashers.bcrypt.cost = 4;
    })
    .await;
    let flow = app.flow("registration").await;
    let long = "correct horse battery staple ".repeat(3);
    let r = app
        .submit("registration", flow["id"].as_str().unwrap(), json!({ "method": "password", "password": long, "traits": { "email": unique_email("bc") } }), None)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, Some("password")), vec![4000033]);
    let email = unique_email("bc-ok");
    let (id, _) = app.register(&email, "tangerine violin sleepy").await;
    let (_, got) = app
        .admin_get_json(&format!(
            "/admin/identities/{id}?include_credential=password"
        ))
        .await;
    assert!(got["credentials"]["password"]["config"]["hashed_password"]
        .as_str()
        .unwrap()
        .starts_with("$2b$04$"));
}
