//! The event stream export: every outbox event (DESIGN rule 4) published to NATS JetStream
//! when `serve --nats-url` is given.
//!
//! Each event of tenant `T` numbered `seq` becomes one message on subject
//! `shequn.T.<event type>` (e.g. `shequn.ten_0193….order.paid`) in the stream `SHEQUN_EVENTS`
//! (subjects `shequn.>`, created when missing), with the header `Nats-Msg-Id: T:seq` and the
//! body `{"id", "tenant_id", "seq", "type", "subject", "at", "data"}`.
//!
//! The outbox stays the source of truth; the export only follows it:
//!
//! - A cursor row per tenant and stream (`event_export.last_seq`) holds the last seq that
//!   JetStream acknowledged. A pass reads the events after it, publishes them in order, awaits
//!   each publish ack and only then advances the cursor, to the last event of an unbroken run of
//!   acks. A NATS outage (no connection, a timed-out or refused ack) stops the pass with the
//!   cursor where the acks stopped: export is delayed, nothing is skipped.
//! - A crash between an ack and the cursor write publishes those events again on the next pass.
//!   They carry the same `Nats-Msg-Id`, so JetStream drops them as duplicates inside its
//!   duplicate window (two minutes by default); beyond it a consumer deduplicates by `id`.
//! - With several nodes, one exports a tenant at a time: a pass takes the tenant's lease on the
//!   cursor row with a conditional update (free, expired, or already ours) and keeps it while it
//!   runs; the cursor itself only moves by compare-and-set from the value the pass read, by the
//!   lease holder. A node that stalls past its lease and publishes again is at worst
//!   deduplicated, and can never move another node's cursor backwards.
//!
//! The loop of [`run`] makes a pass every [`IDLE_INTERVAL`] when caught up, at once while more
//! is waiting, and backs off up to [`MAX_BACKOFF`] while NATS cannot be reached; tests drive
//! [`Exporter::export_once`] directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use jiff::Timestamp;
use serde_json::json;

use crate::common::db::Db;
use crate::common::ids::TenantId;
use crate::common::outbox::{self, Event};
use crate::common::time::to_micros;
use crate::AppState;

/// The stream events are published to, unless configured otherwise.
pub const DEFAULT_STREAM: &str = "SHEQUN_EVENTS";
/// The first token of every subject, unless configured otherwise.
pub const DEFAULT_SUBJECT_PREFIX: &str = "shequn";
/// Events read and published per batch (one cursor write per batch), unless configured
/// otherwise.
pub const BATCH: i64 = 500;
/// Events one pass exports for one tenant before it moves on to the next tenant.
pub const MAX_PER_TENANT_PASS: i64 = 10_000;
/// How long a node keeps a tenant's export to itself after its last pass over it.
pub const LEASE: Duration = Duration::from_secs(30);
/// The wait between passes when every tenant is exported.
pub const IDLE_INTERVAL: Duration = Duration::from_millis(500);
/// The longest wait between passes while NATS is failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where and how events are exported. The defaults are the documented stream and subjects;
/// tests use their own names so that runs do not see each other.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The JetStream stream (created when missing, subjects `<subject_prefix>.>`).
    pub stream: String,
    /// The first token(s) of every subject.
    pub subject_prefix: String,
    /// How long a publish ack (or a stream request) may take before the pass stops.
    pub ack_timeout: Duration,
    /// The stream's duplicate window when the exporter creates it.
    pub duplicate_window: Duration,
    /// The stream's maximum message age when the exporter creates it (zero: kept forever).
    pub max_age: Duration,
    /// This node's name on the lease rows.
    pub node: String,
    /// Events per batch: all published before their acks are awaited, then one cursor write.
    /// 1 is the naive export (publish, await the ack, write the cursor, for each event) that
    /// the benchmark compares with.
    pub batch: i64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            ack_timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            node: format!("node_{}", uuid::Uuid::new_v4().simple()),
            batch: BATCH,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportPass {
    /// Events published and acknowledged (duplicates included).
    pub published: u64,
    /// Of those, events JetStream had already (a republish it deduplicated).
    pub duplicates: u64,
    /// Tenants with events waiting that another node's lease kept from this one.
    pub busy: usize,
    /// Some tenant had more waiting than one pass exports: run another pass at once.
    pub more: bool,
}

/// The message id of an event: the tenant and its seq, the same on every publish.
pub fn message_id(tenant_id: &str, seq: i64) -> String {
    format!("{tenant_id}:{seq}")
}

