//! The delivery worker: outbox events become delivery rows, due deliveries are claimed and
//! attempted, each attempt's outcome is recorded.
//!
//! Every node runs [`run_due_deliveries`] each second (tests call it after moving the clock).
//! A pass has two steps:
//!
//! 1. **Fan-out.** Each enabled endpoint keeps a cursor into its tenant's outbox (`event_cursor`,
//!    the last `seq` it has seen; a new endpoint starts at the tenant's current `seq`). The pass
//!    reads the events after the lowest cursor of a tenant's endpoints, and per endpoint inserts
//!    a delivery for each event whose type it subscribes to and moves its cursor, in one
//!    transaction whose cursor update is conditional on the cursor it read: when two nodes fan
//!    out at once, one wins and the other rolls back (the unique `(endpoint, message_id)` index
//!    backs this up). Events are only ever read from the endpoint's own tenant.
//! 2. **Attempts.** Due pending deliveries of enabled endpoints are claimed in one conditional
//!    update per batch (`claim` token and `locked_until`, as `common::scheduler` does per job),
//!    so each attempt is made by one node; a node that dies mid-attempt leaves the claim to expire
//!    ([`CLAIM`]) and another node makes the attempt again (at least once). A batch's deliveries
//!    are grouped by endpoint: each endpoint's are sent one after the other in event order
//!    (a failed one does not hold back the next: it waits for its retry), up to
//!    [`Config::concurrency`] endpoints at once. The outcomes of a batch are written in one
//!    transaction, each conditional on the claim still being this node's.
//!
//! A non-2xx answer, or none within [`TIMEOUT`], is retried after the next step of the retry
//! schedule (`--webhook-retry-secs`), with ±10% jitter so that a receiver coming back is not
//! hit by every retry at once; after the last step the delivery is `failed`. 410 Gone fails the
//! delivery and disables its endpoint at once; an endpoint whose attempts have all failed for
//! [`DISABLE_AFTER`] is disabled. Both write `webhook_endpoint.disabled`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jiff::Timestamp;
use rand::Rng as _;
use serde_json::{json, Value};
use sqlx::Row as _;

use super::signing;
use crate::common::db::{Db, Tx};
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::common::sql::{Arg, Sql};
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::AppState;

/// The default retry schedule, in seconds after each failed attempt.
pub const DEFAULT_RETRY_SECS: &str = "5,300,1800,7200,18000,36000,36000";
/// How long an attempt waits for an answer.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claim keeps other nodes off a delivery (longer than an attempt can take).
pub const CLAIM: Duration = Duration::from_secs(60);
/// An endpoint whose attempts all failed for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// Events read per fan-out step.
const FAN_OUT_PAGE: i64 = 500;
/// Rows per multi-row insert.
const INSERT_CHUNK: usize = 200;
/// Longest stored error text.
const MAX_ERROR_CHARS: usize = 500;
/// Response bytes read (and dropped) so that the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How this node delivers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Wait after the 1st, 2nd… failed attempt; a delivery fails after `retry.len() + 1`
    /// attempts.
    pub retry: Vec<Duration>,
    /// Endpoints attempted at once.
    pub concurrency: usize,
    /// Deliveries claimed per batch.
    pub batch: i64,
    pub client: reqwest::Client,
}

impl Default for Config {
    fn default() -> Self {
        Self::new(parse_retry_secs(DEFAULT_RETRY_SECS).unwrap_or_default())
    }
}

impl Config {
    pub fn new(retry: Vec<Duration>) -> Self {
        Self {
            retry,
            concurrency: 32,
            batch: 256,
            client: client(),
        }
    }

    /// One delivery at a time, one transaction each (the benchmark's naive side).
    pub fn naive(mut self) -> Self {
        self.concurrency = 1;
        self.batch = 1;
        self
    }
}

/// The HTTP client: rustls, 15 s timeout, no proxies, no redirects, the safe resolver.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("shequn-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(super::safety::SafeResolver))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Parse `5,300,1800`: whole seconds, comma separated, at least one, each at most a week.
pub fn parse_retry_secs(text: &str) -> Result<Vec<Duration>, String> {
    let steps = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<u64>()
                .ok()
                .filter(|secs| *secs <= 7 * 24 * 3600)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{part:?} is not a number of seconds up to 604800"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if steps.is_empty() || steps.len() > 20 {
        return Err("give 1 to 20 steps".into());
    }
    Ok(steps)
}

