//! Merchant alliance (商家联盟): tenants that share customers cooperate without giving up
//! their separation. A cafe hands out the bakery's coupon; the bakery owes the cafe a fee when
//! the customer it sent pays for a first order; the alliance keeps the account.
//!
//! | part | what it holds |
//! | --- | --- |
//! | this file | the routes, the one partnership check, the order and member hooks |
//! | [`claims`] | claiming an offer: stock, the customer found or created at the issuer, the coupon |
//! | [`fees`] | the referral fee on a first paid order and its void on a full refund |
//! | [`rules`] | pure rules: the fee, the opaque customer id, a statement's month |
//! | [`model`] | requests, responses and states |
//! | [`store`] | the SQL |
//!
//! **The one deliberate exception to DESIGN rule 9.** Everywhere else the tenant comes from
//! the credential and every read is scoped by it. An alliance spans tenants, so this module
//! reads and writes rows of several tenants: the issuer's member and coupon when a partner's
//! member claims an offer, the issuer's and referrer's ledger accounts when an order is paid.
//! Every route goes through [`partnership`] first: the caller's tenant (from its credential)
//! must be a partner of the alliance in the path, or the alliance is 404, exactly as if it did
//! not exist. Ids in the request (offers, partners, members) are then looked up inside that
//! alliance, or inside the caller's own tenant (its member, its coupon template), never in
//! another tenant by the caller's say-so. No other module reads another tenant's rows.
//!
//! **Privacy (PIPL Art. 23).** Partners see each other's display names, offers, balances and
//! ledger entries, never each other's members. A member is shared with a partner only when it
//! claims that partner's offer: the claim is the separate consent, recorded with its time, and
//! shares the name and phone the issuer needs to find or create its own member (source
//! `alliance`). The alliance ledger names customers by an opaque id (an HMAC under a key that
//! never leaves the server), which no partner can turn back into a member or a phone number.
//! Erasing a member clears the alliance's links to it and stops fees not yet earned; the
//! entries keep only opaque ids, so the balances do not move.
//!
//! **The ledger.** The alliance has its own double-entry ledger (`alliance_entry`), not the
//! tenant ledger of `crate::ledger`, whose accounts and balances are per tenant: each entry
//! moves fen from one partner's account (debit: who owes) to another's (credit: who is owed),
//! so the balances, sums read in one query, always total zero. Entries are never changed: a
//! voided fee is reversed by a `fee_void` entry; a payment made outside shequn is recorded as a
//! `settlement` entry from the payer's side.

pub mod claims;
pub mod fees;
pub mod links;
pub mod model;
pub mod rules;
pub mod statements;
pub mod store;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::SignedDuration;
use rand::RngCore as _;
use serde_json::json;
use sqlx::AnyConnection;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::Path;
use crate::common::hooks::{MemberErased, MemberHooks, OrderHooks, OrderPaid, OrderRefunded};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::membership::coupons::model::CouponTemplateId;
use crate::AppState;
use model::{
    Alliance, AllianceBalances, AllianceInvitation, AllianceList, AllianceOffer, CreateAlliance,
    CreateInvitation, CreateOffer, JoinAlliance, OfferList, OfferStatus, PartnerBalance,
    PartnerStatus, RecordSettlement, MAX_NAME_LEN, MAX_REFERENCE_LEN, MAX_SETTLEMENT, MAX_STOCK,
};
use store::{StoredAlliance, StoredOffer, StoredPartner};

crate::typed_id!(AllianceId, "aln");
crate::typed_id!(PartnerId, "apt");
crate::typed_id!(OfferId, "aof");
crate::typed_id!(ClaimId, "acl");
crate::typed_id!(EntryId, "aen");

/// Most alliances listed for one tenant, and most offers listed for one alliance.
pub const MAX_LIST: i64 = 200;
/// Longest invitation lifetime, and the default.
pub const MAX_INVITATION_HOURS: i64 = 720;
pub const DEFAULT_INVITATION_HOURS: i64 = 168;
/// Longest invitation code accepted (codes are 24 characters).
const MAX_CODE_LEN: usize = 64;

