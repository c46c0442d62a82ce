//! The shop's pages: `/console/coupons` (coupon templates: list and a create form),
//! `/console/products` (list and a create form) and `/console/orders` (filters, one order's
//! lines, pricing, refunds, and a refund form).
//!
//! Operators type money in yuan; [`view::parse_yuan`] turns it into the fen the API takes. A
//! form the page cannot read (a price of "abc") is shown again with what was typed and says
//! which field is wrong; a form the API refuses is shown again with the API's message. Nothing
//! is created in either case.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::console::call::ListPage;
use crate::console::i18n::{Message as _, Msg};
use crate::console::session::{Change, Refusal, Signed};
use crate::console::view::{
    self, csrf, encode, facts, instant, int, member_link, money, notice, optional_whole,
    optional_yuan, pager, parse_yuan, required_whole, required_yuan, text, unprocessable,
    unreadable, Nav, Unreadable,
};
use crate::console::Console;
use crate::orders::model::OrderStatus;

crate::console::i18n::catalogue! {
    /// The shop pages' own messages.
    pub enum ShopMsg {
        CouponTemplates => "优惠券模板", "Coupon templates";
        NewTemplate => "新建优惠券", "New coupon template";
        Kind => "类型", "Kind";
        AmountOff => "满减（元）", "Amount off (¥)";
        PercentOff => "折扣（%）", "Percent off (%)";
        DiscountValue => "优惠额度（元或 %）", "Discount (¥ or %)";
        MaxDiscount => "最高优惠（元，可选）", "Largest discount (¥, optional)";
        MinSpend => "使用门槛（元）", "Minimum spend (¥)";
        TotalStock => "发放总量", "Total stock";
        PerMemberLimit => "每人限领", "Per member";
        ValidDays => "领取后有效天数", "Valid days after claim";
        ValidFrom => "有效期开始", "Valid from";
        ValidTo => "有效期结束", "Valid until";
        Validity => "有效期", "Validity";
        Issued => "已发放", "Issued";
        Remaining => "剩余", "Remaining";
        Discount => "优惠", "Discount";
        Create => "创建", "Create";
        Created => "已创建", "Created";
        BadPercent => "{0}：请输入 0.01 到 100 之间的百分比", "{0}: type a percentage from 0.01 to 100";
        DaysFromClaim => "领取后 {0} 天", "{0} days from the claim";
        NewProduct => "新建商品", "New product";
        Sku => "SKU", "SKU";
        MemberPrice => "会员价（元，可选）", "Member price (¥, optional)";
        Stock => "库存", "Stock";
        DaysOfSupply => "每件可用天数（可选）", "Days one unit lasts (optional)";
        ListPrice => "价格（元）", "Price (¥)";
        UpdateStock => "改库存", "Set stock";
        Order => "订单", "Order";
        Member => "会员", "Member";
        MemberId => "会员编号", "Member id";
        Qty => "数量", "Qty";
        Subtotal => "小计", "Subtotal";
        RefundedAmount => "已退款", "Refunded";
        Ordered => "下单时间", "Ordered";
        Paid => "支付时间", "Paid";
        PaymentMethod => "支付方式", "Payment method";
        Campaign => "活动", "Campaign";
        Lines => "商品明细", "Lines";
        UnitPrice => "单价", "Unit price";
        PriceKind => "价格类型", "Price kind";
        LineTotal => "金额", "Line total";
        Pricing => "计价明细", "Pricing";
        Refunds => "退款记录", "Refunds";
        Refund => "退款", "Refund";
        RefundAmount => "退款金额（元，留空为全部剩余）", "Amount (¥, empty for all that remains)";
        RefundReason => "退款原因", "Reason";
        Restock => "退回库存", "Put units back in stock";
        RefundDone => "已退款", "Refunded";
        PointsReturned => "退回积分", "Points returned";
        CouponReturned => "退回优惠券", "Coupon returned";
        CouponUsed => "使用优惠券", "Coupon";
        PointsBurned => "抵扣积分", "Points burned";
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/coupons", get(coupons).post(create_template))
        .route("/console/products", get(products).post(create_product))
        .route("/console/products/{product_id}/stock", post(set_stock))
        .route("/console/orders", get(orders))
        .route("/console/orders/{order_id}", get(order))
        .route("/console/orders/{order_id}/refunds", post(refund))
}

/// A page's `?cursor=`, `?created=` and `?error=` after a redirect.
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    error: String,
}

