//! Daily check-ins (打卡): one per member per tenant-local day, streaks, cycle rewards, and a
//! limited number of paid make-up check-ins (补签) per month.
//!
//! - [`rules`]: the pure rules (streak, cycle day, reward due, make-up dates and streak
//!   recomputation), with the reasoning about what a fraudster cannot replay.
//! - This module: the tenant's rule (`PUT/GET /v1/checkin-rule`), `POST /v1/checkins`,
//!   `POST /v1/checkins/makeup` and the calendar `GET /v1/members/{id}/checkins?month=`.
//!
//! # Exactness
//!
//! Every check-in or make-up of a member first upserts the member's `checkin_member` row,
//! which on PostgreSQL holds that row's lock until the transaction ends (SQLite has one writer
//! anyway). Everything after it — "already checked in today?", the streak of yesterday, the
//! number of make-ups this month — is read under that lock, so concurrent requests of one
//! member run one after the other: exactly one check-in per day succeeds, the others get 409
//! `already_checked_in`, and make-ups never pass the monthly limit. The key
//! `(tenant_id, member_id, local_date)` backs this up. "Today" is computed once per request from
//! the transaction's clock in the tenant's time zone, so 23:59:59 and 00:00:00 are two days.
//!
//! Rewards are paid in the same transaction: points from `system:issuance` with transfer id
//! `checkin:{member}:{date}` and code `checkin_reward`, coupons through `coupons::grant`. A
//! make-up debits its cost from the member to `system:redemption` (code `checkin_makeup`) and
//! pays no reward (see [`rules`]).

pub mod rules;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::body_member_id;
use super::reward::{self, Reward, RewardSpec};
use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::sql::Sql;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members;
use crate::tenants::time_zone as tenant_zone;
use crate::AppState;
use rules::{DayReward, MakeupRefusal};

/// Largest make-up cost, in points.
pub const MAX_MAKEUP_COST_POINTS: i64 = 1_000_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_rule, get_rule))
        .routes(routes!(check_in))
        .routes(routes!(make_up))
        .routes(routes!(calendar))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayRewardBody {
    /// Day of the cycle, 1 to `cycle_days`.
    pub day: i64,
    pub reward: RewardSpec,
}

/// The tenant's check-in rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinRule {
    /// Length of a reward cycle (1 to 31 days); after its last day the cycle restarts at 1.
    pub cycle_days: i64,
    /// Rewards by cycle day; days without an entry give nothing.
    pub rewards: Vec<DayRewardBody>,
    /// Make-up check-ins allowed per member per calendar month (0 to 31).
    pub makeup_per_month: i64,
    /// Points one make-up costs.
    pub makeup_cost_points: i64,
}

impl Default for CheckinRule {
    /// Seven-day cycle: 5 points on days 1 to 6, 30 on day 7; two make-ups a month at 20 points.
    fn default() -> Self {
        let points = |day, points| DayRewardBody {
            day,
            reward: RewardSpec {
                points: Some(points),
                ..RewardSpec::default()
            },
        };
        CheckinRule {
            cycle_days: 7,
            rewards: (1..=6)
                .map(|day| points(day, 5))
                .chain([points(7, 30)])
                .collect(),
            makeup_per_month: 2,
            makeup_cost_points: 20,
        }
    }
}

/// A validated rule.
struct Rule {
    body: CheckinRule,
    rewards: Vec<DayReward<Reward>>,
}

