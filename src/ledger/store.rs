//! Ledger SQL, and [`apply`]: run operations inside a transaction.
//!
//! `apply` loads the pending transfers that operations refer to, locks the touched accounts in
//! a fixed order (address, then asset; on PostgreSQL with `FOR UPDATE`, on SQLite the single
//! writer is the lock), creates missing accounts, reads which transfer ids and resolutions
//! already exist *after* taking the locks (so two processes cannot both decide a transfer is
//! new or a pending one unresolved), applies the rules in memory ([`super::engine`]) and
//! writes the new transfers, resolutions and account totals with multi-row statements.
//! [`prepare`] and [`write_prepared`] do the same in two steps, without locks and with a
//! compare-and-swap, for the executor's pipeline; on a SQLite file [`direct`] does their I/O
//! through rusqlite instead (the same rows and checks, see its module doc).
//!
//! History: each account row names its newest transfer (`last_transfer_id`) and each transfer
//! the transfer before it on each of its accounts (`debit_prev`, `credit_prev`), so a
//! member's history is a walk of point lookups ([`history`]). Two address indexes on the
//! transfers did the same job, but each transfer dirtied a random index page per member per
//! commit, which bounded the ledger's SQLite throughput; the account row is rewritten by every
//! transfer anyway, so the links cost no extra page.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow as _, Row as _};

use super::engine::{apply_ops, AccountKey, Book, Links, Op, Totals};
use super::model::{Address, Asset, Balance, NewTransfer, Transfer, TransferResult};
use crate::common::db::{Backend, Db, Tx};
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::common::scheduler;
use crate::common::sql::{backend_of, bind_owned, Arg, Sql};
use crate::common::time::{micros_to_rfc3339, to_micros};

mod direct;

/// How `apply` keeps a batch exact against concurrent writers on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Read accounts without locks and update them with a compare-and-swap on all four
    /// totals and the history head; a lost race fails the batch with [`CONCURRENT_UPDATE`] so that the caller
    /// retries (pessimistically). Saves writing a row lock into every account on the common,
    /// uncontended path.
    Optimistic,
    /// `SELECT … FOR UPDATE` in a fixed order before anything is decided.
    Pessimistic,
}

/// Error text of a lost optimistic race (transient: retry the batch).
pub const CONCURRENT_UPDATE: &str = "concurrent account update; batch must be retried";

/// Scheduler job kind that expires a pending transfer.
pub const PENDING_TIMEOUT_JOB: &str = "ledger.pending_timeout";

/// Most rows per multi-row statement. An executor batch (up to 1,999 operations: it stops
/// taking submissions past 1,000) then writes each table with one statement: transfers bind
/// 15 values a row (30,000 for 2,000 rows) and account updates 11 (22,000), under SQLite's
/// limit of 32,766 bound values per statement (PostgreSQL allows 65,535). Fewer statements
/// mean fewer round trips through the driver and, on SQLite, fewer passes over the same pages.
const WRITE_CHUNK_ROWS: usize = 2000;

/// The table and columns a new transfer is inserted into, in the order both writers bind them.
const TRANSFER_INSERT: &str = "ledger_transfer (tenant_id, id, debit_address, credit_address, \
    asset, amount, code, reference, metadata, pending, timeout_at, linked, created_at, \
    debit_prev, credit_prev)";
/// The table and columns a resolution is inserted into.
const RESOLUTION_INSERT: &str =
    "ledger_resolution (tenant_id, pending_id, kind, amount, resolved_at)";

/// When a new pending transfer times out (micros), if it has a timeout.
fn timeout_at(transfer: &NewTransfer, now: i64) -> Option<i64> {
    transfer.timeout_secs.map(|secs| now + secs * 1_000_000)
}

const TRANSFER_COLUMNS: &str = "t.id, t.debit_address, t.credit_address, t.asset, t.amount, \
    t.code, t.reference, t.metadata, t.pending, t.timeout_at, t.linked, t.created_at, \
    r.kind AS resolution_kind, r.amount AS resolution_amount, r.resolved_at";

/// A transfer row with its resolution's columns, as either driver reads it (sqlx by column
/// name through the derived `FromRow`, rusqlite by position in `direct`).
#[derive(sqlx::FromRow)]
struct TransferRow {
    id: String,
    debit_address: String,
    credit_address: String,
    asset: String,
    amount: i64,
    code: String,
    reference: Option<String>,
    metadata: String,
    pending: i64,
    timeout_at: Option<i64>,
    linked: i64,
    created_at: i64,
    resolution_kind: Option<String>,
    resolution_amount: Option<i64>,
    resolved_at: Option<i64>,
}

impl TransferRow {
    /// The transfer as the API shows it.
    fn into_transfer(self) -> Transfer {
        let pending = self.pending != 0;
        let (status, posted_amount) = match (pending, self.resolution_kind) {
            (false, _) => ("posted".to_owned(), Some(self.amount)),
            (true, None) => ("pending".to_owned(), None),
            (true, Some(kind)) => (kind, self.resolution_amount),
        };
        Transfer {
            id: self.id,
            from: self.debit_address,
            to: self.credit_address,
            asset: Asset::parse(&self.asset).unwrap_or(Asset::Points),
            amount: self.amount,
            code: self.code,
            reference: self.reference,
            metadata: serde_json::from_str(&self.metadata).unwrap_or(Value::Null),
            pending,
            linked: self.linked != 0,
            status,
            posted_amount,
            timeout_at: self.timeout_at.map(micros_to_rfc3339),
            created_at: micros_to_rfc3339(self.created_at),
            resolved_at: self.resolved_at.map(micros_to_rfc3339),
        }
    }
}

