//! CSV import (API) and export.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::{Reply, TestApp};

backend_tests!(
    import_keeps_good_rows_and_reports_bad_ones_by_line,
    reimport_updates_by_external_id,
    import_with_a_wrong_header_is_400_and_writes_nothing,
    export_round_trips_through_import,
    import_accepts_an_idempotency_key,
);

async fn import(app: &TestApp, csv: &str, idempotency_key: Option<&str>) -> Reply {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/v1/members/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv");
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    app.send(builder.body(Body::from(csv.to_owned())).unwrap())
        .await
}

async fn import_keeps_good_rows_and_reports_bad_ones_by_line(app: TestApp) {
    let csv = "external_id,name,phone,birthday,source,tags\n\
               u1,张三,+8613800000000,1990-05-01,store,vip|new\n\
               u2,Bad Phone,12345,,,\n\
               u3,李四,,1990-02-30,xiaohongshu,\n\
               ,No Id,,,,\n\
               u5,\"Quoted, Name\",,,course,a\n\
               u6,too,many,columns,here,x,y\n";
    let reply = import(&app, csv, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["created"], 2);
    assert_eq!(reply.body["updated"], 0);
    let lines: Vec<i64> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 7], "header is line 1");
    assert!(reply.body["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("phone"));
    assert!(reply.body["errors"][1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("birthday"));
    let list = app.get("/v1/members").await;
    let members = list.body["data"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["tags"], json!(["new", "vip"]));
    assert_eq!(members[1]["name"], "Quoted, Name");
    let created = app.get("/v1/events?type=member.created").await;
    assert_eq!(created.body["data"].as_array().unwrap().len(), 2);
}

async fn reimport_updates_by_external_id(app: TestApp) {
    let first = "external_id,name,phone,birthday,source,tags\nu1,Old,+8613800000000,,store,a|b\n";
    assert_eq!(import(&app, first, None).await.body["created"], 1);
    let second = "external_id,name,phone,birthday,source,tags\n\
                  u1,New,,1999-09-09,,\n\
                  u2,Other,,,,\n\
                  u2,Other Again,,,,c\n";
    let reply = import(&app, second, None).await;
    assert_eq!(reply.body["created"], 1);
    assert_eq!(reply.body["updated"], 2);
    let list = app.get("/v1/members").await;
    let members = list.body["data"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let u1 = &members[0];
    assert_eq!(u1["name"], "New");
    assert_eq!(
        u1["phone"], "+8613800000000",
        "empty cells keep stored values"
    );
    assert_eq!(u1["birthday"], "1999-09-09");
    assert_eq!(
        u1["tags"],
        json!(["a", "b"]),
        "an empty tags cell keeps the tags"
    );
    assert_eq!(
        members[1]["name"], "Other Again",
        "the last row of an external id wins"
    );
    assert_eq!(members[1]["tags"], json!(["c"]));
}

async fn import_with_a_wrong_header_is_400_and_writes_nothing(app: TestApp) {
    let reply = import(&app, "id,name\n1,x\n", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("external_id,name,phone"));
    let empty = import(&app, "", None).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/members").await.body["data"], json!([]));
}

async fn export_round_trips_through_import(app: TestApp) {
    let mut csv = String::from("external_id,name,phone,birthday,source,tags\n");
    for i in 0..2500 {
        csv.push_str(&format!(
            "ext{i:05},Name {i},+86138{i:08},1990-01-01,store,t{}\n",
            i % 3
        ));
    }
    let reply = import(&app, &csv, None).await;
    assert_eq!(reply.body["created"], 2500, "{:?}", reply.body["errors"]);
    let exported = app.get("/v1/members/export").await;
    assert_eq!(exported.status, StatusCode::OK);
    assert!(exported.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = exported.body.as_str().unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "external_id,name,phone,birthday,source,tags");
    let mut expected: Vec<&str> = csv.lines().collect();
    lines.sort();
    expected.sort();
    assert_eq!(
        lines, expected,
        "export holds exactly what was imported (across pages)"
    );
    let again = import(&app, text, None).await;
    assert_eq!(again.body["created"], 0);
    assert_eq!(again.body["updated"], 2500);
}

async fn import_accepts_an_idempotency_key(app: TestApp) {
    let csv = "external_id,name,phone,birthday,source,tags\nk1,A,,,,\n";
    let first = import(&app, csv, Some("imp-1")).await;
    assert_eq!(first.body["created"], 1);
    let replay = import(&app, csv, Some("imp-1")).await;
    assert_eq!(
        replay.body, first.body,
        "replayed, not re-run (which would say updated: 1)"
    );
    let other = import(
        &app,
        "external_id,name,phone,birthday,source,tags\nk2,B,,,,\n",
        Some("imp-1"),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
}
