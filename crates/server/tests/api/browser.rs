//! Browser flows (cookies, CSRF, 303-vs-JSON), logout, the error store, CORS and the hosted UI.

use crate::helpers::{
    csrf, error_id, location, message_ids, set_cookie, unique_email, Browser, TestApp, PASSWORD,
};
use portcullis_core::config::Config;
use reqwest::header::{ACCEPT, COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend!(
    init_answers_303_or_json_and_sets_the_csrf_cookie,
    reading_a_browser_flow_needs_its_csrf_cookie,
    submits_need_the_csrf_token_of_the_cookie,
    a_flow_is_bound_to_the_cookie_it_was_issued_to,
    planted_csrf_cookies_neither_pass_nor_shadow_the_session_bound_one,
    a_planted_session_cookie_signs_nobody_in,
    json_submits_answer_continue_with_and_400_flows,
    html_failures_go_back_to_the_flow_or_to_a_fresh_one,
    return_to_is_checked_and_followed,
    signed_in_browsers_are_sent_on,
    settings_in_the_browser_with_reauthentication,
    logout_links_end_the_session_and_clear_the_cookie,
    errors_are_kept_for_the_error_page,
    hosted_pages_are_translated_accessible_and_locked_down,
    welcome_page_lists_sessions_and_revokes_the_others,
    cors_is_closed_by_default,
    form_registration_coerces_types_and_sets_the_session_cookie with typed_schema,
    cors_allows_only_the_configured_origins with cors_for_the_spa,
    operators_extend_translations_templates_and_theme with operator_files,
    per_flow_after_urls_apply_when_there_is_no_return_to with per_flow_after_urls,
);

async fn init_answers_303_or_json_and_sets_the_csrf_cookie(app: TestApp) {
    let url = app.url("/self-service/login/browser");
    for accept in [
        None,
        Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        Some("*/*"),
    ] {
        let mut req = app.http.get(&url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "Accept: {accept:?}");
        assert!(location(&r).starts_with(&app.url("/ui/login?flow=")));
        let c = set_cookie(r.headers(), "csrf_token_");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"));
        assert!(!c.contains("Secure"), "plain http in dev mode: {c}");
    }
    let mut b = Browser::new(&app);
    let flow = b.flow("login").await;
    assert_eq!(flow["type"], "browser");
    let first = &flow["ui"]["nodes"][0];
    assert_eq!(first["attributes"]["name"], "csrf_token");
    assert_eq!(first["attributes"]["type"], "hidden");
    assert_eq!(first["group"], "default");
    // A second flow in the same browser reuses the cookie but renders a differently masked token.
    let (name, secret) = b
        .csrf_cookie()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let again = b.flow("registration").await;
    assert_eq!(b.csrf_cookie().unwrap(), (&name, &secret));
    assert_ne!(csrf(&again), csrf(&flow));
    assert_ne!(
        csrf(&flow),
        secret,
        "the page never shows the cookie's secret"
    );
    // The SDKs send JSON bodies: `Content-Type: application/json` alone also means JSON.
    let r = app
        .http
        .get(&url)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn reading_a_browser_flow_needs_its_csrf_cookie(app: TestApp) {
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let url = app.url(&format!(
        "/self-service/registration/flows?id={}",
        flow["id"].as_str().unwrap()
    ));
    let r = b.get_json(&url).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mine: Value = r.json().await.unwrap();
    assert_eq!(mine["id"], flow["id"]);
    assert_eq!(
        error_id(app.get(&url).await).await,
        json!([403, "security_csrf_violation"])
    );
    let mut other = Browser::new(&app);
    other.flow("login").await;
    assert_eq!(
        error_id(other.get_json(&url).await).await,
        json!([403, "security_csrf_violation"])
    );
}

async fn submits_need_the_csrf_token_of_the_cookie(app: TestApp) {
    let mut b = Browser::new(&app);
    let flow = b.flow("login").await;
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    let body = |token: Option<&str>| {
        let mut v = json!({ "method": "password", "identifier": "x@example.com", "password": "wrong password here" });
        if let Some(t) = token {
            v["csrf_token"] = json!(t);
        }
        v
    };
    // No token, a token from another browser, a token without the cookie: all refused.
    assert_eq!(
        error_id(b.post_json(&action, &body(None)).await).await,
        json!([403, "security_csrf_violation"])
    );
    let mut other = Browser::new(&app);
    let foreign = other.flow("login").await;
    assert_eq!(
        error_id(b.post_json(&action, &body(Some(csrf(&foreign)))).await).await,
        json!([403, "security_csrf_violation"])
    );
    let r = app
        .http
        .post(&action)
        .header(ACCEPT, "application/json")
        .json(&body(Some(csrf(&flow))))
        .send()
        .await
        .unwrap();
    assert_eq!(error_id(r).await, json!([403, "security_csrf_violation"]));
    // The right token passes the check (and the wrong password is then reported on the flow),
    // in the body or in the X-CSRF-Token header.
    let r = b.post_json(&action, &body(Some(csrf(&flow)))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, None), vec![4000006]);
    b.headers = vec![("x-csrf-token".into(), csrf(&flow).into())];
    let r = b.post_json(&action, &body(None)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A name nested beyond reason is refused before anything is parsed further.
    let deep = format!("{}=x", vec!["traits"; 40].join("."));
    let r = b
        .send(
            app.http
                .post(&action)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(deep),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A forged post to an expired flow is refused as forged, before a replacement is made.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let r = app
        .http
        .post(&action)
        .header(ACCEPT, "application/json")
        .json(&body(Some(csrf(&flow))))
        .send()
        .await
        .unwrap();
    assert_eq!(error_id(r).await, json!([403, "security_csrf_violation"]));
    let flow = b.flow("login").await;
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    // An HTML form without the token lands on the error page, which explains it.
    b.headers.clear();
    let r = b
        .post_form(&action, &[("method", "password"), ("identifier", "x")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    let id = to
        .strip_prefix(&app.url("/ui/error?id="))
        .unwrap_or_else(|| panic!("{to}"));
    let (_, e) = app.get_json(&format!("/self-service/errors?id={id}")).await;
    assert_eq!(e["error"]["id"], "security_csrf_violation");
    assert_eq!(e["error"]["code"], 403);
}

fn per_flow_after_urls(c: &mut Config) {
    let f = &mut c.selfservice.flows;
    f.registration.after.default_browser_return_url = "https://app.example.com/welcome".into();
    f.settings.after.default_browser_return_url = "https://app.example.com/profile".into();
    f.logout.after.default_browser_return_url = "https://app.example.com/bye".into();
}

async fn per_flow_after_urls_apply_when_there_is_no_return_to(app: TestApp) {
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let r = b.post_registration(&flow, &unique_email("after")).await;
    assert_eq!(location(&r), "https://app.example.com/welcome");
    let flow = b.flow("settings").await;
    let r = b
        .post_form(
            flow["ui"]["action"].as_str().unwrap(),
            &[
                ("csrf_token", csrf(&flow)),
                ("password", "another fine passphrase"),
                ("method", "password"),
            ],
        )
        .await;
    assert_eq!(location(&r), "https://app.example.com/profile");
    let links: Value = b
        .get_json("/self-service/logout/browser")
        .await
        .json()
        .await
        .unwrap();
    let r = b.get(links["logout_url"].as_str().unwrap()).await;
    assert_eq!(location(&r), "https://app.example.com/bye");
}

/// A schema with a boolean, an integer and an optional string trait.
fn typed_schema(c: &mut Config) {
    use base64::Engine;
    let schema = json!({
        "$id": "https://example.com/typed.schema.json",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": { "traits": { "type": "object", "properties": {
            "email": { "type": "string", "format": "email", "title": "E-Mail",
                "ory.sh/kratos": { "credentials": { "password": { "identifier": true } } } },
            "newsletter": { "type": "boolean", "title": "Newsletter" },
            "age": { "type": "integer", "title": "Age", "minimum": 0 },
            "nickname": { "type": "string", "title": "Nickname", "minLength": 3 }
        }, "required": ["email"] } }
    });
    let url = format!(
        "base64://{}",
        base64::engine::general_purpose::STANDARD.encode(schema.to_string())
    );
    c.identity.schemas = vec![portcullis_core::config::SchemaRef {
        id: "typed".into(),
        url,
    }];
    c.identity.default_schema_id = "typed".into();
}

async fn form_registration_coerces_types_and_sets_the_session_cookie(app: TestApp) {
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let email = unique_email("form");
    let r = b
        .post_form(
            flow["ui"]["action"].as_str().unwrap(),
            &[
                ("csrf_token", csrf(&flow)),
                ("traits.email", &email),
                ("traits.newsletter", "true"),
                ("traits.age", "42"),
                ("traits.nickname", ""),
                ("password", PASSWORD),
                ("method", "password"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), app.url("/ui/welcome"));
    let c = set_cookie(r.headers(), "ory_kratos_session=");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(c.contains(attr), "{attr} missing in {c}");
    }
    assert!(!c.contains("Secure"));
    let r = b.get_json("/sessions/whoami").await;
    assert_eq!(r.status(), StatusCode::OK);
    let s: Value = r.json().await.unwrap();
    assert_eq!(
        s["identity"]["traits"],
        json!({ "email": email, "newsletter": true, "age": 42 }),
        "strings became the schema's types; the blank optional field is absent"
    );
    // A value that is not of the schema's type is reported on its node, not stored.
    let mut b2 = Browser::new(&app);
    let flow = b2.flow("registration").await;
    let other = unique_email("form2");
    let r = b2
        .post_json(
            flow["ui"]["action"].as_str().unwrap(),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "password": PASSWORD,
                     "traits": { "email": other, "age": "forty" } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(message_ids(&f, Some("traits.age")), vec![4000026]);
}

const SPA: &str = "http://127.0.0.1:5555";

/// A CORS preflight of a credentialed POST to the login endpoint from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.request(Method::OPTIONS, "/self-service/login")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-csrf-token",
        )
        .send()
        .await
        .unwrap()
}

async fn cors_is_closed_by_default(closed: TestApp) {
    let r = preflight(&closed, SPA).await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "nothing is allowed by default"
    );
}

