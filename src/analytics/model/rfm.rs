//! RFM (recency, frequency, monetary) scoring and segmentation, the descriptive
//! counterpart of the probabilistic models: per-customer raw values, quintile scores
//! 1–5, and named segments from the recency and frequency scores.
//!
//! Raw values at an "as of" day (purchases after that day are ignored):
//! * recency: whole days from the last purchase to the as-of day (0 = bought today);
//! * frequency: number of orders, i.e. purchase records (unlike [`crate::analytics::model::summary`],
//!   same-day orders are *not* merged: RFM describes order activity);
//! * monetary: total order value in cents.
//!
//! Scores. Each metric is scored by its mid-rank percentile
//! `u = (L + E/2) / n`, where `L` counts customers with a strictly worse value and
//! `E` customers with an equal value (including the customer), and
//! `score = min(5, 1 + ⌊5u⌋)`. So:
//! * equal values always get equal scores (ties are never split arbitrarily);
//! * with `n` distinct values the scores are the usual quintiles (with `n = 5`:
//!   1, 2, 3, 4, 5; with `n = 10`: two customers per score);
//! * small populations stay centred: a single customer, or a population where all
//!   values are equal, scores 3; two distinct customers score 2 and 4;
//! * reversing the order maps score `s` to `6 − s` except at exact quintile edges.
//!
//! "Better" is higher frequency, higher monetary value, and *lower* recency in days,
//! so recency score 5 = most recent. The computation uses integers only, so quintile
//! edges are exact.
//!
//! Segments use the widely circulated R×F grid of RFM segmentation (the ten-segment
//! map "champions, loyal customers, potential loyalists, new customers, promising,
//! need attention, about to sleep, at risk, can't lose them, hibernating"), folded
//! into eight segments: "promising" joins `New`, "about to sleep" joins
//! `Hibernating`, "need attention" joins `AtRisk`, and the lowest cell of
//! "hibernating" (R = 1, F ≤ 2) becomes `Lost`:
//!
//! ```text
//!          F=1          F=2          F=3        F=4        F=5
//! R=5      new          potential    potential  champions  champions
//! R=4      new          potential    potential  loyal      loyal
//! R=3      hibernating  hibernating  at_risk    loyal      loyal
//! R=2      hibernating  hibernating  at_risk    at_risk    cant_lose
//! R=1      lost         lost         at_risk    at_risk    cant_lose
//! ```

use std::cmp::Reverse;

use crate::analytics::model::error::{Error, Result};
use crate::analytics::model::summary::{Day, Purchase};

/// Raw RFM values of one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfmValues<K> {
    pub customer: K,
    /// Days from the last purchase to the as-of day.
    pub recency_days: i64,
    /// Number of orders up to and including the as-of day.
    pub frequency: u32,
    /// Total order value in cents.
    pub monetary_cents: i64,
}

/// Quintile scores, each 1..=5 (5 = best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RfmScore {
    pub r: u8,
    pub f: u8,
    pub m: u8,
}

/// Named RFM segments, see the grid in the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Champions,
    Loyal,
    Potential,
    New,
    AtRisk,
    CantLose,
    Hibernating,
    Lost,
}

impl Segment {
    /// Snake-case name, stable for APIs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Champions => "champions",
            Segment::Loyal => "loyal",
            Segment::Potential => "potential",
            Segment::New => "new",
            Segment::AtRisk => "at_risk",
            Segment::CantLose => "cant_lose",
            Segment::Hibernating => "hibernating",
            Segment::Lost => "lost",
        }
    }
}

/// One scored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfmRow<K> {
    pub values: RfmValues<K>,
    pub score: RfmScore,
    pub segment: Segment,
}

/// Raw RFM values of every customer with at least one purchase on or before `as_of`,
/// sorted by customer key.
pub fn rfm_values<K: Ord + Clone>(
    purchases: &[Purchase<K>],
    as_of: Day,
) -> Result<Vec<RfmValues<K>>> {
    let mut order: Vec<usize> = (0..purchases.len())
        .filter(|&i| purchases[i].day <= as_of)
        .collect();
    order.sort_by(|&i, &j| purchases[i].customer.cmp(&purchases[j].customer));
    let mut out: Vec<RfmValues<K>> = Vec::new();
    let mut last_day: Vec<Day> = Vec::new();
    for i in order {
        let p = &purchases[i];
        match out.last_mut() {
            Some(v) if v.customer == p.customer => {
                v.frequency = v
                    .frequency
                    .checked_add(1)
                    .ok_or(Error::InvalidArgument("too many orders for one customer"))?;
                v.monetary_cents = v
                    .monetary_cents
                    .checked_add(p.amount_cents)
                    .ok_or(Error::AmountOverflow)?;
                if let Some(d) = last_day.last_mut() {
                    *d = (*d).max(p.day);
                }
            }
            _ => {
                out.push(RfmValues {
                    customer: p.customer.clone(),
                    recency_days: 0,
                    frequency: 1,
                    monetary_cents: p.amount_cents,
                });
                last_day.push(p.day);
            }
        }
    }
    for (v, d) in out.iter_mut().zip(last_day) {
        v.recency_days = d.days_until(as_of);
    }
    Ok(out)
}

