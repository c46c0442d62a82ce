//! The event outbox's storage (DESIGN rule 4); the route that reads it and the catalogue of
//! event types are in [`super::events`].
//!
//! Every state change appends an event in the same transaction, numbered per tenant (`seq`,
//! gapless, in commit order). Webhooks, caches and analytics read the outbox with
//! `GET /v1/events?after=SEQ`; nothing is lost while a consumer is down. Event payloads carry
//! ids and the names of changed fields, not personal values, so erasure never has to rewrite
//! the outbox (rule 10).
//!
//! Numbering takes the tenant's counter row (`UPDATE tenant SET event_seq = event_seq + n`),
//! which [`crate::common::db::Tx::commit`] does last, right before the commit: the row lock is
//! held only for the commit itself, and a reader that saw `seq = k` will never later find a
//! newly committed event numbered below `k`.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::ids::TenantId;
use super::sql::{Arg, Sql};
use super::time::{micros_to_rfc3339, to_micros};

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub kind: &'static str,
    /// The entity the event is about (a member id, an order id…), for per-subject lookups.
    pub subject: Option<String>,
    pub data: Value,
}

impl NewEvent {
    pub fn new(
        tenant_id: &TenantId,
        kind: &'static str,
        subject: Option<&str>,
        data: Value,
    ) -> Self {
        Self {
            tenant_id: tenant_id.clone(),
            kind,
            subject: subject.map(str::to_owned),
            data,
        }
    }
}

/// Rows per multi-row insert (6 arguments each; well under both back ends' limits).
const INSERT_CHUNK: usize = 500;

/// Takes the next `$1` numbers of tenant `$2`'s counter and returns the last of them.
const TAKE_SEQ: &str =
    "UPDATE tenant SET event_seq = event_seq + $1 WHERE id = $2 RETURNING event_seq";

/// Events grouped by tenant, tenants in a fixed order (so that two multi-tenant transactions
/// take the counter rows in one order and cannot deadlock), each tenant's events in emission
/// order.
fn by_tenant(events: Vec<NewEvent>) -> Vec<(TenantId, Vec<NewEvent>)> {
    let mut tenants: Vec<(TenantId, Vec<NewEvent>)> = Vec::new();
    for event in events {
        match tenants.iter_mut().find(|(t, _)| *t == event.tenant_id) {
            Some((_, list)) => list.push(event),
            None => tenants.push((event.tenant_id.clone(), vec![event])),
        }
    }
    tenants.sort_by(|a, b| a.0.cmp(&b.0));
    tenants
}

/// Number and insert events; called by `Tx::commit`.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let at = to_micros(now);
    for (tenant_id, list) in by_tenant(events) {
        let count = i64::try_from(list.len()).unwrap_or(i64::MAX);
        let last: i64 = sqlx::query_scalar(TAKE_SEQ)
            .bind(count)
            .bind(tenant_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
        let first = last - count + 1;
        for (chunk_index, chunk) in list.chunks(INSERT_CHUNK).enumerate() {
            let base = first + i64::try_from(chunk_index * INSERT_CHUNK).unwrap_or(0);
            let mut sql = Sql::for_conn(
                &*conn,
                &format!(
                    "{} event (tenant_id, seq, type, subject, at, data) ",
                    super::sql::insert_into(conn)
                ),
            );
            // Padded, so that the statement's text repeats from commit to commit and the
            // connection prepares each shape once.
            let rows: Vec<(i64, &NewEvent)> = (base..).zip(chunk).collect();
            sql.padded_select(&rows, |&(seq, e)| {
                vec![
                    Arg::from(tenant_id.as_str()),
                    Arg::from(seq),
                    Arg::from(e.kind),
                    Arg::from(e.subject.clone()),
                    Arg::from(at),
                    Arg::from(e.data.to_string()),
                ]
            });
            sql.query().execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// [`append`] inside a transaction of the direct SQLite connection
/// ([`crate::common::db::Db::write_direct`]), which buffers no events of its own.
pub(crate) fn append_direct(
    tx: &rusqlite::Transaction<'_>,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let at = to_micros(now);
    for (tenant_id, list) in by_tenant(events) {
        let count = i64::try_from(list.len()).unwrap_or(i64::MAX);
        let last: i64 = tx
            .prepare_cached(TAKE_SEQ)?
            .query_row(rusqlite::params![count, tenant_id.as_str()], |row| {
                row.get(0)
            })?;
        let mut insert = tx.prepare_cached(
            "INSERT OR FAIL INTO event (tenant_id, seq, type, subject, at, data) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )?;
        for (seq, event) in (last - count + 1..).zip(&list) {
            insert.execute(rusqlite::params![
                tenant_id.as_str(),
                seq,
                event.kind,
                event.subject,
                at,
                event.data.to_string(),
            ])?;
        }
    }
    Ok(())
}

/// An event as read back.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: Option<String>,
    /// RFC 3339 UTC.
    pub at: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The largest page of events.
pub const MAX_EVENTS_PAGE: i64 = 1000;

/// Events of a tenant after `after`, oldest first.
pub async fn list(
    pool: &sqlx::AnyPool,
    tenant_id: &TenantId,
    after: i64,
    limit: i64,
    kind: Option<&str>,
    subject: Option<&str>,
) -> Result<Vec<Event>, sqlx::Error> {
    let mut sql = Sql::new("SELECT seq, type, subject, at, data FROM event WHERE tenant_id = ");
    sql.bind(tenant_id.as_str()).push(" AND seq > ").bind(after);
    if let Some(kind) = kind {
        sql.push(" AND type = ").bind(kind);
    }
    if let Some(subject) = subject {
        sql.push(" AND subject = ").bind(subject);
    }
    sql.push(" ORDER BY seq LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(pool).await?;
    rows.into_iter()
        .map(|row| {
            let data: String = row.try_get("data")?;
            Ok(Event {
                seq: row.try_get("seq")?,
                kind: row.try_get("type")?,
                subject: row.try_get("subject")?,
                at: micros_to_rfc3339(row.try_get("at")?),
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            })
        })
        .collect()
}