impl Rule {
    fn parse(body: CheckinRule) -> ApiResult<Rule> {
        if !(1..=rules::MAX_CYCLE_DAYS).contains(&body.cycle_days) {
            return Err(ApiError::validation(
                "cycle_days",
                format!("must be 1 to {}", rules::MAX_CYCLE_DAYS),
            ));
        }
        if !(0..=rules::MAX_MAKEUPS_PER_MONTH).contains(&body.makeup_per_month) {
            return Err(ApiError::validation(
                "makeup_per_month",
                format!("must be 0 to {}", rules::MAX_MAKEUPS_PER_MONTH),
            ));
        }
        if !(0..=MAX_MAKEUP_COST_POINTS).contains(&body.makeup_cost_points) {
            return Err(ApiError::validation(
                "makeup_cost_points",
                format!("must be 0 to {MAX_MAKEUP_COST_POINTS}"),
            ));
        }
        let mut rewards: Vec<DayReward<Reward>> = Vec::with_capacity(body.rewards.len());
        for (i, entry) in body.rewards.iter().enumerate() {
            if !(1..=body.cycle_days).contains(&entry.day) {
                return Err(ApiError::validation(
                    &format!("rewards[{i}].day"),
                    "must be 1 to cycle_days",
                ));
            }
            if rewards.iter().any(|r| r.day == entry.day) {
                return Err(ApiError::validation(
                    &format!("rewards[{i}].day"),
                    "each day may have one reward",
                ));
            }
            rewards.push(DayReward {
                day: entry.day,
                reward: Reward::parse(&format!("rewards[{i}].reward"), &entry.reward)?,
            });
        }
        Ok(Rule { body, rewards })
    }
}

async fn load_rule(conn: &mut AnyConnection, tenant_id: &TenantId) -> ApiResult<Rule> {
    let mut sql = Sql::for_conn(&*conn, "SELECT rule FROM checkin_rule WHERE tenant_id = ");
    sql.bind(tenant_id.as_str());
    let body = match sql.query().fetch_optional(&mut *conn).await? {
        Some(row) => {
            let text: String = row.try_get("rule")?;
            serde_json::from_str(&text)
                .map_err(|e| ApiError::internal(anyhow::anyhow!("stored check-in rule: {e}")))?
        }
        None => CheckinRule::default(),
    };
    Rule::parse(body)
}

/// Replace the tenant's check-in rule.
#[utoipa::path(put, path = "/v1/checkin-rule", tag = "community", request_body = CheckinRule,
    responses((status = 200, body = CheckinRule), (status = 422)), security(("api_key" = [])))]
async fn put_rule(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CheckinRule>,
) -> ApiResult<Json<CheckinRule>> {
    let rule = Rule::parse(body)?;
    let mut tx = state.begin().await?;
    for (i, day) in rule.rewards.iter().enumerate() {
        day.reward
            .check_exists(tx.conn(), &auth.tenant_id, &format!("rewards[{i}].reward"))
            .await?;
    }
    let text = serde_json::to_string(&rule.body).map_err(ApiError::internal)?;
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO checkin_rule (tenant_id, rule, updated_at) VALUES (",
    );
    sql.bind(auth.tenant_id.as_str())
        .push(", ")
        .bind(text)
        .push(", ")
        .bind(now)
        .push(") ON CONFLICT (tenant_id) DO UPDATE SET rule = excluded.rule, updated_at = excluded.updated_at");
    sql.query().execute(tx.conn()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "checkin.rule_changed",
        None,
        json!({ "cycle_days": rule.body.cycle_days, "makeup_per_month": rule.body.makeup_per_month }),
    ));
    tx.commit().await?;
    Ok(Json(rule.body))
}

/// The tenant's check-in rule (the default when none was set).
#[utoipa::path(get, path = "/v1/checkin-rule", tag = "community",
    responses((status = 200, body = CheckinRule)), security(("api_key" = [])))]
async fn get_rule(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<CheckinRule>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(load_rule(&mut conn, &auth.tenant_id).await?.body))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    pub member_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeupRequest {
    pub member_id: String,
    /// A missed day earlier in the current (tenant-local) month, `YYYY-MM-DD`.
    pub date: String,
}

/// One check-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checkin {
    #[schema(value_type = String)]
    pub member_id: MemberId,
    /// Tenant-local date.
    pub date: String,
    /// `normal` or `makeup`.
    pub kind: String,
    /// Consecutive checked-in days ending on this date.
    pub streak: i64,
    /// Day of the reward cycle, 1 to `cycle_days`.
    pub cycle_day: i64,
    /// The reward paid for this check-in, if any (make-ups pay none).
    pub reward: Option<RewardSpec>,
    /// How the reward was paid (transfer id or coupon id).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Value>,
    /// Points the make-up cost.
    pub points_cost: i64,
    pub created_at: String,
}

