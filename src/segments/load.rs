//! Filling an [`Index`] from the database: the whole tenant at once ([`build`]), or some
//! members again after the outbox said they changed ([`reload`]).
//!
//! Every fact is read from its owner's table, the same tables the API answers from: the member
//! row (status, source, consent, tier, lifecycle stage, inviter, birthday, creation), tags,
//! open group stays, referral attributions that were not refused or rejected, the member's
//! posted points balance, paid orders (paid, fulfilled or completed: count, total net of
//! refunds, day of the last) and the last scoring run (segment, P(alive), CLV).

use futures::TryStreamExt as _;
use jiff::tz::TimeZone;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::index::{day_number, id_number, Facts, Idx, Index};
use crate::common::db::Db;
use crate::common::ids::TenantId;
use crate::common::sql::Sql;
use crate::common::time::from_micros;
use crate::members::model::STATUS_ACTIVE;

/// Order statuses that count as paid (`analytics::scoring::PURCHASE_STATUSES`).
const PAID: &str = crate::analytics::scoring::PURCHASE_STATUSES;
/// Referral statuses that are no attribution.
const NOT_ATTRIBUTED: &str = "('refused', 'rejected')";
/// Members per `IN (…)` list of a reload.
const CHUNK: usize = 500;

const PROFILE: &str = "SELECT id, status, source, consent_marketing, created_at, birthday, tier, \
    lifecycle_stage, invited_by FROM member WHERE tenant_id = ";

fn day_of(micros: i64, zone: &TimeZone) -> i32 {
    day_number(from_micros(micros).to_zoned(zone.clone()).date())
}

fn birthday(text: Option<&str>) -> Option<(i8, i8)> {
    let date: jiff::civil::Date = text?.parse().ok()?;
    Some((date.month(), date.day()))
}

/// A member row's facts; `None` for an id that is not `mem_` + 32 hex digits (never written by
/// shequn; such a row is left out of audiences rather than failing the whole index).
fn profile(row: &AnyRow, zone: &TimeZone) -> Result<Option<(u128, Facts)>, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let Some(number) = id_number(&id) else {
        tracing::warn!(member = %id, "segment index: member id of an unknown shape left out");
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let consent: i64 = row.try_get("consent_marketing")?;
    let birthday_text: Option<String> = row.try_get("birthday")?;
    Ok(Some((
        number,
        Facts {
            active: status == STATUS_ACTIVE,
            source: row.try_get("source")?,
            tier: row.try_get("tier")?,
            lifecycle_stage: row.try_get("lifecycle_stage")?,
            invited_by: row.try_get("invited_by")?,
            consent_marketing: consent != 0,
            joined_day: day_of(row.try_get("created_at")?, zone),
            birthday: birthday(birthday_text.as_deref()),
            ..Facts::default()
        },
    )))
}

/// What a whole build read, for the log and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct Built {
    pub members: usize,
    /// The tenant's last event number before the read: later events are replayed.
    pub seq: i64,
}

/// The tenant's last event number.
pub async fn last_seq(db: &Db, tenant_id: &TenantId) -> Result<i64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT event_seq FROM tenant WHERE id = $1")
        .bind(tenant_id.as_str())
        .fetch_optional(db.read())
        .await?;
    Ok(seq.unwrap_or(0))
}

