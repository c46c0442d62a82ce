-- A model that cannot be fitted leaves its values unknown, not 0: P(alive) and expected
-- transactions are null without a BG/NBD fit, expected order value and CLV without a
-- Gamma-Gamma fit (the reason is in `analytics_fit.result`).
ALTER TABLE member_score
    ALTER COLUMN p_alive DROP NOT NULL,
    ALTER COLUMN expected_30 DROP NOT NULL,
    ALTER COLUMN expected_90 DROP NOT NULL,
    ALTER COLUMN expected_365 DROP NOT NULL,
    ALTER COLUMN expected_order_value DROP NOT NULL,
    ALTER COLUMN clv DROP NOT NULL;
