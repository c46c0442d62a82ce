//! `/console/members`: search and filter members; `/console/members/{member_id}`: one member's
//! profile, tags (editable), tier and growth, balances and transfers, orders, coupons,
//! check-ins, referral code and analytics; erasure after typing the member's id.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::console::i18n::Msg;
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{self, csrf, facts, instant, int, money, notice, text, Nav};
use crate::console::Console;
use crate::members::model::RFM_SEGMENTS;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/members", get(list))
        .route("/console/members/{member_id}", get(one))
        .route("/console/members/{member_id}/tags", post(change_tags))
        .route("/console/members/{member_id}/erase", post(erase))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    rfm_segment: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    cursor: String,
}

impl ListParams {
    /// The filters as a query string (empty ones left out), plus `extra` pairs.
    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", &self.q),
            ("tag", &self.tag),
            ("source", &self.source),
            ("rfm_segment", &self.rfm_segment),
            ("status", &self.status),
        ] {
            if !value.trim().is_empty() {
                out.append_pair(key, value.trim());
            }
        }
        for (key, value) in extra {
            out.append_pair(key, value);
        }
        out.finish()
    }
}

fn select(name: &str, label: &str, any: &str, options: &[(&str, String)], chosen: &str) -> Markup {
    html! {
        label { (label)
            select name=(name) {
                option value="" { (any) }
                @for (value, shown) in options {
                    option value=(value) selected[*value == chosen] { (shown) }
                }
            }
        }
    }
}