/// A transfer row (with its resolution, if any) as the API shows it.
pub fn transfer_from_row(row: &AnyRow) -> Result<Transfer, sqlx::Error> {
    Ok(TransferRow::from_row(row)?.into_transfer())
}

/// An account's four totals, from a row that selects them under their column names.
pub(super) fn totals_from_row(row: &AnyRow) -> Result<Totals, sqlx::Error> {
    Ok(Totals {
        debits_posted: row.try_get("debits_posted")?,
        credits_posted: row.try_get("credits_posted")?,
        debits_pending: row.try_get("debits_pending")?,
        credits_pending: row.try_get("credits_pending")?,
    })
}

fn push_list<'a>(sql: &mut Sql, values: impl IntoIterator<Item = &'a str>) {
    sql.push("(");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(v);
    }
    sql.push(")");
}

/// Transfers by id, with their resolution state.
///
/// On PostgreSQL each id is looked up by primary key from a padded `VALUES` list of the ids
/// (a `LATERAL` subquery with `LIMIT 1`, which the planner cannot flatten into a join). As
/// `t.id IN (…)` the planner, short of statistics on a young ledger, searched the primary key
/// by tenant only and filtered every transfer of the tenant (67,000 rows, 24 ms, for one
/// batch's thousand ids in `shequn bench ledger`), a cost that grows with the ledger. SQLite
/// searches the key by both columns either way; this path is only its in-memory database's
/// (a file reads on the direct connection, [`direct::load_transfers`]).
pub async fn load_transfers(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    ids: &[&str],
) -> Result<HashMap<String, Transfer>, sqlx::Error> {
    let mut out = HashMap::new();
    let postgres = backend_of(conn) == Backend::Postgres;
    for chunk in ids.chunks(WRITE_CHUNK_ROWS) {
        let sql = if postgres {
            let mut sql = Sql::for_conn(&*conn, "SELECT ");
            sql.push(TRANSFER_COLUMNS).push(" FROM (VALUES ");
            sql.padded_values(chunk, |id| vec![Arg::from(*id)]);
            sql.push(
                ") AS v CROSS JOIN LATERAL (SELECT * FROM ledger_transfer t0 \
                 WHERE t0.tenant_id = ",
            )
            .bind(tenant_id.as_str());
            // The same parameter again, by its number.
            let tenant = format!("${}", sql.arg_count());
            sql.push(&format!(
                " AND t0.id = v.column1 LIMIT 1) AS t LEFT JOIN LATERAL (SELECT * \
                 FROM ledger_resolution r0 WHERE r0.tenant_id = {tenant} \
                 AND r0.pending_id = t.id LIMIT 1) AS r ON TRUE"
            ));
            sql
        } else {
            let mut sql = Sql::for_conn(
                &*conn,
                &format!(
                    "SELECT {TRANSFER_COLUMNS} FROM ledger_transfer t LEFT JOIN ledger_resolution r \
                 ON r.tenant_id = t.tenant_id AND r.pending_id = t.id WHERE t.tenant_id = "
                ),
            );
            sql.bind(tenant_id.as_str()).push(" AND t.id IN ");
            push_list(&mut sql, chunk.iter().copied());
            sql
        };
        for row in sql.query().fetch_all(&mut *conn).await? {
            let t = transfer_from_row(&row)?;
            out.insert(t.id.clone(), t);
        }
    }
    Ok(out)
}

/// [`load_transfers`], on SQLite's direct reader connection when the database has one
/// ([`Db::read_direct`], see [`direct::load_transfers`]), else on `conn`.
async fn load_transfers_on(
    db: &Db,
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    ids: &[&str],
) -> ApiResult<HashMap<String, Transfer>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    match db.read_direct(|direct| direct::load_transfers(direct, tenant_id, ids)) {
        Some(loaded) => loaded.map_err(ApiError::internal),
        None => Ok(load_transfers(conn, tenant_id, ids).await?),
    }
}

/// Accounts as read: their totals, and the heads of their histories (absent when empty).
#[derive(Debug, Default, Clone)]
struct Accounts {
    totals: HashMap<AccountKey, Totals>,
    heads: HashMap<AccountKey, String>,
}

impl Accounts {
    fn extend(&mut self, other: Accounts) {
        self.totals.extend(other.totals);
        self.heads.extend(other.heads);
    }
}

