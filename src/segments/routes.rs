//! The segments API: preview a rule, save it as a segment, list a segment's members, export
//! them, and a count per day kept by the daily run.

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::rule::{self, Rule, RuleError};
use super::{Registry, SegmentId};
use crate::common::auth::Auth;
use crate::common::db::Db;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks::Audiences;
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::sql::Sql;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members::model::Member;
use crate::members::store as member_store;
use crate::members::MemberPage;
use crate::AppState;

/// Members in a preview's sample.
pub const SAMPLE: usize = 20;
/// Largest page of segments and of a segment's members.
pub const MAX_PAGE: i64 = 200;
/// Longest segment name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most saved segments per tenant.
pub const MAX_SEGMENTS: i64 = 1_000;
/// Days of history `GET /v1/segments/{id}` shows.
pub const HISTORY_DAYS: i64 = 90;
/// Members per page of an export.
const EXPORT_PAGE: usize = 1_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(preview))
        .routes(routes!(create_segment, list_segments))
        .routes(routes!(get_segment, update_segment, delete_segment))
        .routes(routes!(segment_members))
        .routes(routes!(export_segment))
}

fn rule_error(error: RuleError) -> ApiError {
    ApiError::coded(codes::VALIDATION_FAILED, error.to_string()).with_details(json!({
        "field": error.path,
        "path": error.path,
        "expected": error.expected,
    }))
}

/// Parse the request's `rule`.
pub fn parse_rule(value: &Value) -> ApiResult<Rule> {
    parse_rule_at(value, "rule")
}

/// Parse a rule given in the request field `root` (`filter`, `audience.rule`): a bad one is
/// 422 `validation_failed` with `details.path` under `root`.
pub fn parse_rule_at(value: &Value, root: &str) -> ApiResult<Rule> {
    rule::parse(value, root).map_err(rule_error)
}

/// The rule of the tenant's saved segment `id`; `None` when there is no such segment.
pub async fn saved_rule(db: &Db, tenant_id: &TenantId, id: &str) -> ApiResult<Option<Rule>> {
    let Some(id) = SegmentId::parse(id) else {
        return Ok(None);
    };
    Ok(find(db, tenant_id, &id).await?.map(|stored| stored.rule))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A rule of the segment rule language (see the segments section of the docs).
    #[schema(value_type = Object)]
    pub rule: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    /// Active members matching the rule now.
    pub count: u64,
    /// The first of them in id order, at most 20.
    pub sample: Vec<String>,
}

/// Count the active members matching a rule, with a sample of their ids.
#[utoipa::path(post, path = "/v1/segments/preview", tag = "segments", request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 422, description = "bad rule; `details.path` names the node")),
    security(("api_key" = [])))]
async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    let rule = parse_rule(&request.rule)?;
    let (count, sample) = state
        .segments
        .preview(&auth.tenant_id, &rule, SAMPLE)
        .await?;
    Ok(Json(Preview { count, sample }))
}

/// A saved segment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Segment {
    #[schema(value_type = String)]
    pub id: SegmentId,
    pub name: String,
    #[schema(value_type = Object)]
    pub rule: Value,
    /// Active members matching now.
    pub count: u64,
    pub created_at: String,
    pub updated_at: String,
    /// One point per tenant-local day (the daily run's count), oldest first; only on
    /// `GET /v1/segments/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryPoint>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPoint {
    /// YYYY-MM-DD, tenant-local.
    pub date: String,
    pub count: i64,
}

