//! Analytics reads: stored scores per member, RFM segments, the CLV distribution. All read the
//! rows the scoring run wrote (`shequn analytics fit`), so they are cheap.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::json::Json;
use crate::common::time::micros_to_rfc3339;
use crate::members;
use crate::AppState;

/// The RFM segments, in the order the API lists them.
pub const SEGMENTS: [&str; 8] = [
    "champions",
    "loyal",
    "potential",
    "new",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(member_analytics))
        .routes(routes!(rfm_overview))
        .routes(routes!(clv_overview))
        .routes(routes!(cohorts))
        .routes(routes!(super::repurchase::member_repurchase))
}

/// A member's stored scores.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberAnalytics {
    pub member_id: String,
    pub frequency: i64,
    pub recency_days: i64,
    /// Total spent (fen).
    pub monetary: i64,
    pub r_score: i64,
    pub f_score: i64,
    pub m_score: i64,
    pub segment: String,
    pub p_alive: f64,
    pub expected_transactions_30d: f64,
    pub expected_transactions_90d: f64,
    pub expected_transactions_365d: f64,
    /// Expected average order value (fen).
    pub expected_order_value: i64,
    /// Discounted value over the next 12 months (fen).
    pub clv: i64,
    pub scored_at: String,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<MemberAnalytics, sqlx::Error> {
    Ok(MemberAnalytics {
        member_id: row.try_get("member_id")?,
        frequency: row.try_get("frequency")?,
        recency_days: row.try_get("recency_days")?,
        monetary: row.try_get("monetary")?,
        r_score: row.try_get("r_score")?,
        f_score: row.try_get("f_score")?,
        m_score: row.try_get("m_score")?,
        segment: row.try_get("segment")?,
        p_alive: row.try_get("p_alive")?,
        expected_transactions_30d: row.try_get("expected_30")?,
        expected_transactions_90d: row.try_get("expected_90")?,
        expected_transactions_365d: row.try_get("expected_365")?,
        expected_order_value: row.try_get("expected_order_value")?,
        clv: row.try_get("clv")?,
        scored_at: micros_to_rfc3339(row.try_get("scored_at")?),
    })
}

const SCORE_COLUMNS: &str = "member_id, frequency, recency_days, monetary, r_score, f_score, \
    m_score, segment, p_alive, expected_30, expected_90, expected_365, expected_order_value, clv, scored_at";

/// A member's P(alive), expected transactions, expected order value, CLV and RFM.
#[utoipa::path(get, path = "/v1/members/{id}/analytics", tag = "analytics",
    params(("id" = String, Path)),
    responses((status = 200, body = MemberAnalytics), (status = 404, description = "unknown member or not scored yet")),
    security(("api_key" = [])))]