/// Create missing accounts (sorted, so concurrent creators take row locks in one order) and
/// read them back locked.
async fn create_accounts(
    conn: &mut AnyConnection,
    lock: bool,
    tenant_id: &TenantId,
    keys: &BTreeSet<AccountKey>,
    created_at: i64,
) -> Result<Accounts, sqlx::Error> {
    let keys_vec: Vec<&AccountKey> = keys.iter().collect();
    for chunk in keys_vec.chunks(500) {
        let mut sql = Sql::for_conn(
            &*conn,
            "INSERT INTO ledger_account (tenant_id, address, asset, created_at) VALUES ",
        );
        sql.values(chunk.iter(), |(address, asset)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(address.as_str()),
                Arg::from(asset.as_str()),
                Arg::from(created_at),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(&mut *conn).await?;
    }
    select_accounts(conn, lock, tenant_id, keys).await
}

async fn select_accounts(
    conn: &mut AnyConnection,
    lock: bool,
    tenant_id: &TenantId,
    keys: &BTreeSet<AccountKey>,
) -> Result<Accounts, sqlx::Error> {
    let mut out = Accounts::default();
    let addresses: BTreeSet<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
    let assets: BTreeSet<&str> = keys.iter().map(|(_, a)| a.as_str()).collect();
    let addresses: Vec<&str> = addresses.into_iter().collect();
    let sqlite = backend_of(conn) == Backend::Sqlite;
    for chunk in addresses.chunks(WRITE_CHUNK_ROWS) {
        // On SQLite the accounts come back as one JSON array in one row: the driver hands
        // each row from its worker thread to this task separately and copies every value
        // twice (into a SQLite value, then an `Any` value), which cost more than the lookups
        // themselves for a batch's thousand accounts. PostgreSQL cannot lock rows under an
        // aggregate (`FOR UPDATE`) and streams rows cheaply, so it reads them plainly.
        let columns = "address, asset, debits_posted, credits_posted, debits_pending, \
                       credits_pending, last_transfer_id";
        let select = if sqlite {
            format!("SELECT json_group_array(json_array({columns})) AS accounts")
        } else {
            format!("SELECT {columns}")
        };
        let mut sql = Sql::for_conn(
            &*conn,
            &format!("{select} FROM ledger_account WHERE tenant_id = "),
        );
        sql.bind(tenant_id.as_str()).push(" AND address IN ");
        push_list(&mut sql, chunk.iter().copied());
        sql.push(" AND asset IN ");
        push_list(&mut sql, assets.iter().copied());
        if lock {
            sql.push(" ORDER BY address, asset FOR UPDATE");
        }
        let mut insert = |address: String, asset: &str, totals: Totals, head: Option<String>| {
            let Some(asset) = Asset::parse(asset) else {
                return;
            };
            let key = (Address::from_db(address), asset);
            if keys.contains(&key) {
                if let Some(head) = head {
                    out.heads.insert(key.clone(), head);
                }
                out.totals.insert(key, totals);
            }
        };
        if sqlite {
            let json: String = sql.query().fetch_one(&mut *conn).await?.try_get(0)?;
            type Row = (String, String, i64, i64, i64, i64, Option<String>);
            let rows: Vec<Row> =
                serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            for (
                address,
                asset,
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
                head,
            ) in rows
            {
                let totals = Totals {
                    debits_posted,
                    credits_posted,
                    debits_pending,
                    credits_pending,
                };
                insert(address, &asset, totals, head);
            }
            continue;
        }
        for row in sql.query().fetch_all(&mut *conn).await? {
            let asset: String = row.try_get("asset")?;
            let totals = totals_from_row(&row)?;
            insert(
                row.try_get("address")?,
                &asset,
                totals,
                row.try_get("last_transfer_id")?,
            );
        }
    }
    Ok(out)
}

/// Which of these member ids exist in the tenant.
async fn existing_members(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(WRITE_CHUNK_ROWS) {
        let mut sql = Sql::for_conn(&*conn, "SELECT id FROM member WHERE tenant_id = ");
        sql.bind(tenant_id.as_str()).push(" AND id IN ");
        push_list(&mut sql, chunk.iter().copied());
        for row in sql.query().fetch_all(&mut *conn).await? {
            out.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(out)
}

/// Apply operations (one slice of operations per caller, each its own linked-chain scope)
/// inside `tx`. Returns one result list per caller. Nothing is committed here.
pub async fn apply(
    tx: &mut Tx,
    tenant_id: &TenantId,
    requests: &[&[Op]],
    locking: Locking,
) -> ApiResult<Vec<Vec<TransferResult>>> {
    let now = tx.now();
    let now_micros = to_micros(now);
    // SQLite has one writer at a time: its transaction is the lock, and nothing can race.
    let lock = tx.backend() == Backend::Postgres && locking == Locking::Pessimistic;
    let compare = tx.backend() == Backend::Postgres && locking == Locking::Optimistic;
    let clock = std::time::Instant::now();
    let conn = tx.conn();

    // 1. Pending transfers that post/void/expire refer to (rows are immutable: safe to read
    //    before locking; their resolution state is read again after).
    let resolve_ids: Vec<&str> = requests
        .iter()
        .copied()
        .flatten()
        .filter(|op| !matches!(op, Op::Create(_)))
        .map(Op::id)
        .collect();
    let referenced = load_transfers(conn, tenant_id, &resolve_ids).await?;

    // 2. Lock every account involved, in order.
    let keys = account_keys(requests, &referenced);
    // Existing accounts are read (and locked) first; member accounts that do not exist yet
    // are created only for members that exist, which is checked just for those.
    let mut accounts = select_accounts(conn, lock, tenant_id, &keys).await?;
    let t_members = clock.elapsed();
    let missing_members: BTreeSet<&str> = keys
        .iter()
        .filter(|k| !accounts.totals.contains_key(*k))
        .filter_map(|(a, _)| a.member_id())
        .collect();
    let missing_members: Vec<&str> = missing_members.into_iter().collect();
    let found = existing_members(conn, tenant_id, &missing_members).await?;
    let mut members: HashSet<String> = accounts
        .totals
        .keys()
        .filter(|(a, _)| a.is_member())
        .map(|(a, _)| a.to_string())
        .collect();
    members.extend(found.iter().map(|m| format!("member:{m}")));
    let missing: BTreeSet<AccountKey> = keys
        .iter()
        .filter(|k| !accounts.totals.contains_key(*k))
        .filter(|(a, _)| !a.is_member() || members.contains(a.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        accounts.extend(create_accounts(conn, lock, tenant_id, &missing, now_micros).await?);
    }
    let t_lock = clock.elapsed();

    // 3. With the locks held, what already exists.
    let mut ids: Vec<&str> = requests.iter().copied().flatten().map(Op::id).collect();
    ids.sort_unstable();
    ids.dedup();
    let transfers = load_transfers(conn, tenant_id, &ids).await?;
    let t_load = clock.elapsed();

    // 4. The rules, in memory.
    let original = if compare {
        accounts.clone()
    } else {
        Accounts::default()
    };
    let (book, results) = decide(requests, accounts, transfers, members, now);

    let t_rules = clock.elapsed();
    // 5. Write.
    write(
        tx,
        tenant_id,
        &book,
        compare.then_some(&original),
        now_micros,
    )
    .await?;
    tracing::debug!(
        ops = ids.len(),
        members_us = t_members.as_micros() as u64,
        lock_us = (t_lock - t_members).as_micros() as u64,
        load_us = (t_load - t_lock).as_micros() as u64,
        rules_us = (t_rules - t_load).as_micros() as u64,
        write_us = (clock.elapsed() - t_rules).as_micros() as u64,
        "ledger apply"
    );
    Ok(results)
}

/// A batch decided by [`prepare`]: the rules' book, and the accounts as the decisions found
/// them (the write is a compare-and-swap against them).
#[derive(Debug)]
struct Decided {
    book: Book,
    original: Accounts,
    now: jiff::Timestamp,
}

/// What a batch still being committed will have written, laid over the next batch's reads of
/// transfers (its accounts are in the [`AccountCache`]). It shares the batch's book rather
/// than copying out of it (copying every new transfer took a sixth of the executor task's
/// time under `shequn bench ledger`).
#[derive(Debug, Clone)]
pub struct Overlay(Arc<Decided>);

impl Overlay {
    /// A transfer as it will be: the book holds every transfer the batch loaded (unchanged,
    /// or resolved by it) or created, and none that it rejected.
    fn transfer(&self, id: &str) -> Option<&Transfer> {
        self.0.book.transfers.get(id)
    }
}

/// Most accounts an [`AccountCache`] holds before it starts over.
const MAX_CACHED_ACCOUNTS: usize = 100_000;

/// The executor's memory of one tenant's accounts: totals and history heads as the database
/// will hold them once the batches in flight commit as decided, so that deciding a batch
/// reads only accounts it has not seen (under `shequn bench ledger`, reading a batch's ~450
/// accounts was the largest part of deciding it).
///
/// Another writer (domain code's own transactions, another process) can make an entry stale
/// without the executor knowing. That is safe: [`write_prepared`] checks every account a
/// batch's decisions rest on, changed or only read, against the database inside the write
/// transaction (totals and head), and the batch fails, goes the locking way and the executor
/// forgets everything ([`AccountCache::clear`]) whenever one differs or a batch does not
/// commit as decided.
#[derive(Debug, Default)]
pub struct AccountCache(Accounts);

impl AccountCache {
    pub fn clear(&mut self) {
        self.0 = Accounts::default();
    }

    pub fn len(&self) -> usize {
        self.0.totals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.totals.is_empty()
    }

    /// Remember the final state of the accounts a decided batch changes.
    fn record(&mut self, book: &Book) {
        // In place where the cache has the account (every account of a prepared batch): no
        // key to copy.
        for key in &book.dirty {
            if let Some(totals) = book.accounts.get(key) {
                match self.0.totals.get_mut(key) {
                    Some(cached) => *cached = *totals,
                    None => {
                        self.0.totals.insert(key.clone(), *totals);
                    }
                }
            }
            match (book.heads.get(key), self.0.heads.get_mut(key)) {
                (Some(head), Some(cached)) => cached.clone_from(head),
                (Some(head), None) => {
                    self.0.heads.insert(key.clone(), head.clone());
                }
                (None, _) => {
                    self.0.heads.remove(key);
                }
            }
        }
    }
}

/// A batch decided ahead of its transaction by [`prepare`], written by [`write_prepared`].
#[derive(Debug)]
pub struct Prepared {
    decided: Arc<Decided>,
    /// One result list per request.
    pub results: Vec<Vec<TransferResult>>,
}

impl Prepared {
    /// The instant the batch was decided at (its transfers' `created_at`).
    pub fn now(&self) -> jiff::Timestamp {
        self.decided.now
    }

    /// What the batch will have written once committed.
    pub fn overlay(&self) -> Overlay {
        Overlay(self.decided.clone())
    }
}

/// Decide a batch ahead of its write transaction, so that the executor can decide the next
/// batch while the previous one commits (on SQLite the reads run on a reader connection, in
/// parallel with the writer).
///
/// Accounts come from `cache`, and those it lacks are read on `conn` without locks (and
/// remembered); transfers are read on `conn` with `overlay` (the batch still being committed)
/// laid over them. The rules are applied and the batch's final account states recorded in
/// `cache`. Nothing is locked, so [`write_prepared`] fails the transaction with
/// [`CONCURRENT_UPDATE`] if any account differs from what the decisions rest on (as the
/// inserts fail when another writer created one of the transfer ids or resolved one of the
/// pending transfers meanwhile): the caller then applies the batch the locking way
/// ([`apply`]) and clears the cache. Returns `None` when an account does not exist yet:
/// creating accounts is left to [`apply`], under locks.
pub async fn prepare(
    db: &Db,
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    requests: &[&[Op]],
    overlay: Option<&Overlay>,
    cache: &mut AccountCache,
    now: jiff::Timestamp,
) -> ApiResult<Option<Prepared>> {
    let overlay_transfers = |found: &mut HashMap<String, Transfer>, ids: &[&str]| {
        if let Some(overlay) = overlay {
            for id in ids {
                if let Some(t) = overlay.transfer(id) {
                    found.insert((*id).to_owned(), t.clone());
                }
            }
        }
    };
    let resolve_ids: Vec<&str> = requests
        .iter()
        .copied()
        .flatten()
        .filter(|op| !matches!(op, Op::Create(_)))
        .map(Op::id)
        .collect();
    let mut referenced = load_transfers_on(db, conn, tenant_id, &resolve_ids).await?;
    overlay_transfers(&mut referenced, &resolve_ids);
    let keys = account_keys(requests, &referenced);
    if cache.len() + keys.len() > MAX_CACHED_ACCOUNTS {
        cache.clear();
    }
    let unknown: BTreeSet<AccountKey> = keys
        .iter()
        .filter(|k| !cache.0.totals.contains_key(*k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let read = select_accounts(conn, false, tenant_id, &unknown).await?;
        if unknown.iter().any(|k| !read.totals.contains_key(k)) {
            return Ok(None);
        }
        cache.0.extend(read);
    }
    let mut accounts = Accounts::default();
    for key in keys {
        if let Some(head) = cache.0.heads.get(&key) {
            accounts.heads.insert(key.clone(), head.clone());
        }
        if let Some(totals) = cache.0.totals.get(&key) {
            accounts.totals.insert(key, *totals);
        }
    }
    let members = accounts
        .totals
        .keys()
        .filter(|(a, _)| a.is_member())
        .map(|(a, _)| a.to_string())
        .collect();
    let mut ids: Vec<&str> = requests.iter().copied().flatten().map(Op::id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut transfers = load_transfers_on(db, conn, tenant_id, &ids).await?;
    overlay_transfers(&mut transfers, &ids);
    let original = accounts.clone();
    let (book, results) = decide(requests, accounts, transfers, members, now);
    cache.record(&book);
    Ok(Some(Prepared {
        decided: Arc::new(Decided {
            book,
            original,
            now,
        }),
        results,
    }))
}

/// Write a [`prepare`]d batch inside `tx`. Every account its decisions rest on must still be
/// as they found it: those it changes are written with a compare-and-swap, the others are
/// checked; either fails with [`CONCURRENT_UPDATE`] when another writer got there first.
pub async fn write_prepared(
    tx: &mut Tx,
    tenant_id: &TenantId,
    prepared: &Prepared,
) -> ApiResult<()> {
    let decided = &prepared.decided;
    check_accounts(tx.conn(), tenant_id, &decided.read_only()).await?;
    write(
        tx,
        tenant_id,
        &decided.book,
        Some(&decided.original),
        to_micros(decided.now),
    )
    .await
}

/// [`write_prepared`] for every tenant's part of a batch, in one transaction of the direct
/// SQLite connection ([`Db::write_direct`], see [`direct`]); `None` when the database has
/// none (then use [`write_prepared`] in a [`Tx`]).
pub async fn write_prepared_direct(
    db: &Db,
    parts: &[(&TenantId, &Prepared)],
) -> Option<anyhow::Result<()>> {
    let parts: Vec<(TenantId, Arc<Decided>)> = parts
        .iter()
        .map(|(tenant_id, prepared)| ((*tenant_id).clone(), prepared.decided.clone()))
        .collect();
    db.write_direct(move |tx| {
        for (tenant_id, decided) in &parts {
            direct::write_prepared(tx, tenant_id, decided)?;
        }
        Ok(())
    })
    .await
}

impl Decided {
    /// The accounts the decisions rest on that the batch does not change (they are checked,
    /// not written).
    fn read_only(&self) -> Vec<AccountState<'_>> {
        self.original
            .totals
            .iter()
            .filter(|(key, _)| !self.book.dirty.contains(*key))
            .map(|(key, totals)| AccountState {
                key,
                totals,
                head: self.original.heads.get(key).map(String::as_str),
            })
            .collect()
    }
}

/// Apply the rules to every request over what was read; one result list per request.
fn decide(
    requests: &[&[Op]],
    accounts: Accounts,
    transfers: HashMap<String, Transfer>,
    members: HashSet<String>,
    now: jiff::Timestamp,
) -> (Book, Vec<Vec<TransferResult>>) {
    let mut book = Book {
        accounts: accounts.totals,
        heads: accounts.heads,
        transfers,
        members,
        now: now.to_string(),
        ..Book::default()
    };
    let results = requests
        .iter()
        .map(|ops| apply_ops(&mut book, ops))
        .collect();
    (book, results)
}

/// Every account the operations touch: both sides of each new transfer and of each pending
/// transfer being resolved.
fn account_keys(
    requests: &[&[Op]],
    referenced: &HashMap<String, Transfer>,
) -> BTreeSet<AccountKey> {
    let mut keys: BTreeSet<AccountKey> = BTreeSet::new();
    for op in requests.iter().copied().flatten() {
        if let Op::Create(t) = op {
            keys.insert((t.from.clone(), t.asset));
            keys.insert((t.to.clone(), t.asset));
        }
    }
    for t in referenced.values() {
        if let (Some(from), Some(to)) = (Address::parse(&t.from), Address::parse(&t.to)) {
            keys.insert((from, t.asset));
            keys.insert((to, t.asset));
        }
    }
    keys
}

/// Everything a decided batch writes, derived from its book once for either way of writing
/// it ([`write`] through sqlx, [`direct::write_prepared`] on SQLite's direct connection).
struct WriteSet<'a> {
    transfers: Vec<(&'a NewTransfer, &'a Links)>,
    resolutions: &'a [(String, super::engine::ResolutionKind, i64)],
    accounts: Vec<AccountWrite<'a>>,
    timeouts: Vec<scheduler::NewJob>,
    /// One event per batch and tenant: the transfer table is the ledger's own log; the event
    /// tells outbox readers which transfers and resolutions appeared.
    event: NewEvent,
}

/// What `book` writes (`None`: nothing), with each account's old state from `compare_with`
/// for a compare-and-swap.
fn write_set<'a>(
    tenant_id: &TenantId,
    book: &'a Book,
    compare_with: Option<&'a Accounts>,
    now: i64,
) -> Option<WriteSet<'a>> {
    let writes = &book.writes;
    if writes.transfers.is_empty() && writes.resolutions.is_empty() {
        return None;
    }
    let accounts = book
        .dirty
        .iter()
        .filter_map(|key| {
            let totals = book.accounts.get(key)?;
            Some(AccountWrite {
                key,
                totals,
                head: book.heads.get(key).map(String::as_str),
                old: AccountState {
                    key,
                    totals: compare_with
                        .and_then(|o| o.totals.get(key))
                        .unwrap_or(&ZERO),
                    head: compare_with
                        .and_then(|o| o.heads.get(key))
                        .map(String::as_str),
                },
            })
        })
        .collect();
    let timeouts = writes
        .transfers
        .iter()
        .filter_map(|t| {
            timeout_at(t, now).map(|due_at| scheduler::NewJob {
                id: format!("{PENDING_TIMEOUT_JOB}:{}", t.id),
                kind: PENDING_TIMEOUT_JOB,
                due_at,
                payload: json!({ "pending_id": t.id }),
            })
        })
        .collect();
    let created: Vec<&str> = writes.transfers.iter().map(|t| t.id.as_str()).collect();
    let resolved: Vec<Value> = writes
        .resolutions
        .iter()
        .map(|(id, kind, amount)| json!({ "id": id, "status": kind.as_str(), "posted_amount": amount }))
        .collect();
    Some(WriteSet {
        transfers: writes.transfers.iter().zip(&writes.links).collect(),
        resolutions: &writes.resolutions,
        accounts,
        timeouts,
        event: NewEvent::new(
            tenant_id,
            "ledger.transfers_committed",
            None,
            json!({ "created": created, "resolved": resolved }),
        ),
    })
}

async fn write(
    tx: &mut Tx,
    tenant_id: &TenantId,
    book: &Book,
    compare_with: Option<&Accounts>,
    now: i64,
) -> ApiResult<()> {
    let Some(set) = write_set(tenant_id, book, compare_with, now) else {
        return Ok(());
    };
    let conn = tx.conn();
    insert_transfers(conn, tenant_id, &set.transfers, now).await?;
    for chunk in set.resolutions.chunks(WRITE_CHUNK_ROWS) {
        let mut sql = Sql::for_conn(
            &*conn,
            &format!(
                "{} {RESOLUTION_INSERT} VALUES ",
                crate::common::sql::insert_into(conn)
            ),
        );
        sql.values(chunk, |(id, kind, amount)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(id.as_str()),
                Arg::from(kind.as_str()),
                Arg::from(*amount),
                Arg::from(now),
            ]
        });
        sql.query().execute(&mut *conn).await?;
    }
    update_accounts(conn, tenant_id, &set.accounts, compare_with.is_some()).await?;
    scheduler::schedule(conn, tenant_id, &set.timeouts, now).await?;
    tx.emit(set.event);
    Ok(())
}

