//! The command line: `shequn serve`, `migrate`, tenant and key administration, imports.
//! Every command takes `--database-url` (or `SHEQUN_DATABASE_URL`) and migrates the database
//! before it works on it. Machine-readable results go to stdout as one JSON line; logs and
//! progress go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use serde_json::json;

use crate::common::auth::KeyRole;
use crate::common::clock::SystemClock;
use crate::common::db::Db;
use crate::common::ids::{ApiKeyId, TenantId};
use crate::common::scheduler::{self, JobState};
use crate::{members, server, tenants};

#[derive(Debug, Parser)]
#[command(
    name = "shequn",
    version,
    about = "Self-hosted engine for private-domain community commerce"
)]
pub struct Cli {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST:PORT/DB`; default
    /// `sqlite://shequn.db` (`serve --demo` defaults to `sqlite://shequn-demo.db`, benchmarks
    /// to a temporary SQLite file).
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
        /// Serve `/metrics` (Prometheus) on this address; off when unset. Never on `--listen`.
        #[arg(long, env = "SHEQUN_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// Requests per second per API key (burst twice that); 0 turns the limit off.
        #[arg(long, env = "SHEQUN_RATE_LIMIT_PER_KEY", default_value_t = 1000)]
        rate_limit_per_key: u32,
        /// Per-tenant replacement of `--rate-limit-per-key`, `TENANT_ID=RATE` (0: no limit for
        /// that tenant's keys); repeat the flag or separate with commas.
        #[arg(long, env = "SHEQUN_RATE_LIMIT_TENANT", value_delimiter = ',',
              value_parser = crate::common::rate_limit::parse_tenant_override)]
        rate_limit_tenant: Vec<(TenantId, u32)>,
        /// Requests per second per client IP (IPv6: per /64), burst twice that; 0 turns it off.
        #[arg(long, env = "SHEQUN_RATE_LIMIT_PER_IP", default_value_t = 2000)]
        rate_limit_per_ip: u32,
        /// Failed authentications per minute per client IP before 429 replaces 401 (a valid
        /// key is never refused by it); 0 turns it off.
        #[arg(long, env = "SHEQUN_AUTH_FAILURES_PER_IP", default_value_t = 30)]
        auth_failures_per_ip: u32,
        /// Seconds a client has to send a request's headers; also how long an idle kept-alive
        /// connection stays open.
        #[arg(long, env = "SHEQUN_HEADER_READ_TIMEOUT", default_value_t = 10)]
        header_read_timeout: u64,
        /// Longest pause, in seconds, while a request body is being sent.
        #[arg(long, env = "SHEQUN_BODY_READ_TIMEOUT", default_value_t = 60)]
        body_read_timeout: u64,
        /// Webhook retry schedule: seconds to wait after the 1st, 2nd… failed attempt; a
        /// delivery fails after the last.
        #[arg(long, env = "SHEQUN_WEBHOOK_RETRY_SECS",
              default_value = crate::engagement::webhooks::DEFAULT_RETRY_SECS)]
        webhook_retry_secs: crate::engagement::webhooks::worker::RetrySchedule,
        /// Export every outbox event to NATS JetStream at this URL (`nats://host:4222`), stream
        /// `SHEQUN_EVENTS`, subjects `shequn.<tenant_id>.<event type>`; off when unset.
        #[arg(long, env = "SHEQUN_NATS_URL", value_parser = parse_nats_url)]
        nats_url: Option<String>,
        /// Serve a demo: on first start make a demo tenant (a soy-milk and fresh-food brand with
        /// members, orders and campaigns), then print `console: …`, `email: …` and
        /// `password: …` (a new password each start). The database defaults to
        /// `sqlite://shequn-demo.db`.
        #[arg(long)]
        demo: bool,
        /// Members of the demo tenant (with `--demo`, when it is made).
        #[arg(long, hide = true, default_value_t = crate::demo::DEFAULT_MEMBERS)]
        demo_members: usize,
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
    /// Scheduled jobs: list them, run the day's work now.
    Jobs {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Console operators (the people who sign in to `/console`).
    Operators {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Member administration.
    Members {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Order history.
    Orders {
        #[command(subcommand)]
        command: OrderCommand,
    },
    /// Customer analytics: fit the lifetime-value models, validate them on a holdout.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Lottery tools.
    Lottery {
        #[command(subcommand)]
        command: LotteryCommand,
    },
    /// Load benchmarks: our path against the naive one, same database, same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Import order history (paid external orders), creating members by external id.
    Import {
        #[arg(long)]
        tenant: String,
        /// `csv` (header `external_member_id,ordered_at,amount,currency,items`; `amount` in
        /// yuan, or an `amount_fen` column in fen; optional `order_id`) or `cdnow`.
        #[arg(long, default_value = "csv")]
        format: String,
        /// A row repeating an imported order: `skip` (counted in `skipped`) or `error` (a row
        /// error).
        #[arg(long, default_value = "skip")]
        on_duplicate: String,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// Fit BG/NBD and Gamma-Gamma over the calibration window, score every member; prints one
    /// JSON line `{"customers", "repeat_customers", "bgnbd": {...} | null, "gamma_gamma": {...}
    /// | null, "model_quality": {"status", "reasons", ...}, "unavailable": {...}}` and, unless
    /// `--json`, a warning on standard error when the model quality is not `ok`.
    Fit {
        #[arg(long)]
        tenant: String,
        /// Last day of the calibration window (inclusive), `YYYY-MM-DD`.
        #[arg(long)]
        calibration_end: String,
        /// `day` or `week`.
        #[arg(long, default_value = "week")]
        time_unit: String,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Actual vs predicted repeat transactions in the holdout, per calibration frequency, with
    /// the percentage error, then the weekly cumulative tracking (actual against predicted
    /// cumulative repeat transactions) and the fit's model quality.
    Validate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        calibration_end: String,
        #[arg(long)]
        holdout_end: String,
        #[arg(long, default_value = "week")]
        time_unit: String,
        /// Print one JSON line `{"bgnbd", "model_quality", "rows", "total", "tracking"}`
        /// instead of the tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List a tenant's scheduled jobs as one JSON line `{"data": [...]}`.
    List {
        #[arg(long)]
        tenant: String,
        /// `due`, `done` or `parked`.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Run the day's program work for a tenant now (points expiry and warnings, birthday
    /// perks, tier requalification, reminders, analytics refresh), once per tenant and date;
    /// prints one JSON line `{"date", "status": "ran" | "already_ran", "report"}`.
    RunDaily {
        #[arg(long)]
        tenant: String,
        /// The tenant-local day, `YYYY-MM-DD`; today by default.
        #[arg(long)]
        date: Option<String>,
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
pub enum LotteryCommand {
    /// Check a proof from `GET /v1/lotteries/{id}/proof`: the seed matches the commitment and
    /// the winners follow from the seed and the entries. Needs no database; prints one JSON
    /// line and exits 0 only when the proof holds.
    Verify {
        /// The proof as JSON (`-` reads standard input).
        proof: PathBuf,
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
    /// Flash-sale purchases over HTTP: the batched path against one transaction per request.
    FlashSale {
        /// `orders`: stock never runs out, orders per second; `rush`: `--stock` units sell out
        /// at once and clients keep buying for random members, answers per second.
        #[arg(long, value_enum, default_value_t = crate::bench::flash_sale::Mode::Orders)]
        mode: crate::bench::flash_sale::Mode,
        /// Units of a rush.
        #[arg(long, default_value_t = crate::bench::flash_sale::DEFAULT_RUSH_STOCK)]
        stock: i64,
        /// Members buying (default 20,000 for `orders`, 100,000 for `rush`).
        #[arg(long)]
        members: Option<usize>,
        /// Seconds each side runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent HTTP clients (one keep-alive connection each).
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// The HTTP stack's cost per request: a bare axum echo against shequn's `/healthz`, an
    /// authenticated trivial read and a sold-out refusal, by the same clients in one run.
    Http {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent HTTP clients (one keep-alive connection each).
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
    },
    /// One item, one code over HTTP: a batch generated (batched inserts against one INSERT per
    /// code), exported as CSV, then scanned by concurrent clients (scans per second).
    Codes {
        /// Codes generated and exported.
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// Codes written the naive way (one INSERT each).
        #[arg(long, default_value_t = 100_000)]
        naive_count: usize,
        /// Seconds of scanning.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent scanning clients (one keep-alive connection each).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Webhook deliveries to a loopback receiver: the worker against one delivery at a time.
    Webhooks {
        /// Events per side.
        #[arg(long, default_value_t = 1000)]
        events: usize,
        /// Endpoints, each subscribed to every event.
        #[arg(long, default_value_t = 8)]
        endpoints: usize,
    },
    /// The time from a member's change to its automation's message (p50 / p99): the worker
    /// woken by commits against one polling the outbox each second.
    Automations {
        /// Members created per side.
        #[arg(long, default_value_t = 200)]
        members: usize,
    },
    /// The server time of every console page (p50 / p99) on the database given by
    /// `--database-url` (the demo's, say), signed in as an existing operator.
    ConsolePages {
        #[arg(long)]
        email: String,
        #[arg(long, env = "SHEQUN_BENCH_PASSWORD")]
        password: String,
        /// Requests per page.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// Audience rules: the in-memory segment index against the best plain SQL, on generated
    /// members in a new tenant (`--database-url`, or a temporary SQLite file).
    Segments {
        /// Members to generate.
        #[arg(long, default_value_t = crate::bench::segments::DEFAULT_MEMBERS)]
        members: usize,
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
        /// `owner` (everything, including tenant administration) or `integration` (the
        /// merchant's systems: every operation but tenant administration).
        #[arg(long, default_value = "owner")]
        role: String,
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
pub enum OperatorCommand {
    /// Create an operator; prints `{"operator_id", "tenant_id", "email", "role"}`.
    Create {
        #[arg(long)]
        tenant: String,
        /// Their sign-in name (unique across tenants).
        #[arg(long)]
        email: String,
        /// `owner` (everything), `operator` (every change but tenant administration) or
        /// `viewer` (sees everything, changes nothing).
        #[arg(long, default_value = "operator")]
        role: String,
        /// Read the password from the first line of standard input (without its newline).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
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
        // Colours only on a terminal: escape codes in a log file or the journal are noise,
        // and painting every span's fields cost about a tenth of a trivial request.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    // The commands act on orders and members too: their domains' reactions come along.
    crate::common::hooks::install(crate::server::hooks);
    crate::orders::install_campaigns();
    let db = Db::connect(url).await?;
    db.migrate().await?;
    Ok(db)
}

/// The database when none is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://shequn.db";
/// `--nats-url`: a NATS server address (`nats://host:port`, `tls://…`, credentials allowed).
fn parse_nats_url(text: &str) -> Result<String, String> {
    text.parse::<async_nats::ServerAddr>()
        .map(|_| text.to_owned())
        .map_err(|error| format!("not a NATS server address: {error}"))
}

/// The database of `serve --demo` when none is given: its own file, so that the demo never
/// mixes with a real `shequn.db`.
pub const DEMO_DATABASE_URL: &str = "sqlite://shequn-demo.db";

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Bench { command } = &cli.command {
        return bench(cli.database_url.clone(), command).await;
    }
    if let Command::Lottery {
        command: LotteryCommand::Verify { proof },
    } = &cli.command
    {
        return verify_lottery(proof);
    }
    let demo = matches!(cli.command, Command::Serve { demo: true, .. });
    let url = cli.database_url.as_deref().unwrap_or(if demo {
        DEMO_DATABASE_URL
    } else {
        DEFAULT_DATABASE_URL
    });
    let db = open(url).await?;
    let now = Timestamp::now();
    match cli.command {
        Command::Serve {
            listen,
            metrics_listen,
            rate_limit_per_key,
            rate_limit_tenant,
            rate_limit_per_ip,
            auth_failures_per_ip,
            header_read_timeout,
            body_read_timeout,
            webhook_retry_secs,
            nats_url,
            demo,
            demo_members,
        } => {
            if !demo {
                if let Some(created) = tenants::ensure_default(&db, now).await? {
                    println!(
                        "Created tenant \"default\" ({}). Its API key, shown only this once:\n  {}\nTry:\n  curl -s -H \"Authorization: Bearer {}\" http://{listen}/v1/members",
                        created.tenant_id, created.api_key, created.api_key
                    );
                }
            }
            let config = server::ServeConfig {
                listen,
                metrics_listen,
                limits: crate::common::rate_limit::RateLimitConfig {
                    per_key: rate_limit_per_key,
                    tenant_overrides: rate_limit_tenant,
                    per_ip: rate_limit_per_ip,
                    auth_failures_per_ip,
                },
                timeouts: server::Timeouts {
                    header_read: std::time::Duration::from_secs(header_read_timeout.max(1)),
                    body_idle: std::time::Duration::from_secs(body_read_timeout.max(1)),
                },
                webhook_retry: webhook_retry_secs.0,
                nats_url,
            };
            if demo {
                serve_demo(db, config, demo_members).await?;
            } else {
                server::serve(db, config).await?;
            }
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
        Command::Keys { command } => keys(&db, command, now).await?,
        Command::Operators {
            command:
                OperatorCommand::Create {
                    tenant,
                    email,
                    role,
                    password_stdin: _,
                },
        } => create_operator(&db, &tenant, &email, &role, now).await?,
        Command::Members {
            command: MemberCommand::Import { tenant, file },
        } => {
            let tenant = tenant_id(&tenant)?;
            anyhow::ensure!(tenants::exists(&db, &tenant).await?, "no tenant {tenant}");
            let report = import_file(&db, &tenant, &file).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Jobs { command } => jobs(&db, command).await?,
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
        Command::Orders {
            command:
                OrderCommand::Import {
                    tenant,
                    format,
                    on_duplicate,
                    file,
                },
        } => {
            let tenant = tenant_id(&tenant)?;
            anyhow::ensure!(tenants::exists(&db, &tenant).await?, "no tenant {tenant}");
            let Some(format) = crate::orders::import::Format::parse(&format) else {
                anyhow::bail!("unknown format {format:?}: use csv or cdnow");
            };
            let Some(on_duplicate) = crate::orders::import::OnDuplicate::parse(&on_duplicate)
            else {
                anyhow::bail!("unknown --on-duplicate {on_duplicate:?}: use skip or error");
            };
            let options = crate::orders::import::Options {
                format,
                on_duplicate,
            };
            let report = import_orders_file(&db, &tenant, options, &file).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Analytics { command } => return analytics(&db, command).await,
        Command::Bench { .. } | Command::Lottery { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `shequn serve --demo`: the demo tenant (made on first start), the three lines that say
/// where and how to sign in (on stdout, before serving; the address is the bound one, so
/// `--listen 127.0.0.1:0` prints the port it got), then the server.
async fn serve_demo(db: Db, config: server::ServeConfig, members: usize) -> anyhow::Result<()> {
    let login = crate::demo::ensure(&db, members).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("console: http://{address}/console/");
    println!("email: {}", login.email);
    println!("password: {}", login.password);
    server::serve_on(listener, db, config).await
}

/// `shequn keys …`.
async fn keys(db: &Db, command: KeyCommand, now: Timestamp) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { tenant, role } => {
            let role = KeyRole::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("--role must be owner or integration, not {role:?}")
            })?;
            let (key_id, api_key) =
                tenants::create_key(db, &tenant_id(&tenant)?, role, now).await?;
            println!(
                "{}",
                json!({ "key_id": key_id, "api_key": api_key, "role": role })
            );
        }
        KeyCommand::List { tenant } => {
            let keys = tenants::list_keys(db, &tenant_id(&tenant)?).await?;
            println!("{}", json!({ "data": keys }));
        }
        KeyCommand::Revoke { key_id } => {
            let id = ApiKeyId::parse(&key_id)
                .ok_or_else(|| anyhow::anyhow!("{key_id:?} is not a key id (key_…)"))?;
            if !tenants::revoke_key(db, &id, now).await? {
                anyhow::bail!("no live key {key_id}");
            }
            println!("{}", json!({ "key_id": id, "revoked": true }));
        }
    }
    Ok(())
}

/// `shequn jobs …`.
async fn jobs(db: &Db, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::List {
            tenant,
            status,
            limit,
        } => {
            let tenant = tenant_id(&tenant)?;
            anyhow::ensure!(tenants::exists(db, &tenant).await?, "no tenant {tenant}");
            let status = status
                .map(|s| {
                    serde_json::from_value::<JobState>(json!(s)).map_err(|_| {
                        anyhow::anyhow!("--status must be due, done or parked, not {s:?}")
                    })
                })
                .transpose()?;
            anyhow::ensure!(
                (1..=scheduler::MAX_JOBS_PAGE).contains(&limit),
                "--limit must be 1 to {}",
                scheduler::MAX_JOBS_PAGE
            );
            let jobs = scheduler::list(db.read(), &tenant, status, false, limit).await?;
            println!("{}", json!({ "data": jobs }));
        }
        JobCommand::RunDaily { tenant, date } => {
            let tenant = tenant_id(&tenant)?;
            anyhow::ensure!(tenants::exists(db, &tenant).await?, "no tenant {tenant}");
            let state = crate::AppState::new(db.clone(), Arc::new(SystemClock));
            let run = crate::daily::run_daily_on_demand(&state, &tenant, date.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("{}", serde_json::to_string(&run)?);
        }
    }
    Ok(())
}

/// `shequn operators create`: the password is the first line of standard input.
async fn create_operator(
    db: &Db,
    tenant: &str,
    email: &str,
    role: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    use crate::console::operators::{self, Role};
    let tenant = tenant_id(tenant)?;
    anyhow::ensure!(tenants::exists(db, &tenant).await?, "no tenant {tenant}");
    let role = Role::parse(role)
        .ok_or_else(|| anyhow::anyhow!("--role must be owner, operator or viewer, not {role:?}"))?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let mut tx = db.begin(now).await?;
    let operator = operators::create(tx.conn(), &tenant, email, role, password, now).await?;
    tx.commit().await?;
    println!(
        "{}",
        json!({
            "operator_id": operator.id,
            "tenant_id": operator.tenant_id,
            "email": operator.email,
            "role": operator.role,
        })
    );
    Ok(())
}

/// `shequn lottery verify PROOF.json`.
fn verify_lottery(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    use crate::community::lottery::draw;
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let proof: draw::Proof = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a lottery proof", path.display()))?;
    match draw::verify(&proof) {
        Ok(()) => {
            println!(
                "{}",
                json!({ "ok": true, "lottery_id": proof.lottery_id, "winners": proof.winners })
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("proof rejected: {reason}");
            println!(
                "{}",
                json!({ "ok": false, "lottery_id": proof.lottery_id, "reason": reason })
            );
            Ok(ExitCode::FAILURE)
        }
    }
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
        BenchCommand::FlashSale {
            mode,
            stock,
            members,
            seconds,
            concurrency,
        } => {
            crate::bench::flash_sale::run(
                crate::bench::BenchOptions {
                    database_url,
                    duration: std::time::Duration::from_secs(*seconds),
                    concurrency: *concurrency,
                },
                crate::bench::flash_sale::Options {
                    mode: *mode,
                    stock: *stock,
                    members: *members,
                },
            )
            .await?
        }
        BenchCommand::Http {
            seconds,
            concurrency,
        } => {
            crate::bench::http::run(crate::bench::BenchOptions {
                database_url,
                duration: std::time::Duration::from_secs(*seconds),
                concurrency: *concurrency,
            })
            .await?
        }
        BenchCommand::Codes {
            count,
            naive_count,
            seconds,
            concurrency,
        } => {
            crate::bench::codes::run(
                crate::bench::BenchOptions {
                    database_url,
                    duration: std::time::Duration::from_secs(*seconds),
                    concurrency: *concurrency,
                },
                crate::bench::codes::Options {
                    count: *count,
                    naive_count: *naive_count,
                },
            )
            .await?
        }
        BenchCommand::Webhooks { events, endpoints } => {
            crate::bench::webhooks::run(
                crate::bench::BenchOptions {
                    database_url,
                    duration: std::time::Duration::from_secs(0),
                    concurrency: 0,
                },
                crate::bench::webhooks::Options {
                    events: *events,
                    endpoints: *endpoints,
                },
            )
            .await?
        }
        BenchCommand::Automations { members } => {
            crate::bench::automations::run(
                crate::bench::BenchOptions {
                    database_url,
                    duration: std::time::Duration::from_secs(0),
                    concurrency: 0,
                },
                crate::bench::automations::Options { members: *members },
            )
            .await?
        }
        BenchCommand::ConsolePages {
            email,
            password,
            rounds,
        } => {
            let url = database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL);
            crate::bench::console_pages::run(
                open(url).await?,
                crate::bench::console_pages::Options {
                    email: email.clone(),
                    password: password.clone(),
                    rounds: *rounds,
                },
            )
            .await?
        }
        BenchCommand::Segments { members } => {
            crate::bench::segments::run(crate::bench::segments::Options {
                database_url,
                members: *members,
            })
            .await?
        }
    };
    println!("{result}");
    Ok(if result["exact"] == true || result["all_ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn date_arg(name: &str, text: &str) -> anyhow::Result<jiff::civil::Date> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("--{name} must be a date YYYY-MM-DD, not {text:?}"))
}

async fn analytics(db: &Db, command: AnalyticsCommand) -> anyhow::Result<ExitCode> {
    use crate::analytics::model::quality::QualityStatus;
    use crate::analytics::scoring;
    let (tenant, unit) = match &command {
        AnalyticsCommand::Fit {
            tenant, time_unit, ..
        }
        | AnalyticsCommand::Validate {
            tenant, time_unit, ..
        } => (tenant_id(tenant)?, time_unit),
    };
    anyhow::ensure!(tenants::exists(db, &tenant).await?, "no tenant {tenant}");
    let unit = scoring::parse_unit(unit)
        .ok_or_else(|| anyhow::anyhow!("--time-unit must be day or week"))?;
    let zone = {
        let mut conn = db.read().acquire().await?;
        crate::tenants::time_zone(&mut conn, &tenant)
            .await
            .map_err(|e| anyhow::anyhow!(e.message.clone()))?
    };
    match command {
        AnalyticsCommand::Fit {
            calibration_end,
            json,
            ..
        } => {
            let end = date_arg("calibration-end", &calibration_end)?;
            let started = std::time::Instant::now();
            let report =
                scoring::fit_and_score(db, &tenant, &zone, end, unit, Timestamp::now()).await?;
            if !json {
                eprintln!(
                    "fitted {} customers and stored their scores in {:.2}s",
                    report.customers,
                    started.elapsed().as_secs_f64()
                );
                let quality = &report.model_quality;
                if quality.status != QualityStatus::Ok {
                    eprintln!("warning: model quality {}:", quality.status.as_str());
                    for reason in &quality.reasons {
                        eprintln!("  - {reason}");
                    }
                }
            }
            println!("{}", serde_json::to_string(&report)?);
        }
        AnalyticsCommand::Validate {
            calibration_end,
            holdout_end,
            json,
            ..
        } => {
            let end = date_arg("calibration-end", &calibration_end)?;
            let holdout = date_arg("holdout-end", &holdout_end)?;
            let report = scoring::validate_holdout(db, &tenant, &zone, end, holdout, unit).await?;
            if json {
                println!("{}", validation_json(&report));
            } else {
                print_validation(&report, &calibration_end, &holdout_end);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `analytics validate` as tables: the fit and its quality, the holdout table by calibration
/// frequency (with percentage errors), the weekly cumulative tracking.
fn print_validation(
    report: &crate::analytics::scoring::HoldoutReport,
    calibration_end: &str,
    holdout_end: &str,
) {
    let params = &report.params;
    println!(
        "BG/NBD r={:.4} alpha={:.4} a={:.4} b={:.4}; holdout {} → {}",
        params.r, params.alpha, params.a, params.b, calibration_end, holdout_end
    );
    println!("model quality: {}", report.model_quality.status.as_str());
    for reason in &report.model_quality.reasons {
        println!("  - {reason}");
    }
    println!();
    println!("{}", report.table);
    println!("cumulative repeat transactions (week ending; * = holdout):");
    println!(
        "{:>5} {:>11} {:>10} {:>12} {:>8}",
        "week", "ending", "actual", "predicted", "error_%"
    );
    for point in &report.tracking {
        let (year, month, day) = point.day.to_ymd();
        println!(
            "{:>5} {year:04}-{month:02}-{day:02}{} {:>10} {:>12.1} {:>8}",
            point.week,
            if point.holdout { "*" } else { " " },
            point.actual,
            point.predicted,
            point
                .percentage_error()
                .map_or_else(|| "-".to_owned(), |e| format!("{e:+.1}"))
        );
    }
}

/// `analytics validate --json`.
fn validation_json(report: &crate::analytics::scoring::HoldoutReport) -> serde_json::Value {
    let row = |r: &crate::analytics::model::validate::ValidationRow| {
        json!({
            "frequency": r.bucket.to_string(),
            "customers": r.customers,
            "actual_mean": r.actual_mean,
            "predicted_mean": r.predicted_mean,
            "actual_total": r.actual_total,
            "predicted_total": r.predicted_total,
            "percentage_error": r.percentage_error(),
        })
    };
    let params = &report.params;
    json!({
        "bgnbd": {
            "r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b,
            "converged": report.converged,
        },
        "model_quality": report.model_quality,
        "rows": report.table.rows.iter().map(row).collect::<Vec<_>>(),
        "total": row(&report.table.total),
        "tracking": report.tracking.iter().map(|p| {
            let (year, month, day) = p.day.to_ymd();
            json!({
                "week": p.week,
                "ending": format!("{year:04}-{month:02}-{day:02}"),
                "holdout": p.holdout,
                "actual": p.actual,
                "predicted": p.predicted,
                "percentage_error": p.percentage_error(),
            })
        }).collect::<Vec<_>>(),
    })
}

async fn import_orders_file(
    db: &Db,
    tenant: &TenantId,
    options: crate::orders::import::Options,
    file: &std::path::Path,
) -> anyhow::Result<crate::orders::import::OrderImportReport> {
    let handle = tokio::fs::File::open(file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let size = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size);
    let reader = bar.wrap_async_read(tokio::io::BufReader::with_capacity(1 << 20, handle));
    let zone = {
        let mut conn = db.read().acquire().await?;
        crate::tenants::time_zone(&mut conn, tenant)
            .await
            .map_err(|e| anyhow::anyhow!(e.message.clone()))?
    };
    let rows_bar = bar.clone();
    let report = crate::orders::import::import(
        db,
        Timestamp::now,
        tenant,
        &zone,
        options,
        reader,
        move |rows| {
            rows_bar.set_message(format!("{rows} rows"));
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    bar.finish_and_clear();
    Ok(report)
}

fn progress_bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
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
    let bar = progress_bar(size);
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
