//! Order-history import: orders placed elsewhere, already paid, ingested so that analytics
//! (and later growth and points) see them. Importing a file again is safe: each order is
//! created once (see "Importing again" below).
//!
//! # Formats
//!
//! `csv`: a header row names the columns, in any order (names case-insensitive); each row is
//! one order.
//!
//! | column | needed | meaning |
//! | --- | --- | --- |
//! | `external_member_id` | yes | the member's external id; a new one creates the member (source `import`) |
//! | `ordered_at` | yes | an RFC 3339 instant (`2026-03-08T10:00:00+08:00`) or a date `YYYY-MM-DD`, read as local midnight in the tenant's time zone |
//! | `amount` | this or `amount_fen` | money in **major units**: yuan for CNY (`29.90` is 2990 fen), at most two decimals, no sign, no thousands separators; turned into fen exactly, without floating point |
//! | `amount_fen` | this or `amount` | money in **minor units** as an integer (`2990`), the unit of the JSON API; when a row fills both columns they must agree (a row error otherwise) |
//! | `currency` | no | three letters; empty or absent means CNY |
//! | `items` | no | `sku:qty|sku:qty`: a sku alone means quantity 1; quantities 1 to 1,000,000; a sku is 1 to 64 bytes holding neither `|` nor `:`; empty means no items |
//! | `order_id` | no | the order's id where it was placed (1 to 128 bytes); kept as the order's `external_reference` |
//!
//! The first header of this format, `external_member_id,ordered_at,amount,currency,items`, is
//! still a valid one. An unknown or repeated column name, or a missing needed one, rejects the
//! file (400); a bad value is a row error and the other rows are imported.
//!
//! `cdnow`: the CDNOW files as they are (whitespace separated; `customer date cds dollars`
//! in the master file, `master_id sample_id date cds dollars` in the sample); dollars become
//! cents, members are `cdnow-<customer>`.
//!
//! Members that do not exist yet are created by external id (source `import`). Rows are
//! written in chunks of [`CHUNK_ROWS`], one transaction each, so a million rows stream through
//! bounded memory.
//!
//! # Importing again
//!
//! Every imported order stores a key (`customer_order.import_key`, migration 0017) under a
//! unique index per tenant; the rule that makes it is [`super::import_key`]: the row's
//! `order_id` when it has one (the id wins: a row whose id was imported is that order even if
//! its other fields differ), else its content (member, instant, amount in fen, currency,
//! canonical items). A row whose key is stored already, or repeats an earlier row of the same
//! file, is a repeat: by default skipped and counted in `skipped` (`created` counts new orders
//! only); with [`OnDuplicate::Error`] (`?on_duplicate=error`, `--on-duplicate error`) each
//! repeat is a row error naming what it repeats, and the other rows are imported as usual.
//! Rows with an `order_id` also repeat an order ingested through `POST /v1/orders` with that
//! `external_reference`: the two routes share the key. Two purchases alike in every keyed part
//! need an `order_id` to be imported as two orders from CSV.
//!
//! The key is a column of the order rather than a table of its own because it belongs to one
//! order and the insert itself then decides: `INSERT … ON CONFLICT DO NOTHING RETURNING
//! import_key` writes the new orders and names them, with no second write per row, and two
//! imports of one file running at the same time meet at the unique index (PostgreSQL makes the
//! second wait for the first and then skip; SQLite runs writers one at a time). A chunk whose
//! new members were just created by such a concurrent import fails on the member index and is
//! written again, up to [`CHUNK_ATTEMPTS`] times, then finding those members.
//!
//! Orders imported before migration 0017 have no key (the migration only adds the column and
//! its indexes, which cannot fail on existing rows; a key needs the Rust rule and the member
//! resolution, not SQL). They are keyed when first met: before inserting, a chunk looks up the
//! unkeyed external orders of its members that existed already (partial index
//! `customer_order_unkeyed`), and an unkeyed order with the content of a row takes that row's
//! key and the row is a repeat. So a file imported before the upgrade and again after it is
//! not imported twice; a file imported twice before the upgrade keeps its second copy (one
//! unkeyed order per row is adopted), which the merchant has to remove.

use std::collections::{HashMap, HashSet};

use csv_async::AsyncReaderBuilder;
use futures::StreamExt as _;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row as _};
use tokio::io::{AsyncRead, BufReader};
use utoipa::ToSchema;

use super::import_key::{canonical_items, id_key, Content, RunCounter};
use super::model::OrderStatus;
use crate::common::db::{Db, Tx};
use crate::common::error::{is_unique_violation, ApiError, ApiResult};
use crate::common::ids::{MemberId, OrderId, TenantId};
use crate::common::import::{
    read_header, read_line_bounded, record_line, BoundedRows, OverLimit, RowCheck, RowErrors,
    TotalLimit, MAX_IMPORT_BYTES, MAX_ROW_BYTES,
};
use crate::common::outbox::NewEvent;
use crate::common::sql::{Arg, Sql};
use crate::common::time::to_micros;
use crate::members::model::{self, Profile};

