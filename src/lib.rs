//! shequn (社群): a self-hosted engine for private-domain community commerce.
//!
//! A guided tour:
//!
//! - [`common`] is the shared plumbing every domain uses and none reaches around: the database
//!   (one schema on SQLite and PostgreSQL), errors with stable codes, API-key authentication,
//!   idempotency, the event outbox, the clock, typed ids, JSON extraction and pagination.
//! - Each business area is a folder of its own holding its types, rules, SQL and HTTP routes:
//!   [`tenants`] (tenants and API keys), [`members`] (profiles, tags, import/export, erasure),
//!   [`ledger`] (every balance, as double-entry transfers, with a batching executor),
//!   [`membership`] (tiers, growth, points rules and expiry, member day, birthday perks, stored
//!   value, coupons), [`community`] (groups, join links, check-ins, lotteries), [`orders`]
//!   (products, checkout, flash sales, group buys), [`growth`] (referral campaigns,
//!   anti-fraud, leaderboards, funnels), [`distribution`] (promoters, two-level commissions
//!   within the law, withdrawals), [`subscriptions`] (周期购: plans, delivery calendars, prepaid or
//!   per-delivery billing), [`alliance`] (merchant alliances across tenants: shared coupons,
//!   cross-referral fees, settlement), [`codes`] (one item, one code: code batches, scans that
//!   prove a package genuine and pay points once), [`neighbourhood`] (community group
//!   buying: leaders, pickup points, waves with cut-offs, pick lists, pickup codes), [`analytics`] (RFM, lifetime value,
//!   cohorts, lifecycle, repurchase) and [`segments`] (audiences: rules over all of these,
//!   answered from an in-memory bitmap index).
//! - [`server`] assembles the router (API, OpenAPI document, docs page, health and metrics, the
//!   admin [`console`]) and
//!   runs it; [`daily`] runs each tenant's day (the steps of several domains, in order, in
//!   bounded transactions); [`cli`] is the command line that the binary exposes; [`demo`]
//!   makes the demo tenant of `shequn serve --demo` through the API.

pub mod alliance;
pub mod analytics;
pub mod bench;
pub mod cli;
pub mod codes;
pub mod common;
pub mod community;
pub mod console;
pub mod daily;
pub mod demo;
pub mod distribution;
pub mod docs;
pub mod engagement;
pub mod growth;
pub mod ledger;
pub mod members;
pub mod membership;
pub mod neighbourhood;
pub mod ops;
pub mod orders;
pub mod segments;
pub mod server;
pub mod subscriptions;
pub mod tenants;

pub use server::{app, AppState};
