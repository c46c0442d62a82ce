//! The BG/NBD ("beta-geometric / negative binomial distribution") model of repeat
//! purchasing in a non-contractual setting: fitting by maximum likelihood and the
//! customer-level predictions built on it.
//!
//! Source: P. S. Fader, B. G. S. Hardie & K. L. Lee (2005), "Counting Your Customers
//! the Easy Way: An Alternative to the Pareto/NBD Model", *Marketing Science* 24(2),
//! 275–284 (below "FHL"), and the companion notes by the same authors,
//! "Implementing the BG/NBD Model for Customer Base Analysis in Excel" (2005) and
//! "Computing P(alive) Using the BG/NBD Model" (2008), all at brucehardie.com.
//!
//! Model: while alive a customer buys with a Poisson rate `λ ~ Gamma(r, α)` (shape
//! `r`, rate `α`); after every repeat purchase they drop out with probability
//! `p ~ Beta(a, b)`. A customer is summarised by `x` repeat transactions, the time of
//! the last one `t_x`, and the observation length `T` (all measured from the first
//! purchase, see [`crate::analytics::model::summary`]).
//!
//! Likelihood of one customer (FHL eq. 6; the Excel note writes its logarithm as
//! `ln L = A1 + A2 + ln(e^A3 + δ_{x>0} e^A4)`, which is what is computed here):
//!
//! ```text
//! A1 = ln Γ(r+x) − ln Γ(r) + r ln α
//! A2 = ln Γ(a+b) + ln Γ(b+x) − ln Γ(b) − ln Γ(a+b+x)
//! A3 = −(r+x) ln(α+T)
//! A4 = ln a − ln(b+x−1) − (r+x) ln(α+t_x)        (only when x > 0)
//! ```

use crate::analytics::model::error::{Error, Result};
use crate::analytics::model::optimize;
use crate::analytics::model::special::{ln_gamma, series_tail};

/// Calibration summary of one customer as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// `x`: repeat transactions in the calibration period.
    pub frequency: u32,
    /// `t_x`: time from the first to the last transaction (ignored when `x = 0`).
    pub recency: f64,
    /// `T`: time from the first transaction to the end of calibration.
    pub t: f64,
}

/// BG/NBD parameters: `r, α` of the Gamma purchase-rate distribution (`α` is in the
/// data's time unit) and `a, b` of the Beta dropout distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbdParams {
    /// Checks that every parameter is finite and positive.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("r", self.r),
            ("alpha", self.alpha),
            ("a", self.a),
            ("b", self.b),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return Err(Error::InvalidParameter { name, value });
            }
        }
        Ok(())
    }
}

/// Checks one observation; `index` is only used in the error.
fn validate_observation(index: usize, o: &Observation) -> Result<()> {
    let bad = |reason| Err(Error::InvalidObservation { index, reason });
    if !o.t.is_finite() || o.t < 0.0 {
        return bad("T must be finite and non-negative");
    }
    if !o.recency.is_finite() || o.recency < 0.0 {
        return bad("recency must be finite and non-negative");
    }
    if o.recency > o.t {
        return bad("recency exceeds T");
    }
    Ok(())
}

/// Customers with identical `(x, t_x, T)` contribute identical likelihood terms, and
/// calendar-day data has few distinct `t_x` and `T` values. The fit therefore works on
/// a compressed form: distinct values are stored once (so `ln(α + ·)` is computed
/// once per value per evaluation) and rows carry indices and a multiplicity.
struct Compiled {
    /// Distinct frequencies, ascending.
    xs: Vec<u32>,
    /// Distinct `t_x` values of customers with `x > 0`.
    tx_values: Vec<f64>,
    /// Distinct `T` values.
    t_values: Vec<f64>,
    rows: Vec<Row>,
    total_weight: f64,
}

#[derive(Clone, Copy)]
struct Row {
    x_idx: u32,
    /// Index into `tx_values`; unused (0) when `x = 0`.
    tx_idx: u32,
    t_idx: u32,
    weight: f64,
}

