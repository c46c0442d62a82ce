//! The API description: the OpenAPI 3.1 document generated from the handlers' annotations
//! (utoipa) and a readable HTML page rendered from it on the server.
//!
//! The page is plain HTML and CSS produced here rather than Swagger UI or Redoc: those ship
//! JavaScript bundles that their Rust wrappers download at build time or load from a CDN,
//! and shequn must build and run on an offline server.
//!
//! The page also carries the two catalogues a newcomer needs, generated from the code: every
//! event kind with its payload ([`crate::common::events::EVENT_TYPES`]) and every error code
//! with its status and meaning ([`crate::common::error::ERROR_CODES`]). A test here reads the
//! source tree and fails when an emitted event kind, a payload field or an error code is
//! missing from them, or when a catalogue entry is no longer used.

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
        (name = "engagement", description = "Messages through the gate (consent, frequency cap, quiet hours), webhooks, event export"),
        (name = "segments", description = "Audiences (人群): rules over tags, source, tier, scores, groups, referrals, orders and points; preview, saved segments, their members and export"),
        (name = "ledger", description = "Double-entry balances: points, stored value, commissions"),
        (name = "membership", description = "The membership program: coupon templates, claims, redemption"),
        (name = "community", description = "Groups (社群), join links (群活码), check-ins (打卡), provably fair lotteries (抽奖)"),
        (name = "growth", description = "Referral campaigns (裂变, 老带新): invite codes, rewards, anti-fraud reviews, leaderboards, funnels"),
        (name = "distribution", description = "Distribution (分销): promoters, customer bindings, two-level commissions within the law, withdrawals, reports"),
        (name = "neighbourhood", description = "Community group buying (社区团购): leaders and pickup points, waves with cut-offs, pick and purchase lists, pickup codes, shortage refunds, leader commission"),
        (name = "subscriptions", description = "Subscriptions (周期购): plans, a delivery calendar in the tenant's zone, prepaid or per-delivery billing, skips, pauses, cancellation with exact refunds, the warehouse forecast"),
        (name = "alliance", description = "Merchant alliance (商家联盟): alliances of tenants, shared coupon offers (withdrawable), referral links, cross-referral fees, balances, paged statements, settlements"),
        (name = "codes", description = "One item, one code (一物一码): code batches for the printer, scans that prove a package genuine, pay points once and flag cloned labels"),
        (name = "events", description = "The event outbox"),
        (name = "tenant", description = "The calling tenant's settings: its time zone"),
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
    render_events(&mut html);
    render_errors(&mut html);
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

/// The event catalogue: every kind `GET /v1/events` can return, with its `data` fields.
fn render_events(html: &mut String) {
    html.push_str(
        "<h2 id=\"events\">Events</h2><p>Every state change appends an event to the outbox \
         (<code>GET /v1/events?after=SEQ</code>): <code>{\"seq\", \"kind\", \"subject\", \"at\", \
         \"data\"}</code>. Payloads carry ids and the names of changed fields, never personal \
         values.</p><table><tr><th>kind</th><th>meaning</th><th>data</th></tr>",
    );
    for event in crate::common::events::EVENT_TYPES {
        let fields: Vec<String> = event
            .payload
            .iter()
            .map(|f| {
                if f.starts_with('(') {
                    escape(f)
                } else {
                    format!("<code>{}</code>", escape(f))
                }
            })
            .collect();
        let _ = write!(
            html,
            "<tr id=\"event-{}\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(event.kind),
            escape(event.kind),
            escape(event.description),
            fields.join(", ")
        );
    }
    html.push_str("</table>");
}

