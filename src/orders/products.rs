//! Products (SKUs): `POST/GET/PATCH /v1/products`. Prices are fen; `days_of_supply` says how
//! long one unit lasts a customer (repurchase reminders); `launch_at` opens the product to the
//! public (tiers with early access may buy earlier).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::error::{codes, is_unique_violation, ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::ids::{ProductId, TenantId};
use crate::common::json::{double_option, Json};
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::price;
use crate::common::sql::{Arg, Sql};
use crate::common::text;
use crate::common::time::{instant_field, micros_to_rfc3339, to_micros};
use crate::tenants;
use crate::AppState;

/// Longest SKU and name; largest price; largest stock.
pub const MAX_SKU_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_PRICE: i64 = 100_000_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub name: String,
    /// Unique per tenant.
    pub sku: String,
    /// Fen.
    pub price: i64,
    /// Member-only price (fen), if any: 1 to `price`.
    pub member_price: Option<i64>,
    #[serde(default)]
    pub stock: i64,
    /// Days one unit lasts a customer.
    pub days_of_supply: Option<i64>,
    /// Public launch (RFC 3339).
    pub launch_at: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    pub name: Option<String>,
    pub price: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub member_price: Option<Option<i64>>,
    pub stock: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub days_of_supply: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub launch_at: Option<Option<String>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub member_price: Option<i64>,
    pub stock: i64,
    pub days_of_supply: Option<i64>,
    pub launch_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The text-field rule ([`text::trimmed`]), with this field's message of before the rule.
fn check_name(name: &str) -> ApiResult<String> {
    text::trimmed(name, MAX_NAME_LEN)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::validation("name", "must be 1 to 200 characters"))
}

fn check_money(field: &str, value: i64) -> ApiResult<i64> {
    if (0..=MAX_PRICE).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(field, "must be 0 or more (fen)"))
    }
}

/// A member price is a special price: 1 fen to the list price (`common::price`).
fn check_member_price(value: i64, list_price: i64) -> ApiResult<i64> {
    price::check_special(value, list_price)
        .map_err(|e| ApiError::validation("member_price", e.to_string()))
}

fn check_stock(value: i64) -> ApiResult<i64> {
    if (0..=MAX_STOCK).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation("stock", "must be 0 to 1e9"))
    }
}

fn check_days(value: i64) -> ApiResult<i64> {
    if (1..=3650).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation("days_of_supply", "must be 1 to 3650"))
    }
}

async fn check_launch(state: &AppState, tenant_id: &TenantId, value: &str) -> ApiResult<i64> {
    let zone = tenants::time_zone_in(&state.db, tenant_id).await?;
    instant_field("launch_at", value, &zone).map(to_micros)
}

const COLUMNS: &str =
    "id, sku, name, price, member_price, stock, days_of_supply, launch_at, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: row.try_get("id")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        price: row.try_get("price")?,
        member_price: row.try_get("member_price")?,
        stock: row.try_get("stock")?,
        days_of_supply: row.try_get("days_of_supply")?,
        launch_at: row
            .try_get::<Option<i64>, _>("launch_at")?
            .map(micros_to_rfc3339),
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        updated_at: micros_to_rfc3339(row.try_get("updated_at")?),
    })
}

/// One product of the tenant.
pub async fn fetch(conn: &mut AnyConnection, tenant_id: &TenantId, id: &str) -> ApiResult<Product> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM product WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(from_row(
        &row.ok_or_else(|| ApiError::not_found("product"))?,
    )?)
}

/// Insert a product with a SKU, a name and a list price only (no member price, stock 0, no
/// event): the product of the load benchmarks and of tests, made without the API.
pub async fn insert_plain(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    sku: &str,
    name: &str,
    price: i64,
    now: i64,
) -> Result<ProductId, sqlx::Error> {
    let id = ProductId::generate();
    sqlx::query(
        "INSERT INTO product (tenant_id, id, sku, name, price, stock, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
    )
    .bind(tenant_id.as_str())
    .bind(id.as_str())
    .bind(sku)
    .bind(name)
    .bind(price)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

/// `days_of_supply` of every product that has one, by SKU.
pub async fn days_of_supply(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
) -> ApiResult<std::collections::HashMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT sku, days_of_supply FROM product WHERE tenant_id = $1 AND days_of_supply IS NOT NULL",
    )
    .bind(tenant_id.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("sku")?, r.try_get("days_of_supply")?)))
        .collect()
}

/// Create a product.
#[utoipa::path(post, path = "/v1/products", tag = "orders", request_body = CreateProduct,
    responses((status = 201, body = Product), (status = 409, description = "sku taken"), (status = 422)),
    security(("api_key" = [])))]
