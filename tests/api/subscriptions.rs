//! Subscriptions (周期购): a monthly prepaid subscription started on 31 January delivers on the
//! last day of February and goes back to the 31st in March; skip, pause, resume and cancel
//! with the undelivered deliveries refunded to the fen; per-delivery billing paid from the
//! wallet, then three failed days that pause the subscription; delivery orders created once
//! across a restart and with two nodes; the forecast; no repurchase reminder for what a
//! subscription delivers; personal data in the export and cleared by erasure; another
//! tenant's ids answered 404; and orders that are not a subscription's (a flash sale's expiry, a
//! shop refund) leaving subscriptions untouched while their own prepaid orders still end them.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser};
use crate::support::{build, TestApp};

backend_tests!(
    subscriptions_monthly_prepaid_from_31_january_delivers_on_the_last_day_of_february,
    subscriptions_skip_pause_resume_and_cancel_refund_the_undelivered_exactly,
    subscriptions_per_delivery_billing_pays_from_the_wallet_and_pauses_after_three_failed_days,
    subscriptions_delivery_orders_are_created_once_across_a_restart_and_two_nodes,
    subscriptions_plans_validate_and_stop_new_subscriptions_when_inactive,
    subscriptions_forecast_lists_units_per_week,
    subscriptions_no_repurchase_reminder_for_a_subscribed_product,
    subscriptions_are_exported_and_erasure_clears_addresses,
    subscriptions_other_tenants_ids_are_404,
    subscriptions_console_page_shows_plans_forecast_and_pauses,
    subscriptions_ignore_other_orders_and_end_with_their_own_prepaid_order,
);

/// Local midnight of a day in Asia/Shanghai (the default tenant zone).
fn local(day: &str, hour: i64) -> Timestamp {
    let midnight: Timestamp = format!("{day}T00:00:00+08:00").parse().unwrap();
    midnight + SignedDuration::from_hours(hour)
}

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn product(app: &TestApp, sku: &str, stock: i64) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": sku, "sku": sku, "price": 2000, "stock": stock}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn stock(app: &TestApp, product: &str) -> i64 {
    app.get(&format!("/v1/products/{product}")).await.body["stock"]
        .as_i64()
        .unwrap()
}

