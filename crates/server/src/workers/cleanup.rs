//! Housekeeping: signing-key rotation and deletion of expired rows, once a minute.

use crate::AppState;

/// Housekeeping every minute, by the server itself rather than a cron job the operator must
/// remember: rotate the signing key when `tokens.key_rotation_interval` has passed, and delete
/// flows, sessions and refresh tokens a day after they expire (so admins still see recently
/// ended sessions) and retired keys once no token they signed can be valid.
pub(super) fn spawn_cleanup(state: AppState, mut stop: tokio::sync::broadcast::Receiver<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let before = state.core.now() - std::time::Duration::from_secs(24 * 3600);
                    if let Err(e) = state.core.rotate_if_due(state.core.now()).await {
                        tracing::warn!(error = %e, "scheduled signing-key rotation failed");
                    }
                    state.limiter.forget_idle();
                    match state.core.delete_expired(before).await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "deleted expired flows and sessions"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cleanup of expired rows failed"),
                    }
                }
                _ = stop.recv() => break,
            }
        }
    });
}
