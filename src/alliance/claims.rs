//! Claiming a shared offer: a partner's member takes the issuing partner's coupon.
//!
//! In one transaction: the offer's stock goes down by one (relative, so never below zero under
//! any concurrency), the customer is found or created as a member of the issuer (an earlier
//! claim's link, else an active member with the same phone, else a new member with source
//! `alliance`), the issuer's coupon is granted under its template's own stock and per-member
//! limit, the customer is recorded as sent by the claiming partner (first touch), and the claim
//! itself is kept with its time: the member's consent to be shared with the issuer. Anything
//! refused rolls all of it back.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::Path;
use crate::common::hooks::{self, MemberCreated, Signup};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members;
use crate::members::model::{Member, Profile};
use crate::membership::coupons;
use crate::membership::coupons::model::CouponTemplateId;
use crate::AppState;

use super::model::{AllianceClaim, ClaimOffer, OfferStatus, PartnerStatus};
use super::store::{self, NewClaim, NewCustomer, StoredAlliance, StoredOffer, StoredPartner};
use super::{active_partnership, rules, ClaimId, OfferId};

/// The source every member created by a claim carries.
pub const SOURCE: &str = "alliance";

/// Claim an offer for one of the caller's members: 201 with the coupon (issued by and
/// redeemable at the offering partner) and the customer's member id there. 409
/// `out_of_stock`, `offer_closed`, `offer_withdrawn`, `limit_reached`; 422 for the caller's
/// own offer.
#[utoipa::path(post, path = "/v1/alliances/{id}/offers/{offer_id}/claim", tag = "alliance",
    params(("id" = String, Path, description = "alliance id"),
           ("offer_id" = String, Path, description = "offer id")),
    request_body = ClaimOffer,
    responses((status = 201, body = AllianceClaim), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
pub async fn claim(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, offer_id)): Path<(String, String)>,
    Json(request): Json<ClaimOffer>,
) -> ApiResult<(StatusCode, Json<AllianceClaim>)> {
    let member_id = members::member_id(&request.member_id)?;
    let mut tx = state.begin().await?;
    let (alliance, me) = active_partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let offer_id = OfferId::parse(&offer_id).ok_or_else(|| ApiError::not_found("offer"))?;
    let offer = store::offer(tx.conn(), &alliance.id, offer_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("offer"))?;
    if offer.partner_id == me.id {
        return Err(ApiError::validation(
            "offer_id",
            "a partner cannot claim its own offer: issue the coupon directly",
        ));
    }
    // The member is looked up in the caller's own tenant only.
    members::store::require_active(tx.conn(), &auth.tenant_id, &member_id).await?;
    let member = members::store::require(tx.conn(), &auth.tenant_id, &member_id).await?;
    let issuer = store::partner(tx.conn(), &alliance.id, &offer.partner_id)
        .await?
        .ok_or_else(|| ApiError::not_found("offer"))?;
    if issuer.status != PartnerStatus::Active {
        return Err(not_open(OfferStatus::Closed));
    }
    if offer.status != OfferStatus::Open {
        return Err(not_open(offer.status));
    }
    let now = to_micros(tx.now());
    if !store::take_offer_stock(tx.conn(), &alliance.id, &offer.id, now).await? {
        // Withdrawn or closed since it was read, or out of stock: say which.
        return Err(refused_stock(tx.conn(), &alliance.id, &offer).await);
    }
    let issuer_tenant = TenantId::from_db(issuer.tenant_id.clone());
    let issuer_member = issuer_member(&mut tx, &alliance, &me, &issuer, &member).await?;
    let template = CouponTemplateId::from_db(offer.coupon_template_id.clone());
    let coupon = coupons::grant(
        &mut tx,
        &issuer_tenant,
        &template,
        &issuer_member,
        &format!("alliance:{}", offer.id),
    )
    .await?;
    let customer_id = rules::customer_id(
        &alliance.customer_key,
        issuer_tenant.as_str(),
        issuer_member.as_str(),
    );
    let paid_before = store::other_paid_orders(
        tx.conn(),
        issuer_tenant.as_str(),
        issuer_member.as_str(),
        None,
    )
    .await?;
    let status = if paid_before > 0 {
        "existing"
    } else {
        "awaiting"
    };
    store::insert_customer(
        tx.conn(),
        &alliance.id,
        &NewCustomer {
            customer_id: &customer_id,
            issuer_partner_id: &issuer.id,
            issuer_tenant_id: issuer_tenant.as_str(),
            issuer_member_id: issuer_member.as_str(),
            referred_by_partner_id: &me.id,
            status,
            referral_link_id: None,
            at: now,
        },
    )
    .await?;
    let claim_id = ClaimId::generate().as_str().to_owned();
    store::insert_claim(
        tx.conn(),
        &alliance.id,
        &NewClaim {
            id: &claim_id,
            offer_id: &offer.id,
            partner_id: &me.id,
            member_id: member_id.as_str(),
            issuer_partner_id: &issuer.id,
            issuer_member_id: issuer_member.as_str(),
            coupon_id: coupon.id.as_str(),
            claimed_at: now,
        },
    )
    .await?;
    // Each side hears of the claim in its own outbox, naming its own member only.
    for (tenant, member, partner) in [
        (&auth.tenant_id, &member_id, &issuer.id),
        (&issuer_tenant, &issuer_member, &me.id),
    ] {
        tx.emit(NewEvent::new(
            tenant,
            "alliance.offer_claimed",
            Some(member.as_str()),
            json!({ "alliance_id": alliance.id, "offer_id": offer.id, "claim_id": claim_id,
                    "coupon_id": coupon.id, "member_id": member, "partner_id": partner }),
        ));
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AllianceClaim {
            claim_id,
            coupon_id: coupon.id.as_str().to_owned(),
            issuer_member_id: issuer_member.as_str().to_owned(),
            claimed_at: micros_to_rfc3339(now),
        }),
    ))
}

