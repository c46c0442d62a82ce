//! Groups (社群): an owner, a capacity, members who join and leave, and what they bring.
//!
//! # Capacity is exact
//!
//! `community_group.member_count` is the number of open stays, and it only changes by
//! conditional updates: a join runs `UPDATE … SET member_count = member_count + 1 WHERE …
//! AND member_count < capacity` first. On PostgreSQL that statement takes the group's row lock
//! until the transaction ends and re-checks the condition against the committed row after
//! waiting, so concurrent joins can never pass the capacity; SQLite has one writer and
//! serializes the same way. With the row locked, the join then looks for the member's open
//! stay in the group (a fresh snapshot under READ COMMITTED): if there is one, the unit taken
//! is given back and the join is a no-op. A partial unique index on open stays backs this up.
//!
//! # History
//!
//! Every stay is a row of `group_membership` with `joined_at` and `left_at` (NULL while in the
//! group), so leaving and rejoining keeps the past. Statistics read these intervals: joins and
//! leaves per tenant-local day, joins per inviter, and GMV — paid orders (`customer_order`,
//! status paid/fulfilled/completed) whose `paid_at` falls inside one of the member's stays
//! `[joined_at, left_at)`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::ToSpan as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{body_member_id, GroupId, GroupLinkId, GroupMembershipId};
use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::sql::Sql;
use crate::common::time::{from_micros, micros_to_rfc3339, to_micros};
use crate::members;
use crate::tenants::time_zone as tenant_zone;
use crate::AppState;

/// WeChat caps a group at 500 people; the default and the largest capacity.
pub const MAX_CAPACITY: i64 = 500;
/// Largest page of `GET /v1/groups`.
pub const MAX_PAGE: i64 = 200;
/// Longest window of `GET /v1/groups/{id}/stats`, in days.
pub const MAX_STATS_DAYS: i64 = 366;
/// Default window of the statistics, in days ending today.
pub const DEFAULT_STATS_DAYS: i64 = 30;
/// Order statuses that count as paid for GMV.
pub const PAID_STATUSES: &str = "('paid', 'fulfilled', 'completed')";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_group, list_groups))
        .routes(routes!(get_group))
        .routes(routes!(join, list_members))
        .routes(routes!(leave))
        .routes(routes!(stats))
}

pub(crate) fn group_id(text: &str) -> ApiResult<GroupId> {
    GroupId::parse(text).ok_or_else(|| ApiError::not_found("group"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    /// The owner is the group's first member and counts toward the capacity.
    pub owner_member_id: String,
    /// 1 to 500, default 500.
    pub capacity: Option<i64>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Group {
    #[schema(value_type = String)]
    pub id: GroupId,
    pub name: String,
    #[schema(value_type = String)]
    pub owner_member_id: MemberId,
    pub capacity: i64,
    /// Members in the group now.
    pub member_count: i64,
    pub tags: Vec<String>,
    pub created_at: String,
}

const GROUP_COLUMNS: &str = "id, name, owner_member_id, capacity, member_count, tags, created_at";

impl Group {
    /// A row of [`GROUP_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Group, sqlx::Error> {
        let tags: String = row.try_get("tags")?;
        Ok(Group {
            id: GroupId::from_db(row.try_get("id")?),
            name: row.try_get("name")?,
            owner_member_id: MemberId::from_db(row.try_get("owner_member_id")?),
            capacity: row.try_get("capacity")?,
            member_count: row.try_get("member_count")?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            created_at: micros_to_rfc3339(row.try_get("created_at")?),
        })
    }
}

/// One group of the tenant.
pub(crate) async fn fetch_group(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> ApiResult<Option<Group>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {GROUP_COLUMNS} FROM community_group WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    let row = sql.query().fetch_optional(&mut *conn).await?;
    Ok(row.as_ref().map(Group::from_row).transpose()?)
}

pub(crate) async fn require_group(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> ApiResult<Group> {
    fetch_group(conn, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))
}

/// Create a group; its owner becomes its first member.
#[utoipa::path(post, path = "/v1/groups", tag = "community", request_body = CreateGroup,
    responses((status = 201, body = Group), (status = 404, description = "owner not found"),
              (status = 422)), security(("api_key" = [])))]
