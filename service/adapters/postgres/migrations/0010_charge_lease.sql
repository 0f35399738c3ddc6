-- Who holds a Stripe charge, on one clock. A charge is due by its charger's clock
-- (next_attempt_at: a claim's or a retry's time, written by the service), but the lease that
-- keeps a second charger off it while a Stripe call is in flight is judged on PostgreSQL's
-- clock alone: instances whose clocks differ by more than the lease would otherwise both take
-- it. NULL: nobody holds it.
ALTER TABLE daily_keys ADD COLUMN leased_until timestamptz;
