//! The money rules of distribution, pure: the rate an order pays each level, what a commission
//! owes after the order's refunds, what a refund after release takes back and leaves as debt,
//! how debt is netted against a released commission, and the withdrawal fee.
//!
//! Every amount is integer fen and every rate a rational in basis points, computed in `i128`
//! and rounded down once, at the end: what a level owes for an order is always
//! `floor(rate × base × (total − refunded) / total)`, recomputed from the order's figures after
//! each refund rather than reduced step by step, so a sequence of partial refunds can neither
//! drift nor pay a fen twice. With one rate and no wallet bonus (`base == total`) this is
//! exactly `floor(rate × (paid − refunded))`.

/// Most levels the law allows (禁止传销条例: commission on the seller and their direct
/// inviter, never on a deeper chain).
pub const MAX_LEVELS: i64 = 2;
/// Basis points in one.
pub const BP: i64 = 10_000;

/// A commission rate as a rational: `num / den`, `0 <= num <= den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub num: i64,
    pub den: i64,
}

impl Rate {
    /// A flat rate in basis points.
    pub fn bp(bp: i64) -> Rate {
        Rate { num: bp, den: BP }
    }
}

/// One order line for the blended rate: its total (fen) and its product's rate (bp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub total: i64,
    pub rate_bp: i64,
}

