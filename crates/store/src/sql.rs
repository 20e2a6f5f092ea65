use async_trait::async_trait;
use portcullis_core::flow::Flow;
use portcullis_core::identity::Identity;
use portcullis_core::keys::StoredKey;
use portcullis_core::session::{AuthMethod, Device, Session};
use portcullis_core::store::{
    IdentityQuery, RefreshToken, SessionQuery, Store, StoreError, StoreResult,
};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct SqlStore {
    backend: Backend,
    write: AnyPool,
    read: AnyPool,
}

fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            let what = d
                .constraint()
                .map(str::to_string)
                .unwrap_or_else(|| d.message().to_string());
            return StoreError::Conflict(what);
        }
    }
    StoreError::Database(e.to_string())
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("corrupt stored document: {e}"))
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

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

type BoxFut<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> BoxFut<'_> {
    Box::pin(async move {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA busy_timeout = 5000")
            .execute(&mut *conn)
            .await?;
        Ok(())
    })
}

enum Arg {
    S(String),
    I(i64),
}

impl SqlStore {
    /// Connects to `dsn` (`sqlite://PATH`, `sqlite::memory:`, `postgres://…`) without migrating.
    pub async fn connect(dsn: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        if dsn.starts_with("sqlite:") {
            let memory = dsn.contains(":memory:") || dsn.contains("mode=memory");
            let url = if memory {
                // Every connection to `:memory:` opens a fresh database; use one connection for all.
                "sqlite::memory:".to_string()
            } else if dsn.contains('?') {
                dsn.to_string()
            } else {
                format!("{dsn}?mode=rwc")
            };
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(sqlite_pragmas)
                .connect(&url)
                .await
                .map_err(|e| StoreError::Database(format!("cannot open {dsn}: {e}")))?;
            let read = if memory {
                write.clone()
            } else {
                let readers = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2) as u32
                    * 2;
                AnyPoolOptions::new()
                    .max_connections(readers.max(2))
                    .idle_timeout(None)
                    .after_connect(sqlite_pragmas)
                    .connect(&url)
                    .await
                    .map_err(|e| StoreError::Database(format!("cannot open {dsn}: {e}")))?
            };
            Ok(SqlStore {
                backend: Backend::Sqlite,
                write,
                read,
            })
        } else if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(30))
                .connect(dsn)
                .await
                .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
            Ok(SqlStore {
                backend: Backend::Postgres,
                write: pool.clone(),
                read: pool,
            })
        } else {
            Err(StoreError::Database(format!("unsupported DSN {dsn:?}")))
        }
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        m.run(&self.write)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    pub fn kind(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    fn bind<'q>(
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        args: Vec<Arg>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for a in args {
            q = match a {
                Arg::S(s) => q.bind(s),
                Arg::I(i) => q.bind(i),
            };
        }
        q
    }

    async fn write_identity_rows(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
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
                .map_err(db_err)?;
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
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Appends an event to the outbox and fans it out to every enabled endpoint that wants its
    /// type, inside the caller's transaction: the event exists if and only if the change does.
    /// A new delivery is due at once (`next_attempt_at` 0), whatever clock the worker reads.
    async fn append_event(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        kind: &str,
        identity_id: Option<Uuid>,
        payload: serde_json::Value,
    ) -> StoreResult<()> {
        let id = format!("msg_{}", Uuid::new_v4().simple());
        let now = micros(OffsetDateTime::now_utc());
        let row = sqlx::query(
            "INSERT INTO events (id, type, identity_id, payload, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(id.clone())
        .bind(kind.to_string())
        .bind(identity_id.map(|i| i.to_string()))
        .bind(payload.to_string())
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
        let seq: i64 = row.try_get("seq").map_err(db_err)?;
        sqlx::query(
            "INSERT INTO deliveries (id, event_seq, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT $1 || ':' || e.id, $2, $1, e.id, 'pending', 0, 0, $3, $3 FROM webhook_endpoints e \
             WHERE e.enabled = 1 AND (e.event_types = '[]' OR e.event_types LIKE $4)",
        )
        .bind(id)
        .bind(seq)
        .bind(now)
        .bind(format!("%\"{kind}\"%"))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The identity as events carry it: everything but credential secrets (hashes).
    fn identity_event(identity: &Identity) -> serde_json::Value {
        let mut v = serde_json::to_value(identity).unwrap_or_default();
        if let Some(creds) = v
            .get_mut("credentials")
            .and_then(serde_json::Value::as_object_mut)
        {
            for c in creds.values_mut() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("config");
                }
            }
        }
        serde_json::json!({ "identity": v })
    }

    fn session_event(s: &Session) -> serde_json::Value {
        serde_json::json!({ "session": {
            "id": s.id, "identity_id": s.identity_id, "active": s.active,
            "expires_at": micros(s.expires_at), "issued_at": micros(s.issued_at),
            "authenticated_at": micros(s.authenticated_at), "aal": s.aal,
            "authentication_methods": s.authentication_methods, "devices": s.devices,
        } })
    }

    /// Ends sessions matched by `sql` (which must return `id` and `identity_id`), one event each.
    async fn end_sessions(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        kind: &str,
        rows: Vec<AnyRow>,
    ) -> StoreResult<u64> {
        for r in &rows {
            let doc: SessionDoc =
                serde_json::from_str(&r.try_get::<String, _>("data").map_err(db_err)?)
                    .map_err(json_err)?;
            let parse = |c: &str| -> StoreResult<Uuid> {
                Uuid::parse_str(&r.try_get::<String, _>(c).map_err(db_err)?)
                    .map_err(|e| StoreError::Database(e.to_string()))
            };
            let s = Session {
                id: parse("id")?,
                token_hash: r.try_get("token_hash").map_err(db_err)?,
                identity_id: parse("identity_id")?,
                active: false,
                expires_at: from_micros(r.try_get("expires_at").map_err(db_err)?),
                aal: doc.aal,
                authentication_methods: doc.authentication_methods,
                devices: doc.devices,
                issued_at: doc.issued_at,
                authenticated_at: doc.authenticated_at,
            };
            Self::append_session_event(tx, kind, &s).await?;
        }
        Ok(rows.len() as u64)
    }

    /// A session event carries the session and a snapshot of its identity (read in the same
    /// transaction, before a deletion removes it), so payloads can embed the user.
    async fn append_session_event(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        kind: &str,
        s: &Session,
    ) -> StoreResult<()> {
        let mut payload = Self::session_event(s);
        let row = sqlx::query("SELECT data FROM identities WHERE id = $1")
            .bind(s.identity_id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        if let Some(r) = row {
            let identity = Self::identity_from_row(&r, "data")?;
            payload["identity"] = Self::identity_event(&identity)["identity"].clone();
        }
        Self::append_event(tx, kind, Some(s.identity_id), payload).await
    }

    /// Inserts a session and its `session.created` event.
    async fn insert_session_tx(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        s: &Session,
    ) -> StoreResult<()> {
        Self::insert_session_q(s)?
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Self::append_session_event(tx, "session.created", s).await
    }

    async fn insert_identity_tx(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        identity: &Identity,
    ) -> StoreResult<()> {
        let data = serde_json::to_string(identity).map_err(json_err)?;
        sqlx::query(
            "INSERT INTO identities (id, schema_id, state, external_id, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(identity.id.to_string())
        .bind(identity.schema_id.clone())
        .bind(identity.state.clone())
        .bind(identity.external_id.clone())
        .bind(data)
        .bind(micros(identity.created_at))
        .bind(micros(identity.updated_at))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        Self::write_identity_rows(tx, identity).await?;
        Self::append_event(
            tx,
            "user.created",
            Some(identity.id),
            Self::identity_event(identity),
        )
        .await
    }

    fn insert_session_q(
        s: &Session,
    ) -> StoreResult<sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>>> {
        let doc = SessionDoc {
            aal: s.aal.clone(),
            authentication_methods: s.authentication_methods.clone(),
            devices: s.devices.clone(),
            issued_at: s.issued_at,
            authenticated_at: s.authenticated_at,
        };
        Ok(sqlx::query(
            "INSERT INTO sessions (id, token_hash, identity_id, active, expires_at, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id.to_string())
        .bind(s.token_hash.clone())
        .bind(s.identity_id.to_string())
        .bind(i64::from(s.active))
        .bind(micros(s.expires_at))
        .bind(serde_json::to_string(&doc).map_err(json_err)?)
        .bind(micros(s.issued_at)))
    }

    fn insert_refresh_q(
        t: &RefreshToken,
    ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
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
    }

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
            .map_err(db_err)?;
        row.map(|r| {
            Ok((
                Self::session_from_row(&r)?,
                Self::identity_from_row(&r, "i_data")?,
            ))
        })
        .transpose()
    }

    fn refresh_from_row(r: &AnyRow) -> StoreResult<RefreshToken> {
        let uuid = |c: &str| -> StoreResult<Uuid> {
            Uuid::parse_str(&r.try_get::<String, _>(c).map_err(db_err)?)
                .map_err(|e| StoreError::Database(e.to_string()))
        };
        Ok(RefreshToken {
            token_hash: r.try_get("token_hash").map_err(db_err)?,
            jti: r.try_get("jti").map_err(db_err)?,
            family_id: uuid("family_id")?,
            identity_id: uuid("identity_id")?,
            session_id: uuid("session_id")?,
            state: r.try_get("state").map_err(db_err)?,
            expires_at: from_micros(r.try_get("expires_at").map_err(db_err)?),
            created_at: from_micros(r.try_get("created_at").map_err(db_err)?),
            rotated_at: r
                .try_get::<Option<i64>, _>("rotated_at")
                .map_err(db_err)?
                .map(from_micros),
        })
    }

    fn session_from_row(row: &AnyRow) -> StoreResult<Session> {
        let doc: SessionDoc =
            serde_json::from_str(&row.try_get::<String, _>("s_data").map_err(db_err)?)
                .map_err(json_err)?;
        let parse =
            |s: String| Uuid::parse_str(&s).map_err(|e| StoreError::Database(e.to_string()));
        Ok(Session {
            id: parse(row.try_get("s_id").map_err(db_err)?)?,
            token_hash: row.try_get("s_token_hash").map_err(db_err)?,
            identity_id: parse(row.try_get("s_identity_id").map_err(db_err)?)?,
            active: row.try_get::<i64, _>("s_active").map_err(db_err)? != 0,
            expires_at: from_micros(row.try_get("s_expires_at").map_err(db_err)?),
            aal: doc.aal,
            authentication_methods: doc.authentication_methods,
            devices: doc.devices,
            issued_at: doc.issued_at,
            authenticated_at: doc.authenticated_at,
        })
    }

    fn identity_from_row(row: &AnyRow, col: &str) -> StoreResult<Identity> {
        serde_json::from_str(&row.try_get::<String, _>(col).map_err(db_err)?).map_err(json_err)
    }
}

const SESSION_COLUMNS: &str =
    "s.id AS s_id, s.token_hash AS s_token_hash, s.identity_id AS s_identity_id, \
     s.active AS s_active, s.expires_at AS s_expires_at, s.data AS s_data, i.data AS i_data";

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_identity(&self, identity: &Identity) -> StoreResult<()> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        Self::insert_identity_tx(&mut tx, identity).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn insert_identity_with_session(
        &self,
        identity: &Identity,
        session: &Session,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        Self::insert_identity_tx(&mut tx, identity).await?;
        Self::insert_session_tx(&mut tx, session).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_identity(&self, identity: &Identity) -> StoreResult<()> {
        let data = serde_json::to_string(identity).map_err(json_err)?;
        let id = identity.id.to_string();
        let mut tx = self.write.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE identities SET schema_id = $1, state = $2, external_id = $3, data = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(identity.schema_id.clone())
        .bind(identity.state.clone())
        .bind(identity.external_id.clone())
        .bind(data)
        .bind(micros(identity.updated_at))
        .bind(id.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM identity_credential_identifiers WHERE identity_id = $1")
            .bind(id.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM identity_addresses WHERE identity_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Self::write_identity_rows(&mut tx, identity).await?;
        Self::append_event(
            &mut tx,
            "user.updated",
            Some(identity.id),
            Self::identity_event(identity),
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_identity(&self, id: Uuid) -> StoreResult<Option<Identity>> {
        let row = sqlx::query("SELECT data FROM identities WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| Self::identity_from_row(&r, "data")).transpose()
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
        .map_err(db_err)?;
        row.map(|r| Self::identity_from_row(&r, "data")).transpose()
    }

    async fn list_identities(&self, q: &IdentityQuery) -> StoreResult<Vec<Identity>> {
        let mut sql = String::from("SELECT i.data FROM identities i");
        let mut args = vec![];
        let mut conds = vec![];
        if let Some(ci) = &q.credentials_identifier {
            args.push(Arg::S(ci.clone()));
            conds.push(format!(
                "i.id IN (SELECT identity_id FROM identity_credential_identifiers WHERE identifier = ${})",
                args.len()
            ));
        }
        if let Some(after) = q.after {
            args.push(Arg::S(after.to_string()));
            conds.push(format!("i.id > ${}", args.len()));
        }
        if !q.ids.is_empty() {
            let mut ph = vec![];
            for id in &q.ids {
                args.push(Arg::S(id.to_string()));
                ph.push(format!("${}", args.len()));
            }
            conds.push(format!("i.id IN ({})", ph.join(", ")));
        }
        if !conds.is_empty() {
            sql += " WHERE ";
            sql += &conds.join(" AND ");
        }
        args.push(Arg::I(i64::from(q.page_size.max(1))));
        sql += &format!(" ORDER BY i.id LIMIT ${}", args.len());
        let rows = Self::bind(sqlx::query(&sql), args)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Self::identity_from_row(r, "data"))
            .collect()
    }

    async fn delete_identity(&self, identity_id: Uuid) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        let id = identity_id.to_string();
        let gone = sqlx::query(
            "DELETE FROM sessions WHERE identity_id = $1 RETURNING id, token_hash, identity_id, active, expires_at, data",
        )
        .bind(id.clone())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        Self::end_sessions(&mut tx, "session.removed", still_active(gone)).await?;
        for table in ["identity_credential_identifiers", "identity_addresses"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE identity_id = $1"))
                .bind(id.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let done = sqlx::query("DELETE FROM identities WHERE id = $1")
            .bind(id.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        Self::append_event(
            &mut tx,
            "user.deleted",
            Some(identity_id),
            serde_json::json!({ "identity": { "id": id } }),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        Self::insert_session_tx(&mut tx, s).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_session(&self, s: &Session) -> StoreResult<()> {
        let doc = SessionDoc {
            aal: s.aal.clone(),
            authentication_methods: s.authentication_methods.clone(),
            devices: s.devices.clone(),
            issued_at: s.issued_at,
            authenticated_at: s.authenticated_at,
        };
        let mut tx = self.write.begin().await.map_err(db_err)?;
        let was_active = sqlx::query("SELECT active FROM sessions WHERE id = $1")
            .bind(s.id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(|r| r.try_get::<i64, _>("active"))
            .transpose()
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
        sqlx::query("UPDATE sessions SET active = $1, expires_at = $2, data = $3 WHERE id = $4")
            .bind(i64::from(s.active))
            .bind(micros(s.expires_at))
            .bind(serde_json::to_string(&doc).map_err(json_err)?)
            .bind(s.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if was_active == 1 && !s.active {
            Self::append_session_event(&mut tx, "session.revoked", s).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(Session, Identity)>> {
        self.session_where("s.token_hash", token_hash.to_string())
            .await
    }

    async fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, Identity)>> {
        self.session_where("s.id", id.to_string()).await
    }

    async fn list_sessions(
        &self,
        q: &SessionQuery,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<(Session, Identity)>> {
        let mut sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN identities i ON i.id = s.identity_id"
        );
        let mut args = vec![];
        let mut conds = vec![];
        if let Some(id) = q.identity_id {
            args.push(Arg::S(id.to_string()));
            conds.push(format!("s.identity_id = ${}", args.len()));
        }
        if let Some(active) = q.active {
            args.push(Arg::I(micros(now)));
            let live = format!("(s.active = 1 AND s.expires_at > ${})", args.len());
            conds.push(if active { live } else { format!("NOT {live}") });
        }
        if let Some(after) = q.after {
            args.push(Arg::S(after.to_string()));
            conds.push(format!("s.id > ${}", args.len()));
        }
        if let Some(except) = q.except {
            args.push(Arg::S(except.to_string()));
            conds.push(format!("s.id <> ${}", args.len()));
        }
        if !conds.is_empty() {
            sql += " WHERE ";
            sql += &conds.join(" AND ");
        }
        args.push(Arg::I(i64::from(q.page_size.max(1))));
        sql += &format!(" ORDER BY s.id LIMIT ${}", args.len());
        let rows = Self::bind(sqlx::query(&sql), args)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    Self::session_from_row(r)?,
                    Self::identity_from_row(r, "i_data")?,
                ))
            })
            .collect()
    }

    async fn revoke_identity_sessions(
        &self,
        identity_id: Uuid,
        except: Option<Uuid>,
    ) -> StoreResult<u64> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        let ended = sqlx::query(
            "UPDATE sessions SET active = 0 WHERE identity_id = $1 AND active = 1 AND id <> $2 RETURNING id, token_hash, identity_id, active, expires_at, data",
        )
        .bind(identity_id.to_string())
        .bind(except.map(|e| e.to_string()).unwrap_or_default())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let n = Self::end_sessions(&mut tx, "session.revoked", ended).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn delete_identity_sessions(&self, identity_id: Uuid) -> StoreResult<u64> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        let gone = sqlx::query(
            "DELETE FROM sessions WHERE identity_id = $1 RETURNING id, token_hash, identity_id, active, expires_at, data",
        )
        .bind(identity_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let n = gone.len() as u64;
        Self::end_sessions(&mut tx, "session.removed", still_active(gone)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn insert_flow(&self, flow: &Flow) -> StoreResult<()> {
        sqlx::query("INSERT INTO flows (id, kind, expires_at, data) VALUES ($1, $2, $3, $4)")
            .bind(flow.id.to_string())
            .bind(flow.kind.as_str())
            .bind(micros(flow.expires_at))
            .bind(serde_json::to_string(flow).map_err(json_err)?)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn update_flow(&self, flow: &Flow) -> StoreResult<()> {
        let done = sqlx::query("UPDATE flows SET expires_at = $1, data = $2 WHERE id = $3")
            .bind(micros(flow.expires_at))
            .bind(serde_json::to_string(flow).map_err(json_err)?)
            .bind(flow.id.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_flow(&self, id: Uuid) -> StoreResult<Option<Flow>> {
        self.flow_row(
            "SELECT data FROM flows WHERE id = $1 AND kind <> 'error'",
            id,
        )
        .await
    }

    async fn complete_flow(&self, flow: &Flow) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE flows SET data = $1, completed = 1 WHERE id = $2 AND completed = 0",
        )
        .bind(serde_json::to_string(flow).map_err(json_err)?)
        .bind(flow.id.to_string())
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    // Errors share the flows table (kind `error`): same lifetime rules, same clean-up.
    async fn insert_flow_error(
        &self,
        id: Uuid,
        error: &serde_json::Value,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO flows (id, kind, expires_at, data) VALUES ($1, 'error', $2, $3)")
            .bind(id.to_string())
            .bind(micros(expires_at))
            .bind(error.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_flow_error(&self, id: Uuid) -> StoreResult<Option<serde_json::Value>> {
        self.flow_row(
            "SELECT data FROM flows WHERE id = $1 AND kind = 'error'",
            id,
        )
        .await
    }

    async fn delete_expired(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let mut n = 0;
        for sql in [
            "DELETE FROM flows WHERE expires_at < $1",
            "DELETE FROM sessions WHERE expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM signing_keys WHERE state = 'retired' AND drop_after < $1",
        ] {
            n += sqlx::query(sql)
                .bind(micros(before))
                .execute(&self.write)
                .await
                .map_err(db_err)?
                .rows_affected();
        }
        // Events stay replayable for 30 days; then they, their finished deliveries and the
        // attempt log go. Pending deliveries are never dropped.
        let retention = micros(before - std::time::Duration::from_secs(29 * 24 * 3600));
        for sql in [
            "DELETE FROM delivery_attempts WHERE attempted_at < $1",
            "DELETE FROM deliveries WHERE status <> 'pending' AND created_at < $1",
            "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
        ] {
            n += sqlx::query(sql).bind(retention).execute(&self.write).await.map_err(db_err)?.rows_affected();
        }
        Ok(n)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, state, private_enc, public_jwk, created_at, activated_at, drop_after FROM signing_keys ORDER BY created_at DESC",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.try_get("kid").map_err(db_err)?,
                    alg: r.try_get("alg").map_err(db_err)?,
                    state: r.try_get("state").map_err(db_err)?,
                    private_enc: r.try_get("private_enc").map_err(db_err)?,
                    public_jwk: serde_json::from_str(
                        &r.try_get::<String, _>("public_jwk").map_err(db_err)?,
                    )
                    .map_err(json_err)?,
                    created_at: from_micros(r.try_get("created_at").map_err(db_err)?),
                    activated_at: r
                        .try_get::<Option<i64>, _>("activated_at")
                        .map_err(db_err)?
                        .map(from_micros),
                    drop_after: r
                        .try_get::<Option<i64>, _>("drop_after")
                        .map_err(db_err)?
                        .map(from_micros),
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
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        for (kid, expected, drop_after) in retire {
            let done = sqlx::query("UPDATE signing_keys SET state = 'retired', drop_after = $1 WHERE kid = $2 AND state = $3")
                .bind(micros(*drop_after))
                .bind(kid.clone())
                .bind(expected.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
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
                .map_err(db_err)?;
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
            .map_err(db_err);
            match inserted {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn insert_refresh_token(&self, t: &RefreshToken) -> StoreResult<()> {
        Self::insert_refresh_q(t)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query(
            "SELECT token_hash, jti, family_id, identity_id, session_id, state, expires_at, created_at, rotated_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        row.map(|r| Self::refresh_from_row(&r)).transpose()
    }

    async fn rotate_refresh_token(&self, old_hash: &str, new: &RefreshToken) -> StoreResult<bool> {
        // One statement, one round trip to the (single) writer: the child row is inserted only
        // if the parent is still active, and the parent is marked rotated in the same statement
        // (a trigger on SQLite, a data-modifying CTE on PostgreSQL). Of two concurrent rotations
        // of one token exactly one inserts a row.
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO refresh_tokens (token_hash, jti, family_id, identity_id, session_id, state, expires_at, created_at, parent_hash) \
                 SELECT $1, $2, p.family_id, p.identity_id, p.session_id, 'active', $3, $4, p.token_hash \
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
                 extended AS (UPDATE sessions SET expires_at = GREATEST(expires_at, $3) \
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
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn refresh_token_with_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(RefreshToken, Option<(Session, Identity)>)>> {
        let sql = format!(
            "SELECT r.token_hash, r.jti, r.family_id, r.identity_id, r.session_id, r.state, r.expires_at, r.created_at, r.rotated_at, \
                    {SESSION_COLUMNS} \
             FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.session_id LEFT JOIN identities i ON i.id = s.identity_id \
             WHERE r.token_hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(token_hash.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let token = Self::refresh_from_row(&r)?;
        let session = match r.try_get::<Option<String>, _>("s_id").map_err(db_err)? {
            Some(_) => Some((
                Self::session_from_row(&r)?,
                Self::identity_from_row(&r, "i_data")?,
            )),
            None => None,
        };
        Ok(Some((token, session)))
    }

    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE token_hash = $1 AND state = 'active'")
            .bind(token_hash.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_refresh_family(&self, family_id: Uuid) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE family_id = $1 AND state <> 'revoked'")
            .bind(family_id.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn revoke_identity_refresh_tokens(&self, identity_id: Uuid) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE identity_id = $1 AND state = 'active'")
            .bind(identity_id.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn events_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<portcullis_core::webhooks::Event>> {
        self.events_after_impl(after_seq, limit).await
    }

    async fn insert_webhook_endpoint(
        &self,
        ep: &portcullis_core::webhooks::WebhookEndpoint,
    ) -> StoreResult<()> {
        self.write_endpoint(ep, true).await.map(|_| ())
    }

    async fn update_webhook_endpoint(
        &self,
        ep: &portcullis_core::webhooks::WebhookEndpoint,
    ) -> StoreResult<bool> {
        self.write_endpoint(ep, false).await
    }

    async fn delete_webhook_endpoint(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM delivery_attempts WHERE endpoint_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM deliveries WHERE endpoint_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_webhook_endpoint(
        &self,
        id: &str,
    ) -> StoreResult<Option<portcullis_core::webhooks::WebhookEndpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        row.map(|r| endpoint_from_row(&r)).transpose()
    }

    async fn list_webhook_endpoints(
        &self,
    ) -> StoreResult<Vec<portcullis_core::webhooks::WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn lease_webhook_endpoint(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = $1, lease_until = $2 \
             WHERE id = $3 AND enabled = 1 AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)",
        )
        .bind(owner.to_string())
        .bind(micros(until))
        .bind(id.to_string())
        .bind(micros(now))
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn next_delivery(
        &self,
        endpoint_id: &str,
    ) -> StoreResult<Option<portcullis_core::webhooks::PendingDelivery>> {
        let row = sqlx::query(
            "SELECT d.id AS delivery_id, d.attempts, d.generation, d.next_attempt_at, e.seq, e.id AS event_id, e.type, e.identity_id, e.payload, \
                    e.created_at AS event_created_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.endpoint_id = $1 AND d.status = 'pending' ORDER BY d.event_seq LIMIT 1",
        )
        .bind(endpoint_id.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(portcullis_core::webhooks::PendingDelivery {
            id: r.try_get("delivery_id").map_err(db_err)?,
            attempts: r.try_get("attempts").map_err(db_err)?,
            generation: r.try_get("generation").map_err(db_err)?,
            next_attempt_at: from_micros(r.try_get("next_attempt_at").map_err(db_err)?),
            event: event_from_row(&r)?,
        }))
    }

    async fn record_attempt(
        &self,
        a: &portcullis_core::webhooks::Attempt,
        outcome: &portcullis_core::webhooks::Outcome,
        claimed_generation: i64,
    ) -> StoreResult<()> {
        use portcullis_core::webhooks::Outcome;
        let mut tx = self.write.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO delivery_attempts (id, delivery_id, endpoint_id, attempted_at, status_code, latency_ms, response, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(a.id.clone())
        .bind(a.delivery_id.clone())
        .bind(a.endpoint_id.clone())
        .bind(micros(a.attempted_at))
        .bind(a.status_code)
        .bind(a.latency_ms)
        .bind(a.response.clone())
        .bind(a.error.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (status, next) = match outcome {
            Outcome::Delivered => ("succeeded", a.attempted_at),
            Outcome::Retry { at } => ("pending", *at),
            Outcome::Failed => ("failed", a.attempted_at),
        };
        sqlx::query(
            "UPDATE deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, updated_at = $3 \
             WHERE id = $4 AND generation = $5",
        )
            .bind(status)
            .bind(micros(next))
            .bind(micros(a.attempted_at))
            .bind(a.delivery_id.clone())
            .bind(claimed_generation)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let endpoint = if matches!(outcome, Outcome::Delivered) {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(a.endpoint_id.clone())
        } else {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2")
                .bind(micros(a.attempted_at))
                .bind(a.endpoint_id.clone())
        };
        endpoint.execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn disable_webhook_endpoint(
        &self,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2, lease_until = NULL WHERE id = $3")
            .bind(reason.to_string())
            .bind(micros(now))
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_attempts(
        &self,
        endpoint_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<portcullis_core::webhooks::Attempt>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, endpoint_id, attempted_at, status_code, latency_ms, response, error FROM delivery_attempts \
             WHERE endpoint_id = $1 ORDER BY attempted_at DESC, id LIMIT $2",
        )
        .bind(endpoint_id.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(portcullis_core::webhooks::Attempt {
                    id: r.try_get("id").map_err(db_err)?,
                    delivery_id: r.try_get("delivery_id").map_err(db_err)?,
                    endpoint_id: r.try_get("endpoint_id").map_err(db_err)?,
                    attempted_at: from_micros(r.try_get("attempted_at").map_err(db_err)?),
                    status_code: r.try_get("status_code").map_err(db_err)?,
                    latency_ms: r.try_get("latency_ms").map_err(db_err)?,
                    response: r.try_get("response").map_err(db_err)?,
                    error: r.try_get("error").map_err(db_err)?,
                })
            })
            .collect()
    }

    // A requeue bumps the delivery's generation, so an attempt already in flight cannot
    // record over it (see `record_attempt`).
    async fn requeue_event(
        &self,
        endpoint_id: &str,
        event_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "INSERT INTO deliveries (id, event_seq, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT e.id || ':' || $1, e.seq, e.id, $1, 'pending', 0, $2, $2, $2 FROM events e \
             JOIN webhook_endpoints w ON w.id = $1 \
             WHERE e.id = $3 AND (w.event_types = '[]' OR w.event_types LIKE '%\"' || e.type || '\"%') \
             ON CONFLICT (id) DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = $2, updated_at = $2, \
             generation = deliveries.generation + 1",
        )
        .bind(endpoint_id.to_string())
        .bind(micros(now))
        .bind(event_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() >= 1)
    }

    async fn replay_since(
        &self,
        endpoint_id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "INSERT INTO deliveries (id, event_seq, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT e.id || ':' || $1, e.seq, e.id, $1, 'pending', 0, $2, $2, $2 FROM events e \
             JOIN webhook_endpoints w ON w.id = $1 \
             WHERE e.created_at >= $3 AND (w.event_types = '[]' OR w.event_types LIKE '%\"' || e.type || '\"%') \
             ON CONFLICT (id) DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = $2, updated_at = $2, \
             generation = deliveries.generation + 1",
        )
        .bind(endpoint_id.to_string())
        .bind(micros(now))
        .bind(micros(since))
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn insert_clerk_key(
        &self,
        id: &str,
        key_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO clerk_keys (id, key_hash, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(key_hash.to_string())
            .bind(micros(now))
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn clerk_key_hashes(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT key_hash FROM clerk_keys WHERE revoked_at IS NULL")
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get("key_hash").map_err(db_err))
            .collect()
    }

    async fn revoke_clerk_key(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE clerk_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(id.to_string())
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn all_identities(&self) -> StoreResult<Vec<Identity>> {
        let rows = sqlx::query("SELECT data FROM identities ORDER BY created_at DESC, id")
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Self::identity_from_row(r, "data"))
            .collect()
    }

    async fn get_or_init_kv(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_string())
            .bind(value.to_string())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        let row = sqlx::query("SELECT value FROM kv WHERE key = $1")
            .bind(key.to_string())
            .fetch_one(&self.write)
            .await
            .map_err(db_err)?;
        row.try_get("value").map_err(db_err)
    }
}

fn endpoint_from_row(r: &AnyRow) -> StoreResult<portcullis_core::webhooks::WebhookEndpoint> {
    let opt_time = |c: &str| -> StoreResult<Option<OffsetDateTime>> {
        Ok(r.try_get::<Option<i64>, _>(c)
            .map_err(db_err)?
            .map(from_micros))
    };
    Ok(portcullis_core::webhooks::WebhookEndpoint {
        id: r.try_get("id").map_err(db_err)?,
        url: r.try_get("url").map_err(db_err)?,
        enabled: r.try_get::<i64, _>("enabled").map_err(db_err)? != 0,
        event_types: serde_json::from_str(&r.try_get::<String, _>("event_types").map_err(db_err)?)
            .map_err(json_err)?,
        format: r.try_get("format").map_err(db_err)?,
        secrets: serde_json::from_str(&r.try_get::<String, _>("secrets").map_err(db_err)?)
            .map_err(json_err)?,
        description: r.try_get("description").map_err(db_err)?,
        disabled_reason: r.try_get("disabled_reason").map_err(db_err)?,
        failing_since: opt_time("failing_since")?,
        created_at: from_micros(r.try_get("created_at").map_err(db_err)?),
        updated_at: from_micros(r.try_get("updated_at").map_err(db_err)?),
    })
}

fn event_from_row(r: &AnyRow) -> StoreResult<portcullis_core::webhooks::Event> {
    Ok(portcullis_core::webhooks::Event {
        seq: r.try_get("seq").map_err(db_err)?,
        id: r.try_get("event_id").map_err(db_err)?,
        kind: r.try_get("type").map_err(db_err)?,
        identity_id: r.try_get("identity_id").map_err(db_err)?,
        payload: serde_json::from_str(&r.try_get::<String, _>("payload").map_err(db_err)?)
            .map_err(json_err)?,
        created_at: from_micros(r.try_get("event_created_at").map_err(db_err)?),
    })
}

const ENDPOINT_COLUMNS: &str =
    "id, url, enabled, event_types, format, secrets, description, disabled_reason, failing_since, created_at, updated_at";

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
            .map_err(db_err)?;
        row.map(|r| {
            serde_json::from_str(&r.try_get::<String, _>("data").map_err(db_err)?).map_err(json_err)
        })
        .transpose()
    }

    pub(crate) async fn events_after_impl(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<portcullis_core::webhooks::Event>> {
        let rows = sqlx::query(
            "SELECT seq, id AS event_id, type, identity_id, payload, created_at AS event_created_at FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn write_endpoint(
        &self,
        ep: &portcullis_core::webhooks::WebhookEndpoint,
        insert: bool,
    ) -> StoreResult<bool> {
        let sql = if insert {
            "INSERT INTO webhook_endpoints (url, enabled, event_types, format, secrets, description, disabled_reason, failing_since, updated_at, id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        } else {
            "UPDATE webhook_endpoints SET url = $1, enabled = $2, event_types = $3, format = $4, secrets = $5, description = $6, \
             disabled_reason = $7, failing_since = $8, updated_at = $9 WHERE id = $10 AND created_at = $11"
        };
        let done = sqlx::query(sql)
            .bind(ep.url.clone())
            .bind(i64::from(ep.enabled))
            .bind(serde_json::to_string(&ep.event_types).map_err(json_err)?)
            .bind(ep.format.clone())
            .bind(serde_json::to_string(&ep.secrets).map_err(json_err)?)
            .bind(ep.description.clone())
            .bind(ep.disabled_reason.clone())
            .bind(ep.failing_since.map(micros))
            .bind(micros(ep.updated_at))
            .bind(ep.id.clone())
            .bind(micros(ep.created_at))
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}

/// Only sessions that were still active end now (and get an event); the others ended before.
fn still_active(rows: Vec<AnyRow>) -> Vec<AnyRow> {
    rows.into_iter()
        .filter(|r| r.try_get::<i64, _>("active").unwrap_or(0) == 1)
        .collect()
}
