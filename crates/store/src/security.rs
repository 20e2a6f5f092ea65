//! Login-failure counters and the audit log.
//!
//! A failure is counted by one upsert per key whose `SET` reads the old row, so concurrent
//! failures on several instances are all counted (no read-modify-write in the application).

use crate::filter::Filter;
use crate::rows::{micros, to_json, DbResult, RowExt};
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::audit::{Actor, AuditKind, AuditQuery, AuditRecord, Outcome};
use portcullis_core::ratelimit::{Failures, WINDOW};
use portcullis_core::session::Device;
use portcullis_core::store::{Effects, SecurityStore, StoreError, StoreResult};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

#[async_trait]
impl SecurityStore for SqlStore {
    async fn login_failures(&self, keys: &[String]) -> StoreResult<Vec<(String, Failures)>> {
        let mut out = Vec::new();
        for key in keys {
            let row = sqlx::query(
                "SELECT window_start, count, consecutive, last_failure FROM login_failures WHERE key = $1",
            )
            .bind(key.clone())
            .fetch_optional(&self.read)
            .await
            .db()?;
            if let Some(r) = row {
                let count = u32::try_from(r.int("count")?).unwrap_or(u32::MAX);
                let consecutive = u32::try_from(r.int("consecutive")?).unwrap_or(u32::MAX);
                out.push((
                    key.clone(),
                    Failures {
                        count,
                        window_start: r.time("window_start")?,
                        consecutive,
                        last_failure: r.time("last_failure")?,
                    },
                ));
            }
        }
        Ok(out)
    }

    async fn record_login_failure(&self, keys: &[String], now: OffsetDateTime) -> StoreResult<()> {
        let window_open_after = micros(now - WINDOW);
        let mut tx = self.write.begin().await.db()?;
        for key in keys {
            sqlx::query(
                "INSERT INTO login_failures (key, window_start, count, consecutive, last_failure)
                 VALUES ($1, $2, 1, 1, $2)
                 ON CONFLICT (key) DO UPDATE SET
                   count = CASE WHEN login_failures.window_start > $3 THEN login_failures.count + 1 ELSE 1 END,
                   window_start = CASE WHEN login_failures.window_start > $3 THEN login_failures.window_start ELSE $2 END,
                   consecutive = login_failures.consecutive + 1,
                   last_failure = $2",
            )
            .bind(key.clone())
            .bind(micros(now))
            .bind(window_open_after)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()
    }

    async fn reset_login_failures(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            sqlx::query(
                "UPDATE login_failures SET consecutive = 0 WHERE key = $1 AND consecutive <> 0",
            )
            .bind(key.clone())
            .execute(&self.write)
            .await
            .db()?;
        }
        Ok(())
    }

    async fn has_session_from_ip(
        &self,
        identity_id: Uuid,
        ip: &str,
        since: OffsetDateTime,
    ) -> StoreResult<bool> {
        #[derive(serde::Deserialize)]
        struct Devices {
            devices: Vec<Device>,
        }
        // The newest sessions are enough to recognise a device in use.
        let rows = sqlx::query(
            "SELECT data FROM sessions WHERE identity_id = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 100",
        )
        .bind(identity_id.to_string())
        .bind(micros(since))
        .fetch_all(&self.read)
        .await
        .db()?;
        for r in &rows {
            let doc: Devices = r.json("data")?;
            if doc
                .devices
                .iter()
                .any(|d| d.ip_address.as_deref() == Some(ip))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn insert_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        audit_insert(r)?.execute(&self.write).await.db()?;
        Ok(())
    }

    async fn list_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let mut f = Filter::default();
        if let Some(id) = q.identity_id {
            let p = f.text(id);
            f.and(format!("identity_id = {p}"));
        }
        if let Some(k) = q.kind {
            let p = f.text(k.as_str());
            f.and(format!("kind = {p}"));
        }
        if let Some(t) = q.since {
            let p = f.int(micros(t));
            f.and(format!("at >= {p}"));
        }
        if let Some(t) = q.until {
            let p = f.int(micros(t));
            f.and(format!("at < {p}"));
        }
        if let Some(before) = q.before {
            let p = f.text(before);
            f.and(format!("id < {p}"));
        }
        let (sql, args) = f.finish("SELECT * FROM audit_log", "id DESC", q.page_size);
        let rows = args
            .bind(sqlx::query(&sql))
            .fetch_all(&self.read)
            .await
            .db()?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn delete_audit_before(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let n = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(micros(before))
            .execute(&self.write)
            .await
            .db()?
            .rows_affected();
        Ok(n)
    }
}

/// Writes the audit records and the courier messages (each with its `email.created` event)
/// of `fx` in the transaction of the change they belong to. Every write path calls this
/// exactly once per transaction (registration's identity-and-session insert included: only
/// `insert_identity_tx` calls it there), so a message is queued once.
pub(crate) async fn write_effects(tx: &mut Transaction<'_, Any>, fx: &Effects) -> StoreResult<()> {
    for r in fx.audit() {
        audit_insert(r)?.execute(&mut **tx).await.db()?;
    }
    crate::courier::queue_messages(tx, fx).await
}

fn audit_insert(r: &AuditRecord) -> StoreResult<Query<'static, Any, AnyArguments<'static>>> {
    Ok(sqlx::query(
        "INSERT INTO audit_log (id, at, kind, actor_kind, actor_id, identity_id, target, ip, user_agent, outcome, reason, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(r.id.to_string())
    .bind(micros(r.at))
    .bind(r.kind.as_str())
    .bind(r.actor.kind())
    .bind(r.actor.id())
    .bind(r.identity_id.map(|i| i.to_string()))
    .bind(r.target.clone())
    .bind(r.ip.clone())
    .bind(r.user_agent.clone())
    .bind(r.outcome.as_str())
    .bind(r.reason.clone())
    .bind(to_json(&r.details)?))
}

fn audit_from_row(r: &AnyRow) -> StoreResult<AuditRecord> {
    let bad = |what: &str| StoreError::Database(format!("corrupt audit record: {what}"));
    let kind = AuditKind::parse(&r.text("kind")?).ok_or_else(|| bad("kind"))?;
    let actor_id = r.opt_text("actor_id")?;
    let actor = match r.text("actor_kind")?.as_str() {
        "identity" => Actor::Identity(
            actor_id
                .as_deref()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| bad("actor"))?,
        ),
        "admin" => Actor::Admin { key_id: actor_id },
        "clerk_key" => Actor::ClerkKey(actor_id.unwrap_or_default()),
        "system" => Actor::System,
        _ => Actor::Anonymous,
    };
    let outcome = match r.text("outcome")?.as_str() {
        "success" => Outcome::Success,
        _ => Outcome::Failure,
    };
    Ok(AuditRecord {
        id: r.uuid("id")?,
        at: r.time("at")?,
        kind,
        actor,
        ip: r.opt_text("ip")?,
        user_agent: r.opt_text("user_agent")?,
        identity_id: r
            .opt_text("identity_id")?
            .and_then(|s| Uuid::parse_str(&s).ok()),
        target: r.opt_text("target")?,
        outcome,
        reason: r.opt_text("reason")?,
        details: r.json("details")?,
    })
}
