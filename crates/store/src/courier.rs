//! The courier's queue: `courier_messages` and `courier_dispatches`.
//!
//! A message is inserted by [`queue_messages`] in the transaction of the write that causes it
//! (through `write_effects`), with its `email.created` event. Sending is claim-based so any
//! number of instances can share one database: [`CourierStore::claim_messages`] moves due
//! messages to `processing` under the claimer's lease in one statement. On PostgreSQL the
//! candidate rows are picked once, in a CTE, and locked `FOR UPDATE SKIP LOCKED` (concurrent
//! claimers take different messages instead of queueing behind each other), and the update's
//! `WHERE` repeats the condition, so a row another claimer took meanwhile is re-checked and
//! skipped; SQLite has one writer. An attempt is recorded only against the claim it was made under.

use crate::filter::Filter;
use crate::pool::Backend;
use crate::rows::{micros, DbResult, RowExt};
use crate::webhooks::append_event;
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::courier::{
    Delivery, Dispatch, DispatchStatus, Locale, Message, MessageQuery, MessageStatus, TemplateKind,
};
use portcullis_core::store::{CourierStore, Effects, StoreError, StoreResult};
use portcullis_core::webhooks::EventKind;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

const MESSAGE_COLUMNS: &str =
    "id, status, channel, recipient, template_type, locale, subject, body, html_body, \
     identity_id, send_count, created_at, updated_at";

/// Which messages a claimer may take at `$3`: queued and due, or processing under a lease
/// that has run out.
const CLAIMABLE: &str =
    "((status = 'queued' AND next_attempt_at <= $3) OR (status = 'processing' AND lease_until < $3))";

/// Inserts the messages of `fx`, each with its `email.created` event, in the caller's
/// transaction. Called once per write, from `write_effects`.
pub(crate) async fn queue_messages(tx: &mut Transaction<'_, Any>, fx: &Effects) -> StoreResult<()> {
    for m in fx.messages() {
        sqlx::query(
            "INSERT INTO courier_messages (id, status, channel, recipient, template_type, locale, subject, body, html_body, \
             identity_id, send_count, next_attempt_at, created_at, updated_at) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, $11)",
        )
        .bind(m.id.to_string())
        .bind(m.channel.clone())
        .bind(m.recipient.clone())
        .bind(m.template.as_str())
        .bind(m.locale.as_str())
        .bind(m.subject.clone())
        .bind(m.body.clone())
        .bind(m.html_body.clone())
        .bind(m.identity_id.map(|i| i.to_string()))
        .bind(micros(m.created_at))
        .bind(micros(m.updated_at))
        .execute(&mut **tx)
        .await
        .db()?;
        append_event(
            tx,
            EventKind::EmailCreated,
            m.identity_id,
            m.event_payload(),
            m.created_at,
        )
        .await?;
    }
    Ok(())
}

