//! Promoters (推广员): applying (free, always), approval, suspension, share codes, the binding
//! of customers, and each promoter's figures and commissions.
//!
//! A promoter's inviter is fixed when they apply and is the only upline ever paid (level 2).
//! A binding ties a customer to one promoter: under `first_touch` the first promoter keeps
//! the customer until the window ends (a later share code within it changes nothing); under
//! `last_touch` the latest share code wins and starts a new window. A promoter never binds
//! themselves.

use axum::extract::State;
use axum::http::StatusCode;
use jiff::SignedDuration;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::model::{Address, Asset};
use crate::members;
use crate::AppState;

use super::model::{
    Apply, Approval, Bind, BindingMode, BindingView, CommissionPage, CommissionStatus,
    CommissionTotals, PageQuery, PromoterDetail, PromoterPage, PromoterStatus, ShareCode,
};
use super::store::{self, StoredPromoter};
use super::{CommissionId, PromoterId, MAX_PAGE};

/// Length of a share code.
pub const CODE_LEN: usize = 10;
/// Crockford-style alphabet without 0, 1, I and O: 32 symbols, 5 random bits each (50 bits).
const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Attempts at a fresh code before giving up (a collision among 2^50 codes is rare).
const CODE_ATTEMPTS: usize = 8;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(apply, list_promoters))
        .routes(routes!(get_promoter))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(suspend))
        .routes(routes!(share_code))
        .routes(routes!(bind))
        .routes(routes!(member_promoter))
        .routes(routes!(commissions))
}

fn new_code() -> String {
    use rand::RngCore as _;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[(rng.next_u32() % 32) as usize]))
        .collect()
}

/// A promoter id from the path; a malformed one is simply not found.
pub fn promoter_id(text: &str) -> ApiResult<PromoterId> {
    PromoterId::parse(text).ok_or_else(|| ApiError::not_found("promoter"))
}

/// The tenant's promoter or 404 (another tenant's ids included).
pub async fn require(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    lock: bool,
) -> ApiResult<StoredPromoter> {
    let id = promoter_id(id)?;
    store::promoter(conn, tenant_id, id.as_str(), lock)
        .await?
        .ok_or_else(|| ApiError::not_found("promoter"))
}

fn event(tenant_id: &TenantId, kind: &'static str, promoter: &StoredPromoter) -> NewEvent {
    NewEvent::new(
        tenant_id,
        kind,
        Some(promoter.id.as_str()),
        json!({
            "promoter_id": promoter.id,
            "member_id": promoter.member_id,
            "invited_by_promoter_id": promoter.invited_by,
            "status": promoter.status,
        }),
    )
}

/// Apply to become a promoter: free, and nothing is paid for it (no commission exists for
/// recruiting). Approved at once under `approval: auto`, else `pending`. 409
/// `already_promoter`, 409 `distribution_disabled`; the inviter must be an approved promoter.
#[utoipa::path(post, path = "/v1/promoters", tag = "distribution", request_body = Apply,
    responses((status = 201, body = PromoterDetail), (status = 404), (status = 409),
              (status = 422)), security(("api_key" = [])))]
