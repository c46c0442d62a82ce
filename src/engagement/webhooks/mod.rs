//! Webhooks (Standard Webhooks): endpoints a merchant registers, and signed deliveries of the
//! tenant's outbox events to them, with retries.
//!
//! | part | what it holds |
//! | --- | --- |
//! | this file | the endpoints API (`/v1/webhook-endpoints`), deliveries as clients see them |
//! | [`worker`] | outbox → delivery rows → claimed attempts → recorded outcomes, on every node |
//! | [`signing`] | secrets and the `webhook-signature` header |
//! | [`safety`] | which addresses an endpoint may reach (no cloud metadata services) |
//!
//! Secrets are shown once: in the answer that creates the endpoint and in the answer of
//! `rotate-secret`; `GET` never shows them. After a rotation the old secret keeps signing beside
//! the new one for 24 hours (the Standard Webhooks header takes several signatures).

pub mod safety;
pub mod signing;
pub mod worker;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use worker::{run_due_deliveries, Config, DeliveryPass, DEFAULT_RETRY_SECS};

use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::events::event_type_of;
use crate::common::extract::{Path, Query};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::sql::Sql;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::AppState;

crate::typed_id!(WebhookEndpointId, "whe");
crate::typed_id!(WebhookDeliveryId, "whd");

/// The type of the event `POST /v1/webhook-endpoints/{id}/test` sends.
pub const TEST_EVENT: &str = "webhook.test";
/// Most endpoints per tenant.
pub const MAX_ENDPOINTS: i64 = 100;
/// Most event types one endpoint subscribes to.
pub const MAX_EVENT_TYPES: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long the secret before a rotation keeps signing beside the new one (24 h).
pub const ROTATION_OVERLAP_MICROS: i64 = 24 * 3600 * 1_000_000;
/// Largest page of endpoints or deliveries.
pub const MAX_PAGE: i64 = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
}

/// An endpoint as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    #[schema(value_type = String)]
    pub id: WebhookEndpointId,
    pub url: String,
    pub description: String,
    /// Event types delivered, or `["*"]` for all.
    pub event_types: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why it is disabled: `operator`, `gone` (the endpoint answered 410) or `failing` (every
    /// attempt failed for 5 days).
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Only when the endpoint is created and when its secret is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

const COLUMNS: &str =
    "id, url, description, event_types, status, disabled_reason, created_at, updated_at";

fn endpoint(row: &AnyRow) -> ApiResult<WebhookEndpoint> {
    let types: String = row.try_get("event_types")?;
    Ok(WebhookEndpoint {
        id: WebhookEndpointId::from_db(row.try_get("id")?),
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: serde_json::from_str(&types).map_err(ApiError::internal)?,
        status: row.try_get("status")?,
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
        secret: None,
    })
}

async fn find(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<WebhookEndpoint> {
    let id = WebhookEndpointId::parse(id).ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoint WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    endpoint(&row)
}

async fn url_field(text: &str) -> ApiResult<String> {
    match safety::check_url_resolved(text.trim()).await {
        Ok(url) => Ok(url.to_string()),
        Err(error @ (safety::UnsafeUrl::Host(_) | safety::UnsafeUrl::Address(_))) => {
            Err(ApiError::coded(codes::UNSAFE_URL, format!("url {error}"))
                .with_details(json!({ "field": "url" })))
        }
        Err(error) => Err(ApiError::validation("url", error.to_string())),
    }
}

fn event_types_field(types: &[String]) -> ApiResult<Vec<String>> {
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::validation(
            "event_types",
            format!("give 1 to {MAX_EVENT_TYPES} event types, or [\"*\"]"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for kind in types {
        if kind != "*" && event_type_of(kind).is_none() {
            return Err(ApiError::validation(
                "event_types",
                format!("{kind:?} is not an event type (see the catalogue on /docs) nor \"*\""),
            ));
        }
        if !out.contains(kind) {
            out.push(kind.clone());
        }
    }
    if out.iter().any(|k| k == "*") {
        out = vec!["*".to_owned()];
    }
    Ok(out)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookEndpoint {
    /// http(s) URL; link-local and cloud-metadata addresses are refused (`unsafe_url`).
    pub url: String,
    /// Event types to deliver (see the catalogue), or `["*"]`.
    pub event_types: Vec<String>,
    pub description: Option<String>,
}

/// Register an endpoint; the answer holds its signing secret, shown this once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateWebhookEndpoint,
    responses((status = 201, body = WebhookEndpoint), (status = 422, description = "bad url or event types; `unsafe_url` for metadata addresses")),
    security(("api_key" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateWebhookEndpoint>,
) -> ApiResult<(StatusCode, Json<WebhookEndpoint>)> {
    let url = url_field(&request.url).await?;
    let event_types = event_types_field(&request.event_types)?;
    let description = text::optional(
        "description",
        request.description.as_deref(),
        MAX_DESCRIPTION_CHARS,
    )?
    .unwrap_or_default();
    let mut tx = state.begin().await?;
    let existing: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoint WHERE tenant_id = $1")
            .bind(auth.tenant_id.as_str())
            .fetch_one(tx.conn())
            .await?;
    if existing >= MAX_ENDPOINTS {
        return Err(ApiError::validation(
            "url",
            format!("a tenant keeps at most {MAX_ENDPOINTS} webhook endpoints; delete one first"),
        ));
    }
    // Deliver what happens from now on.
    let cursor: i64 = sqlx::query_scalar("SELECT event_seq FROM tenant WHERE id = $1")
        .bind(auth.tenant_id.as_str())
        .fetch_one(tx.conn())
        .await?;
    let id = WebhookEndpointId::generate();
    let secret = signing::new_secret();
    let now = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO webhook_endpoint (tenant_id, id, url, description, event_types, status, \
         secret, event_cursor, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'enabled', $6, $7, $8, $8)",
    )
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .bind(&url)
    .bind(&description)
    .bind(serde_json::to_string(&event_types).map_err(ApiError::internal)?)
    .bind(&secret)
    .bind(cursor)
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "webhook_endpoint.created",
        Some(id.as_str()),
        json!({ "endpoint_id": id, "event_types": event_types }),
    ));
    let mut created = find(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.commit().await?;
    created.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(created)))
}

pub use crate::common::pagination::PageQuery;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointPage {
    pub data: Vec<WebhookEndpoint>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's endpoints, oldest first (without secrets).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = WebhookEndpointPage), (status = 422)), security(("api_key" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<WebhookEndpointPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), WebhookEndpointId::parse)?;
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoint WHERE tenant_id = "
    ));
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id > ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(state.db.read()).await?;
    let mut data = rows.iter().map(endpoint).collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |e| e.id.to_string());
    Ok(Json(WebhookEndpointPage { data, next_cursor }))
}

