//! The SQL of subscriptions: plans, subscriptions and their delivery rows. Every statement is
//! scoped by `tenant_id`.

use jiff::civil::Date;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::model::{
    Billing, Delivery, DeliveryStatus, DeliveryView, Plan, Subscription, SubscriptionStatus,
};
use super::schedule::Schedule;
use crate::common::db::Backend;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::{backend_of, Arg, Sql};
use crate::common::state::state_column;
use crate::common::time::micros_to_rfc3339;

/// ` FOR UPDATE` on PostgreSQL (SQLite's single writer already serialises).
pub fn for_update(conn: &AnyConnection) -> &'static str {
    match backend_of(conn) {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

fn schedule_of(row: &AnyRow) -> Result<Schedule, sqlx::Error> {
    let text: String = row.try_get("schedule")?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: "schedule".into(),
        source: Box::new(e),
    })
}

pub fn date_of(text: &str) -> Result<Date, sqlx::Error> {
    text.parse()
        .map_err(|e: jiff::Error| sqlx::Error::ColumnDecode {
            index: "date".into(),
            source: Box::new(e),
        })
}

// ----- plans -----

const PLAN_COLUMNS: &str = "id, name, product_id, qty, schedule, deliveries, price_per_delivery, \
    billing, cutoff_days, active, created_at, updated_at";

fn plan_from_row(row: &AnyRow) -> Result<Plan, sqlx::Error> {
    Ok(Plan {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        product_id: row.try_get("product_id")?,
        qty: row.try_get("qty")?,
        schedule: schedule_of(row)?,
        deliveries: row.try_get("deliveries")?,
        price_per_delivery: row.try_get("price_per_delivery")?,
        billing: state_column(row, "billing")?,
        cutoff_days: row.try_get("cutoff_days")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
    })
}

/// A new plan's row.
pub struct NewPlan<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub product_id: &'a str,
    pub qty: i64,
    pub schedule: &'a Schedule,
    pub deliveries: Option<i64>,
    pub price_per_delivery: i64,
    pub billing: Billing,
    pub cutoff_days: i64,
}

pub async fn insert_plan(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    plan: &NewPlan<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO subscription_plan (tenant_id, {PLAN_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)"
    ))
    .bind(tenant_id.as_str())
    .bind(plan.id)
    .bind(plan.name)
    .bind(plan.product_id)
    .bind(plan.qty)
    .bind(serde_json::to_string(plan.schedule).unwrap_or_default())
    .bind(plan.deliveries)
    .bind(plan.price_per_delivery)
    .bind(plan.billing.as_str())
    .bind(plan.cutoff_days)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// One plan, or 404.
