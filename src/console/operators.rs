//! Operators: the people who sign in to the console. Each belongs to one tenant and has a role
//! (`owner`: everything; `operator`: every change but tenant administration; `viewer`: sees
//! everything, changes nothing). Passwords are hashed with Argon2id (the `argon2` crate's
//! defaults: 19 MiB, 2 passes), off the async workers.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jiff::Timestamp;
use rand::RngCore as _;
use serde::Serialize;
use sqlx::{AnyConnection, Row as _};

use super::i18n::{Lang, Msg};
use crate::common::auth::KeyRole;
use crate::common::ids::{OperatorId, TenantId};
use crate::common::state::state_enum;
use crate::common::time::{micros_to_rfc3339, to_micros};

state_enum! {
    /// What an operator may do.
    pub enum Role {
        Owner = "owner",
        Operator = "operator",
        Viewer = "viewer",
    }
}

impl Role {
    /// The API role the console calls `/v1` with on this operator's behalf (a viewer's calls
    /// are reads only: the console refuses their changes before any call).
    pub fn api_role(self) -> KeyRole {
        match self {
            Role::Owner => KeyRole::Owner,
            Role::Operator | Role::Viewer => KeyRole::Integration,
        }
    }

    pub fn may_change(self) -> bool {
        self != Role::Viewer
    }

    pub fn label(self) -> Msg {
        match self {
            Role::Owner => Msg::RoleOwner,
            Role::Operator => Msg::RoleOperator,
            Role::Viewer => Msg::RoleViewer,
        }
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted (hashing is bounded work).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Longest email accepted.
pub const MAX_EMAIL_CHARS: usize = 254;

/// An operator as the console shows it (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub id: OperatorId,
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub language: Lang,
    pub created_at: String,
}

/// Why an operator could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    #[error(
        "the password is too weak: use {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters \
         mixing at least two of letters, digits and other characters"
    )]
    WeakPassword,
    #[error("an operator with the email {0} already exists")]
    DuplicateEmail(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// The email as stored: trimmed and lower-case; `None` unless it looks like `local@domain`.
pub fn normalise_email(text: &str) -> Option<String> {
    let email = text.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let well_formed = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@');
    well_formed.then_some(email)
}

/// A password is strong enough when it is long enough and mixes two kinds of characters.
pub fn strong_enough(password: &str) -> bool {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return false;
    }
    let letters = password.chars().any(char::is_alphabetic);
    let digits = password.chars().any(|c| c.is_ascii_digit());
    let others = password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_control());
    let kinds = [letters, digits, others].iter().filter(|k| **k).count();
    kinds >= 2 && !password.chars().any(char::is_control)
}

/// Hash a password (slow on purpose: run it off the async workers).
pub fn hash(password: &str) -> Result<String, CreateError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| CreateError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| CreateError::Hash(e.to_string()))
}

/// Whether `password` matches `stored` (a PHC string); false for an unreadable hash.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of no one's password, verified when an email is unknown so that an unknown email
/// takes as long to refuse as a wrong password (no account discovery by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy-password-0").unwrap_or_default())
}

/// Create an operator; the email is unique across tenants.
pub async fn create(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    email: &str,
    role: Role,
    password: &str,
    now: Timestamp,
) -> Result<Operator, CreateError> {
    let email = normalise_email(email).ok_or_else(|| CreateError::BadEmail(email.to_owned()))?;
    if !strong_enough(password) {
        return Err(CreateError::WeakPassword);
    }
    let password = password.to_owned();
    let hashed = tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| CreateError::Hash(e.to_string()))??;
    let id = OperatorId::generate();
    let inserted = sqlx::query(
        "INSERT INTO operator (id, tenant_id, email, role, password_hash, language, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(tenant_id.as_str())
    .bind(&email)
    .bind(role.as_str())
    .bind(hashed)
    .bind(Lang::default().code())
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(CreateError::DuplicateEmail(email));
    }
    Ok(Operator {
        id,
        tenant_id: tenant_id.clone(),
        email,
        role,
        language: Lang::default(),
        created_at: micros_to_rfc3339(to_micros(now)),
    })
}

/// Give an operator a new password and end their sessions (whoever held the old password is
/// signed out).
pub async fn set_password(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &OperatorId,
    password: &str,
) -> Result<(), CreateError> {
    if !strong_enough(password) {
        return Err(CreateError::WeakPassword);
    }
    let password = password.to_owned();
    let hashed = tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| CreateError::Hash(e.to_string()))??;
    sqlx::query("UPDATE operator SET password_hash = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(hashed)
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM console_session WHERE tenant_id = $1 AND operator_id = $2")
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The columns [`from_row`] reads.
pub const COLUMNS: &str = "id, tenant_id, email, role, language, created_at";

/// One operator from a row of [`COLUMNS`].
pub fn from_row(row: &sqlx::any::AnyRow) -> Result<Operator, sqlx::Error> {
    Ok(Operator {
        id: OperatorId::from_db(row.try_get("id")?),
        tenant_id: TenantId::from_db(row.try_get("tenant_id")?),
        email: row.try_get("email")?,
        // An unknown role (written by a newer version) grants the least.
        role: Role::parse(&row.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
        language: Lang::parse(&row.try_get::<String, _>("language")?).unwrap_or_default(),
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// The operator with this email and their password hash.
pub async fn by_email(
    conn: &mut AnyConnection,
    email: &str,
) -> Result<Option<(Operator, String)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, password_hash FROM operator WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(conn)
    .await?;
    row.map(|row| Ok((from_row(&row)?, row.try_get("password_hash")?)))
        .transpose()
}

/// A tenant's operators, oldest first.
pub async fn list(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> Result<Vec<Operator>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM operator WHERE tenant_id = $1 ORDER BY created_at, id"
    ))
    .bind(tenant_id.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Remember the operator's language.
pub async fn set_language(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &OperatorId,
    lang: Lang,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE operator SET language = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(lang.code())
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email("  Ops@Example.COM "),
            Some("ops@example.com".into())
        );
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "ops@example",
            "o ps@example.com",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn passwords_need_length_and_two_kinds_of_characters() {
        assert!(strong_enough("correct horse 42"));
        assert!(strong_enough("soymilk-fresh"));
        assert!(!strong_enough("short1"));
        assert!(!strong_enough("onlyletterslong"));
        assert!(!strong_enough("12345678901"));
        assert!(!strong_enough(&"a1".repeat(200)));
        assert!(!strong_enough("tab\there123"));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse 42").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse 42", &stored));
        assert!(!verify("correct horse 43", &stored));
        assert!(!verify("correct horse 42", "not a hash"));
    }
}
