//! Stored value (储值) and top-up plans (充值送).
//!
//! A member's wallet is two ledger assets: `wallet_principal` (what the member paid, owed back
//! on a refund) and `wallet_bonus` (what the merchant gave on top). This module keeps the
//! business records beside them (plans, top-ups, spends, refunds) and moves the money with
//! ledger transfers written in the same transaction as the record, with ids derived from the
//! record's id (`<id>:principal`, `<id>:bonus`), so nothing is credited twice.
//!
//! - Top-up: `system:cash_in → member` principal = plan pay, `system:issuance → member` bonus
//!   = plan bonus (skipped when 0), linked. Idempotent on `payment_ref` per tenant; refused
//!   with 409 `stored_value_cap_exceeded` when principal + bonus would pass the tenant's cap.
//! - Spend: split by the tenant's policy ([`rules::split_spend`]), debited to
//!   `system:redemption`, linked. Idempotent on `reference`.
//! - Spend refund: full or partial, back into the wallet in the spend's own ratio
//!   ([`rules::split_spend_refund`]); never more than the spend.
//! - Top-up refund: all the principal it paid leaves the wallet (`member → system:refunds`,
//!   then paid back to the customer outside shequn) and its bonus is clawed back
//!   (`member → system:issuance`); if some of that bonus was spent already, only what is left
//!   of it is clawed back. If some of the principal was spent, the refund is refused (409
//!   `insufficient_funds`): refund the spends first.
//!
//! One member's wallet operations run one at a time (the member row is locked on
//! PostgreSQL; SQLite has a single writer), so the cap check, the split and the refund limits
//! see a settled balance. Idempotency races between members are settled by the unique
//! reference: `INSERT … ON CONFLICT DO NOTHING` waits for the concurrent inserter and, when it
//! committed, the original row is read back and returned, without aborting the transaction.
//!
//! The `*_in` functions run inside a caller's [`Tx`] (the orders part spends this way); on
//! an error the caller must drop (roll back) the transaction.

pub mod model;
pub mod rules;
pub mod store;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::Path;
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer, TransferResult, MAX_AMOUNT};
use crate::ledger::{self, Op};
use crate::members;
use crate::AppState;
use model::{
    CreatePlan, CreateTopup, Plan, Refund, RefundKind, RefundRequest, Settings, Spend,
    SpendRequest, Topup, UpdateSettings, Wallet, TOPUP_COMPLETED, TOPUP_REFUNDED,
};
use rules::Split;

crate::typed_id!(PlanId, "tpl");
crate::typed_id!(TopupId, "top");
crate::typed_id!(SpendId, "spd");
crate::typed_id!(RefundId, "rfd");

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_plan, list_plans))
        .routes(routes!(create_topup))
        .routes(routes!(spend_from_wallet))
        .routes(routes!(refund))
        .routes(routes!(wallet))
        .routes(routes!(get_settings, put_settings))
}

/// Ledger operations for a list of transfers: zero amounts are skipped and all but the last
/// are linked, so the chain succeeds or fails as a whole.
fn chain(transfers: Vec<NewTransfer>) -> Vec<Op> {
    let transfers: Vec<NewTransfer> = transfers.into_iter().filter(|t| t.amount > 0).collect();
    let last = transfers.len().saturating_sub(1);
    transfers
        .into_iter()
        .enumerate()
        .map(|(i, t)| Op::Create(if i < last { t.linked() } else { t }))
        .collect()
}

/// Apply a chain inside `tx`; a refused debit becomes 409 `insufficient_funds`.
async fn apply(tx: &mut Tx, tenant_id: &TenantId, ops: Vec<Op>) -> ApiResult<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let results: Vec<TransferResult> = ledger::apply_in(tx, tenant_id, ops).await?;
    if results.iter().all(TransferResult::is_success) {
        return Ok(());
    }
    if results.iter().any(|r| r.status == "insufficient_funds") {
        return Err(ApiError::conflict(
            codes::INSUFFICIENT_FUNDS,
            "the wallet does not hold enough for this",
        ));
    }
    let failure = results
        .iter()
        .find(|r| !r.is_success())
        .map(|r| format!("{} {}: {:?}", r.id, r.status, r.message))
        .unwrap_or_default();
    Err(ApiError::internal(anyhow::anyhow!(
        "ledger refused a stored-value transfer: {failure}"
    )))
}

