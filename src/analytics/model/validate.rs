//! Holdout validation of a fitted BG/NBD model: customers are grouped by their
//! calibration frequency (0, 1, …, 6 and 7+), and for each group the mean number of
//! transactions actually made in the holdout period is compared with the mean of the
//! model's conditional expectations for that period.
//!
//! This is the "conditional expectations" check of Fader, Hardie & Lee (2005),
//! Marketing Science 24(2), figure 4 (there for the CDNOW data with a 39-week
//! holdout), and what `lifetimes`' `plot_calibration_purchases_vs_holdout_purchases`
//! tabulates. Each row also carries the percentage error of the prediction.
//!
//! [`cumulative_tracking`] is the other check of the same paper (FHL figure 2): week by week
//! from the first purchase in the data, actual cumulative repeat transactions of the cohort
//! against the model's expectation, through the calibration window and on into the holdout.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::analytics::model::bgnbd::{self, BgNbdParams, Observation};
use crate::analytics::model::error::{Error, Result};
use crate::analytics::model::summary::{Day, TimeUnit};

/// Highest calibration frequency that gets its own row; larger ones are pooled.
pub const POOLED_FROM: u32 = 7;

/// Which customers a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrequencyBucket {
    /// Calibration frequency exactly this.
    Exactly(u32),
    /// Calibration frequency at least this.
    AtLeast(u32),
    /// Every customer (the totals row).
    All,
}

impl fmt::Display for FrequencyBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrequencyBucket::Exactly(x) => write!(f, "{x}"),
            FrequencyBucket::AtLeast(x) => write!(f, "{x}+"),
            FrequencyBucket::All => write!(f, "total"),
        }
    }
}

/// One row of the validation table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationRow {
    pub bucket: FrequencyBucket,
    pub customers: usize,
    /// Sum of actual holdout transactions.
    pub actual_total: f64,
    /// Sum of predicted holdout transactions.
    pub predicted_total: f64,
    /// Mean actual holdout transactions per customer (0 for an empty row).
    pub actual_mean: f64,
    /// Mean predicted holdout transactions per customer (0 for an empty row).
    pub predicted_mean: f64,
}

impl ValidationRow {
    fn new(bucket: FrequencyBucket) -> Self {
        ValidationRow {
            bucket,
            customers: 0,
            actual_total: 0.0,
            predicted_total: 0.0,
            actual_mean: 0.0,
            predicted_mean: 0.0,
        }
    }

    fn add(&mut self, actual: f64, predicted: f64) {
        self.customers += 1;
        self.actual_total += actual;
        self.predicted_total += predicted;
    }

    /// `100 · (predicted − actual) / actual`, or `None` when nothing actually happened in the
    /// row (an error relative to zero is not a number).
    pub fn percentage_error(&self) -> Option<f64> {
        percentage_error(self.predicted_total, self.actual_total)
    }

    fn finish(&mut self) {
        if self.customers > 0 {
            let n = self.customers as f64;
            self.actual_mean = self.actual_total / n;
            self.predicted_mean = self.predicted_total / n;
        }
    }
}

/// The validation table: rows for frequencies 0..=6 and 7+, and the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationTable {
    pub rows: Vec<ValidationRow>,
    pub total: ValidationRow,
}

impl fmt::Display for ValidationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>6} {:>9} {:>10} {:>10} {:>11} {:>11} {:>8}",
            "x", "customers", "actual", "predicted", "actual_sum", "pred_sum", "error_%"
        )?;
        for row in self.rows.iter().chain(std::iter::once(&self.total)) {
            writeln!(
                f,
                "{:>6} {:>9} {:>10.4} {:>10.4} {:>11.1} {:>11.1} {:>8}",
                row.bucket.to_string(),
                row.customers,
                row.actual_mean,
                row.predicted_mean,
                row.actual_total,
                row.predicted_total,
                format_error(row.percentage_error())
            )?;
        }
        Ok(())
    }
}

