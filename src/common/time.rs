//! Time as stored: instants are kept in the database as integer microseconds since the Unix
//! epoch (UTC), which both back ends index and compare the same way; the API shows RFC 3339.

use jiff::Timestamp;

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

/// Parse an RFC 3339 instant (`2026-11-22T08:00:00Z`) or a plain date (taken as midnight UTC).
pub fn parse_instant(text: &str) -> Option<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
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
    fn parse_instant_accepts_dates_and_timestamps() {
        assert_eq!(
            parse_instant("2026-01-02").unwrap().to_string(),
            "2026-01-02T00:00:00Z"
        );
        assert!(parse_instant("2026-01-02T03:04:05+08:00").is_some());
        assert!(parse_instant("yesterday").is_none());
    }
}
