//! Merchant alliance, continued: referral links (a customer sent by a code earns the sender the
//! fee on its first paid order at the partner it arrived at, voided by a full refund; the first
//! attribution wins, whether a link's or a claim's; every refusal has its code and writes
//! nothing), offer withdrawal, and statements paged as JSON and streamed whole as CSV.

use axum::http::StatusCode;
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::alliance::{balances, fixed_fee, net_of, three_partners, Merchant};
use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser};
use crate::support::{Reply, TestApp};

backend_tests!(
    alliance_referral_link_fee_on_first_paid_order_voided_by_a_full_refund,
    alliance_referral_link_refusals_have_codes_and_the_first_attribution_wins,
    alliance_referral_arrivals_at_once_record_one,
    alliance_offer_withdrawn_takes_no_claims_and_keeps_claimed_coupons,
    alliance_statement_pages_and_csv_cover_every_entry_of_the_month,
    alliance_console_creates_invites_joins_offers_withdraws_links_settles_and_downloads,
);

impl Merchant {
    async fn link(&self, app: &TestApp, alliance: &str, body: &Value) -> Value {
        let reply = self
            .post(
                app,
                &format!("/v1/alliances/{alliance}/referral-links"),
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    async fn arrive(&self, app: &TestApp, code: &Value, member: &str) -> Reply {
        self.post(
            app,
            "/v1/alliances/referrals",
            &json!({ "code": code, "member_id": member }),
        )
        .await
    }

    async fn links(&self, app: &TestApp, alliance: &str) -> Vec<Value> {
        let reply = self
            .get(app, &format!("/v1/alliances/{alliance}/referral-links"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["data"].as_array().unwrap().clone()
    }
}

fn refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{code}: {}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
}

async fn alliance_referral_link_fee_on_first_paid_order_voided_by_a_full_refund(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(500)).await;
    let link = cafe
        .link(&app, &alliance, &json!({ "label": "收银台二维码" }))
        .await;
    let code = link["code"].as_str().unwrap();
    assert_eq!(code.len(), 20);
    assert_eq!(link["status"], "active");
    assert_eq!(link["partner_id"], ids[0].as_str());
    // The customer turns up at the bakery, which records the arrival with its own key (the
    // code as typed at the counter, in lower case).
    let member = bakery.member(&app, "李四", None).await;
    let arrived = bakery
        .arrive(&app, &json!(code.to_lowercase()), &member)
        .await;
    assert_eq!(arrived.status, StatusCode::CREATED, "{}", arrived.body);
    assert_eq!(arrived.body["referred_by"], "Cafe");
    assert_eq!(arrived.body["referred_by_partner_id"], ids[0].as_str());
    assert_eq!(arrived.body["referral_link_id"], link["id"]);
    assert!(arrived.body["consented_at"].is_string());
    let customer_id = arrived.body["customer_id"].as_str().unwrap().to_owned();
    assert!(customer_id.starts_with("acu_"));
    // The bakery's event names its member; the cafe's names only the opaque customer.
    let at_bakery = bakery.events(&app, "alliance.referral_recorded").await;
    assert_eq!(at_bakery.len(), 1);
    assert_eq!(at_bakery[0]["data"]["member_id"], member.as_str());
    let at_cafe = cafe.events(&app, "alliance.referral_recorded").await;
    assert_eq!(at_cafe.len(), 1);
    assert!(!at_cafe[0].to_string().contains(&member), "{}", at_cafe[0]);
    assert_eq!(at_cafe[0]["data"]["customer_id"], customer_id.as_str());
    // The first paid order at the bakery owes the cafe the fee; a second owes nothing.
    let first = bakery.paid_order(&app, &member, 3000).await;
    bakery.paid_order(&app, &member, 3000).await;
    let after = balances(&app, &gym, &alliance).await;
    assert_eq!(net_of(&after, &ids[0]), 500);
    assert_eq!(net_of(&after, &ids[1]), -500);
    let listed = cafe.links(&app, &alliance).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            &listed[0]["customers_referred"],
            &listed[0]["first_paid_orders"],
            &listed[0]["fees_earned"]
        ),
        (&json!(1), &json!(1), &json!(500))
    );
    assert_eq!(listed[0]["label"], "收银台二维码");
    // Links are the sender's own: the bakery lists none.
    assert!(bakery.links(&app, &alliance).await.is_empty());
    // A full refund within the return window voids the fee; the link keeps its first order.
    bakery.refund_in_full(&app, &first).await;
    let refunded = balances(&app, &cafe, &alliance).await;
    assert!(refunded.iter().all(|p| p["net"] == 0), "{refunded:?}");
    let listed = cafe.links(&app, &alliance).await;
    assert_eq!(
        (&listed[0]["first_paid_orders"], &listed[0]["fees_earned"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(cafe.events(&app, "alliance.fee_voided").await.len(), 1);
    // A link for the gym only works at the gym.
    let for_gym = cafe
        .link(&app, &alliance, &json!({ "to_partner_id": ids[2] }))
        .await;
    assert_eq!(for_gym["to_partner_id"], ids[2].as_str());
    let elsewhere = bakery.member(&app, "王五", None).await;
    refused(
        &bakery.arrive(&app, &for_gym["code"], &elsewhere).await,
        StatusCode::CONFLICT,
        "referral_link_for_another_partner",
    );
    let at_gym = gym.member(&app, "王五", None).await;
    let arrived = gym.arrive(&app, &for_gym["code"], &at_gym).await;
    assert_eq!(arrived.status, StatusCode::CREATED, "{}", arrived.body);
    gym.paid_order(&app, &at_gym, 1000).await;
    assert_eq!(
        net_of(&balances(&app, &gym, &alliance).await, &ids[2]),
        -500
    );
}

async fn alliance_referral_link_refusals_have_codes_and_the_first_attribution_wins(app: TestApp) {
    let (alliance, [cafe, bakery, gym], ids) = three_partners(&app, fixed_fee(500)).await;
    let link = cafe.link(&app, &alliance, &json!({})).await;
    let code = &link["code"];
    // Unknown and malformed codes are 404; a member of another tenant is 404.
    let member = bakery.member(&app, "m", None).await;
    for unknown in [json!("23456789ABCDEFGHJKLM"), json!("nope"), json!("")] {
        refused(
            &bakery.arrive(&app, &unknown, &member).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    let cafe_member = cafe.member(&app, "cafe's", None).await;
    refused(
        &bakery.arrive(&app, code, &cafe_member).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A link used at its own partner.
    refused(
        &cafe.arrive(&app, code, &cafe_member).await,
        StatusCode::CONFLICT,
        "own_referral_link",
    );
    // A member who has paid the bakery before is not a new customer: nothing is recorded.
    let regular = bakery.member(&app, "regular", None).await;
    bakery.paid_order(&app, &regular, 1000).await;
    refused(
        &bakery.arrive(&app, code, &regular).await,
        StatusCode::CONFLICT,
        "not_a_new_customer",
    );
    assert_eq!(
        cafe.links(&app, &alliance).await[0]["customers_referred"],
        0
    );
    // The first attribution wins: a second arrival, by the same link or another partner's.
    let first = bakery.arrive(&app, code, &member).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    refused(
        &bakery.arrive(&app, code, &member).await,
        StatusCode::CONFLICT,
        "already_referred",
    );
    let gyms = gym.link(&app, &alliance, &json!({})).await;
    refused(
        &bakery.arrive(&app, &gyms["code"], &member).await,
        StatusCode::CONFLICT,
        "already_referred",
    );
    // A customer an offer claim sent first keeps its sender…
    let offer = bakery.offer(&app, &alliance, 10).await;
    let at_gym = gym.member(&app, "赵六", Some("+8613800000061")).await;
    let claimed = gym.claim(&app, &alliance, &offer, &at_gym).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.body);
    let claimed_member = claimed.body["issuer_member_id"].as_str().unwrap();
    refused(
        &bakery.arrive(&app, code, claimed_member).await,
        StatusCode::CONFLICT,
        "already_referred",
    );
    // … and a link's customer keeps its sender when a claim finds it later (by phone).
    let by_link = bakery.member(&app, "钱七", Some("+8613800000071")).await;
    let arrived = bakery.arrive(&app, code, &by_link).await;
    assert_eq!(arrived.status, StatusCode::CREATED, "{}", arrived.body);
    let same_phone = gym.member(&app, "钱七", Some("+8613800000071")).await;
    let found = gym.claim(&app, &alliance, &offer, &same_phone).await;
    assert_eq!(found.body["issuer_member_id"], by_link.as_str());
    bakery.paid_order(&app, &by_link, 1000).await;
    let after = balances(&app, &bakery, &alliance).await;
    assert_eq!(net_of(&after, &ids[0]), 500, "the link's sender earns");
    assert_eq!(net_of(&after, &ids[2]), 0, "the later claim does not");
    // Expired and revoked links.
    let tomorrow = (app.clock_now() + SignedDuration::from_hours(24)).to_string();
    let short = cafe
        .link(&app, &alliance, &json!({ "expires_at": tomorrow }))
        .await;
    let revoked = cafe.link(&app, &alliance, &json!({})).await;
    let path = format!(
        "/v1/alliances/{alliance}/referral-links/{}/revoke",
        revoked["id"].as_str().unwrap()
    );
    let once = cafe.post(&app, &path, &json!({})).await;
    assert_eq!(once.status, StatusCode::OK, "{}", once.body);
    assert_eq!(once.body["status"], "revoked");
    let twice = cafe.post(&app, &path, &json!({})).await;
    assert_eq!(twice.status, StatusCode::OK, "{}", twice.body);
    assert_eq!(twice.body["revoked_at"], once.body["revoked_at"]);
    assert_eq!(
        cafe.events(&app, "alliance.referral_link_revoked")
            .await
            .len(),
        1
    );
    // Another partner cannot revoke the cafe's link.
    refused(
        &bakery.post(&app, &path, &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let newcomer = bakery.member(&app, "newcomer", None).await;
    refused(
        &bakery.arrive(&app, &revoked["code"], &newcomer).await,
        StatusCode::CONFLICT,
        "referral_link_revoked",
    );
    app.clock.advance(SignedDuration::from_hours(48));
    refused(
        &bakery.arrive(&app, &short["code"], &newcomer).await,
        StatusCode::CONFLICT,
        "referral_link_expired",
    );
    let statuses: Vec<Value> = cafe
        .links(&app, &alliance)
        .await
        .iter()
        .map(|l| l["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!("revoked"), json!("expired"), json!("active")]
    );
    // Bad requests are 422 or 404 and make no link.
    for (body, status) in [
        (
            json!({ "to_partner_id": ids[0] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "expires_at": "2001-01-01" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "expires_at": "soon" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "label": "x".repeat(81) }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "to_partner_id": "apt_00000000000000000000000000000000" }),
            StatusCode::NOT_FOUND,
        ),
        (json!({ "unknown": 1 }), StatusCode::BAD_REQUEST),
    ] {
        let reply = cafe
            .post(
                &app,
                &format!("/v1/alliances/{alliance}/referral-links"),
                &body,
            )
            .await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
    }
    assert_eq!(cafe.links(&app, &alliance).await.len(), 3);
    // A partner that leaves has its links closed.
    let left = gym
        .post(&app, &format!("/v1/alliances/{alliance}/leave"), &json!({}))
        .await;
    assert_eq!(left.status, StatusCode::OK, "{}", left.body);
    assert_eq!(gym.links(&app, &alliance).await[0]["status"], "revoked");
    refused(
        &bakery.arrive(&app, &gyms["code"], &newcomer).await,
        StatusCode::CONFLICT,
        "referral_link_revoked",
    );
    // And a partner that left cannot record arrivals.
    let at_gym = gym.member(&app, "late", None).await;
    refused(
        &gym.arrive(&app, code, &at_gym).await,
        StatusCode::CONFLICT,
        "partner_not_active",
    );
}

async fn alliance_referral_arrivals_at_once_record_one(app: TestApp) {
    let (alliance, [cafe, bakery, gym], _) = three_partners(&app, fixed_fee(500)).await;
    let from_cafe = cafe.link(&app, &alliance, &json!({})).await;
    let from_gym = gym.link(&app, &alliance, &json!({})).await;
    let member = bakery.member(&app, "twice", None).await;
    let replies = futures::future::join_all((0..8).map(|i| {
        let code = if i % 2 == 0 {
            &from_cafe["code"]
        } else {
            &from_gym["code"]
        };
        bakery.arrive(&app, code, &member)
    }))
    .await;
    let won = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(won, 1, "{replies:?}");
    for reply in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        refused(reply, StatusCode::CONFLICT, "already_referred");
    }
    let referred: i64 = [
        cafe.links(&app, &alliance).await,
        gym.links(&app, &alliance).await,
    ]
    .iter()
    .map(|links| links[0]["customers_referred"].as_i64().unwrap())
    .sum();
    assert_eq!(referred, 1);
}

async fn alliance_offer_withdrawn_takes_no_claims_and_keeps_claimed_coupons(app: TestApp) {
    let (alliance, [cafe, bakery, gym], _) = three_partners(&app, fixed_fee(500)).await;
    let offer = cafe.offer(&app, &alliance, 10).await;
    let member = bakery.member(&app, "early", None).await;
    let claimed = bakery.claim(&app, &alliance, &offer, &member).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.body);
    let path = format!("/v1/alliances/{alliance}/offers/{offer}/withdraw");
    // Only the issuer withdraws: another partner's offer is 404 to it.
    refused(
        &bakery.post(&app, &path, &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let withdrawn = cafe.post(&app, &path, &json!({})).await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{}", withdrawn.body);
    assert_eq!(withdrawn.body["status"], "withdrawn");
    assert_eq!(withdrawn.body["remaining"], 9);
    let again = cafe.post(&app, &path, &json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["status"], "withdrawn");
    assert_eq!(cafe.events(&app, "alliance.offer_withdrawn").await.len(), 1);
    // No new claims; the listing shows the status.
    let late = gym.member(&app, "late", None).await;
    refused(
        &gym.claim(&app, &alliance, &offer, &late).await,
        StatusCode::CONFLICT,
        "offer_withdrawn",
    );
    let listed = gym
        .get(&app, &format!("/v1/alliances/{alliance}/offers"))
        .await;
    assert_eq!(listed.body["data"][0]["status"], "withdrawn");
    assert_eq!(listed.body["data"][0]["remaining"], 9);
    // The coupon claimed before stays valid at the cafe.
    let coupon = cafe
        .get(
            &app,
            &format!(
                "/v1/coupons/{}",
                claimed.body["coupon_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(coupon.status, StatusCode::OK, "{}", coupon.body);
    assert_eq!(coupon.body["status"], "active", "{}", coupon.body);
    // A malformed offer id is 404 too.
    refused(
        &cafe
            .post(
                &app,
                &format!("/v1/alliances/{alliance}/offers/nope/withdraw"),
                &json!({}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Entries written straight into the alliance ledger (settlement-shaped, alternating between
/// the first two partners), `count` of them, one microsecond apart from `start`.
async fn many_entries(app: &TestApp, alliance: &str, ids: &[String; 3], start: i64, count: i64) {
    let mut tx = app.state.db.begin(app.clock_now()).await.unwrap();
    for i in 0..count {
        let (debit, credit) = if i % 3 == 0 {
            (&ids[1], &ids[0])
        } else {
            (&ids[0], &ids[1])
        };
        sqlx::query(
            "INSERT INTO alliance_entry (alliance_id, id, kind, debit_partner_id, \
             credit_partner_id, amount, reference, created_at) \
             VALUES ($1, $2, 'settlement', $3, $4, $5, $6, $7)",
        )
        .bind(alliance)
        .bind(format!("aen_{:032x}", i + 1))
        .bind(debit.as_str())
        .bind(credit.as_str())
        .bind(1 + i % 7)
        .bind(format!("bulk {i}"))
        // Entries share a time in pairs, so the cursor must order by id too.
        .bind(start + i / 2)
        .execute(tx.conn())
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn alliance_statement_pages_and_csv_cover_every_entry_of_the_month(app: TestApp) {
    let (alliance, [cafe, bakery, _gym], ids) = three_partners(&app, fixed_fee(500)).await;
    let now = app
        .clock_now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let base = format!("/v1/alliances/{alliance}/statements?month={month}");
    let empty = cafe.get(&app, &base).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(empty.body["entries"], json!([]));
    assert!(empty.body["next_cursor"].is_null());
    let from: jiff::Timestamp = empty.body["from"].as_str().unwrap().parse().unwrap();
    // More entries than one CSV step (1,000) and than one JSON page of 1,000.
    const COUNT: i64 = 2_345;
    many_entries(&app, &alliance, &ids, from.as_microsecond() + 1, COUNT).await;
    let first = bakery.get(&app, &base).await;
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 1_000);
    assert!(first.body["next_cursor"].is_string());
    // Page through with limit 700: every entry once, in order, summing to the month's totals.
    let mut seen = Vec::new();
    let mut sums = std::collections::HashMap::<String, i64>::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let partners = loop {
        let mut path = format!("{base}&limit=700");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = bakery.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        for entry in page.body["entries"].as_array().unwrap() {
            let amount = entry["amount"].as_i64().unwrap();
            *sums
                .entry(entry["credit_partner_id"].as_str().unwrap().to_owned())
                .or_default() += amount;
            *sums
                .entry(entry["debit_partner_id"].as_str().unwrap().to_owned())
                .or_default() -= amount;
            seen.push(entry["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break page.body["partners"].as_array().unwrap().clone(),
        }
    };
    assert_eq!(pages, 4);
    assert_eq!(seen.len() as i64, COUNT);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "an entry on two pages");
    for id in &ids {
        assert_eq!(
            sums.get(id.as_str()).copied().unwrap_or(0),
            net_of(&partners, id),
            "{id}"
        );
    }
    // The whole ledger is this month: the month's movement is the balances.
    let totals = balances(&app, &cafe, &alliance).await;
    for id in &ids {
        assert_eq!(net_of(&partners, id), net_of(&totals, id));
    }
    // The CSV streams every entry, past the old cap and across its read steps.
    let csv = bakery.get(&app, &format!("{base}&format=csv")).await;
    assert_eq!(csv.status, StatusCode::OK);
    let text = csv.body.as_str().unwrap();
    assert!(text.starts_with("created_at,id,kind,"), "{}", &text[..80]);
    assert_eq!(text.lines().count() as i64, COUNT + 1);
    let csv_net: i64 = text
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let amount: i64 = fields[7].parse().unwrap();
            if fields[5] == ids[0] {
                amount
            } else {
                -amount
            }
        })
        .sum();
    assert_eq!(csv_net, net_of(&partners, &ids[0]));
    // Limits and cursors are checked.
    for bad in [
        "&limit=0",
        "&limit=10001",
        "&cursor=nope",
        "&cursor=12.aen_x",
    ] {
        let reply = bakery.get(&app, &format!("{base}{bad}")).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

/// The text of the element with `id` on a page.
fn element_text(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {page}"))
        + marker.len();
    page[at..].split('<').next().unwrap().trim().to_owned()
}

/// Post a console form with the session's CSRF token.
async fn submit(browser: &mut Browser<'_>, path: &str, fields: &[(&str, &str)]) -> Reply {
    let token = browser.csrf().await;
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(fields);
    browser.post(path, &all).await
}

async fn alliance_console_creates_invites_joins_offers_withdraws_links_settles_and_downloads(
    app: TestApp,
) {
    use shequn::console::operators::Role;
    let cafe = Merchant::new(&app, "Cafe").await;
    let bakery = Merchant::new(&app, "Bakery").await;
    operator(&app, &cafe.tenant_id, "ops@cafe.example", Role::Operator).await;
    operator(
        &app,
        &bakery.tenant_id,
        "ops@bakery.example",
        Role::Operator,
    )
    .await;
    operator(
        &app,
        &bakery.tenant_id,
        "viewer@bakery.example",
        Role::Viewer,
    )
    .await;
    let mut at_cafe = Browser::signed_in(&app, "ops@cafe.example").await;
    let mut at_bakery = Browser::signed_in(&app, "ops@bakery.example").await;
    // The cafe creates an alliance from the page.
    let created = submit(
        &mut at_cafe,
        "/console/alliance",
        &[
            ("name", "老街联盟"),
            ("fee_kind", "fixed"),
            ("fee_value", "500"),
            ("display_name", ""),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let back = location(&created).to_owned();
    assert!(back.contains("done=created"), "{back}");
    let listed = cafe.get(&app, "/v1/alliances").await;
    let alliance = listed.body["data"][0]["id"].as_str().unwrap().to_owned();
    let cafe_partner = listed.body["data"][0]["my_partner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(back.contains(&alliance), "{back}");
    let page = html(&at_cafe.get(&back).await);
    assert!(
        page.contains("联盟已创建") && page.contains("老街联盟"),
        "{page}"
    );
    // An invitation code, shown once on the page that answers the form; the bakery joins.
    let invited = submit(
        &mut at_cafe,
        &format!("/console/alliance/{alliance}/invitations"),
        &[],
    )
    .await;
    assert_eq!(invited.status, StatusCode::OK, "{}", html(&invited));
    let code = element_text(&html(&invited), "invitation-code");
    assert_eq!(code.len(), 24, "{code}");
    let joined = submit(&mut at_bakery, "/console/alliance/join", &[("code", &code)]).await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", html(&joined));
    assert!(location(&joined).contains("done=joined"));
    let page = html(&at_bakery.get(location(&joined)).await);
    assert!(
        page.contains("已加入联盟") && page.contains("Cafe"),
        "{page}"
    );
    let bakery_partner = bakery
        .get(&app, &format!("/v1/alliances/{alliance}"))
        .await
        .body["my_partner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A viewer cannot change anything.
    let mut viewer = Browser::signed_in(&app, "viewer@bakery.example").await;
    let refused = submit(&mut viewer, "/console/alliance/join", &[("code", &code)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // The cafe offers a template, sees the API's complaint for a bad stock, then withdraws.
    let template = cafe.template(&app, 100).await;
    let offers_path = format!("/console/alliance/{alliance}/offers");
    let bad = submit(
        &mut at_cafe,
        &offers_path,
        &[("coupon_template_id", &template), ("stock", "0")],
    )
    .await;
    assert!(location(&bad).contains("error="), "{}", location(&bad));
    let page = html(&at_cafe.get(location(&bad)).await);
    assert!(page.contains("notice error"), "{page}");
    let offered = submit(
        &mut at_cafe,
        &offers_path,
        &[("coupon_template_id", &template), ("stock", "5")],
    )
    .await;
    assert!(
        location(&offered).contains("done=offered"),
        "{}",
        location(&offered)
    );
    let offer = cafe
        .get(&app, &format!("/v1/alliances/{alliance}/offers"))
        .await
        .body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = html(&at_cafe.get(location(&offered)).await);
    assert!(
        page.contains(&format!("{offers_path}/{offer}/withdraw")),
        "{page}"
    );
    let withdrawn = submit(
        &mut at_cafe,
        &format!("{offers_path}/{offer}/withdraw"),
        &[],
    )
    .await;
    assert!(
        location(&withdrawn).contains("done=withdrawn"),
        "{}",
        location(&withdrawn)
    );
    let page = html(
        &at_bakery
            .get(&format!("/console/alliance?id={alliance}"))
            .await,
    );
    assert!(page.contains("withdrawn"), "{page}");
    // The cafe makes a referral link and sees its code; a customer follows it to the bakery.
    let linked = submit(
        &mut at_cafe,
        &format!("/console/alliance/{alliance}/referral-links"),
        &[
            ("to_partner_id", ""),
            ("label", "门口海报"),
            ("expires_at", ""),
        ],
    )
    .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", html(&linked));
    let link_code = element_text(&html(&linked), "link-code");
    assert_eq!(link_code.len(), 20, "{link_code}");
    let member = bakery.member(&app, "顾客", None).await;
    let arrived = bakery.arrive(&app, &json!(link_code), &member).await;
    assert_eq!(arrived.status, StatusCode::CREATED, "{}", arrived.body);
    bakery.paid_order(&app, &member, 3000).await;
    let page = html(
        &at_cafe
            .get(&format!("/console/alliance?id={alliance}"))
            .await,
    );
    assert!(
        page.contains("门口海报") && page.contains(&link_code),
        "{page}"
    );
    // The bakery records paying 200 of the 500 it owes; both pages show what is left.
    let settled = submit(
        &mut at_bakery,
        &format!("/console/alliance/{alliance}/settlements"),
        &[
            ("from", &bakery_partner),
            ("to", &cafe_partner),
            ("amount", "200"),
            ("reference", "微信转账 42"),
        ],
    )
    .await;
    assert!(
        location(&settled).contains("done=settled"),
        "{}",
        location(&settled)
    );
    let after = balances(&app, &cafe, &alliance).await;
    assert_eq!(net_of(&after, &cafe_partner), 300);
    let page = html(
        &at_cafe
            .get(&format!("/console/alliance?id={alliance}"))
            .await,
    );
    assert!(page.contains("-300"), "{page}");
    // The month's statement as CSV, through the console.
    let now = app
        .clock_now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let csv = at_cafe
        .get(&format!(
            "/console/alliance/{alliance}/statement.csv?month={month}"
        ))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let text = html(&csv);
    assert!(text.starts_with("created_at,id,kind,"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("微信转账 42"));
    let bad_month = at_cafe
        .get(&format!(
            "/console/alliance/{alliance}/statement.csv?month=13"
        ))
        .await;
    assert_eq!(bad_month.status, StatusCode::UNPROCESSABLE_ENTITY);
}
