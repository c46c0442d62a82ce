//! The referral rules, pure: what a campaign pays and when ([`rewards_due`], [`ladder_plan`],
//! [`fits_budget`], [`cap_reached`], [`order_qualifies`]) and whether an attribution is
//! accepted, refused or sent to review ([`assess`]). The store loads the facts; these
//! functions decide; the store writes the decision with its reason.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most rungs on one campaign's ladder.
pub const MAX_LADDER_RUNGS: usize = 20;
/// Largest single reward (points or fen of wallet bonus).
pub const MAX_REWARD_AMOUNT: i64 = 100_000_000;

/// When an invitee counts as a successful referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualifyOn {
    /// At once, when the invitee signs up with the code.
    Signup,
    /// When the invitee's first paid order passes its return window.
    FirstPaidOrder,
    /// When the invitee's first paid order of at least `min_order_amount` passes its window.
    OrderOver,
}

impl QualifyOn {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "signup" => Some(QualifyOn::Signup),
            "first_paid_order" => Some(QualifyOn::FirstPaidOrder),
            "order_over" => Some(QualifyOn::OrderOver),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QualifyOn::Signup => "signup",
            QualifyOn::FirstPaidOrder => "first_paid_order",
            QualifyOn::OrderOver => "order_over",
        }
    }
}

/// A reward as the API writes it: exactly one of the three fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReferralRewardSpec)]
pub struct RewardSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_template_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_bonus: Option<i64>,
}

/// A validated reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reward {
    Points(i64),
    Coupon(String),
    WalletBonus(i64),
}

/// Why a reward spec is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewardError {
    #[error("must have exactly one of points, coupon_template_id, wallet_bonus")]
    NotExactlyOne,
    #[error("amount must be between 1 and {MAX_REWARD_AMOUNT}")]
    Amount,
    #[error("coupon_template_id must not be empty")]
    EmptyTemplate,
}

impl RewardSpec {
    pub fn parse(&self) -> Result<Reward, RewardError> {
        let amount = |n: i64| {
            if (1..=MAX_REWARD_AMOUNT).contains(&n) {
                Ok(n)
            } else {
                Err(RewardError::Amount)
            }
        };
        match (&self.points, &self.coupon_template_id, &self.wallet_bonus) {
            (Some(n), None, None) => Ok(Reward::Points(amount(*n)?)),
            (None, Some(t), None) if t.trim().is_empty() => Err(RewardError::EmptyTemplate),
            (None, Some(t), None) => Ok(Reward::Coupon(t.trim().to_owned())),
            (None, None, Some(n)) => Ok(Reward::WalletBonus(amount(*n)?)),
            _ => Err(RewardError::NotExactlyOne),
        }
    }
}

impl Reward {
    /// What the reward costs the campaign's budget, in reward units: one per point, one per
    /// fen of wallet bonus, one per coupon.
    pub fn cost(&self) -> i64 {
        match self {
            Reward::Points(n) | Reward::WalletBonus(n) => *n,
            Reward::Coupon(_) => 1,
        }
    }

    pub fn spec(&self) -> RewardSpec {
        match self {
            Reward::Points(n) => RewardSpec {
                points: Some(*n),
                ..Default::default()
            },
            Reward::Coupon(t) => RewardSpec {
                coupon_template_id: Some(t.clone()),
                ..Default::default()
            },
            Reward::WalletBonus(n) => RewardSpec {
                wallet_bonus: Some(*n),
                ..Default::default()
            },
        }
    }
}

/// One rung of the ladder: an extra inviter reward once their qualified invites reach `invites`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    pub invites: i64,
    pub reward: Reward,
}

/// Check a ladder: at most 20 rungs, with strictly increasing `invites` of 1 or more.
pub fn validate_ladder(ladder: &[Rung]) -> Result<(), String> {
    if ladder.len() > MAX_LADDER_RUNGS {
        return Err(format!("at most {MAX_LADDER_RUNGS} rungs"));
    }
    let mut previous = 0;
    for rung in ladder {
        if rung.invites <= previous {
            return Err("rungs need invites of 1 or more, strictly increasing".into());
        }
        previous = rung.invites;
    }
    Ok(())
}

/// Where a ladder reward the inviter holds (one not voided) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldState {
    /// Pending: taken back if the inviter's qualified invites fall below its rung first.
    Pending,
    /// Released (posted, or a coupon issued or refused at release): final, never taken back.
    Released,
}

