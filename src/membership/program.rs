//! The tenant's membership program: settings, growth and tiers, early access, member day,
//! points earning and expiry, birthday perks, and the program's steps of the day's run
//! (points expiry and warnings, birthday perks, requalification), which [`crate::daily`] runs.
//!
//! Settings are one JSON document per tenant (`program_setting`), changed part by part through
//! `PUT /v1/program/{tiers,points,member-day,birthday}`.
//!
//! **Tiers** follow growth value, never the points balance: an increase upgrades at once; a
//! downgrade happens only at the yearly requalification date (if one is set), in the daily run.
//!
//! **Points** live in the ledger (asset `points`). Points earned on an order are a pending
//! transfer from `system:issuance`, posted by a scheduler job when the return window closes and
//! voided on refund. Expiry is first-in-first-out over the ledger itself rather than over a
//! separate lot table: at a cutoff `c` (points earned before `c` have expired), the amount to
//! expire is `max(0, E(c) − D)`, where `E(c)` is all posted points a member earned from
//! `system:issuance` before `c` and `D` the member's posted points debits net of credits from
//! other accounts (returns). Spending always consumes the oldest points first, so expiry never
//! takes points already spent, whichever path spent them. Expiry is a ledger transfer to
//! `system:expiry` with an id derived from the member and the cutoff, so a run repeated after a
//! crash expires nothing twice. A `points.expiring` event is written once per member and cutoff,
//! 30 days before points expire.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::rules::calendar::{self, MemberDayRule};
use super::rules::points::{self as points_rules, ExpiryPolicy};
use super::rules::tiers::{self, Tier};
use crate::common::auth::Auth;
use crate::common::db::{Backend, Db, Tx};
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::price;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::{instant_field, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::members;
use crate::AppState;

/// Scheduler job kind of the day's run: scheduled here for each local midnight
/// ([`schedule_daily`]), run by [`crate::daily`] (which calls this module's steps and the
/// other domains').
pub const DAILY_JOB: &str = "program.daily";
/// Scheduler job kind that posts points when an order's return window closes.
pub const RELEASE_JOB: &str = "points.release";

/// Days before expiry that members are warned.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Points settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsSettings {
    /// Points per yuan paid, before tier and member-day multipliers (default 1).
    pub points_per_yuan: i64,
    /// Points worth one yuan at checkout (default 100).
    pub burn_points_per_yuan: i64,
    /// Most of an order that points may pay, in basis points (default 5000 = 50 %).
    pub burn_cap_bp: i64,
    /// Days an order's points stay pending (default 7).
    pub return_window_days: i64,
    /// `end_of_next_year` (default), `days_after_earning` (with `expiry_days`) or `never`.
    pub expiry: String,
    pub expiry_days: Option<u32>,
}

impl Default for PointsSettings {
    fn default() -> Self {
        Self {
            points_per_yuan: 1,
            burn_points_per_yuan: 100,
            burn_cap_bp: 5000,
            return_window_days: 7,
            expiry: "end_of_next_year".into(),
            expiry_days: None,
        }
    }
}

impl PointsSettings {
    pub fn policy(&self) -> ExpiryPolicy {
        match (self.expiry.as_str(), self.expiry_days) {
            ("days_after_earning", Some(days)) => ExpiryPolicy::DaysAfterEarning(days),
            ("never", _) => ExpiryPolicy::Never,
            _ => ExpiryPolicy::EndOfNextYear,
        }
    }
}

/// Member day: when, the points multiplier, and member-day prices per product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberDay {
    /// `{"day_of_month": 8}` or `{"weekday": 3}` (ISO weekday, Monday = 1).
    #[schema(value_type = Object)]
    pub rule: MemberDayRule,
    /// Points multiplier on member day, basis points (default 10000 = 1×).
    #[serde(default = "one_bp")]
    pub points_multiplier_bp: i64,
    /// Member-day prices (fen) for chosen products of the tenant, each 1 fen to the product's
    /// list price.
    #[serde(default)]
    pub prices: Vec<MemberDayPrice>,
}

/// `PUT /v1/program/member-day`: the rule either nested (`"rule": {"day_of_month": 8}`) or
/// flat (`"day_of_month": 8` or `"weekday": 3` / `"wednesday"`), exactly one of them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberDayInput {
    #[schema(value_type = Option<Object>)]
    pub rule: Option<MemberDayRule>,
    /// 1 to 31 (the last day of shorter months when larger than the month).
    pub day_of_month: Option<u8>,
    /// ISO weekday 1 (Monday) to 7 (Sunday), or its English name.
    #[schema(value_type = Option<Object>)]
    pub weekday: Option<Value>,
    #[serde(default = "one_bp")]
    pub points_multiplier_bp: i64,
    #[serde(default)]
    pub prices: Vec<MemberDayPrice>,
}

fn weekday_of(value: &Value) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    let days = [
        Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
    ];
    match value {
        Value::Number(n) => n
            .as_u64()
            .filter(|n| (1..=7).contains(n))
            .and_then(|n| days.get(usize::try_from(n - 1).ok()?).copied()),
        Value::String(name) => {
            let names = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ];
            let name = name.to_ascii_lowercase();
            names.iter().position(|n| *n == name).map(|i| days[i])
        }
        _ => None,
    }
}

impl TryFrom<MemberDayInput> for MemberDay {
    type Error = ApiError;

    fn try_from(input: MemberDayInput) -> Result<Self, ApiError> {
        let rule = match (input.rule, input.day_of_month, input.weekday) {
            (Some(rule), None, None) => rule,
            (None, Some(day), None) => MemberDayRule::DayOfMonth(day),
            (None, None, Some(weekday)) => {
                MemberDayRule::Weekday(weekday_of(&weekday).ok_or_else(|| {
                    ApiError::validation(
                        "weekday",
                        "must be 1 (Monday) to 7 (Sunday) or a weekday name",
                    )
                })?)
            }
            _ => {
                return Err(ApiError::validation(
                    "rule",
                    "give exactly one of rule, day_of_month or weekday",
                ))
            }
        };
        Ok(MemberDay {
            rule,
            points_multiplier_bp: input.points_multiplier_bp,
            prices: input.prices,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberDayPrice {
    pub product_id: String,
    pub price: i64,
}

fn one_bp() -> i64 {
    tiers::BP_ONE
}

/// Birthday perk: points and/or a coupon, `days_before` the birthday (0 = on the day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BirthdayPerk {
    #[serde(default)]
    pub days_before: u8,
    #[serde(default)]
    pub points: i64,
    pub coupon_template_id: Option<String>,
}

/// Yearly requalification date (local), when downgrades happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requalification {
    pub month: i8,
    pub day: i8,
}

/// The whole program document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgramSettings {
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tiers: Vec<Tier>,
    /// Growth per yuan paid, basis points (default 10000 = 1 growth per yuan).
    #[serde(default = "one_bp")]
    pub growth_per_yuan_bp: i64,
    #[serde(default)]
    pub requalification: Option<Requalification>,
    #[serde(default)]
    pub points: PointsSettings,
    #[serde(default)]
    pub member_day: Option<MemberDay>,
    #[serde(default)]
    pub birthday: Option<BirthdayPerk>,
    /// Days before a predicted repurchase that the reminder goes out (default 3).
    #[serde(default = "three")]
    pub repurchase_reminder_days: i64,
}

fn three() -> i64 {
    3
}

impl Default for ProgramSettings {
    fn default() -> Self {
        Self {
            tiers: Vec::new(),
            growth_per_yuan_bp: tiers::BP_ONE,
            requalification: None,
            points: PointsSettings::default(),
            member_day: None,
            birthday: None,
            repurchase_reminder_days: 3,
        }
    }
}

/// The tenant's program settings (defaults when never set).
pub async fn load_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> ApiResult<ProgramSettings> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT settings FROM program_setting WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(text.as_deref().map(settings_from_json).unwrap_or_default())
}

/// The stored settings document, or the defaults when it does not parse.
fn settings_from_json(text: &str) -> ProgramSettings {
    serde_json::from_str(text).unwrap_or_default()
}

