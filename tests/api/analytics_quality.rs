//! Analytics that say when they cannot be trusted: a shop too young for the lifetime-value
//! models still gets RFM and lifecycle stages, and a fit on too few repeat customers says so
//! (`model_quality`) with its values null and the reason beside them.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use shequn::analytics::scoring::{fit_and_score, FitReport};
use shequn::common::ids::TenantId;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    a_shop_with_only_first_purchases_still_gets_rfm_and_lifecycle_stages,
    a_shop_with_two_repeat_customers_shows_model_quality_and_null_clv_with_a_reason,
    validate_on_two_repeat_customers_reports_the_quality_and_the_tracking,
);

async fn import_orders(app: &TestApp, rows: &[(&str, &str, &str)]) {
    let mut csv = String::from("external_member_id,ordered_at,amount,currency,items\n");
    for (member, day, amount) in rows {
        csv.push_str(&format!("{member},{day}T12:00:00+08:00,{amount},CNY,\n"));
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/orders/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], rows.len(), "{}", reply.body);
}

/// The scoring run up to the test clock's day (what the daily job and `analytics fit` do).
async fn fit(app: &TestApp) -> FitReport {
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    fit_and_score(
        &app.state.db,
        &tenant,
        &zone,
        app.clock_now().to_zoned(zone.clone()).date(),
        shequn::analytics::model::summary::TimeUnit::Week,
        app.clock_now(),
    )
    .await
    .expect("the scoring run succeeds without a model fit")
}

async fn member_id(app: &TestApp, external_id: &str) -> String {
    let list = app
        .get(&format!("/v1/members?q={external_id}&limit=10"))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["external_id"] == external_id)
        .unwrap_or_else(|| panic!("no member {external_id}: {}", list.body))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn status(quality: &Value) -> &str {
    quality["status"].as_str().unwrap_or("missing")
}

async fn a_shop_with_only_first_purchases_still_gets_rfm_and_lifecycle_stages(app: TestApp) {
    import_orders(
        &app,
        &[
            ("u1", "2026-03-01", "30"),
            ("u2", "2026-04-02", "58.5"),
            ("u3", "2026-05-03", "12"),
            ("u4", "2026-06-04", "99"),
        ],
    )
    .await;
    let report = fit(&app).await;
    assert_eq!(report.customers, 4);
    assert_eq!(report.repeat_customers, 0);
    assert!(report.bgnbd.is_none() && report.gamma_gamma.is_none());
    assert_eq!(
        report.model_quality.status,
        shequn::analytics::model::quality::QualityStatus::InsufficientData
    );

    // Every member is scored for RFM, with the model values null and explained.
    let rfm = app.get("/v1/analytics/rfm").await;
    assert_eq!(rfm.status, StatusCode::OK, "{}", rfm.body);
    let members: i64 = rfm.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["members"].as_i64().unwrap())
        .sum();
    assert_eq!(members, 4);
    assert!(rfm.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["clv"].is_null()));
    assert_eq!(status(&rfm.body["model_quality"]), "insufficient_data");
    assert!(
        rfm.body["value_unavailable_reason"].is_string(),
        "{}",
        rfm.body
    );

    let u2 = member_id(&app, "u2").await;
    let scores = app.get(&format!("/v1/members/{u2}/analytics")).await;
    assert_eq!(scores.status, StatusCode::OK, "{}", scores.body);
    let body = &scores.body;
    assert_eq!(body["frequency"], 1);
    assert!(body["r_score"].as_i64().is_some() && body["segment"].is_string());
    assert!(body["p_alive"].is_null() && body["expected_transactions_90d"].is_null());
    assert!(body["expected_order_value"].is_null() && body["clv"].is_null());
    let prediction = body["prediction_unavailable_reason"].as_str().unwrap();
    assert!(prediction.contains("0 of 4"), "{prediction}");
    assert!(body["value_unavailable_reason"].is_string());
    assert_eq!(status(&body["model_quality"]), "insufficient_data");

    // Lifecycle stages were written although no model could be fitted.
    let member = app.get(&format!("/v1/members/{u2}")).await;
    assert!(
        member.body["lifecycle_stage"].is_string(),
        "{}",
        member.body
    );
    let cohorts = app.get("/v1/analytics/cohorts").await;
    assert_eq!(cohorts.body["data"].as_array().unwrap().len(), 4);
    assert_eq!(status(&cohorts.body["model_quality"]), "insufficient_data");
}

