//! Order-history import: orders placed elsewhere, already paid, ingested so that analytics
//! (and later growth and points) see them.
//!
//! Two formats:
//! - `csv`: header `external_member_id,ordered_at,amount,currency,items`; `ordered_at` is an
//!   RFC 3339 instant or a date (`YYYY-MM-DD`, taken as local midnight in the tenant's zone);
//!   `amount` is in major units (`29.33` yuan) and becomes fen exactly, without floating point;
//!   `currency` defaults to CNY; `items` is `sku:qty|sku:qty` (may be empty).
//! - `cdnow`: the CDNOW files as they are (whitespace separated; `customer date cds dollars`
//!   in the master file, `master_id sample_id date cds dollars` in the sample); dollars
//!   become cents.
//!
//! Members that do not exist yet are created by external id (source `import`). Rows are
//! written in chunks, one transaction each, so a million rows stream through bounded memory.
//! Importing the same file twice imports its orders twice (the format carries no order id).

use std::collections::HashMap;

use csv_async::AsyncReaderBuilder;
use futures::StreamExt as _;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, BufReader};
use utoipa::ToSchema;

use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};
use crate::common::events::NewEvent;
use crate::common::ids::{MemberId, OrderId, TenantId};
use crate::common::import::{
    check_header, read_line_bounded, record_line, BoundedRows, RowCheck, RowErrors, TotalLimit,
    MAX_IMPORT_BYTES, MAX_ROW_BYTES,
};
use crate::common::sql::{Arg, Sql};
use crate::common::time::to_micros;
use crate::members::model::{self, Profile};

/// The columns of the CSV format.
pub const COLUMNS: [&str; 5] = [
    "external_member_id",
    "ordered_at",
    "amount",
    "currency",
    "items",
];
/// Most rows one import takes.
pub const MAX_ROWS: u64 = 5_000_000;
/// Rows written per transaction.
pub const CHUNK_ROWS: usize = 20_000;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Cdnow,
}

/// The outcome of an order import.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct OrderImportReport {
    /// Orders created.
    pub created: u64,
    /// Members created because their external id was new.
    pub members_created: u64,
    #[serde(flatten)]
    pub rows: RowErrors,
}

/// One good row.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub external_member_id: String,
    pub ordered_at: Timestamp,
    pub amount: i64,
    pub currency: String,
    pub items: Value,
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
        let qty: i64 = qty
            .trim()
            .parse()
            .ok()
            .filter(|q| (1..=1_000_000).contains(q))
            .ok_or_else(|| format!("items: bad quantity in {part:?}"))?;
        if sku.is_empty() || sku.len() > 64 {
            return Err(format!("items: bad sku in {part:?}"));
        }
        items.push(json!({ "sku": sku.trim(), "qty": qty }));
    }
    Ok(Value::Array(items))
}

fn parse_csv_record(record: &csv_async::StringRecord, zone: &TimeZone) -> Result<OrderRow, String> {
    if record.len() != COLUMNS.len() {
        return Err(format!(
            "expected {} columns, found {}",
            COLUMNS.len(),
            record.len()
        ));
    }
    let cell = |i: usize| record.get(i).unwrap_or("").trim();
    let external = model::external_id(cell(0)).map_err(|e| {
        format!(
            "external_member_id: {}",
            e.message.trim_start_matches("external_id: ")
        )
    })?;
    let currency = match cell(3) {
        "" => "CNY".to_owned(),
        c if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => c.to_ascii_uppercase(),
        c => return Err(format!("currency: {c:?} is not a three-letter code")),
    };
    Ok(OrderRow {
        external_member_id: external,
        ordered_at: parse_ordered_at(cell(1), zone)?,
        amount: parse_amount(cell(2))?,
        currency,
        items: parse_items(cell(4))?,
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
        external_member_id: format!("cdnow-{customer}"),
        ordered_at: parse_ordered_at(date, zone)?,
        amount: parse_amount(dollars)?,
        currency: "USD".to_owned(),
        items: json!([{ "sku": "cd", "qty": cds.parse::<i64>().unwrap_or(1) }]),
    }))
}

