//! `/console/analytics`: what the last scoring run found. RFM segments (a chart, and a table
//! whose rows open the members of the segment), the CLV distribution and the most valuable
//! members, monthly cohorts as a retention heatmap, and the fit's `model_quality` said plainly,
//! so that a fit on too little data never reads as a good one.
//!
//! Every number comes from `/v1/analytics/rfm`, `/clv` and `/cohorts`; nothing is computed
//! here but the shares the charts draw. Holdout validation (predicted against actual) has no
//! API: the page names the CLI command that runs it.

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use crate::console::call::Answer;
use crate::console::i18n::Msg;
use crate::console::session::{Refusal, Signed};
use crate::console::view::{self, instant, int, money, notice, text, Nav};
use crate::console::Console;
use crate::members::model::RFM_SEGMENTS;

crate::console::i18n::catalogue! {
    /// The analytics page's own messages.
    pub enum AnalyticsMsg {
        ModelQuality => "模型质量", "Model quality";
        NoFitYet => "还没有拟合结果。每日任务会在租户本地午夜后自动计算；也可以立即运行 shequn analytics fit。", "No fit yet. The daily job computes one after the tenant's local midnight; or run shequn analytics fit now.";
        StatusOk => "可信：两个模型都已正常拟合", "Trustworthy: both models fitted normally";
        StatusAtBoundary => "不可信：有参数停在搜索边界上，不是真实估计", "Not trustworthy: a parameter ran to the edge of the search, so it is not a real estimate";
        StatusNotConverged => "不可信：参数搜索未收敛", "Not trustworthy: the parameter search did not converge";
        StatusInsufficientData => "数据不足：复购客户太少，无法拟合或不足以信任", "Insufficient data: too few repeat customers to fit, or to trust a fit";
        Reasons => "原因", "Reasons";
        Purchases => "购买频次模型（BG/NBD）", "Purchase model (BG/NBD)";
        Spend => "客单价模型（Gamma-Gamma）", "Spend model (Gamma-Gamma)";
        FittedAt => "拟合时间", "Fitted at";
        CalibrationEnd => "数据截止日", "Calibration end";
        TimeUnit => "时间单位", "Time unit";
        Customers => "客户数", "Customers";
        Holdout => "留出验证（预测与实际对比）暂无 API，请在命令行运行 shequn analytics validate。", "Holdout validation (predicted against actual) has no API yet: run shequn analytics validate.";
        Segments => "RFM 分群", "RFM segments";
        Spent => "累计消费", "Spent";
        ClvSum => "预测价值合计", "Predicted value";
        ClvDistribution => "预测生命周期价值分布", "Predicted CLV distribution";
        Percentile => "分位数", "Percentile";
        WithClv => "有预测值的会员", "Members with a CLV";
        WithoutClv => "无预测值的会员", "Members without a CLV";
        TopMembers => "价值最高的会员", "Most valuable members";
        Cohorts => "月度同期群留存", "Monthly cohort retention";
        Cohort => "首购月份", "First purchase month";
        MonthsSince => "首购后第几月", "Months since first purchase";
        Retention => "留存率（%）", "Retention (%)";
        Champions => "重要价值客户", "Champions";
        Loyal => "忠诚客户", "Loyal";
        Potential => "潜力客户", "Potential";
        New => "新客户", "New";
        AtRisk => "流失风险客户", "At risk";
        CantLose => "重要挽留客户", "Can't lose";
        Hibernating => "沉睡客户", "Hibernating";
        Lost => "已流失客户", "Lost";
    }
}

pub fn routes() -> axum::Router<Console> {
    axum::Router::new().route("/console/analytics", axum::routing::get(page))
}

/// A segment's name for people (`None` for a segment this page does not know yet).
fn segment_message(segment: &str) -> Option<AnalyticsMsg> {
    Some(match segment {
        "champions" => AnalyticsMsg::Champions,
        "loyal" => AnalyticsMsg::Loyal,
        "potential" => AnalyticsMsg::Potential,
        "new" => AnalyticsMsg::New,
        "at_risk" => AnalyticsMsg::AtRisk,
        "cant_lose" => AnalyticsMsg::CantLose,
        "hibernating" => AnalyticsMsg::Hibernating,
        "lost" => AnalyticsMsg::Lost,
        _ => return None,
    })
}

/// A segment's name in the operator's language; the API's name when it is a new one.
fn segment_label(signed: &Signed, segment: &str) -> String {
    segment_message(segment)
        .map(|m| signed.t(m).to_owned())
        .unwrap_or_else(|| segment.to_owned())
}

