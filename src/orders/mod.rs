//! Orders (订单), products and the sales mechanics built on them.
//!
//! - [`model`]: order types and the money rules (pricing order, refund arithmetic), pure.
//! - [`store`]: order rows and their conditional state changes.
//! - [`checkout`]: the life cycle — place, pay, cancel, expire, fulfil, complete, refund.
//! - [`flash_sales`] (秒杀) and [`group_buys`] (拼团): hot paths through the batcher, deciding
//!   their claims with one skeleton ([`claims`]). Their orders go through the life cycle, which
//!   moves their campaign through hooks ([`campaign`]) and never names them: they are listed
//!   once, in `CAMPAIGNS` below. [`flash_sale_gate`] is a node's memory of sold-out,
//!   unopened and ended flash sales, which refuses a rush's late requests without the database.
//! - [`waves`]: community group-buying orders (`"wave_id"` on `POST /v1/orders`), priced and
//!   stocked by the `neighbourhood` domain through `common::hooks::WaveHooks`.
//! - [`products`]: SKUs; [`import`]: order history in bulk for analytics, each order once
//!   ([`import_key`] says when two rows are the same order).

pub mod campaign;
pub mod checkout;
mod claims;
pub mod flash_sale_gate;
pub mod flash_sales;
pub mod group_buys;
pub mod import;
pub mod import_key;
pub mod model;
pub mod products;
pub mod store;
pub mod waves;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::OrderId;
use crate::common::json::Json;
use crate::common::pagination;
use crate::common::sql::Sql;
use crate::tenants::time_zone as tenant_zone;
use crate::AppState;
use campaign::CampaignHooks;
use checkout::{CreateOrder, PaymentRequest, Refund, RefundRequest};
use import::{Format, OnDuplicate, OrderImportReport};
use model::{Order, OrderStatus};

/// The campaigns whose orders go through [`checkout`], each found by its orders'
/// `campaign_kind`: the one list that names them for the life cycle (see [`campaign`]).
static CAMPAIGNS: &[&dyn CampaignHooks] = &[
    &flash_sales::FlashSaleHooks,
    &group_buys::GroupBuyHooks,
    &waves::WaveCampaign,
];

/// Install `CAMPAIGNS` for the order life cycle. Every entry point calls it, next to
/// `common::hooks::install`, before it acts; a second call is a no-op.
pub fn install_campaigns() {
    campaign::install(CAMPAIGNS);
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_orders))
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(pay_order))
        .routes(routes!(cancel_order))
        .routes(routes!(fulfil_order))
        .routes(routes!(complete_order))
        .routes(routes!(refund_order, list_refunds))
        .merge(products::routes())
        .merge(flash_sales::routes())
        .merge(group_buys::routes())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `csv` (default) or `cdnow`.
    pub format: Option<String>,
    /// What a row repeating an imported order (same `order_id`, or same member, instant,
    /// amount, currency and items) becomes: `skip` (default; counted in `skipped`) or
    /// `error` (a row error; the other rows are imported).
    pub on_duplicate: Option<String>,
}

/// Import order history: paid external orders, creating members by external id. Importing a
/// file again creates no order twice.
///
/// CSV (default): a header names the columns, in any order: `external_member_id` and
/// `ordered_at` (RFC 3339 instant, or `YYYY-MM-DD` = local midnight in the tenant's zone) are
/// needed; the money is `amount` in **yuan** (major units, at most two decimals: `29.90` =
/// 2990 fen) or `amount_fen` in **fen** (an integer, the unit of the JSON API), or both when
/// they agree (a row error when they do not); `currency` (default CNY), `items`
/// (`sku:qty|sku:qty`, a sku alone = quantity 1) and `order_id` (the order's id where it was
/// placed, stored as its `external_reference`) may be left out. With `?format=cdnow`, the
/// CDNOW files as they are.
///
/// A row repeating an order imported before, or an earlier row of the file, is skipped and
/// counted in `skipped` (`created` counts new orders only), or with `on_duplicate=error`
/// reported as a row error. Rows with an `order_id` repeat when the id does (the id wins over
/// the other fields); rows without one when member, instant, amount, currency and items do.
/// Bad rows are listed in `errors` with their line; the good rows are imported.
#[utoipa::path(post, path = "/v1/orders/import", tag = "orders", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = OrderImportReport), (status = 400), (status = 413),
              (status = 422)),
    security(("api_key" = [])))]
