//! `/console/program`: the membership program as it stands: tiers (thresholds, discounts,
//! points multipliers, perks) with how many growth points a yuan earns, the points rules, the
//! member day, birthday perks, top-up plans and the stored-value policy, and reminders.
//!
//! The page reads; the program is changed through `PUT /v1/program/*` (a change reevaluates
//! every member's tier, which belongs in a reviewed integration rather than a form).

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use crate::console::call::Answer;
use crate::console::i18n::Msg;
use crate::console::session::{Refusal, Signed};
use crate::console::view::{self, basis_points, int, money, multiplier, notice, text, Nav};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The program page's own messages.
    pub enum ProgramMsg {
        Tiers => "会员等级", "Tiers";
        GrowthMin => "成长值门槛", "Growth from";
        Discount => "折扣", "Discount";
        PointsMultiplier => "积分倍数", "Points multiplier";
        FreeShipping => "包邮", "Free shipping";
        EarlyAccess => "提前购（小时）", "Early access (hours)";
        GrowthPerYuan => "每元成长值", "Growth per yuan";
        Requalification => "每年保级日", "Yearly requalification";
        NoRequalification => "不降级", "Tiers never go down";
        PointsRules => "积分规则", "Points rules";
        MemberDay => "会员日", "Member day";
        Birthday => "生日礼", "Birthday perks";
        TopupPlans => "储值方案", "Top-up plans";
        Pay => "充值", "Pay";
        Bonus => "赠送", "Bonus";
        PlanActive => "启用", "Active";
        StoredValuePolicy => "储值规则", "Stored-value policy";
        Reminders => "复购提醒", "Reminders";
        NotSet => "未设置", "Not set";
        ChangeThroughApi => "修改会员体系请调用 PUT /v1/program/*（修改等级会重新评估所有会员），见 API 文档 /docs。", "Change the program through PUT /v1/program/* (a tier change reevaluates every member); see the API docs at /docs.";
        PointsPerYuan => "每消费 1 元得积分", "Points per yuan spent";
        BurnPointsPerYuan => "多少积分抵 1 元", "Points per yuan off";
        BurnCap => "积分抵扣上限", "Largest share paid in points";
        ReturnWindow => "退货期（天，期满入账）", "Return window (days before points settle)";
        Expiry => "积分过期", "Points expiry";
        ExpiryDays => "过期天数", "Expiry days";
        Rule => "规则", "Rule";
        DayOfMonth => "每月几号", "Day of month";
        Weekday => "星期", "Weekday";
        Prices => "会员日价", "Member-day prices";
        DaysBefore => "提前天数", "Days before";
        CouponTemplate => "优惠券模板", "Coupon template";
        RepurchaseReminderDays => "提醒提前天数", "Days ahead to remind";
    }
}

pub fn routes() -> Router<Console> {
    Router::new().route("/console/program", get(page))
}

/// The word for a settings field, the field's name when the page has none.
fn label(signed: &Signed, key: &str) -> String {
    let msg = match key {
        "points_per_yuan" => ProgramMsg::PointsPerYuan,
        "burn_points_per_yuan" => ProgramMsg::BurnPointsPerYuan,
        "burn_cap_bp" => ProgramMsg::BurnCap,
        "return_window_days" => ProgramMsg::ReturnWindow,
        "expiry" => ProgramMsg::Expiry,
        "expiry_days" => ProgramMsg::ExpiryDays,
        "rule" => ProgramMsg::Rule,
        "day_of_month" => ProgramMsg::DayOfMonth,
        "weekday" => ProgramMsg::Weekday,
        "points_multiplier_bp" => ProgramMsg::PointsMultiplier,
        "prices" => ProgramMsg::Prices,
        "days_before" => ProgramMsg::DaysBefore,
        "points" => return signed.t(Msg::Points).to_owned(),
        "coupon_template_id" => ProgramMsg::CouponTemplate,
        "repurchase_reminder_days" => ProgramMsg::RepurchaseReminderDays,
        other => return other.to_owned(),
    };
    signed.t(msg).to_owned()
}

/// A field's value in words: basis points as percentages, multipliers as ×n, money in yuan.
fn shown(key: &str, value: &Value) -> String {
    match (key, value.as_i64()) {
        (k, Some(v)) if k.ends_with("multiplier_bp") => multiplier(v),
        (k, Some(v)) if k.ends_with("_bp") => basis_points(v),
        (k, Some(v)) if k.ends_with("_fen") || k == "price" => money(v),
        _ => match value {
            Value::Array(items) if items.is_empty() => "—".to_owned(),
            Value::Array(_) | Value::Object(_) => value.to_string(),
            other => text(other),
        },
    }
}

/// An object's fields as facts; a notice when the API refused; "not set" for null.
fn settings(signed: &Signed, answer: &Answer, value: &Value) -> Markup {
    if !answer.ok() {
        return notice(false, &answer.message());
    }
    match value.as_object() {
        Some(fields) => {
            let items: Vec<(String, String)> = fields
                .iter()
                .map(|(key, value)| (label(signed, key), shown(key, value)))
                .collect();
            let borrowed: Vec<(&str, String)> =
                items.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            view::facts(&borrowed)
        }
        None => html! { p.muted { (signed.t(ProgramMsg::NotSet)) } },
    }
}

