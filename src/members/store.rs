//! Member SQL. Small functions over a connection or a transaction; handlers read as a list of
//! steps.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::model::{Changes, Consent, Member, Profile, STATUS_ACTIVE, STATUS_ERASED};
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::reader::Reader;
use crate::common::sql::{like_escape, Arg, Backend, Sql};
use crate::common::time::micros_to_rfc3339;

const COLUMNS: &str = "id, external_id, name, phone, birthday, gender, source, attributes, \
    consent_marketing, status, tier, growth, lifecycle_stage, invited_by, created_at, updated_at, \
    erased_at";

fn external_id_taken() -> ApiError {
    ApiError::conflict(
        codes::EXTERNAL_ID_TAKEN,
        "another member of this tenant already has this external_id",
    )
    .with_details(serde_json::json!({ "field": "external_id" }))
}

/// Insert a member with its tags.
pub async fn insert(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
    profile: &Profile,
    at: i64,
) -> ApiResult<()> {
    let result = sqlx::query(
        "INSERT INTO member (tenant_id, id, external_id, name, phone, birthday, gender, source, \
         attributes, consent_marketing, consent_updated_at, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(profile.external_id.as_deref())
    .bind(profile.name.as_deref())
    .bind(profile.phone.as_deref())
    .bind(profile.birthday.as_deref())
    .bind(profile.gender.as_deref())
    .bind(profile.source.as_deref())
    .bind(profile.attributes.to_string())
    .bind(i64::from(profile.consent.marketing))
    .bind(at)
    .bind(STATUS_ACTIVE)
    .bind(at)
    .execute(&mut *conn)
    .await;
    match result {
        Err(e) if is_unique_violation(&e) => return Err(external_id_taken()),
        other => other?,
    };
    add_tags(conn, tenant_id, id, &profile.tags).await
}

/// Add tags (already validated); existing ones are left alone.
pub async fn add_tags(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
    tags: &[String],
) -> ApiResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::for_conn(
        &*conn,
        "INSERT INTO member_tag (tenant_id, member_id, tag) VALUES ",
    );
    sql.values(tags, |tag| {
        vec![
            tenant_id.as_str().into(),
            id.as_str().into(),
            tag.as_str().into(),
        ]
    });
    sql.push(" ON CONFLICT DO NOTHING");
    sql.query().execute(conn).await?;
    Ok(())
}

pub async fn remove_tags(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
    tags: &[String],
) -> ApiResult<()> {
    for tag in tags {
        sqlx::query("DELETE FROM member_tag WHERE tenant_id = $1 AND member_id = $2 AND tag = $3")
            .bind(tenant_id.as_str())
            .bind(id.as_str())
            .bind(tag)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Tags of several members, each list sorted.
pub async fn tags_of(
    reader: &mut Reader<'_>,
    tenant_id: &TenantId,
    ids: &[&str],
) -> ApiResult<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut sql = reader.sql("SELECT member_id, tag FROM member_tag WHERE tenant_id = ");
        sql.bind(tenant_id.as_str()).push(" AND member_id IN (");
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*id);
        }
        sql.push(") ORDER BY member_id, tag");
        for row in reader.fetch_all(&sql).await? {
            out.entry(row.try_get("member_id")?)
                .or_default()
                .push(row.try_get("tag")?);
        }
    }
    Ok(out)
}

fn from_row(row: &AnyRow, tags: Vec<String>) -> Result<Member, sqlx::Error> {
    let attributes: String = row.try_get("attributes")?;
    Ok(Member {
        id: MemberId::from_db(row.try_get("id")?),
        external_id: row.try_get("external_id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        birthday: row.try_get("birthday")?,
        gender: row.try_get("gender")?,
        source: row.try_get("source")?,
        tags,
        attributes: serde_json::from_str(&attributes).unwrap_or(Value::Null),
        consent: Consent {
            marketing: row.try_get::<i64, _>("consent_marketing")? != 0,
        },
        status: row.try_get("status")?,
        tier: row.try_get("tier")?,
        growth: row.try_get("growth")?,
        lifecycle_stage: row.try_get("lifecycle_stage")?,
        invited_by: row
            .try_get::<Option<String>, _>("invited_by")?
            .map(MemberId::from_db),
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
        erased_at: row
            .try_get::<Option<i64>, _>("erased_at")?
            .map(micros_to_rfc3339),
    })
}

/// One member of the tenant, with tags.
pub async fn fetch(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
) -> ApiResult<Option<Member>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM member WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut tags = tags_of(&mut Reader::from(conn), tenant_id, &[id.as_str()]).await?;
    Ok(Some(from_row(
        &row,
        tags.remove(id.as_str()).unwrap_or_default(),
    )?))
}

