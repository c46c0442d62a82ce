//! Coupon types, validation at the edge, and the rules that need no I/O: the discount of an
//! order and the validity window of a coupon.

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::common::error::ApiError;
use crate::common::ids::MemberId;
use crate::common::state::state_enum;
use crate::common::text;
use crate::common::time::{instant_field, to_micros};
use jiff::tz::TimeZone;

crate::typed_id!(CouponTemplateId, "cpt");
crate::typed_id!(CouponId, "cpn");

/// Longest template name.
pub const MAX_NAME_LEN: usize = 100;
/// Largest money amount (fen) a template or an order may carry: 10 billion yuan. Keeps every
/// product in the discount arithmetic far inside `i64`.
pub const MAX_MONEY: i64 = 1_000_000_000_000;
/// Basis points in 100%.
pub const FULL_BP: i64 = 10_000;
/// Largest stock of one template.
pub const MAX_STOCK: i64 = 100_000_000;
/// Most coupons of one template a member may hold.
pub const MAX_PER_MEMBER_LIMIT: i64 = 1_000;
/// Longest relative validity (ten years).
pub const MAX_VALID_DAYS: i64 = 3_650;
/// Longest `order_ref` and grant `reason`.
pub const MAX_REF_LEN: usize = 128;

state_enum! {
    /// Where a coupon is: `active`, `redeemed` or `expired`. `expired` is also what a stored
    /// `active` coupon reads as once its window has passed.
    pub enum CouponStatus {
        /// Usable inside its window.
        Active = "active",
        /// Used on an order (until a refund gives it back).
        Redeemed = "redeemed",
        /// Past its window.
        Expired = "expired",
    }
}

/// A coupon's status equals its string, as the `status` field compared before it was typed
/// (the API tests compare the `Coupon` that [`super::grant`] returns that way). Code in this
/// folder compares variants.
impl PartialEq<&str> for CouponStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// [`CouponStatus::Redeemed`] under its former name, for callers outside the coupon folder
/// that still compare with it.
pub const STATUS_REDEEMED: CouponStatus = CouponStatus::Redeemed;

/// What a template takes off an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    /// A fixed amount in fen (满减 / 立减).
    AmountOff(i64),
    /// A share of the order in basis points (折扣券), optionally capped.
    PercentOff(i64),
}

impl Discount {
    pub fn kind(&self) -> &'static str {
        match self {
            Discount::AmountOff(_) => "amount_off",
            Discount::PercentOff(_) => "percent_off",
        }
    }
}

/// How long a claimed coupon is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From the claim, for this many days.
    Days(i64),
    /// A fixed window `[from, to)`, in microseconds since the epoch.
    Window { from: i64, to: i64 },
}

/// The window `[from, to)` of a coupon claimed at `claimed_at` (microseconds).
pub fn coupon_window(validity: Validity, claimed_at: i64) -> (i64, i64) {
    match validity {
        Validity::Days(days) => {
            let micros = SignedDuration::from_hours(days.saturating_mul(24)).as_micros();
            let micros = i64::try_from(micros).unwrap_or(i64::MAX);
            (claimed_at, claimed_at.saturating_add(micros))
        }
        Validity::Window { from, to } => (from, to),
    }
}

/// Where an instant falls relative to a window `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPosition {
    NotYetValid,
    Valid,
    Expired,
}

pub fn window_position(from: i64, to: i64, now: i64) -> WindowPosition {
    if now < from {
        WindowPosition::NotYetValid
    } else if now < to {
        WindowPosition::Valid
    } else {
        WindowPosition::Expired
    }
}

/// The status a client sees: a stored `active` coupon past its window reads as `expired`.
pub fn effective_status(stored: CouponStatus, valid_to: i64, now: i64) -> CouponStatus {
    if stored == CouponStatus::Active && now >= valid_to {
        CouponStatus::Expired
    } else {
        stored
    }
}

/// The discount on an order of `order_amount` fen: the fixed amount, or
/// floor(order_amount × bp / 10000); then capped at `max_discount` and never more than the
/// order. `None` when the order is below `min_spend`.
pub fn discount_for(
    discount: Discount,
    max_discount: Option<i64>,
    min_spend: i64,
    order_amount: i64,
) -> Option<i64> {
    if order_amount < min_spend {
        return None;
    }
    let base = match discount {
        Discount::AmountOff(amount) => amount,
        Discount::PercentOff(bp) => {
            // i128 so that no validated input can overflow; the quotient is at most the order.
            let off = i128::from(order_amount) * i128::from(bp) / i128::from(FULL_BP);
            i64::try_from(off).unwrap_or(i64::MAX)
        }
    };
    let capped = max_discount.map_or(base, |cap| base.min(cap));
    Some(capped.min(order_amount).max(0))
}

