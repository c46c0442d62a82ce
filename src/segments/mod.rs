//! Segments (人群, audiences): who matches a rule over members' tags, source, tier, scores,
//! groups, referrals, orders and points, answered from an in-memory bitmap index per tenant.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`rule`] | the rule language and its parser (pure) |
//! | [`index`] | the bitmap index and the naive evaluator it is tested against (pure) |
//! | [`load`] | filling the index from the database |
//! | [`registry`] | this node's indexes, kept fresh from the event outbox |
//! | [`routes`] | the HTTP API: preview, saved segments, their members and export |
//!
//! Segments sit above analytics, community and growth: they read every domain's facts and no
//! domain reads them, except through [`crate::common::hooks::Audiences`] (members listed by
//! `?segment=`).

pub mod index;
pub mod load;
pub mod registry;
pub mod routes;
pub mod rule;

pub use registry::Registry;
pub use routes::routes;

crate::typed_id!(SegmentId, "seg");
