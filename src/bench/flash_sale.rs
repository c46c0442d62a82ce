//! `shequn bench flash-sale`: shequn serves on loopback inside this process and many HTTP/1.1
//! keep-alive clients rush `POST /v1/flash-sales/{id}/orders` for many members, first against
//! our path (the batcher: one transaction per batch of buyers, and the node's memory of
//! sold-out sales) and then against the naive path (one transaction per request: check stock,
//! decrement under the row lock, insert the order), on the same database, each side on a sale
//! of its own. The naive path runs twice on a SQLite file: through sqlx, and on the direct
//! rusqlite writer (`orders::flash_sales::naive`), the fastest driver there; the ratio is against
//! the faster of the two, and the sqlx side is reported beside it (issue 25, item 4).
//!
//! Two workloads ([`Mode`]):
//! - `orders`: stock far beyond what either side can sell, so the rate of orders is measured;
//!   members are walked in a stride, 100 units each at most.
//! - `rush`: a real flash sale (秒杀): `--stock` units (1,000), one per member, and every client
//!   keeps buying for random members out of `--members` (100,000) until the time is up, so
//!   after the first moments nearly every answer is `409 sold_out`. Every answer counts (201
//!   and 409 alike): the figure is answers per second, and the latencies are every answer's.
//!
//! After each side the database is checked ([`Tally::problems`]): the units held by the sale's
//! orders equal its counters (`reserved + sold`), equal the 201s the clients received, are at
//! most the stock (in a rush: exactly the stock, as the rush must sell out), and no member holds
//! more than the limit. Any other status than 201 or 409 stops the benchmark with an error.
//!
//! The client is hyper's connection-level HTTP/1 client: one connection per simulated client,
//! requests sent back to back, so the measurement is shequn's and not a connection pool's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sqlx::Row as _;

use super::{percentile, round2, BenchOptions};
use crate::common::clock::{Clock, SystemClock};
use crate::common::db::Db;
use crate::common::ids::TenantId;
use crate::common::time::to_micros;
use crate::orders::flash_sales::Naive;
use crate::orders::model::HOLDING_STATUSES;
use crate::server::{app, AppState};
use crate::tenants;

/// Members buying in the `orders` workload.
const ORDERS_MEMBERS: usize = 20_000;
/// Units each member may buy in the `orders` workload (the API's largest limit).
const ORDERS_PER_MEMBER_LIMIT: i64 = 100;
/// Units each member may buy in a rush.
const RUSH_PER_MEMBER_LIMIT: i64 = 1;
/// Stock of a rush unless `--stock` says otherwise.
pub const DEFAULT_RUSH_STOCK: i64 = 1000;
/// Members of a rush unless `--members` says otherwise.
pub const DEFAULT_RUSH_MEMBERS: usize = 100_000;
/// Most members a run may create (they are inserted in one transaction).
pub const MAX_MEMBERS: usize = 1_000_000;

/// The workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Stock never runs out: orders per second.
    Orders,
    /// A stock that sells out at once: answers per second, nearly all refusals.
    Rush,
}

/// What `shequn bench flash-sale` was asked for beyond [`BenchOptions`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// Units of a rush (ignored by `orders`).
    pub stock: i64,
    /// Members buying; the workload's default when absent.
    pub members: Option<usize>,
}

/// One side's workload: the sale it sells and how clients pick members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Workload {
    mode: Mode,
    stock: i64,
    per_member_limit: i64,
}

/// One side's outcome.
struct Side {
    /// Orders per second (`orders`) or answers per second (`rush`).
    per_sec: f64,
    /// Latencies (microseconds, sorted) of the answers measured: the 201s (`orders`) or every
    /// answer (`rush`).
    latencies: Vec<u64>,
    granted: u64,
    refused: u64,
    tally: Tally,
    exact: bool,
}

