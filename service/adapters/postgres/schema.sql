-- The schema that the migrations (migrations/, applied in name order) add up to, read from the
-- catalog of a freshly migrated database. Generated: do not edit; change the schema with a new
-- migration, then run `make schema`.

-- Tables ------------------------------------------------------------------------------------------

CREATE TABLE charge_audit (
    id                bigint NOT NULL DEFAULT nextval('charge_audit_id_seq'::regclass),
    customer_id       text NOT NULL,
    business_date     date NOT NULL,
    daily_key         text NOT NULL,
    old_phase         text NOT NULL,
    decision          text NOT NULL,
    reason            text,
    payment_intent_id text,
    event_id          text NOT NULL,
    resolved_by       text NOT NULL,
    why               text NOT NULL,
    resolved_at       timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT charge_audit_pkey PRIMARY KEY (id),
    CONSTRAINT charge_audit_decision_check CHECK ((decision = ANY (ARRAY['succeeded'::text, 'failed'::text]))),
    CONSTRAINT charge_audit_resolved_by_check CHECK ((resolved_by <> ''::text)),
    CONSTRAINT charge_audit_why_check CHECK ((why <> ''::text))
);

CREATE TABLE counter_audit (
    id          bigint NOT NULL DEFAULT nextval('counter_audit_id_seq'::regclass),
    customer_id text NOT NULL,
    counter     text NOT NULL,
    old_value   bigint NOT NULL,
    new_value   bigint NOT NULL,
    reset_by    text NOT NULL,
    why         text NOT NULL,
    reset_at    timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT counter_audit_pkey PRIMARY KEY (id),
    CONSTRAINT counter_audit_counter_check CHECK ((counter = ANY (ARRAY['sequence'::text, 'version'::text]))),
    CONSTRAINT counter_audit_new_value_check CHECK ((new_value >= 0)),
    CONSTRAINT counter_audit_reset_by_check CHECK ((reset_by <> ''::text)),
    CONSTRAINT counter_audit_why_check CHECK ((why <> ''::text))
);

CREATE TABLE customer_history (
    id          bigint NOT NULL DEFAULT nextval('customer_history_id_seq'::regclass),
    customer_id text NOT NULL,
    at          timestamp with time zone NOT NULL,
    kind        text NOT NULL,
    outcome     text NOT NULL,
    reason      text,
    detail      text NOT NULL DEFAULT ''::text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT customer_history_pkey PRIMARY KEY (id),
    CONSTRAINT customer_history_kind_check CHECK ((kind = ANY (ARRAY['decision'::text, 'settings'::text])))
);

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
    phase                    text NOT NULL,
    result                   text,
    reason                   text,
    detail                   text,
    stripe_payment_intent_id text,
    attempts                 integer NOT NULL DEFAULT 0,
    next_attempt_at          timestamp with time zone,
    created_at               timestamp with time zone NOT NULL DEFAULT now(),
    updated_at               timestamp with time zone NOT NULL DEFAULT now(),
    trace_headers            jsonb NOT NULL DEFAULT '[]'::jsonb,
    first_attempt_at         timestamp with time zone,
    looked_up_at             timestamp with time zone,
    leased_until             timestamp with time zone,
    amount_mode              text NOT NULL DEFAULT 'fixed'::text,
    fallback_method          text,
    CONSTRAINT daily_keys_one_attempt_per_day UNIQUE (customer_id, business_date),
    CONSTRAINT daily_keys_done_has_result CHECK (((phase = 'done'::text) = (result IS NOT NULL))),
    CONSTRAINT daily_keys_phase_check CHECK ((phase = ANY (ARRAY['claimed'::text, 'charging'::text, 'needs_review'::text, 'done'::text]))),
    CONSTRAINT daily_keys_result_check CHECK ((result = ANY (ARRAY['invoice_requested'::text, 'credit_issued'::text, 'failed'::text])))
);

CREATE TABLE decision_summary (
    customer_id    text NOT NULL,
    outcome        text NOT NULL,
    reason         text NOT NULL DEFAULT ''::text,
    last_at        timestamp with time zone NOT NULL,
    last_event_id  text,
    last_topic     text NOT NULL,
    last_partition integer NOT NULL,
    last_offset    bigint NOT NULL,
    detail         text NOT NULL DEFAULT ''::text,
    method         text,
    business_date  date,
    times          bigint NOT NULL DEFAULT 1,
    CONSTRAINT decision_summary_pkey PRIMARY KEY (customer_id, outcome, reason)
);

CREATE TABLE open_invoices (
    invoice_request_id text NOT NULL,
    customer_id        text NOT NULL,
    business_date      date NOT NULL,
    amount             numeric NOT NULL,
    currency           text NOT NULL,
    requested_at       timestamp with time zone NOT NULL,
    status             text NOT NULL DEFAULT 'requested'::text,
    closed_at          timestamp with time zone,
    overdue_noticed_at timestamp with time zone,
    CONSTRAINT open_invoices_pkey PRIMARY KEY (invoice_request_id),
    CONSTRAINT open_invoices_status_check CHECK ((status = ANY (ARRAY['requested'::text, 'issued'::text, 'paid'::text, 'void'::text])))
);

CREATE TABLE outbox (
    id              bigint NOT NULL DEFAULT nextval('outbox_id_seq'::regclass),
    dedupe_key      text NOT NULL,
    topic           text NOT NULL,
    key             bytea,
    value           bytea,
    headers         jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at      timestamp with time zone NOT NULL DEFAULT now(),
    leased_until    timestamp with time zone,
    published_at    timestamp with time zone,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamp with time zone,
    last_error      text,
    set_aside_at    timestamp with time zone,
    CONSTRAINT outbox_dedupe_key_key UNIQUE (dedupe_key),
    CONSTRAINT outbox_pkey PRIMARY KEY (id)
);

