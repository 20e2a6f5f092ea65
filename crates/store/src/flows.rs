//! Self-service flows and their errors, both in the `flows` table as JSON documents (errors
//! are rows of kind `error`: same lifetime rules, same clean-up).
//!
//! Completing a flow is a conditional update, so a flow completes once; registration does it
//! in the transaction that creates the account.

use crate::identities::{insert_identity_tx, insert_identity_with_session_tx};
use crate::rows::{micros, to_json, DbResult, RowExt};
use crate::security::write_effects;
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::flow::Flow;
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use portcullis_core::store::{Effects, FlowStore, StoreError, StoreResult};
use serde_json::Value;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;
use time::OffsetDateTime;
use uuid::Uuid;

/// Saves the flow and marks it completed, unless it already is.
fn complete_flow_q(flow: &Flow) -> StoreResult<Query<'static, Any, AnyArguments<'static>>> {
    Ok(
        sqlx::query("UPDATE flows SET data = $1, completed = 1 WHERE id = $2 AND completed = 0")
            .bind(to_json(flow)?)
            .bind(flow.id.to_string()),
    )
}

impl SqlStore {
    /// The `data` JSON of the flows-table row `sql` selects for `id`.
    async fn flow_row<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        id: Uuid,
    ) -> StoreResult<Option<T>> {
        let row = sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .db()?;
        row.map(|r| r.json("data")).transpose()
    }
}

#[async_trait]
impl FlowStore for SqlStore {
    async fn insert_flow(&self, flow: &Flow) -> StoreResult<()> {
        sqlx::query("INSERT INTO flows (id, kind, expires_at, data) VALUES ($1, $2, $3, $4)")
            .bind(flow.id.to_string())
            .bind(flow.kind.as_str())
            .bind(micros(flow.expires_at))
            .bind(to_json(flow)?)
            .execute(&self.write)
            .await
            .db()?;
        Ok(())
    }

    async fn update_flow(&self, flow: &Flow) -> StoreResult<()> {
        let done = sqlx::query("UPDATE flows SET expires_at = $1, data = $2 WHERE id = $3")
            .bind(micros(flow.expires_at))
            .bind(to_json(flow)?)
            .bind(flow.id.to_string())
            .execute(&self.write)
            .await
            .db()?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn update_flow_with(&self, flow: &Flow, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await.db()?;
        let done = sqlx::query("UPDATE flows SET expires_at = $1, data = $2 WHERE id = $3")
            .bind(micros(flow.expires_at))
            .bind(to_json(flow)?)
            .bind(flow.id.to_string())
            .execute(&mut *tx)
            .await
            .db()?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()
    }

    async fn add_code_attempt(&self, flow_id: Uuid) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE flows SET code_attempts = code_attempts + 1 WHERE id = $1 AND kind <> 'error' RETURNING code_attempts",
        )
        .bind(flow_id.to_string())
        .fetch_optional(&self.write)
        .await
        .db()?
        .ok_or(StoreError::NotFound)?;
        let n = row.int("code_attempts")?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn get_flow(&self, id: Uuid) -> StoreResult<Option<Flow>> {
        self.flow_row(
            "SELECT data FROM flows WHERE id = $1 AND kind <> 'error'",
            id,
        )
        .await
    }

    async fn complete_flow(&self, flow: &Flow) -> StoreResult<bool> {
        complete_flow_q(flow)?
            .execute(&self.write)
            .await
            .db()
            .map(|d| d.rows_affected() == 1)
    }

    async fn complete_registration(
        &self,
        flow: &Flow,
        identity: &Identity,
        session: Option<&Session>,
        fx: &Effects,
    ) -> StoreResult<bool> {
        // The conditional UPDATE comes first: on PostgreSQL a concurrent second transaction
        // waits on the flow's row lock and then finds it completed; SQLite has one writer.
        let mut tx = self.write.begin().await.db()?;
        if complete_flow_q(flow)?
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected()
            != 1
        {
            return Ok(false); // dropping `tx` rolls back
        }
        match session {
            Some(s) => insert_identity_with_session_tx(&mut tx, identity, s, fx).await?,
            None => insert_identity_tx(&mut tx, identity, fx).await?,
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn insert_flow_error(
        &self,
        id: Uuid,
        error: &Value,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO flows (id, kind, expires_at, data) VALUES ($1, 'error', $2, $3)")
            .bind(id.to_string())
            .bind(micros(expires_at))
            .bind(error.to_string())
            .execute(&self.write)
            .await
            .db()?;
        Ok(())
    }

    async fn get_flow_error(&self, id: Uuid) -> StoreResult<Option<Value>> {
        self.flow_row(
            "SELECT data FROM flows WHERE id = $1 AND kind = 'error'",
            id,
        )
        .await
    }
}
