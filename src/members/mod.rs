//! Members (会员): profiles with an external id, phone, birthday, source channel, tags,
//! attributes and marketing consent; import and export as CSV; erasure and personal-data
//! export.
//!
//! - [`model`]: request and response types, validation at the edge.
//! - [`store`]: the SQL.
//! - [`import`]: streamed CSV import and export.
//! - [`export`]: the personal-data export of one member, every domain's rows about it.

pub mod export;
pub mod import;
pub mod model;
pub mod store;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Backend;
use crate::common::error::{ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks;
use crate::common::idempotency;
use crate::common::ids::MemberId;
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::time::{instant_field, to_micros};
use crate::tenants;
use crate::AppState;
use jiff::tz::TimeZone;
use model::{Changes, CreateMember, CreatedMember, Member, Profile, TagChange, UpdateMember};

/// Largest page of `GET /v1/members`.
pub const MAX_PAGE: i64 = 200;
/// Longest search text `q` of `GET /v1/members`, in characters (longer than any name, phone or
/// external id it could match; SQLite refuses LIKE patterns past 50,000 bytes).
pub const MAX_QUERY_CHARS: usize = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_member, list_members))
        .routes(routes!(get_member, update_member, erase_member))
        .routes(routes!(change_tags))
        .routes(routes!(export_member))
        .routes(routes!(import_members))
        .routes(routes!(export_members))
        .routes(routes!(known_sources))
}

/// Parse a member id from the path; a malformed id is simply not found.
pub fn member_id(text: &str) -> ApiResult<MemberId> {
    MemberId::parse(text).ok_or_else(|| ApiError::not_found("member"))
}

/// Create a member.
#[utoipa::path(post, path = "/v1/members", tag = "members", request_body = CreateMember,
    responses((status = 201, body = CreatedMember, description = "the member, and in `referral` \
              what its invite code did (null without one)"),
              (status = 409, description = "external_id taken"),
              (status = 422, description = "invalid field")),
    security(("api_key" = [])))]
async fn create_member(
    State(state): State<AppState>,
    auth: Auth,
    Json(mut request): Json<CreateMember>,
) -> ApiResult<(StatusCode, Json<CreatedMember>)> {
    let signup = hooks::Signup {
        invite_code: request.invite_code.take(),
        device_id: request.device_id.take(),
        ip: request.ip.take(),
    };
    let hooks = hooks::registered()?;
    hooks.check_signup(&signup)?;
    let profile = Profile::try_from(request)?;
    let id = MemberId::generate();
    let mut tx = state.begin().await?;
    let at = to_micros(tx.now());
    store::insert(tx.conn(), &auth.tenant_id, &id, &profile, at).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "member.created",
        Some(id.as_str()),
        json!({ "member_id": id, "source": profile.source, "via": "api" }),
    ));
    let created = hooks::MemberCreated {
        tenant_id: &auth.tenant_id,
        member_id: &id,
        signup: &signup,
    };
    let outcome = hooks.member_created(&mut tx, &created).await?;
    let member = store::require(tx.conn(), &auth.tenant_id, &id).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedMember {
            member,
            referral: outcome.referral,
        }),
    ))
}

/// Create a member inside the caller's transaction, as `POST /v1/members` does (the event,
/// with `via`, and every member hook), for domains that create members on their own path
/// (a code scan: `via` `scan`). The signup was checked by the caller (`check_signup`).
pub async fn create_in(
    tx: &mut crate::common::db::Tx,
    tenant_id: &crate::common::ids::TenantId,
    profile: &Profile,
    signup: &hooks::Signup,
    via: &str,
) -> ApiResult<MemberId> {
    let id = MemberId::generate();
    let at = to_micros(tx.now());
    store::insert(tx.conn(), tenant_id, &id, profile, at).await?;
    tx.emit(NewEvent::new(
        tenant_id,
        "member.created",
        Some(id.as_str()),
        json!({ "member_id": id, "source": profile.source, "via": via }),
    ));
    let created = hooks::MemberCreated {
        tenant_id,
        member_id: &id,
        signup,
    };
    hooks::registered()?.member_created(tx, &created).await?;
    Ok(id)
}

