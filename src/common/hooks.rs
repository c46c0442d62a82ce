//! Domain hooks (DESIGN rule 12): how a change in one domain moves another in the same
//! transaction without the owner knowing the other by name.
//!
//! The owner of a life cycle (orders for an order paid, refunded or closed; members for a member
//! created or erased) calls "every hook of this kind" with a typed context and its own
//! transaction; the composition root (`server::hooks`) registers each domain's implementation,
//! in order, once per process ([`install`]). A hook that fails fails the owner's transaction:
//! nothing of the change is kept. Reactions that need not share the transaction read the outbox
//! (`GET /v1/events`) instead.
//!
//! | hook | owner calls it | registered today |
//! | --- | --- | --- |
//! | [`OrderHooks::on_paid`] | when an order becomes paid (checkout payment, external order) | referrals (qualify), distribution (pending commissions), alliance (cross-referral fees) |
//! | [`OrderHooks::on_refunded`] | after each refund of an order | referrals (void on a full refund), distribution (commissions follow what is still paid), subscriptions (a prepaid order refunded in full ends its subscription), alliance (fees voided by a full refund), neighbourhood (wave orders: pickup and leader commission) |
//! | [`OrderHooks::on_closed`] | when an unpaid order is cancelled or expires | subscriptions (an unpaid prepaid order ends its subscription; an unpaid delivery order skips its delivery) |
//! | [`MemberHooks::check_signup`] | before a member is created, outside the transaction | referrals (signup fields) |
//! | [`MemberHooks::on_created`] | after a member row is written | membership (first tier), referrals (attribution) |
//! | [`MemberHooks::on_erased`] | when a member's personal data is erased | referrals (device and IP), messages (variables) |
//! | [`WaveHooks`] | checkout, for an order that names a `wave_id`, and the life cycle of such orders (the `wave` campaign of `orders`) | neighbourhood (community group buying: wave price and stock, leader, pickup) |
//!
//! The order contexts carry the order's `campaign_kind`, so that a hook concerned with one kind
//! of order only (subscriptions, community group buying) returns at once for every other order
//! instead of querying for rows that cannot exist; hooks that concern every order (referrals,
//! distribution, alliance) ignore it.
//!
//! The registry is process-wide because it is the same in every process: the list of domains
//! compiled into the binary. Every entry point (`AppState::new`, the CLI) installs it before it
//! acts; an owner that finds none installed fails rather than silently skipping its reactions.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};

/// An order has become paid.
#[derive(Debug, Clone, Copy)]
pub struct OrderPaid<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
    pub order_id: &'a str,
    /// The order's `campaign_kind` (`flash_sale`, `group_buy`, `wave`, `subscription`…); none
    /// for an order outside any campaign. A hook that only concerns one kind of order returns
    /// at once for the others instead of looking the order up.
    pub campaign_kind: Option<&'a str>,
    /// What the member paid (fen).
    pub total: i64,
}

/// A refund of an order was made.
#[derive(Debug, Clone, Copy)]
pub struct OrderRefunded<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
    pub order_id: &'a str,
    /// The order's `campaign_kind`, as in [`OrderPaid`].
    pub campaign_kind: Option<&'a str>,
    pub refund_id: &'a str,
    /// This refund (fen).
    pub amount: i64,
    /// All refunds of the order so far, this one included (fen).
    pub refunded_total: i64,
    /// Whether the order is now refunded in full.
    pub full: bool,
}

/// An unpaid order was closed: `cancelled` or `expired`.
#[derive(Debug, Clone, Copy)]
pub struct OrderClosed<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
    pub order_id: &'a str,
    /// The order's `campaign_kind`, as in [`OrderPaid`].
    pub campaign_kind: Option<&'a str>,
    pub status: &'a str,
}

/// What a new member brought with it from the signup, as sent (each hook validates its part).
#[derive(Debug, Clone, Default)]
pub struct Signup {
    pub invite_code: Option<String>,
    pub device_id: Option<String>,
    pub ip: Option<String>,
}

