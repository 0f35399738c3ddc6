-- Contract v2, money rules.
-- card_terms: the amounts the card's owner set in the last online top-up
--   ({"trigger_amount", "limit_threshold", "currency"} as strings); the Finance app may choose
--   Stripe only with exactly these. Backfilled from the settings of wallets whose stored method
--   is Stripe (v1 kept those amounts locked); a card whose amounts are not known stays NULL and
--   needs a new online top-up before the Finance app can choose Stripe again.
-- attempt_day_end: the end of the last attempt's business day in the timezone that attempt
--   used; no new attempt for an event dated before it. Backfilled from the latest daily key in
--   the wallet's timezone (UTC when it has none).
-- credits_out entries gain "id" (the credit-issued event's id): a credit stays reserved until a
--   balance event of the partner's wallet names it in caused_by, or the hold passes. Entries
--   written before v2 have no id and are released by the hold only.
ALTER TABLE wallets
    ADD COLUMN card_terms      jsonb,
    ADD COLUMN attempt_day_end timestamptz;

ALTER TYPE wallet_state
    ADD ATTRIBUTE card_terms      jsonb,
    ADD ATTRIBUTE attempt_day_end timestamptz;

UPDATE wallets SET card_terms = jsonb_build_object(
    'trigger_amount', trigger_amount::text,
    'limit_threshold', limit_threshold::text,
    'currency', settings_currency)
WHERE stripe_customer_id IS NOT NULL AND payment_method = 'stripe';

UPDATE wallets AS w SET attempt_day_end = k.last_date_end
FROM (
    SELECT k.customer_id,
        max(((k.business_date + 1)::timestamp) AT TIME ZONE coalesce(w2.timezone, 'UTC'))
            AS last_date_end
    FROM daily_keys AS k JOIN wallets AS w2 ON w2.customer_id = k.customer_id
    GROUP BY k.customer_id
) AS k
WHERE w.customer_id = k.customer_id;