/// One endpoint (without its secret).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "endpoint id")),
    responses((status = 200, body = WebhookEndpoint), (status = 404)), security(("api_key" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(find(&mut conn, &auth.tenant_id, &id).await?))
}

/// Whether an endpoint takes deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEndpointStatus {
    Enabled,
    Disabled,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookEndpoint {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// `disabled` stops deliveries (pending ones wait); `enabled` resumes them, with the events
    /// of the time in between.
    pub status: Option<WebhookEndpointStatus>,
}

/// Change an endpoint's url, event types, description or status.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", request_body = UpdateWebhookEndpoint,
    params(("id" = String, Path, description = "endpoint id")),
    responses((status = 200, body = WebhookEndpoint), (status = 404), (status = 422)), security(("api_key" = [])))]
async fn update_endpoint(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateWebhookEndpoint>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let url = match &request.url {
        Some(url) => Some(url_field(url).await?),
        None => None,
    };
    let event_types = request
        .event_types
        .as_deref()
        .map(event_types_field)
        .transpose()?;
    let description = match &request.description {
        Some(d) => {
            Some(text::optional("description", Some(d), MAX_DESCRIPTION_CHARS)?.unwrap_or_default())
        }
        None => None,
    };
    let mut tx = state.begin().await?;
    let current = find(tx.conn(), &auth.tenant_id, &id).await?;
    let now = to_micros(tx.now());
    let mut fields = Vec::new();
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE webhook_endpoint SET updated_at = ");
    sql.bind(now);
    if let Some(url) = &url {
        sql.push(", url = ").bind(url.as_str());
        fields.push("url");
    }
    if let Some(types) = &event_types {
        sql.push(", event_types = ")
            .bind(serde_json::to_string(types).map_err(ApiError::internal)?);
        fields.push("event_types");
    }
    if let Some(description) = &description {
        sql.push(", description = ").bind(description.as_str());
        fields.push("description");
    }
    let mut disabled = false;
    match request.status {
        Some(WebhookEndpointStatus::Enabled) if current.status != "enabled" => {
            sql.push(", status = 'enabled', disabled_reason = NULL, failing_since = NULL");
            fields.push("status");
        }
        Some(WebhookEndpointStatus::Disabled) if current.status == "enabled" => disabled = true,
        _ => {}
    }
    sql.push(" WHERE tenant_id = ")
        .bind(auth.tenant_id.as_str())
        .push(" AND id = ")
        .bind(current.id.as_str());
    sql.query().execute(tx.conn()).await?;
    if disabled {
        worker::disable(
            &mut tx,
            &auth.tenant_id,
            current.id.as_str(),
            worker::DISABLED_OPERATOR,
        )
        .await?;
    }
    if !fields.is_empty() {
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "webhook_endpoint.updated",
            Some(current.id.as_str()),
            json!({ "endpoint_id": current.id, "fields": fields }),
        ));
    }
    let updated = find(tx.conn(), &auth.tenant_id, current.id.as_str()).await?;
    tx.commit().await?;
    Ok(Json(updated))
}

