//! Group buys (拼团): a price that unlocks when `team_size` friends buy together.
//!
//! A member opens a team (their own order is the first); others join it while it is open and
//! has slots. `slots_taken` counts members holding an order in the team (unpaid or paid),
//! `paid_count` the paid ones; the team succeeds when `paid_count` reaches `team_size`. An unpaid
//! order that expires frees its slot. When the team's time runs out unfilled, the expiry job
//! (a scheduler row, so it survives restarts and runs once across nodes) marks it `failed`,
//! cancels unpaid orders and refunds every paid member exactly once (wallet payments through
//! the ledger, external payments with a `refund.requested` event) — or, with
//! `virtual_completion`, marks it `succeeded` and the paid members get their goods.
//!
//! Joins go through the batcher: concurrent joins of one team are decided together under the
//! team's row lock, so the last slots go to exactly as many joiners as there are slots.
//!
//! What paying, closing and refunding a team order do to its team is [`GroupBuyHooks`], which
//! the order life cycle calls; closing a team cancels and refunds its orders through that life
//! cycle ([`super::checkout`]).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::campaign::{CampaignHooks, CampaignOrder, CampaignRefund};
use super::checkout::{self, RefundRequest};
use super::claims::{self, Buyers, Campaign};
use super::flash_sales::{placed_view, ListQuery, PlacedOrder};
use super::model::{self, OrderLine, OrderStatus};
use super::products;
use super::store::{self, NewOrder};
use crate::common::auth::Auth;
use crate::common::batcher::{self, Batcher};
use crate::common::clock::Clock;
use crate::common::db::{Backend, Db, Tx};
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{GroupBuyId, MemberId, OrderId, TeamId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::price;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::sql::{backend_of, Sql};
use crate::common::state::{state_column, state_enum};
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members;
use crate::AppState;

/// `campaign_kind` of group-buy orders.
pub const KIND: &str = "group_buy";
/// The scheduler job that closes a team at its deadline.
pub const TEAM_EXPIRY_JOB: &str = "group_buy.team_expiry";
pub const MAX_TEAM_SIZE: i64 = 100;
pub const MAX_DURATION_SECS: i64 = 30 * 24 * 3600;
const MAX_BATCH: usize = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_group_buy, list_group_buys))
        .routes(routes!(get_group_buy))
        .routes(routes!(open_team, list_teams))
        .routes(routes!(get_team))
        .routes(routes!(join_team))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupBuy {
    pub product_id: String,
    /// Group price per unit (fen).
    pub price: i64,
    /// Members needed, opener included (2 to 100).
    pub team_size: i64,
    /// How long a team stays open.
    pub duration_secs: i64,
    /// Most teams' worth of orders one member may hold in this group buy (default 1).
    pub per_member_limit: Option<i64>,
    /// An unfilled team at its deadline succeeds anyway (its paid members get the goods)
    /// instead of failing and refunding.
    #[serde(default)]
    pub virtual_completion: bool,
    /// Seconds each member has to pay (default 900, never past the team's deadline).
    pub payment_timeout_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupBuy {
    pub id: String,
    pub product_id: String,
    pub price: i64,
    pub team_size: i64,
    pub duration_secs: i64,
    pub per_member_limit: i64,
    pub virtual_completion: bool,
    pub payment_timeout_secs: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeamMember {
    pub member_id: String,
    pub order_id: String,
    pub order_status: OrderStatus,
    pub paid: bool,
    pub opener: bool,
    pub joined_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Team {
    pub id: String,
    pub group_buy_id: String,
    /// `open`, `succeeded` or `failed`.
    pub status: TeamStatus,
    pub team_size: i64,
    /// Members holding an order in the team (unpaid or paid).
    pub slots_taken: i64,
    pub slots_left: i64,
    pub paid_count: i64,
    pub members: Vec<TeamMember>,
    pub expires_at: String,
    pub created_at: String,
    pub closed_at: Option<String>,
}

state_enum! {
    /// Where a group-buy team is in its life.
    pub enum TeamStatus {
        /// Taking members until it fills or its deadline passes.
        Open = "open",
        /// Its paid members reached the team size (or its deadline passed with
        /// `virtual_completion` and at least one paid member).
        Succeeded = "succeeded",
        /// Its deadline passed unfilled: unpaid orders cancelled, paid ones refunded.
        Failed = "failed",
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    pub member_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenedTeam {
    pub team_id: String,
    pub order_id: String,
    pub team: Team,
}

struct BuyRow {
    id: GroupBuyId,
    product_id: String,
    price: i64,
    team_size: i64,
    duration_secs: i64,
    per_member_limit: i64,
    virtual_completion: bool,
    payment_timeout_secs: i64,
    created_at: i64,
}

fn buy_from_row(row: &AnyRow) -> Result<BuyRow, sqlx::Error> {
    Ok(BuyRow {
        id: GroupBuyId::from_db(row.try_get("id")?),
        product_id: row.try_get("product_id")?,
        price: row.try_get("price")?,
        team_size: row.try_get("team_size")?,
        duration_secs: row.try_get("duration_secs")?,
        per_member_limit: row.try_get("per_member_limit")?,
        virtual_completion: row.try_get::<i64, _>("virtual_completion")? == 1,
        payment_timeout_secs: row.try_get("payment_timeout_secs")?,
        created_at: row.try_get("created_at")?,
    })
}

impl BuyRow {
    fn view(&self) -> GroupBuy {
        GroupBuy {
            id: self.id.to_string(),
            product_id: self.product_id.clone(),
            price: self.price,
            team_size: self.team_size,
            duration_secs: self.duration_secs,
            per_member_limit: self.per_member_limit,
            virtual_completion: self.virtual_completion,
            payment_timeout_secs: self.payment_timeout_secs,
            created_at: micros_to_rfc3339(self.created_at),
        }
    }
}

const BUY_COLUMNS: &str = "id, product_id, price, team_size, duration_secs, per_member_limit, \
    virtual_completion, payment_timeout_secs, created_at";

async fn fetch_buy(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &GroupBuyId,
) -> ApiResult<BuyRow> {
    let row = sqlx::query(&format!(
        "SELECT {BUY_COLUMNS} FROM group_buy WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(buy_from_row(
        &row.ok_or_else(|| ApiError::not_found("group buy"))?,
    )?)
}

struct TeamRow {
    id: TeamId,
    group_buy_id: GroupBuyId,
    opener_member_id: MemberId,
    team_size: i64,
    status: TeamStatus,
    slots_taken: i64,
    paid_count: i64,
    expires_at: i64,
    created_at: i64,
    closed_at: Option<i64>,
}

const TEAM_COLUMNS: &str = "id, group_buy_id, opener_member_id, team_size, status, slots_taken, \
    paid_count, expires_at, created_at, closed_at";

fn team_from_row(row: &AnyRow) -> Result<TeamRow, sqlx::Error> {
    Ok(TeamRow {
        id: TeamId::from_db(row.try_get("id")?),
        group_buy_id: GroupBuyId::from_db(row.try_get("group_buy_id")?),
        opener_member_id: MemberId::from_db(row.try_get("opener_member_id")?),
        team_size: row.try_get("team_size")?,
        status: state_column(row, "status")?,
        slots_taken: row.try_get("slots_taken")?,
        paid_count: row.try_get("paid_count")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

async fn fetch_team(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &TeamId,
    lock: bool,
) -> Result<Option<TeamRow>, sqlx::Error> {
    let lock = if lock && backend_of(conn) == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT {TEAM_COLUMNS} FROM group_team WHERE tenant_id = $1 AND id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(team_from_row).transpose()
}

/// The team with its members (holders of unpaid or paid orders, and refunded ones of a
/// failed team).
async fn team_view(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    team: &TeamRow,
) -> ApiResult<Team> {
    let rows = sqlx::query(
        "SELECT id, member_id, status, created_at FROM customer_order \
         WHERE tenant_id = $1 AND team_id = $2 ORDER BY created_at, id",
    )
    .bind(tenant_id.as_str())
    .bind(team.id.as_str())
    .fetch_all(conn)
    .await?;
    let mut members = Vec::new();
    for row in rows {
        let status: OrderStatus = state_column(&row, "status")?;
        if matches!(status, OrderStatus::Cancelled | OrderStatus::Expired) {
            continue;
        }
        let member_id: String = row.try_get("member_id")?;
        members.push(TeamMember {
            opener: member_id == team.opener_member_id.as_str(),
            member_id,
            order_id: row.try_get("id")?,
            paid: status != OrderStatus::PendingPayment,
            order_status: status,
            joined_at: micros_to_rfc3339(row.try_get("created_at")?),
        });
    }
    Ok(Team {
        id: team.id.to_string(),
        group_buy_id: team.group_buy_id.to_string(),
        status: team.status,
        team_size: team.team_size,
        slots_taken: team.slots_taken,
        slots_left: (team.team_size - team.slots_taken).max(0),
        paid_count: team.paid_count,
        members,
        expires_at: micros_to_rfc3339(team.expires_at),
        created_at: micros_to_rfc3339(team.created_at),
        closed_at: team.closed_at.map(micros_to_rfc3339),
    })
}

/// Create a group buy.
#[utoipa::path(post, path = "/v1/group-buys", tag = "orders", request_body = CreateGroupBuy,
    responses((status = 201, body = GroupBuy), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn create_group_buy(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateGroupBuy>,
) -> ApiResult<(StatusCode, Json<GroupBuy>)> {
    if !(2..=MAX_TEAM_SIZE).contains(&request.team_size) {
        return Err(ApiError::validation(
            "team_size",
            format!("must be 2 to {MAX_TEAM_SIZE}"),
        ));
    }
    if !(60..=MAX_DURATION_SECS).contains(&request.duration_secs) {
        return Err(ApiError::validation(
            "duration_secs",
            format!("must be 60 to {MAX_DURATION_SECS}"),
        ));
    }
    let limit = request.per_member_limit.unwrap_or(1);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("per_member_limit", "must be 1 to 100"));
    }
    let timeout = request.payment_timeout_secs.unwrap_or(900);
    if !(1..=model::MAX_PAYMENT_TIMEOUT_SECS).contains(&timeout) {
        return Err(ApiError::validation(
            "payment_timeout_secs",
            format!("must be 1 to {}", model::MAX_PAYMENT_TIMEOUT_SECS),
        ));
    }
    let mut tx = state.begin().await?;
    let product = products::fetch(tx.conn(), &auth.tenant_id, &request.product_id).await?;
    price::check_special(request.price, product.price)
        .map_err(|e| ApiError::validation("price", e.to_string()))?;
    let id = GroupBuyId::generate();
    let now = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO group_buy (tenant_id, id, product_id, price, team_size, duration_secs, \
         per_member_limit, virtual_completion, payment_timeout_secs, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .bind(product.id.as_str())
    .bind(request.price)
    .bind(request.team_size)
    .bind(request.duration_secs)
    .bind(limit)
    .bind(i64::from(request.virtual_completion))
    .bind(timeout)
    .bind(now)
    .execute(tx.conn())
    .await?;
    let buy = fetch_buy(tx.conn(), &auth.tenant_id, &id).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "group_buy.created",
        Some(id.as_str()),
        json!({ "group_buy_id": id, "product_id": product.id, "team_size": request.team_size }),
    ));
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(buy.view())))
}

/// One group buy.
#[utoipa::path(get, path = "/v1/group-buys/{id}", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = GroupBuy), (status = 404)), security(("api_key" = [])))]
async fn get_group_buy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<GroupBuy>> {
    let id = GroupBuyId::parse(&id).ok_or_else(|| ApiError::not_found("group buy"))?;
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(
        fetch_buy(&mut conn, &auth.tenant_id, &id).await?.view(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupBuyPage {
    pub data: Vec<GroupBuy>,
    pub next_cursor: Option<String>,
}

/// Group buys, newest first.
#[utoipa::path(get, path = "/v1/group-buys", tag = "orders", params(ListQuery),
    responses((status = 200, body = GroupBuyPage), (status = 422)), security(("api_key" = [])))]
async fn list_group_buys(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<GroupBuyPage>> {
    let limit = pagination::limit(query.limit, 50, 200)?;
    let mut conn = state.db.read().acquire().await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT {BUY_COLUMNS} FROM group_buy WHERE tenant_id = "),
    );
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = pagination::cursor(query.cursor.as_deref(), GroupBuyId::parse)? {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut data: Vec<GroupBuy> = rows
        .iter()
        .map(|row| buy_from_row(row).map(|buy| buy.view()))
        .collect::<Result<_, _>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |buy| buy.id.clone());
    Ok(Json(GroupBuyPage { data, next_cursor }))
}

fn team_line(buy: &BuyRow, product: &products::Product) -> OrderLine {
    OrderLine {
        product_id: product.id.clone(),
        sku: product.sku.clone(),
        name: product.name.clone(),
        qty: 1,
        unit_price: price::charged(buy.price, product.price),
        price_kind: KIND.to_owned(),
        line_total: price::charged(buy.price, product.price),
    }
}

fn team_order(
    buy: &BuyRow,
    line: &OrderLine,
    member_id: &MemberId,
    team_id: &TeamId,
    now: i64,
    team_expires_at: i64,
) -> NewOrder {
    let pay_by = (now + buy.payment_timeout_secs * 1_000_000).min(team_expires_at);
    NewOrder {
        id: OrderId::generate(),
        member_id: member_id.clone(),
        source: KIND,
        status: OrderStatus::PendingPayment,
        total: line.line_total,
        items: serde_json::to_string(&[line]).unwrap_or_default(),
        ordered_at: now,
        paid_at: None,
        subtotal: line.line_total,
        pricing: None,
        coupon_id: None,
        points_burned: 0,
        qty: 1,
        expires_at: Some(pay_by),
        external_reference: None,
        campaign_kind: Some(KIND),
        campaign_id: Some(buy.id.to_string()),
        team_id: Some(team_id.clone()),
    }
}

fn limit_reached(limit: i64) -> ApiError {
    ApiError::conflict(
        codes::LIMIT_REACHED,
        format!(
            "a member may join at most {limit} {} of this group buy",
            if limit == 1 { "team" } else { "teams" }
        ),
    )
}

/// Open a team: the opener's order is its first.
#[utoipa::path(post, path = "/v1/group-buys/{id}/teams", tag = "orders",
    params(("id" = String, Path)), request_body = MemberRequest,
    responses((status = 201, body = OpenedTeam), (status = 404),
              (status = 409, description = "limit_reached")),
    security(("api_key" = [])))]
async fn open_team(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<MemberRequest>,
) -> ApiResult<(StatusCode, Json<OpenedTeam>)> {
    let member_id = members::member_id(&request.member_id)?;
    let tenant_id = &auth.tenant_id;
    let id = GroupBuyId::parse(&id).ok_or_else(|| ApiError::not_found("group buy"))?;
    let mut tx = state.begin().await?;
    let buy = fetch_buy(tx.conn(), tenant_id, &id).await?;
    members::store::require_active(tx.conn(), tenant_id, &member_id).await?;
    let order = open_in(&mut tx, tenant_id, &buy, &member_id).await?;
    let team_id = order
        .team_id
        .clone()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("team order without team")))?;
    let team = fetch_team(tx.conn(), tenant_id, &team_id, false)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("team vanished")))?;
    let team = team_view(tx.conn(), tenant_id, &team).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(OpenedTeam {
            team_id: team_id.to_string(),
            order_id: order.id.to_string(),
            team,
        }),
    ))
}

