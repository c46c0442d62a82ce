//! What every import shares: the report of its bad rows, each with its line number (the
//! header is line 1), listed up to [`MAX_REPORTED_ERRORS`] and all counted; and the bounds on
//! what it reads while streaming: [`MAX_ROW_BYTES`] per row ([`BoundedRows`] and [`RowCheck`]
//! for CSV, [`read_line_bounded`] for line formats) and [`MAX_IMPORT_BYTES`] per body
//! ([`TotalLimit`]). Rows over their bound and rows holding NUL bytes are row errors.
//!
//! [`BoundedRows`] is written by hand because csv-async, the parser used here, has no limit on
//! a record's size; it follows just enough of the CSV grammar to find where records end.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use csv_async::{AsyncReader, StringRecord};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, ReadBuf};
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
    let expected = format!("`{}`", columns.join(","));
    let found = read_header(reader, &expected).await?;
    if found != columns {
        return Err(ApiError::invalid_request(format!(
            "the CSV header must be {expected}; found `{}`",
            found.join(",")
        ))
        .with_details(json!({ "line": 1 })));
    }
    Ok(())
}

/// Read the CSV header: its column names lower-cased and trimmed (a UTF-8 byte-order mark
/// allowed), for formats whose columns may come in any order. A header that cannot be read,
/// or that was longer than [`MAX_ROW_BYTES`] or holds a NUL byte, rejects the whole file
/// (400); `expected` says what the header should be, for the message.
pub async fn read_header<R>(
    reader: &mut AsyncReader<R>,
    expected: &str,
) -> Result<Vec<String>, ApiError>
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
    if found.iter().any(|h| h.contains('\u{0}')) {
        return Err(ApiError::invalid_request(format!(
            "the CSV header must be {expected}; found a header longer than {MAX_ROW_BYTES} bytes \
             or holding a NUL byte"
        ))
        .with_details(json!({ "line": 1 })));
    }
    Ok(found)
}

/// The file line a record (or a broken record) starts on; `fallback` when the reader does
/// not know.
pub fn record_line(record: &Result<StringRecord, csv_async::Error>, fallback: u64) -> u64 {
    match record {
        Ok(r) => r.position().map(|p| p.line()).unwrap_or(fallback),
        Err(e) => e.position().map(|p| p.line()).unwrap_or(fallback),
    }
}

/// Longest row (CSV record, or line of a line-based format) an import takes, in bytes. A
/// longer row is skipped while it streams past, never held whole, and reported as a bad row;
/// the rows around it are imported. Real rows are a few hundred bytes.
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// Largest import body, in bytes (2 GiB: a million member rows or five million order rows at
/// their usual sizes fit well inside). Beyond it the import stops with 413 `payload_too_large`;
/// chunks already written stay written, as with the row limits.
pub const MAX_IMPORT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The text put in place of a skipped row's rest: NUL bytes around it, so that no real row can
/// be mistaken for it (a NUL in a field is refused anyway). It carries the number of line
/// breaks skipped inside quotes, so that the lines of later rows are still reported right.
const TOO_LONG_MARK: &str = "\u{0}row_too_long:";

/// Whether an import body went past [`MAX_IMPORT_BYTES`] (shared with its [`TotalLimit`]).
#[derive(Debug, Clone, Default)]
pub struct OverLimit(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl OverLimit {
    pub fn exceeded(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The 413 to answer once [`OverLimit::exceeded`].
    pub fn error(&self) -> ApiError {
        ApiError::payload_too_large(usize::try_from(MAX_IMPORT_BYTES).unwrap_or(usize::MAX))
    }
}

/// A reader that fails once more than `max` bytes went through it, and says so in its
/// [`OverLimit`].
#[derive(Debug)]
pub struct TotalLimit<R> {
    inner: R,
    read: u64,
    max: u64,
    over: OverLimit,
}

impl<R> TotalLimit<R> {
    pub fn new(inner: R, max: u64) -> (Self, OverLimit) {
        let over = OverLimit::default();
        let reader = TotalLimit {
            inner,
            read: 0,
            max,
            over: over.clone(),
        };
        (reader, over)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TotalLimit<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as u64;
        self.read = self.read.saturating_add(read);
        if self.read > self.max {
            // An error hands back no bytes.
            buf.set_filled(before);
            self.over
                .0
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the import is larger than {} bytes",
                self.max
            ))));
        }
        Poll::Ready(Ok(()))
    }
}

