//! The sales pages: `/console/sales` lists the flash sales (秒杀) and group buys (拼团), each
//! with a create form; `/console/sales/flash/{id}` is one flash sale with a live panel of its
//! sold / reserved / available units; `/console/sales/group-buys/{id}` is one group buy with its
//! teams, their state and their members.
//!
//! The live panel refreshes itself: htmx asks `/console/sales/flash/{id}/live` every two seconds
//! (`hx-trigger="every 2s"`) and swaps the panel for the answer, which is the same panel without
//! the page shell. htmx runs `every` with a timer and evaluates nothing (only a `[condition]` in
//! a trigger needs `eval`), so it works under the console's `allowEval: false` and its Content
//! Security Policy without inline script. A sale that has ended comes without the trigger: its
//! numbers no longer move, so the page stops asking.
//!
//! Operators type prices in yuan ([`view::parse_yuan`]) and times as `datetime-local` in the
//! tenant's time zone; the page sends the API fen and RFC 3339 instants. A form the page cannot
//! read, or that the API refuses, is shown again (422) with what was typed and the reason;
//! nothing is created.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::console::i18n::{Message as _, Msg};
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{
    self, csrf, encode, facts, instant, int, member_link, money, notice, optional_whole, pager,
    required_whole, required_yuan, text, unprocessable, unreadable, Nav, Unreadable,
};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The sales pages' own messages.
    pub enum SalesMsg {
        FlashSales => "秒杀", "Flash sales";
        FlashSale => "秒杀活动", "Flash sale";
        GroupBuys => "拼团", "Group buys";
        GroupBuy => "拼团活动", "Group buy";
        NewFlashSale => "新建秒杀", "New flash sale";
        NewGroupBuy => "新建拼团", "New group buy";
        PickProduct => "请选择商品", "Pick a product";
        FlashPrice => "秒杀价（元）", "Flash price (¥)";
        GroupPrice => "拼团价（元）", "Group price (¥)";
        SaleStock => "秒杀库存（件）", "Units for sale";
        Stock => "库存", "Stock";
        PerMemberLimit => "每人限购", "Per member";
        StartsAt => "开始时间（留空为立即开始）", "Starts (empty: now)";
        EndsAt => "结束时间", "Ends";
        Window => "活动时间", "Window";
        PaymentTimeout => "支付时限", "Time to pay";
        Seconds => "{0} 秒", "{0} s";
        Hours => "{0} 小时", "{0} h";
        Create => "创建", "Create";
        Created => "已创建", "Created";
        BadTime => "{0}：请选择日期和时间", "{0}: pick a date and a time";
        EndsBeforeStarts => "结束时间必须晚于开始时间", "The end must come after the start";
        Scheduled => "未开始", "Scheduled";
        Running => "进行中", "Selling";
        SoldOut => "已售罄", "Sold out";
        Ended => "已结束", "Ended";
        Live => "实时销售", "Live";
        LiveHint => "每 2 秒自动刷新", "Updates itself every 2 seconds";
        Final => "活动已结束，以上为最终数字", "The sale has ended: these are the final numbers";
        TeamSize => "成团人数", "Team size";
        DurationHours => "成团时限（小时）", "Hours to fill a team";
        Duration => "成团时限", "Time to fill a team";
        VirtualCompletion => "到期未满也成团", "Unfilled teams succeed at the deadline";
        Teams => "团", "Teams";
        Team => "团编号", "Team";
        TeamMembers => "团员", "Members";
        Opener => "团长", "Opener";
        Joined => "已参团", "Joined";
        PaidCount => "已支付", "Paid";
        Unpaid => "待支付", "Unpaid";
        Deadline => "截止时间", "Deadline";
        TeamOpen => "拼团中", "Open";
        TeamSucceeded => "已成团", "Succeeded";
        TeamFailed => "未成团", "Failed";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/sales", get(list))
        .route("/console/sales/flash", get(to_list).post(create_flash_sale))
        .route("/console/sales/flash/{sale_id}", get(flash_sale))
        .route("/console/sales/flash/{sale_id}/live", get(live))
        .route(
            "/console/sales/group-buys",
            get(to_list).post(create_group_buy),
        )
        .route("/console/sales/group-buys/{group_buy_id}", get(group_buy))
}

/// The create forms' addresses answer a GET with the list.
async fn to_list() -> Redirect {
    Redirect::to("/console/sales")
}

