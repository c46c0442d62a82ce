//! Writing a prepared batch on SQLite's direct connection
//! ([`crate::common::db::Db::write_direct`]).
//!
//! The same rows as [`super::write`] with the same compare-and-swap, but as one cached
//! prepared statement per table run once per row, all inside one blocking call. Through the
//! `Any` driver a batch of ~420 transfers took 7–8 ms to commit and the writer thread was busy
//! for less than half of it: the rest was converting ~13,000 bound values on the async side and
//! a round trip to the driver's thread per statement (`shequn bench ledger`, perf). Row by row
//! a prepared statement costs SQLite a bind and a step, and nothing else runs in between.

use anyhow::bail;
use rusqlite::{params, Transaction};

use foldhash::{HashMap, HashMapExt as _};

use super::{
    timeout_at, write_set, Decided, TransferRow, CONCURRENT_UPDATE, RESOLUTION_INSERT,
    TRANSFER_COLUMNS, TRANSFER_INSERT,
};
use crate::common::ids::TenantId;
use crate::common::outbox;
use crate::common::scheduler;
use crate::common::time::to_micros;
use crate::ledger::model::Transfer;

/// Check the accounts `decided` only read, then write its transfers, resolutions, accounts
/// (compare-and-swap), timeout jobs and event inside `tx`; fails with [`CONCURRENT_UPDATE`]
/// when an account is not as the decisions found it.
pub(super) fn write_prepared(
    tx: &Transaction<'_>,
    tenant_id: &TenantId,
    decided: &Decided,
) -> anyhow::Result<()> {
    let tenant = tenant_id.as_str();
    let mut check = tx.prepare_cached(
        "SELECT 1 FROM ledger_account WHERE tenant_id = ? AND address = ? AND asset = ? \
         AND debits_posted = ? AND credits_posted = ? AND debits_pending = ? \
         AND credits_pending = ? AND last_transfer_id IS ?",
    )?;
    for account in decided.read_only() {
        let (address, asset) = account.key;
        let t = account.totals;
        if !check.exists(params![
            tenant,
            address.as_str(),
            asset.as_str(),
            t.debits_posted,
            t.credits_posted,
            t.debits_pending,
            t.credits_pending,
            account.head,
        ])? {
            bail!(CONCURRENT_UPDATE);
        }
    }
    let now = to_micros(decided.now);
    let Some(set) = write_set(tenant_id, &decided.book, Some(&decided.original), now) else {
        return Ok(());
    };
    let mut insert = tx.prepare_cached(&format!(
        "INSERT OR FAIL INTO {TRANSFER_INSERT} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))?;
    for (t, links) in &set.transfers {
        insert.execute(params![
            tenant,
            t.id,
            t.from.as_str(),
            t.to.as_str(),
            t.asset.as_str(),
            t.amount,
            t.code,
            t.reference,
            t.metadata.to_string(),
            i64::from(t.pending),
            timeout_at(t, now),
            i64::from(t.linked),
            now,
            links.debit_prev,
            links.credit_prev,
        ])?;
    }
    if !set.resolutions.is_empty() {
        let mut resolve = tx.prepare_cached(&format!(
            "INSERT OR FAIL INTO {RESOLUTION_INSERT} VALUES (?, ?, ?, ?, ?)"
        ))?;
        for (id, kind, amount) in set.resolutions {
            resolve.execute(params![tenant, id, kind.as_str(), amount, now])?;
        }
    }
    let mut update = tx.prepare_cached(
        "UPDATE ledger_account SET debits_posted = ?, credits_posted = ?, debits_pending = ?, \
         credits_pending = ?, last_transfer_id = ? WHERE tenant_id = ? AND address = ? \
         AND asset = ? AND debits_posted = ? AND credits_posted = ? AND debits_pending = ? \
         AND credits_pending = ? AND last_transfer_id IS ?",
    )?;
    for account in &set.accounts {
        let (address, asset) = account.key;
        let (t, o) = (account.totals, account.old.totals);
        let updated = update.execute(params![
            t.debits_posted,
            t.credits_posted,
            t.debits_pending,
            t.credits_pending,
            account.head,
            tenant,
            address.as_str(),
            asset.as_str(),
            o.debits_posted,
            o.credits_posted,
            o.debits_pending,
            o.credits_pending,
            account.old.head,
        ])?;
        if updated != 1 {
            bail!(CONCURRENT_UPDATE);
        }
    }
    scheduler::schedule_direct(tx, tenant_id, &set.timeouts, now)?;
    outbox::append_direct(tx, vec![set.event], decided.now)?;
    Ok(())
}

/// Transfers by id, with their resolution state (as [`super::load_transfers`]), one cached
/// point lookup per id, all in one read transaction: a statement outside a transaction
/// begins a read transaction of its own, whose WAL read lock is a system call or two, and
/// that was most of each lookup's cost.
pub(super) fn load_transfers(
    conn: &rusqlite::Connection,
    tenant_id: &TenantId,
    ids: &[&str],
) -> anyhow::Result<HashMap<String, Transfer>> {
    let snapshot = conn.unchecked_transaction()?;
    let mut select = snapshot.prepare_cached(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM ledger_transfer t LEFT JOIN ledger_resolution r \
         ON r.tenant_id = t.tenant_id AND r.pending_id = t.id WHERE t.tenant_id = ? AND t.id = ?"
    ))?;
    let mut out = HashMap::new();
    for id in ids {
        let mut rows = select.query(params![tenant_id.as_str(), id])?;
        if let Some(row) = rows.next()? {
            let transfer = TransferRow {
                id: row.get(0)?,
                debit_address: row.get(1)?,
                credit_address: row.get(2)?,
                asset: row.get(3)?,
                amount: row.get(4)?,
                code: row.get(5)?,
                reference: row.get(6)?,
                metadata: row.get(7)?,
                pending: row.get(8)?,
                timeout_at: row.get(9)?,
                linked: row.get(10)?,
                created_at: row.get(11)?,
                resolution_kind: row.get(12)?,
                resolution_amount: row.get(13)?,
                resolved_at: row.get(14)?,
            }
            .into_transfer();
            out.insert(transfer.id.clone(), transfer);
        }
    }
    drop(select);
    snapshot.commit()?;
    Ok(out)
}
