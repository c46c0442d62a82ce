//! Leaders (团长) and their pickup points (自提点): create, read, change, list, nearest first;
//! each member's chosen leader.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::sql::{backend_of, Backend, Sql};
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members;
use crate::AppState;

use super::model::{
    ChooseLeader, CreateLeader, Leader, LeaderListQuery, LeaderPage, LeaderStatus, Location,
    MemberLeader, NearbyLeader, NearbyLeaders, NearbyQuery, PickupPoint, UpdateLeader,
};
use super::rules::{self, MAX_COMMISSION_BP};
use super::{LeaderId, MAX_PAGE};

/// Most pickup points `nearby` answers with.
pub const MAX_NEARBY: i64 = 50;
/// Active located leaders `nearby` ranks at most (a tenant's leaders fit easily; beyond this a
/// spatial index would be needed).
const MAX_NEARBY_SCAN: i64 = 10_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_leader, list_leaders))
        .routes(routes!(nearby))
        .routes(routes!(get_leader, update_leader))
        .routes(routes!(choose_leader, member_leader))
}

/// The columns of a leader row, in [`from_row`]'s order.
pub const COLUMNS: &str = "id, member_id, name, status, commission_bp, pickup_name, \
    pickup_address, pickup_hours, lat_micro, lng_micro, debt, created_at, updated_at";

