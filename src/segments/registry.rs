//! The indexes this node holds, one per tenant, built on first use and kept fresh from the
//! event outbox (DESIGN rule 4), so that every node serving a tenant sees every node's writes.
//!
//! Before it answers, a query reads the tenant's events after the last one the index has seen
//! (one indexed read of `event`, empty when nothing changed) and reads again the members they
//! name: any member id in the event's subject or data (`member_id`, `inviter_id`, `member` of
//! a points release…, and the points accounts of the transfers a `ledger.transfers_committed`
//! event lists). A scoring run (`analytics.scored`) reloads every member's scores; a
//! change that touches many members at once without naming them (a time-zone change, a new
//! tier ladder, an order import) or more than [`MAX_REPLAY`] events rebuild the index. A
//! change is therefore seen by the next query on any node, well within the 2 seconds the
//! segments issue asks.
//!
//! The index is a cache: a node that restarts builds it again (logging its progress), and a
//! failed refresh leaves the old one in place for the next query to retry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use roaring::RoaringBitmap;
use serde_json::Value;
use sqlx::Row as _;

use super::index::Index;
use super::load;
use super::rule::Rule;
use crate::common::clock::Clock;
use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::TenantId;
use crate::tenants;

/// Most events replayed member by member; more rebuild the index.
pub const MAX_REPLAY: i64 = 5_000;

/// Events that change many members without naming them: the index is built again.
const REBUILD_ON: [&str; 3] = [
    "tenant.settings_updated",
    "program.tiers_updated",
    "orders.imported",
];

/// One tenant's index with what it has seen.
pub struct Fresh {
    pub index: Index,
    pub zone: TimeZone,
    /// The last event applied.
    pub seq: i64,
}

impl Fresh {
    /// The tenant's local date at `now`.
    pub fn today(&self, now: jiff::Timestamp) -> Date {
        now.to_zoned(self.zone.clone()).date()
    }
}

/// A tenant's index, built on first use.
type Slot = Arc<tokio::sync::Mutex<Option<Fresh>>>;

/// The indexes of this node.
#[derive(Clone)]
pub struct Registry {
    db: Db,
    clock: Arc<dyn Clock>,
    tenants: Arc<std::sync::Mutex<HashMap<TenantId, Slot>>>,
}

