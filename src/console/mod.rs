//! The admin console: the operators' web app under `/console`, served by `shequn serve` from
//! the same binary.
//!
//! How it is built, and why:
//!
//! - Pages are rendered on the server with `maud` (templates are Rust, checked when the binary
//!   compiles: a page that names a missing field or message does not build). No Node build
//!   step; `cargo run -- serve` serves everything.
//! - Every read and change goes through the `/v1` API in-process ([`call`]) as the signed-in
//!   operator: the same handlers, validation, tenant scoping and events as a merchant's
//!   integration. What only the CLI could do (API keys) calls the same `tenants` functions the
//!   CLI calls.
//! - Partial updates (the live view of a flash sale) use htmx; charts use Apache ECharts, which
//!   Chinese operators know. Both are embedded ([`assets`]); pages send a Content Security
//!   Policy that lets the browser load nothing from any other host.
//! - Operators, sessions, CSRF and the sign-in throttle: [`operators`], [`session`]. Roles:
//!   an owner does everything, an operator everything but tenant administration (keys,
//!   operators, time zone), a viewer sees and changes nothing.
//! - Strings live in one catalogue ([`i18n`]), Chinese by default, English on a switch that
//!   is remembered per operator; money is shown in yuan from fen, instants in the tenant's
//!   time zone.
//!
//! The console is a composition module like `server`: it may use every domain, none uses it.

pub mod assets;
pub mod call;
pub mod i18n;
pub mod operators;
mod pages;
pub mod session;
pub mod view;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// What console handlers reach: the app's state and the `/v1` router to call in-process.
#[derive(Clone)]
pub struct Console {
    pub app: AppState,
    /// The `/v1` routes with their idempotency layer, without the API-key layer (the console
    /// attaches the operator's credential itself).
    pub api: Router,
}

/// The console's routes, all under `/console`.
pub fn routes(app: AppState, api: Router) -> Router {
    let console = Console { app, api };
    Router::new()
        .route("/console/assets/{version}/{name}", get(assets::serve))
        .route(
            "/console/login",
            get(pages::sign_in::form).post(pages::sign_in::submit),
        )
        .route("/console/logout", post(pages::sign_in::sign_out))
        .route("/console/language", post(pages::sign_in::language))
        .route("/console", get(pages::dashboard::redirect))
        .route("/console/", get(pages::dashboard::page))
        .merge(pages::members::routes())
        .merge(pages::segments::routes())
        .merge(pages::engagement::routes())
        .merge(pages::program::routes())
        .merge(pages::shop::routes())
        .merge(pages::settings::routes())
        .merge(pages::sales::routes())
        .merge(pages::referrals::routes())
        .merge(pages::distribution::routes())
        .merge(pages::neighbourhood::routes())
        .merge(pages::subscriptions::routes())
        .merge(pages::alliance::routes())
        .merge(pages::codes::routes())
        .merge(pages::community::routes())
        .merge(pages::analytics::routes())
        .route(
            "/console/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

/// Headers on every console answer: nothing may load from another host, no framing, no
/// referrer leaving the console; pages (not assets) are never cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/console/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; \
             img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
