//! Requests and responses of code batches and scans.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::members::model::CreateMember;

/// `POST /v1/code-batches`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    pub product_id: String,
    /// Codes to generate: 1 to 1,000,000.
    pub count: i64,
    /// Points the first member to scan each code earns (0: none), at most 1,000,000.
    pub points_per_scan: i64,
    /// After this instant (RFC 3339, or a date: the start of that day in the tenant's zone)
    /// scans answer `expired`; absent: never.
    pub expires_at: Option<String>,
}

/// A batch of codes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Batch {
    pub id: String,
    pub product_id: String,
    pub count: i64,
    pub points_per_scan: i64,
    pub expires_at: Option<String>,
    pub created_at: String,
    /// Where the printer's CSV is (`GET`, the API key required).
    pub codes_csv: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchPage {
    pub data: Vec<Batch>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BatchQuery {
    /// Only the batches of this product.
    pub product_id: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `POST /v1/scans`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// The code as scanned or typed (case, spaces and hyphens are ignored).
    pub code: String,
    /// The member scanning, if known.
    pub member_id: Option<String>,
    /// Someone not known by id: the member with this `external_id` (e.g. a mini-program
    /// openid) scans, created first with source `scan` when there is none, so that the package
    /// becomes an acquisition channel. `external_id` is required; the other fields are those of
    /// `POST /v1/members`. Not with `member_id`.
    pub new_member: Option<CreateMember>,
    /// The scanning device (at most 128 characters): clone detection and throttling.
    pub device_id: Option<String>,
    /// The scanner's IP address (the caller's peer address when absent): throttling.
    pub ip: Option<String>,
    /// Where the scan happened (at most 64 characters): clone detection and statistics.
    pub city: Option<String>,
}

/// The product a code belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScannedProduct {
    pub id: String,
    pub name: String,
    pub sku: String,
}

/// What a scan established: `authentic` true with the code's story, or false with `reason`
/// (`unknown_code`, `mistyped` or `expired`) and nothing else.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScanResult {
    pub authentic: bool,
    /// `unknown_code`, `mistyped` or `expired` (when not authentic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<ScannedProduct>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// When the code was first scanned (this scan, for the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_scanned_at: Option<String>,
    /// Where it was first scanned (null when that scan sent no city).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub first_scanned_city: Option<Option<String>>,
    /// Scans of this code so far, this one included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_count: Option<i64>,
    /// Points this scan earned: the batch's points for the first member's scan, else 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points_awarded: Option<i64>,
    /// Scanned from so many devices or cities that the label is likely cloned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspicious: Option<bool>,
    /// The member who scanned (null: anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub member_id: Option<Option<String>>,
    /// Whether this scan created the member (`new_member`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_created: Option<bool>,
}

impl ScanResult {
    pub fn refused(reason: &str) -> Self {
        Self {
            authentic: false,
            reason: Some(reason.to_owned()),
            product: None,
            batch_id: None,
            first_scanned_at: None,
            first_scanned_city: None,
            scan_count: None,
            points_awarded: None,
            suspicious: None,
            member_id: None,
            member_created: None,
        }
    }
}

/// Scans of one local day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayStats {
    /// `YYYY-MM-DD` in the tenant's time zone.
    pub date: String,
    pub scans: i64,
    /// Codes scanned for the first time that day.
    pub first_scans: i64,
    pub points_awarded: i64,
}

/// Scans from one city.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CityStats {
    /// Null: scans that sent no city.
    pub city: Option<String>,
    pub scans: i64,
    /// Codes first scanned there.
    pub first_scans: i64,
}

/// A code flagged as a likely cloned label.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuspiciousCode {
    pub code: String,
    /// Distinct devices and cities it had been scanned from when flagged.
    pub devices: i64,
    pub cities: i64,
    pub flagged_at: String,
}

/// `GET /v1/code-batches/{id}/stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchStats {
    pub batch_id: String,
    /// Codes in the batch.
    pub codes: i64,
    /// Codes scanned at least once.
    pub scanned: i64,
    /// Authentic scans in all.
    pub scans: i64,
    pub points_awarded: i64,
    /// Oldest first.
    pub by_day: Vec<DayStats>,
    /// Most scans first, at most 100 cities.
    pub by_city: Vec<CityStats>,
    /// Codes flagged suspicious (all of them counted here, the first 100 listed below).
    pub suspicious_count: i64,
    pub suspicious: Vec<SuspiciousCode>,
}
