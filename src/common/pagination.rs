//! Page sizes and cursors shared by every list endpoint.

use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};

/// `?limit=&cursor=` of a list whose pages are at most 200 long.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Validate a `limit` query parameter: default when absent, 1..=max otherwise.
pub fn limit(requested: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    count("limit", requested, default, max)
}

/// A bounded count given in the parameter `field` (`limit`, `top`…): `default` when absent,
/// 422 naming `field` outside `1..=max`.
pub fn count(field: &str, requested: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation(
            field,
            format!("must be between 1 and {max}"),
        )),
    }
}

/// Read the `cursor` query parameter with `parse`, the parser of what the cursor carries (an
/// id's `parse`, a cursor type's `decode`): `None` when absent, 422 naming `cursor` when it is
/// not one this API handed out.
pub fn cursor<T>(raw: Option<&str>, parse: impl FnOnce(&str) -> Option<T>) -> ApiResult<Option<T>> {
    raw.map(|text| {
        parse(text).ok_or_else(|| ApiError::validation("cursor", "is not a cursor from this API"))
    })
    .transpose()
}

/// Trim a page fetched with `limit + 1` rows to `limit`; the cursor is the last row's `id` when
/// there was more, `None` on the last page.
pub fn next_cursor<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> String) -> Option<String> {
    if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(id)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cursor_only_when_there_is_more() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(
            next_cursor(&mut rows, 2, |n| n.to_string()),
            Some("2".into())
        );
        assert_eq!(rows, [1, 2]);
        let mut rows = vec![1, 2];
        assert_eq!(next_cursor(&mut rows, 2, |n| n.to_string()), None);
        assert_eq!(rows, [1, 2]);
    }

    #[test]
    fn cursor_is_parsed_or_refused_naming_the_parameter() {
        let even = |text: &str| text.parse::<u32>().ok().filter(|n| n % 2 == 0);
        assert_eq!(cursor(None, even).unwrap(), None);
        assert_eq!(cursor(Some("4"), even).unwrap(), Some(4));
        for bad in ["3", "", "x"] {
            let error = cursor(Some(bad), even).unwrap_err();
            assert_eq!(error.status.as_u16(), 422, "{bad:?}");
            assert_eq!(error.details.as_ref().unwrap()["field"], "cursor");
        }
    }

    #[test]
    fn limit_is_bounded() {
        assert_eq!(limit(None, 50, 200).unwrap(), 50);
        assert_eq!(limit(Some(200), 50, 200).unwrap(), 200);
        assert!(limit(Some(201), 50, 200).is_err());
        assert!(limit(Some(0), 50, 200).is_err());
    }
}