/// A ladder reward the inviter holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRung {
    /// The reward's id (its ledger transfer id for points and wallet bonus).
    pub id: String,
    /// The rung it was paid for.
    pub invites: i64,
    pub state: HeldState,
}

/// What to do with an inviter's ladder: the rungs to pay and the held rewards to void.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LadderPlan {
    pub pay: Vec<Rung>,
    /// Ids of pending rewards to void.
    pub void: Vec<String>,
}

impl LadderPlan {
    pub fn is_empty(&self) -> bool {
        self.pay.is_empty() && self.void.is_empty()
    }
}

/// The ladder rule. Given the inviter's `qualified` invites, the campaign's rungs and the ladder
/// rewards the inviter holds, each rung ends with exactly one live reward when `qualified`
/// reaches it and none otherwise, except that a released reward is final: it is never voided
/// (a rung whose count fell after its release keeps it) and its rung is never paid again.
///
/// So: a pending reward whose rung is above `qualified` is voided; a rung at or below
/// `qualified` without a held reward is paid (again, if an earlier reward for it was voided);
/// should a rung hold two rewards, the released one (or else the first) stays and the other
/// pending ones are voided. Applying the plan and asking again gives an empty plan.
pub fn ladder_plan(qualified: i64, ladder: &[Rung], held: &[HeldRung]) -> LadderPlan {
    // Released rewards first, so that they are the ones a rung keeps; otherwise held order.
    let mut ordered: Vec<&HeldRung> = held.iter().collect();
    ordered.sort_by_key(|h| h.state != HeldState::Released);
    let mut live: Vec<i64> = Vec::with_capacity(held.len());
    let mut void = Vec::new();
    for reward in ordered {
        match reward.state {
            HeldState::Released => live.push(reward.invites),
            HeldState::Pending if reward.invites > qualified || live.contains(&reward.invites) => {
                void.push(reward.id.clone());
            }
            HeldState::Pending => live.push(reward.invites),
        }
    }
    let pay = ladder
        .iter()
        .filter(|rung| rung.invites <= qualified && !live.contains(&rung.invites))
        .cloned()
        .collect();
    LadderPlan { pay, void }
}

/// Who receives a reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Inviter,
    Invitee,
    /// A ladder rung, paid to the inviter; carries the rung's `invites`.
    Ladder(i64),
}

impl Role {
    pub fn key(self) -> String {
        match self {
            Role::Inviter => "inviter".into(),
            Role::Invitee => "invitee".into(),
            Role::Ladder(n) => format!("ladder_{n}"),
        }
    }

    /// The role a stored key names (`inviter`, `invitee`, `ladder_<invites>`).
    pub fn parse(key: &str) -> Option<Role> {
        match key {
            "inviter" => Some(Role::Inviter),
            "invitee" => Some(Role::Invitee),
            _ => key
                .strip_prefix("ladder_")
                .and_then(|n| n.parse().ok())
                .map(Role::Ladder),
        }
    }
}

/// Every reward one qualified referral pays: the two sides' rewards and the ladder rungs
/// [`ladder_plan`] pays once the inviter's qualified invites count this one.
pub fn rewards_due(
    inviter_reward: Option<&Reward>,
    invitee_reward: Option<&Reward>,
    rungs: &[Rung],
) -> Vec<(Role, Reward)> {
    let mut due = Vec::new();
    if let Some(r) = inviter_reward {
        due.push((Role::Inviter, r.clone()));
    }
    if let Some(r) = invitee_reward {
        due.push((Role::Invitee, r.clone()));
    }
    for rung in rungs {
        due.push((Role::Ladder(rung.invites), rung.reward.clone()));
    }
    due
}

/// The budget cost of a set of rewards.
pub fn total_cost(rewards: &[(Role, Reward)]) -> i64 {
    rewards
        .iter()
        .fold(0i64, |sum, (_, r)| sum.saturating_add(r.cost()))
}

/// Does `cost` fit in what is left of the budget? No budget means unlimited.
pub fn fits_budget(budget: Option<i64>, spent: i64, cost: i64) -> bool {
    match budget {
        None => true,
        Some(budget) => spent.checked_add(cost).is_some_and(|total| total <= budget),
    }
}

/// Has the inviter already been rewarded `cap` times today? No cap means never.
pub fn cap_reached(cap: Option<i64>, rewarded_today: i64) -> bool {
    cap.is_some_and(|cap| rewarded_today >= cap)
}

