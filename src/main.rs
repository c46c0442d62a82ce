use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of the system allocator: the executors hand requests, rows and results
/// between threads, and glibc's malloc spent about two fifths of the async threads' time on
/// those allocations and frees (perf under `shequn bench ledger`). Measured on the 2-core
/// machine, 10-second runs: 50.5k and 52.5k transfers/s with glibc, 53k to 62k with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    shequn::cli::run(shequn::cli::Cli::parse()).await
}
