//! The order life cycle: placing (checkout or an external order), paying, cancelling, payment
//! deadlines, fulfilment and refunds. Every step is one transaction that moves the order with a
//! conditional UPDATE on its status (so each transition happens once, whatever retries or
//! concurrent nodes do) together with its stock, coupon, points, wallet and campaign effects,
//! and emits an event.
//!
//! Payment deadlines are the orders' own `expires_at` column: [`expire_due`] runs on every
//! scheduler pass of every node, finds due unpaid orders through a partial index and closes
//! each with the same conditional UPDATE, so a deadline fires once across restarts and nodes
//! without a job row per order (a flash sale writes tens of thousands of unpaid orders a
//! minute; one job row each would double its writes).

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::model::{
    self, BurnTerms, CouponTerms, Order, OrderStatus, PriceInput, PricingError, RefundError,
};
use super::store::{self, NewOrder, StoredOrder};
use super::{flash_sales, group_buys, products};
use crate::common::db::Tx;
use crate::common::error::{is_unique_violation, ApiError, ApiResult};
use crate::common::events::NewEvent;
use crate::common::hooks;
use crate::common::ids::{MemberId, OrderId, OrderRefundId, TenantId};
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::{instant_field, micros_to_rfc3339, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::members;
use crate::membership::coupons::{self, model::CouponId};
use crate::membership::program::{self, tenant_zone};
use crate::membership::rules::tiers;
use crate::membership::stored_value::{self, SpendId};
use crate::tenants;

/// `POST /v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub member_id: String,
    pub items: Vec<ItemRequest>,
    /// A coupon of the member's to redeem on this order.
    pub coupon_id: Option<String>,
    /// Points to pay part of the order with (whole burn steps, within the burn cap).
    #[serde(default)]
    pub points_to_burn: i64,
    /// `checkout` (default): priced here, stock reserved, pending payment. `external`: placed
    /// and paid elsewhere (needs `paid_at`), ingested so that growth, points and analytics see
    /// it; no stock is taken.
    pub source: Option<String>,
    /// External orders: when it was paid (RFC 3339).
    pub paid_at: Option<String>,
    /// External orders: the amount paid (fen); defaults to the lines at list price.
    pub total: Option<i64>,
    /// External orders: the merchant's order number, ingested once.
    pub external_reference: Option<String>,
    /// Checkout orders: seconds to pay before the order expires (default 1800).
    pub payment_timeout_secs: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub product_id: String,
    pub qty: i64,
}

/// `POST /v1/orders/{id}/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// `wallet` (stored value, through the ledger) or `external` (the merchant's payment
    /// system confirms it was paid).
    pub method: String,
    /// The payment's reference; a retry with the same reference replays, never pays twice.
    pub reference: String,
}

/// `POST /v1/orders/{id}/refunds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OrderRefundRequest)]
pub struct RefundRequest {
    /// Fen to refund; all that remains when absent.
    pub amount: Option<i64>,
    pub reason: String,
    /// Idempotency reference for this refund.
    pub reference: Option<String>,
    /// Put the units back in stock (only with a full refund). Default: true until the order is
    /// fulfilled, false after.
    pub restock: Option<bool>,
}

/// One refund of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OrderRefund)]
pub struct Refund {
    pub id: String,
    pub order_id: String,
    pub amount: i64,
    pub reason: String,
    pub reference: Option<String>,
    /// Burnt points given back by this refund.
    pub points_returned: i64,
    pub restocked: bool,
    pub coupon_returned: bool,
    /// The order after the refund.
    pub order_status: OrderStatus,
    pub refunded_amount: i64,
    pub created_at: String,
}

fn source_of(request: &CreateOrder) -> ApiResult<&'static str> {
    match request.source.as_deref() {
        None | Some("checkout") => Ok("checkout"),
        Some("external") => Ok("external"),
        Some(_) => Err(ApiError::validation(
            "source",
            "must be checkout or external",
        )),
    }
}

