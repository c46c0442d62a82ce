//! `/console/codes`: one item, one code (一物一码): the code batches with a form to generate a
//! new one, each batch's statistics (scanned, points paid, by day and city, suspicious codes)
//! and the printer's CSV, streamed from `/v1/code-batches/{id}/codes.csv` as the operator.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::console::i18n::Msg;
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{self, csrf, encode, instant, int, notice, pager, text, Nav};
use crate::console::Console;

crate::console::i18n::catalogue! {
    /// The codes page's own messages.
    pub enum CodesMsg {
        Title => "一物一码", "Item codes";
        Batches => "码批次", "Code batches";
        NewBatch => "生成码批次", "Generate a batch";
        ProductId => "商品 ID", "Product id";
        Count => "码数量", "Codes";
        Points => "首扫积分", "Points for the first scan";
        Expires => "过期时间", "Expires";
        Never => "永不", "Never";
        Generate => "生成", "Generate";
        Created => "已生成", "Generated";
        Stats => "扫码统计", "Scan statistics";
        DownloadCsv => "下载印刷 CSV", "Download the printer's CSV";
        Scanned => "已扫码", "Scanned";
        Scans => "扫码次数", "Scans";
        PointsAwarded => "已发积分", "Points awarded";
        ByDay => "按日", "By day";
        ByCity => "按城市", "By city";
        Date => "日期", "Date";
        City => "城市", "City";
        FirstScans => "首次扫码", "First scans";
        Suspicious => "疑似仿冒码", "Suspicious codes";
        Code => "码", "Code";
        Devices => "设备数", "Devices";
        Cities => "城市数", "Cities";
        Unknown => "未知", "Unknown";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/codes", get(page).post(create))
        .route("/console/codes/{id}", get(batch_page))
        .route("/console/codes/{id}/codes.csv", get(download))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    created: String,
}

/// The batch form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct BatchForm {
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    count: String,
    #[serde(default)]
    points_per_scan: String,
    #[serde(default)]
    expires_at: String,
}

impl BatchForm {
    fn body(&self) -> Value {
        let number = |text: &str| {
            text.trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.trim().to_owned()))
        };
        let mut body = json!({
            "product_id": self.product_id.trim(),
            "count": number(&self.count),
            "points_per_scan": if self.points_per_scan.trim().is_empty() { json!(0) } else { number(&self.points_per_scan) },
        });
        if !self.expires_at.trim().is_empty() {
            body["expires_at"] = json!(self.expires_at.trim());
        }
        body
    }
}

/// `GET /console/codes`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let outcome = (!params.created.is_empty()).then(|| notice(true, signed.t(CodesMsg::Created)));
    Ok(list_page(
        &console,
        &signed,
        &params.cursor,
        &BatchForm::default(),
        outcome,
    )
    .await)
}

async fn list_page(
    console: &Console,
    signed: &Signed,
    cursor: &str,
    typed: &BatchForm,
    outcome: Option<Markup>,
) -> Response {
    let batches = console.list(signed, "/v1/code-batches", cursor).await;
    let t = |m: CodesMsg| signed.t(m);
    let body = html! {
        @if let Some(outcome) = &outcome { (outcome) }
        @if let Some(error) = &batches.error { (notice(false, error)) }
        @if signed.operator.role.may_change() {
            details.panel {
                summary { (t(CodesMsg::NewBatch)) }
                form.stack id="batch-form" method="post" action="/console/codes" {
                    (csrf(signed))
                    label { (t(CodesMsg::ProductId)) input type="text" name="product_id" required maxlength="64" value=(typed.product_id); }
                    label { (t(CodesMsg::Count)) input type="number" name="count" required min="1" max="1000000" value=(typed.count); }
                    label { (t(CodesMsg::Points)) input type="number" name="points_per_scan" min="0" value=(typed.points_per_scan); }
                    label { (t(CodesMsg::Expires)) input type="text" name="expires_at" placeholder="2027-12-31" value=(typed.expires_at); }
                    button type="submit" { (t(CodesMsg::Generate)) }
                }
            }
        }
        section.panel {
            h2 { (t(CodesMsg::Batches)) }
            @if batches.rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            @else {
                table id="code-batches" {
                    thead { tr {
                        th { (t(CodesMsg::Batches)) } th { (t(CodesMsg::ProductId)) }
                        th.num { (t(CodesMsg::Count)) } th.num { (t(CodesMsg::Points)) }
                        th.hide-narrow { (t(CodesMsg::Expires)) } th.hide-narrow { (signed.t(Msg::Created)) }
                        th { "CSV" }
                    } }
                    tbody {
                        @for b in &batches.rows {
                            @let id = text(&b["id"]);
                            tr {
                                td { a href=(format!("/console/codes/{}", encode(&id))) { (id) } }
                                td { (text(&b["product_id"])) }
                                td.num { (int(&b["count"])) }
                                td.num { (int(&b["points_per_scan"])) }
                                td.hide-narrow { (expires(signed, &b["expires_at"])) }
                                td.hide-narrow { (instant(&text(&b["created_at"]), &signed.zone)) }
                                td { a href=(format!("/console/codes/{}/codes.csv", encode(&id))) download { (t(CodesMsg::DownloadCsv)) } }
                            }
                        }
                    }
                }
            }
            (pager(signed, "/console/codes", "cursor", cursor, batches.next.as_deref()))
        }
    };
    view::page(signed, Nav::Codes, signed.t(CodesMsg::Title), body)
}

