//! Loyalty points (积分): earning, burning at checkout, expiry and FIFO lots.
//!
//! Points are `i64`, money is integer fen (`i64`), rates are basis points
//! (10_000 = 100 %). Every division rounds down unless a function says
//! otherwise.
//!
//! The service keeps each earning as a [`Lot`] (one row per earning event,
//! with its own expiry). The intended calls are:
//!
//! * order paid → [`earn_points`] → insert a lot with [`expires_at`];
//! * checkout → [`max_burnable`] to show "use up to N points", then
//!   [`burn_value_fen`] for the amount the member picked, then
//!   [`spend_fifo`] on the member's lots (inside the same DB transaction,
//!   lots locked) and store the returned `(lot_id, taken)` pairs on the order;
//! * order refunded → [`partial_refund_allocation`] (for partial refunds) and
//!   [`refund_to_lots`] with the pairs stored at checkout;
//! * nightly job → [`expire_due`] to zero expired lots and write expiry ledger
//!   entries, and [`due_for_warning`] to notify members before points expire.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::calendar;

/// 100 % in basis points.
pub const BP_ONE: i64 = 10_000;
/// Fen in one yuan.
pub const FEN_PER_YUAN: i64 = 100;
/// Default number of days before expiry at which members are warned.
pub const DEFAULT_WARNING_DAYS: i64 = 30;

/// Errors from points arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointsError {
    /// An amount, rate or count that must not be negative was negative.
    NegativeInput,
    /// `points_per_yuan` must be positive.
    InvalidPointsPerYuan(i64),
    /// `cap_bp` must be in `0..=10_000`.
    InvalidCapBp(i64),
    /// The points are not a whole number of burn steps: only multiples of
    /// `points_step` map to a whole number of fen (see [`burn_step`]).
    NotWholeFen { points_step: i64 },
    /// The result does not fit in an `i64` (only with absurd inputs).
    Overflow,
    /// A date computation went outside jiff's supported range.
    TimeOutOfRange,
}

impl std::fmt::Display for PointsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointsError::NegativeInput => write!(f, "negative input"),
            PointsError::InvalidPointsPerYuan(n) => write!(f, "invalid points per yuan {n}"),
            PointsError::InvalidCapBp(n) => write!(f, "invalid cap {n} bp"),
            PointsError::NotWholeFen { points_step } => {
                write!(f, "points must be a multiple of {points_step}")
            }
            PointsError::Overflow => write!(f, "arithmetic overflow"),
            PointsError::TimeOutOfRange => write!(f, "time out of range"),
        }
    }
}

impl std::error::Error for PointsError {}