/// Validated basket: product ids with quantities, no duplicates.
fn basket(items: &[ItemRequest]) -> ApiResult<Vec<(String, i64)>> {
    if items.is_empty() || items.len() > model::MAX_LINES {
        return Err(ApiError::validation(
            "items",
            format!("must hold 1 to {} lines", model::MAX_LINES),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .map(|item| {
            if !(1..=model::MAX_QTY).contains(&item.qty) {
                return Err(ApiError::validation(
                    "items.qty",
                    format!("must be 1 to {}", model::MAX_QTY),
                ));
            }
            if !seen.insert(item.product_id.as_str()) {
                return Err(ApiError::validation(
                    "items.product_id",
                    "each product may appear once",
                ));
            }
            Ok((item.product_id.clone(), item.qty))
        })
        .collect()
}

fn timeout_secs(requested: Option<i64>) -> ApiResult<i64> {
    match requested {
        None => Ok(model::DEFAULT_PAYMENT_TIMEOUT_SECS),
        Some(s) if (1..=model::MAX_PAYMENT_TIMEOUT_SECS).contains(&s) => Ok(s),
        Some(_) => Err(ApiError::validation(
            "payment_timeout_secs",
            format!("must be 1 to {}", model::MAX_PAYMENT_TIMEOUT_SECS),
        )),
    }
}

/// Available points of a member, read inside the transaction.
async fn available_points(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<i64> {
    Ok(
        ledger::store::available(conn, tenant_id, &Address::member(member_id), Asset::Points)
            .await?,
    )
}

fn burn_id(order_id: &OrderId) -> String {
    format!("order-burn:{order_id}")
}

/// Place an order inside `tx` (checkout or external) and return it.
pub async fn place_in(tx: &mut Tx, tenant_id: &TenantId, request: CreateOrder) -> ApiResult<Order> {
    let source = source_of(&request)?;
    let member_id = members::member_id(&request.member_id)?;
    let lines = basket(&request.items)?;
    members::store::require_active(tx.conn(), tenant_id, &member_id).await?;
    let member = members::store::require(tx.conn(), tenant_id, &member_id).await?;
    let now = tx.now();
    let now_micros = to_micros(now);
    let settings = program::load_settings(tx.conn(), tenant_id).await?;
    let zone = tenant_zone(tx.conn(), tenant_id).await?;
    let member_day = program::is_member_day(&settings, now, &zone);

    let mut inputs = Vec::with_capacity(lines.len());
    for (product_id, qty) in &lines {
        let product = products::fetch(tx.conn(), tenant_id, product_id).await?;
        if source == "checkout" {
            if let Some(launch) = product
                .launch_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            {
                let access = program::may_buy(&settings, member.tier.as_deref(), launch, now);
                if !access.may_buy_now {
                    return Err(ApiError::conflict(
                        "not_launched",
                        format!(
                            "{} opens to this member at {}",
                            product.sku, access.opens_at
                        ),
                    )
                    .with_details(
                        json!({ "product_id": product.id, "opens_at": access.opens_at }),
                    ));
                }
            }
        }
        inputs.push(PriceInput {
            member_day_price: if source == "checkout" {
                program::member_day_price(&settings, &product.id, now, &zone)
            } else {
                None
            },
            member_price: if source == "checkout" {
                product.member_price
            } else {
                None
            },
            product_id: product.id,
            sku: product.sku,
            name: product.name,
            qty: *qty,
            list_price: product.price,
        });
    }
    let order_id = OrderId::generate();
    let qty: i64 = lines.iter().map(|(_, q)| q).sum();

    if source == "external" {
        return place_external(tx, tenant_id, &member_id, request, inputs, order_id, qty).await;
    }
    if request.paid_at.is_some() || request.total.is_some() || request.external_reference.is_some()
    {
        return Err(ApiError::validation(
            "source",
            "paid_at, total and external_reference are for source external",
        ));
    }
    let timeout = timeout_secs(request.payment_timeout_secs)?;
    if request.points_to_burn < 0 {
        return Err(ApiError::validation("points_to_burn", "must be 0 or more"));
    }

    // Coupon terms (redeemed below, once the amount it applies to is known).
    let coupon = match &request.coupon_id {
        None => None,
        Some(text) => {
            let id = CouponId::parse(text).ok_or_else(|| ApiError::not_found("coupon"))?;
            let stored = coupons::store::fetch_coupon(tx.conn(), tenant_id, &id)
                .await?
                .filter(|c| c.member_id == member_id)
                .ok_or_else(|| ApiError::not_found("coupon"))?;
            let template =
                coupons::store::fetch_template(tx.conn(), tenant_id, &stored.template_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("coupon without template"))
                    })?;
            Some((
                id,
                CouponTerms {
                    discount: template.view.discount(),
                    max_discount: template.view.max_discount,
                    min_spend: template.view.min_spend,
                },
            ))
        }
    };
    let tier = member.tier.as_deref().and_then(|name| {
        settings
            .tiers
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.name.as_str(), t.discount_bp))
    });
    let burn = if request.points_to_burn > 0 {
        Some(BurnTerms {
            points_to_burn: request.points_to_burn,
            burn_points_per_yuan: settings.points.burn_points_per_yuan,
            burn_cap_bp: settings.points.burn_cap_bp,
            available_points: available_points(tx.conn(), tenant_id, &member_id).await?,
        })
    } else {
        None
    };
    let (priced_lines, pricing) = model::price(
        &inputs,
        tier,
        coupon.as_ref().map(|(_, terms)| *terms),
        burn,
        member_day,
    )
    .map_err(|e| match e {
        PricingError::MinSpendNotMet { min_spend } => ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "min_spend_not_met",
            format!("this coupon needs an order of at least {min_spend} fen"),
        )
        .with_details(json!({ "field": "coupon_id", "min_spend": min_spend })),
        PricingError::PointsNotAllowed { max_points, reason } => {
            ApiError::validation("points_to_burn", reason)
                .with_details(json!({ "field": "points_to_burn", "max_points": max_points }))
        }
        PricingError::Overflow => ApiError::validation("items", "the order total is too large"),
    })?;

    // Stock: a conditional decrement per line; any shortfall refuses the whole order.
    for line in &priced_lines {
        let taken = sqlx::query(
            "UPDATE product SET stock = stock - $1, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND stock >= $1",
        )
        .bind(line.qty)
        .bind(now_micros)
        .bind(tenant_id.as_str())
        .bind(line.product_id.as_str())
        .execute(tx.conn())
        .await?;
        if taken.rows_affected() != 1 {
            return Err(ApiError::conflict(
                "out_of_stock",
                format!("not enough stock of {}", line.sku),
            )
            .with_details(json!({ "product_id": line.product_id })));
        }
    }
    if let Some((coupon_id, _)) = &coupon {
        let after_tier = pricing.subtotal - pricing.tier_discount;
        coupons::redeem_in(
            tx,
            tenant_id,
            coupon_id,
            Some(&member_id),
            order_id.as_str(),
            after_tier,
        )
        .await?;
    }
    if pricing.points_burned > 0 {
        // Reserved now, taken at payment, released if the order is never paid.
        let transfer = NewTransfer::internal(
            burn_id(&order_id),
            Address::member(&member_id),
            Address::system("redemption"),
            Asset::Points,
            pricing.points_burned,
            "redeem",
            Some(order_id.as_str()),
        )
        .pending(None);
        let status = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
            .await?
            .pop()
            .map(|r| r.status)
            .unwrap_or_default();
        if status != "created" {
            return Err(ApiError::conflict(
                "insufficient_points",
                "the member does not hold enough points",
            ));
        }
    }
    let row = NewOrder {
        id: order_id.clone(),
        member_id: member_id.clone(),
        source: "checkout",
        status: OrderStatus::PendingPayment,
        total: pricing.total,
        items: serde_json::to_string(&priced_lines).map_err(ApiError::internal)?,
        ordered_at: now_micros,
        paid_at: None,
        subtotal: pricing.subtotal,
        pricing: Some(serde_json::to_string(&pricing).map_err(ApiError::internal)?),
        coupon_id: coupon.as_ref().map(|(id, _)| id.to_string()),
        points_burned: pricing.points_burned,
        qty,
        expires_at: Some(to_micros(now + SignedDuration::from_secs(timeout))),
        external_reference: None,
        campaign_kind: None,
        campaign_id: None,
        team_id: None,
    };
    store::insert(tx.conn(), tenant_id, std::slice::from_ref(&row), now_micros).await?;
    let order = store::require(tx.conn(), tenant_id, order_id.as_str(), false).await?;
    emit_created(tx, tenant_id, &row);
    Ok(order.view())
}

