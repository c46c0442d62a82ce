//! One error type that knows its HTTP face.
//!
//! Every failure a client can see has a stable `code` and a status, and is rendered as
//! `{"error": {"code", "message", "details"}}`. Internal causes (database errors, bugs) are never
//! sent to the client: [`ApiError::into_response`] leaves them on the response as a [`Failure`],
//! which the server's outermost layer logs once with the request's method, path and tenant.
//!
//! [`codes`] holds one constant per code (its string, status and meaning) and [`ERROR_CODES`]
//! lists them all: the catalogue the docs page renders. Call sites name a constant
//! (`ApiError::conflict(codes::SOLD_OUT, …)`, `ApiError::coded(codes::…, …)`), so a misspelt
//! code does not compile; a test in `crate::docs` fails on a free-string code, on a constant
//! missing from the list, on a listed code nobody uses, and on `conflict` with a non-409 code.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A failure with its HTTP status and stable code (boxed: errors travel through many
/// `Result`s and should cost one pointer there).
#[derive(Debug)]
pub struct ApiError(Box<ErrorInner>);

/// The parts of an [`ApiError`].
#[derive(Debug)]
pub struct ErrorInner {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub details: Option<Value>,
    /// The internal cause, logged but not shown.
    pub source: Option<anyhow::Error>,
    /// Seconds to send as `Retry-After` (429 `rate_limited`).
    pub retry_after: Option<u64>,
}

/// Result type of handlers and domain functions that can fail in a client-visible way.
pub type ApiResult<T> = Result<T, ApiError>;

/// One error code: the status it is sent with and what it means.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ErrorCode {
    pub code: &'static str,
    pub status: u16,
    pub meaning: &'static str,
}

const fn error_code(code: &'static str, status: u16, meaning: &'static str) -> ErrorCode {
    ErrorCode {
        code,
        status,
        meaning,
    }
}

/// The codes of the constructors of [`ApiError`] (each a catalogue entry).
pub mod codes {
    use super::{error_code, ErrorCode};

