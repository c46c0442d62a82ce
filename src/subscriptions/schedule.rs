//! The calendar and the money of a subscription, pure: which days a schedule delivers on,
//! from which day (a start or a resume), and what a cancelled prepaid subscription gives back.
//!
//! A schedule is either "every N weeks / months" counted from an anchor day, or fixed days of
//! every month. A day 29–31 in a shorter month is that month's last day, and the next month
//! goes back to the anchor's day: every month from 31 January delivers on 31 January,
//! 28 (or 29) February, 31 March, 30 April… because each date is computed from the anchor,
//! never from the previous (clamped) date.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most `every` (weeks or months between deliveries).
pub const MAX_EVERY: i64 = 52;
/// Most days in `days_of_month`.
pub const MAX_DAYS_OF_MONTH: usize = 31;

/// The unit of an `every` schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Week,
    Month,
}

/// When a subscription delivers: `{"every": N, "unit": "week" | "month"}` or
/// `{"days_of_month": [1, 15]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Schedule {
    Every {
        /// Weeks or months between deliveries (1 to 52).
        every: i64,
        unit: Unit,
    },
    DaysOfMonth {
        /// Days of every month (1 to 31; a day past a month's end is its last day).
        days_of_month: Vec<i64>,
    },
}

/// Why a schedule is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleError {
    Every,
    DaysOfMonth,
}

impl Schedule {
    /// The schedule with its days sorted and deduplicated, or why it is refused.
    pub fn checked(self) -> Result<Self, ScheduleError> {
        match self {
            Schedule::Every { every, unit } if (1..=MAX_EVERY).contains(&every) => {
                Ok(Schedule::Every { every, unit })
            }
            Schedule::Every { .. } => Err(ScheduleError::Every),
            Schedule::DaysOfMonth { mut days_of_month } => {
                days_of_month.sort_unstable();
                days_of_month.dedup();
                if days_of_month.is_empty()
                    || days_of_month.len() > MAX_DAYS_OF_MONTH
                    || days_of_month.iter().any(|d| !(1..=31).contains(d))
                {
                    return Err(ScheduleError::DaysOfMonth);
                }
                Ok(Schedule::DaysOfMonth { days_of_month })
            }
        }
    }
}

/// `day` of the month of `year`/`month`, clamped to the month's last day.
fn clamped(year: i16, month: i8, day: i64) -> Option<Date> {
    let first = Date::new(year, month, 1).ok()?;
    let last = i64::from(first.days_in_month());
    let day = i8::try_from(day.clamp(1, last)).ok()?;
    Date::new(year, month, day).ok()
}

/// The month `months` after the month of `date`, as (year, month).
fn month_after(date: Date, months: i64) -> Option<(i16, i8)> {
    let index = i64::from(date.year())
        .checked_mul(12)?
        .checked_add(i64::from(date.month()) - 1)?
        .checked_add(months)?;
    let year = i16::try_from(index.div_euclid(12)).ok()?;
    let month = i8::try_from(index.rem_euclid(12) + 1).ok()?;
    (1..=9999).contains(&year).then_some((year, month))
}

/// The `k`-th date of an `every` schedule anchored at `anchor` (the 0-th is the anchor).
fn nth(anchor: Date, every: i64, unit: Unit, k: i64) -> Option<Date> {
    let steps = every.checked_mul(k)?;
    match unit {
        Unit::Week => {
            let span = jiff::Span::new().try_days(steps.checked_mul(7)?).ok()?;
            anchor.checked_add(span).ok()
        }
        Unit::Month => {
            let (year, month) = month_after(anchor, steps)?;
            clamped(year, month, i64::from(anchor.day()))
        }
    }
}