/// `--webhook-retry-secs` as clap reads it ([`parse_retry_secs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl std::str::FromStr for RetrySchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_retry_secs(text).map(RetrySchedule)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryPass {
    /// Delivery rows created from the outbox.
    pub created: usize,
    /// Attempts made.
    pub attempted: usize,
    pub succeeded: usize,
    /// Attempts that failed (retried later or given up).
    pub failed: usize,
}

/// Fan out new events, then attempt every due delivery (batch after batch until none is due).
pub async fn run_due_deliveries(state: &AppState) -> anyhow::Result<DeliveryPass> {
    let mut pass = DeliveryPass {
        created: fan_out(&state.db, state.clock.now()).await?,
        ..DeliveryPass::default()
    };
    // Bounded so that a retry schedule of zeros cannot keep one pass going.
    for _ in 0..10_000 {
        let claimed = attempt_batch(state, &state.webhooks, &mut pass).await?;
        if claimed == 0 {
            break;
        }
    }
    Ok(pass)
}

/// The `webhook-id` of outbox event `seq` of `tenant_id`: unique across tenants and stable.
pub fn message_id(tenant_id: &TenantId, seq: i64) -> String {
    let tenant = tenant_id.as_str();
    format!(
        "evt_{}_{seq}",
        tenant.strip_prefix("ten_").unwrap_or(tenant)
    )
}

struct EndpointCursor {
    tenant_id: TenantId,
    id: String,
    event_types: Vec<String>,
    cursor: i64,
}

struct OutboxEvent {
    seq: i64,
    kind: String,
    at: i64,
    data: Value,
}

fn subscribes(endpoint: &EndpointCursor, event: &OutboxEvent) -> bool {
    if event.kind == super::TEST_EVENT {
        // A test goes to the endpoint it was sent for, whatever its types.
        return event.data["endpoint_id"].as_str() == Some(endpoint.id.as_str());
    }
    endpoint
        .event_types
        .iter()
        .any(|t| t == "*" || *t == event.kind)
}

