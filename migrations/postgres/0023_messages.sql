-- Messages through the gate (consent, frequency cap, quiet hours) and the tenant's rules for it.
-- A message row is written whatever the gate decided: requested (handed to the merchant's
-- gateway as a `message.requested` event), deferred (quiet hours; a scheduler job releases it)
-- or suppressed (with the reason), so a member's history says what they were sent or spared.

CREATE TABLE messaging_setting (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE message (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    category TEXT NOT NULL,
    template TEXT NOT NULL,
    variables TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    deliver_at BIGINT,
    requested_at BIGINT,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- A member's history, and the cap's count of their recent marketing messages.
CREATE INDEX message_member ON message (tenant_id, member_id, id);
CREATE INDEX message_member_requested ON message (tenant_id, member_id, requested_at)
    WHERE requested_at IS NOT NULL;
