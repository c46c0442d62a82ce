//! A small derivative-free minimiser (Nelder–Mead simplex with restarts) used to fit
//! the BG/NBD and Gamma-Gamma models by maximum likelihood.
//!
//! Why hand-written: the fits have three or four parameters and cheap objectives, so
//! a simplex method is fast enough and avoids both a dependency and analytic
//! gradients (which would tie the fitting code to each likelihood's algebra).
//!
//! Method: J. A. Nelder & R. Mead (1965), "A simplex method for function
//! minimization", Computer Journal 7(4), with the ordering and contraction rules of
//! Lagarias, Reeds, Wright & Wright (1998), SIAM J. Optim. 9(1), and the
//! dimension-adaptive coefficients of F. Gao & L. Han (2012), "Implementing the
//! Nelder-Mead simplex algorithm with adaptive parameters", Comput. Optim. Appl.
//! 51(1). A simplex can stall on a non-minimum, so after convergence the search is
//! restarted from the best point with a fresh simplex until a restart no longer
//! improves the objective.

/// Settings of [`minimize`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Edge length of the initial simplex along each coordinate.
    pub initial_step: f64,
    /// Converged when the spread of objective values in the simplex is below this
    /// (absolute; the objectives here are per-observation means of order one).
    pub f_tol: f64,
    /// ... and every vertex lies within this distance of the best one (max norm).
    pub x_tol: f64,
    /// Hard cap on objective evaluations over all restarts.
    pub max_evaluations: usize,
    /// Hard cap on restarts after the first run.
    pub max_restarts: usize,
}

/// Result of [`minimize`].
#[derive(Debug, Clone)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub evaluations: usize,
    /// False when the evaluation cap was reached before the tolerances were met.
    pub converged: bool,
}

/// Minimises `f` starting from `x0`. Non-finite objective values are treated as
/// `+inf`, so `f` may signal "outside the feasible region" by returning `NaN` or `inf`.
pub(crate) fn minimize<F>(mut f: F, x0: &[f64], opts: &Options) -> Minimum
where
    F: FnMut(&[f64]) -> f64,
{
    let mut eval = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };

    let mut best_x = x0.to_vec();
    let mut best_f = eval(&best_x);
    let mut evaluations = 1usize;
    let mut converged = false;
    for run in 0..=opts.max_restarts {
        let budget = opts.max_evaluations.saturating_sub(evaluations);
        let (x, fx, ok, used) = run_simplex(&mut eval, &best_x, best_f, opts, budget);
        evaluations += used;
        let improvement = best_f - fx;
        if fx < best_f {
            best_x = x;
            best_f = fx;
        }
        converged = ok;
        // Stop when the budget ran out, or when a restart found (almost) nothing
        // better, which confirms the first run's minimum.
        if !ok || (run > 0 && improvement <= opts.f_tol) {
            break;
        }
    }
    Minimum {
        x: best_x,
        value: best_f,
        evaluations,
        converged,
    }
}

/// One Nelder–Mead run from a fresh simplex around `start`. Returns the best vertex,
/// its value, whether the tolerances were met, and the number of evaluations used.
fn run_simplex<E>(
    eval: &mut E,
    start: &[f64],
    f_start: f64,
    opts: &Options,
    budget: usize,
) -> (Vec<f64>, f64, bool, usize)
where
    E: FnMut(&[f64]) -> f64,
{
    let coefficients = Coefficients::for_dimension(start.len());
    let mut simplex = Simplex::around(eval, start, f_start, opts.initial_step);
    let mut scratch = Scratch::new(start.len());
    let mut used = start.len();
    loop {
        simplex.sort();
        if simplex.within(opts) {
            return (simplex.vertices[0].clone(), simplex.values[0], true, used);
        }
        if used >= budget {
            return (simplex.vertices[0].clone(), simplex.values[0], false, used);
        }
        used += simplex.step(eval, &coefficients, &mut scratch);
    }
}

/// Gao & Han's adaptive coefficients; for n = 2 they equal the classic 1, 2, ½, ½.
struct Coefficients {
    reflect: f64,
    expand: f64,
    contract: f64,
    shrink: f64,
}

impl Coefficients {
    fn for_dimension(n: usize) -> Self {
        let nf = n as f64;
        Coefficients {
            reflect: 1.0,
            expand: 1.0 + 2.0 / nf,
            contract: 0.75 - 1.0 / (2.0 * nf),
            shrink: 1.0 - 1.0 / nf,
        }
    }
}

/// The points a step computes, kept between steps so that no step allocates.
struct Scratch {
    centroid: Vec<f64>,
    trial: Vec<f64>,
    trial2: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Scratch {
            centroid: vec![0.0; n],
            trial: vec![0.0; n],
            trial2: vec![0.0; n],
        }
    }
}

/// The n + 1 vertices of a simplex in n dimensions and the objective at each; after
/// [`Simplex::sort`], best first.
struct Simplex {
    vertices: Vec<Vec<f64>>,
    values: Vec<f64>,
}

