-- The last decision of each kind per customer and reason, with how often it happened: what
-- `auto-topup explain` shows to answer "why was this customer not topped up?". Bounded: a few
-- rows per customer, whatever the traffic. Not-due balances and stale events are not recorded.
CREATE TABLE decision_summary (
    customer_id    text NOT NULL,
    -- triggered | failed | suppressed | blocked | dead_lettered
    outcome        text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    last_at        timestamptz NOT NULL,
    last_event_id  text,
    last_topic     text NOT NULL,
    last_partition integer NOT NULL,
    last_offset    bigint NOT NULL,
    detail         text NOT NULL DEFAULT '',
    method         text,
    business_date  date,
    times          bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (customer_id, outcome, reason)
);
