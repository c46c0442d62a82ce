//! Orders, flash sales and group buys: pricing, payment, deadlines, refunds, and exactness of
//! stock, per-member limits and team slots under concurrency.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use futures::future::join_all;
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{build, TestApp};

backend_tests!(
    checkout_prices_in_order_pays_from_the_wallet_and_refunds_partially,
    unpaid_orders_expire_release_stock_and_refuse_late_payment,
    payments_are_idempotent_on_their_reference,
    external_orders_are_ingested_paid_once,
    bad_order_requests_are_refused_whole,
    flash_sale_of_100_units_to_2000_concurrent_buyers_sells_exactly_100,
    flash_sale_per_member_limit_holds_under_concurrent_requests,
    flash_sale_stays_exact_with_two_nodes_on_one_database,
    flash_sale_reservations_return_when_unpaid_and_windows_are_enforced,
    group_buy_ten_joins_for_the_last_two_slots_get_exactly_two,
    group_buy_team_succeeds_when_its_members_have_paid,
    group_buy_expiry_refunds_paid_members_exactly_once_across_a_restart,
    group_buy_virtual_completion_succeeds_without_refunds,
    order_product_and_flash_sale_lists_page_and_refuse_a_foreign_cursor,
    group_buys_are_listed_newest_first_in_pages_of_their_own_tenant,
);

async fn product(
    app: &TestApp,
    sku: &str,
    price: i64,
    member_price: Option<i64>,
    stock: i64,
) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": sku, "sku": sku, "price": price, "member_price": member_price,
                    "stock": stock}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn stock_of(app: &TestApp, product: &str) -> i64 {
    app.get(&format!("/v1/products/{product}")).await.body["stock"]
        .as_i64()
        .unwrap()
}

async fn grant_points(app: &TestApp, member: &str, points: i64) {
    let reply = app
        .post(
            "/v1/ledger/transfers",
            &json!({"transfers": [{"id": format!("grant-{member}"), "from": "system:issuance",
                    "to": format!("member:{member}"), "asset": "points", "amount": points,
                    "code": "manual_grant"}]}),
        )
        .await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{}",
        reply.body
    );
}

