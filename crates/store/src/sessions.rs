//! Sessions: the row (`sessions`, with the fields that are not queried in a `data` JSON
//! document), the one mapping from a row back to a [`Session`], and the session cache lookup.
//!
//! A write appends the session events its [`Effects`] name for each session it starts or ends
//! (a session deleted after it had ended gets none), in the same transaction.

use crate::filter::Filter;
use crate::rows::{micros, to_json, DbResult, RowExt};
use crate::security::write_effects;
use crate::webhooks::session_events;
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::identity::Identity;
use portcullis_core::session::{AuthMethod, Device, Session};
use portcullis_core::store::{Effects, SessionQuery, SessionStore, StoreError, StoreResult};
use portcullis_core::webhooks::Subject;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// The session fields that live in the `data` document.
#[derive(Serialize, Deserialize)]
struct SessionDoc {
    aal: String,
    authentication_methods: Vec<AuthMethod>,
    devices: Vec<Device>,
    #[serde(with = "time::serde::rfc3339")]
    issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    authenticated_at: OffsetDateTime,
}

impl From<&Session> for SessionDoc {
    fn from(s: &Session) -> Self {
        SessionDoc {
            aal: s.aal.clone(),
            authentication_methods: s.authentication_methods.clone(),
            devices: s.devices.clone(),
            issued_at: s.issued_at,
            authenticated_at: s.authenticated_at,
        }
    }
}

/// The session columns under the names [`session_from_row`] reads, for a `sessions s` joined
/// with `identities i`.
pub(crate) const SESSION_COLUMNS: &str =
    "s.id AS s_id, s.token_hash AS s_token_hash, s.identity_id AS s_identity_id, \
     s.active AS s_active, s.expires_at AS s_expires_at, s.data AS s_data, i.data AS i_data";

/// The same names in a `RETURNING` clause of a statement on `sessions` alone.
pub(crate) const SESSION_RETURNING: &str =
    "RETURNING id AS s_id, token_hash AS s_token_hash, identity_id AS s_identity_id, \
     active AS s_active, expires_at AS s_expires_at, data AS s_data";

pub(crate) fn session_from_row(row: &AnyRow) -> StoreResult<Session> {
    let doc: SessionDoc = row.json("s_data")?;
    Ok(Session {
        id: row.uuid("s_id")?,
        token_hash: row.text("s_token_hash")?,
        identity_id: row.uuid("s_identity_id")?,
        active: row.flag("s_active")?,
        expires_at: row.time("s_expires_at")?,
        aal: doc.aal,
        authentication_methods: doc.authentication_methods,
        devices: doc.devices,
        issued_at: doc.issued_at,
        authenticated_at: doc.authenticated_at,
    })
}

/// A session row joined with its identity (`SESSION_COLUMNS`).
pub(crate) fn session_with_identity(row: &AnyRow) -> StoreResult<(Session, Identity)> {
    Ok((session_from_row(row)?, row.json("i_data")?))
}

/// Inserts a session with its session events (at the session's issue time). The caller writes
/// the audit records of `fx`.
pub(crate) async fn insert_session_tx(
    tx: &mut Transaction<'_, Any>,
    s: &Session,
    fx: &Effects,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, identity_id, active, expires_at, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(s.id.to_string())
    .bind(s.token_hash.clone())
    .bind(s.identity_id.to_string())
    .bind(i64::from(s.active))
    .bind(micros(s.expires_at))
    .bind(to_json(&SessionDoc::from(s))?)
    .bind(micros(s.issued_at))
    .execute(&mut **tx)
    .await
    .db()?;
    session_events(tx, fx, s, s.issued_at).await
}

/// Ends the sessions in `rows` (from a statement `RETURNING` [`SESSION_RETURNING`]) with the
/// session events of `fx` each; returns how many.
pub(crate) async fn end_sessions(
    tx: &mut Transaction<'_, Any>,
    fx: &Effects,
    rows: Vec<AnyRow>,
    now: OffsetDateTime,
) -> StoreResult<u64> {
    for r in &rows {
        let mut s = session_from_row(r)?;
        s.active = false;
        session_events(tx, fx, &s, now).await?;
    }
    Ok(rows.len() as u64)
}

/// Deletes the identity's sessions; the ones still active get the session events of `fx`.
/// Returns how many rows went. The caller writes the audit records.
pub(crate) async fn delete_sessions_of(
    tx: &mut Transaction<'_, Any>,
    identity_id: Uuid,
    now: OffsetDateTime,
    fx: &Effects,
) -> StoreResult<u64> {
    let gone = sqlx::query(&format!(
        "DELETE FROM sessions WHERE identity_id = $1 {SESSION_RETURNING}"
    ))
    .bind(identity_id.to_string())
    .fetch_all(&mut **tx)
    .await
    .db()?;
    let n = gone.len() as u64;
    // Only sessions that were still active end now (and get an event); the others ended before.
    let still_active = gone
        .into_iter()
        .filter(|r| r.flag("s_active").unwrap_or(false))
        .collect();
    end_sessions(tx, fx, still_active, now).await?;
    Ok(n)
}

