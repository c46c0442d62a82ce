//! `/console/distribution`: distribution (分销) at a glance: the summary (GMV through
//! promoters, commission pending / available / paid, debt, cost ratio), the applications
//! waiting for approval (approved or rejected through `/v1/promoters/{id}/approve|reject`),
//! the promoters and the leaderboard of the last 30 days.

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
use crate::console::view::{
    self, csrf, encode, instant, int, member_link, notice, pager, text, Nav,
};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The distribution page's own messages.
    pub enum DistributionMsg {
        Title => "分销", "Distribution";
        Disabled => "分销未开启（PUT /v1/distribution/settings）", "Distribution is off (PUT /v1/distribution/settings)";
        Gmv => "推广成交额", "GMV through promoters";
        Pending => "冻结中佣金", "Commission pending";
        Available => "可提现佣金", "Commission available";
        Paid => "已提现佣金", "Commission withdrawn";
        Debt => "退款欠款", "Refund debt";
        CostRatio => "佣金成本率", "Cost ratio";
        Promoters => "推广员", "Promoters";
        Applications => "待审核申请", "Applications waiting";
        Promoter => "推广员", "Promoter";
        Member => "会员", "Member";
        ShareCode => "推广码", "Share code";
        Approve => "通过", "Approve";
        Reject => "拒绝", "Reject";
        Approved => "已通过", "Approved";
        Rejected => "已拒绝", "Rejected";
        Leaderboard => "近 30 天排行", "Last 30 days";
        Rank => "名次", "Rank";
        Orders => "订单", "Orders";
        Commission => "佣金", "Commission";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/distribution", get(page))
        .route(
            "/console/distribution/promoters/{id}/{decision}",
            post(decide),
        )
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    cursor: String,
    /// `approved` or `rejected` after a decision.
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/distribution`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let (settings, summary, pending, board) = tokio::join!(
        console.get(&signed, "/v1/distribution/settings"),
        console.get(&signed, "/v1/distribution/summary"),
        console.get(&signed, "/v1/promoters?status=pending&limit=200"),
        console.get(&signed, "/v1/distribution/leaderboard?period=30d&limit=20"),
    );
    let promoters = console.list(&signed, "/v1/promoters", &params.cursor).await;
    let pending = pending.body["data"].as_array().cloned().unwrap_or_default();
    let body = html! {
        @if params.done == "approved" { (notice(true, signed.t(DistributionMsg::Approved))) }
        @if params.done == "rejected" { (notice(true, signed.t(DistributionMsg::Rejected))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        @if settings.body["enabled"] == false { (notice(false, signed.t(DistributionMsg::Disabled))) }
        @if summary.ok() { (summary_panel(&signed, &summary.body)) }
        @else { (notice(false, &summary.message())) }
        section.panel {
            h2 { (signed.t(DistributionMsg::Applications)) }
            (applications(&signed, &pending))
        }
        section.panel {
            h2 { (signed.t(DistributionMsg::Leaderboard)) }
            (leaderboard(&signed, &board.body))
        }
        section.panel {
            h2 { (signed.t(DistributionMsg::Promoters)) }
            @if let Some(error) = &promoters.error { (notice(false, error)) }
            (promoter_table(&signed, &promoters.rows))
            (pager(&signed, "/console/distribution", "cursor", &params.cursor, promoters.next.as_deref()))
        }
    };
    Ok(view::page(
        &signed,
        Nav::Distribution,
        signed.t(DistributionMsg::Title),
        body,
    ))
}

fn summary_panel(signed: &Signed, s: &Value) -> Markup {
    let ratio = s["cost_ratio"]
        .as_f64()
        .map(view::percent)
        .unwrap_or_else(|| "—".to_owned());
    html! {
        section.panel {
            dl.facts {
                dt { (signed.t(DistributionMsg::Promoters)) } dd { (int(&s["promoters"])) }
                dt { (signed.t(DistributionMsg::Gmv)) } dd { (int(&s["gmv"])) }
                dt { (signed.t(DistributionMsg::Pending)) } dd { (int(&s["commission"]["pending"])) }
                dt { (signed.t(DistributionMsg::Available)) } dd { (int(&s["commission"]["available"])) }
                dt { (signed.t(DistributionMsg::Paid)) } dd { (int(&s["commission"]["paid"])) }
                dt { (signed.t(DistributionMsg::Debt)) } dd { (int(&s["commission"]["debt"])) }
                dt { (signed.t(DistributionMsg::CostRatio)) } dd { (ratio) }
            }
        }
    }
}

fn applications(signed: &Signed, pending: &[Value]) -> Markup {
    let may_change = signed.operator.role.may_change();
    html! {
        @if pending.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(DistributionMsg::Member)) } th { (signed.t(DistributionMsg::Promoter)) }
                    th.hide-narrow { (signed.t(Msg::Created)) }
                    @if may_change { th { (signed.t(Msg::Action)) } }
                } }
                tbody {
                    @for p in pending {
                        @let action = format!("/console/distribution/promoters/{}", encode(&text(&p["id"])));
                        tr {
                            td { (member_link(&text(&p["member_id"]))) }
                            td { (text(&p["id"])) }
                            td.hide-narrow { (instant(&text(&p["created_at"]), &signed.zone)) }
                            @if may_change {
                                td {
                                    form.inline method="post" action=(format!("{action}/approve")) {
                                        (csrf(signed))
                                        button type="submit" { (signed.t(DistributionMsg::Approve)) }
                                    }
                                    form.inline method="post" action=(format!("{action}/reject")) {
                                        (csrf(signed))
                                        button.danger type="submit" { (signed.t(DistributionMsg::Reject)) }
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

fn leaderboard(signed: &Signed, board: &Value) -> Markup {
    let rows = board["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th.num { (signed.t(DistributionMsg::Rank)) } th { (signed.t(DistributionMsg::Member)) }
                    th.num { (signed.t(DistributionMsg::Orders)) } th.num { (signed.t(DistributionMsg::Gmv)) }
                    th.num { (signed.t(DistributionMsg::Commission)) }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td.num { (text(&r["rank"])) }
                            td { (member_link(&text(&r["member_id"]))) }
                            td.num { (int(&r["orders"])) }
                            td.num { (int(&r["gmv"])) }
                            td.num { (int(&r["commission"])) }
                        }
                    }
                }
            }
        }
    }
}

fn promoter_table(signed: &Signed, rows: &[Value]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(DistributionMsg::Member)) } th { (signed.t(Msg::Status)) }
                    th { (signed.t(DistributionMsg::ShareCode)) } th.num { (signed.t(DistributionMsg::Debt)) }
                    th.hide-narrow { (signed.t(Msg::Created)) }
                } }
                tbody {
                    @for p in rows {
                        tr {
                            td { (member_link(&text(&p["member_id"]))) }
                            td { span.badge { (text(&p["status"])) } }
                            td { (text(&p["share_code"])) }
                            td.num { (int(&p["debt"])) }
                            td.hide-narrow { (instant(&text(&p["created_at"]), &signed.zone)) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {}

/// `POST /console/distribution/promoters/{id}/approve|reject`.
async fn decide(
    State(console): State<Console>,
    Path((id, decision)): Path<(String, String)>,
    Change(posted): Change<DecideForm>,
) -> Response {
    let done = match decision.as_str() {
        "approve" => "approved",
        "reject" => "rejected",
        _ => {
            let lang = posted.signed.lang;
            return view::error_page(StatusCode::NOT_FOUND, lang, posted.signed.t(Msg::NotFound));
        }
    };
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            &format!("/v1/promoters/{}/{decision}", encode(&id)),
            Some(&json!({})),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        format!("done={done}")
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!("/console/distribution?{query}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_distribution_message_has_both_languages() {
        crate::console::i18n::check_catalogue(DistributionMsg::ALL);
    }
}
