//! Reading rows and mapping errors, so the statements in the other files read as SQL.
//!
//! Times are stored as integer microseconds since the epoch, ids as text and documents as
//! JSON text on both backends; [`RowExt`] turns a column back into its Rust type and every
//! failure into a [`StoreError`], and [`DbResult::db`] maps a driver error once.

use portcullis_core::store::{StoreError, StoreResult};
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

/// A driver error as the port sees it: a unique violation is a conflict on the named
/// constraint (the core turns it into 409), anything else a database error.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
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

pub(crate) fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("corrupt stored document: {e}"))
}

/// `.db()` is `.map_err(db_err)` for any driver result.
pub(crate) trait DbResult<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> DbResult<T> for Result<T, sqlx::Error> {
    fn db(self) -> StoreResult<T> {
        self.map_err(db_err)
    }
}

pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

pub(crate) fn from_micros(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Serialises a document for a JSON text column.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(json_err)
}

/// Typed reads of one column of a row.
pub(crate) trait RowExt {
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<i64>;
    /// An integer column used as a boolean (0 or 1 on both backends).
    fn flag(&self, col: &str) -> StoreResult<bool>;
    fn uuid(&self, col: &str) -> StoreResult<Uuid>;
    fn time(&self, col: &str) -> StoreResult<OffsetDateTime>;
    fn opt_time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>>;
    /// A JSON text column parsed into `T`.
    fn json<T: DeserializeOwned>(&self, col: &str) -> StoreResult<T>;
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).db()
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).db()
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        self.try_get(col).db()
    }
    fn flag(&self, col: &str) -> StoreResult<bool> {
        Ok(self.int(col)? != 0)
    }
    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        Uuid::parse_str(&self.text(col)?).map_err(|e| StoreError::Database(e.to_string()))
    }
    fn time(&self, col: &str) -> StoreResult<OffsetDateTime> {
        Ok(from_micros(self.int(col)?))
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>> {
        Ok(self.try_get::<Option<i64>, _>(col).db()?.map(from_micros))
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> StoreResult<T> {
        serde_json::from_str(&self.text(col)?).map_err(json_err)
    }
}
