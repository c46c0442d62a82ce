//! `Idempotency-Key` for every mutating request (DESIGN rule 3).
//!
//! The middleware claims the key (tenant, key) in the database before the handler runs, with
//! the digest of the method, path, query and body. Outcomes:
//!
//! - first time: the handler runs and its response (status, content type, body) is stored;
//! - same key and same request again: the stored response is replayed, with
//!   `Idempotent-Replayed: true`;
//! - same key, different request: 422 `idempotency_key_reused`;
//! - same key while the first is still running: 409 `idempotency_key_in_progress`.
//!
//! A 5xx response releases the key so that the client may retry; client errors are stored and
//! replayed like successes. Keys are kept for [`RETENTION`] and then purged by the server's
//! maintenance task.
//!
//! A claim names its owner (this process's [`boot_id`] and a token of the request) and holds
//! the key for a lease of [`CLAIM_LEASE`], which the request renews every [`LEASE_RENEWAL`]
//! while its handler runs. When the process dies (kill -9, a crash, a lost node) the renewals
//! stop, and the next request with the key takes the claim over once the lease has run out:
//! retries succeed within seconds instead of answering `idempotency_key_in_progress` for
//! minutes. A request whose claim was taken over (its node stalled past the lease) does not
//! store its response over the new owner's.
//!
//! Erasure reaches the stored responses too: [`redact_member`] replaces every stored response
//! of the tenant that mentions an erased member with a `member_erased` error, so a replay
//! neither returns the erased profile nor runs the request again. Bodies are hashed as they arrive: JSON bodies up to the 2 MiB limit in memory, import
//! bodies (paths ending in `/import`) spooled to a temporary file so that a million-row CSV is
//! never held in memory.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use sha2::{Digest, Sha256};
use sqlx::Row as _;
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};

use super::auth::Auth;
use super::error::codes;
use super::error::ApiError;
use super::import::MAX_IMPORT_BYTES;
use super::json::MAX_JSON_BODY_BYTES;
use super::time::to_micros;
use crate::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a claim holds its key without being renewed. A claim whose lease ran out belongs
/// to a process that died (or stalled) and is taken over by the next request with the key.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// How often a running request renews its claim's lease (well inside [`CLAIM_LEASE`], so that
/// a renewal delayed by a busy database still lands in time).
pub const LEASE_RENEWAL: Duration = Duration::from_secs(3);
/// How long keys are kept (at least 24 hours, as promised to clients).
pub const RETENTION: Duration = Duration::from_secs(25 * 3600);
/// Largest response stored for replay; bigger responses release the key instead.
const MAX_STORED_RESPONSE: usize = 16 * 1024 * 1024;

/// This process's boot id: random, made once per process, the first part of every claim's
/// owner, so that a claim can be traced to the process that made it.
pub fn boot_id() -> &'static str {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

enum Claim {
    /// This request owns the key; the owner token its claim carries.
    Claimed(String),
    Replay {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    Mismatch,
    InProgress,
}

/// Middleware; must run where [`Auth`] is attached (after [`super::auth::authenticate`], or
/// the console's signed-in operator).
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_owned()
        }
        _ => {
            return ApiError::invalid_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
            .into_response()
        }
    };
    let Some(auth) = request.extensions().get::<Auth>().cloned() else {
        return ApiError::unauthorized("missing API key").into_response();
    };
    match run(state, auth, key, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn run(
    state: AppState,
    auth: Auth,
    key: String,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
            .as_bytes(),
    );
    hasher.update(b"\n");
    let body = if parts.uri.path().ends_with("/import") {
        spool(body, &mut hasher).await?
    } else {
        let bytes = buffer(body).await?;
        hasher.update(&bytes);
        Body::from(bytes)
    };
    let request_digest = hex::encode(hasher.finalize());

    match claim(&state, &auth, &key, &request_digest).await? {
        Claim::Mismatch => Err(ApiError::coded(
            codes::IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used with a different request",
        )),
        Claim::InProgress => Err(ApiError::conflict(
            codes::IDEMPOTENCY_KEY_IN_PROGRESS,
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )),
        Claim::Replay {
            status,
            content_type,
            body,
        } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        Claim::Claimed(owner) => {
            let handler = next.run(Request::from_parts(parts, body));
            let response = tokio::select! {
                response = handler => response,
                never = renew_lease(&state, &auth, &key, &owner) => match never {},
            };
            finish(&state, &auth, &key, &owner, response).await
        }
    }
}

/// Collect a JSON body, refusing more than the limit.
async fn buffer(body: Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_JSON_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(MAX_JSON_BODY_BYTES))
        }
        Err(error) => Err(ApiError::invalid_request(format!(
            "could not read the request body: {error}"
        ))),
    }
}

