//! A browser for the tests: a cookie jar over the test client that follows no redirects, so
//! each 303 and `Set-Cookie` can be checked. Every module that needs cookies uses it.

use super::{TestApp, PASSWORD};
use reqwest::header::{HeaderMap, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;

/// A browser: a cookie jar over the test client, no redirects followed.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub jar: BTreeMap<String, String>,
    /// Sent with every request, e.g. `Accept-Language`.
    pub headers: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            jar: BTreeMap::new(),
            headers: vec![],
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &Response) {
        for sc in r.headers().get_all(SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Response {
        let mut req = req.header(COOKIE, self.cookie_header());
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let r = req.send().await.unwrap();
        self.keep(&r);
        r
    }

    /// `path` is relative to the public port, or an absolute URL (a link from a response).
    pub async fn get(&mut self, path: &str) -> Response {
        let req = self.app.http.get(self.app.url(path));
        self.send(req).await
    }

    /// A GET as an SPA sends it, asking for JSON.
    pub async fn get_json(&mut self, path: &str) -> Response {
        let req = self
            .app
            .http
            .get(self.app.url(path))
            .header(ACCEPT, "application/json");
        self.send(req).await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let req = self.app.http.post(self.app.url(path)).form(fields);
        self.send(req).await
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Response {
        let req = self
            .app
            .http
            .post(self.app.url(path))
            .header(ACCEPT, "application/json")
            .json(body);
        self.send(req).await
    }

    /// Starts a browser flow as an SPA does; returns the flow JSON.
    pub async fn flow(&mut self, kind: &str) -> Value {
        let r = self
            .get_json(&format!("/self-service/{kind}/browser"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Reads a flow by id, with this browser's cookies; it must answer 200.
    pub async fn fetch_flow(&mut self, kind: &str, id: &str) -> Value {
        let r = self
            .get_json(&format!("/self-service/{kind}/flows?id={id}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub fn csrf_cookie(&self) -> Option<(&String, &String)> {
        self.jar.iter().find(|(k, _)| k.starts_with("csrf_token_"))
    }

    pub fn has_session_cookie(&self) -> bool {
        self.jar.contains_key("ory_kratos_session")
    }

    /// Posts the registration form of `flow` for `email`, as the hosted page does.
    pub async fn post_registration(&mut self, flow: &Value, email: &str) -> Response {
        let action = flow["ui"]["action"].as_str().unwrap();
        let fields = [
            ("csrf_token", csrf(flow)),
            ("traits.email", email),
            ("password", PASSWORD),
            ("method", "password"),
        ];
        self.post_form(action, &fields).await
    }

    /// Registers through a new flow's form.
    pub async fn register(&mut self, email: &str) {
        let flow = self.flow("registration").await;
        let r = self.post_registration(&flow, email).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(self.has_session_cookie());
    }
}

/// The CSRF token rendered in `flow`'s form.
pub fn csrf(flow: &Value) -> &str {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "csrf_token")
        .and_then(|n| n["attributes"]["value"].as_str())
        .unwrap()
}

/// The `Location` header, or "" when there is none.
pub fn location(r: &Response) -> String {
    r.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The `Set-Cookie` header whose value starts with `prefix`.
pub fn set_cookie<'h>(h: &'h HeaderMap, prefix: &str) -> &'h str {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(prefix))
        .unwrap_or_else(|| panic!("no Set-Cookie {prefix}"))
}
