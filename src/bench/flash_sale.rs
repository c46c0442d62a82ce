//! `shequn bench flash-sale`: shequn serves on loopback inside this process and many HTTP/1.1
//! keep-alive clients rush `POST /v1/flash-sales/{id}/orders` for many members, first against
//! our path (the batcher: one transaction per batch of buyers) and then against the naive path
//! (one transaction per request: check stock, decrement under the row lock, insert the order),
//! on the same database. After each side it checks that nothing was oversold (orders held ≤
//! stock, and the sale's counters equal its orders) and that no member holds more than the
//! per-member limit.
//!
//! The client is hyper's connection-level HTTP/1 client: one connection per simulated client,
//! requests sent back to back, so the measurement is shequn's and not a connection pool's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use sqlx::Row as _;

use super::{percentile, BenchOptions};
use crate::common::clock::{Clock, SystemClock};
use crate::common::db::Db;
use crate::common::ids::{ProductId, TenantId};
use crate::common::time::to_micros;
use crate::orders::model::HOLDING_STATUSES;
use crate::server::{app, AppState};
use crate::tenants;

/// Members buying.
const MEMBERS: usize = 20_000;
/// Units each member may buy (the API's largest limit).
const PER_MEMBER_LIMIT: i64 = 100;

/// One side's outcome.
struct Side {
    per_sec: f64,
    /// Request latencies of successful orders, microseconds, sorted.
    latencies: Vec<u64>,
    refused: u64,
    exact: bool,
}

pub async fn run(options: BenchOptions) -> anyhow::Result<serde_json::Value> {
    let (db, _temp) = super::open_database(&options).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let created = tenants::create(&db, "bench-flash-sale", clock.now()).await?;
    let tenant = created.tenant_id;
    let members: Vec<String> = super::ledger::setup_members(&db, &tenant, MEMBERS)
        .await?
        .iter()
        .filter_map(|a| a.member_id().map(str::to_owned))
        .collect();
    let product = setup_product(&db, &tenant).await?;
    eprintln!(
        "flash-sale bench on {}: {} members, {} concurrent HTTP clients, {:?} per side",
        db.backend().name(),
        members.len(),
        options.concurrency,
        options.duration
    );

    let ours = side(
        &db,
        &clock,
        &tenant,
        &product,
        &created.api_key,
        &members,
        &options,
        false,
    )
    .await?;
    ours.report("ours: ");
    let naive = side(
        &db,
        &clock,
        &tenant,
        &product,
        &created.api_key,
        &members,
        &options,
        true,
    )
    .await?;
    naive.report("naive:");
    let backend = db.backend().name();
    db.close().await;
    Ok(json!({
        "bench": "flash_sale",
        "database": backend,
        "ours_per_sec": ours.per_sec.round(),
        "naive_per_sec": naive.per_sec.round(),
        "ratio": if naive.per_sec > 0.0 {
            (ours.per_sec / naive.per_sec * 100.0).round() / 100.0
        } else {
            0.0
        },
        "p50_ms": round2(percentile(&ours.latencies, 50.0)),
        "p99_ms": round2(percentile(&ours.latencies, 99.0)),
        "naive_p50_ms": round2(percentile(&naive.latencies, 50.0)),
        "naive_p99_ms": round2(percentile(&naive.latencies, 99.0)),
        "exact": ours.exact && naive.exact,
    }))
}

