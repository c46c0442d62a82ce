//! The event outbox as clients see it: `GET /v1/events` and the catalogue of every event type
//! with its payload fields ([`EVENT_TYPES`], rendered on `/docs`). The storage (appending in the
//! writer's transaction, numbering, reading back) is [`super::outbox`].

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::json::Json;
use super::outbox::{self, Event, MAX_EVENTS_PAGE};
use crate::common::extract::Query;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Return events with `seq` greater than this (default 0).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Only events of this type, e.g. `member.created`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<Event>,
    /// Pass as `after` to read on; null when the page was empty.
    pub next_after: Option<i64>,
}

/// Read the tenant's events in order.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventPage)), security(("api_key" = [])))]
async fn list_events(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::validation("after", "must be 0 or more"));
    }
    let limit = super::pagination::limit(query.limit, 100, MAX_EVENTS_PAGE)?;
    let data = outbox::list(
        state.db.read(),
        &auth.tenant_id,
        after,
        limit,
        query.kind.as_deref(),
        None,
    )
    .await?;
    let next_after = data.last().map(|e| e.seq);
    Ok(Json(EventPage { data, next_after }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

/// One kind of event in the outbox: what it means and the fields of its `data`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventType {
    pub kind: &'static str,
    pub description: &'static str,
    /// The top-level fields of `data`; one entry in parentheses when `data` is a whole
    /// settings object rather than named fields.
    pub payload: &'static [&'static str],
}

const fn event_type(
    kind: &'static str,
    description: &'static str,
    payload: &'static [&'static str],
) -> EventType {
    EventType {
        kind,
        description,
        payload,
    }
}

/// The fields every referral event carries (one helper in `growth::referrals` builds them).
const REFERRAL: &[&str] = &[
    "referral_id",
    "campaign_id",
    "inviter_id",
    "invitee_id",
    "status",
    "reason",
    "order_id",
];

