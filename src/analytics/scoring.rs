//! The scoring run: load a tenant's paid orders, fit BG/NBD and Gamma-Gamma over a calibration
//! window, and store per member P(alive), expected transactions in the next 30/90/365 days,
//! expected order value, CLV and RFM scores with their segment. Heavy work stays off the
//! request path (CLI and scheduler); the API reads the stored rows.
//!
//! Conventions (those of the literature, see [`super::model::summary`]): purchases on the same
//! local day are one transaction, the calibration end is inclusive, recency and T are whole
//! days between calendar dates (divided by 7 in weeks), and Gamma-Gamma sees average repeat
//! order values in major units.

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::json;
use sqlx::Row as _;

use super::model::bgnbd::{self, BgNbdFit, BgNbdParams, Observation};
use super::model::gamma_gamma::{self, GammaGammaFit, SpendObservation};
use super::model::quality::{self, FitOutcome, ModelQuality, Quality};
use super::model::summary::{self, CustomerSummary, Day, Purchase, TimeUnit};
use super::model::{clv, rfm, validate, Error};
use crate::common::db::{Db, Tx};
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::common::sql::{Arg, Sql};
use crate::common::time::{from_micros, to_micros};

/// Order statuses that count as purchases.
pub const PURCHASE_STATUSES: &str = "('paid', 'fulfilled', 'completed')";
/// CLV horizon and monthly discount rate used by the stored scores.
pub const CLV_MONTHS: u32 = 12;
pub const MONTHLY_DISCOUNT: f64 = 0.01;

#[derive(Debug, Clone, Serialize)]
pub struct BgNbdResult {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub log_likelihood: f64,
    /// False when the optimiser stopped at its limit (the data sit at a boundary of the
    /// model); the parameters are the best found.
    pub converged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GammaGammaResult {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// Why stored values are null (each `None` when those values are present).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unavailable {
    /// Why `p_alive` and the expected transactions are null: BG/NBD could not be fitted.
    pub prediction: Option<String>,
    /// Why `expected_order_value` and `clv` are null: Gamma-Gamma (or BG/NBD, which CLV also
    /// needs) could not be fitted, or gives no value for some members.
    pub value: Option<String>,
}

/// What `shequn analytics fit` prints, and what the reads show as `fit.result`.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub customers: usize,
    /// Customers with at least one repeat purchase in the calibration window.
    pub repeat_customers: usize,
    /// Null when BG/NBD could not be fitted (no repeat customer, or no maximum found).
    pub bgnbd: Option<BgNbdResult>,
    /// Null when Gamma-Gamma could not be fitted.
    pub gamma_gamma: Option<GammaGammaResult>,
    /// Whether the fit can be trusted; see [`quality`].
    pub model_quality: ModelQuality,
    pub unavailable: Unavailable,
}

