//! Profile images: uploaded from `<UserProfile/>` (`/v1/me/profile_image`) and by a backend
//! (`/v1/users/{id}/profile_image`), encoded again, served at `image_url` on the public port,
//! carried by the `User` of every face and its `user.updated` event, and removed.

use crate::clerk_frontend::{fapi, frontend, APP};
use crate::clerk_me::signed_in;
use crate::clerk_me_factors::me;
use crate::helpers::{unique_email, TestApp, PASSWORD};
use crate::webhooks::{endpoint, Receiver};
use image::{DynamicImage, ImageFormat};
use portcullis_core::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Cursor;

crate::on_every_backend! {
    a_picture_from_the_profile_is_encoded_again_served_and_removed with keyed,
    bad_uploads_get_clerk_errors_and_change_nothing with keyed,
    a_backend_sets_and_removes_a_users_picture with keyed,
}

const KEY: &str = "sk_test_portcullis_images";

fn keyed(c: &mut Config) {
    frontend(c);
    c.clerk.secret_keys = vec![KEY.into()];
}

/// A `width` × `height` picture in `format`, one colour.
fn picture(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        width,
        height,
        image::Rgb([20, 120, 220]),
    ));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A multipart/form-data body with one file field, as clerk-js's `FormData` sends it.
fn multipart(field: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----portcullis-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"me.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    app: &TestApp,
    cookie: Option<&str>,
    field: &str,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let (kind, body) = multipart(field, bytes);
    let mut req = app
        .request(Method::POST, "/v1/me/profile_image")
        .header("origin", APP)
        .header("content-type", kind)
        .body(body);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("__client={c}"));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn bapi(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.http
        .request(method, app.admin_url(&format!("/v1{path}")))
        .bearer_auth(KEY)
}

/// Fetches `url` (absolute, on the public port).
async fn fetch(app: &TestApp, url: &str) -> reqwest::Response {
    app.http.get(url).send().await.unwrap()
}