/// Where a CSV parser stands within a record; enough of the grammar (RFC 4180, `"` quotes
/// doubled inside quoted fields, any of `\r`, `\n` ending a record) to know where records
/// end without holding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    RecordStart,
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: the field's end, or the first half of an escaped quote.
    QuoteInQuoted,
}

impl Scan {
    /// Take one byte; true when it ends the record.
    fn advance(&mut self, byte: u8) -> bool {
        use Scan::*;
        let (next, ends) = match (*self, byte) {
            (Quoted, b'"') => (QuoteInQuoted, false),
            (Quoted, _) => (Quoted, false),
            (_, b'\n' | b'\r') => (RecordStart, true),
            (RecordStart | FieldStart, b'"') => (Quoted, false),
            (QuoteInQuoted, b'"') => (Quoted, false),
            (_, b',') => (FieldStart, false),
            _ => (Unquoted, false),
        };
        *self = next;
        ends
    }
}

/// A CSV reader's input with each record bounded to `max_row` bytes.
///
/// csv-async reads a record into buffers that grow with it: one 300 MB field took the server
/// to 1 GB of memory. This reader forwards at most `max_row` bytes of a record; past that it
/// drops the record's bytes as they stream by, and at the record's end puts in their place a
/// closing quote where one is needed and one more field holding [`TOO_LONG_MARK`], which
/// [`RowCheck`] turns into a row error. Memory stays at about `max_row` per import.
#[derive(Debug)]
pub struct BoundedRows<R> {
    inner: R,
    max_row: usize,
    scan: Scan,
    /// Bytes of the current record forwarded so far.
    row_bytes: usize,
    /// While skipping a record: the parser's state at the cut and the `\n`s dropped since.
    skipping: Option<(Scan, u64)>,
    /// The last byte was a `\r` that ended a record.
    after_cr: bool,
    /// Bytes ready for the caller, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    chunk: Box<[u8]>,
}

