-- A runaway counter, reset by hand. A producer that once sent `sequence` 2^63 − 1 (or a
-- settings `version` that high) makes every later event of the wallet stale, for good: the
-- highest counter seen only rises. `auto-topup admin reset-sequence` / `reset-version` sets
-- it back, and leaves a row here: who, when, why, the old and the new value.
-- (Independent of 0007: the runner applies whatever is not applied yet, in name order.)
CREATE TABLE counter_audit (
    id          bigserial PRIMARY KEY,
    customer_id text NOT NULL,
    counter     text NOT NULL CHECK (counter IN ('sequence', 'version')),
    old_value   bigint NOT NULL,
    new_value   bigint NOT NULL CHECK (new_value >= 0),
    reset_by    text NOT NULL CHECK (reset_by <> ''),
    why         text NOT NULL CHECK (why <> ''),
    reset_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX counter_audit_customer ON counter_audit (customer_id, reset_at);
