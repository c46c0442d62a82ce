//! The event stream export to NATS JetStream, against the local NATS server
//! (`SHEQUN_TEST_NATS_URL`; `.ci/run` starts it). Each test exports to a stream and subject
//! prefix of its own so that runs and tests never see each other's messages, and drives the
//! exporter pass by pass with `export_once`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use shequn::engagement::export::{message_id, ExportConfig, Exporter, LEASE};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::{build, TestApp};

/// Like `backend_tests!`, and ignored as well when the suite was built without
/// `SHEQUN_TEST_NATS_URL`.
macro_rules! nats_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    shequn_no_nats,
                    ignore = "SHEQUN_TEST_NATS_URL not set: NATS test skipped"
                )]
                async fn sqlite() {
                    let app = $crate::support::TestApp::new($crate::support::Backend::Sqlite).await;
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    any(shequn_no_postgres, shequn_no_nats),
                    ignore = "SHEQUN_TEST_POSTGRES_URL or SHEQUN_TEST_NATS_URL not set: test skipped"
                )]
                async fn postgres() {
                    let app =
                        $crate::support::TestApp::new($crate::support::Backend::Postgres).await;
                    super::$name(app).await;
                }
            }
        )*
    };
}

nats_tests!(
    exports_every_event_with_subject_payload_and_id,
    republish_after_cursor_reset_is_deduplicated,
    events_written_while_nats_is_unreachable_are_exported_later,
    events_written_during_a_connection_cut_are_exported_once,
    subjects_and_ids_keep_tenants_apart,
    one_node_exports_a_tenant_at_a_time,
    a_refused_publish_keeps_the_cursor_and_the_stream_is_made_again,
    the_serve_loop_exports_events_as_they_are_written,
);

#[test]
fn serve_refuses_a_nats_url_that_is_not_one() {
    let (code, _, stderr) = crate::support::shequn(
        "sqlite::memory:",
        &["serve", "--nats-url", "http://127.0.0.1:4222"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a NATS server address"), "{stderr}");
}

/// The NATS server of the tests. Set means it must be reachable: a test never passes by
/// skipping its server.
fn nats_url() -> String {
    std::env::var("SHEQUN_TEST_NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!("a NATS test ran but SHEQUN_TEST_NATS_URL is not set; set it to run it")
        })
}

/// A stream and subject prefix of this test's own; messages expire after an hour in case the
/// test dies before deleting its stream. The timeout of JetStream's answers (acks, stream
/// look-ups) is generous: the suite shares two cores and the disk with the NATS server and
/// PostgreSQL, and one CI run failed once in a PostgreSQL variant with two seconds here (the
/// failure's message was lost; 14 loaded repeats here did not fail again, so a slow answer is
/// the likeliest cause, not a proven one).
fn test_config(node: &str) -> ExportConfig {
    let run = uuid::Uuid::new_v4().simple().to_string();
    ExportConfig {
        stream: format!("SHEQUN_TEST_{}", run.to_uppercase()),
        subject_prefix: format!("shequntest_{run}"),
        ack_timeout: Duration::from_secs(15),
        max_age: Duration::from_secs(3600),
        node: node.to_owned(),
        ..ExportConfig::default()
    }
}

/// An exporter connected to the test server (the connection must succeed).
async fn exporter(config: ExportConfig) -> Exporter {
    let client = async_nats::connect(nats_url())
        .await
        .expect("SHEQUN_TEST_NATS_URL is set but NATS is unreachable");
    Exporter::new(client, config)
}

/// Every message of the exporter's stream, in stream order.
async fn messages(exporter: &Exporter) -> Vec<StreamMessage> {
    let mut stream = exporter
        .jetstream()
        .get_stream(&exporter.config().stream)
        .await
        .expect("stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        out.push(stream.get_raw_message(seq).await.expect("message"));
    }
    assert_eq!(out.len() as u64, state.messages, "no gaps in the stream");
    out
}

async fn delete_stream(exporter: &Exporter) {
    let _ = exporter
        .jetstream()
        .delete_stream(&exporter.config().stream)
        .await;
}

fn header(message: &StreamMessage, name: &str) -> String {
    message
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} on {}", message.subject))
        .as_str()
        .to_owned()
}

