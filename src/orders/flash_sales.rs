//! Flash sales (秒杀): a few hundred units at a low price, released to everyone at once.
//!
//! A flash sale has its own stock, separate from the product's: `reserved` counts units in
//! unpaid orders, `sold` units in paid ones, `available = stock − sold − reserved`. Buying
//! goes through the batcher ([`crate::common::batcher`]): concurrent requests are decided
//! together in one transaction that reads the sale row once (locked on PostgreSQL), the
//! buyers and the units each holds so far, decides each request in arrival order in memory,
//! inserts the orders and updates the sale row once (on a SQLite file as one blocking call on
//! the direct writer, module `direct`). So the rush costs one commit per batch, not one per
//! buyer, and exactness comes from the database: a second process's batch waits for the row
//! lock and then sees the first one's orders.
//!
//! The orders are ordinary orders (`campaign_kind = flash_sale`) with a payment deadline;
//! paying moves units from reserved to sold, expiry or cancellation returns them to available
//! ([`FlashSaleHooks`], which the order life cycle calls).
//!
//! Most of a rush's requests come after the last unit is gone. Each batch tells the node's
//! [`SaleGate`] what it read under the sale's lock, and the handler asks the gate first: a sale
//! this node has seen sold out, not yet open or ended is refused from memory without touching
//! the database, and the gate looks again when units come back (see
//! [`super::flash_sale_gate`] for how a node learns of its own and of other nodes' returns).
//! The naive path of the benchmark bypasses the gate.

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

