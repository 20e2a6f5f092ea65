//! JWT signing keys and the small key-value table (generated dev secrets).

use super::{Effects, StoreResult};
use crate::keys::StoredKey;
use async_trait::async_trait;
use time::OffsetDateTime;

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Every signing key still published (the current one and retired ones not yet dropped).
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Changes the key set in one transaction, all or nothing: retires each `(kid, expected
    /// state, drop_after)`, promotes the `next` key `promote` to `current` (stamping
    /// `activated_at = now`), and inserts `insert`. Returns false, changing nothing, when a key
    /// is no longer in the expected state or an insert would make a second `current`/`next`:
    /// another writer won the race.
    async fn transition_signing_keys(
        &self,
        retire: &[(String, &'static str, OffsetDateTime)],
        promote: Option<&str>,
        insert: &[StoredKey],
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool>;
    /// Returns the stored value for `key`, storing `value` first if there is none (atomic).
    async fn get_or_init_kv(&self, key: &str, value: &str) -> StoreResult<String>;
}
