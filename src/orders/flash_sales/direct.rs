//! Flash-sale batches on the direct SQLite writer of a SQLite file
//! ([`crate::common::db::Db::write_direct`]): the same decision as
//! [`Purchases::decide_group`](super::Purchases) (the sale's window, then each claim's member,
//! limit and stock in arrival order, through [`Selling`]) and the same rows (the orders, their
//! `order.created` events, the sale's `reserved`), but as cached prepared statements run in one
//! blocking call.
//!
//! Through sqlx's `Any` driver a batch was a dozen round trips between the batcher's task and
//! the driver's worker thread, and the rows' values were converted twice on the way: in
//! `shequn bench flash-sale` (orders mode, 256 clients) the SQLite writer thread was busy for
//! less than half of the run while both cores had idle time, so the batch's latency, not the
//! work, bounded the rate (perf, `docs/benchmarks.md`). The ledger's batches take the same way
//! ([`crate::ledger`]'s `store::direct`).
//!
//! On PostgreSQL, and when the direct transaction fails, the batch goes through sqlx
//! ([`crate::common::batcher::decide_batch`], which retries and splits a failing batch). The
//! benchmark's naive side on SQLite decides each purchase alone with [`decide_group`] (a group
//! of one, no gate).

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use rusqlite::{params, OptionalExtension as _, Transaction};

use super::{Claim, Listed, PlacedOrder, SaleRow, Selling, COLUMNS};
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{FlashSaleId, TenantId};
use crate::common::outbox;
use crate::common::time::to_micros;
use crate::members::model::STATUS_ERASED;
use crate::orders::claims::{self, Buyers, Outcomes};
use crate::orders::flash_sale_gate::SaleGate;
use crate::orders::model::HOLDING_STATUSES;
use crate::orders::store;

/// Decide a batch inside `tx`, one sale after the other in the order of (tenant, sale) as
/// [`claims::decide`] does; one outcome per claim, in their order. `gate` is told what each
/// sale's read found.
pub(super) fn decide_batch(
    tx: &Transaction<'_>,
    gate: Option<&SaleGate>,
    claims: &[Claim],
    now: Timestamp,
) -> anyhow::Result<Vec<ApiResult<PlacedOrder>>> {
    let mut outcomes = Outcomes::new(claims.len());
    let groups = claims::groups(claims, |claim| (&claim.tenant_id, &claim.sale_id));
    for ((tenant_id, sale_id), indexes) in groups {
        let group: Vec<&Claim> = indexes.iter().map(|&i| &claims[i]).collect();
        let decided = decide_group(tx, gate, tenant_id, sale_id, &group, now)?;
        outcomes.set(indexes, decided);
    }
    Ok(outcomes.in_order())
}

