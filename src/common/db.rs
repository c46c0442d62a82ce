//! The database: one schema, one set of SQL texts, two back ends.
//!
//! shequn talks to SQLite (embedded, the default) and PostgreSQL through sqlx's `Any` driver,
//! so every query is written once and runs on both. The rules that make that work:
//! placeholders are `$1, $2, …` (both drivers accept them), columns are `BIGINT` or `TEXT` only
//! (the `Any` driver has no SQLite boolean; flags are 0/1), instants are microseconds since the
//! epoch, JSON is stored as text, and aggregates that PostgreSQL would widen to `NUMERIC` are
//! cast back to `BIGINT`. Migrations live in `migrations/sqlite` and `migrations/postgres` with
//! the same file names for the same change, and both are embedded in the binary.
//!
//! SQLite allows one writer at a time, so on SQLite the [`Db`] keeps a write pool of exactly
//! one connection (writers queue in the pool instead of failing with `SQLITE_BUSY`) beside a
//! read pool; WAL mode lets readers run while the writer works. On PostgreSQL both are one pool.
//!
//! On a SQLite file the [`Db`] also opens two *direct* connections through rusqlite
//! ([`Db::write_direct`], [`Db::read_direct`]) for the ledger executor's batches. A batch
//! writes about a thousand rows, and through the `Any` driver each value was converted twice
//! on the async side and every statement was a round trip to the driver's worker thread: less
//! than half of a batch's commit was SQLite working (measured with `shequn bench ledger` and
//! perf), and that commit is the executor's critical path. The direct writer runs a whole
//! transaction of cached prepared statements in one blocking call, under the process's write
//! lock that every writer takes, so it never races the pool's writer.
//!
//! Requests' reads that go through [`Db::reader`] use a few more direct connections
//! ([`super::reader`]): sqlx's thread hand-offs were most of a simple read's cost.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _};

use super::outbox::{self, NewEvent};
use super::reader::{DirectReaders, Reader, DIRECT_READERS};

pub use super::sql::Backend;

/// Connection pools to the database.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    /// SQLite files only: the connections of [`Db::write_direct`] and [`Db::read_direct`].
    direct: Option<Direct>,
    /// SQLite only: this process's write lock, taken by every write ([`Db::begin`],
    /// [`Db::write_conn`], [`Db::write_direct`]). The pool's writer and the direct connection
    /// are two SQLite connections; without this lock they would meet at SQLite's file lock,
    /// where the loser sleeps through busy_timeout's back-off. (Holding the pool's one
    /// connection as the lock did the same, but sqlx pings a connection on its way back to
    /// the pool, which put a third of a millisecond between two ledger batches.)
    write_lock: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Woken after every [`Tx`] that wrote events commits, so that this process's outbox
    /// readers (automations) start at once instead of at their next poll.
    committed: Arc<tokio::sync::Notify>,
    /// What this handle's committed transactions signalled ([`Tx::signal_on_commit`]).
    signals: Arc<CommitSignals>,
}

/// Per topic, how many of this handle's transactions that signalled the topic have committed:
/// a cache on this node compares the number with the one it saw when it last read the database,
/// and so notices the node's own writes at once (other nodes' writes it learns from the
/// database). Topics are the few names that caches watch, so the map stays small.
#[derive(Debug, Default)]
struct CommitSignals {
    generations: Mutex<HashMap<&'static str, u64>>,
}