async fn fund_wallet(app: &TestApp, member: &str, fen: i64) {
    let plan = app
        .post(
            "/v1/topup-plans",
            &json!({"name": format!("充{fen}"), "pay": fen, "bonus": 0}),
        )
        .await;
    assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
    let reply = app
        .post(
            &format!("/v1/members/{member}/topups"),
            &json!({"plan_id": plan.body["id"], "payment_ref": format!("pay-{member}")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

async fn balance(app: &TestApp, member: &str, asset: &str) -> Value {
    app.get(&format!("/v1/members/{member}/balances"))
        .await
        .body[asset]
        .clone()
}

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn pay(app: &TestApp, order: &str, method: &str, reference: &str) -> crate::support::Reply {
    app.post(
        &format!("/v1/orders/{order}/payments"),
        &json!({"method": method, "reference": reference}),
    )
    .await
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}&limit=1000")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn checkout_prices_in_order_pays_from_the_wallet_and_refunds_partially(app: TestApp) {
    let m = app.member("buyer").await;
    let a = product(&app, "A", 1000, None, 10).await;
    let b = product(&app, "B", 2000, Some(1800), 10).await;
    grant_points(&app, &m, 10_000).await;
    fund_wallet(&app, &m, 5000).await;
    let template = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": "满2000减300", "kind": "amount_off", "amount_off": 300,
                    "min_spend": 2000, "total_stock": 10, "per_member_limit": 1,
                    "valid_days": 7}),
        )
        .await;
    assert_eq!(template.status, StatusCode::CREATED, "{}", template.body);
    let coupon = app
        .post(
            &format!(
                "/v1/coupon-templates/{}/claim",
                template.body["id"].as_str().unwrap()
            ),
            &json!({"member_id": m}),
        )
        .await;
    assert_eq!(coupon.status, StatusCode::CREATED, "{}", coupon.body);
    let coupon_id = coupon.body["id"].as_str().unwrap().to_owned();

    let placed = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "items": [{"product_id": a, "qty": 2},
                    {"product_id": b, "qty": 1}], "coupon_id": coupon_id,
                    "points_to_burn": 1000}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let order = placed.body["id"].as_str().unwrap().to_owned();
    // 2 × 1000 (list) + 1 × 1800 (member price) = 3800; coupon −300; 1000 points = −1000.
    assert_eq!(placed.body["status"], "pending_payment");
    assert_eq!(placed.body["subtotal"], 3800);
    assert_eq!(placed.body["pricing"]["coupon_discount"], 300);
    assert_eq!(placed.body["pricing"]["points_value"], 1000);
    assert_eq!(placed.body["total"], 2500);
    assert_eq!(placed.body["items"][1]["price_kind"], "member");
    assert_eq!(stock_of(&app, &a).await, 8);
    assert_eq!(balance(&app, &m, "points").await["available"], 9000);
    let used = app.get(&format!("/v1/coupons/{coupon_id}")).await;
    assert_eq!(used.body["status"], "redeemed");

    let paid = pay(&app, &order, "wallet", "wx-1").await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.body["status"], "paid");
    assert_eq!(balance(&app, &m, "wallet_principal").await["balance"], 2500);
    let points = balance(&app, &m, "points").await;
    assert_eq!(points["balance"], 9000, "burnt points are taken at payment");
    assert_eq!(
        points["pending_credits"], 25,
        "1 point per yuan paid, pending"
    );

    // Partial refund: 1000 of 2500 → 40 % of the 1000 burnt points come back.
    let first = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"amount": 1000, "reason": "one item damaged", "reference": "rf-1"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["points_returned"], 400);
    assert_eq!(first.body["order_status"], "paid");
    assert_eq!(first.body["coupon_returned"], false);
    assert_eq!(balance(&app, &m, "wallet_principal").await["balance"], 3500);
    let points = balance(&app, &m, "points").await;
    assert_eq!(points["balance"], 9400);
    assert_eq!(
        points["pending_credits"], 15,
        "earned points follow the 1500 still paid"
    );
    // The same reference replays.
    let again = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"amount": 1000, "reason": "one item damaged", "reference": "rf-1"}),
        )
        .await;
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(balance(&app, &m, "wallet_principal").await["balance"], 3500);
    // More than remains is refused.
    let too_much = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"amount": 1501, "reason": "x"}),
        )
        .await;
    assert_eq!(
        too_much.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        too_much.body
    );

    // The rest: everything is back.
    let rest = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"reason": "customer returned all"}),
        )
        .await;
    assert_eq!(rest.status, StatusCode::CREATED, "{}", rest.body);
    assert_eq!(rest.body["amount"], 1500);
    assert_eq!(rest.body["points_returned"], 600);
    assert_eq!(rest.body["order_status"], "refunded");
    assert_eq!(rest.body["coupon_returned"], true);
    assert_eq!(rest.body["restocked"], true);
    assert_eq!(balance(&app, &m, "wallet_principal").await["balance"], 5000);
    let points = balance(&app, &m, "points").await;
    assert_eq!(points["balance"], 10_000);
    assert_eq!(points["pending_credits"], 0);
    assert_eq!(stock_of(&app, &a).await, 10);
    assert_eq!(stock_of(&app, &b).await, 10);
    let coupon = app.get(&format!("/v1/coupons/{coupon_id}")).await;
    assert_eq!(coupon.body["status"], "active");
    let nothing = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"reason": "again"}),
        )
        .await;
    assert_eq!(nothing.status, StatusCode::CONFLICT);
    let refunds = app.get(&format!("/v1/orders/{order}/refunds")).await;
    assert_eq!(refunds.body["data"].as_array().unwrap().len(), 2);
    for kind in ["order.created", "order.paid", "order.refunded"] {
        assert!(!events_of(&app, kind).await.is_empty(), "{kind}");
    }
    verify_ok(&app).await;
}

