//! `Idempotency-Key`: replay, mismatch, concurrent duplicates.

use axum::http::StatusCode;
use serde_json::json;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    same_key_and_body_replays_the_first_response,
    same_key_with_another_body_is_422,
    thirty_concurrent_duplicates_create_one_member,
    keys_are_scoped_per_tenant,
    client_errors_are_replayed_too,
);

async fn same_key_and_body_replays_the_first_response(app: TestApp) {
    let body = json!({"external_id": "idem-1", "name": "A"});
    let first = app.post_idempotent("/v1/members", "k-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.post_idempotent("/v1/members", "k-1", &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    let list = app.get("/v1/members").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
}

async fn same_key_with_another_body_is_422(app: TestApp) {
    app.post_idempotent("/v1/members", "k-2", &json!({"external_id": "a"}))
        .await;
    let reply = app
        .post_idempotent("/v1/members", "k-2", &json!({"external_id": "b"}))
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["code"], "idempotency_key_reused");
    let list = app.get("/v1/members").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
}

async fn thirty_concurrent_duplicates_create_one_member(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let body = json!({"external_id": "race", "name": "Racer"});
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let app = app.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            app.post_idempotent("/v1/members", "race-key", &body).await
        }));
    }
    let mut created_ids = std::collections::HashSet::new();
    let mut in_progress = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => {
                created_ids.insert(reply.body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(reply.body["error"]["code"], "idempotency_key_in_progress");
                in_progress += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(created_ids.len(), 1, "every 201 is the same member");
    assert!(in_progress < 30);
    let list = app.get("/v1/members").await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        1,
        "one member exists"
    );
    let events = app.get("/v1/events?type=member.created").await;
    assert_eq!(
        events.body["data"].as_array().unwrap().len(),
        1,
        "one event"
    );
}

async fn keys_are_scoped_per_tenant(app: TestApp) {
    let first = app
        .post_idempotent("/v1/members", "shared", &json!({"name": "mine"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let (_, other_key) = app.other_tenant().await;
    let request = crate::support::build(
        axum::http::Method::POST,
        "/v1/members",
        Some(&other_key),
        Some(&json!({"name": "theirs"})),
        Some("shared"),
    );
    let theirs = app.send(request).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["id"], first.body["id"]);
}

async fn client_errors_are_replayed_too(app: TestApp) {
    let bad = json!({"phone": "nope"});
    let first = app.post_idempotent("/v1/members", "bad-1", &bad).await;
    assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
    let again = app.post_idempotent("/v1/members", "bad-1", &bad).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.body, first.body);
}