/// Copy a streamed body to a temporary file while hashing it, and hand back a body that reads
/// the file; a body over [`MAX_IMPORT_BYTES`] is refused (413).
async fn spool(body: Body, hasher: &mut Sha256) -> Result<Body, ApiError> {
    let file = tempfile::tempfile().map_err(ApiError::internal)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut spooled: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::invalid_request(format!("could not read the request body: {e}"))
        })?;
        spooled = spooled.saturating_add(chunk.len() as u64);
        if spooled > MAX_IMPORT_BYTES {
            return Err(ApiError::payload_too_large(
                usize::try_from(MAX_IMPORT_BYTES).unwrap_or(usize::MAX),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    file.rewind().await.map_err(ApiError::internal)?;
    Ok(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
}

async fn claim(
    state: &AppState,
    auth: &Auth,
    key: &str,
    request_digest: &str,
) -> Result<Claim, ApiError> {
    let now = to_micros(state.clock.now());
    let lease_until = now.saturating_add(micros(CLAIM_LEASE));
    let owner = format!("{}:{}", boot_id(), uuid::Uuid::new_v4().simple());
    let inserted = sqlx::query(
        "INSERT INTO idempotency_key (tenant_id, key, request_digest, state, created_at, owner, \
         lease_until) VALUES ($1, $2, $3, 'pending', $4, $5, $6) \
         ON CONFLICT (tenant_id, key) DO NOTHING",
    )
    .bind(auth.tenant_id.as_str())
    .bind(key)
    .bind(request_digest)
    .bind(now)
    .bind(owner.as_str())
    .bind(lease_until)
    .execute(&mut *state.db.write_conn().await?)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Claimed(owner));
    }
    let row = sqlx::query(
        "SELECT request_digest, state, response_status, response_type, response_body, created_at, \
         owner, lease_until FROM idempotency_key WHERE tenant_id = $1 AND key = $2",
    )
    .bind(auth.tenant_id.as_str())
    .bind(key)
    .fetch_optional(&mut *state.db.write_conn().await?)
    .await?;
    let Some(row) = row else {
        // Purged between our insert and select: treat as in progress; the client retries.
        return Ok(Claim::InProgress);
    };
    let stored_digest: String = row.try_get("request_digest")?;
    if stored_digest != request_digest {
        return Ok(Claim::Mismatch);
    }
    let claim_state: String = row.try_get("state")?;
    if claim_state == "done" {
        let status: Option<i64> = row.try_get("response_status")?;
        return Ok(Claim::Replay {
            status: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(200),
            content_type: row.try_get("response_type")?,
            body: row
                .try_get::<Option<Vec<u8>>, _>("response_body")?
                .unwrap_or_default(),
        });
    }
    // A claim made before leases existed has none: its creation plus one lease stands in.
    let created_at: i64 = row.try_get("created_at")?;
    let held_until = row
        .try_get::<Option<i64>, _>("lease_until")?
        .unwrap_or_else(|| created_at.saturating_add(micros(CLAIM_LEASE)));
    if held_until >= now {
        return Ok(Claim::InProgress);
    }
    // The owner stopped renewing: take the claim over, unless another request just did (the
    // update compares the owner and lease it read, so one of several takers wins).
    let previous_owner: Option<String> = row.try_get("owner")?;
    let taken = sqlx::query(
        "UPDATE idempotency_key SET owner = $1, lease_until = $2, created_at = $3 \
         WHERE tenant_id = $4 AND key = $5 AND state = 'pending' \
         AND COALESCE(owner, '') = $6 AND COALESCE(lease_until, -1) = $7",
    )
    .bind(owner.as_str())
    .bind(lease_until)
    .bind(now)
    .bind(auth.tenant_id.as_str())
    .bind(key)
    .bind(previous_owner.clone().unwrap_or_default())
    .bind(row.try_get::<Option<i64>, _>("lease_until")?.unwrap_or(-1))
    .execute(&mut *state.db.write_conn().await?)
    .await?;
    if taken.rows_affected() == 1 {
        tracing::warn!(
            key,
            previous_owner = previous_owner.as_deref().unwrap_or(""),
            "took over an Idempotency-Key whose claim's lease had run out"
        );
        return Ok(Claim::Claimed(owner));
    }
    Ok(Claim::InProgress)
}

/// Renew the claim's lease every [`LEASE_RENEWAL`] for as long as the request runs (the caller
/// drops this future when the handler answers). A failed renewal is logged and tried again at
/// the next tick; the lease leaves room for a couple of misses.
async fn renew_lease(
    state: &AppState,
    auth: &Auth,
    key: &str,
    owner: &str,
) -> std::convert::Infallible {
    let mut ticks = tokio::time::interval(LEASE_RENEWAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; the claim was just made.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let lease_until = to_micros(state.clock.now()).saturating_add(micros(CLAIM_LEASE));
        let renewed: Result<_, sqlx::Error> = async {
            sqlx::query(
                "UPDATE idempotency_key SET lease_until = $1 \
                 WHERE tenant_id = $2 AND key = $3 AND state = 'pending' AND owner = $4",
            )
            .bind(lease_until)
            .bind(auth.tenant_id.as_str())
            .bind(key)
            .bind(owner)
            .execute(&mut *state.db.write_conn().await?)
            .await
        }
        .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, key, "renewing an Idempotency-Key claim failed");
        }
    }
}

