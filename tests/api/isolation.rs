//! One request never answers for another, no total wraps, no job stalls the others (issue 15,
//! items 1 to 3): a request the database refuses fails alone in its batch (ledger executor,
//! flash sales), account totals past 2^63 − 1 are refused with `overflow` and verify reports
//! damaged rows instead of failing, and a failing scheduled job or unpaid order is backed off,
//! counted and parked while everything else runs.
//!
//! The poison is a database trigger that raises on one marked row, on either back end: the
//! closest stand-in for "a value the database refuses" that works the same on SQLite and
//! PostgreSQL (the NUL byte that found the bug is now refused at the edge, before any batch).

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};
use shequn::common::scheduler;

use crate::backend_tests;
use crate::support::{shequn, Backend, TestApp};

backend_tests!(
    a_transfer_the_database_refuses_fails_alone_in_its_batch,
    a_flash_sale_purchase_the_database_refuses_fails_alone_in_its_batch,
    grants_past_the_largest_total_are_refused_with_overflow,
    verify_reports_totals_beyond_the_integers_instead_of_failing,
    growth_delta_of_the_smallest_integer_is_refused,
    a_failing_order_expiry_backs_off_and_parks_while_other_work_runs,
);

/// Make the database refuse `event` (`INSERT` or `UPDATE`) on `table` for rows matching
/// `condition` (SQL over `NEW`), with the error `message`, on either back end.
async fn refuse(
    app: &TestApp,
    name: &str,
    event: &str,
    table: &str,
    condition: &str,
    message: &str,
) {
    let mut conn = app.state.db.write_conn().await.unwrap();
    let statements: Vec<String> = match app.backend {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {condition} \
             BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )],
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
                 IF {condition} THEN RAISE EXCEPTION '{message}'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE {event} ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ],
    };
    for statement in statements {
        sqlx::query(&statement).execute(&mut *conn).await.unwrap();
    }
}

/// Send many requests at once through the router; (status, body) of each, in order.
async fn concurrently(
    app: &TestApp,
    requests: Vec<(Method, String, Value)>,
) -> Vec<(StatusCode, Value)> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(method, path, body)| {
            let request = app.request(method, &path, Some(&body));
            let router = app.router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt as _;
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn grant(id: &str, member: &str, amount: i64, reference: &str) -> Value {
    json!({"transfers": [{"id": id, "from": "system:issuance", "to": format!("member:{member}"),
        "asset": "points", "amount": amount, "code": "grant", "reference": reference}]})
}

async fn a_transfer_the_database_refuses_fails_alone_in_its_batch(app: TestApp) {
    refuse(
        &app,
        "poison_transfer",
        "INSERT",
        "ledger_transfer",
        "NEW.reference = 'poison'",
        "poisoned row",
    )
    .await;
    let member = app.member("isolated").await;
    // Rounds of 60 good grants with 4 poisoned ones among them, all sent at once, so that the
    // executor batches poisoned and good submissions together.
    let mut good = 0;
    for round in 0..5 {
        let requests: Vec<_> = (0..64)
            .map(|i| {
                let reference = if i % 16 == 7 { "poison" } else { "fine" };
                (
                    Method::POST,
                    "/v1/ledger/transfers".to_owned(),
                    grant(&format!("r{round}-{i}"), &member, 1, reference),
                )
            })
            .collect();
        for (i, (status, body)) in concurrently(&app, requests).await.into_iter().enumerate() {
            if i % 16 == 7 {
                assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
            } else {
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["results"][0]["status"], "created", "{body}");
                good += 1;
            }
        }
    }
    assert_eq!(good, 300);
    let balances = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(balances.body["points"]["balance"], 300, "{}", balances.body);
    let verify = app.get("/v1/ledger/verify").await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
}

