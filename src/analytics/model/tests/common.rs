//! Loading the CDNOW purchase files for the integration tests.
//!
//! The data live outside the crate; set `CDNOW_DIR` to point elsewhere. A missing
//! file fails the test loudly rather than skipping it, so a green run always means
//! the published estimates were reproduced.

use std::path::PathBuf;

use crate::analytics::model::summary::{Day, Purchase};

pub fn data_path(file: &str) -> PathBuf {
    let dir = std::env::var("CDNOW_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cdnow").to_string()
    });
    PathBuf::from(dir).join(file)
}

/// Parses a decimal dollar amount such as `29.33`, `12.5` or `0` into cents without
/// going through floating point.
pub fn parse_cents(s: &str) -> Result<i64, String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad amount {s:?}"));
    }
    let whole: i64 = whole.parse().map_err(|_| format!("bad amount {s:?}"))?;
    let mut cents: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| format!("bad amount {s:?}"))?
    };
    if frac.len() == 1 {
        cents *= 10;
    }
    Ok(whole * 100 + cents)
}

/// Reads a whitespace-separated CDNOW file. `id_col`, `date_col` and `dollar_col`
/// are column indices; lines whose date column does not parse (the master file's
/// header) are skipped.
fn load(file: &str, id_col: usize, date_col: usize, dollar_col: usize) -> Vec<Purchase<u64>> {
    let path = data_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); set CDNOW_DIR", path.display()));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        let Ok(day) = Day::parse(cols[date_col]) else {
            assert_eq!(n, 0, "unparseable date on line {}", n + 1);
            continue;
        };
        out.push(Purchase {
            customer: cols[id_col].parse().expect("numeric customer id"),
            day,
            amount_cents: parse_cents(cols[dollar_col]).expect("amount"),
        });
    }
    out
}

/// `CDNOW_sample.txt`: master_id, sample_id, date, cds, dollars (keyed by sample_id).
pub fn load_sample() -> Vec<Purchase<u64>> {
    load("CDNOW_sample.txt", 1, 2, 4)
}

/// `CDNOW_master.txt`: customer_id, date, cds, dollars (one header line).
pub fn load_master() -> Vec<Purchase<u64>> {
    load("CDNOW_master.txt", 0, 1, 3)
}

pub fn calibration_end() -> Day {
    Day::parse("1997-09-30").expect("valid date")
}

pub fn holdout_end() -> Day {
    Day::parse("1998-06-30").expect("valid date")
}

#[test]
fn parses_cents() {
    assert_eq!(parse_cents("29.33"), Ok(2933));
    assert_eq!(parse_cents("0.00"), Ok(0));
    assert_eq!(parse_cents("12"), Ok(1200));
    assert_eq!(parse_cents("12.5"), Ok(1250));
    assert!(parse_cents("1.234").is_err());
}
