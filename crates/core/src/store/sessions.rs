//! Sessions: one row per login, looked up by the hash of its opaque token.

use super::{Effects, StoreResult};
use crate::identity::Identity;
use crate::session::Session;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub identity_id: Option<Uuid>,
    /// `Some(true)`: only sessions that are active and unexpired at `now`; `Some(false)`: only the others.
    pub active: Option<bool>,
    pub page_size: u32,
    pub after: Option<Uuid>,
    pub except: Option<Uuid>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn insert_session(&self, session: &Session, fx: &Effects) -> StoreResult<()>;
    /// Saves the session. Its session events in `fx` (at `now`) are appended only when this
    /// write deactivates it: ending an ended session is no event, and then (when `fx` names
    /// session events) no audit record either. A write never re-activates a session: once
    /// ended it stays ended, whatever the caller read before. Returns whether the session is
    /// active after the write.
    async fn update_session(
        &self,
        session: &Session,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// The session with this token hash and its identity: one indexed lookup.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(Session, Identity)>>;
    async fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, Identity)>>;
    async fn list_sessions(
        &self,
        query: &SessionQuery,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<(Session, Identity)>>;
    /// Deactivates the identity's sessions (all, or all but `except`) at `now`, with the
    /// session events of `fx` for each (and its audit records, if any session ended); returns
    /// how many.
    async fn revoke_identity_sessions(
        &self,
        identity_id: Uuid,
        except: Option<Uuid>,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<u64>;
    /// Deletes the identity's sessions at `now`, with the session events of `fx` for each one
    /// that was still active (and its audit records, if any went); returns how many.
    async fn delete_identity_sessions(
        &self,
        identity_id: Uuid,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<u64>;
}
