//! `courier`: how outgoing messages (recovery and verification codes, notifications) leave
//! the server. Messages are queued in the database with their cause and sent by the courier
//! worker over SMTP; in dev mode without SMTP they stay in the dev mailbox.

use super::redact::Secret;
use super::{ConfigError, Ctx};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CourierConfig {
    pub smtp: SmtpConfig,
    /// A directory whose templates replace the built-in ones (see `docs/configuration.md`).
    pub template_override_path: String,
    /// How many times a message is tried before it is marked abandoned.
    pub message_retries: u32,
}

impl Default for CourierConfig {
    fn default() -> Self {
        CourierConfig {
            smtp: SmtpConfig::default(),
            template_override_path: String::new(),
            message_retries: 5,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// `smtp://[user:pass@]host:port/` (STARTTLS; `?skip_ssl_verify=true` to accept any
    /// certificate, `?disable_starttls=true` for plain text) or `smtps://…` (implicit TLS).
    /// Empty: no SMTP (in dev mode the dev mailbox keeps the messages).
    pub connection_uri: Secret,
    pub from_address: String,
    pub from_name: String,
    /// Extra headers on every message.
    pub headers: BTreeMap<String, String>,
}

impl CourierConfig {
    /// Whether messages are sent over SMTP; without it (dev mode only) they stay queued for
    /// the dev mailbox.
    pub fn smtp_enabled(&self) -> bool {
        !self.smtp.connection_uri.is_empty()
    }

    pub(super) fn validate(&self, ctx: &Ctx, sends_mail: bool) -> Result<(), ConfigError> {
        if sends_mail && !ctx.dev && !self.smtp_enabled() {
            return Err(ConfigError::Invalid(
                "courier.smtp.connection_uri: required when recovery or verification is enabled (outside --dev, where the dev mailbox keeps messages)".into(),
            ));
        }
        if self.smtp_enabled() {
            let uri = url::Url::parse(self.smtp.connection_uri.expose()).map_err(|_| {
                ConfigError::Invalid(
                    "courier.smtp.connection_uri: not a URL (expected smtp://host:port/ or smtps://host:port/)".into(),
                )
            })?;
            if !matches!(uri.scheme(), "smtp" | "smtps") || uri.host_str().is_none() {
                return Err(ConfigError::Invalid(
                    "courier.smtp.connection_uri: expected smtp://host:port/ or smtps://host:port/"
                        .into(),
                ));
            }
        }
        if self.message_retries == 0 {
            return Err(ConfigError::Invalid(
                "courier.message_retries: must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