/// Read, change and write the settings inside `tx` (row-locked on PostgreSQL).
async fn update_settings(
    tx: &mut Tx,
    tenant_id: &TenantId,
    change: impl FnOnce(&mut ProgramSettings),
) -> ApiResult<ProgramSettings> {
    let now = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO program_setting (tenant_id, settings, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(serde_json::to_string(&ProgramSettings::default()).unwrap_or_default())
    .bind(now)
    .execute(tx.conn())
    .await?;
    let lock = if tx.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let text: String = sqlx::query_scalar(&format!(
        "SELECT settings FROM program_setting WHERE tenant_id = $1{lock}"
    ))
    .bind(tenant_id.as_str())
    .fetch_one(tx.conn())
    .await?;
    let mut settings = settings_from_json(&text);
    change(&mut settings);
    sqlx::query("UPDATE program_setting SET settings = $1, updated_at = $2 WHERE tenant_id = $3")
        .bind(serde_json::to_string(&settings).map_err(ApiError::internal)?)
        .bind(now)
        .bind(tenant_id.as_str())
        .execute(tx.conn())
        .await?;
    Ok(settings)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_tiers, get_tiers))
        .routes(routes!(put_points, get_points))
        .routes(routes!(put_member_day, get_member_day))
        .routes(routes!(put_birthday, get_birthday))
        .routes(routes!(add_growth))
        .routes(routes!(early_access))
        .routes(routes!(earn_points))
        .routes(routes!(void_earned_points))
        .routes(routes!(burn_quote))
        .routes(routes!(put_reminders, get_reminders))
}

// --- tiers and growth --------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierInput {
    pub name: String,
    pub growth_min: i64,
    /// What comes OFF the price, basis points: 1000 = 10 % off (九折), 500 = 5 % off (九五折),
    /// 0 to 9999. Give this or `price_factor_bp`, not both (or both agreeing).
    pub discount_bp: Option<i64>,
    /// What is PAID, basis points of the price: 9000 = 九折 (10 % off), 1 to 10000.
    pub price_factor_bp: Option<i64>,
    #[serde(default = "one_bp")]
    pub points_multiplier_bp: i64,
    #[serde(default)]
    pub free_shipping: bool,
    #[serde(default)]
    pub early_access_hours: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTiers {
    /// Ordered by `growth_min`, the first at 0.
    pub tiers: Vec<TierInput>,
    /// Growth per yuan paid, basis points.
    pub growth_per_yuan_bp: Option<i64>,
    /// Yearly date when downgrades happen; absent = never downgrade.
    pub requalification: Option<Requalification>,
}

/// The tier's discount from whichever of `discount_bp` (what comes off) and `price_factor_bp`
/// (what is paid) was given; both given must agree. Pure, so that a Chinese operator's 九折
/// typed as 9000 in the wrong field is refused with an error that says which field means what.
pub fn tier_discount_bp(
    name: &str,
    discount_bp: Option<i64>,
    price_factor_bp: Option<i64>,
) -> Result<i64, String> {
    let explain = "discount_bp is what comes off (1000 = 10 % off = 九折), \
                   price_factor_bp is what is paid (9000 = 九折)";
    if let Some(factor) = price_factor_bp {
        if !(1..=tiers::BP_ONE).contains(&factor) {
            return Err(format!(
                "tier {name:?}: price_factor_bp {factor} must be 1 to 10000; {explain}"
            ));
        }
    }
    match (discount_bp, price_factor_bp) {
        (None, None) => Ok(0),
        (Some(d), None) => {
            if (0..tiers::BP_ONE).contains(&d) {
                Ok(d)
            } else {
                Err(format!(
                    "tier {name:?}: discount_bp {d} must be 0 to 9999; {explain}"
                ))
            }
        }
        (None, Some(f)) => Ok(tiers::BP_ONE - f),
        (Some(d), Some(f)) if d + f == tiers::BP_ONE => Ok(d),
        (Some(d), Some(f)) => Err(format!(
            "tier {name:?}: discount_bp {d} and price_factor_bp {f} disagree (they must add up \
             to 10000); {explain}"
        )),
    }
}

/// A tier as shown: the stored tier and its discount both ways.
#[derive(Debug, Serialize)]
pub struct TierView {
    #[serde(flatten)]
    pub tier: Tier,
    /// What is paid, basis points (10000 − `discount_bp`): 9000 = 九折.
    pub price_factor_bp: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TiersView {
    #[schema(value_type = Vec<Object>)]
    pub tiers: Vec<TierView>,
    pub growth_per_yuan_bp: i64,
    pub requalification: Option<Requalification>,
}

fn tiers_view(settings: &ProgramSettings) -> TiersView {
    TiersView {
        tiers: settings
            .tiers
            .iter()
            .map(|t| TierView {
                tier: t.clone(),
                price_factor_bp: tiers::BP_ONE - t.discount_bp,
            })
            .collect(),
        growth_per_yuan_bp: settings.growth_per_yuan_bp,
        requalification: settings.requalification,
    }
}

/// Set the tier ladder. Members who now qualify for a higher tier are upgraded at once;
/// nobody is downgraded here.
#[utoipa::path(put, path = "/v1/program/tiers", tag = "membership", request_body = PutTiers,
    responses((status = 200, body = TiersView), (status = 422)), security(("api_key" = [])))]
async fn put_tiers(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<PutTiers>,
) -> ApiResult<Json<TiersView>> {
    let tiers: Vec<Tier> = request
        .tiers
        .into_iter()
        .map(|t| {
            let name = t.name.trim().to_owned();
            let discount_bp = tier_discount_bp(&name, t.discount_bp, t.price_factor_bp)
                .map_err(|e| ApiError::validation("tiers", e))?;
            Ok(Tier {
                name,
                growth_min: t.growth_min,
                discount_bp,
                points_multiplier_bp: t.points_multiplier_bp,
                free_shipping: t.free_shipping,
                early_access_hours: t.early_access_hours,
            })
        })
        .collect::<ApiResult<_>>()?;
    tiers::validate_tiers(&tiers).map_err(|e| ApiError::validation("tiers", e.to_string()))?;
    if let Some(bp) = request.growth_per_yuan_bp {
        if !(0..=100 * tiers::BP_ONE).contains(&bp) {
            return Err(ApiError::validation(
                "growth_per_yuan_bp",
                "must be 0 to 1000000",
            ));
        }
    }
    if let Some(r) = request.requalification {
        calendar::validate_month_day(r.month, r.day)
            .map_err(|e| ApiError::validation("requalification", e.to_string()))?;
    }
    let mut tx = state.begin().await?;
    let settings = update_settings(&mut tx, &auth.tenant_id, |s| {
        s.tiers = tiers.clone();
        if let Some(bp) = request.growth_per_yuan_bp {
            s.growth_per_yuan_bp = bp;
        }
        s.requalification = request.requalification;
    })
    .await?;
    reevaluate_all(&mut tx, &auth.tenant_id, &settings.tiers, false).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "program.tiers_updated",
        None,
        json!({ "tiers": settings.tiers.iter().map(|t| &t.name).collect::<Vec<_>>() }),
    ));
    schedule_daily(&mut tx, &auth.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(tiers_view(&settings)))
}

#[utoipa::path(get, path = "/v1/program/tiers", tag = "membership",
    responses((status = 200, body = TiersView)), security(("api_key" = [])))]
async fn get_tiers(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<TiersView>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(tiers_view(
        &load_settings(&mut conn, &auth.tenant_id).await?,
    )))
}

/// Re-evaluate every member's tier: upgrades always, downgrades only when `allow_downgrade`
/// (the requalification run). Emits `member.tier_changed` for each change.
async fn reevaluate_all(
    tx: &mut Tx,
    tenant_id: &TenantId,
    tiers_list: &[Tier],
    allow_downgrade: bool,
) -> ApiResult<usize> {
    let mut changed = 0;
    let mut after = String::new();
    loop {
        let (changes, next) =
            reevaluate_chunk(tx, tenant_id, tiers_list, allow_downgrade, &after).await?;
        changed += changes;
        match next {
            Some(last) => after = last,
            None => return Ok(changed),
        }
    }
}

