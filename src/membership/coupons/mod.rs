//! Coupons (优惠券): templates with a stock, a per-member limit and a validity; coupons claimed
//! by members or granted by other domains; redemption against an order and its reversal on
//! refund.
//!
//! - [`model`]: request and response types, validation at the edge, and the pure rules (the
//!   discount of an order, validity windows).
//! - [`store`]: the SQL.
//!
//! # Exactness without the batching executor
//!
//! DESIGN rule 5 sends contended paths such as one coupon's stock through a coalescing
//! executor. Coupons use a simpler mechanism that is just as exact (no over-issue, no member
//! beyond the limit) and needs no in-process queue, so it stays correct with several API nodes:
//! the order of statements inside one transaction, see [`grant`]. What it gives up is the
//! executor's throughput on one hot template (one row-lock hand-off per claim instead of per
//! batch); a flash-sale coupon drop that needs more can put a batching executor in front of
//! [`grant`] without changing its rules.
//!
//! 1. `UPDATE coupon_template SET issued = issued + 1 WHERE … AND issued < total_stock`. No row
//!    changed means the stock is gone (`out_of_stock`). On PostgreSQL this also takes the
//!    template's row lock until the transaction ends; a concurrent claim waits on it and then
//!    re-checks `issued < total_stock` against the committed row, so stock never goes over.
//!    SQLite has a single writer (`BEGIN IMMEDIATE`), which serializes the same way.
//! 2. With the template locked, count the member's coupons of this template. Every earlier
//!    claim of the template has committed or rolled back by now, and READ COMMITTED gives each
//!    statement a fresh snapshot, so the count is exact; at the limit the unit taken in step 1
//!    is given back and the answer is `limit_reached`.
//! 3. Insert the coupon and its `coupon.claimed` event; commit.
//!
//! Claims of one template therefore serialize on one row for the length of a short transaction;
//! claims of different templates do not touch each other. Redemption is a single conditional
//! `UPDATE coupon … WHERE status = 'active'`, so of concurrent redemptions exactly one changes
//! the row; unredemption likewise requires `status = 'redeemed'`.
//!
//! Expiry needs no scheduled job: a coupon past `valid_to` reads as `expired` (the status is
//! judged with the app clock on every read and redemption), and `status=expired` filters on
//! the window.

pub mod model;
pub mod store;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members;
use crate::tenants;
use crate::AppState;
use model::{
    discount_for, reference, window_position, ClaimRequest, Coupon, CouponId, CouponStatus,
    CouponTemplate, CouponTemplateId, CreateTemplate, NewTemplate, RedeemRequest, Redemption,
    UnredeemRequest, Validity, WindowPosition, MAX_MONEY,
};
use store::{NewCoupon, RedeemedOn};

/// Largest page of `GET /v1/coupon-templates` and `GET /v1/members/{id}/coupons`.
pub const MAX_PAGE: i64 = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template, list_templates))
        .routes(routes!(get_template))
        .routes(routes!(claim))
        .routes(routes!(get_coupon))
        .routes(routes!(redeem))
        .routes(routes!(unredeem))
        .routes(routes!(member_coupons))
}

fn template_id(text: &str) -> ApiResult<CouponTemplateId> {
    CouponTemplateId::parse(text).ok_or_else(|| ApiError::not_found("coupon template"))
}

fn coupon_id(text: &str) -> ApiResult<CouponId> {
    CouponId::parse(text).ok_or_else(|| ApiError::not_found("coupon"))
}