async fn import_orders(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> ApiResult<Json<OrderImportReport>> {
    let format = match query.format.as_deref() {
        None => Format::Csv,
        Some(text) => Format::parse(text)
            .ok_or_else(|| ApiError::validation("format", "must be csv or cdnow"))?,
    };
    let on_duplicate = match query.on_duplicate.as_deref() {
        None => OnDuplicate::Skip,
        Some(text) => OnDuplicate::parse(text)
            .ok_or_else(|| ApiError::validation("on_duplicate", "must be skip or error"))?,
    };
    let zone = {
        let mut conn = state.db.read().acquire().await?;
        tenant_zone(&mut conn, &auth.tenant_id).await?
    };
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let clock = state.clock.clone();
    let report = import::import(
        &state.db,
        move || clock.now(),
        &auth.tenant_id,
        &zone,
        import::Options {
            format,
            on_duplicate,
        },
        reader,
        |_| {},
    )
    .await?;
    Ok(Json(report))
}

/// Place an order: priced (see the pricing order in `orders::model`), stock reserved, pending
/// payment until its deadline. With `"wave_id"`, an order of a community group-buying wave at
/// the wave's prices and stock, for the member's leader (409 `wave_closed` after the cut-off,
/// 422 `leader_required` without a leader). With `"source": "external"` and `paid_at`, ingest an order
/// paid elsewhere (no stock; growth, points and analytics see it).
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = CreateOrder,
    responses((status = 201, body = Order), (status = 404),
              (status = 409, description = "out_of_stock, not_launched, wave_closed, leader_not_active, limit_reached, coupon or points conflicts"),
              (status = 422)),
    security(("api_key" = [])))]
async fn create_order(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateOrder>,
) -> ApiResult<(StatusCode, Json<Order>)> {
    let mut tx = state.begin().await?;
    let order = checkout::place_in(&mut tx, &auth.tenant_id, request).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// One order.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = Order), (status = 404)), security(("api_key" = [])))]
async fn get_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    let mut conn = state.db.read().acquire().await?;
    let stored = store::require(&mut conn, &auth.tenant_id, &id, false).await?;
    let mut order = stored.view();
    if stored.campaign_kind.as_deref() == Some(waves::KIND) {
        order.pickup = crate::common::hooks::registered()?
            .wave_hooks()?
            .pickup(&mut conn, &auth.tenant_id, stored.id.as_str())
            .await?;
    }
    Ok(Json(order))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderListQuery {
    pub member_id: Option<String>,
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub data: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// Orders, newest first; filter by member and status.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(OrderListQuery),
    responses((status = 200, body = OrderPage), (status = 422)), security(("api_key" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<OrderListQuery>,
) -> ApiResult<Json<OrderPage>> {
    let limit = pagination::limit(query.limit, 50, 200)?;
    let mut conn = state.db.read().acquire().await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!(
            "SELECT {} FROM customer_order WHERE tenant_id = ",
            store::COLUMNS
        ),
    );
    sql.bind(auth.tenant_id.as_str());
    if let Some(member) = &query.member_id {
        sql.push(" AND member_id = ").bind(member.as_str());
    }
    if let Some(status) = &query.status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    if let Some(cursor) = pagination::cursor(query.cursor.as_deref(), OrderId::parse)? {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut data: Vec<Order> = rows
        .iter()
        .map(|r| store::from_row(r).map(|o| o.view()))
        .collect::<Result<_, _>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |o| o.id.clone());
    Ok(Json(OrderPage { data, next_cursor }))
}

/// Pay an order (`wallet` through the ledger, or `external`). Idempotent on `reference`;
/// 409 `order_expired` after the deadline, `already_paid`, `insufficient_funds`.
#[utoipa::path(post, path = "/v1/orders/{id}/payments", tag = "orders",
    params(("id" = String, Path)), request_body = PaymentRequest,
    responses((status = 200, body = Order), (status = 404),
              (status = 409, description = "order_expired, order_cancelled, already_paid, insufficient_funds, payment_reference_reused"),
              (status = 422)),
    security(("api_key" = [])))]
