//! The membership program: tiers and growth, early access, member day, points earning and
//! release, first-in-first-out expiry, expiry warnings, birthday perks.

use std::sync::Arc;

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use shequn::common::clock::Clock as _;
use shequn::common::ids::TenantId;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    tiers_upgrade_at_once_and_downgrade_only_at_requalification,
    tier_settings_are_validated,
    early_access_follows_the_tier,
    member_day_is_judged_in_the_tenant_time_zone,
    order_points_stay_pending_through_the_return_window,
    expiry_is_first_in_first_out_and_never_takes_spent_points,
    birthday_perks_are_granted_once_per_year,
    burn_quote_caps_by_share_of_order_and_balance,
);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn tenant(app: &TestApp) -> TenantId {
    TenantId::parse(&app.tenant_id).unwrap()
}

async fn set_tiers(app: &TestApp) {
    let reply = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/tiers",
            Some(&json!({
                "tiers": [
                    {"name": "silver", "growth_min": 0},
                    {"name": "gold", "growth_min": 1000, "discount_bp": 500, "points_multiplier_bp": 15000,
                     "free_shipping": true, "early_access_hours": 24},
                    {"name": "platinum", "growth_min": 5000, "discount_bp": 1000, "points_multiplier_bp": 20000}
                ],
                "requalification": {"month": 1, "day": 1}
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

async fn tier_of(app: &TestApp, member: &str) -> Value {
    let reply = app.get(&format!("/v1/members/{member}")).await;
    json!([reply.body["tier"], reply.body["growth"]])
}

async fn tiers_upgrade_at_once_and_downgrade_only_at_requalification(app: TestApp) {
    app.clock.set(at("2026-06-01T12:00:00+08:00"));
    let early = app.member("before-tiers").await;
    set_tiers(&app).await;
    assert_eq!(
        tier_of(&app, &early).await,
        json!(["silver", 0]),
        "existing members get the base tier"
    );
    let m = app.member("m").await;
    assert_eq!(
        tier_of(&app, &m).await,
        json!(["silver", 0]),
        "new members start in the base tier"
    );
    let reply = app
        .post(
            &format!("/v1/members/{m}/growth"),
            &json!({"delta": 1200, "reason": "store purchase"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(tier_of(&app, &m).await, json!(["gold", 1200]));
    app.post(
        &format!("/v1/members/{m}/growth"),
        &json!({"delta": -1100, "reason": "correction"}),
    )
    .await;
    assert_eq!(
        tier_of(&app, &m).await,
        json!(["gold", 100]),
        "no downgrade before requalification"
    );
    let changed = app.get("/v1/events?type=member.tier_changed").await;
    let mine: Vec<&Value> = changed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == m.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "one change: silver → gold");
    assert_eq!(mine[0]["data"]["to"], "gold");

    // On the requalification date (1 January, tenant time) the daily run downgrades.
    app.clock.set(at("2026-12-31T23:59:00+08:00"));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(
        tier_of(&app, &m).await,
        json!(["gold", 100]),
        "not yet: still 31 December in Shanghai"
    );
    app.clock.set(at("2027-01-01T00:00:30+08:00"));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(tier_of(&app, &m).await, json!(["silver", 100]));
    let bad = app
        .post(
            &format!("/v1/members/{m}/growth"),
            &json!({"delta": 0, "reason": "x"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn tier_settings_are_validated(app: TestApp) {
    for body in [
        json!({"tiers": [{"name": "a", "growth_min": 10}]}),
        json!({"tiers": [{"name": "a", "growth_min": 0}, {"name": "a", "growth_min": 5}]}),
        json!({"tiers": [{"name": "a", "growth_min": 0}, {"name": "b", "growth_min": 0}]}),
        json!({"tiers": [{"name": "a", "growth_min": 0, "discount_bp": 20000}]}),
    ] {
        let reply = app
            .call(axum::http::Method::PUT, "/v1/program/tiers", Some(&body))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let unknown = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/tiers",
            Some(&json!({"tiers": [], "bonus": 1})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/program/tiers").await.body["tiers"], json!([]));
}

async fn early_access_follows_the_tier(app: TestApp) {
    set_tiers(&app).await;
    let silver = app.member("s").await;
    let gold = app.member("g").await;
    app.post(
        &format!("/v1/members/{gold}/growth"),
        &json!({"delta": 1000, "reason": "x"}),
    )
    .await;
    let launch = app.clock.now() + SignedDuration::from_hours(10);
    let ask = |m: String| {
        let app = &app;
        async move {
            app.get(&format!("/v1/members/{m}/early-access?launch_at={launch}"))
                .await
                .body
        }
    };
    assert_eq!(ask(gold.clone()).await["may_buy_now"], true);
    assert_eq!(ask(silver.clone()).await["may_buy_now"], false);
    assert_eq!(ask(gold).await["early_access_hours"], 24);
}

async fn member_day_is_judged_in_the_tenant_time_zone(app: TestApp) {
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "豆浆", "sku": "SOY", "price": 1200, "stock": 10}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let body = json!({"rule": {"day_of_month": 8}, "points_multiplier_bp": 20000,
                      "prices": [{"product_id": product.body["id"], "price": 990}]});
    let reply = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/member-day",
            Some(&body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    app.clock.set(at("2026-03-07T23:59:59+08:00"));
    assert_eq!(app.get("/v1/program/member-day").await.body["today"], false);
    app.clock.set(at("2026-03-08T00:00:00+08:00"));
    assert_eq!(app.get("/v1/program/member-day").await.body["today"], true);
    assert_eq!(
        app.get("/v1/program/member-day").await.body["member_day"]["prices"][0]["price"],
        990
    );
    let bad = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/member-day",
            Some(&json!({"rule": {"day_of_month": 40}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The rule may also be given flat: a weekday by ISO number or name, or a day of month.
    for (body, sunday_is_member_day) in [
        (json!({"weekday": 7, "points_multiplier_bp": 20000}), true),
        (json!({"weekday": "sunday"}), true),
        (json!({"day_of_month": 9}), false),
    ] {
        let reply = app
            .call(
                axum::http::Method::PUT,
                "/v1/program/member-day",
                Some(&body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {:?}", reply.body);
        assert_eq!(
            reply.body["today"], sunday_is_member_day,
            "2026-03-08 is a Sunday: {body}"
        );
    }
    for body in [
        json!({"weekday": 8}),
        json!({"weekday": 3, "day_of_month": 8}),
        json!({"points_multiplier_bp": 20000}),
    ] {
        let reply = app
            .call(
                axum::http::Method::PUT,
                "/v1/program/member-day",
                Some(&body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

async fn order_points_stay_pending_through_the_return_window(app: TestApp) {
    set_tiers(&app).await;
    app.call(
        axum::http::Method::PUT,
        "/v1/program/member-day",
        Some(&json!({"rule": {"weekday": 7}, "points_multiplier_bp": 20000})),
    )
    .await;
    app.clock.set(at("2026-03-08T10:00:00+08:00")); // a Sunday: member day
    let m = app.member("earner").await;
    app.post(
        &format!("/v1/members/{m}/growth"),
        &json!({"delta": 1000, "reason": "x"}),
    )
    .await;
    let earn = json!({"paid_amount": 10050, "reference": "order-1"});
    let reply = app
        .post(&format!("/v1/members/{m}/points/earn"), &earn)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    // 100.50 yuan × 1 point/yuan × 1.5 (gold) × 2 (member day) = 301.5 → 301, rounded down once.
    assert_eq!(reply.body["points"], 301);
    assert_eq!(reply.body["status"], "pending");
    let again = app
        .post(&format!("/v1/members/{m}/points/earn"), &earn)
        .await;
    assert_eq!(again.body["points"], 301, "one earning per reference");
    let balances = app.get(&format!("/v1/members/{m}/balances")).await;
    assert_eq!(balances.body["points"]["pending_credits"], 301);
    assert_eq!(balances.body["points"]["balance"], 0);

    let refunded = app
        .post(
            &format!("/v1/members/{m}/points/earn"),
            &json!({"paid_amount": 5000, "reference": "order-2"}),
        )
        .await;
    assert_eq!(refunded.status, StatusCode::CREATED);
    let voided = app
        .post(
            &format!("/v1/members/{m}/points/earn/void"),
            &json!({"reference": "order-2"}),
        )
        .await;
    assert_eq!(voided.status, StatusCode::OK, "{:?}", voided.body);

    app.clock.advance(SignedDuration::from_hours(24 * 7 + 1));
    let ran = shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert!(ran >= 2, "both release jobs ran");
    let balances = app.get(&format!("/v1/members/{m}/balances")).await;
    assert_eq!(
        balances.body["points"]["balance"], 301,
        "released after the window; the refunded order earned nothing"
    );
    assert_eq!(balances.body["points"]["pending_credits"], 0);
    let late_void = app
        .post(
            &format!("/v1/members/{m}/points/earn/void"),
            &json!({"reference": "order-1"}),
        )
        .await;
    assert_eq!(late_void.status, StatusCode::CONFLICT);
    assert_eq!(app.get("/v1/ledger/verify").await.body["ok"], true);
}

async fn ledger_move(app: &TestApp, id: &str, from: &str, to: &str, amount: i64) {
    let reply = app
        .post(
            "/v1/ledger/transfers",
            &json!({"transfers": [{"id": id, "from": from, "to": to, "asset": "points", "amount": amount, "code": "test"}]}),
        )
        .await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{:?}",
        reply.body
    );
}

async fn expiry_is_first_in_first_out_and_never_takes_spent_points(app: TestApp) {
    let m = app.member("fifo").await;
    let addr = format!("member:{m}");
    let t = tenant(&app);
    app.clock.set(at("2025-05-01T10:00:00+08:00"));
    ledger_move(&app, "earn-2025", "system:issuance", &addr, 100).await;
    app.clock.set(at("2026-05-01T10:00:00+08:00"));
    ledger_move(&app, "earn-2026", "system:issuance", &addr, 50).await;
    ledger_move(&app, "spend", &addr, "system:redemption", 120).await;

    app.clock.set(at("2026-12-05T09:00:00+08:00"));
    let report = shequn::daily::run_daily(&app.state, &t).await.unwrap();
    assert_eq!(
        report.warnings, 0,
        "the 2025 points were all spent: nothing to warn about"
    );

    app.clock.set(at("2027-01-01T00:00:10+08:00"));
    let report = shequn::daily::run_daily(&app.state, &t).await.unwrap();
    assert_eq!(
        report.points_expired, 0,
        "nothing of 2025 is left to expire"
    );
    assert_eq!(
        app.get(&format!("/v1/members/{m}/balances")).await.body["points"]["balance"],
        30
    );

    app.clock.set(at("2027-12-05T09:00:00+08:00"));
    let report = shequn::daily::run_daily(&app.state, &t).await.unwrap();
    assert_eq!(report.warnings, 1, "30 points expire within 30 days");
    let again = shequn::daily::run_daily(&app.state, &t).await.unwrap();
    assert_eq!(again.warnings, 0, "one warning per cutoff");
    let warned = app.get("/v1/events?type=points.expiring").await;
    assert_eq!(warned.body["data"][0]["data"]["points"], 30);

    app.clock.set(at("2028-01-01T00:00:10+08:00"));
    let report = shequn::daily::run_daily(&app.state, &t).await.unwrap();
    assert_eq!(report.points_expired, 30);
    let again = shequn::daily::run_daily(&app.state, &t).await.unwrap();
    assert_eq!(
        again.points_expired, 0,
        "a repeated run expires nothing twice"
    );
    assert_eq!(
        app.get(&format!("/v1/members/{m}/balances")).await.body["points"]["balance"],
        0
    );
    assert_eq!(
        app.get("/v1/ledger/accounts/system:expiry").await.body["points"]["balance"],
        30
    );
    assert_eq!(app.get("/v1/ledger/verify").await.body["ok"], true);
}

async fn birthday_perks_are_granted_once_per_year(app: TestApp) {
    let template = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": "生日券", "kind": "amount_off", "amount_off": 1000, "min_spend": 0,
                    "total_stock": 100, "per_member_limit": 5, "valid_days": 30}),
        )
        .await;
    assert_eq!(template.status, StatusCode::CREATED, "{:?}", template.body);
    let template_id = template.body["id"].as_str().unwrap().to_owned();
    let unknown = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/birthday",
            Some(&json!({"days_before": 3, "points": 88,
                         "coupon_template_id": "cpt_0123456789abcdef0123456789abcdef"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/birthday",
            Some(&json!({"days_before": 3, "points": 88, "coupon_template_id": template_id})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // GET answers in the shape PUT takes and returns.
    let read = app.get("/v1/program/birthday").await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body, reply.body);
    let reminders = app.get("/v1/program/reminders").await;
    assert_eq!(reminders.status, StatusCode::OK, "{:?}", reminders.body);
    assert!(reminders.body["repurchase_reminder_days"].is_number());
    let leap = app
        .post(
            "/v1/members",
            &json!({"external_id": "leap", "birthday": "2000-02-29"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = tenant(&app);
    let app = Arc::new(app);
    // 2027 is not a leap year: the birthday is 28 February, the perk 3 days before, on the 25th.
    app.clock.set(at("2027-02-24T23:59:00+08:00"));
    assert_eq!(
        shequn::daily::run_daily(&app.state, &t)
            .await
            .unwrap()
            .birthday_perks,
        0
    );
    app.clock.set(at("2027-02-25T00:00:05+08:00"));
    assert_eq!(
        shequn::daily::run_daily(&app.state, &t)
            .await
            .unwrap()
            .birthday_perks,
        1
    );
    assert_eq!(
        shequn::daily::run_daily(&app.state, &t)
            .await
            .unwrap()
            .birthday_perks,
        0,
        "once a year"
    );
    app.clock.set(at("2027-02-28T10:00:00+08:00"));
    assert_eq!(
        shequn::daily::run_daily(&app.state, &t)
            .await
            .unwrap()
            .birthday_perks,
        0
    );
    assert_eq!(
        app.get(&format!("/v1/members/{leap}/balances")).await.body["points"]["balance"],
        88
    );
    app.clock.set(at("2028-02-26T08:00:00+08:00"));
    assert_eq!(
        shequn::daily::run_daily(&app.state, &t)
            .await
            .unwrap()
            .birthday_perks,
        1,
        "next year again"
    );
    let events = app.get("/v1/events?type=member.birthday_perk").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 2);
    let coupons = app.get(&format!("/v1/members/{leap}/coupons")).await;
    assert_eq!(
        coupons.body["data"].as_array().unwrap().len(),
        2,
        "a birthday coupon each year: {} {}",
        events.body,
        coupons.body
    );
}

async fn burn_quote_caps_by_share_of_order_and_balance(app: TestApp) {
    let m = app.member("burner").await;
    ledger_move(&app, "g", "system:issuance", &format!("member:{m}"), 3_000).await;
    let put = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/points",
            Some(
                &json!({"points_per_yuan": 1, "burn_points_per_yuan": 100, "burn_cap_bp": 2000,
                         "return_window_days": 7, "expiry": "end_of_next_year"}),
            ),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    // Order 100.00 yuan, cap 20 % = 20 yuan = 2,000 points (the member has 3,000).
    let quote = app
        .get(&format!(
            "/v1/members/{m}/points/burn-quote?order_amount=10000"
        ))
        .await;
    assert_eq!(quote.body["max_points"], 2000);
    assert_eq!(quote.body["value"], 2000);
    // A big order: capped by the balance instead.
    let quote = app
        .get(&format!(
            "/v1/members/{m}/points/burn-quote?order_amount=1000000"
        ))
        .await;
    assert_eq!(quote.body["max_points"], 3000);
    assert_eq!(quote.body["value"], 3000);
    let bad = app
        .call(
            axum::http::Method::PUT,
            "/v1/program/points",
            Some(
                &json!({"points_per_yuan": 1, "burn_points_per_yuan": 100, "burn_cap_bp": 2000,
                         "return_window_days": 7, "expiry": "days_after_earning"}),
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "expiry_days");
}
