//! What every console test uses: operators made straight in the database, another tenant to
//! keep apart (its data made with its API key, its owner signed in), a cookie-jar "browser"
//! over the test router (sign-in, GET, form POST), and readers for the answers (page text,
//! hidden inputs, the redirect's location).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use shequn::common::ids::TenantId;
use shequn::console::operators::{self, Role};

use crate::support::{build, Reply, TestApp};

/// The password of every test operator.
pub const PASSWORD: &str = "soymilk-2026";

/// Add an operator to `tenant` with [`PASSWORD`].
pub async fn operator(app: &TestApp, tenant: &str, email: &str, role: Role) {
    let mut tx = app.state.begin().await.unwrap();
    let tenant = TenantId::parse(tenant).unwrap();
    operators::create(tx.conn(), &tenant, email, role, PASSWORD, app.clock_now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Another tenant beside the test's own, for checking that the console keeps them apart.
pub struct OtherTenant<'a> {
    app: &'a TestApp,
    pub id: String,
    /// Its API key.
    pub key: String,
}

impl<'a> OtherTenant<'a> {
    /// The owner [`OtherTenant::owner`] adds.
    pub const OWNER: &'static str = "owner@other.example";

    /// A new tenant with its API key.
    pub async fn new(app: &'a TestApp) -> OtherTenant<'a> {
        let (id, key) = app.other_tenant().await;
        OtherTenant { app, id, key }
    }

    /// Call `/v1` with the other tenant's key.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.app
            .send(build(method, path, Some(&self.key), body, None))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Add the tenant's owner, [`OtherTenant::OWNER`], and sign them in.
    pub async fn owner(&self) -> Browser<'a> {
        operator(self.app, &self.id, Self::OWNER, Role::Owner).await;
        Browser::signed_in(self.app, Self::OWNER).await
    }
}

/// A cookie jar over the test router.
pub struct Browser<'a> {
    app: &'a TestApp,
    pub cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    /// A browser with no cookies.
    pub fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            cookies: BTreeMap::new(),
        }
    }

    /// A browser signed in as `email` (with [`PASSWORD`]).
    pub async fn signed_in(app: &'a TestApp, email: &str) -> Browser<'a> {
        let mut browser = Browser::new(app);
        let reply = browser.sign_in(email, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", html(&reply));
        browser
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let line: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            builder = builder.header("cookie", line.join("; "));
        }
        let request = match form {
            Some(fields) => {
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish();
                builder
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap()
            }
            None => builder.body(Body::empty()).unwrap(),
        };
        let reply = self.app.send(request).await;
        for value in reply.headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        reply
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.send(Method::POST, path, Some(fields)).await
    }

    /// Sign in through the form; the answer to the POST.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Reply {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let token = hidden(&html(&form), "csrf_token");
        self.post(
            "/console/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf_token", &token),
            ],
        )
        .await
    }

    /// The session's CSRF token, read off a page's forms.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/console/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
        hidden(&html(&page), "csrf_token")
    }
}

/// The answer's body as text.
pub fn html(reply: &Reply) -> String {
    match &reply.body {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The value of the first hidden input named `name`.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// Where a redirect points ("" for none).
pub fn location(reply: &Reply) -> &str {
    reply
        .headers
        .get("location")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}