/// The member or 404.
pub async fn require(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
) -> ApiResult<Member> {
    fetch(conn, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))
}

/// Is the member there and not erased? (404 / 409 otherwise.)
pub async fn require_active(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
) -> ApiResult<()> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM member WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    match status.as_deref() {
        None => Err(ApiError::not_found("member")),
        Some(STATUS_ERASED) => Err(ApiError::conflict(
            codes::MEMBER_ERASED,
            "this member was erased and can no longer change",
        )),
        Some(_) => Ok(()),
    }
}

/// Apply a PATCH.
pub async fn update(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
    changes: &Changes,
    at: i64,
) -> ApiResult<()> {
    let mut sql = Sql::for_conn(&*conn, "UPDATE member SET updated_at = ");
    sql.bind(at);
    let text_fields = [
        ("external_id", &changes.external_id),
        ("name", &changes.name),
        ("phone", &changes.phone),
        ("birthday", &changes.birthday),
        ("gender", &changes.gender),
        ("source", &changes.source),
    ];
    for (column, value) in text_fields {
        if let Some(value) = value {
            sql.push(", ").push(column).push(" = ").bind(value.clone());
        }
    }
    if let Some(attributes) = &changes.attributes {
        sql.push(", attributes = ").bind(attributes.to_string());
    }
    if let Some(consent) = &changes.consent {
        sql.push(", consent_marketing = ")
            .bind(i64::from(consent.marketing))
            .push(", consent_updated_at = ")
            .bind(at);
    }
    sql.push(" WHERE tenant_id = ")
        .bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    match sql.query().execute(conn).await {
        Err(e) if is_unique_violation(&e) => Err(external_id_taken()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Erase personal data, keep the id (so ledgers and orders still add up); `personal` is
/// [`personal_values`] of the member as it was.
pub async fn erase(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &MemberId,
    personal: &[String],
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE member SET external_id = NULL, name = NULL, phone = NULL, birthday = NULL, \
         gender = NULL, attributes = '{}', consent_marketing = 0, consent_updated_at = $1, \
         status = $2, updated_at = $1, erased_at = $1 WHERE tenant_id = $3 AND id = $4",
    )
    .bind(at)
    .bind(STATUS_ERASED)
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM member_tag WHERE tenant_id = $1 AND member_id = $2")
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    // Tag events name the tags, which are personal data: redact them too.
    let redacted = serde_json::json!({ "member_id": id, "redacted": true }).to_string();
    sqlx::query(
        "UPDATE event SET data = $1 WHERE tenant_id = $2 AND subject = $3 AND type = 'member.tagged'",
    )
    .bind(redacted.as_str())
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    // Any other event about the member that carries one of its values (`personal` holds them
    // as JSON strings, the way event data writes them) is redacted the same way.
    let contains = match crate::common::sql::backend_of(conn) {
        crate::common::db::Backend::Sqlite => "instr(data, $4) > 0",
        crate::common::db::Backend::Postgres => "position($4 in data) > 0",
    };
    for value in personal {
        sqlx::query(&format!(
            "UPDATE event SET data = $1 WHERE tenant_id = $2 AND subject = $3 AND {contains}"
        ))
        .bind(redacted.as_str())
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .bind(value.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The values of a member that erasure looks for in stored responses and events, each as a
/// JSON string (quoted), so that a short external id such as `u1` matches that value and not
/// every text that happens to contain it: name, phone, external id, birthday, tags and the
/// string values of the attributes.
pub fn personal_values(member: &Member) -> Vec<String> {
    let mut values: Vec<&str> = [
        &member.name,
        &member.phone,
        &member.external_id,
        &member.birthday,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .collect();
    values.extend(member.tags.iter().map(String::as_str));
    let mut strings = Vec::new();
    collect_strings(&member.attributes, &mut strings);
    values.extend(strings);
    values.sort_unstable();
    values.dedup();
    values
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|v| Value::String(v.to_owned()).to_string())
        .collect()
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Filters of `GET /v1/members`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub tag: Option<String>,
    pub source: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Only members whose id sorts after this (the cursor).
    pub after_id: Option<String>,
    /// Restrict to these ids (used by segment-style filters of other domains).
    pub ids: Option<Vec<String>>,
    /// Members in this RFM segment (from the stored analytics scores).
    pub rfm_segment: Option<String>,
}

/// A page of members in id order (= creation order, ids being time-ordered).
pub async fn list(
    reader: &mut Reader<'_>,
    tenant_id: &TenantId,
    filter: &Filter,
    limit: i64,
) -> ApiResult<Vec<Member>> {
    let tags = tags_array(reader.backend());
    let mut sql = reader.sql(&format!(
        "SELECT {COLUMNS}, {tags} AS tags FROM member m WHERE m.tenant_id = "
    ));
    sql.bind(tenant_id.as_str());
    if let Some(source) = &filter.source {
        sql.push(" AND m.source = ").bind(source.as_str());
    }
    if let Some(status) = &filter.status {
        sql.push(" AND m.status = ").bind(status.as_str());
    }
    if let Some(after) = filter.created_after {
        sql.push(" AND m.created_at >= ").bind(after);
    }
    if let Some(before) = filter.created_before {
        sql.push(" AND m.created_at < ").bind(before);
    }
    if let Some(tag) = &filter.tag {
        sql.push(
            " AND EXISTS (SELECT 1 FROM member_tag t WHERE t.tenant_id = m.tenant_id \
             AND t.member_id = m.id AND t.tag = ",
        )
        .bind(tag.as_str())
        .push(")");
    }
    if let Some(q) = &filter.q {
        let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
        sql.push(" AND (LOWER(m.name) LIKE ")
            .bind(pattern.clone())
            .push(" ESCAPE '\\' OR m.phone LIKE ")
            .bind(pattern.clone())
            .push(" ESCAPE '\\' OR LOWER(m.external_id) LIKE ")
            .bind(pattern)
            .push(" ESCAPE '\\')");
    }
    if let Some(segment) = &filter.rfm_segment {
        sql.push(
            " AND EXISTS (SELECT 1 FROM member_score s WHERE s.tenant_id = m.tenant_id \
             AND s.member_id = m.id AND s.segment = ",
        )
        .bind(segment.as_str())
        .push(")");
    }
    if let Some(ids) = &filter.ids {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sql.push(" AND m.id IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.as_str());
        }
        sql.push(")");
    }
    if let Some(after) = &filter.after_id {
        sql.push(" AND m.id > ").bind(after.as_str());
    }
    sql.push(" ORDER BY m.id LIMIT ").bind(limit);
    let sqlite = reader.backend() == Backend::Sqlite;
    let rows = reader.fetch_all(&sql).await?;
    rows.iter()
        .map(|row| {
            let tags: String = row.try_get("tags")?;
            let mut tags: Vec<String> =
                serde_json::from_str(&tags).map_err(|e| sqlx::Error::Decode(e.into()))?;
            if sqlite {
                // SQLite's BINARY order, as `ORDER BY tag` gives it (see `tags_array`).
                tags.sort_unstable();
            }
            Ok(from_row(row, tags)?)
        })
        .collect()
}

/// A member's tags as one JSON array of strings (`[]` for none), for a query over `member m`:
/// a page is one statement instead of its members and then their tags. PostgreSQL orders them
/// by name (its collation, as [`tags_of`] does); on SQLite the caller sorts them (byte order,
/// SQLite's `BINARY`), because an `ORDER BY` inside the aggregate opens a sorter for every
/// member and cost more than the second statement it saves (callgrind: 16k instructions a
/// member page).
fn tags_array(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "(SELECT json_group_array(t.tag) FROM member_tag t \
             WHERE t.tenant_id = m.tenant_id AND t.member_id = m.id)"
        }
        Backend::Postgres => {
            "(SELECT COALESCE(json_agg(t.tag ORDER BY t.tag), '[]'::json)::text FROM member_tag t \
             WHERE t.tenant_id = m.tenant_id AND t.member_id = m.id)"
        }
    }
}

/// Existing members by external id: external_id → member id.
pub async fn ids_by_external(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    external_ids: &[&str],
) -> ApiResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in external_ids.chunks(500) {
        let mut sql = Sql::for_conn(
            &*conn,
            "SELECT id, external_id FROM member WHERE tenant_id = ",
        );
        sql.bind(tenant_id.as_str()).push(" AND external_id IN (");
        for (i, ext) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*ext);
        }
        sql.push(")");
        for row in sql.query().fetch_all(&mut *conn).await? {
            out.insert(row.try_get("external_id")?, row.try_get("id")?);
        }
    }
    Ok(out)
}

