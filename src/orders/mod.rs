//! Orders (订单) and products. For now: products ([`products`]) and orders placed elsewhere,
//! ingested already paid so that analytics see them ([`import`]). Checkout, payments and
//! refunds come with the orders issue.

pub mod import;
pub mod products;

use axum::body::Body;
use axum::extract::{Query, State};
use futures::TryStreamExt as _;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{ApiError, ApiResult};
use crate::common::json::Json;
use crate::membership::program::tenant_zone;
use crate::AppState;
use import::{Format, OrderImportReport};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_orders))
        .merge(products::routes())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `csv` (default) or `cdnow`.
    pub format: Option<String>,
}

/// Import order history (CSV `external_member_id,ordered_at,amount,currency,items`, or the
/// CDNOW files with `?format=cdnow`): paid external orders, creating members by external id.
#[utoipa::path(post, path = "/v1/orders/import", tag = "orders", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = OrderImportReport), (status = 400)), security(("api_key" = [])))]
async fn import_orders(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> ApiResult<Json<OrderImportReport>> {
    let format = match query.format.as_deref() {
        None | Some("csv") => Format::Csv,
        Some("cdnow") => Format::Cdnow,
        Some(_) => return Err(ApiError::validation("format", "must be csv or cdnow")),
    };
    let zone = {
        let mut conn = state.db.read().acquire().await?;
        tenant_zone(&mut conn, &auth.tenant_id).await?
    };
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let clock = state.clock.clone();
    let report = import::import(
        &state.db,
        move || clock.now(),
        &auth.tenant_id,
        &zone,
        format,
        reader,
        |_| {},
    )
    .await?;
    Ok(Json(report))
}
