//! Commissions: written when a bound customer's order is paid, adjusted by each refund,
//! released when the order's return window closes.
//!
//! The orders domain calls [`on_order_paid`] and [`on_order_refunded`] through the order hooks
//! (`common::hooks`, registered by `server::hooks`) inside its own transaction, so the
//! commissions are visible when the payment or refund answers. Each level's commission is one
//! row (unique per order and level: never paid twice) and one pending ledger transfer of asset
//! `commission` from `system:commission_expense` to the promoter. What a row owes is recomputed
//! by [`rules::owed`] from the order's figures after every refund:
//!
//! - inside the return window the pending transfer is voided and written again for the new
//!   amount (`commission:<order>:<level>` then `…:<revision>`), or voided for good when
//!   nothing is owed any more;
//! - after release, the reduction is taken back from the promoter's balance as far as it
//!   allows (`commission-clawback:<order>:<level>:<refund>`) and the rest is added to the
//!   promoter's debt, which the [`RELEASE_JOB`] nets against the next commissions it releases
//!   (`commission-debt:<commission>`).

use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::hooks::{OrderPaid, OrderRefunded};
use crate::common::ids::{MemberId, TenantId};
use crate::common::outbox::NewEvent;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::membership::program;
use crate::membership::stored_value;
use crate::orders;
use crate::AppState;

use super::model::{CommissionStatus, PromoterStatus, Settings};
use super::rules::{self, Line, Rate};
use super::store::{self, StoredCommission, StoredPromoter};
use super::CommissionId;

/// Scheduler job kind: release an order's pending commissions when its return window closes.
pub const RELEASE_JOB: &str = "distribution.release";
/// The system account commissions are paid from (and taken back to).
pub const EXPENSE_ACCOUNT: &str = "commission_expense";
/// The ledger code of commission transfers.
const CODE: &str = "commission";

fn expense() -> Address {
    Address::system(EXPENSE_ACCOUNT)
}

fn internal(message: String) -> ApiError {
    ApiError::internal(anyhow::anyhow!(message))
}

/// The pending transfer id of a commission's `revision`.
fn transfer_id(order_id: &str, level: i64, revision: i64) -> String {
    if revision > 1 {
        format!("commission:{order_id}:{level}:{revision}")
    } else {
        format!("commission:{order_id}:{level}")
    }
}

/// Who earns on an order: level 1 and, with two levels, level 2 (never a third).
async fn earners(
    tx: &mut Tx,
    tenant_id: &TenantId,
    settings: &Settings,
    customer: &MemberId,
    now: i64,
) -> ApiResult<Vec<(i64, StoredPromoter)>> {
    let own = store::promoter_of_member(tx.conn(), tenant_id, customer).await?;
    let first = match own {
        // A promoter's own order: only with self-purchase commission, as if bound to
        // themselves; otherwise nothing at all.
        Some(own)
            if matches!(
                own.status,
                PromoterStatus::Approved | PromoterStatus::Suspended
            ) =>
        {
            if !settings.self_purchase_commission {
                return Ok(Vec::new());
            }
            own
        }
        _ => {
            let Some((promoter_id, _, ends_at)) =
                store::binding(tx.conn(), tenant_id, customer, false).await?
            else {
                return Ok(Vec::new());
            };
            if ends_at.is_some_and(|end| end <= now) {
                return Ok(Vec::new());
            }
            let Some(promoter) = store::promoter(tx.conn(), tenant_id, &promoter_id, false).await?
            else {
                return Ok(Vec::new());
            };
            promoter
        }
    };
    let mut earners = Vec::new();
    let upline = first.invited_by.clone();
    if first.status == PromoterStatus::Approved {
        earners.push((1, first));
    }
    if settings.levels >= 2 {
        if let Some(upline) = upline {
            if let Some(second) = store::promoter(tx.conn(), tenant_id, &upline, false).await? {
                if second.status == PromoterStatus::Approved {
                    earners.push((2, second));
                }
            }
        }
    }
    Ok(earners)
}