fn distinct(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn index_of(values: &[f64], v: f64) -> u32 {
    // `v` was inserted into `values` by construction, so the search always succeeds;
    // falling back to 0 keeps this total without a panic path.
    values.binary_search_by(|p| p.total_cmp(&v)).unwrap_or(0) as u32
}

impl Compiled {
    fn new(data: &[Observation]) -> Result<Compiled> {
        for (i, o) in data.iter().enumerate() {
            validate_observation(i, o)?;
        }
        let mut xs: Vec<u32> = data.iter().map(|o| o.frequency).collect();
        xs.sort_unstable();
        xs.dedup();
        let tx_values = distinct(
            data.iter()
                .filter(|o| o.frequency > 0)
                .map(|o| o.recency)
                .collect(),
        );
        let t_values = distinct(data.iter().map(|o| o.t).collect());
        let mut keys: Vec<(u32, u32, u32)> = data
            .iter()
            .map(|o| {
                let x_idx = xs.binary_search(&o.frequency).unwrap_or(0) as u32;
                let tx_idx = if o.frequency > 0 {
                    index_of(&tx_values, o.recency)
                } else {
                    0
                };
                (x_idx, tx_idx, index_of(&t_values, o.t))
            })
            .collect();
        keys.sort_unstable();
        let mut rows: Vec<Row> = Vec::new();
        for (x_idx, tx_idx, t_idx) in keys {
            match rows.last_mut() {
                Some(r) if (r.x_idx, r.tx_idx, r.t_idx) == (x_idx, tx_idx, t_idx) => {
                    r.weight += 1.0
                }
                _ => rows.push(Row {
                    x_idx,
                    tx_idx,
                    t_idx,
                    weight: 1.0,
                }),
            }
        }
        Ok(Compiled {
            xs,
            tx_values,
            t_values,
            rows,
            total_weight: data.len() as f64,
        })
    }

    /// Total log-likelihood at `p` (assumed valid).
    fn log_likelihood(&self, p: &BgNbdParams) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *p;
        let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
        let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
        // Per-frequency constants: A1 + A2, the exponent r + x, and ln a − ln(b+x−1).
        let per_x: Vec<(f64, f64, f64, bool)> = self
            .xs
            .iter()
            .map(|&x| {
                let x = f64::from(x);
                let a1 = ln_gamma(r + x) - lg_r + r * ln_alpha;
                let a2 = lg_ab + ln_gamma(b + x) - lg_b - ln_gamma(a + b + x);
                let c4 = if x > 0.0 {
                    ln_a - (b + x - 1.0).ln()
                } else {
                    0.0
                };
                (a1 + a2, r + x, c4, x > 0.0)
            })
            .collect();
        let ln_tx: Vec<f64> = self.tx_values.iter().map(|v| (alpha + v).ln()).collect();
        let ln_t: Vec<f64> = self.t_values.iter().map(|v| (alpha + v).ln()).collect();
        let mut total = 0.0;
        for row in &self.rows {
            let (c12, k, c4, repeat) = per_x[row.x_idx as usize];
            let a3 = -k * ln_t[row.t_idx as usize];
            let ll = if repeat {
                let a4 = c4 - k * ln_tx[row.tx_idx as usize];
                // log(e^A3 + e^A4) without overflow or underflow.
                let (hi, lo) = if a3 > a4 { (a3, a4) } else { (a4, a3) };
                c12 + hi + (lo - hi).exp().ln_1p()
            } else {
                c12 + a3
            };
            total += row.weight * ll;
        }
        total
    }
}

/// Sum of the customers' log-likelihoods at `params`.
pub fn log_likelihood(params: &BgNbdParams, data: &[Observation]) -> Result<f64> {
    params.validate()?;
    Ok(Compiled::new(data)?.log_likelihood(params))
}

/// Settings of [`fit_with`].
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Starting point; by default `r = 1, a = 1, b = 1` and `α` chosen so that the
    /// implied purchase rate matches the data's mean frequency over mean `T` (this
    /// keeps the start sensible whatever the time unit).
    pub initial: Option<BgNbdParams>,
    /// Cap on likelihood evaluations over all simplex restarts.
    pub max_evaluations: usize,
    /// Cap on simplex restarts after the first run.
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

/// A maximum-likelihood fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdFit {
    /// False when the search stopped at its evaluation limit (typically at a boundary of the
    /// parameter space); the parameters are then the best found, not a proven maximum.
    pub converged: bool,
    pub params: BgNbdParams,
    /// Total log-likelihood at `params`.
    pub log_likelihood: f64,
    /// Likelihood evaluations used.
    pub evaluations: usize,
}