struct Stored {
    id: SegmentId,
    name: String,
    rule: Rule,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, name, rule, created_at, updated_at";

fn stored(row: &AnyRow) -> ApiResult<Stored> {
    let text: String = row.try_get("rule")?;
    let value: Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
    Ok(Stored {
        id: SegmentId::from_db(row.try_get("id")?),
        name: row.try_get("name")?,
        rule: rule::parse(&value, "rule").map_err(ApiError::internal)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Stored {
    fn show(self, count: u64) -> Segment {
        Segment {
            id: self.id,
            name: self.name,
            rule: self.rule.to_json(),
            count,
            created_at: micros_to_rfc3339(self.created_at),
            updated_at: micros_to_rfc3339(self.updated_at),
            history: None,
        }
    }
}

async fn find(db: &Db, tenant_id: &TenantId, id: &SegmentId) -> ApiResult<Option<Stored>> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM segment WHERE tenant_id = "));
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    sql.query()
        .fetch_optional(db.read())
        .await?
        .as_ref()
        .map(stored)
        .transpose()
}

async fn require(db: &Db, tenant_id: &TenantId, id: &str) -> ApiResult<Stored> {
    let id = SegmentId::parse(id).ok_or_else(|| ApiError::not_found("segment"))?;
    find(db, tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("segment"))
}

async fn count(state: &AppState, tenant_id: &TenantId, rule: &Rule) -> ApiResult<u64> {
    state
        .segments
        .with(tenant_id, |fresh, today| {
            fresh.index.evaluate(rule, today).len()
        })
        .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSegment {
    pub name: String,
    #[schema(value_type = Object)]
    pub rule: Value,
}

/// Save a rule as a named segment.
#[utoipa::path(post, path = "/v1/segments", tag = "segments", request_body = CreateSegment,
    responses((status = 201, body = Segment), (status = 422, description = "bad name or rule")),
    security(("api_key" = [])))]
async fn create_segment(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateSegment>,
) -> ApiResult<(StatusCode, Json<Segment>)> {
    let name = text::required("name", &request.name, MAX_NAME_CHARS)?;
    let rule = parse_rule(&request.rule)?;
    let mut tx = state.begin().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM segment WHERE tenant_id = $1")
        .bind(auth.tenant_id.as_str())
        .fetch_one(tx.conn())
        .await?;
    if existing >= MAX_SEGMENTS {
        return Err(ApiError::validation(
            "name",
            format!("a tenant keeps at most {MAX_SEGMENTS} segments; delete one first"),
        ));
    }
    let id = SegmentId::generate();
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO segment (tenant_id, id, name, rule, created_at, updated_at) VALUES (",
    );
    sql.bind(auth.tenant_id.as_str())
        .push(", ")
        .bind(id.as_str())
        .push(", ")
        .bind(name.as_str())
        .push(", ")
        .bind(rule.to_json().to_string())
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(now)
        .push(")");
    sql.query().execute(tx.conn()).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "segment.created",
        Some(id.as_str()),
        json!({ "segment_id": id, "name": name }),
    ));
    tx.commit().await?;
    let count = count(&state, &auth.tenant_id, &rule).await?;
    let segment = Stored {
        id,
        name,
        rule,
        created_at: now,
        updated_at: now,
    };
    Ok((StatusCode::CREATED, Json(segment.show(count))))
}

pub use crate::common::pagination::PageQuery;

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentPage {
    pub data: Vec<Segment>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's segments with their counts now, oldest first.
#[utoipa::path(get, path = "/v1/segments", tag = "segments", params(PageQuery),
    responses((status = 200, body = SegmentPage), (status = 422)), security(("api_key" = [])))]
async fn list_segments(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<SegmentPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), SegmentId::parse)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM segment WHERE tenant_id = "));
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id > ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(state.db.read()).await?;
    let mut found = rows.iter().map(stored).collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = pagination::next_cursor(&mut found, limit, |s| s.id.to_string());
    let counts = state
        .segments
        .with(&auth.tenant_id, |fresh, today| {
            found
                .iter()
                .map(|s| fresh.index.evaluate(&s.rule, today).len())
                .collect::<Vec<_>>()
        })
        .await?;
    let data = found
        .into_iter()
        .zip(counts)
        .map(|(s, count)| s.show(count))
        .collect();
    Ok(Json(SegmentPage { data, next_cursor }))
}

/// A segment with its count now and its count per day.
#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments",
    params(("id" = String, Path, description = "segment id")),
    responses((status = 200, body = Segment), (status = 404)), security(("api_key" = [])))]
