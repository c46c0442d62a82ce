//! Assembling and running the HTTP server: the router with every domain's routes, the layers
//! (auth, idempotency, metrics, tracing, panic guard), graceful shutdown and the maintenance
//! loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::common::auth::{self, Auth, KeyCache};
use crate::common::batcher::Batcher;
use crate::common::clock::{Clock, SystemClock};
use crate::common::db::{Db, Tx};
use crate::common::error::codes;
use crate::common::error::{ApiError, Failure, REQUEST_SPAN_TARGET};
use crate::common::hooks::Hooks;
use crate::common::rate_limit::{self, RateLimitConfig, RateLimits};
use crate::common::scheduler::{self, Job};
use crate::common::time::to_micros;
use crate::common::{events, idempotency};
use crate::growth::referrals;
use crate::ledger::{self, Ledger};
use crate::membership::program;
use crate::{
    alliance, analytics, community, console, distribution, docs, engagement, growth, members,
    membership, neighbourhood, ops, orders, segments,
};

/// What every handler can reach: [`AppShared`] behind one reference count.
///
/// axum clones the state for every layer and extractor that takes it, several times a request;
/// with the fields inline each clone and drop touched a dozen reference counts. Under
/// `valgrind --tool=callgrind` (debug build, dependencies at opt-level 2; 2,000 sequential
/// requests on one connection) an authenticated `GET /v1/members?limit=1` took 404k
/// instructions with the fields inline and 261k–282k with them behind one `Arc`; `/healthz`
/// 204k and 150k–154k. Reading goes through `Deref`;
/// writing (`state.limits = …` while setting up) through `DerefMut`, which copies the shared
/// part first when another clone holds it, so a changed clone never changes the others.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppShared {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppShared {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub key_cache: Arc<KeyCache>,
    pub ledger: Ledger,
    pub commerce: Commerce,
    /// Rate limits; all off unless `serve` (or a test) sets them.
    pub limits: Arc<RateLimits>,
    /// This node's segment indexes.
    pub segments: segments::Registry,
    /// The same, as the members domain sees it (`GET /v1/members?segment=`).
    pub audiences: Arc<dyn crate::common::hooks::Audiences>,
    /// How this node delivers webhooks (retry schedule, HTTP client).
    pub webhooks: Arc<engagement::webhooks::Config>,
}

/// The batchers of the hot commerce paths.
#[derive(Clone)]
pub struct Commerce {
    pub flash_sales: Batcher<orders::flash_sales::Claim, orders::flash_sales::PlacedOrder>,
    /// This node's memory of sold-out, unopened and ended flash sales.
    pub flash_sale_gate: Arc<orders::flash_sale_gate::SaleGate>,
    pub teams: Batcher<orders::group_buys::JoinClaim, orders::flash_sales::PlacedOrder>,
    /// Decide each flash-sale purchase in its own transaction (the benchmark's naive sides).
    pub naive_flash_sales: Option<orders::flash_sales::Naive>,
}

/// The domains' hooks, in the order they run (DESIGN rule 12; `common::hooks`). Owners of a
/// life cycle (orders, members) call every hook of a kind and know no domain by name; a new
/// domain that reacts to orders or members is added here.
pub fn hooks() -> Hooks {
    Hooks::new()
        // A new member's first tier, before anything that may give it growth.
        .member(membership::hooks::TierHooks)
        // Referrals: attribution at signup, qualification on payment, void on refund.
        .member(referrals::hooks::ReferralHooks)
        .order(referrals::hooks::ReferralHooks)
        // Distribution: pending commissions on payment, adjusted by refunds.
        .order(distribution::DistributionHooks)
        // Subscriptions: an unpaid or refunded prepaid order ends its subscription; erasure
        // clears delivery addresses.
        .order(crate::subscriptions::SubscriptionHooks)
        .member(crate::subscriptions::SubscriptionHooks)
        // Alliance: cross-referral fees on a first paid order, voided by a full refund; an
        // erased member's alliance links cleared.
        .order(alliance::AllianceHooks)
        .member(alliance::AllianceHooks)
        // Messages: an erased member's message variables are cleared.
        .member(engagement::messages::MessageHooks)
        // Codes: an erased member's scans forget their device and IP.
        .member(crate::codes::CodeHooks)
        // Community group buying: wave prices and stock, pickup, leader commission.
        .waves(neighbourhood::NeighbourhoodHooks)
        .order(neighbourhood::NeighbourhoodHooks)
        .member(neighbourhood::NeighbourhoodHooks)
}

