//! A read-through cache for session lookups, in front of any [`Store`].
//!
//! `/sessions/whoami` is the hottest path; with the cache a repeated check is a hash-map hit
//! instead of a query. Correctness rests on one rule: every write that can change what a cached
//! lookup returns (a session update or revocation, an identity update or deletion) bumps a
//! global epoch, and an entry is only served if it was loaded in the current epoch. The epoch
//! is read *before* the database query, so a lookup racing a write is stored with the old epoch
//! and never served. New sessions and identities need no bump: nothing cached refers to them.
//!
//! The cache is process-local, so it is only safe when this process is the only writer: the
//! server enables it for SQLite (an embedded database has one server process) and not for
//! PostgreSQL, where other instances write too.

use async_trait::async_trait;
use portcullis_core::flow::Flow;
use portcullis_core::identity::Identity;
use portcullis_core::keys::StoredKey;
use portcullis_core::session::Session;
use portcullis_core::store::{IdentityQuery, RefreshToken, SessionQuery, Store, StoreResult};
use portcullis_core::webhooks::{Attempt, Event, Outcome, PendingDelivery, WebhookEndpoint};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use time::OffsetDateTime;
use uuid::Uuid;

type Entry = (u64, Option<(Session, Identity)>);

pub struct SessionCache<S> {
    inner: S,
    epoch: AtomicU64,
    entries: RwLock<HashMap<String, Entry>>,
    capacity: usize,
}