/// The first `count` delivery dates on or after `from` of a schedule anchored at `anchor` (an
/// `every` schedule counts from the anchor; fixed days ignore it). Fewer when the calendar
/// ends (year 9999).
pub fn dates_from(schedule: &Schedule, anchor: Date, from: Date, count: usize) -> Vec<Date> {
    let mut out = Vec::with_capacity(count.min(1024));
    if count == 0 {
        return out;
    }
    match schedule {
        Schedule::Every { every, unit } => {
            let every = (*every).max(1);
            // Start near `from` rather than walking from the anchor one step at a time.
            let mut k = match unit {
                Unit::Week => (from - anchor).get_days().max(0) as i64 / (7 * every),
                Unit::Month => {
                    let months = (i64::from(from.year()) - i64::from(anchor.year())) * 12
                        + i64::from(from.month())
                        - i64::from(anchor.month());
                    (months.max(0) / every).saturating_sub(1).max(0)
                }
            };
            while out.len() < count {
                let Some(date) = nth(anchor, every, *unit, k) else {
                    break;
                };
                if date >= from {
                    out.push(date);
                }
                k += 1;
            }
        }
        Schedule::DaysOfMonth { days_of_month } => {
            let mut months = 0;
            while out.len() < count {
                let Some((year, month)) = month_after(from, months) else {
                    break;
                };
                let mut last = None;
                for day in days_of_month {
                    let Some(date) = clamped(year, month, *day) else {
                        continue;
                    };
                    // Two days past a short month's end fall on the same last day: once.
                    if date >= from && last != Some(date) && out.len() < count {
                        out.push(date);
                    }
                    last = Some(date);
                }
                months += 1;
            }
        }
    }
    out
}

/// The delivery dates on or after `from` and on or before `until`, at most `limit`.
pub fn dates_between(
    schedule: &Schedule,
    anchor: Date,
    from: Date,
    until: Date,
    limit: usize,
) -> Vec<Date> {
    // Dates come in order, so take them in growing batches until one passes `until`.
    let mut want = 8usize;
    loop {
        let dates = dates_from(schedule, anchor, from, want.min(limit));
        let past = dates.last().is_some_and(|d| *d > until);
        if past || dates.len() < want.min(limit) || want >= limit {
            return dates.into_iter().filter(|d| *d <= until).collect();
        }
        want = want.saturating_mul(2);
    }
}

/// The first delivery date strictly after `after`.
pub fn next_after(schedule: &Schedule, anchor: Date, after: Date) -> Option<Date> {
    let from = after.tomorrow().ok()?;
    dates_from(schedule, anchor, from, 1).pop()
}

/// The calendar from a resume on `resume`: an `every` schedule moves on from the resume day
/// (it becomes the anchor); fixed days of the month go on from it.
pub fn resumed_anchor(schedule: &Schedule, anchor: Date, resume: Date) -> Date {
    match schedule {
        Schedule::Every { .. } => resume,
        Schedule::DaysOfMonth { .. } => anchor,
    }
}

/// Delivery `index`'s share (0-based) of `total` fen paid for `deliveries` deliveries: the
/// total divided evenly, the remainder's fen one each to the first deliveries, so the shares
/// sum to the total exactly.
pub fn share(total: i64, deliveries: i64, index: i64) -> i64 {
    if deliveries <= 0 || !(0..deliveries).contains(&index) {
        return 0;
    }
    let base = total / deliveries;
    let remainder = total % deliveries;
    base + i64::from(index < remainder)
}

