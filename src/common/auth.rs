//! API-key authentication (`Authorization: Bearer <key>`).
//!
//! A key is `sq_` followed by 32 random bytes in hex. It is shown once and stored only as its
//! SHA-256 digest: a key carries 256 bits of entropy, so a fast hash is enough to make a leaked
//! table useless (argon2-style stretching exists for low-entropy passwords and would cost tens
//! of milliseconds per request). The tenant always comes from the key, never from the request.
//!
//! `api_key` is the one table looked up without a tenant (the tenant is what the key tells
//! us); in a tenant-sharded PostgreSQL it is a reference table.
//!
//! Verified keys are cached in memory for [`KEY_CACHE_TTL`]: a revoked key stops working on
//! every running node within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row as _};

use super::error::codes;
use super::error::ApiError;
use super::ids::{ApiKeyId, OperatorId, TenantId};
use super::time::to_micros;
use crate::AppState;

/// Who is calling: set by [`authenticate`] (or by the console for a signed-in operator),
/// read by handlers.
#[derive(Debug, Clone)]
pub struct Auth {
    pub tenant_id: TenantId,
    pub caller: Caller,
    pub role: KeyRole,
}

/// Whose credential a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An API key of the merchant's systems.
    Key(ApiKeyId),
    /// An operator signed in to the admin console (which calls `/v1` on their behalf).
    Operator(OperatorId),
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Everything, including tenant administration (running the day on demand).
    Owner,
    /// The merchant's systems: every `/v1` operation but tenant administration.
    Integration,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Owner => "owner",
            KeyRole::Integration => "integration",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(KeyRole::Owner),
            "integration" => Some(KeyRole::Integration),
            _ => None,
        }
    }
}

impl Auth {
    /// 403 `owner_key_required` unless the caller holds an owner key.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        match self.role {
            KeyRole::Owner => Ok(()),
            KeyRole::Integration => Err(ApiError::coded(
                codes::OWNER_KEY_REQUIRED,
                "this operation needs an owner key (shequn keys create --role owner)",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Auth>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("missing API key"))
    }
}

/// How long a verified key is trusted without asking the database again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Cached keys kept at most; the cache is cleared when it grows past this.
const KEY_CACHE_MAX: usize = 10_000;

/// A small TTL cache of verified keys, by the SHA-256 of the key (the bytes: the hex text the
/// table stores is made only on a miss).
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<Digest32, (Auth, Instant), DigestHasher>>,
}

type Digest32 = [u8; 32];

/// Hashes a SHA-256 digest by its first eight bytes: they are already uniform, and nobody can
/// choose them (they would need a key with a chosen digest), so SipHash's protection against
/// chosen keys buys nothing here and cost about a tenth of the key check.
#[derive(Debug, Default, Clone, Copy)]
struct DigestHasher;

impl std::hash::BuildHasher for DigestHasher {
    type Hasher = FirstBytes;
    fn build_hasher(&self) -> FirstBytes {
        FirstBytes(0)
    }
}

/// The [`DigestHasher`]'s hasher: the first eight bytes of each write folded together (a
/// [`Digest32`] writes its length, then its bytes).
#[derive(Debug)]
struct FirstBytes(u64);

impl std::hash::Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }
}

impl KeyCache {
    fn get(&self, digest: &Digest32) -> Option<Auth> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(digest)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(auth, _)| auth.clone())
    }

    fn put(&self, digest: Digest32, auth: Auth) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= KEY_CACHE_MAX {
            entries.clear();
        }
        entries.insert(digest, (auth, Instant::now()));
    }
}

/// A new secret key (shown once) and its digest (stored).
pub fn generate_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("sq_{}", hex::encode(bytes));
    let digest = digest(&key);
    (key, digest)
}