impl CommitSignals {
    fn generation(&self, topic: &str) -> u64 {
        self.generations
            .lock()
            .map(|g| g.get(topic).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn bump(&self, topics: &[&'static str]) {
        if let Ok(mut generations) = self.generations.lock() {
            for topic in topics {
                let generation = generations.entry(topic).or_insert(0);
                *generation = generation.wrapping_add(1);
            }
        }
    }
}

/// How many connections the PostgreSQL pool may open per process.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 32;
/// A PostgreSQL connection idle at least this long is pinged before it is handed out.
const POSTGRES_PING_AFTER_IDLE: Duration = Duration::from_secs(10);
/// How many read connections SQLite gets beside its single writer.
pub const SQLITE_READ_CONNECTIONS: u32 = 8;

impl Db {
    /// Connect to `sqlite://PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url);
                let options = AnyConnectOptions::from_str(&url)
                    .with_context(|| format!("parsing database URL {url}"))?;
                let write = sqlite_pool(1)
                    .connect_with(options.clone())
                    .await
                    .with_context(|| format!("opening SQLite database {url}"))?;
                let read = sqlite_pool(SQLITE_READ_CONNECTIONS)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("opening SQLite database {url}"))?;
                let direct =
                    open_direct(&url).with_context(|| format!("opening SQLite database {url}"))?;
                Ok(Db {
                    backend,
                    read,
                    write,
                    direct,
                    write_lock: Some(Arc::new(tokio::sync::Mutex::new(()))),
                    committed: Arc::default(),
                    signals: Arc::default(),
                })
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url).context("parsing database URL")?;
                let pool = AnyPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(30))
                    // sqlx pings every connection it hands out (a round trip to the server
                    // before each query's own) and again when it takes one back. The second
                    // ping cannot be turned off and already finds a connection the server
                    // dropped while it was in use; the first matters only for a connection
                    // that sat idle long enough for the server or a proxy to drop it.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= POSTGRES_PING_AFTER_IDLE {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(options)
                    .await
                    .context("connecting to PostgreSQL")?;
                Ok(Db {
                    backend,
                    read: pool.clone(),
                    write: pool,
                    direct: None,
                    write_lock: None,
                    committed: Arc::default(),
                    signals: Arc::default(),
                })
            }
        }
    }

    /// Apply the embedded migrations of this back end.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(&self.write)
            .await
            .context("running database migrations")?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many transactions of this handle (and its clones) that signalled `topic` have
    /// committed ([`Tx::signal_on_commit`]).
    pub fn commit_generation(&self, topic: &str) -> u64 {
        self.signals.generation(topic)
    }

    /// The pool for queries that only read.
    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    /// A connection for writes outside a [`Tx`] (single autocommit statements; prefer
    /// [`Db::begin`]), holding the write lock on SQLite until it is dropped.
    pub async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        let lock = self.lock_writes().await;
        Ok(WriteConn {
            conn: self.write.acquire().await?,
            _lock: lock,
        })
    }

    async fn lock_writes(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Begin a write transaction; `now` is the instant its events are stamped with.
    /// Notified (one stored permit) after a [`Tx`] that wrote events commits in this process.
    pub fn events_committed(&self) -> Arc<tokio::sync::Notify> {
        self.committed.clone()
    }

    pub async fn begin(&self, now: Timestamp) -> Result<Tx, sqlx::Error> {
        // SQLite: take the write lock at BEGIN. A deferred transaction that upgrades from
        // reader to writer while another connection (another process, or a second pool) holds
        // the lock fails at once with SQLITE_BUSY instead of waiting for busy_timeout.
        let write_lock = self.lock_writes().await;
        let inner = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        Ok(Tx {
            inner,
            events: Vec::new(),
            now,
            backend: self.backend,
            committed: self.committed.clone(),
            signals: self.signals.clone(),
            topics: Vec::new(),
            _write_lock: write_lock,
        })
    }

    /// Whether this database has the direct SQLite connections of [`Db::write_direct`] and
    /// [`Db::read_direct`] (a SQLite file).
    pub fn has_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Run `work` in one write transaction (`BEGIN IMMEDIATE`) on the direct SQLite
    /// connection and commit it; an error from `work` rolls everything back. `None` when this
    /// database has no direct connection (PostgreSQL, an in-memory SQLite): use [`Db::begin`].
    ///
    /// The write lock is held meanwhile, so no other transaction of this process writes at
    /// the same time and the direct connection never waits for its own process (other
    /// processes are waited for by `busy_timeout`). Events are not buffered here: `work`
    /// appends them itself ([`crate::common::outbox::append_direct`]); a commit wakes this
    /// process's outbox readers as [`Tx::commit`] does.
    pub async fn write_direct<T, F>(&self, work: F) -> Option<anyhow::Result<T>>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let direct = self.direct.as_ref()?.write.clone();
        let _write_lock = self.lock_writes().await;
        let written = tokio::task::spawn_blocking(move || {
            let mut conn = direct
                .lock()
                .map_err(|_| anyhow::anyhow!("direct SQLite connection poisoned"))?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = work(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await;
        let written = written.unwrap_or_else(|e| Err(e.into()));
        if written.is_ok() {
            self.committed.notify_one();
        }
        Some(written)
    }

    /// Run `work` on the direct SQLite reader connection, on this thread ([`in_place`]);
    /// `None` without one (PostgreSQL, an in-memory SQLite). For the ledger executor's reads
    /// of a batch's transfer ids, which through the `Any` driver cost more than SQLite's
    /// lookups themselves.
    pub fn read_direct<T>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T>,
    ) -> Option<anyhow::Result<T>> {
        let conn = match self.direct.as_ref()?.read.lock() {
            Ok(conn) => conn,
            Err(_) => return Some(Err(anyhow::anyhow!("direct SQLite connection poisoned"))),
        };
        Some(in_place(move || work(&conn)))
    }

    /// The direct read connections of a SQLite file.
    pub fn direct_readers(&self) -> Option<Arc<DirectReaders>> {
        self.direct.as_ref().map(|d| d.readers.clone())
    }

    /// Where a request reads ([`super::reader`]): this SQLite file's direct connections, else
    /// a pool connection.
    pub async fn reader(&self) -> Result<Reader<'static>, sqlx::Error> {
        match self.direct_readers() {
            Some(direct) => Ok(Reader::Direct(direct, self.read.clone())),
            None => Ok(Reader::Pooled(self.read.acquire().await?)),
        }
    }

    /// Pool sizes for `/metrics`: (pool name, open connections, idle connections).
    pub fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        match self.backend {
            Backend::Sqlite => vec![
                ("read", self.read.size(), self.read.num_idle()),
                ("write", self.write.size(), self.write.num_idle()),
            ],
            Backend::Postgres => vec![("main", self.write.size(), self.write.num_idle())],
        }
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// `sqlite://PATH` with `mode=rwc` so that a missing file is created.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Run blocking database work on this thread: on a multi-threaded runtime through
/// `block_in_place`, which first hands this worker's other tasks to another thread.
/// `spawn_blocking` instead woke a thread of the blocking pool and then this task again; on a
/// busy two-core machine each wake-up waited for a core, up to a millisecond per ledger batch
/// (measured with `shequn bench ledger`), and that wait sat on the executor's critical path.
pub(crate) fn in_place<T>(work: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// The direct connections to one SQLite file.
#[derive(Debug, Clone)]
struct Direct {
    write: Arc<Mutex<rusqlite::Connection>>,
    read: Arc<Mutex<rusqlite::Connection>>,
    /// The requests' reads ([`super::reader`]).
    readers: Arc<DirectReaders>,
}

/// The direct connections to the SQLite file of `url` (with the pools' pragmas), or `None`
/// for an in-memory database, which other connections would not share. Also starts the
/// file's checkpointer ([`checkpoint_in_background`]).
fn open_direct(url: &str) -> anyhow::Result<Option<Direct>> {
    let options = SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename();
    if url.contains(":memory:")
        || path.as_os_str().is_empty()
        || path == std::path::Path::new(":memory:")
    {
        return Ok(None);
    }
    let direct = Direct {
        write: Arc::new(Mutex::new(open_rusqlite(path)?)),
        read: Arc::new(Mutex::new(open_rusqlite(path)?)),
        readers: Arc::new(DirectReaders::new(
            (0..DIRECT_READERS)
                .map(|_| open_rusqlite(path))
                .collect::<anyhow::Result<_>>()?,
        )),
    };
    let checkpointer = open_rusqlite(path)?;
    let owner = Arc::downgrade(&direct.write);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || checkpoint_in_background(checkpointer, owner))?;
    Ok(Some(direct))
}

fn open_rusqlite(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    for pragma in SQLITE_PRAGMAS {
        // Some pragmas answer with a row (journal_mode); read and drop it.
        conn.query_row(pragma, [], |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })?;
    }
    Ok(conn)
}

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Copy committed pages from the WAL into the database file every [`CHECKPOINT_INTERVAL`]
/// (a PASSIVE checkpoint: it never blocks the writer or readers), until the [`Db`] that owns
/// `owner` is dropped.
///
/// Writers do not checkpoint (`wal_autocheckpoint = 0`): SQLite's automatic checkpoint runs
/// inside the committing writer's transaction, and under `shequn bench ledger` one such
/// checkpoint of a 160 MiB WAL held the writer, and so the whole ledger, for a second. Here
/// it runs beside the writer, often enough that the WAL stays small (readers look pages up in
/// the WAL's index, which grows with it: `walFindFrame` was 7% of the benchmark's samples).
/// Other processes on the same file run their own; concurrent PASSIVE checkpoints are safe.
fn checkpoint_in_background(
    conn: rusqlite::Connection,
    owner: std::sync::Weak<Mutex<rusqlite::Connection>>,
) {
    loop {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if owner.strong_count() == 0 {
            return;
        }
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "SQLite checkpoint failed");
        }
    }
}

