//! JWT signing keys (private halves encrypted by the core before they get here) and the
//! small key-value table.
//!
//! Key-set changes are one transaction each, and a unique index allows one `current` and one
//! `next` key: of two instances racing to rotate, one wins and the other sees `false`.

use crate::rows::{micros, DbResult, RowExt};
use crate::security::write_effects;
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::keys::StoredKey;
use portcullis_core::store::{Effects, KeyStore, StoreError, StoreResult};
use time::OffsetDateTime;

#[async_trait]
impl KeyStore for SqlStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, state, private_enc, public_jwk, created_at, activated_at, drop_after FROM signing_keys ORDER BY created_at DESC",
        )
        .fetch_all(&self.read)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.text("kid")?,
                    alg: r.text("alg")?,
                    state: r.text("state")?,
                    private_enc: r.text("private_enc")?,
                    public_jwk: r.json("public_jwk")?,
                    created_at: r.time("created_at")?,
                    activated_at: r.opt_time("activated_at")?,
                    drop_after: r.opt_time("drop_after")?,
                })
            })
            .collect()
    }

    async fn transition_signing_keys(
        &self,
        retire: &[(String, &'static str, OffsetDateTime)],
        promote: Option<&str>,
        insert: &[StoredKey],
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.db()?;
        for (kid, expected, drop_after) in retire {
            let done = sqlx::query("UPDATE signing_keys SET state = 'retired', drop_after = $1 WHERE kid = $2 AND state = $3")
                .bind(micros(*drop_after))
                .bind(kid.clone())
                .bind(expected.to_string())
                .execute(&mut *tx)
                .await
                .db()?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        if let Some(kid) = promote {
            let done = sqlx::query("UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE kid = $2 AND state = 'next'")
                .bind(micros(now))
                .bind(kid.to_string())
                .execute(&mut *tx)
                .await
                .db()?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        for key in insert {
            let inserted = sqlx::query(
                "INSERT INTO signing_keys (kid, alg, state, private_enc, public_jwk, created_at, activated_at, drop_after) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
            )
            .bind(key.kid.clone())
            .bind(key.alg.clone())
            .bind(key.state.clone())
            .bind(key.private_enc.clone())
            .bind(key.public_jwk.to_string())
            .bind(micros(key.created_at))
            .bind(key.activated_at.map(micros))
            .execute(&mut *tx)
            .await
            .db();
            match inserted {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn get_or_init_kv(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_string())
            .bind(value.to_string())
            .execute(&self.write)
            .await
            .db()?;
        let row = sqlx::query("SELECT value FROM kv WHERE key = $1")
            .bind(key.to_string())
            .fetch_one(&self.write)
            .await
            .db()?;
        row.text("value")
    }
}
