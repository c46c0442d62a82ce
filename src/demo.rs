//! The demo tenant of `shequn serve --demo`: a soy-milk and fresh-food brand (鲜豆坊) with about
//! ten thousand members who joined over the last 90 days, their orders, tiers, coupons, a
//! referral campaign, groups behind a join link, check-ins, a lottery, a running flash sale, a
//! group buy and fitted analytics, so that a newcomer sees a living console one command after
//! cloning.
//!
//! Like [`crate::server`] this is a composition module: it may use every domain and none uses
//! it. It writes nothing itself. Every member, order, claim, check-in and join is a call to the
//! `/v1` router in-process (as the console makes them, with the demo tenant's owner credential
//! attached instead of an API key), so the data obeys every rule the API enforces: the ledger
//! balances, tiers follow growth, referrals pass the fraud rules, flash sales and teams go
//! through their batchers. History is made by replaying the 90 days in order on a
//! [`ManualClock`]: each call runs at its own instant, the way it would have happened. At the
//! end the clock is set to now, the due jobs run (points and referral rewards whose return
//! window closed, the daily run with the analytics refresh) and the lifetime-value models are
//! fitted, as `shequn analytics fit` does.
//!
//! The plan is drawn from a seeded random generator ([`SEED`]), so two demos of the same size
//! hold the same story (ids and the instant "now" differ). Purchases follow the process that
//! BG/NBD assumes (each customer buys at a Poisson rate of their own, drawn from a gamma
//! distribution, and may drop out after each purchase with a probability drawn from a beta
//! distribution), with basket sizes that differ per customer, so the models fitted at the end
//! have something real to find. The gamma and beta samplers are written here (Marsaglia and
//! Tsang's method): `rand_distr` is not a dependency and a demo does not justify one.
//!
//! The demo is made once per database: the demo operator ([`DEMO_EMAIL`]) is created last, so
//! its existence says the demo is complete; a later start finds it, gives it a new password and
//! prints the same three lines. (A start that failed half-way leaves a tenant without that
//! operator behind, and the next start makes a fresh one.)

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::common::auth::{Auth, Caller, KeyRole};
use crate::common::clock::{Clock as _, ManualClock};
use crate::common::db::Db;
use crate::common::idempotency;
use crate::common::ids::TenantId;
use crate::console::operators::{self, Role};
use crate::{server, tenants, AppState};

/// The demo operator's sign-in email.
pub const DEMO_EMAIL: &str = "demo@shequn.example";
/// The demo tenant's name.
pub const DEMO_TENANT_NAME: &str = "鲜豆坊 · 演示";
/// Members made when `--demo-members` is not given.
pub const DEFAULT_MEMBERS: usize = 10_000;
/// Most members a demo may have (the plan is held in memory).
pub const MAX_MEMBERS: usize = 200_000;
/// Days of history before today.
pub const DAYS: i64 = 90;
/// The seed of the plan.
pub const SEED: u64 = 0x5EED_D0D0_2026;

/// Where to sign in to the demo.
#[derive(Debug, Clone)]
pub struct Login {
    pub tenant_id: TenantId,
    pub email: String,
    pub password: String,
    /// Whether this start made the demo (false: it was there already).
    pub created: bool,
}

/// Make the demo tenant unless the database holds it already; either way give the demo
/// operator a new password and say how to sign in.
pub async fn ensure(db: &Db, members: usize) -> anyhow::Result<Login> {
    anyhow::ensure!(
        (1..=MAX_MEMBERS).contains(&members),
        "--demo-members must be 1 to {MAX_MEMBERS}"
    );
    let password = new_password();
    let existing = {
        let mut conn = db.read().acquire().await?;
        operators::by_email(&mut conn, DEMO_EMAIL).await?
    };
    let now = Timestamp::now();
    if let Some((operator, _)) = existing {
        let mut tx = db.begin(now).await?;
        operators::set_password(tx.conn(), &operator.tenant_id, &operator.id, &password).await?;
        tx.commit().await?;
        return Ok(Login {
            tenant_id: operator.tenant_id,
            email: operator.email,
            password,
            created: false,
        });
    }
    let started = std::time::Instant::now();
    let tenant_id = generate(db, members, now).await?;
    let mut tx = db.begin(Timestamp::now()).await?;
    let operator = operators::create(
        tx.conn(),
        &tenant_id,
        DEMO_EMAIL,
        Role::Owner,
        &password,
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        tenant = %tenant_id,
        members,
        seconds = started.elapsed().as_secs_f64(),
        "demo tenant created"
    );
    Ok(Login {
        tenant_id,
        email: operator.email,
        password,
        created: true,
    })
}

/// A fresh random password (letters, digits and a dash: strong enough for the operator rules).
fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let mut text = String::from("demo-");
    for i in 0..14 {
        if i == 7 {
            text.push('-');
        }
        text.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    // At least one digit, whatever the draw.
    text.push(char::from(b'0' + rng.random_range(0..10u8)));
    text
}

// --- the plan -------------------------------------------------------------------------------

/// A product of the brand: sku, name, list price and member price (fen), days one unit lasts,
/// and how often it is chosen.
struct ProductSpec {
    sku: &'static str,
    name: &'static str,
    price: i64,
    member_price: Option<i64>,
    days_of_supply: i64,
    weight: u32,
}

