//! Membership tiers: which tier a member holds, when it changes, and what it
//! unlocks.
//!
//! A tenant configures an ordered list of [`Tier`]s (e.g. 普通会员, 银卡, 金卡,
//! 黑金). Members accumulate *growth* (成长值) from paid orders; the tier
//! follows growth with two asymmetric rules:
//!
//! * **upgrades are immediate**: as soon as growth reaches a higher tier's
//!   `growth_min`, the member gets that tier;
//! * **downgrades only happen at requalification** (保级): once a year, on a
//!   tenant-configured local date, the tier is recomputed and may go down.
//!
//! The service would call [`validate_tiers`] when the tenant saves the tier
//! configuration, [`growth_from_paid`] when an order is paid,
//! [`evaluate_tier`] after every growth change (with
//! `at_requalification = false`) and from the yearly requalification job (with
//! `true`), [`next_requalification`] to schedule that job, and
//! [`may_buy_now`] in the checkout path for early-access launches.
//!
//! Rates are basis points (10_000 = 100 %). Every division rounds down
//! unless a function says otherwise.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::calendar::{self, CalendarError};

/// 100 % in basis points.
pub const BP_ONE: i64 = 10_000;
/// The largest points multiplier a tier may have: 10×.
pub const MAX_POINTS_MULTIPLIER_BP: i64 = 10 * BP_ONE;
/// The longest early access a tier may have: one year.
pub const MAX_EARLY_ACCESS_HOURS: i64 = 366 * 24;

/// One membership tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Display and storage name; unique within a tenant's tier list. Members
    /// store the tier by this name.
    pub name: String,
    /// Growth needed to hold this tier (inclusive).
    pub growth_min: i64,
    /// Share of the price taken off for this tier, in bp: 500 = 5 % off
    /// (九五折). Must be in `0..10_000`; a 100 % discount is not a tier
    /// benefit.
    pub discount_bp: i64,
    /// Points multiplier in bp: 10_000 = 1×, 15_000 = 1.5×. Must be in
    /// `0..=MAX_POINTS_MULTIPLIER_BP`.
    pub points_multiplier_bp: i64,
    /// Whether orders by members of this tier ship free.
    pub free_shipping: bool,
    /// How many hours before a product's public launch members of this tier
    /// may buy it. Must be in `0..=MAX_EARLY_ACCESS_HOURS`.
    pub early_access_hours: i64,
}

/// Why a tier list was rejected. The first problem found is reported, in
/// list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierError {
    /// The list has no tiers: every member must hold some tier.
    Empty,
    /// The tier at `index` has an empty (or all-whitespace) name.
    EmptyName { index: usize },
    /// Two tiers share a name.
    DuplicateName(String),
    /// The first tier must start at growth 0 so that every member has a tier.
    FirstTierNotZero(i64),
    /// `growth_min` does not strictly increase at `index`.
    GrowthNotIncreasing { index: usize },
    /// `discount_bp` outside `0..10_000`.
    DiscountOutOfRange { name: String, value: i64 },
    /// `points_multiplier_bp` outside `0..=MAX_POINTS_MULTIPLIER_BP`.
    MultiplierOutOfRange { name: String, value: i64 },
    /// `early_access_hours` outside `0..=MAX_EARLY_ACCESS_HOURS`.
    EarlyAccessOutOfRange { name: String, value: i64 },
}

impl std::fmt::Display for TierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierError::Empty => write!(f, "tier list is empty"),
            TierError::EmptyName { index } => write!(f, "tier {index} has an empty name"),
            TierError::DuplicateName(n) => write!(f, "duplicate tier name {n:?}"),
            TierError::FirstTierNotZero(g) => {
                write!(f, "first tier must start at growth 0, not {g}")
            }
            TierError::GrowthNotIncreasing { index } => {
                write!(f, "growth_min must strictly increase (tier {index})")
            }
            TierError::DiscountOutOfRange { name, value } => {
                write!(f, "tier {name:?}: discount_bp {value} out of range")
            }
            TierError::MultiplierOutOfRange { name, value } => {
                write!(
                    f,
                    "tier {name:?}: points_multiplier_bp {value} out of range"
                )
            }
            TierError::EarlyAccessOutOfRange { name, value } => {
                write!(f, "tier {name:?}: early_access_hours {value} out of range")
            }
        }
    }
}

