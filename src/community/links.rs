//! Join links (群活码): one code that routes each newcomer to the first group, in the link's
//! order, that still has room. When every group is full the join is refused with 409
//! `all_groups_full` and operators get one `group_link.all_full` event per episode (it is not
//! repeated for every refused join; it is re-armed when groups are added to the link or a
//! join through it succeeds again). Groups can be appended to a link at any time.
//!
//! A member already in one of the link's groups gets that group back and nothing changes, so
//! scanning the code twice is harmless. Each group's capacity is kept exactly by
//! [`groups::join_in`](super::groups); the link only decides the order in which groups are tried.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::groups::{self, group_id, JoinOutcome, PageQuery};
use super::{GroupId, GroupLinkId};
use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::TenantId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::sql::Sql;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::AppState;

/// Most groups behind one link.
pub const MAX_LINK_GROUPS: usize = 100;
/// Characters of a link code: lowercase letters and digits, about 82 bits of randomness.
pub const CODE_LEN: usize = 16;
/// Largest page of `GET /v1/group-links`.
pub const MAX_PAGE: i64 = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_link, list_links))
        .routes(routes!(get_link))
        .routes(routes!(add_groups))
        .routes(routes!(join_by_link))
}

fn new_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn valid_code(code: &str) -> bool {
    code.len() == CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    pub name: String,
    /// Groups in the order they fill, 1 to 100.
    pub group_ids: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddGroups {
    /// Groups to append; ones already behind the link are skipped.
    pub group_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkGroup {
    #[schema(value_type = String)]
    pub group_id: GroupId,
    pub name: String,
    pub capacity: i64,
    pub member_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    #[schema(value_type = String)]
    pub id: GroupLinkId,
    /// The code to put in the QR code / URL: `POST /v1/group-links/{code}/join`.
    pub code: String,
    pub name: String,
    /// In fill order.
    pub groups: Vec<LinkGroup>,
    /// True when every group is full.
    pub all_full: bool,
    pub created_at: String,
}

struct StoredLink {
    id: GroupLinkId,
    name: String,
    code: String,
    full_alerted_at: Option<i64>,
    created_at: i64,
}

impl StoredLink {
    fn from_row(row: &AnyRow) -> Result<StoredLink, sqlx::Error> {
        Ok(StoredLink {
            id: GroupLinkId::from_db(row.try_get("id")?),
            name: row.try_get("name")?,
            code: row.try_get("code")?,
            full_alerted_at: row.try_get("full_alerted_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The columns [`StoredLink::from_row`] reads.
const LINK_COLUMNS: &str = "id, name, code, full_alerted_at, created_at";

/// The columns [`LinkGroup::from_row`] reads, of `community_group g`.
const LINK_GROUP_COLUMNS: &str = "g.id, g.name, g.capacity, g.member_count";

impl LinkGroup {
    /// A row of [`LINK_GROUP_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<LinkGroup, sqlx::Error> {
        Ok(LinkGroup {
            group_id: GroupId::from_db(row.try_get("id")?),
            name: row.try_get("name")?,
            capacity: row.try_get("capacity")?,
            member_count: row.try_get("member_count")?,
        })
    }
}

async fn fetch_link(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
) -> ApiResult<StoredLink> {
    if !valid_code(code) {
        return Err(ApiError::not_found("group link"));
    }
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {LINK_COLUMNS} FROM group_link WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str()).push(" AND code = ").bind(code);
    let row = sql
        .query()
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("group link"))?;
    Ok(StoredLink::from_row(&row)?)
}

/// The link's groups in fill order, with their counts.
async fn link_groups(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    link_id: &GroupLinkId,
) -> ApiResult<Vec<LinkGroup>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!(
            "SELECT {LINK_GROUP_COLUMNS} FROM group_link_group l \
             JOIN community_group g ON g.tenant_id = l.tenant_id AND g.id = l.group_id \
             WHERE l.tenant_id = "
        ),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND l.link_id = ")
        .bind(link_id.as_str())
        .push(" ORDER BY l.position");
    let rows = sql.query().fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(LinkGroup::from_row)
        .collect::<Result<_, _>>()?)
}

/// The groups behind each link of a page, in fill order, in one query.
async fn groups_by_link(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    links: &[StoredLink],
) -> ApiResult<HashMap<String, Vec<LinkGroup>>> {
    let mut by_link: HashMap<String, Vec<LinkGroup>> = HashMap::new();
    if links.is_empty() {
        return Ok(by_link);
    }
    let mut sql = Sql::for_conn(
        &*conn,
        &format!(
            "SELECT l.link_id, {LINK_GROUP_COLUMNS} FROM group_link_group l \
             JOIN community_group g ON g.tenant_id = l.tenant_id AND g.id = l.group_id \
             WHERE l.tenant_id = "
        ),
    );
    sql.bind(tenant_id.as_str()).push(" AND l.link_id IN (");
    for (i, link) in links.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(link.id.as_str());
    }
    sql.push(") ORDER BY l.link_id, l.position");
    for row in sql.query().fetch_all(&mut *conn).await? {
        let link: String = row.try_get("link_id")?;
        by_link
            .entry(link)
            .or_default()
            .push(LinkGroup::from_row(&row)?);
    }
    Ok(by_link)
}

/// What the API shows of a link and its groups.
fn view_of(link: StoredLink, groups: Vec<LinkGroup>) -> Link {
    Link {
        all_full: groups.iter().all(|g| g.member_count >= g.capacity),
        id: link.id,
        code: link.code,
        name: link.name,
        groups,
        created_at: micros_to_rfc3339(link.created_at),
    }
}

async fn view(conn: &mut AnyConnection, tenant_id: &TenantId, link: StoredLink) -> ApiResult<Link> {
    let groups = link_groups(conn, tenant_id, &link.id).await?;
    Ok(view_of(link, groups))
}

/// Parse the requested group ids: known in the tenant (404), no repeats (422).
async fn parse_groups(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    ids: &[String],
) -> ApiResult<Vec<GroupId>> {
    if ids.is_empty() || ids.len() > MAX_LINK_GROUPS {
        return Err(ApiError::validation(
            "group_ids",
            format!("must hold 1 to {MAX_LINK_GROUPS} group ids"),
        ));
    }
    let mut out: Vec<GroupId> = Vec::with_capacity(ids.len());
    for text in ids {
        let id = group_id(text)?;
        if out.contains(&id) {
            return Err(ApiError::validation(
                "group_ids",
                format!("{id} is listed twice"),
            ));
        }
        groups::require_group(conn, tenant_id, &id).await?;
        out.push(id);
    }
    Ok(out)
}

/// Append groups after the link's last one, skipping those already there.
async fn append_groups(
    tx: &mut Tx,
    tenant_id: &TenantId,
    link_id: &GroupLinkId,
    ids: &[GroupId],
) -> ApiResult<Vec<GroupId>> {
    let existing = link_groups(tx.conn(), tenant_id, link_id).await?;
    let new: Vec<&GroupId> = ids
        .iter()
        .filter(|id| !existing.iter().any(|g| &g.group_id == *id))
        .collect();
    if existing.len() + new.len() > MAX_LINK_GROUPS {
        return Err(ApiError::validation(
            "group_ids",
            format!("a link holds at most {MAX_LINK_GROUPS} groups"),
        ));
    }
    let mut sql = Sql::for_conn(
        tx.conn(),
        "SELECT COALESCE(MAX(position), -1) AS last FROM group_link_group WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str())
        .push(" AND link_id = ")
        .bind(link_id.as_str());
    let last: i64 = sql.query().fetch_one(tx.conn()).await?.try_get("last")?;
    for (i, id) in new.iter().enumerate() {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO group_link_group (tenant_id, link_id, position, group_id) VALUES (",
        );
        sql.bind(tenant_id.as_str())
            .push(", ")
            .bind(link_id.as_str())
            .push(", ")
            .bind(last + 1 + i64::try_from(i).unwrap_or(0))
            .push(", ")
            .bind(id.as_str())
            .push(")");
        sql.query().execute(tx.conn()).await?;
    }
    Ok(new.into_iter().cloned().collect())
}

async fn set_alerted(
    tx: &mut Tx,
    tenant_id: &TenantId,
    link_id: &GroupLinkId,
    at: Option<i64>,
) -> ApiResult<()> {
    let mut sql = Sql::for_conn(tx.conn(), "UPDATE group_link SET full_alerted_at = ");
    sql.bind(at)
        .push(" WHERE tenant_id = ")
        .bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(link_id.as_str());
    sql.query().execute(tx.conn()).await?;
    Ok(())
}

/// Create a join link over groups in fill order.
#[utoipa::path(post, path = "/v1/group-links", tag = "community", request_body = CreateLink,
    responses((status = 201, body = Link), (status = 404, description = "unknown group"), (status = 422)),
    security(("api_key" = [])))]
