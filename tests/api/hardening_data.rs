//! Hardening of data paths (issue 15, items 4, 5, 7 and 8): no lost updates under concurrent
//! requests, erasure that leaves nothing behind, idempotency claims of dead processes released
//! within seconds, imports and searches with bounded sizes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, Row as _};

use crate::backend_tests;
use crate::support::{build, Backend, Reply, TestApp};

backend_tests!(
    renames_during_checkouts_keep_every_stock_decrement,
    concurrent_settings_changes_of_different_fields_are_all_kept,
    erasure_leaves_no_personal_value_in_any_table_or_file,
    a_claim_whose_lease_ran_out_is_taken_over_and_runs_once,
    a_claim_within_its_lease_answers_in_progress_until_it_runs_out,
    an_oversized_csv_row_is_a_row_error_and_the_other_rows_are_kept,
    an_oversized_order_row_is_a_row_error_and_the_other_rows_are_kept,
    an_import_body_over_the_limit_is_413,
    a_member_search_longer_than_the_limit_is_422,
);

// --- item 4: lost updates ----------------------------------------------------------------------

/// 60 checkouts of one unit and 60 renames of the product, all at once: every checkout's
/// decrement survives (a rename that wrote back the stock it read undid some of them).
async fn renames_during_checkouts_keep_every_stock_decrement(app: TestApp) {
    let app = Arc::new(app);
    let member = app.member("buyer").await;
    let product = app
        .post(
            "/v1/products",
            &json!({"name": "Tea", "sku": "tea", "price": 100, "stock": 1000}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let product = product.body["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (buyer, member, bought) = (app.clone(), member.clone(), product.clone());
        tasks.push(tokio::spawn(async move {
            buyer
                .post(
                    "/v1/orders",
                    &json!({"member_id": member, "items": [{"product_id": bought, "qty": 1}]}),
                )
                .await
        }));
        let (renamer, renamed) = (app.clone(), product.clone());
        tasks.push(tokio::spawn(async move {
            renamer
                .patch(
                    &format!("/v1/products/{renamed}"),
                    &json!({"name": format!("Tea {i}")}),
                )
                .await
        }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
            "{} {}",
            reply.status,
            reply.body
        );
    }
    let stock = app.get(&format!("/v1/products/{product}")).await.body["stock"].clone();
    assert_eq!(stock, 940);
    // A PATCH still changes what it names and only that.
    let changed = app
        .patch(&format!("/v1/products/{product}"), &json!({"price": 120}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        (changed.body["price"].clone(), changed.body["stock"].clone()),
        (json!(120), json!(940))
    );
    let missing = app
        .patch("/v1/products/prd_missing", &json!({"name": "x"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
}

/// Concurrent changes of two different fields of the referral settings and of the stored-value
/// settings: both changes are kept (a change that wrote back the other field as it had read it
/// lost the other change).
async fn concurrent_settings_changes_of_different_fields_are_all_kept(app: TestApp) {
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (path, body) = match i % 4 {
                0 => ("/v1/referral-settings", json!({"velocity_per_hour": 55})),
                1 => ("/v1/referral-settings", json!({"return_window_days": 3})),
                2 => (
                    "/v1/program/stored-value",
                    json!({"spend_policy": "bonus_first"}),
                ),
                _ => ("/v1/program/stored-value", json!({"cap": 123_456})),
            };
            app.call(Method::PUT, path, Some(&body)).await
        }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let referral = app.get("/v1/referral-settings").await.body;
    assert_eq!(
        (
            referral["velocity_per_hour"].clone(),
            referral["return_window_days"].clone()
        ),
        (json!(55), json!(3)),
        "{referral}"
    );
    let stored_value = app.get("/v1/program/stored-value").await.body;
    assert_eq!(
        (
            stored_value["spend_policy"].clone(),
            stored_value["cap"].clone()
        ),
        (json!("bonus_first"), json!(123_456)),
        "{stored_value}"
    );
}

// --- item 5: erasure ---------------------------------------------------------------------------

/// A member with unique values is created with an Idempotency-Key (so its response is stored
/// for replays), changed, tagged, given signup signals; then erased. Afterwards no table holds
/// any of the values in any text or binary column, a replay no longer hands out the profile,
/// and on SQLite neither the database file nor its WAL holds their bytes.
async fn erasure_leaves_no_personal_value_in_any_table_or_file(app: TestApp) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let digits: String = unique
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .take(8)
        .collect();
    let name = format!("Zed{}", &unique[..12]);
    let phone = format!("+86139{digits}");
    let external_id = format!("ext-{unique}");
    let tag = format!("tag{}", &unique[..10]);
    let later_tag = format!("late{}", &unique[..10]);
    let attribute = format!("attr{}", &unique[..14]);
    let device = format!("dev{}", &unique[..16]);
    let ip = format!(
        "10.{}.{}.{}",
        100 + u32::from(unique.as_bytes()[0] % 100),
        100 + u32::from(unique.as_bytes()[1] % 100),
        100 + u32::from(unique.as_bytes()[2] % 100)
    );
    let values = [
        &name,
        &phone,
        &external_id,
        &tag,
        &later_tag,
        &attribute,
        &device,
        &ip,
    ];

    let create = json!({
        "external_id": external_id, "name": name, "phone": phone, "tags": [tag],
        "attributes": {"note": attribute}, "device_id": device, "ip": ip,
    });
    let created = app
        .post_idempotent("/v1/members", "erase-me-create", &create)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let tagged = app
        .send(build(
            Method::POST,
            &format!("/v1/members/{id}/tags"),
            Some(&app.key),
            Some(&json!({"add": [later_tag]})),
            Some("erase-me-tag"),
        ))
        .await;
    assert_eq!(tagged.status, StatusCode::OK, "{}", tagged.body);
    let patched = app
        .patch(
            &format!("/v1/members/{id}"),
            &json!({"birthday": "1990-05-01"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    // Before erasure the search finds the values: the scan below can see them.
    assert!(!holders(&app, &values).await.is_empty());

    let erased = app.delete(&format!("/v1/members/{id}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    assert_eq!(erased.body["status"], "erased");

    let replay = app
        .post_idempotent("/v1/members", "erase-me-create", &create)
        .await;
    assert_eq!(replay.status, StatusCode::CONFLICT, "{}", replay.body);
    assert_eq!(replay.body["error"]["code"], "member_erased");
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    let members = app.get("/v1/members").await;
    assert_eq!(
        members.body["data"].as_array().unwrap().len(),
        1,
        "not run again"
    );

    let found = holders(&app, &values).await;
    assert!(found.is_empty(), "personal values left behind: {found:?}");

    if app.backend == Backend::Sqlite {
        let path = app
            .database_url
            .strip_prefix("sqlite://")
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        for file in [path.clone(), format!("{path}-wal")] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for value in values {
                assert!(
                    !contains(&bytes, value.as_bytes()),
                    "{file} still holds {value:?}"
                );
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// (table, column, value) for every text or binary column of every table holding one of
/// `values`.
async fn holders(app: &TestApp, values: &[&String]) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for table in tables {
                let columns = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                for column in columns {
                    let column: String = column.get("name");
                    for value in values {
                        let count: i64 = sqlx::query_scalar(&format!(
                            "SELECT COUNT(*) FROM \"{table}\" \
                             WHERE instr(CAST(\"{column}\" AS BLOB), CAST(?1 AS BLOB)) > 0"
                        ))
                        .bind(value.as_str())
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                        if count > 0 {
                            found.push((table.clone(), column.clone(), value.to_string()));
                        }
                    }
                }
            }
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            let columns = sqlx::query(
                "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                 data_type::text AS data_type FROM information_schema.columns \
                 WHERE table_schema = 'public' \
                 AND data_type IN ('text', 'bytea', 'character varying', 'json', 'jsonb')",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for column in columns {
                let table: String = column.get("table_name");
                let name: String = column.get("column_name");
                let data_type: String = column.get("data_type");
                let test = if data_type == "bytea" {
                    format!("position(convert_to($1, 'UTF8') in \"{name}\") > 0")
                } else {
                    format!("strpos(\"{name}\"::text, $1) > 0")
                };
                for value in values {
                    let count: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM \"{table}\" WHERE {test}"
                    ))
                    .bind(value.as_str())
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                    if count > 0 {
                        found.push((table.clone(), name.clone(), value.to_string()));
                    }
                }
            }
        }
    }
    found
}

// --- item 7: idempotency claims of dead processes ----------------------------------------------

/// The digest the middleware computes for a JSON request built by `support::build`.
fn digest(method: &str, path: &str, body: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{method}\n{path}\n").as_bytes());
    hasher.update(body.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Leave a pending claim as a process that died would: `lease_left` before it runs out.
async fn dead_claim(app: &TestApp, key: &str, body: &Value, lease_left: SignedDuration) {
    let now = app.clock_now();
    let micros = |t: jiff::Timestamp| t.as_microsecond();
    sqlx::query(
        "INSERT INTO idempotency_key (tenant_id, key, request_digest, state, created_at, owner, \
         lease_until) VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
    )
    .bind(app.tenant_id.as_str())
    .bind(key)
    .bind(digest("POST", "/v1/members", body))
    .bind(micros(now - SignedDuration::from_secs(11)))
    .bind("deadboot:request")
    .bind(micros(now + lease_left))
    .execute(&mut *app.state.db.write_conn().await.unwrap())
    .await
    .unwrap();
}

/// A claim of a process killed 11 s ago (its lease ran out a moment ago): the retry runs, once.
async fn a_claim_whose_lease_ran_out_is_taken_over_and_runs_once(app: TestApp) {
    let body = json!({"external_id": "crashed", "name": "Crash"});
    dead_claim(&app, "k-dead", &body, SignedDuration::from_micros(-1)).await;
    let retry = app.post_idempotent("/v1/members", "k-dead", &body).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    let again = app.post_idempotent("/v1/members", "k-dead", &body).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body, retry.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    let members = app.get("/v1/members").await;
    assert_eq!(members.body["data"].as_array().unwrap().len(), 1);
}

/// A claim whose lease still runs is in progress; once it runs out, the retry runs.
async fn a_claim_within_its_lease_answers_in_progress_until_it_runs_out(app: TestApp) {
    let body = json!({"external_id": "slow", "name": "Slow"});
    dead_claim(&app, "k-live", &body, SignedDuration::from_secs(5)).await;
    let early = app.post_idempotent("/v1/members", "k-live", &body).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);
    assert_eq!(early.body["error"]["code"], "idempotency_key_in_progress");
    app.clock.advance(SignedDuration::from_secs(6));
    let later = app.post_idempotent("/v1/members", "k-live", &body).await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
}

// --- item 8: bounded imports and searches ------------------------------------------------------

async fn import(app: &TestApp, path: &str, body: Vec<u8>) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

fn row_errors(reply: &Reply) -> Vec<(u64, String)> {
    reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A 2 MB quoted field spanning lines and a row holding a NUL byte are row errors with their
/// lines; the rows around them are imported and later lines are still counted right.
async fn an_oversized_csv_row_is_a_row_error_and_the_other_rows_are_kept(app: TestApp) {
    let huge = "x".repeat(1024 * 1024);
    let mut csv = String::from("external_id,name,phone,birthday,source,tags\n");
    csv.push_str("m1,One,,,,\n");
    csv.push_str(&format!("m2,\"{huge}\n{huge}\",,,,\n"));
    csv.push_str("m3,Three,,,,\n");
    csv.push_str("m4,Fo\0ur,,,,\n");
    csv.push_str("m5,Five,,,,\n");
    let reply = import(&app, "/v1/members/import", csv.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], 3, "{}", reply.body);
    let errors = row_errors(&reply);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, 3);
    assert!(errors[0].1.contains("longer than"), "{errors:?}");
    assert_eq!(errors[1].0, 6);
    assert!(errors[1].1.contains("NUL"), "{errors:?}");
}

/// The order import bounds its rows too, in both formats.
async fn an_oversized_order_row_is_a_row_error_and_the_other_rows_are_kept(app: TestApp) {
    let huge = "9".repeat(200 * 1024);
    let csv = format!(
        "external_member_id,ordered_at,amount,currency,items\n\
         c1,2024-01-02,10.00,CNY,\n\
         c2,2024-01-02,{huge},CNY,\n\
         c3,2024-01-02,12.00,CNY,\n"
    );
    let reply = import(&app, "/v1/orders/import", csv.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], 2, "{}", reply.body);
    let errors = row_errors(&reply);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 3);
    assert!(errors[0].1.contains("longer than"), "{errors:?}");

    let cdnow =
        format!("00001 19970101 1 11.77\n00002 19970101 {huge} 1.00\n00003 19970102 2 5.00\n");
    let reply = import(&app, "/v1/orders/import?format=cdnow", cdnow.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], 2, "{}", reply.body);
    let errors = row_errors(&reply);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 2);
    assert!(errors[0].1.contains("longer than"), "{errors:?}");
}

/// A body announced beyond the import limit is refused with 413 in the JSON error shape, and
/// nothing is imported.
async fn an_import_body_over_the_limit_is_413(app: TestApp) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/members/import")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", "text/csv")
        .header("content-length", (3u64 << 30).to_string())
        .body(Body::from(
            "external_id,name,phone,birthday,source,tags\nm1,One,,,,\n",
        ))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "payload_too_large");
    let members = app.get("/v1/members").await;
    assert_eq!(members.body["data"].as_array().unwrap().len(), 0);
}

/// `q` of 49,999 characters is a 422 naming `q` (it was a 500 on SQLite); 200 are fine.
async fn a_member_search_longer_than_the_limit_is_422(app: TestApp) {
    app.member("findme").await;
    let long = "a".repeat(49_999);
    let reply = app.get(&format!("/v1/members?q={long}")).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["details"]["field"], "q");
    let ok = app.get(&format!("/v1/members?q={}", "f".repeat(200))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let found = app.get("/v1/members?q=findme").await;
    assert_eq!(found.body["data"].as_array().unwrap().len(), 1);
}
