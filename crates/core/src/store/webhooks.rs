//! The outbox and webhook delivery: events (appended by the writes that cause them, as their
//! [`Effects`]),
//! endpoints, deliveries and the attempt log.

use super::{Effects, StoreResult};
use crate::webhooks::{Attempt, Event, Outcome, PendingDelivery, WebhookEndpoint};
use async_trait::async_trait;
use time::OffsetDateTime;

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Outbox events after `after_seq`, oldest first.
    async fn events_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>>;
    async fn insert_webhook_endpoint(&self, ep: &WebhookEndpoint, fx: &Effects) -> StoreResult<()>;
    async fn update_webhook_endpoint(
        &self,
        ep: &WebhookEndpoint,
        fx: &Effects,
    ) -> StoreResult<bool>;
    async fn delete_webhook_endpoint(&self, id: &str, fx: &Effects) -> StoreResult<bool>;
    async fn get_webhook_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>>;
    async fn list_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Takes (or renews) the delivery lease of an enabled endpoint for `owner` until `until`;
    /// false when another owner holds an unexpired lease. One instance delivers per endpoint.
    async fn lease_webhook_endpoint(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// The endpoint's oldest pending delivery (by event order), whether or not it is due.
    async fn next_delivery(&self, endpoint_id: &str) -> StoreResult<Option<PendingDelivery>>;
    /// Records an attempt and its outcome; `failing_since` is set on the endpoint when it starts
    /// failing and cleared on success. The outcome applies only if the delivery is still at
    /// `claimed_generation` (the one the worker read): a resend or replay that landed while the
    /// attempt was in flight wins, so it is not lost.
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: &Outcome,
        claimed_generation: i64,
    ) -> StoreResult<()>;
    async fn disable_webhook_endpoint(
        &self,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    async fn list_attempts(&self, endpoint_id: &str, limit: u32) -> StoreResult<Vec<Attempt>>;
    /// Queues the event `event_id` for `endpoint_id` again (a new or failed delivery becomes
    /// pending, due now). False when there is no such event.
    async fn requeue_event(
        &self,
        endpoint_id: &str,
        event_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Queues every event since `since` for the endpoint again; returns how many.
    async fn replay_since(
        &self,
        endpoint_id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;
}
