-- One item, one code (一物一码): batches of unique codes printed on packages, the codes
-- themselves with what their scans established (first scan, count, whether the points were
-- paid), a log of scans for the statistics, the codes flagged as cloned labels, and the
-- failed-scan counters that throttle guessing.
-- Conventions as in 0001: BIGINT and TEXT only, instants in microseconds, every key starting
-- with tenant_id.

CREATE TABLE code_batch (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    count BIGINT NOT NULL,
    points_per_scan BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One row per printed code. The plain code is the key: a scan is one read of this index,
-- and the printer's CSV is read back from here (by batch and serial; the serial index carries
-- the code, so the CSV is read from the index).
CREATE TABLE item_code (
    tenant_id TEXT NOT NULL,
    code TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    serial BIGINT NOT NULL,
    scan_count BIGINT NOT NULL DEFAULT 0,
    first_scanned_at BIGINT,
    first_city TEXT,
    -- When the first member's scan earned the batch's points (null: not yet); set once.
    awarded_at BIGINT,
    PRIMARY KEY (tenant_id, code)
);
CREATE UNIQUE INDEX item_code_batch_serial ON item_code (tenant_id, batch_id, serial)
    INCLUDE (code);

-- Every authentic scan (unknown, mistyped and expired codes are not logged here).
CREATE TABLE code_scan (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    code TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    member_id TEXT,
    device_id TEXT,
    ip TEXT,
    city TEXT,
    scanned_at BIGINT NOT NULL,
    -- The tenant's local date of the scan (YYYY-MM-DD), for the statistics by day.
    local_date TEXT NOT NULL,
    -- Points this scan earned (only the first member's scan earns any).
    points BIGINT NOT NULL,
    -- 1 for the code's first scan, 0 after.
    first_scan BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX code_scan_code ON code_scan (tenant_id, code);
CREATE INDEX code_scan_batch ON code_scan (tenant_id, batch_id);
CREATE INDEX code_scan_member ON code_scan (tenant_id, member_id);

-- Codes scanned from too many devices or cities: a cloned label. Flagged once.
CREATE TABLE suspicious_code (
    tenant_id TEXT NOT NULL,
    code TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    devices BIGINT NOT NULL,
    cities BIGINT NOT NULL,
    flagged_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, code)
);
CREATE INDEX suspicious_code_batch ON suspicious_code (tenant_id, batch_id);

-- Failed scans (unknown or mistyped codes) per device or IP (`subject`: `device:…`, `ip:…`)
-- per hour window; past the limit the subject's failures answer 429.
CREATE TABLE code_scan_failure (
    tenant_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject, window_start)
);