/// The order's lines with each level's rate (the product's own, else the default), and the
/// part of the total that earns commission (what was not paid with wallet bonus money).
async fn order_figures(
    tx: &mut Tx,
    tenant_id: &TenantId,
    settings: &Settings,
    order_id: &str,
    total: i64,
) -> ApiResult<([Vec<Line>; 2], i64)> {
    let mut lines = [Vec::new(), Vec::new()];
    let mut base = total;
    if let Some(order) = orders::store::fetch(tx.conn(), tenant_id, order_id, false).await? {
        for line in order.lines() {
            let own = store::product_rates(tx.conn(), tenant_id, &line.product_id).await?;
            let rates = [
                own.map_or(settings.default_rate(1), |r| r.level1_bp),
                own.map_or(settings.default_rate(2), |r| r.level2_bp),
            ];
            for (level, rate_bp) in rates.into_iter().enumerate() {
                lines[level].push(Line {
                    total: line.line_total,
                    rate_bp,
                });
            }
        }
        if order.payment_method.as_deref() == Some("wallet") {
            let reference = format!("order:{}", order.id);
            if let Some(spend) =
                stored_value::store::spend_by_reference(tx.conn(), tenant_id, &reference).await?
            {
                base = (total - spend.bonus).max(0);
            }
        }
    }
    Ok((lines, base))
}

/// Inside the payment's transaction: the pending commissions of a bound customer's order.
pub async fn on_order_paid(tx: &mut Tx, order: &OrderPaid<'_>) -> ApiResult<()> {
    let tenant_id = order.tenant_id;
    let settings = store::settings(tx.conn(), tenant_id).await?;
    if !settings.enabled || order.total <= 0 {
        return Ok(());
    }
    let now = to_micros(tx.now());
    let earners = earners(tx, tenant_id, &settings, order.member_id, now).await?;
    if earners.is_empty() {
        return Ok(());
    }
    let (lines, base) =
        order_figures(tx, tenant_id, &settings, order.order_id, order.total).await?;
    let window_days = program::load_settings(tx.conn(), tenant_id)
        .await?
        .points
        .return_window_days;
    let release_at = to_micros(tx.now() + SignedDuration::from_hours(24 * window_days));
    let mut wrote = false;
    for (level, promoter) in earners {
        let index = usize::try_from(level - 1).unwrap_or(0);
        let rate = rules::blended_rate(&lines[index], settings.default_rate(level))
            .ok_or_else(|| ApiError::validation("items", "the order is too large"))?;
        let amount = rules::owed(rate, base, order.total, 0);
        if amount <= 0 {
            continue;
        }
        let commission = StoredCommission {
            id: CommissionId::generate().as_str().to_owned(),
            order_id: order.order_id.to_owned(),
            level,
            promoter_id: promoter.id.clone(),
            order_total: order.total,
            base,
            rate_num: rate.num,
            rate_den: rate.den,
            refunded: 0,
            original: amount,
            amount,
            status: CommissionStatus::Pending,
            transfer_id: Some(transfer_id(order.order_id, level, 1)),
            revision: 1,
            release_at,
            created_at: now,
        };
        if !store::insert_commission(tx.conn(), tenant_id, &commission).await? {
            // This order and level earned once already (a retried payment): never twice.
            continue;
        }
        hold(tx, tenant_id, &commission, &promoter.member_id, amount).await?;
        wrote = true;
        tx.emit(NewEvent::new(
            tenant_id,
            "commission.created",
            Some(promoter.id.as_str()),
            json!({
                "commission_id": commission.id,
                "order_id": commission.order_id,
                "level": level,
                "promoter_id": promoter.id,
                "amount": amount,
                "release_at": micros_to_rfc3339(release_at),
            }),
        ));
    }
    if wrote {
        scheduler::schedule(
            tx.conn(),
            tenant_id,
            &[NewJob {
                id: format!("{RELEASE_JOB}:{}", order.order_id),
                kind: RELEASE_JOB,
                due_at: release_at,
                payload: json!({ "order_id": order.order_id }),
            }],
            now,
        )
        .await?;
    }
    Ok(())
}

