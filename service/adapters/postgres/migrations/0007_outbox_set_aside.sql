-- Contract v2, nothing on the way out blocks: each outbox record is marked by its own result.
-- (Independent of 0005/0006: the runner applies whatever is not applied yet, in name order.)
--
-- attempts:        sends that failed (transiently or for good) since it was queued or retried
--                  by an operator; the backoff of the next one grows with it.
-- next_attempt_at: a record whose last send failed transiently (broker away, leader not
--                  available, a timeout) is not leased again before this.
-- last_error:      what Kafka (or the client) said the last time, as `outbox list` shows it.
-- set_aside_at:    Kafka refused it for good (record too large, invalid topic, not authorized,
--                  a topic that cannot be created): the relay no longer sends it, the others go
--                  on, the gauge auto_topup_outbox_set_aside counts it, and an operator sends
--                  it again with `auto-topup outbox retry`.
ALTER TABLE outbox
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_error      text,
    ADD COLUMN set_aside_at    timestamptz;

-- What the relay leases: not published and not set aside, oldest first.
CREATE INDEX outbox_due ON outbox (id) WHERE published_at IS NULL AND set_aside_at IS NULL;

-- What the gauge and `outbox list` read: the few records set aside.
CREATE INDEX outbox_set_aside ON outbox (id)
    WHERE published_at IS NULL AND set_aside_at IS NOT NULL;

-- Dead letters were de-duplicated on dlq/<topic>/<partition>/<offset> only: after an input
-- topic was re-created, a new bad record at a reused offset got no dead letter. The key now
-- ends with a SHA-256 of the record's key and value (each with its length, -1 for none), as
-- service/service_layer/outbox.py computes it, so that a redelivery of the same record still
-- maps to the same row. Rows queued before keep their original value, so the same digest.
UPDATE outbox SET dedupe_key = dedupe_key || '/' || encode(sha256(
        int8send(coalesce(octet_length(key), -1)::bigint) || coalesce(key, ''::bytea)
        || int8send(coalesce(octet_length(value), -1)::bigint) || coalesce(value, ''::bytea)
    ), 'hex')
WHERE dedupe_key ~ '^dlq/[^/]+/[0-9]+/[0-9]+$';
