//! Whether a fitted model can be trusted: the `model_quality` that every analytics read and
//! `shequn analytics validate` carry, so that a fit on too little data never looks like a
//! good one.
//!
//! Maximum likelihood on a handful of customers does not fail loudly: with one to three repeat
//! buyers the BG/NBD likelihood is nearly flat in some direction and the search walks off
//! towards a boundary of the parameter space (`r = 1.1·10⁸`, `a = 10⁻¹³` on a real shop),
//! returning numbers that look like estimates. These rules classify a fit from facts the
//! caller has (how many customers repeated, whether the search converged, where the
//! parameters ended) and say why in words a merchant can act on.
//!
//! Statuses, from best to worst (the overall status is the worst of the models'):
//! `ok`, `at_boundary` (a parameter ran to the edge of what the search allows, so it is not a
//! real estimate), `not_converged` (the search stopped at its evaluation limit) and
//! `insufficient_data` (too few repeat customers to fit, or to trust a fit).

use serde::{Deserialize, Serialize};

use super::bgnbd::BgNbdParams;
use super::gamma_gamma::GammaGammaParams;

/// Fewer repeat customers than this make a fit untrustworthy (BG/NBD) or impossible to run
/// (Gamma-Gamma, which needs customers with a repeat purchase of positive value): three
/// parameters cannot be told apart from fewer observations that carry information about them.
pub const MIN_REPEAT_CUSTOMERS: usize = 3;

/// A parameter outside `[1/PARAMETER_LIMIT, PARAMETER_LIMIT]` sits at a boundary: the searches
/// work on log-parameters and refuse beyond `e^±30`, and no real purchasing data puts a
/// shape or scale parameter beyond a million (the CDNOW estimates lie between 0.24 and 16, in
/// weeks or in days).
pub const PARAMETER_LIMIT: f64 = 1e6;

/// How far a fit can be trusted, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityStatus {
    Ok,
    AtBoundary,
    NotConverged,
    InsufficientData,
}

impl QualityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityStatus::Ok => "ok",
            QualityStatus::AtBoundary => "at_boundary",
            QualityStatus::NotConverged => "not_converged",
            QualityStatus::InsufficientData => "insufficient_data",
        }
    }
}

/// The verdict on one model, or on both together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub status: QualityStatus,
    /// Why the status is not `ok`, one sentence each (empty when it is).
    pub reasons: Vec<String>,
}

impl Quality {
    fn ok() -> Self {
        Quality {
            status: QualityStatus::Ok,
            reasons: Vec::new(),
        }
    }

    fn add(&mut self, status: QualityStatus, reason: String) {
        self.status = self.status.max(status);
        self.reasons.push(reason);
    }

    pub fn is_ok(&self) -> bool {
        self.status == QualityStatus::Ok
    }
}

/// The outcome of a fit as the quality rules need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FitOutcome<P> {
    /// The fit was not attempted or failed for want of data.
    NotFitted,
    /// The search ran out of evaluations without meeting its tolerances (and no usable
    /// parameters came out of it).
    Failed,
    /// Parameters were found; `converged` is false when the search stopped at its limit.
    Fitted { params: P, converged: bool },
}

fn out_of_range(name: &str, value: f64) -> Option<String> {
    let inside = value.is_finite() && (1.0 / PARAMETER_LIMIT..=PARAMETER_LIMIT).contains(&value);
    (!inside).then(|| {
        format!(
            "{name} = {value:.3e} lies at a boundary of the parameter space (outside \
             1e-6..1e6): the data do not determine it"
        )
    })
}

