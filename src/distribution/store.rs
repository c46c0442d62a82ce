//! Distribution's SQL: settings, product rates, promoters, bindings, commissions and
//! withdrawals. Every query is scoped by tenant; counters change relatively.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::{backend_of, Backend, Sql};
use crate::common::time::micros_to_rfc3339;

use super::model::{
    Commission, CommissionStatus, ProductRates, Promoter, PromoterStatus, Settings, Withdrawal,
    WithdrawalStatus,
};

/// ` FOR UPDATE` on PostgreSQL (SQLite has one writer).
fn for_update(conn: &AnyConnection) -> &'static str {
    if backend_of(conn) == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    }
}

/// `SELECT {columns} FROM {table} WHERE tenant_id = … AND {owner_column} = …` with the optional
/// status filter and cursor, in id order, at most `limit` rows.
#[allow(clippy::too_many_arguments)]
fn page_query(
    conn: &AnyConnection,
    columns: &str,
    table: &str,
    tenant_id: &TenantId,
    owner: Option<(&str, &str)>,
    status: Option<&'static str>,
    after: Option<&str>,
    limit: i64,
) -> Sql {
    let mut sql = Sql::for_conn(
        conn,
        &format!("SELECT {columns} FROM {table} WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    if let Some((column, value)) = owner {
        sql.push(&format!(" AND {column} = ")).bind(value);
    }
    if let Some(status) = status {
        sql.push(" AND status = ").bind(status);
    }
    if let Some(after) = after {
        sql.push(" AND id > ").bind(after);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit);
    sql
}

// --- settings ------------------------------------------------------------------------------

pub async fn settings(conn: &mut AnyConnection, tenant_id: &TenantId) -> ApiResult<Settings> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT settings FROM distribution_setting WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(conn)
            .await?;
    match text {
        None => Ok(Settings::default()),
        Some(text) => serde_json::from_str(&text).map_err(ApiError::internal),
    }
}

