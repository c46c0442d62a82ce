//! Waves (团期): creation with their items, reading, the cut-off job, and the pick and
//! purchase lists (JSON, CSV and a printable page).
//!
//! A wave's stock is exact without a batcher: each wave order takes its units with a
//! conditional `UPDATE … WHERE stock >= qty` in the order's own transaction (see
//! [`super::wave_orders::place`]), so concurrent orders can never oversell; a wave's orders arrive
//! over a day, not in a flash-sale rush, so coalescing them would buy nothing.
//!
//! The cut-off is a scheduler row written with the wave (`neighbourhood.cutoff:<wave>`, due at
//! `cutoff_at`): it runs once across restarts and nodes (the scheduler's claim), and its
//! handler closes the wave with a conditional update (`status = 'open'`), so even two nodes
//! running it close it once. Orders and payments are refused from the cut-off instant on,
//! whether or not the job ran yet.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::sql::Sql;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::orders;
use crate::orders::model::OrderStatus;
use crate::tenants;
use crate::AppState;

use super::leaders::{self, StoredLeader};
use super::model::{
    Arrival, CreateWave, LeaderPickList, ListFormat, ListItem, PickList, PurchaseList, Wave,
    WaveItem, WaveListQuery, WavePage,
};
use super::rules::{self, Phase, PickLine};
use super::{WaveId, MAX_PAGE};

/// Scheduler job kind: a wave's cut-off.
pub const CUTOFF_JOB: &str = "neighbourhood.cutoff";
/// Most products in one wave.
pub const MAX_ITEMS: usize = 100;
/// The most units a wave item may hold or a member be limited to.
pub const MAX_STOCK: i64 = 10_000_000;
/// The highest wave price (fen): one million yuan.
pub const MAX_PRICE: i64 = 100_000_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_wave, list_waves))
        .routes(routes!(get_wave))
        .routes(routes!(pick_list))
        .routes(routes!(purchase_list))
        .routes(routes!(arrived))
}

/// A wave row.
#[derive(Debug, Clone)]
pub struct StoredWave {
    pub id: WaveId,
    pub name: String,
    pub status: String,
    pub opens_at: i64,
    pub cutoff_at: i64,
    pub delivery_date: String,
    pub totals: Option<String>,
    pub closed_at: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, name, status, opens_at, cutoff_at, delivery_date, totals, closed_at, created_at";

fn from_row(row: &AnyRow) -> Result<StoredWave, sqlx::Error> {
    Ok(StoredWave {
        id: WaveId::from_db(row.try_get("id")?),
        name: row.try_get("name")?,
        status: row.try_get("status")?,
        opens_at: row.try_get("opens_at")?,
        cutoff_at: row.try_get("cutoff_at")?,
        delivery_date: row.try_get("delivery_date")?,
        totals: row.try_get("totals")?,
        closed_at: row.try_get("closed_at")?,
        created_at: row.try_get("created_at")?,
    })
}

impl StoredWave {
    pub fn phase(&self, now: i64) -> Phase {
        rules::phase(now, self.opens_at, self.cutoff_at, self.status == "closed")
    }

    fn view(&self, now: i64, items: Vec<WaveItem>) -> Wave {
        Wave {
            id: self.id.to_string(),
            name: self.name.clone(),
            status: self.phase(now).as_str().to_owned(),
            opens_at: micros_to_rfc3339(self.opens_at),
            cutoff_at: micros_to_rfc3339(self.cutoff_at),
            delivery_date: self.delivery_date.clone(),
            items,
            totals: self
                .totals
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok()),
            closed_at: self.closed_at.map(micros_to_rfc3339),
            created_at: micros_to_rfc3339(self.created_at),
        }
    }
}

/// Parse a wave id from a client; a malformed id is simply not found.
pub fn wave_id(text: &str) -> ApiResult<WaveId> {
    WaveId::parse(text).ok_or_else(|| ApiError::not_found("wave"))
}

