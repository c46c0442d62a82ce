//! Group commit for hot domain paths (DESIGN rule 5): flash-sale stock, group-buy team slots.
//!
//! Callers submit one request each and wait. One worker takes everything queued (up to
//! `max_batch` requests) and hands the batch to the domain's `process`, which decides every
//! request in one database transaction and returns one outcome per request, in order. There is
//! no artificial wait: while a batch commits the next one queues, so batches are small at low
//! load and large under a rush. The queue is bounded so that overload becomes back-pressure.
//!
//! The ledger has its own executor (`ledger::executor`) because it also chooses optimistic or
//! pessimistic locking per attempt; this one is the general form. Exactness never depends on
//! the batcher being the only writer: `process` locks or conditionally updates the rows it
//! decides on, so several processes against one PostgreSQL stay exact.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::clock::Clock;
use super::db::{Db, Tx};
use super::error::{ApiError, ApiResult};

/// Most requests waiting.
pub const QUEUE_CAPACITY: usize = 50_000;

type Process<R, O> =
    Arc<dyn Fn(Vec<R>) -> Pin<Box<dyn Future<Output = Vec<ApiResult<O>>> + Send>> + Send + Sync>;

struct Submission<R, O> {
    request: R,
    reply: oneshot::Sender<ApiResult<O>>,
}

/// Handle to one batching worker; cheap to clone.
pub struct Batcher<R, O> {
    sender: mpsc::Sender<Submission<R, O>>,
}

impl<R, O> Clone for Batcher<R, O> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<R: Send + 'static, O: Send + 'static> Batcher<R, O> {
    /// Start the worker on the current runtime. `process` gets at most `max_batch` requests and
    /// must return exactly one outcome per request, in order.
    pub fn start<F, Fut>(max_batch: usize, process: F) -> Self
    where
        F: Fn(Vec<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<ApiResult<O>>> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let process: Process<R, O> = Arc::new(move |batch| Box::pin(process(batch)));
        tokio::spawn(worker(max_batch.max(1), process, receiver));
        Self { sender }
    }

    /// Submit one request; it is decided together with whatever else is queued.
    pub async fn submit(&self, request: R) -> ApiResult<O> {
        let (reply, receive) = oneshot::channel();
        self.sender
            .send(Submission { request, reply })
            .await
            .map_err(|_| ApiError::unavailable("shutting down"))?;
        receive
            .await
            .map_err(|_| ApiError::unavailable("shutting down"))?
    }
}

async fn worker<R, O>(
    max_batch: usize,
    process: Process<R, O>,
    mut receiver: mpsc::Receiver<Submission<R, O>>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        let (requests, replies): (Vec<R>, Vec<_>) =
            batch.drain(..).map(|s| (s.request, s.reply)).unzip();
        let count = requests.len();
        let outcomes = process(requests).await;
        if outcomes.len() != count {
            tracing::error!(
                expected = count,
                got = outcomes.len(),
                "batch returned the wrong number of outcomes"
            );
            for reply in replies {
                let _ = reply.send(Err(ApiError::internal(anyhow::anyhow!(
                    "batch returned the wrong number of outcomes"
                ))));
            }
            continue;
        }
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// Attempts for a batch that hits a transient conflict.
const ATTEMPTS: usize = 4;

/// A domain's decision over a batch, made inside one transaction.
#[async_trait::async_trait]
pub trait Decide: Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    type Outcome: Send + 'static;

    /// Decide every request inside `tx`, one outcome each, in order. A refusal is an outcome;
    /// a database error aborts the whole batch (retried whole when transient, else decided
    /// again in halves).
    async fn decide(
        &self,
        tx: &mut Tx,
        requests: &[Self::Request],
    ) -> Result<Vec<ApiResult<Self::Outcome>>, sqlx::Error>;
}

