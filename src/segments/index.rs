//! The in-memory audience index of one tenant: compressed bitmaps (roaring) for the set
//! predicates and bucketed columns for the numeric ones, so that a [`Rule`] compiles to bitmap
//! algebra. Pure: no I/O. [`super::load`] fills it from the database and keeps it fresh; it is
//! never the source of truth (a node that loses it builds it again).
//!
//! # Numbering
//!
//! Members are numbered `0..` in the order of their ids (`mem_` + a UUIDv7, whose time-ordered
//! head makes a new member's id almost always the largest): a bitmap iterated in number order
//! lists members in id order, which is the order of `GET /v1/members`, so a page's cursor is a
//! member id that every node understands. `ids[n]` is member `n`'s id. A member whose id is
//! smaller than one already numbered (created on a node whose clock is behind) is *late*: it
//! gets the next number and its id is kept aside ([`Index::late`]); `ids` holds the largest id
//! before it there, so that `ids` stays sorted and a binary search still finds everyone else.
//!
//! # Numeric columns
//!
//! A numeric field keeps every member's value (`NaN` for none) and up to [`BUCKETS`] bitmaps of
//! value ranges chosen at build time from the values' quantiles. A range query takes the
//! buckets wholly inside it as they are and filters the (at most two) buckets it cuts through
//! by the exact values. Day fields (`last_order_days`, `joined_days`) are stored as the day
//! number of the event and turned into a range of day numbers at query time, so the index does
//! not age; `birthday_in_days` is a bitmap per birthday (month, day).

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use roaring::{MultiOps as _, RoaringBitmap};

use super::rule::{Field, Rule, Set};
use crate::membership::rules::calendar::birthday_in_year;

/// A member's number in the index.
pub type Idx = u32;

/// Most value buckets of a numeric column.
pub const BUCKETS: usize = 128;

/// Everything the index holds of one member (what [`super::load`] reads, and what the naive
/// evaluator [`matches`] tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub active: bool,
    pub tags: Vec<String>,
    pub source: Option<String>,
    pub tier: Option<String>,
    pub rfm_segment: Option<String>,
    pub lifecycle_stage: Option<String>,
    pub groups: Vec<String>,
    pub referral_campaigns: Vec<String>,
    pub consent_marketing: bool,
    pub invited_by: Option<String>,
    pub orders_count: i64,
    pub total_spent: i64,
    /// Tenant-local day number ([`day_number`]) of the last paid order.
    pub last_order_day: Option<i32>,
    /// Tenant-local day number of the member's creation.
    pub joined_day: i32,
    pub points_balance: i64,
    pub p_alive: Option<f64>,
    pub clv: Option<i64>,
    /// (month, day).
    pub birthday: Option<(i8, i8)>,
}

/// Days since 1970-01-01 of a civil date.
pub fn day_number(date: Date) -> i32 {
    let epoch = Date::constant(1970, 1, 1);
    date.since((jiff::Unit::Day, epoch))
        .map(|span| span.get_days())
        .unwrap_or(0)
}

/// Days from `today` until the next birthday on (month, day), 0 on the day; `None` for a
/// date that is no birthday (month or day out of range).
pub fn days_until_birthday(month: i8, day: i8, today: Date) -> Option<i32> {
    let this_year = birthday_in_year(month, day, today.year()).ok()?;
    let next = if this_year >= today {
        this_year
    } else {
        birthday_in_year(month, day, today.year().checked_add(1)?).ok()?
    };
    Some(day_number(next) - day_number(today))
}