/// The columns [`Checkin::from_row`] reads.
const CHECKIN_COLUMNS: &str =
    "local_date, kind, streak, cycle_day, reward, points_cost, created_at";

impl Checkin {
    /// A stored check-in of `member_id`, a row of [`CHECKIN_COLUMNS`]. The payout is not
    /// stored with it (the check-in's event carries it); a stored reward that does not parse
    /// is a 500.
    fn from_row(row: &AnyRow, member_id: &MemberId) -> ApiResult<Checkin> {
        let reward: Option<String> = row.try_get("reward")?;
        Ok(Checkin {
            member_id: member_id.clone(),
            date: row.try_get("local_date")?,
            kind: row.try_get("kind")?,
            streak: row.try_get("streak")?,
            cycle_day: row.try_get("cycle_day")?,
            reward: reward
                .as_deref()
                .map(Reward::from_json)
                .transpose()?
                .map(|r| r.spec()),
            payout: None,
            points_cost: row.try_get("points_cost")?,
            created_at: micros_to_rfc3339(row.try_get("created_at")?),
        })
    }
}

/// Take the member's check-in lock (see the module doc).
async fn lock_member(tx: &mut Tx, tenant_id: &TenantId, member_id: &MemberId) -> ApiResult<()> {
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO checkin_member (tenant_id, member_id, updated_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(member_id.as_str())
        .push(", ")
        .bind(now)
        .push(
            ") ON CONFLICT (tenant_id, member_id) DO UPDATE SET updated_at = excluded.updated_at",
        );
    sql.query().execute(tx.conn()).await?;
    Ok(())
}

/// The streak of the member's check-in on `date`, if there is one.
async fn streak_on(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    date: Date,
) -> ApiResult<Option<i64>> {
    let mut sql = Sql::for_conn(&*conn, "SELECT streak FROM checkin WHERE tenant_id = ");
    sql.bind(tenant_id.as_str())
        .push(" AND member_id = ")
        .bind(member_id.as_str())
        .push(" AND local_date = ")
        .bind(date.to_string());
    let row = sql.query().fetch_optional(&mut *conn).await?;
    Ok(row.map(|r| r.try_get("streak")).transpose()?)
}

/// The latest check-in in `[from, before)` that completed a cycle.
async fn last_completion(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    from: Date,
    before: Date,
) -> ApiResult<Option<Date>> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT MAX(local_date) AS done FROM checkin WHERE completed_cycle = 1 AND tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND member_id = ")
        .bind(member_id.as_str())
        .push(" AND local_date >= ")
        .bind(from.to_string())
        .push(" AND local_date < ")
        .bind(before.to_string());
    let done: Option<String> = sql.query().fetch_one(&mut *conn).await?.try_get("done")?;
    Ok(done.and_then(|text| text.parse().ok()))
}

struct NewCheckin<'a> {
    member_id: &'a MemberId,
    date: Date,
    kind: &'static str,
    streak: i64,
    cycle_day: i64,
    completed_cycle: bool,
    reward: Option<&'a Reward>,
    points_cost: i64,
}

/// Insert a check-in; false when the member already has one that day.
async fn insert(tx: &mut Tx, tenant_id: &TenantId, row: &NewCheckin<'_>) -> ApiResult<bool> {
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO checkin (tenant_id, member_id, local_date, kind, streak, cycle_day, completed_cycle, reward, points_cost, created_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(row.member_id.as_str())
        .push(", ")
        .bind(row.date.to_string())
        .push(", ")
        .bind(row.kind)
        .push(", ")
        .bind(row.streak)
        .push(", ")
        .bind(row.cycle_day)
        .push(", ")
        .bind(i64::from(row.completed_cycle))
        .push(", ")
        .bind(row.reward.map(|r| r.to_json().to_string()))
        .push(", ")
        .bind(row.points_cost)
        .push(", ")
        .bind(now)
        .push(") ON CONFLICT (tenant_id, member_id, local_date) DO NOTHING");
    Ok(sql.query().execute(tx.conn()).await?.rows_affected() == 1)
}

fn already_checked_in(date: Date) -> ApiError {
    ApiError::conflict(
        codes::ALREADY_CHECKED_IN,
        format!("the member already checked in on {date}"),
    )
    .with_details(json!({ "date": date.to_string() }))
}

/// Check in today (tenant-local). 201 with the streak and the reward paid; 409
/// `already_checked_in` for a second check-in the same day.
#[utoipa::path(post, path = "/v1/checkins", tag = "community", request_body = CheckinRequest,
    responses((status = 201, body = Checkin), (status = 404),
              (status = 409, description = "already_checked_in")),
    security(("api_key" = [])))]
