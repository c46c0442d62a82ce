-- Referral growth (裂变, 老带新): campaigns, invite codes, the anti-fraud signals given at
-- member creation, one referral decision per invitee (first touch), the review queue, the
-- rewards each referral paid, the ladder rungs reached and the tenant's referral settings.
-- Conventions as in 0001: BIGINT and TEXT only, instants in microseconds, flags 0/1, JSON as
-- TEXT, every key starting with tenant_id.

-- Who invited the member (set once, at attribution; never changed afterwards).
ALTER TABLE member ADD COLUMN invited_by TEXT;

CREATE TABLE referral_campaign (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    qualify_on TEXT NOT NULL,
    min_order_amount BIGINT NOT NULL,
    inviter_reward TEXT,
    invitee_reward TEXT,
    ladder TEXT NOT NULL,
    inviter_daily_cap BIGINT,
    budget BIGINT,
    spent BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE invite_code (
    tenant_id TEXT NOT NULL,
    code TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, code)
);
CREATE UNIQUE INDEX invite_code_member ON invite_code (tenant_id, campaign_id, member_id);

CREATE TABLE member_signal (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    device_id TEXT,
    ip TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, member_id)
);
CREATE INDEX member_signal_device ON member_signal (tenant_id, device_id);
CREATE INDEX member_signal_ip ON member_signal (tenant_id, ip);

CREATE TABLE referral (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    inviter_id TEXT NOT NULL,
    invitee_id TEXT NOT NULL,
    code TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    order_id TEXT,
    order_amount BIGINT,
    qualified_at BIGINT,
    release_at BIGINT,
    reward_cost BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX referral_invitee ON referral (tenant_id, invitee_id);
CREATE INDEX referral_campaign_inviter ON referral (tenant_id, campaign_id, inviter_id, created_at);
CREATE INDEX referral_inviter ON referral (tenant_id, inviter_id, created_at);
CREATE INDEX referral_order ON referral (tenant_id, order_id);

CREATE TABLE referral_review (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX referral_review_status ON referral_review (tenant_id, status, id);
CREATE INDEX referral_review_referral ON referral_review (tenant_id, referral_id);

CREATE TABLE referral_reward (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    coupon_template_id TEXT,
    status TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX referral_reward_referral ON referral_reward (tenant_id, referral_id);

CREATE TABLE referral_ladder_rung (
    tenant_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    inviter_id TEXT NOT NULL,
    invites BIGINT NOT NULL,
    referral_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, inviter_id, invites)
);

CREATE TABLE referral_setting (
    tenant_id TEXT NOT NULL,
    velocity_per_hour BIGINT NOT NULL,
    return_window_days BIGINT NOT NULL,
    invite_link_base TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id)
);
