//! A JSON extractor whose rejections are our error shape (axum's `error-handling` example):
//! malformed JSON, wrong types and unknown fields become 400 `invalid_request` naming the
//! problem; a body over the limit becomes 413 `payload_too_large`; text holding NUL (`\u0000`,
//! which PostgreSQL refuses in `text` and `jsonb`) becomes 422 `invalid_text` naming the field,
//! on both back ends, before any handler sees it.
//!
//! The body is buffered as bytes and scanned once for a `\u0000` escape (a raw NUL byte is not
//! valid JSON and fails parsing anyway); only when one is found is it parsed a second time to
//! name the field that holds it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;

/// The largest JSON body accepted (imports stream and have their own limits).
pub const MAX_JSON_BODY_BYTES: usize = 2 * 1024 * 1024;

/// `Json<T>` with our rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::invalid_request(
                "expected a body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(MAX_JSON_BODY_BYTES)
            } else {
                ApiError::invalid_request(format!(
                    "could not read the request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        from_slice(&bytes).map(Json)
    }
}

/// `application/json` or any `application/*+json`, parameters (`; charset=utf-8`) ignored.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Deserialize a JSON body with our rejections (also for bodies read some other way).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if has_escaped_nul(bytes) {
        if let Some(field) = nul_field(bytes) {
            return Err(ApiError::invalid_text(&field));
        }
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut *deserializer) {
        Ok(value) => value,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let text = if path == "." {
                        inner.to_string()
                    } else {
                        format!("{path}: {inner}")
                    };
                    let mut error = ApiError::invalid_request(text.clone());
                    if let Some(field) = named_field(&text) {
                        error = error.with_details(json!({ "field": field }));
                    }
                    error
                }
                _ => ApiError::invalid_request(format!("malformed JSON: {inner}")),
            });
        }
    };
    deserializer
        .end()
        .map_err(|e| ApiError::invalid_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// True when the JSON text holds a `\u0000` escape, i.e. a `u0000` after an odd run of
/// backslashes (`\\u0000` is an escaped backslash followed by plain text). One pass, no
/// allocation.
pub fn has_escaped_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            // Skip the escaped character, so `\\` never starts another escape.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The path (`items[0].name`, or a key's parent path) of the first string holding NUL, when the
/// body parses as JSON.
fn nul_field(bytes: &[u8]) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.replace('\0', "\\u0000"));
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let mut path = String::new();
    walk(&value, &mut path).then(|| {
        if path.is_empty() {
            ".".to_owned()
        } else {
            path
        }
    })
}

/// Pull the field name out of serde's messages: "unknown field `balance`, expected …" or
/// "name: invalid type …" (serde_path_to_error's path prefix).
fn named_field(message: &str) -> Option<String> {
    if let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))
    {
        return rest.split('`').next().map(str::to_owned);
    }
    if let Some((path, rest)) = message.split_once(": ") {
        if !path.contains(' ') && !rest.is_empty() && path != "." {
            return Some(path.to_owned());
        }
    }
    message
        .split_once("field `")
        .and_then(|(_, rest)| rest.split('`').next())
        .map(str::to_owned)
}

/// For PATCH bodies: tell an absent field (`None`, keep the value) from an explicit `null`
/// (`Some(None)`, clear it). Use with `#[serde(default, deserialize_with = "double_option")]`.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What a response body's buffer starts with: most answers (one member, an order, a refusal)
/// fit; a page grows it a few times.
const BODY_CAPACITY: usize = 1024;

/// The body is written into a `Vec`, not through axum's `Json`, which writes through a
/// `BytesMut` writer: a call and a capacity check for every token, about 6k instructions of
/// the 13k that a member's JSON cost (callgrind, docs/benchmarks.md "HTTP stack").
impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(BODY_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(error) => ApiError::internal(error).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{from_slice, has_escaped_nul, named_field};

    #[test]
    fn finds_only_real_nul_escapes() {
        assert!(has_escaped_nul(br#"{"a":"x\u0000y"}"#));
        assert!(has_escaped_nul(br#"{"a":"\\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a":"\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a":"\u0001"}"#));
        assert!(!has_escaped_nul(br#"{"a":"u0000"}"#));
    }

    #[test]
    fn nul_is_invalid_text_naming_the_field() {
        let error =
            from_slice::<serde_json::Value>(br#"{"items":[{"name":"a\u0000"}]}"#).unwrap_err();
        assert_eq!(error.code, "invalid_text");
        assert_eq!(error.body()["error"]["details"]["field"], "items[0].name");
        let fine: serde_json::Value = from_slice(br#"{"a":"\\u0000"}"#).unwrap();
        assert_eq!(fine["a"], "\\u0000");
    }

    #[test]
    fn names_fields_in_serde_messages() {
        assert_eq!(
            named_field("unknown field `balance`, expected one of `name`").as_deref(),
            Some("balance")
        );
        assert_eq!(
            named_field("phone: invalid type: integer `5`, expected a string").as_deref(),
            Some("phone")
        );
        assert_eq!(
            named_field("missing field `external_id`").as_deref(),
            Some("external_id")
        );
    }
}