/// Store the handler's response for replay, or release the key after a server error.
async fn finish(
    state: &AppState,
    auth: &Auth,
    key: &str,
    owner: &str,
    response: Response,
) -> Result<Response, ApiError> {
    let (parts, body) = response.into_parts();
    let bytes = if parts.status.is_server_error() {
        None
    } else {
        http_body_util::Limited::new(body, MAX_STORED_RESPONSE)
            .collect()
            .await
            .ok()
            .map(|c| c.to_bytes())
    };
    let Some(bytes) = bytes else {
        sqlx::query("DELETE FROM idempotency_key WHERE tenant_id = $1 AND key = $2 AND owner = $3")
            .bind(auth.tenant_id.as_str())
            .bind(key)
            .bind(owner)
            .execute(&mut *state.db.write_conn().await?)
            .await?;
        if parts.status.is_server_error() {
            return Ok(
                ApiError::internal(anyhow::anyhow!("handler failed; key released")).into_response(),
            );
        }
        return Err(ApiError::internal(anyhow::anyhow!(
            "response too large to store for idempotent replay"
        )));
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    sqlx::query(
        "UPDATE idempotency_key SET state = 'done', response_status = $1, response_type = $2, \
         response_body = $3, lease_until = NULL WHERE tenant_id = $4 AND key = $5 AND owner = $6",
    )
    .bind(i64::from(parts.status.as_u16()))
    .bind(content_type)
    .bind(bytes.to_vec())
    .bind(auth.tenant_id.as_str())
    .bind(key)
    .bind(owner)
    .execute(&mut *state.db.write_conn().await?)
    .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Delete keys past their retention; called periodically by the server.
pub async fn purge_expired(state: &AppState) -> Result<u64, sqlx::Error> {
    let cutoff =
        to_micros(state.clock.now()) - i64::try_from(RETENTION.as_micros()).unwrap_or(i64::MAX);
    let done = sqlx::query("DELETE FROM idempotency_key WHERE created_at < $1")
        .bind(cutoff)
        .execute(&mut *state.db.write_conn().await?)
        .await?;
    Ok(done.rows_affected())
}

/// Erasure's part here: replace every stored response of the tenant whose body contains one of
/// `needles` (the erased member's id, and its external id and phone as they were) with a 409
/// `member_erased` error, and answer how many were replaced. The key stays claimed, so a
/// replay still never runs the request a second time; it just no longer hands out the
/// profile. Erasure is rare and a tenant's keys are purged after [`RETENTION`], so scanning
/// the tenant's stored bodies is cheaper than indexing every response by the members it names.
pub async fn redact_member(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &crate::common::ids::TenantId,
    member_id: &str,
    needles: &[&str],
) -> Result<u64, sqlx::Error> {
    let erased = ApiError::conflict(
        codes::MEMBER_ERASED,
        "the response to this request concerned a member who has since been erased",
    )
    .with_details(serde_json::json!({ "member_id": member_id }));
    let body = erased.body().to_string().into_bytes();
    let contains = match crate::common::sql::backend_of(conn) {
        super::db::Backend::Sqlite => |n: usize| format!("instr(response_body, ${n}) > 0"),
        super::db::Backend::Postgres => |n: usize| format!("position(${n} in response_body) > 0"),
    };
    let mut redacted = 0;
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        let done = sqlx::query(&format!(
            "UPDATE idempotency_key SET response_status = $1, response_type = $2, \
             response_body = $3 WHERE tenant_id = $4 AND state = 'done' AND {}",
            contains(5)
        ))
        .bind(i64::from(StatusCode::CONFLICT.as_u16()))
        .bind("application/json")
        .bind(body.clone())
        .bind(tenant_id.as_str())
        .bind(needle.as_bytes().to_vec())
        .execute(&mut *conn)
        .await?;
        redacted += done.rows_affected();
    }
    Ok(redacted)
}
