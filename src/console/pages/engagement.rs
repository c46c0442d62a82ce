//! `/console/engagement` (触达): the automations with what each did (entered, messages,
//! conversions), a form to create one (trigger, filter and actions typed as JSON, as in
//! `docs/engagement.md`); the broadcasts with their status, a form to schedule one with a
//! dry-run button (`POST /v1/broadcasts/dry-run`: who it would reach and what the gate would do,
//! nothing saved). `/console/engagement/automations/{id}`: one automation's definition and
//! stats, pause or resume, delete. `/console/engagement/broadcasts/{id}`: one broadcast's
//! definition and stats, cancel while it is scheduled.
//!
//! JSON fields are sent as typed: the page only checks that they are JSON; the API says what
//! is wrong and where (`actions[1].send_message.template: …`). A refused form is shown again
//! (422) with what was typed; nothing is saved.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::console::call::ListPage;
use crate::console::i18n::{Message as _, Msg};
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{
    self, csrf, encode, instant, int, money, notice, pager, text, unprocessable, Nav,
};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The engagement pages' own messages.
    pub enum EngagementMsg {
        Automations => "自动化", "Automations";
        Automation => "自动化信息", "Automation";
        NewAutomation => "新建自动化", "New automation";
        Broadcasts => "群发", "Broadcasts";
        Broadcast => "群发信息", "Broadcast";
        NewBroadcast => "新建群发", "New broadcast";
        Name => "名称", "Name";
        Trigger => "触发事件", "Trigger";
        Filter => "筛选规则（JSON，可留空）", "Filter (JSON, may be empty)";
        DelaySecs => "延迟（秒）", "Delay (seconds)";
        Actions => "动作（JSON）", "Actions (JSON)";
        ActionsHelp => "例如 [{\"grant_coupon\": {\"template_id\": \"cpt_…\"}}, {\"grant_points\": {\"points\": 100}}, {\"add_tags\": [\"新人\"]}, {\"send_message\": {\"channel\": \"wecom\", \"category\": \"marketing\", \"template\": \"welcome\"}}]", "E.g. [{\"grant_coupon\": {\"template_id\": \"cpt_…\"}}, {\"grant_points\": {\"points\": 100}}, {\"add_tags\": [\"new\"]}, {\"send_message\": {\"channel\": \"wecom\", \"category\": \"marketing\", \"template\": \"welcome\"}}]";
        Entered => "进入", "Entered";
        Completed => "已执行", "Completed";
        FilteredOut => "被筛除", "Filtered out";
        Skipped => "跳过", "Skipped";
        Waiting => "等待中", "Waiting";
        MessagesSent => "已发消息", "Messages";
        NoConsent => "无营销授权", "No consent";
        FrequencyCap => "超频次上限", "Frequency cap";
        Deferred => "免打扰延后", "Deferred (quiet hours)";
        Conversions => "7 日内转化订单", "Orders within 7 days";
        Revenue => "转化金额", "Revenue";
        Active => "启用", "Active";
        Paused => "已暂停", "Paused";
        Pause => "暂停", "Pause";
        Resume => "恢复", "Resume";
        Delete => "删除自动化", "Delete automation";
        DeleteConfirm => "删除后不再触发，等待中的步骤也不会执行，确定吗？", "It will no longer trigger and its waiting steps will do nothing. Delete it?";
        AutomationCreated => "自动化已创建", "The automation is created";
        AutomationDeleted => "自动化已删除", "The automation is deleted";
        Audience => "受众", "Audience";
        SegmentId => "已保存人群 ID（seg_…）", "Saved segment id (seg_…)";
        Rule => "或规则（JSON）", "Or a rule (JSON)";
        SendAt => "发送时间（留空为立即）", "Send at (empty: now)";
        SendTime => "发送时间", "Send time";
        DryRun => "试算", "Dry run";
        DryRunTitle => "试算结果（未保存）", "Dry run (nothing saved)";
        Reach => "覆盖会员", "Members reached";
        WouldSend => "将发送消息", "Messages sent";
        Points => "积分成本", "Points";
        Coupons => "优惠券", "Coupons";
        Schedule => "安排群发", "Schedule";
        BroadcastCreated => "群发已安排", "The broadcast is scheduled";
        Cancel => "取消群发", "Cancel broadcast";
        CancelConfirm => "取消后不会发送，确定吗？", "It will not be sent. Cancel it?";
        Cancelled => "群发已取消", "The broadcast is cancelled";
        AudienceCount => "发送人数", "Sent to";
        SentAt => "发送于", "Sent at";
        BadJson => "{0} 不是有效的 JSON：{1}", "{0} is not valid JSON: {1}";
        BadTime => "发送时间无效", "The send time is not valid";
        Definition => "定义", "Definition";
    }
}

