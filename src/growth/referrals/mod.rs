//! Referral campaigns (裂变, 老带新): invite codes, attribution of new members to their
//! inviter, rewards for both sides and a ladder for the inviter, anti-fraud with a review
//! queue, leaderboards and funnels.
//!
//! How a referral goes:
//!
//! 1. A member asks for their code (`GET /v1/members/{id}/invite-code?campaign_id=`): 10
//!    random characters from a 32-letter alphabet (50 bits), stored, stable per member and
//!    campaign, unique per tenant.
//! 2. A new member is created with `"invite_code"` (or an existing member is attributed with
//!    `POST /v1/referrals`). First touch wins: one referral row per invitee, ever, whatever
//!    its outcome; `member.invited_by` is set once. The fraud rules ([`rules::assess`]) decide
//!    over facts loaded here: refused (`self_invite`, `same_device`, `same_ip`,
//!    `already_customer`, `invite_cycle`, `velocity_exceeded`, `campaign_not_active`), sent to
//!    review (`shared_device`, `shared_ip`), or accepted.
//! 3. The referral qualifies: at signup for `signup` campaigns, or when the orders part calls
//!    [`on_order_paid`] with the invitee's first paid order (`first_paid_order`) or first paid
//!    order of at least `min_order_amount` (`order_over`). Before paying, the inviter's daily
//!    cap and the campaign budget are checked ([`rules::assess_payout`]); beyond them the
//!    referral goes to review (`daily_cap_reached`, `budget_exhausted`).
//! 4. Paying charges the budget with one conditional update (`spent + cost <= budget`, exact
//!    under concurrency) and writes the rewards: points and wallet bonus as ledger transfers
//!    from `system:issuance` whose ids derive from the referral
//!    (`referral:<id>:inviter|invitee|ladder_<n>`, so a retry never pays twice), coupons through
//!    [`coupons::grant`]. Signup rewards are posted at once. Order rewards are pending until the
//!    order's return window closes (tenant setting, default 7 days): the [`RELEASE_JOB`] posts
//!    them (and issues coupon rewards then); [`on_order_refunded`] voids them before that and
//!    gives their cost back to the budget. A partial refund leaves the reward in place.
//! 5. The ladder follows the inviter's qualified invites ([`rules::ladder_plan`]): a rung holds
//!    exactly one live reward while the count reaches it and none otherwise. A refund that voids
//!    a qualified referral lowers the count; in the same transaction a pending rung above the
//!    new count is voided (its cost back to the budget, event `referral.ladder_reward_voided`),
//!    and a rung the voided referral carried that the count still reaches is paid again on the
//!    inviter's pending referral whose window closes last. When the count reaches a voided rung
//!    again, it is paid again, once, under a new id (`…:ladder_<n>:<attempt>`). A rung reward
//!    already released (posted, or a coupon issued) is final: a later drop of the count leaves
//!    it, and its rung is not paid again. The release job settles the ladder before posting.
//! 6. Reviews are approved (the rewards are paid, budget permitting: 409 `budget_exhausted`
//!    otherwise; the daily cap is the reviewer's call) or rejected (nothing is paid).
//!
//! Every decision is a row with its reason (`GET /v1/referral-campaigns/{id}/referrals`) and an
//! event. Work on one campaign is serialised by taking its row lock first, so counts (velocity,
//! daily cap, ladder rungs) are settled; the budget update is exact on its own.

pub mod hooks;
pub mod model;
pub mod rules;
pub mod store;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::SignedDuration;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks::SignupAttribution;
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::text;
use crate::common::time::{from_micros, to_micros};
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::members;
use crate::membership::coupons::{self, model::CouponTemplateId};
use crate::membership::rules::calendar;
use crate::AppState;
use model::{
    Campaign, CampaignPage, CreateCampaign, CreateReferral, Decide, Funnel, InviteCode,
    InviteCodeQuery, Leaderboard, LeaderboardQuery, NewCampaign, PageQuery, Referral,
    ReferralCampaignStatus, ReferralPage, ReferralQuery, ReferralReviewStatus,
    ReferralRewardStatus, ReferralStatus, Review, ReviewPage, ReviewQuery, RewardView, Settings,
    Signup, Standing, UpdateCampaign, UpdateSettings,
};
use rules::{Decision, QualifyOn, Reason, Reward, Role};
use store::StoredReferral;

crate::typed_id!(CampaignId, "rfc");
crate::typed_id!(ReferralId, "rfl");
crate::typed_id!(ReviewId, "rfv");

/// Scheduler job kind: post a referral's pending rewards when the return window closes.
pub const RELEASE_JOB: &str = "referral.release";
/// How long after joining an existing member may still be attributed (`POST /v1/referrals`);
/// later, they count as an existing customer.
pub const LATE_ATTRIBUTION_WINDOW_HOURS: i64 = 24;
/// Length of an invite code.
pub const CODE_LEN: usize = 10;
/// Crockford-style alphabet without 0, 1, I and O (easy to read aloud and type): 32 symbols,
/// so each character carries 5 random bits.
const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Attempts at a fresh code before giving up (a collision among 2^50 codes is rare).
const CODE_ATTEMPTS: usize = 8;
/// Largest page of referrals, campaigns and reviews.
pub const MAX_PAGE: i64 = 200;
/// Largest leaderboard.
pub const MAX_LEADERBOARD: i64 = 100;
/// Longest review note.
pub const MAX_NOTE_LEN: usize = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_campaign, list_campaigns))
        .routes(routes!(get_campaign, update_campaign))
        .routes(routes!(invite_code))
        .routes(routes!(create_referral))
        .routes(routes!(campaign_referrals))
        .routes(routes!(list_reviews))
        .routes(routes!(approve_review))
        .routes(routes!(reject_review))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(leaderboard))
        .routes(routes!(member_standing))
        .routes(routes!(funnel))
}

fn new_code() -> String {
    use rand::RngCore as _;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[(rng.next_u32() % 32) as usize]))
        .collect()
}

fn campaign_id(text: &str) -> ApiResult<CampaignId> {
    CampaignId::parse(text).ok_or_else(|| ApiError::not_found("referral campaign"))
}

/// The id of a reward (its ledger transfer id for points and wallet bonus), derived so that a
/// retry never pays twice: `referral:<referral id>:<role>`, and for a ladder rung paid again
/// after an earlier reward for it was voided, `…:ladder_<n>:<attempt>` (2, 3, …), so that the
/// new reward never collides with the voided one.
fn transfer_id(referral_id: &str, role: Role, attempt: i64) -> String {
    if attempt > 1 {
        format!("referral:{referral_id}:{}:{attempt}", role.key())
    } else {
        format!("referral:{referral_id}:{}", role.key())
    }
}

fn internal(message: String) -> ApiError {
    ApiError::internal(anyhow::anyhow!(message))
}

// --- hooks for other domains ---------------------------------------------------------------

/// Called by member creation inside its transaction: keep the anti-fraud signals and, with an
/// invite code, attribute the new member.
pub async fn on_member_created(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    signup: &Signup,
) -> ApiResult<Option<SignupAttribution>> {
    let at = to_micros(tx.now());
    store::save_signals(tx.conn(), tenant_id, member_id, &signup.signals, at).await?;
    let Some(code) = &signup.invite_code else {
        return Ok(None);
    };
    let referral = attribute(tx, tenant_id, member_id, code, Lateness::NewMember).await?;
    Ok(Some(SignupAttribution {
        referral_id: referral.id,
        status: referral.status.as_str().to_owned(),
        reason: referral.reason,
        inviter_id: referral.inviter_id,
    }))
}

