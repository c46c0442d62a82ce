//! Calendar rules: the tenant's local date, member days and birthday perks.
//!
//! Every rule in this crate that talks about "today", "a day" or "a year"
//! means a date in the tenant's time zone (default `Asia/Shanghai`), never a
//! UTC date. The service stores instants as UTC [`Timestamp`]s and calls
//! [`local_date`] once at the edge to turn "now" into the tenant's date; the
//! rest of the rules then work on plain [`Date`]s.
//!
//! Typical use in the service:
//!
//! * the order pipeline calls [`is_member_day`] to decide whether the
//!   member-day points multiplier applies to an order paid at `now`;
//! * a daily job (or the member's first visit of the day) calls
//!   [`birthday_perk_due`] with the member's stored birthday and the year the
//!   perk was last granted, and grants the perk for the returned year.
//!
//! Nothing here performs I/O or reads the clock: "now" and the time zone are
//! always parameters.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The IANA name of the time zone used when a tenant has not configured one.
pub const DEFAULT_TIME_ZONE: &str = crate::common::time::DEFAULT_TIME_ZONE;

/// Errors from calendar computations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarError {
    /// The month is not in `1..=12`.
    InvalidMonth(i8),
    /// The day does not exist in that month in any year (e.g. 31 April or
    /// 30 February). 29 February is valid.
    InvalidDay { month: i8, day: i8 },
    /// A member-day rule names a day of month outside `1..=31`.
    InvalidDayOfMonth(u8),
    /// A date or instant computation went outside the range jiff supports
    /// (years -9999..=9999). Only reachable with absurd inputs.
    OutOfRange,
    /// The time zone name is not in the bundled time zone database.
    UnknownTimeZone(String),
}

impl std::fmt::Display for CalendarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalendarError::InvalidMonth(m) => write!(f, "invalid month {m}"),
            CalendarError::InvalidDay { month, day } => {
                write!(f, "invalid day {day} for month {month}")
            }
            CalendarError::InvalidDayOfMonth(d) => write!(f, "invalid day of month {d}"),
            CalendarError::OutOfRange => write!(f, "date out of supported range"),
            CalendarError::UnknownTimeZone(name) => write!(f, "unknown time zone {name}"),
        }
    }
}

impl std::error::Error for CalendarError {}

/// Looks up a tenant time zone by IANA name, falling back to
/// [`DEFAULT_TIME_ZONE`] when `name` is `None`.
///
/// The time zone database is bundled into the binary
/// (`tzdb-bundle-always`), so the result does not depend on the host's
/// `/usr/share/zoneinfo`.
pub fn tenant_time_zone(name: Option<&str>) -> Result<TimeZone, CalendarError> {
    let name = name.unwrap_or(DEFAULT_TIME_ZONE);
    crate::common::time::time_zone_named(name)
        .ok_or_else(|| CalendarError::UnknownTimeZone(name.to_string()))
}

/// The tenant's local calendar date at instant `now`.
///
/// Example: `2025-03-01T15:59:59Z` is still 1 March in Shanghai (23:59:59
/// local), while `2025-03-01T16:00:00Z` is already 2 March.
pub fn local_date(now: Timestamp, tz: &TimeZone) -> Date {
    now.to_zoned(tz.clone()).date()
}

/// The first instant of local date `date` in `tz` (local midnight).
///
/// If a DST transition skips midnight in that zone, this is the first
/// instant that exists on that date (jiff's "compatible" disambiguation).
/// Shanghai has no DST, so there it is always 00:00 local.
pub fn start_of_local_day(date: Date, tz: &TimeZone) -> Result<Timestamp, CalendarError> {
    date.to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| CalendarError::OutOfRange)
}

/// `date` shifted by `days` calendar days (negative goes back).
pub fn add_days(date: Date, days: i64) -> Result<Date, CalendarError> {
    let span = jiff::Span::new()
        .try_days(days)
        .map_err(|_| CalendarError::OutOfRange)?;
    date.checked_add(span)
        .map_err(|_| CalendarError::OutOfRange)
}

