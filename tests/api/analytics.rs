//! Order-history import and the lifetime-value fit, on real CDNOW data.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use shequn::common::ids::TenantId;

use crate::backend_tests;
use crate::support::{Reply, TestApp};

backend_tests!(
    cdnow_sample_import_and_fit_reproduce_the_published_estimates,
    csv_order_import_creates_members_and_reports_bad_rows,
    a_csv_imported_twice_creates_each_order_once,
    a_row_repeated_inside_one_file_is_a_repeat,
    rows_with_an_order_id_are_the_same_order_when_the_id_is,
    on_duplicate_error_reports_repeats_as_row_errors,
    amount_fen_is_accepted_and_must_agree_with_amount,
    the_cdnow_sample_imported_twice_leaves_the_same_orders_and_fit,
    orders_imported_before_keys_existed_are_not_imported_again,
    concurrent_imports_of_one_file_create_each_order_once,
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
    // The top list says who they are: the imported CDNOW customer ids are external ids.
    let member = app.get(&format!("/v1/members/{best}")).await;
    assert_eq!(
        top[0]["external_id"], member.body["external_id"],
        "{}",
        clv.body
    );
    assert!(top[0]["external_id"].is_string(), "{}", clv.body);
    assert!(top[0].get("name").is_some(), "{}", clv.body);
    for bad in ["0", "101", "-1"] {
        let refused = app.get(&format!("/v1/analytics/clv?top={bad}")).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            refused.body["error"]["details"]["field"], "top",
            "{}",
            refused.body
        );
    }
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
    let report = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
    assert_eq!(
        report.repurchase_reminders, 0,
        "not yet: the 28th in Shanghai"
    );
    app.clock.set("2026-03-28T09:00:00+08:00".parse().unwrap());
    let report = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
    assert_eq!(
        report.repurchase_reminders, 1,
        "a's soy; b did not consent; tea is past"
    );
    let again = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
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

// Importing again (issue 16 item 3): each order once, whichever way it comes back.

async fn order_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM customer_order WHERE tenant_id = $1")
        .bind(&app.tenant_id)
        .fetch_one(app.state.db.read())
        .await
        .unwrap()
}

/// Members with orders, and the money of all orders.
async fn totals(app: &TestApp) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COUNT(DISTINCT member_id), CAST(SUM(total) AS BIGINT) FROM customer_order \
         WHERE tenant_id = $1",
    )
    .bind(&app.tenant_id)
    .fetch_one(app.state.db.read())
    .await
    .unwrap()
}

fn counts(reply: &Reply) -> (i64, i64, i64) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    (
        reply.body["created"].as_i64().unwrap(),
        reply.body["skipped"].as_i64().unwrap(),
        reply.body["error_count"].as_i64().unwrap(),
    )
}

