//! The membership program (会员体系): what a merchant gives members for belonging. Tiers,
//! member days, member prices, birthday perks, top-up plans and points rules will live here
//! beside [`coupons`], each in its own module with its own routes.
//!
//! Other domains issue membership rewards through the Rust functions here (for example
//! [`coupons::grant`] inside their own transaction) rather than over HTTP.

pub mod coupons;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every membership route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(coupons::routes())
}