/// Called by member erasure inside its transaction: the device id and IP address given at
/// signup are personal data and go (referral rows keep only member ids, so they stay).
pub async fn on_member_erased(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<()> {
    store::forget_signals(tx.conn(), tenant_id, member_id).await
}

/// Inside the transaction that marks an order paid (checkout payment or an external order ingested as paid).
pub async fn on_order_paid(
    tx: &mut crate::common::db::Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    order_id: &str,
    amount: i64,
) -> ApiResult<()> {
    if order_id.trim().is_empty() {
        return Err(ApiError::validation("order_id", "must not be empty"));
    }
    if amount < 0 {
        return Err(ApiError::validation("amount", "must be 0 or more"));
    }
    let Some(referral) = store::referral_of_invitee(tx.conn(), tenant_id, member_id).await? else {
        return Ok(());
    };
    // Only a referral still waiting for its qualifying order is concerned; a retry of the same
    // order, or a later order, finds it past that point.
    let waiting = referral.status == ReferralStatus::Attributed
        || (referral.status == ReferralStatus::Review && referral.qualified_at.is_none());
    if !waiting || referral.order_id.is_some() {
        return Ok(());
    }
    let campaign = store::lock_campaign(tx.conn(), tenant_id, &referral.campaign_id).await?;
    // Read the referral again under the campaign's lock: a concurrent payment may have
    // qualified it since the first read, and saving the copy read before the lock would write
    // its old state back over that.
    let Some(mut referral) = store::referral_of_invitee(tx.conn(), tenant_id, member_id).await?
    else {
        return Ok(());
    };
    let waiting = referral.status == ReferralStatus::Attributed
        || (referral.status == ReferralStatus::Review && referral.qualified_at.is_none());
    if !waiting || referral.order_id.is_some() {
        return Ok(());
    }
    if !rules::order_qualifies(campaign.qualify_on, campaign.min_order_amount, amount) {
        return Ok(());
    }
    if referral.status == ReferralStatus::Review {
        // Qualified while its attribution waits for a person: remember the order; approval pays.
        let now = to_micros(tx.now());
        referral.order_id = Some(order_id.to_owned());
        referral.order_amount = Some(amount);
        referral.qualified_at = Some(now);
        referral.updated_at = now;
        store::save_referral(tx.conn(), tenant_id, &referral).await?;
        tx.emit(event(tenant_id, "referral.qualified", &referral));
        return Ok(());
    }
    qualify(
        tx,
        tenant_id,
        &campaign,
        &mut referral,
        Some((order_id, amount)),
        Payout::Automatic,
    )
    .await
}

/// Inside the transaction that refunds an order; `fully` is true when nothing of it remains.
///
/// A full refund inside the return window voids the referral's pending rewards (the ladder
/// rungs it carries too) and gives their cost back to the budget; the inviter's qualified
/// invites then drop by one, so [`settle_ladder`] voids the pending rungs above the new count
/// and pays again a rung the voided referral carried that the count still reaches.
pub async fn on_order_refunded(
    tx: &mut crate::common::db::Tx,
    tenant_id: &TenantId,
    order_id: &str,
    fully: bool,
) -> ApiResult<()> {
    if !fully {
        // A partial refund leaves the reward in place (documented in the module).
        return Ok(());
    }
    let Some(referral) = store::referral_of_order(tx.conn(), tenant_id, order_id).await? else {
        return Ok(());
    };
    if !matches!(
        referral.status,
        ReferralStatus::Pending | ReferralStatus::Review
    ) {
        return Ok(());
    }
    let campaign = store::lock_campaign(tx.conn(), tenant_id, &referral.campaign_id).await?;
    // Read it again under the campaign's lock: a concurrent refund of another invitee may
    // have moved a ladder rung (and its cost) onto this referral since the first read.
    let Some(mut referral) = store::referral(tx.conn(), tenant_id, &referral.id).await? else {
        return Ok(());
    };
    let now = to_micros(tx.now());
    let mut carried_rungs = Vec::new();
    match referral.status {
        ReferralStatus::Pending => {
            carried_rungs = void_pending_rewards(tx, tenant_id, &campaign, &mut referral).await?;
        }
        ReferralStatus::Review => {
            store::close_reviews(tx.conn(), tenant_id, &referral.id, now).await?;
        }
        // Not waiting for a return window (or voided already): a refund changes nothing.
        ReferralStatus::Attributed
        | ReferralStatus::Refused
        | ReferralStatus::Rejected
        | ReferralStatus::Rewarded
        | ReferralStatus::Voided => return Ok(()),
    }
    let was_qualified = referral.status == ReferralStatus::Pending;
    referral.status = ReferralStatus::Voided;
    referral.reason = Some("order_refunded".into());
    referral.updated_at = now;
    store::save_referral(tx.conn(), tenant_id, &referral).await?;
    tx.emit(event(tenant_id, "referral.voided", &referral));
    if !was_qualified {
        return Ok(());
    }
    if !carried_rungs.is_empty() {
        carried_rungs_voided(tx, tenant_id, &campaign, &referral, carried_rungs).await?;
    }
    settle_ladder(tx, tenant_id, &campaign, &referral.inviter_id).await
}

/// Void a pending referral's pending rewards and give its whole cost back to the budget. The
/// ladder rungs it carried are released (the rung can be paid again) and returned with their
/// rewards, to be announced.
async fn void_pending_rewards(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    referral: &mut StoredReferral,
) -> ApiResult<Vec<(i64, RewardView)>> {
    let mut carried_rungs = Vec::new();
    for reward in store::rewards_of(tx.conn(), tenant_id, &referral.id).await? {
        if reward.status != ReferralRewardStatus::Pending {
            continue;
        }
        void_reward(tx, tenant_id, &reward.id, &reward.kind).await?;
        if let Some(Role::Ladder(invites)) = Role::parse(&reward.role) {
            store::release_rung(
                tx.conn(),
                tenant_id,
                &campaign.id,
                &referral.inviter_id,
                invites,
            )
            .await?;
            carried_rungs.push((invites, reward));
        }
    }
    store::give_back(
        tx.conn(),
        tenant_id,
        &referral.campaign_id,
        referral.reward_cost,
    )
    .await?;
    referral.reward_cost = 0;
    Ok(carried_rungs)
}

/// Emit `referral.ladder_reward_voided` for each rung reward the voided `referral` carried,
/// with the inviter's qualified count after the void.
async fn carried_rungs_voided(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    referral: &StoredReferral,
    carried_rungs: Vec<(i64, RewardView)>,
) -> ApiResult<()> {
    let qualified =
        store::qualified_count(tx.conn(), tenant_id, &campaign.id, &referral.inviter_id).await?;
    for (invites, reward) in carried_rungs {
        tx.emit(NewEvent::new(
            tenant_id,
            "referral.ladder_reward_voided",
            Some(referral.inviter_id.as_str()),
            json!({
                "reward_id": reward.id,
                "referral_id": referral.id,
                "campaign_id": campaign.id,
                "inviter_id": referral.inviter_id,
                "invites": invites,
                "kind": reward.kind,
                "amount": reward.amount,
                "reason": LADDER_VOID_REFERRAL_VOIDED,
                "qualified": qualified,
            }),
        ));
    }
    Ok(())
}

/// Why a ladder reward was voided (the `reason` of `referral.ladder_reward_voided`): the
/// referral that carried it was voided (its rung is paid again on another referral when the
/// inviter's count still reaches it).
const LADDER_VOID_REFERRAL_VOIDED: &str = "referral_voided";
/// … or the inviter's qualified invites fell below its rung before it was released.
const LADDER_VOID_BELOW_RUNG: &str = "below_rung";
/// … or its rung held another reward (a repair; the rule never pays a rung twice).
const LADDER_VOID_DUPLICATE: &str = "duplicate";

/// Void one pending reward: its ledger transfer (points, wallet bonus) and its row.
async fn void_reward(tx: &mut Tx, tenant_id: &TenantId, id: &str, kind: &str) -> ApiResult<()> {
    if kind != "coupon" {
        let result = ledger::apply_in(
            tx,
            tenant_id,
            vec![Op::Void {
                pending_id: id.to_owned(),
            }],
        )
        .await?
        .pop()
        .ok_or_else(|| internal("no ledger result".into()))?;
        if result.status != "voided" {
            return Err(internal(format!(
                "voiding referral reward {id} gave {}",
                result.status
            )));
        }
    }
    let now = to_micros(tx.now());
    store::set_reward_status(
        tx.conn(),
        tenant_id,
        id,
        ReferralRewardStatus::Voided,
        None,
        now,
    )
    .await
}

/// The ladder rewards an inviter holds (voided ones left out), as [`rules::ladder_plan`]
/// reads them.
fn held_rungs(rewards: &[store::LadderReward]) -> Vec<rules::HeldRung> {
    rewards
        .iter()
        .filter(|r| r.status != ReferralRewardStatus::Voided)
        .map(|r| rules::HeldRung {
            id: r.id.clone(),
            invites: r.invites,
            state: if r.status == ReferralRewardStatus::Pending {
                rules::HeldState::Pending
            } else {
                rules::HeldState::Released
            },
        })
        .collect()
}

/// The attempt number of the next reward for a rung: one more than the rewards ever paid for
/// it (voided ones count, so the new id differs from theirs).
fn next_attempt(rewards: &[store::LadderReward], invites: i64) -> i64 {
    let earlier = rewards.iter().filter(|r| r.invites == invites).count();
    i64::try_from(earlier).unwrap_or(i64::MAX - 1) + 1
}

/// Carry out the voids of a ladder plan: each pending reward voided, its rung released, its
/// cost given back to the budget and taken off the referral that carried it.
async fn void_ladder_rewards(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    inviter: &MemberId,
    rewards: &[store::LadderReward],
    void: &[String],
    qualified: i64,
) -> ApiResult<()> {
    for reward in rewards.iter().filter(|r| void.contains(&r.id)) {
        void_reward(tx, tenant_id, &reward.id, &reward.kind).await?;
        store::release_rung(tx.conn(), tenant_id, &campaign.id, inviter, reward.invites).await?;
        store::give_back(tx.conn(), tenant_id, &campaign.id, reward.amount).await?;
        store::add_reward_cost(tx.conn(), tenant_id, &reward.referral_id, -reward.amount).await?;
        let reason = if reward.invites > qualified {
            LADDER_VOID_BELOW_RUNG
        } else {
            LADDER_VOID_DUPLICATE
        };
        tx.emit(NewEvent::new(
            tenant_id,
            "referral.ladder_reward_voided",
            Some(inviter.as_str()),
            json!({
                "reward_id": reward.id,
                "referral_id": reward.referral_id,
                "campaign_id": campaign.id,
                "inviter_id": inviter,
                "invites": reward.invites,
                "kind": reward.kind,
                "amount": reward.amount,
                "reason": reason,
                "qualified": qualified,
            }),
        ));
    }
    Ok(())
}

/// Bring an inviter's ladder in line with their qualified invites ([`rules::ladder_plan`]) after
/// the count changed other than by a referral qualifying (which pays its rungs itself, in
/// [`qualify`]): pending rungs above the count are voided; rungs the count reaches without a
/// reward are paid again, carried by [`store::ladder_carrier`], budget permitting (a rung the
/// budget cannot cover stays unpaid until the count changes again). The caller holds the
/// campaign's lock and runs in the transaction that changed the count.
async fn settle_ladder(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    inviter: &MemberId,
) -> ApiResult<()> {
    if campaign.ladder.is_empty() {
        // The ladder is fixed at creation: without rungs there is nothing to hold.
        return Ok(());
    }
    let qualified = store::qualified_count(tx.conn(), tenant_id, &campaign.id, inviter).await?;
    let rewards = store::ladder_rewards(tx.conn(), tenant_id, &campaign.id, inviter).await?;
    let plan = rules::ladder_plan(qualified, &campaign.ladder, &held_rungs(&rewards));
    void_ladder_rewards(
        tx, tenant_id, campaign, inviter, &rewards, &plan.void, qualified,
    )
    .await?;
    if plan.pay.is_empty() {
        return Ok(());
    }
    let Some(carrier) = store::ladder_carrier(tx.conn(), tenant_id, &campaign.id, inviter).await?
    else {
        return Ok(());
    };
    let pending = carrier.status == ReferralStatus::Pending;
    let now = to_micros(tx.now());
    for rung in &plan.pay {
        let cost = rung.reward.cost();
        if !store::try_spend(tx.conn(), tenant_id, &campaign.id, cost).await? {
            continue;
        }
        if !store::claim_rung(
            tx.conn(),
            tenant_id,
            &campaign.id,
            inviter,
            rung.invites,
            &carrier.id,
            now,
        )
        .await?
        {
            store::give_back(tx.conn(), tenant_id, &campaign.id, cost).await?;
            continue;
        }
        let attempt = next_attempt(&rewards, rung.invites);
        let role = Role::Ladder(rung.invites);
        pay(
            tx,
            tenant_id,
            &carrier,
            role,
            attempt,
            &rung.reward,
            inviter,
            pending,
        )
        .await?;
        store::add_reward_cost(tx.conn(), tenant_id, &carrier.id, cost).await?;
        ladder_paid(tx, tenant_id, &carrier, role, attempt, qualified).await?;
    }
    Ok(())
}

/// Emit `referral.ladder_reward_paid` for the rung reward just written on `carrier`.
async fn ladder_paid(
    tx: &mut Tx,
    tenant_id: &TenantId,
    carrier: &StoredReferral,
    role: Role,
    attempt: i64,
    qualified: i64,
) -> ApiResult<()> {
    let Role::Ladder(invites) = role else {
        return Ok(());
    };
    let id = transfer_id(&carrier.id, role, attempt);
    let Some(reward) = store::rewards_of(tx.conn(), tenant_id, &carrier.id)
        .await?
        .into_iter()
        .find(|r| r.id == id)
    else {
        return Err(internal(format!("ladder reward {id} was not written")));
    };
    tx.emit(NewEvent::new(
        tenant_id,
        "referral.ladder_reward_paid",
        Some(carrier.inviter_id.as_str()),
        json!({
            "reward_id": reward.id,
            "referral_id": carrier.id,
            "campaign_id": carrier.campaign_id,
            "inviter_id": carrier.inviter_id,
            "invites": invites,
            "kind": reward.kind,
            "amount": reward.amount,
            "status": reward.status,
            "attempt": attempt,
            "qualified": qualified,
        }),
    ));
    Ok(())
}

/// Scheduler handler: the return window of a referral's qualifying order closed; post its
/// pending rewards (nothing when they were voided meanwhile).
pub async fn release_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let referral_id = job
        .payload
        .get("referral_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("job without referral_id"))?
        .to_owned();
    let mut tx = state.begin().await?;
    let tenant_id = job.tenant_id.clone();
    if let Some(referral) = store::referral(tx.conn(), &tenant_id, &referral_id).await? {
        if referral.status == ReferralStatus::Pending {
            settle_then_release(&mut tx, &tenant_id, referral)
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        }
    }
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

/// Release a pending referral, after a last look at its inviter's ladder under the campaign's
/// lock: a pending rung whose count fell below it is voided, not posted, even if the change
/// that lowered the count did not settle it (rewards written before the ladder rule).
async fn settle_then_release(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: StoredReferral,
) -> ApiResult<()> {
    let campaign = store::lock_campaign(tx.conn(), tenant_id, &referral.campaign_id).await?;
    settle_ladder(tx, tenant_id, &campaign, &referral.inviter_id).await?;
    // Read it again: settling may have changed its rewards and their cost.
    let Some(mut referral) = store::referral(tx.conn(), tenant_id, &referral.id).await? else {
        return Ok(());
    };
    if referral.status != ReferralStatus::Pending {
        return Ok(());
    }
    release(tx, tenant_id, &mut referral).await
}

async fn release(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: &mut StoredReferral,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    for reward in store::rewards_of(tx.conn(), tenant_id, &referral.id).await? {
        if reward.status != ReferralRewardStatus::Pending {
            continue;
        }
        if reward.kind == "coupon" {
            let member = MemberId::from_db(reward.member_id.clone());
            let template = reward.coupon_template_id.clone().unwrap_or_default();
            let (status, detail) =
                grant_coupon(tx, tenant_id, &template, &member, &reward.id).await?;
            store::set_reward_status(tx.conn(), tenant_id, &reward.id, status, Some(&detail), now)
                .await?;
            continue;
        }
        let result = ledger::apply_in(
            tx,
            tenant_id,
            vec![Op::Post {
                pending_id: reward.id.clone(),
                amount: None,
            }],
        )
        .await?
        .pop()
        .ok_or_else(|| internal("no ledger result".into()))?;
        if result.status != "posted" {
            return Err(internal(format!(
                "posting referral reward {} gave {}",
                reward.id, result.status
            )));
        }
        store::set_reward_status(
            tx.conn(),
            tenant_id,
            &reward.id,
            ReferralRewardStatus::Posted,
            None,
            now,
        )
        .await?;
    }
    referral.status = ReferralStatus::Rewarded;
    referral.updated_at = now;
    store::save_referral(tx.conn(), tenant_id, referral).await?;
    tx.emit(event(tenant_id, "referral.rewarded", referral));
    Ok(())
}

// --- the flows -----------------------------------------------------------------------------

/// Is the invitee a brand-new member, or an existing one attributed afterwards?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lateness {
    NewMember,
    Existing,
}

/// Did the rules or a person decide the payout?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payout {
    /// The daily cap and the budget may send it to review.
    Automatic,
    /// Approved by a reviewer: only the budget can stop it (409).
    Approved,
}

