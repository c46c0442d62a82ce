//! The message gate (consent, frequency cap, quiet hours) and the messages it let through.
//!
//! shequn does not talk to WeChat, WeCom or SMS: a message that passes the gate becomes a
//! `message.requested` event for the merchant's own channel gateway (through a webhook or the
//! event export), and the gateway reports back with `POST /v1/messages/{id}/status`.
//!
//! # The gate
//!
//! [`gate`] is a pure function of the member, the tenant's [`MessagingSettings`], the marketing
//! messages the member was sent in the last 7 days and the instant:
//!
//! 1. an erased member gets nothing (`erased`), whatever the category;
//! 2. a transactional message (an order or pickup notice) passes;
//! 3. a marketing message to a member without marketing consent is suppressed (`no_consent`);
//! 4. beyond `max_marketing_per_member_per_7_days` (a rolling 7 × 24 h window) it is suppressed
//!    (`frequency_cap`);
//! 5. inside quiet hours (tenant-local `[start, end)`, across midnight when start > end) it is
//!    deferred to the end of the quiet hours, not dropped.
//!
//! A deferred message is a row with a scheduler job at its release time (DESIGN rule 7); at
//! release it goes through the gate again (consent may have been withdrawn, the cap reached).
//!
//! # The cap is exact under concurrency
//!
//! The gate runs inside the transaction that writes the message, after taking the member's row
//! lock on PostgreSQL (`SELECT … FOR UPDATE`); SQLite has one writer. Two concurrent sends to
//! one member are therefore counted one after the other.

use axum::extract::State;
use axum::http::StatusCode;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::{double_option, Json};
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::scheduler::{self, Job, NewJob};
use crate::common::sql::{Backend, Sql};
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::members::model::STATUS_ACTIVE;
use crate::AppState;

crate::typed_id!(MessageId, "msg");

/// The scheduler job that releases a deferred message.
pub const RELEASE_JOB: &str = "message.release";
/// The cap's window.
pub const CAP_WINDOW_DAYS: i64 = 7;
/// Largest cap.
pub const MAX_CAP: i64 = 1_000;
/// Longest channel and template name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest `variables` object, in bytes of JSON.
pub const MAX_VARIABLES_BYTES: usize = 4_096;
/// Largest page of a member's messages.
pub const MAX_PAGE: i64 = 200;

// --- settings ------------------------------------------------------------------------------

/// Quiet hours, tenant-local `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

/// The anti-spam rules of a tenant (`GET/PUT /v1/messaging-settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    /// Most marketing messages one member is sent in any 7 × 24 hours (default 2; 0 sends
    /// none).
    pub max_marketing_per_member_per_7_days: i64,
    /// Marketing messages inside these hours wait for their end (default 21:00 to 08:00);
    /// null for none.
    pub quiet_hours: Option<QuietHours>,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self {
            max_marketing_per_member_per_7_days: 2,
            quiet_hours: Some(QuietHours {
                start: "21:00".into(),
                end: "08:00".into(),
            }),
        }
    }
}

/// Quiet hours as times of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub start: Time,
    pub end: Time,
}

fn hh_mm(field: &str, text: &str) -> ApiResult<Time> {
    let bad = || ApiError::validation(field, "must be a time of day HH:MM (00:00 to 23:59)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = h.parse().map_err(|_| bad())?;
    let minute: i8 = m.parse().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

impl MessagingSettings {
    /// Check the settings; the quiet hours as times.
    pub fn validate(&self) -> ApiResult<Option<Quiet>> {
        if !(0..=MAX_CAP).contains(&self.max_marketing_per_member_per_7_days) {
            return Err(ApiError::validation(
                "max_marketing_per_member_per_7_days",
                format!("must be 0 to {MAX_CAP}"),
            ));
        }
        let Some(quiet) = &self.quiet_hours else {
            return Ok(None);
        };
        let start = hh_mm("quiet_hours.start", &quiet.start)?;
        let end = hh_mm("quiet_hours.end", &quiet.end)?;
        if start == end {
            return Err(ApiError::validation(
                "quiet_hours.end",
                "must differ from start (null turns quiet hours off)",
            ));
        }
        Ok(Some(Quiet { start, end }))
    }
}

pub async fn load_settings(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
) -> ApiResult<MessagingSettings> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT settings FROM messaging_setting WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(conn)
            .await?;
    match text {
        Some(text) => serde_json::from_str(&text).map_err(ApiError::internal),
        None => Ok(MessagingSettings::default()),
    }
}

// --- the gate (pure) -----------------------------------------------------------------------

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Promotions: consent, the cap and quiet hours apply.
    Marketing,
    /// Order and pickup notices: they pass the cap and quiet hours (never to an erased member).
    Transactional,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Marketing => "marketing",
            Category::Transactional => "transactional",
        }
    }
}