/// The columns of the CSV format's first header (still accepted as it is).
pub const COLUMNS: [&str; 5] = [
    "external_member_id",
    "ordered_at",
    "amount",
    "currency",
    "items",
];
/// Every column the CSV format knows, in the order the docs list them.
pub const ALL_COLUMNS: [&str; 7] = [
    "external_member_id",
    "ordered_at",
    "amount",
    "amount_fen",
    "currency",
    "items",
    "order_id",
];
/// Most rows one import takes.
pub const MAX_ROWS: u64 = 5_000_000;
/// Rows written per transaction.
pub const CHUNK_ROWS: usize = 20_000;
/// Times a chunk is tried when a concurrent import got in its way (see the module doc).
pub const CHUNK_ATTEMPTS: u32 = 3;
/// Values per `IN (…)` list of the look-ups.
const LOOKUP_BATCH: usize = 500;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Cdnow,
}

impl Format {
    /// `csv` or `cdnow`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "csv" => Some(Format::Csv),
            "cdnow" => Some(Format::Cdnow),
            _ => None,
        }
    }
}

/// What a row that repeats an imported order becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Skipped and counted in `skipped`.
    #[default]
    Skip,
    /// A row error naming what it repeats.
    Error,
}

impl OnDuplicate {
    /// `skip` or `error`.
    pub fn parse(text: &str) -> Option<OnDuplicate> {
        match text {
            "skip" => Some(OnDuplicate::Skip),
            "error" => Some(OnDuplicate::Error),
            _ => None,
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    pub on_duplicate: OnDuplicate,
}

/// The outcome of an order import.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct OrderImportReport {
    /// Orders created (new ones only).
    pub created: u64,
    /// Rows skipped because they repeat an order imported before or an earlier row of the
    /// file (same `order_id`, or same member, instant, amount, currency and items); with
    /// `on_duplicate=error` such rows are row errors instead and this stays 0.
    pub skipped: u64,
    /// Members created because their external id was new.
    pub members_created: u64,
    #[serde(flatten)]
    pub rows: RowErrors,
}

/// One good row.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    /// The file line it was read from (the CSV header is line 1).
    pub line: u64,
    pub external_member_id: String,
    /// The order's id where it was placed, when the file gives one.
    pub order_id: Option<String>,
    pub ordered_at: Timestamp,
    /// Minor units (fen).
    pub amount: i64,
    pub currency: String,
    pub items: Value,
    /// The number of identical earlier lines this one follows (CDNOW only; see
    /// [`RunCounter`]); 0 for CSV rows.
    pub occurrence: u32,
}

/// `29.33` → 2933: major units to minor units exactly (at most two decimals, not negative).
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.len() > 2 || !(frac.is_empty() || digits(frac)) {
        return Err(format!(
            "amount: {text:?} is not a non-negative amount with at most two decimals"
        ));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("amount: {text:?} is too large"))?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().unwrap_or(0) * 10,
        _ => frac.parse::<i64>().unwrap_or(0),
    };
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .filter(|v| *v <= crate::ledger::model::MAX_AMOUNT)
        .ok_or_else(|| format!("amount: {text:?} is too large"))
}

/// `2990` → 2990: an amount already in minor units (a non-negative integer).
pub fn parse_amount_fen(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "amount_fen: {text:?} is not a whole non-negative number of fen"
        ));
    }
    text.parse::<i64>()
        .ok()
        .filter(|v| *v <= crate::ledger::model::MAX_AMOUNT)
        .ok_or_else(|| format!("amount_fen: {text:?} is too large"))
}

/// A row's amount in minor units from its `amount` (major units) and `amount_fen` cells
/// (empty when the column is absent): one of them is needed, and both must agree.
pub fn row_amount(amount: &str, amount_fen: &str) -> Result<i64, String> {
    let (amount, amount_fen) = (amount.trim(), amount_fen.trim());
    match (amount.is_empty(), amount_fen.is_empty()) {
        (true, true) => Err("amount: empty; give amount (yuan) or amount_fen (fen)".to_owned()),
        (false, true) => parse_amount(amount),
        (true, false) => parse_amount_fen(amount_fen),
        (false, false) => {
            let major = parse_amount(amount)?;
            let minor = parse_amount_fen(amount_fen)?;
            if major == minor {
                Ok(major)
            } else {
                Err(format!(
                    "amount_fen: {minor} disagrees with amount {amount} (yuan), which is \
                     {major} fen; give one of the two or make them agree"
                ))
            }
        }
    }
}

/// An instant, a date (`YYYY-MM-DD`) or a CDNOW date (`YYYYMMDD`); dates are local midnight.
pub fn parse_ordered_at(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let date = if text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..])
    } else {
        text.to_owned()
    };
    date.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(zone.clone()).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("ordered_at: {text:?} is not an RFC 3339 instant or a date"))
}

/// `sku:qty|sku:qty` → `[{"sku", "qty"}]`.
pub fn parse_items(text: &str) -> Result<Value, String> {
    let mut items = Vec::new();
    for part in text.split('|').map(str::trim).filter(|p| !p.is_empty()) {
        let (sku, qty) = part.split_once(':').unwrap_or((part, "1"));
        let sku = sku.trim();
        let qty: i64 = qty
            .trim()
            .parse()
            .ok()
            .filter(|q| (1..=1_000_000).contains(q))
            .ok_or_else(|| format!("items: bad quantity in {part:?}"))?;
        if sku.is_empty() || sku.len() > 64 {
            return Err(format!("items: bad sku in {part:?}"));
        }
        items.push(json!({ "sku": sku, "qty": qty }));
    }
    Ok(Value::Array(items))
}