/// Open a team of `buy` for `member_id` inside `tx`: within the member's limit, the team row,
/// the opener's order in its first slot, the expiry job at the team's deadline and the events.
/// The opener's order.
async fn open_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    buy: &BuyRow,
    member_id: &MemberId,
) -> ApiResult<NewOrder> {
    // Serialise this member's joins of this group buy (PostgreSQL; SQLite has one writer).
    if backend_of(tx.conn()) == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{}:{}:{}", tenant_id, buy.id, member_id))
            .execute(tx.conn())
            .await?;
    }
    let held = store::held_in_campaign(tx.conn(), tenant_id, buy.id.as_str(), &[member_id]).await?;
    if held.get(member_id).copied().unwrap_or(0) + 1 > buy.per_member_limit {
        return Err(limit_reached(buy.per_member_limit));
    }
    let product = products::fetch(tx.conn(), tenant_id, &buy.product_id).await?;
    let now = to_micros(tx.now());
    let team_id = TeamId::generate();
    let expires_at = to_micros(tx.now() + SignedDuration::from_secs(buy.duration_secs));
    sqlx::query(
        "INSERT INTO group_team (tenant_id, id, group_buy_id, opener_member_id, team_size, \
         status, slots_taken, paid_count, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'open', 1, 0, $6, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(team_id.as_str())
    .bind(buy.id.as_str())
    .bind(member_id.as_str())
    .bind(buy.team_size)
    .bind(expires_at)
    .bind(now)
    .execute(tx.conn())
    .await?;
    let line = team_line(buy, &product);
    let order = team_order(buy, &line, member_id, &team_id, now, expires_at);
    store::insert(tx.conn(), tenant_id, std::slice::from_ref(&order), now).await?;
    scheduler::schedule(
        tx.conn(),
        tenant_id,
        &[NewJob {
            id: format!("team-expiry:{team_id}"),
            kind: TEAM_EXPIRY_JOB,
            due_at: expires_at,
            payload: json!({ "team_id": team_id }),
        }],
        now,
    )
    .await?;
    store::emit_created(tx, tenant_id, &order);
    tx.emit(NewEvent::new(
        tenant_id,
        "group_buy.team_opened",
        Some(team_id.as_str()),
        json!({ "team_id": team_id, "group_buy_id": buy.id, "member_id": member_id,
                "order_id": order.id, "expires_at": micros_to_rfc3339(expires_at) }),
    ));
    Ok(order)
}