/// One sale's claims inside `tx`: refused all while the sale is not running, else each
/// against the units left and its member's limit; the orders granted are written, their
/// events appended and their units reserved. An error rolls the whole transaction back.
pub(super) fn decide_group(
    tx: &Transaction<'_>,
    gate: Option<&SaleGate>,
    tenant_id: &TenantId,
    sale_id: &FlashSaleId,
    claims: &[&Claim],
    now: Timestamp,
) -> anyhow::Result<Vec<ApiResult<PlacedOrder>>> {
    let at = to_micros(now);
    let tenant = tenant_id.as_str();
    // Taken before the read, so that units returned by this node after it are noticed.
    let generation = gate.map(SaleGate::generation);
    let Some(sale) = read_sale(tx, tenant, sale_id)? else {
        return Ok(claims::refuse_all(claims, || {
            ApiError::not_found("flash sale")
        }));
    };
    if let (Some(gate), Some(generation)) = (gate, generation) {
        sale.tell(gate, tenant_id, generation, at);
    }
    if let Some(refusals) = sale.refused_while_closed(claims, at) {
        return Ok(refusals);
    }
    let buyers = read_buyers(tx, tenant, sale_id, claims)?;
    let Some((id, sku, name, price)) = read_product(tx, tenant, &sale.product_id)? else {
        anyhow::bail!("the product of flash sale {sale_id} is missing");
    };
    let mut selling = Selling {
        available: sale.available(),
        expires_at: to_micros(now + SignedDuration::from_secs(sale.payment_timeout_secs)),
        sale: &sale,
        product: Listed {
            id: &id,
            sku: &sku,
            name: &name,
            price,
        },
        buyers,
        now: at,
    };
    let (outcomes, rows) = selling.decide_all(claims);
    if rows.is_empty() {
        return Ok(outcomes);
    }
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        store::insert_direct(tx, tenant_id, row, at)?;
        events.push(store::created_event(tenant_id, row));
    }
    outbox::append_direct(tx, events, now)?;
    let units: i64 = rows.iter().map(|row| row.qty).sum();
    let updated = tx
        .prepare_cached(
            "UPDATE flash_sale SET reserved = reserved + ?1, updated_at = ?2 \
             WHERE tenant_id = ?3 AND id = ?4 AND stock - sold - reserved >= ?1",
        )?
        .execute(params![units, at, tenant, sale_id.as_str()])?;
    // Cannot happen under the write lock; refuse the batch rather than oversell.
    anyhow::ensure!(
        updated == 1,
        "flash-sale stock changed under the write lock"
    );
    Ok(outcomes)
}

fn read_sale(
    tx: &Transaction<'_>,
    tenant: &str,
    sale_id: &FlashSaleId,
) -> rusqlite::Result<Option<SaleRow>> {
    tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM flash_sale WHERE tenant_id = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, sale_id.as_str()], |row| {
        Ok(SaleRow {
            id: FlashSaleId::from_db(row.get(0)?),
            product_id: row.get(1)?,
            price: row.get(2)?,
            stock: row.get(3)?,
            reserved: row.get(4)?,
            sold: row.get(5)?,
            per_member_limit: row.get(6)?,
            starts_at: row.get(7)?,
            ends_at: row.get(8)?,
            payment_timeout_secs: row.get(9)?,
            created_at: row.get(10)?,
        })
    })
    .optional()
}

/// The claimants of one sale: which are active members, and the units each holds in it. One
/// indexed lookup of each kind per member (cached statements cost SQLite a bind and a step;
/// an `IN` list would be a new statement for every batch size).
fn read_buyers(
    tx: &Transaction<'_>,
    tenant: &str,
    sale_id: &FlashSaleId,
    claims: &[&Claim],
) -> rusqlite::Result<Buyers> {
    let mut is_active = tx
        .prepare_cached("SELECT 1 FROM member WHERE tenant_id = ?1 AND id = ?2 AND status <> ?3")?;
    let mut holds = tx.prepare_cached(&format!(
        "SELECT COALESCE(SUM(qty), 0) FROM customer_order WHERE tenant_id = ?1 \
         AND campaign_id = ?2 AND member_id = ?3 AND status IN {HOLDING_STATUSES}"
    ))?;
    let mut active = HashSet::new();
    let mut held = HashMap::new();
    for claim in claims {
        let member = &claim.member_id;
        if held.contains_key(member) {
            continue;
        }
        if is_active.exists(params![tenant, member.as_str(), STATUS_ERASED])? {
            active.insert(member.clone());
        }
        let units: i64 = holds
            .query_row(params![tenant, sale_id.as_str(), member.as_str()], |row| {
                row.get(0)
            })?;
        held.insert(member.clone(), units);
    }
    Ok(Buyers::known(active, held))
}

/// The sale's product: id, SKU, name and list price.
fn read_product(
    tx: &Transaction<'_>,
    tenant: &str,
    product_id: &str,
) -> rusqlite::Result<Option<(String, String, String, i64)>> {
    tx.prepare_cached("SELECT id, sku, name, price FROM product WHERE tenant_id = ?1 AND id = ?2")?
        .query_row(params![tenant, product_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()
}
