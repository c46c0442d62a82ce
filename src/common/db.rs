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

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _};

use super::events::{self, NewEvent};

/// Which database engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://…")
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Connection pools to the database.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
}

/// How many connections the PostgreSQL pool may open per process.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 32;
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
                Ok(Db {
                    backend,
                    read,
                    write,
                })
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url).context("parsing database URL")?;
                let pool = AnyPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await
                    .context("connecting to PostgreSQL")?;
                Ok(Db {
                    backend,
                    read: pool.clone(),
                    write: pool,
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

    /// The pool for queries that only read.
    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for writes outside a [`Tx`] (rare: prefer [`Db::begin`]).
    pub fn write(&self) -> &AnyPool {
        &self.write
    }

    /// Begin a write transaction; `now` is the instant its events are stamped with.
    pub async fn begin(&self, now: Timestamp) -> Result<Tx, sqlx::Error> {
        // SQLite: take the write lock at BEGIN. A deferred transaction that upgrades from
        // reader to writer while another connection (another process, or a second pool) holds
        // the lock fails at once with SQLITE_BUSY instead of waiting for busy_timeout.
        let inner = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        Ok(Tx {
            inner,
            events: Vec::new(),
            now,
            backend: self.backend,
        })
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

fn sqlite_pool(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL lets readers work while the one writer commits; NORMAL synchronous is
                // durable against process crashes and is SQLite's recommended pairing with WAL.
                // A 64 MiB page cache and memory-mapped reads keep hot pages (accounts, recent
                // transfers) out of read syscalls; the default 2 MiB cache spilled under batch
                // writes (measured with `shequn bench ledger` and perf).
                for pragma in [
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA busy_timeout = 10000",
                    "PRAGMA foreign_keys = ON",
                    "PRAGMA cache_size = -65536",
                    "PRAGMA mmap_size = 268435456",
                    "PRAGMA temp_store = MEMORY",
                    // Checkpoint the WAL every ~160 MiB (40,000 pages of 4 KiB) instead of
                    // SQLite's default 4 MiB: pages rewritten by many commits (accounts, and
                    // then the history indexes, which a ledger batch touched at a random page
                    // per member) are copied back once per checkpoint. The checkpoint runs inside
                    // the writer's commit; every ~40 MiB it still took a tenth of the writer's
                    // time under `shequn bench ledger` (perf), and raising it to 160 MiB
                    // lifted the figure by about a tenth. The price is a WAL file of that size.
                    "PRAGMA wal_autocheckpoint = 40000",
                ] {
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

    /// Write the buffered events, then commit.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            events::append(&mut self.inner, events, self.now).await?;
        }
        self.inner.commit().await
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
