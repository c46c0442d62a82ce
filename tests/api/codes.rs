//! One item, one code (一物一码): batches generated and exported as CSV (count + 1 lines,
//! unique codes), ten members scanning one code at once (points paid once), later scans
//! telling the truth, a mistyped code told apart from a fake, a cloned label flagged with an
//! event, an expired batch, failed scans throttled per device and per IP (429), a scan
//! creating a member, erasure and export of a member's scans, tenant isolation and the
//! console page. Scenarios that pay points end with `GET /v1/ledger/verify`.

use std::collections::HashSet;

use axum::http::StatusCode;
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser, OtherTenant};
use crate::support::{build, TestApp};

backend_tests!(
    codes_batch_csv_has_a_header_and_count_unique_codes,
    codes_batch_validation_and_listing,
    codes_ten_members_scanning_one_code_at_once_earn_the_points_once,
    codes_later_scans_tell_the_truth_and_stats_add_up,
    codes_a_mistyped_code_is_told_apart_from_a_fake,
    codes_a_cloned_label_is_flagged_once_with_an_event,
    codes_an_expired_batch_answers_expired,
    codes_failed_scans_are_throttled_per_device_and_per_ip,
    codes_a_scan_can_create_the_member,
    codes_an_erased_members_scans_forget_device_and_ip,
    codes_other_tenants_batches_and_codes_are_not_found,
    codes_console_page_lists_batches_stats_and_the_csv,
);

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn product(app: &TestApp, sku: &str) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": format!("{sku} soy milk"), "sku": sku, "price": 1200, "stock": 1000}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// A batch of `count` codes paying `points`; returns (batch id, its codes from the CSV).
async fn batch(app: &TestApp, product_id: &str, count: i64, points: i64) -> (String, Vec<String>) {
    let reply = app
        .post(
            "/v1/code-batches",
            &json!({"product_id": product_id, "count": count, "points_per_scan": points}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let codes = csv_codes(app, &id).await;
    (id, codes)
}

async fn csv_codes(app: &TestApp, batch_id: &str) -> Vec<String> {
    let reply = app
        .get(&format!("/v1/code-batches/{batch_id}/codes.csv"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let text = reply.body.as_str().expect("csv text").to_owned();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("code,serial"));
    lines
        .map(|line| line.split(',').next().unwrap().to_owned())
        .collect()
}

async fn scan(app: &TestApp, body: Value) -> crate::support::Reply {
    app.post("/v1/scans", &body).await
}

async fn points(app: &TestApp, member: &str) -> i64 {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["points"]["balance"].as_i64().unwrap_or(0)
}

/// The code with one character replaced by another of the alphabet.
fn typo(code: &str, position: usize) -> String {
    let mut bytes = code.as_bytes().to_vec();
    bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}&limit=200")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

async fn codes_batch_csv_has_a_header_and_count_unique_codes(app: TestApp) {
    let soy = product(&app, "SOY").await;
    // More than one page of the stream (20,000 codes a page).
    let count = 25_003;
    let reply = app
        .post(
            "/v1/code-batches",
            &json!({"product_id": soy, "count": count, "points_per_scan": 10,
                    "expires_at": "2099-01-01"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["count"], count);
    assert_eq!(reply.body["points_per_scan"], 10);
    assert_eq!(
        reply.body["codes_csv"],
        format!("/v1/code-batches/{id}/codes.csv")
    );
    assert!(reply.body["expires_at"]
        .as_str()
        .unwrap()
        .starts_with("2098-12-31T16:00:00"));
    let csv = app.get(&format!("/v1/code-batches/{id}/codes.csv")).await;
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.body.as_str().unwrap();
    assert_eq!(
        text.lines().count(),
        count as usize + 1,
        "header + one per code"
    );
    let codes = csv_codes(&app, &id).await;
    let unique: HashSet<&String> = codes.iter().collect();
    assert_eq!(unique.len(), count as usize);
    for code in &codes {
        assert_eq!(code.len(), 18);
        assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
    }
    // Serials run 1..=count in order.
    let serials: Vec<i64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(serials, (1..=count).collect::<Vec<_>>());
    // Every code scans as authentic.
    let first = scan(&app, json!({"code": codes[0]})).await;
    assert_eq!(first.body["authentic"], true, "{}", first.body);
    let last = scan(&app, json!({"code": codes[codes.len() - 1]})).await;
    assert_eq!(last.body["batch_id"], id);
    let created = events_of(&app, "code_batch.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["count"], count);
}

async fn codes_batch_validation_and_listing(app: TestApp) {
    let soy = product(&app, "SOY").await;
    for (body, field) in [
        (
            json!({"product_id": soy, "count": 0, "points_per_scan": 1}),
            "count",
        ),
        (
            json!({"product_id": soy, "count": 1_000_001, "points_per_scan": 1}),
            "count",
        ),
        (
            json!({"product_id": soy, "count": 5, "points_per_scan": -1}),
            "points_per_scan",
        ),
        (
            json!({"product_id": "prd_nope", "count": 5, "points_per_scan": 1}),
            "product_id",
        ),
        (
            json!({"product_id": "prd_0123456789abcdef0123456789abcdef", "count": 5, "points_per_scan": 1}),
            "product_id",
        ),
        (
            json!({"product_id": soy, "count": 5, "points_per_scan": 1, "expires_at": "2001-01-01"}),
            "expires_at",
        ),
        (
            json!({"product_id": soy, "count": 5, "points_per_scan": 1, "expires_at": "soon"}),
            "expires_at",
        ),
    ] {
        let reply = app.post("/v1/code-batches", &body).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            reply.body["error"]["details"]["field"], field,
            "{}",
            reply.body
        );
    }
    let unknown_field = app
        .post(
            "/v1/code-batches",
            &json!({"product_id": soy, "count": 5, "points_per_scan": 1, "colour": "red"}),
        )
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    let tea = product(&app, "TEA").await;
    let (a, _) = batch(&app, &soy, 3, 1).await;
    let (b, _) = batch(&app, &tea, 3, 1).await;
    let (c, _) = batch(&app, &soy, 3, 1).await;
    let page = app.get("/v1/code-batches?limit=2").await;
    assert_eq!(page.status, StatusCode::OK);
    let ids: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str(), b.as_str()]);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/v1/code-batches?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["data"][0]["id"], c);
    assert!(rest.body["next_cursor"].is_null());
    let of_soy = app.get(&format!("/v1/code-batches?product_id={soy}")).await;
    assert_eq!(of_soy.body["data"].as_array().unwrap().len(), 2);
    let one = app.get(&format!("/v1/code-batches/{b}")).await;
    assert_eq!(one.body["product_id"], tea);
    assert_eq!(
        app.get("/v1/code-batches/cbt_nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/code-batches?cursor=zzz").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/v1/code-batches?product_id=nope").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Idempotency-Key: the same request replays the same batch.
    let body = json!({"product_id": soy, "count": 4, "points_per_scan": 2});
    let first = app
        .post_idempotent("/v1/code-batches", "batch-1", &body)
        .await;
    let again = app
        .post_idempotent("/v1/code-batches", "batch-1", &body)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["id"], again.body["id"]);
    let all = app.get("/v1/code-batches?limit=200").await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 4);
}

async fn codes_ten_members_scanning_one_code_at_once_earn_the_points_once(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (_, codes) = batch(&app, &soy, 5, 50).await;
    let mut members = Vec::new();
    for i in 0..10 {
        members.push(app.member(&format!("m{i}")).await);
    }
    let scans = members.iter().map(|m| {
        scan(
            &app,
            json!({"code": codes[0], "member_id": m, "device_id": format!("phone-{m}"),
                   "city": "上海"}),
        )
    });
    let replies = futures::future::join_all(scans).await;
    let mut earned = 0;
    let mut counts = Vec::new();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["authentic"], true);
        earned += reply.body["points_awarded"].as_i64().unwrap();
        counts.push(reply.body["scan_count"].as_i64().unwrap());
    }
    assert_eq!(earned, 50, "exactly one scan earned the points");
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=10).collect::<Vec<_>>(),
        "every scan counted once"
    );
    let mut total = 0;
    let mut winners = 0;
    for m in &members {
        let p = points(&app, m).await;
        total += p;
        winners += i64::from(p > 0);
    }
    assert_eq!((total, winners), (50, 1));
    // Later scans by the winner earn nothing more.
    let again = scan(&app, json!({"code": codes[0], "member_id": members[0]})).await;
    assert_eq!(again.body["points_awarded"], 0);
    assert_eq!(again.body["scan_count"], 11);
    verify_ok(&app).await;
}