/// Number of days in `month` of a leap year: the largest day that is ever
/// valid for that month. Errors if `month` is not in `1..=12`.
pub fn max_days_in_month(month: i8) -> Result<i8, CalendarError> {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Ok(31),
        4 | 6 | 9 | 11 => Ok(30),
        2 => Ok(29),
        _ => Err(CalendarError::InvalidMonth(month)),
    }
}

/// Checks that `(month, day)` names a day that exists in at least one year.
pub fn validate_month_day(month: i8, day: i8) -> Result<(), CalendarError> {
    let max = max_days_in_month(month)?;
    if day < 1 || day > max {
        return Err(CalendarError::InvalidDay { month, day });
    }
    Ok(())
}

/// The date of `(month, day)` in `year`, moving to the last day of the month
/// when the day does not exist that year.
///
/// In practice this only affects 29 February, which becomes 28 February in
/// non-leap years. Used for birthdays and for yearly tier requalification
/// dates.
pub fn clamped_date(year: i16, month: i8, day: i8) -> Result<Date, CalendarError> {
    validate_month_day(month, day)?;
    let first = Date::new(year, month, 1).map_err(|_| CalendarError::OutOfRange)?;
    let day = day.min(first.days_in_month());
    Date::new(year, month, day).map_err(|_| CalendarError::OutOfRange)
}

/// The date a member born on `(month, day)` celebrates in `year`.
///
/// A 29 February birthday is celebrated on 28 February in non-leap years
/// (the common convention in Chinese apps and the one least likely to give
/// the perk in the wrong month).
pub fn birthday_in_year(month: i8, day: i8, year: i16) -> Result<Date, CalendarError> {
    clamped_date(year, month, day)
}

/// Decides whether a birthday perk should be granted on `today_local`, and for
/// which birthday year.
///
/// The perk window for the birthday in year `Y` is the inclusive date range
/// `[birthday_in_year(Y) - days_before, birthday_in_year(Y)]`. The perk is
/// granted once per birthday year: it is due when `today_local` lies in the
/// window for some year `Y` and `last_granted_year` is `None` or earlier than
/// `Y`. The returned value is `Y`, which the caller must store as the new
/// `last_granted_year` in the same transaction that grants the perk.
///
/// Because the window can start in the previous calendar year (birthday on
/// 2 January with `days_before = 5` opens on 28 December), both the current
/// year and the next year are checked; a window never covers more than one
/// birthday because `days_before` is at most 255 days.
///
/// Birthday years up to and including the birth year itself are not eligible
/// (there is no birthday to celebrate yet). No other age rule is applied.
pub fn birthday_perk_due(
    birthday: Date,
    days_before: u8,
    today_local: Date,
    last_granted_year: Option<i16>,
) -> Option<i16> {
    let this_year = today_local.year();
    // Check the current year first: if today is inside this year's window it
    // cannot also be inside next year's window (windows are < 1 year long).
    let candidates = [Some(this_year), this_year.checked_add(1)];
    for year in candidates.into_iter().flatten() {
        if year <= birthday.year() {
            continue;
        }
        if last_granted_year.is_some_and(|last| last >= year) {
            continue;
        }
        let Ok(day) = birthday_in_year(birthday.month(), birthday.day(), year) else {
            continue;
        };
        let Ok(opens) = add_days(day, -i64::from(days_before)) else {
            continue;
        };
        if opens <= today_local && today_local <= day {
            return Some(year);
        }
    }
    None
}

/// When the member day happens.
///
/// Serialized as `{"day_of_month": 8}` or `{"weekday": 3}` where weekdays are
/// ISO numbers (Monday = 1 … Sunday = 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberDayRule {
    /// The given day of every month (`1..=31`). If a month is shorter than
    /// the configured day, the member day is that month's last day, so a
    /// "31st of the month" member day still happens in April (30th) and
    /// February (28th or 29th). Values outside `1..=31` never match; use
    /// [`MemberDayRule::validate`] when saving the configuration.
    DayOfMonth(u8),
    /// Every given weekday.
    Weekday(#[serde(with = "iso_weekday")] Weekday),
}