/// Fits the model by maximum likelihood with default [`FitOptions`].
pub fn fit(data: &[Observation]) -> Result<BgNbdFit> {
    fit_with(data, &FitOptions::default())
}

/// Fits the model by maximum likelihood.
///
/// The search runs Nelder–Mead (see [`crate::analytics::model::optimize`]) on the logarithms of the
/// four parameters, which keeps them positive without constraints and makes the
/// simplex steps scale-free; the objective is the mean negative log-likelihood per
/// customer. Log-parameters beyond ±30 are treated as infeasible so that degenerate
/// data cannot push the search to overflow.
pub fn fit_with(data: &[Observation], options: &FitOptions) -> Result<BgNbdFit> {
    if data.is_empty() {
        return Err(Error::NotEnoughData("no observations"));
    }
    let compiled = Compiled::new(data)?;
    if data.iter().all(|o| o.frequency == 0) {
        // Without any repeat purchase the likelihood has no interior maximum.
        return Err(Error::NotEnoughData("no customer has a repeat transaction"));
    }
    let start = match options.initial {
        Some(p) => {
            p.validate()?;
            p
        }
        None => {
            let n = data.len() as f64;
            let mean_x = data.iter().map(|o| f64::from(o.frequency)).sum::<f64>() / n;
            let mean_t = data.iter().map(|o| o.t).sum::<f64>() / n;
            let alpha = (mean_t / mean_x).clamp(1e-6, 1e6);
            BgNbdParams {
                r: 1.0,
                alpha,
                a: 1.0,
                b: 1.0,
            }
        }
    };
    let to_params = |theta: &[f64]| BgNbdParams {
        r: theta[0].exp(),
        alpha: theta[1].exp(),
        a: theta[2].exp(),
        b: theta[3].exp(),
    };
    let objective = |theta: &[f64]| {
        if theta.iter().any(|v| v.abs() > 30.0) {
            return f64::INFINITY;
        }
        -compiled.log_likelihood(&to_params(theta)) / compiled.total_weight
    };
    let theta0 = [start.r.ln(), start.alpha.ln(), start.a.ln(), start.b.ln()];
    let opts = optimize::Options {
        initial_step: 0.5,
        f_tol: 1e-12,
        x_tol: 1e-7,
        max_evaluations: options.max_evaluations,
        max_restarts: options.max_restarts,
    };
    let m = optimize::minimize(objective, &theta0, &opts);
    // Data that the model does not describe well (e.g. nobody ever drops out) puts the
    // maximum at a boundary of the parameter space, where the simplex cannot meet its
    // tolerance. The best point found is still the best fit there is: it is returned with
    // `converged: false` so the caller can say so, rather than failing the whole run.
    if !m.value.is_finite() {
        return Err(Error::NoConvergence("BG/NBD maximum likelihood"));
    }
    let params = to_params(&m.x);
    Ok(BgNbdFit {
        params,
        log_likelihood: compiled.log_likelihood(&params),
        evaluations: m.evaluations,
        converged: m.converged,
    })
}

/// `P(alive | x, t_x, T)`: probability that the customer has not yet dropped out at
/// `T` (note "Computing P(alive) Using the BG/NBD Model"):
///
/// ```text
/// P(alive) = 1 / (1 + δ_{x>0} · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))
/// ```
///
/// Customers without repeat purchases cannot have dropped out (dropout only happens
/// right after a repeat purchase), so they get exactly 1.
pub fn probability_alive(params: &BgNbdParams, obs: &Observation) -> Result<f64> {
    params.validate()?;
    validate_observation(0, obs)?;
    Ok(p_alive_unchecked(params, obs))
}

fn p_alive_unchecked(p: &BgNbdParams, o: &Observation) -> f64 {
    if o.frequency == 0 {
        return 1.0;
    }
    let x = f64::from(o.frequency);
    // The odds of being dead, in logs so that large x cannot overflow the power.
    let ln_odds = p.a.ln() - (p.b + x - 1.0).ln()
        + (p.r + x) * ((p.alpha + o.t).ln() - (p.alpha + o.recency).ln());
    1.0 / (1.0 + ln_odds.exp())
}

