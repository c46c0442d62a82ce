-- Community group buying (社区团购): leaders (团长) with their pickup point (自提点), each member's
-- chosen leader, waves (团期) with their items and stock, one row per wave order (its leader,
-- pickup code, pickup state and the leader's commission) and its lines.
-- Conventions as in 0001: BIGINT and TEXT only, instants in microseconds, JSON as TEXT, every
-- key starting with tenant_id. Coordinates are micro-degrees (integers).

CREATE TABLE leader (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    commission_bp BIGINT NOT NULL,
    pickup_name TEXT NOT NULL,
    pickup_address TEXT NOT NULL,
    pickup_hours TEXT NOT NULL,
    lat_micro BIGINT,
    lng_micro BIGINT,
    -- Commission taken back by refunds after release that the balance could not cover (fen),
    -- netted against the leader's next released commissions.
    debt BIGINT NOT NULL DEFAULT 0,
    -- The instants of the wrong pickup codes tried at this point within the last minute
    -- (a JSON list of at most 10): the guessing limit, shared by every node.
    wrong_codes TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX leader_member ON leader (tenant_id, member_id);
CREATE INDEX leader_status ON leader (tenant_id, status, id);

-- The leader a member orders through (one per member, changed at will).
CREATE TABLE member_leader (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    leader_id TEXT NOT NULL,
    chosen_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, member_id)
);
CREATE INDEX member_leader_leader ON member_leader (tenant_id, leader_id);

CREATE TABLE wave (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- open until its cut-off job closes it: closed.
    status TEXT NOT NULL,
    opens_at BIGINT NOT NULL,
    cutoff_at BIGINT NOT NULL,
    delivery_date TEXT NOT NULL,
    -- The totals announced by wave.closed (JSON), once closed.
    totals TEXT,
    closed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX wave_status ON wave (tenant_id, status, id);

-- A product of a wave: its price, the units left (null: unlimited) and taken by open or paid
-- orders, and the per-member limit (null: none).
CREATE TABLE wave_item (
    tenant_id TEXT NOT NULL,
    wave_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    price BIGINT NOT NULL,
    stock BIGINT,
    taken BIGINT NOT NULL DEFAULT 0,
    per_member_limit BIGINT,
    PRIMARY KEY (tenant_id, wave_id, product_id)
);

-- One row per wave order. status: awaiting_payment, paid, cancelled, refunded.
-- pickup_status: waiting (goods not yet at the point), ready, picked_up.
-- open_code is the code while the pickup is open (null after): unique per leader.
CREATE TABLE wave_order (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    wave_id TEXT NOT NULL,
    leader_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    refunded BIGINT NOT NULL DEFAULT 0,
    code TEXT,
    open_code TEXT,
    pickup_status TEXT NOT NULL,
    ready_at BIGINT,
    picked_up_at BIGINT,
    commission_bp BIGINT NOT NULL,
    -- pending, available, voided; null until picked up.
    commission_status TEXT,
    commission BIGINT NOT NULL DEFAULT 0,
    commission_revision BIGINT NOT NULL DEFAULT 0,
    commission_transfer_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX wave_order_wave ON wave_order (tenant_id, wave_id, leader_id);
CREATE INDEX wave_order_leader ON wave_order (tenant_id, leader_id, created_at);
CREATE INDEX wave_order_member ON wave_order (tenant_id, member_id);
CREATE UNIQUE INDEX wave_order_open_code ON wave_order (tenant_id, leader_id, open_code);

-- The lines of a wave order; short: units the leader did not receive (refunded).
CREATE TABLE wave_line (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    wave_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    qty BIGINT NOT NULL,
    short BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, order_id, product_id)
);
CREATE INDEX wave_line_member ON wave_line (tenant_id, wave_id, product_id, member_id);
