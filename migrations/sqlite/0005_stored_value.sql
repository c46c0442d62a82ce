-- Stored value (储值): top-up plans (充值送), top-ups, wallet spends and refunds, and the
-- tenant's stored-value settings. Balances themselves live in the ledger (wallet_principal,
-- wallet_bonus); these rows are the business records the ledger transfers point back to.
-- Transfer ids are derived from these rows' ids (`<row id>:principal`, `<row id>:bonus`), so a
-- row and its transfers are written in one transaction and a retry never credits twice.

CREATE TABLE topup_plan (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    pay BIGINT NOT NULL,
    bonus BIGINT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE wallet_topup (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    payment_ref TEXT NOT NULL,
    pay BIGINT NOT NULL,
    bonus BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX wallet_topup_payment_ref ON wallet_topup (tenant_id, payment_ref);
CREATE INDEX wallet_topup_member ON wallet_topup (tenant_id, member_id, created_at);

CREATE TABLE wallet_spend (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount BIGINT NOT NULL,
    principal BIGINT NOT NULL,
    bonus BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX wallet_spend_reference ON wallet_spend (tenant_id, reference);

CREATE TABLE wallet_refund (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    reference TEXT,
    amount BIGINT NOT NULL,
    principal BIGINT NOT NULL,
    bonus BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX wallet_refund_reference ON wallet_refund (tenant_id, reference);
CREATE INDEX wallet_refund_source ON wallet_refund (tenant_id, source_id);

CREATE TABLE stored_value_setting (
    tenant_id TEXT NOT NULL,
    spend_policy TEXT NOT NULL,
    cap BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id)
);
