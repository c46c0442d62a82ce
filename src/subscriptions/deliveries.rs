//! The calendar at work: delivery rows written ahead (all of a fixed-length subscription, half
//! a year of an open-ended one), a scheduler row per delivery at its cut-off that creates the
//! delivery's order once (DESIGN rule 7: the job's id is `subscription-delivery:<id>:<day>`,
//! and the delivery row moves from `scheduled` to `ordered` with a conditional UPDATE, so a
//! second node or a restart finds it ordered and does nothing), and the wallet payments of
//! per-delivery billing: tried at the cut-off and on the two following days, then the
//! subscription pauses.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, ToSpan as _};
use serde_json::{json, Value};

use super::model::{Billing, DeliveryStatus, SubscriptionStatus};
use super::schedule;
use super::store::{self, StoredSubscription};
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::ids::{OrderId, TenantId};
use crate::common::outbox::NewEvent;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::to_micros;
use crate::orders::checkout::{self, PaymentRequest};
use crate::orders::model::{OrderLine, OrderStatus, Pricing};
use crate::orders::products;
use crate::orders::store::{self as order_store, NewOrder};
use crate::tenants;
use crate::AppState;

/// Scheduler kind: a delivery's cut-off has come; create its order.
pub const DELIVERY_JOB: &str = "subscription.delivery";
/// Scheduler kind: try to pay a per-delivery order from the wallet.
pub const PAYMENT_JOB: &str = "subscription.payment";
/// `campaign_kind` of a subscription's orders (no campaign hooks: they are checkout orders).
pub const ORDER_KIND: &str = "subscription";
/// How far ahead an open-ended subscription's calendar is written (days).
pub const HORIZON_DAYS: i64 = 182;
/// Most delivery rows written ahead at once.
pub const MAX_AHEAD: usize = 400;
/// Days a per-delivery order is tried from the wallet before the subscription pauses.
pub const PAYMENT_DAYS: i64 = 3;

/// The instant a delivery's cut-off falls: the start of the local day `cutoff_days` before it.
pub fn cutoff_at(date: Date, cutoff_days: i64, zone: &TimeZone) -> ApiResult<i64> {
    let day = date
        .checked_sub(cutoff_days.days())
        .map_err(|_| ApiError::validation("date", "is out of range"))?;
    let start = day
        .to_zoned(zone.clone())
        .map_err(|_| ApiError::validation("date", "is out of range"))?;
    Ok(to_micros(start.timestamp()))
}

/// The earliest delivery day whose cut-off is still ahead of `now`.
pub fn earliest_day(now: jiff::Timestamp, cutoff_days: i64, zone: &TimeZone) -> Date {
    let today = now.to_zoned(zone.clone()).date();
    today.checked_add((cutoff_days + 1).days()).unwrap_or(today)
}

fn delivery_job_id(subscription_id: &str, date: Date) -> String {
    format!("subscription-delivery:{subscription_id}:{date}")
}

