//! Special prices (issue 16 item 1): member, member-day, flash-sale and group-buy prices are
//! 1 fen to the list price, refused with 422 naming the field otherwise; nobody is charged above
//! list when the list price is lowered later; a tier's discount is given as what comes off
//! (`discount_bp`) or what is paid (`price_factor_bp`), never silently misread.

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{build, Reply, TestApp};

backend_tests!(
    member_prices_are_one_fen_to_list_on_create_and_patch,
    flash_and_group_prices_are_one_fen_to_list_and_charged_at_most_list,
    member_day_prices_name_the_tenants_products_at_one_fen_to_list,
    tier_discounts_read_both_ways_and_refuse_a_misread,
);

fn refused_on(reply: &Reply, field: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "validation_failed");
    assert_eq!(
        reply.body["error"]["details"]["field"], field,
        "{}",
        reply.body
    );
}

async fn product(app: &TestApp, sku: &str, price: i64, member_price: Option<i64>) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": sku, "sku": sku, "price": price, "member_price": member_price,
                    "stock": 100}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn member_prices_are_one_fen_to_list_on_create_and_patch(app: TestApp) {
    for (member_price, why) in [(1500, "above list"), (0, "zero"), (-1, "negative")] {
        let reply = app
            .post(
                "/v1/products",
                &json!({"name": "豆浆", "sku": format!("SOY{member_price}"), "price": 1200,
                        "member_price": member_price, "stock": 10}),
            )
            .await;
        refused_on(&reply, "member_price");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("member_price"),
            "{why}: {}",
            reply.body
        );
    }
    assert_eq!(
        app.get("/v1/products").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "refused products are not created"
    );
    let p = product(&app, "SOY", 1200, Some(1200)).await;
    let path = format!("/v1/products/{p}");

    // A member price above list, or a list price lowered below the member price, is refused
    // whole: the product keeps its prices.
    refused_on(
        &app.patch(&path, &json!({"member_price": 1300})).await,
        "member_price",
    );
    let lowered = app
        .patch(&path, &json!({"price": 1000, "name": "新豆浆"}))
        .await;
    refused_on(&lowered, "price");
    let kept = app.get(&path).await.body;
    assert_eq!(
        (
            kept["price"].clone(),
            kept["member_price"].clone(),
            kept["name"].clone()
        ),
        (json!(1200), json!(1200), json!("SOY"))
    );
    // Both in one request, or the member price cleared: fine.
    let both = app
        .patch(&path, &json!({"price": 1000, "member_price": 900}))
        .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    assert_eq!(
        (
            both.body["price"].clone(),
            both.body["member_price"].clone()
        ),
        (json!(1000), json!(900))
    );
    let cleared = app
        .patch(&path, &json!({"price": 800, "member_price": null}))
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert_eq!(cleared.body["member_price"], Value::Null);
}