/// One member.
#[utoipa::path(get, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = Member), (status = 404)), security(("api_key" = [])))]
async fn get_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Member>> {
    let id = member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(store::require(&mut conn, &auth.tenant_id, &id).await?))
}

/// Change a member's profile: absent fields stay as they are, `null` clears a field.
#[utoipa::path(patch, path = "/v1/members/{id}", tag = "members", request_body = UpdateMember,
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = Member), (status = 404), (status = 409)),
    security(("api_key" = [])))]
async fn update_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateMember>,
) -> ApiResult<Json<Member>> {
    let id = member_id(&id)?;
    let changes = Changes::try_from(request)?;
    let mut tx = state.begin().await?;
    store::require_active(tx.conn(), &auth.tenant_id, &id).await?;
    let at = to_micros(tx.now());
    store::update(tx.conn(), &auth.tenant_id, &id, &changes, at).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "member.updated",
        Some(id.as_str()),
        json!({ "member_id": id, "fields": changes.fields() }),
    ));
    let member = store::require(tx.conn(), &auth.tenant_id, &id).await?;
    tx.commit().await?;
    Ok(Json(member))
}

/// Add and remove tags.
#[utoipa::path(post, path = "/v1/members/{id}/tags", tag = "members", request_body = TagChange,
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = Member), (status = 404)), security(("api_key" = [])))]
async fn change_tags(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<TagChange>,
) -> ApiResult<Json<Member>> {
    let id = member_id(&id)?;
    let add = model::tags("add", &request.add)?;
    let remove = model::tags("remove", &request.remove)?;
    let mut tx = state.begin().await?;
    store::require_active(tx.conn(), &auth.tenant_id, &id).await?;
    store::remove_tags(tx.conn(), &auth.tenant_id, &id, &remove).await?;
    store::add_tags(tx.conn(), &auth.tenant_id, &id, &add).await?;
    let member = store::require(tx.conn(), &auth.tenant_id, &id).await?;
    if member.tags.len() > model::MAX_TAGS {
        tx.rollback().await?;
        return Err(ApiError::validation(
            "add",
            format!("a member carries at most {} tags", model::MAX_TAGS),
        ));
    }
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "member.tagged",
        Some(id.as_str()),
        json!({ "member_id": id, "added": add, "removed": remove }),
    ));
    tx.commit().await?;
    Ok(Json(member))
}

/// Erase a member's personal data, keeping the id so that ledgers and orders still add up.
#[utoipa::path(delete, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = Member, description = "the erased member"), (status = 404)),
    security(("api_key" = [])))]
async fn erase_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Member>> {
    let id = member_id(&id)?;
    let mut tx = state.begin().await?;
    let member = store::require(tx.conn(), &auth.tenant_id, &id).await?;
    if member.status == model::STATUS_ERASED {
        tx.rollback().await?;
        return Ok(Json(member));
    }
    let at = to_micros(tx.now());
    let personal = store::personal_values(&member);
    store::erase(tx.conn(), &auth.tenant_id, &id, &personal, at).await?;
    let erased = hooks::MemberErased {
        tenant_id: &auth.tenant_id,
        member_id: &id,
    };
    hooks::registered()?.member_erased(&mut tx, &erased).await?;
    // Responses stored for Idempotency-Key replays: those naming the member (its id, or one of
    // its values) are replaced by a `member_erased` error.
    let mut needles: Vec<&str> = vec![id.as_str()];
    needles.extend(personal.iter().map(String::as_str));
    idempotency::redact_member(tx.conn(), &auth.tenant_id, id.as_str(), &needles).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "member.erased",
        Some(id.as_str()),
        json!({ "member_id": id }),
    ));
    let member = store::require(tx.conn(), &auth.tenant_id, &id).await?;
    tx.commit().await?;
    checkpoint_after_erasure(&state).await;
    Ok(Json(member))
}