fn message_from_row(r: &AnyRow) -> StoreResult<Message> {
    let bad = |what: &str| StoreError::Database(format!("corrupt courier message: {what}"));
    Ok(Message {
        id: r.uuid("id")?,
        status: MessageStatus::parse(&r.text("status")?).ok_or_else(|| bad("status"))?,
        channel: r.text("channel")?,
        recipient: r.text("recipient")?,
        template: TemplateKind::parse(&r.text("template_type")?)
            .ok_or_else(|| bad("template_type"))?,
        locale: Locale::from_tag(&r.text("locale")?),
        subject: r.text("subject")?,
        body: r.text("body")?,
        html_body: r.text("html_body")?,
        identity_id: r
            .opt_text("identity_id")?
            .map(|s| Uuid::parse_str(&s).map_err(|_| bad("identity_id")))
            .transpose()?,
        send_count: u32::try_from(r.int("send_count")?).unwrap_or(u32::MAX),
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn dispatch_from_row(r: &AnyRow) -> StoreResult<Dispatch> {
    Ok(Dispatch {
        id: r.uuid("id")?,
        message_id: r.uuid("message_id")?,
        status: DispatchStatus::parse(&r.text("status")?)
            .ok_or_else(|| StoreError::Database("corrupt courier dispatch: status".into()))?,
        error: r.opt_text("error")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

#[async_trait]
impl CourierStore for SqlStore {
    async fn list_messages(&self, q: &MessageQuery) -> StoreResult<Vec<Message>> {
        let mut f = Filter::default();
        if let Some(s) = q.status {
            let p = f.text(s.as_str());
            f.and(format!("status = {p}"));
        }
        if let Some(r) = &q.recipient {
            let p = f.text(r);
            f.and(format!("recipient = {p}"));
        }
        if let Some(before) = q.before {
            let p = f.text(before);
            f.and(format!("id < {p}"));
        }
        let (sql, args) = f.finish(
            &format!("SELECT {MESSAGE_COLUMNS} FROM courier_messages"),
            "id DESC",
            q.page_size,
        );
        let rows = args
            .bind(sqlx::query(&sql))
            .fetch_all(&self.read)
            .await
            .db()?;
        rows.iter().map(message_from_row).collect()
    }

    async fn get_message(&self, id: Uuid) -> StoreResult<Option<(Message, Vec<Dispatch>)>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM courier_messages WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        let Some(row) = row else { return Ok(None) };
        let dispatches = sqlx::query(
            "SELECT id, message_id, status, error, created_at, updated_at FROM courier_dispatches \
             WHERE message_id = $1 ORDER BY created_at, id",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await
        .db()?;
        Ok(Some((
            message_from_row(&row)?,
            dispatches
                .iter()
                .map(dispatch_from_row)
                .collect::<StoreResult<_>>()?,
        )))
    }

    async fn claim_messages(
        &self,
        owner: Uuid,
        limit: u32,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<Message>> {
        let set = "SET status = 'processing', lease_owner = $1, lease_until = $2, updated_at = $3";
        let pick = format!(
            "SELECT id FROM courier_messages WHERE {CLAIMABLE} ORDER BY next_attempt_at, id LIMIT $4"
        );
        let sql = match self.backend {
            // The CTE runs once: a `LIMIT … SKIP LOCKED` subquery under `IN` may be run again
            // per row by the planner and claim more than the limit.
            Backend::Postgres => format!(
                "WITH due AS ({pick} FOR UPDATE SKIP LOCKED) \
                 UPDATE courier_messages m {set} FROM due WHERE m.id = due.id AND {CLAIMABLE} \
                 RETURNING {}",
                MESSAGE_COLUMNS
                    .split(", ")
                    .map(|c| format!("m.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Backend::Sqlite => format!(
                "UPDATE courier_messages {set} WHERE id IN ({pick}) AND {CLAIMABLE} RETURNING {MESSAGE_COLUMNS}"
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(owner.to_string())
            .bind(micros(lease_until))
            .bind(micros(now))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.write)
            .await
            .db()?;
        let mut claimed = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|m| (m.created_at, m.id));
        Ok(claimed)
    }

    async fn record_dispatch(
        &self,
        d: &Dispatch,
        owner: Uuid,
        outcome: &Delivery,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.db()?;
        sqlx::query(
            "INSERT INTO courier_dispatches (id, message_id, status, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(d.id.to_string())
        .bind(d.message_id.to_string())
        .bind(d.status.as_str())
        .bind(d.error.clone())
        .bind(micros(d.created_at))
        .bind(micros(d.updated_at))
        .execute(&mut *tx)
        .await
        .db()?;
        let next = match outcome {
            Delivery::Retry { at } => *at,
            Delivery::Sent | Delivery::Abandoned => d.created_at,
        };
        let done = sqlx::query(
            "UPDATE courier_messages SET status = $1, send_count = send_count + 1, next_attempt_at = $2, \
             lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE id = $4 AND status = 'processing' AND lease_owner = $5",
        )
        .bind(outcome.status().as_str())
        .bind(micros(next))
        .bind(micros(d.created_at))
        .bind(d.message_id.to_string())
        .bind(owner.to_string())
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_messages_before(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let old = "SELECT id FROM courier_messages WHERE status IN ('sent', 'abandoned') AND created_at < $1";
        let mut tx = self.write.begin().await.db()?;
        sqlx::query(&format!(
            "DELETE FROM courier_dispatches WHERE message_id IN ({old})"
        ))
        .bind(micros(before))
        .execute(&mut *tx)
        .await
        .db()?;
        let n = sqlx::query(&format!("DELETE FROM courier_messages WHERE id IN ({old})"))
            .bind(micros(before))
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        tx.commit().await.db()?;
        Ok(n)
    }
}
