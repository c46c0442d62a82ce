//! The SQL of code batches and scans.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::model::{Batch, CityStats, DayStats, SuspiciousCode};
use crate::common::db::Backend;
use crate::common::error::ApiResult;
use crate::common::ids::TenantId;
use crate::common::time::micros_to_rfc3339;

/// Codes written by one INSERT: one text parameter of about 1 MB on either back end.
pub const INSERT_CHUNK: usize = 50_000;
/// Codes read per page of the CSV stream.
pub const CSV_PAGE: i64 = 20_000;

const BATCH_COLUMNS: &str = "id, product_id, count, points_per_scan, expires_at, created_at";

fn batch_from_row(row: &AnyRow) -> Result<Batch, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(Batch {
        codes_csv: format!("/v1/code-batches/{id}/codes.csv"),
        id,
        product_id: row.try_get("product_id")?,
        count: row.try_get("count")?,
        points_per_scan: row.try_get("points_per_scan")?,
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")?
            .map(micros_to_rfc3339),
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
    })
}

/// What a scan needs of a batch.
#[derive(Debug, Clone)]
pub struct BatchTerms {
    pub product_id: String,
    pub points_per_scan: i64,
    pub expires_at: Option<i64>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_batch(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    product_id: &str,
    count: i64,
    points_per_scan: i64,
    expires_at: Option<i64>,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO code_batch (tenant_id, id, product_id, count, points_per_scan, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .bind(product_id)
    .bind(count)
    .bind(points_per_scan)
    .bind(expires_at)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Insert `codes` with serials from `first_serial` on, [`INSERT_CHUNK`] to a statement. Each
/// statement carries its codes as one text parameter that the database splits itself
/// (`json_each` on SQLite, `string_to_array` on PostgreSQL): a million codes are 20
/// statements instead of a million, and no placeholder limit applies.
pub async fn insert_codes(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &TenantId,
    batch_id: &str,
    codes: &[String],
    first_serial: i64,
) -> ApiResult<()> {
    let sql = match backend {
        Backend::Sqlite => {
            "INSERT INTO item_code (tenant_id, code, batch_id, serial) \
             SELECT $1, value, $2, $4 + key FROM json_each($3)"
        }
        Backend::Postgres => {
            "INSERT INTO item_code (tenant_id, code, batch_id, serial) \
             SELECT $1, c, $2, $4 + n - 1 FROM unnest(string_to_array($3, ',')) \
             WITH ORDINALITY AS t(c, n)"
        }
    };
    let mut serial = first_serial;
    for chunk in codes.chunks(INSERT_CHUNK) {
        // Codes are alphabet characters only: nothing to escape in either list.
        let list = match backend {
            Backend::Sqlite => {
                let mut text = String::with_capacity(chunk.len() * 21 + 2);
                text.push('[');
                for (i, code) in chunk.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push('"');
                    text.push_str(code);
                    text.push('"');
                }
                text.push(']');
                text
            }
            Backend::Postgres => chunk.join(","),
        };
        sqlx::query(sql)
            .bind(tenant_id.as_str())
            .bind(batch_id)
            .bind(list)
            .bind(serial)
            .execute(&mut *conn)
            .await?;
        serial += chunk.len() as i64;
    }
    Ok(())
}

/// Insert one code per statement: the naive way, for the benchmark's comparison only.
pub async fn insert_codes_one_by_one(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    batch_id: &str,
    codes: &[String],
    first_serial: i64,
) -> ApiResult<()> {
    for (code, serial) in codes.iter().zip(first_serial..) {
        sqlx::query(
            "INSERT INTO item_code (tenant_id, code, batch_id, serial) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant_id.as_str())
        .bind(code)
        .bind(batch_id)
        .bind(serial)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn fetch_batch(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<Batch>> {
    let row = sqlx::query(&format!(
        "SELECT {BATCH_COLUMNS} FROM code_batch WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(batch_from_row).transpose()?)
}

/// Batches in id (creation) order after `after`, optionally of one product.
pub async fn list_batches(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    product_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<Batch>> {
    let rows = sqlx::query(&format!(
        "SELECT {BATCH_COLUMNS} FROM code_batch WHERE tenant_id = $1 \
         AND ($2 = '' OR product_id = $2) AND id > $3 \
         ORDER BY id LIMIT $4"
    ))
    .bind(tenant_id.as_str())
    .bind(product_id.unwrap_or(""))
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(batch_from_row).collect::<Result<_, _>>()?)
}

/// A page of a batch's codes in serial order after `after_serial`.
pub async fn codes_page(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    batch_id: &str,
    after_serial: i64,
    limit: i64,
) -> ApiResult<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT code, serial FROM item_code WHERE tenant_id = $1 AND batch_id = $2 \
         AND serial > $3 ORDER BY serial LIMIT $4",
    )
    .bind(tenant_id.as_str())
    .bind(batch_id)
    .bind(after_serial)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("code")?, r.try_get("serial")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

/// The code's batch terms, in one read of the code's key and the batch's.
pub async fn lookup(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
) -> ApiResult<Option<(String, BatchTerms)>> {
    let row = sqlx::query(
        "SELECT c.batch_id, b.product_id, b.points_per_scan, b.expires_at \
         FROM item_code c JOIN code_batch b ON b.tenant_id = c.tenant_id AND b.id = c.batch_id \
         WHERE c.tenant_id = $1 AND c.code = $2",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((
        row.try_get("batch_id")?,
        BatchTerms {
            product_id: row.try_get("product_id")?,
            points_per_scan: row.try_get("points_per_scan")?,
            expires_at: row.try_get("expires_at")?,
        },
    )))
}

/// A code's state after a scan was counted.
#[derive(Debug, Clone)]
pub struct Counted {
    pub serial: i64,
    pub scan_count: i64,
    pub first_scanned_at: i64,
    pub first_city: Option<String>,
    pub awarded: bool,
}

/// Count a scan of `code` (which exists): the count goes up relatively and the first scan's
/// time and city are set once. On PostgreSQL the row stays locked until the transaction ends,
/// so concurrent scans of one code queue here and the award below is decided once.
pub async fn count_scan(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
    at: i64,
    city: Option<&str>,
) -> ApiResult<Counted> {
    let row = sqlx::query(
        "UPDATE item_code SET scan_count = scan_count + 1, \
         first_city = CASE WHEN first_scanned_at IS NULL THEN $4 ELSE first_city END, \
         first_scanned_at = COALESCE(first_scanned_at, $3) \
         WHERE tenant_id = $1 AND code = $2 \
         RETURNING serial, scan_count, first_scanned_at, first_city, awarded_at",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .bind(at)
    .bind(city)
    .fetch_one(conn)
    .await?;
    Ok(Counted {
        serial: row.try_get("serial")?,
        scan_count: row.try_get("scan_count")?,
        first_scanned_at: row.try_get("first_scanned_at")?,
        first_city: row.try_get("first_city")?,
        awarded: row.try_get::<Option<i64>, _>("awarded_at")?.is_some(),
    })
}

/// Mark the code's points as earned; false when they were already.
pub async fn claim_award(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE item_code SET awarded_at = $3 \
         WHERE tenant_id = $1 AND code = $2 AND awarded_at IS NULL",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One logged scan.
pub struct ScanRow<'a> {
    pub id: &'a str,
    pub code: &'a str,
    pub batch_id: &'a str,
    pub member_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub city: Option<&'a str>,
    pub at: i64,
    pub local_date: &'a str,
    pub points: i64,
    pub first_scan: bool,
}

pub async fn insert_scan(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    scan: &ScanRow<'_>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO code_scan (tenant_id, id, code, batch_id, member_id, device_id, ip, city, \
         scanned_at, local_date, points, first_scan) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(tenant_id.as_str())
    .bind(scan.id)
    .bind(scan.code)
    .bind(scan.batch_id)
    .bind(scan.member_id)
    .bind(scan.device_id)
    .bind(scan.ip)
    .bind(scan.city)
    .bind(scan.at)
    .bind(scan.local_date)
    .bind(scan.points)
    .bind(i64::from(scan.first_scan))
    .execute(conn)
    .await?;
    Ok(())
}

/// Distinct devices and cities a code was scanned from.
pub async fn spread(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
) -> ApiResult<(i64, i64)> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(DISTINCT device_id) AS BIGINT) AS devices, \
         CAST(COUNT(DISTINCT city) AS BIGINT) AS cities \
         FROM code_scan WHERE tenant_id = $1 AND code = $2",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("devices")?, row.try_get("cities")?))
}

/// Flag a code suspicious; false when it was already.
pub async fn flag(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
    batch_id: &str,
    (devices, cities): (i64, i64),
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO suspicious_code (tenant_id, code, batch_id, devices, cities, flagged_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, code) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .bind(batch_id)
    .bind(devices)
    .bind(cities)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn is_flagged(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
) -> ApiResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(1 AS BIGINT) FROM suspicious_code WHERE tenant_id = $1 AND code = $2",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Count one failed scan of `subject` in the window starting at `window_start`; the
/// failures of that window so far, this one included. Older windows of the subject go.
pub async fn count_failure(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    subject: &str,
    window_start: i64,
) -> ApiResult<i64> {
    sqlx::query(
        "DELETE FROM code_scan_failure WHERE tenant_id = $1 AND subject = $2 \
         AND window_start < $3",
    )
    .bind(tenant_id.as_str())
    .bind(subject)
    .bind(window_start)
    .execute(&mut *conn)
    .await?;
    let failures: i64 = sqlx::query_scalar(
        "INSERT INTO code_scan_failure (tenant_id, subject, window_start, failures) \
         VALUES ($1, $2, $3, 1) ON CONFLICT (tenant_id, subject, window_start) \
         DO UPDATE SET failures = code_scan_failure.failures + 1 RETURNING failures",
    )
    .bind(tenant_id.as_str())
    .bind(subject)
    .bind(window_start)
    .fetch_one(conn)
    .await?;
    Ok(failures)
}

/// `(codes scanned, scans, points)` of a batch.
pub async fn totals(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    batch_id: &str,
) -> ApiResult<(i64, i64, i64)> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(first_scan), 0) AS BIGINT) AS scanned, \
         CAST(COUNT(*) AS BIGINT) AS scans, CAST(COALESCE(SUM(points), 0) AS BIGINT) AS points \
         FROM code_scan WHERE tenant_id = $1 AND batch_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(batch_id)
    .fetch_one(conn)
    .await?;
    Ok((
        row.try_get("scanned")?,
        row.try_get("scans")?,
        row.try_get("points")?,
    ))
}

/// Scans per local day.
pub async fn by_day(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    batch_id: &str,
) -> ApiResult<Vec<DayStats>> {
    let rows = sqlx::query(
        "SELECT local_date, CAST(COUNT(*) AS BIGINT) AS scans, \
         CAST(SUM(first_scan) AS BIGINT) AS first_scans, \
         CAST(COALESCE(SUM(points), 0) AS BIGINT) AS points \
         FROM code_scan WHERE tenant_id = $1 AND batch_id = $2 \
         GROUP BY local_date ORDER BY local_date",
    )
    .bind(tenant_id.as_str())
    .bind(batch_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DayStats {
                date: r.try_get("local_date")?,
                scans: r.try_get("scans")?,
                first_scans: r.try_get("first_scans")?,
                points_awarded: r.try_get("points")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Scans per city, most first.
pub async fn by_city(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    batch_id: &str,
    limit: i64,
) -> ApiResult<Vec<CityStats>> {
    let rows = sqlx::query(
        "SELECT city, CAST(COUNT(*) AS BIGINT) AS scans, \
         CAST(SUM(first_scan) AS BIGINT) AS first_scans \
         FROM code_scan WHERE tenant_id = $1 AND batch_id = $2 GROUP BY city \
         ORDER BY scans DESC, city LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(batch_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CityStats {
                city: r.try_get("city")?,
                scans: r.try_get("scans")?,
                first_scans: r.try_get("first_scans")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// How many codes of the batch are flagged, and the first `limit` of them.
pub async fn suspicious(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    batch_id: &str,
    limit: i64,
) -> ApiResult<(i64, Vec<SuspiciousCode>)> {
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM suspicious_code \
         WHERE tenant_id = $1 AND batch_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(batch_id)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT code, devices, cities, flagged_at FROM suspicious_code \
         WHERE tenant_id = $1 AND batch_id = $2 ORDER BY flagged_at, code LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(batch_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(SuspiciousCode {
                code: r.try_get("code")?,
                devices: r.try_get("devices")?,
                cities: r.try_get("cities")?,
                flagged_at: micros_to_rfc3339(r.try_get("flagged_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok((count, list))
}

/// Forget the device and IP of an erased member's scans (the city and counts stay: the
/// statistics keep adding up).
pub async fn erase_member(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &str,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE code_scan SET device_id = NULL, ip = NULL WHERE tenant_id = $1 AND member_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(member_id)
    .execute(conn)
    .await?;
    Ok(())
}