/// SHA-256 hex of a key.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Store a new key for a tenant and return (id, secret).
pub async fn create_key(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    role: KeyRole,
    now: Timestamp,
) -> Result<(ApiKeyId, String), sqlx::Error> {
    let id = ApiKeyId::generate();
    let (key, digest) = generate_key();
    sqlx::query(
        "INSERT INTO api_key (id, tenant_id, key_digest, key_prefix, created_at, role) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_str())
    .bind(tenant_id.as_str())
    .bind(digest)
    .bind(&key[..10])
    .bind(to_micros(now))
    .bind(role.as_str())
    .execute(conn)
    .await?;
    Ok((id, key))
}

async fn lookup(state: &AppState, key: &str) -> Result<Option<Auth>, ApiError> {
    let digest: Digest32 = Sha256::digest(key.as_bytes()).into();
    if let Some(auth) = state.key_cache.get(&digest) {
        return Ok(Some(auth));
    }
    let row = sqlx::query(
        "SELECT id, tenant_id, role FROM api_key WHERE key_digest = $1 AND revoked_at IS NULL",
    )
    .bind(hex::encode(digest))
    .fetch_optional(state.db.read())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let auth = Auth {
        caller: Caller::Key(ApiKeyId::from_db(row.try_get("id")?)),
        tenant_id: TenantId::from_db(row.try_get("tenant_id")?),
        // An unknown role (written by a newer version) grants the least.
        role: KeyRole::parse(&row.try_get::<String, _>("role")?).unwrap_or(KeyRole::Integration),
    };
    state.key_cache.put(digest, auth.clone());
    Ok(Some(auth))
}

/// 401 unless the request carries a live key; otherwise the request with its [`Auth`]
/// attached (the API's layer, `server::api_request`, then runs idempotency), or the refusal
/// to send.
///
/// A failed authentication counts against the client address's budget of failures
/// ([`super::rate_limit`]); past it the answer is 429 instead of 401. A live key is never
/// refused for its address's failures, only by its own per-key limit.
pub async fn authenticate(state: &AppState, mut request: Request) -> Result<Request, Response> {
    let ip = super::rate_limit::peer_ip(&request);
    let failed = |error: ApiError| {
        if let Some(limited) = state.limits.auth_failed(ip) {
            metrics::counter!("rate_limited_total", "limit" => "auth_failures_per_ip").increment(1);
            return limited.into_response();
        }
        error.into_response()
    };
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(key) = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Err(failed(ApiError::unauthorized(
            "send Authorization: Bearer <api key>",
        )));
    };
    if !has_key_shape(key) {
        return Err(failed(ApiError::unauthorized("unknown or revoked API key")));
    }
    match lookup(state, key).await {
        Ok(Some(auth)) => {
            // A key's own budget (a key is what `lookup` finds).
            if let Caller::Key(key_id) = &auth.caller {
                if let Err(limited) = state.limits.check_key(&auth.tenant_id, key_id) {
                    metrics::counter!("rate_limited_total", "limit" => "per_key").increment(1);
                    return Err(limited.into_response());
                }
            }
            // The request span is at debug level (`crate::server::app`); when off it has no fields.
            if tracing::enabled!(target: super::error::REQUEST_SPAN_TARGET, tracing::Level::DEBUG) {
                tracing::Span::current().record("tenant_id", auth.tenant_id.as_str());
            }
            request.extensions_mut().insert(auth);
            Ok(request)
        }
        Ok(None) => Err(failed(ApiError::unauthorized("unknown or revoked API key"))),
        Err(error) => Err(error.into_response()),
    }
}

/// `sq_` and 64 hex digits: anything else cannot be a key and needs no database look-up.
fn has_key_shape(key: &str) -> bool {
    key.len() == 3 + 64
        && key.starts_with("sq_")
        && key.as_bytes()[3..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_stored_hashed() {
        let (key, stored) = generate_key();
        let (other, _) = generate_key();
        assert_eq!(key.len(), 3 + 64);
        assert_ne!(key, other);
        assert_eq!(stored, digest(&key));
        assert!(!stored.contains(&key[3..]));
        assert!(has_key_shape(&key));
        assert!(!has_key_shape("sq_short"));
        assert!(!has_key_shape(&key.replace("sq_", "xx_")));
    }
}