/// Why a message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoConsent,
    FrequencyCap,
    Erased,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoConsent => "no_consent",
            Reason::FrequencyCap => "frequency_cap",
            Reason::Erased => "erased",
        }
    }
}

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Suppress(Reason),
    /// Wait until this instant (the end of the quiet hours).
    Defer(Timestamp),
}

/// The member as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    pub active: bool,
    pub consent_marketing: bool,
    /// Marketing messages requested for the member in the last 7 × 24 hours.
    pub sent_in_window: i64,
}

/// Decide a message (see the module doc for the order of the rules).
pub fn gate(
    category: Category,
    recipient: Recipient,
    cap: i64,
    quiet: Option<Quiet>,
    now: Timestamp,
    zone: &TimeZone,
) -> Verdict {
    if !recipient.active {
        return Verdict::Suppress(Reason::Erased);
    }
    if category == Category::Transactional {
        return Verdict::Send;
    }
    if !recipient.consent_marketing {
        return Verdict::Suppress(Reason::NoConsent);
    }
    if recipient.sent_in_window >= cap {
        return Verdict::Suppress(Reason::FrequencyCap);
    }
    match quiet.and_then(|q| quiet_until(q, now, zone)) {
        Some(until) => Verdict::Defer(until),
        None => Verdict::Send,
    }
}

/// When `now` is inside the quiet hours, the instant they end.
pub fn quiet_until(quiet: Quiet, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let local = now.to_zoned(zone.clone());
    let time = local.time();
    let inside = if quiet.start < quiet.end {
        quiet.start <= time && time < quiet.end
    } else {
        time >= quiet.start || time < quiet.end
    };
    if !inside {
        return None;
    }
    let mut date = local.date();
    if time >= quiet.end {
        date = date.checked_add(1.day()).ok()?;
    }
    // A wall time skipped by a daylight-saving change resolves to the instant after the gap.
    date.to_datetime(quiet.end)
        .to_zoned(zone.clone())
        .ok()
        .map(|z| z.timestamp())
}

// --- messages ------------------------------------------------------------------------------

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    #[schema(value_type = String)]
    pub id: MessageId,
    #[schema(value_type = String)]
    pub member_id: MemberId,
    pub channel: String,
    pub category: Category,
    pub template: String,
    #[schema(value_type = Object)]
    pub variables: Value,
    /// `requested` (handed to the gateway), `deferred` (quiet hours; see `deliver_at`),
    /// `suppressed` (see `reason`), then as the gateway reports: `sent`, `failed`, `clicked`.
    pub status: String,
    /// `no_consent`, `frequency_cap` or `erased` when suppressed.
    pub reason: Option<String>,
    /// When a deferred message goes through the gate again.
    pub deliver_at: Option<String>,
    /// What asked for it: `api`, or an automation or broadcast id.
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, member_id, channel, category, template, variables, status, reason, \
    deliver_at, source, created_at, updated_at";

fn message(row: &AnyRow) -> ApiResult<Message> {
    let category: String = row.try_get("category")?;
    let variables: String = row.try_get("variables")?;
    let deliver_at: Option<i64> = row.try_get("deliver_at")?;
    Ok(Message {
        id: MessageId::from_db(row.try_get("id")?),
        member_id: MemberId::from_db(row.try_get("member_id")?),
        channel: row.try_get("channel")?,
        category: if category == "transactional" {
            Category::Transactional
        } else {
            Category::Marketing
        },
        template: row.try_get("template")?,
        variables: serde_json::from_str(&variables).unwrap_or(Value::Null),
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        deliver_at: deliver_at.map(micros_to_rfc3339),
        source: row.try_get("source")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
    })
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub member_id: MemberId,
    pub channel: String,
    pub category: Category,
    pub template: String,
    pub variables: Value,
    /// `api`, an automation id or a broadcast id.
    pub source: String,
}

