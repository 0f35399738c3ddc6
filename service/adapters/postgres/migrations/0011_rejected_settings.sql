-- Settings events the rules rejected (dead-lettered), by event identity. The same event never
-- applies later, at whatever offset it comes again (a redelivery, a producer's retry, a replay
-- of a compacted topic): a record's outcome never turns on when it comes, nor on whether its
-- dead letter was pruned. A record redriven by `auto-topup dlq redrive` carries the header
-- auto_topup_redrive; its value is part of the key, so each redrive is judged afresh once.
-- Never pruned: one small row per rejected settings event.
CREATE TABLE rejected_settings (
    customer_id text NOT NULL,
    event_id    text NOT NULL,
    redrive     text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    rejected_at timestamptz NOT NULL,
    PRIMARY KEY (customer_id, event_id, redrive)
);
