//! The console's shop and program pages without a browser: coupon templates and products
//! created through their forms (yuan typed, fen stored), unreadable or refused forms shown
//! again with nothing created, orders listed, shown and refunded through the form, the
//! program page, roles and tenant isolation.

use axum::http::{Method, StatusCode};
use serde_json::json;
use shequn::console::operators::Role;

use crate::backend_tests;
use crate::console_support::{hidden, html, location, operator, Browser, OtherTenant};
use crate::support::TestApp;

backend_tests!(
    coupon_templates_are_created_through_the_form_in_fen_and_listed,
    unreadable_or_refused_forms_are_shown_again_and_create_nothing,
    products_and_orders_are_shown_and_refunded_through_the_console,
    shop_pages_keep_roles_and_tenants_apart,
    the_program_page_shows_tiers_rules_and_plans,
);

async fn template_count(app: &TestApp) -> usize {
    let list = app.get("/v1/coupon-templates?limit=100").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["data"].as_array().unwrap().len()
}

async fn coupon_templates_are_created_through_the_form_in_fen_and_listed(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut browser = Browser::signed_in(&app, "ops@shop.example").await;
    let page = browser.get("/console/coupons").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    assert!(page.contains("id=\"coupon-template-form\""));
    let token = hidden(&page, "csrf_token");
    let key = hidden(&page, "form_key");

    let fields = [
        ("name", "满50减5"),
        ("kind", "amount_off"),
        ("value", "5"),
        ("min_spend", "¥50.00"),
        ("total_stock", "100"),
        ("per_member_limit", "2"),
        ("valid_days", "30"),
        ("csrf_token", token.as_str()),
        ("form_key", key.as_str()),
    ];
    let created = browser.post("/console/coupons", &fields).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let id = location(&created)
        .strip_prefix("/console/coupons?created=")
        .unwrap_or_else(|| panic!("{}", location(&created)))
        .to_owned();
    let api = app.get(&format!("/v1/coupon-templates/{id}")).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert_eq!(api.body["name"], "满50减5");
    assert_eq!(api.body["amount_off"], 500);
    assert_eq!(api.body["min_spend"], 5000);
    assert_eq!(api.body["total_stock"], 100);
    assert_eq!(api.body["per_member_limit"], 2);
    assert_eq!(api.body["valid_days"], 30);

    // The same form submitted twice (a double click) creates one template.
    let again = browser.post("/console/coupons", &fields).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(template_count(&app).await, 1);

    // A percentage: 15.5% is 1550 basis points, capped at ¥20.
    let page = html(&browser.get("/console/coupons").await);
    let key = hidden(&page, "form_key");
    let percent = browser
        .post(
            "/console/coupons",
            &[
                ("name", "85折"),
                ("kind", "percent_off"),
                ("value", "15.5"),
                ("max_discount", "20"),
                ("total_stock", "10"),
                ("valid_from", "2026-01-01"),
                ("valid_to", "2027-01-01"),
                ("csrf_token", token.as_str()),
                ("form_key", key.as_str()),
            ],
        )
        .await;
    assert_eq!(percent.status, StatusCode::SEE_OTHER, "{}", html(&percent));
    let list = app.get("/v1/coupon-templates?limit=100").await;
    let percent = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "85折")
        .unwrap()
        .clone();
    assert_eq!(percent["percent_off_bp"], 1550);
    assert_eq!(percent["max_discount"], 2000);

    let page = html(&browser.get("/console/coupons").await);
    assert!(
        page.contains(&format!("data-template-id=\"{id}\"")),
        "{page}"
    );
    assert!(page.contains("¥5.00"));
    assert!(page.contains("15.5%"), "{page}");
    assert!(page.contains("¥20.00"));
}