/// An order id cell: 1 to 128 bytes without control characters (the rule of an order's
/// `external_reference`, which it becomes).
pub fn parse_order_id(text: &str) -> Result<String, String> {
    crate::membership::stored_value::model::reference("order_id", text.trim())
        .map_err(|e| e.message.clone())
}

/// Where each column of an order CSV is, from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns {
    count: usize,
    external_member_id: usize,
    ordered_at: usize,
    amount: Option<usize>,
    amount_fen: Option<usize>,
    currency: Option<usize>,
    items: Option<usize>,
    order_id: Option<usize>,
}

impl CsvColumns {
    /// The columns of a header (names lower-cased and trimmed), or why the header is wrong.
    pub fn from_header(names: &[String]) -> Result<CsvColumns, String> {
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if !ALL_COLUMNS.contains(&name.as_str()) {
                return Err(format!(
                    "the CSV header has an unknown column `{name}`; the columns are {}",
                    ALL_COLUMNS.join(", ")
                ));
            }
            if at.insert(name, i).is_some() {
                return Err(format!("the CSV header names `{name}` twice"));
            }
        }
        let needed = |name: &str| {
            at.get(name)
                .copied()
                .ok_or_else(|| format!("the CSV header has no `{name}` column"))
        };
        let columns = CsvColumns {
            count: names.len(),
            external_member_id: needed("external_member_id")?,
            ordered_at: needed("ordered_at")?,
            amount: at.get("amount").copied(),
            amount_fen: at.get("amount_fen").copied(),
            currency: at.get("currency").copied(),
            items: at.get("items").copied(),
            order_id: at.get("order_id").copied(),
        };
        if columns.amount.is_none() && columns.amount_fen.is_none() {
            return Err(
                "the CSV header has neither `amount` (yuan) nor `amount_fen` (fen)".to_owned(),
            );
        }
        Ok(columns)
    }
}

fn parse_csv_record(
    record: &csv_async::StringRecord,
    columns: &CsvColumns,
    zone: &TimeZone,
    line: u64,
) -> Result<OrderRow, String> {
    if record.len() != columns.count {
        return Err(format!(
            "expected {} columns, found {}",
            columns.count,
            record.len()
        ));
    }
    let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
    let external = model::external_id(cell(Some(columns.external_member_id))).map_err(|e| {
        format!(
            "external_member_id: {}",
            e.message.trim_start_matches("external_id: ")
        )
    })?;
    let currency = match cell(columns.currency) {
        "" => "CNY".to_owned(),
        c if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => c.to_ascii_uppercase(),
        c => return Err(format!("currency: {c:?} is not a three-letter code")),
    };
    let order_id = match cell(columns.order_id) {
        "" => None,
        id => Some(parse_order_id(id)?),
    };
    Ok(OrderRow {
        line,
        external_member_id: external,
        order_id,
        ordered_at: parse_ordered_at(cell(Some(columns.ordered_at)), zone)?,
        amount: row_amount(cell(columns.amount), cell(columns.amount_fen))?,
        currency,
        items: parse_items(cell(columns.items))?,
        occurrence: 0,
    })
}

/// A CDNOW line, or `None` for the master file's header.
fn parse_cdnow_line(line: &str, zone: &TimeZone) -> Result<Option<OrderRow>, String> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (customer, date, cds, dollars) = match cols.as_slice() {
        [customer, date, cds, dollars] => (customer, date, cds, dollars),
        [master, _sample, date, cds, dollars] => (master, date, cds, dollars),
        _ => return Err(format!("expected 4 or 5 columns, found {}", cols.len())),
    };
    if !date.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(Some(OrderRow {
        line: 0,
        external_member_id: format!("cdnow-{customer}"),
        order_id: None,
        ordered_at: parse_ordered_at(date, zone)?,
        amount: parse_amount(dollars)?,
        currency: "USD".to_owned(),
        items: json!([{ "sku": "cd", "qty": cds.parse::<i64>().unwrap_or(1) }]),
        occurrence: 0,
    }))
}

/// Import orders; `progress` hears the number of rows read so far.
pub async fn import<R>(
    db: &Db,
    now: impl Fn() -> Timestamp,
    tenant_id: &TenantId,
    zone: &TimeZone,
    options: Options,
    input: R,
    progress: impl Fn(u64),
) -> ApiResult<OrderImportReport>
where
    R: AsyncRead + Unpin + Send,
{
    let (input, over_limit) = TotalLimit::new(input, MAX_IMPORT_BYTES);
    let mut chunks = Chunks {
        db,
        now: &now,
        tenant_id,
        on_duplicate: options.on_duplicate,
        progress: &progress,
        chunk: Vec::with_capacity(CHUNK_ROWS),
        report: OrderImportReport::default(),
    };
    let rows = match options.format {
        Format::Csv => read_csv(input, &over_limit, zone, &mut chunks).await?,
        Format::Cdnow => read_cdnow(input, &over_limit, zone, &mut chunks).await?,
    };
    chunks.finish(rows).await
}