/// Statuses that count toward the cap: handed to the gateway and not reported failed.
const COUNTED: &str = "('requested', 'sent', 'clicked')";

/// The member's state for the gate, with the member's row locked on PostgreSQL; `None` when
/// the member does not exist in the tenant.
async fn recipient(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    now: Timestamp,
) -> ApiResult<Option<Recipient>> {
    let lock = if tx.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT status, consent_marketing FROM member WHERE tenant_id = $1 AND id = $2{lock}"
    ))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let consent: i64 = row.try_get("consent_marketing")?;
    let since = to_micros(now) - CAP_WINDOW_DAYS * 24 * 3600 * 1_000_000;
    let sent: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM message WHERE tenant_id = $1 AND member_id = $2 \
         AND category = 'marketing' AND status IN {COUNTED} AND requested_at > $3"
    ))
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .bind(since)
    .fetch_one(tx.conn())
    .await?;
    Ok(Some(Recipient {
        active: status == STATUS_ACTIVE,
        consent_marketing: consent != 0,
        sent_in_window: sent,
    }))
}

/// The gate's view of several members at `now`, without locks (for a dry run): members not
/// in the tenant are absent.
pub async fn recipients(
    pool: &sqlx::AnyPool,
    tenant_id: &TenantId,
    ids: &[String],
    now: Timestamp,
) -> ApiResult<std::collections::HashMap<String, Recipient>> {
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let list = |sql: &mut Sql, column: &str| {
        sql.push(&format!(" AND {column} IN ("));
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.as_str());
        }
        sql.push(")");
    };
    let mut sql = Sql::new(
        "SELECT id AS member_id, status, consent_marketing FROM member WHERE tenant_id = ",
    );
    sql.bind(tenant_id.as_str());
    list(&mut sql, "id");
    for row in sql.query().fetch_all(pool).await? {
        let status: String = row.try_get("status")?;
        let consent: i64 = row.try_get("consent_marketing")?;
        out.insert(
            row.try_get::<String, _>("member_id")?,
            Recipient {
                active: status == STATUS_ACTIVE,
                consent_marketing: consent != 0,
                sent_in_window: 0,
            },
        );
    }
    let since = to_micros(now) - CAP_WINDOW_DAYS * 24 * 3600 * 1_000_000;
    let mut sql = Sql::new(&format!(
        "SELECT member_id, COUNT(*) AS n FROM message WHERE category = 'marketing' \
         AND status IN {COUNTED} AND requested_at > "
    ));
    sql.bind(since)
        .push(" AND tenant_id = ")
        .bind(tenant_id.as_str());
    list(&mut sql, "member_id");
    sql.push(" GROUP BY member_id");
    for row in sql.query().fetch_all(pool).await? {
        if let Some(r) = out.get_mut(&row.try_get::<String, _>("member_id")?) {
            r.sent_in_window = row.try_get("n")?;
        }
    }
    Ok(out)
}

fn requested_event(tenant_id: &TenantId, id: &MessageId, out: &Outgoing) -> NewEvent {
    let mut data = json!({
        "message_id": id, "member_id": out.member_id, "channel": out.channel,
        "category": out.category.as_str(), "template": out.template, "variables": out.variables,
    });
    if let Some(kind) = source_kind(&out.source) {
        data[kind] = json!(out.source);
    }
    NewEvent::new(tenant_id, "message.requested", Some(id.as_str()), data)
}

/// `automation_id` or `broadcast_id` for a source that is one.
fn source_kind(source: &str) -> Option<&'static str> {
    if source.starts_with("aut_") {
        Some("automation_id")
    } else if source.starts_with("bro_") {
        Some("broadcast_id")
    } else {
        None
    }
}

