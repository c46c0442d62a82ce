//! `shequn serve --demo`, run as the real binary. SQLite only: the demo's default database is a
//! SQLite file, and what is tested here is that command as a newcomer runs it (the generator
//! itself calls `/v1`, whose every rule runs on both back ends in the other modules).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::console_support::hidden;
use crate::support::shequn;

/// A `serve --demo` child and what it printed.
struct Demo {
    child: Child,
    addr: SocketAddr,
    console: String,
    email: String,
    password: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `serve --demo` on `url` with a few members and read its three lines.
fn start(url: &str) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args([
            "serve",
            "--demo",
            "--demo-members",
            "300",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            url,
        ])
        .env("SHEQUN_LOG", "warn")
        .env_remove("SHEQUN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shequn serve --demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = BTreeMap::new();
    while printed.len() < 3 {
        let line = lines
            .next()
            .expect("serve --demo printed its three lines before exiting")
            .expect("readable stdout");
        if let Some((name, value)) = line.split_once(": ") {
            printed.insert(name.to_owned(), value.to_owned());
        }
    }
    // Keep draining stdout so that the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let console = printed["console"].clone();
    let addr = console
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/console/"))
        .unwrap_or_else(|| panic!("console line {console:?}"))
        .parse()
        .expect("a socket address in the console line");
    Demo {
        child,
        addr,
        console,
        email: printed["email"].clone(),
        password: printed["password"].clone(),
    }
}

/// A reply over HTTP.
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

/// A cookie jar speaking HTTP/1.1 to the child.
struct Browser {
    addr: SocketAddr,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        bearer: Option<&str>,
    ) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if !self.cookies.is_empty() {
            let line: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            builder = builder.header("cookie", line.join("; "));
        }
        if let Some(key) = bearer {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let body = match form {
            Some(fields) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish()
            }
            None => String::new(),
        };
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("an answer");
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    /// Sign in through the form; the answer to the POST.
    async fn sign_in(&mut self, email: &str, password: &str) -> Reply {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let token = hidden(&form.body, "csrf_token");
        self.send(
            Method::POST,
            "/console/login",
            Some(&[
                ("email", email),
                ("password", password),
                ("csrf_token", &token),
            ]),
            None,
        )
        .await
    }
}

/// The demo tenant's id, read from the database (the operator names it).
fn demo_tenant(url: &str, email: &str) -> String {
    let path = url.strip_prefix("sqlite://").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT tenant_id FROM operator WHERE email = ?1",
        [email],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_prints_a_sign_in_to_a_living_console() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let demo = start(&url);
    assert_eq!(demo.console, format!("http://{}/console/", demo.addr));
    assert!(demo.email.contains('@'), "{}", demo.email);

    let mut browser = Browser {
        addr: demo.addr,
        cookies: BTreeMap::new(),
    };
    let signed = browser.sign_in(&demo.email, &demo.password).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.headers["location"], "/console/");
    for page in [
        "/console/",
        "/console/members",
        "/console/referrals",
        "/console/analytics",
    ] {
        let reply = browser.get(page).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}: {}", reply.body);
    }
    let members = browser.get("/console/members").await;
    let listed = members.body.matches("href=\"/console/members/mem_").count();
    assert!(
        listed >= 10,
        "the member list lists members: {}",
        members.body
    );

    // The last 30 days hold paid orders (an API key of the demo tenant reads the overview).
    let tenant = demo_tenant(&url, &demo.email);
    let (code, out, err) = shequn(&url, &["keys", "create", "--tenant", &tenant]);
    assert_eq!(code, 0, "{err}");
    let key: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let key = key["api_key"].as_str().unwrap().to_owned();
    let overview = browser
        .send(
            Method::GET,
            "/v1/analytics/overview?days=30",
            None,
            Some(&key),
        )
        .await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    let overview: Value = serde_json::from_str(&overview.body).unwrap();
    assert!(
        overview["period"]["paid_orders"].as_i64().unwrap() > 0,
        "{overview}"
    );
    assert!(overview["period"]["new_members"].as_i64().unwrap() > 0);
    let rfm = browser
        .send(Method::GET, "/v1/analytics/rfm", None, Some(&key))
        .await;
    assert_eq!(rfm.status, StatusCode::OK, "analytics fitted: {}", rfm.body);
    let first_password = demo.password.clone();
    drop(demo);

    // The ledger the demo wrote balances.
    let (code, out, err) = shequn(&url, &["ledger", "verify", "--tenant", &tenant]);
    assert_eq!(code, 0, "{out} {err}");

    // A second start reuses the demo: the same tenant, a new password.
    let again = start(&url);
    assert_eq!(demo_tenant(&url, &again.email), tenant);
    let mut browser = Browser {
        addr: again.addr,
        cookies: BTreeMap::new(),
    };
    if again.password != first_password {
        let refused = browser.sign_in(&again.email, &first_password).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
    let signed = browser.sign_in(&again.email, &again.password).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let path = url.strip_prefix("sqlite://").unwrap();
    let tenants: i64 = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM tenant", [], |row| row.get(0))
        .unwrap();
    assert_eq!(tenants, 1, "no second demo tenant, no default tenant");
}
