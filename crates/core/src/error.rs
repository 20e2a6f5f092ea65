//! The core's error type. The HTTP layer maps it to the Kratos error envelope in one place.

use crate::password::HashError;
use crate::store::StoreError;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flow submit failed validation: the body is the flow (with messages), status 400.
    #[error("flow validation failed")]
    FlowInvalid(Box<Value>),
    /// A Kratos (herodot) error.
    #[error("{reason}")]
    Api {
        code: u16,
        id: Option<&'static str>,
        reason: String,
        details: Option<Value>,
        /// Top-level siblings of `error` (`use_flow_id`, `redirect_browser_to`, …).
        extra: Option<Value>,
    },
    /// An error of the simplejwt token face (mapped to its own body format there).
    #[error("token error: {0:?}")]
    Token(crate::tokens::TokenError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn api(code: u16, id: Option<&'static str>, reason: impl Into<String>) -> Self {
        Error::Api {
            code,
            id,
            reason: reason.into(),
            details: None,
            extra: None,
        }
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::api(400, None, reason)
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::api(404, None, reason)
    }
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::api(409, None, reason)
    }
    pub fn session_inactive() -> Self {
        Self::api(
            401,
            Some("session_inactive"),
            "No valid session credentials found in the request.",
        )
    }
    pub fn with_extra(self, extra: Value) -> Self {
        match self {
            Error::Api {
                code,
                id,
                reason,
                details,
                ..
            } => Error::Api {
                code,
                id,
                reason,
                details,
                extra: Some(extra),
            },
            other => other,
        }
    }
    pub fn with_details(self, d: Value) -> Self {
        match self {
            Error::Api {
                code,
                id,
                reason,
                extra,
                ..
            } => Error::Api {
                code,
                id,
                reason,
                details: Some(d),
                extra,
            },
            other => other,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Error::conflict(format!(
                "This identity conflicts with another identity that already exists ({what})."
            )),
            StoreError::NotFound => Error::not_found("Unable to locate the resource"),
            StoreError::Stale => Error::conflict(
                "The identity was changed by another request; reload it and try again.",
            ),
            StoreError::Database(m) => Error::Internal(m),
        }
    }
}

impl From<HashError> for Error {
    fn from(e: HashError) -> Self {
        match e {
            HashError::UnsupportedFormat => Error::bad_request(e.to_string()),
            HashError::Busy => Error::api(503, None, e.to_string()),
            HashError::Internal(m) => Error::Internal(m),
        }
    }
}
