//! A small builder for SQL whose shape depends on the request (optional filters, multi-row
//! inserts).
//!
//! sqlx's `QueryBuilder` writes `?` placeholders for the `Any` driver, which PostgreSQL rejects,
//! so this builder numbers placeholders itself and keeps the arguments beside the text. Built
//! with [`Sql::on`] for SQLite it writes anonymous `?` placeholders instead of `$N`: SQLite keeps
//! named and numbered parameters (`$N`, `?N`) in a list that `sqlite3_bind_parameter_name`
//! walks on every call, so binding a multi-row insert with thousands of arguments is quadratic
//! (a 1,000-row member insert took 220–350 ms); anonymous parameters skip that lookup. The
//! builder binds in text order, so positions always match.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};

/// Which database engine a connection runs on (the SQL written for it differs).
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

/// The back end a connection talks to.
pub fn backend_of(conn: &AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// One bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(i64),
    OptI64(Option<i64>),
    Text(String),
    OptText(Option<String>),
    F64(f64),
    OptF64(Option<f64>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::I64(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptI64(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}

impl Arg {
    /// A NULL of the same type (PostgreSQL types each parameter).
    fn null_like(&self) -> Arg {
        match self {
            Arg::I64(_) | Arg::OptI64(_) => Arg::OptI64(None),
            Arg::F64(_) | Arg::OptF64(_) => Arg::OptF64(None),
            Arg::Text(_) | Arg::OptText(_) => Arg::OptText(None),
        }
    }
}

/// Fewest rows [`Sql::padded_values`] writes.
pub const MIN_PADDED_ROWS: usize = 8;

/// The size class of `n` rows: `n` rounded up to a quarter of the power of two below it (at
/// least [`MIN_PADDED_ROWS`]), so padding adds at most a quarter of the rows while each
/// doubling of the row count brings only four new statement texts.
pub fn padded_rows(n: usize) -> usize {
    if n <= MIN_PADDED_ROWS {
        return MIN_PADDED_ROWS;
    }
    let step = (n.next_power_of_two() / 8).max(1);
    n.div_ceil(step) * step
}

/// SQL text plus its arguments, numbered as they are pushed.
#[derive(Debug, Clone)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
    /// Anonymous `?` placeholders (SQLite) instead of `$N`.
    anonymous: bool,
}

impl Default for Sql {
    fn default() -> Self {
        Self::new("")
    }
}

impl Sql {
    /// SQL with `$N` placeholders (right for PostgreSQL, accepted by SQLite).
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
            anonymous: false,
        }
    }

    /// SQL with the placeholder form that the back end prepares fastest.
    pub fn on(backend: Backend, text: &str) -> Self {
        let mut sql = Self::new(text);
        if backend == Backend::Sqlite {
            sql.anonymous = true;
        }
        sql
    }

    /// [`Sql::on`] for the back end of a connection.
    pub fn for_conn(conn: &AnyConnection, text: &str) -> Self {
        Self::on(backend_of(conn), text)
    }

    /// Append literal SQL.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Append a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        if self.anonymous {
            self.text.push('?');
        } else {
            self.text.push('$');
            self.text.push_str(&self.args.len().to_string());
        }
        self
    }

    /// Append `(…), (…)` rows of placeholders for a multi-row `VALUES`.
    pub fn values<R>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
        to_args: impl Fn(R) -> Vec<Arg>,
    ) {
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            for (j, arg) in to_args(row).into_iter().enumerate() {
                if j > 0 {
                    self.text.push_str(", ");
                }
                self.bind(arg);
            }
            self.text.push(')');
        }
    }

    /// [`Sql::values`], padded with rows of NULLs (typed like the first row's values) up to a
    /// size class ([`padded_rows`]). Statements of one
    /// class have the same text whatever the number of rows, so a connection prepares each
    /// class once and then reuses it from its statement cache. A multi-row `VALUES` of
    /// exact size has new text for almost every batch, and SQLite parsing it took about 45%
    /// of a ledger batch's write statements (measured on a 460-row batch: 4.4 ms with a
    /// fresh statement each time, 2.3 ms padded and cached). The statement must make the
    /// padding rows harmless, e.g. `INSERT … SELECT * FROM (VALUES …) AS v WHERE column1 IS
    /// NOT NULL`, or a join on a key column that NULL never matches.
    pub fn padded_values<R>(&mut self, rows: &[R], to_args: impl Fn(&R) -> Vec<Arg>) {
        let Some(first) = rows.first() else {
            return;
        };
        let class = padded_rows(rows.len());
        let padding: Vec<Arg> = to_args(first).iter().map(Arg::null_like).collect();
        let rows = rows
            .iter()
            .map(&to_args)
            .chain(std::iter::repeat_n(padding, class - rows.len()));
        self.values(rows, |args| args);
    }

    /// The rows of an `INSERT … SELECT`, padded: `SELECT * FROM (VALUES …) AS v WHERE column1
    /// IS NOT NULL` of [`Sql::padded_values`], whose all-NULL padding rows the `WHERE` drops
    /// (the first column of every real row must not be NULL: the tenant id, in this schema).
    pub fn padded_select<R>(&mut self, rows: &[R], to_args: impl Fn(&R) -> Vec<Arg>) {
        self.push("SELECT * FROM (VALUES ");
        self.padded_values(rows, to_args);
        self.push(") AS v WHERE column1 IS NOT NULL");
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    pub fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// The text and the arguments, to bind them by value ([`bind_owned`]).
    pub fn into_parts(self) -> (String, Vec<Arg>) {
        (self.text, self.args)
    }

    /// The sqlx query with every argument bound.
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::I64(v) => query.bind(*v),
                Arg::OptI64(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::OptText(v) => query.bind(v.as_deref()),
                Arg::F64(v) => query.bind(*v),
                Arg::OptF64(v) => query.bind(*v),
            };
        }
        query
    }
}

