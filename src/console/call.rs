//! The console reads and changes data by calling the `/v1` API in-process, as the signed-in
//! operator: the request goes through the same router, handlers, validation, tenant scoping,
//! idempotency and events as a merchant's call, only without a network hop and without an API
//! key (the operator's session stands in for it). A page therefore cannot show or do anything
//! the API would not, and cannot drift from it. Every change is written to the audit log with
//! the operator, the method and path, and the answer's status.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use serde_json::Value;
use tower::ServiceExt as _;

use super::i18n::Msg;
use super::operators::Operator;
use super::session::{Refusal, Signed};
use super::view::encode;
use super::Console;
use crate::common::ids::TenantId;
use crate::common::time::to_micros;

/// What `/v1` answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message (for showing on the page), or the status.
    pub fn message(&self) -> String {
        let error = &self.body["error"];
        let mut message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.status.to_string());
        if let Some(details) = error["details"].as_object() {
            for (field, problem) in details {
                let problem = problem
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| problem.to_string());
                message.push_str(&format!(" ({field}: {problem})"));
            }
        }
        message
    }

    /// The body of a `/v1` read of one thing; a 404 page when the API does not know it (another
    /// tenant's, or not an id at all: 404 or 422), the API's own answer for anything else that
    /// went wrong.
    pub fn found(self, signed: &Signed) -> Result<Value, Refusal> {
        if self.status == StatusCode::NOT_FOUND || self.status == StatusCode::UNPROCESSABLE_ENTITY {
            return Err(Refusal::Page(
                StatusCode::NOT_FOUND,
                signed.lang,
                signed.t(Msg::NotFound).to_owned(),
            ));
        }
        if !self.ok() {
            return Err(Refusal::Page(self.status, signed.lang, self.message()));
        }
        Ok(self.body)
    }
}

/// The rows a console page shows of a cursor-paged `/v1` list at a time.
pub const PAGE: usize = 50;

/// One page of a cursor-paged `/v1` list: its rows, the cursor of the next page, and the API's
/// complaint when it refused.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub rows: Vec<Value>,
    pub next: Option<String>,
    pub error: Option<String>,
}

impl Console {
    /// Call `/v1` as `signed`. Changes (anything but GET) are refused for a viewer without a
    /// call, and audited.
    pub async fn call(
        &self,
        signed: &Signed,
        method: Method,
        path: &str,
        body: Option<&Value>,
        form_key: Option<&str>,
    ) -> Answer {
        let change = method != Method::GET;
        if change && !signed.operator.role.may_change() {
            return Answer {
                status: StatusCode::FORBIDDEN,
                body: serde_json::json!({"error": {"message": signed.t(Msg::ViewerRefused)}}),
            };
        }
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(key) = form_key {
            // Scoped to the operator: two operators' forms never share a key.
            builder = builder.header(
                "idempotency-key",
                format!("console:{}:{key}", signed.operator.id),
            );
        }
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        let answer = match request {
            Ok(mut request) => {
                request.extensions_mut().insert(signed.auth());
                self.send(request).await
            }
            Err(error) => Answer {
                status: StatusCode::BAD_REQUEST,
                body: serde_json::json!({"error": {"message": error.to_string()}}),
            },
        };
        if change {
            let now = self.app.clock.now();
            let action = method.as_str();
            if let Err(error) =
                audit(self, &signed.operator, action, path, answer.status, now).await
            {
                tracing::error!(%error, "console audit entry not written");
            }
        }
        answer
    }

    /// GET `path` as `signed`.
    pub async fn get(&self, signed: &Signed, path: &str) -> Answer {
        self.call(signed, Method::GET, path, None, None).await
    }

    /// [`PAGE`] rows of the `/v1` list at `base` (which may carry a filter query), from `cursor`
    /// ("" for the first page).
    pub async fn list(&self, signed: &Signed, base: &str, cursor: &str) -> ListPage {
        let separator = if base.contains('?') { '&' } else { '?' };
        let mut path = format!("{base}{separator}limit={PAGE}");
        if !cursor.is_empty() {
            path.push_str("&cursor=");
            path.push_str(&encode(cursor));
        }
        let answer = self.get(signed, &path).await;
        ListPage {
            error: (!answer.ok()).then(|| answer.message()),
            rows: answer.body["data"].as_array().cloned().unwrap_or_default(),
            next: answer.body["next_cursor"].as_str().map(str::to_owned),
        }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return Answer {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: serde_json::json!({"error": {"message": error.to_string()}}),
                }
            }
        };
        Answer {
            status,
            body: serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub operator_email: String,
    pub action: String,
    pub path: String,
    pub status: i64,
}

/// Write an audit entry for something `operator` did (a change through `/v1`, or directly: a
/// sign-in, a key created, an operator added).
pub async fn audit(
    console: &Console,
    operator: &Operator,
    action: &str,
    path: &str,
    status: StatusCode,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let mut tx = console.app.db.begin(now).await?;
    sqlx::query(
        "INSERT INTO console_audit (tenant_id, id, operator_id, action, path, status, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(operator.tenant_id.as_str())
    .bind(uuid::Uuid::now_v7().simple().to_string())
    .bind(operator.id.as_str())
    .bind(action)
    .bind(path)
    .bind(i64::from(status.as_u16()))
    .bind(to_micros(now))
    .execute(tx.conn())
    .await?;
    tx.commit().await
}

/// The tenant's audit log, newest first.
pub async fn audit_log(
    console: &Console,
    tenant_id: &TenantId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    use sqlx::Row as _;
    let rows = sqlx::query(
        "SELECT a.at, a.action, a.path, a.status, COALESCE(o.email, a.operator_id) AS email \
         FROM console_audit a LEFT JOIN operator o ON o.id = a.operator_id AND o.tenant_id = a.tenant_id \
         WHERE a.tenant_id = $1 AND a.at < $2 ORDER BY a.at DESC, a.id DESC LIMIT $3",
    )
    .bind(tenant_id.as_str())
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(console.app.db.read())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                at: Timestamp::from_microsecond(row.try_get("at")?).unwrap_or_default(),
                operator_email: row.try_get("email")?,
                action: row.try_get("action")?,
                path: row.try_get("path")?,
                status: row.try_get("status")?,
            })
        })
        .collect()
}
