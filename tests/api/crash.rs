//! kill -9 under load: the real binary serves on loopback over a fresh database while clients
//! send ledger transfers (client-chosen ids) and flash-sale purchases (paying half of them);
//! the server is killed with SIGKILL at random moments and restarted on the same database each
//! time, and the load carries on. Afterwards every acknowledged transfer is there exactly once
//! (member histories, balances, the transfer count and a GET of each one retried across a
//! crash), the ledger verifies clean (API and CLI), and no flash sale sold more than its stock,
//! its counters equal its orders, no member holds more than the limit, and every acknowledged
//! order and payment is there.
//!
//! Exactly-once comes from the transfer ids, never from `Idempotency-Key`: a batch whose
//! outcome is unknown (connection lost, 5xx) is sent again with the same ids until it gets an
//! answer, which must then be `created` or `exists`. Payments are retried with the same
//! `reference` (idempotent by design). Purchases are not retried; an unknown purchase may have
//! left an order, so those are counted.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::support::{require_database, Backend};

mod kill_9_under_ledger_and_flash_sale_load {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::kill_9_under_load(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        shequn_no_postgres,
        ignore = "SHEQUN_TEST_POSTGRES_URL not set: PostgreSQL test skipped"
    )]
    async fn postgres() {
        super::kill_9_under_load(Backend::Postgres).await;
    }
}

/// SIGKILLs while the load runs (one more follows once the load has stopped).
const KILLS: usize = 4;
/// Members of the ledger load, each funded, each both payer and payee.
const MEMBERS: usize = 60;
/// Members who buy in the flash sales (more than the stock of a sale can serve).
const BUYER_MEMBERS: usize = 80;
const FUNDING: i64 = 1_000_000;
const LEDGER_CLIENTS: usize = 6;
/// Most transfers in one request of the load.
const LEDGER_BATCH: usize = 8;
/// Most requests one ledger client sends (a bound besides time).
const LEDGER_MAX_REQUESTS: u64 = 20_000;
const BUYERS: usize = 4;
const BUYER_PAUSE: Duration = Duration::from_millis(30);
/// One flash sale per phase (the stretch between two restarts): stock, per-member limit.
const SALE_STOCK: i64 = 200;
const SALE_LIMIT: i64 = 3;
/// How long one phase of load runs before the next kill (uniform in this range, ms).
const PHASE_MS: std::ops::Range<u64> = 700..2500;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Everything (setup, load, retries until every batch is answered, checks) ends before this.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

