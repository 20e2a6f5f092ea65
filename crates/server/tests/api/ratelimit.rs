//! Rate limits and brute-force protection: per-IP buckets in each instance, per-account
//! failure counters in the database, 429 with `Retry-After` in each face's format, and the
//! audit records they leave.

use crate::helpers::{json_of, send, unique_email, TestApp, PASSWORD};
use portcullis_core::config::Config;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

crate::on_every_backend!(
    wrong_passwords_are_throttled_and_the_owner_still_signs_in with behind_a_proxy,
    unknown_accounts_are_throttled_exactly_like_known_ones with behind_a_proxy,
    the_per_ip_limit_answers_429_with_retry_after_in_each_faces_format with default_limits,
    the_audit_log_records_sign_ins_and_filters_them with behind_a_proxy,
    the_clerk_face_answers_429_with_retry_after_in_clerks_format with clerk_limits,
);

/// Clients are told apart by `X-Forwarded-For`, as behind a TLS proxy.
fn behind_a_proxy(c: &mut Config) {
    c.serve.public.trust_forwarded_headers = true;
}

fn default_limits(c: &mut Config) {
    c.security.rate_limit = Default::default();
    c.security.rate_limit.login.burst = 3;
    c.clerk.frontend.enabled = true;
}

const CLERK_KEY: &str = "sk_test_ratelimit_clerk_0123456789";

/// The default limits but a Clerk allowance of 3 (refilled once a minute), clients told apart
/// by `X-Forwarded-For` on the admin port.
fn clerk_limits(c: &mut Config) {
    c.security.rate_limit = Default::default();
    c.security.rate_limit.clerk = portcullis_core::ratelimit::Quota {
        per_minute: 1,
        burst: 3,
    };
    c.serve.admin.trust_forwarded_headers = true;
    c.clerk.secret_keys = vec![CLERK_KEY.to_string().into()];
}

async fn token_attempt(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    send(
        app.request(Method::POST, "/api/token/")
            .header("x-forwarded-for", format!("10.9.9.9, {ip}"))
            .json(&json!({ "email": email, "password": password })),
    )
    .await
}

async fn flow_login(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    let flow = app.flow("login").await;
    send(
        app.request(
            Method::POST,
            &format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()),
        )
        .header("x-forwarded-for", ip)
        .json(&json!({ "method": "password", "identifier": email, "password": password })),
    )
    .await
}

/// Registers `email` from `ip`, so `ip` becomes one of the account's known devices.
async fn register_from(app: &TestApp, ip: &str, email: &str) -> String {
    let flow = app.flow("registration").await;
    let r = send(
        app.request(
            Method::POST,
            &format!(
                "/self-service/registration?flow={}",
                flow["id"].as_str().unwrap()
            ),
        )
        .header("x-forwarded-for", ip)
        .json(&json!({ "method": "password", "password": PASSWORD, "traits": { "email": email } })),
    )
    .await;
    let (status, body) = json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["identity"]["id"].as_str().unwrap().to_string()
}

fn retry_after(r: &Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header")
}