async fn unpaid_orders_expire_release_stock_and_refuse_late_payment(app: TestApp) {
    let m = app.member("late").await;
    let a = product(&app, "A", 1000, None, 10).await;
    let placed = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "items": [{"product_id": a, "qty": 3}],
                    "payment_timeout_secs": 60}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let first = placed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(stock_of(&app, &a).await, 7);
    let second = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "items": [{"product_id": a, "qty": 1}],
                    "payment_timeout_secs": 60}),
        )
        .await;
    let second = second.body["id"].as_str().unwrap().to_owned();
    assert_eq!(shequn::server::run_due_jobs(&app.state).await.unwrap(), 0);

    app.clock.advance(SignedDuration::from_secs(61));
    // Past the deadline but before any sweep: refused all the same.
    let late = pay(&app, &second, "external", "late-1").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(late.body["error"]["code"], "order_expired");

    assert_eq!(shequn::server::run_due_jobs(&app.state).await.unwrap(), 2);
    assert_eq!(
        shequn::server::run_due_jobs(&app.state).await.unwrap(),
        0,
        "once"
    );
    let order = app.get(&format!("/v1/orders/{first}")).await;
    assert_eq!(order.body["status"], "expired");
    assert_eq!(stock_of(&app, &a).await, 10);
    let late = pay(&app, &first, "external", "late-2").await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["error"]["code"], "order_expired");
    assert_eq!(events_of(&app, "order.expired").await.len(), 2);
}

async fn payments_are_idempotent_on_their_reference(app: TestApp) {
    let m = app.member("p").await;
    let a = product(&app, "A", 1000, None, 10).await;
    let mut orders = Vec::new();
    for _ in 0..2 {
        let placed = app
            .post(
                "/v1/orders",
                &json!({"member_id": m, "items": [{"product_id": a, "qty": 1}]}),
            )
            .await;
        orders.push(placed.body["id"].as_str().unwrap().to_owned());
    }
    let replies = join_all((0..10).map(|_| pay(&app, &orders[0], "external", "ext-1"))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["status"], "paid");
    }
    assert_eq!(events_of(&app, "order.paid").await.len(), 1, "paid once");
    let reused = pay(&app, &orders[1], "external", "ext-1").await;
    assert_eq!(reused.status, StatusCode::CONFLICT);
    assert_eq!(reused.body["error"]["code"], "payment_reference_reused");
    let twice = pay(&app, &orders[0], "external", "ext-2").await;
    assert_eq!(twice.body["error"]["code"], "already_paid");
    // Move it along.
    let fulfilled = app
        .post(&format!("/v1/orders/{}/fulfil", orders[0]), &json!({}))
        .await;
    assert_eq!(fulfilled.body["status"], "fulfilled", "{}", fulfilled.body);
    let completed = app
        .post(&format!("/v1/orders/{}/complete", orders[0]), &json!({}))
        .await;
    assert_eq!(completed.body["status"], "completed");
    let cancel = app
        .post(&format!("/v1/orders/{}/cancel", orders[0]), &json!({}))
        .await;
    assert_eq!(cancel.body["error"]["code"], "not_cancellable");
    let cancelled = app
        .post(&format!("/v1/orders/{}/cancel", orders[1]), &json!({}))
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    assert_eq!(stock_of(&app, &a).await, 9);
    // Wallet payment without funds.
    let placed = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "items": [{"product_id": a, "qty": 1}]}),
        )
        .await;
    let broke = pay(&app, placed.body["id"].as_str().unwrap(), "wallet", "w-1").await;
    assert_eq!(broke.status, StatusCode::CONFLICT);
    assert_eq!(broke.body["error"]["code"], "insufficient_funds");
}

async fn external_orders_are_ingested_paid_once(app: TestApp) {
    let m = app.member("ext").await;
    let a = product(&app, "A", 1000, None, 5).await;
    let paid_at = (app.clock_now() - SignedDuration::from_hours(2)).to_string();
    let body = json!({"member_id": m, "items": [{"product_id": a, "qty": 2}],
                      "source": "external", "paid_at": paid_at, "total": 1800,
                      "external_reference": "shop-77"});
    let reply = app.post("/v1/orders", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status"], "paid");
    assert_eq!(reply.body["total"], 1800);
    assert_eq!(
        stock_of(&app, &a).await,
        5,
        "no stock for orders placed elsewhere"
    );
    assert_eq!(balance(&app, &m, "points").await["pending_credits"], 18);
    let again = app.post("/v1/orders", &body).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "order_exists");
    let list = app.get(&format!("/v1/orders?member_id={m}")).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    // A payment in year 0001 is a typing error, not history.
    let ancient = json!({"member_id": m, "items": [{"product_id": a, "qty": 1}],
                         "source": "external", "paid_at": "0001-01-01T00:00:00Z",
                         "external_reference": "shop-78"});
    let reply = app.post("/v1/orders", &ancient).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["details"]["field"], "paid_at");
}