/// Write the calendar on from `from`: a fixed-length subscription up to its number of
/// deliveries (counting those ordered and scheduled), an open-ended one up to the horizon
/// (at least one day ahead); each new day gets its cut-off job. Returns the new days.
pub async fn extend(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &StoredSubscription,
    from: Date,
    zone: &TimeZone,
) -> ApiResult<Vec<Date>> {
    let existing = store::deliveries(tx.conn(), tenant_id, &sub.id).await?;
    let after_last = existing
        .last()
        .and_then(|d| d.date.tomorrow().ok())
        .map_or(from, |next| next.max(from));
    let today = tx.now().to_zoned(zone.clone()).date();
    let dates = match sub.deliveries {
        Some(total) => {
            let held = existing
                .iter()
                .filter(|d| d.status != DeliveryStatus::Skipped)
                .count();
            let need = usize::try_from(total)
                .unwrap_or(0)
                .saturating_sub(held)
                .min(MAX_AHEAD);
            schedule::dates_from(&sub.schedule, sub.anchor_date, after_last, need)
        }
        None => {
            let until = today
                .checked_add(HORIZON_DAYS.days())
                .unwrap_or(today)
                .max(after_last);
            let mut dates = schedule::dates_between(
                &sub.schedule,
                sub.anchor_date,
                after_last,
                until,
                MAX_AHEAD,
            );
            let scheduled = existing
                .iter()
                .any(|d| d.status == DeliveryStatus::Scheduled);
            if dates.is_empty() && !scheduled {
                dates = schedule::dates_from(&sub.schedule, sub.anchor_date, after_last, 1);
            }
            dates
        }
    };
    let now = to_micros(tx.now());
    let mut rows = Vec::with_capacity(dates.len());
    let mut jobs = Vec::with_capacity(dates.len());
    for date in &dates {
        let at = cutoff_at(*date, sub.cutoff_days, zone)?;
        rows.push((*date, at, sub.qty));
        jobs.push(NewJob {
            id: delivery_job_id(&sub.id, *date),
            kind: DELIVERY_JOB,
            due_at: at,
            payload: json!({ "subscription_id": sub.id, "date": date.to_string() }),
        });
    }
    store::insert_deliveries(tx.conn(), tenant_id, &sub.id, &rows, now).await?;
    scheduler::schedule(tx.conn(), tenant_id, &jobs, now).await?;
    Ok(dates)
}

/// The price of a delivery of `qty` units when the plan sells `plan_qty` for `price` (fen,
/// rounded half up).
pub fn delivery_price(price: i64, plan_qty: i64, qty: i64) -> i64 {
    if plan_qty <= 0 || qty == plan_qty {
        return price;
    }
    let total = i128::from(price) * i128::from(qty);
    let plan_qty = i128::from(plan_qty);
    i64::try_from((total + plan_qty / 2) / plan_qty).unwrap_or(i64::MAX)
}

/// One order line of a subscription's product.
pub fn line(product: &products::Product, qty: i64, total: i64) -> OrderLine {
    OrderLine {
        product_id: product.id.clone(),
        sku: product.sku.clone(),
        name: product.name.clone(),
        qty,
        unit_price: if qty > 0 { total / qty } else { 0 },
        price_kind: "subscription".into(),
        line_total: total,
    }
}

/// A subscription's order row: `status` paid (a prepaid delivery, nothing to pay) or pending
/// payment until `expires_at`.
#[allow(clippy::too_many_arguments)]
pub fn order_row(
    sub: &StoredSubscription,
    product: &products::Product,
    qty: i64,
    total: i64,
    status: OrderStatus,
    now: i64,
    expires_at: Option<i64>,
) -> ApiResult<NewOrder> {
    let lines = vec![line(product, qty, total)];
    let pricing = Pricing {
        subtotal: total,
        total,
        ..Pricing::default()
    };
    Ok(NewOrder {
        id: OrderId::generate(),
        member_id: sub.member_id.clone(),
        source: "checkout",
        status,
        total,
        items: serde_json::to_string(&lines).map_err(ApiError::internal)?,
        ordered_at: now,
        paid_at: (status == OrderStatus::Paid).then_some(now),
        subtotal: total,
        pricing: Some(serde_json::to_string(&pricing).map_err(ApiError::internal)?),
        coupon_id: None,
        points_burned: 0,
        qty,
        expires_at,
        external_reference: None,
        campaign_kind: Some(ORDER_KIND),
        campaign_id: Some(sub.id.clone()),
        team_id: None,
    })
}

fn payload_str<'a>(job: &'a Job, key: &str) -> anyhow::Result<&'a str> {
    job.payload
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("job {} without {key}", job.id))
}

fn api(error: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", error.code, error.message)
}

