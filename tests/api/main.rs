//! API and CLI tests. One test binary (modules below) keeps link time down; every scenario
//! runs on SQLite and on PostgreSQL through `backend_tests!`.

mod support;

mod alliance;
mod alliance_links;
mod analytics;
mod analytics_quality;
mod automations;
mod cli;
mod codes;
mod community;
mod console;
mod console_community;
mod console_engagement;
mod console_insight;
mod console_sales;
mod console_segments;
mod console_shop;
mod console_support;
mod coupons;
mod crash;
mod demo;
mod distribution;
mod edge;
mod event_export;
mod flash_sale_gate;
mod foundation;
mod hardening_data;
mod idempotency;
mod import_export;
mod isolation;
mod jobs;
mod ledger;
mod member_export;
mod members;
mod messages;
mod neighbourhood;
mod orders;
mod prices;
mod program;
mod referrals;
mod segments;
mod stored_value;
mod subscriptions;
mod tenant_settings;
mod webhooks;