// WAL lets readers work while the one writer commits; NORMAL synchronous is durable against
// process crashes and is SQLite's recommended pairing with WAL. A 64 MiB page cache and
// memory-mapped reads keep hot pages (accounts, recent transfers) out of read syscalls; the
// default 2 MiB cache spilled under batch writes (measured with `shequn bench ledger` and
// perf).
//
// Writers never checkpoint: a background thread does (see [`checkpoint_in_background`]).
//
// `secure_delete` overwrites with zeros what a delete or an update frees, so that an erased
// member's name or phone does not live on in free space of the file's pages (DESIGN rule 10).
// It costs writes of freed space, not reads.
//
// `optimize = 0x10002` (as SQLite advises for long-lived connections) gathers the planner's
// statistics for tables that have none or whose size changed a lot, bounded by
// `analysis_limit`: without them the planner guesses, and on a grown file it guessed a
// group's GMV through the orders' `paid_at` index (3.2 s on the demo) instead of the
// member's orders (5 ms).
const SQLITE_PRAGMAS: [&str; 11] = [
    "PRAGMA secure_delete = ON",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA cache_size = -65536",
    "PRAGMA mmap_size = 268435456",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA wal_autocheckpoint = 0",
    "PRAGMA analysis_limit = 1000",
    "PRAGMA optimize = 0x10002",
];