/// Build the index of a tenant from the database; `progress` is told the members numbered so
/// far, now and then.
pub async fn build(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    mut progress: impl FnMut(&str, usize),
) -> Result<(Index, Built), sqlx::Error> {
    // The outbox position first: whatever commits while we read is replayed after.
    let seq = last_seq(db, tenant_id).await?;
    let mut index = Index::new();
    let pool = db.read();
    let tenant = tenant_id.as_str();

    let mut sql = Sql::new(PROFILE);
    sql.bind(tenant).push(" ORDER BY id");
    let mut rows = sql.query().fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let Some((number, facts)) = profile(&row, zone)? else {
            continue;
        };
        let idx = index.add(number);
        index.set_profile(idx, &facts);
        if index.len().is_multiple_of(1_000_000) {
            progress("members", index.len());
        }
    }
    drop(rows);
    progress("members", index.len());

    let idx = |index: &Index, id: &str| id_number(id).and_then(|n| index.idx_of(n));

    let mut rows = sqlx::query("SELECT member_id, tag FROM member_tag WHERE tenant_id = $1")
        .bind(tenant)
        .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let member: String = row.try_get(0)?;
        if let Some(i) = idx(&index, &member) {
            index.add_tag(i, &row.try_get::<String, _>(1)?);
        }
    }
    drop(rows);
    progress("tags", index.len());

    let mut rows = sqlx::query(
        "SELECT member_id, group_id FROM group_membership WHERE tenant_id = $1 AND left_at IS NULL",
    )
    .bind(tenant)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let member: String = row.try_get(0)?;
        if let Some(i) = idx(&index, &member) {
            index.add_group(i, &row.try_get::<String, _>(1)?);
        }
    }
    drop(rows);

    let referrals = format!(
        "SELECT invitee_id, campaign_id FROM referral WHERE tenant_id = $1 \
         AND status NOT IN {NOT_ATTRIBUTED}"
    );
    let mut rows = sqlx::query(&referrals).bind(tenant).fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let member: String = row.try_get(0)?;
        if let Some(i) = idx(&index, &member) {
            index.add_campaign(i, &row.try_get::<String, _>(1)?);
        }
    }
    drop(rows);

    let mut rows = sqlx::query(
        "SELECT address, credits_posted - debits_posted AS balance FROM ledger_account \
         WHERE tenant_id = $1 AND asset = 'points'",
    )
    .bind(tenant)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let address: String = row.try_get(0)?;
        if let Some(i) = address.strip_prefix("member:").and_then(|m| idx(&index, m)) {
            index.set_points(i, row.try_get(1)?);
        }
    }
    drop(rows);
    progress("points", index.len());

    let mut sql = Sql::new(&order_totals());
    sql.bind(tenant).push(" GROUP BY member_id");
    let mut rows = sql.query().fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let member: String = row.try_get(0)?;
        if let Some(i) = idx(&index, &member) {
            let (count, spent, last) = orders_of(&row, zone)?;
            index.set_orders(i, count, spent, last);
        }
    }
    drop(rows);
    progress("orders", index.len());

    let mut rows = sqlx::query(
        "SELECT member_id, segment, p_alive, clv FROM member_score WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let member: String = row.try_get(0)?;
        if let Some(i) = idx(&index, &member) {
            let segment: String = row.try_get(1)?;
            index.set_scores(i, Some(&segment), row.try_get(2)?, row.try_get(3)?);
        }
    }
    drop(rows);

    index.finish();
    let members = index.len();
    Ok((index, Built { members, seq }))
}

/// Per member with a paid order: count, total net of refunds, last payment; the tenant is
/// bound next, then any filter and `GROUP BY member_id`.
fn order_totals() -> String {
    format!(
        "SELECT member_id, COUNT(*) AS orders, \
         CAST(COALESCE(SUM(total - refunded_amount), 0) AS BIGINT) AS spent, \
         MAX(COALESCE(paid_at, ordered_at)) AS last_paid \
         FROM customer_order WHERE status IN {PAID} AND tenant_id = "
    )
}

fn orders_of(row: &AnyRow, zone: &TimeZone) -> Result<(i64, i64, Option<i32>), sqlx::Error> {
    let last: Option<i64> = row.try_get("last_paid")?;
    Ok((
        row.try_get("orders")?,
        row.try_get("spent")?,
        last.map(|micros| day_of(micros, zone)),
    ))
}

/// Read `ids` (member ids) again and set their facts; a member no longer in the database is
/// set inactive. Returns how many were read.
pub async fn reload(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    index: &mut Index,
    ids: &[String],
) -> Result<usize, sqlx::Error> {
    let mut read = 0;
    for chunk in ids.chunks(CHUNK) {
        for (id, found) in facts_of(db, tenant_id, zone, chunk).await? {
            let Some(number) = id_number(&id) else {
                continue;
            };
            let idx: Idx = match (index.idx_of(number), &found) {
                (Some(idx), _) => idx,
                (None, Some(_)) => index.add(number),
                (None, None) => continue,
            };
            index.set(idx, &found.unwrap_or_default());
            read += 1;
        }
    }
    Ok(read)
}

/// The facts of one member as the segments rule language sees them (`None`: no such member in
/// the tenant), for a rule evaluated on one member with [`super::index::matches`].
pub async fn member_facts(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    id: &str,
) -> Result<Option<Facts>, sqlx::Error> {
    Ok(facts_of(db, tenant_id, zone, &[id.to_owned()])
        .await?
        .pop()
        .and_then(|(_, facts)| facts))
}

