//! Operations endpoints: `/healthz`, `/openapi.json` and the offline `/docs` page on the API
//! port; `/metrics` (Prometheus text) on its own listener (`--metrics-listen`, off by default),
//! since it needs no key and should not face the clients; and the middleware that counts
//! requests by route and status.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
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
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let seconds = start.elapsed().as_secs_f64();
    HANDLES.with_borrow_mut(|handles| {
        if !handles.contains_key(route) {
            handles.insert(route.into(), RouteHandles::default());
        }
        if let Some(handles) = handles.get_mut(route) {
            handles.record(route, method, status, seconds);
        }
    });
    response
}

/// The methods counted by name; any other is counted as `OTHER`. A client may send any token as
/// a method, and the labels (and the handles kept for them) must stay finite.
static METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

fn method_label(method: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|known| *known == method)
        .map_or("OTHER", Method::as_str)
}

thread_local! {
    /// This thread's handles of the request metrics, by route. The `metrics` macros build a key
    /// of owned labels and look it up in the recorder's registry on every call (three string
    /// allocations and a locked map per metric); a request here costs one map look-up and a
    /// short scan. Bounded by routes × methods × statuses, all finite ([`method_label`]).
    static HANDLES: std::cell::RefCell<std::collections::HashMap<Box<str>, RouteHandles>> =
        std::cell::RefCell::default();
}

/// One route's metric handles, by method and status.
#[derive(Default)]
struct RouteHandles {
    counters: Vec<(&'static str, u16, metrics::Counter)>,
    durations: Vec<(&'static str, metrics::Histogram)>,
}

impl RouteHandles {
    fn record(&mut self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let counter = match self
            .counters
            .iter()
            .position(|(m, s, _)| *m == method && *s == status)
        {
            Some(at) => &self.counters[at].2,
            None => {
                let counter = metrics::counter!("http_requests_total",
                    "method" => method, "route" => route.to_owned(),
                    "status" => status.to_string());
                self.counters.push((method, status, counter));
                &self.counters[self.counters.len() - 1].2
            }
        };
        counter.increment(1);
        let histogram = match self.durations.iter().position(|(m, _)| *m == method) {
            Some(at) => &self.durations[at].1,
            None => {
                let histogram = metrics::histogram!("http_request_duration_seconds",
                    "method" => method, "route" => route.to_owned());
                self.durations.push((method, histogram));
                &self.durations[self.durations.len() - 1].1
            }
        };
        histogram.record(seconds);
    }
}

/// Drain the recorder's histogram samples into their buckets every few seconds. The recorder
/// is built without the exporter's own HTTP listener, so nothing else does it until `/metrics`
/// is scraped, and unscraped samples would pile up in memory (eight bytes a request).
pub fn spawn_metrics_upkeep() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            metrics_handle().run_upkeep();
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_nine_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "BREW", "X-ANY-TOKEN"] {
            let method = Method::from_bytes(made_up.as_bytes()).expect("a token");
            assert_eq!(method_label(&method), "OTHER");
        }
    }
}
