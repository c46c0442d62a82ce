//! Placing an order: a checkout order priced, its stock, coupon and points taken, pending
//! payment; or an external order ingested as paid.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::common::db::Tx;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::hooks::{self, WavePlacement};
use crate::common::ids::{MemberId, OrderId, TenantId};
use crate::common::time::{instant_field, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::members;
use crate::membership::coupons::{self, model::CouponId};
use crate::membership::program::{self, ProgramSettings};
use crate::membership::stored_value;
use crate::orders::model::{
    self, BurnTerms, CouponTerms, Order, OrderLine, OrderStatus, PriceInput, Pricing, PricingError,
};
use crate::orders::products::{self, Product};
use crate::orders::store::{self, NewOrder};
use crate::tenants;
use crate::tenants::time_zone as tenant_zone;

use super::pay::after_paid;
use super::{available_points, burn_id, CreateOrder, ItemRequest};

/// How an order comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Priced here, stock reserved, pending payment.
    Checkout,
    /// Placed and paid elsewhere, ingested as paid.
    External,
}

fn source_of(request: &CreateOrder) -> ApiResult<Source> {
    match request.source.as_deref() {
        None | Some("checkout") => Ok(Source::Checkout),
        Some("external") => Ok(Source::External),
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

/// What the prices of an order placed now depend on: the tenant's program and the moment.
struct PricingDay {
    settings: ProgramSettings,
    zone: TimeZone,
    now: Timestamp,
    member_day: bool,
}

/// An order being placed: its id, its buyer and its lines as pricing sees them.
struct Draft {
    order_id: OrderId,
    member_id: MemberId,
    /// The buyer's tier, if any.
    tier: Option<String>,
    inputs: Vec<PriceInput>,
    /// Units in all lines.
    qty: i64,
}

/// Place an order inside `tx` (checkout or external) and return it.
pub async fn place_in(tx: &mut Tx, tenant_id: &TenantId, request: CreateOrder) -> ApiResult<Order> {
    let source = source_of(&request)?;
    let member_id = members::member_id(&request.member_id)?;
    let lines = basket(&request.items)?;
    members::store::require_active(tx.conn(), tenant_id, &member_id).await?;
    let member = members::store::require(tx.conn(), tenant_id, &member_id).await?;
    let now = tx.now();
    let settings = program::load_settings(tx.conn(), tenant_id).await?;
    let zone = tenant_zone(tx.conn(), tenant_id).await?;
    let day = PricingDay {
        member_day: program::is_member_day(&settings, now, &zone),
        settings,
        zone,
        now,
    };
    let order_id = OrderId::generate();
    let (tier, inputs) = match request.wave_id.as_deref() {
        None => {
            let tier = member.tier;
            let inputs = price_inputs(tx, tenant_id, &lines, source, &day, tier.as_deref()).await?;
            (tier, inputs)
        }
        Some(wave_id) => {
            if source != Source::Checkout {
                return Err(ApiError::validation(
                    "wave_id",
                    "wave orders are checkout orders (no source external)",
                ));
            }
            let placement = WavePlacement {
                tenant_id,
                member_id: &member_id,
                order_id: order_id.as_str(),
                wave_id,
                lines: &lines,
            };
            // The wave's price is the price: no tier discount or member price on top of it.
            (None, wave_inputs(tx, tenant_id, &placement).await?)
        }
    };
    let draft = Draft {
        order_id,
        member_id,
        tier,
        inputs,
        qty: lines.iter().map(|(_, q)| q).sum(),
    };
    match source {
        Source::External => place_external(tx, tenant_id, request, draft).await,
        Source::Checkout => place_checkout(tx, tenant_id, request, draft, &day).await,
    }
}

/// The basket's products as pricing sees them (step 1 of the pricing order). A checkout line
/// is offered the member and member-day prices, and is refused while the product's launch is
/// not yet open to the buyer's tier; an external line is at list price.
async fn price_inputs(
    tx: &mut Tx,
    tenant_id: &TenantId,
    lines: &[(String, i64)],
    source: Source,
    day: &PricingDay,
    tier: Option<&str>,
) -> ApiResult<Vec<PriceInput>> {
    let checkout = source == Source::Checkout;
    let mut inputs = Vec::with_capacity(lines.len());
    for (product_id, qty) in lines {
        let product = products::fetch(tx.conn(), tenant_id, product_id).await?;
        if checkout {
            check_launched(&product, day, tier)?;
        }
        inputs.push(PriceInput {
            member_day_price: if checkout {
                program::member_day_price(&day.settings, &product.id, day.now, &day.zone)
            } else {
                None
            },
            member_price: if checkout { product.member_price } else { None },
            product_id: product.id,
            sku: product.sku,
            name: product.name,
            qty: *qty,
            list_price: product.price,
        });
    }
    Ok(inputs)
}

/// A wave order's lines at the wave's prices: the wave hooks take the wave's stock (in this
/// transaction) and answer each line's price, or refuse the order.
async fn wave_inputs(
    tx: &mut Tx,
    tenant_id: &TenantId,
    placement: &WavePlacement<'_>,
) -> ApiResult<Vec<PriceInput>> {
    let prices = hooks::registered()?
        .wave_hooks()?
        .place(tx, placement)
        .await?;
    let mut inputs = Vec::with_capacity(placement.lines.len());
    for ((product_id, qty), price) in placement.lines.iter().zip(prices) {
        let product = products::fetch(tx.conn(), tenant_id, product_id).await?;
        inputs.push(PriceInput {
            product_id: product.id,
            sku: product.sku,
            name: product.name,
            qty: *qty,
            list_price: price,
            member_price: None,
            member_day_price: None,
        });
    }
    Ok(inputs)
}

/// 409 `not_launched` while a product's launch is not open to this tier (early access).
fn check_launched(product: &Product, day: &PricingDay, tier: Option<&str>) -> ApiResult<()> {
    let Some(launch) = product
        .launch_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
    else {
        return Ok(());
    };
    let access = program::may_buy(&day.settings, tier, launch, day.now);
    if access.may_buy_now {
        return Ok(());
    }
    Err(ApiError::conflict(
        codes::NOT_LAUNCHED,
        format!(
            "{} opens to this member at {}",
            product.sku, access.opens_at
        ),
    )
    .with_details(json!({ "product_id": product.id, "opens_at": access.opens_at })))
}

/// A checkout order: priced (steps 2 to 5 of the pricing order), its stock reserved, its
/// coupon redeemed and its points held, pending payment until its deadline.
async fn place_checkout(
    tx: &mut Tx,
    tenant_id: &TenantId,
    request: CreateOrder,
    draft: Draft,
    day: &PricingDay,
) -> ApiResult<Order> {
    let timeout = check_checkout_fields(&request)?;
    // The coupon is redeemed below, once the amount it applies to is known.
    let coupon = match &request.coupon_id {
        None => None,
        Some(text) => Some(coupon_terms(tx, tenant_id, &draft.member_id, text).await?),
    };
    let burn = match request.points_to_burn {
        0 => None,
        points => Some(burn_terms(tx, tenant_id, &draft.member_id, points, &day.settings).await?),
    };
    let (mut lines, pricing) = price_basket(
        &draft,
        &day.settings,
        coupon.as_ref().map(|(_, terms)| *terms),
        burn,
        day.member_day,
    )?;
    let now = to_micros(day.now);
    let wave_id = request.wave_id.clone();
    if wave_id.is_some() {
        // The wave hooks took the wave's own stock; the product's stock is not touched.
        for line in &mut lines {
            line.price_kind = "wave".to_owned();
        }
    } else {
        reserve_stock(tx, tenant_id, &lines, now).await?;
    }
    if let Some((coupon_id, _)) = &coupon {
        take_coupon(tx, tenant_id, &draft, coupon_id, &pricing).await?;
    }
    hold_points(tx, tenant_id, &draft, pricing.points_burned).await?;
    let row = NewOrder {
        id: draft.order_id.clone(),
        member_id: draft.member_id,
        source: "checkout",
        status: OrderStatus::PendingPayment,
        total: pricing.total,
        items: serde_json::to_string(&lines).map_err(ApiError::internal)?,
        ordered_at: now,
        paid_at: None,
        subtotal: pricing.subtotal,
        pricing: Some(serde_json::to_string(&pricing).map_err(ApiError::internal)?),
        coupon_id: coupon.as_ref().map(|(id, _)| id.to_string()),
        points_burned: pricing.points_burned,
        qty: draft.qty,
        expires_at: Some(to_micros(day.now + SignedDuration::from_secs(timeout))),
        external_reference: None,
        campaign_kind: wave_id.as_ref().map(|_| crate::orders::waves::KIND),
        campaign_id: wave_id,
        team_id: None,
    };
    store::insert(tx.conn(), tenant_id, std::slice::from_ref(&row), now).await?;
    let order = store::require(tx.conn(), tenant_id, row.id.as_str(), false).await?;
    store::emit_created(tx, tenant_id, &row);
    Ok(order.view())
}

/// Check the fields only a checkout order has (and that it has none of an external order's);
/// its payment timeout.
fn check_checkout_fields(request: &CreateOrder) -> ApiResult<i64> {
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
    Ok(timeout)
}

/// The terms of a coupon of the member's (404 for a coupon of someone else's).
async fn coupon_terms(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    coupon_id: &str,
) -> ApiResult<(CouponId, CouponTerms)> {
    let id = CouponId::parse(coupon_id).ok_or_else(|| ApiError::not_found("coupon"))?;
    let stored = coupons::store::fetch_coupon(tx.conn(), tenant_id, &id)
        .await?
        .filter(|c| c.member_id == *member_id)
        .ok_or_else(|| ApiError::not_found("coupon"))?;
    let template = coupons::store::fetch_template(tx.conn(), tenant_id, &stored.template_id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("coupon without template")))?;
    let terms = CouponTerms {
        discount: template.view.discount(),
        max_discount: template.view.max_discount,
        min_spend: template.view.min_spend,
    };
    Ok((id, terms))
}

/// The points rule and what the member holds, for paying `points` of an order with them.
async fn burn_terms(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    points: i64,
    settings: &ProgramSettings,
) -> ApiResult<BurnTerms> {
    Ok(BurnTerms {
        points_to_burn: points,
        burn_points_per_yuan: settings.points.burn_points_per_yuan,
        burn_cap_bp: settings.points.burn_cap_bp,
        available_points: available_points(tx.conn(), tenant_id, member_id).await?,
    })
}

/// Price the basket (the pricing order of [`model`]), its refusals as the API answers them.
fn price_basket(
    draft: &Draft,
    settings: &ProgramSettings,
    coupon: Option<CouponTerms>,
    burn: Option<BurnTerms>,
    member_day: bool,
) -> ApiResult<(Vec<OrderLine>, Pricing)> {
    let tier = draft.tier.as_deref().and_then(|name| {
        settings
            .tiers
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.name.as_str(), t.discount_bp))
    });
    model::price(&draft.inputs, tier, coupon, burn, member_day).map_err(|e| match e {
        PricingError::MinSpendNotMet { min_spend } => ApiError::coded(
            codes::MIN_SPEND_NOT_MET,
            format!("this coupon needs an order of at least {min_spend} fen"),
        )
        .with_details(json!({ "field": "coupon_id", "min_spend": min_spend })),
        PricingError::PointsNotAllowed { max_points, reason } => {
            ApiError::validation("points_to_burn", reason)
                .with_details(json!({ "field": "points_to_burn", "max_points": max_points }))
        }
        PricingError::Overflow => ApiError::validation("items", "the order total is too large"),
    })
}

