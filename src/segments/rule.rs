//! The audience rule language: parsing JSON into a [`Rule`], with the path of the first
//! offending node on error. Pure: no I/O, unit-tested here and property-tested against the
//! index in [`super::index`].
//!
//! ```json
//! {"all": [{"tier": "金卡"},
//!          {"field": "last_order_days", "lte": 30},
//!          {"not": {"field": "last_order_days", "lte": 6}}]}
//! ```
//!
//! | node | matches an active member who… |
//! | --- | --- |
//! | `{"all": [R, …]}` / `{"any": [R, …]}` | matches every / at least one rule (1 to [`MAX_CHILDREN`] rules) |
//! | `{"not": R}` | does not match `R` |
//! | `{"tag": T}`, `{"source": S}`, `{"tier": NAME}` | has the tag, came from the source, is in the tier |
//! | `{"rfm_segment": S}`, `{"lifecycle_stage": S}` | is in that segment / stage of the last scoring run |
//! | `{"group": "grp_…"}` | is in that group now |
//! | `{"referral_campaign": "rfc_…"}` | was attributed to an inviter in that campaign (not refused) |
//! | `{"consent_marketing": true}` | has (true) or has not (false) consented to marketing |
//! | `{"invited_by": "mem_…"}` | was invited by that member |
//! | `{"field": F, "gte": X, "lte": Y}` | has a value of `F` with `X ≤ value ≤ Y` (either bound may be absent; a member without a value never matches) |
//!
//! Rules nest up to [`MAX_DEPTH`] levels and hold at most [`MAX_NODES`] nodes.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Deepest nesting of `all` / `any` / `not` (the root is depth 1).
pub const MAX_DEPTH: usize = 16;
/// Most nodes in one rule.
pub const MAX_NODES: usize = 500;
/// Most rules in one `all` or `any`.
pub const MAX_CHILDREN: usize = 100;
/// Longest tag, source or tier name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The RFM segments a rule can name (the analytics segments).
pub const RFM_SEGMENTS: [&str; 8] = crate::members::model::RFM_SEGMENTS;
/// The lifecycle stages a rule can name (`analytics::lifecycle`).
pub const LIFECYCLE_STAGES: [&str; 6] =
    ["new", "active", "won_back", "at_risk", "lapsed", "advocate"];

/// A numeric field a range can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Paid orders (paid, fulfilled or completed; an order refunded in full no longer counts).
    OrdersCount,
    /// What those orders paid, net of partial refunds (fen).
    TotalSpent,
    /// Whole tenant-local days since the last paid order (none without a paid order).
    LastOrderDays,
    /// Whole tenant-local days since the member was created.
    JoinedDays,
    /// Posted points balance.
    PointsBalance,
    /// P(alive) of the last scoring run, 0 to 1 (none when the model could not be fitted).
    PAlive,
    /// Customer lifetime value of the last scoring run, fen (none when not fitted).
    Clv,
    /// Days until the next birthday, 0 on the day (none without a birthday). A 29 February
    /// birthday falls on 28 February in other years, as the birthday perk has it.
    BirthdayInDays,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::OrdersCount,
        Field::TotalSpent,
        Field::LastOrderDays,
        Field::JoinedDays,
        Field::PointsBalance,
        Field::PAlive,
        Field::Clv,
        Field::BirthdayInDays,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::OrdersCount => "orders_count",
            Field::TotalSpent => "total_spent",
            Field::LastOrderDays => "last_order_days",
            Field::JoinedDays => "joined_days",
            Field::PointsBalance => "points_balance",
            Field::PAlive => "p_alive",
            Field::Clv => "clv",
            Field::BirthdayInDays => "birthday_in_days",
        }
    }

    fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A set predicate: which facts of a member it names.
