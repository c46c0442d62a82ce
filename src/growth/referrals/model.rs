//! Referral request and response types, parsed at the edge into validated values.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rules::{validate_ladder, QualifyOn, Reward, RewardSpec, Rung, Signals};
use crate::common::error::ApiError;
use crate::common::state::state_enum;
use crate::common::text;
use crate::common::time::instant_field;
use jiff::tz::TimeZone;

/// Longest campaign name.
pub const MAX_NAME_LEN: usize = 100;
/// Longest `device_id` and `ip` accepted on member creation.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest invite code accepted (issued codes are 10 characters).
pub const MAX_CODE_LEN: usize = 32;
/// Longest invite link base.
pub const MAX_LINK_BASE_LEN: usize = 200;

state_enum! {
    /// Where a referral is.
    pub enum ReferralStatus {
        /// Attributed; waits for its qualifying order.
        Attributed = "attributed",
        /// Refused by the fraud rules (see `reason`); never paid.
        Refused = "refused",
        /// Waiting in the review queue.
        Review = "review",
        /// Rejected by a reviewer; never paid.
        Rejected = "rejected",
        /// Qualified; its rewards are pending until the return window closes.
        Pending = "pending",
        /// Its rewards are posted.
        Rewarded = "rewarded",
        /// Its order was refunded in full: pending rewards voided.
        Voided = "voided",
    }
}

state_enum! {
    /// Where a review queue item is.
    pub enum ReferralReviewStatus {
        /// Waiting for a person.
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        /// Its referral's order was refunded before anyone decided.
        Closed = "closed",
    }
}

state_enum! {
    /// A campaign's state: `active`, or `ended` for good (no attributions, no codes).
    pub enum ReferralCampaignStatus {
        Active = "active",
        Ended = "ended",
    }
}

state_enum! {
    /// Where one reward of a referral is.
    pub enum ReferralRewardStatus {
        /// Written as a pending ledger transfer (points, wallet bonus) or a coupon to issue,
        /// until the return window closes.
        Pending = "pending",
        /// Points or wallet bonus posted.
        Posted = "posted",
        /// Taken back (the order was refunded, or the ladder rung no longer reached).
        Voided = "voided",
        /// Coupon issued (`detail` holds its id).
        Granted = "granted",
        /// Coupon not issued (`detail` says why).
        Failed = "failed",
    }
}

/// One rung as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RungSpec {
    /// Qualified invites that reach this rung.
    pub invites: i64,
    pub reward: RewardSpec,
}

/// `POST /v1/referral-campaigns`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    pub name: String,
    /// `signup`, `first_paid_order` or `order_over`.
    pub qualify_on: String,
    /// For `order_over`: the smallest qualifying order, in fen (required there, ≥ 1).
    pub min_order_amount: Option<i64>,
    pub inviter_reward: Option<RewardSpec>,
    pub invitee_reward: Option<RewardSpec>,
    #[serde(default)]
    pub ladder: Vec<RungSpec>,
    /// Most rewarded invites per inviter per tenant-local day; beyond it, review.
    pub inviter_daily_cap: Option<i64>,
    /// Most reward units the campaign may give (a point, a fen of wallet bonus or a coupon
    /// each); beyond it, review.
    pub budget: Option<i64>,
    /// RFC 3339; default now.
    pub starts_at: Option<String>,
    /// RFC 3339, after `starts_at`; default open-ended.
    pub ends_at: Option<String>,
}

/// A validated campaign, ready to store.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub qualify_on: QualifyOn,
    pub min_order_amount: i64,
    pub inviter_reward: Option<Reward>,
    pub invitee_reward: Option<Reward>,
    pub ladder: Vec<Rung>,
    pub inviter_daily_cap: Option<i64>,
    pub budget: Option<i64>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
}

fn reward(field: &str, spec: &RewardSpec) -> Result<Reward, ApiError> {
    spec.parse()
        .map_err(|e| ApiError::validation(field, e.to_string()))
}

fn instant(field: &str, text: Option<&str>, zone: &TimeZone) -> Result<Option<i64>, ApiError> {
    text.map(|t| instant_field(field, t, zone).map(crate::common::time::to_micros))
        .transpose()
}

