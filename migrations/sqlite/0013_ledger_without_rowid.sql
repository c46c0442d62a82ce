-- The ledger's accounts and transfers as WITHOUT ROWID tables (SQLite only).
--
-- A rowid table with a text primary key is two B-trees: the rows by rowid and the key's index.
-- Every new transfer was inserted into both, and every account update looked its key up in the
-- index and then its row in the table. Keyed by their primary keys, each is one B-tree: one
-- insert per transfer, one lookup per account update (the ledger executor's commit, measured
-- with `shequn bench ledger`). Rows are small (a transfer is about a twentieth of a page), which is what
-- WITHOUT ROWID is meant for. Columns, keys and contents stay as they were.

CREATE TABLE ledger_account_keyed (
    tenant_id TEXT NOT NULL,
    address TEXT NOT NULL,
    asset TEXT NOT NULL,
    debits_posted BIGINT NOT NULL DEFAULT 0,
    credits_posted BIGINT NOT NULL DEFAULT 0,
    debits_pending BIGINT NOT NULL DEFAULT 0,
    credits_pending BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_transfer_id TEXT,
    PRIMARY KEY (tenant_id, address, asset)
) WITHOUT ROWID;
INSERT INTO ledger_account_keyed (tenant_id, address, asset, debits_posted, credits_posted,
    debits_pending, credits_pending, created_at, last_transfer_id)
SELECT tenant_id, address, asset, debits_posted, credits_posted, debits_pending,
    credits_pending, created_at, last_transfer_id
FROM ledger_account;
DROP TABLE ledger_account;
ALTER TABLE ledger_account_keyed RENAME TO ledger_account;

CREATE TABLE ledger_transfer_keyed (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    debit_address TEXT NOT NULL,
    credit_address TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL,
    code TEXT NOT NULL,
    reference TEXT,
    metadata TEXT NOT NULL,
    pending BIGINT NOT NULL,
    timeout_at BIGINT,
    linked BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    debit_prev TEXT,
    credit_prev TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
INSERT INTO ledger_transfer_keyed (tenant_id, id, debit_address, credit_address, asset, amount,
    code, reference, metadata, pending, timeout_at, linked, created_at, debit_prev, credit_prev)
SELECT tenant_id, id, debit_address, credit_address, asset, amount, code, reference, metadata,
    pending, timeout_at, linked, created_at, debit_prev, credit_prev
FROM ledger_transfer;
DROP TABLE ledger_transfer;
ALTER TABLE ledger_transfer_keyed RENAME TO ledger_transfer;