async fn create_link(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateLink>,
) -> ApiResult<(StatusCode, Json<Link>)> {
    let name = super::name("name", &request.name)?;
    let mut tx = state.begin().await?;
    let ids = parse_groups(tx.conn(), &auth.tenant_id, &request.group_ids).await?;
    let id = GroupLinkId::generate();
    let code = new_code();
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO group_link (tenant_id, id, code, name, created_at) VALUES (",
    );
    sql.bind(auth.tenant_id.as_str())
        .push(", ")
        .bind(id.as_str())
        .push(", ")
        .bind(code.as_str())
        .push(", ")
        .bind(name.as_str())
        .push(", ")
        .bind(to_micros(tx.now()))
        .push(")");
    sql.query().execute(tx.conn()).await?;
    append_groups(&mut tx, &auth.tenant_id, &id, &ids).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "group_link.created",
        Some(id.as_str()),
        json!({ "link_id": id, "code": code, "group_ids": ids }),
    ));
    let link = fetch_link(tx.conn(), &auth.tenant_id, &code).await?;
    let link = view(tx.conn(), &auth.tenant_id, link).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(link)))
}

/// A join link with its groups and their counts.
#[utoipa::path(get, path = "/v1/group-links/{code}", tag = "community",
    params(("code" = String, Path)), responses((status = 200, body = Link), (status = 404)),
    security(("api_key" = [])))]