/// Write a commission's pending transfer (its current `transfer_id`) of `amount`.
async fn hold(
    tx: &mut Tx,
    tenant_id: &TenantId,
    commission: &StoredCommission,
    member: &MemberId,
    amount: i64,
) -> ApiResult<()> {
    let id = commission
        .transfer_id
        .clone()
        .ok_or_else(|| internal(format!("commission {} without transfer", commission.id)))?;
    let transfer = NewTransfer::internal(
        id.clone(),
        expense(),
        Address::member(member),
        Asset::Commission,
        amount,
        CODE,
        Some(&commission.order_id),
    )
    .pending(None);
    expect(tx, tenant_id, Op::Create(transfer), &["created"]).await
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
            "commission transfer {id} gave {}",
            result.status
        )));
    }
    Ok(())
}

/// Inside the refund's transaction: each commission of the order follows what is still paid.
pub async fn on_order_refunded(tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
    let tenant_id = refund.tenant_id;
    let commissions = store::commissions_of_order(tx.conn(), tenant_id, refund.order_id).await?;
    for mut commission in commissions {
        if commission.status == CommissionStatus::Voided {
            continue;
        }
        let rate = Rate {
            num: commission.rate_num,
            den: commission.rate_den,
        };
        let owed = rules::owed(
            rate,
            commission.base,
            commission.order_total,
            refund.refunded_total,
        );
        commission.refunded = refund.refunded_total;
        let promoter = store::promoter(tx.conn(), tenant_id, &commission.promoter_id, true)
            .await?
            .ok_or_else(|| internal(format!("commission {} without promoter", commission.id)))?;
        let before = commission.amount;
        let (taken_back, debt) = match commission.status {
            CommissionStatus::Pending => {
                reduce_pending(tx, tenant_id, &mut commission, &promoter.member_id, owed).await?;
                (0, 0)
            }
            CommissionStatus::Available => {
                claw_back(
                    tx,
                    tenant_id,
                    &mut commission,
                    &promoter,
                    owed,
                    refund.refund_id,
                )
                .await?
            }
            CommissionStatus::Voided => continue,
        };
        let now = to_micros(tx.now());
        store::save_commission(tx.conn(), tenant_id, &commission, None, now).await?;
        if commission.amount == before {
            // A small refund that rounds to the same fen changes nothing worth announcing.
            continue;
        }
        tx.emit(NewEvent::new(
            tenant_id,
            "commission.adjusted",
            Some(commission.promoter_id.as_str()),
            json!({
                "commission_id": commission.id,
                "order_id": commission.order_id,
                "level": commission.level,
                "promoter_id": commission.promoter_id,
                "amount": commission.amount,
                "status": commission.status,
                "taken_back": taken_back,
                "debt": debt,
            }),
        ));
    }
    Ok(())
}

/// Inside the return window: void the pending transfer and hold the new amount instead
/// (nothing when nothing is owed: the commission is voided).
async fn reduce_pending(
    tx: &mut Tx,
    tenant_id: &TenantId,
    commission: &mut StoredCommission,
    member: &MemberId,
    owed: i64,
) -> ApiResult<()> {
    if owed == commission.amount {
        return Ok(());
    }
    if let Some(pending_id) = commission.transfer_id.take() {
        expect(tx, tenant_id, Op::Void { pending_id }, &["voided"]).await?;
    }
    commission.amount = owed;
    if owed > 0 {
        commission.revision += 1;
        commission.transfer_id = Some(transfer_id(
            &commission.order_id,
            commission.level,
            commission.revision,
        ));
        hold(tx, tenant_id, commission, member, owed).await?;
    } else {
        commission.status = CommissionStatus::Voided;
    }
    Ok(())
}