fn transfer(
    id: String,
    from: Address,
    to: Address,
    asset: Asset,
    amount: i64,
    code: &str,
    reference: &str,
) -> NewTransfer {
    NewTransfer::internal(id, from, to, asset, amount, code, Some(reference))
}

/// Parse an id from a request; a malformed one is simply not found.
fn parse_id<T>(parse: impl Fn(&str) -> Option<T>, text: &str, what: &str) -> ApiResult<T> {
    parse(text).ok_or_else(|| ApiError::not_found(what))
}

/// Create a top-up plan.
#[utoipa::path(post, path = "/v1/topup-plans", tag = "membership", request_body = CreatePlan,
    responses((status = 201, body = Plan), (status = 409, description = "too many plans"),
              (status = 422)), security(("api_key" = [])))]
async fn create_plan(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreatePlan>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    let (name, pay, bonus) = model::validate_plan(request)?;
    let mut tx = state.begin().await?;
    if store::count_plans(tx.conn(), &auth.tenant_id).await? >= store::MAX_PLANS {
        return Err(ApiError::conflict(
            codes::TOO_MANY_PLANS,
            format!("a tenant holds at most {} top-up plans", store::MAX_PLANS),
        ));
    }
    let at = to_micros(tx.now());
    let plan = Plan {
        id: PlanId::generate(),
        name,
        pay,
        bonus,
        active: true,
        created_at: micros_to_rfc3339(at),
    };
    store::insert_plan(tx.conn(), &auth.tenant_id, &plan, at).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "topup_plan.created",
        Some(plan.id.as_str()),
        json!({ "plan_id": plan.id, "pay": pay, "bonus": bonus }),
    ));
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

/// The tenant's top-up plans, oldest first.
#[utoipa::path(get, path = "/v1/topup-plans", tag = "membership",
    responses((status = 200, body = Vec<Plan>)), security(("api_key" = [])))]
async fn list_plans(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<Plan>>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(store::plans(&mut conn, &auth.tenant_id).await?))
}

/// Top up a member's wallet by a plan inside `tx`. Returns the top-up and whether it was
/// created now (`false`: the payment reference was already used, and the original top-up is
/// returned; nothing is credited again).
pub async fn topup_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    plan_id: &PlanId,
    payment_ref: &str,
) -> ApiResult<(Topup, bool)> {
    members::store::require_active(tx.conn(), tenant_id, member_id).await?;
    store::lock_member(tx.conn(), tenant_id, member_id).await?;
    if let Some(original) = store::topup_by_payment_ref(tx.conn(), tenant_id, payment_ref).await? {
        return Ok((original, false));
    }
    let plan = store::plan(tx.conn(), tenant_id, plan_id)
        .await?
        .ok_or_else(|| ApiError::not_found("top-up plan"))?;
    if !plan.active {
        return Err(ApiError::conflict(
            codes::PLAN_INACTIVE,
            "this top-up plan is no longer offered",
        ));
    }
    let settings = store::settings(tx.conn(), tenant_id).await?;
    let (principal, bonus) = store::wallet_available(tx.conn(), tenant_id, member_id).await?;
    let held = principal.max(0) + bonus.max(0);
    let after = held.saturating_add(plan.pay).saturating_add(plan.bonus);
    if after > settings.cap {
        return Err(ApiError::conflict(
            codes::STORED_VALUE_CAP_EXCEEDED,
            format!(
                "this top-up would bring the stored value to {after} fen, above the cap of {} fen",
                settings.cap
            ),
        )
        .with_details(
            json!({ "cap": settings.cap, "held": held, "topup": plan.pay + plan.bonus }),
        ));
    }
    let at = to_micros(tx.now());
    let topup = Topup {
        id: TopupId::generate(),
        member_id: member_id.clone(),
        plan_id: plan.id.clone(),
        payment_ref: payment_ref.to_owned(),
        pay: plan.pay,
        bonus: plan.bonus,
        status: TOPUP_COMPLETED.to_owned(),
        created_at: micros_to_rfc3339(at),
    };
    if !store::insert_topup(tx.conn(), tenant_id, &topup, at).await? {
        // A concurrent top-up with this reference (for another member) committed first.
        let original = store::topup_by_payment_ref(tx.conn(), tenant_id, payment_ref)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("top-up vanished")))?;
        return Ok((original, false));
    }
    let member = Address::member(member_id);
    let reference = topup.id.as_str();
    apply(
        tx,
        tenant_id,
        chain(vec![
            transfer(
                format!("{}:principal", topup.id),
                Address::system("cash_in"),
                member.clone(),
                Asset::WalletPrincipal,
                topup.pay,
                "wallet_topup",
                reference,
            ),
            transfer(
                format!("{}:bonus", topup.id),
                Address::system("issuance"),
                member,
                Asset::WalletBonus,
                topup.bonus,
                "wallet_topup_bonus",
                reference,
            ),
        ]),
    )
    .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "wallet.topped_up",
        Some(member_id.as_str()),
        json!({ "member_id": member_id, "topup_id": topup.id, "plan_id": topup.plan_id,
                "pay": topup.pay, "bonus": topup.bonus }),
    ));
    Ok((topup, true))
}