/// What became of the invite code given at signup: the referral it made and its status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignupAttribution {
    pub referral_id: String,
    /// The referral's status, as `GET /v1/referrals` shows it: `attributed` (the inviter is
    /// set), `pending` or `rewarded` (a campaign that qualifies at signup: rewards granted),
    /// `review` (held for an operator; the inviter is set, rewards wait) or `refused` (by the
    /// anti-fraud rules; no inviter is set).
    pub status: String,
    /// Why it was refused or held (`self_invite`, `same_device`, `same_ip`, `already_customer`,
    /// `invite_cycle`, `velocity_exceeded`, `shared_device`…); null when attributed.
    pub reason: Option<String>,
    #[schema(value_type = String)]
    pub inviter_id: MemberId,
}

/// A member was created.
#[derive(Debug, Clone, Copy)]
pub struct MemberCreated<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
    pub signup: &'a Signup,
}

/// What the hooks of a member's creation report back to the caller.
#[derive(Debug, Clone, Default)]
pub struct MemberCreatedOutcome {
    /// Set by the referral hook when the signup carried an invite code.
    pub referral: Option<SignupAttribution>,
}

/// A member's personal data was erased (the id stays).
#[derive(Debug, Clone, Copy)]
pub struct MemberErased<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
}

/// A domain's reactions to an order's life cycle, inside the owner's transaction.
#[async_trait]
pub trait OrderHooks: Send + Sync {
    async fn on_paid(&self, _tx: &mut Tx, _order: &OrderPaid<'_>) -> ApiResult<()> {
        Ok(())
    }
    async fn on_refunded(&self, _tx: &mut Tx, _refund: &OrderRefunded<'_>) -> ApiResult<()> {
        Ok(())
    }
    async fn on_closed(&self, _tx: &mut Tx, _order: &OrderClosed<'_>) -> ApiResult<()> {
        Ok(())
    }
}

/// A domain's reactions to a member's life cycle, inside the owner's transaction (except
/// `check_signup`, which runs before it so that a bad field writes nothing).
#[async_trait]
pub trait MemberHooks: Send + Sync {
    fn check_signup(&self, _signup: &Signup) -> ApiResult<()> {
        Ok(())
    }
    async fn on_created(
        &self,
        _tx: &mut Tx,
        _member: &MemberCreated<'_>,
        _outcome: &mut MemberCreatedOutcome,
    ) -> ApiResult<()> {
        Ok(())
    }
    async fn on_erased(&self, _tx: &mut Tx, _member: &MemberErased<'_>) -> ApiResult<()> {
        Ok(())
    }
}

/// An order being placed in a community group-buying wave: its lines as the buyer asked.
#[derive(Debug, Clone, Copy)]
pub struct WavePlacement<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
    pub order_id: &'a str,
    pub wave_id: &'a str,
    /// (product id, units) per line, as validated by checkout.
    pub lines: &'a [(String, i64)],
}

/// A wave order at a step of its life cycle.
#[derive(Debug, Clone, Copy)]
pub struct WaveOrder<'a> {
    pub tenant_id: &'a TenantId,
    pub member_id: &'a MemberId,
    pub order_id: &'a str,
    /// What the member paid (fen).
    pub total: i64,
}

/// Where and how a wave order is picked up, as `GET /v1/orders/{id}` shows it (`"pickup"`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPickup {
    pub leader_id: String,
    /// The 6-digit pickup code (核销码) once the order is paid; null before.
    pub code: Option<String>,
    /// `awaiting_payment`, `waiting` (paid, goods not yet at the pickup point), `ready`
    /// (arrived), `picked_up`, `cancelled` or `refunded`.
    pub status: String,
}

