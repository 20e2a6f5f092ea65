//! Identities: the account documents, with their credential identifiers and addresses.

use super::{Effects, StoreResult};
use crate::identity::Identity;
use crate::session::Session;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct IdentityQuery {
    pub page_size: u32,
    /// Keyset cursor: return identities with an id greater than this.
    pub after: Option<Uuid>,
    pub credentials_identifier: Option<String>,
    pub ids: Vec<Uuid>,
}

#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn insert_identity(&self, identity: &Identity, fx: &Effects) -> StoreResult<()>;
    /// Inserts a new identity and its first session in one transaction (self-service registration).
    async fn insert_identity_with_session(
        &self,
        identity: &Identity,
        session: &Session,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// Replaces the identity (traits, state, metadata, credentials, addresses) atomically, if
    /// the stored version is still `identity.version`; then increments the version, stored
    /// and in `identity`. [`StoreError::Stale`](super::StoreError::Stale) when another write
    /// landed since `identity` was read (nothing is written), `NotFound` when it is gone.
    async fn update_identity(&self, identity: &mut Identity, fx: &Effects) -> StoreResult<()>;
    async fn get_identity(&self, id: Uuid) -> StoreResult<Option<Identity>>;
    async fn find_identity_by_identifier(
        &self,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Option<Identity>>;
    /// The identity with the address `value` of `kind` (`recovery` or `verifiable`), of any
    /// channel (`via`). Values are stored normalised (lower case e-mail).
    async fn find_identity_by_address(
        &self,
        kind: &str,
        value: &str,
    ) -> StoreResult<Option<Identity>>;
    async fn list_identities(&self, query: &IdentityQuery) -> StoreResult<Vec<Identity>>;
    /// Every identity, newest first (the Clerk API filters and pages them in memory for now).
    async fn all_identities(&self) -> StoreResult<Vec<Identity>>;
    /// Deletes the identity and everything that belongs to it (sessions, flows' ownership).
    /// `now` is the time of the events it appends; a session event in `fx` is appended for
    /// every session that was still active.
    async fn delete_identity(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool>;
}