async fn place_external(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    request: CreateOrder,
    inputs: Vec<PriceInput>,
    order_id: OrderId,
    qty: i64,
) -> ApiResult<Order> {
    if request.coupon_id.is_some() || request.points_to_burn != 0 {
        return Err(ApiError::validation(
            "source",
            "external orders carry no coupon or points; they were priced elsewhere",
        ));
    }
    let paid_at = request
        .paid_at
        .as_deref()
        .ok_or_else(|| ApiError::validation("paid_at", "external orders need paid_at"))?;
    let zone = tenants::time_zone(tx.conn(), tenant_id).await?;
    let paid_at = to_micros(instant_field("paid_at", paid_at, &zone)?);
    if paid_at > to_micros(tx.now()) {
        return Err(ApiError::validation("paid_at", "must not be in the future"));
    }
    if paid_at < EARLIEST_EXTERNAL_PAYMENT_MICROS {
        return Err(ApiError::validation(
            "paid_at",
            "must be in 1990 or later (no order history reaches further back)",
        ));
    }
    let lines = model::price_lines(&inputs)
        .map_err(|_| ApiError::validation("items", "the order total is too large"))?;
    let subtotal: i64 = lines.iter().map(|l| l.line_total).sum();
    let total = match request.total {
        None => subtotal,
        Some(t) if (0..=model::MAX_MONEY).contains(&t) => t,
        Some(_) => return Err(ApiError::validation("total", "must be 0 or more (fen)")),
    };
    let external_reference = match request.external_reference {
        None => None,
        Some(text) => Some(stored_value::model::reference(
            "external_reference",
            text.trim(),
        )?),
    };
    if let Some(reference) = &external_reference {
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM customer_order WHERE tenant_id = $1 AND external_reference = $2",
        )
        .bind(tenant_id.as_str())
        .bind(reference.as_str())
        .fetch_optional(tx.conn())
        .await?;
        if let Some(existing) = existing {
            return Err(ApiError::conflict(
                "order_exists",
                "an order with this external_reference was ingested already",
            )
            .with_details(json!({ "order_id": existing })));
        }
    }
    let now = to_micros(tx.now());
    let row = NewOrder {
        id: order_id.clone(),
        member_id: member_id.clone(),
        source: "external",
        status: OrderStatus::Paid,
        total,
        items: serde_json::to_string(&lines).map_err(ApiError::internal)?,
        ordered_at: paid_at,
        paid_at: Some(paid_at),
        subtotal,
        pricing: None,
        coupon_id: None,
        points_burned: 0,
        qty,
        expires_at: None,
        external_reference,
        campaign_kind: None,
        campaign_id: None,
        team_id: None,
    };
    if let Err(error) = store::insert(tx.conn(), tenant_id, std::slice::from_ref(&row), now).await {
        return Err(if is_unique_violation(&error) {
            ApiError::conflict(
                "order_exists",
                "an order with this external_reference was ingested already",
            )
        } else {
            error.into()
        });
    }
    let mut order = store::require(tx.conn(), tenant_id, order_id.as_str(), false).await?;
    emit_created(tx, tenant_id, &row);
    after_paid(tx, tenant_id, &mut order).await?;
    Ok(order.view())
}

/// `order.created` for a row just inserted.
pub fn emit_created(tx: &mut Tx, tenant_id: &TenantId, order: &NewOrder) {
    tx.emit(NewEvent::new(
        tenant_id,
        "order.created",
        Some(order.id.as_str()),
        json!({
            "order_id": order.id, "member_id": order.member_id, "source": order.source,
            "status": order.status, "total": order.total, "qty": order.qty,
            "campaign_kind": order.campaign_kind, "campaign_id": order.campaign_id,
            "team_id": order.team_id,
        }),
    ));
}

