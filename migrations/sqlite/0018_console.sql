-- The admin console (issue 20): its operators, their sign-in sessions, the failed sign-ins
-- that slow down password guessing, and the audit log of what operators changed.
--
-- `operator` is looked up by email at sign-in, before any tenant is known: like api_key it is
-- a reference table in a tenant-sharded PostgreSQL, and an email (stored lower-case) names one
-- operator across all tenants so that the sign-in form needs no tenant. Sessions are rows (they
-- work across nodes; signing out deletes the row) keyed by the SHA-256 of the cookie's token,
-- so a leaked table opens no session.
CREATE TABLE operator (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenant (id),
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT 'zh-CN',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX operator_email ON operator (email);
CREATE INDEX operator_tenant ON operator (tenant_id, id);

CREATE TABLE console_session (
    token_digest TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX console_session_operator ON console_session (tenant_id, operator_id);
CREATE INDEX console_session_seen ON console_session (last_seen_at);

CREATE TABLE console_sign_in_failure (
    email TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX console_sign_in_failure_email ON console_sign_in_failure (email, at);

CREATE TABLE console_audit (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    action TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX console_audit_at ON console_audit (tenant_id, at);
