//! The edge of the API (issue 15, items 1, 6 and 9): text neither back end stores is refused
//! before any handler, every rejection is JSON, rate limits answer 429 with `Retry-After`,
//! slow or idle connections are closed, and the OpenAPI document names each body once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use shequn::common::rate_limit::{RateLimitConfig, RateLimits};
use shequn::server::{serve_connections, Timeouts};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::backend_tests;
use crate::support::{build, Reply, TestApp};

backend_tests!(
    nul_in_any_body_field_is_invalid_text,
    nul_in_query_and_path_parameters_is_invalid_text,
    query_and_path_rejections_are_json,
    a_key_over_its_limit_gets_429_with_retry_after,
    bad_key_floods_are_refused_but_a_valid_key_passes,
    zero_turns_every_limit_off,
    a_real_listener_limits_by_peer_and_closes_idle_connections,
    openapi_names_each_body_once_and_documents_401,
);

fn assert_error(reply: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(
        reply.headers["content-type"], "application/json",
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], code, "{:?}", reply.body);
    if let Some(field) = field {
        assert_eq!(
            reply.body["error"]["details"]["field"], field,
            "{:?}",
            reply.body
        );
    }
}

/// A raw JSON body (so that escapes reach the server exactly as written).
async fn post_raw(app: &TestApp, path: &str, body: &str) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    app.send(request).await
}

async fn nul_in_any_body_field_is_invalid_text(app: TestApp) {
    let member = post_raw(
        &app,
        "/v1/members",
        r#"{"external_id": "nul-1", "name": "a\u0000b"}"#,
    )
    .await;
    assert_error(
        &member,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_text",
        Some("name"),
    );
    // The issue's case: a ledger reference with NUL (it failed whole batches on PostgreSQL).
    let a = app.member("nul-a").await;
    let b = app.member("nul-b").await;
    let transfer = post_raw(
        &app,
        "/v1/ledger/transfers",
        &json!({"transfers": [{"from": format!("member:{a}"), "to": format!("member:{b}"),
            "asset": "points", "amount": 1, "code": "manual", "reference": "REF"}]})
        .to_string()
        .replace("REF", "a\\u0000b"),
    )
    .await;
    assert_error(
        &transfer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_text",
        Some("transfers[0].reference"),
    );
    let product = post_raw(
        &app,
        "/v1/products",
        r#"{"name": "\u0000", "sku": "S1", "price": 100, "stock": 1}"#,
    )
    .await;
    assert_error(
        &product,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_text",
        Some("name"),
    );
    // An escaped backslash followed by "u0000" is plain text, stored as sent.
    let plain = post_raw(
        &app,
        "/v1/members",
        r#"{"external_id": "nul-2", "name": "a\\u0000b"}"#,
    )
    .await;
    assert_eq!(plain.status, StatusCode::CREATED, "{:?}", plain.body);
    assert_eq!(plain.body["name"], "a\\u0000b");
}

async fn nul_in_query_and_path_parameters_is_invalid_text(app: TestApp) {
    for (path, field) in [
        ("/v1/members?q=a%00b", "q"),
        ("/v1/members?tag=%00", "tag"),
        ("/v1/events?type=x%00", "type"),
        ("/v1/members/mem_%00/balances", "id"),
        ("/v1/products/%00", "id"),
    ] {
        let reply = app.get(path).await;
        assert_error(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
            Some(field),
        );
    }
}

async fn query_and_path_rejections_are_json(app: TestApp) {
    assert_error(
        &app.get("/v1/members?limit=abc").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("limit"),
    );
    assert_error(
        &app.get("/v1/members?bogus=1").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("bogus"),
    );
    assert_error(
        &app.get("/v1/events?limit=1&limit=2").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
    );
    assert_error(
        &app.get("/v1/members/%FF%FE").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("id"),
    );
    let wrong_type = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/members")
                .header("authorization", format!("Bearer {}", app.key))
                .header("content-type", "text/plain")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await;
    assert_error(
        &wrong_type,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
    );
}

/// The app with these limits, and a way to send requests from a given client address.
struct Limited {
    router: axum::Router,
}

impl Limited {
    fn new(app: &TestApp, config: RateLimitConfig) -> Self {
        let mut state = app.state.clone();
        state.limits = Arc::new(RateLimits::new(&config));
        Limited {
            router: shequn::app(state),
        }
    }

