//! What this node remembers of its flash sales, so that a rush's refusals cost no database
//! work (issue 25): a sale the node has seen sold out, not yet open or ended is answered 409
//! from memory, with the same error body the batch would give.
//!
//! In a real flash sale more than 99 % of the requests come after the last unit is gone; each
//! of them used to queue for the batcher, open a transaction, lock the sale row and read it,
//! only to be refused. Now the batch ([`super::flash_sales`]) tells the gate what it read under
//! the sale's lock, before granting anything, and the handler asks the gate first.
//!
//! - **Not started and ended** are answered from the sale's window, which never changes once
//!   the sale is created: before `starts_at` `not_started`, from `ends_at` on `ended`, against
//!   the node's clock like the batch.
//! - **Sold out** can end: an unpaid order expires or is cancelled, a paid one is refunded with
//!   its units put back. The node learns of it two ways:
//!   - its own writes: the transactions that return units signal
//!     [`UNITS_RETURNED`] ([`crate::common::db::Tx::signal_on_commit`]); the gate keeps the
//!     generation it saw before it last read the sale, and looks again at once when it moved;
//!   - other nodes' writes, through the database: an entry older than [`RECHECK_MICROS`] is
//!     checked again with one read of the sale's counters by primary key (`stock − sold −
//!     reserved`), by the first request that finds it old, while the others keep answering
//!     from memory. The counters themselves are the version: no column was added, and the read
//!     is as cheap as reading a version would be. PostgreSQL LISTEN/NOTIFY was not used: it
//!     needs a dedicated connection per node and a re-listen after every reconnect, and a
//!     missed notification would leave the node refusing for good, where a periodic read
//!     bounds the delay by construction.
//!
//!   So a node answers `sold_out` for at most [`RECHECK_MICROS`] (plus one read) after
//!   another node returned units, and at once after it returned them itself. The age is
//!   measured on the state's clock, so a test moves it with its manual clock.
//!
//! Exactness never depends on this memory: it only ever refuses, and only what the database
//! showed under the sale's lock; every grant is still decided by the batch against the
//! database. A forgotten or unknown sale simply goes to the batch. One difference in what a
//! refused buyer is told: from memory `sold_out` comes before the checks of the member (404 for
//! an unknown member, `limit_reached`), which the batch makes first; when nothing is left the
//! answer is the same for everyone, and a member of another tenant learns nothing from it.
//!
//! The memory is bounded ([`MAX_ENTRIES`] sales): when full, ended sales are forgotten, then
//! everything (it is only a cache).

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::json;

use crate::common::db::Db;
use crate::common::error::{codes, ApiError};
use crate::common::ids::{FlashSaleId, TenantId};
use crate::common::time::micros_to_rfc3339;

/// The commit topic of transactions that give flash-sale units back to available.
pub const UNITS_RETURNED: &str = "flash_sale.units_returned";
/// How old (microseconds on the state's clock) a remembered sell-out may be before it is read
/// again from the database: the longest a node keeps refusing after another node returned units.
pub const RECHECK_MICROS: i64 = 250_000;
/// Most sales remembered per node.
pub const MAX_ENTRIES: usize = 10_000;

/// 409 `not_started`. The refusals are built here, for the batch ([`super::flash_sales`]) and
/// for the memory alike, so that both give the same body.
pub fn not_started(starts_at: i64) -> ApiError {
    ApiError::conflict(codes::NOT_STARTED, "this flash sale has not started")
        .with_details(json!({ "starts_at": micros_to_rfc3339(starts_at) }))
}

/// 409 `ended`.
pub fn ended() -> ApiError {
    ApiError::conflict(codes::ENDED, "this flash sale has ended")
}

/// 409 `sold_out`, with the units left (fewer than asked for; 0 from memory).
pub fn sold_out(available: i64) -> ApiError {
    ApiError::conflict(codes::SOLD_OUT, "this flash sale is sold out")
        .with_details(json!({ "available": available }))
}

/// What a batch read of a sale under its lock, before granting anything.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub starts_at: i64,
    pub ends_at: i64,
    /// `stock − sold − reserved`.
    pub available: i64,
    /// [`SaleGate::generation`] taken before the sale was read.
    pub generation: u64,
    /// The state's clock when the batch decided.
    pub now: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    tenant_id: TenantId,
    starts_at: i64,
    ends_at: i64,
    sold_out: Option<SoldOut>,
}

/// A sell-out seen in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SoldOut {
    /// When it was seen (state's clock, microseconds).
    checked_at: i64,
    /// The node's [`UNITS_RETURNED`] generation before it was read.
    generation: u64,
}

/// This node's memory of its flash sales (see the module doc).
#[derive(Debug)]
pub struct SaleGate {
    db: Db,
    entries: RwLock<HashMap<FlashSaleId, Entry>>,
}

