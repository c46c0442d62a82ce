//! Analytics reads: stored scores per member, RFM segments, the CLV distribution. All read the
//! rows the scoring run wrote (`shequn analytics fit`), so they are cheap.
//!
//! Every read carries the last fit's `model_quality` (`{"status": "ok" | "at_boundary" |
//! "not_converged" | "insufficient_data", "reasons": [...], "bgnbd", "gamma_gamma"}`, see
//! [`super::model::quality`]), and a value the models could not give is null with the reason
//! beside it, never a 0 that looks like a prediction.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::json::Json;
use crate::common::time::micros_to_rfc3339;
use crate::members;
use crate::AppState;

/// The RFM segments, in the order the API lists them (named with the members they filter,
/// below analytics: `members::model::RFM_SEGMENTS`).
pub const SEGMENTS: [&str; 8] = members::model::RFM_SEGMENTS;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(member_analytics))
        .routes(routes!(rfm_overview))
        .routes(routes!(clv_overview))
        .routes(routes!(cohorts))
        .routes(routes!(super::overview::overview))
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
    /// Null when BG/NBD could not be fitted (`prediction_unavailable_reason` says why), as are
    /// the expected transactions.
    pub p_alive: Option<f64>,
    pub expected_transactions_30d: Option<f64>,
    pub expected_transactions_90d: Option<f64>,
    pub expected_transactions_365d: Option<f64>,
    /// Expected average order value (fen); null when the spend model could not be fitted
    /// (`value_unavailable_reason` says why).
    pub expected_order_value: Option<i64>,
    /// Discounted value over the next 12 months (fen); null as `expected_order_value`.
    pub clv: Option<i64>,
    /// Why `p_alive` and the expected transactions are null (null when they are not).
    pub prediction_unavailable_reason: Option<String>,
    /// Why `expected_order_value` or `clv` is null (null when they are not).
    pub value_unavailable_reason: Option<String>,
    /// The last fit's quality: `{"status", "reasons", "bgnbd", "gamma_gamma"}`.
    #[schema(value_type = Option<Object>)]
    pub model_quality: Value,
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
        prediction_unavailable_reason: None,
        value_unavailable_reason: None,
        model_quality: Value::Null,
        scored_at: micros_to_rfc3339(row.try_get("scored_at")?),
    })
}

/// The last fit as the reads show it.
struct LastFit {
    /// `fit` of the overviews: null before the first fit.
    info: Value,
    /// `model_quality` of every read: null before the first fit.
    model_quality: Value,
    prediction_reason: Option<String>,
    value_reason: Option<String>,
}