/// The order's rate for one level: each line's rate weighted by its share of the lines' total
/// (so coupons and points, which lower the paid amount of the whole order, lower every line in
/// proportion). Without lines (an ingested order) or with lines worth nothing, the default.
/// `None` when the figures overflow `i64` (the caller refuses the order's commission rather
/// than wrap).
pub fn blended_rate(lines: &[Line], default_bp: i64) -> Option<Rate> {
    let mut num: i128 = 0;
    let mut sum: i128 = 0;
    for line in lines {
        let total = i128::from(line.total.max(0));
        num += total * i128::from(line.rate_bp);
        sum += total;
    }
    if sum == 0 {
        return Some(Rate::bp(default_bp));
    }
    let mut den = sum * i128::from(BP);
    // Keep the rational small so that `owed` stays within exact `i128` arithmetic.
    let divisor = gcd(num, den);
    if divisor > 1 {
        num /= divisor;
        den /= divisor;
    }
    Some(Rate {
        num: i64::try_from(num).ok()?,
        den: i64::try_from(den).ok()?,
    })
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

/// What a level is owed for an order of `total` fen of which `base` earns commission (the
/// rest was paid with wallet bonus money), after `refunded` fen of refunds:
/// `floor(rate × base × (total − refunded) / total)`, never negative.
pub fn owed(rate: Rate, base: i64, total: i64, refunded: i64) -> i64 {
    if total <= 0 || base <= 0 || rate.den <= 0 || rate.num <= 0 {
        return 0;
    }
    let remaining = i128::from((total - refunded.max(0)).max(0));
    let base = i128::from(base.min(total));
    let (num, den) = (i128::from(rate.num), i128::from(rate.den));
    let total = i128::from(total);
    let value = match num.checked_mul(base).and_then(|v| v.checked_mul(remaining)) {
        Some(product) => product / (den * total),
        // Beyond 2^127 (amounts no shop reaches): round down twice, which never pays more
        // than the exact figure.
        None => (num * base / den) * remaining / total,
    };
    // `value <= rate × base <= base`, which fits in i64.
    i64::try_from(value).unwrap_or(0).max(0)
}

/// A refund after release: of `reduction` fen the commission no longer owes, what is taken
/// back from the promoter's `available` balance now, and what is left as debt.
pub fn claw_back(reduction: i64, available: i64) -> (i64, i64) {
    let reduction = reduction.max(0);
    let taken = reduction.min(available.max(0));
    (taken, reduction - taken)
}

/// A commission of `released` fen was just released to a promoter who owes `debt`: what of it
/// repays the debt at once.
pub fn repay(released: i64, debt: i64) -> i64 {
    released.max(0).min(debt.max(0))
}

/// The fee of a withdrawal of `amount` fen at `fee_bp`, rounded down (in the promoter's
/// favour). `None` on overflow.
pub fn withdrawal_fee(amount: i64, fee_bp: i64) -> Option<i64> {
    let fee = i128::from(amount) * i128::from(fee_bp) / i128::from(BP);
    i64::try_from(fee).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_flat_rate_rounds_down_in_fen() {
        assert_eq!(owed(Rate::bp(1000), 999, 999, 0), 99);
        assert_eq!(owed(Rate::bp(1000), 1000, 1000, 0), 100);
        assert_eq!(owed(Rate::bp(333), 100, 100, 0), 3);
        assert_eq!(owed(Rate::bp(0), 100, 100, 0), 0);
    }

    #[test]
    fn a_refund_reduces_in_proportion_and_a_full_refund_to_nothing() {
        let rate = Rate::bp(1000);
        assert_eq!(owed(rate, 10_000, 10_000, 2_500), 750);
        assert_eq!(owed(rate, 10_000, 10_000, 10_000), 0);
        // More than the total (not possible through orders) still owes nothing, not less.
        assert_eq!(owed(rate, 10_000, 10_000, 20_000), 0);
    }

    #[test]
    fn wallet_bonus_money_earns_nothing() {
        // 10,000 paid of which 4,000 bonus: 10 % of 6,000.
        assert_eq!(owed(Rate::bp(1000), 6_000, 10_000, 0), 600);
        // Half refunded: half of it.
        assert_eq!(owed(Rate::bp(1000), 6_000, 10_000, 5_000), 300);
    }

    #[test]
    fn lines_blend_their_products_rates() {
        let rate = blended_rate(
            &[
                Line {
                    total: 3_000,
                    rate_bp: 1000,
                },
                Line {
                    total: 1_000,
                    rate_bp: 0,
                },
            ],
            500,
        )
        .unwrap();
        // 3,000 at 10 % + 1,000 at 0 % = 300 of 4,000.
        assert_eq!(owed(rate, 4_000, 4_000, 0), 300);
        // A coupon brought the order to 2,000: every line pays on half.
        assert_eq!(owed(rate, 2_000, 2_000, 0), 150);
        assert_eq!(blended_rate(&[], 500), Some(Rate::bp(500)));
    }

    #[test]
    fn claw_back_takes_what_the_balance_allows_and_the_rest_is_debt() {
        assert_eq!(claw_back(500, 1_000), (500, 0));
        assert_eq!(claw_back(500, 200), (200, 300));
        assert_eq!(claw_back(500, -10), (0, 500));
        assert_eq!(repay(100, 300), 100);
        assert_eq!(repay(500, 300), 300);
        assert_eq!(repay(500, 0), 0);
    }

    #[test]
    fn the_fee_rounds_down() {
        assert_eq!(withdrawal_fee(10_000, 60), Some(60));
        assert_eq!(withdrawal_fee(199, 60), Some(1));
        assert_eq!(withdrawal_fee(100, 0), Some(0));
    }

    /// Refund sequences: partial refunds of random sizes, each at most what remains.
    fn refunds(total: i64) -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(0..=total, 0..8)
    }

    proptest! {
        /// For any sequence of partial refunds, each level is owed exactly
        /// floor(rate × (paid − refunded)) after each, never negative, never rising (so what a
        /// refund takes back is never taken twice), and the reductions add up to exactly what
        /// the first figure was above the last.
        #[test]
        fn owed_is_floor_of_rate_times_what_remains(
            total in 1i64..10_000_000,
            bp in 0i64..=10_000,
            steps in refunds(10_000_000),
        ) {
            let rate = Rate::bp(bp);
            let first = owed(rate, total, total, 0);
            prop_assert_eq!(i128::from(first), i128::from(bp) * i128::from(total) / 10_000);
            let mut refunded = 0i64;
            let mut previous = first;
            let mut taken_back = 0i64;
            for step in steps {
                let step = step.min(total - refunded);
                refunded += step;
                let now = owed(rate, total, total, refunded);
                prop_assert_eq!(
                    i128::from(now),
                    i128::from(bp) * i128::from(total - refunded) / 10_000
                );
                prop_assert!(now >= 0);
                prop_assert!(now <= previous);
                taken_back += previous - now;
                previous = now;
            }
            prop_assert_eq!(taken_back, first - previous);
            if refunded == total {
                prop_assert_eq!(previous, 0);
            }
        }

        /// Blended rates never pay more than the highest line rate, nor less than the lowest.
        #[test]
        fn a_blended_rate_lies_between_its_lines(
            lines in prop::collection::vec((1i64..1_000_000, 0i64..=10_000), 1..6),
            paid in 1i64..10_000_000,
        ) {
            let lines: Vec<Line> = lines
                .into_iter()
                .map(|(total, rate_bp)| Line { total, rate_bp })
                .collect();
            let rate = blended_rate(&lines, 0).unwrap();
            let low = lines.iter().map(|l| l.rate_bp).min().unwrap();
            let high = lines.iter().map(|l| l.rate_bp).max().unwrap();
            let got = owed(rate, paid, paid, 0);
            prop_assert!(got >= owed(Rate::bp(low), paid, paid, 0));
            prop_assert!(got <= owed(Rate::bp(high), paid, paid, 0));
        }

        /// What a refund after release takes back plus the debt it leaves is exactly the
        /// reduction; the balance never goes below zero.
        #[test]
        fn claw_back_conserves_the_reduction(reduction in 0i64..1_000_000, available in -1000i64..1_000_000) {
            let (taken, debt) = claw_back(reduction, available);
            prop_assert_eq!(taken + debt, reduction);
            prop_assert!(taken >= 0 && debt >= 0);
            prop_assert!(taken <= available.max(0));
        }
    }
}
