//! Coupons API: templates, claims under stock and per-member limits (also concurrently),
//! redemption arithmetic, double redemption, expiry on the manual clock, unredemption, events
//! and tenant isolation.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};

use shequn::common::ids::{MemberId, TenantId};
use shequn::membership::coupons::{self, model::CouponTemplateId};

use crate::backend_tests;
use crate::support::{build, TestApp};

backend_tests!(
    create_template_returns_201_with_counts,
    create_template_validates_fields_and_names_them,
    templates_list_pages_with_a_cursor,
    claim_returns_201_and_counts_down_the_stock,
    claim_respects_the_per_member_limit,
    claim_returns_409_out_of_stock_when_stock_is_gone,
    claim_of_unknown_template_or_member_is_404_and_erased_member_409,
    forty_members_claiming_the_last_ten_coupons_get_exactly_ten,
    twenty_concurrent_claims_with_limit_two_get_exactly_two,
    redeem_amount_off_returns_the_discount,
    redeem_percent_off_floors_and_caps_at_max_discount,
    redeem_returns_422_below_min_spend,
    redeem_returns_409_when_coupon_already_used,
    ten_concurrent_redemptions_succeed_once,
    redeem_returns_409_when_coupon_expired_on_the_clock,
    fixed_window_coupons_follow_the_window,
    unredeem_puts_the_coupon_back_or_expires_it,
    member_coupons_filter_by_status,
    coupon_changes_write_events,
    other_tenants_get_404,
    grant_issues_inside_the_callers_transaction,
);