#[rustfmt::skip]
const PRODUCTS: &[ProductSpec] = &[
    ProductSpec { sku: "SOY-ORIGINAL", name: "原味现磨豆浆 500ml", price: 600, member_price: Some(550), days_of_supply: 1, weight: 30 },
    ProductSpec { sku: "SOY-BLACK", name: "黑豆浆 500ml", price: 800, member_price: Some(700), days_of_supply: 1, weight: 14 },
    ProductSpec { sku: "SOY-REDDATE", name: "红枣豆浆 500ml", price: 800, member_price: None, days_of_supply: 1, weight: 10 },
    ProductSpec { sku: "SOY-NOSUGAR-1L", name: "无糖豆浆 1L", price: 1200, member_price: Some(1100), days_of_supply: 2, weight: 8 },
    ProductSpec { sku: "TOFU-PUDDING", name: "嫩豆花", price: 900, member_price: None, days_of_supply: 1, weight: 7 },
    ProductSpec { sku: "YOUTIAO", name: "现炸油条", price: 400, member_price: None, days_of_supply: 1, weight: 16 },
    ProductSpec { sku: "BUN-PORK", name: "鲜肉大包", price: 450, member_price: None, days_of_supply: 1, weight: 14 },
    ProductSpec { sku: "RICE-BALL", name: "糍饭团", price: 1000, member_price: None, days_of_supply: 1, weight: 8 },
    ProductSpec { sku: "EGG-SANDWICH", name: "鸡蛋三明治", price: 1200, member_price: None, days_of_supply: 1, weight: 7 },
    ProductSpec { sku: "SALAD-BOWL", name: "轻食鸡胸沙拉", price: 2200, member_price: Some(1990), days_of_supply: 1, weight: 5 },
    ProductSpec { sku: "FRUIT-CUP", name: "鲜切水果杯", price: 1500, member_price: None, days_of_supply: 1, weight: 6 },
    ProductSpec { sku: "GRAIN-PORRIDGE", name: "杂粮粥", price: 800, member_price: None, days_of_supply: 1, weight: 6 },
    ProductSpec { sku: "SOY-MONTH-CARD", name: "豆浆月卡（30 杯）", price: 15000, member_price: Some(13800), days_of_supply: 30, weight: 1 },
];

/// Where a flash sale, a group buy and the lottery's prizes point.
const FLASH_SKU: &str = "SOY-BLACK";
const GROUP_BUY_SKU: &str = "SALAD-BOWL";

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "英", "华", "玲", "婷", "雪", "慧", "晨", "宇", "欣", "怡", "佳",
    "梓", "浩", "然", "思", "雨", "萱", "琳", "博",
];
const TAGS: &[&str] = &[
    "早餐党",
    "上班族",
    "宝妈",
    "健身",
    "无糖偏好",
    "学生",
    "夜班",
    "团长候选",
];
/// Channels and how many members come from each (referred members come through invites).
const SOURCES: &[(&str, u32)] = &[
    ("store", 36),
    ("mini_program", 20),
    ("wechat_group", 14),
    ("xiaohongshu", 8),
    ("official_account", 6),
    ("douyin", 6),
    ("livestream", 4),
    ("video_account", 4),
    ("exhibition", 2),
];
const PHONE_PREFIXES: &[&str] = &[
    "138", "139", "136", "137", "150", "151", "152", "158", "159", "186", "187", "188", "135",
    "177", "199",
];

/// One member's story.
struct MemberPlan {
    joined_at: Timestamp,
    /// The member's purchases (instants, in order).
    purchases: Vec<Timestamp>,
    /// Favourite product (index into [`PRODUCTS`]) and basket size (lines on average).
    favourite: usize,
    basket: f64,
    /// The member who invited them (index), if any, and whether the signup reuses a device of
    /// another invitee of that inviter (the fraud rules send it to review).
    inviter: Option<usize>,
    shared_device: bool,
}

/// Something that happens at an instant.
#[derive(Debug, Clone, Copy)]
enum Act {
    Setup,
    CampaignStart,
    InviteCode(usize),
    OpenGroups,
    Join(usize),
    ClaimWelcome(usize),
    ClaimWave(usize),
    TopUp(usize),
    Order(usize),
    GroupJoin(usize),
    CheckIn(usize),
    OpenLottery,
    LotteryEntry(usize),
    OpenGroupBuy,
    OpenTeam(usize),
    JoinTeam(usize),
    OpenFlashSale,
    FlashBuy(usize),
}

/// A coupon a member holds, as far as the plan knows.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    valid_to: Timestamp,
    min_spend: i64,
}

/// What the replay learns as it goes (ids the API gave back).
#[derive(Default)]
struct Known {
    member_ids: Vec<Option<String>>,
    product_ids: Vec<String>,
    welcome_template: Option<(String, i64)>,
    wave_template: Option<(String, i64)>,
    prize_template: Option<String>,
    topup_plan: Option<String>,
    campaign: Option<String>,
    invite_codes: HashMap<usize, String>,
    /// Devices of each inviter's invitees (for the shared-device signups).
    invitee_devices: HashMap<usize, Vec<String>>,
    link_code: Option<String>,
    lottery: Option<String>,
    group_buy: Option<String>,
    /// Open teams and how many have joined each.
    teams: Vec<(String, usize)>,
    flash_sale: Option<String>,
    coupons: HashMap<usize, Vec<Held>>,
    /// Wallet money a member holds, as far as the plan knows (fen).
    wallets: HashMap<usize, i64>,
    in_groups: Vec<bool>,
    payments: u64,
}

// --- sampling -------------------------------------------------------------------------------

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(shape, scale) by Marsaglia and Tsang's method.
fn gamma(rng: &mut StdRng, shape: f64, scale: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0, scale) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v * scale;
        }
    }
}

fn beta(rng: &mut StdRng, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a, 1.0);
    let y = gamma(rng, b, 1.0);
    x / (x + y)
}

fn pick_weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut at = rng.random_range(0..total.max(1));
    for (item, weight) in items {
        if at < *weight {
            return *item;
        }
        at -= weight;
    }
    items[0].0
}

/// The plan's calendar: local days in the tenant's zone.
struct Calendar {
    zone: TimeZone,
    now: Timestamp,
    today: Date,
}

impl Calendar {
    fn day(&self, index: i64) -> Date {
        self.today
            .checked_sub((DAYS - index).days())
            .unwrap_or(self.today)
    }

    /// Local `hour:minute` plus `seconds` on day `index`, never after now.
    fn at(&self, index: i64, minutes: i64) -> Timestamp {
        let midnight = self
            .day(index)
            .to_zoned(self.zone.clone())
            .map(|z| z.timestamp())
            .unwrap_or(self.now);
        let instant = midnight
            .checked_add(SignedDuration::from_mins(minutes))
            .unwrap_or(midnight);
        instant.min(self.now)
    }

