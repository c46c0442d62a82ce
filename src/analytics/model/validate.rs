//! Holdout validation of a fitted BG/NBD model: customers are grouped by their
//! calibration frequency (0, 1, …, 6 and 7+), and for each group the mean number of
//! transactions actually made in the holdout period is compared with the mean of the
//! model's conditional expectations for that period.
//!
//! This is the "conditional expectations" check of Fader, Hardie & Lee (2005),
//! Marketing Science 24(2), figure 4 (there for the CDNOW data with a 39-week
//! holdout), and what `lifetimes`' `plot_calibration_purchases_vs_holdout_purchases`
//! tabulates.

use std::fmt;

use crate::analytics::model::bgnbd::{self, BgNbdParams, Observation};
use crate::analytics::model::error::{Error, Result};

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
            "{:>6} {:>9} {:>10} {:>10} {:>11} {:>11}",
            "x", "customers", "actual", "predicted", "actual_sum", "pred_sum"
        )?;
        for row in self.rows.iter().chain(std::iter::once(&self.total)) {
            writeln!(
                f,
                "{:>6} {:>9} {:>10.4} {:>10.4} {:>11.1} {:>11.1}",
                row.bucket.to_string(),
                row.customers,
                row.actual_mean,
                row.predicted_mean,
                row.actual_total,
                row.predicted_total
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
}