async fn bad_order_requests_are_refused_whole(app: TestApp) {
    let m = app.member("bad").await;
    let a = product(&app, "A", 1000, None, 2).await;
    let b = product(&app, "B", 1000, None, 100).await;
    let cases = [
        (
            json!({"member_id": m, "items": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": a, "qty": 0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": a, "qty": 1}, {"product_id": a, "qty": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": "prd_nope", "qty": 1}]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"member_id": "mem_nope", "items": [{"product_id": a, "qty": 1}]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": a, "qty": 1}], "points_to_burn": 100}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": a, "qty": 1}], "source": "mars"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": a, "qty": 1}], "source": "external"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"member_id": m, "items": [{"product_id": a, "qty": 1}], "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in cases {
        let reply = app.post("/v1/orders", &body).await;
        assert_eq!(reply.status, status, "{body} → {}", reply.body);
    }
    // A shortfall on the second line refuses the whole order: the first line's stock stays.
    let short = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "items": [{"product_id": b, "qty": 5},
                    {"product_id": a, "qty": 3}]}),
        )
        .await;
    assert_eq!(short.status, StatusCode::CONFLICT);
    assert_eq!(short.body["error"]["code"], "out_of_stock");
    assert_eq!(stock_of(&app, &b).await, 100);
    assert_eq!(stock_of(&app, &a).await, 2);
    let missing = app.get("/v1/orders/ord_missing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_pay = pay(&app, "ord_missing", "cash", "r").await;
    assert_eq!(bad_pay.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn members_in_bulk(app: &TestApp, count: usize) -> Vec<String> {
    let tenant = shequn::common::ids::TenantId::from_db(app.tenant_id.clone());
    shequn::bench::ledger::setup_members(&app.state.db, &tenant, count)
        .await
        .unwrap()
        .iter()
        .map(|a| a.member_id().unwrap().to_owned())
        .collect()
}

async fn flash_sale(app: &TestApp, stock: i64, limit: i64, timeout: i64) -> String {
    let p = product(app, &format!("F{stock}-{limit}"), 9900, None, 0).await;
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    let reply = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": p, "price": 990, "stock": stock, "per_member_limit": limit,
                    "ends_at": ends, "payment_timeout_secs": timeout}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["available"], stock);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn orders_in_campaign(app: &TestApp, campaign: &str) -> i64 {
    let mut conn = app.state.db.read().acquire().await.unwrap();
    sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM customer_order WHERE campaign_id = $1 \
         AND status IN ('pending_payment', 'paid')",
    )
    .bind(campaign)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

async fn flash_sale_of_100_units_to_2000_concurrent_buyers_sells_exactly_100(app: TestApp) {
    let buyers = members_in_bulk(&app, 2000).await;
    let sale = flash_sale(&app, 100, 1, 900).await;
    let path = format!("/v1/flash-sales/{sale}/orders");
    let router = app.router.clone();
    let tasks: Vec<_> = buyers
        .iter()
        .map(|m| {
            let request = app.request(
                axum::http::Method::POST,
                &path,
                Some(&json!({"member_id": m, "qty": 1})),
            );
            let router = router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt as _;
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
    let mut sold = 0;
    let mut sold_out = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => {
                sold += 1;
                assert_eq!(body["status"], "pending_payment");
                assert!(body["order_id"].as_str().unwrap().starts_with("ord_"));
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "sold_out", "{body}");
                sold_out += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(sold, 100);
    assert_eq!(sold_out, 1900);
    assert_eq!(orders_in_campaign(&app, &sale).await, 100);
    let view = app.get(&format!("/v1/flash-sales/{sale}")).await;
    assert_eq!(view.body["reserved"], 100);
    assert_eq!(view.body["sold"], 0);
    assert_eq!(view.body["available"], 0);
    assert_eq!(view.body["status"], "sold_out");
}

async fn flash_sale_per_member_limit_holds_under_concurrent_requests(app: TestApp) {
    let m = app.member("greedy").await;
    let sale = flash_sale(&app, 1000, 2, 900).await;
    let path = format!("/v1/flash-sales/{sale}/orders");
    let body = json!({"member_id": m});
    let replies = join_all((0..50).map(|_| app.post(&path, &body))).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(ok, 2);
    for reply in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert_eq!(reply.body["error"]["code"], "limit_reached");
    }
    assert_eq!(orders_in_campaign(&app, &sale).await, 2);
    let too_many = app.post(&path, &json!({"member_id": m, "qty": 101})).await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app.post(&path, &json!({"member_id": "mem_0000"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // An erased member may not buy; the live members deciding beside it still do.
    let gone = app.member("gone").await;
    let erased = app.delete(&format!("/v1/members/{gone}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{:?}", erased.body);
    let mut buyers = Vec::new();
    for i in 0..4 {
        buyers.push(app.member(&format!("live-{i}")).await);
    }
    buyers.push(gone.clone());
    let bodies: Vec<Value> = buyers.iter().map(|m| json!({"member_id": m})).collect();
    let replies = join_all(bodies.iter().map(|body| app.post(&path, body))).await;
    for (buyer, reply) in buyers.iter().zip(&replies) {
        if buyer == &gone {
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{:?}", reply.body);
            assert_eq!(reply.body["error"]["code"], "not_found");
        } else {
            assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        }
    }
    assert_eq!(orders_in_campaign(&app, &sale).await, 6);
}

async fn flash_sale_reservations_return_when_unpaid_and_windows_are_enforced(app: TestApp) {
    let [a, b, c] = [
        app.member("a").await,
        app.member("b").await,
        app.member("c").await,
    ];
    let sale = flash_sale(&app, 2, 1, 60).await;
    let path = format!("/v1/flash-sales/{sale}/orders");
    let first = app.post(&path, &json!({"member_id": a})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = app.post(&path, &json!({"member_id": b})).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let third = app.post(&path, &json!({"member_id": c})).await;
    assert_eq!(third.body["error"]["code"], "sold_out");
    // a pays; b does not.
    let paid = pay(
        &app,
        first.body["order_id"].as_str().unwrap(),
        "external",
        "fs-a",
    )
    .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    app.clock.advance(SignedDuration::from_secs(61));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let view = app.get(&format!("/v1/flash-sales/{sale}")).await;
    assert_eq!(view.body["sold"], 1);
    assert_eq!(view.body["reserved"], 0);
    assert_eq!(view.body["available"], 1);
    let third = app.post(&path, &json!({"member_id": c})).await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.body);
    // b's expired order no longer counts toward b's limit either.
    let b_again = app.post(&path, &json!({"member_id": b})).await;
    assert_eq!(b_again.body["error"]["code"], "sold_out");

    // Windows.
    let p = product(&app, "W", 100, None, 0).await;
    let later = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": p, "price": 1, "stock": 5,
                    "starts_at": (app.clock_now() + SignedDuration::from_hours(1)).to_string(),
                    "ends_at": (app.clock_now() + SignedDuration::from_hours(2)).to_string()}),
        )
        .await;
    let later_id = later.body["id"].as_str().unwrap();
    let early = app
        .post(
            &format!("/v1/flash-sales/{later_id}/orders"),
            &json!({"member_id": a}),
        )
        .await;
    assert_eq!(early.body["error"]["code"], "not_started");
    app.clock.advance(SignedDuration::from_hours(3));
    let ended = app
        .post(
            &format!("/v1/flash-sales/{later_id}/orders"),
            &json!({"member_id": a}),
        )
        .await;
    assert_eq!(ended.body["error"]["code"], "ended");
    let backwards = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": p, "price": 1, "stock": 5,
                    "ends_at": (app.clock_now() - SignedDuration::from_hours(1)).to_string()}),
        )
        .await;
    assert_eq!(backwards.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = app
        .post(
            "/v1/flash-sales/fls_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa/orders",
            &json!({"member_id": a}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn group_buy(app: &TestApp, team_size: i64, virtual_completion: bool) -> String {
    let p = product(
        app,
        &format!("G{team_size}{virtual_completion}"),
        5000,
        None,
        0,
    )
    .await;
    let reply = app
        .post(
            "/v1/group-buys",
            &json!({"product_id": p, "price": 2990, "team_size": team_size,
                    "duration_secs": 3600, "per_member_limit": 1,
                    "virtual_completion": virtual_completion}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn open_team(app: &TestApp, buy: &str, member: &str) -> (String, String) {
    let reply = app
        .post(
            &format!("/v1/group-buys/{buy}/teams"),
            &json!({"member_id": member}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (
        reply.body["team_id"].as_str().unwrap().to_owned(),
        reply.body["order_id"].as_str().unwrap().to_owned(),
    )
}

async fn join(app: &TestApp, team: &str, member: &str) -> crate::support::Reply {
    app.post(
        &format!("/v1/group-buys/teams/{team}/join"),
        &json!({"member_id": member}),
    )
    .await
}

async fn group_buy_ten_joins_for_the_last_two_slots_get_exactly_two(app: TestApp) {
    let members = members_in_bulk(&app, 12).await;
    let buy = group_buy(&app, 4, false).await;
    let (team, _) = open_team(&app, &buy, &members[0]).await;
    assert_eq!(
        join(&app, &team, &members[1]).await.status,
        StatusCode::CREATED
    );
    let replies = join_all(members[2..12].iter().map(|m| join(&app, &team, m))).await;
    let joined = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(joined, 2);
    for reply in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(reply.body["error"]["code"], "team_full", "{}", reply.body);
    }
    let view = app.get(&format!("/v1/group-buys/teams/{team}")).await;
    assert_eq!(view.body["status"], "open");
    assert_eq!(view.body["members"].as_array().unwrap().len(), 4);
    assert_eq!(view.body["slots_left"], 0);
    // Joining twice, or a second team beyond the limit.
    let twice = join(&app, &team, &members[0]).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let second_team = app
        .post(
            &format!("/v1/group-buys/{buy}/teams"),
            &json!({"member_id": members[0]}),
        )
        .await;
    assert_eq!(second_team.body["error"]["code"], "limit_reached");
    // Joinable teams: closest to completion first.
    let (team_b, _) = open_team(&app, &buy, &members[6]).await;
    let (team_c, _) = open_team(&app, &buy, &members[7]).await;
    assert_eq!(
        join(&app, &team_c, &members[8]).await.status,
        StatusCode::CREATED
    );
    let list = app
        .get(&format!("/v1/group-buys/{buy}/teams?joinable=true"))
        .await;
    let ids: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [team_c.as_str(), team_b.as_str()],
        "the full team is not joinable"
    );
}

async fn group_buy_team_succeeds_when_its_members_have_paid(app: TestApp) {
    let [a, b] = [app.member("a").await, app.member("b").await];
    let buy = group_buy(&app, 2, false).await;
    let (team, opener_order) = open_team(&app, &buy, &a).await;
    let joined = join(&app, &team, &b).await;
    let joiner_order = joined.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        pay(&app, &opener_order, "external", "g-a").await.status,
        StatusCode::OK
    );
    let view = app.get(&format!("/v1/group-buys/teams/{team}")).await;
    assert_eq!(view.body["status"], "open");
    assert_eq!(view.body["paid_count"], 1);
    assert_eq!(
        pay(&app, &joiner_order, "external", "g-b").await.status,
        StatusCode::OK
    );
    let view = app.get(&format!("/v1/group-buys/teams/{team}")).await;
    assert_eq!(view.body["status"], "succeeded");
    assert_eq!(events_of(&app, "group_buy.team_succeeded").await.len(), 1);
    let closed = join(&app, &team, &app.member("c").await).await;
    assert_eq!(closed.body["error"]["code"], "team_closed");
    // The deadline passing later changes nothing.
    app.clock.advance(SignedDuration::from_secs(3601));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let view = app.get(&format!("/v1/group-buys/teams/{team}")).await;
    assert_eq!(view.body["status"], "succeeded");
    assert!(events_of(&app, "refund.requested").await.is_empty());
}

async fn group_buy_expiry_refunds_paid_members_exactly_once_across_a_restart(app: TestApp) {
    let [a, b, c] = [
        app.member("a").await,
        app.member("b").await,
        app.member("c").await,
    ];
    fund_wallet(&app, &a, 10_000).await;
    let buy = group_buy(&app, 4, false).await;
    let (team, a_order) = open_team(&app, &buy, &a).await;
    let b_order = join(&app, &team, &b).await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c_order = join(&app, &team, &c).await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        pay(&app, &a_order, "wallet", "team-a").await.status,
        StatusCode::OK
    );
    assert_eq!(
        pay(&app, &b_order, "external", "team-b").await.status,
        StatusCode::OK
    );
    assert_eq!(
        balance(&app, &a, "wallet_principal").await["balance"],
        10_000 - 2990
    );

    // Restart after the deadline: a new state over the same database.
    let db = shequn::common::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    let clock =
        shequn::common::clock::ManualClock::new(app.clock_now() + SignedDuration::from_secs(3601));
    let restarted = shequn::AppState::new(db, Arc::new(clock.clone()));
    app.clock.advance(SignedDuration::from_secs(3601));
    shequn::server::run_due_jobs(&restarted).await.unwrap();
    shequn::server::run_due_jobs(&restarted).await.unwrap();
    shequn::server::run_due_jobs(&app.state).await.unwrap();

    let view = app.get(&format!("/v1/group-buys/teams/{team}")).await;
    assert_eq!(view.body["status"], "failed", "{}", view.body);
    assert_eq!(
        app.get(&format!("/v1/orders/{a_order}")).await.body["status"],
        "refunded"
    );
    assert_eq!(
        app.get(&format!("/v1/orders/{b_order}")).await.body["status"],
        "refunded"
    );
    // c never paid: its 15-minute payment deadline passed before the team's.
    assert_eq!(
        app.get(&format!("/v1/orders/{c_order}")).await.body["status"],
        "expired"
    );
    assert_eq!(
        balance(&app, &a, "wallet_principal").await["balance"],
        10_000
    );
    let requested = events_of(&app, "refund.requested").await;
    assert_eq!(requested.len(), 1, "the external payment is refunded once");
    assert_eq!(requested[0]["data"]["order_id"], b_order);
    assert_eq!(requested[0]["data"]["amount"], 2990);
    assert_eq!(events_of(&app, "group_buy.team_failed").await.len(), 1);
    assert_eq!(events_of(&app, "order.refunded").await.len(), 2);
    verify_ok(&app).await;
}

async fn group_buy_virtual_completion_succeeds_without_refunds(app: TestApp) {
    let [a, b] = [app.member("a").await, app.member("b").await];
    let buy = group_buy(&app, 3, true).await;
    let (team, a_order) = open_team(&app, &buy, &a).await;
    let b_order = join(&app, &team, &b).await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        pay(&app, &a_order, "external", "v-a").await.status,
        StatusCode::OK
    );
    app.clock.advance(SignedDuration::from_secs(3601));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let view = app.get(&format!("/v1/group-buys/teams/{team}")).await;
    assert_eq!(view.body["status"], "succeeded");
    assert_eq!(
        app.get(&format!("/v1/orders/{a_order}")).await.body["status"],
        "paid"
    );
    assert_eq!(
        app.get(&format!("/v1/orders/{b_order}")).await.body["status"],
        "expired"
    );
    assert!(events_of(&app, "refund.requested").await.is_empty());
}

/// Two nodes (separate states: their own batchers and connection pools) over one database sell
/// a stock of 100 to 600 concurrent buyers: exactly 100 orders, counters equal to the orders.
async fn flash_sale_stays_exact_with_two_nodes_on_one_database(app: TestApp) {
    let buyers = members_in_bulk(&app, 600).await;
    let sale = flash_sale(&app, 100, 1, 900).await;
    let db = shequn::common::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    let other = shequn::AppState::new(db, Arc::new(app.clock.clone()));
    let routers = [app.router.clone(), shequn::app(other)];
    let path = format!("/v1/flash-sales/{sale}/orders");
    let tasks: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let request = app.request(
                axum::http::Method::POST,
                &path,
                Some(&json!({"member_id": m})),
            );
            let router = routers[i % 2].clone();
            tokio::spawn(async move {
                use tower::ServiceExt as _;
                router.oneshot(request).await.unwrap().status()
            })
        })
        .collect();
    let mut sold = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::CREATED => sold += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(sold, 100);
    assert_eq!(orders_in_campaign(&app, &sale).await, 100);
    let view = app.get(&format!("/v1/flash-sales/{sale}")).await;
    assert_eq!(view.body["reserved"], 100);
    assert_eq!(view.body["available"], 0);
}

async fn order_product_and_flash_sale_lists_page_and_refuse_a_foreign_cursor(app: TestApp) {
    let m = app.member("pager").await;
    let mut products = Vec::new();
    for i in 0..3 {
        products.push(product(&app, &format!("PG{i}"), 1000, None, 10).await);
    }
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    for p in &products {
        let sale = app
            .post(
                "/v1/flash-sales",
                &json!({"product_id": p, "price": 500, "stock": 5, "ends_at": ends}),
            )
            .await;
        assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
        let order = app
            .post(
                "/v1/orders",
                &json!({"member_id": m, "items": [{"product_id": p, "qty": 1}]}),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    }
    for list in ["/v1/orders", "/v1/products", "/v1/flash-sales"] {
        // Two pages of two and one, every item once.
        let first = app.get(&format!("{list}?limit=2")).await;
        assert_eq!(first.status, StatusCode::OK, "{list}: {}", first.body);
        let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
        let second = app.get(&format!("{list}?limit=2&cursor={cursor}")).await;
        assert_eq!(second.status, StatusCode::OK, "{list}: {}", second.body);
        assert_eq!(second.body["data"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(second.body["next_cursor"], Value::Null, "{list}");
        // A cursor this API never gave is refused, naming it, not read as a bound.
        for bad in ["nope", "mem_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
            let refused = app.get(&format!("{list}?cursor={bad}")).await;
            assert_eq!(
                refused.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{list} {bad}: {}",
                refused.body
            );
            assert_eq!(
                refused.body["error"]["details"]["field"], "cursor",
                "{list}"
            );
        }
    }
}

async fn group_buys_are_listed_newest_first_in_pages_of_their_own_tenant(app: TestApp) {
    assert_eq!(app.get("/v1/group-buys").await.body["data"], json!([]));
    let mut created = Vec::new();
    for size in 2..5 {
        created.push(group_buy(&app, size, false).await);
    }
    // Another tenant's group buy is never listed here, nor ours there.
    let (_, other_key) = app.other_tenant().await;
    let as_other = |method: Method, path: &str, body: Option<Value>| {
        app.send(build(method, path, Some(&other_key), body.as_ref(), None))
    };
    let product = as_other(
        Method::POST,
        "/v1/products",
        Some(json!({"name": "x", "sku": "X", "price": 5000, "stock": 1})),
    )
    .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let theirs = as_other(
        Method::POST,
        "/v1/group-buys",
        Some(
            json!({"product_id": product.body["id"], "price": 2990, "team_size": 2,
                    "duration_secs": 3600}),
        ),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let their_list = as_other(Method::GET, "/v1/group-buys", None).await;
    assert_eq!(their_list.status, StatusCode::OK, "{}", their_list.body);
    assert_eq!(their_list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(their_list.body["data"][0]["id"], theirs.body["id"]);

    let first = app.get("/v1/group-buys?limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first.body), [created[2].clone(), created[1].clone()]);
    assert_eq!(first.body["data"][0]["team_size"], 4);
    assert_eq!(first.body["data"][0]["price"], 2990);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .get(&format!("/v1/group-buys?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(ids(&second.body), [created[0].clone()]);
    assert_eq!(second.body["next_cursor"], Value::Null);
    let all = app.get("/v1/group-buys").await;
    assert_eq!(
        ids(&all.body),
        [created[2].clone(), created[1].clone(), created[0].clone()]
    );
    assert_eq!(all.body["next_cursor"], Value::Null);

    for bad in [
        "/v1/group-buys?cursor=nope",
        "/v1/group-buys?cursor=fls_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "/v1/group-buys?cursor=mem_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "/v1/group-buys?limit=0",
        "/v1/group-buys?limit=201",
    ] {
        let refused = app.get(bad).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.body
        );
    }
    let refused = app.get("/v1/group-buys?cursor=nope").await;
    assert_eq!(refused.body["error"]["details"]["field"], "cursor");
    let unknown = app.get("/v1/group-buys?colour=red").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
}
