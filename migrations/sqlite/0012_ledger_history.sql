-- Account history as a linked list instead of two address indexes on every transfer.
--
-- Indexing each transfer under its debit and credit address dirtied one random index page per
-- member per commit, which bounded the ledger's throughput on SQLite. Instead each account row
-- names its newest transfer (`last_transfer_id`) and each transfer names the transfer before
-- it on each of its two accounts (`debit_prev`, `credit_prev`). The account row is rewritten
-- by every transfer anyway, so the history costs no extra page writes; a page of history is
-- a walk of point lookups by id from the account's head. Links are written once and never
-- change, so a cursor into the list stays valid.

ALTER TABLE ledger_account ADD COLUMN last_transfer_id TEXT;
ALTER TABLE ledger_transfer ADD COLUMN debit_prev TEXT;
ALTER TABLE ledger_transfer ADD COLUMN credit_prev TEXT;

-- Existing transfers are linked in the order the history showed them: (created_at, id).
CREATE TABLE ledger_link_backfill AS
WITH sides AS (
    SELECT tenant_id, id, debit_address AS address, asset, created_at, 1 AS debit
    FROM ledger_transfer
    UNION ALL
    SELECT tenant_id, id, credit_address AS address, asset, created_at, 0 AS debit
    FROM ledger_transfer
)
SELECT tenant_id, id, address, asset, debit,
    LAG(id) OVER (PARTITION BY tenant_id, address, asset ORDER BY created_at, id) AS prev,
    ROW_NUMBER() OVER (PARTITION BY tenant_id, address, asset
                       ORDER BY created_at DESC, id DESC) AS from_newest
FROM sides;

UPDATE ledger_transfer SET debit_prev = b.prev FROM ledger_link_backfill b
WHERE b.debit = 1 AND b.tenant_id = ledger_transfer.tenant_id AND b.id = ledger_transfer.id;
UPDATE ledger_transfer SET credit_prev = b.prev FROM ledger_link_backfill b
WHERE b.debit = 0 AND b.tenant_id = ledger_transfer.tenant_id AND b.id = ledger_transfer.id;
UPDATE ledger_account SET last_transfer_id = b.id FROM ledger_link_backfill b
WHERE b.from_newest = 1 AND b.tenant_id = ledger_account.tenant_id
    AND b.address = ledger_account.address AND b.asset = ledger_account.asset;

DROP TABLE ledger_link_backfill;
DROP INDEX ledger_transfer_debit;
DROP INDEX ledger_transfer_credit;
