//! Refunding part or all of a paid order, and reading its refunds.

use serde_json::json;
use sqlx::{AnyConnection, Row as _};

use crate::common::db::Tx;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::hooks;
use crate::common::ids::{OrderRefundId, TenantId};
use crate::common::outbox::NewEvent;
use crate::common::state::state_column;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::membership::program;
use crate::membership::rules::tiers;
use crate::membership::stored_value::{self, SpendId};
use crate::orders::campaign::{self, CampaignRefund};
use crate::orders::model::{self, OrderStatus, RefundError, RefundPlan};
use crate::orders::store::{self, StoredOrder};

use super::{available_points, release_units, return_coupon, Refund, RefundRequest};

/// Longest refund reason (characters).
const MAX_REASON_CHARS: usize = 500;

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
    // The text-field rule, with this field's message of before the rule.
    let reason = text::trimmed(&request.reason, MAX_REASON_CHARS)
        .ok_or_else(|| ApiError::validation("reason", "must be 1 to 500 characters"))?;
    let reference = match &request.reference {
        None => None,
        Some(text) => Some(stored_value::model::reference("reference", text.trim())?),
    };
    let order = store::require(tx.conn(), tenant_id, order_id, true).await?;
    if let Some(reference) = &reference {
        if let Some(existing) = replayed(tx.conn(), tenant_id, &order, reference).await? {
            return Ok(existing);
        }
    }
    let plan = plan_refund(&order, request.amount)?;
    let id = OrderRefundId::generate();
    money_back(tx, tenant_id, &order, &plan, &id, reason).await?;
    burnt_points_back(tx, tenant_id, &order, &plan, &id).await?;
    let growth_now = follow_what_remains(tx, tenant_id, &order, &plan, &id).await?;
    let (coupon_returned, restocked) =
        coupon_and_stock_back(tx, tenant_id, &order, &plan, request.restock).await?;
    let refund = Refunding {
        id,
        plan,
        reason,
        reference,
        growth_now,
        coupon_returned,
        restocked,
        status: if plan.full {
            OrderStatus::Refunded
        } else {
            order.status
        },
        now: to_micros(tx.now()),
    };
    record(tx, tenant_id, &order, &refund).await?;
    announce(tx, tenant_id, &order, &refund).await?;
    Ok(refund.view(&order))
}

/// A refund being made: what its steps decided, to be recorded and announced.
struct Refunding<'a> {
    id: OrderRefundId,
    plan: RefundPlan,
    reason: &'a str,
    reference: Option<String>,
    /// The growth the member keeps for what remains paid.
    growth_now: i64,
    coupon_returned: bool,
    restocked: bool,
    /// The order's state after the refund.
    status: OrderStatus,
    now: i64,
}

impl Refunding<'_> {
    fn view(self, order: &StoredOrder) -> Refund {
        Refund {
            id: self.id.to_string(),
            order_id: order.id.to_string(),
            amount: self.plan.amount,
            reason: self.reason.to_owned(),
            reference: self.reference,
            points_returned: self.plan.points_back,
            restocked: self.restocked,
            coupon_returned: self.coupon_returned,
            order_status: self.status,
            refunded_amount: self.plan.refunded_after,
            created_at: micros_to_rfc3339(self.now),
        }
    }
}

/// The refund made before with this reference, when it was of this order (a retry replays
/// it); 409 `refund_reference_reused` when it was of another.
async fn replayed(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order: &StoredOrder,
    reference: &str,
) -> ApiResult<Option<Refund>> {
    let Some(existing) = fetch_refund_by_reference(conn, tenant_id, reference).await? else {
        return Ok(None);
    };
    if existing.order_id == order.id.as_str() {
        return Ok(Some(existing));
    }
    Err(ApiError::conflict(
        codes::REFUND_REFERENCE_REUSED,
        "this refund reference was used on another order",
    ))
}

