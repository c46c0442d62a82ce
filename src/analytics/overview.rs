//! The business at a glance (`GET /v1/analytics/overview`): paid GMV, paid orders, refunds, new
//! and active members for today and for the last N tenant-local days, each day's figures, and
//! the period's best-selling products. The admin console's dashboard draws it; a merchant's
//! own reporting can read it too.
//!
//! Days are the tenant's local days (DESIGN rule 6): the period is today and the N-1 days
//! before it. An order counts on the day it was paid (GMV is what was paid, refunds are shown
//! on the day they were made); a member is new on the day they were created and active on a
//! day they paid an order or checked in.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};

use crate::common::auth::Auth;
use crate::common::error::{ApiError, ApiResult};
use crate::common::extract::Query;
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::time::to_micros;
use crate::tenants;
use crate::AppState;

/// Longest period.
pub const MAX_DAYS: i64 = 366;
/// Products listed in `top_products`.
pub const TOP_PRODUCTS: usize = 10;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// Local days in the period, today included: 1 to 366, default 30.
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
}

/// One span's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Figures {
    /// Sum of the totals of orders paid in the span (fen).
    pub paid_gmv: i64,
    pub paid_orders: i64,
    /// Sum of the refunds made in the span (fen).
    pub refunded: i64,
    /// Members created in the span.
    pub new_members: i64,
    /// Members who paid an order or checked in during the span.
    pub active_members: i64,
}

/// One local day's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Day {
    /// `YYYY-MM-DD`, the tenant's local date.
    pub date: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A product's sales in the period (orders paid in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TopProduct {
    /// Null for lines of imported orders that name only a SKU.
    pub product_id: Option<String>,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub units: i64,
    /// Sum of the lines' totals (fen); lines without a total count 0.
    pub sales: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub time_zone: String,
    pub days: i64,
    /// First local date of the period.
    pub from: String,
    /// Today (the tenant's local date), the period's last day.
    pub to: String,
    pub today: Figures,
    pub period: Figures,
    /// Every day of the period, oldest first.
    pub daily: Vec<Day>,
    /// Best sellers of the period by units, then sales; at most 10.
    pub top_products: Vec<TopProduct>,
}

/// The business at a glance: today and the last `days` local days.
#[utoipa::path(get, path = "/v1/analytics/overview", tag = "analytics", params(OverviewQuery),
    responses((status = 200, body = Overview)), security(("api_key" = [])))]
pub async fn overview(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<OverviewQuery>,
) -> ApiResult<Json<Overview>> {
    let days = query.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::validation(
            "days",
            format!("must be 1 to {MAX_DAYS}"),
        ));
    }
    let mut conn = state.db.read().acquire().await?;
    let zone = tenants::time_zone(&mut conn, &auth.tenant_id).await?;
    let now = state.clock.now();
    Ok(Json(
        compute(&mut conn, &auth.tenant_id, &zone, now, days).await?,
    ))
}

/// The local days of the period and the instants where each begins (one more: the end).
fn day_starts(zone: &TimeZone, today: Date, days: i64) -> ApiResult<(Vec<Date>, Vec<i64>)> {
    let first = today
        .checked_sub((days - 1).days())
        .map_err(ApiError::internal)?;
    let mut dates = Vec::with_capacity(days as usize);
    let mut starts = Vec::with_capacity(days as usize + 1);
    let mut date = first;
    for _ in 0..=days {
        let start = zone
            .to_zoned(date.to_datetime(jiff::civil::Time::midnight()))
            .map_err(ApiError::internal)?;
        starts.push(to_micros(start.timestamp()));
        if dates.len() < days as usize {
            dates.push(date);
        }
        date = date.tomorrow().map_err(ApiError::internal)?;
    }
    Ok((dates, starts))
}

/// The day (index into the period) that `at` falls on.
fn day_of(starts: &[i64], at: i64) -> Option<usize> {
    if at < *starts.first()? || at >= *starts.last()? {
        return None;
    }
    Some(starts.partition_point(|&start| start <= at) - 1)
}