/// A delivery's cut-off: create its order (once), reserve its stock, announce it.
pub async fn delivery_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let subscription_id = payload_str(job, "subscription_id")?.to_owned();
    let date = store::date_of(payload_str(job, "date")?)?;
    let mut tx = state.begin().await?;
    create_delivery(&mut tx, &job.tenant_id, &subscription_id, date)
        .await
        .map_err(api)?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

/// Create the order of a scheduled delivery; nothing when the day is no longer scheduled.
async fn create_delivery(
    tx: &mut Tx,
    tenant_id: &TenantId,
    subscription_id: &str,
    date: Date,
) -> ApiResult<()> {
    let Some(mut sub) = store::subscription(tx.conn(), tenant_id, subscription_id, true).await?
    else {
        return Ok(());
    };
    let Some(delivery) = store::delivery(tx.conn(), tenant_id, subscription_id, date).await? else {
        return Ok(());
    };
    if delivery.status != DeliveryStatus::Scheduled {
        return Ok(());
    }
    if sub.billing == Billing::Prepaid && !prepaid_order_paid(tx, tenant_id, &sub).await? {
        return Ok(());
    }
    let now = to_micros(tx.now());
    let product = products::fetch(tx.conn(), tenant_id, &sub.product_id).await?;
    reserve(tx, tenant_id, &product, delivery.qty, now).await?;
    let row = match sub.billing {
        Billing::Prepaid => order_row(
            &sub,
            &product,
            delivery.qty,
            0,
            OrderStatus::Paid,
            now,
            None,
        )?,
        Billing::PerDelivery => {
            let plan = store::plan(tx.conn(), tenant_id, &sub.plan_id).await?;
            let total = delivery_price(sub.price_per_delivery, plan.qty, delivery.qty);
            let expires = now.saturating_add(
                SignedDuration::from_hours(24 * PAYMENT_DAYS)
                    .as_micros()
                    .try_into()
                    .unwrap_or(i64::MAX / 4),
            );
            order_row(
                &sub,
                &product,
                delivery.qty,
                total,
                OrderStatus::PendingPayment,
                now,
                Some(expires),
            )?
        }
    };
    order_store::insert(tx.conn(), tenant_id, std::slice::from_ref(&row), now).await?;
    order_store::emit_created(tx, tenant_id, &row);
    store::move_delivery(
        tx.conn(),
        tenant_id,
        subscription_id,
        date,
        DeliveryStatus::Scheduled,
        DeliveryStatus::Ordered,
        None,
        Some(row.id.as_str()),
        now,
    )
    .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "subscription.delivery_created",
        Some(subscription_id),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "product_id": sub.product_id,
            "date": date.to_string(), "qty": delivery.qty, "order_id": row.id,
            "billing": sub.billing, "total": row.total,
        }),
    ));
    if sub.billing == Billing::PerDelivery {
        schedule_payment(tx, tenant_id, &sub.id, date, 1, now).await?;
    }
    after_delivery(tx, tenant_id, &mut sub, date, now).await
}

/// Whether a prepaid subscription's order is paid (a delivery waits for it); a conflict while
/// it still waits for payment so that the job runs again.
async fn prepaid_order_paid(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &StoredSubscription,
) -> ApiResult<bool> {
    let Some(order_id) = sub.order_id.as_deref() else {
        return Ok(false);
    };
    let order = order_store::require(tx.conn(), tenant_id, order_id, false).await?;
    match order.status {
        OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Completed => Ok(true),
        OrderStatus::PendingPayment => Err(ApiError::unavailable(
            "the prepaid order is not paid yet; the delivery waits for its payment deadline",
        )),
        OrderStatus::Cancelled | OrderStatus::Expired | OrderStatus::Refunded => Ok(false),
    }
}