use super::campaign::{CampaignHooks, CampaignOrder};
use super::claims::{self, Buyers, Campaign};
use super::flash_sale_gate::{self, ended, not_started, sold_out, SaleGate, Seen};
use super::model::{self, Order, OrderLine, OrderStatus};
use super::products;
use super::store::{self, NewOrder};
use crate::common::auth::Auth;
use crate::common::batcher::{self, Batcher};
use crate::common::clock::Clock;
use crate::common::db::{Backend, Db, Tx};
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{FlashSaleId, MemberId, OrderId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::price;
use crate::common::sql::{backend_of, Sql};
use crate::common::state::state_enum;
use crate::common::time::{instant_field, micros_to_rfc3339, to_micros};
use crate::members;
use crate::tenants;
use crate::AppState;

mod direct;
mod naive;

/// `campaign_kind` of flash-sale orders.
pub const KIND: &str = "flash_sale";
/// Most requests decided in one transaction.
pub const MAX_BATCH: usize = 1000;
/// Most units one request may buy.
pub const MAX_QTY: i64 = 100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_flash_sale, list_flash_sales))
        .routes(routes!(get_flash_sale))
        .routes(routes!(buy))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlashSale {
    pub product_id: String,
    /// Flash price per unit (fen).
    pub price: i64,
    /// Units for sale, separate from the product's stock.
    pub stock: i64,
    /// Most units one member may hold (default 1).
    pub per_member_limit: Option<i64>,
    /// RFC 3339; default now.
    pub starts_at: Option<String>,
    /// RFC 3339; after `starts_at`.
    pub ends_at: String,
    /// Seconds a buyer has to pay (default 900).
    pub payment_timeout_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlashSale {
    pub id: String,
    pub product_id: String,
    pub price: i64,
    pub stock: i64,
    /// Units in paid orders.
    pub sold: i64,
    /// Units in unpaid orders (return to available if not paid in time).
    pub reserved: i64,
    pub available: i64,
    pub per_member_limit: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub payment_timeout_secs: i64,
    /// `scheduled`, `running`, `sold_out` or `ended`, at the time of the request.
    pub status: FlashSaleStatus,
    pub created_at: String,
}

state_enum! {
    /// Where a flash sale is at a given instant (derived from its times and counts, not
    /// stored).
    pub enum FlashSaleStatus {
        /// Before `starts_at`.
        Scheduled = "scheduled",
        /// Selling.
        Running = "running",
        /// Running, with no unit available (unpaid orders may still free some).
        SoldOut = "sold_out",
        /// At or after `ends_at`.
        Ended = "ended",
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyRequest {
    pub member_id: String,
    /// Units (default 1).
    pub qty: Option<i64>,
}

/// The order a buyer got.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlacedOrder {
    pub order_id: String,
    #[serde(flatten)]
    pub order: Order,
}

struct SaleRow {
    id: FlashSaleId,
    product_id: String,
    price: i64,
    stock: i64,
    reserved: i64,
    sold: i64,
    per_member_limit: i64,
    starts_at: i64,
    ends_at: i64,
    payment_timeout_secs: i64,
    created_at: i64,
}

const COLUMNS: &str = "id, product_id, price, stock, reserved, sold, per_member_limit, \
    starts_at, ends_at, payment_timeout_secs, created_at";

fn sale_from_row(row: &AnyRow) -> Result<SaleRow, sqlx::Error> {
    Ok(SaleRow {
        id: FlashSaleId::from_db(row.try_get("id")?),
        product_id: row.try_get("product_id")?,
        price: row.try_get("price")?,
        stock: row.try_get("stock")?,
        reserved: row.try_get("reserved")?,
        sold: row.try_get("sold")?,
        per_member_limit: row.try_get("per_member_limit")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        payment_timeout_secs: row.try_get("payment_timeout_secs")?,
        created_at: row.try_get("created_at")?,
    })
}

impl SaleRow {
    fn available(&self) -> i64 {
        self.stock - self.sold - self.reserved
    }

    /// Tell the node's gate what a batch read of this sale under its lock at `now`, before it
    /// granted anything; `generation` was taken before the read, so that units this node
    /// returned after it are noticed.
    fn tell(&self, gate: &SaleGate, tenant_id: &TenantId, generation: u64, now: i64) {
        let seen = Seen {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            available: self.available(),
            generation,
            now,
        };
        gate.saw(tenant_id, &self.id, seen);
    }

    /// The refusal of every claim while the sale is not running at `now` (not started, or
    /// ended); `None` while it runs.
    fn refused_while_closed(
        &self,
        claims: &[&Claim],
        now: i64,
    ) -> Option<Vec<ApiResult<PlacedOrder>>> {
        if now < self.starts_at {
            return Some(claims::refuse_all(claims, || not_started(self.starts_at)));
        }
        if now >= self.ends_at {
            return Some(claims::refuse_all(claims, ended));
        }
        None
    }

    fn view(&self, now: i64) -> FlashSale {
        let status = if now < self.starts_at {
            FlashSaleStatus::Scheduled
        } else if now >= self.ends_at {
            FlashSaleStatus::Ended
        } else if self.available() <= 0 {
            FlashSaleStatus::SoldOut
        } else {
            FlashSaleStatus::Running
        };
        FlashSale {
            id: self.id.to_string(),
            product_id: self.product_id.clone(),
            price: self.price,
            stock: self.stock,
            sold: self.sold,
            reserved: self.reserved,
            available: self.available(),
            per_member_limit: self.per_member_limit,
            starts_at: micros_to_rfc3339(self.starts_at),
            ends_at: micros_to_rfc3339(self.ends_at),
            payment_timeout_secs: self.payment_timeout_secs,
            status,
            created_at: micros_to_rfc3339(self.created_at),
        }
    }
}

async fn fetch_sale(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &FlashSaleId,
    lock: bool,
) -> ApiResult<Option<SaleRow>> {
    let lock = if lock && backend_of(conn) == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM flash_sale WHERE tenant_id = $1 AND id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(sale_from_row).transpose()?)
}

/// Create a flash sale.
#[utoipa::path(post, path = "/v1/flash-sales", tag = "orders", request_body = CreateFlashSale,
    responses((status = 201, body = FlashSale), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn create_flash_sale(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateFlashSale>,
) -> ApiResult<(StatusCode, Json<FlashSale>)> {
    if !(1..=products::MAX_STOCK).contains(&request.stock) {
        return Err(ApiError::validation("stock", "must be 1 to 1e9"));
    }
    let limit = request.per_member_limit.unwrap_or(1);
    if !(1..=MAX_QTY).contains(&limit) {
        return Err(ApiError::validation(
            "per_member_limit",
            format!("must be 1 to {MAX_QTY}"),
        ));
    }
    let timeout = request.payment_timeout_secs.unwrap_or(900);
    if !(1..=model::MAX_PAYMENT_TIMEOUT_SECS).contains(&timeout) {
        return Err(ApiError::validation(
            "payment_timeout_secs",
            format!("must be 1 to {}", model::MAX_PAYMENT_TIMEOUT_SECS),
        ));
    }
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    let zone = tenants::time_zone(tx.conn(), &auth.tenant_id).await?;
    let instant = |field: &str, text: &str| instant_field(field, text, &zone).map(to_micros);
    let starts_at = match &request.starts_at {
        Some(text) => instant("starts_at", text)?,
        None => now,
    };
    let ends_at = instant("ends_at", &request.ends_at)?;
    if ends_at <= starts_at {
        return Err(ApiError::validation("ends_at", "must be after starts_at"));
    }
    let product = products::fetch(tx.conn(), &auth.tenant_id, &request.product_id).await?;
    price::check_special(request.price, product.price)
        .map_err(|e| ApiError::validation("price", e.to_string()))?;
    let id = FlashSaleId::generate();
    sqlx::query(
        "INSERT INTO flash_sale (tenant_id, id, product_id, price, stock, reserved, sold, \
         per_member_limit, starts_at, ends_at, payment_timeout_secs, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7, $8, $9, $10, $10)",
    )
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .bind(product.id.as_str())
    .bind(request.price)
    .bind(request.stock)
    .bind(limit)
    .bind(starts_at)
    .bind(ends_at)
    .bind(timeout)
    .bind(now)
    .execute(tx.conn())
    .await?;
    let sale = fetch_sale(tx.conn(), &auth.tenant_id, &id, false)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("flash sale vanished")))?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "flash_sale.created",
        Some(id.as_str()),
        json!({ "flash_sale_id": id, "product_id": product.id, "stock": request.stock,
                "price": request.price }),
    ));
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(sale.view(now))))
}

