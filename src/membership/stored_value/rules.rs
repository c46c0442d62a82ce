//! The pure rules of stored value: how a spend is split between bonus and principal, and how
//! a refund of a spend is split back. No I/O; unit-tested here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which part of the wallet a spend draws first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpendPolicy {
    /// Draw both parts in the ratio of the current balances (the default).
    #[default]
    Proportional,
    /// Draw the bonus until it is gone, then principal.
    BonusFirst,
    /// Draw principal until it is gone, then bonus.
    PrincipalFirst,
}

impl SpendPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SpendPolicy::Proportional => "proportional",
            SpendPolicy::BonusFirst => "bonus_first",
            SpendPolicy::PrincipalFirst => "principal_first",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            SpendPolicy::Proportional,
            SpendPolicy::BonusFirst,
            SpendPolicy::PrincipalFirst,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

/// How much of an amount comes from (or goes back to) each part of the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub principal: i64,
    pub bonus: i64,
}

/// `floor(amount × part / whole)` without overflow; 0 when `whole` is 0. Inputs are
/// non-negative and `part ≤ whole`, so the result fits in an i64.
fn share(amount: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let value = i128::from(amount) * i128::from(part) / i128::from(whole);
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Split a spend of `amount` over the available `principal` and `bonus` by `policy`; `None`
/// when the amount is not positive or the two together do not cover it.
///
/// Proportional rounding: the bonus part is `floor(amount × bonus / (principal + bonus))`
/// and principal takes the rest, so rounding always favours spending bonus a little later
/// and neither part can exceed its balance (the principal part is
/// `ceil(amount × principal / total) ≤ principal` because `amount ≤ total`).
pub fn split_spend(policy: SpendPolicy, amount: i64, principal: i64, bonus: i64) -> Option<Split> {
    let principal = principal.max(0);
    let bonus = bonus.max(0);
    let total = principal.checked_add(bonus)?;
    if amount <= 0 || amount > total {
        return None;
    }
    let split = match policy {
        SpendPolicy::Proportional => {
            let from_bonus = share(amount, bonus, total);
            Split {
                principal: amount - from_bonus,
                bonus: from_bonus,
            }
        }
        SpendPolicy::BonusFirst => {
            let from_bonus = amount.min(bonus);
            Split {
                principal: amount - from_bonus,
                bonus: from_bonus,
            }
        }
        SpendPolicy::PrincipalFirst => {
            let from_principal = amount.min(principal);
            Split {
                principal: from_principal,
                bonus: amount - from_principal,
            }
        }
    };
    Some(split)
}

/// The part of a spend that a refund returns to each side of the wallet.
///
/// A spend refund goes back in the spend's own ratio, computed on the running total so
/// that partial refunds add up exactly: after refunds totalling `R` of a spend of `amount`
/// (of which `spent.bonus` was bonus), the bonus returned so far is
/// `floor(R × spent.bonus / amount)`. This refund returns the difference from what the
/// earlier refunds (`refunded`) already returned, and principal takes the rest. A full
/// refund therefore returns exactly what the spend drew from each part.
pub fn split_spend_refund(amount: i64, spent: Split, refunded: Split, refund: i64) -> Split {
    let refunded_total = refunded.principal + refunded.bonus;
    let cumulative = refunded_total + refund;
    let bonus_so_far = share(cumulative, spent.bonus, amount).min(spent.bonus);
    let bonus = (bonus_so_far - refunded.bonus).clamp(0, refund);
    Split {
        principal: refund - bonus,
        bonus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_floors_the_bonus_part() {
        // 100 principal + 20 bonus; spending 50 draws floor(50 × 20 / 120) = 8 bonus.
        assert_eq!(
            split_spend(SpendPolicy::Proportional, 50, 100, 20),
            Some(Split {
                principal: 42,
                bonus: 8
            })
        );
        // Everything: both parts exactly.
        assert_eq!(
            split_spend(SpendPolicy::Proportional, 120, 100, 20),
            Some(Split {
                principal: 100,
                bonus: 20
            })
        );
        // One fen with a small bonus share comes from principal.
        assert_eq!(
            split_spend(SpendPolicy::Proportional, 1, 100, 20),
            Some(Split {
                principal: 1,
                bonus: 0
            })
        );
        // Only bonus left.
        assert_eq!(
            split_spend(SpendPolicy::Proportional, 5, 0, 20),
            Some(Split {
                principal: 0,
                bonus: 5
            })
        );
    }

    #[test]
    fn ordered_policies_drain_one_part_first() {
        assert_eq!(
            split_spend(SpendPolicy::BonusFirst, 50, 100, 20),
            Some(Split {
                principal: 30,
                bonus: 20
            })
        );
        assert_eq!(
            split_spend(SpendPolicy::BonusFirst, 15, 100, 20),
            Some(Split {
                principal: 0,
                bonus: 15
            })
        );
        assert_eq!(
            split_spend(SpendPolicy::PrincipalFirst, 110, 100, 20),
            Some(Split {
                principal: 100,
                bonus: 10
            })
        );
    }

    #[test]
    fn spends_beyond_the_balance_or_not_positive_are_refused() {
        for policy in [
            SpendPolicy::Proportional,
            SpendPolicy::BonusFirst,
            SpendPolicy::PrincipalFirst,
        ] {
            assert_eq!(split_spend(policy, 121, 100, 20), None);
            assert_eq!(split_spend(policy, 0, 100, 20), None);
            assert_eq!(split_spend(policy, -1, 100, 20), None);
            assert_eq!(split_spend(policy, 1, 0, 0), None);
        }
    }

    #[test]
    fn splits_never_exceed_either_part() {
        for principal in 0..40 {
            for bonus in 0..40 {
                for amount in 1..=(principal + bonus) {
                    for policy in [
                        SpendPolicy::Proportional,
                        SpendPolicy::BonusFirst,
                        SpendPolicy::PrincipalFirst,
                    ] {
                        let s = split_spend(policy, amount, principal, bonus).expect("covered");
                        assert_eq!(s.principal + s.bonus, amount);
                        assert!((0..=principal).contains(&s.principal));
                        assert!((0..=bonus).contains(&s.bonus));
                    }
                }
            }
        }
    }

    #[test]
    fn partial_spend_refunds_add_up_to_the_spend() {
        let spent = Split {
            principal: 42,
            bonus: 8,
        };
        let mut refunded = Split::default();
        for refund in [7, 13, 1, 29] {
            let part = split_spend_refund(50, spent, refunded, refund);
            assert_eq!(part.principal + part.bonus, refund);
            assert!(part.principal >= 0 && part.bonus >= 0);
            refunded.principal += part.principal;
            refunded.bonus += part.bonus;
        }
        assert_eq!(refunded, spent);
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in [
            SpendPolicy::Proportional,
            SpendPolicy::BonusFirst,
            SpendPolicy::PrincipalFirst,
        ] {
            assert_eq!(SpendPolicy::parse(policy.as_str()), Some(policy));
        }
        assert_eq!(SpendPolicy::parse("random"), None);
    }
}