/// [`reevaluate_all`] for the next [`DAILY_CHUNK`] active members after `after` (in id
/// order): the number of changes, and the cursor of the next chunk (`None` after the last).
async fn reevaluate_chunk(
    tx: &mut Tx,
    tenant_id: &TenantId,
    tiers_list: &[Tier],
    allow_downgrade: bool,
    after: &str,
) -> ApiResult<(usize, Option<String>)> {
    let rows = sqlx::query(
        "SELECT id, tier, growth FROM member WHERE tenant_id = $1 AND status = 'active' \
         AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(after)
    .bind(DAILY_CHUNK)
    .fetch_all(tx.conn())
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut changes = Vec::new();
    for row in rows {
        let id: String = row.try_get("id")?;
        let (current, growth) = tier_and_growth(&row)?;
        if let Some(new) =
            tiers::evaluate_tier(current.as_deref(), growth, tiers_list, allow_downgrade)
        {
            changes.push((id.clone(), current, new));
        }
        ids.push(id);
    }
    for (id, from, to) in &changes {
        set_tier(tx, tenant_id, id, from.as_deref(), to).await?;
    }
    Ok((changes.len(), next_chunk(&ids, |id| id)))
}

/// A member row's tier name (none before the first tier is set) and growth value.
fn tier_and_growth(row: &AnyRow) -> Result<(Option<String>, i64), sqlx::Error> {
    Ok((row.try_get("tier")?, row.try_get("growth")?))
}

async fn set_tier(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &str,
    from: Option<&str>,
    to: &str,
) -> ApiResult<()> {
    sqlx::query("UPDATE member SET tier = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
        .bind(to)
        .bind(to_micros(tx.now()))
        .bind(tenant_id.as_str())
        .bind(member_id)
        .execute(tx.conn())
        .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "member.tier_changed",
        Some(member_id),
        json!({ "member_id": member_id, "from": from, "to": to }),
    ));
    Ok(())
}

/// Largest growth adjustment an operator may make at once.
pub const MAX_GROWTH_DELTA: u64 = 1_000_000_000;
/// Longest reason of a growth adjustment, in bytes after trimming. It keeps this rule of its
/// own rather than [`crate::common::text::required`] (characters, no control characters): its
/// 422 message says bytes, and clients see that message.
pub const MAX_GROWTH_REASON_BYTES: usize = 200;

/// Change a member's growth and upgrade the tier if it now qualifies (never downgrades).
/// Growth stays within 0 ..= i64::MAX: the update saturates at both ends instead of
/// overflowing (an error on PostgreSQL, a silent REAL on SQLite).
pub async fn change_growth(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    delta: i64,
    reason: &str,
) -> ApiResult<i64> {
    members::store::require_active(tx.conn(), tenant_id, member_id).await?;
    let settings = load_settings(tx.conn(), tenant_id).await?;
    let row = sqlx::query(
        "UPDATE member SET growth = CASE WHEN $1 < 0 AND growth < 0 - $1 THEN 0 \
         WHEN $1 > 0 AND growth > 9223372036854775807 - $1 THEN 9223372036854775807 \
         ELSE growth + $1 END, \
         updated_at = $2 WHERE tenant_id = $3 AND id = $4 RETURNING growth, tier",
    )
    .bind(delta)
    .bind(to_micros(tx.now()))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_one(tx.conn())
    .await?;
    let (tier, growth) = tier_and_growth(&row)?;
    tx.emit(NewEvent::new(
        tenant_id,
        "member.growth_changed",
        Some(member_id.as_str()),
        json!({ "member_id": member_id, "delta": delta, "growth": growth, "reason": reason }),
    ));
    if let Some(new) = tiers::evaluate_tier(tier.as_deref(), growth, &settings.tiers, false) {
        set_tier(tx, tenant_id, member_id.as_str(), tier.as_deref(), &new).await?;
    }
    Ok(growth)
}

/// Give a new member the tier that growth 0 qualifies for (the base tier), if there are tiers.
pub async fn initial_tier(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<()> {
    let settings = load_settings(tx.conn(), tenant_id).await?;
    if let Some(tier) = tiers::tier_for_growth(&settings.tiers, 0) {
        sqlx::query("UPDATE member SET tier = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(&tier.name)
            .bind(tenant_id.as_str())
            .bind(member_id.as_str())
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

/// Growth for a paid amount at the tenant's rate (called by orders).
pub async fn growth_for_paid(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    paid_fen: i64,
    reference: &str,
) -> ApiResult<i64> {
    let settings = load_settings(tx.conn(), tenant_id).await?;
    let delta = tiers::growth_from_paid(paid_fen, settings.growth_per_yuan_bp);
    change_growth(
        tx,
        tenant_id,
        member_id,
        delta,
        &format!("paid:{reference}"),
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrowthChange {
    /// Positive or negative; growth never goes below 0.
    pub delta: i64,
    pub reason: String,
}

/// Operator adjustment of growth value; upgrades at once.
#[utoipa::path(post, path = "/v1/members/{id}/growth", tag = "membership",
    params(("id" = String, Path)), request_body = GrowthChange,
    responses((status = 200, body = members::model::Member), (status = 404)), security(("api_key" = [])))]
async fn add_growth(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<GrowthChange>,
) -> ApiResult<Json<members::model::Member>> {
    let id = members::member_id(&id)?;
    // `unsigned_abs`: `abs` of i64::MIN overflows (it wrapped to a negative and passed).
    if request.delta == 0 || request.delta.unsigned_abs() > MAX_GROWTH_DELTA {
        return Err(ApiError::validation(
            "delta",
            "must be non-zero and at most 1e9 in size",
        ));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > MAX_GROWTH_REASON_BYTES {
        return Err(ApiError::validation(
            "reason",
            format!("must be 1 to {MAX_GROWTH_REASON_BYTES} bytes"),
        ));
    }
    let mut tx = state.begin().await?;
    change_growth(&mut tx, &auth.tenant_id, &id, request.delta, reason).await?;
    let member = members::store::require(tx.conn(), &auth.tenant_id, &id).await?;
    tx.commit().await?;
    Ok(Json(member))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EarlyAccessQuery {
    /// The product's public launch (RFC 3339).
    pub launch_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EarlyAccess {
    pub may_buy_now: bool,
    /// When this member may buy (launch minus the tier's early-access hours).
    pub opens_at: String,
    pub early_access_hours: i64,
}

/// May this member buy a product launching at `launch_at` now?
#[utoipa::path(get, path = "/v1/members/{id}/early-access", tag = "membership",
    params(("id" = String, Path), EarlyAccessQuery),
    responses((status = 200, body = EarlyAccess), (status = 404)), security(("api_key" = [])))]
async fn early_access(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<EarlyAccessQuery>,
) -> ApiResult<Json<EarlyAccess>> {
    let id = members::member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let zone = crate::tenants::time_zone(&mut conn, &auth.tenant_id).await?;
    let launch = instant_field("launch_at", &query.launch_at, &zone)?;
    let member = members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    let settings = load_settings(&mut conn, &auth.tenant_id).await?;
    Ok(Json(may_buy(
        &settings,
        member.tier.as_deref(),
        launch,
        state.clock.now(),
    )))
}

/// The early-access answer for a tier (used by orders too).
pub fn may_buy(
    settings: &ProgramSettings,
    tier: Option<&str>,
    launch: Timestamp,
    now: Timestamp,
) -> EarlyAccess {
    let hours = tier
        .and_then(|name| settings.tiers.iter().find(|t| t.name == name))
        .map(|t| t.early_access_hours)
        .unwrap_or(0);
    let opens = launch
        .checked_sub(SignedDuration::from_hours(hours))
        .unwrap_or(launch);
    EarlyAccess {
        may_buy_now: tiers::may_buy_now(Some(launch), hours, now),
        opens_at: opens.to_string(),
        early_access_hours: hours,
    }
}

// --- points settings, member day, birthday ------------------------------------------------

/// Set the points rules.
#[utoipa::path(put, path = "/v1/program/points", tag = "membership", request_body = PointsSettings,
    responses((status = 200, body = PointsSettings), (status = 422)), security(("api_key" = [])))]
async fn put_points(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<PointsSettings>,
) -> ApiResult<Json<PointsSettings>> {
    if !(0..=10_000).contains(&request.points_per_yuan) {
        return Err(ApiError::validation(
            "points_per_yuan",
            "must be 0 to 10000",
        ));
    }
    if !(1..=1_000_000).contains(&request.burn_points_per_yuan) {
        return Err(ApiError::validation(
            "burn_points_per_yuan",
            "must be 1 to 1000000",
        ));
    }
    if !(0..=tiers::BP_ONE).contains(&request.burn_cap_bp) {
        return Err(ApiError::validation("burn_cap_bp", "must be 0 to 10000"));
    }
    if !(0..=365).contains(&request.return_window_days) {
        return Err(ApiError::validation(
            "return_window_days",
            "must be 0 to 365",
        ));
    }
    match (request.expiry.as_str(), request.expiry_days) {
        ("end_of_next_year" | "never", None) => {}
        ("days_after_earning", Some(d)) if (1..=3650).contains(&d) => {}
        ("days_after_earning", _) => {
            return Err(ApiError::validation(
                "expiry_days",
                "must be 1 to 3650 with days_after_earning",
            ))
        }
        ("end_of_next_year" | "never", Some(_)) => {
            return Err(ApiError::validation(
                "expiry_days",
                "only with days_after_earning",
            ))
        }
        _ => {
            return Err(ApiError::validation(
                "expiry",
                "must be end_of_next_year, days_after_earning or never",
            ))
        }
    }
    let mut tx = state.begin().await?;
    let settings =
        update_settings(&mut tx, &auth.tenant_id, |s| s.points = request.clone()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "program.points_updated",
        None,
        json!(settings.points),
    ));
    schedule_daily(&mut tx, &auth.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(settings.points))
}

#[utoipa::path(get, path = "/v1/program/points", tag = "membership",
    responses((status = 200, body = PointsSettings)), security(("api_key" = [])))]
