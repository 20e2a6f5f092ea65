//! Clerk API secret keys, stored by hash.

use super::{Effects, StoreResult};
use async_trait::async_trait;
use time::OffsetDateTime;

#[async_trait]
pub trait ClerkKeyStore: Send + Sync + 'static {
    async fn insert_clerk_key(
        &self,
        id: &str,
        key_hash: &str,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<()>;
    /// `(id, hash)` of every Clerk key that is not revoked.
    async fn clerk_keys(&self) -> StoreResult<Vec<(String, String)>>;
    async fn revoke_clerk_key(
        &self,
        id: &str,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool>;
}
