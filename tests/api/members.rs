//! Members API: create, read, update, tags, erasure, listing.

use axum::http::StatusCode;
use serde_json::json;
use shequn::common::clock::Clock as _;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    create_returns_201_with_the_member,
    create_validates_fields_and_names_them,
    duplicate_external_id_is_a_409,
    patch_sets_clears_and_keeps_fields,
    tags_are_added_and_removed,
    erase_removes_personal_data_and_keeps_the_id,
    list_pages_with_a_stable_cursor,
    list_filters_by_tag_source_query_and_dates,
    export_of_one_member_holds_profile_and_events,
    unknown_and_malformed_ids_are_404,
);

async fn create_returns_201_with_the_member(app: TestApp) {
    let reply = app
        .post(
            "/v1/members",
            &json!({
                "external_id": "u-1", "name": "张三", "phone": "+8613800000000",
                "birthday": "1990-05-01", "gender": "female", "source": "xiaohongshu",
                "tags": ["vip", "新客"], "attributes": {"city": "杭州"},
                "consent": {"marketing": true}
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let member = &reply.body;
    let id = member["id"].as_str().unwrap();
    assert!(id.starts_with("mem_"));
    assert_eq!(member["external_id"], "u-1");
    assert_eq!(member["phone"], "+8613800000000");
    assert_eq!(member["source"], "xiaohongshu");
    assert_eq!(member["tags"], json!(["vip", "新客"]));
    assert_eq!(member["attributes"]["city"], "杭州");
    assert_eq!(member["consent"]["marketing"], true);
    assert_eq!(member["status"], "active");

    // The creation also says what an invite code did: nothing here.
    assert_eq!(member["referral"], serde_json::Value::Null);

    let fetched = app.get(&format!("/v1/members/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    let mut created = reply.body.clone();
    created.as_object_mut().unwrap().remove("referral");
    assert_eq!(fetched.body, created);

    let free_text = app
        .post("/v1/members", &json!({ "source": "2026 上海展会" }))
        .await;
    assert_eq!(free_text.status, StatusCode::CREATED);
    assert_eq!(
        free_text.body["source"], "2026 上海展会",
        "free-text sources are stored as sent"
    );
}

async fn create_validates_fields_and_names_them(app: TestApp) {
    let cases = [
        (json!({"phone": "13800000000"}), "phone"),
        (json!({"birthday": "1990-02-30"}), "birthday"),
        (json!({"gender": "robot"}), "gender"),
        (json!({"attributes": [1, 2]}), "attributes"),
        (json!({"tags": ["a|b"]}), "tags"),
        (
            json!({"attributes": {"x": "y".repeat(20_000)}}),
            "attributes",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/v1/members", &body).await;
        assert!(
            reply.status == StatusCode::UNPROCESSABLE_ENTITY
                || reply.status == StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            reply
        );
        assert_eq!(reply.body["error"]["details"]["field"], field, "{body}");
    }
    let wrong_type = app.post("/v1/members", &json!({"name": 5})).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.body["error"]["details"]["field"], "name");
    let list = app.get("/v1/members").await;
    assert_eq!(
        list.body["data"],
        json!([]),
        "nothing was created by bad requests"
    );
}

async fn duplicate_external_id_is_a_409(app: TestApp) {
    app.member("dup").await;
    let reply = app
        .post("/v1/members", &json!({"external_id": "dup"}))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "external_id_taken");
    let other = app.member("other").await;
    let patch = app
        .patch(
            &format!("/v1/members/{other}"),
            &json!({"external_id": "dup"}),
        )
        .await;
    assert_eq!(patch.status, StatusCode::CONFLICT);
}

async fn patch_sets_clears_and_keeps_fields(app: TestApp) {
    let created = app
        .post(
            "/v1/members",
            &json!({"external_id": "p1", "name": "A", "phone": "+8613800000001", "source": "store"}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    let reply = app
        .patch(
            &format!("/v1/members/{id}"),
            &json!({"name": "B", "phone": null, "consent": {"marketing": true}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["name"], "B");
    assert_eq!(reply.body["phone"], json!(null));
    assert_eq!(reply.body["source"], "store", "absent fields stay");
    assert_eq!(reply.body["consent"]["marketing"], true);
    let mass = app
        .patch(&format!("/v1/members/{id}"), &json!({"status": "erased"}))
        .await;
    assert_eq!(
        mass.status,
        StatusCode::BAD_REQUEST,
        "status is not writable"
    );
    let events = app.get("/v1/events?type=member.updated").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        events.body["data"][0]["data"]["fields"],
        json!(["name", "phone", "consent"])
    );
}

async fn tags_are_added_and_removed(app: TestApp) {
    let id = app.member("t1").await;
    let reply = app
        .post(
            &format!("/v1/members/{id}/tags"),
            &json!({"add": ["b", "a", "c"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["tags"], json!(["a", "b", "c"]));
    let reply = app
        .post(
            &format!("/v1/members/{id}/tags"),
            &json!({"add": ["d"], "remove": ["a", "zzz"]}),
        )
        .await;
    assert_eq!(reply.body["tags"], json!(["b", "c", "d"]));
    let events = app.get("/v1/events?type=member.tagged").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 2);
}

async fn erase_removes_personal_data_and_keeps_the_id(app: TestApp) {
    let created = app
        .post(
            "/v1/members",
            &json!({"external_id": "e1", "name": "王五", "phone": "+8613800000002",
                    "birthday": "1980-01-01", "tags": ["secret-tag"], "attributes": {"a": 1}}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let reply = app.delete(&format!("/v1/members/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let fetched = app.get(&format!("/v1/members/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    let m = &fetched.body;
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["status"], "erased");
    for field in ["name", "phone", "birthday", "external_id", "gender"] {
        assert_eq!(m[field], json!(null), "{field} erased");
    }
    assert_eq!(m["tags"], json!([]));
    assert_eq!(m["attributes"], json!({}));
    let erased = app.get("/v1/events?type=member.erased").await;
    assert_eq!(erased.body["data"][0]["subject"], id.as_str());
    let export = app.get(&format!("/v1/members/{id}/export")).await;
    assert!(
        !export.body.to_string().contains("secret-tag")
            && !export.body.to_string().contains("王五"),
        "no personal data survives erasure: {}",
        export.body
    );
    let patch = app
        .patch(&format!("/v1/members/{id}"), &json!({"name": "back"}))
        .await;
    assert_eq!(patch.status, StatusCode::CONFLICT);
    assert_eq!(patch.body["error"]["code"], "member_erased");
    // The external id is free again.
    app.member("e1").await;
}

async fn list_pages_with_a_stable_cursor(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.member(&format!("m{i}")).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/members?limit=3&cursor={c}"),
            None => "/v1/members?limit=3".to_owned(),
        };
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK);
        pages += 1;
        for m in reply.body["data"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_owned());
        }
        match reply.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        // A member created mid-way appears at the end, never shifting earlier pages.
        if pages == 1 {
            ids.push(app.member("late").await);
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    assert_eq!(
        app.get("/v1/members?limit=201").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/v1/members?limit=0").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/v1/members?cursor=nonsense").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/v1/members?bogus=1").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn list_filters_by_tag_source_query_and_dates(app: TestApp) {
    app.post(
        "/v1/members",
        &json!({"external_id": "a", "name": "Alice Wang", "source": "store", "tags": ["vip"]}),
    )
    .await;
    app.post("/v1/members", &json!({"external_id": "b", "name": "Bob", "source": "xiaohongshu", "phone": "+8613912345678"})).await;
    app.post("/v1/members", &json!({"external_id": "c", "name": "100%_real", "source": "store", "tags": ["vip", "new"]})).await;
    let names = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["external_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&app.get("/v1/members?tag=vip").await), ["a", "c"]);
    assert_eq!(names(&app.get("/v1/members?tag=new").await), ["c"]);
    assert_eq!(
        names(&app.get("/v1/members?source=store").await),
        ["a", "c"]
    );
    assert_eq!(
        names(&app.get("/v1/members?q=alice").await),
        ["a"],
        "case-insensitive"
    );
    assert_eq!(
        names(&app.get("/v1/members?q=1234").await),
        ["b"],
        "phone substring"
    );
    assert_eq!(
        names(&app.get("/v1/members?q=%25_").await),
        ["c"],
        "wildcards are literal"
    );
    assert_eq!(
        names(&app.get("/v1/members?tag=vip&source=xiaohongshu").await),
        Vec::<String>::new()
    );
    let after = app.clock.now() + jiff::SignedDuration::from_secs(1);
    assert_eq!(
        names(&app.get(&format!("/v1/members?created_after={after}")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            &app.get(&format!("/v1/members?created_before={after}"))
                .await
        )
        .len(),
        3
    );
    assert_eq!(
        app.get("/v1/members?created_after=yesterday").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn export_of_one_member_holds_profile_and_events(app: TestApp) {
    let id = app.member("x1").await;
    app.post(&format!("/v1/members/{id}/tags"), &json!({"add": ["vip"]}))
        .await;
    let reply = app.get(&format!("/v1/members/{id}/export")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["member"]["id"], id.as_str());
    let types: Vec<&str> = reply.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["member.created", "member.tagged"]);
}

async fn unknown_and_malformed_ids_are_404(app: TestApp) {
    let missing = "mem_0123456789abcdef0123456789abcdef";
    assert_eq!(
        app.get(&format!("/v1/members/{missing}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/members/not-an-id").await.status,
        StatusCode::NOT_FOUND
    );
    let reply = app
        .patch(&format!("/v1/members/{missing}"), &json!({"name": "x"}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "not_found");
    assert_eq!(
        app.delete(&format!("/v1/members/{missing}")).await.status,
        StatusCode::NOT_FOUND
    );
}
