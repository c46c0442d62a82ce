//! Wave orders as community group buying sees them: placing (the wave's price and stock, the
//! member's leader), payment (a pickup code), units given back, and the order's pickup.
//!
//! The orders domain calls these through `common::hooks::WaveHooks` (registered by
//! `server::hooks`), inside the order's own transaction: a refused wave order writes nothing.

use std::collections::HashSet;

use serde_json::json;
use sqlx::AnyConnection;

use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::hooks::{OrderPickup, WaveOrder, WavePlacement};
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::{backend_of, Backend};
use crate::common::time::{micros_to_rfc3339, to_micros};

use super::leaders::{self, StoredLeader};
use super::model::LeaderStatus;
use super::rules::{self, Phase};
use super::waves::{self, StoredWave};
use super::LeaderId;

/// Attempts at a free pickup code before giving up (the leader's open pickups hold far fewer
/// than the million codes).
const CODE_ATTEMPTS: usize = 64;

/// 409 `wave_closed` or `wave_not_open` unless the wave takes orders at `now`.
fn require_open(wave: &StoredWave, now: i64) -> ApiResult<()> {
    match wave.phase(now) {
        Phase::Open => Ok(()),
        Phase::Closed => Err(ApiError::conflict(
            codes::WAVE_CLOSED,
            format!(
                "the wave's cut-off was {}: it takes no more orders or payments",
                micros_to_rfc3339(wave.cutoff_at)
            ),
        )
        .with_details(
            json!({ "wave_id": wave.id, "cutoff_at": micros_to_rfc3339(wave.cutoff_at) }),
        )),
        Phase::Upcoming => Err(ApiError::conflict(
            codes::WAVE_NOT_OPEN,
            format!("the wave opens at {}", micros_to_rfc3339(wave.opens_at)),
        )
        .with_details(json!({ "wave_id": wave.id, "opens_at": micros_to_rfc3339(wave.opens_at) }))),
    }
}

/// The member's leader, locked on PostgreSQL (so one member's wave orders are decided one
/// after another and the per-member limit holds): 422 without one, 409 when not active.
async fn ordering_leader(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<StoredLeader> {
    let lock = if backend_of(conn) == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let leader_id: Option<String> = sqlx::query_scalar(&format!(
        "SELECT leader_id FROM member_leader WHERE tenant_id = $1 AND member_id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let leader_id = leader_id.ok_or_else(|| {
        ApiError::coded(
            codes::LEADER_REQUIRED,
            "a wave order needs a leader: choose one with PUT /v1/members/{id}/leader",
        )
        .with_details(json!({ "field": "member_id" }))
    })?;
    let leader = leaders::fetch(conn, tenant_id, &LeaderId::from_db(leader_id), false)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("member's leader vanished")))?;
    if leader.status != LeaderStatus::Active {
        return Err(ApiError::conflict(
            codes::LEADER_NOT_ACTIVE,
            format!(
                "the member's leader is {} and takes no new wave orders",
                leader.status.as_str()
            ),
        )
        .with_details(json!({ "leader_id": leader.id, "status": leader.status.as_str() })));
    }
    Ok(leader)
}

/// One wave item as placing needs it.
struct Item {
    price: i64,
    per_member_limit: Option<i64>,
}

async fn item(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave: &StoredWave,
    product_id: &str,
) -> ApiResult<Item> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT price, per_member_limit FROM wave_item \
         WHERE tenant_id = $1 AND wave_id = $2 AND product_id = $3",
    )
    .bind(tenant_id.as_str())
    .bind(wave.id.as_str())
    .bind(product_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (price, per_member_limit) = row.ok_or_else(|| {
        ApiError::not_found("product in this wave")
            .with_details(json!({ "product_id": product_id }))
    })?;
    Ok(Item {
        price,
        per_member_limit,
    })
}

