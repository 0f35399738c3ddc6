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

-- The invoices this service requested (Cheque / TT) until invoicing says they are paid or void
-- (`invoice-status-changed`): max_open_invoices counts the open ones, and one open longer than
-- AUTO_TOPUP_INVOICE_OVERDUE_DAYS gets one invoice_overdue notice. invoice_request_id is the
-- invoice-requested event's event_id. Closed rows are pruned by the retention job.
CREATE TABLE open_invoices (
    invoice_request_id text PRIMARY KEY,
    customer_id        text NOT NULL,
    business_date      date NOT NULL,
    amount             numeric NOT NULL,
    currency           text NOT NULL,
    requested_at       timestamptz NOT NULL,
    status             text NOT NULL DEFAULT 'requested'
        CHECK (status IN ('requested', 'issued', 'paid', 'void')),
    closed_at          timestamptz,
    overdue_noticed_at timestamptz
);
CREATE INDEX open_invoices_open_by_customer
    ON open_invoices (customer_id) WHERE closed_at IS NULL;
CREATE INDEX open_invoices_overdue
    ON open_invoices (requested_at) WHERE closed_at IS NULL AND overdue_noticed_at IS NULL;

-- The support page lists a customer's last notices from the outbox (by key; outbox rows are
-- decisions and dead letters, not balance events: the index costs the hot path nothing).
CREATE INDEX IF NOT EXISTS outbox_by_key ON outbox (key, id);
