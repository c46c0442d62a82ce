//! Communities: groups and their capacity under concurrent joins, join links, statistics,
//! check-ins (one per tenant-local day, cycles that cannot be replayed, make-ups), and
//! lotteries (stock under concurrent instant entries, the draw and its proof, verified by
//! the real `shequn lottery verify`), and the paged lists of lotteries and join links.

use std::process::Command;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use jiff::Timestamp;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shequn::community::lottery::draw;

use crate::backend_tests;
use crate::support::{build, Reply, TestApp};

backend_tests!(
    join_link_routes_to_the_first_group_with_room_and_reports_all_full,
    group_capacity_is_exact_under_concurrent_joins,
    group_stats_count_days_inviters_and_gmv_inside_stays,
    concurrent_checkins_succeed_exactly_once,
    checkins_follow_the_tenant_day_at_midnight,
    checkin_cycles_cannot_be_replayed_with_makeups,
    makeups_are_limited_per_month_and_cost_points,
    concurrent_instant_entries_give_out_exactly_the_stock,
    draw_is_deterministic_and_its_proof_checks_out,
    lottery_verify_accepts_the_proof_and_rejects_a_tampered_one,
    lotteries_are_listed_newest_first_by_status_and_page,
    group_links_are_listed_with_their_groups_fill_state,
    group_members_are_listed_in_join_order_and_paged,
);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

