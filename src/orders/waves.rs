//! Community group-buying waves (团期) as a campaign of the order life cycle (kind `wave`).
//!
//! A wave's price, stock, leader and pickup belong to the `neighbourhood` domain, which sits
//! above orders; orders reach it only through the [`WaveHooks`] of `common::hooks` that the
//! composition root registers. Checkout asks those hooks for a wave order's prices (taking the
//! wave's stock in the order's own transaction, see `checkout::place`); this adapter forwards
//! the life cycle's campaign hooks (payable, paid, closed unpaid, restocked) to them, so
//! checkout keeps naming no campaign and orders import nothing above them.
//!
//! [`WaveHooks`]: crate::common::hooks::WaveHooks

use async_trait::async_trait;

use super::campaign::{CampaignHooks, CampaignOrder};
use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::hooks::{self, WaveOrder};

/// The `campaign_kind` of wave orders.
pub const KIND: &str = "wave";

/// The wave campaign: every step forwarded to the registered wave hooks.
pub struct WaveCampaign;

fn wave_order<'a>(order: &'a CampaignOrder<'a>) -> WaveOrder<'a> {
    WaveOrder {
        tenant_id: order.tenant_id,
        member_id: &order.order.member_id,
        order_id: order.order.id.as_str(),
        total: order.order.total,
    }
}

#[async_trait]
impl CampaignHooks for WaveCampaign {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn require_payable(&self, tx: &mut Tx, order: &CampaignOrder<'_>) -> ApiResult<()> {
        hooks::registered()?
            .wave_hooks()?
            .require_payable(tx, &wave_order(order))
            .await
    }

    async fn on_paid(&self, tx: &mut Tx, order: &CampaignOrder<'_>) -> ApiResult<()> {
        hooks::registered()?
            .wave_hooks()?
            .on_paid(tx, &wave_order(order))
            .await
    }

    async fn on_closed_unpaid(&self, tx: &mut Tx, order: &CampaignOrder<'_>) -> ApiResult<()> {
        hooks::registered()?
            .wave_hooks()?
            .on_released(tx, &wave_order(order), true)
            .await
    }

    async fn on_restocked(&self, tx: &mut Tx, order: &CampaignOrder<'_>) -> ApiResult<()> {
        hooks::registered()?
            .wave_hooks()?
            .on_released(tx, &wave_order(order), false)
            .await
    }
}
