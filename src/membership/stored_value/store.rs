//! Stored-value SQL: plans, top-ups, spends, refunds and settings. Every function takes the
//! tenant and runs on the connection it is given (a transaction for writes).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::model::{Plan, Refund, RefundKind, Settings, Spend, Topup};
use super::rules::SpendPolicy;
use super::{PlanId, RefundId, SpendId, TopupId};
use crate::common::db::Backend;
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::backend_of;
use crate::common::time::micros_to_rfc3339;
use crate::ledger::model::{Address, Asset};

/// Most plans a tenant may hold (plans are a short menu, not a catalogue).
pub const MAX_PLANS: i64 = 200;
/// Most top-ups shown by `GET /v1/members/{id}/wallet` (newest first).
pub const WALLET_TOPUPS_SHOWN: i64 = 100;

const PLAN_COLUMNS: &str = "id, name, pay, bonus, active, created_at";

fn plan_from_row(row: &AnyRow) -> Result<Plan, sqlx::Error> {
    Ok(Plan {
        id: PlanId::from_db(row.try_get("id")?),
        name: row.try_get("name")?,
        pay: row.try_get("pay")?,
        bonus: row.try_get("bonus")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

pub async fn count_plans(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM topup_plan WHERE tenant_id = $1")
        .bind(tenant_id.as_str())
        .fetch_one(conn)
        .await
}

pub async fn insert_plan(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    plan: &Plan,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO topup_plan (tenant_id, id, name, pay, bonus, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(plan.id.as_str())
    .bind(plan.name.as_str())
    .bind(plan.pay)
    .bind(plan.bonus)
    .bind(i64::from(plan.active))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn plan(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &PlanId,
) -> Result<Option<Plan>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {PLAN_COLUMNS} FROM topup_plan WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(plan_from_row).transpose()
}

pub async fn plans(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> Result<Vec<Plan>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {PLAN_COLUMNS} FROM topup_plan WHERE tenant_id = $1 \
         ORDER BY created_at, id LIMIT $2"
    ))
    .bind(tenant_id.as_str())
    .bind(MAX_PLANS)
    .fetch_all(conn)
    .await?;
    rows.iter().map(plan_from_row).collect()
}

/// The tenant's settings, or the defaults when never set.
pub async fn settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> Result<Settings, sqlx::Error> {
    let row =
        sqlx::query("SELECT spend_policy, cap FROM stored_value_setting WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(conn)
            .await?;
    let Some(row) = row else {
        return Ok(Settings::default());
    };
    let policy: String = row.try_get("spend_policy")?;
    Ok(Settings {
        spend_policy: SpendPolicy::parse(&policy).unwrap_or_default(),
        cap: row.try_get("cap")?,
    })
}

/// Take the settings row's lock for a read-change-write (PostgreSQL; SQLite has one writer),
/// creating the row with the defaults first so that there is a row to lock. Without it two
/// concurrent changes of different fields each wrote back the other's field as they had read
/// it, and one change was lost.
pub async fn lock_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    at: i64,
) -> Result<(), sqlx::Error> {
    let defaults = Settings::default();
    sqlx::query(
        "INSERT INTO stored_value_setting (tenant_id, spend_policy, cap, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(defaults.spend_policy.as_str())
    .bind(defaults.cap)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    if backend_of(conn) == Backend::Postgres {
        sqlx::query("SELECT tenant_id FROM stored_value_setting WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn save_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    settings: &Settings,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stored_value_setting (tenant_id, spend_policy, cap, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
         spend_policy = excluded.spend_policy, cap = excluded.cap, updated_at = excluded.updated_at",
    )
    .bind(tenant_id.as_str())
    .bind(settings.spend_policy.as_str())
    .bind(settings.cap)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Take the member's row lock on PostgreSQL so that one member's wallet operations (cap
/// check, split, refund limits) run one at a time; on SQLite the single writer already does.
pub async fn lock_member(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> Result<(), sqlx::Error> {
    if backend_of(conn) == Backend::Postgres {
        sqlx::query("SELECT id FROM member WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant_id.as_str())
            .bind(member_id.as_str())
            .fetch_optional(conn)
            .await?;
    }
    Ok(())
}

/// A member's wallet as the ledger holds it: (principal, bonus) available to spend
/// (posted balance less pending debits).
pub async fn wallet_available(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> Result<(i64, i64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT asset, credits_posted - debits_posted - debits_pending AS available \
         FROM ledger_account WHERE tenant_id = $1 AND address = $2 AND asset IN ($3, $4)",
    )
    .bind(tenant_id.as_str())
    .bind(Address::member(member_id).as_str())
    .bind(Asset::WalletPrincipal.as_str())
    .bind(Asset::WalletBonus.as_str())
    .fetch_all(conn)
    .await?;
    let (mut principal, mut bonus) = (0, 0);
    for row in rows {
        let asset: String = row.try_get("asset")?;
        let available: i64 = row.try_get("available")?;
        match Asset::parse(&asset) {
            Some(Asset::WalletPrincipal) => principal = available,
            Some(Asset::WalletBonus) => bonus = available,
            _ => {}
        }
    }
    Ok((principal, bonus))
}

const TOPUP_COLUMNS: &str = "id, member_id, plan_id, payment_ref, pay, bonus, status, created_at";

fn topup_from_row(row: &AnyRow) -> Result<Topup, sqlx::Error> {
    Ok(Topup {
        id: TopupId::from_db(row.try_get("id")?),
        member_id: MemberId::from_db(row.try_get("member_id")?),
        plan_id: PlanId::from_db(row.try_get("plan_id")?),
        payment_ref: row.try_get("payment_ref")?,
        pay: row.try_get("pay")?,
        bonus: row.try_get("bonus")?,
        status: row.try_get("status")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// Insert a top-up unless its payment reference is already taken; `false` when it was (then
/// read the original with [`topup_by_payment_ref`]). `ON CONFLICT DO NOTHING` waits for a
/// concurrent inserter of the same reference and, once that commits, skips the row without
/// aborting the transaction.
pub async fn insert_topup(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    topup: &Topup,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO wallet_topup (tenant_id, id, member_id, plan_id, payment_ref, pay, bonus, \
         status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, payment_ref) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(topup.id.as_str())
    .bind(topup.member_id.as_str())
    .bind(topup.plan_id.as_str())
    .bind(topup.payment_ref.as_str())
    .bind(topup.pay)
    .bind(topup.bonus)
    .bind(topup.status.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn topup_by_payment_ref(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    payment_ref: &str,
) -> Result<Option<Topup>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {TOPUP_COLUMNS} FROM wallet_topup WHERE tenant_id = $1 AND payment_ref = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(payment_ref)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(topup_from_row).transpose()
}

pub async fn topup(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &TopupId,
) -> Result<Option<Topup>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {TOPUP_COLUMNS} FROM wallet_topup WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(topup_from_row).transpose()
}

pub async fn member_topups(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> Result<Vec<Topup>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {TOPUP_COLUMNS} FROM wallet_topup WHERE tenant_id = $1 AND member_id = $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .bind(WALLET_TOPUPS_SHOWN)
    .fetch_all(conn)
    .await?;
    rows.iter().map(topup_from_row).collect()
}

pub async fn set_topup_status(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &TopupId,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE wallet_topup SET status = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(status)
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

const SPEND_COLUMNS: &str = "id, member_id, reference, amount, principal, bonus, created_at";

fn spend_from_row(row: &AnyRow) -> Result<Spend, sqlx::Error> {
    Ok(Spend {
        spend_id: SpendId::from_db(row.try_get("id")?),
        member_id: MemberId::from_db(row.try_get("member_id")?),
        reference: row.try_get("reference")?,
        amount: row.try_get("amount")?,
        principal: row.try_get("principal")?,
        bonus: row.try_get("bonus")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// Insert a spend unless its reference is taken (`false`; see [`insert_topup`]).
pub async fn insert_spend(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    spend: &Spend,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO wallet_spend (tenant_id, id, member_id, reference, amount, principal, \
         bonus, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, reference) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(spend.spend_id.as_str())
    .bind(spend.member_id.as_str())
    .bind(spend.reference.as_str())
    .bind(spend.amount)
    .bind(spend.principal)
    .bind(spend.bonus)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn spend_by_reference(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    reference: &str,
) -> Result<Option<Spend>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SPEND_COLUMNS} FROM wallet_spend WHERE tenant_id = $1 AND reference = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(reference)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(spend_from_row).transpose()
}

pub async fn spend(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &SpendId,
) -> Result<Option<Spend>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SPEND_COLUMNS} FROM wallet_spend WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(spend_from_row).transpose()
}

const REFUND_COLUMNS: &str =
    "id, member_id, kind, source_id, reference, amount, principal, bonus, created_at";

fn refund_from_row(row: &AnyRow) -> Result<Refund, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let source: String = row.try_get("source_id")?;
    let kind = if kind == RefundKind::Topup.as_str() {
        RefundKind::Topup
    } else {
        RefundKind::Spend
    };
    Ok(Refund {
        id: RefundId::from_db(row.try_get("id")?),
        member_id: MemberId::from_db(row.try_get("member_id")?),
        kind,
        spend_id: (kind == RefundKind::Spend).then(|| source.clone()),
        topup_id: (kind == RefundKind::Topup).then_some(source),
        reference: row.try_get("reference")?,
        amount: row.try_get("amount")?,
        principal: row.try_get("principal")?,
        bonus: row.try_get("bonus")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// Insert a refund unless its reference is taken (`false`; see [`insert_topup`]).
pub async fn insert_refund(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    refund: &Refund,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let source = refund
        .spend_id
        .as_deref()
        .or(refund.topup_id.as_deref())
        .unwrap_or_default();
    let done = sqlx::query(
        "INSERT INTO wallet_refund (tenant_id, id, member_id, kind, source_id, reference, amount, \
         principal, bonus, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tenant_id, reference) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(refund.id.as_str())
    .bind(refund.member_id.as_str())
    .bind(refund.kind.as_str())
    .bind(source)
    .bind(refund.reference.as_deref())
    .bind(refund.amount)
    .bind(refund.principal)
    .bind(refund.bonus)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn refund_by_reference(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    reference: &str,
) -> Result<Option<Refund>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {REFUND_COLUMNS} FROM wallet_refund WHERE tenant_id = $1 AND reference = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(reference)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(refund_from_row).transpose()
}

/// What earlier refunds of one spend returned: (principal, bonus).
pub async fn refunded_of(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    source_id: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(principal), 0) AS BIGINT) AS principal, \
         CAST(COALESCE(SUM(bonus), 0) AS BIGINT) AS bonus \
         FROM wallet_refund WHERE tenant_id = $1 AND source_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(source_id)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("principal")?, row.try_get("bonus")?))
}

/// The refund of a top-up, if it was refunded.
pub async fn topup_refund(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    topup_id: &TopupId,
) -> Result<Option<Refund>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {REFUND_COLUMNS} FROM wallet_refund \
         WHERE tenant_id = $1 AND source_id = $2 AND kind = $3"
    ))
    .bind(tenant_id.as_str())
    .bind(topup_id.as_str())
    .bind(RefundKind::Topup.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(refund_from_row).transpose()
}