/// A connection to NATS and the stream it exports to.
pub struct Exporter {
    client: async_nats::Client,
    js: jetstream::Context,
    config: ExportConfig,
    /// The stream was found or created since the last failure.
    stream_ready: AtomicBool,
}

impl Exporter {
    /// Connect to `url` (`nats://host:port`, credentials in the URL if any). The connection is
    /// made in the background and kept up by the client: an unreachable server is not an error
    /// here, passes fail until it is reached.
    pub async fn connect(url: &str, config: ExportConfig) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("shequn event export")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .context("connecting to NATS")?;
        Ok(Self::new(client, config))
    }

    /// Export through an existing client.
    pub fn new(client: async_nats::Client, config: ExportConfig) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.ack_timeout);
        Self {
            client,
            js,
            config,
            stream_ready: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &ExportConfig {
        &self.config
    }

    /// The JetStream context (tests read the stream through it).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The subject of an event.
    pub fn subject(&self, tenant_id: &str, kind: &str) -> String {
        format!("{}.{tenant_id}.{kind}", self.config.subject_prefix)
    }

    async fn ensure_stream(&self) -> anyhow::Result<()> {
        if self.stream_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![format!("{}.>", self.config.subject_prefix)],
                duplicate_window: self.config.duplicate_window,
                max_age: self.config.max_age,
                ..Default::default()
            })
            .await
            .with_context(|| format!("finding or creating stream {}", self.config.stream))?;
        self.stream_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// One pass: every tenant with events past its cursor whose lease this node gets is
    /// exported (up to [`MAX_PER_TENANT_PASS`] events each). `now` stamps the leases. An
    /// error (NATS unreachable, an ack missing, the database failing) ends the pass; what was
    /// acknowledged before it is recorded.
    pub async fn export_once(&self, db: &Db, now: Timestamp) -> anyhow::Result<ExportPass> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            anyhow::bail!("not connected to NATS");
        }
        self.ensure_stream().await?;
        let mut pass = ExportPass::default();
        for tenant_id in waiting_tenants(db, &self.config.stream).await? {
            let Some(cursor) = self.take_lease(db, &tenant_id, now).await? else {
                pass.busy += 1;
                continue;
            };
            let outcome = self
                .export_tenant(db, &tenant_id, cursor, now, &mut pass)
                .await;
            if let Err(error) = outcome {
                // The stream may have been deleted, or the connection lost: look again next
                // time.
                self.stream_ready.store(false, Ordering::Release);
                return Err(error.context(format!("exporting events of tenant {tenant_id}")));
            }
        }
        Ok(pass)
    }

    /// Take (or renew) this node's lease on a tenant's cursor; its `last_seq` when taken.
    async fn take_lease(
        &self,
        db: &Db,
        tenant_id: &TenantId,
        now: Timestamp,
    ) -> anyhow::Result<Option<i64>> {
        let now = to_micros(now);
        let until = now + i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX / 4);
        let mut conn = db.write_conn().await?;
        sqlx::query(
            "INSERT INTO event_export (tenant_id, stream, last_seq, holder, lease_until, \
             updated_at) VALUES ($1, $2, 0, NULL, 0, $3) ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id.as_str())
        .bind(&self.config.stream)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let cursor: Option<i64> = sqlx::query_scalar(
            "UPDATE event_export SET holder = $1, lease_until = $2 \
             WHERE tenant_id = $3 AND stream = $4 \
             AND (holder IS NULL OR holder = $1 OR lease_until < $5) RETURNING last_seq",
        )
        .bind(&self.config.node)
        .bind(until)
        .bind(tenant_id.as_str())
        .bind(&self.config.stream)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(cursor)
    }

    /// Export one tenant's events after `cursor` in batches, advancing the cursor after each
    /// batch's acks.
    async fn export_tenant(
        &self,
        db: &Db,
        tenant_id: &TenantId,
        mut cursor: i64,
        now: Timestamp,
        pass: &mut ExportPass,
    ) -> anyhow::Result<()> {
        let mut exported = 0;
        loop {
            if exported >= MAX_PER_TENANT_PASS {
                pass.more = true;
                return Ok(());
            }
            let batch = self.config.batch.clamp(1, outbox::MAX_EVENTS_PAGE);
            let events = outbox::list(db.read(), tenant_id, cursor, batch, None, None).await?;
            if events.is_empty() {
                return Ok(());
            }
            let (acked, duplicates, failure) = self.publish_batch(tenant_id, &events).await;
            if acked > cursor {
                let count = acked - cursor;
                if !advance(db, &self.config, tenant_id, cursor, acked, now).await? {
                    // Another node took the lease and moved the cursor: it goes on from there.
                    pass.busy += 1;
                    return Ok(());
                }
                pass.published += u64::try_from(count).unwrap_or(0);
                pass.duplicates += duplicates;
                metrics::counter!("shequn_events_exported_total").increment(count as u64);
                metrics::counter!("shequn_events_export_duplicates_total").increment(duplicates);
                exported += count;
                cursor = acked;
            }
            if let Some(error) = failure {
                return Err(error);
            }
            if (events.len() as i64) < batch {
                return Ok(());
            }
        }
    }

    /// Publish a batch, then await the acks in order: (the seq of the last event of the
    /// unbroken run of acks, or the seq before the batch; duplicates among them; the failure
    /// that broke the run).
    async fn publish_batch(
        &self,
        tenant_id: &TenantId,
        events: &[Event],
    ) -> (i64, u64, Option<anyhow::Error>) {
        let before = events.first().map_or(0, |e| e.seq - 1);
        let mut pending = Vec::with_capacity(events.len());
        let mut failure = None;
        for event in events {
            let id = message_id(tenant_id.as_str(), event.seq);
            let body = json!({
                "id": id,
                "tenant_id": tenant_id.as_str(),
                "seq": event.seq,
                "type": event.kind,
                "subject": event.subject,
                "at": event.at,
                "data": event.data,
            });
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let subject = self.subject(tenant_id.as_str(), &event.kind);
            match self
                .js
                .publish_with_headers(subject, headers, body.to_string().into())
                .await
            {
                Ok(ack) => pending.push((event.seq, ack)),
                Err(error) => {
                    failure = Some(anyhow::Error::new(error).context("publishing an event"));
                    break;
                }
            }
        }
        let mut acked = before;
        let mut duplicates = 0;
        for (seq, ack) in pending {
            match ack.await {
                Ok(ack) => {
                    acked = seq;
                    duplicates += u64::from(ack.duplicate);
                }
                Err(error) => {
                    failure = Some(anyhow::Error::new(error).context("awaiting a publish ack"));
                    break;
                }
            }
        }
        (acked, duplicates, failure)
    }
}

