//! Subscriptions (周期购): "a box of soy beans every month", paid once or per delivery, shipped
//! on a calendar in the tenant's time zone.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`schedule`] | the calendar and the prepaid refund arithmetic, pure and property-tested |
//! | [`model`] | states, requests and responses |
//! | [`deliveries`] | the calendar written ahead, the cut-off jobs that create each delivery's order, per-delivery wallet payments |
//! | [`store`] | the SQL |
//!
//! A plan names a product, a quantity, a schedule, a number of deliveries (or none:
//! open-ended), a price per delivery, a billing and a cut-off. Subscribing copies the plan's
//! terms (a later change of the plan moves only new subscriptions) and writes the calendar.
//! Prepaid: one order of `price_per_delivery × deliveries` fen, paid like any order (its stock
//! is taken delivery by delivery, not up front); each delivery's order is then a paid order of
//! 0 fen that the warehouse fulfils. Per delivery: each delivery's order is created at its
//! cut-off and paid from the wallet when it can be (see [`deliveries`]).
//!
//! Every change to a delivery (skip, pause, cancel, PATCH) stops at its cut-off: after it the
//! delivery stands (409 `past_cutoff` for a skip or a change aimed at it). Cancelling a prepaid
//! subscription refunds the undelivered deliveries through the order's refund path (so the
//! wallet, points, growth and commissions follow), to the fen, with [`schedule::prepaid_refund`].
//!
//! Subscriptions sit beside distribution, above orders, membership and the ledger: the orders
//! domain reaches them only through the order hooks (an unpaid prepaid order closed cancels its
//! subscription; a full refund of it too; an unpaid delivery order closed skips its delivery),
//! and members through the member hooks (erasure clears delivery addresses). Analytics, above,
//! reads the active subscriptions to hold back repurchase reminders for what is on its way.

pub mod deliveries;
pub mod model;
pub mod schedule;
pub mod store;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::civil::Date;
use jiff::ToSpan as _;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks::{MemberErased, MemberHooks, OrderClosed, OrderHooks, OrderRefunded};
use crate::common::ids::{MemberId, ProductId, TenantId};
use crate::common::json::{self as json_body, Json};
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::text;
use crate::common::time::to_micros;
use crate::members;
use crate::neighbourhood;
use crate::orders::checkout::{self, RefundRequest};
use crate::orders::model::{OrderStatus, MAX_MONEY, MAX_QTY};
use crate::orders::products;
use crate::orders::store as order_store;
use crate::tenants;
use crate::AppState;
use model::{
    Billing, CreatePlan, Delivery, DeliveryStatus, Forecast, ForecastQuery, ForecastWeek,
    MemberSubscriptionQuery, Plan, PlanPage, PlanQuery, ResumeRequest, SkipRequest, Subscribe,
    Subscription, SubscriptionPage, SubscriptionQuery, SubscriptionStatus, UpdatePlan,
    UpdateSubscription,
};
use store::StoredSubscription;

crate::typed_id!(SubscriptionPlanId, "spl");
crate::typed_id!(SubscriptionId, "sub");

pub use deliveries::{DELIVERY_JOB, PAYMENT_JOB};

/// Largest page of plans and subscriptions.
pub const MAX_PAGE: i64 = 200;
/// Most deliveries of a fixed-length plan.
pub const MAX_DELIVERIES: i64 = 120;
/// Most cut-off days.
pub const MAX_CUTOFF_DAYS: i64 = 30;
/// Longest delivery address (characters).
pub const MAX_ADDRESS_CHARS: usize = 500;
/// Longest leader id (bytes).
pub const MAX_LEADER_ID_LEN: usize = 64;
/// Longest plan name (characters).
pub const MAX_NAME_CHARS: usize = 200;
/// How far ahead a subscription may start (days).
pub const MAX_START_DAYS: i64 = 366;
/// Most weeks of a forecast.
pub const MAX_FORECAST_WEEKS: i64 = 26;

/// Every subscription route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_plan, list_plans))
        .routes(routes!(get_plan, update_plan))
        .routes(routes!(forecast))
        .routes(routes!(subscribe, member_subscriptions))
        .routes(routes!(list_subscriptions))
        .routes(routes!(get_subscription, update_subscription))
        .routes(routes!(skip))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
}

// ----- hooks -----

/// Subscriptions' reactions to orders and members (DESIGN rule 12), registered by
/// `server::hooks`.
pub struct SubscriptionHooks;

/// Whether an order is a subscription's: its prepaid order or one of its delivery orders, both
/// written by [`deliveries::order_row`] with campaign kind [`deliveries::ORDER_KIND`]. Every
/// other order (a flash sale's expiry, a shop refund) leaves the order hooks at once, without a
/// query.
fn is_subscription_order(campaign_kind: Option<&str>) -> bool {
    campaign_kind == Some(deliveries::ORDER_KIND)
}

