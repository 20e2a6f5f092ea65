//! Portcullis core: identities, schemas, credentials, sessions and flows. Knows nothing of
//! HTTP or SQL; storage is the [`store::Store`] port and time is passed in.

// Errors are the rare path: the size of `Error` (a flow's expiry, an identity's schema
// violations) does not matter, and boxing it would only add noise.
#![allow(clippy::result_large_err)]
// Clerk's `User` object is one large `json!` literal.
#![recursion_limit = "256"]
// Library code does not index or slice where a bad index would panic: `get`, iterators and
// slice patterns say what happens when the data is shorter (tests index freely).
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod admin;
pub mod admin_keys;
pub mod audit;
pub mod clerk;
pub mod clerk_session;
pub mod config;
pub mod courier;
pub mod credentials;
pub mod csrf;
pub mod endpoints;
pub mod error;
pub mod flow;
pub mod identity;
pub mod jsonnet;
pub mod keys;
pub mod methods;
pub mod password;
pub mod profile_image;
pub mod ratelimit;
pub mod schema;
pub mod sealed;
pub mod selfservice;
pub mod service;
pub mod session;
pub mod sessions;
pub mod store;
pub mod tokens;
pub mod ui;
pub mod upstream;
pub mod webhooks;

pub use error::{Error, Result};