impl std::error::Error for TierError {}

/// Checks a tier list as the tenant saves it.
///
/// Rules: at least one tier; names non-empty and unique (compared exactly,
/// after trimming whitespace for the emptiness check only); the first tier's
/// `growth_min` is 0; `growth_min` strictly increases; every bp and hour value
/// is in the range documented on [`Tier`].
///
/// The other functions in this module accept unvalidated lists without
/// panicking, but only give meaningful answers for a list that passes here.
pub fn validate_tiers(tiers: &[Tier]) -> Result<(), TierError> {
    let first = tiers.first().ok_or(TierError::Empty)?;
    if first.growth_min != 0 {
        return Err(TierError::FirstTierNotZero(first.growth_min));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, t) in tiers.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err(TierError::EmptyName { index });
        }
        if !seen.insert(t.name.as_str()) {
            return Err(TierError::DuplicateName(t.name.clone()));
        }
        if index > 0 && t.growth_min <= tiers[index - 1].growth_min {
            return Err(TierError::GrowthNotIncreasing { index });
        }
        if !(0..BP_ONE).contains(&t.discount_bp) {
            return Err(TierError::DiscountOutOfRange {
                name: t.name.clone(),
                value: t.discount_bp,
            });
        }
        if !(0..=MAX_POINTS_MULTIPLIER_BP).contains(&t.points_multiplier_bp) {
            return Err(TierError::MultiplierOutOfRange {
                name: t.name.clone(),
                value: t.points_multiplier_bp,
            });
        }
        if !(0..=MAX_EARLY_ACCESS_HOURS).contains(&t.early_access_hours) {
            return Err(TierError::EarlyAccessOutOfRange {
                name: t.name.clone(),
                value: t.early_access_hours,
            });
        }
    }
    Ok(())
}

/// The tier a member with `growth` qualifies for: the tier with the highest
/// `growth_min` that is `<= growth`.
///
/// Negative growth (only possible through a data error, e.g. refunds
/// reversing more than was earned) is treated as 0, so it lands in the first
/// tier rather than in no tier. Returns `None` only if no tier qualifies,
/// which for a list that passed [`validate_tiers`] means the list is empty.
/// The list order does not matter here.
pub fn tier_for_growth(tiers: &[Tier], growth: i64) -> Option<&Tier> {
    let growth = growth.max(0);
    tiers
        .iter()
        .filter(|t| t.growth_min <= growth)
        .max_by_key(|t| t.growth_min)
}

/// Decides whether a member's tier changes.
///
/// Returns `Some(new_tier_name)` when the stored tier must change and `None`
/// when it stays as it is:
///
/// * no current tier (new member) → `Some(qualified tier)`;
/// * the qualified tier is higher than the current one → `Some` at once
///   (upgrade immediately);
/// * the qualified tier is lower → `Some` only when `at_requalification`,
///   otherwise `None` (the member keeps the tier until the yearly
///   requalification);
/// * the current tier name is not in the list (the tenant deleted or renamed
///   it) → `Some(qualified tier)` regardless of `at_requalification`, because
///   the member cannot keep a tier that no longer exists;
/// * no tier qualifies (empty list) → `None`.
///
/// "Higher" compares `growth_min`, so the list order does not matter.
pub fn evaluate_tier(
    current: Option<&str>,
    growth: i64,
    tiers: &[Tier],
    at_requalification: bool,
) -> Option<String> {
    let target = tier_for_growth(tiers, growth)?;
    let Some(current_name) = current else {
        return Some(target.name.clone());
    };
    let Some(current_tier) = tiers.iter().find(|t| t.name == current_name) else {
        return Some(target.name.clone());
    };
    let change = match target.growth_min.cmp(&current_tier.growth_min) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => at_requalification,
        std::cmp::Ordering::Equal => false,
    };
    change.then(|| target.name.clone())
}