/// Put a message through the gate inside `tx` and write it: requested (with its event),
/// deferred (with its release job) or suppressed. `None` when the member does not exist.
pub async fn send(
    tx: &mut Tx,
    tenant_id: &TenantId,
    zone: &TimeZone,
    out: &Outgoing,
) -> ApiResult<Option<Message>> {
    let now = tx.now();
    let Some(recipient) = recipient(tx, tenant_id, &out.member_id, now).await? else {
        return Ok(None);
    };
    let settings = load_settings(tx.conn(), tenant_id).await?;
    let quiet = settings.validate()?;
    let verdict = gate(
        out.category,
        recipient,
        settings.max_marketing_per_member_per_7_days,
        quiet,
        now,
        zone,
    );
    let id = MessageId::generate();
    let at = to_micros(now);
    let (status, reason, deliver_at, requested_at) = match verdict {
        Verdict::Send => ("requested", None, None, Some(at)),
        Verdict::Suppress(reason) => ("suppressed", Some(reason.as_str()), None, None),
        Verdict::Defer(until) => ("deferred", None, Some(to_micros(until)), None),
    };
    let mut sql = Sql::for_conn(
        tx.conn(),
        "INSERT INTO message (tenant_id, id, member_id, channel, category, template, variables, \
         status, reason, deliver_at, requested_at, source, created_at, updated_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(id.as_str())
        .push(", ")
        .bind(out.member_id.as_str())
        .push(", ")
        .bind(out.channel.as_str())
        .push(", ")
        .bind(out.category.as_str())
        .push(", ")
        .bind(out.template.as_str())
        .push(", ")
        .bind(out.variables.to_string())
        .push(", ")
        .bind(status)
        .push(", ")
        .bind(reason.map(str::to_owned))
        .push(", ")
        .bind(deliver_at)
        .push(", ")
        .bind(requested_at)
        .push(", ")
        .bind(out.source.as_str())
        .push(", ")
        .bind(at)
        .push(", ")
        .bind(at)
        .push(")");
    sql.query().execute(tx.conn()).await?;
    match verdict {
        Verdict::Send => tx.emit(requested_event(tenant_id, &id, out)),
        Verdict::Suppress(reason) => tx.emit(NewEvent::new(
            tenant_id,
            "message.suppressed",
            Some(id.as_str()),
            json!({ "message_id": id, "member_id": out.member_id, "reason": reason.as_str() }),
        )),
        Verdict::Defer(until) => {
            scheduler::schedule(
                tx.conn(),
                tenant_id,
                &[NewJob {
                    id: format!("{RELEASE_JOB}:{id}"),
                    kind: RELEASE_JOB,
                    due_at: to_micros(until),
                    payload: json!({ "message_id": id }),
                }],
                at,
            )
            .await?;
            tx.emit(NewEvent::new(
                tenant_id,
                "message.deferred",
                Some(id.as_str()),
                json!({ "message_id": id, "member_id": out.member_id, "deliver_at": micros_to_rfc3339(to_micros(until)) }),
            ));
        }
    }
    fetch(tx, tenant_id, &id).await
}

async fn fetch(tx: &mut Tx, tenant_id: &TenantId, id: &MessageId) -> ApiResult<Option<Message>> {
    let mut sql = Sql::for_conn(
        tx.conn(),
        &format!("SELECT {COLUMNS} FROM message WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    sql.query()
        .fetch_optional(tx.conn())
        .await?
        .as_ref()
        .map(message)
        .transpose()
}

/// The release of a deferred message: through the gate again, as of now.
pub async fn release_job(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let id = job
        .payload
        .get("message_id")
        .and_then(Value::as_str)
        .and_then(MessageId::parse)
        .ok_or_else(|| anyhow::anyhow!("job without message_id"))?;
    let tenant_id = job.tenant_id.clone();
    let zone = crate::tenants::time_zone_in(&state.db, &tenant_id).await?;
    let mut tx = state.begin().await?;
    if let Some(found) = fetch(&mut tx, &tenant_id, &id).await? {
        if found.status == "deferred" {
            let out = Outgoing {
                member_id: found.member_id.clone(),
                channel: found.channel.clone(),
                category: found.category,
                template: found.template.clone(),
                variables: found.variables.clone(),
                source: found.source.clone(),
            };
            let now = tx.now();
            let recipient = recipient(&mut tx, &tenant_id, &out.member_id, now)
                .await?
                .unwrap_or(Recipient {
                    active: false,
                    consent_marketing: false,
                    sent_in_window: 0,
                });
            let settings = load_settings(tx.conn(), &tenant_id).await?;
            let quiet = settings.validate()?;
            let verdict = gate(
                out.category,
                recipient,
                settings.max_marketing_per_member_per_7_days,
                quiet,
                now,
                &zone,
            );
            let at = to_micros(now);
            match verdict {
                Verdict::Send => {
                    sqlx::query(
                        "UPDATE message SET status = 'requested', requested_at = $1, updated_at = $1 \
                         WHERE tenant_id = $2 AND id = $3",
                    )
                    .bind(at)
                    .bind(tenant_id.as_str())
                    .bind(id.as_str())
                    .execute(tx.conn())
                    .await?;
                    tx.emit(requested_event(&tenant_id, &id, &out));
                }
                Verdict::Suppress(reason) => {
                    sqlx::query(
                        "UPDATE message SET status = 'suppressed', reason = $1, updated_at = $2 \
                         WHERE tenant_id = $3 AND id = $4",
                    )
                    .bind(reason.as_str())
                    .bind(at)
                    .bind(tenant_id.as_str())
                    .bind(id.as_str())
                    .execute(tx.conn())
                    .await?;
                    tx.emit(NewEvent::new(
                        &tenant_id,
                        "message.suppressed",
                        Some(id.as_str()),
                        json!({ "message_id": id, "member_id": out.member_id, "reason": reason.as_str() }),
                    ));
                }
                Verdict::Defer(until) => {
                    // Quiet hours changed meanwhile: wait again.
                    sqlx::query(
                        "UPDATE message SET deliver_at = $1, updated_at = $2 \
                         WHERE tenant_id = $3 AND id = $4",
                    )
                    .bind(to_micros(until))
                    .bind(at)
                    .bind(tenant_id.as_str())
                    .bind(id.as_str())
                    .execute(tx.conn())
                    .await?;
                    scheduler::schedule(
                        tx.conn(),
                        &tenant_id,
                        &[NewJob {
                            id: format!("{RELEASE_JOB}:{id}:{}", to_micros(until)),
                            kind: RELEASE_JOB,
                            due_at: to_micros(until),
                            payload: json!({ "message_id": id }),
                        }],
                        at,
                    )
                    .await?;
                }
            }
        }
    }
    scheduler::complete(tx.conn(), job).await?;
    tx.commit().await?;
    Ok(())
}

// --- erasure -------------------------------------------------------------------------------

/// The member hooks of messages: an erased member's message variables (which may carry their
/// name or other personal values a template needed) are cleared; the rows stay for the cap's
/// and the automations' counts.
pub struct MessageHooks;

#[async_trait::async_trait]
impl crate::common::hooks::MemberHooks for MessageHooks {
    async fn on_erased(
        &self,
        tx: &mut Tx,
        member: &crate::common::hooks::MemberErased<'_>,
    ) -> ApiResult<()> {
        sqlx::query("UPDATE message SET variables = '{}' WHERE tenant_id = $1 AND member_id = $2")
            .bind(member.tenant_id.as_str())
            .bind(member.member_id.as_str())
            .execute(tx.conn())
            .await?;
        Ok(())
    }
}

// --- routes --------------------------------------------------------------------------------

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(create_message))
        .routes(routes!(get_message))
        .routes(routes!(report_status))
        .routes(routes!(member_messages))
}

/// The tenant's message rules (defaults until set).
#[utoipa::path(get, path = "/v1/messaging-settings", tag = "engagement",
    responses((status = 200, body = MessagingSettings)), security(("api_key" = [])))]