    async fn get(&self, path: &str, key: Option<&str>, peer: [u8; 4]) -> Reply {
        let mut request = build(Method::GET, path, key, None, None);
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        let response = tower::ServiceExt::oneshot(self.router.clone(), request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

async fn a_key_over_its_limit_gets_429_with_retry_after(app: TestApp) {
    let (other_tenant, other_key) = app.other_tenant().await;
    let limited = Limited::new(
        &app,
        RateLimitConfig {
            per_key: 5,
            // The other tenant's keys get their own, higher rate.
            tenant_overrides: vec![(
                shequn::common::ids::TenantId::parse(&other_tenant).expect("tenant id"),
                50,
            )],
            ..RateLimitConfig::off()
        },
    );
    // Burst: twice the rate.
    for _ in 0..10 {
        let ok = limited
            .get("/v1/members", Some(&app.key), [127, 0, 0, 1])
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    }
    let refused = limited
        .get("/v1/members", Some(&app.key), [127, 0, 0, 1])
        .await;
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        None,
    );
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(refused.body["error"]["details"]["limit"], "per_key");
    // The override: 11 requests are well inside the other tenant's burst of 100.
    for _ in 0..11 {
        let ok = limited
            .get("/v1/members", Some(&other_key), [127, 0, 0, 1])
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    }
}

async fn bad_key_floods_are_refused_but_a_valid_key_passes(app: TestApp) {
    let limited = Limited::new(
        &app,
        RateLimitConfig {
            auth_failures_per_ip: 5,
            ..RateLimitConfig::off()
        },
    );
    let attacker = [10, 0, 0, 7];
    let bad_key = format!("sq_{}", "0".repeat(64));
    let mut counts = (0, 0);
    for i in 0..40 {
        let key = if i % 2 == 0 {
            Some(bad_key.as_str())
        } else {
            None
        };
        let reply = limited.get("/v1/members", key, attacker).await;
        match reply.status {
            StatusCode::UNAUTHORIZED => counts.0 += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(reply.headers.contains_key("retry-after"));
                assert_eq!(reply.body["error"]["code"], "rate_limited");
                counts.1 += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(counts, (5, 35), "(401, 429)");
    // A valid key from the same address is never refused for the address's failures.
    for _ in 0..5 {
        let ok = limited.get("/v1/members", Some(&app.key), attacker).await;
        assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    }
    // Another address still gets its own 401s.
    let elsewhere = limited
        .get("/v1/members", Some(&bad_key), [10, 0, 0, 8])
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
}

async fn zero_turns_every_limit_off(app: TestApp) {
    let limited = Limited::new(&app, RateLimitConfig::off());
    for _ in 0..200 {
        let reply = limited
            .get("/v1/members", Some("sq_wrong"), [10, 0, 0, 9])
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..300 {
        let reply = limited.get("/healthz", None, [10, 0, 0, 9]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // And a small per-IP limit does refuse.
    let per_ip = Limited::new(
        &app,
        RateLimitConfig {
            per_ip: 2,
            ..RateLimitConfig::off()
        },
    );
    let statuses: Vec<StatusCode> =
        futures::future::join_all((0..10).map(|_| per_ip.get("/healthz", None, [10, 0, 0, 10])))
            .await
            .into_iter()
            .map(|r| r.status)
            .collect();
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// One HTTP/1.1 request on a fresh connection; returns (status, raw response).
async fn raw_request(addr: SocketAddr, key: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /v1/members HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("response in time")
    .expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

async fn a_real_listener_limits_by_peer_and_closes_idle_connections(app: TestApp) {
    let mut state = app.state.clone();
    state.limits = Arc::new(RateLimits::new(&RateLimitConfig {
        auth_failures_per_ip: 3,
        ..RateLimitConfig::off()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_connections(
        listener,
        shequn::app(state),
        Timeouts {
            header_read: Duration::from_secs(1),
            body_idle: Duration::from_secs(1),
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(raw_request(addr, "sq_bad").await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let (_, limited) = raw_request(addr, "sq_bad").await;
    assert!(
        limited.to_ascii_lowercase().contains("retry-after:"),
        "{limited}"
    );
    assert_eq!(raw_request(addr, &app.key).await.0, 200);

    // A connection that sends nothing, and one that stops halfway through its headers, are
    // closed by the server (read returns end of file) rather than held open.
    for partial in ["", "GET /v1/members HTTP/1.1\r\nHost: te"] {
        let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
        idle.write_all(partial.as_bytes()).await.expect("write");
        let mut buffer = Vec::new();
        // End of file or a reset: either way the server let go.
        let _ = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut buffer))
            .await
            .expect("the server closes an idle connection");
    }
    // A body that stops arriving fails its request instead of holding the connection.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/members HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"external_id\"",
        app.key
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut response))
        .await
        .expect("the server gives up on a stalled body")
        .ok();
    let text = String::from_utf8_lossy(&response);
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(35), server)
        .await
        .expect("graceful shutdown ends")
        .expect("task")
        .expect("serve");
}

async fn openapi_names_each_body_once_and_documents_401(app: TestApp) {
    let doc = app
        .send(build(Method::GET, "/openapi.json", None, None, None))
        .await
        .body;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let body_of = |path: &str, method: &str| -> Value {
        let reference = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has a body by reference"))
            .rsplit('/')
            .next()
            .expect("name")
            .to_owned();
        schemas[&reference].clone()
    };
    let properties = |schema: &Value| -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    // Each operation documents its own body, not a namesake from another domain.
    let order_refund = properties(&body_of("/v1/orders/{id}/refunds", "post"));
    assert!(order_refund.contains("restock"), "{order_refund:?}");
    let wallet_refund = properties(&body_of("/v1/members/{id}/wallet/refunds", "post"));
    assert!(wallet_refund.contains("spend_id"), "{wallet_refund:?}");
    let referral_settings = properties(&body_of("/v1/referral-settings", "put"));
    assert!(
        referral_settings.contains("velocity_per_hour"),
        "{referral_settings:?}"
    );
    let stored_value = properties(&body_of("/v1/program/stored-value", "put"));
    assert!(stored_value.contains("spend_policy"), "{stored_value:?}");

    // Every /v1 operation documents 401 and 429; the page limit is in the schema.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().expect("item") {
            operations += 1;
            for status in ["401", "429"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
    assert!(operations > 50);
    let limit = doc["paths"]["/v1/members"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit parameter")
        .clone();
    assert_eq!(limit["schema"]["maximum"], 200, "{limit}");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
}
