//! Lotteries (抽奖): drawn later (`draw`) or at each entry (`instant`), committed in advance
//! to a secret seed so that the result can be verified by anyone afterwards.
//!
//! - [`draw`]: the algorithm (documented there), pure, and the proof check behind
//!   `shequn lottery verify PROOF.json`.
//! - This module: creating a lottery, entries, the draw, the proof.
//!
//! # Exactness
//!
//! An entry first runs `UPDATE lottery SET entry_count = entry_count + 1 WHERE … AND status =
//! 'open'`, which numbers entries gaplessly (the order the draw and the proof use) and, on
//! PostgreSQL, holds the lottery's row lock until the transaction ends; SQLite has one writer.
//! So entries of one lottery run one at a time: the per-member entry limit is counted exactly,
//! instant-mode stock is taken by `UPDATE lottery_prize SET remaining = remaining - 1 WHERE …
//! AND remaining > 0` in entry order (never below zero, and the same order the proof replays),
//! and the draw's `UPDATE … SET status = 'drawn' WHERE status = 'open'` succeeds once and shuts
//! out later entries. The price is one row-lock hand-off per entry on a hot lottery.
//!
//! Entry costs are debited from the member to `system:redemption` (code `lottery_entry`) in the
//! entry's transaction (409 `insufficient_points` undoes the entry). Prizes are paid with
//! [`super::reward::pay`] (code `lottery_prize`).
//!
//! The seed is stored in the database in clear (a server that can read the database can
//! also decide the draw, so encrypting it there would add nothing); the API reveals it only
//! with the result: after the draw in draw mode, after the lottery closed in instant mode.

pub mod draw;

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::reward::{self, Reward, RewardSpec};
use super::{body_member_id, LotteryId};
use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::sql::Sql;
use crate::common::state::{state_column, state_enum};
use crate::common::time::{instant_field, micros_to_rfc3339, to_micros};
use crate::members;
use crate::tenants;
use crate::AppState;
use draw::{LotteryMode, PrizeSlot, Proof};

/// Most prizes per lottery.
pub const MAX_PRIZES: usize = 20;
/// Most winners of a draw.
pub const MAX_WINNERS: i64 = 1000;
/// Most entries per lottery (the draw and the proof hold them all).
pub const MAX_ENTRIES: i64 = 100_000;
/// Most entries one member may be allowed.
pub const MAX_ENTRIES_PER_MEMBER: i64 = 100;
/// Largest stock and weight of a prize.
pub const MAX_STOCK: i64 = 1_000_000;
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Largest entry cost, in points.
pub const MAX_ENTRY_COST_POINTS: i64 = 1_000_000;
/// Default length of a lottery when `closes_at` is not given.
pub const DEFAULT_DURATION_DAYS: i64 = 7;
/// Largest page of `GET /v1/lotteries`.
pub const MAX_PAGE: i64 = 200;

state_enum! {
    /// A lottery's state as stored: `open` until it is drawn (draw mode) or closed (instant
    /// mode), then `drawn`. What the API shows is a [`LotteryStatus`], which adds the times.
    enum StoredStatus {
        Open = "open",
        Drawn = "drawn",
    }
}

state_enum! {
    /// Where a lottery is, as the API shows it at a given time.
    pub enum LotteryStatus {
        /// Before `opens_at`.
        Scheduled = "scheduled",
        /// Taking entries.
        Open = "open",
        /// Past `closes_at`, not drawn yet.
        Closed = "closed",
        /// Drawn (draw mode) or closed by the draw call (instant mode).
        Drawn = "drawn",
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_lottery, list_lotteries))
        .routes(routes!(get_lottery))
        .routes(routes!(enter))
        .routes(routes!(draw_lottery))
        .routes(routes!(proof))
}