/// The error catalogue: every `error.code` with its status and meaning.
fn render_errors(html: &mut String) {
    html.push_str(
        "<h2 id=\"errors\">Errors</h2><p>Every error is <code>{\"error\": {\"code\", \
         \"message\", \"details\"}}</code>; the code is stable, the message is for people.</p>\
         <table><tr><th>code</th><th>status</th><th>meaning</th></tr>",
    );
    for entry in crate::common::error::ERROR_CODES {
        let _ = write!(
            html,
            "<tr id=\"error-{}\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(entry.code),
            escape(entry.code),
            entry.status,
            escape(entry.meaning)
        );
    }
    html.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// utoipa keys components by their short name, so two `ToSchema` types with one name
    /// silently replace each other in the document (that is how order refunds and referral
    /// settings came to be documented with the stored-value bodies). Every type deriving
    /// `ToSchema` must have a name of its own: its type name, or its `#[schema(as = …)]`.
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

    /// Every source file under `src/` with its text up to its test module (tests emit and
    /// refuse with made-up codes on purpose).
    fn sources() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        files.sort();
        files
            .into_iter()
            .map(|file| {
                let text = std::fs::read_to_string(&file).expect("read");
                let text = match text.find("#[cfg(test)]") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                };
                let name = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                (name, text)
            })
            .collect()
    }

    /// The end of the call argument starting at `from` (the index of the `,` or `)` that
    /// closes it), skipping nested brackets and string literals.
    fn argument_end(text: &str, from: usize) -> usize {
        let bytes = text.as_bytes();
        let (mut depth, mut i) = (0i32, from);
        while i < bytes.len() {
            match bytes[i] {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => return i,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => return i,
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    }

    /// The arguments of the call whose `(` ends at `open_end`, trimmed.
    fn arguments(text: &str, open_end: usize) -> Vec<&str> {
        let mut out = Vec::new();
        let mut at = open_end;
        loop {
            let end = argument_end(text, at);
            out.push(text[at..end].trim());
            if end >= text.len() || text.as_bytes()[end] != b',' {
                return out;
            }
            at = end + 1;
        }
    }

    /// The string literal an argument is, if it is one.
    fn literal(argument: &str) -> Option<&str> {
        argument.strip_prefix('"')?.strip_suffix('"')
    }

    /// The top-level keys of a `json!({ ... })` argument (none for other arguments).
    fn json_keys(argument: &str) -> Vec<&str> {
        let Some(inner) = argument
            .strip_prefix("json!(")
            .or_else(|| argument.strip_prefix("serde_json::json!("))
            .and_then(|rest| rest.trim_start().strip_prefix('{'))
        else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        let mut at = 0;
        while at < inner.len() {
            let end = argument_end(inner, at);
            let entry = inner[at..end].trim();
            if let Some((key, _)) = entry.split_once(':') {
                if let Some(key) = literal(key.trim()) {
                    keys.push(key);
                }
            }
            if end >= inner.len() || inner.as_bytes()[end] != b',' {
                break;
            }
            at = end + 1;
        }
        keys
    }

    /// String literals shaped like event kinds (`area.what`) in `text`.
    fn kind_literals(text: &str) -> Vec<&str> {
        text.split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| {
                s.split_once('.').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                })
            })
            .collect()
    }

    #[test]
    fn every_emitted_event_kind_and_payload_field_is_in_the_catalogue() {
        use crate::common::events::{event_type_of, EVENT_TYPES};
        let mut emitted = std::collections::BTreeSet::new();
        let mut problems = Vec::new();
        let sources = sources();
        // Helpers that build an event from a `kind: &'static str` argument.
        let mut helpers = Vec::new();
        for (_, text) in &sources {
            for (at, _) in text.match_indices("kind: &'static str") {
                let head = &text[..at];
                let Some(fn_at) = head.rfind("fn ") else {
                    continue;
                };
                let name: String = head[fn_at + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let body_end = text[at..].find("\n}").map_or(text.len(), |e| at + e);
                if text[at..body_end].contains("NewEvent::new(") && name != "new" {
                    helpers.push(name);
                }
            }
        }
        for (file, text) in &sources {
            let mut check = |kind: &str, keys: &[&str], at: usize| {
                let line = text[..at].lines().count();
                emitted.insert(kind.to_owned());
                match event_type_of(kind) {
                    None => problems.push(format!("{file}:{line}: event {kind:?} not catalogued")),
                    Some(entry) => {
                        for key in keys {
                            if !entry.payload.contains(key) {
                                problems.push(format!(
                                    "{file}:{line}: field {key:?} of {kind:?} not catalogued"
                                ));
                            }
                        }
                    }
                }
            };
            for (at, call) in text.match_indices("NewEvent::new(") {
                let args = arguments(text, at + call.len());
                let Some(kind) = args.get(1) else { continue };
                let keys = args.get(3).map(|a| json_keys(a)).unwrap_or_default();
                match literal(kind) {
                    Some(kind) => check(kind, &keys, at),
                    None => {
                        // A kind chosen just before the call: the literals since the
                        // enclosing function's start.
                        let start = text[..at].rfind("fn ").unwrap_or(0);
                        for kind in kind_literals(&text[start..at]) {
                            if !kind.ends_with("_at") {
                                check(kind, &keys, at);
                            }
                        }
                    }
                }
            }
            for helper in &helpers {
                let call = format!("{helper}(");
                for (at, _) in text.match_indices(&call) {
                    let before = text[..at].chars().last().unwrap_or(' ');
                    if before.is_alphanumeric() || before == '_' || text[..at].ends_with("fn ") {
                        continue;
                    }
                    let args = arguments(text, at + call.len());
                    if let Some(kind) = args.get(1).and_then(|a| literal(a)) {
                        check(kind, &[], at);
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(emitted.len() > 60, "found too few events: {emitted:?}");
        let stale: Vec<_> = EVENT_TYPES
            .iter()
            .filter(|e| !emitted.contains(e.kind))
            .map(|e| e.kind)
            .collect();
        assert!(stale.is_empty(), "catalogued but never emitted: {stale:?}");
        let mut kinds: Vec<_> = EVENT_TYPES.iter().map(|e| e.kind).collect();
        kinds.dedup();
        assert!(
            kinds.windows(2).all(|w| w[0] < w[1]),
            "the catalogue is sorted, each kind once"
        );
    }

    #[test]
    fn every_error_code_is_a_catalogue_constant_used_somewhere() {
        use crate::common::error::{error_code_of, ERROR_CODES};
        let mut used = std::collections::BTreeSet::new();
        let mut problems = Vec::new();
        for (file, text) in sources() {
            // Codes are constants of `codes`, never free strings at a call site.
            for (at, call) in text.match_indices("ApiError::new(") {
                if file.ends_with("common/error.rs") {
                    continue;
                }
                let line = text[..at].lines().count();
                let args = arguments(&text, at + call.len());
                if args.get(1).and_then(|a| literal(a)).is_some() {
                    problems.push(format!(
                        "{file}:{line}: a free-string error code; use ApiError::coded(codes::…)"
                    ));
                }
            }
            for (at, call) in text.match_indices("ApiError::conflict(") {
                let line = text[..at].lines().count();
                let args = arguments(&text, at + call.len());
                let Some(name) = args.first().and_then(|a| a.trim().rsplit("codes::").next())
                else {
                    continue;
                };
                // `conflict` names 409 codes only.
                if let Some(entry) = error_code_of(&name.trim().to_lowercase()) {
                    if entry.status != 409 {
                        problems.push(format!(
                            "{file}:{line}: conflict({name}) but the catalogue sends {}",
                            entry.status
                        ));
                    }
                }
            }
            if !file.ends_with("common/error.rs") {
                used.extend(error_constants(&text));
            }
        }
        // The constructors of error.rs name their own codes.
        for own in [
            "invalid_request",
            "unauthorized",
            "not_found",
            "payload_too_large",
            "validation_failed",
            "invalid_text",
            "rate_limited",
            "internal",
            "unavailable",
        ] {
            used.insert(own.to_owned());
        }
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(used.len() > 60, "found too few codes: {used:?}");
        let stale: Vec<_> = ERROR_CODES
            .iter()
            .filter(|e| !used.contains(e.code))
            .map(|e| e.code)
            .collect();
        assert!(stale.is_empty(), "catalogued but never used: {stale:?}");
        let unknown = missing_from_catalogue(&used);
        assert!(
            unknown.is_empty(),
            "codes:: constants missing from ERROR_CODES: {unknown:?}"
        );
    }

    /// The error-code constants a source text names, as codes: every `codes::NAME` whose name
    /// is an all-uppercase identifier (`codes::OUT_OF_STOCK` → `out_of_stock`). Anything else
    /// after a `codes::` path (a type such as `CodeHooks`, a function, a submodule of another
    /// `codes` module) is no error constant, and neither is a longer path segment that merely
    /// ends in `codes` (`item_codes::`).
    fn error_constants(text: &str) -> Vec<String> {
        let is_identifier = |c: char| c.is_ascii_alphanumeric() || c == '_';
        text.match_indices("codes::")
            .filter(|(at, _)| !text[..*at].ends_with(is_identifier))
            .filter_map(|(at, path)| {
                let rest = &text[at + path.len()..];
                let end = rest.find(|c| !is_identifier(c)).unwrap_or(rest.len());
                let name = &rest[..end];
                let constant = name.starts_with(|c: char| c.is_ascii_uppercase())
                    && !name.contains(|c: char| c.is_ascii_lowercase());
                constant.then(|| name.to_lowercase())
            })
            .collect()
    }

    /// The codes of `used` that ERROR_CODES does not list.
    fn missing_from_catalogue(used: &std::collections::BTreeSet<String>) -> Vec<&str> {
        used.iter()
            .map(String::as_str)
            .filter(|code| crate::common::error::error_code_of(code).is_none())
            .collect()
    }

    #[test]
    fn error_constants_are_the_all_uppercase_names_after_codes_and_unknown_ones_are_caught() {
        let text = "ApiError::conflict(codes::OUT_OF_STOCK, \"gone\"); \
                    .member(crate::codes::CodeHooks); codes::CodeBatchId::generate(); \
                    crate::bench::codes::Options; codes::store::batch(); pages::codes::routes(); \
                    super::error::codes::SOLD_OUT; item_codes::MAX_CODES; \
                    ApiError::coded(codes::NOT_IN_THE_CATALOGUE_2, \"made up\")";
        let found = error_constants(text);
        assert_eq!(
            found,
            ["out_of_stock", "sold_out", "not_in_the_catalogue_2"],
            "{found:?}"
        );
        let used = found.into_iter().collect();
        assert_eq!(missing_from_catalogue(&used), ["not_in_the_catalogue_2"]);
    }

    #[test]
    fn the_page_lists_every_event_kind_and_error_code() {
        let mut openapi = <super::ApiDoc as utoipa::OpenApi>::openapi();
        super::complete(&mut openapi);
        let page = super::render_page(&openapi);
        for event in crate::common::events::EVENT_TYPES {
            assert!(
                page.contains(&format!("id=\"event-{}\"", event.kind)),
                "{}",
                event.kind
            );
        }
        for entry in crate::common::error::ERROR_CODES {
            assert!(
                page.contains(&format!("id=\"error-{}\"", entry.code)),
                "{}",
                entry.code
            );
        }
        assert!(page.contains("<h2 id=\"events\">") && page.contains("<h2 id=\"errors\">"));
    }

    #[test]
    fn no_two_schemas_share_a_name() {
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
