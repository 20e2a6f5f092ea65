//! The simplejwt token face, the JWKS and JWT sessions.

use crate::helpers::{json_of, send, unique_email, Backend, TestApp, PASSWORD};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::time::Duration;

crate::on_every_backend!(
    obtain_refresh_verify_and_blacklist,
    reusing_a_rotated_refresh_token_revokes_the_family,
    concurrent_refreshes_of_one_token_succeed_once,
    obtain_refuses_bad_input_and_bad_credentials_alike,
    tokens_breaking_a_rule_are_refused_without_a_500,
    forged_and_malformed_tokens_are_refused_without_a_500,
    access_tokens_authenticate_whoami_and_tokenize_as_signs_the_session,
    access_tokens_read_the_session_but_change_nothing,
    refresh_rotation_cannot_keep_a_session_past_its_absolute_lifetime,
    password_change_and_deactivation_revoke_refresh_tokens,
    rotated_keys_keep_verifying_until_their_tokens_expire,
);

async fn obtain(app: &TestApp, email: &str) -> (String, String) {
    let (s, b) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["access"].as_str().unwrap().to_string(),
        b["refresh"].as_str().unwrap().to_string(),
    )
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap()
}

async fn expect_invalid(app: &TestApp, token: &str, detail: &str) {
    let (s, b) = app
        .post_json("/api/token/verify/", &json!({ "token": token }))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{token}: {b}");
    assert_eq!(b["code"], "token_not_valid", "{b}");
    assert_eq!(b["detail"], detail, "{token}");
}