async fn check_in(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CheckinRequest>,
) -> ApiResult<(StatusCode, Json<Checkin>)> {
    let member = body_member_id(&request.member_id, "member")?;
    let tenant = &auth.tenant_id;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), tenant, &member).await?;
    lock_member(&mut tx, tenant, &member).await?;
    let zone = tenant_zone(tx.conn(), tenant).await?;
    let today = tx.now().to_zoned(zone).date();
    let rule = load_rule(tx.conn(), tenant).await?;
    if streak_on(tx.conn(), tenant, &member, today)
        .await?
        .is_some()
    {
        return Err(already_checked_in(today));
    }
    let previous = streak_on(tx.conn(), tenant, &member, rules::previous_day(today)).await?;
    let streak = rules::next_streak(previous);
    let start = rules::run_start(today, streak);
    let completion = last_completion(tx.conn(), tenant, &member, start, today).await?;
    let cycle_day = rules::cycle_day(today, streak, completion, rule.body.cycle_days);
    let reward = rules::reward_due(&rule.rewards, cycle_day).cloned();
    let row = NewCheckin {
        member_id: &member,
        date: today,
        kind: "normal",
        streak,
        cycle_day,
        completed_cycle: rules::completes_cycle(cycle_day, rule.body.cycle_days),
        reward: reward.as_ref(),
        points_cost: 0,
    };
    if !insert(&mut tx, tenant, &row).await? {
        return Err(already_checked_in(today));
    }
    let payout = match &reward {
        Some(reward) => Some(
            reward::pay(
                &mut tx,
                tenant,
                &member,
                reward,
                &format!("checkin:{member}:{today}"),
                "checkin_reward",
                &format!("checkin:{today}"),
            )
            .await?,
        ),
        None => None,
    };
    tx.emit(NewEvent::new(
        tenant,
        "checkin.created",
        Some(member.as_str()),
        json!({ "member_id": member, "date": today.to_string(), "streak": streak,
                "cycle_day": cycle_day, "reward": reward.as_ref().map(Reward::to_json),
                "payout": payout }),
    ));
    let created_at = micros_to_rfc3339(to_micros(tx.now()));
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Checkin {
            member_id: member,
            date: today.to_string(),
            kind: "normal".into(),
            streak,
            cycle_day,
            reward: reward.as_ref().map(Reward::spec),
            payout,
            points_cost: 0,
            created_at,
        }),
    ))
}

/// Count the member's make-ups in `[first_of_month, next_month)`.
async fn makeups_in_month(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    day_in_month: Date,
) -> ApiResult<i64> {
    let first = day_in_month.first_of_month();
    let last = day_in_month.last_of_month();
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT COUNT(*) AS n FROM checkin WHERE kind = 'makeup' AND tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND member_id = ")
        .bind(member_id.as_str())
        .push(" AND local_date >= ")
        .bind(first.to_string())
        .push(" AND local_date <= ")
        .bind(last.to_string());
    Ok(sql.query().fetch_one(&mut *conn).await?.try_get("n")?)
}

/// 422 unless `date` is a day before `today` in the same month (see [`rules`]).
fn check_makeup_date(today: Date, date: Date) -> ApiResult<()> {
    match rules::makeup_date_allowed(today, date) {
        Ok(()) => Ok(()),
        Err(MakeupRefusal::NotInThePast) => Err(ApiError::validation(
            "date",
            "must be a day before today; check in normally for today",
        )),
        Err(MakeupRefusal::OtherMonth) => Err(ApiError::validation(
            "date",
            "must be a day of the current month",
        )),
    }
}

