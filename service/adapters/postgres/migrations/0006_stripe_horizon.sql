-- Contract v2, the Stripe horizon. Stripe keeps an idempotency key for 24 hours: a charge
-- whose outcome is still unknown near that horizon is looked up at Stripe by its
-- metadata.daily_key, and is never sent again past it: it waits in phase 'needs_review' until
-- an operator settles it (`auto-topup charges resolve`), which leaves a row in charge_audit.
-- (Independent of 0005: the runner applies whatever is not applied yet, in name order.)

-- claimed -> charging -> done, or charging -> needs_review -> done (by an operator).
ALTER TABLE daily_keys DROP CONSTRAINT daily_keys_phase_check;
ALTER TABLE daily_keys ADD CONSTRAINT daily_keys_phase_check
    CHECK (phase IN ('claimed', 'charging', 'needs_review', 'done'));

-- first_attempt_at: when the charge's first attempt was leased; its Stripe idempotency key is
--   at most this old. looked_up_at: the last time Stripe's search was asked about it.
ALTER TABLE daily_keys
    ADD COLUMN first_attempt_at timestamptz,
    ADD COLUMN looked_up_at     timestamptz;

-- Charges attempted before this migration: their claim time, which is no later than their
-- first attempt (so their key is taken as older than it is, never younger).
UPDATE daily_keys SET first_attempt_at = created_at
WHERE phase <> 'done' AND attempts > 0;

-- What `charges list` and the gauges of /metrics read: the few charges not settled yet.
CREATE INDEX daily_keys_open_charges ON daily_keys (created_at)
    WHERE phase IN ('claimed', 'charging', 'needs_review');

-- Every charge settled by hand: who, when, why, what was decided and published.
CREATE TABLE charge_audit (
    id                bigserial PRIMARY KEY,
    customer_id       text NOT NULL,
    business_date     date NOT NULL,
    daily_key         text NOT NULL,          -- <customer_id>/<business_date>, as typed
    old_phase         text NOT NULL,
    decision          text NOT NULL CHECK (decision IN ('succeeded', 'failed')),
    reason            text,                   -- top-up-failed's reason (failed only)
    payment_intent_id text,
    event_id          text NOT NULL,          -- the credit-issued / top-up-failed published
    resolved_by       text NOT NULL CHECK (resolved_by <> ''),
    why               text NOT NULL CHECK (why <> ''),
    resolved_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX charge_audit_daily_key ON charge_audit (customer_id, business_date);