async fn get_points(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<PointsSettings>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(
        load_settings(&mut conn, &auth.tenant_id).await?.points,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberDayView {
    pub member_day: Option<MemberDay>,
    /// Is it member day now, in the tenant's time zone?
    pub today: bool,
}

/// Set the member day rule, multiplier and prices.
#[utoipa::path(put, path = "/v1/program/member-day", tag = "membership", request_body = MemberDayInput,
    responses((status = 200, body = MemberDayView), (status = 422)), security(("api_key" = [])))]
async fn put_member_day(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<MemberDayInput>,
) -> ApiResult<Json<MemberDayView>> {
    let request = MemberDay::try_from(input)?;
    request
        .rule
        .validate()
        .map_err(|e| ApiError::validation("rule", e.to_string()))?;
    if !(tiers::BP_ONE..=tiers::MAX_POINTS_MULTIPLIER_BP).contains(&request.points_multiplier_bp) {
        return Err(ApiError::validation(
            "points_multiplier_bp",
            "must be 10000 to 100000",
        ));
    }
    if request.prices.len() > MAX_MEMBER_DAY_PRICES {
        return Err(ApiError::validation(
            "prices",
            format!("at most {MAX_MEMBER_DAY_PRICES} products"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(p) = request
        .prices
        .iter()
        .find(|p| !seen.insert(p.product_id.as_str()))
    {
        return Err(ApiError::validation(
            "prices",
            format!("product {} is listed twice", p.product_id),
        ));
    }
    let mut tx = state.begin().await?;
    check_member_day_prices(tx.conn(), &auth.tenant_id, &request.prices).await?;
    let zone = crate::tenants::time_zone(tx.conn(), &auth.tenant_id).await?;
    let settings = update_settings(&mut tx, &auth.tenant_id, |s| {
        s.member_day = Some(request.clone())
    })
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "program.member_day_updated",
        None,
        json!(settings.member_day),
    ));
    let today = is_member_day(&settings, tx.now(), &zone);
    tx.commit().await?;
    Ok(Json(MemberDayView {
        member_day: settings.member_day,
        today,
    }))
}

/// Most products with a member-day price.
pub const MAX_MEMBER_DAY_PRICES: usize = 1000;

/// Each member-day price names a product of this tenant and is a special price of it: 1 fen to
/// its list price (`common::price`). The field named is `prices[i].price` / `prices[i].product_id`.
async fn check_member_day_prices(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    prices: &[MemberDayPrice],
) -> ApiResult<()> {
    for (i, p) in prices.iter().enumerate() {
        let list_price: Option<i64> =
            sqlx::query_scalar("SELECT price FROM product WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id.as_str())
                .bind(p.product_id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        let Some(list_price) = list_price else {
            return Err(ApiError::validation(
                &format!("prices[{i}].product_id"),
                format!("no product {:?} in this tenant", p.product_id),
            ));
        };
        price::check_special(p.price, list_price)
            .map_err(|e| ApiError::validation(&format!("prices[{i}].price"), e.to_string()))?;
    }
    Ok(())
}

/// The member day, and whether today is one.
#[utoipa::path(get, path = "/v1/program/member-day", tag = "membership",
    responses((status = 200, body = MemberDayView)), security(("api_key" = [])))]
async fn get_member_day(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<MemberDayView>> {
    let mut conn = state.db.read().acquire().await?;
    let settings = load_settings(&mut conn, &auth.tenant_id).await?;
    let zone = crate::tenants::time_zone(&mut conn, &auth.tenant_id).await?;
    let today = is_member_day(&settings, state.clock.now(), &zone);
    Ok(Json(MemberDayView {
        member_day: settings.member_day,
        today,
    }))
}

/// Is `now` a member day in the tenant's zone?
pub fn is_member_day(settings: &ProgramSettings, now: Timestamp, zone: &TimeZone) -> bool {
    settings
        .member_day
        .as_ref()
        .is_some_and(|d| calendar::is_member_day(&d.rule, now, zone))
}

/// The member-day price of a product now, if it is member day and the product has one.
pub fn member_day_price(
    settings: &ProgramSettings,
    product_id: &str,
    now: Timestamp,
    zone: &TimeZone,
) -> Option<i64> {
    if !is_member_day(settings, now, zone) {
        return None;
    }
    settings
        .member_day
        .as_ref()?
        .prices
        .iter()
        .find(|p| p.product_id == product_id)
        .map(|p| p.price)
}

/// Set the birthday perk.
#[utoipa::path(put, path = "/v1/program/birthday", tag = "membership", request_body = BirthdayPerk,
    responses((status = 200, body = BirthdayPerk), (status = 422)), security(("api_key" = [])))]
async fn put_birthday(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<BirthdayPerk>,
) -> ApiResult<Json<BirthdayPerk>> {
    if request.days_before > 31 {
        return Err(ApiError::validation("days_before", "must be 0 to 31"));
    }
    if !(0..=1_000_000).contains(&request.points) {
        return Err(ApiError::validation("points", "must be 0 to 1000000"));
    }
    if request.points == 0 && request.coupon_template_id.is_none() {
        return Err(ApiError::validation(
            "points",
            "give points, a coupon, or both",
        ));
    }
    let mut tx = state.begin().await?;
    if let Some(template) = &request.coupon_template_id {
        let known = match super::coupons::model::CouponTemplateId::parse(template) {
            Some(id) => super::coupons::store::fetch_template(tx.conn(), &auth.tenant_id, &id)
                .await?
                .is_some(),
            None => false,
        };
        if !known {
            return Err(ApiError::validation(
                "coupon_template_id",
                "no such coupon template",
            ));
        }
    }
    let settings = update_settings(&mut tx, &auth.tenant_id, |s| {
        s.birthday = Some(request.clone())
    })
    .await?;
    schedule_daily(&mut tx, &auth.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(settings.birthday.unwrap_or(request)))
}

/// The birthday perk, in the shape `PUT` takes and returns; `null` while none is set.
#[utoipa::path(get, path = "/v1/program/birthday", tag = "membership",
    responses((status = 200, body = Option<BirthdayPerk>)), security(("api_key" = [])))]
async fn get_birthday(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Option<BirthdayPerk>>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(
        load_settings(&mut conn, &auth.tenant_id).await?.birthday,
    ))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reminders {
    /// Days before a predicted repurchase that `member.repurchase_due` goes out (0 to 60).
    pub repurchase_reminder_days: i64,
}

/// Set when repurchase reminders go out.
#[utoipa::path(put, path = "/v1/program/reminders", tag = "membership", request_body = Reminders,
    responses((status = 200, body = Reminders), (status = 422)), security(("api_key" = [])))]
async fn put_reminders(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<Reminders>,
) -> ApiResult<Json<Reminders>> {
    if !(0..=60).contains(&request.repurchase_reminder_days) {
        return Err(ApiError::validation(
            "repurchase_reminder_days",
            "must be 0 to 60",
        ));
    }
    let mut tx = state.begin().await?;
    update_settings(&mut tx, &auth.tenant_id, |s| {
        s.repurchase_reminder_days = request.repurchase_reminder_days
    })
    .await?;
    schedule_daily(&mut tx, &auth.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(request))
}

/// When repurchase reminders go out.
#[utoipa::path(get, path = "/v1/program/reminders", tag = "membership",
    responses((status = 200, body = Reminders)), security(("api_key" = [])))]