/// Top up a member's wallet by a plan. Idempotent on `payment_ref`: a repeat returns the
/// original top-up (201, same body) and credits nothing.
#[utoipa::path(post, path = "/v1/members/{id}/topups", tag = "membership",
    params(("id" = String, Path, description = "member id")), request_body = CreateTopup,
    responses((status = 201, body = Topup), (status = 404),
              (status = 409, description = "stored_value_cap_exceeded, plan_inactive, member_erased"),
              (status = 422)), security(("api_key" = [])))]
async fn create_topup(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<CreateTopup>,
) -> ApiResult<(StatusCode, Json<Topup>)> {
    let member_id = members::member_id(&id)?;
    let payment_ref = model::reference("payment_ref", &request.payment_ref)?;
    let plan_id = parse_id(PlanId::parse, &request.plan_id, "top-up plan")?;
    let mut tx = state.begin().await?;
    let (topup, _created) =
        topup_in(&mut tx, &auth.tenant_id, &member_id, &plan_id, &payment_ref).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(topup)))
}

/// Spend `amount` fen from a member's wallet inside `tx`, split by the tenant's policy.
/// Returns the spend and whether it was created now (`false`: the reference was already
/// used and the original spend is returned; nothing is debited again).
pub async fn spend_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    amount: i64,
    reference: &str,
) -> ApiResult<(Spend, bool)> {
    if !(1..=MAX_AMOUNT).contains(&amount) {
        return Err(ApiError::validation(
            "amount",
            "must be a positive number of fen",
        ));
    }
    members::store::require_active(tx.conn(), tenant_id, member_id).await?;
    store::lock_member(tx.conn(), tenant_id, member_id).await?;
    if let Some(original) = store::spend_by_reference(tx.conn(), tenant_id, reference).await? {
        return Ok((original, false));
    }
    let settings = store::settings(tx.conn(), tenant_id).await?;
    let (principal, bonus) = store::wallet_available(tx.conn(), tenant_id, member_id).await?;
    let split =
        rules::split_spend(settings.spend_policy, amount, principal, bonus).ok_or_else(|| {
            ApiError::conflict(
                codes::INSUFFICIENT_FUNDS,
                format!("the wallet holds less than {amount} fen"),
            )
            .with_details(json!({
                "amount": amount,
                "available": principal.max(0) + bonus.max(0),
            }))
        })?;
    let at = to_micros(tx.now());
    let spend = Spend {
        spend_id: SpendId::generate(),
        member_id: member_id.clone(),
        reference: reference.to_owned(),
        amount,
        principal: split.principal,
        bonus: split.bonus,
        created_at: micros_to_rfc3339(at),
    };
    if !store::insert_spend(tx.conn(), tenant_id, &spend, at).await? {
        let original = store::spend_by_reference(tx.conn(), tenant_id, reference)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("spend vanished")))?;
        return Ok((original, false));
    }
    let member = Address::member(member_id);
    let id = spend.spend_id.as_str();
    apply(
        tx,
        tenant_id,
        chain(vec![
            transfer(
                format!("{id}:principal"),
                member.clone(),
                Address::system("redemption"),
                Asset::WalletPrincipal,
                split.principal,
                "wallet_spend",
                reference,
            ),
            transfer(
                format!("{id}:bonus"),
                member,
                Address::system("redemption"),
                Asset::WalletBonus,
                split.bonus,
                "wallet_spend",
                reference,
            ),
        ]),
    )
    .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "wallet.spent",
        Some(member_id.as_str()),
        json!({ "member_id": member_id, "spend_id": spend.spend_id, "amount": amount,
                "principal": split.principal, "bonus": split.bonus }),
    ));
    Ok((spend, true))
}

