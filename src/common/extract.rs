//! `Query` and `Path` extractors whose rejections are our error shape, like
//! [`super::json::Json`] for bodies: every handler takes its parameters through these, so no
//! request gets axum's plain-text rejections.
//!
//! - a query parameter or path segment holding NUL (`%00`, which PostgreSQL refuses in text) is
//!   422 `invalid_text` naming the parameter, on both back ends;
//! - an unknown query parameter is 400 `invalid_request` (the README's rule: unknown fields are
//!   rejected), found with `serde_ignored` so that no query struct needs its own attribute;
//! - a value of the wrong type (`?limit=abc`), a repeated parameter or a path segment that is
//!   not UTF-8 is 400 `invalid_request` naming the parameter in `details.field`.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;

/// Query-string parameters deserialized into `T`, rejecting unknown ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Parse a query string the way [`Query`] does.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.contains('\0') || value.contains('\0') {
            return Err(ApiError::invalid_text(&name.replace('\0', "%00")));
        }
    }
    let mut unknown: Option<String> = None;
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    let mut on_unknown = |path: serde_ignored::Path| {
        unknown.get_or_insert_with(|| path.to_string());
    };
    let ignoring = serde_ignored::Deserializer::new(deserializer, &mut on_unknown);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(ignoring);
    match parsed {
        Ok(value) => match unknown {
            None => Ok(value),
            Some(name) => Err(ApiError::invalid_request(format!(
                "unknown query parameter `{name}`"
            ))
            .with_details(json!({ "field": name }))),
        },
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner().to_string();
            let field = if path == "." {
                named_parameter(&inner)
            } else {
                Some(path)
            };
            let message = match &field {
                Some(field) if !inner.contains(&format!("`{field}`")) => {
                    format!("query parameter `{field}`: {inner}")
                }
                _ => format!("query string: {inner}"),
            };
            let mut error = ApiError::invalid_request(message);
            if let Some(field) = field {
                error = error.with_details(json!({ "field": field }));
            }
            Err(error)
        }
    }
}

/// "missing field `member_id`", "duplicate field `limit`" name their parameter.
fn named_parameter(message: &str) -> Option<String> {
    message
        .split_once('`')
        .and_then(|(_, rest)| rest.split('`').next())
        .map(str::to_owned)
}

/// Path segments deserialized into `T` (percent-decoded by axum).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;

        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
                return Err(ApiError::invalid_text(name));
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let text = error.body_text();
                let field = match error.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        return Err(ApiError::invalid_request(format!(
                            "path parameter `{key}` is not valid UTF-8"
                        ))
                        .with_details(json!({ "field": key })));
                    }
                    ErrorKind::ParseErrorAtKey { key, .. } => Some(key.clone()),
                    ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                    ErrorKind::WrongNumberOfParameters { .. }
                    | ErrorKind::UnsupportedType { .. } => {
                        return Err(ApiError::internal(anyhow::anyhow!(
                            "path extractor: {text}"
                        )));
                    }
                    _ => None,
                };
                let mut rejection = ApiError::invalid_request(text);
                if let Some(field) = field {
                    rejection = rejection.with_details(json!({ "field": field }));
                }
                Err(rejection)
            }
            Err(other) => Err(ApiError::internal(anyhow::anyhow!(
                "path extractor: {}",
                other.body_text()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::parse_query;

    #[derive(Debug, Deserialize)]
    struct Page {
        limit: Option<i64>,
        q: Option<String>,
    }

    #[test]
    fn query_rejections_name_the_parameter() {
        let page: Page = parse_query("limit=5&q=x").unwrap();
        assert_eq!((page.limit, page.q.as_deref()), (Some(5), Some("x")));

        let error = parse_query::<Page>("limit=abc").unwrap_err();
        assert_eq!(error.code, "invalid_request");
        assert_eq!(error.body()["error"]["details"]["field"], "limit");

        let error = parse_query::<Page>("bogus=1").unwrap_err();
        assert_eq!(error.code, "invalid_request");
        assert_eq!(error.body()["error"]["details"]["field"], "bogus");

        let error = parse_query::<Page>("q=a%00b").unwrap_err();
        assert_eq!(error.code, "invalid_text");
        assert_eq!(error.status.as_u16(), 422);
        assert_eq!(error.body()["error"]["details"]["field"], "q");

        let error = parse_query::<Page>("limit=1&limit=2").unwrap_err();
        assert_eq!(error.code, "invalid_request");
    }
}
