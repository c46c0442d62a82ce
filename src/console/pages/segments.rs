//! `/console/segments`: the saved audiences (人群) with their counts now, and a form that takes
//! a name and a rule of the segment rule language (JSON, see `docs/segments.md`) with two
//! buttons: preview (`POST /v1/segments/preview`: the count and the first members, nothing
//! saved) and save (`POST /v1/segments`, then the new segment's page). `/console/segments/{id}`:
//! one segment's rule, its count now and per day (the daily run's history, as a chart), its
//! members (paged, linked to their pages) and a delete button.
//!
//! The rule is typed as JSON and sent as it is: the page only checks that it is JSON, the API
//! says what is wrong with a rule and where (`rule.all[1].field: expected …`). A form that is not
//! JSON, or that the API refuses, is shown again (422) with what was typed and the reason;
//! nothing is saved.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::console::call::ListPage;
use crate::console::i18n::{Message as _, Msg};
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{
    self, csrf, encode, instant, int, member_link, notice, pager, text, unprocessable, Nav,
};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The segment pages' own messages.
    pub enum SegmentMsg {
        Segment => "人群信息", "Segment";
        SegmentName => "名称", "Name";
        Count => "人数", "Members";
        CountNow => "当前人数", "Members now";
        Updated => "更新时间", "Updated";
        NewSegment => "新建人群", "New segment";
        Rule => "规则（JSON）", "Rule (JSON)";
        RuleHelp => "用 all / any / not 组合条件，例如 {\"tag\": \"vip\"}、{\"tier\": \"金卡\"}、{\"field\": \"last_order_days\", \"lte\": 30}；条件与字段见文档 docs/segments.md。", "Combine conditions with all / any / not, e.g. {\"tag\": \"vip\"}, {\"tier\": \"金卡\"}, {\"field\": \"last_order_days\", \"lte\": 30}; the conditions and fields are in docs/segments.md.";
        Preview => "预览", "Preview";
        PreviewTitle => "预览结果（未保存）", "Preview (nothing saved)";
        Matching => "匹配会员", "Matching members";
        Sample => "前 {0} 位会员", "First {0} members";
        BadJson => "规则不是有效的 JSON：{0}", "The rule is not valid JSON: {0}";
        Created => "人群已保存", "The segment is saved";
        Deleted => "人群已删除", "The segment is deleted";
        History => "每日人数", "Members per day";
        HistoryLater => "每日任务运行后按天记录人数。", "The daily run records the count of each day.";
        SegmentMembers => "人群会员", "Members in the segment";
        Delete => "删除人群", "Delete segment";
        DeleteConfirm => "删除后该人群及其每日人数记录将被清除（会员不受影响），确定吗？", "The segment and its daily counts will be removed (its members are not touched). Delete it?";
    }
}

/// The rule the form starts with.
const EXAMPLE_RULE: &str =
    "{\"all\": [{\"tag\": \"vip\"}, {\"field\": \"last_order_days\", \"lte\": 30}]}";

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/segments", get(list).post(create))
        .route("/console/segments/preview", get(to_list).post(preview))
        .route("/console/segments/{segment_id}", get(one))
        .route("/console/segments/{segment_id}/delete", post(delete))
}

/// The form's preview address answers a GET with the list.
async fn to_list() -> Redirect {
    Redirect::to("/console/segments")
}

// ---------------------------------------------------------------------------------------------
// The form

/// The segment form as typed.
#[derive(Debug, Clone, Deserialize)]
pub struct SegmentForm {
    #[serde(default)]
    name: String,
    /// The rule as JSON text.
    #[serde(default)]
    rule: String,
}

impl Default for SegmentForm {
    fn default() -> Self {
        SegmentForm {
            name: String::new(),
            rule: EXAMPLE_RULE.to_owned(),
        }
    }
}

impl SegmentForm {
    /// The rule typed, as JSON; the parser's complaint (with line and column) when it is not.
    fn rule(&self, signed: &Signed) -> Result<Value, String> {
        serde_json::from_str(self.rule.trim())
            .map_err(|error| SegmentMsg::BadJson.fill(signed.lang, &[&error.to_string()]))
    }
}