/// `GET /console/analytics`.
async fn page(State(console): State<Console>, signed: Signed) -> Result<Response, Refusal> {
    let (rfm, clv, cohorts) = tokio::join!(
        console.get(&signed, "/v1/analytics/rfm"),
        console.get(&signed, "/v1/analytics/clv?top=10"),
        console.get(&signed, "/v1/analytics/cohorts"),
    );
    if !rfm.ok() {
        return Err(Refusal::Page(rfm.status, signed.lang, rfm.message()));
    }
    let fitted = !rfm.body["fit"].is_null();
    let body = html! {
        section.panel {
            h2 { (signed.t(AnalyticsMsg::ModelQuality)) }
            (quality_panel(&signed, &rfm.body))
        }
        @if fitted {
            div.grid2 {
                section.panel {
                    h2 { (signed.t(AnalyticsMsg::Segments)) }
                    (segments_panel(&signed, &rfm.body))
                }
                section.panel {
                    h2 { (signed.t(AnalyticsMsg::ClvDistribution)) }
                    (clv_panel(&signed, &clv))
                }
            }
            section.panel {
                h2 { (signed.t(AnalyticsMsg::Cohorts)) }
                (cohorts_panel(&signed, &cohorts))
            }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Analytics,
        signed.t(Msg::Analytics),
        body,
    ))
}

fn status_message(status: &str) -> Option<AnalyticsMsg> {
    match status {
        "ok" => Some(AnalyticsMsg::StatusOk),
        "at_boundary" => Some(AnalyticsMsg::StatusAtBoundary),
        "not_converged" => Some(AnalyticsMsg::StatusNotConverged),
        "insufficient_data" => Some(AnalyticsMsg::StatusInsufficientData),
        _ => None,
    }
}

/// One model's verdict: its status in words and the API's reasons.
fn verdict(signed: &Signed, quality: &Value) -> Markup {
    let status = text(&quality["status"]);
    let ok = status == "ok";
    let reasons: Vec<String> = quality["reasons"]
        .as_array()
        .map(|all| all.iter().map(text).collect())
        .unwrap_or_default();
    html! {
        p class=(if ok { "notice ok" } else { "notice error" }) {
            (status_message(&status).map_or_else(|| status.clone(), |m| signed.t(m).to_owned()))
            " (" code { (status) } ")"
        }
        @if !reasons.is_empty() {
            ul { @for reason in &reasons { li { (reason) } } }
        }
    }
}

/// The fit's quality, overall and per model, and the fit's facts; before the first fit, how
/// to get one.
fn quality_panel(signed: &Signed, rfm: &Value) -> Markup {
    let quality = &rfm["model_quality"];
    let fit = &rfm["fit"];
    if fit.is_null() {
        return html! {
            (notice(false, signed.t(AnalyticsMsg::NoFitYet)))
            p.muted { (signed.t(AnalyticsMsg::Holdout)) }
        };
    }
    html! {
        (verdict(signed, quality))
        div.grid2 {
            div {
                h3 { (signed.t(AnalyticsMsg::Purchases)) }
                (verdict(signed, &quality["bgnbd"]))
            }
            div {
                h3 { (signed.t(AnalyticsMsg::Spend)) }
                (verdict(signed, &quality["gamma_gamma"]))
            }
        }
        dl.facts {
            dt { (signed.t(AnalyticsMsg::FittedAt)) } dd { (instant(&text(&fit["fitted_at"]), &signed.zone)) }
            dt { (signed.t(AnalyticsMsg::CalibrationEnd)) } dd { (text(&fit["calibration_end"])) }
            dt { (signed.t(AnalyticsMsg::TimeUnit)) } dd { (text(&fit["time_unit"])) }
            dt { (signed.t(AnalyticsMsg::Customers)) } dd { (int(&fit["customers"])) }
        }
        p.muted { (signed.t(AnalyticsMsg::Holdout)) }
    }
}

fn segments_panel(signed: &Signed, rfm: &Value) -> Markup {
    let rows = rfm["data"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = rows
        .iter()
        .map(|s| segment_label(signed, &text(&s["segment"])))
        .collect();
    let counts: Vec<i64> = rows.iter().map(|s| int(&s["members"])).collect();
    let option = json!({
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 110, "right": 20, "top": 10, "bottom": 24},
        "xAxis": {"type": "value"},
        "yAxis": {"type": "category", "data": names, "inverse": true},
        "series": [{"name": signed.t(Msg::Members), "type": "bar", "data": counts,
                    "itemStyle": {"color": "#c2410c"}}]
    });
    html! {
        (view::chart(&option, false))
        @if let Some(reason) = rfm["value_unavailable_reason"].as_str() {
            p.muted { (reason) }
        }
        table {
            thead { tr {
                th { (signed.t(Msg::RfmSegment)) } th.num { (signed.t(Msg::Members)) }
                th.num { (signed.t(AnalyticsMsg::Spent)) } th.num { (signed.t(AnalyticsMsg::ClvSum)) }
            } }
            tbody {
                @for s in &rows {
                    @let segment = text(&s["segment"]);
                    tr {
                        td {
                            @if RFM_SEGMENTS.contains(&segment.as_str()) {
                                a href=(format!("/console/members?rfm_segment={segment}")) { (segment_label(signed, &segment)) }
                            } @else { (segment) }
                        }
                        td.num { (int(&s["members"])) }
                        td.num { (money(int(&s["monetary"]))) }
                        td.num { (s["clv"].as_i64().map(money).unwrap_or_else(|| "—".to_owned())) }
                    }
                }
            }
        }
    }
}

