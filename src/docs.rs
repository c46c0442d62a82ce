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

/// Finish the merged document (the domains' routes are only known after merging, so this is
/// not a [`Modify`]): every `/v1` operation is secured by the API key and documents the
/// answers the edge gives to any of them: 400 `invalid_request`, 401 `unauthorized`, 413
/// `payload_too_large`, 422 (`validation_failed`, `invalid_text`) and 429 `rate_limited` with
/// `Retry-After`, all in the shared `Error` shape.
pub fn complete(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{RefOr, Response, Schema};

    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    let error_schema: RefOr<Schema> = ObjectBuilder::new()
        .property(
            "error",
            ObjectBuilder::new()
                .property("code", text("stable machine-readable code"))
                .property("message", text("what went wrong, for people"))
                .property(
                    "details",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::AnyValue)
                        .description(Some("more about the error (e.g. `field`), or null")),
                )
                .required("code")
                .required("message"),
        )
        .required("error")
        .into();
    let response = |description: &str, retry_after: bool| -> RefOr<Response> {
        let mut value = serde_json::json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        });
        if retry_after {
            value["headers"] = serde_json::json!({"Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 1}
            }});
        }
        serde_json::from_value(value).expect("response")
    };
    let components = openapi.components.get_or_insert_with(Default::default);
    components.schemas.insert("Error".to_owned(), error_schema);
    let shared = [
        (
            "400",
            "BadRequest",
            response(
                "`invalid_request`: malformed JSON, a wrong type, an unknown field or parameter",
                false,
            ),
        ),
        (
            "401",
            "Unauthorized",
            response(
                "`unauthorized`: no `Authorization: Bearer <api key>`, or an unknown or revoked key",
                false,
            ),
        ),
        (
            "413",
            "PayloadTooLarge",
            response("`payload_too_large`: the body is over the limit", false),
        ),
        (
            "422",
            "Unprocessable",
            response(
                "`validation_failed` naming the field, `invalid_text` (text holding NUL), or a \
                 domain rule",
                false,
            ),
        ),
        (
            "429",
            "RateLimited",
            response(
                "`rate_limited`: over the key's or the address's rate, or too many failed \
                 authentications from the address",
                true,
            ),
        ),
    ];
    for (_, name, response) in &shared {
        components
            .responses
            .insert((*name).to_owned(), response.clone());
    }
    for (path, item) in openapi.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.security.as_ref().is_none_or(Vec::is_empty) {
                operation.security = Some(vec![SecurityRequirement::new(
                    "api_key",
                    Vec::<String>::new(),
                )]);
            }
            for (status, name, _) in &shared {
                let entry = operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| RefOr::Ref(utoipa::openapi::Ref::from_response_name(*name)));
                // A bare status the handler listed (no body) gets the shared description too.
                if let RefOr::T(own) = entry {
                    if own.content.is_empty() {
                        *entry = RefOr::Ref(utoipa::openapi::Ref::from_response_name(*name));
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// utoipa keys components by their short name, so two `ToSchema` types with one name
    /// silently replace each other in the document (that is how order refunds and referral
    /// settings came to be documented with the stored-value bodies). Every type deriving
    /// `ToSchema` must have a name of its own: its type name, or its `#[schema(as = …)]`.
    #[test]
    fn no_two_schemas_share_a_name() {
        fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("read src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        rust_files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let item = line
                    .trim_start_matches("pub ")
                    .trim_start_matches("pub(crate) ");
                let Some(rest) = item
                    .strip_prefix("struct ")
                    .or_else(|| item.strip_prefix("enum "))
                else {
                    continue;
                };
                let type_name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // The attributes above the item.
                let mut start = i;
                while start > 0 {
                    let above = lines[start - 1].trim_start();
                    if above.starts_with("#[")
                        || above.starts_with("///")
                        || above.starts_with(')')
                        || (lines[start - 1].starts_with(' ') && !above.is_empty())
                    {
                        start -= 1;
                    } else {
                        break;
                    }
                }
                let attributes = lines[start..i].join(" ");
                if !attributes.contains("ToSchema") {
                    continue;
                }
                let name = attributes
                    .split("schema(as = ")
                    .nth(1)
                    .and_then(|rest| rest.split([')', ',']).next())
                    .map(|path| path.rsplit("::").next().unwrap_or(path).trim().to_owned())
                    .unwrap_or(type_name.clone());
                names.entry(name).or_default().push(format!(
                    "{}:{} {type_name}",
                    file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&file)
                        .display(),
                    i + 1
                ));
            }
        }
        assert!(names.len() > 50, "found too few schemas: {names:?}");
        let collisions: Vec<_> = names.iter().filter(|(_, at)| at.len() > 1).collect();
        assert!(
            collisions.is_empty(),
            "schema names used twice: {collisions:#?}"
        );
    }
}
