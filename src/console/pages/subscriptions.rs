//! `/console/subscriptions`: subscriptions (周期购): the plans, the warehouse forecast of a plan
//! (units per week, eight weeks ahead), and the subscriptions filtered by status, each with
//! its next delivery, paused, resumed or cancelled through `/v1/subscriptions/{id}/…`.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::console::i18n::Msg;
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{self, csrf, encode, int, member_link, money, notice, pager, text, Nav};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The subscriptions page's own messages.
    pub enum SubscriptionMsg {
        Title => "周期购", "Subscriptions";
        Plans => "周期购方案", "Plans";
        Name => "名称", "Name";
        Schedule => "配送周期", "Schedule";
        Deliveries => "期数", "Deliveries";
        OpenEnded => "不限期", "Open-ended";
        PricePerDelivery => "每期价格", "Price per delivery";
        Billing => "付款方式", "Billing";
        Prepaid => "预付", "Prepaid";
        PerDelivery => "按期付", "Per delivery";
        Active => "上架", "Active";
        Inactive => "已停售", "Inactive";
        Forecast => "未来 8 周备货", "Forecast, next 8 weeks";
        WeekOf => "周（周一）", "Week of";
        Units => "件数", "Units";
        Subscriptions => "订阅", "Subscriptions";
        Member => "会员", "Member";
        Remaining => "剩余期数", "Remaining";
        NextDelivery => "下次配送", "Next delivery";
        Pause => "暂停", "Pause";
        Resume => "恢复", "Resume";
        Cancel => "取消", "Cancel";
        Done => "已更新", "Updated";
        All => "全部", "All";
        EveryWeeks => "每 {} 周", "Every {} weeks";
        EveryMonths => "每 {} 月", "Every {} months";
        DaysOfMonth => "每月 {} 日", "Days {} of each month";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/subscriptions", get(page))
        .route("/console/subscriptions/{id}/{action}", post(act))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    cursor: String,
    /// The plan whose forecast is shown (default: the newest).
    #[serde(default)]
    plan: String,
    /// `active`, `paused`, `cancelled`, `completed` or empty (all).
    #[serde(default)]
    status: String,
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

const STATUSES: [&str; 4] = ["active", "paused", "cancelled", "completed"];

/// `GET /console/subscriptions`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let plans = console
        .get(&signed, "/v1/subscription-plans?limit=200")
        .await;
    let plan_rows = plans.body["data"].as_array().cloned().unwrap_or_default();
    let chosen = if params.plan.is_empty() {
        plan_rows
            .first()
            .map(|p| text(&p["id"]))
            .unwrap_or_default()
    } else {
        params.plan.clone()
    };
    let forecast = if chosen.is_empty() {
        None
    } else {
        Some(
            console
                .get(
                    &signed,
                    &format!(
                        "/v1/subscription-plans/{}/forecast?weeks=8",
                        encode(&chosen)
                    ),
                )
                .await,
        )
    };
    let status = STATUSES
        .iter()
        .find(|s| **s == params.status)
        .copied()
        .unwrap_or("");
    let base = if status.is_empty() {
        "/v1/subscriptions".to_owned()
    } else {
        format!("/v1/subscriptions?status={status}")
    };
    let subs = console.list(&signed, &base, &params.cursor).await;
    let here = if status.is_empty() {
        "/console/subscriptions".to_owned()
    } else {
        format!("/console/subscriptions?status={status}")
    };
    let body = html! {
        @if !params.done.is_empty() { (notice(true, signed.t(SubscriptionMsg::Done))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        section.panel {
            h2 { (signed.t(SubscriptionMsg::Plans)) }
            @if !plans.ok() { (notice(false, &plans.message())) }
            (plan_table(&signed, &plan_rows))
        }
        @if let Some(forecast) = &forecast {
            section.panel {
                h2 { (signed.t(SubscriptionMsg::Forecast)) " · " (chosen) }
                @if forecast.ok() { (forecast_table(&signed, &forecast.body)) }
                @else { (notice(false, &forecast.message())) }
            }
        }
        section.panel {
            h2 { (signed.t(SubscriptionMsg::Subscriptions)) }
            p {
                a href="/console/subscriptions" { (signed.t(SubscriptionMsg::All)) }
                @for s in STATUSES {
                    " · " a href=(format!("/console/subscriptions?status={s}")) { (s) }
                }
            }
            @if let Some(error) = &subs.error { (notice(false, error)) }
            (subscription_table(&signed, &subs.rows))
            (pager(&signed, &here, "cursor", &params.cursor, subs.next.as_deref()))
        }
    };
    Ok(view::page(
        &signed,
        Nav::Subscriptions,
        signed.t(SubscriptionMsg::Title),
        body,
    ))
}

fn schedule_text(signed: &Signed, schedule: &Value) -> String {
    if let Some(days) = schedule["days_of_month"].as_array() {
        let days: Vec<String> = days.iter().map(text).collect();
        return signed
            .t(SubscriptionMsg::DaysOfMonth)
            .replace("{}", &days.join(", "));
    }
    let every = text(&schedule["every"]);
    let message = if schedule["unit"] == "month" {
        SubscriptionMsg::EveryMonths
    } else {
        SubscriptionMsg::EveryWeeks
    };
    signed.t(message).replace("{}", &every)
}

fn plan_table(signed: &Signed, rows: &[Value]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(SubscriptionMsg::Name)) } th { (signed.t(SubscriptionMsg::Schedule)) }
                    th.num { (signed.t(SubscriptionMsg::Deliveries)) }
                    th.num { (signed.t(SubscriptionMsg::PricePerDelivery)) }
                    th { (signed.t(SubscriptionMsg::Billing)) } th { (signed.t(Msg::Status)) }
                } }
                tbody {
                    @for p in rows {
                        tr {
                            td { a href=(format!("/console/subscriptions?plan={}", encode(&text(&p["id"])))) { (text(&p["name"])) } }
                            td { (schedule_text(signed, &p["schedule"])) }
                            td.num {
                                @if p["deliveries"].is_null() { (signed.t(SubscriptionMsg::OpenEnded)) }
                                @else { (int(&p["deliveries"])) }
                            }
                            td.num { (money(int(&p["price_per_delivery"]))) }
                            td {
                                @if p["billing"] == "prepaid" { (signed.t(SubscriptionMsg::Prepaid)) }
                                @else { (signed.t(SubscriptionMsg::PerDelivery)) }
                            }
                            td { span.badge {
                                @if p["active"] == true { (signed.t(SubscriptionMsg::Active)) }
                                @else { (signed.t(SubscriptionMsg::Inactive)) }
                            } }
                        }
                    }
                }
            }
        }
    }
}

