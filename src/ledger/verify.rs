//! `shequn ledger verify` and `GET /v1/ledger/verify`: check the ledger's invariants from the
//! stored rows.
//!
//! Per asset, all balances sum to zero (and pending debits equal pending credits); each
//! account's stored totals equal the sums recomputed from its transfers and resolutions; no
//! member account is negative or over-committed; no pending transfer was resolved twice, and
//! every resolution belongs to a pending transfer and posts no more than it reserved; each
//! account's transfers form one history list from its head.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{AnyPool, Row as _};
use utoipa::ToSchema;

use super::engine::Totals;
use super::store::totals_from_row;
use crate::common::ids::TenantId;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssetSummary {
    /// Sum of all posted balances (must be 0).
    pub balance_sum: i64,
    pub pending_debits: i64,
    pub pending_credits: i64,
    pub accounts: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Violation {
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub tenant_id: String,
    pub transfers: i64,
    pub assets: BTreeMap<String, AssetSummary>,
    pub violations: Vec<Violation>,
}

type Key = (String, String);

/// Per-account sums of one side. The aggregate runs in SQL; if it cannot (a sum past what the
/// database's integers hold: rows written before totals were checked, or written by hand), the
/// rows are summed here in i128 instead, so that verify reports the damage rather than failing.
async fn sums(
    pool: &AnyPool,
    sql: &str,
    tenant_id: &TenantId,
) -> Result<HashMap<Key, i128>, sqlx::Error> {
    let aggregated = sqlx::query(&format!(
        "SELECT address, asset, CAST(SUM(amount) AS BIGINT) AS total FROM ({sql}) s \
         GROUP BY address, asset"
    ))
    .bind(tenant_id.as_str())
    .fetch_all(pool)
    .await;
    match aggregated {
        Ok(rows) => rows
            .iter()
            .map(|row| {
                Ok((
                    (row.try_get("address")?, row.try_get("asset")?),
                    i128::from(row.try_get::<i64, _>("total")?),
                ))
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "ledger sums overflow the database's integers; summing row by row");
            let mut totals: HashMap<Key, i128> = HashMap::new();
            let mut rows = sqlx::query(sql).bind(tenant_id.as_str()).fetch(pool);
            while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
                let key = (row.try_get("address")?, row.try_get("asset")?);
                *totals.entry(key).or_default() += i128::from(row.try_get::<i64, _>("amount")?);
            }
            Ok(totals)
        }
    }
}

fn side(column: &str, condition: &str) -> String {
    format!(
        "SELECT t.{column} AS address, t.asset, t.amount \
         FROM ledger_transfer t LEFT JOIN ledger_resolution r \
         ON r.tenant_id = t.tenant_id AND r.pending_id = t.id \
         WHERE t.tenant_id = $1 AND {condition}"
    )
}

fn resolved_side(column: &str) -> String {
    format!(
        "SELECT t.{column} AS address, t.asset, r.amount \
         FROM ledger_resolution r JOIN ledger_transfer t \
         ON t.tenant_id = r.tenant_id AND t.id = r.pending_id \
         WHERE r.tenant_id = $1 AND r.kind = 'posted'"
    )
}

/// Check every invariant for one tenant.
pub async fn verify(pool: &AnyPool, tenant_id: &TenantId) -> Result<VerifyReport, sqlx::Error> {
    let mut violations = Vec::new();
    let stored = stored_totals(pool, tenant_id).await?;
    let recomputed = Recomputed::read(pool, tenant_id).await?;
    let assets = check_accounts(&stored, &recomputed, &mut violations);
    let assets = check_assets(assets, &mut violations);
    check_resolutions(pool, tenant_id, &mut violations).await?;
    history_lists(pool, tenant_id, &mut violations).await?;
    let transfers: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transfer WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_one(pool)
            .await?;
    Ok(VerifyReport {
        ok: violations.is_empty(),
        tenant_id: tenant_id.to_string(),
        transfers,
        assets,
        violations,
    })
}

/// Every account's stored totals.
async fn stored_totals(
    pool: &AnyPool,
    tenant_id: &TenantId,
) -> Result<HashMap<Key, Totals>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT address, asset, debits_posted, credits_posted, debits_pending, credits_pending \
         FROM ledger_account WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_str())
    .fetch_all(pool)
    .await?;
    let mut stored: HashMap<Key, Totals> = HashMap::new();
    for row in &rows {
        stored.insert(
            (row.try_get("address")?, row.try_get("asset")?),
            totals_from_row(row)?,
        );
    }
    Ok(stored)
}