    pub const INVALID_REQUEST: ErrorCode = error_code("invalid_request", 400, "The request is malformed: bad JSON or CSV header, an unknown field, a wrong type, a missing parameter.");
    pub const UNAUTHORIZED: ErrorCode = error_code(
        "unauthorized",
        401,
        "No API key, or an unknown or revoked one.",
    );
    pub const NOT_FOUND: ErrorCode = error_code(
        "not_found",
        404,
        "No such resource in the caller's tenant (the message names what).",
    );
    pub const PAYLOAD_TOO_LARGE: ErrorCode = error_code(
        "payload_too_large",
        413,
        "The request body is larger than the limit (`details.limit_bytes`).",
    );
    pub const VALIDATION_FAILED: ErrorCode = error_code(
        "validation_failed",
        422,
        "A value is well-formed but not acceptable; `details.field` names it.",
    );
    pub const INVALID_TEXT: ErrorCode = error_code("invalid_text", 422, "A text field or parameter holds NUL (U+0000), which neither back end stores; `details.field` names it.");
    pub const RATE_LIMITED: ErrorCode = error_code(
        "rate_limited",
        429,
        "Too many requests; retry after `Retry-After` seconds (`details.limit` names the limit).",
    );
    pub const INTERNAL: ErrorCode = error_code(
        "internal",
        500,
        "A bug or an unexpected failure; the cause is logged on the server, never sent.",
    );
    pub const UNAVAILABLE: ErrorCode = error_code("unavailable", 503, "The service cannot take the work right now (database busy, queues full, shutting down); retry shortly.");
    pub const OWNER_KEY_REQUIRED: ErrorCode = error_code(
        "owner_key_required",
        403,
        "The operation is tenant administration and needs an owner key, not an integration key.",
    );
    pub const NOT_SCORED: ErrorCode = error_code("not_scored", 404, "The member has no analytics scores yet: run `shequn analytics fit` (or wait for the daily run) after importing orders.");
    pub const METHOD_NOT_ALLOWED: ErrorCode = error_code(
        "method_not_allowed",
        405,
        "The route exists but does not take this HTTP method.",
    );
    pub const ALL_GROUPS_FULL: ErrorCode = error_code(
        "all_groups_full",
        409,
        "Every group behind the join link is full; an operator has to add a group.",
    );
    pub const ALREADY_ATTRIBUTED: ErrorCode = error_code(
        "already_attributed",
        409,
        "The member was already attributed to an inviter; attribution is first touch and final.",
    );
    pub const ALREADY_CHECKED_IN: ErrorCode = error_code(
        "already_checked_in",
        409,
        "The member already checked in on that day.",
    );
    pub const ALREADY_DRAWN: ErrorCode =
        error_code("already_drawn", 409, "The lottery was drawn already.");
    pub const ALREADY_IN_TEAM: ErrorCode = error_code(
        "already_in_team",
        409,
        "The member is in this group-buy team already.",
    );
    pub const ALREADY_MEMBER: ErrorCode = error_code(
        "already_member",
        409,
        "The member is already in this group.",
    );
    pub const ALREADY_PAID: ErrorCode =
        error_code("already_paid", 409, "The order was paid already.");
    pub const ALREADY_REDEEMED: ErrorCode = error_code(
        "already_redeemed",
        409,
        "The coupon has already been redeemed.",
    );
    pub const ALREADY_RESOLVED: ErrorCode = error_code(
        "already_resolved",
        409,
        "The pending transfer (or pending points) was already posted or voided.",
    );
    pub const BUDGET_EXHAUSTED: ErrorCode = error_code(
        "budget_exhausted",
        409,
        "The referral campaign's budget cannot cover this referral's rewards.",
    );
    pub const CAMPAIGN_NOT_ACTIVE: ErrorCode = error_code(
        "campaign_not_active",
        409,
        "The referral campaign is not running; it issues no codes.",
    );
    pub const CONCURRENT_REFUND: ErrorCode = error_code(
        "concurrent_refund",
        409,
        "Another refund of this order happened meanwhile; retry.",
    );
    pub const COUPON_EXPIRED: ErrorCode =
        error_code("coupon_expired", 409, "The coupon's validity has ended.");
    pub const ENDED: ErrorCode = error_code("ended", 409, "The flash sale has ended.");
    pub const ENTRY_LIMIT_REACHED: ErrorCode = error_code(
        "entry_limit_reached",
        409,
        "The member holds the most lottery entries allowed per member.",
    );
    pub const EXTERNAL_ID_TAKEN: ErrorCode = error_code(
        "external_id_taken",
        409,
        "Another member of the tenant already has this external_id.",
    );
    pub const GROUP_FULL: ErrorCode =
        error_code("group_full", 409, "The group holds its capacity.");
    pub const IDEMPOTENCY_KEY_IN_PROGRESS: ErrorCode = error_code("idempotency_key_in_progress", 409, "A request with this Idempotency-Key is still being processed; retry shortly for its response.");
    pub const INSUFFICIENT_FUNDS: ErrorCode = error_code(
        "insufficient_funds",
        409,
        "The wallet does not hold enough stored value.",
    );
    pub const INSUFFICIENT_POINTS: ErrorCode = error_code(
        "insufficient_points",
        409,
        "The member holds fewer points than the operation needs.",
    );
    pub const INVALID_TRANSITION: ErrorCode = error_code("invalid_transition", 409, "The order is not in a state that can move to the one asked for (`details.status` is its state).");
    pub const JOB_DONE: ErrorCode = error_code(
        "job_done",
        409,
        "The scheduled job has already run; there is nothing to retry.",
    );
    pub const JOB_RUNNING: ErrorCode = error_code(
        "job_running",
        409,
        "The day's run for this tenant is in progress; ask again in a moment.",
    );
    pub const LIMIT_REACHED: ErrorCode = error_code(
        "limit_reached",
        409,
        "A per-member limit is reached (coupons of a template, flash-sale or group-buy purchases).",
    );
    pub const LOTTERY_CLOSED: ErrorCode =
        error_code("lottery_closed", 409, "The lottery takes no more entries.");
    pub const LOTTERY_FULL: ErrorCode = error_code(
        "lottery_full",
        409,
        "The lottery holds the most entries a lottery takes.",
    );
    pub const LOTTERY_NOT_OPEN: ErrorCode = error_code(
        "lottery_not_open",
        409,
        "The lottery's entries have not opened yet.",
    );
    pub const LOTTERY_STILL_OPEN: ErrorCode = error_code(
        "lottery_still_open",
        409,
        "Entries are open until closes_at; draw then, or with ?close_early=true.",
    );
    pub const MAKEUP_LIMIT_REACHED: ErrorCode = error_code(
        "makeup_limit_reached",
        409,
        "The member used every check-in make-up of the month.",
    );
    pub const MESSAGE_NOT_REQUESTED: ErrorCode = error_code("message_not_requested", 409, "The message was deferred or suppressed by the gate, never handed to a gateway: it takes no delivery status (`details.status` is its state).");
    pub const MEMBER_ERASED: ErrorCode = error_code("member_erased", 409, "The member was erased: the operation (or the replayed response) concerns an erased member.");
    pub const NOT_CANCELLABLE: ErrorCode = error_code(
        "not_cancellable",
        409,
        "The order cannot be cancelled in its state; refund it instead.",
    );
    pub const NOT_ENOUGH_ENTRIES: ErrorCode = error_code(
        "not_enough_entries",
        409,
        "Fewer distinct members entered the lottery than it has prizes to draw.",
    );
    pub const NOT_LAUNCHED: ErrorCode = error_code(
        "not_launched",
        409,
        "The product does not open to this member yet (new-product early access).",
    );
    pub const NOT_PENDING: ErrorCode = error_code(
        "not_pending",
        409,
        "The transfer is not pending, so it cannot be posted or voided.",
    );
    pub const NOT_REDEEMED: ErrorCode = error_code(
        "not_redeemed",
        409,
        "The coupon is not redeemed, so there is nothing to undo.",
    );
    pub const NOT_REFUNDABLE: ErrorCode = error_code(
        "not_refundable",
        409,
        "The order cannot be refunded in its state.",
    );
    pub const NOT_REVEALED: ErrorCode = error_code("not_revealed", 409, "The lottery's seed is revealed with the result: after the draw (instant mode: after closing).");
    pub const NOT_STARTED: ErrorCode =
        error_code("not_started", 409, "The flash sale has not started.");
    pub const NOT_VOIDED: ErrorCode = error_code(
        "not_voided",
        409,
        "The earned points could not be voided (the message says why).",
    );
    pub const NOTHING_TO_REFUND: ErrorCode = error_code(
        "nothing_to_refund",
        409,
        "The order was refunded in full already.",
    );
    pub const ORDER_CANCELLED: ErrorCode =
        error_code("order_cancelled", 409, "The order was cancelled.");
    pub const ORDER_EXISTS: ErrorCode = error_code(
        "order_exists",
        409,
        "An order with this external_reference was ingested already.",
    );
    pub const ORDER_EXPIRED: ErrorCode = error_code(
        "order_expired",
        409,
        "The order's payment deadline has passed; it can no longer be paid.",
    );
    pub const ORDER_MISMATCH: ErrorCode = error_code(
        "order_mismatch",
        409,
        "The coupon was redeemed on another order.",
    );
    pub const OUT_OF_STOCK: ErrorCode = error_code(
        "out_of_stock",
        409,
        "No stock left (a product, or every coupon of a template issued).",
    );
    pub const OWNER_CANNOT_LEAVE: ErrorCode = error_code(
        "owner_cannot_leave",
        409,
        "The group's owner cannot leave it.",
    );
    pub const PAYMENT_REFERENCE_REUSED: ErrorCode = error_code(
        "payment_reference_reused",
        409,
        "The payment reference was used for another payment.",
    );
    pub const PLAN_INACTIVE: ErrorCode = error_code(
        "plan_inactive",
        409,
        "The plan (a top-up plan or a subscription plan) is no longer offered.",
    );
    pub const PAST_CUTOFF: ErrorCode = error_code(
        "past_cutoff",
        409,
        "The delivery's cut-off has passed: its order is created and it can no longer be skipped or changed (`details.date`).",
    );
    pub const SUBSCRIPTION_NOT_ACTIVE: ErrorCode = error_code(
        "subscription_not_active",
        409,
        "The subscription is not in a state that allows this (`details.status`: paused, cancelled or completed).",
    );
    pub const POINTS_NOT_EARNED: ErrorCode = error_code(
        "points_not_earned",
        409,
        "The points could not be earned (the message says why).",
    );
    pub const REFERENCE_ALREADY_EARNED: ErrorCode = error_code(
        "reference_already_earned",
        409,
        "Points were already earned for this reference with another amount.",
    );
    pub const REFUND_EXCEEDS_SPEND: ErrorCode = error_code(
        "refund_exceeds_spend",
        409,
        "The refund is larger than what is left of the wallet spend.",
    );
    pub const REFUND_REFERENCE_REUSED: ErrorCode = error_code(
        "refund_reference_reused",
        409,
        "The refund reference was used on another order.",
    );
    pub const RESOLUTION_FAILED: ErrorCode = error_code(
        "resolution_failed",
        409,
        "A pending transfer could not be posted or voided (the message says why).",
    );
    pub const REVIEW_ALREADY_DECIDED: ErrorCode = error_code(
        "review_already_decided",
        409,
        "The referral review was approved or rejected already.",
    );
    pub const SKU_TAKEN: ErrorCode = error_code("sku_taken", 409, "Another product has this sku.");
    pub const SOLD_OUT: ErrorCode = error_code("sold_out", 409, "The flash sale is sold out.");
    pub const STORED_VALUE_CAP_EXCEEDED: ErrorCode = error_code(
        "stored_value_cap_exceeded",
        409,
        "The top-up would bring the member's stored value above the tenant's cap.",
    );
    pub const TEAM_CLOSED: ErrorCode =
        error_code("team_closed", 409, "The group-buy team is no longer open.");
    pub const TEAM_FULL: ErrorCode =
        error_code("team_full", 409, "The group-buy team has no slot left.");
    pub const TEMPLATE_EXPIRED: ErrorCode = error_code(
        "template_expired",
        409,
        "The coupon template's validity window has ended.",
    );
    pub const TOO_MANY_PLANS: ErrorCode = error_code(
        "too_many_plans",
        409,
        "The tenant holds the most top-up plans allowed.",
    );
    pub const AMOUNT_EXCEEDS_PENDING: ErrorCode = error_code(
        "amount_exceeds_pending",
        422,
        "The amount to post is larger than the pending transfer's.",
    );
    pub const IDEMPOTENCY_KEY_REUSED: ErrorCode = error_code(
        "idempotency_key_reused",
        422,
        "The Idempotency-Key was used with a different request body.",
    );
    pub const UNSAFE_URL: ErrorCode = error_code(
        "unsafe_url",
        422,
        "The webhook URL reaches a link-local or cloud-metadata address (169.254.0.0/16, fd00:ec2::254, metadata.google.internal…), which is never called.",
    );
    pub const BROADCAST_STARTED: ErrorCode = error_code(
        "broadcast_started",
        409,
        "The broadcast is sending, sent, failed or cancelled: only a scheduled one can be cancelled (`details.status` is its state).",
    );
    pub const ENDPOINT_DISABLED: ErrorCode = error_code(
        "endpoint_disabled",
        409,
        "The webhook endpoint is disabled; enable it (PATCH `status`) first.",
    );
    pub const ALREADY_PARTNER: ErrorCode = error_code(
        "already_partner",
        409,
        "The caller's tenant is or was a partner of this alliance already.",
    );
    pub const INVITATION_EXPIRED: ErrorCode = error_code(
        "invitation_expired",
        409,
        "The alliance invitation's code has expired.",
    );
    pub const INVITATION_USED: ErrorCode = error_code(
        "invitation_used",
        409,
        "The alliance invitation's code was used already (codes are one-time).",
    );
    pub const OFFER_CLOSED: ErrorCode = error_code(
        "offer_closed",
        409,
        "The alliance offer is closed: its partner left the alliance.",
    );
    pub const PARTNER_NOT_ACTIVE: ErrorCode = error_code(
        "partner_not_active",
        409,
        "The caller's tenant left this alliance: it may read and settle, not invite, offer or claim.",
    );
    pub const OFFER_WITHDRAWN: ErrorCode = error_code(
        "offer_withdrawn",
        409,
        "The alliance offer was withdrawn by its partner: no new claims (coupons claimed before stay valid).",
    );
    pub const ALREADY_REFERRED: ErrorCode = error_code(
        "already_referred",
        409,
        "The member was already sent to this merchant by the alliance (a referral link or an offer claim): the first attribution stands.",
    );
    pub const NOT_A_NEW_CUSTOMER: ErrorCode = error_code(
        "not_a_new_customer",
        409,
        "The member has paid this merchant before: an alliance referral link sends new customers only, so nothing was recorded.",
    );
    pub const OWN_REFERRAL_LINK: ErrorCode = error_code(
        "own_referral_link",
        409,
        "The alliance referral link belongs to the caller's own partner: a partner cannot refer customers to itself.",
    );
    pub const REFERRAL_LINK_EXPIRED: ErrorCode = error_code(
        "referral_link_expired",
        409,
        "The alliance referral link is past its `expires_at`.",
    );
    pub const REFERRAL_LINK_FOR_ANOTHER_PARTNER: ErrorCode = error_code(
        "referral_link_for_another_partner",
        409,
        "The alliance referral link is meant for another partner (its `to_partner_id`).",
    );
    pub const REFERRAL_LINK_REVOKED: ErrorCode = error_code(
        "referral_link_revoked",
        409,
        "The alliance referral link was revoked by its partner, or closed when that partner left the alliance.",
    );
    pub const SETTLEMENT_EXCEEDS_BALANCE: ErrorCode = error_code(
        "settlement_exceeds_balance",
        422,
        "An alliance settlement larger than what the payer owes the payee (their entries between the two of them, net).",
    );
    pub const ALREADY_PROMOTER: ErrorCode =
        error_code("already_promoter", 409, "The member is a promoter already.");
    pub const BELOW_MINIMUM: ErrorCode = error_code(
        "below_minimum",
        409,
        "The withdrawal is below the tenant's minimum (`details.min_amount`).",
    );
    pub const DISTRIBUTION_DISABLED: ErrorCode = error_code(
        "distribution_disabled",
        409,
        "Distribution is not enabled for the tenant (`PUT /v1/distribution/settings`).",
    );
    pub const INVALID_PROMOTER_TRANSITION: ErrorCode = error_code(
        "invalid_promoter_transition",
        409,
        "The promoter is not in a state that can move to the one asked for (`details.status`).",
    );
    pub const INVALID_WITHDRAWAL_TRANSITION: ErrorCode = error_code(
        "invalid_withdrawal_transition",
        409,
        "The withdrawal is not in a state that can move to the one asked for (`details.status`).",
    );
    pub const PROMOTER_NOT_ACTIVE: ErrorCode = error_code(
        "promoter_not_active",
        409,
        "The promoter is not approved (pending, rejected or suspended).",
    );
    pub const DEPTH_EXCEEDS_LEGAL_LIMIT: ErrorCode = error_code(
        "depth_exceeds_legal_limit",
        422,
        "More than two commission levels: paying deeper upline chains is pyramid selling (禁止传销条例 Art. 7).",
    );
    pub const ALREADY_LEADER: ErrorCode = error_code(
        "already_leader",
        409,
        "The member is a community group-buying leader already (`details.leader_id`).",
    );
    pub const ALREADY_PICKED_UP: ErrorCode = error_code(
        "already_picked_up",
        409,
        "The order was picked up already: a pickup code verifies once.",
    );
    pub const LEADER_NOT_ACTIVE: ErrorCode = error_code(
        "leader_not_active",
        409,
        "The member's leader is paused or closed and takes no new wave orders.",
    );
    pub const WAVE_CLOSED: ErrorCode = error_code(
        "wave_closed",
        409,
        "The wave's cut-off has passed: it takes no more orders or payments.",
    );
    pub const WAVE_NOT_OPEN: ErrorCode = error_code(
        "wave_not_open",
        409,
        "The wave opens later (`details.opens_at`).",
    );
    pub const LEADER_REQUIRED: ErrorCode = error_code(
        "leader_required",
        422,
        "A wave order needs a leader: the member chooses one with `PUT /v1/members/{id}/leader`.",
    );
    pub const MIN_SPEND_NOT_MET: ErrorCode = error_code(
        "min_spend_not_met",
        422,
        "The order is below the coupon's minimum spend.",
    );
}

