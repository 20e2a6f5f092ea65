//! `<UserProfile/>`'s picture: `POST /v1/me/profile_image` (the `file` of a multipart body;
//! answered with Clerk's `Image`) and `DELETE` (clerk-js sends `POST …?_method=DELETE`; it
//! removes whatever is stored, so it answers 200 even when there was nothing).
//! Reading the upload is `profile_images.rs`'s, what it becomes the core's.

use super::client;
use super::me::{method, Me};
use super::{clerk_error, field_error};
use crate::extract::CallerCtx;
use crate::profile_images::{image_json, read_upload, UploadError};
use crate::AppState;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::profile_image::ImageChange;
use serde_json::json;
use std::collections::HashMap;

/// `POST /v1/me/profile_image`, or `?_method=DELETE`.
pub(super) async fn upload(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    Query(q): Query<HashMap<String, String>>,
    CallerCtx(caller): CallerCtx,
    req: Request,
) -> Response {
    if method(&q) == "DELETE" {
        return remove(State(st), headers, m, CallerCtx(caller)).await;
    }
    // A place among the uploads being worked on before the body is read (else 503).
    let slot = match st.core.image_slot() {
        Ok(slot) => slot,
        Err(e) => return super::core_error(e),
    };
    let bytes = match read_upload(req).await {
        Ok(bytes) => bytes,
        Err(UploadError::TooLarge) => {
            return clerk_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_body_too_large",
                "The image is too large.",
                &UploadError::TooLarge.message(),
            )
        }
        Err(e) => {
            return field_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_missing",
                "An image is required.",
                &e.message(),
                "file",
            )
        }
    };
    let now = st.core.now();
    let change = st
        .core
        .clerk_set_own_image(
            &m.session,
            &m.identity,
            Some((slot, bytes)),
            &caller.origin(),
            now,
        )
        .await;
    match change {
        Ok(ImageChange::Saved {
            image: Some(image), ..
        }) => {
            let body = image_json(&st, &image);
            client::answer(&st, &headers, m.client, body).await
        }
        Ok(ImageChange::Refused(why)) => {
            let text = why.text();
            field_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_format_invalid",
                &text.text,
                &text.text,
                "file",
            )
        }
        Ok(ImageChange::Saved { image: None, .. }) => super::core_error(
            portcullis_core::Error::Internal("an upload saved no image".into()),
        ),
        Err(e) => super::core_error(e),
    }
}

/// `DELETE /v1/me/profile_image`.
pub(super) async fn remove(
    State(st): State<AppState>,
    headers: HeaderMap,
    m: Me,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let now = st.core.now();
    match st
        .core
        .clerk_set_own_image(&m.session, &m.identity, None, &caller.origin(), now)
        .await
    {
        Ok(_) => {
            let deleted = json!({ "object": "image", "id": null, "deleted": true });
            client::answer(&st, &headers, m.client, deleted).await
        }
        Err(e) => super::core_error(e),
    }
}
