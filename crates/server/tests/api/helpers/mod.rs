//! The test harness: a real server on port 0 per scenario, the macro that runs a scenario on
//! every backend, request helpers that take paths relative to the public (or admin) port, and
//! the assertions several modules share. The browser cookie jar lives in `browser`.

mod browser;
pub mod hooks;
pub mod idp;
mod mail;
pub mod mfa;
pub mod webauthn;

pub use browser::{csrf, location, set_cookie, Browser};

use portcullis_core::config::{ByteSize, Config};
use portcullis_testkit::ManualClock;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed scenario once per backend, as `sqlite::name` and `postgres::name`. A
/// scenario is an `async fn(TestApp)`; `name with tweak` first applies `fn tweak(&mut Config)`
/// (a function of the calling module) to the server's configuration.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident $(with $tweak:ident)?),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() {
            super::$name($crate::helpers::TestApp::spawn_with(
                $crate::helpers::Backend::Sqlite,
                $crate::on_every_backend!(@tweak $($tweak)?),
            ).await).await
        } )* }
        mod postgres { $( #[tokio::test] async fn $name() {
            super::$name($crate::helpers::TestApp::spawn_with(
                $crate::helpers::Backend::Postgres,
                $crate::on_every_backend!(@tweak $($tweak)?),
            ).await).await
        } )* }
    };
    (@tweak) => { |_: &mut portcullis_core::config::Config| {} };
    (@tweak $tweak:ident) => { super::$tweak };
}

