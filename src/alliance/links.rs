//! Alliance referral links: partner A sends customers to its partners with a code rather than
//! a coupon offer.
//!
//! A makes a link (optionally valid at one partner only, with a label and an expiry) and hands
//! its code to a customer. When the customer turns up at partner B and B's staff record the
//! arrival with B's own key (`POST /v1/alliances/referrals`), the customer is recorded as sent
//! by A in the very `alliance_customer` row an offer claim writes, so the one fee path of
//! [`super::fees`] applies unchanged: B owes A the referral fee on the member's first paid
//! order at B, voided by a full refund within B's return window.
//!
//! The arrival is the member's consent (PIPL): by following the link the member shares
//! themself with the alliance, and only as B's member: A learns an opaque customer id and what
//! it earns, never B's member. Rules, each answered before anything is written:
//!
//! - the first attribution wins: a member of B already sent to B in this alliance (by a link
//!   or an offer claim) is 409 `already_referred`, decided by the customer row's primary key,
//!   so two arrivals at once record one;
//! - a member who has paid B before is 409 `not_a_new_customer` and nothing is recorded: a
//!   link exists to bring new customers, no fee could ever arise, and keeping a record with no
//!   purpose would only hold personal data for nothing (PIPL's minimisation);
//! - a link used at its own partner is 409 `own_referral_link`; one meant for another partner
//!   is 409 `referral_link_for_another_partner`; a revoked (or its partner left) or expired
//!   link is 409 `referral_link_revoked` / `referral_link_expired`;
//! - an unknown code, and a code of an alliance the caller is not a partner of, are both 404:
//!   the code is resolved to its alliance and then goes through [`super::partnership`], the
//!   one check of every alliance route.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use rand::RngCore as _;
use serde_json::json;

use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::Path;
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::text;
use crate::common::time::{instant_field, micros_to_rfc3339, to_micros};
use crate::members;
use crate::AppState;

use super::model::{
    AllianceReferral, CreateReferralLink, RecordReferral, ReferralLink, ReferralLinkList,
    ReferralLinkStatus, MAX_NAME_LEN,
};
use super::store::{self, LinkCounts, NewCustomer, StoredLink};
use super::{active_partnership, other_partner, partnership, rules, MAX_LIST};

crate::typed_id!(ReferralLinkId, "arl");

/// Length of a link's code: 20 symbols of 5 bits, 100 random bits (unguessable, like an
/// invitation's 96).
pub const CODE_LEN: usize = 20;
/// The alphabet of referral invite codes (`growth::referrals`): no 0, 1, I or O, so a code
/// read aloud or typed at a counter survives.
const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Fresh codes drawn before giving up (a collision among 2^100 codes does not happen).
const CODE_ATTEMPTS: usize = 4;
/// Most links listed for one partner (newest first).
pub const MAX_LINKS: i64 = MAX_LIST;

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[(rng.next_u32() % 32) as usize]))
        .collect()
}

/// A code as typed: trimmed, upper case; None when it cannot be one of ours.
fn normalise_code(text: &str) -> Option<String> {
    let code = text.trim().to_ascii_uppercase();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

fn link_not_found() -> ApiError {
    ApiError::not_found("referral link")
}

fn status_at(link: &StoredLink, now: i64) -> ReferralLinkStatus {
    if link.status != "active" {
        ReferralLinkStatus::Revoked
    } else if link.expires_at.is_some_and(|at| at <= now) {
        ReferralLinkStatus::Expired
    } else {
        ReferralLinkStatus::Active
    }
}

fn view(link: &StoredLink, counts: LinkCounts, now: i64) -> ReferralLink {
    ReferralLink {
        id: link.id.clone(),
        code: link.code.clone(),
        alliance_id: link.alliance_id.clone(),
        partner_id: link.partner_id.clone(),
        to_partner_id: link.to_partner_id.clone(),
        label: link.label.clone(),
        expires_at: link.expires_at.map(micros_to_rfc3339),
        status: status_at(link, now),
        revoked_at: link.revoked_at.map(micros_to_rfc3339),
        created_at: micros_to_rfc3339(link.created_at),
        customers_referred: counts.customers,
        first_paid_orders: counts.first_paid_orders,
        fees_earned: counts.fees,
    }
}

/// Make a referral link of the caller's partner: 201 with its code. `to_partner_id` (another
/// partner of the alliance, else 404) limits it to that partner; `expires_at` must be in the
/// future. 409 `partner_not_active` when the caller left.
#[utoipa::path(post, path = "/v1/alliances/{id}/referral-links", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    request_body(content = Option<CreateReferralLink>),
    responses((status = 201, body = ReferralLink), (status = 404), (status = 409), (status = 422)),
    security(("api_key" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ReferralLink>)> {
    let request: CreateReferralLink = if body.iter().all(u8::is_ascii_whitespace) {
        CreateReferralLink::default()
    } else {
        crate::common::json::from_slice(&body)?
    };
    let label = text::optional("label", request.label.as_deref(), MAX_NAME_LEN)?;
    let mut tx = state.begin().await?;
    let (alliance, me) = active_partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let now = to_micros(tx.now());
    let to_partner_id = match request.to_partner_id.as_deref() {
        Some(to) => {
            let to = other_partner(tx.conn(), &alliance.id, "to_partner_id", to).await?;
            if to.id == me.id {
                return Err(ApiError::validation(
                    "to_partner_id",
                    "must be another partner: a link sends customers to a partner",
                ));
            }
            Some(to.id)
        }
        None => None,
    };
    let expires_at = match request.expires_at.as_deref() {
        Some(text) => {
            let zone = crate::tenants::time_zone(tx.conn(), &auth.tenant_id).await?;
            let at = to_micros(instant_field("expires_at", text, &zone)?);
            if at <= now {
                return Err(ApiError::validation("expires_at", "must be in the future"));
            }
            Some(at)
        }
        None => None,
    };
    let mut link = StoredLink {
        alliance_id: alliance.id.clone(),
        id: ReferralLinkId::generate().as_str().to_owned(),
        code: new_code(),
        partner_id: me.id.clone(),
        to_partner_id,
        label,
        expires_at,
        status: "active".to_owned(),
        revoked_at: None,
        created_at: now,
    };
    let mut written = false;
    for _ in 0..CODE_ATTEMPTS {
        if store::insert_link(tx.conn(), &link).await? {
            written = true;
            break;
        }
        link.code = new_code();
    }
    if !written {
        return Err(ApiError::internal(anyhow::anyhow!(
            "no free referral link code in {CODE_ATTEMPTS} attempts"
        )));
    }
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.referral_link_created",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "referral_link_id": link.id,
                "to_partner_id": link.to_partner_id }),
    ));
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(view(&link, LinkCounts::default(), now)),
    ))
}