async fn get_reminders(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Reminders>> {
    let mut conn = state.db.read().acquire().await?;
    let settings = load_settings(&mut conn, &auth.tenant_id).await?;
    Ok(Json(Reminders {
        repurchase_reminder_days: settings.repurchase_reminder_days,
    }))
}

// --- points earning ----------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnRequest {
    /// Amount paid (fen) that earns points.
    pub paid_amount: i64,
    /// The order (or other) reference; one earning per reference.
    pub reference: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Earned {
    pub points: i64,
    pub transfer_id: String,
    /// `pending` until the return window closes, then `posted`; `voided` on refund.
    pub status: String,
    pub releases_at: String,
}

fn earn_transfer_id(reference: &str) -> String {
    format!("points-earn:{reference}")
}

/// Points for a paid amount: pending until the return window closes (then posted by the
/// scheduler), voided on refund. Idempotent per reference. Used by orders; also exposed for
/// orders paid outside shequn.
pub async fn earn_for_paid(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    paid_fen: i64,
    reference: &str,
) -> ApiResult<Earned> {
    let (points, return_window_days) = points_for_paid(tx, tenant_id, member_id, paid_fen).await?;
    let id = earn_transfer_id(reference);
    let releases = tx.now() + SignedDuration::from_hours(24 * return_window_days);
    if points == 0 {
        return Ok(Earned {
            points: 0,
            transfer_id: id,
            status: "none".into(),
            releases_at: releases.to_string(),
        });
    }
    let transfer = NewTransfer::internal(
        id.clone(),
        Address::system("issuance"),
        Address::member(member_id),
        Asset::Points,
        points,
        "points_earned",
        Some(reference),
    )
    .pending(None);
    let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no ledger result")))?;
    match result.status.as_str() {
        "created" => {
            schedule_release(tx, tenant_id, &id, releases).await?;
            tx.emit(NewEvent::new(
                tenant_id,
                "points.earned",
                Some(member_id.as_str()),
                json!({ "member_id": member_id, "points": points, "reference": reference, "status": "pending" }),
            ));
            Ok(Earned {
                points,
                transfer_id: id,
                status: "pending".into(),
                releases_at: releases.to_string(),
            })
        }
        "exists" => {
            let t = result.transfer.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!(
                    "ledger reported exists without the transfer"
                ))
            })?;
            Ok(Earned {
                points: t.amount,
                transfer_id: id,
                status: t.status,
                releases_at: releases.to_string(),
            })
        }
        "exists_with_different_fields" => Err(ApiError::conflict(
            codes::REFERENCE_ALREADY_EARNED,
            "points were already earned for this reference with another amount",
        )),
        other => Err(ApiError::conflict(
            codes::POINTS_NOT_EARNED,
            other.to_owned(),
        )),
    }
}

/// The points `paid_fen` earns the member now (points per yuan, times the multiplier of the
/// member's tier and, on member day, the member-day multiplier), and the days they stay
/// pending (the program's return window).
async fn points_for_paid(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    paid_fen: i64,
) -> ApiResult<(i64, i64)> {
    let settings = load_settings(tx.conn(), tenant_id).await?;
    let zone = crate::tenants::time_zone(tx.conn(), tenant_id).await?;
    let member = members::store::require(tx.conn(), tenant_id, member_id).await?;
    let tier_bp = member
        .tier
        .as_deref()
        .and_then(|name| settings.tiers.iter().find(|t| t.name == name))
        .map(|t| t.points_multiplier_bp)
        .unwrap_or(tiers::BP_ONE);
    let day_bp = if is_member_day(&settings, tx.now(), &zone) {
        settings
            .member_day
            .as_ref()
            .map(|d| d.points_multiplier_bp)
            .unwrap_or(tiers::BP_ONE)
    } else {
        tiers::BP_ONE
    };
    let points =
        points_rules::earn_points(paid_fen, settings.points.points_per_yuan, tier_bp, day_bp)
            .map_err(|e| ApiError::validation("paid_amount", e.to_string()))?;
    Ok((points, settings.points.return_window_days))
}

/// Schedule the [`RELEASE_JOB`] that posts the pending earning `transfer_id` at `releases`.
async fn schedule_release(
    tx: &mut Tx,
    tenant_id: &TenantId,
    transfer_id: &str,
    releases: Timestamp,
) -> ApiResult<()> {
    let now_micros = to_micros(tx.now());
    scheduler::schedule(
        tx.conn(),
        tenant_id,
        &[NewJob {
            id: format!("{RELEASE_JOB}:{transfer_id}"),
            kind: RELEASE_JOB,
            due_at: to_micros(releases),
            payload: json!({ "transfer_id": transfer_id }),
        }],
        now_micros,
    )
    .await?;
    Ok(())
}

/// Earn points for a paid amount (an order paid elsewhere); pending through the return window.
#[utoipa::path(post, path = "/v1/members/{id}/points/earn", tag = "membership",
    params(("id" = String, Path)), request_body = EarnRequest,
    responses((status = 201, body = Earned), (status = 404), (status = 409)), security(("api_key" = [])))]