impl AppState {
    /// Build the state and start the background executors (needs a Tokio runtime).
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        crate::common::hooks::install(hooks);
        orders::install_campaigns();
        let segments = segments::Registry::new(db.clone(), clock.clone());
        let flash_sale_gate = Arc::new(orders::flash_sale_gate::SaleGate::new(db.clone()));
        Self(Arc::new(AppShared {
            ledger: Ledger::start(db.clone(), clock.clone()),
            commerce: Commerce {
                flash_sales: orders::flash_sales::start_batcher(
                    db.clone(),
                    clock.clone(),
                    flash_sale_gate.clone(),
                ),
                flash_sale_gate,
                teams: orders::group_buys::start_batcher(db.clone(), clock.clone()),
                naive_flash_sales: None,
            },
            db,
            clock,
            key_cache: Arc::new(KeyCache::default()),
            limits: Arc::new(RateLimits::off()),
            audiences: Arc::new(segments.clone()),
            segments,
            webhooks: Arc::new(engagement::webhooks::Config::default()),
        }))
    }

    /// Begin a write transaction stamped with the clock's now.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.db.begin(self.clock.now()).await
    }
}

/// The `/v1` API with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(members::routes())
        .merge(ledger::routes())
        .merge(membership::routes())
        .merge(crate::daily::routes())
        .merge(orders::routes())
        .merge(analytics::routes())
        .merge(segments::routes())
        .merge(engagement::routes())
        .merge(community::routes())
        .merge(growth::routes())
        .merge(distribution::routes())
        .merge(crate::subscriptions::routes())
        .merge(alliance::routes())
        .merge(crate::codes::routes())
        .merge(neighbourhood::routes())
        .merge(events::routes())
        .merge(scheduler::routes())
        .merge(crate::tenants::routes())
}

/// The whole router.
///
/// Where each layer sits matters for the cost of a request: axum's `Router::layer` wraps every
/// route on its own, and a route's layered stack is cloned for every request it serves (a
/// boxed service per layer). So only what needs the matched route is per route (the metrics,
/// by route; the API's key and idempotency, in one layer); tracing, panic catching and the
/// per-address limit wrap the whole router once. Counted with callgrind on a sold-out refusal
/// (release, 2,000 requests): 18 boxed clones a request before, 3 after; 107 allocations, 72;
/// 77.5k instructions, 70k (docs/benchmarks.md, "HTTP stack").
///
/// The request span (method, path, tenant) is at debug level, target [`REQUEST_SPAN_TARGET`]
/// (`SHEQUN_LOG=info,shequn::request=debug` turns it on): at info it cost about 8k
/// instructions of a 100k read, formatting its fields for lines that are almost never logged.
/// The line that matters, a server error, gets that context from [`log_failures`] instead.
pub fn app(state: AppState) -> Router {
    let (api, mut openapi) = api().split_for_parts();
    docs::complete(&mut openapi);
    // The console calls the API in-process as its signed-in operator (idempotency, no key).
    let console_api = api
        .clone()
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(axum::middleware::from_fn(log_failures))
        .with_state(state.clone());
    let console = console::routes(state.clone(), console_api);
    let api = api.layer(from_fn_with_state(state.clone(), api_request));
    let routed = Router::new()
        .merge(api)
        .merge(ops::routes(Arc::new(openapi)))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::coded(
                codes::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            )
        })
        .with_state(state.clone())
        .merge(console)
        .layer(axum::middleware::from_fn(ops::track_metrics));
    let whole = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(log_failures))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::debug_span!(
                        target: REQUEST_SPAN_TARGET,
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        tenant_id = tracing::field::Empty,
                    )
                })
                // A server error is logged once, with its request, by `log_failures`.
                .on_failure(()),
        )
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
            },
        ))
        .layer(from_fn_with_state(state, rate_limit::per_ip))
        .service(routed);
    Router::new().fallback_service(whole)
}

