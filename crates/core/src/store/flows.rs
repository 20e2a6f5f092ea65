//! Self-service flows (login, registration, settings) and the errors they end in.

use super::StoreResult;
use crate::flow::Flow;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[async_trait]
pub trait FlowStore: Send + Sync + 'static {
    async fn insert_flow(&self, flow: &Flow) -> StoreResult<()>;
    async fn update_flow(&self, flow: &Flow) -> StoreResult<()>;
    async fn get_flow(&self, id: Uuid) -> StoreResult<Option<Flow>>;
    /// Saves `flow` and marks it completed, unless another request completed it first
    /// (returns false then, and changes nothing).
    async fn complete_flow(&self, flow: &Flow) -> StoreResult<bool>;
    /// Keeps a self-service error (what `/self-service/errors?id=` shows) until `expires_at`.
    async fn insert_flow_error(
        &self,
        id: Uuid,
        error: &serde_json::Value,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()>;
    async fn get_flow_error(&self, id: Uuid) -> StoreResult<Option<serde_json::Value>>;
}