/// What [`SaleGate::look`] found without the database.
enum Look {
    Unknown,
    Refuse(ApiError),
    /// A sell-out old enough to read again; the request that found it has claimed the read.
    Recheck,
}

impl SaleGate {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// This node's count of committed transactions that returned units.
    pub fn generation(&self) -> u64 {
        self.db.commit_generation(UNITS_RETURNED)
    }

    /// The refusal this node can give from memory at `now` (the batch's own refusals, so the
    /// bodies match), or `None` when the batch must decide. Reads the database only to check an old sell-out again.
    pub async fn refusal(
        &self,
        tenant_id: &TenantId,
        sale_id: &FlashSaleId,
        now: i64,
    ) -> Option<ApiError> {
        let generation = self.generation();
        match self.look(tenant_id, sale_id, now, generation) {
            Look::Unknown => None,
            Look::Refuse(error) => Some(error),
            Look::Recheck => self.recheck(tenant_id, sale_id, generation).await,
        }
    }

    fn look(&self, tenant_id: &TenantId, sale_id: &FlashSaleId, now: i64, generation: u64) -> Look {
        let (starts_at, ends_at, remembered) = {
            let Ok(entries) = self.entries.read() else {
                return Look::Unknown;
            };
            match entries.get(sale_id) {
                Some(entry) if entry.tenant_id == *tenant_id => {
                    (entry.starts_at, entry.ends_at, entry.sold_out)
                }
                _ => return Look::Unknown,
            }
        };
        if now < starts_at {
            return Look::Refuse(not_started(starts_at));
        }
        if now >= ends_at {
            return Look::Refuse(ended());
        }
        let Some(seen) = remembered else {
            return Look::Unknown;
        };
        if fresh(seen, now, generation) {
            return Look::Refuse(sold_out(0));
        }
        // Old: the first request to get here reads the sale again; the others keep refusing
        // meanwhile, as the claim makes the entry fresh.
        let Ok(mut entries) = self.entries.write() else {
            return Look::Unknown;
        };
        match entries.get_mut(sale_id).and_then(|e| e.sold_out.as_mut()) {
            Some(current) if *current == seen => {
                *current = SoldOut {
                    checked_at: now,
                    generation,
                };
                Look::Recheck
            }
            Some(current) if fresh(*current, now, generation) => Look::Refuse(sold_out(0)),
            _ => Look::Unknown,
        }
    }

    /// Read the sale's units left: still none, refuse; else forget the sell-out and let the
    /// batch decide.
    async fn recheck(
        &self,
        tenant_id: &TenantId,
        sale_id: &FlashSaleId,
        generation: u64,
    ) -> Option<ApiError> {
        let available = async {
            let mut conn = self.db.read().acquire().await?;
            sqlx::query_scalar::<_, i64>(
                "SELECT stock - sold - reserved FROM flash_sale WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant_id.as_str())
            .bind(sale_id.as_str())
            .fetch_optional(&mut *conn)
            .await
        }
        .await;
        match available {
            Ok(Some(available)) if available <= 0 => Some(sold_out(0)),
            Ok(_) | Err(_) => {
                // Units are back (or the read failed: the batch decides, and reports).
                if let Ok(mut entries) = self.entries.write() {
                    if let Some(entry) = entries.get_mut(sale_id) {
                        if entry.sold_out.is_some_and(|s| s.generation == generation) {
                            entry.sold_out = None;
                        }
                    }
                }
                None
            }
        }
    }

    /// Remember what a batch read of a sale under its lock, before it granted anything.
    pub fn saw(&self, tenant_id: &TenantId, sale_id: &FlashSaleId, seen: Seen) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(sale_id) {
            entries.retain(|_, e| e.ends_at > seen.now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let sold_out = (seen.available <= 0).then_some(SoldOut {
            checked_at: seen.now,
            generation: seen.generation,
        });
        entries.insert(
            sale_id.clone(),
            Entry {
                tenant_id: tenant_id.clone(),
                starts_at: seen.starts_at,
                ends_at: seen.ends_at,
                sold_out,
            },
        );
    }
}

/// A sell-out still to be trusted at `now`: no units returned by this node since, not older
/// than [`RECHECK_MICROS`], and not from the future (a clock set back).
fn fresh(seen: SoldOut, now: i64, generation: u64) -> bool {
    seen.generation == generation
        && now >= seen.checked_at
        && now - seen.checked_at < RECHECK_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sell_out_is_trusted_only_while_young_and_while_no_units_came_back() {
        let seen = SoldOut {
            checked_at: 1_000_000,
            generation: 3,
        };
        assert!(fresh(seen, 1_000_000, 3));
        assert!(fresh(seen, 1_000_000 + RECHECK_MICROS - 1, 3));
        assert!(!fresh(seen, 1_000_000 + RECHECK_MICROS, 3));
        assert!(!fresh(seen, 1_000_001, 4), "this node returned units since");
        assert!(!fresh(seen, 999_999, 3), "the clock went back");
    }
}