/// Triggers offered in the form (any event naming a member is accepted by the API).
const TRIGGERS: &[&str] = &[
    "member.created",
    "order.paid",
    "member.tagged",
    "member.tier_changed",
    "member.lifecycle_changed",
    "member.repurchase_due",
    "points.expiring",
    "member.birthday",
    "coupon.claimed",
    "checkin.created",
];

const EXAMPLE_ACTIONS: &str = "[{\"send_message\": {\"channel\": \"wecom\", \"category\": \"marketing\", \"template\": \"welcome\"}}]";

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/engagement", get(list))
        .route(
            "/console/engagement/automations",
            get(to_list).post(create_automation),
        )
        .route("/console/engagement/automations/{id}", get(automation))
        .route(
            "/console/engagement/automations/{id}/status",
            post(automation_status),
        )
        .route(
            "/console/engagement/automations/{id}/delete",
            post(delete_automation),
        )
        .route(
            "/console/engagement/broadcasts",
            get(to_list).post(create_broadcast),
        )
        .route(
            "/console/engagement/broadcasts/dry-run",
            get(to_list).post(dry_run),
        )
        .route("/console/engagement/broadcasts/{id}", get(broadcast))
        .route(
            "/console/engagement/broadcasts/{id}/cancel",
            post(cancel_broadcast),
        )
}

async fn to_list() -> Redirect {
    Redirect::to("/console/engagement")
}

/// A JSON field as typed; `None` when empty and `optional`.
fn json_field(
    signed: &Signed,
    label: EngagementMsg,
    typed: &str,
    optional: bool,
) -> Result<Option<Value>, String> {
    let typed = typed.trim();
    if typed.is_empty() && optional {
        return Ok(None);
    }
    serde_json::from_str(typed).map(Some).map_err(|error| {
        EngagementMsg::BadJson.fill(signed.lang, &[signed.t(label), &error.to_string()])
    })
}

// ---------------------------------------------------------------------------------------------
// Forms

#[derive(Debug, Clone, Deserialize)]
pub struct AutomationForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    delay_secs: String,
    #[serde(default)]
    actions: String,
}

impl Default for AutomationForm {
    fn default() -> Self {
        AutomationForm {
            name: String::new(),
            trigger: "member.created".into(),
            filter: String::new(),
            delay_secs: "0".into(),
            actions: EXAMPLE_ACTIONS.into(),
        }
    }
}

