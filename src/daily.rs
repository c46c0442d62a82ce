//! The day's run: what each tenant's program does once a day, in order, and the ways to start
//! it (the scheduler at the tenant's local midnight, `POST /v1/jobs/daily`, `shequn jobs
//! run-daily`).
//!
//! Like [`crate::server`], this is a composition module, above the domains: the day touches
//! the membership program and analytics, and analytics reads membership, so the run cannot
//! live in either domain without one of them calling up into the other (DESIGN rule 12). Each
//! step is a function of its own domain, named for what it does; here they are put in order:
//!
//! | step | function | transactions |
//! | --- | --- | --- |
//! | points expiry | [`program::expire_points`] | one per chunk of member points accounts |
//! | expiry warnings | [`program::warn_expiring_points`] | one per chunk of member points accounts |
//! | birthday perks | [`program::grant_birthday_perks`] | one per chunk of members |
//! | birthdays (`member.birthday`) | [`program::announce_birthdays`] | one per chunk of members born on today's day |
//! | repurchase reminders | [`repurchase::run_reminders`] | one for the SKU medians, one per chunk of reminders |
//! | tier requalification | [`program::requalify_tiers`] | one per chunk of members, one for the day's notice |
//! | segment history | [`segments::routes::record_counts`] | one for every segment's count of the day (replaced by a repeat) |
//! | analytics refresh | [`scoring::fit_and_score`] | reads without the write lock; the model fit on the blocking pool; one to replace the scores |
//!
//! A chunk is at most [`program::DAILY_CHUNK`] (500) members or accounts, taken in id (or
//! address) order after the previous chunk's last, so that one tenant's day never holds the
//! write lock (on SQLite, the whole database's) for long, however many members it has: other
//! requests get their turn between two chunks.
//!
//! **A crash between two chunks is safe:** the run stops with some chunks committed, and the
//! day's job, not marked done, runs again (the scheduler retries it; a request for the same
//! date runs it). Each step is idempotent per chunk, so the repeat finishes the work and
//! doubles nothing:
//!
//! - an expiry is a ledger transfer whose id is derived from the member and the cutoff (the
//!   ledger refuses a second one), and an expired amount counts among the member's debits, so
//!   the amount computed again is 0;
//! - a warning, a birthday perk and a repurchase reminder each write a once-only notice
//!   (`program_notice`: `expiring:{member}:{cutoff}`, `birthday:{member}:{year}`,
//!   `repurchase:{member}:{sku}:{date}`) in the same transaction as what they give and their
//!   event, so each is given entirely or not at all, and once;
//! - requalification sets each member to the tier their growth gives, which a repeat finds
//!   already done; the day's notice `requalify:{date}` is written after the last chunk, so a
//!   stopped run is completed and a finished one is not repeated that day;
//! - the SKU medians and the analytics scores are recomputed and replaced whole.
//!
//! The run happens once per tenant and date: its job id is `program.daily:{date}`
//! ([`program::DAILY_JOB`]), claimed before it runs, and the job row keeps the day's report, so
//! a later request for that date answers `already_ran` with it.

use axum::extract::State;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::analytics::model::summary::TimeUnit;
use crate::analytics::{repurchase, scoring};
use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::to_micros;
use crate::membership::program::{self, DAILY_JOB};
use crate::membership::rules::calendar;
use crate::segments;
use crate::AppState;

/// The day's route: `POST /v1/jobs/daily`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_daily))
}

/// What a daily run did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct DailyReport {
    pub points_expired: i64,
    pub members_expired: usize,
    pub warnings: usize,
    pub birthday_perks: usize,
    /// `member.birthday` events written (members whose birthday is today).
    pub birthdays: usize,
    pub requalified: usize,
    pub repurchase_reminders: usize,
    /// Segments whose count for the day was recorded (their history).
    pub segments_counted: usize,
}