/// A flash sale with its live counts.
#[utoipa::path(get, path = "/v1/flash-sales/{id}", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = FlashSale), (status = 404)), security(("api_key" = [])))]
async fn get_flash_sale(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FlashSale>> {
    let id = FlashSaleId::parse(&id).ok_or_else(|| ApiError::not_found("flash sale"))?;
    let mut conn = state.db.read().acquire().await?;
    let sale = fetch_sale(&mut conn, &auth.tenant_id, &id, false)
        .await?
        .ok_or_else(|| ApiError::not_found("flash sale"))?;
    Ok(Json(sale.view(to_micros(state.clock.now()))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlashSalePage {
    pub data: Vec<FlashSale>,
    pub next_cursor: Option<String>,
}

/// Flash sales, newest first.
#[utoipa::path(get, path = "/v1/flash-sales", tag = "orders", params(ListQuery),
    responses((status = 200, body = FlashSalePage)), security(("api_key" = [])))]
async fn list_flash_sales(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<FlashSalePage>> {
    let limit = pagination::limit(query.limit, 50, 200)?;
    let mut conn = state.db.read().acquire().await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT {COLUMNS} FROM flash_sale WHERE tenant_id = "),
    );
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = pagination::cursor(query.cursor.as_deref(), FlashSaleId::parse)? {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let now = to_micros(state.clock.now());
    let mut data: Vec<FlashSale> = rows
        .iter()
        .map(|r| sale_from_row(r).map(|s| s.view(now)))
        .collect::<Result<_, _>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |s| s.id.clone());
    Ok(Json(FlashSalePage { data, next_cursor }))
}

/// One buyer's request, as the batcher carries it.
pub struct Claim {
    pub tenant_id: TenantId,
    pub sale_id: FlashSaleId,
    pub member_id: MemberId,
    pub qty: i64,
}

/// Buy from a flash sale: an unpaid order holding the units until its payment deadline.
/// 409 `sold_out`, `limit_reached`, `not_started` or `ended`.
#[utoipa::path(post, path = "/v1/flash-sales/{id}/orders", tag = "orders",
    params(("id" = String, Path)), request_body = BuyRequest,
    responses((status = 201, body = PlacedOrder), (status = 404),
              (status = 409, description = "sold_out, limit_reached, not_started or ended"),
              (status = 422)),
    security(("api_key" = [])))]
