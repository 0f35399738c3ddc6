-- Retention (service/service_layer/retention.py): what the pruner deletes, found by an index
-- each, so that a run costs what it deletes, not a scan of the table. Every index is partial
-- where the pruner's rule is: a daily key not settled (claimed, charging, needs_review) and an
-- outbox record not published (or set aside) are in none of them, so they are never even
-- looked at. The predicates are repeated word for word by the prune_* and retention_oldest
-- queries of queries.sql (PostgreSQL uses a partial index only for a query that implies its
-- predicate).
--
-- IF NOT EXISTS: on a large database, build them first without blocking writes
-- (CREATE INDEX CONCURRENTLY ... with these names and definitions, outside a transaction);
-- this migration then finds them and only records itself. Built here, each blocks writes to
-- its table while it is built (the outbox has never been pruned before this version).
-- (Independent of 0008: the runner applies whatever is not applied yet, in name order.)

-- Settled daily keys, by business date.
CREATE INDEX IF NOT EXISTS daily_keys_done_by_date ON daily_keys (business_date)
    WHERE phase = 'done';

-- Published output events (an output's dedupe_key is its event_id, a UUID) and published dead
-- letters (dedupe_key dlq/<topic>/<partition>/<offset>/<sha256>), by publication time: they
-- are kept for different lengths of time.
CREATE INDEX IF NOT EXISTS outbox_events_published ON outbox (published_at)
    WHERE published_at IS NOT NULL AND set_aside_at IS NULL AND dedupe_key NOT LIKE 'dlq/%';
CREATE INDEX IF NOT EXISTS outbox_dead_letters_published ON outbox (published_at)
    WHERE published_at IS NOT NULL AND set_aside_at IS NULL AND dedupe_key LIKE 'dlq/%';

-- The last decision of each kind, by when it was made.
CREATE INDEX IF NOT EXISTS decision_summary_last_at ON decision_summary (last_at);

-- Operators' audit rows, by when they were written (small tables; kept for ever by default).
CREATE INDEX IF NOT EXISTS charge_audit_resolved_at ON charge_audit (resolved_at);
CREATE INDEX IF NOT EXISTS counter_audit_reset_at ON counter_audit (reset_at);
