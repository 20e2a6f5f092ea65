//! A receiver for flow web hooks, playing the app behind them: it records every call and
//! answers as its path says, with the answers Kratos documents (204, 200 with
//! `{"identity": …}`, 400 with `{"messages": […]}`, a failure). Scenarios tell their calls
//! apart by the `key` their bodies send (an e-mail address), so one receiver serves the whole
//! test binary ([`receiver`]), on a thread of its own, as a server's configuration must name
//! its URL before the server starts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// One call the receiver got.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: String,
    pub method: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Call {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Receiver {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    /// `/held` answers only once a scenario releases it.
    release: Arc<Notify>,
}

pub fn receiver() -> &'static Receiver {
    static RECEIVER: OnceLock<Receiver> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let r = Receiver {
                    url: format!("http://127.0.0.1:{}", l.local_addr().unwrap().port()),
                    calls: Arc::default(),
                    release: Arc::new(Notify::new()),
                };
                tx.send(r.clone()).unwrap();
                let app = Router::new().route("/{name}", any(answer)).with_state(r);
                axum::serve(l, app).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.url)
    }

    /// The calls to `path` whose body's `key` is `key`, in order.
    pub fn calls(&self, path: &str, key: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path && c.body["key"] == key)
            .cloned()
            .collect()
    }

    /// Waits (up to 10 s) for a call to `path` with `key`.
    pub async fn wait_for(&self, path: &str, key: &str) -> Call {
        for _ in 0..200 {
            if let Some(c) = self.calls(path, key).pop() {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no call to /{path} for {key}");
    }

    /// Lets every held call answer.
    pub fn release_held(&self) {
        self.release.notify_waiters();
    }
}

/// What each path answers:
/// - `ok`: 204.
/// - `check`: 400 with a message on `traits.email` when the key starts with `refused`, 200
///   with new metadata (and, for `renamed…`, a new first name) otherwise.
/// - `flow-refusal`: 400 with a message for the whole flow.
/// - `fail`: 500 without messages.
/// - `moved`: 302 to a login page, as a proxy in front of the receiver would.
/// - `held`: 204 once a scenario releases it (recorded when it arrives).
async fn answer(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = body["key"].as_str().unwrap_or_default().to_string();
    // Waiting from before the call is seen: a release right after it cannot be missed.
    let release = r.release.clone();
    let held = release.notified();
    tokio::pin!(held);
    held.as_mut().enable();
    r.calls.lock().unwrap().push(Call {
        path: name.clone(),
        method: method.to_string(),
        headers,
        body: body.clone(),
    });
    match name.as_str() {
        "check" if key.starts_with("refused") => (
            StatusCode::BAD_REQUEST,
            Json(json!({"messages": [{
                "instance_ptr": "#/traits/email",
                "messages": [{"id": 4000001, "text": "This address is not on the invitation list.", "type": "error", "context": {"list": "beta"}}],
            }]})),
        )
            .into_response(),
        "check" => {
            let mut identity = json!({
                "metadata_public": {"plan": "free"},
                "metadata_admin": {"crm_id": format!("crm-{key}")},
            });
            if key.starts_with("renamed") {
                let mut traits = body["traits"].clone();
                traits["name"]["first"] = json!("Renamed");
                identity["traits"] = traits;
            }
            Json(json!({ "identity": identity })).into_response()
        }
        "flow-refusal" => (
            StatusCode::FORBIDDEN,
            Json(json!({"messages": [{
                "instance_ptr": "#/",
                "messages": [{"id": 4000000, "text": "Sign-ups are closed this week.", "type": "error"}],
            }]})),
        )
            .into_response(),
        "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "database down").into_response(),
        "moved" => (StatusCode::FOUND, [("location", "/login")]).into_response(),
        "held" => {
            held.await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}
