//! A month's statement of the alliance ledger: every entry of the month, oldest first, and
//! each partner's movement in it.
//!
//! As JSON the entries come in pages (`limit`, default 1,000, at most 10,000; `cursor` →
//! `next_cursor`, keyed by the entry's time and id so a page never repeats or skips an entry
//! while others are written); `partners` is the whole month's movement on every page, so the
//! pages' entries summed per partner are exactly it. As CSV the whole month is streamed, read
//! [`CSV_PAGE`] entries at a time, with no cap: a partner's bookkeeping needs every line.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use crate::common::auth::Auth;
use crate::common::error::{ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::json::Json;
use crate::common::pagination;
use crate::common::time::{time_zone_named, to_micros};
use crate::AppState;

use super::model::{AllianceEntry, AllianceStatement, PartnerBalance, StatementQuery};
use super::{partner_balances, partnership, rules, store, EntryId};

/// Default entries in one JSON page of a statement.
pub const DEFAULT_PAGE: i64 = 1_000;
/// Most entries in one JSON page of a statement.
pub const MAX_PAGE: i64 = 10_000;
/// Entries read per step while streaming a statement's CSV.
pub const CSV_PAGE: i64 = 1_000;

/// Where a page ends: the last entry's time (microseconds) and id.
fn encode_cursor(at: i64, id: &str) -> String {
    format!("{at}.{id}")
}

fn decode_cursor(text: &str) -> Option<(i64, String)> {
    let (at, id) = text.split_once('.')?;
    let at: i64 = at.parse().ok()?;
    let id = EntryId::parse(id)?;
    Some((at, id.as_str().to_owned()))
}

enum Format {
    Json,
    Csv,
}

/// A month's statement (`month=YYYY-MM` in the alliance's time zone): the entries, oldest
/// first, a page at a time (`limit` 1–10,000, default 1,000; `cursor`), and each partner's
/// movement in the whole month. `format=csv` streams every entry of the month as CSV.
#[utoipa::path(get, path = "/v1/alliances/{id}/statements", tag = "alliance",
    params(("id" = String, Path, description = "alliance id"), StatementQuery),
    responses((status = 200, content((AllianceStatement = "application/json"), (String = "text/csv"))),
        (status = 404), (status = 422)),
    security(("api_key" = [])))]
pub async fn statement(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<StatementQuery>,
) -> ApiResult<Response> {
    let format = match query.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ApiError::validation("format", "must be json or csv")),
    };
    let limit = pagination::limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let after = pagination::cursor(query.cursor.as_deref(), decode_cursor)?;
    let mut conn = state.db.read().acquire().await?;
    let (alliance, me) = partnership(&mut conn, &auth.tenant_id, &id).await?;
    let first = rules::parse_month(&query.month)
        .ok_or_else(|| ApiError::validation("month", "must be YYYY-MM"))?;
    let zone = time_zone_named(&alliance.timezone)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("alliance time zone unknown")))?;
    let (from, to) = rules::month_range(first, &zone)
        .ok_or_else(|| ApiError::validation("month", "is out of range"))?;
    let range = (to_micros(from), to_micros(to));
    let partners = partner_balances(&mut conn, &alliance.id, Some(range)).await?;
    drop(conn);
    let month = Month {
        alliance_id: alliance.id,
        viewer_partner_id: me.id,
        range,
    };
    match format {
        Format::Json => json_page(
            &state,
            month,
            &query.month,
            (from, to),
            partners,
            limit,
            after,
        )
        .await
        .map(IntoResponse::into_response),
        Format::Csv => {
            let disposition = format!(
                "attachment; filename=\"alliance-{}-{}.csv\"",
                month.alliance_id, query.month
            );
            let body = csv_stream(&state, month, partners).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response())
        }
    }
}

/// What a statement reads: one alliance's month, as one partner sees it.
#[derive(Clone)]
struct Month {
    alliance_id: String,
    viewer_partner_id: String,
    range: (i64, i64),
}

