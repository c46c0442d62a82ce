//! `shequn bench ledger`: many concurrent callers spending from many member accounts into one
//! hot system account (`system:redemption`), first through the batching executor, then through
//! a naive path (one transaction per transfer with row locks), on the same database.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use jiff::Timestamp;
use serde_json::json;
use sqlx::Row as _;

use super::BenchOptions;
use crate::common::clock::{Clock, SystemClock};
use crate::common::db::{Backend, Db};
use crate::common::ids::{MemberId, TenantId};
use crate::common::time::to_micros;
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{verify, Ledger, Op};
use crate::members::model::Profile;
use crate::{members, tenants};

/// Members spending in the benchmark.
const MEMBERS: usize = 2_000;
/// Points each member starts with (enough never to run out).
pub const FUNDING: i64 = 1_000_000_000;

pub async fn run(options: BenchOptions) -> anyhow::Result<serde_json::Value> {
    let (db, _temp) = super::open_database(&options).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tenant = tenants::create(&db, "bench-ledger", clock.now())
        .await?
        .tenant_id;
    let members = setup_members(&db, &tenant, MEMBERS).await?;
    let ledger = Ledger::start(db.clone(), clock.clone());
    fund(&ledger, &tenant, &members).await?;
    eprintln!(
        "ledger bench on {}: {} members, {} concurrent callers, {:?} per side",
        db.backend().name(),
        members.len(),
        options.concurrency,
        options.duration
    );

    let ours = drive(&options, &members, {
        let ledger = ledger.clone();
        let tenant = tenant.clone();
        move |member: Address, id: String| {
            let ledger = ledger.clone();
            let tenant = tenant.clone();
            async move {
                let op = Op::Create(spend(id, member));
                let results = ledger.submit(&tenant, vec![op]).await?;
                Ok(results.first().is_some_and(|r| r.status == "created"))
            }
        }
    })
    .await?;
    let exact_ours = verify::verify(db.read(), &tenant).await?.ok;
    eprintln!("ours:  {ours:.0} transfers/s (verify ok: {exact_ours})");

    let naive = drive(&options, &members, {
        let db = db.clone();
        let tenant = tenant.clone();
        move |member: Address, id: String| {
            let db = db.clone();
            let tenant = tenant.clone();
            async move { naive_spend(&db, &tenant, &member, &id).await }
        }
    })
    .await?;
    let report = verify::verify(db.read(), &tenant).await?;
    eprintln!(
        "naive (sqlx): {naive:.0} transfers/s (verify ok: {})",
        report.ok
    );
    let mut exact = exact_ours && report.ok;

    // The same naive algorithm on the driver ours writes through on a SQLite file (rusqlite,
    // the direct connection): the honest baseline. PostgreSQL has one driver here (sqlx), so
    // there the sqlx side is the fastest naive side.
    let mut fastest_naive = naive;
    let mut direct = None;
    if db.has_direct() {
        let per_sec = drive(&options, &members, {
            let db = db.clone();
            let tenant = tenant.clone();
            move |member: Address, id: String| {
                let db = db.clone();
                let tenant = tenant.clone();
                async move { naive_spend_direct(&db, &tenant, &member, &id).await }
            }
        })
        .await?;
        let report = verify::verify(db.read(), &tenant).await?;
        eprintln!(
            "naive (rusqlite): {per_sec:.0} transfers/s (verify ok: {})",
            report.ok
        );
        exact = exact && report.ok;
        fastest_naive = fastest_naive.max(per_sec);
        direct = Some(per_sec);
    }
    db.close().await;
    let ratio = |of: f64| {
        if of > 0.0 {
            (ours / of * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    Ok(json!({
        "bench": "ledger",
        "database": db.backend().name(),
        "ours_per_sec": ours.round(),
        "naive_per_sec": fastest_naive.round(),
        "ratio": ratio(fastest_naive),
        "naive_sqlx_per_sec": naive.round(),
        "ratio_vs_sqlx": ratio(naive),
        "naive_rusqlite_per_sec": direct.map(f64::round),
        "exact": exact,
    }))
}

/// A one-point spend from a member into the hot `system:redemption` account.
pub fn spend(id: String, member: Address) -> NewTransfer {
    NewTransfer::internal(
        id,
        member,
        Address::system("redemption"),
        Asset::Points,
        1,
        "bench_spend",
        None,
    )
}

/// Create `count` members (one multi-row insert) and return their account addresses.
pub async fn setup_members(
    db: &Db,
    tenant: &TenantId,
    count: usize,
) -> anyhow::Result<Vec<Address>> {
    let profile = Profile::default();
    let ids: Vec<MemberId> = (0..count).map(|_| MemberId::generate()).collect();
    let rows: Vec<(MemberId, &Profile)> = ids.iter().map(|id| (id.clone(), &profile)).collect();
    let mut tx = db.begin(Timestamp::now()).await?;
    members::store::insert_many(tx.conn(), tenant, &rows, to_micros(Timestamp::now()))
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    tx.commit().await?;
    Ok(ids.iter().map(Address::member).collect())
}

/// Give every member [`FUNDING`] points (enough never to run out), through the executor.
pub async fn fund(ledger: &Ledger, tenant: &TenantId, members: &[Address]) -> anyhow::Result<()> {
    for (chunk_index, chunk) in members.chunks(1000).enumerate() {
        let ops = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Op::Create(NewTransfer::internal(
                    format!("fund-{chunk_index}-{i}"),
                    Address::system("issuance"),
                    m.clone(),
                    Asset::Points,
                    FUNDING,
                    "bench_fund",
                    None,
                ))
            })
            .collect();
        let results = ledger
            .submit(tenant, ops)
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        anyhow::ensure!(
            results.iter().all(|r| r.status == "created"),
            "funding failed"
        );
    }
    Ok(())
}

/// Run `concurrency` callers for the duration; returns successful transfers per second.
async fn drive<F, Fut>(options: &BenchOptions, members: &[Address], call: F) -> anyhow::Result<f64>
where
    F: Fn(Address, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<bool, crate::common::error::ApiError>> + Send,
{
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let sequence = Arc::new(AtomicU64::new(0));
    let members = Arc::new(members.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.concurrency);
    for caller in 0..options.concurrency {
        let (stop, done, members, call) =
            (stop.clone(), done.clone(), members.clone(), call.clone());
        let sequence = sequence.clone();
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let member = members[(caller + n as usize * 7919) % members.len()].clone();
                // Time-ordered ids, like the UUIDv7-derived ids domain code uses (and as
                // TigerBeetle recommends): consecutive transfers share index pages.
                let id = format!("b{run}-{:012}", sequence.fetch_add(1, Ordering::Relaxed));
                n += 1;
                if call(member, id).await? {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), crate::common::error::ApiError>(())
        }));
    }
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await
            .context("caller panicked")?
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// The naive path: one transaction per transfer, rows locked one transfer at a time (also
/// used by the criterion bench `benches/ledger.rs`).
pub async fn naive_spend(
    db: &Db,
    tenant: &TenantId,
    member: &Address,
    id: &str,
) -> Result<bool, crate::common::error::ApiError> {
    let system = Address::system("redemption");
    let now = to_micros(Timestamp::now());
    let mut tx = db.begin(Timestamp::now()).await?;
    let lock = if db.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let mut addresses = [member.as_str(), system.as_str()];
    addresses.sort_unstable();
    let mut member_row = None;
    let mut system_head: Option<String> = None;
    for address in addresses {
        let row = sqlx::query(&format!(
            "SELECT debits_posted, credits_posted, debits_pending, last_transfer_id \
             FROM ledger_account WHERE tenant_id = $1 AND address = $2 AND asset = 'points'{lock}"
        ))
        .bind(tenant.as_str())
        .bind(address)
        .fetch_one(tx.conn())
        .await?;
        if address == member.as_str() {
            member_row = Some(row);
        } else {
            system_head = row.try_get("last_transfer_id")?;
        }
    }
    let row = member_row.ok_or_else(|| crate::common::error::ApiError::not_found("account"))?;
    let debits: i64 = row.try_get("debits_posted")?;
    let credits: i64 = row.try_get("credits_posted")?;
    let pending: i64 = row.try_get("debits_pending")?;
    let member_head: Option<String> = row.try_get("last_transfer_id")?;
    if debits + pending + 1 > credits {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO ledger_transfer (tenant_id, id, debit_address, credit_address, asset, amount, \
         code, reference, metadata, pending, timeout_at, linked, created_at, debit_prev, \
         credit_prev) \
         VALUES ($1, $2, $3, $4, 'points', 1, 'bench_spend', NULL, '{}', 0, NULL, 0, $5, $6, $7)",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(member.as_str())
    .bind(system.as_str())
    .bind(now)
    .bind(member_head)
    .bind(system_head)
    .execute(tx.conn())
    .await?;
    for (address, column) in [
        (member.as_str(), "debits_posted"),
        (system.as_str(), "credits_posted"),
    ] {
        sqlx::query(&format!(
            "UPDATE ledger_account SET {column} = {column} + 1, last_transfer_id = $3 \
             WHERE tenant_id = $1 AND address = $2 AND asset = 'points'"
        ))
        .bind(tenant.as_str())
        .bind(address)
        .bind(id)
        .execute(tx.conn())
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// [`naive_spend`] on the direct SQLite connection (rusqlite, the driver the executor writes
/// through): the same statements, one `BEGIN IMMEDIATE` transaction per transfer. Only on a
/// SQLite file ([`Db::write_direct`]).
pub async fn naive_spend_direct(
    db: &Db,
    tenant: &TenantId,
    member: &Address,
    id: &str,
) -> Result<bool, crate::common::error::ApiError> {
    let (tenant, member, id) = (
        tenant.as_str().to_owned(),
        member.to_string(),
        id.to_owned(),
    );
    let now = to_micros(Timestamp::now());
    let written = db.write_direct(move |tx| {
        let system = Address::system("redemption").to_string();
        let mut read = tx.prepare_cached(
            "SELECT debits_posted, credits_posted, debits_pending, last_transfer_id \
             FROM ledger_account WHERE tenant_id = ?1 AND address = ?2 AND asset = 'points'",
        )?;
        let (debits, credits, pending, member_head) =
            read.query_row(rusqlite::params![tenant, member], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            })?;
        let system_head: Option<String> = read
            .query_row(rusqlite::params![tenant, system], |row| row.get(3))?;
        if debits + pending + 1 > credits {
            return Ok(false);
        }
        tx.prepare_cached(
            "INSERT INTO ledger_transfer (tenant_id, id, debit_address, credit_address, asset, \
             amount, code, reference, metadata, pending, timeout_at, linked, created_at, \
             debit_prev, credit_prev) \
             VALUES (?1, ?2, ?3, ?4, 'points', 1, 'bench_spend', NULL, '{}', 0, NULL, 0, ?5, ?6, ?7)",
        )?
        .execute(rusqlite::params![tenant, id, member, system, now, member_head, system_head])?;
        for (address, column) in [(&member, "debits_posted"), (&system, "credits_posted")] {
            tx.prepare_cached(&format!(
                "UPDATE ledger_account SET {column} = {column} + 1, last_transfer_id = ?3 \
                 WHERE tenant_id = ?1 AND address = ?2 AND asset = 'points'"
            ))?
            .execute(rusqlite::params![tenant, address, id])?;
        }
        Ok(true)
    });
    match written.await {
        Some(result) => result.map_err(crate::common::error::ApiError::internal),
        None => Err(crate::common::error::ApiError::internal(anyhow::anyhow!(
            "no direct SQLite connection"
        ))),
    }
}
