//! A paid order moves along: fulfilled (shipped or picked up), then completed (received).

use serde_json::json;

use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::common::time::to_micros;
use crate::orders::model::OrderStatus;
use crate::orders::store::{self, StoredOrder};

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
            codes::INVALID_TRANSITION,
            format!("a {} order cannot become {to}", order.status),
        )
        .with_details(json!({ "status": order.status })));
    }
    let now = to_micros(tx.now());
    if !store::transition(tx.conn(), tenant_id, &order.id, from, to, stamp, now).await? {
        return Err(ApiError::conflict(
            codes::INVALID_TRANSITION,
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
