//! Profile images over HTTP: reading an upload (what both Clerk faces take) and serving the
//! stored images at `GET /clerk/images/{id}` on the public port. What an image becomes is the
//! core's (`profile_image.rs`).

use crate::AppState;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use portcullis_core::profile_image::{ProfileImage, MAX_UPLOAD_BYTES};
use serde_json::{json, Value};

/// What an upload route's body may hold: the image and the multipart framing around it.
pub(crate) fn upload_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)
}

pub fn router() -> Router<AppState> {
    Router::new().route("/clerk/images/{id}", get(serve))
}

/// Why no image could be read from a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UploadError {
    /// No `file` field (or an empty body).
    Missing,
    TooLarge,
    /// Not multipart as its `Content-Type` says, or cut short.
    Malformed,
}

impl UploadError {
    pub(crate) fn message(&self) -> String {
        match self {
            UploadError::Missing => {
                "Send the image as the `file` field of a multipart/form-data body.".into()
            }
            UploadError::TooLarge => format!(
                "The image is larger than {} MB.",
                MAX_UPLOAD_BYTES / (1024 * 1024)
            ),
            UploadError::Malformed => "The multipart/form-data body could not be read.".into(),
        }
    }
}

/// The uploaded bytes: the `file` field of a `multipart/form-data` body (clerk-js's and the
/// Clerk SDKs'), or a whole `application/octet-stream` body.
pub(crate) async fn read_upload(req: Request) -> Result<Vec<u8>, UploadError> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !kind.starts_with("multipart/form-data") {
        let body = axum::body::to_bytes(req.into_body(), MAX_UPLOAD_BYTES + 1)
            .await
            .map_err(|_| UploadError::TooLarge)?;
        return match body.len() {
            0 => Err(UploadError::Missing),
            n if n > MAX_UPLOAD_BYTES => Err(UploadError::TooLarge),
            _ => Ok(Vec::from(body)),
        };
    }
    let too_large =
        |e: &axum::extract::multipart::MultipartError| e.status() == StatusCode::PAYLOAD_TOO_LARGE;
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|_| UploadError::Malformed)?;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Err(UploadError::Missing),
            Err(e) if too_large(&e) => return Err(UploadError::TooLarge),
            Err(_) => return Err(UploadError::Malformed),
        };
        if field.name() != Some("file") {
            continue;
        }
        return match field.bytes().await {
            Ok(b) if b.is_empty() => Err(UploadError::Missing),
            Ok(b) if b.len() > MAX_UPLOAD_BYTES => Err(UploadError::TooLarge),
            Ok(b) => Ok(Vec::from(b)),
            Err(e) if too_large(&e) => Err(UploadError::TooLarge),
            Err(_) => Err(UploadError::Malformed),
        };
    }
}

/// Clerk's `Image` object for an image just stored.
pub(crate) fn image_json(st: &AppState, image: &ProfileImage) -> Value {
    let base = &st.core.config().webhooks.clerk_mapping.image_base;
    json!({
        "object": "image",
        "id": image.id,
        "name": image.id,
        "public_url": format!("{base}{}", image.id),
    })
}

/// `GET /clerk/images/{id}`: the image, to anyone with its URL (as Clerk's image host serves
/// them); a new upload gets a new id.
async fn serve(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let image = match st.core.profile_image(&id).await {
        Ok(Some(image)) => image,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading a profile image failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let kind = match image.content_type.as_str() {
        "image/png" => "image/png",
        _ => "image/jpeg",
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
        (
            header::CACHE_CONTROL,
            // A day: a removed picture (or account) lingers in caches no longer than that.
            HeaderValue::from_static("public, max-age=86400"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ),
    ];
    (headers, image.bytes).into_response()
}
