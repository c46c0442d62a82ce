//! Placing an order: a checkout order priced, its stock, coupon and points taken, pending
//! payment; or an external order ingested as paid.

use jiff::SignedDuration;
use serde_json::json;

use crate::common::db::Tx;
use crate::common::error::{is_unique_violation, ApiError, ApiResult};
use crate::common::ids::{MemberId, OrderId, TenantId};
use crate::common::time::{instant_field, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::members;
use crate::membership::coupons::{self, model::CouponId};
use crate::membership::program::{self, tenant_zone};
use crate::membership::stored_value::{self};
use crate::orders::model::{
    self, BurnTerms, CouponTerms, Order, OrderStatus, PriceInput, PricingError,
};
use crate::orders::products;
use crate::orders::store::{self, NewOrder};
use crate::tenants;

use super::pay::after_paid;
use super::{available_points, burn_id, emit_created, CreateOrder, ItemRequest};

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

/// The earliest payment an external order may carry: 1990-01-01T00:00:00Z (CDNOW's history,
/// the oldest real data shequn is tested on, starts in 1997). Earlier dates are typing errors
/// (year 0001) that would drag every analytics window back by centuries.
const EARLIEST_EXTERNAL_PAYMENT_MICROS: i64 = 631_152_000_000_000;