/// The overview of the period ending today: each day's figures, the period's, the best sellers.
async fn compute(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    zone: &TimeZone,
    now: Timestamp,
    days: i64,
) -> ApiResult<Overview> {
    let today = now.to_zoned(zone.clone()).date();
    let (dates, starts) = day_starts(zone, today, days)?;
    let mut tally = Tally::new(dates.len());
    tally.paid_orders(conn, tenant_id, &starts).await?;
    tally.refunds(conn, tenant_id, &starts).await?;
    tally.new_members(conn, tenant_id, &starts).await?;
    tally.checkins(conn, tenant_id, &dates).await?;
    Ok(tally.overview(zone, days, &dates))
}

/// Products by (product id, SKU), as [`count_lines`] adds them up.
type ProductTally = HashMap<(Option<String>, Option<String>), TopProduct>;

/// The period's figures while its rows are read: each day's, the members active on each day,
/// the products sold.
struct Tally {
    daily: Vec<Figures>,
    active: Vec<BTreeSet<String>>,
    products: ProductTally,
}

impl Tally {
    fn new(days: usize) -> Self {
        Tally {
            daily: vec![Figures::default(); days],
            active: vec![BTreeSet::new(); days],
            products: HashMap::new(),
        }
    }

    /// Orders paid in the period: GMV, count, their members active, their lines sold.
    async fn paid_orders(
        &mut self,
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        starts: &[i64],
    ) -> ApiResult<()> {
        let (from, to) = period_bounds(starts);
        let orders = sqlx::query(
            "SELECT member_id, total, paid_at, items FROM customer_order \
             WHERE tenant_id = $1 AND paid_at >= $2 AND paid_at < $3",
        )
        .bind(tenant_id.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
        for row in &orders {
            let Some(day) = day_of(starts, row.try_get("paid_at")?) else {
                continue;
            };
            let figures = &mut self.daily[day];
            figures.paid_gmv = figures.paid_gmv.saturating_add(row.try_get("total")?);
            figures.paid_orders += 1;
            self.active[day].insert(row.try_get("member_id")?);
            let items: String = row.try_get("items")?;
            count_lines(&mut self.products, &items);
        }
        Ok(())
    }

    /// Refunds made in the period.
    async fn refunds(
        &mut self,
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        starts: &[i64],
    ) -> ApiResult<()> {
        let (from, to) = period_bounds(starts);
        let refunds: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT created_at, amount FROM order_refund \
             WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3",
        )
        .bind(tenant_id.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
        for (at, amount) in refunds {
            if let Some(day) = day_of(starts, at) {
                self.daily[day].refunded = self.daily[day].refunded.saturating_add(amount);
            }
        }
        Ok(())
    }

    /// Members created in the period.
    async fn new_members(
        &mut self,
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        starts: &[i64],
    ) -> ApiResult<()> {
        let (from, to) = period_bounds(starts);
        let joined: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at FROM member WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3",
        )
        .bind(tenant_id.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
        for at in joined {
            if let Some(day) = day_of(starts, at) {
                self.daily[day].new_members += 1;
            }
        }
        Ok(())
    }

    /// Check-ins on the period's local dates: their members active.
    async fn checkins(
        &mut self,
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        dates: &[Date],
    ) -> ApiResult<()> {
        let checkins: Vec<(String, String)> = sqlx::query_as(
            "SELECT member_id, local_date FROM checkin \
             WHERE tenant_id = $1 AND local_date >= $2 AND local_date <= $3",
        )
        .bind(tenant_id.as_str())
        .bind(dates[0].to_string())
        .bind(dates[dates.len() - 1].to_string())
        .fetch_all(&mut *conn)
        .await?;
        let index: HashMap<String, usize> = dates
            .iter()
            .enumerate()
            .map(|(i, d)| (d.to_string(), i))
            .collect();
        for (member, date) in checkins {
            if let Some(&day) = index.get(&date) {
                self.active[day].insert(member);
            }
        }
        Ok(())
    }

    /// The overview: each day's active members counted, the period summed, the best sellers.
    fn overview(self, zone: &TimeZone, days: i64, dates: &[Date]) -> Overview {
        let Tally {
            mut daily,
            active,
            products,
        } = self;
        let mut period = Figures::default();
        let mut everyone = BTreeSet::new();
        for (figures, members) in daily.iter_mut().zip(&active) {
            figures.active_members = members.len() as i64;
            period.paid_gmv = period.paid_gmv.saturating_add(figures.paid_gmv);
            period.paid_orders += figures.paid_orders;
            period.refunded = period.refunded.saturating_add(figures.refunded);
            period.new_members += figures.new_members;
            everyone.extend(members.iter().cloned());
        }
        period.active_members = everyone.len() as i64;

        let mut top_products: Vec<TopProduct> = products.into_values().collect();
        top_products.sort_by(|a, b| {
            (b.units, b.sales, &a.sku, &a.product_id).cmp(&(
                a.units,
                a.sales,
                &b.sku,
                &b.product_id,
            ))
        });
        top_products.truncate(TOP_PRODUCTS);

        Overview {
            time_zone: zone.iana_name().unwrap_or("UTC").to_owned(),
            days,
            from: dates[0].to_string(),
            to: dates[dates.len() - 1].to_string(),
            today: daily[daily.len() - 1].clone(),
            period,
            daily: dates
                .iter()
                .zip(daily)
                .map(|(date, figures)| Day {
                    date: date.to_string(),
                    figures,
                })
                .collect(),
            top_products,
        }
    }
}

/// The period's first instant and the instant after it (micros).
fn period_bounds(starts: &[i64]) -> (i64, i64) {
    (starts[0], starts[starts.len() - 1])
}

/// Add an order's lines (its `items` JSON) to the product tally. Lines name a product id (orders
/// placed here) or only a SKU (imported history); a line that is not an object is skipped.
fn count_lines(products: &mut ProductTally, items: &str) {
    let Ok(Value::Array(lines)) = serde_json::from_str::<Value>(items) else {
        return;
    };
    for line in &lines {
        let text = |key: &str| line[key].as_str().map(str::to_owned);
        let (product_id, sku) = (text("product_id"), text("sku"));
        if product_id.is_none() && sku.is_none() {
            continue;
        }
        let entry = products
            .entry((product_id.clone(), sku.clone()))
            .or_insert_with(|| TopProduct {
                product_id,
                sku,
                name: text("name"),
                units: 0,
                sales: 0,
            });
        entry.units = entry
            .units
            .saturating_add(line["qty"].as_i64().unwrap_or(1));
        entry.sales = entry
            .sales
            .saturating_add(line["line_total"].as_i64().unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_local_and_instants_fall_on_their_local_day() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let today = jiff::civil::date(2026, 12, 6);
        let (dates, starts) = day_starts(&zone, today, 3).unwrap();
        assert_eq!(dates.len(), 3);
        assert_eq!(dates[0].to_string(), "2026-12-04");
        assert_eq!(starts.len(), 4);
        // 2026-12-05T16:30Z is 00:30 on the 6th in Shanghai: today.
        let at: Timestamp = "2026-12-05T16:30:00Z".parse().unwrap();
        assert_eq!(day_of(&starts, to_micros(at)), Some(2));
        let at: Timestamp = "2026-12-05T15:59:59Z".parse().unwrap();
        assert_eq!(day_of(&starts, to_micros(at)), Some(1));
        let before: Timestamp = "2026-12-03T15:59:59Z".parse().unwrap();
        assert_eq!(day_of(&starts, to_micros(before)), None);
        assert_eq!(day_of(&starts, starts[3]), None);
    }

    #[test]
    fn a_day_across_a_clock_change_is_that_long() {
        let zone = TimeZone::get("Europe/Berlin").unwrap();
        let (_, starts) = day_starts(&zone, jiff::civil::date(2026, 10, 25), 1).unwrap();
        assert_eq!(starts[1] - starts[0], 25 * 3600 * 1_000_000);
    }

    #[test]
    fn lines_are_tallied_by_product_or_sku() {
        let mut products = HashMap::new();
        count_lines(
            &mut products,
            r#"[{"product_id":"prd_1","sku":"SOY","name":"豆浆","qty":2,"line_total":1000},
                {"sku":"BUN","qty":1}, 7]"#,
        );
        count_lines(
            &mut products,
            r#"[{"product_id":"prd_1","sku":"SOY","qty":1,"line_total":500}]"#,
        );
        count_lines(&mut products, "not json");
        let soy = &products[&(Some("prd_1".into()), Some("SOY".into()))];
        assert_eq!((soy.units, soy.sales), (3, 1500));
        assert_eq!(products[&(None, Some("BUN".into()))].units, 1);
        assert_eq!(products.len(), 2);
    }
}
