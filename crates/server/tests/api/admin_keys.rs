//! The optional admin API key (`serve.admin.api_keys`): without keys the admin API is open as
//! in Kratos; with keys every admin request needs one, refusals are audited, and the health
//! probes and the Clerk face (its own keys) are unaffected.

use crate::helpers::{expect_error, json_of, send, unique_email, TestApp};
use portcullis_core::admin_keys::{AdminApiKey, KeyHash};
use portcullis_core::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

crate::on_every_backend!(
    without_admin_keys_the_admin_api_is_open_as_in_kratos,
    with_admin_keys_every_admin_request_needs_one with two_admin_keys,
);

const OPS_KEY: &str = "pc_admin_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const CI_KEY: &str = "pc_admin_9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";
const CLERK_KEY: &str = "sk_test_admin_keys_clerk_0123456789";

fn two_admin_keys(c: &mut Config) {
    c.serve.admin.api_keys = [("ops", OPS_KEY), ("ci", CI_KEY)]
        .into_iter()
        .map(|(id, key)| AdminApiKey {
            id: id.into(),
            hash: KeyHash::of(key),
        })
        .collect();
    c.clerk.secret_keys = vec![CLERK_KEY.to_string().into()];
}

async fn without_admin_keys_the_admin_api_is_open_as_in_kratos(app: TestApp) {
    let r = app.admin_get("/admin/identities").await;
    assert_eq!(r.status(), StatusCode::OK);
    // A bearer token is not looked at when no keys are configured.
    let r = send(
        app.admin_request(Method::GET, "/admin/identities")
            .bearer_auth("anything"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let audit = app
        .admin_get_list("/admin/audit?type=admin_key.refused")
        .await;
    assert!(audit.is_empty(), "{audit:?}");
}

async fn with_admin_keys_every_admin_request_needs_one(app: TestApp) {
    // No key, a wrong key, another scheme: 401 in the Kratos envelope, with a challenge.
    let r = app.admin_get("/admin/identities").await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"portcullis-admin\""
    );
    let body = expect_error(r, StatusCode::UNAUTHORIZED).await;
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let wrong = format!("{}ff", &OPS_KEY[..OPS_KEY.len() - 2]);
    let r = send(
        app.admin_request(Method::GET, "/admin/identities")
            .bearer_auth(&wrong),
    )
    .await;
    let body = expect_error(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["error"]["reason"], "The admin API key is not valid.");
    let r = send(
        app.admin_request(Method::GET, "/admin/identities")
            .basic_auth("admin", Some(OPS_KEY)),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED).await;
    // Writes and unknown paths are refused the same way, before anything happens.
    let r = app
        .create_identity(
            json!({ "schema_id": "default", "traits": { "email": unique_email("nokey") } }),
        )
        .await;
    expect_error(r, StatusCode::UNAUTHORIZED).await;
    for (method, path) in [
        (Method::POST, "/admin/keys/rotate"),
        (Method::POST, "/admin/clerk/keys"),
        (Method::GET, "/admin/nothing-here"),
        (Method::GET, "/admin/version"),
    ] {
        let r = send(app.admin_request(method, path)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // Either configured key works, the scheme in any case.
    let with = |m: Method, path: &str, key: &str| {
        app.admin_request(m, path)
            .header("authorization", format!("bearer {key}"))
    };
    let r = send(with(Method::GET, "/admin/identities", CI_KEY)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let email = unique_email("withkey");
    let r = send(
        with(Method::POST, "/admin/identities", OPS_KEY)
            .json(&json!({ "schema_id": "default", "traits": { "email": email } })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Health probes need no key; the Clerk face keeps its own keys.
    for path in [
        "/admin/health/alive",
        "/admin/health/ready",
        "/health/alive",
        "/health/ready",
    ] {
        assert_eq!(app.admin_get(path).await.status(), StatusCode::OK, "{path}");
    }
    let r = send(
        app.admin_request(Method::GET, "/v1/users")
            .bearer_auth(CLERK_KEY),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        app.admin_request(Method::GET, "/v1/users")
            .bearer_auth(OPS_KEY),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, body) = json_of(r).await;
    assert_eq!(body["errors"][0]["code"], "authentication_invalid");

    // Each refusal left an audit record, readable with a key; none holds a key.
    let r = send(with(
        Method::GET,
        "/admin/audit?type=admin_key.refused&page_size=100",
        OPS_KEY,
    ))
    .await;
    let (status, records) = json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{records}");
    let records = records.as_array().unwrap().clone();
    assert_eq!(records.len(), 8, "{records:?}");
    let first = records.last().unwrap();
    assert_eq!(first["outcome"], "failure");
    assert_eq!(first["reason"], "missing");
    assert_eq!(first["actor"]["type"], "anonymous");
    assert_eq!(first["ip_address"], "127.0.0.1");
    assert_eq!(first["details"]["request"], "GET /admin/identities");
    assert_eq!(records[records.len() - 2]["reason"], "invalid");
    let text = Value::Array(records).to_string();
    assert!(
        !text.contains(&OPS_KEY[9..]) && !text.contains(&wrong[9..]),
        "{text}"
    );
}