/// 422 when `date` is before the member joined (tenant-local): such a day cannot be made up.
async fn check_not_before_joining(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    zone: &TimeZone,
    date: Date,
) -> ApiResult<()> {
    let joined = members::store::require(conn, tenant_id, member_id)
        .await?
        .created_at
        .parse::<jiff::Timestamp>()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("member created_at: {e}")))?
        .to_zoned(zone.clone())
        .date();
    if date < joined {
        return Err(ApiError::validation(
            "date",
            format!("must not be before the member joined ({joined})"),
        ));
    }
    Ok(())
}

/// 409 `makeup_limit_reached` when the member used this month's make-ups.
async fn check_makeup_limit(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    today: Date,
    rule: &Rule,
) -> ApiResult<()> {
    let used = makeups_in_month(conn, tenant_id, member_id, today).await?;
    let allowed = rule.body.makeup_per_month;
    if used >= allowed {
        return Err(ApiError::conflict(
            codes::MAKEUP_LIMIT_REACHED,
            format!("the member used {used} of {allowed} make-ups this month"),
        )
        .with_details(json!({ "makeup_per_month": allowed, "used": used })));
    }
    Ok(())
}

/// The member's check-ins in `(date, today]` with their streaks, by date.
async fn streaks_after(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    date: Date,
    today: Date,
) -> ApiResult<Vec<(Date, i64)>> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT local_date, streak FROM checkin WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND member_id = ")
        .bind(member_id.as_str())
        .push(" AND local_date > ")
        .bind(date.to_string())
        .push(" AND local_date <= ")
        .bind(today.to_string())
        .push(" ORDER BY local_date");
    let mut after: Vec<(Date, i64)> = Vec::new();
    for row in sql.query().fetch_all(&mut *conn).await? {
        let text: String = row.try_get("local_date")?;
        let day: Date = text
            .parse()
            .map_err(|e| ApiError::internal(anyhow::anyhow!("stored date {text}: {e}")))?;
        after.push((day, row.try_get("streak")?));
    }
    Ok(after)
}

/// Write the streaks a make-up repaired.
async fn set_streaks(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    changed: &[(Date, i64)],
) -> ApiResult<()> {
    for (day, new_streak) in changed {
        let mut sql = Sql::for_conn(tx.conn(), "UPDATE checkin SET streak = ");
        sql.bind(*new_streak)
            .push(" WHERE tenant_id = ")
            .bind(tenant_id.as_str())
            .push(" AND member_id = ")
            .bind(member_id.as_str())
            .push(" AND local_date = ")
            .bind(day.to_string());
        sql.query().execute(tx.conn()).await?;
    }
    Ok(())
}

/// Make up a missed day earlier this month: costs `makeup_cost_points`, pays no reward, and
/// repairs the streak of the check-ins that follow it. 409 `makeup_limit_reached`,
/// `insufficient_points` or `already_checked_in`; 422 for a date that is not a past day of
/// this month.
#[utoipa::path(post, path = "/v1/checkins/makeup", tag = "community", request_body = MakeupRequest,
    responses((status = 201, body = Checkin), (status = 404),
              (status = 409, description = "makeup_limit_reached, insufficient_points or already_checked_in"),
              (status = 422)),
    security(("api_key" = [])))]