async fn apply(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<Apply>,
) -> ApiResult<(StatusCode, Json<PromoterDetail>)> {
    let member = members::member_id(&request.member_id)?;
    let mut tx = state.begin().await?;
    let tenant_id = &auth.tenant_id;
    members::store::require_active(tx.conn(), tenant_id, &member).await?;
    let settings = store::settings(tx.conn(), tenant_id).await?;
    if !settings.enabled {
        return Err(ApiError::conflict(
            codes::DISTRIBUTION_DISABLED,
            "distribution is not enabled for this tenant",
        ));
    }
    let invited_by = match &request.invited_by_promoter_id {
        None => None,
        Some(id) => {
            let inviter = PromoterId::parse(id).ok_or_else(|| {
                ApiError::validation("invited_by_promoter_id", "unknown promoter")
            })?;
            let inviter = store::promoter(tx.conn(), tenant_id, inviter.as_str(), false)
                .await?
                .ok_or_else(|| {
                    ApiError::validation("invited_by_promoter_id", "unknown promoter")
                })?;
            if inviter.status != PromoterStatus::Approved {
                return Err(ApiError::conflict(
                    codes::PROMOTER_NOT_ACTIVE,
                    "the inviting promoter is not approved",
                ));
            }
            if inviter.member_id == member {
                return Err(ApiError::validation(
                    "invited_by_promoter_id",
                    "a member cannot invite themselves",
                ));
            }
            Some(inviter.id)
        }
    };
    let now = to_micros(tx.now());
    let promoter = StoredPromoter {
        id: PromoterId::generate().as_str().to_owned(),
        member_id: member.clone(),
        invited_by,
        status: match settings.approval {
            Approval::Auto => PromoterStatus::Approved,
            Approval::Manual => PromoterStatus::Pending,
        },
        share_code: None,
        debt: 0,
        created_at: now,
        updated_at: now,
    };
    if !store::insert_promoter(tx.conn(), tenant_id, &promoter).await? {
        return Err(ApiError::conflict(
            codes::ALREADY_PROMOTER,
            "this member is a promoter already",
        ));
    }
    tx.emit(event(tenant_id, "promoter.applied", &promoter));
    if promoter.status == PromoterStatus::Approved {
        tx.emit(event(tenant_id, "promoter.approved", &promoter));
    }
    let detail = detail(&mut tx, tenant_id, promoter).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// A promoter with its figures (inside the caller's transaction).
async fn detail(
    tx: &mut Tx,
    tenant_id: &TenantId,
    promoter: StoredPromoter,
) -> ApiResult<PromoterDetail> {
    let now = to_micros(tx.now());
    detail_on(tx.conn(), tenant_id, promoter, now).await
}

/// A promoter with its figures, read on `conn` as of `now`.
async fn detail_on(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    promoter: StoredPromoter,
    now: i64,
) -> ApiResult<PromoterDetail> {
    let [team_size, customers, orders, gmv, pending, withdrawn] =
        store::promoter_stats(conn, tenant_id, &promoter.id, now).await?;
    let available = crate::ledger::store::available(
        conn,
        tenant_id,
        &Address::member(&promoter.member_id),
        Asset::Commission,
    )
    .await?;
    Ok(PromoterDetail {
        promoter: promoter.view(),
        team_size,
        customers,
        orders,
        gmv,
        commission: CommissionTotals {
            pending,
            available,
            withdrawn,
        },
    })
}

/// Promoters in id order, optionally of one `status`.
#[utoipa::path(get, path = "/v1/promoters", tag = "distribution", params(PageQuery),
    responses((status = 200, body = PromoterPage), (status = 422)), security(("api_key" = [])))]
async fn list_promoters(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<PromoterPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let status = PromoterStatus::query(query.status.as_deref())?;
    let cursor = pagination::cursor(query.cursor.as_deref(), PromoterId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut rows = store::list_promoters(
        &mut conn,
        &auth.tenant_id,
        status,
        cursor.as_ref().map(PromoterId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut rows, limit, |p| p.id.clone());
    Ok(Json(PromoterPage {
        data: rows.iter().map(StoredPromoter::view).collect(),
        next_cursor,
    }))
}

/// One promoter with `team_size`, `customers`, `orders`, `gmv` and `commission`
/// (`pending`, `available`, `withdrawn`).
#[utoipa::path(get, path = "/v1/promoters/{id}", tag = "distribution",
    params(("id" = String, Path, description = "promoter id")),
    responses((status = 200, body = PromoterDetail), (status = 404)), security(("api_key" = [])))]