async fn codes_later_scans_tell_the_truth_and_stats_add_up(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (id, codes) = batch(&app, &soy, 10, 20).await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    // An anonymous scan first: it proves the package but pays nobody.
    let first_at = app.clock_now();
    let anonymous = scan(
        &app,
        json!({"code": codes[0], "city": "杭州", "device_id": "d1"}),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::OK, "{}", anonymous.body);
    let body = &anonymous.body;
    assert_eq!(body["authentic"], true);
    assert_eq!(body["product"]["id"], soy);
    assert_eq!(body["product"]["name"], "SOY soy milk");
    assert_eq!(body["batch_id"], id);
    assert_eq!(body["scan_count"], 1);
    assert_eq!(body["points_awarded"], 0);
    assert_eq!(body["first_scanned_city"], "杭州");
    assert!(body["member_id"].is_null());
    assert!(body.get("reason").is_none());
    // A day later Alice scans it: the first member earns the points; the story stays.
    app.clock.advance(SignedDuration::from_hours(24));
    let hers = scan(
        &app,
        json!({"code": codes[0], "member_id": alice, "city": "上海"}),
    )
    .await;
    assert_eq!(hers.body["points_awarded"], 20);
    assert_eq!(hers.body["scan_count"], 2);
    assert_eq!(hers.body["first_scanned_city"], "杭州");
    let first_text = hers.body["first_scanned_at"].as_str().unwrap();
    let first: jiff::Timestamp = first_text.parse().unwrap();
    assert_eq!(first.as_second(), first_at.as_second());
    // Bob scans a typed code with hyphens and lower case: the same code, no points.
    let typed = format!("{}-{}", &codes[0][..9].to_lowercase(), &codes[0][9..]);
    let his = scan(&app, json!({"code": typed, "member_id": bob})).await;
    assert_eq!(his.body["authentic"], true, "{}", his.body);
    assert_eq!(his.body["points_awarded"], 0);
    assert_eq!(his.body["scan_count"], 3);
    // Bob is first on another code.
    let other = scan(
        &app,
        json!({"code": codes[1], "member_id": bob, "city": "上海"}),
    )
    .await;
    assert_eq!(other.body["points_awarded"], 20);
    assert_eq!(points(&app, &alice).await, 20);
    assert_eq!(points(&app, &bob).await, 20);
    let stats = app.get(&format!("/v1/code-batches/{id}/stats")).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    let s = &stats.body;
    assert_eq!(s["codes"], 10);
    assert_eq!(s["scanned"], 2);
    assert_eq!(s["scans"], 4);
    assert_eq!(s["points_awarded"], 40);
    let days = s["by_day"].as_array().unwrap();
    assert_eq!(days.len(), 2, "{s}");
    assert_eq!(days[0]["scans"], 1);
    assert_eq!(days[0]["first_scans"], 1);
    assert_eq!(days[1]["scans"], 3);
    assert_eq!(days[1]["points_awarded"], 40);
    let day_one = first_at
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
        .to_string();
    assert_eq!(days[0]["date"], day_one);
    let cities = s["by_city"].as_array().unwrap();
    assert_eq!(cities[0]["city"], "上海");
    assert_eq!(cities[0]["scans"], 2);
    assert_eq!(s["suspicious_count"], 0);
    let scanned = events_of(&app, "code.scanned").await;
    assert_eq!(scanned.len(), 4);
    assert_eq!(scanned[1]["data"]["points_awarded"], 20);
    assert_eq!(scanned[1]["data"]["member_id"], alice);
    verify_ok(&app).await;
}