async fn buy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<BuyRequest>,
) -> ApiResult<(StatusCode, Json<PlacedOrder>)> {
    let qty = request.qty.unwrap_or(1);
    if !(1..=MAX_QTY).contains(&qty) {
        return Err(ApiError::validation(
            "qty",
            format!("must be 1 to {MAX_QTY}"),
        ));
    }
    let member_id = members::member_id(&request.member_id)?;
    let sale_id = FlashSaleId::parse(&id).ok_or_else(|| ApiError::not_found("flash sale"))?;
    if state.commerce.naive_flash_sales.is_none() {
        let now = to_micros(state.clock.now());
        let gate = &state.commerce.flash_sale_gate;
        if let Some(refusal) = gate.refusal(&auth.tenant_id, &sale_id, now).await {
            return Err(refusal);
        }
    }
    let claim = Claim {
        tenant_id: auth.tenant_id,
        sale_id,
        member_id,
        qty,
    };
    let placed = match state.commerce.naive_flash_sales {
        None => state.commerce.flash_sales.submit(claim).await,
        Some(naive) => naive::decide(naive, &state.db, state.clock.as_ref(), claim).await,
    }?;
    Ok((StatusCode::CREATED, Json(placed)))
}

/// How the benchmark's naive side decides a purchase: one transaction per purchase, through
/// sqlx or on the direct SQLite writer ([`naive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naive {
    Sqlx,
    /// On the direct rusqlite writer where the database has one (a SQLite file); else as
    /// `Sqlx`.
    Direct,
}

/// Flash-sale purchases, decided a batch at a time.
pub struct Purchases {
    /// The node's memory of its sales, told what each batch read; none on the naive path.
    gate: Option<Arc<SaleGate>>,
}

impl Purchases {
    /// Purchases that teach nothing to any gate (the benchmark's naive path).
    pub fn naive() -> Self {
        Self { gate: None }
    }
}

#[async_trait::async_trait]
impl batcher::Decide for Purchases {
    type Request = Claim;
    type Outcome = PlacedOrder;

    async fn decide(
        &self,
        tx: &mut Tx,
        claims: &[Claim],
    ) -> Result<Vec<ApiResult<PlacedOrder>>, sqlx::Error> {
        claims::decide(self, tx, claims).await
    }
}

/// The batcher for flash-sale purchases, telling `gate` what its batches read.
pub fn start_batcher(
    db: Db,
    clock: Arc<dyn Clock>,
    gate: Arc<SaleGate>,
) -> Batcher<Claim, PlacedOrder> {
    let purchases = Arc::new(Purchases { gate: Some(gate) });
    Batcher::start(MAX_BATCH, move |claims: Vec<Claim>| {
        let (purchases, db, clock) = (purchases.clone(), db.clone(), clock.clone());
        async move { purchases.decide_batch(&db, clock.as_ref(), claims).await }
    })
}

impl Purchases {
    /// Decide a batch in one transaction: on a SQLite file on the direct writer
    /// ([`direct`]), else (and when that transaction fails) through sqlx
    /// ([`batcher::decide_batch`], which retries a batch and splits one that keeps failing).
    async fn decide_batch(
        &self,
        db: &Db,
        clock: &dyn Clock,
        claims: Vec<Claim>,
    ) -> Vec<ApiResult<PlacedOrder>> {
        if !db.has_direct() {
            return batcher::decide_batch(self, db, clock, &claims).await;
        }
        let claims = Arc::new(claims);
        let (batch, gate, now) = (claims.clone(), self.gate.clone(), clock.now());
        let decided = db
            .write_direct(move |tx| direct::decide_batch(tx, gate.as_deref(), &batch, now))
            .await;
        match decided {
            Some(Ok(outcomes)) => outcomes,
            failed => {
                if let Some(Err(error)) = failed {
                    tracing::warn!(%error, claims = claims.len(),
                        "flash-sale batch failed on the direct writer; deciding it through the pool");
                }
                batcher::decide_batch(self, db, clock, &claims).await
            }
        }
    }
}

#[async_trait::async_trait]
impl Campaign for Purchases {
    type Claim = Claim;
    type Target = FlashSaleId;
    type Outcome = PlacedOrder;

    fn target(claim: &Claim) -> (&TenantId, &FlashSaleId) {
        (&claim.tenant_id, &claim.sale_id)
    }