/// Where the rows read go: a chunk written every [`CHUNK_ROWS`] good rows, the bad ones listed
/// in the report.
struct Chunks<'a, N, P> {
    db: &'a Db,
    now: &'a N,
    tenant_id: &'a TenantId,
    on_duplicate: OnDuplicate,
    progress: &'a P,
    chunk: Vec<OrderRow>,
    report: OrderImportReport,
}

impl<N: Fn() -> Timestamp, P: Fn(u64)> Chunks<'_, N, P> {
    /// A good row, `rows` read so far: the chunk is written once full.
    async fn push(&mut self, row: OrderRow, rows: u64) -> ApiResult<()> {
        self.chunk.push(row);
        if self.chunk.len() >= CHUNK_ROWS {
            let chunk = std::mem::take(&mut self.chunk);
            self.write(&chunk).await?;
            (self.progress)(rows);
        }
        Ok(())
    }

    /// A bad row.
    fn error(&mut self, line: u64, reason: impl Into<String>) {
        self.report.rows.push(line, reason);
    }

    async fn write(&mut self, chunk: &[OrderRow]) -> ApiResult<()> {
        let now = (self.now)();
        write_chunk(
            self.db,
            now,
            self.tenant_id,
            chunk,
            self.on_duplicate,
            &mut self.report,
        )
        .await
    }

    /// The last chunk written; the report, its errors in line order.
    async fn finish(mut self, rows: u64) -> ApiResult<OrderImportReport> {
        if !self.chunk.is_empty() {
            let chunk = std::mem::take(&mut self.chunk);
            self.write(&chunk).await?;
        }
        // Repeats are found when their chunk is written, after the chunk's unreadable rows.
        self.report.rows.errors.sort_by_key(|e| e.line);
        (self.progress)(rows);
        Ok(self.report)
    }
}

/// Read the CSV format (a header naming the columns, one order per row); the rows read.
async fn read_csv<R, N, P>(
    input: TotalLimit<R>,
    over_limit: &OverLimit,
    zone: &TimeZone,
    chunks: &mut Chunks<'_, N, P>,
) -> ApiResult<u64>
where
    R: AsyncRead + Unpin + Send,
    N: Fn() -> Timestamp,
    P: Fn(u64),
{
    let mut reader = AsyncReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .create_reader(BoundedRows::new(input, MAX_ROW_BYTES));
    let expected = format!(
        "`{}` (columns in any order; `amount` or `amount_fen`, `currency`, `items` and \
         `order_id` may be left out)",
        ALL_COLUMNS.join(",")
    );
    let columns = match read_header(&mut reader, &expected).await {
        Ok(names) => CsvColumns::from_header(&names).map_err(|message| {
            ApiError::invalid_request(message).with_details(json!({ "line": 1 }))
        })?,
        Err(error) => {
            return Err(if over_limit.exceeded() {
                over_limit.error()
            } else {
                error
            })
        }
    };
    let mut rows: u64 = 0;
    let mut check = RowCheck::default();
    let mut records = reader.records();
    while let Some(record) = records.next().await {
        if over_limit.exceeded() {
            return Err(over_limit.error());
        }
        rows += 1;
        let line = check.line(record_line(&record, rows + 1));
        if rows > MAX_ROWS {
            chunks.error(
                line,
                format!("more than {MAX_ROWS} rows; the rest was not imported"),
            );
            break;
        }
        match record
            .map_err(|e| format!("unreadable row: {e}"))
            .and_then(|r| {
                check
                    .check(&r)
                    .and_then(|()| parse_csv_record(&r, &columns, zone, line))
            }) {
            Ok(row) => chunks.push(row, rows).await?,
            Err(reason) => chunks.error(line, reason),
        }
    }
    Ok(rows)
}

