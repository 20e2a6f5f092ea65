//! The background loops each instance runs next to its listeners: webhook delivery, the
//! courier (email) and housekeeping (key rotation, expired rows). Each loop stops when the
//! shutdown broadcast fires.

mod cleanup;
pub(crate) mod courier;
mod webhooks;

use crate::AppState;
use tokio::sync::broadcast::Sender;

/// Starts every worker; each ends when `stop` sends.
pub fn spawn(state: &AppState, stop: &Sender<()>) {
    cleanup::spawn_cleanup(state.clone(), stop.subscribe());
    webhooks::spawn_worker(state.clone(), stop.subscribe());
    courier::spawn_worker(state.clone(), stop.subscribe());
}