async fn a_picture_from_the_profile_is_encoded_again_served_and_removed(app: TestApp) {
    let (rx, hook) = Receiver::start().await;
    endpoint(&app, &hook, json!({ "events": ["user.updated"] })).await;
    let email = unique_email("picture");
    let (identity, _) = app.register(&email, PASSWORD).await;
    let (cookie, _) = signed_in(&app, &email, PASSWORD).await;
    assert_eq!(me(&app, &cookie).await["has_image"], false);

    let (st, done) = upload(
        &app,
        Some(&cookie),
        "file",
        &picture(1000, 600, ImageFormat::Png),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let image = &done["response"];
    assert_eq!(image["object"], "image");
    let url = image["public_url"].as_str().unwrap().to_string();
    let id = image["id"].as_str().unwrap();
    assert_eq!(url, app.url(&format!("/clerk/images/{id}")));
    // The client comes back with the user as now saved.
    let user = &done["client"]["sessions"][0]["user"];
    assert_eq!(user["image_url"], json!(url));
    assert_eq!(user["has_image"], true);
    assert_eq!(
        done["client"]["sessions"][0]["public_user_data"]["has_image"],
        true
    );

    // Served to anyone with the URL: shrunk to fit 512 × 512, a JPEG (no transparency),
    // with headers that keep it an image.
    let r = fetch(&app, &url).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(h["cache-control"], "public, max-age=86400");
    let served =
        image::load_from_memory_with_format(&r.bytes().await.unwrap(), ImageFormat::Jpeg).unwrap();
    assert_eq!((served.width(), served.height()), (512, 307));

    // Every face's User names it, and user.updated carried it.
    assert_eq!(me(&app, &cookie).await["image_url"], json!(url));
    let clerk_id = format!("user_{}", identity.replace('-', ""));
    let backend: Value = bapi(&app, Method::GET, &format!("/users/{clerk_id}"))
        .await
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(backend["image_url"], json!(url));
    assert_eq!(backend["profile_image_url"], json!(url));
    assert_eq!(backend["has_image"], true);
    let got = rx.wait_for(1).await;
    assert!(
        got.iter()
            .any(|e| e["type"] == "user.updated" && e["data"]["image_url"] == json!(url)),
        "{got:?}"
    );
    // Not in what the Backend API shows of the private metadata.
    assert_eq!(backend["private_metadata"], json!({}));

    // A new picture has a new URL; the old one is gone.
    let (st, again) = upload(
        &app,
        Some(&cookie),
        "file",
        &picture(64, 64, ImageFormat::Gif),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    let second = again["response"]["public_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, url);
    assert_eq!(fetch(&app, &url).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(fetch(&app, &second).await.status(), StatusCode::OK);

    // Removed (clerk-js sends DELETE as POST ?_method=DELETE).
    let r = app
        .request(Method::POST, "/v1/me/profile_image?_method=DELETE")
        .header("origin", APP)
        .header("cookie", format!("__client={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let removed: Value = r.json().await.unwrap();
    assert_eq!(removed["response"]["deleted"], true);
    let user = me(&app, &cookie).await;
    assert_eq!(
        (user["has_image"].clone(), user["image_url"].clone()),
        (json!(false), json!(""))
    );
    assert_eq!(fetch(&app, &second).await.status(), StatusCode::NOT_FOUND);
    // Removing again removes nothing and answers alike.
    let (st, _, _) = fapi(
        &app,
        "/v1/me/profile_image?_method=DELETE",
        &[],
        Some(&cookie),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

async fn bad_uploads_get_clerk_errors_and_change_nothing(app: TestApp) {
    let email = unique_email("bad-picture");
    app.register(&email, PASSWORD).await;
    let (cookie, _) = signed_in(&app, &email, PASSWORD).await;
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#;
    let png = picture(40, 40, ImageFormat::Png);
    let cases: [(&str, &[u8], StatusCode, &str); 4] = [
        (
            "file",
            svg,
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_format_invalid",
        ),
        (
            "file",
            &png[..png.len() / 2],
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_format_invalid",
        ),
        (
            "picture",
            &png,
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
        ),
        (
            "file",
            b"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
        ),
    ];
    for (field, bytes, status, code) in cases {
        let (st, body) = upload(&app, Some(&cookie), field, bytes).await;
        assert_eq!(
            (st, body["errors"][0]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(body["errors"][0]["meta"]["param_name"], "file", "{body}");
    }
    // Larger than Clerk's 10 MB.
    let (st, body) = upload(
        &app,
        Some(&cookie),
        "file",
        &vec![0u8; 10 * 1024 * 1024 + 1],
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errors"][0]["code"], "request_body_too_large");
    // A body that says multipart and is not.
    let r = app
        .request(Method::POST, "/v1/me/profile_image")
        .header("origin", APP)
        .header("cookie", format!("__client={cookie}"))
        .header("content-type", "multipart/form-data; boundary=nothing-here")
        .body("just text")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Signed out, and from another site's page.
    let (st, body) = upload(&app, None, "file", &png).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (kind, body) = multipart("file", &png);
    let r = app
        .request(Method::POST, "/v1/me/profile_image")
        .header("origin", "https://evil.example")
        .header("cookie", format!("__client={cookie}"))
        .header("content-type", kind)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Nothing was stored.
    assert_eq!(me(&app, &cookie).await["has_image"], false);
    // Ids that are not ours, or nobody's.
    for id in [
        "img_00000000000000000000000000000000",
        "..%2F..%2Fetc%2Fpasswd",
        "x",
    ] {
        assert_eq!(
            app.get(&format!("/clerk/images/{id}")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

async fn a_backend_sets_and_removes_a_users_picture(app: TestApp) {
    let email = unique_email("backend-picture");
    let (identity, _) = app.register(&email, PASSWORD).await;
    let clerk_id = format!("user_{}", identity.replace('-', ""));
    let path = format!("/users/{clerk_id}/profile_image");
    let send = |bytes: Vec<u8>, field: &'static str| {
        let app = &app;
        let path = path.clone();
        async move {
            let (kind, body) = multipart(field, &bytes);
            let r = bapi(app, Method::POST, &path)
                .await
                .header("content-type", kind)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // A picture with transparency stays a PNG.
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        100,
        50,
        image::Rgba([1, 2, 3, 4]),
    ))
    .write_to(&mut out, ImageFormat::WebP)
    .unwrap();
    let (st, user) = send(out.into_inner(), "file").await;
    assert_eq!(st, StatusCode::OK, "{user}");
    assert_eq!(user["object"], "user");
    assert_eq!(user["has_image"], true);
    let url = user["image_url"].as_str().unwrap().to_string();
    let r = fetch(&app, &url).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    let served = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (served.width(), served.height(), served.color().has_alpha()),
        (100, 50, true)
    );
    // The Kratos face sees the same identity (its admin metadata names the image).
    let (_, kratos) = app
        .admin_get_json(&format!("/admin/identities/{identity}"))
        .await;
    assert_eq!(
        kratos["metadata_admin"]["clerk"]["image"],
        json!(url.rsplit('/').next().unwrap())
    );

    // Served only while the identity names it: an admin's metadata written over it (from an
    // older read, say) leaves no picture served that no User shows.
    let patched = app
        .admin_patch(
            &format!("/admin/identities/{identity}"),
            &json!([{ "op": "replace", "path": "/metadata_admin", "value": { "team": "blue" } }]),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(fetch(&app, &url).await.status(), StatusCode::NOT_FOUND);
    let (st, user) = send(picture(8, 8, ImageFormat::Png), "file").await;
    assert_eq!(st, StatusCode::OK, "{user}");
    let url = user["image_url"].as_str().unwrap().to_string();
    assert_eq!(user["private_metadata"], json!({ "team": "blue" }));

    // Not an image, and an unknown user: Clerk's errors.
    let (st, body) = send(b"GIF89a but not really".to_vec(), "file").await;
    assert_eq!(
        (st, body["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("form_param_format_invalid"))
    );
    let (st, body) = send(picture(8, 8, ImageFormat::Png), "avatar").await;
    assert_eq!(
        (st, body["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("form_param_missing"))
    );
    let (kind, body) = multipart("file", &picture(8, 8, ImageFormat::Png));
    let r = bapi(
        &app,
        Method::POST,
        "/users/user_00000000000000000000000000000000/profile_image",
    )
    .await
    .header("content-type", kind)
    .body(body)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(fetch(&app, &url).await.status(), StatusCode::OK);

    // Removed; a second removal removes nothing and answers alike.
    let r = bapi(&app, Method::DELETE, &path)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await.unwrap();
    assert_eq!(
        (user["has_image"].clone(), user["image_url"].clone()),
        (json!(false), json!(""))
    );
    assert_eq!(fetch(&app, &url).await.status(), StatusCode::NOT_FOUND);
    let r = bapi(&app, Method::DELETE, &path)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A deleted user's picture goes with it.
    let (_, user) = send(picture(8, 8, ImageFormat::Jpeg), "file").await;
    let url = user["image_url"].as_str().unwrap().to_string();
    assert_eq!(
        app.admin_delete(&format!("/admin/identities/{identity}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(fetch(&app, &url).await.status(), StatusCode::NOT_FOUND);
}
