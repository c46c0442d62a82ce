//! Order-history import and the lifetime-value fit, on real CDNOW data.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use shequn::common::ids::TenantId;

use crate::backend_tests;
use crate::support::{Reply, TestApp};

backend_tests!(
    cdnow_sample_import_and_fit_reproduce_the_published_estimates,
    csv_order_import_creates_members_and_reports_bad_rows,
    products_are_created_read_changed_and_listed,
    repurchase_is_predicted_and_reminded_once_to_consenting_members,
    the_daily_job_refreshes_scores_off_the_request_path,
);

fn cdnow(file: &str) -> String {
    // As the model's unit tests: `CDNOW_DIR` when set, else the shared data beside the checkout.
    let dir = std::env::var("CDNOW_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cdnow").to_owned()
    });
    let path = format!("{dir}/{file}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

async fn import(app: &TestApp, query: &str, body: String) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/orders/import{query}"))
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    ((got - want) / want).abs() < tolerance
}

async fn cdnow_sample_import_and_fit_reproduce_the_published_estimates(app: TestApp) {
    let reply = import(&app, "?format=cdnow", cdnow("CDNOW_sample.txt")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["created"], 6919);
    assert_eq!(reply.body["members_created"], 2357);
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let end: jiff::civil::Date = "1997-09-30".parse().unwrap();
    let report = shequn::analytics::scoring::fit_and_score(
        &app.state.db,
        &tenant,
        &zone,
        end,
        shequn::analytics::model::summary::TimeUnit::Week,
        app.clock_now(),
    )
    .await
    .unwrap();
    // Fader, Hardie & Lee (2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4;
    // Gamma-Gamma p = 6.25, q = 3.74, gamma = 15.44.
    assert_eq!(report.customers, 2357);
    let bg = report.bgnbd.as_ref().unwrap();
    assert!(
        close(bg.r, 0.243, 0.005) && close(bg.alpha, 4.414, 0.005),
        "{bg:?}"
    );
    assert!(
        close(bg.a, 0.793, 0.005) && close(bg.b, 2.426, 0.005),
        "{bg:?}"
    );
    assert!((bg.log_likelihood + 9582.4).abs() < 0.5, "{bg:?}");
    assert!(bg.converged);
    let gg = report.gamma_gamma.as_ref().unwrap();
    assert!(
        close(gg.p, 6.25, 0.01) && close(gg.q, 3.74, 0.01) && close(gg.gamma, 15.44, 0.01),
        "{gg:?}"
    );
    let scored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM member_score WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_one(app.state.db.read())
        .await
        .unwrap();
    assert_eq!(scored, 2357, "every customer is scored");

    // The reads: segments add up, the CLV distribution is ordered, a member has scores.
    let rfm = app.get("/v1/analytics/rfm").await;
    assert_eq!(rfm.status, StatusCode::OK);
    let segments = rfm.body["data"].as_array().unwrap();
    assert_eq!(segments.len(), 8);
    let total: i64 = segments
        .iter()
        .map(|s| s["members"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2357);
    assert_eq!(rfm.body["fit"]["calibration_end"], "1997-09-30");
    assert_eq!(rfm.body["model_quality"]["status"], "ok", "{}", rfm.body);
    let clv = app.get("/v1/analytics/clv?top=5").await;
    let p = &clv.body["percentiles"];
    assert!(p["p10"].as_i64() <= p["p50"].as_i64() && p["p50"].as_i64() <= p["p99"].as_i64());
    let top = clv.body["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert!(top[0]["clv"].as_i64() >= top[4]["clv"].as_i64());
    let best = top[0]["member_id"].as_str().unwrap();
    let mine = app.get(&format!("/v1/members/{best}/analytics")).await;
    assert_eq!(mine.status, StatusCode::OK);
    let p_alive = mine.body["p_alive"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p_alive));
    assert!(
        mine.body["expected_transactions_365d"].as_f64()
            >= mine.body["expected_transactions_30d"].as_f64()
    );
    let champions = app.get("/v1/members?rfm_segment=champions&limit=200").await;
    assert_eq!(champions.status, StatusCode::OK);
    let count = segments
        .iter()
        .find(|s| s["segment"] == "champions")
        .unwrap()["members"]
        .as_i64()
        .unwrap();
    assert_eq!(
        champions.body["data"].as_array().unwrap().len() as i64,
        count.min(200)
    );
    assert_eq!(
        app.get("/v1/members?rfm_segment=vip").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn csv_order_import_creates_members_and_reports_bad_rows(app: TestApp) {
    let existing = app.member("u1").await;
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               u1,2026-01-05,29.90,CNY,soy-milk:2\n\
               u2,2026-01-06T10:00:00+08:00,100,,\n\
               u3,not-a-date,1,CNY,\n\
               u4,2026-01-07,-5,CNY,\n\
               u5,2026-01-07,1.234,CNY,\n\
               ,2026-01-07,1,CNY,\n";
    let reply = import(&app, "", csv.to_owned()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["created"], 2);
    assert_eq!(reply.body["members_created"], 1, "u1 existed, u2 is new");
    let lines: Vec<i64> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5, 6, 7]);
    let orders: Vec<(String, i64)> = sqlx::query_as(
        "SELECT member_id, total FROM customer_order WHERE tenant_id = $1 ORDER BY total",
    )
    .bind(&app.tenant_id)
    .fetch_all(app.state.db.read())
    .await
    .unwrap();
    assert_eq!(
        orders[0],
        (existing, 2990),
        "29.90 yuan = 2990 fen, exactly"
    );
    assert_eq!(orders[1].1, 10000);
    let bad_header = import(&app, "", "member,amount\nx,1\n".to_owned()).await;
    assert_eq!(bad_header.status, StatusCode::BAD_REQUEST);
    let bad_format = import(&app, "?format=xml", String::new()).await;
    assert_eq!(bad_format.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unscored = app
        .get(&format!("/v1/members/{}/analytics", orders[0].0))
        .await;
    assert_eq!(unscored.status, StatusCode::NOT_FOUND);
    assert_eq!(unscored.body["error"]["code"], "not_scored");
}

async fn products_are_created_read_changed_and_listed(app: TestApp) {
    let body = serde_json::json!({"name": "豆浆粉 500g", "sku": "soy-500", "price": 5900, "member_price": 4900,
                                  "stock": 100, "days_of_supply": 30, "launch_at": "2026-12-01T20:00:00+08:00"});
    let created = app.post("/v1/products", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["days_of_supply"], 30);
    assert_eq!(created.body["launch_at"], "2026-12-01T12:00:00Z");
    assert_eq!(
        app.post("/v1/products", &body).await.status,
        StatusCode::CONFLICT,
        "sku is unique"
    );
    let mut bad = body.clone();
    bad["sku"] = "x".into();
    bad["price"] = (-1).into();
    let reply = app.post("/v1/products", &bad).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["details"]["field"], "price");
    let patched = app
        .patch(
            &format!("/v1/products/{id}"),
            &serde_json::json!({"days_of_supply": null, "stock": 5}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(patched.body["days_of_supply"], serde_json::Value::Null);
    assert_eq!(patched.body["stock"], 5);
    assert_eq!(patched.body["member_price"], 4900, "absent fields stay");
    let list = app.get("/v1/products").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let (_, other) = app.other_tenant().await;
    let theirs = app
        .send(crate::support::build(
            Method::GET,
            &format!("/v1/products/{id}"),
            Some(&other),
            None,
            None,
        ))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
}

async fn repurchase_is_predicted_and_reminded_once_to_consenting_members(app: TestApp) {
    app.post(
        "/v1/members",
        &serde_json::json!({"external_id": "a", "consent": {"marketing": true}}),
    )
    .await;
    app.post("/v1/members", &serde_json::json!({"external_id": "b"}))
        .await;
    app.post(
        "/v1/products",
        &serde_json::json!({"name": "soy", "sku": "soy", "price": 100, "days_of_supply": 30}),
    )
    .await;
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               a,2026-03-01,59,CNY,soy:1\n\
               a,2026-01-01,20,CNY,tea:1\n\
               a,2026-01-11,20,CNY,tea:1\n\
               a,2026-01-31,20,CNY,tea:1\n\
               b,2026-03-01,59,CNY,soy:1\n";
    assert_eq!(import(&app, "", csv.to_owned()).await.body["created"], 5);
    let members = app.get("/v1/members").await;
    let a = members.body["data"][0]["id"].as_str().unwrap().to_owned();
    let reply = app.get(&format!("/v1/members/{a}/repurchase")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let list = reply.body["data"].as_array().unwrap();
    assert_eq!(list[0]["sku"], "tea");
    assert_eq!(list[0]["predicted_next"], "2026-02-10");
    assert_eq!(list[0]["basis"], "own_interval");
    assert_eq!(list[1]["sku"], "soy");
    assert_eq!(list[1]["predicted_next"], "2026-03-31");
    assert_eq!(list[1]["basis"], "days_of_supply");
    assert_eq!(list[1]["remind_on"], "2026-03-28");

    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    app.clock.set("2026-03-27T23:59:00+08:00".parse().unwrap());
    let report = shequn::membership::program::run_daily(&app.state, &tenant)
        .await
        .unwrap();
    assert_eq!(
        report.repurchase_reminders, 0,
        "not yet: the 28th in Shanghai"
    );
    app.clock.set("2026-03-28T09:00:00+08:00".parse().unwrap());
    let report = shequn::membership::program::run_daily(&app.state, &tenant)
        .await
        .unwrap();
    assert_eq!(
        report.repurchase_reminders, 1,
        "a's soy; b did not consent; tea is past"
    );
    let again = shequn::membership::program::run_daily(&app.state, &tenant)
        .await
        .unwrap();
    assert_eq!(again.repurchase_reminders, 0, "once per predicted date");
    let events = app.get("/v1/events?type=member.repurchase_due").await;
    let data = events.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["subject"], a.as_str());
    assert_eq!(data[0]["data"]["sku"], "soy");
}

async fn the_daily_job_refreshes_scores_off_the_request_path(app: TestApp) {
    let reply = import(&app, "?format=cdnow", cdnow("CDNOW_sample.txt")).await;
    assert_eq!(reply.body["created"], 6919);
    assert_eq!(
        app.get("/v1/analytics/rfm").await.body["fit"],
        serde_json::Value::Null,
        "not scored yet"
    );
    // The import scheduled the tenant's daily run for the next local midnight.
    app.clock.advance(jiff::SignedDuration::from_hours(48));
    let ran = shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert!(ran >= 1);
    let rfm = app.get("/v1/analytics/rfm").await;
    assert_eq!(rfm.body["fit"]["customers"], 2357);
    let total: i64 = rfm.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["members"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2357);
}
