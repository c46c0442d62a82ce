//! Repurchase prediction and reminders: "remind her three days before the soy-milk powder
//! runs out".
//!
//! For each member and SKU, the next purchase is predicted from, in order of preference:
//! 1. the product's `days_of_supply` × the quantity last bought (`days_of_supply`);
//! 2. the median of the member's own intervals between purchase days of that SKU
//!    (`own_interval`, needs two purchase days);
//! 3. the SKU's median interval across members (`sku_median`, computed by the daily run).
//!
//! The daily run emits `member.repurchase_due` N days before the predicted date (tenant
//! setting `repurchase_reminder_days`, default 3), once per member, SKU and predicted date,
//! only to members who consent to marketing, and never for a product the member has an active
//! subscription to (its deliveries are on their way).

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::State;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::model::summary::Day;
use crate::common::auth::Auth;
use crate::common::db::Db;
use crate::common::error::ApiResult;
use crate::common::extract::Path;
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::sql::{Arg, Sql};
use crate::common::time::{from_micros, to_micros};
use crate::members;
use crate::AppState;

/// One member's purchases of one SKU: (day, quantity), sorted by day.
pub type History = Vec<(Day, i64)>;

/// The lower median.
pub fn median(mut values: Vec<i64>) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

/// Days between consecutive distinct purchase days.
pub fn intervals(history: &[(Day, i64)]) -> Vec<i64> {
    let mut days: Vec<i32> = history.iter().map(|(d, _)| d.0).collect();
    days.dedup();
    days.windows(2).map(|w| i64::from(w[1] - w[0])).collect()
}

/// The predicted next purchase day and the basis of the prediction.
pub fn predict(
    history: &[(Day, i64)],
    days_of_supply: Option<i64>,
    sku_median: Option<i64>,
) -> Option<(Day, &'static str)> {
    let (last, _) = *history.last()?;
    // All purchases on the last day count toward what was bought.
    let quantity: i64 = history
        .iter()
        .filter(|(d, _)| *d == last)
        .map(|(_, q)| q)
        .sum();
    let (days, basis) = if let Some(supply) = days_of_supply {
        (supply.saturating_mul(quantity.max(1)), "days_of_supply")
    } else if let Some(own) = median(intervals(history)) {
        (own, "own_interval")
    } else {
        (sku_median?, "sku_median")
    };
    let next = i64::from(last.0).checked_add(days)?;
    Some((Day(i32::try_from(next).ok()?), basis))
}

/// A prediction as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Repurchase {
    pub sku: String,
    pub last_purchased: String,
    pub quantity: i64,
    pub predicted_next: String,
    /// `days_of_supply`, `own_interval` or `sku_median`.
    pub basis: String,
    /// When the reminder goes out.
    pub remind_on: String,
}

fn day_text(day: Day) -> String {
    let (y, m, d) = day.to_ymd();
    format!("{y:04}-{m:02}-{d:02}")
}

fn local_day(micros: i64, zone: &TimeZone) -> Option<Day> {
    let date = from_micros(micros).to_zoned(zone.clone()).date();
    Day::from_ymd(
        i32::from(date.year()),
        date.month() as u32,
        date.day() as u32,
    )
    .ok()
}

/// Per member, per SKU: purchase history from paid orders (optionally one member only).
async fn histories(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member: Option<&str>,
    zone: &TimeZone,
) -> ApiResult<HashMap<String, BTreeMap<String, History>>> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT member_id, ordered_at, items FROM customer_order WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str()).push(&format!(
        " AND status IN {}",
        super::scoring::PURCHASE_STATUSES
    ));
    if let Some(member) = member {
        sql.push(" AND member_id = ").bind(member);
    }
    sql.push(" ORDER BY ordered_at");
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut out: HashMap<String, BTreeMap<String, History>> = HashMap::new();
    for row in rows {
        let member: String = row.try_get("member_id")?;
        let Some(day) = local_day(row.try_get("ordered_at")?, zone) else {
            continue;
        };
        let items: String = row.try_get("items")?;
        let items: Value = serde_json::from_str(&items).unwrap_or(Value::Null);
        for item in items.as_array().into_iter().flatten() {
            let (Some(sku), qty) = (item["sku"].as_str(), item["qty"].as_i64().unwrap_or(1)) else {
                continue;
            };
            out.entry(member.clone())
                .or_default()
                .entry(sku.to_owned())
                .or_default()
                .push((day, qty));
        }
    }
    Ok(out)
}