async fn flash_and_group_prices_are_one_fen_to_list_and_charged_at_most_list(app: TestApp) {
    let p = product(&app, "BEANS", 9900, None).await;
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    for price in [0, 9901, -5] {
        let reply = app
            .post(
                "/v1/flash-sales",
                &json!({"product_id": p, "price": price, "stock": 10, "ends_at": ends}),
            )
            .await;
        refused_on(&reply, "price");
        let reply = app
            .post(
                "/v1/group-buys",
                &json!({"product_id": p, "price": price, "team_size": 2,
                        "duration_secs": 3600}),
            )
            .await;
        refused_on(&reply, "price");
    }
    assert_eq!(app.get("/v1/flash-sales").await.body["data"], json!([]));
    let mut conn = app.state.db.read().acquire().await.unwrap();
    let buys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM group_buy")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(buys, 0, "refused group buys are not created");
    drop(conn);

    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": p, "price": 990, "stock": 10, "ends_at": ends}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let buy = app
        .post(
            "/v1/group-buys",
            &json!({"product_id": p, "price": 2990, "team_size": 2, "duration_secs": 3600}),
        )
        .await;
    assert_eq!(buy.status, StatusCode::CREATED, "{}", buy.body);

    // The list price drops below both campaign prices: orders are charged list, not more.
    let lowered = app
        .patch(&format!("/v1/products/{p}"), &json!({"price": 500}))
        .await;
    assert_eq!(lowered.status, StatusCode::OK, "{}", lowered.body);
    let m = app.member("buyer").await;
    let order = app
        .post(
            &format!(
                "/v1/flash-sales/{}/orders",
                sale.body["id"].as_str().unwrap()
            ),
            &json!({"member_id": m, "qty": 1}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    assert_eq!(order.body["items"][0]["unit_price"], 500, "{}", order.body);
    assert_eq!(order.body["total"], 500, "{}", order.body);
    let team = app
        .post(
            &format!("/v1/group-buys/{}/teams", buy.body["id"].as_str().unwrap()),
            &json!({"member_id": m}),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{}", team.body);
    let order_id = team.body["order_id"].as_str().unwrap();
    let order = app.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(order.body["items"][0]["unit_price"], 500, "{}", order.body);
    assert_eq!(order.body["total"], 500, "{}", order.body);
}

async fn member_day_prices_name_the_tenants_products_at_one_fen_to_list(app: TestApp) {
    let p = product(&app, "MILK", 1200, None).await;
    let put = |prices: Value| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                "/v1/program/member-day",
                Some(&json!({"day_of_month": 8, "prices": prices})),
            )
            .await
        }
    };
    refused_on(
        &put(json!([{"product_id": p, "price": 1300}])).await,
        "prices[0].price",
    );
    refused_on(
        &put(json!([{"product_id": p, "price": 1000}, {"product_id": p, "price": 0}])).await,
        "prices",
    );
    refused_on(
        &put(json!([{"product_id": p, "price": 1000},
                    {"product_id": "prd_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "price": 10}]))
        .await,
        "prices[1].product_id",
    );
    // Another tenant's product is not this tenant's product.
    let (_, other_key) = app.other_tenant().await;
    let theirs = app
        .send(build(
            Method::POST,
            "/v1/products",
            Some(&other_key),
            Some(&json!({"name": "x", "sku": "X", "price": 5000, "stock": 1})),
            None,
        ))
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    refused_on(
        &put(json!([{"product_id": theirs.body["id"], "price": 10}])).await,
        "prices[0].product_id",
    );
    // Nothing was stored by the refusals.
    assert_eq!(
        app.get("/v1/program/member-day").await.body["member_day"],
        Value::Null
    );
    let ok = put(json!([{"product_id": p, "price": 1}])).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["member_day"]["prices"][0]["price"], 1);
}

async fn tier_discounts_read_both_ways_and_refuse_a_misread(app: TestApp) {
    let put = |tiers: Value| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                "/v1/program/tiers",
                Some(&json!({"tiers": tiers})),
            )
            .await
        }
    };
    let ok = put(json!([
        {"name": "普通", "growth_min": 0},
        {"name": "银卡", "growth_min": 100, "discount_bp": 500},
        {"name": "金卡", "growth_min": 1000, "price_factor_bp": 9000},
    ]))
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let shown: Vec<(i64, i64)> = ok.body["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["discount_bp"].as_i64().unwrap(),
                t["price_factor_bp"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, vec![(0, 10_000), (500, 9_500), (1_000, 9_000)]);

    // 九折 typed as 9000 in both fields, or a whole discount: refused, saying which is which,
    // and the ladder stays as it was.
    for tiers in [
        json!([{"name": "普通", "growth_min": 0, "discount_bp": 9000, "price_factor_bp": 9000}]),
        json!([{"name": "普通", "growth_min": 0, "discount_bp": 10000}]),
        json!([{"name": "普通", "growth_min": 0, "price_factor_bp": 0}]),
    ] {
        let reply = put(tiers).await;
        refused_on(&reply, "tiers");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("price_factor_bp is what is paid"),
            "{message}"
        );
    }
    let kept = app.get("/v1/program/tiers").await;
    assert_eq!(kept.body["tiers"][2]["discount_bp"], 1000, "{}", kept.body);
}