/// Does a paid order of `amount` qualify the referral? Only asked for the invitee's paid orders
/// while the referral still waits for one: for `first_paid_order` the first paid order (any
/// amount) qualifies, and since that ends the wait no later order is asked; for `order_over`
/// the first order of at least `min_order_amount`.
pub fn order_qualifies(qualify_on: QualifyOn, min_order_amount: i64, amount: i64) -> bool {
    match qualify_on {
        QualifyOn::Signup => false,
        QualifyOn::FirstPaidOrder => amount > 0,
        QualifyOn::OrderOver => amount >= min_order_amount,
    }
}

/// Why an attribution or a reward was refused or sent to review. The codes are stored and
/// shown as `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The campaign has not started, has ended, or was ended.
    CampaignNotActive,
    /// The inviter used their own code.
    SelfInvite,
    /// The invitee signed up from the inviter's device.
    SameDevice,
    /// The invitee signed up from the inviter's IP address.
    SameIp,
    /// The invitee was a member with orders, or joined before the late-attribution window.
    AlreadyCustomer,
    /// The invitee is the inviter's own inviter, directly or further up the chain.
    InviteCycle,
    /// The inviter brought more invitees in the last hour than the tenant's velocity limit.
    VelocityExceeded,
    /// Another invitee of the same inviter used the same device (review).
    SharedDevice,
    /// Another invitee of the same inviter used the same IP address (review).
    SharedIp,
    /// The inviter reached the campaign's daily reward cap (review).
    DailyCapReached,
    /// The rewards would overspend the campaign's budget (review).
    BudgetExhausted,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::CampaignNotActive => "campaign_not_active",
            Reason::SelfInvite => "self_invite",
            Reason::SameDevice => "same_device",
            Reason::SameIp => "same_ip",
            Reason::AlreadyCustomer => "already_customer",
            Reason::InviteCycle => "invite_cycle",
            Reason::VelocityExceeded => "velocity_exceeded",
            Reason::SharedDevice => "shared_device",
            Reason::SharedIp => "shared_ip",
            Reason::DailyCapReached => "daily_cap_reached",
            Reason::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// The verdict on an attribution or a reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Refuse(Reason),
    Review(Reason),
}

/// Device and network signals the merchant passed when the member was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signals {
    pub device_id: Option<String>,
    pub ip: Option<String>,
}

/// What the store knows about an attribution when it is attempted.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub campaign_active: bool,
    pub inviter_id: String,
    pub invitee_id: String,
    pub inviter: Signals,
    pub invitee: Signals,
    /// The invitee had orders, or joined before the late-attribution window.
    pub invitee_already_customer: bool,
    /// The inviter's inviter, their inviter, and so on up the chain.
    pub inviter_ancestors: Vec<String>,
    /// Attributions to this inviter (any campaign) during the last hour.
    pub inviter_attributions_last_hour: i64,
    pub velocity_per_hour: i64,
    /// Another invitee of this inviter carries the invitee's device id.
    pub device_seen_on_other_invitee: bool,
    /// Another invitee of this inviter carries the invitee's IP address.
    pub ip_seen_on_other_invitee: bool,
}

fn same(a: &Option<String>, b: &Option<String>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a == b)
}

/// The fraud rules, in order: a refused attribution never pays; a doubtful one waits for a
/// person. Refused: inactive campaign, self-invite (same member, same device, same IP),
/// invitee already a customer, invite cycle, velocity burst. Review: the invitee's device or
/// IP already seen on another invitee of the same inviter.
pub fn assess(facts: &Facts) -> Decision {
    if !facts.campaign_active {
        return Decision::Refuse(Reason::CampaignNotActive);
    }
    if facts.inviter_id == facts.invitee_id {
        return Decision::Refuse(Reason::SelfInvite);
    }
    if same(&facts.inviter.device_id, &facts.invitee.device_id) {
        return Decision::Refuse(Reason::SameDevice);
    }
    if same(&facts.inviter.ip, &facts.invitee.ip) {
        return Decision::Refuse(Reason::SameIp);
    }
    if facts.invitee_already_customer {
        return Decision::Refuse(Reason::AlreadyCustomer);
    }
    if facts.inviter_ancestors.contains(&facts.invitee_id) {
        return Decision::Refuse(Reason::InviteCycle);
    }
    if facts.inviter_attributions_last_hour >= facts.velocity_per_hour {
        return Decision::Refuse(Reason::VelocityExceeded);
    }
    if facts.device_seen_on_other_invitee {
        return Decision::Review(Reason::SharedDevice);
    }
    if facts.ip_seen_on_other_invitee {
        return Decision::Review(Reason::SharedIp);
    }
    Decision::Accept
}

