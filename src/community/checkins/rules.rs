//! The check-in rules, pure: streaks, cycle days, which reward is due, make-up dates and the
//! recomputation of streaks after a make-up.
//!
//! # What cannot be replayed
//!
//! - One check-in per member per tenant-local day (the table's key enforces it).
//! - The streak is the number of consecutive checked-in days ending today; a gap restarts it
//!   at 1 (a new cycle, so day 1's reward is paid again — that is the point of a cycle).
//! - The cycle day is counted from the run's first day, but never reaches back across a
//!   completed cycle: after the check-in that paid the cycle's last day, the next day is
//!   day 1. So filling an old gap with a make-up cannot re-align a finished cycle and make the
//!   same days count toward a second day-7 reward sooner.
//! - Make-up check-ins pay no reward, neither for the made-up day nor retroactively for the
//!   days after it; they only repair the streak so that coming check-ins continue it. Any
//!   streak reached with make-ups could have been reached by checking in on those days, which
//!   would have paid more, so make-ups never out-earn honest check-ins.

use jiff::civil::Date;
use jiff::ToSpan as _;
use serde::{Deserialize, Serialize};

/// Longest cycle, in days.
pub const MAX_CYCLE_DAYS: i64 = 31;
/// Most make-ups a rule may allow per month.
pub const MAX_MAKEUPS_PER_MONTH: i64 = 31;

/// The day before `date`.
pub fn previous_day(date: Date) -> Date {
    date.saturating_sub(1.day())
}

/// Whole days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: Date, to: Date) -> i64 {
    from.until(to).map(|s| i64::from(s.get_days())).unwrap_or(0)
}

/// The streak of a check-in whose previous day had streak `previous` (None: not checked in).
pub fn next_streak(previous: Option<i64>) -> i64 {
    previous.map_or(1, |s| s.saturating_add(1))
}

/// The first day of the run that a check-in on `date` with `streak` ends.
pub fn run_start(date: Date, streak: i64) -> Date {
    date.saturating_sub((streak.max(1) - 1).days())
}

/// The day of the cycle (1..=cycle_days) of a check-in on `date` with `streak`, given the
/// member's latest completed cycle (a check-in that paid the last day) before `date`.
pub fn cycle_day(date: Date, streak: i64, last_completion: Option<Date>, cycle_days: i64) -> i64 {
    let start = run_start(date, streak);
    let anchor = match last_completion {
        Some(done) if done >= start && done < date => done.saturating_add(1.day()),
        _ => start,
    };
    days_between(anchor, date).rem_euclid(cycle_days.max(1)) + 1
}

/// True when `cycle_day` is the cycle's last day (its check-in completes the cycle).
pub fn completes_cycle(cycle_day: i64, cycle_days: i64) -> bool {
    cycle_day == cycle_days
}

/// A reward of the rule for a cycle day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayReward<R> {
    pub day: i64,
    pub reward: R,
}

/// The reward due on `cycle_day`, if the rule has one.
pub fn reward_due<R>(rewards: &[DayReward<R>], cycle_day: i64) -> Option<&R> {
    rewards
        .iter()
        .find(|r| r.day == cycle_day)
        .map(|r| &r.reward)
}

/// Why a make-up date is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MakeupRefusal {
    /// Today or later: check in normally.
    NotInThePast,
    /// Another month than today's.
    OtherMonth,
}

/// A make-up is for a day before today in the current month.
pub fn makeup_date_allowed(today: Date, date: Date) -> Result<(), MakeupRefusal> {
    if date >= today {
        return Err(MakeupRefusal::NotInThePast);
    }
    if date.year() != today.year() || date.month() != today.month() {
        return Err(MakeupRefusal::OtherMonth);
    }
    Ok(())
}