async fn create_product(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<CreateProduct>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    let name = check_name(&request.name)?;
    let sku = request.sku.trim().to_owned();
    if sku.is_empty() || sku.len() > MAX_SKU_LEN || !sku.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(
            "sku",
            "must be 1 to 64 visible ASCII characters",
        ));
    }
    let price = check_money("price", request.price)?;
    let member_price = request
        .member_price
        .map(|p| check_member_price(p, price))
        .transpose()?;
    let stock = check_stock(request.stock)?;
    let days = request.days_of_supply.map(check_days).transpose()?;
    let launch = match request.launch_at.as_deref() {
        Some(text) => Some(check_launch(&state, &auth.tenant_id, text).await?),
        None => None,
    };
    let id = ProductId::generate();
    let mut tx = state.begin().await?;
    let at = to_micros(tx.now());
    let inserted = sqlx::query(
        "INSERT INTO product (tenant_id, id, sku, name, price, member_price, stock, days_of_supply, \
         launch_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(auth.tenant_id.as_str())
    .bind(id.as_str())
    .bind(&sku)
    .bind(&name)
    .bind(price)
    .bind(member_price)
    .bind(stock)
    .bind(days)
    .bind(launch)
    .bind(at)
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(
                ApiError::conflict(codes::SKU_TAKEN, "another product has this sku")
                    .with_details(json!({ "field": "sku" })),
            )
        }
        other => other?,
    };
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "product.created",
        Some(id.as_str()),
        json!({ "product_id": id, "sku": sku }),
    ));
    let product = fetch(tx.conn(), &auth.tenant_id, id.as_str()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// One product.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = Product), (status = 404)), security(("api_key" = [])))]
async fn get_product(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Product>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(fetch(&mut conn, &auth.tenant_id, &id).await?))
}

/// Change a product (absent fields stay, `null` clears the optional ones).
#[utoipa::path(patch, path = "/v1/products/{id}", tag = "orders", params(("id" = String, Path)),
    request_body = UpdateProduct, responses((status = 200, body = Product), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn update_product(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(request): Json<UpdateProduct>,
) -> ApiResult<Json<Product>> {
    // Only the columns the request names are written: writing back values read earlier
    // (the stock above all, which checkouts change meanwhile) would undo concurrent changes.
    let mut columns: Vec<(&str, Arg)> = Vec::new();
    if let Some(name) = &request.name {
        columns.push(("name", check_name(name)?.into()));
    }
    if let Some(price) = request.price {
        columns.push(("price", check_money("price", price)?.into()));
    }
    if let Some(member_price) = request.member_price {
        let value = member_price
            .map(|p| check_money("member_price", p))
            .transpose()?;
        // Checked against the list price as it will be, below, once the row is written.
        columns.push(("member_price", value.into()));
    }
    if let Some(stock) = request.stock {
        columns.push(("stock", check_stock(stock)?.into()));
    }
    if let Some(days) = request.days_of_supply {
        columns.push(("days_of_supply", days.map(check_days).transpose()?.into()));
    }
    if let Some(value) = &request.launch_at {
        let launch = match value.as_deref() {
            Some(text) => Some(check_launch(&state, &auth.tenant_id, text).await?),
            None => None,
        };
        columns.push(("launch_at", launch.into()));
    }
    let fields: Vec<&str> = columns.iter().map(|(column, _)| *column).collect();
    let mut tx = state.begin().await?;
    let mut sql = Sql::new("UPDATE product SET updated_at = ");
    sql.bind(to_micros(tx.now()));
    for (column, value) in columns {
        sql.push(", ").push(column).push(" = ").bind(value);
    }
    sql.push(" WHERE tenant_id = ")
        .bind(auth.tenant_id.as_str())
        .push(" AND id = ")
        .bind(id.as_str());
    if sql.query().execute(tx.conn()).await?.rows_affected() == 0 {
        return Err(ApiError::not_found("product"));
    }
    // The row is locked by the update until commit: check the pair as written, so that a new
    // list price below the member price (or a member price above list) is refused whole.
    let (list_price, member_price): (i64, Option<i64>) =
        sqlx::query_as("SELECT price, member_price FROM product WHERE tenant_id = $1 AND id = $2")
            .bind(auth.tenant_id.as_str())
            .bind(id.as_str())
            .fetch_one(tx.conn())
            .await?;
    if let Some(member_price) = member_price {
        if let Err(e) = price::check_special(member_price, list_price) {
            return Err(if request.member_price.is_some() {
                ApiError::validation("member_price", e.to_string())
            } else {
                ApiError::validation(
                    "price",
                    format!(
                        "must not be below the member price of {member_price} fen; \
                         lower or clear member_price in the same request"
                    ),
                )
            });
        }
    }
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "product.updated",
        Some(&id),
        json!({ "product_id": id, "fields": fields }),
    ));
    let product = fetch(tx.conn(), &auth.tenant_id, &id).await?;
    tx.commit().await?;
    Ok(Json(product))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProductQuery {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub data: Vec<Product>,
    pub next_cursor: Option<String>,
}

/// List products in creation order.
#[utoipa::path(get, path = "/v1/products", tag = "orders", params(ProductQuery),
    responses((status = 200, body = ProductPage)), security(("api_key" = [])))]
async fn list_products(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ProductQuery>,
) -> ApiResult<Json<ProductPage>> {
    let limit = pagination::limit(query.limit, 50, 200)?;
    let after = pagination::cursor(query.cursor.as_deref(), ProductId::parse)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM product WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(auth.tenant_id.as_str())
    .bind(after.as_ref().map(ProductId::as_str).unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(state.db.read())
    .await?;
    let mut data: Vec<Product> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    let next_cursor = pagination::next_cursor(&mut data, limit, |p| p.id.clone());
    Ok(Json(ProductPage { data, next_cursor }))
}
