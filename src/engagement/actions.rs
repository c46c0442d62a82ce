//! What an automation or a broadcast does to one member: grant a coupon, grant points, add
//! tags, send a message. Each action goes through the code its domain already has (coupons'
//! `grant` with its stock and per-member limit, the ledger, the members' tags, the message
//! gate), inside the caller's transaction, so a run's actions are kept or lost together.
//!
//! An action that cannot be done for this member (the coupon is out of stock, the member holds
//! the template's limit, their tags are full) is recorded in the run's outcome with its code
//! and the other actions still happen: a welcome message is not lost because the welcome
//! coupons ran out. A database error fails the whole run, which its scheduler job retries.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::messages::{self, Category, Outgoing};
use crate::common::db::Tx;
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::outbox::NewEvent;
use crate::common::reader::Reader;
use crate::ledger::model::{Address, Asset, NewTransfer};
use crate::ledger::{self, Op};
use crate::members;
use crate::membership::coupons::{self, model::CouponTemplateId};

/// Most actions per automation or broadcast.
pub const MAX_ACTIONS: usize = 10;
/// Most points one action grants.
pub const MAX_POINTS: i64 = 1_000_000;
/// The ledger code of points granted by an action.
pub const POINTS_CODE: &str = "engagement_reward";

/// One action. JSON: `{"grant_coupon": {"template_id"}}`, `{"grant_points": {"points"}}`,
/// `{"add_tags": ["vip", …]}`, `{"send_message": {"channel", "category", "template",
/// "variables"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    GrantCoupon(GrantCoupon),
    GrantPoints(GrantPoints),
    AddTags(Vec<String>),
    SendMessage(SendMessage),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantCoupon {
    /// A coupon template of the tenant; the coupon follows its stock and per-member limit.
    pub template_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPoints {
    /// 1 to 1,000,000 points, posted at once from `system:issuance`.
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The merchant's channel name (`wechat`, `wecom`, `sms`…).
    pub channel: String,
    pub category: Category,
    /// The gateway's template name.
    pub template: String,
    /// Values for the template (a JSON object of at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Value>,
}

/// Check `actions` against the tenant (coupon templates exist) and normalise them (tags
/// trimmed, variables `{}` when absent). Errors name `actions[i]…`.
pub async fn checked(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    actions: &[Action],
) -> ApiResult<Vec<Action>> {
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(ApiError::validation(
            "actions",
            format!("give 1 to {MAX_ACTIONS} actions"),
        ));
    }
    let mut out = Vec::with_capacity(actions.len());
    for (i, action) in actions.iter().enumerate() {
        let at = format!("actions[{i}]");
        out.push(match action {
            Action::GrantCoupon(grant) => {
                let field = format!("{at}.grant_coupon.template_id");
                let id = CouponTemplateId::parse(&grant.template_id)
                    .ok_or_else(|| ApiError::validation(&field, "is not a coupon template id"))?;
                if coupons::store::fetch_template(conn, tenant_id, &id)
                    .await?
                    .is_none()
                {
                    return Err(ApiError::validation(&field, "no such coupon template"));
                }
                Action::GrantCoupon(GrantCoupon {
                    template_id: id.to_string(),
                })
            }
            Action::GrantPoints(grant) => {
                if !(1..=MAX_POINTS).contains(&grant.points) {
                    return Err(ApiError::validation(
                        &format!("{at}.grant_points.points"),
                        format!("must be 1 to {MAX_POINTS}"),
                    ));
                }
                action.clone()
            }
            Action::AddTags(tags) => {
                let field = format!("{at}.add_tags");
                let tags = members::model::tags(&field, tags)?;
                if tags.is_empty() {
                    return Err(ApiError::validation(&field, "give at least one tag"));
                }
                Action::AddTags(tags)
            }
            Action::SendMessage(send) => {
                let (channel, template, variables) = messages::checked_fields(
                    &format!("{at}.send_message."),
                    &send.channel,
                    &send.template,
                    send.variables.clone(),
                )?;
                Action::SendMessage(SendMessage {
                    channel,
                    category: send.category,
                    template,
                    variables: Some(variables),
                })
            }
        });
    }
    Ok(out)
}

