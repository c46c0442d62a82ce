-- Orders: for now the orders placed elsewhere and ingested for analytics (source 'external',
-- already paid). The orders issue extends this table with its state machine.

CREATE TABLE customer_order (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    currency TEXT NOT NULL,
    items TEXT NOT NULL,
    ordered_at BIGINT NOT NULL,
    paid_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customer_order_member ON customer_order (tenant_id, member_id, ordered_at);
