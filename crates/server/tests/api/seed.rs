//! The seed deployment: a production Kratos project's `kratos.yml` (a Next.js frontend on
//! `http://localhost:3000` that proxies `/.ory/*` to Kratos with the prefix stripped, a Go backend
//! on the admin port at `http://kratos:4434/`), loaded as it is with the DSN, ports and the
//! schema path from the environment. The test client plays the proxy: it sends to the server's
//! root what a browser sends under `http://localhost:3000/.ory/`, so every URL the server hands
//! out must carry that prefix, or the proxy could not route it back.

use crate::helpers::{
    csrf, location, set_cookie, unique_email, Backend, Browser, TestApp, PASSWORD,
};
use portcullis_core::config::Config;
use reqwest::header::{ACCEPT, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cli/tests/fixtures/seed-deployment"
);
/// Where the frontend's proxy puts Portcullis.
const BASE: &str = "http://localhost:3000/.ory/";
const FRONTEND: &str = "http://localhost:3000";

/// Replaces the harness's configuration with the seed's, keeping its database, ports, cheap
/// hashing and per-IP limits.
pub(crate) fn seed(cfg: &mut Config) {
    seed_with(cfg, &[]);
}

/// [`seed`] with more variables set, as an operator adds settings in the environment.
pub(crate) fn seed_with(cfg: &mut Config, extra: &[(&str, &str)]) {
    let env = [
        ("PORTCULLIS_DSN", cfg.dsn.clone()),
        (
            "PORTCULLIS_SERVE_PUBLIC_PORT",
            cfg.serve.public.port.to_string(),
        ),
        (
            "PORTCULLIS_SERVE_ADMIN_PORT",
            cfg.serve.admin.port.to_string(),
        ),
        (
            "PORTCULLIS_IDENTITY_SCHEMAS_0_URL",
            format!("file://{SEED}/user.schema.json"),
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_MAPPER_URL",
            format!("file://{SEED}/oidc.google.jsonnet"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    .collect::<Vec<_>>();
    let mut seeded = Config::load(Some(&format!("{SEED}/kratos.yml")), env, true).unwrap();
    seeded.hashers = cfg.hashers.clone();
    seeded.security.rate_limit = cfg.security.rate_limit.clone();
    *cfg = seeded;
}

/// [`seed`] with its Google provider pointed at the test provider, through the environment.
fn seed_google(cfg: &mut Config) {
    let issuer = crate::helpers::idp::idp().issuer().to_string();
    seed_with(
        cfg,
        &[
            (
                "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_ISSUER_URL",
                &issuer,
            ),
            (
                "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_CLIENT_ID",
                crate::helpers::idp::CLIENT_ID,
            ),
        ],
    );
}

crate::on_every_backend! {
    its_google_provider_signs_up_through_its_jsonnet_mapper with seed_google,
    a_browser_registers_through_the_spa_protocol_and_is_signed_in with seed,
    urls_carry_the_proxy_prefix_through_login_settings_and_logout with seed,
}

/// The URL the proxy forwards `url` to: it must be under the public base URL.
fn proxied(app: &TestApp, url: &str) -> String {
    let rest = url
        .strip_prefix(BASE)
        .unwrap_or_else(|| panic!("{url} is not under {BASE}"));
    app.url(&format!("/{rest}"))
}

/// The `href`, `src` and `action` values of a page (HTML-escaped `&` put back).
fn page_links(html: &str) -> Vec<String> {
    let mut out = vec![];
    for attr in [" href=\"", " src=\"", " action=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].replace("&amp;", "&"));
            rest = &rest[end..];
        }
    }
    out
}

/// Whole seconds from one timestamp to another (they may be stored at different precisions).
fn seconds_between(from: &Value, to: &Value) -> i64 {
    let at = |v: &Value| OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap();
    (at(to) - at(from)).as_seconds_f64().round() as i64
}

async fn a_browser_registers_through_the_spa_protocol_and_is_signed_in(app: TestApp) {
    let mut b = Browser::new(&app);
    b.headers.push(("origin".into(), FRONTEND.into()));
    let r = b
        .get_json("/self-service/registration/browser?return_to=http://localhost:3000/dashboard")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], FRONTEND);
    let csrf_cookie = set_cookie(r.headers(), "csrf_token_").to_string();
    assert!(
        csrf_cookie.contains("Path=/;") && csrf_cookie.contains("SameSite=Lax"),
        "{csrf_cookie}"
    );
    let flow: Value = r.json().await.unwrap();
    let id = flow["id"].as_str().unwrap();
    assert_eq!(
        flow["ui"]["action"],
        json!(format!("{BASE}self-service/registration?flow={id}"))
    );
    assert_eq!(
        flow["request_url"],
        json!(format!(
            "{BASE}self-service/registration/browser?return_to=http://localhost:3000/dashboard"
        ))
    );
    assert_eq!(flow["return_to"], "http://localhost:3000/dashboard");
    assert_eq!(
        seconds_between(&flow["issued_at"], &flow["expires_at"]),
        600,
        "selfservice.flows.registration.lifespan: 10m"
    );
    let names: Vec<&str> = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["attributes"]["name"].as_str())
        .collect();
    for field in ["traits.email", "traits.name", "traits.username", "password"] {
        assert!(names.contains(&field), "{field} in {names:?}");
    }

    // Submitted as JSON to the action, through the proxy: the session hook signs the new
    // identity in, with the seed's cookie settings.
    let email = unique_email("seed");
    let r = b
        .post_json(
            &proxied(&app, flow["ui"]["action"].as_str().unwrap()),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "password": PASSWORD,
                     "traits": { "email": email, "name": "Ada Lovelace" } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let session_cookie = set_cookie(r.headers(), "ory_kratos_session=").to_string();
    for attr in ["Path=/;", "HttpOnly", "SameSite=Lax", "Max-Age=86400"] {
        assert!(session_cookie.contains(attr), "{attr} in {session_cookie}");
    }
    assert!(!session_cookie.contains("Secure"), "plain http in dev mode");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["session"]["id"].is_string(),
        "the session hook ran: {body}"
    );
    assert_eq!(body["identity"]["traits"]["email"], json!(email));
    assert_eq!(body["identity"]["schema_id"], "user");
    assert_eq!(
        body["identity"]["schema_url"],
        json!(format!("{BASE}schemas/dXNlcg"))
    );
    assert!(
        body["continue_with"].as_array().unwrap().contains(&json!({
            "action": "redirect_browser_to",
            "redirect_browser_to": "http://localhost:3000/dashboard"
        })),
        "{body}"
    );

    // whoami with the cookie, as the frontend (and the Go backend, forwarding it) asks.
    let r = b.get_json("/sessions/whoami").await;
    assert_eq!(r.status(), StatusCode::OK);
    let who: Value = r.json().await.unwrap();
    assert_eq!(who["identity"]["traits"]["name"], "Ada Lovelace");
    assert_eq!(
        seconds_between(&who["authenticated_at"], &who["expires_at"]),
        24 * 3600,
        "session.lifespan: 24h"
    );

    // The schema it names is served at that path behind the proxy.
    let (status, schema) = app
        .get_json(&proxied(
            &app,
            body["identity"]["schema_url"].as_str().unwrap(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schema["title"], "User");

    // The Go backend reads the identity on the admin port, by the name the seed gives it.
    let id = body["identity"]["id"].as_str().unwrap();
    let r = app
        .admin_request(Method::GET, &format!("/admin/identities/{id}"))
        .header("host", "kratos:4434")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .admin_request(Method::GET, &format!("/admin/identities/{id}"))
        .header("host", "rebound.example:4434")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);

    // A registration flow lives 10 minutes.
    let mut fresh = Browser::new(&app);
    let late = fresh.flow("registration").await;
    app.clock.advance(Duration::from_secs(601));
    let r = fresh
        .post_json(
            &proxied(&app, late["ui"]["action"].as_str().unwrap()),
            &json!({ "csrf_token": csrf(&late), "method": "password", "password": PASSWORD,
                     "traits": { "email": unique_email("late") } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
}

async fn urls_carry_the_proxy_prefix_through_login_settings_and_logout(app: TestApp) {
    let email = unique_email("seed-login");
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let r = b
        .post_json(
            &proxied(&app, flow["ui"]["action"].as_str().unwrap()),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "password": PASSWORD,
                     "traits": { "email": email } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // Logout: the link is under the prefix, and it lands on the seed's logout return URL.
    let links: Value = b
        .get_json("/self-service/logout/browser")
        .await
        .json()
        .await
        .unwrap();
    let token = links["logout_token"].as_str().unwrap();
    assert_eq!(
        links["logout_url"],
        json!(format!("{BASE}self-service/logout?token={token}"))
    );
    let r = b
        .get(&proxied(&app, links["logout_url"].as_str().unwrap()))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "http://localhost:3000/login");
    assert!(!b.has_session_cookie());

    // A browser that opens a login flow is sent to the frontend's page with the flow.
    let r = b.get("/self-service/login/browser").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    let id = to
        .strip_prefix("http://localhost:3000/login?flow=")
        .unwrap_or_else(|| panic!("{to}"))
        .to_string();
    let flow = b.fetch_flow("login", &id).await;
    assert_eq!(
        flow["ui"]["action"],
        json!(format!("{BASE}self-service/login?flow={id}"))
    );
    assert_eq!(
        seconds_between(&flow["issued_at"], &flow["expires_at"]),
        600,
        "selfservice.flows.login.lifespan: 10m"
    );
    // The hosted page of the same flow (still served, though the seed's frontend has its
    // own): every link, form and stylesheet stays behind the proxy.
    let r = b.get(&format!("/ui/login?flow={id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let targets = page_links(&html);
    assert!(targets.len() >= 4, "{targets:?}");
    for t in &targets {
        assert!(t.starts_with('#') || t.starts_with(BASE), "{t} in:\n{html}");
    }
    let r = b
        .post_json(
            &proxied(&app, flow["ui"]["action"].as_str().unwrap()),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "identifier": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(b.has_session_cookie());

    // Settings: 16 minutes after signing in the session is no longer privileged
    // (privileged_session_max_age: 15m, not the default hour), and the way back is under the prefix.
    let r = b.get("/self-service/settings/browser").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("http://localhost:3000/settings?flow="));
    app.clock.advance(Duration::from_secs(16 * 60));
    let flow = b.flow("settings").await;
    let id = flow["id"].as_str().unwrap();
    assert_eq!(
        flow["ui"]["action"],
        json!(format!("{BASE}self-service/settings?flow={id}"))
    );
    let r = b
        .post_json(
            &proxied(&app, flow["ui"]["action"].as_str().unwrap()),
            &json!({ "csrf_token": csrf(&flow), "method": "password", "password": "a brand new passphrase" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["id"], "session_refresh_required");
    let relogin = e["redirect_browser_to"].as_str().unwrap();
    assert!(
        relogin.starts_with(&format!(
            "{BASE}self-service/login/browser?refresh=true&return_to="
        )),
        "{relogin}"
    );
    let r = b.get_json(&proxied(&app, relogin)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let login: Value = r.json().await.unwrap();
    assert_eq!(login["refresh"], true);
    assert!(
        login["return_to"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{BASE}self-service/settings?flow={id}")),
        "{login}"
    );
}

/// CORS for the frontend's origin with the seed's methods, headers and exposed headers.
#[tokio::test]
async fn cors_answers_the_frontend_with_the_configured_methods_and_headers() {
    let app = TestApp::spawn_with(Backend::Sqlite, seed).await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/self-service/registration")
            .header(ORIGIN, origin)
            .header("access-control-request-method", "PATCH")
            .header(
                "access-control-request-headers",
                "content-type,authorization,cookie",
            )
            .send()
    };
    let r = preflight(FRONTEND).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], FRONTEND);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let list = |name: &str| -> Vec<String> {
        h[name]
            .to_str()
            .unwrap()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    };
    assert_eq!(
        list("access-control-allow-methods"),
        ["post", "get", "put", "patch", "delete"]
    );
    assert_eq!(
        list("access-control-allow-headers"),
        ["authorization", "cookie", "content-type"],
        "only the seed's headers (not the default X-Session-Token)"
    );
    let r = preflight("http://localhost:3001").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // A real response exposes the seed's headers to the frontend's scripts.
    let r = app
        .request(Method::GET, "/self-service/login/browser")
        .header(ORIGIN, FRONTEND)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], FRONTEND);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let exposed: Vec<String> = h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    assert_eq!(exposed, ["content-type", "set-cookie"]);
    assert!(h["vary"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("origin"));
}

/// The seed's Google provider and `oidc.google.jsonnet`, unchanged, with the provider's URL
/// from the environment: the SPA is told to go to the provider (422), the provider sends the
/// browser back through the proxy, and the mapper's traits make the account.
async fn its_google_provider_signs_up_through_its_jsonnet_mapper(app: TestApp) {
    let mut b = Browser::new(&app);
    b.headers.push(("origin".into(), FRONTEND.into()));
    let r = b.get_json("/self-service/registration/browser").await;
    let flow: Value = r.json().await.unwrap();
    let button = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["group"] == "oidc")
        .unwrap();
    assert_eq!(button["attributes"]["value"], "google");
    let r = b
        .post_json(
            &proxied(&app, flow["ui"]["action"].as_str().unwrap()),
            &json!({ "csrf_token": csrf(&flow), "method": "oidc", "provider": "google" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["id"], "browser_location_change_required");
    let to = url::Url::parse(body["redirect_browser_to"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    // The redirect URI is under the public base URL, as registered at Google.
    assert_eq!(
        q["redirect_uri"],
        format!("{BASE}self-service/methods/oidc/callback/google")
    );
    assert_eq!(q["scope"], "openid email profile");
    let code = format!("code-{}", uuid::Uuid::new_v4());
    let email = unique_email("seed-google");
    let sub = format!("g-{}", uuid::Uuid::new_v4());
    crate::helpers::idp::idp().answer_token(
        &code,
        &sub,
        &q["nonce"],
        json!({ "email": email, "email_verified": true, "given_name": "Grace", "family_name": "Hopper" }),
    );
    let back = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    let r = b.get(&proxied(&app, &back)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(b.has_session_cookie());
    let me: Value = b.get_json("/sessions/whoami").await.json().await.unwrap();
    // oidc.google.jsonnet: the e-mail, and the name made of the given and family names.
    assert_eq!(
        me["identity"]["traits"],
        json!({ "email": email, "name": "Grace Hopper" })
    );
}
