-- Foundation: tenants, API keys, members, tags, the event outbox and idempotency keys.
-- Conventions shared with migrations/postgres: BIGINT and TEXT columns only, instants as
-- microseconds since the epoch (UTC), flags as 0/1, JSON as TEXT, every key starting with
-- tenant_id (api_key is the reference table looked up by key digest).

CREATE TABLE tenant (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'Asia/Shanghai',
    settings TEXT NOT NULL DEFAULT '{}',
    event_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_key (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenant (id),
    key_digest TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_key_digest ON api_key (key_digest);
CREATE INDEX api_key_tenant ON api_key (tenant_id, id);

CREATE TABLE member (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    external_id TEXT,
    name TEXT,
    phone TEXT,
    birthday TEXT,
    gender TEXT,
    source TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    consent_marketing BIGINT NOT NULL DEFAULT 0,
    consent_updated_at BIGINT,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    erased_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX member_external_id ON member (tenant_id, external_id);
CREATE INDEX member_source ON member (tenant_id, source, id);
CREATE INDEX member_created_at ON member (tenant_id, created_at);
CREATE INDEX member_phone ON member (tenant_id, phone);

CREATE TABLE member_tag (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (tenant_id, member_id, tag)
);
CREATE INDEX member_tag_by_tag ON member_tag (tenant_id, tag, member_id);

CREATE TABLE event (
    tenant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX event_subject ON event (tenant_id, subject, seq);

CREATE TABLE idempotency_key (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    response_status BIGINT,
    response_type TEXT,
    response_body BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_key_created_at ON idempotency_key (created_at);