/// Take a delivery's units from stock (409 `out_of_stock`: the job is tried again, with
/// backoff, until the product is restocked or an operator looks at the parked job).
async fn reserve(
    tx: &mut Tx,
    tenant_id: &TenantId,
    product: &products::Product,
    qty: i64,
    now: i64,
) -> ApiResult<()> {
    let taken = sqlx::query(
        "UPDATE product SET stock = stock - $1, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND stock >= $1",
    )
    .bind(qty)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(product.id.as_str())
    .execute(tx.conn())
    .await?;
    if taken.rows_affected() != 1 {
        return Err(ApiError::conflict(
            codes::OUT_OF_STOCK,
            format!(
                "not enough stock of {} for a subscription delivery",
                product.sku
            ),
        ));
    }
    Ok(())
}

/// After a delivery was ordered: `subscription.ending` when one delivery of a fixed-length
/// subscription is left (or none was ever more than one), completion after the last, and an
/// open-ended calendar written further ahead.
async fn after_delivery(
    tx: &mut Tx,
    tenant_id: &TenantId,
    sub: &mut StoredSubscription,
    date: Date,
    now: i64,
) -> ApiResult<()> {
    let zone = tenants::time_zone(tx.conn(), tenant_id).await?;
    let Some(total) = sub.deliveries else {
        if sub.status == SubscriptionStatus::Active {
            let from = date.tomorrow().unwrap_or(date);
            extend(tx, tenant_id, sub, from, &zone).await?;
        }
        return Ok(());
    };
    let rows = store::deliveries(tx.conn(), tenant_id, &sub.id).await?;
    let ordered = rows
        .iter()
        .filter(|d| d.status == DeliveryStatus::Ordered)
        .count();
    let left = total - i64::try_from(ordered).unwrap_or(total);
    let mut changed = false;
    if left <= 1 && !sub.ending_notified && sub.status == SubscriptionStatus::Active {
        sub.ending_notified = true;
        changed = true;
        let last = rows
            .iter()
            .filter(|d| d.status != DeliveryStatus::Skipped)
            .map(|d| d.date)
            .max()
            .unwrap_or(date);
        tx.emit(NewEvent::new(
            tenant_id,
            "subscription.ending",
            Some(sub.id.as_str()),
            json!({
                "subscription_id": sub.id, "member_id": sub.member_id, "plan_id": sub.plan_id,
                "last_date": last.to_string(), "remaining": left,
            }),
        ));
    }
    if left <= 0 && sub.status == SubscriptionStatus::Active {
        sub.status = SubscriptionStatus::Completed;
        changed = true;
        tx.emit(NewEvent::new(
            tenant_id,
            "subscription.completed",
            Some(sub.id.as_str()),
            json!({ "subscription_id": sub.id, "member_id": sub.member_id }),
        ));
    }
    if changed {
        store::save_subscription(tx.conn(), tenant_id, sub, now).await?;
    }
    Ok(())
}

async fn schedule_payment(
    tx: &mut Tx,
    tenant_id: &TenantId,
    subscription_id: &str,
    date: Date,
    attempt: i64,
    due_at: i64,
) -> ApiResult<()> {
    let job = NewJob {
        id: format!("subscription-payment:{subscription_id}:{date}:{attempt}"),
        kind: PAYMENT_JOB,
        due_at,
        payload: json!({
            "subscription_id": subscription_id, "date": date.to_string(), "attempt": attempt,
        }),
    };
    let now = to_micros(tx.now());
    scheduler::schedule(tx.conn(), tenant_id, &[job], now).await?;
    Ok(())
}

