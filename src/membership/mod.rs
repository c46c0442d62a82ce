//! Membership program (会员): top-up plans and stored value today; tiers, member days,
//! points rules and coupons join here as their own modules, each with its own `routes()`.

pub mod stored_value;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every membership route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(stored_value::routes())
}