/// A member id as a number: the 32 hex digits after `mem_`.
pub fn id_number(id: &str) -> Option<u128> {
    let hex = id.strip_prefix("mem_")?;
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

/// The member id of a number.
pub fn id_text(number: u128) -> String {
    format!("mem_{number:032x}")
}

/// A single-valued categorical field: a code per member (0 = none) and a bitmap per value.
#[derive(Debug, Default)]
struct Category {
    codes: Vec<u32>,
    by_name: HashMap<String, u32>,
    /// `bitmaps[code - 1]`.
    bitmaps: Vec<RoaringBitmap>,
}

impl Category {
    fn code(&mut self, name: &str) -> u32 {
        if let Some(code) = self.by_name.get(name) {
            return *code;
        }
        self.bitmaps.push(RoaringBitmap::new());
        let code = u32::try_from(self.bitmaps.len()).unwrap_or(u32::MAX);
        self.by_name.insert(name.to_owned(), code);
        code
    }

    fn set(&mut self, idx: Idx, name: Option<&str>) {
        let slot = idx as usize;
        if self.codes.len() <= slot {
            self.codes.resize(slot + 1, 0);
        }
        let old = self.codes[slot];
        let new = name.map_or(0, |n| self.code(n));
        if old == new {
            return;
        }
        if old > 0 {
            self.bitmaps[old as usize - 1].remove(idx);
        }
        if new > 0 {
            self.bitmaps[new as usize - 1].insert(idx);
        }
        self.codes[slot] = new;
    }

    fn get(&self, name: &str) -> Option<&RoaringBitmap> {
        self.by_name
            .get(name)
            .map(|code| &self.bitmaps[*code as usize - 1])
    }

    fn bytes(&self) -> usize {
        self.codes.capacity() * 4
            + self
                .bitmaps
                .iter()
                .map(RoaringBitmap::serialized_size)
                .sum::<usize>()
            + self.by_name.keys().map(|k| k.len() + 40).sum::<usize>()
    }
}

/// A multi-valued field (tags, groups, campaigns): a bitmap per value.
#[derive(Debug, Default)]
struct Multi {
    bitmaps: HashMap<String, RoaringBitmap>,
}

impl Multi {
    fn add(&mut self, idx: Idx, name: &str) {
        match self.bitmaps.get_mut(name) {
            Some(bitmap) => {
                bitmap.insert(idx);
            }
            None => {
                let mut bitmap = RoaringBitmap::new();
                bitmap.insert(idx);
                self.bitmaps.insert(name.to_owned(), bitmap);
            }
        }
    }

    /// Make `names` the member's values: out of every other bitmap, into these.
    fn replace(&mut self, idx: Idx, names: &[String]) {
        for (name, bitmap) in &mut self.bitmaps {
            if !names.contains(name) {
                bitmap.remove(idx);
            }
        }
        for name in names {
            self.add(idx, name);
        }
    }

    fn bytes(&self) -> usize {
        self.bitmaps
            .iter()
            .map(|(k, b)| k.len() + 48 + b.serialized_size())
            .sum()
    }
}

/// A numeric field: the values and bucket bitmaps over value ranges.
#[derive(Debug)]
struct Numeric {
    /// `NaN` for none.
    values: Vec<f64>,
    /// Ascending lower bounds; `lows[0]` is −∞. Bucket `i` holds `[lows[i], lows[i + 1])`.
    lows: Vec<f64>,
    buckets: Vec<RoaringBitmap>,
}

impl Default for Numeric {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            lows: vec![f64::NEG_INFINITY],
            buckets: vec![RoaringBitmap::new()],
        }
    }
}

impl Numeric {
    fn bucket_of(&self, value: f64) -> usize {
        self.lows
            .partition_point(|low| *low <= value)
            .saturating_sub(1)
    }

    fn set(&mut self, idx: Idx, value: Option<f64>) {
        let slot = idx as usize;
        if self.values.len() <= slot {
            self.values.resize(slot + 1, f64::NAN);
        }
        let old = self.values[slot];
        let new = value.unwrap_or(f64::NAN);
        if old == new || (old.is_nan() && new.is_nan()) {
            return;
        }
        if !old.is_nan() {
            let bucket = self.bucket_of(old);
            self.buckets[bucket].remove(idx);
        }
        if !new.is_nan() {
            let bucket = self.bucket_of(new);
            self.buckets[bucket].insert(idx);
        }
        self.values[slot] = new;
    }

    /// Choose the buckets from the values' quantiles and fill them.
    fn rebucket(&mut self) {
        let mut sorted: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let mut lows = vec![f64::NEG_INFINITY];
        if !sorted.is_empty() {
            let step = sorted.len().div_ceil(BUCKETS).max(1);
            let mut i = step;
            while i < sorted.len() {
                let low = sorted[i];
                if low > *lows.last().unwrap_or(&f64::NEG_INFINITY) {
                    lows.push(low);
                }
                i += step;
            }
        }
        let mut buckets = vec![Vec::new(); lows.len()];
        self.lows = lows;
        for (idx, value) in self.values.iter().enumerate() {
            if !value.is_nan() {
                buckets[self.bucket_of(*value)].push(idx as u32);
            }
        }
        self.buckets = buckets
            .into_iter()
            .map(|members| RoaringBitmap::from_sorted_iter(members).unwrap_or_default())
            .collect();
    }

