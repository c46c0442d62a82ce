//! Closing an unpaid order: cancelled by request or expired at its payment deadline.

use serde_json::json;
use sqlx::Row as _;

use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::hooks;
use crate::common::ids::{OrderId, TenantId};
use crate::common::outbox::NewEvent;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::time::to_micros;
use crate::ledger::{self, Op};
use crate::orders::model::OrderStatus;
use crate::orders::store::{self, StoredOrder};

use super::{burn_id, release_units, return_coupon};

/// Close an unpaid order (`cancelled` by request, `expired` at its deadline): its stock, coupon,
/// reserved points and campaign units go back. False when it was no longer unpaid.
pub async fn close_unpaid_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    order: &StoredOrder,
    to: OrderStatus,
) -> ApiResult<bool> {
    let now = to_micros(tx.now());
    if !store::transition(
        tx.conn(),
        tenant_id,
        &order.id,
        OrderStatus::PendingPayment,
        to,
        "closed_at",
        now,
    )
    .await?
    {
        return Ok(false);
    }
    release_units(tx, tenant_id, order, true).await?;
    return_coupon(tx, tenant_id, order).await?;
    if order.points_burned > 0 {
        ledger::apply_in(
            tx,
            tenant_id,
            vec![Op::Void {
                pending_id: burn_id(&order.id),
            }],
        )
        .await?;
    }
    let kind = if to == OrderStatus::Expired {
        "order.expired"
    } else {
        "order.cancelled"
    };
    tx.emit(NewEvent::new(
        tenant_id,
        kind,
        Some(order.id.as_str()),
        json!({ "order_id": order.id, "member_id": order.member_id, "qty": order.qty,
                "campaign_id": order.campaign_id, "team_id": order.team_id }),
    ));
    let closed = hooks::OrderClosed {
        tenant_id,
        member_id: &order.member_id,
        order_id: order.id.as_str(),
        campaign_kind: order.campaign_kind.as_deref(),
        status: to.as_str(),
    };
    hooks::registered()?.order_closed(tx, &closed).await?;
    Ok(true)
}

/// The job that expires one unpaid order whose expiry failed in the scheduler's scan.
pub const ORDER_EXPIRY_JOB: &str = "order.expiry";

/// The id of an order's expiry job (at most one per order).
fn expiry_job_id(order_id: &OrderId) -> String {
    format!("order_expiry:{order_id}")
}

/// Close every unpaid order whose deadline has passed; returns how many. Called on each
/// scheduler pass; safe on several nodes at once (each close is a conditional UPDATE).
///
/// Due orders are closed in one transaction per pass of up to 500. If that transaction fails,
/// each order is closed in its own; an order that still fails becomes an [`ORDER_EXPIRY_JOB`],
/// so that it is retried with backoff, counted and finally parked like any job, and the scan
/// no longer picks it up: one order that cannot be written never holds up the others.
pub async fn expire_due(db: &crate::common::db::Db, now: jiff::Timestamp) -> anyhow::Result<usize> {
    const PASS: i64 = 500;
    let mut closed = 0;
    loop {
        let due: Vec<(TenantId, OrderId)> = {
            let mut conn = db.read().acquire().await?;
            sqlx::query(
                "SELECT o.tenant_id, o.id FROM customer_order o \
                 WHERE o.status = 'pending_payment' AND o.expires_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM scheduled_job j \
                   WHERE j.tenant_id = o.tenant_id AND j.id = 'order_expiry:' || o.id) \
                 ORDER BY o.expires_at LIMIT $2",
            )
            .bind(to_micros(now))
            .bind(PASS)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok::<_, sqlx::Error>((
                    TenantId::from_db(row.try_get("tenant_id")?),
                    OrderId::from_db(row.try_get("id")?),
                ))
            })
            .collect::<Result<_, _>>()?
        };
        if due.is_empty() {
            return Ok(closed);
        }
        let this_pass = match expire_orders(db, now, &due).await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    orders = due.len(),
                    "expiring unpaid orders together failed; expiring them one by one"
                );
                let mut n = 0;
                for order in &due {
                    match expire_orders(db, now, std::slice::from_ref(order)).await {
                        Ok(one) => n += one,
                        Err(error) => hand_to_scheduler(db, now, order, &error).await?,
                    }
                }
                n
            }
        };
        closed += this_pass;
        if (due.len() as i64) < PASS || this_pass == 0 {
            return Ok(closed);
        }
    }
}

/// Close these orders if they are still unpaid, in one transaction.
async fn expire_orders(
    db: &crate::common::db::Db,
    now: jiff::Timestamp,
    orders: &[(TenantId, OrderId)],
) -> anyhow::Result<usize> {
    let mut tx = db.begin(now).await?;
    let mut closed = 0;
    for (tenant_id, id) in orders {
        if expire_one(&mut tx, tenant_id, id).await? {
            closed += 1;
        }
    }
    tx.commit().await?;
    Ok(closed)
}

async fn expire_one(tx: &mut Tx, tenant_id: &TenantId, id: &OrderId) -> anyhow::Result<bool> {
    let Some(order) = store::fetch(tx.conn(), tenant_id, id.as_str(), true).await? else {
        return Ok(false);
    };
    let due = order
        .expires_at
        .is_some_and(|deadline| deadline <= to_micros(tx.now()));
    if order.status != OrderStatus::PendingPayment || !due {
        return Ok(false);
    }
    close_unpaid_in(tx, tenant_id, &order, OrderStatus::Expired)
        .await
        .map_err(|e| anyhow::anyhow!("expiring order {id}: {e}"))
}

/// An order that failed to expire on its own becomes a job, due at once.
async fn hand_to_scheduler(
    db: &crate::common::db::Db,
    now: jiff::Timestamp,
    (tenant_id, order_id): &(TenantId, OrderId),
    error: &anyhow::Error,
) -> anyhow::Result<()> {
    tracing::warn!(
        %tenant_id, order = %order_id, error = format!("{error:#}"),
        "an unpaid order could not be expired; the scheduler retries it as a job"
    );
    let mut tx = db.begin(now).await?;
    scheduler::schedule(
        tx.conn(),
        tenant_id,
        &[NewJob {
            id: expiry_job_id(order_id),
            kind: ORDER_EXPIRY_JOB,
            due_at: to_micros(now),
            payload: json!({ "order_id": order_id }),
        }],
        to_micros(now),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Run an [`ORDER_EXPIRY_JOB`]: close the order if it is still unpaid and past its deadline.
pub async fn expire_job(state: &crate::AppState, job: &Job) -> anyhow::Result<()> {
    let order_id = job
        .payload
        .get("order_id")
        .and_then(serde_json::Value::as_str)
        .map(|id| OrderId::from_db(id.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("job without order_id"))?;
    let mut tx = state.begin().await?;
    let closed = expire_one(&mut tx, &job.tenant_id, &order_id).await?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    if closed {
        tracing::info!(order = %order_id, "unpaid order expired by its retry job");
    }
    Ok(())
}