impl AutomationForm {
    fn body(&self, signed: &Signed) -> Result<Value, String> {
        let filter = json_field(signed, EngagementMsg::Filter, &self.filter, true)?;
        let actions = json_field(signed, EngagementMsg::Actions, &self.actions, false)?;
        let delay: Value = match self.delay_secs.trim() {
            "" => json!(0),
            text => text
                .parse::<i64>()
                .map(|d| json!(d))
                .unwrap_or_else(|_| json!(text)),
        };
        Ok(json!({
            "name": self.name.trim(),
            "trigger": {"event": self.trigger.trim()},
            "filter": filter,
            "delay_secs": delay,
            "actions": actions,
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct BroadcastForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    segment_id: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    actions: String,
    /// `datetime-local`: tenant-local `YYYY-MM-DDTHH:MM`.
    #[serde(default)]
    send_at: String,
}

impl Default for BroadcastForm {
    fn default() -> Self {
        BroadcastForm {
            name: String::new(),
            segment_id: String::new(),
            rule: String::new(),
            actions: EXAMPLE_ACTIONS.into(),
            send_at: String::new(),
        }
    }
}

impl BroadcastForm {
    fn body(&self, signed: &Signed) -> Result<Value, String> {
        let rule = json_field(signed, EngagementMsg::Rule, &self.rule, true)?;
        let actions = json_field(signed, EngagementMsg::Actions, &self.actions, false)?;
        let mut audience = Map::new();
        if !self.segment_id.trim().is_empty() {
            audience.insert("segment_id".into(), json!(self.segment_id.trim()));
        }
        if let Some(rule) = rule {
            audience.insert("rule".into(), rule);
        }
        let mut body = json!({"name": self.name.trim(), "audience": audience, "actions": actions});
        let send_at = self.send_at.trim();
        if !send_at.is_empty() {
            let at = send_at
                .parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|local| local.to_zoned(signed.zone.clone()).ok())
                .ok_or_else(|| signed.t(EngagementMsg::BadTime).to_owned())?;
            body["send_at"] = json!(at.timestamp().to_string());
        }
        Ok(body)
    }
}

// ---------------------------------------------------------------------------------------------
// The list page

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    automations: String,
    #[serde(default)]
    broadcasts: String,
    /// `automation` or `broadcast` after one was deleted or cancelled.
    #[serde(default)]
    done: String,
}

#[derive(Default)]
struct Typed {
    automation: AutomationForm,
    broadcast: BroadcastForm,
    /// Which form was refused, and why.
    refused: Option<(&'static str, String)>,
    dry_run: Option<Value>,
}

async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, Refusal> {
    Ok(engagement_page(&console, &signed, &params, &Typed::default()).await)
}

async fn engagement_page(
    console: &Console,
    signed: &Signed,
    params: &ListParams,
    typed: &Typed,
) -> Response {
    let automations = console
        .list(signed, "/v1/automations", &params.automations)
        .await;
    let mut stats = Vec::with_capacity(automations.rows.len());
    for a in &automations.rows {
        let path = format!("/v1/automations/{}/stats", encode(&text(&a["id"])));
        stats.push(console.get(signed, &path).await.body);
    }
    let broadcasts = console
        .list(signed, "/v1/broadcasts", &params.broadcasts)
        .await;
    let t = |m: EngagementMsg| signed.t(m);
    let may_change = signed.operator.role.may_change();
    let body = html! {
        @if params.done == "automation" { (notice(true, t(EngagementMsg::AutomationDeleted))) }
        @if params.done == "broadcast" { (notice(true, t(EngagementMsg::Cancelled))) }
        @if let Some((_, error)) = &typed.refused { (notice(false, error)) }
        h2 { (t(EngagementMsg::Automations)) }
        @if let Some(error) = &automations.error { (notice(false, error)) }
        @if may_change { (automation_form(signed, typed)) }
        (automations_table(signed, &automations, &stats, params))
        h2 { (t(EngagementMsg::Broadcasts)) }
        @if let Some(error) = &broadcasts.error { (notice(false, error)) }
        @if may_change { (broadcast_form(signed, typed)) }
        (broadcasts_table(signed, &broadcasts, params))
    };
    view::page(signed, Nav::Engagement, signed.t(Msg::Engagement), body)
}

fn status_label(signed: &Signed, status: &str) -> String {
    match status {
        "active" => signed.t(EngagementMsg::Active).to_owned(),
        "paused" => signed.t(EngagementMsg::Paused).to_owned(),
        other => other.to_owned(),
    }
}

/// The list page's address keeping the other list's page.
fn keeping(param: &str, cursor: &str) -> String {
    if cursor.is_empty() {
        "/console/engagement".to_owned()
    } else {
        format!("/console/engagement?{param}={}", encode(cursor))
    }
}

fn automations_table(
    signed: &Signed,
    list: &ListPage,
    stats: &[Value],
    params: &ListParams,
) -> Markup {
    let t = |m: EngagementMsg| signed.t(m);
    let base = keeping("broadcasts", &params.broadcasts);
    html! {
        section.panel {
            table id="automations" {
                thead { tr {
                    th { (t(EngagementMsg::Name)) } th { (t(EngagementMsg::Trigger)) }
                    th { (signed.t(Msg::Status)) } th.num { (t(EngagementMsg::Entered)) }
                    th.num { (t(EngagementMsg::MessagesSent)) } th.num.hide-narrow { (t(EngagementMsg::Conversions)) }
                } }
                tbody {
                    @for (a, s) in list.rows.iter().zip(stats) {
                        @let id = text(&a["id"]);
                        tr data-automation-id=(id) {
                            td { a href=(format!("/console/engagement/automations/{}", encode(&id))) { (text(&a["name"])) } }
                            td { code { (text(&a["trigger"]["event"])) } }
                            td { (status_label(signed, &text(&a["status"]))) }
                            td.num { (int(&s["entered"])) }
                            td.num { (int(&s["messages"])) }
                            td.num.hide-narrow { (int(&s["conversions"])) }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, &base, "automations", &params.automations, list.next.as_deref()))
        }
    }
}

fn broadcasts_table(signed: &Signed, list: &ListPage, params: &ListParams) -> Markup {
    let t = |m: EngagementMsg| signed.t(m);
    let base = keeping("automations", &params.automations);
    html! {
        section.panel {
            table id="broadcasts" {
                thead { tr {
                    th { (t(EngagementMsg::Name)) } th { (signed.t(Msg::Status)) }
                    th { (t(EngagementMsg::SendTime)) } th.num { (t(EngagementMsg::AudienceCount)) }
                } }
                tbody {
                    @for b in &list.rows {
                        @let id = text(&b["id"]);
                        tr data-broadcast-id=(id) {
                            td { a href=(format!("/console/engagement/broadcasts/{}", encode(&id))) { (text(&b["name"])) } }
                            td { (text(&b["status"])) }
                            td { (instant(&text(&b["send_at"]), &signed.zone)) }
                            td.num { @if b["audience_count"].is_null() { "—" } @else { (int(&b["audience_count"])) } }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, &base, "broadcasts", &params.broadcasts, list.next.as_deref()))
        }
    }
}

fn automation_form(signed: &Signed, typed: &Typed) -> Markup {
    let t = |m: EngagementMsg| signed.t(m);
    let f = &typed.automation;
    let open = matches!(typed.refused, Some(("automation", _)));
    html! {
        details.panel open[open] {
            summary { (t(EngagementMsg::NewAutomation)) }
            form.stack id="automation-form" method="post" action="/console/engagement/automations" {
                (csrf(signed))
                label { (t(EngagementMsg::Name)) input type="text" name="name" required maxlength="100" value=(f.name); }
                label { (t(EngagementMsg::Trigger))
                    select name="trigger" {
                        @for trigger in TRIGGERS {
                            option value=(trigger) selected[f.trigger == *trigger] { (trigger) }
                        }
                    }
                }
                label { (t(EngagementMsg::Filter))
                    textarea name="filter" rows="2" spellcheck="false" placeholder="{\"tag\": \"vip\"}" { (f.filter) }
                }
                label { (t(EngagementMsg::DelaySecs)) input type="number" name="delay_secs" min="0" max="7776000" value=(f.delay_secs); }
                label { (t(EngagementMsg::Actions))
                    textarea name="actions" rows="4" spellcheck="false" required { (f.actions) }
                    small.muted { (t(EngagementMsg::ActionsHelp)) }
                }
                div { button type="submit" { (signed.t(Msg::Save)) } }
            }
        }
    }
}

fn broadcast_form(signed: &Signed, typed: &Typed) -> Markup {
    let t = |m: EngagementMsg| signed.t(m);
    let f = &typed.broadcast;
    let open = matches!(typed.refused, Some(("broadcast", _))) || typed.dry_run.is_some();
    html! {
        details.panel open[open] {
            summary { (t(EngagementMsg::NewBroadcast)) }
            form.stack id="broadcast-form" method="post" action="/console/engagement/broadcasts" {
                (csrf(signed))
                label { (t(EngagementMsg::Name)) input type="text" name="name" required maxlength="100" value=(f.name); }
                label { (t(EngagementMsg::SegmentId)) input type="text" name="segment_id" value=(f.segment_id); }
                label { (t(EngagementMsg::Rule))
                    textarea name="rule" rows="2" spellcheck="false" placeholder="{\"tag\": \"vip\"}" { (f.rule) }
                }
                label { (t(EngagementMsg::Actions))
                    textarea name="actions" rows="4" spellcheck="false" required { (f.actions) }
                    small.muted { (t(EngagementMsg::ActionsHelp)) }
                }
                label { (t(EngagementMsg::SendAt)) input type="datetime-local" name="send_at" value=(f.send_at); }
                div {
                    button.secondary type="submit" formaction="/console/engagement/broadcasts/dry-run" formnovalidate { (t(EngagementMsg::DryRun)) }
                    " "
                    button type="submit" { (t(EngagementMsg::Schedule)) }
                }
            }
            @if let Some(dry) = &typed.dry_run { (dry_run_panel(signed, dry)) }
        }
    }
}

fn dry_run_panel(signed: &Signed, dry: &Value) -> Markup {
    let t = |m: EngagementMsg| signed.t(m);
    html! {
        section id="dry-run" data-audience=(int(&dry["audience"])) {
            h2 { (t(EngagementMsg::DryRunTitle)) }
            dl.facts {
                dt { (t(EngagementMsg::Reach)) } dd { strong { (int(&dry["audience"])) } }
                dt { (t(EngagementMsg::WouldSend)) } dd { (int(&dry["would_send"])) }
                dt { (t(EngagementMsg::NoConsent)) } dd { (int(&dry["suppressed"]["no_consent"])) }
                dt { (t(EngagementMsg::FrequencyCap)) } dd { (int(&dry["suppressed"]["frequency_cap"])) }
                dt { (t(EngagementMsg::Deferred)) } dd { (int(&dry["deferred_quiet_hours"])) }
                dt { (t(EngagementMsg::Points)) } dd { (int(&dry["cost"]["points"])) }
                dt { (t(EngagementMsg::Coupons)) } dd { (int(&dry["cost"]["coupons"])) }
            }
        }
    }
}

/// The list page again with a refused form as typed (422).
async fn refused_page(console: &Console, signed: &Signed, typed: Typed) -> Response {
    unprocessable(engagement_page(console, signed, &ListParams::default(), &typed).await)
}

/// Send a form's body to `POST /v1/{kind}s`: the new one's page, or the list page with the
/// form as typed and the reason (422).
async fn create(
    console: &Console,
    signed: &Signed,
    kind: &'static str,
    body: Result<Value, String>,
    form_key: Option<&str>,
    refuse: impl Fn(String) -> Typed,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(message) => return refused_page(console, signed, refuse(message)).await,
    };
    let answer = console
        .call(
            signed,
            Method::POST,
            &format!("/v1/{kind}s"),
            Some(&body),
            form_key,
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!(
            "/console/engagement/{kind}s/{}?created=1",
            encode(&id)
        ))
        .into_response();
    }
    refused_page(console, signed, refuse(answer.message())).await
}

async fn create_automation(
    State(console): State<Console>,
    Change(posted): Change<AutomationForm>,
) -> Response {
    let signed = &posted.signed;
    let refuse = |message: String| Typed {
        automation: posted.form.clone(),
        refused: Some(("automation", message)),
        ..Typed::default()
    };
    let body = posted.form.body(signed);
    create(
        &console,
        signed,
        "automation",
        body,
        posted.form_key.as_deref(),
        refuse,
    )
    .await
}

async fn create_broadcast(
    State(console): State<Console>,
    Change(posted): Change<BroadcastForm>,
) -> Response {
    let signed = &posted.signed;
    let body = posted.form.body(signed);
    create(
        &console,
        signed,
        "broadcast",
        body,
        posted.form_key.as_deref(),
        |message| refused_broadcast(&posted.form, message),
    )
    .await
}

fn refused_broadcast(form: &BroadcastForm, message: String) -> Typed {
    Typed {
        broadcast: form.clone(),
        refused: Some(("broadcast", message)),
        ..Typed::default()
    }
}

/// `POST /console/engagement/broadcasts/dry-run`: the list page with the answer and the form
/// as typed; nothing is saved.
async fn dry_run(
    State(console): State<Console>,
    Change(posted): Change<BroadcastForm>,
) -> Response {
    let signed = &posted.signed;
    let refuse = |message: String| refused_broadcast(&posted.form, message);
    let body = match posted.form.body(signed) {
        Ok(body) => body,
        Err(message) => return refused_page(&console, signed, refuse(message)).await,
    };
    // A dry run changes nothing: it needs no one-time key.
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/broadcasts/dry-run",
            Some(&body),
            None,
        )
        .await;
    if !answer.ok() {
        return refused_page(&console, signed, refuse(answer.message())).await;
    }
    let typed = Typed {
        broadcast: posted.form.clone(),
        dry_run: Some(answer.body),
        ..Typed::default()
    };
    engagement_page(&console, signed, &ListParams::default(), &typed).await
}

// ---------------------------------------------------------------------------------------------
// One automation, one broadcast

#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    #[serde(default)]
    created: String,
    #[serde(default)]
    error: String,
}

fn stats_facts(signed: &Signed, s: &Value) -> Markup {
    let t = |m: EngagementMsg| signed.t(m);
    html! {
        dl.facts id="stats" {
            dt { (t(EngagementMsg::Entered)) } dd { strong { (int(&s["entered"])) } }
            dt { (t(EngagementMsg::Completed)) } dd { (int(&s["completed"])) }
            dt { (t(EngagementMsg::FilteredOut)) } dd { (int(&s["filtered_out"])) }
            dt { (t(EngagementMsg::Skipped)) } dd { (int(&s["skipped"])) }
            dt { (t(EngagementMsg::Waiting)) } dd { (int(&s["waiting"])) }
            dt { (t(EngagementMsg::MessagesSent)) } dd { (int(&s["messages"])) }
            dt { (t(EngagementMsg::NoConsent)) } dd { (int(&s["suppressed"]["no_consent"])) }
            dt { (t(EngagementMsg::FrequencyCap)) } dd { (int(&s["suppressed"]["frequency_cap"])) }
            dt { (t(EngagementMsg::Deferred)) } dd { (int(&s["deferred_quiet_hours"])) }
            dt { (t(EngagementMsg::Conversions)) } dd { (int(&s["conversions"])) }
            dt { (t(EngagementMsg::Revenue)) } dd { (money(int(&s["revenue"]))) }
        }
    }
}

async fn automation(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/automations/{}", encode(&id));
    let a = console.get(&signed, &base).await.found(&signed)?;
    let stats = console.get(&signed, &format!("{base}/stats")).await.body;
    let id = text(&a["id"]);
    let t = |m: EngagementMsg| signed.t(m);
    let paused = text(&a["status"]) == "paused";
    let page_base = format!("/console/engagement/automations/{}", encode(&id));
    let body = html! {
        @if params.created == "1" { (notice(true, t(EngagementMsg::AutomationCreated))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        p { a href="/console/engagement" { "← " (signed.t(Msg::Engagement)) } }
        div.grid2 {
            section.panel {
                h2 { (t(EngagementMsg::Automation)) }
                dl.facts {
                    dt { "ID" } dd { (id) }
                    dt { (t(EngagementMsg::Trigger)) } dd { code { (text(&a["trigger"]["event"])) } }
                    dt { (signed.t(Msg::Status)) } dd id="automation-status" { (status_label(&signed, &text(&a["status"]))) }
                    dt { (t(EngagementMsg::DelaySecs)) } dd { (int(&a["delay_secs"])) }
                    dt { (signed.t(Msg::Created)) } dd { (instant(&text(&a["created_at"]), &signed.zone)) }
                }
                h2 { (t(EngagementMsg::Definition)) }
                (view::json_block(&json!({"filter": a["filter"], "actions": a["actions"]})))
                @if signed.operator.role.may_change() {
                    form.inline method="post" action=(format!("{page_base}/status")) {
                        (csrf(&signed))
                        input type="hidden" name="status" value=(if paused { "active" } else { "paused" });
                        button.secondary type="submit" { (if paused { t(EngagementMsg::Resume) } else { t(EngagementMsg::Pause) }) }
                    }
                    " "
                    form.inline method="post" action=(format!("{page_base}/delete")) data-confirm=(t(EngagementMsg::DeleteConfirm)) {
                        (csrf(&signed))
                        button.danger type="submit" { (t(EngagementMsg::Delete)) }
                    }
                }
            }
            section.panel { h2 { (signed.t(Msg::Status)) } (stats_facts(&signed, &stats)) }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Engagement,
        &text(&a["name"]),
        body,
    ))
}

/// Where a one-time action on `page` leads: the page again, or 404, or the page with the error.
fn after_action(
    signed: &Signed,
    page: &str,
    answer: &crate::console::call::Answer,
    done: &str,
) -> Response {
    if answer.ok() {
        return Redirect::to(done).into_response();
    }
    if answer.status == StatusCode::NOT_FOUND {
        return view::error_page(StatusCode::NOT_FOUND, signed.lang, signed.t(Msg::NotFound));
    }
    Redirect::to(&format!("{page}?error={}", encode(&answer.message()))).into_response()
}

async fn automation_status(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<Map<String, Value>>,
) -> Response {
    let signed = &posted.signed;
    let status = text(posted.form.get("status").unwrap_or(&Value::Null));
    let page = format!("/console/engagement/automations/{}", encode(&id));
    let answer = console
        .call(
            signed,
            Method::PATCH,
            &format!("/v1/automations/{}", encode(&id)),
            Some(&json!({ "status": status })),
            posted.form_key.as_deref(),
        )
        .await;
    after_action(signed, &page, &answer, &page)
}

async fn delete_automation(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<Map<String, Value>>,
) -> Response {
    let signed = &posted.signed;
    let page = format!("/console/engagement/automations/{}", encode(&id));
    let answer = console
        .call(
            signed,
            Method::DELETE,
            &format!("/v1/automations/{}", encode(&id)),
            None,
            posted.form_key.as_deref(),
        )
        .await;
    after_action(
        signed,
        &page,
        &answer,
        "/console/engagement?done=automation",
    )
}

async fn broadcast(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/broadcasts/{}", encode(&id));
    let b = console.get(&signed, &base).await.found(&signed)?;
    let stats = console.get(&signed, &format!("{base}/stats")).await.body;
    let id = text(&b["id"]);
    let t = |m: EngagementMsg| signed.t(m);
    let body = html! {
        @if params.created == "1" { (notice(true, t(EngagementMsg::BroadcastCreated))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        p { a href="/console/engagement" { "← " (signed.t(Msg::Engagement)) } }
        div.grid2 {
            section.panel {
                h2 { (t(EngagementMsg::Broadcast)) }
                dl.facts {
                    dt { "ID" } dd { (id) }
                    dt { (signed.t(Msg::Status)) } dd id="broadcast-status" { (text(&b["status"])) }
                    dt { (t(EngagementMsg::SendTime)) } dd { (instant(&text(&b["send_at"]), &signed.zone)) }
                    dt { (t(EngagementMsg::AudienceCount)) } dd { @if b["audience_count"].is_null() { "—" } @else { (int(&b["audience_count"])) } }
                    dt { (t(EngagementMsg::SentAt)) } dd { (instant(&text(&b["sent_at"]), &signed.zone)) }
                }
                h2 { (t(EngagementMsg::Definition)) }
                (view::json_block(&json!({"audience": b["audience"], "actions": b["actions"]})))
                @if signed.operator.role.may_change() && text(&b["status"]) == "scheduled" {
                    form.inline method="post" action=(format!("/console/engagement/broadcasts/{}/cancel", encode(&id))) data-confirm=(t(EngagementMsg::CancelConfirm)) {
                        (csrf(&signed))
                        button.danger type="submit" { (t(EngagementMsg::Cancel)) }
                    }
                }
            }
            section.panel { h2 { (signed.t(Msg::Status)) } (stats_facts(&signed, &stats)) }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Engagement,
        &text(&b["name"]),
        body,
    ))
}

async fn cancel_broadcast(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<Map<String, Value>>,
) -> Response {
    let signed = &posted.signed;
    let page = format!("/console/engagement/broadcasts/{}", encode(&id));
    let answer = console
        .call(
            signed,
            Method::POST,
            &format!("/v1/broadcasts/{}/cancel", encode(&id)),
            Some(&json!({})),
            posted.form_key.as_deref(),
        )
        .await;
    after_action(signed, &page, &answer, "/console/engagement?done=broadcast")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engagement_message_has_both_languages() {
        crate::console::i18n::check_catalogue(EngagementMsg::ALL);
    }

    #[test]
    fn the_example_actions_are_json() {
        let actions: Value = serde_json::from_str(EXAMPLE_ACTIONS).unwrap();
        assert_eq!(actions[0]["send_message"]["template"], "welcome");
    }

    #[test]
    fn every_offered_trigger_names_a_member() {
        for trigger in TRIGGERS {
            let known = crate::common::events::event_type_of(trigger)
                .unwrap_or_else(|| panic!("{trigger} is not an event"));
            assert!(known.payload.contains(&"member_id"), "{trigger}");
        }
    }
}
