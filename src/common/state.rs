//! State enums stored and shown as fixed strings.
//!
//! A state (a referral's `pending`, a coupon's `redeemed`…) is a Rust enum, so that a `match`
//! names every state and a typo does not compile; the database keeps storing and comparing the
//! same strings, and the API shows them as before. [`state_enum!`] declares such an enum from
//! one list of variants and their strings; [`state_column`] reads one from a row.

/// Declare a state enum stored and shown as fixed strings: the enum (serialised as its strings,
/// each variant renamed explicitly so that serde, the OpenAPI schema and [`as_str`] share one
/// string), `ALL`, `NAMES`, `as_str`, `parse`, `Display` and `FromStr` (for rows). The strings
/// are what the SQL stores and compares, so a state keeps its string for good.
///
/// [`as_str`]: #method.as_str
macro_rules! state_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            // `tt`, not `literal`: a `literal` fragment reaches derive macros wrapped in an
            // invisible group, and utoipa then ignores the `rename` (its schema would list the
            // variant names); serde reads it either way.
            $($(#[$variant_meta:meta])* $variant:ident = $text:tt,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema,
        )]
        $vis enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant,)+
        }

        #[allow(dead_code)]
        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Every state's string, in declaration order (for "must be one of" messages).
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The string stored in the database and shown by the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The state named by `text` (exactly, as stored), or `None`.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::common::state::UnknownState;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $name::parse(text).ok_or_else(|| $crate::common::state::UnknownState {
                    kind: stringify!($name),
                    text: text.to_owned(),
                })
            }
        }
    };
}
pub(crate) use state_enum;

/// A state string that names no state of its kind (a row written by something else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {kind}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub text: String,
}

/// Read a state column of a row; a string that names no state is a decode error (500), never
/// a state guessed.
pub fn state_column<T>(row: &sqlx::any::AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = UnknownState>,
{
    use sqlx::Row as _;
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|error: UnknownState| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(error),
        })
}

#[cfg(test)]
mod tests {
    state_enum! {
        /// A state kind for the tests.
        enum Light {
            Green = "green",
            /// Documented variants keep their docs.
            AmberFlashing = "amber_flashing",
            Red = "red",
        }
    }

    #[test]
    fn serde_as_str_and_parse_agree_for_every_state() {
        for state in Light::ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, serde_json::Value::from(state.as_str()));
            assert_eq!(serde_json::from_value::<Light>(json).unwrap(), *state);
            assert_eq!(Light::parse(state.as_str()), Some(*state));
            assert_eq!(state.as_str().parse::<Light>(), Ok(*state));
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(Light::NAMES, ["green", "amber_flashing", "red"]);
        assert_eq!(Light::AmberFlashing.as_str(), "amber_flashing");
    }

    #[test]
    fn the_openapi_schema_lists_the_stored_strings() {
        let schema = serde_json::to_value(<Light as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::json!(["green", "amber_flashing", "red"])
        );
    }

    #[test]
    fn unknown_strings_are_refused_not_guessed() {
        assert_eq!(Light::parse("Green"), None);
        assert_eq!(Light::parse(" green"), None);
        let error = "blue".parse::<Light>().unwrap_err();
        assert_eq!(error.to_string(), "\"blue\" is not a Light");
        assert!(serde_json::from_str::<Light>("\"blue\"").is_err());
    }
}
