//! The core's error vocabulary: what went wrong, in domain terms. No HTTP status, error id or
//! envelope lives here; each face maps these once (the Kratos envelope and browser redirects
//! in the server's `error.rs` and `browser.rs`, simplejwt in `tokens.rs`, Clerk in `clerk.rs`).
//!
//! `Display` is the human reason, the sentence Kratos puts in `error.reason`.

use crate::flow::{Flow, FlowKind};
use crate::identity::Identity;
use crate::password::HashError;
use crate::store::StoreError;
use crate::ui::UiText;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something the rules do not allow.
    #[error("{reason}")]
    BadRequest { reason: String },
    /// An identity document does not match its schema; `errors` names each offending trait.
    #[error("{reason}")]
    IdentityInvalid {
        reason: String,
        errors: Vec<(Option<String>, UiText)>,
    },
    #[error("{reason}")]
    NotFound { reason: String },
    /// A unique value (an identifier, an id) is taken.
    #[error("{reason}")]
    Conflict { reason: String },
    /// No valid session came with the request.
    #[error("No valid session credentials found in the request.")]
    SessionInactive,
    /// The flow cannot be started or completed with a session.
    #[error("A valid session was detected and thus this flow cannot be started or completed. To sign in again, use `?refresh=true` on a login flow.")]
    AlreadySignedIn,
    /// The flow belongs to another identity.
    #[error("The flow was initiated by someone else.")]
    IdentityMismatch,
    /// The anti-CSRF check failed. Flows say why (`hint`); a hosted page's own form has none.
    #[error("{}", csrf_reason(.hint))]
    CsrfViolation { hint: Option<&'static str> },
    /// The flow expired `since` ago. A submit gets a `replacement` flow; a browser reading it
    /// is told where to start over (`restart_url`).
    #[error("The self-service flow has expired. Please retry the flow.")]
    FlowExpired {
        kind: FlowKind,
        since: Duration,
        expired_at: OffsetDateTime,
        replacement: Option<Uuid>,
        restart_url: Option<String>,
    },
    /// The session is too old for this change; re-authenticate at `redirect_browser_to`.
    #[error("The login session is too old and thus not allowed to update these fields. Please re-authenticate.")]
    RefreshRequired { redirect_browser_to: String },
    /// The session lacks the second factor its identity has (`required_aal:
    /// highest_available`): sign in with it at `redirect_browser_to`.
    #[error("An active session was found but it does not fulfill the requested Authenticator Assurance Level. Please verify yourself with a second factor to resolve this issue.")]
    Aal2Required { redirect_browser_to: String },
    /// A second factor was asked for (`aal=aal2`) without a session to add it to.
    #[error("You can not requested a higher AAL (AAL2/AAL3) without an active session.")]
    Aal1Required,
    /// The identity has no second factor, so its session cannot be raised.
    #[error(
        "The session already has the highest Authenticator Assurance Level its identity can have."
    )]
    AalAlreadyFulfilled,
    /// A browser must navigate to `redirect_browser_to` itself (a JSON request of a browser
    /// flow that continues elsewhere, such as the second step of a sign-in).
    #[error(
        "In order to complete this flow please redirect the browser to: {redirect_browser_to}"
    )]
    BrowserLocationChangeRequired { redirect_browser_to: String },
    /// The `require_verified_address` hook refused a sign-in: a verification flow was started
    /// (its code sent); `continue_with` points at it.
    #[error("Your account's email or phone address are not verified yet. Please check your email or phone inbox or re-request verification.")]
    AddressNotVerified {
        continue_with: Vec<serde_json::Value>,
    },
    /// The flow kind is switched off in the configuration.
    #[error("{}", disabled_reason(*.kind))]
    FlowDisabled { kind: FlowKind },
    /// `return_to` is not on the allow-list.
    #[error("Requested return_to URL {url:?} is not allowed.")]
    ReturnToForbidden { url: String },
    /// A logout link of another session.
    #[error("Unable to log out because the logout token in the URL query does not match the session cookie.")]
    LogoutTokenMismatch,
    /// An admin request without a configured admin API key (`serve.admin.api_keys`), or
    /// with one that is not.
    #[error("{}", admin_key_reason(*.missing))]
    AdminKeyRefused { missing: bool },
    /// A refusal of the simplejwt token face, in its own vocabulary.
    /// Too many attempts from this client or on this account: try again after `retry_after`
    /// seconds (429 with `Retry-After`).
    #[error("Too many attempts. Please wait {retry_after} seconds and try again.")]
    RateLimited { retry_after: u64 },
    /// The server is at capacity (the password-hashing queue is full): 503 with `Retry-After`.
    #[error("The server is busy. Please try again in {retry_after} seconds.")]
    Busy { retry_after: u64 },
    /// A flow's web hook refused it before there was a flow to carry its messages (a
    /// `before` hook); the reason is the receiver's own words.
    #[error("{reason}")]
    HookRefused { reason: String },
    /// A flow's web hook could not be reached or answered with an error (the cause is logged).
    #[error("A web hook of this flow could not complete. Please try again later.")]
    HookFailed,
    #[error("token error: {0:?}")]
    Token(TokenError),
    /// A failure of ours (database, keys); the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the simplejwt face refuses a request.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenError {
    /// These fields are required.
    Missing(Vec<String>),
    /// Wrong identifier or password, or an inactive account.
    BadCredentials,
    /// The account has a second factor and the request did not bring a code of it (`otp`).
    SecondFactorRequired,
    /// The `otp` is wrong or used.
    SecondFactorInvalid,
    /// The token fails a check; simplejwt's message.
    Invalid(&'static str),
    /// The token's identity or session is gone or inactive.
    NoActiveAccount,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Why a submit did not complete.
#[derive(Debug)]
pub enum SubmitError {
    /// The flow now carries messages for the user (bad input, wrong password …): show it again.
    /// Settings flows come with their identity.
    FlowInvalid {
        flow: Box<Flow>,
        identity: Option<Box<Identity>>,
    },
    /// Anything else: the request, the flow or the session was refused.
    Refused(Error),
}

impl From<Error> for SubmitError {
    fn from(e: Error) -> Self {
        SubmitError::Refused(e)
    }
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Refused(e.into())
    }
}