#[derive(Debug, Clone, PartialEq)]
pub enum Set {
    Tag(String),
    Source(String),
    Tier(String),
    RfmSegment(String),
    LifecycleStage(String),
    Group(String),
    ReferralCampaign(String),
    ConsentMarketing(bool),
    InvitedBy(String),
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Is(Set),
    /// `gte ≤ value ≤ lte`; bounds are finite.
    Range {
        field: Field,
        gte: Option<f64>,
        lte: Option<f64>,
    },
}

/// Why a rule was refused: the path of the offending node (`rule.all[1].field`) and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    pub path: String,
    pub expected: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: expected {}", self.path, self.expected)
    }
}

impl std::error::Error for RuleError {}

/// Parse a rule given at `root` (the name of the request field, e.g. `rule`).
pub fn parse(value: &Value, root: &str) -> Result<Rule, RuleError> {
    let mut parser = Parser { nodes: 0 };
    parser.node(value, root, 1)
}

struct Parser {
    nodes: usize,
}

fn error(path: &str, expected: impl Into<String>) -> RuleError {
    RuleError {
        path: path.to_owned(),
        expected: expected.into(),
    }
}

const NODE_KINDS: &str = "an object with one of all, any, not, tag, source, tier, rfm_segment, \
    lifecycle_stage, group, referral_campaign, consent_marketing, invited_by, or a range \
    {\"field\", \"gte\", \"lte\"}";

impl Parser {
    fn node(&mut self, value: &Value, path: &str, depth: usize) -> Result<Rule, RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(error(path, format!("at most {MAX_NODES} nodes in a rule")));
        }
        if depth > MAX_DEPTH {
            return Err(error(
                path,
                format!("at most {MAX_DEPTH} levels of nesting"),
            ));
        }
        let Value::Object(object) = value else {
            return Err(error(path, NODE_KINDS));
        };
        if object.contains_key("field") {
            return range(object, path);
        }
        let mut keys = object.keys();
        let (Some(key), None) = (keys.next(), keys.next()) else {
            return Err(error(path, NODE_KINDS));
        };
        let value = &object[key];
        let child = format!("{path}.{key}");
        match key.as_str() {
            "all" | "any" => {
                let Value::Array(items) = value else {
                    return Err(error(
                        &child,
                        format!("an array of 1 to {MAX_CHILDREN} rules"),
                    ));
                };
                if items.is_empty() || items.len() > MAX_CHILDREN {
                    return Err(error(
                        &child,
                        format!("an array of 1 to {MAX_CHILDREN} rules"),
                    ));
                }
                let rules = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.node(item, &format!("{child}[{i}]"), depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if key == "all" {
                    Rule::All(rules)
                } else {
                    Rule::Any(rules)
                })
            }
            "not" => Ok(Rule::Not(Box::new(self.node(value, &child, depth + 1)?))),
            "tag" => name(value, &child).map(|v| Rule::Is(Set::Tag(v))),
            "source" => name(value, &child).map(|v| Rule::Is(Set::Source(v))),
            "tier" => name(value, &child).map(|v| Rule::Is(Set::Tier(v))),
            "rfm_segment" => {
                one_of(value, &child, &RFM_SEGMENTS).map(|v| Rule::Is(Set::RfmSegment(v)))
            }
            "lifecycle_stage" => {
                one_of(value, &child, &LIFECYCLE_STAGES).map(|v| Rule::Is(Set::LifecycleStage(v)))
            }
            "group" => id(value, &child, "grp").map(|v| Rule::Is(Set::Group(v))),
            "referral_campaign" => {
                id(value, &child, "rfc").map(|v| Rule::Is(Set::ReferralCampaign(v)))
            }
            "invited_by" => id(value, &child, "mem").map(|v| Rule::Is(Set::InvitedBy(v))),
            "consent_marketing" => match value {
                Value::Bool(b) => Ok(Rule::Is(Set::ConsentMarketing(*b))),
                _ => Err(error(&child, "true or false")),
            },
            _ => Err(error(path, NODE_KINDS)),
        }
    }
}

