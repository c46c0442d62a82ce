//! Special functions needed by the customer-base models: `ln Γ` and the Gauss
//! hypergeometric function `₂F₁`.
//!
//! Why hand-written: Rust's standard library has no stable `ln_gamma` and no
//! hypergeometric function, and the models need only these two. Writing them here
//! (about a hundred lines, tested against closed forms below) keeps the crate free of
//! dependencies, so it builds fast on the shared machine and can be copied into the
//! service without touching its dependency tree.
//!
//! Sources:
//! * `ln Γ`: Lanczos approximation with `g = 7` and the nine coefficients published by
//!   P. Godfrey (as listed in Press et al., *Numerical Recipes*, and many libraries);
//!   relative accuracy of `Γ` about `1e-15` for positive arguments. Arguments below
//!   one half use the reflection formula `Γ(x) Γ(1−x) = π / sin(πx)`.
//! * `₂F₁`: the defining power series (Abramowitz & Stegun 15.1.1) for `0 ≤ z < 1`,
//!   and Pfaff's transformation (A&S 15.3.4)
//!   `₂F₁(a,b;c;z) = (1−z)^(−a) ₂F₁(a, c−b; c; z/(z−1))` for `z < 0`, which maps every
//!   negative argument into `(0, 1)` where the series converges.

use crate::analytics::model::error::{Error, Result};

/// Lanczos parameter `g` matching [`LANCZOS_COEFFICIENTS`].
const LANCZOS_G: f64 = 7.0;

/// Godfrey's coefficients for `g = 7`, `n = 9`.
#[allow(clippy::excessive_precision)]
const LANCZOS_COEFFICIENTS: [f64; 9] = [
    0.999_999_999_999_809_93,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_13,
    -176.615_029_162_140_59,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_571_6e-6,
    1.505_632_735_149_311_6e-7,
];

/// Natural logarithm of the Gamma function for `x > 0`.
///
/// Returns `NaN` for `x ≤ 0` or non-finite `x`; callers in this crate validate their
/// parameters first, so that case never reaches the models.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 || x.is_infinite() {
        return f64::NAN;
    }
    if x < 0.5 {
        // The reflection formula keeps the Lanczos sum away from its poor region near 0;
        // for 0 < x < 1 the sine is positive, so the logarithm is real.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + LANCZOS_G + 0.5;
    let mut sum = LANCZOS_COEFFICIENTS[0];
    for (i, c) in LANCZOS_COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    // 0.5 * ln(2π)
    const HALF_LN_TWO_PI: f64 = 0.918_938_533_204_672_8;
    HALF_LN_TWO_PI + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Natural logarithm of the Beta function `B(a, b)` for `a, b > 0`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Largest number of series terms summed before giving up. At a few nanoseconds a
/// term this bounds one evaluation to well under a tenth of a second; it is reached
/// only for arguments extremely close to 1 (about `1 − 1e-6`).
const MAX_SERIES_TERMS: usize = 20_000_000;

/// Relative accuracy target of the series.
const SERIES_EPS: f64 = 1e-16;

/// A positive-scale number kept as `mantissa · e^log_scale`, so that long series whose
/// partial sums exceed the `f64` range (large counts in the BG/NBD formulas) can still
/// be multiplied by a tiny prefactor afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scaled {
    pub mantissa: f64,
    pub log_scale: f64,
}

impl Scaled {
    /// `ln |value|`; `-inf` for an exact zero.
    pub fn ln_abs(self) -> f64 {
        self.mantissa.abs().ln() + self.log_scale
    }
}

/// Sums `Σ_{n≥1} t_n` where `t_1 = first` and
/// `t_{n+1} / t_n = (a+n)(b+n) / ((c+n)(n+1)) · z`, i.e. the hypergeometric series
/// without its leading 1, scaled by whatever `first` carries. Requires `0 ≤ z < 1`
/// and `c + n ≠ 0` for all `n ≥ 1`.
pub(crate) fn series_tail(a: f64, b: f64, c: f64, z: f64, first: f64) -> Result<Scaled> {
    const RESCALE_ABOVE: f64 = 1e250;
    let mut term = first;
    let mut sum = first;
    let mut log_scale = 0.0;
    if term == 0.0 {
        return Ok(Scaled {
            mantissa: 0.0,
            log_scale,
        });
    }
    // The tail bound below assumes the term ratios are monotone from here on, which
    // holds once n exceeds the parameters' magnitudes.
    let monotone_from = a.abs().max(b.abs()).max(c.abs()) + 2.0;
    for n in 1..MAX_SERIES_TERMS {
        let nf = n as f64;
        let ratio = (a + nf) * (b + nf) / ((c + nf) * (nf + 1.0)) * z;
        term *= ratio;
        sum += term;
        if term == 0.0 {
            // A terminating series (a or b a negative integer) or an underflow.
            return Ok(Scaled {
                mantissa: sum,
                log_scale,
            });
        }
        if sum.abs() > RESCALE_ABOVE {
            sum /= RESCALE_ABOVE;
            term /= RESCALE_ABOVE;
            log_scale += RESCALE_ABOVE.ln();
        }
        if nf > monotone_from {
            // Later ratios tend to z monotonically, so none exceeds max(|ratio|, z):
            // the remaining tail is at most |term| · ρ / (1 − ρ).
            let rho = ratio.abs().max(z);
            if rho < 1.0 && term.abs() * rho / (1.0 - rho) <= SERIES_EPS * sum.abs() {
                return Ok(Scaled {
                    mantissa: sum,
                    log_scale,
                });
            }
        }
    }
    Err(Error::NoConvergence(
        "hypergeometric series (argument too close to 1)",
    ))
}

