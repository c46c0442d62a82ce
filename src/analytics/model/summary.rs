//! Turns raw purchase records into the per-customer summaries the buy-till-you-die
//! models are fitted on ("RFM summaries": frequency, recency, age `T`, and the mean
//! repeat order value), plus the holdout-period counts used to validate them.
//!
//! Conventions follow the customer-base analysis literature (Fader, Hardie & Lee 2005,
//! Marketing Science 24(2), and the CDNOW data set used there), which are also the
//! defaults of the `lifetimes` and `BTYD` packages:
//!
//! * purchases of one customer on the same calendar day are one transaction, with
//!   their amounts summed;
//! * the calibration period ends on an **inclusive** date: a purchase on that day
//!   belongs to calibration;
//! * `frequency` = number of *repeat* transactions in calibration (transactions − 1);
//! * `recency` = whole days from the first purchase to the last calibration purchase,
//!   `T` = whole days from the first purchase to the calibration end, both divided by
//!   7 when the time unit is weeks (so they are fractional weeks);
//! * only customers whose first purchase is on or before the calibration end appear;
//! * the monetary value for the Gamma-Gamma model is the mean value of the *repeat*
//!   transactions, in major units (cents / 100); the first purchase is left out
//!   because it is known to differ systematically from later ones, and customers
//!   without repeat transactions have none.
//!
//! Money enters as `i64` cents and is converted to `f64` dollars only for the models.

use std::fmt;

use crate::analytics::model::bgnbd::Observation;
use crate::analytics::model::error::{Error, Result};
use crate::analytics::model::gamma_gamma::SpendObservation;

/// A calendar day, counted in days since 1970-01-01 (negative before).
///
/// A plain day number keeps date arithmetic exact and dependency-free: the models
/// only ever need differences between days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// The day for a proleptic Gregorian date. Years 1..=9999 are supported.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Day> {
        if !(1..=9999).contains(&year) {
            return Err(Error::DateOutOfRange);
        }
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(Error::InvalidDate(format!("{year:04}-{month:02}-{day:02}")));
        }
        Ok(Day(days_from_civil(year, month, day)))
    }

    /// Parses `YYYYMMDD` or `YYYY-MM-DD` (surrounding whitespace is ignored).
    pub fn parse(s: &str) -> Result<Day> {
        let t = s.trim();
        let bad = || Error::InvalidDate(s.to_string());
        let bytes = t.as_bytes();
        let (y, m, d) = match bytes.len() {
            8 => (&t[0..4], &t[4..6], &t[6..8]),
            10 if bytes[4] == b'-' && bytes[7] == b'-' => (&t[0..4], &t[5..7], &t[8..10]),
            _ => return Err(bad()),
        };
        // Only ASCII digits are accepted, so "+123" or " 12" do not sneak through
        // the integer parser.
        let digits = |p: &str| p.bytes().all(|c| c.is_ascii_digit());
        if !(digits(y) && digits(m) && digits(d)) {
            return Err(bad());
        }
        let y: i32 = y.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        let d: u32 = d.parse().map_err(|_| bad())?;
        Day::from_ymd(y, m, d).map_err(|e| match e {
            Error::InvalidDate(_) => bad(),
            other => other,
        })
    }

    /// The calendar date `(year, month, day)` of this day.
    pub fn to_ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// Whole days from `self` to `later` (negative if `later` is earlier).
    pub fn days_until(self, later: Day) -> i64 {
        i64::from(later.0) - i64::from(self.0)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a valid Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i32 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400) as i32 + i32::from(m <= 2);
    (y, m, d)
}

/// The time unit of recency, `T` and prediction horizons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Day,
    Week,
}

impl TimeUnit {
    /// Length of one unit in days.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
        }
    }

    /// Units per month as used by `lifetimes`' `customer_lifetime_value`
    /// (`freq="D"`: 30, `freq="W"`: 4.345), kept for comparability with it.
    pub fn periods_per_month(self) -> f64 {
        match self {
            TimeUnit::Day => 30.0,
            TimeUnit::Week => 4.345,
        }
    }

    fn convert_days(self, days: i64) -> f64 {
        days as f64 / self.days()
    }
}

/// One purchase record, as it comes from the order store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase<K> {
    pub customer: K,
    pub day: Day,
    /// Order value in cents (minor units).
    pub amount_cents: i64,
}

/// Calibration-period summary of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary<K> {
    pub customer: K,
    pub first_purchase: Day,
    /// Repeat transactions (distinct purchase days after the first) in calibration.
    pub frequency: u32,
    /// First purchase → last calibration purchase, in the chosen unit.
    pub recency: f64,
    /// First purchase → calibration end, in the chosen unit.
    pub t: f64,
    /// Sum of the repeat transactions' values in cents.
    pub repeat_value_cents: i64,
    /// Mean repeat transaction value in major units (dollars); `None` when
    /// `frequency == 0`.
    pub monetary_value: Option<f64>,
}

impl<K> CustomerSummary<K> {
    /// The `(x, t_x, T)` triple the BG/NBD model needs.
    pub fn observation(&self) -> Observation {
        Observation {
            frequency: self.frequency,
            recency: self.recency,
            t: self.t,
        }
    }