async fn sku_medians(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> ApiResult<HashMap<String, i64>> {
    let rows = sqlx::query("SELECT sku, median_days FROM sku_interval WHERE tenant_id = $1")
        .bind(tenant_id.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("sku")?, r.try_get("median_days")?)))
        .collect()
}

fn predictions(
    skus: &BTreeMap<String, History>,
    supply: &HashMap<String, i64>,
    medians: &HashMap<String, i64>,
    remind_days: i64,
) -> Vec<(Repurchase, Day)> {
    let mut out: Vec<(Repurchase, Day)> = skus
        .iter()
        .filter_map(|(sku, history)| {
            let (next, basis) =
                predict(history, supply.get(sku).copied(), medians.get(sku).copied())?;
            let (last, _) = *history.last()?;
            let remind = Day(next.0 - i32::try_from(remind_days).unwrap_or(3));
            Some((
                Repurchase {
                    sku: sku.clone(),
                    last_purchased: day_text(last),
                    quantity: history
                        .iter()
                        .filter(|(d, _)| *d == last)
                        .map(|(_, q)| q)
                        .sum(),
                    predicted_next: day_text(next),
                    basis: basis.to_owned(),
                    remind_on: day_text(remind),
                },
                remind,
            ))
        })
        .collect();
    out.sort_by(|a, b| {
        a.0.predicted_next
            .cmp(&b.0.predicted_next)
            .then(a.0.sku.cmp(&b.0.sku))
    });
    out
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepurchaseList {
    pub data: Vec<Repurchase>,
}

/// A member's predicted next purchase per product, soonest first.
#[utoipa::path(get, path = "/v1/members/{id}/repurchase", tag = "analytics",
    params(("id" = String, Path)), responses((status = 200, body = RepurchaseList), (status = 404)),
    security(("api_key" = [])))]