async fn member_analytics(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberAnalytics>> {
    let id = members::member_id(&id)?;
    let mut conn = state.db.read().acquire().await?;
    members::store::require(&mut conn, &auth.tenant_id, &id).await?;
    let row = sqlx::query(&format!(
        "SELECT {SCORE_COLUMNS} FROM member_score WHERE tenant_id = $1 AND member_id = $2"
    ))
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let row = row.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_scored",
            "this member has no scores yet: run `shequn analytics fit` after importing orders",
        )
    })?;
    Ok(Json(from_row(&row)?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentSummary {
    pub segment: String,
    pub members: i64,
    /// Total spent by the segment (fen).
    pub monetary: i64,
    /// Sum of the segment's CLV (fen).
    pub clv: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RfmOverview {
    pub data: Vec<SegmentSummary>,
    /// The last model fit, or null before the first one.
    #[schema(value_type = Option<Object>)]
    pub fit: Value,
}

async fn fit_info(state: &AppState, auth: &Auth) -> ApiResult<Value> {
    let row = sqlx::query(
        "SELECT calibration_end, time_unit, customers, result, fitted_at FROM analytics_fit WHERE tenant_id = $1",
    )
    .bind(auth.tenant_id.as_str())
    .fetch_optional(state.db.read())
    .await?;
    Ok(match row {
        None => Value::Null,
        Some(row) => {
            let result: String = row.try_get("result")?;
            serde_json::json!({
                "calibration_end": row.try_get::<String, _>("calibration_end")?,
                "time_unit": row.try_get::<String, _>("time_unit")?,
                "customers": row.try_get::<i64, _>("customers")?,
                "fitted_at": micros_to_rfc3339(row.try_get("fitted_at")?),
                "result": serde_json::from_str::<Value>(&result).unwrap_or(Value::Null),
            })
        }
    })
}

/// RFM segment sizes and value (segments: champions, loyal, potential, new, at_risk,
/// cant_lose, hibernating, lost; the R×F mapping is documented in `analytics::model::rfm`).
#[utoipa::path(get, path = "/v1/analytics/rfm", tag = "analytics",
    responses((status = 200, body = RfmOverview)), security(("api_key" = [])))]
async fn rfm_overview(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<RfmOverview>> {
    let rows = sqlx::query(
        "SELECT segment, COUNT(*) AS members, CAST(SUM(monetary) AS BIGINT) AS monetary, \
         CAST(SUM(clv) AS BIGINT) AS clv FROM member_score WHERE tenant_id = $1 GROUP BY segment",
    )
    .bind(auth.tenant_id.as_str())
    .fetch_all(state.db.read())
    .await?;
    let mut data: Vec<SegmentSummary> = SEGMENTS
        .iter()
        .map(|s| SegmentSummary {
            segment: (*s).to_owned(),
            members: 0,
            monetary: 0,
            clv: 0,
        })
        .collect();
    for row in rows {
        let segment: String = row.try_get("segment")?;
        if let Some(entry) = data.iter_mut().find(|d| d.segment == segment) {
            entry.members = row.try_get("members")?;
            entry.monetary = row.try_get("monetary")?;
            entry.clv = row.try_get("clv")?;
        }
    }
    Ok(Json(RfmOverview {
        data,
        fit: fit_info(&state, &auth).await?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ClvQuery {
    /// How many top members to list (1 to 100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub top: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClvOverview {
    pub members: i64,
    /// Total CLV (fen).
    pub total: i64,
    /// CLV at the 10th, 25th, 50th, 75th, 90th and 99th percentiles (fen).
    #[schema(value_type = Object)]
    pub percentiles: Value,
    pub top: Vec<MemberAnalytics>,
    /// The last model fit, or null before the first one.
    #[schema(value_type = Option<Object>)]
    pub fit: Value,
}

/// The CLV distribution and the most valuable members.
#[utoipa::path(get, path = "/v1/analytics/clv", tag = "analytics", params(ClvQuery),
    responses((status = 200, body = ClvOverview)), security(("api_key" = [])))]
async fn clv_overview(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ClvQuery>,
) -> ApiResult<Json<ClvOverview>> {
    let top = crate::common::pagination::limit(query.top, 10, 100)?;
    let values: Vec<i64> =
        sqlx::query_scalar("SELECT clv FROM member_score WHERE tenant_id = $1 ORDER BY clv")
            .bind(auth.tenant_id.as_str())
            .fetch_all(state.db.read())
            .await?;
    let percentile = |p: f64| -> i64 {
        if values.is_empty() {
            return 0;
        }
        // Nearest-rank percentile.
        let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
        values[rank.min(values.len()) - 1]
    };
    let rows = sqlx::query(&format!(
        "SELECT {SCORE_COLUMNS} FROM member_score WHERE tenant_id = $1 ORDER BY clv DESC, member_id LIMIT $2"
    ))
    .bind(auth.tenant_id.as_str())
    .bind(top)
    .fetch_all(state.db.read())
    .await?;
    Ok(Json(ClvOverview {
        members: values.len() as i64,
        total: values.iter().sum(),
        percentiles: serde_json::json!({
            "p10": percentile(10.0), "p25": percentile(25.0), "p50": percentile(50.0),
            "p75": percentile(75.0), "p90": percentile(90.0), "p99": percentile(99.0),
        }),
        top: rows.iter().map(from_row).collect::<Result<_, _>>()?,
        fit: fit_info(&state, &auth).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CohortTable {
    /// Monthly acquisition cohorts: `{"cohort": "YYYY-MM", "customers", "active": [month 0,
    /// month 1, …], "revenue": [...]}` (revenue in minor units).
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
    /// The last model fit, or null before the first one.
    #[schema(value_type = Option<Object>)]
    pub fit: Value,
}

/// Monthly acquisition cohorts × month-by-month retention and revenue (from the last scoring
/// run).
#[utoipa::path(get, path = "/v1/analytics/cohorts", tag = "analytics",
    responses((status = 200, body = CohortTable)), security(("api_key" = [])))]
async fn cohorts(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<CohortTable>> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT cohorts FROM analytics_fit WHERE tenant_id = $1")
            .bind(auth.tenant_id.as_str())
            .fetch_optional(state.db.read())
            .await?;
    Ok(Json(CohortTable {
        data: text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| Value::Array(Vec::new())),
        fit: fit_info(&state, &auth).await?,
    }))
}