async fn group(app: &TestApp, owner: &str, capacity: i64) -> String {
    let reply = app
        .post(
            "/v1/groups",
            &json!({"name": "宝妈群", "owner_member_id": owner, "capacity": capacity, "tags": ["mums"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["member_count"], 1, "the owner is a member");
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn give_points(app: &TestApp, id: &str, member: &str, amount: i64) {
    let reply = app
        .post(
            "/v1/ledger/transfers",
            &json!({"transfers": [{"id": id, "from": "system:issuance", "to": format!("member:{member}"),
                                   "asset": "points", "amount": amount, "code": "test"}]}),
        )
        .await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{:?}",
        reply.body
    );
}

async fn points(app: &TestApp, member: &str) -> i64 {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["points"]["balance"].as_i64().unwrap_or(0)
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}")).await;
    reply.body["data"].as_array().unwrap().clone()
}

fn code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or("")
}

async fn join_link_routes_to_the_first_group_with_room_and_reports_all_full(app: TestApp) {
    let owner = app.member("owner").await;
    // Each group holds its owner and one more.
    let a = group(&app, &owner, 2).await;
    let b = group(&app, &owner, 2).await;
    let reply = app
        .post(
            "/v1/group-links",
            &json!({"name": "门店活码", "group_ids": [a, b]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let link = reply.body["code"].as_str().unwrap().to_owned();
    let join = |member: String| {
        let (app, link, owner) = (&app, link.clone(), owner.clone());
        async move {
            app.post(
                &format!("/v1/group-links/{link}/join"),
                &json!({"member_id": member, "inviter_member_id": owner}),
            )
            .await
        }
    };
    let (m1, m2, m3, m4) = (
        app.member("m1").await,
        app.member("m2").await,
        app.member("m3").await,
        app.member("m4").await,
    );
    let first = join(m1.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["group_id"], a.as_str());
    let again = join(m1.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        (
            again.body["group_id"].as_str(),
            again.body["already_member"].as_bool()
        ),
        (Some(a.as_str()), Some(true)),
        "joining twice is a no-op"
    );
    assert_eq!(join(m2).await.body["group_id"], b.as_str());
    let full = join(m3.clone()).await;
    assert_eq!(full.status, StatusCode::CONFLICT);
    assert_eq!(code(&full), "all_groups_full");
    assert_eq!(join(m4.clone()).await.status, StatusCode::CONFLICT);
    assert_eq!(
        events(&app, "group_link.all_full").await.len(),
        1,
        "operators are told once per episode"
    );
    assert_eq!(
        app.get(&format!("/v1/groups/{a}")).await.body["member_count"],
        2
    );

    // An operator appends a group; the waiting members get in.
    let c = group(&app, &owner, 3).await;
    let reply = app
        .post(
            &format!("/v1/group-links/{link}/groups"),
            &json!({"group_ids": [c, a]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["groups"].as_array().unwrap().len(), 3);
    assert_eq!(reply.body["groups"][2]["group_id"], c.as_str());
    assert_eq!(join(m3).await.body["group_id"], c.as_str());
    assert_eq!(join(m4).await.body["group_id"], c.as_str());

    // Unknown or foreign codes and bad bodies.
    assert_eq!(
        app.post(
            "/v1/group-links/aaaaaaaaaaaaaaaa/join",
            &json!({"member_id": m1})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let (_, other_key) = app.other_tenant().await;
    let foreign = app
        .send(crate::support::build(
            Method::GET,
            &format!("/v1/group-links/{link}"),
            Some(&other_key),
            None,
            None,
        ))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let bad = app
        .post("/v1/group-links", &json!({"name": "x", "group_ids": []}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "group_ids");
    let unknown = app
        .post(
            "/v1/group-links",
            &json!({"name": "x", "group_ids": ["grp_0123456789abcdef0123456789abcdef"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn group_capacity_is_exact_under_concurrent_joins(app: TestApp) {
    let owner = app.member("owner").await;
    let g = group(&app, &owner, 5).await;
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(app.member(&format!("c{i}")).await);
    }
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for m in members.clone() {
        let (app, g) = (app.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            app.post(&format!("/v1/groups/{g}/members"), &json!({"member_id": m}))
                .await
        }));
    }
    let (mut joined, mut full) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => joined += 1,
            StatusCode::CONFLICT => {
                assert_eq!(code(&reply), "group_full");
                full += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!((joined, full), (4, 16));
    assert_eq!(
        app.get(&format!("/v1/groups/{g}")).await.body["member_count"],
        5
    );

    // Through a link over two groups with two free seats each: exactly four get in.
    let x = group(&app, &owner, 3).await;
    let y = group(&app, &owner, 3).await;
    let link = app
        .post(
            "/v1/group-links",
            &json!({"name": "活码", "group_ids": [x, y]}),
        )
        .await
        .body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tasks = Vec::new();
    for m in members.into_iter().take(10) {
        let (app, link) = (app.clone(), link.clone());
        tasks.push(tokio::spawn(async move {
            app.post(
                &format!("/v1/group-links/{link}/join"),
                &json!({"member_id": m}),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(
            reply.status == StatusCode::OK || code(&reply) == "all_groups_full",
            "{:?}",
            reply.body
        );
        statuses.push(reply.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 4);
    for id in [x, y] {
        assert_eq!(
            app.get(&format!("/v1/groups/{id}")).await.body["member_count"],
            3
        );
    }
}

async fn insert_order(
    app: &TestApp,
    member: &str,
    status: &str,
    total: i64,
    paid_at: Option<&str>,
) {
    let paid = paid_at.map(|p| at(p).as_microsecond());
    sqlx::query(
        "INSERT INTO customer_order (tenant_id, id, member_id, source, status, total, currency, items, ordered_at, paid_at, created_at) \
         VALUES ($1, $2, $3, 'test', $4, $5, 'CNY', '[]', $6, $7, $6)",
    )
    .bind(app.tenant_id.as_str())
    .bind(format!("ord_{}", uuid::Uuid::now_v7().simple()))
    .bind(member)
    .bind(status)
    .bind(total)
    .bind(paid.unwrap_or(0))
    .bind(paid)
    .execute(&mut *app.state.db.write_conn().await.unwrap())
    .await
    .expect("insert order");
}

async fn group_stats_count_days_inviters_and_gmv_inside_stays(app: TestApp) {
    // Tenant time zone is Asia/Shanghai (the default).
    app.clock.set(at("2026-05-01T09:00:00+08:00"));
    let owner = app.member("owner").await;
    let (m1, m2, m3) = (
        app.member("m1").await,
        app.member("m2").await,
        app.member("m3").await,
    );
    let g = group(&app, &owner, 500).await;
    let join = |member: &str, inviter: Option<&str>| {
        let body = match inviter {
            Some(i) => json!({"member_id": member, "inviter_member_id": i}),
            None => json!({"member_id": member}),
        };
        let path = format!("/v1/groups/{g}/members");
        let app = &app;
        async move { app.post(&path, &body).await }
    };
    insert_order(&app, &m2, "paid", 9_999, Some("2026-04-30T10:00:00+08:00")).await; // before joining
    assert_eq!(join(&m1, Some(&owner)).await.status, StatusCode::CREATED);
    assert_eq!(join(&m2, Some(&m1)).await.status, StatusCode::CREATED);
    app.clock.set(at("2026-05-01T23:30:00+08:00"));
    assert_eq!(join(&m3, Some(&m1)).await.status, StatusCode::CREATED);
    insert_order(&app, &m1, "paid", 1_000, Some("2026-05-01T12:00:00+08:00")).await;
    insert_order(
        &app,
        &m3,
        "completed",
        200,
        Some("2026-05-01T23:45:00+08:00"),
    )
    .await;
    insert_order(&app, &m1, "pending", 7_777, None).await;
    insert_order(
        &app,
        &m1,
        "cancelled",
        6_666,
        Some("2026-05-01T13:00:00+08:00"),
    )
    .await;

    // m1 leaves on the 2nd (local), buys outside the group, rejoins on the 3rd and buys again.
    app.clock.set(at("2026-05-02T00:10:00+08:00"));
    let left = app.delete(&format!("/v1/groups/{g}/members/{m1}")).await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    assert!(left.body["left_at"].is_string());
    insert_order(&app, &m1, "paid", 500, Some("2026-05-02T12:00:00+08:00")).await;
    assert_eq!(
        app.delete(&format!("/v1/groups/{g}/members/{m1}"))
            .await
            .status,
        StatusCode::NOT_FOUND,
        "not in the group any more"
    );
    let owner_leaves = app.delete(&format!("/v1/groups/{g}/members/{owner}")).await;
    assert_eq!(code(&owner_leaves), "owner_cannot_leave");
    app.clock.set(at("2026-05-03T08:00:00+08:00"));
    assert_eq!(join(&m1, None).await.status, StatusCode::CREATED);
    insert_order(
        &app,
        &m1,
        "fulfilled",
        300,
        Some("2026-05-03T09:00:00+08:00"),
    )
    .await;
    assert_eq!(join(&m1, None).await.status, StatusCode::OK, "already in");

    let stats = app
        .get(&format!(
            "/v1/groups/{g}/stats?from=2026-05-01&to=2026-05-03"
        ))
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.body);
    let body = &stats.body;
    assert_eq!(body["members"], 4);
    assert_eq!(
        body["by_day"],
        json!([
            {"date": "2026-05-01", "joins": 4, "leaves": 0},
            {"date": "2026-05-02", "joins": 0, "leaves": 1},
            {"date": "2026-05-03", "joins": 1, "leaves": 0},
        ])
    );
    assert_eq!(
        (body["joins"].as_i64(), body["leaves"].as_i64()),
        (Some(5), Some(1))
    );
    assert_eq!(
        body["joins_by_inviter"],
        json!([{"inviter_member_id": m1, "joins": 2}, {"inviter_member_id": owner, "joins": 1}])
    );
    assert_eq!(
        body["gmv"],
        1_000 + 200 + 300,
        "only paid orders inside a stay"
    );
    assert_eq!(body["paid_orders"], 3);

    // Bad input and other tenants.
    let bad = app
        .get(&format!(
            "/v1/groups/{g}/stats?from=2026-05-04&to=2026-05-01"
        ))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let too_big = app
        .post(
            "/v1/groups",
            &json!({"name": "x", "owner_member_id": owner, "capacity": 501}),
        )
        .await;
    assert_eq!(too_big.body["error"]["details"]["field"], "capacity");
    let list = app.get("/v1/groups?limit=1").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let (_, other_key) = app.other_tenant().await;
    let foreign = app
        .send(crate::support::build(
            Method::GET,
            &format!("/v1/groups/{g}/stats"),
            Some(&other_key),
            None,
            None,
        ))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

async fn check_in(app: &TestApp, member: &str) -> Reply {
    app.post("/v1/checkins", &json!({"member_id": member}))
        .await
}

async fn concurrent_checkins_succeed_exactly_once(app: TestApp) {
    let m = app.member("daily").await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (app, m) = (app.clone(), m.clone());
        tasks.push(tokio::spawn(async move { check_in(&app, &m).await }));
    }
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => {
                assert_eq!(reply.body["streak"], 1);
                assert_eq!(reply.body["reward"], json!({"points": 5}));
                created += 1;
            }
            StatusCode::CONFLICT => {
                assert_eq!(code(&reply), "already_checked_in");
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!((created, refused), (1, 9));
    assert_eq!(points(&app, &m).await, 5, "the reward is paid once");
    assert_eq!(events(&app, "checkin.created").await.len(), 1);
}

async fn checkins_follow_the_tenant_day_at_midnight(app: TestApp) {
    sqlx::query("UPDATE tenant SET timezone = $1 WHERE id = $2")
        .bind("America/Los_Angeles")
        .bind(app.tenant_id.as_str())
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();
    let m = app.member("night-owl").await;
    app.clock.set(at("2026-06-10T23:59:59-07:00"));
    let first = check_in(&app, &m).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(
        first.body["date"], "2026-06-10",
        "the tenant's day, not UTC's (already the 11th)"
    );
    app.clock.set(at("2026-06-10T23:59:59.900-07:00"));
    assert_eq!(code(&check_in(&app, &m).await), "already_checked_in");
    app.clock.set(at("2026-06-11T00:00:00-07:00"));
    let second = check_in(&app, &m).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    assert_eq!(
        (second.body["date"].as_str(), second.body["streak"].as_i64()),
        (Some("2026-06-11"), Some(2))
    );
    // A missed day breaks the streak.
    app.clock.set(at("2026-06-13T00:00:00-07:00"));
    let third = check_in(&app, &m).await;
    assert_eq!(
        (
            third.body["streak"].as_i64(),
            third.body["cycle_day"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let calendar = app
        .get(&format!("/v1/members/{m}/checkins?month=2026-06"))
        .await;
    assert_eq!(calendar.status, StatusCode::OK, "{:?}", calendar.body);
    assert_eq!(calendar.body["days"].as_array().unwrap().len(), 3);
    assert_eq!(calendar.body["checked_in_today"], true);
    assert_eq!(
        app.get(&format!("/v1/members/{m}/checkins?month=2026-6"))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn coupon_template(app: &TestApp) -> String {
    let reply = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": "七日礼", "kind": "amount_off", "amount_off": 500,
                    "total_stock": 100, "per_member_limit": 10, "valid_days": 30}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn coupons_of(app: &TestApp, member: &str) -> usize {
    let reply = app.get(&format!("/v1/members/{member}/coupons")).await;
    reply.body["data"].as_array().unwrap().len()
}

async fn checkin_cycles_cannot_be_replayed_with_makeups(app: TestApp) {
    let template = coupon_template(&app).await;
    let rule = json!({"cycle_days": 3,
                      "rewards": [{"day": 1, "reward": {"points": 5}}, {"day": 2, "reward": {"points": 5}},
                                  {"day": 3, "reward": {"coupon_template_id": template}}],
                      "makeup_per_month": 5, "makeup_cost_points": 0});
    let reply = app.call(Method::PUT, "/v1/checkin-rule", Some(&rule)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(app.get("/v1/checkin-rule").await.body, rule);
    app.clock.set(at("2026-05-20T10:00:00+08:00"));
    let m = app.member("fraudster").await;
    let day = |d: &str| at(&format!("{d}T10:00:00+08:00"));
    let mut seen = Vec::new();
    for d in ["2026-06-02", "2026-06-03", "2026-06-04", "2026-06-05"] {
        app.clock.set(day(d));
        let reply = check_in(&app, &m).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        seen.push(reply.body["cycle_day"].as_i64().unwrap());
    }
    assert_eq!(
        seen,
        vec![1, 2, 3, 1],
        "after the last day the cycle restarts"
    );
    assert_eq!(coupons_of(&app, &m).await, 1);
    // Making up the day before the run lengthens the streak, pays nothing, and must not
    // re-align the finished cycle so that tomorrow is day 3 again.
    let makeup = app
        .post(
            "/v1/checkins/makeup",
            &json!({"member_id": m, "date": "2026-06-01"}),
        )
        .await;
    assert_eq!(makeup.status, StatusCode::CREATED, "{:?}", makeup.body);
    assert_eq!(makeup.body["reward"], Value::Null);
    app.clock.set(day("2026-06-06"));
    let next = check_in(&app, &m).await;
    assert_eq!(next.body["streak"], 6, "{:?}", next.body);
    assert_eq!(next.body["cycle_day"], 2);
    assert_eq!(next.body["reward"], json!({"points": 5}));
    assert_eq!(
        coupons_of(&app, &m).await,
        1,
        "no second day-3 coupon from the make-up"
    );
    app.clock.set(day("2026-06-07"));
    let completes = check_in(&app, &m).await;
    assert_eq!(completes.body["cycle_day"], 3);
    assert_eq!(coupons_of(&app, &m).await, 2, "a new full cycle pays again");
    assert_eq!(points(&app, &m).await, 5 * 4);
    let bad = app
        .call(
            Method::PUT,
            "/v1/checkin-rule",
            Some(
                &json!({"cycle_days": 3, "rewards": [{"day": 4, "reward": {"points": 1}}],
                           "makeup_per_month": 1, "makeup_cost_points": 0}),
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "rewards[0].day");
}

async fn makeups_are_limited_per_month_and_cost_points(app: TestApp) {
    // The default rule: two make-ups a month at 20 points each.
    app.clock.set(at("2026-05-20T10:00:00+08:00"));
    let m = app.member("forgetful").await;
    give_points(&app, "seed-1", &m, 30).await;
    app.clock.set(at("2026-06-10T10:00:00+08:00"));
    let makeup = |date: &str| {
        let body = json!({"member_id": m, "date": date});
        let app = &app;
        async move { app.post("/v1/checkins/makeup", &body).await }
    };
    let first = makeup("2026-06-09").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(
        (
            first.body["streak"].as_i64(),
            first.body["points_cost"].as_i64()
        ),
        (Some(1), Some(20))
    );
    assert_eq!(points(&app, &m).await, 10);
    let poor = makeup("2026-06-08").await;
    assert_eq!(code(&poor), "insufficient_points");
    let calendar = app.get(&format!("/v1/members/{m}/checkins")).await.body;
    assert_eq!(
        calendar["days"].as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
    assert_eq!(calendar["makeups_left"], 1);
    give_points(&app, "seed-2", &m, 100).await;
    assert_eq!(makeup("2026-06-08").await.status, StatusCode::CREATED);
    let calendar = app
        .get(&format!("/v1/members/{m}/checkins?month=2026-06"))
        .await
        .body;
    assert_eq!(calendar["days"][1]["date"], "2026-06-09");
    assert_eq!(
        calendar["days"][1]["streak"], 2,
        "the later day's streak is recomputed"
    );
    assert_eq!(code(&makeup("2026-06-07").await), "makeup_limit_reached");
    assert_eq!(code(&makeup("2026-06-09").await), "already_checked_in");
    for date in ["2026-05-31", "2026-06-10", "2026-06-11", "June 1st"] {
        let reply = makeup(date).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{date}");
        assert_eq!(reply.body["error"]["details"]["field"], "date");
    }
    assert_eq!(points(&app, &m).await, 130 - 40);
    let today = check_in(&app, &m).await;
    assert_eq!(today.body["streak"], 3, "made-up days carry the streak");
    // A new month gives new make-ups.
    app.clock.set(at("2026-07-02T10:00:00+08:00"));
    assert_eq!(makeup("2026-07-01").await.status, StatusCode::CREATED);
    // Nobody makes up a day before they joined.
    let newcomer = app.member("newcomer").await;
    give_points(&app, "seed-3", &newcomer, 100).await;
    let early = app
        .post(
            "/v1/checkins/makeup",
            &json!({"member_id": newcomer, "date": "2026-07-01"}),
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        early.body
    );
    assert_eq!(early.body["error"]["details"]["field"], "date");
    let unknown = app
        .post(
            "/v1/checkins",
            &json!({"member_id": "mem_0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn lottery(app: &TestApp, body: Value) -> Value {
    let reply = app.post("/v1/lotteries", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

async fn enter(app: &TestApp, lottery: &str, member: &str) -> Reply {
    app.post(
        &format!("/v1/lotteries/{lottery}/entries"),
        &json!({"member_id": member}),
    )
    .await
}

async fn concurrent_instant_entries_give_out_exactly_the_stock(app: TestApp) {
    let created = lottery(
        &app,
        json!({"name": "转盘", "mode": "instant",
               "prizes": [{"name": "100积分", "reward": {"points": 100}, "stock": 3, "weight": 1}]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["seed"], Value::Null, "the seed stays secret");
    let mut members = Vec::new();
    for i in 0..12 {
        members.push(app.member(&format!("p{i}")).await);
    }
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for m in members.clone() {
        let (app, id) = (app.clone(), id.clone());
        tasks.push(tokio::spawn(async move { enter(&app, &id, &m).await }));
    }
    let mut winners = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        if !reply.body["prize"].is_null() {
            winners += 1;
        }
    }
    assert_eq!(winners, 3, "exactly the stock is given out");
    let body = app.get(&format!("/v1/lotteries/{id}")).await.body;
    assert_eq!(body["prizes"][0]["remaining"], 0);
    assert_eq!(body["entry_count"], 12);
    let mut paid = 0;
    for m in &members {
        paid += points(&app, m).await;
    }
    assert_eq!(paid, 300);
    assert_eq!(
        code(&app.get(&format!("/v1/lotteries/{id}/proof")).await),
        "not_revealed"
    );
    // Before closes_at a close must say it cuts the window short.
    let early = app
        .post(&format!("/v1/lotteries/{id}/draw"), &json!({}))
        .await;
    assert_eq!(code(&early), "lottery_still_open");
    assert!(early.body["error"]["details"]["closes_at"].is_string());
    let closed = app
        .post(
            &format!("/v1/lotteries/{id}/draw?close_early=true"),
            &json!({}),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    assert_eq!(closed.body["winners"].as_array().unwrap().len(), 3);
    // Instant prizes were paid at entry, and the close shows those payouts.
    for prize in closed.body["prizes"].as_array().unwrap() {
        assert!(prize["payout"].is_object(), "{prize}");
    }
    let proof: draw::Proof =
        serde_json::from_value(app.get(&format!("/v1/lotteries/{id}/proof")).await.body).unwrap();
    assert_eq!(proof.entries.len(), 12);
    assert_eq!(draw::verify(&proof), Ok(()));
    assert_eq!(code(&enter(&app, &id, &members[0]).await), "lottery_closed");
}

async fn draw_is_deterministic_and_its_proof_checks_out(app: TestApp) {
    let created = lottery(
        &app,
        json!({"name": "周年抽奖", "mode": "draw", "winners": 2,
               "prizes": [{"name": "一等奖", "reward": {"points": 50}, "stock": 1, "weight": 1}],
               "entry_cost_points": 10, "entries_per_member": 1}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let commitment = created["commitment"].as_str().unwrap().to_owned();
    assert_eq!(commitment.len(), 64);
    let mut members = Vec::new();
    for i in 0..5 {
        let m = app.member(&format!("d{i}")).await;
        give_points(&app, &format!("grant-{i}"), &m, 10).await;
        members.push(m);
    }
    let first = enter(&app, &id, &members[0]).await;
    assert_eq!(
        (first.status, first.body["entry_index"].as_i64()),
        (StatusCode::CREATED, Some(0))
    );
    assert_eq!(
        code(&enter(&app, &id, &members[0]).await),
        "entry_limit_reached"
    );
    assert_eq!(
        code(
            &app.post(
                &format!("/v1/lotteries/{id}/draw?close_early=true"),
                &json!({})
            )
            .await
        ),
        "not_enough_entries"
    );
    let broke = app.member("broke").await;
    assert_eq!(code(&enter(&app, &id, &broke).await), "insufficient_points");
    for m in &members[1..] {
        assert_eq!(enter(&app, &id, m).await.status, StatusCode::CREATED);
    }
    assert_eq!(
        points(&app, &members[1]).await,
        0,
        "the entry cost was debited"
    );
    assert_eq!(
        code(&app.get(&format!("/v1/lotteries/{id}/proof")).await),
        "not_revealed"
    );

    // Past closes_at (default: a week after opening) the draw needs no flag.
    app.clock.advance(jiff::SignedDuration::from_hours(24 * 8));
    let drawn = app
        .post(&format!("/v1/lotteries/{id}/draw"), &json!({}))
        .await;
    assert_eq!(drawn.status, StatusCode::OK, "{:?}", drawn.body);
    let seed_hex = drawn.body["seed"].as_str().unwrap().to_owned();
    let seed = hex::decode(&seed_hex).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&seed)), commitment);
    let winners: Vec<String> = serde_json::from_value(drawn.body["winners"].clone()).unwrap();
    let expected: Vec<String> = draw::draw(&seed, &members, 2)
        .into_iter()
        .map(|i| members[i].clone())
        .collect();
    assert_eq!(
        winners, expected,
        "the documented algorithm reproduces the draw"
    );
    assert_ne!(winners[0], winners[1]);
    assert_eq!(
        points(&app, &winners[0]).await,
        50,
        "the first winner gets the first prize"
    );
    assert_eq!(points(&app, &winners[1]).await, 0, "the stock was one");
    assert_eq!(
        code(
            &app.post(
                &format!("/v1/lotteries/{id}/draw?close_early=true"),
                &json!({})
            )
            .await
        ),
        "already_drawn"
    );
    assert_eq!(code(&enter(&app, &id, &broke).await), "lottery_closed");

    let proof = app.get(&format!("/v1/lotteries/{id}/proof")).await;
    assert_eq!(proof.status, StatusCode::OK, "{:?}", proof.body);
    assert_eq!(proof.body["entries"], json!(members));
    assert_eq!(proof.body["winners"], json!(winners));
    assert_eq!(proof.body["seed"], seed_hex.as_str());
    assert!(proof.body["algorithm"]
        .as_str()
        .unwrap()
        .starts_with("shequn-lottery-v1"));
    let get = app.get(&format!("/v1/lotteries/{id}")).await.body;
    assert_eq!(
        (get["status"].as_str(), get["seed"].as_str()),
        (Some("drawn"), Some(seed_hex.as_str()))
    );

    // Not yet open, and bad input.
    let later = lottery(
        &app,
        json!({"name": "later", "mode": "draw", "winners": 1,
               "opens_at": "2099-01-01T00:00:00Z", "closes_at": "2099-02-01T00:00:00Z"}),
    )
    .await;
    let later_id = later["id"].as_str().unwrap();
    assert_eq!(
        code(&enter(&app, later_id, &members[0]).await),
        "lottery_not_open"
    );
    for (body, field) in [
        (json!({"name": "x", "mode": "raffle", "winners": 1}), "mode"),
        (json!({"name": "x", "mode": "draw"}), "winners"),
        (
            json!({"name": "x", "mode": "draw", "winners": 1, "prizes": [{"name": "p", "reward": {"points": 5}}]}),
            "prizes[0].stock",
        ),
        (
            json!({"name": "x", "mode": "instant", "prizes": [{"name": "p", "reward": null}]}),
            "prizes",
        ),
        (
            json!({"name": "x", "mode": "draw", "winners": 1, "opens_at": "2026-01-02T00:00:00Z", "closes_at": "2026-01-01T00:00:00Z"}),
            "closes_at",
        ),
        (
            json!({"name": "x", "mode": "draw", "winners": 1, "prizes": [{"name": "p", "reward": {"coupon_template_id": "cpt_0123456789abcdef0123456789abcdef"}, "stock": 1}]}),
            "prizes[0].reward.coupon_template_id",
        ),
    ] {
        let reply = app.post("/v1/lotteries", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(
        app.get("/v1/lotteries/lot_0123456789abcdef0123456789abcdef")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

fn verify_with_binary(proof: &Value) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proof.json");
    std::fs::write(&path, proof.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args(["lottery", "verify", path.to_str().unwrap()])
        .env("SHEQUN_LOG", "warn")
        .output()
        .expect("run shequn");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn lottery_verify_accepts_the_proof_and_rejects_a_tampered_one(app: TestApp) {
    let created = lottery(&app, json!({"name": "验证", "mode": "draw", "winners": 2})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut members = Vec::new();
    for i in 0..6 {
        let m = app.member(&format!("v{i}")).await;
        assert_eq!(enter(&app, &id, &m).await.status, StatusCode::CREATED);
        members.push(m);
    }
    assert_eq!(
        app.post(
            &format!("/v1/lotteries/{id}/draw?close_early=true"),
            &json!({})
        )
        .await
        .status,
        StatusCode::OK
    );
    let proof = app.get(&format!("/v1/lotteries/{id}/proof")).await.body;

    let (code, out, err) = verify_with_binary(&proof);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"ok\":true"), "{out}");

    // Someone swaps a winner for a member who did not win.
    let winners: Vec<String> = serde_json::from_value(proof["winners"].clone()).unwrap();
    let loser = members.iter().find(|m| !winners.contains(m)).unwrap();
    let mut tampered = proof.clone();
    tampered["winners"][0] = json!(loser);
    let (code, _, err) = verify_with_binary(&tampered);
    assert_ne!(code, 0);
    assert!(err.contains("winners mismatch"), "{err}");

    // Or picks another seed after the fact.
    let mut reseeded = proof.clone();
    reseeded["seed"] = json!(hex::encode([0u8; 32]));
    let (code, _, err) = verify_with_binary(&reseeded);
    assert_ne!(code, 0);
    assert!(err.contains("commitment"), "{err}");

    // Or reorders the entries.
    let mut reordered = proof.clone();
    reordered["entries"].as_array_mut().unwrap().reverse();
    assert_ne!(verify_with_binary(&reordered).0, 0);
}

/// GET `path` with another tenant's key.
async fn get_as(app: &TestApp, key: &str, path: &str) -> Reply {
    app.send(build(Method::GET, path, Some(key), None, None))
        .await
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", reply.body))
        .iter()
        .map(|row| row["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list_refuses_bad_pages_with_422(app: &TestApp, path: &str) {
    for query in ["limit=0", "limit=201", "cursor=not-a-cursor", "cursor="] {
        let reply = app.get(&format!("{path}?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {:?}",
            reply.body
        );
    }
}

async fn lotteries_are_listed_newest_first_by_status_and_page(app: TestApp) {
    let now = app.clock_now();
    let hours = |h: i64| {
        now.checked_add(jiff::SignedDuration::from_hours(h))
            .unwrap()
            .to_string()
    };
    let created_open = lottery(
        &app,
        json!({"name": "开业抽奖", "mode": "draw", "winners": 1,
               "prizes": [{"name": "一等奖", "reward": {"points": 50}, "stock": 1}]}),
    )
    .await;
    let created_scheduled = lottery(
        &app,
        json!({"name": "转盘", "mode": "instant", "opens_at": hours(24), "closes_at": hours(48),
               "prizes": [{"name": "5积分", "reward": {"points": 5}, "stock": 10, "weight": 3},
                          {"name": "谢谢参与", "reward": null, "weight": 7}]}),
    )
    .await;
    let created_drawn = lottery(
        &app,
        json!({"name": "周年抽奖", "mode": "draw", "winners": 1}),
    )
    .await;
    let [open, scheduled, drawn] = [&created_open, &created_scheduled, &created_drawn]
        .map(|l| l["id"].as_str().unwrap().to_owned());
    let (open, scheduled, drawn) = (open.as_str(), scheduled.as_str(), drawn.as_str());
    let member = app.member("entrant").await;
    assert_eq!(
        enter(&app, drawn, &member).await.status,
        StatusCode::CREATED
    );
    let reply = app
        .post(
            &format!("/v1/lotteries/{drawn}/draw?close_early=true"),
            &json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let all = app.get("/v1/lotteries").await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    assert_eq!(ids(&all), [drawn, scheduled, open], "newest first");
    assert_eq!(all.body["next_cursor"], Value::Null);
    // Each row is what GET /v1/lotteries/{id} shows, prizes included.
    let one = app.get(&format!("/v1/lotteries/{scheduled}")).await;
    assert_eq!(all.body["data"][1], one.body);
    assert_eq!(all.body["data"][1]["prizes"].as_array().unwrap().len(), 2);
    assert_eq!(all.body["data"][0]["entry_count"], 1);

    let first = app.get("/v1/lotteries?limit=2").await;
    assert_eq!(ids(&first), [drawn, scheduled]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/v1/lotteries?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), [open]);
    assert_eq!(second.body["next_cursor"], Value::Null);

    for (status, expected) in [
        ("open", vec![open]),
        ("scheduled", vec![scheduled]),
        ("drawn", vec![&drawn]),
        ("closed", vec![]),
    ] {
        let reply = app.get(&format!("/v1/lotteries?status={status}")).await;
        assert_eq!(ids(&reply), expected, "{status}");
    }
    // Past both closing times, the two undrawn lotteries are closed.
    app.clock.advance(jiff::SignedDuration::from_hours(24 * 8));
    let closed = app.get("/v1/lotteries?status=closed").await;
    assert_eq!(ids(&closed), [scheduled, open]);
    assert_eq!(closed.body["data"][0]["status"], "closed");
    let paged = app.get("/v1/lotteries?status=closed&limit=1").await;
    assert_eq!(ids(&paged), [scheduled]);
    let cursor = paged.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "/v1/lotteries?status=closed&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&rest), [open]);

    let bad = app.get("/v1/lotteries?status=finished").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"]["field"], "status");
    list_refuses_bad_pages_with_422(&app, "/v1/lotteries").await;

    let (_, other_key) = app.other_tenant().await;
    let theirs = get_as(&app, &other_key, "/v1/lotteries").await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(
        ids(&theirs).is_empty(),
        "another tenant's lotteries are never listed"
    );
    let theirs = get_as(&app, &other_key, &format!("/v1/lotteries?cursor={open}")).await;
    assert!(ids(&theirs).is_empty());
}

async fn group_links_are_listed_with_their_groups_fill_state(app: TestApp) {
    let owner = app.member("owner").await;
    let small = group(&app, &owner, 2).await;
    let large = group(&app, &owner, 3).await;
    let mut codes = Vec::new();
    for (name, groups) in [
        ("门店活码", vec![&small, &large]),
        ("直播活码", vec![&large]),
    ] {
        let reply = app
            .post(
                "/v1/group-links",
                &json!({"name": name, "group_ids": groups}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        codes.push(reply.body["code"].as_str().unwrap().to_owned());
    }
    let member = app.member("m1").await;
    let joined = app
        .post(
            &format!("/v1/group-links/{}/join", codes[0]),
            &json!({"member_id": member}),
        )
        .await;
    assert_eq!(joined.body["group_id"], small.as_str());

    let all = app.get("/v1/group-links").await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let rows = all.body["data"].as_array().unwrap();
    let listed: Vec<&str> = rows.iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(
        listed,
        [codes[0].as_str(), codes[1].as_str()],
        "oldest first"
    );
    assert_eq!(
        rows[0]["groups"],
        json!([
            {"group_id": small, "name": "宝妈群", "capacity": 2, "member_count": 2},
            {"group_id": large, "name": "宝妈群", "capacity": 3, "member_count": 1},
        ]),
        "each group's fill state, in fill order"
    );
    assert_eq!(rows[0]["all_full"], false);
    assert_eq!(rows[1]["groups"][0]["group_id"], large.as_str());
    // Each row is what GET /v1/group-links/{code} shows.
    let one = app.get(&format!("/v1/group-links/{}", codes[1])).await;
    assert_eq!(rows[1], one.body);

    let first = app.get("/v1/group-links?limit=1").await;
    assert_eq!(first.body["data"][0]["code"], codes[0].as_str());
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/v1/group-links?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(second.body["data"][0]["code"], codes[1].as_str());
    assert_eq!(second.body["next_cursor"], Value::Null);
    list_refuses_bad_pages_with_422(&app, "/v1/group-links").await;

    let (_, other_key) = app.other_tenant().await;
    let theirs = get_as(&app, &other_key, "/v1/group-links").await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_eq!(
        theirs.body["data"],
        json!([]),
        "another tenant's links are never listed"
    );
}

async fn group_members_are_listed_in_join_order_and_paged(app: TestApp) {
    let owner = app.member("owner").await;
    let id = group(&app, &owner, 10).await;
    let (m1, m2, m3) = (
        app.member("m1").await,
        app.member("m2").await,
        app.member("m3").await,
    );
    for member in [&m1, &m2] {
        let reply = app
            .post(
                &format!("/v1/groups/{id}/members"),
                &json!({"member_id": member, "inviter_member_id": owner}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let left = app.delete(&format!("/v1/groups/{id}/members/{m1}")).await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    let rejoined = app
        .post(
            &format!("/v1/groups/{id}/members"),
            &json!({"member_id": m3}),
        )
        .await;
    assert_eq!(rejoined.status, StatusCode::CREATED);

    let members = |reply: &Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{:?}", reply.body))
            .iter()
            .map(|stay| stay["member_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get(&format!("/v1/groups/{id}/members")).await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    assert_eq!(
        members(&all),
        [owner.as_str(), m2.as_str(), m3.as_str()],
        "those in the group now, in join order"
    );
    assert_eq!(all.body["data"][1]["inviter_member_id"], owner.as_str());
    assert_eq!(all.body["data"][1]["left_at"], Value::Null);
    let first = app.get(&format!("/v1/groups/{id}/members?limit=2")).await;
    assert_eq!(members(&first), [owner.as_str(), m2.as_str()]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/v1/groups/{id}/members?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(members(&rest), [m3.as_str()]);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    list_refuses_bad_pages_with_422(&app, &format!("/v1/groups/{id}/members")).await;

    let (_, other_key) = app.other_tenant().await;
    let theirs = get_as(&app, &other_key, &format!("/v1/groups/{id}/members")).await;
    assert_eq!(
        theirs.status,
        StatusCode::NOT_FOUND,
        "another tenant's group is 404"
    );
}
