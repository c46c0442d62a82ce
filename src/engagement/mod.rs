//! Engagement (触达): what leaves the engine and who may be touched when.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`webhooks`] | endpoints, signed deliveries of outbox events (Standard Webhooks), retries |
//! | [`export`] | the event stream export to NATS JetStream |
//! | [`messages`] | the message gate (consent, frequency cap, quiet hours) and the messages it let through |
//!
//! Engagement sits above segments (automations and broadcasts take audiences in the segments
//! rule language); no domain below reads it.

pub mod export;
pub mod messages;
pub mod webhooks;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(webhooks::routes())
        .merge(messages::routes())
}
