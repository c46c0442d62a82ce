//! Community group buying (社区团购): neighbourhood leaders (团长) with pickup points (自提点),
//! waves (团期) ordered until a cut-off, pick and purchase lists for the warehouse, pickup
//! codes (核销码) and the leaders' commission.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`rules`] | the wave arithmetic, pure: cut-off phase, pick lists and totals, commission after refunds, codes, distances |
//! | [`model`] | states, requests and responses |
//! | [`leaders`] | leaders and pickup points, nearby search, each member's chosen leader |
//! | [`waves`] | waves and items, the cut-off job, pick and purchase lists (JSON, CSV, printable) and arrival |
//! | [`wave_orders`] | a wave order's placing, payment, units given back and pickup view (the wave hooks) |
//! | [`pickups`] | code verification, shortage refunds, leader commission and its release job, stats and leaderboard |
//!
//! Where things live, and why. `POST /v1/orders` belongs to orders, which must not import this
//! domain (it sits above orders, beside distribution). So a wave order is an ordinary checkout
//! order of campaign kind `wave` (`orders::waves`) whose prices come from this domain through
//! `common::hooks::WaveHooks`, which [`NeighbourhoodHooks`] implements and `server::hooks`
//! registers: checkout asks [`wave_orders::place`] for the wave's price of each line, and it
//! takes the wave's stock (a conditional update in the order's transaction: exact under
//! concurrency without a batcher), checks the per-member limit and the member's leader, and
//! writes the `wave_order` row — or refuses, and nothing is written. Payment, cancellation,
//! expiry and restocking reach this domain the same way (the campaign hooks of kind `wave`
//! forward to the wave hooks), refunds through the ordinary order hooks, and `GET
//! /v1/orders/{id}` shows `"pickup"` by asking the wave hooks. The leader, code and commission
//! are therefore this domain's rows, never columns of orders.
//!
//! Leaders earn one level of commission only (a leader is not a promoter): `commission_bp` of
//! what is still paid on an order, pending from pickup until the tenant's return window
//! (`points.return_window_days`) after it, then available; refunds reduce it exactly as
//! distribution's commissions are reduced. The money is a `commission` ledger transfer from
//! `system:commission_expense` to the leader's member account — the account distribution's
//! withdrawals draw from.

pub mod leaders;
pub mod model;
pub mod pickups;
pub mod rules;
pub mod wave_orders;
pub mod waves;

use async_trait::async_trait;
use sqlx::AnyConnection;
use utoipa_axum::router::OpenApiRouter;

use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::hooks::{
    MemberErased, MemberHooks, OrderHooks, OrderPickup, OrderRefunded, WaveHooks, WaveOrder,
    WavePlacement,
};
use crate::common::ids::TenantId;
use crate::common::time::to_micros;
use crate::AppState;

crate::typed_id!(LeaderId, "ldr");
crate::typed_id!(WaveId, "wav");

/// Largest page of leaders and waves.
pub const MAX_PAGE: i64 = 200;

pub use pickups::RELEASE_JOB;
pub use waves::CUTOFF_JOB;

/// Every community group-buying route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(leaders::routes())
        .merge(waves::routes())
        .merge(pickups::routes())
}

/// Community group buying's reactions to orders and members (DESIGN rule 12), registered by
/// `server::hooks`.
pub struct NeighbourhoodHooks;

#[async_trait]
impl WaveHooks for NeighbourhoodHooks {
    async fn place(&self, tx: &mut Tx, placement: &WavePlacement<'_>) -> ApiResult<Vec<i64>> {
        wave_orders::place(tx, placement).await
    }

    async fn require_payable(&self, tx: &mut Tx, order: &WaveOrder<'_>) -> ApiResult<()> {
        wave_orders::require_payable(tx, order).await
    }

    async fn on_paid(&self, tx: &mut Tx, order: &WaveOrder<'_>) -> ApiResult<()> {
        wave_orders::on_paid(tx, order).await
    }

    async fn on_released(&self, tx: &mut Tx, order: &WaveOrder<'_>, unpaid: bool) -> ApiResult<()> {
        wave_orders::on_released(tx, order, unpaid).await
    }

    async fn pickup(
        &self,
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        order_id: &str,
    ) -> ApiResult<Option<OrderPickup>> {
        wave_orders::pickup(conn, tenant_id, order_id).await
    }
}

#[async_trait]
impl OrderHooks for NeighbourhoodHooks {
    async fn on_refunded(&self, tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
        // Only a wave order has a pickup: checkout writes its `wave_order` row in the same
        // transaction that gives the order campaign kind `wave`, and no other order gets one.
        if refund.campaign_kind != Some(crate::orders::waves::KIND) {
            return Ok(());
        }
        pickups::on_order_refunded(tx, refund).await
    }
}

#[async_trait]
impl MemberHooks for NeighbourhoodHooks {
    /// An erased member who led a pickup point: the leader's name and point (often the
    /// leader's home or shop) are cleared and the leader closed. Orders, codes and commission
    /// stay as they are, so the ledger still balances.
    async fn on_erased(&self, tx: &mut Tx, member: &MemberErased<'_>) -> ApiResult<()> {
        let now = to_micros(tx.now());
        sqlx::query(
            "UPDATE leader SET name = '(erased)', pickup_name = '(erased)', pickup_address = '-', \
             pickup_hours = '-', lat_micro = NULL, lng_micro = NULL, status = 'closed', \
             updated_at = $1 WHERE tenant_id = $2 AND member_id = $3",
        )
        .bind(now)
        .bind(member.tenant_id.as_str())
        .bind(member.member_id.as_str())
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}
