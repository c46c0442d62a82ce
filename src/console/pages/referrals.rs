//! `/console/referrals`: the referral campaigns (裂变, 老带新); `/console/referrals/{id}`: one
//! campaign's funnel (codes issued → signups → qualified → rewarded, with the K-factor), its
//! leaderboard, and its referrals waiting in the review queue, each approved or rejected
//! through `/v1/referral-reviews/{id}/approve|reject`.

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
    /// The referral pages' own messages.
    pub enum ReferralMsg {
        Campaigns => "裂变活动", "Campaigns";
        Campaign => "活动", "Campaign";
        QualifyOn => "达成条件", "Qualifies on";
        Running => "进行中", "Running";
        NotRunning => "未进行", "Not running";
        Spent => "已用预算", "Spent";
        Budget => "预算", "Budget";
        Unlimited => "不限", "Unlimited";
        StartsAt => "开始时间", "Starts";
        EndsAt => "结束时间", "Ends";
        Funnel => "转化漏斗", "Funnel";
        CodesIssued => "发放邀请码", "Codes issued";
        Signups => "注册", "Signups";
        Qualified => "达成", "Qualified";
        Rewarded => "已发奖励", "Rewarded";
        Refused => "风控拒绝", "Refused";
        InReview => "待审核", "In review";
        RewardCost => "奖励成本", "Reward cost";
        SignupRate => "注册率", "Signup rate";
        KFactor => "K 因子", "K-factor";
        Leaderboard => "邀请排行榜", "Leaderboard";
        Rank => "名次", "Rank";
        Inviter => "邀请人", "Inviter";
        Invitee => "被邀请人", "Invitee";
        Invites => "有效邀请", "Qualified invites";
        ReviewQueue => "待审核推荐", "Review queue";
        Note => "备注（可选）", "Note (optional)";
        Approve => "通过", "Approve";
        Reject => "拒绝", "Reject";
        Approved => "已通过，奖励按活动规则发放", "Approved: rewards are paid as the campaign says";
        Rejected => "已拒绝，不发放奖励", "Rejected: nothing is paid";
        ReasonSharedDevice => "与他人共用设备", "Shares a device with another member";
        ReasonSharedIp => "与他人共用 IP", "Shares an IP address with another member";
        ReasonDailyCap => "邀请人已达每日上限", "The inviter reached the daily cap";
        ReasonBudget => "活动预算已用完", "The campaign budget is spent";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/referrals", get(list))
        .route("/console/referrals/{campaign_id}", get(one))
        .route(
            "/console/referrals/{campaign_id}/reviews/{review_id}/{decision}",
            post(decide),
        )
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    cursor: String,
}

