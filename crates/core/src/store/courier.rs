//! The courier's queue: messages (queued by the writes that cause them, as their
//! [`super::Effects`]), their dispatches, and the claim that lets several stateless instances
//! share one queue without sending a message twice.

use super::StoreResult;
use crate::courier::{Delivery, Dispatch, Message, MessageQuery};
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[async_trait]
pub trait CourierStore: Send + Sync + 'static {
    /// Messages matching the query, newest first, without their dispatches.
    async fn list_messages(&self, query: &MessageQuery) -> StoreResult<Vec<Message>>;
    /// A message with its dispatches, oldest first.
    async fn get_message(&self, id: Uuid) -> StoreResult<Option<(Message, Vec<Dispatch>)>>;
    /// Atomically moves up to `limit` messages to `processing` under `owner`'s lease until
    /// `lease_until` and returns them, oldest due first: queued messages due by `now`, and
    /// processing ones whose lease ended before `now`. Of concurrent claimers (on any number
    /// of instances) each message goes to one.
    async fn claim_messages(
        &self,
        owner: Uuid,
        limit: u32,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<Message>>;
    /// Records an attempt and, if the message is still processing under `owner`'s claim,
    /// applies `outcome` (status, `send_count + 1`, the next attempt time) and releases the
    /// lease; returns whether it applied. The dispatch is recorded either way.
    async fn record_dispatch(
        &self,
        dispatch: &Dispatch,
        owner: Uuid,
        outcome: &Delivery,
    ) -> StoreResult<bool>;
    /// Deletes sent and abandoned messages (with their dispatches) created before `before`;
    /// queued and processing ones are never deleted. Returns how many messages went.
    async fn delete_messages_before(&self, before: OffsetDateTime) -> StoreResult<u64>;
}