/// The verdict on a BG/NBD fit over `customers`, of whom `repeat_customers` bought again in
/// the calibration window.
pub fn bgnbd_quality(
    customers: usize,
    repeat_customers: usize,
    outcome: FitOutcome<BgNbdParams>,
) -> Quality {
    let mut quality = Quality::ok();
    if repeat_customers < MIN_REPEAT_CUSTOMERS {
        quality.add(
            QualityStatus::InsufficientData,
            format!(
                "BG/NBD: {repeat_customers} of {customers} customers bought again in the \
                 calibration window; at least {MIN_REPEAT_CUSTOMERS} are needed for \
                 P(alive) and expected transactions to mean anything"
            ),
        );
    }
    match outcome {
        FitOutcome::NotFitted => {
            if quality.is_ok() {
                quality.add(
                    QualityStatus::InsufficientData,
                    "BG/NBD: not fitted".to_owned(),
                );
            }
        }
        FitOutcome::Failed => quality.add(
            QualityStatus::NotConverged,
            "BG/NBD: the likelihood search found no usable maximum".to_owned(),
        ),
        FitOutcome::Fitted { params, converged } => {
            if !converged {
                quality.add(
                    QualityStatus::NotConverged,
                    "BG/NBD: the likelihood search stopped at its evaluation limit before \
                     converging; the parameters are the best found, not an estimate"
                        .to_owned(),
                );
            }
            for (name, value) in [
                ("BG/NBD r", params.r),
                ("BG/NBD alpha", params.alpha),
                ("BG/NBD a", params.a),
                ("BG/NBD b", params.b),
            ] {
                if let Some(reason) = out_of_range(name, value) {
                    quality.add(QualityStatus::AtBoundary, reason);
                }
            }
        }
    }
    quality
}

/// The verdict on a Gamma-Gamma fit over `spenders` repeat customers with a positive average
/// repeat order value.
pub fn gamma_gamma_quality(spenders: usize, outcome: FitOutcome<GammaGammaParams>) -> Quality {
    let mut quality = Quality::ok();
    if spenders < MIN_REPEAT_CUSTOMERS {
        quality.add(
            QualityStatus::InsufficientData,
            format!(
                "Gamma-Gamma: {spenders} repeat customers with a repeat order above 0; at \
                 least {MIN_REPEAT_CUSTOMERS} are needed to fit the spend model, so expected \
                 order value and CLV are unknown"
            ),
        );
    }
    match outcome {
        FitOutcome::NotFitted => {
            if quality.is_ok() {
                quality.add(
                    QualityStatus::InsufficientData,
                    "Gamma-Gamma: not fitted, so expected order value and CLV are unknown"
                        .to_owned(),
                );
            }
        }
        FitOutcome::Failed => quality.add(
            QualityStatus::NotConverged,
            "Gamma-Gamma: the likelihood search did not converge, so expected order value and \
             CLV are unknown"
                .to_owned(),
        ),
        FitOutcome::Fitted { params, converged } => {
            if !converged {
                quality.add(
                    QualityStatus::NotConverged,
                    "Gamma-Gamma: the likelihood search stopped before converging".to_owned(),
                );
            }
            for (name, value) in [
                ("Gamma-Gamma p", params.p),
                ("Gamma-Gamma q", params.q),
                ("Gamma-Gamma gamma", params.gamma),
            ] {
                if let Some(reason) = out_of_range(name, value) {
                    quality.add(QualityStatus::AtBoundary, reason);
                }
            }
            if params.q <= 1.0 {
                quality.add(
                    QualityStatus::AtBoundary,
                    format!(
                        "Gamma-Gamma q = {:.3} is not above 1: the population's mean order \
                         value is infinite, so values of customers without repeats are unknown",
                        params.q
                    ),
                );
            }
        }
    }
    quality
}

/// Both models' verdicts and the overall one (the worst of the two, with all reasons): the
/// `model_quality` object of the reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelQuality {
    pub status: QualityStatus,
    pub reasons: Vec<String>,
    pub bgnbd: Quality,
    pub gamma_gamma: Quality,
}