/// The caller's own referral links in the alliance, newest first (at most 200), each with the
/// customers it brought, their first paid orders and the fees still standing for them. Other
/// partners' links are never listed.
#[utoipa::path(get, path = "/v1/alliances/{id}/referral-links", tag = "alliance",
    params(("id" = String, Path, description = "alliance id")),
    responses((status = 200, body = ReferralLinkList), (status = 404)),
    security(("api_key" = [])))]
pub async fn list_links(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ReferralLinkList>> {
    let mut conn = state.db.read().acquire().await?;
    let (alliance, me) = partnership(&mut conn, &auth.tenant_id, &id).await?;
    let now = to_micros(state.clock.now());
    let links = store::links_of_partner(&mut conn, &alliance.id, &me.id, MAX_LINKS).await?;
    let data = links
        .iter()
        .map(|(link, counts)| view(link, *counts, now))
        .collect();
    Ok(Json(ReferralLinkList { data }))
}

/// Revoke one of the caller's links: no new arrivals by it (customers it brought stay
/// attributed). Another partner's link is 404; revoking twice answers the revoked link again.
#[utoipa::path(post, path = "/v1/alliances/{id}/referral-links/{link_id}/revoke", tag = "alliance",
    params(("id" = String, Path, description = "alliance id"),
           ("link_id" = String, Path, description = "referral link id")),
    responses((status = 200, body = ReferralLink), (status = 404)),
    security(("api_key" = [])))]
pub async fn revoke_link(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, link_id)): Path<(String, String)>,
) -> ApiResult<Json<ReferralLink>> {
    let mut tx = state.begin().await?;
    let (alliance, me) = partnership(tx.conn(), &auth.tenant_id, &id).await?;
    let link_id = ReferralLinkId::parse(&link_id).ok_or_else(link_not_found)?;
    let now = to_micros(tx.now());
    if store::link_of_partner(tx.conn(), &alliance.id, &me.id, link_id.as_str())
        .await?
        .is_none()
    {
        return Err(link_not_found());
    }
    if store::revoke_link(tx.conn(), &alliance.id, link_id.as_str(), now).await? {
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "alliance.referral_link_revoked",
            Some(alliance.id.as_str()),
            json!({ "alliance_id": alliance.id, "referral_link_id": link_id }),
        ));
    }
    let (link, counts) =
        store::link_of_partner_with_counts(tx.conn(), &alliance.id, &me.id, link_id.as_str())
            .await?
            .ok_or_else(link_not_found)?;
    tx.commit().await?;
    Ok(Json(view(&link, counts, now)))
}

/// Record that the caller's member arrived by a partner's referral link: 201 with the
/// referring partner's name and the consent time. From then the member's first paid order
/// here owes the referring partner the alliance's fee. 404 unknown code (or an alliance the
/// caller is not in) or member; 409 `already_referred`, `not_a_new_customer`,
/// `own_referral_link`, `referral_link_for_another_partner`, `referral_link_revoked`,
/// `referral_link_expired`, `partner_not_active`.
#[utoipa::path(post, path = "/v1/alliances/referrals", tag = "alliance",
    request_body = RecordReferral,
    responses((status = 201, body = AllianceReferral), (status = 404), (status = 409),
        (status = 422)),
    security(("api_key" = [])))]
