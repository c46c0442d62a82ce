//! Broadcasts (群发): the same actions as an automation, once, to every member of an audience
//! (a saved segment or a rule) at `send_at`.
//!
//! A broadcast is a row with a scheduler job at `send_at` ([`SEND_JOB`], DESIGN rule 7). The
//! job walks the audience as the segment index answers it then, in member-id pages; each page
//! is one transaction that writes a run per member (unique per broadcast and member, see
//! [`super::runs`]) and runs the actions for the members whose run it wrote. A job that dies
//! half-way runs again and skips the members already done; two nodes racing write each
//! member's run once. Messages go through the gate like any other (consent, cap, quiet hours).
//!
//! `POST /v1/broadcasts/dry-run` answers what the broadcast would do now without writing
//! anything: the audience, the messages the gate would let through, suppress or defer, and the
//! points and coupons it would hand out (before coupon stock and per-member limits).

use axum::extract::State;
use axum::http::StatusCode;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::actions::{self, Action, Target};
use super::messages::{self, Category, Verdict};
use super::runs::{self, NewRun, Stats, Suppressed};
use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination::{self, PageQuery};
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::sql::Sql;
use crate::common::text;
use crate::common::time::{instant_field, micros_to_rfc3339, to_micros};
use crate::segments::rule::Rule;
use crate::AppState;

crate::typed_id!(BroadcastId, "bro");

/// The scheduler job that sends a broadcast.
pub const SEND_JOB: &str = "broadcast.send";
/// Members per transaction when sending, and per read in a dry run.
const PAGE: usize = 200;
/// Latest `send_at`: a year ahead.
const MAX_AHEAD_MICROS: i64 = 366 * 24 * 3600 * 1_000_000;
/// Largest page of broadcasts.
pub const MAX_PAGE: i64 = 200;

/// Who a broadcast goes to: exactly one of a saved segment or a rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    /// A saved segment, read when the broadcast is sent (its rule then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// A rule of the segments rule language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBroadcast {
    pub name: String,
    pub audience: Audience,
    /// 1 to 10 actions, as for automations.
    pub actions: Vec<Action>,
    /// RFC 3339, or a date (the start of that day in the tenant's time zone); absent or past:
    /// now. At most a year ahead.
    pub send_at: Option<String>,
}

/// A broadcast as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Broadcast {
    #[schema(value_type = String)]
    pub id: BroadcastId,
    pub name: String,
    pub audience: Audience,
    pub actions: Vec<Action>,
    pub send_at: String,
    /// `scheduled`, `sending`, `sent`, `cancelled` or `failed` (its saved segment was deleted
    /// before it was sent).
    pub status: String,
    /// Members it went to, once sent.
    pub audience_count: Option<i64>,
    pub sent_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "id, name, audience, actions, send_at, status, audience_count, sent_at, created_at, updated_at";

fn broadcast(row: &AnyRow) -> ApiResult<Broadcast> {
    let audience: String = row.try_get("audience")?;
    let actions: String = row.try_get("actions")?;
    let sent_at: Option<i64> = row.try_get("sent_at")?;
    Ok(Broadcast {
        id: BroadcastId::from_db(row.try_get("id")?),
        name: row.try_get("name")?,
        audience: serde_json::from_str(&audience).map_err(ApiError::internal)?,
        actions: serde_json::from_str(&actions).map_err(ApiError::internal)?,
        send_at: micros_to_rfc3339(row.try_get("send_at")?),
        status: row.try_get("status")?,
        audience_count: row.try_get("audience_count")?,
        sent_at: sent_at.map(micros_to_rfc3339),
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
    })
}

