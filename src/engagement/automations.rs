//! Automations (营销自动化 / SOP): when an event happens to a member, wait, check a filter,
//! act.
//!
//! # How an automation runs
//!
//! 1. **Trigger.** An active automation keeps a cursor into its tenant's outbox, like a webhook
//!    endpoint (DESIGN rule 4: reactions that need not share the transaction read the outbox).
//!    [`run_automations`] reads each tenant's events after its automations' cursors and, for
//!    each event of an automation's trigger type that names a member (`data.member_id`), writes
//!    a run (see [`super::runs`]: unique per automation and event, so at most once per member
//!    per triggering event) with a scheduler job due `delay_secs` after the event. The runs and
//!    the cursor move are one transaction, conditional on the cursor read (two nodes: one
//!    wins, the other rolls back).
//! 2. **Step.** The job ([`STEP_JOB`], DESIGN rule 7: it survives restarts and runs once across
//!    nodes) evaluates the filter on the member as they are then (the segments rule language,
//!    on one member's facts: [`crate::segments::index::matches`]) and runs the actions
//!    ([`super::actions`]) in one transaction with the run's move from `waiting`, which is
//!    conditional: a step that lost a race does nothing.
//!
//! Each node runs a pass when a transaction of its own writes events (the database's commit
//! notification) and at least every [`POLL`] for the other nodes' events; steps due at once run
//! in the same pass, so the time from a member's change to the automation's message is one
//! pass, not a scheduler tick. A pass woken by a commit leaves the cursor of an automation that
//! found nothing where it is (see [`pass`]): unrelated commits cost reads, not writes.
//!
//! # Loops
//!
//! An automation may not be triggered by what its own actions emit (`send_message` and the
//! `message.*` events, `grant_coupon` and `coupon.claimed`): it would feed itself. Chains
//! across automations end at a coupon's stock or per-member limit, at a tag already held, and
//! at the message cap.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::actions::{self, Action, Target};
use super::runs::{self, NewRun, RunId, Stats};
use crate::common::auth::Auth;
use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};
use crate::common::events::event_type_of;
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::{double_option, Json};
use crate::common::outbox::NewEvent;
use crate::common::pagination::{self, PageQuery};
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::sql::Sql;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::segments::rule::Rule;
use crate::AppState;

crate::typed_id!(AutomationId, "aut");

/// The scheduler job that runs one run's step.
pub const STEP_JOB: &str = "automation.step";
/// How often each node looks for other nodes' events when its own commits do not wake it.
pub const POLL: Duration = Duration::from_millis(500);
/// Least time between two passes of one node.
const MIN_GAP: Duration = Duration::from_millis(5);
/// Longest delay: 90 days.
pub const MAX_DELAY_SECS: i64 = 90 * 24 * 3600;
/// Most automations per tenant.
pub const MAX_AUTOMATIONS: i64 = 200;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Largest page of automations.
pub const MAX_PAGE: i64 = 200;
/// Events read per fan-out step.
const PAGE: i64 = 500;

/// What starts an automation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// An event type that names a member (`member.created`, `order.paid`,
    /// `member.lifecycle_changed`, `member.repurchase_due`, `points.expiring`,
    /// `member.birthday`, …; see the event catalogue).
    pub event: String,
}

/// `active` or `paused` (a paused automation starts no runs, and its waiting runs do nothing
/// when their time comes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AutomationStatus {
    Active,
    Paused,
}

impl AutomationStatus {
    fn as_str(self) -> &'static str {
        match self {
            AutomationStatus::Active => "active",
            AutomationStatus::Paused => "paused",
        }
    }
}

/// An automation as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Automation {
    #[schema(value_type = String)]
    pub id: AutomationId,
    pub name: String,
    pub trigger: Trigger,
    /// A segments rule evaluated on the member when the step runs; null: every member.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    pub delay_secs: i64,
    pub actions: Vec<Action>,
    pub status: AutomationStatus,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "id, name, trigger_event, filter, delay_secs, actions, status, created_at, updated_at";