/// Expected transactions in the next `t` periods of a customer with history
/// `(x, t_x, T)`, `E[Y(t) | x, t_x, T]` (FHL eq. 10):
///
/// ```text
///           (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
/// E[Y(t)] = ─────────────────────────────────────────────────────────────────────────────
///                          1 + δ_{x>0} · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)
/// ```
///
/// The denominator is `1 / P(alive)`. See [`expected_count_core`] for how the
/// hypergeometric part is evaluated stably.
pub fn conditional_expected_transactions(
    params: &BgNbdParams,
    obs: &Observation,
    t: f64,
) -> Result<f64> {
    params.validate()?;
    validate_observation(0, obs)?;
    if !t.is_finite() || t < 0.0 {
        return Err(Error::InvalidArgument(
            "prediction horizon must be finite and >= 0",
        ));
    }
    conditional_unchecked(params, obs, t)
}

pub(crate) fn conditional_unchecked(p: &BgNbdParams, o: &Observation, t: f64) -> Result<f64> {
    if t == 0.0 {
        return Ok(0.0);
    }
    let x = f64::from(o.frequency);
    let core = expected_count_core(p.r + x, p.alpha + o.t, p.a, p.b + x, t)?;
    Ok(p_alive_unchecked(p, o) * core)
}

/// Unconditional expected transactions of a randomly chosen new customer in `(0, t]`
/// after their first purchase, `E[X(t)]` (FHL section 3):
///
/// ```text
/// E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))]
/// ```
pub fn expected_transactions(params: &BgNbdParams, t: f64) -> Result<f64> {
    params.validate()?;
    if !t.is_finite() || t < 0.0 {
        return Err(Error::InvalidArgument("time must be finite and >= 0"));
    }
    if t == 0.0 {
        return Ok(0.0);
    }
    expected_count_core(params.r, params.alpha, params.a, params.b, t)
}