/// Every alliance route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_alliance, list_alliances))
        .routes(routes!(get_alliance))
        .routes(routes!(invite))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(create_offer, list_offers))
        .routes(routes!(withdraw_offer))
        .routes(routes!(claims::claim))
        .routes(routes!(links::create_link, links::list_links))
        .routes(routes!(links::revoke_link))
        .routes(routes!(links::record_referral))
        .routes(routes!(balances))
        .routes(routes!(statements::statement))
        .routes(routes!(record_settlement))
}

/// The alliance's reactions to orders and members (DESIGN rule 12), registered by
/// `server::hooks`.
pub struct AllianceHooks;

#[async_trait]
impl OrderHooks for AllianceHooks {
    async fn on_paid(&self, tx: &mut Tx, order: &OrderPaid<'_>) -> ApiResult<()> {
        fees::on_order_paid(tx, order).await
    }

    async fn on_refunded(&self, tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
        fees::on_order_refunded(tx, refund).await
    }
}

#[async_trait]
impl MemberHooks for AllianceHooks {
    async fn on_erased(&self, tx: &mut Tx, member: &MemberErased<'_>) -> ApiResult<()> {
        let at = to_micros(tx.now());
        store::erase_member(
            tx.conn(),
            member.tenant_id.as_str(),
            member.member_id.as_str(),
            at,
        )
        .await
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("alliance")
}

/// The one check of every alliance route: the alliance and the caller's partner in it, or 404
/// when the caller's tenant is not (and never was) a partner. A partner that left still reads
/// its balances and statements and records settlements (what is owed stays owed).
pub async fn partnership(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    alliance_id: &str,
) -> ApiResult<(StoredAlliance, StoredPartner)> {
    let id = AllianceId::parse(alliance_id).ok_or_else(not_found)?;
    let me = store::partner_of_tenant(conn, id.as_str(), tenant_id.as_str())
        .await?
        .ok_or_else(not_found)?;
    let alliance = store::alliance(conn, id.as_str())
        .await?
        .ok_or_else(not_found)?;
    Ok((alliance, me))
}

/// [`partnership`] for a change that only an active partner may make.
pub async fn active_partnership(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    alliance_id: &str,
) -> ApiResult<(StoredAlliance, StoredPartner)> {
    let (alliance, me) = partnership(conn, tenant_id, alliance_id).await?;
    if me.status != PartnerStatus::Active {
        return Err(partner_not_active());
    }
    Ok((alliance, me))
}

fn partner_not_active() -> ApiError {
    ApiError::conflict(
        codes::PARTNER_NOT_ACTIVE,
        "the caller's tenant has left this alliance",
    )
}

/// Another partner of the alliance by id (404 when it is not one).
async fn other_partner(
    conn: &mut AnyConnection,
    alliance_id: &str,
    field: &str,
    partner_id: &str,
) -> ApiResult<StoredPartner> {
    let missing = || ApiError::not_found("partner").with_details(json!({ "field": field }));
    let id = PartnerId::parse(partner_id).ok_or_else(missing)?;
    store::partner(conn, alliance_id, id.as_str())
        .await?
        .ok_or_else(missing)
}

fn view(alliance: &StoredAlliance, partners: &[StoredPartner], me: &StoredPartner) -> Alliance {
    Alliance {
        id: alliance.id.clone(),
        name: alliance.name.clone(),
        rules: alliance.rules,
        founder_partner_id: alliance.founder_partner_id.clone(),
        my_partner_id: me.id.clone(),
        partners: partners.iter().map(StoredPartner::view).collect(),
        created_at: micros_to_rfc3339(alliance.created_at),
    }
}

async fn load_view(
    conn: &mut AnyConnection,
    alliance: &StoredAlliance,
    me: &StoredPartner,
) -> ApiResult<Alliance> {
    let partners = store::partners(conn, &alliance.id).await?;
    Ok(view(alliance, &partners, me))
}

/// The display name: as given, or the tenant's name.
async fn display_name(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    given: Option<&str>,
) -> ApiResult<String> {
    if let Some(given) = given {
        return text::required("display_name", given, MAX_NAME_LEN);
    }
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM tenant WHERE id = $1")
        .bind(tenant_id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(name.unwrap_or_else(|| "merchant".to_owned()))
}

/// Create an alliance; the caller's tenant is its founder and first partner.
#[utoipa::path(post, path = "/v1/alliances", tag = "alliance", request_body = CreateAlliance,
    responses((status = 201, body = Alliance), (status = 422)), security(("api_key" = [])))]