fn lottery_id(text: &str) -> ApiResult<LotteryId> {
    LotteryId::parse(text).ok_or_else(|| ApiError::not_found("lottery"))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrizeBody {
    pub name: String,
    /// `{"points": N}`, `{"coupon_template_id": ID}` or `{"wallet_bonus": N}`; null for a
    /// "no prize" slot (谢谢参与) in instant mode.
    pub reward: Option<RewardSpec>,
    /// Units available (required with a reward, 0 to 1,000,000).
    pub stock: Option<i64>,
    /// Instant mode: relative chance of this slot (1 to 1,000,000, default 1).
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLottery {
    pub name: String,
    /// `draw` (winners drawn later) or `instant` (each entry draws at once).
    pub mode: String,
    /// Draw mode: how many members win (1 to 1000).
    pub winners: Option<i64>,
    #[serde(default)]
    pub prizes: Vec<PrizeBody>,
    /// Points one entry costs (default 0).
    pub entry_cost_points: Option<i64>,
    /// Default 1.
    pub entries_per_member: Option<i64>,
    /// RFC 3339; default now.
    pub opens_at: Option<String>,
    /// RFC 3339; default seven days after `opens_at`.
    pub closes_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Prize {
    pub position: i64,
    pub name: String,
    pub reward: Option<RewardSpec>,
    pub stock: Option<i64>,
    pub remaining: Option<i64>,
    pub weight: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Lottery {
    #[schema(value_type = String)]
    pub id: LotteryId,
    pub name: String,
    pub mode: LotteryMode,
    pub winners: i64,
    pub prizes: Vec<Prize>,
    pub entry_cost_points: i64,
    pub entries_per_member: i64,
    pub opens_at: String,
    pub closes_at: String,
    /// `scheduled`, `open`, `closed` (past `closes_at`) or `drawn`.
    pub status: LotteryStatus,
    pub entry_count: i64,
    /// `hex(SHA-256(seed))`, published before any entry.
    pub commitment: String,
    /// Revealed with the result; null before.
    pub seed: Option<String>,
    /// Member ids of the winners once drawn.
    pub drawn_winners: Option<Vec<String>>,
    pub created_at: String,
}

struct Stored {
    id: LotteryId,
    name: String,
    mode: LotteryMode,
    winners: i64,
    entry_cost_points: i64,
    entries_per_member: i64,
    opens_at: i64,
    closes_at: i64,
    seed: String,
    commitment: String,
    status: StoredStatus,
    entry_count: i64,
    result: Option<String>,
    created_at: i64,
}

impl Stored {
    fn from_row(row: &AnyRow) -> Result<Stored, sqlx::Error> {
        Ok(Stored {
            id: LotteryId::from_db(row.try_get("id")?),
            name: row.try_get("name")?,
            mode: state_column(row, "mode")?,
            winners: row.try_get("winners")?,
            entry_cost_points: row.try_get("entry_cost_points")?,
            entries_per_member: row.try_get("entries_per_member")?,
            opens_at: row.try_get("opens_at")?,
            closes_at: row.try_get("closes_at")?,
            seed: row.try_get("seed")?,
            commitment: row.try_get("commitment")?,
            status: state_column(row, "status")?,
            entry_count: row.try_get("entry_count")?,
            result: row.try_get("result")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Whether the seed may be shown: with the result.
    fn revealed(&self, now: i64) -> bool {
        self.status == StoredStatus::Drawn
            || (self.mode == LotteryMode::Instant && now >= self.closes_at)
    }

    fn status_at(&self, now: i64) -> LotteryStatus {
        if self.status == StoredStatus::Drawn {
            LotteryStatus::Drawn
        } else if now < self.opens_at {
            LotteryStatus::Scheduled
        } else if now >= self.closes_at {
            LotteryStatus::Closed
        } else {
            LotteryStatus::Open
        }
    }
}

/// The columns [`Stored::from_row`] reads.
const LOTTERY_COLUMNS: &str = "id, name, mode, winners, entry_cost_points, entries_per_member, \
     opens_at, closes_at, seed, commitment, status, entry_count, result, created_at";

async fn fetch(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &LotteryId,
) -> ApiResult<Stored> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {LOTTERY_COLUMNS} FROM lottery WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    let row = sql
        .query()
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("lottery"))?;
    Ok(Stored::from_row(&row)?)
}

/// A stored prize with its parsed reward.
struct StoredPrize {
    view: Prize,
    reward: Option<Reward>,
}

impl StoredPrize {
    /// A prize row; a stored reward that does not parse is a 500.
    fn from_row(row: &AnyRow) -> ApiResult<StoredPrize> {
        let reward: Option<String> = row.try_get("reward")?;
        let reward = reward.as_deref().map(Reward::from_json).transpose()?;
        Ok(StoredPrize {
            view: Prize {
                position: row.try_get("position")?,
                name: row.try_get("name")?,
                reward: reward.as_ref().map(Reward::spec),
                stock: row.try_get("stock")?,
                remaining: row.try_get("remaining")?,
                weight: row.try_get("weight")?,
            },
            reward,
        })
    }
}

async fn prizes(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &LotteryId,
) -> ApiResult<Vec<StoredPrize>> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT position, name, reward, stock, remaining, weight FROM lottery_prize WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND lottery_id = ")
        .bind(id.as_str())
        .push(" ORDER BY position");
    sql.query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(StoredPrize::from_row)
        .collect()
}

fn slots(prizes: &[StoredPrize]) -> Vec<PrizeSlot> {
    prizes
        .iter()
        .map(|p| PrizeSlot {
            name: p.view.name.clone(),
            weight: u64::try_from(p.view.weight).unwrap_or(0),
            stock: p.view.stock.and_then(|s| u64::try_from(s).ok()),
            has_reward: p.reward.is_some(),
        })
        .collect()
}

fn result_winners(stored: &Stored) -> Option<Vec<String>> {
    let result: Value = serde_json::from_str(stored.result.as_deref()?).ok()?;
    serde_json::from_value(result.get("winners")?.clone()).ok()
}

async fn view(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    stored: Stored,
    now: i64,
) -> ApiResult<Lottery> {
    let prizes = prizes(conn, tenant_id, &stored.id).await?;
    Ok(view_of(
        stored,
        prizes.into_iter().map(|p| p.view).collect(),
        now,
    ))
}

/// What the API shows of a stored lottery and its prizes at `now`.
fn view_of(stored: Stored, prizes: Vec<Prize>, now: i64) -> Lottery {
    Lottery {
        status: stored.status_at(now),
        seed: stored.revealed(now).then(|| stored.seed.clone()),
        drawn_winners: result_winners(&stored),
        id: stored.id,
        name: stored.name,
        mode: stored.mode,
        winners: stored.winners,
        prizes,
        entry_cost_points: stored.entry_cost_points,
        entries_per_member: stored.entries_per_member,
        opens_at: micros_to_rfc3339(stored.opens_at),
        closes_at: micros_to_rfc3339(stored.closes_at),
        entry_count: stored.entry_count,
        commitment: stored.commitment,
        created_at: micros_to_rfc3339(stored.created_at),
    }
}

fn bounded(field: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> ApiResult<i64> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            field,
            format!("must be {min} to {max}"),
        ))
    }
}

/// A validated prize of a new lottery.
struct NewPrize {
    name: String,
    reward: Option<Reward>,
    stock: Option<i64>,
    weight: i64,
}

impl NewPrize {
    /// The `i`-th prize of a request; errors name `prizes[i].…`.
    fn parse(i: usize, prize: &PrizeBody) -> ApiResult<NewPrize> {
        let field = |f: &str| format!("prizes[{i}].{f}");
        let name = super::name(&field("name"), &prize.name)?;
        let reward = prize
            .reward
            .as_ref()
            .map(|spec| Reward::parse(&field("reward"), spec))
            .transpose()?;
        let stock = match (&reward, prize.stock) {
            (Some(_), None) => {
                return Err(ApiError::validation(
                    &field("stock"),
                    "is required for a prize with a reward",
                ))
            }
            (Some(_), Some(stock)) => Some(bounded(&field("stock"), Some(stock), 0, 0, MAX_STOCK)?),
            (None, _) => None,
        };
        let weight = bounded(&field("weight"), prize.weight, 1, 1, MAX_WEIGHT)?;
        Ok(NewPrize {
            name,
            reward,
            stock,
            weight,
        })
    }
}

/// The terms of a new lottery that need no time zone: everything but its entry window.
struct NewTerms {
    name: String,
    mode: LotteryMode,
    winners: i64,
    entry_cost_points: i64,
    entries_per_member: i64,
    prizes: Vec<NewPrize>,
}

impl NewTerms {
    fn parse(request: &CreateLottery) -> ApiResult<NewTerms> {
        let name = super::name("name", &request.name)?;
        let mode = LotteryMode::parse(&request.mode)
            .ok_or_else(|| ApiError::validation("mode", "must be draw or instant"))?;
        let winners = match mode {
            LotteryMode::Draw => {
                let winners = request
                    .winners
                    .ok_or_else(|| ApiError::validation("winners", "is required in draw mode"))?;
                bounded("winners", Some(winners), 1, 1, MAX_WINNERS)?
            }
            LotteryMode::Instant => 0,
        };
        let entry_cost_points = bounded(
            "entry_cost_points",
            request.entry_cost_points,
            0,
            0,
            MAX_ENTRY_COST_POINTS,
        )?;
        let entries_per_member = bounded(
            "entries_per_member",
            request.entries_per_member,
            1,
            1,
            MAX_ENTRIES_PER_MEMBER,
        )?;
        Ok(NewTerms {
            name,
            mode,
            winners,
            entry_cost_points,
            entries_per_member,
            prizes: parse_prizes(&request.prizes, mode)?,
        })
    }
}

/// At most [`MAX_PRIZES`] valid prizes; an instant lottery needs one with a reward.
fn parse_prizes(prizes: &[PrizeBody], mode: LotteryMode) -> ApiResult<Vec<NewPrize>> {
    if prizes.len() > MAX_PRIZES {
        return Err(ApiError::validation(
            "prizes",
            format!("at most {MAX_PRIZES} prizes"),
        ));
    }
    let parsed = prizes
        .iter()
        .enumerate()
        .map(|(i, prize)| NewPrize::parse(i, prize))
        .collect::<ApiResult<Vec<_>>>()?;
    if mode == LotteryMode::Instant && !parsed.iter().any(|p| p.reward.is_some()) {
        return Err(ApiError::validation(
            "prizes",
            "an instant lottery needs at least one prize with a reward",
        ));
    }
    Ok(parsed)
}

/// When entries open and close: `opens_at` defaults to `now`, `closes_at` to
/// [`DEFAULT_DURATION_DAYS`] later, and the window must not be empty.
fn entry_window(
    request: &CreateLottery,
    now: Timestamp,
    zone: &TimeZone,
) -> ApiResult<(Timestamp, Timestamp)> {
    let opens_at = match &request.opens_at {
        Some(text) => instant_field("opens_at", text, zone)?,
        None => now,
    };
    let closes_at = match &request.closes_at {
        Some(text) => instant_field("closes_at", text, zone)?,
        None => opens_at
            .checked_add(SignedDuration::from_hours(24 * DEFAULT_DURATION_DAYS))
            .map_err(|_| ApiError::validation("opens_at", "is out of range"))?,
    };
    if closes_at <= opens_at {
        return Err(ApiError::validation("closes_at", "must be after opens_at"));
    }
    Ok((opens_at, closes_at))
}

/// 422 naming the prize when a coupon prize's template does not exist.
async fn check_rewards_exist(
    tx: &mut Tx,
    tenant_id: &TenantId,
    prizes: &[NewPrize],
) -> ApiResult<()> {
    for (i, prize) in prizes.iter().enumerate() {
        if let Some(reward) = &prize.reward {
            reward
                .check_exists(tx.conn(), tenant_id, &format!("prizes[{i}].reward"))
                .await?;
        }
    }
    Ok(())
}

/// Insert the lottery row, open, with no entries and the seed it is committed to.
async fn insert_lottery(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &LotteryId,
    terms: &NewTerms,
    (opens_at, closes_at): (Timestamp, Timestamp),
    seed: &[u8],
    commitment: &str,
) -> ApiResult<()> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO lottery (tenant_id, id, name, mode, winners, entry_cost_points, entries_per_member, \
         opens_at, closes_at, seed, commitment, status, entry_count, created_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(id.as_str())
        .push(", ")
        .bind(terms.name.as_str())
        .push(", ")
        .bind(terms.mode.as_str())
        .push(", ")
        .bind(terms.winners)
        .push(", ")
        .bind(terms.entry_cost_points)
        .push(", ")
        .bind(terms.entries_per_member)
        .push(", ")
        .bind(to_micros(opens_at))
        .push(", ")
        .bind(to_micros(closes_at))
        .push(", ")
        .bind(hex::encode(seed))
        .push(", ")
        .bind(commitment)
        .push(", ")
        .bind(StoredStatus::Open.as_str())
        .push(", 0, ")
        .bind(to_micros(tx.now()))
        .push(")");
    sql.query().execute(tx.conn()).await?;
    Ok(())
}

/// Insert the prizes in request order; a prize's position is its index.
async fn insert_prizes(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &LotteryId,
    prizes: &[NewPrize],
) -> ApiResult<()> {
    for (position, prize) in prizes.iter().enumerate() {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO lottery_prize (tenant_id, lottery_id, position, name, reward, stock, remaining, weight) VALUES (",
        );
        sql.bind(tenant_id.as_str())
            .push(", ")
            .bind(id.as_str())
            .push(", ")
            .bind(i64::try_from(position).unwrap_or(0))
            .push(", ")
            .bind(prize.name.as_str())
            .push(", ")
            .bind(prize.reward.as_ref().map(|r| r.to_json().to_string()))
            .push(", ")
            .bind(prize.stock)
            .push(", ")
            .bind(prize.stock)
            .push(", ")
            .bind(prize.weight)
            .push(")");
        sql.query().execute(tx.conn()).await?;
    }
    Ok(())
}

/// Create a lottery; the response carries the commitment to its secret seed.
#[utoipa::path(post, path = "/v1/lotteries", tag = "community", request_body = CreateLottery,
    responses((status = 201, body = Lottery), (status = 422)), security(("api_key" = [])))]