async fn get_link(
    State(state): State<AppState>,
    auth: Auth,
    Path(code): Path<String>,
) -> ApiResult<Json<Link>> {
    let mut conn = state.db.read().acquire().await?;
    let link = fetch_link(&mut conn, &auth.tenant_id, &code).await?;
    Ok(Json(view(&mut conn, &auth.tenant_id, link).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkPage {
    pub data: Vec<Link>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's join links, oldest first, each with its groups' fill state.
#[utoipa::path(get, path = "/v1/group-links", tag = "community", params(PageQuery),
    responses((status = 200, body = LinkPage), (status = 422)), security(("api_key" = [])))]
async fn list_links(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<LinkPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), GroupLinkId::parse)?;
    let mut conn = state.db.read().acquire().await?;
    let mut sql = Sql::for_conn(
        &conn,
        &format!("SELECT {LINK_COLUMNS} FROM group_link WHERE tenant_id = "),
    );
    sql.bind(auth.tenant_id.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id > ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut links = rows
        .iter()
        .map(StoredLink::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = pagination::next_cursor(&mut links, limit, |l| l.id.to_string());
    let mut groups = groups_by_link(&mut conn, &auth.tenant_id, &links).await?;
    let data = links
        .into_iter()
        .map(|link| {
            let of_link = groups.remove(link.id.as_str()).unwrap_or_default();
            view_of(link, of_link)
        })
        .collect();
    Ok(Json(LinkPage { data, next_cursor }))
}

/// Append groups to a link (after the existing ones).
#[utoipa::path(post, path = "/v1/group-links/{code}/groups", tag = "community",
    params(("code" = String, Path)), request_body = AddGroups,
    responses((status = 200, body = Link), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn add_groups(
    State(state): State<AppState>,
    auth: Auth,
    Path(code): Path<String>,
    Json(request): Json<AddGroups>,
) -> ApiResult<Json<Link>> {
    let mut tx = state.begin().await?;
    let link = fetch_link(tx.conn(), &auth.tenant_id, &code).await?;
    let ids = parse_groups(tx.conn(), &auth.tenant_id, &request.group_ids).await?;
    let added = append_groups(&mut tx, &auth.tenant_id, &link.id, &ids).await?;
    if !added.is_empty() {
        set_alerted(&mut tx, &auth.tenant_id, &link.id, None).await?;
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "group_link.groups_added",
            Some(link.id.as_str()),
            json!({ "link_id": link.id, "group_ids": added }),
        ));
    }
    let link = view(tx.conn(), &auth.tenant_id, link).await?;
    tx.commit().await?;
    Ok(Json(link))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkJoin {
    pub member_id: String,
    pub inviter_member_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkJoinReply {
    /// The group the member is in now.
    #[schema(value_type = String)]
    pub group_id: GroupId,
    /// True when the member was in that group already (nothing changed).
    pub already_member: bool,
}

/// Join through a link: the member lands in the first group with room (200), or is told
/// 409 `all_groups_full`. Joining again returns the group the member is in.
#[utoipa::path(post, path = "/v1/group-links/{code}/join", tag = "community",
    params(("code" = String, Path)), request_body = LinkJoin,
    responses((status = 200, body = LinkJoinReply), (status = 404),
              (status = 409, description = "all_groups_full"), (status = 422)),
    security(("api_key" = [])))]
async fn join_by_link(
    State(state): State<AppState>,
    auth: Auth,
    Path(code): Path<String>,
    Json(request): Json<LinkJoin>,
) -> ApiResult<Json<LinkJoinReply>> {
    let mut tx = state.begin().await?;
    let link = fetch_link(tx.conn(), &auth.tenant_id, &code).await?;
    let (member, inviter) = groups::check_joiner(
        tx.conn(),
        &auth.tenant_id,
        &request.member_id,
        request.inviter_member_id.as_deref(),
    )
    .await?;
    let candidates = link_groups(tx.conn(), &auth.tenant_id, &link.id).await?;
    // Already in one of the link's groups: hand that group back.
    for group in &candidates {
        if groups::open_stay(tx.conn(), &auth.tenant_id, &group.group_id, &member)
            .await?
            .is_some()
        {
            tx.rollback().await?;
            return Ok(Json(LinkJoinReply {
                group_id: group.group_id.clone(),
                already_member: true,
            }));
        }
    }
    for group in &candidates {
        let outcome = groups::join_in(
            &mut tx,
            &auth.tenant_id,
            &group.group_id,
            &member,
            inviter.as_ref(),
            Some(&link.id),
        )
        .await?;
        let already_member = match outcome {
            JoinOutcome::Full => continue,
            JoinOutcome::Joined(_) => false,
            JoinOutcome::AlreadyMember(_) => true,
        };
        if link.full_alerted_at.is_some() && !already_member {
            set_alerted(&mut tx, &auth.tenant_id, &link.id, None).await?;
        }
        tx.commit().await?;
        return Ok(Json(LinkJoinReply {
            group_id: group.group_id.clone(),
            already_member,
        }));
    }
    if link.full_alerted_at.is_none() {
        let now = to_micros(tx.now());
        set_alerted(&mut tx, &auth.tenant_id, &link.id, Some(now)).await?;
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "group_link.all_full",
            Some(link.id.as_str()),
            json!({ "link_id": link.id, "code": link.code, "groups": candidates.len(),
                    "action": "add a group to this link" }),
        ));
        tx.commit().await?;
    }
    Err(ApiError::conflict(
        codes::ALL_GROUPS_FULL,
        "every group behind this link is full; an operator has to add a group",
    )
    .with_details(json!({ "link_id": link.id, "groups": candidates.len() })))
}