/// Reserve the lines' stock: a conditional decrement per line; any shortfall refuses the whole
/// order (409 `out_of_stock`, and the transaction is not committed).
async fn reserve_stock(
    tx: &mut Tx,
    tenant_id: &TenantId,
    lines: &[OrderLine],
    now: i64,
) -> ApiResult<()> {
    for line in lines {
        let taken = sqlx::query(
            "UPDATE product SET stock = stock - $1, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND stock >= $1",
        )
        .bind(line.qty)
        .bind(now)
        .bind(tenant_id.as_str())
        .bind(line.product_id.as_str())
        .execute(tx.conn())
        .await?;
        if taken.rows_affected() != 1 {
            return Err(ApiError::conflict(
                codes::OUT_OF_STOCK,
                format!("not enough stock of {}", line.sku),
            )
            .with_details(json!({ "product_id": line.product_id })));
        }
    }
    Ok(())
}

/// Redeem the coupon on the order, for what is left after the tier discount (its minimum
/// spend was checked on that amount).
async fn take_coupon(
    tx: &mut Tx,
    tenant_id: &TenantId,
    draft: &Draft,
    coupon_id: &CouponId,
    pricing: &Pricing,
) -> ApiResult<()> {
    let after_tier = pricing.subtotal - pricing.tier_discount;
    let owner = Some(&draft.member_id);
    coupons::redeem_in(
        tx,
        tenant_id,
        coupon_id,
        owner,
        draft.order_id.as_str(),
        after_tier,
    )
    .await?;
    Ok(())
}