/// Gauss hypergeometric function `₂F₁(a, b; c; z)` for real `z < 1`.
///
/// `c` must not be zero or a negative integer. For `0 ≤ z < 1` the power series is
/// summed directly; for `z < 0` Pfaff's transformation maps the argument to
/// `z/(z−1) ∈ (0, 1)`. Convergence is geometric with ratio `z` (or `z/(z−1)`), so
/// arguments very close to 1 (or very large negative ones) need many terms; see
/// [`MAX_SERIES_TERMS`]. With parameters of mixed sign the series can cancel, which
/// costs accuracy; the BG/NBD formulas in this crate only use positive parameters.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64> {
    for (name, value) in [("a", a), ("b", b), ("c", c), ("z", z)] {
        if !value.is_finite() {
            return Err(Error::InvalidParameter { name, value });
        }
    }
    if c <= 0.0 && c == c.floor() {
        return Err(Error::InvalidParameter {
            name: "c",
            value: c,
        });
    }
    if z >= 1.0 {
        return Err(Error::InvalidParameter {
            name: "z",
            value: z,
        });
    }
    if z < 0.0 {
        let w = z / (z - 1.0);
        let inner = hyp2f1_series(a, c - b, c, w)?;
        return Ok(inner * (-a * (-z).ln_1p()).exp());
    }
    hyp2f1_series(a, b, c, z)
}

/// The plain series for `0 ≤ z < 1`.
fn hyp2f1_series(a: f64, b: f64, c: f64, z: f64) -> Result<f64> {
    let tail = series_tail(a, b, c, z, a * b / c * z)?;
    // Both the leading 1 and the tail are brought to a common scale; the tail is
    // huge only when its log scale is positive, and then the 1 no longer matters.
    Ok(1.0 + tail.mantissa * tail.log_scale.exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-14);
        assert!((ln_gamma(2.0)).abs() < 1e-14);
        let half = 0.5 * std::f64::consts::PI.ln();
        assert!(close(ln_gamma(0.5), half, 1e-14));
        // ln(9!) = ln(362880)
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-14));
        // ln Γ(100) = ln(99!) = 359.13420536957539878...
        assert!(close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-14));
        // ln Γ(1e-8) ≈ −ln(1e-8) − γ·1e-8
        let euler = 0.577_215_664_901_532_9;
        assert!(close(ln_gamma(1e-8), -(1e-8f64).ln() - euler * 1e-8, 1e-12));
        assert!(ln_gamma(0.0).is_nan());
        assert!(ln_gamma(-1.5).is_nan());
    }

    #[test]
    fn ln_gamma_recurrence() {
        // ln Γ(x+1) − ln Γ(x) = ln x across many magnitudes.
        let mut x = 0.013;
        while x < 5_000.0 {
            let lhs = ln_gamma(x + 1.0) - ln_gamma(x);
            assert!(
                (lhs - x.ln()).abs() < 2e-13 * (1.0 + ln_gamma(x).abs()),
                "x = {x}"
            );
            x *= 1.37;
        }
    }

    #[test]
    fn hyp2f1_closed_forms() {
        for &z in &[-50.0f64, -3.0, -0.9, -0.2, 0.0, 0.1, 0.5, 0.9, 0.99, 0.9999] {
            // ₂F₁(1,1;2;z) = −ln(1−z)/z
            let want = if z == 0.0 { 1.0 } else { -(-z).ln_1p() / z };
            let got = hyp2f1(1.0, 1.0, 2.0, z).unwrap();
            assert!(close(got, want, 1e-12), "z={z}: {got} vs {want}");
            // ₂F₁(a,b;b;z) = (1−z)^(−a)
            let got = hyp2f1(0.7, 2.3, 2.3, z).unwrap();
            let want = (1.0 - z).powf(-0.7);
            assert!(close(got, want, 1e-12), "z={z}: {got} vs {want}");
        }
        // ₂F₁(1/2,1/2;3/2;x²) = asin(x)/x
        for &x in &[0.1f64, 0.5, 0.9, 0.999] {
            let got = hyp2f1(0.5, 0.5, 1.5, x * x).unwrap();
            assert!(close(got, x.asin() / x, 1e-12));
        }
        // Terminating series: ₂F₁(−2, b; c; z) = 1 − 2bz/c + b(b+1)z²/(c(c+1)).
        let (b, c, z) = (1.5, 2.5, 0.3);
        let want = 1.0 - 2.0 * b * z / c + b * (b + 1.0) * z * z / (c * (c + 1.0));
        assert!(close(hyp2f1(-2.0, b, c, z).unwrap(), want, 1e-14));
    }

    #[test]
    fn hyp2f1_rejects_bad_arguments() {
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_err());
        assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_err());
        assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_err());
    }
}
