use crate::helpers::{unique_email, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend!(
    create_validates_the_schema_and_refuses_duplicates,
    put_replaces_and_clears_omitted_metadata,
    json_patch_updates_traits_and_rederives_identifiers,
    list_pages_with_link_headers,
    delete_removes_the_identity_and_its_sessions,
    batch_create_reports_each_item,
    schemas_are_served_by_id_and_by_schema_url,
    the_admin_port_cannot_be_driven_by_a_web_page with clerk_key,
);

fn clerk_key(c: &mut portcullis_core::config::Config) {
    c.clerk.secret_keys = vec!["sk_test_admin_guard_key_0123456789".to_string().into()];
}

/// Security review F3: a page on any site could create identities and webhook endpoints
/// with a CORS "simple" request (`text/plain;+json`), and read the API through DNS rebinding.
async fn the_admin_port_cannot_be_driven_by_a_web_page(app: TestApp) {
    use reqwest::header::{CONTENT_TYPE, HOST, ORIGIN};
    use reqwest::Method;
    let body =
        json!({ "schema_id": "default", "traits": { "email": unique_email("f3") } }).to_string();
    let post = |ct: &'static str| {
        app.admin_request(Method::POST, "/admin/identities")
            .header(CONTENT_TYPE, ct)
            .body(body.clone())
    };
    // Only real JSON media types are JSON.
    for ct in [
        "text/plain;+json",
        "text/plain; charset=utf-8; x=+json",
        "application/jsonx",
        "application/+json",
    ] {
        let r = crate::helpers::send(post(ct)).await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
    }
    // A page's request carries its Origin, or at least Sec-Fetch-Site.
    let r =
        crate::helpers::send(post("application/json").header(ORIGIN, "https://evil.example")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], 403);
    let r =
        crate::helpers::send(post("application/json").header("sec-fetch-site", "cross-site")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for path in ["/admin/keys/rotate", "/admin/clerk/keys", "/admin/webhooks"] {
        let r = crate::helpers::send(
            app.admin_request(Method::POST, path)
                .header(ORIGIN, "https://evil.example")
                .header(CONTENT_TYPE, "application/json")
                .body(r#"{"url":"https://attacker.example/h"}"#),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // DNS rebinding: the page's own host name in Host.
    let port = url::Url::parse(&app.admin).unwrap().port().unwrap();
    let r = crate::helpers::send(
        app.admin_request(Method::GET, "/admin/identities")
            .header(HOST, format!("rebind.attacker.example:{port}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    // The Clerk face answers in its own format.
    let r = crate::helpers::send(
        app.admin_request(Method::GET, "/v1/users")
            .bearer_auth("sk_test_admin_guard_key_0123456789")
            .header(ORIGIN, "https://evil.example"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "authorization_invalid");
    // Servers and SDKs (no Origin, the right Host) are served; so is JSON Patch.
    let r = crate::helpers::send(post("application/json; charset=utf-8")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = crate::helpers::send(
        app.admin_request(Method::PATCH, &format!("/admin/identities/{id}"))
            .header(CONTENT_TYPE, "application/json-patch+json")
            .body(r#"[{"op":"replace","path":"/metadata_public","value":{"a":1}}]"#),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = crate::helpers::send(
        app.admin_request(Method::GET, "/v1/users")
            .bearer_auth("sk_test_admin_guard_key_0123456789"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn create_validates_the_schema_and_refuses_duplicates(app: TestApp) {
    let r = app
        .create_identity(json!({ "schema_id": "default", "traits": { "email": "nope" } }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], 400);
    assert!(
        e["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("traits.email"),
        "{e}"
    );
    let email = unique_email("adm");
    let r = app.create_identity(json!({ "schema_id": "default", "traits": { "email": email }, "metadata_public": { "plan": "pro" }, "metadata_admin": { "crm": 7 },
                "verifiable_addresses": [{ "value": email, "verified": true, "via": "email" }] }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let i: Value = r.json().await.unwrap();
    assert_eq!(i["state"], "active");
    assert_eq!(i["metadata_public"]["plan"], "pro");
    assert_eq!(i["metadata_admin"]["crm"], 7);
    assert_eq!(i["verifiable_addresses"][0]["verified"], true);
    assert_eq!(i["recovery_addresses"][0]["value"], email);
    assert!(i["schema_url"]
        .as_str()
        .unwrap()
        .ends_with("/schemas/ZGVmYXVsdA"));
    let r = app
        .create_identity(
            json!({ "schema_id": "default", "traits": { "email": email.to_uppercase() } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], 409);
    let r = app
        .create_identity(json!({ "schema_id": "nope", "traits": { "email": unique_email("s") } }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app.create_identity(json!({ "traits": { "email": unique_email("h") }, "credentials": { "password": { "config": { "hashed_password": "md5:abc" } } } })).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .create_identity(json!({ "traits": { "email": unique_email("u") }, "surprise": true }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["reason"].as_str().unwrap().contains("surprise"));
}

async fn put_replaces_and_clears_omitted_metadata(app: TestApp) {
    let email = unique_email("put");
    let i: Value = app
        .create_identity(json!({ "traits": { "email": email }, "metadata_public": { "a": 1 } }))
        .await
        .json()
        .await
        .unwrap();
    let id = i["id"].as_str().unwrap();
    let url = app.admin_url(&format!("/admin/identities/{id}"));
    let r = app.admin_put(&url, &json!({ "schema_id": "default", "traits": { "email": email, "name": { "first": "P" } } })).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "state is required on PUT"
    );
    let r = app.admin_put(&url, &json!({ "schema_id": "default", "state": "active", "traits": { "email": email, "name": { "first": "P" } }, "credentials": { "password": { "config": { "password": PASSWORD } } } })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["metadata_public"], Value::Null);
    assert_eq!(got["traits"]["name"]["first"], "P");
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::OK,
        "a password set by PUT works"
    );
    let r = app
        .http
        .put(app.admin_url(&format!("/admin/identities/{}", uuid::Uuid::new_v4())))
        .json(&json!({ "state": "active", "traits": { "email": unique_email("x") } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn json_patch_updates_traits_and_rederives_identifiers(app: TestApp) {
    let email = unique_email("patch");
    let (id, _) = app.register(&email, PASSWORD).await;
    let new_email = unique_email("patched");
    let url = app.admin_url(&format!("/admin/identities/{id}"));
    let r = app.admin_patch(&url, &json!([{ "op": "replace", "path": "/traits/email", "value": new_email }, { "op": "add", "path": "/metadata_public", "value": { "tier": 2 } }])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["traits"]["email"], new_email);
    assert_eq!(got["metadata_public"]["tier"], 2);
    assert_eq!(
        app.login(&new_email, PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    for bad in [
        json!([{ "op": "replace", "path": "/id", "value": "x" }]),
        json!([{ "op": "replace", "path": "/traits/email", "value": 5 }]),
        json!({ "op": "nope" }),
    ] {
        let r = app.admin_patch(&url, &bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = app.admin_patch(&url, &json!([{ "op": "test", "path": "/traits/email", "value": "someone-else@example.com" }])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn list_pages_with_link_headers(app: TestApp) {
    let mut ids = vec![];
    for n in 0..5 {
        let i: Value = app
            .create_identity(json!({ "traits": { "email": unique_email(&format!("list{n}")) } }))
            .await
            .json()
            .await
            .unwrap();
        ids.push(i["id"].as_str().unwrap().to_string());
    }
    let mut url = app.admin_url("/admin/identities?page_size=2");
    let mut seen = vec![];
    loop {
        let r = app.get(&url).await;
        assert_eq!(r.status(), StatusCode::OK);
        let link = r.headers()["link"].to_str().unwrap().to_string();
        assert!(link.contains("rel=\"first\""));
        let page: Vec<Value> = r.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match link.split(", ").find(|l| l.ends_with("rel=\"next\"")) {
            Some(next) => {
                url = next
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            }
            None => break,
        }
    }
    ids.sort();
    assert_eq!(seen, ids);
    let only = app
        .get_list(&app.admin_url(&format!(
            "/admin/identities?credentials_identifier={}",
            "nobody@example.com"
        )))
        .await;
    assert!(only.is_empty());
}

async fn delete_removes_the_identity_and_its_sessions(app: TestApp) {
    let email = unique_email("del");
    let (id, token) = app.register(&email, PASSWORD).await;
    let url = app.admin_url(&format!("/admin/identities/{id}"));
    assert_eq!(
        app.admin_delete(&url).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.whoami_status(&token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&url).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.admin_delete(&url).await.status(), StatusCode::NOT_FOUND);
    // The address is free for a new account.
    app.register(&email, PASSWORD).await;
}

async fn batch_create_reports_each_item(app: TestApp) {
    let taken = unique_email("taken");
    app.register(&taken, PASSWORD).await;
    let fresh = unique_email("fresh");
    let r = app.admin_patch("/admin/identities", &json!({ "identities": [
            { "create": { "schema_id": "default", "traits": { "email": fresh } }, "patch_id": "11111111-1111-4111-8111-111111111111" },
            { "create": { "schema_id": "default", "traits": { "email": taken } } },
            { "create": { "schema_id": "default", "traits": { } } }
        ] })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    let items = out["identities"].as_array().unwrap();
    assert_eq!(items[0]["action"], "create");
    assert_eq!(items[0]["patch_id"], "11111111-1111-4111-8111-111111111111");
    assert_eq!(items[1]["action"], "error");
    assert_eq!(items[1]["error"]["code"], 409);
    assert_eq!(items[2]["error"]["code"], 400);
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({ "create": { "traits": { "email": "x@example.com" } } }))
        .collect();
    let r = app
        .admin_patch("/admin/identities", &json!({ "identities": too_many }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn schemas_are_served_by_id_and_by_schema_url(app: TestApp) {
    let list = app.get_list("/schemas").await;
    assert_eq!(list[0]["id"], "default");
    assert_eq!(list[0]["schema"]["properties"]["traits"]["type"], "object");
    assert_eq!(app.get("/schemas/default").await.status(), StatusCode::OK);
    let i: Value = app
        .create_identity(json!({ "traits": { "email": unique_email("su") } }))
        .await
        .json()
        .await
        .unwrap();
    let r = app.get(i["schema_url"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get("/schemas/unknown").await.status(),
        StatusCode::NOT_FOUND
    );
}