/// `GET /console/referrals`.
async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, Refusal> {
    let list = console
        .list(&signed, "/v1/referral-campaigns", &params.cursor)
        .await;
    let body = html! {
        @if let Some(error) = &list.error { (notice(false, error)) }
        section.panel {
            table {
                thead { tr {
                    th { (signed.t(Msg::Name)) } th { (signed.t(ReferralMsg::QualifyOn)) } th { (signed.t(Msg::Status)) }
                    th.num { (signed.t(ReferralMsg::Spent)) } th.num { (signed.t(ReferralMsg::Budget)) }
                    th.hide-narrow { (signed.t(ReferralMsg::StartsAt)) } th.hide-narrow { (signed.t(ReferralMsg::EndsAt)) }
                } }
                tbody {
                    @for c in &list.rows {
                        tr {
                            td { a href=(format!("/console/referrals/{}", encode(&text(&c["id"])))) {
                                @let name = text(&c["name"]);
                                @if name.is_empty() { (text(&c["id"])) } @else { (name) }
                            } }
                            td { (text(&c["qualify_on"])) }
                            td { span.badge { (running(&signed, c)) } }
                            td.num { (int(&c["spent"])) }
                            td.num { (budget(&signed, c)) }
                            td.hide-narrow { (instant(&text(&c["starts_at"]), &signed.zone)) }
                            td.hide-narrow { (instant(&text(&c["ends_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(&signed, "/console/referrals", "cursor", &params.cursor, list.next.as_deref()))
        }
    };
    Ok(view::page(
        &signed,
        Nav::Referrals,
        signed.t(ReferralMsg::Campaigns),
        body,
    ))
}

fn running(signed: &Signed, campaign: &Value) -> String {
    if campaign["running"].as_bool() == Some(true) {
        signed.t(ReferralMsg::Running).to_owned()
    } else {
        format!(
            "{} ({})",
            signed.t(ReferralMsg::NotRunning),
            text(&campaign["status"])
        )
    }
}

/// The budget in reward units, or "unlimited" without one.
fn budget(signed: &Signed, campaign: &Value) -> String {
    match campaign["budget"].as_i64() {
        Some(budget) => budget.to_string(),
        None => signed.t(ReferralMsg::Unlimited).to_owned(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    /// `approved` or `rejected` after a decision.
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/referrals/{campaign_id}`.
async fn one(
    State(console): State<Console>,
    signed: Signed,
    Path(campaign_id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/referral-campaigns/{}", encode(&campaign_id));
    let campaign = console.get(&signed, &base).await.found(&signed)?;
    let (funnel_path, board_path) = (
        format!("{base}/funnel"),
        format!("{base}/leaderboard?limit=20"),
    );
    let (funnel, board, reviews) = tokio::join!(
        console.get(&signed, &funnel_path),
        console.get(&signed, &board_path),
        // The queue is the tenant's; this page shows the part that belongs to its campaign.
        console.get(&signed, "/v1/referral-reviews?status=pending&limit=200"),
    );
    let c = &campaign;
    let id = text(&c["id"]);
    let reviews: Vec<Value> = reviews.body["data"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|r| r["campaign_id"] == id.as_str())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let title = text(&c["name"]);
    let body = html! {
        @if params.done == "approved" { (notice(true, signed.t(ReferralMsg::Approved))) }
        @if params.done == "rejected" { (notice(true, signed.t(ReferralMsg::Rejected))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        p { a href="/console/referrals" { "← " (signed.t(ReferralMsg::Campaigns)) } }
        div.grid2 {
            section.panel {
                h2 { (signed.t(ReferralMsg::Campaign)) }
                dl.facts {
                    dt { "ID" } dd { (id) }
                    dt { (signed.t(ReferralMsg::QualifyOn)) } dd { (text(&c["qualify_on"])) }
                    dt { (signed.t(Msg::Status)) } dd { (running(&signed, c)) }
                    dt { (signed.t(ReferralMsg::Spent)) } dd { (int(&c["spent"])) " / " (budget(&signed, c)) }
                    dt { (signed.t(ReferralMsg::StartsAt)) } dd { (instant(&text(&c["starts_at"]), &signed.zone)) }
                    dt { (signed.t(ReferralMsg::EndsAt)) } dd { (instant(&text(&c["ends_at"]), &signed.zone)) }
                }
            }
            section.panel {
                h2 { (signed.t(ReferralMsg::Funnel)) }
                @if funnel.ok() { (funnel_panel(&signed, &funnel.body)) }
                @else { (notice(false, &funnel.message())) }
            }
        }
        section.panel {
            h2 { (signed.t(ReferralMsg::ReviewQueue)) }
            (reviews_table(&signed, &id, &reviews))
        }
        section.panel {
            h2 { (signed.t(ReferralMsg::Leaderboard)) }
            @if board.ok() { (leaderboard_table(&signed, &board.body)) }
            @else { (notice(false, &board.message())) }
        }
    };
    Ok(view::page(&signed, Nav::Referrals, &title, body))
}

/// The funnel as an ECharts funnel, and the counts beside it that are not steps of it.
fn funnel_panel(signed: &Signed, f: &Value) -> Markup {
    let steps = [
        (ReferralMsg::CodesIssued, int(&f["codes_issued"])),
        (ReferralMsg::Signups, int(&f["signups"])),
        (ReferralMsg::Qualified, int(&f["qualified"])),
        (ReferralMsg::Rewarded, int(&f["rewarded"])),
    ];
    let data: Vec<Value> = steps
        .iter()
        .map(|(label, value)| json!({"name": signed.t(*label), "value": value}))
        .collect();
    let option = json!({
        "tooltip": {"trigger": "item", "formatter": "{b}: {c}"},
        "series": [{
            "type": "funnel", "sort": "none", "left": "10%", "width": "80%",
            "label": {"show": true, "position": "inside", "formatter": "{b} {c}"},
            "data": data,
        }]
    });
    let rate = |value: &Value| {
        value
            .as_f64()
            .map(view::percent)
            .unwrap_or_else(|| "—".to_owned())
    };
    let k_factor = f["k_factor"]
        .as_f64()
        .map(|k| format!("{k:.2}"))
        .unwrap_or_else(|| "—".to_owned());
    html! {
        (view::chart(&option, false))
        dl.facts {
            dt { (signed.t(ReferralMsg::Refused)) } dd { (int(&f["refused"])) }
            dt { (signed.t(ReferralMsg::InReview)) } dd { (int(&f["in_review"])) }
            dt { (signed.t(ReferralMsg::RewardCost)) } dd { (int(&f["reward_cost"])) }
            dt { (signed.t(ReferralMsg::SignupRate)) } dd { (rate(&f["signup_rate"])) }
            dt { (signed.t(ReferralMsg::KFactor)) } dd { (k_factor) }
        }
    }
}

fn leaderboard_table(signed: &Signed, board: &Value) -> Markup {
    let rows = board["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr { th.num { (signed.t(ReferralMsg::Rank)) } th { (signed.t(ReferralMsg::Inviter)) } th.num { (signed.t(ReferralMsg::Invites)) } } }
                tbody {
                    @for s in &rows {
                        tr {
                            td.num { (text(&s["rank"])) }
                            td { (member_link(&text(&s["member_id"]))) }
                            td.num { (int(&s["invites"])) }
                        }
                    }
                }
            }
        }
    }
}

/// Why a referral waits for review, in words; the API's code when it is a new one.
fn review_reason(signed: &Signed, reason: &str) -> String {
    let msg = match reason {
        "shared_device" => ReferralMsg::ReasonSharedDevice,
        "shared_ip" => ReferralMsg::ReasonSharedIp,
        "daily_cap_reached" => ReferralMsg::ReasonDailyCap,
        "budget_exhausted" => ReferralMsg::ReasonBudget,
        other => return other.to_owned(),
    };
    signed.t(msg).to_owned()
}

fn reviews_table(signed: &Signed, campaign_id: &str, reviews: &[Value]) -> Markup {
    let may_change = signed.operator.role.may_change();
    html! {
        @if reviews.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(ReferralMsg::Inviter)) } th { (signed.t(ReferralMsg::Invitee)) } th { (signed.t(Msg::Reason)) }
                    th.hide-narrow { (signed.t(Msg::Created)) }
                    @if may_change { th { (signed.t(Msg::Action)) } }
                } }
                tbody {
                    @for r in reviews {
                        @let action = format!("/console/referrals/{}/reviews/{}", encode(campaign_id), encode(&text(&r["id"])));
                        tr {
                            td { (member_link(&text(&r["inviter_id"]))) }
                            td { (member_link(&text(&r["invitee_id"]))) }
                            td { (review_reason(signed, &text(&r["reason"]))) }
                            td.hide-narrow { (instant(&text(&r["created_at"]), &signed.zone)) }
                            @if may_change {
                                td {
                                    form.inline method="post" action=(format!("{action}/approve")) {
                                        (csrf(signed))
                                        input type="text" name="note" maxlength="500" placeholder=(signed.t(ReferralMsg::Note));
                                        button type="submit" { (signed.t(ReferralMsg::Approve)) }
                                    }
                                    form.inline method="post" action=(format!("{action}/reject")) {
                                        (csrf(signed))
                                        input type="text" name="note" maxlength="500" placeholder=(signed.t(ReferralMsg::Note));
                                        button.danger type="submit" { (signed.t(ReferralMsg::Reject)) }
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
pub struct DecideForm {
    #[serde(default)]
    note: String,
}

/// `POST /console/referrals/{campaign_id}/reviews/{review_id}/approve|reject`.
async fn decide(
    State(console): State<Console>,
    Path((campaign_id, review_id, decision)): Path<(String, String, String)>,
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
    let note = posted.form.note.trim();
    let body = if note.is_empty() {
        json!({})
    } else {
        json!({ "note": note })
    };
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            &format!("/v1/referral-reviews/{}/{decision}", encode(&review_id)),
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        format!("done={done}")
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!(
        "/console/referrals/{}?{query}",
        encode(&campaign_id)
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referral_message_has_both_languages() {
        crate::console::i18n::check_catalogue(ReferralMsg::ALL);
    }
}
