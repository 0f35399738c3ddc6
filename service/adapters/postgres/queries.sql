-- Every SQL statement of the service, one named block each ("-- name: NAME" then a comment
-- saying what it does). Loaded by service/adapters/postgres/sql.py.

-- name: lock_wallets
-- Loads and locks the wallets of a batch, in one order so that instances do not deadlock, with
-- the business dates of their daily keys from $2 on (the oldest date that can still trigger).
-- With $3, also the partners their stored settings name (read without a lock first): customers
-- and partners in one statement, in customer_id order, so that two lanes of a batch (or the
-- charger) never wait for each other in a cycle.
-- The columns the domain needs; money as text, which the driver decodes faster (exactly).
WITH wanted AS (
    SELECT unnest($1::text[]) AS customer_id
    UNION
    SELECT p.partner_id FROM wallets AS p
    WHERE $3::boolean AND p.customer_id = ANY($1::text[]) AND p.partner_id IS NOT NULL
)
SELECT
    w.customer_id, w.payment_method, w.auto_trigger, w.trigger_amount::text,
    w.limit_threshold::text, w.settings_currency, w.timezone, w.partner_id, w.settings_origin,
    w.settings_version, w.settings_occurred_at, w.settings_event_id, w.settings_newest_at,
    w.settings_newest_id, w.stripe_customer_id, w.stripe_payment_method_id, w.stripe_paused,
    w.balance::text, w.balance_currency, w.balance_occurred_at, w.balance_sequence,
    w.balance_event_id, w.balance_newest_at, w.balance_newest_id, w.credits_out, w.card_terms,
    w.attempt_day_end, w.settings_v2, w.month_spend, w.advised_on, w.usage, ARRAY(
    SELECT k.business_date FROM daily_keys AS k
    WHERE k.customer_id = w.customer_id AND k.business_date >= $2::date) AS taken_dates
FROM wallets AS w
JOIN wanted ON wanted.customer_id = w.customer_id
ORDER BY w.customer_id
FOR UPDATE OF w;

-- name: create_wallets
-- Creates the wallets of customers seen for the first time; the rows created stay locked by
-- this transaction. A row not returned was created meanwhile by another instance: lock it with
-- lock_wallets (two instances inserting one new customer serialize on the primary key).
INSERT INTO wallets (customer_id)
SELECT id FROM unnest($1::text[]) AS t(id) ORDER BY id
ON CONFLICT (customer_id) DO NOTHING
RETURNING customer_id;

-- name: save_wallets
-- Writes back the wallets a batch changed, in one statement (rows of the table's own type).
UPDATE wallets AS w SET
    payment_method = u.payment_method,
    auto_trigger = u.auto_trigger,
    trigger_amount = u.trigger_amount,
    limit_threshold = u.limit_threshold,
    settings_currency = u.settings_currency,
    timezone = u.timezone,
    partner_id = u.partner_id,
    settings_origin = u.settings_origin,
    settings_version = u.settings_version,
    settings_occurred_at = u.settings_occurred_at,
    settings_event_id = u.settings_event_id,
    stripe_customer_id = u.stripe_customer_id,
    stripe_payment_method_id = u.stripe_payment_method_id,
    stripe_paused = u.stripe_paused,
    balance = u.balance,
    balance_currency = u.balance_currency,
    balance_occurred_at = u.balance_occurred_at,
    balance_sequence = u.balance_sequence,
    balance_event_id = u.balance_event_id,
    credits_out = u.credits_out,
    balance_newest_at = u.balance_newest_at,
    balance_newest_id = u.balance_newest_id,
    settings_newest_at = u.settings_newest_at,
    settings_newest_id = u.settings_newest_id,
    card_terms = u.card_terms,
    attempt_day_end = u.attempt_day_end,
    settings_v2 = u.settings_v2,
    month_spend = u.month_spend,
    advised_on = u.advised_on,
    usage = u.usage,
    updated_at = now()
FROM unnest($1::wallet_state[]) AS u
WHERE w.customer_id = u.customer_id;

-- name: save_balances
-- The common case of save_wallets: only the balance of these wallets changed, and the usage
-- per business day it adds to (money as text, parsed by PostgreSQL).
UPDATE wallets AS w SET
    balance = u.balance::numeric,
    balance_currency = u.balance_currency,
    balance_occurred_at = u.balance_occurred_at,
    balance_sequence = u.balance_sequence,
    balance_event_id = u.balance_event_id,
    balance_newest_at = u.balance_newest_at,
    balance_newest_id = u.balance_newest_id,
    usage = u.usage,
    updated_at = now()
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[],
    $7::timestamptz[], $8::text[], $9::bytea[]) AS u(
    customer_id, balance, balance_currency, balance_occurred_at, balance_sequence,
    balance_event_id, balance_newest_at, balance_newest_id, usage)
