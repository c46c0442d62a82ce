//! Pickup (核销) and what follows it: verifying a member's code at the leader's point, refunds
//! of units that did not arrive, and the leader's commission (pending at pickup, released when
//! the return window after pickup closes, following refunds), with the leader's figures.
//!
//! Commission money moves like distribution's: one pending ledger transfer of asset
//! `commission` from `system:commission_expense` to the leader's member account
//! (`leader-commission:<order>`, then `…:<revision>` when a refund inside the window rewrites
//! it), posted by [`RELEASE_JOB`]; after release a refund takes the reduction back as far as
//! the leader's balance goes (`leader-commission-clawback:<order>:<refund>`) and the rest is the
//! leader's debt, repaid from the next release (`leader-commission-debt:<order>`).

use axum::extract::State;
use axum::http::StatusCode;
use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row as _};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks::OrderRefunded;
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::membership::program;
use crate::orders;
use crate::orders::checkout::{Refund, RefundRequest};
use crate::orders::model::{Order, OrderStatus};
use crate::tenants;
use crate::AppState;

use super::leaders::{self, StoredLeader};
use super::model::{
    BoardEntry, BoardQuery, LeaderBoard, LeaderCommission, LeaderStats, LeaderWithdrawal,
    LeaderWithdrawalRequest, ShortageRequest, StatsQuery, VerifyPickup,
};
use super::rules;
use super::wave_orders;

/// Scheduler job kind: release a picked-up order's leader commission.
pub const RELEASE_JOB: &str = "neighbourhood.release";
/// The system account commissions are paid from (the one distribution uses).
pub const EXPENSE_ACCOUNT: &str = "commission_expense";
/// The ledger code of commission transfers.
const CODE: &str = "commission";
/// Wrong codes one leader may try in [`GUESS_WINDOW_SECS`] before 429 (guessing a 6-digit
/// code takes ~100 000 tries per hit; ten a minute makes that weeks).
pub const MAX_WRONG_CODES: i64 = 10;
pub const GUESS_WINDOW_SECS: i64 = 60;
/// Largest leaderboard.
pub const MAX_BOARD: i64 = 100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(shortage))
        .routes(routes!(stats))
        .routes(routes!(leaderboard))
        .routes(routes!(withdraw))
}

fn internal(message: String) -> ApiError {
    ApiError::internal(anyhow::anyhow!(message))
}

fn expense() -> Address {
    Address::system(EXPENSE_ACCOUNT)
}

/// A wave order's pickup and commission, as this module needs them.
#[derive(Debug, Clone)]
struct Pickup {
    order_id: String,
    wave_id: String,
    leader_id: String,
    member_id: String,
    status: String,
    total: i64,
    refunded: i64,
    commission_bp: i64,
    commission_status: Option<String>,
    commission: i64,
    commission_revision: i64,
    commission_transfer_id: Option<String>,
}

const PICKUP_COLUMNS: &str = "order_id, wave_id, leader_id, member_id, status, total, refunded, \
    commission_bp, commission_status, commission, commission_revision, commission_transfer_id";

fn pickup_from_row(row: &sqlx::any::AnyRow) -> Result<Pickup, sqlx::Error> {
    Ok(Pickup {
        order_id: row.try_get("order_id")?,
        wave_id: row.try_get("wave_id")?,
        leader_id: row.try_get("leader_id")?,
        member_id: row.try_get("member_id")?,
        status: row.try_get("status")?,
        total: row.try_get("total")?,
        refunded: row.try_get("refunded")?,
        commission_bp: row.try_get("commission_bp")?,
        commission_status: row.try_get("commission_status")?,
        commission: row.try_get("commission")?,
        commission_revision: row.try_get("commission_revision")?,
        commission_transfer_id: row.try_get("commission_transfer_id")?,
    })
}