async fn kill_9_under_load(backend: Backend) {
    let started = Instant::now();
    let deadline = started + TEST_TIMEOUT;
    let seed: u64 = rand::random();
    eprintln!("crash test on {backend:?}, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (url, _guard) = require_database(backend).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("server.log");

    // The tenant and a second key, from the command line.
    cli_ok(&url, &["migrate"]);
    let created = cli_ok(&url, &["tenants", "create", "crash test"]);
    let tenant = created["tenant_id"].as_str().expect("tenant_id").to_owned();
    let admin_key = created["api_key"].as_str().expect("api_key").to_owned();
    let load_key = cli_ok(&url, &["keys", "create", "--tenant", &tenant])["api_key"]
        .as_str()
        .expect("api_key")
        .to_owned();

    let mut server = Server::start(&url, &log).await;
    let (addr_tx, addr_rx) = watch::channel(server.addr);
    let mut admin = Client::new(addr_rx.clone(), &admin_key);

    // Members (the ledger's funded, the buyers apart); a product, one flash sale per phase.
    let mut members = Vec::with_capacity(MEMBERS);
    let mut buyers = Vec::with_capacity(BUYER_MEMBERS);
    for i in 0..MEMBERS + BUYER_MEMBERS {
        let body = json!({"external_id": format!("crash-{i}"), "name": format!("crash {i}")});
        let reply = admin
            .expect(Method::POST, "/v1/members", Some(&body), 201)
            .await;
        let id = reply["id"].as_str().expect("member id").to_owned();
        if i < MEMBERS {
            members.push(id);
        } else {
            buyers.push(id);
        }
    }
    let grants: Vec<Value> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({"id": format!("fund-{i}"), "from": "system:issuance",
                   "to": format!("member:{m}"), "asset": "points", "amount": FUNDING,
                   "code": "crash_funding"})
        })
        .collect();
    let reply = admin
        .expect(
            Method::POST,
            "/v1/ledger/transfers",
            Some(&json!({ "transfers": grants })),
            200,
        )
        .await;
    for result in reply["results"].as_array().expect("results") {
        assert_eq!(result["status"], "created", "{result}");
    }
    let product = admin
        .expect(
            Method::POST,
            "/v1/products",
            Some(&json!({"name": "秒杀", "sku": "CRASH-1", "price": 9900, "stock": 0})),
            201,
        )
        .await["id"]
        .as_str()
        .expect("product id")
        .to_owned();
    let ends = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let mut sales = Vec::new();
    for _ in 0..=KILLS {
        let body = json!({"product_id": product, "price": 990, "stock": SALE_STOCK,
                          "per_member_limit": SALE_LIMIT, "ends_at": ends,
                          "payment_timeout_secs": 3600});
        let reply = admin
            .expect(Method::POST, "/v1/flash-sales", Some(&body), 201)
            .await;
        sales.push(reply["id"].as_str().expect("sale id").to_owned());
    }

    // The load.
    let members = Arc::new(members);
    let buyers = Arc::new(buyers);
    let sales = Arc::new(sales);
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let ledger_tasks: Vec<_> = (0..LEDGER_CLIENTS)
        .map(|n| {
            let client = Client::new(addr_rx.clone(), &load_key);
            let load = Load {
                members: members.clone(),
                stop: stop.clone(),
                deadline,
                seed: seed.wrapping_add(n as u64 + 1),
            };
            tokio::spawn(ledger_client(n, client, load))
        })
        .collect();
    let buyer_tasks: Vec<_> = (0..BUYERS)
        .map(|n| {
            let client = Client::new(addr_rx.clone(), &load_key);
            let load = Load {
                members: buyers.clone(),
                stop: stop.clone(),
                deadline,
                seed: seed.wrapping_add(1000 + n as u64),
            };
            tokio::spawn(buyer(client, load, sales.clone(), phase.clone()))
        })
        .collect();

    let load_started = Instant::now();
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(PHASE_MS))).await;
        server.kill();
        server = Server::start(&url, &log).await;
        addr_tx.send_replace(server.addr);
        phase.store(kill + 1, Ordering::Relaxed);
    }
    tokio::time::sleep(Duration::from_millis(rng.random_range(PHASE_MS))).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked: Vec<Acked> = Vec::new();
    let mut totals = Counts::default();
    for task in ledger_tasks {
        let report = task
            .await
            .expect("ledger client panicked")
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&log)));
        acked.extend(report.acked);
        totals.add(&report.counts);
    }
    let mut bought: Vec<Bought> = Vec::new();
    let mut unknown_purchases = vec![0usize; sales.len()];
    for task in buyer_tasks {
        let report = task
            .await
            .expect("buyer panicked")
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&log)));
        bought.extend(report.orders);
        for (sale, n) in report.unknown.iter().enumerate() {
            unknown_purchases[sale] += n;
        }
        totals.add(&report.counts);
    }
    let load_secs = load_started.elapsed().as_secs_f64();

    // One last kill with everything acknowledged, then the checks on a restarted server.
    server.kill();
    server = Server::start(&url, &log).await;
    addr_tx.send_replace(server.addr);
    let kills = KILLS + 1;

    let retried = check_ledger(&mut admin, &members, &acked).await;
    let (orders, paid, earned) =
        check_flash_sales(&mut admin, &buyers, &sales, &bought, &unknown_purchases).await;
    // Every transfer is a funding, an acknowledged one, or a buyer's earned points.
    let transfers = (MEMBERS + acked.len() + earned) as u64;
    let report = admin
        .expect(Method::GET, "/v1/ledger/verify", None, 200)
        .await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["transfers"].as_u64(), Some(transfers), "{report}");
    let verified = cli_ok(&url, &["ledger", "verify", "--tenant", &tenant]);
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(
        verified["transfers"].as_u64(),
        Some(transfers),
        "{verified}"
    );
    server.kill();
    assert!(
        totals.server_errors.is_empty(),
        "{} answers were 5xx, e.g. {:?}",
        totals.server_errors.len(),
        &totals.server_errors[..totals.server_errors.len().min(5)]
    );
    eprintln!(
        "crash test on {backend:?} (seed {seed}): {kills} kills in {load_secs:.1} s of load; \
         {} transfers acknowledged ({retried} of them answered only after a crash), \
         {} requests lost to crashes, {} throttled; {orders} orders ({paid} paid) in {} sales, \
         {} purchases of unknown outcome; {:.1} s in all",
        acked.len(),
        totals.lost,
        totals.throttled,
        sales.len(),
        unknown_purchases.iter().sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    assert!(Instant::now() < deadline, "the crash test took too long");
}