/// The reward-time checks: the inviter's daily cap, then the budget.
pub fn assess_payout(
    daily_cap: Option<i64>,
    rewarded_today: i64,
    budget: Option<i64>,
    spent: i64,
    cost: i64,
) -> Decision {
    if cap_reached(daily_cap, rewarded_today) {
        Decision::Review(Reason::DailyCapReached)
    } else if !fits_budget(budget, spent, cost) {
        Decision::Review(Reason::BudgetExhausted)
    } else {
        Decision::Accept
    }
}

/// K-factor as the funnel reports it: qualified invitees per member who issued a code
/// (invites per inviter × conversion). None when nobody issued a code.
pub fn k_factor(qualified: i64, inviters: i64) -> Option<f64> {
    (inviters > 0).then(|| qualified as f64 / inviters as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            campaign_active: true,
            inviter_id: "a".into(),
            invitee_id: "b".into(),
            velocity_per_hour: 20,
            ..Default::default()
        }
    }

    fn signals(device: &str, ip: &str) -> Signals {
        Signals {
            device_id: Some(device.into()),
            ip: Some(ip.into()),
        }
    }

    #[test]
    fn reward_spec_needs_exactly_one_positive_field() {
        let points = RewardSpec {
            points: Some(100),
            ..Default::default()
        };
        assert_eq!(points.parse(), Ok(Reward::Points(100)));
        let both = RewardSpec {
            points: Some(1),
            wallet_bonus: Some(1),
            ..Default::default()
        };
        assert_eq!(both.parse(), Err(RewardError::NotExactlyOne));
        assert_eq!(
            RewardSpec::default().parse(),
            Err(RewardError::NotExactlyOne)
        );
        let zero = RewardSpec {
            wallet_bonus: Some(0),
            ..Default::default()
        };
        assert_eq!(zero.parse(), Err(RewardError::Amount));
        let coupon = RewardSpec {
            coupon_template_id: Some(" cpt_x ".into()),
            ..Default::default()
        };
        assert_eq!(coupon.parse(), Ok(Reward::Coupon("cpt_x".into())));
        assert_eq!(Reward::Coupon("x".into()).cost(), 1);
        assert_eq!(Reward::WalletBonus(500).cost(), 500);
    }

    #[test]
    fn ladder_must_increase() {
        let rung = |n| Rung {
            invites: n,
            reward: Reward::Points(1),
        };
        assert!(validate_ladder(&[rung(1), rung(3), rung(10)]).is_ok());
        assert!(validate_ladder(&[]).is_ok());
        assert!(validate_ladder(&[rung(3), rung(3)]).is_err());
        assert!(validate_ladder(&[rung(0)]).is_err());
        assert!(validate_ladder(&[rung(5), rung(2)]).is_err());
    }

    fn ladder() -> Vec<Rung> {
        vec![
            Rung {
                invites: 3,
                reward: Reward::Points(300),
            },
            Rung {
                invites: 5,
                reward: Reward::WalletBonus(1000),
            },
        ]
    }

    fn held(id: &str, invites: i64, state: HeldState) -> HeldRung {
        HeldRung {
            id: id.into(),
            invites,
            state,
        }
    }

    fn paid(plan: &LadderPlan) -> Vec<i64> {
        plan.pay.iter().map(|r| r.invites).collect()
    }

    /// The ladder as the store would hold it after carrying out `plan` (new rewards pending,
    /// named by `attempt`).
    fn apply(held: &[HeldRung], plan: &LadderPlan, attempt: &str) -> Vec<HeldRung> {
        let mut next: Vec<HeldRung> = held
            .iter()
            .filter(|h| !plan.void.contains(&h.id))
            .cloned()
            .collect();
        for rung in &plan.pay {
            next.push(held_pending(
                &format!("{}#{attempt}", rung.invites),
                rung.invites,
            ));
        }
        next
    }

    fn held_pending(id: &str, invites: i64) -> HeldRung {
        held(id, invites, HeldState::Pending)
    }

    #[test]
    fn each_rung_is_paid_when_its_count_is_reached_and_only_then() {
        let ladder = ladder();
        let mut holding = Vec::new();
        for count in 0..=6 {
            let plan = ladder_plan(count, &ladder, &holding);
            let expected: Vec<i64> = match count {
                3 => vec![3],
                5 => vec![5],
                _ => vec![],
            };
            assert_eq!(paid(&plan), expected, "count {count}");
            assert!(plan.void.is_empty());
            holding = apply(&holding, &plan, "1");
        }
        let inviter = Reward::Points(100);
        let invitee = Reward::Coupon("cpt".into());
        let due = rewards_due(Some(&inviter), Some(&invitee), &ladder[..1]);
        assert_eq!(due[0], (Role::Inviter, Reward::Points(100)));
        assert_eq!(due[1], (Role::Invitee, Reward::Coupon("cpt".into())));
        assert_eq!(due[2], (Role::Ladder(3), Reward::Points(300)));
        assert_eq!(total_cost(&due), 100 + 1 + 300);
        assert!(rewards_due(None, None, &[]).is_empty());
    }

    #[test]
    fn a_rung_is_voided_below_its_count_and_paid_again_once_when_reached_again() {
        let ladder = ladder();
        let first = ladder_plan(3, &ladder, &[]);
        assert_eq!(paid(&first), vec![3]);
        let holding = apply(&[], &first, "1");
        // 3 -> 2: the pending reward of rung 3 goes, nothing is paid.
        let down = ladder_plan(2, &ladder, &holding);
        assert_eq!(down.void, vec!["3#1".to_owned()]);
        assert!(down.pay.is_empty());
        let holding = apply(&holding, &down, "x");
        assert!(holding.is_empty());
        // 2 -> 3: paid again, one reward.
        let up = ladder_plan(3, &ladder, &holding);
        assert_eq!(paid(&up), vec![3]);
        assert!(up.void.is_empty());
        let holding = apply(&holding, &up, "2");
        assert_eq!(holding, vec![held_pending("3#2", 3)]);
        assert!(ladder_plan(3, &ladder, &holding).is_empty());
        assert!(ladder_plan(4, &ladder, &holding).is_empty());
    }

    #[test]
    fn a_count_jumping_over_two_rungs_pays_or_voids_both() {
        let ladder = ladder();
        let up = ladder_plan(6, &ladder, &[]);
        assert_eq!(paid(&up), vec![3, 5]);
        let holding = apply(&[], &up, "1");
        let down = ladder_plan(2, &ladder, &holding);
        assert_eq!(down.void, vec!["3#1".to_owned(), "5#1".to_owned()]);
        assert!(down.pay.is_empty());
        let partly = ladder_plan(4, &ladder, &holding);
        assert_eq!(partly.void, vec!["5#1".to_owned()], "rung 3 still holds");
        assert!(partly.pay.is_empty());
        assert!(ladder_plan(0, &[], &[]).is_empty());
    }

    #[test]
    fn a_released_reward_is_never_voided_nor_paid_again() {
        let ladder = ladder();
        let released = vec![held("r3", 3, HeldState::Released)];
        for count in [0, 2, 3, 4] {
            assert!(
                ladder_plan(count, &ladder, &released).is_empty(),
                "count {count}"
            );
        }
        assert_eq!(paid(&ladder_plan(5, &ladder, &released)), vec![5]);
        // A pending duplicate beside a released reward goes; the released one stays.
        let both = vec![held_pending("p3", 3), held("r3", 3, HeldState::Released)];
        let plan = ladder_plan(3, &ladder, &both);
        assert_eq!(plan.void, vec!["p3".to_owned()]);
        assert!(plan.pay.is_empty());
        // Two pending for one rung: the first stays.
        let twice = vec![held_pending("a", 3), held_pending("b", 3)];
        assert_eq!(ladder_plan(3, &ladder, &twice).void, vec!["b".to_owned()]);
    }

    #[test]
    fn applying_the_same_count_twice_changes_nothing() {
        let ladder = ladder();
        for start in 0..=6 {
            for count in 0..=6 {
                let holding = apply(&[], &ladder_plan(start, &ladder, &[]), "1");
                let plan = ladder_plan(count, &ladder, &holding);
                let after = apply(&holding, &plan, "2");
                assert!(
                    ladder_plan(count, &ladder, &after).is_empty(),
                    "{start} -> {count}"
                );
                let live: Vec<i64> = after.iter().map(|h| h.invites).collect();
                let due: Vec<i64> = ladder
                    .iter()
                    .map(|r| r.invites)
                    .filter(|n| *n <= count)
                    .collect();
                assert_eq!(live, due, "exactly one reward per reached rung");
            }
        }
    }

    #[test]
    fn roles_read_back_from_their_keys() {
        for role in [Role::Inviter, Role::Invitee, Role::Ladder(3)] {
            assert_eq!(Role::parse(&role.key()), Some(role));
        }
        assert_eq!(Role::parse("ladder_x"), None);
        assert_eq!(Role::parse("other"), None);
    }

    #[test]
    fn budget_and_cap_arithmetic() {
        assert!(fits_budget(None, i64::MAX, 1));
        assert!(fits_budget(Some(100), 60, 40));
        assert!(!fits_budget(Some(100), 61, 40));
        assert!(!fits_budget(Some(100), i64::MAX, 1), "no overflow");
        assert!(!cap_reached(None, 1000));
        assert!(!cap_reached(Some(3), 2));
        assert!(cap_reached(Some(3), 3));
        assert_eq!(assess_payout(Some(1), 0, Some(10), 0, 10), Decision::Accept);
        assert_eq!(
            assess_payout(Some(1), 1, Some(10), 0, 10),
            Decision::Review(Reason::DailyCapReached)
        );
        assert_eq!(
            assess_payout(None, 5, Some(10), 1, 10),
            Decision::Review(Reason::BudgetExhausted)
        );
    }

    #[test]
    fn orders_qualify_by_rule() {
        assert!(!order_qualifies(QualifyOn::Signup, 0, 100));
        assert!(order_qualifies(QualifyOn::FirstPaidOrder, 0, 1));
        assert!(!order_qualifies(QualifyOn::FirstPaidOrder, 0, 0));
        assert!(order_qualifies(QualifyOn::OrderOver, 5000, 5000));
        assert!(!order_qualifies(QualifyOn::OrderOver, 5000, 4999));
    }

    #[test]
    fn a_clean_attribution_is_accepted() {
        let mut f = facts();
        f.inviter = signals("d1", "1.1.1.1");
        f.invitee = signals("d2", "2.2.2.2");
        assert_eq!(assess(&f), Decision::Accept);
    }

    #[test]
    fn each_fraud_rule_gives_its_reason() {
        let mut f = facts();
        f.campaign_active = false;
        assert_eq!(assess(&f), Decision::Refuse(Reason::CampaignNotActive));

        let mut f = facts();
        f.invitee_id = "a".into();
        assert_eq!(assess(&f), Decision::Refuse(Reason::SelfInvite));

        let mut f = facts();
        f.inviter = signals("d1", "1.1.1.1");
        f.invitee = signals("d1", "2.2.2.2");
        assert_eq!(assess(&f), Decision::Refuse(Reason::SameDevice));

        let mut f = facts();
        f.inviter = signals("d1", "1.1.1.1");
        f.invitee = signals("d2", "1.1.1.1");
        assert_eq!(assess(&f), Decision::Refuse(Reason::SameIp));

        let mut f = facts();
        f.inviter = Signals::default();
        f.invitee = Signals::default();
        assert_eq!(assess(&f), Decision::Accept, "absent signals never match");

        let mut f = facts();
        f.invitee_already_customer = true;
        assert_eq!(assess(&f), Decision::Refuse(Reason::AlreadyCustomer));

        let mut f = facts();
        f.inviter_ancestors = vec!["c".into(), "b".into()];
        assert_eq!(assess(&f), Decision::Refuse(Reason::InviteCycle));

        let mut f = facts();
        f.inviter_attributions_last_hour = 20;
        assert_eq!(assess(&f), Decision::Refuse(Reason::VelocityExceeded));
        f.inviter_attributions_last_hour = 19;
        assert_eq!(assess(&f), Decision::Accept);

        let mut f = facts();
        f.device_seen_on_other_invitee = true;
        assert_eq!(assess(&f), Decision::Review(Reason::SharedDevice));

        let mut f = facts();
        f.ip_seen_on_other_invitee = true;
        assert_eq!(assess(&f), Decision::Review(Reason::SharedIp));
    }

    #[test]
    fn refusals_take_precedence_over_review() {
        let mut f = facts();
        f.device_seen_on_other_invitee = true;
        f.inviter_attributions_last_hour = 100;
        assert_eq!(assess(&f), Decision::Refuse(Reason::VelocityExceeded));
    }

    #[test]
    fn k_factor_is_qualified_per_inviter() {
        assert_eq!(k_factor(3, 2), Some(1.5));
        assert_eq!(k_factor(0, 0), None);
    }
}
