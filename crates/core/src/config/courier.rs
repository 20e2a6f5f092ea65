//! `courier`: how outgoing messages (recovery and verification codes, notifications) leave
//! the server. Messages are queued in the database with their cause and sent by the courier
//! worker over SMTP; in dev mode without SMTP they stay in the dev mailbox.

use super::redact::Secret;
use super::units::Dur;
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
    /// The wait before the first retry of a message that failed; each further retry waits
    /// twice as long as the one before, at most an hour.
    pub retry_backoff: Dur,
    pub worker: CourierWorkerConfig,
}

/// `courier.worker`: how each instance's courier loop takes messages off the queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CourierWorkerConfig {
    /// Messages claimed (and sent concurrently) per round, as Kratos's key.
    pub pull_count: u32,
    /// The pause between rounds when the queue had nothing due, as Kratos's key.
    pub pull_wait: Dur,
    /// How long a claimed message is held by the instance sending it. A send is cut off at
    /// half of it; a message whose instance died mid-send is sent again after it.
    pub lease: Dur,
}

impl Default for CourierWorkerConfig {
    fn default() -> Self {
        CourierWorkerConfig {
            pull_count: 10,
            pull_wait: Dur::secs(1),
            lease: Dur::secs(120),
        }
    }
}

impl Default for CourierConfig {
    fn default() -> Self {
        CourierConfig {
            smtp: SmtpConfig::default(),
            template_override_path: String::new(),
            message_retries: 5,
            retry_backoff: Dur::secs(60),
            worker: CourierWorkerConfig::default(),
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
        if self.worker.pull_count == 0 || self.worker.pull_count > 1000 {
            return Err(ConfigError::Invalid(
                "courier.worker.pull_count: must be from 1 to 1000".into(),
            ));
        }
        if self.worker.pull_wait.0.is_zero() {
            return Err(ConfigError::Invalid(
                "courier.worker.pull_wait: must be longer than 0s".into(),
            ));
        }
        if self.worker.lease.0 < std::time::Duration::from_secs(2) {
            return Err(ConfigError::Invalid(
                "courier.worker.lease: must be at least 2s (a send is cut off at half of it)"
                    .into(),
            ));
        }
        if self.message_retries == 0 {
            return Err(ConfigError::Invalid(
                "courier.message_retries: must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
