-- Products (SKUs): prices in fen, stock, how long one unit lasts a customer (for repurchase
-- reminders) and an optional launch time (early access by tier). Median repurchase intervals
-- per SKU are written by the daily analytics run.

CREATE TABLE product (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    price BIGINT NOT NULL,
    member_price BIGINT,
    stock BIGINT NOT NULL,
    days_of_supply BIGINT,
    launch_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX product_sku ON product (tenant_id, sku);

CREATE TABLE sku_interval (
    tenant_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    median_days BIGINT NOT NULL,
    members BIGINT NOT NULL,
    computed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sku)
);