async fn fetch_pickup(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> ApiResult<Option<Pickup>> {
    let row = sqlx::query(&format!(
        "SELECT {PICKUP_COLUMNS} FROM wave_order WHERE tenant_id = $1 AND order_id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(pickup_from_row).transpose()?)
}

async fn save_commission(tx: &mut Tx, tenant_id: &TenantId, pickup: &Pickup) -> ApiResult<()> {
    let now = to_micros(tx.now());
    sqlx::query(
        "UPDATE wave_order SET commission_status = $1, commission = $2, commission_revision = $3, \
         commission_transfer_id = $4, refunded = $5, updated_at = $6 \
         WHERE tenant_id = $7 AND order_id = $8",
    )
    .bind(pickup.commission_status.as_deref())
    .bind(pickup.commission)
    .bind(pickup.commission_revision)
    .bind(pickup.commission_transfer_id.as_deref())
    .bind(pickup.refunded)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(pickup.order_id.as_str())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Apply one ledger operation and require one of `statuses`.
async fn expect(tx: &mut Tx, tenant_id: &TenantId, op: Op, statuses: &[&str]) -> ApiResult<()> {
    let id = op.id().to_owned();
    let result = ledger::apply_in(tx, tenant_id, vec![op])
        .await?
        .pop()
        .ok_or_else(|| internal("no ledger result".into()))?;
    if !statuses.contains(&result.status.as_str()) {
        return Err(internal(format!(
            "leader commission transfer {id} gave {}",
            result.status
        )));
    }
    Ok(())
}

fn transfer_id(order_id: &str, revision: i64) -> String {
    if revision > 1 {
        format!("leader-commission:{order_id}:{revision}")
    } else {
        format!("leader-commission:{order_id}")
    }
}

/// Hold `amount` for the leader as the pickup's next revision.
async fn hold(
    tx: &mut Tx,
    tenant_id: &TenantId,
    pickup: &mut Pickup,
    leader: &StoredLeader,
    amount: i64,
) -> ApiResult<()> {
    pickup.commission_revision += 1;
    let id = transfer_id(&pickup.order_id, pickup.commission_revision);
    let transfer = NewTransfer::internal(
        id.clone(),
        expense(),
        Address::member(&leader.member_id),
        Asset::Commission,
        amount,
        CODE,
        Some(&pickup.order_id),
    )
    .pending(None);
    expect(tx, tenant_id, Op::Create(transfer), &["created"]).await?;
    pickup.commission_transfer_id = Some(id);
    pickup.commission = amount;
    Ok(())
}

/// The instants (micros) of the wrong codes tried at the leader's point inside the window
/// ending at `now`.
fn recent_wrong_codes(text: &str, now: i64) -> Vec<i64> {
    let since = now - GUESS_WINDOW_SECS * 1_000_000;
    let mut list: Vec<i64> = serde_json::from_str(text).unwrap_or_default();
    list.retain(|at| *at > since);
    list
}

/// 429 when the leader's point saw [`MAX_WRONG_CODES`] wrong codes in the last minute.
async fn check_guesses(tx: &mut Tx, tenant_id: &TenantId, leader: &StoredLeader) -> ApiResult<()> {
    let now = to_micros(tx.now());
    let text: String =
        sqlx::query_scalar("SELECT wrong_codes FROM leader WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(leader.id.as_str())
            .fetch_one(tx.conn())
            .await?;
    let recent = recent_wrong_codes(&text, now);
    if i64::try_from(recent.len()).unwrap_or(i64::MAX) >= MAX_WRONG_CODES {
        let oldest = recent.iter().min().copied().unwrap_or(now);
        let free_at = oldest + GUESS_WINDOW_SECS * 1_000_000;
        let wait = u64::try_from((free_at - now).max(1_000_000)).unwrap_or(1_000_000);
        return Err(ApiError::rate_limited(
            "wrong pickup codes per leader",
            std::time::Duration::from_micros(wait),
        ));
    }
    Ok(())
}

/// Remember a wrong code on the leader's row (in its own transaction, the row locked: the
/// request fails, the count stays and no concurrent wrong code is lost).
async fn record_wrong_code(
    state: &AppState,
    tenant_id: &TenantId,
    leader: &StoredLeader,
) -> ApiResult<()> {
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    leaders::require(tx.conn(), tenant_id, leader.id.as_str(), true).await?;
    let text: String =
        sqlx::query_scalar("SELECT wrong_codes FROM leader WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(leader.id.as_str())
            .fetch_one(tx.conn())
            .await?;
    let mut recent = recent_wrong_codes(&text, now);
    recent.push(now);
    recent.sort_unstable();
    let keep = usize::try_from(MAX_WRONG_CODES).unwrap_or(10);
    if recent.len() > keep {
        recent.drain(..recent.len() - keep);
    }
    sqlx::query("UPDATE leader SET wrong_codes = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(serde_json::to_string(&recent).map_err(ApiError::internal)?)
        .bind(tenant_id.as_str())
        .bind(leader.id.as_str())
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Verify a member's pickup code at the leader's point: the order is picked up (fulfilled)
/// and the leader's commission on it becomes pending. 404 for a wrong code, 409
/// `already_picked_up` for a code used already, 429 after 10 wrong codes in a minute for the
/// leader.
#[utoipa::path(post, path = "/v1/pickups/verify", tag = "neighbourhood",
    request_body = VerifyPickup,
    responses((status = 200, body = Order), (status = 404),
              (status = 409, description = "already_picked_up"), (status = 422),
              (status = 429, description = "rate_limited: too many wrong codes for this leader")),
    security(("api_key" = [])))]
async fn verify(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<VerifyPickup>,
) -> ApiResult<Json<Order>> {
    let tenant_id = &auth.tenant_id;
    let mut tx = state.begin().await?;
    let leader = leaders::require(tx.conn(), tenant_id, &request.leader_id, false).await?;
    check_guesses(&mut tx, tenant_id, &leader).await?;
    let code = request.code.trim();
    let open: Option<String> = if rules::is_pickup_code(code) {
        sqlx::query_scalar(
            "SELECT order_id FROM wave_order WHERE tenant_id = $1 AND leader_id = $2 \
             AND open_code = $3",
        )
        .bind(tenant_id.as_str())
        .bind(leader.id.as_str())
        .bind(code)
        .fetch_optional(tx.conn())
        .await?
    } else {
        None
    };
    let Some(order_id) = open else {
        let used: Option<String> = sqlx::query_scalar(
            "SELECT order_id FROM wave_order WHERE tenant_id = $1 AND leader_id = $2 \
             AND code = $3 AND pickup_status = 'picked_up' ORDER BY picked_up_at DESC LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(leader.id.as_str())
        .bind(code)
        .fetch_optional(tx.conn())
        .await?;
        drop(tx);
        if let Some(order_id) = used {
            return Err(ApiError::conflict(
                codes::ALREADY_PICKED_UP,
                "this code was used already: the order is picked up",
            )
            .with_details(json!({ "order_id": order_id })));
        }
        record_wrong_code(&state, tenant_id, &leader).await?;
        return Err(ApiError::not_found("pickup code"));
    };
    pick_up(&mut tx, tenant_id, &leader, &order_id, code).await?;
    let stored = orders::store::require(tx.conn(), tenant_id, &order_id, false).await?;
    let mut order = stored.view();
    order.pickup = wave_orders::pickup(tx.conn(), tenant_id, &order_id).await?;
    tx.commit().await?;
    Ok(Json(order))
}

/// Mark the order picked up (once), fulfil it and hold the leader's commission.
async fn pick_up(
    tx: &mut Tx,
    tenant_id: &TenantId,
    leader: &StoredLeader,
    order_id: &str,
    code: &str,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    let moved = sqlx::query(
        "UPDATE wave_order SET pickup_status = 'picked_up', picked_up_at = $1, open_code = NULL, \
         updated_at = $1 WHERE tenant_id = $2 AND order_id = $3 AND open_code = $4 \
         AND status = 'paid'",
    )
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(order_id)
    .bind(code)
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() != 1 {
        return Err(ApiError::conflict(
            codes::ALREADY_PICKED_UP,
            "this code was used already: the order is picked up",
        )
        .with_details(json!({ "order_id": order_id })));
    }
    let order = orders::store::require(tx.conn(), tenant_id, order_id, true).await?;
    if order.status == OrderStatus::Paid {
        orders::checkout::advance_in(tx, tenant_id, order_id, OrderStatus::Fulfilled).await?;
    }
    let mut pickup = fetch_pickup(tx.conn(), tenant_id, order_id)
        .await?
        .ok_or_else(|| internal(format!("wave order {order_id} vanished")))?;
    pickup.refunded = order.refunded_amount;
    let amount = rules::commission(pickup.commission_bp, pickup.total, pickup.refunded);
    let window_days = program::load_settings(tx.conn(), tenant_id)
        .await?
        .points
        .return_window_days;
    let release_at = to_micros(tx.now() + SignedDuration::from_hours(24 * window_days));
    if amount > 0 {
        hold(tx, tenant_id, &mut pickup, leader, amount).await?;
        pickup.commission_status = Some("pending".into());
        let job = NewJob {
            id: format!("{RELEASE_JOB}:{order_id}"),
            kind: RELEASE_JOB,
            due_at: release_at,
            payload: json!({ "order_id": order_id }),
        };
        scheduler::schedule(tx.conn(), tenant_id, &[job], now).await?;
        tx.emit(NewEvent::new(
            tenant_id,
            "leader_commission.pending",
            Some(leader.id.as_str()),
            json!({ "order_id": order_id, "leader_id": leader.id, "amount": amount,
                    "release_at": micros_to_rfc3339(release_at) }),
        ));
    } else {
        pickup.commission_status = Some("voided".into());
    }
    save_commission(tx, tenant_id, &pickup).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "pickup.completed",
        Some(pickup.member_id.as_str()),
        json!({ "order_id": order_id, "wave_id": pickup.wave_id, "leader_id": leader.id,
                "member_id": pickup.member_id }),
    ));
    Ok(())
}

/// Inside a refund's transaction: the pickup records what is refunded (a full refund closes
/// it) and the leader's commission follows what is still paid.
pub async fn on_order_refunded(tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
    let tenant_id = refund.tenant_id;
    let Some(mut pickup) = fetch_pickup(tx.conn(), tenant_id, refund.order_id).await? else {
        return Ok(());
    };
    pickup.refunded = refund.refunded_total;
    if refund.full {
        let now = to_micros(tx.now());
        sqlx::query(
            "UPDATE wave_order SET status = 'refunded', open_code = NULL, updated_at = $1 \
             WHERE tenant_id = $2 AND order_id = $3 AND status = 'paid'",
        )
        .bind(now)
        .bind(tenant_id.as_str())
        .bind(refund.order_id)
        .execute(tx.conn())
        .await?;
    }
    let owed = rules::commission(pickup.commission_bp, pickup.total, pickup.refunded);
    let before = pickup.commission;
    let leader = leaders::require(tx.conn(), tenant_id, &pickup.leader_id, true).await?;
    let (taken_back, debt) = match pickup.commission_status.as_deref() {
        Some("pending") => {
            if owed != pickup.commission {
                if let Some(pending_id) = pickup.commission_transfer_id.take() {
                    expect(tx, tenant_id, Op::Void { pending_id }, &["voided"]).await?;
                }
                if owed > 0 {
                    hold(tx, tenant_id, &mut pickup, &leader, owed).await?;
                } else {
                    pickup.commission = 0;
                    pickup.commission_status = Some("voided".into());
                }
            }
            (0, 0)
        }
        Some("available") => {
            claw_back(tx, tenant_id, &mut pickup, &leader, owed, refund.refund_id).await?
        }
        _ => (0, 0),
    };
    save_commission(tx, tenant_id, &pickup).await?;
    if pickup.commission != before {
        tx.emit(NewEvent::new(
            tenant_id,
            "leader_commission.adjusted",
            Some(leader.id.as_str()),
            json!({ "order_id": pickup.order_id, "leader_id": leader.id,
                    "amount": pickup.commission, "status": pickup.commission_status,
                    "taken_back": taken_back, "debt": debt }),
        ));
    }
    Ok(())
}

/// After release: take the reduction back as far as the leader's balance goes; the rest is
/// debt. Returns (taken back, debt added).
async fn claw_back(
    tx: &mut Tx,
    tenant_id: &TenantId,
    pickup: &mut Pickup,
    leader: &StoredLeader,
    owed: i64,
    refund_id: &str,
) -> ApiResult<(i64, i64)> {
    let reduction = pickup.commission - owed;
    if reduction <= 0 {
        return Ok((0, 0));
    }
    let account = Address::member(&leader.member_id);
    let available =
        ledger::store::available(tx.conn(), tenant_id, &account, Asset::Commission).await?;
    let (taken, debt) = rules::claw_back(reduction, available);
    if taken > 0 {
        let transfer = NewTransfer::internal(
            format!("leader-commission-clawback:{}:{refund_id}", pickup.order_id),
            account,
            expense(),
            Asset::Commission,
            taken,
            CODE,
            Some(&pickup.order_id),
        );
        let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
            .await?
            .pop()
            .ok_or_else(|| internal("no ledger result".into()))?;
        match result.status.as_str() {
            "created" => {}
            "insufficient_funds" => {
                return Err(ApiError::conflict(
                    codes::CONCURRENT_REFUND,
                    "the leader's balance changed meanwhile; retry the refund",
                ))
            }
            other => {
                return Err(internal(format!(
                    "leader commission claw-back gave {other}"
                )))
            }
        }
    }
    if debt > 0 {
        add_debt(tx, tenant_id, leader, debt).await?;
    }
    pickup.commission = owed;
    if owed == 0 {
        pickup.commission_status = Some("voided".into());
    }
    Ok((taken, debt))
}

async fn add_debt(
    tx: &mut Tx,
    tenant_id: &TenantId,
    leader: &StoredLeader,
    delta: i64,
) -> ApiResult<()> {
    sqlx::query("UPDATE leader SET debt = debt + $1 WHERE tenant_id = $2 AND id = $3")
        .bind(delta)
        .bind(tenant_id.as_str())
        .bind(leader.id.as_str())
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Scheduler handler: the return window after a pickup closed; release the commission.
pub async fn release_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let order_id = job
        .payload
        .get("order_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("job without order_id"))?
        .to_owned();
    let mut tx = state.begin().await?;
    release(&mut tx, &job.tenant_id, &order_id)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

/// Post the pending commission (once); a leader in debt repays it from what was released.
async fn release(tx: &mut Tx, tenant_id: &TenantId, order_id: &str) -> ApiResult<()> {
    let Some(mut pickup) = fetch_pickup(tx.conn(), tenant_id, order_id).await? else {
        return Ok(());
    };
    if pickup.commission_status.as_deref() != Some("pending") {
        return Ok(());
    }
    let leader = leaders::require(tx.conn(), tenant_id, &pickup.leader_id, true).await?;
    if let Some(pending_id) = pickup.commission_transfer_id.clone() {
        let post = Op::Post {
            pending_id,
            amount: None,
        };
        expect(tx, tenant_id, post, &["posted"]).await?;
    }
    pickup.commission_status = Some("available".into());
    save_commission(tx, tenant_id, &pickup).await?;
    let repaid = rules::repay(pickup.commission, leader.debt);
    if repaid > 0 {
        let transfer = NewTransfer::internal(
            format!("leader-commission-debt:{order_id}"),
            Address::member(&leader.member_id),
            expense(),
            Asset::Commission,
            repaid,
            CODE,
            Some(order_id),
        );
        expect(tx, tenant_id, Op::Create(transfer), &["created"]).await?;
        add_debt(tx, tenant_id, &leader, -repaid).await?;
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "leader_commission.released",
        Some(leader.id.as_str()),
        json!({ "order_id": order_id, "leader_id": leader.id, "amount": pickup.commission,
                "debt_repaid": repaid }),
    ));
    Ok(())
}

/// Refund the units of a paid wave order that did not arrive, at the price paid, at once
/// (the order's refund, with its ledger, points, coupon and commission effects).
#[utoipa::path(post, path = "/v1/orders/{id}/shortage", tag = "neighbourhood",
    params(("id" = String, Path)), request_body = ShortageRequest,
    responses((status = 201, body = Refund), (status = 404),
              (status = 409, description = "not_refundable, nothing_to_refund"), (status = 422)),
    security(("api_key" = [])))]
async fn shortage(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<ShortageRequest>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let tenant_id = &auth.tenant_id;
    if request.items.is_empty() || request.items.len() > orders::model::MAX_LINES {
        return Err(ApiError::validation(
            "items",
            format!("must hold 1 to {} lines", orders::model::MAX_LINES),
        ));
    }
    let mut tx = state.begin().await?;
    let order = orders::store::require(tx.conn(), tenant_id, &id, true).await?;
    let pickup = fetch_pickup(tx.conn(), tenant_id, order.id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("wave order"))?;
    if pickup.status != "paid" {
        return Err(ApiError::conflict(
            codes::NOT_REFUNDABLE,
            format!("a {} wave order has nothing to refund", pickup.status),
        ));
    }
    let lines = order.lines();
    let mut amount: i64 = 0;
    let mut seen = std::collections::HashSet::new();
    for item in &request.items {
        if !(1..=orders::model::MAX_QTY).contains(&item.qty) {
            return Err(ApiError::validation(
                "items.qty",
                format!("must be 1 to {}", orders::model::MAX_QTY),
            ));
        }
        if !seen.insert(item.product_id.as_str()) {
            return Err(ApiError::validation(
                "items.product_id",
                "each product may appear once",
            ));
        }
        let line = lines
            .iter()
            .find(|l| l.product_id == item.product_id)
            .ok_or_else(|| {
                ApiError::validation("items.product_id", "not a product of this order")
            })?;
        let moved = sqlx::query(
            "UPDATE wave_line SET short = short + $1 WHERE tenant_id = $2 AND order_id = $3 \
             AND product_id = $4 AND $1 >= 1 AND short + $1 <= qty",
        )
        .bind(item.qty)
        .bind(tenant_id.as_str())
        .bind(order.id.as_str())
        .bind(item.product_id.as_str())
        .execute(tx.conn())
        .await?;
        if moved.rows_affected() != 1 {
            return Err(ApiError::validation(
                "items.qty",
                "must be 1 or more and at most the units not yet reported short",
            ));
        }
        amount = line
            .unit_price
            .checked_mul(item.qty)
            .and_then(|a| a.checked_add(amount))
            .ok_or_else(|| ApiError::validation("items.qty", "too many units"))?;
    }
    // Discounts (coupon, points) may leave less paid than the lines' prices.
    let amount = amount.min(order.total - order.refunded_amount);
    let products: Vec<&str> = request
        .items
        .iter()
        .map(|i| i.product_id.as_str())
        .collect();
    let refund = orders::checkout::refund_in(
        &mut tx,
        tenant_id,
        order.id.as_str(),
        &RefundRequest {
            amount: Some(amount),
            reason: format!("shortage: {}", products.join(", ")),
            reference: None,
            restock: Some(false),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// Read a period bound in the tenant's zone.
fn bound(field: &str, text: Option<&str>, zone: &jiff::tz::TimeZone) -> ApiResult<Option<i64>> {
    text.map(|t| {
        rules::local_instant(t, zone).map(to_micros).ok_or_else(|| {
            ApiError::validation(
                field,
                "must be an RFC 3339 instant, a local date-time or a date",
            )
        })
    })
    .transpose()
}

/// A leader's figures over wave orders placed in `[from, to)`: paid orders, GMV after
/// refunds, members, pickups and commission.
#[utoipa::path(get, path = "/v1/leaders/{id}/stats", tag = "neighbourhood",
    params(("id" = String, Path), StatsQuery),
    responses((status = 200, body = LeaderStats), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<Json<LeaderStats>> {
    let tenant_id = &auth.tenant_id;
    let mut conn = state.db.read().acquire().await?;
    let leader = leaders::require(&mut conn, tenant_id, &id, false).await?;
    let zone = tenants::time_zone(&mut conn, tenant_id).await?;
    let from = bound("from", query.from.as_deref(), &zone)?.unwrap_or(i64::MIN);
    let to = bound("to", query.to.as_deref(), &zone)?.unwrap_or(i64::MAX);
    Ok(Json(
        leader_stats(&mut conn, tenant_id, &leader, from, to).await?,
    ))
}

/// The figures of [`stats`].
pub async fn leader_stats(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    leader: &StoredLeader,
    from: i64,
    to: i64,
) -> ApiResult<LeaderStats> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS orders, \
         CAST(COALESCE(SUM(total - refunded), 0) AS BIGINT) AS gmv, \
         COUNT(DISTINCT member_id) AS members, \
         CAST(COALESCE(SUM(CASE WHEN pickup_status = 'picked_up' THEN 1 ELSE 0 END), 0) AS BIGINT) AS picked_up, \
         CAST(COALESCE(SUM(CASE WHEN commission_status = 'pending' THEN commission ELSE 0 END), 0) AS BIGINT) AS pending, \
         CAST(COALESCE(SUM(CASE WHEN commission_status = 'available' THEN commission ELSE 0 END), 0) AS BIGINT) AS available \
         FROM wave_order WHERE tenant_id = $1 AND leader_id = $2 AND status = 'paid' \
         AND created_at >= $3 AND created_at < $4",
    )
    .bind(tenant_id.as_str())
    .bind(leader.id.as_str())
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    let orders: i64 = row.try_get("orders")?;
    let picked_up: i64 = row.try_get("picked_up")?;
    Ok(LeaderStats {
        leader_id: leader.id.to_string(),
        orders,
        gmv: row.try_get("gmv")?,
        members: row.try_get("members")?,
        picked_up,
        not_picked_up: orders - picked_up,
        commission: LeaderCommission {
            pending: row.try_get("pending")?,
            available: row.try_get("available")?,
        },
    })
}

/// Leaders by GMV of their paid wave orders placed in the period (`7d`, `30d`, `all`).
#[utoipa::path(get, path = "/v1/leaders/leaderboard", tag = "neighbourhood",
    params(BoardQuery),
    responses((status = 200, body = LeaderBoard), (status = 422)), security(("api_key" = [])))]
async fn leaderboard(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<BoardQuery>,
) -> ApiResult<Json<LeaderBoard>> {
    let limit = crate::common::pagination::count("limit", query.limit, 10, MAX_BOARD)?;
    let period = query.period.unwrap_or_else(|| "30d".into());
    let days = match period.as_str() {
        "7d" => Some(7),
        "30d" => Some(30),
        "all" => None,
        _ => return Err(ApiError::validation("period", "must be 7d, 30d or all")),
    };
    let since = days.map_or(i64::MIN, |d| {
        to_micros(state.clock.now() - SignedDuration::from_hours(24 * d))
    });
    let mut conn = state.db.read().acquire().await?;
    let data = board(&mut conn, &auth.tenant_id, since, limit).await?;
    Ok(Json(LeaderBoard { period, data }))
}

/// The leaderboard since `since`.
pub async fn board(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    since: i64,
    limit: i64,
) -> ApiResult<Vec<BoardEntry>> {
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT o.leader_id, l.name, COUNT(*), CAST(COALESCE(SUM(o.total - o.refunded), 0) AS BIGINT), \
         COUNT(DISTINCT o.member_id) FROM wave_order o \
         JOIN leader l ON l.tenant_id = o.tenant_id AND l.id = o.leader_id \
         WHERE o.tenant_id = $1 AND o.status = 'paid' AND o.created_at >= $2 \
         GROUP BY o.leader_id, l.name \
         ORDER BY 4 DESC, 3 DESC, o.leader_id LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(since)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, (leader_id, name, orders, gmv, members))| BoardEntry {
            rank: i64::try_from(i).unwrap_or(0) + 1,
            leader_id,
            name,
            orders,
            gmv,
            members,
        })
        .collect())
}

/// Where leaders' withdrawals wait for the merchant's payout (distribution's account).
pub const PAYOUT_ACCOUNT: &str = "payouts";

/// A leader takes available commission out. Distribution's withdrawals belong to promoters
/// (a leader need not be one), so a leader's withdrawal is the ledger's own pending transfer
/// (`leader-withdrawal:<id>`, from the leader's commission to `system:payouts`: the money is
/// reserved, two requests never spend the same fen) announced by `withdrawal.requested`; the
/// merchant's payment system posts it when paid or voids it when the payout failed.
#[utoipa::path(post, path = "/v1/leaders/{id}/withdrawals", tag = "neighbourhood",
    params(("id" = String, Path)), request_body = LeaderWithdrawalRequest,
    responses((status = 201, body = LeaderWithdrawal), (status = 404),
              (status = 409, description = "insufficient_funds"), (status = 422)),
    security(("api_key" = [])))]