fn error_lines(reply: &Reply) -> Vec<(i64, String)> {
    reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_i64().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn a_csv_imported_twice_creates_each_order_once(app: TestApp) {
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               u1,2026-01-05,29.90,CNY,soy-milk:2|cup\n\
               u1,2026-01-06T10:00:00+08:00,12,CNY,\n\
               u2,2026-01-06T10:00:00+08:00,12,CNY,\n";
    let first = import(&app, "", csv.to_owned()).await;
    assert_eq!(counts(&first), (3, 0, 0), "{}", first.body);
    assert_eq!(first.body["members_created"], 2);
    let again = import(&app, "", csv.to_owned()).await;
    assert_eq!(counts(&again), (0, 3, 0), "{}", again.body);
    assert_eq!(again.body["members_created"], 0);
    assert_eq!(order_count(&app).await, 3);
    // The same orders written another way: columns reordered, the instant in UTC, the date as
    // an instant, fen instead of yuan, the items reordered and split, the currency implied.
    let rewritten = "items,amount_fen,ordered_at,external_member_id\n\
                     cup|soy-milk|soy-milk,2990,2026-01-04T16:00:00Z,u1\n\
                     ,1200,2026-01-06T02:00:00Z,u1\n\
                     ,1200,2026-01-06T02:00:00Z,u2\n";
    let third = import(&app, "", rewritten.to_owned()).await;
    assert_eq!(counts(&third), (0, 3, 0), "{}", third.body);
    assert_eq!(order_count(&app).await, 3);
    // One part different is another order.
    let other = "external_member_id,ordered_at,amount,currency,items\n\
                 u1,2026-01-05,29.91,CNY,soy-milk:2|cup\n\
                 u1,2026-01-05,29.90,CNY,soy-milk:3|cup\n";
    assert_eq!(counts(&import(&app, "", other.to_owned()).await), (2, 0, 0));
    assert_eq!(order_count(&app).await, 5);
}

async fn a_row_repeated_inside_one_file_is_a_repeat(app: TestApp) {
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               u1,2026-01-05,10,CNY,tea\n\
               u2,2026-01-05,10,CNY,tea\n\
               u1,2026-01-05,10.00,CNY,tea:1\n";
    let reply = import(&app, "", csv.to_owned()).await;
    assert_eq!(counts(&reply), (2, 1, 0), "{}", reply.body);
    assert_eq!(order_count(&app).await, 2);
    // As an error it names the line it repeats.
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               u3,2026-01-07,10,CNY,\n\
               u3,2026-01-07,10,CNY,\n";
    let reply = import(&app, "?on_duplicate=error", csv.to_owned()).await;
    assert_eq!(counts(&reply), (1, 0, 1), "{}", reply.body);
    let errors = error_lines(&reply);
    assert_eq!(errors[0].0, 3, "{errors:?}");
    assert!(errors[0].1.contains("repeats line 2"), "{errors:?}");
    assert_eq!(order_count(&app).await, 3);
}

async fn rows_with_an_order_id_are_the_same_order_when_the_id_is(app: TestApp) {
    let csv = "order_id,external_member_id,ordered_at,amount,currency,items\n\
               T-1,u1,2026-01-05,10,CNY,tea\n\
               T-2,u1,2026-01-05,10,CNY,tea\n";
    let reply = import(&app, "", csv.to_owned()).await;
    assert_eq!(
        counts(&reply),
        (2, 0, 0),
        "two ids, two orders, though alike: {}",
        reply.body
    );
    // The id wins: T-1 again with other fields (even another member, who is then not
    // created) is the order imported already; T-1 twice in one file is once.
    let changed = "order_id,external_member_id,ordered_at,amount,currency,items\n\
                   T-1,u1,2026-02-01,99,CNY,coffee:3\n\
                   T-1,u9,2026-01-05,10,CNY,tea\n\
                   T-3,u2,2026-01-05,10,CNY,tea\n\
                   T-3,u2,2026-01-05,10,CNY,tea\n";
    let reply = import(&app, "", changed.to_owned()).await;
    assert_eq!(counts(&reply), (1, 3, 0), "{}", reply.body);
    assert_eq!(reply.body["members_created"], 1, "u2 only: {}", reply.body);
    let kept: (i64, String) = sqlx::query_as(
        "SELECT total, items FROM customer_order WHERE tenant_id = $1 AND external_reference = 'T-1'",
    )
    .bind(&app.tenant_id)
    .fetch_one(app.state.db.read())
    .await
    .unwrap();
    assert_eq!(kept.0, 1000, "the first import's order is kept as it was");
    assert_eq!(order_count(&app).await, 3);
    // A row without an id never matches one with an id.
    let no_id = "external_member_id,ordered_at,amount,currency,items\n\
                 u1,2026-01-05,10,CNY,tea\n";
    assert_eq!(counts(&import(&app, "", no_id.to_owned()).await), (1, 0, 0));
    // The id is the order's external_reference: the JSON route knows it was ingested.
    let member: String =
        sqlx::query_scalar("SELECT id FROM member WHERE tenant_id = $1 AND external_id = 'u1'")
            .bind(&app.tenant_id)
            .fetch_one(app.state.db.read())
            .await
            .unwrap();
    let product = app
        .post(
            "/v1/products",
            &serde_json::json!({"name": "tea", "sku": "tea", "price": 1000, "stock": 10}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let json = app
        .post(
            "/v1/orders",
            &serde_json::json!({"member_id": member, "source": "external",
                "items": [{"product_id": product.body["id"], "qty": 1}],
                "paid_at": "2026-01-05T10:00:00+08:00", "external_reference": "T-1"}),
        )
        .await;
    assert_eq!(json.status, StatusCode::CONFLICT, "{}", json.body);
    assert_eq!(json.body["error"]["code"], "order_exists");
}

async fn on_duplicate_error_reports_repeats_as_row_errors(app: TestApp) {
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               u1,2026-01-05,10,CNY,\n\
               u2,2026-01-05,20,CNY,\n";
    assert_eq!(counts(&import(&app, "", csv.to_owned()).await), (2, 0, 0));
    let more = format!("{csv}u3,2026-01-05,30,CNY,\nu4,not-a-date,1,CNY,\n");
    let reply = import(&app, "?on_duplicate=error", more.clone()).await;
    assert_eq!(
        counts(&reply),
        (1, 0, 3),
        "the new row is kept: {}",
        reply.body
    );
    let errors = error_lines(&reply);
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        [2, 3, 5],
        "{errors:?}"
    );
    assert!(errors[0].1.contains("imported already"), "{errors:?}");
    assert!(errors[2].1.starts_with("ordered_at"), "{errors:?}");
    assert_eq!(order_count(&app).await, 3);
    let skip = import(&app, "?on_duplicate=skip", more).await;
    assert_eq!(counts(&skip), (0, 3, 1), "{}", skip.body);
    let bad = import(&app, "?on_duplicate=ignore", csv.to_owned()).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "on_duplicate");

    // The command line takes the same choice.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.csv");
    std::fs::write(&file, csv).unwrap();
    let run = |mode: &str| {
        crate::support::shequn(
            &app.database_url,
            &[
                "orders",
                "import",
                "--tenant",
                &app.tenant_id,
                "--on-duplicate",
                mode,
                file.to_str().unwrap(),
            ],
        )
    };
    let (code, out, err) = run("error");
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            &report["created"],
            &report["skipped"],
            &report["error_count"]
        ),
        (&0.into(), &0.into(), &2.into()),
        "the file's rows were imported over HTTP already: {out}"
    );
    let (code, out, err) = run("skip");
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["skipped"], 2, "{out}");
    let (code, _, err) = run("maybe");
    assert_ne!(code, 0);
    assert!(err.contains("on-duplicate"), "{err}");
    assert_eq!(order_count(&app).await, 3);
}