impl Registry {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            tenants: Arc::default(),
        }
    }

    /// The database the indexes are read from.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn slot(&self, tenant_id: &TenantId) -> Slot {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.entry(tenant_id.clone()).or_default().clone()
    }

    /// Run `work` on the tenant's index, brought up to date first.
    pub async fn with<T>(
        &self,
        tenant_id: &TenantId,
        work: impl FnOnce(&Fresh, Date) -> T,
    ) -> ApiResult<T> {
        let slot = self.slot(tenant_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.build(tenant_id).await?);
        }
        let fresh = guard
            .as_mut()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("index missing")))?;
        if self.catch_up(tenant_id, fresh).await? {
            *guard = Some(self.build(tenant_id).await?);
        }
        let fresh = guard
            .as_ref()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("index missing")))?;
        let today = fresh.today(self.clock.now());
        Ok(work(fresh, today))
    }

    /// Count and the first `sample` member ids of `rule`.
    pub async fn preview(
        &self,
        tenant_id: &TenantId,
        rule: &Rule,
        sample: usize,
    ) -> ApiResult<(u64, Vec<String>)> {
        self.with(tenant_id, |fresh, today| {
            let matching = fresh.index.evaluate(rule, today);
            let ids = fresh.index.page(&matching, None, sample);
            (
                matching.len(),
                ids.into_iter().map(super::index::id_text).collect(),
            )
        })
        .await
    }

    /// Up to `limit` member ids of `rule` after member `after`, in id order.
    pub async fn page(
        &self,
        tenant_id: &TenantId,
        rule: &Rule,
        after: Option<&str>,
        limit: usize,
    ) -> ApiResult<Vec<String>> {
        let after = after.and_then(super::index::id_number);
        self.with(tenant_id, |fresh, today| {
            let matching = fresh.index.evaluate(rule, today);
            fresh
                .index
                .page(&matching, after, limit)
                .into_iter()
                .map(super::index::id_text)
                .collect()
        })
        .await
    }

    /// The members of `rule` as a bitmap, for work that walks them all (an export).
    pub async fn matching(&self, tenant_id: &TenantId, rule: &Rule) -> ApiResult<RoaringBitmap> {
        self.with(tenant_id, |fresh, today| fresh.index.evaluate(rule, today))
            .await
    }

    async fn build(&self, tenant_id: &TenantId) -> ApiResult<Fresh> {
        let started = Instant::now();
        let zone = tenants::time_zone_in(&self.db, tenant_id).await?;
        tracing::info!(tenant = %tenant_id.as_str(), "building the segment index");
        let (index, built) = load::build(&self.db, tenant_id, &zone, |part, members| {
            tracing::info!(tenant = %tenant_id.as_str(), part, members, "segment index: read");
        })
        .await?;
        tracing::info!(
            tenant = %tenant_id.as_str(),
            members = built.members,
            bytes = index.bytes(),
            millis = started.elapsed().as_millis() as u64,
            "segment index built"
        );
        Ok(Fresh {
            index,
            zone,
            seq: built.seq,
        })
    }

    /// Apply the events after `fresh.seq`; `true` when the index must be built again instead.
    async fn catch_up(&self, tenant_id: &TenantId, fresh: &mut Fresh) -> ApiResult<bool> {
        let rows = sqlx::query(
            "SELECT seq, type, subject, data FROM event WHERE tenant_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(tenant_id.as_str())
        .bind(fresh.seq)
        .bind(MAX_REPLAY + 1)
        .fetch_all(self.db.read())
        .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        if rows.len() as i64 > MAX_REPLAY {
            return Ok(true);
        }
        let mut members = BTreeSet::new();
        // Transfers named by `ledger.transfers_committed` (ids only): their accounts are read.
        let mut transfers = BTreeSet::new();
        let mut scores = false;
        let mut last = fresh.seq;
        for row in &rows {
            last = row.try_get("seq")?;
            let kind: String = row.try_get("type")?;
            if REBUILD_ON.contains(&kind.as_str()) {
                return Ok(true);
            }
            if kind == "analytics.scored" {
                scores = true;
            }
            let subject: Option<String> = row.try_get("subject")?;
            if let Some(subject) = subject.filter(|s| s.starts_with("mem_")) {
                members.insert(subject);
            }
            let data: String = row.try_get("data")?;
            if let Ok(value) = serde_json::from_str::<Value>(&data) {
                if kind == "ledger.transfers_committed" {
                    transfer_ids(&value, &mut transfers);
                }
                member_ids(&value, &mut members);
            }
        }
        if !transfers.is_empty() {
            let ids: Vec<String> = transfers.into_iter().collect();
            members.extend(load::points_members(&self.db, tenant_id, &ids).await?);
        }
        if scores {
            load::reload_scores(&self.db, tenant_id, &mut fresh.index).await?;
        }
        let ids: Vec<String> = members.into_iter().collect();
        load::reload(&self.db, tenant_id, &fresh.zone, &mut fresh.index, &ids).await?;
        fresh.seq = last;
        Ok(false)
    }
}

/// The transfer ids of a `ledger.transfers_committed` event (`created`, `resolved[].id`).
fn transfer_ids(value: &Value, out: &mut BTreeSet<String>) {
    for id in value["created"].as_array().into_iter().flatten() {
        if let Some(id) = id.as_str() {
            out.insert(id.to_owned());
        }
    }
    for resolved in value["resolved"].as_array().into_iter().flatten() {
        if let Some(id) = resolved["id"].as_str() {
            out.insert(id.to_owned());
        }
    }
}

/// Every member id (`mem_…` with the id's shape) among the values of an event's data, and in
/// a `member:` ledger address.
fn member_ids(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            let id = s.strip_prefix("member:").unwrap_or(s);
            if super::index::id_number(id).is_some() {
                out.insert(id.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| member_ids(v, out)),
        Value::Object(map) => map.values().for_each(|v| member_ids(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn member_ids_are_found_anywhere_in_an_event() {
        let mut out = BTreeSet::new();
        member_ids(
            &json!({
                "member_id": "mem_0193aaaabbbbccccddddeeeeffff0001",
                "inviter_id": "mem_0193aaaabbbbccccddddeeeeffff0002",
                "member": "member:mem_0193aaaabbbbccccddddeeeeffff0003",
                "winners": [{"member_id": "mem_0193aaaabbbbccccddddeeeeffff0004"}],
                "order_id": "ord_0193aaaabbbbccccddddeeeeffff0005",
                "note": "mem_short"
            }),
            &mut out,
        );
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            [1, 2, 3, 4].map(|n| format!("mem_0193aaaabbbbccccddddeeeeffff000{n}"))
        );
    }
}