/// A leader row.
#[derive(Debug, Clone)]
pub struct StoredLeader {
    pub id: LeaderId,
    pub member_id: MemberId,
    pub name: String,
    pub status: LeaderStatus,
    pub commission_bp: i64,
    pub pickup_name: String,
    pub pickup_address: String,
    pub pickup_hours: String,
    pub location: Option<(i64, i64)>,
    pub debt: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn from_row(row: &AnyRow) -> Result<StoredLeader, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let lat: Option<i64> = row.try_get("lat_micro")?;
    let lng: Option<i64> = row.try_get("lng_micro")?;
    Ok(StoredLeader {
        id: LeaderId::from_db(row.try_get("id")?),
        member_id: MemberId::from_db(row.try_get("member_id")?),
        name: row.try_get("name")?,
        status: LeaderStatus::parse(&status).unwrap_or(LeaderStatus::Closed),
        commission_bp: row.try_get("commission_bp")?,
        pickup_name: row.try_get("pickup_name")?,
        pickup_address: row.try_get("pickup_address")?,
        pickup_hours: row.try_get("pickup_hours")?,
        location: lat.zip(lng),
        debt: row.try_get("debt")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl StoredLeader {
    pub fn pickup_point(&self) -> PickupPoint {
        PickupPoint {
            name: self.pickup_name.clone(),
            address: self.pickup_address.clone(),
            location: self.location.map(|(lat, lng)| Location {
                lat: lat as f64 / rules::MICRO,
                lng: lng as f64 / rules::MICRO,
            }),
            hours: self.pickup_hours.clone(),
        }
    }

    pub fn view(&self) -> Leader {
        Leader {
            id: self.id.to_string(),
            member_id: self.member_id.to_string(),
            name: self.name.clone(),
            status: self.status,
            pickup_point: self.pickup_point(),
            commission_bp: self.commission_bp,
            debt: self.debt,
            created_at: micros_to_rfc3339(self.created_at),
            updated_at: micros_to_rfc3339(self.updated_at),
        }
    }
}

/// Parse a leader id from a client; a malformed id is simply not found.
pub fn leader_id(text: &str) -> ApiResult<LeaderId> {
    LeaderId::parse(text).ok_or_else(|| ApiError::not_found("leader"))
}

/// One leader of the tenant (locked for update on PostgreSQL when `lock`).
pub async fn fetch(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &LeaderId,
    lock: bool,
) -> ApiResult<Option<StoredLeader>> {
    let lock = if lock && backend_of(conn) == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM leader WHERE tenant_id = $1 AND id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The leader or 404.
pub async fn require(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    lock: bool,
) -> ApiResult<StoredLeader> {
    let id = leader_id(id)?;
    fetch(conn, tenant_id, &id, lock)
        .await?
        .ok_or_else(|| ApiError::not_found("leader"))
}

/// A pickup point's fields, validated: (name, address, hours, location in micro-degrees).
type PickupFields = (String, String, String, Option<(i64, i64)>);

/// The pickup point's fields, validated.
fn pickup_fields(point: &PickupPoint) -> ApiResult<PickupFields> {
    let name = text::required("pickup_point.name", &point.name, 100)?;
    let address = text::required("pickup_point.address", &point.address, 200)?;
    let hours = text::required("pickup_point.hours", &point.hours, 100)?;
    let location = match point.location {
        None => None,
        Some(Location { lat, lng }) => Some(rules::micro_degrees(lat, lng).ok_or_else(|| {
            ApiError::validation(
                "pickup_point.location",
                "lat must be -90 to 90 and lng -180 to 180 (degrees)",
            )
        })?),
    };
    Ok((name, address, hours, location))
}

fn commission_bp(bp: i64) -> ApiResult<i64> {
    if (0..=MAX_COMMISSION_BP).contains(&bp) {
        Ok(bp)
    } else {
        Err(ApiError::validation(
            "commission_bp",
            format!("must be 0 to {MAX_COMMISSION_BP} basis points"),
        ))
    }
}

/// Make a member a leader with a pickup point (one leader per member).
#[utoipa::path(post, path = "/v1/leaders", tag = "neighbourhood",
    request_body = CreateLeader,
    responses((status = 201, body = Leader), (status = 404),
              (status = 409, description = "already_leader, member_erased"), (status = 422)),
    security(("api_key" = [])))]
async fn create_leader(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateLeader>,
) -> ApiResult<(StatusCode, Json<Leader>)> {
    let tenant_id = &auth.tenant_id;
    let member_id = members::member_id(&request.member_id)?;
    let name = text::required("name", &request.name, 100)?;
    let (pickup_name, address, hours, location) = pickup_fields(&request.pickup_point)?;
    let bp = commission_bp(request.commission_bp)?;
    let status = match request.status {
        None | Some(LeaderStatus::Active) => LeaderStatus::Active,
        Some(LeaderStatus::Paused) => LeaderStatus::Paused,
        Some(LeaderStatus::Closed) => {
            return Err(ApiError::validation(
                "status",
                "a new leader is active or paused",
            ))
        }
    };
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), tenant_id, &member_id).await?;
    let id = LeaderId::generate();
    let now = to_micros(tx.now());
    let inserted = sqlx::query(
        "INSERT INTO leader (tenant_id, id, member_id, name, status, commission_bp, pickup_name, \
         pickup_address, pickup_hours, lat_micro, lng_micro, debt, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $12)",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(member_id.as_str())
    .bind(name.as_str())
    .bind(status.as_str())
    .bind(bp)
    .bind(pickup_name.as_str())
    .bind(address.as_str())
    .bind(hours.as_str())
    .bind(location.map(|l| l.0))
    .bind(location.map(|l| l.1))
    .bind(now)
    .execute(tx.conn())
    .await;
    if let Err(error) = inserted {
        if !is_unique_violation(&error) {
            return Err(error.into());
        }
        drop(tx);
        let mut conn = state.db.read().acquire().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM leader WHERE tenant_id = $1 AND member_id = $2")
                .bind(tenant_id.as_str())
                .bind(member_id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        return Err(
            ApiError::conflict(codes::ALREADY_LEADER, "this member is a leader already")
                .with_details(json!({ "leader_id": existing })),
        );
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "leader.created",
        Some(id.as_str()),
        json!({ "leader_id": id, "member_id": member_id, "status": status.as_str(),
                "commission_bp": bp }),
    ));
    let leader = fetch(tx.conn(), tenant_id, &id, false)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("leader {id} vanished")))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(leader.view())))
}

/// One leader.
#[utoipa::path(get, path = "/v1/leaders/{id}", tag = "neighbourhood",
    params(("id" = String, Path)),
    responses((status = 200, body = Leader), (status = 404)), security(("api_key" = [])))]
async fn get_leader(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Leader>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(
        require(&mut conn, &auth.tenant_id, &id, false)
            .await?
            .view(),
    ))
}

/// Change a leader's name, pickup point, commission rate (for orders picked up from now on)
/// or status (`paused` takes no new wave orders; `closed` is final).
#[utoipa::path(patch, path = "/v1/leaders/{id}", tag = "neighbourhood",
    params(("id" = String, Path)), request_body = UpdateLeader,
    responses((status = 200, body = Leader), (status = 404),
              (status = 409, description = "invalid_transition: a closed leader stays closed"),
              (status = 422)),
    security(("api_key" = [])))]
