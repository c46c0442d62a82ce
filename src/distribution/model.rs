//! Distribution's request and response types, parsed at the edge, and its states.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::common::error::{codes, ApiError, ApiResult};

use super::rules::{BP, MAX_LEVELS};

/// Largest default or product rate of one level: half the sale. Both levels together are at
/// most the whole sale.
pub const MAX_RATE_BP: i64 = 5_000;
/// Longest binding window.
pub const MAX_BINDING_DAYS: i64 = 3_650;
/// Largest withdrawal fee: 10 %.
pub const MAX_FEE_BP: i64 = 1_000;
/// Largest minimum withdrawal (¥100,000 in fen).
pub const MAX_MIN_AMOUNT: i64 = 10_000_000;

/// Default commission rates of the two levels, in basis points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub level1: i64,
    pub level2: i64,
}

/// Who approves promoters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Every application is approved at once.
    Auto,
    /// Applications wait for an operator.
    Manual,
}

/// Which promoter keeps a customer who follows a second share code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindingMode {
    /// The first promoter keeps the customer until the window ends.
    FirstTouch,
    /// The latest share code followed wins (and starts a new window).
    LastTouch,
}

impl BindingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingMode::FirstTouch => "first_touch",
            BindingMode::LastTouch => "last_touch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub mode: BindingMode,
    /// Days a binding lasts; null: for ever.
    #[serde(default)]
    pub days: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalSettings {
    /// Smallest withdrawal (fen).
    pub min_amount: i64,
    /// Fee kept from each withdrawal, in basis points, rounded down.
    pub fee_bp: i64,
    /// Whether an operator approves each withdrawal (else approved at once).
    pub review: bool,
}

/// The tenant's distribution settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DistributionSettings)]
pub struct Settings {
    pub enabled: bool,
    /// 1 or 2; the law allows no more.
    pub levels: i64,
    pub rates_bp: Rates,
    pub approval: Approval,
    pub binding: Binding,
    /// Whether a promoter's own paid orders pay them level 1 (and their inviter level 2).
    pub self_purchase_commission: bool,
    pub withdrawal: WithdrawalSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            levels: 1,
            rates_bp: Rates {
                level1: 1000,
                level2: 0,
            },
            approval: Approval::Auto,
            binding: Binding {
                mode: BindingMode::FirstTouch,
                days: Some(30),
            },
            self_purchase_commission: false,
            withdrawal: WithdrawalSettings {
                min_amount: 100,
                fee_bp: 0,
                review: true,
            },
        }
    }
}

/// `PUT /v1/distribution/settings`: absent fields keep their value; a nested object is given
/// whole.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateDistributionSettings)]
pub struct UpdateSettings {
    pub enabled: Option<bool>,
    pub levels: Option<i64>,
    pub rates_bp: Option<Rates>,
    pub approval: Option<Approval>,
    pub binding: Option<Binding>,
    pub self_purchase_commission: Option<bool>,
    pub withdrawal: Option<WithdrawalSettings>,
}

pub fn check_rate(field: &str, bp: i64) -> ApiResult<()> {
    if !(0..=MAX_RATE_BP).contains(&bp) {
        return Err(ApiError::validation(
            field,
            format!("must be 0 to {MAX_RATE_BP} basis points"),
        ));
    }
    Ok(())
}

impl Settings {
    /// The settings with `update` applied, validated as a whole.
    pub fn apply(mut self, update: UpdateSettings) -> ApiResult<Settings> {
        if let Some(levels) = update.levels {
            if levels > MAX_LEVELS {
                return Err(ApiError::coded(
                    codes::DEPTH_EXCEEDS_LEGAL_LIMIT,
                    format!(
                        "at most {MAX_LEVELS} levels: commission on deeper chains of uplines is \
                         pyramid selling (禁止传销条例 Art. 7)"
                    ),
                )
                .with_details(serde_json::json!({ "field": "levels", "max": MAX_LEVELS })));
            }
            if levels < 1 {
                return Err(ApiError::validation("levels", "must be 1 or 2"));
            }
            self.levels = levels;
        }
        if let Some(enabled) = update.enabled {
            self.enabled = enabled;
        }
        if let Some(rates) = update.rates_bp {
            check_rate("rates_bp.level1", rates.level1)?;
            check_rate("rates_bp.level2", rates.level2)?;
            self.rates_bp = rates;
        }
        if let Some(approval) = update.approval {
            self.approval = approval;
        }
        if let Some(binding) = update.binding {
            if binding
                .days
                .is_some_and(|d| !(1..=MAX_BINDING_DAYS).contains(&d))
            {
                return Err(ApiError::validation(
                    "binding.days",
                    format!("must be 1 to {MAX_BINDING_DAYS}, or null for ever"),
                ));
            }
            self.binding = binding;
        }
        if let Some(flag) = update.self_purchase_commission {
            self.self_purchase_commission = flag;
        }
        if let Some(withdrawal) = update.withdrawal {
            if !(1..=MAX_MIN_AMOUNT).contains(&withdrawal.min_amount) {
                return Err(ApiError::validation(
                    "withdrawal.min_amount",
                    format!("must be 1 to {MAX_MIN_AMOUNT} fen"),
                ));
            }
            if !(0..=MAX_FEE_BP).contains(&withdrawal.fee_bp) {
                return Err(ApiError::validation(
                    "withdrawal.fee_bp",
                    format!("must be 0 to {MAX_FEE_BP} basis points"),
                ));
            }
            self.withdrawal = withdrawal;
        }
        Ok(self)
    }