async fn create_lottery(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateLottery>,
) -> ApiResult<(StatusCode, Json<Lottery>)> {
    let terms = NewTerms::parse(&request)?;
    let now = state.clock.now();
    let zone = tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let window = entry_window(&request, now, &zone)?;

    let mut seed = [0u8; draw::SEED_BYTES];
    rand::rng().fill_bytes(&mut seed);
    let commitment = draw::commitment(&seed);
    let id = LotteryId::generate();
    let mut tx = state.begin().await?;
    check_rewards_exist(&mut tx, &auth.tenant_id, &terms.prizes).await?;
    insert_lottery(
        &mut tx,
        &auth.tenant_id,
        &id,
        &terms,
        window,
        &seed,
        &commitment,
    )
    .await?;
    insert_prizes(&mut tx, &auth.tenant_id, &id, &terms.prizes).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "lottery.created",
        Some(id.as_str()),
        json!({ "lottery_id": id, "mode": terms.mode, "commitment": commitment }),
    ));
    let stored = fetch(tx.conn(), &auth.tenant_id, &id).await?;
    let lottery = view(tx.conn(), &auth.tenant_id, stored, to_micros(now)).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(lottery)))
}

/// One lottery (the seed only once revealed).
#[utoipa::path(get, path = "/v1/lotteries/{id}", tag = "community",
    params(("id" = String, Path)), responses((status = 200, body = Lottery), (status = 404)),
    security(("api_key" = [])))]
