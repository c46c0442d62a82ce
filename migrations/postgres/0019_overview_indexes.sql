-- The business overview (`GET /v1/analytics/overview`, the console's dashboard) reads the
-- orders paid, the refunds made and the check-ins of the last N days: each by its own range.
CREATE INDEX customer_order_paid_at ON customer_order (tenant_id, paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX order_refund_created_at ON order_refund (tenant_id, created_at);
CREATE INDEX checkin_local_date ON checkin (tenant_id, local_date);