/// Every event kind the code emits, sorted by kind: the catalogue of the docs page. A test in
/// `crate::docs` reads the source tree and fails when an emitted kind is missing here, or an
/// emitted payload field is not listed.
pub const EVENT_TYPES: &[EventType] = &[
    event_type("alliance.created", "A tenant created a merchant alliance and is its first partner.", &["alliance_id", "partner_id", "name"]),
    event_type("alliance.fee_created", "A customer sent by partner `to` paid a first order at partner `from`: `from` owes `to` the referral fee (sent to both partners).", &["alliance_id", "entry_id", "from", "to", "amount", "customer_id"]),
    event_type("alliance.fee_voided", "The order that earned a referral fee was refunded in full within the return window: the fee was reversed (sent to both partners).", &["alliance_id", "entry_id", "voids", "from", "to", "amount", "customer_id"]),
    event_type("alliance.invitation_created", "A partner made a one-time invitation code to the alliance.", &["alliance_id", "expires_at"]),
    event_type("alliance.joined", "The tenant joined an alliance with an invitation code.", &["alliance_id", "partner_id", "name"]),
    event_type("alliance.left", "The tenant left an alliance; what it is owed or owes stays.", &["alliance_id", "partner_id"]),
    event_type("alliance.offer_claimed", "A member claimed an alliance coupon offer (each side names its own member; `partner_id` is the other side).", &["alliance_id", "offer_id", "claim_id", "coupon_id", "member_id", "partner_id"]),
    event_type("alliance.offer_created", "The tenant offered one of its coupon templates to its alliance partners.", &["alliance_id", "offer_id", "coupon_template_id", "stock"]),
    event_type("alliance.offer_withdrawn", "The tenant withdrew its alliance offer: no new claims; coupons claimed before stay valid.", &["alliance_id", "offer_id"]),
    event_type("alliance.referral_link_created", "The tenant made an alliance referral link (`to_partner_id`: the only partner where it works, or null).", &["alliance_id", "referral_link_id", "to_partner_id"]),
    event_type("alliance.referral_link_revoked", "The tenant revoked one of its alliance referral links.", &["alliance_id", "referral_link_id"]),
    event_type("alliance.referral_recorded", "A customer arrived at partner `to` by partner `from`'s referral link and was recorded as sent by `from` (each side gets it; `member_id` only in the receiving tenant's copy).", &["alliance_id", "referral_link_id", "customer_id", "from", "to", "member_id"]),
    event_type("alliance.settlement_recorded", "A payment made outside shequn from partner `from` to partner `to` was recorded (sent to both).", &["alliance_id", "entry_id", "from", "to", "amount", "reference"]),
    event_type("analytics.scored", "A scoring run stored every member's analytics scores; `model_quality` is the fit's status (ok, at_boundary, not_converged, insufficient_data).", &["customers", "calibration_end", "model_quality"]),
    event_type("api_key.created", "An API key was created (its secret is never in an event).", &["key_id", "role"]),
    event_type("api_key.revoked", "An API key was revoked.", &["key_id"]),
    event_type("automation.created", "An automation was created; it acts on events from now on.", &["automation_id", "trigger", "status"]),
    event_type("automation.deleted", "An automation was deleted; its waiting runs do nothing.", &["automation_id"]),
    event_type("automation.updated", "An automation was changed (name, trigger, filter, delay, actions or status).", &["automation_id", "status"]),
    event_type("broadcast.cancelled", "A scheduled broadcast was cancelled before it was sent.", &["broadcast_id"]),
    event_type("broadcast.created", "A broadcast was scheduled.", &["broadcast_id", "send_at"]),
    event_type("broadcast.failed", "A broadcast could not be sent: its saved segment was deleted (`reason`).", &["broadcast_id", "reason"]),
    event_type("broadcast.sent", "A broadcast ran for every member of its audience (`audience`: how many).", &["broadcast_id", "audience"]),
    event_type("checkin.created", "A member checked in for the day, with the streak reached and any reward paid.", &["member_id", "date", "streak", "cycle_day", "reward", "payout"]),
    event_type("checkin.made_up", "A missed check-in was made up (paid in points), possibly joining streaks.", &["member_id", "date", "streak", "points_cost", "streaks_changed"]),
    event_type("checkin.rule_changed", "The check-in rule (reward cycle, make-ups per month) changed.", &["cycle_days", "makeup_per_month"]),
    event_type("code.scanned", "An authentic code was scanned: its count, whether it was the first scan, and the points this scan earned (only the first member's scan earns any).", &["batch_id", "serial", "scan_id", "member_id", "scan_count", "first_scan", "points_awarded", "city"]),
    event_type("code.suspicious", "A code was scanned from so many devices or cities that its label is likely cloned; flagged once.", &["batch_id", "serial", "devices", "cities"]),
    event_type("code_batch.created", "A batch of codes was generated for a product.", &["batch_id", "product_id", "count", "points_per_scan"]),
    event_type("commission.adjusted", "A refund changed what a commission owes: `amount` is owed now; after release, `taken_back` left the promoter's balance and `debt` is what it could not cover.", &["commission_id", "order_id", "level", "promoter_id", "amount", "status", "taken_back", "debt"]),
    event_type("commission.created", "A bound customer's paid order earned a promoter a pending commission (level 1 or 2), released at `release_at`.", &["commission_id", "order_id", "level", "promoter_id", "amount", "release_at"]),
    event_type("commission.released", "An order's return window closed: the commission became available; `debt_repaid` of it repaid the promoter's debt.", &["commission_id", "order_id", "level", "promoter_id", "amount", "debt_repaid"]),
    event_type("coupon.claimed", "A member received a coupon (claimed, granted or given as a perk).", &["coupon_id", "template_id", "member_id", "reason"]),
    event_type("coupon.redeemed", "A coupon was used on an order.", &["coupon_id", "template_id", "member_id", "order_ref", "order_amount", "discount"]),
    event_type("coupon.template_created", "A coupon template was created.", &["template_id", "kind", "total_stock"]),
    event_type("coupon.unredeemed", "A redemption was undone (order cancelled or refunded); the coupon is usable again or expired.", &["coupon_id", "template_id", "member_id", "order_ref", "discount", "status"]),
    event_type("distribution.product_rates_updated", "A product's own commission rates were set (or removed: `rates` null).", &["product_id", "rates"]),
    event_type("distribution.settings_updated", "The distribution settings changed.", &["enabled", "levels"]),
    event_type("flash_sale.created", "A flash sale (秒杀) was created.", &["flash_sale_id", "product_id", "stock", "price"]),
    event_type("group.created", "A community group (社群) was created.", &["group_id", "owner_member_id", "capacity"]),
    event_type("group.joined", "A member joined a group, possibly invited or through a join link.", &["group_id", "member_id", "inviter_member_id", "link_id"]),
    event_type("group.left", "A member left a group.", &["group_id", "member_id"]),
    event_type("group_buy.created", "A group buy (拼团) was created.", &["group_buy_id", "product_id", "team_size"]),
    event_type("group_buy.team_failed", "A team expired without enough paid members; its paid orders were refunded.", &["team_id", "group_buy_id", "paid_count", "refunded", "virtual"]),
    event_type("group_buy.team_joined", "A member joined a team with an order.", &["team_id", "member_id", "order_id"]),
    event_type("group_buy.team_opened", "A member opened a team with an order.", &["team_id", "group_buy_id", "member_id", "order_id", "expires_at"]),
    event_type("group_buy.team_succeeded", "A team filled (or was completed virtually at expiry).", &["team_id", "group_buy_id", "paid_count", "refunded", "virtual"]),
    event_type("group_link.all_full", "Every group behind a join link (群活码) is full; `action` says what the link did.", &["link_id", "code", "groups", "action"]),
    event_type("group_link.created", "A join link was created over groups.", &["link_id", "code", "group_ids"]),
    event_type("group_link.groups_added", "Groups were added behind a join link.", &["link_id", "group_ids"]),
    event_type("job.parked", "A scheduled job failed too often and was parked for an operator.", &["job_id", "kind", "attempts", "last_error"]),
    event_type("job.retried", "A parked job was put back to run.", &["job_id"]),
    event_type("leader.created", "A member became a community group-buying leader (团长) with a pickup point.", &["leader_id", "member_id", "status", "commission_bp"]),
    event_type("leader.updated", "A leader's name, pickup point, commission rate or status (active, paused, closed) changed.", &["leader_id", "status", "fields"]),
    event_type("leader_commission.adjusted", "A refund (or shortage) changed what a leader's commission on an order owes: `amount` is owed now; after release, `taken_back` left the leader's balance and `debt` is what it could not cover.", &["order_id", "leader_id", "amount", "status", "taken_back", "debt"]),
    event_type("leader_commission.pending", "A wave order was picked up: the leader's commission is pending until the return window closes at `release_at`.", &["order_id", "leader_id", "amount", "release_at"]),
    event_type("leader_commission.released", "The return window after a pickup closed: the leader's commission became available; `debt_repaid` of it repaid the leader's debt.", &["order_id", "leader_id", "amount", "debt_repaid"]),
    event_type("ledger.transfers_committed", "A batch of ledger transfers was committed: transfers created and pending ones resolved.", &["created", "resolved"]),
    event_type("lottery.created", "A lottery was created with its seed commitment.", &["lottery_id", "mode", "commitment"]),
    event_type("lottery.drawn", "A lottery was drawn: the winners and the revealed seed; `closed_early` when it was drawn before `closes_at`.", &["lottery_id", "winners", "seed", "commitment", "closed_early"]),
    event_type("lottery.entered", "A member entered a lottery.", &["lottery_id", "member_id", "entry_index"]),
    event_type("lottery.won", "An instant-lottery entry won a prize at entry.", &["lottery_id", "member_id", "entry_index", "prize_position", "payout"]),
    event_type("member.birthday", "It is a member's birthday in the tenant's time zone (29 February: 28 February in other years), once a year.", &["member_id", "year"]),
    event_type("member.birthday_perk", "A member's birthday perk was given (points and/or a coupon; `coupon_error` when the coupon could not be).", &["member_id", "year", "points", "coupon_template_id", "coupon_id", "coupon_error"]),
    event_type("member.created", "A member was created (by the API, a member import, an order import or a code scan; `via` says which).", &["member_id", "source", "via"]),
    event_type("member.erased", "A member was erased (anonymised).", &["member_id"]),
    event_type("member.growth_changed", "A member's growth value changed.", &["member_id", "delta", "growth", "reason"]),
    event_type("member.leader_chosen", "A member chose the community group-buying leader their wave orders go to.", &["member_id", "leader_id"]),
    event_type("member.lifecycle_changed", "A scoring run moved a member to another lifecycle stage.", &["member_id", "from", "to"]),
    event_type("member.repurchase_due", "A member is predicted to buy a product again soon (repurchase reminder).", &["member_id", "sku", "predicted_next", "last_purchased", "basis"]),
    event_type("member.tagged", "Tags were added to or removed from a member.", &["member_id", "added", "removed"]),
    event_type("member.tier_changed", "A member moved to another tier.", &["member_id", "from", "to"]),
    event_type("member.updated", "A member's profile changed; `fields` names the changed fields (not their values).", &["member_id", "fields", "via"]),
    event_type("message.deferred", "A marketing message fell in the quiet hours: it goes through the gate again at `deliver_at`.", &["message_id", "member_id", "deliver_at"]),
    event_type("message.requested", "A message passed the gate: the merchant's gateway sends it and reports back with POST /v1/messages/{id}/status.", &["message_id", "member_id", "channel", "category", "template", "variables", "automation_id", "broadcast_id"]),
    event_type("message.status_reported", "The gateway reported a message sent, failed or clicked.", &["message_id", "member_id", "status"]),
    event_type("message.suppressed", "The gate refused a message: `reason` is no_consent, frequency_cap or erased.", &["message_id", "member_id", "reason"]),
    event_type("messaging.settings_updated", "The message rules (frequency cap, quiet hours) changed.", &["max_marketing_per_member_per_7_days", "quiet_hours"]),
    event_type("order.cancelled", "An unpaid order was cancelled; its stock, coupon and points were returned.", &["order_id", "member_id", "qty", "campaign_id", "team_id"]),
    event_type("order.completed", "A fulfilled order was completed.", &["order_id", "member_id"]),
    event_type("order.created", "An order was placed.", &["order_id", "member_id", "source", "status", "total", "qty", "campaign_kind", "campaign_id", "team_id"]),
    event_type("order.expired", "An unpaid order passed its payment deadline; its stock, coupon and points were returned.", &["order_id", "member_id", "qty", "campaign_id", "team_id"]),
    event_type("order.fulfilled", "A paid order was fulfilled.", &["order_id", "member_id"]),
    event_type("order.paid", "An order was paid (wallet, or an external payment confirmed).", &["order_id", "member_id", "total", "method", "reference", "source"]),
    event_type("order.refunded", "An order was refunded in part or in full.", &["order_id", "member_id", "refund_id", "amount", "refunded_amount", "full", "points_returned", "reason"]),
    event_type("orders.imported", "An order-history import finished.", &["orders", "members_created"]),
    event_type("pickup.completed", "A wave order was picked up (its code verified at the leader's pickup point).", &["order_id", "wave_id", "leader_id", "member_id"]),
    event_type("pickup.ready", "A wave order's goods arrived at the leader's pickup point: the member may pick up with `code`.", &["order_id", "wave_id", "leader_id", "member_id", "code", "pickup_point"]),
    event_type("points.earned", "A member earned points on a reference (pending until the return window closes, or posted).", &["member_id", "points", "reference", "status"]),
    event_type("points.expired", "A member's points earned before a cut-off expired.", &["member_id", "points", "earned_before"]),
    event_type("points.expiring", "A member's points will expire soon (warning).", &["member_id", "points", "earned_before", "expires_by"]),
    event_type("points.released", "Pending points were posted after the return window (`member` is the ledger account).", &["member", "points", "reference"]),
    event_type("points.voided", "Pending points were voided (the order was refunded).", &["member_id", "points", "reference"]),
    event_type("product.created", "A product was created.", &["product_id", "sku"]),
    event_type("product.updated", "A product changed; `fields` names the changed fields.", &["product_id", "fields"]),
    event_type("program.member_day_updated", "The member-day settings changed.", &["(the member-day settings as PUT /v1/program/member-day takes them)"]),
    event_type("program.points_updated", "The points rules changed.", &["(the points settings as PUT /v1/program/points takes them)"]),
    event_type("program.stored_value_updated", "The stored-value settings changed.", &["spend_policy", "cap"]),
    event_type("program.tiers_updated", "The tier ladder changed; `tiers` lists the tier names.", &["tiers"]),
    event_type("promoter.applied", "A member applied to become a promoter (`status` approved or pending).", &["promoter_id", "member_id", "invited_by_promoter_id", "status"]),
    event_type("promoter.approved", "A promoter was approved (or reinstated after a suspension).", &["promoter_id", "member_id", "invited_by_promoter_id", "status"]),
    event_type("promoter.customer_bound", "A customer was bound to a promoter through a share code (`previous_promoter_id` when the binding moved).", &["promoter_id", "member_id", "previous_promoter_id", "ends_at"]),
    event_type("promoter.rejected", "A promoter application was rejected.", &["promoter_id", "member_id", "status"]),
    event_type("promoter.suspended", "A promoter was suspended: they earn nothing new.", &["promoter_id", "member_id", "status"]),
    event_type("referral.attributed", "A signup was attributed to an inviter.", REFERRAL),
    event_type("referral.campaign_created", "A referral campaign was created.", &["campaign_id", "qualify_on"]),
    event_type("referral.campaign_updated", "A referral campaign changed status.", &["campaign_id", "status"]),
    event_type("referral.code_issued", "A member received an invite code for a campaign.", &["member_id", "campaign_id"]),
    event_type("referral.ladder_reward_paid", "A ladder rung's reward was paid to the inviter (`status` pending until its referral's release, or posted); `attempt` is 2 or more when the rung is paid again after an earlier reward for it was voided; `qualified` is the inviter's qualified invites.", &["reward_id", "referral_id", "campaign_id", "inviter_id", "invites", "kind", "amount", "status", "attempt", "qualified"]),
    event_type("referral.ladder_reward_voided", "A pending ladder rung's reward was voided: the inviter's qualified invites fell below its rung before release (`reason` below_rung), or the referral carrying it was voided (`referral_voided`; the rung is paid again if the count still reaches it), or its rung held a second reward (`duplicate`, a repair); `qualified` is the count after the change.", &["reward_id", "referral_id", "campaign_id", "inviter_id", "invites", "kind", "amount", "reason", "qualified"]),
    event_type("referral.qualified", "An invite qualified (signup or first paid order, as the campaign says).", REFERRAL),
    event_type("referral.refused", "An attribution was refused by the anti-fraud rules; `reason` says why.", REFERRAL),
    event_type("referral.review_approved", "A referral held for review was approved.", REFERRAL),
    event_type("referral.review_queued", "A referral was held for manual review.", REFERRAL),
    event_type("referral.review_rejected", "A referral held for review was rejected.", REFERRAL),
    event_type("referral.rewarded", "A referral's rewards were granted (pending until release).", REFERRAL),
    event_type("referral.settings_updated", "The anti-fraud settings changed.", &["velocity_per_hour", "return_window_days"]),
    event_type("referral.voided", "A referral was voided (its qualifying order was refunded).", REFERRAL),
    event_type("refund.requested", "A refund of an externally paid order was requested from the payment provider.", &["order_id", "member_id", "amount", "refund_id", "payment_method", "payment_reference", "reason"]),
    event_type("segment.created", "A segment (saved audience) was created.", &["segment_id", "name"]),
    event_type("segment.deleted", "A segment was deleted.", &["segment_id"]),
    event_type("segment.updated", "A segment's name or rule changed; `fields` names what changed.", &["segment_id", "fields"]),
    event_type("subscription.cancelled", "A subscription was cancelled (`reason`: requested, unpaid prepaid order, order_refunded, member_erased); deliveries past their cut-off still come; `refund` is what this cancellation refunded of the prepaid order (fen).", &["subscription_id", "member_id", "reason", "refund", "refunded", "order_id"]),
    event_type("subscription.completed", "A fixed-length subscription's last delivery was ordered.", &["subscription_id", "member_id"]),
    event_type("subscription.created", "A member subscribed to a plan; `dates` are the first delivery days; `order_id` is the prepaid order to pay.", &["subscription_id", "member_id", "plan_id", "billing", "order_id", "dates"]),
    event_type("subscription.delivery_created", "A delivery's cut-off came: its order was created and its stock reserved (`total` 0 for a prepaid delivery).", &["subscription_id", "member_id", "product_id", "date", "qty", "order_id", "billing", "total"]),
    event_type("subscription.ending", "One delivery of a fixed-length subscription is left (`last_date`): the moment to offer a renewal.", &["subscription_id", "member_id", "plan_id", "last_date", "remaining"]),
    event_type("subscription.paused", "A subscription was paused (`reason` requested, or payment_failed after three failed days).", &["subscription_id", "member_id", "reason"]),
    event_type("subscription.payment_due", "A per-delivery order could not be paid from the wallet (`reason`); the member is to pay it (`attempt` 1 to 3; the third pauses the subscription).", &["subscription_id", "member_id", "order_id", "date", "amount", "attempt", "reason"]),
    event_type("subscription.resumed", "A paused subscription was resumed from `date`; `next_date` is its next delivery.", &["subscription_id", "member_id", "date", "next_date"]),
    event_type("subscription.skipped", "A delivery was skipped; `added_date` is the delivery added at the end of a fixed-length subscription.", &["subscription_id", "member_id", "date", "added_date"]),
    event_type("subscription.updated", "A subscription's quantity or delivery changed, from `from_date`.", &["subscription_id", "member_id", "qty", "from_date"]),
    event_type("subscription_plan.created", "A subscription plan (周期购) was created.", &["plan_id", "product_id", "billing"]),
    event_type("subscription_plan.updated", "A subscription plan changed (`active` false: no new subscriptions).", &["plan_id", "active"]),
    event_type("tenant.created", "A tenant was created.", &["tenant_id", "name"]),
    event_type("tenant.settings_updated", "The tenant's settings changed (its time zone).", &["time_zone", "previous_time_zone"]),
    event_type("topup_plan.created", "A top-up plan (充值送) was created.", &["plan_id", "pay", "bonus"]),
    event_type("wallet.refunded", "A wallet spend was refunded, or a top-up refunded (`kind`), with bonus claw-back.", &["member_id", "refund_id", "kind", "spend_id", "amount", "principal", "bonus", "topup_id", "bonus_clawed_back"]),
    event_type("wallet.spent", "Stored value was spent, principal and bonus.", &["member_id", "spend_id", "amount", "principal", "bonus"]),
    event_type("wallet.topped_up", "A member topped up stored value under a plan.", &["member_id", "topup_id", "plan_id", "pay", "bonus"]),
    event_type("wave.arrived", "A wave's goods for one leader arrived at the pickup point (`orders` became ready).", &["wave_id", "leader_id", "orders"]),
    event_type("wave.closed", "A wave reached its cut-off: unpaid orders were cancelled; `items` and the other totals are what the paid orders hold.", &["wave_id", "orders", "cancelled", "units", "gmv", "leaders", "items"]),
    event_type("wave.created", "A community group-buying wave (团期) was created.", &["wave_id", "name", "opens_at", "cutoff_at", "delivery_date"]),
    event_type("webhook.test", "A test event sent with POST /v1/webhook-endpoints/{id}/test; delivered to that endpoint only.", &["endpoint_id", "test_id"]),
    event_type("webhook_endpoint.created", "A webhook endpoint was registered.", &["endpoint_id", "event_types"]),
    event_type("webhook_endpoint.deleted", "A webhook endpoint was deleted with its deliveries.", &["endpoint_id"]),
    event_type("webhook_endpoint.disabled", "A webhook endpoint was disabled: by an operator, because it answered 410 Gone (`gone`), or because every attempt failed for 5 days (`failing`).", &["endpoint_id", "reason"]),
    event_type("webhook_endpoint.updated", "A webhook endpoint changed; `fields` names what (url, event_types, description, status, secret).", &["endpoint_id", "fields"]),
    event_type("withdrawal.approved", "A withdrawal was approved: `net` moved to `system:payouts` for the merchant's payment system to pay.", &["withdrawal_id", "promoter_id", "amount", "fee", "net", "status", "reference"]),
    event_type("withdrawal.failed", "The payout of a withdrawal failed: the money went back to the promoter.", &["withdrawal_id", "promoter_id", "amount", "fee", "net", "status", "reference"]),
    event_type("withdrawal.paid", "The merchant's payment system paid a withdrawal (`reference`).", &["withdrawal_id", "promoter_id", "amount", "fee", "net", "status", "reference"]),
    event_type("withdrawal.rejected", "A withdrawal was rejected; the reserved money stays with the promoter.", &["withdrawal_id", "promoter_id", "amount", "fee", "net", "status", "reference"]),
    event_type("withdrawal.requested", "A promoter (or a community group-buying leader: `leader_id`) asked to withdraw commission; the amount is reserved.", &["withdrawal_id", "promoter_id", "leader_id", "amount", "fee", "net", "status", "reference"]),
];

/// The catalogue entry of `kind`.
pub fn event_type_of(kind: &str) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|e| e.kind == kind)
}
