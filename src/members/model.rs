//! Member types and their validation: requests are parsed at the edge into validated values,
//! so the store never sees an unchecked phone number or an oversized attribute object.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::common::error::ApiError;
use crate::common::ids::MemberId;
use crate::common::json::double_option;
use crate::common::text;

/// Longest `external_id`, `name`, `source` and tag.
pub const MAX_EXTERNAL_ID_LEN: usize = 128;
pub const MAX_NAME_LEN: usize = 100;
pub const MAX_SOURCE_LEN: usize = 64;
pub const MAX_TAG_LEN: usize = 64;
/// Most tags one member may carry.
pub const MAX_TAGS: usize = 100;
/// Largest `attributes` object, as compact JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

/// The known source channels (free text is accepted too and stored as sent).
pub const KNOWN_SOURCES: &[&str] = &[
    "store",
    "course",
    "article",
    "video_account",
    "xiaohongshu",
    "paid_group",
    "exhibition",
    "wechat_group",
    "mini_program",
    "official_account",
    "douyin",
    "livestream",
    "referral",
    "import",
    "scan",
    "other",
];

/// Accepted `gender` values.
pub const GENDERS: &[&str] = &["female", "male", "other", "unknown"];

/// Marketing consent (rule 10: messages only to members who said yes).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// May the merchant send marketing messages?
    pub marketing: bool,
}

/// `POST /v1/members`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMember {
    /// The merchant's own id for this member; unique per tenant.
    pub external_id: Option<String>,
    pub name: Option<String>,
    /// E.164, e.g. `+8613800000000`.
    pub phone: Option<String>,
    /// `YYYY-MM-DD`.
    pub birthday: Option<String>,
    /// `female`, `male`, `other` or `unknown`.
    pub gender: Option<String>,
    /// Channel the member came from: one of the known keys (`store`, `xiaohongshu`, …) or free text.
    pub source: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free JSON object, at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    pub consent: Option<Consent>,
    /// An invite code (`GET /v1/members/{id}/invite-code`): attributes the new member to its
    /// owner (first touch, final). An unknown code is 422.
    pub invite_code: Option<String>,
    /// Anti-fraud signal: the device the member signed up on (at most 128 characters).
    pub device_id: Option<String>,
    /// Anti-fraud signal: the IP address the member signed up from.
    pub ip: Option<String>,
}

/// `PATCH /v1/members/{id}`: absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub birthday: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub gender: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub source: Option<Option<String>>,
    /// Replaces the whole object.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Option<Value>>,
    pub consent: Option<Consent>,
}

/// `POST /v1/members/{id}/tags`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A validated member profile, ready to store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub birthday: Option<String>,
    pub gender: Option<String>,
    pub source: Option<String>,
    pub tags: Vec<String>,
    pub attributes: Value,
    pub consent: Consent,
}

impl TryFrom<CreateMember> for Profile {
    type Error = ApiError;

    fn try_from(request: CreateMember) -> Result<Self, ApiError> {
        Ok(Profile {
            external_id: request.external_id.map(|v| external_id(&v)).transpose()?,
            name: request.name.map(|v| name(&v)).transpose()?,
            phone: request.phone.map(|v| phone(&v)).transpose()?,
            birthday: request.birthday.map(|v| birthday(&v)).transpose()?,
            gender: request.gender.map(|v| gender(&v)).transpose()?,
            source: request.source.map(|v| source(&v)).transpose()?,
            tags: tags("tags", &request.tags)?,
            attributes: attributes(request.attributes)?,
            consent: request.consent.unwrap_or_default(),
        })
    }
}

/// A validated PATCH: each `Some` is a field to set (`Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub external_id: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub birthday: Option<Option<String>>,
    pub gender: Option<Option<String>>,
    pub source: Option<Option<String>>,
    pub attributes: Option<Value>,
    pub consent: Option<Consent>,
}

impl Changes {
    /// Names of the fields this change sets, for the `member.updated` event.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        let pairs = [
            ("external_id", self.external_id.is_some()),
            ("name", self.name.is_some()),
            ("phone", self.phone.is_some()),
            ("birthday", self.birthday.is_some()),
            ("gender", self.gender.is_some()),
            ("source", self.source.is_some()),
            ("attributes", self.attributes.is_some()),
            ("consent", self.consent.is_some()),
        ];
        for (name, set) in pairs {
            if set {
                fields.push(name);
            }
        }
        fields
    }
}

fn optional(
    value: Option<Option<String>>,
    check: impl Fn(&str) -> Result<String, ApiError>,
) -> Result<Option<Option<String>>, ApiError> {
    value
        .map(|inner| inner.map(|v| check(&v)).transpose())
        .transpose()
}

impl TryFrom<UpdateMember> for Changes {
    type Error = ApiError;

    fn try_from(request: UpdateMember) -> Result<Self, ApiError> {
        Ok(Changes {
            external_id: optional(request.external_id, external_id)?,
            name: optional(request.name, name)?,
            phone: optional(request.phone, phone)?,
            birthday: optional(request.birthday, birthday)?,
            gender: optional(request.gender, gender)?,
            source: optional(request.source, source)?,
            attributes: request.attributes.map(attributes).transpose()?,
            consent: request.consent,
        })
    }
}

pub fn external_id(value: &str) -> Result<String, ApiError> {
    text::required("external_id", value, MAX_EXTERNAL_ID_LEN)
}

pub fn name(value: &str) -> Result<String, ApiError> {
    text::required("name", value, MAX_NAME_LEN)
}