/// Plan the refund of `amount` (all that remains when absent) of a paid order.
fn plan_refund(order: &StoredOrder, amount: Option<i64>) -> ApiResult<RefundPlan> {
    if !order.status.is_refundable() {
        return Err(ApiError::conflict(
            codes::NOT_REFUNDABLE,
            format!("a {} order cannot be refunded", order.status),
        )
        .with_details(json!({ "status": order.status })));
    }
    model::plan_refund(
        order.total,
        order.refunded_amount,
        amount,
        order.points_burned,
        order.points_returned,
    )
    .map_err(|e| match e {
        RefundError::NothingToRefund => {
            ApiError::conflict(codes::NOTHING_TO_REFUND, "this order was refunded in full")
        }
        RefundError::TooMuch { refundable } => ApiError::validation(
            "amount",
            format!("must be 1 to {refundable} fen (what remains of the order)"),
        )
        .with_details(json!({ "field": "amount", "refundable": refundable })),
    })
}

/// Money back: a wallet payment through the ledger, any other as a `refund.requested` event
/// for the merchant's payment system.
async fn money_back(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    plan: &RefundPlan,
    refund_id: &OrderRefundId,
    reason: &str,
) -> ApiResult<()> {
    if plan.amount == 0 {
        return Ok(());
    }
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
                &order.member_id,
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
    Ok(())
}

/// Burnt points back, in proportion to the money refunded.
async fn burnt_points_back(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    plan: &RefundPlan,
    refund_id: &OrderRefundId,
) -> ApiResult<()> {
    if plan.points_back == 0 {
        return Ok(());
    }
    let transfer = NewTransfer::internal(
        format!("order-points-back:{refund_id}"),
        Address::system("redemption"),
        Address::member(&order.member_id),
        Asset::Points,
        plan.points_back,
        "refund",
        Some(order.id.as_str()),
    );
    ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)]).await?;
    Ok(())
}

/// Growth and earned points follow what remains paid; the growth the member keeps.
async fn follow_what_remains(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    plan: &RefundPlan,
    refund_id: &OrderRefundId,
) -> ApiResult<i64> {
    let remaining = order.total - plan.refunded_after;
    let settings = program::load_settings(tx.conn(), tenant_id).await?;
    let growth_now = tiers::growth_from_paid(remaining, settings.growth_per_yuan_bp);
    if growth_now != order.growth_given {
        program::change_growth(
            tx,
            tenant_id,
            &order.member_id,
            growth_now - order.growth_given,
            &format!("refund:{refund_id}"),
        )
        .await?;
    }
    adjust_earned_points(tx, tenant_id, order, remaining, refund_id).await?;
    Ok(growth_now)
}

/// On a full refund the coupon goes back, and the units when `restock` (by default while the
/// order is not fulfilled); whether each did. Restocking a partial refund is refused.
async fn coupon_and_stock_back(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    plan: &RefundPlan,
    restock: Option<bool>,
) -> ApiResult<(bool, bool)> {
    if !plan.full {
        if restock == Some(true) {
            return Err(ApiError::validation(
                "restock",
                "only a full refund puts units back in stock",
            ));
        }
        return Ok((false, false));
    }
    let coupon_returned = return_coupon(tx, tenant_id, order).await?;
    let restocked = restock.unwrap_or(order.status == OrderStatus::Paid);
    if restocked {
        release_units(tx, tenant_id, order, false).await?;
    }
    Ok((coupon_returned, restocked))
}

