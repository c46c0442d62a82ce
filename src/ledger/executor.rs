//! The coalescing executor (DESIGN rule 5): group commit for the ledger.
//!
//! Callers submit their operations and wait. One worker takes everything queued, up to
//! [`MAX_BATCH_OPS`] operations, and applies it in one database transaction: each account row
//! is written once per batch however many transfers touch it (the hot system account
//! included), and each caller gets its own results. There is no artificial wait: while one
//! batch commits, the next one queues, so batches are small at low load (low latency) and large
//! at high load (high throughput). The queue is bounded ([`QUEUE_CAPACITY`]) so that overload
//! becomes back-pressure, not memory growth.
//!
//! Batches are pipelined two deep. While batch N commits (on SQLite, on the writer connection's
//! thread), the worker decides batch N+1 ([`store::prepare`]): it reads accounts and transfer
//! ids on a reader connection, lays over them what N will have written, and applies the rules.
//! N+1 is written only once N has committed as decided, with a compare-and-swap on every
//! account; if N did not commit as decided, or the swap finds an account changed by another
//! writer (domain code in its own transaction, another process), N+1 is applied the locking
//! way instead ([`store::apply`]), as are batches that must create accounts. Deciding and
//! committing thus use both cores, where before one always waited for the other.
//!
//! On a SQLite file both ends skip sqlx's `Any` driver, whose per-value conversions and
//! per-statement thread hand-offs cost more than SQLite's own work on the critical path: a
//! batch's transfer ids are looked up on a direct reader connection and a prepared batch is
//! written in one blocking call on the direct writer connection
//! ([`crate::common::db::Db::write_direct`], [`store::write_prepared_direct`]).
//!
//! Exactness does not depend on the executor being the only writer: `store::apply` locks
//! accounts in a fixed order and re-reads ids and resolutions under those locks, so several
//! shequn processes against one PostgreSQL stay exact. A batch that fails on a transient
//! conflict (deadlock, serialization failure, a transfer id inserted concurrently by another
//! process) is retried whole; one that fails otherwise is decided again in halves, so a
//! request the database refuses fails alone and every other caller gets its own outcome.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::engine::Op;
use super::model::TransferResult;
use super::store;
use crate::common::clock::Clock;
use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::TenantId;

/// Most operations applied in one transaction.
pub const MAX_BATCH_OPS: usize = 1000;
/// Most submissions waiting.
pub const QUEUE_CAPACITY: usize = 20_000;
/// Attempts for a batch that hits a transient conflict.
const ATTEMPTS: usize = 4;

struct Submission {
    tenant_id: TenantId,
    ops: Vec<Op>,
    reply: oneshot::Sender<ApiResult<Vec<TransferResult>>>,
}

/// Handle to the ledger's executor; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Submission>,
    db: Db,
}

