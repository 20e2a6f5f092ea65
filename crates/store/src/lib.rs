//! SQLite and PostgreSQL storage for Portcullis.
//!
//! Both backends run through sqlx's `Any` driver with one SQL text: every statement sticks to
//! the common dialect (`$n` parameters, `ON CONFLICT`, `RETURNING`), ids are text, times are
//! integer microseconds and documents are JSON text. One implementation means the two
//! backends cannot drift; statements that must differ branch on [`Backend`] (only refresh
//! rotation does). Each backend has its own migrations folder so its schema can use native
//! features later.
//!
//! The rooms: `pool.rs` opens the database; `rows.rs` and `filter.rs` read rows and build
//! list queries; one file per storage trait of `portcullis_core::store` (identities, sessions,
//! flows, tokens, keys, webhooks, clerk, courier); `cache.rs` is the optional session cache. The store
//! reads no clock: every time it writes comes from its arguments.

// Library code does not index or slice where a bad index would panic: `get`, iterators and
// slice patterns say what happens when the data is shorter (tests index freely).
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

mod cache;
mod clerk;
mod courier;
mod filter;
mod flows;
mod identities;
mod images;
mod keys;
mod pool;
mod rows;
mod security;
mod sessions;
mod tokens;
mod webhooks;

#[cfg(feature = "testing")]
pub mod testing;

pub use pool::{Backend, SqlStore};
