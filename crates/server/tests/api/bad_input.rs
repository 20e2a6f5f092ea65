use crate::helpers::{expect_error, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

crate::on_every_backend!(
    bad_self_service_input_gets_kratos_errors_never_a_500,
    bad_admin_input_gets_kratos_errors_never_a_500,
    unknown_routes_methods_and_tokens_get_kratos_errors_and_health_stays_green,
);

/// Bad input never takes the server down: called after each batch of it.
async fn health_stays_green(app: &TestApp) {
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    assert_eq!(
        app.admin_get("/admin/health/ready").await.status(),
        StatusCode::OK
    );
}

async fn bad_self_service_input_gets_kratos_errors_never_a_500(app: TestApp) {
    let flow = app.flow("registration").await;
    let submit = app.url(&format!(
        "/self-service/registration?flow={}",
        flow["id"].as_str().unwrap()
    ));

    let r = app.post_raw(&submit, "application/json", "{not json").await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.post_raw(&submit, "text/plain", "method=password").await;
    expect_error(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let r = app.post_raw(&submit, "application/json", "").await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let huge = json!({ "method": "password", "traits": { "email": "x".repeat(2 << 20) } });
    let r = app.http.post(&submit).json(&huge).send().await.unwrap();
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let r = app
        .post("/self-service/registration?flow=not-a-uuid", &json!({}))
        .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.post("/self-service/registration", &json!({})).await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .post(
            &app.url(&format!(
                "/self-service/login?flow={}",
                uuid::Uuid::new_v4()
            )),
            &json!({ "method": "password" }),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = app
        .get(&app.url(&format!(
            "/self-service/login/flows?id={}",
            uuid::Uuid::new_v4()
        )))
        .await;
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = app.get("/self-service/login/flows").await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .get("/self-service/login/api?refresh=true&refresh=false")
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
    health_stays_green(&app).await;
}

async fn bad_admin_input_gets_kratos_errors_never_a_500(app: TestApp) {
    let ids = app.admin_url("/admin/identities");
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
    let r = app.admin_get("/admin/sessions?active=maybe").await;
    expect_error(r, StatusCode::BAD_REQUEST).await;
    health_stays_green(&app).await;
}

async fn unknown_routes_methods_and_tokens_get_kratos_errors_and_health_stays_green(app: TestApp) {
    let r = app.get("/no/such/route").await;
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = app.request(Method::PUT, "/sessions").send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let r = app
        .request(Method::DELETE, "/self-service/logout/api")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = app.get_with_token("/sessions/whoami", "garbage").await;
    let e = expect_error(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(e["error"]["id"], "session_inactive");
    health_stays_green(&app).await;
    let (_, v) = app.admin_get_json("/version").await;
    assert!(v["version"].as_str().unwrap().starts_with('v'));
}