CREATE TABLE rejected_settings (
    customer_id text NOT NULL,
    event_id    text NOT NULL,
    redrive     text NOT NULL DEFAULT ''::text,
    reason      text NOT NULL,
    rejected_at timestamp with time zone NOT NULL,
    CONSTRAINT rejected_settings_pkey PRIMARY KEY (customer_id, event_id, redrive)
);

CREATE TABLE schema_migrations (
    version    text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE wallets (
    customer_id              text NOT NULL,
    payment_method           text,
    auto_trigger             boolean,
    trigger_amount           numeric,
    limit_threshold          numeric,
    settings_currency        text,
    timezone                 text,
    partner_id               text,
    settings_origin          text,
    settings_version         bigint,
    settings_occurred_at     timestamp with time zone,
    settings_event_id        text,
    stripe_customer_id       text,
    stripe_payment_method_id text,
    stripe_paused            boolean NOT NULL DEFAULT false,
    balance                  numeric,
    balance_currency         text,
    balance_occurred_at      timestamp with time zone,
    balance_sequence         bigint,
    balance_event_id         text,
    credits_out              jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at               timestamp with time zone NOT NULL DEFAULT now(),
    balance_newest_at        timestamp with time zone,
    balance_newest_id        text,
    settings_newest_at       timestamp with time zone,
    settings_newest_id       text,
    card_terms               jsonb,
    attempt_day_end          timestamp with time zone,
    settings_v2              jsonb,
    month_spend              jsonb,
    advised_on               date,
    usage                    bytea,
    CONSTRAINT wallets_pkey PRIMARY KEY (customer_id),
    CONSTRAINT wallets_payment_method_check CHECK ((payment_method = ANY (ARRAY['cheque_tt'::text, 'stripe'::text, 'master_account'::text])))
);

-- Indexes -----------------------------------------------------------------------------------------

CREATE INDEX charge_audit_daily_key ON charge_audit USING btree (customer_id, business_date);

CREATE INDEX charge_audit_resolved_at ON charge_audit USING btree (resolved_at);

CREATE INDEX counter_audit_customer ON counter_audit USING btree (customer_id, reset_at);

CREATE INDEX counter_audit_reset_at ON counter_audit USING btree (reset_at);

CREATE INDEX customer_history_at ON customer_history USING btree (at);

CREATE INDEX customer_history_customer ON customer_history USING btree (customer_id, id DESC);

CREATE INDEX daily_keys_done_by_date ON daily_keys USING btree (business_date) WHERE (phase = 'done'::text);

CREATE INDEX daily_keys_open_charges ON daily_keys USING btree (created_at) WHERE (phase = ANY (ARRAY['claimed'::text, 'charging'::text, 'needs_review'::text]));

CREATE INDEX daily_keys_unfinished ON daily_keys USING btree (next_attempt_at) WHERE (phase <> 'done'::text);

CREATE INDEX decision_summary_last_at ON decision_summary USING btree (last_at);

CREATE INDEX open_invoices_closed ON open_invoices USING btree (closed_at) WHERE (closed_at IS NOT NULL);

CREATE INDEX open_invoices_open_by_customer ON open_invoices USING btree (customer_id) WHERE (closed_at IS NULL);

CREATE INDEX open_invoices_overdue ON open_invoices USING btree (requested_at) WHERE ((closed_at IS NULL) AND (overdue_noticed_at IS NULL));

CREATE INDEX outbox_by_key ON outbox USING btree (key, id);

CREATE INDEX outbox_dead_letters_published ON outbox USING btree (published_at) WHERE ((published_at IS NOT NULL) AND (set_aside_at IS NULL) AND (dedupe_key ~~ 'dlq/%'::text));

CREATE INDEX outbox_due ON outbox USING btree (id) WHERE ((published_at IS NULL) AND (set_aside_at IS NULL));

CREATE INDEX outbox_events_published ON outbox USING btree (published_at) WHERE ((published_at IS NOT NULL) AND (set_aside_at IS NULL) AND (dedupe_key !~~ 'dlq/%'::text));

CREATE INDEX outbox_set_aside ON outbox USING btree (id) WHERE ((published_at IS NULL) AND (set_aside_at IS NOT NULL));

CREATE INDEX outbox_unpublished ON outbox USING btree (id) WHERE (published_at IS NULL);

-- Types -------------------------------------------------------------------------------------------

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
    settings_occurred_at     timestamp with time zone,
    settings_event_id        text,
    stripe_customer_id       text,
    stripe_payment_method_id text,
    stripe_paused            boolean,
    balance                  numeric,
    balance_currency         text,
    balance_occurred_at      timestamp with time zone,
    balance_sequence         bigint,
    balance_event_id         text,
    credits_out              jsonb,
    balance_newest_at        timestamp with time zone,
    balance_newest_id        text,
    settings_newest_at       timestamp with time zone,
    settings_newest_id       text,
    card_terms               jsonb,
    attempt_day_end          timestamp with time zone,
    settings_v2              jsonb,
    month_spend              jsonb,
    advised_on               date,
    usage                    bytea
);

-- Sequences ---------------------------------------------------------------------------------------

CREATE SEQUENCE charge_audit_id_seq AS bigint OWNED BY charge_audit.id;

CREATE SEQUENCE counter_audit_id_seq AS bigint OWNED BY counter_audit.id;

CREATE SEQUENCE customer_history_id_seq AS bigint OWNED BY customer_history.id;

CREATE SEQUENCE outbox_id_seq AS bigint OWNED BY outbox.id;

-- Functions ---------------------------------------------------------------------------------------

-- (none)

-- Triggers ----------------------------------------------------------------------------------------

-- (none)
