//! Portcullis core: identities, schemas, credentials, sessions and flows. Knows nothing of
//! HTTP or SQL; storage is the [`store::Store`] port and time is passed in.

// `Error::Api` carries the whole Kratos error (status, id, reason, details); errors are the
// rare path, so its size does not matter and boxing it would only add noise.
#![allow(clippy::result_large_err)]
// Clerk's `User` object is one large `json!` literal.
#![recursion_limit = "256"]

pub mod admin;
pub mod audit;
pub mod config;
pub mod csrf;
pub mod error;
pub mod flow;
pub mod identity;
pub mod keys;
pub mod password;
pub mod ratelimit;
pub mod schema;
pub mod service;
pub mod session;
pub mod store;
pub mod tokens;
pub mod ui;
pub mod webhooks;

pub use error::{Error, Result};
