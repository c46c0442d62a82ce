//! The console's segment pages without a browser: the list with each segment's count, a
//! preview that saves nothing, a save that creates and shows the new segment (its rule, count,
//! history and members), bad rules refused with the API's path and nothing saved, viewers and
//! another tenant kept out, deletion.

use axum::http::StatusCode;
use serde_json::{json, Value};
use shequn::console::operators::Role;

use crate::backend_tests;
use crate::console_support::{hidden, html, location, operator, Browser, OtherTenant};
use crate::support::TestApp;

backend_tests!(
    the_list_shows_each_segments_count_and_its_page_the_rule_history_and_members,
    a_preview_shows_the_count_and_sample_and_saves_nothing,
    saving_creates_the_segment_and_shows_its_page,
    bad_rules_say_where_they_are_wrong_and_save_nothing,
    viewers_see_segments_without_the_form_and_their_posts_are_refused,
    another_tenants_segment_is_not_found,
    a_segment_is_deleted_from_its_page,
);

/// A member with tags; their id.
async fn member(app: &TestApp, external_id: &str, name: &str, tags: &[&str]) -> String {
    let reply = app
        .post(
            "/v1/members",
            &json!({"external_id": external_id, "name": name, "tags": tags}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// A segment saved through the API; its id.
async fn saved(app: &TestApp, name: &str, rule: Value) -> String {
    let reply = app
        .post("/v1/segments", &json!({"name": name, "rule": rule}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn segments(app: &TestApp) -> Vec<Value> {
    let reply = app.get("/v1/segments?limit=200").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

/// The text of the page's error notice, lower-cased.
fn refusal(page: &str) -> String {
    let at = page
        .find("notice error")
        .unwrap_or_else(|| panic!("no error notice in {page}"));
    page[at..at + page[at..].find("</p>").unwrap()].to_lowercase()
}

/// The markup of the row of `page` whose element carries `marker`, up to its `</tr>`.
fn row<'a>(page: &'a str, marker: &str) -> &'a str {
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {page}"));
    &page[at..at + page[at..].find("</tr>").unwrap()]
}

async fn the_list_shows_each_segments_count_and_its_page_the_rule_history_and_members(
    app: TestApp,
) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let (a, b) = (
        member(&app, "a", "王小豆", &["vip", "tea"]).await,
        member(&app, "b", "李豆浆", &["vip"]).await,
    );
    let _c = member(&app, "c", "张油条", &["new"]).await;
    let vip = saved(&app, "豆浆老客", json!({"tag": "vip"})).await;
    let none = saved(&app, "无人", json!({"tag": "nobody"})).await;

    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let list = ops.get("/console/segments").await;
    assert_eq!(list.status, StatusCode::OK);
    let list = html(&list);
    assert!(list.contains("href=\"/console/segments\""), "in the nav");
    let vip_row = row(&list, &format!("data-segment-id=\"{vip}\""));
    assert!(
        vip_row.contains(&format!("href=\"/console/segments/{vip}\""))
            && vip_row.contains("豆浆老客")
            && vip_row.contains("<td class=\"num\">2</td>"),
        "{vip_row}"
    );
    let none_row = row(&list, &format!("data-segment-id=\"{none}\""));
    assert!(none_row.contains("<td class=\"num\">0</td>"), "{none_row}");

    // The daily run records today's count: the page charts it.
    let day = app.post("/v1/jobs/daily", &json!({})).await;
    assert!(day.status.is_success(), "{}", day.body);
    let page = ops.get(&format!("/console/segments/{vip}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    assert!(page.contains("豆浆老客"), "{page}");
    assert!(
        page.contains("id=\"segment-count\"><strong>2</strong>"),
        "{page}"
    );
    assert!(page.contains("pre class=\"json\""), "the rule: {page}");
    let history = &page[page.find("id=\"segment-history\"").unwrap()..];
    let today = app
        .clock_now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
        .to_string();
    assert!(
        history.contains("data-chart=") && history.contains(&today),
        "{history}"
    );
    // The members, linked to their pages, with their tags.
    let members = &page[page.find("id=\"segment-members\"").unwrap()..];
    for (id, name) in [(&a, "王小豆"), (&b, "李豆浆")] {
        assert!(
            members.contains(&format!("href=\"/console/members/{id}\">{name}</a>")),
            "{name}: {members}"
        );
    }
    assert!(!members.contains("张油条"));
    assert!(members.contains("<span class=\"tag\">tea</span>"));
    // An operator may delete it.
    assert!(page.contains(&format!("action=\"/console/segments/{vip}/delete\"")));
}

async fn a_preview_shows_the_count_and_sample_and_saves_nothing(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let a = member(&app, "a", "王小豆", &["vip"]).await;
    let b = member(&app, "b", "李豆浆", &["vip"]).await;
    let c = member(&app, "c", "张油条", &["new"]).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get("/console/segments").await);
    assert!(page.contains("id=\"segment-form\""), "{page}");
    assert!(
        page.contains("formaction=\"/console/segments/preview\""),
        "{page}"
    );
    assert!(page.contains("last_order_days"), "the example rule: {page}");
    let token = hidden(&page, "csrf_token");
    let key = hidden(&page, "form_key");
    let rule = r#"{"any": [{"tag": "vip"}, {"tag": "nobody"}]}"#;
    let previewed = ops
        .post(
            "/console/segments/preview",
            &[
                ("csrf_token", &token),
                ("form_key", &key),
                ("name", "会员日人群"),
                ("rule", rule),
            ],
        )
        .await;
    assert_eq!(previewed.status, StatusCode::OK, "{}", html(&previewed));
    let page = html(&previewed);
    assert!(
        page.contains("id=\"segment-preview\" data-count=\"2\""),
        "{page}"
    );
    for id in [&a, &b] {
        assert!(
            page.contains(&format!("href=\"/console/members/{id}\"")),
            "{id}: {page}"
        );
    }
    let preview = &page[page.find("id=\"segment-preview\"").unwrap()..];
    assert!(!preview.contains(&c), "{preview}");
    // What was typed is kept.
    assert!(page.contains("value=\"会员日人群\""), "{page}");
    assert!(page.contains("&quot;nobody&quot;"), "{page}");
    assert_eq!(segments(&app).await, Vec::<Value>::new());

    // The same form saved afterwards (a new key) creates the segment once.
    let key = hidden(&page, "form_key");
    let created = ops
        .post(
            "/console/segments",
            &[
                ("csrf_token", &token),
                ("form_key", &key),
                ("name", "会员日人群"),
                ("rule", rule),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    assert_eq!(segments(&app).await.len(), 1);
}

async fn saving_creates_the_segment_and_shows_its_page(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    member(&app, "a", "王小豆", &["vip"]).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get("/console/segments").await);
    let (token, key) = (hidden(&page, "csrf_token"), hidden(&page, "form_key"));
    let form = [
        ("csrf_token", token.as_str()),
        ("form_key", key.as_str()),
        ("name", "  VIP 客户 "),
        ("rule", r#" {"tag": "vip"} "#),
    ];
    let created = ops.post("/console/segments", &form).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", html(&created));
    let all = segments(&app).await;
    assert_eq!(all.len(), 1);
    let segment = &all[0];
    let id = segment["id"].as_str().unwrap();
    assert_eq!(segment["name"], "VIP 客户");
    assert_eq!(segment["rule"], json!({"tag": "vip"}));
    assert_eq!(segment["count"], 1);
    assert_eq!(
        location(&created),
        format!("/console/segments/{id}?created=1")
    );

    // Submitted twice (a double click): still one.
    let again = ops.post("/console/segments", &form).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", html(&again));
    assert_eq!(segments(&app).await.len(), 1);

    let page = ops.get(location(&created)).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    assert!(
        page.contains("notice ok") && page.contains("人群已保存"),
        "{page}"
    );
    assert!(page.contains("VIP 客户") && page.contains("&quot;vip&quot;"));
    assert!(
        page.contains("每日任务运行后按天记录人数"),
        "no history yet"
    );
    let list = html(&ops.get("/console/segments").await);
    assert!(list.contains(&format!("href=\"/console/segments/{id}\"")));
}

async fn bad_rules_say_where_they_are_wrong_and_save_nothing(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let token = ops.csrf().await;
    for (action, name, rule, says) in [
        (
            "/console/segments",
            "坏规则",
            r#"{"all": [{"tag": "vip"}, {"field": "shoe_size", "lte": 30}]}"#,
            "rule.all[1].field",
        ),
        (
            "/console/segments/preview",
            "坏规则",
            r#"{"all": [{"tag": "vip"}, {"field": "shoe_size", "lte": 30}]}"#,
            "rule.all[1].field",
        ),
        ("/console/segments", "坏规则", r#"{"any": []}"#, "rule.any"),
        (
            "/console/segments",
            "坏规则",
            r#"{"all": [{"tag": "vip"}"#,
            "规则不是有效的 json",
        ),
        (
            "/console/segments/preview",
            "坏规则",
            "not json",
            "规则不是有效的 json",
        ),
        ("/console/segments", "", r#"{"tag": "vip"}"#, "name"),
    ] {
        let refused = ops
            .post(
                action,
                &[("csrf_token", &token), ("name", name), ("rule", rule)],
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{action} {rule}"
        );
        let page = html(&refused);
        assert!(refusal(&page).contains(says), "{says}: {page}");
        // What was typed is shown again in the open form.
        let escaped = rule.replace('"', "&quot;");
        assert!(
            page.contains(&format!("value=\"{name}\"")) && page.contains(&escaped),
            "{page}"
        );
        assert!(!page.contains("id=\"segment-preview\""), "{page}");
    }
    assert_eq!(segments(&app).await, Vec::<Value>::new());
}

async fn viewers_see_segments_without_the_form_and_their_posts_are_refused(app: TestApp) {
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    member(&app, "a", "王小豆", &["vip"]).await;
    let id = saved(&app, "豆浆老客", json!({"tag": "vip"})).await;
    let mut viewer = Browser::signed_in(&app, "viewer@shop.example").await;
    let list = viewer.get("/console/segments").await;
    assert_eq!(list.status, StatusCode::OK);
    let list = html(&list);
    assert!(list.contains(&format!("/console/segments/{id}")), "{list}");
    assert!(
        !list.contains("segment-form") && !list.contains("action=\"/console/segments"),
        "a viewer is offered no form: {list}"
    );
    let page = viewer.get(&format!("/console/segments/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = html(&page);
    assert!(page.contains("王小豆"), "{page}");
    assert!(!page.contains("/delete"), "no delete button: {page}");

    let token = viewer.csrf().await;
    for action in [
        "/console/segments".to_owned(),
        "/console/segments/preview".to_owned(),
        format!("/console/segments/{id}/delete"),
    ] {
        let refused = viewer
            .post(
                &action,
                &[
                    ("csrf_token", &token),
                    ("name", "只读"),
                    ("rule", r#"{"tag": "vip"}"#),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{action}");
    }
    let all = segments(&app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], id.as_str());
}

async fn another_tenants_segment_is_not_found(app: TestApp) {
    let them = OtherTenant::new(&app).await;
    member(&app, "a", "王小豆", &["vip"]).await;
    let id = saved(&app, "豆浆老客", json!({"tag": "vip"})).await;
    let mut other = them.owner().await;
    let list = html(&other.get("/console/segments").await);
    assert!(!list.contains(&id) && !list.contains("豆浆老客"), "{list}");
    for path in [
        format!("/console/segments/{id}"),
        format!("/console/segments/{id}?cursor=x"),
        "/console/segments/not-an-id".to_owned(),
    ] {
        let reply = other.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        let page = html(&reply);
        assert!(
            !page.contains("豆浆老客") && !page.contains("王小豆"),
            "{path}: {page}"
        );
    }
    // Nor can they delete it.
    let token = other.csrf().await;
    let refused = other
        .post(
            &format!("/console/segments/{id}/delete"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(segments(&app).await.len(), 1);
    // Their own preview counts their members only.
    let previewed = other
        .post(
            "/console/segments/preview",
            &[
                ("csrf_token", &token),
                ("name", ""),
                ("rule", r#"{"tag": "vip"}"#),
            ],
        )
        .await;
    assert_eq!(previewed.status, StatusCode::OK);
    assert!(html(&previewed).contains("id=\"segment-preview\" data-count=\"0\""));
}

async fn a_segment_is_deleted_from_its_page(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let keep = saved(&app, "留下", json!({"tag": "vip"})).await;
    let gone = saved(&app, "删掉", json!({"tag": "tea"})).await;
    let mut ops = Browser::signed_in(&app, "ops@shop.example").await;
    let page = html(&ops.get(&format!("/console/segments/{gone}")).await);
    assert!(page.contains("data-confirm="), "{page}");
    let (token, key) = (hidden(&page, "csrf_token"), hidden(&page, "form_key"));

    // Without the session's token: refused, nothing deleted.
    let forged = ops
        .post(
            &format!("/console/segments/{gone}/delete"),
            &[("csrf_token", "forged"), ("form_key", &key)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(segments(&app).await.len(), 2);

    let deleted = ops
        .post(
            &format!("/console/segments/{gone}/delete"),
            &[("csrf_token", &token), ("form_key", &key)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", html(&deleted));
    assert_eq!(location(&deleted), "/console/segments?deleted=1");
    let left = segments(&app).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], keep.as_str());
    let list = html(&ops.get(location(&deleted)).await);
    assert!(
        list.contains("人群已删除") && !list.contains("删掉"),
        "{list}"
    );
    assert_eq!(
        ops.get(&format!("/console/segments/{gone}")).await.status,
        StatusCode::NOT_FOUND
    );
    // Deleting it again (a new form) finds nothing.
    let again = ops
        .post(
            &format!("/console/segments/{gone}/delete"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}
