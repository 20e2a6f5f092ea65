//! Refresh tokens, stored by hash and rotated in families.
//!
//! "A session lives as long as its newest refresh token, up to its absolute lifetime" is
//! enforced in SQL, in the same
//! statement as the rotation: a trigger on SQLite (`migrations/sqlite/*_tokens.sql`) and a
//! data-modifying CTE on PostgreSQL (below). This is the one statement that differs between
//! the backends.

use crate::pool::Backend;
use crate::rows::{micros, DbResult, RowExt};
use crate::security::write_effects;
use crate::sessions::{session_with_identity, SESSION_COLUMNS};
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use portcullis_core::store::{Effects, RefreshToken, RefreshTokenStore, StoreResult};
use sqlx::any::AnyRow;
use std::time::Duration;
use uuid::Uuid;

const REFRESH_COLUMNS: &str = "r.token_hash, r.jti, r.family_id, r.identity_id, r.session_id, \
     r.state, r.expires_at, r.created_at, r.rotated_at";

fn refresh_from_row(r: &AnyRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        token_hash: r.text("token_hash")?,
        jti: r.text("jti")?,
        family_id: r.uuid("family_id")?,
        identity_id: r.uuid("identity_id")?,
        session_id: r.uuid("session_id")?,
        state: r.text("state")?,
        expires_at: r.time("expires_at")?,
        created_at: r.time("created_at")?,
        rotated_at: r.opt_time("rotated_at")?,
    })
}

#[async_trait]
impl RefreshTokenStore for SqlStore {
    async fn insert_refresh_token(&self, t: &RefreshToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, jti, family_id, identity_id, session_id, state, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(t.token_hash.clone())
        .bind(t.jti.clone())
        .bind(t.family_id.to_string())
        .bind(t.identity_id.to_string())
        .bind(t.session_id.to_string())
        .bind(t.state.clone())
        .bind(micros(t.expires_at))
        .bind(micros(t.created_at))
        .execute(&self.write)
        .await
        .db()?;
        Ok(())
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query(&format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens r WHERE r.token_hash = $1"
        ))
        .bind(token_hash.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        row.map(|r| refresh_from_row(&r)).transpose()
    }

    async fn refresh_token_with_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(RefreshToken, Option<(Session, Identity)>)>> {
        let sql = format!(
            "SELECT {REFRESH_COLUMNS}, {SESSION_COLUMNS} \
             FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.session_id LEFT JOIN identities i ON i.id = s.identity_id \
             WHERE r.token_hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(token_hash.to_string())
            .fetch_optional(&self.read)
            .await
            .db()?;
        let Some(r) = row else { return Ok(None) };
        let token = refresh_from_row(&r)?;
        let session = match r.opt_text("s_id")? {
            Some(_) => Some(session_with_identity(&r)?),
            None => None,
        };
        Ok(Some((token, session)))
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        max_lifetime: Option<Duration>,
    ) -> StoreResult<bool> {
        // The absolute cap is `sessions.created_at + $8` (NULL: none). On SQLite the child row
        // carries it (`session_cap`) to the trigger.
        // One statement, one round trip to the (single) writer: the child row is inserted only
        // if the parent is still active, and the parent is marked rotated in the same statement
        // (a trigger on SQLite, a data-modifying CTE on PostgreSQL). Of two concurrent rotations
        // of one token exactly one inserts a row.
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO refresh_tokens (token_hash, jti, family_id, identity_id, session_id, state, expires_at, created_at, parent_hash, session_cap) \
                 SELECT $1, $2, p.family_id, p.identity_id, p.session_id, 'active', $3, $4, p.token_hash, s.created_at + $8 \
                 FROM refresh_tokens p JOIN sessions s ON s.id = p.session_id JOIN identities i ON i.id = p.identity_id \
                 WHERE p.token_hash = $5 AND p.state = 'active' AND p.session_id = $6 AND p.identity_id = $7 \
                   AND s.active = 1 AND s.expires_at > $4 AND i.state = 'active'"
            }
            Backend::Postgres => {
                "WITH parent AS ( \
                     UPDATE refresh_tokens p SET state = 'rotated', rotated_at = $4 \
                     FROM sessions s, identities i \
                     WHERE p.token_hash = $5 AND p.state = 'active' AND p.session_id = $6 AND p.identity_id = $7 \
                       AND s.id = p.session_id AND i.id = p.identity_id \
                       AND s.active = 1 AND s.expires_at > $4 AND i.state = 'active' \
                     RETURNING p.family_id, p.identity_id, p.session_id, p.token_hash), \
                 extended AS (UPDATE sessions SET expires_at = GREATEST(expires_at, LEAST(CAST($3 AS BIGINT), created_at + CAST($8 AS BIGINT))) \
                              WHERE id IN (SELECT session_id FROM parent)) \
                 INSERT INTO refresh_tokens (token_hash, jti, family_id, identity_id, session_id, state, expires_at, created_at, parent_hash) \
                 SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), family_id, identity_id, session_id, 'active', \
                        CAST($3 AS BIGINT), CAST($4 AS BIGINT), token_hash FROM parent"
            }
        };
        let done = sqlx::query(sql)
            .bind(new.token_hash.clone())
            .bind(new.jti.clone())
            .bind(micros(new.expires_at))
            .bind(micros(new.created_at))
            .bind(old_hash.to_string())
            .bind(new.session_id.to_string())
            .bind(new.identity_id.to_string())
            .bind(max_lifetime.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)))
            .execute(&self.write)
            .await
            .db()?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE token_hash = $1 AND state = 'active'")
            .bind(token_hash.to_string())
            .execute(&self.write)
            .await
            .db()?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_refresh_family(&self, family_id: Uuid, fx: &Effects) -> StoreResult<u64> {
        let mut tx = self.write.begin().await.db()?;
        let done = sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE family_id = $1 AND state <> 'revoked'")
            .bind(family_id.to_string())
            .execute(&mut *tx)
            .await
            .db()?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()?;
        Ok(done.rows_affected())
    }

    async fn revoke_identity_refresh_tokens(&self, identity_id: Uuid) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE identity_id = $1 AND state = 'active'")
            .bind(identity_id.to_string())
            .execute(&self.write)
            .await
            .db()?;
        Ok(done.rows_affected())
    }
}
