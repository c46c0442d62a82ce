//! Criterion benchmark of the ledger's in-process hot path, ours beside the naive way in the
//! same run (project rule).
//!
//! - `ledger_engine`: the pure rules alone ([`apply_ops`]) applying 1,000 spends
//!   (member → `system:redemption`, amount 1) to an in-memory [`Book`] holding 1,000 funded
//!   member accounts and the system account: the CPU cost of a batch without any I/O.
//! - `ledger_commit`, on a temporary SQLite file, 1,000 spends per iteration four ways:
//!   - `ours_prepared_direct`: how the executor handles a batch on SQLite: decided ahead with
//!     [`store::prepare`] (accounts from a warm [`store::AccountCache`], transfer ids looked up
//!     on the direct reader) and written in one transaction of the direct writer with
//!     [`store::write_prepared_direct`]. Here the two run one after the other; the executor
//!     overlaps deciding one batch with committing the one before.
//!   - `ours_one_tx`: ONE transaction through [`store::apply`] (the locking path the executor
//!     takes for batches that create accounts, and the path on PostgreSQL).
//!   - `naive_tx_per_spend`: each spend in its own transaction doing select / check / insert /
//!     update through sqlx (`naive_spend` from `src/bench/ledger.rs`).
//!   - `naive_direct_tx_per_spend`: the same, on the direct rusqlite writer that
//!     `ours_prepared_direct` uses (`naive_spend_direct`): the honest baseline, the fastest
//!     driver for the naive algorithm; `naive_tx_per_spend` stays beside it so that the change
//!     of ratio is visible.
//!
//!   All report elements (transfers) per second, so the ratios are the gains from batching.
//!   Every transfer id is unique, so every spend is `created`; members are funded far beyond
//!   what the run spends.
//!
//! The end-to-end, concurrent version of the comparison is `shequn bench ledger`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jiff::Timestamp;

use shequn::common::db::Db;
use shequn::common::ids::{MemberId, TenantId};
use shequn::ledger::engine::{apply_ops, Book, Totals};
use shequn::ledger::model::{Address, Asset};
use shequn::ledger::{store, Op};
use shequn::tenants;

/// Member accounts spending.
const MEMBERS: usize = 1_000;
/// Spends per measured batch.
const SPENDS: usize = 1_000;
/// Points each member starts with (enough never to run out).
const FUNDING: i64 = 1_000_000_000;

use shequn::bench::ledger::spend;

fn member_addresses() -> Vec<Address> {
    (0..MEMBERS)
        .map(|_| Address::member(&MemberId::generate()))
        .collect()
}

/// `SPENDS` spends spread over the members, ids `{prefix}-{i}`.
fn spends(prefix: &str, members: &[Address]) -> Vec<Op> {
    (0..SPENDS)
        .map(|i| {
            Op::Create(spend(
                format!("{prefix}-{i}"),
                members[i % members.len()].clone(),
            ))
        })
        .collect()
}

