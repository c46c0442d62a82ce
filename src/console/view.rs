//! The page shell (navigation, language switch, sign-out) and the small pieces every page uses:
//! money in yuan from fen, instants in the tenant's zone, forms that carry their CSRF token and
//! one-time key, charts described as ECharts options, values read out of `/v1` answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::assets;
use super::i18n::{Lang, Message, Msg};
use super::session::{random_token, Signed};

/// The sections in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Members,
    Segments,
    Engagement,
    Program,
    Coupons,
    Products,
    Orders,
    Sales,
    Referrals,
    Distribution,
    Neighbourhood,
    Subscriptions,
    Alliance,
    Codes,
    Community,
    Analytics,
    Settings,
    Audit,
}

/// The labelled groups the navigation shows its sections in, in order: what an operator looks
/// for together (the figures; the customers and their clubs; what is sold; the campaigns that
/// bring sales; the partners paid for them; the shop's own settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NavGroup {
    /// The overview and the customer analytics.
    Insight,
    /// Members, their saved segments, the membership program and the communities they meet in.
    Customers,
    /// Products, orders and subscriptions (周期购).
    Commerce,
    /// Flash sales and group buys, coupons, referrals, automations and item codes.
    Marketing,
    /// Promoters (distribution), group-buying leaders and alliance merchants: the partners
    /// who sell for the shop and are paid for it.
    Partners,
    /// Settings and the audit log.
    Administration,
}

impl NavGroup {
    const ALL: [NavGroup; 6] = [
        NavGroup::Insight,
        NavGroup::Customers,
        NavGroup::Commerce,
        NavGroup::Marketing,
        NavGroup::Partners,
        NavGroup::Administration,
    ];

    fn label(self) -> Msg {
        match self {
            NavGroup::Insight => Msg::NavInsight,
            NavGroup::Customers => Msg::NavCustomers,
            NavGroup::Commerce => Msg::NavCommerce,
            NavGroup::Marketing => Msg::NavMarketing,
            NavGroup::Partners => Msg::NavPartners,
            NavGroup::Administration => Msg::NavAdministration,
        }
    }

    /// The id of the group's heading (the group's list is labelled by it).
    fn heading_id(self) -> &'static str {
        match self {
            NavGroup::Insight => "nav-insight",
            NavGroup::Customers => "nav-customers",
            NavGroup::Commerce => "nav-commerce",
            NavGroup::Marketing => "nav-marketing",
            NavGroup::Partners => "nav-partners",
            NavGroup::Administration => "nav-administration",
        }
    }

    /// The group's sections, in the order of [`Nav::ALL`].
    fn sections(self) -> impl Iterator<Item = Nav> {
        Nav::ALL.into_iter().filter(move |nav| nav.group() == self)
    }
}

impl Nav {
    /// The sections shown, in order within their groups; a section joins when its pages exist.
    const ALL: [Nav; 19] = [
        Nav::Dashboard,
        Nav::Analytics,
        Nav::Members,
        Nav::Segments,
        Nav::Program,
        Nav::Community,
        Nav::Products,
        Nav::Orders,
        Nav::Subscriptions,
        Nav::Sales,
        Nav::Coupons,
        Nav::Referrals,
        Nav::Engagement,
        Nav::Codes,
        Nav::Distribution,
        Nav::Neighbourhood,
        Nav::Alliance,
        Nav::Settings,
        Nav::Audit,
    ];

    /// The group a section is shown in (every section has one: the match has no wildcard).
    fn group(self) -> NavGroup {
        match self {
            Nav::Dashboard | Nav::Analytics => NavGroup::Insight,
            Nav::Members | Nav::Segments | Nav::Program | Nav::Community => NavGroup::Customers,
            Nav::Products | Nav::Orders | Nav::Subscriptions => NavGroup::Commerce,
            Nav::Sales | Nav::Coupons | Nav::Referrals | Nav::Engagement | Nav::Codes => {
                NavGroup::Marketing
            }
            Nav::Distribution | Nav::Neighbourhood | Nav::Alliance => NavGroup::Partners,
            Nav::Settings | Nav::Audit => NavGroup::Administration,
        }
    }

