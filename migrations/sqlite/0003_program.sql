-- Membership program: one settings document per tenant, growth and tier on the member, and
-- notices that must happen once (birthday perks per year, expiry warnings per cutoff).

CREATE TABLE program_setting (
    tenant_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

ALTER TABLE member ADD COLUMN tier TEXT;
ALTER TABLE member ADD COLUMN growth BIGINT NOT NULL DEFAULT 0;

CREATE TABLE program_notice (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    member_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