/// Growth earned by paying `paid_fen`, at `growth_per_yuan_bp` growth per
/// yuan in bp (10_000 = 1 growth per yuan, 5_000 = 1 growth per 2 yuan).
///
/// `growth = floor(paid_fen * growth_per_yuan_bp / (100 * 10_000))`: one
/// rounding down at the end, computed in i128 so it cannot overflow, and
/// saturating at `i64::MAX`. Non-positive amounts or rates give 0: refunds
/// must reverse the growth recorded for the original order instead of
/// recomputing it from a negative amount, so partial refunds do not drift by
/// rounding.
pub fn growth_from_paid(paid_fen: i64, growth_per_yuan_bp: i64) -> i64 {
    if paid_fen <= 0 || growth_per_yuan_bp <= 0 {
        return 0;
    }
    let g = i128::from(paid_fen) * i128::from(growth_per_yuan_bp) / (100 * i128::from(BP_ONE));
    i64::try_from(g).unwrap_or(i64::MAX)
}

/// The discount a tier gives on `price_fen`, in fen, rounded down (the member
/// never gets more than the configured share off; the price they pay is
/// therefore rounded up). Non-positive prices or rates give 0.
pub fn discount_fen(price_fen: i64, discount_bp: i64) -> i64 {
    if price_fen <= 0 || discount_bp <= 0 {
        return 0;
    }
    let bp = discount_bp.min(BP_ONE);
    let d = i128::from(price_fen) * i128::from(bp) / i128::from(BP_ONE);
    // d <= price_fen, so it fits in i64.
    i64::try_from(d).unwrap_or(price_fen)
}

/// The yearly local date on which tiers are requalified (e.g. 1 January).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequalificationRule {
    /// `1..=12`.
    pub month: i8,
    /// `1..=31`, valid for the month in a leap year. 29 February means
    /// 28 February in non-leap years.
    pub day: i8,
}