async fn a_flash_sale_purchase_the_database_refuses_fails_alone_in_its_batch(app: TestApp) {
    let buyers: Vec<String> = {
        let tenant = shequn::common::ids::TenantId::from_db(app.tenant_id.clone());
        shequn::bench::ledger::setup_members(&app.state.db, &tenant, 200)
            .await
            .unwrap()
            .iter()
            .map(|a| a.member_id().unwrap().to_owned())
            .collect()
    };
    let poisoned: Vec<&String> = buyers.iter().step_by(25).collect();
    let list = poisoned
        .iter()
        .map(|m| format!("'{m}'"))
        .collect::<Vec<_>>()
        .join(", ");
    refuse(
        &app,
        "poison_order",
        "INSERT",
        "customer_order",
        &format!("NEW.member_id IN ({list})"),
        "poisoned row",
    )
    .await;
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "soy", "sku": "SOY-1", "price": 1200, "stock": 0}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": product.body["id"], "price": 990, "stock": 150,
                    "per_member_limit": 1, "ends_at": ends, "payment_timeout_secs": 900}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let sale = sale.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/flash-sales/{sale}/orders");
    let requests = buyers
        .iter()
        .map(|m| {
            (
                Method::POST,
                path.clone(),
                json!({"member_id": m, "qty": 1}),
            )
        })
        .collect();
    let replies = concurrently(&app, requests).await;
    let (mut sold, mut refused, mut sold_out) = (0, 0, 0);
    for (member, (status, body)) in buyers.iter().zip(replies) {
        if poisoned.contains(&member) {
            // Refused by the database when it reached the insert, or told "sold out" when the
            // stock was gone before its turn: never a good buyer's outcome.
            assert!(
                status == StatusCode::INTERNAL_SERVER_ERROR
                    || (status == StatusCode::CONFLICT && body["error"]["code"] == "sold_out"),
                "{status}: {body}"
            );
            refused += usize::from(status == StatusCode::INTERNAL_SERVER_ERROR);
        } else if status == StatusCode::CREATED {
            sold += 1;
        } else {
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"]["code"], "sold_out", "{body}");
            sold_out += 1;
        }
    }
    assert!(refused > 0, "no poisoned purchase reached the database");
    // Every good buyer was decided on its own merits: the stock went to them, exactly.
    assert_eq!(sold, 150);
    assert_eq!(sold_out, buyers.len() - poisoned.len() - 150);
    let view = app.get(&format!("/v1/flash-sales/{sale}")).await;
    assert_eq!(view.body["reserved"], 150, "{}", view.body);
    assert_eq!(view.body["available"], 0, "{}", view.body);
}

async fn grants_past_the_largest_total_are_refused_with_overflow(app: TestApp) {
    let member = app.member("rich").await;
    let max = shequn::ledger::model::MAX_AMOUNT;
    let fits = i64::MAX / max;
    // Fill the account to just under the limit in requests of 1000 transfers.
    let mut sent = 0;
    while sent < fits {
        let batch: Vec<Value> = (sent..(sent + 1000).min(fits))
            .map(|i| {
                json!({"id": format!("g{i}"), "from": "system:issuance",
                       "to": format!("member:{member}"), "asset": "points", "amount": max,
                       "code": "grant"})
            })
            .collect();
        sent += batch.len() as i64;
        let reply = app
            .post("/v1/ledger/transfers", &json!({ "transfers": batch }))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "created"));
    }
    let reply = app
        .post(
            "/v1/ledger/transfers",
            &grant("one-too-many", &member, max, "x"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["results"][0]["status"], "overflow",
        "{}",
        reply.body
    );
    let balances = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(
        balances.body["points"]["balance"],
        fits * max,
        "{}",
        balances.body
    );
    let verify = app.get("/v1/ledger/verify").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.body);
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    // The refused transfer was not written: its id is free.
    let missing = app.get("/v1/ledger/transfers/one-too-many").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
}