fn automation(row: &AnyRow) -> ApiResult<Automation> {
    let filter: Option<String> = row.try_get("filter")?;
    let actions: String = row.try_get("actions")?;
    let status: String = row.try_get("status")?;
    Ok(Automation {
        id: AutomationId::from_db(row.try_get("id")?),
        name: row.try_get("name")?,
        trigger: Trigger {
            event: row.try_get("trigger_event")?,
        },
        filter: filter
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(ApiError::internal)?,
        delay_secs: row.try_get("delay_secs")?,
        actions: serde_json::from_str(&actions).map_err(ApiError::internal)?,
        status: if status == "paused" {
            AutomationStatus::Paused
        } else {
            AutomationStatus::Active
        },
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
    })
}

async fn find(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<Automation>> {
    let Some(id) = AutomationId::parse(id) else {
        return Ok(None);
    };
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {COLUMNS} FROM automation WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    sql.query()
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(automation)
        .transpose()
}

async fn require(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Automation> {
    find(conn, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("automation"))
}

/// Events an action emits, which may not trigger an automation with that action.
fn feeds_itself(trigger: &str, actions: &[Action]) -> bool {
    actions.iter().any(|action| match action {
        Action::SendMessage(_) => trigger.starts_with("message."),
        Action::GrantCoupon(_) => trigger == "coupon.claimed",
        Action::GrantPoints(_) | Action::AddTags(_) => false,
    })
}

fn trigger_field(trigger: &Trigger, actions: &[Action]) -> ApiResult<String> {
    let names_member = event_type_of(&trigger.event)
        .map(|t| t.payload.contains(&"member_id"))
        .unwrap_or(false);
    if !names_member {
        return Err(ApiError::validation(
            "trigger.event",
            format!(
                "{:?} is not an event type that names a member (see the catalogue on /docs)",
                trigger.event
            ),
        ));
    }
    if feeds_itself(&trigger.event, actions) {
        return Err(ApiError::validation(
            "trigger.event",
            format!(
                "{} is emitted by this automation's own actions: it would trigger itself",
                trigger.event
            ),
        ));
    }
    Ok(trigger.event.clone())
}

fn filter_field(filter: &Value) -> ApiResult<Rule> {
    crate::segments::routes::parse_rule_at(filter, "filter")
}

fn delay_field(delay: i64) -> ApiResult<i64> {
    if !(0..=MAX_DELAY_SECS).contains(&delay) {
        return Err(ApiError::validation(
            "delay_secs",
            format!("must be 0 to {MAX_DELAY_SECS} (90 days)"),
        ));
    }
    Ok(delay)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAutomation {
    pub name: String,
    pub trigger: Trigger,
    /// A segments rule (the language of `POST /v1/segments/preview`), evaluated on the member
    /// when the step runs.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Seconds between the event and the step, 0 to 7,776,000 (default 0).
    pub delay_secs: Option<i64>,
    /// 1 to 10 actions, run in order.
    pub actions: Vec<Action>,
    /// Default `active`.
    pub status: Option<AutomationStatus>,
}

/// Create an automation; it acts on events from now on.
#[utoipa::path(post, path = "/v1/automations", tag = "engagement", request_body = CreateAutomation,
    responses((status = 201, body = Automation), (status = 422)), security(("api_key" = [])))]
async fn create_automation(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateAutomation>,
) -> ApiResult<(StatusCode, Json<Automation>)> {
    let name = text::required("name", &request.name, MAX_NAME_CHARS)?;
    let trigger = trigger_field(&request.trigger, &request.actions)?;
    let filter = request
        .filter
        .as_ref()
        .filter(|f| !f.is_null())
        .map(|f| filter_field(f).map(|rule| rule.to_json()))
        .transpose()?;
    let delay = delay_field(request.delay_secs.unwrap_or(0))?;
    let status = request.status.unwrap_or(AutomationStatus::Active);
    let mut tx = state.begin().await?;
    let actions = actions::checked(tx.conn(), &auth.tenant_id, &request.actions).await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM automation WHERE tenant_id = $1")
        .bind(auth.tenant_id.as_str())
        .fetch_one(tx.conn())
        .await?;
    if existing >= MAX_AUTOMATIONS {
        return Err(ApiError::validation(
            "name",
            format!("a tenant keeps at most {MAX_AUTOMATIONS} automations; delete one first"),
        ));
    }
    let cursor: i64 = sqlx::query_scalar("SELECT event_seq FROM tenant WHERE id = $1")
        .bind(auth.tenant_id.as_str())
        .fetch_one(tx.conn())
        .await?;
    let id = AutomationId::generate();
    let at = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO automation (tenant_id, id, name, trigger_event, filter, delay_secs, \
         actions, status, event_cursor, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .bind(&name)
    .bind(&trigger)
    .bind(filter.as_ref().map(Value::to_string))
    .bind(delay)
    .bind(serde_json::to_string(&actions).map_err(ApiError::internal)?)
    .bind(status.as_str())
    .bind(cursor)
    .bind(at)
    .execute(tx.conn())
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "automation.created",
        Some(id.as_str()),
        json!({ "automation_id": id, "trigger": trigger, "status": status.as_str() }),
    ));
    let created = require(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AutomationPage {
    pub data: Vec<Automation>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's automations, oldest first.
#[utoipa::path(get, path = "/v1/automations", tag = "engagement", params(PageQuery),
    responses((status = 200, body = AutomationPage), (status = 422)), security(("api_key" = [])))]
async fn list_automations(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<AutomationPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), AutomationId::parse)?;
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS} FROM automation WHERE tenant_id = "
    ));
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id > ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(state.db.read()).await?;
    let mut data = rows.iter().map(automation).collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |a| a.id.to_string());
    Ok(Json(AutomationPage { data, next_cursor }))
}