    /// The day index of an instant.
    fn index_of(&self, at: Timestamp) -> i64 {
        let date = at.to_zoned(self.zone.clone()).date();
        DAYS - (self.today - date).get_days() as i64
    }

    /// A time of day people buy breakfast and lunch, minutes after midnight.
    fn shop_minutes(rng: &mut StdRng) -> i64 {
        match rng.random_range(0..100) {
            0..=59 => rng.random_range(390..570),  // 6:30–9:30
            60..=84 => rng.random_range(660..810), // 11:00–13:30
            _ => rng.random_range(1020..1230),     // 17:00–20:30
        }
    }
}

/// The members' stories, drawn from the seed.
fn plan_members(rng: &mut StdRng, cal: &Calendar, count: usize) -> Vec<MemberPlan> {
    // More members join as the brand grows: the day's weight rises from 1 to 3 over the period.
    let weights: Vec<(i64, u32)> = (0..=DAYS)
        .map(|d| (d, 100 + (200 * d / DAYS) as u32))
        .collect();
    let mut joins: Vec<Timestamp> = (0..count)
        .map(|_| {
            let day = pick_weighted(rng, &weights);
            cal.at(day, rng.random_range(420..1290))
        })
        .collect();
    joins.sort();
    let campaign_day = DAYS / 3;
    let campaign_start = cal.at(campaign_day, 600);
    let product_weights: Vec<(usize, u32)> = PRODUCTS
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.weight))
        .collect();
    let mut plans: Vec<MemberPlan> = Vec::with_capacity(count);
    // Inviters: a few of the members there when the campaign starts, some far busier than others.
    let before_campaign = joins.partition_point(|t| *t < campaign_start);
    let inviter_count = (count / 30).max(3).min(before_campaign.max(1));
    let inviters: Vec<(usize, u32)> = (0..inviter_count)
        .map(|k| {
            let who = rng.random_range(0..before_campaign.max(1));
            (who, (1000 / (k as u32 + 1)).max(20))
        })
        .collect();
    for joined_at in joins {
        let inviter = (joined_at > campaign_start + SignedDuration::from_hours(1)
            && before_campaign > 0
            && rng.random_bool(0.14))
        .then(|| pick_weighted(rng, &inviters));
        let shared_device = inviter.is_some() && rng.random_bool(0.05);
        // Each customer's purchase rate (per day) and chance of dropping out after a purchase.
        let rate = gamma(rng, 0.9, 0.11);
        let dropout = beta(rng, 1.1, 5.0);
        let mut purchases = Vec::new();
        if rng.random_bool(0.82) {
            purchases.push(joined_at + SignedDuration::from_mins(rng.random_range(2..25)));
            let mut t = joined_at;
            loop {
                if rng.random_bool(dropout) {
                    break;
                }
                let gap_days = -rng.random::<f64>().max(1e-12).ln() / rate.max(1e-6);
                if gap_days > (DAYS + 1) as f64 {
                    break;
                }
                let next = t + SignedDuration::from_secs_f64(gap_days * 86_400.0);
                if next >= cal.now {
                    break;
                }
                let day = cal.index_of(next);
                let at = cal.at(day, Calendar::shop_minutes(rng));
                if at >= cal.now || at <= t {
                    t = next;
                    continue;
                }
                purchases.push(at);
                t = at;
            }
        }
        purchases.retain(|at| *at < cal.now);
        plans.push(MemberPlan {
            joined_at,
            purchases,
            favourite: pick_weighted(rng, &product_weights),
            basket: 1.0 + gamma(rng, 1.5, 0.5),
            inviter,
            shared_device,
        });
    }
    plans
}

/// Every act of the story, in the order it happens.
fn plan_acts(rng: &mut StdRng, cal: &Calendar, members: &[MemberPlan]) -> Vec<(Timestamp, Act)> {
    let count = members.len();
    let mut acts: Vec<(Timestamp, Act)> = Vec::new();
    let start = cal.at(0, 300);
    acts.push((start, Act::Setup));
    let campaign_start = cal.at(DAYS / 3, 600);
    acts.push((campaign_start, Act::CampaignStart));
    let groups_open = cal.at(10, 540);
    acts.push((groups_open, Act::OpenGroups));
    let mut inviters: Vec<usize> = members.iter().filter_map(|m| m.inviter).collect();
    inviters.sort_unstable();
    inviters.dedup();
    for who in inviters {
        let at = members[who].joined_at.max(campaign_start) + SignedDuration::from_mins(5);
        acts.push((at, Act::InviteCode(who)));
    }
    let checkin_from = DAYS - 30;
    for (i, member) in members.iter().enumerate() {
        let joined = member.joined_at;
        acts.push((joined, Act::Join(i)));
        if rng.random_bool(0.6) {
            acts.push((joined + SignedDuration::from_secs(40), Act::ClaimWelcome(i)));
        }
        for at in &member.purchases {
            acts.push((*at, Act::Order(i)));
        }
        if rng.random_bool(0.02) {
            let at = joined + SignedDuration::from_mins(rng.random_range(10..600));
            if at < cal.now {
                acts.push((at, Act::TopUp(i)));
            }
        }
        let group_at =
            joined.max(groups_open) + SignedDuration::from_mins(rng.random_range(3..240));
        if rng.random_bool(0.12) && group_at < cal.now {
            acts.push((group_at, Act::GroupJoin(i)));
        }
        // Check-in habits over the last 30 days: one member in twenty, some keener than others.
        if rng.random_bool(0.05) {
            let keen = 0.45 + 0.5 * rng.random::<f64>();
            let first = cal.index_of(joined).max(checkin_from) + 1;
            for day in first..=DAYS {
                if rng.random_bool(keen) {
                    let at = cal.at(day, rng.random_range(400..560));
                    if at < cal.now {
                        acts.push((at, Act::CheckIn(i)));
                    }
                }
            }
        }
    }
    // Member days are Wednesdays: a wave of 满30减8 coupons is claimed each one.
    for day in 0..=DAYS {
        if cal.day(day).weekday() == jiff::civil::Weekday::Wednesday {
            let morning = cal.at(day, 480);
            let there = members.partition_point(|m| m.joined_at < morning);
            for _ in 0..(count / 60).max(1) {
                if there > 0 {
                    let at = morning + SignedDuration::from_mins(rng.random_range(0..600));
                    if at < cal.now {
                        acts.push((at, Act::ClaimWave(rng.random_range(0..there))));
                    }
                }
            }
        }
    }
    // The lottery opened two days ago; one member in thirty-three has entered.
    let lottery_open = cal.now - SignedDuration::from_hours(48);
    acts.push((lottery_open, Act::OpenLottery));
    let there = members.partition_point(|m| m.joined_at < lottery_open);
    for _ in 0..(count / 33).max(3) {
        let at = lottery_open + SignedDuration::from_mins(rng.random_range(1..2800));
        if there > 0 && at < cal.now {
            acts.push((at, Act::LotteryEntry(rng.random_range(0..there))));
        }
    }
    // A three-person group buy since yesterday.
    let group_buy_open = cal.now - SignedDuration::from_hours(26);
    acts.push((group_buy_open, Act::OpenGroupBuy));
    let there = members.partition_point(|m| m.joined_at < group_buy_open);
    for _ in 0..(count / 300).max(2) {
        let at = group_buy_open + SignedDuration::from_mins(rng.random_range(5..1500));
        if there > 0 && at < cal.now {
            let opener = rng.random_range(0..there);
            acts.push((at, Act::OpenTeam(opener)));
            for k in 0..rng.random_range(0..3) {
                let join_at = at + SignedDuration::from_mins(10 + 20 * k);
                if join_at < cal.now {
                    acts.push((join_at, Act::JoinTeam(rng.random_range(0..there))));
                }
            }
        }
    }
    // The flash sale started an hour ago and runs three more hours.
    let flash_created = cal.now - SignedDuration::from_hours(2);
    acts.push((flash_created, Act::OpenFlashSale));
    let flash_start = cal.now - SignedDuration::from_hours(1);
    let there = members.partition_point(|m| m.joined_at < flash_start);
    for _ in 0..(count / 50).max(5) {
        let at = flash_start + SignedDuration::from_secs(rng.random_range(1..3500));
        if there > 0 && at < cal.now {
            acts.push((at, Act::FlashBuy(rng.random_range(0..there))));
        }
    }
    // Ties keep the order they were planned in (a member joins before their first claim).
    acts.sort_by_key(|(at, _)| *at);
    acts
}

