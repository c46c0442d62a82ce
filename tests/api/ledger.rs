//! Ledger API: transfers, pending post/void, linked chains, balances, history, verification,
//! concurrency, retries, expiry across a restart, and a property test against a small model.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use shequn::common::clock::Clock as _;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    transfers_move_points_and_balances_add_up,
    transfer_ids_are_idempotency_keys,
    invalid_transfers_are_rejected_whole,
    pending_transfers_post_or_void_exactly_once,
    linked_transfers_succeed_or_fail_together,
    history_pages_newest_first,
    history_lists_every_transfer_once,
    verify_catches_a_broken_history_list,
    another_tenant_cannot_touch_the_ledger,
    thousand_concurrent_spends_against_five_hundred_points,
    concurrent_retries_of_one_id_apply_once,
    two_nodes_spending_one_account_stay_exact,
    a_write_beside_the_executor_reaches_its_next_decision,
    pending_transfers_expire_across_a_restart,
    random_operation_sequences_match_a_model,
);

fn t(id: &str, from: &str, to: &str, amount: i64) -> Value {
    json!({"id": id, "from": from, "to": to, "asset": "points", "amount": amount, "code": "test"})
}

async fn submit(app: &TestApp, transfers: Vec<Value>) -> Vec<String> {
    let reply = app
        .post("/v1/ledger/transfers", &json!({ "transfers": transfers }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn balance(app: &TestApp, member: &str, asset: &str) -> Value {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body[asset].clone()
}

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn transfers_move_points_and_balances_add_up(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    let statuses = submit(
        &app,
        vec![
            t("grant-1", "system:issuance", &addr, 100),
            t("spend-1", &addr, "system:redemption", 30),
            t("spend-2", &addr, "system:redemption", 71),
        ],
    )
    .await;
    assert_eq!(statuses, ["created", "created", "insufficient_funds"]);
    let points = balance(&app, &m, "points").await;
    assert_eq!(
        points,
        json!({"balance": 70, "pending_debits": 0, "pending_credits": 0, "available": 70})
    );
    let wallet = balance(&app, &m, "wallet_principal").await;
    assert_eq!(wallet["balance"], 0);
    let issuance = app.get("/v1/ledger/accounts/system:issuance").await;
    assert_eq!(issuance.body["points"]["balance"], -100);
    let transfer = app.get("/v1/ledger/transfers/spend-1").await;
    assert_eq!(transfer.body["status"], "posted");
    assert_eq!(transfer.body["from"], addr.as_str());
    assert_eq!(
        app.get("/v1/ledger/transfers/nope").await.status,
        StatusCode::NOT_FOUND
    );
    verify_ok(&app).await;
}

async fn transfer_ids_are_idempotency_keys(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    assert_eq!(
        submit(&app, vec![t("g", "system:issuance", &addr, 50)]).await,
        ["created"]
    );
    assert_eq!(
        submit(&app, vec![t("g", "system:issuance", &addr, 50)]).await,
        ["exists"]
    );
    assert_eq!(
        submit(&app, vec![t("g", "system:issuance", &addr, 51)]).await,
        ["exists_with_different_fields"]
    );
    assert_eq!(
        balance(&app, &m, "points").await["balance"],
        50,
        "applied once"
    );
    verify_ok(&app).await;
}

async fn invalid_transfers_are_rejected_whole(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    let cases = [
        (t("x", "system:issuance", &addr, 0), "transfers[1].amount"),
        (t("x", "bank:1", &addr, 5), "transfers[1].from"),
        (t("", "system:issuance", &addr, 5), "transfers[1].id"),
        (
            json!({"id": "x", "from": "system:issuance", "to": addr, "asset": "points", "amount": 5, "code": "bad code!"}),
            "transfers[1].code",
        ),
    ];
    for (bad, field) in cases {
        let reply = app
            .post(
                "/v1/ledger/transfers",
                &json!({"transfers": [t("ok", "system:issuance", &addr, 5), bad]}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            reply.body
        );
        assert_eq!(reply.body["error"]["details"]["field"], field);
    }
    let unknown_asset = app
        .post(
            "/v1/ledger/transfers",
            &json!({"transfers": [{"id": "x", "from": "system:a", "to": addr, "asset": "gold", "amount": 1, "code": "c"}]}),
        )
        .await;
    assert_eq!(unknown_asset.status, StatusCode::BAD_REQUEST);
    let too_many: Vec<Value> = (0..1001)
        .map(|i| t(&format!("n{i}"), "system:issuance", &addr, 1))
        .collect();
    let reply = app
        .post("/v1/ledger/transfers", &json!({ "transfers": too_many }))
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        balance(&app, &m, "points").await["balance"],
        0,
        "nothing half-applied"
    );
}

async fn pending_transfers_post_or_void_exactly_once(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    submit(&app, vec![t("g", "system:issuance", &addr, 100)]).await;
    let mut hold = t("hold", &addr, "system:redemption", 80);
    hold["pending"] = json!(true);
    assert_eq!(submit(&app, vec![hold]).await, ["created"]);
    let points = balance(&app, &m, "points").await;
    assert_eq!(
        points,
        json!({"balance": 100, "pending_debits": 80, "pending_credits": 0, "available": 20})
    );
    assert_eq!(
        submit(&app, vec![t("over", &addr, "system:redemption", 21)]).await,
        ["insufficient_funds"],
        "pending debits count against the balance"
    );
    let too_much = app
        .post("/v1/ledger/transfers/hold/post", &json!({"amount": 81}))
        .await;
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);
    let posted = app
        .post("/v1/ledger/transfers/hold/post", &json!({"amount": 50}))
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{:?}", posted.body);
    assert_eq!(posted.body["status"], "posted");
    assert_eq!(posted.body["posted_amount"], 50);
    let again = app.post("/v1/ledger/transfers/hold/void", &json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "already_resolved");
    let again = app.post("/v1/ledger/transfers/hold/post", &json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let points = balance(&app, &m, "points").await;
    assert_eq!(
        points,
        json!({"balance": 50, "pending_debits": 0, "pending_credits": 0, "available": 50})
    );

    let mut hold2 = t("hold2", &addr, "system:redemption", 10);
    hold2["pending"] = json!(true);
    submit(&app, vec![hold2]).await;
    let voided = app
        .post("/v1/ledger/transfers/hold2/void", &json!({}))
        .await;
    assert_eq!(voided.body["status"], "voided");
    assert_eq!(balance(&app, &m, "points").await["available"], 50);
    let plain = app.post("/v1/ledger/transfers/g/void", &json!({})).await;
    assert_eq!(plain.status, StatusCode::CONFLICT);
    assert_eq!(plain.body["error"]["code"], "not_pending");
    assert_eq!(
        app.post("/v1/ledger/transfers/zzz/post", &json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    verify_ok(&app).await;
}

async fn linked_transfers_succeed_or_fail_together(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    // A top-up: principal and bonus, linked.
    let mut principal = json!({"id": "top-p", "from": "system:cash_in", "to": addr, "asset": "wallet_principal",
                               "amount": 10000, "code": "topup", "linked": true});
    let bonus = json!({"id": "top-b", "from": "system:issuance", "to": addr, "asset": "wallet_bonus",
                       "amount": 2000, "code": "topup_bonus"});
    assert_eq!(
        submit(&app, vec![principal.clone(), bonus]).await,
        ["created", "created"]
    );
    // A chain whose second half fails leaves nothing behind.
    principal["id"] = json!("top2-p");
    let failing = t("top2-x", &addr, "system:redemption", 1);
    assert_eq!(
        submit(&app, vec![principal, failing]).await,
        ["linked_transfer_failed", "insufficient_funds"]
    );
    assert_eq!(
        balance(&app, &m, "wallet_principal").await["balance"],
        10000
    );
    assert_eq!(balance(&app, &m, "wallet_bonus").await["balance"], 2000);
    assert_eq!(
        app.get("/v1/ledger/transfers/top2-p").await.status,
        StatusCode::NOT_FOUND
    );
    let mut open = t("open", "system:issuance", &addr, 1);
    open["linked"] = json!(true);
    assert_eq!(submit(&app, vec![open]).await, ["linked_chain_open"]);
    verify_ok(&app).await;
}

async fn history_pages_newest_first(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    for i in 0..5 {
        submit(
            &app,
            vec![t(&format!("h{i}"), "system:issuance", &addr, 10)],
        )
        .await;
        app.clock.advance(jiff::SignedDuration::from_secs(1));
    }
    let mut wallet = t("w", "system:cash_in", &addr, 10);
    wallet["asset"] = json!("wallet_principal");
    submit(&app, vec![wallet]).await;
    let mut seen = Vec::new();
    let mut path = format!("/v1/members/{m}/transfers?asset=points&limit=2");
    loop {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        for item in reply.body["data"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match reply.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/members/{m}/transfers?asset=points&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["h4", "h3", "h2", "h1", "h0"]);
    let all = app.get(&format!("/v1/members/{m}/transfers")).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 6);
    assert_eq!(
        app.get(&format!("/v1/members/{m}/transfers?asset=gold"))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn another_tenant_cannot_touch_the_ledger(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    submit(&app, vec![t("g", "system:issuance", &addr, 10)]).await;
    let (_, other) = app.other_tenant().await;
    let as_other = |method, path: &str, body: Option<Value>| {
        crate::support::build(method, path, Some(&other), body.as_ref(), None)
    };
    let reply = app
        .send(as_other(
            axum::http::Method::POST,
            "/v1/ledger/transfers",
            Some(json!({"transfers": [t("steal", &addr, "system:x", 5)]})),
        ))
        .await;
    assert_eq!(reply.body["results"][0]["status"], "account_not_found");
    let reply = app
        .send(as_other(
            axum::http::Method::GET,
            &format!("/v1/members/{m}/balances"),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(as_other(
            axum::http::Method::GET,
            "/v1/ledger/transfers/g",
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(balance(&app, &m, "points").await["balance"], 10);
}

async fn thousand_concurrent_spends_against_five_hundred_points(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    submit(&app, vec![t("fund", "system:issuance", &addr, 500)]).await;
    let app = Arc::new(app);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader polls the balance the whole time and must never see it below zero.
    let reader = {
        let (app, m, stop) = (app.clone(), m.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let points = balance(&app, &m, "points").await;
                assert!(points["balance"].as_i64().unwrap() >= 0, "{points}");
                assert!(points["available"].as_i64().unwrap() >= 0, "{points}");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (app, addr) = (app.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            submit(
                &app,
                vec![t(&format!("spend-{i}"), &addr, "system:redemption", 1)],
            )
            .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap()[0].as_str() {
            "created" => created += 1,
            "insufficient_funds" => {}
            other => panic!("unexpected {other}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert_eq!(created, 500);
    assert_eq!(balance(&app, &m, "points").await["balance"], 0);
    verify_ok(&app).await;
}

async fn concurrent_retries_of_one_id_apply_once(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (app, addr) = (app.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            submit(&app, vec![t("reward-1", "system:issuance", &addr, 7)]).await
        }));
    }
    let mut statuses = HashMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(statuses.get("created"), Some(&1));
    assert_eq!(statuses.get("exists"), Some(&49));
    assert_eq!(balance(&app, &m, "points").await["balance"], 7);
    verify_ok(&app).await;
}

async fn two_nodes_spending_one_account_stay_exact(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    submit(&app, vec![t("fund", "system:issuance", &addr, 300)]).await;
    let tenant = shequn::common::ids::TenantId::parse(&app.tenant_id).unwrap();
    // Two "processes": separate pools and executors over the same database.
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let db = shequn::common::db::Db::connect(&app.database_url)
            .await
            .unwrap();
        nodes.push(shequn::ledger::Ledger::start(
            db,
            Arc::new(app.clock.clone()),
        ));
    }
    let mut tasks = Vec::new();
    for i in 0..600 {
        let node = nodes[i % 2].clone();
        let (tenant, addr) = (tenant.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let transfer = shequn::ledger::model::NewTransfer::internal(
                format!("n-{i}"),
                shequn::ledger::model::Address::parse(&addr).unwrap(),
                shequn::ledger::model::Address::system("redemption"),
                shequn::ledger::model::Asset::Points,
                1,
                "spend",
                None,
            );
            node.submit(&tenant, vec![shequn::ledger::Op::Create(transfer)])
                .await
                .unwrap()[0]
                .status
                .clone()
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap() == "created" {
            created += 1;
        }
    }
    assert_eq!(
        created, 300,
        "exactly the funded amount was spent across both nodes"
    );
    assert_eq!(balance(&app, &m, "points").await["balance"], 0);
    verify_ok(&app).await;
}

/// The executor remembers accounts between batches; a write it did not make (another node,
/// or domain code in its own transaction) must still count in its next decision.
async fn a_write_beside_the_executor_reaches_its_next_decision(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    // Through the app's executor: the first two transfers create accounts (under locks), the
    // third is decided ahead and leaves the executor remembering the member's account at 8.
    submit(&app, vec![t("fund", "system:issuance", &addr, 10)]).await;
    submit(&app, vec![t("warm", &addr, "system:redemption", 1)]).await;
    submit(&app, vec![t("warm-2", &addr, "system:redemption", 1)]).await;
    let tenant = shequn::common::ids::TenantId::parse(&app.tenant_id).unwrap();
    let db = shequn::common::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    let other = shequn::ledger::Ledger::start(db, Arc::new(app.clock.clone()));
    let credit = shequn::ledger::model::NewTransfer::internal(
        "beside".to_owned(),
        shequn::ledger::model::Address::system("issuance"),
        shequn::ledger::model::Address::parse(&addr).unwrap(),
        shequn::ledger::model::Asset::Points,
        100,
        "grant",
        None,
    );
    let results = other
        .submit(&tenant, vec![shequn::ledger::Op::Create(credit)])
        .await
        .unwrap();
    assert_eq!(results[0].status, "created");
    // A spend only the other node's credit covers: decided on the remembered 8 it would be
    // refused; it must be checked against the database and succeed.
    assert_eq!(
        submit(&app, vec![t("big", &addr, "system:redemption", 50)]).await,
        ["created"]
    );
    // A spend the remembered balance covers, decided on stale totals, must not overwrite the
    // other node's credit.
    assert_eq!(
        submit(&app, vec![t("small", &addr, "system:redemption", 5)]).await,
        ["created"]
    );
    assert_eq!(balance(&app, &m, "points").await["balance"], 53);
    let refused = submit(&app, vec![t("too-big", &addr, "system:redemption", 54)]).await;
    assert_eq!(refused, ["insufficient_funds"]);
    verify_ok(&app).await;
}

async fn pending_transfers_expire_across_a_restart(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    submit(&app, vec![t("g", "system:issuance", &addr, 100)]).await;
    let mut hold = t("hold", &addr, "system:redemption", 60);
    hold["pending"] = json!(true);
    hold["timeout_secs"] = json!(600);
    assert_eq!(submit(&app, vec![hold]).await, ["created"]);
    // Nothing is due yet.
    assert_eq!(shequn::server::run_due_jobs(&app.state).await.unwrap(), 0);

    // "Restart": a new state (new executor, new caches) over the same database, later in time.
    let db = shequn::common::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    let clock = shequn::common::clock::ManualClock::new(
        app.clock.now() + jiff::SignedDuration::from_secs(601),
    );
    let restarted = shequn::AppState::new(db, Arc::new(clock));
    assert_eq!(shequn::server::run_due_jobs(&restarted).await.unwrap(), 1);
    assert_eq!(
        shequn::server::run_due_jobs(&restarted).await.unwrap(),
        0,
        "runs once"
    );
    let transfer = app.get("/v1/ledger/transfers/hold").await;
    assert_eq!(transfer.body["status"], "expired");
    let points = balance(&app, &m, "points").await;
    assert_eq!(points["available"], 100);
    assert_eq!(points["pending_debits"], 0);
    let late = app.post("/v1/ledger/transfers/hold/post", &json!({})).await;
    assert_eq!(
        late.status,
        StatusCode::CONFLICT,
        "an expired transfer cannot be posted"
    );
    verify_ok(&app).await;
}

// --- property test -------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum ModelOp {
    /// A request of 1–3 transfers; all but the last may be linked.
    Create(Vec<(u8, u8, u8, i64, bool, bool)>),
    Post(u8, Option<i64>),
    Void(u8),
}

/// The model: balances and transfer states, nothing else.
#[derive(Default)]
struct Model {
    posted: HashMap<u8, i64>,
    pending_out: HashMap<u8, i64>,
    transfers: HashMap<u8, (u8, u8, i64, bool, bool, String)>,
}

const ACCOUNTS: u8 = 5; // 0..3 members, 3 = system:issuance, 4 = system:redemption

impl Model {
    fn is_member(a: u8) -> bool {
        a < 3
    }

    fn create(
        &mut self,
        id: u8,
        from: u8,
        to: u8,
        amount: i64,
        pending: bool,
        linked: bool,
    ) -> String {
        if let Some((f, to2, a, p, l, _)) = self.transfers.get(&id) {
            return if (*f, *to2, *a, *p, *l) == (from, to, amount, pending, linked) {
                "exists".into()
            } else {
                "exists_with_different_fields".into()
            };
        }
        if from == to {
            return "same_account".into();
        }
        if Self::is_member(from) {
            let available = self.posted.get(&from).copied().unwrap_or(0)
                - self.pending_out.get(&from).copied().unwrap_or(0);
            if available < amount {
                return "insufficient_funds".into();
            }
        }
        if pending {
            *self.pending_out.entry(from).or_default() += amount;
        } else {
            *self.posted.entry(from).or_default() -= amount;
            *self.posted.entry(to).or_default() += amount;
        }
        let state = if pending { "pending" } else { "posted" };
        self.transfers
            .insert(id, (from, to, amount, pending, linked, state.into()));
        "created".into()
    }

    fn resolve(&mut self, id: u8, post: Option<Option<i64>>) -> String {
        let Some((from, to, amount, pending, _, state)) = self.transfers.get(&id).cloned() else {
            return "transfer_not_found".into();
        };
        if !pending {
            return "not_pending".into();
        }
        if state != "pending" {
            return "already_resolved".into();
        }
        let posted = match post {
            Some(amount_opt) => amount_opt.unwrap_or(amount),
            None => 0,
        };
        if post.is_some() && (posted > amount) {
            return "amount_exceeds_pending".into();
        }
        *self.pending_out.entry(from).or_default() -= amount;
        *self.posted.entry(from).or_default() -= posted;
        *self.posted.entry(to).or_default() += posted;
        let new_state = if post.is_some() { "posted" } else { "voided" };
        self.transfers.get_mut(&id).unwrap().5 = new_state.into();
        new_state.into()
    }
}

fn address(members: &[String], a: u8) -> String {
    match a {
        3 => "system:issuance".into(),
        4 => "system:redemption".into(),
        m => format!("member:{}", members[m as usize]),
    }
}

async fn random_operation_sequences_match_a_model(app: TestApp) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let transfer = (
        0u8..12,
        0u8..ACCOUNTS,
        0u8..ACCOUNTS,
        1i64..60,
        any::<bool>(),
        any::<bool>(),
    );
    let op = prop_oneof![
        4 => proptest::collection::vec(transfer, 1..4).prop_map(ModelOp::Create),
        1 => (0u8..12, proptest::option::of(1i64..60)).prop_map(|(id, a)| ModelOp::Post(id, a)),
        1 => (0u8..12).prop_map(ModelOp::Void),
    ];
    let strategy = proptest::collection::vec(op, 1..25);
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let app = Arc::new(app);
    let handle = tokio::runtime::Handle::current();
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&strategy, |ops| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let app = app.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async move {
                // Each case works in its own members and id space.
                let members: Vec<String> = futures::future::join_all(
                    (0..3).map(|i| { let app = app.clone(); async move { app.member(&format!("c{n}-m{i}")).await } }),
                ).await;
                let mut model = Model::default();
                let id = |i: u8| format!("c{n}-t{i}");
                for op in ops {
                    match op {
                        ModelOp::Create(list) => {
                            let len = list.len();
                            let body: Vec<Value> = list
                                .iter()
                                .enumerate()
                                .map(|(k, (i, f, to, a, p, l))| {
                                    json!({"id": id(*i), "from": address(&members, *f), "to": address(&members, *to),
                                           "asset": "points", "amount": a, "code": "prop", "pending": p,
                                           "linked": *l && k + 1 < len})
                                })
                                .collect();
                            let got = submit(&app, body).await;
                            // Model the request: linked chains all-or-nothing.
                            let mut expected = Vec::new();
                            let mut k = 0;
                            while k < len {
                                let mut end = k;
                                while end + 1 < len && list[end].5 { end += 1; }
                                let snapshot = (model.posted.clone(), model.pending_out.clone(), model.transfers.clone());
                                let mut chain = Vec::new();
                                let mut failed_at = None;
                                for (j, (i, f, to, a, p, l)) in list[k..=end].iter().enumerate() {
                                    let linked = *l && k + j + 1 < len;
                                    let status = model.create(*i, *f, *to, *a, *p, linked);
                                    let ok = status == "created" || status == "exists";
                                    chain.push(status);
                                    if !ok && end > k { failed_at = Some(j); break; }
                                }
                                if let Some(at) = failed_at {
                                    model.posted = snapshot.0; model.pending_out = snapshot.1; model.transfers = snapshot.2;
                                    for j in 0..=(end - k) {
                                        expected.push(if j == at { chain[at].clone() } else { "linked_transfer_failed".into() });
                                    }
                                } else {
                                    expected.extend(chain);
                                }
                                k = end + 1;
                            }
                            prop_assert_eq!(got, expected);
                        }
                        ModelOp::Post(i, amount) => {
                            let body = match amount { Some(a) => json!({"amount": a}), None => json!({}) };
                            let reply = app.post(&format!("/v1/ledger/transfers/{}/post", id(i)), &body).await;
                            let expected = model.resolve(i, Some(amount));
                            let got = reply.body["status"].as_str().map(str::to_owned)
                                .or_else(|| reply.body["error"]["code"].as_str().map(|c| if c == "not_found" { "transfer_not_found".to_owned() } else { c.to_owned() }))
                                .unwrap();
                            prop_assert_eq!(got, expected);
                        }
                        ModelOp::Void(i) => {
                            let reply = app.post(&format!("/v1/ledger/transfers/{}/void", id(i)), &json!({})).await;
                            let expected = model.resolve(i, None);
                            let got = reply.body["status"].as_str().map(str::to_owned)
                                .or_else(|| reply.body["error"]["code"].as_str().map(|c| if c == "not_found" { "transfer_not_found".to_owned() } else { c.to_owned() }))
                                .unwrap();
                            prop_assert_eq!(got, expected);
                        }
                    }
                    let report = app.get("/v1/ledger/verify").await;
                    prop_assert_eq!(&report.body["ok"], &json!(true), "{}", report.body);
                }
                for (k, member) in members.iter().enumerate() {
                    let points = balance(&app, member, "points").await;
                    let k = k as u8;
                    prop_assert_eq!(points["balance"].as_i64().unwrap(), model.posted.get(&k).copied().unwrap_or(0));
                    prop_assert_eq!(points["pending_debits"].as_i64().unwrap(), model.pending_out.get(&k).copied().unwrap_or(0));
                }
                Ok(())
            })
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// All of a member's transfers, paged `limit` at a time (optionally one asset only).
async fn page_through(app: &TestApp, member: &str, query: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut path = format!("/v1/members/{member}/transfers?limit={limit}{query}");
    loop {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let data = reply.body["data"].as_array().unwrap();
        assert!(data.len() <= limit);
        seen.extend(data.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match reply.body["next_cursor"].as_str() {
            Some(c) => {
                path = format!("/v1/members/{member}/transfers?limit={limit}{query}&cursor={c}")
            }
            None => return seen,
        }
    }
}

async fn history_lists_every_transfer_once(app: TestApp) {
    let m = app.member("a").await;
    let other = app.member("b").await;
    let addr = format!("member:{m}");
    let other_addr = format!("member:{other}");
    let mut points = Vec::new();
    for i in 0..6 {
        let id = format!("grant-{i}");
        submit(&app, vec![t(&id, "system:issuance", &addr, 100)]).await;
        points.push(id);
    }
    let mut top_up = t("top-up", "system:cash_in", &addr, 500);
    top_up["asset"] = json!("wallet_principal");
    submit(&app, vec![top_up]).await;
    // A linked chain that fails leaves no trace in the history.
    let mut chain = t("chain-1", &addr, &other_addr, 10);
    chain["linked"] = json!(true);
    let statuses = submit(
        &app,
        vec![chain, t("chain-2", &addr, "system:redemption", 100_000)],
    )
    .await;
    assert_eq!(statuses, ["linked_transfer_failed", "insufficient_funds"]);
    // A pending transfer is listed once, with its resolution.
    let mut hold = t("hold", &addr, "system:redemption", 50);
    hold["pending"] = json!(true);
    submit(&app, vec![hold]).await;
    points.push("hold".into());
    assert_eq!(
        app.post("/v1/ledger/transfers/hold/void", &json!({}))
            .await
            .status,
        StatusCode::OK
    );
    // Concurrent callers: batched by the executor, each transfer still listed once.
    let mut calls = Vec::new();
    for i in 0..40 {
        let (from, to) = if i % 2 == 0 {
            (addr.clone(), other_addr.clone())
        } else {
            (other_addr.clone(), addr.clone())
        };
        let id = format!("c{i}");
        let body = json!({ "transfers": [t(&id, &from, &to, 1)] });
        let request = app.request(
            axum::http::Method::POST,
            "/v1/ledger/transfers",
            Some(&body),
        );
        calls.push(app.send(request));
    }
    let mut created = 0;
    for (i, reply) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        if reply.body["results"][0]["status"] == "created" {
            created += 1;
            points.push(format!("c{i}"));
        }
    }
    assert!(created >= 20, "{created}");

    let all = page_through(&app, &m, "", 7).await;
    let mut expected: Vec<String> = points.clone();
    expected.push("top-up".into());
    let mut sorted_all = all.clone();
    sorted_all.sort();
    expected.sort();
    assert_eq!(sorted_all, expected, "every transfer once, nothing else");
    let only_points = page_through(&app, &m, "&asset=points", 3).await;
    assert_eq!(only_points.len(), points.len());
    assert!(!only_points.contains(&"top-up".to_owned()));
    // Transfers made one after another come newest first.
    let grants: Vec<&String> = only_points
        .iter()
        .filter(|id| id.starts_with("grant-"))
        .collect();
    assert_eq!(
        grants,
        ["grant-5", "grant-4", "grant-3", "grant-2", "grant-1", "grant-0"]
    );
    let hold = app
        .get(&format!("/v1/members/{m}/transfers?limit=200"))
        .await;
    let hold = hold.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "hold")
        .cloned()
        .unwrap();
    assert_eq!(hold["status"], "voided");

    // A cursor handed out before new transfers arrive continues where it was: the new ones
    // are on the next first page, not in the middle of this walk.
    let first = app
        .get(&format!("/v1/members/{m}/transfers?asset=points&limit=4"))
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    submit(&app, vec![t("late", "system:issuance", &addr, 1)]).await;
    let rest = app
        .get(&format!(
            "/v1/members/{m}/transfers?asset=points&limit=200&cursor={cursor}"
        ))
        .await;
    let mut walked: Vec<String> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.body["data"].as_array().unwrap())
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(walked, only_points);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    let newest = app
        .get(&format!("/v1/members/{m}/transfers?asset=points&limit=1"))
        .await;
    assert_eq!(newest.body["data"][0]["id"], "late");
    walked.clear();

    for bad in ["zz", "00", "706f696e74733d"] {
        let reply = app
            .get(&format!("/v1/members/{m}/transfers?cursor={bad}"))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.body["error"]["details"]["field"], "cursor");
    }
    verify_ok(&app).await;
}

async fn verify_catches_a_broken_history_list(app: TestApp) {
    let m = app.member("a").await;
    let addr = format!("member:{m}");
    for i in 0..3 {
        submit(
            &app,
            vec![t(&format!("g{i}"), "system:issuance", &addr, 10)],
        )
        .await;
    }
    verify_ok(&app).await;
    // Cut the member's list after g1: g0 would vanish from the member's history.
    sqlx::query("UPDATE ledger_transfer SET credit_prev = NULL WHERE id = 'g1'")
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], false, "{}", reply.body);
    let kinds: Vec<&str> = reply.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["history_list_broken"], "{}", reply.body);
    assert_eq!(
        reply.body["violations"][0]["detail"]["address"],
        addr.as_str()
    );
    assert_eq!(reply.body["violations"][0]["detail"]["transfers"], 3);
    assert_eq!(reply.body["violations"][0]["detail"]["list_ends"], 2);
    // A link to a transfer that does not exist is reported as such.
    sqlx::query("UPDATE ledger_transfer SET debit_prev = 'nope' WHERE id = 'g2'")
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();
    let reply = app.get("/v1/ledger/verify").await;
    let kinds: Vec<&str> = reply.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"history_link_invalid"), "{}", reply.body);
}