async fn create_group(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let name = super::name("name", &request.name)?;
    let capacity = request.capacity.unwrap_or(MAX_CAPACITY);
    if !(1..=MAX_CAPACITY).contains(&capacity) {
        return Err(ApiError::validation(
            "capacity",
            format!("must be 1 to {MAX_CAPACITY} (WeChat's group limit)"),
        ));
    }
    let tags = members::model::tags("tags", &request.tags)?;
    let owner = body_member_id(&request.owner_member_id, "owner member")?;
    let mut tx = state.begin().await?;
    members::store::require_active(tx.conn(), &auth.tenant_id, &owner).await?;
    let id = GroupId::generate();
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO community_group (tenant_id, id, name, owner_member_id, capacity, member_count, tags, created_at) VALUES (",
    );
    sql.bind(auth.tenant_id.as_str())
        .push(", ")
        .bind(id.as_str())
        .push(", ")
        .bind(name.as_str())
        .push(", ")
        .bind(owner.as_str())
        .push(", ")
        .bind(capacity)
        .push(", 1, ")
        .bind(serde_json::to_string(&tags).map_err(ApiError::internal)?)
        .push(", ")
        .bind(now)
        .push(")");
    sql.query().execute(tx.conn()).await?;
    insert_stay(&mut tx, &auth.tenant_id, &id, &owner, None, None).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "group.created",
        Some(id.as_str()),
        json!({ "group_id": id, "owner_member_id": owner, "capacity": capacity }),
    ));
    let group = require_group(tx.conn(), &auth.tenant_id, &id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// One group.
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "community",
    params(("id" = String, Path, description = "group id")),
    responses((status = 200, body = Group), (status = 404)), security(("api_key" = [])))]
async fn get_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Group>> {
    let id = group_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(require_group(&mut conn, &auth.tenant_id, &id).await?))
}

pub use crate::common::pagination::PageQuery;

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPage {
    pub data: Vec<Group>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's groups, oldest first.
#[utoipa::path(get, path = "/v1/groups", tag = "community", params(PageQuery),
    responses((status = 200, body = GroupPage), (status = 422)), security(("api_key" = [])))]
async fn list_groups(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<GroupPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), GroupId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT {GROUP_COLUMNS} FROM community_group WHERE tenant_id = "),
    );
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id > ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut data = rows
        .iter()
        .map(Group::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |g| g.id.to_string());
    Ok(Json(GroupPage { data, next_cursor }))
}

/// A member's stay in a group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stay {
    #[schema(value_type = String)]
    pub group_id: GroupId,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    #[schema(value_type = Option<String>)]
    pub inviter_member_id: Option<MemberId>,
    pub joined_at: String,
    pub left_at: Option<String>,
}

/// The columns [`Stay::from_row`] reads.
const STAY_COLUMNS: &str = "group_id, member_id, inviter_member_id, joined_at, left_at";

