//! Referrals' reactions to the life cycles other domains own (DESIGN rule 12), registered by
//! `server::hooks`: a paid order may qualify its member's referral, a full refund voids it, a
//! new member's invite code is attributed, an erased member's signup signals go.

use async_trait::async_trait;

use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::hooks::{
    MemberCreated, MemberCreatedOutcome, MemberErased, MemberHooks, OrderHooks, OrderPaid,
    OrderRefunded, Signup,
};

use super::model;

/// The referral part's hooks.
pub struct ReferralHooks;

#[async_trait]
impl OrderHooks for ReferralHooks {
    async fn on_paid(&self, tx: &mut Tx, order: &OrderPaid<'_>) -> ApiResult<()> {
        super::on_order_paid(
            tx,
            order.tenant_id,
            order.member_id,
            order.order_id,
            order.total,
        )
        .await
    }

    async fn on_refunded(&self, tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
        super::on_order_refunded(tx, refund.tenant_id, refund.order_id, refund.full).await
    }
}

fn parse(signup: &Signup) -> ApiResult<model::Signup> {
    model::Signup::parse(
        signup.invite_code.clone(),
        signup.device_id.clone(),
        signup.ip.clone(),
    )
}

#[async_trait]
impl MemberHooks for ReferralHooks {
    fn check_signup(&self, signup: &Signup) -> ApiResult<()> {
        parse(signup).map(|_| ())
    }

    async fn on_created(
        &self,
        tx: &mut Tx,
        member: &MemberCreated<'_>,
        outcome: &mut MemberCreatedOutcome,
    ) -> ApiResult<()> {
        let signup = parse(member.signup)?;
        outcome.referral =
            super::on_member_created(tx, member.tenant_id, member.member_id, &signup).await?;
        Ok(())
    }

    async fn on_erased(&self, tx: &mut Tx, member: &MemberErased<'_>) -> ApiResult<()> {
        super::on_member_erased(tx, member.tenant_id, member.member_id).await
    }
}