/// The facts of up to [`CHUNK`] members, each `None` when the member is not in the database.
async fn facts_of(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    chunk: &[String],
) -> Result<Vec<(String, Option<Facts>)>, sqlx::Error> {
    let pool = db.read();
    let tenant = tenant_id.as_str();
    let mut facts: std::collections::HashMap<String, Facts> = chunk
        .iter()
        .map(|id| (id.clone(), Facts::default()))
        .collect();
    let list = |sql: &mut Sql, column: &str| {
        sql.push(&format!(" AND {column} IN ("));
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.as_str());
        }
        sql.push(")");
    };

    let mut sql = Sql::new(PROFILE);
    sql.bind(tenant);
    list(&mut sql, "id");
    let mut found = std::collections::HashSet::new();
    for row in sql.query().fetch_all(pool).await? {
        let id: String = row.try_get("id")?;
        let Some((_, profile)) = profile(&row, zone)? else {
            continue;
        };
        found.insert(id.clone());
        facts.insert(id, profile);
    }

    let mut sql = Sql::new("SELECT member_id, tag FROM member_tag WHERE tenant_id = ");
    sql.bind(tenant);
    list(&mut sql, "member_id");
    for row in sql.query().fetch_all(pool).await? {
        if let Some(f) = facts.get_mut(&row.try_get::<String, _>(0)?) {
            f.tags.push(row.try_get(1)?);
        }
    }

    let mut sql = Sql::new(
        "SELECT member_id, group_id FROM group_membership WHERE left_at IS NULL AND tenant_id = ",
    );
    sql.bind(tenant);
    list(&mut sql, "member_id");
    for row in sql.query().fetch_all(pool).await? {
        if let Some(f) = facts.get_mut(&row.try_get::<String, _>(0)?) {
            f.groups.push(row.try_get(1)?);
        }
    }

    let mut sql = Sql::new(&format!(
        "SELECT invitee_id, campaign_id FROM referral WHERE status NOT IN {NOT_ATTRIBUTED} \
         AND tenant_id = "
    ));
    sql.bind(tenant);
    list(&mut sql, "invitee_id");
    for row in sql.query().fetch_all(pool).await? {
        if let Some(f) = facts.get_mut(&row.try_get::<String, _>(0)?) {
            f.referral_campaigns.push(row.try_get(1)?);
        }
    }

    let mut sql = Sql::new(
        "SELECT address, credits_posted - debits_posted AS balance FROM ledger_account \
         WHERE asset = 'points' AND tenant_id = ",
    );
    sql.bind(tenant).push(" AND address IN (");
    for (i, id) in chunk.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(format!("member:{id}"));
    }
    sql.push(")");
    for row in sql.query().fetch_all(pool).await? {
        let address: String = row.try_get(0)?;
        if let Some(f) = address
            .strip_prefix("member:")
            .and_then(|m| facts.get_mut(m))
        {
            f.points_balance = row.try_get(1)?;
        }
    }

    let mut sql = Sql::new(&order_totals());
    sql.bind(tenant);
    list(&mut sql, "member_id");
    sql.push(" GROUP BY member_id");
    for row in sql.query().fetch_all(pool).await? {
        let member: String = row.try_get(0)?;
        if let Some(f) = facts.get_mut(&member) {
            (f.orders_count, f.total_spent, f.last_order_day) = orders_of(&row, zone)?;
        }
    }

    let mut sql =
        Sql::new("SELECT member_id, segment, p_alive, clv FROM member_score WHERE tenant_id = ");
    sql.bind(tenant);
    list(&mut sql, "member_id");
    for row in sql.query().fetch_all(pool).await? {
        if let Some(f) = facts.get_mut(&row.try_get::<String, _>(0)?) {
            f.rfm_segment = Some(row.try_get(1)?);
            f.p_alive = row.try_get(2)?;
            f.clv = row.try_get(3)?;
        }
    }

    Ok(facts
        .into_iter()
        .map(|(id, f)| {
            let f = found.contains(&id).then_some(f);
            (id, f)
        })
        .collect())
}

/// The members whose points accounts the transfers `ids` moved (a ledger event names
/// transfers, not accounts).
pub async fn points_members(
    db: &Db,
    tenant_id: &TenantId,
    ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let mut members = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut sql = Sql::new(
            "SELECT debit_address, credit_address FROM ledger_transfer \
             WHERE asset = 'points' AND tenant_id = ",
        );
        sql.bind(tenant_id.as_str()).push(" AND id IN (");
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.as_str());
        }
        sql.push(")");
        for row in sql.query().fetch_all(db.read()).await? {
            for column in 0..2 {
                let address: String = row.try_get(column)?;
                if let Some(member) = address.strip_prefix("member:") {
                    members.push(member.to_owned());
                }
            }
        }
    }
    Ok(members)
}

/// Read every member's scores again (after a scoring run).
pub async fn reload_scores(
    db: &Db,
    tenant_id: &TenantId,
    index: &mut Index,
) -> Result<(), sqlx::Error> {
    let mut rows = sqlx::query(
        "SELECT member_id, segment, p_alive, clv FROM member_score WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_str())
    .fetch(db.read());
    while let Some(row) = rows.try_next().await? {
        let member: String = row.try_get(0)?;
        if let Some(i) = id_number(&member).and_then(|n| index.idx_of(n)) {
            let segment: String = row.try_get(1)?;
            index.set_scores(i, Some(&segment), row.try_get(2)?, row.try_get(3)?);
        }
    }
    Ok(())
}