/// Hold the points that pay part of the order: a pending transfer, posted at payment and
/// voided if the order is never paid.
async fn hold_points(
    tx: &mut Tx,
    tenant_id: &TenantId,
    draft: &Draft,
    points: i64,
) -> ApiResult<()> {
    if points == 0 {
        return Ok(());
    }
    let transfer = NewTransfer::internal(
        burn_id(&draft.order_id),
        Address::member(&draft.member_id),
        Address::system("redemption"),
        Asset::Points,
        points,
        "redeem",
        Some(draft.order_id.as_str()),
    )
    .pending(None);
    let status = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
        .await?
        .pop()
        .map(|r| r.status)
        .unwrap_or_default();
    if status != "created" {
        return Err(ApiError::conflict(
            codes::INSUFFICIENT_POINTS,
            "the member does not hold enough points",
        ));
    }
    Ok(())
}

/// An external order: paid elsewhere at `paid_at`, ingested once per `external_reference`, then
/// what being paid means for the member (see [`after_paid`]).
async fn place_external(
    tx: &mut Tx,
    tenant_id: &TenantId,
    request: CreateOrder,
    draft: Draft,
) -> ApiResult<Order> {
    if request.coupon_id.is_some() || request.points_to_burn != 0 {
        return Err(ApiError::validation(
            "source",
            "external orders carry no coupon or points; they were priced elsewhere",
        ));
    }
    let paid_at = external_paid_at(tx, tenant_id, request.paid_at.as_deref()).await?;
    let lines = model::price_lines(&draft.inputs)
        .map_err(|_| ApiError::validation("items", "the order total is too large"))?;
    let subtotal: i64 = lines.iter().map(|l| l.line_total).sum();
    let total = match request.total {
        None => subtotal,
        Some(t) if (0..=model::MAX_MONEY).contains(&t) => t,
        Some(_) => return Err(ApiError::validation("total", "must be 0 or more (fen)")),
    };
    let external_reference = match request.external_reference {
        None => None,
        Some(text) => Some(new_external_reference(tx, tenant_id, &text).await?),
    };
    let now = to_micros(tx.now());
    let row = NewOrder {
        id: draft.order_id,
        member_id: draft.member_id,
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
        qty: draft.qty,
        expires_at: None,
        external_reference,
        campaign_kind: None,
        campaign_id: None,
        team_id: None,
    };
    if let Err(error) = store::insert(tx.conn(), tenant_id, std::slice::from_ref(&row), now).await {
        return Err(if is_unique_violation(&error) {
            ApiError::conflict(
                codes::ORDER_EXISTS,
                "an order with this external_reference was ingested already",
            )
        } else {
            error.into()
        });
    }
    let mut order = store::require(tx.conn(), tenant_id, row.id.as_str(), false).await?;
    store::emit_created(tx, tenant_id, &row);
    after_paid(tx, tenant_id, &mut order).await?;
    Ok(order.view())
}