WHERE w.customer_id = u.customer_id;

-- name: insert_daily_keys
-- Claims daily keys. The unique (customer_id, business_date) is the last word: a row that is
-- not returned was taken by someone else, and its decision must not be published.
INSERT INTO daily_keys (
    customer_id, business_date, payment_method, amount, currency, trigger_event_id,
    balance_at_trigger, limit_threshold, partner_id, stripe_customer_id,
    stripe_payment_method_id, phase, result, reason, detail, next_attempt_at, trace_headers,
    amount_mode, fallback_method)
SELECT * FROM unnest(
    $1::text[], $2::date[], $3::text[], $4::numeric[], $5::text[], $6::text[],
    $7::numeric[], $8::numeric[], $9::text[], $10::text[],
    $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::timestamptz[],
    $17::jsonb[], $18::text[], $19::text[])
ON CONFLICT (customer_id, business_date) DO NOTHING
RETURNING customer_id, business_date;

-- name: insert_outbox
-- Queues outgoing records; a record already queued (same dedupe_key) is left as it is.
INSERT INTO outbox (dedupe_key, topic, key, value, headers)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::jsonb[])
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: rejected_settings
-- Which of these settings events (customer_id, event_id, redrive) the rules rejected before.
SELECT r.customer_id, r.event_id, r.redrive
FROM rejected_settings r
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(customer_id, event_id, redrive)
  ON r.customer_id = k.customer_id AND r.event_id = k.event_id AND r.redrive = k.redrive;

-- name: insert_rejected_settings
-- Remembers settings events the rules rejected; one already known is left as it is.
INSERT INTO rejected_settings (customer_id, event_id, redrive, reason, rejected_at)
SELECT k.customer_id, k.event_id, k.redrive, k.reason, $5
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
     AS k(customer_id, event_id, redrive, reason)
ON CONFLICT DO NOTHING;

-- name: record_decisions
-- Upserts the batch's decisions into decision_summary (one row per customer, outcome and
-- reason; the caller merges repeats within the batch).
INSERT INTO decision_summary AS d (
    customer_id, outcome, reason, last_at, last_event_id, last_topic, last_partition,
    last_offset, detail, method, business_date, times)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
    $7::integer[], $8::bigint[], $9::text[], $10::text[], $11::date[], $12::bigint[])
ON CONFLICT (customer_id, outcome, reason) DO UPDATE SET
    last_at = excluded.last_at,
    last_event_id = excluded.last_event_id,
    last_topic = excluded.last_topic,
    last_partition = excluded.last_partition,
    last_offset = excluded.last_offset,
    detail = excluded.detail,
    method = excluded.method,
    business_date = excluded.business_date,
    times = d.times + excluded.times;

-- name: lease_outbox
-- Takes up to $1 records due for $2 seconds: unpublished, not set aside, not waiting for the
-- retry of a transient failure. A relay that dies loses its lease and another relay publishes
-- the same records again (same event ids: consumers de-duplicate).
UPDATE outbox SET leased_until = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM outbox
    WHERE published_at IS NULL AND set_aside_at IS NULL
        AND (leased_until IS NULL OR leased_until < now())
        AND (next_attempt_at IS NULL OR next_attempt_at <= now())
    ORDER BY id LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING id, topic, key, value, headers, attempts;

-- name: mark_published
UPDATE outbox SET published_at = now(), leased_until = NULL, next_attempt_at = NULL
WHERE id = ANY($1::bigint[]);

-- name: outbox_backlog
-- Records waiting to be published (those set aside are counted by outbox_set_aside_count).
SELECT count(*) FROM outbox WHERE published_at IS NULL AND set_aside_at IS NULL;

