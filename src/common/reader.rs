//! Reads that a request answers from: on a SQLite file, run on direct rusqlite connections on
//! the request's own thread; elsewhere, on a pool connection. Both answer with sqlx's
//! [`AnyRow`], so a read is written once ([`Sql`]) and its rows are mapped once. [`crate::common::db::Db::reader`] gives one.
//!
//! Why: sqlx's SQLite driver gives every connection a worker thread. A query is a message to
//! that thread and its rows come back as messages; and the pool pings a connection (another
//! round trip) each time it takes one back. On two cores, shared with the clients, those
//! hand-offs were most of an authenticated `GET /v1/members?limit=1`: `shequn bench http`
//! measured it at a fifth of a bare axum echo, while the same stack answering without the
//! database reached two thirds. A direct connection runs the statement where the request
//! runs: SQLite with a warm page cache answers an indexed read in microseconds, less than one
//! hand-off.
//!
//! The rows are built as sqlx's own drivers build them, from [`AnyRow`]'s public fields (sqlx
//! marks them exempt from semver, so `sqlx-core` is pinned to the exact version the rest of
//! sqlx is; an upgrade must look here again). No crate runs rusqlite statements into sqlx rows,
//! and writing the row mapping twice (one per driver) for every read would be worse.
//!
//! A read runs in place, on the request's worker thread: handing it to another thread (tokio's
//! `block_in_place`) cost as much as sqlx's hand-offs and measured slower than the pool. So
//! that a read which turns out long (a search that scans) never holds the worker for long,
//! SQLite's progress handler stops it after [`DIRECT_BUDGET_OPS`] virtual-machine steps
//! (around a millisecond) and the read is done again on the pool, whose own threads may take
//! as long as it needs. When every direct connection is busy the read goes to the pool too.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use sqlx_core::any::{AnyColumn, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

use super::sql::{backend_of, Arg, Backend, Sql};

/// How many direct read connections a SQLite file gets: one per core of this machine kind
/// and as many again for reads that wait on the disk.
pub const DIRECT_READERS: usize = 4;

/// SQLite virtual-machine steps between two calls of a direct connection's progress handler.
const PROGRESS_EVERY_OPS: i32 = 1_000;
/// Steps after which a direct read is stopped and sent to the pool instead.
pub const DIRECT_BUDGET_OPS: u32 = 100_000;

/// Direct read connections to one SQLite file.
#[derive(Debug)]
pub struct DirectReaders {
    conns: Vec<Mutex<DirectConn>>,
    /// Where the next read starts looking for a free connection.
    next: AtomicUsize,
    /// Reads stopped at their budget and done again on the pool.
    moved: AtomicU64,
}

#[derive(Debug)]
struct DirectConn {
    conn: rusqlite::Connection,
    /// Progress-handler calls since the current read began.
    steps: Arc<AtomicU32>,
    /// The columns of the statements this connection ran, by statement text (foldhash: the
    /// texts are the code's own, and SipHash over a whole statement cost a thousand
    /// instructions a read).
    columns: sqlx_core::HashMap<String, Remembered>,
}

/// A statement's columns as a direct connection last saw them, and how to tell whether they
/// still hold without asking SQLite for the names again (see [`Remembered::at_first_row`]).
#[derive(Debug)]
struct Remembered {
    columns: Arc<Columns>,
    /// The statement's `SQLITE_STMTSTATUS_RUN` at the first row of the run that saw them.
    runs: i32,
    /// Its `SQLITE_STMTSTATUS_REPREPARE` then.
    reprepared: i32,
}

/// Most statements whose columns a direct connection remembers; it forgets them all when full.
const MAX_REMEMBERED_STATEMENTS: usize = 64;

/// A statement's column names as its rows carry them. Asking SQLite for the names and building
/// the name index cost a member page about as much as its second statement did (callgrind), so
/// each connection builds them once per statement text and keeps them while they provably hold
/// ([`Remembered::at_first_row`]).
#[derive(Debug)]
struct Columns {
    names: Vec<UStr>,
    index: Arc<sqlx_core::HashMap<UStr, usize>>,
}