async fn make_up(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<MakeupRequest>,
) -> ApiResult<(StatusCode, Json<Checkin>)> {
    let member = body_member_id(&request.member_id, "member")?;
    let date: Date = request
        .date
        .parse()
        .map_err(|_| ApiError::validation("date", "must be a date YYYY-MM-DD"))?;
    let tenant = &auth.tenant_id;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), tenant, &member).await?;
    lock_member(&mut tx, tenant, &member).await?;
    let zone = tenant_zone(tx.conn(), tenant).await?;
    let today = tx.now().to_zoned(zone.clone()).date();
    check_makeup_date(today, date)?;
    check_not_before_joining(tx.conn(), tenant, &member, &zone, date).await?;
    let rule = load_rule(tx.conn(), tenant).await?;
    if streak_on(tx.conn(), tenant, &member, date).await?.is_some() {
        return Err(already_checked_in(date));
    }
    check_makeup_limit(tx.conn(), tenant, &member, today, &rule).await?;
    let previous = streak_on(tx.conn(), tenant, &member, rules::previous_day(date)).await?;
    let after = streaks_after(tx.conn(), tenant, &member, date, today).await?;
    let (streak, changed) = rules::recompute_after_makeup(date, previous, &after);
    let start = rules::run_start(date, streak);
    let completion = last_completion(tx.conn(), tenant, &member, start, date).await?;
    let cycle_day = rules::cycle_day(date, streak, completion, rule.body.cycle_days);
    let cost = rule.body.makeup_cost_points;
    let row = NewCheckin {
        member_id: &member,
        date,
        kind: "makeup",
        streak,
        cycle_day,
        completed_cycle: false,
        reward: None,
        points_cost: cost,
    };
    if !insert(&mut tx, tenant, &row).await? {
        return Err(already_checked_in(date));
    }
    set_streaks(&mut tx, tenant, &member, &changed).await?;
    reward::charge_points(
        &mut tx,
        tenant,
        &member,
        cost,
        &format!("checkin_makeup:{member}:{date}"),
        "checkin_makeup",
        &format!("checkin:{date}"),
    )
    .await?;
    tx.emit(NewEvent::new(
        tenant,
        "checkin.made_up",
        Some(member.as_str()),
        json!({ "member_id": member, "date": date.to_string(), "streak": streak,
                "points_cost": cost, "streaks_changed": changed.len() }),
    ));
    let created_at = micros_to_rfc3339(to_micros(tx.now()));
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Checkin {
            member_id: member,
            date: date.to_string(),
            kind: "makeup".into(),
            streak,
            cycle_day,
            reward: None,
            payout: None,
            points_cost: cost,
            created_at,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    /// `YYYY-MM`; default: the current tenant-local month.
    pub month: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Calendar {
    pub month: String,
    /// The member's check-ins that month, by date.
    pub days: Vec<Checkin>,
    /// Streak as of today (0 when the member checked in neither today nor yesterday).
    pub current_streak: i64,
    pub checked_in_today: bool,
    pub makeups_used: i64,
    pub makeups_left: i64,
}

/// A member's check-ins in a month, with the current streak and make-ups left.
#[utoipa::path(get, path = "/v1/members/{id}/checkins", tag = "community",
    params(("id" = String, Path), CalendarQuery),
    responses((status = 200, body = Calendar), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn calendar(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<CalendarQuery>,
) -> ApiResult<Json<Calendar>> {
    let member = members::member_id(&id)?;
    let tenant = &auth.tenant_id;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, tenant, &member).await?;
    let zone = tenant_zone(&mut conn, tenant).await?;
    let today = state.clock.now().to_zoned(zone).date();
    let first = match &query.month {
        None => today.first_of_month(),
        Some(text) => format!("{text}-01")
            .parse::<Date>()
            .ok()
            .filter(|_| text.len() == 7)
            .ok_or_else(|| ApiError::validation("month", "must be YYYY-MM"))?,
    };
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT {CHECKIN_COLUMNS} FROM checkin WHERE tenant_id = "),
    );
    sql.bind(tenant.as_str())
        .push(" AND member_id = ")
        .bind(member.as_str())
        .push(" AND local_date >= ")
        .bind(first.to_string())
        .push(" AND local_date <= ")
        .bind(first.last_of_month().to_string())
        .push(" ORDER BY local_date");
    let days = sql
        .query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Checkin::from_row(row, &member))
        .collect::<ApiResult<Vec<_>>>()?;
    let today_streak = streak_on(&mut conn, tenant, &member, today).await?;
    let current_streak = match today_streak {
        Some(s) => s,
        None => streak_on(&mut conn, tenant, &member, rules::previous_day(today))
            .await?
            .unwrap_or(0),
    };
    let rule = load_rule(&mut conn, tenant).await?;
    let makeups_used = makeups_in_month(&mut conn, tenant, &member, first).await?;
    Ok(Json(Calendar {
        month: format!("{:04}-{:02}", first.year(), first.month()),
        days,
        current_streak,
        checked_in_today: today_streak.is_some(),
        makeups_used,
        makeups_left: (rule.body.makeup_per_month - makeups_used).max(0),
    }))
}