    fn href(self) -> &'static str {
        match self {
            Nav::Dashboard => "/console/",
            Nav::Members => "/console/members",
            Nav::Segments => "/console/segments",
            Nav::Engagement => "/console/engagement",
            Nav::Program => "/console/program",
            Nav::Coupons => "/console/coupons",
            Nav::Products => "/console/products",
            Nav::Orders => "/console/orders",
            Nav::Sales => "/console/sales",
            Nav::Referrals => "/console/referrals",
            Nav::Distribution => "/console/distribution",
            Nav::Neighbourhood => "/console/neighbourhood",
            Nav::Subscriptions => "/console/subscriptions",
            Nav::Alliance => "/console/alliance",
            Nav::Codes => "/console/codes",
            Nav::Community => "/console/community",
            Nav::Analytics => "/console/analytics",
            Nav::Settings => "/console/settings",
            Nav::Audit => "/console/audit",
        }
    }

    fn label(self) -> Msg {
        match self {
            Nav::Dashboard => Msg::Dashboard,
            Nav::Members => Msg::Members,
            Nav::Segments => Msg::Segments,
            Nav::Engagement => Msg::Engagement,
            Nav::Program => Msg::Program,
            Nav::Coupons => Msg::Coupons,
            Nav::Products => Msg::Products,
            Nav::Orders => Msg::Orders,
            Nav::Sales => Msg::Sales,
            Nav::Referrals => Msg::Referrals,
            Nav::Distribution => Msg::Distribution,
            Nav::Neighbourhood => Msg::Neighbourhood,
            Nav::Subscriptions => Msg::Subscriptions,
            Nav::Alliance => Msg::Alliance,
            Nav::Codes => Msg::Codes,
            Nav::Community => Msg::Community,
            Nav::Analytics => Msg::Analytics,
            Nav::Settings => Msg::Settings,
            Nav::Audit => Msg::AuditLog,
        }
    }
}

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        // No favicon request: the browser would ask the server for /favicon.ico.
        link rel="icon" href="data:,";
        meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
        title { (title) " · " (Msg::Console.text(lang)) }
        link rel="stylesheet" href=(assets::url("console.css"));
        script src=(assets::url("htmx.min.js")) defer {}
        script src=(assets::url("echarts.min.js")) defer {}
        script src=(assets::url("console.js")) defer {}
    }
}

/// A full page for a signed-in operator.
pub fn page(signed: &Signed, active: Nav, title: &str, body: Markup) -> Response {
    let lang = signed.lang;
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(lang, title)) }
            body {
                header.top {
                    a.brand href="/console/" { (Msg::Console.text(lang)) }
                    div.who {
                        span.email { (signed.operator.email) " · " (signed.t(signed.operator.role.label())) }
                        form method="post" action="/console/language" {
                            (csrf(signed))
                            @for other in Lang::ALL {
                                @if other != lang {
                                    button.link type="submit" name="lang" value=(other.code()) { (other.name()) }
                                }
                            }
                        }
                        form method="post" action="/console/logout" {
                            (csrf(signed))
                            button.link type="submit" { (signed.t(Msg::SignOut)) }
                        }
                    }
                }
                div.shell {
                    (navigation(lang, active))
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    };
    markup.into_response()
}