pub async fn run(options: BenchOptions, bench: Options) -> anyhow::Result<serde_json::Value> {
    let member_count = bench.members.unwrap_or(match bench.mode {
        Mode::Orders => ORDERS_MEMBERS,
        Mode::Rush => DEFAULT_RUSH_MEMBERS,
    });
    anyhow::ensure!(
        (1..=MAX_MEMBERS).contains(&member_count),
        "--members must be 1 to {MAX_MEMBERS}"
    );
    let workload = match bench.mode {
        Mode::Orders => Workload {
            mode: Mode::Orders,
            // Far beyond what either side can sell in the run, so throughput is measured; the
            // invariants are checked all the same.
            stock: i64::try_from(member_count)? * ORDERS_PER_MEMBER_LIMIT,
            per_member_limit: ORDERS_PER_MEMBER_LIMIT,
        },
        Mode::Rush => Workload {
            mode: Mode::Rush,
            stock: bench.stock,
            per_member_limit: RUSH_PER_MEMBER_LIMIT,
        },
    };
    anyhow::ensure!(
        (1..=crate::orders::products::MAX_STOCK).contains(&workload.stock),
        "--stock must be 1 to {}",
        crate::orders::products::MAX_STOCK
    );
    let (db, _temp) = super::open_database(&options).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let created = tenants::create(&db, "bench-flash-sale", clock.now()).await?;
    let tenant = created.tenant_id;
    let members: Vec<String> = super::ledger::setup_members(&db, &tenant, member_count)
        .await?
        .iter()
        .filter_map(|a| a.member_id().map(str::to_owned))
        .collect();
    let product = setup_product(&db, &tenant).await?;
    eprintln!(
        "flash-sale bench ({:?}) on {}: {} members, stock {}, {} concurrent HTTP clients, \
         {:?} per side",
        bench.mode,
        db.backend().name(),
        members.len(),
        workload.stock,
        options.concurrency,
        options.duration
    );
    let run = Run {
        db: &db,
        clock: &clock,
        tenant: &tenant,
        product: &product,
        key: &created.api_key,
        members: Arc::new(members),
        options: &options,
        workload,
    };
    let ours = run.side(None).await?;
    ours.report("ours: ", workload.mode);
    let naive_sqlx = run.side(Some(Naive::Sqlx)).await?;
    naive_sqlx.report("naive (sqlx):", workload.mode);
    // The naive algorithm on the fastest driver of the database (issue 25, item 4): rusqlite
    // on a SQLite file, as the ledger's naive side; PostgreSQL has one driver here.
    let naive_rusqlite = if db.has_direct() {
        let side = run.side(Some(Naive::Direct)).await?;
        side.report("naive (rusqlite):", workload.mode);
        Some(side)
    } else {
        None
    };
    let backend = db.backend().name();
    db.close().await;
    let naive = match &naive_rusqlite {
        Some(direct) if direct.per_sec > naive_sqlx.per_sec => direct,
        _ => &naive_sqlx,
    };
    let ratio_to = |naive: &Side| {
        if naive.per_sec > 0.0 {
            round2(ours.per_sec / naive.per_sec)
        } else {
            0.0
        }
    };
    let exact = ours.exact && naive_sqlx.exact && naive_rusqlite.as_ref().is_none_or(|s| s.exact);
    let rusqlite_per_sec = naive_rusqlite.as_ref().map(|s| s.per_sec.round());
    Ok(match workload.mode {
        Mode::Orders => json!({
            "bench": "flash_sale",
            "database": backend,
            "ours_per_sec": ours.per_sec.round(),
            "naive_per_sec": naive.per_sec.round(),
            "ratio": ratio_to(naive),
            "p50_ms": round2(percentile(&ours.latencies, 50.0)),
            "p99_ms": round2(percentile(&ours.latencies, 99.0)),
            "naive_p50_ms": round2(percentile(&naive.latencies, 50.0)),
            "naive_p99_ms": round2(percentile(&naive.latencies, 99.0)),
            "refused": ours.refused,
            "naive_refused": naive.refused,
            "naive_sqlx_per_sec": naive_sqlx.per_sec.round(),
            "ratio_vs_sqlx": ratio_to(&naive_sqlx),
            "naive_rusqlite_per_sec": rusqlite_per_sec,
            "exact": exact,
        }),
        Mode::Rush => json!({
            "bench": "flash_sale_rush",
            "database": backend,
            "answers_per_sec": ours.per_sec.round(),
            "naive_answers_per_sec": naive.per_sec.round(),
            "ratio": ratio_to(naive),
            "p50_ms": round2(percentile(&ours.latencies, 50.0)),
            "p99_ms": round2(percentile(&ours.latencies, 99.0)),
            "stock": workload.stock,
            "sold": ours.tally.units,
            "naive_sqlx_answers_per_sec": naive_sqlx.per_sec.round(),
            "ratio_vs_sqlx": ratio_to(&naive_sqlx),
            "naive_rusqlite_answers_per_sec": rusqlite_per_sec,
            "exact": exact,
        }),
    })
}