async fn get_settings(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<MessagingSettings>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(load_settings(&mut conn, &auth.tenant_id).await?))
}

/// `PUT /v1/messaging-settings`: absent fields stay as they are; `"quiet_hours": null` turns
/// quiet hours off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMessagingSettings {
    pub max_marketing_per_member_per_7_days: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuietHours>)]
    pub quiet_hours: Option<Option<QuietHours>>,
}

/// Change the tenant's message rules.
#[utoipa::path(put, path = "/v1/messaging-settings", tag = "engagement",
    request_body = UpdateMessagingSettings,
    responses((status = 200, body = MessagingSettings), (status = 422)), security(("api_key" = [])))]
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(update): Json<UpdateMessagingSettings>,
) -> ApiResult<Json<MessagingSettings>> {
    let mut tx = state.begin().await?;
    let mut settings = load_settings(tx.conn(), &auth.tenant_id).await?;
    if let Some(cap) = update.max_marketing_per_member_per_7_days {
        settings.max_marketing_per_member_per_7_days = cap;
    }
    if let Some(quiet) = update.quiet_hours {
        settings.quiet_hours = quiet;
    }
    settings.validate()?;
    sqlx::query(
        "INSERT INTO messaging_setting (tenant_id, settings, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, \
         updated_at = excluded.updated_at",
    )
    .bind(auth.tenant_id.as_str())
    .bind(serde_json::to_string(&settings).map_err(ApiError::internal)?)
    .bind(to_micros(tx.now()))
    .execute(tx.conn())
    .await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "messaging.settings_updated",
        None,
        json!({
            "max_marketing_per_member_per_7_days": settings.max_marketing_per_member_per_7_days,
            "quiet_hours": settings.quiet_hours,
        }),
    ));
    tx.commit().await?;
    Ok(Json(settings))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    pub member_id: String,
    /// The merchant's channel name (`wechat`, `wecom`, `sms`…), 1 to 64 characters.
    pub channel: String,
    pub category: Category,
    /// The gateway's template name, 1 to 64 characters.
    pub template: String,
    /// Values for the template (a JSON object of at most 4 KiB).
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Value>,
}

