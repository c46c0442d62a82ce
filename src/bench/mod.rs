//! Load benchmarks run from the binary (`shequn bench …`): each runs our path and the naive
//! path against the same kind of database in one process and one run, checks exactness after
//! both, and prints one JSON object as its last line.

pub mod flash_sale;
pub mod ledger;

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