/// Quintile scores (1..=5) of `values`, higher value → higher score, by the
/// mid-rank rule described in the module documentation. Returns one score per
/// input, in input order.
pub fn quintile_scores<T: Ord>(values: &[T]) -> Vec<u8> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| values[i].cmp(&values[j]));
    let mut scores = vec![0u8; n];
    let mut start = 0;
    while start < n {
        // [start, end) is one group of equal values; `start` values are below it.
        let mut end = start + 1;
        while end < n && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let (below, equal) = (start as u128, (end - start) as u128);
        // u = (below + equal/2)/n, score = 1 + floor(5u), in exact integer arithmetic.
        let raw = 1 + (5 * (2 * below + equal)) / (2 * n as u128);
        let score = raw.min(5) as u8;
        for &i in &order[start..end] {
            scores[i] = score;
        }
        start = end;
    }
    scores
}

/// The segment of a recency score `r` and frequency score `f` (each 1..=5).
pub fn segment(r: u8, f: u8) -> Result<Segment> {
    use Segment::*;
    if !(1..=5).contains(&r) || !(1..=5).contains(&f) {
        return Err(Error::InvalidArgument("RFM scores must be between 1 and 5"));
    }
    Ok(match (r, f) {
        (5, 4..=5) => Champions,
        (3..=4, 4..=5) => Loyal,
        (4..=5, 2..=3) => Potential,
        (4..=5, 1) => New,
        (3, 1..=2) | (2, 1..=2) => Hibernating,
        (1, 1..=2) => Lost,
        (1..=2, 5) => CantLose,
        // Remaining cells: (3, 3) and (1..=2, 3..=4).
        _ => AtRisk,
    })
}

/// Scores and segments a population of customers (the population defines the
/// quintiles, so pass all customers to be compared together). Output order follows
/// the input.
pub fn score<K>(values: Vec<RfmValues<K>>) -> Vec<RfmRow<K>> {
    let r = quintile_scores(
        &values
            .iter()
            .map(|v| Reverse(v.recency_days))
            .collect::<Vec<_>>(),
    );
    let f = quintile_scores(&values.iter().map(|v| v.frequency).collect::<Vec<_>>());
    let m = quintile_scores(&values.iter().map(|v| v.monetary_cents).collect::<Vec<_>>());
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let score = RfmScore {
                r: r[i],
                f: f[i],
                m: m[i],
            };
            // Scores come from `quintile_scores`, always within 1..=5.
            let segment = segment(score.r, score.f).unwrap_or(Segment::AtRisk);
            RfmRow {
                values: v,
                score,
                segment,
            }
        })
        .collect()
}

