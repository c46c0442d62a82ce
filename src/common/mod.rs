//! Shared plumbing: the pieces every domain folder uses and none re-implements.

pub mod auth;
pub mod batcher;
pub mod clock;
pub mod db;
pub mod error;
pub mod events;
pub mod extract;
pub mod hooks;
pub mod idempotency;
pub mod ids;
pub mod import;
pub mod json;
pub mod outbox;
pub mod pagination;
pub mod price;
pub mod rate_limit;
pub mod reader;
pub mod scheduler;
pub mod sql;
pub mod state;
pub mod text;
pub mod time;
