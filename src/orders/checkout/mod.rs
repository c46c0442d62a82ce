//! The order life cycle: placing (checkout or an external order), paying, cancelling, payment
//! deadlines, fulfilment and refunds. Every step is one transaction that moves the order with a
//! conditional UPDATE on its status (so each transition happens once, whatever retries or
//! concurrent nodes do) together with its stock, coupon, points, wallet and campaign effects,
//! and emits an event. A campaign's effects are its hooks ([`super::campaign`]), found by the
//! order's `campaign_kind`: no step names a campaign.
//!
//! Payment deadlines are the orders' own `expires_at` column: [`expire_due`] runs on every
//! scheduler pass of every node, finds due unpaid orders through a partial index and closes
//! each with the same conditional UPDATE, so a deadline fires once across restarts and nodes
//! without a job row per order (a flash sale writes tens of thousands of unpaid orders a
//! minute; one job row each would double its writes).
//!
//! One file per step: [`place`] (checkout and external orders), [`pay`] (payment and what it
//! means for the member), [`fulfil`] (fulfilled, completed), [`close`] (cancelled, expired at
//! the payment deadline) and [`refund`]; this file holds the requests and what several steps
//! share (points reserved for an order, units and coupon given back).

mod close;
mod fulfil;
mod pay;
mod place;
mod refund;

pub use close::{close_unpaid_in, expire_due, expire_job, ORDER_EXPIRY_JOB};
pub use fulfil::advance_in;
pub use pay::pay_in;
pub use place::place_in;
pub use refund::{refund_in, refunds_of};

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::ids::{MemberId, OrderId, TenantId};
use crate::common::time::to_micros;
use crate::ledger;
use crate::ledger::model::{Address, Asset};
use crate::membership::coupons::{self, model::CouponId};
use crate::orders::campaign::{self, CampaignOrder};
use crate::orders::model::OrderStatus;
use crate::orders::store::StoredOrder;

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
    /// A community group-buying wave to order in: its prices and stock, for the member's
    /// leader (who must be active).
    pub wave_id: Option<String>,
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

/// Give an order's units back: the campaign's units for a campaign's orders (`unpaid`: the
/// units were reserved, not sold), product stock for checkout orders.
async fn release_units(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    unpaid: bool,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    if let Some(campaign) = campaign::of(order)? {
        let order = CampaignOrder { tenant_id, order };
        return if unpaid {
            campaign.on_closed_unpaid(tx, &order).await
        } else {
            campaign.on_restocked(tx, &order).await
        };
    }
    if order.source != "checkout" {
        return Ok(());
    }
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
