-- A model that cannot be fitted leaves its values unknown, not 0: P(alive) and expected
-- transactions are null without a BG/NBD fit, expected order value and CLV without a
-- Gamma-Gamma fit (the reason is in `analytics_fit.result`). SQLite cannot drop NOT NULL in
-- place, so the table is rebuilt with the same columns and indexes.
CREATE TABLE member_score_new (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    frequency BIGINT NOT NULL,
    recency_days BIGINT NOT NULL,
    monetary BIGINT NOT NULL,
    r_score BIGINT NOT NULL,
    f_score BIGINT NOT NULL,
    m_score BIGINT NOT NULL,
    segment TEXT NOT NULL,
    p_alive DOUBLE PRECISION,
    expected_30 DOUBLE PRECISION,
    expected_90 DOUBLE PRECISION,
    expected_365 DOUBLE PRECISION,
    expected_order_value BIGINT,
    clv BIGINT,
    scored_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, member_id)
);
INSERT INTO member_score_new SELECT tenant_id, member_id, frequency, recency_days, monetary,
    r_score, f_score, m_score, segment, p_alive, expected_30, expected_90, expected_365,
    expected_order_value, clv, scored_at FROM member_score;
DROP TABLE member_score;
ALTER TABLE member_score_new RENAME TO member_score;
CREATE INDEX member_score_segment ON member_score (tenant_id, segment);
CREATE INDEX member_score_clv ON member_score (tenant_id, clv);