#[async_trait]
impl OrderHooks for SubscriptionHooks {
    async fn on_closed(&self, tx: &mut Tx, order: &OrderClosed<'_>) -> ApiResult<()> {
        if !is_subscription_order(order.campaign_kind) {
            return Ok(());
        }
        let now = to_micros(tx.now());
        if let Some(mut sub) =
            store::subscription_of_order(tx.conn(), order.tenant_id, order.order_id).await?
        {
            // The prepaid order was never paid: nothing was bought.
            if matches!(
                sub.status,
                SubscriptionStatus::Active | SubscriptionStatus::Paused
            ) {
                end(tx, order.tenant_id, &mut sub, "unpaid", 0, now).await?;
            }
            return Ok(());
        }
        // An unpaid delivery order: its delivery is skipped.
        sqlx::query(
            "UPDATE subscription_delivery SET status = 'skipped', reason = 'unpaid', updated_at = $1 \
             WHERE tenant_id = $2 AND order_id = $3 AND status = 'ordered'",
        )
        .bind(now)
        .bind(order.tenant_id.as_str())
        .bind(order.order_id)
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    async fn on_refunded(&self, tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
        if !refund.full || !is_subscription_order(refund.campaign_kind) {
            return Ok(());
        }
        let Some(mut sub) =
            store::subscription_of_order(tx.conn(), refund.tenant_id, refund.order_id).await?
        else {
            return Ok(());
        };
        // A prepaid order refunded in full by the merchant ends what it paid for.
        if matches!(
            sub.status,
            SubscriptionStatus::Active | SubscriptionStatus::Paused
        ) {
            let now = to_micros(tx.now());
            sub.refunded = refund.refunded_total;
            end(tx, refund.tenant_id, &mut sub, "order_refunded", 0, now).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MemberHooks for SubscriptionHooks {
    /// Erasure clears delivery addresses and leaders and ends the subscriptions' future
    /// deliveries; orders and money stay as they were.
    async fn on_erased(&self, tx: &mut Tx, member: &MemberErased<'_>) -> ApiResult<()> {
        let now = to_micros(tx.now());
        let filter = store::Filter {
            member_id: Some(member.member_id.as_str()),
            ..store::Filter::default()
        };
        let subs = store::subscriptions(tx.conn(), member.tenant_id, &filter, None, 10_000).await?;
        for mut sub in subs {
            if matches!(
                sub.status,
                SubscriptionStatus::Active | SubscriptionStatus::Paused
            ) {
                end(tx, member.tenant_id, &mut sub, "member_erased", 0, now).await?;
            }
        }
        sqlx::query(
            "UPDATE subscription SET address = NULL, pickup_leader_id = NULL, updated_at = $1 \
             WHERE tenant_id = $2 AND member_id = $3",
        )
        .bind(now)
        .bind(member.tenant_id.as_str())
        .bind(member.member_id.as_str())
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}

/// Cancel: future deliveries dropped (those past their cut-off stand), status cancelled,
/// `subscription.cancelled` with what was refunded.
async fn end(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &mut StoredSubscription,
    reason: &str,
    refund: i64,
    now: i64,
) -> ApiResult<()> {
    stop(tx, tenant_id, sub, now).await?;
    announce_cancel(tx, tenant_id, sub, reason, refund);
    Ok(())
}

/// Future deliveries dropped, status cancelled (no event yet).
async fn stop(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &mut StoredSubscription,
    now: i64,
) -> ApiResult<()> {
    store::drop_future(tx.conn(), tenant_id, &sub.id, now).await?;
    sub.status = SubscriptionStatus::Cancelled;
    store::save_subscription(tx.conn(), tenant_id, sub, now).await?;
    Ok(())
}

fn announce_cancel(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &StoredSubscription,
    reason: &str,
    refund: i64,
) {
    tx.emit(NewEvent::new(
        tenant_id,
        "subscription.cancelled",
        Some(sub.id.as_str()),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "reason": reason,
            "refund": refund, "refunded": sub.refunded, "order_id": sub.order_id,
        }),
    ));
}

// ----- plans -----

fn check_money(field: &str, value: i64) -> ApiResult<i64> {
    if (0..=MAX_MONEY).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(field, "must be 0 or more (fen)"))
    }
}

fn check_cutoff(value: i64) -> ApiResult<i64> {
    if (0..=MAX_CUTOFF_DAYS).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            "cutoff_days",
            format!("must be 0 to {MAX_CUTOFF_DAYS}"),
        ))
    }
}

fn check_qty(value: i64) -> ApiResult<i64> {
    if (1..=MAX_QTY).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            "qty",
            format!("must be 1 to {MAX_QTY}"),
        ))
    }
}

fn check_name(name: &str) -> ApiResult<String> {
    text::required("name", name, MAX_NAME_CHARS)
}

fn plan_id(text: &str) -> ApiResult<SubscriptionPlanId> {
    SubscriptionPlanId::parse(text).ok_or_else(|| ApiError::not_found("subscription plan"))
}

fn subscription_id(text: &str) -> ApiResult<SubscriptionId> {
    SubscriptionId::parse(text).ok_or_else(|| ApiError::not_found("subscription"))
}

