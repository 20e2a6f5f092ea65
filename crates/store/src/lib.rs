//! SQLite and PostgreSQL storage for Portcullis.
//!
//! Both backends run through sqlx's `Any` driver with one SQL text: every statement sticks to
//! the common dialect (`$n` parameters, `ON CONFLICT`, `RETURNING`), ids are text, times are
//! integer microseconds and documents are JSON text. One implementation means the two
//! backends cannot drift; statements that must differ branch on [`Backend`]. Each backend has
//! its own migrations folder so its schema can use native features later.
//!
//! SQLite runs in WAL mode with one writer connection (SQLite allows one writer at a time;
//! queueing in the pool is cheaper than `SQLITE_BUSY` retries) and a pool of readers.

mod cache;
mod sql;
pub mod testing;

pub use cache::SessionCache;
pub use sql::{Backend, SqlStore};
