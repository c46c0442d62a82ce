//! `shequn bench console-pages`: the server time of every console page on an existing
//! database (the demo's, say): it signs in through the sign-in form as a given operator, finds
//! the pages the navigation offers and the first detail page linked from each list, requests
//! each `rounds` times through the whole router in-process (no network, so the figure is the
//! server's own time: middleware, session, the in-process `/v1` calls, rendering), and prints
//! p50 / p99 / max per page.
//!
//! This is a measurement rather than a comparison: a page has no naive twin. It changes
//! nothing but the operator's session row.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::percentile;
use crate::common::clock::SystemClock;
use crate::common::db::Db;
use crate::server::{app, AppState};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub email: String,
    pub password: String,
    /// Requests per page.
    pub rounds: usize,
}

/// A signed-in client of the in-process router.
struct Client {
    router: Router,
    cookies: BTreeMap<String, String>,
}

impl Client {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
    ) -> anyhow::Result<(StatusCode, String, Option<String>)> {
        let mut builder = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let line: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            builder = builder.header(header::COOKIE, line.join("; "));
        }
        let request = match form {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))?,
            None => builder.body(Body::empty())?,
        };
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str()?;
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            location,
        ))
    }
}

/// The value of the first `attribute="…"` after `marker` in `page`.
fn after<'a>(page: &'a str, marker: &str, attribute: &str) -> Option<&'a str> {
    let at = page.find(marker)? + marker.len();
    let rest = &page[at..];
    let start = rest.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    rest[start..].split('"').next()
}

/// Every `href="/console/…"` in `part` of a page.
fn console_links(part: &str) -> Vec<String> {
    part.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with("/console/") && !href.starts_with("/console/assets/"))
        .map(|href| href.replace("&amp;", "&"))
        .collect()
}

/// Sign in, find the pages, time them.
pub async fn run(db: Db, options: Options) -> anyhow::Result<Value> {
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let state = AppState::new(db, Arc::new(SystemClock));
    let mut client = Client {
        router: app(state),
        cookies: BTreeMap::new(),
    };
    let (_, form, _) = client.send(Method::GET, "/console/login", None).await?;
    let csrf = after(&form, "name=\"csrf_token\"", "value")
        .context("no csrf_token on the sign-in form")?
        .to_owned();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("email", &options.email)
        .append_pair("password", &options.password)
        .append_pair("csrf_token", &csrf)
        .finish();
    let (status, _, location) = client
        .send(Method::POST, "/console/login", Some(body))
        .await?;
    if status != StatusCode::SEE_OTHER || location.as_deref() != Some("/console/") {
        bail!("sign-in as {} refused ({status})", options.email);
    }

    // The navigation's sections, then the first detail page each list links to.
    let (_, dashboard, _) = client.send(Method::GET, "/console/", None).await?;
    let nav = dashboard
        .split("<nav>")
        .nth(1)
        .and_then(|rest| rest.split("</nav>").next())
        .unwrap_or_default();
    let mut pages: Vec<String> = console_links(nav);
    for section in pages.clone() {
        let (_, page, _) = client.send(Method::GET, &section, None).await?;
        let main = page.split("<main>").nth(1).unwrap_or_default();
        let detail = console_links(main)
            .into_iter()
            .find(|href| href.starts_with(&format!("{section}/")) && !href.contains('?'));
        if let Some(detail) = detail {
            pages.push(detail);
        }
    }

    let mut measured = Vec::new();
    for path in &pages {
        let mut micros = Vec::with_capacity(options.rounds);
        let mut statuses = BTreeMap::<u16, usize>::new();
        for _ in 0..options.rounds {
            let started = Instant::now();
            let (status, _, _) = client.send(Method::GET, path, None).await?;
            micros.push(started.elapsed().as_micros() as u64);
            *statuses.entry(status.as_u16()).or_default() += 1;
        }
        micros.sort_unstable();
        measured.push(json!({
            "path": path,
            "p50_ms": percentile(&micros, 50.0),
            "p99_ms": percentile(&micros, 99.0),
            "max_ms": micros.last().copied().unwrap_or_default() as f64 / 1000.0,
            "statuses": statuses,
        }));
    }
    let all_ok = measured.iter().all(|page| {
        page["statuses"]
            .as_object()
            .is_some_and(|s| s.keys().all(|k| k == "200"))
    });
    Ok(json!({
        "benchmark": "console-pages",
        "rounds": options.rounds,
        "pages": measured,
        "all_ok": all_ok,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_off_a_page_without_assets() {
        let nav = r#"<a href="/console/">x</a><a href="/console/members?q=a&amp;b=c">y</a><script src="/console/assets/1/x.js"></script><a href="/docs">d</a>"#;
        assert_eq!(
            console_links(nav),
            vec!["/console/", "/console/members?q=a&b=c"]
        );
        assert_eq!(
            after(
                r#"<input name="csrf_token" value="t1">"#,
                "name=\"csrf_token\"",
                "value"
            ),
            Some("t1")
        );
    }
}