impl Month {
    /// Up to `limit` entries after `after`, each with its time in microseconds.
    async fn entries(
        &self,
        state: &AppState,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> ApiResult<Vec<(i64, AllianceEntry)>> {
        let mut conn = state.db.read().acquire().await?;
        store::entries(
            &mut conn,
            &self.alliance_id,
            self.range,
            after.map(|(at, id)| (*at, id.as_str())),
            &self.viewer_partner_id,
            limit,
        )
        .await
    }
}

async fn json_page(
    state: &AppState,
    month: Month,
    month_text: &str,
    (from, to): (Timestamp, Timestamp),
    partners: Vec<PartnerBalance>,
    limit: i64,
    after: Option<(i64, String)>,
) -> ApiResult<Json<AllianceStatement>> {
    let mut rows = month.entries(state, after.as_ref(), limit + 1).await?;
    let next_cursor = pagination::next_cursor(&mut rows, limit, |(at, entry)| {
        encode_cursor(*at, &entry.id)
    });
    Ok(Json(AllianceStatement {
        month: month_text.to_owned(),
        from: from.to_string(),
        to: to.to_string(),
        entries: rows.into_iter().map(|(_, entry)| entry).collect(),
        partners,
        next_cursor,
    }))
}

/// The CSV of every entry of the month, streamed [`CSV_PAGE`] entries at a time. The first
/// page is read before answering, so a database failure is a proper error response.
async fn csv_stream(
    state: &AppState,
    month: Month,
    partners: Vec<PartnerBalance>,
) -> ApiResult<Body> {
    let names: Vec<(String, String)> = partners
        .into_iter()
        .map(|p| (p.partner_id, p.name))
        .collect();
    let first = csv_step(state, &month, &names, None, true).await?;
    let state = state.clone();
    let stream = futures::stream::unfold(
        (Some(first.0), first.1),
        move |(pending, after): (Option<Vec<u8>>, Option<(i64, String)>)| {
            let state = state.clone();
            let month = month.clone();
            let names = names.clone();
            async move {
                if let Some(bytes) = pending {
                    return Some((Ok(bytes), (None, after)));
                }
                let after = after?;
                match csv_step(&state, &month, &names, Some(after), false).await {
                    Ok((bytes, next)) => Some((Ok(bytes), (None, next))),
                    Err(error) => {
                        Some((Err(std::io::Error::other(error.to_string())), (None, None)))
                    }
                }
            }
        },
    );
    Ok(Body::from_stream(stream))
}

/// One step of the CSV: the lines of up to [`CSV_PAGE`] entries after `after`, and where to
/// continue (None: the month is done).
async fn csv_step(
    state: &AppState,
    month: &Month,
    names: &[(String, String)],
    after: Option<(i64, String)>,
    header: bool,
) -> ApiResult<(Vec<u8>, Option<(i64, String)>)> {
    let rows = month.entries(state, after.as_ref(), CSV_PAGE).await?;
    let next = (rows.len() as i64 == CSV_PAGE)
        .then(|| rows.last().map(|(at, entry)| (*at, entry.id.clone())))
        .flatten();
    let bytes = csv_lines(rows.iter().map(|(_, entry)| entry), names, header).await?;
    Ok((bytes, next))
}

const CSV_HEADER: [&str; 12] = [
    "created_at",
    "id",
    "kind",
    "debit_partner_id",
    "debit_partner",
    "credit_partner_id",
    "credit_partner",
    "amount",
    "customer_id",
    "order_id",
    "reference",
    "voided_by",
];

async fn csv_lines<'a>(
    entries: impl Iterator<Item = &'a AllianceEntry>,
    names: &[(String, String)],
    header: bool,
) -> ApiResult<Vec<u8>> {
    let name = |id: &str| {
        names
            .iter()
            .find(|(partner_id, _)| partner_id == id)
            .map_or(String::new(), |(_, name)| name.clone())
    };
    let mut writer = csv_async::AsyncWriterBuilder::new()
        .has_headers(false)
        .create_writer(Vec::new());
    if header {
        writer
            .write_record(CSV_HEADER)
            .await
            .map_err(ApiError::internal)?;
    }
    for e in entries {
        writer
            .write_record([
                e.created_at.clone(),
                e.id.clone(),
                e.kind.clone(),
                e.debit_partner_id.clone(),
                name(&e.debit_partner_id),
                e.credit_partner_id.clone(),
                name(&e.credit_partner_id),
                e.amount.to_string(),
                e.customer_id.clone().unwrap_or_default(),
                e.order_id.clone().unwrap_or_default(),
                e.reference.clone().unwrap_or_default(),
                e.voided_by.clone().unwrap_or_default(),
            ])
            .await
            .map_err(ApiError::internal)?;
    }
    writer.into_inner().await.map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let id = EntryId::generate();
        let cursor = encode_cursor(1_765_000_000_000_000, id.as_str());
        assert_eq!(
            decode_cursor(&cursor),
            Some((1_765_000_000_000_000, id.as_str().to_owned()))
        );
        for bad in ["", "x", "12", "12.", "x.aen_0", &format!("x.{id}")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