async fn plan(app: &TestApp, body: &Value) -> String {
    let reply = app.post("/v1/subscription-plans", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn monthly_prepaid(app: &TestApp, product: &str, price: i64) -> String {
    plan(
        app,
        &json!({
            "name": "黄豆月卡", "product_id": product, "qty": 2,
            "schedule": {"every": 1, "unit": "month"}, "deliveries": 6,
            "price_per_delivery": price, "billing": "prepaid", "cutoff_days": 2,
        }),
    )
    .await
}

async fn subscribe(app: &TestApp, member: &str, plan: &str, start: &str) -> Value {
    let reply = app
        .post(
            &format!("/v1/members/{member}/subscriptions"),
            &json!({"plan_id": plan, "start_date": start, "delivery": {"address": "上海市徐汇区 1 号"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

fn dates(sub: &Value) -> Vec<(String, String)> {
    sub["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn day_list(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(d, s)| ((*d).to_owned(), (*s).to_owned()))
        .collect()
}

async fn run_jobs(app: &TestApp) {
    // Twice: a delivery's payment job is scheduled by the delivery job of the first pass.
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    shequn::server::run_due_jobs(&app.state).await.unwrap();
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}&limit=1000")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn pay_external(app: &TestApp, order: &str, reference: &str) {
    let reply = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &json!({"method": "external", "reference": reference}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn subscriptions_monthly_prepaid_from_31_january_delivers_on_the_last_day_of_february(
    app: TestApp,
) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let plan = monthly_prepaid(&app, &beans, 3000).await;
    let member = app.member("m1").await;
    let sub = subscribe(&app, &member, &plan, "2027-01-31").await;
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["remaining"], 6);
    assert_eq!(
        dates(&sub),
        day_list(&[
            ("2027-01-31", "scheduled"),
            ("2027-02-28", "scheduled"),
            ("2027-03-31", "scheduled"),
            ("2027-04-30", "scheduled"),
            ("2027-05-31", "scheduled"),
            ("2027-06-30", "scheduled"),
        ])
    );
    // The cut-off is two local days before, at midnight in the tenant's zone.
    assert_eq!(
        sub["deliveries"][1]["cutoff_at"], "2027-02-25T16:00:00Z",
        "{}",
        sub
    );
    // One order for all six deliveries, paid like any order; no stock is taken up front.
    let order_id = sub["order_id"].as_str().unwrap().to_owned();
    let order = app.get(&format!("/v1/orders/{order_id}")).await.body;
    assert_eq!(order["total"], 18_000, "{order}");
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(stock(&app, &beans).await, 100);
    pay_external(&app, &order_id, "pay-1").await;

    // Before the cut-off nothing happens; at it, the delivery's order is created once.
    app.clock.set(local("2027-01-28", 23));
    run_jobs(&app).await;
    let id = sub["id"].as_str().unwrap();
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["deliveries"][0]["status"], "scheduled");
    app.clock.set(local("2027-01-29", 0));
    run_jobs(&app).await;
    run_jobs(&app).await;
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["deliveries"][0]["status"], "ordered", "{view}");
    assert_eq!(view["remaining"], 5);
    assert_eq!(stock(&app, &beans).await, 98);
    let delivery_order = view["deliveries"][0]["order_id"].as_str().unwrap();
    let order = app.get(&format!("/v1/orders/{delivery_order}")).await.body;
    assert_eq!(order["status"], "paid", "{order}");
    assert_eq!(order["total"], 0);
    let created = events_of(&app, "subscription.delivery_created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["date"], "2027-01-31");
    // Fulfilling the delivery's order shows it delivered.
    let reply = app
        .post(&format!("/v1/orders/{delivery_order}/fulfil"), &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["deliveries"][0]["status"], "delivered");

    // February's delivery on the 28th, March's back on the 31st.
    app.clock.set(local("2027-03-29", 1));
    run_jobs(&app).await;
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(
        dates(&view)[..3],
        day_list(&[
            ("2027-01-31", "delivered"),
            ("2027-02-28", "ordered"),
            ("2027-03-31", "ordered"),
        ])[..]
    );
    // The last deliveries: `subscription.ending` before the last, then completed.
    assert!(events_of(&app, "subscription.ending").await.is_empty());
    app.clock.set(local("2027-05-29", 1));
    run_jobs(&app).await;
    let ending = events_of(&app, "subscription.ending").await;
    assert_eq!(ending.len(), 1, "{ending:?}");
    assert_eq!(ending[0]["data"]["last_date"], "2027-06-30");
    app.clock.set(local("2027-06-28", 1));
    run_jobs(&app).await;
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["remaining"], 0);
    assert_eq!(stock(&app, &beans).await, 88);
    assert_eq!(events_of(&app, "subscription.ending").await.len(), 1);
    verify_ok(&app).await;
}

async fn subscriptions_skip_pause_resume_and_cancel_refund_the_undelivered_exactly(app: TestApp) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let plan = monthly_prepaid(&app, &beans, 1001).await;
    let member = app.member("m1").await;
    let sub = subscribe(&app, &member, &plan, "2027-01-31").await;
    let id = sub["id"].as_str().unwrap().to_owned();
    let order_id = sub["order_id"].as_str().unwrap().to_owned();
    pay_external(&app, &order_id, "pay-1").await;
    // The merchant refunded 7 fen of the order before (a goodwill gesture): the cancel refunds
    // the undelivered deliveries' shares, never more than is still paid.
    let reply = app
        .post(
            &format!("/v1/orders/{order_id}/refunds"),
            &json!({"amount": 7, "reason": "goodwill", "restock": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    // Skip February: a seventh day is added at the end so that six deliveries still come.
    let reply = app
        .post(
            &format!("/v1/subscriptions/{id}/skip"),
            &json!({"date": "2027-02-28"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["remaining"], 6);
    assert_eq!(
        dates(&reply.body),
        day_list(&[
            ("2027-01-31", "scheduled"),
            ("2027-02-28", "skipped"),
            ("2027-03-31", "scheduled"),
            ("2027-04-30", "scheduled"),
            ("2027-05-31", "scheduled"),
            ("2027-06-30", "scheduled"),
            ("2027-07-31", "scheduled"),
        ])
    );
    // A day not in the calendar is a validation error.
    let reply = app
        .post(
            &format!("/v1/subscriptions/{id}/skip"),
            &json!({"date": "2027-02-27"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );

    // After January's cut-off it can no longer be skipped or changed.
    app.clock.set(local("2027-01-29", 1));
    let reply = app
        .post(
            &format!("/v1/subscriptions/{id}/skip"),
            &json!({"date": "2027-01-31"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "past_cutoff");
    let reply = app
        .patch(
            &format!("/v1/subscriptions/{id}"),
            &json!({"from_date": "2027-01-31", "delivery": {"address": "北京"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "past_cutoff");
    // A prepaid subscription's quantity is what was paid for.
    let reply = app
        .patch(&format!("/v1/subscriptions/{id}"), &json!({"qty": 3}))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    // Deliveries move to a community leader's pickup point: one of the tenant's active
    // leaders, else 404 (unknown) or 409 (paused).
    let reply = app
        .patch(
            &format!("/v1/subscriptions/{id}"),
            &json!({"delivery": {"leader_id": "ldr_0001"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let leader_member = app.member("leader").await;
    let reply = app
        .post(
            "/v1/leaders",
            &json!({"member_id": leader_member, "name": "王姐", "commission_bp": 500,
                    "pickup_point": {"name": "幸福小区", "address": "幸福路 1 号", "hours": "8-20"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let leader = reply.body["id"].as_str().unwrap().to_owned();
    let reply = app
        .patch(
            &format!("/v1/leaders/{leader}"),
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .patch(
            &format!("/v1/subscriptions/{id}"),
            &json!({"delivery": {"leader_id": leader}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "leader_not_active");
    let reply = app
        .patch(
            &format!("/v1/leaders/{leader}"),
            &json!({"status": "active"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .patch(
            &format!("/v1/subscriptions/{id}"),
            &json!({"delivery": {"leader_id": leader}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["delivery"], json!({"leader_id": leader}));
    run_jobs(&app).await;

    // Pause: what is past its cut-off stands, the rest leaves the calendar.
    let reply = app
        .post(&format!("/v1/subscriptions/{id}/pause"), &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "paused");
    assert_eq!(
        dates(&reply.body),
        day_list(&[("2027-01-31", "ordered"), ("2027-02-28", "skipped")])
    );
    assert_eq!(reply.body["remaining"], 5);
    let reply = app
        .post(
            &format!("/v1/subscriptions/{id}/skip"),
            &json!({"date": "2027-03-31"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    // Nothing is ordered while paused.
    app.clock.set(local("2027-03-30", 0));
    run_jobs(&app).await;
    // A resume day whose cut-off passed is refused; then the schedule moves on from the
    // resume day: the 15th of each month.
    let reply = app
        .post(
            &format!("/v1/subscriptions/{id}/resume"),
            &json!({"date": "2027-03-31"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "past_cutoff");
    let reply = app
        .post(
            &format!("/v1/subscriptions/{id}/resume"),
            &json!({"date": "2027-04-15"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "active");
    assert_eq!(
        dates(&reply.body),
        day_list(&[
            ("2027-01-31", "ordered"),
            ("2027-02-28", "skipped"),
            ("2027-04-15", "scheduled"),
            ("2027-05-15", "scheduled"),
            ("2027-06-15", "scheduled"),
            ("2027-07-15", "scheduled"),
            ("2027-08-15", "scheduled"),
        ])
    );
    app.clock.set(local("2027-04-13", 1));
    run_jobs(&app).await;

    // Cancel: two delivered, four undelivered deliveries of 1,001 fen refunded through the
    // order, to the fen.
    let reply = app
        .post(&format!("/v1/subscriptions/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "cancelled");
    assert_eq!(reply.body["refunded"], 4004, "{}", reply.body);
    assert_eq!(reply.body["remaining"], 0);
    let order = app.get(&format!("/v1/orders/{order_id}")).await.body;
    assert_eq!(order["refunded_amount"], 4011, "{order}");
    // A second cancel changes nothing; nothing more is delivered.
    let again = app
        .post(&format!("/v1/subscriptions/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["refunded"], 4004);
    app.clock.set(local("2027-09-01", 1));
    run_jobs(&app).await;
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    let ordered = dates(&view).iter().filter(|(_, s)| s == "ordered").count();
    assert_eq!(ordered, 2, "{view}");
    assert_eq!(stock(&app, &beans).await, 96);
    let cancelled = events_of(&app, "subscription.cancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["data"]["refund"], 4004);
    let reply = app
        .post(&format!("/v1/subscriptions/{id}/resume"), &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "subscription_not_active");
    verify_ok(&app).await;
}

async fn topup_plan(app: &TestApp, pay: i64) -> String {
    let reply = app
        .post(
            "/v1/topup-plans",
            &json!({"name": format!("充{pay}"), "pay": pay, "bonus": 0}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn subscriptions_per_delivery_billing_pays_from_the_wallet_and_pauses_after_three_failed_days(
    app: TestApp,
) {
    app.clock.set(local("2027-03-01", 9));
    let milk = product(&app, "MILK", 50).await;
    let plan = plan(
        &app,
        &json!({
            "name": "牛奶周配", "product_id": milk, "qty": 1,
            "schedule": {"every": 1, "unit": "week"}, "deliveries": null,
            "price_per_delivery": 500, "billing": "per_delivery", "cutoff_days": 1,
        }),
    )
    .await;
    let member = app.member("m1").await;
    let topup = topup_plan(&app, 600).await;
    let reply = app
        .post(
            &format!("/v1/members/{member}/topups"),
            &json!({"plan_id": topup, "payment_ref": "t1"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let sub = subscribe(&app, &member, &plan, "2027-03-08").await;
    let id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(sub["remaining"], Value::Null);
    assert!(sub["order_id"].is_null());
    // Open-ended: half a year of weeks is on the calendar.
    assert!(sub["deliveries"].as_array().unwrap().len() >= 26, "{sub}");

    // The first cut-off: the order is created and paid from the wallet.
    app.clock.set(local("2027-03-07", 0));
    run_jobs(&app).await;
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    let first = view["deliveries"][0]["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = app.get(&format!("/v1/orders/{first}")).await.body;
    assert_eq!(order["status"], "paid", "{order}");
    assert_eq!(order["total"], 500);
    let balances = app
        .get(&format!("/v1/members/{member}/balances"))
        .await
        .body;
    assert_eq!(balances["wallet_principal"]["balance"], 100, "{balances}");

    // The second: 100 fen cannot pay 500: payment due, tried again the next two days.
    app.clock.set(local("2027-03-14", 0));
    run_jobs(&app).await;
    let due = events_of(&app, "subscription.payment_due").await;
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0]["data"]["attempt"], 1);
    assert_eq!(due[0]["data"]["reason"], "insufficient_funds");
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["status"], "active");
    let second = view["deliveries"][1]["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stock(&app, &milk).await, 48);
    app.clock
        .set(local("2027-03-15", 0) + SignedDuration::from_secs(1));
    run_jobs(&app).await;
    assert_eq!(events_of(&app, "subscription.payment_due").await.len(), 2);
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}")).await.body["status"],
        "active"
    );
    app.clock
        .set(local("2027-03-16", 0) + SignedDuration::from_secs(2));
    run_jobs(&app).await;
    assert_eq!(events_of(&app, "subscription.payment_due").await.len(), 3);
    // The third failed day pauses it; the order is cancelled and its unit goes back.
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["status"], "paused", "{view}");
    assert_eq!(view["pause_reason"], "payment_failed");
    assert_eq!(view["deliveries"][1]["status"], "skipped");
    assert_eq!(view["deliveries"][1]["reason"], "unpaid");
    let order = app.get(&format!("/v1/orders/{second}")).await.body;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(stock(&app, &milk).await, 49);
    // The delivery of 21 March (cut-off 20 March) is off the calendar.
    assert_eq!(view["deliveries"].as_array().unwrap().len(), 2, "{view}");
    // Topped up and resumed, the next delivery is paid.
    let reply = app
        .post(
            &format!("/v1/members/{member}/topups"),
            &json!({"plan_id": topup, "payment_ref": "t2"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = app
        .post(&format!("/v1/subscriptions/{id}/resume"), &Value::Null)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["deliveries"][2]["date"], "2027-03-18");
    app.clock.set(local("2027-03-17", 0));
    run_jobs(&app).await;
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    let third = view["deliveries"][2]["order_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/orders/{third}")).await.body["status"],
        "paid"
    );
    // A bigger quantity from the next delivery costs in proportion.
    let reply = app
        .patch(&format!("/v1/subscriptions/{id}"), &json!({"qty": 2}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["deliveries"][3]["qty"], 2);
    verify_ok(&app).await;
}

async fn subscriptions_delivery_orders_are_created_once_across_a_restart_and_two_nodes(
    app: TestApp,
) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let plan = monthly_prepaid(&app, &beans, 1000).await;
    let mut subs = Vec::new();
    for i in 0..4 {
        let member = app.member(&format!("m{i}")).await;
        let sub = subscribe(&app, &member, &plan, "2027-01-31").await;
        pay_external(&app, sub["order_id"].as_str().unwrap(), &format!("pay-{i}")).await;
        subs.push(sub["id"].as_str().unwrap().to_owned());
    }
    app.clock.set(local("2027-01-29", 1));
    // Two nodes over the same database run the scheduler at once.
    let node = shequn::AppState::new(app.state.db.clone(), Arc::new(app.clock.clone()));
    let (a, b) = tokio::join!(
        shequn::server::run_due_jobs(&app.state),
        shequn::server::run_due_jobs(&node)
    );
    a.unwrap();
    b.unwrap();
    // A restart: a new state over a new connection to the database runs the jobs again.
    let db = shequn::common::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    let restarted = shequn::AppState::new(db, Arc::new(app.clock.clone()));
    shequn::server::run_due_jobs(&restarted).await.unwrap();
    run_jobs(&app).await;
    assert_eq!(
        events_of(&app, "subscription.delivery_created").await.len(),
        4
    );
    for id in &subs {
        let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
        assert_eq!(view["deliveries"][0]["status"], "ordered");
        let member = view["member_id"].as_str().unwrap();
        let orders = app
            .get(&format!("/v1/orders?member_id={member}"))
            .await
            .body;
        // The prepaid order and one delivery order.
        assert_eq!(orders["data"].as_array().unwrap().len(), 2, "{orders}");
    }
    assert_eq!(stock(&app, &beans).await, 92);
}

async fn subscriptions_plans_validate_and_stop_new_subscriptions_when_inactive(app: TestApp) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let base = json!({
        "name": "p", "product_id": beans, "qty": 1, "schedule": {"days_of_month": [1, 15]},
        "deliveries": 4, "price_per_delivery": 100, "billing": "prepaid",
    });
    for (field, value) in [
        ("qty", json!(0)),
        ("schedule", json!({"every": 0, "unit": "week"})),
        ("schedule", json!({"days_of_month": [0]})),
        ("deliveries", json!(null)),
        ("price_per_delivery", json!(-1)),
        ("cutoff_days", json!(31)),
        ("name", json!(" ")),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let reply = app.post("/v1/subscription-plans", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            reply.body
        );
    }
    let mut body = base.clone();
    body["schedule"] = json!({"every": 1, "unit": "fortnight"});
    assert_eq!(
        app.post("/v1/subscription-plans", &body).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut body = base.clone();
    body["product_id"] = json!("prd_nope");
    assert_eq!(
        app.post("/v1/subscription-plans", &body).await.status,
        StatusCode::NOT_FOUND
    );
    let id = plan(&app, &base).await;
    let reply = app.get(&format!("/v1/subscription-plans/{id}")).await;
    assert_eq!(reply.body["schedule"], json!({"days_of_month": [1, 15]}));
    assert_eq!(reply.body["cutoff_days"], 2);
    let member = app.member("m1").await;
    let sub = subscribe(&app, &member, &id, "2027-01-15").await;
    assert_eq!(
        dates(&sub),
        day_list(&[
            ("2027-01-15", "scheduled"),
            ("2027-02-01", "scheduled"),
            ("2027-02-15", "scheduled"),
            ("2027-03-01", "scheduled"),
        ])
    );
    // A start whose cut-off has passed.
    let reply = app
        .post(
            &format!("/v1/members/{member}/subscriptions"),
            &json!({"plan_id": id, "start_date": "2027-01-12", "delivery": {"address": "x"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "past_cutoff");
    let reply = app
        .post(
            &format!("/v1/members/{member}/subscriptions"),
            &json!({"plan_id": id, "start_date": "2027-02-01", "delivery": {"leader_id": "bad id!"}}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let reply = app
        .patch(
            &format!("/v1/subscription-plans/{id}"),
            &json!({"active": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["active"], false);
    let reply = app
        .post(
            &format!("/v1/members/{member}/subscriptions"),
            &json!({"plan_id": id, "start_date": "2027-02-01", "delivery": {"address": "x"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "plan_inactive");
    // The existing subscription goes on; lists filter by status and plan.
    let list = app
        .get(&format!("/v1/subscriptions?status=active&plan_id={id}"))
        .await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
    let list = app.get("/v1/subscriptions?status=paused").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        app.get("/v1/subscriptions?status=nope").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let list = app
        .get(&format!("/v1/members/{member}/subscriptions"))
        .await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let plans = app.get("/v1/subscription-plans?active=false").await;
    assert_eq!(plans.body["data"].as_array().unwrap().len(), 1);
    // The unpaid prepaid order expires: the subscription is cancelled with it.
    app.clock.set(local("2027-01-10", 10));
    run_jobs(&app).await;
    let view = app
        .get(&format!(
            "/v1/subscriptions/{}",
            sub["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert!(view["deliveries"].as_array().unwrap().is_empty());
    // Idempotent creation.
    let key_body = base.clone();
    let first = app
        .post_idempotent("/v1/subscription-plans", "k-1", &key_body)
        .await;
    let second = app
        .post_idempotent("/v1/subscription-plans", "k-1", &key_body)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["id"], second.body["id"]);
}

async fn subscriptions_forecast_lists_units_per_week(app: TestApp) {
    // Monday 4 January 2027.
    app.clock.set(local("2027-01-04", 9));
    let milk = product(&app, "MILK", 1000).await;
    let weekly = plan(
        &app,
        &json!({
            "name": "w", "product_id": milk, "qty": 3, "schedule": {"every": 1, "unit": "week"},
            "deliveries": null, "price_per_delivery": 100, "billing": "per_delivery", "cutoff_days": 1,
        }),
    )
    .await;
    for i in 0..2 {
        let member = app.member(&format!("m{i}")).await;
        subscribe(&app, &member, &weekly, "2027-01-08").await;
    }
    let reply = app
        .get(&format!("/v1/subscription-plans/{weekly}/forecast?weeks=3"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let weeks = reply.body["weeks"].as_array().unwrap();
    assert_eq!(weeks.len(), 3);
    assert_eq!(weeks[0]["week_start"], "2027-01-04");
    assert_eq!(weeks[0]["units"], 6);
    assert_eq!(weeks[0]["deliveries"], 2);
    assert_eq!(weeks[2]["units"], 6);
    assert_eq!(reply.body["total_units"], 18);
    assert_eq!(
        app.get(&format!("/v1/subscription-plans/{weekly}/forecast?weeks=0"))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn subscriptions_no_repurchase_reminder_for_a_subscribed_product(app: TestApp) {
    app.clock.set(local("2027-01-01", 9));
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": "oil", "sku": "OIL", "price": 100, "stock": 100, "days_of_supply": 10}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let oil = reply.body["id"].as_str().unwrap().to_owned();
    let mut members = Vec::new();
    for name in ["subscribed", "not"] {
        let reply = app
            .post(
                "/v1/members",
                &json!({"external_id": name, "name": name, "consent": {"marketing": true}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let member = reply.body["id"].as_str().unwrap().to_owned();
        let order = app
            .post(
                "/v1/orders",
                &json!({"member_id": member, "items": [{"product_id": oil, "qty": 1}]}),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
        pay_external(
            &app,
            order.body["id"].as_str().unwrap(),
            &format!("p-{name}"),
        )
        .await;
        members.push(member);
    }
    let monthly = plan(
        &app,
        &json!({
            "name": "oil", "product_id": oil, "qty": 1, "schedule": {"every": 1, "unit": "month"},
            "deliveries": null, "price_per_delivery": 100, "billing": "per_delivery",
        }),
    )
    .await;
    subscribe(&app, &members[0], &monthly, "2027-02-01").await;
    // Ten days of supply: the reminders are due around 8 January.
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let tenant = shequn::common::ids::TenantId::parse(&app.tenant_id).unwrap();
    let emitted = shequn::analytics::repurchase::run_reminders(
        &app.state.db,
        &tenant,
        &zone,
        3,
        local("2027-01-09", 9),
    )
    .await
    .unwrap();
    assert_eq!(emitted, 1);
    let due = events_of(&app, "member.repurchase_due").await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0]["data"]["member_id"], members[1].as_str());
}

async fn subscriptions_are_exported_and_erasure_clears_addresses(app: TestApp) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let plan = monthly_prepaid(&app, &beans, 1000).await;
    let member = app.member("m1").await;
    let sub = subscribe(&app, &member, &plan, "2027-01-31").await;
    pay_external(&app, sub["order_id"].as_str().unwrap(), "pay-1").await;
    let export = app.get(&format!("/v1/members/{member}/export")).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.body);
    let section = &export.body["subscriptions"];
    assert_eq!(section["subscriptions"][0]["address"], "上海市徐汇区 1 号");
    assert_eq!(section["deliveries"].as_array().unwrap().len(), 6);
    let reply = app
        .call(Method::DELETE, &format!("/v1/members/{member}"), None)
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    let id = sub["id"].as_str().unwrap();
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert!(view["delivery"].is_null(), "{view}");
    assert_eq!(view["status"], "cancelled");
    // The money stays as it was: the prepaid order is still paid, the ledger balances.
    let order = app
        .get(&format!("/v1/orders/{}", sub["order_id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(order["total"], 6000);
    verify_ok(&app).await;
}

async fn subscriptions_other_tenants_ids_are_404(app: TestApp) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let plan = monthly_prepaid(&app, &beans, 1000).await;
    let member = app.member("m1").await;
    let sub = subscribe(&app, &member, &plan, "2027-01-31").await;
    let id = sub["id"].as_str().unwrap().to_owned();
    let (_, other) = app.other_tenant().await;
    let other_member = {
        let request = build(
            Method::POST,
            "/v1/members",
            Some(&other),
            Some(&json!({"external_id": "o"})),
            None,
        );
        app.send(request).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/subscription-plans/{plan}"), None),
        (
            Method::PATCH,
            format!("/v1/subscription-plans/{plan}"),
            Some(json!({"active": false})),
        ),
        (
            Method::GET,
            format!("/v1/subscription-plans/{plan}/forecast"),
            None,
        ),
        (Method::GET, format!("/v1/subscriptions/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/subscriptions/{id}"),
            Some(json!({"delivery": {"address": "x"}})),
        ),
        (
            Method::POST,
            format!("/v1/subscriptions/{id}/skip"),
            Some(json!({"date": "2027-02-28"})),
        ),
        (Method::POST, format!("/v1/subscriptions/{id}/pause"), None),
        (Method::POST, format!("/v1/subscriptions/{id}/resume"), None),
        (Method::POST, format!("/v1/subscriptions/{id}/cancel"), None),
        (
            Method::GET,
            format!("/v1/members/{member}/subscriptions"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/members/{member}/subscriptions"),
            Some(
                json!({"plan_id": plan, "start_date": "2027-02-01", "delivery": {"address": "x"}}),
            ),
        ),
        // The other tenant's own member with this tenant's plan.
        (
            Method::POST,
            format!("/v1/members/{other_member}/subscriptions"),
            Some(
                json!({"plan_id": plan, "start_date": "2027-02-01", "delivery": {"address": "x"}}),
            ),
        ),
        (Method::GET, "/v1/subscriptions/sub_nope".into(), None),
        (Method::GET, "/v1/subscription-plans/nope".into(), None),
    ];
    for (method, path, body) in calls {
        let request = build(method.clone(), &path, Some(&other), body.as_ref(), None);
        let reply = app.send(request).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            reply.body
        );
    }
    // Nothing changed.
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["status"], "active");
    let list = {
        let request = build(Method::GET, "/v1/subscriptions", Some(&other), None, None);
        app.send(request).await.body
    };
    assert!(list["data"].as_array().unwrap().is_empty());
}

async fn subscriptions_console_page_shows_plans_forecast_and_pauses(app: TestApp) {
    use shequn::console::operators::Role;
    app.clock.set(local("2027-01-04", 9));
    let beans = product(&app, "BEANS", 100).await;
    let plan = monthly_prepaid(&app, &beans, 1000).await;
    let member = app.member("m1").await;
    let sub = subscribe(&app, &member, &plan, "2027-01-20").await;
    let id = sub["id"].as_str().unwrap().to_owned();
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let page = viewer.get("/console/subscriptions").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = html(&page);
    assert!(
        text.contains(r#"href="/console/subscriptions" class="active""#),
        "{text}"
    );
    assert!(text.contains("黄豆月卡"), "{text}");
    assert!(text.contains("2027-01-18"), "the forecast's weeks: {text}");
    assert!(text.contains("2027-01-20"), "the next delivery: {text}");
    assert!(text.contains(&format!("/console/members/{member}")));
    assert!(!text.contains("/pause"), "a viewer is offered no change");
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let action = format!("/console/subscriptions/{id}/pause");
    assert!(html(&ops.get("/console/subscriptions").await).contains(&action));
    let token = ops.csrf().await;
    let paused = ops.post(&action, &[("csrf_token", &token)]).await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&paused), "/console/subscriptions?done=pause");
    let view = app.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(view["status"], "paused");
    let listed = html(&ops.get("/console/subscriptions?status=paused").await);
    assert!(
        listed.contains(&format!("/console/subscriptions/{id}/resume")),
        "{listed}"
    );
    let unknown = ops
        .post(
            &format!("/console/subscriptions/{id}/forget"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// The order hooks skip every order that is not a subscription's by its campaign kind: a
/// flash-sale order that expires and a shop order refunded in full leave a subscription exactly
/// as it was (not even `updated_at` moves), while a merchant's full refund of a prepaid order
/// and an unpaid prepaid order's expiry still end theirs.
async fn subscriptions_ignore_other_orders_and_end_with_their_own_prepaid_order(app: TestApp) {
    app.clock.set(local("2027-01-10", 9));
    let beans = product(&app, "BEANS", 100).await;
    let tea = product(&app, "TEA", 100).await;
    let plan = monthly_prepaid(&app, &beans, 1000).await;
    let paying = app.member("paying").await;
    let late = app.member("late").await;
    let paid_sub = subscribe(&app, &paying, &plan, "2027-01-31").await;
    let paid_id = paid_sub["id"].as_str().unwrap().to_owned();
    let prepaid_order = paid_sub["order_id"].as_str().unwrap().to_owned();
    pay_external(&app, &prepaid_order, "pay-1").await;
    let unpaid_sub = subscribe(&app, &late, &plan, "2027-01-31").await;
    let unpaid_id = unpaid_sub["id"].as_str().unwrap().to_owned();
    let before = app.get(&format!("/v1/subscriptions/{paid_id}")).await.body;
    assert_eq!(before["status"], "active", "{before}");
    assert_eq!(
        before["deliveries"].as_array().unwrap().len(),
        6,
        "{before}"
    );

    // The subscriber's flash-sale order is left unpaid past its 60 s deadline.
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": tea, "price": 990, "stock": 5, "ends_at": ends,
                    "payment_timeout_secs": 60}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let flash = app
        .post(
            &format!(
                "/v1/flash-sales/{}/orders",
                sale.body["id"].as_str().unwrap()
            ),
            &json!({"member_id": paying}),
        )
        .await;
    assert_eq!(flash.status, StatusCode::CREATED, "{}", flash.body);
    let flash_order = flash.body["order_id"].as_str().unwrap().to_owned();
    // A shop order of the same member is paid, then refunded in full.
    let shop = app
        .post(
            "/v1/orders",
            &json!({"member_id": paying, "items": [{"product_id": tea, "qty": 1}]}),
        )
        .await;
    assert_eq!(shop.status, StatusCode::CREATED, "{}", shop.body);
    let shop_order = shop.body["id"].as_str().unwrap().to_owned();
    pay_external(&app, &shop_order, "pay-shop").await;
    app.clock.advance(SignedDuration::from_secs(61));
    let reply = app
        .post(
            &format!("/v1/orders/{shop_order}/refunds"),
            &json!({"reason": "damaged"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["order_status"], "refunded", "{}", reply.body);
    run_jobs(&app).await;
    let flash_view = app.get(&format!("/v1/orders/{flash_order}")).await.body;
    assert_eq!(flash_view["status"], "expired", "{flash_view}");
    let after = app.get(&format!("/v1/subscriptions/{paid_id}")).await.body;
    assert_eq!(after, before);
    assert!(events_of(&app, "subscription.cancelled").await.is_empty());

    // The merchant refunds the prepaid order in full: its subscription ends with it.
    let reply = app
        .post(
            &format!("/v1/orders/{prepaid_order}/refunds"),
            &json!({"reason": "customer moved", "restock": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["amount"], 6000, "{}", reply.body);
    let view = app.get(&format!("/v1/subscriptions/{paid_id}")).await.body;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["refunded"], 6000, "{view}");
    assert!(view["deliveries"].as_array().unwrap().is_empty(), "{view}");
    let cancelled = events_of(&app, "subscription.cancelled").await;
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0]["data"]["subscription_id"], paid_id.as_str());
    assert_eq!(cancelled[0]["data"]["reason"], "order_refunded");

    // The other member's prepaid order was never paid: at its deadline it expires and ends
    // its subscription.
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{unpaid_id}"))
            .await
            .body["status"],
        "active"
    );
    app.clock.advance(SignedDuration::from_secs(30 * 60));
    run_jobs(&app).await;
    let view = app
        .get(&format!("/v1/subscriptions/{unpaid_id}"))
        .await
        .body;
    assert_eq!(view["status"], "cancelled", "{view}");
    let cancelled = events_of(&app, "subscription.cancelled").await;
    assert_eq!(cancelled.len(), 2, "{cancelled:?}");
    assert!(
        cancelled
            .iter()
            .any(|e| e["data"]["subscription_id"] == unpaid_id.as_str()
                && e["data"]["reason"] == "unpaid"),
        "{cancelled:?}"
    );
    verify_ok(&app).await;
}