// ---------------------------------------------------------------------------------------------
// Reading what the operator typed

/// What a `datetime-local` input sends (`2026-12-06T20:00`, seconds optional) read as a time in
/// `zone`. A local time that occurs twice or never (around a summer-time change) takes the
/// earlier reading, as clocks do.
pub fn local_instant(typed: &str, zone: &TimeZone) -> Option<Timestamp> {
    let civil: DateTime = typed.trim().parse().ok()?;
    civil.to_zoned(zone.clone()).ok().map(|at| at.timestamp())
}

/// A `datetime-local` field as an instant; empty is `None`.
fn optional_time(
    signed: &Signed,
    label: SalesMsg,
    typed: &str,
) -> Result<Option<Timestamp>, Unreadable> {
    view::field(typed, |typed| local_instant(typed, &signed.zone))
        .ok_or_else(|| unreadable(signed, SalesMsg::BadTime, label))
}

fn product_of(signed: &Signed, typed: &str) -> Result<String, Unreadable> {
    let id = typed.trim();
    if id.is_empty() {
        return Err(signed.t(SalesMsg::PickProduct).to_owned());
    }
    Ok(id.to_owned())
}

/// The flash-sale form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FlashForm {
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    stock: String,
    #[serde(default)]
    per_member_limit: String,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
}

impl FlashForm {
    /// The `POST /v1/flash-sales` body, or what the page could not read.
    fn body(&self, signed: &Signed) -> Result<Value, Unreadable> {
        let mut body = Map::new();
        body.insert(
            "product_id".into(),
            product_of(signed, &self.product_id)?.into(),
        );
        body.insert(
            "price".into(),
            required_yuan(signed, SalesMsg::FlashPrice, &self.price)?.into(),
        );
        body.insert(
            "stock".into(),
            required_whole(signed, SalesMsg::SaleStock, &self.stock)?.into(),
        );
        if let Some(limit) =
            optional_whole(signed, SalesMsg::PerMemberLimit, &self.per_member_limit)?
        {
            body.insert("per_member_limit".into(), limit.into());
        }
        let starts = optional_time(signed, SalesMsg::StartsAt, &self.starts_at)?;
        let ends = optional_time(signed, SalesMsg::EndsAt, &self.ends_at)?
            .ok_or_else(|| unreadable(signed, SalesMsg::BadTime, SalesMsg::EndsAt))?;
        if let Some(starts) = starts {
            if ends <= starts {
                return Err(signed.t(SalesMsg::EndsBeforeStarts).to_owned());
            }
            body.insert("starts_at".into(), starts.to_string().into());
        }
        body.insert("ends_at".into(), ends.to_string().into());
        Ok(Value::Object(body))
    }
}

/// The group-buy form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    team_size: String,
    #[serde(default)]
    duration_hours: String,
    #[serde(default)]
    per_member_limit: String,
    /// Present (`true`) when the box is ticked.
    #[serde(default)]
    virtual_completion: Option<String>,
}