/// A team with its members.
#[utoipa::path(get, path = "/v1/group-buys/teams/{team_id}", tag = "orders",
    params(("team_id" = String, Path)),
    responses((status = 200, body = Team), (status = 404)), security(("api_key" = [])))]
async fn get_team(
    State(state): State<AppState>,
    auth: Auth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Team>> {
    let team_id = TeamId::parse(&team_id).ok_or_else(|| ApiError::not_found("team"))?;
    let mut conn = state.db.read().acquire().await?;
    let team = fetch_team(&mut conn, &auth.tenant_id, &team_id, false)
        .await?
        .ok_or_else(|| ApiError::not_found("team"))?;
    Ok(Json(team_view(&mut conn, &auth.tenant_id, &team).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TeamsQuery {
    /// Only teams one can still join (open, slots left, not past the deadline), closest to
    /// completion first.
    pub joinable: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamPage {
    pub data: Vec<Team>,
}

/// Teams of a group buy; `joinable=true` lists those one can join, closest to completion
/// first (fewest slots left, then the earliest deadline).
#[utoipa::path(get, path = "/v1/group-buys/{id}/teams", tag = "orders",
    params(("id" = String, Path), TeamsQuery),
    responses((status = 200, body = TeamPage), (status = 404)), security(("api_key" = [])))]
async fn list_teams(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<TeamsQuery>,
) -> ApiResult<Json<TeamPage>> {
    let limit = pagination::limit(query.limit, 20, 100)?;
    let id = GroupBuyId::parse(&id).ok_or_else(|| ApiError::not_found("group buy"))?;
    let mut conn = state.db.read().acquire().await?;
    fetch_buy(&mut conn, &auth.tenant_id, &id).await?;
    let now = to_micros(state.clock.now());
    let rows = if query.joinable.unwrap_or(false) {
        sqlx::query(&format!(
            "SELECT {TEAM_COLUMNS} FROM group_team WHERE tenant_id = $1 AND group_buy_id = $2 \
             AND status = 'open' AND slots_taken < team_size AND expires_at > $3 \
             ORDER BY team_size - slots_taken, expires_at, id LIMIT $4"
        ))
        .bind(auth.tenant_id.as_str())
        .bind(id.as_str())
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
    } else {
        sqlx::query(&format!(
            "SELECT {TEAM_COLUMNS} FROM group_team WHERE tenant_id = $1 AND group_buy_id = $2 \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(auth.tenant_id.as_str())
        .bind(id.as_str())
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
    };
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let team = team_from_row(row)?;
        data.push(team_view(&mut conn, &auth.tenant_id, &team).await?);
    }
    Ok(Json(TeamPage { data }))
}

/// One join request, as the batcher carries it.
pub struct JoinClaim {
    pub tenant_id: TenantId,
    pub team_id: TeamId,
    pub member_id: MemberId,
}

/// Join a team: an unpaid order in it, or 409 `team_full`, `team_closed`, `limit_reached`
/// or `already_in_team`.
#[utoipa::path(post, path = "/v1/group-buys/teams/{team_id}/join", tag = "orders",
    params(("team_id" = String, Path)), request_body = MemberRequest,
    responses((status = 201, body = PlacedOrder), (status = 404),
              (status = 409, description = "team_full, team_closed, limit_reached")),
    security(("api_key" = [])))]
async fn join_team(
    State(state): State<AppState>,
    auth: Auth,
    Path(team_id): Path<String>,
    Json(request): Json<MemberRequest>,
) -> ApiResult<(StatusCode, Json<PlacedOrder>)> {
    let member_id = members::member_id(&request.member_id)?;
    let team_id = TeamId::parse(&team_id).ok_or_else(|| ApiError::not_found("team"))?;
    let placed = state
        .commerce
        .teams
        .submit(JoinClaim {
            tenant_id: auth.tenant_id,
            team_id,
            member_id,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

/// Team joins, decided a batch at a time.
pub struct Joins;

#[async_trait::async_trait]
impl batcher::Decide for Joins {
    type Request = JoinClaim;
    type Outcome = PlacedOrder;

    async fn decide(
        &self,
        tx: &mut Tx,
        claims: &[JoinClaim],
    ) -> Result<Vec<ApiResult<PlacedOrder>>, sqlx::Error> {
        claims::decide(self, tx, claims).await
    }
}

/// The batcher for team joins.
pub fn start_batcher(db: Db, clock: Arc<dyn Clock>) -> Batcher<JoinClaim, PlacedOrder> {
    Batcher::deciding(MAX_BATCH, Joins, db, clock)
}

#[async_trait::async_trait]
impl Campaign for Joins {
    type Claim = JoinClaim;
    type Target = TeamId;
    type Outcome = PlacedOrder;

    fn target(claim: &JoinClaim) -> (&TenantId, &TeamId) {
        (&claim.tenant_id, &claim.team_id)
    }

    /// One team's joins, under its row lock: refused all once the team is closed, else each
    /// against the slots left, the team's members and the buyer's limit; the orders granted
    /// are written at once and their slots taken with one conditional update.
    async fn decide_group(
        &self,
        tx: &mut Tx,
        tenant_id: &TenantId,
        team_id: &TeamId,
        claims: &[&JoinClaim],
    ) -> Result<Vec<ApiResult<PlacedOrder>>, sqlx::Error> {
        let now = to_micros(tx.now());
        let Some(team) = fetch_team(tx.conn(), tenant_id, team_id, true).await? else {
            return Ok(claims::refuse_all(claims, || ApiError::not_found("team")));
        };
        if team.status != TeamStatus::Open || now >= team.expires_at {
            return Ok(claims::refuse_all(claims, || {
                ApiError::conflict(codes::TEAM_CLOSED, "this team is no longer open")
                    .with_details(json!({ "status": team.status }))
            }));
        }
        let buy = fetch_buy(tx.conn(), tenant_id, &team.group_buy_id)
            .await
            .map_err(batcher::abort)?;
        let product = products::fetch(tx.conn(), tenant_id, &buy.product_id)
            .await
            .map_err(batcher::abort)?;
        let members = claims.iter().map(|claim| &claim.member_id);
        let buyers = Buyers::load(tx.conn(), tenant_id, buy.id.as_str(), members).await?;
        let mut joining = Joining {
            in_team: members_in_team(tx.conn(), tenant_id, team_id).await?,
            slots: team.team_size - team.slots_taken,
            line: team_line(&buy, &product),
            buy: &buy,
            team: &team,
            buyers,
            now,
        };
        let mut rows = Vec::new();
        let outcomes = claims
            .iter()
            .map(|claim| {
                let row = joining.decide(claim)?;
                let placed = placed_view(&row, now);
                rows.push(row);
                Ok(placed)
            })
            .collect();
        if !rows.is_empty() {
            take_slots(tx, tenant_id, team_id, &rows, now).await?;
        }
        Ok(outcomes)
    }
}

/// What one team's joins are decided against, updated as each is granted.
struct Joining<'a> {
    buy: &'a BuyRow,
    team: &'a TeamRow,
    line: OrderLine,
    buyers: Buyers,
    /// Members holding an order in the team.
    in_team: HashSet<MemberId>,
    slots: i64,
    now: i64,
}

impl Joining<'_> {
    /// Refuse a join (404 member, 409 `already_in_team`, `limit_reached`, `team_full`) or grant
    /// its order.
    fn decide(&mut self, claim: &JoinClaim) -> ApiResult<NewOrder> {
        let member = &claim.member_id;
        if !self.buyers.is_active(member) {
            return Err(ApiError::not_found("member"));
        }
        if self.in_team.contains(member) {
            return Err(ApiError::conflict(
                codes::ALREADY_IN_TEAM,
                "this member is in this team already",
            ));
        }
        if !self
            .buyers
            .within_limit(member, 1, self.buy.per_member_limit)
        {
            return Err(limit_reached(self.buy.per_member_limit));
        }
        if self.slots <= 0 {
            return Err(ApiError::conflict(
                codes::TEAM_FULL,
                "this team has no slot left",
            ));
        }
        self.slots -= 1;
        self.buyers.take(member, 1);
        self.in_team.insert(member.clone());
        let team = self.team;
        Ok(team_order(
            self.buy,
            &self.line,
            member,
            &team.id,
            self.now,
            team.expires_at,
        ))
    }
}

/// The members holding an order in the team (unpaid, paid, fulfilled or completed).
async fn members_in_team(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    team_id: &TeamId,
) -> Result<HashSet<MemberId>, sqlx::Error> {
    let members: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT member_id FROM customer_order WHERE tenant_id = $1 AND team_id = $2 \
         AND status IN {}",
        model::HOLDING_STATUSES
    ))
    .bind(tenant_id.as_str())
    .bind(team_id.as_str())
    .fetch_all(conn)
    .await?;
    Ok(members.into_iter().map(MemberId::from_db).collect())
}

/// Write the orders granted in one statement and take their slots in the team row.
async fn take_slots(
    tx: &mut Tx,
    tenant_id: &TenantId,
    team_id: &TeamId,
    rows: &[NewOrder],
    now: i64,
) -> Result<(), sqlx::Error> {
    store::insert(tx.conn(), tenant_id, rows, now).await?;
    let taken = sqlx::query(
        "UPDATE group_team SET slots_taken = slots_taken + $1 \
         WHERE tenant_id = $2 AND id = $3 AND status = 'open' \
         AND slots_taken + $1 <= team_size",
    )
    .bind(rows.len() as i64)
    .bind(tenant_id.as_str())
    .bind(team_id.as_str())
    .execute(tx.conn())
    .await?;
    if taken.rows_affected() != 1 {
        return Err(sqlx::Error::Protocol(
            "team slots changed under the lock".into(),
        ));
    }
    for row in rows {
        store::emit_created(tx, tenant_id, row);
        tx.emit(NewEvent::new(
            tenant_id,
            "group_buy.team_joined",
            Some(team_id.as_str()),
            json!({ "team_id": team_id, "member_id": row.member_id, "order_id": row.id }),
        ));
    }
    Ok(())
}

/// What the life cycle of team orders moves in their team (see [`super::campaign`]).
pub struct GroupBuyHooks;

#[async_trait::async_trait]
impl CampaignHooks for GroupBuyHooks {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Payment is allowed only while the team is open.
    async fn require_payable(&self, tx: &mut Tx, order: &CampaignOrder<'_>) -> ApiResult<()> {
        let Some(team_id) = &order.order.team_id else {
            return Ok(());
        };
        let team = fetch_team(tx.conn(), order.tenant_id, team_id, true)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("order of a missing team")))?;
        if team.status != TeamStatus::Open {
            return Err(ApiError::conflict(
                codes::TEAM_CLOSED,
                "this order's team is closed; it can no longer be paid",
            ));
        }
        Ok(())
    }

    /// A team order was paid: the team succeeds when its paid members reach the team size.
    async fn on_paid(&self, tx: &mut Tx, paid: &CampaignOrder<'_>) -> ApiResult<()> {
        let (tenant_id, order) = (paid.tenant_id, paid.order);
        let Some(team_id) = &order.team_id else {
            return Ok(());
        };
        let now = to_micros(tx.now());
        sqlx::query(
            "UPDATE group_team SET paid_count = paid_count + 1 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(team_id.as_str())
        .execute(tx.conn())
        .await?;
        let succeeded = sqlx::query(
            "UPDATE group_team SET status = 'succeeded', closed_at = $1 \
             WHERE tenant_id = $2 AND id = $3 AND status = 'open' AND paid_count >= team_size",
        )
        .bind(now)
        .bind(tenant_id.as_str())
        .bind(team_id.as_str())
        .execute(tx.conn())
        .await?;
        if succeeded.rows_affected() == 1 {
            tx.emit(NewEvent::new(
                tenant_id,
                "group_buy.team_succeeded",
                Some(team_id.as_str()),
                json!({ "team_id": team_id, "group_buy_id": order.campaign_id, "virtual": false }),
            ));
        }
        Ok(())
    }

    /// An unpaid team order was cancelled or expired: its slot frees while the team is open.
    async fn on_closed_unpaid(&self, tx: &mut Tx, closed: &CampaignOrder<'_>) -> ApiResult<()> {
        if let Some(team_id) = &closed.order.team_id {
            sqlx::query(
                "UPDATE group_team SET slots_taken = slots_taken - 1 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'open'",
            )
            .bind(closed.tenant_id.as_str())
            .bind(team_id.as_str())
            .execute(tx.conn())
            .await?;
        }
        Ok(())
    }

    /// A paid team order was refunded in full while the team is open: slot and payment free up.
    async fn on_refunded(&self, tx: &mut Tx, refund: &CampaignRefund<'_>) -> ApiResult<()> {
        let Some(team_id) = &refund.order.team_id else {
            return Ok(());
        };
        if !refund.full {
            return Ok(());
        }
        sqlx::query(
            "UPDATE group_team SET slots_taken = slots_taken - 1, paid_count = paid_count - 1 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'open'",
        )
        .bind(refund.tenant_id.as_str())
        .bind(team_id.as_str())
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}

/// The team's deadline: fail it and refund its paid members (or succeed it virtually).
/// Runs once: the team's status moves with a conditional UPDATE, each refund with its order's.
pub async fn team_expiry_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let team_id = job
        .payload
        .get("team_id")
        .and_then(serde_json::Value::as_str)
        .map(|id| TeamId::from_db(id.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("job without team_id"))?;
    let tenant_id = &job.tenant_id;
    let mut tx = state.begin().await?;
    let outcome = close_team(&mut tx, tenant_id, &team_id)
        .await
        .map_err(|e| anyhow::anyhow!("closing team {team_id}: {e}"))?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    if let Some(status) = outcome {
        tracing::info!(team = %team_id, %status, "group-buy team closed at its deadline");
    }
    Ok(())
}

async fn close_team(
    tx: &mut Tx,
    tenant_id: &TenantId,
    team_id: &TeamId,
) -> ApiResult<Option<TeamStatus>> {
    let Some(team) = fetch_team(tx.conn(), tenant_id, team_id, true).await? else {
        return Ok(None);
    };
    if team.status != TeamStatus::Open {
        return Ok(None);
    }
    let buy = fetch_buy(tx.conn(), tenant_id, &team.group_buy_id).await?;
    let now = to_micros(tx.now());
    let status = if buy.virtual_completion && team.paid_count > 0 {
        TeamStatus::Succeeded
    } else {
        TeamStatus::Failed
    };
    let moved = sqlx::query(
        "UPDATE group_team SET status = $1, closed_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status = 'open'",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(team_id.as_str())
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(None);
    }
    let order_ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM customer_order WHERE tenant_id = $1 AND team_id = $2 ORDER BY id",
    )
    .bind(tenant_id.as_str())
    .bind(team_id.as_str())
    .fetch_all(tx.conn())
    .await?;
    let mut refunded = 0;
    for order_id in order_ids {
        let order = store::require(tx.conn(), tenant_id, &order_id, true).await?;
        if order.status == OrderStatus::PendingPayment {
            checkout::close_unpaid_in(tx, tenant_id, &order, OrderStatus::Cancelled).await?;
        } else if status == TeamStatus::Failed
            && order.status == OrderStatus::Paid
            && order.refunded_amount < order.total
        {
            checkout::refund_in(
                tx,
                tenant_id,
                &order_id,
                &RefundRequest {
                    amount: None,
                    reason: "group buy team did not fill in time".into(),
                    reference: Some(format!("team-failed:{order_id}")),
                    restock: Some(false),
                },
            )
            .await?;
            refunded += 1;
        }
    }
    let kind = match status {
        TeamStatus::Failed => "group_buy.team_failed",
        TeamStatus::Open | TeamStatus::Succeeded => "group_buy.team_succeeded",
    };
    tx.emit(NewEvent::new(
        tenant_id,
        kind,
        Some(team_id.as_str()),
        json!({ "team_id": team_id, "group_buy_id": buy.id, "paid_count": team.paid_count,
                "refunded": refunded, "virtual": status == TeamStatus::Succeeded }),
    ));
    Ok(Some(status))
}