async fn get_segment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Segment>> {
    let found = require(&state.db, &auth.tenant_id, &id).await?;
    let count = count(&state, &auth.tenant_id, &found.rule).await?;
    let mut sql = Sql::new("SELECT day, count FROM segment_count WHERE tenant_id = ");
    sql.bind(auth.tenant_id.as_str())
        .push(" AND segment_id = ")
        .bind(found.id.as_str())
        .push(" ORDER BY day DESC LIMIT ")
        .bind(HISTORY_DAYS);
    let mut history = sql
        .query()
        .fetch_all(state.db.read())
        .await?
        .iter()
        .map(|row| {
            Ok(HistoryPoint {
                date: row.try_get("day")?,
                count: row.try_get("count")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    history.reverse();
    let mut segment = found.show(count);
    segment.history = Some(history);
    Ok(Json(segment))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSegment {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
}

/// Rename a segment or change its rule.
#[utoipa::path(patch, path = "/v1/segments/{id}", tag = "segments", request_body = UpdateSegment,
    params(("id" = String, Path, description = "segment id")),
    responses((status = 200, body = Segment), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn update_segment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateSegment>,
) -> ApiResult<Json<Segment>> {
    let name = request
        .name
        .as_deref()
        .map(|n| text::required("name", n, MAX_NAME_CHARS))
        .transpose()?;
    let rule = request.rule.as_ref().map(parse_rule).transpose()?;
    let id = SegmentId::parse(&id).ok_or_else(|| ApiError::not_found("segment"))?;
    let mut tx = state.begin().await?;
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE segment SET updated_at = ");
    sql.bind(to_micros(tx.now()));
    let mut fields = Vec::new();
    if let Some(name) = &name {
        sql.push(", name = ").bind(name.as_str());
        fields.push("name");
    }
    if let Some(rule) = &rule {
        sql.push(", rule = ").bind(rule.to_json().to_string());
        fields.push("rule");
    }
    sql.push(" WHERE tenant_id = ")
        .bind(auth.tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    if sql.query().execute(tx.conn()).await?.rows_affected() == 0 {
        return Err(ApiError::not_found("segment"));
    }
    if !fields.is_empty() {
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "segment.updated",
            Some(id.as_str()),
            json!({ "segment_id": id, "fields": fields }),
        ));
    }
    tx.commit().await?;
    let found = require(&state.db, &auth.tenant_id, id.as_str()).await?;
    let count = count(&state, &auth.tenant_id, &found.rule).await?;
    Ok(Json(found.show(count)))
}

/// Delete a segment and its history.
#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments",
    params(("id" = String, Path, description = "segment id")),
    responses((status = 204), (status = 404)), security(("api_key" = [])))]
async fn delete_segment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = SegmentId::parse(&id).ok_or_else(|| ApiError::not_found("segment"))?;
    let mut tx = state.begin().await?;
    let deleted = sqlx::query("DELETE FROM segment WHERE tenant_id = $1 AND id = $2")
        .bind(auth.tenant_id.as_str())
        .bind(id.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found("segment"));
    }
    sqlx::query("DELETE FROM segment_count WHERE tenant_id = $1 AND segment_id = $2")
        .bind(auth.tenant_id.as_str())
        .bind(id.as_str())
        .execute(tx.conn())
        .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "segment.deleted",
        Some(id.as_str()),
        json!({ "segment_id": id }),
    ));
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Member ids of a page of `rule` after `after`, and the members read for them in id order.
async fn members_page(
    state: &AppState,
    tenant_id: &TenantId,
    rule: &Rule,
    after: Option<&str>,
    limit: usize,
) -> ApiResult<Vec<Member>> {
    let ids = state.segments.page(tenant_id, rule, after, limit).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let filter = member_store::Filter {
        ids: Some(ids),
        ..Default::default()
    };
    let mut reader = state.db.reader().await?;
    member_store::list(&mut reader, tenant_id, &filter, limit as i64).await
}

/// A segment's members now, in id order, each once across pages (members who join while a
/// listing runs come on later pages if they match).
#[utoipa::path(get, path = "/v1/segments/{id}/members", tag = "segments",
    params(("id" = String, Path, description = "segment id"), PageQuery),
    responses((status = 200, body = MemberPage), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn segment_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<MemberPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), crate::common::ids::MemberId::parse)?;
    let found = require(&state.db, &auth.tenant_id, &id).await?;
    let mut data = members_page(
        &state,
        &auth.tenant_id,
        &found.rule,
        cursor.as_ref().map(|c| c.as_str()),
        limit as usize + 1,
    )
    .await?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |m| m.id.to_string());
    Ok(Json(MemberPage { data, next_cursor }))
}

/// Export columns.
const EXPORT_COLUMNS: [&str; 9] = [
    "id",
    "external_id",
    "name",
    "phone",
    "birthday",
    "source",
    "tier",
    "tags",
    "created_at",
];

