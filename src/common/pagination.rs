//! Page sizes and cursors shared by every list endpoint.

use super::error::ApiError;

/// Validate a `limit` query parameter: default when absent, 1..=max otherwise.
pub fn limit(requested: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_bounded() {
        assert_eq!(limit(None, 50, 200).unwrap(), 50);
        assert_eq!(limit(Some(200), 50, 200).unwrap(), 200);
        assert!(limit(Some(201), 50, 200).is_err());
        assert!(limit(Some(0), 50, 200).is_err());
    }
}