/// The day's program work for one tenant as of now: points expiry and warnings, birthday
/// perks, repurchase reminders, tier requalification (the analytics refresh is not part of it:
/// the job and the on-demand run add it). Safe to run more than once a day.
pub async fn run_daily(state: &AppState, tenant_id: &TenantId) -> ApiResult<DailyReport> {
    run_daily_at(state, tenant_id, state.clock.now()).await
}

/// [`run_daily`] as of `at` (a day run on demand for an earlier date runs as of its midnight):
/// the steps in order, each in its own transactions (see the module doc).
pub async fn run_daily_at(
    state: &AppState,
    tenant_id: &TenantId,
    at: Timestamp,
) -> ApiResult<DailyReport> {
    let db = &state.db;
    let (settings, zone) = {
        let mut conn = db.read().acquire().await?;
        let settings = program::load_settings(&mut conn, tenant_id).await?;
        (
            settings,
            crate::tenants::time_zone(&mut conn, tenant_id).await?,
        )
    };
    let policy = settings.points.policy();
    let expired = program::expire_points(db, tenant_id, policy, &zone, at).await?;
    let warnings = program::warn_expiring_points(db, tenant_id, policy, &zone, at).await?;
    let birthday_perks =
        program::grant_birthday_perks(db, tenant_id, settings.birthday.as_ref(), &zone, at).await?;
    let birthdays = program::announce_birthdays(db, tenant_id, &zone, at).await?;
    let repurchase_reminders =
        repurchase::run_reminders(db, tenant_id, &zone, settings.repurchase_reminder_days, at)
            .await?;
    let requalified = program::requalify_tiers(
        db,
        tenant_id,
        &settings.tiers,
        settings.requalification,
        &zone,
        at,
    )
    .await?;
    let today = at.to_zoned(zone.clone()).date();
    let segments_counted = segments::routes::record_counts(state, tenant_id, today).await?;
    Ok(DailyReport {
        points_expired: expired.points,
        members_expired: expired.members,
        warnings,
        birthday_perks,
        birthdays,
        requalified,
        repurchase_reminders,
        segments_counted,
    })
}

/// Re-fit the lifetime-value models on everything up to yesterday and re-score every member
/// (scores, RFM, lifecycle stages, cohorts), off the request path. A tenant without orders, or
/// whose data the model cannot fit, keeps its previous scores; the reason is logged.
pub async fn refresh_analytics(state: &AppState, tenant_id: &TenantId, now: Timestamp) {
    let zone = {
        let Ok(mut conn) = state.db.read().acquire().await else {
            return;
        };
        match crate::tenants::time_zone(&mut conn, tenant_id).await {
            Ok(zone) => zone,
            Err(_) => return,
        }
    };
    let Ok(yesterday) = calendar::add_days(calendar::local_date(now, &zone), -1) else {
        return;
    };
    match scoring::fit_and_score(&state.db, tenant_id, &zone, yesterday, TimeUnit::Week, now).await
    {
        Ok(report) => {
            tracing::info!(tenant = %tenant_id, customers = report.customers, "analytics refreshed")
        }
        Err(error) => tracing::info!(tenant = %tenant_id, %error, "analytics not refreshed"),
    }
}