async fn verify_reports_totals_beyond_the_integers_instead_of_failing(app: TestApp) {
    let member = app.member("damaged").await;
    let reply = app
        .post("/v1/ledger/transfers", &grant("seed", &member, 5, "x"))
        .await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{}",
        reply.body
    );
    // Rows as an older version (with wrapping totals) could have left them: two transfers
    // whose amounts sum past i64::MAX, written by hand.
    {
        let mut conn = app.state.db.write_conn().await.unwrap();
        for id in ["huge-1", "huge-2"] {
            sqlx::query(
                "INSERT INTO ledger_transfer (tenant_id, id, debit_address, credit_address, asset, \
                 amount, code, reference, metadata, pending, linked, created_at) \
                 SELECT tenant_id, $1, debit_address, credit_address, asset, $2, code, reference, \
                 metadata, pending, linked, created_at FROM ledger_transfer \
                 WHERE tenant_id = $3 AND id = 'seed'",
            )
            .bind(id)
            .bind(i64::MAX / 2 + 10)
            .bind(&app.tenant_id)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
    }
    let verify = app.get("/v1/ledger/verify").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.body);
    assert_eq!(verify.body["ok"], false, "{}", verify.body);
    let kinds: Vec<&str> = verify.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"balance_differs_from_transfers"),
        "{}",
        verify.body
    );
    let (_, stdout, stderr) = shequn(
        &app.database_url,
        &["ledger", "verify", "--tenant", &app.tenant_id],
    );
    assert!(
        stdout.contains("balance_differs_from_transfers"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

async fn growth_delta_of_the_smallest_integer_is_refused(app: TestApp) {
    let member = app.member("growing").await;
    let path = format!("/v1/members/{member}/growth");
    let reply = app
        .post(&path, &json!({"delta": 500, "reason": "welcome"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    for delta in [i64::MIN, i64::MIN + 1, i64::MAX, 1_000_000_001] {
        let reply = app
            .post(&path, &json!({"delta": delta, "reason": "attack"}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{delta}: {}",
            reply.body
        );
    }
    let member = app.get(&format!("/v1/members/{member}")).await;
    assert_eq!(member.body["growth"], 500, "{}", member.body);
}

async fn a_failing_order_expiry_backs_off_and_parks_while_other_work_runs(app: TestApp) {
    let buyer = app.member("buyer").await;
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "soy", "sku": "SOY-2", "price": 1200, "stock": 10}),
        )
        .await;
    let product = product.body["id"].as_str().unwrap().to_owned();
    let mut orders = Vec::new();
    for _ in 0..3 {
        let reply = app
            .post(
                "/v1/orders",
                &json!({"member_id": buyer, "items": [{"product_id": product, "qty": 1}],
                        "payment_timeout_secs": 60}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        orders.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let stuck = orders[1].clone();
    // The database refuses to expire one of the three orders.
    refuse(
        &app,
        "stuck_order",
        "UPDATE",
        "customer_order",
        &format!("NEW.id = '{stuck}' AND NEW.status = 'expired'"),
        "stuck order",
    )
    .await;
    // A pending transfer with a timeout: unrelated work that must not wait for the order.
    let reply = app
        .post(
            "/v1/ledger/transfers",
            &json!({"transfers": [{"id": "hold", "from": "system:issuance",
                "to": format!("member:{buyer}"), "asset": "points", "amount": 10, "code": "hold",
                "pending": true, "timeout_secs": 60}]}),
        )
        .await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{}",
        reply.body
    );

    app.clock.advance(SignedDuration::from_hours(2));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let status = |id: String| {
        let app = &app;
        async move { app.get(&format!("/v1/orders/{id}")).await.body["status"].clone() }
    };
    assert_eq!(status(orders[0].clone()).await, "expired");
    assert_eq!(status(orders[2].clone()).await, "expired");
    assert_eq!(status(stuck.clone()).await, "pending_payment");
    let hold = app.get("/v1/ledger/transfers/hold").await;
    assert_eq!(hold.body["status"], "expired", "{}", hold.body);

    // The stuck order is now a job of its own, failing with its cause and backing off.
    let job_id = format!("order_expiry:{stuck}");
    let job = |state: &'static str| {
        let app = &app;
        let job_id = job_id.clone();
        async move {
            let page = app.get(&format!("/v1/jobs?status={state}")).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["id"] == job_id.as_str())
                .cloned()
        }
    };
    let failing = job("due").await.expect("the order's expiry job");
    assert_eq!(failing["attempts"], 1, "{failing}");
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap()
            .contains("stuck order"),
        "the cause is kept: {failing}"
    );
    // Not run again before its backoff ends.
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(job("due").await.unwrap()["attempts"], 1);
    // Each later pass after the backoff counts one more attempt, until it is parked.
    for attempt in 2..=scheduler::MAX_ATTEMPTS {
        app.clock.advance(SignedDuration::from_hours(2));
        shequn::server::run_due_jobs(&app.state).await.unwrap();
        if attempt < scheduler::MAX_ATTEMPTS {
            assert_eq!(job("due").await.unwrap()["attempts"], attempt);
        }
    }
    let parked = job("parked").await.expect("parked after the last attempt");
    assert_eq!(parked["attempts"], scheduler::MAX_ATTEMPTS, "{parked}");
    let events = app.get("/v1/events?type=job.parked").await;
    assert_eq!(
        events.body["data"][0]["subject"],
        job_id.as_str(),
        "{}",
        events.body
    );
    // Parked jobs no longer run.
    app.clock.advance(SignedDuration::from_hours(2));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(
        job("parked").await.unwrap()["attempts"],
        scheduler::MAX_ATTEMPTS
    );

    // Once the cause is fixed, an operator sends it back and it runs.
    {
        let mut conn = app.state.db.write_conn().await.unwrap();
        let drop = match app.backend {
            Backend::Sqlite => "DROP TRIGGER stuck_order",
            Backend::Postgres => "DROP TRIGGER stuck_order ON customer_order",
        };
        sqlx::query(drop).execute(&mut *conn).await.unwrap();
    }
    let retried = app
        .post(&format!("/v1/jobs/{job_id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body["status"], "due");
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(status(stuck.clone()).await, "expired");
    assert!(job("done").await.is_some());
    // Another tenant sees none of it.
    let (_, other_key) = app.other_tenant().await;
    let mut request = app.request(Method::GET, "/v1/jobs", None);
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {other_key}").parse().unwrap(),
    );
    let theirs = app.send(request).await;
    assert_eq!(theirs.body["data"], json!([]), "{}", theirs.body);
    let mut request = app.request(
        Method::POST,
        &format!("/v1/jobs/{job_id}/retry"),
        Some(&json!({})),
    );
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {other_key}").parse().unwrap(),
    );
    assert_eq!(app.send(request).await.status, StatusCode::NOT_FOUND);
}