pub async fn record_referral(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<RecordReferral>,
) -> ApiResult<(StatusCode, Json<AllianceReferral>)> {
    let code = normalise_code(&request.code).ok_or_else(link_not_found)?;
    let member_id = members::member_id(&request.member_id)?;
    let mut tx = state.begin().await?;
    let link = store::link_by_code(tx.conn(), &code)
        .await?
        .ok_or_else(link_not_found)?;
    // The one partnership check: a code of an alliance the caller is not in is unknown to it.
    let (alliance, me) = match partnership(tx.conn(), &auth.tenant_id, &link.alliance_id).await {
        Ok(found) => found,
        Err(error) if error.status == StatusCode::NOT_FOUND => return Err(link_not_found()),
        Err(error) => return Err(error),
    };
    if me.status != super::model::PartnerStatus::Active {
        return Err(super::partner_not_active());
    }
    // The member is looked up in the caller's own tenant only.
    members::store::require_active(tx.conn(), &auth.tenant_id, &member_id).await?;
    let now = to_micros(tx.now());
    if link.partner_id == me.id {
        return Err(ApiError::conflict(
            codes::OWN_REFERRAL_LINK,
            "this is the caller's own referral link: it sends customers to the other partners",
        ));
    }
    match status_at(&link, now) {
        ReferralLinkStatus::Active => {}
        ReferralLinkStatus::Revoked => {
            return Err(ApiError::conflict(
                codes::REFERRAL_LINK_REVOKED,
                "this referral link was revoked (or its partner left the alliance)",
            ))
        }
        ReferralLinkStatus::Expired => {
            return Err(ApiError::conflict(
                codes::REFERRAL_LINK_EXPIRED,
                "this referral link has expired",
            ))
        }
    }
    if link.to_partner_id.as_ref().is_some_and(|to| *to != me.id) {
        return Err(ApiError::conflict(
            codes::REFERRAL_LINK_FOR_ANOTHER_PARTNER,
            "this referral link is meant for another partner of the alliance",
        ));
    }
    let referrer = store::partner(tx.conn(), &alliance.id, &link.partner_id)
        .await?
        .ok_or_else(link_not_found)?;
    let customer_id = rules::customer_id(
        &alliance.customer_key,
        auth.tenant_id.as_str(),
        member_id.as_str(),
    );
    let already = || {
        ApiError::conflict(
            codes::ALREADY_REFERRED,
            "this member was already sent to the caller by a partner of this alliance",
        )
    };
    if store::customer_exists(tx.conn(), &alliance.id, &customer_id).await? {
        return Err(already());
    }
    let paid_before =
        store::other_paid_orders(tx.conn(), auth.tenant_id.as_str(), member_id.as_str(), None)
            .await?;
    if paid_before > 0 {
        return Err(ApiError::conflict(
            codes::NOT_A_NEW_CUSTOMER,
            "this member has paid the caller before: a referral link sends new customers only",
        ));
    }
    let recorded = store::insert_customer(
        tx.conn(),
        &alliance.id,
        &NewCustomer {
            customer_id: &customer_id,
            issuer_partner_id: &me.id,
            issuer_tenant_id: auth.tenant_id.as_str(),
            issuer_member_id: member_id.as_str(),
            referred_by_partner_id: &referrer.id,
            status: "awaiting",
            referral_link_id: Some(&link.id),
            at: now,
        },
    )
    .await?;
    if !recorded {
        // Another arrival of the same member committed first.
        return Err(already());
    }
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "alliance.referral_recorded",
        Some(member_id.as_str()),
        json!({ "alliance_id": alliance.id, "referral_link_id": link.id,
                "customer_id": customer_id, "from": referrer.id, "to": me.id,
                "member_id": member_id }),
    ));
    // The referrer hears of it without the member: the opaque id is all it gets.
    tx.emit(NewEvent::new(
        &TenantId::from_db(referrer.tenant_id.clone()),
        "alliance.referral_recorded",
        Some(alliance.id.as_str()),
        json!({ "alliance_id": alliance.id, "referral_link_id": link.id,
                "customer_id": customer_id, "from": referrer.id, "to": me.id }),
    ));
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AllianceReferral {
            alliance_id: alliance.id,
            member_id: member_id.as_str().to_owned(),
            customer_id,
            referral_link_id: link.id,
            referred_by_partner_id: referrer.id,
            referred_by: referrer.name,
            consented_at: micros_to_rfc3339(now),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_long_in_the_alphabet_and_read_back_typed_loosely() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LEN);
        assert_eq!(normalise_code(&code), Some(code.clone()));
        assert_eq!(
            normalise_code(&format!("  {}  ", code.to_ascii_lowercase())),
            Some(code)
        );
        assert_eq!(normalise_code("0OIL0OIL0OIL0OIL0OIL"), None);
        assert_eq!(normalise_code("ABC"), None);
        assert_ne!(new_code(), new_code());
    }
}