/// SQLite: copy the erasure into the database file and empty the WAL (`TRUNCATE`), so that the
/// WAL's older copies of the member's pages go too. The file itself runs with `secure_delete`,
/// which zeroes what a delete or an update frees. The background checkpointer or a reader may
/// keep a checkpoint from finishing for a moment, so it is tried up to
/// [`ERASURE_CHECKPOINT_TRIES`] times; one that still cannot finish is logged, and the
/// background checkpointer copies the pages later.
async fn checkpoint_after_erasure(state: &AppState) {
    if state.db.backend() != Backend::Sqlite {
        return;
    }
    for _ in 0..ERASURE_CHECKPOINT_TRIES {
        let checkpoint: Result<i64, sqlx::Error> = async {
            let mut conn = state.db.write_conn().await?;
            // One row: busy (1 when the checkpoint could not finish), WAL frames, frames copied.
            sqlx::query_scalar("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *conn)
                .await
        }
        .await;
        match checkpoint {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "checkpoint after erasure failed; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::warn!("checkpoint after erasure could not finish; the background checkpointer will");
}

/// How often erasure tries its checkpoint (20 ms apart).
const ERASURE_CHECKPOINT_TRIES: u32 = 50;

/// Personal-data export (PIPL Art. 45): everything held about one member, the profile and its
/// events plus a section per domain (see [`export`]).
#[utoipa::path(get, path = "/v1/members/{id}/export", tag = "members",
    params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = export::MemberExport), (status = 404)),
    security(("api_key" = [])))]
async fn export_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<export::MemberExport>> {
    let id = member_id(&id)?;
    let now = state.clock.now();
    Ok(Json(
        export::export(&state.db, &auth.tenant_id, &id, now).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Members carrying this tag.
    pub tag: Option<String>,
    /// Members from this source channel.
    pub source: Option<String>,
    /// Search in name, phone and external id (case-insensitive substring); at most 200
    /// characters.
    pub q: Option<String>,
    /// `active` or `erased`.
    pub status: Option<String>,
    /// Members in this RFM segment (`champions`, `loyal`, `potential`, `new`, `at_risk`,
    /// `cant_lose`, `hibernating`, `lost`), from the last analytics run.
    pub rfm_segment: Option<String>,
    /// RFC 3339 instant or date; inclusive.
    pub created_after: Option<String>,
    /// RFC 3339 instant or date; exclusive.
    pub created_before: Option<String>,
    /// Members of this saved segment (`seg_…`) now, active only; not combined with the other
    /// filters.
    pub segment: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberPage {
    pub data: Vec<Member>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn instant_param(name: &str, value: Option<&str>, zone: &TimeZone) -> ApiResult<Option<i64>> {
    value
        .map(|v| instant_field(name, v, zone).map(to_micros))
        .transpose()
}

/// List members, filtered, in a stable order with cursor pagination.
#[utoipa::path(get, path = "/v1/members", tag = "members", params(ListQuery),
    responses((status = 200, body = MemberPage), (status = 404, description = "no such segment"),
              (status = 422)), security(("api_key" = [])))]
async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<MemberPage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), MemberId::parse)?;
    if let Some(status) = &query.status {
        if status != model::STATUS_ACTIVE && status != model::STATUS_ERASED {
            return Err(ApiError::validation("status", "must be active or erased"));
        }
    }
    if let Some(segment) = &query.rfm_segment {
        if !model::RFM_SEGMENTS.contains(&segment.as_str()) {
            return Err(ApiError::validation(
                "rfm_segment",
                format!("must be one of {}", model::RFM_SEGMENTS.join(", ")),
            ));
        }
    }
    if query
        .q
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS)
    {
        return Err(ApiError::validation(
            "q",
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    if let Some(segment) = &query.segment {
        let others = [
            &query.tag,
            &query.source,
            &query.q,
            &query.status,
            &query.rfm_segment,
            &query.created_after,
            &query.created_before,
        ];
        if others.iter().any(|f| f.is_some()) {
            return Err(ApiError::validation(
                "segment",
                "cannot be combined with other filters: put them in the segment's rule",
            ));
        }
        let after = cursor.as_ref().map(|c| c.as_str());
        let limit_ids = usize::try_from(limit + 1).unwrap_or(usize::MAX);
        let ids = state
            .audiences
            .page(&auth.tenant_id, segment, after, limit_ids)
            .await?
            .ok_or_else(|| ApiError::not_found("segment"))?;
        let mut data = if ids.is_empty() {
            Vec::new()
        } else {
            let filter = store::Filter {
                ids: Some(ids),
                ..Default::default()
            };
            let mut reader = state.db.reader().await?;
            store::list(&mut reader, &auth.tenant_id, &filter, limit + 1).await?
        };
        let next_cursor = pagination::next_cursor(&mut data, limit, |m| m.id.to_string());
        return Ok(Json(MemberPage { data, next_cursor }));
    }
    // The tenant's zone only matters to a date given without one.
    let zone = if query.created_after.is_some() || query.created_before.is_some() {
        let mut conn = state.db.read().acquire().await?;
        tenants::time_zone(&mut conn, &auth.tenant_id).await?
    } else {
        TimeZone::UTC
    };
    let filter = store::Filter {
        rfm_segment: query.rfm_segment,
        tag: query.tag,
        source: query.source,
        q: query
            .q
            .filter(|q| !q.trim().is_empty())
            .map(|q| q.trim().to_owned()),
        status: query.status,
        created_after: instant_param("created_after", query.created_after.as_deref(), &zone)?,
        created_before: instant_param("created_before", query.created_before.as_deref(), &zone)?,
        after_id: cursor.map(|id| id.to_string()),
        ids: None,
    };
    let mut reader = state.db.reader().await?;
    let mut data = store::list(&mut reader, &auth.tenant_id, &filter, limit + 1).await?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |m| m.id.to_string());
    Ok(Json(MemberPage { data, next_cursor }))
}

/// Import members from CSV (`external_id,name,phone,birthday,source,tags`, tags separated by
/// `|`). Streams up to 1,000,000 rows of at most 64 KiB each (a longer row, or one holding a
/// NUL byte, is a row error); good rows are kept, bad rows reported by line. A body over 2 GiB
/// is refused with 413.
#[utoipa::path(post, path = "/v1/members/import", tag = "members",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = import::ImportReport), (status = 400, description = "bad header"),
              (status = 413, description = "body over 2 GiB")),
    security(("api_key" = [])))]