/// Create a plan. A prepaid plan needs a number of deliveries; `price_per_delivery ×
/// deliveries` must stay within an order's limit.
#[utoipa::path(post, path = "/v1/subscription-plans", tag = "subscriptions",
    request_body = CreatePlan,
    responses((status = 201, body = Plan), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn create_plan(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreatePlan>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    let name = check_name(&request.name)?;
    let qty = check_qty(request.qty)?;
    let schedule = request.schedule.checked().map_err(|e| match e {
        schedule::ScheduleError::Every => ApiError::validation(
            "schedule.every",
            format!("must be 1 to {}", schedule::MAX_EVERY),
        ),
        schedule::ScheduleError::DaysOfMonth => ApiError::validation(
            "schedule.days_of_month",
            "must hold 1 to 31 days, each 1 to 31",
        ),
    })?;
    let price = check_money("price_per_delivery", request.price_per_delivery)?;
    let cutoff_days = check_cutoff(request.cutoff_days.unwrap_or(2))?;
    match request.deliveries {
        Some(n) if !(1..=MAX_DELIVERIES).contains(&n) => {
            return Err(ApiError::validation(
                "deliveries",
                format!("must be 1 to {MAX_DELIVERIES}, or null (open-ended)"),
            ))
        }
        None if request.billing == Billing::Prepaid => {
            return Err(ApiError::validation(
                "deliveries",
                "a prepaid plan needs a number of deliveries",
            ))
        }
        Some(n) if price.checked_mul(n).is_none_or(|t| t > MAX_MONEY) => {
            return Err(ApiError::validation(
                "price_per_delivery",
                "price_per_delivery × deliveries is too large for one order",
            ))
        }
        _ => {}
    }
    let product_id =
        ProductId::parse(&request.product_id).ok_or_else(|| ApiError::not_found("product"))?;
    let mut tx = state.begin().await?;
    products::fetch(tx.conn(), &auth.tenant_id, product_id.as_str()).await?;
    let id = SubscriptionPlanId::generate();
    let now = to_micros(tx.now());
    store::insert_plan(
        tx.conn(),
        &auth.tenant_id,
        &store::NewPlan {
            id: id.as_str(),
            name: &name,
            product_id: product_id.as_str(),
            qty,
            schedule: &schedule,
            deliveries: request.deliveries,
            price_per_delivery: price,
            billing: request.billing,
            cutoff_days,
        },
        now,
    )
    .await?;
    let plan = store::plan(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription_plan.created",
        Some(id.as_str()),
        json!({ "plan_id": plan.id, "product_id": plan.product_id, "billing": plan.billing }),
    ));
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

/// Plans, newest first.
#[utoipa::path(get, path = "/v1/subscription-plans", tag = "subscriptions", params(PlanQuery),
    responses((status = 200, body = PlanPage), (status = 422)), security(("api_key" = [])))]
async fn list_plans(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PlanQuery>,
) -> ApiResult<Json<PlanPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), SubscriptionPlanId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut data = store::plans(
        &mut conn,
        &auth.tenant_id,
        query.active,
        cursor.as_ref().map(SubscriptionPlanId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |p| p.id.clone());
    Ok(Json(PlanPage { data, next_cursor }))
}

/// One plan.
#[utoipa::path(get, path = "/v1/subscription-plans/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "plan id")),
    responses((status = 200, body = Plan), (status = 404)), security(("api_key" = [])))]
async fn get_plan(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Plan>> {
    let id = plan_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(
        store::plan(&mut conn, &auth.tenant_id, id.as_str()).await?,
    ))
}

