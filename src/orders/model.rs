//! Order types, states and the money rules, pure: pricing a basket and splitting a refund.
//!
//! **Pricing order** (each step works on what the previous one left):
//! 1. Each line's unit price: the member-day price when today is member day and the product has
//!    one; otherwise the product's member price when set; otherwise its list price. A special
//!    price not below the list price (possible only when list was lowered after it was set) is
//!    ignored, so nobody pays more than list.
//! 2. Tier discount: the member's tier `discount_bp` off the lines still at list price (member
//!    and member-day prices already are member benefits and do not stack), rounded down.
//! 3. Coupon: the template's discount on what is left (its `min_spend` is checked there).
//! 4. Points: `points_to_burn` pay part of what is left, in whole burn steps, at most the
//!    tenant's burn cap share and the member's available points.
//! 5. `total` is what remains to pay.
//!
//! **Refund arithmetic**: refunds are money back out of `total`, partial or full. Cumulative
//! shares keep sums exact: after refunds totalling `R` of `T`, the member has had
//! `floor(points_burned × R / T)` burnt points back (all of them once `R = T`), and holds growth
//! and earned points for `T − R` only.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::common::state::state_enum;
use crate::membership::coupons::model::{discount_for, Discount};

state_enum! {
    /// Where an order is in its life: `pending_payment` → `paid` → `fulfilled` → `completed`,
    /// or `cancelled` / `expired` (never paid) / `refunded` (in full).
    pub enum OrderStatus {
        /// Placed, units held, waiting for payment until its deadline.
        PendingPayment = "pending_payment",
        Paid = "paid",
        /// Shipped or picked up.
        Fulfilled = "fulfilled",
        /// Received.
        Completed = "completed",
        /// Closed unpaid by request.
        Cancelled = "cancelled",
        /// Closed unpaid at its payment deadline.
        Expired = "expired",
        /// Refunded in full.
        Refunded = "refunded",
    }
}

impl OrderStatus {
    /// The order holds its units (stock or campaign units) and counts toward per-member
    /// limits: unpaid, paid, fulfilled or completed.
    pub fn holds_units(self) -> bool {
        matches!(
            self,
            OrderStatus::PendingPayment
                | OrderStatus::Paid
                | OrderStatus::Fulfilled
                | OrderStatus::Completed
        )
    }

    /// Money was taken and not all of it given back: paid, fulfilled or completed.
    pub fn is_refundable(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Completed
        )
    }
}

/// The states of [`OrderStatus::holds_units`] as an SQL list, for `status IN …` (a literal, so
/// that the planner sees it; a unit test keeps it equal to the rule).
pub const HOLDING_STATUSES: &str = "('pending_payment', 'paid', 'fulfilled', 'completed')";

/// Most lines in one order; most units of one line.
pub const MAX_LINES: usize = 100;
pub const MAX_QTY: i64 = 10_000;
/// Default and largest payment timeout.
pub const DEFAULT_PAYMENT_TIMEOUT_SECS: i64 = 30 * 60;
pub const MAX_PAYMENT_TIMEOUT_SECS: i64 = 7 * 24 * 3600;
/// Largest order total accepted for an external order (fen).
pub const MAX_MONEY: i64 = 100_000_000_000;

/// One line of an order as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub qty: i64,
    /// Fen per unit after step 1 (member-day / member / list price).
    pub unit_price: i64,
    /// `list`, `member`, `member_day`, `flash_sale` or `group_buy`.
    pub price_kind: String,
    pub line_total: i64,
}

/// How the total came about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pricing {
    /// Sum of lines at their unit prices.
    pub subtotal: i64,
    pub tier: Option<String>,
    pub tier_discount: i64,
    pub coupon_discount: i64,
    pub points_burned: i64,
    /// What the burnt points paid (fen).
    pub points_value: i64,
    pub member_day: bool,
    pub total: i64,
}

/// A product as pricing sees it.
#[derive(Debug, Clone)]
pub struct PriceInput {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub qty: i64,
    pub list_price: i64,
    pub member_price: Option<i64>,
    /// Set when today is member day and the product has a member-day price.
    pub member_day_price: Option<i64>,
}

/// A coupon's terms.
#[derive(Debug, Clone, Copy)]
pub struct CouponTerms {
    pub discount: Discount,
    pub max_discount: Option<i64>,
    pub min_spend: i64,
}