    /// One sale's purchases, under its row lock: refused all while the sale is not running,
    /// else each against the units left and the buyer's limit; the orders granted are written
    /// at once and their units reserved with one conditional update.
    async fn decide_group(
        &self,
        tx: &mut Tx,
        tenant_id: &TenantId,
        sale_id: &FlashSaleId,
        claims: &[&Claim],
    ) -> Result<Vec<ApiResult<PlacedOrder>>, sqlx::Error> {
        let now = to_micros(tx.now());
        // Taken before the read, so that units returned by this node after it are noticed.
        let generation = self.gate.as_ref().map(|gate| gate.generation());
        let sale = match fetch_sale(tx.conn(), tenant_id, sale_id, true).await {
            Ok(Some(sale)) => sale,
            Ok(None) => {
                return Ok(claims::refuse_all(claims, || {
                    ApiError::not_found("flash sale")
                }))
            }
            Err(error) => return Err(batcher::abort(error)),
        };
        if let (Some(gate), Some(generation)) = (&self.gate, generation) {
            sale.tell(gate, tenant_id, generation, now);
        }
        if let Some(refusals) = sale.refused_while_closed(claims, now) {
            return Ok(refusals);
        }
        let members = claims.iter().map(|claim| &claim.member_id);
        let buyers = Buyers::load(tx.conn(), tenant_id, sale_id.as_str(), members).await?;
        let product = products::fetch(tx.conn(), tenant_id, &sale.product_id)
            .await
            .map_err(batcher::abort)?;
        let mut selling = Selling {
            available: sale.available(),
            expires_at: to_micros(tx.now() + SignedDuration::from_secs(sale.payment_timeout_secs)),
            sale: &sale,
            product: Listed::of(&product),
            buyers,
            now,
        };
        let (outcomes, rows) = selling.decide_all(claims);
        if !rows.is_empty() {
            reserve_units(tx, tenant_id, sale_id, &rows, now).await?;
        }
        Ok(outcomes)
    }
}

/// What one sale's purchases are decided against, updated as each is granted.
struct Selling<'a> {
    sale: &'a SaleRow,
    product: Listed<'a>,
    buyers: Buyers,
    /// Units not yet reserved or sold.
    available: i64,
    now: i64,
    /// The payment deadline of the orders granted.
    expires_at: i64,
}

/// What an order line takes from the sale's product.
struct Listed<'a> {
    id: &'a str,
    sku: &'a str,
    name: &'a str,
    price: i64,
}

impl<'a> Listed<'a> {
    fn of(product: &'a products::Product) -> Self {
        Listed {
            id: &product.id,
            sku: &product.sku,
            name: &product.name,
            price: product.price,
        }
    }
}

impl Selling<'_> {
    /// Decide a group's claims in arrival order: each one's outcome, and the orders granted.
    fn decide_all(&mut self, claims: &[&Claim]) -> (Vec<ApiResult<PlacedOrder>>, Vec<NewOrder>) {
        let mut rows = Vec::new();
        let outcomes = claims
            .iter()
            .map(|claim| {
                let row = self.decide(claim)?;
                let placed = placed_view(&row, self.now);
                rows.push(row);
                Ok(placed)
            })
            .collect();
        (outcomes, rows)
    }

    /// Refuse a purchase (404 member, 409 `limit_reached`, `sold_out`) or grant its order.
    fn decide(&mut self, claim: &Claim) -> ApiResult<NewOrder> {
        let member = &claim.member_id;
        let limit = self.sale.per_member_limit;
        if !self.buyers.is_active(member) {
            return Err(ApiError::not_found("member"));
        }
        if !self.buyers.within_limit(member, claim.qty, limit) {
            return Err(ApiError::conflict(
                codes::LIMIT_REACHED,
                format!("a member may buy at most {limit} of this flash sale"),
            ));
        }
        if claim.qty > self.available {
            return Err(sold_out(self.available));
        }
        self.available -= claim.qty;
        self.buyers.take(member, claim.qty);
        Ok(self.order(member, claim.qty))
    }

    /// The unpaid order of a purchase granted.
    fn order(&self, member_id: &MemberId, qty: i64) -> NewOrder {
        // Never above list, should the list price have been lowered since.
        let unit_price = price::charged(self.sale.price, self.product.price);
        let line = OrderLine {
            product_id: self.product.id.to_owned(),
            sku: self.product.sku.to_owned(),
            name: self.product.name.to_owned(),
            qty,
            unit_price,
            price_kind: KIND.to_owned(),
            line_total: unit_price * qty,
        };
        NewOrder {
            id: OrderId::generate(),
            member_id: member_id.clone(),
            source: KIND,
            status: OrderStatus::PendingPayment,
            total: line.line_total,
            items: serde_json::to_string(&[&line]).unwrap_or_default(),
            ordered_at: self.now,
            paid_at: None,
            subtotal: line.line_total,
            pricing: None,
            coupon_id: None,
            points_burned: 0,
            qty,
            expires_at: Some(self.expires_at),
            external_reference: None,
            campaign_kind: Some(KIND),
            campaign_id: Some(self.sale.id.to_string()),
            team_id: None,
        }
    }
}

