//! The console's pages, one file per area of the navigation.

use axum::http::StatusCode;
use axum::response::Response;

use super::i18n::Msg;
use super::session::Signed;
use super::view;

pub mod alliance;
pub mod analytics;
pub mod codes;
pub mod community;
pub mod dashboard;
pub mod distribution;
pub mod engagement;
pub mod members;
pub mod neighbourhood;
pub mod program;
pub mod referrals;
pub mod sales;
pub mod segments;
pub mod settings;
pub mod shop;
pub mod sign_in;
pub mod subscriptions;

/// Any other `/console/…` path: 404 for a signed-in operator (the sign-in page otherwise).
pub async fn not_found(signed: Signed) -> Response {
    view::error_page(StatusCode::NOT_FOUND, signed.lang, signed.t(Msg::NotFound))
}
