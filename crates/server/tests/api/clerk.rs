//! The Clerk Backend API subset on the admin port.

use crate::helpers::{unique_email, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

crate::on_every_backend!(
    clerk_users_round_trip_on_the_same_identities,
    clerk_face_refuses_without_a_key_and_explains_errors,
    session_tokens_are_minted_for_active_sessions_only with keyed,
);

fn keyed(c: &mut portcullis_core::config::Config) {
    c.clerk.secret_keys = vec![KEY.into()];
}

/// Clerk's session tokens from the Backend API: RS256 by the instance's key (in `/v1/jwks` and
/// as a PEM), for active sessions only; bad ids and lifetimes get Clerk's errors. Clerk's own
/// SDKs verify them in the interop suites (`clerk-tokens.test.mjs`, `test_clerk_tokens.py`).
async fn session_tokens_are_minted_for_active_sessions_only(app: TestApp) {
    let email = unique_email("clerk-token");
    let (identity, token) = app.register(&email, PASSWORD).await;
    let (_, me) = app.get_json_with_token("/sessions/whoami", &token).await;
    let sid = format!("sess_{}", me["id"].as_str().unwrap().replace('-', ""));
    let (st, minted) = clerk(&app, Method::POST, &format!("/sessions/{sid}/tokens"), None).await;
    assert_eq!(st, StatusCode::OK, "{minted}");
    assert_eq!(minted["object"], "token");
    let jwt = minted["jwt"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let (_, jwks) = clerk(&app, Method::GET, "/jwks", None).await;
    let key: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    assert_eq!(key.common.key_id, header.kid);
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    v.validate_exp = false;
    let claims =
        jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_jwk(&key).unwrap(), &v)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], format!("user_{}", identity.replace('-', "")));
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["iss"], app.url("/").trim_end_matches('/'));
    assert!(claims.get("aud").is_none());
    // The PEM is the same key (2048-bit RSA, as @clerk/backend requires).
    let pem = app
        .admin_request(Method::GET, "/admin/clerk/jwt-key")
        .send()
        .await
        .unwrap();
    assert_eq!(pem.status(), StatusCode::OK);
    let pem = pem.text().await.unwrap();
    let from_pem = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::decode::<Value>(jwt, &from_pem, &v).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
        "{pem}"
    );

    // Bad input, in Clerk's format.
    for (path, body, status, code) in [
        (
            "/sessions/sess_nope/tokens".to_string(),
            None,
            StatusCode::NOT_FOUND,
            "resource_not_found",
        ),
        (
            format!("/sessions/{sid}/tokens"),
            Some(serde_json::json!({"expires_in_seconds": "soon"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_format_invalid",
        ),
        (
            format!("/sessions/{sid}/tokens"),
            Some(serde_json::json!({"expires_in_seconds": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_value_invalid",
        ),
    ] {
        let (st, e) = clerk(&app, Method::POST, &path, body).await;
        assert_eq!(
            (st, e["errors"][0]["code"].as_str()),
            (status, Some(code)),
            "{path}: {e}"
        );
    }
    // Signed out: no more tokens for that session.
    let r = app
        .request(Method::DELETE, "/self-service/logout/api")
        .json(&serde_json::json!({ "session_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (st, _) = clerk(&app, Method::POST, &format!("/sessions/{sid}/tokens"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

const KEY: &str = "sk_test_portcullis_integration";

async fn clerk(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, app.admin_url(&format!("/v1{path}")))
        .bearer_auth(KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn clerk_users_round_trip_on_the_same_identities(app: TestApp) {
    // The key comes from the admin API here; configured keys are covered below.
    let k: Value = app
        .admin_request(Method::POST, "/admin/clerk/keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = k["secret_key"].as_str().unwrap().to_string();
    let call = |m: Method, p: String, b: Option<Value>| {
        let mut req = app
            .http
            .request(m, app.admin_url(&format!("/v1{p}")))
            .bearer_auth(&key);
        if let Some(b) = b {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let email = unique_email("clerk");
    let (s, u) = call(Method::POST, "/users".into(), Some(json!({
        "email_address": [email], "password": PASSWORD, "first_name": "Grace", "last_name": "Hopper",
        "external_id": format!("ext-{email}"), "public_metadata": { "plan": "pro", "nested": { "a": 1, "b": 2 } }, "private_metadata": { "crm": 7 }
    }))).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let uid = u["id"].as_str().unwrap().to_string();
    assert!(uid.starts_with("user_"));
    for field in [
        "email_addresses",
        "phone_numbers",
        "web3_wallets",
        "passkeys",
        "external_accounts",
        "saml_accounts",
        "enterprise_accounts",
    ] {
        assert!(u[field].is_array(), "{field}");
    }
    assert_eq!(
        (
            u["first_name"].clone(),
            u["password_enabled"].clone(),
            u["banned"].clone()
        ),
        (json!("Grace"), json!(true), json!(false))
    );
    assert_eq!(
        u["email_addresses"][0]["verification"]["status"],
        "verified"
    );
    // The same identity through the Kratos admin API, and a Kratos login with the password.
    let identity_id = {
        let hex = uid.trim_start_matches("user_");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    };
    let (_, kratos) = app
        .admin_get_json(&format!("/admin/identities/{identity_id}"))
        .await;
    assert_eq!(kratos["traits"]["name"]["first"], "Grace");
    assert_eq!(kratos["metadata_public"]["plan"], "pro");
    assert_eq!(kratos["metadata_admin"]["crm"], 7);
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);

    let (_, got) = call(Method::GET, format!("/users/{uid}"), None).await;
    assert_eq!(got["id"], uid.as_str());
    let (_, list) = call(
        Method::GET,
        format!("/users?email_address={}", email.replace('@', "%40")),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = call(Method::GET, "/users?query=hopper&limit=5".into(), None).await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == uid.as_str()));
    let (_, count) = call(Method::GET, format!("/users/count?user_id={uid}"), None).await;
    assert_eq!(count, json!({ "object": "total_count", "total_count": 1 }));

    let (s, merged) = call(
        Method::PATCH,
        format!("/users/{uid}/metadata"),
        Some(json!({ "public_metadata": { "nested": { "a": null, "c": 3 }, "plan": null } })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        merged["public_metadata"],
        json!({ "nested": { "b": 2, "c": 3 } })
    );
    let (_, replaced) = call(
        Method::PUT,
        format!("/users/{uid}/metadata"),
        Some(json!({ "private_metadata": { "only": true } })),
    )
    .await;
    assert_eq!(replaced["private_metadata"], json!({ "only": true }));
    assert_eq!(
        replaced["public_metadata"], merged["public_metadata"],
        "untouched when not sent"
    );
    let (_, patched) = call(
        Method::PATCH,
        format!("/users/{uid}"),
        Some(json!({ "first_name": "Amazing" })),
    )
    .await;
    assert_eq!(patched["first_name"], "Amazing");

    assert_eq!(
        call(
            Method::POST,
            format!("/users/{uid}/verify_password"),
            Some(json!({ "password": PASSWORD }))
        )
        .await,
        (StatusCode::OK, json!({ "verified": true }))
    );
    let (s, e) = call(
        Method::POST,
        format!("/users/{uid}/verify_password"),
        Some(json!({ "password": "wrong wrong wrong" })),
    )
    .await;
    assert_eq!(
        (s, e["errors"][0]["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("incorrect_password")
        )
    );

    let (_, banned) = call(Method::POST, format!("/users/{uid}/ban"), None).await;
    assert_eq!(
        (banned["banned"].clone(), banned["locked"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST,
        "a banned user cannot sign in"
    );
    let (_, unbanned) = call(Method::POST, format!("/users/{uid}/unban"), None).await;
    assert_eq!(unbanned["banned"], false);
    let (_, locked) = call(Method::POST, format!("/users/{uid}/lock"), None).await;
    assert_eq!(
        (locked["banned"].clone(), locked["locked"].clone()),
        (json!(false), json!(true))
    );
    call(Method::POST, format!("/users/{uid}/unlock"), None).await;
    let body: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    assert!(body["session_token"].is_string());

    let (_, sessions) = call(
        Method::GET,
        format!("/sessions?user_id={uid}&status=active"),
        None,
    )
    .await;
    let sid = sessions[0]["id"].as_str().unwrap().to_string();
    assert!(sid.starts_with("sess_"));
    let (_, revoked) = call(Method::POST, format!("/sessions/{sid}/revoke"), None).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(
        app.whoami_status(body["session_token"].as_str().unwrap())
            .await,
        StatusCode::UNAUTHORIZED
    );

    let (_, jwks) = call(Method::GET, "/jwks".into(), None).await;
    assert!(!jwks["keys"].as_array().unwrap().is_empty());
    let (s, deleted) = call(Method::DELETE, format!("/users/{uid}"), None).await;
    assert_eq!(
        (s, deleted),
        (
            StatusCode::OK,
            json!({ "object": "user", "id": uid, "deleted": true })
        )
    );
    let (s, e) = call(Method::GET, format!("/users/{uid}"), None).await;
    assert_eq!(
        (s, e["errors"][0]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("resource_not_found"))
    );
    assert_eq!(
        app.admin_request(
            Method::DELETE,
            &format!("/admin/clerk/keys/{}", k["id"].as_str().unwrap())
        )
        .send()
        .await
        .unwrap()
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(Method::GET, "/users".into(), None).await.0,
        StatusCode::UNAUTHORIZED,
        "a revoked key stops working"
    );
}

async fn clerk_face_refuses_without_a_key_and_explains_errors(app: TestApp) {
    let r = app.admin_get("/v1/users").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "authentication_invalid");
    assert!(e["clerk_trace_id"].is_string());
    assert_eq!(
        clerk(&app, Method::GET, "/users", None).await.0,
        StatusCode::UNAUTHORIZED,
        "not configured here"
    );
    let cfg = TestApp::spawn_with(crate::helpers::Backend::Sqlite, |c| {
        c.clerk.secret_keys = vec![KEY.into()]
    })
    .await;
    let (s, list) = clerk(&cfg, Method::GET, "/users", None).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));
    let (s, e) = clerk(
        &cfg,
        Method::POST,
        "/users",
        Some(json!({ "email_address": ["x@example.com"], "password": "short" })),
    )
    .await;
    assert_eq!(
        (s, e["errors"][0]["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("form_password_validation_failed")
        )
    );
    let (s, e) = clerk(
        &cfg,
        Method::POST,
        "/users",
        Some(json!({ "email_address": ["not-an-email"] })),
    )
    .await;
    assert_eq!(
        (s, e["errors"][0]["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("form_param_invalid")
        )
    );
    let (s, _) = clerk(
        &cfg,
        Method::POST,
        "/users",
        Some(json!({ "email_address": ["dup@example.com"] })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = clerk(
        &cfg,
        Method::POST,
        "/users",
        Some(json!({ "email_address": ["dup@example.com"] })),
    )
    .await;
    assert_eq!(
        (s, e["errors"][0]["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("form_identifier_exists")
        )
    );
    assert_eq!(
        clerk(&cfg, Method::GET, "/users/user_nope", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        clerk(&cfg, Method::GET, "/users?limit=9999", None).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        clerk(&cfg, Method::GET, "/sessions", None).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = cfg
        .admin_request(Method::POST, "/v1/users")
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
