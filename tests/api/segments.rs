//! Segments (issue 18): every predicate and nesting through the API against members built
//! through the API, erasure, bad rules, saved segments with their members, export and history,
//! freshness across two nodes on one database, and tenant isolation.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use jiff::Timestamp;
use serde_json::{json, Value};
use shequn::common::db::Db;
use shequn::AppState;

use crate::backend_tests;
use crate::support::{build, Reply, TestApp};

backend_tests!(
    segments_every_predicate_nesting_and_erasure,
    segments_bad_rules_are_422_naming_the_node,
    segments_saved_members_export_history_and_isolation,
    segments_a_second_node_sees_the_first_nodes_writes,
);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// The members a rule matches now, from the preview (checked to be complete: fewer than 20).
async fn matching(app: &TestApp, rule: Value) -> BTreeSet<String> {
    let reply = app
        .post("/v1/segments/preview", &json!({ "rule": rule }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{rule}: {}", reply.body);
    let sample: BTreeSet<String> = reply.body["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reply.body["count"], sample.len(), "{rule}: {}", reply.body);
    sample
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

async fn create(app: &TestApp, body: Value) -> String {
    let reply = app.post("/v1/members", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn paid_order(
    app: &TestApp,
    member: &str,
    product: &Value,
    paid_at: &str,
    n: usize,
) -> String {
    let reply = app
        .post(
            "/v1/orders",
            &json!({"member_id": member, "source": "external",
                "items": [{"product_id": product, "qty": 1}],
                "paid_at": paid_at, "external_reference": format!("{member}-{n}")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn segments_every_predicate_nesting_and_erasure(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let tiers = app
        .call(
            Method::PUT,
            "/v1/program/tiers",
            Some(&json!({"tiers": [{"name": "银卡", "growth_min": 0}, {"name": "金卡", "growth_min": 1000}]})),
        )
        .await;
    assert_eq!(tiers.status, StatusCode::OK, "{}", tiers.body);
    let points = app
        .call(
            Method::PUT,
            "/v1/program/points",
            Some(
                &json!({"points_per_yuan": 1, "burn_points_per_yuan": 100, "burn_cap_bp": 5000,
                "return_window_days": 0, "expiry": "never", "expiry_days": null}),
            ),
        )
        .await;
    assert_eq!(points.status, StatusCode::OK, "{}", points.body);

    let a = create(
        &app,
        json!({"external_id": "a", "source": "xiaohongshu", "tags": ["vip"],
        "consent": {"marketing": true}, "birthday": "1990-06-03"}),
    )
    .await;
    let b = create(
        &app,
        json!({"external_id": "b", "source": "store", "tags": ["vip", "tea"]}),
    )
    .await;
    let campaign = app
        .post(
            "/v1/referral-campaigns",
            &json!({"name": "老带新", "qualify_on": "signup",
                "inviter_reward": {"points": 10}, "invitee_reward": {"points": 5}}),
        )
        .await;
    assert_eq!(campaign.status, StatusCode::CREATED, "{}", campaign.body);
    let campaign = campaign.body["id"].as_str().unwrap().to_owned();
    let code = app
        .get(&format!(
            "/v1/members/{a}/invite-code?campaign_id={campaign}"
        ))
        .await;
    let code = code.body["code"].as_str().unwrap().to_owned();
    let c = create(
        &app,
        json!({"external_id": "c", "source": "xiaohongshu",
        "consent": {"marketing": true}, "invite_code": code}),
    )
    .await;
    let d = create(&app, json!({"external_id": "d", "source": "store"})).await;
    let e = create(&app, json!({"external_id": "e", "tags": ["tea"]})).await;
    let everyone = set(&[&a, &b, &c, &d, &e]);

    // Before any order: set predicates.
    assert_eq!(matching(&app, json!({"tag": "vip"})).await, set(&[&a, &b]));
    assert_eq!(
        matching(&app, json!({"source": "store"})).await,
        set(&[&b, &d])
    );
    assert_eq!(
        matching(&app, json!({"consent_marketing": true})).await,
        set(&[&a, &c])
    );
    assert_eq!(
        matching(&app, json!({"consent_marketing": false})).await,
        set(&[&b, &d, &e])
    );
    assert_eq!(matching(&app, json!({"invited_by": a})).await, set(&[&c]));
    assert_eq!(
        matching(&app, json!({"referral_campaign": campaign})).await,
        set(&[&c])
    );
    assert_eq!(matching(&app, json!({"tier": "银卡"})).await, everyone);
    assert_eq!(
        matching(&app, json!({"tag": "nobody-has-it"})).await,
        BTreeSet::new()
    );
    assert_eq!(
        matching(&app, json!({"field": "birthday_in_days", "lte": 7})).await,
        set(&[&a])
    );

    // Changes are seen by the next preview: growth moves b to 金卡, a tag, a group, orders,
    // points.
    let growth = app
        .post(
            &format!("/v1/members/{b}/growth"),
            &json!({"delta": 1000, "reason": "test"}),
        )
        .await;
    assert!(growth.status.is_success(), "{}", growth.body);
    assert_eq!(matching(&app, json!({"tier": "金卡"})).await, set(&[&b]));
    let tagged = app
        .post(&format!("/v1/members/{e}/tags"), &json!({"add": ["vip"]}))
        .await;
    assert!(tagged.status.is_success(), "{}", tagged.body);
    assert_eq!(
        matching(&app, json!({"tag": "vip"})).await,
        set(&[&a, &b, &e])
    );
    let group = app
        .post(
            "/v1/groups",
            &json!({"name": "上海群", "owner_member_id": b}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let group = group.body["id"].as_str().unwrap().to_owned();
    let joined = app
        .post(
            &format!("/v1/groups/{group}/members"),
            &json!({"member_id": e}),
        )
        .await;
    assert!(joined.status.is_success(), "{}", joined.body);
    assert_eq!(
        matching(&app, json!({"group": group})).await,
        set(&[&b, &e])
    );

    let product = app
        .post(
            "/v1/products",
            &json!({"name": "豆浆", "sku": "soy", "price": 1000, "stock": 100}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let product = product.body["id"].clone();
    paid_order(&app, &a, &product, "2026-05-30T12:00:00+08:00", 1).await;
    paid_order(&app, &a, &product, "2026-05-31T23:30:00+08:00", 2).await;
    let b_order = paid_order(&app, &b, &product, "2026-05-01T09:00:00+08:00", 1).await;
    let c_order = paid_order(&app, &c, &product, "2026-05-20T09:00:00+08:00", 1).await;
    for (order, amount, reference) in [(&b_order, 300, "rf-b"), (&c_order, 1000, "rf-c")] {
        let refund = app
            .post(
                &format!("/v1/orders/{order}/refunds"),
                &json!({"amount": amount, "reason": "test", "reference": reference}),
            )
            .await;
        assert!(refund.status.is_success(), "{}", refund.body);
    }
    assert_eq!(
        matching(&app, json!({"field": "orders_count", "gte": 2})).await,
        set(&[&a])
    );
    // c's only order was refunded in full: no paid order, no last order day.
    assert_eq!(
        matching(&app, json!({"field": "orders_count", "lte": 0})).await,
        set(&[&c, &d, &e])
    );
    assert_eq!(
        matching(
            &app,
            json!({"field": "total_spent", "gte": 700, "lte": 700})
        )
        .await,
        set(&[&b])
    );
    assert_eq!(
        matching(&app, json!({"field": "total_spent", "gte": 2000})).await,
        set(&[&a])
    );
    // Local days: 31 May 23:30 in Shanghai is 1 day before 1 June; 1 May is 31 days.
    assert_eq!(
        matching(&app, json!({"field": "last_order_days", "lte": 1})).await,
        set(&[&a])
    );
    assert_eq!(
        matching(
            &app,
            json!({"field": "last_order_days", "gte": 31, "lte": 31})
        )
        .await,
        set(&[&b])
    );
    assert_eq!(
        matching(&app, json!({"field": "last_order_days"})).await,
        set(&[&a, &b])
    );
    assert_eq!(
        matching(
            &app,
            json!({"not": {"field": "last_order_days", "lte": 30}})
        )
        .await,
        set(&[&b, &c, &d, &e])
    );
    let earned = app
        .post(
            &format!("/v1/members/{d}/points/earn"),
            &json!({"paid_amount": 100_000, "reference": "big"}),
        )
        .await;
    assert!(earned.status.is_success(), "{}", earned.body);
    // Pending points are no balance yet: the release (the scheduler) posts them.
    assert_eq!(
        matching(&app, json!({"field": "points_balance", "gte": 1000})).await,
        BTreeSet::new()
    );
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(
        matching(&app, json!({"field": "points_balance", "gte": 1000})).await,
        set(&[&d])
    );

    // A transfer through the ledger API names no member in its event: its accounts are read.
    let granted = app
        .post(
            "/v1/ledger/transfers",
            &json!({"transfers": [{"id": "grant-b", "from": "system:issuance", "to": format!("member:{b}"),
                "asset": "points", "amount": 5000, "code": "manual_grant"}]}),
        )
        .await;
    assert!(granted.status.is_success(), "{}", granted.body);
    assert_eq!(
        matching(&app, json!({"field": "points_balance", "gte": 5000})).await,
        set(&[&b])
    );

    // Nesting.
    let nested = json!({"all": [
        {"source": "xiaohongshu"},
        {"any": [{"tag": "vip"}, {"invited_by": a}]},
        {"not": {"field": "orders_count", "gte": 2}}
    ]});
    assert_eq!(matching(&app, nested).await, set(&[&c]));
    let deeper = json!({"any": [
        {"all": [{"tier": "金卡"}, {"not": {"not": {"group": group}}}]},
        {"all": [{"consent_marketing": true}, {"not": {"any": [{"tag": "vip"}, {"source": "store"}]}}]}
    ]});
    assert_eq!(matching(&app, deeper).await, set(&[&b, &c]));

    // Ten days later: joined_days and last_order_days move with the tenant's calendar.
    app.clock.set(at("2026-06-11T10:00:00+08:00"));
    assert_eq!(
        matching(&app, json!({"field": "joined_days", "gte": 10, "lte": 10})).await,
        everyone
    );
    assert_eq!(
        matching(
            &app,
            json!({"field": "last_order_days", "gte": 11, "lte": 11})
        )
        .await,
        set(&[&a])
    );
    assert_eq!(
        matching(
            &app,
            json!({"field": "birthday_in_days", "gte": 357, "lte": 357})
        )
        .await,
        set(&[&a])
    );

    // A scoring run: rfm_segment and lifecycle_stage agree with the members API.
    let tenant = shequn::common::ids::TenantId::parse(&app.tenant_id).unwrap();
    shequn::daily::refresh_analytics(&app.state, &tenant, app.clock_now()).await;
    let mut scored = 0;
    for segment in shequn::members::model::RFM_SEGMENTS {
        let listed = app.get(&format!("/v1/members?rfm_segment={segment}")).await;
        let want: BTreeSet<String> = listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        scored += want.len();
        assert_eq!(
            matching(&app, json!({"rfm_segment": segment})).await,
            want,
            "{segment}"
        );
    }
    assert!(scored >= 2, "a and b bought: they are scored");
    for id in &everyone {
        let member = app.get(&format!("/v1/members/{id}")).await;
        if let Some(stage) = member.body["lifecycle_stage"].as_str() {
            assert!(matching(&app, json!({"lifecycle_stage": stage}))
                .await
                .contains(id));
        }
    }

    // Erasure: d is in no audience any more, not even through a `not`.
    let erased = app.delete(&format!("/v1/members/{d}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    assert_eq!(matching(&app, json!({"source": "store"})).await, set(&[&b]));
    assert_eq!(
        matching(&app, json!({"not": {"tag": "vip"}})).await,
        set(&[&c])
    );
    assert_eq!(
        matching(&app, json!({"field": "points_balance", "gte": 1000})).await,
        set(&[&b])
    );
}

async fn segments_bad_rules_are_422_naming_the_node(app: TestApp) {
    let cases = [
        (
            json!({"all": [{"tag": "a"}, {"field": "height", "gte": 1}]}),
            "rule.all[1].field",
        ),
        (json!({"any": []}), "rule.any"),
        (json!({"all": {"tag": "a"}}), "rule.all"),
        (json!({"not": {"colour": "red"}}), "rule.not"),
        (json!({"tag": "a", "source": "b"}), "rule"),
        (json!("vip"), "rule"),
        (json!(null), "rule"),
        (json!({"tag": 3}), "rule.tag"),
        (json!({"rfm_segment": "kings"}), "rule.rfm_segment"),
        (json!({"lifecycle_stage": "zombie"}), "rule.lifecycle_stage"),
        (json!({"group": "not-an-id"}), "rule.group"),
        (
            json!({"referral_campaign": "grp_0193aaaabbbbccccddddeeeeffff0000"}),
            "rule.referral_campaign",
        ),
        (json!({"invited_by": "mem_1"}), "rule.invited_by"),
        (
            json!({"consent_marketing": "yes"}),
            "rule.consent_marketing",
        ),
        (json!({"field": "clv", "gte": "1"}), "rule.gte"),
        (json!({"field": "clv", "gte": 5, "lte": 4}), "rule.lte"),
        (json!({"field": "clv", "between": [1, 2]}), "rule.between"),
        (
            json!({"all": [{"any": [{"not": {"field": "orders_count", "gte": true}}]}]}),
            "rule.all[0].any[0].not.gte",
        ),
    ];
    for (rule, path) in cases {
        let reply = app
            .post("/v1/segments/preview", &json!({ "rule": rule }))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rule}: {}",
            reply.body
        );
        assert_eq!(
            reply.body["error"]["code"], "validation_failed",
            "{}",
            reply.body
        );
        assert_eq!(
            reply.body["error"]["details"]["path"], path,
            "{rule}: {}",
            reply.body
        );
        assert!(reply.body["error"]["details"]["expected"]
            .as_str()
            .is_some_and(|e| !e.is_empty()));
        let saved = app
            .post("/v1/segments", &json!({"name": "bad", "rule": rule}))
            .await;
        assert_eq!(
            saved.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            saved.body
        );
    }
    // Too deep.
    let mut deep = json!({"tag": "a"});
    for _ in 0..40 {
        deep = json!({ "not": deep });
    }
    let reply = app
        .post("/v1/segments/preview", &json!({ "rule": deep }))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    // The request's own shape: a missing rule or an unknown field is a 400/422, never a 500.
    for body in [
        json!({}),
        json!({"rule": {"tag": "a"}, "extra": 1}),
        json!([1]),
    ] {
        let reply = app.post("/v1/segments/preview", &body).await;
        assert!(reply.status.is_client_error(), "{body}: {}", reply.status);
    }
    let nameless = app
        .post("/v1/segments", &json!({"name": " ", "rule": {"tag": "a"}}))
        .await;
    assert_eq!(
        nameless.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        nameless.body
    );
    let listed = app.get("/v1/segments").await;
    assert_eq!(listed.body["data"], json!([]), "nothing was saved");
}

fn ids_of(reply: &Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.body))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn segments_saved_members_export_history_and_isolation(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(create(&app, json!({"external_id": format!("p{i}"), "tags": ["p"]})).await);
    }
    let outsider = create(&app, json!({"external_id": "q", "tags": ["q"]})).await;
    let created = app
        .post(
            "/v1/segments",
            &json!({"name": "豆浆老客", "rule": {"tag": "p"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["count"], 30);
    assert_eq!(created.body["name"], "豆浆老客");
    assert_eq!(created.body["rule"], json!({"tag": "p"}));
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("seg_"), "{id}");

    // Paging while members join: every member exactly once, the newcomers on later pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/segments/{id}/members?limit=7&cursor={c}"),
            None => format!("/v1/segments/{id}/members?limit=7"),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(ids_of(&page));
        pages += 1;
        if pages == 2 {
            for i in 0..5 {
                members.push(
                    create(
                        &app,
                        json!({"external_id": format!("late{i}"), "tags": ["p"]}),
                    )
                    .await,
                );
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no member twice");
    assert_eq!(unique, members.iter().collect::<BTreeSet<_>>());
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "id order");

    // The same members through GET /v1/members?segment=.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/members?segment={id}&limit=10&cursor={c}"),
            None => format!("/v1/members?segment={id}&limit=10"),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        listed.extend(ids_of(&page));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, sorted);
    let combined = app.get(&format!("/v1/members?segment={id}&tag=p")).await;
    assert_eq!(
        combined.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        combined.body
    );

    // Export: a header and one row per member, in id order.
    let export = app.get(&format!("/v1/segments/{id}/export")).await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(export.headers[axum::http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = export.body.as_str().unwrap().to_owned();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,external_id,name,phone,birthday,source,tier,tags,created_at")
    );
    let exported: Vec<String> = lines
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(exported, sorted);

    // History: the daily run records the day's count.
    let day = app.post("/v1/jobs/daily", &json!({})).await;
    assert!(day.status.is_success(), "{}", day.body);
    assert_eq!(day.body["report"]["segments_counted"], 1, "{}", day.body);
    let got = app.get(&format!("/v1/segments/{id}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["count"], 35);
    assert_eq!(
        got.body["history"],
        json!([{"date": "2026-06-01", "count": 35}])
    );

    // Rename and change the rule.
    let patched = app
        .patch(
            &format!("/v1/segments/{id}"),
            &json!({"name": "p 或 q", "rule": {"any": [{"tag": "p"}, {"tag": "q"}]}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["count"], 36);
    assert_eq!(patched.body["name"], "p 或 q");
    let bad = app
        .patch(&format!("/v1/segments/{id}"), &json!({"rule": {"any": []}}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["error"]["details"]["path"], "rule.any");
    let list = app.get("/v1/segments").await;
    assert_eq!(list.body["data"][0]["count"], 36, "{}", list.body);

    // Another tenant sees none of it, and its rules never count these members.
    let (_, other_key) = app.other_tenant().await;
    let other = |method: Method, path: &str, body: Option<Value>| {
        build(method, path, Some(&other_key), body.as_ref(), None)
    };
    for path in [
        format!("/v1/segments/{id}"),
        format!("/v1/segments/{id}/members"),
        format!("/v1/segments/{id}/export"),
        format!("/v1/members?segment={id}"),
    ] {
        let reply = app.send(other(Method::GET, &path, None)).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    let reply = app
        .send(other(
            Method::PATCH,
            &format!("/v1/segments/{id}"),
            Some(json!({"name": "x"})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(other(Method::DELETE, &format!("/v1/segments/{id}"), None))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(other(
            Method::POST,
            "/v1/segments/preview",
            Some(json!({"rule": {"any": [{"tag": "p"}, {"invited_by": outsider}]}})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["count"], 0, "{}", reply.body);

    let deleted = app.delete(&format!("/v1/segments/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/segments/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/v1/segments/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/segments/seg_nonsense/members").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn segments_a_second_node_sees_the_first_nodes_writes(app: TestApp) {
    let first = create(&app, json!({"external_id": "n1", "tags": ["x"]})).await;
    // A second node: its own state (and segment index) on the same database.
    let db = Db::connect(&app.database_url).await.unwrap();
    let node = AppState::new(db, Arc::new(app.clock.clone()));
    let router = shequn::app(node);
    let preview = |rule: Value| {
        let router = router.clone();
        let request = build(
            Method::POST,
            "/v1/segments/preview",
            Some(&app.key),
            Some(&json!({ "rule": rule })),
            None,
        );
        async move {
            use tower::ServiceExt as _;
            let response = router.oneshot(request).await.unwrap();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    assert_eq!(preview(json!({"tag": "x"})).await["count"], 1);
    // Writes on the first node, seen by the second within 2 seconds (here: at once).
    let second = create(&app, json!({"external_id": "n2", "tags": ["x"]})).await;
    let tagged = app
        .post(
            &format!("/v1/members/{first}/tags"),
            &json!({"remove": ["x"], "add": ["y"]}),
        )
        .await;
    assert!(tagged.status.is_success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let now = preview(json!({"tag": "x"})).await;
        if now["sample"] == json!([second]) || std::time::Instant::now() > deadline {
            assert_eq!(now["sample"], json!([second]), "{now}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(preview(json!({"tag": "y"})).await["sample"], json!([first]));
    // And the other way round: the first node sees an erasure made through the second.
    let erase = {
        use tower::ServiceExt as _;
        router
            .clone()
            .oneshot(build(
                Method::DELETE,
                &format!("/v1/members/{second}"),
                Some(&app.key),
                None,
                None,
            ))
            .await
            .unwrap()
    };
    assert_eq!(erase.status(), StatusCode::OK);
    assert_eq!(matching(&app, json!({"tag": "x"})).await, BTreeSet::new());
}