/// The points rule and what the member holds.
#[derive(Debug, Clone, Copy)]
pub struct BurnTerms {
    pub points_to_burn: i64,
    pub burn_points_per_yuan: i64,
    pub burn_cap_bp: i64,
    pub available_points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// The coupon's minimum spend is not met by what is left after the tier discount.
    MinSpendNotMet {
        min_spend: i64,
    },
    /// More points than allowed (cap, balance) or not whole burn steps.
    PointsNotAllowed {
        max_points: i64,
        reason: String,
    },
    Overflow,
}

/// Lines at step-1 prices.
pub fn price_lines(inputs: &[PriceInput]) -> Result<Vec<OrderLine>, PricingError> {
    inputs
        .iter()
        .map(|input| {
            // A special price is only a price when it is below list (`common::price`): one set
            // before the list price was lowered to it or below falls back to list, where the
            // tier discount applies.
            let (unit_price, kind) = match (input.member_day_price, input.member_price) {
                (Some(price), _) if price < input.list_price => (price, "member_day"),
                (_, Some(price)) if price < input.list_price => (price, "member"),
                _ => (input.list_price, "list"),
            };
            Ok(OrderLine {
                product_id: input.product_id.clone(),
                sku: input.sku.clone(),
                name: input.name.clone(),
                qty: input.qty,
                unit_price,
                price_kind: kind.to_owned(),
                line_total: unit_price
                    .checked_mul(input.qty)
                    .ok_or(PricingError::Overflow)?,
            })
        })
        .collect()
}

/// Price a basket (steps 1–5 of the module doc).
pub fn price(
    inputs: &[PriceInput],
    tier: Option<(&str, i64)>,
    coupon: Option<CouponTerms>,
    burn: Option<BurnTerms>,
    member_day: bool,
) -> Result<(Vec<OrderLine>, Pricing), PricingError> {
    use crate::membership::rules::points as points_rules;
    let lines = price_lines(inputs)?;
    let subtotal = lines
        .iter()
        .try_fold(0i64, |sum, line| sum.checked_add(line.line_total))
        .ok_or(PricingError::Overflow)?;
    let at_list: i64 = lines
        .iter()
        .filter(|line| line.price_kind == "list")
        .map(|line| line.line_total)
        .sum();
    let tier_discount = match tier {
        Some((_, bp)) if bp > 0 => {
            i64::try_from(i128::from(at_list) * i128::from(bp) / 10_000).unwrap_or(0)
        }
        _ => 0,
    };
    let after_tier = subtotal - tier_discount;
    let coupon_discount = match coupon {
        None => 0,
        Some(terms) => discount_for(
            terms.discount,
            terms.max_discount,
            terms.min_spend,
            after_tier,
        )
        .ok_or(PricingError::MinSpendNotMet {
            min_spend: terms.min_spend,
        })?,
    };
    let after_coupon = after_tier - coupon_discount;
    let (points_burned, points_value) = match burn {
        None => (0, 0),
        Some(terms) if terms.points_to_burn == 0 => (0, 0),
        Some(terms) => {
            let max_points = points_rules::max_burnable(
                after_coupon,
                terms.burn_points_per_yuan,
                terms.burn_cap_bp,
                terms.available_points,
            )
            .map_err(|e| PricingError::PointsNotAllowed {
                max_points: 0,
                reason: e.to_string(),
            })?;
            if terms.points_to_burn > max_points {
                return Err(PricingError::PointsNotAllowed {
                    max_points,
                    reason: format!("at most {max_points} points may pay for this order"),
                });
            }
            let value =
                points_rules::burn_value_fen(terms.points_to_burn, terms.burn_points_per_yuan)
                    .map_err(|e| PricingError::PointsNotAllowed {
                        max_points,
                        reason: e.to_string(),
                    })?;
            (terms.points_to_burn, value)
        }
    };
    let total = after_coupon - points_value;
    Ok((
        lines,
        Pricing {
            subtotal,
            tier: tier.map(|(name, _)| name.to_owned()),
            tier_discount,
            coupon_discount,
            points_burned,
            points_value,
            member_day,
            total,
        },
    ))
}

/// What one refund does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundPlan {
    /// Money back (fen).
    pub amount: i64,
    /// Refunded in all after this one.
    pub refunded_after: i64,
    /// Nothing of the order remains.
    pub full: bool,
    /// Burnt points given back by this refund.
    pub points_back: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundError {
    NothingToRefund,
    TooMuch { refundable: i64 },
}