/// An external order's `paid_at` (needed): an instant in the tenant's zone, not in the future,
/// not before 1990.
async fn external_paid_at(
    tx: &mut Tx,
    tenant_id: &TenantId,
    paid_at: Option<&str>,
) -> ApiResult<i64> {
    let paid_at =
        paid_at.ok_or_else(|| ApiError::validation("paid_at", "external orders need paid_at"))?;
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
    Ok(paid_at)
}

/// A valid external reference no order carries yet (409 `order_exists` naming the order that
/// does).
async fn new_external_reference(
    tx: &mut Tx,
    tenant_id: &TenantId,
    text: &str,
) -> ApiResult<String> {
    let reference = stored_value::model::reference("external_reference", text.trim())?;
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM customer_order WHERE tenant_id = $1 AND external_reference = $2",
    )
    .bind(tenant_id.as_str())
    .bind(reference.as_str())
    .fetch_optional(tx.conn())
    .await?;
    if let Some(existing) = existing {
        return Err(ApiError::conflict(
            codes::ORDER_EXISTS,
            "an order with this external_reference was ingested already",
        )
        .with_details(json!({ "order_id": existing })));
    }
    Ok(reference)
}

/// The earliest payment an external order may carry: 1990-01-01T00:00:00Z (CDNOW's history,
/// the oldest real data shequn is tested on, starts in 1997). Earlier dates are typing errors
/// (year 0001) that would drag every analytics window back by centuries.
const EARLIEST_EXTERNAL_PAYMENT_MICROS: i64 = 631_152_000_000_000;
