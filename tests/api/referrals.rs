//! Referral campaigns (裂变): campaigns and their validation, invite codes, first-touch
//! attribution shown as `invited_by`, every fraud rule with its stored reason, the review
//! queue (approve pays, reject records), the daily cap, budget exactness under concurrency,
//! the ladder (a pending rung voided when refunds take the inviter's count below it, paid again
//! once when the count comes back, a released rung kept), order-based rewards pending until the
//! return window (posted by the scheduler, voided on refund), the leaderboard with its tie rule, the funnel and tenant isolation.
//! Scenarios that move points end with `GET /v1/ledger/verify`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};
use shequn::common::ids::{MemberId, TenantId};
use shequn::growth::referrals;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    referrals_inviters_with_qualified_invites_become_advocates,
    referrals_real_checkout_orders_qualify_and_a_full_refund_voids,
    referrals_campaigns_are_validated_read_listed_and_ended,
    referrals_attribution_is_first_touch_and_shown_on_the_member,
    referrals_self_invites_are_refused_by_member_device_and_ip,
    referrals_existing_customers_are_refused,
    referrals_invite_cycles_are_refused,
    referrals_velocity_bursts_are_refused,
    referrals_shared_devices_go_to_review_approve_pays_reject_records,
    referrals_daily_cap_and_budget_send_to_review,
    referrals_budget_is_exact_under_concurrent_signups,
    referrals_ladder_pays_each_rung_once,
    referrals_ladder_rung_is_voided_below_its_count_and_paid_again_once,
    referrals_ladder_rung_of_a_refunded_carrier_is_paid_again_while_the_count_reaches_it,
    referrals_a_released_ladder_reward_stays_when_the_count_falls_later,
    referrals_order_rewards_post_after_the_return_window_and_void_on_refund,
    referrals_order_over_waits_for_a_large_enough_order,
    referrals_queued_order_referrals_pay_on_approval_or_close_on_refund,
    referrals_erasure_forgets_device_and_ip,
    referrals_leaderboard_ranks_by_invites_then_who_got_there_first,
    referrals_bad_input_gets_4xx_and_tenants_are_isolated,
);

async fn verify_ok(app: &TestApp) {
    let reply = app.get("/v1/ledger/verify").await;
    assert_eq!(reply.body["ok"], true, "{}", reply.body);
}

fn signup_campaign() -> Value {
    json!({
        "name": "老带新",
        "qualify_on": "signup",
        "inviter_reward": {"points": 100},
        "invitee_reward": {"points": 50},
    })
}