/// Evaluates `(a+b'−1)/(a−1) · [1 − (1−z)^k ₂F₁(k, b'; a+b'−1; z)]` with
/// `z = t/(s+t)`, which is the bracketed part of both E[X(t)] (`k = r, s = α, b' = b`)
/// and E[Y(t)] (`k = r+x, s = α+T, b' = b+x`).
///
/// Two numerical points:
/// * Writing `c = a+b'−1` and `₂F₁ = 1 + S/c` with
///   `S = Σ_{n≥1} (k)_n (b')_n / ((c+1)_{n−1} n!) zⁿ`, the bracket times `c` is
///   `c(1 − (1−z)^k) − (1−z)^k S`. `S` has only positive terms (`c > −1` always), so
///   there is no cancellation inside the series and no division by `c`, which can be
///   0 when `x = 0` and `a + b = 1`. The series converges geometrically with ratio `z`;
///   since `t` is the horizon and `s ≥ α`, `z` is close to 1 only for horizons far
///   longer than the customer's history. Its partial sums are kept in scaled form so
///   large `k` cannot overflow before the `(1−z)^k` factor shrinks them.
/// * At `a = 1` numerator and denominator vanish together (the expression stays
///   finite). Within `1e-4` of that point the value is interpolated linearly between
///   `a = 1 ± 1e-4`, which bounds the cancellation error; the interpolation error is
///   of order `1e-8` relative.
fn expected_count_core(k: f64, s: f64, a: f64, b_prime: f64, t: f64) -> Result<f64> {
    const H: f64 = 1e-4;
    let z = t / (s + t);
    // ln(1 − z) = ln s − ln(s + t), exact even when z is tiny.
    let ln_one_minus_z = s.ln() - (s + t).ln();
    let at = |a: f64| -> Result<f64> {
        let c = a + b_prime - 1.0;
        let sum = series_tail(k, b_prime, c, z, k * b_prime * z)?;
        let one_minus_pow = -(k * ln_one_minus_z).exp_m1();
        let scaled_sum = if sum.mantissa == 0.0 {
            0.0
        } else {
            (k * ln_one_minus_z + sum.ln_abs()).exp()
        };
        Ok((c * one_minus_pow - scaled_sum) / (a - 1.0))
    };
    if (a - 1.0).abs() >= H {
        return at(a);
    }
    let lo = at(1.0 - H)?;
    let hi = at(1.0 + H)?;
    Ok(lo + (hi - lo) * (a - (1.0 - H)) / (2.0 * H))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::model::special::hyp2f1;

    const CDNOW: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn obs(x: u32, tx: f64, t: f64) -> Observation {
        Observation {
            frequency: x,
            recency: tx,
            t,
        }
    }

    /// Direct transcription of FHL eq. 10 using the general `hyp2f1`.
    fn reference_conditional(p: &BgNbdParams, o: &Observation, t: f64) -> f64 {
        let x = f64::from(o.frequency);
        let (r, al, a, b) = (p.r, p.alpha, p.a, p.b);
        let z = t / (al + o.t + t);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z).unwrap();
        let num =
            (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((al + o.t) / (al + o.t + t)).powf(r + x) * f);
        let den = if o.frequency > 0 {
            1.0 + a / (b + x - 1.0) * ((al + o.t) / (al + o.recency)).powf(r + x)
        } else {
            1.0
        };
        num / den
    }

    #[test]
    fn p_alive_is_one_without_repeats() {
        for t in [0.0, 1.0, 38.86, 1000.0] {
            assert_eq!(probability_alive(&CDNOW, &obs(0, 0.0, t)).unwrap(), 1.0);
        }
        // Buying recently (t_x = T) beats buying long ago, and more so with more
        // purchases behind the same gap.
        let recent = probability_alive(&CDNOW, &obs(2, 30.0, 30.0)).unwrap();
        let old = probability_alive(&CDNOW, &obs(2, 5.0, 30.0)).unwrap();
        let old_many = probability_alive(&CDNOW, &obs(10, 5.0, 30.0)).unwrap();
        assert!(recent > old && old > old_many && old_many > 0.0);
        // t_x = T: P(alive) = 1 / (1 + a/(b+x−1)).
        let want = 1.0 / (1.0 + CDNOW.a / (CDNOW.b + 1.0));
        assert!((recent - want).abs() < 1e-15);
        // Huge frequencies neither overflow nor produce NaN.
        let p = probability_alive(&CDNOW, &obs(5_000, 1.0, 1000.0)).unwrap();
        assert!((0.0..1e-300).contains(&p));
    }

    #[test]
    fn conditional_expectation_matches_reference_formula() {
        for o in [
            obs(0, 0.0, 38.86),
            obs(2, 30.43, 38.86),
            obs(7, 35.0, 38.0),
            obs(1, 1.0, 20.0),
        ] {
            for t in [0.5, 10.0, 39.0, 52.0, 200.0] {
                let got = conditional_expected_transactions(&CDNOW, &o, t).unwrap();
                let want = reference_conditional(&CDNOW, &o, t);
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs(),
                    "{o:?} t={t}: {got} vs {want}"
                );
            }
        }
        // Also with a > 1.
        let p = BgNbdParams { a: 2.5, ..CDNOW };
        let o = obs(3, 20.0, 30.0);
        let got = conditional_expected_transactions(&p, &o, 39.0).unwrap();
        assert!((got - reference_conditional(&p, &o, 39.0)).abs() < 1e-9 * got);
    }

    #[test]
    fn conditional_expectation_sanity() {
        let o = obs(2, 30.43, 38.86);
        // Value from Hardie's BG/NBD Excel sheet (also asserted by lifetimes' tests): x = 2,
        // t_x = 30.43, T = 38.86 is expected to make about 1.226 purchases in the next
        // 39 weeks.
        let e39 = conditional_expected_transactions(&CDNOW, &o, 39.0).unwrap();
        assert!((e39 - 1.226).abs() < 2e-3, "{e39}");
        assert_eq!(
            conditional_expected_transactions(&CDNOW, &o, 0.0).unwrap(),
            0.0
        );
        // Increasing in t, and bounded by the prediction for a customer surely alive.
        let mut prev = 0.0;
        for t in [1.0, 5.0, 20.0, 52.0, 104.0, 500.0] {
            let e = conditional_expected_transactions(&CDNOW, &o, t).unwrap();
            assert!(e > prev);
            prev = e;
        }
        // More past purchases with the same recency pattern → more future purchases.
        let e_low = conditional_expected_transactions(&CDNOW, &obs(1, 38.0, 38.86), 39.0).unwrap();
        let e_high = conditional_expected_transactions(&CDNOW, &obs(6, 38.0, 38.86), 39.0).unwrap();
        assert!(e_high > e_low);
        // Small t: E[Y(t)] ≈ P(alive) · (r+x)/(α+T) · t.
        let t = 1e-6;
        let approx =
            probability_alive(&CDNOW, &o).unwrap() * (CDNOW.r + 2.0) / (CDNOW.alpha + 38.86) * t;
        let e = conditional_expected_transactions(&CDNOW, &o, t).unwrap();
        assert!((e - approx).abs() < 1e-5 * approx);
        assert!(conditional_expected_transactions(&CDNOW, &o, -1.0).is_err());
        assert!(conditional_expected_transactions(&CDNOW, &obs(1, 5.0, 4.0), 1.0).is_err());
    }

    #[test]
    fn extreme_horizons_and_frequencies() {
        // Horizons far beyond the history (z close to 1) and large x stay finite and
        // increasing; the scaled series keeps intermediate sums in range.
        let mut prev = 0.0;
        for t in [1e2, 1e3, 1e4, 1e5] {
            let e = conditional_expected_transactions(&CDNOW, &obs(300, 38.0, 38.86), t).unwrap();
            assert!(e.is_finite() && e > prev, "t={t}: {e}");
            prev = e;
        }
        let u = expected_transactions(&CDNOW, 1e5).unwrap();
        assert!(u.is_finite() && u > expected_transactions(&CDNOW, 1e4).unwrap());
    }

    #[test]
    fn unconditional_expectation() {
        // At T = 0 with no history the conditional and unconditional forms coincide.
        for t in [1.0, 39.0, 78.0] {
            let u = expected_transactions(&CDNOW, t).unwrap();
            let c = conditional_expected_transactions(&CDNOW, &obs(0, 0.0, 0.0), t).unwrap();
            assert!((u - c).abs() < 1e-12 * u);
        }
        // Small t: E[X(t)] ≈ r t / α.
        let e = expected_transactions(&CDNOW, 1e-6).unwrap();
        assert!((e - CDNOW.r / CDNOW.alpha * 1e-6).abs() < 1e-5 * e);
        // Smooth through the removable singularity at a = 1.
        let near = |a| expected_transactions(&BgNbdParams { a, ..CDNOW }, 39.0).unwrap();
        let (below, at, above) = (near(1.0 - 2e-4), near(1.0), near(1.0 + 2e-4));
        assert!(at.is_finite() && (at - 0.5 * (below + above)).abs() < 1e-7 * at);
        // a + b = 1 (c = 0 for x = 0) is handled without dividing by zero.
        let p = BgNbdParams {
            a: 0.4,
            b: 0.6,
            ..CDNOW
        };
        let v = expected_transactions(&p, 39.0).unwrap();
        let v2 = expected_transactions(&BgNbdParams { b: 0.600001, ..p }, 39.0).unwrap();
        assert!(v.is_finite() && v > 0.0 && (v - v2).abs() < 1e-4 * v);
    }

    #[test]
    fn log_likelihood_single_customer_by_hand() {
        // Evaluate eq. 6 directly for one customer and compare.
        let p = CDNOW;
        let (x, tx, t) = (2.0f64, 30.43, 38.86);
        let (r, al, a, b) = (p.r, p.alpha, p.a, p.b);
        let beta = |u: f64, v: f64| crate::analytics::model::special::ln_beta(u, v).exp();
        let common = (ln_gamma(r + x) - ln_gamma(r)).exp() * al.powf(r);
        let l = beta(a, b + x) / beta(a, b) * common / (al + t).powf(r + x)
            + beta(a + 1.0, b + x - 1.0) / beta(a, b) * common / (al + tx).powf(r + x);
        let got = log_likelihood(&p, &[obs(2, tx, t)]).unwrap();
        assert!((got - l.ln()).abs() < 1e-12);
        assert!(log_likelihood(&BgNbdParams { r: -1.0, ..p }, &[obs(2, tx, t)]).is_err());
    }

    #[test]
    fn fit_rejects_degenerate_input() {
        assert!(matches!(fit(&[]), Err(Error::NotEnoughData(_))));
        assert!(matches!(
            fit(&[obs(0, 0.0, 3.0)]),
            Err(Error::NotEnoughData(_))
        ));
        assert!(matches!(
            fit(&[obs(1, f64::NAN, 3.0)]),
            Err(Error::InvalidObservation { index: 0, .. })
        ));
    }
}
