//! Operations endpoints: `/healthz`, `/openapi.json` and the offline `/docs` page on the API
//! port; `/metrics` (Prometheus text) on its own listener (`--metrics-listen`, off by default),
//! since it needs no key and should not face the clients; and the middleware that counts
//! requests by route and status.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::common::db;
use crate::AppState;

/// Latency buckets in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide Prometheus recorder (metrics are process-global by nature).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by a test harness); then our
        // handle simply renders nothing recorded, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Middleware: count requests and time them by matched route and status.
pub async fn track_metrics(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

pub fn routes(openapi: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    metrics_handle();
    let page = Arc::new(crate::docs::render_page(&openapi));
    let document = Arc::new(openapi.to_json().unwrap_or_else(|_| "{}".to_owned()));
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.as_str().to_owned(),
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move { Html(page.as_str().to_owned()) }
            }),
        )
}

/// The metrics listener's routes: `/metrics` and `/healthz`.
pub fn metrics_routes() -> Router<AppState> {
    metrics_handle();
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> Response {
    match db::ping(&state.db).await {
        Ok(()) => axum::Json(json!({ "status": "ok", "database": state.db.backend().name() }))
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    json!({ "status": "unavailable", "database": state.db.backend().name() }),
                ),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    for (pool, size, idle) in state.db.pool_stats() {
        metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "open")
            .set(f64::from(size));
        metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "idle").set(idle as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
        .into_response()
}