/// `text` with `args` bound by value. [`Sql::query`] binds borrowed text, which the SQLite
/// driver copies again to hand to its worker thread; for statements binding thousands of
/// values (a ledger batch) moving the owned strings saves that copy.
pub fn bind_owned(text: &str, args: Vec<Arg>) -> Query<'_, Any, AnyArguments<'_>> {
    let mut query = sqlx::query(text);
    for arg in args {
        query = match arg {
            Arg::I64(v) => query.bind(v),
            Arg::OptI64(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::F64(v) => query.bind(v),
            Arg::OptF64(v) => query.bind(v),
        };
    }
    query
}

/// `INSERT INTO` for a multi-row insert inside a transaction that is dropped on any error. On
/// SQLite it is `INSERT OR FAIL INTO`: `OR FAIL` stops at the first conflict without undoing
/// the statement's earlier rows, so SQLite keeps no statement journal for it; with the default
/// `ABORT` every multi-row insert first copies each page it touches into that journal (measured
/// with perf as a large share of a ledger batch, whose indexes are touched at random pages).
/// Nothing half-written survives: the error fails the caller, which drops (rolls back) the
/// whole transaction. Use it only where that holds.
pub fn insert_into(conn: &AnyConnection) -> &'static str {
    match backend_of(conn) {
        Backend::Sqlite => "INSERT OR FAIL INTO",
        Backend::Postgres => "INSERT INTO",
    }
}

/// The operator comparing two values with NULL equal to NULL.
pub fn null_safe_eq(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "IS",
        Backend::Postgres => "IS NOT DISTINCT FROM",
    }
}

/// Escape `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(1i64).push(" AND b = ").bind("x");
        assert_eq!(sql.text(), "SELECT 1 WHERE a = $1 AND b = $2");
        let mut insert = Sql::new("INSERT INTO t VALUES ");
        insert.values([(1i64, "a"), (2, "b")], |(n, s)| vec![n.into(), s.into()]);
        assert_eq!(insert.text(), "INSERT INTO t VALUES ($1, $2), ($3, $4)");
        assert_eq!(insert.arg_count(), 4);
    }

    #[test]
    fn sqlite_gets_anonymous_placeholders() {
        let mut sql = Sql::on(Backend::Sqlite, "SELECT ");
        sql.bind(1i64).push(", ").bind(2i64);
        assert_eq!(sql.text(), "SELECT ?, ?");
    }

    #[test]
    fn padded_values_share_text_within_a_size_class() {
        let build = |rows: &[(i64, &str)]| {
            let mut sql = Sql::on(Backend::Sqlite, "INSERT INTO t SELECT * FROM (VALUES ");
            sql.padded_values(rows, |&(n, s)| vec![n.into(), s.into()]);
            sql
        };
        let three = build(&[(1, "a"), (2, "b"), (3, "c")]);
        let eight = build(&[(1, "a"); 8]);
        let nine = build(&[(1, "a"); 9]);
        assert_eq!(three.text(), eight.text());
        assert_eq!(three.arg_count(), 2 * MIN_PADDED_ROWS);
        assert_eq!(nine.arg_count(), 2 * 10);
        assert_ne!(eight.text(), nine.text());
        assert_eq!(build(&[(1, "a"); 415]).arg_count(), 2 * 448);
        // Padding is NULL of each column's type (PostgreSQL types every parameter).
        assert!(matches!(three.args[5], Arg::OptText(Some(ref s)) | Arg::Text(ref s) if s == "c"));
        assert!(matches!(three.args[6], Arg::OptI64(None)));
        assert!(matches!(three.args[7], Arg::OptText(None)));
        let mut empty = Sql::new("X");
        empty.padded_values(&[] as &[i64], |&n| vec![n.into()]);
        assert_eq!(empty.text(), "X");
    }

    #[test]
    fn size_classes_pad_by_at_most_a_quarter() {
        let mut classes = std::collections::BTreeSet::new();
        for n in 1..=2048 {
            let class = padded_rows(n);
            assert!(class >= n && class >= MIN_PADDED_ROWS);
            assert!(
                n <= MIN_PADDED_ROWS || (class - n) * 4 <= n,
                "{n} -> {class}"
            );
            classes.insert(class);
        }
        assert!(classes.len() <= 40, "{} classes", classes.len());
    }

    #[test]
    fn escapes_like_wildcards() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