pub struct TestApp {
    pub public: String,
    pub admin: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: portcullis_server::AppState,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn dsn(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("pc-api-{}.sqlite", uuid::Uuid::new_v4()));
            format!("sqlite://{}", path.display())
        }
        Backend::Postgres => portcullis_store::testing::fresh_postgres_database().await,
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_on(&dsn(backend).await, tweak).await
    }

    /// A server on an existing database (several may share one PostgreSQL database).
    pub async fn spawn_on(dsn: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pp, ap) = (
            public.local_addr().unwrap().port(),
            admin.local_addr().unwrap().port(),
        );
        let env = vec![
            ("PORTCULLIS_DSN".to_string(), dsn.to_string()),
            ("PORTCULLIS_SERVE_PUBLIC_PORT".to_string(), pp.to_string()),
            ("PORTCULLIS_SERVE_ADMIN_PORT".to_string(), ap.to_string()),
        ];
        let mut cfg = Config::load(None, env, true).unwrap();
        // Cheap hashing keeps the suite fast; production parameters are enforced outside dev mode.
        cfg.hashers.argon2.memory = ByteSize(256 * 1024);
        cfg.hashers.argon2.iterations = 1;
        // Scenarios send many requests from one address; the per-IP limits have their own
        // scenarios (ratelimit.rs), which restore the defaults.
        let plenty = portcullis_core::ratelimit::Quota {
            per_minute: 1_000_000,
            burst: 1_000_000,
        };
        let rl = &mut cfg.security.rate_limit;
        (
            rl.login,
            rl.registration,
            rl.refresh,
            rl.flow_creation,
            rl.email,
            rl.clerk,
        ) = (plenty, plenty, plenty, plenty, plenty, plenty);
        tweak(&mut cfg);
        // The test clock starts at the wall time: the suite checks tokens with libraries that
        // read the real clock (jsonwebtoken's `exp` check).
        #[allow(clippy::disallowed_methods)]
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let state = portcullis_server::build_with_clock(cfg, clock.clone())
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        portcullis_server::serve(state.clone(), public, admin, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        TestApp {
            public: format!("http://127.0.0.1:{pp}"),
            admin: format!("http://127.0.0.1:{ap}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            clock,
            state,
            _stop: tx,
        }
    }

    /// `path` on the public port; an absolute URL (a link from a response) is kept as it is.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.public)
        }
    }

    /// `path` on the admin port; an absolute URL is kept as it is.
    pub fn admin_url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.admin)
        }
    }

    /// A request to `path` on the public port, to finish with headers or a body.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// A request to `path` on the admin port.
    pub fn admin_request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.admin_url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        send(self.request(Method::GET, path)).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Response {
        send(
            self.request(Method::GET, path)
                .header("X-Session-Token", token),
        )
        .await
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.get(path).await).await
    }

    /// A GET with the session token `token`, as native apps send it.
    pub async fn get_json_with_token(&self, path: &str, token: &str) -> (StatusCode, Value) {
        json_of(self.get_with_token(path, token).await).await
    }

    /// A GET with the access token `token` as a bearer token.
    pub async fn get_with_bearer(&self, path: &str, token: &str) -> Response {
        send(self.request(Method::GET, path).bearer_auth(token)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        json_of(self.post(path, body).await).await
    }

    /// A POST of `body` as it is, labelled `content_type` (for bodies a client got wrong).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        send(
            self.request(Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub async fn delete_with_token(&self, path: &str, token: &str) -> Response {
        send(
            self.request(Method::DELETE, path)
                .header("X-Session-Token", token),
        )
        .await
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        send(self.admin_request(Method::GET, path)).await
    }

    pub async fn admin_get_json(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.admin_get(path).await).await
    }

    /// A GET whose body is a JSON array (a list endpoint).
    pub async fn get_list(&self, path: &str) -> Vec<Value> {
        list_of(self.get(path).await).await
    }

    pub async fn get_list_with_token(&self, path: &str, token: &str) -> Vec<Value> {
        list_of(self.get_with_token(path, token).await).await
    }

    pub async fn admin_get_list(&self, path: &str) -> Vec<Value> {
        list_of(self.admin_get(path).await).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Response {
        send(self.admin_request(Method::POST, path).json(body)).await
    }

    pub async fn admin_post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        json_of(self.admin_post(path, body).await).await
    }

    pub async fn admin_put(&self, path: &str, body: &Value) -> Response {
        send(self.admin_request(Method::PUT, path).json(body)).await
    }

    pub async fn admin_patch(&self, path: &str, body: &Value) -> Response {
        send(self.admin_request(Method::PATCH, path).json(body)).await
    }

    pub async fn admin_delete(&self, path: &str) -> Response {
        send(self.admin_request(Method::DELETE, path)).await
    }

    /// Creates an identity through the admin API.
    pub async fn create_identity(&self, body: Value) -> Response {
        self.admin_post("/admin/identities", &body).await
    }

    /// Sets the identity's state to `inactive` through the admin API.
    pub async fn deactivate(&self, id: &str) -> Response {
        self.admin_patch(
            &format!("/admin/identities/{id}"),
            &json!([{ "op": "replace", "path": "/state", "value": "inactive" }]),
        )
        .await
    }

    pub async fn flow(&self, kind: &str) -> Value {
        let r = self.get(&format!("/self-service/{kind}/api")).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub async fn submit(
        &self,
        kind: &str,
        flow_id: &str,
        body: Value,
        token: Option<&str>,
    ) -> Response {
        let mut req = self
            .request(
                Method::POST,
                &format!("/self-service/{kind}?flow={flow_id}"),
            )
            .json(&body);
        if let Some(t) = token {
            req = req.header("X-Session-Token", t);
        }
        req.send().await.unwrap()
    }

    /// Registers and returns (identity id, session token).
    pub async fn register(&self, email: &str, password: &str) -> (String, String) {
        let flow = self.flow("registration").await;
        let r = self
            .submit(
                "registration",
                flow["id"].as_str().unwrap(),
                json!({ "method": "password", "password": password, "traits": { "email": email, "name": { "first": "Ada", "last": "Lovelace" } } }),
                None,
            )
            .await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["identity"]["id"].as_str().unwrap().to_string(),
            body["session_token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn login(&self, identifier: &str, password: &str) -> Response {
        let flow = self.flow("login").await;
        self.submit(
            "login",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "identifier": identifier, "password": password }),
            None,
        )
        .await
    }

    /// Sets a new password through an API settings flow of `token`'s session; it must succeed.
    pub async fn change_password(&self, token: &str, password: &str) {
        let (_, flow) = self
            .get_json_with_token("/self-service/settings/api", token)
            .await;
        let r = self
            .submit(
                "settings",
                flow["id"].as_str().unwrap(),
                json!({ "method": "password", "password": password }),
                Some(token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Logs in and returns the new session token.
    pub async fn login_token(&self, email: &str) -> String {
        let (_, body) = json_of(self.login(email, PASSWORD).await).await;
        body["session_token"].as_str().unwrap().to_string()
    }

    pub async fn whoami_status(&self, token: &str) -> StatusCode {
        self.get_with_token("/sessions/whoami", token)
            .await
            .status()
    }
}

/// Sends `req`; the suite treats a transport failure as a failed test.
pub async fn send(req: RequestBuilder) -> Response {
    req.send().await.unwrap()
}

/// The status and the JSON body of `r`. An empty body reads as `null`; any other body that is
/// not JSON fails the test.
pub async fn json_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let url = r.url().clone();
    let bytes = r.bytes().await.unwrap();
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{url}: {status}: not JSON ({e}): {bytes:?}"));
    (status, body)
}

/// The JSON array `r` answers (a list endpoint); anything else fails the test.
pub async fn list_of(r: Response) -> Vec<Value> {
    r.json().await.unwrap()
}

/// The status and the Kratos error id of an error response, as `[status, id]`.
pub async fn error_id(r: Response) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    json!([status.as_u16(), body["error"]["id"]])
}

/// Checks that `r` is a Kratos error with `status` and returns its body.
pub async fn expect_error(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status, "{:?}", r.url().clone());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], status.as_u16(), "{body}");
    assert!(
        body["error"]["message"].is_string() && body["error"]["status"].is_string(),
        "{body}"
    );
    body
}

pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub const PASSWORD: &str = "tangerine violin sleepy";

/// The ids of the messages on the node `name` (or on `ui.messages` for `None`).
pub fn message_ids(flow: &Value, name: Option<&str>) -> Vec<u64> {
    let msgs = match name {
        None => flow["ui"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Some(n) => flow["ui"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|node| {
                node["attributes"]["name"] == n && node["attributes"]["type"] != "submit"
            })
            .flat_map(|node| node["messages"].as_array().cloned().unwrap_or_default())
            .collect(),
    };
    msgs.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}