impl Stay {
    /// A row of [`STAY_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Stay, sqlx::Error> {
        let left_at: Option<i64> = row.try_get("left_at")?;
        let inviter: Option<String> = row.try_get("inviter_member_id")?;
        Ok(Stay {
            group_id: GroupId::from_db(row.try_get("group_id")?),
            member_id: MemberId::from_db(row.try_get("member_id")?),
            inviter_member_id: inviter.map(MemberId::from_db),
            joined_at: micros_to_rfc3339(row.try_get("joined_at")?),
            left_at: left_at.map(micros_to_rfc3339),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StayPage {
    /// Members in the group now, in the order they joined.
    pub data: Vec<Stay>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The members in a group now (their open stays), in the order they joined.
#[utoipa::path(get, path = "/v1/groups/{id}/members", tag = "community",
    params(("id" = String, Path, description = "group id"), PageQuery),
    responses((status = 200, body = StayPage), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<StayPage>> {
    let id = group_id(&id)?;
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), GroupMembershipId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    require_group(&mut conn, &auth.tenant_id, &id).await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT id, {STAY_COLUMNS} FROM group_membership WHERE tenant_id = "),
    );
    sql.bind(auth.tenant_id.as_str())
        .push(" AND group_id = ")
        .bind(id.as_str())
        .push(" AND left_at IS NULL");
    if let Some(cursor) = &cursor {
        sql.push(" AND id > ").bind(cursor.as_str());
    }
    // Stay ids are time-ordered, so id order is join order.
    sql.push(" ORDER BY id LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut stays = rows
        .iter()
        .map(|row| Ok((row.try_get::<String, _>("id")?, Stay::from_row(row)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next_cursor = pagination::next_cursor(&mut stays, limit, |(id, _)| id.clone());
    Ok(Json(StayPage {
        data: stays.into_iter().map(|(_, stay)| stay).collect(),
        next_cursor,
    }))
}

/// The member's open stay in the group, if any.
pub(crate) async fn open_stay(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    group_id: &GroupId,
    member_id: &MemberId,
) -> ApiResult<Option<Stay>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {STAY_COLUMNS} FROM group_membership WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND group_id = ")
        .bind(group_id.as_str())
        .push(" AND member_id = ")
        .bind(member_id.as_str())
        .push(" AND left_at IS NULL");
    let row = sql.query().fetch_optional(&mut *conn).await?;
    Ok(row.as_ref().map(Stay::from_row).transpose()?)
}

async fn insert_stay(
    tx: &mut Tx,
    tenant_id: &TenantId,
    group_id: &GroupId,
    member_id: &MemberId,
    inviter: Option<&MemberId>,
    link_id: Option<&GroupLinkId>,
) -> ApiResult<Stay> {
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO group_membership (tenant_id, id, group_id, member_id, inviter_member_id, link_id, joined_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(GroupMembershipId::generate().as_str())
        .push(", ")
        .bind(group_id.as_str())
        .push(", ")
        .bind(member_id.as_str())
        .push(", ")
        .bind(inviter.map(|m| m.to_string()))
        .push(", ")
        .bind(link_id.map(|l| l.to_string()))
        .push(", ")
        .bind(now)
        .push(")");
    sql.query().execute(tx.conn()).await.map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(codes::ALREADY_MEMBER, "the member is already in this group")
        } else {
            e.into()
        }
    })?;
    Ok(Stay {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        inviter_member_id: inviter.cloned(),
        joined_at: micros_to_rfc3339(now),
        left_at: None,
    })
}

/// What a join did.
pub(crate) enum JoinOutcome {
    Joined(Stay),
    AlreadyMember(Stay),
    Full,
}

/// Add `member_id` to the group inside `tx`, exactly under its capacity (see the module doc).
/// The caller has checked that the group, the member and the inviter exist.
pub(crate) async fn join_in(
    tx: &mut Tx,
    tenant_id: &TenantId,
    group_id: &GroupId,
    member_id: &MemberId,
    inviter: Option<&MemberId>,
    link_id: Option<&GroupLinkId>,
) -> ApiResult<JoinOutcome> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        "UPDATE community_group SET member_count = member_count + 1 WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(group_id.as_str())
        .push(" AND member_count < capacity");
    let took_seat = sql.query().execute(tx.conn()).await?.rows_affected() == 1;
    if let Some(stay) = open_stay(tx.conn(), tenant_id, group_id, member_id).await? {
        if took_seat {
            change_count(tx, tenant_id, group_id, -1).await?;
        }
        return Ok(JoinOutcome::AlreadyMember(stay));
    }
    if !took_seat {
        return Ok(JoinOutcome::Full);
    }
    let stay = insert_stay(tx, tenant_id, group_id, member_id, inviter, link_id).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "group.joined",
        Some(group_id.as_str()),
        json!({ "group_id": group_id, "member_id": member_id,
                "inviter_member_id": inviter, "link_id": link_id }),
    ));
    Ok(JoinOutcome::Joined(stay))
}

async fn change_count(
    tx: &mut Tx,
    tenant_id: &TenantId,
    group_id: &GroupId,
    delta: i64,
) -> ApiResult<()> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        "UPDATE community_group SET member_count = member_count + ",
    );
    sql.bind(delta)
        .push(" WHERE tenant_id = ")
        .bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(group_id.as_str());
    sql.query().execute(tx.conn()).await?;
    Ok(())
}

