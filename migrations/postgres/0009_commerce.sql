-- Commerce: the order state machine (checkout, payment, refunds, payment deadlines), flash
-- sales and group buys. Orders ingested for analytics (0006) keep working: the new columns
-- default to what an external, already-paid order needs.

ALTER TABLE customer_order ADD COLUMN subtotal BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN pricing TEXT;
ALTER TABLE customer_order ADD COLUMN coupon_id TEXT;
ALTER TABLE customer_order ADD COLUMN points_burned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN points_returned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN qty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN expires_at BIGINT;
ALTER TABLE customer_order ADD COLUMN payment_method TEXT;
ALTER TABLE customer_order ADD COLUMN payment_reference TEXT;
ALTER TABLE customer_order ADD COLUMN wallet_spend_id TEXT;
ALTER TABLE customer_order ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN refund_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN growth_given BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customer_order ADD COLUMN external_reference TEXT;
ALTER TABLE customer_order ADD COLUMN campaign_kind TEXT;
ALTER TABLE customer_order ADD COLUMN campaign_id TEXT;
ALTER TABLE customer_order ADD COLUMN team_id TEXT;
ALTER TABLE customer_order ADD COLUMN fulfilled_at BIGINT;
ALTER TABLE customer_order ADD COLUMN completed_at BIGINT;
ALTER TABLE customer_order ADD COLUMN closed_at BIGINT;
ALTER TABLE customer_order ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;

-- Payment deadlines: the sweep finds due unpaid orders through this (partial) index.
CREATE INDEX customer_order_due ON customer_order (expires_at) WHERE status = 'pending_payment';
-- Per-member limits of flash sales and group buys.
CREATE INDEX customer_order_campaign ON customer_order (tenant_id, campaign_id, member_id)
    WHERE campaign_id IS NOT NULL;
CREATE INDEX customer_order_team ON customer_order (tenant_id, team_id) WHERE team_id IS NOT NULL;
-- An external order number is ingested once.
CREATE UNIQUE INDEX customer_order_external ON customer_order (tenant_id, external_reference)
    WHERE external_reference IS NOT NULL;

-- One row per payment reference: a retried payment replays, a reused one is refused.
CREATE TABLE order_payment (
    tenant_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    order_id TEXT NOT NULL,
    method TEXT NOT NULL,
    amount BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, reference)
);

CREATE TABLE order_refund (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT,
    points_returned BIGINT NOT NULL,
    restocked BIGINT NOT NULL,
    coupon_returned BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX order_refund_order ON order_refund (tenant_id, order_id);
CREATE UNIQUE INDEX order_refund_reference ON order_refund (tenant_id, reference)
    WHERE reference IS NOT NULL;

-- Flash sales: their own stock; reserved = units in unpaid orders, sold = paid units.
CREATE TABLE flash_sale (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    price BIGINT NOT NULL,
    stock BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    sold BIGINT NOT NULL,
    per_member_limit BIGINT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    payment_timeout_secs BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Group buys (拼团) and their teams.
CREATE TABLE group_buy (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    price BIGINT NOT NULL,
    team_size BIGINT NOT NULL,
    duration_secs BIGINT NOT NULL,
    per_member_limit BIGINT NOT NULL,
    virtual_completion BIGINT NOT NULL,
    payment_timeout_secs BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE group_team (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    group_buy_id TEXT NOT NULL,
    opener_member_id TEXT NOT NULL,
    team_size BIGINT NOT NULL,
    status TEXT NOT NULL,
    slots_taken BIGINT NOT NULL,
    paid_count BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX group_team_joinable ON group_team (tenant_id, group_buy_id, status, slots_taken);
