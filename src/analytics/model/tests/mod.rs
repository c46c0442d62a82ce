//! The model against real data (CDNOW) and against data drawn from known parameters.

mod cdnow;
mod common;
mod synthetic;
