//! Withdrawals (提现): a promoter takes available commission out.
//!
//! A request reserves the amount on the promoter's commission account with pending transfers
//! (`withdrawal:<id>` of `amount − fee` to `system:payouts`, `withdrawal:<id>:fee` of the fee
//! to `system:withdrawal_fees`, linked so both or neither are written), so two requests can
//! never spend the same fen. With review on, an operator approves (the transfers are posted
//! and `withdrawal.approved` tells the merchant's payment system to pay) or rejects (voided).
//! The payment system confirms with `…/paid`, or `…/failed` gives the money back to the
//! promoter (fee included: nothing was paid out).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::time::to_micros;
use crate::ledger::model::{Address, Asset, NewTransfer, MAX_AMOUNT};
use crate::ledger::{self, Op};
use crate::AppState;

use super::model::{
    PageQuery, PaidBody, RequestWithdrawal, Withdrawal, WithdrawalPage, WithdrawalStatus,
};
use super::promoters;
use super::rules;
use super::store;
use super::{WithdrawalId, MAX_PAGE};

/// Where approved withdrawals wait for the merchant's payout.
pub const PAYOUT_ACCOUNT: &str = "payouts";
/// Where withdrawal fees go.
pub const FEE_ACCOUNT: &str = "withdrawal_fees";
/// Longest payout reference.
pub const MAX_REFERENCE_LEN: usize = 128;
const CODE: &str = "withdrawal";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request, list))
        .routes(routes!(get_withdrawal))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(paid))
        .routes(routes!(failed))
}

fn internal(message: String) -> ApiError {
    ApiError::internal(anyhow::anyhow!(message))
}

fn payout_id(id: &str) -> String {
    format!("withdrawal:{id}")
}

fn fee_id(id: &str) -> String {
    format!("withdrawal:{id}:fee")
}

fn event(tenant_id: &TenantId, kind: &'static str, w: &Withdrawal) -> NewEvent {
    NewEvent::new(
        tenant_id,
        kind,
        Some(w.id.as_str()),
        json!({
            "withdrawal_id": w.id,
            "promoter_id": w.promoter_id,
            "amount": w.amount,
            "fee": w.fee,
            "net": w.net,
            "status": w.status,
            "reference": w.reference,
        }),
    )
}

/// Run ledger operations, each required to end in `status`.
async fn ledger_ops(
    tx: &mut Tx,
    tenant_id: &TenantId,
    ops: Vec<Op>,
    status: &str,
) -> ApiResult<()> {
    if ops.is_empty() {
        return Ok(());
    }
    for result in ledger::apply_in(tx, tenant_id, ops).await? {
        if result.status != status {
            return Err(internal(format!(
                "withdrawal transfer {} gave {}",
                result.id, result.status
            )));
        }
    }
    Ok(())
}

/// The resolutions (post or void) of a withdrawal's pending transfers.
fn resolve(w: &Withdrawal, post: bool) -> Vec<Op> {
    let mut ids = Vec::new();
    if w.net > 0 {
        ids.push(payout_id(&w.id));
    }
    if w.fee > 0 {
        ids.push(fee_id(&w.id));
    }
    ids.into_iter()
        .map(|pending_id| {
            if post {
                Op::Post {
                    pending_id,
                    amount: None,
                }
            } else {
                Op::Void { pending_id }
            }
        })
        .collect()
}

