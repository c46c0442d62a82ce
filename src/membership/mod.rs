//! The membership program (会员体系): tiers by growth value, points rules and expiry, member
//! day, birthday perks, early access, stored value and coupons.
//!
//! - [`rules`]: the pure rules.
//! - [`program`]: the tenant's program settings and the HTTP routes that change them, growth
//!   and tiers, and the daily program run (points expiry and warnings, birthday perks, tier
//!   requalification, repurchase reminders).
//! - [`stored_value`]: top-up plans (充值送), top-ups, spending and refunds of the wallet.
//! - [`coupons`]: templates, claims, redemption.
//!
//! Other domains issue membership rewards through the Rust functions here (for example
//! [`coupons::grant`] inside their own transaction) rather than over HTTP.

pub mod coupons;
pub mod hooks;
pub mod program;
pub mod rules;
pub mod stored_value;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every membership route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(program::routes())
        .merge(stored_value::routes())
        .merge(coupons::routes())
}