/// Read the CDNOW files as they are (whitespace separated, no header); the rows read.
async fn read_cdnow<R, N, P>(
    input: TotalLimit<R>,
    over_limit: &OverLimit,
    zone: &TimeZone,
    chunks: &mut Chunks<'_, N, P>,
) -> ApiResult<u64>
where
    R: AsyncRead + Unpin + Send,
    N: Fn() -> Timestamp,
    P: Fn(u64),
{
    let mut input = BufReader::new(input);
    let mut bytes = Vec::new();
    let mut rows: u64 = 0;
    let mut line_no: u64 = 0;
    let mut runs = RunCounter::default();
    while let Some(fits) = read_line_bounded(&mut input, &mut bytes, MAX_ROW_BYTES)
        .await
        .map_err(|e| {
            if over_limit.exceeded() {
                over_limit.error()
            } else {
                ApiError::invalid_request(format!("could not read the file: {e}"))
            }
        })?
    {
        line_no += 1;
        let line = match cdnow_text(fits, &bytes) {
            Ok(line) => line,
            Err(reason) => {
                rows += 1;
                chunks.error(line_no, reason);
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        rows += 1;
        if rows > MAX_ROWS {
            chunks.error(
                line_no,
                format!("more than {MAX_ROWS} rows; the rest was not imported"),
            );
            break;
        }
        match parse_cdnow_line(line, zone) {
            Ok(Some(mut row)) => {
                row.line = line_no;
                let content = format!(
                    "{} {} {}",
                    row.ordered_at.as_microsecond(),
                    row.amount,
                    row.items
                );
                row.occurrence = runs.occurrence(&row.external_member_id, &content);
                chunks.push(row, rows).await?;
            }
            Ok(None) => {}
            Err(reason) => chunks.error(line_no, reason),
        }
    }
    Ok(rows)
}

/// A CDNOW line as text, or why it cannot be read (too long, not UTF-8, a NUL byte).
fn cdnow_text(fits: bool, bytes: &[u8]) -> Result<&str, String> {
    match (fits, std::str::from_utf8(bytes)) {
        (false, _) => Err(format!(
            "the line is longer than {MAX_ROW_BYTES} bytes; it was skipped"
        )),
        (true, Err(_)) => Err("the line is not valid UTF-8".to_owned()),
        (true, Ok(line)) if line.contains('\u{0}') => {
            Err("the line holds a NUL byte, which is not allowed in text".to_owned())
        }
        (true, Ok(line)) => Ok(line),
    }
}

/// What writing one chunk did.
#[derive(Debug, Default)]
struct ChunkOutcome {
    created: u64,
    members_created: u64,
    /// Rows that repeat an order: their line and what they repeat.
    repeats: Vec<(u64, String)>,
}

/// Write a chunk in one transaction, again when a concurrent import got in the way, and
/// add its outcome to the report.
async fn write_chunk(
    db: &Db,
    now: Timestamp,
    tenant_id: &TenantId,
    rows: &[OrderRow],
    on_duplicate: OnDuplicate,
    report: &mut OrderImportReport,
) -> ApiResult<()> {
    let mut attempt = 1;
    let outcome = loop {
        match write_chunk_once(db, now, tenant_id, rows).await {
            Err(error) if attempt < CHUNK_ATTEMPTS && met_concurrent_import(&error) => {
                tracing::info!(
                    attempt,
                    "an order-import chunk met a concurrent import; again"
                );
                attempt += 1;
            }
            other => break other?,
        }
    };
    report.created += outcome.created;
    report.members_created += outcome.members_created;
    match on_duplicate {
        OnDuplicate::Skip => report.skipped += outcome.repeats.len() as u64,
        OnDuplicate::Error => {
            for (line, reason) in outcome.repeats {
                report.rows.push(line, reason);
            }
        }
    }
    Ok(())
}

/// A member created meanwhile by another import (`insert_many` answers 409
/// `external_id_taken`), another unique-index violation (an order key adopted by both), or a
/// PostgreSQL deadlock or serialisation failure: writing the chunk again resolves it.
fn met_concurrent_import(error: &ApiError) -> bool {
    if error.code == "external_id_taken" {
        return true;
    }
    let Some(db) = error
        .source
        .as_ref()
        .and_then(|source| source.downcast_ref::<sqlx::Error>())
    else {
        return false;
    };
    is_unique_violation(db)
        || matches!(db, sqlx::Error::Database(e)
            if matches!(e.code().as_deref(), Some("40P01" | "40001")))
}

/// A row that survived the repeat checks so far, with its key.
struct Keyed<'r> {
    row: &'r OrderRow,
    member_id: &'r str,
    /// The member was created by this chunk (so it has no earlier orders).
    member_is_new: bool,
    key: String,
    /// The content key at occurrence 0, for rows keyed by content: what an unkeyed order
    /// with the same content would have.
    base: Option<String>,
}

async fn write_chunk_once(
    db: &Db,
    now: Timestamp,
    tenant_id: &TenantId,
    rows: &[OrderRow],
) -> ApiResult<ChunkOutcome> {
    let at = to_micros(now);
    let mut tx = db.begin(now).await?;
    let mut outcome = ChunkOutcome::default();
    let fresh = drop_known_order_ids(tx.conn(), tenant_id, rows, &mut outcome.repeats).await?;
    let (member_ids, new_members) = resolve_members(&mut tx, tenant_id, &fresh, at).await?;
    outcome.members_created = new_members.len() as u64;
    let mut keyed: Vec<Keyed> = Vec::with_capacity(fresh.len());
    let mut first_line_of_key: HashMap<String, u64> = HashMap::with_capacity(fresh.len());
    for row in fresh {
        let member_id = member_ids
            .get(&row.external_member_id)
            .map(String::as_str)
            .unwrap_or_default();
        let (key, base) = match &row.order_id {
            Some(order_id) => (id_key(order_id), None),
            None => {
                let items = canonical_items(&row.items).unwrap_or_default();
                let content =
                    Content::new(member_id, row.ordered_at, row.amount, &row.currency, items);
                (content.key(row.occurrence), Some(content.key(0)))
            }
        };
        if let Some(first) = first_line_of_key.get(&key) {
            outcome.repeats.push((row.line, repeats_line(row, *first)));
            continue;
        }
        first_line_of_key.insert(key.clone(), row.line);
        keyed.push(Keyed {
            row,
            member_id,
            member_is_new: new_members.contains(member_id),
            key,
            base,
        });
    }
    let adopted = adopt_unkeyed_orders(tx.conn(), tenant_id, &keyed).await?;
    let inserted = insert_orders(tx.conn(), tenant_id, &keyed, &adopted, at).await?;
    for keyed in &keyed {
        if !inserted.contains(&keyed.key) {
            outcome
                .repeats
                .push((keyed.row.line, imported_already(keyed.row)));
        }
    }
    outcome.created = inserted.len() as u64;
    if outcome.created > 0 {
        // The daily run (repurchase reminders, expiry…) must run for a tenant with orders.
        crate::membership::program::schedule_daily(&mut tx, tenant_id).await?;
    }
    if outcome.created > 0 || outcome.members_created > 0 {
        tx.emit(NewEvent::new(
            tenant_id,
            "orders.imported",
            None,
            json!({ "orders": outcome.created, "members_created": outcome.members_created }),
        ));
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Why a row repeats an earlier row of its file.
fn repeats_line(row: &OrderRow, first: u64) -> String {
    match &row.order_id {
        Some(id) => format!("order_id {id:?} repeats line {first}"),
        None => format!(
            "repeats line {first} (the same member, ordered_at, amount, currency and items); \
             give each order an order_id to import both"
        ),
    }
}

/// Why a row repeats an order imported before.
fn imported_already(row: &OrderRow) -> String {
    match &row.order_id {
        Some(id) => format!("an order with order_id {id:?} was imported already"),
        None => "an order with the same member, ordered_at, amount, currency and items was \
                 imported already (earlier in this file or before); give each order an \
                 order_id to import both"
            .to_owned(),
    }
}

/// The rows whose order id is neither repeated earlier in the chunk nor stored already (the
/// others go to `repeats`). Done before members are resolved, so that a repeated row with a
/// new external id creates no member.
async fn drop_known_order_ids<'r>(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &'r [OrderRow],
    repeats: &mut Vec<(u64, String)>,
) -> ApiResult<Vec<&'r OrderRow>> {
    let mut first_line_of_id: HashMap<&str, u64> = HashMap::new();
    let mut fresh: Vec<&OrderRow> = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(id) = row.order_id.as_deref() {
            if let Some(first) = first_line_of_id.get(id) {
                repeats.push((row.line, repeats_line(row, *first)));
                continue;
            }
            first_line_of_id.insert(id, row.line);
        }
        fresh.push(row);
    }
    if first_line_of_id.is_empty() {
        return Ok(fresh);
    }
    let ids: Vec<&str> = first_line_of_id.keys().copied().collect();
    let stored = stored_values(conn, tenant_id, "external_reference", &ids).await?;
    fresh.retain(|row| match row.order_id.as_deref() {
        Some(id) if stored.contains(id) => {
            repeats.push((row.line, imported_already(row)));
            false
        }
        _ => true,
    });
    Ok(fresh)
}