async fn import_members(
    State(state): State<AppState>,
    auth: Auth,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Json<import::ImportReport>> {
    // A body announced larger than the limit is refused before any row is written; one that
    // grows past it while streaming is stopped there (see `common::import`).
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > crate::common::import::MAX_IMPORT_BYTES) {
        return Err(crate::common::import::OverLimit::default().error());
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let clock = state.clock.clone();
    let report = import::import(
        &state.db,
        move || clock.now(),
        &auth.tenant_id,
        reader,
        |_| {},
    )
    .await?;
    Ok(Json(report))
}

/// Export all active members as CSV in the import columns (streamed).
#[utoipa::path(get, path = "/v1/members/export", tag = "members",
    responses((status = 200, content_type = "text/csv", body = String)), security(("api_key" = [])))]
async fn export_members(State(state): State<AppState>, auth: Auth) -> Response {
    // The first page is read before answering, so a database failure is a proper error.
    let (first, next) = match import::export_page(&state.db, &auth.tenant_id, None, true).await {
        Ok(page) => page,
        Err(error) => return error.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"members.csv\"",
            ),
        ],
        Body::from_stream(export_stream(state, auth, first, next)),
    )
        .into_response()
}

/// The remaining export pages, read one at a time as the client consumes them.
fn export_stream(
    state: AppState,
    auth: Auth,
    first: Vec<u8>,
    next: Option<String>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold((Some(first), next), move |(pending, cursor)| {
        let state = state.clone();
        let auth = auth.clone();
        async move {
            if let Some(bytes) = pending {
                return Some((Ok(bytes), (None, cursor)));
            }
            let cursor = cursor?;
            match import::export_page(&state.db, &auth.tenant_id, Some(cursor), false).await {
                Ok((bytes, next)) => Some((Ok(bytes), (None, next))),
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), (None, None))),
            }
        }
    })
}

/// The known source channel keys (free text is accepted as well).
#[utoipa::path(get, path = "/v1/members/sources", tag = "members",
    responses((status = 200, body = Object)), security(("api_key" = [])))]
async fn known_sources() -> Json<Value> {
    Json(json!({ "data": model::KNOWN_SOURCES }))
}
