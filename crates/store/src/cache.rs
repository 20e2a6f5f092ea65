//! A read-through cache for session lookups, inside [`SqlStore`](crate::SqlStore).
//!
//! `/sessions/whoami` is the hottest path; with the cache a repeated check is a hash-map hit
//! instead of a query. Correctness rests on one rule: every write that can change what a cached
//! lookup returns (a session update or revocation, an identity update or deletion) bumps a
//! global epoch, and an entry is only served if it was loaded in the current epoch. The epoch
//! is read *before* the database query, so a lookup racing a write is stored with the old epoch
//! and never served. New sessions and identities need no bump: nothing cached refers to them.
//!
//! The cache is process-local, so it is only safe when this process is the only writer: the
//! server enables it for SQLite (an embedded database has one server process) and not for
//! PostgreSQL, where other instances write too.
//!
//! The writes that bump go through `SqlStore::invalidating` (in `pool.rs`); grep for it to
//! see them all.

use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

type Entry = (u64, (Session, Identity));

pub(crate) struct SessionCache {
    epoch: AtomicU64,
    entries: RwLock<HashMap<String, Entry>>,
    capacity: usize,
}

impl SessionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        SessionCache {
            epoch: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The epoch to pass to [`get`](Self::get) and [`put`](Self::put); read it before querying.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, token_hash: &str, epoch: u64) -> Option<(Session, Identity)> {
        let m = self.entries.read().ok()?;
        match m.get(token_hash) {
            Some((e, v)) if *e == epoch => Some(v.clone()),
            _ => None,
        }
    }

    /// Only found sessions are cached: a flood of random tokens must not evict real entries.
    pub(crate) fn put(&self, token_hash: &str, epoch: u64, found: &(Session, Identity)) {
        if let Ok(mut m) = self.entries.write() {
            if m.len() >= self.capacity {
                m.clear();
            }
            m.insert(token_hash.to_string(), (epoch, found.clone()));
        }
    }

    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.entries.write() {
            m.clear();
        }
    }
}
