//! Communities (社群): the groups a brand runs for its customers and what happens in them.
//!
//! - [`groups`]: groups with an owner and a capacity (WeChat caps a group at 500), joining and
//!   leaving with inviter attribution, the full history of stays (join, leave, rejoin), and
//!   per-group statistics (joins and leaves per local day, who brought how many, GMV of paid
//!   orders placed by members while they were in the group).
//! - [`links`]: join links (群活码) that route each newcomer to the first group with room.
//! - [`checkins`]: daily check-ins (打卡) with streaks, cycle rewards that cannot be replayed,
//!   and a limited number of paid make-up check-ins (补签) per month.
//! - [`lottery`]: lotteries (抽奖) drawn later or instantly, committed to a secret seed in
//!   advance so that anyone can verify the result afterwards (`shequn lottery verify`).
//! - [`reward`]: the reward shapes shared by check-ins and lotteries and how they are paid
//!   (points and wallet bonus through the ledger, coupons through `coupons::grant`).

pub mod checkins;
pub mod groups;
pub mod links;
pub mod lottery;
pub mod reward;

use utoipa_axum::router::OpenApiRouter;

use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::MemberId;
use crate::common::text;
use crate::AppState;

crate::typed_id!(GroupId, "grp");
crate::typed_id!(GroupMembershipId, "gmb");
crate::typed_id!(GroupLinkId, "gln");
crate::typed_id!(LotteryId, "lot");

/// Every community route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(groups::routes())
        .merge(links::routes())
        .merge(checkins::routes())
        .merge(lottery::routes())
}

/// A member id given in a request body; a malformed one is simply not found.
pub(crate) fn body_member_id(text: &str, what: &str) -> ApiResult<MemberId> {
    MemberId::parse(text).ok_or_else(|| ApiError::not_found(what))
}

/// Longest name of a group, link or lottery, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A trimmed, non-empty name of at most [`MAX_NAME_CHARS`] printable characters.
pub(crate) fn name(field: &str, value: &str) -> ApiResult<String> {
    text::required(field, value, MAX_NAME_CHARS)
}
