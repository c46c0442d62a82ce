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
