//! The one error type of the analytics modules.
//!
//! All library functions that see user-controlled input (dates, purchase records,
//! observations, model parameters) report problems through [`Error`] instead of
//! panicking, so the service can turn them into a response.

use std::fmt;

/// Why an analytics computation could not be carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A date string was neither `YYYYMMDD` nor `YYYY-MM-DD`, or named no real day.
    InvalidDate(String),
    /// A date or day count lies outside the supported range.
    DateOutOfRange,
    /// A sum of money in cents overflowed `i64`.
    AmountOverflow,
    /// An argument makes no sense (e.g. a holdout end before the calibration end).
    InvalidArgument(&'static str),
    /// A model parameter is not finite or not in its allowed range.
    InvalidParameter { name: &'static str, value: f64 },
    /// One input row is unusable; `index` is its position in the input slice.
    InvalidObservation { index: usize, reason: &'static str },
    /// There is nothing (or too little) to fit a model to.
    NotEnoughData(&'static str),
    /// A numerical procedure did not reach its accuracy target.
    NoConvergence(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidDate(s) => {
                write!(f, "invalid date {s:?} (expected YYYYMMDD or YYYY-MM-DD)")
            }
            Error::DateOutOfRange => write!(f, "date out of supported range"),
            Error::AmountOverflow => write!(f, "sum of amounts in cents overflows i64"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::InvalidParameter { name, value } => {
                write!(f, "invalid model parameter {name} = {value}")
            }
            Error::InvalidObservation { index, reason } => {
                write!(f, "invalid observation at index {index}: {reason}")
            }
            Error::NotEnoughData(why) => write!(f, "not enough data: {why}"),
            Error::NoConvergence(what) => write!(f, "numerical procedure did not converge: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