async fn export_page(
    state: &AppState,
    tenant_id: &TenantId,
    rule: &Rule,
    after: Option<String>,
    header: bool,
) -> ApiResult<(Vec<u8>, Option<String>)> {
    let members = members_page(state, tenant_id, rule, after.as_deref(), EXPORT_PAGE).await?;
    let mut writer = csv_async::AsyncWriter::from_writer(Vec::new());
    if header {
        writer
            .write_record(EXPORT_COLUMNS)
            .await
            .map_err(ApiError::internal)?;
    }
    for m in &members {
        let tags = m.tags.join("|");
        writer
            .write_record([
                m.id.as_str(),
                m.external_id.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or(""),
                m.phone.as_deref().unwrap_or(""),
                m.birthday.as_deref().unwrap_or(""),
                m.source.as_deref().unwrap_or(""),
                m.tier.as_deref().unwrap_or(""),
                tags.as_str(),
                m.created_at.as_str(),
            ])
            .await
            .map_err(ApiError::internal)?;
    }
    let bytes = writer.into_inner().await.map_err(ApiError::internal)?;
    let next = (members.len() == EXPORT_PAGE)
        .then(|| members.last().map(|m| m.id.to_string()))
        .flatten();
    Ok((bytes, next))
}

/// A segment's members as CSV (`id,external_id,name,phone,birthday,source,tier,tags,created_at`,
/// tags separated by `|`), streamed page by page in id order.
#[utoipa::path(get, path = "/v1/segments/{id}/export", tag = "segments",
    params(("id" = String, Path, description = "segment id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)),
    security(("api_key" = [])))]
async fn export_segment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    let found = match require(&state.db, &auth.tenant_id, &id).await {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    // The first page is read before answering, so a failure is a proper error.
    let (first, next) = match export_page(&state, &auth.tenant_id, &found.rule, None, true).await {
        Ok(page) => page,
        Err(error) => return error.into_response(),
    };
    let disposition = format!("attachment; filename=\"segment-{}.csv\"", found.id.as_str());
    let rule = found.rule;
    let stream = futures::stream::unfold((Some(first), next), move |(pending, cursor)| {
        let state = state.clone();
        let auth = auth.clone();
        let rule = rule.clone();
        async move {
            if let Some(bytes) = pending {
                return Some((Ok(bytes), (None, cursor)));
            }
            let cursor = cursor?;
            match export_page(&state, &auth.tenant_id, &rule, Some(cursor), false).await {
                Ok((bytes, next)) => Some((Ok(bytes), (None, next))),
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), (None, None))),
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream::<_>(stream),
    )
        .into_response()
}

/// The daily run's step: each segment's count on `date` (the tenant-local day), replacing a
/// count already written for that day.
pub async fn record_counts(state: &AppState, tenant_id: &TenantId, date: Date) -> ApiResult<usize> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segment WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant_id.as_str())
    .fetch_all(state.db.read())
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let found = rows.iter().map(stored).collect::<ApiResult<Vec<_>>>()?;
    let counts = state
        .segments
        .with(tenant_id, |fresh, today| {
            found
                .iter()
                .map(|s| fresh.index.evaluate(&s.rule, today).len())
                .collect::<Vec<_>>()
        })
        .await?;
    let mut tx = state.begin().await?;
    for (segment, count) in found.iter().zip(counts) {
        sqlx::query(
            "INSERT INTO segment_count (tenant_id, segment_id, day, count) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, segment_id, day) DO UPDATE SET count = excluded.count",
        )
        .bind(tenant_id.as_str())
        .bind(segment.id.as_str())
        .bind(date.to_string())
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .execute(tx.conn())
        .await?;
    }
    tx.commit().await?;
    Ok(found.len())
}

#[async_trait]
impl Audiences for Registry {
    async fn page(
        &self,
        tenant_id: &TenantId,
        segment_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ApiResult<Option<Vec<String>>> {
        let Some(id) = SegmentId::parse(segment_id) else {
            return Ok(None);
        };
        let Some(found) = find(self.db(), tenant_id, &id).await? else {
            return Ok(None);
        };
        Ok(Some(
            Registry::page(self, tenant_id, &found.rule, after, limit).await?,
        ))
    }
}
