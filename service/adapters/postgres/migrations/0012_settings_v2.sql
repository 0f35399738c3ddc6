-- Contract v2 settings: amount modes, caps, fallback, open invoices; the month's top-ups; the
-- Trigger Amount advisor's usage.
-- settings_v2: the v2 fields of the settings in effect, NULL when every one is v1's default
--   ({"amount_mode", "target_balance", "max_amount", "monthly_cap", "fallback_method",
--   "max_open_invoices"}, money as strings). card_terms entries gain the same amount keys
--   (the card's own, set only by online top-ups); an entry without them is v1's: fixed, no cap.
-- month_spend: the top-ups of the current month of the customer's timezone
--   ({"month": "YYYY-MM", "spent": "...", "notices": [...]}), NULL before the first.
-- advised_on: the business date of the last trigger_amount_too_low notice.
-- usage: the advisor's usage per business day of the last days (a compact binary form).
ALTER TABLE wallets
    ADD COLUMN settings_v2 jsonb,
    ADD COLUMN month_spend jsonb,
    ADD COLUMN advised_on  date,
    ADD COLUMN usage       bytea;

ALTER TYPE wallet_state
    ADD ATTRIBUTE settings_v2 jsonb,
    ADD ATTRIBUTE month_spend jsonb,
    ADD ATTRIBUTE advised_on  date,
    ADD ATTRIBUTE usage       bytea;

-- The claim of a daily key keeps how its amount was reckoned and the fallback method, so that
-- the charger settles a card's failure through the fallback, and its events say the mode.
ALTER TABLE daily_keys
    ADD COLUMN amount_mode     text NOT NULL DEFAULT 'fixed',
    ADD COLUMN fallback_method text;
