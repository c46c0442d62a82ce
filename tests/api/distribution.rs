//! Distribution (分销): settings within the legal limit (a third level refused), promoters and
//! their approval, share codes and bindings (first touch within the window, moved after it,
//! never to oneself), commissions through real checkout payments (two levels pay exactly two
//! promoters, self-purchase off pays nothing, partial then full refunds, a refund after release
//! leaving a debt the next commission pays), withdrawals (approved, paid, failed, rejected),
//! concurrent payments staying exact, reports and tenant isolation. Scenarios that move money
//! end with `GET /v1/ledger/verify`.

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser};
use crate::support::{build, TestApp};

backend_tests!(
    distribution_settings_refuse_a_third_level_and_bad_values,
    distribution_two_levels_pay_exactly_two_promoters_never_a_third,
    distribution_first_touch_binding_holds_within_the_window_and_moves_after,
    distribution_self_purchase_off_pays_nothing_and_on_pays_both_levels,
    distribution_partial_then_full_refund_reduces_then_voids,
    distribution_refund_after_release_leaves_a_debt_the_next_commission_pays,
    distribution_withdrawals_are_approved_paid_failed_and_rejected,
    distribution_concurrent_payments_stay_exact,
    distribution_manual_approval_suspension_and_product_rates,
    distribution_reports_sum_what_promoters_earned,
    distribution_wallet_bonus_money_earns_nothing,
    distribution_console_page_shows_the_summary_and_decides_applications,
    distribution_other_tenants_ids_are_404,
);

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

async fn put(app: &TestApp, path: &str, body: &Value) -> crate::support::Reply {
    app.call(Method::PUT, path, Some(body)).await
}

/// Enable distribution with `extra` settings on top.
async fn enable(app: &TestApp, extra: Value) -> Value {
    let mut body = json!({ "enabled": true });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let reply = put(app, "/v1/distribution/settings", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A member made a promoter (approved under auto approval); returns the promoter id.
async fn promoter(app: &TestApp, external_id: &str, invited_by: Option<&str>) -> (String, String) {
    let member = app.member(external_id).await;
    let mut body = json!({ "member_id": member });
    if let Some(inviter) = invited_by {
        body["invited_by_promoter_id"] = json!(inviter);
    }
    let reply = app.post("/v1/promoters", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), member)
}

async fn share_code(app: &TestApp, promoter: &str) -> String {
    let reply = app
        .post(&format!("/v1/promoters/{promoter}/share-code"), &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["link"],
        format!("/s/{}", reply.body["code"].as_str().unwrap())
    );
    reply.body["code"].as_str().unwrap().to_owned()
}

async fn bind(app: &TestApp, member: &str, code: &str) -> crate::support::Reply {
    app.post(
        "/v1/distribution/bindings",
        &json!({ "member_id": member, "share_code": code }),
    )
    .await
}

/// A customer bound to `promoter`.
async fn customer(app: &TestApp, external_id: &str, promoter: &str) -> String {
    let member = app.member(external_id).await;
    let code = share_code(app, promoter).await;
    let reply = bind(app, &member, &code).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["promoter_id"], promoter);
    member
}