fn sqlite_pool(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection does not go stale as a network connection can; sqlx's default
        // ping on every acquire was a round trip to the connection's thread for each query
        // (about a third of a millisecond of every ledger batch's commit).
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                for pragma in SQLITE_PRAGMAS {
                    conn.execute(pragma).await?;
                }
                Ok(())
            })
        })
}

/// A write transaction that also carries the events it will append to the outbox.
///
/// Events are buffered and written by [`Tx::commit`], just before the database commit, so the
/// per-tenant sequence row is locked as briefly as possible and event numbers follow commit order.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    events: Vec<NewEvent>,
    now: Timestamp,
    backend: Backend,
    committed: Arc<tokio::sync::Notify>,
    signals: Arc<CommitSignals>,
    /// Topics to signal once the commit has succeeded.
    topics: Vec<&'static str>,
    /// Released after `inner` (fields drop in order), once the transaction has ended.
    _write_lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The write pool's connection for statements outside a [`Tx`] ([`Db::write_conn`]).
pub struct WriteConn {
    conn: sqlx::pool::PoolConnection<Any>,
    _lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Tx {
    /// The connection to run queries on.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// The instant this transaction acts at.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The back end this transaction runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Record an event to be written with this transaction.
    pub fn emit(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// Advance `topic`'s commit generation ([`Db::commit_generation`]) once this transaction
    /// has committed, so this node's caches of what it changed look again.
    pub fn signal_on_commit(&mut self, topic: &'static str) {
        if !self.topics.contains(&topic) {
            self.topics.push(topic);
        }
    }

    /// Write the buffered events, then commit; then signal the topics.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let events = std::mem::take(&mut self.events);
        let wrote_events = !events.is_empty();
        if wrote_events {
            outbox::append(&mut self.inner, events, self.now).await?;
        }
        let topics = std::mem::take(&mut self.topics);
        let signals = self.signals.clone();
        self.inner.commit().await?;
        if !topics.is_empty() {
            signals.bump(&topics);
        }
        if wrote_events {
            // One stored permit wakes the next wait, however many commits came meanwhile.
            self.committed.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

/// Ping the database (for `/healthz`).
pub async fn ping(db: &Db) -> Result<(), sqlx::Error> {
    let mut conn = db.read().acquire().await?;
    conn.ping().await
}
