//! The command line: `shequn serve`, `migrate`, tenant and key administration, imports.
//! Every command takes `--database-url` (or `SHEQUN_DATABASE_URL`) and migrates the database
//! before it works on it. Machine-readable results go to stdout as one JSON line; logs and
//! progress go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use serde_json::json;

use crate::common::db::Db;
use crate::common::ids::{ApiKeyId, TenantId};
use crate::{members, server, tenants};

#[derive(Debug, Parser)]
#[command(
    name = "shequn",
    version,
    about = "Self-hosted engine for private-domain community commerce"
)]
pub struct Cli {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST:PORT/DB`; default
    /// `sqlite://shequn.db` (benchmarks default to a temporary SQLite file instead).
    #[arg(long, global = true, env = "SHEQUN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Log filter, e.g. `info`, `debug`, `shequn=debug,sqlx=warn`.
    #[arg(long, global = true, env = "SHEQUN_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `text` or `json`.
    #[arg(long, global = true, env = "SHEQUN_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SHEQUN_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Tenant administration.
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// API key administration.
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Member administration.
    Members {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Load benchmarks: our path against the naive one, same database, same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check the ledger's invariants; prints one JSON line, exit code 0 only when ok.
    Verify {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Batched ledger transfers against one transaction per transfer.
    Ledger {
        /// Seconds each side runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent callers.
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints `{"tenant_id", "api_key"}` (the key is shown only here).
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create another API key for a tenant.
    Create {
        #[arg(long)]
        tenant: String,
    },
    /// List a tenant's keys (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by its id.
    Revoke { key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Import members from a CSV file (`external_id,name,phone,birthday,source,tags`).
    Import {
        #[arg(long)]
        tenant: String,
        file: PathBuf,
    },
}

fn init_logging(filter: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Run the CLI; the exit code is 0 on success.
pub async fn run(cli: Cli) -> ExitCode {
    init_logging(&cli.log, &cli.log_format);
    match execute(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn tenant_id(text: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(text).ok_or_else(|| anyhow::anyhow!("{text:?} is not a tenant id (ten_…)"))
}

async fn open(url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(url).await?;
    db.migrate().await?;
    Ok(db)
}

/// The database when none is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://shequn.db";

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Bench { command } = &cli.command {
        return bench(cli.database_url.clone(), command).await;
    }
    let url = cli.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL);
    let db = open(url).await?;
    let now = Timestamp::now();
    match cli.command {
        Command::Serve { listen } => {
            if let Some(created) = tenants::ensure_default(&db, now).await? {
                println!(
                    "Created tenant \"default\" ({}). Its API key, shown only this once:\n  {}\nTry:\n  curl -s -H \"Authorization: Bearer {}\" http://{listen}/v1/members",
                    created.tenant_id, created.api_key, created.api_key
                );
            }
            server::serve(db, listen).await?;
        }
        Command::Migrate => {
            println!(
                "{}",
                json!({ "migrated": true, "database": db.backend().name() })
            );
        }
        Command::Tenants {
            command: TenantCommand::Create { name },
        } => {
            let created = tenants::create(&db, &name, now).await?;
            println!("{}", serde_json::to_string(&created)?);
        }
        Command::Keys { command } => match command {
            KeyCommand::Create { tenant } => {
                let (key_id, api_key) = tenants::create_key(&db, &tenant_id(&tenant)?, now).await?;
                println!("{}", json!({ "key_id": key_id, "api_key": api_key }));
            }
            KeyCommand::List { tenant } => {
                let keys = tenants::list_keys(&db, &tenant_id(&tenant)?).await?;
                println!("{}", json!({ "data": keys }));
            }
            KeyCommand::Revoke { key_id } => {
                let id = ApiKeyId::parse(&key_id)
                    .ok_or_else(|| anyhow::anyhow!("{key_id:?} is not a key id (key_…)"))?;
                if !tenants::revoke_key(&db, &id, now).await? {
                    anyhow::bail!("no live key {key_id}");
                }
                println!("{}", json!({ "key_id": id, "revoked": true }));
            }
        },
        Command::Members {
            command: MemberCommand::Import { tenant, file },
        } => {
            let tenant = tenant_id(&tenant)?;
            anyhow::ensure!(tenants::exists(&db, &tenant).await?, "no tenant {tenant}");
            let report = import_file(&db, &tenant, &file).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Ledger {
            command: LedgerCommand::Verify { tenant },
        } => {
            let tenant = tenant_id(&tenant)?;
            anyhow::ensure!(tenants::exists(&db, &tenant).await?, "no tenant {tenant}");
            let report = crate::ledger::verify::verify(db.read(), &tenant).await?;
            println!("{}", serde_json::to_string(&report)?);
            if !report.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Bench { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(database_url: Option<String>, command: &BenchCommand) -> anyhow::Result<ExitCode> {
    let result = match command {
        BenchCommand::Ledger {
            seconds,
            concurrency,
        } => {
            crate::bench::ledger::run(crate::bench::BenchOptions {
                database_url,
                duration: std::time::Duration::from_secs(*seconds),
                concurrency: *concurrency,
            })
            .await?
        }
    };
    println!("{result}");
    Ok(if result["exact"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar over the bytes of `file` as the import reads it.
async fn import_file(
    db: &Db,
    tenant: &TenantId,
    file: &std::path::Path,
) -> anyhow::Result<members::import::ImportReport> {
    let handle = tokio::fs::File::open(file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let size = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reader = bar.wrap_async_read(tokio::io::BufReader::with_capacity(1 << 20, handle));
    let rows_bar = bar.clone();
    let report = members::import::import(db, Timestamp::now, tenant, reader, move |rows| {
        rows_bar.set_message(format!("{rows} rows"));
    })
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    bar.finish_and_clear();
    Ok(report)
}
