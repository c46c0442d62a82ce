//! The API description: the OpenAPI 3.1 document generated from the handlers' annotations
//! (utoipa) and a readable HTML page rendered from it on the server.
//!
//! The page is plain HTML and CSS produced here rather than Swagger UI or Redoc: those ship
//! JavaScript bundles that their Rust wrappers download at build time or load from a CDN,
//! and shequn must build and run on an offline server.

use std::fmt::Write as _;

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shequn",
        description = "Self-hosted engine for private-domain community commerce: members, \
            ledger, membership, orders and sales, growth, communities and analytics. \
            Authenticate with `Authorization: Bearer <api key>`. Every mutating request accepts \
            `Idempotency-Key`. Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "members", description = "Member profiles, tags, import/export, erasure"),
        (name = "membership", description = "Tiers, growth, points rules, member day, birthday perks, stored value (储值, 充值送)"),
        (name = "orders", description = "Products, checkout, payments, refunds, flash sales (秒杀), group buys (拼团), order-history import"),
        (name = "analytics", description = "RFM, lifetime value, repurchase prediction"),
        (name = "ledger", description = "Double-entry balances: points, stored value, commissions"),
        (name = "membership", description = "The membership program: coupon templates, claims, redemption"),
        (name = "community", description = "Groups (社群), join links (群活码), check-ins (打卡), provably fair lotteries (抽奖)"),
        (name = "growth", description = "Referral campaigns (裂变, 老带新): invite codes, rewards, anti-fraud reviews, leaderboards, funnels"),
        (name = "events", description = "The event outbox"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "API key created by `shequn tenants create` or `shequn keys create`",
                    ))
                    .build(),
            ),
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Name of a schema reference or a short description of an inline schema.
fn schema_label(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "object".to_owned(),
    }
}

/// The documentation page: every operation with its parameters, body and responses, then
/// every schema.
pub fn render_page(openapi: &utoipa::openapi::OpenApi) -> String {
    let doc = serde_json::to_value(openapi).unwrap_or(Value::Null);
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>shequn API</title>\
         <style>body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}\
         h2{border-bottom:1px solid #ddd;margin-top:2em}.op{border:1px solid #e3e3e3;border-radius:6px;padding:.6em 1em;margin:1em 0}\
         .m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}\
         .get{color:#0a7}.post{color:#07c}.patch{color:#a60}.put{color:#a60}.delete{color:#c33}\
         code,pre{background:#f6f6f6;border-radius:4px;padding:0 .3em}pre{padding:.6em;overflow:auto}\
         table{border-collapse:collapse}td,th{border:1px solid #e3e3e3;padding:.2em .5em;text-align:left}</style></head><body>",
    );
    let info = &doc["info"];
    let _ = write!(
        html,
        "<h1>{} API <small>{}</small></h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}).</p>",
        escape(info["title"].as_str().unwrap_or("shequn")),
        escape(info["version"].as_str().unwrap_or("")),
        escape(info["description"].as_str().unwrap_or("")),
        escape(doc["openapi"].as_str().unwrap_or("3.1"))
    );
    html.push_str("<h2>Operations</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(methods) = item.as_object() else {
                continue;
            };
            for (method, op) in methods {
                let _ = write!(
                    html,
                    "<div class=\"op\" id=\"{method}-{}\"><span class=\"m {method}\">{method}</span> <code>{}</code>",
                    escape(path),
                    escape(path)
                );
                if let Some(summary) = op["summary"].as_str().or(op["description"].as_str()) {
                    let _ = write!(html, "<p>{}</p>", escape(summary));
                }
                if let Some(params) = op["parameters"].as_array() {
                    html.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>");
                    for p in params {
                        let _ =
                            write!(
                            html,
                            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            escape(p["name"].as_str().unwrap_or("")),
                            if p["required"].as_bool() == Some(true) { " *" } else { "" },
                            escape(p["in"].as_str().unwrap_or("")),
                            escape(&schema_label(&p["schema"])),
                            escape(p["description"].as_str().unwrap_or(""))
                        );
                    }
                    html.push_str("</table>");
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for (media, body) in content {
                        let _ = write!(
                            html,
                            "<p>Body (<code>{}</code>): <a href=\"#schema-{}\">{}</a></p>",
                            escape(media),
                            escape(&schema_label(&body["schema"])),
                            escape(&schema_label(&body["schema"]))
                        );
                    }
                }
                if let Some(responses) = op["responses"].as_object() {
                    html.push_str("<p>Responses: ");
                    for (status, response) in responses {
                        let body = response["content"]
                            .as_object()
                            .and_then(|c| c.values().next())
                            .map(|c| schema_label(&c["schema"]));
                        let _ = write!(
                            html,
                            "<code>{}</code>{} ",
                            escape(status),
                            body.map(|b| format!(" {}", escape(&b))).unwrap_or_default()
                        );
                    }
                    html.push_str("</p>");
                }
                html.push_str("</div>");
            }
        }
    }
    html.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(
                html,
                "<h3 id=\"schema-{}\">{}</h3><pre>{}</pre>",
                escape(name),
                escape(name),
                escape(&serde_json::to_string_pretty(schema).unwrap_or_default())
            );
        }
    }
    html.push_str("</body></html>");
    html
}