async fn get_promoter(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PromoterDetail>> {
    // A read: the read pool, not a write transaction.
    let now = to_micros(state.clock.now());
    let mut conn = state.db.read().acquire().await?;
    let promoter = require(&mut conn, &auth.tenant_id, &id, false).await?;
    Ok(Json(
        detail_on(&mut conn, &auth.tenant_id, promoter, now).await?,
    ))
}

/// Move a promoter from one of `from` to `to`, with its event; 409
/// `invalid_promoter_transition` from any other state.
async fn transition(
    state: &AppState,
    kind: &'static str,
    auth: &Auth,
    id: &str,
    from: &[PromoterStatus],
    to: PromoterStatus,
) -> ApiResult<Json<PromoterDetail>> {
    let mut tx = state.begin().await?;
    let tenant_id = &auth.tenant_id;
    let mut promoter = require(tx.conn(), tenant_id, id, true).await?;
    let now = to_micros(tx.now());
    if !store::transition_promoter(tx.conn(), tenant_id, &promoter.id, from, to, now).await? {
        return Err(ApiError::conflict(
            codes::INVALID_PROMOTER_TRANSITION,
            format!(
                "a {} promoter cannot become {}",
                promoter.status.as_str(),
                to.as_str()
            ),
        )
        .with_details(json!({ "status": promoter.status })));
    }
    promoter.status = to;
    promoter.updated_at = now;
    tx.emit(NewEvent::new(
        tenant_id,
        kind,
        Some(promoter.id.as_str()),
        json!({
            "promoter_id": promoter.id,
            "member_id": promoter.member_id,
            "status": promoter.status,
        }),
    ));
    let detail = detail(&mut tx, tenant_id, promoter).await?;
    tx.commit().await?;
    Ok(Json(detail))
}

/// Approve a pending (or reinstate a suspended) promoter.
#[utoipa::path(post, path = "/v1/promoters/{id}/approve", tag = "distribution",
    params(("id" = String, Path, description = "promoter id")),
    responses((status = 200, body = PromoterDetail), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn approve(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PromoterDetail>> {
    let from = [PromoterStatus::Pending, PromoterStatus::Suspended];
    transition(
        &state,
        "promoter.approved",
        &auth,
        &id,
        &from,
        PromoterStatus::Approved,
    )
    .await
}

/// Reject a pending application.
#[utoipa::path(post, path = "/v1/promoters/{id}/reject", tag = "distribution",
    params(("id" = String, Path, description = "promoter id")),
    responses((status = 200, body = PromoterDetail), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn reject(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PromoterDetail>> {
    let from = [PromoterStatus::Pending];
    transition(
        &state,
        "promoter.rejected",
        &auth,
        &id,
        &from,
        PromoterStatus::Rejected,
    )
    .await
}

/// Suspend an approved promoter: they earn nothing new; what is pending stays pending.
#[utoipa::path(post, path = "/v1/promoters/{id}/suspend", tag = "distribution",
    params(("id" = String, Path, description = "promoter id")),
    responses((status = 200, body = PromoterDetail), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn suspend(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PromoterDetail>> {
    let from = [PromoterStatus::Approved];
    transition(
        &state,
        "promoter.suspended",
        &auth,
        &id,
        &from,
        PromoterStatus::Suspended,
    )
    .await
}

fn share_view(code: String) -> ShareCode {
    ShareCode {
        link: format!("/s/{code}"),
        code,
    }
}

/// The promoter's share code (made on first request, then stable). 409
/// `promoter_not_active` unless approved.
#[utoipa::path(post, path = "/v1/promoters/{id}/share-code", tag = "distribution",
    params(("id" = String, Path, description = "promoter id")),
    responses((status = 200, body = ShareCode), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn share_code(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ShareCode>> {
    let mut tx = state.begin().await?;
    let tenant_id = &auth.tenant_id;
    let promoter = require(tx.conn(), tenant_id, &id, true).await?;
    if promoter.status != PromoterStatus::Approved {
        return Err(ApiError::conflict(
            codes::PROMOTER_NOT_ACTIVE,
            "only an approved promoter shares a code",
        ));
    }
    if let Some(code) = promoter.share_code {
        tx.commit().await?;
        return Ok(Json(share_view(code)));
    }
    let now = to_micros(tx.now());
    for _ in 0..CODE_ATTEMPTS {
        let code = new_code();
        if store::promoter_by_code(tx.conn(), tenant_id, &code)
            .await?
            .is_some()
        {
            continue;
        }
        match store::set_share_code(tx.conn(), tenant_id, &promoter.id, &code, now).await {
            Ok(true) => {
                tx.commit().await?;
                return Ok(Json(share_view(code)));
            }
            Ok(false) => break,
            Err(e) if is_unique_violation(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "could not find a free share code"
    )))
}

fn binding_view(
    member_id: &str,
    mode: BindingMode,
    row: Option<(String, i64, Option<i64>)>,
    now: i64,
) -> BindingView {
    let active = row.filter(|(_, _, ends)| ends.is_none_or(|end| end > now));
    BindingView {
        member_id: member_id.to_owned(),
        promoter_id: active.as_ref().map(|(p, _, _)| p.clone()),
        bound_at: active.as_ref().map(|(_, at, _)| micros_to_rfc3339(*at)),
        ends_at: active.and_then(|(_, _, end)| end.map(micros_to_rfc3339)),
        mode,
    }
}

/// Bind a customer to the promoter whose share code they followed, under the binding mode and
/// window; answers with the binding now in force (under `first_touch` within the window, the
/// first promoter's). A promoter never binds themselves (422).
#[utoipa::path(post, path = "/v1/distribution/bindings", tag = "distribution",
    request_body = Bind,
    responses((status = 200, body = BindingView), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
async fn bind(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<Bind>,
) -> ApiResult<Json<BindingView>> {
    let member = members::member_id(&request.member_id)?;
    let code = request.share_code.trim().to_ascii_uppercase();
    if code.len() != CODE_LEN {
        return Err(ApiError::validation("share_code", "unknown share code"));
    }
    let mut tx = state.begin().await?;
    let tenant_id = &auth.tenant_id;
    members::store::require_active(tx.conn(), tenant_id, &member).await?;
    let settings = store::settings(tx.conn(), tenant_id).await?;
    let promoter = store::promoter_by_code(tx.conn(), tenant_id, &code)
        .await?
        .ok_or_else(|| ApiError::validation("share_code", "unknown share code"))?;
    if promoter.member_id == member {
        return Err(ApiError::validation(
            "member_id",
            "a promoter never binds themselves",
        ));
    }
    if promoter.status != PromoterStatus::Approved {
        return Err(ApiError::conflict(
            codes::PROMOTER_NOT_ACTIVE,
            "this share code's promoter is not approved",
        ));
    }
    let now = to_micros(tx.now());
    let current = store::binding(tx.conn(), tenant_id, &member, true).await?;
    let active = current
        .as_ref()
        .filter(|(_, _, ends)| ends.is_none_or(|end| end > now));
    let keep = match (settings.binding.mode, active) {
        (_, None) => false,
        (BindingMode::FirstTouch, Some(_)) => true,
        (BindingMode::LastTouch, Some(_)) => false,
    };
    let row = if keep {
        current
    } else {
        let ends_at = settings
            .binding
            .days
            .map(|days| to_micros(tx.now() + SignedDuration::from_hours(24 * days)));
        store::put_binding(tx.conn(), tenant_id, &member, &promoter.id, now, ends_at).await?;
        tx.emit(NewEvent::new(
            tenant_id,
            "promoter.customer_bound",
            Some(promoter.id.as_str()),
            json!({
                "promoter_id": promoter.id,
                "member_id": member,
                "previous_promoter_id": active.map(|(p, _, _)| p.clone()),
                "ends_at": ends_at.map(micros_to_rfc3339),
            }),
        ));
        Some((promoter.id.clone(), now, ends_at))
    };
    let view = binding_view(member.as_str(), settings.binding.mode, row, now);
    tx.commit().await?;
    Ok(Json(view))
}

/// The promoter a customer is bound to now and when that ends (`promoter_id` null when none).
#[utoipa::path(get, path = "/v1/members/{id}/promoter", tag = "distribution",
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = BindingView), (status = 404)), security(("api_key" = [])))]
async fn member_promoter(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BindingView>> {
    let member = members::member_id(&id)?;
    let now = to_micros(state.clock.now());
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &member).await?;
    let settings = store::settings(&mut conn, &auth.tenant_id).await?;
    let row = store::binding(&mut conn, &auth.tenant_id, &member, false).await?;
    Ok(Json(binding_view(
        member.as_str(),
        settings.binding.mode,
        row,
        now,
    )))
}

/// A promoter's commissions in id order: what each order and level owes now after refunds.
#[utoipa::path(get, path = "/v1/promoters/{id}/commissions", tag = "distribution",
    params(("id" = String, Path, description = "promoter id"), PageQuery),
    responses((status = 200, body = CommissionPage), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn commissions(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<CommissionPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let status = CommissionStatus::query(query.status.as_deref())?;
    let cursor = pagination::cursor(query.cursor.as_deref(), CommissionId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let promoter = require(&mut conn, &auth.tenant_id, &id, false).await?;
    let mut rows = store::list_commissions(
        &mut conn,
        &auth.tenant_id,
        &promoter.id,
        status,
        cursor.as_ref().map(CommissionId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut rows, limit, |c| c.id.clone());
    Ok(Json(CommissionPage {
        data: rows.iter().map(|c| c.view()).collect(),
        next_cursor,
    }))
}