fn expires(signed: &Signed, value: &Value) -> Markup {
    html! {
        @match value.as_str() {
            Some(at) => (instant(at, &signed.zone)),
            None => (signed.t(CodesMsg::Never)),
        }
    }
}

/// `POST /console/codes`.
async fn create(State(console): State<Console>, Change(posted): Change<BatchForm>) -> Response {
    let signed = &posted.signed;
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/code-batches",
            Some(&posted.form.body()),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!("/console/codes?created={}", encode(&id))).into_response();
    }
    let outcome = Some(notice(false, &answer.message()));
    view::unprocessable(list_page(&console, signed, "", &posted.form, outcome).await)
}

/// `GET /console/codes/{id}`: one batch's statistics.
async fn batch_page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let path = format!("/v1/code-batches/{}", encode(&id));
    let stats_path = format!("{path}/stats");
    let (batch, stats) = tokio::join!(
        console.get(&signed, &path),
        console.get(&signed, &stats_path),
    );
    let batch = batch.found(&signed)?;
    let stats = stats.found(&signed)?;
    let t = |m: CodesMsg| signed.t(m);
    let body = html! {
        section.panel {
            dl.facts {
                dt { (t(CodesMsg::ProductId)) } dd { (text(&batch["product_id"])) }
                dt { (t(CodesMsg::Count)) } dd { (int(&stats["codes"])) }
                dt { (t(CodesMsg::Scanned)) } dd id="scanned" { (int(&stats["scanned"])) }
                dt { (t(CodesMsg::Scans)) } dd { (int(&stats["scans"])) }
                dt { (t(CodesMsg::PointsAwarded)) } dd { (int(&stats["points_awarded"])) }
                dt { (t(CodesMsg::Suspicious)) } dd { (int(&stats["suspicious_count"])) }
                dt { (t(CodesMsg::Expires)) } dd { (expires(&signed, &batch["expires_at"])) }
            }
            p { a href=(format!("/console/codes/{}/codes.csv", encode(&id))) download { (t(CodesMsg::DownloadCsv)) } }
        }
        section.panel {
            h2 { (t(CodesMsg::ByDay)) }
            (rows_table(&signed, &stats["by_day"], "date", CodesMsg::Date))
        }
        section.panel {
            h2 { (t(CodesMsg::ByCity)) }
            (rows_table(&signed, &stats["by_city"], "city", CodesMsg::City))
        }
        section.panel {
            h2 { (t(CodesMsg::Suspicious)) }
            @let flagged = stats["suspicious"].as_array().cloned().unwrap_or_default();
            @if flagged.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            @else {
                table id="suspicious" {
                    thead { tr {
                        th { (t(CodesMsg::Code)) } th.num { (t(CodesMsg::Devices)) }
                        th.num { (t(CodesMsg::Cities)) } th { (signed.t(Msg::Created)) }
                    } }
                    tbody {
                        @for s in &flagged {
                            tr {
                                td { code { (text(&s["code"])) } }
                                td.num { (int(&s["devices"])) }
                                td.num { (int(&s["cities"])) }
                                td { (instant(&text(&s["flagged_at"]), &signed.zone)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = format!("{} · {}", signed.t(CodesMsg::Stats), id);
    Ok(view::page(&signed, Nav::Codes, &title, body))
}

fn rows_table(signed: &Signed, rows: &Value, key: &str, label: CodesMsg) -> Markup {
    let rows = rows.as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
        @else {
            table {
                thead { tr {
                    th { (signed.t(label)) } th.num { (signed.t(CodesMsg::Scans)) }
                    th.num { (signed.t(CodesMsg::FirstScans)) }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { @if r[key].is_null() { (signed.t(CodesMsg::Unknown)) } @else { (text(&r[key])) } }
                            td.num { (int(&r["scans"])) }
                            td.num { (int(&r["first_scans"])) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/codes/{id}/codes.csv`: the API's CSV as the operator, streamed through.
async fn download(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/code-batches/{}/codes.csv", encode(&id)))
        .body(Body::empty());
    let mut request = match request {
        Ok(request) => request,
        Err(_) => {
            return view::error_page(StatusCode::NOT_FOUND, signed.lang, signed.t(Msg::NotFound))
        }
    };
    request.extensions_mut().insert(signed.auth());
    let response = match console.api.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if !response.status().is_success() {
        return view::error_page(response.status(), signed.lang, signed.t(Msg::NotFound));
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codes_message_has_both_languages() {
        crate::console::i18n::check_catalogue(CodesMsg::ALL);
    }
}
