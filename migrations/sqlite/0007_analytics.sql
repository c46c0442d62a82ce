-- Analytics results, written by the scoring run (CLI or scheduler) and read cheaply by the API.
-- Probabilities and expected counts are doubles; money stays integer (fen).

CREATE TABLE analytics_fit (
    tenant_id TEXT PRIMARY KEY,
    calibration_end TEXT NOT NULL,
    time_unit TEXT NOT NULL,
    customers BIGINT NOT NULL,
    result TEXT NOT NULL,
    cohorts TEXT NOT NULL,
    fitted_at BIGINT NOT NULL
);

ALTER TABLE member ADD COLUMN lifecycle_stage TEXT;

CREATE TABLE member_score (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    frequency BIGINT NOT NULL,
    recency_days BIGINT NOT NULL,
    monetary BIGINT NOT NULL,
    r_score BIGINT NOT NULL,
    f_score BIGINT NOT NULL,
    m_score BIGINT NOT NULL,
    segment TEXT NOT NULL,
    p_alive DOUBLE PRECISION NOT NULL,
    expected_30 DOUBLE PRECISION NOT NULL,
    expected_90 DOUBLE PRECISION NOT NULL,
    expected_365 DOUBLE PRECISION NOT NULL,
    expected_order_value BIGINT NOT NULL,
    clv BIGINT NOT NULL,
    scored_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, member_id)
);
CREATE INDEX member_score_segment ON member_score (tenant_id, segment);
CREATE INDEX member_score_clv ON member_score (tenant_id, clv);
