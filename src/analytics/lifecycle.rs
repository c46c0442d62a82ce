//! Lifecycle stages and monthly acquisition cohorts, as pure functions over purchase days.
//!
//! Stages (days counted in the tenant's local calendar, as of "today"):
//!
//! | stage | rule |
//! | --- | --- |
//! | `new` | first purchase at most [`NEW_DAYS`] days ago |
//! | `won_back` | last purchase at most [`ACTIVE_DAYS`] days ago, after a gap of more than [`LAPSED_DAYS`] days since the purchase before it |
//! | `active` | last purchase at most [`ACTIVE_DAYS`] days ago |
//! | `at_risk` | last purchase [`ACTIVE_DAYS`] to [`LAPSED_DAYS`] days ago |
//! | `lapsed` | last purchase more than [`LAPSED_DAYS`] days ago |
//!
//! | `advocate` | a customer in `new`, `active` or `won_back` with at least one qualified referral (pending or rewarded) |
//!
//! `advocate` takes precedence over the recency stages it replaces, but not over `at_risk` and
//! `lapsed`: a slipping member who once invited friends still needs the reminder.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::model::summary::{Day, Purchase};

pub const NEW_DAYS: i64 = 30;
pub const ACTIVE_DAYS: i64 = 90;
pub const LAPSED_DAYS: i64 = 180;

/// A member's lifecycle stage.
pub fn stage(first: Day, last: Day, before_last: Option<Day>, today: Day) -> &'static str {
    let since_last = last.days_until(today);
    if first.days_until(today) <= NEW_DAYS {
        "new"
    } else if since_last <= ACTIVE_DAYS {
        match before_last {
            Some(previous) if previous.days_until(last) > LAPSED_DAYS => "won_back",
            _ => "active",
        }
    } else if since_last <= LAPSED_DAYS {
        "at_risk"
    } else {
        "lapsed"
    }
}

/// The stage shown for a customer: `advocate` replaces a healthy stage when they brought
/// qualified invitees.
pub fn with_advocacy(stage: &'static str, qualified_invites: bool) -> &'static str {
    match stage {
        "new" | "active" | "won_back" if qualified_invites => "advocate",
        other => other,
    }
}

/// One acquisition cohort: customers whose first purchase fell in `cohort` (YYYY-MM), and per
/// month since then how many bought and what they spent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cohort {
    pub cohort: String,
    pub customers: usize,
    /// `active[k]`: customers of the cohort who bought in month k (month 0 = the first).
    pub active: Vec<usize>,
    /// `revenue[k]`: what the cohort spent in month k (minor units).
    pub revenue: Vec<i64>,
}

fn month_index(day: Day) -> i32 {
    let (y, m, _) = day.to_ymd();
    y * 12 + m as i32 - 1
}

/// A cohort while it is being counted: per month since acquisition, who bought and the revenue.
struct Building<'a, K> {
    customers: usize,
    active: Vec<BTreeSet<&'a K>>,
    revenue: Vec<i64>,
}

/// Monthly acquisition cohorts × month-by-month retention and revenue.
pub fn cohorts<K: Ord + Clone>(purchases: &[Purchase<K>]) -> Vec<Cohort> {
    let mut first: BTreeMap<&K, i32> = BTreeMap::new();
    for p in purchases {
        let m = month_index(p.day);
        first
            .entry(&p.customer)
            .and_modify(|f| *f = (*f).min(m))
            .or_insert(m);
    }
    let last_month = purchases
        .iter()
        .map(|p| month_index(p.day))
        .max()
        .unwrap_or(0);
    // cohort month → (customers, per month: set of active customers, revenue)
    let mut table: BTreeMap<i32, Building<'_, K>> = BTreeMap::new();
    for month in first.values() {
        let span = usize::try_from(last_month - month + 1).unwrap_or(1);
        let entry = table.entry(*month).or_insert_with(|| Building {
            customers: 0,
            active: vec![BTreeSet::new(); span],
            revenue: vec![0; span],
        });
        entry.customers += 1;
    }
    for p in purchases {
        let Some(cohort) = first.get(&p.customer) else {
            continue;
        };
        let k = usize::try_from(month_index(p.day) - cohort).unwrap_or(0);
        if let Some(entry) = table.get_mut(cohort) {
            if let (Some(set), Some(revenue)) = (entry.active.get_mut(k), entry.revenue.get_mut(k))
            {
                set.insert(&p.customer);
                *revenue += p.amount_cents;
            }
        }
    }
    table
        .into_iter()
        .map(|(month, b)| Cohort {
            cohort: format!(
                "{:04}-{:02}",
                month.div_euclid(12),
                month.rem_euclid(12) + 1
            ),
            customers: b.customers,
            active: b.active.iter().map(BTreeSet::len).collect(),
            revenue: b.revenue,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Day {
        Day::from_ymd(y, m, day).unwrap()
    }

    #[test]
    fn stages_follow_recency_and_gaps() {
        let today = d(2026, 6, 30);
        assert_eq!(stage(d(2026, 6, 10), d(2026, 6, 10), None, today), "new");
        assert_eq!(
            stage(d(2025, 1, 1), d(2026, 6, 1), Some(d(2026, 5, 1)), today),
            "active"
        );
        assert_eq!(
            stage(d(2025, 1, 1), d(2026, 6, 1), Some(d(2025, 1, 1)), today),
            "won_back"
        );
        assert_eq!(stage(d(2025, 1, 1), d(2026, 3, 1), None, today), "at_risk");
        assert_eq!(stage(d(2025, 1, 1), d(2025, 6, 1), None, today), "lapsed");
        // Boundaries: exactly 90 days is still active, exactly 180 still at risk.
        assert_eq!(stage(d(2025, 1, 1), d(2026, 4, 1), None, today), "active");
        assert_eq!(stage(d(2025, 1, 1), d(2026, 1, 1), None, today), "at_risk");
    }

    #[test]
    fn advocates_are_healthy_customers_with_qualified_invites() {
        assert_eq!(with_advocacy("active", true), "advocate");
        assert_eq!(with_advocacy("new", true), "advocate");
        assert_eq!(with_advocacy("won_back", true), "advocate");
        assert_eq!(with_advocacy("active", false), "active");
        assert_eq!(with_advocacy("at_risk", true), "at_risk");
        assert_eq!(with_advocacy("lapsed", true), "lapsed");
    }

    #[test]
    fn cohorts_count_retention_and_revenue() {
        let p = |c: &str, day: Day, amount: i64| Purchase {
            customer: c.to_owned(),
            day,
            amount_cents: amount,
        };
        let purchases = vec![
            p("a", d(2026, 1, 5), 100),
            p("a", d(2026, 1, 20), 50),
            p("b", d(2026, 1, 9), 200),
            p("a", d(2026, 3, 1), 70),
            p("c", d(2026, 2, 2), 10),
        ];
        let table = cohorts(&purchases);
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].cohort, "2026-01");
        assert_eq!(table[0].customers, 2);
        assert_eq!(table[0].active, vec![2, 0, 1]);
        assert_eq!(table[0].revenue, vec![350, 0, 70]);
        assert_eq!(table[1].cohort, "2026-02");
        assert_eq!(table[1].active, vec![1, 0]);
    }
}