/// `GET /console/program`.
async fn page(State(console): State<Console>, signed: Signed) -> Result<Response, Refusal> {
    let (tiers, points, member_day, birthday, plans, policy, reminders) = tokio::join!(
        console.get(&signed, "/v1/program/tiers"),
        console.get(&signed, "/v1/program/points"),
        console.get(&signed, "/v1/program/member-day"),
        console.get(&signed, "/v1/program/birthday"),
        console.get(&signed, "/v1/topup-plans"),
        console.get(&signed, "/v1/program/stored-value"),
        console.get(&signed, "/v1/program/reminders"),
    );
    let t = |m: ProgramMsg| signed.t(m);
    let tier_rows = tiers.body["tiers"].as_array().cloned().unwrap_or_default();
    let plan_rows = plans.body["data"]
        .as_array()
        .or_else(|| plans.body.as_array())
        .cloned()
        .unwrap_or_default();
    let requalification = match &tiers.body["requalification"] {
        Value::Object(r) => format!("{:02}-{:02}", int(&r["month"]), int(&r["day"])),
        _ => t(ProgramMsg::NoRequalification).to_owned(),
    };
    let yes_no = |v: &Value| {
        signed.t(if v.as_bool() == Some(true) {
            Msg::Yes
        } else {
            Msg::No
        })
    };
    let body = html! {
        p.muted { (t(ProgramMsg::ChangeThroughApi)) }
        section.panel id="tiers" {
            h2 { (t(ProgramMsg::Tiers)) }
            @if !tiers.ok() { (notice(false, &tiers.message())) }
            table {
                thead { tr {
                    th { (signed.t(Msg::Title)) } th.num { (t(ProgramMsg::GrowthMin)) } th.num { (t(ProgramMsg::Discount)) }
                    th.num { (t(ProgramMsg::PointsMultiplier)) } th.hide-narrow { (t(ProgramMsg::FreeShipping)) }
                    th.num.hide-narrow { (t(ProgramMsg::EarlyAccess)) }
                } }
                tbody {
                    @for tier in &tier_rows {
                        tr {
                            td { (text(&tier["name"])) }
                            td.num { (int(&tier["growth_min"])) }
                            td.num { (basis_points(10_000 - tier["price_factor_bp"].as_i64().unwrap_or(10_000))) }
                            td.num { (multiplier(tier["points_multiplier_bp"].as_i64().unwrap_or(10_000))) }
                            td.hide-narrow { (yes_no(&tier["free_shipping"])) }
                            td.num.hide-narrow { (int(&tier["early_access_hours"])) }
                        }
                    }
                }
            }
            @if tier_rows.is_empty() { p.muted { (t(ProgramMsg::NotSet)) } }
            (view::facts(&[
                (t(ProgramMsg::GrowthPerYuan), tiers.body["growth_per_yuan_bp"].as_i64().map(|v| format!("{}", v as f64 / 10_000.0)).unwrap_or_default()),
                (t(ProgramMsg::Requalification), requalification),
            ]))
        }
        div.grid2 {
            section.panel id="points-rules" { h2 { (t(ProgramMsg::PointsRules)) } (settings(&signed, &points, &points.body)) }
            section.panel id="member-day" { h2 { (t(ProgramMsg::MemberDay)) } (settings(&signed, &member_day, &member_day.body["member_day"])) }
            section.panel id="birthday" { h2 { (t(ProgramMsg::Birthday)) } (settings(&signed, &birthday, &birthday.body)) }
            section.panel id="reminders" { h2 { (t(ProgramMsg::Reminders)) } (settings(&signed, &reminders, &reminders.body)) }
        }
        div.grid2 {
            section.panel id="topup-plans" {
                h2 { (t(ProgramMsg::TopupPlans)) }
                @if !plans.ok() { (notice(false, &plans.message())) }
                table {
                    thead { tr { th { (signed.t(Msg::Title)) } th.num { (t(ProgramMsg::Pay)) } th.num { (t(ProgramMsg::Bonus)) } th { (t(ProgramMsg::PlanActive)) } } }
                    tbody {
                        @for plan in &plan_rows {
                            tr {
                                td { (text(&plan["name"])) }
                                td.num { (money(int(&plan["pay"]))) }
                                td.num { (money(int(&plan["bonus"]))) }
                                td { (yes_no(&plan["active"])) }
                            }
                        }
                    }
                }
                @if plan_rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            }
            section.panel id="stored-value-policy" { h2 { (t(ProgramMsg::StoredValuePolicy)) } (settings(&signed, &policy, &policy.body)) }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Program,
        signed.t(Msg::Program),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_message_has_both_languages() {
        crate::console::i18n::check_catalogue(ProgramMsg::ALL);
    }
}