pub async fn fetch(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &WaveId,
) -> ApiResult<Option<StoredWave>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM wave WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn require(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<StoredWave> {
    let id = wave_id(id)?;
    fetch(conn, tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("wave"))
}

/// A wave's items with their products' sku and name, in the order they were given.
pub async fn items(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave_id: &WaveId,
) -> ApiResult<Vec<WaveItem>> {
    let rows = sqlx::query(
        "SELECT i.product_id, p.sku, p.name, i.price, i.stock, i.taken, i.per_member_limit \
         FROM wave_item i JOIN product p ON p.tenant_id = i.tenant_id AND p.id = i.product_id \
         WHERE i.tenant_id = $1 AND i.wave_id = $2 ORDER BY i.position",
    )
    .bind(tenant_id.as_str())
    .bind(wave_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(WaveItem {
                product_id: r.try_get("product_id")?,
                sku: r.try_get("sku")?,
                name: r.try_get("name")?,
                price: r.try_get("price")?,
                stock: r.try_get("stock")?,
                taken: r.try_get("taken")?,
                per_member_limit: r.try_get("per_member_limit")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Check a new wave's items: products of the tenant, each once, sane numbers.
async fn check_items(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    request: &CreateWave,
) -> ApiResult<()> {
    if request.items.is_empty() || request.items.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            "items",
            format!("must hold 1 to {MAX_ITEMS} products"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for item in &request.items {
        if !seen.insert(item.product_id.as_str()) {
            return Err(ApiError::validation(
                "items.product_id",
                "each product may appear once",
            ));
        }
        if !(0..=MAX_PRICE).contains(&item.price) {
            return Err(ApiError::validation(
                "items.price",
                format!("must be 0 to {MAX_PRICE} fen"),
            ));
        }
        if item.stock.is_some_and(|s| !(0..=MAX_STOCK).contains(&s)) {
            return Err(ApiError::validation(
                "items.stock",
                format!("must be 0 to {MAX_STOCK} units"),
            ));
        }
        if item
            .per_member_limit
            .is_some_and(|s| !(1..=MAX_STOCK).contains(&s))
        {
            return Err(ApiError::validation(
                "items.per_member_limit",
                format!("must be 1 to {MAX_STOCK} units"),
            ));
        }
        orders::products::fetch(conn, tenant_id, &item.product_id).await?;
    }
    Ok(())
}

/// Create a wave with its products, prices and stock; its cut-off is scheduled at once.
#[utoipa::path(post, path = "/v1/waves", tag = "neighbourhood",
    request_body = CreateWave,
    responses((status = 201, body = Wave), (status = 404, description = "a product"),
              (status = 422)),
    security(("api_key" = [])))]
async fn create_wave(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateWave>,
) -> ApiResult<(StatusCode, Json<Wave>)> {
    let tenant_id = &auth.tenant_id;
    let name = text::required("name", &request.name, 100)?;
    let mut tx = state.begin().await?;
    let zone = tenants::time_zone(tx.conn(), tenant_id).await?;
    let instant = |field: &str, text: &str| {
        rules::local_instant(text, &zone)
            .map(to_micros)
            .ok_or_else(|| {
                ApiError::validation(
                    field,
                    "must be an RFC 3339 instant, a local date-time (2026-12-07T23:00:00, in the \
                 tenant's time zone) or a date",
                )
            })
    };
    let opens_at = instant("opens_at", &request.opens_at)?;
    let cutoff_at = instant("cutoff_at", &request.cutoff_at)?;
    if cutoff_at <= opens_at {
        return Err(ApiError::validation("cutoff_at", "must be after opens_at"));
    }
    let delivery: jiff::civil::Date = request
        .delivery_date
        .parse()
        .map_err(|_| ApiError::validation("delivery_date", "must be a date (YYYY-MM-DD)"))?;
    let cutoff_day = crate::common::time::from_micros(cutoff_at)
        .to_zoned(zone.clone())
        .date();
    if delivery < cutoff_day {
        return Err(ApiError::validation(
            "delivery_date",
            "must be on or after the cut-off's day",
        ));
    }
    check_items(tx.conn(), tenant_id, &request).await?;
    let id = WaveId::generate();
    let now = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO wave (tenant_id, id, name, status, opens_at, cutoff_at, delivery_date, \
         totals, closed_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'open', $4, $5, $6, NULL, NULL, $7, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(name.as_str())
    .bind(opens_at)
    .bind(cutoff_at)
    .bind(delivery.to_string())
    .bind(now)
    .execute(tx.conn())
    .await?;
    for (position, item) in request.items.iter().enumerate() {
        sqlx::query(
            "INSERT INTO wave_item (tenant_id, wave_id, product_id, position, price, stock, \
             taken, per_member_limit) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .bind(item.product_id.as_str())
        .bind(i64::try_from(position).unwrap_or(0))
        .bind(item.price)
        .bind(item.stock)
        .bind(item.per_member_limit)
        .execute(tx.conn())
        .await?;
    }
    let job = NewJob {
        id: format!("{CUTOFF_JOB}:{id}"),
        kind: CUTOFF_JOB,
        due_at: cutoff_at,
        payload: json!({ "wave_id": id }),
    };
    scheduler::schedule(tx.conn(), tenant_id, &[job], now).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "wave.created",
        Some(id.as_str()),
        json!({ "wave_id": id, "name": name, "opens_at": micros_to_rfc3339(opens_at),
                "cutoff_at": micros_to_rfc3339(cutoff_at),
                "delivery_date": delivery.to_string() }),
    ));
    let wave = fetch(tx.conn(), tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("wave {id} vanished")))?;
    let items = items(tx.conn(), tenant_id, &id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(wave.view(now, items))))
}

/// One wave with its items (stock left and taken).
#[utoipa::path(get, path = "/v1/waves/{id}", tag = "neighbourhood",
    params(("id" = String, Path)),
    responses((status = 200, body = Wave), (status = 404)), security(("api_key" = [])))]
