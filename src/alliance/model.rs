//! The alliance's request and response types, parsed at the edge, and its states.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::common::error::{ApiError, ApiResult};

use super::rules::{BP, MAX_FIXED_FEE};

/// Longest alliance or partner name.
pub const MAX_NAME_LEN: usize = 80;
/// Longest settlement reference.
pub const MAX_REFERENCE_LEN: usize = 128;
/// Largest offer stock.
pub const MAX_STOCK: i64 = 1_000_000;
/// Largest settlement (¥10,000,000 in fen).
pub const MAX_SETTLEMENT: i64 = 1_000_000_000;

/// How the referral fee is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeeKind {
    /// `value` fen per referred customer.
    Fixed,
    /// `value` basis points of the first paid order's total, rounded down.
    PercentBp,
}

/// The fee the issuer owes the referring partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralFee {
    pub kind: FeeKind,
    /// Fen (`fixed`, at most 10,000,000) or basis points (`percent_bp`, at most 10,000).
    pub value: i64,
}

/// When the fee is owed: only `first_paid_order` today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeeOn {
    FirstPaidOrder,
}

/// The alliance's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllianceRules {
    pub referral_fee: ReferralFee,
    pub fee_on: FeeOn,
}

impl AllianceRules {
    pub fn check(&self) -> ApiResult<()> {
        let fee = self.referral_fee;
        let max = match fee.kind {
            FeeKind::Fixed => MAX_FIXED_FEE,
            FeeKind::PercentBp => BP,
        };
        if !(0..=max).contains(&fee.value) {
            return Err(ApiError::validation(
                "rules.referral_fee.value",
                format!("must be 0 to {max}"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlliance {
    pub name: String,
    pub rules: AllianceRules,
    /// How the founder appears to partners (default: the tenant's name).
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinAlliance {
    pub code: String,
    /// How the new partner appears to the others (default: the tenant's name).
    pub display_name: Option<String>,
}

/// A partner's state in an alliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    /// Left: no new offers, claims or fees; what it is owed or owes stays in the balances.
    Left,
}

impl PartnerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerStatus::Active => "active",
            PartnerStatus::Left => "left",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(PartnerStatus::Active),
            "left" => Some(PartnerStatus::Left),
            _ => None,
        }
    }
}

/// A partner as every partner sees it: its display name, never its tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlliancePartner {
    pub partner_id: String,
    pub name: String,
    pub status: PartnerStatus,
    pub joined_at: String,
    pub left_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Alliance {
    pub id: String,
    pub name: String,
    pub rules: AllianceRules,
    pub founder_partner_id: String,
    /// The caller's own partner id in this alliance.
    pub my_partner_id: String,
    pub partners: Vec<AlliancePartner>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllianceList {
    pub data: Vec<Alliance>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllianceInvitation {
    /// The one-time code another tenant joins with.
    pub code: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Hours until the code expires (default 168, at most 720).
    pub expires_in_hours: Option<i64>,
}

/// An offer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    Open,
    /// Its partner left the alliance.
    Closed,
    /// Its partner withdrew it: no new claims; coupons claimed before stay valid.
    Withdrawn,
}

impl OfferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Open => "open",
            OfferStatus::Closed => "closed",
            OfferStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(OfferStatus::Open),
            "closed" => Some(OfferStatus::Closed),
            "withdrawn" => Some(OfferStatus::Withdrawn),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOffer {
    pub coupon_template_id: String,
    /// How many coupons the alliance may claim (1 to 1,000,000).
    pub stock: i64,
}

/// A shared coupon offer. `coupon_template_id` is shown to its own partner only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllianceOffer {
    pub id: String,
    pub partner_id: String,
    pub partner_name: String,
    pub coupon_template_id: Option<String>,
    pub stock: i64,
    pub remaining: i64,
    pub status: OfferStatus,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OfferList {
    pub data: Vec<AllianceOffer>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimOffer {
    /// The claiming tenant's own member.
    pub member_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllianceClaim {
    pub claim_id: String,
    /// The coupon, issued by and redeemable at the offering partner.
    pub coupon_id: String,
    /// The customer as a member of the issuer (found or created there).
    pub issuer_member_id: String,
    /// When the member consented to be shared with the issuer (the claim).
    pub claimed_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerBalance {
    pub partner_id: String,
    pub name: String,
    /// Fen credited to the partner: fees earned and settlements it paid.
    pub owed: i64,
    /// Fen debited: fees it owes and settlements it received.
    pub owes: i64,
    /// `owed − owes`: positive, the alliance owes it; negative, it owes the alliance.
    pub net: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllianceBalances {
    pub partners: Vec<PartnerBalance>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    /// The month, `YYYY-MM`, in the alliance's time zone (its founder's).
    pub month: String,
    /// `json` (default) or `csv` (every entry of the month, streamed; `limit` and `cursor`
    /// do not apply).
    pub format: Option<String>,
    /// Entries per JSON page: 1 to 10,000, default 1,000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One entry of the alliance ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllianceEntry {
    pub id: String,
    /// `fee`, `fee_void` or `settlement`.
    pub kind: String,
    /// Who owes (the debit partner).
    pub debit_partner_id: String,
    /// Who is owed (the credit partner).
    pub credit_partner_id: String,
    pub amount: i64,
    /// The opaque customer id (fees only).
    pub customer_id: Option<String>,
    /// The order, shown only to the partner whose order it is.
    pub order_id: Option<String>,
    /// A settlement's reference.
    pub reference: Option<String>,
    /// The entry that reversed this one.
    pub voided_by: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllianceStatement {
    pub month: String,
    pub from: String,
    pub to: String,
    /// This page of the month's entries, oldest first.
    pub entries: Vec<AllianceEntry>,
    /// Each partner's movement in the whole month (every entry summed, on every page).
    pub partners: Vec<PartnerBalance>,
    /// The cursor of the next page; null on the month's last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSettlement {
    /// The partner who paid.
    pub from: String,
    /// The partner who was paid.
    pub to: String,
    pub amount: i64,
    pub reference: String,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateReferralLink {
    /// The only partner where the link may be used (default: any other partner).
    pub to_partner_id: Option<String>,
    /// The sender's own note (80 characters), shown to the sender only.
    pub label: Option<String>,
    /// When the link stops working: an RFC 3339 instant or a date (default: never).
    pub expires_at: Option<String>,
}

/// A referral link's state as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReferralLinkStatus {
    Active,
    /// Past its `expires_at`.
    Expired,
    /// Revoked by its partner, or closed when its partner left the alliance.
    Revoked,
}

/// A referral link, as its own partner (the sender) sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReferralLink {
    pub id: String,
    /// What a customer brings to the partner: 20 characters of `23456789ABCDEFGHJKLMNPQRSTUVWXYZ`.
    pub code: String,
    pub alliance_id: String,
    pub partner_id: String,
    pub to_partner_id: Option<String>,
    pub label: Option<String>,
    pub expires_at: Option<String>,
    pub status: ReferralLinkStatus,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// Customers recorded as arrived by this link.
    pub customers_referred: i64,
    /// Of those, the ones that paid a first order at the partner they arrived at.
    pub first_paid_orders: i64,
    /// Fen of referral fees those first orders earned and that still stand (not voided).
    pub fees_earned: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralLinkList {
    pub data: Vec<ReferralLink>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordReferral {
    /// The code of the link the customer followed.
    pub code: String,
    /// The caller's own member who followed it.
    pub member_id: String,
}

/// A customer's arrival by a referral link, recorded at the partner it arrived at.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllianceReferral {
    pub alliance_id: String,
    pub member_id: String,
    /// The alliance's opaque id of the customer (as in its ledger entries).
    pub customer_id: String,
    pub referral_link_id: String,
    pub referred_by_partner_id: String,
    /// The referring partner's display name.
    pub referred_by: String,
    /// When the member shared themself with the alliance by following the link.
    pub consented_at: String,
}
