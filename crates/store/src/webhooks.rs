//! The outbox and webhook delivery: [`append_event`] (the one place events are written),
//! endpoints, deliveries and the attempt log.
//!
//! Writing the outbox row in the caller's transaction is what makes the outbox exact: the
//! event exists if and only if the change does. Which events exist is the core's decision: a
//! write appends the events its [`Effects`] name, about the rows it wrote.

use crate::rows::{micros, to_json, DbResult, RowExt};
use crate::security::write_effects;
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use portcullis_core::store::{Effects, StoreResult, WebhookStore};
use portcullis_core::webhooks::{
    Attempt, Event, EventKind, Outcome, PendingDelivery, Subject, WebhookEndpoint,
    OPT_IN_EVENT_TYPES,
};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// Appends an event to the outbox and fans it out to every enabled endpoint that wants its
/// type, inside the caller's transaction. `at` is the event time, taken from the change
/// itself. A new delivery is due at once (`next_attempt_at` 0), whatever clock the worker
/// reads.
pub(crate) async fn append_event(
    tx: &mut Transaction<'_, Any>,
    kind: EventKind,
    identity_id: Option<Uuid>,
    payload: Value,
    at: OffsetDateTime,
) -> StoreResult<()> {
    let id = format!("msg_{}", Uuid::new_v4().simple());
    let at = micros(at);
    let row = sqlx::query(
        "INSERT INTO events (id, type, identity_id, payload, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(id.clone())
    .bind(kind.as_str())
    .bind(identity_id.map(|i| i.to_string()))
    .bind(payload.to_string())
    .bind(at)
    .fetch_one(&mut **tx)
    .await
    .db()?;
    let seq = row.int("seq")?;
    // An opt-in event goes only to endpoints that name it, not to the catch-all ones.
    let wants = if kind.opt_in() {
        "e.event_types LIKE $4"
    } else {
        "(e.event_types = '[]' OR e.event_types LIKE $4)"
    };
    sqlx::query(&format!(
        "INSERT INTO deliveries (id, event_seq, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT $1 || ':' || e.id, $2, $1, e.id, 'pending', 0, 0, $3, $3 FROM webhook_endpoints e \
         WHERE e.enabled = 1 AND {wants}"
    ))
    .bind(id)
    .bind(seq)
    .bind(at)
    .bind(format!("%\"{}\"%", kind.as_str()))
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(())
}

/// The identity as events carry it: everything but credential secrets (hashes) and the
/// storage-only `version`.
pub(crate) fn identity_event(identity: &Identity) -> Value {
    let mut v = serde_json::to_value(identity).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    if let Some(creds) = v.get_mut("credentials").and_then(Value::as_object_mut) {
        for c in creds.values_mut() {
            if let Some(o) = c.as_object_mut() {
                o.remove("config");
            }
        }
    }
    json!({ "identity": v })
}

/// A session event carries the session and a snapshot of its identity (read in the same
/// transaction, before a deletion removes it), so payloads can embed the user.
/// Appends the identity events `fx` names, with `identity` as their payload.
pub(crate) async fn identity_events(
    tx: &mut Transaction<'_, Any>,
    fx: &Effects,
    identity: &Identity,
    at: OffsetDateTime,
) -> StoreResult<()> {
    for kind in fx.events_about(Subject::Identity) {
        append_event(tx, kind, Some(identity.id), identity_event(identity), at).await?;
    }
    Ok(())
}

/// Appends the session events `fx` names for the session `s`, which this write started or ended.
pub(crate) async fn session_events(
    tx: &mut Transaction<'_, Any>,
    fx: &Effects,
    s: &Session,
    at: OffsetDateTime,
) -> StoreResult<()> {
    for kind in fx.events_about(Subject::Session) {
        append_session_event(tx, kind, s, at).await?;
    }
    Ok(())
}

async fn append_session_event(
    tx: &mut Transaction<'_, Any>,
    kind: EventKind,
    s: &Session,
    at: OffsetDateTime,
) -> StoreResult<()> {
    let mut payload = json!({ "session": {
        "id": s.id, "identity_id": s.identity_id, "active": s.active,
        "expires_at": micros(s.expires_at), "issued_at": micros(s.issued_at),
        "authenticated_at": micros(s.authenticated_at), "aal": s.aal,
        "authentication_methods": s.authentication_methods, "devices": s.devices,
    } });
    let row = sqlx::query("SELECT data FROM identities WHERE id = $1")
        .bind(s.identity_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .db()?;
    if let (Some(r), Some(o)) = (row, payload.as_object_mut()) {
        let identity: Identity = r.json("data")?;
        if let Some(i) = identity_event(&identity).get_mut("identity") {
            o.insert("identity".into(), i.take());
        }
    }
    append_event(tx, kind, Some(s.identity_id), payload, at).await
}

const ENDPOINT_COLUMNS: &str =
    "id, url, enabled, event_types, format, secrets, description, disabled_reason, failing_since, created_at, updated_at";

fn endpoint_from_row(r: &AnyRow) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: r.text("id")?,
        url: r.text("url")?,
        enabled: r.flag("enabled")?,
        event_types: r.json("event_types")?,
        format: r.text("format")?,
        secrets: r.json("secrets")?,
        description: r.text("description")?,
        disabled_reason: r.opt_text("disabled_reason")?,
        failing_since: r.opt_time("failing_since")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn event_from_row(r: &AnyRow) -> StoreResult<Event> {
    Ok(Event {
        seq: r.int("seq")?,
        id: r.text("event_id")?,
        kind: r.text("type")?,
        identity_id: r.opt_text("identity_id")?,
        payload: r.json("payload")?,
        created_at: r.time("event_created_at")?,
    })
}

fn attempt_from_row(r: &AnyRow) -> StoreResult<Attempt> {
    Ok(Attempt {
        id: r.text("id")?,
        delivery_id: r.text("delivery_id")?,
        endpoint_id: r.text("endpoint_id")?,
        attempted_at: r.time("attempted_at")?,
        status_code: sqlx::Row::try_get(r, "status_code").db()?,
        latency_ms: r.int("latency_ms")?,
        response: r.text("response")?,
        error: r.opt_text("error")?,
    })
}

/// Queues events for an endpoint again (`which` selects them from `events e` with `$3`), due
/// at `$2`. A requeue bumps the delivery's generation, so an attempt already in flight cannot
/// record over it (see `record_attempt`).
fn requeue_sql(which: &str) -> String {
    let opt_in = OPT_IN_EVENT_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO deliveries (id, event_seq, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT e.id || ':' || $1, e.seq, e.id, $1, 'pending', 0, $2, $2, $2 FROM events e \
         JOIN webhook_endpoints w ON w.id = $1 \
         WHERE {which} AND ((w.event_types = '[]' AND e.type NOT IN ({opt_in})) OR w.event_types LIKE '%\"' || e.type || '\"%') \
         ON CONFLICT (id) DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = $2, updated_at = $2, \
         generation = deliveries.generation + 1"
    )
}

impl SqlStore {
    /// Writes the endpoint and, when a row was written, the audit records of `fx`.
    async fn write_endpoint(
        &self,
        ep: &WebhookEndpoint,
        insert: bool,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.db()?;
        let sql = if insert {
            "INSERT INTO webhook_endpoints (url, enabled, event_types, format, secrets, description, disabled_reason, failing_since, updated_at, id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        } else {
            "UPDATE webhook_endpoints SET url = $1, enabled = $2, event_types = $3, format = $4, secrets = $5, description = $6, \
             disabled_reason = $7, failing_since = $8, updated_at = $9 WHERE id = $10 AND created_at = $11"
        };
        let done = sqlx::query(sql)
            .bind(ep.url.clone())
            .bind(i64::from(ep.enabled))
            .bind(to_json(&ep.event_types)?)
            .bind(ep.format.clone())
            .bind(to_json(&ep.secrets)?)
            .bind(ep.description.clone())
            .bind(ep.disabled_reason.clone())
            .bind(ep.failing_since.map(micros))
            .bind(micros(ep.updated_at))
            .bind(ep.id.clone())
            .bind(micros(ep.created_at))
            .execute(&mut *tx)
            .await
            .db()?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()?;
        Ok(true)
    }
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn events_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, id AS event_id, type, identity_id, payload, created_at AS event_created_at FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .db()?;
        rows.iter().map(event_from_row).collect()
    }

    async fn insert_webhook_endpoint(&self, ep: &WebhookEndpoint, fx: &Effects) -> StoreResult<()> {
        self.write_endpoint(ep, true, fx).await.map(|_| ())
    }

    async fn update_webhook_endpoint(
        &self,
        ep: &WebhookEndpoint,
        fx: &Effects,
    ) -> StoreResult<bool> {
        self.write_endpoint(ep, false, fx).await
    }

    async fn delete_webhook_endpoint(&self, id: &str, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.db()?;
        for sql in [
            "DELETE FROM delivery_attempts WHERE endpoint_id = $1",
            "DELETE FROM deliveries WHERE endpoint_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .db()?;
        }
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .db()?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn get_webhook_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        row.map(|r| endpoint_from_row(&r)).transpose()
    }

    async fn list_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
        ))
        .fetch_all(&self.read)
        .await
        .db()?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn lease_webhook_endpoint(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = $1, lease_until = $2 \
             WHERE id = $3 AND enabled = 1 AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)",
        )
        .bind(owner.to_string())
        .bind(micros(until))
        .bind(id.to_string())
        .bind(micros(now))
        .execute(&self.write)
        .await
        .db()?;
        Ok(done.rows_affected() == 1)
    }

    async fn next_delivery(&self, endpoint_id: &str) -> StoreResult<Option<PendingDelivery>> {
        let row = sqlx::query(
            "SELECT d.id AS delivery_id, d.attempts, d.generation, d.next_attempt_at, e.seq, e.id AS event_id, e.type, e.identity_id, e.payload, \
                    e.created_at AS event_created_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.endpoint_id = $1 AND d.status = 'pending' ORDER BY d.event_seq LIMIT 1",
        )
        .bind(endpoint_id.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(PendingDelivery {
            id: r.text("delivery_id")?,
            attempts: r.int("attempts")?,
            generation: r.int("generation")?,
            next_attempt_at: r.time("next_attempt_at")?,
            event: event_from_row(&r)?,
        }))
    }

    async fn record_attempt(
        &self,
        a: &Attempt,
        outcome: &Outcome,
        claimed_generation: i64,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await.db()?;
        sqlx::query(
            "INSERT INTO delivery_attempts (id, delivery_id, endpoint_id, attempted_at, status_code, latency_ms, response, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(a.id.clone())
        .bind(a.delivery_id.clone())
        .bind(a.endpoint_id.clone())
        .bind(micros(a.attempted_at))
        .bind(a.status_code)
        .bind(a.latency_ms)
        .bind(a.response.clone())
        .bind(a.error.clone())
        .execute(&mut *tx)
        .await
        .db()?;
        let (status, next) = match outcome {
            Outcome::Delivered => ("succeeded", a.attempted_at),
            Outcome::Retry { at } => ("pending", *at),
            Outcome::Failed => ("failed", a.attempted_at),
        };
        sqlx::query(
            "UPDATE deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, updated_at = $3 \
             WHERE id = $4 AND generation = $5",
        )
        .bind(status)
        .bind(micros(next))
        .bind(micros(a.attempted_at))
        .bind(a.delivery_id.clone())
        .bind(claimed_generation)
        .execute(&mut *tx)
        .await
        .db()?;
        let endpoint = if matches!(outcome, Outcome::Delivered) {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(a.endpoint_id.clone())
        } else {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2")
                .bind(micros(a.attempted_at))
                .bind(a.endpoint_id.clone())
        };
        endpoint.execute(&mut *tx).await.db()?;
        tx.commit().await.db()
    }

    async fn disable_webhook_endpoint(
        &self,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2, lease_until = NULL WHERE id = $3")
            .bind(reason.to_string())
            .bind(micros(now))
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .db()?;
        Ok(())
    }

    async fn list_attempts(&self, endpoint_id: &str, limit: u32) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, endpoint_id, attempted_at, status_code, latency_ms, response, error FROM delivery_attempts \
             WHERE endpoint_id = $1 ORDER BY attempted_at DESC, id LIMIT $2",
        )
        .bind(endpoint_id.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .db()?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn requeue_event(
        &self,
        endpoint_id: &str,
        event_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(&requeue_sql("e.id = $3"))
            .bind(endpoint_id.to_string())
            .bind(micros(now))
            .bind(event_id.to_string())
            .execute(&self.write)
            .await
            .db()?;
        Ok(done.rows_affected() >= 1)
    }

    async fn replay_since(
        &self,
        endpoint_id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let done = sqlx::query(&requeue_sql("e.created_at >= $3"))
            .bind(endpoint_id.to_string())
            .bind(micros(now))
            .bind(micros(since))
            .execute(&self.write)
            .await
            .db()?;
        Ok(done.rows_affected())
    }
}
