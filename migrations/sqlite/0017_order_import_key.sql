-- Order-history imports create each order once (issue 16 item 3). Every imported order
-- stores the key that identifies it (`id:<order_id>`, or `row:<hash>` of member, instant,
-- amount, currency and items: see `orders::import_key`), unique per tenant, so importing a
-- file again, or two imports of one file at the same time, insert nothing twice
-- (`INSERT … ON CONFLICT DO NOTHING`).
--
-- Orders already in the table keep a NULL key: the key needs the Rust rule, and NULL never
-- meets the unique index, so this migration cannot fail on existing rows (not even on an
-- order history imported twice). An import keys such an order when a row repeats it, and
-- finds the candidates through the second, partial index.
ALTER TABLE customer_order ADD COLUMN import_key TEXT;
CREATE UNIQUE INDEX customer_order_import_key ON customer_order (tenant_id, import_key)
    WHERE import_key IS NOT NULL;
CREATE INDEX customer_order_unkeyed ON customer_order (tenant_id, member_id)
    WHERE import_key IS NULL AND source = 'external' AND external_reference IS NULL;
