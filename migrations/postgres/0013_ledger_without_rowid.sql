-- SQLite turns the ledger's accounts and transfers into WITHOUT ROWID tables in this step (one
-- B-tree per table instead of a rowid table beside its primary-key index). PostgreSQL has no
-- such layout to change: its tables are heaps with a primary-key index, as before.
SELECT 1;