fn forecast_table(signed: &Signed, forecast: &Value) -> Markup {
    let weeks = forecast["weeks"].as_array().cloned().unwrap_or_default();
    html! {
        table {
            thead { tr {
                th { (signed.t(SubscriptionMsg::WeekOf)) }
                th.num { (signed.t(SubscriptionMsg::Units)) }
                th.num { (signed.t(SubscriptionMsg::Deliveries)) }
            } }
            tbody {
                @for w in &weeks {
                    tr {
                        td { (text(&w["week_start"])) }
                        td.num { (int(&w["units"])) }
                        td.num { (int(&w["deliveries"])) }
                    }
                }
                tr {
                    td { strong { (signed.t(Msg::Total)) } }
                    td.num { strong { (int(&forecast["total_units"])) } }
                    td {}
                }
            }
        }
    }
}

fn next_delivery(sub: &Value) -> String {
    sub["deliveries"]
        .as_array()
        .and_then(|days| days.iter().find(|d| d["status"] == "scheduled"))
        .map(|d| text(&d["date"]))
        .unwrap_or_else(|| "—".to_owned())
}

fn subscription_table(signed: &Signed, rows: &[Value]) -> Markup {
    let may_change = signed.operator.role.may_change();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(SubscriptionMsg::Member)) } th { (signed.t(SubscriptionMsg::Plans)) }
                    th { (signed.t(Msg::Status)) } th.num { (signed.t(SubscriptionMsg::Remaining)) }
                    th { (signed.t(SubscriptionMsg::NextDelivery)) }
                    @if may_change { th { (signed.t(Msg::Action)) } }
                } }
                tbody {
                    @for s in rows {
                        @let action = format!("/console/subscriptions/{}", encode(&text(&s["id"])));
                        tr {
                            td { (member_link(&text(&s["member_id"]))) }
                            td { (text(&s["plan_id"])) }
                            td { span.badge { (text(&s["status"])) } }
                            td.num {
                                @if s["remaining"].is_null() { (signed.t(SubscriptionMsg::OpenEnded)) }
                                @else { (int(&s["remaining"])) }
                            }
                            td { (next_delivery(s)) }
                            @if may_change {
                                td {
                                    @if s["status"] == "active" {
                                        form.inline method="post" action=(format!("{action}/pause")) {
                                            (csrf(signed))
                                            button type="submit" { (signed.t(SubscriptionMsg::Pause)) }
                                        }
                                    }
                                    @if s["status"] == "paused" {
                                        form.inline method="post" action=(format!("{action}/resume")) {
                                            (csrf(signed))
                                            button type="submit" { (signed.t(SubscriptionMsg::Resume)) }
                                        }
                                    }
                                    @if s["status"] == "active" || s["status"] == "paused" {
                                        form.inline method="post" action=(format!("{action}/cancel")) {
                                            (csrf(signed))
                                            button.danger type="submit" { (signed.t(SubscriptionMsg::Cancel)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ActForm {}

/// `POST /console/subscriptions/{id}/pause|resume|cancel`.
async fn act(
    State(console): State<Console>,
    Path((id, action)): Path<(String, String)>,
    Change(posted): Change<ActForm>,
) -> Response {
    if !matches!(action.as_str(), "pause" | "resume" | "cancel") {
        let lang = posted.signed.lang;
        return view::error_page(StatusCode::NOT_FOUND, lang, posted.signed.t(Msg::NotFound));
    }
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            &format!("/v1/subscriptions/{}/{action}", encode(&id)),
            Some(&json!({})),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        format!("done={action}")
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!("/console/subscriptions?{query}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscription_message_has_both_languages() {
        crate::console::i18n::check_catalogue(SubscriptionMsg::ALL);
    }
}