/// `POST /v1/coupon-templates`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    pub name: Option<String>,
    /// `amount_off` or `percent_off`.
    pub kind: Option<String>,
    /// Fen off the order; with kind `amount_off`.
    pub amount_off: Option<i64>,
    /// Basis points off the order (10000 = 100%); with kind `percent_off`.
    pub percent_off_bp: Option<i64>,
    /// Largest discount in fen (optional).
    pub max_discount: Option<i64>,
    /// Smallest order in fen the coupon applies to (default 0).
    pub min_spend: Option<i64>,
    /// How many coupons may be issued in all (at least 1).
    pub total_stock: Option<i64>,
    /// How many coupons one member may hold (default 1).
    pub per_member_limit: Option<i64>,
    /// Valid for this many days from the claim; or give `valid_from` and `valid_to`.
    pub valid_days: Option<i64>,
    /// RFC 3339 instant or date; inclusive.
    pub valid_from: Option<String>,
    /// RFC 3339 instant or date; exclusive.
    pub valid_to: Option<String>,
}

/// A validated template, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTemplate {
    pub name: String,
    pub discount: Discount,
    pub max_discount: Option<i64>,
    pub min_spend: i64,
    pub total_stock: i64,
    pub per_member_limit: i64,
    pub validity: Validity,
}

fn money(field: &str, value: i64, min: i64) -> Result<i64, ApiError> {
    if (min..=MAX_MONEY).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            field,
            format!("must be an amount in fen between {min} and {MAX_MONEY}"),
        ))
    }
}

impl NewTemplate {
    /// Validate a request field by field, in this order (the first bad field is the one
    /// named): name, discount, max_discount, min_spend, stock and per-member limit, validity.
    /// Date-only `valid_from` / `valid_to` are the start of that day in `zone` (the tenant's).
    pub fn from_request(request: CreateTemplate, zone: &TimeZone) -> Result<Self, ApiError> {
        // A missing name is refused like an empty one.
        let name = text::required(
            "name",
            request.name.as_deref().unwrap_or_default(),
            MAX_NAME_LEN,
        )?;
        let discount = parse_discount(
            request.kind.as_deref(),
            request.amount_off,
            request.percent_off_bp,
        )?;
        let max_discount = request
            .max_discount
            .map(|v| money("max_discount", v, 1))
            .transpose()?;
        let min_spend = money("min_spend", request.min_spend.unwrap_or(0), 0)?;
        let total_stock = request
            .total_stock
            .ok_or_else(|| ApiError::validation("total_stock", "is required"))?;
        let total_stock = between("total_stock", total_stock, MAX_STOCK)?;
        let per_member_limit = between(
            "per_member_limit",
            request.per_member_limit.unwrap_or(1),
            MAX_PER_MEMBER_LIMIT,
        )?;
        let validity = parse_validity(
            request.valid_days,
            request.valid_from,
            request.valid_to,
            zone,
        )?;
        Ok(NewTemplate {
            name: name.to_owned(),
            discount,
            max_discount,
            min_spend,
            total_stock,
            per_member_limit,
            validity,
        })
    }
}

/// `value` when it is 1 to `max`; 422 naming `field` otherwise.
fn between(field: &str, value: i64, max: i64) -> Result<i64, ApiError> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            field,
            format!("must be between 1 and {max}"),
        ))
    }
}

/// The discount a template's `kind` names, from the one amount field that goes with it
/// (`amount_off` fen, or `percent_off_bp` basis points); the other must be absent.
fn parse_discount(
    kind: Option<&str>,
    amount_off: Option<i64>,
    percent_off_bp: Option<i64>,
) -> Result<Discount, ApiError> {
    match kind {
        Some("amount_off") => {
            if percent_off_bp.is_some() {
                return Err(ApiError::validation(
                    "percent_off_bp",
                    "only with kind percent_off",
                ));
            }
            let amount = amount_off.ok_or_else(|| {
                ApiError::validation("amount_off", "is required with kind amount_off")
            })?;
            Ok(Discount::AmountOff(money("amount_off", amount, 1)?))
        }
        Some("percent_off") => {
            if amount_off.is_some() {
                return Err(ApiError::validation(
                    "amount_off",
                    "only with kind amount_off",
                ));
            }
            let bp = percent_off_bp.ok_or_else(|| {
                ApiError::validation("percent_off_bp", "is required with kind percent_off")
            })?;
            if !(1..=FULL_BP).contains(&bp) {
                return Err(ApiError::validation(
                    "percent_off_bp",
                    "must be between 1 and 10000 basis points (10000 = 100%)",
                ));
            }
            Ok(Discount::PercentOff(bp))
        }
        _ => Err(ApiError::validation(
            "kind",
            "must be amount_off or percent_off",
        )),
    }
}