async fn find(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<Broadcast>> {
    let Some(id) = BroadcastId::parse(id) else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM broadcast WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(broadcast).transpose()
}

async fn require(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Broadcast> {
    find(conn, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("broadcast"))
}

/// Check an audience: exactly one of `segment_id` (a saved segment of the tenant) or `rule`.
async fn audience_field(
    state: &AppState,
    tenant_id: &TenantId,
    audience: &Audience,
) -> ApiResult<Audience> {
    match (&audience.segment_id, &audience.rule) {
        (Some(segment), None) => {
            if crate::segments::routes::saved_rule(&state.db, tenant_id, segment)
                .await?
                .is_none()
            {
                return Err(ApiError::validation(
                    "audience.segment_id",
                    "no such segment",
                ));
            }
            Ok(audience.clone())
        }
        (None, Some(rule)) => {
            let rule = crate::segments::routes::parse_rule_at(rule, "audience.rule")?;
            Ok(Audience {
                segment_id: None,
                rule: Some(rule.to_json()),
            })
        }
        _ => Err(ApiError::validation(
            "audience",
            "give exactly one of segment_id or rule",
        )),
    }
}

/// The audience's rule now; `None` when its saved segment is gone.
async fn audience_rule(
    state: &AppState,
    tenant_id: &TenantId,
    audience: &Audience,
) -> ApiResult<Option<Rule>> {
    match (&audience.segment_id, &audience.rule) {
        (Some(segment), _) => {
            crate::segments::routes::saved_rule(&state.db, tenant_id, segment).await
        }
        (None, Some(rule)) => Ok(Some(crate::segments::routes::parse_rule_at(
            rule,
            "audience.rule",
        )?)),
        (None, None) => Ok(None),
    }
}

fn send_at_field(text: Option<&str>, now: Timestamp, zone: &TimeZone) -> ApiResult<i64> {
    let now = to_micros(now);
    let Some(text) = text else {
        return Ok(now);
    };
    let at = to_micros(instant_field("send_at", text, zone)?);
    if at > now.saturating_add(MAX_AHEAD_MICROS) {
        return Err(ApiError::validation(
            "send_at",
            "must be at most a year ahead",
        ));
    }
    Ok(at.max(now))
}

/// Schedule a broadcast: at `send_at` (or now) its actions run for every member of the
/// audience, once each.
#[utoipa::path(post, path = "/v1/broadcasts", tag = "engagement", request_body = CreateBroadcast,
    responses((status = 201, body = Broadcast), (status = 422)), security(("api_key" = [])))]
async fn create_broadcast(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateBroadcast>,
) -> ApiResult<(StatusCode, Json<Broadcast>)> {
    let name = text::required("name", &request.name, super::automations::MAX_NAME_CHARS)?;
    let audience = audience_field(&state, &auth.tenant_id, &request.audience).await?;
    let zone = crate::tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let send_at = send_at_field(request.send_at.as_deref(), state.clock.now(), &zone)?;
    let mut tx = state.begin().await?;
    let actions = actions::checked(tx.conn(), &auth.tenant_id, &request.actions).await?;
    let id = BroadcastId::generate();
    let at = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO broadcast (tenant_id, id, name, audience, actions, send_at, status, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7, $7)",
    )
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .bind(&name)
    .bind(serde_json::to_string(&audience).map_err(ApiError::internal)?)
    .bind(serde_json::to_string(&actions).map_err(ApiError::internal)?)
    .bind(send_at)
    .bind(at)
    .execute(tx.conn())
    .await?;
    scheduler::schedule(
        tx.conn(),
        &auth.tenant_id,
        &[NewJob {
            id: format!("{SEND_JOB}:{id}"),
            kind: SEND_JOB,
            due_at: send_at,
            payload: json!({ "broadcast_id": id }),
        }],
        at,
    )
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "broadcast.created",
        Some(id.as_str()),
        json!({ "broadcast_id": id, "send_at": micros_to_rfc3339(send_at) }),
    ));
    let created = require(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    pub name: Option<String>,
    pub audience: Audience,
    pub actions: Vec<Action>,
    pub send_at: Option<String>,
}

/// Points and coupons a broadcast would hand out.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Cost {
    pub points: i64,
    /// Coupons asked for (each still subject to its template's stock and per-member limit).
    pub coupons: i64,
}

/// What a broadcast would do if it were sent at `send_at` (or now).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct DryRun {
    /// Members in the audience now.
    pub audience: i64,
    /// Messages the gate would hand to the gateway.
    pub would_send: i64,
    pub suppressed: Suppressed,
    /// Messages the gate would hold until the end of quiet hours.
    pub deferred_quiet_hours: i64,
    pub cost: Cost,
}

/// What a broadcast would do, without changing anything.
#[utoipa::path(post, path = "/v1/broadcasts/dry-run", tag = "engagement", request_body = DryRunRequest,
    responses((status = 200, body = DryRun), (status = 422)), security(("api_key" = [])))]
