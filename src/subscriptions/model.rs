//! Subscription states, requests and responses.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::schedule::Schedule;
use crate::common::state::state_enum;

state_enum! {
    /// How a subscription is paid.
    pub enum Billing {
        /// One order for every delivery, paid like any order when subscribing.
        Prepaid = "prepaid",
        /// Each delivery's order is created at its cut-off and paid from the wallet.
        PerDelivery = "per_delivery",
    }
}

state_enum! {
    /// Where a subscription stands.
    pub enum SubscriptionStatus {
        Active = "active",
        Paused = "paused",
        Cancelled = "cancelled",
        Completed = "completed",
    }
}

state_enum! {
    /// Where one delivery stands (`delivered` once its order is fulfilled or completed).
    pub enum DeliveryStatus {
        Scheduled = "scheduled",
        Skipped = "skipped",
        Ordered = "ordered",
        Delivered = "delivered",
    }
}

/// `POST /v1/subscription-plans`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateSubscriptionPlan)]
pub struct CreatePlan {
    pub name: String,
    pub product_id: String,
    /// Units per delivery (1 to 10,000).
    pub qty: i64,
    pub schedule: Schedule,
    /// How many deliveries; null or absent: open-ended (per-delivery billing only).
    pub deliveries: Option<i64>,
    /// Fen per delivery.
    pub price_per_delivery: i64,
    pub billing: Billing,
    /// Days before a delivery that its order is created and changes to it stop (0 to 30,
    /// default 2), counted in the tenant's local days.
    pub cutoff_days: Option<i64>,
}

/// `PATCH /v1/subscription-plans/{id}`: absent fields keep their value. Terms change for new
/// subscriptions only; `active: false` stops new subscriptions.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateSubscriptionPlan)]
pub struct UpdatePlan {
    pub name: Option<String>,
    pub active: Option<bool>,
    pub price_per_delivery: Option<i64>,
    pub cutoff_days: Option<i64>,
}

/// A subscription plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SubscriptionPlan)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub product_id: String,
    pub qty: i64,
    pub schedule: Schedule,
    pub deliveries: Option<i64>,
    pub price_per_delivery: i64,
    pub billing: Billing,
    pub cutoff_days: i64,
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SubscriptionPlanPage)]
pub struct PlanPage {
    pub data: Vec<Plan>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    pub active: Option<bool>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

/// Where deliveries go: `{"address"}` (shipped) or `{"leader_id"}` (picked up at a community
/// leader's point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Delivery {
    Address { address: String },
    Leader { leader_id: String },
}

/// `POST /v1/members/{id}/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub plan_id: String,
    /// The first delivery day (`YYYY-MM-DD`, the tenant's local day); its cut-off must not
    /// have passed.
    pub start_date: String,
    pub delivery: Delivery,
}

/// `POST /v1/subscriptions/{id}/skip`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipRequest {
    /// The delivery day to skip.
    pub date: String,
}

/// `POST /v1/subscriptions/{id}/resume` (body optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The first delivery day after the pause (default: the first day whose cut-off has not
    /// passed); an `every` schedule moves on from it.
    pub date: Option<String>,
}

/// `PATCH /v1/subscriptions/{id}`: applies to every delivery whose cut-off has not passed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// Units per delivery (per-delivery billing only: a prepaid subscription's quantity is
    /// what was paid for). The price of a delivery follows in proportion to the plan's.
    pub qty: Option<i64>,
    pub delivery: Option<Delivery>,
    /// The first delivery the change applies to (default: the next one not past its cut-off);
    /// 409 `past_cutoff` when its cut-off has passed.
    pub from_date: Option<String>,
}

/// One delivery of a subscription's calendar.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The delivery day (tenant's local day).
    pub date: String,
    pub status: DeliveryStatus,
    /// When its order is created and changes to it stop (RFC 3339).
    pub cutoff_at: String,
    pub qty: i64,
    /// The delivery's order once created.
    pub order_id: Option<String>,
    /// Why it was skipped: `requested` or `unpaid`.
    pub reason: Option<String>,
}

/// A subscription with its calendar.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub member_id: String,
    pub plan_id: String,
    pub product_id: String,
    pub qty: i64,
    pub schedule: Schedule,
    pub billing: Billing,
    pub price_per_delivery: i64,
    pub cutoff_days: i64,
    pub status: SubscriptionStatus,
    /// Why it is paused: `requested` or `payment_failed`.
    pub pause_reason: Option<String>,
    /// Null once the member's personal data was erased.
    pub delivery: Option<Delivery>,
    /// Prepaid: the order that pays for every delivery.
    pub order_id: Option<String>,
    /// Deliveries paid for (prepaid) or planned; null: open-ended.
    pub deliveries_total: Option<i64>,
    /// Deliveries still to be ordered (null: open-ended).
    pub remaining: Option<i64>,
    /// Fen given back by cancelling.
    pub refunded: i64,
    /// The calendar, by day: what was ordered, skipped and is scheduled.
    pub deliveries: Vec<DeliveryView>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionPage {
    pub data: Vec<Subscription>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    /// `active`, `paused`, `cancelled` or `completed`.
    pub status: Option<String>,
    pub plan_id: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MemberSubscriptionQuery {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// Weeks ahead, this week first (1 to 26, default 8).
    #[param(minimum = 1, maximum = 26)]
    pub weeks: Option<i64>,
}

/// Units to deliver in one week (Monday to Sunday, the tenant's local days).
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastWeek {
    /// The Monday that starts the week.
    pub week_start: String,
    pub units: i64,
    pub deliveries: i64,
}

/// What the warehouse will send for a plan: deliveries ordered or scheduled (of active
/// subscriptions), by week.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forecast {
    pub plan_id: String,
    pub product_id: String,
    pub weeks: Vec<ForecastWeek>,
    pub total_units: i64,
}