/// What paying means for the member: points burnt for good, growth, pending earned points,
/// and the order's campaign (flash-sale units sold, group-buy team progress). Runs for checkout
/// payments and for external orders ingested as paid.
async fn after_paid(tx: &mut Tx, tenant_id: &TenantId, order: &mut StoredOrder) -> ApiResult<()> {
    let member_id = &order.member_id;
    if order.points_burned > 0 {
        let result = ledger::apply_in(
            tx,
            tenant_id,
            vec![Op::Post {
                pending_id: burn_id(&order.id),
                amount: None,
            }],
        )
        .await?
        .pop()
        .map(|r| r.status)
        .unwrap_or_default();
        if result != "posted" {
            return Err(ApiError::internal(anyhow::anyhow!(
                "posting burnt points of {} gave {}",
                order.id,
                result
            )));
        }
    }
    let settings = program::load_settings(tx.conn(), tenant_id).await?;
    let growth = tiers::growth_from_paid(order.total, settings.growth_per_yuan_bp);
    if growth > 0 {
        program::change_growth(
            tx,
            tenant_id,
            member_id,
            growth,
            &format!("order:{}", order.id),
        )
        .await?;
    }
    if order.total > 0 {
        program::earn_for_paid(tx, tenant_id, member_id, order.total, order.id.as_str()).await?;
    }
    sqlx::query("UPDATE customer_order SET growth_given = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(growth)
        .bind(tenant_id.as_str())
        .bind(order.id.as_str())
        .execute(tx.conn())
        .await?;
    order.growth_given = growth;
    let paid = hooks::OrderPaid {
        tenant_id,
        member_id,
        order_id: order.id.as_str(),
        total: order.total,
    };
    hooks::registered()?.order_paid(tx, &paid).await?;
    match (order.campaign_kind.as_deref(), order.campaign_id.as_deref()) {
        (Some(flash_sales::KIND), Some(sale)) => {
            flash_sales::on_paid(tx.conn(), tenant_id, sale, order.qty).await?
        }
        (Some(group_buys::KIND), _) => group_buys::on_paid(tx, tenant_id, order).await?,
        _ => {}
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "order.paid",
        Some(order.id.as_str()),
        json!({
            "order_id": order.id, "member_id": order.member_id, "total": order.total,
            "method": order.payment_method, "reference": order.payment_reference,
            "source": order.source,
        }),
    ));
    Ok(())
}

/// Pay an order inside `tx`. Idempotent on the payment reference.
pub async fn pay_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order_id: &str,
    request: &PaymentRequest,
) -> ApiResult<StoredOrder> {
    let method = match request.method.as_str() {
        "wallet" => "wallet",
        "external" => "external",
        _ => return Err(ApiError::validation("method", "must be wallet or external")),
    };
    let reference = stored_value::model::reference("reference", request.reference.trim())?;
    let mut order = store::require(tx.conn(), tenant_id, order_id, true).await?;
    let previous: Option<(String, String)> = sqlx::query(
        "SELECT order_id, method FROM order_payment WHERE tenant_id = $1 AND reference = $2",
    )
    .bind(tenant_id.as_str())
    .bind(reference.as_str())
    .fetch_optional(tx.conn())
    .await?
    .map(|row| Ok::<_, sqlx::Error>((row.try_get("order_id")?, row.try_get("method")?)))
    .transpose()?;
    if let Some((paid_order, paid_method)) = previous {
        if paid_order == order.id.as_str() && paid_method == method {
            return Ok(order);
        }
        return Err(ApiError::conflict(
            "payment_reference_reused",
            "this payment reference was used for another payment",
        ));
    }
    let now = to_micros(tx.now());
    match order.status {
        OrderStatus::PendingPayment if order.expires_at.is_some_and(|at| at <= now) => {
            return Err(order_expired(&order))
        }
        OrderStatus::PendingPayment => {}
        OrderStatus::Expired => return Err(order_expired(&order)),
        OrderStatus::Cancelled => {
            return Err(ApiError::conflict(
                "order_cancelled",
                "this order was cancelled",
            ))
        }
        OrderStatus::Paid
        | OrderStatus::Fulfilled
        | OrderStatus::Completed
        | OrderStatus::Refunded => {
            return Err(ApiError::conflict(
                "already_paid",
                "this order was paid already",
            ))
        }
    }
    if let Some(team_id) = &order.team_id {
        group_buys::require_payable(tx.conn(), tenant_id, team_id).await?;
    }
    let mut spend_id = None;
    if method == "wallet" && order.total > 0 {
        let member_id = &order.member_id;
        let (spend, _) = stored_value::spend_in(
            tx,
            tenant_id,
            member_id,
            order.total,
            &format!("order:{}", order.id),
        )
        .await?;
        spend_id = Some(spend.spend_id.to_string());
    }
    sqlx::query(
        "INSERT INTO order_payment (tenant_id, reference, order_id, method, amount, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id.as_str())
    .bind(reference.as_str())
    .bind(order.id.as_str())
    .bind(method)
    .bind(order.total)
    .bind(now)
    .execute(tx.conn())
    .await?;
    if !store::transition(
        tx.conn(),
        tenant_id,
        &order.id,
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        "paid_at",
        now,
    )
    .await?
    {
        return Err(ApiError::conflict(
            "already_paid",
            "this order changed state meanwhile",
        ));
    }
    sqlx::query(
        "UPDATE customer_order SET payment_method = $1, payment_reference = $2, \
         wallet_spend_id = $3 WHERE tenant_id = $4 AND id = $5",
    )
    .bind(method)
    .bind(reference.as_str())
    .bind(spend_id.clone())
    .bind(tenant_id.as_str())
    .bind(order.id.as_str())
    .execute(tx.conn())
    .await?;
    order.status = OrderStatus::Paid;
    order.paid_at = Some(now);
    order.payment_method = Some(method.into());
    order.payment_reference = Some(reference);
    order.wallet_spend_id = spend_id;
    after_paid(tx, tenant_id, &mut order).await?;
    store::require(tx.conn(), tenant_id, order.id.as_str(), false).await
}

fn order_expired(order: &StoredOrder) -> ApiError {
    ApiError::conflict(
        "order_expired",
        "the payment deadline of this order has passed; it can no longer be paid",
    )
    .with_details(json!({
        "order_id": order.id,
        "expires_at": order.expires_at.map(micros_to_rfc3339),
    }))
}

/// Close an unpaid order (`cancelled` by request, `expired` at its deadline): its stock, coupon,
/// reserved points and campaign units go back. False when it was no longer unpaid.
pub async fn close_unpaid_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    to: OrderStatus,
) -> ApiResult<bool> {
    let now = to_micros(tx.now());
    if !store::transition(
        tx.conn(),
        tenant_id,
        &order.id,
        OrderStatus::PendingPayment,
        to,
        "closed_at",
        now,
    )
    .await?
    {
        return Ok(false);
    }
    release_units(tx, tenant_id, order, true).await?;
    return_coupon(tx, tenant_id, order).await?;
    if order.points_burned > 0 {
        ledger::apply_in(
            tx,
            tenant_id,
            vec![Op::Void {
                pending_id: burn_id(&order.id),
            }],
        )
        .await?;
    }
    let kind = if to == OrderStatus::Expired {
        "order.expired"
    } else {
        "order.cancelled"
    };
    tx.emit(NewEvent::new(
        tenant_id,
        kind,
        Some(order.id.as_str()),
        json!({ "order_id": order.id, "member_id": order.member_id, "qty": order.qty,
                "campaign_id": order.campaign_id, "team_id": order.team_id }),
    ));
    let closed = hooks::OrderClosed {
        tenant_id,
        member_id: &order.member_id,
        order_id: order.id.as_str(),
        status: to.as_str(),
    };
    hooks::registered()?.order_closed(tx, &closed).await?;
    Ok(true)
}