/// Check the joining member and the optional inviter: both must exist in the tenant (404),
/// the joiner must not be erased (409), and nobody invites themselves (422).
pub(crate) async fn check_joiner(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &str,
    inviter: Option<&str>,
) -> ApiResult<(MemberId, Option<MemberId>)> {
    let member = body_member_id(member_id, "member")?;
    members::store::require_active(conn, tenant_id, &member).await?;
    let inviter = match inviter {
        None => None,
        Some(text) => {
            let inviter = body_member_id(text, "inviter member")?;
            if inviter == member {
                return Err(ApiError::validation(
                    "inviter_member_id",
                    "a member cannot invite themselves",
                ));
            }
            if members::store::fetch(conn, tenant_id, &inviter)
                .await?
                .is_none()
            {
                return Err(ApiError::not_found("inviter member"));
            }
            Some(inviter)
        }
    };
    Ok((member, inviter))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub member_id: String,
    /// Who brought the member, for "who brought how many".
    pub inviter_member_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinReply {
    #[serde(flatten)]
    pub stay: Stay,
    /// True when the member was in the group already (nothing changed).
    pub already_member: bool,
}

/// Add a member to a group: 201 when they joined, 200 when they were in it already, 409
/// `group_full` when it has no room.
#[utoipa::path(post, path = "/v1/groups/{id}/members", tag = "community",
    params(("id" = String, Path, description = "group id")), request_body = JoinRequest,
    responses((status = 201, body = JoinReply), (status = 200, body = JoinReply, description = "already a member"),
              (status = 404), (status = 409, description = "group_full"), (status = 422)),
    security(("api_key" = [])))]
async fn join(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<JoinRequest>,
) -> ApiResult<(StatusCode, Json<JoinReply>)> {
    let id = group_id(&id)?;
    let mut tx = state.begin().await?;
    let group = require_group(tx.conn(), &auth.tenant_id, &id).await?;
    let (member, inviter) = check_joiner(
        tx.conn(),
        &auth.tenant_id,
        &request.member_id,
        request.inviter_member_id.as_deref(),
    )
    .await?;
    match join_in(
        &mut tx,
        &auth.tenant_id,
        &id,
        &member,
        inviter.as_ref(),
        None,
    )
    .await?
    {
        JoinOutcome::Joined(stay) => {
            tx.commit().await?;
            Ok((
                StatusCode::CREATED,
                Json(JoinReply {
                    stay,
                    already_member: false,
                }),
            ))
        }
        JoinOutcome::AlreadyMember(stay) => {
            tx.commit().await?;
            Ok((
                StatusCode::OK,
                Json(JoinReply {
                    stay,
                    already_member: true,
                }),
            ))
        }
        JoinOutcome::Full => Err(ApiError::conflict(
            codes::GROUP_FULL,
            format!("the group holds its capacity of {}", group.capacity),
        )
        .with_details(json!({ "capacity": group.capacity }))),
    }
}

/// A member leaves a group; the stay is closed, not deleted. The owner cannot leave.
#[utoipa::path(delete, path = "/v1/groups/{id}/members/{member_id}", tag = "community",
    params(("id" = String, Path, description = "group id"), ("member_id" = String, Path)),
    responses((status = 200, body = Stay), (status = 404, description = "not in the group"),
              (status = 409, description = "owner_cannot_leave")),
    security(("api_key" = [])))]