fn event(tenant_id: &TenantId, kind: &'static str, referral: &StoredReferral) -> NewEvent {
    NewEvent::new(
        tenant_id,
        kind,
        Some(referral.invitee_id.as_str()),
        json!({
            "referral_id": referral.id,
            "campaign_id": referral.campaign_id,
            "inviter_id": referral.inviter_id,
            "invitee_id": referral.invitee_id,
            "status": referral.status,
            "reason": referral.reason,
            "order_id": referral.order_id,
        }),
    )
}

/// Attribute `invitee` to the owner of `code` and record the decision: first touch wins, the
/// fraud rules decide over the facts loaded under the campaign's lock, and the decision is
/// acted on in the same transaction.
async fn attribute(
    tx: &mut Tx,
    tenant_id: &TenantId,
    invitee: &MemberId,
    code: &str,
    lateness: Lateness,
) -> ApiResult<StoredReferral> {
    let (campaign_id, inviter) = store::lookup_code(tx.conn(), tenant_id, code)
        .await?
        .ok_or_else(|| ApiError::validation("invite_code", "unknown invite code"))?;
    if store::referral_of_invitee(tx.conn(), tenant_id, invitee)
        .await?
        .is_some()
    {
        return Err(already_attributed());
    }
    let campaign = store::lock_campaign(tx.conn(), tenant_id, &campaign_id).await?;
    let settings = store::settings(tx.conn(), tenant_id).await?;
    let now = to_micros(tx.now());
    let (joined_at, invited_by, _) = store::member_facts(tx.conn(), tenant_id, invitee)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    if invited_by.is_some() {
        return Err(already_attributed());
    }
    let late_limit = now - LATE_ATTRIBUTION_WINDOW_HOURS * 3_600_000_000;
    let joined_before_window = lateness == Lateness::Existing && joined_at < late_limit;
    let facts = fraud_facts(
        tx,
        tenant_id,
        &campaign,
        settings.velocity_per_hour,
        &inviter,
        invitee,
        joined_before_window,
    )
    .await?;
    let decision = rules::assess(&facts);
    let mut referral = new_referral(&campaign.id, &inviter, invitee, code, decision, now);
    record_attribution(tx, tenant_id, &referral).await?;
    act_on_attribution(tx, tenant_id, &campaign, &mut referral, decision, now).await?;
    Ok(referral)
}

