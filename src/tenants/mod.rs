//! Tenants and their API keys: the administration that the CLI drives (`shequn tenants …`,
//! `shequn keys …`) and that `serve` uses to create the `default` tenant on first start; and the
//! tenant's own settings (`GET/PUT /v1/tenant/settings`: its time zone).

use axum::extract::State;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::{self, Auth};
use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{ApiKeyId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::time::{micros_to_rfc3339, time_zone_named, to_micros};
use crate::AppState;

/// The default time zone of a tenant (DESIGN rule 6).
pub const DEFAULT_TIMEZONE: &str = crate::common::time::DEFAULT_TIME_ZONE;
/// Longest tenant name.
pub const MAX_NAME_LEN: usize = 100;

/// A new tenant and its first key (the secret is shown once).
#[derive(Debug, Serialize)]
pub struct CreatedTenant {
    pub tenant_id: TenantId,
    pub api_key: String,
}

/// Create a tenant with one API key.
pub async fn create(db: &Db, name: &str, now: Timestamp) -> anyhow::Result<CreatedTenant> {
    let name = crate::common::text::trimmed(name, MAX_NAME_LEN).ok_or_else(|| {
        anyhow::anyhow!("tenant name must be 1 to {MAX_NAME_LEN} printable characters")
    })?;
    let tenant_id = TenantId::generate();
    let mut tx = db.begin(now).await?;
    sqlx::query("INSERT INTO tenant (id, name, timezone, created_at) VALUES ($1, $2, $3, $4)")
        .bind(tenant_id.as_str())
        .bind(name)
        .bind(DEFAULT_TIMEZONE)
        .bind(to_micros(now))
        .execute(tx.conn())
        .await?;
    let (key_id, api_key) =
        auth::create_key(tx.conn(), &tenant_id, auth::KeyRole::Owner, now).await?;
    tx.emit(NewEvent::new(
        &tenant_id,
        "tenant.created",
        Some(tenant_id.as_str()),
        json!({ "tenant_id": tenant_id, "name": name }),
    ));
    tx.emit(NewEvent::new(
        &tenant_id,
        "api_key.created",
        Some(key_id.as_str()),
        json!({ "key_id": key_id }),
    ));
    tx.commit().await?;
    Ok(CreatedTenant { tenant_id, api_key })
}

/// On the first start of an empty database, create the `default` tenant.
pub async fn ensure_default(db: &Db, now: Timestamp) -> anyhow::Result<Option<CreatedTenant>> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenant")
        .fetch_one(&mut *db.write_conn().await?)
        .await?;
    if count > 0 {
        return Ok(None);
    }
    Ok(Some(create(db, "default", now).await?))
}

pub async fn exists(db: &Db, tenant_id: &TenantId) -> anyhow::Result<bool> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM tenant WHERE id = $1")
        .bind(tenant_id.as_str())
        .fetch_optional(db.read())
        .await?;
    Ok(found.is_some())
}

/// A key as listed (never its secret).
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub key_id: ApiKeyId,
    pub prefix: String,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Create another key for a tenant; returns (key id, secret).
pub async fn create_key(
    db: &Db,
    tenant_id: &TenantId,
    role: auth::KeyRole,
    now: Timestamp,
) -> anyhow::Result<(ApiKeyId, String)> {
    anyhow::ensure!(exists(db, tenant_id).await?, "no tenant {tenant_id}");
    let mut tx = db.begin(now).await?;
    let (key_id, secret) = auth::create_key(tx.conn(), tenant_id, role, now).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "api_key.created",
        Some(key_id.as_str()),
        json!({ "key_id": key_id, "role": role }),
    ));
    tx.commit().await?;
    Ok((key_id, secret))
}

pub async fn list_keys(db: &Db, tenant_id: &TenantId) -> anyhow::Result<Vec<KeyInfo>> {
    anyhow::ensure!(exists(db, tenant_id).await?, "no tenant {tenant_id}");
    let rows = sqlx::query(
        "SELECT id, key_prefix, role, created_at, revoked_at FROM api_key WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant_id.as_str())
    .fetch_all(db.read())
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(KeyInfo {
                key_id: ApiKeyId::from_db(row.try_get("id")?),
                prefix: row.try_get("key_prefix")?,
                role: row.try_get("role")?,
                created_at: micros_to_rfc3339(row.try_get("created_at")?),
                revoked_at: row
                    .try_get::<Option<i64>, _>("revoked_at")?
                    .map(micros_to_rfc3339),
            })
        })
        .collect()
}

/// Revoke a key; false when no live key has that id.
pub async fn revoke_key(db: &Db, key_id: &ApiKeyId, now: Timestamp) -> anyhow::Result<bool> {
    revoke_key_of(db, None, key_id, now).await
}

