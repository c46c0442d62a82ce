//! Test support: the real router over a fresh database per test, on SQLite and PostgreSQL.
//!
//! `backend_tests!` turns each scenario `async fn(TestApp)` into two tests, `sqlite` and
//! `postgres`. The PostgreSQL one runs when `SHEQUN_TEST_POSTGRES_URL` is set (and then fails
//! if the server is unreachable); each test gets its own database, dropped afterwards. When
//! the variable is unset, `build.rs` sets the cfg `shequn_no_postgres` and the PostgreSQL
//! tests are `#[ignore]`d, so cargo's summary counts them as ignored, never as passed.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use serde_json::Value;
use shequn::common::clock::{Clock as _, ManualClock};
use shequn::common::db::Db;
use shequn::{tenants, AppState};
use sqlx::Connection as _;
use tower::ServiceExt as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Removes the test database when the test ends, however it ends.
pub enum DbGuard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres { admin_url, name } = self {
            let admin_url = admin_url.clone();
            let name = name.clone();
            // Drop runs outside async; a short-lived runtime on its own thread does the work.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The PostgreSQL server the tests may use (`SHEQUN_TEST_POSTGRES_URL`, empty counts as
/// unset).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("SHEQUN_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The URL of a fresh, empty database of the given kind (not migrated, nothing connected to
/// it) and the guard that removes it; `None` when PostgreSQL is not configured.
pub async fn fresh_database(backend: Backend) -> Option<(String, DbGuard)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            Some((url, DbGuard::Sqlite(dir)))
        }
        Backend::Postgres => {
            let admin_url = postgres_admin_url()?;
            let name = format!("shequn_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("SHEQUN_TEST_POSTGRES_URL is set but PostgreSQL is unreachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
            let url = with_database(&admin_url, &name);
            Some((url, DbGuard::Postgres { admin_url, name }))
        }
    }
}

/// The fresh database for a test of `backend`. A PostgreSQL test only runs when the suite was
/// built with `SHEQUN_TEST_POSTGRES_URL` set (else it is ignored), so here the variable missing
/// means it was unset after the build (or the test was forced with `--include-ignored`): fail
/// rather than pass without testing anything.
pub async fn require_database(backend: Backend) -> (String, DbGuard) {
    fresh_database(backend).await.unwrap_or_else(|| {
        panic!("a PostgreSQL test ran but SHEQUN_TEST_POSTGRES_URL is not set; set it to run it")
    })
}

/// The same server URL pointing at another database.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix_end = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..prefix_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The app under test with one tenant and its key.
pub struct TestApp {
    #[allow(dead_code)]
    pub backend: Backend,
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub tenant_id: String,
    pub key: String,
    pub database_url: String,
    _guard: DbGuard,
}

/// A response: status, headers and JSON body (or `Value::String` for non-JSON bodies).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        let (database_url, guard) = require_database(backend).await;
        let db = Db::connect(&database_url)
            .await
            .expect("open test database");
        db.migrate().await.expect("migrate test database");
        let clock = ManualClock::new(Timestamp::now());
        let state = AppState::new(db.clone(), Arc::new(clock.clone()));
        let created = tenants::create(&db, "test", clock.now())
            .await
            .expect("tenant");
        TestApp {
            backend,
            router: shequn::app(state.clone()),
            state,
            clock,
            tenant_id: created.tenant_id.to_string(),
            key: created.api_key,
            database_url,
            _guard: guard,
        }
    }

    /// The test clock's now.
    pub fn clock_now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Another tenant in the same database: (tenant id, key).
    pub async fn other_tenant(&self) -> (String, String) {
        let created = tenants::create(&self.state.db, "other", self.clock.now())
            .await
            .expect("tenant");
        (created.tenant_id.to_string(), created.api_key)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A request with this app's key; `body` is sent as JSON when given.
    pub fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Request<Body> {
        build(method, path, Some(&self.key), body, None)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.send(self.request(method, path, body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// POST with an `Idempotency-Key`.
    pub async fn post_idempotent(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.send(build(
            Method::POST,
            path,
            Some(&self.key),
            Some(body),
            Some(key),
        ))
        .await
    }

    /// Create a member and return its id.
    pub async fn member(&self, external_id: &str) -> String {
        let reply = self
            .post(
                "/v1/members",
                &serde_json::json!({ "external_id": external_id, "name": external_id }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }
}

/// Build a request with an optional key, JSON body and idempotency key.
pub fn build(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    if let Some(idempotency_key) = idempotency_key {
        builder = builder.header("idempotency-key", idempotency_key);
    }
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
        None => builder.body(Body::empty()).expect("request"),
    }
}

/// Generate a `sqlite` and a `postgres` test for each scenario. The `postgres` test is ignored
/// (reported as such by cargo) when the suite was built without `SHEQUN_TEST_POSTGRES_URL`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::support::TestApp::new($crate::support::Backend::Sqlite).await;
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    shequn_no_postgres,
                    ignore = "SHEQUN_TEST_POSTGRES_URL not set: PostgreSQL test skipped"
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

/// Run the `shequn` binary on a database: (exit code, stdout, stderr).
pub fn shequn(database_url: &str, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args(args)
        .env("SHEQUN_DATABASE_URL", database_url)
        .env("SHEQUN_LOG", "warn")
        .output()
        .expect("run shequn");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