    /// Members with `low ≤ value ≤ high`.
    fn range(&self, low: f64, high: f64) -> RoaringBitmap {
        let mut whole = Vec::new();
        let mut cut = RoaringBitmap::new();
        for (i, bucket) in self.buckets.iter().enumerate() {
            let from = self.lows[i];
            let to = self.lows.get(i + 1).copied().unwrap_or(f64::INFINITY);
            if to <= low || from > high {
                continue;
            }
            if from >= low && to <= high {
                whole.push(bucket);
            } else {
                cut.extend(bucket.iter().filter(|idx| {
                    let v = self.values[*idx as usize];
                    v >= low && v <= high
                }));
            }
        }
        whole.push(&cut);
        whole.union()
    }

    fn bytes(&self) -> usize {
        self.values.capacity() * 8
            + self.lows.capacity() * 8
            + self
                .buckets
                .iter()
                .map(RoaringBitmap::serialized_size)
                .sum::<usize>()
    }
}

/// Which numeric column a [`Field`] reads (the birthday is a category).
#[derive(Debug, Clone, Copy)]
enum Column {
    OrdersCount = 0,
    TotalSpent,
    LastOrderDay,
    JoinedDay,
    PointsBalance,
    PAlive,
    Clv,
}

const COLUMNS: usize = 7;

/// The index of one tenant's members.
#[derive(Debug, Default)]
pub struct Index {
    ids: Vec<u128>,
    late: BTreeMap<u128, Idx>,
    late_ids: HashMap<Idx, u128>,
    active: RoaringBitmap,
    consent: RoaringBitmap,
    tags: Multi,
    groups: Multi,
    campaigns: Multi,
    source: Category,
    tier: Category,
    rfm: Category,
    lifecycle: Category,
    invited_by: Category,
    /// Code `month * 32 + day`.
    birthday: Category,
    columns: [Numeric; COLUMNS],
}