/// Give back the coupon an order redeemed (if it still stands redeemed on this order).
async fn return_coupon(tx: &mut Tx, tenant_id: &TenantId, order: &StoredOrder) -> ApiResult<bool> {
    let Some(coupon_id) = order.coupon_id.as_deref().and_then(CouponId::parse) else {
        return Ok(false);
    };
    let Some(coupon) = coupons::store::fetch_coupon(tx.conn(), tenant_id, &coupon_id).await? else {
        return Ok(false);
    };
    if coupon.status != coupons::model::STATUS_REDEEMED
        || coupon.order_ref.as_deref() != Some(order.id.as_str())
    {
        return Ok(false);
    }
    coupons::unredeem_in(tx, tenant_id, &coupon).await?;
    Ok(true)
}

/// Give an order's units back: product stock for checkout orders, the campaign's units for
/// flash sales and group buys (`unpaid`: the units were reserved, not sold).
async fn release_units(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    unpaid: bool,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    match (order.campaign_kind.as_deref(), order.campaign_id.as_deref()) {
        (Some(flash_sales::KIND), Some(sale)) => {
            flash_sales::release(tx.conn(), tenant_id, sale, order.qty, unpaid).await
        }
        (Some(group_buys::KIND), _) => {
            if unpaid {
                group_buys::on_unpaid_closed(tx.conn(), tenant_id, order).await
            } else {
                Ok(())
            }
        }
        _ if order.source == "checkout" => {
            for line in order.lines() {
                sqlx::query(
                    "UPDATE product SET stock = stock + $1, updated_at = $2 \
                     WHERE tenant_id = $3 AND id = $4",
                )
                .bind(line.qty)
                .bind(now)
                .bind(tenant_id.as_str())
                .bind(line.product_id.as_str())
                .execute(tx.conn())
                .await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The earliest payment an external order may carry: 1990-01-01T00:00:00Z (CDNOW's history,
/// the oldest real data shequn is tested on, starts in 1997). Earlier dates are typing errors
/// (year 0001) that would drag every analytics window back by centuries.
const EARLIEST_EXTERNAL_PAYMENT_MICROS: i64 = 631_152_000_000_000;

/// The job that expires one unpaid order whose expiry failed in the scheduler's scan.
pub const ORDER_EXPIRY_JOB: &str = "order.expiry";

/// The id of an order's expiry job (at most one per order).
fn expiry_job_id(order_id: &OrderId) -> String {
    format!("order_expiry:{order_id}")
}

/// Close every unpaid order whose deadline has passed; returns how many. Called on each
/// scheduler pass; safe on several nodes at once (each close is a conditional UPDATE).
///
/// Due orders are closed in one transaction per pass of up to 500. If that transaction fails,
/// each order is closed in its own; an order that still fails becomes an [`ORDER_EXPIRY_JOB`],
/// so that it is retried with backoff, counted and finally parked like any job, and the scan
/// no longer picks it up: one order that cannot be written never holds up the others.
pub async fn expire_due(db: &crate::common::db::Db, now: jiff::Timestamp) -> anyhow::Result<usize> {
    const PASS: i64 = 500;
    let mut closed = 0;
    loop {
        let due: Vec<(TenantId, OrderId)> = {
            let mut conn = db.read().acquire().await?;
            sqlx::query(
                "SELECT o.tenant_id, o.id FROM customer_order o \
                 WHERE o.status = 'pending_payment' AND o.expires_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM scheduled_job j \
                   WHERE j.tenant_id = o.tenant_id AND j.id = 'order_expiry:' || o.id) \
                 ORDER BY o.expires_at LIMIT $2",
            )
            .bind(to_micros(now))
            .bind(PASS)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok::<_, sqlx::Error>((
                    TenantId::from_db(row.try_get("tenant_id")?),
                    OrderId::from_db(row.try_get("id")?),
                ))
            })
            .collect::<Result<_, _>>()?
        };
        if due.is_empty() {
            return Ok(closed);
        }
        let this_pass = match expire_orders(db, now, &due).await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    orders = due.len(),
                    "expiring unpaid orders together failed; expiring them one by one"
                );
                let mut n = 0;
                for order in &due {
                    match expire_orders(db, now, std::slice::from_ref(order)).await {
                        Ok(one) => n += one,
                        Err(error) => hand_to_scheduler(db, now, order, &error).await?,
                    }
                }
                n
            }
        };
        closed += this_pass;
        if (due.len() as i64) < PASS || this_pass == 0 {
            return Ok(closed);
        }
    }
}

