//! A node's memory of its flash sales (`orders::flash_sale_gate`): sold-out, unopened and ended
//! sales refused from memory with the batch's own error bodies; units that come back (a
//! cancelled or expired order, a refund with restocking) reach the node that returned them at
//! once and every other node through the database within the recheck interval; and nothing is
//! ever oversold while the nodes remember.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use jiff::SignedDuration;
use serde_json::{json, Value};
use shequn::orders::flash_sale_gate::RECHECK_MICROS;
use tower::ServiceExt as _;

use crate::backend_tests;
use crate::support::{Reply, TestApp};

backend_tests!(
    sold_out_is_refused_from_memory_with_the_same_body_and_returned_units_sell_again,
    not_started_and_ended_are_refused_from_memory_with_the_same_bodies,
    units_returned_on_one_node_reach_the_other_through_the_database,
    two_remembering_nodes_never_oversell_while_units_come_and_go,
);

/// A flash sale of `stock` units (one per member), paid within a minute, open for an hour from
/// `starts_in`.
async fn sale(app: &TestApp, stock: i64, starts_in: SignedDuration) -> String {
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "Gate", "sku": format!("GATE-{stock}-{}", starts_in.as_secs()),
                    "price": 9900, "stock": 0}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let starts = app.clock_now() + starts_in;
    let reply = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": product.body["id"], "price": 990, "stock": stock,
                    "per_member_limit": 1, "starts_at": starts.to_string(),
                    "ends_at": (starts + SignedDuration::from_hours(1)).to_string(),
                    "payment_timeout_secs": 60}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// `POST /v1/flash-sales/{sale}/orders` for `member` on `router` (a node).
async fn buy(app: &TestApp, router: &Router, sale: &str, member: &str) -> Reply {
    let request = app.request(
        Method::POST,
        &format!("/v1/flash-sales/{sale}/orders"),
        Some(&json!({"member_id": member})),
    );
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap(),
    }
}

fn order_id(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["order_id"].as_str().unwrap().to_owned()
}

fn assert_refused(reply: &Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
}

async fn counts(app: &TestApp, sale: &str) -> (i64, i64, i64) {
    let view = app.get(&format!("/v1/flash-sales/{sale}")).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    let n = |field: &str| view.body[field].as_i64().unwrap();
    (n("reserved"), n("sold"), n("available"))
}

/// Units held by the sale's unpaid and paid orders, counted in the database.
async fn units_in_orders(app: &TestApp, sale: &str) -> i64 {
    let mut conn = app.state.db.read().acquire().await.unwrap();
    sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) FROM customer_order \
         WHERE campaign_id = $1 AND status IN ('pending_payment', 'paid')",
    )
    .bind(sale)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// A second node: its own state (connection pools, batchers, memory) on the same database and
/// the same clock.
async fn second_node(app: &TestApp) -> Router {
    let db = shequn::common::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    shequn::app(shequn::AppState::new(db, Arc::new(app.clock.clone())))
}

fn past_the_recheck_interval() -> SignedDuration {
    SignedDuration::from_micros(RECHECK_MICROS)
}