/// An account's totals and history head, as a batch's decisions found it.
struct AccountState<'a> {
    key: &'a AccountKey,
    totals: &'a Totals,
    head: Option<&'a str>,
}

const ZERO: Totals = Totals {
    debits_posted: 0,
    credits_posted: 0,
    debits_pending: 0,
    credits_pending: 0,
};

/// One account row a batch rewrites: its new totals and history head, and (for a
/// compare-and-swap) the state it was decided on.
struct AccountWrite<'a> {
    key: &'a AccountKey,
    totals: &'a Totals,
    head: Option<&'a str>,
    old: AccountState<'a>,
}

/// Fail with [`CONCURRENT_UPDATE`] unless every account is still in the given state (one
/// statement per chunk; the padding rows match nothing).
async fn check_accounts(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &[AccountState<'_>],
) -> ApiResult<()> {
    for chunk in rows.chunks(WRITE_CHUNK_ROWS) {
        let mut sql = Sql::for_conn(
            &*conn,
            "SELECT COUNT(*) FROM ledger_account a JOIN (VALUES ",
        );
        sql.padded_values(chunk, |r| {
            vec![
                Arg::from(r.key.0.as_str()),
                Arg::from(r.key.1.as_str()),
                Arg::from(r.totals.debits_posted),
                Arg::from(r.totals.credits_posted),
                Arg::from(r.totals.debits_pending),
                Arg::from(r.totals.credits_pending),
                Arg::from(r.head.map(str::to_owned)),
            ]
        });
        sql.push(") AS v ON a.address = v.column1 AND a.asset = v.column2 \
             AND a.debits_posted = v.column3 AND a.credits_posted = v.column4 \
             AND a.debits_pending = v.column5 AND a.credits_pending = v.column6 AND a.last_transfer_id ");
        sql.push(crate::common::sql::null_safe_eq(backend_of(conn)));
        sql.push(" v.column7 WHERE a.tenant_id = ")
            .bind(tenant_id.as_str());
        let found: i64 = sql.query().fetch_one(&mut *conn).await?.try_get(0)?;
        if found != chunk.len() as i64 {
            return Err(ApiError::internal(anyhow::anyhow!(CONCURRENT_UPDATE)));
        }
    }
    Ok(())
}

/// Insert a batch's new transfers, in statements of [`Sql::padded_select`] (whose text repeats
/// from batch to batch, so the connection prepares each shape once); the padding rows are
/// all NULL and filtered out.
async fn insert_transfers(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &[(&NewTransfer, &Links)],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(WRITE_CHUNK_ROWS) {
        let mut sql = Sql::for_conn(
            &*conn,
            &format!(
                "{} {TRANSFER_INSERT} ",
                crate::common::sql::insert_into(conn)
            ),
        );
        sql.padded_select(chunk, |&(t, links)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(t.id.as_str()),
                Arg::from(t.from.as_str()),
                Arg::from(t.to.as_str()),
                Arg::from(t.asset.as_str()),
                Arg::from(t.amount),
                Arg::from(t.code.as_str()),
                Arg::from(t.reference.clone()),
                Arg::from(t.metadata.to_string()),
                Arg::from(i64::from(t.pending)),
                Arg::from(timeout_at(t, now)),
                Arg::from(i64::from(t.linked)),
                Arg::from(now),
                Arg::from(links.debit_prev.clone()),
                Arg::from(links.credit_prev.clone()),
            ]
        });
        let (text, args) = sql.into_parts();
        bind_owned(&text, args).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rewrite the totals and history heads of a batch's accounts, in statements of
/// [`Sql::padded_values`] (the all-NULL padding rows match no account). With `compare`, each
/// row is written only if it still holds the totals the batch was decided on, and a row that
/// does not fails the batch with [`CONCURRENT_UPDATE`].
async fn update_accounts(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &[AccountWrite<'_>],
    compare: bool,
) -> ApiResult<()> {
    for chunk in rows.chunks(WRITE_CHUNK_ROWS) {
        let mut sql = Sql::for_conn(
            &*conn,
            "UPDATE ledger_account SET debits_posted = v.column3, credits_posted = v.column4, \
             debits_pending = v.column5, credits_pending = v.column6, \
             last_transfer_id = v.column11 FROM (VALUES ",
        );
        sql.padded_values(chunk, |r| {
            let (t, o) = (r.totals, r.old.totals);
            vec![
                Arg::from(r.key.0.as_str()),
                Arg::from(r.key.1.as_str()),
                Arg::from(t.debits_posted),
                Arg::from(t.credits_posted),
                Arg::from(t.debits_pending),
                Arg::from(t.credits_pending),
                Arg::from(o.debits_posted),
                Arg::from(o.credits_posted),
                Arg::from(o.debits_pending),
                Arg::from(o.credits_pending),
                Arg::from(r.head.map(str::to_owned)),
                Arg::from(r.old.head.map(str::to_owned)),
            ]
        });
        sql.push(") AS v WHERE ledger_account.tenant_id = ")
            .bind(tenant_id.as_str())
            .push(" AND ledger_account.address = v.column1 AND ledger_account.asset = v.column2");
        if compare {
            sql.push(
                " AND ledger_account.debits_posted = v.column7 \
                 AND ledger_account.credits_posted = v.column8 \
                 AND ledger_account.debits_pending = v.column9 \
                 AND ledger_account.credits_pending = v.column10 \
                 AND ledger_account.last_transfer_id ",
            )
            .push(crate::common::sql::null_safe_eq(backend_of(conn)))
            .push(" v.column12");
        }
        let (text, args) = sql.into_parts();
        let updated = bind_owned(&text, args).execute(&mut *conn).await?;
        if compare && updated.rows_affected() != chunk.len() as u64 {
            return Err(ApiError::internal(anyhow::anyhow!(CONCURRENT_UPDATE)));
        }
    }
    Ok(())
}

/// Balances of one address for every asset (zero where no account exists yet).
pub async fn balances(
    pool: &sqlx::AnyPool,
    tenant_id: &TenantId,
    address: &Address,
) -> Result<Vec<(Asset, Balance)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT asset, debits_posted, credits_posted, debits_pending, credits_pending \
         FROM ledger_account WHERE tenant_id = $1 AND address = $2",
    )
    .bind(tenant_id.as_str())
    .bind(address.as_str())
    .fetch_all(pool)
    .await?;
    let mut by_asset: HashMap<Asset, Balance> = HashMap::new();
    for row in rows {
        let asset: String = row.try_get("asset")?;
        if let Some(asset) = Asset::parse(&asset) {
            let totals = totals_from_row(&row)?;
            by_asset.insert(
                asset,
                Balance::from_totals(
                    totals.debits_posted,
                    totals.credits_posted,
                    totals.debits_pending,
                    totals.credits_pending,
                ),
            );
        }
    }
    Ok(Asset::ALL
        .into_iter()
        .map(|a| (a, by_asset.get(&a).copied().unwrap_or_default()))
        .collect())
}

