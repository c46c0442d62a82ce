-- Ledger: accounts per (tenant, address, asset), immutable transfers, one resolution per pending
-- transfer, and the scheduler's deadline rows.

CREATE TABLE ledger_account (
    tenant_id TEXT NOT NULL,
    address TEXT NOT NULL,
    asset TEXT NOT NULL,
    debits_posted BIGINT NOT NULL DEFAULT 0,
    credits_posted BIGINT NOT NULL DEFAULT 0,
    debits_pending BIGINT NOT NULL DEFAULT 0,
    credits_pending BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, address, asset)
);

CREATE TABLE ledger_transfer (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    debit_address TEXT NOT NULL,
    credit_address TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL,
    code TEXT NOT NULL,
    reference TEXT,
    metadata TEXT NOT NULL,
    pending BIGINT NOT NULL,
    timeout_at BIGINT,
    linked BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ledger_transfer_debit ON ledger_transfer (tenant_id, debit_address, created_at);
CREATE INDEX ledger_transfer_credit ON ledger_transfer (tenant_id, credit_address, created_at);

CREATE TABLE ledger_resolution (
    tenant_id TEXT NOT NULL,
    pending_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    resolved_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, pending_id)
);

CREATE TABLE scheduled_job (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    locked_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX scheduled_job_due ON scheduled_job (state, due_at);