/// Spend from a member's wallet (what orders paid by wallet do). Idempotent on `reference`:
/// a repeat returns the original spend. 409 `insufficient_funds` when principal + bonus do
/// not cover the amount.
#[utoipa::path(post, path = "/v1/members/{id}/wallet/spend", tag = "membership",
    params(("id" = String, Path, description = "member id")), request_body = SpendRequest,
    responses((status = 200, body = Spend), (status = 404),
              (status = 409, description = "insufficient_funds"), (status = 422)),
    security(("api_key" = [])))]
async fn spend_from_wallet(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<SpendRequest>,
) -> ApiResult<Json<Spend>> {
    let member_id = members::member_id(&id)?;
    let reference = model::reference("reference", &request.reference)?;
    let mut tx = state.begin().await?;
    let (spend, _created) = spend_in(
        &mut tx,
        &auth.tenant_id,
        &member_id,
        request.amount,
        &reference,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(spend))
}

/// Refund (part of) a spend inside `tx`: the amount goes back into the wallet in the spend's
/// own principal/bonus ratio. `amount` defaults to what is not refunded yet.
pub async fn refund_spend_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    spend_id: &SpendId,
    amount: Option<i64>,
    reference: Option<&str>,
) -> ApiResult<(Refund, bool)> {
    members::store::require_active(tx.conn(), tenant_id, member_id).await?;
    store::lock_member(tx.conn(), tenant_id, member_id).await?;
    if let Some(reference) = reference {
        if let Some(original) = store::refund_by_reference(tx.conn(), tenant_id, reference).await? {
            return Ok((original, false));
        }
    }
    let (amount, split) = spend_refund_split(tx, tenant_id, member_id, spend_id, amount).await?;
    let at = to_micros(tx.now());
    let refund = Refund {
        id: RefundId::generate(),
        member_id: member_id.clone(),
        kind: RefundKind::Spend,
        spend_id: Some(spend_id.to_string()),
        topup_id: None,
        reference: reference.map(str::to_owned),
        amount,
        principal: split.principal,
        bonus: split.bonus,
        created_at: micros_to_rfc3339(at),
    };
    if !store::insert_refund(tx.conn(), tenant_id, &refund, at).await? {
        let original = store::refund_by_reference(tx.conn(), tenant_id, reference.unwrap_or(""))
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("refund vanished")))?;
        return Ok((original, false));
    }
    return_to_wallet(tx, tenant_id, member_id, &refund.id, spend_id, split).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "wallet.refunded",
        Some(member_id.as_str()),
        json!({ "member_id": member_id, "refund_id": refund.id, "kind": "spend",
                "spend_id": spend_id, "amount": amount,
                "principal": split.principal, "bonus": split.bonus }),
    ));
    Ok((refund, true))
}

/// How much of the member's spend to refund (`amount`, or by default all that is not refunded
/// yet) and its principal/bonus split in the spend's own ratio ([`rules::split_spend_refund`]).
/// 404 for another member's spend; 422 for an amount below 1; 409 `refund_exceeds_spend` past
/// what is left.
async fn spend_refund_split(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    spend_id: &SpendId,
    amount: Option<i64>,
) -> ApiResult<(i64, Split)> {
    let spend = store::spend(tx.conn(), tenant_id, spend_id)
        .await?
        .filter(|s| s.member_id == *member_id)
        .ok_or_else(|| ApiError::not_found("spend"))?;
    let (refunded_principal, refunded_bonus) =
        store::refunded_of(tx.conn(), tenant_id, spend_id.as_str()).await?;
    let refunded = Split {
        principal: refunded_principal,
        bonus: refunded_bonus,
    };
    let remaining = spend.amount - refunded.principal - refunded.bonus;
    let amount = amount.unwrap_or(remaining);
    if amount < 1 && remaining > 0 {
        return Err(ApiError::validation(
            "amount",
            "must be a positive number of fen",
        ));
    }
    if amount > remaining || remaining <= 0 {
        return Err(ApiError::conflict(
            codes::REFUND_EXCEEDS_SPEND,
            format!("only {remaining} fen of this spend are left to refund"),
        )
        .with_details(json!({ "remaining": remaining.max(0) })));
    }
    let spent = Split {
        principal: spend.principal,
        bonus: spend.bonus,
    };
    Ok((
        amount,
        rules::split_spend_refund(spend.amount, spent, refunded, amount),
    ))
}

