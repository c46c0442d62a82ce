//! `/console/alliance`: the merchant alliances (商家联盟) the tenant is a partner of: for the
//! chosen one (`?id=`, the newest by default) its partners by display name, its shared coupon
//! offers with their remaining stock, the tenant's own referral links with what they brought,
//! and every partner's balance (owed, owes, net), read through `/v1/alliances…` as the
//! signed-in operator's tenant.
//!
//! The page's forms do what the API does, as the operator: create an alliance, join one by
//! code, invite (the one-time code is shown once, on the page that answers the form), offer a
//! coupon template, withdraw an offer, make or revoke a referral link (its code shown), record
//! a settlement, and download a month's statement as CSV (streamed from the API). Changes
//! answer with a redirect back to the page and a notice (`done=`, or `error=` with the API's
//! message), except the two that show a code, which answer with the page itself.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::console::call::Answer;
use crate::console::i18n::Msg;
use crate::console::session::{Change, Posted, Refusal, Signed};
use crate::console::view::{self, csrf, encode, instant, int, notice, text, Nav};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The alliance page's own messages.
    pub enum AllianceMsg {
        Title => "商家联盟", "Merchant alliance";
        NoAlliance => "尚未加入联盟：在下方创建一个，或用其他商家给的邀请码加入", "No alliance yet: create one below, or join with an invitation code another merchant gave you";
        Alliances => "联盟", "Alliances";
        Partners => "成员商家", "Partners";
        Partner => "商家", "Partner";
        Joined => "加入时间", "Joined";
        Offers => "共享优惠券", "Shared coupons";
        Stock => "库存", "Stock";
        Remaining => "剩余", "Remaining";
        Balances => "结算余额（分）", "Balances (fen)";
        Owed => "应收", "Owed";
        Owes => "应付", "Owes";
        Net => "净额", "Net";
        Fee => "引流费", "Referral fee";
        You => "本店", "you";
        CreateAlliance => "创建联盟", "Create an alliance";
        AllianceName => "联盟名称", "Alliance name";
        FeeKind => "引流费方式", "Fee kind";
        FeeFixed => "每位新顾客固定金额（分）", "Fixed per new customer (fen)";
        FeePercent => "首单金额比例（基点，100 = 1%）", "Share of the first order (basis points, 100 = 1%)";
        FeeValue => "引流费数值", "Fee value";
        DisplayName => "本店在联盟中的名称（可选）", "Your name in the alliance (optional)";
        Create => "创建", "Create";
        JoinAlliance => "用邀请码加入联盟", "Join an alliance with a code";
        InvitationCode => "邀请码", "Invitation code";
        Join => "加入", "Join";
        Invite => "生成邀请码", "Make an invitation code";
        InvitationShown => "邀请码只显示这一次，请复制给要加入的商家（一次有效）：", "The invitation code is shown only this once: give it to the merchant joining (it works once):";
        Expires => "过期时间", "Expires";
        OfferCoupon => "共享一个优惠券模板", "Offer a coupon template";
        Template => "优惠券模板", "Coupon template";
        NoTemplates => "还没有优惠券模板：先在“优惠券”页创建", "No coupon templates yet: create one on the coupons page first";
        Offer => "共享", "Offer";
        Withdraw => "撤回", "Withdraw";
        ReferralLinks => "本店的引流链接", "Your referral links";
        CreateLink => "创建引流链接", "Create a referral link";
        AnyPartner => "任一成员商家", "Any partner";
        OnlyAt => "仅限于", "Only at";
        Label => "备注", "Label";
        Code => "引流码", "Code";
        LinkShown => "引流码已创建，请交给顾客（如印成二维码）：", "The referral code is ready: hand it to customers (as a QR code, say):";
        Customers => "带来顾客", "Customers";
        FirstOrders => "首单", "First orders";
        FeesEarned => "引流费（分）", "Fees (fen)";
        Revoke => "停用", "Revoke";
        Settle => "登记线下结算", "Record a settlement paid outside shequn";
        PaidBy => "付款方", "Paid by";
        PaidTo => "收款方", "Paid to";
        Amount => "金额（分）", "Amount (fen)";
        Reference => "付款凭证", "Payment reference";
        Record => "登记", "Record";
        Statement => "月度对账单", "Monthly statement";
        Month => "月份（YYYY-MM）", "Month (YYYY-MM)";
        Download => "下载 CSV", "Download CSV";
        DoneCreated => "联盟已创建", "The alliance is created";
        DoneJoined => "已加入联盟", "You joined the alliance";
        DoneOffered => "优惠券已共享给联盟", "The coupon is offered to the alliance";
        DoneWithdrawn => "优惠券已撤回：不能再领取，已领取的仍然有效", "The offer is withdrawn: no new claims, coupons claimed stay valid";
        DoneRevoked => "引流链接已停用", "The referral link is revoked";
        DoneSettled => "结算已登记", "The settlement is recorded";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/alliance", get(page).post(create))
        .route("/console/alliance/join", post(join))
        .route("/console/alliance/{id}/invitations", post(invite))
        .route("/console/alliance/{id}/offers", post(offer))
        .route(
            "/console/alliance/{id}/offers/{offer_id}/withdraw",
            post(withdraw),
        )
        .route("/console/alliance/{id}/referral-links", post(create_link))
        .route(
            "/console/alliance/{id}/referral-links/{link_id}/revoke",
            post(revoke_link),
        )
        .route("/console/alliance/{id}/settlements", post(settle))
        .route("/console/alliance/{id}/statement.csv", get(download))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    id: String,
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/alliance`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let top = html! {
        @if let Some(done) = done_message(&params.done) { (notice(true, signed.t(done))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
    };
    Ok(render(&console, &signed, &params.id, top).await)
}

fn done_message(done: &str) -> Option<AllianceMsg> {
    Some(match done {
        "created" => AllianceMsg::DoneCreated,
        "joined" => AllianceMsg::DoneJoined,
        "offered" => AllianceMsg::DoneOffered,
        "withdrawn" => AllianceMsg::DoneWithdrawn,
        "revoked" => AllianceMsg::DoneRevoked,
        "settled" => AllianceMsg::DoneSettled,
        _ => return None,
    })
}

/// The page for alliance `id` (the newest when it is not one of the tenant's), with `top`
/// above it (a notice, or a code shown once).
async fn render(console: &Console, signed: &Signed, id: &str, top: Markup) -> Response {
    let list = console.get(signed, "/v1/alliances").await;
    let alliances = list.body["data"].as_array().cloned().unwrap_or_default();
    let chosen = alliances
        .iter()
        .find(|a| a["id"] == id)
        .or_else(|| alliances.first())
        .cloned();
    let may_change = signed.operator.role.may_change();
    let shown = match &chosen {
        Some(alliance) => Some(chosen_alliance(console, signed, alliance, may_change).await),
        None => None,
    };
    let body = html! {
        (top)
        @match &shown {
            None => {
                @if !list.ok() { (notice(false, &list.message())) }
                @else { p.muted { (signed.t(AllianceMsg::NoAlliance)) } }
            }
            Some(shown) => {
                @if alliances.len() > 1 {
                    section.panel {
                        h2 { (signed.t(AllianceMsg::Alliances)) }
                        ul { @for a in &alliances {
                            li { a href=(format!("/console/alliance?id={}", encode(&text(&a["id"])))) { (text(&a["name"])) } }
                        } }
                    }
                }
                (shown)
            }
        }
        @if may_change { (create_and_join_forms(signed)) }
    };
    view::page(signed, Nav::Alliance, signed.t(AllianceMsg::Title), body)
}

async fn chosen_alliance(
    console: &Console,
    signed: &Signed,
    alliance: &Value,
    may_change: bool,
) -> Markup {
    let id = text(&alliance["id"]);
    let base = format!("/v1/alliances/{}", encode(&id));
    let offers_path = format!("{base}/offers");
    let balances_path = format!("{base}/balances");
    let links_path = format!("{base}/referral-links");
    let (offers, balances, links, templates) = tokio::join!(
        console.get(signed, &offers_path),
        console.get(signed, &balances_path),
        console.get(signed, &links_path),
        console.get(signed, "/v1/coupon-templates?limit=200"),
    );
    let me = text(&alliance["my_partner_id"]);
    let active = alliance["partners"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| text(&p["partner_id"]) == me && p["status"] == "active");
    let act = may_change && active;
    let page = format!("/console/alliance/{}", encode(&id));
    html! {
        (summary(signed, alliance))
        @if act {
            section.panel {
                form method="post" action=(format!("{page}/invitations")) {
                    (csrf(signed))
                    button type="submit" { (signed.t(AllianceMsg::Invite)) }
                }
            }
        }
        section.panel {
            h2 { (signed.t(AllianceMsg::Balances)) }
            @if !balances.ok() { (notice(false, &balances.message())) }
            (balance_table(signed, &balances.body, alliance))
            @if may_change { (settlement_form(signed, &page, alliance)) }
            (statement_form(signed, &page, console.app.clock.now()))
        }
        section.panel {
            h2 { (signed.t(AllianceMsg::Offers)) }
            @if !offers.ok() { (notice(false, &offers.message())) }
            (offer_table(signed, &offers.body, &me, &page, act))
            @if act { (offer_form(signed, &page, &templates.body)) }
        }
        section.panel {
            h2 { (signed.t(AllianceMsg::ReferralLinks)) }
            @if !links.ok() { (notice(false, &links.message())) }
            (link_table(signed, &links.body, alliance, &page, act))
            @if act { (link_form(signed, &page, alliance)) }
        }
    }
}

fn fee(rules: &Value) -> String {
    let fee = &rules["referral_fee"];
    match fee["kind"].as_str() {
        Some("percent_bp") => format!("{} bp", text(&fee["value"])),
        _ => text(&fee["value"]),
    }
}

fn partner_name(alliance: &Value, partner_id: &str) -> String {
    alliance["partners"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| text(&p["partner_id"]) == partner_id)
        .map(|p| text(&p["name"]))
        .unwrap_or_default()
}

fn summary(signed: &Signed, alliance: &Value) -> Markup {
    let me = text(&alliance["my_partner_id"]);
    let partners = alliance["partners"].as_array().cloned().unwrap_or_default();
    html! {
        section.panel {
            h2 { (text(&alliance["name"])) }
            dl.facts {
                dt { (signed.t(AllianceMsg::Fee)) } dd { (fee(&alliance["rules"])) }
                dt { (signed.t(Msg::Created)) } dd { (instant(&text(&alliance["created_at"]), &signed.zone)) }
            }
            h3 { (signed.t(AllianceMsg::Partners)) }
            table {
                thead { tr {
                    th { (signed.t(AllianceMsg::Partner)) } th { (signed.t(Msg::Status)) }
                    th.hide-narrow { (signed.t(AllianceMsg::Joined)) }
                } }
                tbody { @for p in &partners {
                    tr {
                        td {
                            (text(&p["name"]))
                            @if text(&p["partner_id"]) == me { " (" (signed.t(AllianceMsg::You)) ")" }
                        }
                        td { span.badge { (text(&p["status"])) } }
                        td.hide-narrow { (instant(&text(&p["joined_at"]), &signed.zone)) }
                    }
                } }
            }
        }
    }
}

fn balance_table(signed: &Signed, balances: &Value, alliance: &Value) -> Markup {
    let me = text(&alliance["my_partner_id"]);
    let rows = balances["partners"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table id="alliance-balances" {
                thead { tr {
                    th { (signed.t(AllianceMsg::Partner)) }
                    th.num { (signed.t(AllianceMsg::Owed)) } th.num { (signed.t(AllianceMsg::Owes)) }
                    th.num { (signed.t(AllianceMsg::Net)) }
                } }
                tbody { @for b in &rows {
                    tr {
                        td {
                            (text(&b["name"]))
                            @if text(&b["partner_id"]) == me { " (" (signed.t(AllianceMsg::You)) ")" }
                        }
                        td.num { (int(&b["owed"])) }
                        td.num { (int(&b["owes"])) }
                        td.num { (int(&b["net"])) }
                    }
                } }
            }
        }
    }
}

/// The partners as `<option>`s (value: partner id), `selected` chosen.
fn partner_options(alliance: &Value, selected: &str) -> Markup {
    let partners = alliance["partners"].as_array().cloned().unwrap_or_default();
    html! {
        @for p in &partners {
            @let id = text(&p["partner_id"]);
            option value=(id) selected[id == selected] { (text(&p["name"])) }
        }
    }
}

fn settlement_form(signed: &Signed, page: &str, alliance: &Value) -> Markup {
    let me = text(&alliance["my_partner_id"]);
    let t = |m: AllianceMsg| signed.t(m);
    html! {
        details {
            summary { (t(AllianceMsg::Settle)) }
            form.stack id="settlement-form" method="post" action=(format!("{page}/settlements")) {
                (csrf(signed))
                label { (t(AllianceMsg::PaidBy)) select name="from" { (partner_options(alliance, "")) } }
                label { (t(AllianceMsg::PaidTo)) select name="to" { (partner_options(alliance, &me)) } }
                label { (t(AllianceMsg::Amount)) input type="number" name="amount" required min="1" max="1000000000"; }
                label { (t(AllianceMsg::Reference)) input type="text" name="reference" required maxlength="128"; }
                button type="submit" { (t(AllianceMsg::Record)) }
            }
        }
    }
}

fn statement_form(signed: &Signed, page: &str, now: jiff::Timestamp) -> Markup {
    let month = now
        .to_zoned(signed.zone.clone())
        .strftime("%Y-%m")
        .to_string();
    html! {
        form.inline method="get" action=(format!("{page}/statement.csv")) {
            label { (signed.t(AllianceMsg::Statement)) " · " (signed.t(AllianceMsg::Month))
                input type="text" name="month" required pattern="[0-9]{4}-[0-9]{2}" value=(month); }
            button type="submit" { (signed.t(AllianceMsg::Download)) }
        }
    }
}

fn offer_table(signed: &Signed, offers: &Value, me: &str, page: &str, act: bool) -> Markup {
    let rows = offers["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table id="alliance-offers" {
                thead { tr {
                    th { (signed.t(AllianceMsg::Partner)) } th { (signed.t(Msg::Status)) }
                    th.num { (signed.t(AllianceMsg::Stock)) } th.num { (signed.t(AllianceMsg::Remaining)) }
                    th.hide-narrow { (signed.t(Msg::Created)) } th {}
                } }
                tbody { @for o in &rows {
                    tr {
                        td { (text(&o["partner_name"])) }
                        td { span.badge { (text(&o["status"])) } }
                        td.num { (int(&o["stock"])) }
                        td.num { (int(&o["remaining"])) }
                        td.hide-narrow { (instant(&text(&o["created_at"]), &signed.zone)) }
                        td {
                            @if act && text(&o["partner_id"]) == me && o["status"] == "open" {
                                form method="post" action=(format!("{page}/offers/{}/withdraw", encode(&text(&o["id"])))) {
                                    (csrf(signed))
                                    button type="submit" { (signed.t(AllianceMsg::Withdraw)) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn offer_form(signed: &Signed, page: &str, templates: &Value) -> Markup {
    let templates = templates["data"].as_array().cloned().unwrap_or_default();
    let t = |m: AllianceMsg| signed.t(m);
    html! {
        details {
            summary { (t(AllianceMsg::OfferCoupon)) }
            @if templates.is_empty() { p.muted { (t(AllianceMsg::NoTemplates)) } }
            @else {
                form.stack id="offer-form" method="post" action=(format!("{page}/offers")) {
                    (csrf(signed))
                    label { (t(AllianceMsg::Template))
                        select name="coupon_template_id" required {
                            @for template in &templates {
                                option value=(text(&template["id"])) { (text(&template["name"])) }
                            }
                        }
                    }
                    label { (t(AllianceMsg::Stock)) input type="number" name="stock" required min="1" max="1000000"; }
                    button type="submit" { (t(AllianceMsg::Offer)) }
                }
            }
        }
    }
}

fn link_table(signed: &Signed, links: &Value, alliance: &Value, page: &str, act: bool) -> Markup {
    let rows = links["data"].as_array().cloned().unwrap_or_default();
    let t = |m: AllianceMsg| signed.t(m);
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table id="alliance-links" {
                thead { tr {
                    th { (t(AllianceMsg::Code)) } th { (t(AllianceMsg::Label)) }
                    th { (t(AllianceMsg::OnlyAt)) } th { (signed.t(Msg::Status)) }
                    th.num { (t(AllianceMsg::Customers)) } th.num { (t(AllianceMsg::FirstOrders)) }
                    th.num { (t(AllianceMsg::FeesEarned)) } th.hide-narrow { (t(AllianceMsg::Expires)) } th {}
                } }
                tbody { @for l in &rows {
                    tr {
                        td { code { (text(&l["code"])) } }
                        td { (text(&l["label"])) }
                        td {
                            @match l["to_partner_id"].as_str() {
                                Some(to) => (partner_name(alliance, to)),
                                None => (t(AllianceMsg::AnyPartner)),
                            }
                        }
                        td { span.badge { (text(&l["status"])) } }
                        td.num { (int(&l["customers_referred"])) }
                        td.num { (int(&l["first_paid_orders"])) }
                        td.num { (int(&l["fees_earned"])) }
                        td.hide-narrow {
                            @if let Some(at) = l["expires_at"].as_str() { (instant(at, &signed.zone)) }
                        }
                        td {
                            @if act && l["status"] == "active" {
                                form method="post" action=(format!("{page}/referral-links/{}/revoke", encode(&text(&l["id"])))) {
                                    (csrf(signed))
                                    button type="submit" { (t(AllianceMsg::Revoke)) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn link_form(signed: &Signed, page: &str, alliance: &Value) -> Markup {
    let me = text(&alliance["my_partner_id"]);
    let others: Vec<Value> = alliance["partners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| text(&p["partner_id"]) != me && p["status"] == "active")
        .cloned()
        .collect();
    let t = |m: AllianceMsg| signed.t(m);
    html! {
        details {
            summary { (t(AllianceMsg::CreateLink)) }
            form.stack id="link-form" method="post" action=(format!("{page}/referral-links")) {
                (csrf(signed))
                label { (t(AllianceMsg::OnlyAt))
                    select name="to_partner_id" {
                        option value="" { (t(AllianceMsg::AnyPartner)) }
                        @for p in &others { option value=(text(&p["partner_id"])) { (text(&p["name"])) } }
                    }
                }
                label { (t(AllianceMsg::Label)) input type="text" name="label" maxlength="80"; }
                label { (t(AllianceMsg::Expires)) input type="text" name="expires_at" placeholder="2027-12-31"; }
                button type="submit" { (t(AllianceMsg::Create)) }
            }
        }
    }
}

fn create_and_join_forms(signed: &Signed) -> Markup {
    let t = |m: AllianceMsg| signed.t(m);
    html! {
        details.panel {
            summary { (t(AllianceMsg::CreateAlliance)) }
            form.stack id="alliance-form" method="post" action="/console/alliance" {
                (csrf(signed))
                label { (t(AllianceMsg::AllianceName)) input type="text" name="name" required maxlength="80"; }
                label { (t(AllianceMsg::FeeKind))
                    select name="fee_kind" {
                        option value="fixed" { (t(AllianceMsg::FeeFixed)) }
                        option value="percent_bp" { (t(AllianceMsg::FeePercent)) }
                    }
                }
                label { (t(AllianceMsg::FeeValue)) input type="number" name="fee_value" required min="0"; }
                label { (t(AllianceMsg::DisplayName)) input type="text" name="display_name" maxlength="80"; }
                button type="submit" { (t(AllianceMsg::Create)) }
            }
        }
        details.panel {
            summary { (t(AllianceMsg::JoinAlliance)) }
            form.stack id="join-form" method="post" action="/console/alliance/join" {
                (csrf(signed))
                label { (t(AllianceMsg::InvitationCode)) input type="text" name="code" required maxlength="64"; }
                label { (t(AllianceMsg::DisplayName)) input type="text" name="display_name" maxlength="80"; }
                button type="submit" { (t(AllianceMsg::Join)) }
            }
        }
    }
}

/// A number as typed, or the text itself (so the API names the field it cannot read).
fn number(typed: &str) -> Value {
    typed
        .trim()
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(typed.trim().to_owned()))
}

/// Optional text: absent when left empty.
fn optional(body: &mut Value, field: &str, typed: &str) {
    if !typed.trim().is_empty() {
        body[field] = json!(typed.trim());
    }
}

/// POST `body` to `/v1/alliances/{id}{tail}` as the signed operator, with the form's key.
async fn post_alliance<T>(
    console: &Console,
    posted: &Posted<T>,
    id: &str,
    tail: &str,
    body: &Value,
) -> Answer {
    let path = format!("/v1/alliances/{}{tail}", encode(id));
    console
        .call(
            &posted.signed,
            Method::POST,
            &path,
            Some(body),
            posted.form_key.as_deref(),
        )
        .await
}

/// An action without a body ([`post_alliance`] with `{}`), then [`back`] with `done`.
async fn act(
    console: &Console,
    posted: &Posted<EmptyForm>,
    id: &str,
    tail: &str,
    done: &str,
) -> Response {
    let answer = post_alliance(console, posted, id, tail, &json!({})).await;
    back(id, &answer, done)
}

/// Back to the alliance's page with a notice: `done` on success, the API's message otherwise.
fn back(alliance_id: &str, answer: &Answer, done: &str) -> Response {
    let query = if answer.ok() {
        format!("done={done}")
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!(
        "/console/alliance?id={}&{query}",
        encode(alliance_id)
    ))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct AllianceForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    fee_kind: String,
    #[serde(default)]
    fee_value: String,
    #[serde(default)]
    display_name: String,
}

/// `POST /console/alliance`: create an alliance.
async fn create(State(console): State<Console>, Change(posted): Change<AllianceForm>) -> Response {
    let form = &posted.form;
    let mut body = json!({
        "name": form.name.trim(),
        "rules": { "referral_fee": { "kind": form.fee_kind.trim(), "value": number(&form.fee_value) },
                   "fee_on": "first_paid_order" },
    });
    optional(&mut body, "display_name", &form.display_name);
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            "/v1/alliances",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    back(&text(&answer.body["id"]), &answer, "created")
}

#[derive(Debug, Default, Deserialize)]
pub struct JoinForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    display_name: String,
}

/// `POST /console/alliance/join`: join with an invitation code.
async fn join(State(console): State<Console>, Change(posted): Change<JoinForm>) -> Response {
    let mut body = json!({ "code": posted.form.code.trim() });
    optional(&mut body, "display_name", &posted.form.display_name);
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            "/v1/alliances/join",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    back(&text(&answer.body["id"]), &answer, "joined")
}

#[derive(Debug, Default, Deserialize)]
pub struct EmptyForm {}

/// `POST /console/alliance/{id}/invitations`: the page, with the one-time code shown once.
async fn invite(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<EmptyForm>,
) -> Response {
    let signed = &posted.signed;
    let answer = post_alliance(&console, &posted, &id, "/invitations", &json!({})).await;
    if !answer.ok() {
        return back(&id, &answer, "");
    }
    let top = html! {
        section.panel {
            p { (signed.t(AllianceMsg::InvitationShown)) }
            p.secret data-secret id="invitation-code" { (text(&answer.body["code"])) }
            p.muted { (signed.t(AllianceMsg::Expires)) " " (instant(&text(&answer.body["expires_at"]), &signed.zone)) }
        }
    };
    render(&console, signed, &id, top).await
}

#[derive(Debug, Default, Deserialize)]
pub struct OfferForm {
    #[serde(default)]
    coupon_template_id: String,
    #[serde(default)]
    stock: String,
}

/// `POST /console/alliance/{id}/offers`: offer a coupon template.
async fn offer(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<OfferForm>,
) -> Response {
    let body = json!({
        "coupon_template_id": posted.form.coupon_template_id.trim(),
        "stock": number(&posted.form.stock),
    });
    let answer = post_alliance(&console, &posted, &id, "/offers", &body).await;
    back(&id, &answer, "offered")
}

/// `POST /console/alliance/{id}/offers/{offer_id}/withdraw`.
async fn withdraw(
    State(console): State<Console>,
    Path((id, offer_id)): Path<(String, String)>,
    Change(posted): Change<EmptyForm>,
) -> Response {
    let tail = format!("/offers/{}/withdraw", encode(&offer_id));
    act(&console, &posted, &id, &tail, "withdrawn").await
}

#[derive(Debug, Default, Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    to_partner_id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires_at: String,
}

/// `POST /console/alliance/{id}/referral-links`: the page, with the new code shown.
async fn create_link(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<LinkForm>,
) -> Response {
    let signed = &posted.signed;
    let mut body = json!({});
    optional(&mut body, "to_partner_id", &posted.form.to_partner_id);
    optional(&mut body, "label", &posted.form.label);
    optional(&mut body, "expires_at", &posted.form.expires_at);
    let answer = post_alliance(&console, &posted, &id, "/referral-links", &body).await;
    if !answer.ok() {
        return back(&id, &answer, "");
    }
    let top = html! {
        section.panel {
            p { (signed.t(AllianceMsg::LinkShown)) }
            p.secret id="link-code" { (text(&answer.body["code"])) }
        }
    };
    render(&console, signed, &id, top).await
}

/// `POST /console/alliance/{id}/referral-links/{link_id}/revoke`.
async fn revoke_link(
    State(console): State<Console>,
    Path((id, link_id)): Path<(String, String)>,
    Change(posted): Change<EmptyForm>,
) -> Response {
    let tail = format!("/referral-links/{}/revoke", encode(&link_id));
    act(&console, &posted, &id, &tail, "revoked").await
}

#[derive(Debug, Default, Deserialize)]
pub struct SettlementForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reference: String,
}

/// `POST /console/alliance/{id}/settlements`: record a payment made outside shequn.
async fn settle(
    State(console): State<Console>,
    Path(id): Path<String>,
    Change(posted): Change<SettlementForm>,
) -> Response {
    let form = &posted.form;
    let body = json!({
        "from": form.from.trim(), "to": form.to.trim(),
        "amount": number(&form.amount), "reference": form.reference.trim(),
    });
    let answer = post_alliance(&console, &posted, &id, "/settlements", &body).await;
    back(&id, &answer, "settled")
}

#[derive(Debug, Default, Deserialize)]
pub struct MonthParams {
    #[serde(default)]
    month: String,
}

/// `GET /console/alliance/{id}/statement.csv?month=YYYY-MM`: the API's CSV as the operator,
/// streamed through.
async fn download(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<MonthParams>,
) -> Response {
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!(
            "/v1/alliances/{}/statements?month={}&format=csv",
            encode(&id),
            encode(params.month.trim())
        ))
        .body(Body::empty());
    let mut request = match request {
        Ok(request) => request,
        Err(_) => {
            return view::error_page(StatusCode::NOT_FOUND, signed.lang, signed.t(Msg::NotFound))
        }
    };
    request.extensions_mut().insert(signed.auth());
    let response = match console.api.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
        let message = format!("{}: YYYY-MM", signed.t(AllianceMsg::Month));
        return view::error_page(StatusCode::UNPROCESSABLE_ENTITY, signed.lang, &message);
    }
    if !response.status().is_success() {
        return view::error_page(response.status(), signed.lang, signed.t(Msg::NotFound));
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alliance_message_has_both_languages() {
        crate::console::i18n::check_catalogue(AllianceMsg::ALL);
    }
}
