//! The admin console without a browser: sign-in, sessions, CSRF, roles, tenant isolation, the
//! throttle on failed sign-ins, every page answering for a signed-in operator, and the
//! overview it draws (`GET /v1/analytics/overview`).

use axum::http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{json, Value};
use shequn::common::ids::TenantId;
use shequn::console::operators::Role;

use crate::backend_tests;
use crate::console_support::{html, location, operator, Browser, OtherTenant, PASSWORD};
use crate::support::TestApp;

backend_tests!(
    a_good_sign_in_opens_a_session_that_sign_out_ends,
    console_pages_need_a_session_and_every_page_answers,
    changes_need_the_session_csrf_token_and_a_role_that_may_change,
    an_operator_sees_only_their_tenant,
    five_failed_sign_ins_refuse_the_email_for_a_while,
    tags_are_changed_and_members_erased_through_the_api,
    the_overview_counts_local_days_exactly,
    owners_create_and_revoke_keys_and_add_operators,
    the_cli_creates_operators_from_a_password_on_stdin,
);

async fn a_good_sign_in_opens_a_session_that_sign_out_ends(app: TestApp) {
    operator(&app, &app.tenant_id, "Owner@Shop.example", Role::Owner).await;
    let mut browser = Browser::new(&app);
    let wrong = browser
        .sign_in("owner@shop.example", "not-the-password1")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!browser.cookies.contains_key("shequn_session"));
    let unknown = browser.sign_in("nobody@shop.example", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        html(&wrong).contains("邮箱或密码不正确"),
        html(&unknown).contains("邮箱或密码不正确")
    );

    let good = browser.sign_in("owner@shop.example", PASSWORD).await;
    assert_eq!(good.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&good), "/console/");
    let cookie = good
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("shequn_session="))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP here: {cookie}");
    let dashboard = browser.get("/console/").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(html(&dashboard).contains("owner@shop.example"));
    let csp = dashboard.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");

    // The session is a row: it ends when the operator signs out, everywhere.
    let stolen = browser.cookies.clone();
    let token = browser.csrf().await;
    let out = browser
        .post("/console/logout", &[("csrf_token", &token)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/console/login");
    let mut replay = Browser::new(&app);
    replay.cookies = stolen;
    let after = replay.get("/console/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&after), "/console/login");

    // Idle sessions end: sign in again, then let three hours pass.
    let again = browser.sign_in("owner@shop.example", PASSWORD).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/console/").await.status, StatusCode::OK);
    app.clock.advance(SignedDuration::from_hours(3));
    assert_eq!(browser.get("/console/").await.status, StatusCode::SEE_OTHER);
}

async fn console_pages_need_a_session_and_every_page_answers(app: TestApp) {
    let mut guest = Browser::new(&app);
    for path in [
        "/console/",
        "/console/members",
        "/console/settings",
        "/console/audit",
        "/console/nowhere",
    ] {
        let reply = guest.get(path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&reply), "/console/login", "{path}");
    }
    assert_eq!(
        guest.get("/console").await.status,
        StatusCode::PERMANENT_REDIRECT
    );
    let login = guest.get("/console/login").await;
    let page = html(&login);
    for field in [
        "name=\"email\"",
        "name=\"password\"",
        "type=\"hidden\" name=\"csrf_token\"",
    ] {
        assert!(page.contains(field), "{field} in {page}");
    }
    // Assets need no session and are served from the binary.
    let css = guest
        .get(&shequn::console::assets::url("console.css"))
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));

    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let member = app.member("m-1").await;
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser
            .sign_in("viewer@shop.example", PASSWORD)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    for path in [
        "/console/".to_owned(),
        "/console/members".to_owned(),
        "/console/members?q=m-1&status=active".to_owned(),
        format!("/console/members/{member}"),
        "/console/settings".to_owned(),
        "/console/audit".to_owned(),
    ] {
        let reply = browser.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", html(&reply));
        assert!(html(&reply).starts_with("<!DOCTYPE html>"), "{path}");
    }
    let missing = browser.get("/console/nowhere").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // The language switch is remembered for the operator.
    let token = browser.csrf().await;
    let chinese = html(&browser.get("/console/members").await);
    assert!(chinese.contains("会员"));
    // The navigation groups its sections under headings and marks the page shown.
    assert!(
        chinese.contains(r#"id="nav-customers">客户</div>"#)
            && chinese.contains(r#"href="/console/members" class="active" aria-current="page""#),
        "{chinese}"
    );
    let switched = browser
        .post(
            "/console/language",
            &[("csrf_token", &token), ("lang", "en")],
        )
        .await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER);
    let english = html(&browser.get("/console/members").await);
    assert!(
        english.contains("<html lang=\"en\">") && english.contains("Members"),
        "{english}"
    );
    assert!(
        english.contains(r#"id="nav-customers">Customers</div>"#)
            && english.contains(r#"id="nav-administration">Administration</div>"#),
        "{english}"
    );
}

async fn changes_need_the_session_csrf_token_and_a_role_that_may_change(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    operator(&app, &app.tenant_id, "viewer@shop.example", Role::Viewer).await;
    let member = app.member("m-1").await;
    let tags_path = format!("/console/members/{member}/tags");

    // Sign-in itself is CSRF-protected: its token must equal the cookie it was served with.
    let mut forger = Browser::new(&app);
    let forged = forger
        .post(
            "/console/login",
            &[
                ("email", "ops@shop.example"),
                ("password", PASSWORD),
                ("csrf_token", "x"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let mut ops = Browser::new(&app);
    assert_eq!(
        ops.sign_in("ops@shop.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let missing = ops.post(&tags_path, &[("add", "vip")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = ops
        .post(&tags_path, &[("add", "vip"), ("csrf_token", "0123")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&format!("/v1/members/{member}")).await.body["tags"],
        json!([])
    );
    let token = ops.csrf().await;
    let done = ops
        .post(&tags_path, &[("add", "vip"), ("csrf_token", &token)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&format!("/v1/members/{member}")).await.body["tags"],
        json!(["vip"])
    );
    // An operator is not an owner: tenant administration is refused.
    let key = ops
        .post(
            "/console/settings/keys",
            &[("role", "owner"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(key.status, StatusCode::FORBIDDEN);

    let mut viewer = Browser::new(&app);
    assert_eq!(
        viewer.sign_in("viewer@shop.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let token = viewer.csrf().await;
    let refused = viewer
        .post(&tags_path, &[("remove", "vip"), ("csrf_token", &token)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(html(&refused).contains("只读账号不能修改数据"));
    assert_eq!(
        app.get(&format!("/v1/members/{member}")).await.body["tags"],
        json!(["vip"])
    );
    // A viewer's page offers no erasure.
    assert!(!html(&viewer.get(&format!("/console/members/{member}")).await).contains("/erase"));
}

async fn an_operator_sees_only_their_tenant(app: TestApp) {
    let them = OtherTenant::new(&app).await;
    operator(&app, &app.tenant_id, "owner@a.example", Role::Owner).await;
    let reply = them
        .post(
            "/v1/members",
            &json!({"external_id": "theirs", "name": "Theirs"}),
        )
        .await;
    let theirs = reply.body["id"].as_str().unwrap().to_owned();
    let keys = shequn::tenants::list_keys(&app.state.db, &TenantId::parse(&them.id).unwrap())
        .await
        .unwrap();
    let their_key = keys[0].key_id.to_string();

    let mut browser = Browser::new(&app);
    assert_eq!(
        browser.sign_in("owner@a.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let page = browser.get(&format!("/console/members/{theirs}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!html(&page).contains("Theirs"));
    let list = html(&browser.get("/console/members?q=theirs").await);
    assert!(!list.contains(&theirs));
    let token = browser.csrf().await;
    let tag = browser
        .post(
            &format!("/console/members/{theirs}/tags"),
            &[("add", "x"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(tag.status, StatusCode::SEE_OTHER);
    assert!(location(&tag).contains("error="), "{}", location(&tag));
    let revoke = browser
        .post(
            &format!("/console/settings/keys/{their_key}/revoke"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND);
    let still = shequn::tenants::list_keys(&app.state.db, &TenantId::parse(&them.id).unwrap())
        .await
        .unwrap();
    assert!(still[0].revoked_at.is_none());
    let settings = html(&browser.get("/console/settings").await);
    assert!(!settings.contains(&their_key));
}

async fn five_failed_sign_ins_refuse_the_email_for_a_while(app: TestApp) {
    operator(&app, &app.tenant_id, "ops@shop.example", Role::Operator).await;
    let mut browser = Browser::new(&app);
    for _ in 0..5 {
        let reply = browser
            .sign_in("ops@shop.example", "wrong-password-1")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused now, with a time to wait.
    let locked = browser.sign_in("OPS@shop.example", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.headers["retry-after"], "900");
    // Another email is not affected.
    operator(&app, &app.tenant_id, "other@shop.example", Role::Operator).await;
    let mut other = Browser::new(&app);
    assert_eq!(
        other.sign_in("other@shop.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    app.clock.advance(SignedDuration::from_mins(10));
    assert_eq!(
        browser.sign_in("ops@shop.example", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.clock.advance(SignedDuration::from_mins(6));
    assert_eq!(
        browser.sign_in("ops@shop.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

async fn tags_are_changed_and_members_erased_through_the_api(app: TestApp) {
    operator(&app, &app.tenant_id, "owner@shop.example", Role::Owner).await;
    let member = app.member("m-erase").await;
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser.sign_in("owner@shop.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let token = browser.csrf().await;
    let path = format!("/console/members/{member}/erase");
    let mismatch = browser
        .post(
            &path,
            &[("confirm_id", "mem_wrong"), ("csrf_token", &token)],
        )
        .await;
    assert!(location(&mismatch).contains("error="));
    assert_eq!(
        app.get(&format!("/v1/members/{member}")).await.body["status"],
        "active"
    );
    // The same form submitted twice changes things once (its key is the idempotency key).
    let fields = [
        ("confirm_id", member.as_str()),
        ("csrf_token", &token),
        ("form_key", "form-1"),
    ];
    let erased = browser.post(&path, &fields).await;
    assert!(
        location(&erased).contains("done=saved"),
        "{}",
        location(&erased)
    );
    let twice = browser.post(&path, &fields).await;
    assert_eq!(twice.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&format!("/v1/members/{member}")).await.body["status"],
        "erased"
    );
    let events = app.get("/v1/events?type=member.erased&limit=10").await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
    // The audit log names who did it.
    let audit = html(&browser.get("/console/audit").await);
    assert!(
        audit.contains("owner@shop.example")
            && audit.contains(&format!("DELETE /v1/members/{member}"))
    );
}

async fn the_overview_counts_local_days_exactly(app: TestApp) {
    // Clock: a Shanghai day; orders paid today and yesterday, a refund today, members joined.
    let reply = app
        .post(
            "/v1/products",
            &json!({"name": "豆浆", "sku": "SOY", "price": 1000, "stock": 100}),
        )
        .await;
    let soy = reply.body["id"].as_str().unwrap().to_owned();
    let a = app.member("a").await;
    let b = app.member("b").await;
    let now = app.clock_now();
    let paid = |at: jiff::Timestamp, member: &str, qty: i64, reference: &str| {
        json!({"member_id": member, "items": [{"product_id": soy, "qty": qty}], "source": "external",
               "paid_at": at.to_string(), "external_reference": reference})
    };
    let yesterday = now - SignedDuration::from_hours(24);
    for (at, member, qty, reference) in [
        (now, &a, 2, "r1"),
        (now, &b, 1, "r2"),
        (yesterday, &a, 3, "r3"),
    ] {
        let reply = app
            .post("/v1/orders", &paid(at, member, qty, reference))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let overview = app.get("/v1/analytics/overview?days=7").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    let o = &overview.body;
    assert_eq!(o["days"], 7);
    assert_eq!(o["daily"].as_array().unwrap().len(), 7);
    assert_eq!(o["today"]["paid_orders"], 2);
    assert_eq!(o["today"]["paid_gmv"], 3000);
    assert_eq!(o["today"]["active_members"], 2);
    assert_eq!(o["today"]["new_members"], 2);
    assert_eq!(o["period"]["paid_orders"], 3);
    assert_eq!(o["period"]["paid_gmv"], 6000);
    assert_eq!(
        o["period"]["active_members"], 2,
        "a member counts once in the period"
    );
    assert_eq!(o["daily"][5]["paid_gmv"], 3000, "yesterday");
    assert_eq!(o["top_products"][0]["units"], 6);
    assert_eq!(o["top_products"][0]["sales"], 6000);
    let sum: i64 = o["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["paid_gmv"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 6000);
    for bad in ["0", "367"] {
        let reply = app.get(&format!("/v1/analytics/overview?days={bad}")).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["details"]["field"], "days");
    }
    let reply = app.get("/v1/analytics/overview?days=x").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    // Another tenant sees none of it.
    let theirs = OtherTenant::new(&app)
        .await
        .get("/v1/analytics/overview")
        .await;
    assert_eq!(theirs.body["period"]["paid_orders"], 0);
}

async fn owners_create_and_revoke_keys_and_add_operators(app: TestApp) {
    operator(&app, &app.tenant_id, "owner@shop.example", Role::Owner).await;
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser.sign_in("owner@shop.example", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let token = browser.csrf().await;
    let created = browser
        .post(
            "/console/settings/keys",
            &[("role", "integration"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let page = html(&created);
    let at = page.find("sq_").expect("the new key is shown once");
    let secret = &page[at..at + 67];
    let works = app
        .send(crate::support::build(
            Method::GET,
            "/v1/members",
            Some(secret),
            None,
            None,
        ))
        .await;
    assert_eq!(works.status, StatusCode::OK);
    assert!(
        !html(&browser.get("/console/settings").await).contains(secret),
        "shown only once"
    );

    let weak = browser
        .post(
            "/console/settings/operators",
            &[
                ("email", "new@shop.example"),
                ("password", "short"),
                ("role", "viewer"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert!(location(&weak).contains("error="));
    let added = browser
        .post(
            "/console/settings/operators",
            &[
                ("email", "new@shop.example"),
                ("password", "long-enough-1"),
                ("role", "viewer"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert!(
        location(&added).contains("done=saved"),
        "{}",
        location(&added)
    );
    let duplicate = browser
        .post(
            "/console/settings/operators",
            &[
                ("email", "NEW@shop.example"),
                ("password", "long-enough-1"),
                ("role", "viewer"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert!(location(&duplicate).contains("error="));
    let mut newcomer = Browser::new(&app);
    assert_eq!(
        newcomer
            .sign_in("new@shop.example", "long-enough-1")
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    let zone = browser
        .post(
            "/console/settings/time-zone",
            &[("time_zone", "Europe/Berlin"), ("csrf_token", &token)],
        )
        .await;
    assert!(location(&zone).contains("done=saved"));
    assert_eq!(
        app.get("/v1/tenant/settings").await.body["time_zone"],
        "Europe/Berlin"
    );
    let bad_zone = browser
        .post(
            "/console/settings/time-zone",
            &[("time_zone", "Mars/Base"), ("csrf_token", &token)],
        )
        .await;
    assert!(location(&bad_zone).contains("error="));
}

/// `shequn operators create … --password-stdin` with `stdin`: (exit code, stdout, stderr).
fn create_operator_cli(
    app: &TestApp,
    email: &str,
    role: &str,
    stdin: &str,
) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shequn"))
        .args([
            "operators",
            "create",
            "--tenant",
            &app.tenant_id,
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ])
        .env("SHEQUN_DATABASE_URL", &app.database_url)
        .env("SHEQUN_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shequn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn the_cli_creates_operators_from_a_password_on_stdin(app: TestApp) {
    // The first line, without its newline, is the password; what follows is ignored.
    let (code, out, err) = create_operator_cli(
        &app,
        "Cli@Shop.example",
        "viewer",
        "cli-password-9\nignored\n",
    );
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["email"], "cli@shop.example");
    assert_eq!(created["role"], "viewer");
    assert_eq!(created["tenant_id"], app.tenant_id.as_str());
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser
            .sign_in("cli@shop.example", "cli-password-9")
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    let (code, _, err) =
        create_operator_cli(&app, "cli@shop.example", "owner", "another-password-1\n");
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = create_operator_cli(&app, "weak@shop.example", "owner", "short\n");
    assert_ne!(code, 0);
    assert!(err.contains("too weak"), "{err}");
    let (code, _, err) =
        create_operator_cli(&app, "role@shop.example", "admin", "cli-password-9\n");
    assert_ne!(code, 0);
    assert!(err.contains("--role"), "{err}");
}
