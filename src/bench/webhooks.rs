//! `shequn bench webhooks`: outbox events delivered to endpoints on a loopback receiver, first
//! by the worker as it runs (fan-out in multi-row inserts, batches of 256 claimed in one
//! statement, up to 32 endpoints attempted at once, each batch's outcomes in one
//! transaction), then the naive way on the same database and client: one delivery claimed,
//! attempted and recorded at a time. Exactness: the receiver must get every (endpoint, event)
//! exactly once on each side, and every delivery row must be `succeeded`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::BenchOptions;
use crate::common::clock::SystemClock;
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::engagement::webhooks::{run_due_deliveries, Config};
use crate::{tenants, AppState};

/// What the benchmark is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Events per side.
    pub events: usize,
    /// Endpoints (each subscribed to every event).
    pub endpoints: usize,
}

type Seen = Arc<Mutex<(u64, HashSet<(String, String)>)>>;

async fn receive(
    State(seen): State<Seen>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
) -> &'static str {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.0 += 1;
    seen.1.insert((endpoint, id));
    "ok"
}

async fn emit_events(state: &AppState, tenant: &TenantId, n: usize) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut tx = state.begin().await?;
        for i in chunk {
            tx.emit(NewEvent::new(
                tenant,
                "member.tagged",
                None,
                json!({ "member_id": format!("bench-{i}"), "added": ["bench"], "removed": [] }),
            ));
        }
        tx.commit().await?;
    }
    Ok(())
}

async fn side(
    state: &AppState,
    tenant: &TenantId,
    seen: &Seen,
    options: Options,
) -> anyhow::Result<Value> {
    {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen = (0, HashSet::new());
    }
    emit_events(state, tenant, options.events).await?;
    let expected = (options.events * options.endpoints) as u64;
    let started = Instant::now();
    let mut delivered = 0u64;
    for _ in 0..1000 {
        let pass = run_due_deliveries(state).await?;
        delivered += pass.succeeded as u64;
        if delivered >= expected || pass.attempted == 0 && pass.created == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (requests, unique) = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        (seen.0, seen.1.len() as u64)
    };
    Ok(json!({
        "deliveries": delivered,
        "requests_received": requests,
        "unique_received": unique,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "per_sec": (delivered as f64 / seconds).round(),
        "exact": requests == expected && unique == expected && delivered == expected,
    }))
}

pub async fn run(bench: BenchOptions, options: Options) -> anyhow::Result<Value> {
    let (db, _temp) = super::open_database(&bench).await?;
    let mut state = AppState::new(db.clone(), Arc::new(SystemClock));
    let tenant = tenants::create(&db, "bench-webhooks", Timestamp::now())
        .await?
        .tenant_id;

    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route("/{endpoint}", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let now = crate::common::time::to_micros(Timestamp::now());
    let cursor: i64 = sqlx::query_scalar("SELECT event_seq FROM tenant WHERE id = $1")
        .bind(tenant.as_str())
        .fetch_one(db.read())
        .await?;
    for i in 0..options.endpoints {
        sqlx::query(
            "INSERT INTO webhook_endpoint (tenant_id, id, url, description, event_types, status, \
             secret, event_cursor, created_at, updated_at) \
             VALUES ($1, $2, $3, 'bench', '[\"*\"]', 'enabled', $4, $5, $6, $6)",
        )
        .bind(tenant.as_str())
        .bind(crate::engagement::webhooks::WebhookEndpointId::generate().as_str())
        .bind(format!("http://{address}/e{i}"))
        .bind(crate::engagement::webhooks::signing::new_secret())
        .bind(cursor)
        .bind(now)
        .execute(&mut *db.write_conn().await?)
        .await?;
    }
    eprintln!(
        "webhooks bench on {}: {} events x {} endpoints per side",
        db.backend().name(),
        options.events,
        options.endpoints
    );
    state.webhooks = Arc::new(Config::default());
    let ours = side(&state, &tenant, &seen, options).await?;
    eprintln!("ours: {ours}");
    state.webhooks = Arc::new(Config::default().naive());
    let naive = side(&state, &tenant, &seen, options).await?;
    eprintln!("naive: {naive}");
    server.abort();
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_delivery WHERE tenant_id = $1 AND status <> 'succeeded'",
    )
    .bind(tenant.as_str())
    .fetch_one(db.read())
    .await?;
    let ratio =
        ours["per_sec"].as_f64().unwrap_or(0.0) / naive["per_sec"].as_f64().unwrap_or(1.0).max(1.0);
    Ok(json!({
        "bench": "webhooks",
        "backend": db.backend().name(),
        "events_per_side": options.events,
        "endpoints": options.endpoints,
        "ours": ours,
        "naive": naive,
        "ratio": (ratio * 100.0).round() / 100.0,
        "exact": ours["exact"] == true && naive["exact"] == true && pending == 0,
    }))
}
