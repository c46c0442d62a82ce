//! One item, one code (一物一码): a unique code printed on every package. A scan proves the
//! product genuine, pays the first member who scans it the batch's points (once, however many
//! scan it at the same moment), tells later scanners the truth about the code ("first scanned
//! on … in …"), flags labels scanned from too many devices or cities as cloned, and can turn an
//! anonymous buyer into a member (source `scan`).
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`code`] | the alphabet, generation (CSPRNG, ≥ 80 bits) and the check character, pure |
//! | [`model`] | requests and responses |
//! | [`scans`] | `POST /v1/scans`: lookup, the award, clone detection, throttling of failures |
//! | [`store`] | the SQL |
//!
//! Codes are stored in plain text, keyed by `(tenant_id, code)`: a scan is one read of that
//! index joined to its batch, and the printer's CSV is read back from the same rows. A hash
//! would protect the codes from a reader of the database only if the CSV could not be
//! downloaded again, which the printer needs; the database is guarded like the ledger is.
//!
//! Codes sits beside orders, growth and distribution: it reads products, members and the
//! ledger, creates members through `members::create_in` (which runs the member hooks), and
//! reacts to erasure through [`CodeHooks`]; no domain below imports it.

pub mod code;
pub mod model;
pub mod scans;
pub mod store;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{is_unique_violation, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks::{MemberErased, MemberHooks};
use crate::common::ids::{ProductId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::time::{instant_field, to_micros};
use crate::AppState;
use model::{Batch, BatchPage, BatchQuery, BatchStats, CreateBatch};

crate::typed_id!(CodeBatchId, "cbt");
crate::typed_id!(CodeScanId, "csc");

/// Most codes in one batch.
pub const MAX_BATCH_CODES: i64 = 1_000_000;
/// Most points one code may pay.
pub const MAX_POINTS_PER_SCAN: i64 = 1_000_000;
/// Largest page of `GET /v1/code-batches`.
pub const MAX_PAGE: i64 = 200;
/// Cities and suspicious codes listed by the statistics.
pub const STATS_LIST: i64 = 100;

/// Every route of codes and scans.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_batch, list_batches))
        .routes(routes!(get_batch))
        .routes(routes!(codes_csv))
        .routes(routes!(batch_stats))
        .merge(scans::routes())
}

/// Codes' reaction to erasure (DESIGN rule 10), registered by `server::hooks`.
pub struct CodeHooks;

#[async_trait]
impl MemberHooks for CodeHooks {
    async fn on_erased(&self, tx: &mut Tx, member: &MemberErased<'_>) -> ApiResult<()> {
        store::erase_member(tx.conn(), member.tenant_id, member.member_id.as_str()).await
    }
}

/// The batch of the tenant or 404 (a malformed id is simply not found).
async fn require_batch(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Batch> {
    let id = CodeBatchId::parse(id).ok_or_else(|| ApiError::not_found("code batch"))?;
    store::fetch_batch(conn, tenant_id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("code batch"))
}

/// The validated terms of a new batch.
struct NewBatch {
    product_id: String,
    count: i64,
    points_per_scan: i64,
    expires_at: Option<i64>,
}

async fn validate(
    conn: &mut sqlx::AnyConnection,
    auth: &Auth,
    request: &CreateBatch,
    now: i64,
) -> ApiResult<NewBatch> {
    if !(1..=MAX_BATCH_CODES).contains(&request.count) {
        return Err(ApiError::validation(
            "count",
            format!("must be 1 to {MAX_BATCH_CODES}"),
        ));
    }
    if !(0..=MAX_POINTS_PER_SCAN).contains(&request.points_per_scan) {
        return Err(ApiError::validation(
            "points_per_scan",
            format!("must be 0 to {MAX_POINTS_PER_SCAN}"),
        ));
    }
    let product_id = ProductId::parse(&request.product_id)
        .ok_or_else(|| ApiError::validation("product_id", "no such product"))?;
    match crate::orders::products::fetch(conn, &auth.tenant_id, product_id.as_str()).await {
        Ok(_) => {}
        Err(error) if error.status == StatusCode::NOT_FOUND => {
            return Err(ApiError::validation("product_id", "no such product"))
        }
        Err(error) => return Err(error),
    }
    let expires_at = match &request.expires_at {
        Some(text) => {
            let zone = crate::tenants::time_zone(conn, &auth.tenant_id).await?;
            let at = to_micros(instant_field("expires_at", text, &zone)?);
            if at <= now {
                return Err(ApiError::validation("expires_at", "must be in the future"));
            }
            Some(at)
        }
        None => None,
    };
    Ok(NewBatch {
        product_id: product_id.as_str().to_owned(),
        count: request.count,
        points_per_scan: request.points_per_scan,
        expires_at,
    })
}

/// Generate `count` codes off the async threads (a million take a moment of CPU), sorted: the
/// codes are random, so their order tells nothing, and written in key order they fill the code
/// index from left to right instead of touching a random page of it per code (on SQLite with
/// its small page cache that was most of a million codes' insert time).
pub async fn generate(count: usize) -> ApiResult<Vec<String>> {
    tokio::task::spawn_blocking(move || {
        let mut codes = code::Generator::new().codes(count);
        codes.sort_unstable();
        codes
    })
    .await
    .map_err(ApiError::internal)
}

/// Create a batch and its codes in one transaction: all of them or none.
#[utoipa::path(post, path = "/v1/code-batches", tag = "codes", request_body = CreateBatch,
    responses((status = 201, body = Batch), (status = 422)), security(("api_key" = [])))]
