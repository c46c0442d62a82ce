//! `POST /v1/scans`: what a scanned code is, and what the scan earns.
//!
//! The steps: the code is read without the database (a wrong check character is `mistyped`),
//! then looked up with one read of its key (absent: `unknown_code`; its batch past
//! `expires_at`: `expired`). An authentic code's scan is one write transaction: the member is
//! found or created, the code's count goes up and its first scan's time and city are kept
//! (the row is locked meanwhile on PostgreSQL; SQLite has one writer), the first member's scan
//! claims the points (`awarded_at` set once) and is paid by a ledger transfer from
//! `system:issuance` whose id is derived from the code, the scan is logged, and the code is
//! flagged `suspicious` once it has been scanned from [`SUSPICIOUS_DEVICES`] devices or
//! [`SUSPICIOUS_CITIES`] cities (event `code.suspicious`, once).
//!
//! Throttling: every failed scan (`unknown_code` or `mistyped`) is counted in the database per
//! device and per IP address (the `ip` field, else the caller's peer address) per hour; past
//! [`MAX_FAILURES_PER_DEVICE`] or [`MAX_FAILURES_PER_IP`] failures in the hour, further failures
//! answer 429 `rate_limited` (limit `failed_scans_per_device` / `failed_scans_per_ip`) until the
//! hour ends. Counting in the database makes the limit hold across nodes and restarts. A scan
//! of an authentic code is never refused, so a real customer behind a busy address still gets
//! the truth; a guesser gets at most 60 answers an hour per address, against a chance of about
//! 10⁻¹⁹ per guess of hitting any code.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::Extensions;
use jiff::SignedDuration;
use serde_json::json;

use super::code::{self, Parsed};
use super::model::{Scan, ScanResult, ScannedProduct};
use super::store::{self, BatchTerms, ScanRow};
use super::CodeScanId;
use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::hooks;
use crate::common::ids::{MemberId, TenantId};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::text;
use crate::common::time::{micros_to_rfc3339, to_micros};
use crate::ledger::{self, model::Address, model::Asset, model::NewTransfer, Op};
use crate::members::model::Profile;
use crate::AppState;

/// Distinct devices that make a code suspicious (a label copied and shared).
pub const SUSPICIOUS_DEVICES: i64 = 5;
/// Distinct cities that make a code suspicious.
pub const SUSPICIOUS_CITIES: i64 = 3;
/// Failed scans a device may make per hour before its failures answer 429.
pub const MAX_FAILURES_PER_DEVICE: i64 = 20;
/// Failed scans an IP address may make per hour (several people may share one).
pub const MAX_FAILURES_PER_IP: i64 = 60;
/// The throttling window.
pub const FAILURE_WINDOW_MICROS: i64 = 3_600_000_000;
/// Longest `device_id`.
pub const MAX_DEVICE_CHARS: usize = 128;
/// Longest `ip`.
pub const MAX_IP_CHARS: usize = 64;
/// Longest `city`.
pub const MAX_CITY_CHARS: usize = 64;

/// The scan route.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(scan))
}

/// The scan's request, validated.
struct Scanner {
    member: Who,
    device_id: Option<String>,
    ip: Option<String>,
    city: Option<String>,
}

enum Who {
    Anonymous,
    Member(MemberId),
    /// Find by external id or create with source `scan`.
    New(Box<Profile>, hooks::Signup),
}

fn validate(request: Scan, peer: Option<SocketAddr>) -> ApiResult<(String, Scanner)> {
    if request.code.chars().count() > code::MAX_INPUT_LEN {
        return Err(ApiError::validation(
            "code",
            format!("must be at most {} characters", code::MAX_INPUT_LEN),
        ));
    }
    let device_id = text::optional("device_id", request.device_id.as_deref(), MAX_DEVICE_CHARS)?;
    let city = text::optional("city", request.city.as_deref(), MAX_CITY_CHARS)?;
    let ip = text::optional("ip", request.ip.as_deref(), MAX_IP_CHARS)?
        .or_else(|| peer.map(|p| p.ip().to_string()));
    let member = match (request.member_id, request.new_member) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "new_member",
                "give member_id or new_member, not both",
            ))
        }
        (Some(id), None) => {
            Who::Member(MemberId::parse(&id).ok_or_else(|| ApiError::not_found("member"))?)
        }
        (None, Some(mut new)) => {
            let signup = hooks::Signup {
                invite_code: new.invite_code.take(),
                device_id: new.device_id.take().or_else(|| device_id.clone()),
                ip: new.ip.take().or_else(|| ip.clone()),
            };
            if new.external_id.is_none() {
                return Err(ApiError::validation(
                    "new_member.external_id",
                    "is required: a later scan by the same person finds the member by it",
                ));
            }
            new.source = Some(new.source.unwrap_or_else(|| "scan".to_owned()));
            let profile = Profile::try_from(new).map_err(|error| {
                // Name the nested field, as a client wrote it.
                match error.details.as_ref().and_then(|d| d["field"].as_str()) {
                    Some(field) => ApiError::validation(
                        &format!("new_member.{field}"),
                        error
                            .message
                            .strip_prefix(&format!("{field}: "))
                            .unwrap_or(&error.message),
                    ),
                    None => error,
                }
            })?;
            hooks::registered()?.check_signup(&signup)?;
            Who::New(Box::new(profile), signup)
        }
        (None, None) => Who::Anonymous,
    };
    Ok((
        request.code,
        Scanner {
            member,
            device_id,
            ip,
            city,
        },
    ))
}

