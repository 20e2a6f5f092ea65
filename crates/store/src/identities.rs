//! Identities: the `identities` row holds the whole [`Identity`] as a JSON document; the
//! derived tables `identity_credential_identifiers` and `identity_addresses` make identifiers
//! and addresses unique and findable, and are rewritten with every change.
//!
//! Every write appends the events and audit records the core names for it ([`Effects`]) in
//! the same transaction.

use crate::filter::Filter;
use crate::rows::{micros, to_json, DbResult, RowExt};
use crate::security::write_effects;
use crate::sessions::{delete_sessions_of, insert_session_tx};
use crate::webhooks::{append_event, identity_events};
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use portcullis_core::store::{Effects, IdentityQuery, IdentityStore, StoreError, StoreResult};
use portcullis_core::webhooks::Subject;
use serde_json::json;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// Writes the derived rows (identifiers, addresses) of `identity`.
async fn write_identity_rows(
    tx: &mut Transaction<'_, Any>,
    identity: &Identity,
) -> StoreResult<()> {
    let id = identity.id.to_string();
    for (kind, identifier) in identity.credential_identifiers() {
        sqlx::query("INSERT INTO identity_credential_identifiers (kind, identifier, identity_id) VALUES ($1, $2, $3)")
            .bind(kind)
            .bind(identifier)
            .bind(id.clone())
            .execute(&mut **tx)
            .await
            .db()?;
    }
    let addrs = identity
        .verifiable_addresses
        .iter()
        .map(|a| ("verifiable", a.via.clone(), a.value.clone()))
        .chain(
            identity
                .recovery_addresses
                .iter()
                .map(|a| ("recovery", a.via.clone(), a.value.clone())),
        );
    for (kind, via, value) in addrs {
        sqlx::query("INSERT INTO identity_addresses (kind, via, value, identity_id) VALUES ($1, $2, $3, $4)")
            .bind(kind)
            .bind(via)
            .bind(value)
            .bind(id.clone())
            .execute(&mut **tx)
            .await
            .db()?;
    }
    Ok(())
}

async fn delete_identity_rows(tx: &mut Transaction<'_, Any>, id: &str) -> StoreResult<()> {
    for table in ["identity_credential_identifiers", "identity_addresses"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE identity_id = $1"))
            .bind(id.to_string())
            .execute(&mut **tx)
            .await
            .db()?;
    }
    Ok(())
}