pub async fn plan(conn: &mut AnyConnection, tenant_id: &TenantId, id: &str) -> ApiResult<Plan> {
    let row = sqlx::query(&format!(
        "SELECT {PLAN_COLUMNS} FROM subscription_plan WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref()
        .map(plan_from_row)
        .transpose()?
        .ok_or_else(|| ApiError::not_found("subscription plan"))
}

pub async fn save_plan(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    plan: &Plan,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscription_plan SET name = $1, active = $2, price_per_delivery = $3, \
         cutoff_days = $4, updated_at = $5 WHERE tenant_id = $6 AND id = $7",
    )
    .bind(&plan.name)
    .bind(i64::from(plan.active))
    .bind(plan.price_per_delivery)
    .bind(plan.cutoff_days)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(&plan.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Plans, newest first.
pub async fn plans(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    active: Option<bool>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Plan>, sqlx::Error> {
    let mut sql = Sql::for_conn(
        conn,
        &format!("SELECT {PLAN_COLUMNS} FROM subscription_plan WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    if let Some(active) = active {
        sql.push(" AND active = ").bind(i64::from(active));
    }
    if let Some(before) = before {
        sql.push(" AND id < ").bind(before);
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(conn).await?;
    rows.iter().map(plan_from_row).collect()
}

// ----- subscriptions -----

/// A subscription row as stored (its calendar apart).
#[derive(Debug, Clone)]
pub struct StoredSubscription {
    pub id: String,
    pub member_id: MemberId,
    pub plan_id: String,
    pub product_id: String,
    pub qty: i64,
    pub schedule: Schedule,
    pub anchor_date: Date,
    pub deliveries: Option<i64>,
    pub price_per_delivery: i64,
    pub billing: Billing,
    pub cutoff_days: i64,
    pub status: SubscriptionStatus,
    pub pause_reason: Option<String>,
    pub address: Option<String>,
    pub leader_id: Option<String>,
    pub order_id: Option<String>,
    pub refunded: i64,
    pub ending_notified: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StoredSubscription {
    pub fn delivery(&self) -> Option<Delivery> {
        match (&self.address, &self.leader_id) {
            (Some(address), _) => Some(Delivery::Address {
                address: address.clone(),
            }),
            (None, Some(leader_id)) => Some(Delivery::Leader {
                leader_id: leader_id.clone(),
            }),
            (None, None) => None,
        }
    }

    /// The view with its calendar.
    pub fn view(&self, deliveries: Vec<DeliveryView>) -> Subscription {
        let remaining = self.deliveries.map(|total| {
            let taken = deliveries
                .iter()
                .filter(|d| {
                    matches!(
                        d.status,
                        DeliveryStatus::Ordered | DeliveryStatus::Delivered
                    )
                })
                .count();
            match self.status {
                SubscriptionStatus::Cancelled | SubscriptionStatus::Completed => 0,
                _ => (total - i64::try_from(taken).unwrap_or(total)).max(0),
            }
        });
        Subscription {
            id: self.id.clone(),
            member_id: self.member_id.to_string(),
            plan_id: self.plan_id.clone(),
            product_id: self.product_id.clone(),
            qty: self.qty,
            schedule: self.schedule.clone(),
            billing: self.billing,
            price_per_delivery: self.price_per_delivery,
            cutoff_days: self.cutoff_days,
            status: self.status,
            pause_reason: self.pause_reason.clone(),
            delivery: self.delivery(),
            order_id: self.order_id.clone(),
            deliveries_total: self.deliveries,
            remaining,
            refunded: self.refunded,
            deliveries,
            created_at: micros_to_rfc3339(self.created_at),
            updated_at: micros_to_rfc3339(self.updated_at),
        }
    }
}

const SUBSCRIPTION_COLUMNS: &str = "id, member_id, plan_id, product_id, qty, schedule, \
    anchor_date, deliveries, price_per_delivery, billing, cutoff_days, status, pause_reason, \
    address, pickup_leader_id, order_id, refunded, ending_notified, created_at, updated_at";

fn subscription_from_row(row: &AnyRow) -> Result<StoredSubscription, sqlx::Error> {
    let anchor: String = row.try_get("anchor_date")?;
    Ok(StoredSubscription {
        id: row.try_get("id")?,
        member_id: MemberId::from_db(row.try_get("member_id")?),
        plan_id: row.try_get("plan_id")?,
        product_id: row.try_get("product_id")?,
        qty: row.try_get("qty")?,
        schedule: schedule_of(row)?,
        anchor_date: date_of(&anchor)?,
        deliveries: row.try_get("deliveries")?,
        price_per_delivery: row.try_get("price_per_delivery")?,
        billing: state_column(row, "billing")?,
        cutoff_days: row.try_get("cutoff_days")?,
        status: state_column(row, "status")?,
        pause_reason: row.try_get("pause_reason")?,
        address: row.try_get("address")?,
        leader_id: row.try_get("pickup_leader_id")?,
        order_id: row.try_get("order_id")?,
        refunded: row.try_get("refunded")?,
        ending_notified: row.try_get::<i64, _>("ending_notified")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert_subscription(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    s: &StoredSubscription,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO subscription (tenant_id, {SUBSCRIPTION_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    ))
    .bind(tenant_id.as_str())
    .bind(&s.id)
    .bind(s.member_id.as_str())
    .bind(&s.plan_id)
    .bind(&s.product_id)
    .bind(s.qty)
    .bind(serde_json::to_string(&s.schedule).unwrap_or_default())
    .bind(s.anchor_date.to_string())
    .bind(s.deliveries)
    .bind(s.price_per_delivery)
    .bind(s.billing.as_str())
    .bind(s.cutoff_days)
    .bind(s.status.as_str())
    .bind(s.pause_reason.clone())
    .bind(s.address.clone())
    .bind(s.leader_id.clone())
    .bind(s.order_id.clone())
    .bind(s.refunded)
    .bind(i64::from(s.ending_notified))
    .bind(s.created_at)
    .bind(s.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Write back what changes on a subscription (never its terms of money).
pub async fn save_subscription(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    s: &StoredSubscription,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscription SET qty = $1, anchor_date = $2, status = $3, pause_reason = $4, \
         address = $5, pickup_leader_id = $6, refunded = $7, ending_notified = $8, updated_at = $9 \
         WHERE tenant_id = $10 AND id = $11",
    )
    .bind(s.qty)
    .bind(s.anchor_date.to_string())
    .bind(s.status.as_str())
    .bind(s.pause_reason.clone())
    .bind(s.address.clone())
    .bind(s.leader_id.clone())
    .bind(s.refunded)
    .bind(i64::from(s.ending_notified))
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(&s.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// One subscription (locked on PostgreSQL when `lock`), or none.
pub async fn subscription(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    lock: bool,
) -> Result<Option<StoredSubscription>, sqlx::Error> {
    let lock = if lock { for_update(conn) } else { "" };
    let row = sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE tenant_id = $1 AND id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

/// The subscription whose prepaid order this is, locked.
pub async fn subscription_of_order(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> Result<Option<StoredSubscription>, sqlx::Error> {
    let lock = for_update(conn);
    let row = sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE tenant_id = $1 AND order_id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

/// Subscriptions, newest first, filtered.
pub async fn subscriptions(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    filter: &Filter<'_>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredSubscription>, sqlx::Error> {
    let mut sql = Sql::for_conn(
        conn,
        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    if let Some(member_id) = filter.member_id {
        sql.push(" AND member_id = ").bind(member_id);
    }
    if let Some(status) = filter.status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    if let Some(plan_id) = filter.plan_id {
        sql.push(" AND plan_id = ").bind(plan_id);
    }
    if let Some(before) = before {
        sql.push(" AND id < ").bind(before);
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(conn).await?;
    rows.iter().map(subscription_from_row).collect()
}

/// What a list of subscriptions is filtered by.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub member_id: Option<&'a str>,
    pub status: Option<SubscriptionStatus>,
    pub plan_id: Option<&'a str>,
}

// ----- deliveries -----

/// A delivery row.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub date: Date,
    pub cutoff_at: i64,
    pub status: DeliveryStatus,
    pub reason: Option<String>,
    pub qty: i64,
    pub order_id: Option<String>,
    pub failed_payments: i64,
}

const DELIVERY_COLUMNS: &str =
    "d.delivery_date, d.cutoff_at, d.status, d.reason, d.qty, d.order_id, d.failed_payments";

fn delivery_from_row(row: &AnyRow) -> Result<StoredDelivery, sqlx::Error> {
    let date: String = row.try_get("delivery_date")?;
    Ok(StoredDelivery {
        date: date_of(&date)?,
        cutoff_at: row.try_get("cutoff_at")?,
        status: state_column(row, "status")?,
        reason: row.try_get("reason")?,
        qty: row.try_get("qty")?,
        order_id: row.try_get("order_id")?,
        failed_payments: row.try_get("failed_payments")?,
    })
}

/// Insert delivery rows (a day already in the calendar is kept as it is).
pub async fn insert_deliveries(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
    rows: &[(Date, i64, i64)],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(200) {
        let mut sql = Sql::for_conn(
            conn,
            "INSERT INTO subscription_delivery (tenant_id, subscription_id, delivery_date, \
             cutoff_at, status, qty, created_at, updated_at) VALUES ",
        );
        sql.values(chunk, |(date, cutoff_at, qty)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(subscription_id),
                Arg::from(date.to_string()),
                Arg::from(*cutoff_at),
                Arg::from(DeliveryStatus::Scheduled.as_str()),
                Arg::from(*qty),
                Arg::from(now),
                Arg::from(now),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A subscription's calendar, by day.
pub async fn deliveries(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
) -> Result<Vec<StoredDelivery>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM subscription_delivery d \
         WHERE d.tenant_id = $1 AND d.subscription_id = $2 ORDER BY d.delivery_date"
    ))
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// A subscription's calendar as the API shows it: an ordered delivery whose order was
/// fulfilled or completed is `delivered`.
pub async fn delivery_views(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
) -> Result<Vec<DeliveryView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS}, o.status AS order_status FROM subscription_delivery d \
         LEFT JOIN customer_order o ON o.tenant_id = d.tenant_id AND o.id = d.order_id \
         WHERE d.tenant_id = $1 AND d.subscription_id = $2 ORDER BY d.delivery_date"
    ))
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let d = delivery_from_row(row)?;
            let order_status: Option<String> = row.try_get("order_status")?;
            let status = match (d.status, order_status.as_deref()) {
                (DeliveryStatus::Ordered, Some("fulfilled" | "completed")) => {
                    DeliveryStatus::Delivered
                }
                (status, _) => status,
            };
            Ok(DeliveryView {
                date: d.date.to_string(),
                status,
                cutoff_at: micros_to_rfc3339(d.cutoff_at),
                qty: d.qty,
                order_id: d.order_id,
                reason: d.reason,
            })
        })
        .collect()
}

/// One delivery of a subscription.
pub async fn delivery(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
    date: Date,
) -> Result<Option<StoredDelivery>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM subscription_delivery d \
         WHERE d.tenant_id = $1 AND d.subscription_id = $2 AND d.delivery_date = $3"
    ))
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .bind(date.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(delivery_from_row).transpose()
}

/// Move a delivery from `from` to `to` (with its order and reason); false when it was not in
/// `from` any more.
#[allow(clippy::too_many_arguments)]
pub async fn move_delivery(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
    date: Date,
    from: DeliveryStatus,
    to: DeliveryStatus,
    reason: Option<&str>,
    order_id: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE subscription_delivery SET status = $1, reason = $2, \
         order_id = COALESCE($3, order_id), updated_at = $4 \
         WHERE tenant_id = $5 AND subscription_id = $6 AND delivery_date = $7 AND status = $8",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(order_id)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .bind(date.to_string())
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Count a failed payment of a delivery's order; the count after it.
pub async fn count_failed_payment(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
    date: Date,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "UPDATE subscription_delivery SET failed_payments = failed_payments + 1, updated_at = $1 \
         WHERE tenant_id = $2 AND subscription_id = $3 AND delivery_date = $4",
    )
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .bind(date.to_string())
    .execute(&mut *conn)
    .await?;
    let count: Option<i64> = sqlx::query_scalar(
        "SELECT failed_payments FROM subscription_delivery \
         WHERE tenant_id = $1 AND subscription_id = $2 AND delivery_date = $3",
    )
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .bind(date.to_string())
    .fetch_optional(conn)
    .await?;
    Ok(count.unwrap_or(0))
}

/// Drop the scheduled deliveries whose cut-off is after `now` (a pause or a cancel); the rest
/// (ordered, skipped, or past their cut-off and about to be ordered) stay.
pub async fn drop_future(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let dropped = sqlx::query(
        "DELETE FROM subscription_delivery WHERE tenant_id = $1 AND subscription_id = $2 \
         AND status = 'scheduled' AND cutoff_at > $3",
    )
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(dropped.rows_affected())
}

/// Set the quantity of the deliveries from `from` on that are still scheduled.
pub async fn set_future_qty(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subscription_id: &str,
    from: Date,
    qty: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscription_delivery SET qty = $1, updated_at = $2 WHERE tenant_id = $3 \
         AND subscription_id = $4 AND delivery_date >= $5 AND status = 'scheduled'",
    )
    .bind(qty)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(subscription_id)
    .bind(from.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Units and deliveries per local day from `from` to `until` of a plan: ordered deliveries
/// of any subscription and scheduled ones of active subscriptions.
pub async fn plan_units_by_day(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    plan_id: &str,
    from: Date,
    until: Date,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.delivery_date, CAST(SUM(d.qty) AS BIGINT) AS units, COUNT(*) AS deliveries \
         FROM subscription_delivery d JOIN subscription s \
           ON s.tenant_id = d.tenant_id AND s.id = d.subscription_id \
         WHERE d.tenant_id = $1 AND s.plan_id = $2 AND d.delivery_date >= $3 \
           AND d.delivery_date <= $4 \
           AND (d.status = 'ordered' OR (d.status = 'scheduled' AND s.status = 'active')) \
         GROUP BY d.delivery_date ORDER BY d.delivery_date",
    )
    .bind(tenant_id.as_str())
    .bind(plan_id)
    .bind(from.to_string())
    .bind(until.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("delivery_date")?,
                row.try_get::<i64, _>("units")?,
                row.try_get::<i64, _>("deliveries")?,
            ))
        })
        .collect()
}

/// The (member, product sku) pairs with an active subscription: no repurchase reminder for
/// them.
pub async fn active_member_skus(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT s.member_id, p.sku FROM subscription s \
         JOIN product p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
         WHERE s.tenant_id = $1 AND s.status = 'active'",
    )
    .bind(tenant_id.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("member_id")?, row.try_get("sku")?)))
        .collect()
}
