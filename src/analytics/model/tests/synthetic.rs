//! Parameter recovery on data simulated from a known BG/NBD process.
//!
//! The generator follows the model's story exactly (FHL 2005, section 2): each
//! customer draws a purchase rate λ ~ Gamma(r, rate α) and a dropout probability
//! p ~ Beta(a, b); purchases arrive as a Poisson process with rate λ, and after each
//! *repeat* purchase the customer drops out with probability p.

use crate::analytics::model::bgnbd::{self, BgNbdParams, Observation};

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, deterministic, good enough here.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on the open interval (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller; one of the pair is discarded for simplicity.
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Gamma(shape, scale 1) by Marsaglia & Tsang (2000); shapes below 1 use
    /// Gamma(k) = Gamma(k+1) · U^(1/k).
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }

    fn exponential(&mut self, rate: f64) -> f64 {
        -self.uniform().ln() / rate
    }
}

fn simulate(p: &BgNbdParams, n: usize, seed: u64) -> Vec<Observation> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            let t_end = 26.0 + 52.0 * rng.uniform(); // observed 26..78 weeks
            let lambda = rng.gamma(p.r) / p.alpha;
            let drop = rng.beta(p.a, p.b);
            let (mut now, mut x, mut last) = (0.0, 0u32, 0.0);
            loop {
                now += rng.exponential(lambda);
                if now > t_end {
                    break;
                }
                x += 1;
                last = now;
                if rng.uniform() < drop {
                    break;
                }
            }
            Observation {
                frequency: x,
                recency: last,
                t: t_end,
            }
        })
        .collect()
}

/// Inverse of a small symmetric positive-definite matrix (Gauss–Jordan).
fn invert(mut m: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = m.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for col in 0..n {
        let pivot = m[col][col];
        for j in 0..n {
            m[col][j] /= pivot;
            inv[col][j] /= pivot;
        }
        for row in 0..n {
            if row != col {
                let f = m[row][col];
                for j in 0..n {
                    m[row][j] -= f * m[col][j];
                    inv[row][j] -= f * inv[col][j];
                }
            }
        }
    }
    inv
}

/// Standard errors of (r, α, a, b) from the observed information matrix, computed
/// by central finite differences of the log-likelihood in log-parameters.
fn standard_errors(p: &BgNbdParams, data: &[Observation]) -> [f64; 4] {
    let theta = [p.r.ln(), p.alpha.ln(), p.a.ln(), p.b.ln()];
    let ll = |th: &[f64; 4]| {
        let q = BgNbdParams {
            r: th[0].exp(),
            alpha: th[1].exp(),
            a: th[2].exp(),
            b: th[3].exp(),
        };
        bgnbd::log_likelihood(&q, data).unwrap()
    };
    let h = 1e-3;
    let mut hess = vec![vec![0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            let f = |di: f64, dj: f64| {
                let mut t = theta;
                t[i] += di;
                t[j] += dj;
                ll(&t)
            };
            hess[i][j] = -(f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4.0 * h * h);
        }
    }
    let cov = invert(hess);
    // Delta method: sd(exp θ) ≈ exp θ · sd(θ).
    [0, 1, 2, 3].map(|i| cov[i][i].sqrt() * theta[i].exp())
}

#[test]
fn recovers_known_parameters() {
    let truth = BgNbdParams {
        r: 0.8,
        alpha: 6.0,
        a: 0.6,
        b: 2.4,
    };
    let data = simulate(&truth, 5_000, 20_240_601);
    let repeaters = data.iter().filter(|o| o.frequency > 0).count();
    let start = std::time::Instant::now();
    let fit = bgnbd::fit(&data).unwrap();
    let elapsed = start.elapsed();
    let p = fit.params;
    let se = standard_errors(&p, &data);
    eprintln!(
        "synthetic (n=5000, {repeaters} repeaters): r={:.4}±{:.4} alpha={:.4}±{:.4} a={:.4}±{:.4} b={:.4}±{:.4} LL={:.3} evals={} time={elapsed:?}",
        p.r, se[0], p.alpha, se[1], p.a, se[2], p.b, se[3], fit.log_likelihood, fit.evaluations
    );
    // The maximum must beat the true parameters' likelihood…
    let ll_true = bgnbd::log_likelihood(&truth, &data).unwrap();
    assert!(fit.log_likelihood >= ll_true);
    // …and land within three standard errors of the truth. With 5,000 customers the
    // dropout parameters are only loosely identified (relative standard errors of
    // about 8 % for a and 11 % for b, versus 3 % for r and α), so the relative bounds
    // differ too. (Averaged over 40 seeds the estimates were within 0.4 % of the
    // truth, i.e. the fit is unbiased; this seed happens to sit about 2 SE high on a
    // and b, which are strongly correlated.)
    let pairs = [
        (p.r, truth.r),
        (p.alpha, truth.alpha),
        (p.a, truth.a),
        (p.b, truth.b),
    ];
    let max_rel = [0.1, 0.1, 0.3, 0.3];
    for (k, (got, want)) in pairs.into_iter().enumerate() {
        assert!(
            (got - want).abs() < 3.0 * se[k],
            "param {k}: {got} vs {want} (se {})",
            se[k]
        );
        assert!(
            (got - want).abs() < max_rel[k] * want,
            "param {k}: {got} vs {want}"
        );
    }
}

#[test]
fn fit_does_not_depend_on_the_starting_point() {
    let truth = BgNbdParams {
        r: 0.3,
        alpha: 3.0,
        a: 1.4,
        b: 5.0,
    };
    let data = simulate(&truth, 5_000, 7);
    let base = bgnbd::fit(&data).unwrap();
    for start in [
        BgNbdParams {
            r: 5.0,
            alpha: 100.0,
            a: 0.1,
            b: 0.1,
        },
        BgNbdParams {
            r: 0.01,
            alpha: 0.1,
            a: 10.0,
            b: 50.0,
        },
    ] {
        let opts = bgnbd::FitOptions {
            initial: Some(start),
            ..Default::default()
        };
        let other = bgnbd::fit_with(&data, &opts).unwrap();
        assert!(
            (other.log_likelihood - base.log_likelihood).abs() < 1e-6,
            "{other:?} vs {base:?}"
        );
        assert!((other.params.r - base.params.r).abs() < 1e-4 * base.params.r);
        assert!((other.params.b - base.params.b).abs() < 1e-3 * base.params.b);
    }
}
