//! Requests, responses and states of community group buying.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A leader's state: `active` takes wave orders; `paused` takes none for a while (holiday);
/// `closed` for good. Existing orders are picked up whatever the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaderStatus {
    Active,
    Paused,
    Closed,
}

impl LeaderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderStatus::Active => "active",
            LeaderStatus::Paused => "paused",
            LeaderStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(LeaderStatus::Active),
            "paused" => Some(LeaderStatus::Paused),
            "closed" => Some(LeaderStatus::Closed),
            _ => None,
        }
    }
}

/// A point on the map, in degrees (WGS-84 as phones report it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
}

/// Where the neighbours pick up (自提点).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickupPoint {
    /// 1 to 100 characters.
    pub name: String,
    /// 1 to 200 characters.
    pub address: String,
    pub location: Option<Location>,
    /// Opening hours as the leader writes them (`每天 8:00-20:00`); 1 to 100 characters.
    pub hours: String,
}

/// `POST /v1/leaders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLeader {
    pub member_id: String,
    /// 1 to 100 characters.
    pub name: String,
    pub pickup_point: PickupPoint,
    /// The leader's commission on what their neighbours picked up, in basis points (0 to 5000).
    pub commission_bp: i64,
    /// `active` (default) or `paused`.
    pub status: Option<LeaderStatus>,
}

/// `PATCH /v1/leaders/{id}`: absent fields keep their value; the pickup point is given whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLeader {
    pub name: Option<String>,
    pub pickup_point: Option<PickupPoint>,
    pub commission_bp: Option<i64>,
    pub status: Option<LeaderStatus>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Leader {
    pub id: String,
    pub member_id: String,
    pub name: String,
    pub status: LeaderStatus,
    pub pickup_point: PickupPoint,
    pub commission_bp: i64,
    /// Commission taken back after release that the balance could not cover (fen).
    pub debt: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderPage {
    pub data: Vec<Leader>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaderListQuery {
    /// `active`, `paused` or `closed`.
    pub status: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NearbyQuery {
    /// Latitude in degrees (-90 to 90).
    pub lat: f64,
    /// Longitude in degrees (-180 to 180).
    pub lng: f64,
    /// 1 to 50, default 10.
    pub limit: Option<i64>,
    /// Only points within this many metres (default: any distance).
    pub within_m: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NearbyLeader {
    pub leader: Leader,
    pub distance_m: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NearbyLeaders {
    /// Nearest first; active leaders with a located pickup point only.
    pub data: Vec<NearbyLeader>,
}

/// `PUT /v1/members/{id}/leader`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseLeader {
    pub leader_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberLeader {
    pub member_id: String,
    pub leader_id: String,
    pub chosen_at: String,
    pub leader: Leader,
}

/// One product of a wave, as created.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWaveItem {
    pub product_id: String,
    /// The wave's price per unit (fen, 0 or more).
    pub price: i64,
    /// Units for sale in the wave; absent: unlimited.
    pub stock: Option<i64>,
    /// Units one member may buy in the wave; absent: no limit.
    pub per_member_limit: Option<i64>,
}

/// `POST /v1/waves`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWave {
    /// 1 to 100 characters.
    pub name: String,
    /// When orders open: RFC 3339, a local date-time (`2026-12-07T08:00:00`, in the tenant's
    /// time zone) or a date.
    pub opens_at: String,
    /// The cut-off (截单): after it, no order and no payment; unpaid orders are cancelled.
    /// Same forms as `opens_at`; `2026-12-07T23:00:00` is 23:00 in the tenant's zone.
    pub cutoff_at: String,
    /// The day the goods reach the pickup points (`YYYY-MM-DD`, on or after the cut-off's).
    pub delivery_date: String,
    /// 1 to 100 products, each once.
    pub items: Vec<NewWaveItem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaveItem {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub price: i64,
    /// Units left; null: unlimited.
    pub stock: Option<i64>,
    /// Units held by unpaid and paid orders.
    pub taken: i64,
    pub per_member_limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Wave {
    pub id: String,
    pub name: String,
    /// `upcoming`, `open` or `closed` (from the cut-off instant on).
    pub status: String,
    pub opens_at: String,
    pub cutoff_at: String,
    pub delivery_date: String,
    pub items: Vec<WaveItem>,
    /// What `wave.closed` announced, once the cut-off job ran.
    #[schema(value_type = Option<Object>)]
    pub totals: Option<serde_json::Value>,
    pub closed_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WavePage {
    pub data: Vec<Wave>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaveListQuery {
    /// `upcoming`, `open` or `closed`.
    pub status: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListFormat {
    /// `json` (default), `csv` or `html` (a printable page).
    pub format: Option<String>,
}

/// A product's units on a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ListItem {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub qty: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderPickList {
    pub leader_id: String,
    pub leader_name: String,
    pub pickup_point: PickupPoint,
    pub items: Vec<ListItem>,
}

/// What to pack for each leader: the paid orders' units (after shortages).
#[derive(Debug, Serialize, ToSchema)]
pub struct PickList {
    pub wave_id: String,
    pub leaders: Vec<LeaderPickList>,
}

/// What to buy in: the pick lists summed across leaders.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseList {
    pub wave_id: String,
    pub items: Vec<ListItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Arrival {
    pub wave_id: String,
    pub leader_id: String,
    /// Paid orders of this leader in the wave that became ready for pickup now.
    pub ready: i64,
}

/// `POST /v1/pickups/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPickup {
    pub leader_id: String,
    /// The member's 6-digit pickup code.
    pub code: String,
}

/// `POST /v1/orders/{id}/shortage`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortageRequest {
    /// Units of each product that did not arrive (refunded at the price paid).
    pub items: Vec<ShortItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortItem {
    pub product_id: String,
    pub qty: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// From this instant (RFC 3339, local date-time or date in the tenant's zone); default:
    /// the beginning.
    pub from: Option<String>,
    /// Up to (excluding) this instant; default: now.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderCommission {
    /// Picked up, inside the return window (fen).
    pub pending: i64,
    /// Released to the leader's balance (fen, after claw-backs).
    pub available: i64,
}

/// A leader's figures over paid wave orders placed in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderStats {
    pub leader_id: String,
    /// Paid orders (refunded in full excluded).
    pub orders: i64,
    /// What those orders paid, minus refunds (fen).
    pub gmv: i64,
    /// Distinct members who ordered.
    pub members: i64,
    pub picked_up: i64,
    pub not_picked_up: i64,
    pub commission: LeaderCommission,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    /// `7d`, `30d` (default) or `all`: paid wave orders placed in that period.
    pub period: Option<String>,
    /// 1 to 100, default 10.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoardEntry {
    pub rank: i64,
    pub leader_id: String,
    pub name: String,
    pub orders: i64,
    pub gmv: i64,
    pub members: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderBoard {
    pub period: String,
    /// By GMV, then orders, then leader id.
    pub data: Vec<BoardEntry>,
}

/// `POST /v1/leaders/{id}/withdrawals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderWithdrawalRequest {
    /// Fen of available commission to take out.
    pub amount: i64,
}

/// A leader's withdrawal: a pending ledger transfer of `amount` from the leader's commission
/// to `system:payouts` (its id is `transfer_id`), resolved by the merchant's payment system
/// through `POST /v1/ledger/transfers/{transfer_id}/post` (paid) or `…/void` (failed: the
/// money is back).
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderWithdrawal {
    pub id: String,
    pub leader_id: String,
    pub amount: i64,
    pub status: String,
    pub transfer_id: String,
}
