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
//!
//! Each job fails alone: a handler's error is recorded on its row (`attempts`, `last_error`),
//! logged with its cause and counted (`shequn_jobs_failed_total`), and the job waits out an
//! exponential backoff ([`backoff`]) before it is claimed again, while every other job runs on.
//! After [`MAX_ATTEMPTS`] it is parked: it no longer runs, a `job.parked` event is written to
//! the tenant's outbox and `shequn_jobs_parked_total` counts it. Operators read jobs with
//! `GET /v1/jobs` and send a parked one back with `POST /v1/jobs/{id}/retry`.

use std::time::Duration;

use axum::extract::State;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Auth;
use super::db::Db;
use super::error::{codes, ApiError, ApiResult};
use super::ids::TenantId;
use super::json::Json;
use super::outbox::NewEvent;
use super::sql::{Arg, Sql};
use super::time::{micros_to_rfc3339, to_micros};
use crate::common::extract::{Path, Query};
use crate::AppState;

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
/// Failed runs after which a job is parked instead of tried again.
pub const MAX_ATTEMPTS: i64 = 8;
/// The wait after a job's first failure; it doubles with each further failure.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between two runs of a failing job.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// How long a job waits after its `attempts`-th failed run: 5 s, 10 s, 20 s … at most an hour
/// (with the defaults, a job that never succeeds is parked about 21 minutes after it was due).
pub fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(BACKOFF_MAX)
}

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

/// What happened to a job whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It runs again after its backoff.
    Retrying { attempts: i64, after: Duration },
    /// It ran [`MAX_ATTEMPTS`] times; it is parked until an operator retries it.
    Parked { attempts: i64 },
}

/// Record a handler failure: the cause on the row, then a backoff, or parking (with a
/// `job.parked` event) once the job has failed [`MAX_ATTEMPTS`] times.
pub async fn record_failure(
    db: &Db,
    job: &Job,
    error: &str,
    now: Timestamp,
) -> Result<Failure, sqlx::Error> {
    // Keep the stored cause bounded: error chains can quote whole statements.
    let error: String = error.chars().take(2000).collect();
    let mut tx = db.begin(now).await?;
    let attempts: i64 =
        sqlx::query_scalar("SELECT attempts FROM scheduled_job WHERE tenant_id = $1 AND id = $2")
            .bind(job.tenant_id.as_str())
            .bind(&job.id)
            .fetch_optional(tx.conn())
            .await?
            .unwrap_or(MAX_ATTEMPTS);
    let failure = if attempts >= MAX_ATTEMPTS {
        Failure::Parked { attempts }
    } else {
        Failure::Retrying {
            attempts,
            after: backoff(attempts),
        }
    };
    let (state, locked_until) = match failure {
        Failure::Parked { .. } => (PARKED, None),
        Failure::Retrying { after, .. } => (
            DUE,
            Some(to_micros(now).saturating_add(i64::try_from(after.as_micros()).unwrap_or(0))),
        ),
    };
    sqlx::query(
        "UPDATE scheduled_job SET last_error = $1, state = $2, locked_until = $3 \
         WHERE tenant_id = $4 AND id = $5 AND state = 'due'",
    )
    .bind(&error)
    .bind(state)
    .bind(locked_until)
    .bind(job.tenant_id.as_str())
    .bind(&job.id)
    .execute(tx.conn())
    .await?;
    metrics::counter!("shequn_jobs_failed_total", "kind" => job.kind.clone()).increment(1);
    if let Failure::Parked { attempts } = failure {
        metrics::counter!("shequn_jobs_parked_total", "kind" => job.kind.clone()).increment(1);
        tx.emit(NewEvent::new(
            &job.tenant_id,
            "job.parked",
            Some(&job.id),
            json!({ "job_id": job.id, "kind": job.kind, "attempts": attempts, "last_error": error }),
        ));
    }
    tx.commit().await?;
    Ok(failure)
}

const DUE: &str = "due";
const PARKED: &str = "parked";

/// A job as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    /// `due`, `done` or `parked` (the `state` column).
    #[schema(value_type = JobState)]
    pub status: String,
    pub due_at: String,
    /// Failed and running attempts so far.
    pub attempts: i64,
    /// The cause of the last failure, if any.
    pub last_error: Option<String>,
    /// While due: not claimed again before this instant (a running claim or a backoff).
    pub not_before: Option<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its time, running, or backing off after a failure.
    Due,
    /// Ran to completion.
    Done,
    /// Failed [`MAX_ATTEMPTS`] times; waits for an operator's retry.
    Parked,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Due => DUE,
            JobState::Done => "done",
            JobState::Parked => PARKED,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only jobs in this state (default: all).
    pub status: Option<JobState>,
    /// Only jobs that have failed at least once.
    pub failing: Option<bool>,
    /// At most this many (default 100), oldest due first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub data: Vec<JobView>,
}

/// Largest page of jobs.
pub const MAX_JOBS_PAGE: i64 = 500;

fn job_view(row: &sqlx::any::AnyRow) -> Result<JobView, sqlx::Error> {
    Ok(JobView {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        status: row.try_get("state")?,
        due_at: micros_to_rfc3339(row.try_get("due_at")?),
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        not_before: row
            .try_get::<Option<i64>, _>("locked_until")?
            .map(micros_to_rfc3339),
    })
}

const JOB_COLUMNS: &str = "id, kind, state, due_at, attempts, last_error, locked_until";

