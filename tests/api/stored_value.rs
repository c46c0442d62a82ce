//! Stored value (储值) and top-up plans (充值送): plans, top-ups with their ledger transfers,
//! payment-reference idempotency (also under 20 concurrent duplicates), the cap, the three
//! spend policies, insufficient funds, spend and top-up refunds, settings and tenant isolation.
//! Every scenario ends with `GET /v1/ledger/verify`.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    stored_value_plans_are_validated_and_listed,
    stored_value_topup_credits_principal_and_bonus,
    stored_value_topup_is_idempotent_on_payment_ref,
    stored_value_twenty_concurrent_duplicate_topups_credit_once,
    stored_value_topups_beyond_the_cap_are_refused,
    stored_value_proportional_spend_splits_by_balance_ratio,
    stored_value_bonus_first_and_principal_first_policies,
    stored_value_spend_beyond_the_wallet_is_refused,
    stored_value_spend_refunds_return_the_spends_own_ratio,
    stored_value_topup_refund_claws_back_what_is_left_of_the_bonus,
    stored_value_settings_are_validated,
    stored_value_bad_input_gets_4xx,
    stored_value_tenants_do_not_see_each_other,
);

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn plan(app: &TestApp, pay: i64, bonus: i64) -> String {
    let reply = app
        .post(
            "/v1/topup-plans",
            &json!({"name": format!("充{pay}送{bonus}"), "pay": pay, "bonus": bonus}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn topup(app: &TestApp, member: &str, plan: &str, payment_ref: &str) -> (StatusCode, Value) {
    let reply = app
        .post(
            &format!("/v1/members/{member}/topups"),
            &json!({"plan_id": plan, "payment_ref": payment_ref}),
        )
        .await;
    (reply.status, reply.body)
}

async fn spend(app: &TestApp, member: &str, amount: i64, reference: &str) -> (StatusCode, Value) {
    let reply = app
        .post(
            &format!("/v1/members/{member}/wallet/spend"),
            &json!({"amount": amount, "reference": reference}),
        )
        .await;
    (reply.status, reply.body)
}

async fn refund(app: &TestApp, member: &str, body: Value) -> (StatusCode, Value) {
    let reply = app
        .post(&format!("/v1/members/{member}/wallet/refunds"), &body)
        .await;
    (reply.status, reply.body)
}

/// (principal, bonus) balances as the ledger shows them.
async fn wallet_balances(app: &TestApp, member: &str) -> (i64, i64) {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    (
        reply.body["wallet_principal"]["balance"].as_i64().unwrap(),
        reply.body["wallet_bonus"]["balance"].as_i64().unwrap(),
    )
}

async fn set_policy(app: &TestApp, policy: &str) {
    let reply = app
        .call(
            Method::PUT,
            "/v1/program/stored-value",
            Some(&json!({"spend_policy": policy})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["spend_policy"], policy);
}

async fn stored_value_plans_are_validated_and_listed(app: TestApp) {
    let id = plan(&app, 10_000, 2_000).await;
    let free = plan(&app, 5_000, 0).await;
    for bad in [
        json!({"name": "x", "pay": 0, "bonus": 1}),
        json!({"name": "x", "pay": -5, "bonus": 1}),
        json!({"name": "x", "pay": 100, "bonus": -1}),
        json!({"name": "  ", "pay": 100, "bonus": 1}),
    ] {
        let reply = app.post("/v1/topup-plans", &bad).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.body["error"]["code"], "validation_failed");
    }
    for bad in [
        json!({"name": "x", "pay": "100", "bonus": 1}),
        json!({"name": "x", "pay": 100, "bonus": 1, "extra": true}),
        json!({"name": "x", "pay": 1.5, "bonus": 1}),
    ] {
        let reply = app.post("/v1/topup-plans", &bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["error"]["code"], "invalid_request");
    }
    let list = app.get("/v1/topup-plans").await;
    assert_eq!(list.status, StatusCode::OK);
    let plans = list.body.as_array().unwrap();
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0]["id"], id.as_str());
    assert_eq!(plans[0]["pay"], 10_000);
    assert_eq!(plans[0]["bonus"], 2_000);
    assert_eq!(plans[0]["active"], true);
    assert_eq!(plans[1]["id"], free.as_str());
    assert_eq!(plans[1]["bonus"], 0);
    verify_ok(&app).await;
}

async fn stored_value_topup_credits_principal_and_bonus(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    let (status, body) = topup(&app, &m, &p, "wx-1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["member_id"], m.as_str());
    assert_eq!(body["plan_id"], p.as_str());
    assert_eq!(body["payment_ref"], "wx-1");
    assert_eq!(body["pay"], 10_000);
    assert_eq!(body["bonus"], 2_000);
    assert_eq!(body["status"], "completed");
    assert!(body["created_at"].is_string());
    assert_eq!(wallet_balances(&app, &m).await, (10_000, 2_000));
    let cash_in = app.get("/v1/ledger/accounts/system:cash_in").await;
    assert_eq!(cash_in.body["wallet_principal"]["balance"], -10_000);
    let issuance = app.get("/v1/ledger/accounts/system:issuance").await;
    assert_eq!(issuance.body["wallet_bonus"]["balance"], -2_000);
    // Deterministic, linked transfer ids derived from the top-up.
    let id = body["id"].as_str().unwrap();
    let principal = app
        .get(&format!("/v1/ledger/transfers/{id}:principal"))
        .await;
    assert_eq!(principal.status, StatusCode::OK);
    assert_eq!(principal.body["linked"], true);
    let bonus = app.get(&format!("/v1/ledger/transfers/{id}:bonus")).await;
    assert_eq!(bonus.body["amount"], 2_000);
    // A plan without bonus writes no bonus transfer.
    let no_bonus = plan(&app, 3_000, 0).await;
    let (status, body) = topup(&app, &m, &no_bonus, "wx-2").await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap();
    let missing = app.get(&format!("/v1/ledger/transfers/{id}:bonus")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(wallet_balances(&app, &m).await, (13_000, 2_000));
    let wallet = app.get(&format!("/v1/members/{m}/wallet")).await;
    assert_eq!(wallet.status, StatusCode::OK);
    assert_eq!(wallet.body["principal"], 13_000);
    assert_eq!(wallet.body["bonus"], 2_000);
    assert_eq!(wallet.body["total"], 15_000);
    let topups = wallet.body["topups"].as_array().unwrap();
    assert_eq!(topups.len(), 2);
    assert_eq!(topups[0]["payment_ref"], "wx-2", "newest first");
    let events = app.get("/v1/events?type=wallet.topped_up").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 2);
    verify_ok(&app).await;
}

async fn stored_value_topup_is_idempotent_on_payment_ref(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    let other_plan = plan(&app, 20_000, 5_000).await;
    let (first_status, first) = topup(&app, &m, &p, "wx-1").await;
    assert_eq!(first_status, StatusCode::CREATED);
    let (again_status, again) = topup(&app, &m, &p, "wx-1").await;
    assert_eq!(again_status, first_status);
    assert_eq!(again, first);
    // Even with another plan, the reference names the original payment.
    let (status, body) = topup(&app, &m, &other_plan, "wx-1").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, first);
    assert_eq!(wallet_balances(&app, &m).await, (10_000, 2_000));
    let events = app.get("/v1/events?type=wallet.topped_up").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
    verify_ok(&app).await;
}

async fn stored_value_twenty_concurrent_duplicate_topups_credit_once(app: TestApp) {
    let members = [app.member("a").await, app.member("b").await];
    let p = plan(&app, 10_000, 2_000).await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..20 {
        // Same reference, half of the calls for another member: one top-up in all.
        let (app, p, m) = (app.clone(), p.clone(), members[i % 2].clone());
        tasks.push(tokio::spawn(
            async move { topup(&app, &m, &p, "wx-race").await },
        ));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        bodies.push(body);
    }
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "all return the original"
    );
    let winner = bodies[0]["member_id"].as_str().unwrap().to_owned();
    let loser = members.iter().find(|m| **m != winner).unwrap();
    assert_eq!(wallet_balances(&app, &winner).await, (10_000, 2_000));
    assert_eq!(wallet_balances(&app, loser).await, (0, 0));
    verify_ok(&app).await;
}