/// The `/v1` routes' one layer for the merchants' systems: the API key
/// ([`auth::authenticate`]), then `Idempotency-Key` ([`idempotency::idempotency`]).
async fn api_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match auth::authenticate(&state, request).await {
        Ok(request) => {
            let tenant = tenant_of(&request);
            let mut response =
                idempotency::idempotency(axum::extract::State(state), request, next).await;
            if let Some(failure) = response.extensions_mut().get_mut::<Failure>() {
                failure.tenant_id = tenant;
            }
            response
        }
        Err(refused) => refused,
    }
}

/// The tenant of an authenticated request, for a [`Failure`]'s log line.
fn tenant_of(request: &Request) -> Option<String> {
    request
        .extensions()
        .get::<Auth>()
        .map(|auth| auth.tenant_id.as_str().to_owned())
}

/// Log each server error once, with the method and path of the request it failed and the
/// caller's tenant: the [`Failure`] that [`ApiError`]'s response carries (a handler's error, a
/// layer's, a caught panic's), taken off the response so that no outer layer logs it again.
pub async fn log_failures(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    // The console's in-process calls carry their operator's `Auth` already.
    let tenant = tenant_of(&request);
    let mut response = next.run(request).await;
    if let Some(failure) = response.extensions_mut().remove::<Failure>() {
        let tenant_id = failure.tenant_id.or(tenant).unwrap_or_default();
        tracing::error!(
            %method,
            path = uri.path(),
            tenant_id,
            status = response.status().as_u16(),
            code = %failure.code,
            error = failure.error,
            "request failed"
        );
    }
    response
}

/// How `serve` listens and limits.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Where `/metrics` is served (`None`: nowhere); never on the API port.
    pub metrics_listen: Option<SocketAddr>,
    pub limits: RateLimitConfig,
    pub timeouts: Timeouts,
    /// Webhook retry schedule (`--webhook-retry-secs`).
    pub webhook_retry: Vec<Duration>,
    /// Export every outbox event to NATS JetStream at this URL (`None`: no export).
    pub nats_url: Option<String>,
}

impl ServeConfig {
    /// Defaults of `shequn serve` on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            metrics_listen: None,
            limits: RateLimitConfig::defaults(),
            timeouts: Timeouts::default(),
            webhook_retry: engagement::webhooks::Config::default().retry,
            nats_url: None,
        }
    }
}

/// Connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the moment a connection waits for a request head to its last header line: bounds
    /// slowly sent headers and also an idle kept-alive connection's wait for its next request.
    pub header_read: Duration,
    /// Longest pause while a request body is being sent; the request then fails.
    pub body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Run the server until SIGTERM or Ctrl-C, then finish in-flight requests.
pub async fn serve(db: Db, config: ServeConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    serve_on(listener, db, config).await
}