/// Close these orders if they are still unpaid, in one transaction.
async fn expire_orders(
    db: &crate::common::db::Db,
    now: jiff::Timestamp,
    orders: &[(TenantId, OrderId)],
) -> anyhow::Result<usize> {
    let mut tx = db.begin(now).await?;
    let mut closed = 0;
    for (tenant_id, id) in orders {
        if expire_one(&mut tx, tenant_id, id).await? {
            closed += 1;
        }
    }
    tx.commit().await?;
    Ok(closed)
}

async fn expire_one(tx: &mut Tx, tenant_id: &TenantId, id: &OrderId) -> anyhow::Result<bool> {
    let Some(order) = store::fetch(tx.conn(), tenant_id, id.as_str(), true).await? else {
        return Ok(false);
    };
    let due = order
        .expires_at
        .is_some_and(|deadline| deadline <= to_micros(tx.now()));
    if order.status != OrderStatus::PendingPayment || !due {
        return Ok(false);
    }
    close_unpaid_in(tx, tenant_id, &order, OrderStatus::Expired)
        .await
        .map_err(|e| anyhow::anyhow!("expiring order {id}: {e}"))
}

/// An order that failed to expire on its own becomes a job, due at once.
async fn hand_to_scheduler(
    db: &crate::common::db::Db,
    now: jiff::Timestamp,
    (tenant_id, order_id): &(TenantId, OrderId),
    error: &anyhow::Error,
) -> anyhow::Result<()> {
    tracing::warn!(
        %tenant_id, order = %order_id, error = format!("{error:#}"),
        "an unpaid order could not be expired; the scheduler retries it as a job"
    );
    let mut tx = db.begin(now).await?;
    scheduler::schedule(
        tx.conn(),
        tenant_id,
        &[NewJob {
            id: expiry_job_id(order_id),
            kind: ORDER_EXPIRY_JOB,
            due_at: to_micros(now),
            payload: json!({ "order_id": order_id }),
        }],
        to_micros(now),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Run an [`ORDER_EXPIRY_JOB`]: close the order if it is still unpaid and past its deadline.
pub async fn expire_job(state: &crate::AppState, job: &Job) -> anyhow::Result<()> {
    let order_id = job
        .payload
        .get("order_id")
        .and_then(serde_json::Value::as_str)
        .map(|id| OrderId::from_db(id.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("job without order_id"))?;
    let mut tx = state.begin().await?;
    let closed = expire_one(&mut tx, &job.tenant_id, &order_id).await?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    if closed {
        tracing::info!(order = %order_id, "unpaid order expired by its retry job");
    }
    Ok(())
}

/// Move a paid order along: `paid → fulfilled` or `fulfilled → completed`.
pub async fn advance_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order_id: &str,
    to: OrderStatus,
) -> ApiResult<StoredOrder> {
    let order = store::require(tx.conn(), tenant_id, order_id, true).await?;
    let (from, stamp, kind) = match to {
        OrderStatus::Fulfilled => (OrderStatus::Paid, "fulfilled_at", "order.fulfilled"),
        OrderStatus::Completed => (OrderStatus::Fulfilled, "completed_at", "order.completed"),
        other => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "an order does not advance to {other}"
            )))
        }
    };
    if order.status == to {
        return Ok(order);
    }
    if order.status != from {
        return Err(ApiError::conflict(
            "invalid_transition",
            format!("a {} order cannot become {to}", order.status),
        )
        .with_details(json!({ "status": order.status })));
    }
    let now = to_micros(tx.now());
    if !store::transition(tx.conn(), tenant_id, &order.id, from, to, stamp, now).await? {
        return Err(ApiError::conflict(
            "invalid_transition",
            "this order changed state meanwhile",
        ));
    }
    tx.emit(NewEvent::new(
        tenant_id,
        kind,
        Some(order_id),
        json!({ "order_id": order_id, "member_id": order.member_id }),
    ));
    store::require(tx.conn(), tenant_id, order_id, false).await
}

