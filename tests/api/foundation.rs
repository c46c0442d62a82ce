//! Cross-cutting contracts: authentication, tenant isolation, error shapes and limits, the
//! event outbox, API documentation and operations endpoints.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use shequn::common::clock::Clock as _;

use crate::backend_tests;
use crate::support::{build, TestApp};

backend_tests!(
    missing_wrong_and_revoked_keys_get_401,
    another_tenant_never_sees_a_member,
    malformed_json_and_unknown_fields_are_400,
    oversize_bodies_are_413,
    unknown_routes_and_methods_get_json_errors,
    events_are_numbered_per_tenant_in_order,
    openapi_covers_every_route_and_docs_work_offline,
    health_and_metrics_answer,
);

async fn missing_wrong_and_revoked_keys_get_401(app: TestApp) {
    let no_key = app
        .send(build(Method::GET, "/v1/members", None, None, None))
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_key.body["error"]["code"], "unauthorized");
    let wrong = app
        .send(build(
            Method::GET,
            "/v1/members",
            Some("sq_nope"),
            None,
            None,
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let tenant = shequn::common::ids::TenantId::parse(&app.tenant_id).unwrap();
    let (key_id, secret) = shequn::tenants::create_key(
        &app.state.db,
        &tenant,
        shequn::common::auth::KeyRole::Owner,
        app.clock.now(),
    )
    .await
    .unwrap();
    assert!(
        shequn::tenants::revoke_key(&app.state.db, &key_id, app.clock.now())
            .await
            .unwrap()
    );
    let revoked = app
        .send(build(Method::GET, "/v1/members", Some(&secret), None, None))
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    let post = app
        .send(build(
            Method::POST,
            "/v1/members",
            None,
            Some(&json!({})),
            None,
        ))
        .await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
}

async fn another_tenant_never_sees_a_member(app: TestApp) {
    let created = app
        .post(
            "/v1/members",
            &json!({"external_id": "shared-ext", "name": "Mine", "tags": ["t"]}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let (_, other_key) = app.other_tenant().await;
    let as_other = |method: Method, path: &str, body: Option<Value>| {
        build(method, path, Some(&other_key), body.as_ref(), None)
    };
    for (method, path, body) in [
        (Method::GET, format!("/v1/members/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/members/{id}"),
            Some(json!({"name": "stolen"})),
        ),
        (Method::DELETE, format!("/v1/members/{id}"), None),
        (Method::GET, format!("/v1/members/{id}/export"), None),
        (
            Method::POST,
            format!("/v1/members/{id}/tags"),
            Some(json!({"add": ["x"]})),
        ),
    ] {
        let reply = app.send(as_other(method.clone(), &path, body)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let list = app.send(as_other(Method::GET, "/v1/members", None)).await;
    assert_eq!(list.body["data"], json!([]));
    let search = app
        .send(as_other(Method::GET, "/v1/members?q=Mine", None))
        .await;
    assert_eq!(search.body["data"], json!([]));
    let export = app
        .send(as_other(Method::GET, "/v1/members/export", None))
        .await;
    assert_eq!(
        export.body,
        Value::String("external_id,name,phone,birthday,source,tags\n".into())
    );
    let events = app.send(as_other(Method::GET, "/v1/events", None)).await;
    assert!(
        !events.body.to_string().contains(&id),
        "other tenant's events never mention the member"
    );
    // The same external id is free in the other tenant.
    let theirs = app
        .send(as_other(
            Method::POST,
            "/v1/members",
            Some(json!({"external_id": "shared-ext"})),
        ))
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    let mine = app.get(&format!("/v1/members/{id}")).await;
    assert_eq!(mine.body["name"], "Mine", "untouched by the other tenant");
}

async fn malformed_json_and_unknown_fields_are_400(app: TestApp) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/members")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "application/json")
        .body(Body::from("{\"name\": "))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "invalid_request");
    for field in ["balance", "tenant_id", "id", "status"] {
        let reply = app
            .post("/v1/members", &json!({"name": "x", field: 1}))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(reply.body["error"]["details"]["field"], field);
        assert!(reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(field));
    }
    assert_eq!(app.get("/v1/members").await.body["data"], json!([]));
}

async fn oversize_bodies_are_413(app: TestApp) {
    let big = json!({"name": "x", "attributes": {"blob": "y".repeat(3 * 1024 * 1024)}});
    let reply = app.post("/v1/members", &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["error"]["code"], "payload_too_large");
    let with_key = app.post_idempotent("/v1/members", "big-1", &big).await;
    assert_eq!(with_key.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(with_key.body["error"]["code"], "payload_too_large");
}

async fn unknown_routes_and_methods_get_json_errors(app: TestApp) {
    let reply = app.get("/v1/nothing-here").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "not_found");
    let reply = app.call(Method::PUT, "/v1/members", Some(&json!({}))).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.body["error"]["code"], "method_not_allowed");
}

async fn events_are_numbered_per_tenant_in_order(app: TestApp) {
    let a = app.member("ev1").await;
    let b = app.member("ev2").await;
    app.patch(&format!("/v1/members/{a}"), &json!({"name": "A2"}))
        .await;
    let all = app.get("/v1/events").await;
    let data = all.body["data"].as_array().unwrap();
    let seqs: Vec<i64> = data.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "gapless from 1");
    let member_events: Vec<(&str, &str)> = data
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("member."))
        .map(|e| (e["type"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        member_events,
        [
            ("member.created", a.as_str()),
            ("member.created", b.as_str()),
            ("member.updated", a.as_str())
        ]
    );
    let after = seqs[seqs.len() - 2];
    let tail = app.get(&format!("/v1/events?after={after}&limit=10")).await;
    assert_eq!(tail.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(tail.body["next_after"], seqs[seqs.len() - 1]);
    assert_eq!(
        app.get("/v1/events?limit=5000").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The other tenant starts its own numbering at 1.
    let (_, other_key) = app.other_tenant().await;
    let theirs = app
        .send(build(
            Method::GET,
            "/v1/events",
            Some(&other_key),
            None,
            None,
        ))
        .await;
    assert_eq!(theirs.body["data"][0]["seq"], 1);
}

async fn openapi_covers_every_route_and_docs_work_offline(app: TestApp) {
    let doc = app
        .send(build(Method::GET, "/openapi.json", None, None, None))
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/members", "post"),
        ("/v1/members", "get"),
        ("/v1/members/{id}", "get"),
        ("/v1/members/{id}", "patch"),
        ("/v1/members/{id}", "delete"),
        ("/v1/members/{id}/tags", "post"),
        ("/v1/members/{id}/export", "get"),
        ("/v1/members/import", "post"),
        ("/v1/members/export", "get"),
        ("/v1/events", "get"),
        ("/v1/ledger/transfers", "post"),
        ("/v1/ledger/transfers/{id}", "get"),
        ("/v1/ledger/transfers/{id}/post", "post"),
        ("/v1/ledger/transfers/{id}/void", "post"),
        ("/v1/members/{id}/balances", "get"),
        ("/v1/members/{id}/transfers", "get"),
        ("/v1/ledger/accounts/{address}", "get"),
        ("/v1/ledger/verify", "get"),
        ("/v1/program/tiers", "put"),
        ("/v1/members/{id}/growth", "post"),
        ("/v1/orders/import", "post"),
        ("/v1/analytics/rfm", "get"),
        ("/v1/analytics/clv", "get"),
        ("/v1/members/{id}/analytics", "get"),
        ("/v1/flash-sales", "get"),
        ("/v1/group-buys", "get"),
        ("/v1/group-buys/{id}/teams", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} documented"
        );
    }
    let page = app
        .send(build(Method::GET, "/docs", None, None, None))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap();
    assert!(html.contains("/v1/members/{id}/export"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

async fn health_and_metrics_answer(app: TestApp) {
    let health = app
        .send(build(Method::GET, "/healthz", None, None, None))
        .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    app.get("/v1/members").await;
    // `/metrics` needs no key, so it is not on the API port: only on `--metrics-listen`.
    let public = app
        .send(build(Method::GET, "/metrics", None, None, None))
        .await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    let metrics = tower::ServiceExt::oneshot(
        shequn::ops::metrics_routes().with_state(app.state.clone()),
        build(Method::GET, "/metrics", None, None, None),
    )
    .await
    .expect("infallible");
    assert_eq!(metrics.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(metrics.into_body())
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/members\""));
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("db_pool_connections"));
}
