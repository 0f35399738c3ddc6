-- Retention of closed open_invoices rows (paid or void): the pruner deletes those closed
-- before its horizon (AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS, the daily keys' retention),
-- oldest first, through this index. Open rows are never pruned.
CREATE INDEX IF NOT EXISTS open_invoices_closed
    ON open_invoices (closed_at) WHERE closed_at IS NOT NULL;