async fn unreadable_or_refused_forms_are_shown_again_and_create_nothing(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut browser = Browser::signed_in(&app, "ops@shop.example").await;
    let token = browser.csrf().await;
    for (value, stock, percent) in [
        ("abc", "10", false),
        ("5.001", "10", false),
        ("5", "ten", false),
        ("0", "10", true),
        ("101", "10", true),
    ] {
        let kind = if percent { "percent_off" } else { "amount_off" };
        let reply = browser
            .post(
                "/console/coupons",
                &[
                    ("name", "typed name kept"),
                    ("kind", kind),
                    ("value", value),
                    ("total_stock", stock),
                    ("csrf_token", &token),
                ],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{value} {stock}"
        );
        let page = html(&reply);
        assert!(page.contains("notice error"), "{page}");
        assert!(page.contains("typed name kept"));
    }
    // Read by the page but refused by the API: its message is shown.
    let refused = browser
        .post(
            "/console/coupons",
            &[
                ("name", "no stock"),
                ("kind", "amount_off"),
                ("value", "5"),
                ("total_stock", "0"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&refused).contains("total_stock"), "{}", html(&refused));
    assert_eq!(template_count(&app).await, 0);

    let product = browser
        .post(
            "/console/products",
            &[
                ("name", "豆浆"),
                ("sku", "SOY-1"),
                ("price", "-3"),
                ("stock", "5"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(product.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&product).contains("SOY-1"));
    let products = app.get("/v1/products").await;
    assert_eq!(products.body["data"].as_array().unwrap().len(), 0);

    // Without the session's token nothing is created.
    let forged = browser
        .post(
            "/console/coupons",
            &[
                ("name", "forged"),
                ("kind", "amount_off"),
                ("value", "5"),
                ("total_stock", "5"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(template_count(&app).await, 0);
}

async fn products_and_orders_are_shown_and_refunded_through_the_console(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut browser = Browser::signed_in(&app, "ops@shop.example").await;
    let token = browser.csrf().await;
    let created = browser
        .post(
            "/console/products",
            &[
                ("name", "鲜豆浆 1L"),
                ("sku", "SOY-1L"),
                ("price", "12.50"),
                ("member_price", "11"),
                ("stock", "40"),
                ("days_of_supply", "3"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let product = location(&created)
        .strip_prefix("/console/products?created=")
        .unwrap()
        .to_owned();
    let api = app.get(&format!("/v1/products/{product}")).await;
    assert_eq!(api.body["price"], 1250);
    assert_eq!(api.body["member_price"], 1100);
    assert_eq!(api.body["stock"], 40);
    let page = html(&browser.get("/console/products").await);
    assert!(
        page.contains("鲜豆浆 1L") && page.contains("¥12.50"),
        "{page}"
    );

    let stock = browser
        .post(
            &format!("/console/products/{product}/stock"),
            &[("stock", "35"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(stock.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&format!("/v1/products/{product}")).await.body["stock"],
        35
    );

    let member = app.member("buyer-1").await;
    let placed = app
        .post(
            "/v1/orders",
            &json!({"member_id": member, "items": [{"product_id": product, "qty": 2}]}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let order = placed.body["id"].as_str().unwrap().to_owned();
    let total = placed.body["total"].as_i64().unwrap();
    let paid = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &json!({"method": "external", "reference": "wx-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);

    let list = html(&browser.get("/console/orders?status=paid").await);
    assert!(
        list.contains(&format!("data-order-id=\"{order}\"")),
        "{list}"
    );
    let none = html(&browser.get("/console/orders?status=refunded").await);
    assert!(!none.contains(&format!("data-order-id=\"{order}\"")));
    let mine = html(
        &browser
            .get(&format!("/console/orders?member_id={member}"))
            .await,
    );
    assert!(mine.contains(&format!("data-order-id=\"{order}\"")));

    let page = browser.get(&format!("/console/orders/{order}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    assert!(
        page.contains("鲜豆浆 1L") && page.contains("id=\"refund-form\""),
        "{page}"
    );

    // A refund amount the page cannot read changes nothing.
    let bad = browser
        .post(
            &format!("/console/orders/{order}/refunds"),
            &[
                ("amount", "2.555"),
                ("reason", "坏了"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert!(location(&bad).contains("error="), "{}", location(&bad));
    assert_eq!(
        app.get(&format!("/v1/orders/{order}")).await.body["refunded_amount"],
        0
    );

    let refunded = browser
        .post(
            &format!("/console/orders/{order}/refunds"),
            &[
                ("amount", "2.50"),
                ("reason", "少送一瓶"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(refunded.status, StatusCode::SEE_OTHER);
    assert!(
        location(&refunded).ends_with("done=refunded"),
        "{}",
        location(&refunded)
    );
    let after = app.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(after.body["refunded_amount"], 250);
    let page = html(&browser.get(&format!("/console/orders/{order}")).await);
    assert!(
        page.contains("少送一瓶") && page.contains("¥2.50"),
        "{page}"
    );

    // More than remains: the API's refusal is shown, nothing changes.
    let over = browser
        .post(
            &format!("/console/orders/{order}/refunds"),
            &[
                ("amount", &format!("{}", total)),
                ("reason", "too much"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert!(location(&over).contains("error="), "{}", location(&over));
    assert_eq!(
        app.get(&format!("/v1/orders/{order}")).await.body["refunded_amount"],
        250
    );
}

async fn shop_pages_keep_roles_and_tenants_apart(app: TestApp) {
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let them = OtherTenant::new(&app).await;
    let theirs = them
        .post(
            "/v1/products",
            &json!({"name": "Their soy", "sku": "T-1", "price": 100, "stock": 5}),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let their_product = theirs.body["id"].as_str().unwrap().to_owned();
    let their_member = them
        .post("/v1/members", &json!({"external_id": "t-1"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let their_order = them
        .post(
            "/v1/orders",
            &json!({"member_id": their_member, "items": [{"product_id": their_product, "qty": 1}]}),
        )
        .await;
    assert_eq!(
        their_order.status,
        StatusCode::CREATED,
        "{}",
        their_order.body
    );
    let their_order = their_order.body["id"].as_str().unwrap().to_owned();

    let their_stock = them
        .get(&format!("/v1/products/{their_product}"))
        .await
        .body["stock"]
        .clone();
    let mut browser = Browser::signed_in(&app, "viewer@shop.example").await;
    for path in [
        "/console/coupons",
        "/console/products",
        "/console/orders",
        "/console/program",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let page = html(&page);
        assert!(
            !page.contains("Their soy") && !page.contains(&their_order),
            "{path}"
        );
        assert!(
            !page.contains("id=\"coupon-template-form\"") && !page.contains("id=\"product-form\"")
        );
    }
    let page = browser.get(&format!("/console/orders/{their_order}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    // A viewer's change is refused before it reaches the API.
    let token = browser.csrf().await;
    let refused = browser
        .post(
            "/console/coupons",
            &[
                ("name", "v"),
                ("kind", "amount_off"),
                ("value", "5"),
                ("total_stock", "5"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(template_count(&app).await, 0);

    // An operator cannot change another tenant's product or refund their order.
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;
    let stock = ops
        .post(
            &format!("/console/products/{their_product}/stock"),
            &[("stock", "0"), ("csrf_token", &token)],
        )
        .await;
    assert!(location(&stock).contains("error="), "{}", location(&stock));
    let refund = ops
        .post(
            &format!("/console/orders/{their_order}/refunds"),
            &[("reason", "x"), ("csrf_token", &token)],
        )
        .await;
    assert!(
        location(&refund).contains("error="),
        "{}",
        location(&refund)
    );
    let still = them.get(&format!("/v1/products/{their_product}")).await;
    assert_eq!(still.body["stock"], their_stock);
}

async fn the_program_page_shows_tiers_rules_and_plans(app: TestApp) {
    let tiers = app
        .call(
            Method::PUT,
            "/v1/program/tiers",
            Some(&json!({"tiers": [
                {"name": "普通会员", "growth_min": 0, "points_multiplier_bp": 10000},
                {"name": "金卡", "growth_min": 1000, "discount_bp": 500, "points_multiplier_bp": 15000,
                 "free_shipping": true, "early_access_hours": 2}
            ]})),
        )
        .await;
    assert_eq!(tiers.status, StatusCode::OK, "{}", tiers.body);
    let plan = app
        .post(
            "/v1/topup-plans",
            &json!({"name": "充100送20", "pay": 10000, "bonus": 2000}),
        )
        .await;
    assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let mut browser = Browser::signed_in(&app, "viewer@shop.example").await;
    let page = browser.get("/console/program").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    for shown in ["金卡", "×1.5", "5%", "充100送20", "¥100.00", "¥20.00"] {
        assert!(page.contains(shown), "{shown} in {page}");
    }
}