/// A message's channel, template and variables checked (`variables` absent: `{}`); `prefix`
/// goes before the field names in errors (`actions[2].send_message.`).
pub fn checked_fields(
    prefix: &str,
    channel: &str,
    template: &str,
    variables: Option<Value>,
) -> ApiResult<(String, String, Value)> {
    let channel = text::required(&format!("{prefix}channel"), channel, MAX_NAME_CHARS)?;
    let template = text::required(&format!("{prefix}template"), template, MAX_NAME_CHARS)?;
    let variables = variables.unwrap_or_else(|| json!({}));
    let field = format!("{prefix}variables");
    if !variables.is_object() {
        return Err(ApiError::validation(&field, "must be a JSON object"));
    }
    if variables.to_string().len() > MAX_VARIABLES_BYTES {
        return Err(ApiError::validation(
            &field,
            format!("must be at most {MAX_VARIABLES_BYTES} bytes of JSON"),
        ));
    }
    Ok((channel, template, variables))
}

/// Ask for one message to one member: it goes through the gate and comes back `requested`,
/// `deferred` or `suppressed` (automations and broadcasts use the same gate).
#[utoipa::path(post, path = "/v1/messages", tag = "engagement", request_body = CreateMessage,
    responses((status = 201, body = Message), (status = 404, description = "no such member"), (status = 422)),
    security(("api_key" = [])))]
async fn create_message(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let member_id =
        MemberId::parse(&request.member_id).ok_or_else(|| ApiError::not_found("member"))?;
    let (channel, template, variables) =
        checked_fields("", &request.channel, &request.template, request.variables)?;
    let zone = crate::tenants::time_zone_in(&state.db, &auth.tenant_id).await?;
    let out = Outgoing {
        member_id,
        channel,
        category: request.category,
        template,
        variables,
        source: "api".into(),
    };
    let mut tx = state.begin().await?;
    let sent = send(&mut tx, &auth.tenant_id, &zone, &out)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// One message.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "engagement",
    params(("id" = String, Path, description = "message id")),
    responses((status = 200, body = Message), (status = 404)), security(("api_key" = [])))]
async fn get_message(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Message>> {
    let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("message"))?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM message WHERE tenant_id = "));
    sql.bind(auth.tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    let row = sql
        .query()
        .fetch_optional(state.db.read())
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(message(&row)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// `sent`, `failed` or `clicked`.
    pub status: String,
}

/// The gateway reports what became of a requested message.
#[utoipa::path(post, path = "/v1/messages/{id}/status", tag = "engagement", request_body = StatusReport,
    params(("id" = String, Path, description = "message id")),
    responses((status = 200, body = Message), (status = 404),
              (status = 409, description = "the message was not handed to the gateway (deferred or suppressed)"),
              (status = 422)),
    security(("api_key" = [])))]
