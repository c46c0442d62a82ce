//! Rewards that check-ins and lotteries give, and how they are paid.
//!
//! A reward is exactly one of `{"points": N}`, `{"coupon_template_id": "cpt_…"}` or
//! `{"wallet_bonus": N}` (fen). Points and wallet bonus are ledger transfers from
//! `system:issuance` to the member with an id derived from what paid them (so a retry cannot
//! pay twice); coupons are issued by [`coupons::grant`] inside the caller's transaction. A
//! coupon that cannot be issued any more (template out of stock, expired, member at the
//! template's limit) does not undo the check-in or the lottery result that earned it: the
//! payout records the reason instead, and the caller emits it in its event.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::common::db::Tx;
use crate::common::error::{codes, ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::ledger::{self, model::Address, model::Asset, model::NewTransfer, Op};
use crate::membership::coupons::{self, model::CouponTemplateId};

/// Largest points or wallet bonus one reward may give.
pub const MAX_REWARD_AMOUNT: i64 = 100_000_000;

/// A reward as clients write it: exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CommunityRewardSpec)]
pub struct RewardSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_template_id: Option<String>,
    /// Wallet bonus in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_bonus: Option<i64>,
}

/// A validated reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reward {
    Points(i64),
    Coupon(CouponTemplateId),
    WalletBonus(i64),
}

impl Reward {
    /// Validate the shape; `field` names it in errors. The coupon template's existence is
    /// checked by [`Reward::check_exists`].
    pub fn parse(field: &str, spec: &RewardSpec) -> ApiResult<Reward> {
        let amount = |value: i64, name: &str| {
            if (1..=MAX_REWARD_AMOUNT).contains(&value) {
                Ok(value)
            } else {
                Err(ApiError::validation(
                    &format!("{field}.{name}"),
                    format!("must be 1 to {MAX_REWARD_AMOUNT}"),
                ))
            }
        };
        match (spec.points, &spec.coupon_template_id, spec.wallet_bonus) {
            (Some(points), None, None) => Ok(Reward::Points(amount(points, "points")?)),
            (None, Some(template), None) => CouponTemplateId::parse(template)
                .map(Reward::Coupon)
                .ok_or_else(|| {
                    ApiError::validation(
                        &format!("{field}.coupon_template_id"),
                        "is not a coupon template id (cpt_…)",
                    )
                }),
            (None, None, Some(bonus)) => Ok(Reward::WalletBonus(amount(bonus, "wallet_bonus")?)),
            _ => Err(ApiError::validation(
                field,
                "must set exactly one of points, coupon_template_id, wallet_bonus",
            )),
        }
    }

    /// 422 naming `field` when a coupon template does not exist in the tenant.
    pub async fn check_exists(
        &self,
        conn: &mut AnyConnection,
        tenant_id: &TenantId,
        field: &str,
    ) -> ApiResult<()> {
        if let Reward::Coupon(template) = self {
            if coupons::store::fetch_template(conn, tenant_id, template)
                .await?
                .is_none()
            {
                return Err(ApiError::validation(
                    &format!("{field}.coupon_template_id"),
                    "no such coupon template",
                ));
            }
        }
        Ok(())
    }

    pub fn spec(&self) -> RewardSpec {
        match self {
            Reward::Points(n) => RewardSpec {
                points: Some(*n),
                ..RewardSpec::default()
            },
            Reward::Coupon(t) => RewardSpec {
                coupon_template_id: Some(t.to_string()),
                ..RewardSpec::default()
            },
            Reward::WalletBonus(n) => RewardSpec {
                wallet_bonus: Some(*n),
                ..RewardSpec::default()
            },
        }
    }

    /// The JSON stored in the database and shown by the API.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.spec()).unwrap_or(Value::Null)
    }

    /// Read back a reward stored by [`Reward::to_json`].
    pub fn from_json(text: &str) -> ApiResult<Reward> {
        let spec: RewardSpec = serde_json::from_str(text)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("stored reward: {e}")))?;
        Reward::parse("reward", &spec)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("stored reward: {e}")))
    }
}

