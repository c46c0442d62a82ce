//! A JSON extractor whose rejections are our error shape (axum's `error-handling` example):
//! malformed JSON, wrong types and unknown fields become 400 `invalid_request` naming the
//! problem; a body over the limit becomes 413 `payload_too_large`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

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
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::payload_too_large(MAX_JSON_BODY_BYTES);
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid_request("expected a body with Content-Type: application/json")
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid_request(format!("malformed JSON: {}", source_text(&e)))
        }
        JsonRejection::JsonDataError(e) => {
            let text = source_text(&e);
            let mut error = ApiError::invalid_request(text.clone());
            if let Some(field) = named_field(&text) {
                error = error.with_details(json!({ "field": field }));
            }
            error
        }
        other => ApiError::invalid_request(other.body_text()),
    }
}

/// The innermost message of a rejection (axum wraps serde's message in its own prefix).
fn source_text(error: &dyn std::error::Error) -> String {
    let mut current: &dyn std::error::Error = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
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

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::named_field;

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
