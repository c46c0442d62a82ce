//! `/console/`: today's and the last 30 days' numbers, each day as a chart, the best sellers and
//! the flash sales selling now.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde_json::{json, Value};

use crate::console::i18n::{Message as _, Msg};
use crate::console::session::{Refusal, Signed};
use crate::console::view::{self, int, money, text, Nav};
use crate::console::Console;

/// `GET /console`: the dashboard lives at `/console/`.
pub async fn redirect() -> Response {
    Redirect::permanent("/console/").into_response()
}

fn card(label: &str, value: String, sub: Option<String>) -> Markup {
    html! {
        div.card {
            div.label { (label) }
            div.value { (value) }
            @if let Some(sub) = sub { div.sub { (sub) } }
        }
    }
}

/// The daily series as one chart: GMV (yuan) as bars, orders and new members as lines.
fn daily_chart(signed: &Signed, daily: &[Value]) -> Value {
    // `MM-DD`: the year is in the heading.
    let dates: Vec<String> = daily
        .iter()
        .map(|d| {
            let date = text(&d["date"]);
            date.get(5..).map(str::to_owned).unwrap_or(date)
        })
        .collect();
    let gmv: Vec<f64> = daily
        .iter()
        .map(|d| int(&d["paid_gmv"]) as f64 / 100.0)
        .collect();
    let orders: Vec<i64> = daily.iter().map(|d| int(&d["paid_orders"])).collect();
    let joined: Vec<i64> = daily.iter().map(|d| int(&d["new_members"])).collect();
    let active: Vec<i64> = daily.iter().map(|d| int(&d["active_members"])).collect();
    let (gmv_name, orders_name) = (signed.t(Msg::PaidGmvYuan), signed.t(Msg::PaidOrders));
    let (new_name, active_name) = (signed.t(Msg::NewMembers), signed.t(Msg::ActiveMembers));
    json!({
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 48, "right": 40, "top": 36, "bottom": 28},
        "xAxis": {"type": "category", "data": dates},
        "yAxis": [{"type": "value", "name": "¥"}, {"type": "value"}],
        "series": [
            {"name": gmv_name, "type": "bar", "data": gmv, "itemStyle": {"color": "#f59e0b"}},
            {"name": orders_name, "type": "line", "yAxisIndex": 1, "data": orders, "smooth": true},
            {"name": new_name, "type": "line", "yAxisIndex": 1, "data": joined, "smooth": true},
            {"name": active_name, "type": "line", "yAxisIndex": 1, "data": active, "smooth": true},
        ]
    })
}

fn top_products_chart(signed: &Signed, top: &[Value]) -> Value {
    let names: Vec<String> = top
        .iter()
        .rev()
        .map(|p| {
            let name = text(&p["name"]);
            if name.is_empty() {
                text(&p["sku"])
            } else {
                name
            }
        })
        .collect();
    let units: Vec<i64> = top.iter().rev().map(|p| int(&p["units"])).collect();
    json!({
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 110, "right": 20, "top": 10, "bottom": 24},
        "xAxis": {"type": "value"},
        "yAxis": {"type": "category", "data": names},
        "series": [{"name": signed.t(Msg::Units), "type": "bar", "data": units,
                    "itemStyle": {"color": "#c2410c"}}]
    })
}

/// `GET /console/`.
pub async fn page(State(console): State<Console>, signed: Signed) -> Result<Response, Refusal> {
    let overview = console.get(&signed, "/v1/analytics/overview?days=30").await;
    if !overview.ok() {
        return Err(Refusal::Page(
            overview.status,
            signed.lang,
            overview.message(),
        ));
    }
    let o = &overview.body;
    let sales = console.get(&signed, "/v1/flash-sales?limit=50").await;
    let running: Vec<&Value> = sales.body["data"]
        .as_array()
        .map(|all| all.iter().filter(|s| s["status"] == "running").collect())
        .unwrap_or_default();
    let daily = o["daily"].as_array().cloned().unwrap_or_default();
    let top = o["top_products"].as_array().cloned().unwrap_or_default();
    let t = |m| signed.t(m);
    let body = html! {
        h2 { (t(Msg::Today)) " · " (text(&o["to"])) }
        div.cards {
            (card(t(Msg::PaidGmv), money(int(&o["today"]["paid_gmv"])), Some(format!("{} {}", t(Msg::Refunded), money(int(&o["today"]["refunded"]))))))
            (card(t(Msg::PaidOrders), int(&o["today"]["paid_orders"]).to_string(), None))
            (card(t(Msg::NewMembers), int(&o["today"]["new_members"]).to_string(), None))
            (card(t(Msg::ActiveMembers), int(&o["today"]["active_members"]).to_string(), None))
        }
        h2 { (Msg::LastDays.fill(signed.lang, &[&text(&o["days"])])) " · " (text(&o["from"])) " – " (text(&o["to"])) }
        div.cards {
            (card(t(Msg::PaidGmv), money(int(&o["period"]["paid_gmv"])), Some(format!("{} {}", t(Msg::Refunded), money(int(&o["period"]["refunded"]))))))
            (card(t(Msg::PaidOrders), int(&o["period"]["paid_orders"]).to_string(), None))
            (card(t(Msg::NewMembers), int(&o["period"]["new_members"]).to_string(), None))
            (card(t(Msg::ActiveMembers), int(&o["period"]["active_members"]).to_string(), None))
        }
        section.panel { (view::chart(&daily_chart(&signed, &daily), true)) }
        div.grid2 {
            section.panel {
                h2 { (t(Msg::TopProducts)) }
                @if top.is_empty() { p.muted { (t(Msg::NoneYet)) } }
                @else { (view::chart(&top_products_chart(&signed, &top), false)) }
            }
            section.panel {
                h2 { (t(Msg::RunningFlashSales)) }
                @if running.is_empty() { p.muted { (t(Msg::NoneYet)) } }
                @else {
                    table {
                        thead { tr { th { (t(Msg::Product)) } th.num { (t(Msg::Price)) } th.num { (t(Msg::Sold)) } th.num { (t(Msg::Reserved)) } th.num { (t(Msg::Available)) } } }
                        tbody {
                            @for sale in &running {
                                tr {
                                    td { (text(&sale["product_id"])) }
                                    td.num { (money(int(&sale["price"]))) }
                                    td.num { (int(&sale["sold"])) }
                                    td.num { (int(&sale["reserved"])) }
                                    td.num { (int(&sale["available"])) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(&signed, Nav::Dashboard, t(Msg::Dashboard), body))
}
