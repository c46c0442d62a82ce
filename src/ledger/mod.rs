//! The ledger (积分, 储值, 佣金): every balance in shequn is a sum of immutable, idempotent,
//! double-entry transfers between accounts (DESIGN rules 1, 2, 5).
//!
//! - [`model`]: assets, addresses, transfer requests and results.
//! - [`engine`]: the rules, pure, applied in memory.
//! - [`store`]: loading, locking and writing; `apply` runs operations inside any transaction,
//!   so domain code can move money atomically with its own state.
//! - [`executor`]: the coalescing executor that batches concurrent callers into one
//!   transaction; the HTTP API and hot domain paths submit through it.
//! - [`verify`]: the invariant checker behind `shequn ledger verify`.

pub mod engine;
pub mod executor;
pub mod model;
pub mod store;
pub mod verify;

use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::pagination;
use crate::common::scheduler::{self, Job};
use crate::members;
use crate::AppState;
pub use engine::Op;
pub use executor::Ledger;
use model::{Address, Asset, Balance, NewTransfer, Transfer, TransferRequest, TransferResult};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_transfers))
        .routes(routes!(get_transfer))
        .routes(routes!(post_transfer))
        .routes(routes!(void_transfer))
        .routes(routes!(member_balances))
        .routes(routes!(member_transfers))
        .routes(routes!(account_balances))
        .routes(routes!(verify_ledger))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransfers {
    /// Up to 1,000 transfers, applied in order.
    pub transfers: Vec<TransferRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferResults {
    /// One result per transfer, in order.
    pub results: Vec<TransferResult>,
}

/// Create transfers (idempotent per `id`). Invalid fields reject the whole request (422);
/// business outcomes (`insufficient_funds`, `exists`, …) are per transfer.
#[utoipa::path(post, path = "/v1/ledger/transfers", tag = "ledger", request_body = CreateTransfers,
    responses((status = 200, body = TransferResults), (status = 422)), security(("api_key" = [])))]
async fn create_transfers(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateTransfers>,
) -> ApiResult<Json<TransferResults>> {
    if request.transfers.is_empty() || request.transfers.len() > model::MAX_TRANSFERS_PER_REQUEST {
        return Err(ApiError::validation(
            "transfers",
            format!(
                "must hold 1 to {} transfers",
                model::MAX_TRANSFERS_PER_REQUEST
            ),
        ));
    }
    let ops = request
        .transfers
        .into_iter()
        .enumerate()
        .map(|(i, t)| NewTransfer::parse(i, t).map(Op::Create))
        .collect::<Result<Vec<_>, _>>()?;
    let results = state.ledger.submit(&auth.tenant_id, ops).await?;
    Ok(Json(TransferResults { results }))
}

fn transfer_id(text: &str) -> ApiResult<&str> {
    if model::valid_id(text) {
        Ok(text)
    } else {
        Err(ApiError::not_found("transfer"))
    }
}

/// One transfer with its current status.
#[utoipa::path(get, path = "/v1/ledger/transfers/{id}", tag = "ledger",
    params(("id" = String, Path)), responses((status = 200, body = Transfer), (status = 404)),
    security(("api_key" = [])))]
async fn get_transfer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Transfer>> {
    let id = transfer_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    store::load_transfers(&mut conn, &auth.tenant_id, &[id])
        .await?
        .remove(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("transfer"))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// Post less than reserved; the rest is released. Default: all of it.
    pub amount: Option<i64>,
}

/// Turn a resolution result into the HTTP answer: 200, 404, 409 or 422.
fn resolution_reply(mut results: Vec<TransferResult>) -> ApiResult<Json<Transfer>> {
    let result = results
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no result")))?;
    let message = result.message.clone().unwrap_or_default();
    match result.status.as_str() {
        "posted" | "voided" | "expired" => result
            .transfer
            .map(Json)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("resolution without transfer"))),
        "transfer_not_found" => Err(ApiError::not_found("transfer")),
        "already_resolved" => Err(ApiError::conflict(codes::ALREADY_RESOLVED, message)
            .with_details(serde_json::to_value(&result.transfer).unwrap_or(Value::Null))),
        "not_pending" => Err(ApiError::conflict(codes::NOT_PENDING, message)),
        "amount_exceeds_pending" => Err(ApiError::coded(codes::AMOUNT_EXCEEDS_PENDING, message)
            .with_details(serde_json::json!({ "field": "amount" }))),
        other => Err(ApiError::conflict(
            codes::RESOLUTION_FAILED,
            format!("{other}: {message}"),
        )),
    }
}

/// Post a pending transfer (all of it, or a smaller `amount`), exactly once.
#[utoipa::path(post, path = "/v1/ledger/transfers/{id}/post", tag = "ledger",
    params(("id" = String, Path)), request_body(content = Option<PostBody>),
    responses((status = 200, body = Transfer), (status = 404), (status = 409, description = "already resolved"),
              (status = 422)), security(("api_key" = [])))]