/// Change a plan (name, price, cut-off) for new subscriptions; `active: false` stops new
/// subscriptions (those running go on).
#[utoipa::path(patch, path = "/v1/subscription-plans/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "plan id")), request_body = UpdatePlan,
    responses((status = 200, body = Plan), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn update_plan(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdatePlan>,
) -> ApiResult<Json<Plan>> {
    let id = plan_id(&id)?;
    let mut tx = state.begin().await?;
    let mut plan = store::plan(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    if let Some(name) = &request.name {
        plan.name = check_name(name)?;
    }
    if let Some(active) = request.active {
        plan.active = active;
    }
    if let Some(price) = request.price_per_delivery {
        plan.price_per_delivery = check_money("price_per_delivery", price)?;
        if let Some(n) = plan.deliveries {
            if price.checked_mul(n).is_none_or(|t| t > MAX_MONEY) {
                return Err(ApiError::validation(
                    "price_per_delivery",
                    "price_per_delivery × deliveries is too large for one order",
                ));
            }
        }
    }
    if let Some(cutoff) = request.cutoff_days {
        plan.cutoff_days = check_cutoff(cutoff)?;
    }
    let now = to_micros(tx.now());
    store::save_plan(tx.conn(), &auth.tenant_id, &plan, now).await?;
    let plan = store::plan(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription_plan.updated",
        Some(id.as_str()),
        json!({ "plan_id": plan.id, "active": plan.active }),
    ));
    tx.commit().await?;
    Ok(Json(plan))
}

/// Units to deliver per week for a plan, this week first (Monday to Sunday, the tenant's
/// days): deliveries ordered, and those scheduled of active subscriptions.
#[utoipa::path(get, path = "/v1/subscription-plans/{id}/forecast", tag = "subscriptions",
    params(("id" = String, Path, description = "plan id"), ForecastQuery),
    responses((status = 200, body = Forecast), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn forecast(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<ForecastQuery>,
) -> ApiResult<Json<Forecast>> {
    let weeks = pagination::count("weeks", query.weeks, 8, MAX_FORECAST_WEEKS)?;
    let id = plan_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let plan = store::plan(&mut conn, &auth.tenant_id, id.as_str()).await?;
    let zone = tenants::time_zone(&mut conn, &auth.tenant_id).await?;
    let today = state.clock.now().to_zoned(zone).date();
    let monday = today
        .checked_sub(i64::from(today.weekday().to_monday_zero_offset()).days())
        .unwrap_or(today);
    let until = monday.checked_add((weeks * 7 - 1).days()).unwrap_or(monday);
    let days =
        store::plan_units_by_day(&mut conn, &auth.tenant_id, &plan.id, monday, until).await?;
    let mut data: Vec<ForecastWeek> = (0..weeks)
        .map(|w| ForecastWeek {
            week_start: monday
                .checked_add((w * 7).days())
                .unwrap_or(monday)
                .to_string(),
            units: 0,
            deliveries: 0,
        })
        .collect();
    for (day, units, count) in days {
        let Ok(day) = day.parse::<Date>() else {
            continue;
        };
        let index = (day - monday).get_days() / 7;
        if let Some(week) = usize::try_from(index).ok().and_then(|i| data.get_mut(i)) {
            week.units = week.units.saturating_add(units);
            week.deliveries = week.deliveries.saturating_add(count);
        }
    }
    let total_units = data.iter().map(|w| w.units).fold(0i64, i64::saturating_add);
    Ok(Json(Forecast {
        plan_id: plan.id,
        product_id: plan.product_id,
        weeks: data,
        total_units,
    }))
}

// ----- subscribing -----

fn check_delivery(delivery: Delivery) -> ApiResult<Delivery> {
    match delivery {
        Delivery::Address { address } => Ok(Delivery::Address {
            address: text::required("delivery.address", &address, MAX_ADDRESS_CHARS)?,
        }),
        Delivery::Leader { leader_id } => {
            let id = leader_id.trim();
            // The id's form here; that it names an active leader, in the transaction.
            if id.is_empty()
                || id.len() > MAX_LEADER_ID_LEN
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ApiError::validation(
                    "delivery.leader_id",
                    "must be a leader id (letters, digits, _ and -, at most 64)",
                ));
            }
            Ok(Delivery::Leader {
                leader_id: id.to_owned(),
            })
        }
    }
}

/// A pickup leader named by a delivery must be one of the tenant's leaders (404) that takes
/// orders (409 `leader_not_active` when paused or closed); an address needs no check.
async fn require_pickup_leader(
    tx: &mut Tx,
    tenant_id: &TenantId,
    delivery: &Delivery,
) -> ApiResult<()> {
    let Delivery::Leader { leader_id } = delivery else {
        return Ok(());
    };
    let leader = neighbourhood::leaders::require(tx.conn(), tenant_id, leader_id, false).await?;
    if leader.status != neighbourhood::model::LeaderStatus::Active {
        return Err(ApiError::conflict(
            codes::LEADER_NOT_ACTIVE,
            "this leader takes no new deliveries (paused or closed)",
        ));
    }
    Ok(())
}

fn parse_date(field: &str, text: &str) -> ApiResult<Date> {
    text.trim()
        .parse::<Date>()
        .map_err(|_| ApiError::validation(field, "must be a day YYYY-MM-DD"))
}

fn past_cutoff(date: Date, cutoff_at: Option<i64>) -> ApiError {
    ApiError::conflict(
        codes::PAST_CUTOFF,
        format!("the cut-off of the delivery on {date} has passed; it can no longer change"),
    )
    .with_details(json!({
        "date": date.to_string(),
        "cutoff_at": cutoff_at.map(crate::common::time::micros_to_rfc3339),
    }))
}

/// The subscription with its calendar.
async fn view(
    tx_conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    sub: &StoredSubscription,
) -> ApiResult<Subscription> {
    let deliveries = store::delivery_views(tx_conn, tenant_id, &sub.id).await?;
    Ok(sub.view(deliveries))
}

/// Subscribe a member to a plan from `start_date`: 201 with the calendar. Prepaid: the
/// subscription's `order_id` is the order to pay (for every delivery, within its payment
/// timeout; unpaid, the subscription is cancelled). 409 `plan_inactive`, 409
/// `past_cutoff` when the first day's cut-off has passed.
#[utoipa::path(post, path = "/v1/members/{id}/subscriptions", tag = "subscriptions",
    params(("id" = String, Path, description = "member id")), request_body = Subscribe,
    responses((status = 201, body = Subscription), (status = 404),
              (status = 409, description = "plan_inactive, past_cutoff, member_erased"),
              (status = 422)),
    security(("api_key" = [])))]