/// How long a template's coupons are valid: `valid_days` from the claim, or the window
/// `valid_from` to `valid_to` (instants or dates in `zone`); exactly one of the two forms.
fn parse_validity(
    valid_days: Option<i64>,
    valid_from: Option<String>,
    valid_to: Option<String>,
    zone: &TimeZone,
) -> Result<Validity, ApiError> {
    match (valid_days, valid_from, valid_to) {
        (Some(days), None, None) => {
            if !(1..=MAX_VALID_DAYS).contains(&days) {
                return Err(ApiError::validation(
                    "valid_days",
                    format!("must be between 1 and {MAX_VALID_DAYS}"),
                ));
            }
            Ok(Validity::Days(days))
        }
        (None, Some(from), Some(to)) => {
            let from = to_micros(instant_field("valid_from", from.trim(), zone)?);
            let to = to_micros(instant_field("valid_to", to.trim(), zone)?);
            if to <= from {
                return Err(ApiError::validation("valid_to", "must be after valid_from"));
            }
            Ok(Validity::Window { from, to })
        }
        (None, Some(_), None) => Err(ApiError::validation(
            "valid_to",
            "is required with valid_from",
        )),
        (None, None, Some(_)) => Err(ApiError::validation(
            "valid_from",
            "is required with valid_to",
        )),
        (None, None, None) => Err(ApiError::validation(
            "valid_days",
            "give valid_days, or valid_from and valid_to",
        )),
        (Some(_), _, _) => Err(ApiError::validation(
            "valid_days",
            "give valid_days or valid_from and valid_to, not both",
        )),
    }
}

/// A coupon template as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CouponTemplate {
    #[schema(value_type = String)]
    pub id: CouponTemplateId,
    pub name: String,
    /// `amount_off` or `percent_off`.
    pub kind: String,
    pub amount_off: Option<i64>,
    pub percent_off_bp: Option<i64>,
    pub max_discount: Option<i64>,
    pub min_spend: i64,
    pub total_stock: i64,
    /// Coupons issued so far.
    pub issued: i64,
    /// Coupons still available.
    pub remaining: i64,
    pub per_member_limit: i64,
    pub valid_days: Option<i64>,
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub created_at: String,
}

impl CouponTemplate {
    /// The discount rule, rebuilt from the stored columns.
    pub fn discount(&self) -> Discount {
        match (self.amount_off, self.percent_off_bp) {
            (Some(amount), _) => Discount::AmountOff(amount),
            (None, Some(bp)) => Discount::PercentOff(bp),
            (None, None) => Discount::AmountOff(0),
        }
    }
}

/// A coupon as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Coupon {
    #[schema(value_type = String)]
    pub id: CouponId,
    #[schema(value_type = String)]
    pub template_id: CouponTemplateId,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    /// `active`, `redeemed` or `expired`.
    pub status: CouponStatus,
    /// Why it was issued: `claim`, or the granting domain's reason (`birthday`, `referral`…).
    pub reason: String,
    /// RFC 3339; inclusive.
    pub valid_from: String,
    /// RFC 3339; exclusive.
    pub valid_to: String,
    pub claimed_at: String,
    pub redeemed_at: Option<String>,
    pub order_ref: Option<String>,
    pub order_amount: Option<i64>,
    pub discount: Option<i64>,
}

/// `POST /v1/coupon-templates/{id}/claim`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub member_id: String,
}

/// `POST /v1/coupons/{id}/redeem`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The merchant's order reference.
    pub order_ref: String,
    /// Order amount in fen before the discount.
    pub order_amount: i64,
}

/// `POST /v1/coupons/{id}/unredeem`; the body is optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnredeemRequest {
    /// When given, it must be the order the coupon was redeemed on.
    pub order_ref: Option<String>,
}

/// The answer to a redemption.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Redemption {
    /// Fen taken off the order.
    pub discount: i64,
    pub coupon: Coupon,
}