/// Each account's totals as the transfers and resolutions make them, per side.
struct Recomputed {
    /// Plain (never pending) transfers.
    debits: HashMap<Key, i128>,
    credits: HashMap<Key, i128>,
    /// What resolutions posted of pending transfers.
    posted_debits: HashMap<Key, i128>,
    posted_credits: HashMap<Key, i128>,
    /// Pending transfers not resolved yet.
    pending_debits: HashMap<Key, i128>,
    pending_credits: HashMap<Key, i128>,
}

impl Recomputed {
    async fn read(pool: &AnyPool, tenant_id: &TenantId) -> Result<Self, sqlx::Error> {
        let debits = sums(pool, &side("debit_address", "t.pending = 0"), tenant_id).await?;
        let credits = sums(pool, &side("credit_address", "t.pending = 0"), tenant_id).await?;
        let posted_debits = sums(pool, &resolved_side("debit_address"), tenant_id).await?;
        let posted_credits = sums(pool, &resolved_side("credit_address"), tenant_id).await?;
        let open = "t.pending = 1 AND r.pending_id IS NULL";
        let pending_debits = sums(pool, &side("debit_address", open), tenant_id).await?;
        let pending_credits = sums(pool, &side("credit_address", open), tenant_id).await?;
        Ok(Recomputed {
            debits,
            credits,
            posted_debits,
            posted_credits,
            pending_debits,
            pending_credits,
        })
    }

    /// One account's totals, in the order of [`wide`].
    fn totals(&self, key: &Key) -> [i128; 4] {
        let get = |map: &HashMap<Key, i128>, key: &Key| map.get(key).copied().unwrap_or(0);
        [
            get(&self.debits, key) + get(&self.posted_debits, key),
            get(&self.credits, key) + get(&self.posted_credits, key),
            get(&self.pending_debits, key),
            get(&self.pending_credits, key),
        ]
    }
}

/// Every account, stored or named by a transfer: its stored totals against the recomputed
/// ones, and a member account's balance against zero. Returns each asset's sums.
fn check_accounts(
    stored: &HashMap<Key, Totals>,
    from_transfers: &Recomputed,
    violations: &mut Vec<Violation>,
) -> BTreeMap<String, WideSummary> {
    let mut keys: Vec<Key> = stored.keys().cloned().collect();
    for map in [
        &from_transfers.debits,
        &from_transfers.credits,
        &from_transfers.pending_debits,
        &from_transfers.pending_credits,
    ] {
        keys.extend(map.keys().cloned());
    }
    keys.sort();
    keys.dedup();
    // Every figure in i128: the sums of stored i64 totals cannot overflow there, so damaged
    // rows come out as violations, never as an arithmetic error.
    let mut assets: BTreeMap<String, WideSummary> = BTreeMap::new();
    for key in &keys {
        let recomputed = from_transfers.totals(key);
        let actual = stored.get(key).copied().map(wide);
        if actual != Some(recomputed) {
            violations.push(Violation {
                kind: "balance_differs_from_transfers".into(),
                detail: json!({
                    "address": key.0, "asset": key.1,
                    "stored": actual.map(|t| t.map(figure)),
                    "recomputed": recomputed.map(figure),
                }),
            });
        }
        let [debits_posted, credits_posted, debits_pending, credits_pending] =
            actual.unwrap_or(recomputed);
        let balance = credits_posted - debits_posted;
        if key.0.starts_with("member:")
            && (balance < 0 || debits_posted + debits_pending > credits_posted)
        {
            violations.push(Violation {
                kind: "member_balance_negative".into(),
                detail: json!({ "address": key.0, "asset": key.1, "balance": figure(balance),
                                "pending_debits": figure(debits_pending) }),
            });
        }
        let summary = assets.entry(key.1.clone()).or_default();
        summary.balance_sum += balance;
        summary.pending_debits += debits_pending;
        summary.pending_credits += credits_pending;
        summary.accounts += 1;
    }
    assets
}