/// Points earned for paying `paid_fen`.
///
/// ```text
/// points = floor( paid_fen * base_points_per_yuan * tier_multiplier_bp * member_day_multiplier_bp
///                 / (100 * 10_000 * 10_000) )
/// ```
///
/// The whole product is formed in `i128` and divided **once**, so there is a
/// single rounding down at the very end: fractional yuan and fractional
/// multipliers are never rounded separately (e.g. 1.99 yuan at 1 point/yuan
/// with a 1.5× tier and a 2× member day is `floor(5.97)` = 5, not
/// `floor(1) * 1.5 * 2 = 3`). Pass `10_000` for a multiplier that does not
/// apply (e.g. not a member day).
///
/// Errors on negative inputs (refunds reverse the points recorded on the
/// order instead of recomputing them) and when the product does not fit in
/// `i128` or the result does not fit in `i64`.
pub fn earn_points(
    paid_fen: i64,
    base_points_per_yuan: i64,
    tier_multiplier_bp: i64,
    member_day_multiplier_bp: i64,
) -> Result<i64, PointsError> {
    if paid_fen < 0
        || base_points_per_yuan < 0
        || tier_multiplier_bp < 0
        || member_day_multiplier_bp < 0
    {
        return Err(PointsError::NegativeInput);
    }
    let num = i128::from(paid_fen)
        .checked_mul(i128::from(base_points_per_yuan))
        .and_then(|v| v.checked_mul(i128::from(tier_multiplier_bp)))
        .and_then(|v| v.checked_mul(i128::from(member_day_multiplier_bp)))
        .ok_or(PointsError::Overflow)?;
    let den = i128::from(FEN_PER_YUAN) * i128::from(BP_ONE) * i128::from(BP_ONE);
    i64::try_from(num / den).map_err(|_| PointsError::Overflow)
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// The smallest burnable unit for a `points_per_yuan` rate: `(points_step,
/// fen_step)`, meaning every `points_step` points are worth exactly
/// `fen_step` fen.
///
/// With `g = gcd(points_per_yuan, 100)`: `points_step = points_per_yuan / g`,
/// `fen_step = 100 / g`. Examples: 100 points/yuan → (1, 1); 1000 → (10, 1);
/// 30 → (3, 10); 1 → (1, 100).
pub fn burn_step(points_per_yuan: i64) -> Result<(i64, i64), PointsError> {
    if points_per_yuan <= 0 {
        return Err(PointsError::InvalidPointsPerYuan(points_per_yuan));
    }
    let g = gcd(points_per_yuan, FEN_PER_YUAN);
    Ok((points_per_yuan / g, FEN_PER_YUAN / g))
}

/// The money value in fen of burning `points` at `points_per_yuan` points per
/// yuan.
///
/// Only whole burn steps may be burnt (see [`burn_step`]), so the value is
/// always an exact number of fen and no fraction of a fen is ever rounded
/// away from or given to the member. `points` that are not a multiple of
/// `points_step` are rejected with [`PointsError::NotWholeFen`] rather than
/// silently rounded; [`max_burnable`] only ever proposes valid amounts.
pub fn burn_value_fen(points: i64, points_per_yuan: i64) -> Result<i64, PointsError> {
    let (points_step, fen_step) = burn_step(points_per_yuan)?;
    if points < 0 {
        return Err(PointsError::NegativeInput);
    }
    if points % points_step != 0 {
        return Err(PointsError::NotWholeFen { points_step });
    }
    (points / points_step)
        .checked_mul(fen_step)
        .ok_or(PointsError::Overflow)
}

/// The most points a member may burn on an order of `order_fen`.
///
/// The money value of the burnt points may not exceed
/// `floor(order_fen * cap_bp / 10_000)` fen, and the points may not exceed
/// `available_points`. The result is the largest whole number of burn steps
/// (see [`burn_step`]) within both limits, so it is always accepted by
/// [`burn_value_fen`]. Rounds down everywhere (never lets the member burn
/// beyond the cap).
pub fn max_burnable(
    order_fen: i64,
    points_per_yuan: i64,
    cap_bp: i64,
    available_points: i64,
) -> Result<i64, PointsError> {
    let (points_step, fen_step) = burn_step(points_per_yuan)?;
    if !(0..=BP_ONE).contains(&cap_bp) {
        return Err(PointsError::InvalidCapBp(cap_bp));
    }
    if order_fen < 0 || available_points < 0 {
        return Err(PointsError::NegativeInput);
    }
    // cap_fen <= order_fen because cap_bp <= 10_000, so it fits in i64.
    let cap_fen = i128::from(order_fen) * i128::from(cap_bp) / i128::from(BP_ONE);
    let steps_by_cap = cap_fen / i128::from(fen_step);
    let steps_by_points = i128::from(available_points / points_step);
    let steps = steps_by_cap.min(steps_by_points);
    // steps * points_step <= available_points, so it fits in i64.
    i64::try_from(steps * i128::from(points_step)).map_err(|_| PointsError::Overflow)
}

/// How long earned points stay valid.
///
/// Serialized as `"end_of_next_year"`, `{"days_after_earning": 365}` or
/// `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryPolicy {
    /// Points earned during local year `Y` expire at the end of year `Y + 1`,
    /// i.e. at local midnight starting 1 January of `Y + 2`.
    EndOfNextYear,
    /// Points earned on local date `D` stay valid through the end of local
    /// date `D + n` and expire at local midnight starting `D + n + 1`. With
    /// `n = 0` they expire at the end of the earning day.
    DaysAfterEarning(u32),
    /// Points never expire.
    Never,
}

/// The first instant at which points earned at `earned_at` are no longer
/// usable (`None` = never), under `policy` in the tenant time zone `tz`.
///
/// All policies expire at a local midnight, so members see a whole-day
/// expiry date ("valid until 2026-12-31"). A lot is expired at `now` when
/// `now >= expires_at`.
pub fn expires_at(
    earned_at: Timestamp,
    policy: ExpiryPolicy,
    tz: &TimeZone,
) -> Result<Option<Timestamp>, PointsError> {
    let earned_date = calendar::local_date(earned_at, tz);
    let expiry_date = match policy {
        ExpiryPolicy::Never => return Ok(None),
        ExpiryPolicy::EndOfNextYear => {
            let year = earned_date
                .year()
                .checked_add(2)
                .ok_or(PointsError::TimeOutOfRange)?;
            jiff::civil::Date::new(year, 1, 1).map_err(|_| PointsError::TimeOutOfRange)?
        }
        ExpiryPolicy::DaysAfterEarning(n) => calendar::add_days(earned_date, i64::from(n) + 1)
            .map_err(|_| PointsError::TimeOutOfRange)?,
    };
    calendar::start_of_local_day(expiry_date, tz)
        .map(Some)
        .map_err(|_| PointsError::TimeOutOfRange)
}

