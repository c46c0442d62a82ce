-- Distribution (分销): the tenant's distribution settings, per-product commission rates,
-- promoters (one per member) with their inviter and share code, the binding of each customer
-- to a promoter, one commission row per order and level, and withdrawals.
-- Conventions as in 0001: BIGINT and TEXT only, instants in microseconds, JSON as TEXT, every
-- key starting with tenant_id.

CREATE TABLE distribution_setting (
    tenant_id TEXT NOT NULL,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- A product's own rates; absent: the default rates apply.
CREATE TABLE distribution_product_rate (
    tenant_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    level1_bp BIGINT NOT NULL,
    level2_bp BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, product_id)
);

CREATE TABLE promoter (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    -- The promoter who invited this one (the only upline ever paid: level 2).
    invited_by_promoter_id TEXT,
    status TEXT NOT NULL,
    share_code TEXT,
    -- Commission taken back by refunds after release that the balance could not cover (fen),
    -- netted against the promoter's next released commissions.
    debt BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX promoter_member ON promoter (tenant_id, member_id);
CREATE UNIQUE INDEX promoter_share_code ON promoter (tenant_id, share_code);
CREATE INDEX promoter_status ON promoter (tenant_id, status, id);
CREATE INDEX promoter_invited_by ON promoter (tenant_id, invited_by_promoter_id);

-- The promoter a customer is bound to; one row per customer, moved under the binding rules.
CREATE TABLE promoter_binding (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    promoter_id TEXT NOT NULL,
    bound_at BIGINT NOT NULL,
    ends_at BIGINT,
    PRIMARY KEY (tenant_id, member_id)
);
CREATE INDEX promoter_binding_promoter ON promoter_binding (tenant_id, promoter_id);

-- One commission per order and level (never two): the rate as a rational, the order's
-- commissionable base, what is owed now and the ledger transfer that holds it.
CREATE TABLE commission (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    level BIGINT NOT NULL,
    promoter_id TEXT NOT NULL,
    order_total BIGINT NOT NULL,
    base BIGINT NOT NULL,
    rate_num BIGINT NOT NULL,
    rate_den BIGINT NOT NULL,
    refunded BIGINT NOT NULL DEFAULT 0,
    original BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    status TEXT NOT NULL,
    transfer_id TEXT,
    revision BIGINT NOT NULL DEFAULT 1,
    release_at BIGINT NOT NULL,
    released_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX commission_order_level ON commission (tenant_id, order_id, level);
CREATE INDEX commission_promoter ON commission (tenant_id, promoter_id, id);
CREATE INDEX commission_created ON commission (tenant_id, created_at);

CREATE TABLE withdrawal (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    promoter_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    status TEXT NOT NULL,
    reference TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX withdrawal_promoter ON withdrawal (tenant_id, promoter_id, id);
CREATE INDEX withdrawal_status ON withdrawal (tenant_id, status, id);