/// Create delivery rows for every enabled endpoint's new events; returns how many.
pub async fn fan_out(db: &Db, now: Timestamp) -> anyhow::Result<usize> {
    let rows = sqlx::query(
        "SELECT tenant_id, id, event_types, event_cursor FROM webhook_endpoint \
         WHERE status = 'enabled' ORDER BY tenant_id, id",
    )
    .fetch_all(db.read())
    .await?;
    let mut tenants: BTreeMap<String, Vec<EndpointCursor>> = BTreeMap::new();
    for row in rows {
        let tenant: String = row.try_get("tenant_id")?;
        let types: String = row.try_get("event_types")?;
        tenants
            .entry(tenant.clone())
            .or_default()
            .push(EndpointCursor {
                tenant_id: TenantId::from_db(tenant),
                id: row.try_get("id")?,
                event_types: serde_json::from_str(&types).unwrap_or_default(),
                cursor: row.try_get("event_cursor")?,
            });
    }
    let mut created = 0;
    for (tenant, mut endpoints) in tenants {
        while let Some(from) = endpoints.iter().map(|e| e.cursor).min() {
            let events = sqlx::query(
                "SELECT seq, type, at, data FROM event WHERE tenant_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(&tenant)
            .bind(from)
            .bind(FAN_OUT_PAGE)
            .fetch_all(db.read())
            .await?
            .into_iter()
            .map(|row| {
                let data: String = row.try_get("data")?;
                Ok(OutboxEvent {
                    seq: row.try_get("seq")?,
                    kind: row.try_get("type")?,
                    at: row.try_get("at")?,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let mut lost = Vec::new();
            for (index, endpoint) in endpoints.iter_mut().enumerate() {
                if endpoint.cursor >= last {
                    continue;
                }
                let new: Vec<&OutboxEvent> = events
                    .iter()
                    .filter(|e| e.seq > endpoint.cursor && subscribes(endpoint, e))
                    .collect();
                match advance(db, now, endpoint, &new, last).await? {
                    Some(n) => {
                        created += n;
                        endpoint.cursor = last;
                    }
                    // Another node moved this cursor (or the endpoint changed): leave it to them.
                    None => lost.push(index),
                }
            }
            for index in lost.into_iter().rev() {
                endpoints.remove(index);
            }
            if events.len() < FAN_OUT_PAGE as usize {
                break;
            }
        }
    }
    Ok(created)
}

/// Insert `events` as deliveries of `endpoint` and move its cursor to `last`, if the cursor is
/// still what was read; `None` when it was not.
async fn advance(
    db: &Db,
    now: Timestamp,
    endpoint: &EndpointCursor,
    events: &[&OutboxEvent],
    last: i64,
) -> anyhow::Result<Option<usize>> {
    let mut tx = db.begin(now).await?;
    let moved = sqlx::query(
        "UPDATE webhook_endpoint SET event_cursor = $1 \
         WHERE tenant_id = $2 AND id = $3 AND event_cursor = $4 AND status = 'enabled'",
    )
    .bind(last)
    .bind(endpoint.tenant_id.as_str())
    .bind(&endpoint.id)
    .bind(endpoint.cursor)
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let at = to_micros(now);
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO webhook_delivery (tenant_id, id, endpoint_id, event_seq, message_id, \
             type, body, status, attempts, round_failures, next_attempt_at, created_at, \
             updated_at) VALUES ",
        );
        sql.values(chunk, |event| {
            let body = json!({
                "type": event.kind,
                "timestamp": micros_to_rfc3339(event.at),
                "data": event.data,
            });
            vec![
                Arg::from(endpoint.tenant_id.as_str()),
                Arg::from(super::WebhookDeliveryId::generate().as_str()),
                Arg::from(endpoint.id.as_str()),
                Arg::from(event.seq),
                Arg::from(message_id(&endpoint.tenant_id, event.seq)),
                Arg::from(event.kind.as_str()),
                Arg::from(body.to_string()),
                Arg::from("pending"),
                Arg::from(0i64),
                Arg::from(0i64),
                Arg::from(at),
                Arg::from(at),
                Arg::from(at),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(tx.conn()).await?;
    }
    tx.commit().await?;
    Ok(Some(events.len()))
}

/// A claimed delivery with what its attempt needs.
struct Claimed {
    id: String,
    endpoint_id: String,
    url: String,
    secret: String,
    /// The secret before a rotation, while it still signs.
    previous_secret: Option<String>,
    message_id: String,
    body: String,
    attempts: i64,
    round_failures: i64,
    /// The claim token this node holds on it.
    claim: String,
}

/// The outcome of one attempt.
struct Outcome {
    at: Timestamp,
    status_code: Option<u16>,
    duration_ms: i64,
    error: Option<String>,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.status_code
            .is_some_and(|code| (200..300).contains(&code))
    }
}

/// Claim one batch of due deliveries (of one tenant at a time), attempt them and record the
/// outcomes; returns how many were claimed.
pub async fn attempt_batch(
    state: &AppState,
    config: &Config,
    pass: &mut DeliveryPass,
) -> anyhow::Result<usize> {
    let now = state.clock.now();
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM webhook_endpoint WHERE status = 'enabled' ORDER BY tenant_id",
    )
    .fetch_all(state.db.read())
    .await?;
    let mut claimed_total = 0;
    for tenant in tenants {
        let tenant_id = TenantId::from_db(tenant);
        let claimed = claim(&state.db, &tenant_id, now, config.batch).await?;
        if claimed.is_empty() {
            continue;
        }
        claimed_total += claimed.len();
        let token_now = now;
        // Group by endpoint, keeping event order within each.
        let mut groups: Vec<Vec<Claimed>> = Vec::new();
        for delivery in claimed {
            match groups
                .iter_mut()
                .find(|g| g[0].endpoint_id == delivery.endpoint_id)
            {
                Some(group) => group.push(delivery),
                None => groups.push(vec![delivery]),
            }
        }
        let clock = state.clock.clone();
        let client = config.client.clone();
        let done: Vec<(Claimed, Outcome)> = futures::stream::iter(groups)
            .map(|group| {
                let clock = clock.clone();
                let client = client.clone();
                async move {
                    let mut out = Vec::with_capacity(group.len());
                    for delivery in group {
                        let outcome = attempt(&client, clock.now(), &delivery).await;
                        out.push((delivery, outcome));
                    }
                    out
                }
            })
            .buffer_unordered(config.concurrency.max(1))
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        record(state, config, &tenant_id, token_now, done, pass).await?;
        if claimed_total as i64 >= config.batch {
            break;
        }
    }
    Ok(claimed_total)
}

async fn claim(
    db: &Db,
    tenant_id: &TenantId,
    now: Timestamp,
    limit: i64,
) -> anyhow::Result<Vec<Claimed>> {
    let now_micros = to_micros(now);
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT d.id FROM webhook_delivery d JOIN webhook_endpoint e \
         ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id \
         WHERE d.tenant_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
         AND (d.locked_until IS NULL OR d.locked_until < $2) AND e.status = 'enabled' \
         ORDER BY d.next_attempt_at, d.event_seq, d.id LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(now_micros)
    .bind(limit)
    .fetch_all(db.read())
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let lock_until = now_micros.saturating_add(i64::try_from(CLAIM.as_micros()).unwrap_or(0));
    {
        let mut conn = db.write_conn().await?;
        let mut sql = Sql::for_conn(&conn, "UPDATE webhook_delivery SET claim = ");
        sql.bind(token.as_str())
            .push(", locked_until = ")
            .bind(lock_until)
            .push(" WHERE tenant_id = ")
            .bind(tenant_id.as_str())
            .push(" AND status = 'pending' AND (locked_until IS NULL OR locked_until < ")
            .bind(now_micros)
            .push(") AND id IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.as_str());
        }
        sql.push(")");
        sql.query().execute(&mut *conn).await?;
    }
    let rows = sqlx::query(
        "SELECT d.id, d.endpoint_id, d.message_id, d.body, d.attempts, d.round_failures, \
         e.url, e.secret, e.previous_secret, e.previous_secret_until \
         FROM webhook_delivery d JOIN webhook_endpoint e \
         ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id \
         WHERE d.tenant_id = $1 AND d.claim = $2 AND d.status = 'pending' \
         ORDER BY d.event_seq, d.id",
    )
    .bind(tenant_id.as_str())
    .bind(&token)
    .fetch_all(db.read())
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get("id")?,
                endpoint_id: row.try_get("endpoint_id")?,
                url: row.try_get("url")?,
                secret: row.try_get("secret")?,
                previous_secret: row
                    .try_get::<Option<i64>, _>("previous_secret_until")?
                    .filter(|until| *until > now_micros)
                    .map(|_| row.try_get::<Option<String>, _>("previous_secret"))
                    .transpose()?
                    .flatten(),
                message_id: row.try_get("message_id")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                round_failures: row.try_get("round_failures")?,
                claim: token.clone(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Into::into)
}

fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

async fn attempt(client: &reqwest::Client, at: Timestamp, delivery: &Claimed) -> Outcome {
    let started = Instant::now();
    let finish = |status_code: Option<u16>, error: Option<String>| Outcome {
        at,
        status_code,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        error,
    };
    if let Err(unsafe_url) = super::safety::check_url(&delivery.url) {
        return finish(None, Some(format!("refused: the URL {unsafe_url}")));
    }
    let timestamp = at.as_second();
    let Some(mut signature) = signing::sign(
        &delivery.secret,
        &delivery.message_id,
        timestamp,
        delivery.body.as_bytes(),
    ) else {
        return finish(None, Some("the endpoint's secret is malformed".into()));
    };
    if let Some(previous) = delivery.previous_secret.as_deref().and_then(|secret| {
        signing::sign(
            secret,
            &delivery.message_id,
            timestamp,
            delivery.body.as_bytes(),
        )
    }) {
        signature.push(' ');
        signature.push_str(&previous);
    }
    let sent = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .send()
        .await;
    match sent {
        Ok(mut response) => {
            let status = response.status().as_u16();
            // Read a little of the answer so the connection can be kept, never all of it.
            let mut read = 0;
            while let Ok(Some(chunk)) = response.chunk().await {
                read += chunk.len();
                if read > MAX_RESPONSE_BYTES {
                    break;
                }
            }
            let error = (!(200..300).contains(&status)).then(|| format!("HTTP {status}"));
            finish(Some(status), error)
        }
        Err(error) => finish(None, Some(error_text(&error))),
    }
}

/// The wait before the attempt after `failures` failures: the schedule's step, ±10%.
fn retry_after(schedule: &[Duration], failures: i64) -> Option<Duration> {
    let index = usize::try_from(failures.checked_sub(1)?).ok()?;
    let step = *schedule.get(index)?;
    let jitter = rand::rng().random_range(0.9..=1.1);
    Some(step.mul_f64(jitter))
}

/// Why an endpoint was disabled.
pub const DISABLED_GONE: &str = "gone";
pub const DISABLED_FAILING: &str = "failing";
pub const DISABLED_OPERATOR: &str = "operator";

/// Disable `endpoint_id` if it is enabled, with a `webhook_endpoint.disabled` event.
pub async fn disable(
    tx: &mut Tx,
    tenant_id: &TenantId,
    endpoint_id: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let now = to_micros(tx.now());
    let done = sqlx::query(
        "UPDATE webhook_endpoint SET status = 'disabled', disabled_reason = $1, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status = 'enabled'",
    )
    .bind(reason)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(endpoint_id)
    .execute(tx.conn())
    .await?;
    let disabled = done.rows_affected() == 1;
    if disabled {
        tx.emit(NewEvent::new(
            tenant_id,
            "webhook_endpoint.disabled",
            Some(endpoint_id),
            json!({ "endpoint_id": endpoint_id, "reason": reason }),
        ));
    }
    Ok(disabled)
}

async fn record(
    state: &AppState,
    config: &Config,
    tenant_id: &TenantId,
    now: Timestamp,
    done: Vec<(Claimed, Outcome)>,
    pass: &mut DeliveryPass,
) -> anyhow::Result<()> {
    let mut tx = state.db.begin(now).await?;
    let now_micros = to_micros(now);
    let disable_after = i64::try_from(DISABLE_AFTER.as_micros()).unwrap_or(i64::MAX);
    let mut attempts_rows = Vec::with_capacity(done.len());
    for (delivery, outcome) in &done {
        let (id, token) = (delivery.id.as_str(), delivery.claim.as_str());
        let n = delivery.attempts + 1;
        let succeeded = outcome.succeeded();
        let gone = outcome.status_code == Some(410);
        let round_failures = if succeeded {
            delivery.round_failures
        } else {
            delivery.round_failures + 1
        };
        let retry = (!succeeded && !gone)
            .then(|| retry_after(&config.retry, round_failures))
            .flatten();
        let (status, next) = match (succeeded, retry) {
            (true, _) => ("succeeded", now_micros),
            (false, Some(after)) => (
                "pending",
                to_micros(outcome.at)
                    .saturating_add(i64::try_from(after.as_micros()).unwrap_or(i64::MAX / 2)),
            ),
            (false, None) => ("failed", now_micros),
        };
        let updated = sqlx::query(
            "UPDATE webhook_delivery SET status = $1, attempts = $2, round_failures = $3, \
             next_attempt_at = $4, locked_until = NULL, claim = NULL, updated_at = $5 \
             WHERE tenant_id = $6 AND id = $7 AND claim = $8",
        )
        .bind(status)
        .bind(n)
        .bind(round_failures)
        .bind(next)
        .bind(now_micros)
        .bind(tenant_id.as_str())
        .bind(id)
        .bind(token)
        .execute(tx.conn())
        .await?;
        if updated.rows_affected() != 1 {
            // The claim expired and another node took the delivery (or it was deleted).
            continue;
        }
        pass.attempted += 1;
        attempts_rows.push((id.to_owned(), n, outcome));
        if succeeded {
            pass.succeeded += 1;
            sqlx::query(
                "UPDATE webhook_endpoint SET failing_since = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL",
            )
            .bind(tenant_id.as_str())
            .bind(&delivery.endpoint_id)
            .execute(tx.conn())
            .await?;
            continue;
        }
        pass.failed += 1;
        if gone {
            disable(&mut tx, tenant_id, &delivery.endpoint_id, DISABLED_GONE).await?;
            continue;
        }
        sqlx::query(
            "UPDATE webhook_endpoint SET failing_since = $1 \
             WHERE tenant_id = $2 AND id = $3 AND failing_since IS NULL",
        )
        .bind(to_micros(outcome.at))
        .bind(tenant_id.as_str())
        .bind(&delivery.endpoint_id)
        .execute(tx.conn())
        .await?;
        let since: Option<i64> = sqlx::query_scalar(
            "SELECT failing_since FROM webhook_endpoint WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(&delivery.endpoint_id)
        .fetch_optional(tx.conn())
        .await?
        .flatten();
        if since.is_some_and(|since| now_micros.saturating_sub(since) >= disable_after) {
            disable(&mut tx, tenant_id, &delivery.endpoint_id, DISABLED_FAILING).await?;
        }
    }
    for chunk in attempts_rows.chunks(INSERT_CHUNK) {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO webhook_attempt (tenant_id, delivery_id, n, at, status_code, \
             duration_ms, error) VALUES ",
        );
        sql.values(chunk, |(id, n, outcome)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(id.as_str()),
                Arg::from(*n),
                Arg::from(to_micros(outcome.at)),
                Arg::from(outcome.status_code.map(i64::from)),
                Arg::from(outcome.duration_ms),
                Arg::from(outcome.error.clone()),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(tx.conn()).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_parses_and_jitters_within_ten_percent() {
        let schedule = parse_retry_secs(DEFAULT_RETRY_SECS).unwrap();
        assert_eq!(schedule.len(), 7);
        assert_eq!(schedule[1], Duration::from_secs(300));
        assert!(parse_retry_secs("5,x").is_err());
        assert!(parse_retry_secs("").is_err());
        for failures in 1..=7 {
            let step = schedule[usize::try_from(failures - 1).unwrap()];
            let after = retry_after(&schedule, failures).unwrap();
            assert!(after >= step.mul_f64(0.89) && after <= step.mul_f64(1.11));
        }
        assert_eq!(retry_after(&schedule, 8), None);
        assert_eq!(retry_after(&schedule, 0), None);
    }
}