async fn get_lottery(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Lottery>> {
    let id = lottery_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let stored = fetch(&mut conn, &auth.tenant_id, &id).await?;
    let now = to_micros(state.clock.now());
    Ok(Json(view(&mut conn, &auth.tenant_id, stored, now).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only the lotteries in this status now: `scheduled`, `open`, `closed` or `drawn`.
    pub status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LotteryPage {
    pub data: Vec<Lottery>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Keep the lotteries that are in `status` at `now`: the stored state and the entry window
/// read the way [`Stored::status_at`] reads them.
fn push_status(sql: &mut Sql, status: LotteryStatus, now: i64) {
    match status {
        LotteryStatus::Drawn => {
            sql.push(" AND status = ")
                .bind(StoredStatus::Drawn.as_str());
        }
        LotteryStatus::Scheduled => {
            sql.push(" AND status = ")
                .bind(StoredStatus::Open.as_str())
                .push(" AND opens_at > ")
                .bind(now);
        }
        LotteryStatus::Open => {
            sql.push(" AND status = ")
                .bind(StoredStatus::Open.as_str())
                .push(" AND opens_at <= ")
                .bind(now)
                .push(" AND closes_at > ")
                .bind(now);
        }
        LotteryStatus::Closed => {
            sql.push(" AND status = ")
                .bind(StoredStatus::Open.as_str())
                .push(" AND closes_at <= ")
                .bind(now);
        }
    }
}

/// The prizes of a page of lotteries in one query, by lottery id.
async fn prizes_by_lottery(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    lotteries: &[Stored],
) -> ApiResult<HashMap<String, Vec<Prize>>> {
    let mut by_lottery: HashMap<String, Vec<Prize>> = HashMap::new();
    if lotteries.is_empty() {
        return Ok(by_lottery);
    }
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT lottery_id, position, name, reward, stock, remaining, weight FROM lottery_prize \
         WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str()).push(" AND lottery_id IN (");
    for (i, lottery) in lotteries.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(lottery.id.as_str());
    }
    sql.push(") ORDER BY lottery_id, position");
    for row in sql.query().fetch_all(&mut *conn).await? {
        let lottery: String = row.try_get("lottery_id")?;
        let prize = StoredPrize::from_row(&row)?.view;
        by_lottery.entry(lottery).or_default().push(prize);
    }
    Ok(by_lottery)
}

/// The tenant's lotteries, newest first; `status` keeps those in that status now.
#[utoipa::path(get, path = "/v1/lotteries", tag = "community", params(ListQuery),
    responses((status = 200, body = LotteryPage), (status = 422)), security(("api_key" = [])))]
async fn list_lotteries(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<LotteryPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), LotteryId::parse)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(LotteryStatus::parse(text).ok_or_else(|| {
            ApiError::validation("status", "must be scheduled, open, closed or drawn")
        })?),
    };
    let now = to_micros(state.clock.now());
    let mut conn = state.db.read().acquire().await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT {LOTTERY_COLUMNS} FROM lottery WHERE tenant_id = "),
    );
    sql.bind(auth.tenant_id.as_str());
    if let Some(status) = status {
        push_status(&mut sql, status, now);
    }
    if let Some(cursor) = &cursor {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut stored = rows
        .iter()
        .map(Stored::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = pagination::next_cursor(&mut stored, limit, |s| s.id.to_string());
    let mut prizes = prizes_by_lottery(&mut conn, &auth.tenant_id, &stored).await?;
    let data = stored
        .into_iter()
        .map(|s| {
            let of_lottery = prizes.remove(s.id.as_str()).unwrap_or_default();
            view_of(s, of_lottery, now)
        })
        .collect();
    Ok(Json(LotteryPage { data, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    pub member_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WonPrize {
    pub position: i64,
    pub name: String,
    pub reward: RewardSpec,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    #[schema(value_type = String)]
    pub lottery_id: LotteryId,
    /// 0-based position in the entry list (the order the proof lists).
    pub entry_index: i64,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    /// Instant mode: the prize won, or null.
    pub prize: Option<WonPrize>,
    #[schema(value_type = Option<Object>)]
    pub payout: Option<Value>,
}

/// Pay a prize to a member and record it on the entry.
async fn pay_prize(
    tx: &mut Tx,
    tenant_id: &TenantId,
    lottery: &LotteryId,
    entry_index: i64,
    member: &MemberId,
    prize: &StoredPrize,
) -> ApiResult<Option<Value>> {
    let Some(reward) = &prize.reward else {
        return Ok(None);
    };
    let payout = reward::pay(
        tx,
        tenant_id,
        member,
        reward,
        &format!("lottery:{lottery}:{entry_index}:prize"),
        "lottery_prize",
        &format!("lottery:{lottery}"),
    )
    .await?;
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE lottery_entry SET prize_position = ");
    sql.bind(prize.view.position)
        .push(", payout = ")
        .bind(payout.to_string())
        .push(" WHERE tenant_id = ")
        .bind(tenant_id.as_str())
        .push(" AND lottery_id = ")
        .bind(lottery.as_str())
        .push(" AND entry_index = ")
        .bind(entry_index);
    sql.query().execute(tx.conn()).await?;
    Ok(Some(payout))
}

/// The lottery's secret seed, decoded from the hex it is stored as.
fn seed_bytes(stored: &Stored) -> ApiResult<Vec<u8>> {
    hex::decode(&stored.seed).map_err(|e| ApiError::internal(anyhow::anyhow!("stored seed: {e}")))
}

impl StoredPrize {
    /// What a winner of this prize is shown; `None` for a "no prize" slot.
    fn won(&self) -> Option<WonPrize> {
        self.reward.as_ref().map(|r| WonPrize {
            position: self.view.position,
            name: self.view.name.clone(),
            reward: r.spec(),
        })
    }
}

/// 409 `lottery_not_open` or `lottery_closed` unless the lottery takes entries at `now`.
fn require_open(stored: &Stored, now: i64) -> ApiResult<()> {
    match stored.status_at(now) {
        LotteryStatus::Scheduled => Err(ApiError::conflict(
            codes::LOTTERY_NOT_OPEN,
            format!("entries open at {}", micros_to_rfc3339(stored.opens_at)),
        )),
        LotteryStatus::Open => Ok(()),
        LotteryStatus::Closed | LotteryStatus::Drawn => Err(ApiError::conflict(
            codes::LOTTERY_CLOSED,
            "the lottery takes no more entries",
        )),
    }
}

/// Count the entry on the lottery's row, which holds the row's lock until the transaction
/// ends (see the module doc), and return its 0-based index. 409 `lottery_closed` when the
/// lottery was drawn meanwhile, `lottery_full` past [`MAX_ENTRIES`].
async fn number_entry(tx: &mut Tx, tenant_id: &TenantId, id: &LotteryId) -> ApiResult<i64> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        "UPDATE lottery SET entry_count = entry_count + 1 WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str())
        .push(" AND status = ")
        .bind(StoredStatus::Open.as_str())
        .push(" RETURNING entry_count");
    let count: i64 = match sql.query().fetch_optional(tx.conn()).await? {
        Some(row) => row.try_get("entry_count")?,
        None => {
            return Err(ApiError::conflict(
                codes::LOTTERY_CLOSED,
                "the lottery was drawn",
            ))
        }
    };
    if count > MAX_ENTRIES {
        return Err(ApiError::conflict(
            codes::LOTTERY_FULL,
            format!("a lottery takes at most {MAX_ENTRIES} entries"),
        ));
    }
    Ok(count - 1)
}

/// 409 `entry_limit_reached` when the member already holds `entries_per_member` entries.
async fn check_entry_limit(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &LotteryId,
    member: &MemberId,
    entries_per_member: i64,
) -> ApiResult<()> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT COUNT(*) AS n FROM lottery_entry WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND lottery_id = ")
        .bind(id.as_str())
        .push(" AND member_id = ")
        .bind(member.as_str());
    let held: i64 = sql.query().fetch_one(&mut *conn).await?.try_get("n")?;
    if held >= entries_per_member {
        return Err(ApiError::conflict(
            codes::ENTRY_LIMIT_REACHED,
            format!("the member has {held} entries (limit {entries_per_member})"),
        )
        .with_details(json!({ "entries_per_member": entries_per_member })));
    }
    Ok(())
}

async fn insert_entry(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &LotteryId,
    index: i64,
    member: &MemberId,
    now: i64,
) -> ApiResult<()> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO lottery_entry (tenant_id, lottery_id, entry_index, member_id, created_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(id.as_str())
        .push(", ")
        .bind(index)
        .push(", ")
        .bind(member.as_str())
        .push(", ")
        .bind(now)
        .push(")");
    sql.query().execute(tx.conn()).await?;
    Ok(())
}

/// Take one unit of a prize's stock, never below zero; false when none is left.
async fn take_prize_unit(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &LotteryId,
    position: i64,
) -> ApiResult<bool> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        "UPDATE lottery_prize SET remaining = remaining - 1 WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND lottery_id = ")
        .bind(id.as_str())
        .push(" AND position = ")
        .bind(position)
        .push(" AND remaining > 0");
    Ok(sql.query().execute(tx.conn()).await?.rows_affected() == 1)
}

/// Instant mode: the entry's slot is drawn from the seed and its index; a slot with a reward
/// still in stock takes a unit and is paid at once. Returns the prize won and its payout.
async fn draw_instant(
    tx: &mut Tx,
    tenant_id: &TenantId,
    stored: &Stored,
    index: i64,
    member: &MemberId,
) -> ApiResult<(Option<WonPrize>, Option<Value>)> {
    let id = &stored.id;
    let prizes = prizes(tx.conn(), tenant_id, id).await?;
    let weights: Vec<u64> = slots(&prizes).iter().map(|p| p.weight).collect();
    let seed = seed_bytes(stored)?;
    let pick = draw::instant_pick(&seed, u64::try_from(index).unwrap_or(0), &weights);
    let Some(won) = pick.map(|p| &prizes[p]).filter(|p| p.reward.is_some()) else {
        return Ok((None, None));
    };
    if !take_prize_unit(tx, tenant_id, id, won.view.position).await? {
        return Ok((None, None));
    }
    let payout = pay_prize(tx, tenant_id, id, index, member, won).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "lottery.won",
        Some(id.as_str()),
        json!({ "lottery_id": id, "member_id": member, "entry_index": index,
                "prize_position": won.view.position, "payout": payout }),
    ));
    Ok((won.won(), payout))
}