async fn campaign(app: &TestApp, body: &Value) -> String {
    let reply = app.post("/v1/referral-campaigns", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn code(app: &TestApp, member: &str, campaign: &str) -> String {
    let reply = app
        .get(&format!(
            "/v1/members/{member}/invite-code?campaign_id={campaign}"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["code"].as_str().unwrap().to_owned()
}

/// Create a member with optional invite code and signals; returns the member JSON.
async fn join(app: &TestApp, external_id: &str, extra: Value) -> Value {
    let mut body = json!({ "external_id": external_id });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let reply = app.post("/v1/members", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

async fn invitee(app: &TestApp, external_id: &str, code: &str) -> String {
    join(app, external_id, json!({ "invite_code": code })).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn referrals_of(app: &TestApp, campaign: &str, status: Option<&str>) -> Vec<Value> {
    let query = status.map(|s| format!("&status={s}")).unwrap_or_default();
    let reply = app
        .get(&format!(
            "/v1/referral-campaigns/{campaign}/referrals?limit=200{query}"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

async fn referral_of(app: &TestApp, campaign: &str, invitee: &str) -> Value {
    referrals_of(app, campaign, None)
        .await
        .into_iter()
        .find(|r| r["invitee_id"] == invitee)
        .unwrap_or_else(|| panic!("no referral for {invitee}"))
}

/// (balance, pending credits) of an asset.
async fn balance(app: &TestApp, member: &str, asset: &str) -> (i64, i64) {
    let reply = app.get(&format!("/v1/members/{member}/balances")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    (
        reply.body[asset]["balance"].as_i64().unwrap(),
        reply.body[asset]["pending_credits"].as_i64().unwrap(),
    )
}

async fn attribute_existing(app: &TestApp, member: &str, code: &str) -> (StatusCode, Value) {
    let reply = app
        .post(
            "/v1/referrals",
            &json!({"invite_code": code, "member_id": member}),
        )
        .await;
    (reply.status, reply.body)
}

async fn campaign_view(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/v1/referral-campaigns/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn referrals_campaigns_are_validated_read_listed_and_ended(app: TestApp) {
    let template = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": "新人券", "kind": "amount_off", "amount_off": 500,
                    "total_stock": 10, "per_member_limit": 1, "valid_days": 30}),
        )
        .await;
    assert_eq!(template.status, StatusCode::CREATED, "{}", template.body);
    let template = template.body["id"].as_str().unwrap().to_owned();
    let full = json!({
        "name": "春季邀请",
        "qualify_on": "order_over",
        "min_order_amount": 9900,
        "inviter_reward": {"wallet_bonus": 1000},
        "invitee_reward": {"coupon_template_id": template},
        "ladder": [{"invites": 3, "reward": {"points": 300}}, {"invites": 10, "reward": {"points": 2000}}],
        "inviter_daily_cap": 5,
        "budget": 100000,
        "starts_at": "2020-01-01T00:00:00Z",
        "ends_at": "2099-01-01T00:00:00Z",
    });
    let id = campaign(&app, &full).await;
    let view = campaign_view(&app, &id).await;
    assert_eq!(view["qualify_on"], "order_over");
    assert_eq!(view["min_order_amount"], 9900);
    assert_eq!(view["inviter_reward"], json!({"wallet_bonus": 1000}));
    assert_eq!(
        view["invitee_reward"],
        json!({"coupon_template_id": template})
    );
    assert_eq!(view["ladder"][1]["invites"], 10);
    assert_eq!(view["status"], "active");
    assert_eq!(view["running"], true);
    assert_eq!(view["spent"], 0);

    for (bad, field) in [
        (
            json!({"name": "x", "qualify_on": "never", "inviter_reward": {"points": 1}}),
            "qualify_on",
        ),
        (
            json!({"name": " ", "qualify_on": "signup", "inviter_reward": {"points": 1}}),
            "name",
        ),
        (
            json!({"name": "x", "qualify_on": "order_over", "inviter_reward": {"points": 1}}),
            "min_order_amount",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 0}}),
            "inviter_reward",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 1, "wallet_bonus": 1}}),
            "inviter_reward",
        ),
        (
            json!({"name": "x", "qualify_on": "signup"}),
            "inviter_reward",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "invitee_reward": {"coupon_template_id": "cpt_00000000000000000000000000000000"}}),
            "invitee_reward.coupon_template_id",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "ladder": [{"invites": 3, "reward": {"points": 1}}, {"invites": 2, "reward": {"points": 1}}]}),
            "ladder",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 1}, "budget": 0}),
            "budget",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 1}, "inviter_daily_cap": 0}),
            "inviter_daily_cap",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 1}, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2029-01-01T00:00:00Z"}),
            "ends_at",
        ),
        (
            json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 1}, "ends_at": "tomorrow"}),
            "ends_at",
        ),
    ] {
        let reply = app.post("/v1/referral-campaigns", &bad).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["details"]["field"], field, "{bad}");
    }
    let unknown = app
        .post(
            "/v1/referral-campaigns",
            &json!({"name": "x", "qualify_on": "signup", "inviter_reward": {"points": 1}, "extra": 1}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["error"]["code"], "invalid_request");

    let second = campaign(&app, &signup_campaign()).await;
    let page = app.get("/v1/referral-campaigns?limit=1").await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!("/v1/referral-campaigns?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["data"][0]["id"], second);
    assert!(rest.body["next_cursor"].is_null());

    let bad_end = app
        .patch(
            &format!("/v1/referral-campaigns/{second}"),
            &json!({"status": "active"}),
        )
        .await;
    assert_eq!(bad_end.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ended = app
        .patch(
            &format!("/v1/referral-campaigns/{second}"),
            &json!({"status": "ended"}),
        )
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert_eq!(ended.body["running"], false);
    let m = app.member("m").await;
    let refused = app
        .get(&format!("/v1/members/{m}/invite-code?campaign_id={second}"))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.body["error"]["code"], "campaign_not_active");
    let missing = app
        .get("/v1/referral-campaigns/rfc_00000000000000000000000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn referrals_attribution_is_first_touch_and_shown_on_the_member(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let alice = app.member("alice").await;
    let carol = app.member("carol").await;
    let alice_code = code(&app, &alice, &c).await;
    assert_eq!(alice_code.len(), 10);
    assert_eq!(
        code(&app, &alice, &c).await,
        alice_code,
        "stable per member and campaign"
    );
    let link = app
        .get(&format!("/v1/members/{alice}/invite-code?campaign_id={c}"))
        .await;
    assert_eq!(link.body["link"], format!("/invite/{alice_code}"));
    let carol_code = code(&app, &carol, &c).await;
    assert_ne!(carol_code, alice_code);

    let bob = join(
        &app,
        "bob",
        json!({"invite_code": alice_code.to_lowercase()}),
    )
    .await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    assert_eq!(bob["invited_by"], alice, "the code is case-insensitive");
    // A signup campaign qualifies at once: the signup says so.
    assert_eq!(bob["referral"]["status"], "rewarded", "{bob}");
    assert_eq!(bob["referral"]["reason"], Value::Null, "{bob}");
    assert_eq!(
        join(&app, "no-code", json!({})).await["referral"],
        Value::Null
    );
    let got = app.get(&format!("/v1/members/{bob_id}")).await;
    assert_eq!(got.body["invited_by"], alice);
    let referral = referral_of(&app, &c, &bob_id).await;
    assert_eq!(referral["status"], "rewarded");
    assert_eq!(referral["inviter_id"], alice);
    assert_eq!(referral["reward_cost"], 150);
    assert_eq!(referral["rewards"].as_array().unwrap().len(), 2);
    assert_eq!(balance(&app, &alice, "points").await, (100, 0));
    assert_eq!(balance(&app, &bob_id, "points").await, (50, 0));

    // Never re-attributed: a second code is refused and changes nothing.
    let (status, body) = attribute_existing(&app, &bob_id, &carol_code).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "already_attributed");
    let again = app.get(&format!("/v1/members/{bob_id}")).await;
    assert_eq!(again.body["invited_by"], alice);
    assert_eq!(balance(&app, &carol, "points").await, (0, 0));

    // An existing member (just joined, no orders) may be attributed once, afterwards.
    let dave = app.member("dave").await;
    let (status, body) = attribute_existing(&app, &dave, &carol_code).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "rewarded");
    assert_eq!(
        app.get(&format!("/v1/members/{dave}")).await.body["invited_by"],
        carol
    );

    let unknown = app
        .post(
            "/v1/members",
            &json!({"external_id": "x", "invite_code": "ZZZZZZZZZZ"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["error"]["details"]["field"], "invite_code");
    let none = app.get("/v1/members?limit=200").await;
    assert!(
        none.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["external_id"] != "x"),
        "a refused member creation writes nothing"
    );
    let events = app.get("/v1/events?type=referral.attributed").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 2);
    let plain = app.get(&format!("/v1/members/{alice}")).await;
    assert!(plain.body["invited_by"].is_null());
    verify_ok(&app).await;
}

async fn referrals_self_invites_are_refused_by_member_device_and_ip(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let pat = join(
        &app,
        "pat",
        json!({"device_id": "dev-pat", "ip": "10.0.0.1"}),
    )
    .await;
    let pat = pat["id"].as_str().unwrap().to_owned();
    let pat_code = code(&app, &pat, &c).await;

    let (status, body) = attribute_existing(&app, &pat, &pat_code).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "refused");
    assert_eq!(body["reason"], "self_invite");

    let same_device = join(
        &app,
        "q",
        json!({"invite_code": pat_code, "device_id": "dev-pat", "ip": "10.0.0.2"}),
    )
    .await;
    assert!(same_device["invited_by"].is_null(), "refused: no inviter");
    // The signup says what its invite code did instead of staying silent.
    assert_eq!(
        same_device["referral"]["status"], "refused",
        "{same_device}"
    );
    assert_eq!(
        same_device["referral"]["reason"], "same_device",
        "{same_device}"
    );
    assert_eq!(same_device["referral"]["inviter_id"], pat.as_str());
    let signup_referral = same_device["referral"]["referral_id"].clone();
    let same_device = same_device["id"].as_str().unwrap().to_owned();
    let r = referral_of(&app, &c, &same_device).await;
    assert_eq!(r["id"], signup_referral);
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("same_device"))
    );

    let same_ip = join(
        &app,
        "r",
        json!({"invite_code": pat_code, "device_id": "dev-r", "ip": "10.0.0.1"}),
    )
    .await;
    let same_ip = same_ip["id"].as_str().unwrap().to_owned();
    let r = referral_of(&app, &c, &same_ip).await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("same_ip"))
    );
    assert!(r["rewards"].as_array().unwrap().is_empty());

    // A refused attribution is final too: it never pays, even through another code.
    let other = app.member("other").await;
    let other_code = code(&app, &other, &c).await;
    let (status, _) = attribute_existing(&app, &same_ip, &other_code).await;
    assert_eq!(status, StatusCode::CONFLICT);

    for m in [&pat, &same_device, &same_ip, &other] {
        assert_eq!(balance(&app, m, "points").await, (0, 0));
    }
    assert_eq!(referrals_of(&app, &c, Some("refused")).await.len(), 3);
    let events = app.get("/v1/events?type=referral.refused").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 3);
    let funnel = app.get(&format!("/v1/referral-campaigns/{c}/funnel")).await;
    assert_eq!(funnel.body["refused"], 3);
    assert_eq!(funnel.body["signups"], 0);
    verify_ok(&app).await;
}