/// Delete an endpoint with its deliveries.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "endpoint id")),
    responses((status = 204), (status = 404)), security(("api_key" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.begin().await?;
    let current = find(tx.conn(), &auth.tenant_id, &id).await?;
    let tenant = auth.tenant_id.as_str();
    let id = current.id.as_str();
    sqlx::query(
        "DELETE FROM webhook_attempt WHERE tenant_id = $1 AND delivery_id IN \
         (SELECT id FROM webhook_delivery WHERE tenant_id = $1 AND endpoint_id = $2)",
    )
    .bind(tenant)
    .bind(id)
    .execute(tx.conn())
    .await?;
    sqlx::query("DELETE FROM webhook_delivery WHERE tenant_id = $1 AND endpoint_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM webhook_endpoint WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(tx.conn())
        .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "webhook_endpoint.deleted",
        Some(id),
        json!({ "endpoint_id": id }),
    ));
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the endpoint's secret; the answer shows the new one. For 24 hours deliveries carry
/// two signatures (`v1,<new> v1,<old>`), so a receiver still holding the old secret verifies.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "endpoint id")),
    responses((status = 200, body = WebhookEndpoint), (status = 404)), security(("api_key" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let mut tx = state.begin().await?;
    let current = find(tx.conn(), &auth.tenant_id, &id).await?;
    let secret = signing::new_secret();
    sqlx::query(
        "UPDATE webhook_endpoint SET previous_secret = secret, previous_secret_until = $5, \
         secret = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
    )
    .bind(&secret)
    .bind(to_micros(tx.now()))
    .bind(auth.tenant_id.as_str())
    .bind(current.id.as_str())
    .bind(to_micros(tx.now()).saturating_add(ROTATION_OVERLAP_MICROS))
    .execute(tx.conn())
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "webhook_endpoint.updated",
        Some(current.id.as_str()),
        json!({ "endpoint_id": current.id, "fields": ["secret"] }),
    ));
    let mut updated = find(tx.conn(), &auth.tenant_id, current.id.as_str()).await?;
    tx.commit().await?;
    updated.secret = Some(secret);
    Ok(Json(updated))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookTestSent {
    /// In the event's `data.test_id`, to find it among the deliveries.
    pub test_id: String,
}

/// Send a `webhook.test` event to this endpoint only (through the outbox, like any event).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "endpoint id")),
    responses((status = 202, body = WebhookTestSent), (status = 404), (status = 409, description = "`endpoint_disabled`")),
    security(("api_key" = [])))]
