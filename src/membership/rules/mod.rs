//! Pure membership rules: tier evaluation, points arithmetic and expiry, member-day and
//! birthday dates. Plain functions over plain types (no I/O, no clock); the program module
//! reads state, calls these and writes the results in its own transaction.
//!
//! Conventions: money is integer fen, points are integers, rates are basis points
//! (10,000 = 100 %), divisions round down unless a function says otherwise, instants are UTC and
//! "today" is the tenant's local date.

pub mod calendar;
pub mod points;
pub mod tiers;
