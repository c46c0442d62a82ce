//! Growth (裂变, 老带新): referral campaigns with invite codes, two-sided rewards and ladders,
//! anti-fraud and a review queue, leaderboards and funnels.
//!
//! - [`referrals`]: everything about referrals; other domains call its hooks
//!   ([`referrals::on_member_created`], [`referrals::on_order_paid`],
//!   [`referrals::on_order_refunded`]) inside their own transactions.

pub mod referrals;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every growth route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(referrals::routes())
}