/// Issue one coupon of `template_id` to `member_id` inside the caller's transaction, under the
/// template's stock and per-member limit (see the module doc for why this is exact).
///
/// This is the entry point for other domains (birthday perks, referral rewards, lotteries):
/// `reason` says why the coupon was issued (`claim`, `birthday`, `referral:…`) and is kept on
/// the coupon and its `coupon.claimed` event. On error nothing of the grant remains in the
/// transaction, so the caller may go on (say, fall back to another prize) or roll back.
pub async fn grant(
    tx: &mut Tx,
    tenant_id: &TenantId,
    template_id: &CouponTemplateId,
    member_id: &MemberId,
    reason: &str,
) -> ApiResult<Coupon> {
    let reason = reference("reason", reason)?;
    let template = store::fetch_template(tx.conn(), tenant_id, template_id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon template"))?;
    members::store::require_active(tx.conn(), tenant_id, member_id).await?;
    let now = to_micros(tx.now());
    if let Validity::Window { to, .. } = template.validity {
        if now >= to {
            return Err(ApiError::conflict(
                codes::TEMPLATE_EXPIRED,
                "this template's validity window has ended",
            ));
        }
    }
    if !store::take_stock(tx.conn(), tenant_id, template_id).await? {
        return Err(ApiError::conflict(
            codes::OUT_OF_STOCK,
            "every coupon of this template has been issued",
        ));
    }
    let held = store::count_held(tx.conn(), tenant_id, template_id, member_id).await?;
    if held >= template.view.per_member_limit {
        store::return_stock(tx.conn(), tenant_id, template_id).await?;
        return Err(ApiError::conflict(
            codes::LIMIT_REACHED,
            format!(
                "this member already holds {held} {} of this template (limit {})",
                if held == 1 { "coupon" } else { "coupons" },
                template.view.per_member_limit
            ),
        )
        .with_details(json!({ "per_member_limit": template.view.per_member_limit })));
    }
    let id = CouponId::generate();
    let (valid_from, valid_to) = model::coupon_window(template.validity, now);
    store::insert_coupon(
        tx.conn(),
        tenant_id,
        &NewCoupon {
            id: &id,
            template_id,
            member_id,
            reason: &reason,
            valid_from,
            valid_to,
            claimed_at: now,
        },
    )
    .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "coupon.claimed",
        Some(member_id.as_str()),
        json!({
            "coupon_id": id, "template_id": template_id, "member_id": member_id,
            "reason": reason,
        }),
    ));
    let coupon = store::fetch_coupon(tx.conn(), tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("coupon vanished after insert")))?;
    Ok(coupon.view(now))
}

/// Create a coupon template.
#[utoipa::path(post, path = "/v1/coupon-templates", tag = "membership",
    request_body = CreateTemplate,
    responses((status = 201, body = CouponTemplate), (status = 422, description = "invalid field")),
    security(("api_key" = [])))]
async fn create_template(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateTemplate>,
) -> ApiResult<(StatusCode, Json<CouponTemplate>)> {
    let zone = tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let template = NewTemplate::from_request(request, &zone)?;
    let id = CouponTemplateId::generate();
    let mut tx = state.begin().await?;
    let at = to_micros(tx.now());
    store::insert_template(tx.conn(), &auth.tenant_id, &id, &template, at).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "coupon.template_created",
        Some(id.as_str()),
        json!({ "template_id": id, "kind": template.discount.kind(),
                "total_stock": template.total_stock }),
    ));
    let created = store::fetch_template(tx.conn(), &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("template vanished after insert")))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created.view)))
}

/// One coupon template, with its issued and remaining counts.
#[utoipa::path(get, path = "/v1/coupon-templates/{id}", tag = "membership",
    params(("id" = String, Path, description = "coupon template id")),
    responses((status = 200, body = CouponTemplate), (status = 404)), security(("api_key" = [])))]
async fn get_template(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<CouponTemplate>> {
    let id = template_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let template = store::fetch_template(&mut conn, &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon template"))?;
    Ok(Json(template.view))
}

pub use crate::common::pagination::PageQuery;

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplatePage {
    pub data: Vec<CouponTemplate>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Split one extra row off a page into its cursor.
fn paginate<T>(
    mut data: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let next = pagination::next_cursor(&mut data, limit, id);
    (data, next)
}

/// List coupon templates, oldest first, with cursor pagination.
#[utoipa::path(get, path = "/v1/coupon-templates", tag = "membership", params(PageQuery),
    responses((status = 200, body = TemplatePage)), security(("api_key" = [])))]
async fn list_templates(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<TemplatePage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), CouponTemplateId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let rows = store::list_templates(
        &mut conn,
        &auth.tenant_id,
        cursor.as_ref().map(CouponTemplateId::as_str),
        limit + 1,
    )
    .await?;
    let (data, next_cursor) = paginate(rows, limit, |t| t.id.to_string());
    Ok(Json(TemplatePage { data, next_cursor }))
}

/// Claim a coupon of a template for a member.
#[utoipa::path(post, path = "/v1/coupon-templates/{id}/claim", tag = "membership",
    request_body = ClaimRequest, params(("id" = String, Path, description = "coupon template id")),
    responses((status = 201, body = Coupon), (status = 404),
              (status = 409, description = "out_of_stock, limit_reached, member_erased or template_expired")),
    security(("api_key" = [])))]
