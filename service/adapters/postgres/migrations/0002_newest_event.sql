-- The greatest (occurred_at, event_id) applied to each wallet, for balances and settings: an
-- event that is not above it (and not decided by sequence/version) is stale, so a repeated
-- event is always recognised, whenever it comes back.
ALTER TABLE wallets
    ADD COLUMN balance_newest_at  timestamptz,
    ADD COLUMN balance_newest_id  text,
    ADD COLUMN settings_newest_at timestamptz,
    ADD COLUMN settings_newest_id text;

ALTER TYPE wallet_state
    ADD ATTRIBUTE balance_newest_at timestamptz,
    ADD ATTRIBUTE balance_newest_id text,
    ADD ATTRIBUTE settings_newest_at timestamptz,
    ADD ATTRIBUTE settings_newest_id text;