/// Write the refund: the order's amounts and state, moved only if no other refund moved them
/// meanwhile (409 `concurrent_refund`), and the refund's row (409 `refund_reference_reused`
/// when its reference is taken).
async fn record(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    refund: &Refunding<'_>,
) -> ApiResult<()> {
    let plan = &refund.plan;
    let updated = sqlx::query(
        "UPDATE customer_order SET refunded_amount = $1, points_returned = points_returned + $2, \
         refund_count = refund_count + 1, growth_given = $3, status = $4, \
         closed_at = CASE WHEN $5 = 1 THEN $6 ELSE closed_at END, updated_at = $6 \
         WHERE tenant_id = $7 AND id = $8 AND refunded_amount = $9 AND status = $10",
    )
    .bind(plan.refunded_after)
    .bind(plan.points_back)
    .bind(refund.growth_now)
    .bind(refund.status.as_str())
    .bind(i64::from(plan.full))
    .bind(refund.now)
    .bind(tenant_id.as_str())
    .bind(order.id.as_str())
    .bind(order.refunded_amount)
    .bind(order.status.as_str())
    .execute(tx.conn())
    .await?;
    if updated.rows_affected() != 1 {
        return Err(ApiError::conflict(
            codes::CONCURRENT_REFUND,
            "another refund of this order happened meanwhile; retry",
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO order_refund (tenant_id, id, order_id, amount, reason, reference, \
         points_returned, restocked, coupon_returned, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(tenant_id.as_str())
    .bind(refund.id.as_str())
    .bind(order.id.as_str())
    .bind(plan.amount)
    .bind(refund.reason)
    .bind(refund.reference.clone())
    .bind(plan.points_back)
    .bind(i64::from(refund.restocked))
    .bind(i64::from(refund.coupon_returned))
    .bind(refund.now)
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(ApiError::conflict(
            codes::REFUND_REFERENCE_REUSED,
            "this refund reference is in use",
        )),
        other => {
            other?;
            Ok(())
        }
    }
}

/// `order.refunded`, every order hook, then the order's campaign (a group-buy team's slot
/// freed by a full refund).
async fn announce(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    refund: &Refunding<'_>,
) -> ApiResult<()> {
    let plan = &refund.plan;
    tx.emit(NewEvent::new(
        tenant_id,
        "order.refunded",
        Some(order.id.as_str()),
        json!({
            "order_id": order.id, "member_id": order.member_id, "refund_id": refund.id,
            "amount": plan.amount, "refunded_amount": plan.refunded_after, "full": plan.full,
            "points_returned": plan.points_back, "reason": refund.reason,
        }),
    ));
    let refunded = hooks::OrderRefunded {
        tenant_id,
        member_id: &order.member_id,
        order_id: order.id.as_str(),
        campaign_kind: order.campaign_kind.as_deref(),
        refund_id: refund.id.as_str(),
        amount: plan.amount,
        refunded_total: plan.refunded_after,
        full: plan.full,
    };
    hooks::registered()?.order_refunded(tx, &refunded).await?;
    if let Some(campaign) = campaign::of(order)? {
        let refund = CampaignRefund {
            tenant_id,
            order,
            full: plan.full,
        };
        campaign.on_refunded(tx, &refund).await?;
    }
    Ok(())
}

/// Earned points follow the amount still paid: while they are pending (inside the return
/// window) the pending earn is voided and re-earned for what remains; once released, the
/// share refunded is taken back, as far as the member still holds points.
async fn adjust_earned_points(
    tx: &mut Tx,
    tenant_id: &TenantId,
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
        None => earn_again(tx, tenant_id, order, remaining, earn_id).await,
        Some("posted") => {
            take_back_earned(tx, tenant_id, order, remaining, earned, refund_id).await
        }
        _ => Ok(()),
    }
}

/// Earned points still pending: void the earn and earn again for what remains paid.
async fn earn_again(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    remaining: i64,
    earn_id: String,
) -> ApiResult<()> {
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
            &order.member_id,
            remaining,
            &format!("{}#{}", order.id, order.refund_count + 1),
        )
        .await?;
    }
    Ok(())
}

/// Earned points released already: take back the refunded share of what was earned, as far
/// as the member still holds points.
async fn take_back_earned(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    remaining: i64,
    earned: i64,
    refund_id: &OrderRefundId,
) -> ApiResult<()> {
    let member_id = &order.member_id;
    let keep = i64::try_from(i128::from(earned) * i128::from(remaining) / i128::from(order.total))
        .unwrap_or(0);
    let before = i64::try_from(
        i128::from(earned) * i128::from(order.total - order.refunded_amount)
            / i128::from(order.total),
    )
    .unwrap_or(0);
    let back = (before - keep).min(available_points(tx.conn(), tenant_id, member_id).await?);
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
        order_status: state_column(row, "status")?,
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