impl Columns {
    fn of(statement: &rusqlite::Statement<'_>) -> Self {
        let names: Vec<UStr> = statement
            .column_names()
            .into_iter()
            .map(UStr::new)
            .collect();
        let index = Arc::new(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i))
                .collect(),
        );
        Self { names, index }
    }
}

/// A direct read's outcome.
enum Direct<T> {
    Done(Result<T, sqlx::Error>),
    /// Stopped at its budget ([`DIRECT_BUDGET_OPS`]).
    TooLong,
    /// Every connection was busy.
    Busy,
}

impl DirectReaders {
    pub fn new(conns: Vec<rusqlite::Connection>) -> Self {
        let conns = conns
            .into_iter()
            .map(|conn| {
                let steps = Arc::new(AtomicU32::new(0));
                let counted = steps.clone();
                let limit = DIRECT_BUDGET_OPS / PROGRESS_EVERY_OPS.unsigned_abs();
                conn.progress_handler(
                    PROGRESS_EVERY_OPS,
                    Some(move || counted.fetch_add(1, Ordering::Relaxed) + 1 >= limit),
                );
                Mutex::new(DirectConn {
                    conn,
                    steps,
                    columns: sqlx_core::HashMap::default(),
                })
            })
            .collect();
        Self {
            conns,
            next: AtomicUsize::new(0),
            moved: AtomicU64::new(0),
        }
    }

    /// How many reads were stopped at their budget and done on the pool.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Run `work` on a free connection, in place, within the budget.
    fn try_with<T>(
        &self,
        work: impl FnOnce(&mut DirectConn) -> Result<T, sqlx::Error>,
    ) -> Direct<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            let slot = &self.conns[(start + i) % self.conns.len()];
            if let Ok(mut direct) = slot.try_lock() {
                direct.steps.store(0, Ordering::Relaxed);
                let outcome = work(&mut direct);
                return match outcome {
                    Err(sqlx::Error::AnyDriverError(error)) if is_interrupt(&*error) => {
                        self.moved.fetch_add(1, Ordering::Relaxed);
                        Direct::TooLong
                    }
                    outcome => Direct::Done(outcome),
                };
            }
        }
        Direct::Busy
    }
}

fn is_interrupt(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        error.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::OperationInterrupted
    )
}

/// Where a request reads: a connection it holds (a pool connection, or one inside a
/// transaction) or this database's direct connections.
pub enum Reader<'c> {
    Pooled(PoolConnection<Any>),
    Conn(&'c mut AnyConnection),
    /// A SQLite file's direct connections, and its read pool for reads they do not take.
    Direct(Arc<DirectReaders>, AnyPool),
}

impl<'c> From<&'c mut AnyConnection> for Reader<'c> {
    fn from(conn: &'c mut AnyConnection) -> Self {
        Reader::Conn(conn)
    }
}

impl Reader<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Reader::Pooled(conn) => backend_of(conn),
            Reader::Conn(conn) => backend_of(conn),
            Reader::Direct(..) => Backend::Sqlite,
        }
    }

    /// [`Sql::on`] for this reader's back end.
    pub fn sql(&self, text: &str) -> Sql {
        Sql::on(self.backend(), text)
    }

    /// Every row of `sql`.
    pub async fn fetch_all(&mut self, sql: &Sql) -> Result<Vec<AnyRow>, sqlx::Error> {
        match self {
            Reader::Pooled(conn) => sql.query().fetch_all(&mut **conn).await,
            Reader::Conn(conn) => sql.query().fetch_all(&mut **conn).await,
            Reader::Direct(direct, pool) => {
                match direct.try_with(|conn| fetch_all_direct(conn, sql.text(), sql.args())) {
                    Direct::Done(rows) => rows,
                    Direct::TooLong | Direct::Busy => {
                        let mut conn = pool.acquire().await?;
                        sql.query().fetch_all(&mut *conn).await
                    }
                }
            }
        }
    }
}

