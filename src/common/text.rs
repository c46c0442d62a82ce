//! Free-text fields a client names things with (a member's name, a campaign's name, an order
//! reference…): trimmed, 1 to a bounded number of characters, no control characters. One rule
//! and one message for every such field, so that they cannot drift apart.
//!
//! Limits count characters (Unicode scalar values), not bytes: a 100-character limit takes
//! 100 Chinese characters. Fields that are keys or ids bounded in bytes keep their own rules.

use super::error::{ApiError, ApiResult};

/// `value` trimmed, when it holds 1 to `max_chars` characters and none is a control character
/// (newlines and tabs included); `None` otherwise.
pub fn trimmed(value: &str, max_chars: usize) -> Option<&str> {
    let value = value.trim();
    let valid = !value.is_empty()
        && value.chars().count() <= max_chars
        && !value.chars().any(char::is_control);
    valid.then_some(value)
}

/// A required text field: `value` trimmed, or 422 `validation_failed` naming `field`.
pub fn required(field: &str, value: &str, max_chars: usize) -> ApiResult<String> {
    trimmed(value, max_chars)
        .map(str::to_owned)
        .ok_or_else(|| invalid(field, max_chars))
}

/// An optional text field: absent stays absent; present, it follows [`required`].
pub fn optional(field: &str, value: Option<&str>, max_chars: usize) -> ApiResult<Option<String>> {
    value.map(|v| required(field, v, max_chars)).transpose()
}

/// The 422 [`required`] answers for `field`.
pub fn invalid(field: &str, max_chars: usize) -> ApiError {
    ApiError::validation(
        field,
        format!("must be 1 to {max_chars} printable characters"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_counts_characters_not_bytes() {
        assert_eq!(required("name", "  王小明 ", 3).unwrap(), "王小明");
        assert!(required("name", "王小明", 2).is_err());
        assert_eq!(required("name", "abc", 3).unwrap(), "abc");
    }

    #[test]
    fn empty_blank_and_control_characters_are_refused_naming_the_field() {
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            "bell\u{7}",
            "next\u{85}line",
        ] {
            let error = required("order_ref", bad, 100).unwrap_err();
            assert_eq!(error.status.as_u16(), 422, "{bad:?}");
            assert_eq!(
                error.details.as_ref().unwrap()["field"],
                "order_ref",
                "{bad:?}"
            );
            assert!(
                error.message.contains("1 to 100 printable characters"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn trailing_newlines_are_trimmed_not_refused() {
        assert_eq!(trimmed("name\n", 10), Some("name"));
    }

    #[test]
    fn optional_keeps_absent_absent() {
        assert_eq!(optional("name", None, 10).unwrap(), None);
        assert_eq!(
            optional("name", Some(" x "), 10).unwrap(),
            Some("x".to_owned())
        );
        assert!(optional("name", Some(""), 10).is_err());
    }
}
