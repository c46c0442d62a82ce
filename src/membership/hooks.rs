//! The membership program's reactions to the life cycles other domains own (DESIGN rule 12),
//! registered by `server::hooks`: a new member starts in the tier its growth (0) reaches.

use async_trait::async_trait;

use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::hooks::{MemberCreated, MemberCreatedOutcome, MemberHooks};

/// The tier ladder's hooks.
pub struct TierHooks;

#[async_trait]
impl MemberHooks for TierHooks {
    async fn on_created(
        &self,
        tx: &mut Tx,
        member: &MemberCreated<'_>,
        _outcome: &mut MemberCreatedOutcome,
    ) -> ApiResult<()> {
        super::program::initial_tier(tx, member.tenant_id, member.member_id).await
    }
}
