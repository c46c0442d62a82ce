//! The tenant's settings (issue 16 item 6): its time zone is set with an IANA name, and every
//! date-only input (`"2027-03-10"`) is the start of that day in it; "today" follows it too.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use shequn::common::auth::KeyRole;
use shequn::common::ids::TenantId;
use shequn::tenants;

use crate::backend_tests;
use crate::support::{build, TestApp};

backend_tests!(
    the_time_zone_is_an_iana_name_set_by_an_owner,
    date_only_inputs_start_the_day_in_the_tenants_zone,
    today_follows_the_tenants_zone,
);

async fn put_zone(app: &TestApp, zone: &str) -> crate::support::Reply {
    app.call(
        Method::PUT,
        "/v1/tenant/settings",
        Some(&json!({ "time_zone": zone })),
    )
    .await
}

async fn the_time_zone_is_an_iana_name_set_by_an_owner(app: TestApp) {
    let got = app.get("/v1/tenant/settings").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["time_zone"], "Asia/Shanghai");
    assert_eq!(got.body["tenant_id"], app.tenant_id.as_str());

    for bad in ["Mars/Olympus", "", "Asia/Shanghai\u{0}", "+08:00", "CST8"] {
        let reply = put_zone(&app, bad).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}: {}",
            reply.body
        );
        // NUL is refused at the edge (`invalid_text`), the rest by the zone check; both name
        // the field.
        assert_eq!(
            reply.body["error"]["details"]["field"], "time_zone",
            "{bad:?}: {}",
            reply.body
        );
    }
    let unknown_field = app
        .call(
            Method::PUT,
            "/v1/tenant/settings",
            Some(&json!({"timezone": "UTC"})),
        )
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_field.body["error"]["code"], "invalid_request");
    assert_eq!(
        app.get("/v1/tenant/settings").await.body["time_zone"],
        "Asia/Shanghai",
        "refusals change nothing"
    );

    // An integration key may read but not change the tenant's settings.
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let (_, integration) = tenants::create_key(
        &app.state.db,
        &tenant,
        KeyRole::Integration,
        app.clock_now(),
    )
    .await
    .unwrap();
    let refused = app
        .send(build(
            Method::PUT,
            "/v1/tenant/settings",
            Some(&integration),
            Some(&json!({"time_zone": "UTC"})),
            None,
        ))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "owner_key_required");

    let set = put_zone(&app, "Europe/Berlin").await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["time_zone"], "Europe/Berlin");
    assert_eq!(
        app.get("/v1/tenant/settings").await.body["time_zone"],
        "Europe/Berlin"
    );
    let events = app
        .get("/v1/events?type=tenant.settings_updated")
        .await
        .body["data"]
        .clone();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["data"]["previous_time_zone"], "Asia/Shanghai");
    // Setting the same zone again is no change and no event.
    assert_eq!(put_zone(&app, "Europe/Berlin").await.status, StatusCode::OK);
    let events = app.get("/v1/events?type=tenant.settings_updated").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);

    // Another tenant's zone is its own.
    let (_, other_key) = app.other_tenant().await;
    let theirs = app
        .send(build(
            Method::GET,
            "/v1/tenant/settings",
            Some(&other_key),
            None,
            None,
        ))
        .await;
    assert_eq!(theirs.body["time_zone"], "Asia/Shanghai");
}

/// Create what takes a date in each domain, and return the instants it stored.
async fn dated_things(app: &TestApp, tag: &str) -> Vec<(String, Value)> {
    let product = app
        .post(
            "/v1/products",
            &json!({"name": tag, "sku": format!("P{tag}"), "price": 1000, "stock": 10,
                    "launch_at": "2030-01-02"}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": product.body["id"], "price": 500, "stock": 5,
                    "starts_at": "2030-01-02", "ends_at": "2030-01-03"}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let template = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": tag, "kind": "amount_off", "amount_off": 100, "total_stock": 5,
                    "valid_from": "2030-01-02", "valid_to": "2030-01-03"}),
        )
        .await;
    assert_eq!(template.status, StatusCode::CREATED, "{}", template.body);
    let lottery = app
        .post(
            "/v1/lotteries",
            &json!({"name": tag, "mode": "draw", "winners": 1,
                    "prizes": [{"name": "奖", "stock": 1}],
                    "opens_at": "2030-01-02", "closes_at": "2030-01-03"}),
        )
        .await;
    assert_eq!(lottery.status, StatusCode::CREATED, "{}", lottery.body);
    vec![
        (
            "product.launch_at".into(),
            product.body["launch_at"].clone(),
        ),
        (
            "flash_sale.starts_at".into(),
            sale.body["starts_at"].clone(),
        ),
        ("flash_sale.ends_at".into(), sale.body["ends_at"].clone()),
        (
            "coupon.valid_from".into(),
            template.body["valid_from"].clone(),
        ),
        ("coupon.valid_to".into(), template.body["valid_to"].clone()),
        ("lottery.opens_at".into(), lottery.body["opens_at"].clone()),
        (
            "lottery.closes_at".into(),
            lottery.body["closes_at"].clone(),
        ),
    ]
}

