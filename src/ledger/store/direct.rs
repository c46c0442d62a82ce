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
    // The row statements bind what every row shares (tenant, instant) once and the rest
    // value by value (`raw_bind_parameter`, statically typed): through `execute(params![…])`
    // every value went through a `dyn ToSql` and the tenant was copied into SQLite for every
    // row (about 2,000 instructions of a transfer's write, callgrind).
    let mut insert = tx.prepare_cached(&format!(
        "INSERT OR FAIL INTO {TRANSFER_INSERT} VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?;
    insert.raw_bind_parameter(1, tenant)?;
    insert.raw_bind_parameter(13, now)?;
    for (t, links) in &set.transfers {
        insert.raw_bind_parameter(2, &t.id)?;
        insert.raw_bind_parameter(3, t.from.as_str())?;
        insert.raw_bind_parameter(4, t.to.as_str())?;
        insert.raw_bind_parameter(5, t.asset.as_str())?;
        insert.raw_bind_parameter(6, t.amount)?;
        insert.raw_bind_parameter(7, &t.code)?;
        insert.raw_bind_parameter(8, &t.reference)?;
        insert.raw_bind_parameter(9, t.metadata.to_string())?;
        insert.raw_bind_parameter(10, i64::from(t.pending))?;
        insert.raw_bind_parameter(11, timeout_at(t, now))?;
        insert.raw_bind_parameter(12, i64::from(t.linked))?;
        insert.raw_bind_parameter(14, &links.debit_prev)?;
        insert.raw_bind_parameter(15, &links.credit_prev)?;
        insert.raw_execute()?;
    }
    if !set.resolutions.is_empty() {
        let mut resolve = tx.prepare_cached(&format!(
            "INSERT OR FAIL INTO {RESOLUTION_INSERT} VALUES (?, ?, ?, ?, ?)"
        ))?;
        for (id, kind, amount) in set.resolutions {
            resolve.execute(params![tenant, id, kind.as_str(), amount, now])?;
        }
    }
    // `asset >= ?8 AND asset <= ?8` is `asset = ?8` written as a range on purpose. With an
    // equality on the whole primary key SQLite plans a one-row update, which on a WITHOUT
    // ROWID table writes the new row by searching the B-tree for its key a second time; with a
    // range it plans a multi-row pass, which writes the row where the cursor already stands
    // (`OPFLAG_SAVEPOSITION`). Each search compares long keys (tenant and address) about twenty
    // times: the second one was about 2,800 of the 33,000 instructions a transfer's write took
    // (callgrind, `shequn bench ledger`). The primary key still makes it at most one row.
    let mut update = tx.prepare_cached(
        "UPDATE ledger_account SET debits_posted = ?1, credits_posted = ?2, \
         debits_pending = ?3, credits_pending = ?4, last_transfer_id = ?5 \
         WHERE tenant_id = ?6 AND address = ?7 AND asset >= ?8 AND asset <= ?8 \
         AND debits_posted = ?9 AND credits_posted = ?10 AND debits_pending = ?11 \
         AND credits_pending = ?12 AND last_transfer_id IS ?13",
    )?;
    update.raw_bind_parameter(6, tenant)?;
    for account in &set.accounts {
        let (address, asset) = account.key;
        let (t, o) = (account.totals, account.old.totals);
        update.raw_bind_parameter(1, t.debits_posted)?;
        update.raw_bind_parameter(2, t.credits_posted)?;
        update.raw_bind_parameter(3, t.debits_pending)?;
        update.raw_bind_parameter(4, t.credits_pending)?;
        update.raw_bind_parameter(5, account.head)?;
        update.raw_bind_parameter(7, address.as_str())?;
        update.raw_bind_parameter(8, asset.as_str())?;
        update.raw_bind_parameter(9, o.debits_posted)?;
        update.raw_bind_parameter(10, o.credits_posted)?;
        update.raw_bind_parameter(11, o.debits_pending)?;
        update.raw_bind_parameter(12, o.credits_pending)?;
        update.raw_bind_parameter(13, account.old.head)?;
        if update.raw_execute()? != 1 {
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
    // Most ids of a batch are new: first a lookup in the primary key alone (tenant bound once),
    // then the whole row with its resolution for the ids found (callgrind, `shequn bench
    // ledger`: about 500 instructions less per new id than the joined select for every id).
    let mut exists = snapshot
        .prepare_cached("SELECT 1 FROM ledger_transfer WHERE tenant_id = ?1 AND id = ?2")?;
    exists.raw_bind_parameter(1, tenant_id.as_str())?;
    let mut found = Vec::new();
    for id in ids {
        exists.raw_bind_parameter(2, *id)?;
        if exists.raw_query().next()?.is_some() {
            found.push(*id);
        }
    }
    drop(exists);
    let mut select = snapshot.prepare_cached(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM ledger_transfer t LEFT JOIN ledger_resolution r \
         ON r.tenant_id = t.tenant_id AND r.pending_id = t.id WHERE t.tenant_id = ? AND t.id = ?"
    ))?;
    let mut out = HashMap::new();
    for id in found {
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
