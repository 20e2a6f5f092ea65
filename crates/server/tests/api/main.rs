//! Integration tests: the real server on port 0 with an isolated database. Every scenario runs
//! on SQLite and on PostgreSQL.

mod helpers;

mod admin;
mod bad_input;
mod config;
mod flows;
mod sessions;