/// `GET /console/members`.
async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, Refusal> {
    let mut path = format!("/v1/members?limit=50&{}", params.query(&[]));
    if !params.cursor.is_empty() {
        path.push_str("&cursor=");
        path.push_str(&view::encode(&params.cursor));
    }
    let answer = console.get(&signed, &path).await;
    let sources = console.get(&signed, "/v1/members/sources").await;
    let source_options: Vec<(&str, String)> = sources.body["data"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| s.as_str().or_else(|| s["name"].as_str()))
                .map(|s| (s, s.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let segments: Vec<(&str, String)> =
        RFM_SEGMENTS.iter().map(|s| (*s, (*s).to_owned())).collect();
    let statuses = [
        ("active", signed.t(Msg::Active).to_owned()),
        ("erased", signed.t(Msg::Erased).to_owned()),
    ];
    let t = |m| signed.t(m);
    let rows = answer.body["data"].as_array().cloned().unwrap_or_default();
    let next = answer.body["next_cursor"].as_str().map(str::to_owned);
    let body = html! {
        form.filters method="get" action="/console/members" {
            label { (t(Msg::Search))
                input type="search" name="q" value=(params.q) placeholder=(t(Msg::SearchHint)) maxlength="200";
            }
            label { (t(Msg::Tag)) input type="text" name="tag" value=(params.tag) maxlength="64"; }
            (select("source", t(Msg::Source), t(Msg::Any), &source_options, &params.source))
            (select("rfm_segment", t(Msg::RfmSegment), t(Msg::Any), &segments, &params.rfm_segment))
            (select("status", t(Msg::Status), t(Msg::Any), &statuses, &params.status))
            button type="submit" { (t(Msg::Filter)) }
        }
        @if !answer.ok() {
            (notice(false, &answer.message()))
        }
        section.panel {
            table {
                thead { tr {
                    th { (t(Msg::Name)) } th { (t(Msg::Phone)) } th.hide-narrow { (t(Msg::ExternalId)) }
                    th { (t(Msg::Tier)) } th.hide-narrow { (t(Msg::Source)) } th.hide-narrow { (t(Msg::Joined)) }
                } }
                tbody {
                    @for m in &rows {
                        tr {
                            td { a href=(format!("/console/members/{}", text(&m["id"]))) {
                                @let name = text(&m["name"]);
                                @if name.is_empty() { (text(&m["id"])) } @else { (name) }
                            } }
                            td { (text(&m["phone"])) }
                            td.hide-narrow { (text(&m["external_id"])) }
                            td { (text(&m["tier"])) }
                            td.hide-narrow { (text(&m["source"])) }
                            td.hide-narrow { (instant(&text(&m["created_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { (t(Msg::NoneYet)) } }
            div.pager {
                @if !params.cursor.is_empty() {
                    a href=(format!("/console/members?{}", params.query(&[]))) { (t(Msg::FirstPage)) }
                }
                @if let Some(next) = next {
                    a href=(format!("/console/members?{}", params.query(&[("cursor", &next)]))) { (t(Msg::NextPage)) }
                }
            }
        }
    };
    Ok(view::page(&signed, Nav::Members, t(Msg::Members), body))
}

#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    /// A notice to show after a change (`saved`) or the API's error message.
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

fn yes_no(signed: &Signed, value: &Value) -> String {
    signed
        .t(if value.as_bool() == Some(true) {
            Msg::Yes
        } else {
            Msg::No
        })
        .to_owned()
}

/// `GET /console/members/{member_id}`.
async fn one(
    State(console): State<Console>,
    signed: Signed,
    Path(member_id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let encoded: String = view::encode(&member_id);
    let member = console
        .get(&signed, &format!("/v1/members/{encoded}"))
        .await
        .found(&signed)?;
    let m = &member;
    let base = format!("/v1/members/{encoded}");
    let paths = [
        format!("{base}/balances"),
        format!("{base}/transfers?limit=20"),
        format!("/v1/orders?member_id={encoded}&limit=20"),
        format!("{base}/coupons?limit=20"),
        format!("{base}/checkins"),
        format!("{base}/analytics"),
        format!("{base}/invite-code"),
    ];
    let (balances, transfers, orders, coupons, checkins, analytics, invite) = tokio::join!(
        console.get(&signed, &paths[0]),
        console.get(&signed, &paths[1]),
        console.get(&signed, &paths[2]),
        console.get(&signed, &paths[3]),
        console.get(&signed, &paths[4]),
        console.get(&signed, &paths[5]),
        console.get(&signed, &paths[6]),
    );
    let t = |msg| signed.t(msg);
    let erased = m["status"] == "erased";
    let title = {
        let name = text(&m["name"]);
        if name.is_empty() {
            text(&m["id"])
        } else {
            name
        }
    };
    let tags: Vec<String> = m["tags"]
        .as_array()
        .map(|all| all.iter().map(text).collect())
        .unwrap_or_default();
    let id = text(&m["id"]);
    let body = html! {
        @if params.done == "saved" { (notice(true, t(Msg::Saved))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        div.grid2 {
            section.panel {
                h2 { (t(Msg::Profile)) }
                (facts(&[
                    ("ID", id.clone()),
                    (t(Msg::Status), if erased { t(Msg::Erased).to_owned() } else { t(Msg::Active).to_owned() }),
                    (t(Msg::Phone), text(&m["phone"])),
                    (t(Msg::ExternalId), text(&m["external_id"])),
                    (t(Msg::Source), text(&m["source"])),
                    (t(Msg::Birthday), text(&m["birthday"])),
                    (t(Msg::Tier), text(&m["tier"])),
                    (t(Msg::Growth), text(&m["growth"])),
                    (t(Msg::Lifecycle), text(&m["lifecycle_stage"])),
                    (t(Msg::InvitedBy), text(&m["invited_by"])),
                    (t(Msg::MarketingConsent), yes_no(&signed, &m["consent"]["marketing"])),
                    (t(Msg::Joined), instant(&text(&m["created_at"]), &signed.zone)),
                    (t(Msg::InviteCode), text(&invite.body["code"])),
                ]))
            }
            section.panel {
                h2 { (t(Msg::Tags)) }
                div {
                    @for tag in &tags {
                        span.tag { (tag)
                            @if !erased {
                                form.inline method="post" action=(format!("/console/members/{id}/tags")) {
                                    (csrf(&signed))
                                    input type="hidden" name="remove" value=(tag);
                                    button.link type="submit" title=(t(Msg::Remove)) { "×" }
                                }
                            }
                        }
                    }
                    @if tags.is_empty() { p.muted { (t(Msg::NoneYet)) } }
                }
                @if !erased {
                    form.inline method="post" action=(format!("/console/members/{id}/tags")) {
                        (csrf(&signed))
                        input type="text" name="add" required maxlength="64" placeholder=(t(Msg::AddTag));
                        button.secondary type="submit" { (t(Msg::AddTag)) }
                    }
                }
                h2 { (t(Msg::Balances)) }
                (balances_table(&signed, &balances.body))
                h2 { (t(Msg::Analytics)) }
                (analytics_facts(&signed, &analytics.body, analytics.ok()))
            }
        }
        section.panel {
            h2 { (t(Msg::Orders)) }
            (orders_table(&signed, &orders.body))
        }
        section.panel {
            h2 { (t(Msg::Transfers)) }
            (transfers_table(&signed, &transfers.body))
        }
        div.grid2 {
            section.panel {
                h2 { (t(Msg::Coupons)) }
                (coupons_table(&signed, &coupons.body))
            }
            section.panel {
                h2 { (t(Msg::Checkins)) }
                (facts(&[
                    (t(Msg::Streak), text(&checkins.body["current_streak"])),
                    (t(Msg::CheckedInToday), yes_no(&signed, &checkins.body["checked_in_today"])),
                    (t(Msg::ThisMonth), checkins.body["days"].as_array().map(|d| d.len()).unwrap_or(0).to_string()),
                ]))
            }
        }
        @if !erased && signed.operator.role.may_change() {
            section.panel {
                h2 { (t(Msg::Erase)) }
                p.muted { (t(Msg::EraseConfirm)) }
                form.inline method="post" action=(format!("/console/members/{id}/erase")) data-confirm=(t(Msg::EraseConfirm)) {
                    (csrf(&signed))
                    input type="text" name="confirm_id" required placeholder=(id) autocomplete="off";
                    button.danger type="submit" { (t(Msg::Erase)) }
                }
            }
        }
    };
    Ok(view::page(&signed, Nav::Members, &title, body))
}

fn balances_table(signed: &Signed, balances: &Value) -> Markup {
    let rows = [
        ("points", Msg::Points, false),
        ("wallet_principal", Msg::StoredValue, true),
        ("wallet_bonus", Msg::StoredValueBonus, true),
        ("commission", Msg::Commission, true),
    ];
    html! {
        table {
            thead { tr { th {} th.num { (signed.t(Msg::Balance)) } th.num { (signed.t(Msg::Available)) } } }
            tbody {
                @for (asset, label, is_money) in rows {
                    @let b = &balances[asset];
                    tr {
                        td { (signed.t(label)) }
                        td.num { (if is_money { money(int(&b["balance"])) } else { int(&b["balance"]).to_string() }) }
                        td.num { (if is_money { money(int(&b["available"])) } else { int(&b["available"]).to_string() }) }
                    }
                }
            }
        }
    }
}

fn analytics_facts(signed: &Signed, a: &Value, scored: bool) -> Markup {
    if !scored {
        return html! { p.muted { (signed.t(Msg::NotScoredYet)) } };
    }
    let p_alive = a["p_alive"]
        .as_f64()
        .map(view::percent)
        .unwrap_or_else(|| text(&a["prediction_unavailable_reason"]));
    let clv = a["clv"]
        .as_i64()
        .map(money)
        .unwrap_or_else(|| text(&a["value_unavailable_reason"]));
    facts(&[
        (signed.t(Msg::RfmSegment), text(&a["segment"])),
        (
            "R / F / M",
            format!(
                "{} / {} / {}",
                int(&a["r_score"]),
                int(&a["f_score"]),
                int(&a["m_score"])
            ),
        ),
        (signed.t(Msg::PAlive), p_alive),
        (signed.t(Msg::Clv), clv),
    ])
}

fn orders_table(signed: &Signed, page: &Value) -> Markup {
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr { th { "ID" } th { (signed.t(Msg::Status)) } th.num { (signed.t(Msg::Amount)) } th.hide-narrow { (signed.t(Msg::Created)) } } }
                tbody {
                    @for o in &rows {
                        tr {
                            td { (text(&o["id"])) }
                            td { span.badge { (text(&o["status"])) } }
                            td.num { (money(int(&o["total"]))) }
                            td.hide-narrow { (instant(&text(&o["ordered_at"]), &signed.zone)) }
                        }
                    }
                }
            }
        }
    }
}

fn transfers_table(signed: &Signed, page: &Value) -> Markup {
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr { th { (signed.t(Msg::When)) } th { (signed.t(Msg::Asset)) } th.num { (signed.t(Msg::Amount)) } th { (signed.t(Msg::Reason)) } th { (signed.t(Msg::Status)) } } }
                tbody {
                    @for tr_ in &rows {
                        @let is_points = tr_["asset"] == "points";
                        tr {
                            td { (instant(&text(&tr_["created_at"]), &signed.zone)) }
                            td { (text(&tr_["asset"])) }
                            td.num { (if is_points { int(&tr_["amount"]).to_string() } else { money(int(&tr_["amount"])) }) }
                            td { (text(&tr_["code"])) }
                            td { (text(&tr_["status"])) }
                        }
                    }
                }
            }
        }
    }
}

fn coupons_table(signed: &Signed, page: &Value) -> Markup {
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr { th { (signed.t(Msg::Reason)) } th { (signed.t(Msg::Status)) } th { (signed.t(Msg::ValidTo)) } } }
                tbody {
                    @for c in &rows {
                        tr {
                            td { (text(&c["reason"])) }
                            td { (text(&c["status"])) }
                            td { (instant(&text(&c["valid_to"]), &signed.zone)) }
                        }
                    }
                }
            }
        }
    }
}

/// Back to the member's page with a notice.
fn back(member_id: &str, ok: bool, message: &str) -> Response {
    let encoded: String = view::encode(member_id);
    let query = if ok {
        "done=saved".to_owned()
    } else {
        format!("error={}", view::encode(message))
    };
    Redirect::to(&format!("/console/members/{encoded}?{query}")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct TagForm {
    add: Option<String>,
    remove: Option<String>,
}

/// `POST /console/members/{member_id}/tags`: add or remove one tag.
async fn change_tags(
    State(console): State<Console>,
    Path(member_id): Path<String>,
    Change(posted): Change<TagForm>,
) -> Response {
    let add: Vec<String> = posted
        .form
        .add
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .collect();
    let remove: Vec<String> = posted.form.remove.into_iter().collect();
    let encoded: String = view::encode(&member_id);
    let answer = console
        .call(
            &posted.signed,
            Method::POST,
            &format!("/v1/members/{encoded}/tags"),
            Some(&json!({ "add": add, "remove": remove })),
            posted.form_key.as_deref(),
        )
        .await;
    back(&member_id, answer.ok(), &answer.message())
}

#[derive(Debug, Deserialize)]
pub struct EraseForm {
    #[serde(default)]
    confirm_id: String,
}

/// `POST /console/members/{member_id}/erase`: only when the typed id is the member's.
async fn erase(
    State(console): State<Console>,
    Path(member_id): Path<String>,
    Change(posted): Change<EraseForm>,
) -> Response {
    if posted.form.confirm_id.trim() != member_id {
        return back(&member_id, false, posted.signed.t(Msg::EraseMismatch));
    }
    let encoded: String = view::encode(&member_id);
    let answer = console
        .call(
            &posted.signed,
            Method::DELETE,
            &format!("/v1/members/{encoded}"),
            None,
            posted.form_key.as_deref(),
        )
        .await;
    back(&member_id, answer.ok(), &answer.message())
}