/// Insert many new members at once (import); tags are written separately.
pub async fn insert_many(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &[(MemberId, &Profile)],
    at: i64,
) -> ApiResult<()> {
    for chunk in rows.chunks(1000) {
        let mut sql = Sql::for_conn(
            &*conn,
            "INSERT INTO member (tenant_id, id, external_id, name, phone, birthday, gender, \
             source, attributes, consent_marketing, status, created_at, updated_at) VALUES ",
        );
        sql.values(chunk, |(id, p)| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(id.as_str()),
                Arg::from(p.external_id.clone()),
                Arg::from(p.name.clone()),
                Arg::from(p.phone.clone()),
                Arg::from(p.birthday.clone()),
                Arg::from(p.gender.clone()),
                Arg::from(p.source.clone()),
                Arg::from(p.attributes.to_string()),
                Arg::from(i64::from(p.consent.marketing)),
                Arg::from(STATUS_ACTIVE),
                Arg::from(at),
                Arg::from(at),
            ]
        });
        match sql.query().execute(&mut *conn).await {
            Err(e) if is_unique_violation(&e) => return Err(external_id_taken()),
            other => other?,
        };
    }
    Ok(())
}

/// Update many members from import rows: a `None` field keeps the stored value.
pub async fn update_many(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &[(String, &Profile)],
    at: i64,
) -> ApiResult<()> {
    for chunk in rows.chunks(1000) {
        let mut sql = Sql::for_conn(
            &*conn,
            "UPDATE member SET name = COALESCE(v.column2, member.name), \
             phone = COALESCE(v.column3, member.phone), \
             birthday = COALESCE(v.column4, member.birthday), \
             source = COALESCE(v.column5, member.source), updated_at = ",
        );
        sql.bind(at).push(" FROM (VALUES ");
        sql.values(chunk, |(id, p)| {
            vec![
                Arg::from(id.as_str()),
                Arg::from(p.name.clone()),
                Arg::from(p.phone.clone()),
                Arg::from(p.birthday.clone()),
                Arg::from(p.source.clone()),
            ]
        });
        sql.push(") AS v WHERE member.tenant_id = ")
            .bind(tenant_id.as_str())
            .push(" AND member.id = v.column1");
        sql.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Replace the tag sets of several members.
pub async fn replace_tags_many(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    rows: &[(&str, &[String])],
) -> ApiResult<()> {
    for chunk in rows.chunks(500) {
        let mut delete = Sql::for_conn(&*conn, "DELETE FROM member_tag WHERE tenant_id = ");
        delete.bind(tenant_id.as_str()).push(" AND member_id IN (");
        for (i, (id, _)) in chunk.iter().enumerate() {
            if i > 0 {
                delete.push(", ");
            }
            delete.bind(*id);
        }
        delete.push(")");
        delete.query().execute(&mut *conn).await?;
    }
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .flat_map(|(id, tags)| tags.iter().map(move |t| (*id, t.as_str())))
        .collect();
    for chunk in pairs.chunks(1000) {
        let mut insert = Sql::for_conn(
            &*conn,
            "INSERT INTO member_tag (tenant_id, member_id, tag) VALUES ",
        );
        insert.values(chunk, |(id, tag)| {
            vec![tenant_id.as_str().into(), (*id).into(), (*tag).into()]
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.query().execute(&mut *conn).await?;
    }
    Ok(())
}