/// Every error code a client can receive, in order of status then code.
pub const ERROR_CODES: &[ErrorCode] = &[
    codes::INVALID_REQUEST,
    codes::UNAUTHORIZED,
    codes::OWNER_KEY_REQUIRED,
    codes::NOT_FOUND,
    codes::NOT_SCORED,
    codes::METHOD_NOT_ALLOWED,
    codes::ALL_GROUPS_FULL,
    codes::ALREADY_ATTRIBUTED,
    codes::ALREADY_CHECKED_IN,
    codes::ALREADY_DRAWN,
    codes::ALREADY_IN_TEAM,
    codes::ALREADY_MEMBER,
    codes::ALREADY_PAID,
    codes::ALREADY_LEADER,
    codes::ALREADY_PARTNER,
    codes::ALREADY_PICKED_UP,
    codes::ALREADY_PROMOTER,
    codes::ALREADY_REDEEMED,
    codes::ALREADY_REFERRED,
    codes::ALREADY_RESOLVED,
    codes::BELOW_MINIMUM,
    codes::BROADCAST_STARTED,
    codes::BUDGET_EXHAUSTED,
    codes::CAMPAIGN_NOT_ACTIVE,
    codes::CONCURRENT_REFUND,
    codes::COUPON_EXPIRED,
    codes::DISTRIBUTION_DISABLED,
    codes::ENDED,
    codes::ENDPOINT_DISABLED,
    codes::ENTRY_LIMIT_REACHED,
    codes::EXTERNAL_ID_TAKEN,
    codes::GROUP_FULL,
    codes::IDEMPOTENCY_KEY_IN_PROGRESS,
    codes::INSUFFICIENT_FUNDS,
    codes::INSUFFICIENT_POINTS,
    codes::INVALID_PROMOTER_TRANSITION,
    codes::INVALID_TRANSITION,
    codes::INVALID_WITHDRAWAL_TRANSITION,
    codes::INVITATION_EXPIRED,
    codes::INVITATION_USED,
    codes::JOB_DONE,
    codes::JOB_RUNNING,
    codes::LEADER_NOT_ACTIVE,
    codes::LIMIT_REACHED,
    codes::LOTTERY_CLOSED,
    codes::LOTTERY_FULL,
    codes::LOTTERY_NOT_OPEN,
    codes::LOTTERY_STILL_OPEN,
    codes::MAKEUP_LIMIT_REACHED,
    codes::MEMBER_ERASED,
    codes::MESSAGE_NOT_REQUESTED,
    codes::NOT_A_NEW_CUSTOMER,
    codes::NOT_CANCELLABLE,
    codes::NOT_ENOUGH_ENTRIES,
    codes::NOT_LAUNCHED,
    codes::NOT_PENDING,
    codes::NOT_REDEEMED,
    codes::NOT_REFUNDABLE,
    codes::NOT_REVEALED,
    codes::NOT_STARTED,
    codes::NOT_VOIDED,
    codes::NOTHING_TO_REFUND,
    codes::OFFER_CLOSED,
    codes::OFFER_WITHDRAWN,
    codes::ORDER_CANCELLED,
    codes::ORDER_EXISTS,
    codes::ORDER_EXPIRED,
    codes::ORDER_MISMATCH,
    codes::OUT_OF_STOCK,
    codes::OWN_REFERRAL_LINK,
    codes::OWNER_CANNOT_LEAVE,
    codes::PARTNER_NOT_ACTIVE,
    codes::PAST_CUTOFF,
    codes::PAYMENT_REFERENCE_REUSED,
    codes::PLAN_INACTIVE,
    codes::POINTS_NOT_EARNED,
    codes::PROMOTER_NOT_ACTIVE,
    codes::REFERENCE_ALREADY_EARNED,
    codes::REFERRAL_LINK_EXPIRED,
    codes::REFERRAL_LINK_FOR_ANOTHER_PARTNER,
    codes::REFERRAL_LINK_REVOKED,
    codes::REFUND_EXCEEDS_SPEND,
    codes::REFUND_REFERENCE_REUSED,
    codes::RESOLUTION_FAILED,
    codes::REVIEW_ALREADY_DECIDED,
    codes::SKU_TAKEN,
    codes::SOLD_OUT,
    codes::STORED_VALUE_CAP_EXCEEDED,
    codes::SUBSCRIPTION_NOT_ACTIVE,
    codes::TEAM_CLOSED,
    codes::TEAM_FULL,
    codes::TEMPLATE_EXPIRED,
    codes::TOO_MANY_PLANS,
    codes::WAVE_CLOSED,
    codes::WAVE_NOT_OPEN,
    codes::PAYLOAD_TOO_LARGE,
    codes::AMOUNT_EXCEEDS_PENDING,
    codes::DEPTH_EXCEEDS_LEGAL_LIMIT,
    codes::IDEMPOTENCY_KEY_REUSED,
    codes::INVALID_TEXT,
    codes::LEADER_REQUIRED,
    codes::MIN_SPEND_NOT_MET,
    codes::SETTLEMENT_EXCEEDS_BALANCE,
    codes::UNSAFE_URL,
    codes::VALIDATION_FAILED,
    codes::RATE_LIMITED,
    codes::INTERNAL,
    codes::UNAVAILABLE,
];