/// A trimmed, bounded reference (`order_ref`, grant reason).
pub fn reference(field: &str, value: &str) -> Result<String, ApiError> {
    text::required(field, value, MAX_REF_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_off_takes_the_amount_but_never_more_than_the_order() {
        let rule = Discount::AmountOff(500);
        assert_eq!(discount_for(rule, None, 0, 10_000), Some(500));
        assert_eq!(discount_for(rule, None, 0, 300), Some(300));
        assert_eq!(discount_for(rule, Some(200), 0, 10_000), Some(200));
    }

    #[test]
    fn percent_off_floors_and_caps() {
        let rule = Discount::PercentOff(1_500); // 15%
        assert_eq!(discount_for(rule, None, 0, 999), Some(149), "149.85 floors");
        assert_eq!(discount_for(rule, Some(1_000), 0, 100_000), Some(1_000));
        assert_eq!(discount_for(rule, Some(1_000), 0, 6_000), Some(900));
        let free = Discount::PercentOff(FULL_BP);
        assert_eq!(discount_for(free, None, 0, 1_234), Some(1_234));
        assert_eq!(
            discount_for(free, None, 0, MAX_MONEY),
            Some(MAX_MONEY),
            "no overflow"
        );
    }

    #[test]
    fn min_spend_is_inclusive() {
        let rule = Discount::AmountOff(1_000);
        assert_eq!(discount_for(rule, None, 5_000, 4_999), None);
        assert_eq!(discount_for(rule, None, 5_000, 5_000), Some(1_000));
    }

    #[test]
    fn windows_are_half_open() {
        assert_eq!(window_position(10, 20, 9), WindowPosition::NotYetValid);
        assert_eq!(window_position(10, 20, 10), WindowPosition::Valid);
        assert_eq!(window_position(10, 20, 19), WindowPosition::Valid);
        assert_eq!(window_position(10, 20, 20), WindowPosition::Expired);
        use CouponStatus::{Active, Expired, Redeemed};
        assert_eq!(effective_status(Active, 20, 20), Expired);
        assert_eq!(effective_status(Active, 20, 19), Active);
        assert_eq!(effective_status(Redeemed, 20, 30), Redeemed);
        assert_eq!(effective_status(Expired, 20, 10), Expired);
    }

    #[test]
    fn relative_validity_counts_days_from_the_claim() {
        let day = 86_400_000_000;
        assert_eq!(coupon_window(Validity::Days(7), 5), (5, 5 + 7 * day));
        assert_eq!(
            coupon_window(Validity::Window { from: 1, to: 2 }, 5),
            (1, 2)
        );
    }

    fn valid() -> CreateTemplate {
        CreateTemplate {
            name: Some("满100减10".into()),
            kind: Some("amount_off".into()),
            amount_off: Some(1_000),
            total_stock: Some(10),
            valid_days: Some(7),
            ..Default::default()
        }
    }

    fn field_of(request: CreateTemplate) -> String {
        let error = NewTemplate::from_request(request, &TimeZone::UTC).expect_err("invalid");
        error.body()["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn templates_are_validated_field_by_field() {
        let template = NewTemplate::from_request(valid(), &TimeZone::UTC).unwrap();
        assert_eq!(template.per_member_limit, 1);
        assert_eq!(template.min_spend, 0);
        let cases: Vec<(CreateTemplate, &str)> = vec![
            (
                CreateTemplate {
                    name: None,
                    ..valid()
                },
                "name",
            ),
            (
                CreateTemplate {
                    kind: Some("bogo".into()),
                    ..valid()
                },
                "kind",
            ),
            (
                CreateTemplate {
                    amount_off: None,
                    ..valid()
                },
                "amount_off",
            ),
            (
                CreateTemplate {
                    percent_off_bp: Some(100),
                    ..valid()
                },
                "percent_off_bp",
            ),
            (
                CreateTemplate {
                    kind: Some("percent_off".into()),
                    ..valid()
                },
                "amount_off",
            ),
            (
                CreateTemplate {
                    kind: Some("percent_off".into()),
                    amount_off: None,
                    percent_off_bp: Some(10_001),
                    ..valid()
                },
                "percent_off_bp",
            ),
            (
                CreateTemplate {
                    total_stock: Some(0),
                    ..valid()
                },
                "total_stock",
            ),
            (
                CreateTemplate {
                    total_stock: None,
                    ..valid()
                },
                "total_stock",
            ),
            (
                CreateTemplate {
                    per_member_limit: Some(0),
                    ..valid()
                },
                "per_member_limit",
            ),
            (
                CreateTemplate {
                    min_spend: Some(-1),
                    ..valid()
                },
                "min_spend",
            ),
            (
                CreateTemplate {
                    valid_days: None,
                    ..valid()
                },
                "valid_days",
            ),
            (
                CreateTemplate {
                    valid_from: Some("2026-01-01".into()),
                    ..valid()
                },
                "valid_days",
            ),
            (
                CreateTemplate {
                    valid_days: None,
                    valid_from: Some("2026-02-01".into()),
                    valid_to: Some("2026-01-01".into()),
                    ..valid()
                },
                "valid_to",
            ),
            (
                CreateTemplate {
                    valid_days: None,
                    valid_from: Some("soon".into()),
                    valid_to: Some("2026-01-01".into()),
                    ..valid()
                },
                "valid_from",
            ),
        ];
        for (request, field) in cases {
            assert_eq!(field_of(request), field);
        }
    }
}