async fn leave(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, member_id)): Path<(String, String)>,
) -> ApiResult<Json<Stay>> {
    let id = group_id(&id)?;
    let member = members::member_id(&member_id)?;
    let mut tx = state.begin().await?;
    let group = require_group(tx.conn(), &auth.tenant_id, &id).await?;
    if group.owner_member_id == member {
        return Err(ApiError::conflict(
            codes::OWNER_CANNOT_LEAVE,
            "the owner cannot leave the group",
        ));
    }
    let now = to_micros(tx.now());
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE group_membership SET left_at = ");
    sql.bind(now)
        .push(" WHERE tenant_id = ")
        .bind(auth.tenant_id.as_str())
        .push(" AND group_id = ")
        .bind(id.as_str())
        .push(" AND member_id = ")
        .bind(member.as_str())
        .push(" AND left_at IS NULL RETURNING ")
        .push(STAY_COLUMNS);
    let row = sql
        .query()
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| ApiError::not_found("group member"))?;
    let stay = Stay::from_row(&row)?;
    change_count(&mut tx, &auth.tenant_id, &id, -1).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "group.left",
        Some(id.as_str()),
        json!({ "group_id": id, "member_id": member }),
    ));
    tx.commit().await?;
    Ok(Json(stay))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// First tenant-local day of the window, `YYYY-MM-DD` (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last tenant-local day of the window (default: today); at most 366 days in all.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayCount {
    pub date: String,
    pub joins: i64,
    pub leaves: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InviterCount {
    #[schema(value_type = String)]
    pub inviter_member_id: MemberId,
    pub joins: i64,
}