async fn pay_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<PaymentRequest>,
) -> ApiResult<Json<Order>> {
    let mut tx = state.begin().await?;
    let order = checkout::pay_in(&mut tx, &auth.tenant_id, &id, &request).await?;
    tx.commit().await?;
    Ok(Json(order.view()))
}

/// Cancel an unpaid order: stock, coupon and reserved points go back.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = Order), (status = 404),
              (status = 409, description = "not_cancellable")),
    security(("api_key" = [])))]
async fn cancel_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    let mut tx = state.begin().await?;
    let order = store::require(tx.conn(), &auth.tenant_id, &id, true).await?;
    if order.status == OrderStatus::Cancelled {
        return Ok(Json(order.view()));
    }
    if order.status != OrderStatus::PendingPayment
        || !checkout::close_unpaid_in(&mut tx, &auth.tenant_id, &order, OrderStatus::Cancelled)
            .await?
    {
        return Err(crate::common::error::ApiError::conflict(
            codes::NOT_CANCELLABLE,
            format!(
                "a {} order cannot be cancelled; refund it instead",
                order.status
            ),
        ));
    }
    let order = store::require(tx.conn(), &auth.tenant_id, &id, false).await?;
    tx.commit().await?;
    Ok(Json(order.view()))
}

/// Mark a paid order fulfilled (shipped or picked up).
#[utoipa::path(post, path = "/v1/orders/{id}/fulfil", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = Order), (status = 404),
              (status = 409, description = "invalid_transition")),
    security(("api_key" = [])))]
async fn fulfil_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    let mut tx = state.begin().await?;
    let order = checkout::advance_in(&mut tx, &auth.tenant_id, &id, OrderStatus::Fulfilled).await?;
    tx.commit().await?;
    Ok(Json(order.view()))
}

/// Mark a fulfilled order completed (received).
#[utoipa::path(post, path = "/v1/orders/{id}/complete", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = Order), (status = 404),
              (status = 409, description = "invalid_transition")),
    security(("api_key" = [])))]
async fn complete_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Order>> {
    let mut tx = state.begin().await?;
    let order = checkout::advance_in(&mut tx, &auth.tenant_id, &id, OrderStatus::Completed).await?;
    tx.commit().await?;
    Ok(Json(order.view()))
}

/// Refund part or all of a paid order; ledger effects, points, coupon and stock are reversed
/// consistently (see the refund arithmetic in `orders::model`).
#[utoipa::path(post, path = "/v1/orders/{id}/refunds", tag = "orders",
    params(("id" = String, Path)), request_body = RefundRequest,
    responses((status = 201, body = Refund), (status = 404),
              (status = 409, description = "not_refundable, nothing_to_refund"), (status = 422)),
    security(("api_key" = [])))]
async fn refund_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<RefundRequest>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let mut tx = state.begin().await?;
    let refund = checkout::refund_in(&mut tx, &auth.tenant_id, &id, &request).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    pub data: Vec<Refund>,
}

/// The refunds of an order, oldest first.
#[utoipa::path(get, path = "/v1/orders/{id}/refunds", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = RefundList), (status = 404)), security(("api_key" = [])))]
async fn list_refunds(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RefundList>> {
    let mut conn = state.db.read().acquire().await?;
    store::require(&mut conn, &auth.tenant_id, &id, false).await?;
    Ok(Json(RefundList {
        data: checkout::refunds_of(&mut conn, &auth.tenant_id, &id).await?,
    }))
}
