//! Customer analytics (RFM, lifetime value, repurchase prediction).
//!
//! - [`model`]: BG/NBD and Gamma-Gamma fitted by maximum likelihood, P(alive), expected
//!   transactions, CLV, RFM scoring and the holdout validation table, as pure functions,
//!   checked against the published CDNOW estimates.
//! - [`scoring`]: the run that fits a tenant's order history and stores per-member scores.
//! - [`routes`]: cheap reads of the stored scores.
//! - [`lifecycle`]: lifecycle stages and monthly cohorts.
//! - [`repurchase`]: predicted next purchases and the reminders sent before them.
//! - [`overview`]: the business at a glance (paid GMV, orders, new and active members by day).

pub mod lifecycle;
pub mod model;
pub mod overview;
pub mod repurchase;
pub mod routes;
pub mod scoring;

pub use routes::routes;