async fn claim(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<ClaimRequest>,
) -> ApiResult<(StatusCode, Json<Coupon>)> {
    let template_id = template_id(&id)?;
    let member_id = members::member_id(&request.member_id)?;
    let mut tx = state.begin().await?;
    let coupon = grant(&mut tx, &auth.tenant_id, &template_id, &member_id, "claim").await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(coupon)))
}

/// One coupon.
#[utoipa::path(get, path = "/v1/coupons/{id}", tag = "membership",
    params(("id" = String, Path, description = "coupon id")),
    responses((status = 200, body = Coupon), (status = 404)), security(("api_key" = [])))]
async fn get_coupon(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Coupon>> {
    let id = coupon_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let coupon = store::fetch_coupon(&mut conn, &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon"))?;
    Ok(Json(coupon.view(to_micros(state.clock.now()))))
}

/// Redeem a coupon against an order: returns the discount in fen.
#[utoipa::path(post, path = "/v1/coupons/{id}/redeem", tag = "membership",
    request_body = RedeemRequest, params(("id" = String, Path, description = "coupon id")),
    responses((status = 200, body = Redemption), (status = 404),
              (status = 409, description = "already_redeemed or coupon_expired"),
              (status = 422, description = "min_spend_not_met or invalid field")),
    security(("api_key" = [])))]
async fn redeem(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<RedeemRequest>,
) -> ApiResult<Json<Redemption>> {
    let id = coupon_id(&id)?;
    let order_ref = reference("order_ref", &request.order_ref)?;
    if !(0..=MAX_MONEY).contains(&request.order_amount) {
        return Err(ApiError::validation(
            "order_amount",
            format!("must be an amount in fen between 0 and {MAX_MONEY}"),
        ));
    }
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    let (_, discount) = redeem_in(
        &mut tx,
        &auth.tenant_id,
        &id,
        None,
        &order_ref,
        request.order_amount,
    )
    .await?;
    let coupon = store::fetch_coupon(tx.conn(), &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon"))?;
    tx.commit().await?;
    Ok(Json(Redemption {
        discount,
        coupon: coupon.view(now),
    }))
}

/// Redeem a coupon on an order inside `tx`: checks its window and the template's minimum
/// spend, marks it redeemed (exactly once under concurrency) and emits `coupon.redeemed`.
/// With `owner`, the coupon must belong to that member (orders); returns the coupon as it was
/// and the discount.
pub async fn redeem_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &CouponId,
    owner: Option<&MemberId>,
    order_ref: &str,
    order_amount: i64,
) -> ApiResult<(store::StoredCoupon, i64)> {
    let now = to_micros(tx.now());
    let coupon = store::fetch_coupon(tx.conn(), tenant_id, id)
        .await?
        .filter(|c| owner.is_none_or(|m| *m == c.member_id))
        .ok_or_else(|| ApiError::not_found("coupon"))?;
    if coupon.status == CouponStatus::Redeemed {
        return Err(already_redeemed());
    }
    let position = window_position(coupon.valid_from, coupon.valid_to, now);
    if coupon.status == CouponStatus::Expired || position == WindowPosition::Expired {
        return Err(ApiError::conflict(
            codes::COUPON_EXPIRED,
            format!(
                "this coupon expired at {}",
                micros_to_rfc3339(coupon.valid_to)
            ),
        ));
    }
    if position == WindowPosition::NotYetValid {
        return Err(ApiError::conflict(
            codes::COUPON_EXPIRED,
            format!(
                "this coupon is not valid before {}",
                micros_to_rfc3339(coupon.valid_from)
            ),
        ));
    }
    let template = store::fetch_template(tx.conn(), tenant_id, &coupon.template_id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("coupon without its template")))?;
    let rules = &template.view;
    let discount = discount_for(
        rules.discount(),
        rules.max_discount,
        rules.min_spend,
        order_amount,
    )
    .ok_or_else(|| {
        ApiError::coded(
            codes::MIN_SPEND_NOT_MET,
            format!(
                "this coupon needs an order of at least {} fen",
                rules.min_spend
            ),
        )
        .with_details(json!({ "field": "order_amount", "min_spend": rules.min_spend }))
    })?;
    let redeemed = RedeemedOn {
        order_ref,
        order_amount,
        discount,
        at: now,
    };
    if !store::mark_redeemed(tx.conn(), tenant_id, id, &redeemed).await? {
        return Err(already_redeemed());
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "coupon.redeemed",
        Some(coupon.member_id.as_str()),
        json!({
            "coupon_id": id, "template_id": coupon.template_id, "member_id": coupon.member_id,
            "order_ref": order_ref, "order_amount": order_amount, "discount": discount,
        }),
    ));
    Ok((coupon, discount))
}