async fn earn_points(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<EarnRequest>,
) -> ApiResult<(StatusCode, Json<Earned>)> {
    let id = members::member_id(&id)?;
    if !(1..=crate::ledger::model::MAX_AMOUNT).contains(&request.paid_amount) {
        return Err(ApiError::validation(
            "paid_amount",
            "must be a positive integer (fen)",
        ));
    }
    if !crate::ledger::model::valid_id(&request.reference) || request.reference.len() > 100 {
        return Err(ApiError::validation(
            "reference",
            "must be 1 to 100 visible ASCII characters",
        ));
    }
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), &auth.tenant_id, &id).await?;
    let earned = earn_for_paid(
        &mut tx,
        &auth.tenant_id,
        &id,
        request.paid_amount,
        &request.reference,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(earned)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidEarned {
    pub reference: String,
}

/// Void points still pending for a reference (the order was refunded inside its window).
#[utoipa::path(post, path = "/v1/members/{id}/points/earn/void", tag = "membership",
    params(("id" = String, Path)), request_body = VoidEarned,
    responses((status = 200, body = crate::ledger::model::Transfer), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn void_earned_points(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<VoidEarned>,
) -> ApiResult<Json<crate::ledger::model::Transfer>> {
    let id = members::member_id(&id)?;
    let mut tx = state.begin().await?;
    members::store::require(tx.conn(), &auth.tenant_id, &id).await?;
    let pending_id = earn_transfer_id(&request.reference);
    let result = ledger::apply_in(&mut tx, &auth.tenant_id, vec![Op::Void { pending_id }])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no ledger result")))?;
    match (result.status.as_str(), result.transfer) {
        ("voided", Some(t)) if t.to == Address::member(&id).as_str() => {
            tx.emit(NewEvent::new(
                &auth.tenant_id,
                "points.voided",
                Some(id.as_str()),
                json!({ "member_id": id, "points": t.amount, "reference": request.reference }),
            ));
            tx.commit().await?;
            Ok(Json(t))
        }
        ("transfer_not_found", _) | ("voided", _) => Err(ApiError::not_found("earned points")),
        ("already_resolved", _) => Err(ApiError::conflict(
            codes::ALREADY_RESOLVED,
            "these points were already released or voided",
        )),
        (other, _) => Err(ApiError::conflict(codes::NOT_VOIDED, other.to_owned())),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BurnQuery {
    /// The order amount (fen) points would pay part of.
    pub order_amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BurnQuote {
    /// Most points the member may burn on this order (whole burn steps only).
    pub max_points: i64,
    /// What they are worth (fen).
    pub value: i64,
    pub available_points: i64,
    pub burn_points_per_yuan: i64,
    pub burn_cap_bp: i64,
}

/// The burn rule for a member and an order: `N` points = 1 yuan, capped at a share of the
/// order and at the member's available points.
pub fn quote_burn(
    settings: &PointsSettings,
    order_fen: i64,
    available: i64,
) -> ApiResult<BurnQuote> {
    let max_points = points_rules::max_burnable(
        order_fen,
        settings.burn_points_per_yuan,
        settings.burn_cap_bp,
        available.max(0),
    )
    .map_err(|e| ApiError::validation("order_amount", e.to_string()))?;
    let value = points_rules::burn_value_fen(max_points, settings.burn_points_per_yuan)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    Ok(BurnQuote {
        max_points,
        value,
        available_points: available,
        burn_points_per_yuan: settings.burn_points_per_yuan,
        burn_cap_bp: settings.burn_cap_bp,
    })
}

/// How many points this member may burn on an order of `order_amount`, and their value.
#[utoipa::path(get, path = "/v1/members/{id}/points/burn-quote", tag = "membership",
    params(("id" = String, Path), BurnQuery),
    responses((status = 200, body = BurnQuote), (status = 404)), security(("api_key" = [])))]
async fn burn_quote(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<BurnQuery>,
) -> ApiResult<Json<BurnQuote>> {
    let id = members::member_id(&id)?;
    if !(0..=crate::ledger::model::MAX_AMOUNT).contains(&query.order_amount) {
        return Err(ApiError::validation(
            "order_amount",
            "must be 0 or more (fen)",
        ));
    }
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    let settings = load_settings(&mut conn, &auth.tenant_id).await?;
    drop(conn);
    let balances =
        crate::ledger::store::balances(state.db.read(), &auth.tenant_id, &Address::member(&id))
            .await?;
    let available = balances
        .iter()
        .find(|(a, _)| *a == Asset::Points)
        .map(|(_, b)| b.available)
        .unwrap_or(0);
    Ok(Json(quote_burn(
        &settings.points,
        query.order_amount,
        available,
    )?))
}

/// Scheduler handler: the return window closed; post the pending points.
pub async fn release_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let id = job
        .payload
        .get("transfer_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("job without transfer_id"))?
        .to_owned();
    let mut tx = state.begin().await?;
    let results = ledger::apply_in(
        &mut tx,
        &job.tenant_id,
        vec![Op::Post {
            pending_id: id,
            amount: None,
        }],
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    if let Some(t) = results.first().and_then(|r| {
        (r.status == "posted")
            .then_some(r.transfer.as_ref())
            .flatten()
    }) {
        tx.emit(NewEvent::new(
            &job.tenant_id,
            "points.released",
            t.to.strip_prefix("member:"),
            json!({ "member": t.to, "points": t.amount, "reference": t.reference }),
        ));
    }
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

// --- the day's steps -----------------------------------------------------------------------
//
// The day itself (its order, its job, `POST /v1/jobs/daily`) is run by [`crate::daily`], which
// may call every domain; here are the membership program's steps of it. Each step opens its own
// transactions, one per chunk of at most [`DAILY_CHUNK`] members, so that one tenant's day
// never holds the write lock for long, and each is safe to repeat after a crash between two
// chunks (see each step).

/// Most members (or member points accounts) one transaction of a daily step handles.
pub const DAILY_CHUNK: i64 = 500;

/// Schedule the next daily run (local midnight) if not yet scheduled.
pub async fn schedule_daily(tx: &mut Tx, tenant_id: &TenantId) -> ApiResult<()> {
    let zone = crate::tenants::time_zone(tx.conn(), tenant_id).await?;
    let today = calendar::local_date(tx.now(), &zone);
    let tomorrow =
        calendar::add_days(today, 1).map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    let due = calendar::start_of_local_day(tomorrow, &zone)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    let now_micros = to_micros(tx.now());
    scheduler::schedule(
        tx.conn(),
        tenant_id,
        &[NewJob {
            id: format!("{DAILY_JOB}:{tomorrow}"),
            kind: DAILY_JOB,
            due_at: to_micros(due),
            payload: json!({ "date": tomorrow.to_string() }),
        }],
        now_micros,
    )
    .await?;
    Ok(())
}

/// The first instant such that points earned before it have expired by `at`.
pub fn expiry_cutoff(policy: ExpiryPolicy, at: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let today = calendar::local_date(at, zone);
    match policy {
        ExpiryPolicy::Never => None,
        // Earned in year Y expires at the start of Y + 2: by `at` (in year T) everything
        // earned before the start of T − 1 has expired.
        ExpiryPolicy::EndOfNextYear => {
            let start = jiff::civil::date(today.year() - 1, 1, 1);
            calendar::start_of_local_day(start, zone).ok()
        }
        // Earned on day D expires at the start of D + n + 1: by `at` (on day T) everything
        // earned before the start of T − n has expired.
        ExpiryPolicy::DaysAfterEarning(n) => {
            let day = calendar::add_days(today, -i64::from(n)).ok()?;
            calendar::start_of_local_day(day, zone).ok()
        }
    }
}

/// Points to expire: what was earned before the cutoff minus what has already left the
/// account (oldest first), never negative and never more than is available.
pub fn expirable(earned_before_cutoff: i64, net_debits: i64, available: i64) -> i64 {
    (earned_before_cutoff - net_debits).clamp(0, available.max(0))
}

/// One chunk of members' points accounts with a positive posted balance, in address order
/// after `after`: (address, available). Only such an account can have points to expire or to
/// warn about: what is left of the points earned before a cutoff is at most the posted balance.
/// `lock` takes the accounts' row locks on PostgreSQL (SQLite's single writer is the lock), so
/// that no spend lands between reading their history and expiring.
async fn points_accounts(
    tx: &mut Tx,
    tenant_id: &TenantId,
    after: &str,
    lock: bool,
) -> ApiResult<Vec<(String, i64)>> {
    let lock = if lock && tx.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let rows = sqlx::query(&format!(
        "SELECT address, credits_posted - debits_posted - debits_pending AS available \
         FROM ledger_account WHERE tenant_id = $1 AND asset = 'points' AND address > $2 \
         AND address LIKE 'member:%' AND credits_posted > debits_posted \
         ORDER BY address LIMIT $3{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(after)
    .bind(DAILY_CHUNK)
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("address")?, r.try_get("available")?)))
        .collect()
}

/// For each of `accounts` (member points accounts): the posted points earned from
/// `system:issuance` before `cutoff`, and the net debits (posted debits less posted credits
/// from accounts other than issuance, i.e. returns).
///
/// Read by walking each account's own history list (the ledger links every transfer to the
/// previous one of each of its accounts, see [`crate::ledger::store`]): point lookups over
/// these members' transfers only, where a query by address would scan the tenant's whole
/// ledger (the transfers carry no address index) once per chunk.
async fn points_sums(
    tx: &mut Tx,
    tenant_id: &TenantId,
    accounts: &[(String, i64)],
    cutoff: Timestamp,
) -> ApiResult<HashMap<String, (i64, i64)>> {
    if accounts.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = (0..accounts.len()).map(|i| format!("${}", i + 3)).collect();
    let posted = "CASE WHEN t.pending = 0 THEN t.amount ELSE r.amount END";
    let sql = format!(
        "WITH RECURSIVE chain(address, id) AS ( \
             SELECT a.address, a.last_transfer_id FROM ledger_account a \
             WHERE a.tenant_id = $1 AND a.asset = 'points' AND a.address IN ({list}) \
             UNION ALL \
             SELECT chain.address, (SELECT CASE WHEN t.debit_address = chain.address \
                     THEN t.debit_prev ELSE t.credit_prev END \
                 FROM ledger_transfer t WHERE t.tenant_id = $1 AND t.id = chain.id) \
             FROM chain WHERE chain.id IS NOT NULL) \
         SELECT chain.address AS address, \
             CAST(SUM(CASE WHEN t.debit_address = 'system:issuance' AND t.created_at < $2 \
                 THEN {posted} ELSE 0 END) AS BIGINT) AS earned, \
             CAST(SUM(CASE WHEN t.debit_address = chain.address THEN {posted} \
                 WHEN t.debit_address = 'system:issuance' THEN 0 \
                 ELSE 0 - {posted} END) AS BIGINT) AS net_debits \
         FROM chain JOIN ledger_transfer t ON t.tenant_id = $1 AND t.id = chain.id \
         LEFT JOIN ledger_resolution r ON r.tenant_id = t.tenant_id AND r.pending_id = t.id \
         WHERE t.pending = 0 OR r.kind = 'posted' \
         GROUP BY chain.address",
        list = list.join(", "),
    );
    let mut query = sqlx::query(&sql)
        .bind(tenant_id.as_str())
        .bind(to_micros(cutoff));
    for (address, _) in accounts {
        query = query.bind(address.as_str());
    }
    let rows = query.fetch_all(tx.conn()).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("address")?,
                (r.try_get("earned")?, r.try_get("net_debits")?),
            ))
        })
        .collect()
}

/// Insert a once-only notice; false when it already existed.
pub(crate) async fn notice_once(
    tx: &mut Tx,
    tenant_id: &TenantId,
    key: &str,
    member: &str,
    kind: &str,
) -> ApiResult<bool> {
    let inserted = sqlx::query(
        "INSERT INTO program_notice (tenant_id, key, member_id, kind, at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(key)
    .bind(member)
    .bind(kind)
    .bind(to_micros(tx.now()))
    .execute(tx.conn())
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether a once-only notice was given.
async fn notice_given(db: &Db, tenant_id: &TenantId, key: &str) -> ApiResult<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM program_notice WHERE tenant_id = $1 AND key = $2")
            .bind(tenant_id.as_str())
            .bind(key)
            .fetch_optional(db.read())
            .await?;
    Ok(found.is_some())
}

/// What the expiry step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PointsExpired {
    pub points: i64,
    pub members: usize,
}