impl NewCampaign {
    /// Validate a request; date-only `starts_at` / `ends_at` are the start of that day in `zone`
    /// (the tenant's).
    pub fn from_request(request: CreateCampaign, zone: &TimeZone) -> Result<Self, ApiError> {
        let name = text::required("name", &request.name, MAX_NAME_LEN)?;
        let qualify_on = QualifyOn::parse(&request.qualify_on).ok_or_else(|| {
            ApiError::validation(
                "qualify_on",
                "must be signup, first_paid_order or order_over",
            )
        })?;
        let min_order_amount = match (qualify_on, request.min_order_amount) {
            (QualifyOn::OrderOver, Some(n)) if n >= 1 => n,
            (QualifyOn::OrderOver, _) => {
                return Err(ApiError::validation(
                    "min_order_amount",
                    "order_over needs a min_order_amount of 1 fen or more",
                ))
            }
            (_, Some(n)) if n < 0 => {
                return Err(ApiError::validation(
                    "min_order_amount",
                    "must be 0 or more",
                ))
            }
            (_, n) => n.unwrap_or(0),
        };
        let inviter_reward = request
            .inviter_reward
            .as_ref()
            .map(|s| reward("inviter_reward", s))
            .transpose()?;
        let invitee_reward = request
            .invitee_reward
            .as_ref()
            .map(|s| reward("invitee_reward", s))
            .transpose()?;
        let mut ladder = Vec::with_capacity(request.ladder.len());
        for (i, rung) in request.ladder.iter().enumerate() {
            ladder.push(Rung {
                invites: rung.invites,
                reward: reward(&format!("ladder[{i}].reward"), &rung.reward)?,
            });
        }
        validate_ladder(&ladder).map_err(|e| ApiError::validation("ladder", e))?;
        if inviter_reward.is_none() && invitee_reward.is_none() && ladder.is_empty() {
            return Err(ApiError::validation(
                "inviter_reward",
                "a campaign needs at least one reward (inviter_reward, invitee_reward or ladder)",
            ));
        }
        if request.inviter_daily_cap.is_some_and(|n| n < 1) {
            return Err(ApiError::validation(
                "inviter_daily_cap",
                "must be 1 or more",
            ));
        }
        if request.budget.is_some_and(|n| n < 1) {
            return Err(ApiError::validation("budget", "must be 1 or more"));
        }
        let starts_at = instant("starts_at", request.starts_at.as_deref(), zone)?;
        let ends_at = instant("ends_at", request.ends_at.as_deref(), zone)?;
        if let (Some(s), Some(e)) = (starts_at, ends_at) {
            if e <= s {
                return Err(ApiError::validation("ends_at", "must be after starts_at"));
            }
        }
        Ok(NewCampaign {
            name,
            qualify_on,
            min_order_amount,
            inviter_reward,
            invitee_reward,
            ladder,
            inviter_daily_cap: request.inviter_daily_cap,
            budget: request.budget,
            starts_at,
            ends_at,
        })
    }
}

/// `PATCH /v1/referral-campaigns/{id}`: end a campaign (no further attributions or codes).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCampaign {
    /// Only `ended`.
    pub status: Option<String>,
    pub name: Option<String>,
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub qualify_on: String,
    pub min_order_amount: i64,
    pub inviter_reward: Option<RewardSpec>,
    pub invitee_reward: Option<RewardSpec>,
    pub ladder: Vec<RungSpec>,
    pub inviter_daily_cap: Option<i64>,
    pub budget: Option<i64>,
    /// Reward units committed so far (pending and posted; a voided reward gives its share back).
    pub spent: i64,
    /// `active` or `ended`.
    pub status: ReferralCampaignStatus,
    /// Is the campaign taking attributions now (active and inside its window)?
    pub running: bool,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPage {
    pub data: Vec<Campaign>,
    pub next_cursor: Option<String>,
}

pub use crate::common::pagination::PageQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReferralQuery {
    /// `attributed`, `refused`, `review`, `rejected`, `pending`, `rewarded` or `voided`.
    pub status: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// `pending`, `approved`, `rejected` or `closed`.
    pub status: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InviteCodeQuery {
    /// Required: the campaign the code is for.
    pub campaign_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A member's invite code for one campaign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InviteCode {
    pub code: String,
    /// The tenant's link base followed by the code.
    pub link: String,
    pub campaign_id: String,
    pub member_id: String,
}

/// One reward a referral pays.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RewardView {
    /// The ledger transfer id for points and wallet bonus; a key for coupons.
    pub id: String,
    pub member_id: String,
    /// `inviter`, `invitee` or `ladder_<invites>`.
    pub role: String,
    /// `points`, `wallet_bonus` or `coupon`.
    pub kind: String,
    pub amount: i64,
    pub coupon_template_id: Option<String>,
    /// `pending`, `posted`, `voided`, `granted` (coupon) or `failed` (coupon not issued; see detail).
    pub status: ReferralRewardStatus,
    pub detail: Option<String>,
}

/// A referral: one invitee's attribution and every decision on it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Referral {
    pub id: String,
    pub campaign_id: String,
    pub inviter_id: String,
    pub invitee_id: String,
    pub code: String,
    /// `attributed` (waits for a qualifying order), `refused`, `review`, `rejected`,
    /// `pending` (rewards pending until the return window closes), `rewarded` or `voided`.
    pub status: ReferralStatus,
    /// Why it was refused, sent to review, or voided.
    pub reason: Option<String>,
    pub order_id: Option<String>,
    pub order_amount: Option<i64>,
    pub qualified_at: Option<String>,
    /// When pending rewards are posted.
    pub release_at: Option<String>,
    /// Reward units charged to the campaign budget.
    pub reward_cost: i64,
    pub rewards: Vec<RewardView>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralPage {
    pub data: Vec<Referral>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/referrals`: attribute an existing member to an invite code.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReferral {
    pub invite_code: String,
    pub member_id: String,
}

/// A review queue item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Review {
    pub id: String,
    pub referral_id: String,
    pub campaign_id: String,
    pub inviter_id: String,
    pub invitee_id: String,
    /// Why it was queued: `shared_device`, `shared_ip`, `daily_cap_reached`, `budget_exhausted`.
    pub reason: String,
    /// `pending`, `approved`, `rejected`, or `closed` (its order was refunded first).
    pub status: ReferralReviewStatus,
    pub note: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    pub data: Vec<Review>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/referral-reviews/{id}/approve` and `/reject`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// A note kept with the decision (at most 500 characters).
    pub note: Option<String>,
}