async fn codes_a_mistyped_code_is_told_apart_from_a_fake(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (_, codes) = batch(&app, &soy, 3, 5).await;
    let member = app.member("m").await;
    for position in [0, 7, 17] {
        let reply = scan(
            &app,
            json!({"code": typo(&codes[0], position), "member_id": member}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body,
            json!({"authentic": false, "reason": "mistyped"}),
            "position {position}"
        );
    }
    // One character dropped is a typo as well.
    let short = scan(&app, json!({"code": &codes[0][1..]})).await;
    assert_eq!(short.body["reason"], "mistyped");
    // A well-formed code with a valid check character that nobody issued: a fake.
    let fake = shequn::codes::code::Generator::new().code();
    let reply = scan(&app, json!({"code": fake, "member_id": member})).await;
    assert_eq!(
        reply.body,
        json!({"authentic": false, "reason": "unknown_code"})
    );
    let garbage = scan(&app, json!({"code": "hello"})).await;
    assert_eq!(garbage.body["reason"], "unknown_code");
    assert_eq!(points(&app, &member).await, 0, "no failure pays");
    // Bad requests are 4xx, never 500.
    for (body, status) in [
        (
            json!({"code": "x".repeat(65)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"code": codes[0], "member_id": "mem_nope"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"code": codes[0], "member_id": "mem_0123456789abcdef0123456789abcdef"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"code": codes[0], "city": "a\u{0}b"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"code": codes[0], "device_id": "d".repeat(129)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"code": codes[0], "member_id": member, "new_member": {"external_id": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"code": codes[0], "new_member": {"name": "no id"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"code": 5}), StatusCode::BAD_REQUEST),
        (
            json!({"code": codes[0], "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let reply = scan(&app, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
    }
    // None of those counted a scan of the real code.
    let real = scan(&app, json!({"code": codes[0]})).await;
    assert_eq!(real.body["scan_count"], 1);
}

async fn codes_a_cloned_label_is_flagged_once_with_an_event(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (id, codes) = batch(&app, &soy, 3, 5).await;
    // One code copied and scanned in three cities: a cloned label.
    for (i, city) in ["北京", "广州", "成都"].iter().enumerate() {
        let reply = scan(
            &app,
            json!({"code": codes[0], "city": city, "device_id": format!("d{i}")}),
        )
        .await;
        assert_eq!(reply.body["suspicious"], i == 2, "{}", reply.body);
    }
    // Another code scanned many times from one phone in one city is not suspicious.
    for _ in 0..8 {
        let reply = scan(
            &app,
            json!({"code": codes[1], "city": "北京", "device_id": "mine"}),
        )
        .await;
        assert_eq!(reply.body["suspicious"], false);
    }
    // A third code scanned from five devices in one city is.
    app.clock.advance(SignedDuration::from_mins(1));
    for i in 0..5 {
        let reply = scan(
            &app,
            json!({"code": codes[2], "device_id": format!("x{i}")}),
        )
        .await;
        assert_eq!(reply.body["suspicious"], i == 4, "{}", reply.body);
    }
    let still = scan(&app, json!({"code": codes[0], "city": "北京"})).await;
    assert_eq!(still.body["suspicious"], true);
    let flagged = events_of(&app, "code.suspicious").await;
    assert_eq!(flagged.len(), 2, "one event per code, once");
    assert_eq!(flagged[0]["data"]["cities"], 3);
    assert_eq!(flagged[0]["data"]["serial"], 1);
    assert_eq!(flagged[1]["data"]["devices"], 5);
    let stats = app.get(&format!("/v1/code-batches/{id}/stats")).await;
    assert_eq!(stats.body["suspicious_count"], 2);
    let listed: Vec<&str> = stats.body["suspicious"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [codes[0].as_str(), codes[2].as_str()]);
}

async fn codes_an_expired_batch_answers_expired(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let expires = (app.clock_now() + SignedDuration::from_hours(48)).to_string();
    let reply = app
        .post(
            "/v1/code-batches",
            &json!({"product_id": soy, "count": 2, "points_per_scan": 9, "expires_at": expires}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let codes = csv_codes(&app, &id).await;
    let member = app.member("m").await;
    let before = scan(&app, json!({"code": codes[0], "member_id": member})).await;
    assert_eq!(before.body["points_awarded"], 9);
    app.clock.advance(SignedDuration::from_hours(49));
    for code in &codes {
        let after = scan(&app, json!({"code": code, "member_id": member})).await;
        assert_eq!(after.status, StatusCode::OK);
        assert_eq!(after.body, json!({"authentic": false, "reason": "expired"}));
    }
    assert_eq!(points(&app, &member).await, 9);
    verify_ok(&app).await;
}

async fn codes_failed_scans_are_throttled_per_device_and_per_ip(app: TestApp) {
    use shequn::codes::scans::{MAX_FAILURES_PER_DEVICE, MAX_FAILURES_PER_IP};
    let soy = product(&app, "SOY").await;
    let (_, codes) = batch(&app, &soy, 2, 1).await;
    let mut generator = shequn::codes::code::Generator::new();
    for _ in 0..MAX_FAILURES_PER_DEVICE {
        let reply = scan(
            &app,
            json!({"code": generator.code(), "device_id": "guesser"}),
        )
        .await;
        assert_eq!(reply.body["reason"], "unknown_code");
    }
    let refused = scan(
        &app,
        json!({"code": generator.code(), "device_id": "guesser"}),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"]["code"], "rate_limited");
    assert_eq!(
        refused.body["error"]["details"]["limit"],
        "failed_scans_per_device"
    );
    assert!(refused.headers.contains_key("retry-after"));
    // Typos count too: guessing through the check character is no way around.
    let typo_refused = scan(
        &app,
        json!({"code": typo(&codes[0], 3), "device_id": "guesser"}),
    )
    .await;
    assert_eq!(typo_refused.status, StatusCode::TOO_MANY_REQUESTS);
    // A real code still answers the truth on the same device; another device is not limited.
    let real = scan(&app, json!({"code": codes[0], "device_id": "guesser"})).await;
    assert_eq!(real.body["authentic"], true);
    let other = scan(
        &app,
        json!({"code": generator.code(), "device_id": "honest"}),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    // Per IP across devices.
    for i in 0..MAX_FAILURES_PER_IP {
        let reply = scan(
            &app,
            json!({"code": generator.code(), "device_id": format!("rotating-{i}"), "ip": "203.0.113.9"}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{i}: {}", reply.body);
    }
    let by_ip = scan(
        &app,
        json!({"code": generator.code(), "device_id": "fresh", "ip": "203.0.113.9"}),
    )
    .await;
    assert_eq!(by_ip.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        by_ip.body["error"]["details"]["limit"],
        "failed_scans_per_ip"
    );
    // The next hour the budget is back.
    app.clock.advance(SignedDuration::from_hours(1));
    let later = scan(
        &app,
        json!({"code": generator.code(), "device_id": "guesser"}),
    )
    .await;
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(later.body["reason"], "unknown_code");
}

async fn codes_a_scan_can_create_the_member(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (_, codes) = batch(&app, &soy, 3, 30).await;
    let first = scan(
        &app,
        json!({"code": codes[0], "new_member": {"external_id": "wx-openid-1", "phone": "+8613800000001"},
               "device_id": "p1", "city": "苏州"}),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["member_created"], true);
    assert_eq!(first.body["points_awarded"], 30);
    let member = first.body["member_id"].as_str().unwrap().to_owned();
    let profile = app.get(&format!("/v1/members/{member}")).await;
    assert_eq!(profile.body["source"], "scan");
    assert_eq!(profile.body["external_id"], "wx-openid-1");
    assert_eq!(profile.body["phone"], "+8613800000001");
    assert_eq!(points(&app, &member).await, 30);
    // The same person scanning again is found, not created twice.
    let again = scan(
        &app,
        json!({"code": codes[1], "new_member": {"external_id": "wx-openid-1"}}),
    )
    .await;
    assert_eq!(again.body["member_created"], false);
    assert_eq!(again.body["member_id"], member);
    assert_eq!(points(&app, &member).await, 60);
    let created = events_of(&app, "member.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["via"], "scan");
    assert_eq!(created[0]["data"]["source"], "scan");
    // A bad phone names the nested field; nothing is created.
    let bad = scan(
        &app,
        json!({"code": codes[2], "new_member": {"external_id": "wx-2", "phone": "12"}}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["error"]["details"]["field"], "new_member.phone");
    let listed = app.get("/v1/members?limit=200").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    verify_ok(&app).await;
}

async fn codes_an_erased_members_scans_forget_device_and_ip(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (_, codes) = batch(&app, &soy, 1, 3).await;
    let member = app.member("m").await;
    let reply = scan(
        &app,
        json!({"code": codes[0], "member_id": member, "device_id": "phone-9", "ip": "198.51.100.7",
               "city": "南京"}),
    )
    .await;
    assert_eq!(reply.body["points_awarded"], 3);
    let export = app.get(&format!("/v1/members/{member}/export")).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.body);
    let scans = export.body["codes"]["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 1);
    assert_eq!(scans[0]["device_id"], "phone-9");
    assert_eq!(scans[0]["ip"], "198.51.100.7");
    assert_eq!(scans[0]["points"], 3);
    let erased = app.delete(&format!("/v1/members/{member}")).await;
    assert!(erased.status.is_success(), "{}", erased.body);
    let export = app.get(&format!("/v1/members/{member}/export")).await;
    let scans = export.body["codes"]["scans"].as_array().unwrap();
    assert!(scans[0]["device_id"].is_null());
    assert!(scans[0]["ip"].is_null());
    assert_eq!(scans[0]["city"], "南京");
    // An erased member cannot scan.
    let refused = scan(&app, json!({"code": codes[0], "member_id": member})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    verify_ok(&app).await;
}

async fn codes_other_tenants_batches_and_codes_are_not_found(app: TestApp) {
    let soy = product(&app, "SOY").await;
    let (id, codes) = batch(&app, &soy, 2, 5).await;
    let member = app.member("mine").await;
    let other = OtherTenant::new(&app).await;
    for path in [
        format!("/v1/code-batches/{id}"),
        format!("/v1/code-batches/{id}/codes.csv"),
        format!("/v1/code-batches/{id}/stats"),
    ] {
        let reply = other.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let listed = other.get("/v1/code-batches").await;
    assert_eq!(listed.body["data"], json!([]));
    let theirs = other.post("/v1/scans", &json!({"code": codes[0]})).await;
    assert_eq!(
        theirs.body,
        json!({"authentic": false, "reason": "unknown_code"})
    );
    // Their own code scanned with my member: my member is not theirs.
    let their_product = other
        .post(
            "/v1/products",
            &json!({"name": "tea", "sku": "TEA", "price": 100, "stock": 1}),
        )
        .await;
    let their_batch = other
        .post(
            "/v1/code-batches",
            &json!({"product_id": their_product.body["id"], "count": 1, "points_per_scan": 1}),
        )
        .await;
    assert_eq!(
        their_batch.status,
        StatusCode::CREATED,
        "{}",
        their_batch.body
    );
    let their_csv = other
        .get(&format!(
            "/v1/code-batches/{}/codes.csv",
            their_batch.body["id"].as_str().unwrap()
        ))
        .await;
    let their_code = their_csv.body.as_str().unwrap().lines().nth(1).unwrap();
    let their_code = their_code.split(',').next().unwrap().to_owned();
    let with_my_member = other
        .post(
            "/v1/scans",
            &json!({"code": their_code, "member_id": member}),
        )
        .await;
    assert_eq!(with_my_member.status, StatusCode::NOT_FOUND);
    // And my tenant does not know their code.
    let theirs_here = scan(&app, json!({"code": their_code})).await;
    assert_eq!(theirs_here.body["reason"], "unknown_code");
    let with_my_product = other
        .post(
            "/v1/code-batches",
            &json!({"product_id": soy, "count": 1, "points_per_scan": 1}),
        )
        .await;
    assert_eq!(with_my_product.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing they did touched the code.
    let mine = scan(&app, json!({"code": codes[0]})).await;
    assert_eq!(mine.body["scan_count"], 1);
    // Without a key: 401.
    let anonymous = app
        .send(build(
            axum::http::Method::POST,
            "/v1/scans",
            None,
            Some(&json!({"code": codes[0]})),
            None,
        ))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn codes_console_page_lists_batches_stats_and_the_csv(app: TestApp) {
    use shequn::console::operators::Role;
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let soy = product(&app, "SOY").await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = ops.get("/console/codes").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = html(&page);
    assert!(text.contains("一物一码"), "{text}");
    assert!(text.contains("href=\"/console/codes\""), "in the nav");
    let token = ops.csrf().await;
    let created = ops
        .post(
            "/console/codes",
            &[
                ("csrf_token", &token),
                ("product_id", &soy),
                ("count", "7"),
                ("points_per_scan", "4"),
                ("expires_at", ""),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    assert!(location(&created).starts_with("/console/codes?created=cbt_"));
    let id = location(&created)
        .trim_start_matches("/console/codes?created=")
        .to_owned();
    let refused = ops
        .post(
            "/console/codes",
            &[("csrf_token", &token), ("product_id", &soy), ("count", "0")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let codes = csv_codes(&app, &id).await;
    scan(&app, json!({"code": codes[0], "city": "上海"})).await;
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let list = html(&viewer.get("/console/codes").await);
    assert!(
        list.contains(&format!("/console/codes/{id}/codes.csv")),
        "{list}"
    );
    assert!(!list.contains("batch-form"), "a viewer is offered no form");
    let stats = viewer.get(&format!("/console/codes/{id}")).await;
    assert_eq!(stats.status, StatusCode::OK);
    let stats = html(&stats);
    assert!(stats.contains("上海"), "{stats}");
    assert!(stats.contains("扫码统计"));
    let csv = viewer.get(&format!("/console/codes/{id}/codes.csv")).await;
    assert_eq!(csv.status, StatusCode::OK);
    let body = csv.body.as_str().unwrap();
    assert_eq!(body.lines().count(), 8);
    assert!(body.contains(&codes[6]));
    // Another tenant's owner sees none of it.
    let other = OtherTenant::new(&app).await;
    let mut owner = other.owner().await;
    assert_eq!(
        owner.get(&format!("/console/codes/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        owner
            .get(&format!("/console/codes/{id}/codes.csv"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(!html(&owner.get("/console/codes").await).contains(&id));
}