async fn obtain_refresh_verify_and_blacklist(app: TestApp) {
    let email = unique_email("jwt");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (access, refresh) = obtain(&app, &email).await;
    let c = claims(&access);
    assert_eq!(c["token_type"], "access");
    assert_eq!(c["user_id"], id.as_str());
    assert_eq!(c["sub"], id.as_str());
    assert_eq!(c["iss"], app.public.as_str());
    assert_eq!(c["jti"].as_str().unwrap().len(), 32);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    assert!(c["sid"].is_string());
    assert_eq!(
        claims(&refresh)["exp"].as_i64().unwrap() - claims(&refresh)["iat"].as_i64().unwrap(),
        86400
    );
    assert_eq!(header(&access)["alg"], "ES256");
    let kid = header(&access)["kid"].as_str().unwrap().to_string();
    let (_, jwks) = app.get_json("/.well-known/jwks.json").await;
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid.as_str() && k["kty"] == "EC" && k.get("d").is_none()));

    assert_eq!(
        app.post_json("/api/token/verify/", &json!({ "token": access }))
            .await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        app.post_json("/api/token/verify/", &json!({ "token": refresh }))
            .await,
        (StatusCode::OK, json!({}))
    );
    let (s, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": refresh }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rotated = b["refresh"].as_str().unwrap().to_string();
    assert_ne!(rotated, refresh);
    assert_eq!(claims(b["access"].as_str().unwrap())["sid"], c["sid"]);
    let (s, b) = app
        .post_json("/api/token/blacklist/", &json!({ "refresh": rotated }))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    let (s, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": rotated }))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["detail"], "Token is blacklisted");
    expect_invalid(&app, &rotated, "Token is blacklisted").await;
    // An access token is never accepted where a refresh token is expected.
    let (s, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": access }))
        .await;
    assert_eq!(
        (s, b["detail"].clone()),
        (StatusCode::UNAUTHORIZED, json!("Token has wrong type"))
    );
    // Expiry follows the server's clock.
    app.clock.advance(Duration::from_secs(300 + 11));
    expect_invalid(&app, &access, "Token is expired").await;
}

async fn reusing_a_rotated_refresh_token_revokes_the_family(app: TestApp) {
    let email = unique_email("reuse");
    app.register(&email, PASSWORD).await;
    let (access, first) = obtain(&app, &email).await;
    let (_, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": first }))
        .await;
    let second = b["refresh"].as_str().unwrap().to_string();
    // The stolen first token is replayed after the grace window for racing clients.
    app.clock.advance(Duration::from_secs(6));
    let (s, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": first }))
        .await;
    assert_eq!(
        (s, b["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("token_not_valid"))
    );
    let (s, _) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": second }))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // …and so does the session behind the family.
    let r = app.get_with_bearer("/sessions/whoami", &access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Another family of the same user is untouched.
    let (_, other) = obtain(&app, &email).await;
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({ "refresh": other }))
            .await
            .0,
        StatusCode::OK
    );
}

async fn concurrent_refreshes_of_one_token_succeed_once(app: TestApp) {
    let email = unique_email("race");
    app.register(&email, PASSWORD).await;
    let (_, refresh) = obtain(&app, &email).await;
    let body = json!({ "refresh": refresh });
    let (a, b) = tokio::join!(
        app.post_json("/api/token/refresh/", &body),
        app.post_json("/api/token/refresh/", &body)
    );
    let mut statuses = vec![a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::OK, StatusCode::UNAUTHORIZED]);
    // The race is not treated as theft: the winner's new refresh token keeps working.
    let winner = if a.0 == StatusCode::OK { a.1 } else { b.1 };
    let (s, _) = app
        .post_json(
            "/api/token/refresh/",
            &json!({ "refresh": winner["refresh"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

async fn obtain_refuses_bad_input_and_bad_credentials_alike(app: TestApp) {
    let email = unique_email("sj");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (s, b) = app.post_json("/api/token/", &json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({ "email": ["This field is required."], "password": ["This field is required."] })
    );
    let (s, b) = app.post_json("/api/token/refresh/", &json!({})).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({ "refresh": ["This field is required."] })
        )
    );
    let (s, b) = app.post_json("/api/token/verify/", &json!({})).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({ "token": ["This field is required."] })
        )
    );
    let wrong = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": "wrong wrong wrong" }),
        )
        .await;
    let unknown = app
        .post_json(
            "/api/token/",
            &json!({ "email": unique_email("nobody"), "password": "wrong wrong wrong" }),
        )
        .await;
    assert_eq!(
        wrong,
        (
            StatusCode::UNAUTHORIZED,
            json!({ "detail": "No active account found with the given credentials" })
        )
    );
    assert_eq!(wrong, unknown);
    // `username` and form bodies work as with Django REST framework.
    let r = app
        .request(Method::POST, "/api/token/")
        .form(&[("username", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.post_raw("/api/token/", "text/plain", "x").await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .post_raw("/api/token/", "application/json", "{nope")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // An inactive identity cannot obtain tokens.
    app.deactivate(&id).await;
    assert_eq!(
        app.post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD })
        )
        .await,
        wrong
    );
}

async fn tokens_breaking_a_rule_are_refused_without_a_500(app: TestApp) {
    let email = unique_email("rules");
    app.register(&email, PASSWORD).await;
    let (access, refresh) = obtain(&app, &email).await;
    let now = app.state.core.now().unix_timestamp();
    let good = claims(&access);
    let signed = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut c = good.as_object().unwrap().clone();
        change(&mut c);
        c
    };
    let core = &app.state.core;
    let t = |c| async move { core.sign_claims(&c, core.now()).await.unwrap() };
    // A correctly signed copy passes, so each refusal below is due to its one change.
    expect_ok(&app, &t(signed(&|_| {})).await).await;
    expect_invalid(
        &app,
        &t(signed(&|c| {
            c.insert("nbf".into(), json!(now + 3600));
        }))
        .await,
        "Token is invalid",
    )
    .await;
    expect_invalid(
        &app,
        &t(signed(&|c| {
            c.insert("iss".into(), json!("https://evil.example"));
        }))
        .await,
        "Token is invalid",
    )
    .await;
    expect_invalid(
        &app,
        &t(signed(&|c| {
            c.remove("iss");
        }))
        .await,
        "Token is invalid",
    )
    .await;
    expect_invalid(
        &app,
        &t(signed(&|c| {
            c.insert("exp".into(), json!(now - 60));
        }))
        .await,
        "Token is expired",
    )
    .await;
    expect_invalid(
        &app,
        &t(signed(&|c| {
            c.remove("exp");
        }))
        .await,
        "Token has no 'exp' claim",
    )
    .await;
    expect_invalid(
        &app,
        &t(signed(&|c| {
            c.insert("iat".into(), json!(now + 3600));
        }))
        .await,
        "Token is invalid",
    )
    .await;
    // Whoami wants an access token: a refresh token or one without a type is refused.
    for bad in [
        refresh.clone(),
        t(signed(&|c| {
            c.remove("token_type");
        }))
        .await,
    ] {
        let r = app.get_with_bearer("/sessions/whoami", &bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let (s, b) = app.post_json("/api/token/refresh/", &json!({ "refresh": t(signed(&|c| { c.insert("token_type".into(), json!("refresh")); })).await })).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (StatusCode::UNAUTHORIZED, json!("Token is invalid")),
        "a refresh token we never issued"
    );
}

async fn forged_and_malformed_tokens_are_refused_without_a_500(app: TestApp) {
    let email = unique_email("forged");
    app.register(&email, PASSWORD).await;
    let (access, _) = obtain(&app, &email).await;
    let good = claims(&access);
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let parts: Vec<&str> = access.split('.').collect();
    let kid = header(&access)["kid"].clone();
    // alg none, and HS256 keyed with our public key (algorithm confusion).
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
        parts[1]
    );
    expect_invalid(&app, &none, "Token is invalid").await;
    let (_, jwks) = app.get_json("/.well-known/jwks.json").await;
    let public_jwk = jwks["keys"][0].to_string();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: kid.as_str().map(str::to_string),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &good,
        &jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()),
    )
    .unwrap();
    expect_invalid(&app, &confused, "Token is invalid").await;
    let unknown_kid = format!(
        "{}.{}.{}",
        b64(&json!({ "alg": "ES256", "typ": "JWT", "kid": "nope" })),
        parts[1],
        parts[2]
    );
    expect_invalid(&app, &unknown_kid, "Token is invalid").await;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&json!({ "user_id": "someone-else" })),
        parts[2]
    );
    expect_invalid(&app, &tampered, "Token is invalid").await;
    for garbage in [
        &access[..access.len() - 10],
        "garbage",
        "a.b.c",
        "eyJ.eyJ.x",
        "",
    ] {
        let (s, _) = app
            .post_json("/api/token/verify/", &json!({ "token": garbage }))
            .await;
        assert!(
            s == StatusCode::UNAUTHORIZED || (garbage.is_empty() && s == StatusCode::BAD_REQUEST),
            "{garbage}: {s}"
        );
    }
}