/// Community group buying as the order owner sees it (one implementation, registered by the
/// composition root): checkout asks it for a wave order's prices and stock, and the order life
/// cycle tells it what became of its orders, inside the order's transaction. Orders thus keep
/// no leader, wave or pickup of their own and import nothing above them.
#[async_trait]
pub trait WaveHooks: Send + Sync {
    /// Take the wave's stock for `placement`'s lines and return each line's unit price (fen),
    /// in order; refuse (404 unknown wave or product, 409 `wave_closed`, `out_of_stock`,
    /// `limit_reached`, `leader_not_active`, 422 `leader_required`) and write nothing otherwise.
    async fn place(&self, tx: &mut Tx, placement: &WavePlacement<'_>) -> ApiResult<Vec<i64>>;
    /// May the order still be paid (409 `wave_closed` after the cut-off)?
    async fn require_payable(&self, tx: &mut Tx, order: &WaveOrder<'_>) -> ApiResult<()>;
    /// The order was paid.
    async fn on_paid(&self, tx: &mut Tx, order: &WaveOrder<'_>) -> ApiResult<()>;
    /// The order's units go back to the wave: it was closed unpaid (`unpaid`) or fully
    /// refunded with its units restocked.
    async fn on_released(&self, tx: &mut Tx, order: &WaveOrder<'_>, unpaid: bool) -> ApiResult<()>;
    /// The order's pickup, if it is a wave order.
    async fn pickup(
        &self,
        conn: &mut sqlx::AnyConnection,
        tenant_id: &TenantId,
        order_id: &str,
    ) -> ApiResult<Option<OrderPickup>>;
}

/// Audiences (saved segments) as a lower domain sees them: `GET /v1/members?segment=` lists a
/// segment's members without the members domain knowing the segments domain. The composition
/// root puts the segments registry in the application state behind this trait.
#[async_trait]
pub trait Audiences: Send + Sync {
    /// Up to `limit` member ids of saved segment `segment_id` whose ids sort after `after`, in
    /// id order; `None` when the tenant has no such segment.
    async fn page(
        &self,
        tenant_id: &TenantId,
        segment_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ApiResult<Option<Vec<String>>>;
}

/// Every domain's hooks, in the order they run.
#[derive(Default)]
pub struct Hooks {
    orders: Vec<Arc<dyn OrderHooks>>,
    members: Vec<Arc<dyn MemberHooks>>,
    waves: Option<Arc<dyn WaveHooks>>,
}

impl Hooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a domain's order hooks (they run after those added before).
    pub fn order(mut self, hooks: impl OrderHooks + 'static) -> Self {
        self.orders.push(Arc::new(hooks));
        self
    }

    /// Add a domain's member hooks (they run after those added before).
    pub fn member(mut self, hooks: impl MemberHooks + 'static) -> Self {
        self.members.push(Arc::new(hooks));
        self
    }

    /// Set the community group-buying waves (one implementation; a second replaces the first).
    pub fn waves(mut self, hooks: impl WaveHooks + 'static) -> Self {
        self.waves = Some(Arc::new(hooks));
        self
    }

    /// The registered waves; 404 `not_found` for the wave when none are compiled in.
    pub fn wave_hooks(&self) -> ApiResult<&dyn WaveHooks> {
        self.waves
            .as_deref()
            .ok_or_else(|| ApiError::not_found("wave"))
    }

    pub async fn order_paid(&self, tx: &mut Tx, order: &OrderPaid<'_>) -> ApiResult<()> {
        for hooks in &self.orders {
            hooks.on_paid(tx, order).await?;
        }
        Ok(())
    }

    pub async fn order_refunded(&self, tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
        for hooks in &self.orders {
            hooks.on_refunded(tx, refund).await?;
        }
        Ok(())
    }

    pub async fn order_closed(&self, tx: &mut Tx, order: &OrderClosed<'_>) -> ApiResult<()> {
        for hooks in &self.orders {
            hooks.on_closed(tx, order).await?;
        }
        Ok(())
    }

    pub fn check_signup(&self, signup: &Signup) -> ApiResult<()> {
        for hooks in &self.members {
            hooks.check_signup(signup)?;
        }
        Ok(())
    }

    pub async fn member_created(
        &self,
        tx: &mut Tx,
        member: &MemberCreated<'_>,
    ) -> ApiResult<MemberCreatedOutcome> {
        let mut outcome = MemberCreatedOutcome::default();
        for hooks in &self.members {
            hooks.on_created(tx, member, &mut outcome).await?;
        }
        Ok(outcome)
    }

    pub async fn member_erased(&self, tx: &mut Tx, member: &MemberErased<'_>) -> ApiResult<()> {
        for hooks in &self.members {
            hooks.on_erased(tx, member).await?;
        }
        Ok(())
    }
}

static REGISTRY: OnceLock<Hooks> = OnceLock::new();

/// Install the process's hooks; the first installation wins (every entry point installs the
/// same list, so a second call is a no-op).
pub fn install(build: impl FnOnce() -> Hooks) {
    REGISTRY.get_or_init(build);
}

/// The installed hooks; an internal error when no entry point installed them.
pub fn registered() -> ApiResult<&'static Hooks> {
    REGISTRY.get().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "domain hooks are not installed: call common::hooks::install first"
        ))
    })
}