impl Remembered {
    /// The columns of `statement` at the first row of a run, given what its connection
    /// remembered of the statement's text (`previous`, taken out at the start of the run).
    ///
    /// They hold when the statement object is the one that last saw them and SQLite has not
    /// prepared it again since (it does after a schema change, and only then has the new
    /// columns). SQLite counts both per statement object: `RUN` goes up at the start of every
    /// run, and `REPREPARE` at every new preparation. Every run of a text on a connection
    /// starts by taking the text's entry out, and only a run that reached a row puts one back,
    /// so an entry is there only if no run of the text began since the one that saw it. Then a
    /// statement whose `RUN` is the entry's plus one is the same object: one that rusqlite's
    /// statement cache evicted and prepared afresh would be at its first run (`RUN` 1, and an
    /// entry's count is at least 1). A mismatch builds the columns again, so nothing stale is
    /// ever read; this replaced comparing every column name after the first step, which cost
    /// about 4.7k instructions a read (callgrind).
    fn at_first_row(previous: Option<&Remembered>, statement: &rusqlite::Statement<'_>) -> Self {
        let runs = statement.get_status(rusqlite::StatementStatus::Run);
        let reprepared = statement.get_status(rusqlite::StatementStatus::RePrepare);
        let columns = match previous {
            Some(seen) if runs == seen.runs.wrapping_add(1) && reprepared == seen.reprepared => {
                seen.columns.clone()
            }
            _ => Arc::new(Columns::of(statement)),
        };
        Remembered {
            columns,
            runs,
            reprepared,
        }
    }
}

/// Run `text` with `args` on `direct` and answer its rows as sqlx rows: integers as `BIGINT`,
/// text as `TEXT`, reals as `DOUBLE`, NULL as NULL (the column types the schema uses).
fn fetch_all_direct(
    direct: &mut DirectConn,
    text: &str,
    args: &[Arg],
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let DirectConn { conn, columns, .. } = direct;
    let mut statement = conn.prepare_cached(text).map_err(driver_error)?;
    // This run begins: the text's entry is taken out ([`Remembered::at_first_row`]).
    let previous = columns.remove_entry(text);
    for (i, arg) in args.iter().enumerate() {
        let index = i + 1;
        let bound = match arg {
            Arg::I64(v) => statement.raw_bind_parameter(index, v),
            Arg::OptI64(v) => statement.raw_bind_parameter(index, v),
            Arg::Text(v) => statement.raw_bind_parameter(index, v),
            Arg::OptText(v) => statement.raw_bind_parameter(index, v),
            Arg::F64(v) => statement.raw_bind_parameter(index, v),
            Arg::OptF64(v) => statement.raw_bind_parameter(index, v),
        };
        bound.map_err(driver_error)?;
    }
    let mut out = Vec::new();
    let mut rows = statement.raw_query();
    let mut seen: Option<Remembered> = None;
    while let Some(row) = rows.next().map_err(driver_error)? {
        // Asked after the first step: a statement from the cache that SQLite prepared again
        // (the schema changed) has its new columns only from then on.
        let known = &seen
            .get_or_insert_with(|| {
                Remembered::at_first_row(previous.as_ref().map(|(_, p)| p), row.as_ref())
            })
            .columns;
        let names = &known.names;
        let width = names.len();
        let mut columns = Vec::with_capacity(width);
        let mut values = Vec::with_capacity(width);
        for (ordinal, name) in names.iter().enumerate() {
            let (kind, type_kind) = match row.get_ref(ordinal).map_err(driver_error)? {
                ValueRef::Null => (
                    AnyValueKind::Null(AnyTypeInfoKind::Null),
                    AnyTypeInfoKind::Null,
                ),
                ValueRef::Integer(v) => (AnyValueKind::BigInt(v), AnyTypeInfoKind::BigInt),
                ValueRef::Real(v) => (AnyValueKind::Double(v), AnyTypeInfoKind::Double),
                ValueRef::Text(v) => (
                    AnyValueKind::Text(Cow::Owned(
                        String::from_utf8(v.to_vec()).map_err(|e| sqlx::Error::Decode(e.into()))?,
                    )),
                    AnyTypeInfoKind::Text,
                ),
                ValueRef::Blob(v) => (
                    AnyValueKind::Blob(Cow::Owned(v.to_vec())),
                    AnyTypeInfoKind::Blob,
                ),
            };
            columns.push(AnyColumn {
                ordinal,
                name: name.clone(),
                type_info: AnyTypeInfo { kind: type_kind },
            });
            values.push(AnyValue { kind });
        }
        out.push(AnyRow {
            column_names: known.index.clone(),
            columns,
            values,
        });
    }
    if let Some(seen) = seen {
        if columns.len() >= MAX_REMEMBERED_STATEMENTS {
            columns.clear();
        }
        let text = previous.map_or_else(|| text.to_owned(), |(text, _)| text);
        columns.insert(text, seen);
    }
    Ok(out)
}