// --- the replay -----------------------------------------------------------------------------

/// The demo's client of `/v1`: the router in-process, the tenant's owner credential, the
/// clock every call runs at.
struct Replay {
    api: Router,
    auth: Auth,
    clock: ManualClock,
    rng: StdRng,
    known: Known,
    plans: Vec<MemberPlan>,
}

/// Make the demo tenant; returns its id.
async fn generate(db: &Db, count: usize, now: Timestamp) -> anyhow::Result<TenantId> {
    let zone = TimeZone::get(tenants::DEFAULT_TIMEZONE)?;
    let today = now.to_zoned(zone.clone()).date();
    let cal = Calendar { zone, now, today };
    let mut rng = StdRng::seed_from_u64(SEED);
    let plans = plan_members(&mut rng, &cal, count);
    let acts = plan_acts(&mut rng, &cal, &plans);
    tracing::info!(
        members = count,
        acts = acts.len(),
        orders = plans.iter().map(|p| p.purchases.len()).sum::<usize>(),
        "demo planned"
    );

    let first = acts.first().map(|(at, _)| *at).unwrap_or(now);
    let created = tenants::create(db, DEMO_TENANT_NAME, first - SignedDuration::from_hours(1))
        .await
        .context("creating the demo tenant")?;
    let key = tenants::list_keys(db, &created.tenant_id)
        .await?
        .into_iter()
        .next()
        .context("the demo tenant has no key")?;
    let clock = ManualClock::new(first);
    let state = AppState::new(db.clone(), Arc::new(clock.clone()));
    let (api, _) = server::api().split_for_parts();
    let api = api
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .with_state(state.clone());
    let mut replay = Replay {
        api,
        auth: Auth {
            tenant_id: created.tenant_id.clone(),
            caller: Caller::Key(key.key_id),
            role: KeyRole::Owner,
        },
        clock,
        rng,
        known: Known {
            member_ids: vec![None; count],
            in_groups: vec![false; count],
            ..Known::default()
        },
        plans,
    };
    let total = acts.len();
    for (done, (at, act)) in acts.into_iter().enumerate() {
        replay.clock.set(at);
        replay
            .act(act, &cal)
            .await
            .with_context(|| format!("demo step {act:?} at {at}"))?;
        if done % 20_000 == 0 && done > 0 {
            tracing::info!(done, total, "demo history");
        }
    }
    replay.clock.set(now);
    replay.finish(&state, &cal).await?;
    Ok(created.tenant_id)
}