fn range(object: &Map<String, Value>, path: &str) -> Result<Rule, RuleError> {
    if let Some(extra) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "field" | "gte" | "lte"))
    {
        return Err(error(
            &format!("{path}.{extra}"),
            "no other key than field, gte and lte in a range",
        ));
    }
    let field_path = format!("{path}.field");
    let fields = Field::ALL.map(Field::name).join(", ");
    let field = object["field"]
        .as_str()
        .and_then(Field::parse)
        .ok_or_else(|| error(&field_path, format!("one of {fields}")))?;
    let bound = |key: &str| -> Result<Option<f64>, RuleError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(error(&format!("{path}.{key}"), "a finite number")),
            },
            Some(_) => Err(error(&format!("{path}.{key}"), "a number")),
        }
    };
    let gte = bound("gte")?;
    let lte = bound("lte")?;
    if let (Some(low), Some(high)) = (gte, lte) {
        if low > high {
            return Err(error(&format!("{path}.lte"), "a number not below gte"));
        }
    }
    Ok(Rule::Range { field, gte, lte })
}

fn name(value: &Value, path: &str) -> Result<String, RuleError> {
    let expected = format!("a non-empty string of at most {MAX_NAME_CHARS} characters");
    match value {
        Value::String(s)
            if !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS && !s.contains('\0') =>
        {
            Ok(s.clone())
        }
        _ => Err(error(path, expected)),
    }
}

fn one_of(value: &Value, path: &str, allowed: &[&str]) -> Result<String, RuleError> {
    match value {
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(s.clone()),
        _ => Err(error(path, format!("one of {}", allowed.join(", ")))),
    }
}

fn id(value: &Value, path: &str, prefix: &str) -> Result<String, RuleError> {
    match value {
        Value::String(s) if crate::common::ids::has_shape(s, prefix) => Ok(s.clone()),
        _ => Err(error(path, format!("an id {prefix}_…"))),
    }
}

impl Rule {
    /// The rule back as JSON, in the form [`parse`] takes.
    pub fn to_json(&self) -> Value {
        use serde_json::json;
        match self {
            Rule::All(rules) => {
                json!({ "all": rules.iter().map(Rule::to_json).collect::<Vec<_>>() })
            }
            Rule::Any(rules) => {
                json!({ "any": rules.iter().map(Rule::to_json).collect::<Vec<_>>() })
            }
            Rule::Not(rule) => json!({ "not": rule.to_json() }),
            Rule::Is(set) => match set {
                Set::Tag(v) => json!({ "tag": v }),
                Set::Source(v) => json!({ "source": v }),
                Set::Tier(v) => json!({ "tier": v }),
                Set::RfmSegment(v) => json!({ "rfm_segment": v }),
                Set::LifecycleStage(v) => json!({ "lifecycle_stage": v }),
                Set::Group(v) => json!({ "group": v }),
                Set::ReferralCampaign(v) => json!({ "referral_campaign": v }),
                Set::ConsentMarketing(v) => json!({ "consent_marketing": v }),
                Set::InvitedBy(v) => json!({ "invited_by": v }),
            },
            Rule::Range { field, gte, lte } => {
                let mut object = Map::new();
                object.insert("field".into(), json!(field.name()));
                if let Some(x) = gte {
                    object.insert("gte".into(), number(*x));
                }
                if let Some(x) = lte {
                    object.insert("lte".into(), number(*x));
                }
                Value::Object(object)
            }
        }
    }
}