/// The values of `column` (`external_reference` or `import_key`) among `values` that the
/// tenant's orders hold.
async fn stored_values(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    column: &'static str,
    values: &[&str],
) -> ApiResult<HashSet<String>> {
    let mut stored = HashSet::new();
    for part in values.chunks(LOOKUP_BATCH) {
        let mut sql = Sql::for_conn(
            &*conn,
            &format!("SELECT {column} FROM customer_order WHERE tenant_id = "),
        );
        sql.bind(tenant_id.as_str())
            .push(&format!(" AND {column} IN ("));
        for (i, value) in part.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*value);
        }
        sql.push(")");
        for row in sql.query().fetch_all(&mut *conn).await? {
            stored.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(stored)
}

/// The member id of every row's external id, creating the members that are new (with their
/// `member.created` events); also which ids are new.
async fn resolve_members(
    tx: &mut Tx,
    tenant_id: &TenantId,
    rows: &[&OrderRow],
    at: i64,
) -> ApiResult<(HashMap<String, String>, HashSet<String>)> {
    let mut externals: Vec<&str> = rows.iter().map(|r| r.external_member_id.as_str()).collect();
    externals.sort_unstable();
    externals.dedup();
    let mut ids: HashMap<String, String> =
        crate::members::store::ids_by_external(tx.conn(), tenant_id, &externals).await?;
    let new_profiles: Vec<(MemberId, Profile)> = externals
        .iter()
        .filter(|e| !ids.contains_key(**e))
        .map(|e| {
            (
                MemberId::generate(),
                Profile {
                    external_id: Some((*e).to_owned()),
                    source: Some("import".to_owned()),
                    attributes: json!({}),
                    ..Profile::default()
                },
            )
        })
        .collect();
    let refs: Vec<(MemberId, &Profile)> =
        new_profiles.iter().map(|(id, p)| (id.clone(), p)).collect();
    crate::members::store::insert_many(tx.conn(), tenant_id, &refs, at).await?;
    let mut new_ids = HashSet::with_capacity(new_profiles.len());
    for (id, profile) in &new_profiles {
        if let Some(ext) = &profile.external_id {
            ids.insert(ext.clone(), id.to_string());
        }
        new_ids.insert(id.to_string());
        tx.emit(NewEvent::new(
            tenant_id,
            "member.created",
            Some(id.as_str()),
            json!({ "member_id": id, "source": "import", "via": "order_import" }),
        ));
    }
    Ok((ids, new_ids))
}

