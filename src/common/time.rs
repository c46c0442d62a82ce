//! Time as stored: instants are kept in the database as integer microseconds since the Unix
//! epoch (UTC), which both back ends index and compare the same way; the API shows RFC 3339.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::common::error::ApiError;

/// Microseconds since the epoch, as stored in `*_at` columns.
pub fn to_micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

/// The instant stored as microseconds since the epoch.
pub fn from_micros(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// RFC 3339 text of a stored instant.
pub fn micros_to_rfc3339(micros: i64) -> String {
    from_micros(micros).to_string()
}

/// The time zone of a tenant that has not chosen one (DESIGN rule 6).
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// A time zone by IANA name (`Asia/Shanghai`, `Europe/Berlin`, `UTC`), from the database bundled
/// into the binary (jiff's `tzdb-bundle-always`), so the answer does not depend on the host.
pub fn time_zone_named(name: &str) -> Option<TimeZone> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    TimeZone::get(name).ok()
}

/// Parse an RFC 3339 instant (`2026-11-22T08:00:00Z`, `2026-11-22T16:00:00+08:00`) or a plain
/// date (`2026-12-08`), read as the first instant of that day in `zone` (the tenant's: DESIGN
/// rule 6). A day that starts inside a daylight-saving gap starts when the gap ends.
pub fn parse_instant_in(text: &str, zone: &TimeZone) -> Option<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    date.to_zoned(zone.clone()).ok().map(|z| z.timestamp())
}

/// [`parse_instant_in`] for a request field: 422 naming `field` when `text` is neither.
pub fn instant_field(field: &str, text: &str, zone: &TimeZone) -> Result<Timestamp, ApiError> {
    parse_instant_in(text, zone).ok_or_else(|| {
        ApiError::validation(
            field,
            "must be an RFC 3339 instant (2026-12-08T20:00:00+08:00) or a date (2026-12-08: \
             the start of that day in the tenant's time zone)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let at: Timestamp = "2026-11-22T08:00:00.123456Z".parse().unwrap();
        assert_eq!(from_micros(to_micros(at)), at);
    }

    #[test]
    fn a_plain_date_is_the_start_of_that_day_in_the_zone() {
        let shanghai = time_zone_named("Asia/Shanghai").unwrap();
        assert_eq!(
            parse_instant_in("2026-12-08", &shanghai)
                .unwrap()
                .to_string(),
            "2026-12-07T16:00:00Z"
        );
        let new_york = time_zone_named("America/New_York").unwrap();
        assert_eq!(
            parse_instant_in("2026-12-08", &new_york)
                .unwrap()
                .to_string(),
            "2026-12-08T05:00:00Z"
        );
        // Summer time: New York is UTC-4.
        assert_eq!(
            parse_instant_in("2026-07-01", &new_york)
                .unwrap()
                .to_string(),
            "2026-07-01T04:00:00Z"
        );
        // Santiago skips midnight on 2026-09-06 (00:00 -> 01:00): the day starts at 01:00 -04.
        let santiago = time_zone_named("America/Santiago").unwrap();
        assert_eq!(
            parse_instant_in("2026-09-06", &santiago)
                .unwrap()
                .to_string(),
            "2026-09-06T04:00:00Z"
        );
        // A full instant keeps its own offset whatever the zone.
        assert_eq!(
            parse_instant_in("2026-12-08T00:00:00Z", &shanghai)
                .unwrap()
                .to_string(),
            "2026-12-08T00:00:00Z"
        );
        assert!(parse_instant_in("2026-02-30", &shanghai).is_none());
        assert!(parse_instant_in("tomorrow", &shanghai).is_none());
    }

    #[test]
    fn zones_are_known_by_iana_name_only() {
        assert!(time_zone_named("Asia/Shanghai").is_some());
        assert!(time_zone_named("UTC").is_some());
        assert!(time_zone_named("Mars/Olympus").is_none());
        assert!(time_zone_named("").is_none());
        assert!(time_zone_named(&"A".repeat(200)).is_none());
    }
}
