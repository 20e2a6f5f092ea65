//! The audit log of changes: every security-relevant change leaves one record, written with
//! the change, naming who made it (the identity, the admin API, a Clerk key, the server) and
//! never a secret.

use crate::helpers::{json_of, send, unique_email, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CLERK_KEY: &str = "sk_test_portcullis_audit";

crate::on_every_backend!(
    self_service_changes_are_audited_as_the_identity,
    admin_and_clerk_changes_are_audited_with_their_key with clerk_key,
    key_and_webhook_changes_are_audited_without_their_secrets,
    revoking_an_ended_session_again_records_nothing,
    admin_changes_name_the_admin_key_they_were_made_with with admin_key,
    a_right_password_for_an_inactive_account_is_not_a_success,
);

const ADMIN_KEY: &str = "pc_admin_audit_test_key_0123456789abcdef";

fn admin_key(c: &mut portcullis_core::config::Config) {
    use portcullis_core::admin_keys::{AdminApiKey, KeyHash};
    c.serve.admin.api_keys = vec![AdminApiKey {
        id: "ops".into(),
        hash: KeyHash::of(ADMIN_KEY),
    }];
}

fn clerk_key(c: &mut portcullis_core::config::Config) {
    c.clerk.secret_keys = vec![CLERK_KEY.into()];
}

/// The records about `identity`, oldest first, as `(type, actor type, reason)`.
async fn trail(app: &TestApp, identity: &str) -> Vec<(String, String, Option<String>)> {
    let mut rows = app
        .admin_get_list(&format!("/admin/audit?identity_id={identity}"))
        .await;
    rows.reverse();
    rows.iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().to_string(),
                r["actor"]["type"].as_str().unwrap().to_string(),
                r["reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn entry(kind: &str, actor: &str, reason: Option<&str>) -> (String, String, Option<String>) {
    (kind.into(), actor.into(), reason.map(str::to_string))
}

async fn self_service_changes_are_audited_as_the_identity(app: TestApp) {
    let email = unique_email("audit-self");
    let (id, token) = app.register(&email, PASSWORD).await;
    let new_password = "a completely fresh passphrase";
    app.change_password(&token, new_password).await;
    let (_, flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    let flow_id = flow["id"].as_str().unwrap();
    let r = app
        .submit(
            "settings",
            flow_id,
            json!({ "method": "profile", "traits": { "email": email, "name": { "first": "Grace", "last": "Hopper" } } }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A second session, ended from the first; then the first logs out.
    let (_, body) = json_of(app.login(&email, new_password).await).await;
    let second = body["session_token"].as_str().unwrap().to_string();
    let r = send(
        app.request(Method::DELETE, "/sessions")
            .header("x-session-token", &token),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.whoami_status(&second).await, StatusCode::UNAUTHORIZED);
    let r = send(
        app.request(Method::DELETE, "/self-service/logout/api")
            .json(&json!({ "session_token": token })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let me = "identity";
    assert_eq!(
        trail(&app, &id).await,
        vec![
            entry("registration.succeeded", me, Some("password")),
            entry("password.changed", me, None),
            entry("profile.changed", me, None),
            entry("login.succeeded", me, Some("password")),
            entry("session.revoked", me, Some("sign_out_others")),
            entry("session.revoked", me, Some("logout")),
        ]
    );
    let rows = app
        .admin_get_list(&format!("/admin/audit?identity_id={id}"))
        .await;
    let text = Value::Array(rows.clone()).to_string();
    assert!(!text.contains(PASSWORD) && !text.contains(new_password) && !text.contains(&token));
    assert!(rows.iter().all(|r| r["actor"]["id"] == id.as_str()));
}

async fn admin_and_clerk_changes_are_audited_with_their_key(app: TestApp) {
    let email = unique_email("audit-admin");
    let (id, token) = app.register(&email, PASSWORD).await;
    // The admin API deactivates: an update, a state change (from, to) and the sessions it ends.
    assert_eq!(app.deactivate(&id).await.status(), StatusCode::OK);
    assert_eq!(app.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    let r = app
        .admin_patch(
            &format!("/admin/identities/{id}"),
            &json!([{ "op": "replace", "path": "/state", "value": "active" }]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A Clerk ban through a configured key: the records name the key.
    let uid = format!("user_{}", id.replace('-', ""));
    let r = send(
        app.http
            .post(app.admin_url(&format!("/v1/users/{uid}/ban")))
            .bearer_auth(CLERK_KEY),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.admin_delete(&format!("/admin/identities/{id}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    assert_eq!(
        trail(&app, &id).await,
        vec![
            entry("registration.succeeded", "identity", Some("password")),
            entry("identity.updated", "admin", None),
            entry("identity.state_changed", "admin", None),
            entry("session.revoked", "admin", Some("identity_inactive")),
            entry("identity.updated", "admin", None),
            entry("identity.state_changed", "admin", None),
            entry("identity.updated", "clerk_key", None),
            entry("identity.state_changed", "clerk_key", None),
            entry("identity.deleted", "admin", None),
        ]
    );
    let changes = app
        .admin_get_list(&format!(
            "/admin/audit?identity_id={id}&type=identity.state_changed"
        ))
        .await;
    let moves: Vec<(Value, Value, Value)> = changes
        .iter()
        .rev()
        .map(|r| {
            (
                r["details"]["from"].clone(),
                r["details"]["to"].clone(),
                r["actor"]["id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            (json!("active"), json!("inactive"), Value::Null),
            (json!("inactive"), json!("active"), Value::Null),
            (json!("active"), json!("inactive"), json!("config_0")),
        ]
    );
}

async fn key_and_webhook_changes_are_audited_without_their_secrets(app: TestApp) {
    let (_, rotated) = json_of(app.admin_post("/admin/keys/rotate", &json!({})).await).await;
    let kid = rotated["kid"].as_str().unwrap();
    let (status, ep) = json_of(
        app.admin_post(
            "/admin/webhooks",
            &json!({ "url": "https://hooks.example.com/services/T000/path-secret?token=query-secret", "events": ["user.created"] }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ep}");
    let ep_id = ep["id"].as_str().unwrap();
    let (_, fresh) = json_of(
        app.admin_post(
            &format!("/admin/webhooks/{ep_id}/secret/rotate"),
            &json!({}),
        )
        .await,
    )
    .await;
    let r = app.admin_delete(&format!("/admin/webhooks/{ep_id}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, key) = json_of(app.admin_post("/admin/clerk/keys", &json!({})).await).await;
    let key_id = key["id"].as_str().unwrap();
    let r = app
        .admin_delete(&format!("/admin/clerk/keys/{key_id}"))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let mut rows = app.admin_get_list("/admin/audit?page_size=50").await;
    rows.reverse();
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap(),
                r["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let target = format!("webhook_endpoint:{ep_id}");
    let clerk = format!("clerk_key:{key_id}");
    assert_eq!(
        seen,
        vec![
            ("keys.rotated", format!("key:{kid}").as_str()),
            ("webhook.endpoint_created", target.as_str()),
            ("webhook.secret_rotated", target.as_str()),
            ("webhook.endpoint_deleted", target.as_str()),
            ("clerk_key.created", clerk.as_str()),
            ("clerk_key.revoked", clerk.as_str()),
        ]
    );
    assert!(rows.iter().all(|r| r["actor"]["type"] == "admin"));
    let text = Value::Array(rows).to_string();
    for secret in [
        ep["secret"].as_str().unwrap(),
        fresh["secret"].as_str().unwrap(),
        key["secret_key"].as_str().unwrap(),
        "query-secret",
        "path-secret",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the audit log");
    }
}

/// Found by the attack on the hardening: a revocation of a session that had already ended
/// changes nothing, so it must record nothing (else every repeat grows the log).
async fn revoking_an_ended_session_again_records_nothing(app: TestApp) {
    let email = unique_email("rerevoke");
    let (id, first) = app.register(&email, PASSWORD).await;
    let second = app.login_token(&email).await;
    let (_, s) = app.get_json_with_token("/sessions/whoami", &second).await;
    let sid = s["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let r = app
            .delete_with_token(&format!("/sessions/{sid}"), &first)
            .await;
        assert!(r.status().is_success(), "{}", r.status());
        let r = app.admin_delete(&format!("/admin/sessions/{sid}")).await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let revocations = app
        .admin_get_list(&format!(
            "/admin/audit?identity_id={id}&type=session.revoked"
        ))
        .await
        .into_iter()
        .filter(|r| r["target"] == format!("session:{sid}"))
        .count();
    assert_eq!(revocations, 1);
}

/// With admin API keys, a change's record names the key it was made with.
async fn admin_changes_name_the_admin_key_they_were_made_with(app: TestApp) {
    let r = send(
        app.http
            .post(app.admin_url("/admin/identities"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "schema_id": "default", "traits": { "email": unique_email("keyed") } })),
    )
    .await;
    let (status, identity) = json_of(r).await;
    assert_eq!(status, StatusCode::CREATED, "{identity}");
    let id = identity["id"].as_str().unwrap();
    let r = send(
        app.http
            .get(app.admin_url(&format!("/admin/audit?identity_id={id}")))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    let (_, rows) = json_of(r).await;
    assert_eq!(rows[0]["type"], "identity.created");
    assert_eq!(rows[0]["actor"], json!({ "type": "admin", "id": "ops" }));
}

/// Found by the attack: a matching password for a deactivated identity signs nobody in, so it
/// is recorded as a failure (`identity_inactive`), never as `login.succeeded`.
async fn a_right_password_for_an_inactive_account_is_not_a_success(app: TestApp) {
    let email = unique_email("inactive-login");
    let (id, _) = app.register(&email, PASSWORD).await;
    assert_eq!(app.deactivate(&id).await.status(), StatusCode::OK);
    assert!(!app.login(&email, PASSWORD).await.status().is_success());
    let rows = app
        .admin_get_list(&format!("/admin/audit?identity_id={id}&type=login.failed"))
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["reason"], "identity_inactive");
    let wins = app
        .admin_get_list(&format!(
            "/admin/audit?identity_id={id}&type=login.succeeded"
        ))
        .await;
    assert!(wins.is_empty(), "{wins:?}");
}
