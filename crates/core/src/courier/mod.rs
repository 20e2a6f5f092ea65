//! Outgoing messages: what the courier sends, composed by the core from a template and
//! queued with the write that causes it (through [`crate::store::Effects::message`]), so a
//! message exists if and only if its cause was committed. The courier worker in the server
//! delivers queued messages and records every attempt.
//!
//! The rooms: this file is the model (a message, its dispatches, their JSON); `templates`,
//! `gotmpl` and `builtin` render it; `queue` is what the worker and the admin API ask of the
//! queue (claim, record an attempt with its backoff, list).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Which message a template renders. The wire names are Kratos's `template_type`s where
/// Kratos has the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// A recovery code for an address that has an account.
    RecoveryCodeValid,
    /// "Someone asked to recover an account at this address, and there is none."
    RecoveryCodeInvalid,
    VerificationCodeValid,
    VerificationCodeInvalid,
    /// A sign-in code (passwordless login, or an emailed second factor).
    LoginCodeValid,
    /// A sign-up code (registration by code).
    RegistrationCodeValid,
    /// "Your password was changed."
    PasswordChanged,
    /// "A new sign-in to your account."
    NewSignIn,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 8] = [
        TemplateKind::RecoveryCodeValid,
        TemplateKind::RecoveryCodeInvalid,
        TemplateKind::VerificationCodeValid,
        TemplateKind::VerificationCodeInvalid,
        TemplateKind::LoginCodeValid,
        TemplateKind::RegistrationCodeValid,
        TemplateKind::PasswordChanged,
        TemplateKind::NewSignIn,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TemplateKind::RecoveryCodeValid => "recovery_code_valid",
            TemplateKind::RecoveryCodeInvalid => "recovery_code_invalid",
            TemplateKind::VerificationCodeValid => "verification_code_valid",
            TemplateKind::VerificationCodeInvalid => "verification_code_invalid",
            TemplateKind::LoginCodeValid => "login_code_valid",
            TemplateKind::RegistrationCodeValid => "registration_code_valid",
            TemplateKind::PasswordChanged => "password_changed",
            TemplateKind::NewSignIn => "new_sign_in",
        }
    }

    pub fn parse(s: &str) -> Option<TemplateKind> {
        TemplateKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The language a message is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    Ko,
}

impl Locale {
    pub const fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Ko => "ko",
        }
    }

    /// The best match for a language tag or an `Accept-Language` value (`ko-KR,ko;q=0.9,…`):
    /// Korean if it is the first language named, else English.
    pub fn from_tag(tag: &str) -> Locale {
        let first = tag.split(',').next().unwrap_or("").trim();
        let primary = first.split([';', '-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("ko") {
            Locale::Ko
        } else {
            Locale::En
        }
    }
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Processing,
    Sent,
    Abandoned,
}