fn instants(things: &[(String, Value)]) -> Vec<(String, String)> {
    things
        .iter()
        .map(|(what, at)| {
            let at: jiff::Timestamp = at
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {at}"))
                .parse()
                .unwrap();
            (what.clone(), at.to_string())
        })
        .collect()
}

async fn date_only_inputs_start_the_day_in_the_tenants_zone(app: TestApp) {
    // Shanghai (UTC+8): 2 January starts at 16:00 UTC on 1 January.
    let shanghai = instants(&dated_things(&app, "sh").await);
    let expect = |day2: &str, day3: &str| {
        vec![
            ("product.launch_at".to_owned(), day2.to_owned()),
            ("flash_sale.starts_at".to_owned(), day2.to_owned()),
            ("flash_sale.ends_at".to_owned(), day3.to_owned()),
            ("coupon.valid_from".to_owned(), day2.to_owned()),
            ("coupon.valid_to".to_owned(), day3.to_owned()),
            ("lottery.opens_at".to_owned(), day2.to_owned()),
            ("lottery.closes_at".to_owned(), day3.to_owned()),
        ]
    };
    assert_eq!(
        shanghai,
        expect("2030-01-01T16:00:00Z", "2030-01-02T16:00:00Z")
    );
    // New York (UTC-5 in January).
    assert_eq!(
        put_zone(&app, "America/New_York").await.status,
        StatusCode::OK
    );
    let new_york = instants(&dated_things(&app, "ny").await);
    assert_eq!(
        new_york,
        expect("2030-01-02T05:00:00Z", "2030-01-03T05:00:00Z")
    );
    // Full instants keep their own offset.
    let sale = app
        .post(
            "/v1/flash-sales",
            &json!({"product_id": app.post("/v1/products", &json!({"name": "z", "sku": "Z",
                    "price": 1000, "stock": 1})).await.body["id"], "price": 500, "stock": 1,
                    "ends_at": "2030-01-03T00:00:00+08:00"}),
        )
        .await;
    assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
    let ends: jiff::Timestamp = sale.body["ends_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends.to_string(), "2030-01-02T16:00:00Z");

    // Member filters read dates the same way: a member created now is after the start of
    // yesterday and before the start of tomorrow, in the tenant's zone.
    let m = app.member("dated").await;
    let zone = jiff::tz::TimeZone::get("America/New_York").unwrap();
    let today = app.clock_now().to_zoned(zone).date();
    let yesterday = today.yesterday().unwrap();
    let tomorrow = today.tomorrow().unwrap();
    let listed = app
        .get(&format!(
            "/v1/members?created_after={yesterday}&created_before={tomorrow}"
        ))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(
        listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == m.as_str()),
        "{}",
        listed.body
    );
    let later = app
        .get(&format!("/v1/members?created_after={tomorrow}"))
        .await;
    assert_eq!(later.body["data"], json!([]), "{}", later.body);
    let bad = app.get("/v1/members?created_after=2030-02-30").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "created_after");
}

async fn today_follows_the_tenants_zone(app: TestApp) {
    // Kiritimati (UTC+14) and Pago Pago (UTC-11) are 25 hours apart: never on the same date.
    let now = app.clock_now();
    let kiritimati = jiff::tz::TimeZone::get("Pacific/Kiritimati").unwrap();
    let day = now.to_zoned(kiritimati).date().day();
    let set = app
        .call(
            Method::PUT,
            "/v1/program/member-day",
            Some(&json!({"day_of_month": day})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(
        put_zone(&app, "Pacific/Kiritimati").await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/v1/program/member-day").await.body["today"], true);
    assert_eq!(
        put_zone(&app, "Pacific/Pago_Pago").await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/v1/program/member-day").await.body["today"], false);
}
