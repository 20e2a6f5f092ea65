//! Webhook delivery: a background worker per instance, and the admin API for endpoints.
//!
//! Each endpoint is worked by one instance at a time (a lease in the database), in event
//! order: the head message is retried on the Svix schedule before later ones are sent, so a
//! receiver sees the events of one identity in the order they happened. A 410 answer disables
//! the endpoint, as does failing for five days. Every attempt is logged.

use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::webhooks::{self, Attempt, Outcome, WebhookEndpoint, WebhookSecret};
use portcullis_core::Error;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

use portcullis_core::webhooks::EVENT_TYPES;
const LEASE: Duration = Duration::from_secs(30);
const RESPONSE_EXCERPT: usize = 1024;

// ------------------------------------------------------------------ outbound HTTP

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80)
                && v6
                    .to_ipv4_mapped()
                    .is_none_or(|v4| is_public(IpAddr::V4(v4)))
        }
    }
}

/// Resolves names for the webhook client and refuses private addresses (unless allowed), so a
/// webhook URL cannot reach the internal network, however its DNS answers.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if ok.is_empty() {
                return Err(format!(
                    "{} resolves only to private or loopback addresses",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The one outbound HTTP client: timeouts, pooling, no redirects, the private-address guard.
pub fn http_client(allow_private: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .user_agent(concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Checks an endpoint URL when it is registered (an IP literal never reaches the resolver).
fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    let u = url::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("`url` is not a valid URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ApiError::bad_request("`url` must be http or https."));
    }
    let literal = match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::from([127, 0, 0, 1]))
        }
        Some(_) => None,
        None => return Err(ApiError::bad_request("`url` needs a host.")),
    };
    if let Some(ip) = literal.filter(|ip| !allow_private && !is_public(*ip)) {
        return Err(ApiError::bad_request(format!(
            "`url` points at {ip}, a private or loopback address; set webhooks.allow_private_networks to allow it."
        )));
    }
    Ok(())
}

fn allow_private(st: &AppState) -> bool {
    st.core.config.webhooks.allow_private_networks || st.core.config.dev
}

// ------------------------------------------------------------------ worker