impl From<HashError> for SubmitError {
    fn from(e: HashError) -> Self {
        SubmitError::Refused(e.into())
    }
}

pub type SubmitResult<T> = std::result::Result<T, SubmitError>;

impl Error {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Error::BadRequest {
            reason: reason.into(),
        }
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Error::NotFound {
            reason: reason.into(),
        }
    }
    pub fn conflict(reason: impl Into<String>) -> Self {
        Error::Conflict {
            reason: reason.into(),
        }
    }
    pub fn session_inactive() -> Self {
        Error::SessionInactive
    }
}

fn csrf_reason(hint: &Option<&'static str>) -> &'static str {
    match hint {
        Some(_) => "Please retry the flow and optionally clear your cookies. The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF) which could cause account takeover, leaking personal information, and other serious security issues.",
        None => "The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF). Please reload the page and try again.",
    }
}

fn admin_key_reason(missing: bool) -> &'static str {
    if missing {
        "The admin API requires an API key: send it as Authorization: Bearer <key>."
    } else {
        "The admin API key is not valid."
    }
}

fn disabled_reason(kind: FlowKind) -> String {
    let name = kind.as_str();
    let mut chars = name.chars();
    let title: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    format!("{title} is not allowed because it was disabled.")
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        Error::Token(e)
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
            HashError::Busy => Error::Busy { retry_after: 1 },
            HashError::Internal(m) => Error::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_kratos_writes_them() {
        let disabled = Error::FlowDisabled {
            kind: FlowKind::Registration,
        };
        assert_eq!(
            disabled.to_string(),
            "Registration is not allowed because it was disabled."
        );
        let forbidden = Error::ReturnToForbidden {
            url: "https://evil.example/".into(),
        };
        assert_eq!(
            forbidden.to_string(),
            "Requested return_to URL \"https://evil.example/\" is not allowed."
        );
    }
}