/// Daily step: expire the points earned before today's cutoff that are still unspent (first
/// in, first out over the ledger), one transaction per chunk of member accounts.
///
/// Repeatable: each expiry is a ledger transfer with an id derived from the member and the
/// cutoff (a repeat is refused as existing), and once it is posted it counts among the
/// member's debits, so the amount computed again is 0.
pub async fn expire_points(
    db: &Db,
    tenant_id: &TenantId,
    policy: ExpiryPolicy,
    zone: &TimeZone,
    at: Timestamp,
) -> ApiResult<PointsExpired> {
    let mut expired = PointsExpired::default();
    let Some(cutoff) = expiry_cutoff(policy, at, zone) else {
        return Ok(expired);
    };
    let mut after = String::new();
    loop {
        let mut tx = db.begin(at).await?;
        let accounts = points_accounts(&mut tx, tenant_id, &after, true).await?;
        let sums = points_sums(&mut tx, tenant_id, &accounts, cutoff).await?;
        let mut ops = Vec::new();
        for (address, available) in &accounts {
            let Some(member) = address.strip_prefix("member:").and_then(MemberId::parse) else {
                continue;
            };
            let (earned, net_debits) = sums.get(address).copied().unwrap_or((0, 0));
            let amount = expirable(earned, net_debits, *available);
            if amount > 0 {
                ops.push(Op::Create(NewTransfer::internal(
                    format!("points-expiry:{member}:{}", to_micros(cutoff)),
                    Address::member(&member),
                    Address::system("expiry"),
                    Asset::Points,
                    amount,
                    "points_expired",
                    None,
                )));
            }
        }
        if !ops.is_empty() {
            let results = ledger::apply_in(&mut tx, tenant_id, ops.clone()).await?;
            for (op, result) in ops.iter().zip(results) {
                if let (Op::Create(t), "created") = (op, result.status.as_str()) {
                    expired.points += t.amount;
                    expired.members += 1;
                    tx.emit(NewEvent::new(
                        tenant_id,
                        "points.expired",
                        t.from.member_id(),
                        json!({ "member_id": t.from.member_id(), "points": t.amount,
                                "earned_before": cutoff.to_string() }),
                    ));
                }
            }
        }
        tx.commit().await?;
        match next_chunk(&accounts, |(address, _)| address) {
            Some(last) => after = last,
            None => return Ok(expired),
        }
    }
}

/// The cursor after a chunk, or `None` when the chunk was the last (not full).
fn next_chunk<T>(chunk: &[T], key: impl Fn(&T) -> &String) -> Option<String> {
    if (chunk.len() as i64) < DAILY_CHUNK {
        return None;
    }
    chunk.last().map(|row| key(row).clone())
}

/// Daily step: warn (`points.expiring`) each member with points that expire within the next
/// [`EXPIRY_WARNING_DAYS`], one transaction per chunk of member accounts. Repeatable: once per
/// member and cutoff, by a notice written with the event.
pub async fn warn_expiring_points(
    db: &Db,
    tenant_id: &TenantId,
    policy: ExpiryPolicy,
    zone: &TimeZone,
    at: Timestamp,
) -> ApiResult<usize> {
    let horizon = at + SignedDuration::from_hours(24 * EXPIRY_WARNING_DAYS);
    let (Some(next_cutoff), Some(current)) = (
        expiry_cutoff(policy, horizon, zone),
        expiry_cutoff(policy, at, zone),
    ) else {
        return Ok(0);
    };
    if next_cutoff <= current {
        return Ok(0);
    }
    let expires_by = expiry_deadline(policy, horizon, zone).map(|t| t.to_string());
    let mut warnings = 0;
    let mut after = String::new();
    loop {
        let mut tx = db.begin(at).await?;
        let accounts = points_accounts(&mut tx, tenant_id, &after, false).await?;
        let sums = points_sums(&mut tx, tenant_id, &accounts, next_cutoff).await?;
        for (address, _) in &accounts {
            let (earned, net_debits) = sums.get(address).copied().unwrap_or((0, 0));
            let amount = (earned - net_debits).max(0);
            let member = address.trim_start_matches("member:");
            if amount > 0
                && notice_once(
                    &mut tx,
                    tenant_id,
                    &format!("expiring:{member}:{}", to_micros(next_cutoff)),
                    member,
                    "points_expiring",
                )
                .await?
            {
                warnings += 1;
                tx.emit(NewEvent::new(
                    tenant_id,
                    "points.expiring",
                    Some(member),
                    json!({ "member_id": member, "points": amount, "earned_before": next_cutoff.to_string(),
                            "expires_by": expires_by }),
                ));
            }
        }
        tx.commit().await?;
        match next_chunk(&accounts, |(address, _)| address) {
            Some(last) => after = last,
            None => return Ok(warnings),
        }
    }
}

/// Daily step: birthday perks, once per member and birthday year, one transaction per chunk
/// of members. Repeatable: the notice `birthday:{member}:{year}` is written in the same
/// transaction as the points, the coupon and the event, so a member's perk is all there or
/// not at all, and given once.
pub async fn grant_birthday_perks(
    db: &Db,
    tenant_id: &TenantId,
    perk: Option<&BirthdayPerk>,
    zone: &TimeZone,
    at: Timestamp,
) -> ApiResult<usize> {
    let Some(perk) = perk else {
        return Ok(0);
    };
    let today = calendar::local_date(at, zone);
    let mut granted = 0;
    let mut after = String::new();
    loop {
        let mut tx = db.begin(at).await?;
        let rows = sqlx::query(
            "SELECT id, birthday FROM member WHERE tenant_id = $1 AND status = 'active' \
             AND birthday IS NOT NULL AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(tenant_id.as_str())
        .bind(&after)
        .bind(DAILY_CHUNK)
        .fetch_all(tx.conn())
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        for row in &rows {
            members.push((
                row.try_get::<String, _>("id")?,
                row.try_get::<String, _>("birthday")?,
            ));
        }
        for (id, birthday) in &members {
            if grant_birthday_perk(&mut tx, tenant_id, perk, id, birthday, today).await? {
                granted += 1;
            }
        }
        tx.commit().await?;
        match next_chunk(&members, |(id, _)| id) {
            Some(last) => after = last,
            None => return Ok(granted),
        }
    }
}

/// Daily step: a `member.birthday` event for each active member whose birthday is today in
/// the tenant's time zone (29 February: 28 February in other years), once per member and year
/// (notice `birthday-day:{member}:{year}`), for automations and webhooks to act on. Only the
/// members born on today's month and day are read.
pub async fn announce_birthdays(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    at: Timestamp,
) -> ApiResult<usize> {
    let today = calendar::local_date(at, zone);
    let mut days = vec![format!("{:02}-{:02}", today.month(), today.day())];
    if today.month() == 2 && today.day() == 28 && !today.in_leap_year() {
        days.push("02-29".to_owned());
    }
    let mut announced = 0;
    let mut after = String::new();
    loop {
        let mut tx = db.begin(at).await?;
        let rows = sqlx::query(
            "SELECT id, birthday FROM member WHERE tenant_id = $1 AND status = 'active' \
             AND birthday IS NOT NULL AND substr(birthday, 6, 5) IN ($2, $3) AND id > $4 \
             ORDER BY id LIMIT $5",
        )
        .bind(tenant_id.as_str())
        .bind(&days[0])
        .bind(days.last().unwrap_or(&days[0]))
        .bind(&after)
        .bind(DAILY_CHUNK)
        .fetch_all(tx.conn())
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        for row in &rows {
            members.push((
                row.try_get::<String, _>("id")?,
                row.try_get::<String, _>("birthday")?,
            ));
        }
        for (id, birthday) in &members {
            let Ok(date) = birthday.parse::<jiff::civil::Date>() else {
                continue;
            };
            let Some(year) = calendar::birthday_perk_due(date, 0, today, None) else {
                continue;
            };
            if notice_once(
                &mut tx,
                tenant_id,
                &format!("birthday-day:{id}:{year}"),
                id,
                "birthday",
            )
            .await?
            {
                tx.emit(NewEvent::new(
                    tenant_id,
                    "member.birthday",
                    Some(id),
                    json!({ "member_id": id, "year": year }),
                ));
                announced += 1;
            }
        }
        tx.commit().await?;
        match next_chunk(&members, |(id, _)| id) {
            Some(last) => after = last,
            None => return Ok(announced),
        }
    }
}

/// One member's birthday perk, if due today and not yet given for this birthday year.
async fn grant_birthday_perk(
    tx: &mut Tx,
    tenant_id: &TenantId,
    perk: &BirthdayPerk,
    id: &str,
    birthday: &str,
    today: jiff::civil::Date,
) -> ApiResult<bool> {
    let Ok(date) = birthday.parse::<jiff::civil::Date>() else {
        return Ok(false);
    };
    let Some(year) = calendar::birthday_perk_due(date, perk.days_before, today, None) else {
        return Ok(false);
    };
    if !notice_once(
        tx,
        tenant_id,
        &format!("birthday:{id}:{year}"),
        id,
        "birthday_perk",
    )
    .await?
    {
        return Ok(false);
    }
    let member = MemberId::from_db(id.to_owned());
    if perk.points > 0 {
        ledger::apply_in(
            tx,
            tenant_id,
            vec![Op::Create(NewTransfer::internal(
                format!("birthday-points:{id}:{year}"),
                Address::system("issuance"),
                Address::member(&member),
                Asset::Points,
                perk.points,
                "birthday_perk",
                None,
            ))],
        )
        .await?;
    }
    // The coupon follows the template's own stock and limits; when it cannot be issued (out
    // of stock) the points still count and the event says why.
    let mut coupon = Value::Null;
    let mut coupon_error = Value::Null;
    if let Some(template) = perk
        .coupon_template_id
        .as_deref()
        .and_then(super::coupons::model::CouponTemplateId::parse)
    {
        match super::coupons::grant(tx, tenant_id, &template, &member, "birthday").await {
            Ok(granted) => coupon = json!(granted.id),
            Err(error) => coupon_error = json!(error.code),
        }
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "member.birthday_perk",
        Some(id),
        json!({ "member_id": id, "year": year, "points": perk.points,
                "coupon_template_id": perk.coupon_template_id, "coupon_id": coupon,
                "coupon_error": coupon_error }),
    ));
    Ok(true)
}