impl GroupForm {
    /// The `POST /v1/group-buys` body, or what the page could not read.
    fn body(&self, signed: &Signed) -> Result<Value, Unreadable> {
        let hours = required_whole(signed, SalesMsg::DurationHours, &self.duration_hours)?;
        // Out of range hours are the API's to refuse; only a product past i64 is the page's.
        let duration_secs = hours
            .checked_mul(3600)
            .ok_or_else(|| unreadable(signed, Msg::BadWhole, SalesMsg::DurationHours))?;
        let mut body = Map::new();
        body.insert(
            "product_id".into(),
            product_of(signed, &self.product_id)?.into(),
        );
        body.insert(
            "price".into(),
            required_yuan(signed, SalesMsg::GroupPrice, &self.price)?.into(),
        );
        body.insert(
            "team_size".into(),
            required_whole(signed, SalesMsg::TeamSize, &self.team_size)?.into(),
        );
        body.insert("duration_secs".into(), duration_secs.into());
        if let Some(limit) =
            optional_whole(signed, SalesMsg::PerMemberLimit, &self.per_member_limit)?
        {
            body.insert("per_member_limit".into(), limit.into());
        }
        body.insert(
            "virtual_completion".into(),
            self.virtual_completion.is_some().into(),
        );
        Ok(Value::Object(body))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// The tenant's products, for the pickers and for naming each sale's product. The first 200
/// (the API's largest page): a shop with more picks among its newest.
struct Products(Vec<Value>);

impl Products {
    async fn load(console: &Console, signed: &Signed) -> Products {
        let answer = console.get(signed, "/v1/products?limit=200").await;
        Products(answer.body["data"].as_array().cloned().unwrap_or_default())
    }

    fn names(&self) -> HashMap<String, String> {
        self.0
            .iter()
            .map(|p| (text(&p["id"]), text(&p["name"])))
            .collect()
    }

    fn options(&self, signed: &Signed, selected: &str) -> Markup {
        html! {
            option value="" { (signed.t(SalesMsg::PickProduct)) }
            @for p in &self.0 {
                @let id = text(&p["id"]);
                option value=(id) selected[id == selected] {
                    (text(&p["name"])) " · " (money(int(&p["price"])))
                }
            }
        }
    }
}

/// A product's name when known, else its id.
fn product_name(names: &HashMap<String, String>, id: &str) -> String {
    match names.get(id) {
        Some(name) if !name.is_empty() => name.clone(),
        _ => id.to_owned(),
    }
}

/// A flash sale's status (as the API derives it) as a badge.
fn sale_status(signed: &Signed, status: &Value) -> Markup {
    let (msg, class) = match status.as_str() {
        Some("scheduled") => (SalesMsg::Scheduled, "badge"),
        Some("running") => (SalesMsg::Running, "badge good"),
        Some("sold_out") => (SalesMsg::SoldOut, "badge bad"),
        _ => (SalesMsg::Ended, "badge"),
    };
    html! { span class=(class) data-status=(text(status)) { (signed.t(msg)) } }
}

fn team_status(signed: &Signed, status: &Value) -> Markup {
    let (msg, class) = match status.as_str() {
        Some("succeeded") => (SalesMsg::TeamSucceeded, "badge good"),
        Some("failed") => (SalesMsg::TeamFailed, "badge bad"),
        _ => (SalesMsg::TeamOpen, "badge"),
    };
    html! { span class=(class) data-status=(text(status)) { (signed.t(msg)) } }
}

fn window(signed: &Signed, sale: &Value) -> String {
    format!(
        "{} – {}",
        instant(&text(&sale["starts_at"]), &signed.zone),
        instant(&text(&sale["ends_at"]), &signed.zone)
    )
}

// ---------------------------------------------------------------------------------------------
// The list page and its forms

/// `?flash_cursor=` and `?group_cursor=` page the two lists independently.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    flash_cursor: String,
    #[serde(default)]
    group_cursor: String,
}

/// What the operator typed into the page's forms, and why one was refused.
#[derive(Default)]
struct Typed {
    flash: FlashForm,
    group: GroupForm,
    flash_refused: Option<String>,
    group_refused: Option<String>,
}

/// `GET /console/sales`.
async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, Refusal> {
    Ok(sales_page(&console, &signed, &params, &Typed::default()).await)
}

async fn sales_page(
    console: &Console,
    signed: &Signed,
    params: &ListParams,
    typed: &Typed,
) -> Response {
    let (products, sales, buys) = tokio::join!(
        Products::load(console, signed),
        console.list(signed, "/v1/flash-sales", &params.flash_cursor),
        console.list(signed, "/v1/group-buys", &params.group_cursor),
    );
    let names = products.names();
    let t = |m: SalesMsg| signed.t(m);
    let may_change = signed.operator.role.may_change();
    let body = html! {
        @if let Some(error) = &typed.flash_refused { (notice(false, error)) }
        @if let Some(error) = &typed.group_refused { (notice(false, error)) }
        @if let Some(error) = &sales.error { (notice(false, error)) }
        @if let Some(error) = &buys.error { (notice(false, error)) }
        h2 { (t(SalesMsg::FlashSales)) }
        @if may_change { (flash_form(signed, &products, typed)) }
        section.panel {
            table id="flash-sales" {
                thead { tr {
                    th { (signed.t(Msg::Product)) } th.num { (signed.t(Msg::Price)) } th.num { (t(SalesMsg::Stock)) }
                    th.num { (signed.t(Msg::Sold)) } th.num.hide-narrow { (signed.t(Msg::Reserved)) }
                    th.num.hide-narrow { (signed.t(Msg::Available)) } th.hide-narrow { (t(SalesMsg::Window)) } th { (signed.t(Msg::Status)) }
                } }
                tbody {
                    @for s in &sales.rows {
                        @let id = text(&s["id"]);
                        tr data-flash-sale-id=(id) {
                            td { a href=(format!("/console/sales/flash/{}", encode(&id))) { (product_name(&names, &text(&s["product_id"]))) } }
                            td.num { (money(int(&s["price"]))) }
                            td.num { (int(&s["stock"])) }
                            td.num { (int(&s["sold"])) }
                            td.num.hide-narrow { (int(&s["reserved"])) }
                            td.num.hide-narrow { (int(&s["available"])) }
                            td.hide-narrow { (window(signed, s)) }
                            td { (sale_status(signed, &s["status"])) }
                        }
                    }
                }
            }
            @if sales.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/sales", "flash_cursor", &params.flash_cursor, sales.next.as_deref()))
        }
        h2 { (t(SalesMsg::GroupBuys)) }
        @if may_change { (group_form(signed, &products, typed)) }
        section.panel {
            table id="group-buys" {
                thead { tr {
                    th { (signed.t(Msg::Product)) } th.num { (signed.t(Msg::Price)) } th.num { (t(SalesMsg::TeamSize)) }
                    th.num.hide-narrow { (t(SalesMsg::Duration)) } th.num.hide-narrow { (t(SalesMsg::PerMemberLimit)) }
                    th.hide-narrow { (t(SalesMsg::VirtualCompletion)) } th.hide-narrow { (signed.t(Msg::Created)) }
                } }
                tbody {
                    @for b in &buys.rows {
                        @let id = text(&b["id"]);
                        tr data-group-buy-id=(id) {
                            td { a href=(format!("/console/sales/group-buys/{}", encode(&id))) { (product_name(&names, &text(&b["product_id"]))) } }
                            td.num { (money(int(&b["price"]))) }
                            td.num { (int(&b["team_size"])) }
                            td.num.hide-narrow { (duration(signed, int(&b["duration_secs"]))) }
                            td.num.hide-narrow { (int(&b["per_member_limit"])) }
                            td.hide-narrow { (yes_no(signed, &b["virtual_completion"])) }
                            td.hide-narrow { (instant(&text(&b["created_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if buys.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/sales", "group_cursor", &params.group_cursor, buys.next.as_deref()))
        }
    };
    view::page(signed, Nav::Sales, signed.t(Msg::Sales), body)
}

/// Whole hours as "N h", anything else in seconds.
fn duration(signed: &Signed, secs: i64) -> String {
    if secs % 3600 == 0 {
        SalesMsg::Hours.fill(signed.lang, &[&(secs / 3600).to_string()])
    } else {
        SalesMsg::Seconds.fill(signed.lang, &[&secs.to_string()])
    }
}

fn yes_no(signed: &Signed, value: &Value) -> &'static str {
    signed.t(if value.as_bool() == Some(true) {
        Msg::Yes
    } else {
        Msg::No
    })
}

fn flash_form(signed: &Signed, products: &Products, typed: &Typed) -> Markup {
    let t = |m: SalesMsg| signed.t(m);
    let f = &typed.flash;
    html! {
        details.panel open[typed.flash_refused.is_some()] {
            summary { (t(SalesMsg::NewFlashSale)) }
            form.stack id="flash-sale-form" method="post" action="/console/sales/flash" {
                (csrf(signed))
                label { (signed.t(Msg::Product)) select name="product_id" required { (products.options(signed, &f.product_id)) } }
                label { (t(SalesMsg::FlashPrice)) input type="text" name="price" required inputmode="decimal" value=(f.price); }
                label { (t(SalesMsg::SaleStock)) input type="number" name="stock" required min="1" value=(f.stock); }
                label { (t(SalesMsg::PerMemberLimit)) input type="number" name="per_member_limit" min="1" placeholder="1" value=(f.per_member_limit); }
                label { (t(SalesMsg::StartsAt)) input type="datetime-local" name="starts_at" value=(f.starts_at); }
                label { (t(SalesMsg::EndsAt)) input type="datetime-local" name="ends_at" required value=(f.ends_at); }
                button type="submit" { (t(SalesMsg::Create)) }
            }
        }
    }
}

fn group_form(signed: &Signed, products: &Products, typed: &Typed) -> Markup {
    let t = |m: SalesMsg| signed.t(m);
    let g = &typed.group;
    let ticked = g.virtual_completion.is_some();
    html! {
        details.panel open[typed.group_refused.is_some()] {
            summary { (t(SalesMsg::NewGroupBuy)) }
            form.stack id="group-buy-form" method="post" action="/console/sales/group-buys" {
                (csrf(signed))
                label { (signed.t(Msg::Product)) select name="product_id" required { (products.options(signed, &g.product_id)) } }
                label { (t(SalesMsg::GroupPrice)) input type="text" name="price" required inputmode="decimal" value=(g.price); }
                label { (t(SalesMsg::TeamSize)) input type="number" name="team_size" required min="2" max="100" value=(g.team_size); }
                label { (t(SalesMsg::DurationHours)) input type="number" name="duration_hours" required min="1" max="720" value=(g.duration_hours); }
                label { (t(SalesMsg::PerMemberLimit)) input type="number" name="per_member_limit" min="1" placeholder="1" value=(g.per_member_limit); }
                label.check { input type="checkbox" name="virtual_completion" value="true" checked[ticked]; " " (t(SalesMsg::VirtualCompletion)) }
                button type="submit" { (t(SalesMsg::Create)) }
            }
        }
    }
}

/// `POST /console/sales/flash`: create a flash sale, then watch it on its page.
async fn create_flash_sale(
    State(console): State<Console>,
    Change(posted): Change<FlashForm>,
) -> Response {
    let signed = &posted.signed;
    let refused = |message: String| Typed {
        flash: posted.form.clone(),
        flash_refused: Some(message),
        ..Typed::default()
    };
    let body = match posted.form.body(signed) {
        Ok(body) => body,
        Err(unreadable) => {
            let page = sales_page(
                &console,
                signed,
                &ListParams::default(),
                &refused(unreadable),
            )
            .await;
            return unprocessable(page);
        }
    };
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/flash-sales",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!("/console/sales/flash/{}?created=1", encode(&id)))
            .into_response();
    }
    let page = sales_page(
        &console,
        signed,
        &ListParams::default(),
        &refused(answer.message()),
    )
    .await;
    unprocessable(page)
}

/// `POST /console/sales/group-buys`: create a group buy, then show it.
async fn create_group_buy(
    State(console): State<Console>,
    Change(posted): Change<GroupForm>,
) -> Response {
    let signed = &posted.signed;
    let refused = |message: String| Typed {
        group: posted.form.clone(),
        group_refused: Some(message),
        ..Typed::default()
    };
    let body = match posted.form.body(signed) {
        Ok(body) => body,
        Err(unreadable) => {
            let page = sales_page(
                &console,
                signed,
                &ListParams::default(),
                &refused(unreadable),
            )
            .await;
            return unprocessable(page);
        }
    };
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/group-buys",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!(
            "/console/sales/group-buys/{}?created=1",
            encode(&id)
        ))
        .into_response();
    }
    let page = sales_page(
        &console,
        signed,
        &ListParams::default(),
        &refused(answer.message()),
    )
    .await;
    unprocessable(page)
}

// ---------------------------------------------------------------------------------------------
// One flash sale, live

#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    /// Set after the page's own create form.
    #[serde(default)]
    created: String,
}

/// `GET /console/sales/flash/{sale_id}`.
async fn flash_sale(
    State(console): State<Console>,
    signed: Signed,
    Path(sale_id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let sale = console
        .get(&signed, &format!("/v1/flash-sales/{}", encode(&sale_id)))
        .await
        .found(&signed)?;
    let product_id = text(&sale["product_id"]);
    let product = console
        .get(&signed, &format!("/v1/products/{}", encode(&product_id)))
        .await;
    let product_name = text(&product.body["name"]);
    let t = |m: SalesMsg| signed.t(m);
    let body = html! {
        @if !params.created.is_empty() { (notice(true, t(SalesMsg::Created))) }
        p { a href="/console/sales" { "← " (signed.t(Msg::Sales)) } }
        div.grid2 {
            section.panel {
                h2 { (t(SalesMsg::FlashSale)) }
                (facts(&[
                    ("ID", text(&sale["id"])),
                    (signed.t(Msg::Product), if product_name.is_empty() { product_id.clone() } else { format!("{product_name} ({product_id})") }),
                    (signed.t(Msg::Price), money(int(&sale["price"]))),
                    (t(SalesMsg::Stock), int(&sale["stock"]).to_string()),
                    (t(SalesMsg::PerMemberLimit), int(&sale["per_member_limit"]).to_string()),
                    (t(SalesMsg::Window), window(&signed, &sale)),
                    (t(SalesMsg::PaymentTimeout), SalesMsg::Seconds.fill(signed.lang, &[&int(&sale["payment_timeout_secs"]).to_string()])),
                    (signed.t(Msg::Created), instant(&text(&sale["created_at"]), &signed.zone)),
                ]))
            }
            (live_panel(&signed, &sale))
        }
    };
    let title = if product_name.is_empty() {
        t(SalesMsg::FlashSale).to_owned()
    } else {
        format!("{} · {product_name}", t(SalesMsg::FlashSale))
    };
    Ok(view::page(&signed, Nav::Sales, &title, body))
}

/// `GET /console/sales/flash/{sale_id}/live`: the live panel alone, for htmx to swap in.
async fn live(
    State(console): State<Console>,
    signed: Signed,
    Path(sale_id): Path<String>,
) -> Result<Response, Refusal> {
    let sale = console
        .get(&signed, &format!("/v1/flash-sales/{}", encode(&sale_id)))
        .await
        .found(&signed)?;
    Ok(live_panel(&signed, &sale).into_response())
}

/// Sold, reserved and available in big numbers and as one stacked bar; it asks for itself again
/// every two seconds until the sale has ended.
fn live_panel(signed: &Signed, sale: &Value) -> Markup {
    let (sold, reserved, available) = (
        int(&sale["sold"]),
        int(&sale["reserved"]),
        int(&sale["available"]),
    );
    let moving = sale["status"] != "ended";
    let path = format!("/console/sales/flash/{}/live", encode(&text(&sale["id"])));
    let card = |label: Msg, value: i64, class: &str| {
        html! {
            div class=(format!("card {class}")) {
                div.label { (signed.t(label)) }
                div.value { (value) }
            }
        }
    };
    html! {
        section.panel id="flash-sale-live" data-sold=(sold) data-reserved=(reserved) data-available=(available)
            hx-get=[moving.then_some(&path)] hx-trigger=[moving.then_some("every 2s")] hx-swap=[moving.then_some("outerHTML")] {
            h2 { (signed.t(SalesMsg::Live)) " " (sale_status(signed, &sale["status"])) }
            div.cards.big {
                (card(Msg::Sold, sold, "sold"))
                (card(Msg::Reserved, reserved, "reserved"))
                (card(Msg::Available, available, "available"))
            }
            (view::chart(&units_chart(signed, sold, reserved, available), false))
            p.muted { (signed.t(if moving { SalesMsg::LiveHint } else { SalesMsg::Final })) }
        }
    }
}

/// The sale's units as one stacked bar, sold then reserved then available. No animation: the
/// chart is drawn anew every two seconds.
fn units_chart(signed: &Signed, sold: i64, reserved: i64, available: i64) -> Value {
    let part = |label: Msg, value: i64, color: &str| {
        json!({"name": signed.t(label), "type": "bar", "stack": "units", "data": [value],
               "barWidth": 36, "itemStyle": {"color": color},
               "label": {"show": value > 0, "position": "inside"}})
    };
    json!({
        "animation": false,
        "tooltip": {"trigger": "item"},
        "legend": {"top": 0},
        "grid": {"left": 8, "right": 8, "top": 36, "bottom": 24, "containLabel": true},
        "xAxis": {"type": "value", "max": sold + reserved + available.max(0), "minInterval": 1},
        "yAxis": {"type": "category", "data": [""], "show": false},
        "series": [
            part(Msg::Sold, sold, "#c2410c"),
            part(Msg::Reserved, reserved, "#f59e0b"),
            part(Msg::Available, available.max(0), "#d1d5db"),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// One group buy and its teams

/// `GET /console/sales/group-buys/{group_buy_id}`.
async fn group_buy(
    State(console): State<Console>,
    signed: Signed,
    Path(group_buy_id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/group-buys/{}", encode(&group_buy_id));
    let buy = console.get(&signed, &base).await.found(&signed)?;
    let product_id = text(&buy["product_id"]);
    let (teams_path, product_path) = (
        format!("{base}/teams?limit=100"),
        format!("/v1/products/{}", encode(&product_id)),
    );
    let (teams, product) = tokio::join!(
        console.get(&signed, &teams_path),
        console.get(&signed, &product_path),
    );
    let product_name = text(&product.body["name"]);
    let teams = teams.body["data"].as_array().cloned().unwrap_or_default();
    let count = |status: &str| teams.iter().filter(|team| team["status"] == status).count();
    let t = |m: SalesMsg| signed.t(m);
    let body = html! {
        @if !params.created.is_empty() { (notice(true, t(SalesMsg::Created))) }
        p { a href="/console/sales" { "← " (signed.t(Msg::Sales)) } }
        section.panel {
            h2 { (t(SalesMsg::GroupBuy)) }
            (facts(&[
                ("ID", text(&buy["id"])),
                (signed.t(Msg::Product), if product_name.is_empty() { product_id.clone() } else { format!("{product_name} ({product_id})") }),
                (signed.t(Msg::Price), money(int(&buy["price"]))),
                (t(SalesMsg::TeamSize), int(&buy["team_size"]).to_string()),
                (t(SalesMsg::Duration), duration(&signed, int(&buy["duration_secs"]))),
                (t(SalesMsg::PerMemberLimit), int(&buy["per_member_limit"]).to_string()),
                (t(SalesMsg::VirtualCompletion), yes_no(&signed, &buy["virtual_completion"]).to_owned()),
                (t(SalesMsg::PaymentTimeout), SalesMsg::Seconds.fill(signed.lang, &[&int(&buy["payment_timeout_secs"]).to_string()])),
                (signed.t(Msg::Created), instant(&text(&buy["created_at"]), &signed.zone)),
            ]))
        }
        div.cards {
            div.card { div.label { (t(SalesMsg::TeamOpen)) } div.value { (count("open")) } }
            div.card { div.label { (t(SalesMsg::TeamSucceeded)) } div.value { (count("succeeded")) } }
            div.card { div.label { (t(SalesMsg::TeamFailed)) } div.value { (count("failed")) } }
        }
        section.panel {
            h2 { (t(SalesMsg::Teams)) }
            @if teams.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            @else {
                table id="teams" {
                    thead { tr {
                        th { (t(SalesMsg::Team)) } th { (signed.t(Msg::Status)) } th.num { (t(SalesMsg::Joined)) }
                        th.num { (t(SalesMsg::PaidCount)) } th { (t(SalesMsg::TeamMembers)) } th.hide-narrow { (t(SalesMsg::Deadline)) }
                    } }
                    tbody {
                        @for team in &teams {
                            tr data-team-id=(text(&team["id"])) {
                                td { small { (text(&team["id"])) } }
                                td { (team_status(&signed, &team["status"])) }
                                td.num { (int(&team["slots_taken"])) " / " (int(&team["team_size"])) }
                                td.num { (int(&team["paid_count"])) }
                                td { (team_members(&signed, &team["members"])) }
                                td.hide-narrow { (instant(&text(&team["expires_at"]), &signed.zone)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = if product_name.is_empty() {
        t(SalesMsg::GroupBuy).to_owned()
    } else {
        format!("{} · {product_name}", t(SalesMsg::GroupBuy))
    };
    Ok(view::page(&signed, Nav::Sales, &title, body))
}

/// A team's members, each a link to their page, the opener marked, the unpaid said.
fn team_members(signed: &Signed, members: &Value) -> Markup {
    let members = members.as_array().cloned().unwrap_or_default();
    html! {
        @for m in &members {
            div {
                (member_link(&text(&m["member_id"])))
                @if m["opener"].as_bool() == Some(true) { " " span.badge { (signed.t(SalesMsg::Opener)) } }
                " "
                @if m["paid"].as_bool() == Some(true) { span.badge.good { (signed.t(SalesMsg::PaidCount)) } }
                @else { span.badge { (signed.t(SalesMsg::Unpaid)) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sales_message_has_both_languages() {
        crate::console::i18n::check_catalogue(SalesMsg::ALL);
    }

    #[test]
    fn datetime_local_is_read_in_the_tenant_zone() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            local_instant("2026-12-06T20:00", &shanghai)
                .unwrap()
                .to_string(),
            "2026-12-06T12:00:00Z"
        );
        assert_eq!(
            local_instant("2026-12-06T20:00:30", &shanghai)
                .unwrap()
                .to_string(),
            "2026-12-06T12:00:30Z"
        );
        let new_york = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            local_instant("2026-07-01T09:00", &new_york)
                .unwrap()
                .to_string(),
            "2026-07-01T13:00:00Z"
        );
        for bad in ["", "tomorrow", "2026-13-01T10:00", "20:00"] {
            assert_eq!(local_instant(bad, &shanghai), None, "{bad}");
        }
    }
}
