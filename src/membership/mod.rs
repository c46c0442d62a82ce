//! The membership program (会员体系): tiers by growth value, points rules and expiry, member
//! day, birthday perks and early access.
//!
//! - [`rules`]: the pure rules.
//! - [`program`]: the tenant's program settings and the HTTP routes that change them, growth
//!   and tiers, and the daily program run (points expiry and warnings, birthday perks, tier
//!   requalification).

pub mod program;
pub mod rules;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(program::routes())
}