/// The catalogue entry of `code`.
pub fn error_code_of(code: &str) -> Option<&'static ErrorCode> {
    ERROR_CODES.iter().find(|e| e.code == code)
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(ErrorInner {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            source: None,
            retry_after: None,
        }))
    }

    /// An error with a catalogue entry's code and status: every code a client can see is a
    /// constant of [`codes`], so a misspelt or uncatalogued code does not compile.
    pub fn coded(entry: ErrorCode, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(entry.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, entry.code, message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }

    /// 400 `invalid_request`: malformed JSON, unknown fields, wrong types.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::coded(codes::INVALID_REQUEST, message)
    }

    /// 422 `validation_failed` naming the field whose value is wrong.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::coded(codes::VALIDATION_FAILED, format!("{field}: {message}"))
            .with_details(json!({ "field": field }))
    }

    /// 404 `not_found` for an id that does not exist in the caller's tenant.
    pub fn not_found(what: &str) -> Self {
        Self::coded(codes::NOT_FOUND, format!("{what} not found"))
    }

    /// A conflict (409) with its catalogue code, e.g. `ApiError::conflict(codes::SOLD_OUT, …)`;
    /// sent with the catalogue's status (a test checks that `conflict` names 409 codes only).
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::coded(code, message)
    }

    /// 422 `invalid_text`: a string field or parameter holds a character that neither back end
    /// stores (NUL, U+0000). `field` is the JSON path of the body field or the parameter name.
    pub fn invalid_text(field: &str) -> Self {
        Self::coded(
            codes::INVALID_TEXT,
            format!("{field}: text must not contain NUL (U+0000)"),
        )
        .with_details(json!({ "field": field }))
    }

    /// 429 `rate_limited` with `Retry-After` (whole seconds, at least 1).
    pub fn rate_limited(limit: &'static str, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        let mut error = Self::coded(
            codes::RATE_LIMITED,
            format!("too many requests ({limit}); retry in {seconds} s"),
        )
        .with_details(json!({ "limit": limit, "retry_after_secs": seconds }));
        error.0.retry_after = Some(seconds);
        error
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::coded(codes::UNAUTHORIZED, message)
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::coded(
            codes::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit_bytes} bytes"),
        )
        .with_details(json!({ "limit_bytes": limit_bytes }))
    }

    /// 500 `internal`: the cause is logged, the client sees a generic message.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self(Box::new(ErrorInner {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: Cow::Borrowed(codes::INTERNAL.code),
            message: "internal error; it has been logged".into(),
            details: None,
            source: Some(cause.into()),
            retry_after: None,
        }))
    }

    /// 503 when the service cannot take more work right now (queues full, shutting down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::coded(codes::UNAVAILABLE, message)
    }

    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
            }
        })
    }
}