/// The referral settings of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ReferralSettings)]
pub struct Settings {
    /// Most attributions per inviter per hour; beyond it, refused (default 20).
    pub velocity_per_hour: i64,
    /// Days after payment before order-based rewards are posted (default 7).
    pub return_window_days: i64,
    /// Prefix of invite links (default `/invite/`).
    pub invite_link_base: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            velocity_per_hour: 20,
            return_window_days: 7,
            invite_link_base: "/invite/".into(),
        }
    }
}

/// `PUT /v1/referral-settings`: absent fields keep their value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateReferralSettings)]
pub struct UpdateSettings {
    pub velocity_per_hour: Option<i64>,
    pub return_window_days: Option<i64>,
    pub invite_link_base: Option<String>,
}

impl Settings {
    pub fn apply(mut self, update: UpdateSettings) -> Result<Settings, ApiError> {
        if let Some(v) = update.velocity_per_hour {
            if !(1..=100_000).contains(&v) {
                return Err(ApiError::validation(
                    "velocity_per_hour",
                    "must be between 1 and 100000",
                ));
            }
            self.velocity_per_hour = v;
        }
        if let Some(d) = update.return_window_days {
            if !(0..=365).contains(&d) {
                return Err(ApiError::validation(
                    "return_window_days",
                    "must be between 0 and 365",
                ));
            }
            self.return_window_days = d;
        }
        if let Some(base) = update.invite_link_base {
            let base = base.trim().to_owned();
            if base.is_empty()
                || base.len() > MAX_LINK_BASE_LEN
                || base.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(ApiError::validation(
                    "invite_link_base",
                    format!("must be 1 to {MAX_LINK_BASE_LEN} characters without spaces"),
                ));
            }
            self.invite_link_base = base;
        }
        Ok(self)
    }
}

/// Leaderboard entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Standing {
    pub member_id: String,
    /// Qualified invites (rewards pending or posted).
    pub invites: i64,
    /// 1 for the first; null when the member has no qualified invite.
    pub rank: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Leaderboard {
    pub data: Vec<Standing>,
}

/// The campaign funnel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Funnel {
    /// Invite codes issued (one per member who asked for one).
    pub codes_issued: i64,
    /// Invitees attributed and not refused.
    pub signups: i64,
    /// Attributions refused by the fraud rules.
    pub refused: i64,
    /// Referrals waiting in the review queue.
    pub in_review: i64,
    /// Invitees who qualified (rewards pending or posted).
    pub qualified: i64,
    /// Referrals whose rewards are posted.
    pub rewarded: i64,
    /// Reward units committed (the campaign's `spent`).
    pub reward_cost: i64,
    /// Signups per code issued.
    pub signup_rate: Option<f64>,
    /// qualified / codes_issued: invites per inviter × conversion.
    pub k_factor: Option<f64>,
}

/// What member creation passes on to the referral part.
#[derive(Debug, Clone, Default)]
pub struct Signup {
    pub invite_code: Option<String>,
    pub signals: Signals,
}

impl Signup {
    /// Validate the referral fields of `POST /v1/members`.
    pub fn parse(
        invite_code: Option<String>,
        device_id: Option<String>,
        ip: Option<String>,
    ) -> Result<Signup, ApiError> {
        let invite_code = invite_code.map(|c| code("invite_code", &c)).transpose()?;
        let device_id = device_id
            .map(|d| {
                let d = d.trim().to_owned();
                if d.is_empty() || d.len() > MAX_DEVICE_ID_LEN || d.chars().any(char::is_control) {
                    Err(ApiError::validation(
                        "device_id",
                        format!("must be 1 to {MAX_DEVICE_ID_LEN} printable characters"),
                    ))
                } else {
                    Ok(d)
                }
            })
            .transpose()?;
        let ip = ip
            .map(|text| {
                text.trim()
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_string())
                    .map_err(|_| ApiError::validation("ip", "must be an IPv4 or IPv6 address"))
            })
            .transpose()?;
        Ok(Signup {
            invite_code,
            signals: Signals { device_id, ip },
        })
    }
}

/// An invite code as typed: trimmed, upper-cased, 1 to 32 letters and digits.
pub fn code(field: &str, text: &str) -> Result<String, ApiError> {
    let code = text.trim().to_ascii_uppercase();
    if code.is_empty()
        || code.len() > MAX_CODE_LEN
        || !code.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ApiError::validation(
            field,
            format!("must be 1 to {MAX_CODE_LEN} letters and digits"),
        ));
    }
    Ok(code)
}