async fn import_order(app: &TestApp, external_id: &str) {
    let csv = format!(
        "external_member_id,ordered_at,amount,currency,items\n{external_id},2026-01-05,29.90,CNY,tea:1\n"
    );
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/orders/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn referrals_existing_customers_are_refused(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let inviter = app.member("inviter").await;
    let invite = code(&app, &inviter, &c).await;
    let buyer = app.member("buyer").await;
    import_order(&app, "buyer").await;
    let (status, body) = attribute_existing(&app, &buyer, &invite).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("refused"), Some("already_customer"))
    );

    let old = app.member("old").await;
    app.clock.advance(SignedDuration::from_hours(25));
    let (_, body) = attribute_existing(&app, &old, &invite).await;
    assert_eq!(
        body["reason"], "already_customer",
        "joined before the late window"
    );
    let fresh = app.member("fresh").await;
    let (_, body) = attribute_existing(&app, &fresh, &invite).await;
    assert_eq!(body["status"], "rewarded");
    assert_eq!(balance(&app, &buyer, "points").await, (0, 0));
    assert_eq!(balance(&app, &old, "points").await, (0, 0));
    assert_eq!(balance(&app, &inviter, "points").await, (100, 0));
    verify_ok(&app).await;
}

async fn referrals_invite_cycles_are_refused(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let b = invitee(&app, "b", &a_code).await;
    let b_code = code(&app, &b, &c).await;
    // A invited B: B cannot be credited for inviting A.
    let (_, body) = attribute_existing(&app, &a, &b_code).await;
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("refused"), Some("invite_cycle"))
    );

    // Longer: X → Y → Z, then X with Z's code.
    let x = app.member("x").await;
    let y = invitee(&app, "y", &code(&app, &x, &c).await).await;
    let z = invitee(&app, "z", &code(&app, &y, &c).await).await;
    let z_code = code(&app, &z, &c).await;
    let (_, body) = attribute_existing(&app, &x, &z_code).await;
    assert_eq!(body["reason"], "invite_cycle");
    assert_eq!(
        balance(&app, &z, "points").await,
        (50, 0),
        "only its own invitee reward"
    );
    assert!(app.get(&format!("/v1/members/{x}")).await.body["invited_by"].is_null());
    verify_ok(&app).await;
}

async fn referrals_velocity_bursts_are_refused(app: TestApp) {
    let settings = app
        .call(
            Method::PUT,
            "/v1/referral-settings",
            Some(&json!({"velocity_per_hour": 2})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert_eq!(settings.body["velocity_per_hour"], 2);
    assert_eq!(settings.body["return_window_days"], 7, "untouched");
    let c = campaign(&app, &signup_campaign()).await;
    let v = app.member("v").await;
    let v_code = code(&app, &v, &c).await;
    invitee(&app, "v1", &v_code).await;
    invitee(&app, "v2", &v_code).await;
    let burst = invitee(&app, "v3", &v_code).await;
    let r = referral_of(&app, &c, &burst).await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("velocity_exceeded"))
    );
    app.clock.advance(SignedDuration::from_mins(61));
    let later = invitee(&app, "v4", &v_code).await;
    assert_eq!(referral_of(&app, &c, &later).await["status"], "rewarded");
    assert_eq!(balance(&app, &v, "points").await, (300, 0));
    verify_ok(&app).await;
}

