-- Automations (营销自动化) and broadcasts (群发): what the engine does to members on its own,
-- through the message gate (0023), the ledger and coupons.
--
-- An automation reads its tenant's outbox after `event_cursor` (like a webhook endpoint) and
-- writes one run per member per triggering event; a broadcast writes one run per member of
-- its audience. A run's key is unique per automation or broadcast (`trigger_key`: the event's
-- seq, or the member id), so a member is acted on at most once per event or broadcast, even
-- when two nodes race. A waiting run has a scheduler job at `due_at` (DESIGN rule 7).

CREATE TABLE automation (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    trigger_event TEXT NOT NULL,
    filter TEXT,
    delay_secs BIGINT NOT NULL,
    actions TEXT NOT NULL,
    status TEXT NOT NULL,
    event_cursor BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- The worker's scan for active automations of every tenant.
CREATE INDEX automation_status ON automation (status, tenant_id);

CREATE TABLE broadcast (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    audience TEXT NOT NULL,
    actions TEXT NOT NULL,
    send_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    audience_count BIGINT,
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE engagement_run (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    trigger_key TEXT NOT NULL,
    status TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    outcome TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX engagement_run_once ON engagement_run (tenant_id, source_id, trigger_key);
CREATE INDEX engagement_run_member ON engagement_run (tenant_id, member_id);

-- An automation's or a broadcast's messages, for its stats.
CREATE INDEX message_source ON message (tenant_id, source, member_id);
