-- Saved segments (audiences): a name and a rule in the segment rule language (JSON text), and
-- one count per tenant-local day, kept by the daily run. The members of a segment are never
-- stored: the in-memory index answers them from the members' own tables.

CREATE TABLE segment (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    rule TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE segment_count (
    tenant_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    day TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, day)
);
