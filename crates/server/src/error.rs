//! Maps core errors to the Kratos (herodot) error envelope: the only place that picks status
//! codes for the Kratos faces. Internal causes are logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::admin::error_body;
use portcullis_core::Error;
use serde_json::Value;

pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<portcullis_core::store::StoreError> for ApiError {
    fn from(e: portcullis_core::store::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl ApiError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ApiError(Error::bad_request(reason))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            Error::FlowInvalid(flow) => (StatusCode::BAD_REQUEST, Json(*flow)).into_response(),
            Error::Token(_) => {
                let body = serde_json::json!({ "error": error_body(&Error::session_inactive()) });
                (StatusCode::UNAUTHORIZED, Json(body)).into_response()
            }
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                let body =
                    serde_json::json!({ "error": error_body(&Error::Internal(String::new())) });
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
            Error::Api {
                code,
                id,
                reason,
                details,
                extra,
            } => {
                let inner = Error::Api {
                    code,
                    id,
                    reason,
                    details,
                    extra: None,
                };
                let mut body = serde_json::json!({ "error": error_body(&inner) });
                if let (Some(Value::Object(extra)), Some(obj)) = (extra, body.as_object_mut()) {
                    obj.extend(extra);
                }
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, Json(body)).into_response()
            }
        }
    }
}