impl std::ops::Deref for ApiError {
    type Target = ErrorInner;

    fn deref(&self) -> &ErrorInner {
        &self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(source) = &self.source {
            write!(f, " ({source:#})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The error body as sent, borrowing from the error ([`ApiError::body`] as a `Value`).
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(serde::Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a Option<Value>,
}

/// The target of the request span, a debug-level span (`crate::server::app`).
pub const REQUEST_SPAN_TARGET: &str = "shequn::request";

/// A server error as [`ApiError::into_response`] leaves it on its response (an extension), for
/// the server's outermost layer to log with the request it failed (`crate::server`). Logged
/// there rather than here because only the layers know the request: giving every line logged
/// inside a request its method, path and tenant took a span per request, about a twelfth of
/// a trivial read's cost (docs/benchmarks.md, "HTTP stack").
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Cow<'static, str>,
    /// The error with its internal cause.
    pub error: String,
    /// The caller's tenant, when a layer that authenticated the request filled it in.
    pub tenant_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let failure = self.status.is_server_error().then(|| Failure {
            code: self.code.clone(),
            error: self.to_string(),
            tenant_id: None,
        });
        if failure.is_none() {
            tracing::debug!(code = %self.code, message = %self.message, "client error");
        }
        // Serialized straight from the parts: building a `Value` first cost as much again.
        let body = ErrorBody {
            error: ErrorFields {
                code: &self.code,
                message: &self.message,
                details: &self.details,
            },
        };
        let mut response = match serde_json::to_vec(&body) {
            Ok(bytes) => (
                self.status,
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(_) => (self.status, axum::Json(self.body())).into_response(),
        };
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        if let Some(failure) = failure {
            response.extensions_mut().insert(failure);
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::PoolTimedOut = error {
            return ApiError::unavailable("database is busy; retry shortly");
        }
        ApiError::internal(error)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<ApiError>() {
            Ok(api) => api,
            Err(other) => match other.downcast::<sqlx::Error>() {
                Ok(db) => ApiError::from(db),
                Err(other) => ApiError::internal(other),
            },
        }
    }
}

/// True when a database error is a unique-constraint violation, on either back end.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_response_body_is_the_documented_body() {
        for error in [
            ApiError::conflict(codes::SOLD_OUT, "this flash sale is sold out")
                .with_details(serde_json::json!({ "available": 0 })),
            ApiError::not_found("member"),
            ApiError::internal(anyhow::anyhow!("secret cause")),
        ] {
            let expected = error.body();
            let status = error.status;
            let response = error.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[axum::http::header::CONTENT_TYPE],
                "application/json"
            );
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            // Byte for byte what the `Value` gave, field order included.
            assert_eq!(bytes, expected.to_string().into_bytes());
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ApiError::internal(anyhow::anyhow!("password=hunter2"));
        let body = error.body().to_string();
        assert!(!body.contains("hunter2"));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_catalogue_has_each_code_once_with_a_real_status_and_a_meaning() {
        let mut seen = std::collections::HashSet::new();
        for entry in ERROR_CODES {
            assert!(seen.insert(entry.code), "{} twice", entry.code);
            let status = StatusCode::from_u16(entry.status).unwrap();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{entry:?}"
            );
            assert!(entry.meaning.ends_with('.'), "{entry:?}");
        }
        assert_eq!(error_code_of("sold_out").map(|e| e.status), Some(409));
        assert!(error_code_of("no_such_code").is_none());
    }

    #[test]
    fn constructors_send_their_catalogue_status() {
        let cases = [
            (ApiError::invalid_request("x"), codes::INVALID_REQUEST),
            (ApiError::validation("f", "x"), codes::VALIDATION_FAILED),
            (ApiError::not_found("x"), codes::NOT_FOUND),
            (ApiError::invalid_text("f"), codes::INVALID_TEXT),
            (
                ApiError::rate_limited("x", std::time::Duration::from_secs(1)),
                codes::RATE_LIMITED,
            ),
            (ApiError::unauthorized("x"), codes::UNAUTHORIZED),
            (ApiError::payload_too_large(1), codes::PAYLOAD_TOO_LARGE),
            (ApiError::internal(anyhow::anyhow!("x")), codes::INTERNAL),
            (ApiError::unavailable("x"), codes::UNAVAILABLE),
        ];
        for (error, entry) in cases {
            assert_eq!(
                (error.status.as_u16(), &*error.code),
                (entry.status, entry.code)
            );
            assert!(
                error_code_of(entry.code).is_some(),
                "{} not in the catalogue",
                entry.code
            );
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let error = ApiError::validation("phone", "must be E.164");
        assert_eq!(error.body()["error"]["details"]["field"], "phone");
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