/// Whom the actions are for, and on whose behalf.
pub struct Target<'a> {
    pub tenant_id: &'a TenantId,
    pub zone: &'a TimeZone,
    pub member_id: &'a MemberId,
    /// The automation's or broadcast's id: the messages' `source`, the coupons' reason.
    pub source: &'a str,
    /// The run's id: makes the points transfers' ids.
    pub run_id: &'a str,
}

/// What the actions did, per action in order (the run's `outcome`), and the messages'
/// verdicts.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcome: Vec<Value>,
}

/// Do `actions` for one member inside `tx`.
pub async fn apply(tx: &mut Tx, target: &Target<'_>, actions: &[Action]) -> ApiResult<Applied> {
    let mut applied = Applied::default();
    for (i, action) in actions.iter().enumerate() {
        let done = match action {
            Action::GrantCoupon(grant) => {
                let Some(template) = CouponTemplateId::parse(&grant.template_id) else {
                    applied
                        .outcome
                        .push(json!({ "grant_coupon": { "error": "not_found" } }));
                    continue;
                };
                match coupons::grant(
                    tx,
                    target.tenant_id,
                    &template,
                    target.member_id,
                    target.source,
                )
                .await
                {
                    Ok(coupon) => json!({ "grant_coupon": { "coupon_id": coupon.id } }),
                    Err(error) if error.status.is_client_error() => {
                        json!({ "grant_coupon": { "error": error.code } })
                    }
                    Err(error) => return Err(error),
                }
            }
            Action::GrantPoints(grant) => {
                let id = format!("{}:points:{i}", target.run_id);
                let results = ledger::apply_in(
                    tx,
                    target.tenant_id,
                    vec![Op::Create(NewTransfer::internal(
                        id.clone(),
                        Address::system("issuance"),
                        Address::member(target.member_id),
                        Asset::Points,
                        grant.points,
                        POINTS_CODE,
                        Some(target.source),
                    ))],
                )
                .await?;
                let status = results
                    .first()
                    .map(|r| r.status.clone())
                    .unwrap_or_default();
                json!({ "grant_points": { "transfer_id": id, "points": grant.points, "status": status } })
            }
            Action::AddTags(tags) => {
                let held = members::store::tags_of(
                    &mut Reader::from(tx.conn()),
                    target.tenant_id,
                    &[target.member_id.as_str()],
                )
                .await?
                .remove(target.member_id.as_str())
                .unwrap_or_default();
                let added: Vec<String> =
                    tags.iter().filter(|t| !held.contains(t)).cloned().collect();
                if held.len() + added.len() > members::model::MAX_TAGS {
                    json!({ "add_tags": { "error": "tag_limit" } })
                } else {
                    if !added.is_empty() {
                        members::store::add_tags(
                            tx.conn(),
                            target.tenant_id,
                            target.member_id,
                            &added,
                        )
                        .await?;
                        tx.emit(NewEvent::new(
                            target.tenant_id,
                            "member.tagged",
                            Some(target.member_id.as_str()),
                            json!({ "member_id": target.member_id, "added": added,
                                    "removed": Vec::<String>::new() }),
                        ));
                    }
                    json!({ "add_tags": { "added": added } })
                }
            }
            Action::SendMessage(send) => {
                let out = Outgoing {
                    member_id: target.member_id.clone(),
                    channel: send.channel.clone(),
                    category: send.category,
                    template: send.template.clone(),
                    variables: send.variables.clone().unwrap_or_else(|| json!({})),
                    source: target.source.to_owned(),
                };
                match messages::send(tx, target.tenant_id, target.zone, &out).await? {
                    Some(message) => json!({ "send_message": {
                        "message_id": message.id, "status": message.status, "reason": message.reason,
                    } }),
                    None => json!({ "send_message": { "error": "not_found" } }),
                }
            }
        };
        applied.outcome.push(done);
    }
    Ok(applied)
}