/// Enter a lottery. Instant mode draws at once. 409 `lottery_not_open`, `lottery_closed`,
/// `entry_limit_reached`, `lottery_full` or `insufficient_points`.
#[utoipa::path(post, path = "/v1/lotteries/{id}/entries", tag = "community",
    params(("id" = String, Path)), request_body = EntryRequest,
    responses((status = 201, body = Entry), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn enter(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<EntryRequest>,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    let id = lottery_id(&id)?;
    let member = body_member_id(&request.member_id, "member")?;
    let tenant = &auth.tenant_id;
    let mut tx = state.begin().await?;
    let stored = fetch(tx.conn(), tenant, &id).await?;
    members::store::require_active(tx.conn(), tenant, &member).await?;
    let now = to_micros(tx.now());
    require_open(&stored, now)?;
    let index = number_entry(&mut tx, tenant, &id).await?;
    check_entry_limit(tx.conn(), tenant, &id, &member, stored.entries_per_member).await?;
    reward::charge_points(
        &mut tx,
        tenant,
        &member,
        stored.entry_cost_points,
        &format!("lottery:{id}:{index}"),
        "lottery_entry",
        &format!("lottery:{id}"),
    )
    .await?;
    insert_entry(&mut tx, tenant, &id, index, &member, now).await?;
    tx.emit(NewEvent::new(
        tenant,
        "lottery.entered",
        Some(id.as_str()),
        json!({ "lottery_id": id, "member_id": member, "entry_index": index }),
    ));
    let (prize, payout) = match stored.mode {
        LotteryMode::Instant => draw_instant(&mut tx, tenant, &stored, index, &member).await?,
        LotteryMode::Draw => (None, None),
    };
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Entry {
            lottery_id: id,
            entry_index: index,
            member_id: member,
            prize,
            payout,
        }),
    ))
}