/// Scan a code: `authentic` with the code's story and the points this scan earned, or not
/// with `reason` (`unknown_code`, `mistyped`, `expired`). Failed scans past the hourly limit
/// of the device or address answer 429 `rate_limited`.
#[utoipa::path(post, path = "/v1/scans", tag = "codes", request_body = Scan,
    responses((status = 200, body = ScanResult),
              (status = 404, description = "member_id not found"),
              (status = 409, description = "the member was erased, or new_member's external_id \
                                            was taken by a concurrent scan"),
              (status = 422), (status = 429, description = "too many failed scans")),
    security(("api_key" = [])))]
pub async fn scan(
    State(state): State<AppState>,
    auth: Auth,
    extensions: Extensions,
    Json(request): Json<Scan>,
) -> ApiResult<Json<ScanResult>> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let (input, scanner) = validate(request, peer)?;
    let code = match code::parse(&input) {
        Parsed::Code(code) => code,
        Parsed::Mistyped => return failed(&state, &auth.tenant_id, &scanner, "mistyped").await,
        Parsed::Garbage => return failed(&state, &auth.tenant_id, &scanner, "unknown_code").await,
    };
    let found = {
        let mut conn = state.db.read().acquire().await?;
        match store::lookup(&mut conn, &auth.tenant_id, &code).await? {
            Some((batch_id, terms)) => {
                let product =
                    crate::orders::products::fetch(&mut conn, &auth.tenant_id, &terms.product_id)
                        .await?;
                let zone = crate::tenants::time_zone(&mut conn, &auth.tenant_id).await?;
                Some((batch_id, terms, product, zone))
            }
            None => None,
        }
    };
    let Some((batch_id, terms, product, zone)) = found else {
        return failed(&state, &auth.tenant_id, &scanner, "unknown_code").await;
    };
    let now = state.clock.now();
    if terms.expires_at.is_some_and(|at| at <= to_micros(now)) {
        return Ok(Json(ScanResult::refused("expired")));
    }
    let mut tx = state.begin().await?;
    let mut result = record(
        &mut tx,
        &auth.tenant_id,
        &code,
        &batch_id,
        &terms,
        scanner,
        zone,
    )
    .await?;
    tx.commit().await?;
    result.product = Some(ScannedProduct {
        id: product.id,
        name: product.name,
        sku: product.sku,
    });
    Ok(Json(result))
}