async fn sold_out_is_refused_from_memory_with_the_same_body_and_returned_units_sell_again(
    app: TestApp,
) {
    let [a, b, c, d] = [
        app.member("a").await,
        app.member("b").await,
        app.member("c").await,
        app.member("d").await,
    ];
    let node = app.router.clone();
    let sale = sale(&app, 1, SignedDuration::ZERO).await;
    let a_order = order_id(&buy(&app, &node, &sale, &a).await);
    // The batch refuses b and the node remembers; c is refused from memory, word for word.
    let from_batch = buy(&app, &node, &sale, &b).await;
    assert_refused(&from_batch, "sold_out");
    assert_eq!(from_batch.body["error"]["details"], json!({"available": 0}));
    let from_memory = buy(&app, &node, &sale, &c).await;
    assert_eq!(from_memory.status, from_batch.status);
    assert_eq!(from_memory.body, from_batch.body);

    // Cancelled on this node: the unit sells again at once (the clock has not moved).
    let cancelled = app
        .post(&format!("/v1/orders/{a_order}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let c_order = order_id(&buy(&app, &node, &sale, &c).await);
    assert_refused(&buy(&app, &node, &sale, &d).await, "sold_out");

    // Expired unpaid: the scheduler returns it, and d gets it.
    app.clock.advance(SignedDuration::from_secs(61));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let expired = app.get(&format!("/v1/orders/{c_order}")).await;
    assert_eq!(expired.body["status"], "expired", "{}", expired.body);
    let d_order = order_id(&buy(&app, &node, &sale, &d).await);
    assert_refused(&buy(&app, &node, &sale, &b).await, "sold_out");

    // Paid, then refunded in full with its unit put back: b gets it.
    let paid = app
        .post(
            &format!("/v1/orders/{d_order}/payments"),
            &json!({"method": "external", "reference": "gate-d"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(counts(&app, &sale).await, (0, 1, 0));
    assert_refused(&buy(&app, &node, &sale, &b).await, "sold_out");
    let refund = app
        .post(
            &format!("/v1/orders/{d_order}/refunds"),
            &json!({"amount": 990, "reason": "changed mind", "restock": true}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    order_id(&buy(&app, &node, &sale, &b).await);
    assert_refused(&buy(&app, &node, &sale, &a).await, "sold_out");
    assert_eq!(counts(&app, &sale).await, (1, 0, 0));
    assert_eq!(units_in_orders(&app, &sale).await, 1);
}

async fn not_started_and_ended_are_refused_from_memory_with_the_same_bodies(app: TestApp) {
    let [a, b] = [app.member("a").await, app.member("b").await];
    let node = app.router.clone();
    let sale = sale(&app, 5, SignedDuration::from_mins(10)).await;
    let from_batch = buy(&app, &node, &sale, &a).await;
    assert_refused(&from_batch, "not_started");
    assert!(from_batch.body["error"]["details"]["starts_at"].is_string());
    let from_memory = buy(&app, &node, &sale, &b).await;
    assert_eq!(from_memory.body, from_batch.body);

    // Open: the memory steps aside and the batch sells.
    app.clock.advance(SignedDuration::from_mins(10));
    order_id(&buy(&app, &node, &sale, &a).await);

    // Over: ended, first from the batch on another node, then from each node's memory.
    app.clock.advance(SignedDuration::from_hours(1));
    let other = second_node(&app).await;
    let from_batch = buy(&app, &other, &sale, &b).await;
    assert_refused(&from_batch, "ended");
    assert_eq!(buy(&app, &other, &sale, &b).await.body, from_batch.body);
    assert_eq!(buy(&app, &node, &sale, &b).await.body, from_batch.body);
    assert_eq!(counts(&app, &sale).await, (1, 0, 4));
}

async fn units_returned_on_one_node_reach_the_other_through_the_database(app: TestApp) {
    let [a, b, c, d] = [
        app.member("a").await,
        app.member("b").await,
        app.member("c").await,
        app.member("d").await,
    ];
    let (one, two) = (app.router.clone(), second_node(&app).await);
    let sale = sale(&app, 1, SignedDuration::ZERO).await;
    let a_order = order_id(&buy(&app, &one, &sale, &a).await);
    assert_refused(&buy(&app, &two, &sale, &b).await, "sold_out");

    // Node one cancels; node two has not read the sale since it saw it sold out, so it still
    // refuses from memory although the database has the unit: no database touched.
    let cancelled = app
        .post(&format!("/v1/orders/{a_order}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(counts(&app, &sale).await, (0, 0, 1));
    assert_refused(&buy(&app, &two, &sale, &b).await, "sold_out");
    // Once its memory is older than the recheck interval, node two reads the sale again.
    app.clock.advance(past_the_recheck_interval());
    let b_order = order_id(&buy(&app, &two, &sale, &b).await);

    // And the other way: node one remembers the sell-out, node two cancels.
    assert_refused(&buy(&app, &one, &sale, &c).await, "sold_out");
    let request = app.request(
        Method::POST,
        &format!("/v1/orders/{b_order}/cancel"),
        Some(&json!({})),
    );
    let cancelled = two.clone().oneshot(request).await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_refused(&buy(&app, &one, &sale, &c).await, "sold_out");
    app.clock.advance(past_the_recheck_interval());
    order_id(&buy(&app, &one, &sale, &c).await);
    assert_refused(&buy(&app, &one, &sale, &d).await, "sold_out");
    assert_refused(&buy(&app, &two, &sale, &d).await, "sold_out");
    assert_eq!(counts(&app, &sale).await, (1, 0, 0));
    assert_eq!(units_in_orders(&app, &sale).await, 1);
}

/// Two nodes sell 50 units to 300 concurrent buyers; 20 orders are cancelled (on both nodes)
/// while a second wave of 300 rushes; then buyers come one at a time until the sale is sold out
/// again. Exactly 50 units are held at the end and the counters equal the orders.
async fn two_remembering_nodes_never_oversell_while_units_come_and_go(app: TestApp) {
    let tenant = shequn::common::ids::TenantId::from_db(app.tenant_id.clone());
    let buyers: Vec<String> = shequn::bench::ledger::setup_members(&app.state.db, &tenant, 700)
        .await
        .unwrap()
        .iter()
        .map(|a| a.member_id().unwrap().to_owned())
        .collect();
    let nodes = [app.router.clone(), second_node(&app).await];
    let sale = sale(&app, 50, SignedDuration::ZERO).await;
    let rush = |members: &[String]| {
        let tasks: Vec<_> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let request = app.request(
                    Method::POST,
                    &format!("/v1/flash-sales/{sale}/orders"),
                    Some(&json!({"member_id": m})),
                );
                let router = nodes[i % 2].clone();
                tokio::spawn(async move {
                    let response = router.oneshot(request).await.unwrap();
                    let status = response.status();
                    let bytes = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    (status, serde_json::from_slice::<Value>(&bytes).unwrap())
                })
            })
            .collect();
        async move {
            let mut orders: Vec<String> = Vec::new();
            for task in tasks {
                let (status, body) = task.await.unwrap();
                match status {
                    StatusCode::CREATED => orders.push(body["order_id"].as_str().unwrap().into()),
                    StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "sold_out"),
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            orders
        }
    };
    let first: Vec<String> = rush(&buyers[..300]).await;
    assert_eq!(first.len(), 50);

    // Cancellations on both nodes while the second wave rushes.
    let cancels: Vec<_> = first[..20]
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let request = app.request(
                Method::POST,
                &format!("/v1/orders/{order}/cancel"),
                Some(&json!({})),
            );
            let router = nodes[i % 2].clone();
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let second = rush(&buyers[300..600]);
    app.clock.advance(past_the_recheck_interval());
    let second: Vec<String> = second.await;
    for cancel in cancels {
        assert_eq!(cancel.await.unwrap(), StatusCode::OK);
    }
    assert!(
        second.len() <= 20,
        "{} sold in the second wave",
        second.len()
    );

    // One at a time until sold out: every unit returned is sold again, and no more.
    app.clock.advance(past_the_recheck_interval());
    let mut third = 0;
    for (i, member) in buyers[600..].iter().enumerate() {
        let reply = buy(&app, &nodes[i % 2], &sale, member).await;
        if reply.status == StatusCode::CREATED {
            third += 1;
        } else {
            assert_refused(&reply, "sold_out");
        }
    }
    assert_eq!(second.len() + third, 20);
    assert_eq!(units_in_orders(&app, &sale).await, 50);
    assert_eq!(counts(&app, &sale).await, (50, 0, 0));
}
