//! The command line, run as the real binary against both back ends.

use serde_json::Value;

use crate::backend_tests;
use crate::support::{shequn, TestApp};

backend_tests!(
    cli_manages_tenants_keys_and_imports,
    ledger_verify_exits_nonzero_on_a_tampered_balance
);

fn json_line(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("a line of output");
    serde_json::from_str(line).expect("one JSON line")
}

async fn cli_manages_tenants_keys_and_imports(app: TestApp) {
    let url = app.database_url.clone();
    let (code, out, err) = shequn(&url, &["migrate"]);
    assert_eq!(code, 0, "{err}");
    let (code, out2, err) = shequn(&url, &["tenants", "create", "Acme 社群"]);
    assert_eq!(code, 0, "{err}");
    let created = json_line(&out2);
    let tenant = created["tenant_id"].as_str().unwrap().to_owned();
    let key = created["api_key"].as_str().unwrap();
    assert!(
        tenant.starts_with("ten_") && key.starts_with("sq_") && key.len() >= 64,
        "{out}"
    );

    let (code, out, _) = shequn(&url, &["keys", "create", "--tenant", &tenant]);
    assert_eq!(code, 0);
    let second = json_line(&out);
    let key_id = second["key_id"].as_str().unwrap().to_owned();
    let (_, out, _) = shequn(&url, &["keys", "list", "--tenant", &tenant]);
    let listed = json_line(&out);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert!(
        !out.contains(second["api_key"].as_str().unwrap()),
        "secrets are never listed"
    );
    let (code, _, _) = shequn(&url, &["keys", "revoke", &key_id]);
    assert_eq!(code, 0);
    let (code, _, err) = shequn(&url, &["keys", "revoke", &key_id]);
    assert_ne!(code, 0, "revoking twice fails");
    assert!(err.contains("no live key"));
    let (_, out, _) = shequn(&url, &["keys", "list", "--tenant", &tenant]);
    let revoked = json_line(&out)["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["revoked_at"].is_null())
        .count();
    assert_eq!(revoked, 1);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("members.csv");
    std::fs::write(
        &file,
        "external_id,name,phone,birthday,source,tags\nc1,A,+8613800000000,,store,vip\nc2,B,bad,,,\n",
    )
    .unwrap();
    let (code, out, err) = shequn(
        &url,
        &[
            "members",
            "import",
            "--tenant",
            &tenant,
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let report = json_line(&out);
    assert_eq!(report["created"], 1);
    assert_eq!(report["errors"][0]["line"], 3);

    let (code, _, err) = shequn(&url, &["keys", "list", "--tenant", "nonsense"]);
    assert_ne!(code, 0);
    assert!(err.contains("not a tenant id"));
}

async fn ledger_verify_exits_nonzero_on_a_tampered_balance(app: TestApp) {
    let member = app.member("v1").await;
    let reply = app
        .post(
            "/v1/ledger/transfers",
            &serde_json::json!({"transfers": [{"id": "g", "from": "system:issuance",
                "to": format!("member:{member}"), "asset": "points", "amount": 10, "code": "grant"}]}),
        )
        .await;
    assert_eq!(reply.body["results"][0]["status"], "created");
    let url = app.database_url.clone();
    let (code, out, err) = shequn(&url, &["ledger", "verify", "--tenant", &app.tenant_id]);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(json_line(&out)["ok"], true);

    // A points column drifting from its history is exactly what verify must catch.
    sqlx::query("UPDATE ledger_account SET credits_posted = credits_posted + 5 WHERE address LIKE 'member:%'")
        .execute(&mut *app.state.db.write_conn().await.unwrap())
        .await
        .unwrap();
    let (code, out, _) = shequn(&url, &["ledger", "verify", "--tenant", &app.tenant_id]);
    assert_eq!(code, 1);
    let report = json_line(&out);
    assert_eq!(report["ok"], false);
    let kinds: Vec<&str> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"balance_differs_from_transfers"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"asset_does_not_sum_to_zero"), "{kinds:?}");
}