/// Request a withdrawal of available commission. 409 `below_minimum`, 409
/// `insufficient_funds`; approved at once when the tenant does not review withdrawals.
#[utoipa::path(post, path = "/v1/promoters/{id}/withdrawals", tag = "distribution",
    params(("id" = String, Path, description = "promoter id")), request_body = RequestWithdrawal,
    responses((status = 201, body = Withdrawal), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
async fn request(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<RequestWithdrawal>,
) -> ApiResult<(StatusCode, Json<Withdrawal>)> {
    if !(1..=MAX_AMOUNT).contains(&body.amount) {
        return Err(ApiError::validation(
            "amount",
            "must be a positive number of fen",
        ));
    }
    let mut tx = state.begin().await?;
    let tenant_id = &auth.tenant_id;
    let promoter = promoters::require(tx.conn(), tenant_id, &id, true).await?;
    let settings = store::settings(tx.conn(), tenant_id).await?.withdrawal;
    if body.amount < settings.min_amount {
        return Err(ApiError::conflict(
            codes::BELOW_MINIMUM,
            format!("the smallest withdrawal is {} fen", settings.min_amount),
        )
        .with_details(json!({ "min_amount": settings.min_amount })));
    }
    let fee = rules::withdrawal_fee(body.amount, settings.fee_bp)
        .ok_or_else(|| ApiError::validation("amount", "is too large"))?;
    let net = body.amount - fee;
    let id = WithdrawalId::generate().as_str().to_owned();
    let account = Address::member(&promoter.member_id);
    let mut transfers = Vec::new();
    for (transfer_id, to, amount) in [
        (payout_id(&id), PAYOUT_ACCOUNT, net),
        (fee_id(&id), FEE_ACCOUNT, fee),
    ] {
        if amount > 0 {
            transfers.push(
                NewTransfer::internal(
                    transfer_id,
                    account.clone(),
                    Address::system(to),
                    Asset::Commission,
                    amount,
                    CODE,
                    Some(&id),
                )
                .pending(None),
            );
        }
    }
    let last = transfers.len().saturating_sub(1);
    let ops = transfers
        .into_iter()
        .enumerate()
        .map(|(i, t)| Op::Create(if i < last { t.linked() } else { t }))
        .collect();
    let results = ledger::apply_in(&mut tx, tenant_id, ops).await?;
    if results.iter().any(|r| r.status != "created") {
        let available =
            ledger::store::available(tx.conn(), tenant_id, &account, Asset::Commission).await?;
        return Err(ApiError::conflict(
            codes::INSUFFICIENT_FUNDS,
            format!("the promoter holds {available} fen of available commission"),
        )
        .with_details(json!({ "amount": body.amount, "available": available })));
    }
    let now = to_micros(tx.now());
    store::insert_withdrawal(
        tx.conn(),
        tenant_id,
        &id,
        &promoter.id,
        body.amount,
        fee,
        now,
    )
    .await?;
    let mut withdrawal = store::withdrawal(tx.conn(), tenant_id, &id)
        .await?
        .ok_or_else(|| internal(format!("withdrawal {id} not written")))?;
    tx.emit(event(tenant_id, "withdrawal.requested", &withdrawal));
    if !settings.review {
        withdrawal = decide(&mut tx, tenant_id, &id, WithdrawalStatus::Approved).await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(withdrawal)))
}

fn withdrawal_id(text: &str) -> ApiResult<WithdrawalId> {
    WithdrawalId::parse(text).ok_or_else(|| ApiError::not_found("withdrawal"))
}

async fn require(tx: &mut Tx, tenant_id: &TenantId, id: &str) -> ApiResult<Withdrawal> {
    let id = withdrawal_id(id)?;
    store::withdrawal(tx.conn(), tenant_id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("withdrawal"))
}

/// Move a withdrawal once (409 `invalid_withdrawal_transition` otherwise) and move its money.
async fn decide(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &str,
    to: WithdrawalStatus,
) -> ApiResult<Withdrawal> {
    decide_with(tx, tenant_id, id, to, None).await
}

async fn decide_with(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &str,
    to: WithdrawalStatus,
    reference: Option<&str>,
) -> ApiResult<Withdrawal> {
    let current = require(tx, tenant_id, id).await?;
    let from = match to {
        WithdrawalStatus::Approved | WithdrawalStatus::Rejected => WithdrawalStatus::Pending,
        WithdrawalStatus::Paid | WithdrawalStatus::Failed => WithdrawalStatus::Approved,
        WithdrawalStatus::Pending => return Err(internal("withdrawals never go back".into())),
    };
    let now = to_micros(tx.now());
    if !store::transition_withdrawal(tx.conn(), tenant_id, &current.id, from, to, reference, now)
        .await?
    {
        return Err(ApiError::conflict(
            codes::INVALID_WITHDRAWAL_TRANSITION,
            format!(
                "a {} withdrawal cannot become {}",
                current.status.as_str(),
                to.as_str()
            ),
        )
        .with_details(json!({ "status": current.status })));
    }
    match to {
        WithdrawalStatus::Approved => {
            ledger_ops(tx, tenant_id, resolve(&current, true), "posted").await?
        }
        WithdrawalStatus::Rejected => {
            ledger_ops(tx, tenant_id, resolve(&current, false), "voided").await?
        }
        WithdrawalStatus::Failed => give_back(tx, tenant_id, &current).await?,
        WithdrawalStatus::Paid | WithdrawalStatus::Pending => {}
    }
    let withdrawal = require(tx, tenant_id, &current.id).await?;
    match to {
        WithdrawalStatus::Approved => tx.emit(event(tenant_id, "withdrawal.approved", &withdrawal)),
        WithdrawalStatus::Rejected => tx.emit(event(tenant_id, "withdrawal.rejected", &withdrawal)),
        WithdrawalStatus::Paid => tx.emit(event(tenant_id, "withdrawal.paid", &withdrawal)),
        WithdrawalStatus::Failed => tx.emit(event(tenant_id, "withdrawal.failed", &withdrawal)),
        WithdrawalStatus::Pending => {}
    }
    Ok(withdrawal)
}

