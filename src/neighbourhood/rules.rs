//! The wave arithmetic, pure: cut-offs in the tenant's time zone, pick lists and purchase
//! totals, leader commission after refunds (with claw-back and debt), pickup codes and
//! distances between pickup points. No I/O; unit-tested here.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Basis points in one.
pub const BP: i64 = 10_000;
/// The highest leader commission rate (50%).
pub const MAX_COMMISSION_BP: i64 = 5_000;

/// An instant given by a client: RFC 3339 with an offset, a civil date-time
/// (`2026-12-07T23:00:00`, read in `zone`: the tenant's, DESIGN rule 6) or a date (its first
/// instant in `zone`).
pub fn local_instant(text: &str, zone: &TimeZone) -> Option<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    // A civil date-time first: a date parser would read `2026-12-07T08:00:00` as its day.
    if text.contains(['T', 't', ' ']) {
        let civil: jiff::civil::DateTime = text.parse().ok()?;
        return civil.to_zoned(zone.clone()).ok().map(|z| z.timestamp());
    }
    crate::common::time::parse_instant_in(text, zone)
}

/// Where a wave stands at `now` (micros): before `opens_at`, between, or at/after `cutoff_at`
/// (the cut-off instant itself is closed: 23:00:00 takes no order, 22:59:59 does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Upcoming,
    Open,
    Closed,
}

pub fn phase(now: i64, opens_at: i64, cutoff_at: i64, closed: bool) -> Phase {
    if closed || now >= cutoff_at {
        Phase::Closed
    } else if now < opens_at {
        Phase::Upcoming
    } else {
        Phase::Open
    }
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Upcoming => "upcoming",
            Phase::Open => "open",
            Phase::Closed => "closed",
        }
    }
}

/// One line of a paid wave order, as the lists count it (units after shortages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickLine {
    pub leader_id: String,
    pub product_id: String,
    pub qty: i64,
}

/// Units per product for each leader (leaders and products in id order; zero lines dropped).
pub fn pick_lists(lines: &[PickLine]) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut lists: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.qty > 0) {
        *lists
            .entry(line.leader_id.clone())
            .or_default()
            .entry(line.product_id.clone())
            .or_default() += line.qty;
    }
    lists
}

/// Units per product across leaders: the purchase list (the sum of the pick lists).
pub fn purchase_totals(lines: &[PickLine]) -> BTreeMap<String, i64> {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.qty > 0) {
        *totals.entry(line.product_id.clone()).or_default() += line.qty;
    }
    totals
}

/// A leader's commission on an order: `bp` of what is still paid (`total - refunded`, never
/// below zero), rounded down to the fen.
pub fn commission(bp: i64, total: i64, refunded: i64) -> i64 {
    let base = i128::from((total - refunded).max(0));
    i64::try_from(base * i128::from(bp.clamp(0, BP)) / i128::from(BP)).unwrap_or(0)
}

/// After release, a reduction of `reduction` is taken back from `available` as far as it
/// goes; the rest becomes debt. Returns (taken back, debt).
pub fn claw_back(reduction: i64, available: i64) -> (i64, i64) {
    let reduction = reduction.max(0);
    let taken = reduction.min(available.max(0));
    (taken, reduction - taken)
}

/// What of a released commission repays a debt.
pub fn repay(released: i64, debt: i64) -> i64 {
    released.max(0).min(debt.max(0))
}

/// A 6-digit pickup code (核销码) from a random number.
pub fn pickup_code(random: u32) -> String {
    format!("{:06}", random % 1_000_000)
}

/// Is `text` shaped like a pickup code?
pub fn is_pickup_code(text: &str) -> bool {
    text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Micro-degrees in one degree.
pub const MICRO: f64 = 1_000_000.0;

/// Great-circle distance in metres between two points in micro-degrees (haversine on a
/// sphere of 6 371 km: within 0.5% of the ellipsoid, enough to sort pickup points).
pub fn distance_m(from: (i64, i64), to: (i64, i64)) -> i64 {
    const EARTH_RADIUS_M: f64 = 6_371_000.0;
    let rad = |micro: i64| (micro as f64 / MICRO).to_radians();
    let (lat1, lng1, lat2, lng2) = (rad(from.0), rad(from.1), rad(to.0), rad(to.1));
    let a = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lng2 - lng1) / 2.0).sin().powi(2);
    let metres = 2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin();
    metres.round() as i64
}

