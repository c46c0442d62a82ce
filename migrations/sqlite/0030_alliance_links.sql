-- Merchant alliance, continued: referral links (a partner sends customers to another partner
-- with a code rather than an offer), the arrival recorded on the referred customer itself, and
-- the indexes that erasure needs to find a member's claims without a scan.
-- Conventions as in 0001 and 0029: BIGINT and TEXT only, instants in microseconds.

-- A referral link of partner `partner_id` (the sender). `to_partner_id` set: only valid at
-- that partner. status: active or revoked (by its partner, or when its partner left).
CREATE TABLE alliance_referral_link (
    alliance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    code TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    to_partner_id TEXT,
    label TEXT,
    expires_at BIGINT,
    status TEXT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (alliance_id, id)
);
CREATE UNIQUE INDEX alliance_referral_link_code ON alliance_referral_link (code);
CREATE INDEX alliance_referral_link_partner
    ON alliance_referral_link (alliance_id, partner_id, created_at);

-- The link a referred customer arrived by (NULL: an offer claim sent it). The attribution
-- itself stays the customer row that claims write, so the fee path is the same for both.
ALTER TABLE alliance_customer ADD COLUMN referral_link_id TEXT;
CREATE INDEX alliance_customer_link ON alliance_customer (alliance_id, referral_link_id);

-- Erasure clears a member's links in claims by member id on either side.
CREATE INDEX alliance_claim_by_member ON alliance_claim (member_id);
CREATE INDEX alliance_claim_by_issuer_member ON alliance_claim (issuer_member_id);