/// Daily step: on the tenant's yearly requalification date, re-evaluate every member's tier
/// with downgrades allowed, one transaction per chunk of members.
///
/// Repeatable: re-evaluating a member already at the tier its growth gives changes nothing,
/// and the day's notice `requalify:{date}` is written only after the last chunk, so a run
/// that stopped between chunks is completed by the next run of the day, and a finished one
/// is not repeated (a downgrade happens once a year, not at every run of that day).
pub async fn requalify_tiers(
    db: &Db,
    tenant_id: &TenantId,
    tiers_list: &[Tier],
    requalification: Option<Requalification>,
    zone: &TimeZone,
    at: Timestamp,
) -> ApiResult<usize> {
    let Some(r) = requalification else {
        return Ok(0);
    };
    let today = calendar::local_date(at, zone);
    if calendar::clamped_date(today.year(), r.month, r.day).ok() != Some(today) {
        return Ok(0);
    }
    let key = format!("requalify:{today}");
    if notice_given(db, tenant_id, &key).await? {
        return Ok(0);
    }
    let mut changed = 0;
    let mut after = String::new();
    loop {
        let mut tx = db.begin(at).await?;
        let (changes, next) =
            reevaluate_chunk(&mut tx, tenant_id, tiers_list, true, &after).await?;
        tx.commit().await?;
        changed += changes;
        match next {
            Some(last) => after = last,
            None => break,
        }
    }
    let mut tx = db.begin(at).await?;
    notice_once(&mut tx, tenant_id, &key, "", "requalification").await?;
    tx.commit().await?;
    Ok(changed)
}

/// When the points in the warning window expire (for the event).
fn expiry_deadline(policy: ExpiryPolicy, horizon: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let today = calendar::local_date(horizon, zone);
    match policy {
        ExpiryPolicy::Never => None,
        ExpiryPolicy::EndOfNextYear => {
            calendar::start_of_local_day(jiff::civil::date(today.year(), 1, 1), zone).ok()
        }
        ExpiryPolicy::DaysAfterEarning(_) => calendar::start_of_local_day(today, zone).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_discount_is_given_either_way_and_both_ways_must_agree() {
        assert_eq!(tier_discount_bp("金卡", None, None), Ok(0));
        assert_eq!(tier_discount_bp("金卡", Some(1000), None), Ok(1000));
        assert_eq!(tier_discount_bp("金卡", None, Some(9000)), Ok(1000));
        assert_eq!(tier_discount_bp("金卡", Some(500), Some(9500)), Ok(500));
        assert_eq!(tier_discount_bp("金卡", None, Some(10_000)), Ok(0));
        // 九折 typed as 9000 in both fields, or out of range: refused, saying which means what.
        let both = tier_discount_bp("金卡", Some(9000), Some(9000)).unwrap_err();
        assert!(both.contains("disagree") && both.contains("九折"), "{both}");
        let whole = tier_discount_bp("金卡", Some(10_000), None).unwrap_err();
        assert!(whole.contains("what comes off"), "{whole}");
        assert!(tier_discount_bp("金卡", None, Some(0)).is_err());
        assert!(tier_discount_bp("金卡", Some(-1), None).is_err());
    }

    fn shanghai() -> TimeZone {
        calendar::tenant_time_zone(None).unwrap()
    }

    #[test]
    fn end_of_next_year_cutoff_is_start_of_last_year() {
        let at: Timestamp = "2027-01-01T00:00:00+08:00".parse().unwrap();
        let cutoff = expiry_cutoff(ExpiryPolicy::EndOfNextYear, at, &shanghai()).unwrap();
        assert_eq!(
            cutoff,
            "2026-01-01T00:00:00+08:00".parse::<Timestamp>().unwrap()
        );
        let before: Timestamp = "2026-12-31T23:59:59+08:00".parse().unwrap();
        let cutoff = expiry_cutoff(ExpiryPolicy::EndOfNextYear, before, &shanghai()).unwrap();
        assert_eq!(
            cutoff,
            "2025-01-01T00:00:00+08:00".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn days_after_earning_cutoff() {
        let at: Timestamp = "2026-03-11T00:00:00+08:00".parse().unwrap();
        let cutoff = expiry_cutoff(ExpiryPolicy::DaysAfterEarning(10), at, &shanghai()).unwrap();
        // Earned on 2026-02-28 expires at the start of 2026-03-11; earned on 03-01 is still good.
        assert_eq!(
            cutoff,
            "2026-03-01T00:00:00+08:00".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn fifo_expiry_never_takes_spent_points() {
        // Earn 100 (2025), earn 50 (2026), spend 120.
        // End of 2026: earned before the cutoff = 100, net debits = 120 → nothing expires.
        assert_eq!(expirable(100, 120, 30), 0);
        // End of 2027: earned before the cutoff = 150 → 30 expire.
        assert_eq!(expirable(150, 120, 30), 30);
        // Never more than available (points reserved at checkout stay).
        assert_eq!(expirable(150, 120, 10), 10);
    }

    #[test]
    fn expirable_matches_the_lot_model() {
        // The cumulative formula equals first-in-first-out lots for any spend pattern.
        let zone = shanghai();
        let earn_2025: Timestamp = "2025-06-01T00:00:00+08:00".parse().unwrap();
        let earn_2026: Timestamp = "2026-06-01T00:00:00+08:00".parse().unwrap();
        for spent in [0i64, 50, 99, 100, 101, 120, 150] {
            let mut lots = vec![
                points_rules::Lot {
                    id: "a".into(),
                    earned_at: earn_2025,
                    expires_at: points_rules::expires_at(
                        earn_2025,
                        ExpiryPolicy::EndOfNextYear,
                        &zone,
                    )
                    .unwrap(),
                    amount: 100,
                    remaining: 100,
                },
                points_rules::Lot {
                    id: "b".into(),
                    earned_at: earn_2026,
                    expires_at: points_rules::expires_at(
                        earn_2026,
                        ExpiryPolicy::EndOfNextYear,
                        &zone,
                    )
                    .unwrap(),
                    amount: 50,
                    remaining: 50,
                },
            ];
            if spent > 0 {
                points_rules::spend_fifo(&mut lots, spent, earn_2026).unwrap();
            }
            let end_2026: Timestamp = "2027-01-01T00:00:00+08:00".parse().unwrap();
            let by_lots: i64 = points_rules::expire_due(&mut lots, end_2026)
                .iter()
                .map(|(_, n)| n)
                .sum();
            assert_eq!(expirable(100, spent, 150 - spent), by_lots, "spent {spent}");
        }
    }
}
