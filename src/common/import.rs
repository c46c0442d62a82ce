//! What every CSV import reports about its bad rows: each one with its line number (the
//! header is line 1), listed up to [`MAX_REPORTED_ERRORS`] and all counted.

use csv_async::{AsyncReader, StringRecord};
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncRead;
use utoipa::ToSchema;

use super::error::ApiError;

/// Most row errors listed in a report (all are counted in `error_count`).
pub const MAX_REPORTED_ERRORS: usize = 10_000;

/// One bad row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RowError {
    /// 1-based line in the file; the header is line 1.
    pub line: u64,
    pub reason: String,
}

/// The bad rows of an import.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct RowErrors {
    pub errors: Vec<RowError>,
    /// All bad rows, also those beyond the listed ones.
    pub error_count: u64,
    /// True when more errors occurred than are listed.
    pub errors_truncated: bool,
}

impl RowErrors {
    pub fn push(&mut self, line: u64, reason: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RowError {
                line,
                reason: reason.into(),
            });
        } else {
            self.errors_truncated = true;
        }
    }
}

/// Read the CSV header and require exactly `columns` (case-insensitive, a UTF-8 byte-order
/// mark and surrounding spaces allowed); a wrong header rejects the whole file (400).
pub async fn check_header<R>(reader: &mut AsyncReader<R>, columns: &[&str]) -> Result<(), ApiError>
where
    R: AsyncRead + Unpin + Send,
{
    let found: Vec<String> = reader
        .headers()
        .await
        .map_err(|e| ApiError::invalid_request(format!("could not read the CSV header: {e}")))?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            };
            h.trim().to_ascii_lowercase()
        })
        .collect();
    if found != columns {
        return Err(ApiError::invalid_request(format!(
            "the CSV header must be `{}`; found `{}`",
            columns.join(","),
            found.join(",")
        ))
        .with_details(json!({ "line": 1 })));
    }
    Ok(())
}

/// The file line a record (or a broken record) starts on; `fallback` when the reader does
/// not know.
pub fn record_line(record: &Result<StringRecord, csv_async::Error>, fallback: u64) -> u64 {
    match record {
        Ok(r) => r.position().map(|p| p.line()).unwrap_or(fallback),
        Err(e) => e.position().map(|p| p.line()).unwrap_or(fallback),
    }
}