/// Move a spend refund back into the member's wallet from `system:redemption`: principal and
/// bonus as one linked chain, with ids derived from the refund.
async fn return_to_wallet(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    refund_id: &RefundId,
    spend_id: &SpendId,
    split: Split,
) -> ApiResult<()> {
    let member = Address::member(member_id);
    let id = refund_id.as_str();
    apply(
        tx,
        tenant_id,
        chain(vec![
            transfer(
                format!("{id}:principal"),
                Address::system("redemption"),
                member.clone(),
                Asset::WalletPrincipal,
                split.principal,
                "wallet_spend_refund",
                spend_id.as_str(),
            ),
            transfer(
                format!("{id}:bonus"),
                Address::system("redemption"),
                member,
                Asset::WalletBonus,
                split.bonus,
                "wallet_spend_refund",
                spend_id.as_str(),
            ),
        ]),
    )
    .await
}

/// Refund a whole top-up inside `tx`: its principal leaves the wallet for `system:refunds`
/// (to be paid back outside shequn) and its bonus, as much of it as is left, is clawed back
/// to `system:issuance`. Once per top-up: a repeat returns the original refund.
pub async fn refund_topup_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    topup_id: &TopupId,
) -> ApiResult<(Refund, bool)> {
    members::store::require_active(tx.conn(), tenant_id, member_id).await?;
    store::lock_member(tx.conn(), tenant_id, member_id).await?;
    let topup = store::topup(tx.conn(), tenant_id, topup_id)
        .await?
        .filter(|t| t.member_id == *member_id)
        .ok_or_else(|| ApiError::not_found("top-up"))?;
    if let Some(original) = store::topup_refund(tx.conn(), tenant_id, topup_id).await? {
        return Ok((original, false));
    }
    let (principal, bonus) = store::wallet_available(tx.conn(), tenant_id, member_id).await?;
    if principal < topup.pay {
        return Err(ApiError::conflict(
            codes::INSUFFICIENT_FUNDS,
            format!(
                "the wallet holds {principal} fen of principal but this top-up paid {} fen: \
                 some was spent; refund those spends first",
                topup.pay
            ),
        )
        .with_details(json!({ "principal": principal.max(0), "pay": topup.pay })));
    }
    let clawback = topup.bonus.min(bonus.max(0));
    let at = to_micros(tx.now());
    let refund = Refund {
        id: RefundId::generate(),
        member_id: member_id.clone(),
        kind: RefundKind::Topup,
        spend_id: None,
        topup_id: Some(topup_id.to_string()),
        reference: None,
        amount: topup.pay,
        principal: topup.pay,
        bonus: clawback,
        created_at: micros_to_rfc3339(at),
    };
    store::insert_refund(tx.conn(), tenant_id, &refund, at).await?;
    store::set_topup_status(tx.conn(), tenant_id, topup_id, TOPUP_REFUNDED).await?;
    let member = Address::member(member_id);
    // Ids derive from the top-up: a top-up is refunded at most once, whatever races.
    apply(
        tx,
        tenant_id,
        chain(vec![
            transfer(
                format!("{topup_id}:refund:principal"),
                member.clone(),
                Address::system("refunds"),
                Asset::WalletPrincipal,
                topup.pay,
                "wallet_topup_refund",
                topup_id.as_str(),
            ),
            transfer(
                format!("{topup_id}:refund:bonus"),
                member,
                Address::system("issuance"),
                Asset::WalletBonus,
                clawback,
                "wallet_bonus_clawback",
                topup_id.as_str(),
            ),
        ]),
    )
    .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "wallet.refunded",
        Some(member_id.as_str()),
        json!({ "member_id": member_id, "refund_id": refund.id, "kind": "topup",
                "topup_id": topup_id, "principal": topup.pay, "bonus_clawed_back": clawback }),
    ));
    Ok((refund, true))
}