/// Undo a redemption inside `tx` (an order was cancelled or refunded): `active` again while
/// its window lasts, `expired` otherwise; emits `coupon.unredeemed`. 409 when not redeemed.
pub async fn unredeem_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    coupon: &store::StoredCoupon,
) -> ApiResult<CouponStatus> {
    let now = to_micros(tx.now());
    let status = if now < coupon.valid_to {
        CouponStatus::Active
    } else {
        CouponStatus::Expired
    };
    if !store::mark_unredeemed(tx.conn(), tenant_id, &coupon.id, status, now).await? {
        return Err(not_redeemed());
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "coupon.unredeemed",
        Some(coupon.member_id.as_str()),
        json!({
            "coupon_id": coupon.id, "template_id": coupon.template_id,
            "member_id": coupon.member_id, "order_ref": coupon.order_ref,
            "discount": coupon.discount, "status": status,
        }),
    ));
    Ok(status)
}

fn already_redeemed() -> ApiError {
    ApiError::conflict(
        codes::ALREADY_REDEEMED,
        "this coupon has already been redeemed",
    )
}

/// Undo a redemption (the order was refunded): the coupon is `active` again while its window
/// lasts, `expired` otherwise. The body is optional; an `order_ref` in it must match.
#[utoipa::path(post, path = "/v1/coupons/{id}/unredeem", tag = "membership",
    request_body(content = Option<UnredeemRequest>),
    params(("id" = String, Path, description = "coupon id")),
    responses((status = 200, body = Coupon), (status = 404),
              (status = 409, description = "not_redeemed or order_mismatch")),
    security(("api_key" = [])))]
async fn unredeem(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Coupon>> {
    let id = coupon_id(&id)?;
    let request: UnredeemRequest = if body.iter().all(u8::is_ascii_whitespace) {
        UnredeemRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid_request(format!("malformed JSON: {e}")))?
    };
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    let coupon = store::fetch_coupon(tx.conn(), &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon"))?;
    if coupon.status != CouponStatus::Redeemed {
        return Err(not_redeemed());
    }
    if let Some(order_ref) = &request.order_ref {
        if coupon.order_ref.as_deref() != Some(order_ref.trim()) {
            return Err(ApiError::conflict(
                codes::ORDER_MISMATCH,
                "this coupon was redeemed on another order",
            )
            .with_details(json!({ "field": "order_ref" })));
        }
    }
    unredeem_in(&mut tx, &auth.tenant_id, &coupon).await?;
    let coupon = store::fetch_coupon(tx.conn(), &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon"))?;
    tx.commit().await?;
    Ok(Json(coupon.view(now)))
}

fn not_redeemed() -> ApiError {
    ApiError::conflict(codes::NOT_REDEEMED, "this coupon is not redeemed")
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MemberCouponsQuery {
    /// `active`, `redeemed` or `expired`.
    pub status: Option<String>,
    /// 1 to 200, default 100.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CouponPage {
    pub data: Vec<Coupon>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A member's coupons, oldest first, optionally of one status.
#[utoipa::path(get, path = "/v1/members/{id}/coupons", tag = "membership",
    params(("id" = String, Path, description = "member id"), MemberCouponsQuery),
    responses((status = 200, body = CouponPage), (status = 404)), security(("api_key" = [])))]
async fn member_coupons(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<MemberCouponsQuery>,
) -> ApiResult<Json<CouponPage>> {
    let member_id = members::member_id(&id)?;
    // `?status=` with no value means no filter.
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s| {
            CouponStatus::parse(&s).ok_or_else(|| {
                ApiError::validation("status", "must be active, redeemed or expired")
            })
        })
        .transpose()?;
    let limit = pagination::limit(query.limit, 100, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), CouponId::parse)?;
    let now = to_micros(state.clock.now());
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &member_id).await?;
    let rows = store::list_member_coupons(
        &mut conn,
        &auth.tenant_id,
        &member_id,
        status,
        now,
        cursor.as_ref().map(CouponId::as_str),
        limit + 1,
    )
    .await?;
    let (rows, next_cursor) = paginate(rows, limit, |c| c.id.to_string());
    Ok(Json(CouponPage {
        data: rows.iter().map(|c| c.view(now)).collect(),
        next_cursor,
    }))
}
