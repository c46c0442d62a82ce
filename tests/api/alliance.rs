//! Merchant alliance (商家联盟): three merchants (tenants) found and join an alliance with
//! one-time invitations and see each other by display name only; shared coupon offers claimed
//! concurrently beyond their stock; a cross-referral fee on the customer's first paid order at
//! the issuer, voided by a full refund within the return window and final after it; balances
//! that sum to zero and equal the statements' entries; settlements; a partner leaving with what
//! it is owed kept; erasure at one merchant leaving the settlement balanced; and the isolation
//! matrix (every route by a non-partner is 404, another partner's ids are refused).

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::console_support::{html, operator, Browser};
use crate::support::{build, Reply, TestApp};

backend_tests!(
    alliance_three_merchants_found_invite_and_join_seeing_names_only,
    alliance_offer_claimed_concurrently_beyond_stock_issues_exactly_the_stock,
    alliance_claim_finds_the_issuers_member_by_phone_and_records_consent,
    alliance_fee_on_first_paid_order_is_voided_by_a_full_refund_in_the_window,
    alliance_statements_sum_to_the_balances_and_export_csv,
    alliance_partner_leaving_keeps_what_is_owed_and_settles_it,
    alliance_erasure_at_one_merchant_leaves_the_settlement_balanced,
    alliance_isolation_matrix_non_partners_get_404_and_foreign_ids_are_refused,
    alliance_console_page_shows_partners_offers_and_balances,
);

/// One merchant: a tenant and its key.
pub(crate) struct Merchant {
    pub(crate) tenant_id: String,
    pub(crate) key: String,
}

impl Merchant {
    pub(crate) async fn new(app: &TestApp, name: &str) -> Merchant {
        let created = shequn::tenants::create(&app.state.db, name, app.clock_now())
            .await
            .expect("tenant");
        Merchant {
            tenant_id: created.tenant_id.to_string(),
            key: created.api_key,
        }
    }

    pub(crate) async fn call(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        app.send(build(method, path, Some(&self.key), body, None))
            .await
    }