pub fn combine(bgnbd: Quality, gamma_gamma: Quality) -> ModelQuality {
    ModelQuality {
        status: bgnbd.status.max(gamma_gamma.status),
        reasons: bgnbd
            .reasons
            .iter()
            .chain(&gamma_gamma.reasons)
            .cloned()
            .collect(),
        bgnbd,
        gamma_gamma,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW_BG: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    const CDNOW_GG: GammaGammaParams = GammaGammaParams {
        p: 6.25,
        q: 3.74,
        gamma: 15.44,
    };

    #[test]
    fn the_published_cdnow_fit_is_ok() {
        let bg = bgnbd_quality(
            2357,
            1000,
            FitOutcome::Fitted {
                params: CDNOW_BG,
                converged: true,
            },
        );
        let gg = gamma_gamma_quality(
            946,
            FitOutcome::Fitted {
                params: CDNOW_GG,
                converged: true,
            },
        );
        let both = combine(bg, gg);
        assert_eq!(both.status, QualityStatus::Ok);
        assert!(both.reasons.is_empty());
    }

    #[test]
    fn a_runaway_fit_on_two_repeat_customers_is_insufficient_and_at_boundary() {
        let params = BgNbdParams {
            r: 1.1e8,
            alpha: 3.0,
            a: 1e-13,
            b: 2.0,
        };
        let q = bgnbd_quality(
            10,
            2,
            FitOutcome::Fitted {
                params,
                converged: true,
            },
        );
        assert_eq!(q.status, QualityStatus::InsufficientData);
        assert_eq!(q.reasons.len(), 3, "{q:?}");
        assert!(q.reasons[1].contains("BG/NBD r"));
        assert!(q.reasons[2].contains("BG/NBD a"));
    }

    #[test]
    fn boundary_and_convergence_are_told_apart() {
        let boundary = bgnbd_quality(
            100,
            40,
            FitOutcome::Fitted {
                params: BgNbdParams {
                    a: 2e-7,
                    ..CDNOW_BG
                },
                converged: true,
            },
        );
        assert_eq!(boundary.status, QualityStatus::AtBoundary);
        let stalled = bgnbd_quality(
            100,
            40,
            FitOutcome::Fitted {
                params: CDNOW_BG,
                converged: false,
            },
        );
        assert_eq!(stalled.status, QualityStatus::NotConverged);
        let nan = bgnbd_quality(
            100,
            40,
            FitOutcome::Fitted {
                params: BgNbdParams {
                    r: f64::NAN,
                    ..CDNOW_BG
                },
                converged: true,
            },
        );
        assert_eq!(nan.status, QualityStatus::AtBoundary);
    }

    #[test]
    fn no_repeat_customers_means_no_fit_and_says_so_once() {
        let q = bgnbd_quality(5, 0, FitOutcome::NotFitted);
        assert_eq!(q.status, QualityStatus::InsufficientData);
        assert_eq!(q.reasons.len(), 1);
        let gg = gamma_gamma_quality(0, FitOutcome::NotFitted);
        assert_eq!(gg.status, QualityStatus::InsufficientData);
        assert!(gg.reasons[0].contains("CLV"));
        let failed = gamma_gamma_quality(50, FitOutcome::Failed);
        assert_eq!(failed.status, QualityStatus::NotConverged);
    }

    #[test]
    fn gamma_gamma_with_q_at_most_one_is_at_boundary() {
        let q = gamma_gamma_quality(
            50,
            FitOutcome::Fitted {
                params: GammaGammaParams { q: 0.9, ..CDNOW_GG },
                converged: true,
            },
        );
        assert_eq!(q.status, QualityStatus::AtBoundary);
    }

    #[test]
    fn the_overall_status_is_the_worst_and_keeps_every_reason() {
        let bg = bgnbd_quality(
            100,
            40,
            FitOutcome::Fitted {
                params: CDNOW_BG,
                converged: false,
            },
        );
        let gg = gamma_gamma_quality(2, FitOutcome::NotFitted);
        let both = combine(bg, gg);
        assert_eq!(both.status, QualityStatus::InsufficientData);
        assert_eq!(both.reasons.len(), 2);
        assert_eq!(both.bgnbd.status, QualityStatus::NotConverged);
        let json = serde_json::to_value(&both).unwrap();
        assert_eq!(json["status"], "insufficient_data");
        assert_eq!(json["bgnbd"]["status"], "not_converged");
        assert_eq!(QualityStatus::AtBoundary.as_str(), "at_boundary");
    }
}