/// Refund part or all of a paid order inside `tx` (see the refund arithmetic in
/// [`model`]): money back (wallet through the ledger, external through a `refund.requested`
/// event), burnt points back in proportion, growth and earned points for what remains,
/// and on a full refund the coupon and (unless fulfilled) the stock.
pub async fn refund_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order_id: &str,
    request: &RefundRequest,
) -> ApiResult<Refund> {
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::validation(
            "reason",
            "must be 1 to 500 characters",
        ));
    }
    let reference = match &request.reference {
        None => None,
        Some(text) => Some(stored_value::model::reference("reference", text.trim())?),
    };
    let mut order = store::require(tx.conn(), tenant_id, order_id, true).await?;
    if let Some(reference) = &reference {
        if let Some(existing) = fetch_refund_by_reference(tx.conn(), tenant_id, reference).await? {
            if existing.order_id == order.id.as_str() {
                return Ok(existing);
            }
            return Err(ApiError::conflict(
                "refund_reference_reused",
                "this refund reference was used on another order",
            ));
        }
    }
    if !order.status.is_refundable() {
        return Err(ApiError::conflict(
            "not_refundable",
            format!("a {} order cannot be refunded", order.status),
        )
        .with_details(json!({ "status": order.status })));
    }
    let plan = model::plan_refund(
        order.total,
        order.refunded_amount,
        request.amount,
        order.points_burned,
        order.points_returned,
    )
    .map_err(|e| match e {
        RefundError::NothingToRefund => {
            ApiError::conflict("nothing_to_refund", "this order was refunded in full")
        }
        RefundError::TooMuch { refundable } => ApiError::validation(
            "amount",
            format!("must be 1 to {refundable} fen (what remains of the order)"),
        )
        .with_details(json!({ "field": "amount", "refundable": refundable })),
    })?;
    let member_id = &order.member_id;
    let refund_id = OrderRefundId::generate();
    let now = to_micros(tx.now());

    // Money.
    if plan.amount > 0 {
        match (
            order.payment_method.as_deref(),
            order.wallet_spend_id.as_deref(),
        ) {
            (Some("wallet"), Some(spend)) => {
                let spend_id = SpendId::parse(spend)
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("bad spend id")))?;
                stored_value::refund_spend_in(
                    tx,
                    tenant_id,
                    member_id,
                    &spend_id,
                    Some(plan.amount),
                    Some(&format!("order-refund:{refund_id}")),
                )
                .await?;
            }
            _ => tx.emit(NewEvent::new(
                tenant_id,
                "refund.requested",
                Some(order.id.as_str()),
                json!({
                    "order_id": order.id, "member_id": order.member_id, "amount": plan.amount,
                    "refund_id": refund_id, "payment_method": order.payment_method,
                    "payment_reference": order.payment_reference, "reason": reason,
                }),
            )),
        }
    }
    // Burnt points back.
    if plan.points_back > 0 {
        let transfer = NewTransfer::internal(
            format!("order-points-back:{refund_id}"),
            Address::system("redemption"),
            Address::member(member_id),
            Asset::Points,
            plan.points_back,
            "refund",
            Some(order.id.as_str()),
        );
        ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)]).await?;
    }
    // Growth and earned points follow what remains paid.
    let remaining = order.total - plan.refunded_after;
    let settings = program::load_settings(tx.conn(), tenant_id).await?;
    let growth_now = tiers::growth_from_paid(remaining, settings.growth_per_yuan_bp);
    if growth_now != order.growth_given {
        program::change_growth(
            tx,
            tenant_id,
            member_id,
            growth_now - order.growth_given,
            &format!("refund:{refund_id}"),
        )
        .await?;
    }
    adjust_earned_points(tx, tenant_id, member_id, &order, remaining, &refund_id).await?;
    // Full refund: coupon and stock.
    let mut coupon_returned = false;
    let mut restocked = false;
    if plan.full {
        coupon_returned = return_coupon(tx, tenant_id, &order).await?;
        let restock = request.restock.unwrap_or(order.status == OrderStatus::Paid);
        if restock {
            release_units(tx, tenant_id, &order, false).await?;
            restocked = true;
        }
    } else if request.restock == Some(true) {
        return Err(ApiError::validation(
            "restock",
            "only a full refund puts units back in stock",
        ));
    }
    let status = if plan.full {
        OrderStatus::Refunded
    } else {
        order.status
    };
    let updated = sqlx::query(
        "UPDATE customer_order SET refunded_amount = $1, points_returned = points_returned + $2, \
         refund_count = refund_count + 1, growth_given = $3, status = $4, \
         closed_at = CASE WHEN $5 = 1 THEN $6 ELSE closed_at END, updated_at = $6 \
         WHERE tenant_id = $7 AND id = $8 AND refunded_amount = $9 AND status = $10",
    )
    .bind(plan.refunded_after)
    .bind(plan.points_back)
    .bind(growth_now)
    .bind(status.as_str())
    .bind(i64::from(plan.full))
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(order.id.as_str())
    .bind(order.refunded_amount)
    .bind(order.status.as_str())
    .execute(tx.conn())
    .await?;
    if updated.rows_affected() != 1 {
        return Err(ApiError::conflict(
            "concurrent_refund",
            "another refund of this order happened meanwhile; retry",
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO order_refund (tenant_id, id, order_id, amount, reason, reference, \
         points_returned, restocked, coupon_returned, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(tenant_id.as_str())
    .bind(refund_id.as_str())
    .bind(order.id.as_str())
    .bind(plan.amount)
    .bind(reason)
    .bind(reference.clone())
    .bind(plan.points_back)
    .bind(i64::from(restocked))
    .bind(i64::from(coupon_returned))
    .bind(now)
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "refund_reference_reused",
                "this refund reference is in use",
            ))
        }
        other => {
            other?;
        }
    }
    order.status = status;
    order.refunded_amount = plan.refunded_after;
    tx.emit(NewEvent::new(
        tenant_id,
        "order.refunded",
        Some(order.id.as_str()),
        json!({
            "order_id": order.id, "member_id": order.member_id, "refund_id": refund_id,
            "amount": plan.amount, "refunded_amount": plan.refunded_after, "full": plan.full,
            "points_returned": plan.points_back, "reason": reason,
        }),
    ));
    let refunded = hooks::OrderRefunded {
        tenant_id,
        member_id: &order.member_id,
        order_id: order.id.as_str(),
        refund_id: refund_id.as_str(),
        amount: plan.amount,
        refunded_total: plan.refunded_after,
        full: plan.full,
    };
    hooks::registered()?.order_refunded(tx, &refunded).await?;
    if let Some(team_id) = &order.team_id {
        if plan.full {
            group_buys::on_refunded(tx.conn(), tenant_id, team_id).await?;
        }
    }
    Ok(Refund {
        id: refund_id.to_string(),
        order_id: order.id.to_string(),
        amount: plan.amount,
        reason: reason.to_owned(),
        reference,
        points_returned: plan.points_back,
        restocked,
        coupon_returned,
        order_status: status,
        refunded_amount: plan.refunded_after,
        created_at: micros_to_rfc3339(now),
    })
}

