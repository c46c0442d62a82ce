//! Community group buying (社区团购): leaders and pickup points (nearest first), members
//! choosing a leader, waves ordered through `POST /v1/orders` with `wave_id` (wave price, exact
//! stock under concurrency, per-member limit, leader required and active), the cut-off in the
//! tenant's zone (22:59:59 takes an order, 23:00:00 does not), the cut-off job (unpaid orders
//! cancelled with their units back, closed once even by two nodes), pick and purchase lists
//! that sum to the paid orders, pickup codes that verify once (and refuse guessing), shortage
//! refunds, leader commission pending → released → clawed back, and tenant isolation.
//! Scenarios that move money end with `GET /v1/ledger/verify`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser};
use crate::support::{build, Reply, TestApp};

backend_tests!(
    neighbourhood_leaders_pickup_points_and_nearby_search,
    neighbourhood_three_leaders_fifty_orders_lists_sum_to_the_paid_orders,
    neighbourhood_cutoff_is_judged_in_shanghai_time,
    neighbourhood_wave_orders_need_an_active_leader_and_keep_limits,
    neighbourhood_concurrent_orders_never_oversell_a_wave_item,
    neighbourhood_pickup_code_verifies_once_and_guessing_is_limited,
    neighbourhood_shortage_refunds_missing_units_at_once,
    neighbourhood_commission_pending_released_then_clawed_back,
    neighbourhood_two_nodes_close_a_wave_once,
    neighbourhood_other_tenants_ids_are_404,
    neighbourhood_console_page_lists_waves_prints_lists_and_verifies_pickups,
);

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn put(app: &TestApp, path: &str, body: &Value) -> Reply {
    app.call(Method::PUT, path, Some(body)).await
}

fn id(reply: &Reply, what: &str) -> String {
    assert!(
        reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
        "{what}: {} {}",
        reply.status,
        reply.body
    );
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn product(app: &TestApp, sku: &str, price: i64) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"sku": sku, "name": format!("{sku} 商品"), "price": price, "stock": 1000}),
        )
        .await;
    id(&reply, "product")
}