async fn create_batch(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateBatch>,
) -> ApiResult<(StatusCode, Json<Batch>)> {
    let now = to_micros(state.clock.now());
    let terms = {
        let mut conn = state.db.read().acquire().await?;
        validate(&mut conn, &auth, &request, now).await?
    };
    let count = usize::try_from(terms.count).map_err(ApiError::internal)?;
    // A clash with a code of another batch is about 10⁻¹³ likely for a million codes; a
    // clash is drawn again rather than answered as an error.
    let mut attempts = 0;
    let id = loop {
        attempts += 1;
        let codes = generate(count).await?;
        let id = CodeBatchId::generate();
        match write_batch(&state, &auth.tenant_id, &id, &terms, &codes).await {
            Ok(()) => break id,
            Err(WriteError::Clash) if attempts < 3 => continue,
            Err(WriteError::Clash) => {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "generated codes clashed three times"
                )))
            }
            Err(WriteError::Api(error)) => return Err(error),
        }
    };
    let mut conn = state.db.read().acquire().await?;
    let batch = require_batch(&mut conn, &auth.tenant_id, id.as_str()).await?;
    Ok((StatusCode::CREATED, Json(batch)))
}

enum WriteError {
    Clash,
    Api(ApiError),
}

impl From<ApiError> for WriteError {
    fn from(error: ApiError) -> Self {
        WriteError::Api(error)
    }
}

async fn write_batch(
    state: &AppState,
    tenant_id: &TenantId,
    id: &CodeBatchId,
    terms: &NewBatch,
    codes: &[String],
) -> Result<(), WriteError> {
    let mut tx = state.begin().await.map_err(ApiError::from)?;
    let at = to_micros(tx.now());
    store::insert_batch(
        tx.conn(),
        tenant_id,
        id.as_str(),
        &terms.product_id,
        terms.count,
        terms.points_per_scan,
        terms.expires_at,
        at,
    )
    .await?;
    let backend = tx.backend();
    match store::insert_codes(tx.conn(), backend, tenant_id, id.as_str(), codes, 1).await {
        Ok(()) => {}
        Err(error)
            if error
                .source
                .as_ref()
                .and_then(|s| s.downcast_ref::<sqlx::Error>())
                .is_some_and(is_unique_violation) =>
        {
            return Err(WriteError::Clash)
        }
        Err(error) => return Err(error.into()),
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "code_batch.created",
        Some(id.as_str()),
        json!({
            "batch_id": id,
            "product_id": terms.product_id,
            "count": terms.count,
            "points_per_scan": terms.points_per_scan,
        }),
    ));
    tx.commit().await.map_err(ApiError::from)?;
    Ok(())
}

/// Batches, oldest first, optionally of one product.
#[utoipa::path(get, path = "/v1/code-batches", tag = "codes", params(BatchQuery),
    responses((status = 200, body = BatchPage), (status = 422)), security(("api_key" = [])))]
async fn list_batches(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<BatchQuery>,
) -> ApiResult<Json<BatchPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), CodeBatchId::parse)?;
    let product_id = match query.product_id.as_deref() {
        Some(text) => Some(
            ProductId::parse(text)
                .ok_or_else(|| ApiError::validation("product_id", "is not a product id"))?,
        ),
        None => None,
    };
    let mut conn = state.db.read().acquire().await?;
    let mut rows = store::list_batches(
        &mut conn,
        &auth.tenant_id,
        product_id.as_ref().map(ProductId::as_str),
        cursor.as_ref().map(CodeBatchId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut rows, limit, |b| b.id.clone());
    Ok(Json(BatchPage {
        data: rows,
        next_cursor,
    }))
}