/// Write the orders granted in one statement and reserve their units in the sale row.
async fn reserve_units(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sale_id: &FlashSaleId,
    rows: &[NewOrder],
    now: i64,
) -> Result<(), sqlx::Error> {
    let units: i64 = rows.iter().map(|r| r.qty).sum();
    store::insert(tx.conn(), tenant_id, rows, now).await?;
    let updated = sqlx::query(
        "UPDATE flash_sale SET reserved = reserved + $1, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND stock - sold - reserved >= $1",
    )
    .bind(units)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(sale_id.as_str())
    .execute(tx.conn())
    .await?;
    if updated.rows_affected() != 1 {
        // Cannot happen while the row is locked (or SQLite's single writer holds); refuse
        // the batch rather than oversell.
        return Err(sqlx::Error::Protocol(
            "flash-sale stock changed under the lock".into(),
        ));
    }
    for row in rows {
        store::emit_created(tx, tenant_id, row);
    }
    Ok(())
}

/// The view of an order just written.
pub(super) fn placed_view(row: &NewOrder, now: i64) -> PlacedOrder {
    PlacedOrder {
        order_id: row.id.to_string(),
        order: store::StoredOrder::from_new(row, now).view(),
    }
}

/// What the life cycle of flash-sale orders moves in their sale's counts (see
/// [`super::campaign`]).
pub struct FlashSaleHooks;

#[async_trait::async_trait]
impl CampaignHooks for FlashSaleHooks {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Paid: the order's units move from reserved to sold.
    async fn on_paid(&self, tx: &mut Tx, paid: &CampaignOrder<'_>) -> ApiResult<()> {
        let Some(sale_id) = paid.order.campaign_id.as_deref() else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE flash_sale SET reserved = reserved - $1, sold = sold + $1 \
             WHERE tenant_id = $2 AND id = $3",
        )
        .bind(paid.order.qty)
        .bind(paid.tenant_id.as_str())
        .bind(sale_id)
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    /// Closed unpaid: the units it reserved come back to available.
    async fn on_closed_unpaid(&self, tx: &mut Tx, closed: &CampaignOrder<'_>) -> ApiResult<()> {
        release(tx, closed, true).await
    }

    /// Refunded in full with restocking: the units it bought come back to available.
    async fn on_restocked(&self, tx: &mut Tx, refunded: &CampaignOrder<'_>) -> ApiResult<()> {
        release(tx, refunded, false).await
    }
}

/// Units come back to available: an unpaid order closed (`unpaid`) or a paid one refunded in
/// full with restocking. The commit tells this node's gate to look again.
async fn release(tx: &mut Tx, order: &CampaignOrder<'_>, unpaid: bool) -> ApiResult<()> {
    let Some(sale_id) = order.order.campaign_id.as_deref() else {
        return Ok(());
    };
    let column = if unpaid { "reserved" } else { "sold" };
    sqlx::query(&format!(
        "UPDATE flash_sale SET {column} = {column} - $1 WHERE tenant_id = $2 AND id = $3"
    ))
    .bind(order.order.qty)
    .bind(order.tenant_id.as_str())
    .bind(sale_id)
    .execute(tx.conn())
    .await?;
    tx.signal_on_commit(flash_sale_gate::UNITS_RETURNED);
    Ok(())
}