// ---------------------------------------------------------------------------------------------
// The list page

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    cursor: String,
    /// `1` after a segment was deleted.
    #[serde(default)]
    deleted: String,
}

/// What the list page shows besides the list: the form as typed, why it was refused, a
/// preview's answer.
#[derive(Default)]
struct Typed {
    form: SegmentForm,
    refused: Option<String>,
    preview: Option<Value>,
}

/// `GET /console/segments`.
async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, Refusal> {
    Ok(segments_page(&console, &signed, &params, &Typed::default()).await)
}

async fn segments_page(
    console: &Console,
    signed: &Signed,
    params: &ListParams,
    typed: &Typed,
) -> Response {
    let list = console.list(signed, "/v1/segments", &params.cursor).await;
    let t = |m: SegmentMsg| signed.t(m);
    let body = html! {
        @if params.deleted == "1" { (notice(true, t(SegmentMsg::Deleted))) }
        @if let Some(error) = &typed.refused { (notice(false, error)) }
        @if let Some(error) = &list.error { (notice(false, error)) }
        @if signed.operator.role.may_change() { (segment_form(signed, typed)) }
        (segments_table(signed, &list, &params.cursor))
    };
    view::page(signed, Nav::Segments, signed.t(Msg::Segments), body)
}

fn segments_table(signed: &Signed, list: &ListPage, cursor: &str) -> Markup {
    let t = |m: SegmentMsg| signed.t(m);
    html! {
        section.panel {
            table id="segments" {
                thead { tr {
                    th { (t(SegmentMsg::SegmentName)) } th.num { (t(SegmentMsg::Count)) }
                    th { (t(SegmentMsg::Updated)) } th.hide-narrow { (signed.t(Msg::Created)) }
                } }
                tbody {
                    @for s in &list.rows {
                        @let id = text(&s["id"]);
                        tr data-segment-id=(id) {
                            td { a href=(format!("/console/segments/{}", encode(&id))) {
                                @let name = text(&s["name"]);
                                @if name.is_empty() { (id) } @else { (name) }
                            } }
                            td.num { (int(&s["count"])) }
                            td { (instant(&text(&s["updated_at"]), &signed.zone)) }
                            td.hide-narrow { (instant(&text(&s["created_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/segments", "cursor", cursor, list.next.as_deref()))
        }
    }
}

/// The create form with its two buttons, and a preview's answer under it.
fn segment_form(signed: &Signed, typed: &Typed) -> Markup {
    let t = |m: SegmentMsg| signed.t(m);
    let f = &typed.form;
    let open = typed.refused.is_some() || typed.preview.is_some();
    html! {
        details.panel open[open] {
            summary { (t(SegmentMsg::NewSegment)) }
            form.stack id="segment-form" method="post" action="/console/segments" {
                (csrf(signed))
                label { (t(SegmentMsg::SegmentName)) input type="text" name="name" required maxlength="100" value=(f.name); }
                label { (t(SegmentMsg::Rule))
                    textarea name="rule" rows="6" spellcheck="false" required { (f.rule) }
                    small.muted { (t(SegmentMsg::RuleHelp)) }
                }
                div {
                    // A preview needs no name: the browser's checks are skipped for it.
                    button.secondary type="submit" formaction="/console/segments/preview" formnovalidate { (t(SegmentMsg::Preview)) }
                    " "
                    button type="submit" { (signed.t(Msg::Save)) }
                }
            }
            @if let Some(preview) = &typed.preview { (preview_panel(signed, preview)) }
        }
    }
}

/// A preview's count and sample.
fn preview_panel(signed: &Signed, preview: &Value) -> Markup {
    let t = |m: SegmentMsg| signed.t(m);
    let sample: Vec<String> = preview["sample"]
        .as_array()
        .map(|ids| ids.iter().map(text).collect())
        .unwrap_or_default();
    let sample_label = SegmentMsg::Sample.fill(signed.lang, &[&sample.len().to_string()]);
    html! {
        section id="segment-preview" data-count=(int(&preview["count"])) {
            h2 { (t(SegmentMsg::PreviewTitle)) }
            dl.facts {
                dt { (t(SegmentMsg::Matching)) } dd { strong { (int(&preview["count"])) } }
                dt { (sample_label) } dd {
                    @if sample.is_empty() { span.muted { "—" } }
                    @for id in &sample { (member_link(id)) " " }
                }
            }
        }
    }
}

/// `POST /console/segments/preview`: `POST /v1/segments/preview`; the list page again with the
/// answer and the form as typed. Nothing is saved.
async fn preview(State(console): State<Console>, Change(posted): Change<SegmentForm>) -> Response {
    let signed = &posted.signed;
    let refused = |message: String| Typed {
        form: posted.form.clone(),
        refused: Some(message),
        preview: None,
    };
    let params = ListParams::default();
    let rule = match posted.form.rule(signed) {
        Ok(rule) => rule,
        Err(message) => {
            return unprocessable(segments_page(&console, signed, &params, &refused(message)).await)
        }
    };
    // A preview changes nothing: it needs no one-time key.
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/segments/preview",
            Some(&json!({ "rule": rule })),
            None,
        )
        .await;
    if !answer.ok() {
        let page = segments_page(&console, signed, &params, &refused(answer.message())).await;
        return unprocessable(page);
    }
    let typed = Typed {
        form: posted.form.clone(),
        refused: None,
        preview: Some(answer.body),
    };
    segments_page(&console, signed, &params, &typed).await
}

/// `POST /console/segments`: `POST /v1/segments`, then the new segment's page.
async fn create(State(console): State<Console>, Change(posted): Change<SegmentForm>) -> Response {
    let signed = &posted.signed;
    let refused = |message: String| Typed {
        form: posted.form.clone(),
        refused: Some(message),
        preview: None,
    };
    let params = ListParams::default();
    let rule = match posted.form.rule(signed) {
        Ok(rule) => rule,
        Err(message) => {
            return unprocessable(segments_page(&console, signed, &params, &refused(message)).await)
        }
    };
    let body = json!({ "name": posted.form.name.trim(), "rule": rule });
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/segments",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!("/console/segments/{}?created=1", encode(&id)))
            .into_response();
    }
    let page = segments_page(&console, signed, &params, &refused(answer.message())).await;
    unprocessable(page)
}

// ---------------------------------------------------------------------------------------------
// One segment

#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    /// The members page's cursor.
    #[serde(default)]
    cursor: String,
    /// `1` after the segment was saved.
    #[serde(default)]
    created: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/segments/{segment_id}`.
async fn one(
    State(console): State<Console>,
    signed: Signed,
    Path(segment_id): Path<String>,
    Query(params): Query<OneParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/segments/{}", encode(&segment_id));
    let segment = console.get(&signed, &base).await.found(&signed)?;
    let members = console
        .list(&signed, &format!("{base}/members"), &params.cursor)
        .await;
    let s = &segment;
    let id = text(&s["id"]);
    let history = s["history"].as_array().cloned().unwrap_or_default();
    let t = |m: SegmentMsg| signed.t(m);
    let body = html! {
        @if params.created == "1" { (notice(true, t(SegmentMsg::Created))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        p { a href="/console/segments" { "← " (signed.t(Msg::Segments)) } }
        div.grid2 {
            section.panel {
                h2 { (t(SegmentMsg::Segment)) }
                dl.facts {
                    dt { "ID" } dd { (id) }
                    dt { (t(SegmentMsg::CountNow)) } dd id="segment-count" { strong { (int(&s["count"])) } }
                    dt { (signed.t(Msg::Created)) } dd { (instant(&text(&s["created_at"]), &signed.zone)) }
                    dt { (t(SegmentMsg::Updated)) } dd { (instant(&text(&s["updated_at"]), &signed.zone)) }
                }
                h2 { (t(SegmentMsg::Rule)) }
                (view::json_block(&s["rule"]))
                @if signed.operator.role.may_change() {
                    form.inline method="post" action=(format!("/console/segments/{}/delete", encode(&id))) data-confirm=(t(SegmentMsg::DeleteConfirm)) {
                        (csrf(&signed))
                        button.danger type="submit" { (t(SegmentMsg::Delete)) }
                    }
                }
            }
            section.panel id="segment-history" {
                h2 { (t(SegmentMsg::History)) }
                @if history.is_empty() { p.muted { (t(SegmentMsg::HistoryLater)) } }
                @else { (view::chart(&history_chart(&signed, &history), false)) }
            }
        }
        (members_section(&signed, &id, &members, &params.cursor))
    };
    Ok(view::page(&signed, Nav::Segments, &text(&s["name"]), body))
}

/// The count of each day as a line.
fn history_chart(signed: &Signed, history: &[Value]) -> Value {
    let dates: Vec<String> = history.iter().map(|h| text(&h["date"])).collect();
    let counts: Vec<i64> = history.iter().map(|h| int(&h["count"])).collect();
    let label = signed.t(SegmentMsg::Count);
    json!({
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 48, "right": 20, "top": 20, "bottom": 28},
        "xAxis": {"type": "category", "data": dates},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [{"name": label, "type": "line", "data": counts, "itemStyle": {"color": "#2563eb"}}]
    })
}

/// The segment's members now, paged.
fn members_section(signed: &Signed, segment_id: &str, list: &ListPage, cursor: &str) -> Markup {
    let base = format!("/console/segments/{}", encode(segment_id));
    html! {
        section.panel id="segment-members" {
            h2 { (signed.t(SegmentMsg::SegmentMembers)) }
            @if let Some(error) = &list.error { (notice(false, error)) }
            @else if list.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            @else {
                table {
                    thead { tr {
                        th { (signed.t(Msg::Name)) } th.hide-narrow { (signed.t(Msg::ExternalId)) }
                        th { (signed.t(Msg::Tier)) } th { (signed.t(Msg::Tags)) }
                    } }
                    tbody {
                        @for m in &list.rows {
                            @let member_id = text(&m["id"]);
                            tr {
                                td { a href=(format!("/console/members/{}", encode(&member_id))) {
                                    @let name = text(&m["name"]);
                                    @if name.is_empty() { (member_id) } @else { (name) }
                                } }
                                td.hide-narrow { (text(&m["external_id"])) }
                                td { (text(&m["tier"])) }
                                td {
                                    @for tag in m["tags"].as_array().into_iter().flatten() { span.tag { (text(tag)) } " " }
                                }
                            }
                        }
                    }
                }
            }
            (pager(signed, &base, "cursor", cursor, list.next.as_deref()))
        }
    }
}

/// `POST /console/segments/{segment_id}/delete`: `DELETE /v1/segments/{id}`, then the list.
async fn delete(
    State(console): State<Console>,
    Path(segment_id): Path<String>,
    Change(posted): Change<Map<String, Value>>,
) -> Response {
    let signed = &posted.signed;
    let path = format!("/v1/segments/{}", encode(&segment_id));
    let answer = console
        .call(
            signed,
            Method::DELETE,
            &path,
            None,
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        return Redirect::to("/console/segments?deleted=1").into_response();
    }
    if answer.status == StatusCode::NOT_FOUND {
        return view::error_page(StatusCode::NOT_FOUND, signed.lang, signed.t(Msg::NotFound));
    }
    Redirect::to(&format!(
        "/console/segments/{}?error={}",
        encode(&segment_id),
        encode(&answer.message())
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_segment_message_has_both_languages() {
        crate::console::i18n::check_catalogue(SegmentMsg::ALL);
    }

    #[test]
    fn the_example_rule_is_json() {
        let rule: Value = serde_json::from_str(EXAMPLE_RULE).unwrap();
        assert_eq!(rule["all"][1]["field"], "last_order_days");
    }
}