/// Refund a spend (`spend_id`, optional `amount`, default the rest of it) back into the
/// wallet, or a whole top-up (`topup_id`: principal paid back, bonus clawed back). 201 with
/// the refund; a repeat of a top-up refund, or of a spend refund with the same `reference`,
/// returns the original refund.
#[utoipa::path(post, path = "/v1/members/{id}/wallet/refunds", tag = "membership",
    params(("id" = String, Path, description = "member id")), request_body = RefundRequest,
    responses((status = 201, body = Refund), (status = 404),
              (status = 409, description = "refund_exceeds_spend, insufficient_funds"),
              (status = 422)), security(("api_key" = [])))]
async fn refund(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<RefundRequest>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let member_id = members::member_id(&id)?;
    let reference = request
        .reference
        .as_deref()
        .map(|r| model::reference("reference", r))
        .transpose()?;
    if let Some(amount) = request.amount {
        if !(1..=MAX_AMOUNT).contains(&amount) {
            return Err(ApiError::validation(
                "amount",
                "must be a positive number of fen",
            ));
        }
    }
    let mut tx = state.begin().await?;
    let (refund, _created) = match (request.spend_id, request.topup_id) {
        (Some(spend_id), None) => {
            let spend_id = parse_id(SpendId::parse, &spend_id, "spend")?;
            refund_spend_in(
                &mut tx,
                &auth.tenant_id,
                &member_id,
                &spend_id,
                request.amount,
                reference.as_deref(),
            )
            .await?
        }
        (None, Some(topup_id)) => {
            if request.amount.is_some() {
                return Err(ApiError::validation(
                    "amount",
                    "a top-up refund always refunds the whole top-up",
                ));
            }
            if reference.is_some() {
                return Err(ApiError::validation(
                    "reference",
                    "a top-up refund is identified by its top-up",
                ));
            }
            let topup_id = parse_id(TopupId::parse, &topup_id, "top-up")?;
            refund_topup_in(&mut tx, &auth.tenant_id, &member_id, &topup_id).await?
        }
        _ => {
            return Err(ApiError::validation(
                "spend_id",
                "give exactly one of spend_id and topup_id",
            ))
        }
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// A member's wallet: principal, bonus, their total and the latest top-ups.
#[utoipa::path(get, path = "/v1/members/{id}/wallet", tag = "membership",
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = Wallet), (status = 404)), security(("api_key" = [])))]
async fn wallet(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Wallet>> {
    let member_id = members::member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &member_id).await?;
    let topups = store::member_topups(&mut conn, &auth.tenant_id, &member_id).await?;
    drop(conn);
    let balances = ledger::store::balances(
        state.db.read(),
        &auth.tenant_id,
        &Address::member(&member_id),
    )
    .await?;
    let of = |asset: Asset| {
        balances
            .iter()
            .find(|(a, _)| *a == asset)
            .map(|(_, b)| b.balance)
            .unwrap_or(0)
    };
    let principal = of(Asset::WalletPrincipal);
    let bonus = of(Asset::WalletBonus);
    Ok(Json(Wallet {
        principal,
        bonus,
        total: principal + bonus,
        topups,
    }))
}

/// The tenant's stored-value settings (default: proportional spending, cap ¥5,000).
#[utoipa::path(get, path = "/v1/program/stored-value", tag = "membership",
    responses((status = 200, body = Settings)), security(("api_key" = [])))]
async fn get_settings(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Settings>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(store::settings(&mut conn, &auth.tenant_id).await?))
}

/// Change the spend policy and the cap; absent fields keep their value.
#[utoipa::path(put, path = "/v1/program/stored-value", tag = "membership",
    request_body = UpdateSettings,
    responses((status = 200, body = Settings), (status = 422)), security(("api_key" = [])))]
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<UpdateSettings>,
) -> ApiResult<Json<Settings>> {
    let mut tx = state.begin().await?;
    let at = to_micros(tx.now());
    store::lock_settings(tx.conn(), &auth.tenant_id, at).await?;
    let current = store::settings(tx.conn(), &auth.tenant_id).await?;
    let settings = request.apply_to(current)?;
    store::save_settings(tx.conn(), &auth.tenant_id, &settings, at).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "program.stored_value_updated",
        None,
        json!({ "spend_policy": settings.spend_policy, "cap": settings.cap }),
    ));
    tx.commit().await?;
    Ok(Json(settings))
}
