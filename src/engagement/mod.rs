//! Engagement (触达): what leaves the engine and who may be touched when.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`webhooks`] | endpoints, signed deliveries of outbox events (Standard Webhooks), retries |
//! | [`export`] | the event stream export to NATS JetStream |
//! | [`messages`] | the message gate (consent, frequency cap, quiet hours) and the messages it let through |
//! | [`automations`] | event-triggered, delayed, filtered actions per member (营销自动化) |
//! | [`broadcasts`] | the same actions once to an audience at a set time (群发), with a dry run |
//! | [`actions`] | what both do to a member: coupons, points, tags, messages |
//! | [`runs`] | one row per member acted on (at most once), and the stats read from them |
//!
//! Engagement sits above segments (automations and broadcasts take audiences in the segments
//! rule language); no domain below reads it.

pub mod actions;
pub mod automations;
pub mod broadcasts;
pub mod export;
pub mod messages;
pub mod runs;
pub mod webhooks;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(webhooks::routes())
        .merge(messages::routes())
        .merge(automations::routes())
        .merge(broadcasts::routes())
}
