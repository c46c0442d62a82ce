//! `/console/alliance`: the merchant alliances (商家联盟) the tenant is a partner of: for the
//! chosen one (`?id=`, the newest by default) its partners by display name, its shared coupon
//! offers with their remaining stock, and every partner's balance (owed, owes, net), read
//! through `/v1/alliances…` as the signed-in operator's tenant.

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::console::i18n::Msg;
use crate::console::session::{Refusal, Signed};
use crate::console::view::{self, encode, instant, int, notice, text, Nav};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The alliance page's own messages.
    pub enum AllianceMsg {
        Title => "商家联盟", "Merchant alliance";
        NoAlliance => "尚未加入联盟（POST /v1/alliances 创建，或用邀请码 POST /v1/alliances/join 加入）", "No alliance yet (create one with POST /v1/alliances or join with an invitation code through POST /v1/alliances/join)";
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
    }
}

pub fn routes() -> Router<Console> {
    Router::new().route("/console/alliance", get(page))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    id: String,
}

/// `GET /console/alliance`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let list = console.get(&signed, "/v1/alliances").await;
    let alliances = list.body["data"].as_array().cloned().unwrap_or_default();
    let chosen = alliances
        .iter()
        .find(|a| a["id"] == params.id.as_str())
        .or_else(|| alliances.first())
        .cloned();
    let body = match chosen {
        None => html! {
            @if !list.ok() { (notice(false, &list.message())) }
            @else { p.muted { (signed.t(AllianceMsg::NoAlliance)) } }
        },
        Some(alliance) => {
            let id = encode(&text(&alliance["id"]));
            let offers_path = format!("/v1/alliances/{id}/offers");
            let balances_path = format!("/v1/alliances/{id}/balances");
            let (offers, balances) = tokio::join!(
                console.get(&signed, &offers_path),
                console.get(&signed, &balances_path),
            );
            html! {
                @if alliances.len() > 1 {
                    section.panel {
                        h2 { (signed.t(AllianceMsg::Alliances)) }
                        ul { @for a in &alliances {
                            li { a href=(format!("/console/alliance?id={}", encode(&text(&a["id"])))) { (text(&a["name"])) } }
                        } }
                    }
                }
                (summary(&signed, &alliance))
                section.panel {
                    h2 { (signed.t(AllianceMsg::Balances)) }
                    @if !balances.ok() { (notice(false, &balances.message())) }
                    (balance_table(&signed, &balances.body, &alliance))
                }
                section.panel {
                    h2 { (signed.t(AllianceMsg::Offers)) }
                    @if !offers.ok() { (notice(false, &offers.message())) }
                    (offer_table(&signed, &offers.body))
                }
            }
        }
    };
    Ok(view::page(
        &signed,
        Nav::Alliance,
        signed.t(AllianceMsg::Title),
        body,
    ))
}

fn fee(rules: &Value) -> String {
    let fee = &rules["referral_fee"];
    match fee["kind"].as_str() {
        Some("percent_bp") => format!("{} bp", text(&fee["value"])),
        _ => text(&fee["value"]),
    }
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
            table {
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

fn offer_table(signed: &Signed, offers: &Value) -> Markup {
    let rows = offers["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(AllianceMsg::Partner)) } th { (signed.t(Msg::Status)) }
                    th.num { (signed.t(AllianceMsg::Stock)) } th.num { (signed.t(AllianceMsg::Remaining)) }
                    th.hide-narrow { (signed.t(Msg::Created)) }
                } }
                tbody { @for o in &rows {
                    tr {
                        td { (text(&o["partner_name"])) }
                        td { span.badge { (text(&o["status"])) } }
                        td.num { (int(&o["stock"])) }
                        td.num { (int(&o["remaining"])) }
                        td.hide-narrow { (instant(&text(&o["created_at"]), &signed.zone)) }
                    }
                } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alliance_message_has_both_languages() {
        crate::console::i18n::check_catalogue(AllianceMsg::ALL);
    }
}
