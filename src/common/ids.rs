//! Typed, prefixed, unguessable ids.
//!
//! An id is a short type prefix and a UUIDv7 in hex (`mem_0193…`): the time-ordered head keeps
//! index inserts local and gives a stable order for cursor pagination, and the 74 random bits
//! make ids unguessable across tenants. One macro makes a newtype per entity so that
//! `award(member, order)` cannot take its arguments swapped.

/// Declare a typed id with its prefix.
#[macro_export]
macro_rules! typed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new random id.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Accept an id from a client or a row if it has this type's shape.
            pub fn parse(text: &str) -> Option<Self> {
                $crate::common::ids::has_shape(text, $prefix).then(|| Self(text.to_owned()))
            }

            /// Wrap a value read from the database, where the shape was checked on the way in.
            pub fn from_db(text: String) -> Self {
                Self(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// `prefix_` followed by 32 lowercase hex digits.
pub fn has_shape(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

typed_id!(TenantId, "ten");
typed_id!(ApiKeyId, "key");
typed_id!(MemberId, "mem");
typed_id!(OrderId, "ord");
typed_id!(ProductId, "prd");
typed_id!(FlashSaleId, "fls");
typed_id!(GroupBuyId, "gby");
typed_id!(TeamId, "team");
typed_id!(OrderRefundId, "orf");
typed_id!(OperatorId, "op");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_order_by_time() {
        let a = MemberId::generate();
        let b = MemberId::generate();
        assert!(MemberId::parse(a.as_str()).is_some());
        assert!(a < b, "UUIDv7 ids sort in creation order");
        assert!(TenantId::parse(a.as_str()).is_none(), "prefix is checked");
        assert!(MemberId::parse("mem_xyz").is_none());
        assert!(MemberId::parse("mem_0123456789ABCDEF0123456789abcdef").is_none());
    }
}