/// Every acknowledged transfer is in the ledger exactly once: in both members' histories
/// once and in their balances; those answered only after a crash also by GET.
/// Returns how many were retried across a crash.
async fn check_ledger(admin: &mut Client, members: &[String], acked: &[Acked]) -> usize {
    let ids: HashSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "an id was acknowledged twice");
    let mut expected_balance = vec![FUNDING; members.len()];
    let mut expected_ids: Vec<HashSet<String>> = (0..members.len())
        .map(|i| HashSet::from([format!("fund-{i}")]))
        .collect();
    for a in acked {
        expected_balance[a.from] -= a.amount;
        expected_balance[a.to] += a.amount;
        expected_ids[a.from].insert(a.id.clone());
        expected_ids[a.to].insert(a.id.clone());
    }
    for (i, member) in members.iter().enumerate() {
        let seen = history(admin, member).await;
        let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            doubled.is_empty(),
            "member {i}: listed more than once: {doubled:?}"
        );
        let seen: HashSet<String> = seen.into_keys().collect();
        let lost: Vec<_> = expected_ids[i].difference(&seen).collect();
        assert!(
            lost.is_empty(),
            "member {i}: acknowledged but missing: {lost:?}"
        );
        let phantom: Vec<_> = seen.difference(&expected_ids[i]).collect();
        assert!(
            phantom.is_empty(),
            "member {i}: never acknowledged: {phantom:?}"
        );
        let balances = admin
            .expect(
                Method::GET,
                &format!("/v1/members/{member}/balances"),
                None,
                200,
            )
            .await;
        assert_eq!(
            balances["points"]["balance"].as_i64(),
            Some(expected_balance[i]),
            "member {i}: {balances}"
        );
    }
    let mut retried = 0;
    for a in acked.iter().filter(|a| a.retried) {
        retried += 1;
        let t = admin
            .expect(
                Method::GET,
                &format!("/v1/ledger/transfers/{}", a.id),
                None,
                200,
            )
            .await;
        assert_eq!(t["amount"].as_i64(), Some(a.amount), "{t}");
        assert_eq!(t["from"], format!("member:{}", members[a.from]), "{t}");
        assert_eq!(t["to"], format!("member:{}", members[a.to]), "{t}");
    }
    retried
}