/// Builds the table. `calibration[i]` and `holdout_transactions[i]` must describe
/// the same customer (as [`crate::analytics::model::summary::calibration_summary`] and
/// [`crate::analytics::model::summary::holdout_summary`] return them); `holdout_length` is the holdout
/// period's length in the model's time unit.
pub fn holdout_validation(
    params: &BgNbdParams,
    calibration: &[Observation],
    holdout_transactions: &[u32],
    holdout_length: f64,
) -> Result<ValidationTable> {
    if calibration.len() != holdout_transactions.len() {
        return Err(Error::InvalidArgument(
            "calibration and holdout inputs have different lengths",
        ));
    }
    let mut rows: Vec<ValidationRow> = (0..POOLED_FROM)
        .map(|x| ValidationRow::new(FrequencyBucket::Exactly(x)))
        .chain(std::iter::once(ValidationRow::new(
            FrequencyBucket::AtLeast(POOLED_FROM),
        )))
        .collect();
    let mut total = ValidationRow::new(FrequencyBucket::All);
    for (index, (obs, &actual)) in calibration.iter().zip(holdout_transactions).enumerate() {
        let predicted = bgnbd::conditional_expected_transactions(params, obs, holdout_length)
            .map_err(|e| match e {
                Error::InvalidObservation { reason, .. } => {
                    Error::InvalidObservation { index, reason }
                }
                other => other,
            })?;
        let bucket = obs.frequency.min(POOLED_FROM) as usize;
        rows[bucket].add(f64::from(actual), predicted);
        total.add(f64::from(actual), predicted);
    }
    rows.iter_mut().for_each(ValidationRow::finish);
    total.finish();
    Ok(ValidationTable { rows, total })
}

/// `100 · (predicted − actual) / actual`; `None` when `actual` is 0.
pub fn percentage_error(predicted: f64, actual: f64) -> Option<f64> {
    (actual != 0.0).then(|| 100.0 * (predicted - actual) / actual)
}

fn format_error(error: Option<f64>) -> String {
    error.map_or_else(|| "-".to_owned(), |e| format!("{e:+.1}"))
}

/// Days between two tracking points.
pub const TRACKING_STEP_DAYS: i64 = 7;

/// One point of the cumulative tracking: the end of a week (or the last day).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackingPoint {
    /// 1 for the week that starts on the first purchase day of the data.
    pub week: u32,
    /// The last day the point covers (inclusive).
    pub day: Day,
    /// True for points after the calibration end.
    pub holdout: bool,
    /// Repeat transactions (purchase days after each customer's first) up to `day`.
    pub actual: u64,
    /// The model's expectation of the same: `Σ E[X(day − first purchase)]`.
    pub predicted: f64,
}

impl TrackingPoint {
    pub fn percentage_error(&self) -> Option<f64> {
        percentage_error(self.predicted, self.actual as f64)
    }
}