/// Revoke a key of `tenant`, when given (the console revokes only its operator's tenant's
/// keys); false when no such live key has that id.
pub async fn revoke_key_of(
    db: &Db,
    tenant: Option<&TenantId>,
    key_id: &ApiKeyId,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let mut tx = db.begin(now).await?;
    let tenant: Option<String> = match tenant {
        None => sqlx::query_scalar(
            "UPDATE api_key SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING tenant_id",
        )
        .bind(to_micros(now))
        .bind(key_id.as_str()),
        Some(tenant) => sqlx::query_scalar(
            "UPDATE api_key SET revoked_at = $1 \
             WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL RETURNING tenant_id",
        )
        .bind(to_micros(now))
        .bind(key_id.as_str())
        .bind(tenant.as_str()),
    }
    .fetch_optional(tx.conn())
    .await?;
    let Some(tenant) = tenant else {
        tx.rollback().await?;
        return Ok(false);
    };
    tx.emit(NewEvent::new(
        &TenantId::from_db(tenant),
        "api_key.revoked",
        Some(key_id.as_str()),
        json!({ "key_id": key_id }),
    ));
    tx.commit().await?;
    Ok(true)
}

// --- settings ----------------------------------------------------------------------------

/// The tenant's time zone (DESIGN rule 6): what "today", a member day, a birthday, a cut-off and
/// a date-only input (`"2026-12-08"`) mean for this tenant.
pub async fn time_zone(conn: &mut AnyConnection, tenant_id: &TenantId) -> ApiResult<TimeZone> {
    let name: Option<String> = sqlx::query_scalar("SELECT timezone FROM tenant WHERE id = $1")
        .bind(tenant_id.as_str())
        .fetch_optional(conn)
        .await?;
    let name = name.unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
    time_zone_named(&name)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("tenant time zone {name:?} unknown")))
}

/// [`time_zone`] on a read connection of its own.
pub async fn time_zone_in(db: &Db, tenant_id: &TenantId) -> ApiResult<TimeZone> {
    let mut conn = db.read().acquire().await?;
    time_zone(&mut conn, tenant_id).await
}

/// A tenant's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSettings {
    pub tenant_id: String,
    pub name: String,
    /// IANA time zone name, e.g. `Asia/Shanghai` (the default).
    pub time_zone: String,
}

/// `PUT /v1/tenant/settings`: absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantSettings {
    /// IANA time zone name (`Asia/Shanghai`, `Europe/Berlin`, `UTC`); 422 for an unknown one.
    pub time_zone: Option<String>,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

async fn read_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> ApiResult<TenantSettings> {
    let row = sqlx::query("SELECT name, timezone FROM tenant WHERE id = $1")
        .bind(tenant_id.as_str())
        .fetch_one(conn)
        .await?;
    Ok(TenantSettings {
        tenant_id: tenant_id.to_string(),
        name: row.try_get("name")?,
        time_zone: row.try_get("timezone")?,
    })
}

/// The calling tenant's settings.
#[utoipa::path(get, path = "/v1/tenant/settings", tag = "tenant",
    responses((status = 200, body = TenantSettings)), security(("api_key" = [])))]
async fn get_settings(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<TenantSettings>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(read_settings(&mut conn, &auth.tenant_id).await?))
}

/// Change the calling tenant's settings (owner key). A new time zone applies to every date read
/// from then on: today's check-ins, member days, birthdays, date-only inputs; instants already
/// stored do not move. The daily run already scheduled at the old zone's midnight runs once more
/// there, then at the new zone's.
#[utoipa::path(put, path = "/v1/tenant/settings", tag = "tenant",
    request_body = UpdateTenantSettings,
    responses((status = 200, body = TenantSettings), (status = 403), (status = 422)),
    security(("api_key" = [])))]
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<UpdateTenantSettings>,
) -> ApiResult<Json<TenantSettings>> {
    auth.require_owner()?;
    let zone = match &request.time_zone {
        Some(name) => Some(
            time_zone_named(name)
                .and_then(|tz| tz.iana_name().map(str::to_owned))
                .ok_or_else(|| {
                    ApiError::validation(
                        "time_zone",
                        "must be an IANA time zone name such as Asia/Shanghai or Europe/Berlin",
                    )
                })?,
        ),
        None => None,
    };
    let mut tx = state.begin().await?;
    let before = read_settings(tx.conn(), &auth.tenant_id).await?;
    if let Some(zone) = zone.filter(|z| *z != before.time_zone) {
        sqlx::query("UPDATE tenant SET timezone = $1 WHERE id = $2")
            .bind(zone.as_str())
            .bind(auth.tenant_id.as_str())
            .execute(tx.conn())
            .await?;
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "tenant.settings_updated",
            Some(auth.tenant_id.as_str()),
            json!({ "time_zone": zone, "previous_time_zone": before.time_zone }),
        ));
    }
    let after = read_settings(tx.conn(), &auth.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(after))
}