/// What a create form did, to show above the list.
enum Outcome {
    None,
    Created(String),
    Refused(String),
}

impl Outcome {
    fn from_params(params: &PageParams) -> Outcome {
        if !params.error.is_empty() {
            Outcome::Refused(params.error.clone())
        } else if !params.created.is_empty() {
            Outcome::Created(params.created.clone())
        } else {
            Outcome::None
        }
    }

    fn show(&self, signed: &Signed) -> Markup {
        match self {
            Outcome::None => html! {},
            Outcome::Created(id) => notice(true, &format!("{} {id}", signed.t(ShopMsg::Created))),
            Outcome::Refused(message) => notice(false, message),
        }
    }
}

/// Put `value` under `key` when it is there.
fn put<T: Into<Value>>(body: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        body.insert(key.to_owned(), value.into());
    }
}

// ---------------------------------------------------------------------------------------------
// Coupon templates

/// The coupon template form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct TemplateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    max_discount: String,
    #[serde(default)]
    min_spend: String,
    #[serde(default)]
    total_stock: String,
    #[serde(default)]
    per_member_limit: String,
    #[serde(default)]
    valid_days: String,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_to: String,
}

impl TemplateForm {
    /// The `POST /v1/coupon-templates` body, or what the page could not read.
    fn body(&self, signed: &Signed) -> Result<Value, Unreadable> {
        let mut body = Map::new();
        body.insert("name".into(), self.name.trim().into());
        body.insert("kind".into(), self.kind.clone().into());
        if self.kind == "percent_off" {
            // A percentage with up to two decimals is basis points read as yuan: 15.5% = 1550.
            let bp = parse_yuan(&self.value)
                .filter(|bp| (1..=10_000).contains(bp))
                .ok_or_else(|| unreadable(signed, ShopMsg::BadPercent, ShopMsg::Discount))?;
            body.insert("percent_off_bp".into(), bp.into());
        } else {
            let fen = required_yuan(signed, ShopMsg::Discount, &self.value)?;
            body.insert("amount_off".into(), fen.into());
        }
        put(
            &mut body,
            "max_discount",
            optional_yuan(signed, ShopMsg::MaxDiscount, &self.max_discount)?,
        );
        put(
            &mut body,
            "min_spend",
            optional_yuan(signed, ShopMsg::MinSpend, &self.min_spend)?,
        );
        body.insert(
            "total_stock".into(),
            required_whole(signed, ShopMsg::TotalStock, &self.total_stock)?.into(),
        );
        put(
            &mut body,
            "per_member_limit",
            optional_whole(signed, ShopMsg::PerMemberLimit, &self.per_member_limit)?,
        );
        put(
            &mut body,
            "valid_days",
            optional_whole(signed, ShopMsg::ValidDays, &self.valid_days)?,
        );
        for (key, typed) in [
            ("valid_from", &self.valid_from),
            ("valid_to", &self.valid_to),
        ] {
            if !typed.trim().is_empty() {
                body.insert(key.into(), typed.trim().into());
            }
        }
        Ok(Value::Object(body))
    }
}

/// A template's discount in words: `¥5.00` or `15.5%`, with its cap.
fn discount(t: &Value) -> String {
    let base = match t["kind"].as_str() {
        Some("percent_off") => view::basis_points(int(&t["percent_off_bp"])),
        _ => money(int(&t["amount_off"])),
    };
    match t["max_discount"].as_i64() {
        Some(cap) => format!("{base} (≤ {})", money(cap)),
        None => base,
    }
}

fn validity(signed: &Signed, t: &Value) -> String {
    match t["valid_days"].as_i64() {
        Some(days) => ShopMsg::DaysFromClaim.fill(signed.lang, &[&days.to_string()]),
        None => format!(
            "{} – {}",
            instant(&text(&t["valid_from"]), &signed.zone),
            instant(&text(&t["valid_to"]), &signed.zone)
        ),
    }
}