/// Units of a product the member holds in the wave's unpaid and paid orders.
async fn units_held(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave: &StoredWave,
    member_id: &MemberId,
    product_id: &str,
) -> ApiResult<i64> {
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(l.qty), 0) AS BIGINT) FROM wave_line l \
         JOIN wave_order o ON o.tenant_id = l.tenant_id AND o.order_id = l.order_id \
         WHERE l.tenant_id = $1 AND l.wave_id = $2 AND l.product_id = $3 AND l.member_id = $4 \
         AND o.status IN ('awaiting_payment', 'paid')",
    )
    .bind(tenant_id.as_str())
    .bind(wave.id.as_str())
    .bind(product_id)
    .bind(member_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(held)
}

/// Take the wave's units for a new order, return the unit prices (see `WaveHooks::place`).
pub async fn place(tx: &mut Tx, placement: &WavePlacement<'_>) -> ApiResult<Vec<i64>> {
    let tenant_id = placement.tenant_id;
    let wave = waves::require(tx.conn(), tenant_id, placement.wave_id).await?;
    let now = to_micros(tx.now());
    require_open(&wave, now)?;
    let leader = ordering_leader(tx.conn(), tenant_id, placement.member_id).await?;
    let mut prices = Vec::with_capacity(placement.lines.len());
    for (product_id, qty) in placement.lines {
        let item = item(tx.conn(), tenant_id, &wave, product_id).await?;
        if let Some(limit) = item.per_member_limit {
            let held =
                units_held(tx.conn(), tenant_id, &wave, placement.member_id, product_id).await?;
            if held + qty > limit {
                return Err(ApiError::conflict(
                    codes::LIMIT_REACHED,
                    format!("a member may buy {limit} of this product in the wave"),
                )
                .with_details(json!({ "product_id": product_id, "limit": limit, "held": held })));
            }
        }
        // The exactness of the wave's stock: a conditional decrement in the order's transaction.
        let taken = sqlx::query(
            "UPDATE wave_item SET stock = stock - $1, taken = taken + $1 \
             WHERE tenant_id = $2 AND wave_id = $3 AND product_id = $4 \
             AND (stock IS NULL OR stock >= $1)",
        )
        .bind(*qty)
        .bind(tenant_id.as_str())
        .bind(wave.id.as_str())
        .bind(product_id.as_str())
        .execute(tx.conn())
        .await?;
        if taken.rows_affected() != 1 {
            return Err(ApiError::conflict(
                codes::OUT_OF_STOCK,
                "not enough of this product left in the wave",
            )
            .with_details(json!({ "product_id": product_id, "wave_id": wave.id })));
        }
        prices.push(item.price);
    }
    sqlx::query(
        "INSERT INTO wave_order (tenant_id, order_id, wave_id, leader_id, member_id, status, \
         total, refunded, code, open_code, pickup_status, commission_bp, commission, \
         commission_revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'awaiting_payment', 0, 0, NULL, NULL, 'waiting', $6, 0, 0, \
         $7, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(placement.order_id)
    .bind(wave.id.as_str())
    .bind(leader.id.as_str())
    .bind(placement.member_id.as_str())
    .bind(leader.commission_bp)
    .bind(now)
    .execute(tx.conn())
    .await?;
    for (product_id, qty) in placement.lines {
        sqlx::query(
            "INSERT INTO wave_line (tenant_id, order_id, wave_id, member_id, product_id, qty, \
             short) VALUES ($1, $2, $3, $4, $5, $6, 0)",
        )
        .bind(tenant_id.as_str())
        .bind(placement.order_id)
        .bind(wave.id.as_str())
        .bind(placement.member_id.as_str())
        .bind(product_id.as_str())
        .bind(*qty)
        .execute(tx.conn())
        .await?;
    }
    Ok(prices)
}

/// The wave of a wave order (`None` for another order).
async fn wave_of_order(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> ApiResult<Option<(StoredWave, String)>> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT wave_id, leader_id FROM wave_order WHERE tenant_id = $1 AND order_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((wave_id, leader_id)) = row else {
        return Ok(None);
    };
    let wave = waves::require(conn, tenant_id, &wave_id).await?;
    Ok(Some((wave, leader_id)))
}

/// 409 `wave_closed` for a payment from the cut-off on.
pub async fn require_payable(tx: &mut Tx, order: &WaveOrder<'_>) -> ApiResult<()> {
    let now = to_micros(tx.now());
    if let Some((wave, _)) = wave_of_order(tx.conn(), order.tenant_id, order.order_id).await? {
        if wave.phase(now) == Phase::Closed {
            return require_open(&wave, now);
        }
    }
    Ok(())
}

/// The order was paid: it gets a pickup code unique among its leader's open pickups.
pub async fn on_paid(tx: &mut Tx, order: &WaveOrder<'_>) -> ApiResult<()> {
    let tenant_id = order.tenant_id;
    let Some((_, leader_id)) = wave_of_order(tx.conn(), tenant_id, order.order_id).await? else {
        return Ok(());
    };
    // The leader's row is locked while a code is chosen (PostgreSQL; SQLite has one writer),
    // so two payments for one leader cannot pick the same free code.
    leaders::require(tx.conn(), tenant_id, &leader_id, true).await?;
    let code = free_code(tx.conn(), tenant_id, &leader_id).await?;
    let now = to_micros(tx.now());
    sqlx::query(
        "UPDATE wave_order SET status = 'paid', total = $1, code = $2, open_code = $2, \
         updated_at = $3 WHERE tenant_id = $4 AND order_id = $5 AND status = 'awaiting_payment'",
    )
    .bind(order.total)
    .bind(code.as_str())
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(order.order_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A 6-digit code no open pickup of the leader holds.
async fn free_code(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    leader_id: &str,
) -> ApiResult<String> {
    use rand::RngCore as _;
    let taken: HashSet<String> = sqlx::query_scalar(
        "SELECT open_code FROM wave_order WHERE tenant_id = $1 AND leader_id = $2 \
         AND open_code IS NOT NULL",
    )
    .bind(tenant_id.as_str())
    .bind(leader_id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let mut rng = rand::rng();
    for _ in 0..CODE_ATTEMPTS {
        let code = rules::pickup_code(rng.next_u32());
        if !taken.contains(&code) {
            return Ok(code);
        }
    }
    Err(ApiError::unavailable(
        "no free pickup code for this leader right now; retry",
    ))
}

/// The order's units go back to the wave: closed unpaid, or refunded in full with restock.
pub async fn on_released(tx: &mut Tx, order: &WaveOrder<'_>, unpaid: bool) -> ApiResult<()> {
    let tenant_id = order.tenant_id;
    let (from, to) = if unpaid {
        ("awaiting_payment", "cancelled")
    } else {
        ("paid", "refunded")
    };
    let now = to_micros(tx.now());
    let moved = sqlx::query(
        "UPDATE wave_order SET status = $1, open_code = NULL, updated_at = $2 \
         WHERE tenant_id = $3 AND order_id = $4 AND status = $5",
    )
    .bind(to)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(order.order_id)
    .bind(from)
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(());
    }
    let lines: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT wave_id, product_id, qty - short FROM wave_line \
         WHERE tenant_id = $1 AND order_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(order.order_id)
    .fetch_all(tx.conn())
    .await?;
    for (wave_id, product_id, qty) in lines {
        sqlx::query(
            "UPDATE wave_item SET stock = stock + $1, taken = taken - $1 \
             WHERE tenant_id = $2 AND wave_id = $3 AND product_id = $4",
        )
        .bind(qty)
        .bind(tenant_id.as_str())
        .bind(wave_id.as_str())
        .bind(product_id.as_str())
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// The pickup a wave order shows.
pub async fn pickup(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> ApiResult<Option<OrderPickup>> {
    let row: Option<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT leader_id, status, code, pickup_status FROM wave_order \
         WHERE tenant_id = $1 AND order_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(
        row.map(|(leader_id, status, code, pickup_status)| OrderPickup {
            leader_id,
            code,
            status: match status.as_str() {
                "paid" => pickup_status,
                "awaiting_payment" => "awaiting_payment".to_owned(),
                other => other.to_owned(),
            },
        }),
    )
}