fn body(message: &StreamMessage) -> Value {
    serde_json::from_slice(&message.payload).expect("JSON body")
}

/// Every event of the tenant whose key is `key`, as `GET /v1/events` lists them.
async fn events(app: &TestApp, key: &str) -> Vec<Value> {
    let reply = app
        .send(build(
            Method::GET,
            "/v1/events?limit=1000",
            Some(key),
            None,
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["data"].as_array().expect("events").clone()
}

/// Create `n` members in the tenant whose key is `key`.
async fn members(app: &TestApp, key: &str, tag: &str, n: usize) {
    for i in 0..n {
        let body = json!({ "external_id": format!("{tag}-{i}"), "name": format!("{tag} {i}") });
        let reply = app
            .send(build(
                Method::POST,
                "/v1/members",
                Some(key),
                Some(&body),
                None,
            ))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
}

/// The export cursor of a tenant on the exporter's stream (None: no row yet).
async fn cursor(app: &TestApp, exporter: &Exporter, tenant_id: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT last_seq FROM event_export WHERE tenant_id = $1 AND stream = $2")
        .bind(tenant_id)
        .bind(&exporter.config().stream)
        .fetch_optional(app.state.db.read())
        .await
        .expect("cursor")
}

/// The message ids in the stream, checking that none repeats.
fn ids(messages: &[StreamMessage]) -> BTreeSet<String> {
    let ids: BTreeSet<String> = messages.iter().map(|m| header(m, "Nats-Msg-Id")).collect();
    assert_eq!(ids.len(), messages.len(), "a message id appears twice");
    ids
}

/// The ids of seq 1..=last of a tenant.
fn expected_ids(tenant_id: &str, last: i64) -> BTreeSet<String> {
    (1..=last).map(|seq| message_id(tenant_id, seq)).collect()
}

async fn exports_every_event_with_subject_payload_and_id(app: TestApp) {
    let exporter = exporter(test_config("node-a")).await;
    members(&app, &app.key, "m", 4).await;
    let events = events(&app, &app.key).await;
    assert!(events.len() >= 5, "tenant.created and four member.created");

    let pass = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!(pass.published, events.len() as u64);
    assert_eq!(pass.duplicates, 0);

    let messages = messages(&exporter).await;
    assert_eq!(messages.len(), events.len());
    let prefix = &exporter.config().subject_prefix;
    for (message, event) in messages.iter().zip(&events) {
        let seq = event["seq"].as_i64().expect("seq");
        let kind = event["type"].as_str().expect("type");
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}.{}.{kind}", app.tenant_id)
        );
        let id = message_id(&app.tenant_id, seq);
        assert_eq!(header(message, "Nats-Msg-Id"), id);
        assert_eq!(
            body(message),
            json!({
                "id": id,
                "tenant_id": app.tenant_id,
                "seq": seq,
                "type": kind,
                "subject": event["subject"],
                "at": event["at"],
                "data": event["data"],
            })
        );
    }
    let kinds: Vec<String> = messages
        .iter()
        .map(|m| body(m)["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(kinds.iter().any(|k| k == "member.created"), "{kinds:?}");
    let last = events.last().and_then(|e| e["seq"].as_i64());
    assert_eq!(cursor(&app, &exporter, &app.tenant_id).await, last);

    // Caught up: the next pass publishes nothing; new events follow.
    let pass = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!(pass.published, 0);
    members(&app, &app.key, "n", 1).await;
    let pass = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert!(pass.published >= 1);
    let all = self::events(&app, &app.key).await;
    let head = all.last().and_then(|e| e["seq"].as_i64()).expect("head");
    assert_eq!(
        ids(&self::messages(&exporter).await),
        expected_ids(&app.tenant_id, head)
    );
    delete_stream(&exporter).await;
}

async fn republish_after_cursor_reset_is_deduplicated(app: TestApp) {
    let exporter = exporter(test_config("node-a")).await;
    members(&app, &app.key, "m", 3).await;
    let first = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    let count = messages(&exporter).await.len();
    assert_eq!(count as u64, first.published);

    // A crash between the publish acks and the cursor write: the cursor is where it was.
    sqlx::query("UPDATE event_export SET last_seq = 0")
        .execute(&mut *app.state.db.write_conn().await.expect("conn"))
        .await
        .expect("reset");
    let again = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!(
        again.published, first.published,
        "everything published again"
    );
    assert_eq!(
        again.duplicates, first.published,
        "and recognised as duplicates"
    );
    assert_eq!(messages(&exporter).await.len(), count, "stream unchanged");

    // A reset to the middle with new events behind it: only the new ones are added.
    members(&app, &app.key, "n", 2).await;
    sqlx::query("UPDATE event_export SET last_seq = 2")
        .execute(&mut *app.state.db.write_conn().await.expect("conn"))
        .await
        .expect("reset");
    let third = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!(third.duplicates, count as u64 - 2);
    let head = events(&app, &app.key)
        .await
        .last()
        .and_then(|e| e["seq"].as_i64())
        .expect("head");
    assert_eq!(third.published, head as u64 - 2);
    let messages = messages(&exporter).await;
    assert_eq!(messages.len() as i64, head);
    assert_eq!(ids(&messages), expected_ids(&app.tenant_id, head));
    assert_eq!(cursor(&app, &exporter, &app.tenant_id).await, Some(head));
    delete_stream(&exporter).await;
}

/// A port on which nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn events_written_while_nats_is_unreachable_are_exported_later(app: TestApp) {
    let config = test_config("node-a");
    let port = closed_port().await;
    let down = Exporter::connect(&format!("nats://127.0.0.1:{port}"), config.clone())
        .await
        .expect("the client starts without its server");
    members(&app, &app.key, "m", 3).await;
    for _ in 0..2 {
        let failed = down.export_once(&app.state.db, app.clock_now()).await;
        assert!(failed.is_err(), "{failed:?}");
    }
    assert_eq!(cursor(&app, &down, &app.tenant_id).await, None);
    members(&app, &app.key, "n", 2).await;

    let up = exporter(config).await;
    let pass = up
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    let head = events(&app, &app.key)
        .await
        .last()
        .and_then(|e| e["seq"].as_i64())
        .expect("head");
    assert_eq!(pass.published, head as u64);
    let messages = messages(&up).await;
    assert_eq!(ids(&messages), expected_ids(&app.tenant_id, head));
    let seqs: Vec<i64> = messages
        .iter()
        .map(|m| body(m)["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "in outbox order");
    assert_eq!(cursor(&app, &up, &app.tenant_id).await, Some(head));
    delete_stream(&up).await;
}

/// A TCP relay to the NATS server that the test can cut and restore on the same port.
struct Relay {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let relay = Relay {
            port,
            upstream,
            tasks: Arc::default(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let upstream = self.upstream.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let copy = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("tasks").push(copy);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Close the port and every relayed connection.
    fn cut(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.serve(listener.expect("the relay's port again"));
    }
}

async fn events_written_during_a_connection_cut_are_exported_once(app: TestApp) {
    let url = nats_url();
    let upstream = url
        .trim_start_matches("nats://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let relay = Relay::start(upstream).await;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(format!("nats://127.0.0.1:{}", relay.port))
        .await
        .expect("client");
    for _ in 0..100 {
        if client.connection_state() == async_nats::connection::State::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exporter = Exporter::new(client.clone(), test_config("node-a"));
    members(&app, &app.key, "m", 2).await;
    let pass = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    let before = cursor(&app, &exporter, &app.tenant_id)
        .await
        .expect("cursor");
    assert_eq!(pass.published, before as u64);

    relay.cut();
    members(&app, &app.key, "n", 3).await;
    let failed = exporter.export_once(&app.state.db, app.clock_now()).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        cursor(&app, &exporter, &app.tenant_id).await,
        Some(before),
        "no ack, no progress"
    );

    relay.restore().await;
    let mut exported = None;
    for _ in 0..200 {
        if client.connection_state() == async_nats::connection::State::Connected {
            if let Ok(pass) = exporter.export_once(&app.state.db, app.clock_now()).await {
                exported = Some(pass);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exported.expect("the export resumes once NATS is back");
    let head = events(&app, &app.key)
        .await
        .last()
        .and_then(|e| e["seq"].as_i64())
        .expect("head");
    assert!(head > before);
    let messages = messages(&exporter).await;
    assert_eq!(
        ids(&messages),
        expected_ids(&app.tenant_id, head),
        "every event exactly once"
    );
    assert_eq!(cursor(&app, &exporter, &app.tenant_id).await, Some(head));
    relay.cut();
    delete_stream(&self::exporter(exporter.config().clone()).await).await;
}

async fn subjects_and_ids_keep_tenants_apart(app: TestApp) {
    let exporter = exporter(test_config("node-a")).await;
    let (other_id, other_key) = app.other_tenant().await;
    members(&app, &app.key, "mine", 3).await;
    members(&app, &other_key, "theirs", 2).await;
    let mine = events(&app, &app.key).await;
    let theirs = events(&app, &other_key).await;

    let pass = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!(pass.published, (mine.len() + theirs.len()) as u64);
    // Both tenants number from 1: the ids differ by tenant, so neither is taken for the
    // other's duplicate.
    assert_eq!(pass.duplicates, 0);
    let messages = messages(&exporter).await;
    assert_eq!(messages.len(), mine.len() + theirs.len());
    let prefix = &exporter.config().subject_prefix;
    for (tenant_id, events) in [(&app.tenant_id, &mine), (&other_id, &theirs)] {
        let own: Vec<&StreamMessage> = messages
            .iter()
            .filter(|m| {
                m.subject
                    .as_str()
                    .starts_with(&format!("{prefix}.{tenant_id}."))
            })
            .collect();
        assert_eq!(own.len(), events.len(), "tenant {tenant_id}");
        for (message, event) in own.iter().zip(events.iter()) {
            let body = body(message);
            assert_eq!(body["tenant_id"], json!(tenant_id));
            assert_eq!(body["seq"], event["seq"]);
            assert_eq!(body["data"], event["data"]);
            assert!(header(message, "Nats-Msg-Id").starts_with(&format!("{tenant_id}:")));
        }
    }
    assert_eq!(
        cursor(&app, &exporter, &other_id).await,
        theirs.last().and_then(|e| e["seq"].as_i64())
    );
    delete_stream(&exporter).await;
}

async fn one_node_exports_a_tenant_at_a_time(app: TestApp) {
    let config = test_config("node-a");
    let a = exporter(config.clone()).await;
    let b = exporter(ExportConfig {
        node: "node-b".to_owned(),
        ..config
    })
    .await;
    members(&app, &app.key, "m", 2).await;
    let first = a
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert!(first.published > 0);

    // Node a holds the tenant's lease: node b leaves it alone.
    members(&app, &app.key, "n", 2).await;
    let blocked = b
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!((blocked.published, blocked.busy), (0, 1));
    assert_eq!(messages(&b).await.len() as u64, first.published);

    // Node a stops; once its lease has run out, node b takes over from a's cursor.
    app.clock
        .advance(jiff::SignedDuration::from_secs(LEASE.as_secs() as i64 + 1));
    let taken = b
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!(taken.duplicates, 0, "b starts where a's cursor stopped");
    let head = events(&app, &app.key)
        .await
        .last()
        .and_then(|e| e["seq"].as_i64())
        .expect("head");
    assert_eq!(first.published + taken.published, head as u64);
    assert_eq!(ids(&messages(&b).await), expected_ids(&app.tenant_id, head));

    // And now a is the one kept out.
    members(&app, &app.key, "o", 1).await;
    let kept_out = a
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    assert_eq!((kept_out.published, kept_out.busy), (0, 1));
    delete_stream(&a).await;
}

async fn a_refused_publish_keeps_the_cursor_and_the_stream_is_made_again(app: TestApp) {
    let exporter = exporter(test_config("node-a")).await;
    members(&app, &app.key, "m", 2).await;
    exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    let before = cursor(&app, &exporter, &app.tenant_id)
        .await
        .expect("cursor");

    // The stream disappears under a connected exporter: its publishes are refused (no stream
    // answers on the subjects), so the pass fails and the cursor stays.
    exporter
        .jetstream()
        .delete_stream(&exporter.config().stream)
        .await
        .expect("delete");
    members(&app, &app.key, "n", 2).await;
    let failed = exporter.export_once(&app.state.db, app.clock_now()).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        cursor(&app, &exporter, &app.tenant_id).await,
        Some(before),
        "no ack, no progress"
    );

    // The next pass makes the stream again and goes on from the cursor.
    let pass = exporter
        .export_once(&app.state.db, app.clock_now())
        .await
        .expect("pass");
    let head = events(&app, &app.key)
        .await
        .last()
        .and_then(|e| e["seq"].as_i64())
        .expect("head");
    assert_eq!(pass.published, (head - before) as u64);
    let ids = ids(&messages(&exporter).await);
    let expected: BTreeSet<String> = (before + 1..=head)
        .map(|seq| message_id(&app.tenant_id, seq))
        .collect();
    assert_eq!(ids, expected);
    delete_stream(&exporter).await;
}

async fn the_serve_loop_exports_events_as_they_are_written(app: TestApp) {
    let config = test_config("node-a");
    let reader = exporter(config.clone()).await;
    let running = tokio::spawn(shequn::engagement::export::run(
        app.state.clone(),
        nats_url(),
        config,
    ));
    members(&app, &app.key, "m", 3).await;
    let head = events(&app, &app.key)
        .await
        .last()
        .and_then(|e| e["seq"].as_i64())
        .expect("head");
    // The loop runs on its own; wait (bounded) until the stream holds the outbox.
    let mut seen = 0;
    for _ in 0..200 {
        if let Ok(mut stream) = reader.jetstream().get_stream(&reader.config().stream).await {
            seen = stream.info().await.map_or(0, |info| info.state.messages);
            if seen >= head as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    assert_eq!(seen, head as u64);
    assert_eq!(
        ids(&messages(&reader).await),
        expected_ids(&app.tenant_id, head)
    );
    delete_stream(&reader).await;
}

// Events exported per second, batched (the exporter's default) next to the naive export
// (publish, await the ack, write the cursor, for each event) on the same database and NATS
// server, each side checked to have exported every event once. It runs with the suite on
// 2,000 events; `SHEQUN_EXPORT_BENCH_EVENTS=20000` and `--nocapture` give the figures of
// docs/benchmarks.md:
// `cargo test --test api export_throughput -- --nocapture`.
nats_tests!(export_throughput);

mod throughput {
    use super::*;

    pub(super) async fn measure(app: TestApp) {
        let events: i64 = std::env::var("SHEQUN_EXPORT_BENCH_EVENTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000);
        let tenant = shequn::common::ids::TenantId::from_db(app.tenant_id.clone());
        let mut written = 0;
        while written < events {
            let mut tx = app.state.begin().await.expect("tx");
            for _ in 0..1000.min(events - written) {
                tx.emit(shequn::common::outbox::NewEvent::new(
                    &tenant,
                    "member.updated",
                    None,
                    json!({ "member_id": "mem_bench", "fields": ["name"], "via": "api" }),
                ));
                written += 1;
            }
            tx.commit().await.expect("commit");
        }
        let head: i64 = sqlx::query_scalar("SELECT event_seq FROM tenant WHERE id = $1")
            .bind(&app.tenant_id)
            .fetch_one(app.state.db.read())
            .await
            .expect("head");
        assert!(head > events);
        for (name, batch) in [("batched", shequn::engagement::export::BATCH), ("naive", 1)] {
            let exporter = exporter(ExportConfig {
                batch,
                ..test_config(name)
            })
            .await;
            let started = std::time::Instant::now();
            let mut published = 0;
            while published < head as u64 {
                let pass = exporter
                    .export_once(&app.state.db, app.clock_now())
                    .await
                    .expect("pass");
                assert!(pass.published > 0, "no progress");
                published += pass.published;
            }
            let seconds = started.elapsed().as_secs_f64();
            // The exactness check: every event in the stream once, the cursor at the head.
            let mut stream = exporter
                .jetstream()
                .get_stream(&exporter.config().stream)
                .await
                .expect("stream");
            let count = stream.info().await.expect("info").state.messages;
            assert_eq!(count, head as u64);
            assert_eq!(cursor(&app, &exporter, &app.tenant_id).await, Some(head));
            println!(
                "{:?} {name} (batch {batch}): {head} events in {seconds:.2} s = {:.0} events/s",
                app.backend,
                head as f64 / seconds
            );
            delete_stream(&exporter).await;
        }
    }
}

async fn export_throughput(app: TestApp) {
    throughput::measure(app).await;
}
