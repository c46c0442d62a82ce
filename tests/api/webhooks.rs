//! Webhooks (issue 19, item 1) against a real HTTP receiver on loopback: signatures that
//! verify with the secret, retries with one `webhook-id`, 410 and five failing days disabling an
//! endpoint, a restart in the middle of retries, event-type filtering, tests, tenant isolation
//! and refused metadata addresses.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as AxumPath, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use jiff::SignedDuration;
use serde_json::{json, Value};
use sha2::Sha256;
use shequn::common::db::Db;
use shequn::engagement::webhooks::{run_due_deliveries, Config};
use shequn::AppState;

use crate::backend_tests;
use crate::support::{build, TestApp};

backend_tests!(
    webhooks_signed_filtered_deliveries_and_endpoint_api,
    webhooks_retry_with_one_id_across_a_restart_then_fail_and_retry_by_hand,
    webhooks_gone_and_five_failing_days_disable_the_endpoint,
    webhooks_tenants_never_see_each_others_endpoints_or_events,
    webhooks_metadata_addresses_are_refused,
    webhooks_two_nodes_attempt_each_delivery_once_and_a_dead_claim_expires,
);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Statuses to answer per path, in order; 200 once a path's list is empty.
    answers: Mutex<HashMap<String, VecDeque<u16>>>,
    /// Paths that always answer this status.
    always: Mutex<HashMap<String, u16>>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Receiver {
        async fn hook(
            AxumState(state): AxumState<Arc<ReceiverState>>,
            AxumPath(path): AxumPath<String>,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            state.got.lock().unwrap().push(Received {
                path: path.clone(),
                headers,
                body,
            });
            if let Some(status) = state.always.lock().unwrap().get(&path) {
                return StatusCode::from_u16(*status).unwrap();
            }
            let next = state
                .answers
                .lock()
                .unwrap()
                .get_mut(&path)
                .and_then(VecDeque::pop_front)
                .unwrap_or(200);
            StatusCode::from_u16(next).unwrap()
        }
        let state = Arc::new(ReceiverState::default());
        let router = axum::Router::new()
            .route("/{*path}", axum::routing::post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver {
            base: format!("http://{address}"),
            state,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn answer(&self, path: &str, statuses: &[u16]) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    fn always(&self, path: &str, status: u16) {
        self.state
            .always
            .lock()
            .unwrap()
            .insert(path.to_owned(), status);
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.state
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn types(&self, path: &str) -> Vec<String> {
        self.got(path)
            .iter()
            .map(|r| body_of(r)["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn body_of(received: &Received) -> Value {
    serde_json::from_str(&received.body).unwrap()
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received.headers.get(name).unwrap().to_str().unwrap()
}

/// Verify a request's Standard Webhooks signature with `secret`, computed here from scratch.
fn verifies(received: &Received, secret: &str) -> bool {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let signed = format!(
        "{}.{}.{}",
        header(received, "webhook-id"),
        header(received, "webhook-timestamp"),
        received.body
    );
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    header(received, "webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

async fn endpoint(app: &TestApp, url: &str, types: Value) -> (String, String) {
    let reply = app
        .post(
            "/v1/webhook-endpoints",
            &json!({"url": url, "event_types": types, "description": "test"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (
        reply.body["id"].as_str().unwrap().to_owned(),
        reply.body["secret"].as_str().unwrap().to_owned(),
    )
}

/// The app's state with a retry schedule of `secs`.
fn with_retry(state: &AppState, secs: &[u64]) -> AppState {
    let mut state = state.clone();
    state.webhooks = Arc::new(Config::new(
        secs.iter().copied().map(Duration::from_secs).collect(),
    ));
    state
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let reply = app
        .get(&format!(
            "/v1/webhook-endpoints/{endpoint}/deliveries?limit=200"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn webhooks_signed_filtered_deliveries_and_endpoint_api(app: TestApp) {
    let receiver = Receiver::start().await;
    let (members_only, secret) =
        endpoint(&app, &receiver.url("members"), json!(["member.created"])).await;
    assert!(members_only.starts_with("whe_"));
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert!(key.len() >= 24, "{secret}");
    let (everything, everything_secret) = endpoint(&app, &receiver.url("all"), json!(["*"])).await;
    assert_ne!(secret, everything_secret);

    // The secret is shown once.
    let one = app
        .get(&format!("/v1/webhook-endpoints/{members_only}"))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["status"], "enabled");
    assert_eq!(one.body["event_types"], json!(["member.created"]));
    assert!(one.body.get("secret").is_none(), "{}", one.body);
    let list = app.get("/v1/webhook-endpoints?limit=1").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let cursor = list.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!("/v1/webhook-endpoints?cursor={cursor}"))
        .await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    assert!(list.body["data"][0].get("secret").is_none());

    let alice = app.member("alice").await;
    let tags = app
        .post(
            &format!("/v1/members/{alice}/tags"),
            &json!({"add": ["vip"]}),
        )
        .await;
    let pass = run_due_deliveries(&app.state).await.unwrap();
    assert_eq!(pass.attempted, pass.succeeded, "{pass:?}");

    let got = receiver.got("members");
    assert_eq!(receiver.types("members"), ["member.created"]);
    let body = body_of(&got[0]);
    assert_eq!(body["data"]["member_id"], alice.as_str());
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(verifies(&got[0], &secret));
    assert!(
        !verifies(&got[0], &everything_secret),
        "another secret must not verify"
    );
    assert_eq!(header(&got[0], "content-type"), "application/json");
    let timestamp: i64 = header(&got[0], "webhook-timestamp").parse().unwrap();
    assert_eq!(timestamp, app.clock_now().as_second());
    // The wildcard endpoint got everything after it was made, in event order.
    let all = receiver.types("all");
    assert!(
        all.starts_with(&[
            "webhook_endpoint.created".to_owned(),
            "member.created".to_owned()
        ]),
        "{all:?}"
    );
    if tags.status.is_success() {
        assert!(all.contains(&"member.tagged".to_owned()), "{all:?}");
    }
    let ids: Vec<String> = receiver
        .got("all")
        .iter()
        .map(|r| header(r, "webhook-id").to_owned())
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "each event once: {ids:?}");
    for r in receiver.got("all") {
        assert!(verifies(&r, &everything_secret));
    }
    // Nothing twice: a second pass sends nothing.
    let again = run_due_deliveries(&app.state).await.unwrap();
    assert_eq!(again.attempted, 0, "{again:?}");
    assert_eq!(receiver.got("members").len(), 1);

    // The deliveries API shows the attempt.
    let list = deliveries(&app, &members_only).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "succeeded");
    assert_eq!(list[0]["webhook_id"], header(&got[0], "webhook-id"));
    assert_eq!(list[0]["attempts"][0]["status_code"], 200);
    assert!(list[0]["attempts"][0]["duration_ms"].as_i64().unwrap() >= 0);
    let failed = app
        .get(&format!(
            "/v1/webhook-endpoints/{members_only}/deliveries?status=failed"
        ))
        .await;
    assert_eq!(failed.body["data"], json!([]));

    // PATCH the types: now tags too; disabled endpoints get nothing until enabled again.
    let patched = app
        .patch(
            &format!("/v1/webhook-endpoints/{members_only}"),
            &json!({"event_types": ["member.created", "member.updated"], "status": "disabled"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["status"], "disabled");
    assert_eq!(patched.body["disabled_reason"], "operator");
    let bob = app.member("bob").await;
    run_due_deliveries(&app.state).await.unwrap();
    assert_eq!(receiver.got("members").len(), 1);
    let test_disabled = app
        .post(
            &format!("/v1/webhook-endpoints/{members_only}/test"),
            &json!({}),
        )
        .await;
    assert_eq!(test_disabled.status, StatusCode::CONFLICT);
    assert_eq!(test_disabled.body["error"]["code"], "endpoint_disabled");
    let enabled = app
        .patch(
            &format!("/v1/webhook-endpoints/{members_only}"),
            &json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(enabled.body["status"], "enabled");
    assert_eq!(enabled.body["disabled_reason"], Value::Null);
    run_due_deliveries(&app.state).await.unwrap();
    let got = receiver.got("members");
    assert_eq!(
        got.len(),
        2,
        "the event of the disabled time is delivered after enabling"
    );
    assert_eq!(body_of(&got[1])["data"]["member_id"], bob.as_str());

    // Rotation: a new secret that signs from now on.
    let rotated = app
        .post(
            &format!("/v1/webhook-endpoints/{members_only}/rotate-secret"),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    app.member("carol").await;
    run_due_deliveries(&app.state).await.unwrap();
    let got = receiver.got("members");
    assert_eq!(got.len(), 3);
    assert!(verifies(&got[2], &new_secret));
    // For a day the old secret signs too (two signatures in the header), then no more.
    assert!(verifies(&got[2], &secret));
    assert_eq!(header(&got[2], "webhook-signature").split(' ').count(), 2);
    app.clock.advance(SignedDuration::from_hours(25));
    app.member("carl").await;
    run_due_deliveries(&app.state).await.unwrap();
    let got = receiver.got("members");
    assert_eq!(got.len(), 4);
    assert!(verifies(&got[3], &new_secret));
    assert!(!verifies(&got[3], &secret));
    assert_eq!(header(&got[3], "webhook-signature").split(' ').count(), 1);

    // A test goes to that endpoint only, whatever its types.
    let all_before = receiver.got("all").len();
    let test = app
        .post(
            &format!("/v1/webhook-endpoints/{members_only}/test"),
            &json!({}),
        )
        .await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{}", test.body);
    run_due_deliveries(&app.state).await.unwrap();
    let got = receiver.got("members");
    assert_eq!(got.len(), 5);
    assert_eq!(body_of(&got[4])["type"], "webhook.test");
    assert_eq!(body_of(&got[4])["data"]["test_id"], test.body["test_id"]);
    let all_types: Vec<String> = receiver.types("all")[all_before..].to_vec();
    assert!(
        !all_types.contains(&"webhook.test".to_owned()),
        "{all_types:?}"
    );

    // Bad input.
    for (body, status, code) in [
        (
            json!({"url": receiver.url("x"), "event_types": []}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": receiver.url("x"), "event_types": ["no.such_type"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "ftp://example.com/", "event_types": ["*"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "not a url", "event_types": ["*"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": receiver.url("x"), "event_types": ["*"], "secret": "mine"}),
            400,
            "invalid_request",
        ),
        (json!({"event_types": ["*"]}), 400, "invalid_request"),
    ] {
        let reply = app.post("/v1/webhook-endpoints", &body).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], code, "{body}: {}", reply.body);
    }
    let bad_status = app
        .patch(
            &format!("/v1/webhook-endpoints/{members_only}"),
            &json!({"status": "paused"}),
        )
        .await;
    assert!(bad_status.status.is_client_error(), "{}", bad_status.body);
    let bad_limit = app
        .get(&format!(
            "/v1/webhook-endpoints/{members_only}/deliveries?limit=0"
        ))
        .await;
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Delete: gone with its deliveries.
    let deleted = app
        .delete(&format!("/v1/webhook-endpoints/{everything}"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/webhook-endpoints/{everything}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v1/webhook-endpoints/{everything}/deliveries"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let events = app.get("/v1/events?type=webhook_endpoint.deleted").await;
    assert_eq!(
        events.body["data"][0]["data"]["endpoint_id"],
        everything.as_str()
    );
}

async fn webhooks_retry_with_one_id_across_a_restart_then_fail_and_retry_by_hand(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer("flaky", &[500, 500]);
    let (flaky, secret) = endpoint(&app, &receiver.url("flaky"), json!(["member.created"])).await;
    let node = with_retry(&app.state, &[10, 10, 10]);
    let member = app.member("dora").await;

    let first = run_due_deliveries(&node).await.unwrap();
    assert_eq!((first.attempted, first.failed), (1, 1), "{first:?}");
    let list = deliveries(&app, &flaky).await;
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["attempts"][0]["status_code"], 500);
    assert_eq!(list[0]["attempts"][0]["error"], "HTTP 500");
    // Not due before its retry time.
    app.clock.advance(SignedDuration::from_secs(5));
    assert_eq!(run_due_deliveries(&node).await.unwrap().attempted, 0);

    // A restart: a new node on the same database (new pools, new state) carries on.
    drop(node);
    let db = Db::connect(&app.database_url).await.unwrap();
    let restarted = with_retry(
        &AppState::new(db, Arc::new(app.clock.clone())),
        &[10, 10, 10],
    );
    app.clock.advance(SignedDuration::from_secs(7));
    let second = run_due_deliveries(&restarted).await.unwrap();
    assert_eq!((second.attempted, second.failed), (1, 1), "{second:?}");
    app.clock.advance(SignedDuration::from_secs(12));
    let third = run_due_deliveries(&restarted).await.unwrap();
    assert_eq!((third.attempted, third.succeeded), (1, 1), "{third:?}");

    let got = receiver.got("flaky");
    assert_eq!(got.len(), 3);
    let id = header(&got[0], "webhook-id");
    assert!(got.iter().all(|r| header(r, "webhook-id") == id));
    assert!(got.iter().all(|r| verifies(r, &secret)));
    assert!(got
        .iter()
        .all(|r| body_of(r)["data"]["member_id"] == member.as_str()));
    assert_ne!(
        header(&got[0], "webhook-timestamp"),
        header(&got[2], "webhook-timestamp")
    );
    let list = deliveries(&app, &flaky).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "succeeded");
    let codes: Vec<i64> = list[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);

    // A receiver that never answers 2xx: 1 + 1 attempts with a one-step schedule, then failed.
    receiver.always("down", 503);
    let (down, _) = endpoint(&app, &receiver.url("down"), json!(["member.created"])).await;
    let one_step = with_retry(&app.state, &[10]);
    app.member("erin").await;
    run_due_deliveries(&one_step).await.unwrap();
    app.clock.advance(SignedDuration::from_secs(20));
    run_due_deliveries(&one_step).await.unwrap();
    app.clock.advance(SignedDuration::from_secs(20));
    assert_eq!(run_due_deliveries(&one_step).await.unwrap().attempted, 0);
    assert_eq!(receiver.got("down").len(), 2);
    let list = deliveries(&app, &down).await;
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["attempts"].as_array().unwrap().len(), 2);
    let failed = app
        .get(&format!(
            "/v1/webhook-endpoints/{down}/deliveries?status=failed"
        ))
        .await;
    assert_eq!(failed.body["data"].as_array().unwrap().len(), 1);

    // Retry by hand: attempted again now, same webhook-id.
    receiver.always("down", 204);
    let delivery_id = list[0]["id"].as_str().unwrap();
    let retried = app
        .post(
            &format!("/v1/webhook-endpoints/{down}/deliveries/{delivery_id}/retry"),
            &json!({}),
        )
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    assert_eq!(retried.body["status"], "pending");
    run_due_deliveries(&one_step).await.unwrap();
    let got = receiver.got("down");
    assert_eq!(got.len(), 3);
    assert_eq!(header(&got[0], "webhook-id"), header(&got[2], "webhook-id"));
    assert_eq!(deliveries(&app, &down).await[0]["status"], "succeeded");
    // A delivery id of another endpoint is not found under this one.
    let other_delivery = deliveries(&app, &flaky).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = app
        .post(
            &format!("/v1/webhook-endpoints/{down}/deliveries/{other_delivery}/retry"),
            &json!({}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
}

async fn webhooks_gone_and_five_failing_days_disable_the_endpoint(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.always("gone", 410);
    let (gone, _) = endpoint(&app, &receiver.url("gone"), json!(["member.created"])).await;
    app.member("frank").await;
    run_due_deliveries(&app.state).await.unwrap();
    let reply = app.get(&format!("/v1/webhook-endpoints/{gone}")).await;
    assert_eq!(reply.body["status"], "disabled");
    assert_eq!(reply.body["disabled_reason"], "gone");
    app.member("grace").await;
    run_due_deliveries(&app.state).await.unwrap();
    assert_eq!(receiver.got("gone").len(), 1, "nothing after 410");
    let events = app.get("/v1/events?type=webhook_endpoint.disabled").await;
    assert_eq!(
        events.body["data"][0]["data"],
        json!({"endpoint_id": gone, "reason": "gone"})
    );

    // Failing for five days in a row (one failure a day).
    receiver.always("broken", 500);
    let (broken, _) = endpoint(&app, &receiver.url("broken"), json!(["member.created"])).await;
    let daily = with_retry(&app.state, &[86_400; 10]);
    app.member("heidi").await;
    let mut attempts = 0;
    for _ in 0..8 {
        attempts += run_due_deliveries(&daily).await.unwrap().attempted;
        if app
            .get(&format!("/v1/webhook-endpoints/{broken}"))
            .await
            .body["status"]
            == "disabled"
        {
            break;
        }
        app.clock.advance(SignedDuration::from_hours(27));
    }
    let reply = app.get(&format!("/v1/webhook-endpoints/{broken}")).await;
    assert_eq!(
        reply.body["status"], "disabled",
        "after {attempts} attempts"
    );
    assert_eq!(reply.body["disabled_reason"], "failing");
    assert!((5..=7).contains(&attempts), "{attempts}");
    let events = app.get("/v1/events?type=webhook_endpoint.disabled").await;
    assert_eq!(
        events.body["data"][1]["data"],
        json!({"endpoint_id": broken, "reason": "failing"})
    );

    // A success ends a failing run: an endpoint failing 4 days, then answering, stays enabled.
    receiver.answer("recovers", &[500, 500, 500, 500]);
    let (recovers, _) = endpoint(&app, &receiver.url("recovers"), json!(["member.created"])).await;
    app.member("ivan").await;
    for _ in 0..5 {
        run_due_deliveries(&daily).await.unwrap();
        app.clock.advance(SignedDuration::from_hours(27));
    }
    let reply = app.get(&format!("/v1/webhook-endpoints/{recovers}")).await;
    assert_eq!(reply.body["status"], "enabled");
    assert_eq!(deliveries(&app, &recovers).await[0]["status"], "succeeded");
}

async fn webhooks_tenants_never_see_each_others_endpoints_or_events(app: TestApp) {
    let receiver = Receiver::start().await;
    let (ours, _) = endpoint(&app, &receiver.url("ours"), json!(["*"])).await;
    let (_, other_key) = app.other_tenant().await;
    let as_other = |method: Method, path: String, body: Option<Value>| {
        build(method, &path, Some(&other_key), body.as_ref(), None)
    };
    let theirs = app
        .send(as_other(
            Method::POST,
            "/v1/webhook-endpoints".into(),
            Some(json!({"url": receiver.url("theirs"), "event_types": ["*"]})),
        ))
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let theirs_id = theirs.body["id"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        (Method::GET, format!("/v1/webhook-endpoints/{ours}"), None),
        (
            Method::PATCH,
            format!("/v1/webhook-endpoints/{ours}"),
            Some(json!({"status": "disabled"})),
        ),
        (
            Method::DELETE,
            format!("/v1/webhook-endpoints/{ours}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{ours}/rotate-secret"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{ours}/test"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/v1/webhook-endpoints/{ours}/deliveries"),
            None,
        ),
    ] {
        let reply = app.send(as_other(method, path.clone(), body)).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    let listed = app
        .send(as_other(Method::GET, "/v1/webhook-endpoints".into(), None))
        .await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [theirs_id.as_str()]);

    let mine = app.member("judy").await;
    let other_member = app
        .send(as_other(
            Method::POST,
            "/v1/members".into(),
            Some(json!({"external_id": "mallory", "name": "mallory"})),
        ))
        .await;
    assert_eq!(other_member.status, StatusCode::CREATED);
    let other_member = other_member.body["id"].as_str().unwrap().to_owned();
    run_due_deliveries(&app.state).await.unwrap();
    let our_bodies: Vec<Value> = receiver.got("ours").iter().map(body_of).collect();
    let their_bodies: Vec<Value> = receiver.got("theirs").iter().map(body_of).collect();
    assert!(our_bodies
        .iter()
        .any(|b| b["data"]["member_id"] == mine.as_str()));
    assert!(their_bodies
        .iter()
        .any(|b| b["data"]["member_id"] == other_member.as_str()));
    assert!(
        our_bodies
            .iter()
            .all(|b| b["data"]["member_id"] != other_member.as_str()),
        "{our_bodies:?}"
    );
    assert!(
        their_bodies
            .iter()
            .all(|b| b["data"]["member_id"] != mine.as_str()),
        "{their_bodies:?}"
    );
    let our_ids: Vec<String> = receiver
        .got("ours")
        .iter()
        .map(|r| header(r, "webhook-id").to_owned())
        .collect();
    assert!(receiver
        .got("theirs")
        .iter()
        .all(|r| !our_ids.contains(&header(r, "webhook-id").to_owned())));
}

async fn webhooks_metadata_addresses_are_refused(app: TestApp) {
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let reply = app
            .post(
                "/v1/webhook-endpoints",
                &json!({"url": url, "event_types": ["*"]}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "unsafe_url", "{url}");
    }
    assert_eq!(
        app.get("/v1/webhook-endpoints").await.body["data"],
        json!([])
    );
    let receiver = Receiver::start().await;
    let (id, _) = endpoint(&app, &receiver.url("ok"), json!(["member.created"])).await;
    let patched = app
        .patch(
            &format!("/v1/webhook-endpoints/{id}"),
            &json!({"url": "http://169.254.169.254/"}),
        )
        .await;
    assert_eq!(patched.body["error"]["code"], "unsafe_url");
    // At connection time too: a row pointing there (written behind the API's back) is never
    // called; the attempt records why.
    sqlx::query("UPDATE webhook_endpoint SET url = 'http://169.254.169.254/latest' WHERE id = $1")
        .bind(&id)
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();
    app.member("kim").await;
    let pass = run_due_deliveries(&app.state).await.unwrap();
    assert_eq!((pass.attempted, pass.failed), (1, 1));
    let list = deliveries(&app, &id).await;
    assert_eq!(list[0]["attempts"][0]["status_code"], Value::Null);
    assert!(
        list[0]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{}",
        list[0]
    );
    assert!(receiver.got("ok").is_empty());
    // Loopback names resolve and pass the connection check.
    assert!(
        shequn::engagement::webhooks::safety::resolve_safely("localhost")
            .await
            .is_ok()
    );
}

async fn webhooks_two_nodes_attempt_each_delivery_once_and_a_dead_claim_expires(app: TestApp) {
    let receiver = Receiver::start().await;
    let (id, _) = endpoint(&app, &receiver.url("shared"), json!(["member.created"])).await;
    let (id2, _) = endpoint(&app, &receiver.url("second"), json!(["member.created"])).await;
    for i in 0..40 {
        app.member(&format!("m{i}")).await;
    }
    // Two nodes on the same database, each with its own pools, passing at the same time.
    let other_db = Db::connect(&app.database_url).await.unwrap();
    let other = AppState::new(other_db, Arc::new(app.clock.clone()));
    let (a, b) = tokio::join!(run_due_deliveries(&app.state), run_due_deliveries(&other));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.created + b.created, 80, "{a:?} {b:?}");
    assert_eq!(a.attempted + b.attempted, 80, "{a:?} {b:?}");
    for path in ["shared", "second"] {
        let ids: Vec<String> = receiver
            .got(path)
            .iter()
            .map(|r| header(r, "webhook-id").to_owned())
            .collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (40, 40), "{path}");
        // Each endpoint's events arrive in event order when nothing failed.
        let seqs: Vec<i64> = ids
            .iter()
            .map(|id| id.rsplit('_').next().unwrap().parse().unwrap())
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "{path}");
    }
    assert_eq!(deliveries(&app, &id).await.len(), 40);
    assert_eq!(deliveries(&app, &id2).await.len(), 40);

    // A node that claimed a delivery and died: nobody attempts it until the claim expires, then
    // another node does.
    app.member("late").await;
    run_due_deliveries(&app.state).await.ok();
    let before = receiver.got("shared").len();
    assert_eq!(before, 41);
    let now = shequn::common::time::to_micros(app.clock_now());
    sqlx::query(
        "UPDATE webhook_delivery SET status = 'pending', claim = 'dead-node', locked_until = $1, \
         next_attempt_at = $2 WHERE endpoint_id = $3 AND event_seq = \
         (SELECT MAX(event_seq) FROM webhook_delivery WHERE endpoint_id = $3)",
    )
    .bind(now + 60_000_000)
    .bind(now)
    .bind(&id)
    .execute(&mut *app.state.db.write_conn().await.unwrap())
    .await
    .unwrap();
    assert_eq!(run_due_deliveries(&other).await.unwrap().attempted, 0);
    app.clock.advance(SignedDuration::from_secs(61));
    assert_eq!(run_due_deliveries(&other).await.unwrap().attempted, 1);
    let got = receiver.got("shared");
    assert_eq!(got.len(), 42);
    assert_eq!(
        header(&got[40], "webhook-id"),
        header(&got[41], "webhook-id")
    );
}