pub fn spawn_worker(state: AppState, mut stop: tokio::sync::broadcast::Receiver<()>) {
    let client = http_client(allow_private(&state));
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

async fn deliver_due(st: &AppState, client: &reqwest::Client, owner: &str) -> Result<(), Error> {
    let endpoints = st.core.store.list_webhook_endpoints().await?;
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
    client: &reqwest::Client,
    owner: &str,
    ep: WebhookEndpoint,
) -> Result<(), Error> {
    let core = &st.core;
    // Idle endpoints cost one read per round; the lease (a write) is taken only with work to do.
    match core.store.next_delivery(&ep.id).await? {
        Some(d) if d.next_attempt_at <= core.now() => {}
        _ => return Ok(()),
    }
    for _ in 0..256 {
        let now = core.now();
        if !core
            .store
            .lease_webhook_endpoint(&ep.id, owner, now + LEASE, now)
            .await?
        {
            return Ok(());
        }
        if ep
            .failing_since
            .is_some_and(|f| now - f > webhooks::DISABLE_AFTER_FAILING)
        {
            core.store
                .disable_webhook_endpoint(&ep.id, "failing for more than 5 days", now)
                .await?;
            return Ok(());
        }
        let Some(d) = core.store.next_delivery(&ep.id).await? else {
            return Ok(());
        };
        if d.next_attempt_at > now {
            return Ok(());
        }
        let body = webhooks::payload(
            &d.event,
            &ep.format,
            core.public_url(),
            &core.config.webhooks.clerk_mapping,
        )
        .to_string();
        let ts = now.unix_timestamp();
        let sig = webhooks::signature_header(&ep.secrets, &d.event.id, ts, body.as_bytes(), now);
        let started = Instant::now();
        let sent = client
            .post(&ep.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", &sig)
            .header("svix-id", &d.event.id)
            .header("svix-timestamp", ts.to_string())
            .header("svix-signature", &sig)
            .body(body)
            .send()
            .await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let (status, response, error) = match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (
                    Some(status),
                    text.chars().take(RESPONSE_EXCERPT).collect::<String>(),
                    None,
                )
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
        core.store
            .record_attempt(&attempt, &outcome, d.generation)
            .await?;
        if status == Some(410) {
            core.store
                .disable_webhook_endpoint(&ep.id, "the endpoint answered 410 Gone", now)
                .await?;
            return Ok(());
        }
        if !ok {
            return Ok(());
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ admin API

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(list).post(create))
        .route(
            "/admin/webhooks/{id}",
            get(read).patch(update).delete(remove),
        )
        .route("/admin/webhooks/{id}/secret", get(secret))
        .route("/admin/webhooks/{id}/secret/rotate", post(rotate_secret))
        .route("/admin/webhooks/{id}/attempts", get(attempts))
        .route(
            "/admin/webhooks/{id}/messages/{msg_id}/resend",
            post(resend),
        )
        .route("/admin/webhooks/{id}/replay", post(replay))
}

fn rfc(t: OffsetDateTime) -> String {
    portcullis_core::identity::rfc3339(t)
}

fn endpoint_json(ep: &WebhookEndpoint) -> Value {
    json!({
        "id": ep.id, "url": ep.url, "enabled": ep.enabled, "events": ep.event_types, "format": ep.format,
        "description": ep.description, "disabled_reason": ep.disabled_reason,
        "failing_since": ep.failing_since.map(rfc),
        "created_at": rfc(ep.created_at), "updated_at": rfc(ep.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    format: Option<String>,
    enabled: Option<bool>,
    description: Option<String>,
}

fn parse(body: Value) -> Result<EndpointBody, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}")))
}

fn check_fields(b: &EndpointBody) -> Result<(), ApiError> {
    if let Some(events) = &b.events {
        if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
            return Err(ApiError::bad_request(format!(
                "Unknown event type {bad:?}; known: {}.",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    if let Some(f) = &b.format {
        if !matches!(f.as_str(), "clerk" | "native") {
            return Err(ApiError::bad_request(
                "`format` must be \"clerk\" or \"native\".",
            ));
        }
    }
    Ok(())
}

async fn load(st: &AppState, id: &str) -> ApiResult<WebhookEndpoint> {
    st.core
        .store
        .get_webhook_endpoint(id)
        .await?
        .ok_or_else(|| ApiError(Error::not_found("No webhook endpoint with this id.")))
}

async fn create(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let b = parse(body)?;
    check_fields(&b)?;
    let url = b
        .url
        .clone()
        .ok_or_else(|| ApiError::bad_request("`url` is required."))?;
    check_url(&url, allow_private(&st))?;
    let now = st.core.now();
    let ep = WebhookEndpoint {
        id: format!("ep_{}", Uuid::new_v4().simple()),
        url,
        enabled: b.enabled.unwrap_or(true),
        event_types: b.events.unwrap_or_default(),
        format: b.format.unwrap_or_else(|| "clerk".into()),
        secrets: vec![WebhookSecret {
            secret: webhooks::new_secret(),
            expires_at: None,
        }],
        description: b.description.unwrap_or_default(),
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    st.core.store.insert_webhook_endpoint(&ep).await?;
    let mut v = endpoint_json(&ep);
    v["secret"] = json!(ep.secrets[0].secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let eps = st.core.store.list_webhook_endpoints().await?;
    Ok(Json(Value::Array(eps.iter().map(endpoint_json).collect())))
}

async fn read(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(endpoint_json(&load(&st, &id).await?)))
}

async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let b = parse(body)?;
    check_fields(&b)?;
    let mut ep = load(&st, &id).await?;
    if let Some(url) = b.url {
        check_url(&url, allow_private(&st))?;
        ep.url = url;
    }
    if let Some(e) = b.events {
        ep.event_types = e;
    }
    if let Some(f) = b.format {
        ep.format = f;
    }
    if let Some(d) = b.description {
        ep.description = d;
    }
    if let Some(enabled) = b.enabled {
        ep.enabled = enabled;
        if enabled {
            ep.disabled_reason = None;
            ep.failing_since = None;
        }
    }
    ep.updated_at = st.core.now();
    st.core.store.update_webhook_endpoint(&ep).await?;
    Ok(Json(endpoint_json(&ep)))
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if st.core.store.delete_webhook_endpoint(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(Error::not_found(
            "No webhook endpoint with this id.",
        )))
    }
}

async fn secret(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let ep = load(&st, &id).await?;
    Ok(Json(
        json!({ "secret": ep.secrets.first().map(|s| s.secret.clone()) }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the old secret keeps signing next to the new one (default 24 h).
    overlap_seconds: Option<u64>,
}

async fn rotate_secret(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let b: RotateBody = if body.is_empty() {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}")))?
    };
    let mut ep = load(&st, &id).await?;
    let now = st.core.now();
    let overlap = Duration::from_secs(b.overlap_seconds.unwrap_or(24 * 3600));
    ep.secrets.retain(|s| s.expires_at.is_none_or(|e| e > now));
    for s in &mut ep.secrets {
        if s.expires_at.is_none() {
            s.expires_at = Some(now + overlap);
        }
    }
    let fresh = webhooks::new_secret();
    ep.secrets.insert(
        0,
        WebhookSecret {
            secret: fresh.clone(),
            expires_at: None,
        },
    );
    ep.updated_at = now;
    st.core.store.update_webhook_endpoint(&ep).await?;
    Ok(Json(
        json!({ "secret": fresh, "previous_secret_expires_at": rfc(now + overlap) }),
    ))
}

async fn attempts(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    load(&st, &id).await?;
    let list = st.core.store.list_attempts(&id, 250).await?;
    Ok(Json(serde_json::to_value(list).unwrap_or_default()))
}

async fn resend(
    State(st): State<AppState>,
    Path((id, msg)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    load(&st, &id).await?;
    if st
        .core
        .store
        .requeue_event(&id, &msg, st.core.now())
        .await?
    {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError(Error::not_found("No message with this id.")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    since: String,
}

async fn replay(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    load(&st, &id).await?;
    let b: ReplayBody = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}")))?;
    let since = OffsetDateTime::parse(&b.since, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::bad_request("`since` must be an RFC 3339 time."))?;
    let n = st
        .core
        .store
        .replay_since(&id, since, st.core.now())
        .await?;
    Ok(Json(json!({ "queued": n })))
}

/// Creates or updates the endpoints declared in `webhooks.endpoints`.
pub async fn sync_configured_endpoints(st: &AppState) -> Result<(), Error> {
    let now = st.core.now();
    for c in &st.core.config.webhooks.endpoints {
        check_url(&c.url, allow_private(st)).map_err(|e| e.0)?;
        let secrets = vec![WebhookSecret {
            secret: c.secret.expose().to_string(),
            expires_at: None,
        }];
        match st.core.store.get_webhook_endpoint(&c.id).await? {
            Some(mut ep) => {
                ep.url = c.url.clone();
                ep.event_types = c.events.clone();
                ep.format = c.format.as_str().to_string();
                ep.secrets = secrets;
                // The configuration can turn an endpoint off; it does not silently re-enable one
                // that delivery disabled (410, five days of failures): that takes the admin API.
                if !c.enabled {
                    ep.enabled = false;
                }
                ep.updated_at = now;
                st.core.store.update_webhook_endpoint(&ep).await?;
            }
            None => {
                let ep = WebhookEndpoint {
                    id: c.id.clone(),
                    url: c.url.clone(),
                    enabled: c.enabled,
                    event_types: c.events.clone(),
                    format: c.format.as_str().to_string(),
                    secrets,
                    description: "declared in the configuration".into(),
                    disabled_reason: None,
                    failing_since: None,
                    created_at: now,
                    updated_at: now,
                };
                st.core.store.insert_webhook_endpoint(&ep).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(check_url("http://127.0.0.1:9/x", false).is_err());
        assert!(check_url("http://localhost/x", false).is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_url("ftp://example.com/", true).is_err());
    }
}