/// Why an offer that is not open takes no claim.
fn not_open(status: OfferStatus) -> ApiError {
    match status {
        OfferStatus::Withdrawn => ApiError::conflict(
            codes::OFFER_WITHDRAWN,
            "this offer was withdrawn by its partner",
        ),
        OfferStatus::Open | OfferStatus::Closed => ApiError::conflict(
            codes::OFFER_CLOSED,
            "this offer is closed: its partner left the alliance",
        ),
    }
}

/// The answer when no stock could be taken: the offer's state now (a withdrawal or a leave
/// that committed after it was read), else out of stock.
async fn refused_stock(
    conn: &mut sqlx::AnyConnection,
    alliance_id: &str,
    offer: &StoredOffer,
) -> ApiError {
    match store::offer(conn, alliance_id, &offer.id).await {
        Ok(Some(now)) if now.status != OfferStatus::Open => not_open(now.status),
        Ok(_) => ApiError::conflict(
            codes::OUT_OF_STOCK,
            "every coupon of this offer has been claimed",
        ),
        Err(error) => error,
    }
}

/// The customer as a member of the issuer: the member an earlier claim linked, else an active
/// member with the same phone, else a new one (source `alliance`, the referring partner in its
/// attributes) created through the members' hooks like any other.
async fn issuer_member(
    tx: &mut Tx,
    alliance: &StoredAlliance,
    me: &StoredPartner,
    issuer: &StoredPartner,
    member: &Member,
) -> ApiResult<MemberId> {
    let issuer_tenant = TenantId::from_db(issuer.tenant_id.clone());
    let linked = store::linked_issuer_member(
        tx.conn(),
        &alliance.id,
        &me.id,
        member.id.as_str(),
        &issuer.id,
    )
    .await?;
    if let Some(linked) = linked {
        let linked = MemberId::from_db(linked);
        if members::store::require_active(tx.conn(), &issuer_tenant, &linked)
            .await
            .is_ok()
        {
            return Ok(linked);
        }
    }
    if let Some(phone) = member.phone.as_deref() {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM member WHERE tenant_id = $1 AND phone = $2 AND status = 'active' \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(issuer_tenant.as_str())
        .bind(phone)
        .fetch_optional(tx.conn())
        .await?;
        if let Some(found) = found {
            return Ok(MemberId::from_db(found));
        }
    }
    let profile = Profile {
        name: member.name.clone(),
        phone: member.phone.clone(),
        source: Some(SOURCE.to_owned()),
        attributes: json!({
            "alliance_id": alliance.id,
            "referred_by_partner_id": me.id,
            "referred_by_partner": me.name,
        }),
        ..Profile::default()
    };
    let id = MemberId::generate();
    let at = to_micros(tx.now());
    members::store::insert(tx.conn(), &issuer_tenant, &id, &profile, at).await?;
    tx.emit(NewEvent::new(
        &issuer_tenant,
        "member.created",
        Some(id.as_str()),
        json!({ "member_id": id, "source": SOURCE, "via": "alliance" }),
    ));
    let signup = Signup::default();
    hooks::registered()?
        .member_created(
            tx,
            &MemberCreated {
                tenant_id: &issuer_tenant,
                member_id: &id,
                signup: &signup,
            },
        )
        .await?;
    Ok(id)
}
