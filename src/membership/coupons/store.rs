//! Coupon SQL: small functions over a connection or a transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::model::{
    effective_status, Coupon, CouponId, CouponStatus, CouponTemplate, CouponTemplateId, Discount,
    NewTemplate, Validity,
};
use crate::common::error::ApiResult;
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::Sql;
use crate::common::state::state_column;
use crate::common::time::micros_to_rfc3339;

const TEMPLATE_COLUMNS: &str = "id, name, kind, amount_off, percent_off_bp, max_discount, \
    min_spend, total_stock, issued, per_member_limit, valid_days, valid_from, valid_to, created_at";

const COUPON_COLUMNS: &str = "id, template_id, member_id, status, reason, valid_from, valid_to, \
    claimed_at, redeemed_at, order_ref, order_amount, discount";

pub async fn insert_template(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponTemplateId,
    template: &NewTemplate,
    at: i64,
) -> ApiResult<()> {
    let (amount_off, percent_off_bp) = match template.discount {
        Discount::AmountOff(amount) => (Some(amount), None),
        Discount::PercentOff(bp) => (None, Some(bp)),
    };
    let (valid_days, valid_from, valid_to) = match template.validity {
        Validity::Days(days) => (Some(days), None, None),
        Validity::Window { from, to } => (None, Some(from), Some(to)),
    };
    sqlx::query(
        "INSERT INTO coupon_template (tenant_id, id, name, kind, amount_off, percent_off_bp, \
         max_discount, min_spend, total_stock, issued, per_member_limit, valid_days, valid_from, \
         valid_to, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $14)",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(template.name.as_str())
    .bind(template.discount.kind())
    .bind(amount_off)
    .bind(percent_off_bp)
    .bind(template.max_discount)
    .bind(template.min_spend)
    .bind(template.total_stock)
    .bind(template.per_member_limit)
    .bind(valid_days)
    .bind(valid_from)
    .bind(valid_to)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn template_from_row(row: &AnyRow) -> Result<CouponTemplate, sqlx::Error> {
    let total_stock: i64 = row.try_get("total_stock")?;
    let issued: i64 = row.try_get("issued")?;
    Ok(CouponTemplate {
        id: CouponTemplateId::from_db(row.try_get("id")?),
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        amount_off: row.try_get("amount_off")?,
        percent_off_bp: row.try_get("percent_off_bp")?,
        max_discount: row.try_get("max_discount")?,
        min_spend: row.try_get("min_spend")?,
        total_stock,
        issued,
        remaining: (total_stock - issued).max(0),
        per_member_limit: row.try_get("per_member_limit")?,
        valid_days: row.try_get("valid_days")?,
        valid_from: row
            .try_get::<Option<i64>, _>("valid_from")?
            .map(micros_to_rfc3339),
        valid_to: row
            .try_get::<Option<i64>, _>("valid_to")?
            .map(micros_to_rfc3339),
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// A template with its rules in stored form.
#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub view: CouponTemplate,
    pub validity: Validity,
}

fn stored_template_from_row(row: &AnyRow) -> Result<StoredTemplate, sqlx::Error> {
    let valid_days: Option<i64> = row.try_get("valid_days")?;
    let valid_from: Option<i64> = row.try_get("valid_from")?;
    let valid_to: Option<i64> = row.try_get("valid_to")?;
    let validity = match (valid_days, valid_from, valid_to) {
        (Some(days), _, _) => Validity::Days(days),
        (None, Some(from), Some(to)) => Validity::Window { from, to },
        _ => Validity::Days(0),
    };
    Ok(StoredTemplate {
        view: template_from_row(row)?,
        validity,
    })
}

pub async fn fetch_template(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponTemplateId,
) -> ApiResult<Option<StoredTemplate>> {
    let row = sqlx::query(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM coupon_template WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(stored_template_from_row).transpose()?)
}

/// A page of templates in id (= creation) order after `after_id`.
pub async fn list_templates(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    after_id: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<CouponTemplate>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {TEMPLATE_COLUMNS} FROM coupon_template WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    if let Some(after) = after_id {
        sql.push(" AND id > ").bind(after);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(template_from_row)
        .collect::<Result<_, _>>()?)
}

/// Take one unit of stock if any is left. On PostgreSQL the UPDATE also locks the template row
/// until the transaction ends, which serializes every claim of this template behind it.
pub async fn take_stock(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponTemplateId,
) -> ApiResult<bool> {
    let result = sqlx::query(
        "UPDATE coupon_template SET issued = issued + 1 \
         WHERE tenant_id = $1 AND id = $2 AND issued < total_stock",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Give back a unit taken by [`take_stock`] in the same transaction.
pub async fn return_stock(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponTemplateId,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE coupon_template SET issued = issued - 1 \
         WHERE tenant_id = $1 AND id = $2 AND issued > 0",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How many coupons of a template a member holds (in any status).
pub async fn count_held(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    template_id: &CouponTemplateId,
    member_id: &MemberId,
) -> ApiResult<i64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM coupon \
         WHERE tenant_id = $1 AND template_id = $2 AND member_id = $3",
    )
    .bind(tenant_id.as_str())
    .bind(template_id.as_str())
    .bind(member_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(count)
}

/// A coupon to insert.
pub struct NewCoupon<'a> {
    pub id: &'a CouponId,
    pub template_id: &'a CouponTemplateId,
    pub member_id: &'a MemberId,
    pub reason: &'a str,
    pub valid_from: i64,
    pub valid_to: i64,
    pub claimed_at: i64,
}

pub async fn insert_coupon(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    coupon: &NewCoupon<'_>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO coupon (tenant_id, id, template_id, member_id, status, reason, valid_from, \
         valid_to, claimed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(tenant_id.as_str())
    .bind(coupon.id.as_str())
    .bind(coupon.template_id.as_str())
    .bind(coupon.member_id.as_str())
    .bind(CouponStatus::Active.as_str())
    .bind(coupon.reason)
    .bind(coupon.valid_from)
    .bind(coupon.valid_to)
    .bind(coupon.claimed_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A coupon as stored: its raw status and window, for the rules.
#[derive(Debug, Clone)]
pub struct StoredCoupon {
    pub id: CouponId,
    pub template_id: CouponTemplateId,
    pub member_id: MemberId,
    pub status: CouponStatus,
    pub reason: String,
    pub valid_from: i64,
    pub valid_to: i64,
    pub claimed_at: i64,
    pub redeemed_at: Option<i64>,
    pub order_ref: Option<String>,
    pub order_amount: Option<i64>,
    pub discount: Option<i64>,
}

impl StoredCoupon {
    /// The coupon as the API shows it at `now`.
    pub fn view(&self, now: i64) -> Coupon {
        Coupon {
            id: self.id.clone(),
            template_id: self.template_id.clone(),
            member_id: self.member_id.clone(),
            status: effective_status(self.status, self.valid_to, now),
            reason: self.reason.clone(),
            valid_from: micros_to_rfc3339(self.valid_from),
            valid_to: micros_to_rfc3339(self.valid_to),
            claimed_at: micros_to_rfc3339(self.claimed_at),
            redeemed_at: self.redeemed_at.map(micros_to_rfc3339),
            order_ref: self.order_ref.clone(),
            order_amount: self.order_amount,
            discount: self.discount,
        }
    }
}

fn coupon_from_row(row: &AnyRow) -> Result<StoredCoupon, sqlx::Error> {
    Ok(StoredCoupon {
        id: CouponId::from_db(row.try_get("id")?),
        template_id: CouponTemplateId::from_db(row.try_get("template_id")?),
        member_id: MemberId::from_db(row.try_get("member_id")?),
        status: state_column(row, "status")?,
        reason: row.try_get("reason")?,
        valid_from: row.try_get("valid_from")?,
        valid_to: row.try_get("valid_to")?,
        claimed_at: row.try_get("claimed_at")?,
        redeemed_at: row.try_get("redeemed_at")?,
        order_ref: row.try_get("order_ref")?,
        order_amount: row.try_get("order_amount")?,
        discount: row.try_get("discount")?,
    })
}

pub async fn fetch_coupon(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponId,
) -> ApiResult<Option<StoredCoupon>> {
    let row = sqlx::query(&format!(
        "SELECT {COUPON_COLUMNS} FROM coupon WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(coupon_from_row).transpose()?)
}

/// What a redemption records.
pub struct RedeemedOn<'a> {
    pub order_ref: &'a str,
    pub order_amount: i64,
    pub discount: i64,
    pub at: i64,
}

/// Mark an active coupon redeemed; false when it no longer is active. The status condition
/// makes this exact under concurrency: on PostgreSQL a second UPDATE waits for the first's row
/// lock and then re-checks the condition against the committed row; SQLite has one writer.
pub async fn mark_redeemed(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponId,
    redeemed: &RedeemedOn<'_>,
) -> ApiResult<bool> {
    let result = sqlx::query(
        "UPDATE coupon SET status = $1, redeemed_at = $2, order_ref = $3, order_amount = $4, \
         discount = $5, updated_at = $2 WHERE tenant_id = $6 AND id = $7 AND status = $8",
    )
    .bind(CouponStatus::Redeemed.as_str())
    .bind(redeemed.at)
    .bind(redeemed.order_ref)
    .bind(redeemed.order_amount)
    .bind(redeemed.discount)
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(CouponStatus::Active.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Put a redeemed coupon back to `status` (active or expired), clearing the redemption; false
/// when it is not redeemed.
pub async fn mark_unredeemed(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &CouponId,
    status: CouponStatus,
    at: i64,
) -> ApiResult<bool> {
    let result = sqlx::query(
        "UPDATE coupon SET status = $1, redeemed_at = NULL, order_ref = NULL, \
         order_amount = NULL, discount = NULL, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status = $5",
    )
    .bind(status.as_str())
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(CouponStatus::Redeemed.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// A member's coupons in id (= claim) order, optionally of one effective status at `now`.
pub async fn list_member_coupons(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    status: Option<CouponStatus>,
    now: i64,
    after_id: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<StoredCoupon>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {COUPON_COLUMNS} FROM coupon WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND member_id = ")
        .bind(member_id.as_str());
    match status {
        Some(CouponStatus::Active) => {
            sql.push(" AND status = ")
                .bind(CouponStatus::Active.as_str())
                .push(" AND valid_to > ")
                .bind(now);
        }
        Some(CouponStatus::Expired) => {
            sql.push(" AND (status = ")
                .bind(CouponStatus::Expired.as_str())
                .push(" OR (status = ")
                .bind(CouponStatus::Active.as_str())
                .push(" AND valid_to <= ")
                .bind(now)
                .push("))");
        }
        Some(CouponStatus::Redeemed) => {
            sql.push(" AND status = ")
                .bind(CouponStatus::Redeemed.as_str());
        }
        None => {}
    }
    if let Some(after) = after_id {
        sql.push(" AND id > ").bind(after);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(coupon_from_row).collect::<Result<_, _>>()?)
}