/// Give orders imported before keys existed the key of the row that repeats them (see the
/// module doc); the keys they took. Only members that existed before the chunk can have
/// such orders, and a key stored already is not given again.
async fn adopt_unkeyed_orders(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    keyed: &[Keyed<'_>],
) -> ApiResult<HashSet<String>> {
    let mut members: Vec<&str> = keyed
        .iter()
        .filter(|k| k.base.is_some() && !k.member_is_new)
        .map(|k| k.member_id)
        .collect();
    members.sort_unstable();
    members.dedup();
    let mut unkeyed = unkeyed_orders(conn, tenant_id, &members).await?;
    let mut adopted = HashSet::new();
    if unkeyed.is_empty() {
        return Ok(adopted);
    }
    let wanted: Vec<&str> = keyed
        .iter()
        .filter(|k| k.base.as_ref().is_some_and(|b| unkeyed.contains_key(b)))
        .map(|k| k.key.as_str())
        .collect();
    let stored = stored_values(conn, tenant_id, "import_key", &wanted).await?;
    for keyed in keyed {
        let Some(orders) = keyed.base.as_ref().and_then(|b| unkeyed.get_mut(b)) else {
            continue;
        };
        if stored.contains(&keyed.key) {
            continue;
        }
        while let Some(order_id) = orders.pop() {
            let done = sqlx::query(
                "UPDATE customer_order SET import_key = $1 \
                 WHERE tenant_id = $2 AND id = $3 AND import_key IS NULL",
            )
            .bind(keyed.key.as_str())
            .bind(tenant_id.as_str())
            .bind(order_id.as_str())
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 1 {
                adopted.insert(keyed.key.clone());
                break;
            }
        }
    }
    Ok(adopted)
}

/// The unkeyed external orders of these members, by the content key they would have at
/// occurrence 0.
async fn unkeyed_orders(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    members: &[&str],
) -> ApiResult<HashMap<String, Vec<String>>> {
    let mut unkeyed: HashMap<String, Vec<String>> = HashMap::new();
    for part in members.chunks(LOOKUP_BATCH) {
        let mut sql = Sql::for_conn(
            &*conn,
            "SELECT id, member_id, ordered_at, total, currency, items FROM customer_order \
             WHERE tenant_id = ",
        );
        sql.bind(tenant_id.as_str()).push(
            " AND import_key IS NULL AND source = 'external' AND external_reference IS NULL \
             AND member_id IN (",
        );
        for (i, member) in part.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*member);
        }
        sql.push(")");
        for row in sql.query().fetch_all(&mut *conn).await? {
            let items: String = row.try_get("items")?;
            let Some(items) = serde_json::from_str::<Value>(&items)
                .ok()
                .as_ref()
                .and_then(canonical_items)
            else {
                continue;
            };
            let member_id: String = row.try_get("member_id")?;
            let currency: String = row.try_get("currency")?;
            let content = Content {
                member_id: &member_id,
                ordered_at_micros: row.try_get("ordered_at")?,
                amount_minor: row.try_get("total")?,
                currency: &currency,
                items,
            };
            unkeyed
                .entry(content.key(0))
                .or_default()
                .push(row.try_get("id")?);
        }
    }
    Ok(unkeyed)
}

