//! Opening the database: the DSN, the pools, the pragmas and the migrations.
//!
//! SQLite runs in WAL mode with one writer connection (SQLite allows one writer at a time;
//! queueing in the pool is cheaper than `SQLITE_BUSY` retries) and a pool of readers.
//! PostgreSQL uses one pool for both.

use crate::cache::SessionCache;
use crate::rows::DbResult;
use async_trait::async_trait;
use portcullis_core::store::{MaintenanceStore, StoreError, StoreResult};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store: one implementation of every storage trait for both backends. Clones share the
/// pools and the session cache.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) backend: Backend,
    pub(crate) write: AnyPool,
    pub(crate) read: AnyPool,
    /// The in-process session cache (see `cache.rs`), when this process is the only writer.
    pub(crate) cache: Option<Arc<SessionCache>>,
}

type BoxFut<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> BoxFut<'_> {
    Box::pin(async move {
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = ON",
            "PRAGMA busy_timeout = 5000",
        ] {
            sqlx::query(pragma).execute(&mut *conn).await?;
        }
        Ok(())
    })
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
                cache: None,
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
                cache: None,
            })
        } else {
            Err(StoreError::Database(format!("unsupported DSN {dsn:?}")))
        }
    }

    /// Turns on the in-process session cache, holding up to `capacity` lookups. Only safe when
    /// this process is the only writer to the database (see `cache.rs`).
    pub fn with_session_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(SessionCache::new(capacity)));
        self
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

    /// Runs a write that can change what a cached session lookup returns, then invalidates
    /// the cache. The bump comes after the write has committed (or failed), which is what
    /// the cache's epoch rule needs.
    pub(crate) async fn invalidating<T>(
        &self,
        write: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let r = write.await;
        if let Some(cache) = &self.cache {
            cache.bump();
        }
        r
    }
}

#[async_trait]
impl MaintenanceStore for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.db()?;
        Ok(())
    }

    async fn delete_expired(&self, before: OffsetDateTime) -> StoreResult<u64> {
        use crate::rows::micros;
        self.invalidating(async {
            let mut n = 0;
            for sql in [
                "DELETE FROM flows WHERE expires_at < $1",
                "DELETE FROM sessions WHERE expires_at < $1",
                "DELETE FROM refresh_tokens WHERE expires_at < $1",
                "DELETE FROM signing_keys WHERE state = 'retired' AND drop_after < $1",
                // A day without failures outlasts the hourly window and every delay.
                "DELETE FROM login_failures WHERE last_failure < $1",
            ] {
                n += sqlx::query(sql)
                    .bind(micros(before))
                    .execute(&self.write)
                    .await
                    .db()?
                    .rows_affected();
            }
            // Events stay replayable for 30 days; then they, their finished deliveries and the
            // attempt log go. Pending deliveries are never dropped.
            let retention = micros(before - Duration::from_secs(29 * 24 * 3600));
            for sql in [
                "DELETE FROM delivery_attempts WHERE attempted_at < $1",
                "DELETE FROM deliveries WHERE status <> 'pending' AND created_at < $1",
                "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
            ] {
                n += sqlx::query(sql)
                    .bind(retention)
                    .execute(&self.write)
                    .await
                    .db()?
                    .rows_affected();
            }
            Ok(n)
        })
        .await
    }
}