impl InviterCount {
    fn from_row(row: &AnyRow) -> Result<InviterCount, sqlx::Error> {
        Ok(InviterCount {
            inviter_member_id: MemberId::from_db(row.try_get("inviter_member_id")?),
            joins: row.try_get("joins")?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupStats {
    #[schema(value_type = String)]
    pub group_id: GroupId,
    /// Members in the group now.
    pub members: i64,
    pub capacity: i64,
    pub from: String,
    pub to: String,
    /// Every day of the window (tenant-local), with its joins and leaves.
    pub by_day: Vec<DayCount>,
    /// Joins in the window.
    pub joins: i64,
    /// Leaves in the window.
    pub leaves: i64,
    /// Joins ever attributed to each inviter, most first ("who brought how many").
    pub joins_by_inviter: Vec<InviterCount>,
    /// Sum of what members paid (order `total` less refunds, fen) for orders paid while they
    /// were in the group, over the group's whole life.
    pub gmv: i64,
    pub paid_orders: i64,
}

fn local_date(field: &str, text: &str) -> ApiResult<Date> {
    text.parse()
        .map_err(|_| ApiError::validation(field, "must be a date YYYY-MM-DD"))
}

/// The instant a tenant-local day starts.
pub(crate) fn day_start(date: Date, zone: &TimeZone) -> ApiResult<i64> {
    date.to_zoned(zone.clone())
        .map(|z| to_micros(z.timestamp()))
        .map_err(|e| ApiError::internal(anyhow::anyhow!("start of {date}: {e}")))
}

/// The window's first and last tenant-local days: `to` defaults to `today`, `from` to
/// [`DEFAULT_STATS_DAYS`] days ending on `to`. 422 unless `from <= to` and the window is
/// shorter than [`MAX_STATS_DAYS`].
fn stats_window(query: &StatsQuery, today: Date) -> ApiResult<(Date, Date)> {
    let to = match &query.to {
        Some(text) => local_date("to", text)?,
        None => today,
    };
    let from = match &query.from {
        Some(text) => local_date("from", text)?,
        None => to.saturating_sub((DEFAULT_STATS_DAYS - 1).days()),
    };
    let days = to
        .since(from)
        .map(|span| i64::from(span.get_days()))
        .unwrap_or(-1);
    if !(0..MAX_STATS_DAYS).contains(&days) {
        return Err(ApiError::validation(
            "from",
            format!("must be on or before `to`, at most {MAX_STATS_DAYS} days in all"),
        ));
    }
    Ok((from, to))
}

/// Joins and leaves of a group in a window.
struct Movements {
    /// Every day of the window, with its joins and leaves.
    by_day: Vec<DayCount>,
    joins: i64,
    leaves: i64,
}

/// Count the group's joins and leaves on each tenant-local day from `from` to `to`.
async fn joins_and_leaves(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &GroupId,
    (from, to): (Date, Date),
    zone: &TimeZone,
) -> ApiResult<Movements> {
    let start = day_start(from, zone)?;
    let end = day_start(to.saturating_add(1.day()), zone)?;

    let mut by_day: BTreeMap<Date, (i64, i64)> = BTreeMap::new();
    let mut day = from;
    while day <= to {
        by_day.insert(day, (0, 0));
        day = day.saturating_add(1.day());
    }
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT joined_at, left_at FROM group_membership WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND group_id = ")
        .bind(id.as_str())
        .push(" AND ((joined_at >= ")
        .bind(start)
        .push(" AND joined_at < ")
        .bind(end)
        .push(") OR (left_at >= ")
        .bind(start)
        .push(" AND left_at < ")
        .bind(end)
        .push("))");
    let (mut joins, mut leaves) = (0, 0);
    for row in sql.query().fetch_all(&mut *conn).await? {
        let joined_at: i64 = row.try_get("joined_at")?;
        let left_at: Option<i64> = row.try_get("left_at")?;
        if (start..end).contains(&joined_at) {
            let date = from_micros(joined_at).to_zoned(zone.clone()).date();
            if let Some(counts) = by_day.get_mut(&date) {
                counts.0 += 1;
                joins += 1;
            }
        }
        if let Some(left_at) = left_at.filter(|at| (start..end).contains(at)) {
            let date = from_micros(left_at).to_zoned(zone.clone()).date();
            if let Some(counts) = by_day.get_mut(&date) {
                counts.1 += 1;
                leaves += 1;
            }
        }
    }
    Ok(Movements {
        by_day: by_day
            .into_iter()
            .map(|(date, (joins, leaves))| DayCount {
                date: date.to_string(),
                joins,
                leaves,
            })
            .collect(),
        joins,
        leaves,
    })
}

/// Joins ever attributed to each inviter of the group, most first.
async fn joins_by_inviter(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> ApiResult<Vec<InviterCount>> {
    let mut sql = Sql::for_conn(
        &*conn,
        "SELECT inviter_member_id, COUNT(*) AS joins FROM group_membership WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND group_id = ")
        .bind(id.as_str())
        .push(" AND inviter_member_id IS NOT NULL GROUP BY inviter_member_id ORDER BY joins DESC, inviter_member_id");
    Ok(sql
        .query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(InviterCount::from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// GMV and paid orders of the group over its whole life: paid orders placed by members
/// while they were in it (see the module doc).
async fn gmv(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> ApiResult<(i64, i64)> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!(
            "SELECT CAST(COALESCE(SUM(o.total - o.refunded_amount), 0) AS BIGINT) AS gmv, COUNT(o.id) AS paid_orders \
             FROM group_membership m JOIN customer_order o \
             ON o.tenant_id = m.tenant_id AND o.member_id = m.member_id \
             WHERE o.paid_at IS NOT NULL AND o.status IN {PAID_STATUSES} \
             AND o.paid_at >= m.joined_at AND (m.left_at IS NULL OR o.paid_at < m.left_at) \
             AND m.tenant_id = "
        ),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND m.group_id = ")
        .bind(id.as_str());
    let row = sql.query().fetch_one(&mut *conn).await?;
    Ok((row.try_get("gmv")?, row.try_get("paid_orders")?))
}

/// Members, joins and leaves per local day, joins per inviter and GMV of a group.
#[utoipa::path(get, path = "/v1/groups/{id}/stats", tag = "community",
    params(("id" = String, Path, description = "group id"), StatsQuery),
    responses((status = 200, body = GroupStats), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<Json<GroupStats>> {
    let id = group_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    let group = require_group(&mut conn, &auth.tenant_id, &id).await?;
    let zone = tenant_zone(&mut conn, &auth.tenant_id).await?;
    let today = state.clock.now().to_zoned(zone.clone()).date();
    let (from, to) = stats_window(&query, today)?;
    let movements = joins_and_leaves(&mut conn, &auth.tenant_id, &id, (from, to), &zone).await?;
    let joins_by_inviter = joins_by_inviter(&mut conn, &auth.tenant_id, &id).await?;
    let (gmv, paid_orders) = gmv(&mut conn, &auth.tenant_id, &id).await?;
    Ok(Json(GroupStats {
        group_id: id,
        members: group.member_count,
        capacity: group.capacity,
        from: from.to_string(),
        to: to.to_string(),
        by_day: movements.by_day,
        joins: movements.joins,
        leaves: movements.leaves,
        joins_by_inviter,
        gmv,
        paid_orders,
    }))
}