async fn subscribe(
    State(state): State<AppState>,
    auth: Auth,
    Path(member): Path<String>,
    Json(request): Json<Subscribe>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
    let member_id = members::member_id(&member)?;
    let plan_id = plan_id(&request.plan_id)?;
    let start = parse_date("start_date", &request.start_date)?;
    let delivery = check_delivery(request.delivery)?;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), &auth.tenant_id, &member_id).await?;
    require_pickup_leader(&mut tx, &auth.tenant_id, &delivery).await?;
    let plan = store::plan(tx.conn(), &auth.tenant_id, plan_id.as_str()).await?;
    if !plan.active {
        return Err(ApiError::conflict(
            codes::PLAN_INACTIVE,
            "this subscription plan takes no new subscriptions",
        ));
    }
    let zone = tenants::time_zone(tx.conn(), &auth.tenant_id).await?;
    let earliest = deliveries::earliest_day(tx.now(), plan.cutoff_days, &zone);
    if start < earliest {
        return Err(past_cutoff(start, None).with_details(json!({
            "field": "start_date", "earliest": earliest.to_string(),
        })));
    }
    if start
        > earliest
            .checked_add(MAX_START_DAYS.days())
            .unwrap_or(earliest)
    {
        return Err(ApiError::validation(
            "start_date",
            format!("must be within {MAX_START_DAYS} days"),
        ));
    }
    let now = to_micros(tx.now());
    let (address, leader_id) = match delivery {
        Delivery::Address { address } => (Some(address), None),
        Delivery::Leader { leader_id } => (None, Some(leader_id)),
    };
    let mut sub = StoredSubscription {
        id: SubscriptionId::generate().to_string(),
        member_id: member_id.clone(),
        plan_id: plan.id.clone(),
        product_id: plan.product_id.clone(),
        qty: plan.qty,
        schedule: plan.schedule.clone(),
        anchor_date: start,
        deliveries: plan.deliveries,
        price_per_delivery: plan.price_per_delivery,
        billing: plan.billing,
        cutoff_days: plan.cutoff_days,
        status: SubscriptionStatus::Active,
        pause_reason: None,
        address,
        leader_id,
        order_id: None,
        refunded: 0,
        ending_notified: false,
        created_at: now,
        updated_at: now,
    };
    if plan.billing == Billing::Prepaid {
        sub.order_id = Some(prepaid_order(&mut tx, &auth.tenant_id, &sub, start, &zone).await?);
    }
    store::insert_subscription(tx.conn(), &auth.tenant_id, &sub).await?;
    let dates = deliveries::extend(&mut tx, &auth.tenant_id, &sub, start, &zone).await?;
    let first: Vec<String> = dates.iter().take(6).map(Date::to_string).collect();
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription.created",
        Some(sub.id.as_str()),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "plan_id": sub.plan_id,
            "billing": sub.billing, "order_id": sub.order_id, "dates": first,
        }),
    ));
    let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// A prepaid subscription's order: every delivery's price, pending payment until the first
/// cut-off at the latest (a delivery never waits for a payment that may not come).
async fn prepaid_order(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &StoredSubscription,
    start: Date,
    zone: &jiff::tz::TimeZone,
) -> ApiResult<String> {
    let count = sub.deliveries.unwrap_or(1);
    let total = sub
        .price_per_delivery
        .checked_mul(count)
        .ok_or_else(|| ApiError::validation("price_per_delivery", "the total is too large"))?;
    let qty = sub
        .qty
        .checked_mul(count)
        .ok_or_else(|| ApiError::validation("qty", "the total is too large"))?;
    let product = products::fetch(tx.conn(), tenant_id, &sub.product_id).await?;
    let now = to_micros(tx.now());
    let timeout = i64::try_from(
        jiff::SignedDuration::from_secs(crate::orders::model::DEFAULT_PAYMENT_TIMEOUT_SECS)
            .as_micros(),
    )
    .unwrap_or(0);
    let first_cutoff = deliveries::cutoff_at(start, sub.cutoff_days, zone)?;
    let expires = now.saturating_add(timeout).min(first_cutoff);
    let row = deliveries::order_row(
        sub,
        &product,
        qty,
        total,
        OrderStatus::PendingPayment,
        now,
        Some(expires),
    )?;
    order_store::insert(tx.conn(), tenant_id, std::slice::from_ref(&row), now).await?;
    order_store::emit_created(tx, tenant_id, &row);
    Ok(row.id.to_string())
}