async fn a_shop_with_two_repeat_customers_shows_model_quality_and_null_clv_with_a_reason(
    app: TestApp,
) {
    import_orders(
        &app,
        &[
            ("u1", "2026-01-05", "30"),
            ("u1", "2026-02-10", "32"),
            ("u1", "2026-04-20", "28"),
            ("u2", "2026-02-01", "50"),
            ("u2", "2026-05-01", "55"),
            ("u3", "2026-03-01", "20"),
            ("u4", "2026-03-15", "25"),
            ("u5", "2026-06-01", "40"),
        ],
    )
    .await;
    let report = fit(&app).await;
    assert_eq!((report.customers, report.repeat_customers), (5, 2));
    assert!(report.gamma_gamma.is_none(), "two spenders cannot fit it");
    assert_ne!(
        report.model_quality.status,
        shequn::analytics::model::quality::QualityStatus::Ok
    );

    let clv = app.get("/v1/analytics/clv?top=5").await;
    assert_eq!(clv.status, StatusCode::OK, "{}", clv.body);
    assert_eq!(clv.body["members"], 0, "no member has a CLV: {}", clv.body);
    assert_eq!(clv.body["members_without_clv"], 5);
    assert_eq!(clv.body["top"].as_array().unwrap().len(), 0);
    let reason = clv.body["value_unavailable_reason"].as_str().unwrap();
    assert!(reason.contains("Gamma-Gamma"), "{reason}");
    let quality = &clv.body["model_quality"];
    assert_ne!(status(quality), "ok");
    assert_eq!(status(&quality["gamma_gamma"]), "insufficient_data");
    assert!(!quality["reasons"].as_array().unwrap().is_empty());
    assert_eq!(clv.body["fit"]["result"]["gamma_gamma"], Value::Null);

    // A repeat customer: BG/NBD predictions are there, flagged; value and CLV are null.
    let u1 = member_id(&app, "u1").await;
    let scores = app.get(&format!("/v1/members/{u1}/analytics")).await;
    assert_eq!(scores.status, StatusCode::OK, "{}", scores.body);
    let body = &scores.body;
    assert_eq!(body["frequency"], 3);
    assert!(body["p_alive"].is_f64(), "{body}");
    assert!(body["prediction_unavailable_reason"].is_null());
    assert!(body["expected_order_value"].is_null() && body["clv"].is_null());
    assert!(body["value_unavailable_reason"]
        .as_str()
        .unwrap()
        .contains("Gamma-Gamma"));
    assert_eq!(body["model_quality"], *quality);
    let rfm = app.get("/v1/analytics/rfm").await;
    assert_eq!(rfm.body["model_quality"], *quality);
}

async fn validate_on_two_repeat_customers_reports_the_quality_and_the_tracking(app: TestApp) {
    import_orders(
        &app,
        &[
            ("u1", "2026-01-05", "30"),
            ("u1", "2026-02-10", "32"),
            ("u2", "2026-02-01", "50"),
            ("u2", "2026-05-01", "55"),
            ("u3", "2026-03-01", "20"),
            ("u2", "2026-06-20", "40"),
        ],
    )
    .await;
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let report = shequn::analytics::scoring::validate_holdout(
        &app.state.db,
        &tenant,
        &zone,
        "2026-03-31".parse().unwrap(),
        "2026-06-30".parse().unwrap(),
        shequn::analytics::model::summary::TimeUnit::Week,
    )
    .await
    .unwrap();
    assert_ne!(
        report.model_quality.status,
        shequn::analytics::model::quality::QualityStatus::Ok,
        "{:?}",
        report.model_quality
    );
    assert!(!report.model_quality.reasons.is_empty());
    // Weekly points from 2026-01-05 to 2026-06-30; all three repeats counted by the end.
    let last = report.tracking.last().unwrap();
    assert_eq!(last.actual, 3);
    assert!(last.holdout && !report.tracking[0].holdout);
    assert_eq!(
        report.table.total.actual_total, 2.0,
        "two repeats in the holdout"
    );
}
