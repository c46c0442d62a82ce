-- Coupons (优惠券): templates with a stock and a per-member limit, and the coupons issued from
-- them. Conventions as in 0001: BIGINT and TEXT only, money in fen, rates in basis points,
-- instants in microseconds since the epoch, every key starting with tenant_id.

CREATE TABLE coupon_template (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount_off BIGINT,
    percent_off_bp BIGINT,
    max_discount BIGINT,
    min_spend BIGINT NOT NULL,
    total_stock BIGINT NOT NULL,
    issued BIGINT NOT NULL DEFAULT 0,
    per_member_limit BIGINT NOT NULL,
    valid_days BIGINT,
    valid_from BIGINT,
    valid_to BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE coupon (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    template_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT NOT NULL,
    claimed_at BIGINT NOT NULL,
    redeemed_at BIGINT,
    order_ref TEXT,
    order_amount BIGINT,
    discount BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX coupon_member ON coupon (tenant_id, member_id, id);
CREATE INDEX coupon_template_member ON coupon (tenant_id, template_id, member_id);