    /// The `(x, m_x)` pair the Gamma-Gamma model needs, if the customer has repeat
    /// transactions.
    pub fn spend(&self) -> Option<SpendObservation> {
        self.monetary_value.map(|mean_value| SpendObservation {
            frequency: self.frequency,
            mean_value,
        })
    }
}

/// Holdout-period count of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutSummary<K> {
    pub customer: K,
    /// Transactions (distinct purchase days) in `(calibration_end, holdout_end]`.
    pub transactions: u32,
    /// Length of the holdout period in the chosen unit.
    pub duration: f64,
}

/// Daily transactions of one customer: `(day, summed amount in cents)`, sorted by day.
struct CustomerDays<'a, K> {
    customer: &'a K,
    days: Vec<(Day, i64)>,
}

/// Groups purchases by customer and merges same-day purchases, in customer order.
fn group_by_customer_day<K: Ord>(purchases: &[Purchase<K>]) -> Result<Vec<CustomerDays<'_, K>>> {
    let mut order: Vec<usize> = (0..purchases.len()).collect();
    // Sorting indices avoids cloning keys (which may be Strings) for every record.
    order.sort_by(|&i, &j| {
        let (a, b) = (&purchases[i], &purchases[j]);
        a.customer.cmp(&b.customer).then(a.day.cmp(&b.day))
    });
    let mut out: Vec<CustomerDays<'_, K>> = Vec::new();
    for i in order {
        let p = &purchases[i];
        let same_customer = out.last().is_some_and(|c| *c.customer == p.customer);
        if !same_customer {
            out.push(CustomerDays {
                customer: &p.customer,
                days: Vec::new(),
            });
        }
        // `out` is non-empty here: a new entry was pushed if needed.
        let Some(current) = out.last_mut() else {
            continue;
        };
        match current.days.last_mut() {
            Some((day, amount)) if *day == p.day => {
                *amount = amount
                    .checked_add(p.amount_cents)
                    .ok_or(Error::AmountOverflow)?;
            }
            _ => current.days.push((p.day, p.amount_cents)),
        }
    }
    Ok(out)
}

/// Calibration summaries for every customer whose first purchase is on or before
/// `calibration_end` (inclusive), sorted by customer key.
pub fn calibration_summary<K: Ord + Clone>(
    purchases: &[Purchase<K>],
    calibration_end: Day,
    unit: TimeUnit,
) -> Result<Vec<CustomerSummary<K>>> {
    let grouped = group_by_customer_day(purchases)?;
    let mut out = Vec::with_capacity(grouped.len());
    for c in grouped {
        let Some(&(first, _)) = c.days.first() else {
            continue;
        };
        if first > calibration_end {
            continue;
        }
        let in_calibration = c.days.iter().take_while(|(d, _)| *d <= calibration_end);
        let mut transactions = 0u32;
        let mut last = first;
        let mut repeat_value_cents = 0i64;
        for (k, &(day, amount)) in in_calibration.enumerate() {
            transactions += 1;
            last = day;
            if k > 0 {
                repeat_value_cents = repeat_value_cents
                    .checked_add(amount)
                    .ok_or(Error::AmountOverflow)?;
            }
        }
        let frequency = transactions - 1;
        let monetary_value =
            (frequency > 0).then(|| repeat_value_cents as f64 / 100.0 / f64::from(frequency));
        out.push(CustomerSummary {
            customer: c.customer.clone(),
            first_purchase: first,
            frequency,
            recency: unit.convert_days(first.days_until(last)),
            t: unit.convert_days(first.days_until(calibration_end)),
            repeat_value_cents,
            monetary_value,
        });
    }
    Ok(out)
}

/// Each customer's purchase days (same-day purchases merged), first day first, for the
/// customers whose first purchase is on or before `calibration_end`, in customer order: what
/// the cumulative tracking of [`crate::analytics::model::validate::cumulative_tracking`] counts.
pub fn purchase_days<K: Ord>(
    purchases: &[Purchase<K>],
    calibration_end: Day,
) -> Result<Vec<Vec<Day>>> {
    Ok(group_by_customer_day(purchases)?
        .into_iter()
        .filter(|c| {
            c.days
                .first()
                .is_some_and(|(first, _)| *first <= calibration_end)
        })
        .map(|c| c.days.into_iter().map(|(day, _)| day).collect())
        .collect())
}