/// What an account may still spend (posted balance less pending debits), read on `conn` (for
/// example inside the caller's transaction); 0 for an account that does not exist yet.
pub async fn available(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    address: &Address,
    asset: Asset,
) -> Result<i64, sqlx::Error> {
    let available: Option<i64> = sqlx::query_scalar(
        "SELECT credits_posted - debits_posted - debits_pending FROM ledger_account \
         WHERE tenant_id = $1 AND address = $2 AND asset = $3",
    )
    .bind(tenant_id.as_str())
    .bind(address.as_str())
    .bind(asset.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(available.unwrap_or(0))
}

/// Where a member's history continues: for each asset, the id of the next transfer to show
/// in that account's list (an asset that is absent has no more). Links never change, so a
/// cursor stays valid however many transfers arrive after it was handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryCursor {
    next: BTreeMap<Asset, String>,
}

impl HistoryCursor {
    /// Opaque and URL-safe: hex of `asset=id` lines.
    pub fn encode(&self) -> String {
        let text: Vec<String> = self
            .next
            .iter()
            .map(|(asset, id)| format!("{}={id}", asset.as_str()))
            .collect();
        hex::encode(text.join("\n"))
    }

    pub fn decode(text: &str) -> Option<HistoryCursor> {
        let bytes = hex::decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut next = BTreeMap::new();
        for line in text.split('\n') {
            let (asset, id) = line.split_once('=')?;
            if id.is_empty() {
                return None;
            }
            next.insert(Asset::parse(asset)?, id.to_owned());
        }
        (!next.is_empty()).then_some(HistoryCursor { next })
    }
}