impl LastFit {
    /// Attaches the fit's quality, and the reasons for the values that are null.
    fn explain(&self, mut scores: MemberAnalytics) -> MemberAnalytics {
        if scores.p_alive.is_none() {
            scores.prediction_unavailable_reason = Some(
                self.prediction_reason
                    .clone()
                    .unwrap_or_else(|| "BG/NBD could not be fitted".to_owned()),
            );
        }
        if scores.expected_order_value.is_none() || scores.clv.is_none() {
            scores.value_unavailable_reason = Some(
                self.value_reason
                    .clone()
                    .unwrap_or_else(|| "the spend model could not be fitted".to_owned()),
            );
        }
        scores.model_quality = self.model_quality.clone();
        scores
    }
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
        ApiError::coded(
            codes::NOT_SCORED,
            "this member has no scores yet: run `shequn analytics fit` after importing orders",
        )
    })?;
    let fit = last_fit(&state, &auth).await?;
    Ok(Json(fit.explain(from_row(&row)?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentSummary {
    pub segment: String,
    pub members: i64,
    /// Total spent by the segment (fen).
    pub monetary: i64,
    /// Sum of the segment's CLV (fen); null when no CLV could be computed (see
    /// `value_unavailable_reason`).
    pub clv: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RfmOverview {
    pub data: Vec<SegmentSummary>,
    /// The last model fit, or null before the first one.
    #[schema(value_type = Option<Object>)]
    pub fit: Value,
    /// The last fit's quality: `{"status", "reasons", "bgnbd", "gamma_gamma"}`, or null
    /// before the first fit.
    #[schema(value_type = Option<Object>)]
    pub model_quality: Value,
    /// Why CLV is null (null when it is not).
    pub value_unavailable_reason: Option<String>,
}

async fn last_fit(state: &AppState, auth: &Auth) -> ApiResult<LastFit> {
    let row = sqlx::query(
        "SELECT calibration_end, time_unit, customers, result, fitted_at FROM analytics_fit WHERE tenant_id = $1",
    )
    .bind(auth.tenant_id.as_str())
    .fetch_optional(state.db.read())
    .await?;
    let Some(row) = row else {
        return Ok(LastFit {
            info: Value::Null,
            model_quality: Value::Null,
            prediction_reason: None,
            value_reason: None,
        });
    };
    let result: String = row.try_get("result")?;
    let result = serde_json::from_str::<Value>(&result).unwrap_or(Value::Null);
    let reason = |key: &str| result["unavailable"][key].as_str().map(str::to_owned);
    Ok(LastFit {
        model_quality: result.get("model_quality").cloned().unwrap_or(Value::Null),
        prediction_reason: reason("prediction"),
        value_reason: reason("value"),
        info: serde_json::json!({
            "calibration_end": row.try_get::<String, _>("calibration_end")?,
            "time_unit": row.try_get::<String, _>("time_unit")?,
            "customers": row.try_get::<i64, _>("customers")?,
            "fitted_at": micros_to_rfc3339(row.try_get("fitted_at")?),
            "result": result,
        }),
    })
}

/// RFM segment sizes and value (segments: champions, loyal, potential, new, at_risk,
/// cant_lose, hibernating, lost; the R×F mapping is documented in `analytics::model::rfm`).
#[utoipa::path(get, path = "/v1/analytics/rfm", tag = "analytics",
    responses((status = 200, body = RfmOverview)), security(("api_key" = [])))]
async fn rfm_overview(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<RfmOverview>> {
    let rows = sqlx::query(
        "SELECT segment, COUNT(*) AS members, CAST(SUM(monetary) AS BIGINT) AS monetary, \
         CAST(SUM(clv) AS BIGINT) AS clv, COUNT(clv) AS with_clv FROM member_score \
         WHERE tenant_id = $1 GROUP BY segment",
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
            clv: Some(0),
        })
        .collect();
    let mut with_clv = 0i64;
    for row in rows {
        let segment: String = row.try_get("segment")?;
        if let Some(entry) = data.iter_mut().find(|d| d.segment == segment) {
            entry.members = row.try_get("members")?;
            entry.monetary = row.try_get("monetary")?;
            entry.clv = row.try_get("clv")?;
            with_clv += row.try_get::<i64, _>("with_clv")?;
        }
    }
    let fit = last_fit(&state, &auth).await?;
    let members: i64 = data.iter().map(|d| d.members).sum();
    if members > 0 && with_clv == 0 {
        // No member has a CLV: every segment's sum is unknown, not 0.
        data.iter_mut().for_each(|d| d.clv = None);
    }
    Ok(Json(RfmOverview {
        data,
        value_unavailable_reason: (with_clv < members)
            .then(|| fit.value_reason.clone())
            .flatten(),
        fit: fit.info,
        model_quality: fit.model_quality,
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
    /// Members with a CLV.
    pub members: i64,
    /// Scored members whose CLV is null (see `value_unavailable_reason`).
    pub members_without_clv: i64,
    /// Total CLV of the members with one (fen).
    pub total: i64,
    /// CLV at the 10th, 25th, 50th, 75th, 90th and 99th percentiles (fen).
    #[schema(value_type = Object)]
    pub percentiles: Value,
    /// The most valuable members, with their names and external ids (null once erased).
    #[schema(value_type = Vec<Object>)]
    pub top: Vec<TopMember>,
    /// The last model fit, or null before the first one.
    #[schema(value_type = Option<Object>)]
    pub fit: Value,
    /// The last fit's quality: `{"status", "reasons", "bgnbd", "gamma_gamma"}`, or null
    /// before the first fit.
    #[schema(value_type = Option<Object>)]
    pub model_quality: Value,
    /// Why some or all CLVs are null (null when none is).
    pub value_unavailable_reason: Option<String>,
}

/// One of the most valuable members: who they are, and their scores.
#[derive(Debug, Serialize)]
pub struct TopMember {
    pub name: Option<String>,
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub scores: MemberAnalytics,
}

/// The CLV distribution and the most valuable members.
#[utoipa::path(get, path = "/v1/analytics/clv", tag = "analytics", params(ClvQuery),
    responses((status = 200, body = ClvOverview)), security(("api_key" = [])))]
async fn clv_overview(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ClvQuery>,
) -> ApiResult<Json<ClvOverview>> {
    let top = crate::common::pagination::count("top", query.top, 10, 100)?;
    let values: Vec<i64> = sqlx::query_scalar(
        "SELECT clv FROM member_score WHERE tenant_id = $1 AND clv IS NOT NULL ORDER BY clv",
    )
    .bind(auth.tenant_id.as_str())
    .fetch_all(state.db.read())
    .await?;
    let without: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM member_score WHERE tenant_id = $1 AND clv IS NULL",
    )
    .bind(auth.tenant_id.as_str())
    .fetch_one(state.db.read())
    .await?;
    let percentile = |p: f64| -> i64 {
        if values.is_empty() {
            return 0;
        }
        // Nearest-rank percentile.
        let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
        values[rank.min(values.len()) - 1]
    };
    let columns: Vec<String> = SCORE_COLUMNS
        .split(", ")
        .map(|c| format!("s.{}", c.trim()))
        .collect();
    let rows = sqlx::query(&format!(
        "SELECT {}, m.name, m.external_id FROM member_score s \
         LEFT JOIN member m ON m.tenant_id = s.tenant_id AND m.id = s.member_id \
         WHERE s.tenant_id = $1 AND s.clv IS NOT NULL ORDER BY s.clv DESC, s.member_id LIMIT $2",
        columns.join(", ")
    ))
    .bind(auth.tenant_id.as_str())
    .bind(top)
    .fetch_all(state.db.read())
    .await?;
    let fit = last_fit(&state, &auth).await?;
    Ok(Json(ClvOverview {
        members: values.len() as i64,
        members_without_clv: without,
        total: values.iter().sum(),
        percentiles: serde_json::json!({
            "p10": percentile(10.0), "p25": percentile(25.0), "p50": percentile(50.0),
            "p75": percentile(75.0), "p90": percentile(90.0), "p99": percentile(99.0),
        }),
        top: rows
            .iter()
            .map(|row| {
                Ok::<_, sqlx::Error>(TopMember {
                    name: row.try_get("name")?,
                    external_id: row.try_get("external_id")?,
                    scores: fit.explain(from_row(row)?),
                })
            })
            .collect::<Result<_, _>>()?,
        value_unavailable_reason: (without > 0).then(|| fit.value_reason.clone()).flatten(),
        fit: fit.info,
        model_quality: fit.model_quality,
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
    /// The last fit's quality, or null before the first fit.
    #[schema(value_type = Option<Object>)]
    pub model_quality: Value,
}

/// Monthly acquisition cohorts × month-by-month retention and revenue (from the last scoring
/// run).
#[utoipa::path(get, path = "/v1/analytics/cohorts", tag = "analytics",
    responses((status = 200, body = CohortTable)), security(("api_key" = [])))]
async fn cohorts(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<CohortTable>> {
    let fit = last_fit(&state, &auth).await?;
    let text: Option<String> =
        sqlx::query_scalar("SELECT cohorts FROM analytics_fit WHERE tenant_id = $1")
            .bind(auth.tenant_id.as_str())
            .fetch_optional(state.db.read())
            .await?;
    Ok(Json(CohortTable {
        data: text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| Value::Array(Vec::new())),
        fit: fit.info,
        model_quality: fit.model_quality,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::model::rfm::Segment;

    #[test]
    fn the_segment_names_members_filter_by_are_the_ones_rfm_computes() {
        let computed = [
            Segment::Champions,
            Segment::Loyal,
            Segment::Potential,
            Segment::New,
            Segment::AtRisk,
            Segment::CantLose,
            Segment::Hibernating,
            Segment::Lost,
        ]
        .map(Segment::as_str);
        assert_eq!(computed, SEGMENTS);
    }
}