/// Count a failed scan against the device and the address; 429 past either limit.
async fn failed(
    state: &AppState,
    tenant_id: &TenantId,
    scanner: &Scanner,
    reason: &str,
) -> ApiResult<Json<ScanResult>> {
    metrics::counter!("code_scans_failed_total", "reason" => reason.to_owned()).increment(1);
    let subjects: Vec<(String, i64, &'static str)> = [
        scanner.device_id.as_ref().map(|d| {
            (
                format!("device:{d}"),
                MAX_FAILURES_PER_DEVICE,
                "failed_scans_per_device",
            )
        }),
        scanner.ip.as_ref().map(|ip| {
            (
                format!("ip:{ip}"),
                MAX_FAILURES_PER_IP,
                "failed_scans_per_ip",
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if subjects.is_empty() {
        return Ok(Json(ScanResult::refused(reason)));
    }
    let now = to_micros(state.clock.now());
    let window_start = now - now.rem_euclid(FAILURE_WINDOW_MICROS);
    let mut tx = state.begin().await?;
    let mut refusal = None;
    for (subject, max, limit) in &subjects {
        let failures = store::count_failure(tx.conn(), tenant_id, subject, window_start).await?;
        if failures > *max && refusal.is_none() {
            refusal = Some(*limit);
        }
    }
    tx.commit().await?;
    match refusal {
        Some(limit) => {
            let wait = SignedDuration::from_micros(window_start + FAILURE_WINDOW_MICROS - now);
            Err(ApiError::rate_limited(
                limit,
                std::time::Duration::try_from(wait).unwrap_or_default(),
            ))
        }
        None => Ok(Json(ScanResult::refused(reason))),
    }
}

/// The scan of an authentic code, inside `tx`. The points are paid last: the transfer locks
/// `system:issuance` on PostgreSQL, which every paying scan of the tenant needs, so it is held
/// only from there to the commit.
async fn record(
    tx: &mut Tx,
    tenant_id: &TenantId,
    code: &str,
    batch_id: &str,
    terms: &BatchTerms,
    scanner: Scanner,
    zone: jiff::tz::TimeZone,
) -> ApiResult<ScanResult> {
    let now = tx.now();
    let at = to_micros(now);
    let (member_id, member_created) = match scanner.member {
        Who::Anonymous => (None, false),
        Who::Member(id) => {
            crate::members::store::require_active(tx.conn(), tenant_id, &id).await?;
            (Some(id), false)
        }
        Who::New(profile, signup) => {
            let external_id = profile.external_id.clone().unwrap_or_default();
            let known = crate::members::store::ids_by_external(
                tx.conn(),
                tenant_id,
                &[external_id.as_str()],
            )
            .await?;
            match known.get(&external_id) {
                Some(id) => {
                    let id = MemberId::from_db(id.clone());
                    crate::members::store::require_active(tx.conn(), tenant_id, &id).await?;
                    (Some(id), false)
                }
                None => {
                    let id =
                        crate::members::create_in(tx, tenant_id, &profile, &signup, "scan").await?;
                    (Some(id), true)
                }
            }
        }
    };
    let counted =
        store::count_scan(tx.conn(), tenant_id, code, at, scanner.city.as_deref()).await?;
    let mut points = 0;
    if member_id.is_some()
        && !counted.awarded
        && store::claim_award(tx.conn(), tenant_id, code, at).await?
    {
        points = terms.points_per_scan;
    }
    let local_date = now.to_zoned(zone).date().to_string();
    let scan_id = CodeScanId::generate();
    let first_scan = counted.scan_count == 1;
    store::insert_scan(
        tx.conn(),
        tenant_id,
        &ScanRow {
            id: scan_id.as_str(),
            code,
            batch_id,
            member_id: member_id.as_ref().map(MemberId::as_str),
            device_id: scanner.device_id.as_deref(),
            ip: scanner.ip.as_deref(),
            city: scanner.city.as_deref(),
            at,
            local_date: &local_date,
            points,
            first_scan,
        },
    )
    .await?;
    let suspicious = check_clone(tx, tenant_id, code, batch_id, counted.serial).await?;
    if let (Some(member), true) = (&member_id, points > 0) {
        pay(tx, tenant_id, member, code, batch_id, points).await?;
    }
    tx.emit(NewEvent::new(
        tenant_id,
        "code.scanned",
        Some(batch_id),
        json!({
            "batch_id": batch_id,
            "serial": counted.serial,
            "scan_id": scan_id,
            "member_id": member_id,
            "scan_count": counted.scan_count,
            "first_scan": first_scan,
            "points_awarded": points,
            "city": scanner.city,
        }),
    ));
    Ok(ScanResult {
        authentic: true,
        reason: None,
        product: None,
        batch_id: Some(batch_id.to_owned()),
        first_scanned_at: Some(micros_to_rfc3339(counted.first_scanned_at)),
        first_scanned_city: Some(counted.first_city),
        scan_count: Some(counted.scan_count),
        points_awarded: Some(points),
        suspicious: Some(suspicious),
        member_id: Some(member_id.map(|m| m.as_str().to_owned())),
        member_created: Some(member_created),
    })
}

/// Pay the code's points: the transfer id is derived from the code, so it is paid once even if
/// the claim above were ever bypassed.
async fn pay(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member: &MemberId,
    code: &str,
    batch_id: &str,
    points: i64,
) -> ApiResult<()> {
    let transfer_id = format!("code_scan:{code}");
    let transfer = NewTransfer::internal(
        transfer_id.as_str(),
        Address::system("issuance"),
        Address::member(member),
        Asset::Points,
        points,
        "code_scan",
        Some(&format!("code_batch:{batch_id}")),
    );
    let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no ledger result")))?;
    if !result.is_success() {
        return Err(ApiError::internal(anyhow::anyhow!(
            "ledger refused code scan points {transfer_id}: {} {:?}",
            result.status,
            result.message
        )));
    }
    Ok(())
}

/// Flag the code once it has been scanned from too many devices or cities; whether it is
/// flagged (now or before).
async fn check_clone(
    tx: &mut Tx,
    tenant_id: &TenantId,
    code: &str,
    batch_id: &str,
    serial: i64,
) -> ApiResult<bool> {
    if store::is_flagged(tx.conn(), tenant_id, code).await? {
        return Ok(true);
    }
    let (devices, cities) = store::spread(tx.conn(), tenant_id, code).await?;
    if devices < SUSPICIOUS_DEVICES && cities < SUSPICIOUS_CITIES {
        return Ok(false);
    }
    let at = to_micros(tx.now());
    if store::flag(tx.conn(), tenant_id, code, batch_id, (devices, cities), at).await? {
        tx.emit(NewEvent::new(
            tenant_id,
            "code.suspicious",
            Some(batch_id),
            json!({
                "batch_id": batch_id,
                "serial": serial,
                "devices": devices,
                "cities": cities,
            }),
        ));
    }
    Ok(true)
}