/// A latitude and longitude in degrees as micro-degrees, when they are on the globe.
pub fn micro_degrees(lat: f64, lng: f64) -> Option<(i64, i64)> {
    let valid = lat.is_finite()
        && lng.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lng);
    valid.then(|| ((lat * MICRO).round() as i64, (lng * MICRO).round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(leader: &str, product: &str, qty: i64) -> PickLine {
        PickLine {
            leader_id: leader.into(),
            product_id: product.into(),
            qty,
        }
    }

    #[test]
    fn cutoff_is_judged_in_the_tenants_zone_and_the_instant_itself_is_closed() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let cutoff = local_instant("2026-12-07T23:00:00", &zone).unwrap();
        assert_eq!(cutoff.to_string(), "2026-12-07T15:00:00Z");
        let opens = local_instant("2026-12-07T08:00:00", &zone).unwrap();
        assert_eq!(opens.to_string(), "2026-12-07T00:00:00Z");
        let day = local_instant("2026-12-07", &zone).unwrap();
        assert_eq!(day.to_string(), "2026-12-06T16:00:00Z");
        assert!(local_instant("soon", &zone).is_none());
        let cutoff = crate::common::time::to_micros(cutoff);
        let before =
            crate::common::time::to_micros(local_instant("2026-12-07T22:59:59", &zone).unwrap());
        let at = crate::common::time::to_micros(
            local_instant("2026-12-07T23:00:00+08:00", &zone).unwrap(),
        );
        assert_eq!(phase(before, 0, cutoff, false), Phase::Open);
        assert_eq!(phase(at, 0, cutoff, false), Phase::Closed);
        assert_eq!(phase(0, 1, cutoff, false), Phase::Upcoming);
        assert_eq!(phase(before, 0, cutoff, true), Phase::Closed);
    }

    #[test]
    fn pick_lists_sum_to_the_purchase_list() {
        let lines = vec![
            line("l1", "apple", 2),
            line("l2", "apple", 3),
            line("l1", "pear", 1),
            line("l1", "apple", 4),
            line("l3", "pear", 0),
        ];
        let lists = pick_lists(&lines);
        assert_eq!(lists["l1"]["apple"], 6);
        assert_eq!(lists["l2"]["apple"], 3);
        assert!(!lists.contains_key("l3"));
        let totals = purchase_totals(&lines);
        for (product, total) in &totals {
            let sum: i64 = lists.values().filter_map(|l| l.get(product)).sum();
            assert_eq!(sum, *total);
        }
        assert_eq!(totals["apple"], 9);
        assert_eq!(totals["pear"], 1);
    }

    #[test]
    fn commission_follows_what_is_still_paid_rounded_down() {
        assert_eq!(commission(1_000, 9_999, 0), 999);
        assert_eq!(commission(1_000, 10_000, 2_500), 750);
        assert_eq!(commission(1_000, 10_000, 10_000), 0);
        assert_eq!(commission(1_000, 10_000, 12_000), 0);
        assert_eq!(commission(0, 10_000, 0), 0);
        assert_eq!(commission(BP, i64::MAX, 0), i64::MAX);
    }

    #[test]
    fn claw_back_takes_what_the_balance_holds_and_the_rest_is_debt() {
        assert_eq!(claw_back(500, 1_000), (500, 0));
        assert_eq!(claw_back(500, 200), (200, 300));
        assert_eq!(claw_back(500, -5), (0, 500));
        assert_eq!(claw_back(-1, 100), (0, 0));
        assert_eq!(repay(300, 100), 100);
        assert_eq!(repay(50, 100), 50);
        assert_eq!(repay(50, 0), 0);
    }

    #[test]
    fn pickup_codes_have_six_digits() {
        assert_eq!(pickup_code(42), "000042");
        assert_eq!(pickup_code(1_234_567), "234567");
        assert!(is_pickup_code("012345"));
        assert!(!is_pickup_code("12345"));
        assert!(!is_pickup_code("12345a"));
    }

    #[test]
    fn distances_sort_pickup_points() {
        let tiananmen = micro_degrees(39.9087, 116.3975).unwrap();
        let wangfujing = micro_degrees(39.9149, 116.4108).unwrap();
        let shanghai = micro_degrees(31.2304, 121.4737).unwrap();
        let near = distance_m(tiananmen, wangfujing);
        assert!((1_200..1_400).contains(&near), "{near}");
        let far = distance_m(tiananmen, shanghai);
        assert!((1_060_000..1_080_000).contains(&far), "{far}");
        assert_eq!(distance_m(shanghai, shanghai), 0);
        assert!(micro_degrees(91.0, 0.0).is_none());
        assert!(micro_degrees(f64::NAN, 0.0).is_none());
    }
}
