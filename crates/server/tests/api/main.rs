//! Integration tests: the real server on port 0 with an isolated database. Every scenario runs
//! on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails by panicking

mod helpers;

mod admin;
mod admin_keys;
mod amplification;
mod attack2;
mod audit;
mod bad_input;
mod browser;
mod clerk;
mod clerk_frontend;
mod clerk_images;
mod clerk_me;
mod clerk_me_factors;
mod clerk_sign_ins;
mod clerk_sign_ups;
mod config;
mod courier;
mod flows;
mod hosted_recovery;
mod mfa;
mod mfa_codes;
mod passkeys;
mod passwordless;
mod ratelimit;
mod recovery;
mod scale;
mod seed;
mod sessions;
mod social;
mod social_providers;
mod tokens;
mod verification;
mod web_hooks;
mod webauthn;
mod webhooks;