impl Ledger {
    /// Start the worker on the current runtime.
    pub fn start(db: Db, clock: Arc<dyn Clock>) -> Ledger {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(worker(db.clone(), clock, receiver));
        Ledger { sender, db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Apply operations through the executor; they are batched with other callers'.
    pub async fn submit(
        &self,
        tenant_id: &TenantId,
        ops: Vec<Op>,
    ) -> ApiResult<Vec<TransferResult>> {
        let (reply, receive) = oneshot::channel();
        self.sender
            .send(Submission {
                tenant_id: tenant_id.clone(),
                ops,
                reply,
            })
            .await
            .map_err(|_| ApiError::unavailable("the ledger is shutting down"))?;
        receive
            .await
            .map_err(|_| ApiError::unavailable("the ledger is shutting down"))?
    }
}

async fn worker(db: Db, clock: Arc<dyn Clock>, mut receiver: mpsc::Receiver<Submission>) {
    let mut in_flight: Option<InFlight> = None;
    let mut caches: HashMap<TenantId, store::AccountCache> = HashMap::new();
    while let Some(first) = receiver.recv().await {
        let mut ops = first.ops.len();
        let mut batch = vec![first];
        while ops < MAX_BATCH_OPS {
            match receiver.try_recv() {
                Ok(next) => {
                    ops += next.ops.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Decide this batch while the previous one commits, over what that one will write.
        let now = clock.now();
        let overlays = in_flight.as_ref().map(|f| &f.overlays);
        let prepared = prepare(&db, &batch, overlays, &mut caches, now).await;
        let mut previous = in_flight.take();
        let previous_committed = match &mut previous {
            Some(previous) => (&mut previous.committed).await.unwrap_or(false),
            None => true,
        };
        match prepared {
            Some(prepared) if previous_committed => {
                let overlays = prepared
                    .iter()
                    .map(|p| (p.tenant_id.clone(), p.prepared.overlay()))
                    .collect();
                let (done, committed) = oneshot::channel();
                let answered =
                    tokio::spawn(commit(db.clone(), clock.clone(), batch, prepared, done));
                in_flight = Some(InFlight {
                    committed,
                    answered,
                    overlays,
                });
                // Gather the next batch only once the previous one's callers have their
                // answers and have had a turn to submit again: gathered earlier, it would
                // miss them, and they would wait a whole extra batch.
                if let Some(previous) = previous {
                    let _ = previous.answered.await;
                    tokio::task::yield_now().await;
                }
            }
            // An account to create, a read that failed, or decisions made over a previous
            // batch that did not commit as decided: apply this one under locks, and forget
            // what the caches hold (decisions never written, accounts changed under locks).
            _ => {
                caches.clear();
                execute(&db, clock.as_ref(), batch).await;
            }
        }
    }
    if let Some(previous) = in_flight {
        let _ = previous.answered.await;
    }
}

/// The batch being committed while the next one is decided.
struct InFlight {
    /// True when it committed exactly as decided (then the overlays hold); sent as soon as
    /// it committed, before its callers are answered, so that the next batch's write starts
    /// without waiting for those hand-offs.
    committed: oneshot::Receiver<bool>,
    /// Finishes once its callers have been answered.
    answered: tokio::task::JoinHandle<()>,
    overlays: HashMap<TenantId, store::Overlay>,
}

/// One tenant's part of a prepared batch.
struct TenantPart {
    tenant_id: TenantId,
    /// Positions of this tenant's submissions in the batch.
    indices: Vec<usize>,
    prepared: store::Prepared,
}

/// Decide a batch on a reader connection (see [`store::prepare`]); `None` when it must take
/// the locking path instead.
async fn prepare(
    db: &Db,
    batch: &[Submission],
    overlays: Option<&HashMap<TenantId, store::Overlay>>,
    caches: &mut HashMap<TenantId, store::AccountCache>,
    now: jiff::Timestamp,
) -> Option<Vec<TenantPart>> {
    let mut conn = db.read().acquire().await.ok()?;
    let mut parts = Vec::new();
    for tenant_id in tenants_in(batch) {
        let indices: Vec<usize> = (0..batch.len())
            .filter(|&i| &batch[i].tenant_id == tenant_id)
            .collect();
        let requests: Vec<&[Op]> = indices.iter().map(|&i| batch[i].ops.as_slice()).collect();
        let overlay = overlays.and_then(|o| o.get(tenant_id));
        let cache = caches.entry(tenant_id.clone()).or_default();
        match store::prepare(db, &mut conn, tenant_id, &requests, overlay, cache, now).await {
            Ok(Some(prepared)) => parts.push(TenantPart {
                tenant_id: tenant_id.clone(),
                indices,
                prepared,
            }),
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!(%error, "preparing a ledger batch failed; applying it under locks");
                return None;
            }
        }
    }
    Some(parts)
}

/// Write a prepared batch and answer its callers; if the write fails (another writer changed
/// an account or took a transfer id meanwhile), apply the batch under locks instead. Tells
/// `done` whether it committed as prepared.
async fn commit(
    db: Db,
    clock: Arc<dyn Clock>,
    batch: Vec<Submission>,
    parts: Vec<TenantPart>,
    done: oneshot::Sender<bool>,
) {
    let started = std::time::Instant::now();
    let direct: Vec<(&TenantId, &store::Prepared)> =
        parts.iter().map(|p| (&p.tenant_id, &p.prepared)).collect();
    let written = match store::write_prepared_direct(&db, &direct).await {
        Some(written) => written.map_err(ApiError::internal),
        None => {
            async {
                let now = parts
                    .first()
                    .map(|p| p.prepared.now())
                    .unwrap_or_else(|| clock.now());
                let mut tx = db.begin(now).await.map_err(ApiError::from)?;
                for part in &parts {
                    store::write_prepared(&mut tx, &part.tenant_id, &part.prepared).await?;
                }
                tx.commit().await.map_err(ApiError::from)
            }
            .await
        }
    };
    match written {
        Ok(()) => {
            let _ = done.send(true);
            tracing::debug!(
                submissions = batch.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "ledger batch committed as prepared"
            );
            let mut batch: Vec<Option<Submission>> = batch.into_iter().map(Some).collect();
            for part in parts {
                for (index, results) in part.indices.into_iter().zip(part.prepared.results) {
                    if let Some(submission) = batch[index].take() {
                        let _ = submission.reply.send(Ok(results));
                    }
                }
            }
        }
        Err(error) => {
            tracing::debug!(%error, "prepared ledger batch not written; applying it under locks");
            execute(&db, clock.as_ref(), batch).await;
            let _ = done.send(false);
        }
    }
}

/// The batch's tenants in a fixed order.
fn tenants_in(batch: &[Submission]) -> Vec<&TenantId> {
    let mut tenants: Vec<&TenantId> = batch.iter().map(|s| &s.tenant_id).collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

async fn execute(db: &Db, clock: &dyn Clock, batch: Vec<Submission>) {
    // Tenants in a fixed order, each tenant's submissions in arrival order.
    let tenants = tenants_in(&batch);
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        // The first attempt is optimistic; a lost race retries with row locks, which always
        // makes progress.
        let locking = if attempt == 1 {
            store::Locking::Optimistic
        } else {
            store::Locking::Pessimistic
        };
        match run(db, clock, &batch, &tenants, locking).await {
            Ok(results) => break Ok(results),
            Err(error) if attempt < ATTEMPTS && is_transient(&error) => {
                tracing::debug!(%error, attempt, "ledger batch conflict; retrying");
            }
            Err(error) => break Err(error),
        }
    };
    tracing::debug!(
        submissions = batch.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        attempts = attempt,
        "ledger batch"
    );
    match outcome {
        Ok(mut results) => {
            for (i, submission) in batch.into_iter().enumerate() {
                let result = std::mem::take(&mut results[i]);
                let _ = submission.reply.send(Ok(result));
            }
        }
        // One request never answers for another (DESIGN rule 13): a batch that failed is
        // decided again in halves, down to the one submission that fails on its own.
        Err(error) if batch.len() > 1 => {
            tracing::warn!(%error, submissions = batch.len(), "ledger batch failed; deciding it again in halves");
            let mut first = batch;
            let second = first.split_off(first.len() / 2);
            Box::pin(execute(db, clock, first)).await;
            Box::pin(execute(db, clock, second)).await;
        }
        Err(error) => {
            let message = format!("{error:#}");
            tracing::error!(error = %message, "ledger submission failed");
            for submission in batch {
                let _ = submission
                    .reply
                    .send(Err(ApiError::internal(anyhow::anyhow!("{message}"))));
            }
        }
    }
}

async fn run(
    db: &Db,
    clock: &dyn Clock,
    batch: &[Submission],
    tenants: &[&TenantId],
    locking: store::Locking,
) -> anyhow::Result<Vec<Vec<TransferResult>>> {
    let mut results: Vec<Vec<TransferResult>> = vec![Vec::new(); batch.len()];
    let mut tx = db.begin(clock.now()).await?;
    for tenant in tenants {
        let indices: Vec<usize> = (0..batch.len())
            .filter(|&i| &batch[i].tenant_id == *tenant)
            .collect();
        let requests: Vec<&[Op]> = indices.iter().map(|&i| batch[i].ops.as_slice()).collect();
        let per_request = store::apply(&mut tx, tenant, &requests, locking)
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        for (index, result) in indices.into_iter().zip(per_request) {
            results[index] = result;
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Deadlocks, serialization failures, concurrent inserts of the same id, a busy SQLite.
fn is_transient(error: &anyhow::Error) -> bool {
    let text = error.to_string();
    if let Some(sqlx::Error::Database(db)) = error.downcast_ref::<sqlx::Error>() {
        if let Some(code) = db.code() {
            if matches!(
                code.as_ref(),
                "40001" | "40P01" | "23505" | "5" | "517" | "2067" | "1555"
            ) {
                return true;
            }
        }
    }
    text.contains(store::CONCURRENT_UPDATE)
        || text.contains("deadlock")
        || text.contains("could not serialize")
        || text.contains("duplicate key")
        || text.contains("UNIQUE constraint failed")
        || text.contains("database is locked")
}