/// The navigation: each group's heading over its sections, the current one highlighted.
fn navigation(lang: Lang, active: Nav) -> Markup {
    html! {
        nav.side aria-label=(Msg::Navigation.text(lang)) {
            @for group in NavGroup::ALL {
                div.nav-group {
                    div.nav-heading id=(group.heading_id()) { (group.label().text(lang)) }
                    ul aria-labelledby=(group.heading_id()) {
                        @for item in group.sections() {
                            li {
                                a href=(item.href())
                                    class=[(item == active).then_some("active")]
                                    aria-current=[(item == active).then_some("page")] {
                                    (item.label().text(lang))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A page outside the signed-in shell (sign-in, errors).
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(lang, title)) }
            body.bare {
                main.narrow {
                    h1 { (Msg::Console.text(lang)) }
                    (body)
                }
            }
        }
    }
}

/// An error page with its status.
pub fn error_page(status: StatusCode, lang: Lang, message: &str) -> Response {
    let body = html! {
        p.error role="alert" { (message) }
        p { a href="/console/" { (Msg::Back.text(lang)) } }
    };
    (status, bare(lang, Msg::ErrorTitle.text(lang), body)).into_response()
}

/// The hidden fields every changing form carries: the session's CSRF token and a one-time key
/// (so the same form submitted twice changes things once).
pub fn csrf(signed: &Signed) -> Markup {
    html! {
        input type="hidden" name="csrf_token" value=(signed.csrf);
        input type="hidden" name="form_key" value=(random_token());
    }
}

/// A page shown again because its form could not be used (unreadable, or refused by the API):
/// 422.
pub fn unprocessable(mut page: Response) -> Response {
    *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    page
}

/// A member's id as a link to their page.
pub fn member_link(member_id: &str) -> Markup {
    html! { a href=(format!("/console/members/{}", encode(member_id))) { (member_id) } }
}

/// The first-page and next-page links under a cursor-paged list. `base` is the page's address,
/// with the query it keeps (a filter) if any; `param` the query parameter that carries this
/// list's cursor; `cursor` the one shown now ("" on the first page); `next` the API's next
/// cursor, if there is a next page.
pub fn pager(signed: &Signed, base: &str, param: &str, cursor: &str, next: Option<&str>) -> Markup {
    let separator = if base.contains('?') { '&' } else { '?' };
    html! {
        div.pager {
            @if !cursor.is_empty() { a href=(base) { (signed.t(Msg::FirstPage)) } }
            @if let Some(next) = next {
                a href=(format!("{base}{separator}{param}={}", encode(next))) { (signed.t(Msg::NextPage)) }
            }
        }
    }
}

/// A notice at the top of a page after a change: success or the API's error.
pub fn notice(ok: bool, message: &str) -> Markup {
    html! {
        p class=(if ok { "notice ok" } else { "notice error" }) role="status" { (message) }
    }
}

/// Fen as yuan: `¥12.34`, `-¥0.05`.
pub fn money(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}¥{}.{:02}", group_thousands(abs / 100), abs % 100)
}

/// Yuan typed by an operator as fen: `12`, `12.3`, `12.34`, `¥12.34`, `1,234.50` (commas and
/// surrounding spaces ignored). `None` for anything else: a sign, more than two decimals, no
/// digits, or more than `i64` holds.
pub fn parse_yuan(typed: &str) -> Option<i64> {
    let cleaned: String = typed
        .trim()
        .trim_start_matches(['¥', '￥'])
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let (whole, fraction) = match cleaned.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (cleaned.as_str(), ""),
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 2 {
        return None;
    }
    let yuan: i64 = whole.parse().ok()?;
    let fen: i64 = format!("{fraction:0<2}").parse().ok()?;
    yuan.checked_mul(100)?.checked_add(fen)
}

/// A form field the page could not read, in words.
pub type Unreadable = String;

/// What was typed into a form field, read by `read` once trimmed: `Some(None)` when it is
/// empty, `None` when `read` cannot read it.
pub fn field<T>(typed: &str, read: impl FnOnce(&str) -> Option<T>) -> Option<Option<T>> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Some(None);
    }
    read(typed).map(Some)
}

/// A whole number typed into a form field: `Some(None)` when empty, `None` when it is not one.
pub fn whole_number(typed: &str) -> Option<Option<i64>> {
    field(typed, |t| t.parse().ok())
}

/// `problem` (a message with one slot, such as [`Msg::BadYuan`]) said of the field labelled
/// `label`.
pub fn unreadable(signed: &Signed, problem: impl Message, label: impl Message) -> Unreadable {
    problem.fill(signed.lang, &[signed.t(label)])
}

/// Yuan ([`parse_yuan`]) typed into the field labelled `label`, as fen; empty is `None`.
pub fn optional_yuan(
    signed: &Signed,
    label: impl Message,
    typed: &str,
) -> Result<Option<i64>, Unreadable> {
    field(typed, parse_yuan).ok_or_else(|| unreadable(signed, Msg::BadYuan, label))
}

/// Yuan typed into the field labelled `label`, as fen; empty is unreadable.
pub fn required_yuan(signed: &Signed, label: impl Message, typed: &str) -> Result<i64, Unreadable> {
    optional_yuan(signed, label, typed)?.ok_or_else(|| unreadable(signed, Msg::BadYuan, label))
}

/// A whole number typed into the field labelled `label`; empty is `None`.
pub fn optional_whole(
    signed: &Signed,
    label: impl Message,
    typed: &str,
) -> Result<Option<i64>, Unreadable> {
    whole_number(typed).ok_or_else(|| unreadable(signed, Msg::BadWhole, label))
}

/// A whole number typed into the field labelled `label`; empty is unreadable.
pub fn required_whole(
    signed: &Signed,
    label: impl Message,
    typed: &str,
) -> Result<i64, Unreadable> {
    optional_whole(signed, label, typed)?.ok_or_else(|| unreadable(signed, Msg::BadWhole, label))
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An RFC 3339 instant from the API, shown in the tenant's zone (`2026-12-06 20:00`); the text
/// itself when it is not an instant.
pub fn instant(text: &str, zone: &TimeZone) -> String {
    match text.parse::<Timestamp>() {
        Ok(at) => at_in(at, zone),
        Err(_) => text.to_owned(),
    }
}

/// An instant in the tenant's zone.
pub fn at_in(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// A field of a `/v1` answer as text ("" for null or missing).
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A field of a `/v1` answer as an integer (0 when missing).
pub fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// A chart: a box that `console.js` fills with ECharts from `option` (an ECharts option
/// object, built here so that the page states its data). `tall` doubles its height.
pub fn chart(option: &Value, tall: bool) -> Markup {
    html! {
        div class=(if tall { "chart tall" } else { "chart" }) data-chart=(option.to_string()) {}
    }
}

/// Text for a URL path segment or query value, percent-encoded.
pub fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// A definition list of facts; an empty value shows as a dash.
pub fn facts(items: &[(&str, String)]) -> Markup {
    html! {
        dl.facts {
            @for (label, value) in items {
                dt { (label) } dd { @if value.is_empty() { span.muted { "—" } } @else { (value) } }
            }
        }
    }
}

/// Basis points as a percentage without trailing zeros (`1500` → `15%`, `1550` → `15.5%`,
/// `1505` → `15.05%`).
pub fn basis_points(bp: i64) -> String {
    format!("{}%", fixed(bp, 100))
}

/// A multiplier in basis points (`10000` → `×1`, `15000` → `×1.5`).
pub fn multiplier(bp: i64) -> String {
    format!("×{}", fixed(bp, 10_000))
}

/// `value / scale` in decimals, trailing zeros dropped.
fn fixed(value: i64, scale: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let (whole, rest) = (
        value.unsigned_abs() / scale as u64,
        value.unsigned_abs() % scale as u64,
    );
    if rest == 0 {
        return format!("{sign}{whole}");
    }
    let width = scale.to_string().len() - 1;
    let decimals = format!("{rest:0width$}");
    format!("{sign}{whole}.{}", decimals.trim_end_matches('0'))
}

/// Percent with one decimal from a 0..1 float.
pub fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

/// Inline JSON shown as preformatted text (proofs, details).
pub fn json_block(value: &Value) -> Markup {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (pretty) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_navigation_shows_every_section_once_under_its_group_heading() {
        let mut hrefs: Vec<_> = Nav::ALL.iter().map(|nav| nav.href()).collect();
        hrefs.sort_unstable();
        hrefs.dedup();
        assert_eq!(hrefs.len(), Nav::ALL.len(), "a section listed twice");
        // `Nav::ALL` runs group by group, in the groups' order, none empty.
        let mut order: Vec<NavGroup> = Vec::new();
        for nav in Nav::ALL {
            if order.last() != Some(&nav.group()) {
                assert!(
                    !order.contains(&nav.group()),
                    "{nav:?} apart from its group"
                );
                order.push(nav.group());
            }
        }
        assert_eq!(order, NavGroup::ALL);
        for lang in Lang::ALL {
            for active in Nav::ALL {
                let markup = navigation(lang, active).into_string();
                let current = format!(
                    "href=\"{}\" class=\"active\" aria-current=\"page\"",
                    active.href()
                );
                assert!(markup.contains(&current), "{markup}");
                assert_eq!(markup.matches("class=\"active\"").count(), 1, "{markup}");
                assert_eq!(markup.matches("aria-current").count(), 1, "{markup}");
                // Each heading, then its sections' links, in order.
                let mut at = 0;
                for group in NavGroup::ALL {
                    let heading = format!(
                        "id=\"{}\">{}</div>",
                        group.heading_id(),
                        group.label().text(lang)
                    );
                    at += markup[at..].find(&heading).expect(&heading);
                    for section in group.sections() {
                        let link = format!("href=\"{}\"", section.href());
                        at += markup[at..].find(&link).expect(&link);
                        assert_eq!(markup.matches(&link).count(), 1, "{link}");
                    }
                }
            }
        }
    }

    #[test]
    fn money_is_yuan_with_two_decimals() {
        assert_eq!(money(1234), "¥12.34");
        assert_eq!(money(0), "¥0.00");
        assert_eq!(money(-5), "-¥0.05");
        assert_eq!(money(123_456_789), "¥1,234,567.89");
        assert_eq!(money(i64::MIN), "-¥92,233,720,368,547,758.08");
    }

    #[test]
    fn basis_points_read_as_percentages_and_multipliers() {
        assert_eq!(basis_points(1500), "15%");
        assert_eq!(basis_points(1550), "15.5%");
        assert_eq!(basis_points(1505), "15.05%");
        assert_eq!(basis_points(-5), "-0.05%");
        assert_eq!(multiplier(10_000), "×1");
        assert_eq!(multiplier(15_000), "×1.5");
        assert_eq!(multiplier(12_345), "×1.2345");
    }

    #[test]
    fn typed_yuan_become_fen_or_nothing() {
        assert_eq!(parse_yuan("12"), Some(1200));
        assert_eq!(parse_yuan(" 12.3 "), Some(1230));
        assert_eq!(parse_yuan("¥12.34"), Some(1234));
        assert_eq!(parse_yuan("1,234.05"), Some(123_405));
        assert_eq!(parse_yuan("0.01"), Some(1));
        assert_eq!(parse_yuan("12."), Some(1200));
        for bad in [
            "",
            "abc",
            "-1",
            "+1",
            "1.234",
            ".5",
            "1e3",
            "1.2.3",
            "92233720368547758.08",
        ] {
            assert_eq!(parse_yuan(bad), None, "{bad}");
        }
        assert_eq!(parse_yuan("92233720368547758.07"), Some(i64::MAX));
    }

    #[test]
    fn instants_are_shown_in_the_tenant_zone() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            instant("2026-12-06T12:00:00Z", &shanghai),
            "2026-12-06 20:00"
        );
        assert_eq!(instant("not a time", &shanghai), "not a time");
    }
}