/// E.164: `+`, a country code not starting with 0, 8 to 15 digits in all. Chinese mobile
/// numbers (`+86` then `1`) must have the 11 national digits they always have.
pub fn phone(value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let digits = value.strip_prefix('+').unwrap_or("");
    let valid = digits.len() >= 8
        && digits.len() <= 15
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return Err(ApiError::validation(
            "phone",
            "must be an E.164 number such as +8613800000000",
        ));
    }
    if let Some(national) = digits.strip_prefix("861") {
        if national.len() != 10 {
            return Err(ApiError::validation(
                "phone",
                "a Chinese mobile number has 11 digits after +86",
            ));
        }
    }
    Ok(value.to_owned())
}

/// `YYYY-MM-DD`, a real calendar date, not before 1900.
pub fn birthday(value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let date: jiff::civil::Date = value
        .parse()
        .map_err(|_| ApiError::validation("birthday", "must be a date YYYY-MM-DD"))?;
    if value.len() != 10 || date.year() < 1900 {
        return Err(ApiError::validation(
            "birthday",
            "must be a date YYYY-MM-DD from 1900 on",
        ));
    }
    Ok(date.to_string())
}

pub fn gender(value: &str) -> Result<String, ApiError> {
    let value = value.trim().to_ascii_lowercase();
    if GENDERS.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            "gender",
            format!("must be one of {}", GENDERS.join(", ")),
        ))
    }
}

/// Stored as sent (trimmed): known keys and free text alike.
pub fn source(value: &str) -> Result<String, ApiError> {
    text::required("source", value, MAX_SOURCE_LEN)
}

/// Tags: trimmed, 1 to 64 characters, no `|` (the CSV separator), no duplicates, at most 100.
pub fn tags(field: &str, values: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let Some(tag) = text::trimmed(value, MAX_TAG_LEN).filter(|t| !t.contains('|')) else {
            return Err(ApiError::validation(
                field,
                format!("each tag must be 1 to {MAX_TAG_LEN} characters without '|'"),
            ));
        };
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ApiError::validation(
            field,
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    Ok(out)
}

pub fn attributes(value: Option<Value>) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(Value::Object(map)) => {
            let value = Value::Object(map);
            if value.to_string().len() > MAX_ATTRIBUTES_BYTES {
                return Err(ApiError::validation(
                    "attributes",
                    format!("must be at most {MAX_ATTRIBUTES_BYTES} bytes as JSON"),
                ));
            }
            Ok(value)
        }
        Some(_) => Err(ApiError::validation("attributes", "must be a JSON object")),
    }
}

/// Member lifecycle status.
pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_ERASED: &str = "erased";

/// A member as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    #[schema(value_type = String)]
    pub id: MemberId,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub birthday: Option<String>,
    pub gender: Option<String>,
    pub source: Option<String>,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub consent: Consent,
    /// `active` or `erased`.
    pub status: String,
    /// Membership tier name (by growth value), if the program has tiers.
    pub tier: Option<String>,
    /// Growth value (成长值).
    pub growth: i64,
    /// `new`, `active`, `at_risk`, `lapsed` or `won_back`, from the last analytics run.
    pub lifecycle_stage: Option<String>,
    /// The member who invited this one (set once, by a referral attribution).
    #[schema(value_type = Option<String>)]
    pub invited_by: Option<MemberId>,
    pub created_at: String,
    pub updated_at: String,
    pub erased_at: Option<String>,
}

pub use crate::common::hooks::SignupAttribution;

/// The RFM segment names a member can be filtered by (`?rfm_segment=`), in the order analytics
/// lists them; analytics computes them (`analytics::model::rfm`) and checks it names these.
pub const RFM_SEGMENTS: [&str; 8] = [
    "champions",
    "loyal",
    "potential",
    "new",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
];

/// A member just created, and what its invite code did (null without one).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedMember {
    #[serde(flatten)]
    pub member: Member,
    pub referral: Option<SignupAttribution>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_must_be_e164() {
        assert_eq!(phone("+8613800000000").unwrap(), "+8613800000000");
        assert!(phone("+14155550123").is_ok());
        assert!(phone("13800000000").is_err(), "no plus sign");
        assert!(phone("+86138000000").is_err(), "Chinese mobile too short");
        assert!(
            phone("+0123456789").is_err(),
            "country code cannot start with 0"
        );
        assert!(phone("+86 138 0000 0000").is_err());
        assert!(phone("+1234567890123456").is_err(), "over 15 digits");
    }

    #[test]
    fn birthday_must_be_a_real_date() {
        assert_eq!(birthday("1990-02-28").unwrap(), "1990-02-28");
        assert!(birthday("1990-02-30").is_err());
        assert!(birthday("2000-02-29").is_ok());
        assert!(birthday("1899-12-31").is_err());
        assert!(birthday("90-1-1").is_err());
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let input = vec![" vip ".to_owned(), "vip".to_owned(), "新客".to_owned()];
        assert_eq!(tags("tags", &input).unwrap(), vec!["vip", "新客"]);
        assert!(tags("tags", &["a|b".to_owned()]).is_err());
        assert!(tags("tags", &[String::new()]).is_err());
        let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        assert!(tags("tags", &many).is_err());
    }

    #[test]
    fn attributes_must_be_a_small_object() {
        assert!(attributes(Some(serde_json::json!([1]))).is_err());
        let big = "x".repeat(MAX_ATTRIBUTES_BYTES);
        assert!(attributes(Some(serde_json::json!({ "a": big }))).is_err());
        assert_eq!(attributes(None).unwrap(), serde_json::json!({}));
    }

    #[test]
    fn source_is_stored_as_sent() {
        assert_eq!(source("xiaohongshu").unwrap(), "xiaohongshu");
        assert_eq!(source("展会 2026").unwrap(), "展会 2026");
        assert!(source("").is_err());
    }
}