/// A bound as JSON: a whole number stays an integer.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MEM: &str = "mem_0193aaaabbbbccccddddeeeeffff0000";

    fn err(value: Value) -> RuleError {
        parse(&value, "rule").unwrap_err()
    }

    #[test]
    fn parses_every_node_kind_and_round_trips() {
        let rule = json!({"all": [
            {"tag": "vip"}, {"source": "xiaohongshu"}, {"tier": "金卡"},
            {"rfm_segment": "champions"}, {"lifecycle_stage": "at_risk"},
            {"group": "grp_0193aaaabbbbccccddddeeeeffff0000"},
            {"referral_campaign": "rfc_0193aaaabbbbccccddddeeeeffff0000"},
            {"consent_marketing": true}, {"invited_by": MEM},
            {"any": [{"field": "orders_count", "gte": 2}, {"not": {"field": "p_alive", "lte": 0.5}}]},
            {"field": "birthday_in_days", "lte": 7}
        ]});
        let parsed = parse(&rule, "rule").unwrap();
        assert_eq!(parsed.to_json(), rule);
        assert_eq!(parse(&parsed.to_json(), "rule").unwrap(), parsed);
    }

    #[test]
    fn errors_name_the_offending_path() {
        let e = err(json!({"all": [{"tag": "a"}, {"field": "height", "gte": 1}]}));
        assert_eq!(e.path, "rule.all[1].field");
        assert!(e.expected.contains("orders_count"), "{e}");
        assert_eq!(err(json!({"any": []})).path, "rule.any");
        assert_eq!(err(json!({"not": {"not": 3}})).path, "rule.not.not");
        assert_eq!(err(json!({"tag": "a", "source": "b"})).path, "rule");
        assert_eq!(err(json!({"colour": "red"})).path, "rule");
        assert_eq!(err(json!([])).path, "rule");
        assert_eq!(
            err(json!({"rfm_segment": "kings"})).path,
            "rule.rfm_segment"
        );
        assert_eq!(err(json!({"group": "mem_x"})).path, "rule.group");
        assert_eq!(
            err(json!({"invited_by": "grp_0193aaaabbbbccccddddeeeeffff0000"})).path,
            "rule.invited_by"
        );
        assert_eq!(
            err(json!({"consent_marketing": "yes"})).path,
            "rule.consent_marketing"
        );
        assert_eq!(err(json!({"tag": ""})).path, "rule.tag");
        assert_eq!(err(json!({"tag": "x".repeat(101)})).path, "rule.tag");
        assert_eq!(err(json!({"field": "clv", "gte": "1"})).path, "rule.gte");
        assert_eq!(
            err(json!({"field": "clv", "gte": 5, "lte": 4})).path,
            "rule.lte"
        );
        assert_eq!(err(json!({"field": "clv", "min": 5})).path, "rule.min");
        assert_eq!(err(json!({"field": 3})).path, "rule.field");
    }

    #[test]
    fn a_range_may_leave_out_either_bound() {
        assert_eq!(
            parse(&json!({"field": "clv"}), "rule").unwrap(),
            Rule::Range {
                field: Field::Clv,
                gte: None,
                lte: None
            }
        );
        assert_eq!(
            parse(&json!({"field": "clv", "gte": null, "lte": 3}), "rule").unwrap(),
            Rule::Range {
                field: Field::Clv,
                gte: None,
                lte: Some(3.0)
            }
        );
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let mut deep = json!({"tag": "a"});
        for _ in 0..MAX_DEPTH - 1 {
            deep = json!({ "not": deep });
        }
        assert!(parse(&deep, "rule").is_ok());
        let too_deep = json!({ "not": deep });
        assert!(err(too_deep).expected.contains("levels"));
        let wide = json!({"any": (0..MAX_CHILDREN).map(|i| json!({"any": [{"tag": i.to_string()}, {"tag": "x"}, {"tag": "y"}, {"tag": "z"}, {"tag": "w"}]})).collect::<Vec<_>>()});
        assert!(err(wide).expected.contains("nodes"));
        let too_many =
            json!({"all": (0..=MAX_CHILDREN).map(|_| json!({"tag": "a"})).collect::<Vec<_>>()});
        assert_eq!(err(too_many).path, "rule.all");
    }
}
