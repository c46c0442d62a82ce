//! Runs: one row per member an automation or a broadcast acted on (or decided not to), shared
//! by both, with the stats read from them and from the messages they caused.
//!
//! A run's `trigger_key` is unique per automation or broadcast: the triggering event's `seq`
//! for an automation (at most once per member per event), the member id for a broadcast (at
//! most once per member). The unique index, not the worker's care, is what makes "once" hold
//! when two nodes race: the second insert does nothing.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;
use utoipa::ToSchema;

use crate::common::db::{Db, Tx};
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::TenantId;
use crate::common::sql::{Arg, Sql};
use crate::common::time::to_micros;

crate::typed_id!(RunId, "run");

/// A conversion is a paid order within this long after one of the source's messages.
pub const CONVERSION_WINDOW_DAYS: i64 = 7;

/// Waiting for its time (a delayed automation step, or the fan-out just wrote it).
pub const WAITING: &str = "waiting";
/// The actions ran.
pub const COMPLETED: &str = "completed";
/// The automation's filter did not match the member when the step ran.
pub const FILTERED_OUT: &str = "filtered_out";
/// Nothing ran: the automation was paused or deleted, or the member erased or gone.
pub const SKIPPED: &str = "skipped";

/// A run to write.
pub struct NewRun {
    pub member_id: String,
    pub trigger_key: String,
    pub due_at: i64,
}

/// A run just written.
pub struct Written {
    pub id: RunId,
    pub member_id: String,
    pub due_at: i64,
}

/// Write `runs` of `source_id` that are not there yet; returns the written ones (a run already
/// there, written by another node or an earlier pass, is left alone and not returned).
pub async fn insert(
    tx: &mut Tx,
    tenant_id: &TenantId,
    source_id: &str,
    runs: &[NewRun],
) -> ApiResult<Vec<Written>> {
    let at = to_micros(tx.now());
    let mut written = Vec::new();
    for chunk in runs.chunks(200) {
        let ids: Vec<RunId> = chunk.iter().map(|_| RunId::generate()).collect();
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO engagement_run (tenant_id, id, source_id, member_id, trigger_key, \
             status, due_at, created_at, updated_at) VALUES ",
        );
        sql.values(ids.iter().zip(chunk), |(id, run)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(id.as_str()),
                Arg::from(source_id),
                Arg::from(run.member_id.as_str()),
                Arg::from(run.trigger_key.as_str()),
                Arg::from(WAITING),
                Arg::from(run.due_at),
                Arg::from(at),
                Arg::from(at),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING RETURNING id, member_id, due_at");
        for row in sql.query().fetch_all(tx.conn()).await? {
            written.push(Written {
                id: RunId::from_db(row.try_get("id")?),
                member_id: row.try_get("member_id")?,
                due_at: row.try_get("due_at")?,
            });
        }
    }
    Ok(written)
}

/// A run as its step reads it.
pub struct Run {
    pub id: RunId,
    pub source_id: String,
    pub member_id: String,
    pub status: String,
}