/// Each asset sums to zero, and its sums fit the report. Returns the summaries as reported.
fn check_assets(
    assets: BTreeMap<String, WideSummary>,
    violations: &mut Vec<Violation>,
) -> BTreeMap<String, AssetSummary> {
    let mut asset_summaries = BTreeMap::new();
    for (asset, summary) in assets {
        let narrow = summary.narrow();
        if summary.balance_sum != 0 || summary.pending_debits != summary.pending_credits {
            violations.push(Violation {
                kind: "asset_does_not_sum_to_zero".into(),
                detail: json!({ "asset": asset, "balance_sum": figure(summary.balance_sum),
                                "pending_debits": figure(summary.pending_debits),
                                "pending_credits": figure(summary.pending_credits) }),
            });
        }
        if narrow.is_none() {
            violations.push(Violation {
                kind: "asset_total_out_of_range".into(),
                detail: json!({ "asset": asset, "pending_debits": figure(summary.pending_debits),
                                "pending_credits": figure(summary.pending_credits) }),
            });
        }
        asset_summaries.insert(
            asset,
            narrow.unwrap_or(AssetSummary {
                balance_sum: clamp(summary.balance_sum),
                pending_debits: clamp(summary.pending_debits),
                pending_credits: clamp(summary.pending_credits),
                accounts: summary.accounts,
            }),
        );
    }
    asset_summaries
}

/// No pending transfer is resolved twice, and every resolution belongs to a pending transfer
/// and posts no more than it reserved.
async fn check_resolutions(
    pool: &AnyPool,
    tenant_id: &TenantId,
    violations: &mut Vec<Violation>,
) -> Result<(), sqlx::Error> {
    let twice = sqlx::query(
        "SELECT pending_id, COUNT(*) AS n FROM ledger_resolution WHERE tenant_id = $1 \
         GROUP BY pending_id HAVING COUNT(*) > 1",
    )
    .bind(tenant_id.as_str())
    .fetch_all(pool)
    .await?;
    for row in twice {
        violations.push(Violation {
            kind: "pending_resolved_twice".into(),
            detail: json!({ "pending_id": row.try_get::<String, _>("pending_id")? }),
        });
    }
    let bad = sqlx::query(
        "SELECT r.pending_id, r.amount, t.amount AS reserved, t.pending FROM ledger_resolution r \
         LEFT JOIN ledger_transfer t ON t.tenant_id = r.tenant_id AND t.id = r.pending_id \
         WHERE r.tenant_id = $1 AND (t.id IS NULL OR t.pending = 0 OR r.amount > t.amount OR r.amount < 0)",
    )
    .bind(tenant_id.as_str())
    .fetch_all(pool)
    .await?;
    for row in bad {
        violations.push(Violation {
            kind: "invalid_resolution".into(),
            detail: json!({ "pending_id": row.try_get::<String, _>("pending_id")? }),
        });
    }
    Ok(())
}

/// An asset's sums while they are added up.
#[derive(Default)]
struct WideSummary {
    balance_sum: i128,
    pending_debits: i128,
    pending_credits: i128,
    accounts: i64,
}

impl WideSummary {
    /// The summary as reported, when every figure fits.
    fn narrow(&self) -> Option<AssetSummary> {
        Some(AssetSummary {
            balance_sum: i64::try_from(self.balance_sum).ok()?,
            pending_debits: i64::try_from(self.pending_debits).ok()?,
            pending_credits: i64::try_from(self.pending_credits).ok()?,
            accounts: self.accounts,
        })
    }
}

fn wide(t: Totals) -> [i128; 4] {
    [
        i128::from(t.debits_posted),
        i128::from(t.credits_posted),
        i128::from(t.debits_pending),
        i128::from(t.credits_pending),
    ]
}

/// A figure in a violation: a JSON number while it fits in i64, else its exact digits as a
/// string (a JSON number that large would lose digits in most readers).
fn figure(n: i128) -> Value {
    match i64::try_from(n) {
        Ok(n) => json!(n),
        Err(_) => json!(n.to_string()),
    }
}

