//! Sign-in sessions, the guard on every console page, and the guard on every change.
//!
//! A session is a row (`console_session`) keyed by the SHA-256 of a random 256-bit token that
//! only the operator's cookie holds: sessions work across API nodes, signing out deletes the
//! row, and a session unused for [`IDLE`] (or older than [`LIFETIME`]) is gone. The cookie is
//! `HttpOnly`, `SameSite=Lax`, limited to `/console`, and `Secure` when the request came over
//! TLS (directly or through a proxy that says `X-Forwarded-Proto: https`).
//!
//! Every change is a form POST carrying the session's CSRF token (synchroniser-token pattern);
//! the sign-in form, which has no session yet, carries a token that must equal a cookie it was
//! served with (double submit). Five failed sign-ins for one email within [`FAILURE_WINDOW`]
//! refuse that email with 429 until the oldest of them is out of the window.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore as _;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row as _};

use super::i18n::{Lang, Message, Msg};
use super::operators::{self, Operator, Role};
use super::view;
use super::Console;
use crate::common::auth::{Auth, Caller};
use crate::common::time::to_micros;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "shequn_session";
/// The sign-in form's double-submit cookie.
pub const SIGN_IN_COOKIE: &str = "shequn_sign_in";
/// A session unused this long has ended.
pub const IDLE: SignedDuration = SignedDuration::from_hours(2);
/// A session ends this long after sign-in, used or not.
pub const LIFETIME: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How often a used session's `last_seen_at` is written (not on every request).
const TOUCH_EVERY: SignedDuration = SignedDuration::from_secs(60);
/// Failed sign-ins for one email within [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: SignedDuration = SignedDuration::from_mins(15);
/// Largest form body the console reads.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// 32 random bytes in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compare two secrets without an early exit on the first differing byte.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request reached us over TLS.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for a console cookie (`max_age` 0 removes it).
pub fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Lax");
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    if over_tls(headers) {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A signed-in operator, with what every page needs.
#[derive(Debug, Clone)]
pub struct Signed {
    pub operator: Operator,
    /// This session's CSRF token, rendered into every form.
    pub csrf: String,
    pub lang: Lang,
    /// The tenant's time zone (dates and times are shown in it).
    pub zone: TimeZone,
}

impl Signed {
    /// The credential the console calls `/v1` with on this operator's behalf.
    pub fn auth(&self) -> Auth {
        Auth {
            tenant_id: self.operator.tenant_id.clone(),
            caller: Caller::Operator(self.operator.id.clone()),
            role: self.operator.role.api_role(),
        }
    }

    /// A message in the operator's language.
    pub fn t(&self, msg: impl Message) -> &'static str {
        msg.text(self.lang)
    }
}

/// Why a console request was not let through.
#[derive(Debug)]
pub enum Refusal {
    /// No (live) session: to the sign-in page.
    SignIn,
    /// A page answering with this status and message.
    Page(StatusCode, Lang, String),
    /// The database failed.
    Failed(anyhow::Error),
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Self {
        Refusal::Failed(error.into())
    }
}

impl From<crate::common::error::ApiError> for Refusal {
    fn from(error: crate::common::error::ApiError) -> Self {
        Refusal::Failed(anyhow::anyhow!("{}: {}", error.code, error.message))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => {
                let mut response =
                    (StatusCode::SEE_OTHER, [("location", "/console/login")]).into_response();
                // htmx follows this instead of swapping the sign-in page into a fragment.
                response
                    .headers_mut()
                    .insert("hx-redirect", HeaderValue::from_static("/console/login"));
                response
            }
            Refusal::Page(status, lang, message) => view::error_page(status, lang, &message),
            Refusal::Failed(error) => {
                tracing::error!(error = %error, "console request failed");
                view::error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Lang::default(),
                    Msg::ErrorTitle.text(Lang::default()),
                )
            }
        }
    }
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Refusal> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(Refusal::SignIn)?;
        let now = console.app.clock.now();
        let mut conn = console.app.db.read().acquire().await?;
        let found = load(&mut conn, &digest(&token), now).await?;
        drop(conn);
        let Some((operator, csrf, last_seen)) = found else {
            return Err(Refusal::SignIn);
        };
        if now.duration_since(last_seen) >= TOUCH_EVERY {
            touch(console, &digest(&token), now).await?;
        }
        let zone = crate::tenants::time_zone_in(&console.app.db, &operator.tenant_id).await?;
        Ok(Signed {
            lang: operator.language,
            operator,
            csrf,
            zone,
        })
    }
}