/// Inserts an identity with its effects (its events at its creation time).
pub(crate) async fn insert_identity_tx(
    tx: &mut Transaction<'_, Any>,
    identity: &Identity,
    fx: &Effects,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO identities (id, schema_id, state, external_id, data, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(identity.id.to_string())
    .bind(identity.schema_id.clone())
    .bind(identity.state.clone())
    .bind(identity.external_id.clone())
    .bind(to_json(identity)?)
    .bind(micros(identity.created_at))
    .bind(micros(identity.updated_at))
    .bind(identity.version)
    .execute(&mut **tx)
    .await
    .db()?;
    write_identity_rows(tx, identity).await?;
    identity_events(tx, fx, identity, identity.updated_at).await?;
    write_effects(tx, fx).await
}

/// Inserts a new identity with its first session (registration); the effects' session
/// events are the session's.
pub(crate) async fn insert_identity_with_session_tx(
    tx: &mut Transaction<'_, Any>,
    identity: &Identity,
    session: &Session,
    fx: &Effects,
) -> StoreResult<()> {
    insert_identity_tx(tx, identity, fx).await?;
    insert_session_tx(tx, session, fx).await
}

/// Writes `identity` as its next version if it is still the one stored (else
/// [`StoreError::Stale`], or [`StoreError::NotFound`] when it is gone), with its derived rows
/// and effects; returns the version written, for the caller to take once it commits.
pub(crate) async fn update_identity_tx(
    tx: &mut Transaction<'_, Any>,
    identity: &Identity,
    fx: &Effects,
) -> StoreResult<i64> {
    let mut next = identity.clone();
    next.version += 1;
    let id = next.id.to_string();
    let done = sqlx::query(
        "UPDATE identities SET schema_id = $1, state = $2, external_id = $3, data = $4, updated_at = $5, version = $6 \
         WHERE id = $7 AND version = $8",
    )
    .bind(next.schema_id.clone())
    .bind(next.state.clone())
    .bind(next.external_id.clone())
    .bind(to_json(&next)?)
    .bind(micros(next.updated_at))
    .bind(next.version)
    .bind(id.clone())
    .bind(identity.version)
    .execute(&mut **tx)
    .await
    .db()?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query("SELECT 1 AS one FROM identities WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .db()?
            .is_some();
        return Err(if exists {
            StoreError::Stale
        } else {
            StoreError::NotFound
        });
    }
    delete_identity_rows(tx, &id).await?;
    write_identity_rows(tx, &next).await?;
    identity_events(tx, fx, &next, next.updated_at).await?;
    write_effects(tx, fx).await?;
    Ok(next.version)
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn insert_identity(&self, identity: &Identity, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await.db()?;
        insert_identity_tx(&mut tx, identity, fx).await?;
        tx.commit().await.db()
    }

    async fn insert_identity_with_session(
        &self,
        identity: &Identity,
        session: &Session,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await.db()?;
        insert_identity_with_session_tx(&mut tx, identity, session, fx).await?;
        tx.commit().await.db()
    }

    async fn update_identity(&self, identity: &mut Identity, fx: &Effects) -> StoreResult<()> {
        let next = self
            .invalidating(async {
                let mut tx = self.write.begin().await.db()?;
                let next = update_identity_tx(&mut tx, identity, fx).await?;
                tx.commit().await.db()?;
                Ok(next)
            })
            .await?;
        identity.version = next;
        Ok(())
    }

    async fn get_identity(&self, id: Uuid) -> StoreResult<Option<Identity>> {
        let row = sqlx::query("SELECT data FROM identities WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .db()?;
        row.map(|r| r.json("data")).transpose()
    }

    async fn find_identity_by_address(
        &self,
        kind: &str,
        value: &str,
    ) -> StoreResult<Option<Identity>> {
        let row = sqlx::query(
            "SELECT i.data FROM identity_addresses a JOIN identities i ON i.id = a.identity_id \
             WHERE a.kind = $1 AND a.value = $2 LIMIT 1",
        )
        .bind(kind.to_string())
        .bind(value.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        row.map(|r| r.json("data")).transpose()
    }

    async fn find_identity_by_identifier(
        &self,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Option<Identity>> {
        let row = sqlx::query(
            "SELECT i.data FROM identity_credential_identifiers c JOIN identities i ON i.id = c.identity_id \
             WHERE c.kind = $1 AND c.identifier = $2",
        )
        .bind(kind.to_string())
        .bind(identifier.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        row.map(|r| r.json("data")).transpose()
    }

    async fn list_identities(&self, q: &IdentityQuery) -> StoreResult<Vec<Identity>> {
        let mut f = Filter::default();
        if let Some(ci) = &q.credentials_identifier {
            let p = f.text(ci);
            f.and(format!(
                "i.id IN (SELECT identity_id FROM identity_credential_identifiers WHERE identifier = {p})"
            ));
        }
        if let Some(after) = q.after {
            let p = f.text(after);
            f.and(format!("i.id > {p}"));
        }
        if !q.ids.is_empty() {
            let ph: Vec<String> = q.ids.iter().map(|id| f.text(id)).collect();
            f.and(format!("i.id IN ({})", ph.join(", ")));
        }
        let (sql, args) = f.finish("SELECT i.data FROM identities i", "i.id", q.page_size);
        let rows = args
            .bind(sqlx::query(&sql))
            .fetch_all(&self.read)
            .await
            .db()?;
        rows.iter().map(|r| r.json("data")).collect()
    }

    async fn all_identities(&self) -> StoreResult<Vec<Identity>> {
        let rows = sqlx::query("SELECT data FROM identities ORDER BY created_at DESC, id")
            .fetch_all(&self.read)
            .await
            .db()?;
        rows.iter().map(|r| r.json("data")).collect()
    }

    async fn delete_identity(
        &self,
        identity_id: Uuid,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool> {
        self.invalidating(async {
            let mut tx = self.write.begin().await.db()?;
            let id = identity_id.to_string();
            delete_sessions_of(&mut tx, identity_id, now, fx).await?;
            delete_identity_rows(&mut tx, &id).await?;
            sqlx::query("DELETE FROM profile_images WHERE identity_id = $1")
                .bind(id.clone())
                .execute(&mut *tx)
                .await
                .db()?;
            let done = sqlx::query("DELETE FROM identities WHERE id = $1")
                .bind(id.clone())
                .execute(&mut *tx)
                .await
                .db()?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            // The identity is gone: its events carry only its id.
            for kind in fx.events_about(Subject::Identity) {
                let payload = json!({ "identity": { "id": id } });
                append_event(&mut tx, kind, Some(identity_id), payload, now).await?;
            }
            write_effects(&mut tx, fx).await?;
            tx.commit().await.db()?;
            Ok(true)
        })
        .await
    }
}
