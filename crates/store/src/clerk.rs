//! Clerk API secret keys: only their hashes are stored; revoked keys stay for the record.

use crate::rows::{micros, DbResult, RowExt};
use crate::security::write_effects;
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::store::{ClerkKeyStore, Effects, StoreResult};
use time::OffsetDateTime;

#[async_trait]
impl ClerkKeyStore for SqlStore {
    async fn insert_clerk_key(
        &self,
        id: &str,
        key_hash: &str,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await.db()?;
        sqlx::query("INSERT INTO clerk_keys (id, key_hash, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(key_hash.to_string())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .db()?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()
    }

    async fn clerk_keys(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT id, key_hash FROM clerk_keys WHERE revoked_at IS NULL")
            .fetch_all(&self.read)
            .await
            .db()?;
        rows.iter()
            .map(|r| Ok((r.text("id")?, r.text("key_hash")?)))
            .collect()
    }

    async fn revoke_clerk_key(
        &self,
        id: &str,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.db()?;
        let done = sqlx::query(
            "UPDATE clerk_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .db()?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()?;
        Ok(true)
    }
}
