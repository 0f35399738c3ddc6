-- The append-only history of each customer, for the support page (`GET /v1/customers/{id}`
-- and `/history`): every decision of the batch log (not the not-due balances) and every
-- settings event applied, written in the batch's own transaction by one multi-row insert.
-- kind 'decision': outcome is a RecordOutcome (triggered, suppressed, blocked, failed, stale,
-- dead_lettered), reason its code; kind 'settings': outcome 'settings_applied'.
-- data: the event id, source record (topic, partition, offset), method and business date.
-- Pruned by the retention job after AUTO_TOPUP_RETENTION_HISTORY_DAYS (default 90).
CREATE TABLE customer_history (
    id          bigserial PRIMARY KEY,
    customer_id text NOT NULL,
    at          timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('decision', 'settings')),
    outcome     text NOT NULL,
    reason      text,
    detail      text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- A customer's history, newest first (the support page's reads).
CREATE INDEX IF NOT EXISTS customer_history_customer ON customer_history (customer_id, id DESC);
-- The pruner's index (oldest first, as 0009's are).
CREATE INDEX IF NOT EXISTS customer_history_at ON customer_history (at);