async fn page(
    state: &AppState,
    tenant_id: &TenantId,
    filter: store::Filter<'_>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> ApiResult<SubscriptionPage> {
    let limit = pagination::limit(limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(cursor, SubscriptionId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut subs = store::subscriptions(
        &mut conn,
        tenant_id,
        &filter,
        cursor.as_ref().map(SubscriptionId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut subs, limit, |s| s.id.clone());
    let mut data = Vec::with_capacity(subs.len());
    for sub in &subs {
        data.push(view(&mut conn, tenant_id, sub).await?);
    }
    Ok(SubscriptionPage { data, next_cursor })
}

/// A member's subscriptions, newest first.
#[utoipa::path(get, path = "/v1/members/{id}/subscriptions", tag = "subscriptions",
    params(("id" = String, Path, description = "member id"), MemberSubscriptionQuery),
    responses((status = 200, body = SubscriptionPage), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn member_subscriptions(
    State(state): State<AppState>,
    auth: Auth,
    Path(member): Path<String>,
    Query(query): Query<MemberSubscriptionQuery>,
) -> ApiResult<Json<SubscriptionPage>> {
    let member_id: MemberId = members::member_id(&member)?;
    {
        let mut conn = state.db.read().acquire().await?;
        members::store::require(&mut conn, &auth.tenant_id, &member_id).await?;
    }
    let filter = store::Filter {
        member_id: Some(member_id.as_str()),
        ..store::Filter::default()
    };
    Ok(Json(
        page(
            &state,
            &auth.tenant_id,
            filter,
            query.limit,
            query.cursor.as_deref(),
        )
        .await?,
    ))
}

/// Subscriptions, newest first, by status and plan.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(SubscriptionQuery),
    responses((status = 200, body = SubscriptionPage), (status = 422)),
    security(("api_key" = [])))]
async fn list_subscriptions(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<SubscriptionQuery>,
) -> ApiResult<Json<SubscriptionPage>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(SubscriptionStatus::parse(text).ok_or_else(|| {
            ApiError::validation("status", "must be active, paused, cancelled or completed")
        })?),
    };
    let filter = store::Filter {
        member_id: None,
        status,
        plan_id: query.plan_id.as_deref(),
    };
    Ok(Json(
        page(
            &state,
            &auth.tenant_id,
            filter,
            query.limit,
            query.cursor.as_deref(),
        )
        .await?,
    ))
}

/// A subscription with its calendar (days in the tenant's zone).
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = Subscription), (status = 404)), security(("api_key" = [])))]
async fn get_subscription(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    let id = subscription_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let sub = store::subscription(&mut conn, &auth.tenant_id, id.as_str(), false)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))?;
    Ok(Json(view(&mut conn, &auth.tenant_id, &sub).await?))
}

/// The subscription, locked for a change, or 404.
async fn locked(tx: &mut Tx, tenant_id: &TenantId, id: &str) -> ApiResult<StoredSubscription> {
    let id = subscription_id(id)?;
    store::subscription(tx.conn(), tenant_id, id.as_str(), true)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))
}

fn not_active(sub: &StoredSubscription) -> ApiError {
    ApiError::conflict(
        codes::SUBSCRIPTION_NOT_ACTIVE,
        format!("this subscription is {}", sub.status),
    )
    .with_details(json!({ "status": sub.status }))
}

/// Change the quantity (per-delivery billing) or where deliveries go, from `from_date` (default:
/// the next delivery not past its cut-off). 409 `past_cutoff` when `from_date`'s cut-off passed.
#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "subscription id")),
    request_body = UpdateSubscription,
    responses((status = 200, body = Subscription), (status = 404),
              (status = 409, description = "past_cutoff, subscription_not_active"), (status = 422)),
    security(("api_key" = [])))]
async fn update_subscription(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateSubscription>,
) -> ApiResult<Json<Subscription>> {
    let qty = request.qty.map(check_qty).transpose()?;
    let delivery = request.delivery.map(check_delivery).transpose()?;
    let from_date = request
        .from_date
        .as_deref()
        .map(|t| parse_date("from_date", t))
        .transpose()?;
    let mut tx = state.begin().await?;
    let mut sub = locked(&mut tx, &auth.tenant_id, &id).await?;
    if matches!(
        sub.status,
        SubscriptionStatus::Cancelled | SubscriptionStatus::Completed
    ) {
        return Err(not_active(&sub));
    }
    if let Some(delivery) = &delivery {
        require_pickup_leader(&mut tx, &auth.tenant_id, delivery).await?;
    }
    if qty.is_some_and(|q| q != sub.qty) && sub.billing == Billing::Prepaid {
        return Err(ApiError::validation(
            "qty",
            "a prepaid subscription delivers the quantity paid for",
        ));
    }
    let now = to_micros(tx.now());
    let rows = store::deliveries(tx.conn(), &auth.tenant_id, &sub.id).await?;
    let from = match from_date {
        Some(date) => {
            let row = rows.iter().find(|d| d.date == date).ok_or_else(|| {
                ApiError::validation("from_date", "no delivery of this subscription on this day")
            })?;
            if row.status != DeliveryStatus::Scheduled || row.cutoff_at <= now {
                return Err(past_cutoff(date, Some(row.cutoff_at)));
            }
            Some(date)
        }
        None => rows
            .iter()
            .find(|d| d.status == DeliveryStatus::Scheduled && d.cutoff_at > now)
            .map(|d| d.date),
    };
    if let Some(qty) = qty {
        sub.qty = qty;
        if let Some(from) = from {
            store::set_future_qty(tx.conn(), &auth.tenant_id, &sub.id, from, qty, now).await?;
        }
    }
    if let Some(delivery) = delivery {
        match delivery {
            Delivery::Address { address } => {
                sub.address = Some(address);
                sub.leader_id = None;
            }
            Delivery::Leader { leader_id } => {
                sub.address = None;
                sub.leader_id = Some(leader_id);
            }
        }
    }
    store::save_subscription(tx.conn(), &auth.tenant_id, &sub, now).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription.updated",
        Some(sub.id.as_str()),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "qty": sub.qty,
            "from_date": from.map(|d| d.to_string()),
        }),
    ));
    let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Skip one delivery (`{"date"}`); a fixed-length subscription adds a delivery at the end, so
