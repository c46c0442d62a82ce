//! Load benchmarks run from the binary (`shequn bench …`): each runs our path and the naive
//! path against the same kind of database in one process and one run, checks exactness after
//! both, and prints one JSON object as its last line.

pub mod automations;
pub mod codes;
pub mod console_pages;
pub mod flash_sale;
pub mod http;
pub mod ledger;
pub mod segments;
pub mod webhooks;

use std::time::Duration;

/// Options shared by every load benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Database to run on; a temporary SQLite file when absent.
    pub database_url: Option<String>,
    /// How long each side runs.
    pub duration: Duration,
    /// Concurrent callers.
    pub concurrency: usize,
}

/// The benchmark's database, migrated: the given URL, or a temporary SQLite file (kept alive by
/// the returned directory).
pub async fn open_database(
    options: &BenchOptions,
) -> anyhow::Result<(crate::common::db::Db, Option<tempfile::TempDir>)> {
    let (url, temp) = match &options.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            (url, Some(dir))
        }
    };
    let db = crate::common::db::Db::connect(&url).await?;
    db.migrate().await?;
    Ok((db, temp))
}

/// The `p`th percentile of sorted microseconds, in milliseconds (nearest rank).
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// `x` rounded to two decimals, for the figures the benchmarks print.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
