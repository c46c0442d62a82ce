//! `/console/settings`: API keys (created here, shown once; revoked), operators, the tenant's
//! time zone; `/console/audit`: who changed what through the console. Keys and operators are
//! tenant administration: an owner's (the page shows them to everyone, read-only).

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use crate::common::auth::KeyRole;
use crate::common::ids::ApiKeyId;
use crate::console::call::{audit, audit_log};
use crate::console::i18n::Msg;
use crate::console::operators::{self, CreateError, Role};
use crate::console::session::{require_owner, Change, Refusal, Signed};
use crate::console::view::{self, at_in, csrf, instant, notice, Nav};
use crate::console::Console;
use crate::tenants;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/settings", get(page))
        .route("/console/settings/keys", post(create_key))
        .route("/console/settings/keys/{key_id}/revoke", post(revoke_key))
        .route("/console/settings/operators", post(create_operator))
        .route("/console/settings/time-zone", post(time_zone))
        .route("/console/audit", get(audit_page))
}

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

fn role_label(signed: &Signed, role: &str) -> String {
    match role {
        "owner" => signed.t(Msg::RoleOwner).to_owned(),
        "integration" => signed.t(Msg::RoleIntegration).to_owned(),
        other => other.to_owned(),
    }
}

/// The settings page, with `top` above the sections (a notice, or a key shown once).
async fn render(console: &Console, signed: &Signed, top: Markup) -> Result<Response, Refusal> {
    let tenant = &signed.operator.tenant_id;
    let keys = tenants::list_keys(&console.app.db, tenant)
        .await
        .map_err(Refusal::Failed)?;
    let mut conn = console.app.db.read().acquire().await?;
    let operators = operators::list(&mut conn, tenant).await?;
    drop(conn);
    let settings = console.get(signed, "/v1/tenant/settings").await;
    let owner = signed.operator.role == Role::Owner;
    let t = |m| signed.t(m);
    let body = html! {
        (top)
        section.panel {
            h2 { (t(Msg::TimeZone)) }
            form.inline method="post" action="/console/settings/time-zone" {
                (csrf(signed))
                input type="text" name="time_zone" value=(view::text(&settings.body["time_zone"])) required maxlength="64" disabled[!owner];
                @if owner { button type="submit" { (t(Msg::Save)) } }
            }
        }
        section.panel {
            h2 { (t(Msg::ApiKeys)) }
            table {
                thead { tr { th { "ID" } th { (t(Msg::Prefix)) } th { (t(Msg::Role)) } th.hide-narrow { (t(Msg::Created)) } th { (t(Msg::Status)) } th {} } }
                tbody {
                    @for key in &keys {
                        tr {
                            td { (key.key_id) }
                            td { code { (key.prefix) "…" } }
                            td { (role_label(signed, &key.role)) }
                            td.hide-narrow { (instant(&key.created_at, &signed.zone)) }
                            td { @if key.revoked_at.is_some() { span.badge.bad { (t(Msg::Revoked)) } } @else { span.badge.good { (t(Msg::Active)) } } }
                            td {
                                @if owner && key.revoked_at.is_none() {
                                    form.inline method="post" action=(format!("/console/settings/keys/{}/revoke", key.key_id)) data-confirm=(t(Msg::RevokeConfirm)) {
                                        (csrf(signed))
                                        button.secondary type="submit" { (t(Msg::Revoke)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if owner {
                form.inline method="post" action="/console/settings/keys" {
                    (csrf(signed))
                    select name="role" {
                        option value="integration" { (t(Msg::RoleIntegration)) }
                        option value="owner" { (t(Msg::RoleOwner)) }
                    }
                    button type="submit" { (t(Msg::CreateKey)) }
                }
            }
        }
        section.panel {
            h2 { (t(Msg::Operators)) }
            table {
                thead { tr { th { (t(Msg::Email)) } th { (t(Msg::Role)) } th.hide-narrow { (t(Msg::Created)) } } }
                tbody {
                    @for op in &operators {
                        tr {
                            td { (op.email) }
                            td { (t(op.role.label())) }
                            td.hide-narrow { (instant(&op.created_at, &signed.zone)) }
                        }
                    }
                }
            }
            @if owner {
                form.filters method="post" action="/console/settings/operators" {
                    (csrf(signed))
                    label { (t(Msg::Email)) input type="email" name="email" required maxlength="254"; }
                    label { (t(Msg::Password)) input type="password" name="password" required minlength="10" maxlength="256" autocomplete="new-password"; }
                    label { (t(Msg::Role))
                        select name="role" {
                            @for role in Role::ALL { option value=(role.as_str()) { (t(role.label())) } }
                        }
                    }
                    button type="submit" { (t(Msg::CreateOperator)) }
                }
            }
        }
    };
    Ok(view::page(signed, Nav::Settings, t(Msg::Settings), body))
}

fn notice_of(signed: &Signed, query: &Notice) -> Markup {
    html! {
        @if query.done == "saved" { (notice(true, signed.t(Msg::Saved))) }
        @if !query.error.is_empty() { (notice(false, &query.error)) }
    }
}

/// `GET /console/settings`.
async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<Notice>,
) -> Result<Response, Refusal> {
    let top = notice_of(&signed, &query);
    render(&console, &signed, top).await
}

fn back(ok: bool, message: &str) -> Response {
    let query = if ok {
        "done=saved".to_owned()
    } else {
        format!("error={}", view::encode(message))
    };
    Redirect::to(&format!("/console/settings?{query}")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    role: String,
}

/// `POST /console/settings/keys`: the new key is on this answer only (never stored, never
/// shown again).
async fn create_key(
    State(console): State<Console>,
    Change(posted): Change<KeyForm>,
) -> Result<Response, Refusal> {
    let signed = &posted.signed;
    require_owner(signed)?;
    let role = KeyRole::parse(&posted.form.role).ok_or_else(|| {
        Refusal::Page(
            StatusCode::UNPROCESSABLE_ENTITY,
            signed.lang,
            posted.form.role.clone(),
        )
    })?;
    let now = console.app.clock.now();
    let (key_id, secret) =
        tenants::create_key(&console.app.db, &signed.operator.tenant_id, role, now)
            .await
            .map_err(Refusal::Failed)?;
    audit(
        &console,
        &signed.operator,
        "CREATE_KEY",
        &format!("/console/settings/keys/{key_id}"),
        StatusCode::CREATED,
        now,
    )
    .await?;
    let top = html! {
        section.panel {
            p { (signed.t(Msg::KeyShownOnce)) }
            p.secret data-secret { (secret) }
        }
    };
    render(&console, signed, top).await
}

/// `POST /console/settings/keys/{key_id}/revoke`.
async fn revoke_key(
    State(console): State<Console>,
    Path(key_id): Path<String>,
    Change(posted): Change<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, Refusal> {
    let signed = &posted.signed;
    require_owner(signed)?;
    let not_found = || {
        Refusal::Page(
            StatusCode::NOT_FOUND,
            signed.lang,
            signed.t(Msg::NotFound).to_owned(),
        )
    };
    let id = ApiKeyId::parse(&key_id).ok_or_else(not_found)?;
    let now = console.app.clock.now();
    let revoked =
        tenants::revoke_key_of(&console.app.db, Some(&signed.operator.tenant_id), &id, now)
            .await
            .map_err(Refusal::Failed)?;
    if !revoked {
        return Err(not_found());
    }
    audit(
        &console,
        &signed.operator,
        "REVOKE_KEY",
        &format!("/console/settings/keys/{id}"),
        StatusCode::OK,
        now,
    )
    .await?;
    Ok(back(true, ""))
}

#[derive(Debug, Deserialize)]
pub struct OperatorForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

/// `POST /console/settings/operators`.
async fn create_operator(
    State(console): State<Console>,
    Change(posted): Change<OperatorForm>,
) -> Result<Response, Refusal> {
    let signed = &posted.signed;
    require_owner(signed)?;
    let Some(role) = Role::parse(&posted.form.role) else {
        return Ok(back(false, &posted.form.role));
    };
    let now = console.app.clock.now();
    let mut tx = console.app.db.begin(now).await?;
    let tenant = &signed.operator.tenant_id;
    let form = &posted.form;
    match operators::create(tx.conn(), tenant, &form.email, role, &form.password, now).await {
        Ok(created) => {
            tx.commit().await?;
            let path = format!("/console/settings/operators/{}", created.id);
            audit(
                &console,
                &signed.operator,
                "CREATE_OPERATOR",
                &path,
                StatusCode::CREATED,
                now,
            )
            .await?;
            Ok(back(true, ""))
        }
        Err(CreateError::Database(error)) => Err(error.into()),
        Err(refused) => Ok(back(false, &refused.to_string())),
    }
}

#[derive(Debug, Deserialize)]
pub struct ZoneForm {
    #[serde(default)]
    time_zone: String,
}

/// `POST /console/settings/time-zone`: through `PUT /v1/tenant/settings` (owner).
async fn time_zone(
    State(console): State<Console>,
    Change(posted): Change<ZoneForm>,
) -> Result<Response, Refusal> {
    require_owner(&posted.signed)?;
    let answer = console
        .call(
            &posted.signed,
            Method::PUT,
            "/v1/tenant/settings",
            Some(&json!({ "time_zone": posted.form.time_zone.trim() })),
            posted.form_key.as_deref(),
        )
        .await;
    Ok(back(answer.ok(), &answer.message()))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Microseconds: entries before this instant (the next page).
    before: Option<i64>,
}

/// `GET /console/audit`: newest first, 100 a page.
async fn audit_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<AuditQuery>,
) -> Result<Response, Refusal> {
    const PAGE: i64 = 100;
    let entries = audit_log(&console, &signed.operator.tenant_id, query.before, PAGE).await?;
    let t = |m| signed.t(m);
    let next = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| crate::common::time::to_micros(e.at)))
        .flatten();
    let body = html! {
        section.panel {
            table {
                thead { tr { th { (t(Msg::When)) } th { (t(Msg::Who)) } th { (t(Msg::Action)) } th { (t(Msg::Result)) } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (at_in(e.at, &signed.zone)) }
                            td { (e.operator_email) }
                            td { code { (e.action) " " (e.path) } }
                            td { span class=(if (200..400).contains(&e.status) { "badge good" } else { "badge bad" }) { (e.status) } }
                        }
                    }
                }
            }
            @if entries.is_empty() { p.muted { (t(Msg::NoneYet)) } }
            @if let Some(before) = next {
                div.pager { a href=(format!("/console/audit?before={before}")) { (t(Msg::NextPage)) } }
            }
        }
    };
    Ok(view::page(&signed, Nav::Audit, t(Msg::AuditLog), body))
}