/// A page of a member's transfers, newest first, and the cursor of the next page (if any).
///
/// Each of the member's accounts (one per asset) names its newest transfer, and each transfer
/// the one before it on each side, so one list per asset is walked from its head (or from the
/// cursor) with a recursive query of `limit + 1` point lookups (a correlated subquery per
/// step, so that no planner turns a step into a scan); the lists are then merged, newest
/// first.
pub async fn history(
    pool: &sqlx::AnyPool,
    tenant_id: &TenantId,
    member: &crate::common::ids::MemberId,
    asset: Option<Asset>,
    cursor: Option<&HistoryCursor>,
    limit: i64,
) -> Result<(Vec<Transfer>, Option<HistoryCursor>), sqlx::Error> {
    let address = Address::member(member);
    let starts: BTreeMap<Asset, String> = match cursor {
        Some(cursor) => cursor.next.clone(),
        None => {
            let rows = sqlx::query(
                "SELECT asset, last_transfer_id FROM ledger_account \
                 WHERE tenant_id = $1 AND address = $2 AND last_transfer_id IS NOT NULL",
            )
            .bind(tenant_id.as_str())
            .bind(address.as_str())
            .fetch_all(pool)
            .await?;
            let mut starts = BTreeMap::new();
            for row in rows {
                let name: String = row.try_get("asset")?;
                if let Some(asset) = Asset::parse(&name) {
                    starts.insert(asset, row.try_get("last_transfer_id")?);
                }
            }
            starts
        }
    };
    let mut lists: Vec<(Asset, std::collections::VecDeque<(i64, Transfer)>)> = Vec::new();
    for (list_asset, start) in starts {
        if asset.is_some_and(|a| a != list_asset) {
            continue;
        }
        let rows = sqlx::query(&format!(
            "WITH RECURSIVE chain(id, depth) AS ( \
                 SELECT CAST($3 AS TEXT), CAST(1 AS BIGINT) \
                 UNION ALL \
                 SELECT (SELECT CASE WHEN t.debit_address = $2 THEN t.debit_prev \
                         ELSE t.credit_prev END \
                     FROM ledger_transfer t WHERE t.tenant_id = $1 AND t.id = chain.id), \
                     chain.depth + 1 \
                 FROM chain WHERE chain.id IS NOT NULL AND chain.depth < $4) \
             SELECT {TRANSFER_COLUMNS} FROM chain \
             JOIN ledger_transfer t ON t.tenant_id = $1 AND t.id = chain.id \
             LEFT JOIN ledger_resolution r ON r.tenant_id = t.tenant_id AND r.pending_id = t.id \
             ORDER BY chain.depth"
        ))
        .bind(tenant_id.as_str())
        .bind(address.as_str())
        .bind(start.as_str())
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
        let list = rows
            .iter()
            .map(|row| Ok((row.try_get("created_at")?, transfer_from_row(row)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        lists.push((list_asset, list));
    }
    let mut page = Vec::new();
    while (page.len() as i64) < limit {
        // The newest of the lists' next transfers (each list keeps its own order).
        let newest = lists
            .iter()
            .enumerate()
            .filter_map(|(i, (_, list))| list.front().map(|(at, _)| (*at, i)))
            .max_by_key(|(at, i)| (*at, std::cmp::Reverse(*i)));
        let Some((_, i)) = newest else { break };
        if let Some((_, transfer)) = lists[i].1.pop_front() {
            page.push(transfer);
        }
    }
    let next: BTreeMap<Asset, String> = lists
        .into_iter()
        .filter_map(|(asset, list)| list.front().map(|(_, t)| (asset, t.id.clone())))
        .collect();
    let cursor = (!next.is_empty()).then_some(HistoryCursor { next });
    Ok((page, cursor))
}