/// Holdout counts for the same customers, in the same order, as
/// [`calibration_summary`] returns for `calibration_end`: transactions (same-day
/// purchases merged) in `(calibration_end, holdout_end]`. Customers without holdout
/// purchases get 0.
pub fn holdout_summary<K: Ord + Clone>(
    purchases: &[Purchase<K>],
    calibration_end: Day,
    holdout_end: Day,
    unit: TimeUnit,
) -> Result<Vec<HoldoutSummary<K>>> {
    if holdout_end < calibration_end {
        return Err(Error::InvalidArgument(
            "holdout end is before calibration end",
        ));
    }
    let duration = unit.convert_days(calibration_end.days_until(holdout_end));
    let grouped = group_by_customer_day(purchases)?;
    let mut out = Vec::with_capacity(grouped.len());
    for c in grouped {
        let Some(&(first, _)) = c.days.first() else {
            continue;
        };
        if first > calibration_end {
            continue;
        }
        let transactions = c
            .days
            .iter()
            .filter(|(d, _)| *d > calibration_end && *d <= holdout_end)
            .count();
        out.push(HoldoutSummary {
            customer: c.customer.clone(),
            transactions: u32::try_from(transactions)
                .map_err(|_| Error::InvalidArgument("too many transactions"))?,
            duration,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    fn p(c: u64, d: &str, cents: i64) -> Purchase<u64> {
        Purchase {
            customer: c,
            day: day(d),
            amount_cents: cents,
        }
    }

    #[test]
    fn parses_both_formats_and_round_trips() {
        assert_eq!(day("1970-01-01"), Day(0));
        assert_eq!(day("19700102"), Day(1));
        assert_eq!(day("1969-12-31"), Day(-1));
        assert_eq!(day("19970930"), day("1997-09-30"));
        assert_eq!(day("2000-02-29").to_ymd(), (2000, 2, 29));
        assert_eq!(day(" 2024-12-31 ").to_string(), "2024-12-31");
        // Every day over four centuries round-trips.
        for n in -200_000..200_000 {
            let (y, m, d) = Day(n).to_ymd();
            assert_eq!(Day::from_ymd(y, m, d).unwrap(), Day(n));
        }
        assert_eq!(day("1997-01-01").days_until(day("1997-09-30")), 272);
    }

    #[test]
    fn rejects_bad_dates() {
        for s in [
            "",
            "1997093",
            "1997-9-30",
            "1900-02-29",
            "1997-13-01",
            "19970230",
            "1997/09/30",
            "+9970930",
            "abcdefgh",
            "0000-01-01",
            "1997-00-10",
        ] {
            assert!(Day::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn calibration_conventions() {
        let end = day("1997-01-29");
        let purchases = vec![
            // Customer 1: two purchases on the first day (one transaction), a repeat
            // on day 14 and two on day 28 (one transaction), one after the end.
            p(1, "1997-01-01", 1_000),
            p(1, "1997-01-01", 500),
            p(1, "1997-01-15", 2_000),
            p(1, "1997-01-29", 300),
            p(1, "1997-01-29", 700),
            p(1, "1997-02-05", 9_999),
            // Customer 2: one purchase exactly on the (inclusive) end date.
            p(2, "1997-01-29", 100),
            // Customer 3: first purchase after the end, excluded.
            p(3, "1997-01-30", 100),
        ];
        let s = calibration_summary(&purchases, end, TimeUnit::Week).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].customer, 1);
        assert_eq!(s[0].frequency, 2);
        assert_eq!(s[0].recency, 4.0);
        assert_eq!(s[0].t, 4.0);
        assert_eq!(s[0].repeat_value_cents, 3_000);
        assert_eq!(s[0].monetary_value, Some(15.0));
        assert_eq!(s[1].customer, 2);
        assert_eq!(s[1].frequency, 0);
        assert_eq!(s[1].recency, 0.0);
        assert_eq!(s[1].t, 0.0);
        assert_eq!(s[1].monetary_value, None);
        assert!(s[1].spend().is_none());

        let days = calibration_summary(&purchases, end, TimeUnit::Day).unwrap();
        assert_eq!((days[0].recency, days[0].t), (28.0, 28.0));

        let h = holdout_summary(&purchases, end, day("1997-02-05"), TimeUnit::Week).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].customer, h[0].transactions, h[0].duration),
            (1, 1, 1.0)
        );
        assert_eq!((h[1].customer, h[1].transactions), (2, 0));
        // Holdout end is inclusive too; one day earlier the purchase drops out.
        let h = holdout_summary(&purchases, end, day("1997-02-04"), TimeUnit::Week).unwrap();
        assert_eq!(h[0].transactions, 0);
        assert!(holdout_summary(&purchases, end, day("1997-01-01"), TimeUnit::Week).is_err());
    }

    #[test]
    fn string_keys_and_overflow() {
        let d = day("2020-01-01");
        let purchases = vec![
            Purchase {
                customer: "b".to_string(),
                day: d,
                amount_cents: 1,
            },
            Purchase {
                customer: "a".to_string(),
                day: d,
                amount_cents: i64::MAX,
            },
        ];
        let s = calibration_summary(&purchases, d, TimeUnit::Day).unwrap();
        assert_eq!(s[0].customer, "a");
        let overflow = vec![
            Purchase {
                customer: "a".to_string(),
                day: d,
                amount_cents: i64::MAX,
            },
            Purchase {
                customer: "a".to_string(),
                day: d,
                amount_cents: 1,
            },
        ];
        assert_eq!(
            calibration_summary(&overflow, d, TimeUnit::Day),
            Err(Error::AmountOverflow)
        );
        assert!(calibration_summary::<u64>(&[], d, TimeUnit::Day)
            .unwrap()
            .is_empty());
    }
}