/// [`rfm_values`] followed by [`score`].
pub fn rfm_table<K: Ord + Clone>(purchases: &[Purchase<K>], as_of: Day) -> Result<Vec<RfmRow<K>>> {
    Ok(score(rfm_values(purchases, as_of)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_of_distinct_values() {
        assert_eq!(quintile_scores(&[10, 20, 30, 40, 50]), vec![1, 2, 3, 4, 5]);
        assert_eq!(quintile_scores(&[50, 40, 30, 20, 10]), vec![5, 4, 3, 2, 1]);
        let ten: Vec<i32> = (1..=10).collect();
        assert_eq!(quintile_scores(&ten), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // n = 7: u = (k + 0.5)/7 → 1,2,2,3,4,4,5 (5u = 0.36, 1.07, 1.79, 2.5, 3.2, 3.9, 4.6).
        assert_eq!(
            quintile_scores(&[1, 2, 3, 4, 5, 6, 7]),
            vec![1, 2, 2, 3, 4, 4, 5]
        );
        // 100 values: exactly 20 per score.
        let hundred: Vec<i32> = (0..100).collect();
        let s = quintile_scores(&hundred);
        for k in 1..=5u8 {
            assert_eq!(s.iter().filter(|&&v| v == k).count(), 20);
        }
    }

    #[test]
    fn quintile_edges_are_exact() {
        // n = 10, a tie group of 4 at the bottom: u = (0 + 2)/10 = 0.2 → exactly on the
        // edge, which belongs to the upper score (1 + floor(1.0) = 2).
        assert_eq!(
            quintile_scores(&[1, 1, 1, 1, 2, 3, 4, 5, 6, 7]),
            vec![2, 2, 2, 2, 3, 3, 4, 4, 5, 5]
        );
    }

    #[test]
    fn ties_share_a_score() {
        assert_eq!(quintile_scores(&[7, 7, 7, 7]), vec![3, 3, 3, 3]);
        let s = quintile_scores(&[1, 5, 5, 5, 5, 5, 5, 5, 9, 9]);
        assert_eq!(s[0], 1);
        assert!(s[1..8].iter().all(|&v| v == s[1]));
        assert_eq!(s[1], 3);
        assert_eq!((s[8], s[9]), (5, 5));
    }

    #[test]
    fn small_populations() {
        assert!(quintile_scores::<i32>(&[]).is_empty());
        assert_eq!(quintile_scores(&[42]), vec![3]);
        assert_eq!(quintile_scores(&[1, 2]), vec![2, 4]);
        assert_eq!(quintile_scores(&[1, 2, 3]), vec![1, 3, 5]);
        assert_eq!(quintile_scores(&[1, 2, 3, 4]), vec![1, 2, 4, 5]);
        assert_eq!(quintile_scores(&[2, 1, 2]), vec![4, 1, 4]);
    }

    #[test]
    fn segment_grid() {
        assert_eq!(segment(5, 5).unwrap(), Segment::Champions);
        assert_eq!(segment(5, 4).unwrap(), Segment::Champions);
        assert_eq!(segment(4, 5).unwrap(), Segment::Loyal);
        assert_eq!(segment(3, 4).unwrap(), Segment::Loyal);
        assert_eq!(segment(5, 2).unwrap(), Segment::Potential);
        assert_eq!(segment(4, 3).unwrap(), Segment::Potential);
        assert_eq!(segment(5, 1).unwrap(), Segment::New);
        assert_eq!(segment(4, 1).unwrap(), Segment::New);
        assert_eq!(segment(3, 3).unwrap(), Segment::AtRisk);
        assert_eq!(segment(2, 4).unwrap(), Segment::AtRisk);
        assert_eq!(segment(1, 3).unwrap(), Segment::AtRisk);
        assert_eq!(segment(1, 5).unwrap(), Segment::CantLose);
        assert_eq!(segment(2, 5).unwrap(), Segment::CantLose);
        assert_eq!(segment(3, 1).unwrap(), Segment::Hibernating);
        assert_eq!(segment(2, 2).unwrap(), Segment::Hibernating);
        assert_eq!(segment(1, 1).unwrap(), Segment::Lost);
        assert_eq!(segment(1, 2).unwrap(), Segment::Lost);
        assert!(segment(0, 3).is_err() && segment(3, 6).is_err());
        // Every cell maps somewhere and all eight segments are used.
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                seen.insert(segment(r, f).unwrap());
            }
        }
        assert_eq!(seen.len(), 8);
        assert_eq!(Segment::CantLose.as_str(), "cant_lose");
    }

    #[test]
    fn table_from_purchases() {
        let d = |s| Day::parse(s).unwrap();
        let p = |c: &str, day, cents| Purchase {
            customer: c.to_string(),
            day: d(day),
            amount_cents: cents,
        };
        let purchases = vec![
            p("ann", "2024-01-10", 1_000),
            p("ann", "2024-03-30", 2_000),
            p("ann", "2024-03-30", 500),
            p("bob", "2023-06-01", 100),
            p("cat", "2024-03-01", 50_000),
            p("dan", "2024-04-02", 700), // after as-of: ignored
        ];
        let rows = rfm_table(&purchases, d("2024-03-31")).unwrap();
        assert_eq!(rows.len(), 3);
        let ann = &rows[0];
        assert_eq!(ann.values.customer, "ann");
        assert_eq!(
            (
                ann.values.recency_days,
                ann.values.frequency,
                ann.values.monetary_cents
            ),
            (1, 3, 3_500)
        );
        // Three distinct values per metric → scores 1, 3, 5.
        assert_eq!(ann.score, RfmScore { r: 5, f: 5, m: 3 });
        assert_eq!(ann.segment, Segment::Champions);
        let bob = &rows[1];
        assert_eq!(bob.values.recency_days, 304);
        // bob and cat tie on one order: mid-rank u = 1/3 → score 2 for both.
        assert_eq!(bob.score, RfmScore { r: 1, f: 2, m: 1 });
        assert_eq!(bob.segment, Segment::Lost);
        let cat = &rows[2];
        assert_eq!(cat.score, RfmScore { r: 3, f: 2, m: 5 });
        assert_eq!(cat.segment, Segment::Hibernating);
        assert!(rfm_table::<String>(&[], d("2024-03-31"))
            .unwrap()
            .is_empty());
    }
}