/// Pay `reward` to `member_id` inside `tx`. `transfer_id` makes a ledger payment idempotent,
/// `code` says why (`checkin_reward`, `lottery_prize`) and `reference` what paid it (also
/// the coupon's reason). Returns the payout as JSON for the response and the event.
pub async fn pay(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    reward: &Reward,
    transfer_id: &str,
    code: &str,
    reference: &str,
) -> ApiResult<Value> {
    let (asset, amount) = match reward {
        Reward::Points(n) => (Asset::Points, *n),
        Reward::WalletBonus(n) => (Asset::WalletBonus, *n),
        Reward::Coupon(template) => {
            return match coupons::grant(tx, tenant_id, template, member_id, reference).await {
                Ok(coupon) => Ok(json!({ "coupon_template_id": template, "coupon_id": coupon.id })),
                Err(error) if error.status.is_client_error() => Ok(json!({
                    "coupon_template_id": template,
                    "coupon_id": null,
                    "not_issued": error.code,
                })),
                Err(error) => Err(error),
            };
        }
    };
    let transfer = NewTransfer::internal(
        transfer_id,
        Address::system("issuance"),
        Address::member(member_id),
        asset,
        amount,
        code,
        Some(reference),
    );
    let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no ledger result")))?;
    if !result.is_success() {
        return Err(ApiError::internal(anyhow::anyhow!(
            "ledger refused reward transfer {transfer_id}: {} {:?}",
            result.status,
            result.message
        )));
    }
    Ok(match reward {
        Reward::WalletBonus(_) => json!({ "wallet_bonus": amount, "transfer_id": transfer_id }),
        _ => json!({ "points": amount, "transfer_id": transfer_id }),
    })
}

/// Debit `points` from the member to `system:redemption` (a cost: a make-up check-in, a
/// lottery entry). 409 `insufficient_points` when the member does not hold enough.
pub async fn charge_points(
    tx: &mut Tx,
    tenant_id: &TenantId,
    member_id: &MemberId,
    points: i64,
    transfer_id: &str,
    code: &str,
    reference: &str,
) -> ApiResult<()> {
    if points <= 0 {
        return Ok(());
    }
    let transfer = NewTransfer::internal(
        transfer_id,
        Address::member(member_id),
        Address::system("redemption"),
        Asset::Points,
        points,
        code,
        Some(reference),
    );
    let result = ledger::apply_in(tx, tenant_id, vec![Op::Create(transfer)])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no ledger result")))?;
    match result.status.as_str() {
        "created" => Ok(()),
        "insufficient_funds" => Err(ApiError::conflict(
            codes::INSUFFICIENT_POINTS,
            format!("the member holds fewer than {points} points"),
        )
        .with_details(json!({ "required": points }))),
        other => Err(ApiError::internal(anyhow::anyhow!(
            "ledger refused charge {transfer_id}: {other} {:?}",
            result.message
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reward_sets_exactly_one_field() {
        let points = RewardSpec {
            points: Some(5),
            ..RewardSpec::default()
        };
        assert_eq!(Reward::parse("r", &points).unwrap(), Reward::Points(5));
        assert_eq!(Reward::parse("r", &points).unwrap().spec(), points);
        let both = RewardSpec {
            points: Some(5),
            wallet_bonus: Some(1),
            ..RewardSpec::default()
        };
        assert!(Reward::parse("r", &both).is_err());
        assert!(Reward::parse("r", &RewardSpec::default()).is_err());
        let zero = RewardSpec {
            points: Some(0),
            ..RewardSpec::default()
        };
        assert_eq!(
            Reward::parse("r", &zero)
                .unwrap_err()
                .details
                .clone()
                .unwrap()["field"],
            "r.points"
        );
        let bad_coupon = RewardSpec {
            coupon_template_id: Some("nope".into()),
            ..RewardSpec::default()
        };
        assert!(Reward::parse("r", &bad_coupon).is_err());
    }
}
