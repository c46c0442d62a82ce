//! The customer-base models: "buy till you die" models of repeat purchasing and their
//! building blocks, as pure functions over plain types.
//!
//! * [`summary`]: purchase records → calibration summaries `(x, t_x, T, m_x)` and
//!   holdout counts, with the literature's conventions.
//! * [`bgnbd`]: the BG/NBD model (Fader, Hardie & Lee 2005): likelihood, fit,
//!   P(alive), expected future transactions.
//! * [`gamma_gamma`]: the Gamma-Gamma spend model: fit and expected order value.
//! * [`clv`]: discounted customer lifetime value over a horizon in months.
//! * [`rfm`]: RFM values, quintile scores and named segments.
//! * [`quality`]: whether a fit can be trusted (converged, off the boundaries, enough
//!   repeat customers), the `model_quality` of every read.
//! * [`validate`]: holdout validation table of a fitted BG/NBD model, with percentage
//!   errors, and the weekly cumulative tracking.
//! * [`special`] and the private `optimize`: hand-written `ln Γ`, `₂F₁` and a
//!   Nelder–Mead minimiser: small, documented with their sources, and not worth a numeric
//!   crate's weight (statrs/argmin were considered).
//!
//! Money enters as integer cents; it becomes `f64` major units only inside the
//! models. Library code does not panic on user input: it returns [`Error`].

pub mod bgnbd;
pub mod clv;
pub mod error;
pub mod gamma_gamma;
mod optimize;
pub mod quality;
pub mod rfm;
pub mod special;
pub mod summary;
pub mod validate;

pub use error::{Error, Result};

#[cfg(test)]
mod tests;
