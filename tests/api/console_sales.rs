//! The console's sales pages without a browser: a flash sale created through the form (yuan to
//! fen, tenant-local times to instants) and its live panel following purchases made through the
//! API; a group buy created through the form and its teams; bad input, viewers and another
//! tenant's ids refused with nothing changed.

use axum::http::StatusCode;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use shequn::console::operators::Role;

use crate::backend_tests;
use crate::console_support::{hidden, html, location, operator, Browser, OtherTenant};
use crate::support::TestApp;

backend_tests!(
    a_flash_sale_made_through_the_form_is_listed_and_its_live_panel_follows_purchases,
    bad_flash_sale_forms_say_what_is_wrong_and_create_nothing,
    a_group_buy_made_through_the_form_shows_its_teams_and_members,
    viewers_see_the_sales_without_forms_and_their_posts_change_nothing,
    another_tenants_sales_are_not_found,
);

/// A product at ¥99.00 list price; its id.
async fn soy_milk(app: &TestApp) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": "黑豆浆礼盒", "sku": "SOY-BOX", "price": 9900, "stock": 100}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// `at` as a `datetime-local` input sends it, in the tenant's zone (Asia/Shanghai, the default).
fn local_input(at: Timestamp) -> String {
    let zone = TimeZone::get("Asia/Shanghai").unwrap();
    at.to_zoned(zone).strftime("%Y-%m-%dT%H:%M").to_string()
}

/// The value of attribute `name` on the element with `id="flash-sale-live"`.
fn live_number(page: &str, name: &str) -> i64 {
    let at = page
        .find("id=\"flash-sale-live\"")
        .unwrap_or_else(|| panic!("no live panel in {page}"));
    let element = &page[at..at + page[at..].find('>').unwrap()];
    let marker = format!("{name}=\"");
    let start = element
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {element}"))
        + marker.len();
    element[start..].split('"').next().unwrap().parse().unwrap()
}