/// [`serve`] on a listener bound already (its address may differ from `config.listen`, e.g.
/// port 0 made concrete, which the caller can print before serving).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    db: Db,
    config: ServeConfig,
) -> anyhow::Result<()> {
    let mut state = AppState::new(db, Arc::new(SystemClock));
    state.limits = Arc::new(RateLimits::new(&config.limits));
    state.webhooks = Arc::new(engagement::webhooks::Config::new(
        config.webhook_retry.clone(),
    ));
    let listen = listener.local_addr()?;
    tracing::info!(%listen, backend = state.db.backend().name(), "shequn listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = match config.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await?;
            tracing::info!(%address, "metrics listening");
            let router = ops::metrics_routes()
                .layer(axum::middleware::from_fn(log_failures))
                .with_state(state.clone());
            let mut stopped = stopped.clone();
            Some(tokio::spawn(serve_connections(
                listener,
                router,
                config.timeouts,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    let housekeeping = RateLimits::spawn_housekeeping(state.limits.clone());
    let metrics_upkeep = ops::spawn_metrics_upkeep();
    let maintenance = tokio::spawn(maintenance(state.clone()));
    let scheduler = tokio::spawn(scheduler_loop(state.clone()));
    let webhooks = tokio::spawn(webhook_loop(state.clone()));
    let automations = tokio::spawn(engagement::automations::run(state.clone(), true));
    let export = config.nats_url.clone().map(|url| {
        tokio::spawn(engagement::export::run(
            state.clone(),
            url,
            engagement::export::ExportConfig::default(),
        ))
    });
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    serve_connections(listener, app(state.clone()), config.timeouts, shutdown).await?;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    housekeeping.abort();
    metrics_upkeep.abort();
    maintenance.abort();
    scheduler.abort();
    webhooks.abort();
    automations.abort();
    if let Some(export) = export {
        export.abort();
    }
    state.db.close().await;
    tracing::info!("shequn stopped");
    Ok(())
}

/// Serve HTTP/1.1 on `listener` until `shutdown` resolves, then let in-flight requests finish
/// (at most 30 s). Each request carries its peer address (`ConnectInfo<SocketAddr>`) for the
/// per-IP limits; `timeouts` bound slow or idle clients (axum::serve has no such knobs).
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_idle = timeouts.body_idle;
        let service = hyper::service::service_fn(
            move |request: axum::http::Request<hyper::body::Incoming>| {
                let mut request = request.map(|body| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_idle, body))
                });
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(request)
            },
        );
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 30 s after shutdown began; closing them");
    }
    Ok(())
}

/// Periodic housekeeping: purge idempotency keys past their retention, ended console sessions
/// and sign-in failures out of their window.
async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match idempotency::purge_expired(&state).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "idempotency keys purged"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purging idempotency keys failed"),
        }
        if let Err(error) = console::session::sweep(&state.db, state.clock.now()).await {
            tracing::warn!(%error, "sweeping console sessions failed");
        }
    }
}

/// How often each node looks for due jobs.
pub const SCHEDULER_INTERVAL: Duration = Duration::from_secs(1);

async fn scheduler_loop(state: AppState) {
    let mut tick = tokio::time::interval(SCHEDULER_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(error) = run_due_jobs(&state).await {
            tracing::warn!(%error, "scheduler pass failed");
        }
    }
}

/// How often each node fans out new events to webhook endpoints and attempts due deliveries.
pub const WEBHOOK_INTERVAL: Duration = Duration::from_secs(1);

async fn webhook_loop(state: AppState) {
    let mut tick = tokio::time::interval(WEBHOOK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = engagement::webhooks::run_due_deliveries(&state).await {
            tracing::warn!(error = format!("{error:#}"), "webhook pass failed");
        }
    }
}

/// Run every job due now; returns how many ran. The scheduler loop calls this each second;
/// tests call it after moving the clock. Each piece of work fails alone: an order that cannot
/// be expired, or a job whose handler fails, is recorded and backed off while the rest runs.
pub async fn run_due_jobs(state: &AppState) -> anyhow::Result<usize> {
    let mut ran = match orders::checkout::expire_due(&state.db, state.clock.now()).await {
        Ok(closed) => closed,
        Err(error) => {
            // Only the scan itself can fail here (a failing order becomes a job of its own);
            // the jobs below still run.
            tracing::warn!(
                error = format!("{error:#}"),
                "expiring unpaid orders failed"
            );
            0
        }
    };
    loop {
        let jobs = scheduler::claim_due(
            &state.db,
            to_micros(state.clock.now()),
            scheduler::PASS_LIMIT,
        )
        .await?;
        if jobs.is_empty() {
            return Ok(ran);
        }
        for job in &jobs {
            match run_job(state, job).await {
                Ok(()) => ran += 1,
                Err(error) => {
                    let cause = format!("{error:#}");
                    let failure =
                        scheduler::record_failure(&state.db, job, &cause, state.clock.now())
                            .await?;
                    match failure {
                        scheduler::Failure::Retrying { attempts, after } => tracing::warn!(
                            tenant_id = %job.tenant_id, job = %job.id, kind = %job.kind, attempts,
                            retry_in_secs = after.as_secs(), error = %cause,
                            "scheduled job failed; it will run again"
                        ),
                        scheduler::Failure::Parked { attempts } => tracing::error!(
                            tenant_id = %job.tenant_id, job = %job.id, kind = %job.kind, attempts,
                            error = %cause,
                            "scheduled job failed too often; parked until an operator retries it"
                        ),
                    }
                }
            }
        }
        if (jobs.len() as i64) < scheduler::PASS_LIMIT {
            return Ok(ran);
        }
    }
}