/// A failed payout: the net amount and the fee go back to the promoter.
async fn give_back(tx: &mut Tx, tenant_id: &TenantId, w: &Withdrawal) -> ApiResult<()> {
    let promoter = promoters::require(tx.conn(), tenant_id, &w.promoter_id, false).await?;
    let account = Address::member(&promoter.member_id);
    let mut ops = Vec::new();
    for (transfer_id, from, amount) in [
        (
            format!("withdrawal:{}:returned", w.id),
            PAYOUT_ACCOUNT,
            w.net,
        ),
        (
            format!("withdrawal:{}:fee_returned", w.id),
            FEE_ACCOUNT,
            w.fee,
        ),
    ] {
        if amount > 0 {
            ops.push(Op::Create(NewTransfer::internal(
                transfer_id,
                Address::system(from),
                account.clone(),
                Asset::Commission,
                amount,
                CODE,
                Some(&w.id),
            )));
        }
    }
    ledger_ops(tx, tenant_id, ops, "created").await
}

async fn answer(
    state: &AppState,
    auth: &Auth,
    id: &str,
    to: WithdrawalStatus,
    reference: Option<&str>,
) -> ApiResult<Json<Withdrawal>> {
    let mut tx = state.begin().await?;
    let withdrawal = decide_with(&mut tx, &auth.tenant_id, id, to, reference).await?;
    tx.commit().await?;
    Ok(Json(withdrawal))
}

/// Approve a withdrawal waiting for review: the money moves to `system:payouts` (less the
/// fee) and `withdrawal.approved` asks the merchant's payment system to pay it.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/approve", tag = "distribution",
    params(("id" = String, Path, description = "withdrawal id")),
    responses((status = 200, body = Withdrawal), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn approve(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Withdrawal>> {
    answer(&state, &auth, &id, WithdrawalStatus::Approved, None).await
}

/// Reject a withdrawal waiting for review: the reserved money stays with the promoter.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/reject", tag = "distribution",
    params(("id" = String, Path, description = "withdrawal id")),
    responses((status = 200, body = Withdrawal), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn reject(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Withdrawal>> {
    answer(&state, &auth, &id, WithdrawalStatus::Rejected, None).await
}

/// The merchant's payment system paid an approved withdrawal (`{"reference"}`).
#[utoipa::path(post, path = "/v1/withdrawals/{id}/paid", tag = "distribution",
    params(("id" = String, Path, description = "withdrawal id")),
    request_body(content = Option<PaidBody>),
    responses((status = 200, body = Withdrawal), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
async fn paid(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Withdrawal>> {
    let body: PaidBody = if body.iter().all(u8::is_ascii_whitespace) {
        PaidBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid_request(format!("malformed JSON: {e}")))?
    };
    let reference = body.reference.map(|r| r.trim().to_owned());
    if reference
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > MAX_REFERENCE_LEN)
    {
        return Err(ApiError::validation(
            "reference",
            format!("must be 1 to {MAX_REFERENCE_LEN} bytes"),
        ));
    }
    answer(
        &state,
        &auth,
        &id,
        WithdrawalStatus::Paid,
        reference.as_deref(),
    )
    .await
}

/// The payout of an approved withdrawal failed: the money goes back to the promoter.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/failed", tag = "distribution",
    params(("id" = String, Path, description = "withdrawal id")),
    responses((status = 200, body = Withdrawal), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn failed(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Withdrawal>> {
    answer(&state, &auth, &id, WithdrawalStatus::Failed, None).await
}

/// One withdrawal.
#[utoipa::path(get, path = "/v1/withdrawals/{id}", tag = "distribution",
    params(("id" = String, Path, description = "withdrawal id")),
    responses((status = 200, body = Withdrawal), (status = 404)), security(("api_key" = [])))]
async fn get_withdrawal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Withdrawal>> {
    let id = withdrawal_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    store::withdrawal(&mut conn, &auth.tenant_id, id.as_str())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("withdrawal"))
}

/// A promoter's withdrawals in id order, optionally of one `status`.
#[utoipa::path(get, path = "/v1/promoters/{id}/withdrawals", tag = "distribution",
    params(("id" = String, Path, description = "promoter id"), PageQuery),
    responses((status = 200, body = WithdrawalPage), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<WithdrawalPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let status = WithdrawalStatus::query(query.status.as_deref())?;
    let cursor = pagination::cursor(query.cursor.as_deref(), WithdrawalId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let promoter = promoters::require(&mut conn, &auth.tenant_id, &id, false).await?;
    let mut data = store::list_withdrawals(
        &mut conn,
        &auth.tenant_id,
        &promoter.id,
        status,
        cursor.as_ref().map(WithdrawalId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |w| w.id.clone());
    Ok(Json(WithdrawalPage { data, next_cursor }))
}