/// The next requalification instant strictly after `now`: local midnight at
/// the start of `rule.month/rule.day` in `tz`.
///
/// "Strictly after" means that if `now` is exactly a requalification
/// instant, the following year's instant is returned; the job that runs at
/// the boundary schedules the next one. 29 February becomes 28 February in
/// non-leap years.
pub fn next_requalification(
    rule: RequalificationRule,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<Timestamp, CalendarError> {
    calendar::validate_month_day(rule.month, rule.day)?;
    let year = calendar::local_date(now, tz).year();
    for y in [Some(year), year.checked_add(1)].into_iter().flatten() {
        let d = calendar::clamped_date(y, rule.month, rule.day)?;
        let at = calendar::start_of_local_day(d, tz)?;
        if at > now {
            return Ok(at);
        }
    }
    Err(CalendarError::OutOfRange)
}

/// Whether a member whose tier has `early_access_hours` may buy a product
/// whose public launch is `launch_at`.
///
/// No launch time means the product is not gated and is on sale. Otherwise
/// the member may buy from `launch_at - early_access_hours` (inclusive).
/// Negative hours are treated as 0; hours too large to subtract from
/// `launch_at` mean the window is already open.
pub fn may_buy_now(launch_at: Option<Timestamp>, early_access_hours: i64, now: Timestamp) -> bool {
    let Some(launch) = launch_at else {
        return true;
    };
    let hours = early_access_hours.max(0);
    let opens = hours
        .checked_mul(3600)
        .map(SignedDuration::from_secs)
        .and_then(|d| launch.checked_sub(d).ok());
    match opens {
        Some(opens) => now >= opens,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(name: &str, growth_min: i64) -> Tier {
        Tier {
            name: name.to_string(),
            growth_min,
            discount_bp: 0,
            points_multiplier_bp: BP_ONE,
            free_shipping: false,
            early_access_hours: 0,
        }
    }

    fn ladder() -> Vec<Tier> {
        vec![
            tier("normal", 0),
            tier("silver", 1_000),
            tier("gold", 5_000),
            tier("black", 20_000),
        ]
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sh() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    #[test]
    fn valid_ladder_passes() {
        assert_eq!(validate_tiers(&ladder()), Ok(()));
    }

    #[test]
    fn validation_errors() {
        assert_eq!(validate_tiers(&[]), Err(TierError::Empty));

        let mut t = ladder();
        t[0].growth_min = 10;
        assert_eq!(validate_tiers(&t), Err(TierError::FirstTierNotZero(10)));

        let mut t = ladder();
        t[2].growth_min = 1_000;
        assert_eq!(
            validate_tiers(&t),
            Err(TierError::GrowthNotIncreasing { index: 2 })
        );

        let mut t = ladder();
        t[1].name = "  ".into();
        assert_eq!(validate_tiers(&t), Err(TierError::EmptyName { index: 1 }));

        let mut t = ladder();
        t[3].name = "gold".into();
        assert_eq!(
            validate_tiers(&t),
            Err(TierError::DuplicateName("gold".into()))
        );

        let mut t = ladder();
        t[1].discount_bp = BP_ONE;
        assert!(matches!(
            validate_tiers(&t),
            Err(TierError::DiscountOutOfRange { .. })
        ));
        t[1].discount_bp = -1;
        assert!(matches!(
            validate_tiers(&t),
            Err(TierError::DiscountOutOfRange { .. })
        ));

        let mut t = ladder();
        t[1].points_multiplier_bp = MAX_POINTS_MULTIPLIER_BP + 1;
        assert!(matches!(
            validate_tiers(&t),
            Err(TierError::MultiplierOutOfRange { .. })
        ));

        let mut t = ladder();
        t[1].early_access_hours = -1;
        assert!(matches!(
            validate_tiers(&t),
            Err(TierError::EarlyAccessOutOfRange { .. })
        ));
    }

    #[test]
    fn tier_for_growth_picks_highest_reached() {
        let t = ladder();
        assert_eq!(tier_for_growth(&t, 0).unwrap().name, "normal");
        assert_eq!(tier_for_growth(&t, 999).unwrap().name, "normal");
        assert_eq!(tier_for_growth(&t, 1_000).unwrap().name, "silver");
        assert_eq!(tier_for_growth(&t, 19_999).unwrap().name, "gold");
        assert_eq!(tier_for_growth(&t, i64::MAX).unwrap().name, "black");
        assert_eq!(tier_for_growth(&t, -5).unwrap().name, "normal");
        assert!(tier_for_growth(&[], 10).is_none());
    }

    #[test]
    fn upgrade_is_immediate() {
        let t = ladder();
        assert_eq!(
            evaluate_tier(Some("normal"), 1_000, &t, false),
            Some("silver".into())
        );
        assert_eq!(
            evaluate_tier(Some("silver"), 25_000, &t, false),
            Some("black".into())
        );
        assert_eq!(evaluate_tier(Some("silver"), 1_500, &t, false), None);
    }

    #[test]
    fn downgrade_only_at_requalification() {
        let t = ladder();
        assert_eq!(evaluate_tier(Some("gold"), 100, &t, false), None);
        assert_eq!(
            evaluate_tier(Some("gold"), 100, &t, true),
            Some("normal".into())
        );
        assert_eq!(
            evaluate_tier(Some("gold"), 1_200, &t, true),
            Some("silver".into())
        );
        // Still qualified at requalification: no change.
        assert_eq!(evaluate_tier(Some("gold"), 6_000, &t, true), None);
        // Upgrades also happen at requalification.
        assert_eq!(
            evaluate_tier(Some("gold"), 30_000, &t, true),
            Some("black".into())
        );
    }

    #[test]
    fn new_member_and_unknown_tier() {
        let t = ladder();
        assert_eq!(evaluate_tier(None, 0, &t, false), Some("normal".into()));
        assert_eq!(evaluate_tier(None, 6_000, &t, false), Some("gold".into()));
        assert_eq!(
            evaluate_tier(Some("diamond"), 100, &t, false),
            Some("normal".into())
        );
        assert_eq!(evaluate_tier(Some("gold"), 100, &[], true), None);
    }

    #[test]
    fn growth_rounds_down() {
        // 1 growth per yuan.
        assert_eq!(growth_from_paid(12_345, BP_ONE), 123);
        assert_eq!(growth_from_paid(99, BP_ONE), 0);
        // 1 growth per 2 yuan: 199.99 yuan -> 99.995 -> 99.
        assert_eq!(growth_from_paid(19_999, 5_000), 99);
        // 1.5 growth per yuan.
        assert_eq!(growth_from_paid(10_000, 15_000), 150);
        assert_eq!(growth_from_paid(-100, BP_ONE), 0);
        assert_eq!(growth_from_paid(100, 0), 0);
        assert_eq!(growth_from_paid(i64::MAX, i64::MAX), i64::MAX);
    }

    #[test]
    fn discount_rounds_down() {
        // 5 % off 19.99 yuan = 99.95 fen -> 99 fen.
        assert_eq!(discount_fen(1_999, 500), 99);
        assert_eq!(discount_fen(1_999, 0), 0);
        assert_eq!(discount_fen(-1, 500), 0);
        assert_eq!(discount_fen(i64::MAX, 20_000), i64::MAX);
    }

    #[test]
    fn next_requalification_on_jan_first() {
        let tz = sh();
        let rule = RequalificationRule { month: 1, day: 1 };
        // 2025-06-01 local -> 2026-01-01 00:00 Shanghai = 2025-12-31T16:00Z.
        assert_eq!(
            next_requalification(rule, ts("2025-06-01T00:00:00Z"), &tz).unwrap(),
            ts("2025-12-31T16:00:00Z")
        );
        // One second before the boundary.
        assert_eq!(
            next_requalification(rule, ts("2025-12-31T15:59:59Z"), &tz).unwrap(),
            ts("2025-12-31T16:00:00Z")
        );
        // Exactly at the boundary: the next year's.
        assert_eq!(
            next_requalification(rule, ts("2025-12-31T16:00:00Z"), &tz).unwrap(),
            ts("2026-12-31T16:00:00Z")
        );
    }

    #[test]
    fn next_requalification_mid_year_and_leap_day() {
        let tz = sh();
        let rule = RequalificationRule { month: 7, day: 1 };
        assert_eq!(
            next_requalification(rule, ts("2025-08-01T00:00:00Z"), &tz).unwrap(),
            ts("2026-06-30T16:00:00Z")
        );
        let leap = RequalificationRule { month: 2, day: 29 };
        assert_eq!(
            next_requalification(leap, ts("2025-01-01T00:00:00Z"), &tz).unwrap(),
            ts("2025-02-27T16:00:00Z")
        );
        assert_eq!(
            next_requalification(leap, ts("2027-03-01T00:00:00Z"), &tz).unwrap(),
            ts("2028-02-28T16:00:00Z")
        );
        let bad = RequalificationRule { month: 4, day: 31 };
        assert!(next_requalification(bad, ts("2025-01-01T00:00:00Z"), &tz).is_err());
    }

    #[test]
    fn early_access_window() {
        let launch = ts("2025-11-11T00:00:00Z");
        assert!(may_buy_now(None, 0, ts("2000-01-01T00:00:00Z")));
        assert!(!may_buy_now(Some(launch), 0, ts("2025-11-10T23:59:59Z")));
        assert!(may_buy_now(Some(launch), 0, launch));
        assert!(may_buy_now(Some(launch), 24, ts("2025-11-10T00:00:00Z")));
        assert!(!may_buy_now(Some(launch), 24, ts("2025-11-09T23:59:59Z")));
        assert!(!may_buy_now(Some(launch), -24, ts("2025-11-10T23:00:00Z")));
        assert!(may_buy_now(
            Some(launch),
            i64::MAX,
            ts("1970-01-01T00:00:00Z")
        ));
    }

    #[test]
    fn tier_serde_round_trip() {
        let t = ladder();
        let j = serde_json::to_string(&t).unwrap();
        let back: Vec<Tier> = serde_json::from_str(&j).unwrap();
        assert_eq!(back, t);
    }
}