/// A tenant's jobs, oldest due first (the API's and the CLI's list).
pub async fn list(
    pool: &sqlx::AnyPool,
    tenant_id: &TenantId,
    status: Option<JobState>,
    failing: bool,
    limit: i64,
) -> Result<Vec<JobView>, sqlx::Error> {
    let mut sql = Sql::new(&format!(
        "SELECT {JOB_COLUMNS} FROM scheduled_job WHERE tenant_id = "
    ));
    sql.bind(tenant_id.as_str());
    if let Some(wanted) = status {
        sql.push(" AND state = ").bind(wanted.as_str());
    }
    if failing {
        sql.push(" AND last_error IS NOT NULL");
    }
    sql.push(" ORDER BY due_at, id LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(pool).await?;
    rows.iter().map(job_view).collect()
}

/// The tenant's scheduled jobs: what is due, what keeps failing, what was parked.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, body = JobPage), (status = 400), (status = 422)), security(("api_key" = [])))]
async fn list_jobs(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<JobsQuery>,
) -> ApiResult<Json<JobPage>> {
    let limit = super::pagination::limit(query.limit, 100, MAX_JOBS_PAGE)?;
    let data = list(
        state.db.read(),
        &auth.tenant_id,
        query.status,
        query.failing == Some(true),
        limit,
    )
    .await?;
    Ok(Json(JobPage { data }))
}

/// The outcome of claiming one job by id.
#[derive(Debug)]
pub enum Claimed {
    /// Ours to run now.
    Run(Job),
    /// It already ran; its stored payload (a handler may keep its report there).
    Done(Value),
    /// Another node or request is running it right now.
    Busy,
}

/// Schedule `job` if it is not there yet, then claim it now, whatever its due time, also when
/// parked (an operator asking to run it). Used to run a job on demand exactly once.
pub async fn claim_now(
    db: &Db,
    tenant_id: &TenantId,
    job: &NewJob,
    now: Timestamp,
) -> Result<Claimed, sqlx::Error> {
    let now_micros = to_micros(now);
    {
        let mut conn = db.write_conn().await?;
        schedule(&mut conn, tenant_id, std::slice::from_ref(job), now_micros).await?;
        let lock_until =
            now_micros.saturating_add(i64::try_from(CLAIM.as_micros()).unwrap_or(i64::MAX / 2));
        let taken = sqlx::query(
            "UPDATE scheduled_job SET locked_until = $1, attempts = attempts + 1, state = 'due' \
             WHERE tenant_id = $2 AND id = $3 AND state <> 'done' \
             AND (state = 'parked' OR locked_until IS NULL OR locked_until < $4)",
        )
        .bind(lock_until)
        .bind(tenant_id.as_str())
        .bind(&job.id)
        .bind(now_micros)
        .execute(&mut *conn)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Claimed::Run(Job {
                tenant_id: tenant_id.clone(),
                id: job.id.clone(),
                kind: job.kind.to_owned(),
                due_at: job.due_at,
                payload: job.payload.clone(),
            }));
        }
    }
    let row =
        sqlx::query("SELECT state, payload FROM scheduled_job WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(&job.id)
            .fetch_one(db.read())
            .await?;
    let state: String = row.try_get("state")?;
    if state == "done" {
        let payload: String = row.try_get("payload")?;
        Ok(Claimed::Done(
            serde_json::from_str(&payload).unwrap_or(Value::Null),
        ))
    } else {
        Ok(Claimed::Busy)
    }
}

/// Mark a job done and keep `payload` on it (e.g. what it did), inside the handler's
/// transaction.
pub async fn complete_with(
    conn: &mut AnyConnection,
    job: &Job,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE scheduled_job SET state = 'done', payload = $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(payload.to_string())
    .bind(job.tenant_id.as_str())
    .bind(&job.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Send a parked (or backing-off) job back to run at the next scheduler pass, with its
/// attempts counted from zero again.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404), (status = 409, description = "job_done")),
    security(("api_key" = [])))]
async fn retry_job(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    if id.is_empty() || id.len() > 300 {
        return Err(ApiError::not_found("job"));
    }
    let mut tx = state.begin().await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT state FROM scheduled_job WHERE tenant_id = $1 AND id = $2")
            .bind(auth.tenant_id.as_str())
            .bind(&id)
            .fetch_optional(tx.conn())
            .await?;
    match current.as_deref() {
        None => return Err(ApiError::not_found("job")),
        Some("done") => {
            return Err(ApiError::conflict(
                codes::JOB_DONE,
                "this job has already run",
            ));
        }
        Some(_) => {}
    }
    sqlx::query(
        "UPDATE scheduled_job SET state = 'due', attempts = 0, locked_until = NULL \
         WHERE tenant_id = $1 AND id = $2 AND state <> 'done'",
    )
    .bind(auth.tenant_id.as_str())
    .bind(&id)
    .execute(tx.conn())
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "job.retried",
        Some(&id),
        json!({ "job_id": id }),
    ));
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM scheduled_job WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(auth.tenant_id.as_str())
    .bind(&id)
    .fetch_one(tx.conn())
    .await?;
    let view = job_view(&row)?;
    tx.commit().await?;
    Ok(Json(view))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(7), Duration::from_secs(320));
        assert_eq!(backoff(20), BACKOFF_MAX);
        assert_eq!(backoff(i64::MAX), BACKOFF_MAX);
        assert_eq!(backoff(0), BACKOFF_FIRST);
    }
}