async fn flash_sales(app: &TestApp) -> Vec<Value> {
    let reply = app.get("/v1/flash-sales?limit=200").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn group_buys(app: &TestApp) -> Vec<Value> {
    let reply = app.get("/v1/group-buys?limit=200").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn a_flash_sale_made_through_the_form_is_listed_and_its_live_panel_follows_purchases(
    app: TestApp,
) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let product = soy_milk(&app).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get("/console/sales").await);
    assert!(page.contains("id=\"flash-sale-form\""), "{page}");
    assert!(
        page.contains(&format!("value=\"{product}\"")),
        "the product is offered"
    );
    let token = hidden(&page, "csrf_token");
    let ends = local_input(app.clock_now() + SignedDuration::from_hours(2));
    let created = ops
        .post(
            "/console/sales/flash",
            &[
                ("csrf_token", &token),
                ("product_id", &product),
                ("price", "¥12.5"),
                ("stock", "5"),
                ("per_member_limit", "3"),
                ("starts_at", ""),
                ("ends_at", &ends),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));

    // The API holds the same sale: fen, the limit, the end read in the tenant's zone.
    let sales = flash_sales(&app).await;
    assert_eq!(sales.len(), 1);
    let sale = &sales[0];
    let id = sale["id"].as_str().unwrap();
    assert_eq!(sale["price"], 1250);
    assert_eq!(sale["stock"], 5);
    assert_eq!(sale["per_member_limit"], 3);
    assert_eq!(sale["product_id"], product.as_str());
    let ends_at: Timestamp = sale["ends_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(local_input(ends_at), ends);
    assert_eq!(
        location(&created),
        format!("/console/sales/flash/{id}?created=1")
    );

    // Listed with the product's name, the price in yuan and its page.
    let list = html(&ops.get("/console/sales").await);
    assert!(
        list.contains(&format!("/console/sales/flash/{id}")),
        "{list}"
    );
    assert!(
        list.contains("黑豆浆礼盒") && list.contains("¥12.50"),
        "{list}"
    );

    // The sale's page carries the live panel that asks for itself every two seconds.
    let page = ops
        .get(&format!("/console/sales/flash/{id}?created=1"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    let live_path = format!("/console/sales/flash/{id}/live");
    assert!(page.contains(&format!("hx-get=\"{live_path}\"")), "{page}");
    assert!(page.contains("hx-trigger=\"every 2s\"") && page.contains("hx-swap=\"outerHTML\""));
    assert_eq!(
        (
            live_number(&page, "data-sold"),
            live_number(&page, "data-reserved"),
            live_number(&page, "data-available")
        ),
        (0, 0, 5)
    );

    // The fragment is the panel alone, and it follows a purchase and its payment.
    let buyer = app.member("buyer").await;
    let bought = app
        .post(
            &format!("/v1/flash-sales/{id}/orders"),
            &json!({"member_id": buyer, "qty": 2}),
        )
        .await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    let fragment = ops.get(&live_path).await;
    assert_eq!(fragment.status, StatusCode::OK);
    let fragment = html(&fragment);
    assert!(fragment.trim_start().starts_with("<section"), "{fragment}");
    assert!(!fragment.contains("<html") && !fragment.contains("<nav"));
    assert!(fragment.contains("hx-trigger=\"every 2s\""));
    assert!(fragment.contains("data-chart="), "with its chart");
    assert_eq!(
        (
            live_number(&fragment, "data-sold"),
            live_number(&fragment, "data-reserved"),
            live_number(&fragment, "data-available")
        ),
        (0, 2, 3)
    );
    let order = bought.body["order_id"].as_str().unwrap();
    let paid = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &json!({"method": "external", "reference": "till-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let fragment = html(&ops.get(&live_path).await);
    assert_eq!(
        (
            live_number(&fragment, "data-sold"),
            live_number(&fragment, "data-reserved"),
            live_number(&fragment, "data-available")
        ),
        (2, 0, 3)
    );

    // Once the sale has ended the panel shows the final numbers and stops asking.
    // (In two steps, each shorter than the session's idle limit.)
    app.clock.advance(SignedDuration::from_hours(1));
    assert!(html(&ops.get(&live_path).await).contains("hx-trigger"));
    app.clock.advance(SignedDuration::from_mins(61));
    let fragment = html(&ops.get(&live_path).await);
    assert_eq!(live_number(&fragment, "data-sold"), 2);
    assert!(!fragment.contains("hx-trigger"), "{fragment}");
}

async fn bad_flash_sale_forms_say_what_is_wrong_and_create_nothing(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let product = soy_milk(&app).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;
    let now = app.clock_now();
    let (starts, ends) = (
        local_input(now + SignedDuration::from_hours(3)),
        local_input(now + SignedDuration::from_hours(1)),
    );
    let good_ends = local_input(now + SignedDuration::from_hours(1));
    for (price, stock, starts_at, ends_at, product_id, says) in [
        (
            "abc",
            "5",
            "",
            good_ends.as_str(),
            product.as_str(),
            "秒杀价（元）：请输入金额（元），最多两位小数",
        ),
        (
            "1.234",
            "5",
            "",
            good_ends.as_str(),
            product.as_str(),
            "秒杀价（元）：请输入金额（元），最多两位小数",
        ),
        (
            "-1",
            "5",
            "",
            good_ends.as_str(),
            product.as_str(),
            "秒杀价（元）：请输入金额（元），最多两位小数",
        ),
        (
            "9.9",
            "5",
            starts.as_str(),
            ends.as_str(),
            product.as_str(),
            "结束时间必须晚于开始时间",
        ),
        (
            "9.9",
            "5",
            "",
            "next week",
            product.as_str(),
            "结束时间：请选择日期和时间",
        ),
        (
            "9.9",
            "five",
            "",
            good_ends.as_str(),
            product.as_str(),
            "秒杀库存（件）：请输入整数",
        ),
        ("9.9", "5", "", good_ends.as_str(), "", "请选择商品"),
        // Read by the page, refused by the API: above the list price, or no such product.
        (
            "120",
            "5",
            "",
            good_ends.as_str(),
            product.as_str(),
            "list price",
        ),
        (
            "9.9",
            "5",
            "",
            good_ends.as_str(),
            "prd_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "not found",
        ),
    ] {
        let refused = ops
            .post(
                "/console/sales/flash",
                &[
                    ("csrf_token", &token),
                    ("product_id", product_id),
                    ("price", price),
                    ("stock", stock),
                    ("starts_at", starts_at),
                    ("ends_at", ends_at),
                ],
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{price} {stock} {ends_at}"
        );
        let page = html(&refused);
        assert!(
            page.contains("notice error") && page.to_lowercase().contains(says),
            "{says}: {page}"
        );
        // What was typed is shown again in the open form.
        assert!(
            page.contains(&format!(
                "name=\"price\" required inputmode=\"decimal\" value=\"{price}\""
            )),
            "{page}"
        );
    }
    assert_eq!(flash_sales(&app).await, Vec::<Value>::new());
}

async fn a_group_buy_made_through_the_form_shows_its_teams_and_members(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let product = soy_milk(&app).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;
    let refused = ops
        .post(
            "/console/sales/group-buys",
            &[
                ("csrf_token", &token),
                ("product_id", &product),
                ("price", "29.9"),
                ("team_size", "3"),
                ("duration_hours", "two"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&refused).contains("成团时限（小时）：请输入整数"));
    assert_eq!(group_buys(&app).await, Vec::<Value>::new());
    let created = ops
        .post(
            "/console/sales/group-buys",
            &[
                ("csrf_token", &token),
                ("product_id", &product),
                ("price", "29.9"),
                ("team_size", "3"),
                ("duration_hours", "2"),
                ("virtual_completion", "true"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let buys = group_buys(&app).await;
    assert_eq!(buys.len(), 1);
    let buy = &buys[0];
    let id = buy["id"].as_str().unwrap();
    assert_eq!(
        (
            &buy["price"],
            &buy["team_size"],
            &buy["duration_secs"],
            &buy["virtual_completion"]
        ),
        (&json!(2990), &json!(3), &json!(7200), &json!(true))
    );
    let page_path = format!("/console/sales/group-buys/{id}");
    assert_eq!(location(&created), format!("{page_path}?created=1"));
    let list = html(&ops.get("/console/sales").await);
    assert!(
        list.contains(&page_path) && list.contains("¥29.90"),
        "{list}"
    );

    // Two teams: one with its opener and a paid joiner, one with its opener alone.
    let (a, b, c) = (
        app.member("a").await,
        app.member("b").await,
        app.member("c").await,
    );
    let opened = app
        .post(
            &format!("/v1/group-buys/{id}/teams"),
            &json!({"member_id": a}),
        )
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let team = opened.body["team_id"].as_str().unwrap();
    let joined = app
        .post(
            &format!("/v1/group-buys/teams/{team}/join"),
            &json!({"member_id": b}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    let order = joined.body["order_id"].as_str().unwrap();
    let paid = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &json!({"method": "external", "reference": "b-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let other = app
        .post(
            &format!("/v1/group-buys/{id}/teams"),
            &json!({"member_id": c}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let other_team = other.body["team_id"].as_str().unwrap();

    let page = ops.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    for member in [&a, &b, &c] {
        assert!(
            page.contains(&format!("href=\"/console/members/{member}\"")),
            "{member}: {page}"
        );
    }
    let row = |team: &str| {
        let at = page
            .find(&format!("data-team-id=\"{team}\""))
            .expect("team row");
        page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
    };
    let first = row(team);
    assert!(
        first.contains("2 / 3") && first.contains("拼团中") && first.contains("团长"),
        "{first}"
    );
    assert!(
        first.contains("待支付") && first.contains("已支付"),
        "{first}"
    );
    assert!(row(other_team).contains("1 / 3"));
}

async fn viewers_see_the_sales_without_forms_and_their_posts_change_nothing(app: TestApp) {
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let product = soy_milk(&app).await;
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": product, "price": 990, "stock": 10, "ends_at": ends}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let sale = sale.body["id"].as_str().unwrap().to_owned();
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let list = viewer.get("/console/sales").await;
    assert_eq!(list.status, StatusCode::OK);
    let list = html(&list);
    assert!(list.contains(&format!("/console/sales/flash/{sale}")));
    assert!(
        !list.contains("flash-sale-form") && !list.contains("group-buy-form"),
        "{list}"
    );
    assert!(
        !list.contains("action=\"/console/sales"),
        "a viewer is offered no form"
    );
    let live = viewer
        .get(&format!("/console/sales/flash/{sale}/live"))
        .await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live_number(&html(&live), "data-available"), 10);

    let token = viewer.csrf().await;
    let good_ends = local_input(app.clock_now() + SignedDuration::from_hours(1));
    let refused = viewer
        .post(
            "/console/sales/flash",
            &[
                ("csrf_token", &token),
                ("product_id", &product),
                ("price", "9.9"),
                ("stock", "5"),
                ("ends_at", &good_ends),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = viewer
        .post(
            "/console/sales/group-buys",
            &[
                ("csrf_token", &token),
                ("product_id", &product),
                ("price", "9.9"),
                ("team_size", "2"),
                ("duration_hours", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(flash_sales(&app).await.len(), 1);
    assert_eq!(group_buys(&app).await, Vec::<Value>::new());
}

async fn another_tenants_sales_are_not_found(app: TestApp) {
    let them = OtherTenant::new(&app).await;
    let product = soy_milk(&app).await;
    let ends = (app.clock_now() + SignedDuration::from_hours(1)).to_string();
    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": product, "price": 990, "stock": 10, "ends_at": ends}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let buy = app
        .post(
            "/v1/group-buys",
            &json!({"product_id": product, "price": 990, "team_size": 2, "duration_secs": 3600}),
        )
        .await;
    assert_eq!(buy.status, StatusCode::CREATED, "{}", buy.body);
    let (sale, buy) = (
        sale.body["id"].as_str().unwrap(),
        buy.body["id"].as_str().unwrap(),
    );

    let mut other = them.owner().await;
    let list = html(&other.get("/console/sales").await);
    assert!(!list.contains(sale) && !list.contains(buy), "{list}");
    for path in [
        format!("/console/sales/flash/{sale}"),
        format!("/console/sales/flash/{sale}/live"),
        format!("/console/sales/group-buys/{buy}"),
        "/console/sales/flash/not-an-id".to_owned(),
        "/console/sales/flash/not-an-id/live".to_owned(),
        "/console/sales/group-buys/not-an-id".to_owned(),
    ] {
        let reply = other.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!html(&reply).contains("黑豆浆礼盒"), "{path}");
    }
    // And their product cannot be put on sale from here.
    let token = other.csrf().await;
    let refused = other
        .post(
            "/console/sales/flash",
            &[
                ("csrf_token", &token),
                ("product_id", &product),
                ("price", "9.9"),
                ("stock", "5"),
                (
                    "ends_at",
                    &local_input(app.clock_now() + SignedDuration::from_hours(1)),
                ),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(flash_sales(&app).await.len(), 1);
}
