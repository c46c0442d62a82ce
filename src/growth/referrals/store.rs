//! Referral SQL: small functions over a connection (usually the caller's transaction). Every
//! query is scoped by tenant.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::model::{
    Campaign, InviteCode, NewCampaign, Referral, ReferralCampaignStatus, ReferralReviewStatus,
    ReferralRewardStatus, ReferralStatus, Review, RewardView, RungSpec, Settings, Standing,
};
use super::rules::{QualifyOn, Reward, RewardSpec, Role, Rung, Signals};
use crate::common::error::{ApiError, ApiResult};
use crate::common::ids::{MemberId, TenantId};
use crate::common::sql::Sql;
use crate::common::state::state_column;
use crate::common::time::micros_to_rfc3339;

// --- settings ------------------------------------------------------------------------------

pub async fn settings(conn: &mut AnyConnection, tenant_id: &TenantId) -> ApiResult<Settings> {
    let row = sqlx::query(
        "SELECT velocity_per_hour, return_window_days, invite_link_base FROM referral_setting \
         WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Settings {
            velocity_per_hour: row.try_get("velocity_per_hour")?,
            return_window_days: row.try_get("return_window_days")?,
            invite_link_base: row.try_get("invite_link_base")?,
        },
        None => Settings::default(),
    })
}

