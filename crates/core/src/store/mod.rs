//! The storage port. One implementation per database lives in `portcullis-store`; both pass
//! the same conformance suite.
//!
//! The port is split by aggregate into small traits (one file each), so a reader finds the
//! storage of sessions in one place and a test double can implement only what it needs.
//! [`Store`] is every one of them together, with a blanket impl: `Arc<dyn Store>` is what the
//! core holds. Calling a method on `dyn Store` needs the sub-trait in scope; `use
//! portcullis_core::store::prelude::*` brings them all.
//!
//! A write that changes something takes the [`Effects`] the core names for it (outbox events,
//! audit records, courier messages) and commits them with the change.

mod clerk;
mod courier;
mod effects;
mod flows;
mod identities;
mod images;
mod keys;
mod security;
mod sessions;
mod tokens;
mod webhooks;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use clerk::ClerkKeyStore;
pub use courier::CourierStore;
pub use effects::Effects;
pub use flows::FlowStore;
pub use identities::{IdentityQuery, IdentityStore};
pub use images::ImageStore;
pub use keys::KeyStore;
pub use security::SecurityStore;
pub use sessions::{SessionQuery, SessionStore};
pub use tokens::{RefreshToken, RefreshTokenStore};
pub use webhooks::WebhookStore;

/// Every storage trait, for `use portcullis_core::store::prelude::*`.
pub mod prelude {
    pub use super::{
        ClerkKeyStore, CourierStore, FlowStore, IdentityStore, ImageStore, KeyStore,
        MaintenanceStore, RefreshTokenStore, SecurityStore, SessionStore, Store, WebhookStore,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint failed: an identifier, address or external id is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// An optimistic-concurrency check failed: the row changed since the caller read it (its
    /// `version` moved on). Nothing was written; reload and decide again. Kept apart from
    /// `Conflict`, which is about uniqueness, so callers can retry this one.
    #[error("stale: changed by another writer since it was read")]
    Stale,
    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What concerns the database as a whole rather than one aggregate.
#[async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> StoreResult<()>;
    /// Deletes flows, sessions and refresh tokens that expired before `before`, and retired
    /// signing keys dropped before it; returns how many rows went.
    async fn delete_expired(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

/// The whole storage port: every aggregate's trait.
pub trait Store:
    MaintenanceStore
    + IdentityStore
    + SessionStore
    + FlowStore
    + RefreshTokenStore
    + KeyStore
    + WebhookStore
    + ClerkKeyStore
    + SecurityStore
    + CourierStore
    + ImageStore
{
}

impl<T> Store for T where
    T: MaintenanceStore
        + IdentityStore
        + SessionStore
        + FlowStore
        + RefreshTokenStore
        + KeyStore
        + WebhookStore
        + ClerkKeyStore
        + SecurityStore
        + CourierStore
        + ImageStore
{
}
