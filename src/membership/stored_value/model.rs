//! Stored-value request and response types, validated at the edge.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules::SpendPolicy;
use super::{PlanId, RefundId, SpendId, TopupId};
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::MemberId;
use crate::common::text;
use crate::ledger::model::MAX_AMOUNT;

/// The default cap on a member's stored balance (principal + bonus): ¥5,000 in fen.
pub const DEFAULT_CAP: i64 = 500_000;
/// Longest plan name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest payment reference or spend/refund reference, in bytes.
pub const MAX_REFERENCE_LEN: usize = 128;

/// A top-up plan (充值送): pay `pay` fen, get `pay + bonus` fen of stored value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    #[schema(value_type = String)]
    pub id: PlanId,
    pub name: String,
    /// Fen paid (credited as principal).
    pub pay: i64,
    /// Fen given on top (credited as bonus).
    pub bonus: i64,
    pub active: bool,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    pub name: String,
    /// Fen, at least 1.
    pub pay: i64,
    /// Fen, 0 or more (default 0).
    #[serde(default)]
    pub bonus: i64,
}

/// A validated new plan: (name, pay, bonus).
pub fn validate_plan(request: CreatePlan) -> ApiResult<(String, i64, i64)> {
    let name = text::required("name", &request.name, MAX_NAME_CHARS)?;
    if !(1..=MAX_AMOUNT).contains(&request.pay) {
        return Err(ApiError::validation(
            "pay",
            "must be a positive number of fen",
        ));
    }
    if !(0..=MAX_AMOUNT).contains(&request.bonus) {
        return Err(ApiError::validation("bonus", "must be 0 or more fen"));
    }
    Ok((name, request.pay, request.bonus))
}

/// A reference supplied by a client (payment reference, spend reference…).
pub fn reference(field: &str, text: &str) -> ApiResult<String> {
    if text.is_empty() || text.len() > MAX_REFERENCE_LEN || text.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("must be 1 to {MAX_REFERENCE_LEN} bytes without control characters"),
        ));
    }
    Ok(text.to_owned())
}

/// A completed (or later refunded) top-up.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Topup {
    #[schema(value_type = String)]
    pub id: TopupId,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    #[schema(value_type = String)]
    pub plan_id: PlanId,
    pub payment_ref: String,
    pub pay: i64,
    pub bonus: i64,
    /// `completed`, or `refunded` after a top-up refund.
    pub status: String,
    pub created_at: String,
}

/// Top-up status after it credited the wallet.
pub const TOPUP_COMPLETED: &str = "completed";
/// Top-up status after its refund.
pub const TOPUP_REFUNDED: &str = "refunded";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopup {
    pub plan_id: String,
    /// The payment's reference (e.g. the WeChat Pay transaction id); unique per tenant, and
    /// the top-up's idempotency key.
    pub payment_ref: String,
}

/// One spend from a wallet.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Spend {
    #[schema(value_type = String)]
    pub spend_id: SpendId,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    pub reference: String,
    pub amount: i64,
    /// Fen drawn from principal.
    pub principal: i64,
    /// Fen drawn from bonus.
    pub bonus: i64,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendRequest {
    /// Fen, at least 1.
    pub amount: i64,
    /// The caller's reference (an order id…); unique per tenant, and the spend's
    /// idempotency key.
    pub reference: String,
}

/// What a refund is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    Spend,
    Topup,
}

impl RefundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundKind::Spend => "spend",
            RefundKind::Topup => "topup",
        }
    }
}

/// A refund. For a spend: `principal` and `bonus` went back into the wallet. For a top-up:
/// `principal` left the wallet to be paid back (`system:refunds`) and `bonus` was clawed back.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[schema(as = WalletRefund)]
pub struct Refund {
    #[schema(value_type = String)]
    pub id: RefundId,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    pub kind: RefundKind,
    pub spend_id: Option<String>,
    pub topup_id: Option<String>,
    pub reference: Option<String>,
    /// Fen refunded: of the spend, or the top-up's principal.
    pub amount: i64,
    pub principal: i64,
    pub bonus: i64,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WalletRefundRequest)]
pub struct RefundRequest {
    /// Refund (part of) this spend…
    pub spend_id: Option<String>,
    /// …or this whole top-up.
    pub topup_id: Option<String>,
    /// Fen of the spend to refund (default: all that is not refunded yet). Not for top-ups.
    pub amount: Option<i64>,
    /// Optional idempotency reference for spend refunds, unique per tenant.
    pub reference: Option<String>,
}

/// The tenant's stored-value settings.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[schema(as = StoredValueSettings)]
pub struct Settings {
    pub spend_policy: SpendPolicy,
    /// Most fen of stored value (principal + bonus) one member may hold after a top-up.
    pub cap: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            spend_policy: SpendPolicy::default(),
            cap: DEFAULT_CAP,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateStoredValueSettings)]
pub struct UpdateSettings {
    /// `proportional`, `bonus_first` or `principal_first`; absent keeps the current one.
    pub spend_policy: Option<String>,
    /// Fen, 0 or more; absent keeps the current one.
    pub cap: Option<i64>,
}

impl UpdateSettings {
    pub fn apply_to(self, mut settings: Settings) -> ApiResult<Settings> {
        if let Some(policy) = self.spend_policy {
            settings.spend_policy = SpendPolicy::parse(&policy).ok_or_else(|| {
                ApiError::validation(
                    "spend_policy",
                    "must be proportional, bonus_first or principal_first",
                )
            })?;
        }
        if let Some(cap) = self.cap {
            if !(0..=MAX_AMOUNT).contains(&cap) {
                return Err(ApiError::validation("cap", "must be 0 or more fen"));
            }
            settings.cap = cap;
        }
        Ok(settings)
    }
}

/// A member's wallet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Wallet {
    pub principal: i64,
    pub bonus: i64,
    pub total: i64,
    /// The latest top-ups, newest first (at most 100).
    pub topups: Vec<Topup>,
}