async fn amount_fen_is_accepted_and_must_agree_with_amount(app: TestApp) {
    let csv = "external_member_id,ordered_at,amount,amount_fen,currency,items\n\
               u1,2026-01-05,29.90,2990,CNY,\n\
               u2,2026-01-05,,1500,CNY,\n\
               u3,2026-01-05,7.5,,CNY,\n\
               u4,2026-01-05,10,999,CNY,\n\
               u5,2026-01-05,,,CNY,\n\
               u6,2026-01-05,,12.5,CNY,\n";
    let reply = import(&app, "", csv.to_owned()).await;
    assert_eq!(counts(&reply), (3, 0, 3), "{}", reply.body);
    let errors = error_lines(&reply);
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        [5, 6, 7],
        "{errors:?}"
    );
    assert!(
        errors[0].1.contains("amount_fen") && errors[0].1.contains("1000"),
        "{errors:?}"
    );
    let totals: Vec<i64> =
        sqlx::query_scalar("SELECT total FROM customer_order WHERE tenant_id = $1 ORDER BY total")
            .bind(&app.tenant_id)
            .fetch_all(app.state.db.read())
            .await
            .unwrap();
    assert_eq!(totals, [750, 1500, 2990]);
    // A file with only fen.
    let fen_only = "external_member_id,ordered_at,amount_fen\nu7,2026-01-06,42\n";
    assert_eq!(
        counts(&import(&app, "", fen_only.to_owned()).await),
        (1, 0, 0)
    );
    for header in [
        "external_member_id,ordered_at,currency\nu8,2026-01-06,CNY\n",
        "external_member_id,ordered_at,amount,price\nu8,2026-01-06,1,2\n",
    ] {
        let refused = import(&app, "", header.to_owned()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    }
}

