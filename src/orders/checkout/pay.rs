//! Paying an order, and what being paid means for the member and the campaign.

use serde_json::json;
use sqlx::{AnyConnection, Row as _};

use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::hooks;
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::{self, Op};
use crate::membership::program;
use crate::membership::rules::tiers;
use crate::membership::stored_value;
use crate::orders::campaign::{self, CampaignOrder};
use crate::orders::model::OrderStatus;
use crate::orders::store::{self, StoredOrder};

use super::{burn_id, PaymentRequest};

/// What paying means for the member: points burnt for good, growth, pending earned points,
/// every order hook, and the order's campaign (its [`CampaignHooks::on_paid`]: flash-sale units
/// sold, group-buy team progress). Runs for checkout payments and for external orders ingested
/// as paid.
///
/// [`CampaignHooks::on_paid`]: crate::orders::campaign::CampaignHooks::on_paid
pub(super) async fn after_paid(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &mut StoredOrder,
) -> ApiResult<()> {
    if order.points_burned > 0 {
        burn_held_points(tx, tenant_id, order).await?;
    }
    order.growth_given = reward_paid(tx, tenant_id, order).await?;
    let paid = hooks::OrderPaid {
        tenant_id,
        member_id: &order.member_id,
        order_id: order.id.as_str(),
        campaign_kind: order.campaign_kind.as_deref(),
        total: order.total,
    };
    hooks::registered()?.order_paid(tx, &paid).await?;
    if let Some(campaign) = campaign::of(order)? {
        let in_campaign = CampaignOrder { tenant_id, order };
        campaign.on_paid(tx, &in_campaign).await?;
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

/// The points held at checkout are burnt for good: their pending transfer is posted.
async fn burn_held_points(tx: &mut Tx, tenant_id: &TenantId, order: &StoredOrder) -> ApiResult<()> {
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
    Ok(())
}

/// Growth and (pending) earned points for what was paid; the growth given, kept on the order
/// so that refunds take back what they must.
async fn reward_paid(tx: &mut Tx, tenant_id: &TenantId, order: &StoredOrder) -> ApiResult<i64> {
    let member_id = &order.member_id;
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
    Ok(growth)
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
    if paid_before(tx.conn(), tenant_id, &order, method, &reference).await? {
        return Ok(order);
    }
    let now = to_micros(tx.now());
    require_unpaid(&order, now)?;
    if let Some(campaign) = campaign::of(&order)? {
        let payable = CampaignOrder {
            tenant_id,
            order: &order,
        };
        campaign.require_payable(tx, &payable).await?;
    }
    let spend_id = match method {
        "wallet" if order.total > 0 => Some(spend_from_wallet(tx, tenant_id, &order).await?),
        _ => None,
    };
    record_payment(
        tx,
        tenant_id,
        &order,
        method,
        &reference,
        spend_id.as_deref(),
        now,
    )
    .await?;
    order.status = OrderStatus::Paid;
    order.paid_at = Some(now);
    order.payment_method = Some(method.into());
    order.payment_reference = Some(reference);
    order.wallet_spend_id = spend_id;
    after_paid(tx, tenant_id, &mut order).await?;
    store::require(tx.conn(), tenant_id, order.id.as_str(), false).await
}

/// Whether this payment was made before (a retry: true); 409 `payment_reference_reused` when
/// its reference paid another order or by another method.
async fn paid_before(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order: &StoredOrder,
    method: &str,
    reference: &str,
) -> ApiResult<bool> {
    let previous: Option<(String, String)> = sqlx::query(
        "SELECT order_id, method FROM order_payment WHERE tenant_id = $1 AND reference = $2",
    )
    .bind(tenant_id.as_str())
    .bind(reference)
    .fetch_optional(conn)
    .await?
    .map(|row| Ok::<_, sqlx::Error>((row.try_get("order_id")?, row.try_get("method")?)))
    .transpose()?;
    let Some((paid_order, paid_method)) = previous else {
        return Ok(false);
    };
    if paid_order == order.id.as_str() && paid_method == method {
        return Ok(true);
    }
    Err(ApiError::conflict(
        codes::PAYMENT_REFERENCE_REUSED,
        "this payment reference was used for another payment",
    ))
}

/// 409 unless the order waits for payment and its deadline has not passed.
fn require_unpaid(order: &StoredOrder, now: i64) -> ApiResult<()> {
    match order.status {
        OrderStatus::PendingPayment if order.expires_at.is_some_and(|at| at <= now) => {
            Err(order_expired(order))
        }
        OrderStatus::PendingPayment => Ok(()),
        OrderStatus::Expired => Err(order_expired(order)),
        OrderStatus::Cancelled => Err(ApiError::conflict(
            codes::ORDER_CANCELLED,
            "this order was cancelled",
        )),
        OrderStatus::Paid
        | OrderStatus::Fulfilled
        | OrderStatus::Completed
        | OrderStatus::Refunded => Err(ApiError::conflict(
            codes::ALREADY_PAID,
            "this order was paid already",
        )),
    }
}

/// Take the order's total from the member's stored value; the spend's id (refunds give back
/// through it).
async fn spend_from_wallet(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
) -> ApiResult<String> {
    let (spend, _) = stored_value::spend_in(
        tx,
        tenant_id,
        &order.member_id,
        order.total,
        &format!("order:{}", order.id),
    )
    .await?;
    Ok(spend.spend_id.to_string())
}

/// Write the payment: its row (the reference's claim), the order moved to paid once (409
/// `already_paid` if it moved meanwhile) and how it was paid.
async fn record_payment(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    method: &str,
    reference: &str,
    spend_id: Option<&str>,
    now: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO order_payment (tenant_id, reference, order_id, method, amount, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id.as_str())
    .bind(reference)
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
            codes::ALREADY_PAID,
            "this order changed state meanwhile",
        ));
    }
    sqlx::query(
        "UPDATE customer_order SET payment_method = $1, payment_reference = $2, \
         wallet_spend_id = $3 WHERE tenant_id = $4 AND id = $5",
    )
    .bind(method)
    .bind(reference)
    .bind(spend_id)
    .bind(tenant_id.as_str())
    .bind(order.id.as_str())
    .execute(tx.conn())
    .await?;
    Ok(())
}

fn order_expired(order: &StoredOrder) -> ApiError {
    ApiError::conflict(
        codes::ORDER_EXPIRED,
        "the payment deadline of this order has passed; it can no longer be paid",
    )
    .with_details(json!({
        "order_id": order.id,
        "expires_at": order.expires_at.map(micros_to_rfc3339),
    }))
}