async fn product(app: &TestApp, sku: &str, price: i64) -> String {
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": sku, "sku": sku, "price": price, "stock": 1000}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Place and pay (externally) an order of one unit of `product`; returns the order id.
async fn paid_order(app: &TestApp, member: &str, product: &str) -> String {
    let order = app
        .post(
            "/v1/orders",
            &json!({"member_id": member, "items": [{"product_id": product, "qty": 1}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let id = order.body["id"].as_str().unwrap().to_owned();
    let paid = app
        .post(
            &format!("/v1/orders/{id}/payments"),
            &json!({"method": "external", "reference": format!("pay-{id}")}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    id
}

async fn refund(app: &TestApp, order: &str, amount: Option<i64>) {
    let mut body = json!({ "reason": "returned" });
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    let reply = app
        .post(&format!("/v1/orders/{order}/refunds"), &body)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

async fn commissions(app: &TestApp, promoter: &str, status: Option<&str>) -> Vec<Value> {
    let query = status.map(|s| format!("?status={s}")).unwrap_or_default();
    let reply = app
        .get(&format!("/v1/promoters/{promoter}/commissions{query}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

/// (balance, pending credits, available) of a member's commission.
async fn commission_balance(app: &TestApp, member: &str) -> (i64, i64, i64) {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let c = &reply.body["commission"];
    (
        c["balance"].as_i64().unwrap(),
        c["pending_credits"].as_i64().unwrap(),
        c["available"].as_i64().unwrap(),
    )
}

async fn detail(app: &TestApp, promoter: &str) -> Value {
    let reply = app.get(&format!("/v1/promoters/{promoter}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// Pass the return window (7 days by default) and run the scheduler.
async fn pass_return_window(app: &TestApp) {
    app.clock.advance(SignedDuration::from_hours(24 * 7 + 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
}

async fn withdraw(app: &TestApp, promoter: &str, amount: i64) -> crate::support::Reply {
    app.post(
        &format!("/v1/promoters/{promoter}/withdrawals"),
        &json!({ "amount": amount }),
    )
    .await
}

async fn distribution_settings_refuse_a_third_level_and_bad_values(app: TestApp) {
    let reply = app.get("/v1/distribution/settings").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["enabled"], false);
    assert_eq!(reply.body["levels"], 1);
    assert_eq!(reply.body["binding"]["mode"], "first_touch");
    let reply = put(&app, "/v1/distribution/settings", &json!({"levels": 3})).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "depth_exceeds_legal_limit");
    let reply = put(&app, "/v1/distribution/settings", &json!({"levels": 0})).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    for bad in [
        json!({"rates_bp": {"level1": 20000, "level2": 0}}),
        json!({"rates_bp": {"level1": -1, "level2": 0}}),
        json!({"binding": {"mode": "first_touch", "days": 0}}),
        json!({"withdrawal": {"min_amount": 0, "fee_bp": 0, "review": true}}),
        json!({"withdrawal": {"min_amount": 100, "fee_bp": 5000, "review": true}}),
    ] {
        let reply = put(&app, "/v1/distribution/settings", &bad).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
    }
    let reply = put(
        &app,
        "/v1/distribution/settings",
        &json!({"recruiting_bonus": 100}),
    )
    .await;
    assert!(reply.status.is_client_error(), "{}", reply.body);
    // Nothing of the refused updates was kept.
    assert_eq!(app.get("/v1/distribution/settings").await.body["levels"], 1);
    let body = enable(
        &app,
        json!({"levels": 2, "rates_bp": {"level1": 1000, "level2": 500},
               "binding": {"mode": "last_touch", "days": null}}),
    )
    .await;
    assert_eq!(body["levels"], 2);
    assert_eq!(body["binding"]["days"], Value::Null);
    let got = app.get("/v1/distribution/settings").await.body;
    assert_eq!(got, body);
}

async fn distribution_two_levels_pay_exactly_two_promoters_never_a_third(app: TestApp) {
    enable(
        &app,
        json!({"levels": 2, "rates_bp": {"level1": 1000, "level2": 500}}),
    )
    .await;
    let (a, a_member) = promoter(&app, "a", None).await;
    let (b, b_member) = promoter(&app, "b", Some(&a)).await;
    let (c, c_member) = promoter(&app, "c", Some(&b)).await;
    assert_eq!(detail(&app, &b).await["team_size"], 1);
    let x = customer(&app, "x", &c).await;
    let tea = product(&app, "TEA", 3000).await;
    let order = paid_order(&app, &x, &tea).await;
    // Level 1: c earns 10 % of 3,000; level 2: b (who invited c) earns 5 %; a nothing.
    let c_rows = commissions(&app, &c, None).await;
    assert_eq!(c_rows.len(), 1);
    assert_eq!(c_rows[0]["order_id"], order.as_str());
    assert_eq!(c_rows[0]["level"], 1);
    assert_eq!(c_rows[0]["amount"], 300);
    assert_eq!(c_rows[0]["status"], "pending");
    let b_rows = commissions(&app, &b, None).await;
    assert_eq!(b_rows.len(), 1);
    assert_eq!(b_rows[0]["level"], 2);
    assert_eq!(b_rows[0]["amount"], 150);
    assert!(commissions(&app, &a, None).await.is_empty());
    assert_eq!(commission_balance(&app, &c_member).await, (0, 300, 0));
    assert_eq!(commission_balance(&app, &b_member).await, (0, 150, 0));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 0, 0));
    let c_detail = detail(&app, &c).await;
    assert_eq!(c_detail["customers"], 1);
    assert_eq!(c_detail["orders"], 1);
    assert_eq!(c_detail["gmv"], 3000);
    assert_eq!(c_detail["commission"]["pending"], 300);
    // Not a fen before the return window closes.
    app.clock.advance(SignedDuration::from_hours(24 * 7 - 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(commission_balance(&app, &c_member).await, (0, 300, 0));
    app.clock.advance(SignedDuration::from_hours(2));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(commission_balance(&app, &c_member).await, (300, 0, 300));
    assert_eq!(commission_balance(&app, &b_member).await, (150, 0, 150));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 0, 0));
    assert_eq!(
        commissions(&app, &c, Some("available")).await[0]["amount"],
        300
    );
    assert!(commissions(&app, &c, Some("pending")).await.is_empty());
    let c_detail = detail(&app, &c).await;
    assert_eq!(c_detail["commission"]["available"], 300);
    assert_eq!(c_detail["commission"]["pending"], 0);
    // The same payment again pays nothing twice.
    let again = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &json!({"method": "external", "reference": format!("pay-{order}")}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(commissions(&app, &c, None).await.len(), 1);
    assert_eq!(commission_balance(&app, &c_member).await, (300, 0, 300));
    // With one level, only the seller's promoter earns.
    enable(&app, json!({"levels": 1})).await;
    paid_order(&app, &x, &tea).await;
    assert_eq!(commissions(&app, &c, None).await.len(), 2);
    assert_eq!(commissions(&app, &b, None).await.len(), 1);
    verify_ok(&app).await;
}

async fn distribution_first_touch_binding_holds_within_the_window_and_moves_after(app: TestApp) {
    enable(
        &app,
        json!({"binding": {"mode": "first_touch", "days": 30}}),
    )
    .await;
    let (p1, p1_member) = promoter(&app, "p1", None).await;
    let (p2, _) = promoter(&app, "p2", None).await;
    let code1 = share_code(&app, &p1).await;
    let code2 = share_code(&app, &p2).await;
    assert_eq!(share_code(&app, &p1).await, code1, "stable");
    let x = app.member("x").await;
    let none = app.get(&format!("/v1/members/{x}/promoter")).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.body["promoter_id"], Value::Null);
    let first = bind(&app, &x, &code1).await;
    assert_eq!(first.body["promoter_id"], p1.as_str());
    let ends_at = first.body["ends_at"].as_str().unwrap().to_owned();
    // Within the window the first promoter keeps the customer.
    app.clock.advance(SignedDuration::from_hours(24 * 29));
    let second = bind(&app, &x, &code2).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["promoter_id"], p1.as_str());
    let shown = app.get(&format!("/v1/members/{x}/promoter")).await.body;
    assert_eq!(shown["promoter_id"], p1.as_str());
    assert_eq!(shown["ends_at"], ends_at.as_str());
    // After the window, the binding lapses and the next share code wins.
    app.clock.advance(SignedDuration::from_hours(24 * 2));
    let lapsed = app.get(&format!("/v1/members/{x}/promoter")).await.body;
    assert_eq!(lapsed["promoter_id"], Value::Null);
    let moved = bind(&app, &x, &code2).await;
    assert_eq!(moved.body["promoter_id"], p2.as_str());
    // A promoter never binds themselves.
    let own = bind(&app, &p1_member, &code1).await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", own.body);
    // Under last touch the latest share code wins at once.
    enable(
        &app,
        json!({"binding": {"mode": "last_touch", "days": null}}),
    )
    .await;
    let last = bind(&app, &x, &code1).await;
    assert_eq!(last.body["promoter_id"], p1.as_str());
    assert_eq!(last.body["ends_at"], Value::Null);
    // Unknown codes and members.
    let reply = bind(&app, &x, "NOTACODE22").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = bind(&app, "mem_00000000000000000000000000000000", &code1).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

async fn distribution_self_purchase_off_pays_nothing_and_on_pays_both_levels(app: TestApp) {
    enable(
        &app,
        json!({"levels": 2, "rates_bp": {"level1": 1000, "level2": 500},
               "self_purchase_commission": false}),
    )
    .await;
    let (a, a_member) = promoter(&app, "a", None).await;
    let (b, b_member) = promoter(&app, "b", Some(&a)).await;
    let tea = product(&app, "TEA", 2000).await;
    paid_order(&app, &b_member, &tea).await;
    assert!(commissions(&app, &b, None).await.is_empty());
    assert!(commissions(&app, &a, None).await.is_empty());
    assert_eq!(commission_balance(&app, &b_member).await, (0, 0, 0));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 0, 0));
    enable(&app, json!({"self_purchase_commission": true})).await;
    paid_order(&app, &b_member, &tea).await;
    assert_eq!(commissions(&app, &b, None).await[0]["amount"], 200);
    assert_eq!(commissions(&app, &a, None).await[0]["amount"], 100);
    verify_ok(&app).await;
}

async fn distribution_partial_then_full_refund_reduces_then_voids(app: TestApp) {
    enable(
        &app,
        json!({"levels": 2, "rates_bp": {"level1": 1000, "level2": 300}}),
    )
    .await;
    let (a, a_member) = promoter(&app, "a", None).await;
    let (p, p_member) = promoter(&app, "p", Some(&a)).await;
    let x = customer(&app, "x", &p).await;
    let tea = product(&app, "TEA", 10_001).await;
    let order = paid_order(&app, &x, &tea).await;
    assert_eq!(commission_balance(&app, &p_member).await, (0, 1000, 0));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 300, 0));
    // 2,500 refunded: floor(10 % × 7,501) and floor(3 % × 7,501).
    refund(&app, &order, Some(2_500)).await;
    let row = &commissions(&app, &p, None).await[0];
    assert_eq!(row["amount"], 750);
    assert_eq!(row["original"], 1000);
    assert_eq!(row["status"], "pending");
    assert_eq!(commission_balance(&app, &p_member).await, (0, 750, 0));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 225, 0));
    // Another 1 fen: floor(10 % × 7,500) stays 750, floor(3 % × 7,500) = 225.
    refund(&app, &order, Some(1)).await;
    assert_eq!(commission_balance(&app, &p_member).await, (0, 750, 0));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 225, 0));
    // The rest: everything voided.
    refund(&app, &order, None).await;
    let row = &commissions(&app, &p, None).await[0];
    assert_eq!(row["amount"], 0);
    assert_eq!(row["status"], "voided");
    assert_eq!(commission_balance(&app, &p_member).await, (0, 0, 0));
    assert_eq!(commission_balance(&app, &a_member).await, (0, 0, 0));
    // The release finds nothing to release.
    pass_return_window(&app).await;
    assert_eq!(commission_balance(&app, &p_member).await, (0, 0, 0));
    assert_eq!(detail(&app, &p).await["orders"], 0);
    verify_ok(&app).await;
}

async fn distribution_refund_after_release_leaves_a_debt_the_next_commission_pays(app: TestApp) {
    enable(
        &app,
        json!({"withdrawal": {"min_amount": 100, "fee_bp": 0, "review": false}}),
    )
    .await;
    let (p, p_member) = promoter(&app, "p", None).await;
    let x = customer(&app, "x", &p).await;
    let tea = product(&app, "TEA", 10_000).await;
    let first = paid_order(&app, &x, &tea).await;
    pass_return_window(&app).await;
    assert_eq!(commission_balance(&app, &p_member).await, (1000, 0, 1000));
    let reply = withdraw(&app, &p, 800).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status"], "approved");
    assert_eq!(commission_balance(&app, &p_member).await, (200, 0, 200));
    // A refund after release: 200 taken back, 800 left as debt.
    refund(&app, &first, None).await;
    assert_eq!(commission_balance(&app, &p_member).await, (0, 0, 0));
    let promoter = detail(&app, &p).await;
    assert_eq!(promoter["debt"], 800);
    let row = &commissions(&app, &p, None).await[0];
    assert_eq!(row["amount"], 0);
    assert_eq!(row["status"], "voided");
    // The next commission pays the debt first when it is released.
    paid_order(&app, &x, &tea).await;
    assert_eq!(commission_balance(&app, &p_member).await, (0, 1000, 0));
    pass_return_window(&app).await;
    assert_eq!(commission_balance(&app, &p_member).await, (200, 0, 200));
    assert_eq!(detail(&app, &p).await["debt"], 0);
    let released = app.get("/v1/events?type=commission.released").await.body["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(released.last().unwrap()["data"]["debt_repaid"], 800);
    verify_ok(&app).await;
}

async fn distribution_withdrawals_are_approved_paid_failed_and_rejected(app: TestApp) {
    enable(
        &app,
        json!({"rates_bp": {"level1": 2000, "level2": 0},
               "withdrawal": {"min_amount": 100, "fee_bp": 100, "review": true}}),
    )
    .await;
    let (p, p_member) = promoter(&app, "p", None).await;
    let x = customer(&app, "x", &p).await;
    let tea = product(&app, "TEA", 5_000).await;
    paid_order(&app, &x, &tea).await;
    // Nothing to withdraw while the commission is pending.
    let reply = withdraw(&app, &p, 500).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "insufficient_funds");
    pass_return_window(&app).await;
    assert_eq!(commission_balance(&app, &p_member).await, (1000, 0, 1000));
    let reply = withdraw(&app, &p, 99).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "below_minimum");
    let reply = withdraw(&app, &p, 1001).await;
    assert_eq!(reply.body["error"]["code"], "insufficient_funds");
    let reply = withdraw(&app, &p, 0).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Approved then paid.
    let w = withdraw(&app, &p, 500).await;
    assert_eq!(w.status, StatusCode::CREATED, "{}", w.body);
    assert_eq!(w.body["status"], "pending");
    assert_eq!(w.body["fee"], 5);
    assert_eq!(w.body["net"], 495);
    let w_id = w.body["id"].as_str().unwrap().to_owned();
    // Reserved: the promoter cannot spend it twice.
    assert_eq!(commission_balance(&app, &p_member).await, (1000, 0, 500));
    let reply = withdraw(&app, &p, 501).await;
    assert_eq!(reply.body["error"]["code"], "insufficient_funds");
    let approved = app
        .post(&format!("/v1/withdrawals/{w_id}/approve"), &json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(commission_balance(&app, &p_member).await, (500, 0, 500));
    let payouts = app.get("/v1/ledger/accounts/system:payouts").await.body;
    assert_eq!(payouts["commission"]["balance"], 495);
    let events = app.get("/v1/events?type=withdrawal.approved").await.body;
    assert_eq!(events["data"][0]["data"]["withdrawal_id"], w_id.as_str());
    assert_eq!(events["data"][0]["data"]["net"], 495);
    let paid = app
        .post(
            &format!("/v1/withdrawals/{w_id}/paid"),
            &json!({"reference": "bank-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.body["status"], "paid");
    assert_eq!(paid.body["reference"], "bank-1");
    let again = app
        .post(&format!("/v1/withdrawals/{w_id}/failed"), &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "invalid_withdrawal_transition");
    // Approved then failed: the money comes back, fee included.
    let w2 = withdraw(&app, &p, 300).await;
    let w2_id = w2.body["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/withdrawals/{w2_id}/approve"), &json!({}))
        .await;
    assert_eq!(commission_balance(&app, &p_member).await, (200, 0, 200));
    let failed = app
        .post(&format!("/v1/withdrawals/{w2_id}/failed"), &json!({}))
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(commission_balance(&app, &p_member).await, (500, 0, 500));
    // Rejected: the reservation is released.
    let w3 = withdraw(&app, &p, 200).await;
    let w3_id = w3.body["id"].as_str().unwrap().to_owned();
    assert_eq!(commission_balance(&app, &p_member).await, (500, 0, 300));
    let rejected = app
        .post(&format!("/v1/withdrawals/{w3_id}/reject"), &json!({}))
        .await;
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(commission_balance(&app, &p_member).await, (500, 0, 500));
    let rejected = app
        .post(&format!("/v1/withdrawals/{w3_id}/approve"), &json!({}))
        .await;
    assert_eq!(rejected.status, StatusCode::CONFLICT);
    // A retried request (same Idempotency-Key) reserves once and answers the same withdrawal.
    let path = format!("/v1/promoters/{p}/withdrawals");
    let first = app
        .post_idempotent(&path, "withdraw-once", &json!({"amount": 100}))
        .await;
    let retry = app
        .post_idempotent(&path, "withdraw-once", &json!({"amount": 100}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(commission_balance(&app, &p_member).await, (500, 0, 400));
    let list = app
        .get(&format!("/v1/promoters/{p}/withdrawals?status=paid"))
        .await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(detail(&app, &p).await["commission"]["withdrawn"], 500);
    let one = app.get(&format!("/v1/withdrawals/{w_id}")).await;
    assert_eq!(one.body["status"], "paid");
    verify_ok(&app).await;
}

async fn distribution_concurrent_payments_stay_exact(app: TestApp) {
    enable(
        &app,
        json!({"levels": 2, "rates_bp": {"level1": 777, "level2": 333}}),
    )
    .await;
    let (a, a_member) = promoter(&app, "a", None).await;
    let (p, p_member) = promoter(&app, "p", Some(&a)).await;
    let mut orders = Vec::new();
    let mut expected = (0i64, 0i64);
    for n in 0..24i64 {
        let x = customer(&app, &format!("x{n}"), &p).await;
        let price = 1_001 + n * 37;
        let item = product(&app, &format!("SKU{n}"), price).await;
        let order = app
            .post(
                "/v1/orders",
                &json!({"member_id": x, "items": [{"product_id": item, "qty": 1}]}),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
        orders.push(order.body["id"].as_str().unwrap().to_owned());
        expected.0 += price * 777 / 10_000;
        expected.1 += price * 333 / 10_000;
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for order in orders {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post(
                &format!("/v1/orders/{order}/payments"),
                &json!({"method": "external", "reference": format!("pay-{order}")}),
            )
            .await
            .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        commission_balance(&app, &p_member).await,
        (0, expected.0, 0)
    );
    assert_eq!(
        commission_balance(&app, &a_member).await,
        (0, expected.1, 0)
    );
    assert_eq!(detail(&app, &p).await["commission"]["pending"], expected.0);
    pass_return_window(&app).await;
    assert_eq!(
        commission_balance(&app, &p_member).await,
        (expected.0, 0, expected.0)
    );
    assert_eq!(
        commission_balance(&app, &a_member).await,
        (expected.1, 0, expected.1)
    );
    verify_ok(&app).await;
}

async fn distribution_manual_approval_suspension_and_product_rates(app: TestApp) {
    // Disabled: nobody can apply.
    let member = app.member("early").await;
    let reply = app
        .post("/v1/promoters", &json!({"member_id": member}))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "distribution_disabled");
    enable(&app, json!({"approval": "manual"})).await;
    let reply = app
        .post("/v1/promoters", &json!({"member_id": member}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status"], "pending");
    let p = reply.body["id"].as_str().unwrap().to_owned();
    let again = app
        .post("/v1/promoters", &json!({"member_id": member}))
        .await;
    assert_eq!(again.body["error"]["code"], "already_promoter");
    let reply = app
        .post(&format!("/v1/promoters/{p}/share-code"), &json!({}))
        .await;
    assert_eq!(reply.body["error"]["code"], "promoter_not_active");
    let pending = app.get("/v1/promoters?status=pending").await;
    assert_eq!(pending.body["data"][0]["id"], p.as_str());
    let approved = app
        .post(&format!("/v1/promoters/{p}/approve"), &json!({}))
        .await;
    assert_eq!(approved.body["status"], "approved");
    let twice = app
        .post(&format!("/v1/promoters/{p}/reject"), &json!({}))
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["error"]["code"], "invalid_promoter_transition");
    let x = customer(&app, "x", &p).await;
    // A product at its own rate and one that pays nothing.
    let tea = product(&app, "TEA", 4_000).await;
    let cup = product(&app, "CUP", 1_000).await;
    let reply = put(
        &app,
        &format!("/v1/distribution/product-rates/{tea}"),
        &json!({"level1_bp": 2000, "level2_bp": 0}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    put(
        &app,
        &format!("/v1/distribution/product-rates/{cup}"),
        &json!({"level1_bp": 0, "level2_bp": 0}),
    )
    .await;
    let bad = put(
        &app,
        &format!("/v1/distribution/product-rates/{cup}"),
        &json!({"level1_bp": 9000, "level2_bp": 0}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let order = app
        .post(
            "/v1/orders",
            &json!({"member_id": x, "items": [{"product_id": tea, "qty": 1},
                                               {"product_id": cup, "qty": 1}]}),
        )
        .await;
    let order_id = order.body["id"].as_str().unwrap().to_owned();
    let paid = app
        .post(
            &format!("/v1/orders/{order_id}/payments"),
            &json!({"method": "external", "reference": "pay-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    // 20 % of 4,000 + 0 % of 1,000.
    assert_eq!(commissions(&app, &p, None).await[0]["amount"], 800);
    let rates = app
        .get(&format!("/v1/distribution/product-rates/{tea}"))
        .await;
    assert_eq!(rates.body["rates"]["level1_bp"], 2000);
    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/distribution/product-rates/{tea}"),
            None,
        )
        .await;
    assert_eq!(removed.body["rates"], Value::Null);
    // Suspended: nothing new, the pending commission stays pending.
    let suspended = app
        .post(&format!("/v1/promoters/{p}/suspend"), &json!({}))
        .await;
    assert_eq!(suspended.body["status"], "suspended");
    paid_order(&app, &x, &tea).await;
    let rows = commissions(&app, &p, None).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "pending");
    pass_return_window(&app).await;
    assert_eq!(commissions(&app, &p, None).await[0]["status"], "available");
    verify_ok(&app).await;
}

async fn distribution_reports_sum_what_promoters_earned(app: TestApp) {
    enable(
        &app,
        json!({"levels": 2, "rates_bp": {"level1": 1000, "level2": 500},
               "withdrawal": {"min_amount": 100, "fee_bp": 0, "review": false}}),
    )
    .await;
    let (a, _) = promoter(&app, "a", None).await;
    let (b, _) = promoter(&app, "b", Some(&a)).await;
    let x = customer(&app, "x", &b).await;
    let y = customer(&app, "y", &a).await;
    let tea = product(&app, "TEA", 6_000).await;
    paid_order(&app, &x, &tea).await;
    paid_order(&app, &x, &tea).await;
    paid_order(&app, &y, &tea).await;
    let board = app.get("/v1/distribution/leaderboard?period=7d").await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.body);
    let data = board.body["data"].as_array().unwrap();
    assert_eq!(data[0]["promoter_id"], b.as_str());
    assert_eq!(data[0]["gmv"], 12_000);
    assert_eq!(data[0]["orders"], 2);
    assert_eq!(data[0]["commission"], 1_200);
    assert_eq!(data[1]["promoter_id"], a.as_str());
    assert_eq!(data[1]["gmv"], 6_000);
    assert_eq!(data[1]["commission"], 600 + 600);
    let bad = app.get("/v1/distribution/leaderboard?period=year").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    pass_return_window(&app).await;
    withdraw(&app, &b, 200).await;
    let summary = app.get("/v1/distribution/summary").await.body;
    assert_eq!(summary["promoters"], 2);
    assert_eq!(summary["gmv"], 18_000);
    assert_eq!(summary["commission"]["pending"], 0);
    assert_eq!(summary["commission"]["paid"], 200);
    assert_eq!(summary["commission"]["available"], 2_400 - 200);
    assert_eq!(summary["cost_ratio"].as_f64().unwrap(), 2_400.0 / 18_000.0);
    // A week later, the 7-day board is empty; `all` still has them.
    app.clock.advance(SignedDuration::from_hours(24));
    let week = app.get("/v1/distribution/leaderboard?period=7d").await;
    assert!(week.body["data"].as_array().unwrap().is_empty());
    let all = app.get("/v1/distribution/leaderboard?period=all").await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
}

async fn distribution_other_tenants_ids_are_404(app: TestApp) {
    enable(
        &app,
        json!({"withdrawal": {"min_amount": 100, "fee_bp": 0, "review": true}}),
    )
    .await;
    let (p, p_member) = promoter(&app, "p", None).await;
    let x = customer(&app, "x", &p).await;
    let tea = product(&app, "TEA", 10_000).await;
    paid_order(&app, &x, &tea).await;
    pass_return_window(&app).await;
    let w = withdraw(&app, &p, 500).await;
    let w_id = w.body["id"].as_str().unwrap().to_owned();
    let (_, other) = app.other_tenant().await;
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let request = build(method, &path, Some(&other), body.as_ref(), None);
        app.send(request)
    };
    for (method, path, body) in [
        (Method::GET, format!("/v1/promoters/{p}"), None),
        (Method::GET, format!("/v1/promoters/{p}/commissions"), None),
        (Method::GET, format!("/v1/promoters/{p}/withdrawals"), None),
        (
            Method::POST,
            format!("/v1/promoters/{p}/approve"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/promoters/{p}/suspend"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/promoters/{p}/share-code"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/promoters/{p}/withdrawals"),
            Some(json!({"amount": 100})),
        ),
        (Method::GET, format!("/v1/withdrawals/{w_id}"), None),
        (
            Method::POST,
            format!("/v1/withdrawals/{w_id}/approve"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/withdrawals/{w_id}/failed"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/members/{x}/promoter"), None),
        (
            Method::GET,
            format!("/v1/distribution/product-rates/{tea}"),
            None,
        ),
        (
            Method::POST,
            "/v1/promoters".to_owned(),
            Some(json!({"member_id": p_member})),
        ),
    ] {
        let reply = as_other(method.clone(), path.clone(), body).await;
        assert!(
            reply.status == StatusCode::NOT_FOUND
                || (path == "/v1/promoters" && reply.status == StatusCode::CONFLICT),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
    // The other tenant sees none of it in its lists and reports.
    let list = as_other(Method::GET, "/v1/promoters".to_owned(), None).await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
    let summary = as_other(Method::GET, "/v1/distribution/summary".to_owned(), None).await;
    assert_eq!(summary.body["gmv"], 0);
    // Malformed ids are 404 as well.
    let reply = app.get("/v1/promoters/prm_nothex").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app.get("/v1/withdrawals/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Still waiting for review on the owner's side.
    let mine = app.get(&format!("/v1/withdrawals/{w_id}")).await;
    assert_eq!(mine.body["status"], "pending");
}

async fn distribution_wallet_bonus_money_earns_nothing(app: TestApp) {
    enable(&app, json!({})).await;
    let policy = put(
        &app,
        "/v1/program/stored-value",
        &json!({"spend_policy": "bonus_first"}),
    )
    .await;
    assert_eq!(policy.status, StatusCode::OK, "{}", policy.body);
    let (p, p_member) = promoter(&app, "p", None).await;
    let x = customer(&app, "x", &p).await;
    let plan = app
        .post(
            "/v1/topup-plans",
            &json!({"name": "充100送20", "pay": 10000, "bonus": 2000}),
        )
        .await;
    assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
    let topup = app
        .post(
            &format!("/v1/members/{x}/topups"),
            &json!({"plan_id": plan.body["id"], "payment_ref": "pay-topup"}),
        )
        .await;
    assert_eq!(topup.status, StatusCode::CREATED, "{}", topup.body);
    let tea = product(&app, "TEA", 6_000).await;
    let order = app
        .post(
            "/v1/orders",
            &json!({"member_id": x, "items": [{"product_id": tea, "qty": 1}]}),
        )
        .await;
    let order_id = order.body["id"].as_str().unwrap().to_owned();
    let paid = app
        .post(
            &format!("/v1/orders/{order_id}/payments"),
            &json!({"method": "wallet", "reference": "wallet-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    // 2,000 of the 6,000 came from the bonus: 10 % of 4,000.
    assert_eq!(commissions(&app, &p, None).await[0]["amount"], 400);
    assert_eq!(commission_balance(&app, &p_member).await, (0, 400, 0));
    // Half refunded: half of it.
    refund(&app, &order_id, Some(3_000)).await;
    assert_eq!(commissions(&app, &p, None).await[0]["amount"], 200);
    assert_eq!(commission_balance(&app, &p_member).await, (0, 200, 0));
    verify_ok(&app).await;
}

async fn distribution_console_page_shows_the_summary_and_decides_applications(app: TestApp) {
    use shequn::console::operators::Role;
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let off = html(&viewer.get("/console/distribution").await);
    assert!(off.contains("分销未开启"), "{off}");
    enable(&app, json!({"approval": "manual"})).await;
    let member = app.member("applicant").await;
    let applied = app
        .post("/v1/promoters", &json!({"member_id": member}))
        .await;
    let p = applied.body["id"].as_str().unwrap().to_owned();
    let page = viewer.get("/console/distribution").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = html(&page);
    assert!(
        text.contains(&format!("/console/members/{member}")),
        "{text}"
    );
    assert!(
        !text.contains("/approve"),
        "a viewer is offered no decision"
    );
    assert!(!text.contains("分销未开启"));
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let action = format!("/console/distribution/promoters/{p}/approve");
    assert!(html(&ops.get("/console/distribution").await).contains(&action));
    let token = ops.csrf().await;
    let approved = ops.post(&action, &[("csrf_token", &token)]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&approved), "/console/distribution?done=approved");
    assert_eq!(detail(&app, &p).await["status"], "approved");
    let again = ops.post(&action, &[("csrf_token", &token)]).await;
    assert!(location(&again).contains("error="), "{}", location(&again));
    let unknown = ops
        .post(
            &format!("/console/distribution/promoters/{p}/forget"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
