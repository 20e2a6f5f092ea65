//! What the courier worker and the admin API ask of the message queue: claim due messages
//! under a lease, record each attempt with what becomes of the message (sent, retried after
//! an exponential backoff, or abandoned after `courier.message_retries` attempts), and list.
//!
//! The worker owns only the SMTP conversation; every decision about a message is made here,
//! with `now` from the caller, so the schedule is exact in tests.

use super::{Dispatch, DispatchStatus, Message, MessageStatus};
use crate::error::{Error, Result};
use crate::service::Core;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The longest wait between two attempts, however many failed.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// `GET /admin/courier/messages`: newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub status: Option<MessageStatus>,
    pub recipient: Option<String>,
    /// Keyset paging: messages older than this one (ids are time-ordered).
    pub before: Option<Uuid>,
    pub page_size: u32,
}

/// What becomes of a claimed message after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Sent,
    /// Failed; queued again, due at `at`.
    Retry {
        at: OffsetDateTime,
    },
    /// Failed for the last allowed time.
    Abandoned,
}

impl Delivery {
    pub fn status(&self) -> MessageStatus {
        match self {
            Delivery::Sent => MessageStatus::Sent,
            Delivery::Retry { .. } => MessageStatus::Queued,
            Delivery::Abandoned => MessageStatus::Abandoned,
        }
    }
}

/// The wait after the `failures`-th failed attempt (1-based): `base`, then twice as long each
/// time, at most [`MAX_RETRY_DELAY`].
pub fn retry_delay(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

impl Core {
    /// Claims up to `courier.worker.pull_count` due messages for `owner` (a token of this
    /// worker), held until the lease ends: queued ones whose time has come, and ones whose
    /// sender's lease ran out (an instance that died mid-send).
    pub async fn claim_messages(&self, owner: Uuid, now: OffsetDateTime) -> Result<Vec<Message>> {
        let w = &self.config.courier.worker;
        Ok(self
            .store
            .claim_messages(owner, w.pull_count, now + w.lease.0, now)
            .await?)
    }

    /// Records one attempt at `message` (as claimed by `owner`): `Ok` when the server took it,
    /// else the error. Returns what became of the message; `None` when the claim had been
    /// lost (the lease ran out and another instance took the message), which records only
    /// the attempt.
    pub async fn record_delivery(
        &self,
        message: &Message,
        owner: Uuid,
        result: std::result::Result<(), String>,
        now: OffsetDateTime,
    ) -> Result<Option<Delivery>> {
        let c = &self.config.courier;
        let attempts = message.send_count.saturating_add(1);
        let (status, error, outcome) = match result {
            Ok(()) => (DispatchStatus::Success, None, Delivery::Sent),
            Err(e) if attempts >= c.message_retries => {
                (DispatchStatus::Failed, Some(e), Delivery::Abandoned)
            }
            Err(e) => (
                DispatchStatus::Failed,
                Some(e),
                Delivery::Retry {
                    at: now + retry_delay(c.retry_backoff.0, attempts),
                },
            ),
        };
        let dispatch = Dispatch {
            id: Uuid::new_v4(),
            message_id: message.id,
            status,
            error,
            created_at: now,
            updated_at: now,
        };
        let applied = self
            .store
            .record_dispatch(&dispatch, owner, &outcome)
            .await?;
        Ok(applied.then_some(outcome))
    }

    /// `GET /admin/courier/messages`.
    pub async fn courier_messages(&self, query: &MessageQuery) -> Result<Vec<Message>> {
        Ok(self.store.list_messages(query).await?)
    }

    /// `GET /admin/courier/messages/{id}`: the message with its dispatches, oldest first.
    pub async fn courier_message(&self, id: Uuid) -> Result<(Message, Vec<Dispatch>)> {
        self.store
            .get_message(id)
            .await?
            .ok_or_else(|| Error::not_found("No courier message with this id."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_the_base_up_to_an_hour() {
        let base = Duration::from_secs(60);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(120));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(480));
        assert_eq!(retry_delay(base, 7), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, u32::MAX), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(Duration::from_millis(200), 3),
            Duration::from_millis(800)
        );
    }
}