/// What a prepaid subscription gives back when cancelled after `delivered` of its `deliveries`
/// went out (or passed their cut-off): the shares of the undelivered ones, at most what is
/// still paid (`total` less `refunded` before).
pub fn prepaid_refund(total: i64, deliveries: i64, delivered: i64, refunded: i64) -> i64 {
    if deliveries <= 0 || total <= 0 {
        return 0;
    }
    let delivered = delivered.clamp(0, deliveries);
    let base = total / deliveries;
    let remainder = total % deliveries;
    // The undelivered are the last ones: base each, plus the remainder's fen not yet used.
    let undelivered = (deliveries - delivered) * base + (remainder - delivered).max(0);
    undelivered.min((total - refunded).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::ToSpan as _;
    use proptest::prelude::*;

    fn monthly() -> Schedule {
        Schedule::Every {
            every: 1,
            unit: Unit::Month,
        }
    }

    #[test]
    fn month_end_clamps_and_goes_back_to_the_anchor_day() {
        let dates = dates_from(&monthly(), date(2027, 1, 31), date(2027, 1, 31), 4);
        assert_eq!(
            dates,
            vec![
                date(2027, 1, 31),
                date(2027, 2, 28),
                date(2027, 3, 31),
                date(2027, 4, 30)
            ]
        );
        let leap = dates_from(&monthly(), date(2028, 1, 31), date(2028, 1, 31), 3);
        assert_eq!(leap[1], date(2028, 2, 29));
        assert_eq!(leap[2], date(2028, 3, 31));
    }

    #[test]
    fn days_of_month_clamp_once_in_short_months() {
        let schedule = Schedule::DaysOfMonth {
            days_of_month: vec![15, 30, 31],
        }
        .checked()
        .unwrap();
        let dates = dates_from(&schedule, date(2027, 2, 1), date(2027, 2, 1), 4);
        assert_eq!(
            dates,
            vec![
                date(2027, 2, 15),
                date(2027, 2, 28),
                date(2027, 3, 15),
                date(2027, 3, 30)
            ]
        );
    }

    #[test]
    fn weekly_from_a_later_day_skips_what_is_before() {
        let schedule = Schedule::Every {
            every: 2,
            unit: Unit::Week,
        };
        let dates = dates_from(&schedule, date(2027, 1, 4), date(2027, 1, 20), 2);
        assert_eq!(dates, vec![date(2027, 2, 1), date(2027, 2, 15)]);
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::Every {
            every: 0,
            unit: Unit::Week
        }
        .checked()
        .is_err());
        assert!(Schedule::DaysOfMonth {
            days_of_month: vec![]
        }
        .checked()
        .is_err());
        assert!(Schedule::DaysOfMonth {
            days_of_month: vec![32]
        }
        .checked()
        .is_err());
    }

    #[test]
    fn refund_of_six_deliveries() {
        // 100 fen over 6 deliveries: 17, 17, 17, 17, 16, 16.
        assert_eq!(prepaid_refund(100, 6, 0, 0), 100);
        assert_eq!(prepaid_refund(100, 6, 2, 0), 66);
        assert_eq!(prepaid_refund(100, 6, 5, 0), 16);
        assert_eq!(prepaid_refund(100, 6, 6, 0), 0);
        assert_eq!(prepaid_refund(100, 6, 2, 50), 50);
    }

    fn any_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            (1i64..=12, prop_oneof![Just(Unit::Week), Just(Unit::Month)])
                .prop_map(|(every, unit)| Schedule::Every { every, unit }),
            prop::collection::vec(1i64..=31, 1..5).prop_map(|days_of_month| {
                Schedule::DaysOfMonth { days_of_month }.checked().unwrap()
            }),
        ]
    }

    fn any_date() -> impl Strategy<Value = Date> {
        (2000i16..2100, 1i8..=12, 1i8..=31)
            .prop_map(|(y, m, d)| clamped(y, m, i64::from(d)).unwrap())
    }

    proptest! {
        #[test]
        fn dates_are_increasing_on_or_after_from_and_on_schedule(
            schedule in any_schedule(), anchor in any_date(), offset in 0i64..800, count in 1usize..30,
        ) {
            let from = anchor.checked_add(offset.days()).unwrap();
            let dates = dates_from(&schedule, anchor, from, count);
            prop_assert_eq!(dates.len(), count);
            prop_assert!(dates[0] >= from);
            for pair in dates.windows(2) {
                prop_assert!(pair[0] < pair[1]);
            }
            for d in &dates {
                match &schedule {
                    Schedule::Every { unit: Unit::Month, .. } => {
                        let want = i64::from(anchor.day()).min(i64::from(d.days_in_month()));
                        prop_assert_eq!(i64::from(d.day()), want);
                    }
                    Schedule::Every { every, unit: Unit::Week } => {
                        prop_assert_eq!((*d - anchor).get_days() as i64 % (7 * every), 0);
                    }
                    Schedule::DaysOfMonth { days_of_month } => {
                        let last = i64::from(d.days_in_month());
                        prop_assert!(days_of_month.iter().any(|x| (*x).min(last) == i64::from(d.day())));
                    }
                }
            }
        }

        #[test]
        fn no_schedule_date_is_missed_between_two_answers(
            schedule in any_schedule(), anchor in any_date(), count in 2usize..20,
        ) {
            // Asking from the day after each date gives the next one: the list has no gaps.
            let dates = dates_from(&schedule, anchor, anchor, count);
            for pair in dates.windows(2) {
                prop_assert_eq!(next_after(&schedule, anchor, pair[0]), Some(pair[1]));
            }
        }

        #[test]
        fn skipping_a_date_leaves_the_others(
            schedule in any_schedule(), anchor in any_date(), count in 2usize..12, skip in 0usize..12,
        ) {
            // A skip removes one date and the calendar extends by the next date after the last.
            let dates = dates_from(&schedule, anchor, anchor, count);
            let skip = skip % count;
            let mut kept: Vec<Date> = dates.iter().copied().enumerate()
                .filter(|(i, _)| *i != skip).map(|(_, d)| d).collect();
            kept.push(next_after(&schedule, anchor, *dates.last().unwrap()).unwrap());
            let longer = dates_from(&schedule, anchor, anchor, count + 1);
            let mut expected = longer.clone();
            expected.remove(skip);
            prop_assert_eq!(kept, expected);
        }

        #[test]
        fn a_resume_moves_the_calendar_on_from_the_resume_day(
            schedule in any_schedule(), anchor in any_date(), pause in 1i64..400, count in 1usize..10,
        ) {
            let resume = anchor.checked_add(pause.days()).unwrap();
            let anchor_after = resumed_anchor(&schedule, anchor, resume);
            let dates = dates_from(&schedule, anchor_after, resume, count);
            prop_assert!(dates.iter().all(|d| *d >= resume));
            if let Schedule::Every { .. } = schedule {
                prop_assert_eq!(dates[0], resume);
            }
        }

        #[test]
        fn dates_between_agree_with_dates_from(
            schedule in any_schedule(), anchor in any_date(), span in 0i64..200,
        ) {
            let until = anchor.checked_add(span.days()).unwrap();
            let between = dates_between(&schedule, anchor, anchor, until, 1000);
            let all = dates_from(&schedule, anchor, anchor, between.len() + 1);
            prop_assert_eq!(&all[..between.len()], &between[..]);
            prop_assert!(all[between.len()] > until);
        }

        #[test]
        fn shares_sum_to_the_total_and_refunds_are_exact(
            total in 0i64..10_000_000, deliveries in 1i64..120, delivered in 0i64..120,
        ) {
            let sum: i64 = (0..deliveries).map(|i| share(total, deliveries, i)).sum();
            prop_assert_eq!(sum, total);
            let delivered = delivered.min(deliveries);
            let refund = prepaid_refund(total, deliveries, delivered, 0);
            let undelivered: i64 = (delivered..deliveries).map(|i| share(total, deliveries, i)).sum();
            prop_assert_eq!(refund, undelivered);
            // Kept plus refunded is what was paid, to the fen.
            let kept: i64 = (0..delivered).map(|i| share(total, deliveries, i)).sum();
            prop_assert_eq!(kept + refund, total);
        }

        #[test]
        fn a_refund_never_exceeds_what_is_still_paid(
            total in 0i64..1_000_000, deliveries in 1i64..60, delivered in 0i64..60, refunded in 0i64..1_000_000,
        ) {
            let refunded = refunded.min(total);
            let refund = prepaid_refund(total, deliveries, delivered, refunded);
            prop_assert!(refund >= 0);
            prop_assert!(refund + refunded <= total);
        }
    }
}
