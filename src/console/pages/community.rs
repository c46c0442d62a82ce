//! `/console/community`: the groups (社群), join links (群活码), the check-in rule (打卡) and the
//! lotteries (抽奖) on one page, with the forms that change the rule and create a lottery.
//! Below it:
//!
//! - `/console/community/groups/{id}`: a group's facts, its members now (who brought them,
//!   when they joined), its joins and leaves per day as a chart, its GMV (paid orders placed by members while they were in it) and who brought how
//!   many members;
//! - `/console/community/links/{code}`: how full each group behind a join link is, in the
//!   order the link fills them;
//! - `/console/community/lotteries/{id}`: a lottery's terms, its entries, the draw, the winners
//!   and the proof, which `/console/community/lotteries/{id}/proof` hands out as a file for
//!   `shequn lottery verify`.
//!
//! Lists of rewards and prizes are typed one per line (`7 points 30`, `一等奖 | points 100 | 1`)
//! and read here into the `/v1` bodies, so an operator can write a whole rule in one box; what
//! cannot be read is shown back with the line that failed and nothing is sent.

use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::console::call::{Answer, ListPage};
use crate::console::i18n::{Lang, Message as _, Msg};
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{
    self, csrf, encode, instant, int, member_link, money, notice, pager, text, unprocessable, Nav,
};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The community pages' own messages.
    pub enum CommunityMsg {
        Title => "社群运营", "Community";
        Groups => "社群", "Groups";
        GroupName => "名称", "Name";
        Owner => "群主", "Owner";
        Fill => "人数 / 容量", "Members / capacity";
        Full => "已满", "Full";
        HasRoom => "有空位", "Has room";
        Links => "群活码", "Join links";
        Code => "活码", "Code";
        LinkGroups => "关联社群（按进群顺序）", "Groups, in the order they fill";
        AllFull => "此活码下所有群都已满，新成员无法进群：请为它添加新群。", "Every group behind this link is full, so newcomers cannot join: add a group to it.";
        JoinHistoryLater => "按活码的进群记录暂未通过 API 提供；每个群的进退群见群详情。", "The API does not list joins by link yet; each group's page shows its joins and leaves.";
        CheckinRule => "打卡规则", "Check-in rule";
        CycleDays => "周期天数", "Cycle (days)";
        Day => "第几天", "Day";
        Reward => "奖励", "Reward";
        MakeupPerMonth => "每月可补签次数", "Make-ups per month";
        MakeupCost => "补签消耗积分", "Points per make-up";
        RewardsByDay => "每日奖励（每行一天）", "Rewards by day (one day a line)";
        RewardsHelp => "每行写“天数 奖励”，奖励为 points 数量、coupon 券模板编号 或 wallet 金额（元），例如 “7 points 30”、“3 wallet 1.50”。", "Write “day reward” on each line; a reward is points N, coupon TEMPLATE_ID or wallet YUAN, e.g. “7 points 30”, “3 wallet 1.50”.";
        RuleSaved => "打卡规则已保存", "The check-in rule is saved";
        NoReward => "无奖品", "No prize";
        Lotteries => "抽奖", "Lotteries";
        NewLottery => "新建抽奖", "New lottery";
        LotteryCreated => "抽奖已创建：种子承诺已公布，开奖后可核验。", "The lottery is created: its seed commitment is published and the result can be checked after the draw.";
        Mode => "方式", "Mode";
        ModeDraw => "到期开奖", "Drawn later";
        ModeInstant => "即抽即中", "Instant";
        Winners => "中奖人数", "Winners";
        WinnersHelp => "仅“到期开奖”需要", "Drawn later only";
        EntryCost => "每次参与消耗积分", "Points per entry";
        EntriesPerMember => "每人可参与次数", "Entries per member";
        OpensAt => "开始时间", "Opens";
        ClosesAt => "截止时间", "Closes";
        TimesHelp => "留空则立即开始、7 天后截止；时间按租户时区。", "Empty: opens now and closes 7 days later; times are in the tenant's time zone.";
        Prizes => "奖品（每行一个）", "Prizes (one a line)";
        PrizesHelp => "每行写“名称 | 奖励 | 库存 | 权重”，奖励为 points 数量、coupon 券模板编号、wallet 金额（元）或 none；权重仅用于即抽即中。例如 “一等奖 | points 100 | 1”、“谢谢参与 | none | | 5”。", "Write “name | reward | stock | weight” on each line; a reward is points N, coupon TEMPLATE_ID, wallet YUAN or none; weights matter in instant mode only. E.g. “First prize | points 100 | 1”, “Thanks for playing | none | | 5”.";
        Prize => "奖品", "Prize";
        Stock => "库存", "Stock";
        Remaining => "剩余", "Remaining";
        Weight => "权重", "Weight";
        Entries => "参与次数", "Entries";
        Create => "创建", "Create";
        Lottery => "抽奖信息", "Lottery";
        StatusScheduled => "未开始", "Scheduled";
        StatusOpen => "进行中", "Open";
        StatusClosed => "已截止，待开奖", "Closed, not drawn";
        StatusDrawn => "已开奖", "Drawn";
        Draw => "开奖", "Draw";
        CloseInstant => "结束抽奖", "Close the lottery";
        CloseEarly => "提前截止（在截止时间前开奖）", "Close early (draw before the closing time)";
        Drawn => "已开奖，结果与种子已公布", "Drawn: the result and the seed are published";
        DrawnWinners => "中奖名单", "Winners";
        Commitment => "种子承诺（SHA-256）", "Seed commitment (SHA-256)";
        Seed => "种子", "Seed";
        SeedHidden => "开奖后公布", "Revealed with the result";
        Proof => "公平性证明", "Proof of fairness";
        DownloadProof => "下载证明文件", "Download the proof";
        VerifyHow => "任何人都可以离线核验：下载证明文件后运行下面的命令，种子与承诺相符且中奖名单一致时退出码为 0。", "Anyone can check it offline: download the proof and run the command below; it exits 0 only when the seed matches the commitment and the winners match.";
        ProofLater => "开奖后（即抽即中：结束后）公布种子和证明。", "The seed and the proof are published with the result (instant mode: once closed).";
        Stats => "社群数据", "Group figures";
        Gmv => "社群 GMV（成员在群期间的支付金额）", "GMV (paid while members were in the group)";
        JoinsLeaves => "最近 30 天每日进群 / 退群", "Joins and leaves per day, last 30 days";
        JoinsLabel => "进群", "Joins";
        LeavesLabel => "退群", "Leaves";
        ByInviter => "谁拉来多少人", "Who brought how many";
        Inviter => "邀请人", "Inviter";
        Brought => "拉新人数", "Members brought";
        LineUnreadable => "第 {0} 行无法识别：{1}", "Line {0} is not understood: {1}";
        WholeNeeded => "“{0}”需要填整数", "“{0}” needs a whole number";
        TimeUnreadable => "“{0}”不是时间（例如 2026-12-08 20:00）", "“{0}” is not a time (e.g. 2026-12-08 20:00)";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/community", get(overview))
        .route("/console/community/checkin-rule", post(save_rule))
        .route("/console/community/lotteries", post(create_lottery))
        .route("/console/community/groups/{id}", get(group))
        .route("/console/community/links/{code}", get(link))
        .route("/console/community/lotteries/{id}", get(lottery))
        .route("/console/community/lotteries/{id}/draw", post(draw))
        .route("/console/community/lotteries/{id}/proof", get(proof_file))
}

