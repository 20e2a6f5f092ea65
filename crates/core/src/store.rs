//! The storage port. One implementation per database lives in `portcullis-store`; both pass
//! the same conformance suite.

use crate::flow::Flow;
use crate::identity::Identity;
use crate::keys::StoredKey;
use crate::session::Session;
use crate::webhooks::{Attempt, Event, Outcome, PendingDelivery, WebhookEndpoint};
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint failed: an identifier, address or external id is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A persisted refresh token (only its hash identifies it).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub jti: String,
    pub family_id: Uuid,
    pub identity_id: Uuid,
    pub session_id: Uuid,
    /// `active`, `rotated` (replaced by a newer token of its family) or `revoked`.
    pub state: String,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    /// When a newer token replaced it.
    pub rotated_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct IdentityQuery {
    pub page_size: u32,
    /// Keyset cursor: return identities with an id greater than this.
    pub after: Option<Uuid>,
    pub credentials_identifier: Option<String>,
    pub ids: Vec<Uuid>,
}

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
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_identity(&self, identity: &Identity) -> StoreResult<()>;
    /// Inserts a new identity and its first session in one transaction (self-service registration).
    async fn insert_identity_with_session(
        &self,
        identity: &Identity,
        session: &Session,
    ) -> StoreResult<()>;
    /// Replaces the identity (traits, state, metadata, credentials, addresses) atomically.
    async fn update_identity(&self, identity: &Identity) -> StoreResult<()>;
    async fn get_identity(&self, id: Uuid) -> StoreResult<Option<Identity>>;
    async fn find_identity_by_identifier(
        &self,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Option<Identity>>;
    async fn list_identities(&self, query: &IdentityQuery) -> StoreResult<Vec<Identity>>;
    /// Deletes the identity and everything that belongs to it (sessions, flows' ownership).
    async fn delete_identity(&self, id: Uuid) -> StoreResult<bool>;

    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    async fn update_session(&self, session: &Session) -> StoreResult<()>;
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
    /// Deactivates the identity's sessions (all, or all but `except`); returns how many.
    async fn revoke_identity_sessions(
        &self,
        identity_id: Uuid,
        except: Option<Uuid>,
    ) -> StoreResult<u64>;
    async fn delete_identity_sessions(&self, identity_id: Uuid) -> StoreResult<u64>;

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

    /// Deletes flows, sessions and refresh tokens that expired before `before`, and retired
    /// signing keys dropped before it; returns how many rows went.
    async fn delete_expired(&self, before: OffsetDateTime) -> StoreResult<u64>;

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
    ) -> StoreResult<bool>;

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// The refresh token with its session and identity (if the session still exists): one read.
    async fn refresh_token_with_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(RefreshToken, Option<(Session, Identity)>)>>;
    /// Replaces the refresh token `old_hash` by `new` (which joins the old token's family)
    /// atomically, only if the old token is still active, belongs to `new.session_id` and
    /// `new.identity_id`, its session is active and unexpired at `new.created_at` and its
    /// identity is active. The session is extended to `new.expires_at` in the same step. Of two
    /// concurrent rotations of one token exactly one returns true. (The extension needs no
    /// session-cache invalidation: token sessions are never looked up by an opaque token.)
    async fn rotate_refresh_token(&self, old_hash: &str, new: &RefreshToken) -> StoreResult<bool>;
    /// Revokes one token if it is active; returns whether it was.
    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool>;
    async fn revoke_refresh_family(&self, family_id: Uuid) -> StoreResult<u64>;
    async fn revoke_identity_refresh_tokens(&self, identity_id: Uuid) -> StoreResult<u64>;

    /// Outbox events after `after_seq`, oldest first.
    async fn events_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>>;
    async fn insert_webhook_endpoint(&self, ep: &WebhookEndpoint) -> StoreResult<()>;
    async fn update_webhook_endpoint(&self, ep: &WebhookEndpoint) -> StoreResult<bool>;
    async fn delete_webhook_endpoint(&self, id: &str) -> StoreResult<bool>;
    async fn get_webhook_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>>;
    async fn list_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Takes (or renews) the delivery lease of an enabled endpoint for `owner` until `until`;
    /// false when another owner holds an unexpired lease. One instance delivers per endpoint.
    async fn lease_webhook_endpoint(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// The endpoint's oldest pending delivery (by event order), whether or not it is due.
    async fn next_delivery(&self, endpoint_id: &str) -> StoreResult<Option<PendingDelivery>>;
    /// Records an attempt and its outcome; `failing_since` is set on the endpoint when it starts
    /// failing and cleared on success. The outcome applies only if the delivery is still at
    /// `claimed_generation` (the one the worker read): a resend or replay that landed while the
    /// attempt was in flight wins, so it is not lost.
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: &Outcome,
        claimed_generation: i64,
    ) -> StoreResult<()>;
    async fn disable_webhook_endpoint(
        &self,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    async fn list_attempts(&self, endpoint_id: &str, limit: u32) -> StoreResult<Vec<Attempt>>;
    /// Queues the event `event_id` for `endpoint_id` again (a new or failed delivery becomes
    /// pending, due now). False when there is no such event.
    async fn requeue_event(
        &self,
        endpoint_id: &str,
        event_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Queues every event since `since` for the endpoint again; returns how many.
    async fn replay_since(
        &self,
        endpoint_id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;

    async fn insert_clerk_key(
        &self,
        id: &str,
        key_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Hashes of the Clerk keys that are not revoked.
    async fn clerk_key_hashes(&self) -> StoreResult<Vec<String>>;
    async fn revoke_clerk_key(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Every identity, newest first (the Clerk API filters and pages them in memory for now).
    async fn all_identities(&self) -> StoreResult<Vec<Identity>>;

    /// Returns the stored value for `key`, storing `value` first if there is none (atomic).
    async fn get_or_init_kv(&self, key: &str, value: &str) -> StoreResult<String>;
}