/// Every entry in order: (member, prize position won, payout made at entry or at the draw).
async fn entries(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &LotteryId,
) -> ApiResult<Vec<StoredEntry>> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT member_id, prize_position, payout FROM lottery_entry WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND lottery_id = ")
        .bind(id.as_str())
        .push(" ORDER BY entry_index");
    Ok(sql
        .query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(StoredEntry::from_row)
        .collect::<Result<_, _>>()?)
}

/// One stored entry.
struct StoredEntry {
    member_id: String,
    prize: Option<usize>,
    payout: Option<Value>,
}

impl StoredEntry {
    fn from_row(row: &AnyRow) -> Result<StoredEntry, sqlx::Error> {
        let prize: Option<i64> = row.try_get("prize_position")?;
        let payout: Option<String> = row.try_get("payout")?;
        Ok(StoredEntry {
            member_id: row.try_get("member_id")?,
            prize: prize.and_then(|p| usize::try_from(p).ok()),
            payout: payout.and_then(|p| serde_json::from_str(&p).ok()),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DrawnWinner {
    pub member_id: String,
    pub prize: Option<WonPrize>,
    #[schema(value_type = Option<Object>)]
    pub payout: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DrawResult {
    /// Member ids of the winners, in draw order (instant mode: of each winning entry).
    pub winners: Vec<String>,
    /// The revealed seed (hex).
    pub seed: String,
    pub commitment: String,
    pub prizes: Vec<DrawnWinner>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DrawQuery {
    /// Draw (or close) before `closes_at`, cutting the entry window short. Without it an
    /// early draw is refused, so members who were promised the window get all of it; the
    /// `lottery.drawn` event records `closed_early`.
    pub close_early: Option<bool>,
}

/// Close the lottery to entries: `open` becomes `drawn` once; 409 `already_drawn` after.
async fn mark_drawn(tx: &mut Tx, tenant_id: &TenantId, id: &LotteryId, now: i64) -> ApiResult<()> {
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE lottery SET status = ");
    sql.bind(StoredStatus::Drawn.as_str())
        .push(", drawn_at = ")
        .bind(now)
        .push(" WHERE tenant_id = ")
        .bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str())
        .push(" AND status = ")
        .bind(StoredStatus::Open.as_str());
    if sql.query().execute(tx.conn()).await?.rows_affected() == 0 {
        return Err(ApiError::conflict(
            codes::ALREADY_DRAWN,
            "this lottery was drawn already",
        ));
    }
    Ok(())
}

/// What a draw decided.
struct Outcome {
    /// Member ids of the winners, in draw order (instant mode: of each winning entry).
    winners: Vec<String>,
    /// What each winner is shown.
    drawn: Vec<DrawnWinner>,
    /// The prize slot of each winner (draw mode) or of each entry (instant mode), as the
    /// proof lists them.
    outcomes: Vec<Option<usize>>,
}

/// Draw mode: draw `winners` distinct members from the entries, give out the prizes in order
/// and pay them. 409 `not_enough_entries` when fewer members entered.
async fn draw_winners(
    tx: &mut Tx,
    tenant_id: &TenantId,
    stored: &Stored,
    seed: &[u8],
    prizes: &[StoredPrize],
    entries: &[StoredEntry],
) -> ApiResult<Outcome> {
    let members: Vec<String> = entries.iter().map(|e| e.member_id.clone()).collect();
    let distinct = members
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let wanted = usize::try_from(stored.winners).unwrap_or(0);
    if distinct < wanted {
        return Err(ApiError::conflict(
            codes::NOT_ENOUGH_ENTRIES,
            format!("{distinct} members entered; the draw needs {wanted}"),
        )
        .with_details(json!({ "entrants": distinct, "winners": wanted })));
    }
    let chosen = draw::draw(seed, &members, wanted);
    let outcomes = draw::assign_prizes(&slots(prizes), chosen.len());
    let (mut winners, mut drawn) = (Vec::new(), Vec::new());
    for (entry_index, prize) in chosen.iter().zip(&outcomes) {
        let member = MemberId::from_db(members[*entry_index].clone());
        let index = i64::try_from(*entry_index).unwrap_or(0);
        let won = prize.map(|p| &prizes[p]);
        let payout = match won {
            Some(won) => pay_prize(tx, tenant_id, &stored.id, index, &member, won).await?,
            None => None,
        };
        drawn.push(DrawnWinner {
            member_id: member.to_string(),
            prize: won.and_then(StoredPrize::won),
            payout,
        });
        winners.push(member.to_string());
    }
    Ok(Outcome {
        winners,
        drawn,
        outcomes,
    })
}

/// Instant mode: every prize was drawn and paid at entry; the winners are those entries.
fn instant_winners(prizes: &[StoredPrize], entries: &[StoredEntry]) -> Outcome {
    let (mut winners, mut drawn) = (Vec::new(), Vec::new());
    for entry in entries {
        if let Some(p) = entry.prize {
            winners.push(entry.member_id.clone());
            drawn.push(DrawnWinner {
                member_id: entry.member_id.clone(),
                prize: prizes[p].won(),
                // Instant prizes were paid at entry: show that payout.
                payout: entry.payout.clone(),
            });
        }
    }
    Outcome {
        winners,
        drawn,
        outcomes: entries.iter().map(|e| e.prize).collect(),
    }
}

/// Keep the winners and outcomes on the lottery, for its view and its proof.
async fn store_result(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &LotteryId,
    outcome: &Outcome,
) -> ApiResult<()> {
    let result = json!({ "winners": outcome.winners, "outcomes": outcome.outcomes });
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE lottery SET result = ");
    sql.bind(result.to_string())
        .push(" WHERE tenant_id = ")
        .bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    sql.query().execute(tx.conn()).await?;
    Ok(())
}

/// Draw the winners (draw mode: needs at least `winners` distinct entrants) or close an
/// instant lottery. Closes the lottery to entries and reveals the seed; a second call is
/// 409 `already_drawn`. Before `closes_at` only with `?close_early=true` (else 409
/// `lottery_still_open`).
#[utoipa::path(post, path = "/v1/lotteries/{id}/draw", tag = "community",
    params(("id" = String, Path), DrawQuery),
    responses((status = 200, body = DrawResult), (status = 404),
              (status = 409, description = "already_drawn, not_enough_entries or lottery_still_open")),
    security(("api_key" = [])))]
async fn draw_lottery(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<DrawQuery>,
) -> ApiResult<Json<DrawResult>> {
    let id = lottery_id(&id)?;
    let tenant = &auth.tenant_id;
    let mut tx = state.begin().await?;
    let stored = fetch(tx.conn(), tenant, &id).await?;
    let now = to_micros(tx.now());
    let closed_early = now < stored.closes_at;
    if closed_early && query.close_early != Some(true) && stored.status != StoredStatus::Drawn {
        return Err(ApiError::conflict(
            codes::LOTTERY_STILL_OPEN,
            "entries are open until closes_at; draw then, or pass close_early=true",
        )
        .with_details(json!({ "closes_at": micros_to_rfc3339(stored.closes_at) })));
    }
    mark_drawn(&mut tx, tenant, &id, now).await?;
    let seed = seed_bytes(&stored)?;
    let prizes = prizes(tx.conn(), tenant, &id).await?;
    let entries = entries(tx.conn(), tenant, &id).await?;
    let outcome = match stored.mode {
        LotteryMode::Draw => {
            draw_winners(&mut tx, tenant, &stored, &seed, &prizes, &entries).await?
        }
        LotteryMode::Instant => instant_winners(&prizes, &entries),
    };
    store_result(&mut tx, tenant, &id, &outcome).await?;
    tx.emit(NewEvent::new(
        tenant,
        "lottery.drawn",
        Some(id.as_str()),
        json!({ "lottery_id": id, "winners": outcome.winners, "seed": stored.seed,
                "commitment": stored.commitment, "closed_early": closed_early }),
    ));
    tx.commit().await?;
    Ok(Json(DrawResult {
        winners: outcome.winners,
        seed: stored.seed,
        commitment: stored.commitment,
        prizes: outcome.drawn,
    }))
}

/// Everything needed to check the result: commitment, seed, the ordered entries, the
/// winners and the algorithm. 409 `not_revealed` until the draw (instant mode: until closed).
#[utoipa::path(get, path = "/v1/lotteries/{id}/proof", tag = "community",
    params(("id" = String, Path)),
    responses((status = 200, body = Proof), (status = 404), (status = 409, description = "not_revealed")),
    security(("api_key" = [])))]
async fn proof(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Proof>> {
    let id = lottery_id(&id)?;
    let tenant = &auth.tenant_id;
    let mut conn = state.db.read().acquire().await?;
    let stored = fetch(&mut conn, tenant, &id).await?;
    if !stored.revealed(to_micros(state.clock.now())) {
        return Err(ApiError::conflict(
            codes::NOT_REVEALED,
            "the seed is revealed with the result: after the draw (instant mode: after closing)",
        ));
    }
    let prizes = prizes(&mut conn, tenant, &id).await?;
    let entries = entries(&mut conn, tenant, &id).await?;
    let (winners, outcomes) = if stored.mode == LotteryMode::Draw {
        let result: Value = stored
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("drawn lottery without result")))?;
        (
            serde_json::from_value(result["winners"].clone()).map_err(ApiError::internal)?,
            serde_json::from_value(result["outcomes"].clone()).map_err(ApiError::internal)?,
        )
    } else {
        let winners = entries
            .iter()
            .filter(|e| e.prize.is_some())
            .map(|e| e.member_id.clone())
            .collect();
        (winners, entries.iter().map(|e| e.prize).collect())
    };
    Ok(Json(Proof {
        lottery_id: stored.id.to_string(),
        mode: stored.mode.as_str().into(),
        algorithm: draw::ALGORITHM_DESCRIPTION.into(),
        commitment: stored.commitment,
        seed: stored.seed,
        winners_requested: u64::try_from(stored.winners).unwrap_or(0),
        entries: entries.into_iter().map(|e| e.member_id).collect(),
        winners,
        prizes: slots(&prizes),
        outcomes,
    }))
}
