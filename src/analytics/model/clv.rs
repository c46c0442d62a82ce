//! Customer lifetime value over a finite horizon: expected transactions per month
//! from the BG/NBD model times an expected order value, discounted monthly.
//!
//! This follows `lifetimes`' `customer_lifetime_value` (also used by its
//! `GammaGammaFitter.customer_lifetime_value`) so results are comparable:
//!
//! ```text
//! CLV = Σ_{i=1..months} (E[Y(i·m)] − E[Y((i−1)·m)]) · value / (1 + d)^i
//! ```
//!
//! where `E[Y(t)]` is the BG/NBD conditional expectation
//! ([`crate::analytics::model::bgnbd::conditional_expected_transactions`]), `m` the number of model time
//! units per month ([`TimeUnit::periods_per_month`]: 30 days or 4.345 weeks, the
//! constants `lifetimes` uses), `d` the monthly discount rate and `value` the expected
//! order value, typically the Gamma-Gamma conditional expectation (Fader, Hardie & Lee
//! 2005, JMR 42(4), combine the two models the same way, with continuous discounting).

use crate::analytics::model::bgnbd::{self, BgNbdParams, Observation};
use crate::analytics::model::error::{Error, Result};
use crate::analytics::model::gamma_gamma::{self, GammaGammaParams, SpendObservation};
use crate::analytics::model::summary::TimeUnit;

/// Discounted value over `months` months of a customer with history `obs`, given
/// the expected value of one order (`expected_order_value`, major units) and the
/// monthly discount rate (e.g. `0.01` for 1 % a month). `unit` must be the unit the
/// BG/NBD model was fitted in.
pub fn customer_lifetime_value(
    params: &BgNbdParams,
    obs: &Observation,
    expected_order_value: f64,
    months: u32,
    monthly_discount_rate: f64,
    unit: TimeUnit,
) -> Result<f64> {
    if !expected_order_value.is_finite() {
        return Err(Error::InvalidArgument(
            "expected order value must be finite",
        ));
    }
    if !monthly_discount_rate.is_finite() || monthly_discount_rate <= -1.0 {
        return Err(Error::InvalidArgument(
            "discount rate must be finite and > -1",
        ));
    }
    let per_month = unit.periods_per_month();
    let mut previous = 0.0;
    let mut value = 0.0;
    for i in 1..=months {
        // The cumulative expectation is evaluated at month ends and differenced, so the
        // months add up exactly to E[Y(months · m)].
        let cumulative =
            bgnbd::conditional_expected_transactions(params, obs, f64::from(i) * per_month)?;
        let discount = (1.0 + monthly_discount_rate).powf(f64::from(i));
        value += (cumulative - previous) * expected_order_value / discount;
        previous = cumulative;
    }
    Ok(value)
}

/// [`customer_lifetime_value`] with the order value taken from the Gamma-Gamma
/// model's conditional expectation for this customer's spend history.
pub fn customer_lifetime_value_with_spend_model(
    bgnbd_params: &BgNbdParams,
    spend_params: &GammaGammaParams,
    obs: &Observation,
    spend: &SpendObservation,
    months: u32,
    monthly_discount_rate: f64,
    unit: TimeUnit,
) -> Result<f64> {
    if spend.frequency != obs.frequency {
        return Err(Error::InvalidArgument(
            "spend and purchase histories disagree on frequency",
        ));
    }
    let value = gamma_gamma::conditional_expected_average_value(spend_params, spend)?;
    customer_lifetime_value(
        bgnbd_params,
        obs,
        value,
        months,
        monthly_discount_rate,
        unit,
    )
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
    fn undiscounted_clv_is_expected_transactions_times_value() {
        let o = Observation {
            frequency: 2,
            recency: 30.43,
            t: 38.86,
        };
        let clv = customer_lifetime_value(&BG, &o, 40.0, 12, 0.0, TimeUnit::Week).unwrap();
        let e = bgnbd::conditional_expected_transactions(&BG, &o, 12.0 * 4.345).unwrap();
        assert!((clv - 40.0 * e).abs() < 1e-9 * clv);
    }

    #[test]
    fn discounting_and_units() {
        let o = Observation {
            frequency: 3,
            recency: 20.0,
            t: 30.0,
        };
        let plain = customer_lifetime_value(&BG, &o, 10.0, 6, 0.0, TimeUnit::Week).unwrap();
        let disc = customer_lifetime_value(&BG, &o, 10.0, 6, 0.05, TimeUnit::Week).unwrap();
        assert!(disc < plain && disc > plain / 1.05f64.powi(6));
        // Same customer and model expressed in days (α scales with the unit): equal
        // up to the 30-day vs 4.345-week month constants.
        let bg_days = BgNbdParams {
            alpha: BG.alpha * 7.0,
            ..BG
        };
        let o_days = Observation {
            frequency: 3,
            recency: 140.0,
            t: 210.0,
        };
        let days = customer_lifetime_value(&bg_days, &o_days, 10.0, 6, 0.0, TimeUnit::Day).unwrap();
        let weeks_30 = bgnbd::conditional_expected_transactions(&BG, &o, 6.0 * 30.0 / 7.0).unwrap();
        assert!((days - 10.0 * weeks_30).abs() < 1e-9 * days);
        assert_eq!(
            customer_lifetime_value(&BG, &o, 10.0, 0, 0.01, TimeUnit::Week).unwrap(),
            0.0
        );
        assert!(customer_lifetime_value(&BG, &o, f64::NAN, 6, 0.01, TimeUnit::Week).is_err());
        assert!(customer_lifetime_value(&BG, &o, 1.0, 6, -1.0, TimeUnit::Week).is_err());
    }

    #[test]
    fn with_spend_model() {
        let gg = GammaGammaParams {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let o = Observation {
            frequency: 2,
            recency: 30.43,
            t: 38.86,
        };
        let s = SpendObservation {
            frequency: 2,
            mean_value: 50.0,
        };
        let v = gamma_gamma::conditional_expected_average_value(&gg, &s).unwrap();
        let a =
            customer_lifetime_value_with_spend_model(&BG, &gg, &o, &s, 12, 0.01, TimeUnit::Week)
                .unwrap();
        let b = customer_lifetime_value(&BG, &o, v, 12, 0.01, TimeUnit::Week).unwrap();
        assert_eq!(a, b);
        let wrong = SpendObservation {
            frequency: 1,
            mean_value: 50.0,
        };
        assert!(customer_lifetime_value_with_spend_model(
            &BG,
            &gg,
            &o,
            &wrong,
            12,
            0.01,
            TimeUnit::Week
        )
        .is_err());
    }
}
