//! Signing in and out, and the language switch.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use crate::console::call::audit;
use crate::console::i18n::{Lang, Message as _, Msg};
use crate::console::operators::{self, normalise_email};
use crate::console::session::{
    self, cookie, random_token, same_secret, set_cookie, with_cookie, Posted, Refusal, Signed,
    SESSION_COOKIE, SIGN_IN_COOKIE,
};
use crate::console::view;
use crate::console::Console;

#[derive(Debug, Deserialize)]
pub struct FormQuery {
    lang: Option<String>,
}

/// The language of a page shown before sign-in: `?lang=`, else the browser's first choice if
/// it is English, else Chinese.
fn guest_lang(query: Option<&str>, headers: &HeaderMap) -> Lang {
    query.and_then(Lang::parse).unwrap_or_else(|| {
        let accept = headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.trim_start().to_ascii_lowercase().starts_with("en") {
            Lang::En
        } else {
            Lang::ZhCn
        }
    })
}

fn render(lang: Lang, token: &str, email: &str, problem: Option<&str>) -> maud::Markup {
    let other = if lang == Lang::En {
        Lang::ZhCn
    } else {
        Lang::En
    };
    let body = html! {
        @if let Some(problem) = problem {
            p.error role="alert" { (problem) }
        }
        form.stack method="post" action="/console/login" {
            input type="hidden" name="csrf_token" value=(token);
            input type="hidden" name="lang" value=(lang.code());
            label { (Msg::Email.text(lang))
                input type="email" name="email" value=(email) required autocomplete="username" autofocus;
            }
            label { (Msg::Password.text(lang))
                input type="password" name="password" required autocomplete="current-password";
            }
            button type="submit" { (Msg::SignIn.text(lang)) }
        }
        p.muted { a href=(format!("/console/login?lang={}", other.code())) { (other.name()) } }
    };
    view::bare(lang, Msg::SignIn.text(lang), body)
}

/// A sign-in page with a fresh double-submit token.
fn sign_in_page(
    status: StatusCode,
    headers: &HeaderMap,
    lang: Lang,
    email: &str,
    problem: Option<&str>,
) -> Response {
    let token = random_token();
    let page = (status, render(lang, &token, email, problem)).into_response();
    with_cookie(page, set_cookie(headers, SIGN_IN_COOKIE, &token, None))
}

/// `GET /console/login`.
pub async fn form(
    State(console): State<Console>,
    Query(query): Query<FormQuery>,
    headers: HeaderMap,
    signed: Result<Signed, Refusal>,
) -> Response {
    let _ = console;
    if signed.is_ok() {
        return Redirect::to("/console/").into_response();
    }
    let lang = guest_lang(query.lang.as_deref(), &headers);
    sign_in_page(StatusCode::OK, &headers, lang, "", None)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    lang: Option<String>,
}

/// `POST /console/login`: 303 to the dashboard with a session cookie, or the form again.
pub async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, Refusal> {
    let lang = guest_lang(form.lang.as_deref(), &headers);
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf_token, &expected) {
        let problem = Msg::CsrfRefused.text(lang);
        return Ok(sign_in_page(
            StatusCode::FORBIDDEN,
            &headers,
            lang,
            "",
            Some(problem),
        ));
    }
    let now = console.app.clock.now();
    let email = normalise_email(&form.email).unwrap_or_else(|| form.email.trim().to_lowercase());
    let mut conn = console.app.db.read().acquire().await?;
    if let Some(until) = session::locked_until(&mut conn, &email, now).await? {
        let minutes = ((until.duration_since(now).as_secs() + 59) / 60).max(1);
        let problem = Msg::TooManyAttempts.fill(lang, &[&minutes.to_string()]);
        let mut page = sign_in_page(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            lang,
            &email,
            Some(&problem),
        );
        page.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from(minutes * 60));
        return Ok(page);
    }
    let found = operators::by_email(&mut conn, &email).await?;
    drop(conn);
    let password = form.password;
    let stored = found
        .as_ref()
        .map(|(_, hash)| hash.clone())
        .unwrap_or_else(|| operators::decoy_hash().to_owned());
    let matches = tokio::task::spawn_blocking(move || operators::verify(&password, &stored))
        .await
        .unwrap_or(false);
    let Some((operator, _)) = found.filter(|_| matches) else {
        session::record_failure(&console, &email, now).await?;
        let problem = Msg::BadCredentials.text(lang);
        return Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            &headers,
            lang,
            &email,
            Some(problem),
        ));
    };
    let token = session::start(&console, &operator, now).await?;
    audit(
        &console,
        &operator,
        "SIGN_IN",
        "/console/login",
        StatusCode::SEE_OTHER,
        now,
    )
    .await?;
    let response = Redirect::to("/console/").into_response();
    let response = with_cookie(response, set_cookie(&headers, SESSION_COOKIE, &token, None));
    Ok(with_cookie(
        response,
        set_cookie(&headers, SIGN_IN_COOKIE, "", Some(0)),
    ))
}

/// `POST /console/logout`: the session row is deleted and the cookie removed.
pub async fn sign_out(
    State(console): State<Console>,
    headers: HeaderMap,
    posted: Posted<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, Refusal> {
    session::end(&console, &headers).await?;
    let now = console.app.clock.now();
    audit(
        &console,
        &posted.signed.operator,
        "SIGN_OUT",
        "/console/logout",
        StatusCode::SEE_OTHER,
        now,
    )
    .await?;
    let response = Redirect::to("/console/login").into_response();
    Ok(with_cookie(
        response,
        set_cookie(&headers, SESSION_COOKIE, "", Some(0)),
    ))
}

#[derive(Debug, Deserialize)]
pub struct LanguageForm {
    lang: String,
}

/// `POST /console/language`: remember the operator's language, back to where they were.
pub async fn language(
    State(console): State<Console>,
    headers: HeaderMap,
    posted: Posted<LanguageForm>,
) -> Result<Response, Refusal> {
    let signed = &posted.signed;
    let lang = Lang::parse(&posted.form.lang).ok_or_else(|| {
        Refusal::Page(
            StatusCode::UNPROCESSABLE_ENTITY,
            signed.lang,
            posted.form.lang.clone(),
        )
    })?;
    let mut tx = console.app.db.begin(console.app.clock.now()).await?;
    operators::set_language(
        tx.conn(),
        &signed.operator.tenant_id,
        &signed.operator.id,
        lang,
    )
    .await?;
    tx.commit().await?;
    // Back to the page the switch was on, if it was a console page.
    let back = headers
        .get("referer")
        .and_then(|v| v.to_str().ok())
        .and_then(|referer| referer.find("/console").map(|at| referer[at..].to_owned()))
        .filter(|path| !path.contains("//") && !path.starts_with("/console/login"))
        .unwrap_or_else(|| "/console/".to_owned());
    Ok(Redirect::to(&back).into_response())
}