/// Import orders; `progress` hears the number of rows read so far.
pub async fn import<R>(
    db: &Db,
    now: impl Fn() -> Timestamp,
    tenant_id: &TenantId,
    zone: &TimeZone,
    format: Format,
    input: R,
    progress: impl Fn(u64),
) -> ApiResult<OrderImportReport>
where
    R: AsyncRead + Unpin + Send,
{
    let mut report = OrderImportReport::default();
    let mut chunk: Vec<OrderRow> = Vec::with_capacity(CHUNK_ROWS);
    let mut rows: u64 = 0;
    let (input, over_limit) = TotalLimit::new(input, MAX_IMPORT_BYTES);
    match format {
        Format::Csv => {
            let mut reader = AsyncReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .create_reader(BoundedRows::new(input, MAX_ROW_BYTES));
            if let Err(error) = check_header(&mut reader, &COLUMNS).await {
                return Err(if over_limit.exceeded() {
                    over_limit.error()
                } else {
                    error
                });
            }
            let mut check = RowCheck::default();
            let mut records = reader.records();
            while let Some(record) = records.next().await {
                if over_limit.exceeded() {
                    return Err(over_limit.error());
                }
                rows += 1;
                let line = check.line(record_line(&record, rows + 1));
                if rows > MAX_ROWS {
                    report.rows.push(
                        line,
                        format!("more than {MAX_ROWS} rows; the rest was not imported"),
                    );
                    break;
                }
                match record
                    .map_err(|e| format!("unreadable row: {e}"))
                    .and_then(|r| check.check(&r).and_then(|()| parse_csv_record(&r, zone)))
                {
                    Ok(row) => chunk.push(row),
                    Err(reason) => report.rows.push(line, reason),
                }
                if chunk.len() >= CHUNK_ROWS {
                    write_chunk(
                        db,
                        now(),
                        tenant_id,
                        std::mem::take(&mut chunk),
                        &mut report,
                    )
                    .await?;
                    progress(rows);
                }
            }
        }
        Format::Cdnow => {
            let mut input = BufReader::new(input);
            let mut bytes = Vec::new();
            let mut line_no: u64 = 0;
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
                let line = match (fits, std::str::from_utf8(&bytes)) {
                    (false, _) => Err(format!(
                        "the line is longer than {MAX_ROW_BYTES} bytes; it was skipped"
                    )),
                    (true, Err(_)) => Err("the line is not valid UTF-8".to_owned()),
                    (true, Ok(line)) if line.contains('\u{0}') => {
                        Err("the line holds a NUL byte, which is not allowed in text".to_owned())
                    }
                    (true, Ok(line)) => Ok(line),
                };
                let line = match line {
                    Ok(line) => line,
                    Err(reason) => {
                        rows += 1;
                        report.rows.push(line_no, reason);
                        continue;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                rows += 1;
                if rows > MAX_ROWS {
                    report.rows.push(
                        line_no,
                        format!("more than {MAX_ROWS} rows; the rest was not imported"),
                    );
                    break;
                }
                match parse_cdnow_line(line, zone) {
                    Ok(Some(row)) => chunk.push(row),
                    Ok(None) => {}
                    Err(reason) => report.rows.push(line_no, reason),
                }
                if chunk.len() >= CHUNK_ROWS {
                    write_chunk(
                        db,
                        now(),
                        tenant_id,
                        std::mem::take(&mut chunk),
                        &mut report,
                    )
                    .await?;
                    progress(rows);
                }
            }
        }
    }
    if !chunk.is_empty() {
        write_chunk(db, now(), tenant_id, chunk, &mut report).await?;
    }
    progress(rows);
    Ok(report)
}

async fn write_chunk(
    db: &Db,
    now: Timestamp,
    tenant_id: &TenantId,
    rows: Vec<OrderRow>,
    report: &mut OrderImportReport,
) -> ApiResult<()> {
    let at = to_micros(now);
    let mut tx = db.begin(now).await?;
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
    for (id, profile) in &new_profiles {
        if let Some(ext) = &profile.external_id {
            ids.insert(ext.clone(), id.to_string());
        }
        tx.emit(NewEvent::new(
            tenant_id,
            "member.created",
            Some(id.as_str()),
            json!({ "member_id": id, "source": "import", "via": "order_import" }),
        ));
    }
    // Insert in (member id, time) order, the order of the member index: inserts then walk
    // forward through it instead of jumping around (1M rows: 41 s unsorted, see README).
    let mut rows: Vec<(&str, &OrderRow)> = rows
        .iter()
        .map(|r| {
            (
                ids.get(&r.external_member_id)
                    .map(String::as_str)
                    .unwrap_or(""),
                r,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0).then(a.1.ordered_at.cmp(&b.1.ordered_at)));
    for chunk in rows.chunks(1000) {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO customer_order (tenant_id, id, member_id, source, status, total, currency, \
             items, ordered_at, paid_at, created_at) VALUES ",
        );
        sql.values(chunk, |(member_id, r)| {
            let micros = to_micros(r.ordered_at);
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(OrderId::generate().to_string()),
                Arg::from(*member_id),
                Arg::from("external"),
                Arg::from("completed"),
                Arg::from(r.amount),
                Arg::from(r.currency.as_str()),
                Arg::from(r.items.to_string()),
                Arg::from(micros),
                Arg::from(Some(micros)),
                Arg::from(at),
            ]
        });
        sql.query().execute(tx.conn()).await?;
    }
    // The daily run (repurchase reminders, expiry…) must run for a tenant with orders.
    crate::membership::program::schedule_daily(&mut tx, tenant_id).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "orders.imported",
        None,
        json!({ "orders": rows.len(), "members_created": new_profiles.len() }),
    ));
    tx.commit().await?;
    report.created += rows.len() as u64;
    report.members_created += new_profiles.len() as u64;
    Ok(())
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
        assert!(parse_items("a:0").is_err());
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
