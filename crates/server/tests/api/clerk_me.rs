//! `/v1/me` through Clerk's Frontend API, as `<UserProfile/>` calls it: the user's own names,
//! password, address, sessions and (where allowed) account, each changed as the identity every
//! other face sees, and only by the client that holds the session.

use crate::clerk_frontend::{fapi, frontend, APP};
use crate::helpers::{unique_email, TestApp, PASSWORD};
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend! {
    the_profile_changes_the_users_own_names_and_password with frontend,
    a_new_address_replaces_the_old_once_its_code_comes_back with frontend,
    the_devices_list_shows_the_users_sessions_and_revokes_others with frontend,
    the_account_is_deleted_only_where_allowed with deletable,
    a_session_short_of_the_accounts_second_factor_is_signed_out_of_the_account with frontend,
    a_password_change_ends_other_sessions_where_the_policy_says_so with revoking,
}

fn revoking(c: &mut Config) {
    frontend(c);
    c.security.password_change.revoke_other_sessions = true;
}

/// `security.password_change.revoke_other_sessions` holds on this face too: a new password
/// from `<UserProfile/>` ends the other sessions though the user did not tick the box.
async fn a_password_change_ends_other_sessions_where_the_policy_says_so(app: TestApp) {
    let email = unique_email("fapi-policy");
    let (_, registered) = app.register(&email, PASSWORD).await;
    let (cookie, sid) = signed_in(&app, &email, PASSWORD).await;
    let (st, changed, _) = fapi(
        &app,
        &format!("/v1/me/change_password?_clerk_session_id={sid}"),
        &[
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
        ],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{changed}");
    assert_eq!(
        app.whoami_status(&registered).await,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = get(
        &app,
        &format!("/v1/me?_clerk_session_id={sid}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

fn deletable(c: &mut Config) {
    frontend(c);
    c.clerk.frontend.delete_self = true;
}

const NEW_PASSWORD: &str = "a-whole-new-passphrase-42";

/// A browser signed in through the Frontend API: its client cookie and session id.
pub(crate) async fn signed_in(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let (st, done, cookie) = fapi(
        app,
        "/v1/client/sign_ins",
        &[
            ("identifier", email),
            ("strategy", "password"),
            ("password", password),
        ],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let sid = done["response"]["created_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie.unwrap(), sid)
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> (StatusCode, Value) {
    let mut req = app
        .request(reqwest::Method::GET, path)
        .header("origin", APP);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("__client={c}"));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn token_status(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.post_json(
        "/api/token/",
        &json!({ "email": email, "password": password }),
    )
    .await
    .0
}

async fn the_profile_changes_the_users_own_names_and_password(app: TestApp) {
    let email = unique_email("me");
    let (identity, registered) = app.register(&email, PASSWORD).await;
    app.admin_patch(
        &format!("/admin/identities/{identity}"),
        &json!([{ "op": "add", "path": "/metadata_admin", "value": { "tier": "secret" } }]),
    )
    .await;
    // Signed out: Clerk's 401.
    let (st, _) = get(&app, "/v1/me", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (cookie, sid) = signed_in(&app, &email, PASSWORD).await;
    let (st, me) = get(
        &app,
        &format!("/v1/me?_clerk_session_id={sid}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{me}");
    let user = &me["response"];
    assert_eq!(user["email_addresses"][0]["email_address"], email.as_str());
    assert_eq!(user["password_enabled"], true);
    // What only a backend sees stays there.
    assert!(user.get("private_metadata").is_none(), "{user}");
    assert!(!me.to_string().contains("secret"));
    // Another client's session is not this browser's to use.
    let (_, other) = get(&app, "/v1/me?_clerk_session_id=sess_0", Some(&cookie)).await;
    assert_eq!(other["errors"][0]["code"], "authentication_invalid");

    let (st, renamed, _) = fapi(
        &app,
        &format!("/v1/me?_method=PATCH&_clerk_session_id={sid}"),
        &[("first_name", "Ida"), ("last_name", "Rhodes")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["response"]["first_name"], "Ida");
    assert_eq!(
        renamed["client"]["sessions"][0]["user"]["last_name"],
        "Rhodes"
    );
    let (_, stored) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(stored["traits"]["name"]["first"], "Ida");
    assert_eq!(stored["metadata_admin"]["tier"], "secret");

    let change = format!("/v1/me/change_password?_clerk_session_id={sid}");
    for (current, new, code, param) in [
        (
            "wrong-password",
            NEW_PASSWORD,
            "form_password_incorrect",
            "current_password",
        ),
        ("", NEW_PASSWORD, "form_param_missing", "current_password"),
        (
            PASSWORD,
            "short",
            "form_password_length_too_short",
            "new_password",
        ),
    ] {
        let (st, refused, _) = fapi(
            &app,
            &change,
            &[("current_password", current), ("new_password", new)],
            Some(&cookie),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(refused["errors"][0]["code"], code);
        assert_eq!(refused["errors"][0]["meta"]["param_name"], param);
    }
    assert_eq!(token_status(&app, &email, PASSWORD).await, StatusCode::OK);
    let (st, changed, _) = fapi(
        &app,
        &change,
        &[
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
            ("sign_out_of_other_sessions", "true"),
        ],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{changed}");
    assert_eq!(
        token_status(&app, &email, PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_status(&app, &email, NEW_PASSWORD).await,
        StatusCode::OK
    );
    // Announced by mail as the settings flow announces it, in the change's own write.
    let mails = app.messages_to(&email).await;
    assert!(
        mails
            .iter()
            .any(|m| m["template_type"] == "password_changed"),
        "{mails:?}"
    );
    // The other sessions ended (the registration's); this browser's goes on.
    assert_eq!(
        app.whoami_status(&registered).await,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = get(
        &app,
        &format!("/v1/me?_clerk_session_id={sid}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // Deleting the account is off unless configured.
    let (st, refused, _) = fapi(&app, "/v1/me?_method=DELETE", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{refused}");
    let (st, _) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(st, StatusCode::OK);
}

async fn a_new_address_replaces_the_old_once_its_code_comes_back(app: TestApp) {
    let email = unique_email("old");
    let (identity, _) = app.register(&email, PASSWORD).await;
    let taken = unique_email("taken");
    app.register(&taken, PASSWORD).await;
    let (cookie, _) = signed_in(&app, &email, PASSWORD).await;
    let (st, dup, _) = fapi(
        &app,
        "/v1/me/email_addresses",
        &[("email_address", &taken)],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{dup}");
    assert_eq!(dup["errors"][0]["code"], "form_identifier_exists");
    let (st, bad, _) = fapi(
        &app,
        "/v1/me/email_addresses",
        &[("email_address", "not-an-address")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    let new = unique_email("new");
    let (st, added, _) = fapi(
        &app,
        "/v1/me/email_addresses",
        &[("email_address", &new)],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{added}");
    let id = added["response"]["id"].as_str().unwrap().to_string();
    assert_eq!(added["response"]["email_address"], new.as_str());
    assert!(
        app.messages_to(&new).await.is_empty(),
        "no code before prepare"
    );
    let (st, prepared, _) = fapi(
        &app,
        &format!("/v1/me/email_addresses/{id}/prepare_verification"),
        &[("strategy", "email_code")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{prepared}");
    assert_eq!(prepared["response"]["verification"]["status"], "unverified");
    let code = app.mailed_code(&new, "verification_code_valid").await;
    // Another browser, even signed in as someone, cannot use this address's code.
    let (stranger, _) = signed_in(&app, &taken, PASSWORD).await;
    let attempt = format!("/v1/me/email_addresses/{id}/attempt_verification");
    let (st, _, _) = fapi(&app, &attempt, &[("code", &code)], Some(&stranger)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (st, refused, _) = fapi(&app, &attempt, &[("code", wrong)], Some(&cookie)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_code_incorrect");
    let (_, still) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(still["traits"]["email"], email.as_str());

    let (st, verified, _) = fapi(&app, &attempt, &[("code", &code)], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{verified}");
    assert_eq!(verified["response"]["verification"]["status"], "verified");
    let user = &verified["client"]["sessions"][0]["user"];
    assert_eq!(user["email_addresses"][0]["email_address"], new.as_str());
    assert_eq!(user["email_addresses"].as_array().unwrap().len(), 1);
    let (_, stored) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(stored["traits"]["email"], new.as_str());
    assert_eq!(stored["verifiable_addresses"][0]["verified"], true);
    // The new address signs in; the old one no longer does.
    assert_eq!(token_status(&app, &new, PASSWORD).await, StatusCode::OK);
    assert_eq!(
        token_status(&app, &email, PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    // The account's one address cannot be removed.
    let primary = user["primary_email_address_id"].as_str().unwrap();
    let (st, _, _) = fapi(
        &app,
        &format!("/v1/me/email_addresses/{primary}?_method=DELETE"),
        &[],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn the_devices_list_shows_the_users_sessions_and_revokes_others(app: TestApp) {
    let email = unique_email("devices");
    app.register(&email, PASSWORD).await;
    let (cookie, sid) = signed_in(&app, &email, PASSWORD).await;
    let (other_cookie, other) = signed_in(&app, &email, PASSWORD).await;
    let (st, list) = get(&app, "/v1/me/sessions/active", Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&sid.as_str()) && ids.contains(&other.as_str()),
        "{ids:?}"
    );
    assert_eq!(list[0]["latest_activity"]["object"], "session_activity");
    // The current session is ended by signing out, not here.
    let (st, _, _) = fapi(
        &app,
        &format!("/v1/me/sessions/{sid}/revoke"),
        &[],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, revoked, _) = fapi(
        &app,
        &format!("/v1/me/sessions/{other}/revoke"),
        &[],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["response"]["status"], "revoked");
    // The other browser is signed out; someone else's session is not found.
    let (st, _) = get(&app, "/v1/me", Some(&other_cookie)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let stranger = unique_email("stranger");
    app.register(&stranger, PASSWORD).await;
    let (_, theirs) = signed_in(&app, &stranger, PASSWORD).await;
    let (st, _, _) = fapi(
        &app,
        &format!("/v1/me/sessions/{theirs}/revoke"),
        &[],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn the_account_is_deleted_only_where_allowed(app: TestApp) {
    let email = unique_email("gone");
    let (identity, _) = app.register(&email, PASSWORD).await;
    let (cookie, _) = signed_in(&app, &email, PASSWORD).await;
    let (_, env) = get(&app, "/v1/environment", None).await;
    assert_eq!(env["user_settings"]["actions"]["delete_self"], true);
    let (st, deleted, _) = fapi(&app, "/v1/me?_method=DELETE", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["response"]["deleted"], true);
    assert_eq!(deleted["client"]["sessions"], json!([]));
    let (st, _) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// A browser signed in before the account gained a second factor: under `highest_available`
/// it neither reads nor changes the account, nor sees or ends its sessions.
async fn a_session_short_of_the_accounts_second_factor_is_signed_out_of_the_account(app: TestApp) {
    let email = unique_email("aal");
    let (_, token) = app.register(&email, PASSWORD).await;
    let (cookie, sid) = signed_in(&app, &email, PASSWORD).await;
    let (st, _) = get(&app, "/v1/me/sessions/active", Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK);
    crate::helpers::mfa::link_totp(&app, &token).await;
    // The Clerk face signs it out (its own sign-in asks for the factor), so every account
    // route answers Clerk's 401 and clerk-js goes back to <SignIn/>.
    for path in ["/v1/me", "/v1/me/sessions/active"] {
        let (st, refused) = get(&app, path, Some(&cookie)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {refused}");
        assert_eq!(refused["errors"][0]["code"], "authentication_invalid");
    }
    let (st, _, _) = fapi(
        &app,
        &format!("/v1/me?_method=PATCH&_clerk_session_id={sid}"),
        &[("first_name", "Eve")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