async fn withdraw(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<LeaderWithdrawalRequest>,
) -> ApiResult<(StatusCode, Json<LeaderWithdrawal>)> {
    let tenant_id = &auth.tenant_id;
    if !(1..=crate::ledger::model::MAX_AMOUNT).contains(&request.amount) {
        return Err(ApiError::validation(
            "amount",
            "must be a positive number of fen",
        ));
    }
    let mut tx = state.begin().await?;
    let leader = leaders::require(tx.conn(), tenant_id, &id, true).await?;
    let withdrawal_id = uuid::Uuid::now_v7().simple().to_string();
    let transfer_id = format!("leader-withdrawal:{withdrawal_id}");
    let account = Address::member(&leader.member_id);
    let transfer = NewTransfer::internal(
        transfer_id.clone(),
        account.clone(),
        Address::system(PAYOUT_ACCOUNT),
        Asset::Commission,
        request.amount,
        "withdrawal",
        Some(leader.id.as_str()),
    )
    .pending(None);
    let result = ledger::apply_in(&mut tx, tenant_id, vec![Op::Create(transfer)])
        .await?
        .pop()
        .ok_or_else(|| internal("no ledger result".into()))?;
    if result.status != "created" {
        let available =
            ledger::store::available(tx.conn(), tenant_id, &account, Asset::Commission).await?;
        return Err(ApiError::conflict(
            codes::INSUFFICIENT_FUNDS,
            format!("the leader holds {available} fen of available commission"),
        )
        .with_details(json!({ "amount": request.amount, "available": available })));
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "withdrawal.requested",
        Some(withdrawal_id.as_str()),
        json!({ "withdrawal_id": withdrawal_id, "leader_id": leader.id,
                "amount": request.amount, "fee": 0, "net": request.amount,
                "status": "pending", "reference": transfer_id }),
    ));
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(LeaderWithdrawal {
            id: withdrawal_id,
            leader_id: leader.id.to_string(),
            amount: request.amount,
            status: "pending".into(),
            transfer_id,
        }),
    ))
}