/// Decide a batch in one transaction, retrying it whole on a transient conflict. A batch that
/// still fails is decided again in halves (DESIGN rule 13), down to single requests, so that
/// a request the database refuses fails alone and every other caller gets its own outcome.
pub async fn decide_batch<D: Decide>(
    decider: &D,
    db: &Db,
    clock: &dyn Clock,
    requests: &[D::Request],
) -> Vec<ApiResult<D::Outcome>> {
    match decide_whole(decider, db, clock, requests).await {
        Ok(outcomes) => outcomes,
        Err(error) if requests.len() > 1 => {
            tracing::warn!(%error, requests = requests.len(), "batch failed; deciding it again in halves");
            let (first, second) = requests.split_at(requests.len() / 2);
            let mut outcomes = Box::pin(decide_batch(decider, db, clock, first)).await;
            outcomes.extend(Box::pin(decide_batch(decider, db, clock, second)).await);
            outcomes
        }
        Err(error) => {
            tracing::error!(%error, "request failed in its own batch");
            vec![Err(ApiError::internal(anyhow::anyhow!("{error}")))]
        }
    }
}

/// One batch in one transaction, retried whole on a transient conflict.
async fn decide_whole<D: Decide>(
    decider: &D,
    db: &Db,
    clock: &dyn Clock,
    requests: &[D::Request],
) -> Result<Vec<ApiResult<D::Outcome>>, sqlx::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = async {
            let mut tx = db.begin(clock.now()).await?;
            let outcomes = decider.decide(&mut tx, requests).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(outcomes)
        }
        .await;
        match outcome {
            Err(error) if attempt < ATTEMPTS && is_transient(&error) => {
                tracing::debug!(%error, attempt, "batch conflict; retrying");
            }
            other => return other,
        }
    }
}

impl<R: Send + Sync + 'static, O: Send + 'static> Batcher<R, O> {
    /// A batcher whose batches `decider` decides, each in one transaction.
    pub fn deciding<D>(max_batch: usize, decider: D, db: Db, clock: Arc<dyn Clock>) -> Self
    where
        D: Decide<Request = R, Outcome = O>,
    {
        let decider = Arc::new(decider);
        Batcher::start(max_batch, move |requests: Vec<R>| {
            let (decider, db, clock) = (decider.clone(), db.clone(), clock.clone());
            async move { decide_batch(decider.as_ref(), &db, clock.as_ref(), &requests).await }
        })
    }
}

/// Abort a batch over an unexpected domain error (a broken invariant, not a refusal).
pub fn abort(error: ApiError) -> sqlx::Error {
    sqlx::Error::Protocol(error.message.clone())
}

/// Is this database error worth retrying the whole batch (deadlock, serialization failure,
/// busy SQLite, a unique key inserted concurrently by another process)?
pub fn is_transient(error: &sqlx::Error) -> bool {
    if let sqlx::Error::Database(db) = error {
        if let Some(code) = db.code() {
            return matches!(
                code.as_ref(),
                "40001" | "40P01" | "23505" | "5" | "517" | "2067" | "1555"
            );
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_caller_gets_its_own_outcome_and_batches_form_under_load() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher: Batcher<u32, u32> = Batcher::start(64, move |batch: Vec<u32>| {
            seen.lock().unwrap().push(batch.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                batch
                    .into_iter()
                    .map(|n| {
                        if n % 7 == 0 {
                            Err(ApiError::conflict(
                                super::super::error::codes::SOLD_OUT,
                                "multiple of seven",
                            ))
                        } else {
                            Ok(n * 2)
                        }
                    })
                    .collect()
            }
        });
        let tasks: Vec<_> = (1..=500u32)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (n, batcher.submit(n).await) })
            })
            .collect();
        for task in tasks {
            let (n, outcome) = task.await.unwrap();
            match outcome {
                Ok(doubled) => assert_eq!(doubled, n * 2),
                Err(error) => {
                    assert_eq!(n % 7, 0);
                    assert_eq!(error.code, "sold_out");
                }
            }
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 500);
        assert!(sizes.iter().all(|&s| s <= 64));
        assert!(sizes.len() < 500, "no batching happened: {sizes:?}");
    }
}
