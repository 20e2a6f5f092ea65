//! Clerk API secret keys, stored by hash.

use super::StoreResult;
use async_trait::async_trait;
use time::OffsetDateTime;

#[async_trait]
pub trait ClerkKeyStore: Send + Sync + 'static {
    async fn insert_clerk_key(
        &self,
        id: &str,
        key_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Hashes of the Clerk keys that are not revoked.
    async fn clerk_key_hashes(&self) -> StoreResult<Vec<String>>;
    async fn revoke_clerk_key(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
}
