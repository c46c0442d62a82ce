//! The console's engagement pages without a browser: automations listed with what they did,
//! created from the form and shown with their stats, paused and deleted; broadcasts dry-run
//! (nothing saved), scheduled and cancelled; bad JSON and refused fields shown again with what
//! was typed; viewers offered no form; another tenant's automation not found.

use axum::http::StatusCode;
use serde_json::{json, Value};
use shequn::console::operators::Role;
use shequn::engagement::automations::run_automations;

use crate::backend_tests;
use crate::console_support::{hidden, html, location, operator, Browser, OtherTenant};
use crate::support::TestApp;

backend_tests!(
    an_automation_is_created_from_the_form_and_shows_what_it_did,
    bad_automation_forms_are_shown_again_and_save_nothing,
    a_broadcast_is_dry_run_scheduled_and_cancelled,
    viewers_get_no_forms_and_other_tenants_automations_are_not_found,
);

async fn automations(app: &TestApp) -> Vec<Value> {
    let reply = app.get("/v1/automations").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

const SEND: &str =
    r#"[{"send_message": {"channel": "wecom", "category": "marketing", "template": "welcome"}}]"#;

async fn an_automation_is_created_from_the_form_and_shows_what_it_did(app: TestApp) {
    // Ten in the morning in the tenant's zone: the marketing message is not held back by the
    // default quiet hours (21:00-08:00), whatever the time of day the test runs at.
    app.clock.set("2026-06-01T10:00:00+08:00".parse().unwrap());
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get("/console/engagement").await);
    assert!(
        page.contains("href=\"/console/engagement\""),
        "in the nav: {page}"
    );
    assert!(page.contains("id=\"automation-form\""), "{page}");
    let (token, key) = (hidden(&page, "csrf_token"), hidden(&page, "form_key"));
    let form = [
        ("csrf_token", token.as_str()),
        ("form_key", key.as_str()),
        ("name", "新人欢迎"),
        ("trigger", "member.created"),
        ("filter", r#"{"tag": "vip"}"#),
        ("delay_secs", "0"),
        ("actions", SEND),
    ];
    let created = ops.post("/console/engagement/automations", &form).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let all = automations(&app).await;
    assert_eq!(all.len(), 1);
    let id = all[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(all[0]["filter"], json!({"tag": "vip"}));
    assert_eq!(
        location(&created),
        format!("/console/engagement/automations/{id}?created=1")
    );
    // A double click creates nothing more.
    let again = ops.post("/console/engagement/automations", &form).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(automations(&app).await.len(), 1);

    // Two members, one vip with consent: the automation runs, the pages say so.
    for (name, tags) in [("a", json!(["vip"])), ("b", json!([]))] {
        let reply = app
            .post(
                "/v1/members",
                &json!({"external_id": name, "tags": tags, "consent": {"marketing": true}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    run_automations(&app.state).await.unwrap();
    let list = html(&ops.get("/console/engagement").await);
    let at = list.find(&format!("data-automation-id=\"{id}\"")).unwrap();
    let row = &list[at..at + list[at..].find("</tr>").unwrap()];
    assert!(
        row.contains("新人欢迎")
            && row.contains("<td class=\"num\">2</td>")
            && row.contains("<td class=\"num\">1</td>"),
        "entered 2, one message: {row}"
    );
    let page = html(
        &ops.get(&format!("/console/engagement/automations/{id}"))
            .await,
    );
    assert!(page.contains("id=\"stats\""), "{page}");
    assert!(page.contains("member.created"), "{page}");

    // Paused from its page, then deleted.
    let token = hidden(&page, "csrf_token");
    let key = hidden(&page, "form_key");
    let paused = ops
        .post(
            &format!("/console/engagement/automations/{id}/status"),
            &[
                ("csrf_token", &token),
                ("form_key", &key),
                ("status", "paused"),
            ],
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", html(&paused));
    assert_eq!(automations(&app).await[0]["status"], "paused");
    let page = html(
        &ops.get(&format!("/console/engagement/automations/{id}"))
            .await,
    );
    assert!(page.contains("value=\"active\""), "a resume button: {page}");
    let key = hidden(&page, "form_key");
    let deleted = ops
        .post(
            &format!("/console/engagement/automations/{id}/delete"),
            &[("csrf_token", &token), ("form_key", &key)],
        )
        .await;
    assert_eq!(location(&deleted), "/console/engagement?done=automation");
    assert!(automations(&app).await.is_empty());
}

async fn bad_automation_forms_are_shown_again_and_save_nothing(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;
    for (filter, actions, says) in [
        ("", "[{not json", "动作（json）"),
        (r#"{"tag": "#, SEND, "筛选规则"),
        (r#"{"field": "shoe_size", "lte": 3}"#, SEND, "filter.field"),
        (
            "",
            r#"[{"grant_points": {"points": 0}}]"#,
            "actions[0].grant_points.points",
        ),
    ] {
        let refused = ops
            .post(
                "/console/engagement/automations",
                &[
                    ("csrf_token", &token),
                    ("name", "坏表单"),
                    ("trigger", "member.created"),
                    ("filter", filter),
                    ("delay_secs", "0"),
                    ("actions", actions),
                ],
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{filter} {actions}"
        );
        let page = html(&refused);
        let at = page.find("notice error").expect("an error notice");
        let notice = page[at..at + page[at..].find("</p>").unwrap()].to_lowercase();
        assert!(notice.contains(says), "{says}: {notice}");
        assert!(page.contains("value=\"坏表单\""), "typed name kept: {page}");
        assert!(
            page.contains(&actions.replace('"', "&quot;")),
            "typed actions kept"
        );
    }
    assert!(automations(&app).await.is_empty());
}

async fn a_broadcast_is_dry_run_scheduled_and_cancelled(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    for (name, consent) in [("a", true), ("b", false)] {
        let reply = app
            .post(
                "/v1/members",
                &json!({"external_id": name, "tags": ["club"], "consent": {"marketing": consent}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get("/console/engagement").await);
    let token = hidden(&page, "csrf_token");
    let day = (app.clock_now() + jiff::SignedDuration::from_hours(24 * 30))
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date();
    let fields = |key: &str| {
        vec![
            ("csrf_token", token.clone()),
            ("form_key", key.to_owned()),
            ("name", "周末预告".to_owned()),
            ("segment_id", String::new()),
            ("rule", r#"{"tag": "club"}"#.to_owned()),
            ("actions", SEND.to_owned()),
            ("send_at", format!("{day}T20:00")),
        ]
    };
    let dry_fields = fields("");
    let dry_form: Vec<(&str, &str)> = dry_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dry = ops
        .post("/console/engagement/broadcasts/dry-run", &dry_form)
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", html(&dry));
    let dry = html(&dry);
    assert!(dry.contains("id=\"dry-run\" data-audience=\"2\""), "{dry}");
    let listed = app.get("/v1/broadcasts").await;
    assert_eq!(listed.body["data"], json!([]), "a dry run saves nothing");

    let key = hidden(&dry, "form_key");
    let schedule_fields = fields(&key);
    let form: Vec<(&str, &str)> = schedule_fields
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let created = ops.post("/console/engagement/broadcasts", &form).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let listed = app.get("/v1/broadcasts").await;
    let broadcast = &listed.body["data"][0];
    let id = broadcast["id"].as_str().unwrap().to_owned();
    assert_eq!(broadcast["status"], "scheduled");
    assert!(
        broadcast["send_at"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{day}T12:00:00")),
        "20:00 in Shanghai: {broadcast}"
    );
    let page = html(&ops.get(location(&created)).await);
    assert!(
        page.contains(&format!("/console/engagement/broadcasts/{id}/cancel")),
        "{page}"
    );
    let key = hidden(&page, "form_key");
    let cancelled = ops
        .post(
            &format!("/console/engagement/broadcasts/{id}/cancel"),
            &[("csrf_token", &token), ("form_key", &key)],
        )
        .await;
    assert_eq!(location(&cancelled), "/console/engagement?done=broadcast");
    let one = app.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(one.body["status"], "cancelled");
}

async fn viewers_get_no_forms_and_other_tenants_automations_are_not_found(app: TestApp) {
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let page = html(&viewer.get("/console/engagement").await);
    assert!(
        !page.contains("automation-form") && !page.contains("broadcast-form"),
        "{page}"
    );
    let token = viewer.csrf().await;
    let refused = viewer
        .post(
            "/console/engagement/automations",
            &[("csrf_token", &token), ("name", "x"), ("actions", SEND)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", html(&refused));

    let other = OtherTenant::new(&app).await;
    let theirs = other
        .post(
            "/v1/automations",
            &json!({"name": "他家", "trigger": {"event": "member.created"},
                    "actions": [{"add_tags": ["x"]}]}),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let id = theirs.body["id"].as_str().unwrap();
    let page = viewer
        .get(&format!("/console/engagement/automations/{id}"))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}