fn cors_for_the_spa(c: &mut Config) {
    c.serve.public.cors.enabled = true;
    c.serve.public.cors.allowed_origins =
        vec![SPA.to_string(), "https://*.example.com".to_string()];
}

async fn cors_allows_only_the_configured_origins(app: TestApp) {
    let spa = SPA;
    for origin in [spa, "https://app.example.com"] {
        let r = preflight(&app, origin).await;
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-credentials"], "true");
        let allowed = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("x-csrf-token") && allowed.contains("x-session-token"));
    }
    for origin in [
        "http://127.0.0.1:5556",
        "https://example.com",
        "https://evil.com",
        "https://evilexample.com",
        "http://app.example.com",
    ] {
        let r = preflight(&app, origin).await;
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{origin} must not be allowed"
        );
    }
    // The admin port has its own list, closed unless configured.
    let r = app
        .http
        .request(Method::OPTIONS, app.admin_url("/admin/identities"))
        .header("origin", spa)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A credentialed GET from the SPA's origin can read the flow.
    let r = app
        .request(Method::GET, "/self-service/login/browser")
        .header("origin", spa)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], spa);
}

/// Translation and template files of an operator, and a theme.
fn operator_files(c: &mut Config) {
    let dir = std::env::temp_dir().join(format!("pc-ui-{}", uuid::Uuid::new_v4()));
    let (locales, templates) = (dir.join("locales"), dir.join("templates"));
    std::fs::create_dir_all(&locales).unwrap();
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        locales.join("ko.json"),
        r#"{ "page.login": "어서 오세요" }"#,
    )
    .unwrap();
    std::fs::write(
        locales.join("ja.json"),
        r#"{ "_language": "日本語", "page.login": "ログイン", "1070001": "パスワード" }"#,
    )
    .unwrap();
    std::fs::write(
        templates.join("error.html"),
        r#"{% extends "layout.html" %}{% block content %}<p id="custom">{{ error.code }}</p>{% endblock %}"#,
    )
    .unwrap();
    c.ui.translations_dir = locales.display().to_string();
    c.ui.templates_dir = templates.display().to_string();
    c.ui.theme.colors = [("primary".to_string(), "#ff5a00".to_string())].into();
    c.ui.theme.logo_url = "https://cdn.example.com/logo.svg".into();
    c.ui.theme.name = "Acme".into();
}