/// Tenants whose outbox is ahead of their cursor on `stream`, in id order.
async fn waiting_tenants(db: &Db, stream: &str) -> anyhow::Result<Vec<TenantId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT t.id FROM tenant t LEFT JOIN event_export x \
         ON x.tenant_id = t.id AND x.stream = $1 \
         WHERE t.event_seq > COALESCE(x.last_seq, 0) ORDER BY t.id",
    )
    .bind(stream)
    .fetch_all(db.read())
    .await?;
    Ok(ids.into_iter().map(TenantId::from_db).collect())
}

/// Move a tenant's cursor from `from` to `to` if it is still at `from` and this node holds the
/// lease, renewing the lease; false when it was not (another node took over).
async fn advance(
    db: &Db,
    config: &ExportConfig,
    tenant_id: &TenantId,
    from: i64,
    to: i64,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let now = to_micros(now);
    let until = now + i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX / 4);
    let mut conn = db.write_conn().await?;
    let moved = sqlx::query(
        "UPDATE event_export SET last_seq = $1, lease_until = $2, updated_at = $3 \
         WHERE tenant_id = $4 AND stream = $5 AND last_seq = $6 AND holder = $7",
    )
    .bind(to)
    .bind(until)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(&config.stream)
    .bind(from)
    .bind(&config.node)
    .execute(&mut *conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// The exporter loop of `serve --nats-url`: passes until the task is aborted.
pub async fn run(state: AppState, url: String, config: ExportConfig) {
    let exporter = match Exporter::connect(&url, config).await {
        Ok(exporter) => exporter,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "event export to NATS not started"
            );
            return;
        }
    };
    tracing::info!(
        stream = %exporter.config.stream,
        node = %exporter.config.node,
        "exporting events to NATS JetStream"
    );
    let mut backoff = Duration::ZERO;
    loop {
        match exporter.export_once(&state.db, state.clock.now()).await {
            Ok(pass) => {
                if !backoff.is_zero() {
                    tracing::info!("event export to NATS resumed");
                }
                backoff = Duration::ZERO;
                if !pass.more {
                    tokio::time::sleep(IDLE_INTERVAL).await;
                }
            }
            Err(error) => {
                backoff = (backoff * 2).clamp(IDLE_INTERVAL * 2, MAX_BACKOFF);
                tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "event export to NATS failed; events wait in the outbox"
                );
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