async fn update_leader(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateLeader>,
) -> ApiResult<Json<Leader>> {
    let tenant_id = &auth.tenant_id;
    let name = text::optional("name", request.name.as_deref(), 100)?;
    let pickup = request
        .pickup_point
        .as_ref()
        .map(pickup_fields)
        .transpose()?;
    let bp = request.commission_bp.map(commission_bp).transpose()?;
    let mut tx = state.begin().await?;
    let mut leader = require(tx.conn(), tenant_id, &id, true).await?;
    let mut fields = Vec::new();
    if let Some(name) = name {
        leader.name = name;
        fields.push("name");
    }
    if let Some((pickup_name, address, hours, location)) = pickup {
        leader.pickup_name = pickup_name;
        leader.pickup_address = address;
        leader.pickup_hours = hours;
        leader.location = location;
        fields.push("pickup_point");
    }
    if let Some(bp) = bp {
        leader.commission_bp = bp;
        fields.push("commission_bp");
    }
    if let Some(status) = request.status {
        if leader.status == LeaderStatus::Closed && status != LeaderStatus::Closed {
            return Err(ApiError::conflict(
                codes::INVALID_TRANSITION,
                "a closed leader stays closed",
            )
            .with_details(json!({ "status": "closed" })));
        }
        leader.status = status;
        fields.push("status");
    }
    let now = to_micros(tx.now());
    sqlx::query(
        "UPDATE leader SET name = $1, status = $2, commission_bp = $3, pickup_name = $4, \
         pickup_address = $5, pickup_hours = $6, lat_micro = $7, lng_micro = $8, updated_at = $9 \
         WHERE tenant_id = $10 AND id = $11",
    )
    .bind(leader.name.as_str())
    .bind(leader.status.as_str())
    .bind(leader.commission_bp)
    .bind(leader.pickup_name.as_str())
    .bind(leader.pickup_address.as_str())
    .bind(leader.pickup_hours.as_str())
    .bind(leader.location.map(|l| l.0))
    .bind(leader.location.map(|l| l.1))
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(leader.id.as_str())
    .execute(tx.conn())
    .await?;
    leader.updated_at = now;
    tx.emit(NewEvent::new(
        tenant_id,
        "leader.updated",
        Some(leader.id.as_str()),
        json!({ "leader_id": leader.id, "status": leader.status.as_str(), "fields": fields }),
    ));
    tx.commit().await?;
    Ok(Json(leader.view()))
}

/// Leaders, newest first; filter by status.
#[utoipa::path(get, path = "/v1/leaders", tag = "neighbourhood",
    params(LeaderListQuery),
    responses((status = 200, body = LeaderPage), (status = 422)), security(("api_key" = [])))]
async fn list_leaders(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<LeaderListQuery>,
) -> ApiResult<Json<LeaderPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let status =
        match query.status.as_deref() {
            None => None,
            Some(text) => Some(LeaderStatus::parse(text).ok_or_else(|| {
                ApiError::validation("status", "must be active, paused or closed")
            })?),
        };
    let cursor = pagination::cursor(query.cursor.as_deref(), LeaderId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let data = page(
        &mut conn,
        &auth.tenant_id,
        status,
        cursor.as_ref(),
        limit + 1,
    )
    .await?;
    let mut data: Vec<Leader> = data.iter().map(StoredLeader::view).collect();
    let next_cursor = pagination::next_cursor(&mut data, limit, |l| l.id.clone());
    Ok(Json(LeaderPage { data, next_cursor }))
}

