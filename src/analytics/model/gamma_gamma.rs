//! The Gamma-Gamma model of monetary value: fitting by maximum likelihood and the
//! expected average order value of a customer given their spending history.
//!
//! Sources: P. S. Fader, B. G. S. Hardie & K. L. Lee (2005), "RFM and CLV: Using
//! Iso-Value Curves for Customer Base Analysis", *Journal of Marketing Research*
//! 42(4), 415–430 (appendix), and P. S. Fader & B. G. S. Hardie (2013), "The
//! Gamma-Gamma Model of Monetary Value" (note at brucehardie.com).
//!
//! Model: the value of each of a customer's transactions is `Gamma(p, ν)`; across
//! customers `ν ~ Gamma(q, γ)`. A customer is summarised by `x` repeat transactions
//! and their mean value `m_x` (in major currency units; `γ` has that unit). The
//! density of `m_x` given `x` (derived in the note) gives the per-customer log-likelihood
//!
//! ```text
//! ln f = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln m_x + px ln x
//!        − (px+q) ln(γ + x m_x)
//! ```
//!
//! and the conditional expectation of the customer's mean transaction value (note
//! and JMR appendix) is a weighted average of the population mean `pγ/(q−1)` and `m_x`:
//!
//! ```text
//! E[M | p, q, γ, m_x, x] = p (γ + x m_x) / (px + q − 1)
//! ```
//!
//! The model assumes spend is independent of the purchase process, and it is fitted
//! only on customers with at least one repeat transaction (the first purchase is
//! excluded from `m_x`, see [`crate::analytics::model::summary`]).

use crate::analytics::model::error::{Error, Result};
use crate::analytics::model::optimize;
use crate::analytics::model::special::ln_gamma;

/// Spending history of one customer as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendObservation {
    /// `x`: number of repeat transactions.
    pub frequency: u32,
    /// `m_x`: mean value of those transactions in major units (e.g. dollars).
    pub mean_value: f64,
}

/// Gamma-Gamma parameters `p`, `q`, `γ` (`γ` in the currency's major unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGammaParams {
    /// Checks that every parameter is finite and positive.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [("p", self.p), ("q", self.q), ("gamma", self.gamma)] {
            if !value.is_finite() || value <= 0.0 {
                return Err(Error::InvalidParameter { name, value });
            }
        }
        Ok(())
    }

    /// Population mean transaction value `pγ/(q−1)`; it exists only for `q > 1`.
    pub fn population_mean_value(&self) -> Result<f64> {
        self.validate()?;
        if self.q <= 1.0 {
            return Err(Error::InvalidParameter {
                name: "q",
                value: self.q,
            });
        }
        Ok(self.p * self.gamma / (self.q - 1.0))
    }
}

/// A maximum-likelihood fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaFit {
    pub params: GammaGammaParams,
    /// Total log-likelihood over the customers used.
    pub log_likelihood: f64,
    /// Customers used (those with `frequency > 0`).
    pub customers: usize,
    /// Likelihood evaluations used.
    pub evaluations: usize,
}

/// Settings of [`fit_with`].
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Starting point; by default `p = 1, q = 2, γ = mean m_x`, which puts the
    /// population mean at the sample mean whatever the currency unit.
    pub initial: Option<GammaGammaParams>,
    pub max_evaluations: usize,
    pub max_restarts: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            initial: None,
            max_evaluations: 20_000,
            max_restarts: 20,
        }
    }
}

/// Repeat customers in a form that is cheap to evaluate: the Gamma-function terms
/// depend on `x` only, so they are computed once per distinct frequency.
struct Compiled {
    xs: Vec<u32>,
    /// `(index into xs, x, ln m_x, x·m_x)` per customer.
    rows: Vec<(usize, f64, f64, f64)>,
    mean_value: f64,
}

impl Compiled {
    /// Keeps customers with `frequency > 0` and checks their values.
    fn new(data: &[SpendObservation]) -> Result<Compiled> {
        let mut xs: Vec<u32> = data
            .iter()
            .filter(|o| o.frequency > 0)
            .map(|o| o.frequency)
            .collect();
        xs.sort_unstable();
        xs.dedup();
        let mut rows = Vec::with_capacity(data.len());
        let mut total = 0.0;
        for (index, o) in data.iter().enumerate() {
            if o.frequency == 0 {
                continue;
            }
            if !o.mean_value.is_finite() || o.mean_value <= 0.0 {
                return Err(Error::InvalidObservation {
                    index,
                    reason: "mean repeat value must be finite and positive",
                });
            }
            let x = f64::from(o.frequency);
            let xi = xs.binary_search(&o.frequency).unwrap_or(0);
            rows.push((xi, x, o.mean_value.ln(), x * o.mean_value));
            total += o.mean_value;
        }
        if rows.is_empty() {
            return Err(Error::NotEnoughData("no customer with repeat transactions"));
        }
        let mean_value = total / rows.len() as f64;
        Ok(Compiled {
            xs,
            rows,
            mean_value,
        })
    }

    fn log_likelihood(&self, params: &GammaGammaParams) -> f64 {
        let GammaGammaParams { p, q, gamma } = *params;
        let lg_q = ln_gamma(q);
        let q_ln_gamma = q * gamma.ln();
        let per_x: Vec<f64> = self
            .xs
            .iter()
            .map(|&x| {
                let px = p * f64::from(x);
                ln_gamma(px + q) - ln_gamma(px) - lg_q + q_ln_gamma + px * f64::from(x).ln()
            })
            .collect();
        self.rows
            .iter()
            .map(|&(xi, x, ln_m, xm)| {
                let px = p * x;
                per_x[xi] + (px - 1.0) * ln_m - (px + q) * (gamma + xm).ln()
            })
            .sum()
    }
}