async fn create_alliance(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateAlliance>,
) -> ApiResult<(StatusCode, Json<Alliance>)> {
    let name = text::required("name", &request.name, MAX_NAME_LEN)?;
    request.rules.check()?;
    let zone = crate::tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    let partner_name =
        display_name(tx.conn(), &auth.tenant_id, request.display_name.as_deref()).await?;
    let me = StoredPartner {
        id: PartnerId::generate().as_str().to_owned(),
        tenant_id: auth.tenant_id.as_str().to_owned(),
        name: partner_name,
        status: PartnerStatus::Active,
        joined_at: now,
        left_at: None,
    };
    let alliance = StoredAlliance {
        id: AllianceId::generate().as_str().to_owned(),
        name,
        rules: request.rules,
        timezone: zone.iana_name().unwrap_or("Asia/Shanghai").to_owned(),
        customer_key: rules::new_customer_key(),
        founder_partner_id: me.id.clone(),
        created_at: now,
    };
    store::insert_alliance(tx.conn(), &alliance).await?;
    store::insert_partner(tx.conn(), &alliance.id, &me).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.created",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "partner_id": me.id, "name": alliance.name }),
    ));
    let created = view(&alliance, std::slice::from_ref(&me), &me);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The alliances the caller's tenant is or was a partner of, newest first (at most 200).
#[utoipa::path(get, path = "/v1/alliances", tag = "alliance",
    responses((status = 200, body = AllianceList)), security(("api_key" = [])))]
async fn list_alliances(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<AllianceList>> {
    let mut conn = state.db.read().acquire().await?;
    let ids = store::alliances_of_tenant(&mut conn, auth.tenant_id.as_str(), MAX_LIST).await?;
    let mut data = Vec::with_capacity(ids.len());
    for id in ids {
        let (alliance, me) = partnership(&mut conn, &auth.tenant_id, &id).await?;
        data.push(load_view(&mut conn, &alliance, &me).await?);
    }
    Ok(Json(AllianceList { data }))
}

/// One alliance with its partners (by display name only).
#[utoipa::path(get, path = "/v1/alliances/{id}", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    responses((status = 200, body = Alliance), (status = 404)), security(("api_key" = [])))]
async fn get_alliance(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Alliance>> {
    let mut conn = state.db.read().acquire().await?;
    let (alliance, me) = partnership(&mut conn, &auth.tenant_id, &id).await?;
    Ok(Json(load_view(&mut conn, &alliance, &me).await?))
}

/// A one-time invitation code for another tenant (`expires_in_hours`: default 168, at most
/// 720). 409 `partner_not_active` when the caller left.
#[utoipa::path(post, path = "/v1/alliances/{id}/invitations", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    request_body(content = Option<CreateInvitation>),
    responses((status = 201, body = AllianceInvitation), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
async fn invite(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<AllianceInvitation>)> {
    let request: CreateInvitation = if body.iter().all(u8::is_ascii_whitespace) {
        CreateInvitation::default()
    } else {
        crate::common::json::from_slice(&body)?
    };
    let hours = request.expires_in_hours.unwrap_or(DEFAULT_INVITATION_HOURS);
    if !(1..=MAX_INVITATION_HOURS).contains(&hours) {
        return Err(ApiError::validation(
            "expires_in_hours",
            format!("must be 1 to {MAX_INVITATION_HOURS}"),
        ));
    }
    let mut tx = state.begin().await?;
    let (alliance, me) = active_partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    let code = hex::encode(bytes);
    let now = tx.now();
    let expires_at = to_micros(now + SignedDuration::from_hours(hours));
    store::insert_invitation(
        tx.conn(),
        &code,
        &alliance.id,
        &me.id,
        expires_at,
        to_micros(now),
    )
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.invitation_created",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "expires_at": micros_to_rfc3339(expires_at) }),
    ));
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AllianceInvitation {
            code,
            expires_at: micros_to_rfc3339(expires_at),
        }),
    ))
}