/// One automation.
#[utoipa::path(get, path = "/v1/automations/{id}", tag = "engagement",
    params(("id" = String, Path, description = "automation id")),
    responses((status = 200, body = Automation), (status = 404)), security(("api_key" = [])))]
async fn get_automation(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Automation>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(require(&mut conn, &auth.tenant_id, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAutomation {
    pub name: Option<String>,
    pub trigger: Option<Trigger>,
    /// A rule, or null to act on every member.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Option<Value>>,
    pub delay_secs: Option<i64>,
    pub actions: Option<Vec<Action>>,
    /// `paused` stops new runs and makes waiting ones do nothing; `active` resumes from the
    /// events of now on (what happened while paused is not replayed).
    pub status: Option<AutomationStatus>,
}

/// Change an automation. Waiting runs take the new filter and actions when their time comes.
#[utoipa::path(patch, path = "/v1/automations/{id}", tag = "engagement", request_body = UpdateAutomation,
    params(("id" = String, Path, description = "automation id")),
    responses((status = 200, body = Automation), (status = 404), (status = 422)), security(("api_key" = [])))]
async fn update_automation(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateAutomation>,
) -> ApiResult<Json<Automation>> {
    let mut tx = state.begin().await?;
    let current = require(tx.conn(), &auth.tenant_id, &id).await?;
    let name = match &request.name {
        Some(name) => text::required("name", name, MAX_NAME_CHARS)?,
        None => current.name.clone(),
    };
    let actions = match &request.actions {
        Some(actions) => actions::checked(tx.conn(), &auth.tenant_id, actions).await?,
        None => current.actions.clone(),
    };
    let trigger = trigger_field(
        request.trigger.as_ref().unwrap_or(&current.trigger),
        &actions,
    )?;
    let filter = match &request.filter {
        Some(Some(f)) if !f.is_null() => Some(filter_field(f)?.to_json()),
        Some(_) => None,
        None => current.filter.clone(),
    };
    let delay = delay_field(request.delay_secs.unwrap_or(current.delay_secs))?;
    let status = request.status.unwrap_or(current.status);
    let at = to_micros(tx.now());
    // Resuming starts from now: the events of the pause are not replayed.
    let resumed = current.status == AutomationStatus::Paused && status == AutomationStatus::Active;
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE automation SET name = ");
    sql.bind(name.as_str())
        .push(", trigger_event = ")
        .bind(trigger.as_str())
        .push(", filter = ")
        .bind(filter.as_ref().map(Value::to_string))
        .push(", delay_secs = ")
        .bind(delay)
        .push(", actions = ")
        .bind(serde_json::to_string(&actions).map_err(ApiError::internal)?)
        .push(", status = ")
        .bind(status.as_str())
        .push(", updated_at = ")
        .bind(at);
    if resumed {
        sql.push(", event_cursor = (SELECT event_seq FROM tenant WHERE id = ")
            .bind(auth.tenant_id.as_str())
            .push(")");
    }
    sql.push(" WHERE tenant_id = ")
        .bind(auth.tenant_id.as_str())
        .push(" AND id = ")
        .bind(current.id.as_str());
    sql.query().execute(tx.conn()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "automation.updated",
        Some(current.id.as_str()),
        json!({ "automation_id": current.id, "status": status.as_str() }),
    ));
    let updated = require(tx.conn(), &auth.tenant_id, current.id.as_str()).await?;
    tx.commit().await?;
    Ok(Json(updated))
}