/// 409 `already_attributed`: attribution is first touch and final.
fn already_attributed() -> ApiError {
    ApiError::conflict(
        codes::ALREADY_ATTRIBUTED,
        "this member was already attributed to an inviter; attribution is first touch and final",
    )
}

/// What the fraud rules ([`rules::assess`]) decide an attribution over: both members'
/// signals, whether the invitee is already a customer (an order on record, or an existing
/// member who joined before the late-attribution window), the inviter's chain and recent
/// attributions, and whether the invitee's device or IP was seen on another invitee.
async fn fraud_facts(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    velocity_per_hour: i64,
    inviter: &MemberId,
    invitee: &MemberId,
    joined_before_window: bool,
) -> ApiResult<rules::Facts> {
    let now = to_micros(tx.now());
    let invitee_signals = store::signals_of(tx.conn(), tenant_id, invitee).await?;
    let already_customer =
        store::has_orders(tx.conn(), tenant_id, invitee).await? || joined_before_window;
    Ok(rules::Facts {
        campaign_active: campaign.running(now),
        inviter_id: inviter.to_string(),
        invitee_id: invitee.to_string(),
        inviter: store::signals_of(tx.conn(), tenant_id, inviter).await?,
        invitee_already_customer: already_customer,
        inviter_ancestors: store::ancestors(tx.conn(), tenant_id, inviter).await?,
        inviter_attributions_last_hour: store::attributions_since(
            tx.conn(),
            tenant_id,
            inviter,
            now - 3_600_000_000,
        )
        .await?,
        velocity_per_hour,
        device_seen_on_other_invitee: store::signal_seen_on_other_invitee(
            tx.conn(),
            tenant_id,
            inviter,
            invitee,
            store::SignalColumn::Device,
            invitee_signals.device_id.as_deref(),
        )
        .await?,
        ip_seen_on_other_invitee: store::signal_seen_on_other_invitee(
            tx.conn(),
            tenant_id,
            inviter,
            invitee,
            store::SignalColumn::Ip,
            invitee_signals.ip.as_deref(),
        )
        .await?,
        invitee: invitee_signals,
    })
}

/// The referral row an attribution writes: its status and reason say what the rules decided.
fn new_referral(
    campaign_id: &str,
    inviter: &MemberId,
    invitee: &MemberId,
    code: &str,
    decision: Decision,
    now: i64,
) -> StoredReferral {
    let (status, reason) = match decision {
        Decision::Accept => (ReferralStatus::Attributed, None),
        Decision::Refuse(reason) => (ReferralStatus::Refused, Some(reason.code().to_owned())),
        Decision::Review(reason) => (ReferralStatus::Review, Some(reason.code().to_owned())),
    };
    StoredReferral {
        id: ReferralId::generate().to_string(),
        campaign_id: campaign_id.to_owned(),
        inviter_id: inviter.clone(),
        invitee_id: invitee.clone(),
        code: code.to_owned(),
        status,
        reason,
        order_id: None,
        order_amount: None,
        qualified_at: None,
        release_at: None,
        reward_cost: 0,
        created_at: now,
        updated_at: now,
    }
}

/// Insert the referral row; the invitee's one referral, ever: a concurrent attribution of the
/// same invitee that committed first makes this one 409 `already_attributed`.
async fn record_attribution(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: &StoredReferral,
) -> ApiResult<()> {
    if let Err(error) = store::insert_referral(tx.conn(), tenant_id, referral).await {
        return Err(
            match error
                .source
                .as_ref()
                .and_then(|s| s.downcast_ref::<sqlx::Error>())
            {
                Some(db) if is_unique_violation(db) => already_attributed(),
                _ => error,
            },
        );
    }
    Ok(())
}