/// A leader for a new member, at (lat, lng); returns (leader id, leader's member id).
async fn leader(app: &TestApp, name: &str, at: (f64, f64), bp: i64) -> (String, String) {
    let member = app.member(&format!("leader-{name}")).await;
    let reply = app
        .post(
            "/v1/leaders",
            &json!({"member_id": member, "name": name, "commission_bp": bp,
                    "pickup_point": {"name": format!("{name}的店"), "address": "幸福路 1 号",
                                     "location": {"lat": at.0, "lng": at.1},
                                     "hours": "8:00-20:00"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status"], "active");
    (id(&reply, "leader"), member)
}

/// A member who chose `leader`.
async fn neighbour(app: &TestApp, external_id: &str, leader: &str) -> String {
    let member = app.member(external_id).await;
    let reply = put(
        app,
        &format!("/v1/members/{member}/leader"),
        &json!({"leader_id": leader}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    member
}

/// A wave open now with its cut-off in `hours`; `items` as the API takes them.
async fn wave(app: &TestApp, hours: i64, items: Value) -> String {
    let now = app.clock_now();
    let reply = app
        .post(
            "/v1/waves",
            &json!({"name": "明日鲜", "opens_at": now.to_string(),
                    "cutoff_at": (now + SignedDuration::from_hours(hours)).to_string(),
                    "delivery_date": "2099-12-31", "items": items}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status"], "open");
    id(&reply, "wave")
}

/// A wave order; its payment deadline (a day) lies past the test waves' cut-offs, so that the
/// cut-off, not the deadline, closes it.
async fn wave_order(app: &TestApp, member: &str, wave: &str, items: Value) -> Reply {
    app.post(
        "/v1/orders",
        &json!({"member_id": member, "wave_id": wave, "items": items,
                "payment_timeout_secs": 86_400}),
    )
    .await
}

async fn pay(app: &TestApp, order: &str) -> Reply {
    app.post(
        &format!("/v1/orders/{order}/payments"),
        &json!({"method": "external", "reference": format!("pay-{order}")}),
    )
    .await
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}&limit=1000")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn item_of(app: &TestApp, wave: &str, product: &str) -> Value {
    let reply = app.get(&format!("/v1/waves/{wave}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["product_id"] == product)
        .unwrap()
        .clone()
}

async fn neighbourhood_leaders_pickup_points_and_nearby_search(app: TestApp) {
    // Around People's Square, Shanghai: B is ~1 km away, C ~10 km, A ~300 m.
    let (a, a_member) = leader(&app, "A", (31.2330, 121.4750), 1000).await;
    let (b, _) = leader(&app, "B", (31.2400, 121.4850), 800).await;
    let (c, _) = leader(&app, "C", (31.3200, 121.4737), 800).await;
    let again = app
        .post(
            "/v1/leaders",
            &json!({"member_id": a_member, "name": "again", "commission_bp": 0,
                    "pickup_point": {"name": "x", "address": "y", "hours": "z"}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["error"]["code"], "already_leader");
    assert_eq!(again.body["error"]["details"]["leader_id"], a.as_str());
    for bad in [
        json!({"commission_bp": 5001}),
        json!({"pickup_point": {"name": "x", "address": "y", "hours": "z",
                                "location": {"lat": 91.0, "lng": 0.0}}}),
        json!({"name": " "}),
    ] {
        let mut body = json!({"member_id": app.member(&format!("m{bad}")).await, "name": "n",
                              "commission_bp": 100,
                              "pickup_point": {"name": "x", "address": "y", "hours": "z"}});
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let reply = app.post("/v1/leaders", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
    }

    let near = app.get("/v1/leaders/nearby?lat=31.2304&lng=121.4737").await;
    assert_eq!(near.status, StatusCode::OK, "{}", near.body);
    let order: Vec<&str> = near.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["leader"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec![a.as_str(), b.as_str(), c.as_str()]);
    let metres: Vec<i64> = near.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["distance_m"].as_i64().unwrap())
        .collect();
    assert!((200..500).contains(&metres[0]), "{metres:?}");
    assert!((9_000..11_000).contains(&metres[2]), "{metres:?}");
    let within = app
        .get("/v1/leaders/nearby?lat=31.2304&lng=121.4737&within_m=2000")
        .await;
    assert_eq!(within.body["data"].as_array().unwrap().len(), 2);

    // Paused: out of the nearby answer; listed by status.
    let paused = app
        .patch(
            &format!("/v1/leaders/{a}"),
            &json!({"status": "paused", "name": "A2"}),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["status"], "paused");
    assert_eq!(paused.body["name"], "A2");
    let near = app.get("/v1/leaders/nearby?lat=31.2304&lng=121.4737").await;
    assert_eq!(near.body["data"][0]["leader"]["id"], b.as_str());
    let listed = app.get("/v1/leaders?status=paused").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["data"][0]["id"], a.as_str());
    let all = app.get("/v1/leaders?limit=2").await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
    assert!(all.body["next_cursor"].is_string());

    // Closed is final.
    let closed = app
        .patch(&format!("/v1/leaders/{c}"), &json!({"status": "closed"}))
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    let reopened = app
        .patch(&format!("/v1/leaders/{c}"), &json!({"status": "active"}))
        .await;
    assert_eq!(reopened.status, StatusCode::CONFLICT);
    assert_eq!(reopened.body["error"]["code"], "invalid_transition");

    // A member chooses a leader (not a closed one) and reads it back.
    let m = neighbour(&app, "m1", &b).await;
    let chosen = app.get(&format!("/v1/members/{m}/leader")).await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.body);
    assert_eq!(chosen.body["leader_id"], b.as_str());
    assert_eq!(chosen.body["leader"]["pickup_point"]["name"], "B的店");
    let refused = put(
        &app,
        &format!("/v1/members/{m}/leader"),
        &json!({"leader_id": c}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.body["error"]["code"], "leader_not_active");
    let none = app
        .get(&format!("/v1/members/{}/leader", app.member("m2").await))
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(events(&app, "leader.created").await.len(), 3);
    assert_eq!(events(&app, "member.leader_chosen").await.len(), 1);
}

/// An order placed in the fifty-order test: (leader, order id, lines, paid).
type Placed = (String, String, Vec<(String, i64)>, bool);

/// Units per (leader, product) of the paid orders, from the orders themselves.
fn expected_lists(orders: &[Placed]) -> BTreeMap<(String, String), i64> {
    let mut expected = BTreeMap::new();
    for (leader, _, lines, paid) in orders {
        if !paid {
            continue;
        }
        for (product, qty) in lines {
            *expected
                .entry((leader.clone(), product.clone()))
                .or_default() += qty;
        }
    }
    expected
}

async fn neighbourhood_three_leaders_fifty_orders_lists_sum_to_the_paid_orders(app: TestApp) {
    let apple = product(&app, "APPLE", 1200).await;
    let egg = product(&app, "EGG", 1500).await;
    let milk = product(&app, "MILK", 800).await;
    let mut leaders = Vec::new();
    for (n, name) in ["东区", "西区", "南区"].iter().enumerate() {
        leaders.push(
            leader(&app, name, (31.2 + n as f64 / 100.0, 121.4), 1000)
                .await
                .0,
        );
    }
    let w = wave(
        &app,
        10,
        json!([{"product_id": apple, "price": 990, "stock": 200},
               {"product_id": egg, "price": 1290},
               {"product_id": milk, "price": 590, "stock": 300, "per_member_limit": 10}]),
    )
    .await;
    let products = [apple.clone(), egg.clone(), milk.clone()];
    let mut orders = Vec::new();
    for n in 0..50usize {
        let leader = leaders[n % 3].clone();
        let member = neighbour(&app, &format!("n{n}"), &leader).await;
        let lines: Vec<(String, i64)> = (0..3)
            .filter(|p| (n + p) % 4 != 0)
            .map(|p| (products[p].clone(), ((n * 7 + p * 3) % 5 + 1) as i64))
            .collect();
        let items: Vec<Value> = lines
            .iter()
            .map(|(p, q)| json!({"product_id": p, "qty": q}))
            .collect();
        let reply = wave_order(&app, &member, &w, json!(items)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["campaign_kind"], "wave");
        assert_eq!(reply.body["campaign_id"], w.as_str());
        let order = id(&reply, "order");
        // Every fifth order stays unpaid: the cut-off cancels it.
        let paid = n % 5 != 4;
        if paid {
            assert_eq!(pay(&app, &order).await.status, StatusCode::OK);
        }
        orders.push((leader, order, lines, paid));
    }
    // The wave price is what was charged.
    let (_, first, first_lines, _) = &orders[0];
    let first_order = app.get(&format!("/v1/orders/{first}")).await;
    let expected_total: i64 = first_lines
        .iter()
        .map(|(p, q)| {
            q * if *p == apple {
                990
            } else if *p == egg {
                1290
            } else {
                590
            }
        })
        .sum();
    assert_eq!(first_order.body["total"], expected_total);
    assert_eq!(first_order.body["items"][0]["price_kind"], "wave");

    let apple_taken: i64 = orders
        .iter()
        .flat_map(|(_, _, lines, _)| lines.iter())
        .filter(|(p, _)| *p == apple)
        .map(|(_, q)| q)
        .sum();
    assert_eq!(item_of(&app, &w, &apple).await["stock"], 200 - apple_taken);

    // The cut-off: unpaid orders cancelled, their units back, the wave closed with totals.
    app.clock.advance(SignedDuration::from_hours(10));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let wave_now = app.get(&format!("/v1/waves/{w}")).await;
    assert_eq!(wave_now.body["status"], "closed");
    for (_, order, _, paid) in &orders {
        let status = app.get(&format!("/v1/orders/{order}")).await.body["status"].clone();
        assert_eq!(status, if *paid { "paid" } else { "cancelled" }, "{order}");
    }
    let apple_paid: i64 = orders
        .iter()
        .filter(|o| o.3)
        .flat_map(|(_, _, lines, _)| lines.iter())
        .filter(|(p, _)| *p == apple)
        .map(|(_, q)| q)
        .sum();
    let apple_item = item_of(&app, &w, &apple).await;
    assert_eq!(apple_item["stock"], 200 - apple_paid);
    assert_eq!(apple_item["taken"], apple_paid);

    let expected = expected_lists(&orders);
    let pick = app.get(&format!("/v1/waves/{w}/pick-list")).await;
    assert_eq!(pick.status, StatusCode::OK, "{}", pick.body);
    assert_eq!(pick.body["wave_id"], w.as_str());
    let mut got = BTreeMap::new();
    for l in pick.body["leaders"].as_array().unwrap() {
        for item in l["items"].as_array().unwrap() {
            got.insert(
                (
                    l["leader_id"].as_str().unwrap().to_owned(),
                    item["product_id"].as_str().unwrap().to_owned(),
                ),
                item["qty"].as_i64().unwrap(),
            );
        }
    }
    assert_eq!(got, expected);
    assert_eq!(pick.body["leaders"].as_array().unwrap().len(), 3);
    let purchase = app.get(&format!("/v1/waves/{w}/purchase-list")).await;
    let mut totals = BTreeMap::new();
    for ((_, product), qty) in &expected {
        *totals.entry(product.clone()).or_insert(0i64) += qty;
    }
    let purchased: BTreeMap<String, i64> = purchase.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["product_id"].as_str().unwrap().to_owned(),
                i["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(purchased, totals);
    assert_eq!(purchase.body["items"][0]["sku"], "APPLE");

    let closed = events(&app, "wave.closed").await;
    assert_eq!(closed.len(), 1);
    let data = &closed[0]["data"];
    assert_eq!(data["wave_id"], w.as_str());
    assert_eq!(data["orders"], 40);
    assert_eq!(data["cancelled"], 10);
    assert_eq!(data["leaders"], 3);
    assert_eq!(data["units"], totals.values().sum::<i64>());
    assert_eq!(data["items"], purchase.body["items"]);
    assert_eq!(wave_now.body["totals"]["orders"], 40);

    // CSV and the printable page carry the same figures.
    let csv = app
        .get(&format!("/v1/waves/{w}/purchase-list?format=csv"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.body.as_str().unwrap();
    assert!(text.starts_with("product_id,sku,name,qty\n"), "{text}");
    assert!(
        text.contains(&format!("{apple},APPLE,APPLE 商品,{}", totals[&apple])),
        "{text}"
    );
    let pick_csv = app
        .get(&format!("/v1/waves/{w}/pick-list?format=csv"))
        .await;
    let rows = pick_csv.body.as_str().unwrap().lines().count();
    assert_eq!(rows, 1 + expected.len());
    let page = app
        .get(&format!("/v1/waves/{w}/pick-list?format=html"))
        .await;
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.body.as_str().unwrap();
    assert!(
        html.contains("东区的店") && html.contains("APPLE"),
        "{html}"
    );
    let bad = app
        .get(&format!("/v1/waves/{w}/pick-list?format=xml"))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Listing by status.
    assert_eq!(
        app.get("/v1/waves?status=closed").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get("/v1/waves?status=open").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    verify_ok(&app).await;
}

async fn neighbourhood_cutoff_is_judged_in_shanghai_time(app: TestApp) {
    // The tenant's zone is Asia/Shanghai by default: 23:00 local is 15:00 UTC.
    app.clock
        .set("2026-12-07T02:00:00Z".parse::<Timestamp>().unwrap());
    let tofu = product(&app, "TOFU", 500).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 500).await;
    let m = neighbour(&app, "m", &l).await;
    let reply = app
        .post(
            "/v1/waves",
            &json!({"name": "周一", "opens_at": "2026-12-07T08:00:00",
                    "cutoff_at": "2026-12-07T23:00:00", "delivery_date": "2026-12-08",
                    "items": [{"product_id": tofu, "price": 300}]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["cutoff_at"], "2026-12-07T15:00:00Z");
    assert_eq!(reply.body["opens_at"], "2026-12-07T00:00:00Z");
    let w = id(&reply, "wave");
    let early_reply = app
        .post(
            "/v1/waves",
            &json!({"name": "bad", "opens_at": "2026-12-07T08:00:00",
                    "cutoff_at": "2026-12-07T23:00:00", "delivery_date": "2026-12-06",
                    "items": [{"product_id": tofu, "price": 300}]}),
        )
        .await;
    assert_eq!(early_reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    app.clock
        .set("2026-12-07T14:59:59Z".parse::<Timestamp>().unwrap()); // 22:59:59 in Shanghai
    let ok = wave_order(&app, &m, &w, json!([{"product_id": tofu, "qty": 1}])).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    let unpaid = id(&ok, "order");
    let paid = id(
        &wave_order(&app, &m, &w, json!([{"product_id": tofu, "qty": 2}])).await,
        "order",
    );
    assert_eq!(pay(&app, &paid).await.status, StatusCode::OK);

    app.clock
        .set("2026-12-07T15:00:00Z".parse::<Timestamp>().unwrap()); // 23:00:00
    let late = wave_order(&app, &m, &w, json!([{"product_id": tofu, "qty": 1}])).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(late.body["error"]["code"], "wave_closed");
    // Nor can an order placed before the cut-off be paid after it.
    let late_pay = pay(&app, &unpaid).await;
    assert_eq!(late_pay.status, StatusCode::CONFLICT, "{}", late_pay.body);
    assert_eq!(late_pay.body["error"]["code"], "wave_closed");
    assert_eq!(
        app.get(&format!("/v1/waves/{w}")).await.body["status"],
        "closed"
    );

    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(
        app.get(&format!("/v1/orders/{unpaid}")).await.body["status"],
        "cancelled"
    );
    assert_eq!(
        app.get(&format!("/v1/orders/{paid}")).await.body["status"],
        "paid"
    );
    let item = item_of(&app, &w, &tofu).await;
    assert_eq!(item["taken"], 2);
    assert_eq!(item["stock"], Value::Null);
}

async fn neighbourhood_wave_orders_need_an_active_leader_and_keep_limits(app: TestApp) {
    let rice = product(&app, "RICE", 5000).await;
    let salt = product(&app, "SALT", 200).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 500).await;
    let w = wave(
        &app,
        5,
        json!([{"product_id": rice, "price": 3990, "stock": 100, "per_member_limit": 3}]),
    )
    .await;
    // No leader: 422; other orders need none.
    let loner = app.member("loner").await;
    let refused = wave_order(&app, &loner, &w, json!([{"product_id": rice, "qty": 1}])).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"]["code"], "leader_required");
    let plain = app
        .post(
            "/v1/orders",
            &json!({"member_id": loner, "items": [{"product_id": rice, "qty": 1}]}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.body);
    assert_eq!(plain.body["total"], 5000);

    // The per-member limit counts unpaid and paid orders of the wave.
    let m = neighbour(&app, "m", &l).await;
    let two = wave_order(&app, &m, &w, json!([{"product_id": rice, "qty": 2}])).await;
    assert_eq!(two.status, StatusCode::CREATED, "{}", two.body);
    assert_eq!(two.body["total"], 7980);
    let over = wave_order(&app, &m, &w, json!([{"product_id": rice, "qty": 2}])).await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{}", over.body);
    assert_eq!(over.body["error"]["code"], "limit_reached");
    // Cancelled, the units count no more.
    let cancelled = app
        .post(
            &format!("/v1/orders/{}/cancel", id(&two, "order")),
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(item_of(&app, &w, &rice).await["stock"], 100);
    let three = wave_order(&app, &m, &w, json!([{"product_id": rice, "qty": 3}])).await;
    assert_eq!(three.status, StatusCode::CREATED, "{}", three.body);

    // A product outside the wave, an unknown wave, external source.
    let outside = wave_order(&app, &m, &w, json!([{"product_id": salt, "qty": 1}])).await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND, "{}", outside.body);
    let unknown = wave_order(
        &app,
        &m,
        "wav_00000000000000000000000000000000",
        json!([{"product_id": rice, "qty": 1}]),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let external = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "wave_id": w, "source": "external",
                                    "paid_at": app.clock_now().to_string(),
                                    "items": [{"product_id": rice, "qty": 1}]}),
        )
        .await;
    assert_eq!(external.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A paused leader takes no new wave orders.
    let other = neighbour(&app, "other", &l).await;
    app.patch(&format!("/v1/leaders/{l}"), &json!({"status": "paused"}))
        .await;
    let paused = wave_order(&app, &other, &w, json!([{"product_id": rice, "qty": 1}])).await;
    assert_eq!(paused.status, StatusCode::CONFLICT, "{}", paused.body);
    assert_eq!(paused.body["error"]["code"], "leader_not_active");

    // A wave not yet open.
    app.patch(&format!("/v1/leaders/{l}"), &json!({"status": "active"}))
        .await;
    let later = app.clock_now() + SignedDuration::from_hours(2);
    let future = app
        .post(
            "/v1/waves",
            &json!({"name": "later", "opens_at": later.to_string(),
                                   "cutoff_at": (later + SignedDuration::from_hours(2)).to_string(),
                                   "delivery_date": "2099-01-01",
                                   "items": [{"product_id": rice, "price": 1}]}),
        )
        .await;
    assert_eq!(future.body["status"], "upcoming");
    let early = wave_order(
        &app,
        &other,
        &id(&future, "wave"),
        json!([{"product_id": rice, "qty": 1}]),
    )
    .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.body["error"]["code"], "wave_not_open");
    assert_eq!(
        app.get("/v1/waves?status=upcoming").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bad waves.
    for bad in [
        json!({"items": []}),
        json!({"items": [{"product_id": rice, "price": -1}]}),
        json!({"items": [{"product_id": rice, "price": 1}, {"product_id": rice, "price": 2}]}),
        json!({"cutoff_at": "2000-01-01T00:00:00Z"}),
        json!({"opens_at": "soon"}),
    ] {
        let mut body = json!({"name": "w", "opens_at": app.clock_now().to_string(),
                              "cutoff_at": later.to_string(), "delivery_date": "2099-01-01",
                              "items": [{"product_id": rice, "price": 1}]});
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let reply = app.post("/v1/waves", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
    }
}

async fn neighbourhood_concurrent_orders_never_oversell_a_wave_item(app: TestApp) {
    let peach = product(&app, "PEACH", 2000).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 500).await;
    let w = wave(
        &app,
        5,
        json!([{"product_id": peach, "price": 1500, "stock": 7}]),
    )
    .await;
    let mut members = Vec::new();
    for n in 0..24 {
        members.push(neighbour(&app, &format!("p{n}"), &l).await);
    }
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for member in members {
        let app = app.clone();
        let w = w.clone();
        let peach = peach.clone();
        tasks.push(tokio::spawn(async move {
            wave_order(&app, &member, &w, json!([{"product_id": peach, "qty": 1}])).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(reply.body["error"]["code"], "out_of_stock"),
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert_eq!(created, 7);
    let item = item_of(&app, &w, &peach).await;
    assert_eq!(item["stock"], 0);
    assert_eq!(item["taken"], 7);
}

/// A paid wave order of `member` for one unit of `product`; returns the order id.
async fn paid_wave_order(app: &TestApp, member: &str, wave: &str, items: Value) -> String {
    let reply = wave_order(app, member, wave, items).await;
    let order = id(&reply, "wave order");
    let paid = pay(app, &order).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    order
}

async fn pickup_of(app: &TestApp, order: &str) -> Value {
    let reply = app.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["pickup"].clone()
}

async fn verify(app: &TestApp, leader: &str, code: &str) -> Reply {
    app.post(
        "/v1/pickups/verify",
        &json!({"leader_id": leader, "code": code}),
    )
    .await
}

async fn neighbourhood_pickup_code_verifies_once_and_guessing_is_limited(app: TestApp) {
    let bun = product(&app, "BUN", 300).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 500).await;
    let w = wave(&app, 5, json!([{"product_id": bun, "price": 250}])).await;
    let mut orders = Vec::new();
    for n in 0..5 {
        let m = neighbour(&app, &format!("b{n}"), &l).await;
        orders.push(paid_wave_order(&app, &m, &w, json!([{"product_id": bun, "qty": 2}])).await);
    }
    let unpaid_member = neighbour(&app, "late", &l).await;
    let unpaid = id(
        &wave_order(
            &app,
            &unpaid_member,
            &w,
            json!([{"product_id": bun, "qty": 1}]),
        )
        .await,
        "order",
    );
    assert_eq!(pickup_of(&app, &unpaid).await["status"], "awaiting_payment");
    assert_eq!(pickup_of(&app, &unpaid).await["code"], Value::Null);
    let mut codes = std::collections::BTreeSet::new();
    for order in &orders {
        let pickup = pickup_of(&app, order).await;
        assert_eq!(pickup["leader_id"], l.as_str());
        assert_eq!(pickup["status"], "waiting");
        let code = pickup["code"].as_str().unwrap().to_owned();
        assert!(
            code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
            "{code}"
        );
        codes.insert(code);
    }
    assert_eq!(
        codes.len(),
        orders.len(),
        "codes are unique among the leader's open pickups"
    );
    // A plain order shows no pickup.
    let plain = app
        .post(
            "/v1/orders",
            &json!({"member_id": unpaid_member, "items": [{"product_id": bun, "qty": 1}]}),
        )
        .await;
    assert!(app
        .get(&format!("/v1/orders/{}", id(&plain, "order")))
        .await
        .body
        .get("pickup")
        .is_none());

    // Arrival: every paid order becomes ready with a pickup.ready event carrying its code.
    let arrived = app
        .post(&format!("/v1/waves/{w}/leaders/{l}/arrived"), &json!({}))
        .await;
    assert_eq!(arrived.status, StatusCode::OK, "{}", arrived.body);
    assert_eq!(arrived.body["ready"], 5);
    let ready = events(&app, "pickup.ready").await;
    assert_eq!(ready.len(), 5);
    let first_code = pickup_of(&app, &orders[0]).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ready
        .iter()
        .any(|e| e["data"]["code"] == first_code.as_str()
            && e["data"]["order_id"] == orders[0].as_str()));
    assert_eq!(pickup_of(&app, &orders[0]).await["status"], "ready");
    let again = app
        .post(&format!("/v1/waves/{w}/leaders/{l}/arrived"), &json!({}))
        .await;
    assert_eq!(again.body["ready"], 0);

    // Verify once.
    let done = verify(&app, &l, &first_code).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["id"], orders[0].as_str());
    assert_eq!(done.body["status"], "fulfilled");
    assert_eq!(done.body["pickup"]["status"], "picked_up");
    let twice = verify(&app, &l, &first_code).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.body);
    assert_eq!(twice.body["error"]["code"], "already_picked_up");
    assert_eq!(events(&app, "pickup.completed").await.len(), 1);

    // Another leader's code does not open this leader's pickups.
    let (other, _) = leader(&app, "O", (31.3, 121.4), 500).await;
    let second_code = pickup_of(&app, &orders[1]).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        verify(&app, &other, &second_code).await.status,
        StatusCode::NOT_FOUND
    );

    // Wrong codes: 404 each, the 11th within a minute 429 — even for a right code.
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !codes.contains(c))
        .unwrap();
    for _ in 0..10 {
        let reply = verify(&app, &l, &wrong).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    }
    let limited = verify(&app, &l, &second_code).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // The other leader is not limited; a minute later this one is not either.
    assert_eq!(
        verify(&app, &other, &wrong).await.status,
        StatusCode::NOT_FOUND
    );
    app.clock.advance(SignedDuration::from_secs(61));
    let ok = verify(&app, &l, &second_code).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    verify_ok(&app).await;
}

async fn neighbourhood_shortage_refunds_missing_units_at_once(app: TestApp) {
    let melon = product(&app, "MELON", 3000).await;
    let pear = product(&app, "PEAR", 800).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 1000).await;
    let w = wave(
        &app,
        5,
        json!([{"product_id": melon, "price": 2500, "stock": 10},
               {"product_id": pear, "price": 600}]),
    )
    .await;
    let m = neighbour(&app, "m", &l).await;
    let order = paid_wave_order(
        &app,
        &m,
        &w,
        json!([{"product_id": melon, "qty": 3}, {"product_id": pear, "qty": 1}]),
    )
    .await;
    let short = app
        .post(
            &format!("/v1/orders/{order}/shortage"),
            &json!({"items": [{"product_id": melon, "qty": 2}]}),
        )
        .await;
    assert_eq!(short.status, StatusCode::CREATED, "{}", short.body);
    assert_eq!(short.body["amount"], 5000);
    assert_eq!(short.body["order_status"], "paid");
    let now = app.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(now.body["refunded_amount"], 5000);
    let over = app
        .post(
            &format!("/v1/orders/{order}/shortage"),
            &json!({"items": [{"product_id": melon, "qty": 2}]}),
        )
        .await;
    assert_eq!(
        over.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        over.body
    );
    let foreign = app
        .post(
            &format!("/v1/orders/{order}/shortage"),
            &json!({"items": [{"product_id": "nope", "qty": 1}]}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The pick list packs what is left.
    app.clock.advance(SignedDuration::from_hours(5));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let pick = app.get(&format!("/v1/waves/{w}/pick-list")).await;
    let items = &pick.body["leaders"][0]["items"];
    assert_eq!(items[0]["sku"], "MELON");
    assert_eq!(items[0]["qty"], 1);
    assert_eq!(items[1]["qty"], 1);
    // The rest short too: the order is refunded in full.
    let rest = app
        .post(
            &format!("/v1/orders/{order}/shortage"),
            &json!({"items": [{"product_id": melon, "qty": 1}, {"product_id": pear, "qty": 1}]}),
        )
        .await;
    assert_eq!(rest.status, StatusCode::CREATED, "{}", rest.body);
    assert_eq!(rest.body["order_status"], "refunded");
    assert_eq!(pickup_of(&app, &order).await["status"], "refunded");
    let pick = app.get(&format!("/v1/waves/{w}/pick-list")).await;
    assert_eq!(pick.body["leaders"], json!([]));
    let plain = app
        .post(
            "/v1/orders",
            &json!({"member_id": m, "items": [{"product_id": pear, "qty": 1}]}),
        )
        .await;
    let not_wave = app
        .post(
            &format!("/v1/orders/{}/shortage", id(&plain, "order")),
            &json!({"items": [{"product_id": pear, "qty": 1}]}),
        )
        .await;
    assert_eq!(not_wave.status, StatusCode::NOT_FOUND);
    verify_ok(&app).await;
}

async fn commission_balance(app: &TestApp, member: &str) -> (i64, i64) {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let c = &reply.body["commission"];
    (
        c["pending_credits"].as_i64().unwrap_or(0),
        c["available"].as_i64().unwrap_or(0),
    )
}

async fn stats(app: &TestApp, leader: &str) -> Value {
    let reply = app.get(&format!("/v1/leaders/{leader}/stats")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn neighbourhood_commission_pending_released_then_clawed_back(app: TestApp) {
    let beef = product(&app, "BEEF", 12000).await;
    let (l, l_member) = leader(&app, "L", (31.2, 121.4), 1000).await;
    let (other, _) = leader(&app, "O", (31.3, 121.4), 1000).await;
    let w = wave(&app, 5, json!([{"product_id": beef, "price": 10000}])).await;
    let m = neighbour(&app, "m", &l).await;
    let n = neighbour(&app, "n", &l).await;
    let o = neighbour(&app, "o", &other).await;
    let order = paid_wave_order(&app, &m, &w, json!([{"product_id": beef, "qty": 1}])).await;
    let waiting = paid_wave_order(&app, &n, &w, json!([{"product_id": beef, "qty": 2}])).await;
    paid_wave_order(&app, &o, &w, json!([{"product_id": beef, "qty": 1}])).await;
    // Nothing is owed before pickup.
    assert_eq!(commission_balance(&app, &l_member).await, (0, 0));
    let code = pickup_of(&app, &order).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(verify(&app, &l, &code).await.status, StatusCode::OK);
    assert_eq!(commission_balance(&app, &l_member).await, (1000, 0));
    let s = stats(&app, &l).await;
    assert_eq!(s["orders"], 2);
    assert_eq!(s["gmv"], 30000);
    assert_eq!(s["members"], 2);
    assert_eq!(s["picked_up"], 1);
    assert_eq!(s["not_picked_up"], 1);
    assert_eq!(s["commission"], json!({"pending": 1000, "available": 0}));
    assert_eq!(events(&app, "leader_commission.pending").await.len(), 1);

    // A refund inside the window reduces the pending commission.
    let refund = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"amount": 2000, "reason": "bruised"}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    assert_eq!(commission_balance(&app, &l_member).await, (800, 0));

    // The return window (7 days by default) closes: released.
    app.clock.advance(SignedDuration::from_hours(24 * 7 + 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(commission_balance(&app, &l_member).await, (0, 800));
    assert_eq!(
        stats(&app, &l).await["commission"],
        json!({"pending": 0, "available": 800})
    );
    let released = events(&app, "leader_commission.released").await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0]["data"]["amount"], 800);

    // A later refund claws back what it no longer earns.
    let late = app
        .post(
            &format!("/v1/orders/{order}/refunds"),
            &json!({"amount": 5000, "reason": "late"}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CREATED, "{}", late.body);
    assert_eq!(commission_balance(&app, &l_member).await, (0, 300));
    let adjusted = events(&app, "leader_commission.adjusted").await;
    assert_eq!(adjusted.last().unwrap()["data"]["taken_back"], 500);
    assert_eq!(stats(&app, &l).await["commission"]["available"], 300);

    // The leaderboard ranks by GMV after refunds.
    let board = app.get("/v1/leaders/leaderboard?period=all").await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.body);
    assert_eq!(board.body["data"][0]["leader_id"], l.as_str());
    assert_eq!(board.body["data"][0]["gmv"], 23000);
    assert_eq!(board.body["data"][1]["leader_id"], other.as_str());
    assert_eq!(
        app.get("/v1/leaders/leaderboard?period=7d").await.body["data"],
        json!([])
    );
    assert_eq!(
        app.get("/v1/leaders/leaderboard?period=1y").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let _ = waiting;

    // The leader withdraws: the amount is reserved until the payout is confirmed.
    let too_much = app
        .post(
            &format!("/v1/leaders/{l}/withdrawals"),
            &json!({"amount": 301}),
        )
        .await;
    assert_eq!(too_much.status, StatusCode::CONFLICT, "{}", too_much.body);
    assert_eq!(too_much.body["error"]["code"], "insufficient_funds");
    let withdrawal = app
        .post(
            &format!("/v1/leaders/{l}/withdrawals"),
            &json!({"amount": 300}),
        )
        .await;
    assert_eq!(
        withdrawal.status,
        StatusCode::CREATED,
        "{}",
        withdrawal.body
    );
    assert_eq!(commission_balance(&app, &l_member).await, (0, 0));
    let requested = events(&app, "withdrawal.requested").await;
    assert_eq!(requested[0]["data"]["leader_id"], l.as_str());
    let transfer = withdrawal.body["transfer_id"].as_str().unwrap();
    let paid = app
        .post(&format!("/v1/ledger/transfers/{transfer}/post"), &json!({}))
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    verify_ok(&app).await;
}

async fn neighbourhood_two_nodes_close_a_wave_once(app: TestApp) {
    let kale = product(&app, "KALE", 400).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 500).await;
    let w = wave(
        &app,
        1,
        json!([{"product_id": kale, "price": 300, "stock": 50}]),
    )
    .await;
    let mut unpaid = Vec::new();
    for n in 0..6 {
        let m = neighbour(&app, &format!("k{n}"), &l).await;
        let reply = wave_order(&app, &m, &w, json!([{"product_id": kale, "qty": 2}])).await;
        let order = id(&reply, "order");
        if n % 2 == 0 {
            assert_eq!(pay(&app, &order).await.status, StatusCode::OK);
        } else {
            unpaid.push(order);
        }
    }
    assert_eq!(item_of(&app, &w, &kale).await["stock"], 38);
    // A second node: another application state on the same database.
    let second = shequn::AppState::new(app.state.db.clone(), Arc::new(app.clock.clone()));
    app.clock.advance(SignedDuration::from_hours(1));
    let (a, b) = tokio::join!(
        shequn::server::run_due_jobs(&app.state),
        shequn::server::run_due_jobs(&second)
    );
    a.unwrap();
    b.unwrap();
    shequn::server::run_due_jobs(&second).await.unwrap();
    assert_eq!(events(&app, "wave.closed").await.len(), 1);
    assert_eq!(events(&app, "order.cancelled").await.len(), 3);
    for order in &unpaid {
        assert_eq!(
            app.get(&format!("/v1/orders/{order}")).await.body["status"],
            "cancelled"
        );
    }
    let item = item_of(&app, &w, &kale).await;
    assert_eq!(item["stock"], 44);
    assert_eq!(item["taken"], 6);
    // Closing again by hand does nothing more.
    let mut tx = app.state.begin().await.unwrap();
    let tenant = shequn::common::ids::TenantId::parse(&app.tenant_id).unwrap();
    let again = shequn::neighbourhood::waves::close(
        &mut tx,
        &tenant,
        &shequn::neighbourhood::WaveId::parse(&w).unwrap(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(!again);
    assert_eq!(events(&app, "wave.closed").await.len(), 1);
}

async fn neighbourhood_other_tenants_ids_are_404(app: TestApp) {
    let fig = product(&app, "FIG", 400).await;
    let (l, _) = leader(&app, "L", (31.2, 121.4), 500).await;
    let w = wave(&app, 5, json!([{"product_id": fig, "price": 300}])).await;
    let m = neighbour(&app, "m", &l).await;
    let order = paid_wave_order(&app, &m, &w, json!([{"product_id": fig, "qty": 1}])).await;
    let code = pickup_of(&app, &order).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = app.other_tenant().await;
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let request = build(method, &path, Some(&other), body.as_ref(), None);
        app.send(request)
    };
    let other_member = {
        let reply = as_other(
            Method::POST,
            "/v1/members".into(),
            Some(json!({"external_id": "om"})),
        )
        .await;
        id(&reply, "other member")
    };
    for (method, path, body) in [
        (Method::GET, format!("/v1/leaders/{l}"), None),
        (
            Method::PATCH,
            format!("/v1/leaders/{l}"),
            Some(json!({"name": "x"})),
        ),
        (Method::GET, format!("/v1/leaders/{l}/stats"), None),
        (
            Method::POST,
            format!("/v1/leaders/{l}/withdrawals"),
            Some(json!({"amount": 1})),
        ),
        (Method::GET, format!("/v1/members/{m}/leader"), None),
        (
            Method::PUT,
            format!("/v1/members/{m}/leader"),
            Some(json!({"leader_id": l})),
        ),
        (
            Method::PUT,
            format!("/v1/members/{other_member}/leader"),
            Some(json!({"leader_id": l})),
        ),
        (Method::GET, format!("/v1/waves/{w}"), None),
        (Method::GET, format!("/v1/waves/{w}/pick-list"), None),
        (
            Method::GET,
            format!("/v1/waves/{w}/purchase-list?format=csv"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/waves/{w}/leaders/{l}/arrived"),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/pickups/verify".into(),
            Some(json!({"leader_id": l, "code": code})),
        ),
        (
            Method::POST,
            format!("/v1/orders/{order}/shortage"),
            Some(json!({"items": [{"product_id": fig, "qty": 1}]})),
        ),
        (
            Method::POST,
            "/v1/orders".into(),
            Some(
                json!({"member_id": other_member, "wave_id": w, "items": [{"product_id": fig, "qty": 1}]}),
            ),
        ),
    ] {
        let reply = as_other(method.clone(), path.clone(), body).await;
        assert!(
            reply.status == StatusCode::NOT_FOUND,
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
    let listed = as_other(Method::GET, "/v1/leaders".into(), None).await;
    assert_eq!(listed.body["data"], json!([]));
    let waves = as_other(Method::GET, "/v1/waves".into(), None).await;
    assert_eq!(waves.body["data"], json!([]));
    let near = as_other(
        Method::GET,
        "/v1/leaders/nearby?lat=31.2&lng=121.4".into(),
        None,
    )
    .await;
    assert_eq!(near.body["data"], json!([]));
    // Nothing moved in this tenant.
    assert_eq!(pickup_of(&app, &order).await["status"], "waiting");
    assert_eq!(app.get(&format!("/v1/leaders/{l}")).await.body["name"], "L");
}

async fn neighbourhood_console_page_lists_waves_prints_lists_and_verifies_pickups(app: TestApp) {
    use shequn::console::operators::Role;
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let leek = product(&app, "LEEK", 400).await;
    let (l, _) = leader(&app, "王阿姨", (31.2, 121.4), 500).await;
    let w = wave(&app, 5, json!([{"product_id": leek, "price": 350}])).await;
    let m = neighbour(&app, "m", &l).await;
    let order = paid_wave_order(&app, &m, &w, json!([{"product_id": leek, "qty": 3}])).await;

    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let page = viewer.get("/console/neighbourhood").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = html(&page);
    assert!(text.contains("社区团购"), "in the navigation: {text}");
    assert!(
        text.contains(&format!("/console/neighbourhood/waves/{w}")),
        "{text}"
    );
    assert!(text.contains("王阿姨的店"), "{text}");
    assert!(
        !text.contains("/console/neighbourhood/verify"),
        "a viewer verifies nothing"
    );
    let wave_page = html(
        &viewer
            .get(&format!("/console/neighbourhood/waves/{w}"))
            .await,
    );
    assert!(
        wave_page.contains("LEEK") && wave_page.contains("分拣单"),
        "{wave_page}"
    );
    let printed = viewer
        .get(&format!("/console/neighbourhood/waves/{w}/print?list=pick"))
        .await;
    assert_eq!(printed.status, StatusCode::OK);
    let printed = html(&printed);
    assert!(
        printed.contains("王阿姨") && printed.contains(">3<"),
        "{printed}"
    );
    let missing = viewer
        .get("/console/neighbourhood/waves/wav_00000000000000000000000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // An operator marks the goods arrived and verifies the code.
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;
    let arrived = ops
        .post(
            &format!("/console/neighbourhood/waves/{w}/leaders/{l}/arrived"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(arrived.status, StatusCode::SEE_OTHER);
    assert!(
        location(&arrived).ends_with("done=arrived"),
        "{}",
        location(&arrived)
    );
    assert_eq!(pickup_of(&app, &order).await["status"], "ready");
    let code = pickup_of(&app, &order).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let verified = ops
        .post(
            "/console/neighbourhood/verify",
            &[("csrf_token", &token), ("leader_id", &l), ("code", &code)],
        )
        .await;
    assert_eq!(verified.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&verified), "/console/neighbourhood?done=verified");
    assert_eq!(pickup_of(&app, &order).await["status"], "picked_up");
    let again = ops
        .post(
            "/console/neighbourhood/verify",
            &[("csrf_token", &token), ("leader_id", &l), ("code", &code)],
        )
        .await;
    assert!(location(&again).contains("error="), "{}", location(&again));
    // English too.
    let english = ops
        .post(
            "/console/language",
            &[("csrf_token", &token), ("lang", "en")],
        )
        .await;
    assert_eq!(english.status, StatusCode::SEE_OTHER);
    let text = html(&ops.get("/console/neighbourhood").await);
    assert!(
        text.contains("Group buying") && text.contains("Verify pickup"),
        "{text}"
    );
}