impl<R> BoundedRows<R> {
    pub fn new(inner: R, max_row: usize) -> Self {
        BoundedRows {
            inner,
            max_row,
            scan: Scan::RecordStart,
            row_bytes: 0,
            skipping: None,
            after_cr: false,
            out: Vec::new(),
            out_at: 0,
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    /// What replaces the rest of a skipped record.
    fn mark(out: &mut Vec<u8>, cut: Scan, newlines: u64) {
        if cut == Scan::Quoted {
            out.push(b'"');
        }
        out.push(b',');
        out.extend_from_slice(TOO_LONG_MARK.as_bytes());
        out.extend_from_slice(newlines.to_string().as_bytes());
        out.push(0);
    }

    fn take(&mut self, bytes: usize) {
        for i in 0..bytes {
            let mut byte = self.chunk[i];
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                // The `\n` of a `\r\n` whose `\r` already ended the record.
                continue;
            }
            let before = self.scan;
            let ends = self.scan.advance(byte);
            if ends && byte == b'\r' {
                // Hand the parser `\n` for a record's `\r\n` (or lone `\r`): csv-async counts
                // lines by `\n` but not the one of a `\r\n`, so the rows of a file saved with
                // CRLF (as Excel saves it) were reported on ever earlier lines.
                byte = b'\n';
                self.after_cr = true;
            }
            if let Some((cut, newlines)) = &mut self.skipping {
                if ends {
                    Self::mark(&mut self.out, *cut, *newlines);
                    self.out.push(byte);
                    self.skipping = None;
                    self.row_bytes = 0;
                } else if byte == b'\n' {
                    *newlines += 1;
                }
                continue;
            }
            if ends {
                self.out.push(byte);
                self.row_bytes = 0;
            } else if self.row_bytes >= self.max_row {
                self.skipping = Some((before, u64::from(byte == b'\n')));
            } else {
                self.out.push(byte);
                self.row_bytes += 1;
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for BoundedRows<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_at < this.out.len() {
                let n = (this.out.len() - this.out_at).min(buf.remaining());
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                return Poll::Ready(Ok(()));
            }
            this.out.clear();
            this.out_at = 0;
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let read = chunk.filled().len();
            if read == 0 {
                // End of input: close a record that was being skipped, then report the end.
                match this.skipping.take() {
                    Some((cut, newlines)) => Self::mark(&mut this.out, cut, newlines),
                    None => return Poll::Ready(Ok(())),
                }
            } else {
                this.take(read);
            }
        }
    }
}

/// Checks each record of a [`BoundedRows`] input before it is parsed: a row that was too long
/// or holds a NUL byte is a row error. Also keeps the line numbers right after a skipped row
/// whose quoted fields spanned several lines.
#[derive(Debug, Default)]
pub struct RowCheck {
    /// `\n`s dropped inside skipped rows so far.
    lines_skipped: u64,
}

impl RowCheck {
    /// The file line of a record, given the line the parser counted.
    pub fn line(&self, parser_line: u64) -> u64 {
        parser_line + self.lines_skipped
    }

    /// Why the record cannot be imported, if it cannot.
    pub fn check(&mut self, record: &StringRecord) -> Result<(), String> {
        if let Some(mark) = record
            .len()
            .checked_sub(1)
            .and_then(|last| record.get(last))
            .and_then(|f| f.strip_prefix(TOO_LONG_MARK))
        {
            self.lines_skipped += mark.trim_end_matches('\u{0}').parse::<u64>().unwrap_or(0);
            return Err(format!(
                "the row is longer than {MAX_ROW_BYTES} bytes; it was skipped"
            ));
        }
        if let Some(column) = record.iter().position(|f| f.contains('\u{0}')) {
            return Err(format!(
                "column {} holds a NUL byte, which is not allowed in text",
                column + 1
            ));
        }
        Ok(())
    }
}

/// Read one line (without its `\n` or `\r\n`) of at most `max` bytes into `line`: `None` at
/// the end of input, `Some(false)` when the line was longer (skipped to its end, `line` left
/// empty), `Some(true)` otherwise. For line-based import formats.
pub async fn read_line_bounded<R>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>>
where
    R: AsyncBufRead + Unpin,
{
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        any = true;
        let (taken, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let content = &available[..if ended { taken - 1 } else { taken }];
        if !too_long {
            if line.len() + content.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(content);
            }
        }
        reader.consume(taken);
        if ended {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(!too_long))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    async fn rows(input: &[u8], max_row: usize) -> Vec<(u64, Result<Vec<String>, String>)> {
        let reader = BoundedRows::new(input, max_row);
        let mut csv = csv_async::AsyncReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .create_reader(reader);
        let mut check = RowCheck::default();
        let mut out = Vec::new();
        let mut records = csv.records();
        while let Some(record) = records.next().await {
            let record = record.expect("readable");
            let line = check.line(record.position().unwrap().line());
            let row = check
                .check(&record)
                .map(|()| record.iter().map(str::to_owned).collect());
            out.push((line, row));
        }
        out
    }

    #[tokio::test]
    async fn long_rows_are_skipped_and_the_rest_kept_on_the_right_lines() {
        let long = "x".repeat(100);
        let input = format!(
            "a,b\n{long},c\n\"{long}\nstill\nquoted\",d\nlast,\"quoted \"\"ok\"\"\"\r\nq,\"{long}\"\"{long}\"\n",
        );
        let out = rows(input.as_bytes(), 40).await;
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(out[0], (1, Ok(vec!["a".into(), "b".into()])));
        assert_eq!(out[1].0, 2);
        assert!(out[1].1.as_ref().unwrap_err().contains("longer than"));
        assert_eq!(out[2].0, 3);
        assert!(out[2].1.is_err());
        assert_eq!(out[3], (6, Ok(vec!["last".into(), "quoted \"ok\"".into()])));
        assert_eq!(out[4].0, 7);
        assert!(out[4].1.is_err());
    }

    #[tokio::test]
    async fn a_long_row_at_the_end_without_a_line_break_is_reported() {
        let input = format!("a,b\nc,\"{}", "y".repeat(500));
        let out = rows(input.as_bytes(), 40).await;
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[1].1.is_err());
    }

    #[tokio::test]
    async fn nul_bytes_are_a_row_error() {
        let out = rows(b"a,b\nc,d\0e\nf,g\n", 1000).await;
        assert!(out[1].1.as_ref().unwrap_err().contains("column 2"));
        assert!(out[2].1.is_ok());
    }

    #[tokio::test]
    async fn the_total_limit_fails_the_read() {
        use tokio::io::AsyncReadExt as _;
        let (mut reader, over) = TotalLimit::new(&[7u8; 100][..], 50);
        let mut sink = Vec::new();
        assert!(reader.read_to_end(&mut sink).await.is_err());
        assert!(over.exceeded());
    }

    #[tokio::test]
    async fn long_lines_are_skipped() {
        let input = format!("one\n{}\nthree\r\n", "z".repeat(100));
        let mut reader = tokio::io::BufReader::with_capacity(16, input.as_bytes());
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(ok) = read_line_bounded(&mut reader, &mut line, 20).await.unwrap() {
            seen.push((ok, String::from_utf8(line.clone()).unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                (true, "one".to_owned()),
                (false, String::new()),
                (true, "three".to_owned())
            ]
        );
    }
}