    /// The default rate of `level` (1 or 2) in basis points; 0 beyond the configured levels.
    pub fn default_rate(&self, level: i64) -> i64 {
        match level {
            1 => self.rates_bp.level1,
            2 if self.levels >= 2 => self.rates_bp.level2,
            _ => 0,
        }
    }
}

/// `PUT /v1/distribution/product-rates/{product_id}`: the product's own rates (`0`: no
/// commission on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductRates {
    pub level1_bp: i64,
    pub level2_bp: i64,
}

impl ProductRates {
    pub fn check(&self) -> ApiResult<()> {
        check_rate("level1_bp", self.level1_bp)?;
        check_rate("level2_bp", self.level2_bp)?;
        if self.level1_bp + self.level2_bp > BP {
            return Err(ApiError::validation(
                "level2_bp",
                "both levels exceed 100 %",
            ));
        }
        Ok(())
    }
}

/// A product's rates as `GET` shows them: null when it pays the default rates.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductRatesView {
    pub product_id: String,
    pub rates: Option<ProductRates>,
}

macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }

            /// Parse a `status` query parameter (422 naming the choices).
            pub fn query(text: Option<&str>) -> ApiResult<Option<Self>> {
                text.map(|t| {
                    Self::parse(t).ok_or_else(|| {
                        ApiError::validation(
                            "status",
                            format!("must be one of {}", Self::NAMES.join(", ")),
                        )
                    })
                })
                .transpose()
            }
        }
    };
}

state_enum!(
    /// A promoter's state: `pending` (waiting for an operator), `approved` (earns),
    /// `rejected`, `suspended` (earns nothing new; what is pending stays pending).
    PromoterStatus {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
        Suspended => "suspended",
    }
);

state_enum!(
    /// A commission's state: `pending` until the order's return window closes, then
    /// `available`; `voided` when refunds took all of it.
    CommissionStatus {
        Pending => "pending",
        Available => "available",
        Voided => "voided",
    }
);

state_enum!(
    /// A withdrawal's state: `pending` (waiting for review), `approved` (the money moved to
    /// `system:payouts`; the merchant pays it out), `rejected`, `paid` (confirmed), `failed`
    /// (the payout failed; the money went back to the promoter).
    WithdrawalStatus {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
        Paid => "paid",
        Failed => "failed",
    }
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Apply {
    pub member_id: String,
    pub invited_by_promoter_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommissionTotals {
    /// Owed on orders still inside their return window (fen).
    pub pending: i64,
    /// The promoter's commission balance that can be withdrawn now (fen).
    pub available: i64,
    /// Withdrawn: approved or paid withdrawals (fen, before fees).
    pub withdrawn: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Promoter {
    pub id: String,
    pub member_id: String,
    pub invited_by_promoter_id: Option<String>,
    pub status: PromoterStatus,
    pub share_code: Option<String>,
    /// Commission a refund after release could not take back, netted against future ones.
    pub debt: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PromoterDetail {
    #[serde(flatten)]
    pub promoter: Promoter,
    /// Approved or suspended promoters this one invited.
    pub team_size: i64,
    /// Customers bound to this promoter now.
    pub customers: i64,
    /// Orders that earned this promoter a level-1 commission (not voided).
    pub orders: i64,
    /// What those orders' customers paid, less refunds (fen).
    pub gmv: i64,
    pub commission: CommissionTotals,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PromoterPage {
    pub data: Vec<Promoter>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub status: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareCode {
    pub code: String,
    /// A path the merchant's front end resolves (`/s/<code>`); shequn makes no external link.
    pub link: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub member_id: String,
    pub share_code: String,
}

/// A customer's binding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingView {
    pub member_id: String,
    /// Null when the customer is bound to no promoter now.
    pub promoter_id: Option<String>,
    pub bound_at: Option<String>,
    /// When the binding ends; null for ever (or when unbound).
    pub ends_at: Option<String>,
    pub mode: BindingMode,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Commission {
    pub id: String,
    pub order_id: String,
    pub level: i64,
    pub promoter_id: String,
    /// What is owed now, after refunds (fen).
    pub amount: i64,
    /// What the order first earned (fen).
    pub original: i64,
    pub status: CommissionStatus,
    pub release_at: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommissionPage {
    pub data: Vec<Commission>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestWithdrawal {
    pub amount: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaidBody {
    /// The merchant's payout reference.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Withdrawal {
    pub id: String,
    pub promoter_id: String,
    pub amount: i64,
    pub fee: i64,
    /// `amount − fee`: what the promoter receives.
    pub net: i64,
    pub status: WithdrawalStatus,
    pub reference: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalPage {
    pub data: Vec<Withdrawal>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// `7d`, `30d` (default) or `all`: orders paid in that period.
    pub period: Option<String>,
    /// 1 to 100, default 10.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DistributionLeaderboardEntry)]
pub struct LeaderboardEntry {
    pub rank: i64,
    pub promoter_id: String,
    pub member_id: String,
    pub orders: i64,
    pub gmv: i64,
    pub commission: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DistributionLeaderboard)]
pub struct Leaderboard {
    pub period: String,
    pub data: Vec<LeaderboardEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DistributionSummary)]
pub struct Summary {
    pub promoters: i64,
    /// Paid through promoters (level-1 orders), less refunds (fen).
    pub gmv: i64,
    pub commission: SummaryCommission,
    /// Commission owed (pending + available + paid out) per fen of GMV; null without GMV.
    pub cost_ratio: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryCommission {
    /// Owed on orders inside their return window.
    pub pending: i64,
    /// Released and not yet withdrawn: what promoters hold.
    pub available: i64,
    /// Withdrawn (approved or paid withdrawals, before fees).
    pub paid: i64,
    /// Debt promoters still owe from refunds after release.
    pub debt: i64,
}
