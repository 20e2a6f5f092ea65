use crate::helpers::{message_ids, unique_email, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend!(
    registration_login_whoami_and_logout_round_trip,
    unknown_account_and_wrong_password_fail_identically,
    emails_are_identifiers_regardless_of_case,
    registration_reports_schema_and_policy_violations_on_their_nodes,
    expired_flows_answer_410_with_a_replacement_flow,
    completed_flows_cannot_be_replayed,
    settings_changes_profile_and_password,
    password_change_needs_a_privileged_session,
    api_flows_refuse_browser_requests,
    inactive_identities_cannot_log_in_and_lose_their_sessions,
    imported_hashes_are_upgraded_on_login,
    return_to_must_be_allowed_and_is_kept_on_the_flow,
    concurrent_submits_of_one_login_flow_succeed_once,
    concurrent_submits_of_one_registration_flow_create_one_account,
);

async fn return_to_must_be_allowed_and_is_kept_on_the_flow(app: TestApp) {
    for kind in ["login", "registration"] {
        let r = app
            .get(&format!(
                "/self-service/{kind}/api?return_to=https://evil.example/steal"
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["id"], "self_service_flow_return_to_forbidden");
    }
    let own = app.url("/somewhere");
    let r = app
        .get(&format!("/self-service/login/api?return_to={own}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let flow: Value = r.json().await.unwrap();
    assert_eq!(flow["return_to"], own);
    let (_, again) = app
        .get_json(&app.url(&format!(
            "/self-service/login/flows?id={}",
            flow["id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(
        again["return_to"], own,
        "return_to is persisted with the flow"
    );
}

async fn concurrent_submits_of_one_login_flow_succeed_once(app: TestApp) {
    let email = unique_email("race");
    app.register(&email, PASSWORD).await;
    let flow = app.flow("login").await;
    let id = flow["id"].as_str().unwrap();
    let body = json!({ "method": "password", "identifier": email, "password": PASSWORD });
    let (a, b) = tokio::join!(
        app.submit("login", id, body.clone(), None),
        app.submit("login", id, body, None)
    );
    let mut statuses = vec![a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::OK, StatusCode::BAD_REQUEST]);
}

/// Security review F13: four parallel submits of one registration flow, each with its own
/// email, used to create four accounts.
async fn concurrent_submits_of_one_registration_flow_create_one_account(app: TestApp) {
    let flow = app.flow("registration").await;
    let id = flow["id"].as_str().unwrap();
    let emails: Vec<String> = (0..4)
        .map(|n| unique_email(&format!("reg-race-{n}")))
        .collect();
    let submits = emails.iter().map(|e| {
        app.submit(
            "registration",
            id,
            json!({ "method": "password", "password": PASSWORD, "traits": { "email": e } }),
            None,
        )
    });
    let (a, b, c, d) = {
        let mut it = submits;
        let (a, b, c, d) = (
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap(),
        );
        tokio::join!(a, b, c, d)
    };
    let ok = [a.status(), b.status(), c.status(), d.status()]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one submit registers");
    let mut created = 0;
    for e in &emails {
        let found = app
            .admin_get_list(&format!("/admin/identities?credentials_identifier={e}"))
            .await;
        created += found.len();
    }
    assert_eq!(created, 1);
}

async fn registration_login_whoami_and_logout_round_trip(app: TestApp) {
    let email = unique_email("round");
    let (id, token) = app.register(&email, PASSWORD).await;
    let r = app.get_with_token("/sessions/whoami", &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-kratos-authenticated-identity-id"],
        id.as_str()
    );
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-store"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["identity"]["traits"]["email"], email);
    assert_eq!(s["authenticator_assurance_level"], "aal1");
    assert_eq!(s["authentication_methods"][0]["method"], "password");
    assert!(
        s["identity"].get("credentials").is_none() && s["identity"].get("metadata_admin").is_none()
    );
    // The same token is accepted as a Bearer token and as the session cookie.
    let r = app.get_with_bearer("/sessions/whoami", &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .request(Method::GET, "/sessions/whoami")
        .header("Cookie", format!("ory_kratos_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token2 = body["session_token"].as_str().unwrap().to_string();
    assert_eq!(body["continue_with"][0]["action"], "set_ory_session_token");
    assert_ne!(token2, token);

    let r = app
        .request(Method::DELETE, "/self-service/logout/api")
        .json(&json!({ "session_token": token2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get_with_token("/sessions/whoami", &token2).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "session_inactive");
    assert_eq!(
        app.whoami_status(&token).await,
        StatusCode::OK,
        "logging out one session leaves the other"
    );
    let r = app
        .request(Method::DELETE, "/self-service/logout/api")
        .json(&json!({ "session_token": token2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn unknown_account_and_wrong_password_fail_identically(app: TestApp) {
    let email = unique_email("enum");
    app.register(&email, PASSWORD).await;
    let wrong: Value = {
        let r = app.login(&email, "not the password at all").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        r.json().await.unwrap()
    };
    let unknown: Value = {
        let r = app
            .login(&unique_email("nobody"), "not the password at all")
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        r.json().await.unwrap()
    };
    assert_eq!(message_ids(&wrong, None), vec![4000006]);
    assert_eq!(message_ids(&unknown, None), vec![4000006]);
    assert_eq!(wrong["ui"]["messages"], unknown["ui"]["messages"]);
    assert_eq!(
        wrong["ui"]["nodes"].as_array().unwrap().len(),
        unknown["ui"]["nodes"].as_array().unwrap().len()
    );
    // The identifier is kept in the form, the password is not.
    let id_node = wrong["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "identifier")
        .unwrap();
    assert_eq!(id_node["attributes"]["value"], email);
    let pw_node = wrong["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "password")
        .unwrap();
    assert!(pw_node["attributes"].get("value").is_none());
}

async fn emails_are_identifiers_regardless_of_case(app: TestApp) {
    let email = unique_email("CaseTest").replace("casetest", "CaseTest");
    app.register(&email, PASSWORD).await;
    assert_eq!(
        app.login(&email.to_uppercase(), PASSWORD).await.status(),
        StatusCode::OK
    );
    let flow = app.flow("registration").await;
    let r = app
        .submit("registration", flow["id"].as_str().unwrap(), json!({ "method": "password", "password": PASSWORD, "traits": { "email": email.to_lowercase() } }), None)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, None), vec![4000007]);
}

async fn registration_reports_schema_and_policy_violations_on_their_nodes(app: TestApp) {
    let flow = app.flow("registration").await;
    let id = flow["id"].as_str().unwrap();
    let r = app.submit("registration", id, json!({ "method": "password", "password": "short", "traits": { "name": { "first": 7 } } }), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["id"], flow["id"]);
    assert_eq!(message_ids(&f, Some("traits.email")), vec![4000002]);
    assert_eq!(message_ids(&f, Some("traits.name.first")), vec![4000026]);
    assert_eq!(message_ids(&f, Some("password")), vec![4000032]);
    let email = unique_email("policy");
    let cases = [(email.clone(), 4000031u64), (unique_email("x"), 4000034)];
    for (i, (em, expected)) in cases.iter().enumerate() {
        let pw = if i == 0 {
            email.split('@').next().unwrap().to_string() + "!"
        } else {
            "password123".to_string()
        };
        let r = app
            .submit(
                "registration",
                id,
                json!({ "method": "password", "password": pw, "traits": { "email": em } }),
                None,
            )
            .await;
        let f: Value = r.json().await.unwrap();
        assert_eq!(message_ids(&f, Some("password")), vec![*expected], "{pw}");
    }
    let r = app
        .submit(
            "registration",
            id,
            json!({ "method": "carrier-pigeon", "traits": {} }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, None), vec![4010003]);
    // Nothing was created along the way.
    assert_eq!(
        app.login(&email, "whatever-it-was").await.status(),
        StatusCode::BAD_REQUEST
    );
}

async fn expired_flows_answer_410_with_a_replacement_flow(app: TestApp) {
    let flow = app.flow("login").await;
    app.clock.advance(Duration::from_secs(3601));
    let r = app
        .submit(
            "login",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "identifier": "a@b.co", "password": "x" }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "self_service_flow_expired");
    let replacement = e["use_flow_id"].as_str().unwrap();
    assert_ne!(replacement, flow["id"].as_str().unwrap());
    let r = app
        .get(&format!("/self-service/login/flows?id={replacement}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(
        message_ids(&fresh, None),
        vec![4010001],
        "the replacement says why"
    );
    let r = app
        .get(&app.url(&format!(
            "/self-service/login/flows?id={}",
            flow["id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
}

async fn completed_flows_cannot_be_replayed(app: TestApp) {
    let email = unique_email("replay");
    app.register(&email, PASSWORD).await;
    let flow = app.flow("login").await;
    let id = flow["id"].as_str().unwrap();
    let body = json!({ "method": "password", "identifier": email, "password": PASSWORD });
    assert_eq!(
        app.submit("login", id, body.clone(), None).await.status(),
        StatusCode::OK
    );
    let r = app.submit("login", id, body, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, None), vec![4010007]);
    // A login flow of the wrong kind is not found.
    let r = app
        .get(&format!("/self-service/registration/flows?id={id}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn settings_changes_profile_and_password(app: TestApp) {
    let email = unique_email("settings");
    let (_, token) = app.register(&email, PASSWORD).await;
    let r = app.get("/self-service/settings/api").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    assert_eq!(flow["state"], "show_form");
    assert_eq!(flow["identity"]["traits"]["email"], email);
    let id = flow["id"].as_str().unwrap();
    let r = app
        .submit("settings", id, json!({ "method": "profile", "traits": { "email": email, "name": { "first": "Grace", "last": "Hopper" } } }), Some(&token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["state"], "success");
    assert_eq!(message_ids(&f, None), vec![1050001]);
    assert_eq!(f["identity"]["traits"]["name"]["first"], "Grace");
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "profile", "traits": { "email": "not-an-email" } }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, Some("traits.email")), vec![4000001]);
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "password", "password": "brand new secret words" }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.login(&email, "brand new secret words").await.status(),
        StatusCode::OK
    );
    // Another identity cannot read or submit this settings flow.
    let (_, other) = app.register(&unique_email("other"), PASSWORD).await;
    let r = app
        .get_with_token(&format!("/self-service/settings/flows?id={id}"), &other)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "security_identity_mismatch");
}

async fn password_change_needs_a_privileged_session(app: TestApp) {
    let email = unique_email("priv");
    let (_, token) = app.register(&email, PASSWORD).await;
    app.clock.advance(Duration::from_secs(2 * 3600));
    let (_, flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    let id = flow["id"].as_str().unwrap();
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "password", "password": "brand new secret words" }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "session_refresh_required");
    assert!(e["redirect_browser_to"]
        .as_str()
        .unwrap()
        .contains("refresh=true"));
    // Changing the login identifier is privileged too; a name is not.
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "profile", "traits": { "email": unique_email("new") } }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.submit("settings", id, json!({ "method": "profile", "traits": { "email": email, "name": { "first": "Still" } } }), Some(&token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Re-authenticating with a refresh login makes the session privileged again.
    let (_, login) = app
        .get_json_with_token("/self-service/login/api?refresh=true", &token)
        .await;
    assert_eq!(login["refresh"], true);
    assert_eq!(message_ids(&login, None), vec![1010003]);
    let r = app
        .submit(
            "login",
            login["id"].as_str().unwrap(),
            json!({ "method": "password", "identifier": email, "password": PASSWORD }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "password", "password": "brand new secret words" }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Without refresh, a signed-in caller cannot start another login.
    let r = app.get_with_token("/self-service/login/api", &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "session_already_available");
}

async fn api_flows_refuse_browser_requests(app: TestApp) {
    let flow = app.flow("login").await;
    let r = app
        .http
        .post(app.url(&format!(
            "/self-service/login?flow={}",
            flow["id"].as_str().unwrap()
        )))
        .header("Origin", "https://evil.example")
        .json(&json!({ "method": "password", "identifier": "a@b.co", "password": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["reason"].as_str().unwrap().contains("API flows"));
}

async fn inactive_identities_cannot_log_in_and_lose_their_sessions(app: TestApp) {
    let email = unique_email("inactive");
    let (id, token) = app.register(&email, PASSWORD).await;
    let r = app.deactivate(&id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, None), vec![4010011]);
    // With a wrong password the answer is the usual one: the state is not revealed.
    let f: Value = app
        .login(&email, "wrong wrong wrong")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(message_ids(&f, None), vec![4000006]);
}

async fn imported_hashes_are_upgraded_on_login(app: TestApp) {
    let email = unique_email("import");
    let bcrypt_hash = bcrypt::hash("imported secret phrase", 4).unwrap();
    let r = app.admin_post("/admin/identities",
            &json!({ "schema_id": "default", "traits": { "email": email }, "credentials": { "password": { "config": { "hashed_password": bcrypt_hash } } } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["credentials"]["password"]["identifiers"],
        json!([email])
    );
    assert!(created["credentials"]["password"].get("config").is_none());
    assert_eq!(
        app.login(&email, "imported secret phrase").await.status(),
        StatusCode::OK
    );
    let (_, got) = app
        .admin_get_json(&format!(
            "/admin/identities/{id}?include_credential=password"
        ))
        .await;
    let hash = got["credentials"]["password"]["config"]["hashed_password"]
        .as_str()
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{hash}");
    assert_eq!(
        app.login(&email, "imported secret phrase").await.status(),
        StatusCode::OK
    );
}