async fn referrals_shared_devices_go_to_review_approve_pays_reject_records(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let i = app.member("i").await;
    let i_code = code(&app, &i, &c).await;
    join(
        &app,
        "j1",
        json!({"invite_code": i_code, "device_id": "farm-1", "ip": "10.1.0.1"}),
    )
    .await;
    let j2 = join(
        &app,
        "j2",
        json!({"invite_code": i_code, "device_id": "farm-1", "ip": "10.1.0.2"}),
    )
    .await;
    assert_eq!(
        j2["invited_by"], i,
        "a queued attribution keeps its inviter"
    );
    let j2 = j2["id"].as_str().unwrap().to_owned();
    let j3 = join(
        &app,
        "j3",
        json!({"invite_code": i_code, "device_id": "phone-3", "ip": "10.1.0.1"}),
    )
    .await;
    let j3 = j3["id"].as_str().unwrap().to_owned();
    assert_eq!(referral_of(&app, &c, &j2).await["reason"], "shared_device");
    assert_eq!(referral_of(&app, &c, &j3).await["reason"], "shared_ip");
    assert_eq!(
        balance(&app, &i, "points").await,
        (100, 0),
        "only the first paid"
    );

    let queue = app.get("/v1/referral-reviews?status=pending").await;
    assert_eq!(queue.status, StatusCode::OK);
    let queue = queue.body["data"].as_array().unwrap().clone();
    assert_eq!(queue.len(), 2);
    let review_of = |member: &str| {
        queue.iter().find(|r| r["invitee_id"] == member).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (approve, reject) = (review_of(&j2), review_of(&j3));

    let approved = app
        .post(
            &format!("/v1/referral-reviews/{approve}/approve"),
            &json!({"note": "family"}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "rewarded");
    assert_eq!(balance(&app, &j2, "points").await, (50, 0));
    assert_eq!(balance(&app, &i, "points").await, (200, 0));
    let twice = app
        .post(
            &format!("/v1/referral-reviews/{approve}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["error"]["code"], "review_already_decided");

    let rejected = app
        .call(
            Method::POST,
            &format!("/v1/referral-reviews/{reject}/reject"),
            None,
        )
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.body);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["reason"], "shared_ip");
    let late = app
        .post(
            &format!("/v1/referral-reviews/{reject}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "a rejection is final");
    assert_eq!(balance(&app, &j3, "points").await, (0, 0));
    assert_eq!(balance(&app, &i, "points").await, (200, 0));

    let decided = app.get("/v1/referral-reviews?status=approved").await;
    assert_eq!(decided.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(decided.body["data"][0]["note"], "family");
    assert_eq!(
        app.get("/v1/referral-reviews?status=rejected").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = app.get("/v1/referral-reviews?status=maybe").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = app
        .post(
            "/v1/referral-reviews/rfv_00000000000000000000000000000000/approve",
            &json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    verify_ok(&app).await;
}

async fn referrals_daily_cap_and_budget_send_to_review(app: TestApp) {
    let capped = campaign(
        &app,
        &json!({"name": "cap", "qualify_on": "signup", "inviter_reward": {"points": 10},
                "inviter_daily_cap": 1}),
    )
    .await;
    let k = app.member("k").await;
    let k_code = code(&app, &k, &capped).await;
    invitee(&app, "k1", &k_code).await;
    let k2 = invitee(&app, "k2", &k_code).await;
    let r = referral_of(&app, &capped, &k2).await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("review"), Some("daily_cap_reached"))
    );
    assert_eq!(balance(&app, &k, "points").await, (10, 0));

    let budgeted = campaign(
        &app,
        &json!({"name": "budget", "qualify_on": "signup", "inviter_reward": {"points": 100},
                "invitee_reward": {"points": 100}, "budget": 250}),
    )
    .await;
    let b = app.member("b").await;
    let b_code = code(&app, &b, &budgeted).await;
    invitee(&app, "b1", &b_code).await;
    let b2 = invitee(&app, "b2", &b_code).await;
    let r = referral_of(&app, &budgeted, &b2).await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("review"), Some("budget_exhausted"))
    );
    assert_eq!(campaign_view(&app, &budgeted).await["spent"], 200);
    let review = app.get("/v1/referral-reviews?status=pending").await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["invitee_id"] == b2)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approve = app
        .post(
            &format!("/v1/referral-reviews/{review}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(approve.status, StatusCode::CONFLICT, "{}", approve.body);
    assert_eq!(approve.body["error"]["code"], "budget_exhausted");
    let still = app.get("/v1/referral-reviews?status=pending").await;
    assert_eq!(
        still.body["data"].as_array().unwrap().len(),
        2,
        "nothing half-written"
    );
    assert_eq!(campaign_view(&app, &budgeted).await["spent"], 200);
    assert_eq!(balance(&app, &b2, "points").await, (0, 0));
    verify_ok(&app).await;
}

async fn referrals_budget_is_exact_under_concurrent_signups(app: TestApp) {
    let c = campaign(
        &app,
        &json!({"name": "race", "qualify_on": "signup", "inviter_reward": {"points": 10},
                "budget": 50}),
    )
    .await;
    let mut codes = Vec::new();
    for n in 0..16 {
        let m = app.member(&format!("inviter-{n}")).await;
        codes.push(code(&app, &m, &c).await);
    }
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for (n, invite) in codes.into_iter().enumerate() {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let reply = app
                .post(
                    "/v1/members",
                    &json!({"external_id": format!("new-{n}"), "invite_code": invite}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rewarded = referrals_of(&app, &c, Some("rewarded")).await;
    let review = referrals_of(&app, &c, Some("review")).await;
    assert_eq!(rewarded.len(), 5, "50 / 10");
    assert_eq!(review.len(), 11);
    assert!(review.iter().all(|r| r["reason"] == "budget_exhausted"));
    assert_eq!(campaign_view(&app, &c).await["spent"], 50);
    let issued = app.get("/v1/ledger/accounts/system:issuance").await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["points"]["balance"], -50, "{}", issued.body);
    verify_ok(&app).await;
}

async fn referrals_ladder_pays_each_rung_once(app: TestApp) {
    let c = campaign(
        &app,
        &json!({"name": "ladder", "qualify_on": "signup", "inviter_reward": {"points": 10},
                "ladder": [{"invites": 2, "reward": {"points": 500}},
                           {"invites": 4, "reward": {"wallet_bonus": 800}}]}),
    )
    .await;
    let l = app.member("l").await;
    let l_code = code(&app, &l, &c).await;
    for n in 0..5 {
        invitee(&app, &format!("l{n}"), &l_code).await;
    }
    assert_eq!(balance(&app, &l, "points").await, (5 * 10 + 500, 0));
    assert_eq!(balance(&app, &l, "wallet_bonus").await, (800, 0));
    assert_eq!(campaign_view(&app, &c).await["spent"], 50 + 500 + 800);
    let rungs: Vec<String> = referrals_of(&app, &c, None)
        .await
        .iter()
        .flat_map(|r| r["rewards"].as_array().unwrap().clone())
        .map(|w| w["role"].as_str().unwrap().to_owned())
        .filter(|role| role.starts_with("ladder"))
        .collect();
    assert_eq!(rungs, vec!["ladder_2", "ladder_4"]);
    verify_ok(&app).await;
}

fn ids(app: &TestApp, member: &str) -> (TenantId, MemberId) {
    (
        TenantId::parse(&app.tenant_id).unwrap(),
        MemberId::parse(member).unwrap(),
    )
}

async fn order_paid(app: &TestApp, member: &str, order: &str, amount: i64) {
    let (tenant, member) = ids(app, member);
    let mut tx = app.state.begin().await.unwrap();
    referrals::on_order_paid(&mut tx, &tenant, &member, order, amount)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn order_refunded(app: &TestApp, order: &str, fully: bool) {
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let mut tx = app.state.begin().await.unwrap();
    referrals::on_order_refunded(&mut tx, &tenant, order, fully)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn referrals_order_rewards_post_after_the_return_window_and_void_on_refund(app: TestApp) {
    let c = campaign(
        &app,
        &json!({"name": "first order", "qualify_on": "first_paid_order",
                "inviter_reward": {"points": 100}, "invitee_reward": {"wallet_bonus": 500},
                "budget": 10000}),
    )
    .await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let b = invitee(&app, "b", &a_code).await;
    let d = invitee(&app, "d", &a_code).await;
    assert_eq!(
        referral_of(&app, &c, &b).await["status"],
        "attributed",
        "waits for an order"
    );
    assert_eq!(balance(&app, &a, "points").await, (0, 0));

    order_paid(&app, &b, "ord-b1", 1999).await;
    order_paid(&app, &b, "ord-b1", 1999).await; // a retry pays nothing more
    order_paid(&app, &b, "ord-b2", 5000).await; // nor does a second order
    let r = referral_of(&app, &c, &b).await;
    assert_eq!(r["status"], "pending");
    assert_eq!(r["order_id"], "ord-b1");
    assert_eq!(balance(&app, &a, "points").await, (0, 100));
    assert_eq!(balance(&app, &b, "wallet_bonus").await, (0, 500));
    assert_eq!(campaign_view(&app, &c).await["spent"], 600);
    let board = app
        .get(&format!("/v1/referral-campaigns/{c}/leaderboard"))
        .await;
    assert_eq!(
        board.body["data"][0]["invites"], 1,
        "pending counts as qualified"
    );

    order_paid(&app, &d, "ord-d1", 3000).await;
    assert_eq!(balance(&app, &a, "points").await, (0, 200));
    order_refunded(&app, "ord-d1", false).await;
    assert_eq!(
        referral_of(&app, &c, &d).await["status"],
        "pending",
        "a partial refund keeps it"
    );
    order_refunded(&app, "ord-d1", true).await;
    let voided = referral_of(&app, &c, &d).await;
    assert_eq!(
        (voided["status"].as_str(), voided["reason"].as_str()),
        (Some("voided"), Some("order_refunded"))
    );
    assert!(voided["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["status"] == "voided"));
    assert_eq!(balance(&app, &a, "points").await, (0, 100));
    assert_eq!(balance(&app, &d, "wallet_bonus").await, (0, 0));
    assert_eq!(
        campaign_view(&app, &c).await["spent"],
        600,
        "the voided cost came back"
    );
    order_paid(&app, &d, "ord-d2", 3000).await;
    assert_eq!(
        referral_of(&app, &c, &d).await["status"],
        "voided",
        "no second chance"
    );

    app.clock.advance(SignedDuration::from_hours(24 * 7 - 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(
        balance(&app, &a, "points").await,
        (0, 100),
        "still inside the window"
    );
    app.clock.advance(SignedDuration::from_hours(2));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let r = referral_of(&app, &c, &b).await;
    assert_eq!(r["status"], "rewarded");
    assert!(r["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["status"] == "posted"));
    assert_eq!(balance(&app, &a, "points").await, (100, 0));
    assert_eq!(balance(&app, &b, "wallet_bonus").await, (500, 0));
    // A refund after the window changes nothing.
    order_refunded(&app, "ord-b1", true).await;
    assert_eq!(referral_of(&app, &c, &b).await["status"], "rewarded");
    assert_eq!(balance(&app, &a, "points").await, (100, 0));
    let events = app.get("/v1/events?type=referral.voided").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
    verify_ok(&app).await;
}

async fn referrals_order_over_waits_for_a_large_enough_order(app: TestApp) {
    let template = app
        .post(
            "/v1/coupon-templates",
            &json!({"name": "回礼券", "kind": "amount_off", "amount_off": 500,
                    "total_stock": 10, "per_member_limit": 1, "valid_days": 30}),
        )
        .await;
    let template = template.body["id"].as_str().unwrap().to_owned();
    let c = campaign(
        &app,
        &json!({"name": "big order", "qualify_on": "order_over", "min_order_amount": 10000,
                "inviter_reward": {"coupon_template_id": template}}),
    )
    .await;
    let settings = app
        .call(
            Method::PUT,
            "/v1/referral-settings",
            Some(&json!({"return_window_days": 3})),
        )
        .await;
    assert_eq!(settings.body["return_window_days"], 3);
    let a = app.member("a").await;
    let b = invitee(&app, "b", &code(&app, &a, &c).await).await;
    order_paid(&app, &b, "small", 9999).await;
    assert_eq!(referral_of(&app, &c, &b).await["status"], "attributed");
    order_paid(&app, &b, "big", 10000).await;
    let r = referral_of(&app, &c, &b).await;
    assert_eq!(r["status"], "pending");
    assert_eq!(r["order_amount"], 10000);
    assert_eq!(
        r["rewards"][0]["status"], "pending",
        "the coupon waits for the window"
    );
    let coupons = app.get(&format!("/v1/members/{a}/coupons")).await;
    assert!(coupons.body["data"].as_array().unwrap().is_empty());
    app.clock.advance(SignedDuration::from_hours(24 * 3 + 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    let r = referral_of(&app, &c, &b).await;
    assert_eq!(r["status"], "rewarded");
    assert_eq!(r["rewards"][0]["status"], "granted");
    let coupons = app.get(&format!("/v1/members/{a}/coupons")).await;
    assert_eq!(
        coupons.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        coupons.body
    );
}

async fn referrals_leaderboard_ranks_by_invites_then_who_got_there_first(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let (a, b, cc, d) = (
        app.member("a").await,
        app.member("b").await,
        app.member("c").await,
        app.member("d").await,
    );
    let (ac, bc, ccc) = (
        code(&app, &a, &c).await,
        code(&app, &b, &c).await,
        code(&app, &cc, &c).await,
    );
    code(&app, &d, &c).await;
    // a reaches 1 first, but b reaches 2 before a does.
    for (who, n) in [
        (&ac, "a1"),
        (&bc, "b1"),
        (&bc, "b2"),
        (&ccc, "c1"),
        (&ac, "a2"),
    ] {
        invitee(&app, n, who).await;
        app.clock.advance(SignedDuration::from_secs(1));
    }
    let board = app
        .get(&format!("/v1/referral-campaigns/{c}/leaderboard?limit=10"))
        .await;
    assert_eq!(board.status, StatusCode::OK);
    let rows: Vec<(String, i64, i64)> = board.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["member_id"].as_str().unwrap().to_owned(),
                r["invites"].as_i64().unwrap(),
                r["rank"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![(b.clone(), 2, 1), (a.clone(), 2, 2), (cc.clone(), 1, 3)]
    );
    let top = app
        .get(&format!("/v1/referral-campaigns/{c}/leaderboard?limit=1"))
        .await;
    assert_eq!(top.body["data"].as_array().unwrap().len(), 1);
    let mine = app
        .get(&format!(
            "/v1/referral-campaigns/{c}/leaderboard/members/{a}"
        ))
        .await;
    assert_eq!(mine.body, json!({"member_id": a, "invites": 2, "rank": 2}));
    let third = app
        .get(&format!(
            "/v1/referral-campaigns/{c}/leaderboard/members/{cc}"
        ))
        .await;
    assert_eq!(third.body["rank"], 3);
    let none = app
        .get(&format!(
            "/v1/referral-campaigns/{c}/leaderboard/members/{d}"
        ))
        .await;
    assert_eq!(
        none.body,
        json!({"member_id": d, "invites": 0, "rank": null})
    );

    let funnel = app.get(&format!("/v1/referral-campaigns/{c}/funnel")).await;
    assert_eq!(funnel.status, StatusCode::OK);
    assert_eq!(funnel.body["codes_issued"], 4);
    assert_eq!(funnel.body["signups"], 5);
    assert_eq!(funnel.body["qualified"], 5);
    assert_eq!(funnel.body["rewarded"], 5);
    assert_eq!(funnel.body["reward_cost"], 5 * 150);
    assert_eq!(funnel.body["k_factor"], 1.25);
}

async fn referrals_bad_input_gets_4xx_and_tenants_are_isolated(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    for (body, field) in [
        (json!({"external_id": "x1", "ip": "999.1.1.1"}), "ip"),
        (json!({"external_id": "x2", "device_id": ""}), "device_id"),
        (
            json!({"external_id": "x3", "invite_code": "no spaces!"}),
            "invite_code",
        ),
    ] {
        let reply = app.post("/v1/members", &body).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reply.body["error"]["details"]["field"], field);
    }
    let unknown_campaign = app
        .get(&format!(
            "/v1/members/{a}/invite-code?campaign_id=rfc_00000000000000000000000000000000"
        ))
        .await;
    assert_eq!(unknown_campaign.status, StatusCode::NOT_FOUND);
    let no_campaign = app.get(&format!("/v1/members/{a}/invite-code")).await;
    assert_eq!(no_campaign.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_campaign.body["error"]["details"]["field"], "campaign_id");
    assert_eq!(
        app.get(&format!("/v1/referral-campaigns/{c}/leaderboard?limit=0"))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get(&format!(
            "/v1/referral-campaigns/{c}/referrals?status=maybe"
        ))
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    for bad in [
        json!({"velocity_per_hour": 0}),
        json!({"return_window_days": 400}),
        json!({"invite_link_base": "has space/"}),
    ] {
        let reply = app
            .call(Method::PUT, "/v1/referral-settings", Some(&bad))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let link = app
        .call(
            Method::PUT,
            "/v1/referral-settings",
            Some(&json!({"invite_link_base": "https://shop.example/i/"})),
        )
        .await;
    assert_eq!(link.status, StatusCode::OK);
    let shown = app
        .get(&format!("/v1/members/{a}/invite-code?campaign_id={c}"))
        .await;
    assert_eq!(
        shown.body["link"],
        format!("https://shop.example/i/{a_code}")
    );

    let (_, other_key) = app.other_tenant().await;
    let other = |method: Method, path: String, body: Option<Value>| {
        crate::support::build(method, &path, Some(&other_key), body.as_ref(), None)
    };
    for path in [
        format!("/v1/referral-campaigns/{c}"),
        format!("/v1/referral-campaigns/{c}/leaderboard"),
        format!("/v1/referral-campaigns/{c}/funnel"),
        format!("/v1/referral-campaigns/{c}/referrals"),
    ] {
        let reply = app.send(other(Method::GET, path.clone(), None)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let foreign = app
        .send(other(
            Method::POST,
            "/v1/members".into(),
            Some(json!({"external_id": "z", "invite_code": a_code})),
        ))
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "codes are per tenant"
    );
    let list = app
        .send(other(Method::GET, "/v1/referral-campaigns".into(), None))
        .await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
}

async fn pending_review_of(app: &TestApp, invitee: &str) -> String {
    app.get("/v1/referral-reviews?status=pending").await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["invitee_id"] == invitee)
        .unwrap_or_else(|| panic!("no pending review for {invitee}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn referrals_queued_order_referrals_pay_on_approval_or_close_on_refund(app: TestApp) {
    let c = campaign(
        &app,
        &json!({"name": "queued", "qualify_on": "first_paid_order",
                "inviter_reward": {"points": 100}}),
    )
    .await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    join(
        &app,
        "b",
        json!({"invite_code": a_code, "device_id": "shared"}),
    )
    .await;
    let q1 = join(
        &app,
        "q1",
        json!({"invite_code": a_code, "device_id": "shared"}),
    )
    .await;
    let q1 = q1["id"].as_str().unwrap().to_owned();
    let q2 = join(
        &app,
        "q2",
        json!({"invite_code": a_code, "device_id": "shared"}),
    )
    .await;
    let q2 = q2["id"].as_str().unwrap().to_owned();
    let (r1, r2) = (
        pending_review_of(&app, &q1).await,
        pending_review_of(&app, &q2).await,
    );

    // Orders paid while queued are remembered, not paid.
    order_paid(&app, &q1, "ord-q1", 2000).await;
    order_paid(&app, &q2, "ord-q2", 2000).await;
    let queued = referral_of(&app, &c, &q1).await;
    assert_eq!(
        (queued["status"].as_str(), queued["order_id"].as_str()),
        (Some("review"), Some("ord-q1"))
    );
    assert_eq!(balance(&app, &a, "points").await, (0, 0));

    // Approval pays, pending until the window of the remembered order closes.
    let approved = app
        .post(&format!("/v1/referral-reviews/{r1}/approve"), &json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "pending");
    assert_eq!(balance(&app, &a, "points").await, (0, 100));

    // A refund while queued closes the review; it can no longer be approved.
    order_refunded(&app, "ord-q2", true).await;
    let closed = referral_of(&app, &c, &q2).await;
    assert_eq!(
        (closed["status"].as_str(), closed["reason"].as_str()),
        (Some("voided"), Some("order_refunded"))
    );
    let late = app
        .post(&format!("/v1/referral-reviews/{r2}/approve"), &json!({}))
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["error"]["code"], "review_already_decided");
    let closed_reviews = app.get("/v1/referral-reviews?status=closed").await;
    assert_eq!(closed_reviews.body["data"].as_array().unwrap().len(), 1);

    app.clock.advance(SignedDuration::from_hours(24 * 7 + 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(referral_of(&app, &c, &q1).await["status"], "rewarded");
    assert_eq!(balance(&app, &a, "points").await, (100, 0));
    verify_ok(&app).await;
}

async fn referrals_erasure_forgets_device_and_ip(app: TestApp) {
    let c = campaign(&app, &signup_campaign()).await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let first = join(
        &app,
        "first",
        json!({"invite_code": a_code, "device_id": "d", "ip": "10.9.0.1"}),
    )
    .await;
    let first = first["id"].as_str().unwrap().to_owned();
    let erased = app.delete(&format!("/v1/members/{first}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    // With the first invitee's device and IP forgotten, the same device no longer looks shared.
    let second = join(
        &app,
        "second",
        json!({"invite_code": a_code, "device_id": "d", "ip": "10.9.0.1"}),
    )
    .await;
    let second = second["id"].as_str().unwrap().to_owned();
    assert_eq!(referral_of(&app, &c, &second).await["status"], "rewarded");
    assert_eq!(
        referral_of(&app, &c, &first).await["status"],
        "rewarded",
        "the decision stays"
    );
}

/// End to end through the orders API: a checkout paid from the wallet qualifies the referral
/// (pending rewards), a full refund inside the return window voids them.
async fn referrals_real_checkout_orders_qualify_and_a_full_refund_voids(app: TestApp) {
    let c = campaign(
        &app,
        &json!({"name": "first order", "qualify_on": "first_paid_order",
                "inviter_reward": {"points": 100}, "invitee_reward": {"points": 50},
                "budget": 10000}),
    )
    .await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let b = invitee(&app, "b", &a_code).await;
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "tea", "sku": "TEA", "price": 3000, "stock": 5}),
        )
        .await;
    let product = product.body["id"].as_str().unwrap().to_owned();
    let order = app
        .post(
            "/v1/orders",
            &json!({"member_id": b, "items": [{"product_id": product, "qty": 1}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let order_id = order.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        referral_of(&app, &c, &b).await["status"],
        "attributed",
        "unpaid: not yet"
    );
    let paid = app
        .post(
            &format!("/v1/orders/{order_id}/payments"),
            &json!({"method": "external", "reference": "pay-b-1"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let r = referral_of(&app, &c, &b).await;
    assert_eq!(r["status"], "pending");
    assert_eq!(r["order_id"], order_id.as_str());
    assert_eq!(balance(&app, &a, "points").await, (0, 100));
    let refund = app
        .post(
            &format!("/v1/orders/{order_id}/refunds"),
            &json!({"reason": "changed mind"}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    assert_eq!(referral_of(&app, &c, &b).await["status"], "voided");
    assert_eq!(balance(&app, &a, "points").await, (0, 0));
    verify_ok(&app).await;
}

/// Scoring marks a buying inviter with a qualified invite `advocate`; a buyer without
/// one keeps the recency stage.
async fn referrals_inviters_with_qualified_invites_become_advocates(app: TestApp) {
    let c = campaign(
        &app,
        &json!({"name": "signup", "qualify_on": "signup",
                "inviter_reward": {"points": 10}, "budget": 1000}),
    )
    .await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let b = invitee(&app, "b", &a_code).await;
    assert_eq!(referral_of(&app, &c, &b).await["status"], "rewarded");
    // Order history for a, b and 80 other customers with varied repeat buying, so that the
    // lifetime-value models behind the daily scoring run can be fitted.
    let day =
        |days_ago: i64| (app.clock_now() - SignedDuration::from_hours(24 * days_ago)).to_string();
    let mut csv = String::from("external_member_id,ordered_at,amount,currency,items\n");
    for (member, days_ago) in [("a", 400), ("a", 200), ("a", 10), ("b", 5)] {
        csv.push_str(&format!("{member},{},3000,CNY,\n", day(days_ago)));
    }
    for n in 0..80i64 {
        for k in 0..(n % 5) + 1 {
            csv.push_str(&format!(
                "c{n},{},{},CNY,\n",
                day(20 + (n * 7 + k * 61) % 500),
                1000 + n * 10
            ));
        }
    }
    let request = axum::http::Request::builder()
        .method(axum::http::Method::POST)
        .uri("/v1/orders/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(axum::body::Body::from(csv))
        .unwrap();
    let imported = app.send(request).await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    // The scoring run (what the daily job and `shequn analytics fit` do).
    shequn::analytics::scoring::fit_and_score(
        &app.state.db,
        &tenant,
        &zone,
        app.clock_now().to_zoned(zone.clone()).date(),
        shequn::analytics::model::summary::TimeUnit::Week,
        app.clock_now(),
    )
    .await
    .unwrap();
    let stage = |m: String| {
        let app = &app;
        async move { app.get(&format!("/v1/members/{m}")).await.body["lifecycle_stage"].clone() }
    };
    assert_eq!(stage(a.clone()).await, "advocate");
    assert_eq!(stage(b.clone()).await, "new");
}

/// Every ladder reward of a campaign, across its referrals, with the referral's invitee.
async fn ladder_rewards(app: &TestApp, campaign: &str) -> Vec<(String, Value)> {
    referrals_of(app, campaign, None)
        .await
        .iter()
        .flat_map(|r| {
            let invitee = r["invitee_id"].as_str().unwrap().to_owned();
            r["rewards"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| w["role"].as_str().unwrap().starts_with("ladder"))
                .map(move |w| (invitee.clone(), w.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The payloads of the events of one type, oldest first.
async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}&limit=1000")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].clone())
        .collect()
}

/// A campaign paying 100 points per qualified first order and `rung_points` at `rung` invites.
async fn ladder_campaign(app: &TestApp, rung: i64, rung_points: i64) -> String {
    campaign(
        app,
        &json!({"name": "ladder by orders", "qualify_on": "first_paid_order",
                "inviter_reward": {"points": 100},
                "ladder": [{"invites": rung, "reward": {"points": rung_points}}],
                "budget": 100000}),
    )
    .await
}

/// Order one unit of `product` for `member` and pay it externally, through the orders API.
async fn paid_order(app: &TestApp, member: &str, product: &str) -> String {
    let order = app
        .post(
            "/v1/orders",
            &json!({"member_id": member, "items": [{"product_id": product, "qty": 1}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let order_id = order.body["id"].as_str().unwrap().to_owned();
    let paid = app
        .post(
            &format!("/v1/orders/{order_id}/payments"),
            &json!({"method": "external", "reference": format!("pay-{order_id}")}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    order_id
}

/// The issue 16 case through the orders API: three invitees pay, the third reaches the
/// 3-invite rung (pending); a full refund of the first invitee's order takes the count to 2 and
/// voids the rung in the refund's transaction; a fourth invitee pays and the rung is paid again,
/// once, under a new id; the release posts it exactly once and a later refund leaves it.
async fn referrals_ladder_rung_is_voided_below_its_count_and_paid_again_once(app: TestApp) {
    let c = ladder_campaign(&app, 3, 300).await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "豆浆", "sku": "SOY", "price": 1200, "stock": 10}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let product = product.body["id"].as_str().unwrap().to_owned();
    let mut invitees = Vec::new();
    let mut orders = Vec::new();
    for n in 1..=3 {
        let b = invitee(&app, &format!("b{n}"), &a_code).await;
        orders.push(paid_order(&app, &b, &product).await);
        invitees.push(b);
    }
    let rungs = ladder_rewards(&app, &c).await;
    assert_eq!(rungs.len(), 1, "{rungs:?}");
    assert_eq!(rungs[0].0, invitees[2], "the third invite reached the rung");
    assert_eq!(rungs[0].1["status"], "pending");
    let first_id = rungs[0].1["id"].as_str().unwrap().to_owned();
    assert_eq!(balance(&app, &a, "points").await, (0, 3 * 100 + 300));
    assert_eq!(campaign_view(&app, &c).await["spent"], 600);

    // A full refund of the first invitee's order: qualified 3 -> 2.
    let refund = app
        .post(
            &format!("/v1/orders/{}/refunds", orders[0]),
            &json!({"reason": "changed mind"}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    assert_eq!(
        referral_of(&app, &c, &invitees[0]).await["status"],
        "voided"
    );
    let third = referral_of(&app, &c, &invitees[2]).await;
    assert_eq!(third["status"], "pending", "its own reward stays");
    assert_eq!(third["reward_cost"], 100, "the rung's cost left it");
    let rungs = ladder_rewards(&app, &c).await;
    assert_eq!(rungs.len(), 1);
    assert_eq!(rungs[0].1["status"], "voided");
    assert_eq!(
        balance(&app, &a, "points").await,
        (0, 2 * 100),
        "the rung's pending points are gone"
    );
    let transfer = app.get(&format!("/v1/ledger/transfers/{first_id}")).await;
    assert_eq!(transfer.status, StatusCode::OK, "{}", transfer.body);
    assert_eq!(transfer.body["status"], "voided", "{}", transfer.body);
    assert_eq!(campaign_view(&app, &c).await["spent"], 200);
    let standing = app
        .get(&format!(
            "/v1/referral-campaigns/{c}/leaderboard/members/{a}"
        ))
        .await;
    assert_eq!(standing.body["invites"], 2);
    let voided = events_of(&app, "referral.ladder_reward_voided").await;
    assert_eq!(voided.len(), 1, "{voided:?}");
    assert_eq!(voided[0]["reward_id"], first_id.as_str());
    assert_eq!(voided[0]["invites"], 3);
    assert_eq!(voided[0]["reason"], "below_rung");
    assert_eq!(voided[0]["qualified"], 2);
    assert_eq!(voided[0]["inviter_id"], a.as_str());
    assert_eq!(voided[0]["amount"], 300);
    verify_ok(&app).await;

    // A fourth invitee pays: qualified 2 -> 3, the rung is paid again, once.
    let b4 = invitee(&app, "b4", &a_code).await;
    orders.push(paid_order(&app, &b4, &product).await);
    invitees.push(b4.clone());
    let rungs = ladder_rewards(&app, &c).await;
    assert_eq!(rungs.len(), 2, "{rungs:?}");
    let live: Vec<_> = rungs
        .iter()
        .filter(|(_, w)| w["status"] != "voided")
        .collect();
    assert_eq!(live.len(), 1, "one live reward for the rung: {rungs:?}");
    assert_eq!(live[0].0, b4);
    assert_eq!(live[0].1["status"], "pending");
    let second_id = live[0].1["id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first_id);
    assert!(second_id.ends_with(":ladder_3:2"), "{second_id}");
    assert_eq!(balance(&app, &a, "points").await, (0, 3 * 100 + 300));
    assert_eq!(campaign_view(&app, &c).await["spent"], 600);
    let paid = events_of(&app, "referral.ladder_reward_paid").await;
    assert_eq!(paid.len(), 2, "{paid:?}");
    assert_eq!(paid[1]["reward_id"], second_id.as_str());
    assert_eq!(paid[1]["attempt"], 2);
    assert_eq!(paid[1]["qualified"], 3);

    // The window closes: every pending reward is posted, the rung exactly once.
    app.clock.advance(SignedDuration::from_hours(24 * 7 + 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(balance(&app, &a, "points").await, (3 * 100 + 300, 0));
    let rungs = ladder_rewards(&app, &c).await;
    let statuses: Vec<_> = rungs.iter().map(|(_, w)| w["status"].clone()).collect();
    assert_eq!(
        statuses,
        vec![json!("voided"), json!("posted")],
        "{rungs:?}"
    );

    // A refund after the release takes nothing back.
    let late = app
        .post(
            &format!("/v1/orders/{}/refunds", orders[1]),
            &json!({"reason": "late"}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CREATED, "{}", late.body);
    assert_eq!(balance(&app, &a, "points").await, (3 * 100 + 300, 0));
    assert_eq!(
        events_of(&app, "referral.ladder_reward_voided").await.len(),
        1
    );
    verify_ok(&app).await;
}

/// The referral that carried a rung is refunded while the inviter's count still reaches the
/// rung (a later invite counts): the rung is voided with its carrier and paid again on the
/// inviter's latest pending referral, so it is neither lost nor paid twice.
async fn referrals_ladder_rung_of_a_refunded_carrier_is_paid_again_while_the_count_reaches_it(
    app: TestApp,
) {
    let c = ladder_campaign(&app, 2, 200).await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let mut invitees = Vec::new();
    for n in 1..=3 {
        let b = invitee(&app, &format!("b{n}"), &a_code).await;
        order_paid(&app, &b, &format!("ord-{n}"), 1000).await;
        invitees.push(b);
    }
    let rungs = ladder_rewards(&app, &c).await;
    assert_eq!(rungs.len(), 1);
    assert_eq!(
        rungs[0].0, invitees[1],
        "the second invite reached the rung"
    );
    assert_eq!(balance(&app, &a, "points").await, (0, 3 * 100 + 200));

    order_refunded(&app, "ord-2", true).await;
    assert_eq!(
        referral_of(&app, &c, &invitees[1]).await["status"],
        "voided"
    );
    let rungs = ladder_rewards(&app, &c).await;
    let live: Vec<_> = rungs
        .iter()
        .filter(|(_, w)| w["status"] != "voided")
        .collect();
    assert_eq!(live.len(), 1, "{rungs:?}");
    assert_eq!(
        live[0].0, invitees[2],
        "carried by the latest pending referral"
    );
    assert_eq!(live[0].1["status"], "pending");
    assert!(live[0].1["id"].as_str().unwrap().ends_with(":ladder_2:2"));
    assert_eq!(balance(&app, &a, "points").await, (0, 2 * 100 + 200));
    assert_eq!(campaign_view(&app, &c).await["spent"], 400);
    assert_eq!(
        referral_of(&app, &c, &invitees[2]).await["reward_cost"],
        300,
        "its own reward and the rung it now carries"
    );
    let voided = events_of(&app, "referral.ladder_reward_voided").await;
    assert_eq!(voided.len(), 1);
    assert_eq!(voided[0]["reason"], "referral_voided");
    assert_eq!(voided[0]["qualified"], 2);
    let paid = events_of(&app, "referral.ladder_reward_paid").await;
    assert_eq!(paid.len(), 2);
    assert_eq!(paid[1]["attempt"], 2);
    // The same refund again (a retried hook) changes nothing.
    order_refunded(&app, "ord-2", true).await;
    assert_eq!(ladder_rewards(&app, &c).await.len(), 2);
    verify_ok(&app).await;

    app.clock.advance(SignedDuration::from_hours(24 * 7 + 1));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(balance(&app, &a, "points").await, (2 * 100 + 200, 0));
    verify_ok(&app).await;
}

/// A rung released while an invite that counts for it is still inside its window (the window
/// was shortened in between) stays when that invite is refunded afterwards, and is not paid
/// again when the count comes back.
async fn referrals_a_released_ladder_reward_stays_when_the_count_falls_later(app: TestApp) {
    let c = ladder_campaign(&app, 2, 200).await;
    let a = app.member("a").await;
    let a_code = code(&app, &a, &c).await;
    let b1 = invitee(&app, "b1", &a_code).await;
    order_paid(&app, &b1, "ord-1", 1000).await;
    let settings = app
        .call(
            Method::PUT,
            "/v1/referral-settings",
            Some(&json!({"return_window_days": 1})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let b2 = invitee(&app, "b2", &a_code).await;
    order_paid(&app, &b2, "ord-2", 1000).await;
    app.clock.advance(SignedDuration::from_hours(25));
    shequn::server::run_due_jobs(&app.state).await.unwrap();
    assert_eq!(referral_of(&app, &c, &b2).await["status"], "rewarded");
    assert_eq!(referral_of(&app, &c, &b1).await["status"], "pending");
    assert_eq!(balance(&app, &a, "points").await, (100 + 200, 100));

    order_refunded(&app, "ord-1", true).await;
    assert_eq!(referral_of(&app, &c, &b1).await["status"], "voided");
    let rungs = ladder_rewards(&app, &c).await;
    assert_eq!(rungs.len(), 1);
    assert_eq!(rungs[0].1["status"], "posted", "a released rung is final");
    assert_eq!(balance(&app, &a, "points").await, (100 + 200, 0));
    assert!(events_of(&app, "referral.ladder_reward_voided")
        .await
        .is_empty());

    let b3 = invitee(&app, "b3", &a_code).await;
    order_paid(&app, &b3, "ord-3", 1000).await;
    assert_eq!(
        ladder_rewards(&app, &c).await.len(),
        1,
        "the count is back at 2; the posted rung is not paid again"
    );
    assert_eq!(balance(&app, &a, "points").await, (100 + 200, 100));
    verify_ok(&app).await;
}
