//! Security review F6: a failed registration stored and returned the submitted value three
//! times (1 MiB in, 3 MB out and stored). Invalid values now come back bounded (256
//! characters and `…`), and self-service submits take at most `serve.max_submit_size` (64 KiB).

use crate::helpers::{expect_error, json_of, message_ids, send, Browser, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

crate::on_every_backend!(
    an_invalid_value_comes_back_truncated_in_its_node_and_its_message,
    a_submit_over_the_submit_limit_is_refused_before_it_reaches_the_flow,
);

/// The `value` of node `name` in `flow`.
fn node_value<'f>(flow: &'f Value, name: &str) -> &'f Value {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == name)
        .map(|n| &n["attributes"]["value"])
        .unwrap_or(&Value::Null)
}

/// The texts (and context reasons) of the messages on node `name`.
fn node_texts(flow: &Value, name: &str) -> Vec<String> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["attributes"]["name"] == name)
        .flat_map(|n| n["messages"].as_array().unwrap().clone())
        .flat_map(|m| [m["text"].clone(), m["context"]["reason"].clone()])
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

async fn submit_registration(
    app: &TestApp,
    flow: &Value,
    email: &str,
) -> (StatusCode, Value, usize) {
    let r = send(
        app.request(
            Method::POST,
            &format!(
                "/self-service/registration?flow={}",
                flow["id"].as_str().unwrap()
            ),
        )
        .json(&json!({ "method": "password", "password": PASSWORD, "traits": { "email": email } })),
    )
    .await;
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap(), bytes.len())
}

async fn an_invalid_value_comes_back_truncated_in_its_node_and_its_message(app: TestApp) {
    // 40,000 bytes of two-byte characters: within the submit limit, far beyond an address.
    let long = "é".repeat(20_000);
    let echoed = format!("{}…", "é".repeat(256));
    let flow = app.flow("registration").await;
    let (status, body, size) = submit_registration(&app, &flow, &long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(node_value(&body, "traits.email"), &json!(echoed));
    let texts = node_texts(&body, "traits.email");
    let format_msg = format!("\"{echoed}\" is not valid \"email\"");
    assert_eq!(
        texts.iter().filter(|t| **t == format_msg).count(),
        2,
        "text and context.reason: {texts:?}"
    );
    assert!(size < 8 * 1024, "the answer is {size} bytes");
    // The flow as stored is bounded too.
    let (status, stored) = app
        .get_json(&format!(
            "/self-service/registration/flows?id={}",
            flow["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node_value(&stored, "traits.email"), &json!(echoed));
    assert!(stored.to_string().len() < 8 * 1024);
    // A short invalid value comes back whole.
    let flow = app.flow("registration").await;
    let (_, body, _) = submit_registration(&app, &flow, "not-an-email").await;
    assert_eq!(node_value(&body, "traits.email"), "not-an-email");
    assert!(node_texts(&body, "traits.email")
        .contains(&"\"not-an-email\" is not valid \"email\"".to_string()));
    // A login identifier is no form field of the schema: bounded whatever happens.
    let flow = app.flow("login").await;
    let r = app
        .submit(
            "login",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "identifier": "x".repeat(30_000), "password": PASSWORD }),
            None,
        )
        .await;
    let (status, body) = json_of(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&body, None), [4000006]);
    assert_eq!(
        node_value(&body, "identifier"),
        &json!(format!("{}…", "x".repeat(256)))
    );
}

async fn a_submit_over_the_submit_limit_is_refused_before_it_reaches_the_flow(app: TestApp) {
    // The review's request: a 1 MiB value in a registration.
    let flow = app.flow("registration").await;
    let id = flow["id"].as_str().unwrap();
    let submit = format!("/self-service/registration?flow={id}");
    for size in [1 << 20, 100 << 10] {
        let r = send(app.request(Method::POST, &submit).json(&json!({
            "method": "password", "password": PASSWORD, "traits": { "email": "x".repeat(size) }
        })))
        .await;
        let body = expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert_eq!(
            body["error"]["reason"],
            "The request body exceeds the configured limit (serve.max_submit_size)."
        );
        assert!(body.to_string().len() < 1024);
    }
    let (_, stored) = app
        .get_json(&format!("/self-service/registration/flows?id={id}"))
        .await;
    assert_eq!(node_value(&stored, "traits.email"), &Value::Null);
    assert!(stored.to_string().len() < 8 * 1024);
    // Login and settings submits have the same limit.
    let login = app.flow("login").await;
    let r = app
        .post_raw(
            &format!("/self-service/login?flow={}", login["id"].as_str().unwrap()),
            "application/json",
            format!(
                r#"{{"method":"password","identifier":"{}"}}"#,
                "x".repeat(100 << 10)
            ),
        )
        .await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    // A browser's form gets the error page, with the 413 kept for it.
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let big = "x".repeat(100 << 10);
    let r = b
        .post_form(
            flow["ui"]["action"].as_str().unwrap(),
            &[
                ("csrf_token", crate::helpers::csrf(&flow)),
                ("traits.email", &big),
                ("password", PASSWORD),
                ("method", "password"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = crate::helpers::location(&r);
    let error_id = to
        .split_once("/ui/error?id=")
        .map(|(_, id)| id.to_string())
        .unwrap_or_else(|| panic!("{to}"));
    let (status, kept) = app
        .get_json(&format!("/self-service/errors?id={error_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kept["error"]["code"], 413, "{kept}");
    // The general limit still holds elsewhere.
    let r = app
        .post_raw(
            "/api/token/",
            "application/json",
            format!(r#"{{"email":"{}"}}"#, "x".repeat(100 << 10)),
        )
        .await;
    assert_ne!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