/// Write the settings (insert or replace) after taking the row's lock.
pub async fn put_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    settings: &Settings,
    now: i64,
) -> ApiResult<()> {
    let text = serde_json::to_string(settings).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO distribution_setting (tenant_id, settings, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, \
         updated_at = excluded.updated_at",
    )
    .bind(tenant_id.as_str())
    .bind(text)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lock the settings row (creating it with the defaults) so concurrent updates serialise.
pub async fn lock_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    now: i64,
) -> ApiResult<()> {
    let text = serde_json::to_string(&Settings::default()).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO distribution_setting (tenant_id, settings, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(text)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let lock = for_update(conn);
    sqlx::query(&format!(
        "SELECT tenant_id FROM distribution_setting WHERE tenant_id = $1{lock}"
    ))
    .bind(tenant_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(())
}

// --- product rates -------------------------------------------------------------------------

pub async fn product_rates(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    product_id: &str,
) -> ApiResult<Option<ProductRates>> {
    let row = sqlx::query(
        "SELECT level1_bp, level2_bp FROM distribution_product_rate \
         WHERE tenant_id = $1 AND product_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(product_id)
    .fetch_optional(conn)
    .await?;
    Ok(row
        .map(|row| {
            Ok::<_, sqlx::Error>(ProductRates {
                level1_bp: row.try_get("level1_bp")?,
                level2_bp: row.try_get("level2_bp")?,
            })
        })
        .transpose()?)
}

pub async fn put_product_rates(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    product_id: &str,
    rates: &ProductRates,
    now: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO distribution_product_rate (tenant_id, product_id, level1_bp, level2_bp, \
         updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, product_id) DO UPDATE \
         SET level1_bp = excluded.level1_bp, level2_bp = excluded.level2_bp, \
         updated_at = excluded.updated_at",
    )
    .bind(tenant_id.as_str())
    .bind(product_id)
    .bind(rates.level1_bp)
    .bind(rates.level2_bp)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_product_rates(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    product_id: &str,
) -> ApiResult<()> {
    sqlx::query("DELETE FROM distribution_product_rate WHERE tenant_id = $1 AND product_id = $2")
        .bind(tenant_id.as_str())
        .bind(product_id)
        .execute(conn)
        .await?;
    Ok(())
}

// --- promoters -----------------------------------------------------------------------------

const PROMOTER_COLUMNS: &str =
    "id, member_id, invited_by_promoter_id, status, share_code, debt, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct StoredPromoter {
    pub id: String,
    pub member_id: MemberId,
    pub invited_by: Option<String>,
    pub status: PromoterStatus,
    pub share_code: Option<String>,
    pub debt: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StoredPromoter {
    pub fn view(&self) -> Promoter {
        Promoter {
            id: self.id.clone(),
            member_id: self.member_id.to_string(),
            invited_by_promoter_id: self.invited_by.clone(),
            status: self.status,
            share_code: self.share_code.clone(),
            debt: self.debt,
            created_at: micros_to_rfc3339(self.created_at),
            updated_at: micros_to_rfc3339(self.updated_at),
        }
    }
}

fn promoter_from_row(row: &AnyRow) -> ApiResult<StoredPromoter> {
    let status: String = row.try_get("status")?;
    Ok(StoredPromoter {
        id: row.try_get("id")?,
        member_id: MemberId::from_db(row.try_get("member_id")?),
        invited_by: row.try_get("invited_by_promoter_id")?,
        status: PromoterStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("promoter status {status}")))?,
        share_code: row.try_get("share_code")?,
        debt: row.try_get("debt")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// One promoter by id, optionally locked.
pub async fn promoter(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    lock: bool,
) -> ApiResult<Option<StoredPromoter>> {
    let lock = if lock { for_update(conn) } else { "" };
    let row = sqlx::query(&format!(
        "SELECT {PROMOTER_COLUMNS} FROM promoter WHERE tenant_id = $1 AND id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(promoter_from_row).transpose()
}

pub async fn promoter_of_member(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<Option<StoredPromoter>> {
    let row = sqlx::query(&format!(
        "SELECT {PROMOTER_COLUMNS} FROM promoter WHERE tenant_id = $1 AND member_id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(promoter_from_row).transpose()
}

pub async fn promoter_by_code(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
) -> ApiResult<Option<StoredPromoter>> {
    let row = sqlx::query(&format!(
        "SELECT {PROMOTER_COLUMNS} FROM promoter WHERE tenant_id = $1 AND share_code = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(code)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(promoter_from_row).transpose()
}

/// Insert a promoter; false when the member is one already.
pub async fn insert_promoter(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    promoter: &StoredPromoter,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO promoter (tenant_id, id, member_id, invited_by_promoter_id, status, share_code, debt, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8) \
         ON CONFLICT (tenant_id, member_id) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(promoter.id.as_str())
    .bind(promoter.member_id.as_str())
    .bind(promoter.invited_by.as_deref())
    .bind(promoter.status.as_str())
    .bind(promoter.share_code.as_deref())
    .bind(promoter.created_at)
    .bind(promoter.updated_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Move a promoter from one of `from` to `to`; false when it was in none of them.
pub async fn transition_promoter(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    from: &[PromoterStatus],
    to: PromoterStatus,
    now: i64,
) -> ApiResult<bool> {
    let allowed = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let done = sqlx::query(&format!(
        "UPDATE promoter SET status = $1, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status IN ({allowed})"
    ))
    .bind(to.as_str())
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Set the share code once; false when the code is taken (or the promoter has one already).
pub async fn set_share_code(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    code: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE promoter SET share_code = $1, updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND share_code IS NULL",
    )
    .bind(code)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Change a promoter's debt by `delta` (relative; never below zero).
pub async fn add_debt(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    delta: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE promoter SET debt = debt + $1 WHERE tenant_id = $2 AND id = $3 AND debt + $1 >= 0",
    )
    .bind(delta)
    .bind(tenant_id.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list_promoters(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    status: Option<PromoterStatus>,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<StoredPromoter>> {
    let sql = page_query(
        conn,
        PROMOTER_COLUMNS,
        "promoter",
        tenant_id,
        None,
        status.map(PromoterStatus::as_str),
        after,
        limit,
    );
    let rows = sql.query().fetch_all(conn).await?;
    rows.iter().map(promoter_from_row).collect()
}

/// (team size, customers bound now, level-1 orders, GMV, pending commission, withdrawn).
pub async fn promoter_stats(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    now: i64,
) -> ApiResult<[i64; 6]> {
    let team: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM promoter WHERE tenant_id = $1 AND invited_by_promoter_id = $2 \
         AND status IN ('approved', 'suspended')",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let customers: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM promoter_binding WHERE tenant_id = $1 AND promoter_id = $2 \
         AND (ends_at IS NULL OR ends_at > $3)",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS orders, \
         CAST(COALESCE(SUM(order_total - refunded), 0) AS BIGINT) AS gmv FROM commission \
         WHERE tenant_id = $1 AND promoter_id = $2 AND level = 1 AND status <> 'voided'",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM commission WHERE tenant_id = $1 \
         AND promoter_id = $2 AND status = 'pending'",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let withdrawn: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM withdrawal WHERE tenant_id = $1 \
         AND promoter_id = $2 AND status IN ('approved', 'paid')",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok([
        team,
        customers,
        row.try_get("orders")?,
        row.try_get("gmv")?,
        pending,
        withdrawn,
    ])
}

// --- bindings ------------------------------------------------------------------------------

/// A customer's binding row: (promoter id, bound at, ends at).
pub async fn binding(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    lock: bool,
) -> ApiResult<Option<(String, i64, Option<i64>)>> {
    let lock = if lock { for_update(conn) } else { "" };
    let row = sqlx::query(&format!(
        "SELECT promoter_id, bound_at, ends_at FROM promoter_binding \
         WHERE tenant_id = $1 AND member_id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row
        .map(|row| {
            Ok::<_, sqlx::Error>((
                row.try_get("promoter_id")?,
                row.try_get("bound_at")?,
                row.try_get("ends_at")?,
            ))
        })
        .transpose()?)
}

/// Insert or move a customer's binding.
pub async fn put_binding(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    promoter_id: &str,
    bound_at: i64,
    ends_at: Option<i64>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO promoter_binding (tenant_id, member_id, promoter_id, bound_at, ends_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, member_id) DO UPDATE SET \
         promoter_id = excluded.promoter_id, bound_at = excluded.bound_at, \
         ends_at = excluded.ends_at",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .bind(promoter_id)
    .bind(bound_at)
    .bind(ends_at)
    .execute(conn)
    .await?;
    Ok(())
}

// --- commissions ---------------------------------------------------------------------------

const COMMISSION_COLUMNS: &str = "id, order_id, level, promoter_id, order_total, \
    base, rate_num, rate_den, refunded, original, amount, status, transfer_id, revision, \
    release_at, created_at";

#[derive(Debug, Clone)]
pub struct StoredCommission {
    pub id: String,
    pub order_id: String,
    pub level: i64,
    pub promoter_id: String,
    pub order_total: i64,
    pub base: i64,
    pub rate_num: i64,
    pub rate_den: i64,
    pub refunded: i64,
    pub original: i64,
    pub amount: i64,
    pub status: CommissionStatus,
    pub transfer_id: Option<String>,
    pub revision: i64,
    pub release_at: i64,
    pub created_at: i64,
}

impl StoredCommission {
    pub fn view(&self) -> Commission {
        Commission {
            id: self.id.clone(),
            order_id: self.order_id.clone(),
            level: self.level,
            promoter_id: self.promoter_id.clone(),
            amount: self.amount,
            original: self.original,
            status: self.status,
            release_at: micros_to_rfc3339(self.release_at),
            created_at: micros_to_rfc3339(self.created_at),
        }
    }
}

fn commission_from_row(row: &AnyRow) -> ApiResult<StoredCommission> {
    let status: String = row.try_get("status")?;
    Ok(StoredCommission {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        level: row.try_get("level")?,
        promoter_id: row.try_get("promoter_id")?,
        order_total: row.try_get("order_total")?,
        base: row.try_get("base")?,
        rate_num: row.try_get("rate_num")?,
        rate_den: row.try_get("rate_den")?,
        refunded: row.try_get("refunded")?,
        original: row.try_get("original")?,
        amount: row.try_get("amount")?,
        status: CommissionStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("commission status {status}")))?,
        transfer_id: row.try_get("transfer_id")?,
        revision: row.try_get("revision")?,
        release_at: row.try_get("release_at")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Insert a commission; false when the order already has one at this level (never twice).
pub async fn insert_commission(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    c: &StoredCommission,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO commission (tenant_id, id, order_id, level, promoter_id, order_total, base, \
         rate_num, rate_den, refunded, original, amount, status, transfer_id, revision, \
         release_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $17) \
         ON CONFLICT (tenant_id, order_id, level) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(c.id.as_str())
    .bind(c.order_id.as_str())
    .bind(c.level)
    .bind(c.promoter_id.as_str())
    .bind(c.order_total)
    .bind(c.base)
    .bind(c.rate_num)
    .bind(c.rate_den)
    .bind(c.refunded)
    .bind(c.original)
    .bind(c.amount)
    .bind(c.status.as_str())
    .bind(c.transfer_id.as_deref())
    .bind(c.revision)
    .bind(c.release_at)
    .bind(c.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The commissions of an order, locked, level order.
pub async fn commissions_of_order(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> ApiResult<Vec<StoredCommission>> {
    let lock = for_update(conn);
    let rows = sqlx::query(&format!(
        "SELECT {COMMISSION_COLUMNS} FROM commission WHERE tenant_id = $1 AND order_id = $2 \
         ORDER BY level{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(commission_from_row).collect()
}

/// Save the changing fields of a commission.
pub async fn save_commission(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    c: &StoredCommission,
    released_at: Option<i64>,
    now: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE commission SET refunded = $1, amount = $2, status = $3, transfer_id = $4, \
         revision = $5, released_at = COALESCE($6, released_at), updated_at = $7 \
         WHERE tenant_id = $8 AND id = $9",
    )
    .bind(c.refunded)
    .bind(c.amount)
    .bind(c.status.as_str())
    .bind(c.transfer_id.as_deref())
    .bind(c.revision)
    .bind(released_at)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(c.id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list_commissions(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    promoter_id: &str,
    status: Option<CommissionStatus>,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<StoredCommission>> {
    let sql = page_query(
        conn,
        COMMISSION_COLUMNS,
        "commission",
        tenant_id,
        Some(("promoter_id", promoter_id)),
        status.map(CommissionStatus::as_str),
        after,
        limit,
    );
    let rows = sql.query().fetch_all(conn).await?;
    rows.iter().map(commission_from_row).collect()
}

// --- withdrawals ---------------------------------------------------------------------------

const WITHDRAWAL_COLUMNS: &str =
    "id, promoter_id, amount, fee, status, reference, created_at, updated_at";

fn withdrawal_from_row(row: &AnyRow) -> ApiResult<Withdrawal> {
    let status: String = row.try_get("status")?;
    let amount: i64 = row.try_get("amount")?;
    let fee: i64 = row.try_get("fee")?;
    Ok(Withdrawal {
        id: row.try_get("id")?,
        promoter_id: row.try_get("promoter_id")?,
        amount,
        fee,
        net: amount - fee,
        status: WithdrawalStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("withdrawal status {status}")))?,
        reference: row.try_get("reference")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
    })
}

pub async fn insert_withdrawal(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    promoter_id: &str,
    amount: i64,
    fee: i64,
    now: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO withdrawal (tenant_id, id, promoter_id, amount, fee, status, reference, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', NULL, $6, $6)",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .bind(promoter_id)
    .bind(amount)
    .bind(fee)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn withdrawal(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<Withdrawal>> {
    let row = sqlx::query(&format!(
        "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawal WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(withdrawal_from_row).transpose()
}

/// Move a withdrawal from `from` to `to` once; false when it was not in `from`.
pub async fn transition_withdrawal(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    from: WithdrawalStatus,
    to: WithdrawalStatus,
    reference: Option<&str>,
    now: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE withdrawal SET status = $1, reference = COALESCE($2, reference), updated_at = $3 \
         WHERE tenant_id = $4 AND id = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(reference)
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(id)
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list_withdrawals(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    promoter_id: &str,
    status: Option<WithdrawalStatus>,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<Withdrawal>> {
    let sql = page_query(
        conn,
        WITHDRAWAL_COLUMNS,
        "withdrawal",
        tenant_id,
        Some(("promoter_id", promoter_id)),
        status.map(WithdrawalStatus::as_str),
        after,
        limit,
    );
    let rows = sql.query().fetch_all(conn).await?;
    rows.iter().map(withdrawal_from_row).collect()
}

// --- reports -------------------------------------------------------------------------------

/// The top promoters by level-1 GMV of orders paid since `since`: (promoter, member, orders,
/// gmv, commission of both levels).
pub async fn leaderboard(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    since: i64,
    limit: i64,
) -> ApiResult<Vec<(String, String, i64, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT c.promoter_id, p.member_id, \
         CAST(SUM(CASE WHEN c.level = 1 THEN 1 ELSE 0 END) AS BIGINT) AS orders, \
         CAST(SUM(CASE WHEN c.level = 1 THEN c.order_total - c.refunded ELSE 0 END) AS BIGINT) \
         AS gmv, \
         CAST(SUM(c.amount) AS BIGINT) AS commission \
         FROM commission c JOIN promoter p ON p.tenant_id = c.tenant_id AND p.id = c.promoter_id \
         WHERE c.tenant_id = $1 AND c.created_at >= $2 AND c.status <> 'voided' \
         GROUP BY c.promoter_id, p.member_id \
         ORDER BY gmv DESC, commission DESC, c.promoter_id LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(since)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("promoter_id")?,
                row.try_get("member_id")?,
                row.try_get("orders")?,
                row.try_get("gmv")?,
                row.try_get("commission")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// (promoters approved, GMV, pending, owed in total, withdrawn, debt).
pub async fn summary(conn: &mut AnyConnection, tenant_id: &TenantId) -> ApiResult<[i64; 6]> {
    let promoters: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM promoter WHERE tenant_id = $1 AND status = 'approved'",
    )
    .bind(tenant_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let debt: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(debt), 0) AS BIGINT) FROM promoter WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN level = 1 AND status <> 'voided' \
         THEN order_total - refunded ELSE 0 END), 0) AS BIGINT) AS gmv, \
         CAST(COALESCE(SUM(CASE WHEN status = 'pending' THEN amount ELSE 0 END), 0) AS BIGINT) \
         AS pending, \
         CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS owed FROM commission WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let withdrawn: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM withdrawal WHERE tenant_id = $1 \
         AND status IN ('approved', 'paid')",
    )
    .bind(tenant_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok([
        promoters,
        row.try_get("gmv")?,
        row.try_get("pending")?,
        row.try_get("owed")?,
        withdrawn,
        debt,
    ])
}