async fn dry_run(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<DryRunRequest>,
) -> ApiResult<Json<DryRun>> {
    if let Some(name) = &request.name {
        text::required("name", name, super::automations::MAX_NAME_CHARS)?;
    }
    let audience = audience_field(&state, &auth.tenant_id, &request.audience).await?;
    let zone = crate::tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let at = send_at_field(request.send_at.as_deref(), state.clock.now(), &zone)?;
    let actions = {
        let mut conn = state.db.read().acquire().await?;
        actions::checked(&mut conn, &auth.tenant_id, &request.actions).await?
    };
    let rule = audience_rule(&state, &auth.tenant_id, &audience)
        .await?
        .ok_or_else(|| ApiError::validation("audience.segment_id", "no such segment"))?;
    let settings = {
        let mut conn = state.db.read().acquire().await?;
        messages::load_settings(&mut conn, &auth.tenant_id).await?
    };
    let quiet = settings.validate()?;
    let at = crate::common::time::from_micros(at);
    let points_each: i64 = actions
        .iter()
        .map(|a| match a {
            Action::GrantPoints(g) => g.points,
            _ => 0,
        })
        .sum();
    let coupons_each = actions
        .iter()
        .filter(|a| matches!(a, Action::GrantCoupon(_)))
        .count() as i64;
    let mut report = DryRun::default();
    let mut after: Option<String> = None;
    loop {
        let ids = state
            .segments
            .page(&auth.tenant_id, &rule, after.as_deref(), PAGE)
            .await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let recipients = messages::recipients(state.db.read(), &auth.tenant_id, &ids, at).await?;
        for id in &ids {
            let Some(mut recipient) = recipients.get(id).copied() else {
                continue;
            };
            report.audience += 1;
            report.cost.points = report.cost.points.saturating_add(points_each);
            report.cost.coupons += coupons_each;
            for action in &actions {
                let Action::SendMessage(send) = action else {
                    continue;
                };
                match messages::gate(
                    send.category,
                    recipient,
                    settings.max_marketing_per_member_per_7_days,
                    quiet,
                    at,
                    &zone,
                ) {
                    Verdict::Send => {
                        report.would_send += 1;
                        if send.category == Category::Marketing {
                            recipient.sent_in_window += 1;
                        }
                    }
                    Verdict::Defer(_) => report.deferred_quiet_hours += 1,
                    Verdict::Suppress(reason) => match reason {
                        messages::Reason::NoConsent => report.suppressed.no_consent += 1,
                        messages::Reason::FrequencyCap => report.suppressed.frequency_cap += 1,
                        messages::Reason::Erased => report.suppressed.erased += 1,
                    },
                }
            }
        }
        if ids.len() < PAGE {
            break;
        }
        after = Some(last);
    }
    Ok(Json(report))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BroadcastPage {
    pub data: Vec<Broadcast>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's broadcasts, newest first.
#[utoipa::path(get, path = "/v1/broadcasts", tag = "engagement", params(PageQuery),
    responses((status = 200, body = BroadcastPage), (status = 422)), security(("api_key" = [])))]
async fn list_broadcasts(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<BroadcastPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), BroadcastId::parse)?;
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS} FROM broadcast WHERE tenant_id = "
    ));
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(state.db.read()).await?;
    let mut data = rows.iter().map(broadcast).collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |b| b.id.to_string());
    Ok(Json(BroadcastPage { data, next_cursor }))
}

/// One broadcast.
#[utoipa::path(get, path = "/v1/broadcasts/{id}", tag = "engagement",
    params(("id" = String, Path, description = "broadcast id")),
    responses((status = 200, body = Broadcast), (status = 404)), security(("api_key" = [])))]
async fn get_broadcast(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Broadcast>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(require(&mut conn, &auth.tenant_id, &id).await?))
}

/// Cancel a broadcast that has not started.
#[utoipa::path(post, path = "/v1/broadcasts/{id}/cancel", tag = "engagement",
    params(("id" = String, Path, description = "broadcast id")),
    responses((status = 200, body = Broadcast), (status = 404), (status = 409, description = "broadcast_started")),
    security(("api_key" = [])))]
async fn cancel_broadcast(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Broadcast>> {
    let mut tx = state.begin().await?;
    let current = require(tx.conn(), &auth.tenant_id, &id).await?;
    let at = to_micros(tx.now());
    let cancelled = sqlx::query(
        "UPDATE broadcast SET status = 'cancelled', updated_at = $1 \
         WHERE tenant_id = $2 AND id = $3 AND status = 'scheduled'",
    )
    .bind(at)
    .bind(auth.tenant_id.as_str())
    .bind(current.id.as_str())
    .execute(tx.conn())
    .await?;
    if cancelled.rows_affected() != 1 {
        return Err(ApiError::conflict(
            codes::BROADCAST_STARTED,
            format!(
                "the broadcast is {}: only a scheduled one can be cancelled",
                current.status
            ),
        )
        .with_details(json!({ "status": current.status })));
    }
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "broadcast.cancelled",
        Some(current.id.as_str()),
        json!({ "broadcast_id": current.id }),
    ));
    let updated = require(tx.conn(), &auth.tenant_id, current.id.as_str()).await?;
    tx.commit().await?;
    Ok(Json(updated))
}