async fn operators_extend_translations_templates_and_theme(app: TestApp) {
    let mut b = Browser::new(&app);
    let r = b.get("/self-service/login/browser").await;
    let page = location(&r);
    let html = b
        .get(&format!("{page}&lang=ko"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<h1>어서 오세요</h1>"),
        "an override replaces one string"
    );
    assert!(html.contains("비밀번호"), "the rest stays built in");
    let r = b.get(&format!("{page}&lang=ja")).await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("img-src 'self' data: https://cdn.example.com"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>ログイン</h1>") && html.contains("パスワード"));
    assert!(
        html.contains(r#"lang="ja""#) && html.contains("日本語"),
        "a new file adds a language"
    );
    assert!(html.contains(r#"alt="Acme""#));
    let html = app.get("/ui/error?id=stub:400").await.text().await.unwrap();
    assert!(html.contains(r#"<p id="custom">400</p>"#), "{html}");
    let css = app.get("/ui/theme.css").await.text().await.unwrap();
    assert!(css.contains("--pc-primary: #ff5a00;"), "{css}");
}

async fn json_submits_answer_continue_with_and_400_flows(app: TestApp) {
    let email = unique_email("spa");
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let r = b
        .post_json(
            flow["ui"]["action"].as_str().unwrap(),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "password": PASSWORD,
                     "traits": { "email": email } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(set_cookie(r.headers(), "ory_kratos_session=").contains("HttpOnly"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["identity"]["traits"]["email"], json!(email));
    assert!(body["session"]["id"].is_string());
    assert!(
        body.get("session_token").is_none(),
        "browsers get a cookie, never the token"
    );
    // Without the show_verification_ui hook a browser hears only where to go on (Kratos v1.3);
    // the verification code went out all the same (api/verification.rs).
    assert_eq!(
        body["continue_with"],
        json!([{ "action": "redirect_browser_to", "redirect_browser_to": app.url("/ui/welcome") }])
    );
    // Log in from a fresh browser: a wrong password answers 400 with the flow, then success.
    let mut b = Browser::new(&app);
    let flow = b.flow("login").await;
    let action = flow["ui"]["action"].as_str().unwrap();
    let r = b
        .post_json(
            action,
            &json!({ "csrf_token": csrf(&flow), "method": "password", "identifier": email, "password": "not the password" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["id"], flow["id"]);
    assert_eq!(f["type"], "browser");
    assert_eq!(message_ids(&f, None), vec![4000006]);
    assert!(!b.has_session_cookie());
    let before = b.csrf_cookie().map(|(_, v)| v.clone()).unwrap();
    let r = b
        .post_json(
            action,
            &json!({ "csrf_token": csrf(&flow), "method": "password", "identifier": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let after = b.csrf_cookie().map(|(_, v)| v.clone()).unwrap();
    assert_ne!(before, after, "a new session gets a new CSRF secret");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["session"]["identity"]["traits"]["email"], json!(email));
    assert_eq!(body["continue_with"][0]["action"], "redirect_browser_to");
    assert!(b.has_session_cookie());
    let r = b.get_json("/sessions/whoami").await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn html_failures_go_back_to_the_flow_or_to_a_fresh_one(app: TestApp) {
    let mut b = Browser::new(&app);
    let flow = b.flow("login").await;
    let id = flow["id"].as_str().unwrap();
    let action = flow["ui"]["action"].as_str().unwrap();
    let fields = [
        ("csrf_token", csrf(&flow)),
        ("identifier", "nobody@example.com"),
        ("password", "wrong password here"),
        ("method", "password"),
    ];
    let r = b.post_form(action, &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), app.url(&format!("/ui/login?flow={id}")));
    let f: Value = b.fetch_flow("login", id).await;
    assert_eq!(message_ids(&f, None), vec![4000006]);
    // An expired flow sends the browser to a fresh flow that says why.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let r = b.post_form(action, &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    let fresh = to.strip_prefix(&app.url("/ui/login?flow=")).unwrap();
    assert_ne!(fresh, id);
    let f: Value = b.fetch_flow("login", fresh).await;
    assert_eq!(message_ids(&f, None), vec![4010001]);
    // Reading the expired flow tells a browser where to start over.
    let r = b
        .get_json(&format!("/self-service/login/flows?id={id}"))
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["error"]["details"]["redirect_to"],
        json!(app.url("/self-service/login/browser"))
    );
    // JSON clients get 410 with the replacement's id instead.
    let r = b
        .post_json(
            action,
            &json!({ "csrf_token": csrf(&flow), "method": "password" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "self_service_flow_expired");
    assert!(e["use_flow_id"].is_string());
}

async fn return_to_is_checked_and_followed(app: TestApp) {
    let bad = "https://evil.example/steal";
    let mut b = Browser::new(&app);
    let r = b
        .get_json(&format!("/self-service/login/browser?return_to={bad}"))
        .await;
    assert_eq!(
        error_id(r).await,
        json!([400, "self_service_flow_return_to_forbidden"])
    );
    let r = b
        .get(&format!(
            "/self-service/registration/browser?return_to={bad}"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with(&app.url("/ui/error?id=")), "{to}");
    let id = to.split("id=").nth(1).unwrap();
    let (_, e) = app.get_json(&format!("/self-service/errors?id={id}")).await;
    assert_eq!(e["error"]["id"], "self_service_flow_return_to_forbidden");
    // An allowed one is kept on the flow (as parsed: stray control characters are gone) and
    // followed after the form post.
    let good = app.url("/after-signup?x=1");
    let r = b
        .get_json(&app.url(&format!(
            "/self-service/login/browser?return_to={}",
            portcullis_core::service::urlencode(&format!("{good}\n"))
        )))
        .await;
    let flow: Value = r.json().await.unwrap();
    assert_eq!(flow["return_to"], json!(good));
    let r = b
        .get_json(&app.url(&format!(
            "/self-service/registration/browser?return_to={}",
            portcullis_core::service::urlencode(&good)
        )))
        .await;
    let flow: Value = r.json().await.unwrap();
    assert_eq!(flow["return_to"], json!(good));
    let r = b.post_registration(&flow, &unique_email("rt")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), good);
}

async fn signed_in_browsers_are_sent_on(app: TestApp) {
    let mut b = Browser::new(&app);
    b.register(&unique_email("on")).await;
    for kind in ["login", "registration"] {
        let url = app.url(&format!("/self-service/{kind}/browser"));
        let r = b.get(&url).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), app.url("/ui/welcome"));
        assert_eq!(
            error_id(b.get_json(&url).await).await,
            json!([400, "session_already_available"])
        );
    }
    // Re-authentication is the exception.
    let r = b.get_json("/self-service/login/browser?refresh=true").await;
    assert_eq!(r.status(), StatusCode::OK);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["refresh"], true);
}

async fn settings_in_the_browser_with_reauthentication(app: TestApp) {
    let url = app.url("/self-service/settings/browser");
    let mut anon = Browser::new(&app);
    let r = anon.get(&url).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with(&app.url("/self-service/login/browser?return_to=")));
    assert_eq!(
        error_id(anon.get_json(&url).await).await,
        json!([401, "session_inactive"])
    );

    let email = unique_email("settings");
    let mut b = Browser::new(&app);
    b.register(&email).await;
    let r = b.get(&url).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let flow_id = location(&r).split("flow=").nth(1).unwrap().to_string();
    let flow: Value = b.fetch_flow("settings", &flow_id).await;
    assert_eq!(flow["identity"]["traits"]["email"], json!(email));
    let action = flow["ui"]["action"].as_str().unwrap();
    let r = b
        .post_form(
            action,
            &[
                ("csrf_token", csrf(&flow)),
                ("traits.email", &email),
                ("traits.name.first", "Grace"),
                ("method", "profile"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        app.url(&format!("/ui/settings?flow={flow_id}"))
    );
    let saved: Value = b.fetch_flow("settings", &flow_id).await;
    assert_eq!(saved["state"], "success");
    assert_eq!(saved["identity"]["traits"]["name"]["first"], "Grace");

    // An hour later the session is no longer privileged: a password change asks to sign in again.
    app.clock.advance(Duration::from_secs(3600 + 60));
    let flow = b.flow("settings").await;
    let action = flow["ui"]["action"].as_str().unwrap();
    let new_password = "a brand new passphrase";
    let fields = [
        ("csrf_token", csrf(&flow)),
        ("password", new_password),
        ("method", "password"),
    ];
    let r = b.post_form(action, &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let relogin = location(&r);
    assert!(relogin.starts_with(&app.url("/self-service/login/browser?refresh=true&return_to=")));
    let r = b
        .post_json(
            action,
            &json!({ "csrf_token": csrf(&flow), "password": new_password, "method": "password" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "session_refresh_required");
    assert_eq!(e["redirect_browser_to"], json!(relogin));
    // Re-authenticate in the browser; the return URL brings it back to the settings page.
    let r = b.get_json(&relogin).await;
    let login: Value = r.json().await.unwrap();
    assert_eq!(login["refresh"], true);
    let r = b
        .post_form(
            login["ui"]["action"].as_str().unwrap(),
            &[
                ("csrf_token", csrf(&login)),
                ("identifier", &email),
                ("password", PASSWORD),
                ("method", "password"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = location(&r);
    let r = b.get(&back).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        app.url(&format!(
            "/ui/settings?flow={}",
            flow["id"].as_str().unwrap()
        ))
    );
    let r = b.post_form(action, &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with(&app.url("/ui/settings?flow=")));
    assert_eq!(
        app.login(&email, new_password).await.status(),
        StatusCode::OK
    );
}

async fn logout_links_end_the_session_and_clear_the_cookie(app: TestApp) {
    let url = app.url("/self-service/logout/browser");
    let mut anon = Browser::new(&app);
    assert_eq!(
        error_id(anon.get_json(&url).await).await,
        json!([401, "session_inactive"])
    );
    let mut b = Browser::new(&app);
    b.register(&unique_email("logout")).await;
    let r = b
        .get_json(&format!("{url}?return_to=https://evil.example/"))
        .await;
    assert_eq!(
        error_id(r).await,
        json!([400, "self_service_flow_return_to_forbidden"])
    );
    let links: Value = b.get_json(&url).await.json().await.unwrap();
    let token = links["logout_token"].as_str().unwrap();
    let logout_url = links["logout_url"].as_str().unwrap();
    assert_eq!(
        logout_url,
        app.url(&format!("/self-service/logout?token={token}"))
    );
    // Another session's token does not work with this cookie.
    let mut other = Browser::new(&app);
    other.register(&unique_email("other")).await;
    let r = other.get_json(logout_url).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(other.has_session_cookie());
    let r = b.get(logout_url).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), app.url("/ui/welcome"));
    assert!(set_cookie(r.headers(), "ory_kratos_session=").contains("Max-Age=0"));
    assert!(!b.has_session_cookie());
    // The cookie is gone, and the session is over even for someone who kept a copy.
    let r = other.get_json("/sessions/whoami").await;
    assert_eq!(r.status(), StatusCode::OK, "the other browser is untouched");
    let mut c = Browser::new(&app);
    c.register(&unique_email("json")).await;
    let kept = c.jar.get("ory_kratos_session").unwrap().clone();
    let links: Value = c.get_json(&url).await.json().await.unwrap();
    let r = c.get_json(links["logout_url"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .request(Method::GET, "/sessions/whoami")
        .header(COOKIE, format!("ory_kratos_session={kept}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn errors_are_kept_for_the_error_page(app: TestApp) {
    for (stub, code) in [("stub:500", 500), ("stub:404", 404), ("stub:400", 400)] {
        let r = app.get(&format!("/self-service/errors?id={stub}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["id"], stub);
        assert_eq!(e["error"]["code"], code);
    }
    let r = app
        .get(&app.url(&format!("/self-service/errors?id={}", uuid::Uuid::new_v4())))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.get("/self-service/errors").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Flows that do not exist are unknown routes, not errors of ours.
    for path in ["/self-service/unknown/browser", "/ui/unknown"] {
        let r = app.get(&format!("{}{path}", app.public)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], 404);
    }
    // The hosted error page shows a kept error.
    let r = app.get("/ui/error?id=stub:404").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("This is a stub error."), "{html}");
}

async fn hosted_pages_are_translated_accessible_and_locked_down(app: TestApp) {
    let mut b = Browser::new(&app);
    let r = b.get("/ui/login").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), app.url("/self-service/login/browser"));
    let r = b.get(&location(&r)).await;
    let page_url = location(&r);
    let r = b.get(&page_url).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "style-src 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{part} not in {csp}");
    }
    assert!(!csp.contains("script-src"), "no scripts at all: {csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(
        html.contains(r#"<label for="field-password">Password"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<label for="field-identifier">Email"#),
        "{html}"
    );
    assert!(html.contains("Sign in with password"));

    // A wrong password: the error is rendered with the password field, tied to it, focused.
    let flow_id = page_url.split("flow=").nth(1).unwrap();
    let flow: Value = b.fetch_flow("login", flow_id).await;
    b.post_form(
        flow["ui"]["action"].as_str().unwrap(),
        &[
            ("csrf_token", csrf(&flow)),
            ("identifier", "who@example.com"),
            ("password", "wrong password here"),
            ("method", "password"),
        ],
    )
    .await;
    let html = b.get(&page_url).await.text().await.unwrap();
    let input = html
        .lines()
        .find(|l| l.contains(r#"id="field-password""#) && l.contains("<input"))
        .unwrap();
    assert!(
        input.contains(r#"aria-describedby="field-password-message-1""#),
        "{input}"
    );
    assert!(input.contains(r#"aria-invalid="true""#) && input.contains("autofocus"));
    assert!(html.contains(r#"id="field-password-message-1" data-message-id="4000006">The provided credentials are invalid"#), "{html}");

    // Someone else's flow: this browser starts a new one; a browser sending no CSRF cookie at
    // all (cookies blocked) gets the error page instead of a redirect loop.
    let mut other = Browser::new(&app);
    let r = other.get(&page_url).await;
    assert!(location(&r).contains("/ui/error?id="), "{}", location(&r));
    other.flow("login").await;
    let r = other.get(&page_url).await;
    assert_eq!(location(&r), app.url("/self-service/login/browser"));
    // Korean by query parameter, remembered in a cookie; and by Accept-Language.
    let r = b.get(&format!("{page_url}&lang=ko")).await;
    assert!(set_cookie(r.headers(), "portcullis_lang=ko").contains("SameSite=Lax"));
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<html lang="ko">"#));
    assert!(
        html.contains(r#"<label for="field-password">비밀번호"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<label for="field-identifier">이메일"#),
        "{html}"
    );
    assert!(html.contains("입력한 로그인 정보가 올바르지 않습니다"));
    let html = b.get(&page_url).await.text().await.unwrap();
    assert!(
        html.contains("비밀번호로 로그인"),
        "the cookie keeps Korean"
    );
    let mut fresh = Browser::new(&app);
    fresh.headers = vec![("accept-language".into(), "ko-KR,ko;q=0.9,en;q=0.5".into())];
    let r = fresh.get("/self-service/registration/browser").await;
    let html = fresh.get(&location(&r)).await.text().await.unwrap();
    assert!(
        html.contains("계정 만들기") && html.contains(r#">가입하기</button>"#),
        "{html}"
    );
    // Every input has a label.
    for line in html
        .lines()
        .filter(|l| l.contains("<input") && !l.contains(r#"type="hidden""#))
    {
        let id = line
            .split(r#"id=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            html.contains(&format!(r#"<label for="{id}">"#)),
            "no label for {id}"
        );
    }
    // Stylesheets are served from here (the CSP allows nothing else).
    let r = app.get("/ui/static/style.css").await;
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(r.text().await.unwrap().contains("--pc-primary"));
}

async fn welcome_page_lists_sessions_and_revokes_the_others(app: TestApp) {
    let r = app.get("/ui/welcome").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), app.url("/self-service/login/browser"));
    let email = unique_email("welcome");
    let mut b = Browser::new(&app);
    b.register(&email).await;
    let other = app.login(&email, PASSWORD).await;
    let other_token = other.json::<Value>().await.unwrap()["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    let html = b.get("/ui/welcome").await.text().await.unwrap();
    assert!(html.contains(&format!(r#"<strong data-testid="email">{email}</strong>"#)));
    let items = html.matches("<li>").count() + html.matches(r#"<li class="current">"#).count();
    assert_eq!(items, 2, "both sessions are listed");
    assert!(html.contains("Sign out of all other sessions"));
    let token = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let revoke = app.url("/ui/sessions/revoke-others");
    // Without the token nothing happens.
    let r = b.post_form(&revoke, &[]).await;
    assert!(location(&r).contains("/ui/error?id="));
    assert_eq!(app.whoami_status(&other_token).await, StatusCode::OK);
    let r = b.post_form(&revoke, &[("csrf_token", &token)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), app.url("/ui/welcome?revoked=1"));
    assert_eq!(
        app.whoami_status(&other_token).await,
        StatusCode::UNAUTHORIZED
    );
    let html = b.get(&location(&r)).await.text().await.unwrap();
    assert!(html.contains("Signed out of 1 other sessions."));
    assert!(html.contains("You have no other active sessions."));
    assert!(html.contains("/self-service/logout?token="));
}

/// Security review F18: the submitted token must match the cookie *and* the flow must have been
/// issued to that cookie. A browser cannot submit someone else's flow with a token of its own.
async fn a_flow_is_bound_to_the_cookie_it_was_issued_to(app: TestApp) {
    let mut victim = Browser::new(&app);
    let theirs = victim.flow("login").await;
    let mut other = Browser::new(&app);
    let own = other.flow("login").await;
    let body = |token: &str| json!({ "method": "password", "identifier": "x@example.com", "password": "wrong password here", "csrf_token": token });
    let action = theirs["ui"]["action"].as_str().unwrap();
    assert_eq!(
        error_id(other.post_json(action, &body(csrf(&own))).await).await,
        json!([403, "security_csrf_violation"])
    );
    // The flow's own browser still gets through the check (to the wrong password).
    let r = victim.post_json(action, &body(csrf(&theirs))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Security review F18: once signed in, a browser's CSRF secret is bound to its session. A
/// cookie planted by a sibling subdomain, with a secret the attacker knows, is worthless, and
/// sent before the real one in the `Cookie` header it does not shadow it.
async fn planted_csrf_cookies_neither_pass_nor_shadow_the_session_bound_one(app: TestApp) {
    let mut b = Browser::new(&app);
    let email = unique_email("planted");
    b.register(&email).await;
    let (name, real) = b
        .csrf_cookie()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let session = b.jar["ory_kratos_session"].clone();
    let planted = portcullis_core::csrf::new_secret();
    let forged = portcullis_core::csrf::mask(&planted).unwrap();
    let flow = b.flow("settings").await;
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    let profile = |token: &str| json!({ "method": "profile", "csrf_token": token, "traits": { "email": email, "name": { "first": "Ada", "last": "Byron" } } });
    let submit = |cookie: String, body: Value| {
        app.http
            .post(&action)
            .header(ACCEPT, "application/json")
            .header(COOKIE, cookie)
            .json(&body)
            .send()
    };
    // The planted cookie alone, with a token made from it: refused.
    let r = submit(
        format!("{name}={planted}; ory_kratos_session={session}"),
        profile(&forged),
    )
    .await
    .unwrap();
    assert_eq!(error_id(r).await, json!([403, "security_csrf_violation"]));
    // Planted first, the real one after: the forged token is still refused …
    let both = format!("{name}={planted}; {name}={real}; ory_kratos_session={session}");
    let r = submit(both.clone(), profile(&forged)).await.unwrap();
    assert_eq!(error_id(r).await, json!([403, "security_csrf_violation"]));
    // … and the page's own token still works: the real cookie is found behind the planted one.
    let r = submit(both, profile(csrf(&flow))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A random (unbound) secret from before sign-in gets a bound one at the next flow.
    b.jar
        .insert(name.clone(), portcullis_core::csrf::new_secret());
    let r = b.get_json("/self-service/settings/browser").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        b.jar[&name], real,
        "the session-bound secret is issued again"
    );
}

/// Found by the attack on the hardening (F18's other cookie): a sibling subdomain plants its
/// own `ory_kratos_session` (a longer path is sent first). Two sessions of different
/// identities are believed for neither, so the victim is never signed into the attacker's
/// account; a stale cookie next to the real one changes nothing.
async fn a_planted_session_cookie_signs_nobody_in(app: TestApp) {
    let mut attacker = Browser::new(&app);
    attacker.register(&unique_email("planter")).await;
    let planted = attacker.jar["ory_kratos_session"].clone();
    let mut victim = Browser::new(&app);
    victim.register(&unique_email("planted-on")).await;
    let own = victim.jar["ory_kratos_session"].clone();
    let whoami = |cookie: String| {
        app.http
            .get(app.url("/sessions/whoami"))
            .header(COOKIE, cookie)
            .send()
    };
    let both = format!("ory_kratos_session={planted}; ory_kratos_session={own}");
    assert_eq!(
        whoami(both.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .http
        .get(app.url("/self-service/settings/browser"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, both)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "no settings flow for anyone"
    );
    // The attacker's session ends: a stale cookie beside the victim's own is ignored.
    let r = app
        .http
        .get(app.url("/self-service/logout/browser"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, format!("ory_kratos_session={planted}"))
        .send()
        .await
        .unwrap();
    let logout: Value = r.json().await.unwrap();
    let r = app
        .http
        .get(logout["logout_url"].as_str().unwrap())
        .header(ACCEPT, "application/json")
        .header(COOKIE, format!("ory_kratos_session={planted}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (_, me) = crate::helpers::json_of(
        whoami(format!(
            "ory_kratos_session={planted}; ory_kratos_session={own}"
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(me["identity"]["id"], victim_id(&app, &own).await);
}

async fn victim_id(app: &TestApp, token: &str) -> Value {
    let (_, s) = app.get_json_with_token("/sessions/whoami", token).await;
    s["identity"]["id"].clone()
}