async fn stored_value_topups_beyond_the_cap_are_refused(app: TestApp) {
    let settings = app.get("/v1/program/stored-value").await;
    assert_eq!(
        settings.body,
        json!({"spend_policy": "proportional", "cap": 500_000})
    );
    let m = app.member("a").await;
    let big = plan(&app, 400_000, 80_000).await;
    let small = plan(&app, 10_000, 2_000).await;
    assert_eq!(topup(&app, &m, &big, "p1").await.0, StatusCode::CREATED);
    // 480,000 + 12,000 = 492,000 fits; another 12,000 does not.
    assert_eq!(topup(&app, &m, &small, "p2").await.0, StatusCode::CREATED);
    let (status, body) = topup(&app, &m, &small, "p3").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "stored_value_cap_exceeded");
    assert_eq!(wallet_balances(&app, &m).await, (410_000, 82_000));
    // The refused reference stays free; spending makes room; a lower cap refuses again.
    assert_eq!(spend(&app, &m, 100_000, "o1").await.0, StatusCode::OK);
    assert_eq!(topup(&app, &m, &small, "p3").await.0, StatusCode::CREATED);
    let reply = app
        .call(
            Method::PUT,
            "/v1/program/stored-value",
            Some(&json!({"cap": 1_000})),
        )
        .await;
    assert_eq!(
        reply.body,
        json!({"spend_policy": "proportional", "cap": 1_000})
    );
    let other = app.member("b").await;
    let (status, body) = topup(&app, &other, &small, "p4").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "stored_value_cap_exceeded");
    verify_ok(&app).await;
}