async fn get_wave(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Wave>> {
    let mut conn = state.db.read().acquire().await?;
    let wave = require(&mut conn, &auth.tenant_id, &id).await?;
    let items = items(&mut conn, &auth.tenant_id, &wave.id).await?;
    Ok(Json(wave.view(to_micros(state.clock.now()), items)))
}

/// Waves, newest first; filter by status (`upcoming`, `open`, `closed`).
#[utoipa::path(get, path = "/v1/waves", tag = "neighbourhood",
    params(WaveListQuery),
    responses((status = 200, body = WavePage), (status = 422)), security(("api_key" = [])))]
async fn list_waves(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<WaveListQuery>,
) -> ApiResult<Json<WavePage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), WaveId::parse)?;
    let now = to_micros(state.clock.now());
    let mut conn = state.db.read().acquire().await?;
    let page = page(
        &mut conn,
        &auth.tenant_id,
        query.status.as_deref(),
        cursor.as_ref(),
        limit + 1,
        now,
    )
    .await?;
    let mut data = Vec::with_capacity(page.len());
    for wave in page {
        let items = items(&mut conn, &auth.tenant_id, &wave.id).await?;
        data.push(wave.view(now, items));
    }
    let next_cursor = pagination::next_cursor(&mut data, limit, |w| w.id.clone());
    Ok(Json(WavePage { data, next_cursor }))
}