/// Try to pay a per-delivery order from the member's wallet. A refusal (not enough money, an
/// erased member) is a failed day: `subscription.payment_due` tells the member to pay, the
/// next day tries again, and the third failed day pauses the subscription and cancels the
/// order (its stock goes back).
pub async fn payment_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let subscription_id = payload_str(job, "subscription_id")?.to_owned();
    let date = store::date_of(payload_str(job, "date")?)?;
    let attempt = job
        .payload
        .get("attempt")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut tx = state.begin().await?;
    let tenant_id = &job.tenant_id;
    let Some(delivery) = store::delivery(tx.conn(), tenant_id, &subscription_id, date).await?
    else {
        scheduler::complete(tx.conn(), job).await?;
        tx.commit().await?;
        return Ok(());
    };
    let Some(order_id) = delivery.order_id.clone() else {
        scheduler::complete(tx.conn(), job).await?;
        tx.commit().await?;
        return Ok(());
    };
    let order = order_store::require(tx.conn(), tenant_id, &order_id, false)
        .await
        .map_err(api)?;
    if order.status != OrderStatus::PendingPayment {
        scheduler::complete(tx.conn(), job).await?;
        tx.commit().await?;
        return Ok(());
    }
    let request = PaymentRequest {
        method: "wallet".into(),
        reference: format!("subscription:{subscription_id}:{date}"),
    };
    let refusal = match checkout::pay_in(&mut tx, tenant_id, &order_id, &request).await {
        Ok(_) => {
            scheduler::complete(tx.conn(), job).await?;
            tx.commit().await?;
            return Ok(());
        }
        Err(error) if error.status.is_client_error() => error,
        Err(error) => return Err(api(error)),
    };
    // Nothing of the refused payment is kept: a fresh transaction records the failed day.
    tx.rollback().await?;
    let mut tx = state.begin().await?;
    failed_day(
        &mut tx,
        tenant_id,
        &subscription_id,
        date,
        attempt,
        &refusal,
    )
    .await
    .map_err(api)?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

async fn failed_day(
    tx: &mut Tx,
    tenant_id: &TenantId,
    subscription_id: &str,
    date: Date,
    attempt: i64,
    refusal: &ApiError,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    let Some(mut sub) = store::subscription(tx.conn(), tenant_id, subscription_id, true).await?
    else {
        return Ok(());
    };
    let failed =
        store::count_failed_payment(tx.conn(), tenant_id, subscription_id, date, now).await?;
    let Some(delivery) = store::delivery(tx.conn(), tenant_id, subscription_id, date).await? else {
        return Ok(());
    };
    let Some(order_id) = delivery.order_id.clone() else {
        return Ok(());
    };
    let order = order_store::require(tx.conn(), tenant_id, &order_id, true).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "subscription.payment_due",
        Some(subscription_id),
        json!({
            "subscription_id": sub.id, "member_id": sub.member_id, "order_id": order_id,
            "date": date.to_string(), "amount": order.total, "attempt": attempt,
            "reason": refusal.code.as_ref(),
        }),
    ));
    if failed < PAYMENT_DAYS {
        let next = now.saturating_add(
            i64::try_from(SignedDuration::from_hours(24).as_micros()).unwrap_or(i64::MAX / 4),
        );
        return schedule_payment(tx, tenant_id, subscription_id, date, attempt + 1, next).await;
    }
    // The third failed day: the order is cancelled (its units go back) and the subscription
    // pauses until the member resumes it.
    if order.status == OrderStatus::PendingPayment {
        checkout::close_unpaid_in(tx, tenant_id, &order, OrderStatus::Cancelled).await?;
    }
    store::move_delivery(
        tx.conn(),
        tenant_id,
        subscription_id,
        date,
        DeliveryStatus::Ordered,
        DeliveryStatus::Skipped,
        Some("unpaid"),
        None,
        now,
    )
    .await?;
    if sub.status == SubscriptionStatus::Active {
        sub.status = SubscriptionStatus::Paused;
        sub.pause_reason = Some("payment_failed".into());
        store::drop_future(tx.conn(), tenant_id, subscription_id, now).await?;
        store::save_subscription(tx.conn(), tenant_id, &sub, now).await?;
        tx.emit(NewEvent::new(
            tenant_id,
            "subscription.paused",
            Some(subscription_id),
            json!({ "subscription_id": sub.id, "member_id": sub.member_id, "reason": "payment_failed" }),
        ));
    }
    Ok(())
}