impl Side {
    fn report(&self, label: &str, mode: Mode) {
        let unit = match mode {
            Mode::Orders => "orders/s",
            Mode::Rush => "answers/s",
        };
        eprintln!(
            "{label} {:.0} {unit}, p50 {:.2} ms, p99 {:.2} ms, {} granted, {} refused, \
             {} units held (exact: {})",
            self.per_sec,
            percentile(&self.latencies, 50.0),
            percentile(&self.latencies, 99.0),
            self.granted,
            self.refused,
            self.tally.units,
            self.exact
        );
    }
}

pub(super) async fn setup_product(db: &Db, tenant: &TenantId) -> anyhow::Result<String> {
    let now = jiff::Timestamp::now();
    let mut tx = db.begin(now).await?;
    let id = crate::orders::products::insert_plain(
        tx.conn(),
        tenant,
        "BENCH-1",
        "Bench product",
        9900,
        to_micros(now),
    )
    .await?;
    tx.commit().await?;
    Ok(id.to_string())
}

/// What every side of one run shares.
struct Run<'a> {
    db: &'a Db,
    clock: &'a Arc<dyn Clock>,
    tenant: &'a TenantId,
    product: &'a str,
    key: &'a str,
    members: Arc<Vec<String>>,
    options: &'a BenchOptions,
    workload: Workload,
}

/// What one client saw.
#[derive(Default)]
struct ClientTally {
    /// Latencies (microseconds) of the answers measured.
    latencies: Vec<u64>,
    granted: u64,
    refused: u64,
}

