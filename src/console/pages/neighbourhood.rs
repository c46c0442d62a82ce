//! `/console/neighbourhood`: community group buying (社区团购) for operators: the waves with
//! their status and cut-off, the leaders and their pickup points, the leaderboard of the last
//! 30 days, and pickup verification (a leader and the member's code, through
//! `POST /v1/pickups/verify`). `/console/neighbourhood/waves/{id}` shows a wave's pick list
//! per leader and its purchase list, marks a leader's goods arrived, and links the printable
//! page (`…/print?list=pick|purchase`, with no navigation, for the warehouse printer).

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::console::i18n::Msg;
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{
    self, csrf, encode, instant, int, member_link, notice, pager, text, Nav,
};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The community group-buying page's own messages.
    pub enum NeighbourhoodMsg {
        Title => "社区团购", "Group buying";
        Waves => "团期", "Waves";
        Wave => "团期", "Wave";
        Cutoff => "截单时间", "Cut-off";
        Delivery => "配送日", "Delivery";
        Leaders => "团长", "Leaders";
        Leader => "团长", "Leader";
        PickupPoint => "自提点", "Pickup point";
        CommissionRate => "佣金比例", "Commission rate";
        Verify => "核销", "Verify pickup";
        Code => "核销码", "Pickup code";
        Verified => "已核销", "Picked up";
        PickList => "分拣单", "Pick list";
        PurchaseList => "采购单", "Purchase list";
        Print => "打印", "Print";
        Arrived => "已到货", "Goods arrived";
        MarkedArrived => "已标记到货", "Marked arrived";
        Product => "商品", "Product";
        Qty => "数量", "Qty";
        Leaderboard => "近 30 天团长排行", "Leaders, last 30 days";
        Rank => "名次", "Rank";
        Orders => "订单", "Orders";
        Gmv => "成交额", "GMV";
        NoPaidOrders => "还没有已支付订单", "No paid orders yet";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/neighbourhood", get(page))
        .route("/console/neighbourhood/verify", post(verify))
        .route("/console/neighbourhood/waves/{id}", get(wave_page))
        .route("/console/neighbourhood/waves/{id}/print", get(print))
        .route(
            "/console/neighbourhood/waves/{id}/leaders/{leader}/arrived",
            post(arrived),
        )
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    cursor: String,
    /// `verified` or `arrived` after an action.
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/neighbourhood`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let (leaders, board) = tokio::join!(
        console.get(&signed, "/v1/leaders?limit=200"),
        console.get(&signed, "/v1/leaders/leaderboard?period=30d&limit=20"),
    );
    let waves = console.list(&signed, "/v1/waves", &params.cursor).await;
    let leaders = leaders.body["data"].as_array().cloned().unwrap_or_default();
    let body = html! {
        @if params.done == "verified" { (notice(true, signed.t(NeighbourhoodMsg::Verified))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        @if signed.operator.role.may_change() {
            section.panel {
                h2 { (signed.t(NeighbourhoodMsg::Verify)) }
                (verify_form(&signed, &leaders))
            }
        }
        section.panel {
            h2 { (signed.t(NeighbourhoodMsg::Waves)) }
            @if let Some(error) = &waves.error { (notice(false, error)) }
            (wave_table(&signed, &waves.rows))
            (pager(&signed, "/console/neighbourhood", "cursor", &params.cursor, waves.next.as_deref()))
        }
        section.panel {
            h2 { (signed.t(NeighbourhoodMsg::Leaders)) }
            (leader_table(&signed, &leaders))
        }
        section.panel {
            h2 { (signed.t(NeighbourhoodMsg::Leaderboard)) }
            (leaderboard(&signed, &board.body))
        }
    };
    Ok(view::page(
        &signed,
        Nav::Neighbourhood,
        signed.t(NeighbourhoodMsg::Title),
        body,
    ))
}

fn verify_form(signed: &Signed, leaders: &[Value]) -> Markup {
    html! {
        form.inline method="post" action="/console/neighbourhood/verify" {
            (csrf(signed))
            label { (signed.t(NeighbourhoodMsg::Leader)) " "
                select name="leader_id" {
                    @for l in leaders {
                        option value=(text(&l["id"])) { (text(&l["name"])) " · " (text(&l["pickup_point"]["name"])) }
                    }
                }
            }
            " "
            label { (signed.t(NeighbourhoodMsg::Code)) " "
                input name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" required;
            }
            " "
            button type="submit" { (signed.t(NeighbourhoodMsg::Verify)) }
        }
    }
}

fn wave_table(signed: &Signed, rows: &[Value]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(NeighbourhoodMsg::Wave)) } th { (signed.t(Msg::Status)) }
                    th { (signed.t(NeighbourhoodMsg::Cutoff)) } th { (signed.t(NeighbourhoodMsg::Delivery)) }
                    th.num { (signed.t(NeighbourhoodMsg::Orders)) }
                } }
                tbody {
                    @for w in rows {
                        tr {
                            td { a href=(format!("/console/neighbourhood/waves/{}", encode(&text(&w["id"])))) { (text(&w["name"])) } }
                            td { span.badge { (text(&w["status"])) } }
                            td { (instant(&text(&w["cutoff_at"]), &signed.zone)) }
                            td { (text(&w["delivery_date"])) }
                            td.num { @if w["totals"].is_object() { (int(&w["totals"]["orders"])) } @else { "—" } }
                        }
                    }
                }
            }
        }
    }
}

fn leader_table(signed: &Signed, rows: &[Value]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(NeighbourhoodMsg::Leader)) } th { (signed.t(Msg::Status)) }
                    th { (signed.t(NeighbourhoodMsg::PickupPoint)) }
                    th.num { (signed.t(NeighbourhoodMsg::CommissionRate)) }
                } }
                tbody {
                    @for l in rows {
                        tr {
                            td { (text(&l["name"])) " " (member_link(&text(&l["member_id"]))) }
                            td { span.badge { (text(&l["status"])) } }
                            td { (text(&l["pickup_point"]["name"])) " · " (text(&l["pickup_point"]["address"])) }
                            td.num { (format!("{:.1}%", int(&l["commission_bp"]) as f64 / 100.0)) }
                        }
                    }
                }
            }
        }
    }
}

fn leaderboard(signed: &Signed, board: &Value) -> Markup {
    let rows = board["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th.num { (signed.t(NeighbourhoodMsg::Rank)) } th { (signed.t(NeighbourhoodMsg::Leader)) }
                    th.num { (signed.t(NeighbourhoodMsg::Orders)) } th.num { (signed.t(NeighbourhoodMsg::Gmv)) }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td.num { (text(&r["rank"])) }
                            td { (text(&r["name"])) }
                            td.num { (int(&r["orders"])) }
                            td.num { (int(&r["gmv"])) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    leader_id: String,
    code: String,
}

/// `POST /console/neighbourhood/verify`.
async fn verify(State(console): State<Console>, Change(posted): Change<VerifyForm>) -> Response {
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            "/v1/pickups/verify",
            Some(&json!({"leader_id": posted.form.leader_id, "code": posted.form.code})),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        "done=verified".to_owned()
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!("/console/neighbourhood?{query}")).into_response()
}

fn list_table(signed: &Signed, items: &[Value]) -> Markup {
    html! {
        table {
            thead { tr {
                th { "SKU" } th { (signed.t(NeighbourhoodMsg::Product)) }
                th.num { (signed.t(NeighbourhoodMsg::Qty)) }
            } }
            tbody {
                @for i in items {
                    tr { td { (text(&i["sku"])) } td { (text(&i["name"])) } td.num { (int(&i["qty"])) } }
                }
            }
        }
    }
}

/// `GET /console/neighbourhood/waves/{id}`.
async fn wave_page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/waves/{}", encode(&id));
    let (pick_path, purchase_path) = (format!("{base}/pick-list"), format!("{base}/purchase-list"));
    let (wave, pick, purchase) = tokio::join!(
        console.get(&signed, &base),
        console.get(&signed, &pick_path),
        console.get(&signed, &purchase_path),
    );
    if wave.status == StatusCode::NOT_FOUND {
        return Ok(view::error_page(
            StatusCode::NOT_FOUND,
            signed.lang,
            signed.t(Msg::NotFound),
        ));
    }
    let w = &wave.body;
    let here = format!("/console/neighbourhood/waves/{}", encode(&id));
    let leaders = pick.body["leaders"].as_array().cloned().unwrap_or_default();
    let items = purchase.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let body = html! {
        @if params.done == "arrived" { (notice(true, signed.t(NeighbourhoodMsg::MarkedArrived))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        @if !wave.ok() { (notice(false, &wave.message())) }
        section.panel {
            dl.facts {
                dt { (signed.t(Msg::Status)) } dd { span.badge { (text(&w["status"])) } }
                dt { (signed.t(NeighbourhoodMsg::Cutoff)) } dd { (instant(&text(&w["cutoff_at"]), &signed.zone)) }
                dt { (signed.t(NeighbourhoodMsg::Delivery)) } dd { (text(&w["delivery_date"])) }
            }
        }
        section.panel {
            h2 { (signed.t(NeighbourhoodMsg::PurchaseList)) " "
                a href=(format!("{here}/print?list=purchase")) { (signed.t(NeighbourhoodMsg::Print)) } }
            @if items.is_empty() { p.muted { (signed.t(NeighbourhoodMsg::NoPaidOrders)) } }
            @else { (list_table(&signed, &items)) }
        }
        section.panel {
            h2 { (signed.t(NeighbourhoodMsg::PickList)) " "
                a href=(format!("{here}/print?list=pick")) { (signed.t(NeighbourhoodMsg::Print)) } }
            @if leaders.is_empty() { p.muted { (signed.t(NeighbourhoodMsg::NoPaidOrders)) } }
            @for l in &leaders {
                h3 { (text(&l["leader_name"])) " · " (text(&l["pickup_point"]["name"])) }
                p.muted { (text(&l["pickup_point"]["address"])) }
                (list_table(&signed, l["items"].as_array().map(Vec::as_slice).unwrap_or(&[])))
                @if signed.operator.role.may_change() {
                    form.inline method="post" action=(format!("{here}/leaders/{}/arrived", encode(&text(&l["leader_id"])))) {
                        (csrf(&signed))
                        button type="submit" { (signed.t(NeighbourhoodMsg::Arrived)) }
                    }
                }
            }
        }
    };
    let title = format!(
        "{} · {}",
        signed.t(NeighbourhoodMsg::Wave),
        text(&w["name"])
    );
    Ok(view::page(&signed, Nav::Neighbourhood, &title, body))
}

#[derive(Debug, Default, Deserialize)]
pub struct PrintParams {
    #[serde(default)]
    list: String,
}

/// `GET /console/neighbourhood/waves/{id}/print?list=pick|purchase`: the printable list.
async fn print(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<PrintParams>,
) -> Result<Response, Refusal> {
    let pick = params.list != "purchase";
    let base = format!("/v1/waves/{}", encode(&id));
    let list_path = format!(
        "{base}/{}",
        if pick { "pick-list" } else { "purchase-list" }
    );
    let (wave, list) = tokio::join!(
        console.get(&signed, &base),
        console.get(&signed, &list_path)
    );
    if !wave.ok() || !list.ok() {
        return Ok(view::error_page(
            StatusCode::NOT_FOUND,
            signed.lang,
            signed.t(Msg::NotFound),
        ));
    }
    let title = format!(
        "{} · {}",
        signed.t(if pick {
            NeighbourhoodMsg::PickList
        } else {
            NeighbourhoodMsg::PurchaseList
        }),
        text(&wave.body["name"])
    );
    let empty = Vec::new();
    let markup = html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                title { (title) }
                style { "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:4px 8px}.num{text-align:right}section{page-break-after:always}" }
            }
            body {
                h1 { (title) }
                p { (signed.t(NeighbourhoodMsg::Delivery)) " " (text(&wave.body["delivery_date"])) }
                @if pick {
                    @for l in list.body["leaders"].as_array().unwrap_or(&empty) {
                        section {
                            h2 { (text(&l["leader_name"])) " · " (text(&l["pickup_point"]["name"])) }
                            p { (text(&l["pickup_point"]["address"])) }
                            (list_table(&signed, l["items"].as_array().map(Vec::as_slice).unwrap_or(&[])))
                        }
                    }
                } @else {
                    (list_table(&signed, list.body["items"].as_array().map(Vec::as_slice).unwrap_or(&[])))
                }
            }
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ArrivedForm {}

/// `POST /console/neighbourhood/waves/{id}/leaders/{leader}/arrived`.
async fn arrived(
    State(console): State<Console>,
    Path((id, leader)): Path<(String, String)>,
    Change(posted): Change<ArrivedForm>,
) -> Response {
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            &format!(
                "/v1/waves/{}/leaders/{}/arrived",
                encode(&id),
                encode(&leader)
            ),
            Some(&json!({})),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        "done=arrived".to_owned()
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!(
        "/console/neighbourhood/waves/{}?{query}",
        encode(&id)
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_neighbourhood_message_has_both_languages() {
        crate::console::i18n::check_catalogue(NeighbourhoodMsg::ALL);
    }
}
