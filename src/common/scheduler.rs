//! Deadlines as database rows (DESIGN rule 7): payment timeouts, pending-transfer expiry,
//! team expiry, reminders.
//!
//! A job is scheduled inside the transaction that creates its reason, with a deterministic id
//! (`kind:key`), so it is scheduled once. The scheduler loop of every node asks for due jobs,
//! claims each with a conditional update (`locked_until`), and runs it; the handler does its
//! work and marks the job done in one transaction, so a crash before the commit leaves the job
//! due again and a crash after leaves it done. Handlers are idempotent (e.g. a pending transfer
//! resolves once), so even a claim that expired while its handler ran cannot act twice.
//! Jobs survive restarts because they are rows.

use std::time::Duration;

use serde_json::Value;
use sqlx::{AnyConnection, Row as _};

use super::db::Db;
use super::ids::TenantId;
use super::sql::{Arg, Sql};

/// A job to schedule.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Unique per tenant; scheduling the same id twice keeps the first.
    pub id: String,
    pub kind: &'static str,
    /// Microseconds since the epoch.
    pub due_at: i64,
    pub payload: Value,
}

/// A due job handed to its handler.
#[derive(Debug, Clone)]
pub struct Job {
    pub tenant_id: TenantId,
    pub id: String,
    pub kind: String,
    pub due_at: i64,
    pub payload: Value,
}

/// How long a claim keeps other nodes off a job.
pub const CLAIM: Duration = Duration::from_secs(60);
/// Jobs claimed per scheduler pass.
pub const PASS_LIMIT: i64 = 500;

/// The start of an insert of jobs (`state` is always `due` at first).
const INSERT_JOB: &str =
    "INSERT INTO scheduled_job (tenant_id, id, kind, due_at, payload, state, created_at)";

/// Schedule jobs inside the caller's transaction.
pub async fn schedule(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    jobs: &[NewJob],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in jobs.chunks(500) {
        let mut sql = Sql::for_conn(&*conn, &format!("{INSERT_JOB} VALUES "));
        sql.values(chunk, |job| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(job.id.as_str()),
                Arg::from(job.kind),
                Arg::from(job.due_at),
                Arg::from(job.payload.to_string()),
                Arg::from("due"),
                Arg::from(now),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`schedule`] inside a transaction of the direct SQLite connection
/// ([`crate::common::db::Db::write_direct`]).
pub fn schedule_direct(
    tx: &rusqlite::Transaction<'_>,
    tenant_id: &TenantId,
    jobs: &[NewJob],
    now: i64,
) -> rusqlite::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(&format!(
        "{INSERT_JOB} VALUES (?, ?, ?, ?, ?, 'due', ?) ON CONFLICT DO NOTHING"
    ))?;
    for job in jobs {
        insert.execute(rusqlite::params![
            tenant_id.as_str(),
            job.id,
            job.kind,
            job.due_at,
            job.payload.to_string(),
            now,
        ])?;
    }
    Ok(())
}

/// Claim up to `limit` due jobs.
pub async fn claim_due(db: &Db, now: i64, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT tenant_id, id, kind, due_at, payload FROM scheduled_job \
         WHERE state = 'due' AND due_at <= $1 AND (locked_until IS NULL OR locked_until < $1) \
         ORDER BY due_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.read())
    .await?;
    let lock_until = now + i64::try_from(CLAIM.as_micros()).unwrap_or(i64::MAX / 2);
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let tenant_id: String = row.try_get("tenant_id")?;
        let id: String = row.try_get("id")?;
        let taken = sqlx::query(
            "UPDATE scheduled_job SET locked_until = $1, attempts = attempts + 1 \
             WHERE tenant_id = $2 AND id = $3 AND state = 'due' \
             AND (locked_until IS NULL OR locked_until < $4)",
        )
        .bind(lock_until)
        .bind(&tenant_id)
        .bind(&id)
        .bind(now)
        .execute(&mut *db.write_conn().await?)
        .await?;
        if taken.rows_affected() == 1 {
            let payload: String = row.try_get("payload")?;
            claimed.push(Job {
                tenant_id: TenantId::from_db(tenant_id),
                id,
                kind: row.try_get("kind")?,
                due_at: row.try_get("due_at")?,
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            });
        }
    }
    Ok(claimed)
}

/// Mark a job done, inside the handler's transaction.
pub async fn complete(conn: &mut AnyConnection, job: &Job) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE scheduled_job SET state = 'done' WHERE tenant_id = $1 AND id = $2")
        .bind(job.tenant_id.as_str())
        .bind(&job.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Record a handler failure; the job runs again when its claim lapses.
pub async fn record_failure(db: &Db, job: &Job, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE scheduled_job SET last_error = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(error)
        .bind(job.tenant_id.as_str())
        .bind(&job.id)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(())
}
