//! CSV import and export of members.
//!
//! The import streams: rows are parsed one at a time (each bounded to
//! [`crate::common::import::MAX_ROW_BYTES`], the body to
//! [`crate::common::import::MAX_IMPORT_BYTES`]) and written in chunks of [`CHUNK_ROWS`],
//! each chunk in one transaction, so a million-row file never sits in memory. Good rows are
//! kept and bad rows reported with their line number (the header is line 1). A row whose
//! `external_id` exists updates that member; empty cells leave the stored value as it is and an
//! empty `tags` cell leaves the tags, while a non-empty one replaces them.

use std::collections::HashMap;

use csv_async::{AsyncReaderBuilder, StringRecord};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncRead;
use utoipa::ToSchema;

use super::model::{self, Profile};
use super::store;
use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::import::{
    check_header, record_line, BoundedRows, RowCheck, RowErrors, TotalLimit, MAX_IMPORT_BYTES,
    MAX_ROW_BYTES,
};
use crate::common::outbox::NewEvent;
use crate::common::time::to_micros;

/// The columns, in order, of import and export files.
pub const COLUMNS: [&str; 6] = ["external_id", "name", "phone", "birthday", "source", "tags"];
/// Most data rows one import takes.
pub const MAX_IMPORT_ROWS: u64 = 1_000_000;
/// Rows written per transaction.
pub const CHUNK_ROWS: usize = 1_000;

/// The outcome of an import.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    #[serde(flatten)]
    pub rows: RowErrors,
}

impl ImportReport {
    fn error(&mut self, line: u64, reason: impl Into<String>) {
        self.rows.push(line, reason);
    }
}

#[derive(Debug)]
struct Row {
    profile: Profile,
    /// Whether the `tags` cell had anything (an empty one keeps the stored tags).
    has_tags: bool,
}

/// Parse one CSV record into a validated profile, or say why not.
fn parse_record(record: &StringRecord) -> Result<Row, String> {
    if record.len() != COLUMNS.len() {
        return Err(format!(
            "expected {} columns, found {}",
            COLUMNS.len(),
            record.len()
        ));
    }
    let cell = |i: usize| {
        let v = record.get(i).unwrap_or("").trim();
        (!v.is_empty()).then_some(v)
    };
    let reason = |e: ApiError| e.message.clone();
    let external_id = cell(0)
        .ok_or_else(|| "external_id: is required".to_owned())
        .and_then(|v| model::external_id(v).map_err(reason))?;
    let tags_cell = cell(5);
    let tags: Vec<String> = tags_cell
        .map(|t| t.split('|').map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(Row {
        profile: Profile {
            external_id: Some(external_id),
            name: cell(1).map(model::name).transpose().map_err(reason)?,
            phone: cell(2).map(model::phone).transpose().map_err(reason)?,
            birthday: cell(3).map(model::birthday).transpose().map_err(reason)?,
            gender: None,
            source: cell(4).map(model::source).transpose().map_err(reason)?,
            tags: model::tags("tags", &tags).map_err(reason)?,
            attributes: json!({}),
            consent: Default::default(),
        },
        has_tags: tags_cell.is_some(),
    })
}

/// Import members from CSV; `progress` is told the number of rows read so far.
pub async fn import<R>(
    db: &Db,
    now: impl Fn() -> jiff::Timestamp,
    tenant_id: &TenantId,
    input: R,
    progress: impl Fn(u64),
) -> ApiResult<ImportReport>
where
    R: AsyncRead + Unpin + Send,
{
    let (input, over_limit) = TotalLimit::new(input, MAX_IMPORT_BYTES);
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

    let mut report = ImportReport::default();
    let mut chunk: Vec<Row> = Vec::with_capacity(CHUNK_ROWS);
    let mut rows_read: u64 = 0;
    let mut check = RowCheck::default();
    let mut records = reader.records();
    while let Some(record) = records.next().await {
        if over_limit.exceeded() {
            return Err(over_limit.error());
        }
        rows_read += 1;
        let line = check.line(record_line(&record, rows_read + 1));
        if rows_read > MAX_IMPORT_ROWS {
            report.error(
                line,
                format!(
                    "more than {MAX_IMPORT_ROWS} rows; this row and the rest were not imported"
                ),
            );
            break;
        }
        match record {
            Err(e) => report.error(line, format!("unreadable row: {e}")),
            Ok(record) => match check.check(&record).and_then(|()| parse_record(&record)) {
                Ok(row) => chunk.push(row),
                Err(reason) => report.error(line, reason),
            },
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
            progress(rows_read);
        }
    }
    if !chunk.is_empty() {
        write_chunk(db, now(), tenant_id, chunk, &mut report).await?;
    }
    progress(rows_read);
    Ok(report)
}

/// Write one chunk of good rows in one transaction.
async fn write_chunk(
    db: &Db,
    now: jiff::Timestamp,
    tenant_id: &TenantId,
    rows: Vec<Row>,
    report: &mut ImportReport,
) -> ApiResult<()> {
    // Within a chunk the last row of an external_id wins; earlier ones count as updates of it.
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut last_index: HashMap<&str, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(ext) = row.profile.external_id.as_deref() {
            first_index.entry(ext).or_insert(i);
            last_index.insert(ext, i);
        }
    }
    let externals: Vec<&str> = last_index.keys().copied().collect();
    let at = to_micros(now);
    let mut tx = db.begin(now).await?;
    let existing = store::ids_by_external(tx.conn(), tenant_id, &externals).await?;

    let mut inserts: Vec<(MemberId, &Profile)> = Vec::new();
    let mut updates: Vec<(String, &Profile)> = Vec::new();
    let mut tag_sets: Vec<(String, &[String])> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(ext) = row.profile.external_id.as_deref() else {
            continue;
        };
        let is_last = last_index.get(ext) == Some(&i);
        let seen_before = existing.contains_key(ext) || first_index.get(ext) != Some(&i);
        if seen_before {
            report.updated += 1;
        } else {
            report.created += 1;
        }
        if !is_last {
            continue;
        }
        let id = match existing.get(ext) {
            Some(id) => {
                updates.push((id.clone(), &row.profile));
                id.clone()
            }
            None => {
                let id = MemberId::generate();
                inserts.push((id.clone(), &row.profile));
                id.to_string()
            }
        };
        if row.has_tags {
            tag_sets.push((id, &row.profile.tags));
        }
    }
    store::insert_many(tx.conn(), tenant_id, &inserts, at).await?;
    store::update_many(tx.conn(), tenant_id, &updates, at).await?;
    let tag_refs: Vec<(&str, &[String])> = tag_sets
        .iter()
        .map(|(id, tags)| (id.as_str(), *tags))
        .collect();
    store::replace_tags_many(tx.conn(), tenant_id, &tag_refs).await?;
    for (id, profile) in &inserts {
        tx.emit(NewEvent::new(
            tenant_id,
            "member.created",
            Some(id.as_str()),
            json!({ "member_id": id, "source": profile.source, "via": "import" }),
        ));
    }
    for (id, _) in &updates {
        tx.emit(NewEvent::new(
            tenant_id,
            "member.updated",
            Some(id.as_str()),
            json!({ "member_id": id, "fields": ["name", "phone", "birthday", "source", "tags"], "via": "import" }),
        ));
    }
    tx.commit().await?;
    Ok(())
}