impl Simplex {
    /// `start` and one vertex `step` further along each coordinate (n evaluations).
    fn around<E>(eval: &mut E, start: &[f64], f_start: f64, step: f64) -> Self
    where
        E: FnMut(&[f64]) -> f64,
    {
        let n = start.len();
        let mut vertices: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
        let mut values: Vec<f64> = Vec::with_capacity(n + 1);
        vertices.push(start.to_vec());
        values.push(f_start);
        for i in 0..n {
            let mut v = start.to_vec();
            v[i] += step;
            values.push(eval(&v));
            vertices.push(v);
        }
        Simplex { vertices, values }
    }

    /// Order vertices from best to worst.
    fn sort(&mut self) {
        let n = self.vertices.len() - 1;
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&i, &j| self.values[i].total_cmp(&self.values[j]));
        self.vertices = order.iter().map(|&i| self.vertices[i].clone()).collect();
        self.values = order.iter().map(|&i| self.values[i]).collect();
    }

    /// Whether the (sorted) simplex meets both tolerances.
    fn within(&self, opts: &Options) -> bool {
        let (simplex, values) = (&self.vertices, &self.values);
        let n = simplex.len() - 1;
        let f_spread = values[n] - values[0];
        let x_spread = simplex[1..]
            .iter()
            .flat_map(|v| v.iter().zip(&simplex[0]).map(|(a, b)| (a - b).abs()))
            .fold(0.0f64, f64::max);
        f_spread <= opts.f_tol && x_spread <= opts.x_tol
    }

    fn replace_worst(&mut self, point: &[f64], value: f64) {
        let n = self.vertices.len() - 1;
        self.vertices[n].copy_from_slice(point);
        self.values[n] = value;
    }

    /// One step on the sorted simplex: reflect the worst vertex through the centroid of the
    /// others, then expand, contract or shrink. Returns the evaluations used.
    fn step<E>(&mut self, eval: &mut E, c: &Coefficients, scratch: &mut Scratch) -> usize
    where
        E: FnMut(&[f64]) -> f64,
    {
        let n = self.vertices.len() - 1;
        let nf = n as f64;
        let Scratch {
            centroid,
            trial,
            trial2,
        } = scratch;
        for (j, value) in centroid.iter_mut().enumerate() {
            *value = self.vertices[..n].iter().map(|v| v[j]).sum::<f64>() / nf;
        }
        let worst = &self.vertices[n];
        for j in 0..n {
            trial[j] = centroid[j] + c.reflect * (centroid[j] - worst[j]);
        }
        let f_reflect = eval(trial);

        if f_reflect < self.values[0] {
            for j in 0..n {
                trial2[j] = centroid[j] + c.expand * (trial[j] - centroid[j]);
            }
            let f_expand = eval(trial2);
            if f_expand < f_reflect {
                self.replace_worst(trial2, f_expand);
            } else {
                self.replace_worst(trial, f_reflect);
            }
            return 2;
        }
        if f_reflect < self.values[n - 1] {
            self.replace_worst(trial, f_reflect);
            return 1;
        }
        // Contraction: outside if the reflected point beats the worst, else inside.
        let outside = f_reflect < self.values[n];
        for j in 0..n {
            trial2[j] = if outside {
                centroid[j] + c.contract * (trial[j] - centroid[j])
            } else {
                centroid[j] + c.contract * (self.vertices[n][j] - centroid[j])
            };
        }
        let f_contract = eval(trial2);
        let accept = if outside {
            f_contract <= f_reflect
        } else {
            f_contract < self.values[n]
        };
        if accept {
            self.replace_worst(trial2, f_contract);
            return 2;
        }
        self.shrink(eval, c.shrink) + 2
    }

    /// Shrink every vertex towards the best one. Returns the evaluations used (n).
    fn shrink<E>(&mut self, eval: &mut E, shrink: f64) -> usize
    where
        E: FnMut(&[f64]) -> f64,
    {
        let n = self.vertices.len() - 1;
        let best = self.vertices[0].clone();
        for i in 1..=n {
            for (x, b) in self.vertices[i].iter_mut().zip(&best) {
                *x = b + shrink * (*x - b);
            }
            self.values[i] = eval(&self.vertices[i]);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_rosenbrock() {
        let opts = Options {
            initial_step: 0.5,
            f_tol: 1e-14,
            x_tol: 1e-8,
            max_evaluations: 20_000,
            max_restarts: 10,
        };
        let m = minimize(
            |x| 100.0 * (x[1] - x[0] * x[0]).powi(2) + (1.0 - x[0]).powi(2),
            &[-1.2, 1.0],
            &opts,
        );
        assert!(m.converged);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-5 && (m.x[1] - 1.0).abs() < 1e-5,
            "{:?}",
            m.x
        );
    }

    #[test]
    fn treats_nan_as_infeasible() {
        let opts = Options {
            initial_step: 0.5,
            f_tol: 1e-14,
            x_tol: 1e-9,
            max_evaluations: 20_000,
            max_restarts: 5,
        };
        // Minimum at x = 2 inside the feasible region x > 1.
        let m = minimize(
            |x| {
                if x[0] <= 1.0 {
                    f64::NAN
                } else {
                    (x[0] - 2.0).powi(2) + x[1] * x[1]
                }
            },
            &[3.0, 1.0],
            &opts,
        );
        assert!((m.x[0] - 2.0).abs() < 1e-6);
    }
}
