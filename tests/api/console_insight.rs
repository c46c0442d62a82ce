//! The console's referral and analytics pages without a browser: campaigns, a campaign's
//! funnel, leaderboard and review queue (approved and rejected through the API), the
//! analytics page before and after a fit, roles and tenant isolation.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use shequn::common::ids::TenantId;
use shequn::console::operators::Role;

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser, OtherTenant};
use crate::support::TestApp;

backend_tests!(
    referral_pages_show_the_funnel_and_leaderboard_and_decide_reviews,
    referral_pages_keep_other_tenants_campaigns_and_reviews_out,
    analytics_page_says_how_to_fit_then_shows_segments_clv_cohorts_and_quality,
);

/// A signup campaign with an inviter `i` and three invitees: `j1` accepted, `j2` queued for a
/// shared device, `j3` for a shared IP. Returns (campaign, inviter, review of j2, review of j3).
async fn campaign_with_reviews(app: &TestApp) -> (String, String, String, String) {
    let reply = app
        .post(
            "/v1/referral-campaigns",
            &json!({
                "name": "老带新春季",
                "qualify_on": "signup",
                "inviter_reward": {"points": 100},
                "invitee_reward": {"points": 50},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let campaign = reply.body["id"].as_str().unwrap().to_owned();
    let inviter = app.member("i").await;
    let code = app
        .get(&format!(
            "/v1/members/{inviter}/invite-code?campaign_id={campaign}"
        ))
        .await;
    let code = code.body["code"].as_str().unwrap().to_owned();
    let mut invitees = Vec::new();
    for (external_id, device, ip) in [
        ("j1", "farm-1", "10.1.0.1"),
        ("j2", "farm-1", "10.1.0.2"),
        ("j3", "phone-3", "10.1.0.1"),
    ] {
        let reply = app
            .post(
                "/v1/members",
                &json!({"external_id": external_id, "invite_code": code, "device_id": device, "ip": ip}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        invitees.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let queue = app.get("/v1/referral-reviews?status=pending").await;
    let queue = queue.body["data"].as_array().unwrap().clone();
    assert_eq!(queue.len(), 2);
    let review_of = |member: &str| {
        queue.iter().find(|r| r["invitee_id"] == member).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (j2, j3) = (review_of(&invitees[1]), review_of(&invitees[2]));
    (campaign, inviter, j2, j3)
}

async fn review_status(app: &TestApp, review: &str) -> String {
    let reply = app.get("/v1/referral-reviews?limit=200").await;
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == review)
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn referral_pages_show_the_funnel_and_leaderboard_and_decide_reviews(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let (campaign, inviter, approve, reject) = campaign_with_reviews(&app).await;
    let page_path = format!("/console/referrals/{campaign}");

    // A viewer sees the campaigns, the funnel and the queue, and cannot decide.
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let list = viewer.get("/console/referrals").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(html(&list).contains("老带新春季"));
    assert!(html(&list).contains(&page_path));
    let page = viewer.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    let text = html(&page);
    assert!(
        text.contains("&quot;type&quot;:&quot;funnel&quot;"),
        "{text}"
    );
    assert!(text.contains("与他人共用设备") && text.contains("与他人共用 IP"));
    assert!(
        !text.contains("/approve"),
        "a viewer is offered no decision"
    );
    let token = viewer.csrf().await;
    let refused = viewer
        .post(
            &format!("{page_path}/reviews/{approve}/approve"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(review_status(&app, &approve).await, "pending");

    // An operator approves one and rejects the other through the API.
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get(&page_path).await);
    assert!(page.contains(&format!("{page_path}/reviews/{approve}/approve")));
    let token = ops.csrf().await;
    let missing_token = ops
        .post(&format!("{page_path}/reviews/{approve}/approve"), &[])
        .await;
    assert_eq!(missing_token.status, StatusCode::FORBIDDEN);
    let approved = ops
        .post(
            &format!("{page_path}/reviews/{approve}/approve"),
            &[("note", "family"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&approved), format!("{page_path}?done=approved"));
    assert_eq!(review_status(&app, &approve).await, "approved");
    let rejected = ops
        .post(
            &format!("{page_path}/reviews/{reject}/reject"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(location(&rejected), format!("{page_path}?done=rejected"));
    assert_eq!(review_status(&app, &reject).await, "rejected");
    let again = ops
        .post(
            &format!("{page_path}/reviews/{reject}/approve"),
            &[("csrf_token", &token)],
        )
        .await;
    assert!(location(&again).contains("error="), "{}", location(&again));
    let unknown = ops
        .post(
            &format!("{page_path}/reviews/{reject}/forget"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // The page now shows the inviter on top with two qualified invites, and an empty queue.
    let funnel = app
        .get(&format!("/v1/referral-campaigns/{campaign}/funnel"))
        .await;
    assert_eq!(funnel.body["qualified"], 2);
    let page = html(&ops.get(&format!("{page_path}?done=approved")).await);
    assert!(page.contains("已通过"));
    assert!(page.contains(&format!("/console/members/{inviter}")));
    assert!(!page.contains("/approve"));
}

async fn referral_pages_keep_other_tenants_campaigns_and_reviews_out(app: TestApp) {
    let (campaign, _, review, _) = campaign_with_reviews(&app).await;
    let mut other = OtherTenant::new(&app).await.owner().await;
    let list = html(&other.get("/console/referrals").await);
    assert!(!list.contains(&campaign) && !list.contains("老带新春季"));
    let page = other.get(&format!("/console/referrals/{campaign}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!html(&page).contains("老带新春季"));
    let malformed = other.get("/console/referrals/not-an-id").await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    let token = other.csrf().await;
    let decided = other
        .post(
            &format!("/console/referrals/{campaign}/reviews/{review}/approve"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER);
    assert!(
        location(&decided).contains("error="),
        "{}",
        location(&decided)
    );
    assert_eq!(review_status(&app, &review).await, "pending");
}

async fn import(app: &TestApp, csv: &str) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/orders/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(Body::from(csv.to_owned()))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn analytics_page_says_how_to_fit_then_shows_segments_clv_cohorts_and_quality(app: TestApp) {
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let before = viewer.get("/console/analytics").await;
    assert_eq!(before.status, StatusCode::OK);
    let text = html(&before);
    assert!(text.contains("还没有拟合结果") && text.contains("shequn analytics fit"));
    assert!(!text.contains("heatmap"));

    // A small shop: a few repeat buyers over half a year, some who bought once.
    let mut csv = String::from("external_member_id,ordered_at,amount,currency,items\n");
    for (member, months) in [
        ("a", &[1, 2, 3, 4, 5][..]),
        ("b", &[1, 3, 5][..]),
        ("c", &[2, 4][..]),
        ("d", &[2, 3, 6][..]),
        ("e", &[1][..]),
        ("f", &[4][..]),
    ] {
        for month in months {
            csv.push_str(&format!(
                "{member},2026-0{month}-10,{}8,CNY,tea:1\n",
                month * 3
            ));
        }
    }
    import(&app, &csv).await;
    let tenant = TenantId::parse(&app.tenant_id).unwrap();
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    shequn::analytics::scoring::fit_and_score(
        &app.state.db,
        &tenant,
        &zone,
        "2026-06-30".parse().unwrap(),
        shequn::analytics::model::summary::TimeUnit::Week,
        app.clock_now(),
    )
    .await
    .unwrap();

    let after = viewer.get("/console/analytics").await;
    assert_eq!(after.status, StatusCode::OK);
    let text = html(&after);
    let rfm = app.get("/v1/analytics/rfm").await;
    let status = rfm.body["model_quality"]["status"].as_str().unwrap();
    assert!(
        text.contains(&format!("<code>{status}</code>")),
        "the page says the fit's status: {text}"
    );
    assert!(!text.contains("还没有拟合结果"));
    assert!(text.contains("shequn analytics validate"));
    for segment in rfm.body["data"].as_array().unwrap() {
        let name = segment["segment"].as_str().unwrap();
        assert!(text.contains(&format!("/console/members?rfm_segment={name}")));
    }
    assert!(text.contains("&quot;type&quot;:&quot;heatmap&quot;"));
    assert!(text.contains("visualMap"));
    assert!(text.contains("2026-01"), "the January cohort");
    let members = viewer.get("/console/members?rfm_segment=champions").await;
    assert_eq!(members.status, StatusCode::OK);
}