/// every delivery paid for still comes. 409 `past_cutoff` after that delivery's cut-off.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/skip", tag = "subscriptions",
    params(("id" = String, Path, description = "subscription id")), request_body = SkipRequest,
    responses((status = 200, body = Subscription), (status = 404),
              (status = 409, description = "past_cutoff, subscription_not_active"), (status = 422)),
    security(("api_key" = [])))]
async fn skip(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<SkipRequest>,
) -> ApiResult<Json<Subscription>> {
    let date = parse_date("date", &request.date)?;
    let mut tx = state.begin().await?;
    let sub = locked(&mut tx, &auth.tenant_id, &id).await?;
    let now = to_micros(tx.now());
    let delivery = store::delivery(tx.conn(), &auth.tenant_id, &sub.id, date)
        .await?
        .ok_or_else(|| {
            ApiError::validation("date", "no delivery of this subscription on this day")
        })?;
    if delivery.status == DeliveryStatus::Skipped {
        let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
        return Ok(Json(body));
    }
    if delivery.status != DeliveryStatus::Scheduled || delivery.cutoff_at <= now {
        return Err(past_cutoff(date, Some(delivery.cutoff_at)));
    }
    if sub.status != SubscriptionStatus::Active {
        return Err(not_active(&sub));
    }
    store::move_delivery(
        tx.conn(),
        &auth.tenant_id,
        &sub.id,
        date,
        DeliveryStatus::Scheduled,
        DeliveryStatus::Skipped,
        Some("requested"),
        None,
        now,
    )
    .await?;
    let zone = tenants::time_zone(tx.conn(), &auth.tenant_id).await?;
    let added = if sub.deliveries.is_some() {
        deliveries::extend(&mut tx, &auth.tenant_id, &sub, date, &zone).await?
    } else {
        Vec::new()
    };
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription.skipped",
        Some(sub.id.as_str()),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "date": date.to_string(),
            "added_date": added.first().map(Date::to_string),
        }),
    ));
    let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Pause: the deliveries whose cut-off has not passed are taken off the calendar (those past it
/// still come). Pausing a paused subscription changes nothing.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/pause", tag = "subscriptions",
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = Subscription), (status = 404),
              (status = 409, description = "subscription_not_active")),
    security(("api_key" = [])))]
async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    let mut tx = state.begin().await?;
    let mut sub = locked(&mut tx, &auth.tenant_id, &id).await?;
    match sub.status {
        SubscriptionStatus::Paused => {
            let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
            return Ok(Json(body));
        }
        SubscriptionStatus::Active => {}
        SubscriptionStatus::Cancelled | SubscriptionStatus::Completed => {
            return Err(not_active(&sub))
        }
    }
    let now = to_micros(tx.now());
    store::drop_future(tx.conn(), &auth.tenant_id, &sub.id, now).await?;
    sub.status = SubscriptionStatus::Paused;
    sub.pause_reason = Some("requested".into());
    store::save_subscription(tx.conn(), &auth.tenant_id, &sub, now).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription.paused",
        Some(sub.id.as_str()),
        json!({ "subscription_id": sub.id, "member_id": sub.member_id, "reason": "requested" }),
    ));
    let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Resume a paused subscription (`{"date"}` optional: the first delivery day after the pause,
/// default the earliest whose cut-off is ahead); an `every` schedule moves on from it.
/// Resuming an active subscription changes nothing.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", tag = "subscriptions",
    params(("id" = String, Path, description = "subscription id")),
    request_body(content = Option<ResumeRequest>),
    responses((status = 200, body = Subscription), (status = 404),
              (status = 409, description = "past_cutoff, subscription_not_active"), (status = 422)),
    security(("api_key" = [])))]
