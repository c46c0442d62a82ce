//! `shequn bench automations`: the time from a member's change to its automation's message.
//!
//! An automation on `member.created` sends a marketing message to every new member. Members
//! are created one at a time over HTTP on loopback (spaced by a random 20–60 ms, so each is
//! measured on its own and not in a batch), while the automation worker runs as it does in
//! `serve`. The latency of a member is its message row's `created_at` minus its member row's
//! `created_at`, both written by the same clock: from the transaction that created the member
//! to the transaction that handed the message over.
//!
//! Ours: the worker woken by this process's commits (and polling every 500 ms for other
//! nodes). Naive, on the same database and settings: a worker that polls the outbox once a
//! second, as a cron-style consumer does. Both sides run the scheduler loop of `serve` beside
//! the worker. Exactness: every member gets exactly one message from
//! the side's automation, and every run completed.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rand::Rng as _;
use serde_json::{json, Value};

use super::{percentile, BenchOptions};
use crate::common::clock::SystemClock;
use crate::engagement::automations;
use crate::{app, tenants, AppState};

/// What the benchmark is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Members created per side.
    pub members: usize,
}

async fn side(db: &crate::common::db::Db, options: Options, naive: bool) -> anyhow::Result<Value> {
    let name = if naive { "bench-naive" } else { "bench-ours" };
    let created = tenants::create(db, name, Timestamp::now()).await?;
    let (tenant, key) = (created.tenant_id, created.api_key);
    let state = AppState::new(db.clone(), Arc::new(SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let router = app(state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let worker = if naive {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(error) = automations::run_automations(&state).await {
                    tracing::warn!(error = format!("{error:#}"), "naive automation pass failed");
                }
            }
        })
    } else {
        tokio::spawn(automations::run(state.clone(), true))
    };
    // The scheduler loop as `serve` runs it: a step that is not run at once is run by it.
    let scheduler = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::server::SCHEDULER_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(error) = crate::server::run_due_jobs(&state).await {
                    tracing::warn!(error = format!("{error:#}"), "scheduler pass failed");
                }
            }
        })
    };
    let client = reqwest::Client::new();
    let base = format!("http://{address}");
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let settings = client
        .put(format!("{base}/v1/messaging-settings"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(json!({"max_marketing_per_member_per_7_days": 1000, "quiet_hours": null}).to_string())
        .send()
        .await?;
    anyhow::ensure!(
        settings.status().is_success(),
        "settings: {}",
        settings.status()
    );
    let made = post(
        "/v1/automations",
        json!({"name": "welcome", "trigger": {"event": "member.created"},
               "actions": [{"send_message": {"channel": "wecom", "category": "marketing",
                                             "template": "welcome"}}]}),
    )
    .await?;
    anyhow::ensure!(
        made.status().as_u16() == 201,
        "automation: {}",
        made.status()
    );
    let automation: Value = serde_json::from_str(&made.text().await?)?;
    let automation_id = automation["id"].as_str().unwrap_or_default().to_owned();

    for i in 0..options.members {
        let reply = post(
            "/v1/members",
            json!({"external_id": format!("m{i}"), "consent": {"marketing": true}}),
        )
        .await?;
        anyhow::ensure!(reply.status().as_u16() == 201, "member: {}", reply.status());
        let pause = rand::rng().random_range(20..60);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    // Every message in, or 10 s after the last member.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut done = 0;
    while std::time::Instant::now() < deadline {
        done = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM message WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant.as_str())
        .bind(&automation_id)
        .fetch_one(db.read())
        .await?;
        if done >= options.members as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();
    scheduler.abort();
    server.abort();

    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT m.created_at, g.created_at FROM member m JOIN message g \
         ON g.tenant_id = m.tenant_id AND g.member_id = m.id \
         WHERE m.tenant_id = $1 AND g.source = $2",
    )
    .bind(tenant.as_str())
    .bind(&automation_id)
    .fetch_all(db.read())
    .await?;
    let mut latencies: Vec<u64> = rows
        .iter()
        .map(|(member, message)| u64::try_from(message - member).unwrap_or(0))
        .collect();
    latencies.sort_unstable();
    let distinct: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT member_id) FROM message WHERE tenant_id = $1 AND source = $2",
    )
    .bind(tenant.as_str())
    .bind(&automation_id)
    .fetch_one(db.read())
    .await?;
    let completed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM engagement_run WHERE tenant_id = $1 AND source_id = $2 \
         AND status = 'completed'",
    )
    .bind(tenant.as_str())
    .bind(&automation_id)
    .fetch_one(db.read())
    .await?;
    let n = options.members as i64;
    Ok(json!({
        "members": n,
        "messages": done,
        "p50_ms": percentile(&latencies, 50.0),
        "p99_ms": percentile(&latencies, 99.0),
        "max_ms": percentile(&latencies, 100.0),
        "exact": done == n && distinct == n && completed == n && rows.len() as i64 == n,
    }))
}

pub async fn run(bench: BenchOptions, options: Options) -> anyhow::Result<Value> {
    let (db, _temp) = super::open_database(&bench).await?;
    eprintln!(
        "automations bench on {}: {} members per side",
        db.backend().name(),
        options.members
    );
    let ours = side(&db, options, false).await?;
    eprintln!("ours: {ours}");
    let naive = side(&db, options, true).await?;
    eprintln!("naive: {naive}");
    let ratio =
        naive["p50_ms"].as_f64().unwrap_or(0.0) / ours["p50_ms"].as_f64().unwrap_or(1.0).max(0.001);
    Ok(json!({
        "bench": "automation_latency",
        "database": db.backend().name(),
        "members_per_side": options.members,
        "ours": ours,
        "naive": naive,
        "p50_ratio": (ratio * 10.0).round() / 10.0,
        "exact": ours["exact"] == true && naive["exact"] == true,
    }))
}
