-- The event stream export to NATS JetStream: per tenant and stream, the last event `seq` that
-- JetStream acknowledged (the export cursor, advanced only after the ack and only by
-- compare-and-set), and the lease that lets one node at a time export the tenant (`holder`,
-- a node id, until `lease_until`, microseconds since the epoch).

CREATE TABLE event_export (
    tenant_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_seq BIGINT NOT NULL,
    holder TEXT,
    lease_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, stream)
);
