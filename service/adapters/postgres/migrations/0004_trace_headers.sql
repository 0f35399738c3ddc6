-- The trace context (W3C traceparent/tracestate as outbox-style [name, base64] pairs) of the
-- decision that claimed a daily key, so that the Stripe charger's output event, published
-- later, continues the same trace. Empty unless tracing is on.
ALTER TABLE daily_keys ADD COLUMN trace_headers jsonb NOT NULL DEFAULT '[]'::jsonb;