/// Sum of the log-likelihoods of the customers with `frequency > 0`.
pub fn log_likelihood(params: &GammaGammaParams, data: &[SpendObservation]) -> Result<f64> {
    params.validate()?;
    Ok(Compiled::new(data)?.log_likelihood(params))
}

/// Fits the model by maximum likelihood with default [`FitOptions`]. Customers with
/// `frequency == 0` are skipped: they carry no repeat-spend information.
pub fn fit(data: &[SpendObservation]) -> Result<GammaGammaFit> {
    fit_with(data, &FitOptions::default())
}

/// Fits the model by maximum likelihood (Nelder–Mead on log-parameters, see
/// [`crate::analytics::model::optimize`]; objective = mean negative log-likelihood per customer).
pub fn fit_with(data: &[SpendObservation], options: &FitOptions) -> Result<GammaGammaFit> {
    let compiled = Compiled::new(data)?;
    let start = match options.initial {
        Some(p) => {
            p.validate()?;
            p
        }
        None => GammaGammaParams {
            p: 1.0,
            q: 2.0,
            gamma: compiled.mean_value,
        },
    };
    let n = compiled.rows.len() as f64;
    let to_params = |th: &[f64]| GammaGammaParams {
        p: th[0].exp(),
        q: th[1].exp(),
        gamma: th[2].exp(),
    };
    let objective = |th: &[f64]| {
        if th.iter().any(|v| v.abs() > 30.0) {
            return f64::INFINITY;
        }
        -compiled.log_likelihood(&to_params(th)) / n
    };
    let opts = optimize::Options {
        initial_step: 0.5,
        f_tol: 1e-12,
        x_tol: 1e-7,
        max_evaluations: options.max_evaluations,
        max_restarts: options.max_restarts,
    };
    let theta0 = [start.p.ln(), start.q.ln(), start.gamma.ln()];
    let m = optimize::minimize(objective, &theta0, &opts);
    if !m.converged || !m.value.is_finite() {
        return Err(Error::NoConvergence("Gamma-Gamma maximum likelihood"));
    }
    let params = to_params(&m.x);
    Ok(GammaGammaFit {
        params,
        log_likelihood: compiled.log_likelihood(&params),
        customers: compiled.rows.len(),
        evaluations: m.evaluations,
    })
}

/// Expected mean transaction value of a customer, `p (γ + x m_x) / (px + q − 1)`.
///
/// For `frequency == 0` this is the population mean `pγ/(q−1)` (and `mean_value` is
/// ignored), which needs `q > 1`. For `frequency > 0` it needs `px + q > 1`.
pub fn conditional_expected_average_value(
    params: &GammaGammaParams,
    obs: &SpendObservation,
) -> Result<f64> {
    params.validate()?;
    if obs.frequency == 0 {
        return params.population_mean_value();
    }
    if !obs.mean_value.is_finite() || obs.mean_value < 0.0 {
        return Err(Error::InvalidObservation {
            index: 0,
            reason: "mean repeat value must be finite and non-negative",
        });
    }
    let x = f64::from(obs.frequency);
    let denominator = params.p * x + params.q - 1.0;
    if denominator <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "q",
            value: params.q,
        });
    }
    Ok(params.p * (params.gamma + x * obs.mean_value) / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: GammaGammaParams = GammaGammaParams {
        p: 6.25,
        q: 3.74,
        gamma: 15.44,
    };

    #[test]
    fn conditional_value_is_a_weighted_average() {
        let pop = CDNOW.population_mean_value().unwrap();
        let zero = SpendObservation {
            frequency: 0,
            mean_value: 0.0,
        };
        assert!((conditional_expected_average_value(&CDNOW, &zero).unwrap() - pop).abs() < 1e-12);
        for (x, m) in [(1, 10.0), (3, 100.0), (50, 35.0)] {
            let e = conditional_expected_average_value(
                &CDNOW,
                &SpendObservation {
                    frequency: x,
                    mean_value: m,
                },
            )
            .unwrap();
            // Lies between the population mean and the customer's own mean…
            assert!(e >= pop.min(m) && e <= pop.max(m));
            // …with weight px/(px+q−1) on the customer's mean.
            let w = CDNOW.p * f64::from(x) / (CDNOW.p * f64::from(x) + CDNOW.q - 1.0);
            assert!((e - (w * m + (1.0 - w) * pop)).abs() < 1e-9 * e);
        }
        let q_small = GammaGammaParams { q: 0.9, ..CDNOW };
        assert!(conditional_expected_average_value(&q_small, &zero).is_err());
    }

    #[test]
    fn log_likelihood_integrates_to_one() {
        // The density of m_x for fixed x integrates to 1 over (0, ∞); checked with a
        // midpoint rule on a log-spaced grid.
        let x = 3u32;
        let (mut m, mut total) = (1e-4f64, 0.0);
        let step = 1.001f64;
        while m < 1e5 {
            let next = m * step;
            let mid = 0.5 * (m + next);
            let ll = log_likelihood(
                &CDNOW,
                &[SpendObservation {
                    frequency: x,
                    mean_value: mid,
                }],
            )
            .unwrap();
            total += ll.exp() * (next - m);
            m = next;
        }
        assert!((total - 1.0).abs() < 1e-4, "{total}");
    }

    #[test]
    fn fit_input_checks() {
        let zero = SpendObservation {
            frequency: 0,
            mean_value: 0.0,
        };
        assert!(matches!(fit(&[zero]), Err(Error::NotEnoughData(_))));
        let bad = SpendObservation {
            frequency: 2,
            mean_value: 0.0,
        };
        assert!(matches!(
            fit(&[zero, bad]),
            Err(Error::InvalidObservation { index: 1, .. })
        ));
    }
}
