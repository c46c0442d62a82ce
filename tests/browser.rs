//! The console in a real browser: Debian's `chromium` driven through `chromedriver` (WebDriver,
//! with fantoccini) against the `shequn` binary serving a fresh SQLite file.
//!
//! It signs in through the form, opens every page the navigation offers and a member's page,
//! saves a screenshot of each at desktop and phone width under `target/screenshots/`, switches
//! the language, and asserts that no page is an error page, that the browser loaded nothing
//! from any host but the server under test, and that it logged no error (a script error, a
//! refused Content Security Policy, a failed load).
//!
//! Needs `SHEQUN_TEST_CHROMEDRIVER` (the chromedriver path) at build time; without it the test
//! is reported as ignored. `.ci/run` installs `chromium` and `chromium-driver` and sets it.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const PASSWORD: &str = "browser-test-2026";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shequn(database_url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args(args)
        .env("SHEQUN_DATABASE_URL", database_url)
        .env("SHEQUN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shequn");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "shequn {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// chromedriver's log of the browser's console (`POST /session/{id}/se/log`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

struct Console {
    client: Client,
    origin: String,
    /// The tenant's API key, for the calls a merchant's system would make.
    key: String,
    shots: PathBuf,
    problems: Vec<String>,
}

impl Console {
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.origin))
            .await
            .unwrap();
    }

    /// Wait (up to 10 s) until `script` returns `expected`: a click that submits a form
    /// returns before the next page has loaded.
    async fn wait_for(&self, script: &str, expected: Value) {
        let started = Instant::now();
        loop {
            let value = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            if value == expected {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{script} is {value}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A `/v1` call made from the page (same origin) with the tenant's API key, as a
    /// merchant's system would make it; the answer's body.
    async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let answer = self
            .client
            .execute_async(
                "const [method, path, key, body, done] = arguments;
                 fetch(path, {method, body: body === null ? undefined : JSON.stringify(body), headers: {
                     'authorization': 'Bearer ' + key, 'content-type': 'application/json'}})
                   .then(r => r.json().then(json => done({status: r.status, body: json})))
                   .catch(e => done({status: 0, body: String(e)}));",
                vec![json!(method), json!(path), json!(self.key), body],
            )
            .await
            .unwrap();
        let status = answer["status"].as_u64().unwrap_or_default();
        assert!((200..300).contains(&status), "{method} {path}: {answer}");
        answer["body"].clone()
    }

    /// Click the first element `css` finds.
    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css}: {error}"))
            .click()
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Every URL the page loaded (the document and its resources).
    async fn loaded(&self) -> Vec<String> {
        let value = self
            .client
            .execute(
                "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
                vec![],
            )
            .await
            .unwrap();
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    /// Check the current page: not an error page, nothing from elsewhere, no logged error;
    /// then screenshots at desktop and phone width.
    async fn check_page(&mut self, name: &str) {
        // Let the charts draw.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(error) = self.client.find(Locator::Css("p.error[role=alert]")).await {
            let text = error.text().await.unwrap_or_default();
            self.problems.push(format!("{name}: error page: {text}"));
        }
        for url in self.loaded().await {
            if !url.starts_with(&self.origin) {
                self.problems
                    .push(format!("{name}: loaded {url} from another host"));
            }
        }
        for (width, height, kind) in [(1280, 900, "desktop"), (390, 844, "phone")] {
            self.client.set_window_size(width, height).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(self.shots.join(format!("{name}-{kind}.png")), png).unwrap();
        }
        self.client.set_window_size(1280, 900).await.unwrap();
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        for entry in log.as_array().cloned().unwrap_or_default() {
            if entry["level"] == "SEVERE" {
                self.problems
                    .push(format!("{name}: browser logged {}", entry["message"]));
            }
        }
    }
}

fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    shequn_no_browser,
    ignore = "SHEQUN_TEST_CHROMEDRIVER not set: browser test skipped"
)]
async fn an_operator_signs_in_and_every_page_renders_offline_without_errors() {
    let work = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", work.path().join("console.db").display());
    let created: Value =
        serde_json::from_str(&shequn(&database, &["tenants", "create", "豆浆工坊"], None)).unwrap();
    let tenant = created["tenant_id"].as_str().unwrap();
    shequn(
        &database,
        &[
            "operators",
            "create",
            "--tenant",
            tenant,
            "--email",
            "ops@soy.example",
            "--role",
            "owner",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let csv = work.path().join("members.csv");
    std::fs::write(
        &csv,
        "external_id,name,phone,birthday,source,tags\n\
         c-1,王小明,+8613800000001,1990-05-01,xiaohongshu,vip|soy\n\
         c-2,Li Hua,+8613800000002,,store,\n",
    )
    .unwrap();
    let imported: Value = serde_json::from_str(&shequn(
        &database,
        &[
            "members",
            "import",
            "--tenant",
            tenant,
            csv.to_str().unwrap(),
        ],
        None,
    ))
    .unwrap();
    assert_eq!(imported["created"], 2, "{imported}");

    let port = free_port();
    let _server = Process(
        Command::new(env!("CARGO_BIN_EXE_shequn"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("SHEQUN_DATABASE_URL", &database)
            .env("SHEQUN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_port = free_port();
    let driver_path = option_env!("SHEQUN_TEST_CHROMEDRIVER").unwrap_or("chromedriver");
    let _driver = Process(
        Command::new(driver_path)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_for_port(port);
    wait_for_port(driver_port);

    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--lang=zh-CN"] }),
    );
    capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session");
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut console = Console {
        client,
        origin: format!("http://127.0.0.1:{port}"),
        key: created["api_key"].as_str().unwrap().to_owned(),
        shots,
        problems: Vec::new(),
    };

    // Without a session every console page leads to the sign-in form.
    console.open("/console/members").await;
    assert_eq!(console.path().await, "/console/login");
    console.check_page("login").await;
    let form = console
        .client
        .form(Locator::Css("form[action='/console/login']"))
        .await
        .unwrap();
    form.set_by_name("email", "ops@soy.example").await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    form.submit().await.unwrap();
    // The sign-in checks the password (argon2, slow in a debug build): wait for the dashboard.
    console
        .wait_for("return location.pathname;", json!("/console/"))
        .await;
    console.check_page("dashboard").await;

    // Every section of the navigation.
    let mut sections = Vec::new();
    for link in console
        .client
        .find_all(Locator::Css("nav.side a"))
        .await
        .unwrap()
    {
        sections.push(link.attr("href").await.unwrap().unwrap());
    }
    assert!(sections.len() >= 4, "{sections:?}");
    for href in &sections {
        console.open(href).await;
        let name = href
            .trim_start_matches("/console")
            .trim_matches('/')
            .replace('/', "-");
        let name = if name.is_empty() {
            "dashboard".to_owned()
        } else {
            name
        };
        console.check_page(&name).await;
    }

    // A member found by search, and their page.
    console.open("/console/members?q=%E7%8E%8B").await;
    let member = console
        .client
        .find(Locator::Css("table tbody tr td a"))
        .await
        .expect("the member found by name");
    assert_eq!(member.text().await.unwrap(), "王小明");
    member.click().await.unwrap();
    console
        .wait_for(
            "return location.pathname.startsWith('/console/members/mem_');",
            json!(true),
        )
        .await;
    let page = console.client.source().await.unwrap();
    assert!(page.contains("vip") && page.contains("+8613800000001"));
    console.check_page("member").await;

    // A coupon template created through its form, then found in the list.
    console.open("/console/coupons").await;
    console.click("details.panel > summary").await;
    let form = console
        .client
        .form(Locator::Css("#coupon-template-form"))
        .await
        .unwrap();
    form.set_by_name("name", "满30减3（浏览器）").await.unwrap();
    form.set_by_name("value", "3").await.unwrap();
    form.set_by_name("min_spend", "30").await.unwrap();
    form.set_by_name("total_stock", "500").await.unwrap();
    form.set_by_name("valid_days", "14").await.unwrap();
    form.submit().await.unwrap();
    console
        .wait_for(
            "return location.search.startsWith('?created=cpt_');",
            json!(true),
        )
        .await;
    let created = console
        .client
        .execute(
            "return new URLSearchParams(location.search).get('created');",
            vec![],
        )
        .await
        .unwrap();
    let row = console
        .client
        .find(Locator::Css(&format!(
            "tr[data-template-id='{}']",
            created.as_str().unwrap()
        )))
        .await
        .expect("the new template in the list");
    let row_text = row.text().await.unwrap();
    assert!(
        row_text.contains("满30减3（浏览器）") && row_text.contains("¥3.00"),
        "{row_text}"
    );
    console.check_page("coupons-created").await;

    // A flash sale launched through its form; its live view moves after a purchase through
    // the API (htmx refreshes it every 2 s).
    let product = console
        .api(
            "POST",
            "/v1/products",
            json!({"name": "鲜豆浆 1L", "sku": "SOY-1L", "price": 1290, "stock": 100}),
        )
        .await;
    let product = product["id"].as_str().unwrap().to_owned();
    console.open("/console/sales").await;
    console
        .client
        .find(Locator::Css("#flash-sale-form"))
        .await
        .unwrap();
    console
        .client
        .execute(
            "document.querySelector('#flash-sale-form').closest('details').open = true;",
            vec![],
        )
        .await
        .unwrap();
    let form = console
        .client
        .form(Locator::Css("#flash-sale-form"))
        .await
        .unwrap();
    form.set_by_name("product_id", &product).await.unwrap();
    form.set_by_name("price", "9.90").await.unwrap();
    form.set_by_name("stock", "10").await.unwrap();
    form.set_by_name("per_member_limit", "2").await.unwrap();
    form.set_by_name("ends_at", "2030-01-01T00:00")
        .await
        .unwrap();
    form.submit().await.unwrap();
    console
        .wait_for(
            "return location.pathname.startsWith('/console/sales/flash/');",
            json!(true),
        )
        .await;
    let sale = console.path().await.rsplit('/').next().unwrap().to_owned();
    let live = "return document.querySelector('#flash-sale-live').dataset.reserved;";
    console.wait_for(live, json!("0")).await;
    console.check_page("flash-sale").await;
    let buyer = console
        .api("POST", "/v1/members", json!({"external_id": "flash-buyer"}))
        .await;
    let order = console
        .api(
            "POST",
            &format!("/v1/flash-sales/{sale}/orders"),
            json!({"member_id": buyer["id"], "qty": 2}),
        )
        .await;
    assert!(order["id"].is_string(), "{order}");
    console.wait_for(live, json!("2")).await;
    console
        .wait_for(
            "return document.querySelector('#flash-sale-live').dataset.available;",
            json!("8"),
        )
        .await;

    // A lottery drawn from its page; the proof shown and downloaded as a file.
    let lottery = console
        .api(
            "POST",
            "/v1/lotteries",
            json!({"name": "周年抽奖", "mode": "draw", "winners": 1}),
        )
        .await;
    let lottery = lottery["id"].as_str().unwrap().to_owned();
    for entrant in ["lottery-1", "lottery-2", "lottery-3"] {
        let member = console
            .api("POST", "/v1/members", json!({"external_id": entrant}))
            .await;
        console
            .api(
                "POST",
                &format!("/v1/lotteries/{lottery}/entries"),
                json!({"member_id": member["id"]}),
            )
            .await;
    }
    console
        .open(&format!("/console/community/lotteries/{lottery}"))
        .await;
    console.click("input[name='close_early']").await;
    console.click("#lottery-draw").await;
    console
        .wait_for(
            "return document.querySelector('#proof-download') !== null;",
            json!(true),
        )
        .await;
    console.check_page("lottery-drawn").await;
    let download = console
        .client
        .execute_async(
            "const done = arguments[0];
             fetch(document.querySelector('#proof-download').href)
               .then(r => r.json().then(proof => done({
                   disposition: r.headers.get('content-disposition'), proof})));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        download["disposition"],
        format!("attachment; filename=\"lottery-{lottery}-proof.json\""),
        "{download}"
    );
    let proof = console
        .api(
            "GET",
            &format!("/v1/lotteries/{lottery}/proof"),
            Value::Null,
        )
        .await;
    assert_eq!(download["proof"], proof);

    // The language switch, remembered for the operator.
    let html_lang = "return document.documentElement.lang;";
    assert_eq!(
        console.client.execute(html_lang, vec![]).await.unwrap(),
        "zh-CN"
    );
    console
        .click("form[action='/console/language'] button")
        .await;
    console.wait_for(html_lang, json!("en")).await;
    console.open("/console/members").await;
    assert_eq!(
        console.client.execute(html_lang, vec![]).await.unwrap(),
        "en"
    );
    console.check_page("members-en").await;

    // Signing out ends the session.
    console.click("form[action='/console/logout'] button").await;
    console
        .wait_for("return location.pathname;", json!("/console/login"))
        .await;
    console.open("/console/").await;
    assert_eq!(console.path().await, "/console/login");

    let problems = std::mem::take(&mut console.problems);
    console.client.close().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}
