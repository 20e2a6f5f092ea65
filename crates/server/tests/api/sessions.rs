use crate::helpers::{unique_email, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

crate::on_every_backend!(
    own_sessions_can_be_listed_and_revoked,
    sessions_expire_after_their_lifespan_and_can_be_extended,
    admin_can_list_get_and_disable_sessions,
    a_password_change_ends_the_other_sessions,
    other_sessions_can_survive_a_password_change_by_choice with keep_sessions,
);

fn keep_sessions(c: &mut portcullis_core::config::Config) {
    c.security.password_change.revoke_other_sessions = false;
}

/// ASVS 3.3.3, security review F19: whoever changed the password keeps their session; a thief's
/// session on another device ends with the change.
async fn a_password_change_ends_the_other_sessions(app: TestApp) {
    let email = unique_email("pwchange");
    let (_, mine) = app.register(&email, PASSWORD).await;
    let thief = app.login_token(&email).await;
    app.change_password(&mine, "an entirely new passphrase")
        .await;
    assert_eq!(app.whoami_status(&mine).await, StatusCode::OK);
    assert_eq!(app.whoami_status(&thief).await, StatusCode::UNAUTHORIZED);
}

/// `security.password_change.revoke_other_sessions: false` is Kratos' behaviour without the
/// `revoke_active_sessions` hook.
async fn other_sessions_can_survive_a_password_change_by_choice(app: TestApp) {
    let email = unique_email("pwkeep");
    let (_, mine) = app.register(&email, PASSWORD).await;
    let other = app.login_token(&email).await;
    app.change_password(&mine, "an entirely new passphrase")
        .await;
    assert_eq!(app.whoami_status(&other).await, StatusCode::OK);
}

async fn own_sessions_can_be_listed_and_revoked(app: TestApp) {
    let email = unique_email("mine");
    let (_, current) = app.register(&email, PASSWORD).await;
    let second = app.login_token(&email).await;
    let third = app.login_token(&email).await;
    let others = app.get_list_with_token("/sessions", &current).await;
    assert_eq!(others.len(), 2, "the current session is not listed");
    let current_id = {
        let (_, s) = app.get_json_with_token("/sessions/whoami", &current).await;
        s["id"].as_str().unwrap().to_string()
    };
    let r = app
        .delete_with_token(&format!("/sessions/{current_id}"), &current)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let one = others[0]["id"].as_str().unwrap();
    let r = app
        .delete_with_token(&format!("/sessions/{one}"), &current)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.delete_with_token("/sessions", &current).await;
    let count: Value = r.json().await.unwrap();
    assert_eq!(count["count"], 1);
    assert_eq!(app.whoami_status(&second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.whoami_status(&third).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.whoami_status(&current).await, StatusCode::OK);
    // Someone else's session cannot be revoked.
    let (_, stranger) = app.register(&unique_email("stranger"), PASSWORD).await;
    let r = app
        .delete_with_token(&format!("/sessions/{current_id}"), &stranger)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/sessions").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn sessions_expire_after_their_lifespan_and_can_be_extended(app: TestApp) {
    let email = unique_email("expiry");
    let (id, token) = app.register(&email, PASSWORD).await;
    app.clock.advance(Duration::from_secs(23 * 3600));
    let sessions = app
        .admin_get_list(&format!("/admin/identities/{id}/sessions"))
        .await;
    let sid = sessions[0]["id"].as_str().unwrap();
    let r = app
        .admin_request(Method::PATCH, &format!("/admin/sessions/{sid}/extend"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        app.whoami_status(&token).await,
        StatusCode::OK,
        "extended past the original expiry"
    );
    app.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(app.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    let active = app
        .admin_get_list(&format!("/admin/identities/{id}/sessions?active=true"))
        .await;
    assert!(active.is_empty());
    let r = app
        .admin_request(Method::PATCH, &format!("/admin/sessions/{sid}/extend"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "an expired session is not revived"
    );
}

async fn admin_can_list_get_and_disable_sessions(app: TestApp) {
    let email = unique_email("admsess");
    let (id, token) = app.register(&email, PASSWORD).await;
    let list = app.admin_get_list("/admin/sessions?expand=identity").await;
    let mine = list
        .iter()
        .find(|s| s["identity"]["id"] == id.as_str())
        .expect("listed");
    let sid = mine["id"].as_str().unwrap();
    let (_, got) = app.admin_get_json(&format!("/admin/sessions/{sid}")).await;
    assert!(
        got.get("identity").is_none(),
        "identity only with expand=identity"
    );
    assert_eq!(
        app.admin_delete(&format!("/admin/sessions/{sid}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    let (_, got) = app.admin_get_json(&format!("/admin/sessions/{sid}")).await;
    assert_eq!(got["active"], false);
    assert_eq!(
        app.admin_get(&format!("/admin/sessions/{}", uuid::Uuid::new_v4()))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .http
        .delete(app.admin_url(&format!(
            "/admin/identities/{}/sessions",
            uuid::Uuid::new_v4()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