/// Take the settings row's lock for a read-change-write (PostgreSQL; SQLite has one writer),
/// creating the row with the defaults first so that there is a row to lock. Without it two
/// concurrent changes of different fields each wrote back the other's field as they had read
/// it, and one change was lost.
pub async fn lock_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    at: i64,
) -> ApiResult<()> {
    let defaults = Settings::default();
    sqlx::query(
        "INSERT INTO referral_setting (tenant_id, velocity_per_hour, return_window_days, \
         invite_link_base, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(defaults.velocity_per_hour)
    .bind(defaults.return_window_days)
    .bind(defaults.invite_link_base.as_str())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    if crate::common::sql::backend_of(conn) == crate::common::db::Backend::Postgres {
        sqlx::query("SELECT tenant_id FROM referral_setting WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn put_settings(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    settings: &Settings,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO referral_setting (tenant_id, velocity_per_hour, return_window_days, \
         invite_link_base, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id) DO UPDATE SET velocity_per_hour = excluded.velocity_per_hour, \
         return_window_days = excluded.return_window_days, \
         invite_link_base = excluded.invite_link_base, updated_at = excluded.updated_at",
    )
    .bind(tenant_id.as_str())
    .bind(settings.velocity_per_hour)
    .bind(settings.return_window_days)
    .bind(settings.invite_link_base.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

// --- campaigns -----------------------------------------------------------------------------

/// A campaign as stored, with its rules parsed.
#[derive(Debug, Clone)]
pub struct StoredCampaign {
    pub id: String,
    pub name: String,
    pub qualify_on: QualifyOn,
    pub min_order_amount: i64,
    pub inviter_reward: Option<Reward>,
    pub invitee_reward: Option<Reward>,
    pub ladder: Vec<Rung>,
    pub inviter_daily_cap: Option<i64>,
    pub budget: Option<i64>,
    pub spent: i64,
    pub status: ReferralCampaignStatus,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub created_at: i64,
}

impl StoredCampaign {
    /// Taking attributions and issuing codes at `now`?
    pub fn running(&self, now: i64) -> bool {
        self.status == ReferralCampaignStatus::Active
            && self.starts_at <= now
            && self.ends_at.is_none_or(|end| now < end)
    }

    pub fn view(&self, now: i64) -> Campaign {
        Campaign {
            id: self.id.clone(),
            name: self.name.clone(),
            qualify_on: self.qualify_on.as_str().into(),
            min_order_amount: self.min_order_amount,
            inviter_reward: self.inviter_reward.as_ref().map(Reward::spec),
            invitee_reward: self.invitee_reward.as_ref().map(Reward::spec),
            ladder: self
                .ladder
                .iter()
                .map(|r| RungSpec {
                    invites: r.invites,
                    reward: r.reward.spec(),
                })
                .collect(),
            inviter_daily_cap: self.inviter_daily_cap,
            budget: self.budget,
            spent: self.spent,
            status: self.status,
            running: self.running(now),
            starts_at: micros_to_rfc3339(self.starts_at),
            ends_at: self.ends_at.map(micros_to_rfc3339),
            created_at: micros_to_rfc3339(self.created_at),
        }
    }
}

fn reward_json(reward: Option<&Reward>) -> Option<String> {
    reward.map(|r| serde_json::to_string(&r.spec()).unwrap_or_default())
}

fn parse_reward(text: Option<String>) -> Result<Option<Reward>, sqlx::Error> {
    text.map(|t| {
        serde_json::from_str::<RewardSpec>(&t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| sqlx::Error::Decode("stored referral reward is not valid".into()))
    })
    .transpose()
}

const CAMPAIGN_COLUMNS: &str = "id, name, qualify_on, min_order_amount, inviter_reward, \
    invitee_reward, ladder, inviter_daily_cap, budget, spent, status, starts_at, ends_at, created_at";

fn campaign_from_row(row: &AnyRow) -> Result<StoredCampaign, sqlx::Error> {
    let ladder: String = row.try_get("ladder")?;
    let ladder: Vec<RungSpec> =
        serde_json::from_str(&ladder).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let ladder = ladder
        .into_iter()
        .map(|r| {
            r.reward
                .parse()
                .map(|reward| Rung {
                    invites: r.invites,
                    reward,
                })
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let qualify_on: String = row.try_get("qualify_on")?;
    Ok(StoredCampaign {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        qualify_on: QualifyOn::parse(&qualify_on)
            .ok_or_else(|| sqlx::Error::Decode("unknown qualify_on".into()))?,
        min_order_amount: row.try_get("min_order_amount")?,
        inviter_reward: parse_reward(row.try_get("inviter_reward")?)?,
        invitee_reward: parse_reward(row.try_get("invitee_reward")?)?,
        ladder,
        inviter_daily_cap: row.try_get("inviter_daily_cap")?,
        budget: row.try_get("budget")?,
        spent: row.try_get("spent")?,
        status: state_column(row, "status")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn insert_campaign(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    campaign: &NewCampaign,
    at: i64,
) -> ApiResult<()> {
    let ladder: Vec<RungSpec> = campaign
        .ladder
        .iter()
        .map(|r| RungSpec {
            invites: r.invites,
            reward: r.reward.spec(),
        })
        .collect();
    let ladder = serde_json::to_string(&ladder).map_err(ApiError::internal)?;
    let mut sql = Sql::for_conn(
        &*conn,
        "INSERT INTO referral_campaign (tenant_id, id, name, qualify_on, min_order_amount, \
         inviter_reward, invitee_reward, ladder, inviter_daily_cap, budget, spent, status, \
         starts_at, ends_at, created_at, updated_at) VALUES (",
    );
    sql.bind(tenant_id.as_str())
        .push(", ")
        .bind(id)
        .push(", ")
        .bind(campaign.name.as_str())
        .push(", ")
        .bind(campaign.qualify_on.as_str())
        .push(", ")
        .bind(campaign.min_order_amount)
        .push(", ")
        .bind(reward_json(campaign.inviter_reward.as_ref()))
        .push(", ")
        .bind(reward_json(campaign.invitee_reward.as_ref()))
        .push(", ")
        .bind(ladder)
        .push(", ")
        .bind(campaign.inviter_daily_cap)
        .push(", ")
        .bind(campaign.budget)
        .push(", 0, ")
        .bind(ReferralCampaignStatus::Active.as_str())
        .push(", ")
        .bind(campaign.starts_at.unwrap_or(at))
        .push(", ")
        .bind(campaign.ends_at)
        .push(", ")
        .bind(at)
        .push(", ")
        .bind(at)
        .push(")");
    sql.query().execute(conn).await?;
    Ok(())
}

pub async fn fetch_campaign(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<StoredCampaign>> {
    let row = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM referral_campaign WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(campaign_from_row).transpose()?)
}

pub async fn require_campaign(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<StoredCampaign> {
    fetch_campaign(conn, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("referral campaign"))
}

/// Take the campaign row's lock (PostgreSQL; SQLite has a single writer) so that the counts,
/// caps and ladder rungs read next are settled for this transaction.
pub async fn lock_campaign(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<StoredCampaign> {
    sqlx::query("UPDATE referral_campaign SET spent = spent WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    require_campaign(conn, tenant_id, id).await
}

pub async fn list_campaigns(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<StoredCampaign>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {CAMPAIGN_COLUMNS} FROM referral_campaign WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str());
    if let Some(after) = after {
        sql.push(" AND id > ").bind(after);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(campaign_from_row)
        .collect::<Result<_, _>>()?)
}

pub async fn update_campaign(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    name: Option<&str>,
    status: Option<ReferralCampaignStatus>,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE referral_campaign SET name = COALESCE($1, name), status = COALESCE($2, status), \
         updated_at = $3 WHERE tenant_id = $4 AND id = $5",
    )
    .bind(name)
    .bind(status.map(ReferralCampaignStatus::as_str))
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Charge `cost` to the budget if it fits: one conditional update, exact under concurrency.
pub async fn try_spend(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    cost: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE referral_campaign SET spent = spent + $1 WHERE tenant_id = $2 AND id = $3 \
         AND (budget IS NULL OR spent + $1 <= budget)",
    )
    .bind(cost)
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Give a voided referral's cost back to the budget.
pub async fn give_back(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    cost: i64,
) -> ApiResult<()> {
    sqlx::query("UPDATE referral_campaign SET spent = spent - $1 WHERE tenant_id = $2 AND id = $3")
        .bind(cost)
        .bind(tenant_id.as_str())
        .bind(campaign_id)
        .execute(conn)
        .await?;
    Ok(())
}

// --- invite codes --------------------------------------------------------------------------

pub async fn code_of(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    member_id: &MemberId,
) -> ApiResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT code FROM invite_code WHERE tenant_id = $1 AND campaign_id = $2 AND member_id = $3",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(member_id.as_str())
    .fetch_optional(conn)
    .await?)
}

/// Insert a code; false when the code or the (campaign, member) pair is taken.
pub async fn insert_code(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
    campaign_id: &str,
    member_id: &MemberId,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO invite_code (tenant_id, code, campaign_id, member_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .bind(campaign_id)
    .bind(member_id.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// (campaign id, inviter id) of a code.
pub async fn lookup_code(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    code: &str,
) -> ApiResult<Option<(String, MemberId)>> {
    let row = sqlx::query(
        "SELECT campaign_id, member_id FROM invite_code WHERE tenant_id = $1 AND code = $2",
    )
    .bind(tenant_id.as_str())
    .bind(code)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Some((
            row.try_get("campaign_id")?,
            MemberId::from_db(row.try_get("member_id")?),
        )),
        None => None,
    })
}

pub fn invite_code_view(
    settings: &Settings,
    code: String,
    campaign_id: &str,
    member_id: &MemberId,
) -> InviteCode {
    InviteCode {
        link: format!("{}{}", settings.invite_link_base, code),
        code,
        campaign_id: campaign_id.to_owned(),
        member_id: member_id.to_string(),
    }
}

// --- signals and facts ---------------------------------------------------------------------

pub async fn save_signals(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    signals: &Signals,
    at: i64,
) -> ApiResult<()> {
    if signals.device_id.is_none() && signals.ip.is_none() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO member_signal (tenant_id, member_id, device_id, ip, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .bind(signals.device_id.as_deref())
    .bind(signals.ip.as_deref())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn forget_signals(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<()> {
    sqlx::query("DELETE FROM member_signal WHERE tenant_id = $1 AND member_id = $2")
        .bind(tenant_id.as_str())
        .bind(member_id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn signals_of(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<Signals> {
    let row = sqlx::query(
        "SELECT device_id, ip FROM member_signal WHERE tenant_id = $1 AND member_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Signals {
            device_id: row.try_get("device_id")?,
            ip: row.try_get("ip")?,
        },
        None => Signals::default(),
    })
}

/// (created_at, invited_by, status) of a member, or None.
pub async fn member_facts(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<Option<(i64, Option<String>, String)>> {
    let row = sqlx::query(
        "SELECT created_at, invited_by, status FROM member WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Some((
            row.try_get("created_at")?,
            row.try_get("invited_by")?,
            row.try_get("status")?,
        )),
        None => None,
    })
}

/// Has the member any order on record (paid or imported)?
pub async fn has_orders(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_order WHERE tenant_id = $1 AND member_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// How far up an invitation chain the cycle check looks.
pub const MAX_CHAIN_DEPTH: usize = 64;

/// The member's inviter, that inviter's inviter, and so on (at most [`MAX_CHAIN_DEPTH`]).
pub async fn ancestors(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
) -> ApiResult<Vec<String>> {
    let mut chain: Vec<String> = Vec::new();
    let mut current = member_id.as_str().to_owned();
    while chain.len() < MAX_CHAIN_DEPTH {
        let next: Option<Option<String>> =
            sqlx::query_scalar("SELECT invited_by FROM member WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id.as_str())
                .bind(&current)
                .fetch_optional(&mut *conn)
                .await?;
        match next.flatten() {
            Some(parent) if !chain.contains(&parent) => {
                chain.push(parent.clone());
                current = parent;
            }
            _ => break,
        }
    }
    Ok(chain)
}

/// Attributions (not refused) to this inviter since `since`.
pub async fn attributions_since(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    inviter_id: &MemberId,
    since: i64,
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM referral WHERE tenant_id = $1 AND inviter_id = $2 \
         AND created_at >= $3 AND status <> 'refused'",
    )
    .bind(tenant_id.as_str())
    .bind(inviter_id.as_str())
    .bind(since)
    .fetch_one(conn)
    .await?)
}

/// Does another invitee of this inviter carry this device id (`column` = device_id) or IP?
pub async fn signal_seen_on_other_invitee(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    inviter_id: &MemberId,
    invitee_id: &MemberId,
    column: SignalColumn,
    value: Option<&str>,
) -> ApiResult<bool> {
    let Some(value) = value else { return Ok(false) };
    let column = match column {
        SignalColumn::Device => "device_id",
        SignalColumn::Ip => "ip",
    };
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM referral r JOIN member_signal s \
         ON s.tenant_id = r.tenant_id AND s.member_id = r.invitee_id \
         WHERE r.tenant_id = $1 AND r.inviter_id = $2 AND r.invitee_id <> $3 AND s.{column} = $4"
    ))
    .bind(tenant_id.as_str())
    .bind(inviter_id.as_str())
    .bind(invitee_id.as_str())
    .bind(value)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

#[derive(Debug, Clone, Copy)]
pub enum SignalColumn {
    Device,
    Ip,
}

pub async fn set_invited_by(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    member_id: &MemberId,
    inviter_id: &MemberId,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE member SET invited_by = $1 WHERE tenant_id = $2 AND id = $3 AND invited_by IS NULL",
    )
    .bind(inviter_id.as_str())
    .bind(tenant_id.as_str())
    .bind(member_id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

// --- referrals -----------------------------------------------------------------------------

/// A referral row.
#[derive(Debug, Clone)]
pub struct StoredReferral {
    pub id: String,
    pub campaign_id: String,
    pub inviter_id: MemberId,
    pub invitee_id: MemberId,
    pub code: String,
    pub status: ReferralStatus,
    pub reason: Option<String>,
    pub order_id: Option<String>,
    pub order_amount: Option<i64>,
    pub qualified_at: Option<i64>,
    pub release_at: Option<i64>,
    pub reward_cost: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const REFERRAL_COLUMNS: &str = "id, campaign_id, inviter_id, invitee_id, code, status, reason, \
    order_id, order_amount, qualified_at, release_at, reward_cost, created_at, updated_at";

fn referral_from_row(row: &AnyRow) -> Result<StoredReferral, sqlx::Error> {
    Ok(StoredReferral {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        inviter_id: MemberId::from_db(row.try_get("inviter_id")?),
        invitee_id: MemberId::from_db(row.try_get("invitee_id")?),
        code: row.try_get("code")?,
        status: state_column(row, "status")?,
        reason: row.try_get("reason")?,
        order_id: row.try_get("order_id")?,
        order_amount: row.try_get("order_amount")?,
        qualified_at: row.try_get("qualified_at")?,
        release_at: row.try_get("release_at")?,
        reward_cost: row.try_get("reward_cost")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl StoredReferral {
    pub fn view(&self, rewards: Vec<RewardView>) -> Referral {
        Referral {
            id: self.id.clone(),
            campaign_id: self.campaign_id.clone(),
            inviter_id: self.inviter_id.to_string(),
            invitee_id: self.invitee_id.to_string(),
            code: self.code.clone(),
            status: self.status,
            reason: self.reason.clone(),
            order_id: self.order_id.clone(),
            order_amount: self.order_amount,
            qualified_at: self.qualified_at.map(micros_to_rfc3339),
            release_at: self.release_at.map(micros_to_rfc3339),
            reward_cost: self.reward_cost,
            rewards,
            created_at: micros_to_rfc3339(self.created_at),
            updated_at: micros_to_rfc3339(self.updated_at),
        }
    }
}

pub async fn insert_referral(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    referral: &StoredReferral,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO referral (tenant_id, id, campaign_id, inviter_id, invitee_id, code, status, \
         reason, reward_cost, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9)",
    )
    .bind(tenant_id.as_str())
    .bind(referral.id.as_str())
    .bind(referral.campaign_id.as_str())
    .bind(referral.inviter_id.as_str())
    .bind(referral.invitee_id.as_str())
    .bind(referral.code.as_str())
    .bind(referral.status.as_str())
    .bind(referral.reason.as_deref())
    .bind(referral.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Write back the mutable fields of a referral.
pub async fn save_referral(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    referral: &StoredReferral,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE referral SET status = $1, reason = $2, order_id = $3, order_amount = $4, \
         qualified_at = $5, release_at = $6, reward_cost = $7, updated_at = $8 \
         WHERE tenant_id = $9 AND id = $10",
    )
    .bind(referral.status.as_str())
    .bind(referral.reason.as_deref())
    .bind(referral.order_id.as_deref())
    .bind(referral.order_amount)
    .bind(referral.qualified_at)
    .bind(referral.release_at)
    .bind(referral.reward_cost)
    .bind(referral.updated_at)
    .bind(tenant_id.as_str())
    .bind(referral.id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

async fn referral_where(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    column: &str,
    value: &str,
) -> ApiResult<Option<StoredReferral>> {
    let row = sqlx::query(&format!(
        "SELECT {REFERRAL_COLUMNS} FROM referral WHERE tenant_id = $1 AND {column} = $2 \
         ORDER BY id LIMIT 1"
    ))
    .bind(tenant_id.as_str())
    .bind(value)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(referral_from_row).transpose()?)
}

pub async fn referral(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<StoredReferral>> {
    referral_where(conn, tenant_id, "id", id).await
}

pub async fn referral_of_invitee(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    invitee_id: &MemberId,
) -> ApiResult<Option<StoredReferral>> {
    referral_where(conn, tenant_id, "invitee_id", invitee_id.as_str()).await
}

pub async fn referral_of_order(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    order_id: &str,
) -> ApiResult<Option<StoredReferral>> {
    referral_where(conn, tenant_id, "order_id", order_id).await
}

pub async fn list_referrals(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    status: Option<ReferralStatus>,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<StoredReferral>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!("SELECT {REFERRAL_COLUMNS} FROM referral WHERE tenant_id = "),
    );
    sql.bind(tenant_id.as_str())
        .push(" AND campaign_id = ")
        .bind(campaign_id);
    if let Some(status) = status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    if let Some(after) = after {
        sql.push(" AND id > ").bind(after);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(referral_from_row)
        .collect::<Result<_, _>>()?)
}

/// The inviter's qualified invites in the campaign (rewards pending or posted).
pub async fn qualified_count(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    inviter_id: &MemberId,
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM referral WHERE tenant_id = $1 AND campaign_id = $2 \
         AND inviter_id = $3 AND status IN ('pending', 'rewarded')",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(inviter_id.as_str())
    .fetch_one(conn)
    .await?)
}

/// The inviter's referrals in the campaign that qualified since `since`.
pub async fn qualified_since(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    inviter_id: &MemberId,
    since: i64,
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM referral WHERE tenant_id = $1 AND campaign_id = $2 \
         AND inviter_id = $3 AND status IN ('pending', 'rewarded') AND qualified_at >= $4",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(inviter_id.as_str())
    .bind(since)
    .fetch_one(conn)
    .await?)
}

// --- rewards and ladder rungs --------------------------------------------------------------

/// A reward row to insert.
#[derive(Debug, Clone)]
pub struct NewRewardRow<'a> {
    pub id: &'a str,
    pub referral_id: &'a str,
    pub member_id: &'a MemberId,
    pub role: &'a str,
    pub kind: &'a str,
    pub amount: i64,
    pub coupon_template_id: Option<&'a str>,
    pub status: ReferralRewardStatus,
    pub detail: Option<&'a str>,
}

pub async fn insert_reward(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    reward: &NewRewardRow<'_>,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO referral_reward (tenant_id, id, referral_id, member_id, role, kind, amount, \
         coupon_template_id, status, detail, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(reward.id)
    .bind(reward.referral_id)
    .bind(reward.member_id.as_str())
    .bind(reward.role)
    .bind(reward.kind)
    .bind(reward.amount)
    .bind(reward.coupon_template_id)
    .bind(reward.status.as_str())
    .bind(reward.detail)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_reward_status(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    status: ReferralRewardStatus,
    detail: Option<&str>,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE referral_reward SET status = $1, detail = COALESCE($2, detail), updated_at = $3 \
         WHERE tenant_id = $4 AND id = $5",
    )
    .bind(status.as_str())
    .bind(detail)
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn rewards_of(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    referral_id: &str,
) -> ApiResult<Vec<RewardView>> {
    let rows = sqlx::query(
        "SELECT id, member_id, role, kind, amount, coupon_template_id, status, detail \
         FROM referral_reward WHERE tenant_id = $1 AND referral_id = $2 ORDER BY created_at, id",
    )
    .bind(tenant_id.as_str())
    .bind(referral_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RewardView {
                id: row.try_get("id")?,
                member_id: row.try_get("member_id")?,
                role: row.try_get("role")?,
                kind: row.try_get("kind")?,
                amount: row.try_get("amount")?,
                coupon_template_id: row.try_get("coupon_template_id")?,
                status: state_column(row, "status")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ApiError::from)
}

/// Record that the inviter holds a live reward for a rung (carried by `referral_id`); false
/// when one is held already, so a rung never holds two.
pub async fn claim_rung(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    inviter_id: &MemberId,
    invites: i64,
    referral_id: &str,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "INSERT INTO referral_ladder_rung (tenant_id, campaign_id, inviter_id, invites, \
         referral_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(inviter_id.as_str())
    .bind(invites)
    .bind(referral_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forget that the inviter holds a rung (its reward was voided), so that the rung can be paid
/// again when their count reaches it.
pub async fn release_rung(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    inviter_id: &MemberId,
    invites: i64,
) -> ApiResult<()> {
    sqlx::query(
        "DELETE FROM referral_ladder_rung WHERE tenant_id = $1 AND campaign_id = $2 \
         AND inviter_id = $3 AND invites = $4",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(inviter_id.as_str())
    .bind(invites)
    .execute(conn)
    .await?;
    Ok(())
}

/// A ladder reward of an inviter in a campaign, as stored.
#[derive(Debug, Clone)]
pub struct LadderReward {
    pub id: String,
    /// The referral that carries it (its release posts it).
    pub referral_id: String,
    /// The rung it was paid for.
    pub invites: i64,
    pub kind: String,
    /// Points or fen; 1 for a coupon (so it is also the budget cost).
    pub amount: i64,
    pub status: ReferralRewardStatus,
}

/// Every ladder reward the inviter was ever paid in the campaign, voided ones included (their
/// number per rung numbers the next attempt), oldest first.
pub async fn ladder_rewards(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    inviter_id: &MemberId,
) -> ApiResult<Vec<LadderReward>> {
    let rows = sqlx::query(
        "SELECT w.id, w.referral_id, w.role, w.kind, w.amount, w.status FROM referral_reward w \
         JOIN referral r ON r.tenant_id = w.tenant_id AND r.id = w.referral_id \
         WHERE w.tenant_id = $1 AND r.campaign_id = $2 AND r.inviter_id = $3 \
         AND w.member_id = $3 AND w.role LIKE 'ladder%' ORDER BY w.created_at, w.id",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(inviter_id.as_str())
    .fetch_all(conn)
    .await?;
    let mut rewards = Vec::with_capacity(rows.len());
    for row in &rows {
        let role: String = row.try_get("role")?;
        let Some(Role::Ladder(invites)) = Role::parse(&role) else {
            continue;
        };
        rewards.push(LadderReward {
            id: row.try_get("id")?,
            referral_id: row.try_get("referral_id")?,
            invites,
            kind: row.try_get("kind")?,
            amount: row.try_get("amount")?,
            status: state_column(row, "status")?,
        });
    }
    Ok(rewards)
}

/// The referral that carries a rung paid outside its own qualification (a rung paid again
/// after the referral that carried it was voided): of the inviter's qualified referrals in the
/// campaign, the pending one whose return window closes last, so that the rung is released
/// only once every invite that counts for it is past its window; when none is pending, the
/// latest rewarded one (the rung is then posted at once).
pub async fn ladder_carrier(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    inviter_id: &MemberId,
) -> ApiResult<Option<StoredReferral>> {
    let row = sqlx::query(&format!(
        "SELECT {REFERRAL_COLUMNS} FROM referral WHERE tenant_id = $1 AND campaign_id = $2 \
         AND inviter_id = $3 AND status IN ('pending', 'rewarded') \
         ORDER BY CASE WHEN status = 'pending' THEN 0 ELSE 1 END, \
         COALESCE(release_at, 0) DESC, COALESCE(qualified_at, 0) DESC, id DESC LIMIT 1"
    ))
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(inviter_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(referral_from_row).transpose()?)
}

/// Change a referral's `reward_cost` by `delta` (a ladder reward voided on it or paid to it
/// by another referral's refund), relative to what is stored.
pub async fn add_reward_cost(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    referral_id: &str,
    delta: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE referral SET reward_cost = reward_cost + $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(delta)
    .bind(tenant_id.as_str())
    .bind(referral_id)
    .execute(conn)
    .await?;
    Ok(())
}

// --- reviews -------------------------------------------------------------------------------

const REVIEW_COLUMNS: &str = "v.id, v.referral_id, v.campaign_id, r.inviter_id, r.invitee_id, \
    v.reason, v.status, v.note, v.created_at, v.decided_at";

fn review_from_row(row: &AnyRow) -> Result<Review, sqlx::Error> {
    Ok(Review {
        id: row.try_get("id")?,
        referral_id: row.try_get("referral_id")?,
        campaign_id: row.try_get("campaign_id")?,
        inviter_id: row.try_get("inviter_id")?,
        invitee_id: row.try_get("invitee_id")?,
        reason: row.try_get("reason")?,
        status: state_column(row, "status")?,
        note: row.try_get("note")?,
        created_at: micros_to_rfc3339(row.try_get("created_at")?),
        decided_at: row
            .try_get::<Option<i64>, _>("decided_at")?
            .map(micros_to_rfc3339),
    })
}

pub async fn insert_review(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    referral: &StoredReferral,
    reason: &str,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO referral_review (tenant_id, id, referral_id, campaign_id, reason, status, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id.as_str())
    .bind(id)
    .bind(referral.id.as_str())
    .bind(referral.campaign_id.as_str())
    .bind(reason)
    .bind(ReferralReviewStatus::Pending.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn review(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
) -> ApiResult<Option<Review>> {
    let row = sqlx::query(&format!(
        "SELECT {REVIEW_COLUMNS} FROM referral_review v JOIN referral r \
         ON r.tenant_id = v.tenant_id AND r.id = v.referral_id \
         WHERE v.tenant_id = $1 AND v.id = $2"
    ))
    .bind(tenant_id.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(review_from_row).transpose()?)
}

/// Decide a pending review; false when it was decided already (by a concurrent call).
pub async fn decide_review(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    id: &str,
    status: ReferralReviewStatus,
    note: Option<&str>,
    at: i64,
) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE referral_review SET status = $1, note = $2, decided_at = $3 \
         WHERE tenant_id = $4 AND id = $5 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(note)
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Close the pending reviews of a referral whose order was refunded.
pub async fn close_reviews(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    referral_id: &str,
    at: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE referral_review SET status = 'closed', note = 'order refunded', decided_at = $1 \
         WHERE tenant_id = $2 AND referral_id = $3 AND status = 'pending'",
    )
    .bind(at)
    .bind(tenant_id.as_str())
    .bind(referral_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list_reviews(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    status: Option<ReferralReviewStatus>,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<Review>> {
    let mut sql = Sql::for_conn(
        &*conn,
        &format!(
            "SELECT {REVIEW_COLUMNS} FROM referral_review v JOIN referral r \
             ON r.tenant_id = v.tenant_id AND r.id = v.referral_id WHERE v.tenant_id = "
        ),
    );
    sql.bind(tenant_id.as_str());
    if let Some(status) = status {
        sql.push(" AND v.status = ").bind(status.as_str());
    }
    if let Some(after) = after {
        sql.push(" AND v.id > ").bind(after);
    }
    sql.push(" ORDER BY v.id LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(conn).await?;
    Ok(rows.iter().map(review_from_row).collect::<Result<_, _>>()?)
}

// --- leaderboard and funnel ----------------------------------------------------------------

/// Qualified invites per inviter, with the instant each reached their count.
const STANDINGS: &str = "SELECT inviter_id, CAST(COUNT(*) AS BIGINT) AS invites, \
    MAX(qualified_at) AS reached_at FROM referral WHERE tenant_id = $1 AND campaign_id = $2 \
    AND status IN ('pending', 'rewarded') GROUP BY inviter_id";

/// The top `limit` inviters: most qualified invites first; ties go to who got there first.
pub async fn leaderboard(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    limit: i64,
) -> ApiResult<Vec<Standing>> {
    let rows = sqlx::query(&format!(
        "SELECT inviter_id, invites FROM ({STANDINGS}) s \
         ORDER BY invites DESC, reached_at ASC, inviter_id ASC LIMIT $3"
    ))
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            Ok(Standing {
                member_id: row.try_get("inviter_id")?,
                invites: row.try_get("invites")?,
                rank: Some(i64::try_from(i).unwrap_or(i64::MAX) + 1),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ApiError::from)
}

/// One member's standing, ranked as [`leaderboard`] ranks.
pub async fn standing(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
    member_id: &MemberId,
) -> ApiResult<Standing> {
    let mine = sqlx::query(&format!(
        "SELECT invites, reached_at FROM ({STANDINGS}) s WHERE inviter_id = $3"
    ))
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(member_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(mine) = mine else {
        return Ok(Standing {
            member_id: member_id.to_string(),
            invites: 0,
            rank: None,
        });
    };
    let invites: i64 = mine.try_get("invites")?;
    let reached_at: i64 = mine.try_get("reached_at")?;
    let ahead: i64 = sqlx::query_scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM ({STANDINGS}) s WHERE invites > $3 \
         OR (invites = $3 AND (reached_at < $4 OR (reached_at = $4 AND inviter_id < $5)))"
    ))
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .bind(invites)
    .bind(reached_at)
    .bind(member_id.as_str())
    .fetch_one(conn)
    .await?;
    Ok(Standing {
        member_id: member_id.to_string(),
        invites,
        rank: Some(ahead + 1),
    })
}

/// Raw funnel counts: (codes issued, signups, refused, in review, qualified, rewarded).
pub async fn funnel_counts(
    conn: &mut AnyConnection,
    tenant_id: &TenantId,
    campaign_id: &str,
) -> ApiResult<[i64; 6]> {
    let codes: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM invite_code WHERE tenant_id = $1 AND campaign_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .fetch_one(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT \
         CAST(COALESCE(SUM(CASE WHEN status <> 'refused' THEN 1 ELSE 0 END), 0) AS BIGINT) AS signups, \
         CAST(COALESCE(SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END), 0) AS BIGINT) AS refused, \
         CAST(COALESCE(SUM(CASE WHEN status = 'review' THEN 1 ELSE 0 END), 0) AS BIGINT) AS in_review, \
         CAST(COALESCE(SUM(CASE WHEN status IN ('pending', 'rewarded') THEN 1 ELSE 0 END), 0) AS BIGINT) AS qualified, \
         CAST(COALESCE(SUM(CASE WHEN status = 'rewarded' THEN 1 ELSE 0 END), 0) AS BIGINT) AS rewarded \
         FROM referral WHERE tenant_id = $1 AND campaign_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(campaign_id)
    .fetch_one(conn)
    .await?;
    Ok([
        codes,
        row.try_get("signups")?,
        row.try_get("refused")?,
        row.try_get("in_review")?,
        row.try_get("qualified")?,
        row.try_get("rewarded")?,
    ])
}