/// The live session with this digest: its operator, CSRF token and last use.
async fn load(
    conn: &mut AnyConnection,
    token_digest: &str,
    now: Timestamp,
) -> Result<Option<(Operator, String, Timestamp)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT o.id, o.tenant_id, o.email, o.role, o.language, o.created_at, \
                s.csrf_token, s.last_seen_at \
         FROM console_session s JOIN operator o ON o.id = s.operator_id AND o.tenant_id = s.tenant_id \
         WHERE s.token_digest = $1 AND s.last_seen_at > $2 AND s.created_at > $3",
    )
    .bind(token_digest)
    .bind(to_micros(now - IDLE))
    .bind(to_micros(now - LIFETIME))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let last_seen: i64 = row.try_get("last_seen_at")?;
        Ok((
            operators::from_row(&row)?,
            row.try_get("csrf_token")?,
            Timestamp::from_microsecond(last_seen).unwrap_or(now),
        ))
    })
    .transpose()
}

async fn touch(console: &Console, token_digest: &str, now: Timestamp) -> Result<(), sqlx::Error> {
    let mut tx = console.app.db.begin(now).await?;
    sqlx::query("UPDATE console_session SET last_seen_at = $1 WHERE token_digest = $2")
        .bind(to_micros(now))
        .bind(token_digest)
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// Start a session for `operator`; returns the cookie's token.
pub async fn start(
    console: &Console,
    operator: &Operator,
    now: Timestamp,
) -> Result<String, sqlx::Error> {
    let token = random_token();
    let mut tx = console.app.db.begin(now).await?;
    sqlx::query(
        "INSERT INTO console_session (token_digest, tenant_id, operator_id, csrf_token, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(digest(&token))
    .bind(operator.tenant_id.as_str())
    .bind(operator.id.as_str())
    .bind(random_token())
    .bind(to_micros(now))
    .execute(tx.conn())
    .await?;
    // A failed sign-in streak ends with a good one.
    sqlx::query("DELETE FROM console_sign_in_failure WHERE email = $1")
        .bind(&operator.email)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// End the session whose cookie the request carries (if any).
pub async fn end(console: &Console, headers: &HeaderMap) -> Result<(), sqlx::Error> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(());
    };
    let mut tx = console.app.db.begin(console.app.clock.now()).await?;
    sqlx::query("DELETE FROM console_session WHERE token_digest = $1")
        .bind(digest(&token))
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// When `email` may try again, if it has failed [`MAX_FAILURES`] times within the window.
pub async fn locked_until(
    conn: &mut AnyConnection,
    email: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>, sqlx::Error> {
    let recent: Vec<i64> = sqlx::query_scalar(
        "SELECT at FROM console_sign_in_failure WHERE email = $1 AND at > $2 ORDER BY at DESC",
    )
    .bind(email)
    .bind(to_micros(now - FAILURE_WINDOW))
    .fetch_all(conn)
    .await?;
    Ok(recent
        .get(MAX_FAILURES - 1)
        .and_then(|&at| Timestamp::from_microsecond(at).ok())
        .map(|at| at + FAILURE_WINDOW))
}

/// Count a failed sign-in for `email` (and forget its failures older than the window).
pub async fn record_failure(
    console: &Console,
    email: &str,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let mut tx = console.app.db.begin(now).await?;
    sqlx::query("DELETE FROM console_sign_in_failure WHERE email = $1 AND at <= $2")
        .bind(email)
        .bind(to_micros(now - FAILURE_WINDOW))
        .execute(tx.conn())
        .await?;
    sqlx::query("INSERT INTO console_sign_in_failure (email, at) VALUES ($1, $2)")
        .bind(email)
        .bind(to_micros(now))
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// Delete ended sessions and failures out of the window (the maintenance loop calls this).
pub async fn sweep(console_db: &crate::common::db::Db, now: Timestamp) -> Result<(), sqlx::Error> {
    let mut tx = console_db.begin(now).await?;
    sqlx::query("DELETE FROM console_session WHERE last_seen_at <= $1 OR created_at <= $2")
        .bind(to_micros(now - IDLE))
        .bind(to_micros(now - LIFETIME))
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM console_sign_in_failure WHERE at <= $1")
        .bind(to_micros(now - FAILURE_WINDOW))
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// A form posted by a signed-in operator whose CSRF token is this session's; `form` holds the
/// other fields. Signing out and switching the language need no more than this.
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
    /// The form's one-time key, sent to `/v1` as `Idempotency-Key` so that a form submitted
    /// twice (a double click, a reload) changes things once.
    pub form_key: Option<String>,
}

impl<T: DeserializeOwned + Send> FromRequest<Console> for Posted<T> {
    type Rejection = Refusal;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Refusal> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let lang = signed.lang;
        let refuse = |status, msg: Msg| Refusal::Page(status, lang, msg.text(lang).to_owned());
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, Msg::ErrorTitle))?;
        let fields = form_fields(&bytes);
        let token = fields.get("csrf_token").map(String::as_str).unwrap_or("");
        if !same_secret(token, &signed.csrf) {
            return Err(refuse(StatusCode::FORBIDDEN, Msg::CsrfRefused));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|error| {
            Refusal::Page(StatusCode::UNPROCESSABLE_ENTITY, lang, error.to_string())
        })?;
        Ok(Posted {
            form_key: fields.get("form_key").filter(|k| !k.is_empty()).cloned(),
            signed,
            form,
        })
    }
}

/// A change submitted through a console form: [`Posted`] by an operator who may change
/// things (not a viewer).
pub struct Change<T>(pub Posted<T>);

impl<T: DeserializeOwned + Send> FromRequest<Console> for Change<T> {
    type Rejection = Refusal;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Refusal> {
        let posted = Posted::<T>::from_request(request, console).await?;
        if !posted.signed.operator.role.may_change() {
            let lang = posted.signed.lang;
            return Err(Refusal::Page(
                StatusCode::FORBIDDEN,
                lang,
                Msg::ViewerRefused.text(lang).to_owned(),
            ));
        }
        Ok(Change(posted))
    }
}

/// Every field of a URL-encoded form (the last value of a repeated name).
pub fn form_fields(bytes: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// Refuse unless the operator is an owner.
pub fn require_owner(signed: &Signed) -> Result<(), Refusal> {
    if signed.operator.role == Role::Owner {
        Ok(())
    } else {
        Err(Refusal::Page(
            StatusCode::FORBIDDEN,
            signed.lang,
            signed.t(Msg::OwnerOnly).to_owned(),
        ))
    }
}

/// Add a `Set-Cookie` header to a response.
pub fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; shequn_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn cookies_are_secure_only_over_tls() {
        let mut headers = HeaderMap::new();
        let plain = set_cookie(&headers, SESSION_COOKIE, "t", None);
        assert!(!plain.to_str().unwrap().contains("Secure"));
        assert!(plain.to_str().unwrap().contains("HttpOnly; SameSite=Lax"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let tls = set_cookie(&headers, SESSION_COOKIE, "t", Some(0));
        assert!(tls.to_str().unwrap().ends_with("Max-Age=0; Secure"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
