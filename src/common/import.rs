//! What every CSV import reports about its bad rows: each one with its line number (the
//! header is line 1), listed up to [`MAX_REPORTED_ERRORS`] and all counted.

use serde::Serialize;
use utoipa::ToSchema;

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
