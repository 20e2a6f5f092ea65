//! Refresh tokens (the simplejwt face): stored by hash, rotated in families.

use super::{Effects, StoreResult};
use crate::identity::Identity;
use crate::session::Session;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

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

#[async_trait]
pub trait RefreshTokenStore: Send + Sync + 'static {
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
    /// identity is active. The session is extended to `new.expires_at` in the same step, but
    /// never past `max_lifetime` after the session was created (its absolute lifetime; `None`:
    /// no cap). Of two concurrent rotations of one token exactly one returns true. (The
    /// extension needs no session-cache invalidation: token sessions are never looked up by
    /// an opaque token.)
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        max_lifetime: Option<std::time::Duration>,
    ) -> StoreResult<bool>;
    /// Revokes one token if it is active; returns whether it was.
    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool>;
    /// Revokes every token of a family (logout, reuse detection), with `fx`'s audit records.
    async fn revoke_refresh_family(&self, family_id: Uuid, fx: &Effects) -> StoreResult<u64>;
    async fn revoke_identity_refresh_tokens(&self, identity_id: Uuid) -> StoreResult<u64>;
}