/// One batch.
#[utoipa::path(get, path = "/v1/code-batches/{id}", tag = "codes",
    params(("id" = String, Path, description = "code batch id")),
    responses((status = 200, body = Batch), (status = 404)), security(("api_key" = [])))]
async fn get_batch(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Batch>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(require_batch(&mut conn, &auth.tenant_id, &id).await?))
}

/// The batch's codes for the printer, streamed: a header line `code,serial`, then one line per
/// code in serial order. The only way to read codes in bulk.
#[utoipa::path(get, path = "/v1/code-batches/{id}/codes.csv", tag = "codes",
    params(("id" = String, Path, description = "code batch id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)),
    security(("api_key" = [])))]
async fn codes_csv(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let batch = {
        let mut conn = state.db.read().acquire().await?;
        require_batch(&mut conn, &auth.tenant_id, &id).await?
    };
    // The first page is read before answering, so a database failure is a proper error.
    let (first, next) = csv_page(&state, &auth.tenant_id, &batch.id, 0, true).await?;
    let disposition = format!("attachment; filename=\"codes-{}.csv\"", batch.id);
    let stream = futures::stream::unfold((Some(first), next), move |(pending, after)| {
        let state = state.clone();
        let tenant_id = auth.tenant_id.clone();
        let batch_id = batch.id.clone();
        async move {
            if let Some(bytes) = pending {
                return Some((Ok(bytes), (None, after)));
            }
            let after = after?;
            match csv_page(&state, &tenant_id, &batch_id, after, false).await {
                Ok((bytes, next)) => Some((Ok(bytes), (None, next))),
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), (None, None))),
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One page of the CSV after serial `after`, and the serial to continue from (None: done).
async fn csv_page(
    state: &AppState,
    tenant_id: &TenantId,
    batch_id: &str,
    after: i64,
    header: bool,
) -> ApiResult<(Vec<u8>, Option<i64>)> {
    let mut conn = state.db.read().acquire().await?;
    let rows = store::codes_page(&mut conn, tenant_id, batch_id, after, store::CSV_PAGE).await?;
    drop(conn);
    let mut bytes = Vec::with_capacity(rows.len() * 28 + 16);
    if header {
        bytes.extend_from_slice(b"code,serial\n");
    }
    // Codes are alphabet characters and serials digits: nothing to quote.
    for (code, serial) in &rows {
        bytes.extend_from_slice(code.as_bytes());
        bytes.push(b',');
        bytes.extend_from_slice(serial.to_string().as_bytes());
        bytes.push(b'\n');
    }
    let next = (rows.len() as i64 == store::CSV_PAGE)
        .then(|| rows.last().map(|(_, serial)| *serial))
        .flatten();
    Ok((bytes, next))
}

/// A batch's scans: codes scanned, scans, points paid, by day (tenant's time zone) and by city,
/// and the codes flagged as cloned labels.
#[utoipa::path(get, path = "/v1/code-batches/{id}/stats", tag = "codes",
    params(("id" = String, Path, description = "code batch id")),
    responses((status = 200, body = BatchStats), (status = 404)), security(("api_key" = [])))]
async fn batch_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BatchStats>> {
    let mut conn = state.db.read().acquire().await?;
    let batch = require_batch(&mut conn, &auth.tenant_id, &id).await?;
    Ok(Json(stats(&mut conn, &auth.tenant_id, &batch).await?))
}

/// The statistics of a batch (also for the console).
pub async fn stats(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    batch: &Batch,
) -> ApiResult<BatchStats> {
    let (scanned, scans, points_awarded) = store::totals(conn, tenant_id, &batch.id).await?;
    let by_day = store::by_day(conn, tenant_id, &batch.id).await?;
    let by_city = store::by_city(conn, tenant_id, &batch.id, STATS_LIST).await?;
    let (suspicious_count, suspicious) =
        store::suspicious(conn, tenant_id, &batch.id, STATS_LIST).await?;
    Ok(BatchStats {
        batch_id: batch.id.clone(),
        codes: batch.count,
        scanned,
        scans,
        points_awarded,
        by_day,
        by_city,
        suspicious_count,
        suspicious,
    })
}