async fn stored_value_proportional_spend_splits_by_balance_ratio(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    topup(&app, &m, &p, "wx-1").await;
    // bonus part = floor(5,000 × 2,000 / 12,000) = 833; principal 4,167.
    let (status, body) = spend(&app, &m, 5_000, "order-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["principal"], 4_167);
    assert_eq!(body["bonus"], 833);
    assert!(body["spend_id"].as_str().unwrap().starts_with("spd_"));
    assert_eq!(wallet_balances(&app, &m).await, (5_833, 1_167));
    // The same reference again: the original, nothing debited.
    let (status, again) = spend(&app, &m, 5_000, "order-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, body);
    assert_eq!(wallet_balances(&app, &m).await, (5_833, 1_167));
    // One fen: floor(1 × 1,167 / 7,000) = 0 bonus.
    let (_, one) = spend(&app, &m, 1, "order-2").await;
    assert_eq!(
        (one["principal"].as_i64(), one["bonus"].as_i64()),
        (Some(1), Some(0))
    );
    // All the rest: both parts exactly.
    let (_, rest) = spend(&app, &m, 6_999, "order-3").await;
    assert_eq!(rest["principal"], 5_832);
    assert_eq!(rest["bonus"], 1_167);
    assert_eq!(wallet_balances(&app, &m).await, (0, 0));
    let redemption = app.get("/v1/ledger/accounts/system:redemption").await;
    assert_eq!(redemption.body["wallet_principal"]["balance"], 10_000);
    assert_eq!(redemption.body["wallet_bonus"]["balance"], 2_000);
    verify_ok(&app).await;
}

async fn stored_value_bonus_first_and_principal_first_policies(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    topup(&app, &m, &p, "wx-1").await;
    set_policy(&app, "bonus_first").await;
    let (_, body) = spend(&app, &m, 2_500, "o1").await;
    assert_eq!(
        (body["principal"].as_i64(), body["bonus"].as_i64()),
        (Some(500), Some(2_000))
    );
    topup(&app, &m, &p, "wx-2").await;
    set_policy(&app, "principal_first").await;
    // Wallet: 19,500 principal + 2,000 bonus.
    let (_, body) = spend(&app, &m, 20_000, "o2").await;
    assert_eq!(
        (body["principal"].as_i64(), body["bonus"].as_i64()),
        (Some(19_500), Some(500))
    );
    assert_eq!(wallet_balances(&app, &m).await, (0, 1_500));
    verify_ok(&app).await;
}

async fn stored_value_spend_beyond_the_wallet_is_refused(app: TestApp) {
    let m = app.member("a").await;
    let (status, body) = spend(&app, &m, 1, "o0").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "insufficient_funds");
    let p = plan(&app, 10_000, 2_000).await;
    topup(&app, &m, &p, "wx-1").await;
    let (status, body) = spend(&app, &m, 12_001, "o1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "insufficient_funds");
    assert_eq!(wallet_balances(&app, &m).await, (10_000, 2_000));
    // The refused reference can be used once the wallet covers it.
    let (status, _) = spend(&app, &m, 12_000, "o1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(wallet_balances(&app, &m).await, (0, 0));
    verify_ok(&app).await;
}

async fn stored_value_spend_refunds_return_the_spends_own_ratio(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    topup(&app, &m, &p, "wx-1").await;
    let (_, s) = spend(&app, &m, 6_000, "o1").await;
    // floor(6,000 × 2,000 / 12,000) = 1,000 bonus, 5,000 principal.
    assert_eq!(
        (s["principal"].as_i64(), s["bonus"].as_i64()),
        (Some(5_000), Some(1_000))
    );
    let spend_id = s["spend_id"].as_str().unwrap();
    let (status, r1) = refund(
        &app,
        &m,
        json!({"spend_id": spend_id, "amount": 1_001, "reference": "rf-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{r1}");
    // floor(1,001 × 1,000 / 6,000) = 166 bonus back, 835 principal.
    assert_eq!(
        (r1["principal"].as_i64(), r1["bonus"].as_i64()),
        (Some(835), Some(166))
    );
    assert_eq!(r1["kind"], "spend");
    let (status, again) = refund(
        &app,
        &m,
        json!({"spend_id": spend_id, "amount": 1_001, "reference": "rf-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again, r1, "same reference: the original refund");
    let (status, body) = refund(&app, &m, json!({"spend_id": spend_id, "amount": 5_000})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "refund_exceeds_spend");
    // The rest (no amount): exactly what the spend drew from each part, in total.
    let (status, r2) = refund(&app, &m, json!({"spend_id": spend_id})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(r2["amount"], 4_999);
    assert_eq!(
        (r2["principal"].as_i64(), r2["bonus"].as_i64()),
        (Some(4_165), Some(834))
    );
    assert_eq!(wallet_balances(&app, &m).await, (10_000, 2_000));
    let (status, body) = refund(&app, &m, json!({"spend_id": spend_id, "amount": 1})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "refund_exceeds_spend");
    // Another member's spend is not found.
    let other = app.member("b").await;
    let (status, _) = refund(&app, &other, json!({"spend_id": spend_id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    verify_ok(&app).await;
}

async fn stored_value_topup_refund_claws_back_what_is_left_of_the_bonus(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    let (_, t) = topup(&app, &m, &p, "wx-1").await;
    let topup_id = t["id"].as_str().unwrap();
    set_policy(&app, "bonus_first").await;
    // 1,500 of the 2,000 bonus is spent; the principal is untouched.
    let (_, s) = spend(&app, &m, 1_500, "o1").await;
    assert_eq!(
        (s["principal"].as_i64(), s["bonus"].as_i64()),
        (Some(0), Some(1_500))
    );
    let (status, r) = refund(&app, &m, json!({"topup_id": topup_id})).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["kind"], "topup");
    assert_eq!(r["principal"], 10_000);
    assert_eq!(
        r["bonus"], 500,
        "only what is left of the bonus is clawed back"
    );
    assert_eq!(wallet_balances(&app, &m).await, (0, 0));
    let refunds = app.get("/v1/ledger/accounts/system:refunds").await;
    assert_eq!(refunds.body["wallet_principal"]["balance"], 10_000);
    // Once per top-up: the repeat returns the original and moves nothing.
    let (status, again) = refund(&app, &m, json!({"topup_id": topup_id})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again, r);
    let wallet = app.get(&format!("/v1/members/{m}/wallet")).await;
    assert_eq!(wallet.body["topups"][0]["status"], "refunded");
    // A top-up whose principal was partly spent is refused until the spend is refunded.
    let (_, t2) = topup(&app, &m, &p, "wx-2").await;
    set_policy(&app, "principal_first").await;
    let (_, s2) = spend(&app, &m, 3_000, "o2").await;
    let (status, body) = refund(&app, &m, json!({"topup_id": t2["id"]})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "insufficient_funds");
    assert_eq!(wallet_balances(&app, &m).await, (7_000, 2_000));
    let (status, _) = refund(&app, &m, json!({"spend_id": s2["spend_id"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, r2) = refund(&app, &m, json!({"topup_id": t2["id"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (r2["principal"].as_i64(), r2["bonus"].as_i64()),
        (Some(10_000), Some(2_000))
    );
    assert_eq!(wallet_balances(&app, &m).await, (0, 0));
    verify_ok(&app).await;
}

async fn stored_value_settings_are_validated(app: TestApp) {
    for bad in [json!({"spend_policy": "random"}), json!({"cap": -1})] {
        let reply = app
            .call(Method::PUT, "/v1/program/stored-value", Some(&bad))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.body["error"]["code"], "validation_failed");
    }
    let reply = app
        .call(
            Method::PUT,
            "/v1/program/stored-value",
            Some(&json!({"spend_policy": "bonus_first", "cap": 100_000})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app.get("/v1/program/stored-value").await;
    assert_eq!(
        reply.body,
        json!({"spend_policy": "bonus_first", "cap": 100_000})
    );
    verify_ok(&app).await;
}

async fn stored_value_bad_input_gets_4xx(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    let cases = [
        (
            format!("/v1/members/{m}/topups"),
            json!({"plan_id": "tpl_nope", "payment_ref": "x"}),
            404,
        ),
        (
            format!("/v1/members/{m}/topups"),
            json!({"plan_id": p, "payment_ref": ""}),
            422,
        ),
        (
            format!("/v1/members/{m}/topups"),
            json!({"plan_id": p}),
            400,
        ),
        (
            "/v1/members/mem_bad/topups".to_owned(),
            json!({"plan_id": p, "payment_ref": "x"}),
            404,
        ),
        (
            format!("/v1/members/{m}/wallet/spend"),
            json!({"amount": 0, "reference": "o"}),
            422,
        ),
        (
            format!("/v1/members/{m}/wallet/spend"),
            json!({"amount": -3, "reference": "o"}),
            422,
        ),
        (
            format!("/v1/members/{m}/wallet/spend"),
            json!({"amount": 3, "reference": ""}),
            422,
        ),
        (
            format!("/v1/members/{m}/wallet/spend"),
            json!({"amount": 1e30, "reference": "o"}),
            400,
        ),
        (format!("/v1/members/{m}/wallet/refunds"), json!({}), 422),
        (
            format!("/v1/members/{m}/wallet/refunds"),
            json!({"spend_id": "spd_x", "topup_id": "top_x"}),
            422,
        ),
        (
            format!("/v1/members/{m}/wallet/refunds"),
            json!({"spend_id": "spd_x"}),
            404,
        ),
        (
            format!("/v1/members/{m}/wallet/refunds"),
            json!({"topup_id": "top_x"}),
            404,
        ),
        (
            format!("/v1/members/{m}/wallet/refunds"),
            json!({"topup_id": "top_x", "amount": 5}),
            422,
        ),
    ];
    for (path, body, expected) in cases {
        let reply = app.post(&path, &body).await;
        assert_eq!(
            reply.status.as_u16(),
            expected,
            "{path} {body} {}",
            reply.body
        );
        assert!(reply.body["error"]["code"].is_string());
    }
    assert_eq!(
        app.get("/v1/members/mem_bad/wallet").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(wallet_balances(&app, &m).await, (0, 0));
    verify_ok(&app).await;
}

async fn stored_value_tenants_do_not_see_each_other(app: TestApp) {
    let m = app.member("a").await;
    let p = plan(&app, 10_000, 2_000).await;
    let (_, t) = topup(&app, &m, &p, "wx-1").await;
    let (_, other) = app.other_tenant().await;
    let as_other = |method: Method, path: &str, body: Option<Value>| {
        crate::support::build(method, path, Some(&other), body.as_ref(), None)
    };
    let reply = app
        .send(as_other(Method::GET, "/v1/topup-plans", None))
        .await;
    assert_eq!(reply.body, json!([]));
    let reply = app
        .send(as_other(
            Method::GET,
            &format!("/v1/members/{m}/wallet"),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(as_other(
            Method::POST,
            &format!("/v1/members/{m}/wallet/spend"),
            Some(json!({"amount": 1, "reference": "steal"})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(as_other(
            Method::POST,
            &format!("/v1/members/{m}/wallet/refunds"),
            Some(json!({"topup_id": t["id"]})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // The other tenant's own member cannot use this tenant's plan, and payment references
    // are per tenant.
    let reply = app
        .send(as_other(
            Method::POST,
            "/v1/members",
            Some(json!({"external_id": "x", "name": "x"})),
        ))
        .await;
    let theirs = reply.body["id"].as_str().unwrap().to_owned();
    let reply = app
        .send(as_other(
            Method::POST,
            &format!("/v1/members/{theirs}/topups"),
            Some(json!({"plan_id": p, "payment_ref": "wx-1"})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(as_other(
            Method::POST,
            "/v1/topup-plans",
            Some(json!({"name": "theirs", "pay": 100, "bonus": 0})),
        ))
        .await;
    let their_plan = reply.body["id"].as_str().unwrap().to_owned();
    let reply = app
        .send(as_other(
            Method::POST,
            &format!("/v1/members/{theirs}/topups"),
            Some(json!({"plan_id": their_plan, "payment_ref": "wx-1"})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_ne!(reply.body["id"], t["id"]);
    assert_eq!(wallet_balances(&app, &m).await, (10_000, 2_000));
    verify_ok(&app).await;
}
