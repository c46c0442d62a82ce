use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    shequn::cli::run(shequn::cli::Cli::parse()).await
}
