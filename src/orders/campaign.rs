//! What the order life cycle tells a campaign about its orders (DESIGN rule 12, inside the
//! orders folder). Flash-sale and group-buy orders are ordinary orders: [`super::checkout`] pays,
//! closes and refunds them like any other, and at fixed points of each step's transaction calls
//! the hooks of the order's campaign, found by the order's `campaign_kind`. So checkout names no
//! campaign, and the campaigns use the life cycle (a failed team's orders are cancelled and
//! refunded through it) without it calling back into them by name.
//!
//! | hook | checkout calls it | flash sales | group buys |
//! | --- | --- | --- | --- |
//! | [`CampaignHooks::require_payable`] | before a payment is written | — | 409 unless the team is open |
//! | [`CampaignHooks::on_paid`] | after the order hooks of a payment, before `order.paid` | units reserved → sold | paid count; the team succeeds when full |
//! | [`CampaignHooks::on_closed_unpaid`] | an unpaid order cancelled or expired, first after its state moved | units reserved → available | the slot frees while the team is open |
//! | [`CampaignHooks::on_restocked`] | a full refund puts the units back | units sold → available | — |
//! | [`CampaignHooks::on_refunded`] | after a refund's order hooks | — | a full refund frees slot and payment while the team is open |
//!
//! The campaigns are listed once, in the folder's composition (`orders::CAMPAIGNS`), and
//! installed by every entry point next to `common::hooks` (same reason: the list is the
//! campaigns compiled into the binary); checkout fails rather than skip a campaign's counts when
//! none are installed.

use std::sync::OnceLock;

use async_trait::async_trait;

use super::store::StoredOrder;
use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::TenantId;

/// An order of a campaign, at a step of its life cycle.
#[derive(Debug, Clone, Copy)]
pub struct CampaignOrder<'a> {
    pub tenant_id: &'a TenantId,
    /// The order as the step holds it.
    pub order: &'a StoredOrder,
}

/// A refund of a campaign's order, recorded.
#[derive(Debug, Clone, Copy)]
pub struct CampaignRefund<'a> {
    pub tenant_id: &'a TenantId,
    /// The order as it was before the refund.
    pub order: &'a StoredOrder,
    /// Whether the order is now refunded in full.
    pub full: bool,
}

/// A campaign's reactions to its orders' life cycle, inside the step's transaction (in the
/// table's order; a hook that fails fails the step).
#[async_trait]
pub trait CampaignHooks: Send + Sync {
    /// The `campaign_kind` of the campaign's orders.
    fn kind(&self) -> &'static str;

    /// May the order be paid now (a conflict when not)?
    async fn require_payable(&self, _tx: &mut Tx, _order: &CampaignOrder<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// The order became paid.
    async fn on_paid(&self, _tx: &mut Tx, _order: &CampaignOrder<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// The unpaid order was cancelled or expired: the units it reserved go back.
    async fn on_closed_unpaid(&self, _tx: &mut Tx, _order: &CampaignOrder<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// The paid order was refunded in full with its units put back.
    async fn on_restocked(&self, _tx: &mut Tx, _order: &CampaignOrder<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// A refund of the order was recorded and announced.
    async fn on_refunded(&self, _tx: &mut Tx, _refund: &CampaignRefund<'_>) -> ApiResult<()> {
        Ok(())
    }
}

static REGISTRY: OnceLock<&'static [&'static dyn CampaignHooks]> = OnceLock::new();

/// Install the process's campaigns; the first installation wins (every entry point installs
/// the same list, so a second call is a no-op).
pub fn install(campaigns: &'static [&'static dyn CampaignHooks]) {
    REGISTRY.get_or_init(|| campaigns);
}

/// The hooks of the order's campaign: none for an order outside any campaign (or of a kind no
/// campaign claims); an internal error when no entry point installed the campaigns.
pub fn of(order: &StoredOrder) -> ApiResult<Option<&'static dyn CampaignHooks>> {
    let campaigns = REGISTRY.get().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "order campaigns are not installed: call orders::install_campaigns first"
        ))
    })?;
    Ok(order
        .campaign_kind
        .as_deref()
        .and_then(|kind| campaigns.iter().copied().find(|c| c.kind() == kind)))
}