/// The CLV distribution: the API gives percentiles, drawn as bars from P10 to P99, and the
/// most valuable members.
fn clv_panel(signed: &Signed, clv: &Answer) -> Markup {
    if !clv.ok() {
        return notice(false, &clv.message());
    }
    let c = &clv.body;
    let keys = ["p10", "p25", "p50", "p75", "p90", "p99"];
    let labels: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    let values: Vec<f64> = keys
        .iter()
        .map(|k| int(&c["percentiles"][k]) as f64 / 100.0)
        .collect();
    let option = json!({
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 60, "right": 20, "top": 20, "bottom": 28},
        "xAxis": {"type": "category", "name": signed.t(AnalyticsMsg::Percentile), "data": labels},
        "yAxis": {"type": "value", "name": "¥"},
        "series": [{"name": signed.t(Msg::Clv), "type": "bar", "data": values, "barCategoryGap": "8%",
                    "itemStyle": {"color": "#f59e0b"}}]
    });
    let top = c["top"].as_array().cloned().unwrap_or_default();
    html! {
        @if int(&c["members"]) > 0 { (view::chart(&option, false)) }
        dl.facts {
            dt { (signed.t(AnalyticsMsg::WithClv)) } dd { (int(&c["members"])) }
            dt { (signed.t(AnalyticsMsg::WithoutClv)) } dd { (int(&c["members_without_clv"])) }
            dt { (signed.t(Msg::Total)) } dd { (money(int(&c["total"]))) }
        }
        @if let Some(reason) = c["value_unavailable_reason"].as_str() {
            p.muted { (reason) }
        }
        h3 { (signed.t(AnalyticsMsg::TopMembers)) }
        @if top.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr { th { (signed.t(Msg::Name)) } th { (signed.t(Msg::RfmSegment)) } th.num { (signed.t(Msg::PAlive)) } th.num { (signed.t(Msg::Clv)) } } }
                tbody {
                    @for m in &top {
                        @let id = text(&m["member_id"]);
                        @let name = text(&m["name"]);
                        tr {
                            td { a href=(format!("/console/members/{id}")) { @if name.is_empty() { (id) } @else { (name) } } }
                            td { (segment_label(signed, &text(&m["segment"]))) }
                            td.num { (m["p_alive"].as_f64().map(view::percent).unwrap_or_else(|| "—".to_owned())) }
                            td.num { (money(int(&m["clv"]))) }
                        }
                    }
                }
            }
        }
    }
}

/// Cohorts as a heatmap: one row per first-purchase month, one column per month since, the
/// share of the cohort that bought in that month.
fn cohorts_panel(signed: &Signed, cohorts: &Answer) -> Markup {
    if !cohorts.ok() {
        return notice(false, &cohorts.message());
    }
    let rows = cohorts.body["data"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return html! { p.muted { (signed.t(Msg::NoneYet)) } };
    }
    let names: Vec<String> = rows.iter().map(|c| text(&c["cohort"])).collect();
    let months = rows
        .iter()
        .map(|c| c["active"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let mut cells: Vec<Value> = Vec::new();
    for (y, cohort) in rows.iter().enumerate() {
        let customers = int(&cohort["customers"]);
        if customers <= 0 {
            continue;
        }
        for (x, active) in cohort["active"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let share = (int(active) as f64 * 1000.0 / customers as f64).round() / 10.0;
            cells.push(json!([x, y, share]));
        }
    }
    let month_numbers: Vec<usize> = (0..months).collect();
    let option = json!({
        "tooltip": {"position": "top"},
        "grid": {"left": 80, "right": 20, "top": 30, "bottom": 70},
        "xAxis": {"type": "category", "name": signed.t(AnalyticsMsg::MonthsSince),
                  "data": month_numbers, "splitArea": {"show": true}},
        "yAxis": {"type": "category", "data": names, "inverse": true, "splitArea": {"show": true}},
        "visualMap": {"min": 0, "max": 100, "calculable": true, "orient": "horizontal",
                      "left": "center", "bottom": 0, "text": ["100%", "0%"],
                      "inRange": {"color": ["#fff7ed", "#f59e0b", "#c2410c"]}},
        "series": [{"name": signed.t(AnalyticsMsg::Retention), "type": "heatmap", "data": cells,
                    "label": {"show": months <= 12}}]
    });
    html! {
        (view::chart(&option, true))
        table {
            thead { tr { th { (signed.t(AnalyticsMsg::Cohort)) } th.num { (signed.t(AnalyticsMsg::Customers)) } } }
            tbody {
                @for c in &rows {
                    tr { td { (text(&c["cohort"])) } td.num { (int(&c["customers"])) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_analytics_message_has_both_languages() {
        crate::console::i18n::check_catalogue(AnalyticsMsg::ALL);
    }

    #[test]
    fn every_segment_the_api_lists_has_a_name() {
        for segment in RFM_SEGMENTS {
            assert!(segment_message(segment).is_some(), "{segment}");
        }
    }
}
