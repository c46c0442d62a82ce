//! Automations and broadcasts (issue 19, items 3 and 4): triggers from the outbox, filters in
//! the segments rule language evaluated when the step runs, delays as scheduler rows, once per
//! member per event across racing passes, the gate's caps and quiet hours, dry runs that
//! change nothing, cancel, stats with conversions, validation and isolation.

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use shequn::engagement::automations::run_automations;
use shequn::server::run_due_jobs;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    automation_filter_grants_only_to_matching_members_once,
    automation_delay_waits_for_its_job_and_pause_skips,
    automation_passes_racing_act_once_per_member_and_event,
    automation_messages_follow_the_cap_and_count_conversions,
    automation_validation_and_isolation,
    automation_on_birthdays_from_the_daily_run,
    broadcast_dry_run_changes_nothing_then_sends_once,
    broadcast_cancel_quiet_hours_and_saved_segments,
);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

async fn member(app: &TestApp, external_id: &str, tags: &[&str], consent: bool) -> String {
    let reply = app
        .post(
            "/v1/members",
            &json!({"external_id": external_id, "tags": tags,
                    "consent": {"marketing": consent}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn template(app: &TestApp, stock: i64) -> String {
    let reply = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": "见面礼", "kind": "amount_off", "amount_off": 500,
                    "total_stock": stock, "per_member_limit": 5, "valid_days": 7}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn automation(app: &TestApp, body: Value) -> String {
    let reply = app.post("/v1/automations", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn coupons_of(app: &TestApp, member: &str) -> usize {
    let reply = app.get(&format!("/v1/members/{member}/coupons")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().len()
}

async fn messages_of(app: &TestApp, member: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/members/{member}/messages")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn stats(app: &TestApp, path: &str) -> Value {
    let reply = app.get(&format!("{path}/stats")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn points_of(app: &TestApp, member: &str) -> i64 {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["points"]["balance"]
        .as_i64()
        .unwrap_or_else(|| panic!("no points balance in {}", reply.body))
}

async fn event_count(app: &TestApp) -> usize {
    let reply = app.get("/v1/events?after=0&limit=1000").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().len()
}

fn welcome(template: &str) -> Value {
    json!({
        "name": "小红书新人礼",
        "trigger": {"event": "member.created"},
        "filter": {"tag": "vip"},
        "actions": [
            {"grant_coupon": {"template_id": template}},
            {"send_message": {"channel": "wecom", "category": "marketing",
                              "template": "welcome", "variables": {"gift": "5元券"}}}
        ]
    })
}

async fn automation_filter_grants_only_to_matching_members_once(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let coupon = template(&app, 100).await;
    let id = automation(&app, welcome(&coupon)).await;
    let vip = member(&app, "vip", &["vip"], true).await;
    let plain = member(&app, "plain", &["regular"], true).await;

    let pass = run_automations(&app.state).await.unwrap();
    assert_eq!((pass.runs, pass.steps), (2, 2), "{pass:?}");
    assert_eq!(coupons_of(&app, &vip).await, 1);
    assert_eq!(coupons_of(&app, &plain).await, 0);
    let sent = messages_of(&app, &vip).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["status"], "requested");
    assert_eq!(sent[0]["source"], id.as_str());
    assert!(messages_of(&app, &plain).await.is_empty());

    // The message event names the automation.
    let requested = app
        .get("/v1/events?after=0&type=message.requested&limit=100")
        .await;
    let data = &requested.body["data"][0]["data"];
    assert_eq!(data["automation_id"], id.as_str(), "{}", requested.body);
    assert_eq!(data["member_id"], vip.as_str());

    // Passes again act on nothing new; a woken pass after an unrelated event neither.
    let again = run_automations(&app.state).await.unwrap();
    assert_eq!((again.runs, again.steps), (0, 0));
    let other = app
        .post(&format!("/v1/members/{plain}/tags"), &json!({"add": ["x"]}))
        .await;
    assert_eq!(other.status, StatusCode::OK);
    let woken = shequn::engagement::automations::pass(&app.state, true)
        .await
        .unwrap();
    assert_eq!((woken.runs, woken.steps), (0, 0));
    assert_eq!(coupons_of(&app, &vip).await, 1);

    let s = stats(&app, &format!("/v1/automations/{id}")).await;
    assert_eq!(s["entered"], 2, "{s}");
    assert_eq!(s["completed"], 1, "{s}");
    assert_eq!(s["filtered_out"], 1, "{s}");
    assert_eq!(s["messages"], 1, "{s}");
    assert_eq!(
        s["suppressed"],
        json!({"no_consent": 0, "frequency_cap": 0, "erased": 0})
    );

    // A vip without consent gets the coupon, and the message is suppressed.
    let quiet = member(&app, "quiet-vip", &["vip"], false).await;
    // A pass woken by a commit acts as a polled one when its trigger happened.
    shequn::engagement::automations::pass(&app.state, true)
        .await
        .unwrap();
    assert_eq!(coupons_of(&app, &quiet).await, 1);
    let spared = messages_of(&app, &quiet).await;
    assert_eq!(
        (spared[0]["status"].clone(), spared[0]["reason"].clone()),
        (json!("suppressed"), json!("no_consent"))
    );
    let s = stats(&app, &format!("/v1/automations/{id}")).await;
    assert_eq!(s["suppressed"]["no_consent"], 1, "{s}");

    // The runs are in the member's personal-data export.
    let export = app.get(&format!("/v1/members/{vip}/export")).await;
    let runs = export.body["engagement"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{}", export.body["engagement"]);
    assert_eq!(runs[0]["source_id"], id.as_str());
    assert_eq!(runs[0]["status"], "completed");
}

async fn automation_delay_waits_for_its_job_and_pause_skips(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let id = automation(
        &app,
        json!({"name": "三天后提醒", "trigger": {"event": "member.created"}, "delay_secs": 3 * 24 * 3600,
               "actions": [{"grant_points": {"points": 30}}, {"add_tags": ["nurtured"]}]}),
    )
    .await;
    let m = member(&app, "late", &[], true).await;
    let pass = run_automations(&app.state).await.unwrap();
    assert_eq!((pass.runs, pass.steps), (1, 0));
    assert_eq!(
        stats(&app, &format!("/v1/automations/{id}")).await["waiting"],
        1
    );
    run_due_jobs(&app.state).await.unwrap();
    assert_eq!(points_of(&app, &m).await, 0, "not before the delay");

    // A restart: another process state on the same database finds the waiting step.
    let restarted =
        shequn::AppState::new(app.state.db.clone(), std::sync::Arc::new(app.clock.clone()));
    app.clock
        .set(at("2026-06-01T10:00:00+08:00") + SignedDuration::from_hours(72));
    run_due_jobs(&restarted).await.unwrap();
    run_due_jobs(&restarted).await.unwrap();
    assert_eq!(points_of(&app, &m).await, 30);
    let member_now = app.get(&format!("/v1/members/{m}")).await;
    assert!(member_now.body["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("nurtured")));
    let s = stats(&app, &format!("/v1/automations/{id}")).await;
    assert_eq!(
        (s["completed"].clone(), s["waiting"].clone()),
        (json!(1), json!(0)),
        "{s}"
    );

    // Paused: the next member's waiting step does nothing when its time comes.
    let second = member(&app, "second", &[], true).await;
    run_automations(&app.state).await.unwrap();
    let paused = app
        .patch(
            &format!("/v1/automations/{id}"),
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["status"], "paused");
    app.clock
        .set(at("2026-06-01T10:00:00+08:00") + SignedDuration::from_hours(200));
    run_due_jobs(&app.state).await.unwrap();
    assert_eq!(points_of(&app, &second).await, 0);
    // Paused automations start no runs either.
    member(&app, "third", &[], true).await;
    assert_eq!(run_automations(&app.state).await.unwrap().runs, 0);
    let s = stats(&app, &format!("/v1/automations/{id}")).await;
    assert_eq!(
        (s["entered"].clone(), s["skipped"].clone()),
        (json!(2), json!(1)),
        "{s}"
    );
}

async fn automation_passes_racing_act_once_per_member_and_event(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let coupon = template(&app, 1_000).await;
    let id = automation(
        &app,
        json!({"name": "入会礼", "trigger": {"event": "member.created"},
               "actions": [{"grant_coupon": {"template_id": coupon}}, {"grant_points": {"points": 5}}]}),
    )
    .await;
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(member(&app, &format!("m{i}"), &[], true).await);
    }
    // Two nodes' passes at once, and again: each member's run exists and acts once.
    let node = shequn::AppState::new(app.state.db.clone(), std::sync::Arc::new(app.clock.clone()));
    let (a, b) = tokio::join!(run_automations(&app.state), run_automations(&node));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.runs + b.runs, 20, "{a:?} {b:?}");
    let (c, d) = tokio::join!(run_due_jobs(&app.state), run_due_jobs(&node));
    c.unwrap();
    d.unwrap();
    for m in &members {
        assert_eq!(coupons_of(&app, m).await, 1);
        assert_eq!(points_of(&app, m).await, 5);
    }
    let s = stats(&app, &format!("/v1/automations/{id}")).await;
    assert_eq!(
        (s["entered"].clone(), s["completed"].clone()),
        (json!(20), json!(20)),
        "{s}"
    );
    let verify = app.get("/v1/ledger/verify").await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
}

async fn automation_messages_follow_the_cap_and_count_conversions(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let settings = app
        .call(
            axum::http::Method::PUT,
            "/v1/messaging-settings",
            Some(&json!({"max_marketing_per_member_per_7_days": 2, "quiet_hours": null})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let id = automation(
        &app,
        json!({"name": "打标签就推", "trigger": {"event": "member.tagged"},
               "actions": [{"send_message": {"channel": "wechat", "category": "marketing",
                                             "template": "new_arrivals"}}]}),
    )
    .await;
    let m = member(&app, "fan", &[], true).await;
    for tag in ["a", "b", "c"] {
        let tagged = app
            .post(&format!("/v1/members/{m}/tags"), &json!({"add": [tag]}))
            .await;
        assert_eq!(tagged.status, StatusCode::OK, "{}", tagged.body);
    }
    run_automations(&app.state).await.unwrap();
    let sent = messages_of(&app, &m).await;
    let mut statuses: Vec<String> = sent
        .iter()
        .map(|s| format!("{}:{}", s["status"], s["reason"]))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "\"requested\":null",
            "\"requested\":null",
            "\"suppressed\":\"frequency_cap\""
        ]
    );

    // Two orders: one paid three days after the messages (a conversion), one nine days after.
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "豆浆", "sku": "soy", "price": 1500, "stock": 10}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let product = product.body["id"].as_str().unwrap().to_owned();
    for (days, reference) in [(3, "conv-1"), (9, "late-1")] {
        app.clock
            .set(at("2026-06-01T10:00:00+08:00") + SignedDuration::from_hours(24 * days));
        let order = app
            .post(
                "/v1/orders",
                &json!({"member_id": m, "items": [{"product_id": product, "qty": 2}],
                        "source": "external", "paid_at": app.clock_now().to_string(),
                        "total": 2800, "external_reference": reference}),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    }
    let s = stats(&app, &format!("/v1/automations/{id}")).await;
    assert_eq!(s["entered"], 3, "{s}");
    assert_eq!(s["messages"], 2, "{s}");
    assert_eq!(s["suppressed"]["frequency_cap"], 1, "{s}");
    assert_eq!(
        (s["conversions"].clone(), s["revenue"].clone()),
        (json!(1), json!(2800)),
        "{s}"
    );
}

async fn automation_validation_and_isolation(app: TestApp) {
    let coupon = template(&app, 10).await;
    let refused = |body: Value| {
        let app = &app;
        async move {
            let reply = app.post("/v1/automations", &body).await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body} → {}",
                reply.body
            );
            reply.body["error"]["details"]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let mut body = welcome(&coupon);
    body["trigger"]["event"] = json!("no.such_event");
    assert_eq!(refused(body).await, "trigger.event");
    let mut body = welcome(&coupon);
    body["trigger"]["event"] = json!("coupon.template_created");
    assert_eq!(refused(body).await, "trigger.event", "names no member");
    let mut body = welcome(&coupon);
    body["trigger"]["event"] = json!("message.requested");
    assert_eq!(refused(body).await, "trigger.event", "would feed itself");
    let mut body = welcome(&coupon);
    body["filter"] = json!({"all": [{"tag": "vip"}, {"field": "height", "gte": 1}]});
    assert_eq!(refused(body).await, "filter.all[1].field");
    let mut body = welcome(&coupon);
    body["delay_secs"] = json!(-1);
    assert_eq!(refused(body).await, "delay_secs");
    let mut body = welcome(&coupon);
    body["actions"] = json!([]);
    assert_eq!(refused(body).await, "actions");
    let mut body = welcome(&coupon);
    body["actions"][1]["send_message"]["variables"] = json!([1]);
    assert_eq!(refused(body).await, "actions[1].send_message.variables");
    let mut body = welcome(&coupon);
    body["actions"] = json!([{"grant_points": {"points": 0}}]);
    assert_eq!(refused(body).await, "actions[0].grant_points.points");
    let unknown = app
        .post(
            "/v1/automations",
            &json!({"name": "x", "trigger": {"event": "member.created"},
                                          "actions": [{"launch_rocket": {}}]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    assert_eq!(unknown.body["error"]["details"]["field"], "actions[0]");

    // Another tenant's coupon template is not one of ours; our automation is not theirs.
    let (_, other_key) = app.other_tenant().await;
    let other = |method: axum::http::Method, path: &str, body: Option<&Value>| {
        app.send(crate::support::build(
            method,
            path,
            Some(&other_key),
            body,
            None,
        ))
    };
    let theirs = other(
        axum::http::Method::POST,
        "/v1/coupon-templates",
        Some(
            &json!({"name": "他家券", "kind": "amount_off", "amount_off": 100,
                     "total_stock": 5, "per_member_limit": 1, "valid_days": 7}),
        ),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let body = welcome(theirs.body["id"].as_str().unwrap());
    assert_eq!(refused(body).await, "actions[0].grant_coupon.template_id");

    let id = automation(&app, welcome(&coupon)).await;
    for (method, path) in [
        (axum::http::Method::GET, format!("/v1/automations/{id}")),
        (
            axum::http::Method::GET,
            format!("/v1/automations/{id}/stats"),
        ),
        (axum::http::Method::DELETE, format!("/v1/automations/{id}")),
    ] {
        let reply = other(method, &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    let reply = other(
        axum::http::Method::PATCH,
        &format!("/v1/automations/{id}"),
        Some(&json!({"status": "paused"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let listed = other(axum::http::Method::GET, "/v1/automations", None).await;
    assert_eq!(listed.body["data"], json!([]));

    // Ours: listed, changed (filter cleared), deleted.
    let listed = app.get("/v1/automations").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    let changed = app
        .patch(
            &format!("/v1/automations/{id}"),
            &json!({"filter": null, "delay_secs": 60}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["filter"], Value::Null);
    assert_eq!(changed.body["delay_secs"], 60);
    assert_eq!(
        changed.body["actions"][0]["grant_coupon"]["template_id"],
        coupon.as_str()
    );
    let gone = app.delete(&format!("/v1/automations/{id}")).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/automations/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn broadcast_dry_run_changes_nothing_then_sends_once(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    app.call(
        axum::http::Method::PUT,
        "/v1/messaging-settings",
        Some(&json!({"max_marketing_per_member_per_7_days": 2, "quiet_hours": null})),
    )
    .await;
    let capped = member(&app, "capped", &["club"], true).await;
    let open = member(&app, "open", &["club"], true).await;
    let refuser = member(&app, "refuser", &["club"], false).await;
    member(&app, "outsider", &[], true).await;
    for _ in 0..2 {
        let sent = app
            .post(
                "/v1/messages",
                &json!({"member_id": capped, "channel": "wechat", "category": "marketing",
                        "template": "earlier"}),
            )
            .await;
        assert_eq!(sent.body["status"], "requested", "{}", sent.body);
    }
    let body = json!({
        "name": "周五闪购预告",
        "audience": {"rule": {"tag": "club"}},
        "actions": [
            {"grant_points": {"points": 10}},
            {"send_message": {"channel": "wechat", "category": "marketing", "template": "flash_sale"}}
        ]
    });
    let events_before = event_count(&app).await;
    let dry = app.post("/v1/broadcasts/dry-run", &body).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(
        dry.body,
        json!({"audience": 3, "would_send": 1,
               "suppressed": {"no_consent": 1, "frequency_cap": 1, "erased": 0},
               "deferred_quiet_hours": 0, "cost": {"points": 30, "coupons": 0}})
    );
    assert_eq!(
        event_count(&app).await,
        events_before,
        "a dry run writes nothing"
    );
    assert_eq!(points_of(&app, &open).await, 0);

    let created = app.post("/v1/broadcasts", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "scheduled");
    let id = created.body["id"].as_str().unwrap().to_owned();
    run_due_jobs(&app.state).await.unwrap();
    run_due_jobs(&app.state).await.unwrap();
    let sent = app.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(sent.body["status"], "sent", "{}", sent.body);
    assert_eq!(sent.body["audience_count"], 3);
    for m in [&capped, &open, &refuser] {
        assert_eq!(points_of(&app, m).await, 10, "points once per member");
    }
    let s = stats(&app, &format!("/v1/broadcasts/{id}")).await;
    assert_eq!(s["entered"], 3, "{s}");
    assert_eq!(s["messages"], 1, "{s}");
    assert_eq!(s["suppressed"]["no_consent"], 1, "{s}");
    assert_eq!(s["suppressed"]["frequency_cap"], 1, "{s}");
    let listed = app.get("/v1/broadcasts").await;
    assert_eq!(listed.body["data"][0]["id"], id.as_str());

    // Isolation.
    let (_, other_key) = app.other_tenant().await;
    for path in [
        format!("/v1/broadcasts/{id}"),
        format!("/v1/broadcasts/{id}/stats"),
    ] {
        let reply = app
            .send(crate::support::build(
                axum::http::Method::GET,
                &path,
                Some(&other_key),
                None,
                None,
            ))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

async fn broadcast_cancel_quiet_hours_and_saved_segments(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let m = member(&app, "night-owl", &["owl"], true).await;
    let segment = app
        .post(
            "/v1/segments",
            &json!({"name": "夜猫子", "rule": {"tag": "owl"}}),
        )
        .await;
    assert_eq!(segment.status, StatusCode::CREATED, "{}", segment.body);
    let segment = segment.body["id"].as_str().unwrap().to_owned();
    let body = json!({
        "name": "夜间推送",
        "audience": {"segment_id": segment},
        "actions": [{"send_message": {"channel": "wechat", "category": "marketing", "template": "night"}}],
        "send_at": "2026-06-01T22:00:00+08:00"
    });

    // Cancelled before it runs: nothing is sent, and a second cancel is refused.
    let first = app.post("/v1/broadcasts", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let first = first.body["id"].as_str().unwrap().to_owned();
    let cancelled = app
        .post(&format!("/v1/broadcasts/{first}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let again = app
        .post(&format!("/v1/broadcasts/{first}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "broadcast_started");

    // At 22:00 the quiet hours (21:00–08:00 by default) defer the message to 08:00.
    let second = app.post("/v1/broadcasts", &body).await;
    let second = second.body["id"].as_str().unwrap().to_owned();
    let dry = app.post("/v1/broadcasts/dry-run", &body).await;
    assert_eq!(dry.body["deferred_quiet_hours"], 1, "{}", dry.body);
    run_due_jobs(&app.state).await.unwrap();
    assert!(messages_of(&app, &m).await.is_empty(), "not before send_at");
    app.clock.set(at("2026-06-01T22:00:00+08:00"));
    run_due_jobs(&app.state).await.unwrap();
    let held = messages_of(&app, &m).await;
    assert_eq!(held.len(), 1, "the cancelled one sent nothing");
    assert_eq!(held[0]["status"], "deferred");
    assert_eq!(held[0]["source"], second.as_str());
    let s = stats(&app, &format!("/v1/broadcasts/{second}")).await;
    assert_eq!(
        (s["deferred_quiet_hours"].clone(), s["messages"].clone()),
        (json!(1), json!(0)),
        "{s}"
    );
    app.clock.set(at("2026-06-02T08:00:00+08:00"));
    run_due_jobs(&app.state).await.unwrap();
    let s = stats(&app, &format!("/v1/broadcasts/{second}")).await;
    assert_eq!(
        (s["deferred_quiet_hours"].clone(), s["messages"].clone()),
        (json!(1), json!(1)),
        "{s}"
    );

    // Audience errors: both or neither, another tenant's segment.
    let mut both = body.clone();
    both["audience"]["rule"] = json!({"tag": "owl"});
    let reply = app.post("/v1/broadcasts", &both).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let (_, other_key) = app.other_tenant().await;
    let theirs = app
        .send(crate::support::build(
            axum::http::Method::POST,
            "/v1/broadcasts",
            Some(&other_key),
            Some(&body),
            None,
        ))
        .await;
    assert_eq!(
        theirs.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        theirs.body
    );
    assert_eq!(
        theirs.body["error"]["details"]["field"],
        "audience.segment_id"
    );
}

async fn automation_on_birthdays_from_the_daily_run(app: TestApp) {
    // 28 February 2027 (not a leap year): the members born on 29 February celebrate today.
    app.clock.set(at("2027-02-28T09:00:00+08:00"));
    let id = automation(
        &app,
        json!({"name": "生日礼", "trigger": {"event": "member.birthday"},
               "actions": [{"grant_points": {"points": 99}}]}),
    )
    .await;
    let mut born = Vec::new();
    for (name, birthday) in [
        ("leap", "1992-02-29"),
        ("today", "1990-02-28"),
        ("tomorrow", "1990-03-01"),
    ] {
        let reply = app
            .post(
                "/v1/members",
                &json!({"external_id": name, "birthday": birthday}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        born.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let tenant = shequn::common::ids::TenantId::from_db(app.tenant_id.clone());
    let day = shequn::daily::run_daily(&app.state, &tenant).await.unwrap();
    assert_eq!(day.birthdays, 2, "{day:?}");
    assert_eq!(
        shequn::daily::run_daily(&app.state, &tenant)
            .await
            .unwrap()
            .birthdays,
        0,
        "once a year"
    );
    run_automations(&app.state).await.unwrap();
    assert_eq!(points_of(&app, &born[0]).await, 99);
    assert_eq!(points_of(&app, &born[1]).await, 99);
    assert_eq!(points_of(&app, &born[2]).await, 0);
    assert_eq!(
        stats(&app, &format!("/v1/automations/{id}")).await["completed"],
        2
    );
}