/// `GET /console/coupons`.
async fn coupons(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let outcome = Outcome::from_params(&params);
    Ok(coupons_page(
        &console,
        &signed,
        &params.cursor,
        &TemplateForm::default(),
        outcome,
    )
    .await)
}

async fn coupons_page(
    console: &Console,
    signed: &Signed,
    cursor: &str,
    typed: &TemplateForm,
    outcome: Outcome,
) -> Response {
    let ListPage { rows, next, error } = console.list(signed, "/v1/coupon-templates", cursor).await;
    let t = |m: ShopMsg| signed.t(m);
    let body = html! {
        (outcome.show(signed))
        @if let Some(error) = &error { (notice(false, error)) }
        @if signed.operator.role.may_change() {
            details.panel open[matches!(outcome, Outcome::Refused(_))] {
                summary { (t(ShopMsg::NewTemplate)) }
                form.stack id="coupon-template-form" method="post" action="/console/coupons" {
                    (csrf(signed))
                    label { (signed.t(Msg::Title)) input type="text" name="name" required maxlength="100" value=(typed.name); }
                    label { (t(ShopMsg::Kind))
                        select name="kind" {
                            option value="amount_off" selected[typed.kind != "percent_off"] { (t(ShopMsg::AmountOff)) }
                            option value="percent_off" selected[typed.kind == "percent_off"] { (t(ShopMsg::PercentOff)) }
                        }
                    }
                    label { (t(ShopMsg::DiscountValue)) input type="text" name="value" required inputmode="decimal" value=(typed.value); }
                    label { (t(ShopMsg::MaxDiscount)) input type="text" name="max_discount" inputmode="decimal" value=(typed.max_discount); }
                    label { (t(ShopMsg::MinSpend)) input type="text" name="min_spend" inputmode="decimal" value=(typed.min_spend); }
                    label { (t(ShopMsg::TotalStock)) input type="number" name="total_stock" required min="1" value=(typed.total_stock); }
                    label { (t(ShopMsg::PerMemberLimit)) input type="number" name="per_member_limit" min="1" value=(typed.per_member_limit); }
                    label { (t(ShopMsg::ValidDays)) input type="number" name="valid_days" min="1" value=(typed.valid_days); }
                    label { (t(ShopMsg::ValidFrom)) input type="date" name="valid_from" value=(typed.valid_from); }
                    label { (t(ShopMsg::ValidTo)) input type="date" name="valid_to" value=(typed.valid_to); }
                    button type="submit" { (t(ShopMsg::Create)) }
                }
            }
        }
        section.panel {
            table id="coupon-templates" {
                thead { tr {
                    th { (signed.t(Msg::Title)) } th { (t(ShopMsg::Discount)) } th.num.hide-narrow { (t(ShopMsg::MinSpend)) }
                    th.num { (t(ShopMsg::Issued)) } th.num { (t(ShopMsg::Remaining)) }
                    th.num.hide-narrow { (t(ShopMsg::PerMemberLimit)) } th.hide-narrow { (t(ShopMsg::Validity)) }
                } }
                tbody {
                    @for c in &rows {
                        tr data-template-id=(text(&c["id"])) {
                            td { (text(&c["name"])) br; small.muted { (text(&c["id"])) } }
                            td { (discount(c)) }
                            td.num.hide-narrow { (money(int(&c["min_spend"]))) }
                            td.num { (int(&c["issued"])) " / " (int(&c["total_stock"])) }
                            td.num { (int(&c["remaining"])) }
                            td.num.hide-narrow { (int(&c["per_member_limit"])) }
                            td.hide-narrow { (validity(signed, c)) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/coupons", "cursor", cursor, next.as_deref()))
        }
    };
    view::page(signed, Nav::Coupons, t(ShopMsg::CouponTemplates), body)
}

/// `POST /console/coupons`.
async fn create_template(
    State(console): State<Console>,
    Change(posted): Change<TemplateForm>,
) -> Response {
    let signed = &posted.signed;
    let body = match posted.form.body(signed) {
        Ok(body) => body,
        Err(unreadable) => {
            let outcome = Outcome::Refused(unreadable);
            return unprocessable(coupons_page(&console, signed, "", &posted.form, outcome).await);
        }
    };
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/coupon-templates",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!("/console/coupons?created={}", encode(&id))).into_response();
    }
    let outcome = Outcome::Refused(answer.message());
    unprocessable(coupons_page(&console, signed, "", &posted.form, outcome).await)
}

// ---------------------------------------------------------------------------------------------
// Products

/// The product form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ProductForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    member_price: String,
    #[serde(default)]
    stock: String,
    #[serde(default)]
    days_of_supply: String,
}

impl ProductForm {
    fn body(&self, signed: &Signed) -> Result<Value, Unreadable> {
        let mut body = Map::new();
        body.insert("name".into(), self.name.trim().into());
        body.insert("sku".into(), self.sku.trim().into());
        body.insert(
            "price".into(),
            required_yuan(signed, ShopMsg::ListPrice, &self.price)?.into(),
        );
        put(
            &mut body,
            "member_price",
            optional_yuan(signed, ShopMsg::MemberPrice, &self.member_price)?,
        );
        body.insert(
            "stock".into(),
            required_whole(signed, ShopMsg::Stock, &self.stock)?.into(),
        );
        put(
            &mut body,
            "days_of_supply",
            optional_whole(signed, ShopMsg::DaysOfSupply, &self.days_of_supply)?,
        );
        Ok(Value::Object(body))
    }
}

/// `GET /console/products`.
async fn products(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<PageParams>,
) -> Result<Response, Refusal> {
    let outcome = Outcome::from_params(&params);
    Ok(products_page(
        &console,
        &signed,
        &params.cursor,
        &ProductForm::default(),
        outcome,
    )
    .await)
}

async fn products_page(
    console: &Console,
    signed: &Signed,
    cursor: &str,
    typed: &ProductForm,
    outcome: Outcome,
) -> Response {
    let ListPage { rows, next, error } = console.list(signed, "/v1/products", cursor).await;
    let t = |m: ShopMsg| signed.t(m);
    let may_change = signed.operator.role.may_change();
    let body = html! {
        (outcome.show(signed))
        @if let Some(error) = &error { (notice(false, error)) }
        @if may_change {
            details.panel open[matches!(outcome, Outcome::Refused(_))] {
                summary { (t(ShopMsg::NewProduct)) }
                form.stack id="product-form" method="post" action="/console/products" {
                    (csrf(signed))
                    label { (signed.t(Msg::Title)) input type="text" name="name" required maxlength="200" value=(typed.name); }
                    label { (t(ShopMsg::Sku)) input type="text" name="sku" required maxlength="64" value=(typed.sku); }
                    label { (t(ShopMsg::ListPrice)) input type="text" name="price" required inputmode="decimal" value=(typed.price); }
                    label { (t(ShopMsg::MemberPrice)) input type="text" name="member_price" inputmode="decimal" value=(typed.member_price); }
                    label { (t(ShopMsg::Stock)) input type="number" name="stock" required min="0" value=(typed.stock); }
                    label { (t(ShopMsg::DaysOfSupply)) input type="number" name="days_of_supply" min="1" value=(typed.days_of_supply); }
                    button type="submit" { (t(ShopMsg::Create)) }
                }
            }
        }
        section.panel {
            table id="products" {
                thead { tr {
                    th { (signed.t(Msg::Title)) } th.hide-narrow { (t(ShopMsg::Sku)) } th.num { (signed.t(Msg::Price)) }
                    th.num.hide-narrow { (t(ShopMsg::MemberPrice)) } th.num { (t(ShopMsg::Stock)) }
                } }
                tbody {
                    @for p in &rows {
                        @let id = text(&p["id"]);
                        tr data-product-id=(id) {
                            td { (text(&p["name"])) br; small.muted { (id) } }
                            td.hide-narrow { (text(&p["sku"])) }
                            td.num { (money(int(&p["price"]))) }
                            td.num.hide-narrow { @match p["member_price"].as_i64() { Some(fen) => (money(fen)), None => "—" } }
                            td.num {
                                @if may_change {
                                    form.inline method="post" action=(format!("/console/products/{}/stock", encode(&id))) {
                                        (csrf(signed))
                                        input.short type="number" name="stock" min="0" required value=(int(&p["stock"])) aria-label=(t(ShopMsg::Stock));
                                        button type="submit" { (t(ShopMsg::UpdateStock)) }
                                    }
                                } @else { (int(&p["stock"])) }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(signed, "/console/products", "cursor", cursor, next.as_deref()))
        }
    };
    view::page(signed, Nav::Products, signed.t(Msg::Products), body)
}

/// `POST /console/products`.
async fn create_product(
    State(console): State<Console>,
    Change(posted): Change<ProductForm>,
) -> Response {
    let signed = &posted.signed;
    let body = match posted.form.body(signed) {
        Ok(body) => body,
        Err(unreadable) => {
            let outcome = Outcome::Refused(unreadable);
            return unprocessable(products_page(&console, signed, "", &posted.form, outcome).await);
        }
    };
    let answer = console
        .call(
            signed,
            Method::POST,
            "/v1/products",
            Some(&body),
            posted.form_key.as_deref(),
        )
        .await;
    if answer.ok() {
        let id = text(&answer.body["id"]);
        return Redirect::to(&format!("/console/products?created={}", encode(&id))).into_response();
    }
    let outcome = Outcome::Refused(answer.message());
    unprocessable(products_page(&console, signed, "", &posted.form, outcome).await)
}

#[derive(Debug, Deserialize)]
pub struct StockForm {
    #[serde(default)]
    stock: String,
}

/// `POST /console/products/{product_id}/stock`.
async fn set_stock(
    State(console): State<Console>,
    Path(product_id): Path<String>,
    Change(posted): Change<StockForm>,
) -> Response {
    let signed = &posted.signed;
    let stock = match required_whole(signed, ShopMsg::Stock, &posted.form.stock) {
        Ok(stock) => stock,
        Err(unreadable) => {
            return Redirect::to(&format!("/console/products?error={}", encode(&unreadable)))
                .into_response();
        }
    };
    let answer = console
        .call(
            signed,
            Method::PATCH,
            &format!("/v1/products/{}", encode(&product_id)),
            Some(&json!({ "stock": stock })),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        format!("created={}", encode(&product_id))
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!("/console/products?{query}")).into_response()
}

// ---------------------------------------------------------------------------------------------
// Orders

#[derive(Debug, Default, Deserialize)]
pub struct OrderParams {
    #[serde(default)]
    status: String,
    #[serde(default)]
    member_id: String,
    #[serde(default)]
    cursor: String,
}

impl OrderParams {
    fn query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("status", &self.status), ("member_id", &self.member_id)] {
            if !value.trim().is_empty() {
                out.append_pair(key, value.trim());
            }
        }
        out.finish()
    }
}

/// `GET /console/orders`.
async fn orders(
    State(console): State<Console>,
    signed: Signed,
    Query(params): Query<OrderParams>,
) -> Result<Response, Refusal> {
    let query = params.query();
    let api = if query.is_empty() {
        "/v1/orders".to_owned()
    } else {
        format!("/v1/orders?{query}")
    };
    let ListPage { rows, next, error } = console.list(&signed, &api, &params.cursor).await;
    let t = |m: ShopMsg| signed.t(m);
    let here = if query.is_empty() {
        "/console/orders".to_owned()
    } else {
        format!("/console/orders?{query}")
    };
    let body = html! {
        form.filters method="get" action="/console/orders" {
            label { (signed.t(Msg::Status))
                select name="status" {
                    option value="" { (signed.t(Msg::Any)) }
                    @for status in OrderStatus::NAMES {
                        option value=(status) selected[*status == params.status] { (status) }
                    }
                }
            }
            label { (t(ShopMsg::MemberId)) input type="text" name="member_id" value=(params.member_id) maxlength="64"; }
            button type="submit" { (signed.t(Msg::Filter)) }
        }
        @if let Some(error) = &error { (notice(false, error)) }
        section.panel {
            table id="orders" {
                thead { tr {
                    th { (t(ShopMsg::Order)) } th.hide-narrow { (t(ShopMsg::Member)) } th { (signed.t(Msg::Status)) }
                    th.num { (signed.t(Msg::Total)) } th.num.hide-narrow { (t(ShopMsg::RefundedAmount)) } th.hide-narrow { (t(ShopMsg::Ordered)) }
                } }
                tbody {
                    @for o in &rows {
                        @let id = text(&o["id"]);
                        tr data-order-id=(id) {
                            td { a href=(format!("/console/orders/{}", encode(&id))) { (id) } }
                            td.hide-narrow { (member_link(&text(&o["member_id"]))) }
                            td { span.badge { (text(&o["status"])) } }
                            td.num { (money(int(&o["total"]))) }
                            td.num.hide-narrow { (money(int(&o["refunded_amount"]))) }
                            td.hide-narrow { (instant(&text(&o["ordered_at"]), &signed.zone)) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            (pager(&signed, &here, "cursor", &params.cursor, next.as_deref()))
        }
    };
    Ok(view::page(
        &signed,
        Nav::Orders,
        signed.t(Msg::Orders),
        body,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct OrderPageParams {
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/orders/{order_id}`.
async fn order(
    State(console): State<Console>,
    signed: Signed,
    Path(order_id): Path<String>,
    Query(params): Query<OrderPageParams>,
) -> Result<Response, Refusal> {
    let base = format!("/v1/orders/{}", encode(&order_id));
    let refunds_path = format!("{base}/refunds");
    let (order, refunds) = tokio::join!(
        console.get(&signed, &base),
        console.get(&signed, &refunds_path)
    );
    let order = order.found(&signed)?;
    let o = &order;
    let t = |m: ShopMsg| signed.t(m);
    let lines = o["items"].as_array().cloned().unwrap_or_default();
    let refunds = refunds.body["data"].as_array().cloned().unwrap_or_default();
    let refundable = matches!(
        o["status"].as_str(),
        Some("paid" | "fulfilled" | "completed")
    ) && int(&o["refunded_amount"]) < int(&o["total"]);
    let campaign = match (o["campaign_kind"].as_str(), o["campaign_id"].as_str()) {
        (Some(kind), Some(id)) => format!("{kind} {id}"),
        _ => String::new(),
    };
    let optional_instant = |v: &Value| instant(&text(v), &signed.zone);
    let body = html! {
        @if params.done == "refunded" { (notice(true, t(ShopMsg::RefundDone))) }
        @if !params.error.is_empty() { (notice(false, &params.error)) }
        p { a href="/console/orders" { "← " (signed.t(Msg::Orders)) } }
        div.grid2 {
            section.panel {
                h2 { (t(ShopMsg::Order)) }
                dl.facts {
                    dt { "ID" } dd { (text(&o["id"])) }
                    dt { (t(ShopMsg::Member)) } dd { (member_link(&text(&o["member_id"]))) }
                    dt { (signed.t(Msg::Status)) } dd { span.badge { (text(&o["status"])) } }
                }
                (facts(&[
                    (signed.t(Msg::Source), text(&o["source"])),
                    (t(ShopMsg::Subtotal), money(int(&o["subtotal"]))),
                    (signed.t(Msg::Total), money(int(&o["total"]))),
                    (t(ShopMsg::RefundedAmount), money(int(&o["refunded_amount"]))),
                    (t(ShopMsg::CouponUsed), text(&o["coupon_id"])),
                    (t(ShopMsg::PointsBurned), int(&o["points_burned"]).to_string()),
                    (t(ShopMsg::PaymentMethod), text(&o["payment_method"])),
                    (t(ShopMsg::Campaign), campaign),
                    (t(ShopMsg::Ordered), optional_instant(&o["ordered_at"])),
                    (t(ShopMsg::Paid), optional_instant(&o["paid_at"])),
                ]))
            }
            section.panel {
                h2 { (t(ShopMsg::Lines)) }
                table {
                    thead { tr {
                        th { (signed.t(Msg::Product)) } th.num { (t(ShopMsg::Qty)) } th.num { (t(ShopMsg::UnitPrice)) }
                        th.hide-narrow { (t(ShopMsg::PriceKind)) } th.num { (t(ShopMsg::LineTotal)) }
                    } }
                    tbody {
                        @for line in &lines {
                            tr {
                                td { (text(&line["name"])) br; small.muted { (text(&line["sku"])) } }
                                td.num { (int(&line["qty"])) }
                                td.num { (money(int(&line["unit_price"]))) }
                                td.hide-narrow { (text(&line["price_kind"])) }
                                td.num { (money(int(&line["line_total"]))) }
                            }
                        }
                    }
                }
                @if !o["pricing"].is_null() {
                    details { summary { (t(ShopMsg::Pricing)) } (view::json_block(&o["pricing"])) }
                }
            }
        }
        section.panel {
            h2 { (t(ShopMsg::Refunds)) }
            @if refunds.is_empty() { p.muted { (signed.t(Msg::NoneYet)) } }
            @else {
                table id="refunds" {
                    thead { tr {
                        th.num { (signed.t(Msg::Amount)) } th { (signed.t(Msg::Reason)) } th.num.hide-narrow { (t(ShopMsg::PointsReturned)) }
                        th.hide-narrow { (t(ShopMsg::Restock)) } th.hide-narrow { (t(ShopMsg::CouponReturned)) } th { (signed.t(Msg::Created)) }
                    } }
                    tbody {
                        @for r in &refunds {
                            tr {
                                td.num { (money(int(&r["amount"]))) }
                                td { (text(&r["reason"])) }
                                td.num.hide-narrow { (int(&r["points_returned"])) }
                                td.hide-narrow { (yes_no(&signed, &r["restocked"])) }
                                td.hide-narrow { (yes_no(&signed, &r["coupon_returned"])) }
                                td { (instant(&text(&r["created_at"]), &signed.zone)) }
                            }
                        }
                    }
                }
            }
            @if refundable && signed.operator.role.may_change() {
                h3 { (t(ShopMsg::Refund)) }
                form.stack id="refund-form" method="post" action=(format!("/console/orders/{}/refunds", encode(&order_id))) {
                    (csrf(&signed))
                    label { (t(ShopMsg::RefundAmount)) input type="text" name="amount" inputmode="decimal"; }
                    label { (t(ShopMsg::RefundReason)) input type="text" name="reason" required maxlength="200"; }
                    label.check { input type="checkbox" name="restock" value="true" checked[o["status"] == "paid"]; " " (t(ShopMsg::Restock)) }
                    button.danger type="submit" { (t(ShopMsg::Refund)) }
                }
            }
        }
    };
    let title = format!("{} {}", t(ShopMsg::Order), text(&o["id"]));
    Ok(view::page(&signed, Nav::Orders, &title, body))
}

fn yes_no(signed: &Signed, value: &Value) -> &'static str {
    signed.t(if value.as_bool() == Some(true) {
        Msg::Yes
    } else {
        Msg::No
    })
}

#[derive(Debug, Deserialize)]
pub struct RefundForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    /// Present (`true`) when the box is ticked.
    #[serde(default)]
    restock: Option<String>,
}

/// `POST /console/orders/{order_id}/refunds`.
async fn refund(
    State(console): State<Console>,
    Path(order_id): Path<String>,
    Change(posted): Change<RefundForm>,
) -> Response {
    let signed = &posted.signed;
    let back = format!("/console/orders/{}", encode(&order_id));
    let amount = match optional_yuan(signed, ShopMsg::RefundAmount, &posted.form.amount) {
        Ok(amount) => amount,
        Err(unreadable) => {
            return Redirect::to(&format!("{back}?error={}", encode(&unreadable))).into_response()
        }
    };
    let mut body = Map::new();
    body.insert("reason".into(), posted.form.reason.trim().into());
    put(&mut body, "amount", amount);
    body.insert("restock".into(), posted.form.restock.is_some().into());
    let answer = console
        .call(
            signed,
            Method::POST,
            &format!("/v1/orders/{}/refunds", encode(&order_id)),
            Some(&Value::Object(body)),
            posted.form_key.as_deref(),
        )
        .await;
    let query = if answer.ok() {
        "done=refunded".to_owned()
    } else {
        format!("error={}", encode(&answer.message()))
    };
    Redirect::to(&format!("{back}?{query}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shop_message_has_both_languages() {
        crate::console::i18n::check_catalogue(ShopMsg::ALL);
    }
}