pub async fn fetch(db: &Db, tenant_id: &TenantId, id: &RunId) -> ApiResult<Option<Run>> {
    let row = sqlx::query(
        "SELECT id, source_id, member_id, status FROM engagement_run \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(db.read())
    .await?;
    row.map(|row| {
        Ok(Run {
            id: RunId::from_db(row.try_get("id")?),
            source_id: row.try_get("source_id")?,
            member_id: row.try_get("member_id")?,
            status: row.try_get("status")?,
        })
    })
    .transpose()
}

/// Move a waiting run to `status` with its outcome; `false` when it was no longer waiting
/// (another node finished it), in which case the caller must not act.
pub async fn finish(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &RunId,
    status: &str,
    outcome: &Value,
) -> ApiResult<bool> {
    let at = to_micros(tx.now());
    let done = sqlx::query(
        "UPDATE engagement_run SET status = $1, outcome = $2, updated_at = $3 \
         WHERE tenant_id = $4 AND id = $5 AND status = 'waiting'",
    )
    .bind(status)
    .bind(outcome.to_string())
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replace a finished run's outcome (what its actions did).
pub async fn set_outcome(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &RunId,
    outcome: &Value,
) -> ApiResult<()> {
    sqlx::query("UPDATE engagement_run SET outcome = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(outcome.to_string())
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Messages the gate refused, by reason.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Suppressed {
    pub no_consent: i64,
    pub frequency_cap: i64,
    pub erased: i64,
}

/// What an automation or a broadcast did.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Stats {
    /// Members who entered (one per member and triggering event, or per broadcast member).
    pub entered: i64,
    /// Runs whose actions ran.
    pub completed: i64,
    /// Runs the automation's filter turned away when the step ran.
    pub filtered_out: i64,
    /// Runs that did nothing: the automation was paused or deleted, or the member was gone.
    pub skipped: i64,
    /// Runs still waiting for their delay.
    pub waiting: i64,
    pub suppressed: Suppressed,
    /// Messages deferred by quiet hours (released later, or still waiting).
    pub deferred_quiet_hours: i64,
    /// Messages handed to the gateway (`message.requested`).
    pub messages: i64,
    /// Paid orders of members within 7 days after one of these messages was handed over.
    pub conversions: i64,
    /// Those orders' paid amounts less their refunds, in fen.
    pub revenue: i64,
}

/// The stats of automation or broadcast `source_id`.
pub async fn stats(db: &Db, tenant_id: &TenantId, source_id: &str) -> ApiResult<Stats> {
    let pool = db.read();
    let mut stats = Stats::default();
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM engagement_run \
         WHERE tenant_id = $1 AND source_id = $2 GROUP BY status",
    )
    .bind(tenant_id.as_str())
    .bind(source_id)
    .fetch_all(pool)
    .await?;
    for row in rows {
        let status: String = row.try_get("status")?;
        let n: i64 = row.try_get("n")?;
        stats.entered += n;
        match status.as_str() {
            COMPLETED => stats.completed += n,
            FILTERED_OUT => stats.filtered_out += n,
            SKIPPED => stats.skipped += n,
            WAITING => stats.waiting += n,
            other => return Err(ApiError::internal(anyhow::anyhow!("run status {other}"))),
        }
    }
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN reason = 'no_consent' THEN 1 ELSE 0 END), 0) AS no_consent, \
           COALESCE(SUM(CASE WHEN reason = 'frequency_cap' THEN 1 ELSE 0 END), 0) AS frequency_cap, \
           COALESCE(SUM(CASE WHEN reason = 'erased' THEN 1 ELSE 0 END), 0) AS erased, \
           COALESCE(SUM(CASE WHEN deliver_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS deferred, \
           COALESCE(SUM(CASE WHEN requested_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS handed \
         FROM message WHERE tenant_id = $1 AND source = $2",
    )
    .bind(tenant_id.as_str())
    .bind(source_id)
    .fetch_one(pool)
    .await?;
    stats.suppressed = Suppressed {
        no_consent: row.try_get("no_consent")?,
        frequency_cap: row.try_get("frequency_cap")?,
        erased: row.try_get("erased")?,
    };
    stats.deferred_quiet_hours = row.try_get("deferred")?;
    stats.messages = row.try_get("handed")?;
    let window = CONVERSION_WINDOW_DAYS * 24 * 3600 * 1_000_000;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(o.total - o.refunded_amount), 0) AS BIGINT) AS revenue \
         FROM customer_order o \
         WHERE o.tenant_id = $1 AND o.paid_at IS NOT NULL \
         AND o.member_id IN (SELECT member_id FROM message \
             WHERE tenant_id = $1 AND source = $2 AND requested_at IS NOT NULL) \
         AND EXISTS (SELECT 1 FROM message m WHERE m.tenant_id = $1 AND m.source = $2 \
             AND m.member_id = o.member_id AND m.requested_at IS NOT NULL \
             AND o.paid_at >= m.requested_at AND o.paid_at <= m.requested_at + $3)",
    )
    .bind(tenant_id.as_str())
    .bind(source_id)
    .bind(window)
    .fetch_one(pool)
    .await?;
    stats.conversions = row.try_get("n")?;
    stats.revenue = row.try_get("revenue")?;
    Ok(stats)
}
