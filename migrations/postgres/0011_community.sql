-- Communities (社群): groups with an owner and a capacity, the history of who was in a group
-- when (join/leave/rejoin intervals, with the inviter), join links (群活码) that route to the
-- first group with room, daily check-ins (打卡) with streaks, and provably fair lotteries
-- (抽奖). Conventions as in 0001: BIGINT and TEXT only, flags 0/1, instants in microseconds
-- since the epoch, local dates as 'YYYY-MM-DD' text, every key starting with tenant_id.

CREATE TABLE community_group (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    owner_member_id TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    -- Members in the group now; changed only by conditional updates (never above capacity).
    member_count BIGINT NOT NULL,
    tags TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One row per stay in a group: joined_at to left_at (NULL while still in it).
CREATE TABLE group_membership (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    inviter_member_id TEXT,
    link_id TEXT,
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX group_membership_open ON group_membership (tenant_id, group_id, member_id)
    WHERE left_at IS NULL;
CREATE INDEX group_membership_group ON group_membership (tenant_id, group_id, joined_at);
CREATE INDEX group_membership_member ON group_membership (tenant_id, member_id);

CREATE TABLE group_link (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Set when operators were told that every group is full; cleared when that changes.
    full_alerted_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX group_link_code ON group_link (tenant_id, code);

CREATE TABLE group_link_group (
    tenant_id TEXT NOT NULL,
    link_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, link_id, position)
);
CREATE UNIQUE INDEX group_link_group_once ON group_link_group (tenant_id, link_id, group_id);

CREATE TABLE checkin_rule (
    tenant_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- One row per member that ever checked in; locked first by every check-in of the member so
-- that one member's check-ins and make-ups run one at a time.
CREATE TABLE checkin_member (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, member_id)
);

CREATE TABLE checkin (
    tenant_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    local_date TEXT NOT NULL,
    kind TEXT NOT NULL,
    streak BIGINT NOT NULL,
    cycle_day BIGINT NOT NULL,
    -- 1 when this check-in paid the last day of a cycle; the next cycle starts after it.
    completed_cycle BIGINT NOT NULL,
    reward TEXT,
    points_cost BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, member_id, local_date)
);

CREATE TABLE lottery (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    winners BIGINT NOT NULL,
    entry_cost_points BIGINT NOT NULL,
    entries_per_member BIGINT NOT NULL,
    opens_at BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    seed TEXT NOT NULL,
    commitment TEXT NOT NULL,
    status TEXT NOT NULL,
    entry_count BIGINT NOT NULL,
    result TEXT,
    drawn_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE lottery_prize (
    tenant_id TEXT NOT NULL,
    lottery_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    reward TEXT,
    stock BIGINT,
    remaining BIGINT,
    weight BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, lottery_id, position)
);

CREATE TABLE lottery_entry (
    tenant_id TEXT NOT NULL,
    lottery_id TEXT NOT NULL,
    entry_index BIGINT NOT NULL,
    member_id TEXT NOT NULL,
    prize_position BIGINT,
    payout TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, lottery_id, entry_index)
);
CREATE INDEX lottery_entry_member ON lottery_entry (tenant_id, lottery_id, member_id);