impl Side {
    fn report(&self, label: &str) {
        eprintln!(
            "{label} {:.0} orders/s, p50 {:.2} ms, p99 {:.2} ms, {} refused (exact: {})",
            self.per_sec,
            percentile(&self.latencies, 50.0),
            percentile(&self.latencies, 99.0),
            self.refused,
            self.exact
        );
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `p`th percentile of sorted microsecond latencies, in milliseconds.
async fn setup_product(db: &Db, tenant: &TenantId) -> anyhow::Result<String> {
    let id = ProductId::generate().to_string();
    let now = to_micros(jiff::Timestamp::now());
    let mut tx = db.begin(jiff::Timestamp::now()).await?;
    sqlx::query(
        "INSERT INTO product (tenant_id, id, sku, name, price, stock, created_at, updated_at) \
         VALUES ($1, $2, 'BENCH-1', 'Bench product', 9900, 0, $3, $3)",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn side(
    db: &Db,
    clock: &Arc<dyn Clock>,
    tenant: &TenantId,
    product: &str,
    key: &str,
    members: &[String],
    options: &BenchOptions,
    naive: bool,
) -> anyhow::Result<Side> {
    let mut state = AppState::new(db.clone(), clock.clone());
    state.commerce.naive_flash_sales = naive;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app(state)).await;
    });
    // Stock far beyond what either side can sell in the run, so throughput is measured; the
    // invariants are checked all the same.
    let stock = (members.len() as i64) * PER_MEMBER_LIMIT;
    let sale = create_sale(addr, key, product, stock).await?;
    let path = format!("/v1/flash-sales/{sale}/orders");
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let members = Arc::new(members.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.concurrency);
    for client in 0..options.concurrency {
        let (stop, refused, members) = (stop.clone(), refused.clone(), members.clone());
        let (path, key) = (path.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut latencies = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let member = &members[(client + n * options_stride()) % members.len()];
                n += 1;
                let body = format!(r#"{{"member_id":"{member}","qty":1}}"#);
                let request = Request::post(path.as_str())
                    .header("host", "127.0.0.1")
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if status == hyper::StatusCode::CREATED {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else if status == hyper::StatusCode::CONFLICT {
                    refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    anyhow::bail!("unexpected status {status}");
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("client panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    latencies.sort_unstable();
    let exact = check(db, tenant, &sale, stock).await?;
    Ok(Side {
        per_sec: latencies.len() as f64 / elapsed,
        latencies,
        refused: refused.load(Ordering::Relaxed),
        exact,
    })
}

/// Spread consecutive requests of one client over the members.
fn options_stride() -> usize {
    7919
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Sender> {
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
    stock: i64,
) -> anyhow::Result<String> {
    let mut sender = connect(addr).await?;
    let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let body = json!({"product_id": product, "price": 990, "stock": stock,
                      "per_member_limit": PER_MEMBER_LIMIT, "ends_at": ends.to_string(),
                      "payment_timeout_secs": 3600});
    let request = Request::post("/v1/flash-sales")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == hyper::StatusCode::CREATED,
        "creating the flash sale: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    let sale: serde_json::Value = serde_json::from_slice(&bytes)?;
    sale["id"]
        .as_str()
        .map(str::to_owned)
        .context("flash sale without id")
}

/// No oversell (units held by orders ≤ stock and equal to the sale's reserved + sold) and no
/// member above the limit.
async fn check(db: &Db, tenant: &TenantId, sale: &str, stock: i64) -> anyhow::Result<bool> {
    let mut conn = db.read().acquire().await?;
    let row = sqlx::query(&format!(
        "SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) AS units FROM customer_order \
         WHERE tenant_id = $1 AND campaign_id = $2 AND status IN {HOLDING_STATUSES}"
    ))
    .bind(tenant.as_str())
    .bind(sale)
    .fetch_one(&mut *conn)
    .await?;
    let units: i64 = row.try_get("units")?;
    let counters =
        sqlx::query("SELECT reserved, sold FROM flash_sale WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(sale)
            .fetch_one(&mut *conn)
            .await?;
    let counted: i64 =
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
    let exact = units <= stock && units == counted && worst.unwrap_or(0) <= PER_MEMBER_LIMIT;
    if !exact {
        eprintln!(
            "NOT EXACT: {units} units in orders, counters say {counted}, stock {stock}, \
             worst member {worst:?}"
        );
    }
    Ok(exact)
}

#[cfg(test)]
mod tests {
    use crate::bench::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 51.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