/// Plan a refund of `amount` (all that remains when `None`) of an order of `total` of which
/// `refunded` was refunded before and `points_returned` of `points_burned` given back.
pub fn plan_refund(
    total: i64,
    refunded: i64,
    amount: Option<i64>,
    points_burned: i64,
    points_returned: i64,
) -> Result<RefundPlan, RefundError> {
    let refundable = total - refunded;
    let fully_refunded_before = refunded >= total && points_returned >= points_burned;
    if fully_refunded_before && !(total == 0 && refunded == 0 && points_returned == 0) {
        return Err(RefundError::NothingToRefund);
    }
    let amount = match amount {
        None => refundable,
        Some(a) if a >= 1 && a <= refundable => a,
        Some(_) => return Err(RefundError::TooMuch { refundable }),
    };
    let refunded_after = refunded + amount;
    let full = refunded_after == total;
    let returned_after = if full {
        points_burned
    } else {
        i64::try_from(i128::from(points_burned) * i128::from(refunded_after) / i128::from(total))
            .unwrap_or(points_burned)
    };
    Ok(RefundPlan {
        amount,
        refunded_after,
        full,
        points_back: (returned_after - points_returned).max(0),
    })
}

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub member_id: String,
    /// `checkout`, `flash_sale`, `group_buy` or `external`.
    pub source: String,
    /// pending_payment → paid → fulfilled → completed, or cancelled / expired / refunded.
    pub status: OrderStatus,
    #[schema(value_type = Vec<Object>)]
    pub items: Value,
    pub qty: i64,
    pub subtotal: i64,
    #[schema(value_type = Option<Object>)]
    pub pricing: Option<Value>,
    pub total: i64,
    pub currency: String,
    pub coupon_id: Option<String>,
    pub points_burned: i64,
    pub refunded_amount: i64,
    pub payment_method: Option<String>,
    pub payment_reference: Option<String>,
    pub external_reference: Option<String>,
    /// `flash_sale` or `group_buy` with its id.
    pub campaign_kind: Option<String>,
    pub campaign_id: Option<String>,
    pub team_id: Option<String>,
    /// Payment deadline of an unpaid order.
    pub expires_at: Option<String>,
    pub ordered_at: String,
    pub paid_at: Option<String>,
    pub fulfilled_at: Option<String>,
    pub completed_at: Option<String>,
    /// When it was cancelled, expired or fully refunded.
    pub closed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Wave orders (community group buying): the leader, pickup code and pickup status.
    /// Shown by `GET /v1/orders/{id}`; absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup: Option<crate::common::hooks::OrderPickup>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, qty: i64, list: i64, member: Option<i64>, day: Option<i64>) -> PriceInput {
        PriceInput {
            product_id: id.into(),
            sku: id.into(),
            name: id.into(),
            qty,
            list_price: list,
            member_price: member,
            member_day_price: day,
        }
    }

    #[test]
    fn order_states_serialise_as_their_stored_strings() {
        for status in OrderStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(*status));
        }
        assert!("PAID".parse::<OrderStatus>().is_err());
        let holding: Vec<String> = OrderStatus::ALL
            .iter()
            .filter(|s| s.holds_units())
            .map(|s| format!("'{s}'"))
            .collect();
        assert_eq!(HOLDING_STATUSES, format!("({})", holding.join(", ")));
    }

    #[test]
    fn unit_prices_prefer_member_day_then_member_then_list() {
        let lines = price_lines(&[
            line("a", 2, 1000, Some(900), Some(800)),
            line("b", 1, 1000, Some(900), None),
            line("c", 3, 1000, None, None),
        ])
        .unwrap();
        let prices: Vec<_> = lines
            .iter()
            .map(|l| (l.unit_price, l.price_kind.as_str(), l.line_total))
            .collect();
        assert_eq!(
            prices,
            vec![
                (800, "member_day", 1600),
                (900, "member", 900),
                (1000, "list", 3000)
            ]
        );
    }

    #[test]
    fn a_special_price_not_below_list_falls_back_to_list() {
        // The list price was lowered to 800 after a member price of 900 and a member-day price
        // of 850 were set: nobody pays above list, and the line counts as a list line.
        let lines = price_lines(&[
            line("a", 1, 800, Some(900), Some(850)),
            line("b", 1, 800, Some(800), None),
            line("c", 1, 800, Some(700), Some(900)),
        ])
        .unwrap();
        let prices: Vec<_> = lines
            .iter()
            .map(|l| (l.unit_price, l.price_kind.as_str()))
            .collect();
        assert_eq!(prices, vec![(800, "list"), (800, "list"), (700, "member")]);
    }

    #[test]
    fn steps_apply_in_the_documented_order() {
        // 2 × 1000 at list + 1 × 900 member price = 2900; 5 % tier off the list lines only
        // (100); coupon 300 off over 2000; 100 points = 1 yuan, burn 500 points = 500 fen.
        let (lines, pricing) = price(
            &[
                line("a", 2, 1000, None, None),
                line("b", 1, 1000, Some(900), None),
            ],
            Some(("gold", 500)),
            Some(CouponTerms {
                discount: Discount::AmountOff(300),
                max_discount: None,
                min_spend: 2000,
            }),
            Some(BurnTerms {
                points_to_burn: 500,
                burn_points_per_yuan: 100,
                burn_cap_bp: 5000,
                available_points: 10_000,
            }),
            false,
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(pricing.subtotal, 2900);
        assert_eq!(pricing.tier_discount, 100);
        assert_eq!(pricing.coupon_discount, 300);
        assert_eq!(pricing.points_value, 500);
        assert_eq!(pricing.total, 2900 - 100 - 300 - 500);
    }

    #[test]
    fn tier_discount_rounds_down_and_coupon_minimum_sees_the_discounted_amount() {
        let (_, pricing) = price(
            &[line("a", 1, 999, None, None)],
            Some(("silver", 500)),
            None,
            None,
            false,
        )
        .unwrap();
        // 5 % of 999 = 49.95 → 49 off.
        assert_eq!(pricing.tier_discount, 49);
        assert_eq!(pricing.total, 950);
        let error = price(
            &[line("a", 1, 1000, None, None)],
            Some(("silver", 500)),
            Some(CouponTerms {
                discount: Discount::AmountOff(100),
                max_discount: None,
                min_spend: 1000,
            }),
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(error, PricingError::MinSpendNotMet { min_spend: 1000 });
    }

    #[test]
    fn points_are_capped_and_whole_steps_only() {
        let burn = |points| BurnTerms {
            points_to_burn: points,
            burn_points_per_yuan: 100,
            burn_cap_bp: 5000,
            available_points: 100_000,
        };
        let basket = [line("a", 1, 1000, None, None)];
        // Half of 1000 fen = 500 fen = 500 points at most.
        assert!(price(&basket, None, None, Some(burn(500)), false).is_ok());
        match price(&basket, None, None, Some(burn(600)), false) {
            Err(PricingError::PointsNotAllowed { max_points, .. }) => assert_eq!(max_points, 500),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // 3 points per yuan: a step is 3 points = 1 yuan... anything not a whole step fails.
        let odd = BurnTerms {
            points_to_burn: 4,
            burn_points_per_yuan: 3,
            burn_cap_bp: 10_000,
            available_points: 100,
        };
        assert!(price(&basket, None, None, Some(odd), false).is_err());
    }

    #[test]
    fn partial_refunds_add_up_to_the_full_refund() {
        // 1000 fen paid, 300 points burnt; refunds of 333, 333, 334.
        let first = plan_refund(1000, 0, Some(333), 300, 0).unwrap();
        assert_eq!(first.points_back, 99);
        assert!(!first.full);
        let second = plan_refund(1000, 333, Some(333), 300, 99).unwrap();
        assert_eq!(second.points_back, 199 - 99);
        let third = plan_refund(1000, 666, None, 300, 199).unwrap();
        assert_eq!(third.amount, 334);
        assert!(third.full);
        assert_eq!(99 + 100 + third.points_back, 300);
        assert_eq!(
            plan_refund(1000, 1000, None, 300, 300),
            Err(RefundError::NothingToRefund)
        );
        assert_eq!(
            plan_refund(1000, 400, Some(601), 0, 0),
            Err(RefundError::TooMuch { refundable: 600 })
        );
        assert_eq!(
            plan_refund(1000, 0, Some(0), 0, 0),
            Err(RefundError::TooMuch { refundable: 1000 })
        );
    }

    #[test]
    fn an_order_paid_wholly_with_points_can_be_refunded_once() {
        let plan = plan_refund(0, 0, None, 500, 0).unwrap();
        assert!(plan.full);
        assert_eq!(plan.amount, 0);
        assert_eq!(plan.points_back, 500);
        assert_eq!(
            plan_refund(0, 0, None, 500, 500),
            Err(RefundError::NothingToRefund)
        );
    }
}