impl MemberDayRule {
    /// Rejects a `DayOfMonth` outside `1..=31`.
    pub fn validate(&self) -> Result<(), CalendarError> {
        match *self {
            MemberDayRule::DayOfMonth(d) if !(1..=31).contains(&d) => {
                Err(CalendarError::InvalidDayOfMonth(d))
            }
            _ => Ok(()),
        }
    }

    /// Whether local date `date` is a member day under this rule.
    pub fn matches(&self, date: Date) -> bool {
        match *self {
            MemberDayRule::DayOfMonth(d) => {
                if !(1..=31).contains(&d) {
                    return false;
                }
                // `d` fits in i8 because it is at most 31.
                let wanted = (d as i8).min(date.days_in_month());
                date.day() == wanted
            }
            MemberDayRule::Weekday(w) => date.weekday() == w,
        }
    }
}

/// Whether instant `now` falls on a member day in the tenant's time zone.
pub fn is_member_day(rule: &MemberDayRule, now: Timestamp, tz: &TimeZone) -> bool {
    rule.matches(local_date(now, tz))
}

/// Serde adapter: a weekday as its ISO number (Monday = 1 … Sunday = 7),
/// because jiff's `Weekday` has no serde support of its own.
mod iso_weekday {
    use jiff::civil::Weekday;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(w: &Weekday, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i8(w.to_monday_one_offset())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Weekday, D::Error> {
        let n = i8::deserialize(d)?;
        Weekday::from_monday_one_offset(n)
            .map_err(|_| serde::de::Error::custom(format!("weekday must be 1..=7, got {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn sh() -> TimeZone {
        tenant_time_zone(None).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn local_date_switches_at_shanghai_midnight() {
        let tz = sh();
        assert_eq!(
            local_date(ts("2025-03-01T15:59:59Z"), &tz),
            date(2025, 3, 1)
        );
        assert_eq!(
            local_date(ts("2025-03-01T16:00:00Z"), &tz),
            date(2025, 3, 2)
        );
    }

    #[test]
    fn local_date_year_end() {
        let tz = sh();
        assert_eq!(
            local_date(ts("2025-12-31T15:59:59Z"), &tz),
            date(2025, 12, 31)
        );
        assert_eq!(
            local_date(ts("2025-12-31T16:00:00Z"), &tz),
            date(2026, 1, 1)
        );
    }

    #[test]
    fn start_of_local_day_is_utc_1600_previous_day() {
        let tz = sh();
        assert_eq!(
            start_of_local_day(date(2026, 1, 1), &tz).unwrap(),
            ts("2025-12-31T16:00:00Z")
        );
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        assert!(matches!(
            tenant_time_zone(Some("Mars/Olympus")),
            Err(CalendarError::UnknownTimeZone(_))
        ));
        assert!(tenant_time_zone(Some("America/New_York")).is_ok());
    }

    #[test]
    fn member_day_of_month_boundaries() {
        let tz = sh();
        let rule = MemberDayRule::DayOfMonth(8);
        // 23:59:59 on 8 March local.
        assert!(is_member_day(&rule, ts("2025-03-08T15:59:59Z"), &tz));
        // 00:00:00 on 9 March local.
        assert!(!is_member_day(&rule, ts("2025-03-08T16:00:00Z"), &tz));
        // 00:00:00 on 8 March local is 16:00 UTC on 7 March.
        assert!(is_member_day(&rule, ts("2025-03-07T16:00:00Z"), &tz));
        assert!(!is_member_day(&rule, ts("2025-03-07T15:59:59Z"), &tz));
    }

    #[test]
    fn member_day_31st_falls_back_to_last_day() {
        let rule = MemberDayRule::DayOfMonth(31);
        assert!(rule.matches(date(2025, 4, 30)));
        assert!(!rule.matches(date(2025, 4, 29)));
        assert!(rule.matches(date(2025, 2, 28)));
        assert!(!rule.matches(date(2024, 2, 28)));
        assert!(rule.matches(date(2024, 2, 29)));
        assert!(rule.matches(date(2025, 1, 31)));
        assert!(!rule.matches(date(2025, 1, 30)));
        let rule30 = MemberDayRule::DayOfMonth(30);
        assert!(rule30.matches(date(2025, 2, 28)));
        assert!(rule30.matches(date(2025, 1, 30)));
        assert!(!rule30.matches(date(2025, 1, 31)));
    }

    #[test]
    fn invalid_day_of_month_never_matches() {
        assert!(!MemberDayRule::DayOfMonth(0).matches(date(2025, 1, 1)));
        assert!(!MemberDayRule::DayOfMonth(32).matches(date(2025, 1, 31)));
        assert_eq!(
            MemberDayRule::DayOfMonth(32).validate(),
            Err(CalendarError::InvalidDayOfMonth(32))
        );
        assert!(MemberDayRule::DayOfMonth(31).validate().is_ok());
    }

    #[test]
    fn member_day_weekday_uses_local_date() {
        let tz = sh();
        let rule = MemberDayRule::Weekday(Weekday::Wednesday);
        // 2025-03-05 is a Wednesday. 16:00Z on Tuesday 4 March is Wednesday
        // 00:00 in Shanghai.
        assert!(is_member_day(&rule, ts("2025-03-04T16:00:00Z"), &tz));
        assert!(!is_member_day(&rule, ts("2025-03-04T15:59:59Z"), &tz));
        assert!(is_member_day(&rule, ts("2025-03-05T15:59:59Z"), &tz));
        assert!(!is_member_day(&rule, ts("2025-03-05T16:00:00Z"), &tz));
    }

    #[test]
    fn member_day_rule_serde_round_trip() {
        let r = MemberDayRule::Weekday(Weekday::Sunday);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"weekday":7}"#);
        assert_eq!(serde_json::from_str::<MemberDayRule>(&j).unwrap(), r);
        let d = MemberDayRule::DayOfMonth(18);
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(j, r#"{"day_of_month":18}"#);
        assert_eq!(serde_json::from_str::<MemberDayRule>(&j).unwrap(), d);
        assert!(serde_json::from_str::<MemberDayRule>(r#"{"weekday":8}"#).is_err());
    }

    #[test]
    fn birthday_29_february() {
        assert_eq!(birthday_in_year(2, 29, 2025).unwrap(), date(2025, 2, 28));
        assert_eq!(birthday_in_year(2, 29, 2028).unwrap(), date(2028, 2, 29));
        assert_eq!(birthday_in_year(2, 29, 2100).unwrap(), date(2100, 2, 28));
        assert_eq!(birthday_in_year(7, 15, 2025).unwrap(), date(2025, 7, 15));
        assert_eq!(
            birthday_in_year(2, 30, 2024),
            Err(CalendarError::InvalidDay { month: 2, day: 30 })
        );
        assert_eq!(
            birthday_in_year(13, 1, 2024),
            Err(CalendarError::InvalidMonth(13))
        );
        assert_eq!(
            birthday_in_year(4, 31, 2024),
            Err(CalendarError::InvalidDay { month: 4, day: 31 })
        );
    }

    #[test]
    fn birthday_perk_window_inclusive() {
        let b = date(1990, 6, 15);
        assert_eq!(birthday_perk_due(b, 7, date(2025, 6, 7), None), None);
        assert_eq!(birthday_perk_due(b, 7, date(2025, 6, 8), None), Some(2025));
        assert_eq!(birthday_perk_due(b, 7, date(2025, 6, 15), None), Some(2025));
        assert_eq!(birthday_perk_due(b, 7, date(2025, 6, 16), None), None);
        // Only on the day itself.
        assert_eq!(birthday_perk_due(b, 0, date(2025, 6, 14), None), None);
        assert_eq!(birthday_perk_due(b, 0, date(2025, 6, 15), None), Some(2025));
    }

    #[test]
    fn birthday_perk_once_per_year() {
        let b = date(1990, 6, 15);
        assert_eq!(birthday_perk_due(b, 7, date(2025, 6, 10), Some(2025)), None);
        assert_eq!(
            birthday_perk_due(b, 7, date(2025, 6, 10), Some(2024)),
            Some(2025)
        );
        assert_eq!(
            birthday_perk_due(b, 7, date(2026, 6, 10), Some(2025)),
            Some(2026)
        );
    }

    #[test]
    fn birthday_perk_window_crosses_year_boundary() {
        let b = date(1990, 1, 2);
        // Window for 2026 is 2025-12-28 ..= 2026-01-02.
        assert_eq!(birthday_perk_due(b, 5, date(2025, 12, 27), None), None);
        assert_eq!(
            birthday_perk_due(b, 5, date(2025, 12, 28), None),
            Some(2026)
        );
        assert_eq!(
            birthday_perk_due(b, 5, date(2025, 12, 31), Some(2025)),
            Some(2026)
        );
        // Granted on 28 December for 2026: not again on 1 or 2 January.
        assert_eq!(birthday_perk_due(b, 5, date(2026, 1, 1), Some(2026)), None);
        assert_eq!(birthday_perk_due(b, 5, date(2026, 1, 2), Some(2026)), None);
        // Missed in December: still due in January for the same year.
        assert_eq!(
            birthday_perk_due(b, 5, date(2026, 1, 2), Some(2025)),
            Some(2026)
        );
        assert_eq!(birthday_perk_due(b, 5, date(2026, 1, 3), Some(2025)), None);
    }

    #[test]
    fn birthday_perk_29_february_in_non_leap_year() {
        let b = date(2000, 2, 29);
        assert_eq!(birthday_perk_due(b, 0, date(2025, 2, 28), None), Some(2025));
        assert_eq!(birthday_perk_due(b, 0, date(2025, 3, 1), None), None);
        assert_eq!(birthday_perk_due(b, 0, date(2028, 2, 28), None), None);
        assert_eq!(birthday_perk_due(b, 0, date(2028, 2, 29), None), Some(2028));
        // A window of 3 days before 29 Feb 2028 starts on 26 Feb.
        assert_eq!(birthday_perk_due(b, 3, date(2028, 2, 26), None), Some(2028));
    }

    #[test]
    fn birthday_perk_not_in_birth_year() {
        let b = date(2025, 3, 10);
        assert_eq!(birthday_perk_due(b, 3, date(2025, 3, 10), None), None);
        assert_eq!(birthday_perk_due(b, 3, date(2026, 3, 10), None), Some(2026));
    }

    #[test]
    fn birthday_perk_with_shanghai_clock() {
        // The perk day is decided on the tenant's date: 16:00 UTC on 14 June
        // is already 15 June in Shanghai.
        let tz = sh();
        let b = date(1990, 6, 15);
        let today = local_date(ts("2025-06-14T16:00:00Z"), &tz);
        assert_eq!(birthday_perk_due(b, 0, today, None), Some(2025));
        let today = local_date(ts("2025-06-14T15:59:59Z"), &tz);
        assert_eq!(birthday_perk_due(b, 0, today, None), None);
    }

    #[test]
    fn add_days_and_clamped_date() {
        assert_eq!(add_days(date(2024, 12, 31), 1).unwrap(), date(2025, 1, 1));
        assert_eq!(add_days(date(2024, 3, 1), -1).unwrap(), date(2024, 2, 29));
        assert_eq!(
            add_days(date(9999, 12, 31), 1),
            Err(CalendarError::OutOfRange)
        );
        assert_eq!(clamped_date(2025, 2, 29).unwrap(), date(2025, 2, 28));
    }
}