/// A birthday's category name.
fn birthday_name(month: i8, day: i8) -> String {
    format!("{month:02}-{day:02}")
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Members numbered so far (active or not).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Active members.
    pub fn active_count(&self) -> u64 {
        self.active.len()
    }

    /// The number of member `id`, if numbered.
    pub fn idx_of(&self, id: u128) -> Option<Idx> {
        if let Some(idx) = self.late.get(&id) {
            return Some(*idx);
        }
        let at = self.ids.partition_point(|x| *x < id);
        (self.ids.get(at) == Some(&id) && !self.late_ids.contains_key(&(at as Idx)))
            .then_some(at as Idx)
    }

    /// The id of member `idx`.
    pub fn id_of(&self, idx: Idx) -> u128 {
        self.late_ids
            .get(&idx)
            .copied()
            .unwrap_or_else(|| self.ids[idx as usize])
    }

    /// Number a member not yet in the index (its facts are set with [`Index::set`]).
    pub fn add(&mut self, id: u128) -> Idx {
        if let Some(idx) = self.idx_of(id) {
            return idx;
        }
        let idx = Idx::try_from(self.ids.len()).unwrap_or(Idx::MAX);
        match self.ids.last() {
            Some(last) if *last >= id => {
                self.ids.push(*last);
                self.late.insert(id, idx);
                self.late_ids.insert(idx, id);
            }
            _ => self.ids.push(id),
        }
        idx
    }

    /// Make `facts` member `idx`'s facts.
    pub fn set(&mut self, idx: Idx, facts: &Facts) {
        set_bit(&mut self.active, idx, facts.active);
        set_bit(&mut self.consent, idx, facts.consent_marketing);
        self.tags.replace(idx, &facts.tags);
        self.groups.replace(idx, &facts.groups);
        self.campaigns.replace(idx, &facts.referral_campaigns);
        self.source.set(idx, facts.source.as_deref());
        self.tier.set(idx, facts.tier.as_deref());
        self.rfm.set(idx, facts.rfm_segment.as_deref());
        self.lifecycle.set(idx, facts.lifecycle_stage.as_deref());
        self.invited_by.set(idx, facts.invited_by.as_deref());
        let birthday = facts.birthday.map(|(m, d)| birthday_name(m, d));
        self.birthday.set(idx, birthday.as_deref());
        self.set_column(Column::OrdersCount, idx, Some(facts.orders_count as f64));
        self.set_column(Column::TotalSpent, idx, Some(facts.total_spent as f64));
        self.set_column(
            Column::LastOrderDay,
            idx,
            facts.last_order_day.map(f64::from),
        );
        self.set_column(Column::JoinedDay, idx, Some(f64::from(facts.joined_day)));
        self.set_column(
            Column::PointsBalance,
            idx,
            Some(facts.points_balance as f64),
        );
        self.set_column(Column::PAlive, idx, facts.p_alive);
        self.set_column(Column::Clv, idx, facts.clv.map(|v| v as f64));
    }

    fn set_column(&mut self, column: Column, idx: Idx, value: Option<f64>) {
        self.columns[column as usize].set(idx, value);
    }

    /// Loading, one part of the facts at a time (see [`super::load`]): the member's row.
    #[allow(clippy::too_many_arguments)]
    pub fn set_profile(&mut self, idx: Idx, facts: &Facts) {
        set_bit(&mut self.active, idx, facts.active);
        set_bit(&mut self.consent, idx, facts.consent_marketing);
        self.source.set(idx, facts.source.as_deref());
        self.tier.set(idx, facts.tier.as_deref());
        self.lifecycle.set(idx, facts.lifecycle_stage.as_deref());
        self.invited_by.set(idx, facts.invited_by.as_deref());
        let birthday = facts.birthday.map(|(m, d)| birthday_name(m, d));
        self.birthday.set(idx, birthday.as_deref());
        self.set_column(Column::JoinedDay, idx, Some(f64::from(facts.joined_day)));
        // Until other parts say otherwise: no orders, no points, no score.
        self.set_column(Column::OrdersCount, idx, Some(0.0));
        self.set_column(Column::TotalSpent, idx, Some(0.0));
        self.set_column(Column::PointsBalance, idx, Some(0.0));
    }

    /// Loading: a tag of member `idx`.
    pub fn add_tag(&mut self, idx: Idx, tag: &str) {
        self.tags.add(idx, tag);
    }

    /// Loading: a group member `idx` is in now.
    pub fn add_group(&mut self, idx: Idx, group: &str) {
        self.groups.add(idx, group);
    }

    /// Loading: a referral campaign member `idx` was attributed in.
    pub fn add_campaign(&mut self, idx: Idx, campaign: &str) {
        self.campaigns.add(idx, campaign);
    }

    /// Loading: member `idx`'s paid orders.
    pub fn set_orders(&mut self, idx: Idx, count: i64, spent: i64, last_day: Option<i32>) {
        self.set_column(Column::OrdersCount, idx, Some(count as f64));
        self.set_column(Column::TotalSpent, idx, Some(spent as f64));
        self.set_column(Column::LastOrderDay, idx, last_day.map(f64::from));
    }

    /// Loading: member `idx`'s points balance.
    pub fn set_points(&mut self, idx: Idx, balance: i64) {
        self.set_column(Column::PointsBalance, idx, Some(balance as f64));
    }

    /// Loading: member `idx`'s scores (`None` for a member the run did not score).
    pub fn set_scores(
        &mut self,
        idx: Idx,
        segment: Option<&str>,
        p_alive: Option<f64>,
        clv: Option<i64>,
    ) {
        self.rfm.set(idx, segment);
        self.set_column(Column::PAlive, idx, p_alive);
        self.set_column(Column::Clv, idx, clv.map(|v| v as f64));
    }

    /// After a bulk load: choose every numeric column's buckets from its values.
    pub fn finish(&mut self) {
        for column in &mut self.columns {
            column.rebucket();
        }
    }

    /// The active members matching `rule` on `today` (the tenant's local date).
    pub fn evaluate(&self, rule: &Rule, today: Date) -> RoaringBitmap {
        let mut out = self.eval(rule, today);
        out &= &self.active;
        out
    }

    fn eval(&self, rule: &Rule, today: Date) -> RoaringBitmap {
        match rule {
            Rule::All(rules) => {
                let parts: Vec<RoaringBitmap> = rules.iter().map(|r| self.eval(r, today)).collect();
                parts.intersection()
            }
            Rule::Any(rules) => rules.iter().map(|r| self.eval(r, today)).union(),
            Rule::Not(rule) => &self.active - &self.eval(rule, today),
            Rule::Is(set) => self.set_of(set),
            Rule::Range { field, gte, lte } => {
                let low = gte.unwrap_or(f64::NEG_INFINITY);
                let high = lte.unwrap_or(f64::INFINITY);
                let today_number = f64::from(day_number(today));
                match field {
                    Field::OrdersCount => {
                        self.columns[Column::OrdersCount as usize].range(low, high)
                    }
                    Field::TotalSpent => self.columns[Column::TotalSpent as usize].range(low, high),
                    Field::PointsBalance => {
                        self.columns[Column::PointsBalance as usize].range(low, high)
                    }
                    Field::PAlive => self.columns[Column::PAlive as usize].range(low, high),
                    Field::Clv => self.columns[Column::Clv as usize].range(low, high),
                    // days = today − day, so low ≤ days ≤ high ⇔ today − high ≤ day ≤ today − low.
                    Field::LastOrderDays => self.columns[Column::LastOrderDay as usize]
                        .range(today_number - high, today_number - low),
                    Field::JoinedDays => self.columns[Column::JoinedDay as usize]
                        .range(today_number - high, today_number - low),
                    Field::BirthdayInDays => self
                        .birthday
                        .by_name
                        .iter()
                        .filter(|(name, _)| {
                            birthday_of_name(name)
                                .and_then(|(m, d)| days_until_birthday(m, d, today))
                                .is_some_and(|days| {
                                    let days = f64::from(days);
                                    days >= low && days <= high
                                })
                        })
                        .map(|(_, code)| &self.birthday.bitmaps[*code as usize - 1])
                        .union(),
                }
            }
        }
    }

    fn set_of(&self, set: &Set) -> RoaringBitmap {
        let found = match set {
            Set::Tag(v) => self.tags.bitmaps.get(v),
            Set::Group(v) => self.groups.bitmaps.get(v),
            Set::ReferralCampaign(v) => self.campaigns.bitmaps.get(v),
            Set::Source(v) => self.source.get(v),
            Set::Tier(v) => self.tier.get(v),
            Set::RfmSegment(v) => self.rfm.get(v),
            Set::LifecycleStage(v) => self.lifecycle.get(v),
            Set::InvitedBy(v) => self.invited_by.get(v),
            Set::ConsentMarketing(true) => Some(&self.consent),
            Set::ConsentMarketing(false) => return &self.active - &self.consent,
        };
        found.cloned().unwrap_or_default()
    }

    /// Up to `limit` member ids of `matching` after member id `after`, in id order.
    pub fn page(&self, matching: &RoaringBitmap, after: Option<u128>, limit: usize) -> Vec<u128> {
        let start = after.map_or(0, |after| self.ids.partition_point(|x| *x <= after));
        let start = Idx::try_from(start).unwrap_or(Idx::MAX);
        let mut ids: Vec<u128> = matching
            .range(start..)
            .filter(|idx| !self.late_ids.contains_key(idx))
            .take(limit)
            .map(|idx| self.ids[idx as usize])
            .collect();
        if !self.late.is_empty() {
            let from = after.map_or(0, |a| a.saturating_add(1));
            ids.extend(
                self.late
                    .range(from..)
                    .filter(|(_, idx)| matching.contains(**idx))
                    .take(limit)
                    .map(|(id, _)| *id),
            );
            ids.sort_unstable();
            ids.truncate(limit);
        }
        ids
    }

    /// About how many bytes the index holds.
    pub fn bytes(&self) -> usize {
        self.ids.capacity() * 16
            + self.late.len() * 64
            + self.active.serialized_size()
            + self.consent.serialized_size()
            + self.tags.bytes()
            + self.groups.bytes()
            + self.campaigns.bytes()
            + self.source.bytes()
            + self.tier.bytes()
            + self.rfm.bytes()
            + self.lifecycle.bytes()
            + self.invited_by.bytes()
            + self.birthday.bytes()
            + self.columns.iter().map(Numeric::bytes).sum::<usize>()
    }
}