    pub(crate) async fn get(&self, app: &TestApp, path: &str) -> Reply {
        self.call(app, Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, app: &TestApp, path: &str, body: &Value) -> Reply {
        self.call(app, Method::POST, path, Some(body)).await
    }

    /// A member (optionally with a phone); returns its id.
    pub(crate) async fn member(&self, app: &TestApp, name: &str, phone: Option<&str>) -> String {
        let mut body = json!({ "name": name });
        if let Some(phone) = phone {
            body["phone"] = json!(phone);
        }
        let reply = self.post(app, "/v1/members", &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn template(&self, app: &TestApp, stock: i64) -> String {
        let reply = self
            .post(
                app,
                "/v1/coupon-templates",
                &json!({"name": "联盟券", "kind": "amount_off", "amount_off": 500,
                        "total_stock": stock, "per_member_limit": 1, "valid_days": 30}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn offer(&self, app: &TestApp, alliance: &str, stock: i64) -> String {
        let template = self.template(app, 1000).await;
        let reply = self
            .post(
                app,
                &format!("/v1/alliances/{alliance}/offers"),
                &json!({ "coupon_template_id": template, "stock": stock }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["coupon_template_id"], template);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn claim(
        &self,
        app: &TestApp,
        alliance: &str,
        offer: &str,
        member: &str,
    ) -> Reply {
        self.post(
            app,
            &format!("/v1/alliances/{alliance}/offers/{offer}/claim"),
            &json!({ "member_id": member }),
        )
        .await
    }

    /// Place and pay (externally) an order of `price` fen; returns the order id.
    pub(crate) async fn paid_order(&self, app: &TestApp, member: &str, price: i64) -> String {
        let sku = format!("sku-{}", uuid::Uuid::new_v4().simple());
        let product = self
            .post(
                app,
                "/v1/products",
                &json!({"name": "cake", "sku": sku, "price": price, "stock": 100}),
            )
            .await;
        assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
        let order = self
            .post(
                app,
                "/v1/orders",
                &json!({"member_id": member,
                        "items": [{"product_id": product.body["id"], "qty": 1}]}),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
        let id = order.body["id"].as_str().unwrap().to_owned();
        let paid = self
            .post(
                app,
                &format!("/v1/orders/{id}/payments"),
                &json!({"method": "external", "reference": format!("pay-{id}")}),
            )
            .await;
        assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
        id
    }

    pub(crate) async fn refund_in_full(&self, app: &TestApp, order: &str) {
        let reply = self
            .post(
                app,
                &format!("/v1/orders/{order}/refunds"),
                &json!({ "reason": "returned" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }

    pub(crate) async fn events(&self, app: &TestApp, kind: &str) -> Vec<Value> {
        let reply = self
            .get(app, &format!("/v1/events?type={kind}&limit=1000"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["data"].as_array().unwrap().clone()
    }
}

pub(crate) fn fixed_fee(value: i64) -> Value {
    json!({ "referral_fee": { "kind": "fixed", "value": value }, "fee_on": "first_paid_order" })
}

/// Three merchants in one alliance founded by the first: (alliance id, [cafe, bakery, gym],
/// [their partner ids]).
pub(crate) async fn three_partners(
    app: &TestApp,
    rules: Value,
) -> (String, [Merchant; 3], [String; 3]) {
    let cafe = Merchant::new(app, "Cafe").await;
    let bakery = Merchant::new(app, "Bakery").await;
    let gym = Merchant::new(app, "Gym").await;
    let created = cafe
        .post(
            app,
            "/v1/alliances",
            &json!({ "name": "Old Town", "rules": rules }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let alliance = created.body["id"].as_str().unwrap().to_owned();
    let mut ids = vec![created.body["my_partner_id"].as_str().unwrap().to_owned()];
    for joiner in [&bakery, &gym] {
        let invitation = cafe
            .post(
                app,
                &format!("/v1/alliances/{alliance}/invitations"),
                &json!({}),
            )
            .await;
        assert_eq!(
            invitation.status,
            StatusCode::CREATED,
            "{}",
            invitation.body
        );
        let joined = joiner
            .post(
                app,
                "/v1/alliances/join",
                &json!({ "code": invitation.body["code"] }),
            )
            .await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
        ids.push(joined.body["my_partner_id"].as_str().unwrap().to_owned());
    }
    let ids: [String; 3] = ids.try_into().unwrap();
    (alliance, [cafe, bakery, gym], ids)
}

pub(crate) async fn balances(app: &TestApp, who: &Merchant, alliance: &str) -> Vec<Value> {
    let reply = who
        .get(app, &format!("/v1/alliances/{alliance}/balances"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let partners = reply.body["partners"].as_array().unwrap().clone();
    let total: i64 = partners.iter().map(|p| p["net"].as_i64().unwrap()).sum();
    assert_eq!(total, 0, "balances must sum to zero: {}", reply.body);
    for p in &partners {
        assert_eq!(
            p["net"].as_i64().unwrap(),
            p["owed"].as_i64().unwrap() - p["owes"].as_i64().unwrap()
        );
    }
    partners
}

pub(crate) fn net_of(partners: &[Value], partner_id: &str) -> i64 {
    partners
        .iter()
        .find(|p| p["partner_id"] == partner_id)
        .map(|p| p["net"].as_i64().unwrap())
        .expect("partner in balances")
}

async fn alliance_three_merchants_found_invite_and_join_seeing_names_only(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(500)).await;
    for who in [&cafe, &bakery, &gym] {
        let reply = who.get(&app, &format!("/v1/alliances/{alliance}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let names: Vec<&str> = reply.body["partners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Cafe", "Bakery", "Gym"]);
        assert_eq!(reply.body["founder_partner_id"], ids[0].as_str());
        // Partners are shown by display name, never by tenant.
        let text = reply.body.to_string();
        for other in [&cafe, &bakery, &gym] {
            assert!(!text.contains(&other.tenant_id), "{text}");
        }
        let list = who.get(&app, "/v1/alliances").await;
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    }
    // A code is one-time; a used one is refused, an expired one too.
    let invitation = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/invitations"),
            &json!({}),
        )
        .await;
    let code = invitation.body["code"].as_str().unwrap().to_owned();
    let again = bakery
        .post(&app, "/v1/alliances/join", &json!({ "code": code }))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "already_partner");
    let florist = Merchant::new(&app, "Florist").await;
    let joined = florist
        .post(
            &app,
            "/v1/alliances/join",
            &json!({ "code": code, "display_name": "花店" }),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    assert_eq!(joined.body["partners"][3]["name"], "花店");
    let late = Merchant::new(&app, "Late").await;
    let used = late
        .post(&app, "/v1/alliances/join", &json!({ "code": code }))
        .await;
    assert_eq!(used.status, StatusCode::CONFLICT);
    assert_eq!(used.body["error"]["code"], "invitation_used");
    let short = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/invitations"),
            &json!({ "expires_in_hours": 1 }),
        )
        .await;
    app.clock.advance(SignedDuration::from_hours(2));
    let expired = late
        .post(
            &app,
            "/v1/alliances/join",
            &json!({ "code": short.body["code"] }),
        )
        .await;
    assert_eq!(expired.status, StatusCode::CONFLICT);
    assert_eq!(expired.body["error"]["code"], "invitation_expired");
    let unknown = late
        .post(&app, "/v1/alliances/join", &json!({ "code": "nope" }))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Bad rules are refused with the field named.
    for rules in [
        json!({ "referral_fee": { "kind": "percent_bp", "value": 10_001 }, "fee_on": "first_paid_order" }),
        json!({ "referral_fee": { "kind": "fixed", "value": -1 }, "fee_on": "first_paid_order" }),
    ] {
        let reply = cafe
            .post(
                &app,
                "/v1/alliances",
                &json!({ "name": "x", "rules": rules }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
    }
    let unknown_basis = cafe
        .post(
            &app,
            "/v1/alliances",
            &json!({ "name": "x", "rules": { "referral_fee": { "kind": "fixed", "value": 1 }, "fee_on": "signup" } }),
        )
        .await;
    assert!(
        unknown_basis.status.is_client_error(),
        "{}",
        unknown_basis.body
    );
    assert_eq!(cafe.events(&app, "alliance.created").await.len(), 1);
    assert_eq!(bakery.events(&app, "alliance.joined").await.len(), 1);
}

async fn alliance_offer_claimed_concurrently_beyond_stock_issues_exactly_the_stock(app: TestApp) {
    let (alliance, [cafe, bakery, gym], _) = three_partners(&app, fixed_fee(500)).await;
    let offer = cafe.offer(&app, &alliance, 5).await;
    let mut members = Vec::new();
    for i in 0..8 {
        members.push((&bakery, bakery.member(&app, &format!("b{i}"), None).await));
        members.push((&gym, gym.member(&app, &format!("g{i}"), None).await));
    }
    let replies = futures::future::join_all(
        members
            .iter()
            .map(|(who, member)| who.claim(&app, &alliance, &offer, member)),
    )
    .await;
    let won: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(won.len(), 5, "{replies:?}");
    for reply in &replies {
        if reply.status != StatusCode::CREATED {
            assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
            assert_eq!(reply.body["error"]["code"], "out_of_stock");
        }
    }
    // Each winner holds a coupon at the cafe, as a new cafe member from the alliance.
    for reply in won {
        let coupon = cafe
            .get(
                &app,
                &format!("/v1/coupons/{}", reply.body["coupon_id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(coupon.status, StatusCode::OK, "{}", coupon.body);
        assert_eq!(coupon.body["member_id"], reply.body["issuer_member_id"]);
        let member = cafe
            .get(
                &app,
                &format!(
                    "/v1/members/{}",
                    reply.body["issuer_member_id"].as_str().unwrap()
                ),
            )
            .await;
        assert_eq!(member.body["source"], "alliance");
        assert!(member.body["attributes"]["referred_by_partner"].is_string());
        // The claimer never gets to read the issuer's member.
        let theirs = bakery
            .get(
                &app,
                &format!(
                    "/v1/members/{}",
                    reply.body["issuer_member_id"].as_str().unwrap()
                ),
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    }
    let offers = gym
        .get(&app, &format!("/v1/alliances/{alliance}/offers"))
        .await;
    assert_eq!(offers.body["data"][0]["remaining"], 0);
    assert_eq!(offers.body["data"][0]["coupon_template_id"], Value::Null);
    assert_eq!(offers.body["data"][0]["partner_name"], "Cafe");
    assert_eq!(cafe.events(&app, "alliance.offer_claimed").await.len(), 5);
    // One's own offer cannot be claimed.
    let own = cafe.member(&app, "own", None).await;
    let refused = cafe.claim(&app, &alliance, &offer, &own).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
}

async fn alliance_claim_finds_the_issuers_member_by_phone_and_records_consent(app: TestApp) {
    let (alliance, [cafe, bakery, _gym], _) = three_partners(&app, fixed_fee(500)).await;
    let offer = cafe.offer(&app, &alliance, 10).await;
    let existing = cafe.member(&app, "王芳", Some("+8613800000001")).await;
    let at_bakery = bakery.member(&app, "王芳", Some("+8613800000001")).await;
    let claimed = bakery.claim(&app, &alliance, &offer, &at_bakery).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.body);
    assert_eq!(claimed.body["issuer_member_id"], existing.as_str());
    assert!(claimed.body["claimed_at"].is_string());
    // A second offer of the cafe finds the same member through the first claim's link.
    let second = cafe.offer(&app, &alliance, 10).await;
    let again = bakery.claim(&app, &alliance, &second, &at_bakery).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body["issuer_member_id"], existing.as_str());
    // The template's per-member limit holds across the alliance.
    let twice = bakery.claim(&app, &alliance, &offer, &at_bakery).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["error"]["code"], "limit_reached");
    // Without a phone a new member is made at the issuer.
    let anonymous = bakery.member(&app, "anon", None).await;
    let fresh = bakery.claim(&app, &alliance, &offer, &anonymous).await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.body);
    assert_ne!(fresh.body["issuer_member_id"], existing.as_str());
    // The claim's events name each side's own member only.
    for event in bakery.events(&app, "alliance.offer_claimed").await {
        assert_ne!(event["data"]["member_id"], existing.as_str());
    }
    for event in cafe.events(&app, "alliance.offer_claimed").await {
        assert_ne!(event["data"]["member_id"], at_bakery.as_str());
    }
}

/// A bakery customer claims the cafe's offer: (cafe member id of the customer).
pub(crate) async fn sent_customer(
    app: &TestApp,
    alliance: &str,
    issuer: &Merchant,
    sender: &Merchant,
    name: &str,
) -> String {
    let offer = issuer.offer(app, alliance, 10).await;
    let member = sender.member(app, name, None).await;
    let claimed = sender.claim(app, alliance, &offer, &member).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.body);
    claimed.body["issuer_member_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn alliance_fee_on_first_paid_order_is_voided_by_a_full_refund_in_the_window(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(500)).await;
    let customer = sent_customer(&app, &alliance, &cafe, &bakery, "c1").await;
    let first = cafe.paid_order(&app, &customer, 3000).await;
    let after_first = balances(&app, &gym, &alliance).await;
    assert_eq!(net_of(&after_first, &ids[0]), -500);
    assert_eq!(net_of(&after_first, &ids[1]), 500);
    assert_eq!(net_of(&after_first, &ids[2]), 0);
    // Only the first paid order earns.
    cafe.paid_order(&app, &customer, 3000).await;
    assert_eq!(
        net_of(&balances(&app, &cafe, &alliance).await, &ids[1]),
        500
    );
    // The first order refunded in full within the window: the fee is reversed.
    cafe.refund_in_full(&app, &first).await;
    let after_refund = balances(&app, &bakery, &alliance).await;
    assert!(
        after_refund.iter().all(|p| p["net"] == 0),
        "{after_refund:?}"
    );
    assert_eq!(bakery.events(&app, "alliance.fee_created").await.len(), 1);
    assert_eq!(bakery.events(&app, "alliance.fee_voided").await.len(), 1);
    assert_eq!(cafe.events(&app, "alliance.fee_voided").await.len(), 1);
    // A percent fee, refunded after the return window (7 days): the fee stays.
    let customer2 = sent_customer(&app, &alliance, &cafe, &gym, "c2").await;
    let order2 = cafe.paid_order(&app, &customer2, 2999).await;
    let before = balances(&app, &cafe, &alliance).await;
    assert_eq!(net_of(&before, &ids[2]), 500);
    app.clock.advance(SignedDuration::from_hours(24 * 8));
    cafe.refund_in_full(&app, &order2).await;
    let after = balances(&app, &cafe, &alliance).await;
    assert_eq!(net_of(&after, &ids[2]), 500);
    assert_eq!(net_of(&after, &ids[0]), -500);
    // A customer who already paid the cafe before being sent earns nothing.
    let regular = cafe.member(&app, "regular", Some("+8613800000002")).await;
    cafe.paid_order(&app, &regular, 1000).await;
    let offer = cafe.offer(&app, &alliance, 10).await;
    let at_bakery = bakery.member(&app, "regular", Some("+8613800000002")).await;
    let claimed = bakery.claim(&app, &alliance, &offer, &at_bakery).await;
    assert_eq!(claimed.body["issuer_member_id"], regular.as_str());
    cafe.paid_order(&app, &regular, 1000).await;
    assert_eq!(net_of(&balances(&app, &cafe, &alliance).await, &ids[1]), 0);
}

async fn alliance_statements_sum_to_the_balances_and_export_csv(app: TestApp) {
    let rules = json!({ "referral_fee": { "kind": "percent_bp", "value": 1000 }, "fee_on": "first_paid_order" });
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, rules).await;
    // Fees both ways and a refunded one.
    let c1 = sent_customer(&app, &alliance, &cafe, &bakery, "c1").await;
    cafe.paid_order(&app, &c1, 3333).await; // cafe owes bakery 333
    let c2 = sent_customer(&app, &alliance, &bakery, &gym, "c2").await;
    bakery.paid_order(&app, &c2, 5000).await; // bakery owes gym 500
    let c3 = sent_customer(&app, &alliance, &gym, &cafe, "c3").await;
    let refunded = gym.paid_order(&app, &c3, 2000).await; // gym owes cafe 200 …
    gym.refund_in_full(&app, &refunded).await; // … then not
    let settled = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/settlements"),
            &json!({ "from": ids[0], "to": ids[1], "amount": 300, "reference": "bank 0001" }),
        )
        .await;
    assert_eq!(settled.status, StatusCode::CREATED, "{}", settled.body);
    let totals = balances(&app, &gym, &alliance).await;
    assert_eq!(net_of(&totals, &ids[0]), -33);
    assert_eq!(net_of(&totals, &ids[1]), 333 - 300 - 500);
    assert_eq!(net_of(&totals, &ids[2]), 500);
    // The month's statement (and the next one, should the test straddle a month's end) holds
    // every entry; summed per partner, they are the balances.
    let now = app
        .clock_now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let reply = bakery
        .get(
            &app,
            &format!("/v1/alliances/{alliance}/statements?month={month}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let entries = reply.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5, "{}", reply.body);
    for id in &ids {
        let credited: i64 = entries
            .iter()
            .filter(|e| e["credit_partner_id"] == id.as_str())
            .map(|e| e["amount"].as_i64().unwrap())
            .sum();
        let debited: i64 = entries
            .iter()
            .filter(|e| e["debit_partner_id"] == id.as_str())
            .map(|e| e["amount"].as_i64().unwrap())
            .sum();
        assert_eq!(credited - debited, net_of(&totals, id), "{id}");
        let listed = reply.body["partners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["partner_id"] == id.as_str())
            .unwrap()
            .clone();
        assert_eq!(listed["net"], net_of(&totals, id));
    }
    // Order ids are shown to the partner whose order it is, customers by opaque id only.
    for entry in entries {
        if entry["kind"] == "fee" {
            let mine = entry["debit_partner_id"] == ids[1].as_str();
            assert_eq!(entry["order_id"].is_string(), mine, "{entry}");
            assert!(entry["customer_id"].as_str().unwrap().starts_with("acu_"));
            for member in [&c1, &c2, &c3] {
                assert!(!entry.to_string().contains(member.as_str()));
            }
        }
    }
    let csv = bakery
        .get(
            &app,
            &format!("/v1/alliances/{alliance}/statements?month={month}&format=csv"),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.body.as_str().unwrap();
    assert!(text.starts_with("created_at,id,kind,"), "{text}");
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("bank 0001"));
    let bad = bakery
        .get(
            &app,
            &format!("/v1/alliances/{alliance}/statements?month=2026-13"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // An empty month has no entries and zero movement.
    let empty = bakery
        .get(
            &app,
            &format!("/v1/alliances/{alliance}/statements?month=2001-01"),
        )
        .await;
    assert_eq!(empty.body["entries"], json!([]));
    // A settlement larger than what is owed is refused; one between two others too.
    let too_much = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/settlements"),
            &json!({ "from": ids[0], "to": ids[2], "amount": 34, "reference": "x" }),
        )
        .await;
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_much.body["error"]["code"], "settlement_exceeds_balance");
    let not_mine = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/settlements"),
            &json!({ "from": ids[1], "to": ids[2], "amount": 1, "reference": "x" }),
        )
        .await;
    assert_eq!(not_mine.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn alliance_partner_leaving_keeps_what_is_owed_and_settles_it(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(800)).await;
    let customer = sent_customer(&app, &alliance, &cafe, &bakery, "c1").await;
    let bakery_offer = bakery.offer(&app, &alliance, 10).await;
    // A customer the bakery sent who has not paid yet when the bakery leaves.
    let pending = sent_customer(&app, &alliance, &cafe, &bakery, "c2").await;
    cafe.paid_order(&app, &customer, 1000).await;
    let left = bakery
        .post(&app, &format!("/v1/alliances/{alliance}/leave"), &json!({}))
        .await;
    assert_eq!(left.status, StatusCode::OK, "{}", left.body);
    assert_eq!(left.body["partners"][1]["status"], "left");
    let twice = bakery
        .post(&app, &format!("/v1/alliances/{alliance}/leave"), &json!({}))
        .await;
    assert_eq!(twice.body["error"]["code"], "partner_not_active");
    // What is owed stays owed; nothing new arises.
    cafe.paid_order(&app, &pending, 1000).await;
    let after = balances(&app, &bakery, &alliance).await;
    assert_eq!(net_of(&after, &ids[1]), 800);
    assert_eq!(net_of(&after, &ids[0]), -800);
    // The bakery's offer is closed, and the bakery can no longer invite, offer or claim.
    let member = gym.member(&app, "g", None).await;
    let closed = gym.claim(&app, &alliance, &bakery_offer, &member).await;
    assert_eq!(closed.status, StatusCode::CONFLICT);
    assert_eq!(closed.body["error"]["code"], "offer_closed");
    let invite = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/invitations"),
            &json!({}),
        )
        .await;
    assert_eq!(invite.body["error"]["code"], "partner_not_active");
    let template = bakery.template(&app, 10).await;
    let offer = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/offers"),
            &json!({ "coupon_template_id": template, "stock": 1 }),
        )
        .await;
    assert_eq!(offer.body["error"]["code"], "partner_not_active");
    // The cafe pays the bakery outside shequn; the bakery records it.
    let settled = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/settlements"),
            &json!({ "from": ids[0], "to": ids[1], "amount": 800, "reference": "wechat pay 42" }),
        )
        .await;
    assert_eq!(settled.status, StatusCode::CREATED, "{}", settled.body);
    let settled_balances = balances(&app, &gym, &alliance).await;
    assert!(
        settled_balances.iter().all(|p| p["net"] == 0),
        "{settled_balances:?}"
    );
    assert_eq!(
        cafe.events(&app, "alliance.settlement_recorded")
            .await
            .len(),
        1
    );
    assert_eq!(bakery.events(&app, "alliance.left").await.len(), 1);
}

async fn alliance_erasure_at_one_merchant_leaves_the_settlement_balanced(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(500)).await;
    let offer = cafe.offer(&app, &alliance, 10).await;
    let at_bakery = bakery.member(&app, "李雷", Some("+8613800000003")).await;
    let claimed = bakery.claim(&app, &alliance, &offer, &at_bakery).await;
    let customer = claimed.body["issuer_member_id"]
        .as_str()
        .unwrap()
        .to_owned();
    cafe.paid_order(&app, &customer, 2000).await;
    // A second sent customer who has not paid yet.
    let waiting = sent_customer(&app, &alliance, &cafe, &gym, "waiting").await;
    let before = balances(&app, &gym, &alliance).await;
    // The bakery erases its member, the cafe erases both of its alliance customers.
    let erased = bakery
        .call(
            &app,
            Method::DELETE,
            &format!("/v1/members/{at_bakery}"),
            None,
        )
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    for member in [&customer, &waiting] {
        let erased = cafe
            .call(&app, Method::DELETE, &format!("/v1/members/{member}"), None)
            .await;
        assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    }
    let after = balances(&app, &gym, &alliance).await;
    assert_eq!(before, after);
    assert_eq!(net_of(&after, &ids[1]), 500);
    // Nothing in the alliance tables links the erased members any more.
    let mut conn = app.state.db.read().acquire().await.unwrap();
    for member in [&at_bakery, &customer, &waiting] {
        let links: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM alliance_claim WHERE member_id = $1 \
             OR issuer_member_id = $1",
        )
        .bind(member.as_str())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(links, 0, "{member}");
        let customers: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM alliance_customer WHERE issuer_member_id = $1",
        )
        .bind(member.as_str())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(customers, 0, "{member}");
    }
    drop(conn);
    // The statement still lists the fee, by opaque customer id only; the balances settle.
    let settled = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/settlements"),
            &json!({ "from": ids[0], "to": ids[1], "amount": 500, "reference": "after erasure" }),
        )
        .await;
    assert_eq!(settled.status, StatusCode::CREATED, "{}", settled.body);
    let settled_balances = balances(&app, &cafe, &alliance).await;
    assert!(settled_balances.iter().all(|p| p["net"] == 0));
}

async fn alliance_isolation_matrix_non_partners_get_404_and_foreign_ids_are_refused(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(500)).await;
    let offer = cafe.offer(&app, &alliance, 10).await;
    let cafe_member = cafe.member(&app, "cafe's own", None).await;
    let bakery_member = bakery.member(&app, "bakery's own", None).await;
    let link = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/referral-links"),
            &json!({}),
        )
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.body);
    let link_id = link.body["id"].as_str().unwrap().to_owned();
    let outsider = Merchant::new(&app, "Outsider").await;
    let outsider_member = outsider.member(&app, "outsider's own", None).await;
    // Every alliance route, called by a tenant that is not a partner: 404, nothing written.
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/alliances/{alliance}"), None),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/invitations"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/leave"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/v1/alliances/{alliance}/offers"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/offers"),
            Some(
                json!({ "coupon_template_id": "cpt_00000000000000000000000000000000", "stock": 1 }),
            ),
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/offers/{offer}/claim"),
            Some(json!({ "member_id": outsider_member })),
        ),
        (
            Method::GET,
            format!("/v1/alliances/{alliance}/balances"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/alliances/{alliance}/statements?month=2026-01"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/settlements"),
            Some(json!({ "from": ids[0], "to": ids[1], "amount": 1, "reference": "x" })),
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/offers/{offer}/withdraw"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/referral-links"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/v1/alliances/{alliance}/referral-links"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/alliances/{alliance}/referral-links/{link_id}/revoke"),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/alliances/referrals".to_owned(),
            Some(json!({ "code": link.body["code"], "member_id": outsider_member })),
        ),
    ];
    for (method, path, body) in &routes {
        let reply = outsider
            .call(&app, method.clone(), path, body.as_ref())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "not_found");
    }
    let listed = outsider.get(&app, "/v1/alliances").await;
    assert_eq!(listed.body["data"], json!([]));
    // A malformed alliance id is 404 as well.
    let malformed = cafe.get(&app, "/v1/alliances/not-an-id/balances").await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    // A partner with another partner's ids: the cafe's member, the cafe's template.
    let foreign_member = bakery.claim(&app, &alliance, &offer, &cafe_member).await;
    assert_eq!(
        foreign_member.status,
        StatusCode::NOT_FOUND,
        "{}",
        foreign_member.body
    );
    let cafe_template = cafe.template(&app, 10).await;
    let foreign_template = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/offers"),
            &json!({ "coupon_template_id": cafe_template, "stock": 1 }),
        )
        .await;
    assert_eq!(foreign_template.status, StatusCode::NOT_FOUND);
    // Ids of another alliance: its offer and its partners are not in this one.
    let other = gym
        .post(
            &app,
            "/v1/alliances",
            &json!({ "name": "Gym club", "rules": fixed_fee(1) }),
        )
        .await;
    let other_id = other.body["id"].as_str().unwrap().to_owned();
    let other_partner = other.body["my_partner_id"].as_str().unwrap().to_owned();
    let other_offer = gym.offer(&app, &other_id, 5).await;
    let cross_offer = bakery
        .claim(&app, &alliance, &other_offer, &bakery_member)
        .await;
    assert_eq!(
        cross_offer.status,
        StatusCode::NOT_FOUND,
        "{}",
        cross_offer.body
    );
    let cross_partner = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/settlements"),
            &json!({ "from": other_partner, "to": ids[1], "amount": 1, "reference": "x" }),
        )
        .await;
    assert_eq!(
        cross_partner.status,
        StatusCode::NOT_FOUND,
        "{}",
        cross_partner.body
    );
    // The bakery is not a partner of the gym's other alliance.
    let not_partner = bakery
        .get(&app, &format!("/v1/alliances/{other_id}/balances"))
        .await;
    assert_eq!(not_partner.status, StatusCode::NOT_FOUND);
    // Referral links and offers: another partner's link or offer is 404 to revoke or
    // withdraw, a link cannot record another tenant's member, nor be aimed at a partner of
    // another alliance, and a code of an alliance the caller is not in is unknown to it.
    let revoke_theirs = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/referral-links/{link_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(
        revoke_theirs.status,
        StatusCode::NOT_FOUND,
        "{}",
        revoke_theirs.body
    );
    let withdraw_theirs = bakery
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/offers/{offer}/withdraw"),
            &json!({}),
        )
        .await;
    assert_eq!(
        withdraw_theirs.status,
        StatusCode::NOT_FOUND,
        "{}",
        withdraw_theirs.body
    );
    let withdraw_elsewhere = gym
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/offers/{other_offer}/withdraw"),
            &json!({}),
        )
        .await;
    assert_eq!(
        withdraw_elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        withdraw_elsewhere.body
    );
    let foreign_arrival = bakery
        .post(
            &app,
            "/v1/alliances/referrals",
            &json!({ "code": link.body["code"], "member_id": cafe_member }),
        )
        .await;
    assert_eq!(
        foreign_arrival.status,
        StatusCode::NOT_FOUND,
        "{}",
        foreign_arrival.body
    );
    let aimed_elsewhere = cafe
        .post(
            &app,
            &format!("/v1/alliances/{alliance}/referral-links"),
            &json!({ "to_partner_id": other_partner }),
        )
        .await;
    assert_eq!(
        aimed_elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        aimed_elsewhere.body
    );
    let other_link = gym
        .post(
            &app,
            &format!("/v1/alliances/{other_id}/referral-links"),
            &json!({}),
        )
        .await;
    assert_eq!(
        other_link.status,
        StatusCode::CREATED,
        "{}",
        other_link.body
    );
    let not_in_it = bakery
        .post(
            &app,
            "/v1/alliances/referrals",
            &json!({ "code": other_link.body["code"], "member_id": bakery_member }),
        )
        .await;
    assert_eq!(
        not_in_it.status,
        StatusCode::NOT_FOUND,
        "{}",
        not_in_it.body
    );
    // Nothing was written by any of it: the link brought no one, the offer is open.
    let links = cafe
        .get(&app, &format!("/v1/alliances/{alliance}/referral-links"))
        .await;
    assert_eq!(links.body["data"][0]["status"], "active");
    assert_eq!(links.body["data"][0]["customers_referred"], 0);
    let offers = cafe
        .get(&app, &format!("/v1/alliances/{alliance}/offers"))
        .await;
    assert!(offers.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "open"));
    // The claims made nothing at the outsider, and the bakery's members stay its own.
    assert!(outsider
        .events(&app, "alliance.offer_claimed")
        .await
        .is_empty());
    let gyms_view = gym.get(&app, &format!("/v1/members/{bakery_member}")).await;
    assert_eq!(gyms_view.status, StatusCode::NOT_FOUND);
}

async fn alliance_console_page_shows_partners_offers_and_balances(app: TestApp) {
    use shequn::console::operators::Role;
    operator(&app, &app.tenant_id, "alone@shop.example", Role::Viewer).await;
    let mut alone = Browser::signed_in(&app, "alone@shop.example").await;
    let empty = html(&alone.get("/console/alliance").await);
    assert!(empty.contains("尚未加入联盟"), "{empty}");
    let (alliance, [cafe, bakery, _gym], _) = three_partners(&app, fixed_fee(500)).await;
    let customer = sent_customer(&app, &alliance, &cafe, &bakery, "c1").await;
    cafe.paid_order(&app, &customer, 3000).await;
    operator(&app, &cafe.tenant_id, "ops@cafe.example", Role::Viewer).await;
    let mut browser = Browser::signed_in(&app, "ops@cafe.example").await;
    let page = browser.get("/console/alliance").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = html(&page);
    for expected in [
        "商家联盟",
        "Old Town",
        "Cafe",
        "Bakery",
        "Gym",
        "-500",
        "共享优惠券",
        "/console/alliance",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(!text.contains(&bakery.tenant_id));
    let other = html(
        &browser
            .get(&format!("/console/alliance?id={alliance}"))
            .await,
    );
    assert!(other.contains("Old Town"));
}