/// Wrong passwords from `ip` until the first 429; returns it and how many 401s came before.
async fn fail_until_throttled(app: &TestApp, ip: &str, email: &str) -> (Response, usize) {
    for n in 0..20 {
        let r = token_attempt(app, ip, email, "wrong password entirely").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            return (r, n);
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    panic!("20 wrong passwords were never throttled");
}

async fn wrong_passwords_are_throttled_and_the_owner_still_signs_in(app: TestApp) {
    let email = unique_email("throttle");
    register_from(&app, "198.51.100.1", &email).await;
    // Five failures are free, the sixth is counted, the seventh waits.
    let (r, failures) = fail_until_throttled(&app, "203.0.113.9", &email).await;
    assert_eq!(failures, 6);
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "{wait}");
    let (_, body) = json_of(r).await;
    assert_eq!(body["code"], "throttled");
    assert!(
        body["detail"].as_str().unwrap().contains("throttled"),
        "{body}"
    );
    // The right password from the attacker's address is refused too: no password is checked.
    assert_eq!(
        token_attempt(&app, "203.0.113.9", &email, PASSWORD)
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The Kratos face answers with its own envelope.
    let r = flow_login(&app, "203.0.113.9", &email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let (_, body) = json_of(r).await;
    assert_eq!(body["error"]["id"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], 429);
    // A device the account never used is judged by its own failures and the hourly cap only:
    // someone else's run does not hold it up (that would be a lockout for a few requests an
    // hour, as the attack on the hardening showed; see `a_trickle_of_failures_…` in core).
    let r = flow_login(&app, "192.0.2.55", &email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The owner, on the device they registered from, is not locked out by someone else.
    let r = token_attempt(&app, "198.51.100.1", &email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The owner's success ends the account's run, so a new device of theirs gets in...
    assert_eq!(
        flow_login(&app, "192.0.2.55", &email, PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    // ...while the attacker's own address stays slowed: once its delay has passed one more
    // failure is allowed, and the next wait is twice as long.
    app.clock.advance(Duration::from_secs(3));
    let r = token_attempt(&app, "203.0.113.9", &email, "still wrong").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = token_attempt(&app, "203.0.113.9", &email, "still wrong").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 2);
}

async fn unknown_accounts_are_throttled_exactly_like_known_ones(app: TestApp) {
    let known = unique_email("known");
    register_from(&app, "198.51.100.1", &known).await;
    let (known_r, known_n) = fail_until_throttled(&app, "203.0.113.10", &known).await;
    let (unknown_r, unknown_n) =
        fail_until_throttled(&app, "203.0.113.11", &unique_email("nobody")).await;
    assert_eq!(known_n, unknown_n);
    assert_eq!(retry_after(&known_r), retry_after(&unknown_r));
    let (_, a) = json_of(known_r).await;
    let (_, b) = json_of(unknown_r).await;
    assert_eq!(a, b);
}

async fn the_per_ip_limit_answers_429_with_retry_after_in_each_faces_format(app: TestApp) {
    // Login bucket: a burst of 3 from one address, then 429 before any password is checked.
    let email = unique_email("burst");
    for _ in 0..3 {
        let r = send(
            app.request(Method::POST, "/api/token/")
                .json(&json!({ "email": email, "password": "x" })),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = send(
        app.request(Method::POST, "/api/token/")
            .json(&json!({ "email": email, "password": "x" })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let (_, body) = json_of(r).await;
    assert_eq!(body["code"], "throttled");
    // Login flow submits share the bucket and answer in the Kratos envelope.
    let flow = app.flow("login").await;
    let r = send(
        app.request(
            Method::POST,
            &format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()),
        )
        .json(&json!({ "method": "password", "identifier": email, "password": "x" })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let (_, body) = json_of(r).await;
    assert_eq!(body["error"]["id"], "rate_limit_exceeded");
    // Clerk's Frontend API sign-ins share it too, in Clerk's envelope.
    let r = send(
        app.request(Method::POST, "/v1/client/sign_ins")
            .form(&[("identifier", email.as_str())]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let (_, body) = json_of(r).await;
    assert_eq!(body["errors"][0]["code"], "too_many_requests");
    // Other endpoints are not affected.
    assert_eq!(app.get("/health/alive").await.status(), StatusCode::OK);
    let (status, _) = app.get_json("/self-service/registration/api").await;
    assert_eq!(status, StatusCode::OK);
}

async fn the_audit_log_records_sign_ins_and_filters_them(app: TestApp) {
    let email = unique_email("audit");
    let id = register_from(&app, "198.51.100.7", &email).await;
    assert_eq!(
        token_attempt(&app, "198.51.100.7", &email, "wrong")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_attempt(&app, "198.51.100.7", &email, PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    let records = app
        .admin_get_list(&format!("/admin/audit?identity_id={id}"))
        .await;
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["login.succeeded", "login.failed", "registration.succeeded"],
        "{records:?}"
    );
    let failed = &records[1];
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["reason"], "invalid_credentials");
    assert_eq!(failed["ip_address"], "198.51.100.7");
    assert_eq!(failed["actor"]["type"], "anonymous");
    assert_eq!(records[0]["actor"], json!({ "type": "identity", "id": id }));
    // No secret ever lands in a record.
    let text = Value::Array(records.clone()).to_string();
    assert!(!text.contains(PASSWORD) && !text.contains("wrong"));
    // Filters: by type, by time, and paging with a Link header.
    let only = app.admin_get_list("/admin/audit?type=login.failed").await;
    assert!(only.iter().all(|r| r["type"] == "login.failed"));
    assert!(only.iter().any(|r| r["identity_id"] == id.as_str()));
    let future = app
        .admin_get_list("/admin/audit?since=2999-01-01T00:00:00Z")
        .await;
    assert!(future.is_empty());
    let r = app
        .admin_get(&format!("/admin/audit?identity_id={id}&page_size=1"))
        .await;
    assert!(r.headers()["link"]
        .to_str()
        .unwrap()
        .contains("rel=\"next\""));
    // Bad filters get the Kratos envelope.
    for q in [
        "type=nope",
        "since=yesterday",
        "identity_id=42",
        "page_size=0",
    ] {
        let (status, body) = json_of(app.admin_get(&format!("/admin/audit?{q}")).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(body["error"]["code"], 400, "{q}");
    }
}

async fn the_clerk_face_answers_429_with_retry_after_in_clerks_format(app: TestApp) {
    let clerk = |ip: &str, key: &str| {
        send(
            app.admin_request(Method::GET, "/v1/users")
                .header("x-forwarded-for", ip)
                .bearer_auth(key),
        )
    };
    // A burst of 3 from one address, wrong keys included, then 429 before the key is checked.
    assert_eq!(
        clerk("203.0.113.30", CLERK_KEY).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        clerk("203.0.113.30", "sk_test_a_guess_0123456789")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        clerk("203.0.113.30", CLERK_KEY).await.status(),
        StatusCode::OK
    );
    let r = clerk("203.0.113.30", CLERK_KEY).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let (_, body) = json_of(r).await;
    assert_eq!(body["errors"][0]["code"], "too_many_requests", "{body}");
    assert!(body["clerk_trace_id"].is_string());
    // Another address has its own allowance; the Kratos admin API is not limited.
    assert_eq!(
        clerk("203.0.113.31", CLERK_KEY).await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        let r = send(
            app.admin_request(Method::GET, "/admin/identities")
                .header("x-forwarded-for", "203.0.113.30"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn failure_counters_hold_across_two_instances_on_one_postgres() {
    let dsn = portcullis_store::testing::fresh_postgres_database().await;
    let a = TestApp::spawn_on(&dsn, behind_a_proxy).await;
    let b = TestApp::spawn_on(&dsn, behind_a_proxy).await;
    let email = unique_email("shared");
    register_from(&a, "198.51.100.1", &email).await;
    // Failures alternate between the instances; the counter is one.
    let mut throttled = None;
    for n in 0..20 {
        let app = if n % 2 == 0 { &a } else { &b };
        let r = token_attempt(app, "203.0.113.20", &email, "wrong").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(n);
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        throttled,
        Some(6),
        "the seventh attempt overall is throttled"
    );
    // Both instances refuse the attacker now, and both let the owner in.
    for app in [&a, &b] {
        assert_eq!(
            token_attempt(app, "203.0.113.20", &email, PASSWORD)
                .await
                .status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            token_attempt(app, "198.51.100.1", &email, PASSWORD)
                .await
                .status(),
            StatusCode::OK
        );
    }
}

fn custom_token_paths(c: &mut Config) {
    c.security.rate_limit = Default::default();
    c.security.rate_limit.login.burst = 3;
    c.tokens.paths.obtain = "/auth/jwt/create/".into();
}

/// Found by the attack on the hardening: the per-IP limit follows `tokens.paths`, so a
/// password spray on a configured obtain path is cut off like one on the default path.
#[tokio::test]
async fn the_per_ip_limit_follows_configured_token_paths() {
    let app = TestApp::spawn_with(crate::helpers::Backend::Sqlite, custom_token_paths).await;
    let mut statuses = vec![];
    for i in 0..6 {
        let r =
            send(app.request(Method::POST, "/auth/jwt/create/").json(
                &json!({ "email": format!("spray{i}@example.com"), "password": "Winter2026!" }),
            ))
            .await;
        statuses.push(r.status());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        3
    );
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
}
