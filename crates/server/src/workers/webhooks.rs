//! Webhook delivery: a background loop per instance.
//!
//! Each endpoint is worked by one instance at a time (a lease in the database), in event
//! order: the head message is retried on the Svix schedule before later ones are sent, so a
//! receiver sees the events of one identity in the order they happened. A 410 answer disables
//! the endpoint, as does failing for five days. Every attempt is logged.

use crate::outbound::{allow_private, read_excerpt, Client};
use crate::AppState;
use portcullis_core::webhooks::{self, Attempt, Outcome, WebhookEndpoint};
use portcullis_core::Error;
use rand::Rng;
use std::time::{Duration, Instant};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);
/// Bytes of a receiver's answer kept in the attempt log (and read at all).
const RESPONSE_EXCERPT: usize = 1024;

pub fn spawn_worker(state: AppState, mut stop: tokio::sync::broadcast::Receiver<()>) {
    let client = Client::new(allow_private(&state));
    let owner = Uuid::new_v4().to_string();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = deliver_due(&state, &client, &owner).await {
                        tracing::warn!(error = %e, "webhook delivery round failed");
                    }
                }
                _ = stop.recv() => break,
            }
        }
    });
}

async fn deliver_due(st: &AppState, client: &Client, owner: &str) -> Result<(), Error> {
    let endpoints = st.core.webhook_endpoints().await?;
    let mut set = tokio::task::JoinSet::new();
    for ep in endpoints.into_iter().filter(|e| e.enabled) {
        let (st, client, owner) = (st.clone(), client.clone(), owner.to_string());
        set.spawn(async move {
            if let Err(e) = work_endpoint(&st, &client, &owner, ep).await {
                tracing::warn!(error = %e, "webhook endpoint round failed");
            }
        });
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

/// Sends the endpoint's due messages in order until one fails or none is due.
async fn work_endpoint(
    st: &AppState,
    client: &Client,
    owner: &str,
    ep: WebhookEndpoint,
) -> Result<(), Error> {
    let core = &st.core;
    // Idle endpoints cost one read per round; the lease (a write) is taken only with work to do.
    if !core.webhook_delivery_due(&ep, core.now()).await? {
        return Ok(());
    }
    for _ in 0..256 {
        let now = core.now();
        let Some(due) = core.claim_webhook_delivery(&ep, owner, LEASE, now).await? else {
            return Ok(());
        };
        let (d, body, sig, ts) = (due.delivery, due.body, due.signature, due.timestamp);
        let started = Instant::now();
        let request = client
            .post(&ep.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", &sig)
            .header("svix-id", &d.event.id)
            .header("svix-timestamp", ts.to_string())
            .header("svix-signature", &sig)
            .body(body);
        let sent = client.send(request).await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let (status, response, error) = match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                (Some(status), read_excerpt(r, RESPONSE_EXCERPT).await, None)
            }
            Err(e) => (None, String::new(), Some(e.to_string())),
        };
        let attempts = d.attempts + 1;
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let outcome = if ok {
            Outcome::Delivered
        } else {
            match webhooks::retry_delay(attempts, rand::thread_rng().gen::<f64>()) {
                Some(wait) => Outcome::Retry { at: now + wait },
                None => Outcome::Failed,
            }
        };
        let attempt = Attempt {
            id: format!("att_{}", Uuid::new_v4().simple()),
            delivery_id: d.id.clone(),
            endpoint_id: ep.id.clone(),
            attempted_at: now,
            status_code: status.map(i64::from),
            latency_ms,
            response,
            error,
        };
        core.record_webhook_attempt(&attempt, &outcome, d.generation, now)
            .await?;
        if status == Some(410) {
            return Ok(());
        }
        if !ok {
            return Ok(());
        }
    }
    Ok(())
}