impl MessageStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Processing => "processing",
            MessageStatus::Sent => "sent",
            MessageStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        [
            MessageStatus::Queued,
            MessageStatus::Processing,
            MessageStatus::Sent,
            MessageStatus::Abandoned,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One outgoing message, rendered when it is queued (what the admin API shows is what is
/// sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub status: MessageStatus,
    /// `email` (SMS comes later).
    pub channel: String,
    pub recipient: String,
    pub template: TemplateKind,
    pub locale: Locale,
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    pub html_body: String,
    /// The identity the message is about, when there is one.
    pub identity_id: Option<Uuid>,
    pub send_count: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What a template is rendered with: the values it may name (`{{ .RecoveryCode }}`, …).
pub type TemplateModel = Value;

mod builtin;
mod gotmpl;
mod queue;
mod templates;

pub use queue::{retry_delay, Delivery, MessageQuery, MAX_RETRY_DELAY};
pub use templates::{Rendered, Templates};

/// One attempt to deliver a message (Kratos's `messageDispatch`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub id: Uuid,
    pub message_id: Uuid,
    /// `success` or `failed`.
    pub status: DispatchStatus,
    /// Why the attempt failed (the SMTP error), in Kratos's herodot shape on the wire.
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchStatus {
    Success,
    Failed,
}

impl DispatchStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DispatchStatus::Success => "success",
            DispatchStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DispatchStatus> {
        match s {
            "success" => Some(DispatchStatus::Success),
            "failed" => Some(DispatchStatus::Failed),
            _ => None,
        }
    }
}

impl Dispatch {
    /// Kratos's `messageDispatch`: `error` is a herodot error object, as Kratos records it.
    pub fn to_api_json(&self) -> Value {
        let error = self.error.as_ref().map(
            |e| serde_json::json!({ "code": 500, "status": "Internal Server Error", "message": e }),
        );
        serde_json::json!({
            "id": self.id,
            "message_id": self.message_id,
            "status": self.status.as_str(),
            "error": error,
            "created_at": crate::identity::rfc3339(self.created_at),
            "updated_at": crate::identity::rfc3339(self.updated_at),
        })
    }
}

impl Message {
    /// Kratos's `message` (the admin API's shape), with `dispatches` when they were read.
    pub fn to_api_json(&self, dispatches: Option<&[Dispatch]>) -> Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "status": self.status.as_str(),
            "type": self.channel,
            "channel": self.channel,
            "recipient": self.recipient,
            "subject": self.subject,
            "body": self.body,
            "template_type": self.template.as_str(),
            "send_count": self.send_count,
            "created_at": crate::identity::rfc3339(self.created_at),
            "updated_at": crate::identity::rfc3339(self.updated_at),
        });
        if let (Some(d), Some(o)) = (dispatches, v.as_object_mut()) {
            o.insert(
                "dispatches".into(),
                Value::Array(d.iter().map(Dispatch::to_api_json).collect()),
            );
        }
        v
    }

    /// The payload of the `email.created` event the store appends with the message: the
    /// admin API's shape plus the HTML body and the locale (Clerk's `Email` has both bodies).
    pub fn event_payload(&self) -> Value {
        let mut m = self.to_api_json(None);
        if let Some(o) = m.as_object_mut() {
            o.insert("html_body".into(), Value::String(self.html_body.clone()));
            o.insert("locale".into(), Value::String(self.locale.as_str().into()));
        }
        serde_json::json!({ "message": m })
    }
}

impl crate::service::Core {
    /// Renders the `kind` template for `recipient` in `locale` into a queued message (what the
    /// caller then hands to the store with [`crate::store::Effects::message`]).
    pub fn compose(
        &self,
        kind: TemplateKind,
        recipient: &str,
        locale: Locale,
        model: &TemplateModel,
        identity_id: Option<Uuid>,
        now: OffsetDateTime,
    ) -> crate::error::Result<Message> {
        let Rendered {
            subject,
            body,
            html_body,
        } = self
            .templates
            .render(kind, locale, model)
            .map_err(crate::error::Error::Internal)?;
        Ok(Message {
            // Time-ordered, so the newest-first admin list pages by id alone.
            id: time_ordered_id(now),
            status: MessageStatus::Queued,
            channel: "email".into(),
            recipient: recipient.to_string(),
            template: kind,
            locale,
            subject,
            body,
            html_body,
            identity_id,
            send_count: 0,
            created_at: now,
            updated_at: now,
        })
    }
}

/// A UUIDv7 for `now` (from the clock, not the wall). Ids made by one process within one
/// millisecond still increase (a counter fills the random bits), so the admin list's order is
/// the order the messages were queued in.
fn time_ordered_id(now: OffsetDateTime) -> Uuid {
    static CONTEXT: std::sync::Mutex<uuid::ContextV7> =
        std::sync::Mutex::new(uuid::ContextV7::new());
    let nanos = now.unix_timestamp_nanos().max(0);
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    let ctx = CONTEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Uuid::new_v7(uuid::Timestamp::from_unix(&*ctx, secs, sub))
}