async fn the_cdnow_sample_imported_twice_leaves_the_same_orders_and_fit(app: TestApp) {
    let sample = cdnow("CDNOW_sample.txt");
    let first = import(&app, "?format=cdnow", sample.clone()).await;
    // The sample holds 21 lines alike in customer, day, CDs and dollars: they are separate
    // purchases (the published estimates count them) and stay 21 orders.
    assert_eq!(counts(&first), (6919, 0, 0), "{}", first.body);
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let end: jiff::civil::Date = "1997-09-30".parse().unwrap();
    let fit = || {
        shequn::analytics::scoring::fit_and_score(
            &app.state.db,
            &tenant,
            &zone,
            end,
            shequn::analytics::model::summary::TimeUnit::Week,
            app.clock_now(),
        )
    };
    let before = fit().await.unwrap();
    let sums_before = totals(&app).await;
    assert_eq!(sums_before.0, 2357);
    let again = import(&app, "?format=cdnow", sample).await;
    assert_eq!(counts(&again), (0, 6919, 0), "{}", again.body);
    assert_eq!(again.body["members_created"], 0);
    assert_eq!(order_count(&app).await, 6919);
    assert_eq!(
        totals(&app).await,
        sums_before,
        "the same customers and money"
    );
    let after = fit().await.unwrap();
    let (b, a) = (before.bgnbd.unwrap(), after.bgnbd.unwrap());
    assert_eq!((b.r, b.alpha, b.a, b.b), (a.r, a.alpha, a.a, a.b));
    let (b, a) = (before.gamma_gamma.unwrap(), after.gamma_gamma.unwrap());
    assert_eq!((b.p, b.q, b.gamma), (a.p, a.q, a.gamma));
    assert!(close(a.gamma, 15.44, 0.01), "{a:?}");
}

async fn orders_imported_before_keys_existed_are_not_imported_again(app: TestApp) {
    let csv = "external_member_id,ordered_at,amount,currency,items\n\
               u1,2026-01-05,10,CNY,tea:2\n\
               u1,2026-01-06,10,CNY,tea:2\n\
               u2,2026-01-05,10,CNY,\n";
    assert_eq!(counts(&import(&app, "", csv.to_owned()).await), (3, 0, 0));
    // As the orders of an import before migration 0017: no key.
    sqlx::query("UPDATE customer_order SET import_key = NULL WHERE tenant_id = $1")
        .bind(&app.tenant_id)
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();
    let more = format!("{csv}u2,2026-01-07,11,CNY,\n");
    let reply = import(&app, "", more.clone()).await;
    assert_eq!(counts(&reply), (1, 3, 0), "{}", reply.body);
    assert_eq!(order_count(&app).await, 4);
    let keyed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM customer_order WHERE tenant_id = $1 AND import_key IS NOT NULL",
    )
    .bind(&app.tenant_id)
    .fetch_one(app.state.db.read())
    .await
    .unwrap();
    assert_eq!(keyed, 4, "the old orders took the keys of their rows");
    assert_eq!(counts(&import(&app, "", more).await), (0, 4, 0));
    assert_eq!(order_count(&app).await, 4);
}

async fn concurrent_imports_of_one_file_create_each_order_once(app: TestApp) {
    let mut csv = String::from("external_member_id,ordered_at,amount,currency,items\n");
    for n in 0..400 {
        csv.push_str(&format!(
            "c{},2026-01-{:02},{}.50,CNY,tea:{}\n",
            n % 150,
            n % 28 + 1,
            n,
            n % 3 + 1
        ));
    }
    let (one, two, three) = tokio::join!(
        import(&app, "", csv.clone()),
        import(&app, "", csv.clone()),
        import(&app, "", csv.clone())
    );
    let replies = [counts(&one), counts(&two), counts(&three)];
    let created: i64 = replies.iter().map(|r| r.0).sum();
    let skipped: i64 = replies.iter().map(|r| r.1).sum();
    assert_eq!((created, skipped), (400, 800), "{replies:?}");
    assert!(replies.iter().all(|r| r.2 == 0), "{replies:?}");
    assert_eq!(order_count(&app).await, 400);
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM member WHERE tenant_id = $1")
        .bind(&app.tenant_id)
        .fetch_one(app.state.db.read())
        .await
        .unwrap();
    assert_eq!(members, 150);
}