/// Up to `limit` leaders, newest first, after `cursor`.
pub async fn page(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    status: Option<LeaderStatus>,
    cursor: Option<&LeaderId>,
    limit: i64,
) -> ApiResult<Vec<StoredLeader>> {
    let mut sql = Sql::for_conn(
        conn,
        &format!("SELECT {COLUMNS} FROM leader WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    if let Some(status) = status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    if let Some(cursor) = cursor {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Active pickup points nearest to a place first, with their distance in metres.
#[utoipa::path(get, path = "/v1/leaders/nearby", tag = "neighbourhood",
    params(NearbyQuery),
    responses((status = 200, body = NearbyLeaders), (status = 422)),
    security(("api_key" = [])))]
async fn nearby(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<NearbyQuery>,
) -> ApiResult<Json<NearbyLeaders>> {
    let here = rules::micro_degrees(query.lat, query.lng).ok_or_else(|| {
        ApiError::validation("lat", "lat must be -90 to 90 and lng -180 to 180 (degrees)")
    })?;
    let limit = pagination::count("limit", query.limit, 10, MAX_NEARBY)?;
    if query.within_m.is_some_and(|m| m < 0) {
        return Err(ApiError::validation(
            "within_m",
            "must be 0 or more (metres)",
        ));
    }
    let mut conn = state.db.read().acquire().await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM leader WHERE tenant_id = $1 AND status = 'active' \
         AND lat_micro IS NOT NULL AND lng_micro IS NOT NULL ORDER BY id LIMIT $2"
    ))
    .bind(auth.tenant_id.as_str())
    .bind(MAX_NEARBY_SCAN)
    .fetch_all(&mut *conn)
    .await?;
    let mut ranked: Vec<(i64, StoredLeader)> = rows
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(|l| l.location.map(|at| (rules::distance_m(here, at), l)))
        .filter(|(d, _)| query.within_m.is_none_or(|m| *d <= m))
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    ranked.truncate(usize::try_from(limit).unwrap_or(10));
    Ok(Json(NearbyLeaders {
        data: ranked
            .into_iter()
            .map(|(distance_m, l)| NearbyLeader {
                leader: l.view(),
                distance_m,
            })
            .collect(),
    }))
}

/// The leader a member orders through, when they chose one.
pub async fn leader_of_member(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<Option<(LeaderId, i64)>> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT leader_id, chosen_at FROM member_leader WHERE tenant_id = $1 AND member_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(id, at)| (LeaderId::from_db(id), at)))
}

/// Choose the leader whose pickup point a member's wave orders go to (a closed leader cannot
/// be chosen; a paused one can, but takes orders only once active again).
#[utoipa::path(put, path = "/v1/members/{id}/leader", tag = "neighbourhood",
    params(("id" = String, Path)), request_body = ChooseLeader,
    responses((status = 200, body = MemberLeader), (status = 404),
              (status = 409, description = "leader_not_active (closed), member_erased"),
              (status = 422)),
    security(("api_key" = [])))]
async fn choose_leader(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<ChooseLeader>,
) -> ApiResult<Json<MemberLeader>> {
    let tenant_id = &auth.tenant_id;
    let member_id = members::member_id(&id)?;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), tenant_id, &member_id).await?;
    let leader = require(tx.conn(), tenant_id, &request.leader_id, false).await?;
    if leader.status == LeaderStatus::Closed {
        return Err(ApiError::conflict(
            codes::LEADER_NOT_ACTIVE,
            "this leader is closed and cannot be chosen",
        ));
    }
    let now = to_micros(tx.now());
    sqlx::query(
        "INSERT INTO member_leader (tenant_id, member_id, leader_id, chosen_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, member_id) \
         DO UPDATE SET leader_id = excluded.leader_id, chosen_at = excluded.chosen_at",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .bind(leader.id.as_str())
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "member.leader_chosen",
        Some(member_id.as_str()),
        json!({ "member_id": member_id, "leader_id": leader.id }),
    ));
    tx.commit().await?;
    Ok(Json(MemberLeader {
        member_id: member_id.to_string(),
        leader_id: leader.id.to_string(),
        chosen_at: micros_to_rfc3339(now),
        leader: leader.view(),
    }))
}

/// The leader a member chose (404 when none).
#[utoipa::path(get, path = "/v1/members/{id}/leader", tag = "neighbourhood",
    params(("id" = String, Path)),
    responses((status = 200, body = MemberLeader), (status = 404)),
    security(("api_key" = [])))]
async fn member_leader(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberLeader>> {
    let tenant_id = &auth.tenant_id;
    let member_id = members::member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, tenant_id, &member_id).await?;
    let (leader_id, chosen_at) = leader_of_member(&mut conn, tenant_id, &member_id)
        .await?
        .ok_or_else(|| ApiError::not_found("leader of this member"))?;
    let leader = fetch(&mut conn, tenant_id, &leader_id, false)
        .await?
        .ok_or_else(|| ApiError::not_found("leader"))?;
    Ok(Json(MemberLeader {
        member_id: member_id.to_string(),
        leader_id: leader_id.to_string(),
        chosen_at: micros_to_rfc3339(chosen_at),
        leader: leader.view(),
    }))
}