impl Replay {
    /// Call `/v1`; the status and the JSON answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let builder = Request::builder().method(method).uri(path);
        let mut request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))?,
            None => builder.body(Body::empty())?,
        };
        request.extensions_mut().insert(self.auth.clone());
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Call `/v1` and expect success.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, answer) = self.send(method.clone(), path, body.as_ref()).await?;
        anyhow::ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {answer}"
        );
        Ok(answer)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn member(&self, i: usize) -> Option<String> {
        self.known.member_ids.get(i).cloned().flatten()
    }

    fn product(&self, sku: &str) -> anyhow::Result<String> {
        let index = PRODUCTS
            .iter()
            .position(|p| p.sku == sku)
            .context("unknown sku")?;
        self.known
            .product_ids
            .get(index)
            .cloned()
            .context("products not made yet")
    }

    async fn act(&mut self, act: Act, cal: &Calendar) -> anyhow::Result<()> {
        match act {
            Act::Setup => self.setup().await,
            Act::CampaignStart => self.start_campaign().await,
            Act::InviteCode(i) => self.invite_code(i).await,
            Act::OpenGroups => self.open_groups().await,
            Act::Join(i) => self.join(i).await,
            Act::ClaimWelcome(i) => {
                let template = self.known.welcome_template.clone();
                self.claim(i, template).await
            }
            Act::ClaimWave(i) => {
                let template = self.known.wave_template.clone();
                self.claim(i, template).await
            }
            Act::TopUp(i) => self.top_up(i).await,
            Act::Order(i) => self.order(i).await,
            Act::GroupJoin(i) => self.group_join(i).await,
            Act::CheckIn(i) => self.check_in(i).await,
            Act::OpenLottery => self.open_lottery(cal).await,
            Act::LotteryEntry(i) => self.lottery_entry(i).await,
            Act::OpenGroupBuy => self.open_group_buy().await,
            Act::OpenTeam(i) => self.open_team(i).await,
            Act::JoinTeam(i) => self.join_team(i).await,
            Act::OpenFlashSale => self.open_flash_sale(cal).await,
            Act::FlashBuy(i) => self.flash_buy(i).await,
        }
    }

    /// The program, the products, the coupons, the check-in rule, a top-up plan.
    async fn setup(&mut self) -> anyhow::Result<()> {
        self.call(
            Method::PUT,
            "/v1/program/tiers",
            Some(json!({
                "tiers": [
                    {"name": "豆粉", "growth_min": 0, "discount_bp": 0, "points_multiplier_bp": 10000},
                    {"name": "银豆", "growth_min": 150, "discount_bp": 200, "points_multiplier_bp": 12000},
                    {"name": "金豆", "growth_min": 400, "discount_bp": 500, "points_multiplier_bp": 15000, "early_access_hours": 12},
                    {"name": "黑金豆", "growth_min": 1000, "discount_bp": 800, "points_multiplier_bp": 20000, "free_shipping": true, "early_access_hours": 24}
                ],
                "growth_per_yuan_bp": 10000
            })),
        )
        .await?;
        for spec in PRODUCTS {
            let product = self
                .post(
                    "/v1/products",
                    json!({
                        "name": spec.name, "sku": spec.sku, "price": spec.price,
                        "member_price": spec.member_price, "stock": 1_000_000,
                        "days_of_supply": spec.days_of_supply,
                    }),
                )
                .await?;
            self.known.product_ids.push(text(&product["id"])?);
        }
        let soy = self.product("SOY-ORIGINAL")?;
        self.call(
            Method::PUT,
            "/v1/program/member-day",
            Some(json!({"weekday": 3, "points_multiplier_bp": 20000,
                        "prices": [{"product_id": soy, "price": 500}]})),
        )
        .await?;
        let welcome = self
            .post(
                "/v1/coupon-templates",
                json!({"name": "新人礼 · 满15减5", "kind": "amount_off", "amount_off": 500,
                       "min_spend": 1500, "total_stock": 1_000_000, "per_member_limit": 1,
                       "valid_days": 14}),
            )
            .await?;
        self.known.welcome_template = Some((text(&welcome["id"])?, 1500));
        let wave = self
            .post(
                "/v1/coupon-templates",
                json!({"name": "会员日 · 满30减8", "kind": "amount_off", "amount_off": 800,
                       "min_spend": 3000, "total_stock": 1_000_000, "per_member_limit": 1,
                       "valid_days": 7}),
            )
            .await?;
        self.known.wave_template = Some((text(&wave["id"])?, 3000));
        let prize = self
            .post(
                "/v1/coupon-templates",
                json!({"name": "豆浆免单券", "kind": "percent_off", "percent_off_bp": 10000,
                       "max_discount": 800, "total_stock": 100_000, "per_member_limit": 3,
                       "valid_days": 30}),
            )
            .await?;
        let prize_id = text(&prize["id"])?;
        self.call(
            Method::PUT,
            "/v1/program/birthday",
            Some(json!({"days_before": 3, "points": 100, "coupon_template_id": prize_id})),
        )
        .await?;
        self.call(
            Method::PUT,
            "/v1/checkin-rule",
            Some(json!({
                "cycle_days": 7,
                "rewards": [
                    {"day": 1, "reward": {"points": 5}}, {"day": 2, "reward": {"points": 5}},
                    {"day": 3, "reward": {"points": 10}}, {"day": 4, "reward": {"points": 5}},
                    {"day": 5, "reward": {"points": 5}}, {"day": 6, "reward": {"points": 10}},
                    {"day": 7, "reward": {"coupon_template_id": prize_id}}
                ],
                "makeup_per_month": 2, "makeup_cost_points": 20
            })),
        )
        .await?;
        self.known.prize_template = Some(prize_id);
        let plan = self
            .post(
                "/v1/topup-plans",
                json!({"name": "充100送20", "pay": 10000, "bonus": 2000}),
            )
            .await?;
        self.known.topup_plan = Some(text(&plan["id"])?);
        Ok(())
    }

    async fn start_campaign(&mut self) -> anyhow::Result<()> {
        let welcome = self
            .known
            .welcome_template
            .clone()
            .map(|(id, _)| id)
            .context("no welcome coupon")?;
        self.call(
            Method::PUT,
            "/v1/referral-settings",
            Some(json!({"velocity_per_hour": 20, "return_window_days": 7})),
        )
        .await?;
        let campaign = self
            .post(
                "/v1/referral-campaigns",
                json!({
                    "name": "老带新 · 请好友喝杯豆浆",
                    "qualify_on": "first_paid_order",
                    "inviter_reward": {"points": 200},
                    "invitee_reward": {"coupon_template_id": welcome},
                    "ladder": [{"invites": 3, "reward": {"points": 500}},
                               {"invites": 10, "reward": {"wallet_bonus": 2000}}],
                    "inviter_daily_cap": 5,
                    "budget": 5_000_000,
                }),
            )
            .await?;
        self.known.campaign = Some(text(&campaign["id"])?);
        Ok(())
    }

    async fn invite_code(&mut self, i: usize) -> anyhow::Result<()> {
        let (Some(member), Some(campaign)) = (self.member(i), self.known.campaign.clone()) else {
            return Ok(());
        };
        let answer = self
            .call(
                Method::GET,
                &format!("/v1/members/{member}/invite-code?campaign_id={campaign}"),
                None,
            )
            .await?;
        self.known.invite_codes.insert(i, text(&answer["code"])?);
        Ok(())
    }

    async fn join(&mut self, i: usize) -> anyhow::Result<()> {
        let name = format!(
            "{}{}{}",
            SURNAMES[self.rng.random_range(0..SURNAMES.len())],
            GIVEN[self.rng.random_range(0..GIVEN.len())],
            if self.rng.random_bool(0.6) {
                GIVEN[self.rng.random_range(0..GIVEN.len())]
            } else {
                ""
            }
        );
        let phone = format!(
            "+86{}{:08}",
            PHONE_PREFIXES[self.rng.random_range(0..PHONE_PREFIXES.len())],
            self.rng.random_range(0..100_000_000u32)
        );
        let birthday = format!(
            "{}-{:02}-{:02}",
            self.rng.random_range(1965..2006),
            self.rng.random_range(1..=12),
            self.rng.random_range(1..=28)
        );
        let mut tags: Vec<&str> = Vec::new();
        for _ in 0..self.rng.random_range(0..3) {
            let tag = TAGS[self.rng.random_range(0..TAGS.len())];
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let gender = ["female", "female", "male", "unknown"][self.rng.random_range(0..4)];
        let plan = &self.plans[i];
        let inviter = plan.inviter;
        let shared = plan.shared_device;
        let mut body = json!({
            "external_id": format!("demo-{:06}", i + 1),
            "name": name,
            "phone": phone,
            "birthday": birthday,
            "gender": gender,
            "tags": tags,
            "consent": {"marketing": self.rng.random_bool(0.8)},
            "device_id": format!("dev-{:06}", i + 1),
            "ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        });
        let code = inviter.and_then(|who| self.known.invite_codes.get(&who).cloned());
        match (inviter, code) {
            (Some(who), Some(code)) => {
                body["invite_code"] = json!(code);
                body["source"] = json!("referral");
                let devices = self.known.invitee_devices.entry(who).or_default();
                if shared && !devices.is_empty() {
                    let k = self.rng.random_range(0..devices.len());
                    body["device_id"] = json!(devices[k].clone());
                } else if let Some(device) = body["device_id"].as_str() {
                    devices.push(device.to_owned());
                }
            }
            _ => {
                let source = pick_weighted(&mut self.rng, SOURCES);
                body["source"] = json!(source);
            }
        }
        let created = self.post("/v1/members", body).await?;
        self.known.member_ids[i] = Some(text(&created["id"])?);
        Ok(())
    }

    async fn claim(&mut self, i: usize, template: Option<(String, i64)>) -> anyhow::Result<()> {
        let (Some(member), Some((template, min_spend))) = (self.member(i), template) else {
            return Ok(());
        };
        let (status, coupon) = self
            .send(
                Method::POST,
                &format!("/v1/coupon-templates/{template}/claim"),
                Some(&json!({"member_id": member})),
            )
            .await?;
        // A member still holding one may not claim another (`limit_reached`): nothing to do.
        if status == StatusCode::CONFLICT {
            return Ok(());
        }
        anyhow::ensure!(status.is_success(), "claim answered {status}: {coupon}");
        let held = Held {
            id: text(&coupon["id"])?,
            valid_to: text(&coupon["valid_to"])?.parse()?,
            min_spend,
        };
        self.known.coupons.entry(i).or_default().push(held);
        Ok(())
    }

    async fn top_up(&mut self, i: usize) -> anyhow::Result<()> {
        let (Some(member), Some(plan)) = (self.member(i), self.known.topup_plan.clone()) else {
            return Ok(());
        };
        self.known.payments += 1;
        self.post(
            &format!("/v1/members/{member}/topups"),
            json!({"plan_id": plan, "payment_ref": format!("demo-topup-{}", self.known.payments)}),
        )
        .await?;
        *self.known.wallets.entry(i).or_default() += 12_000;
        Ok(())
    }

    /// A basket for member `i`: their favourite, sometimes with something beside it.
    fn basket(&mut self, i: usize) -> Vec<(usize, i64)> {
        let plan = &self.plans[i];
        let (favourite, size) = (plan.favourite, plan.basket);
        let lines = (size + self.rng.random::<f64>() - 0.5)
            .round()
            .clamp(1.0, 4.0) as usize;
        let mut basket = vec![(favourite, 1 + i64::from(self.rng.random_bool(0.25)))];
        let weights: Vec<(usize, u32)> = PRODUCTS
            .iter()
            .enumerate()
            .map(|(k, p)| (k, p.weight))
            .collect();
        for _ in 1..lines {
            let k = pick_weighted(&mut self.rng, &weights);
            if basket.iter().all(|(p, _)| *p != k) {
                basket.push((k, 1 + i64::from(self.rng.random_bool(0.2))));
            }
        }
        basket
    }

    /// One purchase: at the counter (an external order), or through checkout when the member
    /// has a coupon that fits or money in the wallet.
    async fn order(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(member) = self.member(i) else {
            return Ok(());
        };
        let basket = self.basket(i);
        let items: Vec<Value> = basket
            .iter()
            .map(|(k, qty)| json!({"product_id": self.known.product_ids[*k], "qty": qty}))
            .collect();
        let list_total: i64 = basket.iter().map(|(k, q)| PRODUCTS[*k].price * q).sum();
        let now = self.now();
        let coupon = self.known.coupons.get_mut(&i).and_then(|held| {
            held.retain(|c| c.valid_to > now);
            let at = held.iter().position(|c| list_total >= c.min_spend + 300)?;
            Some(held.remove(at))
        });
        let wallet = self.known.wallets.get(&i).copied().unwrap_or(0);
        if (coupon.is_some() || wallet > 0)
            && self
                .checkout(i, &member, &items, coupon.as_ref(), wallet)
                .await?
        {
            return Ok(());
        }
        self.post(
            "/v1/orders",
            json!({"member_id": member, "items": items, "source": "external",
                   "paid_at": now.to_string()}),
        )
        .await?;
        Ok(())
    }

    /// A checkout order paid from the wallet when it holds enough, else at the counter; false
    /// when the API refused the checkout (the purchase is then made at the counter).
    async fn checkout(
        &mut self,
        i: usize,
        member: &str,
        items: &[Value],
        coupon: Option<&Held>,
        wallet: i64,
    ) -> anyhow::Result<bool> {
        let mut body = json!({"member_id": member, "items": items});
        if let Some(coupon) = coupon {
            body["coupon_id"] = json!(coupon.id);
        }
        let (status, order) = self.send(Method::POST, "/v1/orders", Some(&body)).await?;
        if !status.is_success() {
            tracing::debug!(%status, %order, "demo checkout refused");
            return Ok(false);
        }
        let order_id = text(&order["id"])?;
        let total = order["total"].as_i64().unwrap_or(0);
        self.known.payments += 1;
        let method = if total <= wallet {
            "wallet"
        } else {
            "external"
        };
        self.post(
            &format!("/v1/orders/{order_id}/payments"),
            json!({"method": method, "reference": format!("demo-pay-{}", self.known.payments)}),
        )
        .await?;
        if method == "wallet" {
            self.known.wallets.insert(i, wallet - total);
        }
        Ok(true)
    }

    async fn open_groups(&mut self) -> anyhow::Result<()> {
        let members = self.known.member_ids.iter().flatten().count();
        if members == 0 {
            return Ok(());
        }
        // Sized so that the first groups fill up and the last still has room.
        let capacity = (self.plans.len() * 12 / 100 / 5).clamp(20, 500);
        let names = [
            "徐汇一群",
            "徐汇二群",
            "静安一群",
            "浦东一群",
            "浦东二群",
            "闵行一群",
            "长宁一群",
        ];
        let mut group_ids = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let owner = self.member(k % members).context("no owner")?;
            let group = self
                .post(
                    "/v1/groups",
                    json!({"name": format!("鲜豆坊·{name}"), "owner_member_id": owner,
                           "capacity": capacity, "tags": ["早餐群"]}),
                )
                .await?;
            group_ids.push(text(&group["id"])?);
        }
        let link = self
            .post(
                "/v1/group-links",
                json!({"name": "门店收银台群活码", "group_ids": group_ids}),
            )
            .await?;
        self.known.link_code = Some(text(&link["code"])?);
        Ok(())
    }

    async fn group_join(&mut self, i: usize) -> anyhow::Result<()> {
        let (Some(member), Some(code)) = (self.member(i), self.known.link_code.clone()) else {
            return Ok(());
        };
        let mut body = json!({"member_id": member});
        let inviter = self.plans[i]
            .inviter
            .filter(|who| self.known.in_groups[*who]);
        if let Some(inviter) = inviter.and_then(|who| self.member(who)) {
            body["inviter_member_id"] = json!(inviter);
        }
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("/v1/group-links/{code}/join"),
                Some(&body),
            )
            .await?;
        // Every group full: the member waits for the next one (the link emitted its event).
        if status == StatusCode::CONFLICT {
            return Ok(());
        }
        anyhow::ensure!(
            status.is_success(),
            "group join answered {status}: {answer}"
        );
        self.known.in_groups[i] = true;
        Ok(())
    }

    async fn check_in(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(member) = self.member(i) else {
            return Ok(());
        };
        self.post("/v1/checkins", json!({"member_id": member}))
            .await?;
        Ok(())
    }

    async fn open_lottery(&mut self, cal: &Calendar) -> anyhow::Result<()> {
        let prize = self
            .known
            .prize_template
            .clone()
            .context("no prize coupon")?;
        let closes = cal.now + SignedDuration::from_hours(72);
        let lottery = self
            .post(
                "/v1/lotteries",
                json!({
                    "name": "周年庆抽奖 · 赢豆浆机",
                    "mode": "draw",
                    "winners": 13,
                    "prizes": [
                        {"name": "九阳豆浆机（到店自提）", "reward": null, "stock": 1, "weight": 1},
                        {"name": "豆浆免单券", "reward": {"coupon_template_id": prize}, "stock": 2, "weight": 1},
                        {"name": "300 积分", "reward": {"points": 300}, "stock": 10, "weight": 1}
                    ],
                    "entry_cost_points": 0,
                    "entries_per_member": 1,
                    "opens_at": self.now().to_string(),
                    "closes_at": closes.to_string(),
                }),
            )
            .await?;
        self.known.lottery = Some(text(&lottery["id"])?);
        Ok(())
    }

    async fn lottery_entry(&mut self, i: usize) -> anyhow::Result<()> {
        let (Some(member), Some(lottery)) = (self.member(i), self.known.lottery.clone()) else {
            return Ok(());
        };
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("/v1/lotteries/{lottery}/entries"),
                Some(&json!({"member_id": member})),
            )
            .await?;
        // A second entry of the same member: `entry_limit_reached`.
        anyhow::ensure!(
            status.is_success() || status == StatusCode::CONFLICT,
            "lottery entry answered {status}: {answer}"
        );
        Ok(())
    }

    async fn open_group_buy(&mut self) -> anyhow::Result<()> {
        let product = self.product(GROUP_BUY_SKU)?;
        let group_buy = self
            .post(
                "/v1/group-buys",
                json!({"product_id": product, "price": 1590, "team_size": 3,
                       "duration_secs": 86_400, "per_member_limit": 1,
                       "payment_timeout_secs": 900}),
            )
            .await?;
        self.known.group_buy = Some(text(&group_buy["id"])?);
        Ok(())
    }

    async fn pay_external(&mut self, order_id: &str) -> anyhow::Result<()> {
        self.known.payments += 1;
        self.post(
            &format!("/v1/orders/{order_id}/payments"),
            json!({"method": "external", "reference": format!("demo-pay-{}", self.known.payments)}),
        )
        .await?;
        Ok(())
    }

    async fn open_team(&mut self, i: usize) -> anyhow::Result<()> {
        let (Some(member), Some(group_buy)) = (self.member(i), self.known.group_buy.clone()) else {
            return Ok(());
        };
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("/v1/group-buys/{group_buy}/teams"),
                Some(&json!({"member_id": member})),
            )
            .await?;
        if status == StatusCode::CONFLICT {
            return Ok(());
        }
        anyhow::ensure!(status.is_success(), "team answered {status}: {answer}");
        self.pay_external(&text(&answer["order_id"])?).await?;
        self.known.teams.push((text(&answer["team_id"])?, 1));
        Ok(())
    }

    async fn join_team(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(member) = self.member(i) else {
            return Ok(());
        };
        let Some(slot) = self.known.teams.iter().rposition(|(_, n)| *n < 3) else {
            return Ok(());
        };
        let team = self.known.teams[slot].0.clone();
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("/v1/group-buys/teams/{team}/join"),
                Some(&json!({"member_id": member})),
            )
            .await?;
        // Already in a team of this group buy, or the team closed: the member passes.
        if status == StatusCode::CONFLICT {
            return Ok(());
        }
        anyhow::ensure!(status.is_success(), "team join answered {status}: {answer}");
        self.known.teams[slot].1 += 1;
        // Most pay at once; one in six leaves the order unpaid (it expires, freeing the slot).
        if self.rng.random_bool(0.83) {
            self.pay_external(&text(&answer["order_id"])?).await?;
        }
        Ok(())
    }

    async fn open_flash_sale(&mut self, cal: &Calendar) -> anyhow::Result<()> {
        let product = self.product(FLASH_SKU)?;
        let stock = (self.plans.len() / 40).max(20);
        let sale = self
            .post(
                "/v1/flash-sales",
                json!({
                    "product_id": product, "price": 390, "stock": stock, "per_member_limit": 2,
                    "starts_at": (cal.now - SignedDuration::from_hours(1)).to_string(),
                    "ends_at": (cal.now + SignedDuration::from_hours(3)).to_string(),
                    "payment_timeout_secs": 900,
                }),
            )
            .await?;
        self.known.flash_sale = Some(text(&sale["id"])?);
        Ok(())
    }

    async fn flash_buy(&mut self, i: usize) -> anyhow::Result<()> {
        let (Some(member), Some(sale)) = (self.member(i), self.known.flash_sale.clone()) else {
            return Ok(());
        };
        let qty = 1 + i64::from(self.rng.random_bool(0.3));
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("/v1/flash-sales/{sale}/orders"),
                Some(&json!({"member_id": member, "qty": qty})),
            )
            .await?;
        // Sold out or over the member's limit: refused, as most flash-sale requests are.
        if status == StatusCode::CONFLICT {
            return Ok(());
        }
        anyhow::ensure!(
            status.is_success(),
            "flash-sale order answered {status}: {answer}"
        );
        if self.rng.random_bool(0.85) {
            self.pay_external(&text(&answer["order_id"])?).await?;
        }
        Ok(())
    }

    /// Now: decide some of the review queue, run the due jobs (released points and referral
    /// rewards, the daily run with its analytics refresh) and fit the models.
    async fn finish(&mut self, state: &AppState, cal: &Calendar) -> anyhow::Result<()> {
        let reviews = self
            .call(Method::GET, "/v1/referral-reviews?status=pending", None)
            .await?;
        let pending: Vec<String> = reviews["data"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // A third approved, one rejected, the rest left for the operator to decide.
        for (k, id) in pending.iter().enumerate() {
            if k % 3 == 0 && k + 1 < pending.len() {
                self.post(
                    &format!("/v1/referral-reviews/{id}/approve"),
                    json!({"note": "同住家人，已电话核实"}),
                )
                .await?;
            } else if k == 1 {
                self.post(
                    &format!("/v1/referral-reviews/{id}/reject"),
                    json!({"note": "同一设备批量注册"}),
                )
                .await?;
            }
        }
        let started = std::time::Instant::now();
        let jobs = server::run_due_jobs(state).await?;
        tracing::info!(
            jobs,
            seconds = started.elapsed().as_secs_f64(),
            "demo jobs ran"
        );
        let yesterday = cal.today.checked_sub(1.day()).context("no yesterday")?;
        let report = crate::analytics::scoring::fit_and_score(
            &state.db,
            &self.auth.tenant_id,
            &cal.zone,
            yesterday,
            crate::analytics::model::summary::TimeUnit::Week,
            cal.now,
        )
        .await?;
        tracing::info!(
            customers = report.customers,
            quality = report.model_quality.status.as_str(),
            "demo analytics fitted"
        );
        // The planner's statistics for the tables just filled (the server's connections
        // were opened while they were empty).
        let mut tx = state.db.begin(cal.now).await?;
        sqlx::query("ANALYZE").execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn text(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected text, found {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_have_the_means_they_promise() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let gamma_mean = (0..n).map(|_| gamma(&mut rng, 0.9, 0.11)).sum::<f64>() / n as f64;
        assert!((gamma_mean - 0.099).abs() < 0.005, "{gamma_mean}");
        let beta_mean = (0..n).map(|_| beta(&mut rng, 1.1, 5.0)).sum::<f64>() / n as f64;
        assert!((beta_mean - 1.1 / 6.1).abs() < 0.01, "{beta_mean}");
    }

    #[test]
    fn the_plan_is_the_same_from_the_same_seed() {
        let now: Timestamp = "2026-12-06T03:00:00Z".parse().unwrap();
        let zone = TimeZone::get(tenants::DEFAULT_TIMEZONE).unwrap();
        let cal = Calendar {
            today: now.to_zoned(zone.clone()).date(),
            zone,
            now,
        };
        let draw = || {
            let mut rng = StdRng::seed_from_u64(SEED);
            let plans = plan_members(&mut rng, &cal, 500);
            plans
                .iter()
                .map(|p| (p.joined_at, p.purchases.clone(), p.inviter))
                .collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw());
        assert!(first.iter().all(|(joined, purchases, _)| {
            purchases.iter().all(|at| at >= joined && *at < now)
        }));
        let repeat = first.iter().filter(|(_, p, _)| p.len() > 1).count();
        assert!(repeat > 100, "repeat buyers: {repeat}");
    }

    #[test]
    fn passwords_satisfy_the_operator_rules() {
        for _ in 0..50 {
            assert!(operators::strong_enough(&new_password()));
        }
    }
}
