//! Ledger types: assets, account addresses, transfer requests (validated at the edge) and the
//! per-transfer results.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::common::error::ApiError;
use crate::common::ids::MemberId;

/// What an account holds. Amounts are integers: points, or fen for the money assets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Asset {
    Points,
    WalletPrincipal,
    WalletBonus,
    Commission,
}

impl Asset {
    pub const ALL: [Asset; 4] = [
        Asset::Points,
        Asset::WalletPrincipal,
        Asset::WalletBonus,
        Asset::Commission,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Asset::Points => "points",
            Asset::WalletPrincipal => "wallet_principal",
            Asset::WalletBonus => "wallet_bonus",
            Asset::Commission => "commission",
        }
    }

    pub fn parse(text: &str) -> Option<Asset> {
        Asset::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// An account owner: `member:<member id>` or `system:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(String);

/// Longest system account name.
pub const MAX_SYSTEM_NAME_LEN: usize = 64;

impl Address {
    pub fn parse(text: &str) -> Option<Address> {
        if let Some(member) = text.strip_prefix("member:") {
            return MemberId::parse(member).map(|_| Address(text.to_owned()));
        }
        let name = text.strip_prefix("system:")?;
        let valid = !name.is_empty()
            && name.len() <= MAX_SYSTEM_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        valid.then(|| Address(text.to_owned()))
    }

    pub fn member(id: &MemberId) -> Address {
        Address(format!("member:{id}"))
    }

    pub fn system(name: &str) -> Address {
        Address(format!("system:{name}"))
    }

    pub fn from_db(text: String) -> Address {
        Address(text)
    }

    /// The member id when this is a member account.
    pub fn member_id(&self) -> Option<&str> {
        self.0.strip_prefix("member:")
    }

    pub fn is_member(&self) -> bool {
        self.0.starts_with("member:")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Address {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Address::parse(&value).ok_or_else(|| {
            format!("{value:?} is not an account address (member:<member id> or system:<name>)")
        })
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.0
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Most transfers in one request.
pub const MAX_TRANSFERS_PER_REQUEST: usize = 1000;
/// Largest single amount. Account totals still move by checked arithmetic (`overflow`).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
/// Longest transfer id, code and reference.
pub const MAX_ID_LEN: usize = 128;
pub const MAX_CODE_LEN: usize = 64;
pub const MAX_REFERENCE_LEN: usize = 256;
/// Largest metadata object, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest pending timeout (one year).
pub const MAX_TIMEOUT_SECS: i64 = 366 * 24 * 3600;

/// One transfer as the client sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The client's idempotency key, unique per tenant.
    pub id: String,
    /// Debited account, e.g. `member:mem_…` or `system:issuance`.
    pub from: String,
    /// Credited account.
    pub to: String,
    pub asset: Asset,
    /// Positive integer (points or fen).
    pub amount: i64,
    /// Short reason: `manual_grant`, `redeem`, `referral_reward`, …
    pub code: String,
    pub reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Reserve now, post or void later.
    #[serde(default)]
    pub pending: bool,
    /// Void automatically after this many seconds if still pending.
    pub timeout_secs: Option<i64>,
    /// Succeeds or fails together with the next transfer of the request.
    #[serde(default)]
    pub linked: bool,
}

/// A validated transfer to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransfer {
    pub id: String,
    pub from: Address,
    pub to: Address,
    pub asset: Asset,
    pub amount: i64,
    pub code: String,
    pub reference: Option<String>,
    pub metadata: Value,
    pub pending: bool,
    pub timeout_secs: Option<i64>,
    pub linked: bool,
}

fn field_error(index: usize, field: &str, message: &str) -> ApiError {
    ApiError::validation(&format!("transfers[{index}].{field}"), message)
}

/// Check a transfer id (also used for post/void paths).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

impl NewTransfer {
    /// Validate the request's transfer at `index`.
    pub fn parse(index: usize, request: TransferRequest) -> Result<NewTransfer, ApiError> {
        if !valid_id(&request.id) {
            return Err(field_error(
                index,
                "id",
                &format!("must be 1 to {MAX_ID_LEN} visible ASCII characters"),
            ));
        }
        let from = Address::parse(&request.from).ok_or_else(|| {
            field_error(index, "from", "must be member:<member id> or system:<name>")
        })?;
        let to = Address::parse(&request.to).ok_or_else(|| {
            field_error(index, "to", "must be member:<member id> or system:<name>")
        })?;
        if !(1..=MAX_AMOUNT).contains(&request.amount) {
            return Err(field_error(index, "amount", "must be a positive integer"));
        }
        let code_ok = !request.code.is_empty()
            && request.code.len() <= MAX_CODE_LEN
            && request
                .code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !code_ok {
            return Err(field_error(
                index,
                "code",
                "must be 1 to 64 characters of letters, digits, _ . -",
            ));
        }
        if let Some(reference) = &request.reference {
            if reference.is_empty() || reference.len() > MAX_REFERENCE_LEN {
                return Err(field_error(index, "reference", "must be 1 to 256 bytes"));
            }
        }
        let metadata = match request.metadata {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(Value::Object(map)) => Value::Object(map),
            Some(_) => return Err(field_error(index, "metadata", "must be a JSON object")),
        };
        if metadata.to_string().len() > MAX_METADATA_BYTES {
            return Err(field_error(
                index,
                "metadata",
                "must be at most 4096 bytes as JSON",
            ));
        }
        if let Some(timeout) = request.timeout_secs {
            if !request.pending {
                return Err(field_error(
                    index,
                    "timeout_secs",
                    "only pending transfers time out",
                ));
            }
            if !(1..=MAX_TIMEOUT_SECS).contains(&timeout) {
                return Err(field_error(
                    index,
                    "timeout_secs",
                    "must be 1 second to 366 days",
                ));
            }
        }
        Ok(NewTransfer {
            id: request.id,
            from,
            to,
            asset: request.asset,
            amount: request.amount,
            code: request.code,
            reference: request.reference,
            metadata,
            pending: request.pending,
            timeout_secs: request.timeout_secs,
            linked: request.linked,
        })
    }

    /// A transfer built by domain code (rewards, payments…), not by a client.
    #[allow(clippy::too_many_arguments)]
    pub fn internal(
        id: impl Into<String>,
        from: Address,
        to: Address,
        asset: Asset,
        amount: i64,
        code: &str,
        reference: Option<&str>,
    ) -> NewTransfer {
        NewTransfer {
            id: id.into(),
            from,
            to,
            asset,
            amount,
            code: code.to_owned(),
            reference: reference.map(str::to_owned),
            metadata: Value::Object(Default::default()),
            pending: false,
            timeout_secs: None,
            linked: false,
        }
    }

    pub fn pending(mut self, timeout_secs: Option<i64>) -> Self {
        self.pending = true;
        self.timeout_secs = timeout_secs;
        self
    }

    pub fn linked(mut self) -> Self {
        self.linked = true;
        self
    }
}

/// A stored transfer as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Transfer {
    pub id: String,
    pub from: String,
    pub to: String,
    pub asset: Asset,
    pub amount: i64,
    pub code: String,
    pub reference: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub pending: bool,
    pub linked: bool,
    /// `posted` for plain transfers; for pending ones `pending`, `posted`, `voided` or `expired`.
    pub status: String,
    /// What was posted (less than `amount` after a partial post; 0 when voided or expired).
    pub posted_amount: Option<i64>,
    pub timeout_at: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

impl Transfer {
    /// Same client-supplied fields as a new request? (`exists` vs `exists_with_different_fields`)
    pub fn same_as(&self, new: &NewTransfer) -> bool {
        self.from == new.from.as_str()
            && self.to == new.to.as_str()
            && self.asset == new.asset
            && self.amount == new.amount
            && self.code == new.code
            && self.reference == new.reference
            && self.metadata == new.metadata
            && self.pending == new.pending
            && self.linked == new.linked
    }
}

/// The outcome of one operation in a batch.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct TransferResult {
    pub id: String,
    /// `created`, `exists`, or an error status: `exists_with_different_fields`,
    /// `insufficient_funds`, `account_not_found`, `same_account`, `linked_transfer_failed`,
    /// `linked_chain_open`, `overflow` (an account's total would pass 2^63 − 1); for post/void:
    /// `posted`, `voided`, `expired`, `transfer_not_found`, `not_pending`, `already_resolved`,
    /// `amount_exceeds_pending`, `overflow`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

impl TransferResult {
    pub fn is_success(&self) -> bool {
        matches!(
            self.status.as_str(),
            "created" | "exists" | "posted" | "voided" | "expired"
        )
    }
}

/// Balances of one account.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct Balance {
    /// Posted credits − posted debits.
    pub balance: i64,
    pub pending_debits: i64,
    pub pending_credits: i64,
    /// Balance − pending debits.
    pub available: i64,
}

impl Balance {
    pub fn from_totals(
        debits_posted: i64,
        credits_posted: i64,
        debits_pending: i64,
        credits_pending: i64,
    ) -> Self {
        let balance = credits_posted - debits_posted;
        Balance {
            balance,
            pending_debits: debits_pending,
            pending_credits: credits_pending,
            available: balance - debits_pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_member_or_system() {
        assert!(Address::parse("system:issuance").is_some());
        assert!(Address::parse("member:mem_0123456789abcdef0123456789abcdef").is_some());
        assert!(Address::parse("member:bob").is_none());
        assert!(Address::parse("system:").is_none());
        assert!(Address::parse("system:Bad Name").is_none());
        assert!(Address::parse("bank:x").is_none());
    }

    #[test]
    fn asset_names_round_trip() {
        for asset in Asset::ALL {
            assert_eq!(Asset::parse(asset.as_str()), Some(asset));
        }
    }
}
