//! The console's community pages without a browser: groups, join links and the check-in rule
//! (changed through its form), lotteries created, drawn and proved through the console, the
//! proof file checked by the same verifier as `shequn lottery verify`, roles and tenant
//! isolation.

use axum::http::StatusCode;
use serde_json::{json, Value};
use shequn::community::lottery::draw;
use shequn::console::operators::Role;

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser, OtherTenant};
use crate::support::TestApp;

backend_tests!(
    community_page_shows_groups_links_and_rule_and_saves_the_rule,
    lottery_is_created_drawn_and_proved_through_the_console,
    community_pages_keep_other_tenants_out_and_viewers_from_changing,
);

/// Groups `宝妈群` (capacity 2, full: its owner and a member brought by `friend`) and `读书会`
/// (room for 9 more), and a join link `门店活码` over both. Returns (full group, group with
/// room, link code, friend, the member friend brought).
async fn groups_and_link(app: &TestApp) -> (String, String, String, String, String) {
    let owner = app.member("owner").await;
    let mut groups = Vec::new();
    for (name, capacity) in [("宝妈群", 2), ("读书会", 10)] {
        let reply = app
            .post(
                "/v1/groups",
                &json!({"name": name, "owner_member_id": owner, "capacity": capacity}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        groups.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let friend = app.member("friend").await;
    let member = app.member("m1").await;
    let joined = app
        .post(
            &format!("/v1/groups/{}/members", groups[0]),
            &json!({"member_id": member, "inviter_member_id": friend}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
    let link = app
        .post(
            "/v1/group-links",
            &json!({"name": "门店活码", "group_ids": groups}),
        )
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{:?}", link.body);
    let code = link.body["code"].as_str().unwrap().to_owned();
    (groups[0].clone(), groups[1].clone(), code, friend, member)
}

/// A draw-mode lottery `周年抽奖` with `entrants` entries made through the API.
async fn lottery_with_entries(app: &TestApp, entrants: usize) -> String {
    let reply = app
        .post(
            "/v1/lotteries",
            &json!({"name": "周年抽奖", "mode": "draw", "winners": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    for i in 0..entrants {
        enter(app, &id, &format!("entrant-{i}")).await;
    }
    id
}

async fn enter(app: &TestApp, lottery: &str, external_id: &str) -> String {
    let member = app.member(external_id).await;
    let reply = app
        .post(
            &format!("/v1/lotteries/{lottery}/entries"),
            &json!({"member_id": member}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    member
}

/// The check-in rule form's fields, with the CSRF token when given.
fn rule_fields<'a>(
    cycle_days: &'a str,
    rewards: &'a str,
    token: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("cycle_days", cycle_days),
        ("rewards", rewards),
        ("makeup_per_month", "1"),
        ("makeup_cost_points", "10"),
    ];
    fields.extend(token.map(|token| ("csrf_token", token)));
    fields
}

async fn rule(app: &TestApp) -> Value {
    app.get("/v1/checkin-rule").await.body
}

async fn community_page_shows_groups_links_and_rule_and_saves_the_rule(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let (full, roomy, code, friend, member) = groups_and_link(&app).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;

    let page = ops.get("/console/community").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    let text = html(&page);
    assert!(
        text.contains(r#"href="/console/community" class="active""#),
        "the nav shows the section"
    );
    assert!(text.contains("宝妈群") && text.contains("读书会"));
    assert!(text.contains(&format!("/console/community/groups/{full}")));
    assert!(
        text.contains(" 2 / 2") && text.contains(" 1 / 10"),
        "members / capacity"
    );
    assert!(
        text.contains("门店活码") && text.contains(&format!("/console/community/links/{code}"))
    );
    assert!(
        text.contains("宝妈群 2/2") && text.contains("读书会 1/10"),
        "the link's fill state"
    );
    // The default rule is shown and typed into the form as lines.
    assert!(text.contains("30 积分"), "{text}");
    assert!(text.contains("7 points 30"));
    assert!(text.contains(r#"id="checkin-rule-form""#) && text.contains(r#"id="lottery-form""#));

    let group = ops.get(&format!("/console/community/groups/{full}")).await;
    assert_eq!(group.status, StatusCode::OK, "{}", html(&group));
    let text = html(&group);
    assert!(text.contains("宝妈群") && text.contains("¥0.00"));
    assert!(
        text.contains("&quot;type&quot;:&quot;bar&quot;"),
        "joins and leaves as a chart"
    );
    assert!(
        text.contains(&format!("/console/members/{friend}")),
        "who brought whom"
    );
    assert!(text.contains(r#"id="group-members""#));
    assert!(
        text.contains(&format!("/console/members/{member}")),
        "the members now"
    );

    let link = ops.get(&format!("/console/community/links/{code}")).await;
    assert_eq!(link.status, StatusCode::OK, "{}", html(&link));
    let text = html(&link);
    assert!(text.contains("已满") && text.contains("有空位"));
    assert!(text.contains(&format!("/console/community/groups/{roomy}")));

    // The rule changes through the form, as lines.
    let token = ops.csrf().await;
    let refused = ops
        .post(
            "/console/community/checkin-rule",
            &rule_fields("5", "1 points 3", None),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "no CSRF token, no change"
    );
    assert_eq!(rule(&app).await["cycle_days"], 7);

    let unreadable = rule_fields("5", "1 points 3\n5 gold 2", Some(&token));
    let shown = ops
        .post("/console/community/checkin-rule", &unreadable)
        .await;
    assert_eq!(shown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html(&shown).contains("第 2 行无法识别：5 gold 2"),
        "{}",
        html(&shown)
    );
    assert!(
        html(&shown).contains("5 gold 2</textarea>"),
        "the form keeps what was typed"
    );
    let too_long = rule_fields("40", "1 points 3", Some(&token));
    let shown = ops.post("/console/community/checkin-rule", &too_long).await;
    assert_eq!(shown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html(&shown).contains("cycle_days"),
        "the API's refusal is shown"
    );
    assert_eq!(rule(&app).await["cycle_days"], 7, "nothing was saved");

    let good = rule_fields("5", "1 points 3\n5 wallet 2.00", Some(&token));
    let saved = ops.post("/console/community/checkin-rule", &good).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", html(&saved));
    assert_eq!(location(&saved), "/console/community?saved=rule");
    assert_eq!(
        rule(&app).await,
        json!({"cycle_days": 5, "makeup_per_month": 1, "makeup_cost_points": 10,
               "rewards": [{"day": 1, "reward": {"points": 3}}, {"day": 5, "reward": {"wallet_bonus": 200}}]})
    );
    let text = html(&ops.get(location(&saved)).await);
    assert!(text.contains("打卡规则已保存") && text.contains("5 wallet 2.00"));
}

async fn lottery_is_created_drawn_and_proved_through_the_console(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;

    let unreadable = ops
        .post(
            "/console/community/lotteries",
            &[
                ("name", "周年抽奖"),
                ("mode", "draw"),
                ("winners", "2"),
                ("prizes", "一等奖 | points 50 | one"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(unreadable.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&unreadable).contains("第 1 行无法识别"));
    assert_eq!(
        app.get("/v1/lotteries").await.body["data"],
        json!([]),
        "nothing was created"
    );

    let created = ops
        .post(
            "/console/community/lotteries",
            &[
                ("name", "周年抽奖"),
                ("mode", "draw"),
                ("winners", "2"),
                ("entry_cost_points", "0"),
                ("entries_per_member", "1"),
                ("opens_at", ""),
                ("closes_at", ""),
                ("prizes", "一等奖 | points 50 | 1\n二等奖 | points 10 | 1"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let page_path = location(&created).split('?').next().unwrap().to_owned();
    let id = page_path.rsplit('/').next().unwrap().to_owned();
    let lottery = app.get(&format!("/v1/lotteries/{id}")).await;
    assert_eq!(lottery.status, StatusCode::OK, "{:?}", lottery.body);
    assert_eq!(lottery.body["winners"], 2);
    assert_eq!(lottery.body["prizes"][0]["reward"], json!({"points": 50}));
    assert!(html(&ops.get("/console/community").await).contains(&page_path));

    let mut entrants = Vec::new();
    for i in 0..3 {
        entrants.push(enter(&app, &id, &format!("e{i}")).await);
    }
    let page = html(&ops.get(&page_path).await);
    assert!(page.contains(r#"id="entry-count">3<"#), "{page}");
    assert!(page.contains(r#"id="lottery-draw""#));
    assert!(page.contains(lottery.body["commitment"].as_str().unwrap()));
    assert!(!page.contains("proof-download"), "no proof before the draw");

    // A viewer sees the lottery but cannot draw it.
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let seen = viewer.get(&page_path).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!html(&seen).contains("lottery-draw"));
    let viewer_token = viewer.csrf().await;
    let refused = viewer
        .post(
            &format!("{page_path}/draw"),
            &[("close_early", "true"), ("csrf_token", &viewer_token)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&format!("/v1/lotteries/{id}")).await.body["status"],
        "open"
    );

    // Before the closing time the API refuses a draw unless it is closed early.
    let no_token = ops
        .post(&format!("{page_path}/draw"), &[("close_early", "true")])
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let early = ops
        .post(&format!("{page_path}/draw"), &[("csrf_token", &token)])
        .await;
    assert_eq!(early.status, StatusCode::SEE_OTHER);
    assert!(location(&early).contains("error="), "{}", location(&early));
    let shown = html(&ops.get(location(&early)).await);
    assert!(
        shown.contains("notice error") && shown.contains("close_early"),
        "{shown}"
    );
    assert_eq!(
        app.get(&format!("/v1/lotteries/{id}")).await.body["status"],
        "open"
    );

    let drawn = ops
        .post(
            &format!("{page_path}/draw"),
            &[("close_early", "true"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(location(&drawn), format!("{page_path}?drawn=1"));
    let lottery = app.get(&format!("/v1/lotteries/{id}")).await.body;
    assert_eq!(lottery["status"], "drawn");
    let winners = lottery["drawn_winners"].as_array().unwrap();
    assert_eq!(winners.len(), 2);

    let page = html(&ops.get(&format!("{page_path}?drawn=1")).await);
    for winner in winners {
        assert!(page.contains(&format!("/console/members/{}", winner.as_str().unwrap())));
    }
    assert!(!page.contains(r#"id="lottery-draw""#), "drawn once");
    assert!(page.contains(r#"id="proof-download""#));
    assert!(page.contains(&format!("shequn lottery verify lottery-{id}-proof.json")));
    assert!(
        page.contains(lottery["seed"].as_str().unwrap()),
        "the seed is shown with the proof"
    );

    let file = ops.get(&format!("{page_path}/proof")).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(
        file.headers["content-disposition"],
        format!("attachment; filename=\"lottery-{id}-proof.json\"").as_str()
    );
    assert!(file.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let api = app.get(&format!("/v1/lotteries/{id}/proof")).await;
    assert_eq!(file.body, api.body, "the file is the API's proof");
    let proof: draw::Proof = serde_json::from_value(file.body.clone()).unwrap();
    assert_eq!(draw::verify(&proof), Ok(()));
    for entrant in &entrants {
        assert!(proof.entries.contains(entrant));
    }

    let again = ops
        .post(
            &format!("{page_path}/draw"),
            &[("close_early", "true"), ("csrf_token", &token)],
        )
        .await;
    assert!(
        location(&again).contains("error="),
        "a second draw is refused"
    );
}

async fn community_pages_keep_other_tenants_out_and_viewers_from_changing(app: TestApp) {
    let (full, _, code, _, _) = groups_and_link(&app).await;
    let lottery = lottery_with_entries(&app, 1).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let them = OtherTenant::new(&app).await;

    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let page = viewer.get("/console/community").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = html(&page);
    assert!(text.contains("宝妈群") && text.contains("周年抽奖"));
    assert!(
        !text.contains("checkin-rule-form") && !text.contains("lottery-form"),
        "no forms for a viewer"
    );
    let token = viewer.csrf().await;
    let refused = viewer
        .post(
            "/console/community/checkin-rule",
            &[
                ("cycle_days", "3"),
                ("rewards", ""),
                ("makeup_per_month", "0"),
                ("makeup_cost_points", "0"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(rule(&app).await["cycle_days"], 7);
    let refused = viewer
        .post(
            "/console/community/lotteries",
            &[("name", "偷偷抽"), ("mode", "draw"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/v1/lotteries").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let mut other = them.owner().await;
    let text = html(&other.get("/console/community").await);
    assert!(!text.contains("宝妈群") && !text.contains("门店活码") && !text.contains("周年抽奖"));
    for path in [
        format!("/console/community/groups/{full}"),
        format!("/console/community/links/{code}"),
        format!("/console/community/lotteries/{lottery}"),
        format!("/console/community/lotteries/{lottery}/proof"),
        "/console/community/groups/not-an-id".to_owned(),
        "/console/community/links/nope".to_owned(),
        "/console/community/lotteries/lot_x".to_owned(),
    ] {
        let reply = other.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!html(&reply).contains("宝妈群") && !html(&reply).contains("周年抽奖"));
    }
    let token = other.csrf().await;
    let drawn = other
        .post(
            &format!("/console/community/lotteries/{lottery}/draw"),
            &[("close_early", "true"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(drawn.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("/v1/lotteries/{lottery}")).await.body["status"],
        "open"
    );
}
