//! Self-service flows (login, registration, settings) and the errors they end in.

use super::{Effects, StoreResult};
use crate::flow::Flow;
use crate::identity::Identity;
use crate::session::Session;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[async_trait]
pub trait FlowStore: Send + Sync + 'static {
    async fn insert_flow(&self, flow: &Flow) -> StoreResult<()>;
    async fn update_flow(&self, flow: &Flow) -> StoreResult<()>;
    /// Saves `flow` with what the change records (the message with a code, its audit
    /// record), in one transaction.
    async fn update_flow_with(&self, flow: &Flow, fx: &Effects) -> StoreResult<()>;
    /// Counts one code submitted to the flow and returns how many it has had, atomically,
    /// so concurrent guesses all count. `NotFound` for an unknown flow.
    async fn add_code_attempt(&self, flow_id: Uuid) -> StoreResult<u32>;
    async fn get_flow(&self, id: Uuid) -> StoreResult<Option<Flow>>;
    /// Saves `flow` and marks it completed, unless another request completed it first
    /// (returns false then, and changes nothing).
    async fn complete_flow(&self, flow: &Flow) -> StoreResult<bool>;
    /// Completes a registration flow in one transaction: saves `flow` and marks it completed
    /// (as [`complete_flow`](Self::complete_flow)) and inserts `identity` with its first
    /// `session` (none without the `session` hook). Returns false, inserting nothing, when the
    /// flow was already completed: of concurrent submits of one flow exactly one creates an
    /// account.
    async fn complete_registration(
        &self,
        flow: &Flow,
        identity: &Identity,
        session: Option<&Session>,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Keeps a self-service error (what `/self-service/errors?id=` shows) until `expires_at`.
    async fn insert_flow_error(
        &self,
        id: Uuid,
        error: &serde_json::Value,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()>;
    async fn get_flow_error(&self, id: Uuid) -> StoreResult<Option<serde_json::Value>>;
}