async fn post_transfer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Transfer>> {
    let id = transfer_id(&id)?.to_owned();
    let body: PostBody = if body.iter().all(u8::is_ascii_whitespace) {
        PostBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid_request(format!("invalid body: {e}")))?
    };
    if let Some(amount) = body.amount {
        if !(1..=model::MAX_AMOUNT).contains(&amount) {
            return Err(ApiError::validation("amount", "must be a positive integer"));
        }
    }
    let op = Op::Post {
        pending_id: id,
        amount: body.amount,
    };
    resolution_reply(state.ledger.submit(&auth.tenant_id, vec![op]).await?)
}

/// Void a pending transfer, exactly once.
#[utoipa::path(post, path = "/v1/ledger/transfers/{id}/void", tag = "ledger",
    params(("id" = String, Path)),
    responses((status = 200, body = Transfer), (status = 404), (status = 409, description = "already resolved")),
    security(("api_key" = [])))]
async fn void_transfer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Transfer>> {
    let id = transfer_id(&id)?.to_owned();
    let op = Op::Void { pending_id: id };
    resolution_reply(state.ledger.submit(&auth.tenant_id, vec![op]).await?)
}

fn by_asset(balances: Vec<(Asset, Balance)>) -> BTreeMap<&'static str, Balance> {
    balances.into_iter().map(|(a, b)| (a.as_str(), b)).collect()
}

/// A member's balances, keyed by asset.
#[utoipa::path(get, path = "/v1/members/{id}/balances", tag = "ledger",
    params(("id" = String, Path)), responses((status = 200, body = Object), (status = 404)),
    security(("api_key" = [])))]
async fn member_balances(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BTreeMap<&'static str, Balance>>> {
    let id = members::member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    drop(conn);
    let balances = store::balances(state.db.read(), &auth.tenant_id, &Address::member(&id)).await?;
    Ok(Json(by_asset(balances)))
}

/// Balances of any account address (`system:issuance`, `member:mem_…`), keyed by asset.
#[utoipa::path(get, path = "/v1/ledger/accounts/{address}", tag = "ledger",
    params(("address" = String, Path)), responses((status = 200, body = Object), (status = 404)),
    security(("api_key" = [])))]
async fn account_balances(
    State(state): State<AppState>,
    auth: Auth,
    Path(address): Path<String>,
) -> ApiResult<Json<BTreeMap<&'static str, Balance>>> {
    let address = Address::parse(&address).ok_or_else(|| ApiError::not_found("account"))?;
    if let Some(member) = address.member_id() {
        let id = members::member_id(member)?;
        let mut conn = state.db.read().acquire().await?;
        members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    }
    let balances = store::balances(state.db.read(), &auth.tenant_id, &address).await?;
    Ok(Json(by_asset(balances)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this asset.
    pub asset: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferPage {
    pub data: Vec<Transfer>,
    pub next_cursor: Option<String>,
}

/// A member's transfers, newest first.
#[utoipa::path(get, path = "/v1/members/{id}/transfers", tag = "ledger",
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = TransferPage), (status = 404)), security(("api_key" = [])))]
async fn member_transfers(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<TransferPage>> {
    let id = members::member_id(&id)?;
    let limit = pagination::limit(query.limit, 50, 200)?;
    let asset = query
        .asset
        .map(|a| {
            Asset::parse(&a).ok_or_else(|| {
                ApiError::validation(
                    "asset",
                    "must be points, wallet_principal, wallet_bonus or commission",
                )
            })
        })
        .transpose()?;
    let cursor = pagination::cursor(query.cursor.as_deref(), store::HistoryCursor::decode)?;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    drop(conn);
    let (data, next) = store::history(
        state.db.read(),
        &auth.tenant_id,
        &id,
        asset,
        cursor.as_ref(),
        limit,
    )
    .await?;
    Ok(Json(TransferPage {
        data,
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// Check the ledger's invariants for the caller's tenant.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger",
    responses((status = 200, body = verify::VerifyReport)), security(("api_key" = [])))]
async fn verify_ledger(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<verify::VerifyReport>> {
    Ok(Json(
        verify::verify(state.db.read(), &auth.tenant_id).await?,
    ))
}

/// Scheduler handler: void a pending transfer whose timeout passed (if still pending).
pub async fn expire_pending(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let pending_id = job
        .payload
        .get("pending_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("job without pending_id"))?
        .to_owned();
    let mut tx = state.begin().await?;
    let op = Op::Expire { pending_id };
    store::apply(
        &mut tx,
        &job.tenant_id,
        &[&[op]],
        store::Locking::Pessimistic,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

/// Apply operations inside the caller's transaction (for domain code that moves money
/// atomically with its own state); nothing is committed here.
pub async fn apply_in(
    tx: &mut crate::common::db::Tx,
    tenant_id: &TenantId,
    ops: Vec<Op>,
) -> ApiResult<Vec<TransferResult>> {
    let mut results = store::apply(tx, tenant_id, &[&ops], store::Locking::Pessimistic).await?;
    Ok(results.pop().unwrap_or_default())
}
