-- Webhooks (issue 19): endpoints a merchant registers, one delivery row per (endpoint, outbox
-- event) and one row per attempt. The worker of every node fans new outbox events out to the
-- endpoints whose types match (each endpoint keeps its own cursor, moved with a conditional
-- update), then claims due deliveries (`claim`, `locked_until`) so that each attempt is made by
-- one node, and records each attempt's outcome.

CREATE TABLE webhook_endpoint (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of event types, or ["*"].
    event_types TEXT NOT NULL,
    -- enabled | disabled
    status TEXT NOT NULL,
    -- Why it was disabled: operator, gone (410), failing (5 days of failures).
    disabled_reason TEXT,
    -- whsec_ + base64 of 32 random bytes.
    secret TEXT NOT NULL,
    -- The secret before the last rotation, which also signs until previous_secret_until
    -- (micros), so that receivers can switch without dropping deliveries.
    previous_secret TEXT,
    previous_secret_until BIGINT,
    -- The last outbox seq fanned out to this endpoint.
    event_cursor BIGINT NOT NULL,
    -- Start of the current run of failed attempts (micros); NULL after a success.
    failing_since BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_delivery (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    -- The `webhook-id` header: the event's id, the same on every attempt.
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    -- The JSON body sent: {"type", "timestamp", "data"}.
    body TEXT NOT NULL,
    -- pending | succeeded | failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- Failed attempts since the delivery was created or retried by hand (its place in the
    -- retry schedule).
    round_failures BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT,
    claim TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhook_delivery_message ON webhook_delivery (tenant_id, endpoint_id, message_id);
CREATE INDEX webhook_delivery_due ON webhook_delivery (tenant_id, status, next_attempt_at);
CREATE INDEX webhook_delivery_claim ON webhook_delivery (tenant_id, claim);

CREATE TABLE webhook_attempt (
    tenant_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    at BIGINT NOT NULL,
    -- The HTTP status answered; NULL when there was no answer.
    status_code BIGINT,
    duration_ms BIGINT NOT NULL,
    error TEXT,
    PRIMARY KEY (tenant_id, delivery_id, n)
);
