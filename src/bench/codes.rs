//! `shequn bench codes`: one item, one code over HTTP on loopback.
//!
//! 1. Generation: `POST /v1/code-batches` with `--count` codes (a million by default): codes
//!    drawn in Rust and written 50,000 to a statement, against the naive way on the same
//!    database in the same run: the same codes written one `INSERT` per code in one
//!    transaction (`--naive-count` of them, a hundred thousand by default, as the naive way
//!    would take minutes for a million; both are reported per second).
//! 2. Export: `GET /v1/code-batches/{id}/codes.csv` read to the end as a printer would.
//!    Exactness: `count + 1` lines, every code unique, each with a valid check character.
//! 3. Scans: `--concurrency` keep-alive clients post `POST /v1/scans` for `--seconds`, each a
//!    random code of the batch and a random member of 1,000. Exactness: the points paid equal
//!    the batch's points times the codes scanned, the scan counts add up to the scans answered,
//!    and the ledger balances.
//!
//! The last line is one JSON object.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};

use super::{round2, BenchOptions};
use crate::common::clock::SystemClock;
use crate::common::ids::TenantId;
use crate::common::time::to_micros;
use crate::{codes, server, tenants, AppState};

/// What the benchmark is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Codes in the batch generated and exported.
    pub count: usize,
    /// Codes written the naive way.
    pub naive_count: usize,
}

/// Points each code pays its first member.
const POINTS: i64 = 10;
/// Members scanning.
const MEMBERS: usize = 1000;

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

fn request(
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
        ))?)
}