/// Join an alliance with an invitation code: 404 for an unknown code, 409
/// `invitation_used`, `invitation_expired`, `already_partner`.
#[utoipa::path(post, path = "/v1/alliances/join", tag = "alliance", request_body = JoinAlliance,
    responses((status = 201, body = Alliance), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
async fn join(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<JoinAlliance>,
) -> ApiResult<(StatusCode, Json<Alliance>)> {
    let code = request.code.trim();
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(ApiError::not_found("invitation"));
    }
    let mut tx = state.begin().await?;
    let (alliance_id, expires_at, used) = store::invitation(tx.conn(), code)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let now = to_micros(tx.now());
    if used {
        return Err(ApiError::conflict(
            codes::INVITATION_USED,
            "this invitation was used already",
        ));
    }
    if now >= expires_at {
        return Err(ApiError::conflict(
            codes::INVITATION_EXPIRED,
            "this invitation has expired",
        ));
    }
    if store::partner_of_tenant(tx.conn(), &alliance_id, auth.tenant_id.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            codes::ALREADY_PARTNER,
            "the caller's tenant is or was a partner of this alliance",
        ));
    }
    let alliance = store::alliance(tx.conn(), &alliance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let name = display_name(tx.conn(), &auth.tenant_id, request.display_name.as_deref()).await?;
    let me = StoredPartner {
        id: PartnerId::generate().as_str().to_owned(),
        tenant_id: auth.tenant_id.as_str().to_owned(),
        name,
        status: PartnerStatus::Active,
        joined_at: now,
        left_at: None,
    };
    if !store::use_invitation(tx.conn(), code, &me.id, now).await? {
        return Err(ApiError::conflict(
            codes::INVITATION_USED,
            "this invitation was used already",
        ));
    }
    store::insert_partner(tx.conn(), &alliance.id, &me).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.joined",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "partner_id": me.id, "name": me.name }),
    ));
    let joined = load_view(tx.conn(), &alliance, &me).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(joined)))
}

/// Leave the alliance: the caller's offers close, no new fees arise for or against it, and
/// what it is owed or owes stays in the balances until settled. 409 `partner_not_active` when
/// it left already.
#[utoipa::path(post, path = "/v1/alliances/{id}/leave", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    responses((status = 200, body = Alliance), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn leave(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Alliance>> {
    let mut tx = state.begin().await?;
    let (alliance, mut me) = active_partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let now = to_micros(tx.now());
    if !store::leave(tx.conn(), &alliance.id, &me.id, now).await? {
        return Err(partner_not_active());
    }
    me.status = PartnerStatus::Left;
    me.left_at = Some(now);
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.left",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "partner_id": me.id }),
    ));
    let left = load_view(tx.conn(), &alliance, &me).await?;
    tx.commit().await?;
    Ok(Json(left))
}

/// Offer one of the caller's coupon templates to the alliance's partners, `stock` coupons at
/// most (the template's own stock and per-member limit apply too).
#[utoipa::path(post, path = "/v1/alliances/{id}/offers", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")), request_body = CreateOffer,
    responses((status = 201, body = AllianceOffer), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
async fn create_offer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<CreateOffer>,
) -> ApiResult<(StatusCode, Json<AllianceOffer>)> {
    if !(1..=MAX_STOCK).contains(&request.stock) {
        return Err(ApiError::validation(
            "stock",
            format!("must be 1 to {MAX_STOCK}"),
        ));
    }
    let mut tx = state.begin().await?;
    let (alliance, me) = active_partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let template_id = CouponTemplateId::parse(&request.coupon_template_id)
        .ok_or_else(|| ApiError::not_found("coupon template"))?;
    // The template is looked up in the caller's own tenant only.
    crate::membership::coupons::store::fetch_template(tx.conn(), &auth.tenant_id, &template_id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon template"))?;
    let offer = StoredOffer {
        id: OfferId::generate().as_str().to_owned(),
        partner_id: me.id.clone(),
        coupon_template_id: template_id.as_str().to_owned(),
        stock: request.stock,
        remaining: request.stock,
        status: OfferStatus::Open,
        created_at: to_micros(tx.now()),
    };
    store::insert_offer(tx.conn(), &alliance.id, &offer).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.offer_created",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "offer_id": offer.id,
                "coupon_template_id": offer.coupon_template_id, "stock": offer.stock }),
    ));
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(offer.view(&me.name, &me.id))))
}

