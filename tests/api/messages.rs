//! The message gate (issue 19, item 2): consent, the frequency cap (exact under concurrent
//! sends), quiet hours that defer rather than drop, transactional messages, erasure, the
//! gateway's status reports, a member's message history, settings, isolation.

use axum::http::{Method, StatusCode};
use jiff::Timestamp;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{build, TestApp};

backend_tests!(
    messages_consent_cap_and_categories,
    messages_quiet_hours_defer_to_their_end,
    messages_cap_is_exact_under_concurrent_sends,
    messages_status_reports_settings_and_isolation,
);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

async fn member(app: &TestApp, external_id: &str, consent: bool) -> String {
    let reply = app
        .post(
            "/v1/members",
            &json!({"external_id": external_id, "consent": {"marketing": consent}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

fn marketing(member: &str) -> Value {
    json!({"member_id": member, "channel": "wechat", "category": "marketing",
           "template": "flash_sale_tonight", "variables": {"sale": "豆浆"}})
}

async fn send(app: &TestApp, body: &Value) -> Value {
    let reply = app.post("/v1/messages", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/v1/events?after=0&type={kind}&limit=1000"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn messages_consent_cap_and_categories(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let yes = member(&app, "yes", true).await;
    let no = member(&app, "no", false).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&app, &marketing(&yes)).await);
    }
    assert_eq!(
        statuses
            .iter()
            .map(|m| m["status"].clone())
            .collect::<Vec<_>>(),
        [json!("requested"), json!("requested"), json!("suppressed")]
    );
    assert_eq!(statuses[2]["reason"], "frequency_cap");
    let requested = events(&app, "message.requested").await;
    assert_eq!(requested.len(), 2);
    let data = &requested[0]["data"];
    assert_eq!(data["message_id"], statuses[0]["id"]);
    assert_eq!(data["member_id"], yes.as_str());
    assert_eq!(data["channel"], "wechat");
    assert_eq!(data["category"], "marketing");
    assert_eq!(data["template"], "flash_sale_tonight");
    assert_eq!(data["variables"], json!({"sale": "豆浆"}));

    let refused = send(&app, &marketing(&no)).await;
    assert_eq!(refused["status"], "suppressed");
    assert_eq!(refused["reason"], "no_consent");

    // Transactional passes consent and the cap.
    let mut notice = marketing(&no);
    notice["category"] = json!("transactional");
    notice["template"] = json!("pickup_ready");
    assert_eq!(send(&app, &notice).await["status"], "requested");
    notice["member_id"] = json!(yes);
    assert_eq!(send(&app, &notice).await["status"], "requested");

    // Seven days on, the window has rolled: marketing passes again.
    app.clock.set(at("2026-06-08T10:00:01+08:00"));
    assert_eq!(send(&app, &marketing(&yes)).await["status"], "requested");

    // Erased: nothing, whatever the category.
    let erased = app.delete(&format!("/v1/members/{yes}")).await;
    assert_eq!(erased.status, StatusCode::OK);
    let spared = send(&app, &notice).await;
    assert_eq!(
        (spared["status"].clone(), spared["reason"].clone()),
        (json!("suppressed"), json!("erased"))
    );

    // Erasure cleared the variables the messages carried.
    let first = app
        .get(&format!(
            "/v1/messages/{}",
            statuses[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(first.body["variables"], json!({}), "{}", first.body);

    // The member's history: every message, newest first, with reasons.
    let history = app
        .get(&format!("/v1/members/{yes}/messages?limit=3"))
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let data = history.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["id"], spared["id"]);
    let cursor = history.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/v1/members/{yes}/messages?cursor={cursor}"))
        .await;
    let all: Vec<Value> = data
        .iter()
        .chain(rest.body["data"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(
        all.len(),
        6,
        "3 marketing, 1 notice, 1 a week later, 1 spared"
    );
    assert_eq!(
        all.iter()
            .filter(|m| m["reason"] == "frequency_cap")
            .count(),
        1
    );

    // Bad input.
    for (body, field) in [
        (
            json!({"member_id": no, "channel": "", "category": "marketing", "template": "t"}),
            "channel",
        ),
        (
            json!({"member_id": no, "channel": "c", "category": "marketing", "template": "t", "variables": [1]}),
            "variables",
        ),
        (
            json!({"member_id": no, "channel": "c", "category": "marketing", "template": "x".repeat(65)}),
            "template",
        ),
    ] {
        let reply = app.post("/v1/messages", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            reply.body
        );
    }
    let reply = app
        .post(
            "/v1/messages",
            &json!({"member_id": no, "channel": "c", "category": "spam", "template": "t"}),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.body);
    let reply = app
        .post(
            "/v1/messages",
            &marketing("mem_0193aaaabbbbccccddddeeeeffff0000"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
}

async fn messages_quiet_hours_defer_to_their_end(app: TestApp) {
    app.clock.set(at("2026-06-01T22:30:00+08:00"));
    let m = member(&app, "night", true).await;
    let deferred = send(&app, &marketing(&m)).await;
    assert_eq!(deferred["status"], "deferred", "{deferred}");
    assert_eq!(
        deferred["deliver_at"], "2026-06-02T00:00:00Z",
        "08:00 in Shanghai"
    );
    assert!(events(&app, "message.requested").await.is_empty());
    // A transactional notice at night goes at once.
    let mut notice = marketing(&m);
    notice["category"] = json!("transactional");
    assert_eq!(send(&app, &notice).await["status"], "requested");

    app.clock.set(at("2026-06-02T07:59:59+08:00"));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let id = deferred["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/messages/{id}")).await.body["status"],
        "deferred"
    );

    app.clock.set(at("2026-06-02T08:00:00+08:00"));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let released = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(released.body["status"], "requested", "{}", released.body);
    let requested = events(&app, "message.requested").await;
    assert_eq!(requested.len(), 2);
    assert_eq!(requested[1]["data"]["message_id"], id);
    // The release ran once.
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(events(&app, "message.requested").await.len(), 2);

    // Consent withdrawn during the night: the deferred message is suppressed at release.
    app.clock.set(at("2026-06-02T23:00:00+08:00"));
    let second = send(&app, &marketing(&m)).await;
    assert_eq!(second["status"], "deferred");
    let changed = app
        .patch(
            &format!("/v1/members/{m}"),
            &json!({"consent": {"marketing": false}}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    app.clock.set(at("2026-06-03T08:00:00+08:00"));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let spared = app
        .get(&format!("/v1/messages/{}", second["id"].as_str().unwrap()))
        .await;
    assert_eq!(spared.body["status"], "suppressed");
    assert_eq!(spared.body["reason"], "no_consent");
}

async fn messages_cap_is_exact_under_concurrent_sends(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let m = member(&app, "busy", true).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let router = app.router.clone();
        let request = build(
            Method::POST,
            "/v1/messages",
            Some(&app.key),
            Some(&marketing(&m)),
            None,
        );
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt as _;
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }));
    }
    let mut requested = 0;
    let mut capped = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        match body["status"].as_str().unwrap() {
            "requested" => requested += 1,
            "suppressed" if body["reason"] == "frequency_cap" => capped += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((requested, capped), (2, 10));
    assert_eq!(events(&app, "message.requested").await.len(), 2);
}

async fn messages_status_reports_settings_and_isolation(app: TestApp) {
    app.clock.set(at("2026-06-01T10:00:00+08:00"));
    let defaults = app.get("/v1/messaging-settings").await;
    assert_eq!(
        defaults.body,
        json!({"max_marketing_per_member_per_7_days": 2, "quiet_hours": {"start": "21:00", "end": "08:00"}})
    );
    let set = app
        .call(
            Method::PUT,
            "/v1/messaging-settings",
            Some(&json!({"max_marketing_per_member_per_7_days": 1, "quiet_hours": null})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    for bad in [
        json!({"max_marketing_per_member_per_7_days": -1, "quiet_hours": null}),
        json!({"max_marketing_per_member_per_7_days": 2, "quiet_hours": {"start": "25:00", "end": "08:00"}}),
        json!({"max_marketing_per_member_per_7_days": 2, "quiet_hours": {"start": "08:00", "end": "08:00"}}),
    ] {
        let reply = app
            .call(Method::PUT, "/v1/messaging-settings", Some(&bad))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
    }
    // Absent fields stay as they are.
    let reply = app
        .call(
            Method::PUT,
            "/v1/messaging-settings",
            Some(&json!({"max_marketing_per_member_per_7_days": 1})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        app.get("/v1/messaging-settings").await.body,
        json!({"max_marketing_per_member_per_7_days": 1, "quiet_hours": null})
    );
    let unknown = app
        .call(
            Method::PUT,
            "/v1/messaging-settings",
            Some(&json!({"quiet": null})),
        )
        .await;
    assert!(unknown.status.is_client_error(), "{}", unknown.body);

    let m = member(&app, "m", true).await;
    // Late at night with quiet hours off and a cap of 1: the first passes, the second is capped.
    app.clock.set(at("2026-06-01T23:00:00+08:00"));
    let first = send(&app, &marketing(&m)).await;
    assert_eq!(first["status"], "requested");
    let second = send(&app, &marketing(&m)).await;
    assert_eq!(second["reason"], "frequency_cap");
    let id = first["id"].as_str().unwrap();
    for status in ["sent", "sent", "clicked"] {
        let reply = app
            .post(
                &format!("/v1/messages/{id}/status"),
                &json!({ "status": status }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["status"], status);
    }
    assert_eq!(
        events(&app, "message.status_reported").await.len(),
        2,
        "a repeat is no change"
    );
    let refused = app
        .post(
            &format!("/v1/messages/{}/status", second["id"].as_str().unwrap()),
            &json!({"status": "sent"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "message_not_requested");
    let bad = app
        .post(
            &format!("/v1/messages/{id}/status"),
            &json!({"status": "read"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Another tenant: none of it.
    let (_, other_key) = app.other_tenant().await;
    for (method, path, body) in [
        (Method::GET, format!("/v1/messages/{id}"), None),
        (
            Method::POST,
            format!("/v1/messages/{id}/status"),
            Some(json!({"status": "failed"})),
        ),
        (Method::GET, format!("/v1/members/{m}/messages"), None),
        (Method::POST, "/v1/messages".to_owned(), Some(marketing(&m))),
    ] {
        let reply = app
            .send(build(method, &path, Some(&other_key), body.as_ref(), None))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    assert_eq!(
        app.get(&format!("/v1/messages/{id}")).await.body["status"],
        "clicked",
        "the other tenant changed nothing"
    );
}