/// Scheduler handler of [`DAILY_JOB`]: run the day's program work, refresh the analytics and
/// schedule the next day.
pub async fn daily_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let report = run_daily(state, &job.tenant_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    refresh_analytics(state, &job.tenant_id, state.clock.now()).await;
    finish_daily(state, job, &report)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Schedule the next day and mark `job` done, keeping its report on the job row (so that a
/// later request for the same date answers with it).
async fn finish_daily(state: &AppState, job: &Job, report: &DailyReport) -> ApiResult<()> {
    let mut tx = state.begin().await?;
    program::schedule_daily(&mut tx, &job.tenant_id).await?;
    let date = job.payload.get("date").cloned().unwrap_or(Value::Null);
    scheduler::complete_with(tx.conn(), job, &json!({ "date": date, "report": report })).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /v1/jobs/daily`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunDaily {
    /// The tenant-local day to run (`YYYY-MM-DD`), today by default; not after today.
    pub date: Option<String>,
}

/// What a daily run on demand did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DailyRun {
    pub date: String,
    /// `ran` now, or `already_ran` (by the scheduler at midnight or an earlier request): the
    /// day's work runs once per tenant and date.
    pub status: String,
    /// What the run did (also for `already_ran`, as recorded then; null if it was not kept).
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
}

/// The tenant-local day a run on demand asks for (today when absent), and the instant it runs
/// as of: now for today, an earlier day's local midnight (as the scheduler would have).
fn day_asked(
    date: Option<&str>,
    now: Timestamp,
    zone: &TimeZone,
) -> ApiResult<(jiff::civil::Date, Timestamp, Timestamp)> {
    let today = calendar::local_date(now, zone);
    let date = match date {
        None => today,
        Some(text) => text
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::validation("date", "must be a date, YYYY-MM-DD"))?,
    };
    if date > today {
        return Err(ApiError::validation(
            "date",
            format!("must not be after today ({today}) in the tenant's time zone"),
        ));
    }
    let midnight = calendar::start_of_local_day(date, zone)
        .map_err(|e| ApiError::validation("date", e.to_string()))?;
    let at = if date == today { now } else { midnight };
    Ok((date, midnight, at))
}

/// Run the day's work for one tenant now, once per tenant and date: the program's steps, then
/// the analytics refresh. Today runs as of now; an earlier day as of its local midnight, as the
/// scheduler would have. Shared by the API and `shequn jobs run-daily`.
pub async fn run_daily_on_demand(
    state: &AppState,
    tenant_id: &TenantId,
    date: Option<&str>,
) -> ApiResult<DailyRun> {
    let zone = {
        let mut conn = state.db.read().acquire().await?;
        crate::tenants::time_zone(&mut conn, tenant_id).await?
    };
    let now = state.clock.now();
    let (date, midnight, at) = day_asked(date, now, &zone)?;
    let job = NewJob {
        id: format!("{DAILY_JOB}:{date}"),
        kind: DAILY_JOB,
        due_at: to_micros(midnight),
        payload: json!({ "date": date.to_string() }),
    };
    let job = match scheduler::claim_now(&state.db, tenant_id, &job, now).await? {
        scheduler::Claimed::Run(job) => job,
        scheduler::Claimed::Done(payload) => {
            return Ok(DailyRun {
                date: date.to_string(),
                status: "already_ran".into(),
                report: payload.get("report").cloned().filter(|r| !r.is_null()),
            })
        }
        scheduler::Claimed::Busy => {
            return Err(ApiError::conflict(
                codes::JOB_RUNNING,
                "this day's run is in progress; ask again in a moment",
            ))
        }
    };
    let report = match run_daily_at(state, tenant_id, at).await {
        Ok(report) => report,
        Err(error) => {
            scheduler::record_failure(&state.db, &job, &error.to_string(), now).await?;
            return Err(error);
        }
    };
    refresh_analytics(state, tenant_id, at).await;
    finish_daily(state, &job, &report).await?;
    Ok(DailyRun {
        date: date.to_string(),
        status: "ran".into(),
        report: Some(json!(report)),
    })
}

/// Run the day's program work now instead of at midnight (owner key): once per tenant and
/// date, so a repeat answers `already_ran` with the first run's report.
#[utoipa::path(post, path = "/v1/jobs/daily", tag = "jobs", request_body = RunDaily,
    responses((status = 200, body = DailyRun), (status = 403, description = "owner_key_required"),
              (status = 409, description = "job_running")),
    security(("api_key" = [])))]
async fn post_daily(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<RunDaily>,
) -> ApiResult<Json<DailyRun>> {
    auth.require_owner()?;
    Ok(Json(
        run_daily_on_demand(&state, &auth.tenant_id, request.date.as_deref()).await?,
    ))
}
