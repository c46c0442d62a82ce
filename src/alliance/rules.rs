//! The alliance's rules that need no I/O: the referral fee, the opaque customer id, a
//! statement's month, and the balances summed from entries.

use hmac::{Hmac, Mac as _};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rand::RngCore as _;
use sha2::Sha256;

use super::model::{FeeKind, ReferralFee};

/// Basis points in a whole.
pub const BP: i64 = 10_000;
/// Largest fixed fee (¥100,000 in fen).
pub const MAX_FIXED_FEE: i64 = 10_000_000;

/// The fee partner B owes for an order of `total` fen: the fixed value, or `value` basis
/// points of the total rounded down (a fee never rounds up against the payer).
pub fn fee(rule: &ReferralFee, total: i64) -> i64 {
    if total <= 0 {
        return 0;
    }
    match rule.kind {
        FeeKind::Fixed => rule.value,
        FeeKind::PercentBp => {
            let fee = i128::from(total) * i128::from(rule.value) / i128::from(BP);
            i64::try_from(fee).unwrap_or(i64::MAX)
        }
    }
}

/// A new HMAC key for an alliance's customer ids (32 random bytes, hex).
pub fn new_customer_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

/// The opaque id by which the alliance knows the issuer's member: HMAC-SHA256 under the
/// alliance's server-side key of the issuer's tenant and member ids, truncated to 128 bits.
/// Neither partner holds the key, and the input is an id, not a phone number: nobody outside
/// the server can turn it back into a person, and it differs between alliances.
pub fn customer_id(key: &str, tenant_id: &str, member_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(tenant_id.as_bytes());
    mac.update(b":");
    mac.update(member_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("acu_{}", hex::encode(&digest[..16]))
}

/// `YYYY-MM` as the first day of that month.
pub fn parse_month(text: &str) -> Option<Date> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let year: i16 = year.parse().ok()?;
    let month: i8 = month.parse().ok()?;
    if !(1970..=9999).contains(&year) {
        return None;
    }
    Date::new(year, month, 1).ok()
}

/// The instants [start, end) of the month beginning on `first` in `zone`.
pub fn month_range(first: Date, zone: &TimeZone) -> Option<(Timestamp, Timestamp)> {
    let next = first.checked_add(jiff::Span::new().months(1)).ok()?;
    let start = first.to_zoned(zone.clone()).ok()?.timestamp();
    let end = next.to_zoned(zone.clone()).ok()?.timestamp();
    Some((start, end))
}

/// One partner's totals: what entries credited it (`owed`), debited it (`owes`), and the net.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub owed: i64,
    pub owes: i64,
}

impl Totals {
    pub fn net(self) -> i64 {
        self.owed.saturating_sub(self.owes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_fee_rounds_down_and_a_fixed_fee_is_the_value() {
        let percent = ReferralFee {
            kind: FeeKind::PercentBp,
            value: 333,
        };
        assert_eq!(fee(&percent, 10_000), 333);
        assert_eq!(fee(&percent, 999), 33);
        assert_eq!(fee(&percent, 0), 0);
        let fixed = ReferralFee {
            kind: FeeKind::Fixed,
            value: 500,
        };
        assert_eq!(fee(&fixed, 1), 500);
        assert_eq!(fee(&fixed, 0), 0);
        let all = ReferralFee {
            kind: FeeKind::PercentBp,
            value: BP,
        };
        assert_eq!(fee(&all, i64::MAX), i64::MAX);
    }

    #[test]
    fn customer_ids_are_stable_opaque_and_differ_by_key_and_member() {
        let a = customer_id("k1", "ten_1", "mem_1");
        assert_eq!(a, customer_id("k1", "ten_1", "mem_1"));
        assert_ne!(a, customer_id("k2", "ten_1", "mem_1"));
        assert_ne!(a, customer_id("k1", "ten_1", "mem_2"));
        assert_ne!(a, customer_id("k1", "ten_2", "mem_1"));
        assert!(a.starts_with("acu_") && a.len() == 36);
        assert!(!a.contains("mem_1"));
    }

    #[test]
    fn months_parse_strictly_and_span_the_local_month() {
        assert!(parse_month("2026-13").is_none());
        assert!(parse_month("2026-1").is_none());
        assert!(parse_month("26-01").is_none());
        assert!(parse_month("x").is_none());
        let first = parse_month("2026-02").unwrap();
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let (start, end) = month_range(first, &zone).unwrap();
        assert_eq!(start.to_string(), "2026-01-31T16:00:00Z");
        assert_eq!(end.to_string(), "2026-02-28T16:00:00Z");
    }

    #[test]
    fn net_is_owed_minus_owes() {
        let totals = Totals {
            owed: 300,
            owes: 500,
        };
        assert_eq!(totals.net(), -200);
    }
}