/// Streaks after a make-up on `date`: the make-up's own streak (continuing the day before
/// when that was checked in) and new streaks for the check-ins that follow it without a gap.
/// `after` lists the member's later check-ins (date, streak) in ascending date order; rows
/// after the first gap keep their streak.
pub fn recompute_after_makeup(
    date: Date,
    previous_streak: Option<i64>,
    after: &[(Date, i64)],
) -> (i64, Vec<(Date, i64)>) {
    let own = next_streak(previous_streak);
    let mut changed = Vec::new();
    let (mut expected, mut streak) = (date.saturating_add(1.day()), own);
    for &(day, old) in after {
        if day != expected {
            break;
        }
        streak += 1;
        if streak != old {
            changed.push((day, streak));
        }
        expected = day.saturating_add(1.day());
    }
    (own, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn streak_continues_or_restarts() {
        assert_eq!(next_streak(None), 1);
        assert_eq!(next_streak(Some(6)), 7);
        assert_eq!(run_start(d("2026-03-10"), 3), d("2026-03-08"));
    }

    #[test]
    fn cycle_restarts_after_the_last_day() {
        let start = d("2026-03-01");
        let days: Vec<i64> = (1..=15)
            .map(|streak| {
                let date = start.saturating_add((streak - 1).days());
                // Completed cycles as an honest member accumulates them.
                let completion = if streak > 14 {
                    Some(d("2026-03-14"))
                } else if streak > 7 {
                    Some(d("2026-03-07"))
                } else {
                    None
                };
                cycle_day(date, streak, completion, 7)
            })
            .collect();
        assert_eq!(days, vec![1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7, 1]);
        assert!(completes_cycle(7, 7));
        assert!(!completes_cycle(6, 7));
    }

    #[test]
    fn a_makeup_before_a_completed_cycle_cannot_realign_it() {
        // Days 1..7 checked in (day 7 paid on the 7th), then the 0th is made up: the run now
        // starts on the 0th, but the 8th is still day 1 of the next cycle, not day 2.
        let completion = Some(d("2026-03-07"));
        assert_eq!(cycle_day(d("2026-03-08"), 9, completion, 7), 1);
        assert_eq!(cycle_day(d("2026-03-14"), 15, completion, 7), 7);
        // Without the completion (no cycle was paid), the run's start counts.
        assert_eq!(cycle_day(d("2026-03-08"), 9, None, 7), 2);
        // A completion outside the run (before a gap) does not matter.
        assert_eq!(cycle_day(d("2026-03-20"), 2, completion, 7), 2);
    }

    #[test]
    fn rewards_are_looked_up_by_cycle_day() {
        let rewards = vec![
            DayReward { day: 1, reward: 5 },
            DayReward { day: 7, reward: 50 },
        ];
        assert_eq!(reward_due(&rewards, 1), Some(&5));
        assert_eq!(reward_due(&rewards, 3), None);
        assert_eq!(reward_due(&rewards, 7), Some(&50));
    }

    #[test]
    fn makeups_are_for_earlier_days_of_this_month() {
        let today = d("2026-03-10");
        assert_eq!(makeup_date_allowed(today, d("2026-03-09")), Ok(()));
        assert_eq!(makeup_date_allowed(today, d("2026-03-01")), Ok(()));
        assert_eq!(
            makeup_date_allowed(today, today),
            Err(MakeupRefusal::NotInThePast)
        );
        assert_eq!(
            makeup_date_allowed(today, d("2026-03-11")),
            Err(MakeupRefusal::NotInThePast)
        );
        assert_eq!(
            makeup_date_allowed(today, d("2026-02-28")),
            Err(MakeupRefusal::OtherMonth)
        );
    }

    #[test]
    fn a_makeup_joins_two_runs() {
        // Checked in 1st..3rd, missed the 4th, checked in 5th and 6th; making up the 4th
        // gives it streak 4 and the 5th and 6th streaks 5 and 6. The 9th is after a gap.
        let after = [
            (d("2026-03-05"), 1),
            (d("2026-03-06"), 2),
            (d("2026-03-09"), 1),
        ];
        let (own, changed) = recompute_after_makeup(d("2026-03-04"), Some(3), &after);
        assert_eq!(own, 4);
        assert_eq!(changed, vec![(d("2026-03-05"), 5), (d("2026-03-06"), 6)]);
        // Without a check-in the day before, the make-up starts a run.
        let (own, changed) = recompute_after_makeup(d("2026-03-04"), None, &after);
        assert_eq!((own, changed.len()), (1, 2));
        assert_eq!(changed[1], (d("2026-03-06"), 3));
    }
}
