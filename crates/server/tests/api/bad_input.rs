use crate::helpers::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_both!(bad_input_gets_kratos_errors_never_a_500);

async fn expect_error(r: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status, "{:?}", r.url().clone());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], status.as_u16(), "{body}");
    assert!(
        body["error"]["message"].is_string() && body["error"]["status"].is_string(),
        "{body}"
    );
    body
}

async fn bad_input_gets_kratos_errors_never_a_500(app: TestApp) {
    let flow = app.flow("registration").await;
    let submit = format!(
        "{}/self-service/registration?flow={}",
        app.public,
        flow["id"].as_str().unwrap()
    );
    let ids = format!("{}/admin/identities", app.admin);

    let r = app
        .http
        .post(&submit)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .http
        .post(&submit)
        .header("content-type", "text/plain")
        .body("method=password")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let r = app
        .http
        .post(&submit)
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let huge = json!({ "method": "password", "traits": { "email": "x".repeat(2 << 20) } });
    let r = app.http.post(&submit).json(&huge).send().await.unwrap();
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let r = app
        .post(
            &format!("{}/self-service/registration?flow=not-a-uuid", app.public),
            &json!({}),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .post(
            &format!("{}/self-service/registration", app.public),
            &json!({}),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .post(
            &format!(
                "{}/self-service/login?flow={}",
                app.public,
                uuid::Uuid::new_v4()
            ),
            &json!({ "method": "password" }),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = app
        .get(&format!(
            "{}/self-service/login/flows?id={}",
            app.public,
            uuid::Uuid::new_v4()
        ))
        .await;
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = app
        .get(&format!("{}/self-service/login/flows", app.public))
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .get(&format!(
            "{}/self-service/login/api?refresh=true&refresh=false",
            app.public
        ))
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    // Wrong JSON types inside a valid document are validation messages, not crashes.
    let r = app
        .post(
            &submit,
            &json!({ "method": 5, "traits": "x", "password": [] }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["id"], flow["id"]);

    let r = app.get(&format!("{ids}/not-a-uuid")).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.get(&format!("{ids}?page_token=%%%")).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.get(&format!("{ids}?page_size=0")).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.get(&format!("{ids}?page_size=many")).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.post(&ids, &json!([1, 2, 3])).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.post(&ids, &json!({ "schema_id": "default" })).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .post(
            &ids,
            &json!({ "traits": { "email": "a@b.co" }, "state": "sleeping" }),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .get(&format!("{}/admin/sessions?active=maybe", app.admin))
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.get(&format!("{}/no/such/route", app.public)).await;
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = app
        .http
        .put(format!("{}/sessions", app.public))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let r = app
        .http
        .delete(format!("{}/self-service/logout/api", app.public))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .get_with_token(&format!("{}/sessions/whoami", app.public), "garbage")
        .await;
    let e = expect_error(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(e["error"]["id"], "session_inactive");
    // Health stays green throughout.
    assert_eq!(
        app.get(&format!("{}/health/ready", app.public))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("{}/admin/health/ready", app.admin))
            .await
            .status(),
        StatusCode::OK
    );
    let v: Value = app
        .get(&format!("{}/version", app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["version"].as_str().unwrap().starts_with('v'));
}
