//! Distribution (分销, B2C2C): promoters share products in their circles and earn a
//! commission on what the customers bound to them buy, within the law.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`rules`] | the money rules, pure: blended rates, what is owed after refunds, claw-back and debt, fees |
//! | [`model`] | settings, states, requests and responses |
//! | [`promoters`] | applying, approval, suspension, share codes, bindings, figures, commission lists |
//! | [`commissions`] | the order hooks (pending commissions on payment, adjustments on refunds) and the release job |
//! | [`withdrawals`] | requests, review, payout confirmation and failure |
//! | [`store`] | the SQL |
//!
//! The law shapes the API (禁止传销条例 Art. 7 forbids paying for recruiting, entry fees and
//! deep upline chains): at most two levels (`levels: 3` is refused with 422
//! `depth_exceeds_legal_limit`), commission only on real paid sales and only once the return
//! window has closed, nothing for sign-ups, and becoming a promoter never costs anything.
//!
//! Distribution sits beside growth, above orders, membership and the ledger: the orders
//! domain reaches it only through the order hooks (`common::hooks`, registered by
//! `server::hooks`); no domain below imports it.

pub mod commissions;
pub mod model;
pub mod promoters;
pub mod rules;
pub mod store;
pub mod withdrawals;

use async_trait::async_trait;
use axum::extract::State;
use jiff::SignedDuration;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::common::auth::Auth;
use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::extract::{Path, Query};
use crate::common::hooks::{OrderHooks, OrderPaid, OrderRefunded};
use crate::common::json::Json;
use crate::common::outbox::NewEvent;
use crate::common::pagination;
use crate::common::time::to_micros;
use crate::ledger::model::{Address, Asset};
use crate::orders;
use crate::AppState;
use model::{
    Leaderboard, LeaderboardEntry, LeaderboardQuery, ProductRates, ProductRatesView, Settings,
    Summary, SummaryCommission, UpdateSettings,
};

crate::typed_id!(PromoterId, "prm");
crate::typed_id!(CommissionId, "cms");
crate::typed_id!(WithdrawalId, "wdl");

/// Largest page of promoters, commissions and withdrawals.
pub const MAX_PAGE: i64 = 200;
/// Largest leaderboard.
pub const MAX_LEADERBOARD: i64 = 100;

pub use commissions::RELEASE_JOB;

/// Every distribution route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(
            get_product_rates,
            put_product_rates,
            delete_product_rates
        ))
        .routes(routes!(leaderboard))
        .routes(routes!(summary))
        .merge(promoters::routes())
        .merge(withdrawals::routes())
}

/// Distribution's reactions to orders (DESIGN rule 12), registered by `server::hooks`.
pub struct DistributionHooks;

#[async_trait]
impl OrderHooks for DistributionHooks {
    async fn on_paid(&self, tx: &mut Tx, order: &OrderPaid<'_>) -> ApiResult<()> {
        commissions::on_order_paid(tx, order).await
    }

    async fn on_refunded(&self, tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
        commissions::on_order_refunded(tx, refund).await
    }
}

/// The tenant's distribution settings.
#[utoipa::path(get, path = "/v1/distribution/settings", tag = "distribution",
    responses((status = 200, body = Settings)), security(("api_key" = [])))]
async fn get_settings(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Settings>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(Json(store::settings(&mut conn, &auth.tenant_id).await?))
}

/// Change the settings (absent fields keep their value; nested objects are given whole).
/// `levels` above 2 is refused with 422 `depth_exceeds_legal_limit`.
#[utoipa::path(put, path = "/v1/distribution/settings", tag = "distribution",
    request_body = UpdateSettings,
    responses((status = 200, body = Settings), (status = 422)), security(("api_key" = [])))]
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<UpdateSettings>,
) -> ApiResult<Json<Settings>> {
    let mut tx = state.begin().await?;
    let now = to_micros(tx.now());
    store::lock_settings(tx.conn(), &auth.tenant_id, now).await?;
    let settings = store::settings(tx.conn(), &auth.tenant_id)
        .await?
        .apply(request)?;
    store::put_settings(tx.conn(), &auth.tenant_id, &settings, now).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "distribution.settings_updated",
        None,
        json!({ "enabled": settings.enabled, "levels": settings.levels }),
    ));
    tx.commit().await?;
    Ok(Json(settings))
}

/// The tenant's product or 404.
async fn require_product(
    conn: &mut sqlx::AnyConnection,
    auth: &Auth,
    id: &str,
) -> ApiResult<String> {
    let id =
        crate::common::ids::ProductId::parse(id).ok_or_else(|| ApiError::not_found("product"))?;
    orders::products::fetch(conn, &auth.tenant_id, id.as_str()).await?;
    Ok(id.as_str().to_owned())
}

/// A product's own commission rates (`rates` null: the default rates apply).
#[utoipa::path(get, path = "/v1/distribution/product-rates/{product_id}", tag = "distribution",
    params(("product_id" = String, Path, description = "product id")),
    responses((status = 200, body = ProductRatesView), (status = 404)),
    security(("api_key" = [])))]
async fn get_product_rates(
    State(state): State<AppState>,
    auth: Auth,
    Path(product_id): Path<String>,
) -> ApiResult<Json<ProductRatesView>> {
    let mut conn = state.db.read().acquire().await?;
    let product_id = require_product(&mut conn, &auth, &product_id).await?;
    let rates = store::product_rates(&mut conn, &auth.tenant_id, &product_id).await?;
    Ok(Json(ProductRatesView { product_id, rates }))
}