/// One earning of points, consumed first-in-first-out.
///
/// Invariant maintained by this module: `0 <= remaining <= amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    /// The service's id for the lot (e.g. the ledger row id).
    pub id: String,
    pub earned_at: Timestamp,
    /// First instant at which the lot is unusable; `None` = never expires.
    pub expires_at: Option<Timestamp>,
    /// Points originally earned.
    pub amount: i64,
    /// Points still available.
    pub remaining: i64,
}

impl Lot {
    /// Whether the lot is expired at `now` (`now >= expires_at`).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

/// Why points could not be spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendError {
    /// The usable (unexpired) balance is smaller than the amount.
    Insufficient { requested: i64, available: i64 },
    /// The amount is negative.
    NegativeAmount,
}

impl std::fmt::Display for SpendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpendError::Insufficient {
                requested,
                available,
            } => write!(
                f,
                "insufficient points: {requested} requested, {available} available"
            ),
            SpendError::NegativeAmount => write!(f, "negative amount"),
        }
    }
}

impl std::error::Error for SpendError {}

/// Sort key for consumption order: earliest expiry first (never-expiring
/// lots last), then earliest earned, then lot id, so the order is total and
/// deterministic.
fn fifo_key(l: &Lot) -> (bool, Option<Timestamp>, Timestamp, &str) {
    (
        l.expires_at.is_none(),
        l.expires_at,
        l.earned_at,
        l.id.as_str(),
    )
}

/// Points usable at `now`: the sum of `remaining` over unexpired lots.
pub fn available_points(lots: &[Lot], now: Timestamp) -> i64 {
    let total: i128 = lots
        .iter()
        .filter(|l| l.remaining > 0 && !l.is_expired(now))
        .map(|l| i128::from(l.remaining))
        .sum();
    i64::try_from(total).unwrap_or(i64::MAX)
}

/// Spends `amount` points from `lots`, oldest-expiring first.
///
/// Order: earliest `expires_at` first (lots that never expire last), ties by
/// `earned_at`, then by `id`. Lots already expired at `now` are skipped even
/// if [`expire_due`] has not swept them yet, so a late nightly job can never
/// let a member spend expired points. (This is why the function takes `now`.)
///
/// All-or-nothing: on error no lot is modified. Returns the `(lot_id, taken)`
/// pairs in consumption order; the caller stores them with the order so a
/// refund can return points to the same lots. Spending 0 returns an empty
/// list.
pub fn spend_fifo(
    lots: &mut [Lot],
    amount: i64,
    now: Timestamp,
) -> Result<Vec<(String, i64)>, SpendError> {
    if amount < 0 {
        return Err(SpendError::NegativeAmount);
    }
    let available = available_points(lots, now);
    if available < amount {
        return Err(SpendError::Insufficient {
            requested: amount,
            available,
        });
    }
    let mut order: Vec<usize> = (0..lots.len())
        .filter(|&i| lots[i].remaining > 0 && !lots[i].is_expired(now))
        .collect();
    order.sort_by(|&a, &b| fifo_key(&lots[a]).cmp(&fifo_key(&lots[b])));
    let mut left = amount;
    let mut taken = Vec::new();
    for i in order {
        if left == 0 {
            break;
        }
        let lot = &mut lots[i];
        let take = lot.remaining.min(left);
        lot.remaining -= take;
        left -= take;
        taken.push((lot.id.clone(), take));
    }
    Ok(taken)
}

/// Zeroes every lot that is expired at `now` and still has points, returning
/// `(lot_id, expired_amount)` for each (lots with nothing left are not
/// listed). Idempotent: a second call at the same `now` returns nothing.
pub fn expire_due(lots: &mut [Lot], now: Timestamp) -> Vec<(String, i64)> {
    let mut expired = Vec::new();
    for lot in lots.iter_mut() {
        if lot.remaining > 0 && lot.is_expired(now) {
            expired.push((lot.id.clone(), lot.remaining));
            lot.remaining = 0;
        }
    }
    expired
}