/// Members per page while exporting.
pub const EXPORT_PAGE: i64 = 1_000;

/// One page of the export as CSV bytes (with the header when `header` is set) and the cursor
/// of the next page.
pub async fn export_page(
    db: &Db,
    tenant_id: &TenantId,
    after: Option<String>,
    header: bool,
) -> ApiResult<(Vec<u8>, Option<String>)> {
    let filter = store::Filter {
        status: Some(model::STATUS_ACTIVE.to_owned()),
        after_id: after,
        ..Default::default()
    };
    let mut reader = db.reader().await?;
    let members = store::list(&mut reader, tenant_id, &filter, EXPORT_PAGE).await?;
    let mut writer = csv_async::AsyncWriter::from_writer(Vec::new());
    if header {
        writer
            .write_record(COLUMNS)
            .await
            .map_err(ApiError::internal)?;
    }
    for m in &members {
        let tags = m.tags.join("|");
        writer
            .write_record([
                m.external_id.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or(""),
                m.phone.as_deref().unwrap_or(""),
                m.birthday.as_deref().unwrap_or(""),
                m.source.as_deref().unwrap_or(""),
                tags.as_str(),
            ])
            .await
            .map_err(ApiError::internal)?;
    }
    let bytes = writer.into_inner().await.map_err(ApiError::internal)?;
    let next = (members.len() as i64 == EXPORT_PAGE)
        .then(|| members.last().map(|m| m.id.to_string()))
        .flatten();
    Ok((bytes, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> StringRecord {
        StringRecord::from(cells.to_vec())
    }

    #[test]
    fn parses_a_good_row() {
        let row = parse_record(&record(&[
            "u1",
            "张三",
            "+8613800000000",
            "1990-05-01",
            "store",
            "vip|new",
        ]))
        .unwrap();
        assert_eq!(row.profile.tags, vec!["vip", "new"]);
        assert!(row.has_tags);
        assert_eq!(row.profile.phone.as_deref(), Some("+8613800000000"));
    }

    #[test]
    fn explains_bad_rows() {
        let err = parse_record(&record(&["u1", "x", "12345", "", "", ""])).unwrap_err();
        assert!(err.starts_with("phone"), "{err}");
        let err = parse_record(&record(&["", "x", "", "", "", ""])).unwrap_err();
        assert!(err.starts_with("external_id"), "{err}");
        let err = parse_record(&record(&["u1", "x"])).unwrap_err();
        assert!(err.contains("columns"), "{err}");
        let err = parse_record(&record(&["u1", "", "", "1990-13-01", "", ""])).unwrap_err();
        assert!(err.starts_with("birthday"), "{err}");
    }
}
