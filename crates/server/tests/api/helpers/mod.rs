use portcullis_core::config::{ByteSize, Config};
use portcullis_core::service::Clock;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed scenario once per backend: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name($crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name($crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await).await } )* }
    };
}

pub struct ManualClock(Mutex<OffsetDateTime>);

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
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
        tweak(&mut cfg);
        let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
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

    pub async fn get(&self, url: &str) -> Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn get_with_token(&self, url: &str, token: &str) -> Response {
        self.http
            .get(url)
            .header("X-Session-Token", token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, url: &str, body: &Value) -> Response {
        self.http.post(url).json(body).send().await.unwrap()
    }

    pub async fn flow(&self, kind: &str) -> Value {
        let r = self
            .get(&format!("{}/self-service/{kind}/api", self.public))
            .await;
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
            .http
            .post(format!(
                "{}/self-service/{kind}?flow={flow_id}",
                self.public
            ))
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

    pub async fn whoami_status(&self, token: &str) -> StatusCode {
        self.get_with_token(&format!("{}/sessions/whoami", self.public), token)
            .await
            .status()
    }
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