/// Act on the decision: a refusal is only announced; a review or an acceptance sets the
/// invitee's `invited_by`; a review is queued; an accepted referral of a `signup` campaign
/// qualifies at once.
async fn act_on_attribution(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    referral: &mut StoredReferral,
    decision: Decision,
    now: i64,
) -> ApiResult<()> {
    match decision {
        Decision::Refuse(_) => {
            tx.emit(event(tenant_id, "referral.refused", referral));
        }
        Decision::Review(reason) => {
            store::set_invited_by(
                tx.conn(),
                tenant_id,
                &referral.invitee_id,
                &referral.inviter_id,
            )
            .await?;
            let review_id = ReviewId::generate().to_string();
            store::insert_review(
                tx.conn(),
                tenant_id,
                &review_id,
                referral,
                reason.code(),
                now,
            )
            .await?;
            tx.emit(event(tenant_id, "referral.review_queued", referral));
        }
        Decision::Accept => {
            store::set_invited_by(
                tx.conn(),
                tenant_id,
                &referral.invitee_id,
                &referral.inviter_id,
            )
            .await?;
            tx.emit(event(tenant_id, "referral.attributed", referral));
            if campaign.qualify_on == QualifyOn::Signup {
                qualify(tx, tenant_id, campaign, referral, None, Payout::Automatic).await?;
            }
        }
    }
    Ok(())
}

/// Send a qualified referral to the review queue.
async fn to_review(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: &mut StoredReferral,
    reason: Reason,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    referral.status = ReferralStatus::Review;
    referral.reason = Some(reason.code().into());
    referral.updated_at = now;
    store::save_referral(tx.conn(), tenant_id, referral).await?;
    let review_id = ReviewId::generate().to_string();
    store::insert_review(
        tx.conn(),
        tenant_id,
        &review_id,
        referral,
        reason.code(),
        now,
    )
    .await?;
    tx.emit(event(tenant_id, "referral.review_queued", referral));
    Ok(())
}

/// The referral qualified: check the cap and the budget, then pay (pending or posted). The
/// caller holds the campaign's lock.
///
/// The steps: note the qualifying order; plan the rewards due (both sides and the ladder
/// rungs the inviter's count now reaches); under automatic payout, send it to review when the
/// daily cap or the budget says so; charge the budget; void duplicate rungs; claim each rung
/// (a rung held already gives its cost back); pay what is kept; save the referral with its
/// release date and schedule the release.
async fn qualify(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    referral: &mut StoredReferral,
    order: Option<(&str, i64)>,
    payout: Payout,
) -> ApiResult<()> {
    let now = to_micros(tx.now());
    note_qualification(referral, order, now);
    let before =
        store::qualified_count(tx.conn(), tenant_id, &campaign.id, &referral.inviter_id).await?;
    let qualified = before.saturating_add(1);
    let ladder_rewards = if campaign.ladder.is_empty() {
        Vec::new()
    } else {
        store::ladder_rewards(tx.conn(), tenant_id, &campaign.id, &referral.inviter_id).await?
    };
    let plan = rules::ladder_plan(qualified, &campaign.ladder, &held_rungs(&ladder_rewards));
    let due = rules::rewards_due(
        campaign.inviter_reward.as_ref(),
        campaign.invitee_reward.as_ref(),
        &plan.pay,
    );
    let mut cost = rules::total_cost(&due);
    if payout == Payout::Automatic {
        if let Some(reason) = held_for_review(tx, tenant_id, campaign, referral, cost).await? {
            return to_review(tx, tenant_id, referral, reason).await;
        }
    }
    if !store::try_spend(tx.conn(), tenant_id, &campaign.id, cost).await? {
        return match payout {
            Payout::Automatic => to_review(tx, tenant_id, referral, Reason::BudgetExhausted).await,
            Payout::Approved => Err(ApiError::conflict(
                codes::BUDGET_EXHAUSTED,
                "the campaign budget cannot cover this referral's rewards",
            )),
        };
    }
    // The count only rises here, so the plan voids nothing unless the ladder held a duplicate.
    void_ladder_rewards(
        tx,
        tenant_id,
        campaign,
        &referral.inviter_id,
        &ladder_rewards,
        &plan.void,
        qualified,
    )
    .await?;
    let kept = claim_rungs(tx, tenant_id, campaign, referral, due, &mut cost, now).await?;
    let release_at = rewards_release_at(tx, tenant_id, campaign.qualify_on, referral, now).await?;
    let pending = release_at.is_some();
    pay_due(
        tx,
        tenant_id,
        referral,
        &kept,
        &ladder_rewards,
        pending,
        qualified,
    )
    .await?;
    save_qualified(tx, tenant_id, referral, release_at, cost, now).await
}

/// Note when the referral qualified (the first time only) and its qualifying order.
fn note_qualification(referral: &mut StoredReferral, order: Option<(&str, i64)>, now: i64) {
    if referral.qualified_at.is_none() {
        referral.qualified_at = Some(now);
    }
    if let Some((order_id, amount)) = order {
        referral.order_id = Some(order_id.to_owned());
        referral.order_amount = Some(amount);
    }
}

/// Why an automatic payout of `cost` goes to review instead ([`rules::assess_payout`]): the
/// inviter's qualified referrals since the start of the tenant's local day reached the daily
/// cap, or the budget as it stands now cannot cover it. `None`: pay.
async fn held_for_review(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    referral: &StoredReferral,
    cost: i64,
) -> ApiResult<Option<Reason>> {
    let zone = crate::tenants::time_zone(tx.conn(), tenant_id).await?;
    let day_start = calendar::start_of_local_day(calendar::local_date(tx.now(), &zone), &zone)
        .map_err(|e| internal(e.to_string()))?;
    let today = store::qualified_since(
        tx.conn(),
        tenant_id,
        &campaign.id,
        &referral.inviter_id,
        to_micros(day_start),
    )
    .await?;
    let fresh = store::require_campaign(tx.conn(), tenant_id, &campaign.id).await?;
    Ok(
        match rules::assess_payout(
            campaign.inviter_daily_cap,
            today,
            fresh.budget,
            fresh.spent,
            cost,
        ) {
            Decision::Review(reason) => Some(reason),
            Decision::Accept | Decision::Refuse(_) => None,
        },
    )
}

/// Claim the rung of each ladder reward due: a rung holds one live reward per inviter, so
/// should it be held already, that reward is dropped and its cost goes back to the budget
/// (and off `cost`). The rewards kept, in their order.
async fn claim_rungs(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &store::StoredCampaign,
    referral: &StoredReferral,
    mut due: Vec<(Role, Reward)>,
    cost: &mut i64,
    now: i64,
) -> ApiResult<Vec<(Role, Reward)>> {
    let mut kept = Vec::with_capacity(due.len());
    for (role, reward) in due.drain(..) {
        if let Role::Ladder(invites) = role {
            let claimed = store::claim_rung(
                tx.conn(),
                tenant_id,
                &campaign.id,
                &referral.inviter_id,
                invites,
                &referral.id,
                now,
            )
            .await?;
            if !claimed {
                store::give_back(tx.conn(), tenant_id, &campaign.id, reward.cost()).await?;
                *cost -= reward.cost();
                continue;
            }
        }
        kept.push((role, reward));
    }
    Ok(kept)
}

/// When the rewards of a referral qualifying now are released. Signup rewards are final at
/// once (`None`); order rewards wait for the return window after the qualifying payment
/// (`None` when it has closed already).
async fn rewards_release_at(
    tx: &mut Tx,
    tenant_id: &TenantId,
    qualify_on: QualifyOn,
    referral: &StoredReferral,
    now: i64,
) -> ApiResult<Option<i64>> {
    Ok(match qualify_on {
        QualifyOn::Signup => None,
        QualifyOn::FirstPaidOrder | QualifyOn::OrderOver => {
            let settings = store::settings(tx.conn(), tenant_id).await?;
            let paid_at = from_micros(referral.qualified_at.unwrap_or(now));
            let at =
                to_micros(paid_at + SignedDuration::from_hours(24 * settings.return_window_days));
            (at > now).then_some(at)
        }
    })
}