/// Lots with points left that expire within `days` days after `now`
/// (`now < expires_at <= now + days * 24h`), in consumption order. The
/// service typically uses [`DEFAULT_WARNING_DAYS`] and records which lots it
/// already warned about.
pub fn due_for_warning(lots: &[Lot], now: Timestamp, days: i64) -> Vec<&Lot> {
    let horizon = days
        .max(0)
        .checked_mul(86_400)
        .map(SignedDuration::from_secs)
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX);
    let mut due: Vec<&Lot> = lots
        .iter()
        .filter(|l| l.remaining > 0)
        .filter(|l| l.expires_at.is_some_and(|e| now < e && e <= horizon))
        .collect();
    due.sort_by(|a, b| fifo_key(a).cmp(&fifo_key(b)));
    due
}

/// Why a refund could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundError {
    /// A returned amount is negative.
    NegativeAmount,
    /// A refund names a lot the member does not have.
    UnknownLot(String),
    /// Returning the points would leave a live lot with more than it earned,
    /// which means the same spend is being refunded twice.
    ExceedsLotAmount(String),
    /// A partial refund asks for more points than were spent.
    ExceedsSpent { requested: i64, spent: i64 },
}

impl std::fmt::Display for RefundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefundError::NegativeAmount => write!(f, "negative refund amount"),
            RefundError::UnknownLot(id) => write!(f, "unknown lot {id}"),
            RefundError::ExceedsLotAmount(id) => write!(f, "refund exceeds lot {id} amount"),
            RefundError::ExceedsSpent { requested, spent } => {
                write!(f, "refund of {requested} exceeds {spent} spent")
            }
        }
    }
}

impl std::error::Error for RefundError {}

/// What a refund did, per lot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefundOutcome {
    /// Points put back into live lots: usable again with the lot's original
    /// expiry.
    pub restored: Vec<(String, i64)>,
    /// Points whose lot had already expired at `now`: they are credited and
    /// expire at once. The service writes a refund ledger entry followed by
    /// an expiry entry, so the member's history explains where they went.
    pub expired_immediately: Vec<(String, i64)>,
}

/// Splits a partial refund of `points` over the `(lot_id, taken)` pairs
/// recorded by [`spend_fifo`], undoing the spend from its **end**: the lots
/// consumed last (the latest-expiring ones) are refilled first. This favours
/// the member (the refunded points are the ones with the most life left) and
/// makes a series of partial refunds equal to one full refund.
pub fn partial_refund_allocation(
    spent: &[(String, i64)],
    points: i64,
) -> Result<Vec<(String, i64)>, RefundError> {
    if points < 0 || spent.iter().any(|(_, n)| *n < 0) {
        return Err(RefundError::NegativeAmount);
    }
    let total: i128 = spent.iter().map(|(_, n)| i128::from(*n)).sum();
    if i128::from(points) > total {
        return Err(RefundError::ExceedsSpent {
            requested: points,
            spent: i64::try_from(total).unwrap_or(i64::MAX),
        });
    }
    let mut left = points;
    let mut out = Vec::new();
    for (id, n) in spent.iter().rev() {
        if left == 0 {
            break;
        }
        let give = (*n).min(left);
        if give > 0 {
            out.push((id.clone(), give));
            left -= give;
        }
    }
    Ok(out)
}