impl Run<'_> {
    /// One side: a fresh node (state, batchers, memory) serving on loopback, a sale of its
    /// own, the clients until the time is up, then the check.
    async fn side(&self, naive: Option<Naive>) -> anyhow::Result<Side> {
        let mut state = AppState::new(self.db.clone(), self.clock.clone());
        state.commerce.naive_flash_sales = naive;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app(state)).await;
        });
        let sale = create_sale(addr, self.key, self.product, self.workload).await?;
        let path = Arc::new(format!("/v1/flash-sales/{sale}/orders"));
        let authorization = Arc::new(format!("Bearer {}", self.key));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(self.options.concurrency);
        for client in 0..self.options.concurrency {
            let (stop, members) = (stop.clone(), self.members.clone());
            let (path, authorization) = (path.clone(), authorization.clone());
            let mode = self.workload.mode;
            tasks.push(tokio::spawn(async move {
                let mut sender = connect(addr).await?;
                let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
                let mut tally = ClientTally::default();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let index = match mode {
                        Mode::Orders => (client + n * STRIDE) % members.len(),
                        Mode::Rush => rng.random_range(0..members.len()),
                    };
                    n += 1;
                    let body = format!(r#"{{"member_id":"{}","qty":1}}"#, members[index]);
                    let request = Request::post(path.as_str())
                        .header("host", "127.0.0.1")
                        .header("authorization", authorization.as_str())
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))?;
                    let sent = Instant::now();
                    let response = sender.send_request(request).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    if status == hyper::StatusCode::CREATED {
                        tally.granted += 1;
                        tally.latencies.push(micros);
                    } else if status == hyper::StatusCode::CONFLICT {
                        tally.refused += 1;
                        if mode == Mode::Rush {
                            tally.latencies.push(micros);
                        }
                    } else {
                        anyhow::bail!("unexpected status {status}");
                    }
                }
                Ok::<_, anyhow::Error>(tally)
            }));
        }
        tokio::time::sleep(self.options.duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        let (mut granted, mut refused) = (0, 0);
        for task in tasks {
            let tally = task.await.context("client panicked")??;
            latencies.extend(tally.latencies);
            granted += tally.granted;
            refused += tally.refused;
        }
        let elapsed = started.elapsed().as_secs_f64();
        server.abort();
        latencies.sort_unstable();
        let tally = Tally::read(self.db, self.tenant, &sale, self.workload, granted).await?;
        let problems = tally.problems();
        for problem in &problems {
            eprintln!(
                "NOT EXACT ({}): {problem}",
                match naive {
                    None => "ours",
                    Some(Naive::Sqlx) => "naive (sqlx)",
                    Some(Naive::Direct) => "naive (rusqlite)",
                }
            );
        }
        let counted = match self.workload.mode {
            Mode::Orders => granted,
            Mode::Rush => granted + refused,
        };
        Ok(Side {
            per_sec: counted as f64 / elapsed,
            latencies,
            granted,
            refused,
            tally,
            exact: problems.is_empty(),
        })
    }
}

/// Spread consecutive requests of one client over the members (`orders`).
const STRIDE: usize = 7919;

pub(super) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// POST `body` as JSON to `path` on a connection of its own; the answer's JSON, which must come
/// with `expect`.
pub(super) async fn post_json(
    addr: std::net::SocketAddr,
    authorization: &str,
    path: &str,
    body: serde_json::Value,
    expect: hyper::StatusCode,
) -> anyhow::Result<serde_json::Value> {
    let mut sender = connect(addr).await?;
    let request = Request::post(path)
        .header("host", "127.0.0.1")
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == expect,
        "POST {path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes)?)
}

pub(super) async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn create_sale(
    addr: std::net::SocketAddr,
    key: &str,
    product: &str,
    workload: Workload,
) -> anyhow::Result<String> {
    let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let body = json!({"product_id": product, "price": 990, "stock": workload.stock,
                      "per_member_limit": workload.per_member_limit,
                      "ends_at": ends.to_string(), "payment_timeout_secs": 3600});
    let sale = post_json(
        addr,
        &format!("Bearer {key}"),
        "/v1/flash-sales",
        body,
        hyper::StatusCode::CREATED,
    )
    .await?;
    sale["id"]
        .as_str()
        .map(str::to_owned)
        .context("flash sale without id")
}

/// A side's sale after the run, as the database and the clients saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    workload: Workload,
    /// Units held by the sale's unpaid and paid orders.
    units: i64,
    /// The sale's `reserved + sold`.
    counted: i64,
    /// The most units one member holds in the sale.
    worst_member: i64,
    /// 201s the clients received (one unit each).
    granted: u64,
}