/// Insert the rows not adopted; the keys of the orders created. A row whose key (or order
/// id) is stored already, by an earlier chunk or import or one committed meanwhile, inserts
/// nothing.
async fn insert_orders(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    keyed: &[Keyed<'_>],
    adopted: &HashSet<String>,
    at: i64,
) -> ApiResult<HashSet<String>> {
    // Insert in (member id, time) order, the order of the member index: inserts then walk
    // forward through it instead of jumping around (1M rows: 41 s unsorted, see README).
    let mut rows: Vec<&Keyed> = keyed.iter().filter(|k| !adopted.contains(&k.key)).collect();
    rows.sort_by(|a, b| {
        a.member_id
            .cmp(b.member_id)
            .then(a.row.ordered_at.cmp(&b.row.ordered_at))
    });
    let mut inserted = HashSet::with_capacity(rows.len());
    for part in rows.chunks(1000) {
        let mut sql = Sql::for_conn(
            &*conn,
            "INSERT INTO customer_order (tenant_id, id, member_id, source, status, total, \
             currency, items, ordered_at, paid_at, created_at, external_reference, import_key) \
             VALUES ",
        );
        sql.values(part, |k| {
            let micros = to_micros(k.row.ordered_at);
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(OrderId::generate().to_string()),
                Arg::from(k.member_id),
                Arg::from("external"),
                Arg::from(OrderStatus::Completed.as_str()),
                Arg::from(k.row.amount),
                Arg::from(k.row.currency.as_str()),
                Arg::from(k.row.items.to_string()),
                Arg::from(micros),
                Arg::from(Some(micros)),
                Arg::from(at),
                Arg::from(k.row.order_id.clone()),
                Arg::from(k.key.as_str()),
            ]
        });
        sql.push(" ON CONFLICT DO NOTHING RETURNING import_key");
        for row in sql.query().fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_minor_units_exactly() {
        assert_eq!(parse_amount("29.33"), Ok(2933));
        assert_eq!(parse_amount("12.5"), Ok(1250));
        assert_eq!(parse_amount("0"), Ok(0));
        assert_eq!(parse_amount("7.00"), Ok(700));
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("1.234").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("").is_err());
    }

    #[test]
    fn amount_fen_is_an_alternative_that_must_agree() {
        assert_eq!(parse_amount_fen("2990"), Ok(2990));
        assert_eq!(parse_amount_fen(" 0 "), Ok(0));
        for bad in ["29.90", "-1", "", "1e3", "2,990", "+5"] {
            assert!(parse_amount_fen(bad).is_err(), "{bad}");
        }
        assert!(parse_amount_fen("99999999999999999999").is_err());
        assert_eq!(row_amount("29.9", ""), Ok(2990));
        assert_eq!(row_amount("", "2990"), Ok(2990));
        assert_eq!(row_amount("29.90", "2990"), Ok(2990));
        let disagree = row_amount("29.90", "29").unwrap_err();
        assert!(
            disagree.starts_with("amount_fen:") && disagree.contains("2990"),
            "{disagree}"
        );
        assert!(row_amount("", "").unwrap_err().contains("amount_fen"));
        assert!(row_amount("x", "2990").is_err());
    }

    fn header(names: &str) -> Result<CsvColumns, String> {
        let names: Vec<String> = names.split(',').map(str::to_owned).collect();
        CsvColumns::from_header(&names)
    }

    #[test]
    fn headers_name_columns_in_any_order() {
        let classic = header("external_member_id,ordered_at,amount,currency,items").unwrap();
        assert_eq!(
            (classic.count, classic.amount, classic.amount_fen),
            (5, Some(2), None)
        );
        let reordered = header("order_id,amount_fen,ordered_at,external_member_id").unwrap();
        assert_eq!(
            (
                reordered.order_id,
                reordered.amount_fen,
                reordered.external_member_id,
                reordered.items
            ),
            (Some(0), Some(1), 3, None)
        );
        assert!(header("external_member_id,ordered_at,amount,amount_fen").is_ok());
        let unknown = header("external_member_id,ordered_at,amount,price").unwrap_err();
        assert!(unknown.contains("`price`"), "{unknown}");
        assert!(header("external_member_id,ordered_at,amount,amount")
            .unwrap_err()
            .contains("twice"));
        assert!(header("external_member_id,ordered_at,currency")
            .unwrap_err()
            .contains("amount_fen"));
        assert!(header("ordered_at,amount")
            .unwrap_err()
            .contains("external_member_id"));
    }

    #[test]
    fn csv_rows_read_by_their_header() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let columns = header("order_id,external_member_id,ordered_at,amount_fen").unwrap();
        let record = csv_async::StringRecord::from(vec![" T-1 ", "u1", "2026-03-08", "2990"]);
        let row = parse_csv_record(&record, &columns, &zone, 2).unwrap();
        assert_eq!(row.order_id.as_deref(), Some("T-1"));
        assert_eq!(
            (row.amount, row.currency.as_str(), row.line),
            (2990, "CNY", 2)
        );
        assert_eq!(row.items, json!([]));
        let empty_id = csv_async::StringRecord::from(vec!["", "u1", "2026-03-08", "1"]);
        assert_eq!(
            parse_csv_record(&empty_id, &columns, &zone, 3)
                .unwrap()
                .order_id,
            None
        );
        let long_id = "x".repeat(200);
        let bad = csv_async::StringRecord::from(vec![long_id.as_str(), "u1", "2026-03-08", "1"]);
        assert!(parse_csv_record(&bad, &columns, &zone, 4)
            .unwrap_err()
            .starts_with("order_id:"));
    }

    #[test]
    fn dates_are_local_midnight() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            parse_ordered_at("19970101", &zone).unwrap().to_string(),
            "1996-12-31T16:00:00Z"
        );
        assert_eq!(
            parse_ordered_at("2026-03-08", &zone).unwrap(),
            parse_ordered_at("2026-03-08T00:00:00+08:00", &zone).unwrap()
        );
        assert!(parse_ordered_at("yesterday", &zone).is_err());
    }

    #[test]
    fn items_parse_and_validate() {
        assert_eq!(
            parse_items("a:2|b").unwrap(),
            json!([{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}])
        );
        assert_eq!(parse_items("").unwrap(), json!([]));
        assert_eq!(
            parse_items(" a : 3 ").unwrap(),
            json!([{"sku": "a", "qty": 3}])
        );
        assert!(parse_items("a:0").is_err());
        assert!(parse_items(" :2").is_err());
    }

    #[test]
    fn cdnow_lines_of_both_files() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let master = parse_cdnow_line("00001 19970101 1 11.77", &zone)
            .unwrap()
            .unwrap();
        assert_eq!(master.external_member_id, "cdnow-00001");
        assert_eq!(master.amount, 1177);
        let sample = parse_cdnow_line("4 1 19970101 2 29.33", &zone)
            .unwrap()
            .unwrap();
        assert_eq!(sample.external_member_id, "cdnow-4");
        assert_eq!(sample.amount, 2933);
        assert!(parse_cdnow_line("customer_id date cds dollars", &zone)
            .unwrap()
            .is_none());
        assert!(parse_cdnow_line("1 2", &zone).is_err());
    }
}
