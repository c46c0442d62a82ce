//! The skeleton of the campaign claims decided in batches (DESIGN rules 5 and 13): flash-sale
//! purchases ([`super::flash_sales`]) and team joins ([`super::group_buys`]).
//!
//! A batch's claims are grouped by what they claim from (a sale, a team). The groups are
//! decided one after the other in a fixed order, so that concurrent batches take their row
//! locks in the same order, and each group's claims in arrival order; every claim gets its own
//! outcome. What a group decides is the campaign's ([`Campaign::decide_group`]): it locks its
//! row, grants or refuses each claim against what is left and against the units each buyer
//! holds so far ([`Buyers`]), then writes the granted orders at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{AnyConnection, Row as _};

use super::store;
use crate::common::batcher;
use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::{Arg, Sql};
use crate::members;

/// A kind of claim decided in batches, grouped by its target.
#[async_trait]
pub trait Campaign: Sync {
    type Claim: Sync;
    /// What claims are grouped by and decided under: a flash sale's id, a team's id.
    type Target: Ord + Sync;
    type Outcome: Send;

    /// The tenant and the target a claim claims from.
    fn target(claim: &Self::Claim) -> (&TenantId, &Self::Target);

    /// Decide one target's claims, in arrival order: one outcome each, in their order. A
    /// refusal is an outcome; an error aborts the whole batch (see [`batcher::Decide`]).
    async fn decide_group(
        &self,
        tx: &mut Tx,
        tenant_id: &TenantId,
        target: &Self::Target,
        claims: &[&Self::Claim],
    ) -> Result<Vec<ApiResult<Self::Outcome>>, sqlx::Error>;
}

/// Decide a batch of claims inside `tx`: group by target, decide the groups in the order of
/// their (tenant, target), and give each claim its outcome.
pub async fn decide<C: Campaign>(
    campaign: &C,
    tx: &mut Tx,
    claims: &[C::Claim],
) -> Result<Vec<ApiResult<C::Outcome>>, sqlx::Error> {
    let mut outcomes = Outcomes::new(claims.len());
    for ((tenant_id, target), indexes) in groups(claims, C::target) {
        let group: Vec<&C::Claim> = indexes.iter().map(|&i| &claims[i]).collect();
        let decided = campaign.decide_group(tx, tenant_id, target, &group).await?;
        outcomes.set(indexes, decided);
    }
    Ok(outcomes.in_order())
}

/// A batch's claims grouped by their (tenant, target), in the order the groups are decided:
/// each group's indexes into `claims`, in arrival order.
#[allow(clippy::type_complexity)]
pub fn groups<'c, Claim, Target: Ord + 'c>(
    claims: &'c [Claim],
    target: impl Fn(&'c Claim) -> (&'c TenantId, &'c Target),
) -> BTreeMap<(&'c TenantId, &'c Target), Vec<usize>> {
    let mut groups: BTreeMap<_, Vec<usize>> = BTreeMap::new();
    for (i, claim) in claims.iter().enumerate() {
        groups.entry(target(claim)).or_default().push(i);
    }
    groups
}

/// A batch's outcomes as its groups are decided, given back in the claims' order.
pub struct Outcomes<O>(Vec<Option<ApiResult<O>>>);

impl<O> Outcomes<O> {
    pub fn new(claims: usize) -> Self {
        Self((0..claims).map(|_| None).collect())
    }

    /// One group's outcomes, for the claims at `indexes`.
    pub fn set(&mut self, indexes: Vec<usize>, decided: Vec<ApiResult<O>>) {
        for (i, outcome) in indexes.into_iter().zip(decided) {
            self.0[i] = Some(outcome);
        }
    }

    pub fn in_order(self) -> Vec<ApiResult<O>> {
        self.0
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(ApiError::internal(anyhow::anyhow!("undecided")))))
            .collect()
    }
}

/// The same refusal for every claim of a group (its target is missing or closed).
pub fn refuse_all<C, T>(claims: &[&C], refusal: impl Fn() -> ApiError) -> Vec<ApiResult<T>> {
    claims.iter().map(|_| Err(refusal())).collect()
}

/// The members claiming in one group: which may claim (they exist and are not erased) and the
/// units each holds in the campaign, counting the claims granted so far in this batch.
pub struct Buyers {
    active: HashSet<MemberId>,
    held: HashMap<MemberId, i64>,
}

impl Buyers {
    /// Read the claimants of a group in the campaign `campaign_id` (a flash sale's or a group
    /// buy's id).
    pub async fn load<'m>(
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        campaign_id: &str,
        members: impl Iterator<Item = &'m MemberId>,
    ) -> Result<Buyers, sqlx::Error> {
        let mut ids: Vec<&MemberId> = members.collect();
        ids.sort_unstable();
        ids.dedup();
        let active = active_members(conn, tenant_id, &ids).await?;
        let held = store::held_in_campaign(conn, tenant_id, campaign_id, &ids)
            .await
            .map_err(batcher::abort)?;
        Ok(Buyers { active, held })
    }

    /// The claimants as read by the caller (a flash sale's batch on the direct SQLite
    /// writer): the active members and the units each holds.
    pub fn known(active: HashSet<MemberId>, held: HashMap<MemberId, i64>) -> Buyers {
        Buyers { active, held }
    }

    /// The member exists and is not erased.
    pub fn is_active(&self, member_id: &MemberId) -> bool {
        self.active.contains(member_id)
    }

    /// The member may take `qty` more units without holding more than `limit`.
    pub fn within_limit(&self, member_id: &MemberId, qty: i64, limit: i64) -> bool {
        self.held.get(member_id).copied().unwrap_or(0) + qty <= limit
    }

    /// A claim of `qty` units was granted.
    pub fn take(&mut self, member_id: &MemberId, qty: i64) {
        *self.held.entry(member_id.clone()).or_default() += qty;
    }
}

/// Which of `ids` are members of the tenant that are not erased.
///
/// One lookup by primary key per id, driven from the ids' list (a scalar subquery, which no
/// planner turns into a join): written as `id IN (…)`, PostgreSQL's generic plan for a
/// tenant whose members it had no statistics for yet scanned all the tenant's members and
/// filtered them by id, 4 ms a batch of 20,000 members in `shequn bench flash-sale`.
async fn active_members(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    ids: &[&MemberId],
) -> Result<HashSet<MemberId>, sqlx::Error> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        let mut sql = Sql::for_conn(
            &*conn,
            "SELECT v.column1 AS id, (SELECT m.status FROM member m WHERE m.tenant_id = ",
        );
        sql.bind(tenant_id.as_str())
            .push(" AND m.id = v.column1) AS status FROM (VALUES ");
        sql.padded_values(chunk, |id| vec![Arg::from(id.as_str())]);
        sql.push(") AS v WHERE v.column1 IS NOT NULL");
        for row in sql.query().fetch_all(&mut *conn).await? {
            let status: Option<String> = row.try_get("status")?;
            if status.is_some_and(|s| s != members::model::STATUS_ERASED) {
                found.insert(MemberId::from_db(row.try_get("id")?));
            }
        }
    }
    Ok(found)
}
