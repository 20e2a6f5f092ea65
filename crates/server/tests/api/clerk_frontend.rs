//! Clerk's Frontend API on the public port (what clerk-js loads before it draws a component):
//! the environment, the empty client, Clerk's 404 for what is not served, and clerk-js's own
//! bundles from the configured npm directory. Chromium runs the real clerk-js against it in
//! `tests/browser/clerk.test.mjs`.

use crate::helpers::TestApp;
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::Value;

/// A `node_modules` with a clerk-js and a UI package, as npm installs them, and clerk-js 5
/// under the alias `@clerk/clerk-js-5`.
fn assets() -> String {
    let dir = std::env::temp_dir().join(format!("pc-clerk-assets-{}", uuid::Uuid::new_v4()));
    for (pkg, file, body) in [
        (
            "clerk-js",
            "clerk.browser.js",
            "window.__bundle = 'clerk-js';",
        ),
        (
            "clerk-js",
            "vendors_clerk.browser_a68c22_6.40.0.js",
            "/* chunk */",
        ),
        ("ui", "ui.browser.js", "window.__bundle = 'ui';"),
        (
            "clerk-js-5",
            "clerk.browser.js",
            "window.__bundle = 'clerk-js 5';",
        ),
    ] {
        let d = dir.join("@clerk").join(pkg).join("dist");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), body).unwrap();
    }
    for (pkg, version) in [
        ("clerk-js", "6.40.0"),
        ("ui", "1.34.0"),
        ("clerk-js-5", "5.128.0"),
    ] {
        let manifest = format!(r#"{{"name": "@clerk/{pkg}", "version": "{version}"}}"#);
        std::fs::write(dir.join("@clerk").join(pkg).join("package.json"), manifest).unwrap();
    }
    dir.to_string_lossy().into_owned()
}

/// The app's origin (its pages forward `/__clerk` here, or call across origins).
pub(crate) const APP: &str = "http://127.0.0.1:4455";

pub(crate) fn frontend(c: &mut Config) {
    c.clerk.frontend.enabled = true;
    c.clerk.frontend.assets_dir = assets();
    c.serve.public.cors.enabled = true;
    c.serve.public.cors.allowed_origins = vec![APP.into()];
}

crate::on_every_backend! {
    the_environment_offers_email_and_password_whole_and_a_new_browser_has_no_client with frontend,
    clerk_js_bundles_are_served_from_the_installed_packages_and_nothing_else with frontend,
    password_sign_ins_answer_as_clerk_and_tell_no_addresses_apart with frontend,
    sign_ins_are_held_to_the_login_hooks with verified_only,
}

/// Logins need a verified address (`require_verified_address`).
fn verified_only(c: &mut Config) {
    frontend(c);
    c.selfservice.flows.login.after.password.hooks =
        Some(vec![portcullis_core::config::HookConfig {
            hook: portcullis_core::config::HookName::RequireVerifiedAddress,
            config: Value::Null,
        }]);
}

