//! Brute-force counters and the audit log: what the security rules need to remember, shared
//! by every instance on one database.

use super::StoreResult;
use crate::audit::{AuditQuery, AuditRecord};
use crate::ratelimit::Failures;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[async_trait]
pub trait SecurityStore: Send + Sync + 'static {
    /// The login-failure counters stored under `keys` (absent keys are left out).
    async fn login_failures(&self, keys: &[String]) -> StoreResult<Vec<(String, Failures)>>;
    /// Counts one failure at `now` under each key, atomically per key: of N concurrent
    /// failures every one is counted. A counter whose hourly window has passed restarts it.
    async fn record_login_failure(&self, keys: &[String], now: OffsetDateTime) -> StoreResult<()>;
    /// Ends the consecutive run of each key (a correct password); the hourly count stays.
    async fn reset_login_failures(&self, keys: &[String]) -> StoreResult<()>;
    /// Whether the identity has a session created since `since` from `ip` (a known device).
    async fn has_session_from_ip(
        &self,
        identity_id: Uuid,
        ip: &str,
        since: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Appends a record that stands alone (it records no other write).
    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// Records matching the query, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes records older than `before` (retention).
    async fn delete_audit_before(&self, before: OffsetDateTime) -> StoreResult<u64>;
}
