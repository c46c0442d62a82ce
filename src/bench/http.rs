//! `shequn bench http`: the per-request cost of shequn's HTTP stack against a bare axum echo,
//! measured in one run by the same clients (issue 25, third item).
//!
//! Four targets, each served on loopback inside this process by the connection loop of `shequn
//! serve` ([`serve_connections`]; shequn with its rate limiters on) and driven for
//! `--seconds` by `--concurrency` HTTP/1.1 keep-alive clients (hyper's connection-level
//! client, one connection each, requests back to back; the flash-sale benchmark's client):
//!
//! - `echo`: a bare axum router that answers `POST /echo` with the JSON it was sent — no layer,
//!   no state, no database: the floor of what axum, hyper, loopback and these clients cost;
//! - `healthz`: shequn's whole stack, `GET /healthz` (one `SELECT 1` on the database);
//! - `read`: an authenticated trivial read, `GET /v1/members?limit=1` on a tenant of one member
//!   (key look-up, every layer, one indexed read, JSON);
//! - `refusal`: an authenticated `POST /v1/flash-sales/{id}/orders` on a sold-out sale, answered
//!   409 from the node's memory (what a rush is made of after its first moments).
//!
//! Every answer must have the target's expected status; anything else stops the benchmark.
//! The baseline (`echo`) runs in the same process, on the same runtime and with the same
//! clients as shequn, so `read_vs_echo` and `refusal_vs_echo` compare the stacks and not the
//! machine's mood. The clients share the two cores with the servers, which narrows the gap
//! against `wrk` (C, its own threads); docs/benchmarks.md gives both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::flash_sale::{connect, post_json};
use super::{percentile, round2, BenchOptions};
use crate::common::clock::{Clock, SystemClock};
use crate::common::rate_limit::{RateLimitConfig, RateLimits};
use crate::server::{app, serve_connections, AppState, Timeouts};
use crate::tenants;

/// A per-key and per-IP rate (requests per second) far above what the clients send.
const UNREACHED_RATE: u32 = 1_000_000_000;