/// Pay each reward kept to its member (pending until the return window closes, or posted):
/// the invitee's and the inviter's as the first attempt, a rung under its next attempt number
/// after the inviter's `ladder_rewards` so far; each rung paid is announced with the inviter's
/// `qualified` count.
async fn pay_due(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: &StoredReferral,
    kept: &[(Role, Reward)],
    ladder_rewards: &[store::LadderReward],
    pending: bool,
    qualified: i64,
) -> ApiResult<()> {
    for (role, reward) in kept {
        let (member, attempt) = match role {
            Role::Invitee => (referral.invitee_id.clone(), 1),
            Role::Inviter => (referral.inviter_id.clone(), 1),
            Role::Ladder(invites) => (
                referral.inviter_id.clone(),
                next_attempt(ladder_rewards, *invites),
            ),
        };
        pay(
            tx, tenant_id, referral, *role, attempt, reward, &member, pending,
        )
        .await?;
        ladder_paid(tx, tenant_id, referral, *role, attempt, qualified).await?;
    }
    Ok(())
}

/// Save the qualified referral (pending until `release_at`, or rewarded at once) with the
/// cost it charged the budget, schedule its release, and announce it.
async fn save_qualified(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: &mut StoredReferral,
    release_at: Option<i64>,
    cost: i64,
    now: i64,
) -> ApiResult<()> {
    let pending = release_at.is_some();
    referral.status = if pending {
        ReferralStatus::Pending
    } else {
        ReferralStatus::Rewarded
    };
    referral.reason = None;
    referral.release_at = release_at;
    referral.reward_cost = cost;
    referral.updated_at = now;
    store::save_referral(tx.conn(), tenant_id, referral).await?;
    if let Some(due_at) = release_at {
        scheduler::schedule(
            tx.conn(),
            tenant_id,
            &[NewJob {
                id: format!("{RELEASE_JOB}:{}", referral.id),
                kind: RELEASE_JOB,
                due_at,
                payload: json!({ "referral_id": referral.id }),
            }],
            now,
        )
        .await?;
    }
    tx.emit(event(tenant_id, "referral.qualified", referral));
    if !pending {
        tx.emit(event(tenant_id, "referral.rewarded", referral));
    }
    Ok(())
}

/// Write one reward: a ledger transfer (pending or posted) or a coupon (issued now, or when
/// the window closes).
#[allow(clippy::too_many_arguments)]
async fn pay(
    tx: &mut Tx,
    tenant_id: &TenantId,
    referral: &StoredReferral,
    role: Role,
    attempt: i64,
    reward: &Reward,
    member: &MemberId,
    pending: bool,
) -> ApiResult<()> {
    let id = transfer_id(&referral.id, role, attempt);
    let role_key = role.key();
    let now = to_micros(tx.now());
    let (kind, amount, template, status, detail) = match reward {
        Reward::Points(n) | Reward::WalletBonus(n) => {
            let (asset, kind) = match reward {
                Reward::Points(_) => (Asset::Points, "points"),
                _ => (Asset::WalletBonus, "wallet_bonus"),
            };
            let mut transfer = NewTransfer::internal(
                id.clone(),
                Address::system("issuance"),
                Address::member(member),
                asset,
                *n,
                "referral_reward",
                Some(&referral.id),
            );
            if pending {
                transfer = transfer.pending(None);
            }
            let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
                .await?
                .pop()
                .ok_or_else(|| internal("no ledger result".into()))?;
            if !matches!(result.status.as_str(), "created" | "exists") {
                return Err(internal(format!(
                    "referral reward {id} was refused by the ledger: {}",
                    result.status
                )));
            }
            let status = if pending {
                ReferralRewardStatus::Pending
            } else {
                ReferralRewardStatus::Posted
            };
            (kind, *n, None, status, None)
        }
        Reward::Coupon(template) => {
            if pending {
                (
                    "coupon",
                    1,
                    Some(template.as_str()),
                    ReferralRewardStatus::Pending,
                    None,
                )
            } else {
                let (status, detail) = grant_coupon(tx, tenant_id, template, member, &id).await?;
                ("coupon", 1, Some(template.as_str()), status, Some(detail))
            }
        }
    };
    store::insert_reward(
        tx.conn(),
        tenant_id,
        &store::NewRewardRow {
            id: &id,
            referral_id: &referral.id,
            member_id: member,
            role: &role_key,
            kind,
            amount,
            coupon_template_id: template,
            status,
            detail: detail.as_deref(),
        },
        now,
    )
    .await
}

/// Issue a coupon reward: (granted, coupon id) or (failed, why) when the template cannot issue
/// it (out of stock, expired, limit, erased member); a database failure is an error.
async fn grant_coupon(
    tx: &mut Tx,
    tenant_id: &TenantId,
    template: &str,
    member: &MemberId,
    reason: &str,
) -> ApiResult<(ReferralRewardStatus, String)> {
    use ReferralRewardStatus::{Failed, Granted};
    let Some(template_id) = CouponTemplateId::parse(template) else {
        return Ok((Failed, "coupon template not found".into()));
    };
    match coupons::grant(tx, tenant_id, &template_id, member, reason).await {
        Ok(coupon) => Ok((Granted, coupon.id.to_string())),
        Err(error) if error.status.is_client_error() => Ok((Failed, error.code.to_string())),
        Err(error) => Err(error),
    }
}

// --- HTTP ----------------------------------------------------------------------------------

async fn check_templates(
    tx: &mut Tx,
    tenant_id: &TenantId,
    campaign: &NewCampaign,
) -> ApiResult<()> {
    let mut rewards: Vec<(String, &Reward)> = Vec::new();
    if let Some(r) = &campaign.inviter_reward {
        rewards.push(("inviter_reward".into(), r));
    }
    if let Some(r) = &campaign.invitee_reward {
        rewards.push(("invitee_reward".into(), r));
    }
    for (i, rung) in campaign.ladder.iter().enumerate() {
        rewards.push((format!("ladder[{i}].reward"), &rung.reward));
    }
    for (field, reward) in rewards {
        if let Reward::Coupon(template) = reward {
            let known = match CouponTemplateId::parse(template) {
                Some(id) => coupons::store::fetch_template(tx.conn(), tenant_id, &id)
                    .await?
                    .is_some(),
                None => false,
            };
            if !known {
                return Err(ApiError::validation(
                    &format!("{field}.coupon_template_id"),
                    "no such coupon template",
                ));
            }
        }
    }
    Ok(())
}

/// Create a referral campaign.
#[utoipa::path(post, path = "/v1/referral-campaigns", tag = "growth", request_body = CreateCampaign,
    responses((status = 201, body = Campaign), (status = 422, description = "invalid field")),
    security(("api_key" = [])))]
async fn create_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateCampaign>,
) -> ApiResult<(StatusCode, Json<Campaign>)> {
    let zone = crate::tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let campaign = NewCampaign::from_request(request, &zone)?;
    let mut tx = state.begin().await?;
    check_templates(&mut tx, &auth.tenant_id, &campaign).await?;
    let id = CampaignId::generate();
    let now = to_micros(tx.now());
    store::insert_campaign(tx.conn(), &auth.tenant_id, id.as_str(), &campaign, now).await?;
    let stored = store::require_campaign(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "referral.campaign_created",
        Some(id.as_str()),
        json!({ "campaign_id": id, "qualify_on": campaign.qualify_on.as_str() }),
    ));
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(stored.view(now))))
}

/// List referral campaigns, oldest first.
#[utoipa::path(get, path = "/v1/referral-campaigns", tag = "growth", params(PageQuery),
    responses((status = 200, body = CampaignPage)), security(("api_key" = [])))]
async fn list_campaigns(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<CampaignPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), CampaignId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut rows = store::list_campaigns(
        &mut conn,
        &auth.tenant_id,
        cursor.as_ref().map(CampaignId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut rows, limit, |c| c.id.clone());
    let now = to_micros(state.clock.now());
    Ok(Json(CampaignPage {
        data: rows.iter().map(|c| c.view(now)).collect(),
        next_cursor,
    }))
}