/// The alliance's offers, newest first (at most 200).
#[utoipa::path(get, path = "/v1/alliances/{id}/offers", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    responses((status = 200, body = OfferList), (status = 404)), security(("api_key" = [])))]
async fn list_offers(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<OfferList>> {
    let mut conn = state.db.read().acquire().await?;
    let (alliance, me) = partnership(&mut conn, &auth.tenant_id, &id).await?;
    let partners = store::partners(&mut conn, &alliance.id).await?;
    let offers = store::offers(&mut conn, &alliance.id, MAX_LIST).await?;
    let data = offers
        .iter()
        .map(|offer| {
            let name = partners
                .iter()
                .find(|p| p.id == offer.partner_id)
                .map_or("", |p| p.name.as_str());
            offer.view(name, &me.id)
        })
        .collect();
    Ok(Json(OfferList { data }))
}

/// Withdraw one of the caller's offers: no new claims (409 `offer_withdrawn`), while coupons
/// claimed before stay valid at the caller. Another partner's offer is 404 (as an offer of
/// another alliance is): only the issuer may withdraw. Withdrawing again answers the withdrawn
/// offer; an offer closed when its partner left is 409 `offer_closed`.
#[utoipa::path(post, path = "/v1/alliances/{id}/offers/{offer_id}/withdraw", tag = "alliance",
    params(("id" = String, Path, description = "alliance id"),
           ("offer_id" = String, Path, description = "offer id")),
    responses((status = 200, body = AllianceOffer), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn withdraw_offer(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, offer_id)): Path<(String, String)>,
) -> ApiResult<Json<AllianceOffer>> {
    let mut tx = state.begin().await?;
    let (alliance, me) = active_partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let missing = || ApiError::not_found("offer");
    let offer_id = OfferId::parse(&offer_id).ok_or_else(missing)?;
    let mut offer = store::offer(tx.conn(), &alliance.id, offer_id.as_str())
        .await?
        .filter(|offer| offer.partner_id == me.id)
        .ok_or_else(missing)?;
    match offer.status {
        OfferStatus::Withdrawn => {}
        OfferStatus::Closed => {
            return Err(ApiError::conflict(
                codes::OFFER_CLOSED,
                "this offer is closed: its partner left the alliance",
            ))
        }
        OfferStatus::Open => {
            let now = to_micros(tx.now());
            if store::withdraw_offer(tx.conn(), &alliance.id, &offer.id, now).await? {
                tx.emit(NewEvent::new(
                    &auth.tenant_id,
                    "alliance.offer_withdrawn",
                    Some(alliance.id.as_str()),
                    json!({ "alliance_id": alliance.id, "offer_id": offer.id }),
                ));
            }
            offer = store::offer(tx.conn(), &alliance.id, &offer.id)
                .await?
                .ok_or_else(missing)?;
        }
    }
    tx.commit().await?;
    Ok(Json(offer.view(&me.name, &me.id)))
}

/// Each partner's balance, counted from every entry at once.
pub async fn partner_balances(
    conn: &mut AnyConnection,
    alliance_id: &str,
    range: Option<(i64, i64)>,
) -> ApiResult<Vec<PartnerBalance>> {
    let partners = store::partners(conn, alliance_id).await?;
    let totals = store::totals(conn, alliance_id, range).await?;
    Ok(totals
        .into_iter()
        .map(|(partner_id, totals)| PartnerBalance {
            name: partners
                .iter()
                .find(|p| p.id == partner_id)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            partner_id,
            owed: totals.owed,
            owes: totals.owes,
            net: totals.net(),
        })
        .collect())
}

