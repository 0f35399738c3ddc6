-- One row per wallet (a customer's or a partner's): its settings, its card, its last balance.
-- Every change of one customer goes through this row's lock, whichever topic it came from.
CREATE TABLE wallets (
    customer_id              text PRIMARY KEY,
    -- settings (NULL until the first accepted settings-updated)
    payment_method           text CHECK (payment_method IN ('cheque_tt', 'stripe', 'master_account')),
    auto_trigger             boolean,
    trigger_amount           numeric,
    limit_threshold          numeric,
    settings_currency        text,
    timezone                 text,
    partner_id               text,
    settings_origin          text,
    settings_version         bigint,
    settings_occurred_at     timestamptz,
    settings_event_id        text,
    -- the card saved during online top-up
    stripe_customer_id       text,
    stripe_payment_method_id text,
    stripe_paused            boolean NOT NULL DEFAULT false,
    -- last known balance
    balance                  numeric,
    balance_currency         text,
    balance_occurred_at      timestamptz,
    balance_sequence         bigint,
    balance_event_id         text,
    -- credit issued from this wallet (as a partner) since that balance: [{"at":..., "amount":...}]
    credits_out              jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- The daily key: at most one top-up attempt per customer per business day, whatever the method.
-- For Stripe it is also the idempotency-key row whose phase records how far the charge got.
CREATE TABLE daily_keys (
    customer_id              text NOT NULL,
    business_date            date NOT NULL,
    payment_method           text NOT NULL,
    amount                   numeric NOT NULL,
    currency                 text NOT NULL,
    trigger_event_id         text NOT NULL,
    balance_at_trigger       numeric NOT NULL,
    limit_threshold          numeric NOT NULL,
    partner_id               text,
    stripe_customer_id       text,
    stripe_payment_method_id text,
    -- claimed -> charging -> done (cheque_tt and master_account are done at once)
    phase                    text NOT NULL CHECK (phase IN ('claimed', 'charging', 'done')),
    -- what the attempt came to: invoice_requested, credit_issued or failed
    result                   text CHECK (result IN ('invoice_requested', 'credit_issued', 'failed')),
    reason                   text,
    detail                   text,
    stripe_payment_intent_id text,
    attempts                 integer NOT NULL DEFAULT 0,
    next_attempt_at          timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT daily_keys_one_attempt_per_day UNIQUE (customer_id, business_date),
    CONSTRAINT daily_keys_done_has_result CHECK ((phase = 'done') = (result IS NOT NULL))
);

CREATE INDEX daily_keys_unfinished ON daily_keys (next_attempt_at) WHERE phase <> 'done';

-- Transactional outbox: rows written in the same transaction as the decision; a relay
-- publishes them and marks them published. dedupe_key makes every write idempotent.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    dedupe_key   text NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          bytea,
    value        bytea,
    headers      jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- The row shape in which a batch writes wallets back (kept apart from the table so that a new
-- column does not change what the service sends).
CREATE TYPE wallet_state AS (
    customer_id              text,
    payment_method           text,
    auto_trigger             boolean,
    trigger_amount           numeric,
    limit_threshold          numeric,
    settings_currency        text,
    timezone                 text,
    partner_id               text,
    settings_origin          text,
    settings_version         bigint,
    settings_occurred_at     timestamptz,
    settings_event_id        text,
    stripe_customer_id       text,
    stripe_payment_method_id text,
    stripe_paused            boolean,
    balance                  numeric,
    balance_currency         text,
    balance_occurred_at      timestamptz,
    balance_sequence         bigint,
    balance_event_id         text,
    credits_out              jsonb
);