/// One referral campaign.
#[utoipa::path(get, path = "/v1/referral-campaigns/{id}", tag = "growth",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, body = Campaign), (status = 404)), security(("api_key" = [])))]
async fn get_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Campaign>> {
    let id = campaign_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let campaign = store::require_campaign(&mut conn, &auth.tenant_id, id.as_str()).await?;
    Ok(Json(campaign.view(to_micros(state.clock.now()))))
}

/// Rename a campaign or end it (`{"status": "ended"}`: no more codes or attributions;
/// referrals already made still qualify and pay).
#[utoipa::path(patch, path = "/v1/referral-campaigns/{id}", tag = "growth",
    request_body = UpdateCampaign, params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, body = Campaign), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn update_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateCampaign>,
) -> ApiResult<Json<Campaign>> {
    let id = campaign_id(&id)?;
    let status = request
        .status
        .as_deref()
        .map(|text| match ReferralCampaignStatus::parse(text) {
            Some(ReferralCampaignStatus::Ended) => Ok(ReferralCampaignStatus::Ended),
            Some(ReferralCampaignStatus::Active) | None => {
                Err(ApiError::validation("status", "can only be set to ended"))
            }
        })
        .transpose()?;
    // The rule of creation: a name with a control character is refused here too.
    let name = text::optional("name", request.name.as_deref(), model::MAX_NAME_LEN)?;
    let mut tx = state.begin().await?;
    store::require_campaign(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    let now = to_micros(tx.now());
    store::update_campaign(
        tx.conn(),
        &auth.tenant_id,
        id.as_str(),
        name.as_deref(),
        status,
        now,
    )
    .await?;
    let campaign = store::require_campaign(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "referral.campaign_updated",
        Some(id.as_str()),
        json!({ "campaign_id": id, "status": campaign.status }),
    ));
    tx.commit().await?;
    Ok(Json(campaign.view(now)))
}

/// A member's invite code and link for a campaign, issued on first request and stable after.
#[utoipa::path(get, path = "/v1/members/{id}/invite-code", tag = "growth",
    params(("id" = String, Path, description = "member id"), InviteCodeQuery),
    responses((status = 200, body = InviteCode), (status = 404),
              (status = 409, description = "campaign_not_active or member_erased")),
    security(("api_key" = [])))]
async fn invite_code(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<InviteCodeQuery>,
) -> ApiResult<Json<InviteCode>> {
    let member = members::member_id(&id)?;
    let campaign = query
        .campaign_id
        .as_deref()
        .ok_or_else(|| ApiError::validation("campaign_id", "is required"))
        .and_then(campaign_id)?;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), &auth.tenant_id, &member).await?;
    let stored = store::require_campaign(tx.conn(), &auth.tenant_id, campaign.as_str()).await?;
    let settings = store::settings(tx.conn(), &auth.tenant_id).await?;
    if let Some(code) =
        store::code_of(tx.conn(), &auth.tenant_id, campaign.as_str(), &member).await?
    {
        tx.rollback().await?;
        return Ok(Json(store::invite_code_view(
            &settings,
            code,
            campaign.as_str(),
            &member,
        )));
    }
    let now = to_micros(tx.now());
    if !stored.running(now) {
        return Err(ApiError::conflict(
            codes::CAMPAIGN_NOT_ACTIVE,
            "this campaign is not running; it issues no codes",
        ));
    }
    for _ in 0..CODE_ATTEMPTS {
        let code = new_code();
        if store::insert_code(
            tx.conn(),
            &auth.tenant_id,
            &code,
            campaign.as_str(),
            &member,
            now,
        )
        .await?
        {
            tx.emit(NewEvent::new(
                &auth.tenant_id,
                "referral.code_issued",
                Some(member.as_str()),
                json!({ "member_id": member, "campaign_id": campaign }),
            ));
            tx.commit().await?;
            return Ok(Json(store::invite_code_view(
                &settings,
                code,
                campaign.as_str(),
                &member,
            )));
        }
        // Either the code collided or a concurrent request issued this member's code.
        if let Some(code) =
            store::code_of(tx.conn(), &auth.tenant_id, campaign.as_str(), &member).await?
        {
            tx.commit().await?;
            return Ok(Json(store::invite_code_view(
                &settings,
                code,
                campaign.as_str(),
                &member,
            )));
        }
    }
    Err(internal("could not find a free invite code".into()))
}

async fn referral_view(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    referral: &StoredReferral,
) -> ApiResult<Referral> {
    let rewards = store::rewards_of(conn, tenant_id, &referral.id).await?;
    Ok(referral.view(rewards))
}

/// Attribute an existing member to an invite code (e.g. a code entered after signup). The
/// member must have joined within the last 24 hours and have no orders, else the attribution
/// is recorded as refused (`already_customer`). Returns the decision, 201.
#[utoipa::path(post, path = "/v1/referrals", tag = "growth", request_body = CreateReferral,
    responses((status = 201, body = Referral), (status = 404),
              (status = 409, description = "already_attributed"), (status = 422)),
    security(("api_key" = [])))]
async fn create_referral(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateReferral>,
) -> ApiResult<(StatusCode, Json<Referral>)> {
    let code = model::code("invite_code", &request.invite_code)?;
    let member = members::member_id(&request.member_id)?;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), &auth.tenant_id, &member).await?;
    let referral = attribute(&mut tx, &auth.tenant_id, &member, &code, Lateness::Existing).await?;
    let view = referral_view(tx.conn(), &auth.tenant_id, &referral).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every referral of a campaign with its decision, reason and rewards.
#[utoipa::path(get, path = "/v1/referral-campaigns/{id}/referrals", tag = "growth",
    params(("id" = String, Path, description = "campaign id"), ReferralQuery),
    responses((status = 200, body = ReferralPage), (status = 404)), security(("api_key" = [])))]
async fn campaign_referrals(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<ReferralQuery>,
) -> ApiResult<Json<ReferralPage>> {
    let id = campaign_id(&id)?;
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let status = query
        .status
        .as_deref()
        .map(|text| {
            ReferralStatus::parse(text).ok_or_else(|| {
                ApiError::validation(
                    "status",
                    format!("must be one of {}", ReferralStatus::NAMES.join(", ")),
                )
            })
        })
        .transpose()?;
    let cursor = pagination::cursor(query.cursor.as_deref(), ReferralId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    store::require_campaign(&mut conn, &auth.tenant_id, id.as_str()).await?;
    let mut rows = store::list_referrals(
        &mut conn,
        &auth.tenant_id,
        id.as_str(),
        status,
        cursor.as_ref().map(ReferralId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut rows, limit, |r| r.id.clone());
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        data.push(referral_view(&mut conn, &auth.tenant_id, row).await?);
    }
    Ok(Json(ReferralPage { data, next_cursor }))
}

/// The review queue, oldest first.
#[utoipa::path(get, path = "/v1/referral-reviews", tag = "growth", params(ReviewQuery),
    responses((status = 200, body = ReviewPage)), security(("api_key" = [])))]
async fn list_reviews(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ReviewQuery>,
) -> ApiResult<Json<ReviewPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let status = query
        .status
        .as_deref()
        .map(|text| {
            ReferralReviewStatus::parse(text).ok_or_else(|| {
                ApiError::validation(
                    "status",
                    format!("must be one of {}", ReferralReviewStatus::NAMES.join(", ")),
                )
            })
        })
        .transpose()?;
    let cursor = pagination::cursor(query.cursor.as_deref(), ReviewId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut data = store::list_reviews(
        &mut conn,
        &auth.tenant_id,
        status,
        cursor.as_ref().map(ReviewId::as_str),
        limit + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |r| r.id.clone());
    Ok(Json(ReviewPage { data, next_cursor }))
}

/// The optional `{"note"}` body of approve and reject (an empty body is fine).
fn note(body: &[u8]) -> ApiResult<Option<String>> {
    let decide: Decide = if body.iter().all(u8::is_ascii_whitespace) {
        Decide::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid_request(format!("malformed JSON: {e}")))?
    };
    let note = decide.note.map(|n| n.trim().to_owned());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_LEN)
    {
        return Err(ApiError::validation(
            "note",
            format!("must be at most {MAX_NOTE_LEN} characters"),
        ));
    }
    Ok(note.filter(|n| !n.is_empty()))
}