impl<S: Store> SessionCache<S> {
    pub fn new(inner: S, capacity: usize) -> Self {
        SessionCache {
            inner,
            epoch: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.entries.write() {
            m.clear();
        }
    }
}

#[async_trait]
impl<S: Store> Store for SessionCache<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn insert_identity(&self, identity: &Identity) -> StoreResult<()> {
        self.inner.insert_identity(identity).await
    }
    async fn insert_identity_with_session(
        &self,
        identity: &Identity,
        session: &Session,
    ) -> StoreResult<()> {
        self.inner
            .insert_identity_with_session(identity, session)
            .await
    }
    async fn update_identity(&self, identity: &Identity) -> StoreResult<()> {
        let r = self.inner.update_identity(identity).await;
        self.bump();
        r
    }
    async fn get_identity(&self, id: Uuid) -> StoreResult<Option<Identity>> {
        self.inner.get_identity(id).await
    }
    async fn find_identity_by_identifier(
        &self,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Option<Identity>> {
        self.inner
            .find_identity_by_identifier(kind, identifier)
            .await
    }
    async fn list_identities(&self, query: &IdentityQuery) -> StoreResult<Vec<Identity>> {
        self.inner.list_identities(query).await
    }
    async fn delete_identity(&self, id: Uuid) -> StoreResult<bool> {
        let r = self.inner.delete_identity(id).await;
        self.bump();
        r
    }
    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        self.inner.insert_session(session).await
    }
    async fn update_session(&self, session: &Session) -> StoreResult<()> {
        let r = self.inner.update_session(session).await;
        self.bump();
        r
    }
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(Session, Identity)>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Ok(m) = self.entries.read() {
            if let Some((e, v)) = m.get(token_hash) {
                if *e == epoch {
                    return Ok(v.clone());
                }
            }
        }
        let loaded = self.inner.session_by_token_hash(token_hash).await?;
        // Unknown tokens are not cached: a flood of random tokens must not evict real entries.
        if loaded.is_some() {
            if let Ok(mut m) = self.entries.write() {
                if m.len() >= self.capacity {
                    m.clear();
                }
                m.insert(token_hash.to_string(), (epoch, loaded.clone()));
            }
        }
        Ok(loaded)
    }
    async fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, Identity)>> {
        self.inner.get_session(id).await
    }
    async fn list_sessions(
        &self,
        query: &SessionQuery,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<(Session, Identity)>> {
        self.inner.list_sessions(query, now).await
    }
    async fn revoke_identity_sessions(
        &self,
        identity_id: Uuid,
        except: Option<Uuid>,
    ) -> StoreResult<u64> {
        let r = self
            .inner
            .revoke_identity_sessions(identity_id, except)
            .await;
        self.bump();
        r
    }
    async fn delete_identity_sessions(&self, identity_id: Uuid) -> StoreResult<u64> {
        let r = self.inner.delete_identity_sessions(identity_id).await;
        self.bump();
        r
    }
    async fn insert_flow(&self, flow: &Flow) -> StoreResult<()> {
        self.inner.insert_flow(flow).await
    }
    async fn update_flow(&self, flow: &Flow) -> StoreResult<()> {
        self.inner.update_flow(flow).await
    }
    async fn get_flow(&self, id: Uuid) -> StoreResult<Option<Flow>> {
        self.inner.get_flow(id).await
    }
    async fn complete_flow(&self, flow: &Flow) -> StoreResult<bool> {
        self.inner.complete_flow(flow).await
    }
    async fn insert_flow_error(
        &self,
        id: Uuid,
        error: &serde_json::Value,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        self.inner.insert_flow_error(id, error, expires_at).await
    }
    async fn get_flow_error(&self, id: Uuid) -> StoreResult<Option<serde_json::Value>> {
        self.inner.get_flow_error(id).await
    }
    async fn delete_expired(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let r = self.inner.delete_expired(before).await;
        self.bump();
        r
    }
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.inner.signing_keys().await
    }
    async fn transition_signing_keys(
        &self,
        retire: &[(String, &'static str, OffsetDateTime)],
        promote: Option<&str>,
        insert: &[StoredKey],
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.inner
            .transition_signing_keys(retire, promote, insert, now)
            .await
    }
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.inner.insert_refresh_token(token).await
    }
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        self.inner.get_refresh_token(token_hash).await
    }
    async fn refresh_token_with_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(RefreshToken, Option<(Session, Identity)>)>> {
        self.inner.refresh_token_with_session(token_hash).await
    }
    async fn rotate_refresh_token(&self, old_hash: &str, new: &RefreshToken) -> StoreResult<bool> {
        self.inner.rotate_refresh_token(old_hash, new).await
    }
    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        self.inner.revoke_refresh_token(token_hash).await
    }
    async fn revoke_refresh_family(&self, family_id: Uuid) -> StoreResult<u64> {
        self.inner.revoke_refresh_family(family_id).await
    }
    async fn revoke_identity_refresh_tokens(&self, identity_id: Uuid) -> StoreResult<u64> {
        self.inner.revoke_identity_refresh_tokens(identity_id).await
    }
    async fn events_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>> {
        self.inner.events_after(after_seq, limit).await
    }
    async fn insert_webhook_endpoint(&self, ep: &WebhookEndpoint) -> StoreResult<()> {
        self.inner.insert_webhook_endpoint(ep).await
    }
    async fn update_webhook_endpoint(&self, ep: &WebhookEndpoint) -> StoreResult<bool> {
        self.inner.update_webhook_endpoint(ep).await
    }
    async fn delete_webhook_endpoint(&self, id: &str) -> StoreResult<bool> {
        self.inner.delete_webhook_endpoint(id).await
    }
    async fn get_webhook_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        self.inner.get_webhook_endpoint(id).await
    }
    async fn list_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.inner.list_webhook_endpoints().await
    }
    async fn lease_webhook_endpoint(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.inner
            .lease_webhook_endpoint(id, owner, until, now)
            .await
    }
    async fn next_delivery(&self, endpoint_id: &str) -> StoreResult<Option<PendingDelivery>> {
        self.inner.next_delivery(endpoint_id).await
    }
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: &Outcome,
        claimed_generation: i64,
    ) -> StoreResult<()> {
        self.inner
            .record_attempt(attempt, outcome, claimed_generation)
            .await
    }
    async fn disable_webhook_endpoint(
        &self,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.inner.disable_webhook_endpoint(id, reason, now).await
    }
    async fn list_attempts(&self, endpoint_id: &str, limit: u32) -> StoreResult<Vec<Attempt>> {
        self.inner.list_attempts(endpoint_id, limit).await
    }
    async fn requeue_event(
        &self,
        endpoint_id: &str,
        event_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.inner.requeue_event(endpoint_id, event_id, now).await
    }
    async fn replay_since(
        &self,
        endpoint_id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        self.inner.replay_since(endpoint_id, since, now).await
    }
    async fn insert_clerk_key(
        &self,
        id: &str,
        key_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.inner.insert_clerk_key(id, key_hash, now).await
    }
    async fn clerk_key_hashes(&self) -> StoreResult<Vec<String>> {
        self.inner.clerk_key_hashes().await
    }
    async fn revoke_clerk_key(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        self.inner.revoke_clerk_key(id, now).await
    }
    async fn all_identities(&self) -> StoreResult<Vec<Identity>> {
        self.inner.all_identities().await
    }
    async fn get_or_init_kv(&self, key: &str, value: &str) -> StoreResult<String> {
        self.inner.get_or_init_kv(key, value).await
    }
}
