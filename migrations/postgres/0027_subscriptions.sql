-- Subscriptions (周期购): plans, each member's subscription with the terms copied from its plan
-- when it was taken, and one row per delivery of its calendar.
-- Conventions as in 0001: BIGINT and TEXT only, instants in microseconds, local days as
-- 'YYYY-MM-DD' text, JSON as TEXT, every key starting with tenant_id.

CREATE TABLE subscription_plan (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    product_id TEXT NOT NULL,
    qty BIGINT NOT NULL,
    -- {"every": N, "unit": "week" | "month"} or {"days_of_month": [...]}.
    schedule TEXT NOT NULL,
    -- NULL: open-ended.
    deliveries BIGINT,
    price_per_delivery BIGINT NOT NULL,
    billing TEXT NOT NULL,
    cutoff_days BIGINT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE subscription (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    qty BIGINT NOT NULL,
    schedule TEXT NOT NULL,
    -- The day an `every` schedule counts from (the start, then the last resume).
    anchor_date TEXT NOT NULL,
    deliveries BIGINT,
    price_per_delivery BIGINT NOT NULL,
    billing TEXT NOT NULL,
    cutoff_days BIGINT NOT NULL,
    status TEXT NOT NULL,
    -- Why it is paused: `requested` or `payment_failed`.
    pause_reason TEXT,
    -- Personal data, cleared on erasure: the address, or the community group-buying leader
    -- whose pickup point receives the deliveries (a leader's id, not a member's).
    address TEXT,
    pickup_leader_id TEXT,
    -- Prepaid: the one order that pays for every delivery.
    order_id TEXT,
    refunded BIGINT NOT NULL DEFAULT 0,
    -- Whether `subscription.ending` went out.
    ending_notified BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX subscription_member ON subscription (tenant_id, member_id, id);
CREATE INDEX subscription_plan_status ON subscription (tenant_id, plan_id, status, id);
CREATE INDEX subscription_status ON subscription (tenant_id, status, id);
CREATE INDEX subscription_order ON subscription (tenant_id, order_id);

CREATE TABLE subscription_delivery (
    tenant_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    delivery_date TEXT NOT NULL,
    -- When its order is created and changes to it stop (microseconds).
    cutoff_at BIGINT NOT NULL,
    -- scheduled, skipped or ordered (delivered is read from the order).
    status TEXT NOT NULL,
    -- Why a delivery was skipped: `requested` or `unpaid`.
    reason TEXT,
    qty BIGINT NOT NULL,
    order_id TEXT,
    -- Failed wallet payments of a per-delivery order.
    failed_payments BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subscription_id, delivery_date)
);
CREATE INDEX subscription_delivery_date ON subscription_delivery (tenant_id, delivery_date);
CREATE INDEX subscription_delivery_order ON subscription_delivery (tenant_id, order_id);