/// Set a product's own rates (`0`: no commission on it).
#[utoipa::path(put, path = "/v1/distribution/product-rates/{product_id}", tag = "distribution",
    params(("product_id" = String, Path, description = "product id")),
    request_body = ProductRates,
    responses((status = 200, body = ProductRatesView), (status = 404), (status = 422)),
    security(("api_key" = [])))]
async fn put_product_rates(
    State(state): State<AppState>,
    auth: Auth,
    Path(product_id): Path<String>,
    Json(rates): Json<ProductRates>,
) -> ApiResult<Json<ProductRatesView>> {
    rates.check()?;
    let mut tx = state.begin().await?;
    let product_id = require_product(tx.conn(), &auth, &product_id).await?;
    let now = to_micros(tx.now());
    store::put_product_rates(tx.conn(), &auth.tenant_id, &product_id, &rates, now).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "distribution.product_rates_updated",
        Some(product_id.as_str()),
        json!({ "product_id": product_id, "rates": rates }),
    ));
    tx.commit().await?;
    Ok(Json(ProductRatesView {
        product_id,
        rates: Some(rates),
    }))
}

/// Remove a product's own rates: the default rates apply again.
#[utoipa::path(delete, path = "/v1/distribution/product-rates/{product_id}", tag = "distribution",
    params(("product_id" = String, Path, description = "product id")),
    responses((status = 200, body = ProductRatesView), (status = 404)),
    security(("api_key" = [])))]
async fn delete_product_rates(
    State(state): State<AppState>,
    auth: Auth,
    Path(product_id): Path<String>,
) -> ApiResult<Json<ProductRatesView>> {
    let mut tx = state.begin().await?;
    let product_id = require_product(tx.conn(), &auth, &product_id).await?;
    store::delete_product_rates(tx.conn(), &auth.tenant_id, &product_id).await?;
    tx.emit(NewEvent::new(
        &auth.tenant_id,
        "distribution.product_rates_updated",
        Some(product_id.as_str()),
        json!({ "product_id": product_id, "rates": null }),
    ));
    tx.commit().await?;
    Ok(Json(ProductRatesView {
        product_id,
        rates: None,
    }))
}

/// The top promoters by GMV of their customers' orders paid in the period (`7d`, `30d`,
/// `all`), refunds deducted, with the commission those orders owe them now.
#[utoipa::path(get, path = "/v1/distribution/leaderboard", tag = "distribution",
    params(LeaderboardQuery),
    responses((status = 200, body = Leaderboard), (status = 422)), security(("api_key" = [])))]
async fn leaderboard(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<LeaderboardQuery>,
) -> ApiResult<Json<Leaderboard>> {
    let limit = pagination::limit(query.limit, 10, MAX_LEADERBOARD)?;
    let period = query.period.unwrap_or_else(|| "30d".into());
    let days = match period.as_str() {
        "7d" => Some(7),
        "30d" => Some(30),
        "all" => None,
        _ => return Err(ApiError::validation("period", "must be 7d, 30d or all")),
    };
    let since = days.map_or(0, |d| {
        to_micros(state.clock.now() - SignedDuration::from_hours(24 * d))
    });
    let mut conn = state.db.read().acquire().await?;
    let rows = store::leaderboard(&mut conn, &auth.tenant_id, since, limit).await?;
    let data = rows
        .into_iter()
        .zip(1..)
        .map(
            |((promoter_id, member_id, orders, gmv, commission), rank)| LeaderboardEntry {
                rank,
                promoter_id,
                member_id,
                orders,
                gmv,
                commission,
            },
        )
        .collect();
    Ok(Json(Leaderboard { period, data }))
}

/// GMV through promoters, commission pending / available / paid, debt and the cost ratio.
#[utoipa::path(get, path = "/v1/distribution/summary", tag = "distribution",
    responses((status = 200, body = Summary)), security(("api_key" = [])))]
async fn summary(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Summary>> {
    let mut conn = state.db.read().acquire().await?;
    let [promoters, gmv, pending, owed, withdrawn, debt] =
        store::summary(&mut conn, &auth.tenant_id).await?;
    drop(conn);
    // What promoters hold (released, not withdrawn) is the opposite of the commission posted
    // to the three system accounts it moves through, as every asset sums to zero.
    let mut system_total = 0i64;
    for account in [
        commissions::EXPENSE_ACCOUNT,
        withdrawals::PAYOUT_ACCOUNT,
        withdrawals::FEE_ACCOUNT,
    ] {
        let balances = crate::ledger::store::balances(
            state.db.read(),
            &auth.tenant_id,
            &Address::system(account),
        )
        .await?;
        let balance = balances
            .iter()
            .find(|(asset, _)| *asset == Asset::Commission)
            .map_or(0, |(_, b)| b.balance);
        system_total = system_total.saturating_add(balance);
    }
    let available = (-system_total).max(0);
    let cost_ratio = (gmv > 0).then(|| owed as f64 / gmv as f64);
    Ok(Json(Summary {
        promoters,
        gmv,
        commission: SummaryCommission {
            pending,
            available,
            paid: withdrawn,
            debt,
        },
        cost_ratio,
    }))
}