/// What a broadcast did, as for automations.
#[utoipa::path(get, path = "/v1/broadcasts/{id}/stats", tag = "engagement",
    params(("id" = String, Path, description = "broadcast id")),
    responses((status = 200, body = Stats), (status = 404)), security(("api_key" = [])))]
async fn broadcast_stats(
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
        .routes(routes!(create_broadcast, list_broadcasts))
        .routes(routes!(dry_run))
        .routes(routes!(get_broadcast))
        .routes(routes!(cancel_broadcast))
        .routes(routes!(broadcast_stats))
}

// --- sending -------------------------------------------------------------------------------

async fn set_status(
    state: &AppState,
    tenant_id: &TenantId,
    id: &BroadcastId,
    from: &str,
    to: &str,
) -> ApiResult<()> {
    let mut tx = state.begin().await?;
    sqlx::query(
        "UPDATE broadcast SET status = $1, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status = $5",
    )
    .bind(to)
    .bind(to_micros(tx.now()))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(from)
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Send a broadcast: every member of its audience, a page per transaction, once each.
pub async fn send_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let tenant_id = &job.tenant_id;
    let id = job
        .payload
        .get("broadcast_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let found = {
        let mut conn = state.db.read().acquire().await?;
        find(&mut conn, tenant_id, &id).await?
    };
    let Some(broadcast) = found.filter(|b| b.status == "scheduled" || b.status == "sending") else {
        let mut conn = state.db.write_conn().await?;
        scheduler::complete(&mut conn, job).await?;
        return Ok(());
    };
    set_status(state, tenant_id, &broadcast.id, "scheduled", "sending").await?;
    let Some(rule) = audience_rule(state, tenant_id, &broadcast.audience).await? else {
        let mut tx = state.begin().await?;
        sqlx::query(
            "UPDATE broadcast SET status = 'failed', updated_at = $1 WHERE tenant_id = $2 AND id = $3",
        )
        .bind(to_micros(tx.now()))
        .bind(tenant_id.as_str())
        .bind(broadcast.id.as_str())
        .execute(tx.conn())
        .await?;
        tx.emit(NewEvent::new(
            tenant_id,
            "broadcast.failed",
            Some(broadcast.id.as_str()),
            json!({ "broadcast_id": broadcast.id, "reason": "segment_deleted" }),
        ));
        scheduler::complete(tx.conn(), job).await?;
        tx.commit().await?;
        return Ok(());
    };
    let zone = crate::tenants::time_zone_in(&state.db, tenant_id).await?;
    let mut after: Option<String> = None;
    loop {
        let ids = state
            .segments
            .page(tenant_id, &rule, after.as_deref(), PAGE)
            .await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let mut tx = state.begin().await?;
        let due = to_micros(tx.now());
        let new: Vec<NewRun> = ids
            .iter()
            .map(|member| NewRun {
                member_id: member.clone(),
                trigger_key: member.clone(),
                due_at: due,
            })
            .collect();
        let written = runs::insert(&mut tx, tenant_id, broadcast.id.as_str(), &new).await?;
        for run in &written {
            let member_id = MemberId::from_db(run.member_id.clone());
            let run_id = &run.id;
            if !runs::finish(&mut tx, tenant_id, run_id, runs::COMPLETED, &Value::Null).await? {
                continue;
            }
            let target = Target {
                tenant_id,
                zone: &zone,
                member_id: &member_id,
                source: broadcast.id.as_str(),
                run_id: run_id.as_str(),
            };
            let applied = actions::apply(&mut tx, &target, &broadcast.actions).await?;
            runs::set_outcome(&mut tx, tenant_id, run_id, &json!(applied.outcome)).await?;
        }
        tx.commit().await?;
        if ids.len() < PAGE {
            break;
        }
        after = Some(last);
    }
    let mut tx = state.begin().await?;
    let at = to_micros(tx.now());
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM engagement_run WHERE tenant_id = $1 AND source_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(broadcast.id.as_str())
    .fetch_one(tx.conn())
    .await?;
    let sent = sqlx::query(
        "UPDATE broadcast SET status = 'sent', audience_count = $1, sent_at = $2, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status = 'sending'",
    )
    .bind(count)
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(broadcast.id.as_str())
    .execute(tx.conn())
    .await?;
    if sent.rows_affected() == 1 {
        tx.emit(NewEvent::new(
            tenant_id,
            "broadcast.sent",
            Some(broadcast.id.as_str()),
            json!({ "broadcast_id": broadcast.id, "audience": count }),
        ));
    }
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}
