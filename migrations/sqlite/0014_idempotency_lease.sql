-- A claim on an Idempotency-Key names its owner (the process's boot id and a token of the
-- request) and holds the key only until `lease_until`, which the running request renews. A
-- claim whose process died is taken over once its lease has run out, within seconds instead
-- of minutes. Rows claimed before this change have no lease; their `created_at` stands in.
ALTER TABLE idempotency_key ADD COLUMN owner TEXT;
ALTER TABLE idempotency_key ADD COLUMN lease_until BIGINT;