// ---------------------------------------------------------------------------------------------
// Reading what operators type

/// What a form held that could not be read; nothing is sent to `/v1` then.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unreadable {
    /// A line (1-based) of a list box, as typed.
    Line(usize, String),
    /// A field that needs a whole number.
    Whole(CommunityMsg),
    /// A field that needs a time.
    Time(CommunityMsg),
}

impl Unreadable {
    fn message(&self, lang: Lang) -> String {
        match self {
            Unreadable::Line(number, line) => {
                CommunityMsg::LineUnreadable.fill(lang, &[&number.to_string(), line])
            }
            Unreadable::Whole(field) => CommunityMsg::WholeNeeded.fill(lang, &[field.text(lang)]),
            Unreadable::Time(field) => CommunityMsg::TimeUnreadable.fill(lang, &[field.text(lang)]),
        }
    }
}

/// A reward as the forms write it: `points 5`, `coupon cpt_…`, `wallet 1.50` (yuan), or
/// `none`.
fn reward_words(reward: &Value) -> String {
    if let Some(points) = reward["points"].as_i64() {
        return format!("points {points}");
    }
    if let Some(template) = reward["coupon_template_id"].as_str() {
        return format!("coupon {template}");
    }
    if let Some(fen) = reward["wallet_bonus"].as_i64() {
        let fen = fen.unsigned_abs();
        return format!("wallet {}.{:02}", fen / 100, fen % 100);
    }
    "none".to_owned()
}

/// Read a reward written as [`reward_words`] writes it: `Some(None)` for `none` or nothing,
/// `None` when it is not a reward.
fn parse_reward(words: &str) -> Option<Option<Value>> {
    let mut parts = words.split_whitespace();
    let (kind, value) = (parts.next(), parts.next());
    if parts.next().is_some() {
        return None;
    }
    match (kind, value) {
        (None, _) | (Some("none"), None) => Some(None),
        (Some("points"), Some(points)) => points
            .parse::<i64>()
            .ok()
            .map(|points| Some(json!({ "points": points }))),
        (Some("coupon"), Some(template)) => Some(Some(json!({ "coupon_template_id": template }))),
        (Some("wallet"), Some(yuan)) => {
            view::parse_yuan(yuan).map(|fen| Some(json!({ "wallet_bonus": fen })))
        }
        _ => None,
    }
}

/// A whole number typed into `field`; empty is `None`.
fn optional_whole(typed: &str, field: CommunityMsg) -> Result<Option<i64>, Unreadable> {
    view::whole_number(typed).ok_or(Unreadable::Whole(field))
}

fn whole(typed: &str, field: CommunityMsg) -> Result<i64, Unreadable> {
    optional_whole(typed, field)?.ok_or(Unreadable::Whole(field))
}

/// A time typed into `field` (a browser's `2026-12-08T20:00`, `2026-12-08 20:00`, a date, or
/// an RFC 3339 instant) as the RFC 3339 instant `/v1` takes, reading local times in `zone`;
/// empty is `None`.
fn optional_time(
    typed: &str,
    field: CommunityMsg,
    zone: &TimeZone,
) -> Result<Option<String>, Unreadable> {
    let read = |typed: &str| {
        if let Ok(at) = typed.parse::<Timestamp>() {
            return Some(at.to_string());
        }
        typed
            .replacen(' ', "T", 1)
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|local| local.to_zoned(zone.clone()).ok())
            .map(|zoned| zoned.timestamp().to_string())
    };
    view::field(typed, read).ok_or(Unreadable::Time(field))
}

/// The non-empty, trimmed lines of a list box with their 1-based numbers.
fn lines(typed: &str) -> impl Iterator<Item = (usize, &str)> {
    typed
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
}

/// The check-in rule form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    cycle_days: String,
    /// `day reward` lines.
    #[serde(default)]
    rewards: String,
    #[serde(default)]
    makeup_per_month: String,
    #[serde(default)]
    makeup_cost_points: String,
}

