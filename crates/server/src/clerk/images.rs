//! `POST /v1/users/{id}/profile_image` (the `file` of a multipart body) and `DELETE` (of
//! whatever is stored, so 200 even when there was nothing): the user's picture set by a
//! backend, answered with the `User`. Reading the upload is
//! `profile_images.rs`'s, what it becomes the core's.

use super::{cerr, load, user, CResult};
use crate::extract::Acting;
use crate::profile_images::{read_upload, UploadError};
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::profile_image::ImageChange;
use serde_json::Value;

pub(super) async fn set(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
    req: Request,
) -> CResult<Json<Value>> {
    let identity = load(&st, &id).await?;
    let slot = st.core.image_slot()?;
    let bytes = read_upload(req).await.map_err(|e| match e {
        UploadError::TooLarge => cerr(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_body_too_large",
            e.message(),
        ),
        _ => cerr(StatusCode::BAD_REQUEST, "form_param_missing", e.message()),
    })?;
    let now = st.core.now();
    match st
        .core
        .set_profile_image(&identity, Some((slot, bytes)), &by, now)
        .await?
    {
        ImageChange::Saved { identity, .. } => Ok(Json(user(&st, &identity))),
        ImageChange::Refused(why) => Err(cerr(
            StatusCode::BAD_REQUEST,
            "form_param_format_invalid",
            why.text().text,
        )),
    }
}

pub(super) async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> CResult<Json<Value>> {
    let identity = load(&st, &id).await?;
    let now = st.core.now();
    match st.core.set_profile_image(&identity, None, &by, now).await? {
        ImageChange::Saved { identity, .. } => Ok(Json(user(&st, &identity))),
        ImageChange::Refused(why) => Err(cerr(
            StatusCode::BAD_REQUEST,
            "form_param_invalid",
            why.text().text,
        )),
    }
}