/// Delete an automation; its waiting runs do nothing when their time comes, its runs and
/// messages stay in the members' histories.
#[utoipa::path(delete, path = "/v1/automations/{id}", tag = "engagement",
    params(("id" = String, Path, description = "automation id")),
    responses((status = 204), (status = 404)), security(("api_key" = [])))]
async fn delete_automation(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.begin().await?;
    let current = require(tx.conn(), &auth.tenant_id, &id).await?;
    sqlx::query("DELETE FROM automation WHERE tenant_id = $1 AND id = $2")
        .bind(auth.tenant_id.as_str())
        .bind(current.id.as_str())
        .execute(tx.conn())
        .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "automation.deleted",
        Some(current.id.as_str()),
        json!({ "automation_id": current.id }),
    ));
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an automation did: members entered, filtered out, messages handed over or spared,
/// and the paid orders within 7 days of its messages.
#[utoipa::path(get, path = "/v1/automations/{id}/stats", tag = "engagement",
    params(("id" = String, Path, description = "automation id")),
    responses((status = 200, body = Stats), (status = 404)), security(("api_key" = [])))]
async fn automation_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Stats>> {
    let current = {
        let mut conn = state.db.read().acquire().await?;
        require(&mut conn, &auth.tenant_id, &id).await?
    };
    Ok(Json(
        runs::stats(&state.db, &auth.tenant_id, current.id.as_str()).await?,
    ))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_automation, list_automations))
        .routes(routes!(
            get_automation,
            update_automation,
            delete_automation
        ))
        .routes(routes!(automation_stats))
}

// --- the worker ----------------------------------------------------------------------------

struct Cursor {
    tenant_id: TenantId,
    id: String,
    trigger: String,
    delay_secs: i64,
    cursor: i64,
}

struct Triggering {
    seq: i64,
    kind: String,
    at: i64,
    member_id: Option<String>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Runs written from new events.
    pub runs: usize,
    /// Steps run at once because they were due.
    pub steps: usize,
}

/// One pass on every tenant: new events become runs, and the runs due now take their step.
/// Each node calls this every [`POLL`]; tests call it after events.
pub async fn run_automations(state: &AppState) -> anyhow::Result<Pass> {
    pass(state, false).await
}

/// A pass; `lazy` (a pass woken by a commit) moves the cursor of an automation that found no
/// event of its trigger only when a whole page went by, so that a stream of unrelated commits
/// (a flash sale) costs reads, not a write per automation per commit; the next poll moves it.
pub async fn pass(state: &AppState, lazy: bool) -> anyhow::Result<Pass> {
    let due_now = fan_out(&state.db, state.clock.now(), lazy).await?;
    let mut pass = Pass {
        runs: due_now.len(),
        ..Pass::default()
    };
    // Now after the read: an event committed while the pass was reading is due too.
    let now = state.clock.now();
    for (tenant_id, run_id, due_at) in due_now {
        if due_at > to_micros(now) {
            continue;
        }
        let job = step_new_job(&run_id, due_at);
        match scheduler::claim_now(&state.db, &tenant_id, &job, now).await? {
            scheduler::Claimed::Run(job) => {
                if let Err(error) = step_job(state, &job).await {
                    let cause = format!("{error:#}");
                    scheduler::record_failure(&state.db, &job, &cause, state.clock.now()).await?;
                    tracing::warn!(tenant_id = %tenant_id, job = %job.id, error = %cause,
                        "automation step failed; it will run again");
                } else {
                    pass.steps += 1;
                }
            }
            scheduler::Claimed::Done(_) | scheduler::Claimed::Busy => {}
        }
    }
    Ok(pass)
}