/// Up to `limit` waves, newest first, after `cursor`, in `status` at `now`.
pub async fn page(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    status: Option<&str>,
    cursor: Option<&WaveId>,
    limit: i64,
    now: i64,
) -> ApiResult<Vec<StoredWave>> {
    let mut sql = Sql::for_conn(
        conn,
        &format!("SELECT {COLUMNS} FROM wave WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    match status {
        None => {}
        Some("upcoming") => {
            sql.push(" AND status = 'open' AND opens_at > ").bind(now);
        }
        Some("open") => {
            sql.push(" AND status = 'open' AND opens_at <= ").bind(now);
            sql.push(" AND cutoff_at > ").bind(now);
        }
        Some("closed") => {
            sql.push(" AND (status = 'closed' OR cutoff_at <= ")
                .bind(now);
            sql.push(")");
        }
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be upcoming, open or closed",
            ))
        }
    }
    if let Some(cursor) = cursor {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The paid orders' lines of a wave (units after shortages), with the products' names.
async fn paid_lines(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave_id: &WaveId,
) -> ApiResult<(Vec<PickLine>, BTreeMap<String, (String, String)>)> {
    let rows = sqlx::query(
        "SELECT o.leader_id, l.product_id, l.qty - l.short AS qty \
         FROM wave_line l JOIN wave_order o ON o.tenant_id = l.tenant_id AND o.order_id = l.order_id \
         WHERE l.tenant_id = $1 AND l.wave_id = $2 AND o.status = 'paid'",
    )
    .bind(tenant_id.as_str())
    .bind(wave_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let lines = rows
        .iter()
        .map(|r| {
            Ok(PickLine {
                leader_id: r.try_get("leader_id")?,
                product_id: r.try_get("product_id")?,
                qty: r.try_get("qty")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let names = items(conn, tenant_id, wave_id)
        .await?
        .into_iter()
        .map(|i| (i.product_id, (i.sku, i.name)))
        .collect();
    Ok((lines, names))
}

fn list_items(
    units: &BTreeMap<String, i64>,
    names: &BTreeMap<String, (String, String)>,
) -> Vec<ListItem> {
    let mut items: Vec<ListItem> = units
        .iter()
        .map(|(product_id, qty)| {
            let (sku, name) = names.get(product_id).cloned().unwrap_or_default();
            ListItem {
                product_id: product_id.clone(),
                sku,
                name,
                qty: *qty,
            }
        })
        .collect();
    items.sort_by(|a, b| {
        a.sku
            .cmp(&b.sku)
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    items
}

/// The pick list of a wave: for each leader, what to pack.
pub async fn build_pick_list(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave: &StoredWave,
) -> ApiResult<PickList> {
    let (lines, names) = paid_lines(conn, tenant_id, &wave.id).await?;
    let mut leaders = Vec::new();
    for (leader_id, units) in rules::pick_lists(&lines) {
        let leader = leaders::require(conn, tenant_id, &leader_id, false).await?;
        leaders.push(LeaderPickList {
            leader_id,
            leader_name: leader.name.clone(),
            pickup_point: leader.pickup_point(),
            items: list_items(&units, &names),
        });
    }
    leaders.sort_by(|a, b| {
        a.leader_name
            .cmp(&b.leader_name)
            .then_with(|| a.leader_id.cmp(&b.leader_id))
    });
    Ok(PickList {
        wave_id: wave.id.to_string(),
        leaders,
    })
}

/// The purchase list of a wave: the pick lists summed.
pub async fn build_purchase_list(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave: &StoredWave,
) -> ApiResult<PurchaseList> {
    let (lines, names) = paid_lines(conn, tenant_id, &wave.id).await?;
    Ok(PurchaseList {
        wave_id: wave.id.to_string(),
        items: list_items(&rules::purchase_totals(&lines), &names),
    })
}

/// The list formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Html,
}

fn format_of(query: &ListFormat) -> ApiResult<Format> {
    match query.format.as_deref() {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some("html") => Ok(Format::Html),
        Some(_) => Err(ApiError::validation("format", "must be json, csv or html")),
    }
}

/// A CSV field, quoted when it must be (and a leading formula sign neutralised, so that a
/// spreadsheet does not run a product name).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv(body: String, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn html_page(markup: maud::Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

pub fn pick_list_csv(list: &PickList) -> String {
    let mut out =
        String::from("leader_id,leader_name,pickup_point,address,product_id,sku,name,qty\n");
    for leader in &list.leaders {
        for item in &leader.items {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(&leader.leader_id),
                csv_field(&leader.leader_name),
                csv_field(&leader.pickup_point.name),
                csv_field(&leader.pickup_point.address),
                csv_field(&item.product_id),
                csv_field(&item.sku),
                csv_field(&item.name),
                item.qty
            ));
        }
    }
    out
}

pub fn purchase_list_csv(list: &PurchaseList) -> String {
    let mut out = String::from("product_id,sku,name,qty\n");
    for item in &list.items {
        out.push_str(&format!(
            "{},{},{},{}\n",
            csv_field(&item.product_id),
            csv_field(&item.sku),
            csv_field(&item.name),
            item.qty
        ));
    }
    out
}

/// The printable pick list: one block per leader, a page break between them.
pub fn pick_list_html(wave: &StoredWave, list: &PickList) -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                title { "分拣单 Pick list · " (wave.name) }
                style { (PRINT_CSS) }
            }
            body {
                h1 { "分拣单 Pick list · " (wave.name) }
                p { "配送日 Delivery " (wave.delivery_date) " · 截单 Cut-off " (micros_to_rfc3339(wave.cutoff_at)) }
                @if list.leaders.is_empty() { p { "没有已支付订单 No paid orders." } }
                @for leader in &list.leaders {
                    section.leader {
                        h2 { (leader.leader_name) " · " (leader.pickup_point.name) }
                        p { (leader.pickup_point.address) " · " (leader.pickup_point.hours) }
                        table {
                            thead { tr { th { "SKU" } th { "商品 Product" } th.qty { "数量 Qty" } th { "✓" } } }
                            tbody {
                                @for item in &leader.items {
                                    tr { td { (item.sku) } td { (item.name) } td.qty { (item.qty) } td {} }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The printable purchase list.
pub fn purchase_list_html(wave: &StoredWave, list: &PurchaseList) -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                title { "采购单 Purchase list · " (wave.name) }
                style { (PRINT_CSS) }
            }
            body {
                h1 { "采购单 Purchase list · " (wave.name) }
                p { "配送日 Delivery " (wave.delivery_date) }
                table {
                    thead { tr { th { "SKU" } th { "商品 Product" } th.qty { "数量 Qty" } } }
                    tbody {
                        @for item in &list.items {
                            tr { td { (item.sku) } td { (item.name) } td.qty { (item.qty) } }
                        }
                    }
                }
            }
        }
    }
}

const PRINT_CSS: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;\
width:100%}th,td{border:1px solid #999;padding:4px 8px;text-align:left}.qty{text-align:right}\
section.leader{page-break-after:always;margin-bottom:2em}@media print{h1{font-size:1.2em}}";

/// What to pack for each leader: the paid orders' units after shortages (also `?format=csv`
/// and `?format=html`, a printable page with a page per leader).
#[utoipa::path(get, path = "/v1/waves/{id}/pick-list", tag = "neighbourhood",
    params(("id" = String, Path), ListFormat),
    responses((status = 200, content((PickList = "application/json"), (String = "text/csv"),
                                     (String = "text/html"))),
              (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn pick_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<ListFormat>,
) -> ApiResult<Response> {
    let format = format_of(&query)?;
    let mut conn = state.db.read().acquire().await?;
    let wave = require(&mut conn, &auth.tenant_id, &id).await?;
    let list = build_pick_list(&mut conn, &auth.tenant_id, &wave).await?;
    Ok(match format {
        Format::Json => Json(list).into_response(),
        Format::Csv => csv(pick_list_csv(&list), &format!("pick-list-{}", wave.id)),
        Format::Html => html_page(pick_list_html(&wave, &list)),
    })
}

/// What to buy in: the pick lists summed across leaders (also CSV and a printable page).
#[utoipa::path(get, path = "/v1/waves/{id}/purchase-list", tag = "neighbourhood",
    params(("id" = String, Path), ListFormat),
    responses((status = 200, content((PurchaseList = "application/json"), (String = "text/csv"),
                                     (String = "text/html"))),
              (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn purchase_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<ListFormat>,
) -> ApiResult<Response> {
    let format = format_of(&query)?;
    let mut conn = state.db.read().acquire().await?;
    let wave = require(&mut conn, &auth.tenant_id, &id).await?;
    let list = build_purchase_list(&mut conn, &auth.tenant_id, &wave).await?;
    Ok(match format {
        Format::Json => Json(list).into_response(),
        Format::Csv => csv(
            purchase_list_csv(&list),
            &format!("purchase-list-{}", wave.id),
        ),
        Format::Html => html_page(purchase_list_html(&wave, &list)),
    })
}

/// A leader's goods of the wave arrived at the pickup point: each paid order waiting for them
/// becomes ready and its member gets a `pickup.ready` event with the code. Again: nothing more.
#[utoipa::path(post, path = "/v1/waves/{id}/leaders/{leader_id}/arrived",
    tag = "neighbourhood",
    params(("id" = String, Path), ("leader_id" = String, Path)),
    responses((status = 200, body = Arrival), (status = 404)), security(("api_key" = [])))]
async fn arrived(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, leader_id)): Path<(String, String)>,
) -> ApiResult<Json<Arrival>> {
    let tenant_id = &auth.tenant_id;
    let mut tx = state.begin().await?;
    let wave = require(tx.conn(), tenant_id, &id).await?;
    let leader = leaders::require(tx.conn(), tenant_id, &leader_id, false).await?;
    let ready = mark_arrived(&mut tx, tenant_id, &wave, &leader).await?;
    tx.commit().await?;
    Ok(Json(Arrival {
        wave_id: wave.id.to_string(),
        leader_id: leader.id.to_string(),
        ready,
    }))
}

/// Make the leader's waiting paid orders of the wave ready; returns how many.
pub async fn mark_arrived(
    tx: &mut Tx,
    tenant_id: &TenantId,
    wave: &StoredWave,
    leader: &StoredLeader,
) -> ApiResult<i64> {
    let now = to_micros(tx.now());
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT order_id, member_id, code FROM wave_order WHERE tenant_id = $1 AND wave_id = $2 \
         AND leader_id = $3 AND status = 'paid' AND pickup_status = 'waiting' ORDER BY order_id",
    )
    .bind(tenant_id.as_str())
    .bind(wave.id.as_str())
    .bind(leader.id.as_str())
    .fetch_all(tx.conn())
    .await?;
    let mut ready = 0;
    for (order_id, member_id, code) in rows {
        let moved = sqlx::query(
            "UPDATE wave_order SET pickup_status = 'ready', ready_at = $1, updated_at = $1 \
             WHERE tenant_id = $2 AND order_id = $3 AND pickup_status = 'waiting'",
        )
        .bind(now)
        .bind(tenant_id.as_str())
        .bind(order_id.as_str())
        .execute(tx.conn())
        .await?;
        if moved.rows_affected() != 1 {
            continue;
        }
        ready += 1;
        tx.emit(NewEvent::new(
            tenant_id,
            "pickup.ready",
            Some(member_id.as_str()),
            json!({ "order_id": order_id, "wave_id": wave.id, "leader_id": leader.id,
                    "member_id": member_id, "code": code,
                    "pickup_point": leader.pickup_point() }),
        ));
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "wave.arrived",
        Some(wave.id.as_str()),
        json!({ "wave_id": wave.id, "leader_id": leader.id, "orders": ready }),
    ));
    Ok(ready)
}

/// Scheduler handler: the wave's cut-off came.
pub async fn cutoff_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let wave_id = job
        .payload
        .get("wave_id")
        .and_then(Value::as_str)
        .and_then(WaveId::parse)
        .ok_or_else(|| anyhow::anyhow!("job without wave_id"))?;
    let mut tx = state.begin().await?;
    close(&mut tx, &job.tenant_id, &wave_id)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

/// Close the wave once: its unpaid orders cancelled (their units back), its totals announced
/// in `wave.closed`. False when it was closed already.
pub async fn close(tx: &mut Tx, tenant_id: &TenantId, wave_id: &WaveId) -> ApiResult<bool> {
    let now = to_micros(tx.now());
    let moved = sqlx::query(
        "UPDATE wave SET status = 'closed', closed_at = $1, updated_at = $1 \
         WHERE tenant_id = $2 AND id = $3 AND status = 'open'",
    )
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(wave_id.as_str())
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    let unpaid: Vec<String> = sqlx::query_scalar(
        "SELECT order_id FROM wave_order WHERE tenant_id = $1 AND wave_id = $2 \
         AND status = 'awaiting_payment' ORDER BY order_id",
    )
    .bind(tenant_id.as_str())
    .bind(wave_id.as_str())
    .fetch_all(tx.conn())
    .await?;
    let mut cancelled = 0i64;
    for order_id in &unpaid {
        let order = orders::store::require(tx.conn(), tenant_id, order_id, true).await?;
        if order.status == OrderStatus::PendingPayment
            && orders::checkout::close_unpaid_in(tx, tenant_id, &order, OrderStatus::Cancelled)
                .await?
        {
            cancelled += 1;
        }
    }
    let wave = fetch(tx.conn(), tenant_id, wave_id)
        .await?
        .ok_or_else(|| ApiError::not_found("wave"))?;
    let totals = totals(tx.conn(), tenant_id, &wave, cancelled).await?;
    sqlx::query("UPDATE wave SET totals = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(totals.to_string())
        .bind(tenant_id.as_str())
        .bind(wave_id.as_str())
        .execute(tx.conn())
        .await?;
    let mut data = totals;
    data["wave_id"] = json!(wave_id);
    tx.emit(NewEvent::new(
        tenant_id,
        "wave.closed",
        Some(wave_id.as_str()),
        data,
    ));
    Ok(true)
}

/// The totals of a closed wave: paid orders, their GMV, units per product, leaders.
async fn totals(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    wave: &StoredWave,
    cancelled: i64,
) -> ApiResult<Value> {
    let (orders, gmv, leaders): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(total - refunded), 0) AS BIGINT), \
         COUNT(DISTINCT leader_id) FROM wave_order \
         WHERE tenant_id = $1 AND wave_id = $2 AND status = 'paid'",
    )
    .bind(tenant_id.as_str())
    .bind(wave.id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let purchase = build_purchase_list(conn, tenant_id, wave).await?;
    let units: i64 = purchase.items.iter().map(|i| i.qty).sum();
    Ok(json!({
        "orders": orders,
        "cancelled": cancelled,
        "units": units,
        "gmv": gmv,
        "leaders": leaders,
        "items": purchase.items,
    }))
}
