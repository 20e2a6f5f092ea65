//! The background loops each instance runs next to its listeners: webhook delivery and
//! housekeeping (key rotation, expired rows). The courier will be the next one here. Each
//! loop stops when the shutdown broadcast fires.

mod cleanup;
mod webhooks;

use crate::AppState;
use tokio::sync::broadcast::Sender;

/// Starts every worker; each ends when `stop` sends.
pub fn spawn(state: &AppState, stop: &Sender<()>) {
    cleanup::spawn_cleanup(state.clone(), stop.subscribe());
    webhooks::spawn_worker(state.clone(), stop.subscribe());
}