/// Returns refunded points to the lots they were spent from.
///
/// Policy: points go back to **their original lot and keep its original
/// expiry**. If that lot is already expired at `now`, the points are
/// credited and **expire immediately** (reported in
/// [`RefundOutcome::expired_immediately`]) instead of going to a new lot.
/// Giving them a fresh lot would let members extend the life of expiring
/// points by buying before the expiry date and refunding after it.
///
/// `returned` is the list of `(lot_id, points)` to give back (the pairs from
/// [`spend_fifo`], or a part of them from [`partial_refund_allocation`]);
/// repeated ids are summed. All-or-nothing: on error no lot is modified.
pub fn refund_to_lots(
    lots: &mut [Lot],
    returned: &[(String, i64)],
    now: Timestamp,
) -> Result<RefundOutcome, RefundError> {
    // Sum per lot in first-seen order so duplicates are checked together.
    let mut per_lot: Vec<(usize, i64)> = Vec::new();
    for (id, n) in returned {
        if *n < 0 {
            return Err(RefundError::NegativeAmount);
        }
        let idx = lots
            .iter()
            .position(|l| &l.id == id)
            .ok_or_else(|| RefundError::UnknownLot(id.clone()))?;
        match per_lot.iter_mut().find(|(i, _)| *i == idx) {
            Some((_, total)) => {
                *total = total
                    .checked_add(*n)
                    .ok_or_else(|| RefundError::ExceedsLotAmount(id.clone()))?;
            }
            None => per_lot.push((idx, *n)),
        }
    }
    // Validate everything before mutating anything.
    for &(idx, n) in &per_lot {
        let lot = &lots[idx];
        let limit = if lot.is_expired(now) {
            lot.amount
        } else {
            lot.amount - lot.remaining.max(0)
        };
        if n > limit {
            return Err(RefundError::ExceedsLotAmount(lot.id.clone()));
        }
    }
    let mut outcome = RefundOutcome::default();
    for (idx, n) in per_lot {
        if n == 0 {
            continue;
        }
        let lot = &mut lots[idx];
        if lot.is_expired(now) {
            outcome.expired_immediately.push((lot.id.clone(), n));
        } else {
            lot.remaining += n;
            outcome.restored.push((lot.id.clone(), n));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sh() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn lot(id: &str, earned: &str, expires: Option<&str>, amount: i64) -> Lot {
        Lot {
            id: id.into(),
            earned_at: ts(earned),
            expires_at: expires.map(ts),
            amount,
            remaining: amount,
        }
    }

    #[test]
    fn earn_rounds_down_once_at_the_end() {
        // 1.99 yuan * 1 pt/yuan * 1.5 * 2 = 5.97 -> 5.
        assert_eq!(earn_points(199, 1, 15_000, 20_000), Ok(5));
        // 123.45 yuan at 1 pt/yuan, no multipliers -> 123.
        assert_eq!(earn_points(12_345, 1, 10_000, 10_000), Ok(123));
        // 0.99 yuan -> 0.
        assert_eq!(earn_points(99, 1, 10_000, 10_000), Ok(0));
        // 10 pts/yuan, 1.2x tier: 33.33 yuan -> 399.96 -> 399.
        assert_eq!(earn_points(3_333, 10, 12_000, 10_000), Ok(399));
        // A 0x multiplier earns nothing.
        assert_eq!(earn_points(10_000, 1, 0, 10_000), Ok(0));
    }

    #[test]
    fn earn_large_values_do_not_overflow() {
        // 10 billion yuan at 100 pts/yuan, 10x tier, 10x member day.
        assert_eq!(
            earn_points(1_000_000_000_000, 100, 100_000, 100_000),
            Ok(100_000_000_000_000)
        );
        assert_eq!(
            earn_points(i64::MAX, i64::MAX, i64::MAX, i64::MAX),
            Err(PointsError::Overflow)
        );
        assert_eq!(
            earn_points(i64::MAX, 1_000, 100_000, 100_000),
            Err(PointsError::Overflow)
        );
        assert_eq!(earn_points(-1, 1, 1, 1), Err(PointsError::NegativeInput));
    }

    #[test]
    fn burn_steps() {
        assert_eq!(burn_step(100), Ok((1, 1)));
        assert_eq!(burn_step(1_000), Ok((10, 1)));
        assert_eq!(burn_step(30), Ok((3, 10)));
        assert_eq!(burn_step(1), Ok((1, 100)));
        assert_eq!(burn_step(0), Err(PointsError::InvalidPointsPerYuan(0)));
    }

    #[test]
    fn burn_value_only_whole_fen() {
        assert_eq!(burn_value_fen(250, 100), Ok(250));
        assert_eq!(burn_value_fen(250, 1_000), Ok(25));
        assert_eq!(
            burn_value_fen(255, 1_000),
            Err(PointsError::NotWholeFen { points_step: 10 })
        );
        assert_eq!(burn_value_fen(9, 30), Ok(30));
        assert_eq!(
            burn_value_fen(10, 30),
            Err(PointsError::NotWholeFen { points_step: 3 })
        );
        assert_eq!(burn_value_fen(-10, 100), Err(PointsError::NegativeInput));
        assert_eq!(burn_value_fen(i64::MAX, 1), Err(PointsError::Overflow));
    }

    #[test]
    fn max_burnable_respects_cap_and_balance() {
        // 100 pts = 1 yuan; order 50.00 yuan; cap 20 % = 10.00 yuan = 1000 pts.
        assert_eq!(max_burnable(5_000, 100, 2_000, 5_000), Ok(1_000));
        // Balance is the limit.
        assert_eq!(max_burnable(5_000, 100, 2_000, 700), Ok(700));
        // 1000 pts = 1 yuan, cap 10 % of 12.34 yuan = 123.4 fen -> 123 fen ->
        // 1230 pts; balance 1239 -> 1230 (whole steps only).
        assert_eq!(max_burnable(1_234, 1_000, 1_000, 1_239), Ok(1_230));
        assert_eq!(max_burnable(1_234, 1_000, 1_000, 1_225), Ok(1_220));
        // 30 pts = 1 yuan: step is 3 pts = 10 fen. Cap 0.95 yuan = 95 fen ->
        // 9 steps = 27 pts.
        assert_eq!(max_burnable(95, 30, 10_000, 1_000), Ok(27));
        assert_eq!(burn_value_fen(27, 30), Ok(90));
        assert_eq!(max_burnable(5_000, 100, 0, 5_000), Ok(0));
        assert_eq!(
            max_burnable(5_000, 100, 10_001, 5_000),
            Err(PointsError::InvalidCapBp(10_001))
        );
        assert_eq!(
            max_burnable(-1, 100, 100, 5),
            Err(PointsError::NegativeInput)
        );
        assert_eq!(
            max_burnable(i64::MAX, 1, 10_000, i64::MAX),
            Ok(i64::MAX / 100)
        );
    }

    #[test]
    fn expiry_end_of_next_year_uses_tenant_zone() {
        let tz = sh();
        // Earned 2025-06-01 -> expires 2027-01-01 00:00 Shanghai.
        assert_eq!(
            expires_at(ts("2025-06-01T00:00:00Z"), ExpiryPolicy::EndOfNextYear, &tz),
            Ok(Some(ts("2026-12-31T16:00:00Z")))
        );
        // 2024-12-31T16:00Z is already 2025-01-01 in Shanghai: a 2025 earning.
        assert_eq!(
            expires_at(ts("2024-12-31T16:00:00Z"), ExpiryPolicy::EndOfNextYear, &tz),
            Ok(Some(ts("2026-12-31T16:00:00Z")))
        );
        // One second earlier it is still 2024 locally.
        assert_eq!(
            expires_at(ts("2024-12-31T15:59:59Z"), ExpiryPolicy::EndOfNextYear, &tz),
            Ok(Some(ts("2025-12-31T16:00:00Z")))
        );
        assert_eq!(
            expires_at(ts("2025-06-01T00:00:00Z"), ExpiryPolicy::Never, &tz),
            Ok(None)
        );
    }

    #[test]
    fn expiry_days_after_earning() {
        let tz = sh();
        // Earned 2025-03-01 10:00 local; 30 days -> valid through 2025-03-31,
        // expires 2025-04-01 00:00 local.
        assert_eq!(
            expires_at(
                ts("2025-03-01T02:00:00Z"),
                ExpiryPolicy::DaysAfterEarning(30),
                &tz
            ),
            Ok(Some(ts("2025-03-31T16:00:00Z")))
        );
        assert_eq!(
            expires_at(
                ts("2025-03-01T02:00:00Z"),
                ExpiryPolicy::DaysAfterEarning(0),
                &tz
            ),
            Ok(Some(ts("2025-03-01T16:00:00Z")))
        );
    }

    #[test]
    fn expiry_policy_serde() {
        let p = ExpiryPolicy::DaysAfterEarning(365);
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(j, r#"{"days_after_earning":365}"#);
        assert_eq!(serde_json::from_str::<ExpiryPolicy>(&j).unwrap(), p);
        assert_eq!(
            serde_json::to_string(&ExpiryPolicy::EndOfNextYear).unwrap(),
            r#""end_of_next_year""#
        );
    }

    #[test]
    fn scenario_earn_2025_earn_2026_spend_120() {
        let tz = sh();
        let policy = ExpiryPolicy::EndOfNextYear;
        let e2025 = ts("2025-05-01T04:00:00Z");
        let e2026 = ts("2026-03-01T04:00:00Z");
        let mut lots = vec![
            Lot {
                id: "a".into(),
                earned_at: e2025,
                expires_at: expires_at(e2025, policy, &tz).unwrap(),
                amount: 100,
                remaining: 100,
            },
            Lot {
                id: "b".into(),
                earned_at: e2026,
                expires_at: expires_at(e2026, policy, &tz).unwrap(),
                amount: 50,
                remaining: 50,
            },
        ];
        let taken = spend_fifo(&mut lots, 120, ts("2026-06-01T00:00:00Z")).unwrap();
        assert_eq!(taken, vec![("a".into(), 100), ("b".into(), 20)]);

        // End of 2026 (2027-01-01 00:00 Shanghai): lot a expires, but nothing
        // of it is left.
        let end_2026 = ts("2026-12-31T16:00:00Z");
        assert!(expire_due(&mut lots, ts("2026-12-31T15:59:59Z")).is_empty());
        let expired = expire_due(&mut lots, end_2026);
        assert_eq!(expired.iter().map(|(_, n)| n).sum::<i64>(), 0);
        assert_eq!(available_points(&lots, end_2026), 30);

        // End of 2027: the 30 left of lot b expire.
        assert!(expire_due(&mut lots, ts("2027-12-31T15:59:59Z")).is_empty());
        let expired = expire_due(&mut lots, ts("2027-12-31T16:00:00Z"));
        assert_eq!(expired, vec![("b".into(), 30)]);
        assert_eq!(available_points(&lots, ts("2027-12-31T16:00:00Z")), 0);
        // Idempotent.
        assert!(expire_due(&mut lots, ts("2028-06-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn spend_order_ties_and_never_expiring_last() {
        let now = ts("2025-01-01T00:00:00Z");
        let mut lots = vec![
            lot("z-never", "2020-01-01T00:00:00Z", None, 10),
            lot(
                "c",
                "2024-02-01T00:00:00Z",
                Some("2026-01-01T00:00:00Z"),
                10,
            ),
            lot(
                "b",
                "2024-01-01T00:00:00Z",
                Some("2026-01-01T00:00:00Z"),
                10,
            ),
            lot(
                "a",
                "2024-01-01T00:00:00Z",
                Some("2026-01-01T00:00:00Z"),
                10,
            ),
            lot(
                "early",
                "2024-06-01T00:00:00Z",
                Some("2025-06-01T00:00:00Z"),
                10,
            ),
        ];
        let taken = spend_fifo(&mut lots, 45, now).unwrap();
        assert_eq!(
            taken,
            vec![
                ("early".into(), 10),
                ("a".into(), 10),
                ("b".into(), 10),
                ("c".into(), 10),
                ("z-never".into(), 5),
            ]
        );
    }

    #[test]
    fn spend_is_atomic_and_skips_expired() {
        let now = ts("2025-01-01T00:00:00Z");
        let mut lots = vec![
            lot(
                "old",
                "2022-01-01T00:00:00Z",
                Some("2024-01-01T00:00:00Z"),
                100,
            ),
            lot(
                "new",
                "2024-06-01T00:00:00Z",
                Some("2026-01-01T00:00:00Z"),
                30,
            ),
        ];
        let before = lots.clone();
        assert_eq!(
            spend_fifo(&mut lots, 31, now),
            Err(SpendError::Insufficient {
                requested: 31,
                available: 30
            })
        );
        assert_eq!(lots, before);
        assert_eq!(
            spend_fifo(&mut lots, -1, now),
            Err(SpendError::NegativeAmount)
        );
        assert_eq!(spend_fifo(&mut lots, 0, now), Ok(vec![]));
        assert_eq!(spend_fifo(&mut lots, 30, now), Ok(vec![("new".into(), 30)]));
        assert_eq!(lots[0].remaining, 100);
    }

    #[test]
    fn warning_window() {
        let now = ts("2025-12-01T16:00:00Z");
        let lots = vec![
            lot(
                "in",
                "2024-01-01T00:00:00Z",
                Some("2025-12-31T16:00:00Z"),
                10,
            ),
            lot(
                "edge",
                "2024-01-01T00:00:00Z",
                Some("2025-12-31T16:00:00Z"),
                10,
            ),
            lot(
                "later",
                "2024-01-01T00:00:00Z",
                Some("2026-01-01T16:00:00Z"),
                10,
            ),
            lot(
                "gone",
                "2023-01-01T00:00:00Z",
                Some("2025-12-01T16:00:00Z"),
                10,
            ),
            lot("never", "2023-01-01T00:00:00Z", None, 10),
            Lot {
                remaining: 0,
                ..lot(
                    "empty",
                    "2024-01-01T00:00:00Z",
                    Some("2025-12-20T00:00:00Z"),
                    10,
                )
            },
        ];
        let due: Vec<&str> = due_for_warning(&lots, now, DEFAULT_WARNING_DAYS)
            .into_iter()
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(due, vec!["edge", "in"]);
        // 30 days after now is exactly 2025-12-31T16:00Z: inclusive.
        let due31: Vec<&str> = due_for_warning(&lots, now, 31)
            .into_iter()
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(due31, vec!["edge", "in", "later"]);
    }

    #[test]
    fn full_refund_returns_to_lots_and_expired_lot_expires_immediately() {
        let tz = sh();
        let policy = ExpiryPolicy::EndOfNextYear;
        let e2025 = ts("2025-05-01T04:00:00Z");
        let e2026 = ts("2026-03-01T04:00:00Z");
        let mut lots = vec![
            Lot {
                id: "a".into(),
                earned_at: e2025,
                expires_at: expires_at(e2025, policy, &tz).unwrap(),
                amount: 100,
                remaining: 100,
            },
            Lot {
                id: "b".into(),
                earned_at: e2026,
                expires_at: expires_at(e2026, policy, &tz).unwrap(),
                amount: 50,
                remaining: 50,
            },
        ];
        let taken = spend_fifo(&mut lots, 120, ts("2026-06-01T00:00:00Z")).unwrap();

        // Refund before lot a expires: everything goes back.
        let mut early = lots.clone();
        let out = refund_to_lots(&mut early, &taken, ts("2026-07-01T00:00:00Z")).unwrap();
        assert_eq!(out.restored, vec![("a".into(), 100), ("b".into(), 20)]);
        assert!(out.expired_immediately.is_empty());
        assert_eq!(early[0].remaining, 100);
        assert_eq!(early[1].remaining, 50);
        // Refunding the same spend again is rejected and changes nothing.
        let snapshot = early.clone();
        assert_eq!(
            refund_to_lots(&mut early, &taken, ts("2026-07-01T00:00:00Z")),
            Err(RefundError::ExceedsLotAmount("a".into()))
        );
        assert_eq!(early, snapshot);

        // Refund after lot a expired: its 100 expire immediately.
        let now = ts("2027-02-01T00:00:00Z");
        expire_due(&mut lots, now);
        let out = refund_to_lots(&mut lots, &taken, now).unwrap();
        assert_eq!(out.restored, vec![("b".into(), 20)]);
        assert_eq!(out.expired_immediately, vec![("a".into(), 100)]);
        assert_eq!(available_points(&lots, now), 50);
    }

    #[test]
    fn partial_refund_undoes_from_the_end() {
        let spent = vec![("a".to_string(), 100), ("b".to_string(), 20)];
        assert_eq!(
            partial_refund_allocation(&spent, 50),
            Ok(vec![("b".into(), 20), ("a".into(), 30)])
        );
        assert_eq!(
            partial_refund_allocation(&spent, 10),
            Ok(vec![("b".into(), 10)])
        );
        assert_eq!(partial_refund_allocation(&spent, 0), Ok(vec![]));
        assert_eq!(
            partial_refund_allocation(&spent, 121),
            Err(RefundError::ExceedsSpent {
                requested: 121,
                spent: 120
            })
        );
    }

    #[test]
    fn refund_errors() {
        let now = ts("2025-01-01T00:00:00Z");
        let mut lots = vec![lot("a", "2024-01-01T00:00:00Z", None, 10)];
        lots[0].remaining = 4;
        assert_eq!(
            refund_to_lots(&mut lots, &[("x".into(), 1)], now),
            Err(RefundError::UnknownLot("x".into()))
        );
        assert_eq!(
            refund_to_lots(&mut lots, &[("a".into(), -1)], now),
            Err(RefundError::NegativeAmount)
        );
        // Duplicates are summed: 3 + 4 > 6 spent.
        assert_eq!(
            refund_to_lots(&mut lots, &[("a".into(), 3), ("a".into(), 4)], now),
            Err(RefundError::ExceedsLotAmount("a".into()))
        );
        assert_eq!(lots[0].remaining, 4);
        let out = refund_to_lots(&mut lots, &[("a".into(), 3), ("a".into(), 3)], now).unwrap();
        assert_eq!(out.restored, vec![("a".into(), 6)]);
        assert_eq!(lots[0].remaining, 10);
    }
}