/// After release: take the reduction back as far as the promoter's balance allows; the rest
/// becomes debt. Returns (taken back, debt added).
async fn claw_back(
    tx: &mut Tx,
    tenant_id: &TenantId,
    commission: &mut StoredCommission,
    promoter: &StoredPromoter,
    owed: i64,
    refund_id: &str,
) -> ApiResult<(i64, i64)> {
    let reduction = commission.amount - owed;
    if reduction <= 0 {
        return Ok((0, 0));
    }
    let account = Address::member(&promoter.member_id);
    let available =
        ledger::store::available(tx.conn(), tenant_id, &account, Asset::Commission).await?;
    let (taken, debt) = rules::claw_back(reduction, available);
    if taken > 0 {
        let transfer = NewTransfer::internal(
            format!(
                "commission-clawback:{}:{}:{refund_id}",
                commission.order_id, commission.level
            ),
            account,
            expense(),
            Asset::Commission,
            taken,
            CODE,
            Some(&commission.order_id),
        );
        let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
            .await?
            .pop()
            .ok_or_else(|| internal("no ledger result".into()))?;
        match result.status.as_str() {
            "created" => {}
            // The balance moved between the read and the transfer (a withdrawal committed
            // meanwhile): the refund is retried rather than leaving a wrong debt.
            "insufficient_funds" => {
                return Err(ApiError::conflict(
                    codes::CONCURRENT_REFUND,
                    "the promoter's balance changed meanwhile; retry the refund",
                ))
            }
            other => return Err(internal(format!("commission claw-back gave {other}"))),
        }
    }
    if debt > 0 && !store::add_debt(tx.conn(), tenant_id, &promoter.id, debt).await? {
        return Err(internal(format!(
            "debt of promoter {} not added",
            promoter.id
        )));
    }
    commission.amount = owed;
    if owed == 0 {
        commission.status = CommissionStatus::Voided;
    }
    Ok((taken, debt))
}

/// Scheduler handler: the order's return window closed; release its pending commissions.
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

/// Post each pending commission of the order; a promoter in debt repays it from what was
/// just released.
async fn release(tx: &mut Tx, tenant_id: &TenantId, order_id: &str) -> ApiResult<()> {
    let now = to_micros(tx.now());
    for mut commission in store::commissions_of_order(tx.conn(), tenant_id, order_id).await? {
        if commission.status != CommissionStatus::Pending {
            continue;
        }
        let promoter = store::promoter(tx.conn(), tenant_id, &commission.promoter_id, true)
            .await?
            .ok_or_else(|| internal(format!("commission {} without promoter", commission.id)))?;
        if let Some(pending_id) = commission.transfer_id.clone() {
            let post = Op::Post {
                pending_id,
                amount: None,
            };
            expect(tx, tenant_id, post, &["posted"]).await?;
        }
        commission.status = CommissionStatus::Available;
        store::save_commission(tx.conn(), tenant_id, &commission, Some(now), now).await?;
        let repaid = rules::repay(commission.amount, promoter.debt);
        if repaid > 0 {
            let transfer = NewTransfer::internal(
                format!("commission-debt:{}", commission.id),
                Address::member(&promoter.member_id),
                expense(),
                Asset::Commission,
                repaid,
                CODE,
                Some(order_id),
            );
            expect(tx, tenant_id, Op::Create(transfer), &["created"]).await?;
            if !store::add_debt(tx.conn(), tenant_id, &promoter.id, -repaid).await? {
                return Err(internal(format!(
                    "debt of promoter {} not repaid",
                    promoter.id
                )));
            }
        }
        tx.emit(NewEvent::new(
            tenant_id,
            "commission.released",
            Some(promoter.id.as_str()),
            json!({
                "commission_id": commission.id,
                "order_id": commission.order_id,
                "level": commission.level,
                "promoter_id": promoter.id,
                "amount": commission.amount,
                "debt_repaid": repaid,
            }),
        ));
    }
    Ok(())
}