pub async fn member_repurchase(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RepurchaseList>> {
    let id = members::member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    let zone = crate::tenants::time_zone(&mut conn, &auth.tenant_id).await?;
    let settings = crate::membership::program::load_settings(&mut conn, &auth.tenant_id).await?;
    let supply = crate::orders::products::days_of_supply(&mut conn, &auth.tenant_id).await?;
    let medians = sku_medians(&mut conn, &auth.tenant_id).await?;
    let mut all = histories(&mut conn, &auth.tenant_id, Some(id.as_str()), &zone).await?;
    let skus = all.remove(id.as_str()).unwrap_or_default();
    let data = predictions(&skus, &supply, &medians, settings.repurchase_reminder_days)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    Ok(Json(RepurchaseList { data }))
}

/// Reminders written per transaction by [`run_reminders`].
pub const REMINDERS_PER_TRANSACTION: usize = 500;

/// The daily reminder pass, as of `at`: refresh SKU medians, then emit `member.repurchase_due`
/// for consenting members whose reminder day has come and whose predicted day has not passed.
/// Returns how many reminders were emitted.
///
/// The purchase histories are read without the write lock; the medians are replaced in one
/// transaction, and the reminders are written [`REMINDERS_PER_TRANSACTION`] to a transaction.
/// Repeatable: a reminder is once per member, SKU and predicted date, by a notice written with
/// its event, so a run stopped between two transactions sends the rest, and nothing twice,
/// when it runs again.
pub async fn run_reminders(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    remind_days: i64,
    at: Timestamp,
) -> ApiResult<usize> {
    let today = local_day(to_micros(at), zone).unwrap_or(Day(0));
    let (all, supply, consenting, subscribed) = {
        let mut conn = db.read().acquire().await?;
        let all = histories(&mut conn, tenant_id, None, zone).await?;
        let supply = crate::orders::products::days_of_supply(&mut conn, tenant_id).await?;
        let consenting: HashSet<String> = sqlx::query_scalar(
            "SELECT id FROM member WHERE tenant_id = $1 AND status = 'active' AND consent_marketing = 1",
        )
        .bind(tenant_id.as_str())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        // What an active subscription delivers needs no reminder (周期购 locks it in).
        let subscribed = crate::subscriptions::active_member_skus(&mut conn, tenant_id).await?;
        (all, supply, consenting, subscribed)
    };
    let medians = store_sku_medians(db, tenant_id, &all, at).await?;
    // The reminders due today, by member id.
    let mut members: Vec<&String> = all.keys().filter(|m| consenting.contains(*m)).collect();
    members.sort();
    let mut due: Vec<(&str, Repurchase)> = Vec::new();
    for member in members {
        for (prediction, remind) in predictions(&all[member], &supply, &medians, remind_days) {
            let next = &prediction.predicted_next;
            if remind.0 > today.0 || next.as_str() < day_text(today).as_str() {
                continue;
            }
            if subscribed.contains(&(member.clone(), prediction.sku.clone())) {
                continue;
            }
            due.push((member.as_str(), prediction));
        }
    }
    let mut emitted = 0;
    for chunk in due.chunks(REMINDERS_PER_TRANSACTION) {
        let mut tx = db.begin(at).await?;
        for (member, prediction) in chunk {
            let next = &prediction.predicted_next;
            let key = format!("repurchase:{member}:{}:{next}", prediction.sku);
            if !crate::membership::program::notice_once(
                &mut tx,
                tenant_id,
                &key,
                member,
                "repurchase_due",
            )
            .await?
            {
                continue;
            }
            emitted += 1;
            tx.emit(NewEvent::new(
                tenant_id,
                "member.repurchase_due",
                Some(member),
                json!({ "member_id": member, "sku": prediction.sku, "predicted_next": next,
                        "last_purchased": prediction.last_purchased, "basis": prediction.basis }),
            ));
        }
        tx.commit().await?;
    }
    Ok(emitted)
}

/// SKU medians across members with at least two purchase days, stored (replacing the previous
/// ones) in one transaction and returned.
async fn store_sku_medians(
    db: &Db,
    tenant_id: &TenantId,
    all: &HashMap<String, BTreeMap<String, History>>,
    at: Timestamp,
) -> ApiResult<HashMap<String, i64>> {
    let mut by_sku: HashMap<&str, (Vec<i64>, i64)> = HashMap::new();
    for skus in all.values() {
        for (sku, history) in skus {
            if let Some(own) = median(intervals(history)) {
                let entry = by_sku.entry(sku.as_str()).or_default();
                entry.0.push(own);
                entry.1 += 1;
            }
        }
    }
    let medians: HashMap<String, i64> = by_sku
        .iter()
        .filter_map(|(sku, (values, _))| Some(((*sku).to_owned(), median(values.clone())?)))
        .collect();
    let mut tx = db.begin(at).await?;
    sqlx::query("DELETE FROM sku_interval WHERE tenant_id = $1")
        .bind(tenant_id.as_str())
        .execute(tx.conn())
        .await?;
    let rows: Vec<(&str, i64, i64)> = by_sku
        .iter()
        .filter_map(|(sku, (_, members))| Some((*sku, *medians.get(*sku)?, *members)))
        .collect();
    let now = to_micros(tx.now());
    for chunk in rows.chunks(500) {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO sku_interval (tenant_id, sku, median_days, members, computed_at) VALUES ",
        );
        sql.values(chunk, |(sku, median, members)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(*sku),
                Arg::from(*median),
                Arg::from(*members),
                Arg::from(now),
            ]
        });
        sql.query().execute(tx.conn()).await?;
    }
    tx.commit().await?;
    Ok(medians)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Day {
        Day::from_ymd(y, m, day).unwrap()
    }

    #[test]
    fn days_of_supply_times_quantity_comes_first() {
        let history = vec![(d(2026, 1, 1), 1), (d(2026, 1, 10), 2)];
        assert_eq!(
            predict(&history, Some(15), Some(7)),
            Some((d(2026, 2, 9), "days_of_supply"))
        );
    }

    #[test]
    fn own_intervals_then_the_sku_median() {
        let history = vec![(d(2026, 1, 1), 1), (d(2026, 1, 11), 1), (d(2026, 1, 31), 1)];
        // Intervals 10 and 20: the lower median is 10.
        assert_eq!(
            predict(&history, None, Some(7)),
            Some((d(2026, 2, 10), "own_interval"))
        );
        let once = vec![(d(2026, 1, 1), 1)];
        assert_eq!(
            predict(&once, None, Some(7)),
            Some((d(2026, 1, 8), "sku_median"))
        );
        assert_eq!(predict(&once, None, None), None);
    }

    #[test]
    fn same_day_purchases_are_one_interval() {
        let history = vec![(d(2026, 1, 1), 1), (d(2026, 1, 1), 1), (d(2026, 1, 5), 1)];
        assert_eq!(intervals(&history), vec![4]);
        assert_eq!(median(vec![5, 1, 3, 2]), Some(2));
    }
}