/// A figure for the report when the exact one (in the violation) does not fit.
fn clamp(n: i128) -> i64 {
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// Most history violations listed (one broken list would otherwise list every transfer).
const HISTORY_VIOLATIONS_SHOWN: i64 = 100;

/// The accounts' histories against the transfers, each check one statement (one snapshot):
/// every link names a transfer of the same account, and each account's transfers form one
/// list from its head (so no transfer is cut off or listed twice).
async fn history_lists(
    pool: &AnyPool,
    tenant_id: &TenantId,
    violations: &mut Vec<Violation>,
) -> Result<(), sqlx::Error> {
    let foreign = |link: &str, side: &str| {
        format!(
            "(t.{link}_prev IS NOT NULL AND ({link}.id IS NULL OR {link}.asset <> t.asset \
             OR ({link}.debit_address <> t.{side} AND {link}.credit_address <> t.{side})))"
        )
    };
    let bad_links = sqlx::query(&format!(
        "SELECT t.id FROM ledger_transfer t \
         LEFT JOIN ledger_transfer debit ON debit.tenant_id = t.tenant_id AND debit.id = t.debit_prev \
         LEFT JOIN ledger_transfer credit ON credit.tenant_id = t.tenant_id AND credit.id = t.credit_prev \
         WHERE t.tenant_id = $1 AND ({} OR {}) LIMIT $2",
        foreign("debit", "debit_address"),
        foreign("credit", "credit_address"),
    ))
    .bind(tenant_id.as_str())
    .bind(HISTORY_VIOLATIONS_SHOWN)
    .fetch_all(pool)
    .await?;
    for row in bad_links {
        violations.push(Violation {
            kind: "history_link_invalid".into(),
            detail: json!({ "transfer_id": row.try_get::<String, _>("id")? }),
        });
    }
    // Each account's transfers must form one list from its head: exactly one transfer without
    // a predecessor, no transfer named as predecessor twice (no fork), and a head that is one of
    // the account's transfers and nobody's predecessor. Set-based, so that it costs a few scans
    // and joins on either back end (a recursive walk of every list was planned as a hash join
    // per step on PostgreSQL). A loop of links, which only editing rows by hand could make, is
    // not looked for.
    let broken = sqlx::query(
        "WITH sides AS ( \
             SELECT debit_address AS address, asset, id, debit_prev AS prev FROM ledger_transfer \
             WHERE tenant_id = $1 \
             UNION ALL \
             SELECT credit_address AS address, asset, id, credit_prev AS prev FROM ledger_transfer \
             WHERE tenant_id = $1), \
         counts AS ( \
             SELECT address, asset, COUNT(*) AS n, \
                 SUM(CASE WHEN prev IS NULL THEN 1 ELSE 0 END) AS ends, \
                 COUNT(DISTINCT prev) AS linked \
             FROM sides GROUP BY address, asset), \
         head_on AS ( \
             SELECT s.address, s.asset, COUNT(*) AS k FROM sides s JOIN ledger_account a \
             ON a.tenant_id = $1 AND a.address = s.address AND a.asset = s.asset \
                 AND a.last_transfer_id = s.id \
             GROUP BY s.address, s.asset), \
         head_named AS ( \
             SELECT s.address, s.asset, COUNT(*) AS k FROM sides s JOIN ledger_account a \
             ON a.tenant_id = $1 AND a.address = s.address AND a.asset = s.asset \
                 AND a.last_transfer_id = s.prev \
             GROUP BY s.address, s.asset) \
         SELECT a.address, a.asset, a.last_transfer_id, \
             CAST(COALESCE(c.n, 0) AS BIGINT) AS transfers, \
             CAST(COALESCE(c.ends, 0) AS BIGINT) AS ends \
         FROM ledger_account a \
         LEFT JOIN counts c ON c.address = a.address AND c.asset = a.asset \
         LEFT JOIN head_on h ON h.address = a.address AND h.asset = a.asset \
         LEFT JOIN head_named r ON r.address = a.address AND r.asset = a.asset \
         WHERE a.tenant_id = $1 AND NOT ( \
             (COALESCE(c.n, 0) = 0 AND a.last_transfer_id IS NULL) \
             OR (c.n > 0 AND c.ends = 1 AND c.linked = c.n - 1 \
                 AND COALESCE(h.k, 0) = 1 AND COALESCE(r.k, 0) = 0)) \
         LIMIT $2",
    )
    .bind(tenant_id.as_str())
    .bind(HISTORY_VIOLATIONS_SHOWN)
    .fetch_all(pool)
    .await?;
    for row in broken {
        violations.push(Violation {
            kind: "history_list_broken".into(),
            detail: json!({
                "address": row.try_get::<String, _>("address")?,
                "asset": row.try_get::<String, _>("asset")?,
                "head": row.try_get::<Option<String>, _>("last_transfer_id")?,
                "transfers": row.try_get::<i64, _>("transfers")?,
                "list_ends": row.try_get::<i64, _>("ends")?,
            }),
        });
    }
    Ok(())
}