/// Earned points follow the amount still paid: while they are pending (inside the return
/// window) the pending earn is voided and re-earned for what remains; once released, the
/// share refunded is taken back, as far as the member still holds points.
async fn adjust_earned_points(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    order: &StoredOrder,
    remaining: i64,
    refund_id: &OrderRefundId,
) -> ApiResult<()> {
    if order.total == 0 {
        return Ok(());
    }
    let reference = if order.refund_count == 0 {
        order.id.to_string()
    } else {
        format!("{}#{}", order.id, order.refund_count)
    };
    let earn_id = format!("points-earn:{reference}");
    let row = sqlx::query(
        "SELECT t.amount, r.kind AS resolution FROM ledger_transfer t \
         LEFT JOIN ledger_resolution r ON r.tenant_id = t.tenant_id AND r.pending_id = t.id \
         WHERE t.tenant_id = $1 AND t.id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(earn_id.as_str())
    .fetch_optional(tx.conn())
    .await;
    let Some(row) = row? else {
        return Ok(()); // nothing was earned (0 points)
    };
    let earned: i64 = row.try_get("amount")?;
    let resolution: Option<String> = row.try_get("resolution")?;
    match resolution.as_deref() {
        None => {
            ledger::apply_in(
                tx,
                tenant_id,
                vec![Op::Void {
                    pending_id: earn_id,
                }],
            )
            .await?;
            if remaining > 0 {
                program::earn_for_paid(
                    tx,
                    tenant_id,
                    member_id,
                    remaining,
                    &format!("{}#{}", order.id, order.refund_count + 1),
                )
                .await?;
            }
        }
        Some("posted") => {
            // Released already: take back the refunded share of what was earned.
            let keep =
                i64::try_from(i128::from(earned) * i128::from(remaining) / i128::from(order.total))
                    .unwrap_or(0);
            let before = i64::try_from(
                i128::from(earned) * i128::from(order.total - order.refunded_amount)
                    / i128::from(order.total),
            )
            .unwrap_or(0);
            let back =
                (before - keep).min(available_points(tx.conn(), tenant_id, member_id).await?);
            if back > 0 {
                let transfer = NewTransfer::internal(
                    format!("order-points-clawback:{refund_id}"),
                    Address::member(member_id),
                    Address::system("issuance"),
                    Asset::Points,
                    back,
                    "refund_clawback",
                    Some(order.id.as_str()),
                );
                ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)]).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn fetch_refund_by_reference(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    reference: &str,
) -> ApiResult<Option<Refund>> {
    let row = sqlx::query(
        "SELECT r.id, r.order_id, r.amount, r.reason, r.reference, r.points_returned, \
         r.restocked, r.coupon_returned, r.created_at, o.status, o.refunded_amount \
         FROM order_refund r JOIN customer_order o \
           ON o.tenant_id = r.tenant_id AND o.id = r.order_id \
         WHERE r.tenant_id = $1 AND r.reference = $2",
    )
    .bind(tenant_id.as_str())
    .bind(reference)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(refund_from_row).transpose()?)
}

fn refund_from_row(row: &sqlx::any::AnyRow) -> Result<Refund, sqlx::Error> {
    Ok(Refund {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        amount: row.try_get("amount")?,
        reason: row.try_get("reason")?,
        reference: row.try_get("reference")?,
        points_returned: row.try_get("points_returned")?,
        restocked: row.try_get::<i64, _>("restocked")? == 1,
        coupon_returned: row.try_get::<i64, _>("coupon_returned")? == 1,
        order_status: model::state_column(row, "status")?,
        refunded_amount: row.try_get("refunded_amount")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// The refunds of an order, oldest first.
pub async fn refunds_of(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> ApiResult<Vec<Refund>> {
    let rows = sqlx::query(
        "SELECT r.id, r.order_id, r.amount, r.reason, r.reference, r.points_returned, \
         r.restocked, r.coupon_returned, r.created_at, o.status, o.refunded_amount \
         FROM order_refund r JOIN customer_order o \
           ON o.tenant_id = r.tenant_id AND o.id = r.order_id \
         WHERE r.tenant_id = $1 AND r.order_id = $2 ORDER BY r.created_at, r.id",
    )
    .bind(tenant_id.as_str())
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(refund_from_row).collect::<Result<_, _>>()?)
}