/// The Frontend API and the token face sign in as the Kratos login does: an account without a
/// verified address is refused, like a wrong password, by both.
async fn sign_ins_are_held_to_the_login_hooks(app: TestApp) {
    let email = crate::helpers::unique_email("unverified");
    app.register(&email, crate::helpers::PASSWORD).await;
    let (_, started, cookie) =
        fapi(&app, "/v1/client/sign_ins", &[("identifier", &email)], None).await;
    let id = started["response"]["id"].as_str().unwrap();
    let (st, refused, _) = fapi(
        &app,
        &format!("/v1/client/sign_ins/{id}/attempt_first_factor"),
        &[
            ("strategy", "password"),
            ("password", crate::helpers::PASSWORD),
        ],
        cookie.as_deref(),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "form_password_incorrect");
    let (st, body) = app
        .post_json(
            "/api/token/",
            &serde_json::json!({ "email": email, "password": crate::helpers::PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
}

/// A clerk-js call: form-encoded, with the client cookie if there is one; the answer and the
/// new cookie.
pub(crate) async fn fapi(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = app
        .request(reqwest::Method::POST, path)
        .header("origin", APP)
        .form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("__client={c}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__client="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string());
    (status, r.json().await.unwrap_or(Value::Null), set)
}

async fn password_sign_ins_answer_as_clerk_and_tell_no_addresses_apart(app: TestApp) {
    let email = crate::helpers::unique_email("fapi");
    let (identity, _) = app.register(&email, crate::helpers::PASSWORD).await;
    // A page of another site cannot post here (login CSRF): no Origin, or a foreign one.
    for origin in [None, Some("https://evil.example")] {
        let mut req = app
            .request(reqwest::Method::POST, "/v1/client/sign_ins")
            .form(&[
                ("identifier", email.as_str()),
                ("strategy", "password"),
                ("password", crate::helpers::PASSWORD),
            ]);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin:?}");
        assert!(r.headers().get("set-cookie").is_none());
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["errors"][0]["code"], "origin_invalid");
    }
    // A known and an unknown address get the same sign-in: the password is asked of both,
    // and both may reset it by a mailed code (recovery is on).
    let (st, known, cookie) =
        fapi(&app, "/v1/client/sign_ins", &[("identifier", &email)], None).await;
    assert_eq!(st, StatusCode::OK, "{known}");
    let (_, unknown, _) = fapi(
        &app,
        "/v1/client/sign_ins",
        &[("identifier", "nobody@example.com")],
        None,
    )
    .await;
    for s in [&known, &unknown] {
        assert_eq!(s["response"]["status"], "needs_first_factor");
        let factors = s["response"]["supported_first_factors"].as_array().unwrap();
        let strategies: Vec<_> = factors.iter().map(|f| &f["strategy"]).collect();
        assert_eq!(strategies, ["password", "reset_password_email_code"]);
        assert_eq!(factors[1]["safe_identifier"], s["response"]["identifier"]);
        assert!(factors[1]["email_address_id"]
            .as_str()
            .unwrap()
            .starts_with("idn_"));
    }
    let cookie = cookie.expect("the client cookie");
    let id = known["response"]["id"].as_str().unwrap();
    assert!(id.starts_with("sia_"));
    assert_eq!(known["client"]["sign_in"]["id"], id);
    let attempt = format!("/v1/client/sign_ins/{id}/attempt_first_factor");
    // Wrong: Clerk's form error at the password field; the unknown address fails alike.
    let (st, wrong, _) = fapi(
        &app,
        &attempt,
        &[("strategy", "password"), ("password", "wrong")],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong["errors"][0]["code"], "form_password_incorrect");
    assert_eq!(wrong["errors"][0]["meta"]["param_name"], "password");
    let unknown_id = unknown["response"]["id"].as_str().unwrap();
    let (_, _, unknown_cookie) = fapi(
        &app,
        "/v1/client/sign_ins",
        &[("identifier", "nobody@example.com")],
        None,
    )
    .await;
    let unknown_cookie = unknown_cookie.unwrap();
    let (_, refused, _) = fapi(
        &app,
        &format!("/v1/client/sign_ins/{unknown_id}/attempt_first_factor"),
        &[("strategy", "password"), ("password", "wrong")],
        Some(&unknown_cookie),
    )
    .await;
    assert!(
        refused["errors"][0]["code"] == "resource_not_found"
            || refused["errors"][0]["code"] == "form_password_incorrect"
    );
    // Another client's sign-in, or a forged cookie: not found.
    let (st, _, _) = fapi(
        &app,
        &attempt,
        &[
            ("strategy", "password"),
            ("password", crate::helpers::PASSWORD),
        ],
        Some("forged"),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = fapi(
        &app,
        &attempt,
        &[
            ("strategy", "password"),
            ("password", crate::helpers::PASSWORD),
        ],
        Some(&unknown_cookie),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Right: a session the other faces see, in the client.
    let (st, done, cookie) = fapi(
        &app,
        &attempt,
        &[
            ("strategy", "password"),
            ("password", crate::helpers::PASSWORD),
        ],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let cookie = cookie.unwrap();
    assert_eq!(done["response"]["status"], "complete");
    let sid = done["response"]["created_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let session = &done["client"]["sessions"][0];
    assert_eq!(session["id"], sid.as_str());
    assert_eq!(
        session["user"]["id"],
        format!("user_{}", identity.replace('-', ""))
    );
    assert_eq!(done["client"]["last_active_session_id"], sid.as_str());
    let sessions = app
        .admin_get_list(&format!("/admin/identities/{identity}/sessions"))
        .await;
    assert!(sessions
        .iter()
        .any(|s| format!("sess_{}", s["id"].as_str().unwrap().replace('-', "")) == sid));
    // Tokens for this client's session carry the browser's origin; another client gets none.
    let (st, token, _) = fapi(
        &app,
        &format!("/v1/client/sessions/{sid}/tokens"),
        &[],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let payload = token["jwt"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["azp"], "http://127.0.0.1:4455");
    let (st, _, _) = fapi(
        &app,
        &format!("/v1/client/sessions/{sid}/tokens"),
        &[],
        Some(&unknown_cookie),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Sign-out of all: the session ends, and the client has none.
    let (st, out, cookie) = fapi(&app, "/v1/client?_method=DELETE", &[], Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(out["response"]["sessions"], serde_json::json!([]));
    let (st, _, _) = fapi(
        &app,
        &format!("/v1/client/sessions/{sid}/tokens"),
        &[],
        cookie.as_deref(),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The session ended; the one the registration made (another client's) did not.
    let sessions = app
        .admin_get_list(&format!(
            "/admin/identities/{identity}/sessions?active=true"
        ))
        .await;
    let ids: Vec<String> = sessions
        .iter()
        .map(|s| format!("sess_{}", s["id"].as_str().unwrap().replace('-', "")))
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(!ids.contains(&sid), "{ids:?}");
}

async fn the_environment_offers_email_and_password_whole_and_a_new_browser_has_no_client(
    app: TestApp,
) {
    let (st, env) = app
        .get_json("/v1/environment?__clerk_api_version=2026-05-12&_clerk_js_version=6.40.0")
        .await;
    assert_eq!(st, StatusCode::OK, "{env}");
    assert_eq!(env["object"], "environment");
    // clerk-js replaces its defaults block by block: every attribute is there.
    let attributes = env["user_settings"]["attributes"].as_object().unwrap();
    for key in [
        "email_address",
        "phone_number",
        "username",
        "web3_wallet",
        "first_name",
        "last_name",
        "password",
        "authenticator_app",
        "backup_code",
        "passkey",
    ] {
        assert!(attributes[key]["enabled"].is_boolean(), "{key}");
    }
    assert_eq!(
        attributes["email_address"]["verifications"],
        serde_json::json!(["email_code"])
    );
    assert_eq!(
        attributes["password"]["required"], true,
        "<SignUp/> shows the password field"
    );
    assert_eq!(attributes["phone_number"]["enabled"], false);
    assert_eq!(
        env["display_config"]["instance_environment_type"],
        "production"
    );
    assert_eq!(env["user_settings"]["sign_up"]["captcha_enabled"], false);
    assert!(env["display_config"]["captcha_public_key"].is_null());
    assert!(
        env.get("commerce_settings").is_none(),
        "a partial one breaks clerk-js"
    );
    // Development instances touch it with `POST ?_method=PATCH`.
    let r = app
        .request(reqwest::Method::POST, "/v1/environment?_method=PATCH")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), env);

    let (st, client) = app.get_json("/v1/client").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        client,
        serde_json::json!({ "response": null, "client": null })
    );
    // What is not served yet answers Clerk's envelope, never Kratos's.
    let (st, err) = app.get_json("/v1/client/sign_ins/sia_x").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(err["errors"][0]["code"], "resource_not_found");
    assert!(err["errors"][0]["long_message"].is_string());
}

async fn clerk_js_bundles_are_served_from_the_installed_packages_and_nothing_else(app: TestApp) {
    let get = |path: &'static str| {
        let app = &app;
        async move {
            app.request(reqwest::Method::GET, path)
                .send()
                .await
                .unwrap()
        }
    };
    // The major version the SDK asks for, and the exact one its chunks name.
    let r = get("/npm/@clerk/clerk-js@6/dist/clerk.browser.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    assert_eq!(r.text().await.unwrap(), "window.__bundle = 'clerk-js';");
    let r = get("/npm/@clerk/clerk-js@6.40.0/dist/vendors_clerk.browser_a68c22_6.40.0.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let r = get("/npm/@clerk/ui@1/dist/ui.browser.js").await;
    assert_eq!(r.text().await.unwrap(), "window.__bundle = 'ui';");
    // Another major version comes from its alias, never from the other generation.
    for path in [
        "/npm/@clerk/clerk-js@5/dist/clerk.browser.js",
        "/npm/@clerk/clerk-js@5.128.0/dist/clerk.browser.js",
    ] {
        let r = get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.text().await.unwrap(), "window.__bundle = 'clerk-js 5';");
    }
    // Nothing outside a package's dist/, and no other package.
    for path in [
        "/npm/@clerk/clerk-js@6/dist/..%2Fpackage.json",
        "/npm/@clerk/clerk-js@6/dist/%2e%2e/package.json",
        "/npm/@clerk/backend@1/dist/index.js",
        "/npm/@clerk/clerk-js@6/dist/missing.js",
        // An exact version that is not the installed one (it would be cached for good).
        "/npm/@clerk/clerk-js@9.9.9/dist/clerk.browser.js",
        "/npm/@clerk/clerk-js@6.39.0/dist/clerk.browser.js",
        // A major version nobody installed, and the alias by its own name.
        "/npm/@clerk/clerk-js@4/dist/clerk.browser.js",
        "/npm/@clerk/ui@2/dist/ui.browser.js",
        "/npm/@clerk/clerk-js-5@5/dist/clerk.browser.js",
    ] {
        let r = get(path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