/// Dispatch a job to its domain's handler.
async fn run_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    match job.kind.as_str() {
        ledger::store::PENDING_TIMEOUT_JOB => ledger::expire_pending(state, job).await,
        program::DAILY_JOB => crate::daily::daily_job(state, job).await,
        program::RELEASE_JOB => program::release_job(state, job).await,
        orders::group_buys::TEAM_EXPIRY_JOB => {
            orders::group_buys::team_expiry_job(state, job).await
        }
        orders::checkout::ORDER_EXPIRY_JOB => orders::checkout::expire_job(state, job).await,
        referrals::RELEASE_JOB => referrals::release_job(state, job).await,
        distribution::RELEASE_JOB => distribution::commissions::release_job(state, job).await,
        neighbourhood::CUTOFF_JOB => neighbourhood::waves::cutoff_job(state, job).await,
        neighbourhood::RELEASE_JOB => neighbourhood::pickups::release_job(state, job).await,
        engagement::messages::RELEASE_JOB => engagement::messages::release_job(state, job).await,
        engagement::automations::STEP_JOB => engagement::automations::step_job(state, job).await,
        engagement::broadcasts::SEND_JOB => engagement::broadcasts::send_job(state, job).await,
        crate::subscriptions::DELIVERY_JOB => {
            crate::subscriptions::deliveries::delivery_job(state, job).await
        }
        crate::subscriptions::PAYMENT_JOB => {
            crate::subscriptions::deliveries::payment_job(state, job).await
        }
        other => anyhow::bail!("no handler for job kind {other}"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt as _;

    use super::*;
    use crate::common::auth::{Caller, KeyRole};
    use crate::common::ids::{ApiKeyId, TenantId};

    /// What the test's subscriber wrote.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Written {
        type Writer = Written;

        fn make_writer(&'a self) -> Written {
            self.clone()
        }
    }

    #[tokio::test]
    async fn a_server_error_is_logged_once_with_its_request_and_a_client_error_is_not() {
        let written = Written::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(written.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let tenant = TenantId::generate();
        let app = Router::new()
            .route(
                "/v1/broken",
                post(|| async { ApiError::internal(anyhow::anyhow!("the disk is on fire")) }),
            )
            .route(
                "/v1/refused",
                post(|| async { ApiError::not_found("member") }),
            )
            .layer(axum::middleware::from_fn(log_failures));
        let mut broken = Request::post("/v1/broken")
            .body(Body::empty())
            .expect("request");
        // As the console's in-process calls carry their operator's.
        broken.extensions_mut().insert(Auth {
            tenant_id: tenant.clone(),
            caller: Caller::Key(ApiKeyId::generate()),
            role: KeyRole::Owner,
        });
        let response = app.clone().oneshot(broken).await.expect("response");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            response.extensions().get::<Failure>().is_none(),
            "taken off once logged"
        );
        let refused = Request::post("/v1/refused")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(refused).await.expect("response");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let text = String::from_utf8(written.0.lock().expect("lock").clone()).expect("utf-8");
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("request failed"))
            .collect();
        assert_eq!(failed.len(), 1, "{text}");
        let line = failed[0];
        for part in [
            "ERROR",
            "method=POST",
            "/v1/broken",
            "status=500",
            "code=internal",
            "the disk is on fire",
            tenant.as_str(),
        ] {
            assert!(line.contains(part), "{part:?} missing from {line}");
        }
        assert!(!text.contains("/v1/refused"), "{text}");
    }
}