fn day_of(date: Date) -> anyhow::Result<Day> {
    Day::from_ymd(
        i32::from(date.year()),
        date.month() as u32,
        date.day() as u32,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every purchase of the tenant, dated by the tenant's local day.
pub async fn purchases(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
) -> anyhow::Result<Vec<Purchase<String>>> {
    let rows = sqlx::query(&format!(
        "SELECT member_id, ordered_at, total FROM customer_order \
         WHERE tenant_id = $1 AND status IN {PURCHASE_STATUSES}"
    ))
    .bind(tenant_id.as_str())
    .fetch_all(db.read())
    .await?;
    rows.iter()
        .map(|row| {
            let date = from_micros(row.try_get("ordered_at")?)
                .to_zoned(zone.clone())
                .date();
            Ok(Purchase {
                customer: row.try_get::<String, _>("member_id")?,
                day: day_of(date)?,
                amount_cents: row.try_get("total")?,
            })
        })
        .collect()
}

/// BG/NBD over the calibration observations, with its verdict. Too little data is not an
/// error: the run still stores RFM and lifecycle stages, and says why predictions are missing.
pub fn fit_bgnbd(observations: &[Observation]) -> anyhow::Result<(Option<BgNbdFit>, Quality)> {
    let repeat_customers = observations.iter().filter(|o| o.frequency > 0).count();
    let (fit, outcome) = match bgnbd::fit(observations) {
        Ok(fit) => (
            Some(fit),
            FitOutcome::Fitted {
                params: fit.params,
                converged: fit.converged,
            },
        ),
        Err(Error::NotEnoughData(_)) => (None, FitOutcome::NotFitted),
        Err(Error::NoConvergence(_)) => (None, FitOutcome::Failed),
        Err(e) => anyhow::bail!("BG/NBD fit: {e}"),
    };
    let verdict = quality::bgnbd_quality(observations.len(), repeat_customers, outcome);
    Ok((fit, verdict))
}

/// Gamma-Gamma over the repeat customers with a positive average repeat value, with its
/// verdict; not attempted below [`quality::MIN_REPEAT_CUSTOMERS`] of them.
fn fit_gamma_gamma(
    spends: &[SpendObservation],
) -> anyhow::Result<(Option<GammaGammaFit>, Quality)> {
    let (fit, outcome) = if spends.len() < quality::MIN_REPEAT_CUSTOMERS {
        (None, FitOutcome::NotFitted)
    } else {
        match gamma_gamma::fit(spends) {
            Ok(fit) => (
                Some(fit),
                FitOutcome::Fitted {
                    params: fit.params,
                    converged: true,
                },
            ),
            Err(Error::NotEnoughData(_)) => (None, FitOutcome::NotFitted),
            Err(Error::NoConvergence(_)) => (None, FitOutcome::Failed),
            Err(e) => anyhow::bail!("Gamma-Gamma fit: {e}"),
        }
    };
    Ok((fit, quality::gamma_gamma_quality(spends.len(), outcome)))
}

fn joined(quality: &Quality) -> String {
    quality.reasons.join("; ")
}

/// Fit both models over the calibration window, score every customer, store the results.
///
/// RFM and lifecycle stages need no model: they are stored even when neither model can be
/// fitted (a new shop whose customers have bought once), with the model values null and the
/// reason in [`FitReport::unavailable`] and [`FitReport::model_quality`].
///
/// The database work (reading the orders and referrals, storing the scores) stays on the async
/// workers; the fit and the scoring, seconds of CPU on a large tenant, run on Tokio's blocking
/// pool ([`score`]), so that they never stall the requests sharing the runtime.
pub async fn fit_and_score(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    calibration_end: Date,
    unit: TimeUnit,
    now: jiff::Timestamp,
) -> anyhow::Result<FitReport> {
    let purchases = purchases(db, tenant_id, zone).await?;
    let advocates = advocates(db, tenant_id).await?;
    let today = day_of(now.to_zoned(zone.clone()).date())?;
    let scored = tokio::task::spawn_blocking(move || {
        score(&purchases, &advocates, calibration_end, unit, today)
    })
    .await
    .map_err(|e| anyhow::anyhow!("the model fit stopped: {e}"))??;
    store(db, tenant_id, &scored, calibration_end, unit, now).await?;
    Ok(scored.report)
}

/// What [`score`] computed, for [`store`].
struct Scored {
    report: FitReport,
    scores: Vec<Score>,
    cohorts: Vec<super::lifecycle::Cohort>,
    stages: Vec<(String, &'static str)>,
}

/// The CPU part of [`fit_and_score`], no I/O: fit both models over the calibration window and
/// score every customer; RFM, cohorts and lifecycle stages (as of `today`, advocates marked).
fn score(
    purchases: &[Purchase<String>],
    advocates: &std::collections::HashSet<String>,
    calibration_end: Date,
    unit: TimeUnit,
    today: Day,
) -> anyhow::Result<Scored> {
    let end = day_of(calibration_end)?;
    let summaries =
        summary::calibration_summary(purchases, end, unit).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        !summaries.is_empty(),
        "no purchases on or before {calibration_end}"
    );
    let observations: Vec<Observation> = summaries.iter().map(|s| s.observation()).collect();
    let fits = Fits::fit(&summaries, &observations)?;
    let rfm_rows = rfm::rfm_table(purchases, end).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (scores, values_missing) = member_scores(&summaries, &rfm_rows, &fits, unit);
    let report = fits.report(&summaries, &observations, values_missing);
    let cohorts = super::lifecycle::cohorts(purchases);
    let stages = advocated_stages(purchases, advocates, today);
    Ok(Scored {
        report,
        scores,
        cohorts,
        stages,
    })
}

/// Both models' fits over the calibration window (each `None` when it could not be fitted),
/// with their verdicts.
struct Fits {
    bg: Option<BgNbdFit>,
    bg_quality: Quality,
    gg: Option<GammaGammaFit>,
    gg_quality: Quality,
}

impl Fits {
    fn fit(
        summaries: &[CustomerSummary<String>],
        observations: &[Observation],
    ) -> anyhow::Result<Self> {
        let (bg, bg_quality) = fit_bgnbd(observations)?;
        // Gamma-Gamma needs repeat customers with a positive average value.
        let spends: Vec<SpendObservation> = summaries
            .iter()
            .filter_map(|s| s.spend())
            .filter(|s| s.mean_value > 0.0)
            .collect();
        let (gg, gg_quality) = fit_gamma_gamma(&spends)?;
        Ok(Fits {
            bg,
            bg_quality,
            gg,
            gg_quality,
        })
    }

    /// One customer's model values.
    fn predict(&self, s: &CustomerSummary<String>, unit: TimeUnit) -> Prediction {
        let (bg, gg) = (&self.bg, &self.gg);
        let per_unit = unit.days();
        let obs = s.observation();
        let spend = s.spend().unwrap_or(SpendObservation {
            frequency: 0,
            mean_value: 0.0,
        });
        let prediction = bg.as_ref().map(|bg| {
            let expected = |days: f64| {
                bgnbd::conditional_expected_transactions(&bg.params, &obs, days / per_unit).ok()
            };
            (
                bgnbd::probability_alive(&bg.params, &obs).ok(),
                [expected(30.0), expected(90.0), expected(365.0)],
            )
        });
        let (p_alive, expected) = prediction.unwrap_or((None, [None, None, None]));
        let value = gg
            .as_ref()
            .and_then(|g| gamma_gamma::conditional_expected_average_value(&g.params, &spend).ok());
        let lifetime = match (bg, gg) {
            (Some(b), Some(g)) => clv::customer_lifetime_value_with_spend_model(
                &b.params,
                &g.params,
                &obs,
                &spend,
                CLV_MONTHS,
                MONTHLY_DISCOUNT,
                unit,
            )
            .ok(),
            _ => None,
        };
        Prediction {
            p_alive,
            expected,
            value,
            lifetime,
        }
    }

    /// The run's report; `values_missing` when some customer got no order value or CLV.
    fn report(
        self,
        summaries: &[CustomerSummary<String>],
        observations: &[Observation],
        values_missing: bool,
    ) -> FitReport {
        let Fits {
            bg,
            bg_quality,
            gg,
            gg_quality,
        } = self;
        let unavailable = Unavailable {
            prediction: bg.is_none().then(|| joined(&bg_quality)),
            value: values_missing.then(|| {
                if gg.is_none() {
                    joined(&gg_quality)
                } else if bg.is_none() {
                    format!("CLV needs BG/NBD: {}", joined(&bg_quality))
                } else {
                    "the spend model gives no value for some members".to_owned()
                }
            }),
        };
        FitReport {
            customers: summaries.len(),
            repeat_customers: observations.iter().filter(|o| o.frequency > 0).count(),
            bgnbd: bg.as_ref().map(|bg| BgNbdResult {
                r: bg.params.r,
                alpha: bg.params.alpha,
                a: bg.params.a,
                b: bg.params.b,
                log_likelihood: bg.log_likelihood,
                converged: bg.converged,
            }),
            gamma_gamma: gg.as_ref().map(|g| GammaGammaResult {
                p: g.params.p,
                q: g.params.q,
                gamma: g.params.gamma,
            }),
            model_quality: quality::combine(bg_quality, gg_quality),
            unavailable,
        }
    }
}

/// One customer's model values, each `None` when its model is missing or gives none:
/// P(alive) and the expected transactions in the next 30/90/365 days (BG/NBD), the expected
/// order value in major units (Gamma-Gamma) and the lifetime value (both).
struct Prediction {
    p_alive: Option<f64>,
    expected: [Option<f64>; 3],
    value: Option<f64>,
    lifetime: Option<f64>,
}

/// The scores of every customer with an RFM row, and whether some customer (with or without
/// one) got no order value or CLV.
fn member_scores(
    summaries: &[CustomerSummary<String>],
    rfm_rows: &[rfm::RfmRow<String>],
    fits: &Fits,
    unit: TimeUnit,
) -> (Vec<Score>, bool) {
    let rfm_by_member: HashMap<&str, &rfm::RfmRow<String>> = rfm_rows
        .iter()
        .map(|r| (r.values.customer.as_str(), r))
        .collect();
    let mut scores = Vec::with_capacity(summaries.len());
    let mut values_missing = false;
    for s in summaries {
        let prediction = fits.predict(s, unit);
        values_missing |= prediction.value.is_none() || prediction.lifetime.is_none();
        let Some(rfm_row) = rfm_by_member.get(s.customer.as_str()) else {
            continue;
        };
        scores.push(Score::new(&s.customer, rfm_row, prediction));
    }
    (scores, values_missing)
}

/// Each customer's lifecycle stage as of `today`, advocates (see [`advocates`]) marked.
fn advocated_stages(
    purchases: &[Purchase<String>],
    advocates: &std::collections::HashSet<String>,
    today: Day,
) -> Vec<(String, &'static str)> {
    stages(purchases, today)
        .into_iter()
        .map(|(member, stage)| {
            let invited = advocates.contains(&member);
            (member, super::lifecycle::with_advocacy(stage, invited))
        })
        .collect()
}

/// One member's stored scores; the model values are `None` when their model could not be
/// fitted (see [`Unavailable`]).
struct Score {
    member_id: String,
    frequency: i64,
    recency_days: i64,
    monetary: i64,
    r: i64,
    f: i64,
    m: i64,
    segment: &'static str,
    p_alive: Option<f64>,
    expected_30: Option<f64>,
    expected_90: Option<f64>,
    expected_365: Option<f64>,
    expected_order_value: Option<i64>,
    clv: Option<i64>,
}

impl Score {
    fn new(member_id: &str, rfm_row: &rfm::RfmRow<String>, prediction: Prediction) -> Self {
        let Prediction {
            p_alive,
            expected: [expected_30, expected_90, expected_365],
            value,
            lifetime,
        } = prediction;
        Score {
            member_id: member_id.to_owned(),
            frequency: i64::from(rfm_row.values.frequency),
            recency_days: rfm_row.values.recency_days,
            monetary: rfm_row.values.monetary_cents,
            r: i64::from(rfm_row.score.r),
            f: i64::from(rfm_row.score.f),
            m: i64::from(rfm_row.score.m),
            segment: rfm_row.segment.as_str(),
            p_alive,
            expected_30,
            expected_90,
            expected_365,
            // Major units → fen, rounded to the nearest fen.
            expected_order_value: value.map(|v| (v * 100.0).round() as i64),
            clv: lifetime.map(|v| (v * 100.0).round() as i64),
        }
    }
}

/// Members with at least one qualified referral (rewards pending or paid).
async fn advocates(
    db: &Db,
    tenant_id: &TenantId,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT inviter_id FROM referral WHERE tenant_id = $1 AND status IN ($2, $3)",
    )
    .bind(tenant_id.as_str())
    .bind(crate::growth::referrals::model::ReferralStatus::Pending.as_str())
    .bind(crate::growth::referrals::model::ReferralStatus::Rewarded.as_str())
    .fetch_all(db.read())
    .await?;
    Ok(rows.into_iter().collect())
}

/// Each customer's lifecycle stage as of `today`.
fn stages(purchases: &[Purchase<String>], today: Day) -> Vec<(String, &'static str)> {
    let mut days: HashMap<&str, Vec<Day>> = HashMap::new();
    for p in purchases {
        days.entry(p.customer.as_str()).or_default().push(p.day);
    }
    let mut out: Vec<(String, &'static str)> = days
        .into_iter()
        .filter_map(|(customer, mut list)| {
            list.sort_unstable();
            list.dedup();
            let first = *list.first()?;
            let last = *list.last()?;
            let before_last = list.len().checked_sub(2).and_then(|i| list.get(i)).copied();
            Some((
                customer.to_owned(),
                super::lifecycle::stage(first, last, before_last, today),
            ))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Store one run in one transaction: the fit, every member's scores (both replacing the last
/// run's), the changed lifecycle stages, and the events.
async fn store(
    db: &Db,
    tenant_id: &TenantId,
    scored: &Scored,
    calibration_end: Date,
    unit: TimeUnit,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    let at = to_micros(now);
    let mut tx = db.begin(now).await?;
    replace_fit(&mut tx, tenant_id, scored, calibration_end, unit, at).await?;
    replace_scores(&mut tx, tenant_id, &scored.scores, at).await?;
    update_stages(&mut tx, tenant_id, &scored.stages).await?;
    let report = &scored.report;
    tx.emit(NewEvent::new(
        tenant_id,
        "analytics.scored",
        None,
        json!({
            "customers": report.customers,
            "calibration_end": calibration_end.to_string(),
            "model_quality": report.model_quality.status.as_str(),
        }),
    ));
    tx.commit().await?;
    Ok(())
}

/// The tenant's one stored fit: its report and cohorts.
async fn replace_fit(
    tx: &mut Tx,
    tenant_id: &TenantId,
    scored: &Scored,
    calibration_end: Date,
    unit: TimeUnit,
    at: i64,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM analytics_fit WHERE tenant_id = $1")
        .bind(tenant_id.as_str())
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO analytics_fit (tenant_id, calibration_end, time_unit, customers, result, cohorts, fitted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(calibration_end.to_string())
    .bind(unit_name(unit))
    .bind(scored.report.customers as i64)
    .bind(serde_json::to_string(&scored.report)?)
    .bind(serde_json::to_string(&scored.cohorts)?)
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Every member's scores in place of the last run's, a thousand rows per statement.
async fn replace_scores(
    tx: &mut Tx,
    tenant_id: &TenantId,
    scores: &[Score],
    at: i64,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM member_score WHERE tenant_id = $1")
        .bind(tenant_id.as_str())
        .execute(tx.conn())
        .await?;
    for chunk in scores.chunks(1000) {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "INSERT INTO member_score (tenant_id, member_id, frequency, recency_days, monetary, \
             r_score, f_score, m_score, segment, p_alive, expected_30, expected_90, expected_365, \
             expected_order_value, clv, scored_at) VALUES ",
        );
        sql.values(chunk, |s| {
            vec![
                Arg::from(tenant_id.as_str()),
                Arg::from(s.member_id.as_str()),
                Arg::from(s.frequency),
                Arg::from(s.recency_days),
                Arg::from(s.monetary),
                Arg::from(s.r),
                Arg::from(s.f),
                Arg::from(s.m),
                Arg::from(s.segment),
                Arg::OptF64(s.p_alive),
                Arg::OptF64(s.expected_30),
                Arg::OptF64(s.expected_90),
                Arg::OptF64(s.expected_365),
                Arg::from(s.expected_order_value),
                Arg::from(s.clv),
                Arg::from(at),
            ]
        });
        sql.query().execute(tx.conn()).await?;
    }
    Ok(())
}

/// Lifecycle stages: write the changed ones, one event per transition.
async fn update_stages(
    tx: &mut Tx,
    tenant_id: &TenantId,
    stages: &[(String, &'static str)],
) -> anyhow::Result<()> {
    let current: HashMap<String, Option<String>> =
        sqlx::query("SELECT id, lifecycle_stage FROM member WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_all(tx.conn())
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("lifecycle_stage")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let changed: Vec<(&str, &str, Option<&str>)> = stages
        .iter()
        .filter_map(|(id, stage)| {
            let before = current.get(id)?;
            (before.as_deref() != Some(*stage)).then_some((id.as_str(), *stage, before.as_deref()))
        })
        .collect();
    for chunk in changed.chunks(1000) {
        let mut sql = Sql::for_conn(
            tx.conn(),
            "UPDATE member SET lifecycle_stage = v.column2 FROM (VALUES ",
        );
        sql.values(chunk, |(id, stage, _)| {
            vec![Arg::from(*id), Arg::from(*stage)]
        });
        sql.push(") AS v WHERE member.tenant_id = ")
            .bind(tenant_id.as_str())
            .push(" AND member.id = v.column1");
        sql.query().execute(tx.conn()).await?;
    }
    for (id, stage, before) in &changed {
        tx.emit(NewEvent::new(
            tenant_id,
            "member.lifecycle_changed",
            Some(id),
            json!({ "member_id": id, "from": before, "to": stage }),
        ));
    }
    Ok(())
}

pub fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Day => "day",
        TimeUnit::Week => "week",
    }
}

pub fn parse_unit(text: &str) -> Option<TimeUnit> {
    match text {
        "day" => Some(TimeUnit::Day),
        "week" => Some(TimeUnit::Week),
        _ => None,
    }
}

/// What `shequn analytics validate` reports.
#[derive(Debug, Clone)]
pub struct HoldoutReport {
    pub params: BgNbdParams,
    pub converged: bool,
    /// The BG/NBD fit's verdict: a table from a fit that is not `ok` is no evidence.
    pub model_quality: Quality,
    pub table: validate::ValidationTable,
    /// Weekly cumulative repeat transactions, actual against predicted, from the first purchase
    /// to the holdout end.
    pub tracking: Vec<validate::TrackingPoint>,
}

/// The classic holdout table: fit on the calibration window, compare actual and predicted
/// repeat transactions in the holdout window per calibration frequency, and track cumulative
/// repeat transactions week by week through both windows.
pub async fn validate_holdout(
    db: &Db,
    tenant_id: &TenantId,
    zone: &TimeZone,
    calibration_end: Date,
    holdout_end: Date,
    unit: TimeUnit,
) -> anyhow::Result<HoldoutReport> {
    anyhow::ensure!(
        holdout_end > calibration_end,
        "the holdout must end after the calibration"
    );
    let purchases = purchases(db, tenant_id, zone).await?;
    let (end, holdout) = (day_of(calibration_end)?, day_of(holdout_end)?);
    let summaries =
        summary::calibration_summary(&purchases, end, unit).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        !summaries.is_empty(),
        "no purchases on or before {calibration_end}"
    );
    let observations: Vec<Observation> = summaries.iter().map(|s| s.observation()).collect();
    let (fit, model_quality) = fit_bgnbd(&observations)?;
    let Some(fit) = fit else {
        anyhow::bail!(
            "BG/NBD cannot be fitted, so there is nothing to validate: {}",
            joined(&model_quality)
        );
    };
    let holdout_rows = summary::holdout_summary(&purchases, end, holdout, unit)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let actual: Vec<u32> = holdout_rows.iter().map(|h| h.transactions).collect();
    let length = end.days_until(holdout) as f64 / unit.days();
    let table = validate::holdout_validation(&fit.params, &observations, &actual, length)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let days = summary::purchase_days(&purchases, end).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tracking = validate::cumulative_tracking(&fit.params, &days, end, holdout, unit)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(HoldoutReport {
        params: fit.params,
        converged: fit.converged,
        model_quality,
        table,
        tracking,
    })
}
