-- Merchant alliance (商家联盟): alliances of tenants, their partners, one-time invitations,
-- shared coupon offers and their claims, the customers one partner sent to another, and the
-- alliance ledger (one account per partner, double entry).
-- Conventions as in 0001: BIGINT and TEXT only, instants in microseconds, JSON as TEXT. An
-- alliance spans tenants, so its rows are keyed by alliance_id (the shard key of this one
-- cross-tenant object); every partner row names its tenant_id, indexed for the tenant's reads.

CREATE TABLE alliance (
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    rules TEXT NOT NULL,
    -- The founder's time zone when the alliance was made: what a statement's month means.
    timezone TEXT NOT NULL,
    -- The HMAC key of the opaque customer ids; never leaves the server.
    customer_key TEXT NOT NULL,
    founder_partner_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id)
);

CREATE TABLE alliance_partner (
    alliance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    PRIMARY KEY (alliance_id, id)
);
CREATE UNIQUE INDEX alliance_partner_tenant ON alliance_partner (alliance_id, tenant_id);
CREATE INDEX alliance_partner_of_tenant ON alliance_partner (tenant_id, alliance_id);

CREATE TABLE alliance_invitation (
    code TEXT NOT NULL,
    alliance_id TEXT NOT NULL,
    invited_by_partner_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by_partner_id TEXT,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (code)
);
CREATE INDEX alliance_invitation_alliance ON alliance_invitation (alliance_id, created_at);

CREATE TABLE alliance_offer (
    alliance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    coupon_template_id TEXT NOT NULL,
    stock BIGINT NOT NULL,
    remaining BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (alliance_id, id)
);

-- One claim of an offer: the member's consent to be shared with the issuer, with its time.
-- The member ids are cleared when either side erases its member.
CREATE TABLE alliance_claim (
    alliance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    member_id TEXT,
    issuer_partner_id TEXT NOT NULL,
    issuer_member_id TEXT,
    coupon_id TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (alliance_id, id)
);
CREATE INDEX alliance_claim_member ON alliance_claim (alliance_id, partner_id, member_id);
CREATE INDEX alliance_claim_offer ON alliance_claim (alliance_id, offer_id);

-- A customer one partner sent to another (first touch), known to the alliance by an opaque id.
-- status: awaiting (no paid order yet), earned (the fee was written), existing (already a
-- paying customer of the issuer), voided (the first order was refunded in full), erased.
CREATE TABLE alliance_customer (
    alliance_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    issuer_partner_id TEXT NOT NULL,
    issuer_tenant_id TEXT NOT NULL,
    issuer_member_id TEXT,
    referred_by_partner_id TEXT NOT NULL,
    status TEXT NOT NULL,
    first_order_id TEXT,
    consented_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (alliance_id, customer_id)
);
CREATE INDEX alliance_customer_member ON alliance_customer (issuer_tenant_id, issuer_member_id);

-- The alliance ledger: each entry moves `amount` fen from the debit partner's account (who
-- owes) to the credit partner's (who is owed); balances are sums and always total zero.
-- kind: fee, fee_void (reverses a fee), settlement (a payment made outside shequn).
CREATE TABLE alliance_entry (
    alliance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    debit_partner_id TEXT NOT NULL,
    credit_partner_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    customer_id TEXT,
    order_id TEXT,
    reference TEXT,
    -- What makes the entry once only (`fee:<order id>`, `void:<entry id>`); NULL for settlements.
    dedupe TEXT,
    voided_by TEXT,
    recorded_by_partner_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (alliance_id, id)
);
CREATE UNIQUE INDEX alliance_entry_dedupe ON alliance_entry (alliance_id, dedupe);
CREATE INDEX alliance_entry_time ON alliance_entry (alliance_id, created_at, id);
CREATE INDEX alliance_entry_order ON alliance_entry (order_id);