/// Load a pending review and mark it decided; 404 / 409 `review_already_decided`.
async fn decide(
    tx: &mut Tx,
    tenant_id: &TenantId,
    id: &str,
    status: ReferralReviewStatus,
    note: Option<&str>,
) -> ApiResult<(Review, StoredReferral)> {
    let id = ReviewId::parse(id).ok_or_else(|| ApiError::not_found("referral review"))?;
    let review = store::review(tx.conn(), tenant_id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("referral review"))?;
    let now = to_micros(tx.now());
    if !store::decide_review(tx.conn(), tenant_id, id.as_str(), status, note, now).await? {
        return Err(ApiError::conflict(
            codes::REVIEW_ALREADY_DECIDED,
            format!("this review is already {}", review.status),
        ));
    }
    let referral = store::referral(tx.conn(), tenant_id, &review.referral_id)
        .await?
        .ok_or_else(|| internal(format!("review {} without its referral", review.id)))?;
    let review = store::review(tx.conn(), tenant_id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("referral review"))?;
    Ok((review, referral))
}

/// Approve a queued referral: its rewards are paid (pending until the return window closes
/// for order-based campaigns), or, when it was queued before qualifying, it goes on waiting
/// for its qualifying order. 409 `budget_exhausted` when the budget cannot cover it.
#[utoipa::path(post, path = "/v1/referral-reviews/{id}/approve", tag = "growth",
    request_body(content = Option<Decide>), params(("id" = String, Path, description = "review id")),
    responses((status = 200, body = Referral), (status = 404),
              (status = 409, description = "review_already_decided or budget_exhausted")),
    security(("api_key" = [])))]
async fn approve_review(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Referral>> {
    let note = note(&body)?;
    let mut tx = state.begin().await?;
    let (_, mut referral) = decide(
        &mut tx,
        &auth.tenant_id,
        &id,
        ReferralReviewStatus::Approved,
        note.as_deref(),
    )
    .await?;
    let campaign = store::lock_campaign(tx.conn(), &auth.tenant_id, &referral.campaign_id).await?;
    tx.emit(event(
        &auth.tenant_id,
        "referral.review_approved",
        &referral,
    ));
    if referral.qualified_at.is_some() || campaign.qualify_on == QualifyOn::Signup {
        qualify(
            &mut tx,
            &auth.tenant_id,
            &campaign,
            &mut referral,
            None,
            Payout::Approved,
        )
        .await?;
    } else {
        referral.status = ReferralStatus::Attributed;
        referral.updated_at = to_micros(tx.now());
        store::save_referral(tx.conn(), &auth.tenant_id, &referral).await?;
        tx.emit(event(&auth.tenant_id, "referral.attributed", &referral));
    }
    let view = referral_view(tx.conn(), &auth.tenant_id, &referral).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Reject a queued referral: nothing is paid, ever; the decision is kept.
#[utoipa::path(post, path = "/v1/referral-reviews/{id}/reject", tag = "growth",
    request_body(content = Option<Decide>), params(("id" = String, Path, description = "review id")),
    responses((status = 200, body = Referral), (status = 404),
              (status = 409, description = "review_already_decided")),
    security(("api_key" = [])))]
async fn reject_review(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Referral>> {
    let note = note(&body)?;
    let mut tx = state.begin().await?;
    let (_, mut referral) = decide(
        &mut tx,
        &auth.tenant_id,
        &id,
        ReferralReviewStatus::Rejected,
        note.as_deref(),
    )
    .await?;
    referral.status = ReferralStatus::Rejected;
    referral.updated_at = to_micros(tx.now());
    store::save_referral(tx.conn(), &auth.tenant_id, &referral).await?;
    tx.emit(event(
        &auth.tenant_id,
        "referral.review_rejected",
        &referral,
    ));
    let view = referral_view(tx.conn(), &auth.tenant_id, &referral).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// The tenant's referral settings.
#[utoipa::path(get, path = "/v1/referral-settings", tag = "growth",
    responses((status = 200, body = Settings)), security(("api_key" = [])))]
async fn get_settings(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Settings>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(store::settings(&mut conn, &auth.tenant_id).await?))
}

/// Change the referral settings (absent fields keep their value).
#[utoipa::path(put, path = "/v1/referral-settings", tag = "growth", request_body = UpdateSettings,
    responses((status = 200, body = Settings), (status = 422)), security(("api_key" = [])))]
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<UpdateSettings>,
) -> ApiResult<Json<Settings>> {
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    store::lock_settings(tx.conn(), &auth.tenant_id, now).await?;
    let settings = store::settings(tx.conn(), &auth.tenant_id)
        .await?
        .apply(request)?;
    store::put_settings(tx.conn(), &auth.tenant_id, &settings, now).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "referral.settings_updated",
        None,
        json!({
            "velocity_per_hour": settings.velocity_per_hour,
            "return_window_days": settings.return_window_days,
        }),
    ));
    tx.commit().await?;
    Ok(Json(settings))
}

/// The top inviters by qualified invites; ties go to who got there first.
#[utoipa::path(get, path = "/v1/referral-campaigns/{id}/leaderboard", tag = "growth",
    params(("id" = String, Path, description = "campaign id"), LeaderboardQuery),
    responses((status = 200, body = Leaderboard), (status = 404)), security(("api_key" = [])))]
async fn leaderboard(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<LeaderboardQuery>,
) -> ApiResult<Json<Leaderboard>> {
    let id = campaign_id(&id)?;
    let limit = pagination::limit(query.limit, 10, MAX_LEADERBOARD)?;
    let mut conn = state.db.read().acquire().await?;
    store::require_campaign(&mut conn, &auth.tenant_id, id.as_str()).await?;
    let data = store::leaderboard(&mut conn, &auth.tenant_id, id.as_str(), limit).await?;
    Ok(Json(Leaderboard { data }))
}

/// One member's rank on the leaderboard (`rank` null without a qualified invite).
#[utoipa::path(get, path = "/v1/referral-campaigns/{id}/leaderboard/members/{member_id}",
    tag = "growth",
    params(("id" = String, Path, description = "campaign id"),
           ("member_id" = String, Path, description = "member id")),
    responses((status = 200, body = Standing), (status = 404)), security(("api_key" = [])))]
async fn member_standing(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, member_id)): Path<(String, String)>,
) -> ApiResult<Json<Standing>> {
    let id = campaign_id(&id)?;
    let member = members::member_id(&member_id)?;
    let mut conn = state.db.read().acquire().await?;
    store::require_campaign(&mut conn, &auth.tenant_id, id.as_str()).await?;
    members::store::require(&mut conn, &auth.tenant_id, &member).await?;
    Ok(Json(
        store::standing(&mut conn, &auth.tenant_id, id.as_str(), &member).await?,
    ))
}

/// The campaign funnel: codes issued → signups → qualified → rewarded, the reward cost and the
/// K-factor (qualified invitees per member who issued a code).
#[utoipa::path(get, path = "/v1/referral-campaigns/{id}/funnel", tag = "growth",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, body = Funnel), (status = 404)), security(("api_key" = [])))]
async fn funnel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Funnel>> {
    let id = campaign_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let campaign = store::require_campaign(&mut conn, &auth.tenant_id, id.as_str()).await?;
    let [codes_issued, signups, refused, in_review, qualified, rewarded] =
        store::funnel_counts(&mut conn, &auth.tenant_id, id.as_str()).await?;
    Ok(Json(Funnel {
        codes_issued,
        signups,
        refused,
        in_review,
        qualified,
        rewarded,
        reward_cost: campaign.spent,
        signup_rate: (codes_issued > 0).then(|| signups as f64 / codes_issued as f64),
        k_factor: rules::k_factor(qualified, codes_issued),
    }))
}