impl RuleForm {
    /// The form filled with a rule from `/v1/checkin-rule`.
    fn from_rule(rule: &Value) -> RuleForm {
        let rewards = rule["rewards"]
            .as_array()
            .map(|days| {
                days.iter()
                    .map(|d| format!("{} {}", int(&d["day"]), reward_words(&d["reward"])))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        RuleForm {
            cycle_days: text(&rule["cycle_days"]),
            rewards,
            makeup_per_month: text(&rule["makeup_per_month"]),
            makeup_cost_points: text(&rule["makeup_cost_points"]),
        }
    }

    /// The body of `PUT /v1/checkin-rule`.
    fn body(&self) -> Result<Value, Unreadable> {
        let mut rewards = Vec::new();
        for (number, line) in lines(&self.rewards) {
            let unreadable = || Unreadable::Line(number, line.to_owned());
            let (day, reward) = line
                .split_once(char::is_whitespace)
                .ok_or_else(unreadable)?;
            let day: i64 = day.parse().map_err(|_| unreadable())?;
            // A day listed needs a reward; days without one are simply left out.
            let reward = parse_reward(reward).flatten().ok_or_else(unreadable)?;
            rewards.push(json!({ "day": day, "reward": reward }));
        }
        Ok(json!({
            "cycle_days": whole(&self.cycle_days, CommunityMsg::CycleDays)?,
            "rewards": rewards,
            "makeup_per_month": whole(&self.makeup_per_month, CommunityMsg::MakeupPerMonth)?,
            "makeup_cost_points": whole(&self.makeup_cost_points, CommunityMsg::MakeupCost)?,
        }))
    }
}

/// The new-lottery form as typed.
#[derive(Debug, Clone, Deserialize)]
pub struct LotteryForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    winners: String,
    #[serde(default)]
    entry_cost_points: String,
    #[serde(default)]
    entries_per_member: String,
    #[serde(default)]
    opens_at: String,
    #[serde(default)]
    closes_at: String,
    /// `name | reward | stock | weight` lines.
    #[serde(default)]
    prizes: String,
}

impl Default for LotteryForm {
    fn default() -> Self {
        LotteryForm {
            name: String::new(),
            mode: "draw".to_owned(),
            winners: "1".to_owned(),
            entry_cost_points: "0".to_owned(),
            entries_per_member: "1".to_owned(),
            opens_at: String::new(),
            closes_at: String::new(),
            prizes: String::new(),
        }
    }
}

/// One `name | reward | stock | weight` line as a `/v1` prize; `None` when it is not one.
fn parse_prize(line: &str) -> Option<Value> {
    let fields: Vec<&str> = line.split('|').map(str::trim).collect();
    let name = fields.first().filter(|name| !name.is_empty())?;
    if fields.len() > 4 {
        return None;
    }
    let number = |i: usize| -> Option<Option<i64>> {
        match fields.get(i).filter(|f| !f.is_empty()) {
            None => Some(None),
            Some(typed) => typed.parse().ok().map(Some),
        }
    };
    let mut prize = Map::new();
    prize.insert("name".into(), (*name).into());
    let reward = parse_reward(fields.get(1).copied().unwrap_or(""))?;
    prize.insert("reward".into(), reward.unwrap_or(Value::Null));
    if let Some(stock) = number(2)? {
        prize.insert("stock".into(), stock.into());
    }
    if let Some(weight) = number(3)? {
        prize.insert("weight".into(), weight.into());
    }
    Some(Value::Object(prize))
}

impl LotteryForm {
    /// The body of `POST /v1/lotteries`; local times are read in `zone`.
    fn body(&self, zone: &TimeZone) -> Result<Value, Unreadable> {
        let mut body = Map::new();
        body.insert("name".into(), self.name.trim().into());
        body.insert("mode".into(), self.mode.trim().into());
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        if self.mode.trim() == "draw" {
            put(
                "winners",
                optional_whole(&self.winners, CommunityMsg::Winners)?.map(Value::from),
            );
        }
        put(
            "entry_cost_points",
            optional_whole(&self.entry_cost_points, CommunityMsg::EntryCost)?.map(Value::from),
        );
        put(
            "entries_per_member",
            optional_whole(&self.entries_per_member, CommunityMsg::EntriesPerMember)?
                .map(Value::from),
        );
        put(
            "opens_at",
            optional_time(&self.opens_at, CommunityMsg::OpensAt, zone)?.map(Value::from),
        );
        put(
            "closes_at",
            optional_time(&self.closes_at, CommunityMsg::ClosesAt, zone)?.map(Value::from),
        );
        let prizes = lines(&self.prizes)
            .map(|(number, line)| {
                parse_prize(line).ok_or_else(|| Unreadable::Line(number, line.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        put("prizes", Some(Value::Array(prizes)));
        Ok(Value::Object(body))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// A reward in words of the operator's language.
fn reward_label(signed: &Signed, reward: &Value) -> String {
    if let Some(points) = reward["points"].as_i64() {
        return format!("{points} {}", signed.t(Msg::Points));
    }
    if let Some(template) = reward["coupon_template_id"].as_str() {
        return format!("{} {template}", signed.t(Msg::Coupons));
    }
    if let Some(fen) = reward["wallet_bonus"].as_i64() {
        return format!("{} {}", signed.t(Msg::StoredValueBonus), money(fen));
    }
    signed.t(CommunityMsg::NoReward).to_owned()
}

fn status_label(signed: &Signed, status: &str) -> String {
    let msg = match status {
        "scheduled" => CommunityMsg::StatusScheduled,
        "open" => CommunityMsg::StatusOpen,
        "closed" => CommunityMsg::StatusClosed,
        "drawn" => CommunityMsg::StatusDrawn,
        other => return other.to_owned(),
    };
    signed.t(msg).to_owned()
}

fn mode_label(signed: &Signed, mode: &str) -> String {
    match mode {
        "draw" => signed.t(CommunityMsg::ModeDraw).to_owned(),
        "instant" => signed.t(CommunityMsg::ModeInstant).to_owned(),
        other => other.to_owned(),
    }
}

/// `members / capacity` with a meter, and a badge when full.
fn fill(signed: &Signed, group: &Value) -> Markup {
    let (members, capacity) = (int(&group["member_count"]), int(&group["capacity"]));
    html! {
        meter min="0" max=(capacity) value=(members) {}
        " " (members) " / " (capacity)
        @if members >= capacity { " " span.badge.bad { (signed.t(CommunityMsg::Full)) } }
    }
}

// ---------------------------------------------------------------------------------------------
// The overview

#[derive(Debug, Default, Deserialize)]
pub struct OverviewParams {
    #[serde(default)]
    groups_cursor: String,
    #[serde(default)]
    links_cursor: String,
    #[serde(default)]
    lotteries_cursor: String,
    /// Only lotteries in this status (`scheduled`, `open`, `closed`, `drawn`).
    #[serde(default)]
    status: String,
    /// `rule` after the check-in rule was saved.
    #[serde(default)]
    saved: String,
}

impl OverviewParams {
    /// The lotteries' filter as a query (`?status=…`), "" without one.
    fn filter(&self) -> String {
        if self.status.is_empty() {
            String::new()
        } else {
            format!("?status={}", encode(&self.status))
        }
    }
}

/// What the overview shows besides the data: a notice, and forms as they were typed when they
/// could not be used.
#[derive(Default)]
struct Shown {
    notice: Option<(bool, String)>,
    rule: Option<RuleForm>,
    lottery: Option<LotteryForm>,
}

/// `GET /console/community`.
async fn overview(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<OverviewParams>,
) -> Result<Response, Refusal> {
    let mut shown = Shown::default();
    if params.saved == "rule" {
        shown.notice = Some((true, signed.t(CommunityMsg::RuleSaved).to_owned()));
    }
    Ok(overview_page(&console, &signed, &params, shown).await)
}

async fn overview_page(
    console: &Console,
    signed: &Signed,
    params: &OverviewParams,
    shown: Shown,
) -> Response {
    let lotteries_base = format!("/v1/lotteries{}", params.filter());
    let (groups, links, rule, lotteries) = tokio::join!(
        console.list(signed, "/v1/groups", &params.groups_cursor),
        console.list(signed, "/v1/group-links", &params.links_cursor),
        console.get(signed, "/v1/checkin-rule"),
        console.list(signed, &lotteries_base, &params.lotteries_cursor),
    );
    let body = html! {
        @if let Some((ok, message)) = &shown.notice { (notice(*ok, message)) }
        (groups_section(signed, &groups, &params.groups_cursor))
        (links_section(signed, &links, &params.links_cursor))
        (rule_section(signed, &rule, shown.rule.as_ref()))
        (lotteries_section(signed, &lotteries, params, shown.lottery.as_ref()))
    };
    view::page(signed, Nav::Community, signed.t(CommunityMsg::Title), body)
}

fn groups_section(signed: &Signed, list: &ListPage, cursor: &str) -> Markup {
    html! {
        section.panel id="groups" {
            h2 { (signed.t(CommunityMsg::Groups)) }
            @if let Some(error) = &list.error { (notice(false, error)) }
            table {
                thead { tr {
                    th { (signed.t(CommunityMsg::GroupName)) } th { (signed.t(CommunityMsg::Fill)) }
                    th.hide-narrow { (signed.t(CommunityMsg::Owner)) } th.hide-narrow { (signed.t(Msg::Tags)) }
                    th.hide-narrow { (signed.t(Msg::Created)) }
                } }
                tbody {
                    @for g in &list.rows {
                        tr {
                            td { a href=(format!("/console/community/groups/{}", encode(&text(&g["id"])))) { (text(&g["name"])) } }
                            td { (fill(signed, g)) }
                            td.hide-narrow { (member_link(&text(&g["owner_member_id"]))) }
                            td.hide-narrow {
                                @for tag in g["tags"].as_array().into_iter().flatten() { span.tag { (text(tag)) } }
                            }
                            td.hide-narrow { (instant(&text(&g["created_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/community", "groups_cursor", cursor, list.next.as_deref()))
        }
    }
}

fn links_section(signed: &Signed, list: &ListPage, cursor: &str) -> Markup {
    html! {
        section.panel id="links" {
            h2 { (signed.t(CommunityMsg::Links)) }
            @if let Some(error) = &list.error { (notice(false, error)) }
            table {
                thead { tr {
                    th { (signed.t(CommunityMsg::GroupName)) } th { (signed.t(CommunityMsg::Code)) }
                    th { (signed.t(CommunityMsg::LinkGroups)) }
                } }
                tbody {
                    @for l in &list.rows {
                        @let code = text(&l["code"]);
                        tr {
                            td { a href=(format!("/console/community/links/{}", encode(&code))) { (text(&l["name"])) } }
                            td { code { (code) } }
                            td {
                                @for g in l["groups"].as_array().into_iter().flatten() {
                                    @let (members, capacity) = (int(&g["member_count"]), int(&g["capacity"]));
                                    span class=(if members >= capacity { "badge bad" } else { "badge good" }) {
                                        (text(&g["name"])) " " (members) "/" (capacity)
                                    }
                                    " "
                                }
                                @if l["all_full"].as_bool() == Some(true) {
                                    br; span.badge.bad { (signed.t(CommunityMsg::AllFull)) }
                                }
                            }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/community", "links_cursor", cursor, list.next.as_deref()))
        }
    }
}

fn rule_section(signed: &Signed, answer: &Answer, typed: Option<&RuleForm>) -> Markup {
    let rule = &answer.body;
    let form = typed.cloned().unwrap_or_else(|| RuleForm::from_rule(rule));
    let t = |m: CommunityMsg| signed.t(m);
    html! {
        section.panel id="checkin-rule" {
            h2 { (t(CommunityMsg::CheckinRule)) }
            @if !answer.ok() { (notice(false, &answer.message())) }
            @else {
                div.grid2 {
                    (view::facts(&[
                        (t(CommunityMsg::CycleDays), text(&rule["cycle_days"])),
                        (t(CommunityMsg::MakeupPerMonth), text(&rule["makeup_per_month"])),
                        (t(CommunityMsg::MakeupCost), text(&rule["makeup_cost_points"])),
                    ]))
                    table {
                        thead { tr { th.num { (t(CommunityMsg::Day)) } th { (t(CommunityMsg::Reward)) } } }
                        tbody {
                            @for d in rule["rewards"].as_array().into_iter().flatten() {
                                tr { td.num { (int(&d["day"])) } td { (reward_label(signed, &d["reward"])) } }
                            }
                        }
                    }
                }
            }
            @if signed.operator.role.may_change() {
                details open[typed.is_some()] {
                    summary { (signed.t(Msg::Save)) " · " (t(CommunityMsg::CheckinRule)) }
                    form.stack id="checkin-rule-form" method="post" action="/console/community/checkin-rule" {
                        (csrf(signed))
                        label { (t(CommunityMsg::CycleDays)) input type="number" name="cycle_days" min="1" max="31" required value=(form.cycle_days); }
                        label { (t(CommunityMsg::RewardsByDay))
                            textarea name="rewards" rows="7" { (form.rewards) }
                            small.muted { (t(CommunityMsg::RewardsHelp)) }
                        }
                        label { (t(CommunityMsg::MakeupPerMonth)) input type="number" name="makeup_per_month" min="0" max="31" required value=(form.makeup_per_month); }
                        label { (t(CommunityMsg::MakeupCost)) input type="number" name="makeup_cost_points" min="0" required value=(form.makeup_cost_points); }
                        button type="submit" { (signed.t(Msg::Save)) }
                    }
                }
            }
        }
    }
}

fn lotteries_section(
    signed: &Signed,
    list: &ListPage,
    params: &OverviewParams,
    typed: Option<&LotteryForm>,
) -> Markup {
    let base = format!("/console/community{}", params.filter());
    let t = |m: CommunityMsg| signed.t(m);
    html! {
        section.panel id="lotteries" {
            h2 { (t(CommunityMsg::Lotteries)) }
            @if let Some(error) = &list.error { (notice(false, error)) }
            form.filters method="get" action="/console/community" {
                label { (signed.t(Msg::Status))
                    select name="status" {
                        option value="" { (signed.t(Msg::Any)) }
                        @for status in ["scheduled", "open", "closed", "drawn"] {
                            option value=(status) selected[params.status == status] { (status_label(signed, status)) }
                        }
                    }
                }
                button.secondary type="submit" { (signed.t(Msg::Filter)) }
            }
            table id="lottery-list" {
                thead { tr {
                    th { (t(CommunityMsg::GroupName)) } th { (t(CommunityMsg::Mode)) } th { (signed.t(Msg::Status)) }
                    th.num { (t(CommunityMsg::Entries)) } th.hide-narrow { (t(CommunityMsg::ClosesAt)) }
                } }
                tbody {
                    @for l in &list.rows {
                        tr {
                            td { a href=(format!("/console/community/lotteries/{}", encode(&text(&l["id"])))) { (text(&l["name"])) } }
                            td { (mode_label(signed, &text(&l["mode"]))) }
                            td { span.badge { (status_label(signed, &text(&l["status"]))) } }
                            td.num { (int(&l["entry_count"])) }
                            td.hide-narrow { (instant(&text(&l["closes_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, &base, "lotteries_cursor", &params.lotteries_cursor, list.next.as_deref()))
            @if signed.operator.role.may_change() {
                (lottery_form(signed, typed))
            }
        }
    }
}

fn lottery_form(signed: &Signed, typed: Option<&LotteryForm>) -> Markup {
    let form = typed.cloned().unwrap_or_default();
    let t = |m: CommunityMsg| signed.t(m);
    html! {
        details open[typed.is_some()] {
            summary { (t(CommunityMsg::NewLottery)) }
            form.stack id="lottery-form" method="post" action="/console/community/lotteries" {
                (csrf(signed))
                label { (t(CommunityMsg::GroupName)) input type="text" name="name" required maxlength="100" value=(form.name); }
                label { (t(CommunityMsg::Mode))
                    select name="mode" {
                        option value="draw" selected[form.mode != "instant"] { (t(CommunityMsg::ModeDraw)) }
                        option value="instant" selected[form.mode == "instant"] { (t(CommunityMsg::ModeInstant)) }
                    }
                }
                label { (t(CommunityMsg::Winners)) input type="number" name="winners" min="1" max="1000" value=(form.winners);
                    small.muted { (t(CommunityMsg::WinnersHelp)) } }
                label { (t(CommunityMsg::EntryCost)) input type="number" name="entry_cost_points" min="0" value=(form.entry_cost_points); }
                label { (t(CommunityMsg::EntriesPerMember)) input type="number" name="entries_per_member" min="1" max="100" value=(form.entries_per_member); }
                label { (t(CommunityMsg::OpensAt)) input type="datetime-local" name="opens_at" value=(form.opens_at); }
                label { (t(CommunityMsg::ClosesAt)) input type="datetime-local" name="closes_at" value=(form.closes_at);
                    small.muted { (t(CommunityMsg::TimesHelp)) } }
                label { (t(CommunityMsg::Prizes))
                    textarea name="prizes" rows="4" { (form.prizes) }
                    small.muted { (t(CommunityMsg::PrizesHelp)) }
                }
                button type="submit" { (t(CommunityMsg::Create)) }
            }
        }
    }
}

/// `POST /console/community/checkin-rule`: `PUT /v1/checkin-rule`.
async fn save_rule(State(console): State<Console>, Change(posted): Change<RuleForm>) -> Response {
    let signed = &posted.signed;
    let refused = |message: String| Shown {
        notice: Some((false, message)),
        rule: Some(posted.form.clone()),
        lottery: None,
    };
    let body = match posted.form.body() {
        Ok(body) => body,
        Err(unreadable) => {
            let shown = refused(unreadable.message(signed.lang));
            return unprocessable(
                overview_page(&console, signed, &OverviewParams::default(), shown).await,
            );
        }
    };
    let answer = console
        .call(
            signed,
            Method::PUT,
            "/v1/checkin-rule",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        return Redirect::to("/console/community?saved=rule").into_response();
    }
    let shown = refused(answer.message());
    unprocessable(overview_page(&console, signed, &OverviewParams::default(), shown).await)
}

/// `POST /console/community/lotteries`: `POST /v1/lotteries`, then the new lottery's page.
async fn create_lottery(
    State(console): State<Console>,
    Change(posted): Change<LotteryForm>,
) -> Response {
    let signed = &posted.signed;
    let refused = |message: String| Shown {
        notice: Some((false, message)),
        rule: None,
        lottery: Some(posted.form.clone()),
    };
    let body = match posted.form.body(&signed.zone) {
        Ok(body) => body,
        Err(unreadable) => {
            let shown = refused(unreadable.message(signed.lang));
            return unprocessable(
                overview_page(&console, signed, &OverviewParams::default(), shown).await,
            );
        }
    };
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/lotteries",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!(
            "/console/community/lotteries/{}?created=1",
            encode(&id)
        ))
        .into_response();
    }
    let shown = refused(answer.message());
    unprocessable(overview_page(&console, signed, &OverviewParams::default(), shown).await)
}

// ---------------------------------------------------------------------------------------------
// A group

#[derive(Debug, Default, Deserialize)]
pub struct GroupParams {
    /// The members page's cursor.
    #[serde(default)]
    cursor: String,
}

/// `GET /console/community/groups/{id}`.
async fn group(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<GroupParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/groups/{}", encode(&id));
    let group = console.get(&signed, &base).await.found(&signed)?;
    let (stats_path, members_path) = (format!("{base}/stats"), format!("{base}/members"));
    let (stats, members) = tokio::join!(
        console.get(&signed, &stats_path),
        console.list(&signed, &members_path, &params.cursor),
    );
    let s = &stats.body;
    let t = |m: CommunityMsg| signed.t(m);
    let body = html! {
        p { a href="/console/community" { "← " (t(CommunityMsg::Title)) } }
        div.grid2 {
            section.panel {
                h2 { (t(CommunityMsg::Groups)) }
                dl.facts {
                    dt { "ID" } dd { (text(&group["id"])) }
                    dt { (t(CommunityMsg::Owner)) } dd { (member_link(&text(&group["owner_member_id"]))) }
                    dt { (t(CommunityMsg::Fill)) } dd { (fill(&signed, &group)) }
                    dt { (signed.t(Msg::Tags)) } dd {
                        @for tag in group["tags"].as_array().into_iter().flatten() { span.tag { (text(tag)) } }
                    }
                    dt { (signed.t(Msg::Created)) } dd { (instant(&text(&group["created_at"]), &signed.zone)) }
                }
            }
            section.panel id="group-stats" {
                h2 { (t(CommunityMsg::Stats)) }
                @if !stats.ok() { (notice(false, &stats.message())) }
                @else {
                    dl.facts {
                        dt { (t(CommunityMsg::Gmv)) } dd { (money(int(&s["gmv"]))) }
                        dt { (signed.t(Msg::PaidOrders)) } dd { (int(&s["paid_orders"])) }
                        dt { (t(CommunityMsg::JoinsLabel)) } dd { (int(&s["joins"])) " (" (text(&s["from"])) " – " (text(&s["to"])) ")" }
                        dt { (t(CommunityMsg::LeavesLabel)) } dd { (int(&s["leaves"])) }
                    }
                }
            }
        }
        (members_section(&signed, &text(&group["id"]), &members, &params.cursor))
        @if stats.ok() {
            section.panel {
                h2 { (t(CommunityMsg::JoinsLeaves)) }
                (view::chart(&movement_chart(&signed, s), false))
            }
            section.panel {
                h2 { (t(CommunityMsg::ByInviter)) }
                (inviters_table(&signed, s))
            }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Community,
        &text(&group["name"]),
        body,
    ))
}

/// The members in the group now, with who brought them and when they joined, paged.
fn members_section(signed: &Signed, group_id: &str, list: &ListPage, cursor: &str) -> Markup {
    let base = format!("/console/community/groups/{}", encode(group_id));
    html! {
        section.panel id="group-members" {
            h2 { (signed.t(Msg::Members)) }
            @if let Some(error) = &list.error { (notice(false, error)) }
            @else if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            @else {
                table {
                    thead { tr {
                        th { (signed.t(Msg::Members)) } th { (signed.t(CommunityMsg::Inviter)) } th { (signed.t(Msg::Joined)) }
                    } }
                    tbody {
                        @for stay in &list.rows {
                            tr {
                                td { (member_link(&text(&stay["member_id"]))) }
                                td { @if stay["inviter_member_id"].is_string() { (member_link(&text(&stay["inviter_member_id"]))) } }
                                td { (instant(&text(&stay["joined_at"]), &signed.zone)) }
                            }
                        }
                    }
                }
            }
            (pager(signed, &base, "cursor", cursor, list.next.as_deref()))
        }
    }
}

/// Joins and leaves per day as two bar series.
fn movement_chart(signed: &Signed, stats: &Value) -> Value {
    let days = stats["by_day"].as_array().cloned().unwrap_or_default();
    let dates: Vec<String> = days.iter().map(|d| text(&d["date"])).collect();
    let joins: Vec<i64> = days.iter().map(|d| int(&d["joins"])).collect();
    let leaves: Vec<i64> = days.iter().map(|d| int(&d["leaves"])).collect();
    let (joins_label, leaves_label) = (
        signed.t(CommunityMsg::JoinsLabel),
        signed.t(CommunityMsg::LeavesLabel),
    );
    json!({
        "tooltip": {"trigger": "axis"},
        "legend": {"data": [joins_label, leaves_label]},
        "grid": {"left": 40, "right": 20, "top": 30, "bottom": 28},
        "xAxis": {"type": "category", "data": dates},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {"name": joins_label, "type": "bar", "data": joins, "itemStyle": {"color": "#15803d"}},
            {"name": leaves_label, "type": "bar", "data": leaves, "itemStyle": {"color": "#b91c1c"}},
        ]
    })
}

fn inviters_table(signed: &Signed, stats: &Value) -> Markup {
    let rows = stats["joins_by_inviter"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr { th { (signed.t(CommunityMsg::Inviter)) } th.num { (signed.t(CommunityMsg::Brought)) } } }
                tbody {
                    @for r in &rows {
                        tr { td { (member_link(&text(&r["inviter_member_id"]))) } td.num { (int(&r["joins"])) } }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A join link

/// `GET /console/community/links/{code}`.
async fn link(
    State(console): State<Console>,
    signed: Signed,
    Path(code): Path<String>,
) -> Result<Response, Refusal> {
    let path = format!("/v1/group-links/{}", encode(&code));
    let link = console.get(&signed, &path).await.found(&signed)?;
    let groups = link["groups"].as_array().cloned().unwrap_or_default();
    let t = |m: CommunityMsg| signed.t(m);
    let body = html! {
        p { a href="/console/community" { "← " (t(CommunityMsg::Title)) } }
        @if link["all_full"].as_bool() == Some(true) { (notice(false, t(CommunityMsg::AllFull))) }
        section.panel {
            dl.facts {
                dt { (t(CommunityMsg::Code)) } dd { code { (text(&link["code"])) } }
                dt { "ID" } dd { (text(&link["id"])) }
                dt { (signed.t(Msg::Created)) } dd { (instant(&text(&link["created_at"]), &signed.zone)) }
            }
        }
        section.panel id="link-groups" {
            h2 { (t(CommunityMsg::LinkGroups)) }
            table {
                thead { tr { th.num { "#" } th { (t(CommunityMsg::GroupName)) } th { (t(CommunityMsg::Fill)) } th { (signed.t(Msg::Status)) } } }
                tbody {
                    @for (i, g) in groups.iter().enumerate() {
                        @let full = int(&g["member_count"]) >= int(&g["capacity"]);
                        tr {
                            td.num { (i + 1) }
                            td { a href=(format!("/console/community/groups/{}", encode(&text(&g["group_id"])))) { (text(&g["name"])) } }
                            td { (fill(&signed, g)) }
                            td {
                                @if full { span.badge.bad { (t(CommunityMsg::Full)) } }
                                @else { span.badge.good { (t(CommunityMsg::HasRoom)) } }
                            }
                        }
                    }
                }
            }
            p.muted { (t(CommunityMsg::JoinHistoryLater)) }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Community,
        &text(&link["name"]),
        body,
    ))
}

// ---------------------------------------------------------------------------------------------
// A lottery

#[derive(Debug, Default, Deserialize)]
pub struct LotteryParams {
    #[serde(default)]
    created: String,
    #[serde(default)]
    drawn: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/community/lotteries/{id}`.
async fn lottery(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<LotteryParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/lotteries/{}", encode(&id));
    let lottery = console.get(&signed, &base).await.found(&signed)?;
    // The proof exists once the seed is revealed; before, the page says when it will.
    let proof = if lottery["seed"].is_string() {
        Some(console.get(&signed, &format!("{base}/proof")).await)
    } else {
        None
    };
    let l = &lottery;
    let id = text(&l["id"]);
    let status = text(&l["status"]);
    let t = |m: CommunityMsg| signed.t(m);
    let body = html! {
        @if !params.created.is_empty() { (notice(true, t(CommunityMsg::LotteryCreated))) }
        @if !params.drawn.is_empty() { (notice(true, t(CommunityMsg::Drawn))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        p { a href="/console/community#lotteries" { "← " (t(CommunityMsg::Lotteries)) } }
        div.grid2 {
            section.panel {
                h2 { (t(CommunityMsg::Lottery)) }
                dl.facts {
                    dt { "ID" } dd { (id) }
                    dt { (t(CommunityMsg::Mode)) } dd { (mode_label(&signed, &text(&l["mode"]))) }
                    dt { (signed.t(Msg::Status)) } dd { span.badge { (status_label(&signed, &status)) } }
                    @if text(&l["mode"]) == "draw" {
                        dt { (t(CommunityMsg::Winners)) } dd { (int(&l["winners"])) }
                    }
                    dt { (t(CommunityMsg::Entries)) } dd id="entry-count" { (int(&l["entry_count"])) }
                    dt { (t(CommunityMsg::EntryCost)) } dd { (int(&l["entry_cost_points"])) }
                    dt { (t(CommunityMsg::EntriesPerMember)) } dd { (int(&l["entries_per_member"])) }
                    dt { (t(CommunityMsg::OpensAt)) } dd { (instant(&text(&l["opens_at"]), &signed.zone)) }
                    dt { (t(CommunityMsg::ClosesAt)) } dd { (instant(&text(&l["closes_at"]), &signed.zone)) }
                    dt { (t(CommunityMsg::Commitment)) } dd { code { (text(&l["commitment"])) } }
                    dt { (t(CommunityMsg::Seed)) } dd {
                        @if l["seed"].is_string() { code { (text(&l["seed"])) } }
                        @else { span.muted { (t(CommunityMsg::SeedHidden)) } }
                    }
                }
            }
            section.panel {
                h2 { (t(CommunityMsg::Prize)) }
                (prizes_table(&signed, l))
            }
        }
        @if status != "drawn" && signed.operator.role.may_change() {
            section.panel {
                form.inline method="post" action=(format!("/console/community/lotteries/{}/draw", encode(&id))) {
                    (csrf(&signed))
                    label { input type="checkbox" name="close_early" value="true"; " " (t(CommunityMsg::CloseEarly)) }
                    button id="lottery-draw" type="submit" {
                        @if text(&l["mode"]) == "instant" { (t(CommunityMsg::CloseInstant)) } @else { (t(CommunityMsg::Draw)) }
                    }
                }
            }
        }
        @if let Some(winners) = l["drawn_winners"].as_array() {
            section.panel id="winners" {
                h2 { (t(CommunityMsg::DrawnWinners)) }
                @if winners.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
                ol { @for w in winners { li { (member_link(&text(w))) } } }
            }
        }
        section.panel id="proof" {
            h2 { (t(CommunityMsg::Proof)) }
            @match &proof {
                Some(answer) if answer.ok() => {
                    p { a id="proof-download" href=(format!("/console/community/lotteries/{}/proof", encode(&id))) download { (t(CommunityMsg::DownloadProof)) } }
                    p { (t(CommunityMsg::VerifyHow)) }
                    pre.secret { "shequn lottery verify " (proof_filename(&id)) }
                    (view::json_block(&answer.body))
                }
                Some(answer) => { (notice(false, &answer.message())) }
                None => { p.muted { (t(CommunityMsg::ProofLater)) } }
            }
        }
    };
    Ok(view::page(&signed, Nav::Community, &text(&l["name"]), body))
}

fn prizes_table(signed: &Signed, lottery: &Value) -> Markup {
    let prizes = lottery["prizes"].as_array().cloned().unwrap_or_default();
    let instant_mode = text(&lottery["mode"]) == "instant";
    let t = |m: CommunityMsg| signed.t(m);
    html! {
        @if prizes.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (t(CommunityMsg::Prize)) } th { (t(CommunityMsg::Reward)) }
                    th.num { (t(CommunityMsg::Remaining)) } th.num { (t(CommunityMsg::Stock)) }
                    @if instant_mode { th.num { (t(CommunityMsg::Weight)) } }
                } }
                tbody {
                    @for p in &prizes {
                        tr {
                            td { (text(&p["name"])) }
                            td { (reward_label(signed, &p["reward"])) }
                            td.num { (text(&p["remaining"])) }
                            td.num { (text(&p["stock"])) }
                            @if instant_mode { td.num { (int(&p["weight"])) } }
                        }
                    }
                }
            }
        }
    }
}

/// The name of a lottery's proof file; ids hold only letters, digits and `_`, and anything
/// else is left out so the name is safe in a header.
fn proof_filename(id: &str) -> String {
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("lottery-{id}-proof.json")
}

#[derive(Debug, Default, Deserialize)]
pub struct DrawForm {
    /// Checked: draw before `closes_at` (`?close_early=true`).
    #[serde(default)]
    close_early: String,
}

/// `POST /console/community/lotteries/{id}/draw`: `POST /v1/lotteries/{id}/draw`, then the
/// lottery's page with the result or the API's refusal (an early draw without "close early"
/// is refused with `lottery_still_open`).
async fn draw(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<DrawForm>,
) -> Response {
    let signed = &posted.signed;
    let mut path = format!("/v1/lotteries/{}/draw", encode(&id));
    if !posted.form.close_early.is_empty() {
        path.push_str("?close_early=true");
    }
    let answer = console
        .call(
            signed,
            Method::POST,
            &path,
            None,
            posted.form_key.as_deref(),
        )
        .await;
    if answer.status == StatusCode::NOT_FOUND {
        return view::error_page(StatusCode::NOT_FOUND, signed.lang, signed.t(Msg::NotFound));
    }
    let query = if answer.ok() {
        "drawn=1".to_owned()
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!(
        "/console/community/lotteries/{}?{query}",
        encode(&id)
    ))
    .into_response()
}

/// `GET /console/community/lotteries/{id}/proof`: the proof `/v1` gives, as a file.
async fn proof_file(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let path = format!("/v1/lotteries/{}/proof", encode(&id));
    let proof = console.get(&signed, &path).await.found(&signed)?;
    let filename = proof_filename(&text(&proof["lottery_id"]));
    let json = serde_json::to_string_pretty(&proof).map_err(|e| Refusal::Failed(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        json,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_community_message_has_both_languages() {
        crate::console::i18n::check_catalogue(CommunityMsg::ALL);
    }

    #[test]
    fn rewards_read_back_what_they_write() {
        for reward in [
            json!({"points": 30}),
            json!({"coupon_template_id": "cpt_0123"}),
            json!({"wallet_bonus": 150}),
        ] {
            assert_eq!(parse_reward(&reward_words(&reward)), Some(Some(reward)));
        }
        assert_eq!(parse_reward("none"), Some(None));
        assert_eq!(parse_reward(""), Some(None));
        for bad in ["points", "points x", "wallet -1", "gold 5", "points 5 6"] {
            assert_eq!(parse_reward(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_rule_form_round_trips_a_rule_and_names_a_bad_line() {
        let rule = json!({
            "cycle_days": 7, "makeup_per_month": 2, "makeup_cost_points": 20,
            "rewards": [{"day": 1, "reward": {"points": 5}}, {"day": 7, "reward": {"wallet_bonus": 150}}],
        });
        assert_eq!(RuleForm::from_rule(&rule).body(), Ok(rule));
        let form = RuleForm {
            cycle_days: "7".into(),
            rewards: "1 points 5\n\n3 pts 5".into(),
            makeup_per_month: "2".into(),
            makeup_cost_points: "20".into(),
        };
        assert_eq!(form.body(), Err(Unreadable::Line(3, "3 pts 5".into())));
        let form = RuleForm {
            cycle_days: "a week".into(),
            rewards: "7 coupon cpt_0123".into(),
            ..form
        };
        assert_eq!(form.body(), Err(Unreadable::Whole(CommunityMsg::CycleDays)));
    }

    #[test]
    fn lottery_form_reads_prizes_and_local_times() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let form = LotteryForm {
            name: " 周年抽奖 ".into(),
            opens_at: "2026-12-08T20:00".into(),
            closes_at: "2026-12-09".into(),
            prizes: "一等奖 | points 100 | 1\n谢谢参与 | none | | 5".into(),
            ..LotteryForm::default()
        };
        let body = form.body(&zone).unwrap();
        assert_eq!(body["name"], "周年抽奖");
        assert_eq!(body["mode"], "draw");
        assert_eq!(body["winners"], 1);
        assert_eq!(body["opens_at"], "2026-12-08T12:00:00Z");
        assert_eq!(body["closes_at"], "2026-12-08T16:00:00Z");
        assert_eq!(
            body["prizes"],
            json!([
                {"name": "一等奖", "reward": {"points": 100}, "stock": 1},
                {"name": "谢谢参与", "reward": null, "weight": 5},
            ])
        );
        let instant = LotteryForm {
            mode: "instant".into(),
            ..LotteryForm::default()
        };
        assert!(instant.body(&zone).unwrap().get("winners").is_none());
        let bad_time = LotteryForm {
            closes_at: "next week".into(),
            ..LotteryForm::default()
        };
        assert_eq!(
            bad_time.body(&zone),
            Err(Unreadable::Time(CommunityMsg::ClosesAt))
        );
        let bad_prize = LotteryForm {
            prizes: "一等奖 | points 100 | one".into(),
            ..LotteryForm::default()
        };
        assert_eq!(
            bad_prize.body(&zone),
            Err(Unreadable::Line(1, "一等奖 | points 100 | one".into()))
        );
    }

    #[test]
    fn proof_files_are_named_for_their_lottery() {
        assert_eq!(
            proof_filename("lot_0123abc"),
            "lottery-lot_0123abc-proof.json"
        );
        assert_eq!(proof_filename("lot_\"x\r\n"), "lottery-lot_x-proof.json");
    }
}
