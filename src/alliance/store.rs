//! The alliance's SQL: small functions over a connection or a transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::common::error::{ApiError, ApiResult};
use crate::common::time::micros_to_rfc3339;

use super::model::{
    AllianceEntry, AllianceOffer, AlliancePartner, AllianceRules, OfferStatus, PartnerStatus,
};
use super::rules::Totals;

fn internal(message: String) -> ApiError {
    ApiError::internal(anyhow::anyhow!(message))
}

/// An alliance row.
#[derive(Debug, Clone)]
pub struct StoredAlliance {
    pub id: String,
    pub name: String,
    pub rules: AllianceRules,
    pub timezone: String,
    pub customer_key: String,
    pub founder_partner_id: String,
    pub created_at: i64,
}

/// A partner row (with its tenant: for the server's eyes only).
#[derive(Debug, Clone)]
pub struct StoredPartner {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub status: PartnerStatus,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

impl StoredPartner {
    pub fn view(&self) -> AlliancePartner {
        AlliancePartner {
            partner_id: self.id.clone(),
            name: self.name.clone(),
            status: self.status,
            joined_at: micros_to_rfc3339(self.joined_at),
            left_at: self.left_at.map(micros_to_rfc3339),
        }
    }
}

fn partner_from_row(row: &AnyRow) -> ApiResult<StoredPartner> {
    let status: String = row.try_get("status")?;
    Ok(StoredPartner {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        status: PartnerStatus::parse(&status)
            .ok_or_else(|| internal(format!("partner status {status}")))?,
        joined_at: row.try_get("joined_at")?,
        left_at: row.try_get("left_at")?,
    })
}

pub async fn insert_alliance(conn: &mut AnyConnection, a: &StoredAlliance) -> ApiResult<()> {
    let rules = serde_json::to_string(&a.rules).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO alliance (id, name, rules, timezone, customer_key, founder_partner_id, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(a.id.as_str())
    .bind(a.name.as_str())
    .bind(rules)
    .bind(a.timezone.as_str())
    .bind(a.customer_key.as_str())
    .bind(a.founder_partner_id.as_str())
    .bind(a.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn alliance(conn: &mut AnyConnection, id: &str) -> ApiResult<Option<StoredAlliance>> {
    let row = sqlx::query(
        "SELECT id, name, rules, timezone, customer_key, founder_partner_id, created_at \
         FROM alliance WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let rules: String = row.try_get("rules")?;
    Ok(Some(StoredAlliance {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        rules: serde_json::from_str(&rules).map_err(ApiError::internal)?,
        timezone: row.try_get("timezone")?,
        customer_key: row.try_get("customer_key")?,
        founder_partner_id: row.try_get("founder_partner_id")?,
        created_at: row.try_get("created_at")?,
    }))
}

pub async fn insert_partner(
    conn: &mut AnyConnection,
    alliance_id: &str,
    p: &StoredPartner,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO alliance_partner (alliance_id, id, tenant_id, name, status, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(alliance_id)
    .bind(p.id.as_str())
    .bind(p.tenant_id.as_str())
    .bind(p.name.as_str())
    .bind(p.status.as_str())
    .bind(p.joined_at)
    .execute(conn)
    .await?;
    Ok(())
}

const PARTNER_COLUMNS: &str = "id, tenant_id, name, status, joined_at, left_at";

/// The partner of `tenant_id` in the alliance, whatever its status.
pub async fn partner_of_tenant(
    conn: &mut AnyConnection,
    alliance_id: &str,
    tenant_id: &str,
) -> ApiResult<Option<StoredPartner>> {
    sqlx::query(&format!(
        "SELECT {PARTNER_COLUMNS} FROM alliance_partner WHERE alliance_id = $1 AND tenant_id = $2"
    ))
    .bind(alliance_id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(partner_from_row)
    .transpose()
}

pub async fn partner(
    conn: &mut AnyConnection,
    alliance_id: &str,
    partner_id: &str,
) -> ApiResult<Option<StoredPartner>> {
    sqlx::query(&format!(
        "SELECT {PARTNER_COLUMNS} FROM alliance_partner WHERE alliance_id = $1 AND id = $2"
    ))
    .bind(alliance_id)
    .bind(partner_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(partner_from_row)
    .transpose()
}

/// Every partner, in the order they joined.
pub async fn partners(
    conn: &mut AnyConnection,
    alliance_id: &str,
) -> ApiResult<Vec<StoredPartner>> {
    sqlx::query(&format!(
        "SELECT {PARTNER_COLUMNS} FROM alliance_partner WHERE alliance_id = $1 \
         ORDER BY joined_at, id"
    ))
    .bind(alliance_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(partner_from_row)
    .collect()
}

/// The alliances a tenant is (or was) a partner of, newest first, at most `limit`.
pub async fn alliances_of_tenant(
    conn: &mut AnyConnection,
    tenant_id: &str,
    limit: i64,
) -> ApiResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT alliance_id FROM alliance_partner WHERE tenant_id = $1 \
         ORDER BY joined_at DESC, alliance_id LIMIT $2",
    )
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Mark a partner as left; false when it had left already.
pub async fn leave(
    conn: &mut AnyConnection,
    alliance_id: &str,
    partner_id: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE alliance_partner SET status = 'left', left_at = $1 \
         WHERE alliance_id = $2 AND id = $3 AND status = 'active'",
    )
    .bind(at)
    .bind(alliance_id)
    .bind(partner_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE alliance_offer SET status = 'closed', updated_at = $1 \
         WHERE alliance_id = $2 AND partner_id = $3 AND status = 'open'",
    )
    .bind(at)
    .bind(alliance_id)
    .bind(partner_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE alliance_referral_link SET status = 'revoked', revoked_at = $1 \
         WHERE alliance_id = $2 AND partner_id = $3 AND status = 'active'",
    )
    .bind(at)
    .bind(alliance_id)
    .bind(partner_id)
    .execute(conn)
    .await?;
    Ok(true)
}

pub async fn insert_invitation(
    conn: &mut AnyConnection,
    code: &str,
    alliance_id: &str,
    partner_id: &str,
    expires_at: i64,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO alliance_invitation (code, alliance_id, invited_by_partner_id, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(code)
    .bind(alliance_id)
    .bind(partner_id)
    .bind(expires_at)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An invitation: (alliance id, expires at, used).
pub async fn invitation(
    conn: &mut AnyConnection,
    code: &str,
) -> ApiResult<Option<(String, i64, bool)>> {
    let row = sqlx::query(
        "SELECT alliance_id, expires_at, used_at FROM alliance_invitation WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let used: Option<i64> = row.try_get("used_at")?;
    Ok(Some((
        row.try_get("alliance_id")?,
        row.try_get("expires_at")?,
        used.is_some(),
    )))
}

/// Use an invitation once: false when another join used it first.
pub async fn use_invitation(
    conn: &mut AnyConnection,
    code: &str,
    partner_id: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE alliance_invitation SET used_by_partner_id = $1, used_at = $2 \
         WHERE code = $3 AND used_at IS NULL",
    )
    .bind(partner_id)
    .bind(at)
    .bind(code)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An offer row: the view and the issuing partner's template.
#[derive(Debug, Clone)]
pub struct StoredOffer {
    pub id: String,
    pub partner_id: String,
    pub coupon_template_id: String,
    pub stock: i64,
    pub remaining: i64,
    pub status: OfferStatus,
    pub created_at: i64,
}

impl StoredOffer {
    /// The offer as `viewer` sees it (the template id only for its own partner).
    pub fn view(&self, partner_name: &str, viewer: &str) -> AllianceOffer {
        AllianceOffer {
            id: self.id.clone(),
            partner_id: self.partner_id.clone(),
            partner_name: partner_name.to_owned(),
            coupon_template_id: (self.partner_id == viewer)
                .then(|| self.coupon_template_id.clone()),
            stock: self.stock,
            remaining: self.remaining,
            status: self.status,
            created_at: micros_to_rfc3339(self.created_at),
        }
    }
}

const OFFER_COLUMNS: &str =
    "id, partner_id, coupon_template_id, stock, remaining, status, created_at";

fn offer_from_row(row: &AnyRow) -> ApiResult<StoredOffer> {
    let status: String = row.try_get("status")?;
    Ok(StoredOffer {
        id: row.try_get("id")?,
        partner_id: row.try_get("partner_id")?,
        coupon_template_id: row.try_get("coupon_template_id")?,
        stock: row.try_get("stock")?,
        remaining: row.try_get("remaining")?,
        status: OfferStatus::parse(&status)
            .ok_or_else(|| internal(format!("offer status {status}")))?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn insert_offer(
    conn: &mut AnyConnection,
    alliance_id: &str,
    offer: &StoredOffer,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO alliance_offer (alliance_id, id, partner_id, coupon_template_id, stock, \
         remaining, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(alliance_id)
    .bind(offer.id.as_str())
    .bind(offer.partner_id.as_str())
    .bind(offer.coupon_template_id.as_str())
    .bind(offer.stock)
    .bind(offer.remaining)
    .bind(offer.status.as_str())
    .bind(offer.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn offer(
    conn: &mut AnyConnection,
    alliance_id: &str,
    offer_id: &str,
) -> ApiResult<Option<StoredOffer>> {
    sqlx::query(&format!(
        "SELECT {OFFER_COLUMNS} FROM alliance_offer WHERE alliance_id = $1 AND id = $2"
    ))
    .bind(alliance_id)
    .bind(offer_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(offer_from_row)
    .transpose()
}

/// The alliance's offers, newest first, at most `limit`.
pub async fn offers(
    conn: &mut AnyConnection,
    alliance_id: &str,
    limit: i64,
) -> ApiResult<Vec<StoredOffer>> {
    sqlx::query(&format!(
        "SELECT {OFFER_COLUMNS} FROM alliance_offer WHERE alliance_id = $1 \
         ORDER BY created_at DESC, id LIMIT $2"
    ))
    .bind(alliance_id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(offer_from_row)
    .collect()
}

/// Take one unit of an open offer's stock (relative, so exact under concurrency); false when
/// none is left.
pub async fn take_offer_stock(
    conn: &mut AnyConnection,
    alliance_id: &str,
    offer_id: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE alliance_offer SET remaining = remaining - 1, updated_at = $1 \
         WHERE alliance_id = $2 AND id = $3 AND status = 'open' AND remaining >= 1",
    )
    .bind(at)
    .bind(alliance_id)
    .bind(offer_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Withdraw an open offer; false when it was not open.
pub async fn withdraw_offer(
    conn: &mut AnyConnection,
    alliance_id: &str,
    offer_id: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE alliance_offer SET status = 'withdrawn', updated_at = $1 \
         WHERE alliance_id = $2 AND id = $3 AND status = 'open'",
    )
    .bind(at)
    .bind(alliance_id)
    .bind(offer_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A claim to record.
pub struct NewClaim<'a> {
    pub id: &'a str,
    pub offer_id: &'a str,
    pub partner_id: &'a str,
    pub member_id: &'a str,
    pub issuer_partner_id: &'a str,
    pub issuer_member_id: &'a str,
    pub coupon_id: &'a str,
    pub claimed_at: i64,
}

pub async fn insert_claim(
    conn: &mut AnyConnection,
    alliance_id: &str,
    c: &NewClaim<'_>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO alliance_claim (alliance_id, id, offer_id, partner_id, member_id, \
         issuer_partner_id, issuer_member_id, coupon_id, claimed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(alliance_id)
    .bind(c.id)
    .bind(c.offer_id)
    .bind(c.partner_id)
    .bind(c.member_id)
    .bind(c.issuer_partner_id)
    .bind(c.issuer_member_id)
    .bind(c.coupon_id)
    .bind(c.claimed_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The issuer's member an earlier claim of this member linked to, if any.
pub async fn linked_issuer_member(
    conn: &mut AnyConnection,
    alliance_id: &str,
    partner_id: &str,
    member_id: &str,
    issuer_partner_id: &str,
) -> ApiResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT issuer_member_id FROM alliance_claim WHERE alliance_id = $1 AND partner_id = $2 \
         AND member_id = $3 AND issuer_partner_id = $4 AND issuer_member_id IS NOT NULL \
         ORDER BY claimed_at LIMIT 1",
    )
    .bind(alliance_id)
    .bind(partner_id)
    .bind(member_id)
    .bind(issuer_partner_id)
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// A referred customer to record: the issuer's member as the alliance knows it, who sent it
/// and how (a claim, or a referral link).
pub struct NewCustomer<'a> {
    pub customer_id: &'a str,
    pub issuer_partner_id: &'a str,
    pub issuer_tenant_id: &'a str,
    pub issuer_member_id: &'a str,
    pub referred_by_partner_id: &'a str,
    pub status: &'a str,
    pub referral_link_id: Option<&'a str>,
    pub at: i64,
}

/// Record the customer the referring partner sent (first touch: a second referral of the same
/// customer changes nothing); false when the customer was recorded before.
pub async fn insert_customer(
    conn: &mut AnyConnection,
    alliance_id: &str,
    c: &NewCustomer<'_>,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO alliance_customer (alliance_id, customer_id, issuer_partner_id, \
         issuer_tenant_id, issuer_member_id, referred_by_partner_id, status, consented_at, \
         updated_at, referral_link_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) \
         ON CONFLICT (alliance_id, customer_id) DO NOTHING",
    )
    .bind(alliance_id)
    .bind(c.customer_id)
    .bind(c.issuer_partner_id)
    .bind(c.issuer_tenant_id)
    .bind(c.issuer_member_id)
    .bind(c.referred_by_partner_id)
    .bind(c.status)
    .bind(c.at)
    .bind(c.referral_link_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the alliance knows the customer already (sent by anyone, by any means).
pub async fn customer_exists(
    conn: &mut AnyConnection,
    alliance_id: &str,
    customer_id: &str,
) -> ApiResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM alliance_customer WHERE alliance_id = $1 AND customer_id = $2",
    )
    .bind(alliance_id)
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// A referred customer awaiting its first paid order at the issuer.
#[derive(Debug, Clone)]
pub struct AwaitingCustomer {
    pub alliance_id: String,
    pub customer_id: String,
    pub issuer_partner_id: String,
    pub referred_by_partner_id: String,
}

/// The customers of the issuer's member still awaiting their first paid order (one per
/// alliance at most).
pub async fn awaiting_customers(
    conn: &mut AnyConnection,
    tenant_id: &str,
    member_id: &str,
) -> ApiResult<Vec<AwaitingCustomer>> {
    let rows = sqlx::query(
        "SELECT alliance_id, customer_id, issuer_partner_id, referred_by_partner_id \
         FROM alliance_customer WHERE issuer_tenant_id = $1 AND issuer_member_id = $2 \
         AND status = 'awaiting' ORDER BY alliance_id",
    )
    .bind(tenant_id)
    .bind(member_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AwaitingCustomer {
                alliance_id: row.try_get("alliance_id")?,
                customer_id: row.try_get("customer_id")?,
                issuer_partner_id: row.try_get("issuer_partner_id")?,
                referred_by_partner_id: row.try_get("referred_by_partner_id")?,
            })
        })
        .collect()
}

pub async fn set_customer_status(
    conn: &mut AnyConnection,
    alliance_id: &str,
    customer_id: &str,
    status: &str,
    first_order_id: Option<&str>,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE alliance_customer SET status = $1, \
         first_order_id = COALESCE($2, first_order_id), updated_at = $3 \
         WHERE alliance_id = $4 AND customer_id = $5",
    )
    .bind(status)
    .bind(first_order_id)
    .bind(at)
    .bind(alliance_id)
    .bind(customer_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Paid orders of a member at a tenant other than `order_id`.
pub async fn other_paid_orders(
    conn: &mut AnyConnection,
    tenant_id: &str,
    member_id: &str,
    order_id: Option<&str>,
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_order WHERE tenant_id = $1 \
         AND member_id = $2 \
         AND paid_at IS NOT NULL AND id <> $3",
    )
    .bind(tenant_id)
    .bind(member_id)
    .bind(order_id.unwrap_or(""))
    .fetch_one(conn)
    .await?)
}

/// An entry to write.
pub struct NewEntry<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub debit_partner_id: &'a str,
    pub credit_partner_id: &'a str,
    pub amount: i64,
    pub customer_id: Option<&'a str>,
    pub order_id: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub dedupe: Option<&'a str>,
    pub recorded_by_partner_id: Option<&'a str>,
    pub created_at: i64,
}

/// Write an entry; false when its `dedupe` was written before (nothing is written twice).
pub async fn insert_entry(
    conn: &mut AnyConnection,
    alliance_id: &str,
    e: &NewEntry<'_>,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO alliance_entry (alliance_id, id, kind, debit_partner_id, credit_partner_id, \
         amount, customer_id, order_id, reference, dedupe, recorded_by_partner_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (alliance_id, dedupe) DO NOTHING",
    )
    .bind(alliance_id)
    .bind(e.id)
    .bind(e.kind)
    .bind(e.debit_partner_id)
    .bind(e.credit_partner_id)
    .bind(e.amount)
    .bind(e.customer_id)
    .bind(e.order_id)
    .bind(e.reference)
    .bind(e.dedupe)
    .bind(e.recorded_by_partner_id)
    .bind(e.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A fee entry still standing for an order of `tenant_id`: (alliance id, entry id, debit
/// partner, credit partner, amount, customer id, created at).
pub struct StandingFee {
    pub alliance_id: String,
    pub id: String,
    pub debit_partner_id: String,
    pub credit_partner_id: String,
    pub amount: i64,
    pub customer_id: Option<String>,
    pub created_at: i64,
}

pub async fn standing_fees_of_order(
    conn: &mut AnyConnection,
    tenant_id: &str,
    order_id: &str,
) -> ApiResult<Vec<StandingFee>> {
    let rows = sqlx::query(
        "SELECT e.alliance_id, e.id, e.debit_partner_id, e.credit_partner_id, e.amount, \
         e.customer_id, e.created_at FROM alliance_entry e JOIN alliance_partner p \
         ON p.alliance_id = e.alliance_id AND p.id = e.debit_partner_id \
         WHERE e.order_id = $1 AND p.tenant_id = $2 AND e.kind = 'fee' AND e.voided_by IS NULL \
         ORDER BY e.alliance_id",
    )
    .bind(order_id)
    .bind(tenant_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StandingFee {
                alliance_id: row.try_get("alliance_id")?,
                id: row.try_get("id")?,
                debit_partner_id: row.try_get("debit_partner_id")?,
                credit_partner_id: row.try_get("credit_partner_id")?,
                amount: row.try_get("amount")?,
                customer_id: row.try_get("customer_id")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

pub async fn mark_voided(
    conn: &mut AnyConnection,
    alliance_id: &str,
    entry_id: &str,
    voided_by: &str,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE alliance_entry SET voided_by = $1 WHERE alliance_id = $2 AND id = $3 \
         AND voided_by IS NULL",
    )
    .bind(voided_by)
    .bind(alliance_id)
    .bind(entry_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Each partner's totals over the entries in [from, to) (all entries when None), read in one
/// query so that they are counted at once and always sum to zero.
pub async fn totals(
    conn: &mut AnyConnection,
    alliance_id: &str,
    range: Option<(i64, i64)>,
) -> ApiResult<Vec<(String, Totals)>> {
    let (from, to) = range.unwrap_or((i64::MIN, i64::MAX));
    let rows = sqlx::query(
        "SELECT p.id, \
         CAST(COALESCE((SELECT SUM(e.amount) FROM alliance_entry e \
           WHERE e.alliance_id = p.alliance_id AND e.credit_partner_id = p.id \
           AND e.created_at >= $2 AND e.created_at < $3), 0) AS BIGINT) AS owed, \
         CAST(COALESCE((SELECT SUM(e.amount) FROM alliance_entry e \
           WHERE e.alliance_id = p.alliance_id AND e.debit_partner_id = p.id \
           AND e.created_at >= $2 AND e.created_at < $3), 0) AS BIGINT) AS owes \
         FROM alliance_partner p WHERE p.alliance_id = $1 ORDER BY p.joined_at, p.id",
    )
    .bind(alliance_id)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                Totals {
                    owed: row.try_get("owed")?,
                    owes: row.try_get("owes")?,
                },
            ))
        })
        .collect()
}

/// What partner `a` owes partner `b` between the two of them: the entries debiting `a` and
/// crediting `b`, less those the other way (negative when `b` owes `a`).
pub async fn owed_between(
    conn: &mut AnyConnection,
    alliance_id: &str,
    a: &str,
    b: &str,
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(CASE WHEN debit_partner_id = $2 THEN amount ELSE -amount END), \
         0) AS BIGINT) FROM alliance_entry WHERE alliance_id = $1 AND \
         ((debit_partner_id = $2 AND credit_partner_id = $3) \
         OR (debit_partner_id = $3 AND credit_partner_id = $2))",
    )
    .bind(alliance_id)
    .bind(a)
    .bind(b)
    .fetch_one(conn)
    .await?)
}

/// Entries in [from, to) after `after` (created at, id), oldest first, at most `limit`; the
/// viewer sees the order ids of its own orders only.
pub async fn entries(
    conn: &mut AnyConnection,
    alliance_id: &str,
    (from, to): (i64, i64),
    after: Option<(i64, &str)>,
    viewer_partner_id: &str,
    limit: i64,
) -> ApiResult<Vec<(i64, AllianceEntry)>> {
    // With no cursor, every entry of the range is after (from - 1, "").
    let (after_at, after_id) = after.unwrap_or((from.saturating_sub(1), ""));
    let rows = sqlx::query(
        "SELECT id, kind, debit_partner_id, credit_partner_id, amount, customer_id, order_id, \
         reference, voided_by, created_at FROM alliance_entry WHERE alliance_id = $1 \
         AND created_at >= $2 AND created_at < $3 \
         AND (created_at > $4 OR (created_at = $4 AND id > $5)) \
         ORDER BY created_at, id LIMIT $6",
    )
    .bind(alliance_id)
    .bind(from)
    .bind(to)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let debit: String = row.try_get("debit_partner_id")?;
            let credit: String = row.try_get("credit_partner_id")?;
            // A fee is owed by the issuer (debit); its reversal credits the issuer back.
            let order_owner = if kind == "fee" { &debit } else { &credit };
            let order_id: Option<String> = row.try_get("order_id")?;
            let created_at: i64 = row.try_get("created_at")?;
            Ok((
                created_at,
                AllianceEntry {
                    id: row.try_get("id")?,
                    order_id: order_id.filter(|_| order_owner == viewer_partner_id),
                    kind,
                    debit_partner_id: debit,
                    credit_partner_id: credit,
                    amount: row.try_get("amount")?,
                    customer_id: row.try_get("customer_id")?,
                    reference: row.try_get("reference")?,
                    voided_by: row.try_get("voided_by")?,
                    created_at: micros_to_rfc3339(created_at),
                },
            ))
        })
        .collect()
}

/// Erasure at `tenant_id`: the member's links in claims and customers are cleared, an awaiting
/// customer earns nothing any more; entries (opaque ids only) stay, so balances do not move.
pub async fn erase_member(
    conn: &mut AnyConnection,
    tenant_id: &str,
    member_id: &str,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE alliance_claim SET member_id = NULL WHERE member_id = $1 AND EXISTS (SELECT 1 \
         FROM alliance_partner p WHERE p.alliance_id = alliance_claim.alliance_id \
         AND p.id = alliance_claim.partner_id AND p.tenant_id = $2)",
    )
    .bind(member_id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE alliance_claim SET issuer_member_id = NULL WHERE issuer_member_id = $1 \
         AND EXISTS (SELECT 1 FROM alliance_partner p WHERE p.alliance_id = \
         alliance_claim.alliance_id AND p.id = alliance_claim.issuer_partner_id \
         AND p.tenant_id = $2)",
    )
    .bind(member_id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE alliance_customer SET status = CASE WHEN status = 'awaiting' THEN 'erased' \
         ELSE status END, issuer_member_id = NULL, updated_at = $1 \
         WHERE issuer_tenant_id = $2 AND issuer_member_id = $3",
    )
    .bind(at)
    .bind(tenant_id)
    .bind(member_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the alliance holds about one member of `tenant_id` (for the personal-data export):
/// (alliance name, partner name shared with, claimed at) of each claim.
pub async fn claims_of_member(
    conn: &mut AnyConnection,
    tenant_id: &str,
    member_id: &str,
) -> ApiResult<Vec<(String, String, i64)>> {
    let rows = sqlx::query(
        "SELECT a.name AS alliance, i.name AS issuer, c.claimed_at FROM alliance_claim c \
         JOIN alliance_partner p ON p.alliance_id = c.alliance_id AND p.id = c.partner_id \
         JOIN alliance_partner i ON i.alliance_id = c.alliance_id AND i.id = c.issuer_partner_id \
         JOIN alliance a ON a.id = c.alliance_id \
         WHERE p.tenant_id = $1 AND c.member_id = $2 ORDER BY c.claimed_at",
    )
    .bind(tenant_id)
    .bind(member_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("alliance")?,
                row.try_get("issuer")?,
                row.try_get("claimed_at")?,
            ))
        })
        .collect()
}

/// A referral link row.
#[derive(Debug, Clone)]
pub struct StoredLink {
    pub alliance_id: String,
    pub id: String,
    pub code: String,
    pub partner_id: String,
    pub to_partner_id: Option<String>,
    pub label: Option<String>,
    pub expires_at: Option<i64>,
    pub status: String,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

const LINK_COLUMNS: &str = "alliance_id, id, code, partner_id, to_partner_id, label, \
    expires_at, status, revoked_at, created_at";

fn link_from_row(row: &AnyRow) -> ApiResult<StoredLink> {
    Ok(StoredLink {
        alliance_id: row.try_get("alliance_id")?,
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        partner_id: row.try_get("partner_id")?,
        to_partner_id: row.try_get("to_partner_id")?,
        label: row.try_get("label")?,
        expires_at: row.try_get("expires_at")?,
        status: row.try_get("status")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Write a new link; false when its code is taken (the caller draws another).
pub async fn insert_link(conn: &mut AnyConnection, l: &StoredLink) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO alliance_referral_link (alliance_id, id, code, partner_id, to_partner_id, \
         label, expires_at, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (code) DO NOTHING",
    )
    .bind(l.alliance_id.as_str())
    .bind(l.id.as_str())
    .bind(l.code.as_str())
    .bind(l.partner_id.as_str())
    .bind(l.to_partner_id.as_deref())
    .bind(l.label.as_deref())
    .bind(l.expires_at)
    .bind(l.status.as_str())
    .bind(l.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The link with this code, in whichever alliance.
pub async fn link_by_code(conn: &mut AnyConnection, code: &str) -> ApiResult<Option<StoredLink>> {
    sqlx::query(&format!(
        "SELECT {LINK_COLUMNS} FROM alliance_referral_link WHERE code = $1"
    ))
    .bind(code)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(link_from_row)
    .transpose()
}

/// A link of `partner_id` in the alliance (None for another partner's link).
pub async fn link_of_partner(
    conn: &mut AnyConnection,
    alliance_id: &str,
    partner_id: &str,
    link_id: &str,
) -> ApiResult<Option<StoredLink>> {
    sqlx::query(&format!(
        "SELECT {LINK_COLUMNS} FROM alliance_referral_link WHERE alliance_id = $1 \
         AND partner_id = $2 AND id = $3"
    ))
    .bind(alliance_id)
    .bind(partner_id)
    .bind(link_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(link_from_row)
    .transpose()
}

/// Revoke an active link; false when it was not active.
pub async fn revoke_link(
    conn: &mut AnyConnection,
    alliance_id: &str,
    link_id: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE alliance_referral_link SET status = 'revoked', revoked_at = $1 \
         WHERE alliance_id = $2 AND id = $3 AND status = 'active'",
    )
    .bind(at)
    .bind(alliance_id)
    .bind(link_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What one link brought: customers recorded, first paid orders, standing fees (fen).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkCounts {
    pub customers: i64,
    pub first_paid_orders: i64,
    pub fees: i64,
}

/// A link's columns and its counts, over `alliance_referral_link l`.
const LINK_WITH_COUNTS: &str = "SELECT l.alliance_id, l.id, l.code, l.partner_id, \
    l.to_partner_id, l.label, l.expires_at, l.status, l.revoked_at, l.created_at, \
    (SELECT CAST(COUNT(*) AS BIGINT) FROM alliance_customer c \
      WHERE c.alliance_id = l.alliance_id AND c.referral_link_id = l.id) AS customers, \
    (SELECT CAST(COUNT(*) AS BIGINT) FROM alliance_customer c \
      WHERE c.alliance_id = l.alliance_id AND c.referral_link_id = l.id \
      AND c.first_order_id IS NOT NULL) AS first_paid_orders, \
    (SELECT CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) FROM alliance_entry e \
      JOIN alliance_customer c ON c.alliance_id = e.alliance_id \
      AND c.customer_id = e.customer_id \
      WHERE e.alliance_id = l.alliance_id AND c.referral_link_id = l.id \
      AND e.kind = 'fee' AND e.voided_by IS NULL) AS fees \
    FROM alliance_referral_link l";

fn link_with_counts_from_row(row: &AnyRow) -> ApiResult<(StoredLink, LinkCounts)> {
    Ok((
        link_from_row(row)?,
        LinkCounts {
            customers: row.try_get("customers")?,
            first_paid_orders: row.try_get("first_paid_orders")?,
            fees: row.try_get("fees")?,
        },
    ))
}

/// A partner's links, newest first, at most `limit`, each with its counts.
pub async fn links_of_partner(
    conn: &mut AnyConnection,
    alliance_id: &str,
    partner_id: &str,
    limit: i64,
) -> ApiResult<Vec<(StoredLink, LinkCounts)>> {
    sqlx::query(&format!(
        "{LINK_WITH_COUNTS} WHERE l.alliance_id = $1 AND l.partner_id = $2 \
         ORDER BY l.created_at DESC, l.id DESC LIMIT $3"
    ))
    .bind(alliance_id)
    .bind(partner_id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(link_with_counts_from_row)
    .collect()
}

/// One link of `partner_id` with its counts (None for another partner's link).
pub async fn link_of_partner_with_counts(
    conn: &mut AnyConnection,
    alliance_id: &str,
    partner_id: &str,
    link_id: &str,
) -> ApiResult<Option<(StoredLink, LinkCounts)>> {
    sqlx::query(&format!(
        "{LINK_WITH_COUNTS} WHERE l.alliance_id = $1 AND l.partner_id = $2 AND l.id = $3"
    ))
    .bind(alliance_id)
    .bind(partner_id)
    .bind(link_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(link_with_counts_from_row)
    .transpose()
}
