//! Running the day on demand (issue 16, item 5): `POST /v1/jobs/daily` and
//! `shequn jobs run-daily` run the day's program work once per tenant and date, only for owner
//! keys; `GET /v1/jobs?status=` and `shequn jobs list` show scheduled, done and failed jobs.

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};
use shequn::common::auth::KeyRole;
use shequn::common::ids::TenantId;

use crate::backend_tests;
use crate::support::{shequn, TestApp};

backend_tests!(
    the_day_runs_on_demand_once_per_date_for_owner_keys_only,
    the_cli_runs_the_day_and_lists_jobs,
    a_day_over_many_chunks_does_each_member_once,
);

async fn post_daily_with(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value) {
    let mut request = app.request(Method::POST, "/v1/jobs/daily", Some(body));
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let reply = app.send(request).await;
    (reply.status, reply.body)
}

async fn the_day_runs_on_demand_once_per_date_for_owner_keys_only(app: TestApp) {
    let tenant = TenantId::from_db(app.tenant_id.clone());
    let (_, integration) = shequn::tenants::create_key(
        &app.state.db,
        &tenant,
        KeyRole::Integration,
        app.clock_now(),
    )
    .await
    .unwrap();
    let (status, body) = post_daily_with(&app, &integration, &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "owner_key_required");
    // An integration key still does everything else.
    let (status, _) = {
        let mut request = app.request(Method::GET, "/v1/jobs", None);
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {integration}").parse().unwrap(),
        );
        let reply = app.send(request).await;
        (reply.status, reply.body)
    };
    assert_eq!(status, StatusCode::OK);

    let (status, first) = post_daily_with(&app, &app.key, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "ran", "{first}");
    assert!(first["report"]["birthday_perks"].is_number(), "{first}");
    let today = first["date"].as_str().unwrap().to_owned();
    // Once per date: a repeat (also with the date spelled out) answers with the first report.
    for body in [json!({}), json!({ "date": today })] {
        let (status, again) = post_daily_with(&app, &app.key, &body).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["status"], "already_ran", "{again}");
        assert_eq!(again["report"], first["report"], "{again}");
    }
    // The run is a job of its own, done, and tomorrow's is scheduled.
    let done = app.get("/v1/jobs?status=done").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == format!("program.daily:{today}").as_str()),
        "{}",
        done.body
    );
    let due = app.get("/v1/jobs?status=due").await;
    assert!(
        due.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "program.daily"),
        "{}",
        due.body
    );
    // An earlier day runs once too; a later one and nonsense are refused.
    let yesterday = (app.clock_now() - SignedDuration::from_hours(48))
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
        .to_string();
    let (status, past) = post_daily_with(&app, &app.key, &json!({ "date": yesterday })).await;
    assert_eq!(status, StatusCode::OK, "{past}");
    assert_eq!(past["status"], "ran", "{past}");
    let tomorrow = (app.clock_now() + SignedDuration::from_hours(48))
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
        .to_string();
    for date in [tomorrow.as_str(), "2026-13-01", "yesterday"] {
        let (status, body) = post_daily_with(&app, &app.key, &json!({ "date": date })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{date}: {body}");
        assert_eq!(body["error"]["details"]["field"], "date", "{body}");
    }
    // Unknown filters are refused in the error shape.
    let bad = app.get("/v1/jobs?status=running").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    // Another tenant's day is its own.
    let (_, other_key) = app.other_tenant().await;
    let (status, theirs) = post_daily_with(&app, &other_key, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    assert_eq!(theirs["status"], "ran", "{theirs}");
}

async fn the_cli_runs_the_day_and_lists_jobs(app: TestApp) {
    let url = app.database_url.clone();
    let tenant = app.tenant_id.clone();
    let (code, stdout, stderr) = shequn(&url, &["jobs", "run-daily", "--tenant", &tenant]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let run: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(run["status"], "ran", "{run}");
    let (code, stdout, _) = shequn(&url, &["jobs", "run-daily", "--tenant", &tenant]);
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(again["status"], "already_ran", "{again}");
    let (code, stdout, _) = shequn(
        &url,
        &["jobs", "list", "--tenant", &tenant, "--status", "done"],
    );
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(list["data"][0]["kind"], "program.daily", "{list}");
    assert_eq!(list["data"][0]["status"], "done", "{list}");
    let (code, _, stderr) = shequn(
        &url,
        &["jobs", "list", "--tenant", &tenant, "--status", "nope"],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--status"), "{stderr}");
    let (code, _, stderr) = shequn(
        &url,
        &[
            "jobs",
            "run-daily",
            "--tenant",
            &tenant,
            "--date",
            "2999-01-01",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("after today"), "{stderr}");
    // Keys carry their role.
    let (code, stdout, _) = shequn(
        &url,
        &[
            "keys",
            "create",
            "--tenant",
            &tenant,
            "--role",
            "integration",
        ],
    );
    assert_eq!(code, 0);
    let key: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(key["role"], "integration", "{key}");
    let (code, _, stderr) = shequn(
        &url,
        &["keys", "create", "--tenant", &tenant, "--role", "root"],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--role"), "{stderr}");
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(&app.tenant_id)
        .fetch_one(app.state.db.read())
        .await
        .unwrap()
}

/// The day's steps run in chunks of 500 members, one transaction each (issue 17 item 4): with
/// 1,200 members (three chunks, the last one partial) every member is warned, expired, given a
/// birthday perk and requalified exactly once, and running the day again does nothing.
async fn a_day_over_many_chunks_does_each_member_once(app: TestApp) {
    const MEMBERS: i64 = 1_200;
    let tenant = TenantId::from_db(app.tenant_id.clone());
    app.clock.set("2025-05-01T10:00:00+08:00".parse().unwrap());
    let reply = app
        .call(
            Method::PUT,
            "/v1/program/tiers",
            Some(&json!({
                "tiers": [{"name": "silver", "growth_min": 0}, {"name": "gold", "growth_min": 1000}],
                "requalification": {"month": 1, "day": 1}
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .call(
            Method::PUT,
            "/v1/program/birthday",
            Some(&json!({"days_before": 0, "points": 8})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut csv = String::from("external_id,name,phone,birthday,source,tags\n");
    for i in 0..MEMBERS {
        csv.push_str(&format!("m{i:04},,,1990-01-01,,\n"));
    }
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/members/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(axum::body::Body::from(csv))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.body["created"], MEMBERS, "{}", reply.body);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM member WHERE tenant_id = $1")
        .bind(&app.tenant_id)
        .fetch_all(app.state.db.read())
        .await
        .unwrap();
    // 100 points each in 2025, which expire at the start of 2027.
    for (batch, chunk) in ids.chunks(1000).enumerate() {
        let transfers: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"id": format!("earn-{batch}-{i}"), "from": "system:issuance",
                       "to": format!("member:{id}"), "asset": "points", "amount": 100, "code": "test"})
            })
            .collect();
        let reply = app
            .post("/v1/ledger/transfers", &json!({ "transfers": transfers }))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // Everyone gold with no growth (as after a year of refunds): requalification downgrades all.
    sqlx::query("UPDATE member SET tier = 'gold' WHERE tenant_id = $1")
        .bind(&app.tenant_id)
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();

    app.clock.set("2026-12-05T09:00:00+08:00".parse().unwrap());
    let warned = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
    assert_eq!(warned.warnings, MEMBERS as usize, "{warned:?}");
    let again = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
    assert_eq!(again, shequn::daily::DailyReport::default());

    app.clock.set("2027-01-01T09:00:00+08:00".parse().unwrap());
    let (status, day) = post_daily_with(&app, &app.key, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{day}");
    assert_eq!(day["status"], "ran", "{day}");
    assert_eq!(
        day["report"],
        json!({"points_expired": 100 * MEMBERS, "members_expired": MEMBERS, "warnings": 0,
               "birthday_perks": MEMBERS, "birthdays": MEMBERS, "requalified": MEMBERS,
               "repurchase_reminders": 0, "segments_counted": 0})
    );
    let again = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
    assert_eq!(
        again,
        shequn::daily::DailyReport::default(),
        "nothing twice"
    );

    // Each member: the 2025 points gone, one birthday perk of 8, silver.
    let balances = "FROM ledger_account WHERE tenant_id = $1 AND asset = 'points' \
                    AND address LIKE 'member:%'";
    for (sql, expected) in [
        (
            format!("SELECT COUNT(*) {balances} AND credits_posted - debits_posted = 8"),
            MEMBERS,
        ),
        (format!("SELECT COUNT(*) {balances}"), MEMBERS),
        (
            "SELECT COUNT(*) FROM member WHERE tenant_id = $1 AND tier = 'silver'".to_owned(),
            MEMBERS,
        ),
        (
            "SELECT COUNT(*) FROM program_notice WHERE tenant_id = $1 AND kind = 'birthday_perk'"
                .to_owned(),
            MEMBERS,
        ),
        (
            "SELECT COUNT(*) FROM event WHERE tenant_id = $1 AND type = 'points.expired'"
                .to_owned(),
            MEMBERS,
        ),
    ] {
        assert_eq!(count(&app, &sql).await, expected, "{sql}");
    }
    assert_eq!(
        app.get("/v1/ledger/accounts/system:expiry").await.body["points"]["balance"],
        100 * MEMBERS
    );
    assert_eq!(app.get("/v1/ledger/verify").await.body["ok"], true);
}