async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Subscription>> {
    // No body, or JSON null, is the default resume.
    let blank = body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null";
    let request: ResumeRequest = if blank {
        ResumeRequest::default()
    } else {
        json_body::from_slice(&body)?
    };
    let date = request
        .date
        .as_deref()
        .map(|t| parse_date("date", t))
        .transpose()?;
    let mut tx = state.begin().await?;
    let mut sub = locked(&mut tx, &auth.tenant_id, &id).await?;
    match sub.status {
        SubscriptionStatus::Active => {
            let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
            return Ok(Json(body));
        }
        SubscriptionStatus::Paused => {}
        SubscriptionStatus::Cancelled | SubscriptionStatus::Completed => {
            return Err(not_active(&sub))
        }
    }
    let zone = tenants::time_zone(tx.conn(), &auth.tenant_id).await?;
    let earliest = deliveries::earliest_day(tx.now(), sub.cutoff_days, &zone);
    let from = date.unwrap_or(earliest);
    if from < earliest {
        return Err(past_cutoff(from, None)
            .with_details(json!({ "field": "date", "earliest": earliest.to_string() })));
    }
    if from
        > earliest
            .checked_add(MAX_START_DAYS.days())
            .unwrap_or(earliest)
    {
        return Err(ApiError::validation(
            "date",
            format!("must be within {MAX_START_DAYS} days"),
        ));
    }
    let now = to_micros(tx.now());
    sub.anchor_date = schedule::resumed_anchor(&sub.schedule, sub.anchor_date, from);
    sub.status = SubscriptionStatus::Active;
    sub.pause_reason = None;
    store::save_subscription(tx.conn(), &auth.tenant_id, &sub, now).await?;
    let dates = deliveries::extend(&mut tx, &auth.tenant_id, &sub, from, &zone).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "subscription.resumed",
        Some(sub.id.as_str()),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "date": from.to_string(),
            "next_date": dates.first().map(Date::to_string),
        }),
    ));
    let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Cancel: deliveries whose cut-off has not passed are dropped; a prepaid subscription's
/// undelivered deliveries are refunded through its order, exactly (`refunded`), an unpaid
/// prepaid order is cancelled. Cancelling a cancelled subscription changes nothing.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions",
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 200, body = Subscription), (status = 404),
              (status = 409, description = "subscription_not_active")),
    security(("api_key" = [])))]
async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscription>> {
    let mut tx = state.begin().await?;
    let mut sub = locked(&mut tx, &auth.tenant_id, &id).await?;
    match sub.status {
        SubscriptionStatus::Cancelled => {
            let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
            return Ok(Json(body));
        }
        SubscriptionStatus::Active | SubscriptionStatus::Paused => {}
        SubscriptionStatus::Completed => return Err(not_active(&sub)),
    }
    let now = to_micros(tx.now());
    // Cancelled first, so that the order hooks of the refund below find nothing to end.
    stop(&mut tx, &auth.tenant_id, &mut sub, now).await?;
    let refund = match (&sub.billing, sub.order_id.clone()) {
        (Billing::Prepaid, Some(order_id)) => {
            refund_undelivered(&mut tx, &auth.tenant_id, &sub, &order_id).await?
        }
        _ => 0,
    };
    if refund > 0 {
        sub.refunded = sub.refunded.saturating_add(refund);
        store::save_subscription(tx.conn(), &auth.tenant_id, &sub, now).await?;
    }
    announce_cancel(&mut tx, &auth.tenant_id, &sub, "requested", refund);
    let body = view(tx.conn(), &auth.tenant_id, &sub).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Refund a cancelled prepaid subscription's undelivered deliveries through its order (an
/// unpaid order is cancelled instead); the amount refunded.
async fn refund_undelivered(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &StoredSubscription,
    order_id: &str,
) -> ApiResult<i64> {
    let order = order_store::require(tx.conn(), tenant_id, order_id, true).await?;
    match order.status {
        OrderStatus::PendingPayment => {
            checkout::close_unpaid_in(tx, tenant_id, &order, OrderStatus::Cancelled).await?;
            return Ok(0);
        }
        OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Completed => {}
        OrderStatus::Cancelled | OrderStatus::Expired | OrderStatus::Refunded => return Ok(0),
    }
    // Delivered: ordered, or past the cut-off and about to be ordered (those stay).
    let delivered = store::deliveries(tx.conn(), tenant_id, &sub.id)
        .await?
        .iter()
        .filter(|d| {
            matches!(
                d.status,
                DeliveryStatus::Ordered | DeliveryStatus::Scheduled
            )
        })
        .count();
    let amount = schedule::prepaid_refund(
        order.total,
        sub.deliveries.unwrap_or(1),
        i64::try_from(delivered).unwrap_or(i64::MAX),
        order.refunded_amount,
    );
    if amount <= 0 {
        return Ok(0);
    }
    let request = RefundRequest {
        amount: Some(amount),
        reason: "subscription cancelled: undelivered deliveries".into(),
        reference: Some(format!("subscription-cancel:{}", sub.id)),
        restock: Some(false),
    };
    let refund = checkout::refund_in(tx, tenant_id, order_id, &request).await?;
    Ok(refund.amount)
}

/// (member, product sku) pairs with an active subscription, for analytics' repurchase
/// reminders: what is on its way needs no reminder.
pub async fn active_member_skus(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
) -> ApiResult<std::collections::HashSet<(String, String)>> {
    Ok(store::active_member_skus(conn, tenant_id)
        .await?
        .into_iter()
        .collect())
}
