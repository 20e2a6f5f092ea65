//! Webhook endpoint use cases: the admin API's (create, change, delete, rotate the secret,
//! resend, replay), the endpoints declared in the configuration, and the steps of the
//! delivery worker (which owns only the HTTP send). The payload formats and signatures are
//! `crate::webhooks`.

use crate::audit::{AuditKind, By};
use crate::error::{Error, Result};
use crate::service::Core;
use crate::store::Effects;
use crate::webhooks::{self, Attempt, Outcome, PendingDelivery, WebhookEndpoint, WebhookSecret};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// A new endpoint as the admin API received it (the URL already passed the face's checks).
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub enabled: Option<bool>,
    pub events: Option<Vec<String>>,
    pub format: Option<String>,
    pub description: Option<String>,
}

/// Changes to an endpoint; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub enabled: Option<bool>,
    pub events: Option<Vec<String>>,
    pub format: Option<String>,
    pub description: Option<String>,
}

/// The delivery a worker should attempt now, with its signed payload.
pub struct DueDelivery {
    pub delivery: PendingDelivery,
    pub body: String,
    pub signature: String,
    pub timestamp: i64,
}

impl Core {
    pub async fn create_webhook_endpoint(
        &self,
        new: NewEndpoint,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<WebhookEndpoint> {
        let ep = WebhookEndpoint {
            id: format!("ep_{}", Uuid::new_v4().simple()),
            url: new.url,
            enabled: new.enabled.unwrap_or(true),
            event_types: new.events.unwrap_or_default(),
            format: new.format.unwrap_or_else(|| "clerk".into()),
            secrets: vec![WebhookSecret {
                secret: webhooks::new_secret(),
                expires_at: None,
            }],
            description: new.description.unwrap_or_default(),
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        let fx = endpoint_effects(by, AuditKind::WebhookEndpointCreated, &ep, now);
        self.store.insert_webhook_endpoint(&ep, &fx).await?;
        Ok(ep)
    }

    pub async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>> {
        Ok(self.store.list_webhook_endpoints().await?)
    }

    pub async fn webhook_endpoint(&self, id: &str) -> Result<WebhookEndpoint> {
        self.store
            .get_webhook_endpoint(id)
            .await?
            .ok_or_else(|| Error::not_found("No webhook endpoint with this id."))
    }

    /// Applies `changes`; enabling an endpoint also clears why it was disabled.
    pub async fn change_webhook_endpoint(
        &self,
        id: &str,
        changes: EndpointChanges,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<WebhookEndpoint> {
        let mut ep = self.webhook_endpoint(id).await?;
        if let Some(url) = changes.url {
            ep.url = url;
        }
        if let Some(e) = changes.events {
            ep.event_types = e;
        }
        if let Some(f) = changes.format {
            ep.format = f;
        }
        if let Some(d) = changes.description {
            ep.description = d;
        }
        if let Some(enabled) = changes.enabled {
            ep.enabled = enabled;
            if enabled {
                ep.disabled_reason = None;
                ep.failing_since = None;
            }
        }
        ep.updated_at = now;
        let fx = endpoint_effects(by, AuditKind::WebhookEndpointUpdated, &ep, now);
        self.store.update_webhook_endpoint(&ep, &fx).await?;
        Ok(ep)
    }

    pub async fn delete_webhook_endpoint(&self, id: &str, by: &By) -> Result<()> {
        let record = by
            .record(AuditKind::WebhookEndpointDeleted, self.now())
            .target(format!("webhook_endpoint:{id}"));
        if self
            .store
            .delete_webhook_endpoint(id, &Effects::none().audited(record))
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("No webhook endpoint with this id."))
        }
    }

    /// A new signing secret. The previous ones keep signing (a second signature) for `overlap`,
    /// so receivers can switch without a gap; secrets already past their overlap go. Returns
    /// the new secret and when the previous one stops.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        overlap: Duration,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<(String, OffsetDateTime)> {
        // Checked: the overlap comes from a request (security review F14).
        let until = time::Duration::try_from(overlap)
            .ok()
            .and_then(|d| now.checked_add(d))
            .ok_or_else(|| Error::bad_request("`overlap_seconds` is out of range."))?;
        let mut ep = self.webhook_endpoint(id).await?;
        ep.secrets.retain(|s| s.expires_at.is_none_or(|e| e > now));
        for s in &mut ep.secrets {
            if s.expires_at.is_none() {
                s.expires_at = Some(until);
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
        let fx = endpoint_effects(by, AuditKind::WebhookSecretRotated, &ep, now);
        self.store.update_webhook_endpoint(&ep, &fx).await?;
        Ok((fresh, until))
    }

    /// The endpoint's latest delivery attempts (at most 250).
    pub async fn webhook_attempts(&self, id: &str) -> Result<Vec<Attempt>> {
        self.webhook_endpoint(id).await?;
        Ok(self.store.list_attempts(id, 250).await?)
    }

    /// Queues one message for the endpoint again.
    pub async fn resend_webhook_message(
        &self,
        id: &str,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.webhook_endpoint(id).await?;
        if self.store.requeue_event(id, message, now).await? {
            Ok(())
        } else {
            Err(Error::not_found("No message with this id."))
        }
    }

    /// Queues every message since `since` for the endpoint again; returns how many.
    pub async fn replay_webhooks(
        &self,
        id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64> {
        self.webhook_endpoint(id).await?;
        Ok(self.store.replay_since(id, since, now).await?)
    }

    /// Creates or updates the endpoints declared in `webhooks.endpoints`; `check_url` is the
    /// face's guard for outbound URLs.
    pub async fn sync_configured_endpoints(
        &self,
        check_url: impl Fn(&str) -> Result<()>,
        now: OffsetDateTime,
    ) -> Result<()> {
        for c in &self.config.webhooks.endpoints {
            check_url(&c.url)?;
            let secrets = vec![WebhookSecret {
                secret: c.secret.expose().to_string(),
                expires_at: None,
            }];
            match self.store.get_webhook_endpoint(&c.id).await? {
                Some(mut ep) => {
                    ep.url = c.url.clone();
                    ep.event_types = c.events.clone();
                    ep.format = c.format.as_str().to_string();
                    ep.secrets = secrets;
                    // The configuration can turn an endpoint off; it does not silently re-enable
                    // one that delivery disabled (410, five days of failures): that takes the
                    // admin API.
                    if !c.enabled {
                        ep.enabled = false;
                    }
                    ep.updated_at = now;
                    let kind = AuditKind::WebhookEndpointUpdated;
                    let fx = endpoint_effects(&By::system(), kind, &ep, now);
                    self.store.update_webhook_endpoint(&ep, &fx).await?;
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
                    let kind = AuditKind::WebhookEndpointCreated;
                    let fx = endpoint_effects(&By::system(), kind, &ep, now);
                    self.store.insert_webhook_endpoint(&ep, &fx).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether the endpoint has a delivery due now (one read; idle endpoints cost no write).
    pub async fn webhook_delivery_due(
        &self,
        ep: &WebhookEndpoint,
        now: OffsetDateTime,
    ) -> Result<bool> {
        Ok(self
            .store
            .next_delivery(&ep.id)
            .await?
            .is_some_and(|d| d.next_attempt_at <= now))
    }

    /// The next delivery `owner` should attempt for `ep`, signed: `None` when another instance
    /// holds the endpoint's lease, nothing is due, or the endpoint has been failing too long
    /// (it is then disabled).
    pub async fn claim_webhook_delivery(
        &self,
        ep: &WebhookEndpoint,
        owner: &str,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Option<DueDelivery>> {
        if !self
            .store
            .lease_webhook_endpoint(&ep.id, owner, now + lease, now)
            .await?
        {
            return Ok(None);
        }
        if ep
            .failing_since
            .is_some_and(|f| now - f > webhooks::DISABLE_AFTER_FAILING)
        {
            self.store
                .disable_webhook_endpoint(&ep.id, "failing for more than 5 days", now)
                .await?;
            return Ok(None);
        }
        let Some(d) = self.store.next_delivery(&ep.id).await? else {
            return Ok(None);
        };
        if d.next_attempt_at > now {
            return Ok(None);
        }
        let body = webhooks::payload(
            &d.event,
            &ep.format,
            self.public_url(),
            &self.config.webhooks.clerk_mapping,
            &self.config.courier.smtp,
        )
        .to_string();
        let timestamp = now.unix_timestamp();
        let signature =
            webhooks::signature_header(&ep.secrets, &d.event.id, timestamp, body.as_bytes(), now);
        Ok(Some(DueDelivery {
            delivery: d,
            body,
            signature,
            timestamp,
        }))
    }

    /// Records an attempt's outcome; an endpoint that answered 410 Gone is disabled.
    pub async fn record_webhook_attempt(
        &self,
        attempt: &Attempt,
        outcome: &Outcome,
        generation: i64,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.store
            .record_attempt(attempt, outcome, generation)
            .await?;
        if attempt.status_code == Some(410) {
            self.store
                .disable_webhook_endpoint(
                    &attempt.endpoint_id,
                    "the endpoint answered 410 Gone",
                    now,
                )
                .await?;
        }
        Ok(())
    }
}

/// An endpoint change's audit record: where it delivers (scheme, host and port only: receivers
/// such as Slack keep their credential in the path) and its events; never a secret.
fn endpoint_effects(
    by: &By,
    kind: AuditKind,
    ep: &WebhookEndpoint,
    now: OffsetDateTime,
) -> Effects {
    let record = by
        .record(kind, now)
        .target(format!("webhook_endpoint:{}", ep.id))
        .details(serde_json::json!({ "url": url_origin(&ep.url), "events": ep.event_types, "enabled": ep.enabled }));
    Effects::none().audited(record)
}

fn url_origin(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}