fn bench_engine(c: &mut Criterion) {
    let members = member_addresses();
    let mut book = Book {
        now: Timestamp::now().to_string(),
        ..Book::default()
    };
    for member in &members {
        book.members.insert(member.as_str().to_owned());
        book.accounts.insert(
            (member.clone(), Asset::Points),
            Totals {
                credits_posted: FUNDING,
                ..Totals::default()
            },
        );
    }
    book.accounts.insert(
        (Address::system("redemption"), Asset::Points),
        Totals::default(),
    );
    let ops = spends("s", &members);
    let results = apply_ops(&mut book.clone(), &ops);
    assert!(
        results.iter().all(|r| r.status == "created"),
        "every spend must be created"
    );

    let mut group = c.benchmark_group("ledger_engine");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(SPENDS as u64));
    group.bench_function("apply_ops_1000_spends", |b| {
        b.iter_batched(
            || book.clone(),
            |mut book| {
                let results = apply_ops(&mut book, black_box(&ops));
                (book, results)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

struct Setup {
    db: Db,
    tenant: TenantId,
    members: Vec<Address>,
}

async fn setup(url: &str) -> anyhow::Result<Setup> {
    let db = Db::connect(url).await?;
    db.migrate().await?;
    let tenant = tenants::create(&db, "bench-ledger", Timestamp::now())
        .await?
        .tenant_id;
    let members = shequn::bench::ledger::setup_members(&db, &tenant, MEMBERS).await?;
    let ledger = shequn::ledger::Ledger::start(
        db.clone(),
        std::sync::Arc::new(shequn::common::clock::SystemClock),
    );
    shequn::bench::ledger::fund(&ledger, &tenant, &members).await?;
    // The naive path expects the `system:redemption` row to exist: one spend creates it.
    let first = ledger
        .submit(
            &tenant,
            vec![Op::Create(spend("first-spend".into(), members[0].clone()))],
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    anyhow::ensure!(
        first.iter().all(|r| r.status == "created"),
        "first spend failed"
    );
    Ok(Setup {
        db,
        tenant,
        members,
    })
}

/// Ours: one batch of spends in one transaction through `store::apply`.
async fn batch_spend(db: &Db, tenant: &TenantId, ops: Vec<Op>) -> anyhow::Result<()> {
    let mut tx = db.begin(Timestamp::now()).await?;
    let results = store::apply(&mut tx, tenant, &[&ops], store::Locking::Optimistic)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    tx.commit().await?;
    anyhow::ensure!(
        results.iter().flatten().all(|r| r.status == "created"),
        "a batched spend was not created"
    );
    Ok(())
}

/// Ours as the executor runs it on SQLite: decide with [`store::prepare`], then write on the
/// direct connection.
async fn prepared_spend(
    db: &Db,
    tenant: &TenantId,
    cache: &mut store::AccountCache,
    ops: Vec<Op>,
) -> anyhow::Result<()> {
    let mut conn = db.read().acquire().await?;
    let prepared = store::prepare(
        db,
        &mut conn,
        tenant,
        &[&ops],
        None,
        cache,
        Timestamp::now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.to_string()))?
    .context("every account exists, so the batch is prepared")?;
    drop(conn);
    store::write_prepared_direct(db, &[(tenant, &prepared)])
        .await
        .context("a SQLite file has a direct writer")??;
    anyhow::ensure!(
        prepared
            .results
            .iter()
            .flatten()
            .all(|r| r.status == "created"),
        "a prepared spend was not created"
    );
    Ok(())
}

fn bench_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let Setup {
        db,
        tenant,
        members,
    } = runtime.block_on(setup(&url)).expect("bench setup");
    // Makes every transfer id unique across iterations and both sides.
    let counter = AtomicU64::new(0);

    let mut group = c.benchmark_group("ledger_commit");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SPENDS as u64));
    // The executor's cache as it is in steady state: every member account already read.
    let cache = std::cell::RefCell::new(store::AccountCache::default());
    runtime
        .block_on(prepared_spend(
            &db,
            &tenant,
            &mut cache.borrow_mut(),
            spends("warm", &members),
        ))
        .expect("warming the account cache");
    group.bench_function("ours_prepared_direct_1000_spends", |b| {
        b.to_async(&runtime).iter(|| async {
            let run = counter.fetch_add(1, Ordering::Relaxed);
            let ops = spends(&format!("direct{run}"), &members);
            let mut taken = cache.take();
            prepared_spend(&db, &tenant, &mut taken, ops)
                .await
                .expect("prepared spend");
            cache.replace(taken);
        });
    });
    group.bench_function("ours_one_tx_1000_spends", |b| {
        b.to_async(&runtime).iter(|| async {
            let run = counter.fetch_add(1, Ordering::Relaxed);
            let ops = spends(&format!("ours{run}"), &members);
            batch_spend(&db, &tenant, ops).await.expect("batch spend");
        });
    });
    group.bench_function("naive_tx_per_spend_1000_spends", |b| {
        b.to_async(&runtime).iter(|| async {
            let run = counter.fetch_add(1, Ordering::Relaxed);
            for i in 0..SPENDS {
                let id = format!("naive{run}-{i}");
                let created = shequn::bench::ledger::naive_spend(
                    &db,
                    &tenant,
                    &members[i % members.len()],
                    &id,
                )
                .await
                .expect("naive spend");
                assert!(created, "a naive spend was refused");
            }
        });
    });
    group.bench_function("naive_direct_tx_per_spend_1000_spends", |b| {
        b.to_async(&runtime).iter(|| async {
            let run = counter.fetch_add(1, Ordering::Relaxed);
            for i in 0..SPENDS {
                let id = format!("naivedirect{run}-{i}");
                let created = shequn::bench::ledger::naive_spend_direct(
                    &db,
                    &tenant,
                    &members[i % members.len()],
                    &id,
                )
                .await
                .expect("naive direct spend");
                assert!(created, "a naive direct spend was refused");
            }
        });
    });
    group.finish();

    runtime.block_on(db.close());
    drop(dir);
}

criterion_group!(benches, bench_engine, bench_commit);
criterion_main!(benches);