/// One target's measurement.
struct Measured {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One kind of request a target's clients send back to back.
#[derive(Clone)]
struct Target {
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Option<Bytes>,
    expect: StatusCode,
}

pub async fn run(options: BenchOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(options.concurrency >= 1, "--concurrency must be at least 1");
    let (db, _temp) = super::open_database(&options).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let created = tenants::create(&db, "bench-http", clock.now()).await?;
    let member = super::ledger::setup_members(&db, &created.tenant_id, 1)
        .await?
        .iter()
        .find_map(|a| a.member_id().map(str::to_owned))
        .context("no member")?;
    let backend = db.backend().name();
    eprintln!(
        "http bench on {backend}: {} concurrent HTTP clients, {:?} per target",
        options.concurrency, options.duration
    );

    let echo = serve(axum::Router::new().route(
        "/echo",
        post(|axum::Json(body): axum::Json<serde_json::Value>| async move { axum::Json(body) }),
    ))
    .await?;
    let mut state = AppState::new(db.clone(), clock.clone());
    // The limiters of `shequn serve` run on every request, with rates no client here reaches.
    state.limits = Arc::new(RateLimits::new(&RateLimitConfig {
        per_key: UNREACHED_RATE,
        per_ip: UNREACHED_RATE,
        ..RateLimitConfig::defaults()
    }));
    let shequn = serve(app(state)).await?;
    let authorization = format!("Bearer {}", created.api_key);
    let sale = sold_out_sale(shequn, &authorization, &db, &created.tenant_id, &member).await?;
    let refusal_body = Bytes::from(format!(r#"{{"member_id":"{member}","qty":1}}"#));

    let targets = [
        (
            "echo",
            echo,
            Target {
                method: Method::POST,
                path: "/echo".to_owned(),
                authorization: None,
                body: Some(refusal_body.clone()),
                expect: StatusCode::OK,
            },
        ),
        (
            "healthz",
            shequn,
            Target {
                method: Method::GET,
                path: "/healthz".to_owned(),
                authorization: None,
                body: None,
                expect: StatusCode::OK,
            },
        ),
        (
            "read",
            shequn,
            Target {
                method: Method::GET,
                path: "/v1/members?limit=1".to_owned(),
                authorization: Some(authorization.clone()),
                body: None,
                expect: StatusCode::OK,
            },
        ),
        (
            "refusal",
            shequn,
            Target {
                method: Method::POST,
                path: format!("/v1/flash-sales/{sale}/orders"),
                authorization: Some(authorization.clone()),
                body: Some(refusal_body),
                expect: StatusCode::CONFLICT,
            },
        ),
    ];
    let mut results = serde_json::Map::new();
    results.insert("bench".into(), json!("http"));
    results.insert("database".into(), json!(backend));
    results.insert("concurrency".into(), json!(options.concurrency));
    let mut echo_rate = 0.0;
    for (name, addr, target) in targets {
        let measured = drive(addr, &target, &options)
            .await
            .with_context(|| format!("target {name}"))?;
        eprintln!(
            "{name:>8}: {:>9.0} answers/s  p50 {:.2} ms  p99 {:.2} ms",
            measured.per_sec, measured.p50_ms, measured.p99_ms
        );
        if name == "echo" {
            echo_rate = measured.per_sec;
        }
        results.insert(format!("{name}_per_sec"), json!(measured.per_sec.round()));
        results.insert(format!("{name}_p50_ms"), json!(round2(measured.p50_ms)));
        results.insert(format!("{name}_p99_ms"), json!(round2(measured.p99_ms)));
        if name != "echo" {
            let ratio = if echo_rate > 0.0 {
                measured.per_sec / echo_rate
            } else {
                0.0
            };
            results.insert(format!("{name}_vs_echo"), json!(round2(ratio)));
        }
    }
    db.close().await;
    // Every answer had its expected status, or `drive` stopped with an error.
    results.insert("all_ok".into(), json!(true));
    Ok(serde_json::Value::Object(results))
}

/// Serve `router` on a loopback port of its own, the way `shequn serve` serves (its connection
/// loop and timeouts); the address.
async fn serve(router: axum::Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve_connections(
        listener,
        router,
        Timeouts::default(),
        std::future::pending(),
    ));
    Ok(addr)
}

/// A flash sale of one unit, bought by `member`, so that every later purchase is refused
/// `sold_out` (from the node's memory once the batch has seen it sold out).
async fn sold_out_sale(
    addr: std::net::SocketAddr,
    authorization: &str,
    db: &crate::common::db::Db,
    tenant: &crate::common::ids::TenantId,
    member: &str,
) -> anyhow::Result<String> {
    let product = super::flash_sale::setup_product(db, tenant).await?;
    let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let sale = post_json(
        addr,
        authorization,
        "/v1/flash-sales",
        json!({"product_id": product, "price": 990, "stock": 1, "per_member_limit": 1,
               "ends_at": ends.to_string(), "payment_timeout_secs": 3600}),
        StatusCode::CREATED,
    )
    .await?;
    let sale = sale["id"].as_str().context("sale without id")?.to_owned();
    let path = format!("/v1/flash-sales/{sale}/orders");
    let body = json!({"member_id": member, "qty": 1});
    post_json(
        addr,
        authorization,
        &path,
        body.clone(),
        StatusCode::CREATED,
    )
    .await?;
    // The batch that refuses this one tells the node's memory the sale is sold out.
    post_json(addr, authorization, &path, body, StatusCode::CONFLICT).await?;
    Ok(sale)
}

/// Drive one target with the clients for the run's time.
async fn drive(
    addr: std::net::SocketAddr,
    target: &Target,
    options: &BenchOptions,
) -> anyhow::Result<Measured> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        let (stop, target) = (stop.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut request = Request::builder()
                    .method(target.method.clone())
                    .uri(target.path.as_str())
                    .header("host", "127.0.0.1");
                if let Some(authorization) = &target.authorization {
                    request = request.header("authorization", authorization.as_str());
                }
                let body = match &target.body {
                    Some(body) => {
                        request = request.header("content-type", "application/json");
                        body.clone()
                    }
                    None => Bytes::new(),
                };
                let sent = Instant::now();
                let response = sender.send_request(request.body(Full::new(body))?).await?;
                let status = response.status();
                let bytes = response.into_body().collect().await?.to_bytes();
                anyhow::ensure!(
                    status == target.expect,
                    "{} {}: {status} {}",
                    target.method,
                    target.path,
                    String::from_utf8_lossy(&bytes)
                );
                latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("client panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Measured {
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    })
}