impl SqlStore {
    /// One session with its identity, found by a unique column (`s.id` or `s.token_hash`).
    async fn session_where(
        &self,
        column: &'static str,
        value: String,
    ) -> StoreResult<Option<(Session, Identity)>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s JOIN identities i ON i.id = s.identity_id WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.read)
            .await
            .db()?;
        row.map(|r| session_with_identity(&r)).transpose()
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, s: &Session, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await.db()?;
        insert_session_tx(&mut tx, s, fx).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()
    }

    async fn update_session(
        &self,
        s: &Session,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<bool> {
        self.invalidating(async {
            let mut tx = self.write.begin().await.db()?;
            let was_active = sqlx::query("SELECT active FROM sessions WHERE id = $1")
                .bind(s.id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .db()?
                .map(|r| r.flag("active"))
                .transpose()?
                .ok_or(StoreError::NotFound)?;
            // `active` only ever goes from 1 to 0, judged on the row as it is now: a caller
            // that read the session before a revocation cannot undo it (security review S1).
            let active = sqlx::query(
                "UPDATE sessions SET active = CASE WHEN active = 1 AND $1 = 1 THEN 1 ELSE 0 END, \
                 expires_at = $2, data = $3 WHERE id = $4 RETURNING active",
            )
            .bind(i64::from(s.active))
            .bind(micros(s.expires_at))
            .bind(to_json(&SessionDoc::from(s))?)
            .bind(s.id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .db()?
            .ok_or(StoreError::NotFound)?
            .flag("active")?;
            let ends = was_active && !s.active;
            if ends {
                session_events(&mut tx, fx, s, now).await?;
            }
            // A write that names session events is about the session ending: when it had
            // ended already, nothing happened, so nothing is recorded either.
            if ends || fx.events_about(Subject::Session).next().is_none() {
                write_effects(&mut tx, fx).await?;
            }
            tx.commit().await.db()?;
            Ok(active)
        })
        .await
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(Session, Identity)>> {
        let Some(cache) = &self.cache else {
            return self
                .session_where("s.token_hash", token_hash.to_string())
                .await;
        };
        // Read the epoch before the query (see cache.rs).
        let epoch = cache.epoch();
        if let Some(hit) = cache.get(token_hash, epoch) {
            return Ok(Some(hit));
        }
        let loaded = self
            .session_where("s.token_hash", token_hash.to_string())
            .await?;
        if let Some(found) = &loaded {
            cache.put(token_hash, epoch, found);
        }
        Ok(loaded)
    }

    async fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, Identity)>> {
        self.session_where("s.id", id.to_string()).await
    }

    async fn list_sessions(
        &self,
        q: &SessionQuery,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<(Session, Identity)>> {
        let mut f = Filter::default();
        if let Some(id) = q.identity_id {
            let p = f.text(id);
            f.and(format!("s.identity_id = {p}"));
        }
        if let Some(active) = q.active {
            let live = format!("(s.active = 1 AND s.expires_at > {})", f.int(micros(now)));
            f.and(if active { live } else { format!("NOT {live}") });
        }
        if let Some(after) = q.after {
            let p = f.text(after);
            f.and(format!("s.id > {p}"));
        }
        if let Some(except) = q.except {
            let p = f.text(except);
            f.and(format!("s.id <> {p}"));
        }
        let (sql, args) = f.finish(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN identities i ON i.id = s.identity_id"
            ),
            "s.id",
            q.page_size,
        );
        let rows = args
            .bind(sqlx::query(&sql))
            .fetch_all(&self.read)
            .await
            .db()?;
        rows.iter().map(session_with_identity).collect()
    }

    async fn revoke_identity_sessions(
        &self,
        identity_id: Uuid,
        except: Option<Uuid>,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<u64> {
        self.invalidating(async {
            let mut tx = self.write.begin().await.db()?;
            let ended = sqlx::query(&format!(
                "UPDATE sessions SET active = 0 WHERE identity_id = $1 AND active = 1 AND id <> $2 {SESSION_RETURNING}"
            ))
            .bind(identity_id.to_string())
            .bind(except.map(|e| e.to_string()).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await
            .db()?;
            let n = end_sessions(&mut tx, fx, ended, now).await?;
            if n > 0 {
                write_effects(&mut tx, fx).await?;
            }
            tx.commit().await.db()?;
            Ok(n)
        })
        .await
    }

    async fn delete_identity_sessions(
        &self,
        identity_id: Uuid,
        now: OffsetDateTime,
        fx: &Effects,
    ) -> StoreResult<u64> {
        self.invalidating(async {
            let mut tx = self.write.begin().await.db()?;
            let n = delete_sessions_of(&mut tx, identity_id, now, fx).await?;
            if n > 0 {
                write_effects(&mut tx, fx).await?;
            }
            tx.commit().await.db()?;
            Ok(n)
        })
        .await
    }
}