fn birthday_of_name(name: &str) -> Option<(i8, i8)> {
    let (month, day) = name.split_once('-')?;
    Some((month.parse().ok()?, day.parse().ok()?))
}

fn set_bit(bitmap: &mut RoaringBitmap, idx: Idx, on: bool) {
    if on {
        bitmap.insert(idx);
    } else {
        bitmap.remove(idx);
    }
}

/// The naive evaluation of `rule` on one member: what the index must agree with.
pub fn matches(facts: &Facts, rule: &Rule, today: Date) -> bool {
    facts.active && holds(facts, rule, today)
}

fn holds(facts: &Facts, rule: &Rule, today: Date) -> bool {
    match rule {
        Rule::All(rules) => rules.iter().all(|r| holds(facts, r, today)),
        Rule::Any(rules) => rules.iter().any(|r| holds(facts, r, today)),
        Rule::Not(rule) => !holds(facts, rule, today),
        Rule::Is(set) => match set {
            Set::Tag(v) => facts.tags.contains(v),
            Set::Group(v) => facts.groups.contains(v),
            Set::ReferralCampaign(v) => facts.referral_campaigns.contains(v),
            Set::Source(v) => facts.source.as_ref() == Some(v),
            Set::Tier(v) => facts.tier.as_ref() == Some(v),
            Set::RfmSegment(v) => facts.rfm_segment.as_ref() == Some(v),
            Set::LifecycleStage(v) => facts.lifecycle_stage.as_ref() == Some(v),
            Set::InvitedBy(v) => facts.invited_by.as_ref() == Some(v),
            Set::ConsentMarketing(b) => facts.consent_marketing == *b,
        },
        Rule::Range { field, gte, lte } => {
            let today_number = day_number(today);
            let value: Option<f64> = match field {
                Field::OrdersCount => Some(facts.orders_count as f64),
                Field::TotalSpent => Some(facts.total_spent as f64),
                Field::PointsBalance => Some(facts.points_balance as f64),
                Field::PAlive => facts.p_alive,
                Field::Clv => facts.clv.map(|v| v as f64),
                Field::LastOrderDays => facts.last_order_day.map(|d| f64::from(today_number - d)),
                Field::JoinedDays => Some(f64::from(today_number - facts.joined_day)),
                Field::BirthdayInDays => facts
                    .birthday
                    .and_then(|(m, d)| days_until_birthday(m, d, today))
                    .map(f64::from),
            };
            value
                .is_some_and(|v| gte.is_none_or(|low| v >= low) && lte.is_none_or(|high| v <= high))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::segments::rule::parse;

    fn member(n: u128) -> u128 {
        0x0193_0000_0000_7000_8000_0000_0000_0000 + n * 7919
    }

    fn rule(value: serde_json::Value) -> Rule {
        parse(&value, "rule").unwrap()
    }

    fn today() -> Date {
        Date::constant(2026, 12, 7)
    }

    #[test]
    fn ids_round_trip_and_late_members_keep_id_order() {
        let id = "mem_0193aaaabbbbccccddddeeeeffff0000";
        assert_eq!(id_text(id_number(id).unwrap()), id);
        assert_eq!(id_number("mem_xyz"), None);
        assert_eq!(id_number("grp_0193aaaabbbbccccddddeeeeffff0000"), None);

        let mut index = Index::new();
        for n in [10, 20, 30] {
            let idx = index.add(member(n));
            index.set(
                idx,
                &Facts {
                    active: true,
                    ..Facts::default()
                },
            );
        }
        // Created on a node whose clock was behind: between 10 and 20.
        let late = index.add(member(15));
        index.set(
            late,
            &Facts {
                active: true,
                ..Facts::default()
            },
        );
        assert_eq!(late, 3);
        assert_eq!(index.idx_of(member(15)), Some(3));
        assert_eq!(index.idx_of(member(20)), Some(1));
        assert_eq!(index.idx_of(member(16)), None);
        assert_eq!(index.id_of(3), member(15));
        let all = index.evaluate(&rule(json!({"consent_marketing": false})), today());
        assert_eq!(index.page(&all, None, 10), [10, 15, 20, 30].map(member));
        assert_eq!(index.page(&all, Some(member(10)), 2), [15, 20].map(member));
        assert_eq!(index.page(&all, Some(member(15)), 2), [20, 30].map(member));
        assert_eq!(index.page(&all, Some(member(30)), 2), Vec::<u128>::new());
    }

    #[test]
    fn days_until_birthday_follows_the_perk_calendar() {
        let day = |y, m, d| Date::new(y, m, d).unwrap();
        assert_eq!(days_until_birthday(12, 7, day(2026, 12, 7)), Some(0));
        assert_eq!(days_until_birthday(12, 8, day(2026, 12, 7)), Some(1));
        assert_eq!(days_until_birthday(12, 6, day(2026, 12, 7)), Some(364));
        // 29 February is 28 February in a common year, 29 February in a leap year.
        assert_eq!(days_until_birthday(2, 29, day(2027, 2, 27)), Some(1));
        assert_eq!(days_until_birthday(2, 29, day(2028, 2, 27)), Some(2));
        assert_eq!(days_until_birthday(3, 1, day(2027, 3, 2)), Some(365));
        assert_eq!(days_until_birthday(13, 1, day(2027, 3, 2)), None);
    }

    #[test]
    fn a_member_with_no_paid_order_matches_no_range_of_last_order_days() {
        let mut index = Index::new();
        let idx = index.add(member(1));
        let facts = Facts {
            active: true,
            ..Facts::default()
        };
        index.set(idx, &facts);
        for r in [
            json!({"field": "last_order_days"}),
            json!({"field": "last_order_days", "gte": 0}),
        ] {
            assert!(index.evaluate(&rule(r.clone()), today()).is_empty());
            assert!(!matches(&facts, &rule(r), today()));
        }
        assert_eq!(
            index
                .evaluate(
                    &rule(json!({"not": {"field": "last_order_days", "lte": 30}})),
                    today()
                )
                .len(),
            1
        );
    }

    // --- property test: the bitmap answer equals the naive per-member evaluation ---

    const TAGS: [&str; 5] = ["vip", "new", "tea", "wholesale", "coffee"];
    const SOURCES: [&str; 3] = ["store", "xiaohongshu", "article"];
    const TIERS: [&str; 3] = ["银卡", "金卡", "钻石"];
    const GROUPS: [&str; 3] = [
        "grp_00000000000000000000000000000001",
        "grp_00000000000000000000000000000002",
        "grp_00000000000000000000000000000003",
    ];
    const CAMPAIGNS: [&str; 2] = [
        "rfc_00000000000000000000000000000001",
        "rfc_00000000000000000000000000000002",
    ];

    fn pick(names: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::sample::select(names).prop_map(str::to_owned))
    }

    fn some_of(names: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        proptest::sample::subsequence(names, 0..=names.len())
            .prop_map(|v| v.into_iter().map(str::to_owned).collect())
    }

    fn facts() -> impl Strategy<Value = Facts> {
        let inviters: Vec<String> = (0..3).map(|n| id_text(member(n))).collect();
        (
            (
                prop::bool::weighted(0.9),
                some_of(&TAGS),
                pick(&SOURCES),
                pick(&TIERS),
            ),
            (
                proptest::option::of(
                    proptest::sample::select(&crate::segments::rule::RFM_SEGMENTS[..])
                        .prop_map(str::to_owned),
                ),
                proptest::option::of(
                    proptest::sample::select(&crate::segments::rule::LIFECYCLE_STAGES[..])
                        .prop_map(str::to_owned),
                ),
                some_of(&GROUPS),
                some_of(&CAMPAIGNS),
            ),
            (
                any::<bool>(),
                proptest::option::of(proptest::sample::select(inviters)),
                0i64..6,
                0i64..50_000,
            ),
            (
                proptest::option::of(20_400i32..20_430),
                20_000i32..20_430,
                -10i64..500,
                proptest::option::of(0.0f64..=1.0),
                proptest::option::of(0i64..100_000),
                proptest::option::of((1i8..=12, 1i8..=31)),
            ),
        )
            .prop_map(
                |(
                    (active, tags, source, tier),
                    (rfm, stage, groups, campaigns),
                    (consent, invited_by, orders, spent),
                    (last, joined, points, p_alive, clv, birthday),
                )| Facts {
                    active,
                    tags,
                    source,
                    tier,
                    rfm_segment: rfm,
                    lifecycle_stage: stage,
                    groups,
                    referral_campaigns: campaigns,
                    consent_marketing: consent,
                    invited_by,
                    orders_count: orders,
                    total_spent: spent,
                    last_order_day: last,
                    joined_day: joined,
                    points_balance: points,
                    p_alive,
                    clv,
                    // Only real dates (the member API refuses 30 February).
                    birthday: birthday.filter(|(m, d)| {
                        birthday_in_year(*m, *d, 2024).is_ok_and(|b| b.day() == *d)
                    }),
                },
            )
    }

    fn leaf() -> impl Strategy<Value = serde_json::Value> {
        let field = proptest::sample::select(Field::ALL.map(Field::name).to_vec());
        let bound = || {
            proptest::option::of(prop_oneof![
                (-5i64..60).prop_map(|n| json!(n)),
                (0.0f64..1.0).prop_map(|x| json!(x)),
                (0i64..60_000).prop_map(|n| json!(n))
            ])
        };
        prop_oneof![
            proptest::sample::select(&TAGS[..]).prop_map(|v| json!({"tag": v})),
            proptest::sample::select(&SOURCES[..]).prop_map(|v| json!({"source": v})),
            proptest::sample::select(&TIERS[..]).prop_map(|v| json!({"tier": v})),
            proptest::sample::select(&crate::segments::rule::RFM_SEGMENTS[..])
                .prop_map(|v| json!({"rfm_segment": v})),
            proptest::sample::select(&crate::segments::rule::LIFECYCLE_STAGES[..])
                .prop_map(|v| json!({"lifecycle_stage": v})),
            proptest::sample::select(&GROUPS[..]).prop_map(|v| json!({"group": v})),
            proptest::sample::select(&CAMPAIGNS[..]).prop_map(|v| json!({"referral_campaign": v})),
            any::<bool>().prop_map(|v| json!({"consent_marketing": v})),
            (0u128..4).prop_map(|n| json!({"invited_by": id_text(member(n))})),
            (field, bound(), bound()).prop_map(|(f, a, b)| {
                let (a, b) = match (a, b) {
                    (Some(a), Some(b)) if a.as_f64() > b.as_f64() => (Some(b), Some(a)),
                    other => other,
                };
                let mut o = serde_json::Map::new();
                o.insert("field".into(), json!(f));
                if let Some(a) = a {
                    o.insert("gte".into(), a);
                }
                if let Some(b) = b {
                    o.insert("lte".into(), b);
                }
                serde_json::Value::Object(o)
            }),
        ]
    }

    fn rules() -> impl Strategy<Value = serde_json::Value> {
        leaf().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"all": v})),
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"any": v})),
                inner.prop_map(|r| json!({"not": r})),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn the_index_agrees_with_the_naive_evaluation(
            members in proptest::collection::vec(facts(), 0..80),
            changes in proptest::collection::vec((0usize..80, facts()), 0..20),
            rules in proptest::collection::vec(rules(), 1..6),
            day_offset in 0i32..400,
            bulk in any::<bool>(),
        ) {
            let today = Date::constant(2025, 10, 1).checked_add(jiff::Span::new().days(day_offset)).unwrap();
            let mut index = Index::new();
            let mut truth: Vec<(u128, Facts)> = Vec::new();
            for (n, facts) in members.iter().enumerate() {
                let id = member(n as u128 + 10);
                let idx = index.add(id);
                if bulk {
                    // The loader's way: the profile, then each part.
                    index.set_profile(idx, facts);
                    for t in &facts.tags { index.add_tag(idx, t); }
                    for g in &facts.groups { index.add_group(idx, g); }
                    for c in &facts.referral_campaigns { index.add_campaign(idx, c); }
                    index.set_orders(idx, facts.orders_count, facts.total_spent, facts.last_order_day);
                    index.set_points(idx, facts.points_balance);
                    index.set_scores(idx, facts.rfm_segment.as_deref(), facts.p_alive, facts.clv);
                } else {
                    index.set(idx, facts);
                }
                truth.push((id, facts.clone()));
            }
            index.finish();
            // Changes after the build, including late members and new ones.
            for (at, facts) in changes {
                if at < truth.len() && at % 3 != 0 {
                    let idx = index.idx_of(truth[at].0).unwrap();
                    index.set(idx, &facts);
                    truth[at].1 = facts;
                } else {
                    let id = if at % 2 == 0 { member(at as u128 + 100) } else { member(at as u128) + 1 };
                    if truth.iter().any(|(known, _)| *known == id) { continue; }
                    let idx = index.add(id);
                    index.set(idx, &facts);
                    truth.push((id, facts));
                }
            }
            for value in rules {
                let rule = parse(&value, "rule").unwrap();
                let got = index.evaluate(&rule, today);
                let mut want: Vec<u128> = truth.iter().filter(|(_, f)| matches(f, &rule, today)).map(|(id, _)| *id).collect();
                want.sort_unstable();
                let mut got_ids: Vec<u128> = got.iter().map(|idx| index.id_of(idx)).collect();
                got_ids.sort_unstable();
                prop_assert_eq!(&got_ids, &want, "rule {}", value);
                // Paging walks the same members in id order, each once.
                let mut paged = Vec::new();
                let mut after = None;
                loop {
                    let page = index.page(&got, after, 3);
                    if page.is_empty() { break; }
                    after = page.last().copied();
                    paged.extend(page);
                }
                prop_assert_eq!(paged, want);
            }
        }
    }
}