/// The automation worker of one node: a pass when a transaction of this process commits
/// events (if `wake_on_commit`) and at least every [`POLL`]. Runs until aborted.
pub async fn run(state: AppState, wake_on_commit: bool) {
    let committed = state.db.events_committed();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woken = if wake_on_commit {
            tokio::select! {
                _ = tick.tick() => false,
                _ = committed.notified() => true,
            }
        } else {
            tick.tick().await;
            false
        };
        if let Err(error) = pass(&state, woken).await {
            tracing::warn!(error = format!("{error:#}"), "automation pass failed");
        }
        // Under a stream of commits, a pass at most every few milliseconds: the commits of
        // the meantime are in the next pass's read.
        tokio::time::sleep(MIN_GAP).await;
    }
}

fn step_new_job(run_id: &RunId, due_at: i64) -> NewJob {
    NewJob {
        id: format!("{STEP_JOB}:{run_id}"),
        kind: STEP_JOB,
        due_at,
        payload: json!({ "run_id": run_id }),
    }
}

/// Write runs for every active automation's new events; returns the runs written.
async fn fan_out(
    db: &Db,
    now: jiff::Timestamp,
    lazy: bool,
) -> anyhow::Result<Vec<(TenantId, RunId, i64)>> {
    let rows = sqlx::query(
        "SELECT tenant_id, id, trigger_event, delay_secs, event_cursor FROM automation \
         WHERE status = 'active' ORDER BY tenant_id, id",
    )
    .fetch_all(db.read())
    .await?;
    let mut tenants: BTreeMap<String, Vec<Cursor>> = BTreeMap::new();
    for row in rows {
        let tenant: String = row.try_get("tenant_id")?;
        tenants.entry(tenant.clone()).or_default().push(Cursor {
            tenant_id: TenantId::from_db(tenant),
            id: row.try_get("id")?,
            trigger: row.try_get("trigger_event")?,
            delay_secs: row.try_get("delay_secs")?,
            cursor: row.try_get("event_cursor")?,
        });
    }
    let mut written = Vec::new();
    for (tenant, mut automations) in tenants {
        while let Some(from) = automations.iter().map(|a| a.cursor).min() {
            let events = sqlx::query(
                "SELECT seq, type, at, data FROM event WHERE tenant_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(&tenant)
            .bind(from)
            .bind(PAGE)
            .fetch_all(db.read())
            .await?
            .into_iter()
            .map(|row| {
                let data: String = row.try_get("data")?;
                let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                Ok(Triggering {
                    seq: row.try_get("seq")?,
                    kind: row.try_get("type")?,
                    at: row.try_get("at")?,
                    member_id: data
                        .get("member_id")
                        .and_then(Value::as_str)
                        .and_then(MemberId::parse)
                        .map(|m| m.to_string()),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let mut lost = Vec::new();
            for (index, automation) in automations.iter_mut().enumerate() {
                if automation.cursor >= last {
                    continue;
                }
                let new: Vec<NewRun> = events
                    .iter()
                    .filter(|e| e.seq > automation.cursor && e.kind == automation.trigger)
                    .filter_map(|e| {
                        Some(NewRun {
                            member_id: e.member_id.clone()?,
                            trigger_key: e.seq.to_string(),
                            due_at: e.at.saturating_add(automation.delay_secs * 1_000_000),
                        })
                    })
                    .collect();
                if lazy && new.is_empty() && events.len() < PAGE as usize {
                    continue;
                }
                match advance(db, now, automation, &new, last).await? {
                    Some(runs) => {
                        written.extend(
                            runs.into_iter()
                                .map(|(id, due)| (automation.tenant_id.clone(), id, due)),
                        );
                        automation.cursor = last;
                    }
                    // Another node moved this cursor (or the automation changed): theirs.
                    None => lost.push(index),
                }
            }
            for index in lost.into_iter().rev() {
                automations.remove(index);
            }
            if events.len() < PAGE as usize {
                break;
            }
        }
    }
    Ok(written)
}

/// Write `runs` with their jobs and move the automation's cursor to `last`, if the cursor is
/// still what was read; `None` when it was not.
async fn advance(
    db: &Db,
    now: jiff::Timestamp,
    automation: &Cursor,
    runs: &[NewRun],
    last: i64,
) -> anyhow::Result<Option<Vec<(RunId, i64)>>> {
    let mut tx = db.begin(now).await?;
    let moved = sqlx::query(
        "UPDATE automation SET event_cursor = $1 \
         WHERE tenant_id = $2 AND id = $3 AND event_cursor = $4 AND status = 'active'",
    )
    .bind(last)
    .bind(automation.tenant_id.as_str())
    .bind(&automation.id)
    .bind(automation.cursor)
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let written = runs::insert(&mut tx, &automation.tenant_id, &automation.id, runs).await?;
    let jobs: Vec<NewJob> = written
        .iter()
        .map(|run| step_new_job(&run.id, run.due_at))
        .collect();
    for chunk in jobs.chunks(200) {
        scheduler::schedule(tx.conn(), &automation.tenant_id, chunk, to_micros(now)).await?;
    }
    tx.commit().await?;
    Ok(Some(
        written
            .into_iter()
            .map(|run| (run.id, run.due_at))
            .collect(),
    ))
}

/// What the step decided before acting.
enum Decision {
    Act(Box<Automation>),
    FilteredOut,
    Skip(&'static str),
}

/// Whether the automation acts on the member now: they must exist and be active, and match
/// the filter if there is one (only then are all of the member's facts read).
async fn decide(
    state: &AppState,
    tenant_id: &TenantId,
    zone: &jiff::tz::TimeZone,
    member_id: &str,
    automation: Automation,
) -> anyhow::Result<Decision> {
    let Some(filter) = &automation.filter else {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM member WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id.as_str())
                .bind(member_id)
                .fetch_optional(state.db.read())
                .await?;
        return Ok(match status.as_deref() {
            None => Decision::Skip("member_not_found"),
            Some(crate::members::model::STATUS_ACTIVE) => Decision::Act(Box::new(automation)),
            Some(_) => Decision::Skip("member_inactive"),
        });
    };
    let facts = crate::segments::load::member_facts(&state.db, tenant_id, zone, member_id).await?;
    Ok(match facts {
        None => Decision::Skip("member_not_found"),
        Some(f) if !f.active => Decision::Skip("member_inactive"),
        Some(f) => {
            let today = state.clock.now().to_zoned(zone.clone()).date();
            let rule = crate::segments::rule::parse(filter, "filter")
                .map_err(|e| anyhow::anyhow!("stored filter: {e}"))?;
            if crate::segments::index::matches(&f, &rule, today) {
                Decision::Act(Box::new(automation))
            } else {
                Decision::FilteredOut
            }
        }
    })
}

/// One run's step: check the automation and the filter on the member as they are now, then
/// act, once.
pub async fn step_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let run_id = job
        .payload
        .get("run_id")
        .and_then(Value::as_str)
        .and_then(RunId::parse)
        .ok_or_else(|| anyhow::anyhow!("job without run_id"))?;
    let tenant_id = &job.tenant_id;
    let run = runs::fetch(&state.db, tenant_id, &run_id).await?;
    let Some(run) = run.filter(|r| r.status == runs::WAITING) else {
        let mut conn = state.db.write_conn().await?;
        scheduler::complete(&mut conn, job).await?;
        return Ok(());
    };
    let zone = crate::tenants::time_zone_in(&state.db, tenant_id).await?;
    let found = {
        let mut conn = state.db.read().acquire().await?;
        find(&mut conn, tenant_id, &run.source_id).await?
    };
    let decision = match found {
        None => Decision::Skip("automation_deleted"),
        Some(a) if a.status == AutomationStatus::Paused => Decision::Skip("automation_paused"),
        Some(a) => decide(state, tenant_id, &zone, &run.member_id, a).await?,
    };
    let mut tx = state.begin().await?;
    let (status, outcome) = match &decision {
        Decision::Act(_) => (runs::COMPLETED, Value::Null),
        Decision::FilteredOut => (runs::FILTERED_OUT, Value::Null),
        Decision::Skip(reason) => (runs::SKIPPED, json!({ "reason": reason })),
    };
    if runs::finish(&mut tx, tenant_id, &run.id, status, &outcome).await? {
        if let Decision::Act(automation) = &decision {
            let member_id = MemberId::from_db(run.member_id.clone());
            let target = Target {
                tenant_id,
                zone: &zone,
                member_id: &member_id,
                source: automation.id.as_str(),
                run_id: run.id.as_str(),
            };
            let applied = actions::apply(&mut tx, &target, &automation.actions).await?;
            runs::set_outcome(&mut tx, tenant_id, &run.id, &json!(applied.outcome)).await?;
        }
    }
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}