async fn report_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<StatusReport>,
) -> ApiResult<Json<Message>> {
    if !matches!(request.status.as_str(), "sent" | "failed" | "clicked") {
        return Err(ApiError::validation(
            "status",
            "must be sent, failed or clicked",
        ));
    }
    let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("message"))?;
    let mut tx = state.begin().await?;
    let found = fetch(&mut tx, &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    if !matches!(
        found.status.as_str(),
        "requested" | "sent" | "failed" | "clicked"
    ) {
        return Err(ApiError::coded(
            codes::MESSAGE_NOT_REQUESTED,
            format!(
                "the message is {}: it was never handed to a gateway",
                found.status
            ),
        )
        .with_details(json!({ "status": found.status })));
    }
    if found.status != request.status {
        sqlx::query(
            "UPDATE message SET status = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(request.status.as_str())
        .bind(to_micros(tx.now()))
        .bind(auth.tenant_id.as_str())
        .bind(id.as_str())
        .execute(tx.conn())
        .await?;
        tx.emit(NewEvent::new(
            &auth.tenant_id,
            "message.status_reported",
            Some(id.as_str()),
            json!({ "message_id": id, "member_id": found.member_id, "status": request.status }),
        ));
    }
    let updated = fetch(&mut tx, &auth.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    tx.commit().await?;
    Ok(Json(updated))
}

pub use crate::common::pagination::PageQuery;

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub data: Vec<Message>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// What one member was sent or spared, with reasons, newest first.
#[utoipa::path(get, path = "/v1/members/{id}/messages", tag = "engagement",
    params(("id" = String, Path, description = "member id"), PageQuery),
    responses((status = 200, body = MessagePage), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn member_messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<MessagePage>> {
    let limit = pagination::limit(query.limit, 50, MAX_PAGE)?;
    let cursor = pagination::cursor(query.cursor.as_deref(), MessageId::parse)?;
    let member = MemberId::parse(&id).ok_or_else(|| ApiError::not_found("member"))?;
    let mut conn = state.db.read().acquire().await?;
    crate::members::store::require(&mut conn, &auth.tenant_id, &member).await?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM message WHERE tenant_id = "));
    sql.bind(auth.tenant_id.as_str())
        .push(" AND member_id = ")
        .bind(member.as_str());
    if let Some(cursor) = &cursor {
        sql.push(" AND id < ").bind(cursor.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut data = rows.iter().map(message).collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |m| m.id.to_string());
    Ok(Json(MessagePage { data, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn quiet(start: &str, end: &str) -> Quiet {
        Quiet {
            start: hh_mm("start", start).unwrap(),
            end: hh_mm("end", end).unwrap(),
        }
    }

    const OK: Recipient = Recipient {
        active: true,
        consent_marketing: true,
        sent_in_window: 0,
    };

    #[test]
    fn quiet_hours_across_midnight_have_exact_edges() {
        let q = quiet("21:00", "08:00");
        let z = zone();
        assert_eq!(quiet_until(q, at("2026-06-01T20:59:59+08:00"), &z), None);
        assert_eq!(
            quiet_until(q, at("2026-06-01T21:00:00+08:00"), &z),
            Some(at("2026-06-02T08:00:00+08:00"))
        );
        assert_eq!(
            quiet_until(q, at("2026-06-01T23:59:59+08:00"), &z),
            Some(at("2026-06-02T08:00:00+08:00"))
        );
        assert_eq!(
            quiet_until(q, at("2026-06-02T00:00:00+08:00"), &z),
            Some(at("2026-06-02T08:00:00+08:00"))
        );
        assert_eq!(
            quiet_until(q, at("2026-06-02T07:59:59+08:00"), &z),
            Some(at("2026-06-02T08:00:00+08:00"))
        );
        assert_eq!(quiet_until(q, at("2026-06-02T08:00:00+08:00"), &z), None);
        // The same instant in UTC is judged in the tenant's zone: 13:30Z is 21:30 in Shanghai.
        assert_eq!(
            quiet_until(q, at("2026-06-01T13:30:00Z"), &z),
            Some(at("2026-06-02T00:00:00Z"))
        );
    }

    #[test]
    fn quiet_hours_within_a_day() {
        let q = quiet("12:00", "14:00");
        let z = zone();
        assert_eq!(quiet_until(q, at("2026-06-01T11:59:00+08:00"), &z), None);
        assert_eq!(
            quiet_until(q, at("2026-06-01T12:00:00+08:00"), &z),
            Some(at("2026-06-01T14:00:00+08:00"))
        );
        assert_eq!(quiet_until(q, at("2026-06-01T14:00:00+08:00"), &z), None);
    }

    #[test]
    fn quiet_hours_end_in_a_daylight_saving_gap_resolve_after_it() {
        // New York springs forward at 02:00 on 8 March 2026: 02:30 does not exist that day.
        let z = TimeZone::get("America/New_York").unwrap();
        let q = quiet("22:00", "02:30");
        let until = quiet_until(q, at("2026-03-07T23:00:00-05:00"), &z).unwrap();
        assert_eq!(until, at("2026-03-08T03:30:00-04:00"));
    }

    #[test]
    fn the_gate_applies_its_rules_in_order() {
        let z = zone();
        let day = at("2026-06-01T10:00:00+08:00");
        let night = at("2026-06-01T22:00:00+08:00");
        let q = Some(quiet("21:00", "08:00"));
        let m = Category::Marketing;
        let t = Category::Transactional;
        assert_eq!(gate(m, OK, 2, q, day, &z), Verdict::Send);
        assert_eq!(
            gate(m, OK, 2, q, night, &z),
            Verdict::Defer(at("2026-06-02T08:00:00+08:00"))
        );
        assert_eq!(gate(m, OK, 2, None, night, &z), Verdict::Send);
        let capped = Recipient {
            sent_in_window: 2,
            ..OK
        };
        assert_eq!(
            gate(m, capped, 2, q, day, &z),
            Verdict::Suppress(Reason::FrequencyCap)
        );
        assert_eq!(
            gate(
                m,
                Recipient {
                    sent_in_window: 1,
                    ..OK
                },
                2,
                q,
                day,
                &z
            ),
            Verdict::Send
        );
        assert_eq!(
            gate(m, OK, 0, q, day, &z),
            Verdict::Suppress(Reason::FrequencyCap)
        );
        let no_consent = Recipient {
            consent_marketing: false,
            ..OK
        };
        assert_eq!(
            gate(m, no_consent, 2, q, day, &z),
            Verdict::Suppress(Reason::NoConsent)
        );
        // Transactional passes consent, cap and quiet hours…
        assert_eq!(gate(t, no_consent, 2, q, night, &z), Verdict::Send);
        assert_eq!(gate(t, capped, 2, q, night, &z), Verdict::Send);
        // …but never reaches an erased member.
        let erased = Recipient {
            active: false,
            ..OK
        };
        assert_eq!(
            gate(t, erased, 2, q, day, &z),
            Verdict::Suppress(Reason::Erased)
        );
        assert_eq!(
            gate(m, erased, 2, q, day, &z),
            Verdict::Suppress(Reason::Erased)
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(MessagingSettings::default().validate().unwrap().is_some());
        let negative = MessagingSettings {
            max_marketing_per_member_per_7_days: -1,
            ..MessagingSettings::default()
        };
        assert!(negative.validate().is_err());
        for (start, end) in [
            ("21:00", "21:00"),
            ("24:00", "08:00"),
            ("9:00", "08:00"),
            ("21:60", "08:00"),
            ("ab:cd", "08:00"),
        ] {
            let s = MessagingSettings {
                max_marketing_per_member_per_7_days: 2,
                quiet_hours: Some(QuietHours {
                    start: start.into(),
                    end: end.into(),
                }),
            };
            assert!(s.validate().is_err(), "{start}-{end}");
        }
        let off = MessagingSettings {
            max_marketing_per_member_per_7_days: 2,
            quiet_hours: None,
        };
        assert_eq!(off.validate().unwrap(), None);
    }
}