fn driver_error(error: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::AnyDriverError(Box::new(error))
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;
    use crate::common::db::Db;

    /// (id, count, price, note) of every row, decoded as the stores decode them.
    fn decoded(rows: &[AnyRow]) -> Vec<(String, i64, f64, Option<String>)> {
        rows.iter()
            .map(|row| {
                (
                    row.try_get("id").expect("id"),
                    row.try_get("n").expect("n"),
                    row.try_get("price").expect("price"),
                    row.try_get("note").expect("note"),
                )
            })
            .collect()
    }

    async fn database() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.expect("connect");
        let mut conn = db.write_conn().await.expect("conn");
        sqlx::query(
            "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, price DOUBLE PRECISION, \
             note TEXT)",
        )
        .execute(&mut *conn)
        .await
        .expect("create");
        sqlx::query(
            "INSERT INTO t VALUES ('a', -7, 1.5, NULL), ('b', 9007199254740993, 0.25, '新'), \
             ('c', 0, 2.0, '')",
        )
        .execute(&mut *conn)
        .await
        .expect("insert");
        (db, dir)
    }

    fn query(reader: &Reader<'_>) -> Sql {
        let mut sql = reader.sql("SELECT id, n, price, note FROM t WHERE n > ");
        sql.bind(-100_i64)
            .push(" AND id <> ")
            .bind("z")
            .push(" ORDER BY id");
        sql
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_rows_decode_as_the_pool_rows_do() {
        let (db, _dir) = database().await;
        let mut direct = db.reader().await.expect("reader");
        assert!(matches!(direct, Reader::Direct(..)));
        let sql = query(&direct);
        let direct_rows = direct.fetch_all(&sql).await.expect("direct");

        let mut pooled = Reader::Pooled(db.read().acquire().await.expect("pool"));
        let pooled_rows = pooled.fetch_all(&query(&pooled)).await.expect("pooled");

        assert_eq!(decoded(&direct_rows), decoded(&pooled_rows));
        assert_eq!(
            decoded(&direct_rows),
            vec![
                ("a".to_owned(), -7, 1.5, None),
                (
                    "b".to_owned(),
                    9_007_199_254_740_993,
                    0.25,
                    Some("新".to_owned())
                ),
                ("c".to_owned(), 0, 2.0, Some(String::new())),
            ]
        );
        // A wrong type is refused as sqlx refuses it, not read as something else.
        assert!(direct_rows[0].try_get::<i64, _>("id").is_err());
        assert!(direct_rows[0].try_get::<String, _>("missing").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remembered_columns_follow_the_statement() {
        let (db, _dir) = database().await;
        let mut reader = db.reader().await.expect("reader");
        let star = reader.sql("SELECT * FROM t WHERE id = 'a'");
        // Every direct connection runs it at least once, so each remembers its columns.
        for _ in 0..DIRECT_READERS * 2 {
            let rows = reader.fetch_all(&star).await.expect("rows");
            assert_eq!(rows[0].try_get::<i64, _>("n").expect("n"), -7);
            assert!(rows[0].try_get::<String, _>("extra").is_err());
        }
        let other = reader.sql("SELECT n AS id, id AS n FROM t WHERE id = 'a'");
        let rows = reader.fetch_all(&other).await.expect("rows");
        assert_eq!(rows[0].try_get::<i64, _>("id").expect("id"), -7);
        assert_eq!(rows[0].try_get::<String, _>("n").expect("n"), "a");
        // The same text after the table grew a column reads the new column too.
        let mut conn = db.write_conn().await.expect("conn");
        sqlx::query("ALTER TABLE t ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'")
            .execute(&mut *conn)
            .await
            .expect("alter");
        drop(conn);
        for _ in 0..DIRECT_READERS * 2 {
            let rows = reader.fetch_all(&star).await.expect("rows");
            assert_eq!(rows[0].try_get::<String, _>("extra").expect("extra"), "x");
            assert_eq!(rows[0].try_get::<i64, _>("n").expect("n"), -7);
        }
    }

    /// The case that comparing run counts alone would get wrong: rusqlite's cache drops the
    /// statement, the table changes, and the fresh statement runs without rows until its run
    /// count is the remembered one plus one.
    #[test]
    fn columns_are_never_taken_from_another_statement_object() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER); INSERT INTO t VALUES ('a', 1);",
        )
        .expect("schema");
        let mut direct = DirectConn {
            conn,
            steps: Arc::default(),
            columns: sqlx_core::HashMap::default(),
        };
        let found = Arg::Text("a".into());
        let none = Arg::Text("none".into());
        for _ in 0..3 {
            assert_eq!(names(&mut direct, &found).expect("a row"), ["id", "n"]);
        }
        direct.conn.flush_prepared_statement_cache();
        direct
            .conn
            .execute_batch("ALTER TABLE t ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'")
            .expect("alter");
        for _ in 0..3 {
            assert_eq!(names(&mut direct, &none), None);
        }
        let now = names(&mut direct, &found).expect("a row");
        assert_eq!(now, ["id", "n", "extra"]);
        // The same statement object, prepared again by SQLite after another change.
        direct
            .conn
            .execute_batch("ALTER TABLE t ADD COLUMN more INTEGER NOT NULL DEFAULT 2")
            .expect("alter");
        for _ in 0..2 {
            let now = names(&mut direct, &found).expect("a row");
            assert_eq!(now, ["id", "n", "extra", "more"]);
        }
    }

    /// The column names of the first row of `SELECT * FROM t WHERE id = ?1`, if any.
    fn names(direct: &mut DirectConn, id: &Arg) -> Option<Vec<String>> {
        use sqlx::Column as _;
        let rows = fetch_all_direct(
            direct,
            "SELECT * FROM t WHERE id = ?1",
            std::slice::from_ref(id),
        )
        .expect("rows");
        rows.first()
            .map(|row| row.columns().iter().map(|c| c.name().to_owned()).collect())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_every_direct_connection_busy_the_read_goes_to_the_pool() {
        let (db, _dir) = database().await;
        let readers = db.direct_readers().expect("direct readers");
        let held: Vec<_> = readers
            .conns
            .iter()
            .map(|c| c.lock().expect("lock"))
            .collect();
        assert_eq!(held.len(), DIRECT_READERS);
        assert!(matches!(readers.try_with(|_| Ok(())), Direct::Busy));
        let mut reader = db.reader().await.expect("reader");
        let rows = reader.fetch_all(&query(&reader)).await.expect("rows");
        assert_eq!(rows.len(), 3);
        drop(held);
        assert!(matches!(readers.try_with(|_| Ok(())), Direct::Done(Ok(()))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_past_its_budget_is_done_on_the_pool() {
        let (db, _dir) = database().await;
        let readers = db.direct_readers().expect("direct readers");
        let mut reader = db.reader().await.expect("reader");
        // About a million steps: stopped directly, answered by the pool.
        let mut sql =
            reader.sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ");
        sql.bind(200_000_i64).push(") SELECT COUNT(*) AS n FROM c");
        let rows = reader.fetch_all(&sql).await.expect("rows");
        assert_eq!(rows[0].try_get::<i64, _>("n").expect("n"), 200_000);
        assert_eq!(readers.moved(), 1);
        // A short read stays direct, on a connection whose count started again.
        for _ in 0..DIRECT_READERS * 2 {
            assert_eq!(
                reader.fetch_all(&query(&reader)).await.expect("rows").len(),
                3
            );
        }
        assert_eq!(readers.moved(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_sqlite_refuses_is_an_error() {
        let (db, _dir) = database().await;
        let mut reader = db.reader().await.expect("reader");
        let sql = reader.sql("SELECT nothing FROM nowhere");
        assert!(reader.fetch_all(&sql).await.is_err());
        // and the connection is still good
        assert_eq!(
            reader.fetch_all(&query(&reader)).await.expect("rows").len(),
            3
        );
    }
}