async fn template(app: &TestApp, body: Value) -> Value {
    let reply = app.post("/v1/coupon-templates", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

/// An amount-off template valid 7 days from the claim.
async fn amount_template(app: &TestApp, amount_off: i64, stock: i64, limit: i64) -> String {
    template(
        app,
        json!({"name": "立减", "kind": "amount_off", "amount_off": amount_off,
               "total_stock": stock, "per_member_limit": limit, "valid_days": 7}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn claim(app: &TestApp, template_id: &str, member_id: &str) -> crate::support::Reply {
    app.post(
        &format!("/v1/coupon-templates/{template_id}/claim"),
        &json!({ "member_id": member_id }),
    )
    .await
}

async fn coupon_for(app: &TestApp, template_id: &str, member_id: &str) -> String {
    let reply = claim(app, template_id, member_id).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn redeem(
    app: &TestApp,
    coupon_id: &str,
    order_ref: &str,
    amount: i64,
) -> crate::support::Reply {
    app.post(
        &format!("/v1/coupons/{coupon_id}/redeem"),
        &json!({ "order_ref": order_ref, "order_amount": amount }),
    )
    .await
}

async fn create_template_returns_201_with_counts(app: TestApp) {
    let body = template(
        &app,
        json!({"name": "满100减20", "kind": "amount_off", "amount_off": 2000,
               "min_spend": 10000, "total_stock": 100, "valid_days": 30}),
    )
    .await;
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("cpt_"), "{id}");
    assert_eq!(body["kind"], "amount_off");
    assert_eq!(body["amount_off"], 2000);
    assert_eq!(body["issued"], 0);
    assert_eq!(body["remaining"], 100);
    assert_eq!(body["per_member_limit"], 1, "default limit");
    assert_eq!(body["valid_days"], 30);
    let fetched = app.get(&format!("/v1/coupon-templates/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, body);

    let windowed = template(
        &app,
        json!({"name": "八折", "kind": "percent_off", "percent_off_bp": 2000,
               "max_discount": 5000, "total_stock": 5,
               "valid_from": "2026-01-01", "valid_to": "2026-02-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(windowed["percent_off_bp"], 2000);
    // A plain date is the start of that day in the tenant's zone (Asia/Shanghai, UTC+8).
    assert_eq!(windowed["valid_from"], "2025-12-31T16:00:00Z");
    assert_eq!(windowed["valid_to"], "2026-02-01T00:00:00Z");
    assert_eq!(windowed["valid_days"], Value::Null);
}

async fn create_template_validates_fields_and_names_them(app: TestApp) {
    let base = json!({"name": "x", "kind": "amount_off", "amount_off": 100,
                      "total_stock": 10, "valid_days": 7});
    let with = |changes: Value| {
        let mut body = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases = [
        (with(json!({"kind": "free_gift"})), "kind"),
        (with(json!({"amount_off": null})), "amount_off"),
        (with(json!({"amount_off": 0})), "amount_off"),
        (with(json!({"percent_off_bp": 500})), "percent_off_bp"),
        (with(json!({"kind": "percent_off"})), "amount_off"),
        (
            with(json!({"kind": "percent_off", "amount_off": null, "percent_off_bp": 0})),
            "percent_off_bp",
        ),
        (with(json!({"total_stock": 0})), "total_stock"),
        (with(json!({"total_stock": null})), "total_stock"),
        (with(json!({"per_member_limit": 0})), "per_member_limit"),
        (with(json!({"valid_days": null})), "valid_days"),
        (
            with(json!({"valid_from": "2026-01-01", "valid_to": "2026-02-01"})),
            "valid_days",
        ),
        (
            with(json!({"valid_days": null, "valid_from": "2026-01-01"})),
            "valid_to",
        ),
        (
            with(json!({"valid_days": null, "valid_from": "2026-02-01", "valid_to": "2026-01-01"})),
            "valid_to",
        ),
        (with(json!({"name": ""})), "name"),
        (with(json!({"min_spend": -1})), "min_spend"),
    ];
    for (body, field) in cases {
        let reply = app.post("/v1/coupon-templates", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "validation_failed");
        assert_eq!(reply.body["error"]["details"]["field"], field, "{body}");
    }
    let unknown = app
        .post("/v1/coupon-templates", &with(json!({"stock": 5})))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let wrong_type = app
        .post(
            "/v1/coupon-templates",
            &with(json!({"total_stock": "many"})),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    let list = app.get("/v1/coupon-templates").await;
    assert_eq!(list.body["data"], json!([]), "nothing was created");
}

async fn templates_list_pages_with_a_cursor(app: TestApp) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(amount_template(&app, 100, 1, 1).await);
    }
    let first = app.get("/v1/coupon-templates?limit=2").await;
    assert_eq!(first.status, StatusCode::OK);
    let mut seen: Vec<String> = Vec::new();
    let mut page = first.body;
    loop {
        for t in page["data"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        page = app
            .get(&format!("/v1/coupon-templates?limit=2&cursor={cursor}"))
            .await
            .body;
    }
    assert_eq!(seen, ids);
    let bad = app.get("/v1/coupon-templates?limit=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = app.get("/v1/coupon-templates?cursor=nope").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn claim_returns_201_and_counts_down_the_stock(app: TestApp) {
    let t = amount_template(&app, 500, 3, 1).await;
    let m = app.member("a").await;
    let reply = claim(&app, &t, &m).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let coupon = &reply.body;
    assert!(coupon["id"].as_str().unwrap().starts_with("cpn_"));
    assert_eq!(coupon["template_id"], t.as_str());
    assert_eq!(coupon["member_id"], m.as_str());
    assert_eq!(coupon["status"], "active");
    assert_eq!(coupon["reason"], "claim");
    let from: jiff::Timestamp = coupon["valid_from"].as_str().unwrap().parse().unwrap();
    let to: jiff::Timestamp = coupon["valid_to"].as_str().unwrap().parse().unwrap();
    assert_eq!(to.duration_since(from), SignedDuration::from_hours(7 * 24));
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 1);
    assert_eq!(t_body["remaining"], 2);
    let fetched = app
        .get(&format!("/v1/coupons/{}", coupon["id"].as_str().unwrap()))
        .await;
    assert_eq!(fetched.body, reply.body);
}

async fn claim_respects_the_per_member_limit(app: TestApp) {
    let t = amount_template(&app, 500, 10, 2).await;
    let m = app.member("a").await;
    coupon_for(&app, &t, &m).await;
    coupon_for(&app, &t, &m).await;
    let third = claim(&app, &t, &m).await;
    assert_eq!(third.status, StatusCode::CONFLICT);
    assert_eq!(third.body["error"]["code"], "limit_reached");
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 2, "a refused claim takes no stock");
    let other = app.member("b").await;
    coupon_for(&app, &t, &other).await;
}

async fn claim_returns_409_out_of_stock_when_stock_is_gone(app: TestApp) {
    let t = amount_template(&app, 500, 1, 1).await;
    let a = app.member("a").await;
    let b = app.member("b").await;
    coupon_for(&app, &t, &a).await;
    let reply = claim(&app, &t, &b).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "out_of_stock");
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["remaining"], 0);
}

async fn claim_of_unknown_template_or_member_is_404_and_erased_member_409(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let m = app.member("a").await;
    let unknown_template = claim(&app, "cpt_0123456789abcdef0123456789abcdef", &m).await;
    assert_eq!(unknown_template.status, StatusCode::NOT_FOUND);
    let malformed = claim(&app, "nonsense", &m).await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    let unknown_member = claim(&app, &t, "mem_0123456789abcdef0123456789abcdef").await;
    assert_eq!(unknown_member.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&format!("/v1/members/{m}")).await.status,
        StatusCode::OK
    );
    let erased = claim(&app, &t, &m).await;
    assert_eq!(erased.status, StatusCode::CONFLICT);
    assert_eq!(erased.body["error"]["code"], "member_erased");
    let missing_body = app
        .post(&format!("/v1/coupon-templates/{t}/claim"), &json!({}))
        .await;
    assert_eq!(missing_body.status, StatusCode::BAD_REQUEST);
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 0);
}

async fn forty_members_claiming_the_last_ten_coupons_get_exactly_ten(app: TestApp) {
    let t = amount_template(&app, 500, 12, 1).await;
    // Two coupons go first so that these are the last ten.
    for name in ["early-1", "early-2"] {
        let m = app.member(name).await;
        coupon_for(&app, &t, &m).await;
    }
    let mut members = Vec::new();
    for i in 0..40 {
        members.push(app.member(&format!("m{i}")).await);
    }
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for m in members {
        let (app, t) = (app.clone(), t.clone());
        tasks.push(tokio::spawn(async move { claim(&app, &t, &m).await }));
    }
    let (mut created, mut out_of_stock) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(reply.body["error"]["code"], "out_of_stock");
                out_of_stock += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!((created, out_of_stock), (10, 30));
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 12);
    assert_eq!(t_body["remaining"], 0);
}

async fn twenty_concurrent_claims_with_limit_two_get_exactly_two(app: TestApp) {
    let t = amount_template(&app, 500, 100, 2).await;
    let m = app.member("a").await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, t, m) = (app.clone(), t.clone(), m.clone());
        tasks.push(tokio::spawn(async move { claim(&app, &t, &m).await }));
    }
    let mut created = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(reply.body["error"]["code"], "limit_reached"),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(created, 2);
    let held = app.get(&format!("/v1/members/{m}/coupons")).await;
    assert_eq!(held.body["data"].as_array().unwrap().len(), 2);
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 2, "refused claims gave their stock back");
}

async fn redeem_amount_off_returns_the_discount(app: TestApp) {
    let t = amount_template(&app, 500, 5, 5).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    let reply = redeem(&app, &c, "order-1", 3000).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["discount"], 500);
    assert_eq!(reply.body["coupon"]["status"], "redeemed");
    assert_eq!(reply.body["coupon"]["order_ref"], "order-1");
    let small = coupon_for(&app, &t, &m).await;
    let reply = redeem(&app, &small, "order-2", 300).await;
    assert_eq!(reply.body["discount"], 300, "never more than the order");
    let bad = redeem(&app, &c, "order-3", -1).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "order_amount");
    let unknown = redeem(&app, "cpn_0123456789abcdef0123456789abcdef", "o", 100).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn redeem_percent_off_floors_and_caps_at_max_discount(app: TestApp) {
    let t = template(
        &app,
        json!({"name": "85折", "kind": "percent_off", "percent_off_bp": 1500,
               "max_discount": 1000, "total_stock": 5, "per_member_limit": 5, "valid_days": 1}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    assert_eq!(redeem(&app, &c, "o1", 999).await.body["discount"], 149);
    let c = coupon_for(&app, &t, &m).await;
    assert_eq!(redeem(&app, &c, "o2", 100_000).await.body["discount"], 1000);
}

async fn redeem_returns_422_below_min_spend(app: TestApp) {
    let t = template(
        &app,
        json!({"name": "满100减20", "kind": "amount_off", "amount_off": 2000,
               "min_spend": 10000, "total_stock": 5, "valid_days": 7}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    let reply = redeem(&app, &c, "o1", 9999).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["code"], "min_spend_not_met");
    let coupon = app.get(&format!("/v1/coupons/{c}")).await.body;
    assert_eq!(coupon["status"], "active", "nothing was written");
    let reply = redeem(&app, &c, "o1", 10000).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["discount"], 2000);
}

async fn redeem_returns_409_when_coupon_already_used(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    assert_eq!(redeem(&app, &c, "o1", 1000).await.status, StatusCode::OK);
    let again = redeem(&app, &c, "o2", 1000).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "already_redeemed");
}

async fn ten_concurrent_redemptions_succeed_once(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (app, c) = (app.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            redeem(&app, &c, &format!("order-{i}"), 1000).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(reply.body["error"]["code"], "already_redeemed"),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(ok, 1);
    let events = app.get("/v1/events?type=coupon.redeemed").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
}

async fn redeem_returns_409_when_coupon_expired_on_the_clock(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    app.clock.advance(SignedDuration::from_hours(7 * 24 - 1));
    assert_eq!(
        app.get(&format!("/v1/coupons/{c}")).await.body["status"],
        "active"
    );
    app.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(
        app.get(&format!("/v1/coupons/{c}")).await.body["status"],
        "expired"
    );
    let reply = redeem(&app, &c, "o1", 1000).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "coupon_expired");
}

async fn fixed_window_coupons_follow_the_window(app: TestApp) {
    let now: jiff::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    app.clock.set(now);
    let from = now.checked_add(SignedDuration::from_hours(24)).unwrap();
    let to = now.checked_add(SignedDuration::from_hours(48)).unwrap();
    let t = template(
        &app,
        json!({"name": "周末券", "kind": "amount_off", "amount_off": 100, "total_stock": 5,
               "valid_from": from.to_string(), "valid_to": to.to_string()}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app.member("a").await;
    let claimed = claim(&app, &t, &m).await;
    assert_eq!(claimed.body["valid_from"], from.to_string());
    assert_eq!(claimed.body["valid_to"], to.to_string());
    let c = claimed.body["id"].as_str().unwrap();
    let early = redeem(&app, c, "o1", 1000).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "not valid yet");
    assert_eq!(early.body["error"]["code"], "coupon_expired");
    app.clock.advance(SignedDuration::from_hours(24));
    assert_eq!(redeem(&app, c, "o1", 1000).await.status, StatusCode::OK);
    app.clock.advance(SignedDuration::from_hours(24));
    let late = claim(&app, &t, &app.member("b").await).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["error"]["code"], "template_expired");
}

async fn unredeem_puts_the_coupon_back_or_expires_it(app: TestApp) {
    let t = amount_template(&app, 500, 5, 5).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    let not_yet = app
        .post(&format!("/v1/coupons/{c}/unredeem"), &json!({}))
        .await;
    assert_eq!(not_yet.status, StatusCode::CONFLICT);
    assert_eq!(not_yet.body["error"]["code"], "not_redeemed");
    assert_eq!(redeem(&app, &c, "o1", 1000).await.status, StatusCode::OK);
    let wrong_order = app
        .post(
            &format!("/v1/coupons/{c}/unredeem"),
            &json!({"order_ref": "o2"}),
        )
        .await;
    assert_eq!(wrong_order.status, StatusCode::CONFLICT);
    assert_eq!(wrong_order.body["error"]["code"], "order_mismatch");
    // No body at all is fine too.
    let back = app
        .send(build(
            Method::POST,
            &format!("/v1/coupons/{c}/unredeem"),
            Some(&app.key),
            None,
            None,
        ))
        .await;
    assert_eq!(back.status, StatusCode::OK, "{:?}", back.body);
    assert_eq!(back.body["status"], "active");
    assert_eq!(back.body["order_ref"], Value::Null);
    let twice = app
        .post(&format!("/v1/coupons/{c}/unredeem"), &json!({}))
        .await;
    assert_eq!(twice.body["error"]["code"], "not_redeemed");
    assert_eq!(
        redeem(&app, &c, "o3", 1000).await.status,
        StatusCode::OK,
        "usable again"
    );

    // A coupon refunded after its window comes back expired.
    let late = coupon_for(&app, &t, &m).await;
    assert_eq!(redeem(&app, &late, "o4", 1000).await.status, StatusCode::OK);
    app.clock.advance(SignedDuration::from_hours(8 * 24));
    let back = app
        .post(
            &format!("/v1/coupons/{late}/unredeem"),
            &json!({"order_ref": "o4"}),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(back.body["status"], "expired");
    let reply = redeem(&app, &late, "o5", 1000).await;
    assert_eq!(reply.body["error"]["code"], "coupon_expired");
}

async fn member_coupons_filter_by_status(app: TestApp) {
    let week = amount_template(&app, 500, 10, 10).await;
    let m = app.member("a").await;
    let redeemed = coupon_for(&app, &week, &m).await;
    let active = coupon_for(&app, &week, &m).await;
    assert_eq!(
        redeem(&app, &redeemed, "o1", 1000).await.status,
        StatusCode::OK
    );
    app.clock.advance(SignedDuration::from_hours(6 * 24));
    let day = template(
        &app,
        json!({"name": "日券", "kind": "amount_off", "amount_off": 100, "total_stock": 5,
               "valid_days": 3}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let later = coupon_for(&app, &day, &m).await;
    app.clock.advance(SignedDuration::from_hours(2 * 24));
    let ids = |reply: crate::support::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!("/v1/members/{m}/coupons");
    assert_eq!(
        ids(app.get(&path).await),
        vec![redeemed.clone(), active.clone(), later.clone()]
    );
    assert_eq!(
        ids(app.get(&format!("{path}?status=active")).await),
        vec![later]
    );
    assert_eq!(
        ids(app.get(&format!("{path}?status=expired")).await),
        vec![active]
    );
    assert_eq!(
        ids(app.get(&format!("{path}?status=redeemed")).await),
        vec![redeemed]
    );
    let bad = app.get(&format!("{path}?status=lost")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app
        .get("/v1/members/mem_0123456789abcdef0123456789abcdef/coupons")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn coupon_changes_write_events(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    redeem(&app, &c, "o1", 1000).await;
    app.post(&format!("/v1/coupons/{c}/unredeem"), &json!({}))
        .await;
    let events = app.get("/v1/events").await.body;
    let kinds: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|k| k.starts_with("coupon."))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "coupon.template_created",
            "coupon.claimed",
            "coupon.redeemed",
            "coupon.unredeemed"
        ]
    );
    let redeemed = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "coupon.redeemed")
        .unwrap();
    assert_eq!(redeemed["subject"], m.as_str());
    assert_eq!(redeemed["data"]["coupon_id"], c.as_str());
    assert_eq!(redeemed["data"]["discount"], 500);
}

async fn other_tenants_get_404(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let m = app.member("a").await;
    let c = coupon_for(&app, &t, &m).await;
    let (_, other_key) = app.other_tenant().await;
    let as_other = |method: Method, path: String, body: Option<Value>| {
        build(method, &path, Some(&other_key), body.as_ref(), None)
    };
    let cases = [
        as_other(Method::GET, format!("/v1/coupon-templates/{t}"), None),
        as_other(
            Method::POST,
            format!("/v1/coupon-templates/{t}/claim"),
            Some(json!({"member_id": m})),
        ),
        as_other(Method::GET, format!("/v1/coupons/{c}"), None),
        as_other(
            Method::POST,
            format!("/v1/coupons/{c}/redeem"),
            Some(json!({"order_ref": "x", "order_amount": 1000})),
        ),
        as_other(
            Method::POST,
            format!("/v1/coupons/{c}/unredeem"),
            Some(json!({})),
        ),
        as_other(Method::GET, format!("/v1/members/{m}/coupons"), None),
    ];
    for request in cases {
        let path = request.uri().to_string();
        let reply = app.send(request).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {:?}",
            reply.body
        );
    }
    let list = app
        .send(as_other(Method::GET, "/v1/coupon-templates".into(), None))
        .await;
    assert_eq!(list.body["data"], json!([]));
    let coupon = app.get(&format!("/v1/coupons/{c}")).await.body;
    assert_eq!(coupon["status"], "active", "untouched by the other tenant");
}

async fn grant_issues_inside_the_callers_transaction(app: TestApp) {
    let t = amount_template(&app, 500, 5, 1).await;
    let (a, b) = (app.member("a").await, app.member("b").await);
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let template_id = CouponTemplateId::parse(&t).unwrap();
    let (member_a, member_b) = (MemberId::parse(&a).unwrap(), MemberId::parse(&b).unwrap());

    let mut tx = app.state.begin().await.unwrap();
    let coupon = coupons::grant(&mut tx, &tenant, &template_id, &member_a, "birthday")
        .await
        .unwrap();
    assert_eq!(coupon.reason, "birthday");
    assert_eq!(coupon.status, "active");
    let refused = coupons::grant(&mut tx, &tenant, &template_id, &member_a, "birthday")
        .await
        .unwrap_err();
    assert_eq!(refused.code, "limit_reached");
    // The refusal left nothing behind, so the caller can still commit its other work.
    tx.commit().await.unwrap();
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 1);

    // A caller that rolls back takes the grant with it.
    let mut tx = app.state.begin().await.unwrap();
    coupons::grant(&mut tx, &tenant, &template_id, &member_b, "referral")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let t_body = app.get(&format!("/v1/coupon-templates/{t}")).await.body;
    assert_eq!(t_body["issued"], 1);
    let held = app.get(&format!("/v1/members/{b}/coupons")).await.body;
    assert_eq!(held["data"], json!([]));

    let held = app.get(&format!("/v1/members/{a}/coupons")).await.body;
    assert_eq!(held["data"][0]["reason"], "birthday");
    let claimed = app.get("/v1/events?type=coupon.claimed").await.body;
    assert_eq!(claimed["data"].as_array().unwrap().len(), 1);
    assert_eq!(claimed["data"][0]["data"]["reason"], "birthday");
}