pub async fn run(bench: BenchOptions, options: Options) -> anyhow::Result<Value> {
    let (db, _temp) = super::open_database(&bench).await?;
    let state = AppState::new(db.clone(), Arc::new(SystemClock));
    let created = tenants::create(&db, "bench-codes", jiff::Timestamp::now()).await?;
    let tenant = created.tenant_id.clone();
    let key = created.api_key.clone();
    let members: Vec<String> = super::ledger::setup_members(&db, &tenant, MEMBERS)
        .await?
        .iter()
        .filter_map(|a| a.member_id().map(str::to_owned))
        .collect();
    let product = setup_product(&db, &tenant).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = server::app(state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    eprintln!(
        "codes bench on {}: {} codes generated and exported, {} the naive way, {} scan clients \
         for {:?}",
        db.backend().name(),
        options.count,
        options.naive_count,
        bench.concurrency,
        bench.duration
    );

    // 1. Generation over HTTP.
    let mut sender = connect(addr).await?;
    let started = Instant::now();
    let body = json!({"product_id": product, "count": options.count, "points_per_scan": POINTS});
    let response = sender
        .send_request(request("POST", "/v1/code-batches", &key, Some(body))?)
        .await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == hyper::StatusCode::CREATED,
        "creating the batch: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    let generate_secs = started.elapsed().as_secs_f64();
    let batch: Value = serde_json::from_slice(&bytes)?;
    let batch_id = batch["id"].as_str().context("batch without id")?.to_owned();
    eprintln!("generated {} codes in {generate_secs:.2} s", options.count);

    // The naive generation: the same work, one INSERT per code.
    let naive_secs = naive_generation(&state, &tenant, &product, options.naive_count).await?;
    eprintln!("naive: {} codes in {naive_secs:.2} s", options.naive_count);

    // 2. Export over HTTP.
    let started = Instant::now();
    let response = sender
        .send_request(request(
            "GET",
            &format!("/v1/code-batches/{batch_id}/codes.csv"),
            &key,
            None,
        )?)
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "export: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut pending = Vec::new();
    let mut lines = 0usize;
    let mut codes_seen: HashSet<String> = HashSet::with_capacity(options.count);
    let mut all: Vec<String> = Vec::with_capacity(options.count);
    let mut well_formed = true;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        // Whole lines of what has arrived; the unfinished last line waits for the next frame.
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        for line in pending[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            lines += 1;
            if lines == 1 {
                continue;
            }
            let code = line.split(|&b| b == b',').next().unwrap_or_default();
            let code = String::from_utf8_lossy(code).into_owned();
            well_formed &= codes::code::is_code(&code);
            if codes_seen.insert(code.clone()) {
                all.push(code);
            }
        }
        pending.drain(..complete);
    }
    let export_secs = started.elapsed().as_secs_f64();
    let export_exact = lines == options.count + 1 && all.len() == options.count && well_formed;
    eprintln!("exported {lines} lines in {export_secs:.2} s (exact: {export_exact})");
    drop(codes_seen);

    // 3. Scans over HTTP.
    let codes = Arc::new(all);
    let members = Arc::new(members);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bench.concurrency);
    for client in 0..bench.concurrency {
        let (codes, members, stop, key) =
            (codes.clone(), members.clone(), stop.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
            let (mut answered, mut points, mut failed) = (0u64, 0i64, 0u64);
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let code = &codes[rng.random_range(0..codes.len())];
                let member = &members[rng.random_range(0..members.len())];
                let body = json!({"code": code, "member_id": member, "city": "上海"});
                let sent = Instant::now();
                let response = sender
                    .send_request(request("POST", "/v1/scans", &key, Some(body))?)
                    .await?;
                let status = response.status();
                let bytes = response.into_body().collect().await?.to_bytes();
                latencies.push(sent.elapsed().as_micros() as u64);
                if status == hyper::StatusCode::OK {
                    answered += 1;
                    let answer: Value = serde_json::from_slice(&bytes)?;
                    points += answer["points_awarded"].as_i64().unwrap_or(0);
                } else {
                    failed += 1;
                }
            }
            anyhow::Ok((answered, points, failed, latencies))
        }));
    }
    tokio::time::sleep(bench.duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut points_answered, mut failed) = (0u64, 0i64, 0u64);
    let mut latencies = Vec::new();
    for task in tasks {
        let (a, p, f, l) = task.await??;
        answered += a;
        points_answered += p;
        failed += f;
        latencies.extend(l);
    }
    let scan_secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    server.abort();

    let (scanned, scans, points_logged) = {
        let mut conn = db.read().acquire().await?;
        codes::store::totals(&mut conn, &tenant, &batch_id).await?
    };
    let counted: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(scan_count), 0) AS BIGINT) FROM item_code \
         WHERE tenant_id = $1 AND batch_id = $2",
    )
    .bind(tenant.as_str())
    .bind(batch_id.as_str())
    .fetch_one(db.read())
    .await?;
    let verified = crate::ledger::verify::verify(db.read(), &tenant).await?;
    let scans_exact = failed == 0
        && scans as u64 == answered
        && counted == scans
        && points_logged == scanned * POINTS
        && points_answered == points_logged
        && verified.ok;
    let backend = db.backend().name();
    db.close().await;
    let generate_per_sec = options.count as f64 / generate_secs;
    let naive_per_sec = options.naive_count as f64 / naive_secs;
    Ok(json!({
        "bench": "codes",
        "database": backend,
        "codes": options.count,
        "generate_secs": round2(generate_secs),
        "generate_per_sec": generate_per_sec.round(),
        "naive_codes": options.naive_count,
        "naive_generate_secs": round2(naive_secs),
        "naive_generate_per_sec": naive_per_sec.round(),
        "generate_ratio": round2(generate_per_sec / naive_per_sec.max(1.0)),
        "export_secs": round2(export_secs),
        "export_lines": lines,
        "scan_clients": bench.concurrency,
        "scans_per_sec": (answered as f64 / scan_secs).round(),
        "scans": answered,
        "codes_scanned": scanned,
        "scan_p50_ms": round2(super::percentile(&latencies, 50.0)),
        "scan_p99_ms": round2(super::percentile(&latencies, 99.0)),
        "exact": export_exact && scans_exact,
    }))
}

/// The naive generation: `count` codes drawn the same way, one INSERT each in one transaction.
async fn naive_generation(
    state: &AppState,
    tenant: &TenantId,
    product: &str,
    count: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let codes = codes::generate(count)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let id = codes::CodeBatchId::generate();
    let mut tx = state.begin().await?;
    let at = to_micros(tx.now());
    let insert = async {
        codes::store::insert_batch(
            tx.conn(),
            tenant,
            id.as_str(),
            product,
            count as i64,
            POINTS,
            None,
            at,
        )
        .await?;
        codes::store::insert_codes_one_by_one(tx.conn(), tenant, id.as_str(), &codes, 1).await
    };
    insert.await.map_err(|e| anyhow::anyhow!(e.to_string()))?;
    tx.commit().await?;
    Ok(started.elapsed().as_secs_f64())
}

async fn setup_product(db: &crate::common::db::Db, tenant: &TenantId) -> anyhow::Result<String> {
    let now = jiff::Timestamp::now();
    let mut tx = db.begin(now).await?;
    let id = crate::orders::products::insert_plain(
        tx.conn(),
        tenant,
        "BENCH-CODES",
        "Bench soy milk",
        1200,
        to_micros(now),
    )
    .await?;
    tx.commit().await?;
    Ok(id.to_string())
}