async fn expect_ok(app: &TestApp, token: &str) {
    assert_eq!(
        app.post_json("/api/token/verify/", &json!({ "token": token }))
            .await,
        (StatusCode::OK, json!({}))
    );
}

async fn access_tokens_authenticate_whoami_and_tokenize_as_signs_the_session(app: TestApp) {
    let email = unique_email("whoami");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (access, refresh) = obtain(&app, &email).await;
    let r = app.get_with_bearer("/sessions/whoami", &access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["identity"]["id"], id.as_str());
    assert_eq!(s["id"], claims(&access)["sid"]);
    let r = app.get("/sessions/whoami?tokenize_as=nope").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, session_token) = app.register(&unique_email("tpl"), PASSWORD).await;
    let r = app
        .get_with_token("/sessions/whoami?tokenize_as=nope", &session_token)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "an unknown template");
    // Blacklisting the refresh token does not end the session; logging out does.
    app.post_json("/api/token/blacklist/", &json!({ "refresh": refresh }))
        .await;
    let r = app.get_with_bearer("/sessions/whoami", &access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let sid = claims(&access)["sid"].as_str().unwrap().to_string();
    app.admin_delete(&format!("/admin/sessions/{sid}")).await;
    let r = app.get_with_bearer("/sessions/whoami", &access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let tpl = TestApp::spawn_with(Backend::Sqlite, |c| {
        let mut t = portcullis_core::config::TokenizerTemplate::default();
        t.claims
            .insert("email".into(), "identity.traits.email".into());
        t.claims
            .insert("aal".into(), "authenticator_assurance_level".into());
        c.session.whoami.tokenizer.templates.insert("api".into(), t);
        c.tokens.audience = vec!["my-api".into()];
    })
    .await;
    let (id, token) = tpl.register(&email, PASSWORD).await;
    let (_, s) = tpl
        .get_json_with_token("/sessions/whoami?tokenize_as=api", &token)
        .await;
    let jwt = s["tokenized"].as_str().unwrap();
    let c = claims(jwt);
    assert_eq!(c["sub"], id.as_str());
    assert_eq!(c["email"], email.as_str());
    assert_eq!(c["aal"], "aal1");
    assert_eq!(
        c["aud"], "my-api",
        "the configured audience, so verifiers accept it"
    );
    assert_eq!(c["sid"], s["id"]);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
    expect_ok(&tpl, jwt).await;
}

/// Security review F2: an access JWT reaches every resource server it is sent to, so it reads
/// the session (whoami) and nothing more: no settings, no session management, no logout, no
/// minting of `tokenize_as` tokens.
async fn access_tokens_read_the_session_but_change_nothing(app: TestApp) {
    let email = unique_email("f2");
    let (_, session) = app.register(&email, PASSWORD).await;
    let (access, _) = obtain(&app, &email).await;
    assert_eq!(
        app.get_with_bearer("/sessions/whoami", &access)
            .await
            .status(),
        StatusCode::OK
    );
    for path in [
        "/self-service/settings/api",
        "/sessions",
        "/sessions/whoami?tokenize_as=x",
    ] {
        let r = app.get_with_bearer(path, &access).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let (_, body) = json_of(r).await;
        assert_eq!(body["error"]["id"], "session_inactive", "{path}");
    }
    let r = send(
        app.request(Method::DELETE, "/sessions")
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The same requests with the session token itself still work.
    let (status, flow) = app
        .get_json_with_token("/self-service/settings/api", &session)
        .await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    // A password change through the API flow with the access token is refused.
    let r = send(
        app.request(
            Method::POST,
            &format!(
                "/self-service/settings?flow={}",
                flow["id"].as_str().unwrap()
            ),
        )
        .bearer_auth(&access)
        .json(&json!({ "method": "password", "password": "a brand new passphrase" })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

/// Security review F15: a refresh token refreshed every 23 hours kept its session alive
/// forever. Sessions now end `session.max_lifetime` (30 days) after they began.
async fn refresh_rotation_cannot_keep_a_session_past_its_absolute_lifetime(app: TestApp) {
    let email = unique_email("cap");
    app.register(&email, PASSWORD).await;
    let (_, mut refresh) = obtain(&app, &email).await;
    let day = Duration::from_secs(23 * 3600);
    let mut refreshed = 0;
    for _ in 0..40 {
        app.clock.advance(day);
        let (s, b) = app
            .post_json("/api/token/refresh/", &json!({ "refresh": refresh }))
            .await;
        if s != StatusCode::OK {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
            break;
        }
        refresh = b["refresh"].as_str().unwrap().to_string();
        refreshed += 1;
    }
    // 31 × 23 h is within 30 days; the 32nd refresh comes after the cap.
    assert_eq!(refreshed, 31);
}

async fn password_change_and_deactivation_revoke_refresh_tokens(app: TestApp) {
    let email = unique_email("pwchange");
    let (id, session) = app.register(&email, PASSWORD).await;
    let (_, refresh) = obtain(&app, &email).await;
    let (_, flow) = app
        .get_json_with_token("/self-service/settings/api", &session)
        .await;
    let r = app
        .submit(
            "settings",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "password": "brand new secret words" }),
            Some(&session),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({ "refresh": refresh }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": "brand new secret words" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let refresh = b["refresh"].as_str().unwrap().to_string();
    app.deactivate(&id).await;
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({ "refresh": refresh }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

async fn rotated_keys_keep_verifying_until_their_tokens_expire(app: TestApp) {
    let email = unique_email("rotate");
    app.register(&email, PASSWORD).await;
    let (before, _) = obtain(&app, &email).await;
    let jwks_url = app.url("/.well-known/jwks.json");
    let kids = |jwks: &Value| -> Vec<String> {
        let mut k: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    let (_, published) = app.get_json(&jwks_url).await;
    let r: Value = app
        .admin_request(Method::POST, "/admin/keys/rotate")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_kid = r["kid"].as_str().unwrap().to_string();
    assert!(
        kids(&published).contains(&new_kid),
        "the new signing key was published before it signed"
    );
    let (after, _) = obtain(&app, &email).await;
    assert_eq!(header(&after)["kid"], new_kid.as_str());
    assert_ne!(header(&before)["kid"], header(&after)["kid"]);
    expect_ok(&app, &before).await;
    expect_ok(&app, &after).await;
    let (_, jwks) = app.get_json(&jwks_url).await;
    assert_eq!(kids(&jwks).len(), 3, "retired, current and the next key");
    let keys = app.admin_get_list("/admin/keys").await;
    for state in ["current", "retired", "next"] {
        assert_eq!(
            keys.iter().filter(|k| k["state"] == state).count(),
            1,
            "{state}"
        );
    }
    let next_kid = keys.iter().find(|k| k["state"] == "next").unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    // Once the old key's last token has expired it leaves the JWKS.
    app.clock.advance(Duration::from_secs(86400 + 60));
    app.state
        .core
        .reload_ring(app.state.core.now())
        .await
        .unwrap();
    let (_, jwks) = app.get_json(&jwks_url).await;
    let mut expected = vec![new_kid, next_kid];
    expected.sort();
    assert_eq!(kids(&jwks), expected);
}

#[tokio::test]
async fn each_algorithm_publishes_its_key_and_hs256_publishes_none() {
    for (alg, kty) in [
        ("EdDSA", Some("OKP")),
        ("RS256", Some("RSA")),
        ("HS256", None),
    ] {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.tokens.algorithm = alg.parse().unwrap();
            c.tokens.hs256_secret = "a shared secret of more than 32 chars".into();
            c.tokens.audience = vec!["my-api".into()];
        })
        .await;
        let email = unique_email(alg);
        app.register(&email, PASSWORD).await;
        let (access, _) = obtain(&app, &email).await;
        assert_eq!(header(&access)["alg"], alg);
        assert_eq!(claims(&access)["aud"], "my-api");
        expect_ok(&app, &access).await;
        let (_, jwks) = app.get_json("/.well-known/jwks.json").await;
        match kty {
            Some(k) => assert_eq!(jwks["keys"][0]["kty"], k),
            None => assert_eq!(
                jwks["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|k| k["alg"] == "HS256")
                    .count(),
                0
            ),
        }
        let wrong_aud = {
            let mut c = claims(&access).as_object().unwrap().clone();
            c.insert("aud".into(), json!("other-api"));
            app.state
                .core
                .sign_claims(&c, app.state.core.now())
                .await
                .unwrap()
        };
        expect_invalid(&app, &wrong_aud, "Token is invalid").await;
    }
}

/// Security review F7: in cookie mode a cross-site form POST to `/api/token/` set the
/// attacker's cookies in the victim's browser (login CSRF).
#[tokio::test]
async fn cookie_mode_refuses_cross_site_requests() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.tokens.cookies.enabled = true).await;
    let email = unique_email("f7");
    app.register(&email, PASSWORD).await;
    let form = format!(
        "email={}&password={}",
        email.replace('@', "%40"),
        PASSWORD.replace(' ', "+")
    );
    let attempts = [
        // The attack itself: an auto-submitted form from another site.
        app.request(Method::POST, "/api/token/")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .body(form.clone()),
        app.request(Method::POST, "/api/token/")
            .header("origin", "https://evil.example")
            .json(&json!({ "email": email, "password": PASSWORD })),
        app.request(Method::POST, "/api/token/")
            .header("sec-fetch-site", "cross-site")
            .json(&json!({ "email": email, "password": PASSWORD })),
        app.request(Method::POST, "/api/token/refresh/")
            .header("origin", "https://evil.example")
            .json(&json!({})),
        app.request(Method::POST, "/api/token/logout/")
            .header("sec-fetch-site", "cross-site")
            .json(&json!({})),
    ];
    for req in attempts {
        let r = req.send().await.unwrap();
        assert!(
            matches!(
                r.status(),
                StatusCode::FORBIDDEN | StatusCode::UNSUPPORTED_MEDIA_TYPE
            ),
            "{}",
            r.status()
        );
        assert!(r.headers().get("set-cookie").is_none());
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].is_string(), "{body}");
    }
    // A form without any cross-site marker is refused too: in cookie mode only JSON is taken.
    let r = app
        .request(Method::POST, "/api/token/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The SPA on our own origin still signs in.
    let r = app
        .request(Method::POST, "/api/token/")
        .header("origin", app.public.as_str())
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn cookie_mode_sets_reads_and_clears_http_only_cookies() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.tokens.cookies.enabled = true).await;
    let email = unique_email("cookie");
    app.register(&email, PASSWORD).await;
    let r = app
        .request(Method::POST, "/api/token/")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(cookies
        .iter()
        .all(|c| c.contains("HttpOnly") && c.contains("SameSite=Lax")));
    let refresh = cookies
        .iter()
        .find(|c| c.starts_with("refresh_token="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = app
        .request(Method::POST, "/api/token/refresh/")
        .header("cookie", &refresh)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
    let rotated = rotated.split(';').next().unwrap().to_string();
    let r = app
        .request(Method::POST, "/api/token/logout/")
        .header("cookie", &rotated)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cleared: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")) && cleared.len() == 2,
        "{cleared:?}"
    );
    let r = app
        .request(Method::POST, "/api/token/refresh/")
        .header("cookie", &rotated)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_rotate_on_schedule_and_token_paths_are_configurable() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.tokens.key_rotation_interval =
            portcullis_core::config::Dur(Duration::from_secs(7 * 86400));
        c.tokens.paths.obtain = "/auth/jwt/create/".into();
    })
    .await;
    let core = &app.state.core;
    assert_eq!(
        core.rotate_if_due(core.now()).await.unwrap(),
        None,
        "not due yet"
    );
    let before = core.ring(core.now()).await.unwrap().current.kid.clone();
    app.clock.advance(Duration::from_secs(7 * 86400 + 1));
    // The server's own housekeeping task may get there first; either way exactly one rotation.
    core.rotate_if_due(core.now()).await.unwrap();
    let rotated = core
        .reload_ring(core.now())
        .await
        .unwrap()
        .current
        .kid
        .clone();
    assert_ne!(rotated, before);
    let keys = app.admin_get_list("/admin/keys").await;
    assert_eq!(
        keys.iter().filter(|k| k["state"] == "retired").count(),
        1,
        "rotated once, not twice"
    );
    assert_eq!(
        core.rotate_if_due(core.now()).await.unwrap(),
        None,
        "the new key starts a new interval"
    );
    let email = unique_email("paths");
    app.register(&email, PASSWORD).await;
    let (s, b) = app
        .post_json(
            "/auth/jwt/create/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        header(b["access"].as_str().unwrap())["kid"],
        rotated.as_str()
    );
    assert_eq!(
        app.post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD })
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_rotated_token_replayed_after_the_grace_window_revokes_the_family() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let email = unique_email("grace");
    app.register(&email, PASSWORD).await;
    let (_, first) = obtain(&app, &email).await;
    let (_, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": first }))
        .await;
    let second = b["refresh"].as_str().unwrap().to_string();
    // Within the grace window the replay is refused but the family lives on…
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({ "refresh": first }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = app
        .post_json("/api/token/refresh/", &json!({ "refresh": second }))
        .await;
    assert_eq!(s, StatusCode::OK);
    let third = b["refresh"].as_str().unwrap().to_string();
    // …after it, a replay revokes the family.
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({ "refresh": second }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({ "refresh": third }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