impl Tally {
    async fn read(
        db: &Db,
        tenant: &TenantId,
        sale: &str,
        workload: Workload,
        granted: u64,
    ) -> anyhow::Result<Tally> {
        let mut conn = db.read().acquire().await?;
        let units: i64 = sqlx::query_scalar(&format!(
            "SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) FROM customer_order \
             WHERE tenant_id = $1 AND campaign_id = $2 AND status IN {HOLDING_STATUSES}"
        ))
        .bind(tenant.as_str())
        .bind(sale)
        .fetch_one(&mut *conn)
        .await?;
        let counters =
            sqlx::query("SELECT reserved, sold FROM flash_sale WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(sale)
                .fetch_one(&mut *conn)
                .await?;
        let counted =
            counters.try_get::<i64, _>("reserved")? + counters.try_get::<i64, _>("sold")?;
        let worst: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MAX(held) FROM (SELECT CAST(SUM(qty) AS BIGINT) AS held FROM customer_order \
             WHERE tenant_id = $1 AND campaign_id = $2 AND status IN {HOLDING_STATUSES} \
             GROUP BY member_id) per_member"
        ))
        .bind(tenant.as_str())
        .bind(sale)
        .fetch_one(&mut *conn)
        .await?;
        Ok(Tally {
            workload,
            units,
            counted,
            worst_member: worst.unwrap_or(0),
            granted,
        })
    }

    /// Everything wrong with the side's outcome; empty when it was exact.
    fn problems(&self) -> Vec<String> {
        let Tally {
            workload,
            units,
            counted,
            worst_member,
            granted,
        } = *self;
        let mut problems = Vec::new();
        if units > workload.stock {
            problems.push(format!(
                "oversold: {units} units in orders, stock {}",
                workload.stock
            ));
        }
        if workload.mode == Mode::Rush && units < workload.stock {
            problems.push(format!(
                "the rush did not sell out: {units} units in orders, stock {}",
                workload.stock
            ));
        }
        if units != counted {
            problems.push(format!(
                "{units} units in orders, but the sale's counters say {counted}"
            ));
        }
        if i64::try_from(granted).ok() != Some(units) {
            problems.push(format!(
                "{granted} orders answered 201, {units} units in orders"
            ));
        }
        if worst_member > workload.per_member_limit {
            problems.push(format!(
                "a member holds {worst_member} units, the limit is {}",
                workload.per_member_limit
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 51.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    const RUSH: Workload = Workload {
        mode: Mode::Rush,
        stock: 1000,
        per_member_limit: 1,
    };

    fn sold_out_exactly() -> Tally {
        Tally {
            workload: RUSH,
            units: 1000,
            counted: 1000,
            worst_member: 1,
            granted: 1000,
        }
    }

    #[test]
    fn a_rush_that_sold_its_stock_exactly_passes() {
        assert_eq!(sold_out_exactly().problems(), Vec::<String>::new());
    }

    #[test]
    fn every_way_a_rush_can_go_wrong_is_caught() {
        let exact = sold_out_exactly();
        let broken = [
            (
                "oversold",
                Tally {
                    units: 1001,
                    counted: 1001,
                    granted: 1001,
                    ..exact
                },
            ),
            (
                "did not sell out",
                Tally {
                    units: 999,
                    counted: 999,
                    granted: 999,
                    ..exact
                },
            ),
            (
                "counters",
                Tally {
                    counted: 999,
                    ..exact
                },
            ),
            (
                "answered 201",
                Tally {
                    granted: 1001,
                    ..exact
                },
            ),
            (
                "limit",
                Tally {
                    worst_member: 2,
                    ..exact
                },
            ),
        ];
        for (what, tally) in broken {
            let problems = tally.problems();
            assert_eq!(problems.len(), 1, "{what}: {problems:?}");
            let wanted = match what {
                "counters" => "counters say",
                "limit" => "the limit is",
                other => other,
            };
            assert!(problems[0].contains(wanted), "{what}: {problems:?}");
        }
    }

    #[test]
    fn the_orders_workload_may_stop_before_its_stock() {
        let orders = Tally {
            workload: Workload {
                mode: Mode::Orders,
                stock: 2_000_000,
                per_member_limit: 100,
            },
            units: 40_000,
            counted: 40_000,
            worst_member: 3,
            granted: 40_000,
        };
        assert_eq!(orders.problems(), Vec::<String>::new());
        let oversold = Tally {
            units: 2_000_001,
            counted: 2_000_001,
            granted: 2_000_001,
            ..orders
        };
        assert_eq!(oversold.problems().len(), 1);
    }
}