-- name: lease_charges
-- Takes up to $1 Stripe charges that are due (new, or waiting for a retry) and moves them to
-- 'charging' with one more attempt; the lease ($2 seconds) makes a crashed worker's charge
-- due again, for the next instance to resume under the same idempotency key. $3 (the
-- charger's clock) is the first attempt's time of a charge never attempted: the age of its
-- Stripe idempotency key counts from it. 'needs_review' is never leased.
-- Due times are on the charger's clock ($3), like the times it writes (a claim's, a retry's):
-- compared with PostgreSQL's now(), a service clock behind the database's would lose every
-- retry's backoff, and one ahead would hold charges back. The lease itself (leased_until) is
-- on PostgreSQL's clock, the one clock every instance shares: an instance whose clock runs
-- ahead never takes a charge another one holds.
UPDATE daily_keys AS k SET
    phase = 'charging',
    attempts = k.attempts + 1,
    first_attempt_at = coalesce(k.first_attempt_at, $3),
    next_attempt_at = $3 + make_interval(secs => $2),
    leased_until = now() + make_interval(secs => $2),
    updated_at = now()
FROM (
    SELECT customer_id, business_date FROM daily_keys
    WHERE phase IN ('claimed', 'charging') AND next_attempt_at <= $3
        AND (leased_until IS NULL OR leased_until <= now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
) AS due
WHERE k.customer_id = due.customer_id AND k.business_date = due.business_date
RETURNING k.*;

-- name: finish_charge
-- Records a charge's final result. Only a charge still in 'charging' is finished, so that two
-- workers (a lease that ran out) never publish two results.
UPDATE daily_keys SET
    phase = 'done', result = $3, reason = $4, detail = $5, stripe_payment_intent_id = $6,
    next_attempt_at = NULL, leased_until = NULL, updated_at = now()
WHERE customer_id = $1 AND business_date = $2 AND phase = 'charging'
RETURNING customer_id;

-- name: insert_open_invoice_from_charge
-- The open invoice of an invoice-requested that a failed card charge's fallback (Cheque / TT)
-- published, in the transaction that settles the charge. $1 is the event's event_id; a row
-- already there (the same settlement, again) is left as it is.
INSERT INTO open_invoices (
    invoice_request_id, customer_id, business_date, amount, currency, requested_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (invoice_request_id) DO NOTHING;

-- name: postpone_charge
-- A charge whose outcome is not known yet: try again at $3 (same idempotency key). $6: when
-- Stripe's search was last asked about it (NULL: not in this attempt).
UPDATE daily_keys SET
    next_attempt_at = $3, leased_until = NULL, detail = $4,
    stripe_payment_intent_id = coalesce($5, stripe_payment_intent_id),
    looked_up_at = coalesce($6, looked_up_at), updated_at = now()
WHERE customer_id = $1 AND business_date = $2 AND phase = 'charging';

-- name: pause_stripe
-- After a hard card failure, Stripe top-ups wait for new card details: only if the card on
-- record is still the one that failed.
UPDATE wallets SET stripe_paused = true, updated_at = now()
WHERE customer_id = $1 AND stripe_payment_method_id = $2;

-- name: explain_wallet
-- Read-only, for `auto-topup explain`: one wallet as stored (no lock).
SELECT * FROM wallets WHERE customer_id = $1;

-- name: explain_funded_customers
-- Read-only, for `auto-topup explain`: how many wallets name $1 as their partner (a scan of
-- wallets, there is no index on partner_id: an operator's question, not the hot path).
SELECT count(*) FROM wallets WHERE partner_id = $1;

-- name: explain_daily_keys
-- Read-only, for `auto-topup explain`: a customer's daily keys from business date $2 on,
-- newest first.
SELECT customer_id, business_date, payment_method, amount, currency, trigger_event_id,
    balance_at_trigger, limit_threshold, partner_id, phase, result, reason, detail,
    stripe_payment_intent_id, attempts, next_attempt_at, created_at, updated_at
FROM daily_keys
WHERE customer_id = $1 AND business_date >= $2::date
ORDER BY business_date DESC;

-- name: explain_decisions
-- Read-only, for `auto-topup explain`: a customer's decision summary, newest first (at most
-- $2 rows; there are a few per customer).
SELECT outcome, reason, last_at, times, method, business_date, last_event_id, last_topic,
    last_partition, last_offset, detail
FROM decision_summary
WHERE customer_id = $1
ORDER BY last_at DESC, outcome, reason
LIMIT $2;

-- name: read_wallets
-- lock_wallets without the lock, for a dry-run replay: reads wallets and the business dates
-- of their daily keys from $2 on; takes no lock, writes nothing.
SELECT w.*, ARRAY(
    SELECT k.business_date FROM daily_keys AS k
    WHERE k.customer_id = w.customer_id AND k.business_date >= $2::date) AS taken_dates
FROM wallets AS w
WHERE w.customer_id = ANY($1::text[]);

-- name: applied_migrations
-- The migrations applied so far (a dry-run replay checks the schema without migrating).
SELECT version FROM schema_migrations;

-- name: review_charge
-- A charge past the Stripe key horizon that the charger cannot settle: no more requests, an
-- operator decides (`auto-topup charges resolve`). Only from 'charging', like finish_charge.
UPDATE daily_keys SET
    phase = 'needs_review', detail = $3, looked_up_at = coalesce($4, looked_up_at),
    next_attempt_at = NULL, leased_until = NULL, updated_at = now()
WHERE customer_id = $1 AND business_date = $2 AND phase = 'charging'
RETURNING customer_id;

-- name: open_charges
-- Read-only, for `auto-topup charges list`: the Stripe charges not settled yet (in the
-- charger's hands, or waiting for an operator), oldest claim first.
SELECT customer_id, business_date, amount::text, currency, phase, attempts, detail,
    stripe_payment_intent_id, stripe_customer_id, created_at, first_attempt_at, looked_up_at,
    next_attempt_at, updated_at
FROM daily_keys
WHERE phase IN ('claimed', 'charging', 'needs_review')
ORDER BY created_at, customer_id, business_date
LIMIT $1;

-- name: charge_gauges
-- For /metrics at scrape time: charges waiting for an operator, and the claim time of the
-- oldest charge still in the charger's hands (NULL: none).
SELECT count(*) FILTER (WHERE phase = 'needs_review') AS needs_review,
    min(created_at) FILTER (WHERE phase IN ('claimed', 'charging')) AS oldest_unresolved
FROM daily_keys
WHERE phase IN ('claimed', 'charging', 'needs_review');

-- name: lock_charge
-- `auto-topup charges resolve` and the charger's finish: one daily key, locked until the
-- result commits (the other's writes wait, then find it settled), before the charge's wallets
-- are locked (lock_wallets), so that the two take their locks in one order.
SELECT * FROM daily_keys WHERE customer_id = $1 AND business_date = $2 FOR UPDATE;

-- name: resolve_charge
-- An operator's decision on a charge in 'needs_review' (locked by lock_charge first).
UPDATE daily_keys SET
    phase = 'done', result = $3, reason = $4, detail = $5,
    stripe_payment_intent_id = coalesce($6, stripe_payment_intent_id),
    next_attempt_at = NULL, updated_at = now()
WHERE customer_id = $1 AND business_date = $2 AND phase = 'needs_review'
RETURNING customer_id;

-- name: insert_charge_audit
-- Who settled a charge by hand, when, why, and what was decided and published.
INSERT INTO charge_audit (
    customer_id, business_date, daily_key, old_phase, decision, reason, payment_intent_id,
    event_id, resolved_by, why, resolved_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id;

-- name: postpone_outbox
-- Records whose send failed transiently ($1 ids, $2 errors, $3 seconds): leased again no sooner
-- than that, one more failed attempt each.
UPDATE outbox AS o SET
    leased_until = NULL,
    attempts = o.attempts + 1,
    last_error = u.error,
    next_attempt_at = now() + make_interval(secs => u.delay)
FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS u(id, error, delay)
WHERE o.id = u.id AND o.published_at IS NULL;

-- name: set_aside_outbox
-- Records Kafka refused for good ($1 ids, $2 errors): the relay no longer sends them until an
-- operator retries them (`auto-topup outbox retry`).
UPDATE outbox AS o SET
    leased_until = NULL,
    attempts = o.attempts + 1,
    last_error = u.error,
    next_attempt_at = NULL,
    set_aside_at = now()
FROM unnest($1::bigint[], $2::text[]) AS u(id, error)
WHERE o.id = u.id AND o.published_at IS NULL;

-- name: outbox_set_aside_count
-- The gauge auto_topup_outbox_set_aside.
SELECT count(*) FROM outbox WHERE published_at IS NULL AND set_aside_at IS NOT NULL;

-- name: outbox_troubles
-- What `auto-topup outbox list` shows: up to $1 unpublished records set aside or whose last send
-- failed, oldest first (value size, not value).
SELECT id, dedupe_key, topic, key, octet_length(value) AS value_bytes, attempts, last_error,
    set_aside_at, next_attempt_at, created_at
FROM outbox
WHERE published_at IS NULL AND (set_aside_at IS NOT NULL OR attempts > 0)
ORDER BY id
LIMIT $1;

-- name: outbox_record_state
-- One record's state, for `auto-topup outbox retry ID`.
SELECT id, topic, published_at, set_aside_at, attempts FROM outbox WHERE id = $1;

-- name: retry_outbox
-- Sends records again at once ($1 ids: each that is unpublished and set aside or waiting for a
-- retry; NULL: every record set aside), with a fresh backoff.
UPDATE outbox SET set_aside_at = NULL, next_attempt_at = NULL, leased_until = NULL, attempts = 0
WHERE published_at IS NULL
    AND CASE WHEN $1::bigint[] IS NULL THEN set_aside_at IS NOT NULL
        ELSE id = ANY($1::bigint[]) AND (set_aside_at IS NOT NULL OR attempts > 0) END
RETURNING id, topic;

-- name: lock_counters
-- `auto-topup admin reset-sequence|reset-version`: one wallet's counters (the highest
-- sequence and settings version seen), locked until the reset commits: a batch of the
-- running service waits for it, then reads the new value.
SELECT customer_id, balance_sequence, settings_version
FROM wallets WHERE customer_id = $1 FOR UPDATE;

-- name: reset_balance_sequence
-- An operator's reset of a runaway sequence (locked by lock_counters first).
UPDATE wallets SET balance_sequence = $2, updated_at = now() WHERE customer_id = $1;

-- name: reset_settings_version
-- An operator's reset of a runaway settings version (locked by lock_counters first).
UPDATE wallets SET settings_version = $2, updated_at = now() WHERE customer_id = $1;

-- name: insert_counter_audit
-- Who reset a wallet's counter, when, why, from which value to which.
INSERT INTO counter_audit (customer_id, counter, old_value, new_value, reset_by, why, reset_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id;

-- name: retention_try_lock
-- Retention (service/service_layer/retention.py, migration 0009). Each prune_* deletes up to
-- $2 rows past its horizon $1 in one short statement (its own transaction): the rows are
-- picked through 0009's partial index, oldest first, and locked with SKIP LOCKED, so a pruner
-- never waits for a row the consumer, the charger, the relay or another pruner holds (and
-- none of them waits for long: one batch). The predicates repeat 0009's index predicates word
-- for word. Never taken, whatever their age: daily keys not settled (claimed, charging,
-- needs_review: the charger's or an operator's) and outbox records not published (waiting,
-- retrying, set aside).
--
-- One pruner at a time across instances: a session lock on the pruner's own connection (gone
-- with it). False: another pruner holds it now.
SELECT pg_try_advisory_lock($1::bigint);

-- name: retention_unlock
SELECT pg_advisory_unlock($1::bigint);

-- name: prune_daily_keys
-- Settled daily keys whose business date is before $1 (a date no event can act on any more).
WITH gone AS (
    DELETE FROM daily_keys WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM daily_keys
        WHERE phase = 'done' AND business_date < $1::date
        ORDER BY business_date
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: prune_outbox_events
-- Output events published before $1 (the daily key is what stops a second decision; the
-- outbox row of a published event is kept for operators only).
WITH gone AS (
    DELETE FROM outbox WHERE id = ANY(ARRAY(
        SELECT id FROM outbox
        WHERE published_at IS NOT NULL AND set_aside_at IS NULL
            AND dedupe_key NOT LIKE 'dlq/%' AND published_at < $1
        ORDER BY published_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: prune_outbox_dead_letters
-- Dead letters published before $1 (their row stops a replay from dead-lettering the same
-- input record twice: kept as long as the input topics keep records).
WITH gone AS (
    DELETE FROM outbox WHERE id = ANY(ARRAY(
        SELECT id FROM outbox
        WHERE published_at IS NOT NULL AND set_aside_at IS NULL
            AND dedupe_key LIKE 'dlq/%' AND published_at < $1
        ORDER BY published_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: prune_decision_summary
-- Last decisions made before $1 (`explain` shows none older; a customer's next decision of
-- that kind starts a new row, counted from 1).
WITH gone AS (
    DELETE FROM decision_summary WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM decision_summary
        WHERE last_at < $1
        ORDER BY last_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: prune_charge_audit
-- Charges settled by hand before $1.
WITH gone AS (
    DELETE FROM charge_audit WHERE id = ANY(ARRAY(
        SELECT id FROM charge_audit
        WHERE resolved_at < $1
        ORDER BY resolved_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: prune_counter_audit
-- Counters reset by hand before $1.
WITH gone AS (
    DELETE FROM counter_audit WHERE id = ANY(ARRAY(
        SELECT id FROM counter_audit
        WHERE reset_at < $1
        ORDER BY reset_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: prune_open_invoices
-- Invoices closed (paid or void) before $1 (a close is final; open invoices are never taken).
WITH gone AS (
    DELETE FROM open_invoices WHERE invoice_request_id = ANY(ARRAY(
        SELECT invoice_request_id FROM open_invoices
        WHERE closed_at IS NOT NULL AND closed_at < $1
        ORDER BY closed_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: count_daily_keys
-- `auto-topup prune --dry-run`: what prune_daily_keys would delete, in all.
SELECT count(*) FROM daily_keys WHERE phase = 'done' AND business_date < $1::date;

-- name: count_outbox_events
SELECT count(*) FROM outbox
WHERE published_at IS NOT NULL AND set_aside_at IS NULL
    AND dedupe_key NOT LIKE 'dlq/%' AND published_at < $1;

-- name: count_outbox_dead_letters
SELECT count(*) FROM outbox
WHERE published_at IS NOT NULL AND set_aside_at IS NULL
    AND dedupe_key LIKE 'dlq/%' AND published_at < $1;

-- name: count_decision_summary
SELECT count(*) FROM decision_summary WHERE last_at < $1;

-- name: count_charge_audit
SELECT count(*) FROM charge_audit WHERE resolved_at < $1;

-- name: count_counter_audit
SELECT count(*) FROM counter_audit WHERE reset_at < $1;

-- name: count_open_invoices
SELECT count(*) FROM open_invoices WHERE closed_at IS NOT NULL AND closed_at < $1;

-- name: retention_oldest
-- For /metrics at scrape time: the oldest row each prune_* would delete (NULL: none; a NULL
-- horizon, a kind kept for ever, finds none), each the first entry of its index.
SELECT
    (SELECT min(business_date) FROM daily_keys
        WHERE phase = 'done' AND business_date < $1::date) AS daily_keys,
    (SELECT min(published_at) FROM outbox
        WHERE published_at IS NOT NULL AND set_aside_at IS NULL
            AND dedupe_key NOT LIKE 'dlq/%' AND published_at < $2) AS outbox_events,
    (SELECT min(published_at) FROM outbox
        WHERE published_at IS NOT NULL AND set_aside_at IS NULL
            AND dedupe_key LIKE 'dlq/%' AND published_at < $3) AS outbox_dead_letters,
    (SELECT min(last_at) FROM decision_summary WHERE last_at < $4) AS decision_summary,
    (SELECT min(resolved_at) FROM charge_audit WHERE resolved_at < $5) AS charge_audit,
    (SELECT min(reset_at) FROM counter_audit WHERE reset_at < $6) AS counter_audit,
    (SELECT min(at) FROM customer_history WHERE at < $7) AS customer_history,
    (SELECT min(closed_at) FROM open_invoices
        WHERE closed_at IS NOT NULL AND closed_at < $8) AS open_invoices;

-- name: ping
-- Readiness (/readyz): the database answers a query.
SELECT 1;

-- Support (the read-only support page, service/entrypoints/support_http.py; migration 0013).

-- name: insert_history
-- The batch's lines of the customers' append-only history, in one statement (the batch's
-- transaction): one row per decision-log line that names a customer (service_layer/history.py).
INSERT INTO customer_history (customer_id, at, kind, outcome, reason, detail, data)
SELECT * FROM unnest(
    $1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[]);

-- name: support_history
-- Read-only: a customer's history, newest first, at most $2 rows (index customer_history_customer).
SELECT id, at, kind, outcome, reason, detail, data
FROM customer_history
WHERE customer_id = $1
ORDER BY id DESC
LIMIT $2;

-- name: support_balance_points
-- Read-only, the support page's chart: (at, balance) points of a customer from $2 on, oldest
-- first: the balance at each top-up the history records (its daily key's balance_at_trigger,
-- at the decision's time), and the last balance stored (at its occurred_at).
SELECT at, balance FROM (
    SELECT h.at, k.balance_at_trigger AS balance
    FROM customer_history h
    JOIN daily_keys k
        ON k.customer_id = h.customer_id AND k.business_date = (h.data->>'business_date')::date
    WHERE h.customer_id = $1 AND h.kind = 'decision' AND h.outcome IN ('triggered', 'failed')
        AND h.at >= $2
    UNION ALL
    SELECT balance_occurred_at, balance
    FROM wallets
    WHERE customer_id = $1 AND balance IS NOT NULL AND balance_occurred_at >= $2
) points
ORDER BY at;

-- name: support_rejected_settings
-- Read-only: the settings events of a customer that the rules rejected (dead-lettered), newest
-- first, at most $2.
SELECT event_id, redrive, reason, rejected_at
FROM rejected_settings
WHERE customer_id = $1
ORDER BY rejected_at DESC
LIMIT $2;

-- name: support_search
-- Read-only: customer ids starting with $1, in order, at most $2 (an operator's search, not
-- the hot path: the primary key is walked from $1 on).
SELECT customer_id FROM wallets
WHERE customer_id >= $1 AND starts_with(customer_id, $1)
ORDER BY customer_id
LIMIT $2;

-- name: prune_customer_history
-- History rows written before $1 (index customer_history_at).
WITH gone AS (
    DELETE FROM customer_history WHERE id = ANY(ARRAY(
        SELECT id FROM customer_history
        WHERE at < $1
        ORDER BY at
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) FROM gone;

-- name: count_customer_history
SELECT count(*) FROM customer_history WHERE at < $1;

-- name: support_open_invoices
-- Read-only, for the support page: a customer's requested invoices not paid or void yet.
SELECT invoice_request_id, business_date, amount::text AS amount, currency, requested_at,
    status, overdue_noticed_at
FROM open_invoices
WHERE customer_id = $1 AND closed_at IS NULL
ORDER BY requested_at, invoice_request_id;

-- name: support_notices
-- Read-only, for the support page: the customer's last notices still in the outbox (topic $1,
-- key $2), newest first (index outbox_by_key).
SELECT value FROM outbox WHERE key = $2 AND topic = $1 ORDER BY id DESC LIMIT $3;

-- name: open_invoices
-- The open invoices (no paid or void yet) of the batch's customers whose settings count them
-- (max_open_invoices), oldest first; through 0012's partial index open_invoices_open_by_customer.
SELECT customer_id, invoice_request_id, business_date
FROM open_invoices
WHERE customer_id = ANY($1::text[]) AND closed_at IS NULL
ORDER BY customer_id, requested_at, invoice_request_id;

-- name: insert_open_invoices
-- Invoices a batch requested (one row per invoice-requested event_id; a redelivered batch
-- finds its row there already and leaves it as it is).
INSERT INTO open_invoices
    (invoice_request_id, customer_id, business_date, amount, currency, requested_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::numeric[], $5::text[],
                     $6::timestamptz[])
ON CONFLICT (invoice_request_id) DO NOTHING;

-- name: set_invoice_statuses
-- Statuses of open invoices from invoice-status-changed (closed_at set: paid or void). A closed
-- invoice stays closed: a later status of it changes nothing.
UPDATE open_invoices AS o
SET status = u.status, closed_at = u.closed_at
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(invoice_request_id, status, closed_at)
WHERE o.invoice_request_id = u.invoice_request_id AND o.closed_at IS NULL;

-- name: take_overdue_invoices
-- The overdue-notice worker (service/service_layer/overdue.py): up to $2 open invoices
-- requested before $1 that have had no invoice_overdue notice, oldest first, through 0012's
-- partial index open_invoices_overdue; rows another worker or a batch holds are skipped.
SELECT invoice_request_id, customer_id, business_date, amount::text AS amount, currency,
       requested_at, status, overdue_noticed_at
FROM open_invoices
WHERE closed_at IS NULL AND overdue_noticed_at IS NULL AND requested_at < $1
ORDER BY requested_at
LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: read_open_invoices
-- The dry-run replay reads the open invoices of its customers through (plain SELECT, no lock).
SELECT invoice_request_id, customer_id, business_date, amount::text AS amount, currency,
       requested_at, status, overdue_noticed_at
FROM open_invoices
WHERE customer_id = ANY($1::text[]) AND closed_at IS NULL
ORDER BY requested_at, invoice_request_id;

-- name: mark_overdue_noticed
-- The invoices whose invoice_overdue notice was queued in this transaction.
UPDATE open_invoices SET overdue_noticed_at = $2
WHERE invoice_request_id = ANY($1::text[]);