async fn send_test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<WebhookTestSent>)> {
    let mut tx = state.begin().await?;
    let current = find(tx.conn(), &auth.tenant_id, &id).await?;
    if current.status != "enabled" {
        return Err(ApiError::conflict(
            codes::ENDPOINT_DISABLED,
            "the endpoint is disabled; enable it first",
        ));
    }
    let test_id = uuid::Uuid::new_v4().simple().to_string();
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "webhook.test",
        Some(current.id.as_str()),
        json!({ "endpoint_id": current.id, "test_id": test_id }),
    ));
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(WebhookTestSent { test_id })))
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttempt {
    pub at: String,
    /// The HTTP status answered; null when there was no answer.
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// A delivery of one event to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    #[schema(value_type = String)]
    pub id: WebhookDeliveryId,
    pub endpoint_id: String,
    /// The `webhook-id` header: the same on every attempt.
    pub webhook_id: String,
    pub event_seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// When a pending delivery is next attempted.
    pub next_attempt_at: Option<String>,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub attempts: Vec<WebhookAttempt>,
    pub created_at: String,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl WebhookDeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            WebhookDeliveryStatus::Pending => "pending",
            WebhookDeliveryStatus::Succeeded => "succeeded",
            WebhookDeliveryStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WebhookDeliveriesQuery {
    pub status: Option<WebhookDeliveryStatus>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryPage {
    pub data: Vec<WebhookDelivery>,
    pub next_cursor: Option<String>,
}

const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, message_id, event_seq, type, status, next_attempt_at, body, created_at";

async fn deliveries(
    pool: &sqlx::AnyPool,
    tenant_id: &TenantId,
    rows: Vec<AnyRow>,
) -> ApiResult<Vec<WebhookDelivery>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get("status")?;
        let body: String = row.try_get("body")?;
        out.push(WebhookDelivery {
            id: WebhookDeliveryId::from_db(row.try_get("id")?),
            endpoint_id: row.try_get("endpoint_id")?,
            webhook_id: row.try_get("message_id")?,
            event_seq: row.try_get("event_seq")?,
            kind: row.try_get("type")?,
            next_attempt_at: (status == "pending")
                .then(|| row.try_get("next_attempt_at").map(micros_to_rfc3339))
                .transpose()?,
            status,
            payload: serde_json::from_str(&body).unwrap_or(Value::Null),
            attempts: Vec::new(),
            created_at: micros_to_rfc3339(row.try_get("created_at")?),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let mut sql = Sql::new(
        "SELECT delivery_id, at, status_code, duration_ms, error FROM webhook_attempt \
         WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str()).push(" AND delivery_id IN (");
    for (i, d) in out.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(d.id.as_str());
    }
    sql.push(") ORDER BY delivery_id, n");
    for row in sql.query().fetch_all(pool).await? {
        let delivery_id: String = row.try_get("delivery_id")?;
        if let Some(d) = out.iter_mut().find(|d| d.id.as_str() == delivery_id) {
            d.attempts.push(WebhookAttempt {
                at: micros_to_rfc3339(row.try_get("at")?),
                status_code: row.try_get("status_code")?,
                duration_ms: row.try_get("duration_ms")?,
                error: row.try_get("error")?,
            });
        }
    }
    Ok(out)
}

/// An endpoint's deliveries, newest first, each with its attempts.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "endpoint id"), WebhookDeliveriesQuery),
    responses((status = 200, body = WebhookDeliveryPage), (status = 404), (status = 422)), security(("api_key" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<WebhookDeliveriesQuery>,
) -> ApiResult<Json<WebhookDeliveryPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), WebhookDeliveryId::parse)?;
    let endpoint = {
        let mut conn = state.db.read().acquire().await?;
        find(&mut conn, &auth.tenant_id, &id).await?
    };
    let mut sql = Sql::new(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_delivery WHERE tenant_id = "
    ));
    sql.bind(auth.tenant_id.as_str())
        .push(" AND endpoint_id = ")
        .bind(endpoint.id.as_str());
    if let Some(status) = query.status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    if let Some(cursor) = &cursor {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(state.db.read()).await?;
    let mut data = deliveries(state.db.read(), &auth.tenant_id, rows).await?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |d| d.id.to_string());
    Ok(Json(WebhookDeliveryPage { data, next_cursor }))
}

/// WebhookAttempt a delivery again now, with the whole retry schedule ahead of it (also a failed or
/// succeeded one).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "endpoint id"), ("delivery_id" = String, Path, description = "delivery id")),
    responses((status = 202, body = WebhookDelivery), (status = 404)), security(("api_key" = [])))]
async fn retry_delivery(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    let delivery_id = WebhookDeliveryId::parse(&delivery_id)
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    let mut tx = state.begin().await?;
    let endpoint = find(tx.conn(), &auth.tenant_id, &id).await?;
    let now = to_micros(tx.now());
    let done = sqlx::query(
        "UPDATE webhook_delivery SET status = 'pending', round_failures = 0, \
         next_attempt_at = $1, updated_at = $1 \
         WHERE tenant_id = $2 AND endpoint_id = $3 AND id = $4",
    )
    .bind(now)
    .bind(auth.tenant_id.as_str())
    .bind(endpoint.id.as_str())
    .bind(delivery_id.as_str())
    .execute(tx.conn())
    .await?;
    if done.rows_affected() != 1 {
        return Err(ApiError::not_found("webhook delivery"));
    }
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_delivery WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(auth.tenant_id.as_str())
    .bind(delivery_id.as_str())
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    let mut found = deliveries(state.db.read(), &auth.tenant_id, rows).await?;
    let delivery = found
        .pop()
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