/// Every partner's balance in fen: `owed` (credited: fees earned, settlements paid), `owes`
/// (debited: fees owed, settlements received), `net` = owed − owes. The nets sum to zero.
#[utoipa::path(get, path = "/v1/alliances/{id}/balances", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    responses((status = 200, body = AllianceBalances), (status = 404)), security(("api_key" = [])))]
async fn balances(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AllianceBalances>> {
    let mut conn = state.db.read().acquire().await?;
    let (alliance, _) = partnership(&mut conn, &auth.tenant_id, &id).await?;
    let partners = partner_balances(&mut conn, &alliance.id, None).await?;
    Ok(Json(AllianceBalances { partners }))
}

/// Record a payment made outside shequn from partner `from` to partner `to`; the caller must
/// be one of them. 422 `settlement_exceeds_balance` when `from` does not owe `to` that much
/// (their entries between the two of them, net).
#[utoipa::path(post, path = "/v1/alliances/{id}/settlements", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")), request_body = RecordSettlement,
    responses((status = 201, body = model::AllianceEntry), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn record_settlement(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<RecordSettlement>,
) -> ApiResult<(StatusCode, Json<model::AllianceEntry>)> {
    if !(1..=MAX_SETTLEMENT).contains(&request.amount) {
        return Err(ApiError::validation(
            "amount",
            format!("must be 1 to {MAX_SETTLEMENT} fen"),
        ));
    }
    let reference = text::required("reference", &request.reference, MAX_REFERENCE_LEN)?;
    let mut tx = state.begin().await?;
    let (alliance, me) = partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let from = other_partner(tx.conn(), &alliance.id, "from", &request.from).await?;
    let to = other_partner(tx.conn(), &alliance.id, "to", &request.to).await?;
    if from.id == to.id {
        return Err(ApiError::validation("to", "must differ from `from`"));
    }
    if me.id != from.id && me.id != to.id {
        return Err(ApiError::validation(
            "from",
            "the caller must be the partner who paid or the one who was paid",
        ));
    }
    // Settlements of one alliance are decided one at a time (a row lock on PostgreSQL, the
    // write lock on SQLite), so two cannot both spend the same balance.
    sqlx::query("UPDATE alliance SET name = name WHERE id = $1")
        .bind(alliance.id.as_str())
        .execute(tx.conn())
        .await?;
    let owed = store::owed_between(tx.conn(), &alliance.id, &from.id, &to.id).await?;
    if request.amount > owed {
        return Err(ApiError::coded(
            codes::SETTLEMENT_EXCEEDS_BALANCE,
            "the payer does not owe the payee that much",
        )
        .with_details(json!({ "payer_owes_payee": owed.max(0) })));
    }
    let entry_id = EntryId::generate().as_str().to_owned();
    let now = to_micros(tx.now());
    // The payer's account is credited (its debt shrinks), the payee's debited.
    store::insert_entry(
        tx.conn(),
        &alliance.id,
        &store::NewEntry {
            id: &entry_id,
            kind: "settlement",
            debit_partner_id: &to.id,
            credit_partner_id: &from.id,
            amount: request.amount,
            customer_id: None,
            order_id: None,
            reference: Some(&reference),
            dedupe: None,
            recorded_by_partner_id: Some(&me.id),
            created_at: now,
        },
    )
    .await?;
    let data = json!({ "alliance_id": alliance.id, "entry_id": entry_id, "from": from.id,
                       "to": to.id, "amount": request.amount, "reference": reference });
    for partner in [&from, &to] {
        tx.emit(NewEvent::new(
            &TenantId::from_db(partner.tenant_id.clone()),
            "alliance.settlement_recorded",
            Some(alliance.id.as_str()),
            data.clone(),
        ));
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(model::AllianceEntry {
            id: entry_id,
            kind: "settlement".into(),
            debit_partner_id: to.id,
            credit_partner_id: from.id,
            amount: request.amount,
            customer_id: None,
            order_id: None,
            reference: Some(reference),
            voided_by: None,
            created_at: micros_to_rfc3339(now),
        }),
    ))
}