/// No sale sold more than its stock; its counters equal its orders (`reserved` the unpaid
/// units, `sold` the paid ones); no member above the limit; every acknowledged order is there
/// with its member and quantity, paid when its payment was acknowledged; orders nobody
/// acknowledged are no more than the purchases whose outcome was lost; each buyer's earned
/// points once per paid order. Returns (orders, paid orders, the buyers' transfers).
async fn check_flash_sales(
    admin: &mut Client,
    members: &[String],
    sales: &[String],
    bought: &[Bought],
    unknown: &[usize],
) -> (usize, usize, usize) {
    let mut orders: HashMap<String, Value> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/orders?limit=200".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin.expect(Method::GET, &path, None, 200).await;
        for order in page["data"].as_array().expect("data") {
            let id = order["id"].as_str().expect("order id").to_owned();
            assert!(
                orders.insert(id, order.clone()).is_none(),
                "order listed twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for b in bought {
        let order = orders
            .get(&b.order_id)
            .unwrap_or_else(|| panic!("acknowledged order {} is missing", b.order_id));
        assert_eq!(order["campaign_id"], sales[b.sale].as_str(), "{order}");
        assert_eq!(order["member_id"], members[b.member].as_str(), "{order}");
        assert_eq!(order["qty"].as_i64(), Some(b.qty), "{order}");
        if b.paid {
            assert_eq!(order["status"], "paid", "{order}");
        }
    }
    let acked: HashSet<&str> = bought.iter().map(|b| b.order_id.as_str()).collect();
    let mut paid_orders = 0;
    for (i, sale) in sales.iter().enumerate() {
        let view = admin
            .expect(Method::GET, &format!("/v1/flash-sales/{sale}"), None, 200)
            .await;
        let mut reserved = 0;
        let mut sold = 0;
        let mut per_member: HashMap<&str, i64> = HashMap::new();
        let mut unacknowledged = 0;
        for order in orders
            .values()
            .filter(|o| o["campaign_id"] == sale.as_str())
        {
            let qty = order["qty"].as_i64().expect("qty");
            match order["status"].as_str() {
                Some("pending_payment") => reserved += qty,
                Some("paid") => {
                    sold += qty;
                    paid_orders += 1;
                }
                other => panic!("sale {i}: order in state {other:?}: {order}"),
            }
            *per_member
                .entry(order["member_id"].as_str().expect("member"))
                .or_default() += qty;
            if !acked.contains(order["id"].as_str().expect("id")) {
                unacknowledged += 1;
            }
        }
        assert!(reserved + sold <= SALE_STOCK, "sale {i} oversold: {view}");
        assert_eq!(
            view["reserved"].as_i64(),
            Some(reserved),
            "sale {i}: {view}"
        );
        assert_eq!(view["sold"].as_i64(), Some(sold), "sale {i}: {view}");
        assert_eq!(
            view["available"].as_i64(),
            Some(SALE_STOCK - reserved - sold),
            "sale {i}: {view}"
        );
        let worst = per_member.values().copied().max().unwrap_or(0);
        assert!(
            worst <= SALE_LIMIT,
            "sale {i}: a member holds {worst} units"
        );
        assert!(
            unacknowledged <= unknown[i],
            "sale {i}: {unacknowledged} orders nobody acknowledged, {} purchases lost",
            unknown[i]
        );
    }
    // Payment gives the buyer points (pending until the return window ends): each transfer in
    // a buyer's history is listed once and belongs to one of the buyer's paid orders.
    let mut earned = 0;
    for member in members {
        let paid: Vec<&str> = orders
            .values()
            .filter(|o| o["member_id"] == member.as_str() && o["status"] == "paid")
            .map(|o| o["id"].as_str().expect("id"))
            .collect();
        for (id, n) in history(admin, member).await {
            assert_eq!(n, 1, "{member}: transfer {id} listed {n} times");
            assert!(
                paid.iter().any(|order| id.contains(order)),
                "{member}: transfer {id} is not from a paid order of theirs"
            );
            earned += 1;
        }
    }
    (orders.len(), paid_orders, earned)
}

/// What the load tasks share.
struct Load {
    members: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    seed: u64,
}

/// How many times each transfer id is listed in a member's history (all assets).
async fn history(admin: &mut Client, member: &str) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/members/{member}/transfers?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin.expect(Method::GET, &path, None, 200).await;
        for t in page["data"].as_array().expect("data") {
            *seen
                .entry(t["id"].as_str().expect("id").to_owned())
                .or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

/// A transfer the server acknowledged (`created`, or `exists` on a retry).
struct Acked {
    id: String,
    from: usize,
    to: usize,
    amount: i64,
    /// Answered only after one or more attempts were lost to a crash.
    retried: bool,
}

#[derive(Default)]
struct Counts {
    /// Requests whose answer never came (the server died).
    lost: u64,
    throttled: u64,
    server_errors: Vec<String>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.lost += other.lost;
        self.throttled += other.throttled;
        self.server_errors
            .extend(other.server_errors.iter().cloned());
    }

    /// Note an answer that is not an outcome; false when it is an outcome.
    fn not_an_answer(&mut self, reply: &Result<(StatusCode, Value), String>) -> bool {
        match reply {
            Err(_) => self.lost += 1,
            Ok((StatusCode::TOO_MANY_REQUESTS, _)) => self.throttled += 1,
            Ok((status, body)) if status.is_server_error() => {
                self.server_errors.push(format!("{status} {body}"));
            }
            Ok(_) => return false,
        }
        true
    }
}

struct LedgerReport {
    acked: Vec<Acked>,
    counts: Counts,
}

/// Batches of 1 to `LEDGER_BATCH` transfers between random members, back to back; a batch
/// without an answer is sent again, same ids, until it gets one.
async fn ledger_client(n: usize, mut client: Client, load: Load) -> Result<LedgerReport, String> {
    let mut rng = StdRng::seed_from_u64(load.seed);
    let members = &load.members;
    let mut report = LedgerReport {
        acked: Vec::new(),
        counts: Counts::default(),
    };
    let mut next = 0u64;
    let mut pending: Option<(Vec<Acked>, u32)> = None;
    for _ in 0..LEDGER_MAX_REQUESTS {
        if Instant::now() > load.deadline {
            return Err(format!("ledger client {n}: no answer before the deadline"));
        }
        let (batch, attempts) = match pending.take() {
            Some(pending) => pending,
            None if load.stop.load(Ordering::Relaxed) => return Ok(report),
            None => {
                let size = rng.random_range(1..=LEDGER_BATCH);
                let batch = (0..size)
                    .map(|_| {
                        next += 1;
                        let from = rng.random_range(0..members.len());
                        let to = (from + rng.random_range(1..members.len())) % members.len();
                        Acked {
                            id: format!("crash-{n}-{next}"),
                            from,
                            to,
                            amount: rng.random_range(1..=9),
                            retried: false,
                        }
                    })
                    .collect();
                (batch, 0)
            }
        };
        let transfers: Vec<Value> = batch
            .iter()
            .map(|t| {
                json!({"id": t.id, "from": format!("member:{}", members[t.from]),
                       "to": format!("member:{}", members[t.to]), "asset": "points",
                       "amount": t.amount, "code": "crash_test"})
            })
            .collect();
        let reply = client
            .call(
                Method::POST,
                "/v1/ledger/transfers",
                Some(&json!({ "transfers": transfers })),
            )
            .await;
        if report.counts.not_an_answer(&reply) {
            pending = Some((batch, attempts + 1));
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let (status, body) = reply.expect("an answer");
        if status != StatusCode::OK {
            return Err(format!("ledger client {n}: {status} {body}"));
        }
        let results = body["results"].as_array().cloned().unwrap_or_default();
        if results.len() != batch.len() {
            return Err(format!(
                "ledger client {n}: {} results for {}: {body}",
                results.len(),
                batch.len()
            ));
        }
        for (mut t, result) in batch.into_iter().zip(results) {
            match result["status"].as_str() {
                Some("created") => {}
                Some("exists") if attempts > 0 => {}
                _ => {
                    return Err(format!(
                        "ledger client {n}: transfer {} answered {result} on attempt {}",
                        t.id,
                        attempts + 1
                    ))
                }
            }
            t.retried = attempts > 0;
            report.acked.push(t);
        }
    }
    Err(format!(
        "ledger client {n}: more than {LEDGER_MAX_REQUESTS} requests"
    ))
}

/// An order the server acknowledged.
struct Bought {
    order_id: String,
    sale: usize,
    member: usize,
    qty: i64,
    paid: bool,
}

struct BuyerReport {
    orders: Vec<Bought>,
    /// Purchases without an answer, per sale.
    unknown: Vec<usize>,
    counts: Counts,
}

/// Buys 1 or 2 units for a random member from the current phase's sale, pays half of what
/// it gets (retrying a payment with its reference until it is answered), with a pause between
/// purchases so that each sale sells out about when the server is killed.
async fn buyer(
    mut client: Client,
    load: Load,
    sales: Arc<Vec<String>>,
    phase: Arc<AtomicUsize>,
) -> Result<BuyerReport, String> {
    let mut rng = StdRng::seed_from_u64(load.seed);
    let mut report = BuyerReport {
        orders: Vec::new(),
        unknown: vec![0; sales.len()],
        counts: Counts::default(),
    };
    while !load.stop.load(Ordering::Relaxed) {
        if Instant::now() > load.deadline {
            return Err("buyer: still buying at the deadline".to_owned());
        }
        let sale = phase.load(Ordering::Relaxed).min(sales.len() - 1);
        let member = rng.random_range(0..load.members.len());
        let qty = rng.random_range(1..=2);
        let reply = client
            .call(
                Method::POST,
                &format!("/v1/flash-sales/{}/orders", sales[sale]),
                Some(&json!({"member_id": load.members[member], "qty": qty})),
            )
            .await;
        if report.counts.not_an_answer(&reply) {
            report.unknown[sale] += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let (status, body) = reply.expect("an answer");
        match status {
            StatusCode::CREATED => {
                let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();
                if order_id.is_empty() || body["qty"].as_i64() != Some(qty) {
                    return Err(format!("buyer: a 201 without the order: {body}"));
                }
                let paid = rng.random_bool(0.5);
                if paid {
                    pay(&mut client, &order_id, &load, &mut report.counts).await?;
                }
                report.orders.push(Bought {
                    order_id,
                    sale,
                    member,
                    qty,
                    paid,
                });
            }
            StatusCode::CONFLICT
                if matches!(
                    body["error"]["code"].as_str(),
                    Some("sold_out" | "limit_reached")
                ) => {}
            _ => return Err(format!("buyer: {status} {body}")),
        }
        tokio::time::sleep(BUYER_PAUSE).await;
    }
    Ok(report)
}

/// Pay an order externally, retrying with the same reference until the payment is answered.
async fn pay(
    client: &mut Client,
    order: &str,
    load: &Load,
    counts: &mut Counts,
) -> Result<(), String> {
    let body = json!({"method": "external", "reference": format!("pay-{order}")});
    loop {
        if Instant::now() > load.deadline {
            return Err(format!("payment of {order}: no answer before the deadline"));
        }
        let reply = client
            .call(
                Method::POST,
                &format!("/v1/orders/{order}/payments"),
                Some(&body),
            )
            .await;
        if counts.not_an_answer(&reply) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let (status, reply) = reply.expect("an answer");
        return if status == StatusCode::OK && reply["status"] == "paid" {
            Ok(())
        } else {
            Err(format!("payment of {order}: {status} {reply}"))
        };
    }
}

/// The real binary serving on a loopback port; killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Start `shequn serve` on a free port and wait until `/healthz` answers 200 (a few
    /// attempts, in case another process takes the port first).
    async fn start(url: &str, log: &Path) -> Server {
        for _ in 0..5 {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port");
            let stderr = File::options()
                .create(true)
                .append(true)
                .open(log)
                .expect("server log");
            let child = Command::new(env!("CARGO_BIN_EXE_shequn"))
                .arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .args(unlimited_args())
                .env("SHEQUN_DATABASE_URL", url)
                .env("SHEQUN_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start shequn serve");
            let mut server = Server { child, addr };
            if server.wait_ready().await {
                return server;
            }
        }
        panic!("shequn serve did not start\n{}", log_tail(log));
    }

    /// Poll `/healthz` until it answers 200; false if the process exits first.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if healthy(self.addr).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("shequn serve not ready after {READY_TIMEOUT:?}");
    }

    /// kill -9, and reap the process.
    fn kill(&mut self) {
        self.child.kill().expect("kill -9 shequn");
        self.child.wait().expect("reap shequn");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flags that turn the rate limits off, for a `serve` that has them (the load generators run
/// without limits too). Asked at each start, so the answer is about the binary being started.
fn unlimited_args() -> Vec<&'static str> {
    let help = Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args(["serve", "--help"])
        .output()
        .expect("shequn serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    ["--rate-limit-per-key", "--rate-limit-per-ip"]
        .into_iter()
        .filter(|flag| help.contains(&format!("{flag} <")))
        .flat_map(|flag| [flag, "0"])
        .collect()
}

async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut sender) = connect(addr).await else {
        return false;
    };
    let request = Request::get("/healthz")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    matches!(
        tokio::time::timeout(Duration::from_secs(2), sender.send_request(request)).await,
        Ok(Ok(response)) if response.status() == StatusCode::OK
    )
}

/// The end of the server's log, for failure messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "server log ({}), last lines:\n{}",
        PathBuf::from(log).display(),
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

/// Run a CLI command on the database; it must succeed and print one JSON line.
fn cli_ok(url: &str, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args(args)
        .env("SHEQUN_DATABASE_URL", url)
        .env("SHEQUN_LOG", "warn")
        .output()
        .expect("run shequn");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "shequn {args:?}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().expect("a line of output");
    serde_json::from_str(line).expect("one JSON line")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One keep-alive HTTP/1.1 connection to wherever the server is now, reopened after errors.
struct Client {
    addr: watch::Receiver<SocketAddr>,
    authorization: String,
    conn: Option<(SocketAddr, Sender)>,
}

impl Client {
    fn new(addr: watch::Receiver<SocketAddr>, key: &str) -> Client {
        Client {
            addr,
            authorization: format!("Bearer {key}"),
            conn: None,
        }
    }

    /// Status and JSON body, or why no answer came.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let addr = *self.addr.borrow();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(addr, method, path, body))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let reusable = matches!(&self.conn, Some((a, s)) if *a == addr && !s.is_closed());
        if !reusable {
            self.conn = Some((addr, connect(addr).await?));
        }
        let (_, sender) = self.conn.as_mut().expect("a connection");
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", &self.authorization);
        let bytes = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, body))
    }

    /// A request that must succeed with `status` (the server is up); the body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let (got, reply) = self
            .call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(got.as_u16(), status, "{method} {path}: {reply}");
        reply
    }
}