/// The weekly cumulative tracking of FHL figure 2 for the customers whose purchase days are
/// given (`customers[i]` sorted, first purchase first, as
/// [`crate::analytics::model::summary::purchase_days`] returns them): a point at the end of
/// every week from the first purchase day in the data until `until` (inclusive; a last,
/// shorter week ends on `until`). Repeat days after `until` are not counted.
pub fn cumulative_tracking(
    params: &BgNbdParams,
    customers: &[Vec<Day>],
    calibration_end: Day,
    until: Day,
    unit: TimeUnit,
) -> Result<Vec<TrackingPoint>> {
    params.validate()?;
    let Some(origin) = customers
        .iter()
        .filter_map(|days| days.first())
        .min()
        .copied()
    else {
        return Ok(Vec::new());
    };
    if until < origin {
        return Err(Error::InvalidArgument(
            "tracking ends before the first purchase",
        ));
    }
    // Customers by first purchase day, and every repeat day, so each point costs one model
    // evaluation per distinct first day (with E[X(t)] memoised per whole number of days).
    let mut births: BTreeMap<Day, u64> = BTreeMap::new();
    let mut repeats: Vec<Day> = Vec::new();
    for days in customers {
        if let Some((first, rest)) = days.split_first() {
            *births.entry(*first).or_default() += 1;
            repeats.extend(rest.iter().copied());
        }
    }
    repeats.sort_unstable();
    let mut expected_by_age: HashMap<i64, f64> = HashMap::new();
    let total_days = origin.days_until(until);
    let mut ends: Vec<i64> = (1..)
        .map(|week| week * TRACKING_STEP_DAYS - 1)
        .take_while(|&end| end < total_days)
        .collect();
    ends.push(total_days);
    let mut points = Vec::with_capacity(ends.len());
    let mut counted = 0usize;
    for (index, end) in ends.into_iter().enumerate() {
        // `end` lies between 0 and `until − origin`, a difference of two `Day`s: it fits.
        let day = Day(origin.0 + end as i32);
        while counted < repeats.len() && repeats[counted] <= day {
            counted += 1;
        }
        let mut predicted = 0.0;
        for (&first, &count) in births.range(..=day) {
            let age = first.days_until(day);
            let expected = match expected_by_age.get(&age) {
                Some(&value) => value,
                None => {
                    let value = bgnbd::expected_transactions(params, age as f64 / unit.days())?;
                    expected_by_age.insert(age, value);
                    value
                }
            };
            predicted += count as f64 * expected;
        }
        points.push(TrackingPoint {
            week: index as u32 + 1,
            day,
            holdout: day > calibration_end,
            actual: counted as u64,
            predicted,
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BG: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn groups_and_totals() {
        let obs = |x, tx, t| Observation {
            frequency: x,
            recency: tx,
            t,
        };
        let cal = [
            obs(0, 0.0, 30.0),
            obs(0, 0.0, 20.0),
            obs(2, 10.0, 30.0),
            obs(9, 29.0, 30.0),
            obs(12, 25.0, 30.0),
        ];
        let hold = [0, 1, 2, 5, 3];
        let t = holdout_validation(&BG, &cal, &hold, 39.0).unwrap();
        assert_eq!(t.rows.len(), 8);
        assert_eq!(t.rows[0].customers, 2);
        assert_eq!(t.rows[0].actual_mean, 0.5);
        assert_eq!(t.rows[1].customers, 0);
        assert_eq!(t.rows[1].predicted_mean, 0.0);
        assert_eq!(t.rows[7].bucket, FrequencyBucket::AtLeast(7));
        assert_eq!((t.rows[7].customers, t.rows[7].actual_total), (2, 8.0));
        assert_eq!((t.total.customers, t.total.actual_total), (5, 11.0));
        let sum: f64 = t.rows.iter().map(|r| r.predicted_total).sum();
        assert!((sum - t.total.predicted_total).abs() < 1e-12);
        let p = bgnbd::conditional_expected_transactions(&BG, &cal[2], 39.0).unwrap();
        assert_eq!(t.rows[2].predicted_mean, p);
        assert!(t.to_string().contains("total"));
        assert!(holdout_validation(&BG, &cal, &hold[..4], 39.0).is_err());
        let bad = [obs(1, 40.0, 30.0)];
        assert!(matches!(
            holdout_validation(&BG, &bad, &[0], 39.0),
            Err(Error::InvalidObservation { index: 0, .. })
        ));
    }

    #[test]
    fn percentage_error_is_relative_to_the_actual_and_absent_at_zero() {
        assert_eq!(percentage_error(110.0, 100.0), Some(10.0));
        assert_eq!(percentage_error(88.0, 100.0), Some(-12.0));
        assert_eq!(percentage_error(3.0, 0.0), None);
        let obs = [Observation {
            frequency: 2,
            recency: 10.0,
            t: 30.0,
        }];
        let t = holdout_validation(&BG, &obs, &[4], 39.0).unwrap();
        let row = t.rows[2];
        let want = 100.0 * (row.predicted_total - 4.0) / 4.0;
        assert_eq!(row.percentage_error(), Some(want));
        assert_eq!(t.rows[0].percentage_error(), None);
        assert!(t.to_string().contains("error_%"));
    }

    #[test]
    fn cumulative_tracking_counts_repeats_and_sums_expectations_by_age() {
        let d = |n| Day(10_000 + n);
        // A buys on day 0 and again on days 3 and 10; B first on day 8, again on 9 and 20.
        let customers = vec![vec![d(0), d(3), d(10)], vec![d(8), d(9), d(20)]];
        let points = cumulative_tracking(&BG, &customers, d(9), d(15), TimeUnit::Week).unwrap();
        let days: Vec<Day> = points.iter().map(|p| p.day).collect();
        assert_eq!(days, vec![d(6), d(13), d(15)]);
        let actual: Vec<u64> = points.iter().map(|p| p.actual).collect();
        assert_eq!(actual, vec![1, 3, 3], "day 20 lies after the end");
        let holdout: Vec<bool> = points.iter().map(|p| p.holdout).collect();
        assert_eq!(holdout, vec![false, true, true]);
        let e = |days: f64| bgnbd::expected_transactions(&BG, days / 7.0).unwrap();
        assert!(
            (points[0].predicted - e(6.0)).abs() < 1e-12,
            "B is not born yet"
        );
        assert!((points[1].predicted - (e(13.0) + e(5.0))).abs() < 1e-12);
        assert_eq!(points[2].week, 3);
        assert!(points[1].predicted <= points[2].predicted);
        let want = 100.0 * (points[2].predicted - 3.0) / 3.0;
        assert_eq!(points[2].percentage_error(), Some(want));
        assert!(cumulative_tracking(&BG, &[], d(9), d(15), TimeUnit::Week)
            .unwrap()
            .is_empty());
        assert!(cumulative_tracking(&BG, &customers, d(9), d(-1), TimeUnit::Week).is_err());
    }
}
