"""Every outcome and reason code the service writes: in events, dead letters, logs, metrics,
the decision summary, reports and the operator commands.

They are `StrEnum`s, so each member is its string: comparisons with plain strings, JSON, SQL
parameters and metric labels see exactly the same bytes as before. The comment on each member
says what it means, for the people who read the codes (support, operators). The tables in
docs/ list the same codes; `tests/unit/test_reason_docs.py` fails when the two differ.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class RecordOutcome(StrEnum):
    """What one input record came to (logs, metrics, `replay` reports, `explain`)."""

    APPLIED = "applied"  # the record changed the stored state; no top-up was due
    STALE = "stale"  # older than (or the same as) what is known: nothing changed
    DEAD_LETTERED = "dead_lettered"  # can never be applied: sent to the dead-letter topic
    TRIGGERED = "triggered"  # a top-up was due and was made (invoice, credit or Stripe claim)
    FAILED = "failed"  # a top-up was due and was tried, but failed (`top-up-failed`)
    SUPPRESSED = "suppressed"  # a top-up was due, but today's daily key is taken
    BLOCKED = "blocked"  # a top-up would be due, but a rule stops it


# The outcomes that are decisions about a top-up (the metric auto_topup_decisions_total).
DECISION_OUTCOMES = frozenset(
    {
        RecordOutcome.TRIGGERED,
        RecordOutcome.FAILED,
        RecordOutcome.SUPPRESSED,
        RecordOutcome.BLOCKED,
    }
)


class DeadLetterReason(StrEnum):
    """Why an input record was dead-lettered (header `dlq_reason`)."""

    INVALID_JSON = "invalid_json"  # the value is not a JSON object (or has NaN/Infinity)
    INVALID_ENCODING = "invalid_encoding"  # the value is not UTF-8
    EMPTY_VALUE = "empty_value"  # the record has no value (a tombstone)
    MESSAGE_TOO_LARGE = "message_too_large"  # the value is over 64 KiB
    SCHEMA_VIOLATION = "schema_violation"  # a field is missing or has the wrong type or form
    KEY_MISMATCH = "key_mismatch"  # the record's key is not its customer_id
    UNKNOWN_TOPIC = "unknown_topic"  # read from a topic the service has no handler for
    FUTURE_DATED = "future_dated"  # occurred_at is further ahead than the allowed skew
    INVALID_AMOUNT_SCALE = "invalid_amount_scale"  # more decimals than the currency has
    INVALID_AMOUNT_FOR_CARD = "invalid_amount_for_card"  # an amount a card cannot be charged
    INVALID_TIMEZONE = "invalid_timezone"  # timezone is not an IANA name
    CURRENCY_MISMATCH = "currency_mismatch"  # settings in another currency than the wallet's
    PARTNER_IS_CUSTOMER = "partner_is_customer"  # a master account naming itself as partner
    STRIPE_SETTINGS_LOCKED = "stripe_settings_locked"  # Stripe chosen with other amounts
    STRIPE_CARD_MISSING = "stripe_card_missing"  # Stripe chosen for a customer with no card
    # (kept for the dead letters of earlier versions, which refused the v2 settings fields)
    UNSUPPORTED_SETTING = "unsupported_setting"  # contract v2 fields not applied (before 0.13)
    PROCESSING_ERROR = "processing_error"  # it made the service fail; a retry cannot fix it


class StaleReason(StrEnum):
    """Why a record was stale (outcome `stale`)."""

    STALE_BALANCE = "stale_balance"  # a balance not newer than the wallet's last one
    STALE_SETTINGS = "stale_settings"  # settings not newer than the stored ones
    # a settings record dead-lettered when it first came, come again: never applied now
    REDELIVERED_DEAD_LETTER = "redelivered_dead_letter"


class BlockReason(StrEnum):
    """Why a balance or settings change did not trigger a top-up (outcomes `blocked` and
    `suppressed`; the not-due ones are not logged, `explain` uses them)."""

    NO_SETTINGS = "no_settings"  # not due: the customer has no settings
    BALANCE_UNKNOWN = "balance_unknown"  # not due: no balance of the wallet seen yet
    ABOVE_THRESHOLD = "above_threshold"  # not due: the balance is above the Limit Threshold
    STRIPE_CARD_TERMS_UNKNOWN = "stripe_card_terms_unknown"  # card saved before v2, amounts unknown
    AUTO_TRIGGER_OFF = "auto_trigger_off"  # auto-trigger is off
    CURRENCY_MISMATCH = "currency_mismatch"  # the balance is in another currency than settings
    OLD_BUSINESS_DATE = "old_business_date"  # the event's business day is past the old-day guard
    STRIPE_PAUSED = "stripe_paused"  # Stripe paused after a hard failure, until a new card
    DAILY_KEY_TAKEN = "daily_key_taken"  # suppressed: this business day had its attempt
    MONTHLY_CAP_REACHED = "monthly_cap_reached"  # the month's cap leaves nothing (or too little)
    BELOW_CARD_MINIMUM = "below_card_minimum"  # the amount reckoned is less than a card can take
    ABOVE_CARD_MAXIMUM = "above_card_maximum"  # the amount reckoned is more than a card can take
    INVOICE_OPEN = "invoice_open"  # suppressed: max_open_invoices requested invoices are open


class FailureReason(StrEnum):
    """Reasons of `top-up-failed` the service names. Stripe's own decline codes pass through
    as Stripe sends them, so a `top-up-failed` reason may be a code not listed here."""

    PARTNER_INSUFFICIENT_FUNDS = "partner_insufficient_funds"  # the partner cannot cover it
    PARTNER_BALANCE_UNKNOWN = "partner_balance_unknown"  # no balance of the partner seen yet
    PARTNER_CURRENCY_MISMATCH = "partner_currency_mismatch"  # partner wallet in another currency
    CARD_DECLINED = "card_declined"  # Stripe declined the card, no more specific code
    INSUFFICIENT_FUNDS = "insufficient_funds"  # Stripe: the card has not enough funds
    EXPIRED_CARD = "expired_card"  # Stripe: the card has expired
    LOST_CARD = "lost_card"  # Stripe: the card was reported lost
    AUTHENTICATION_REQUIRED = "authentication_required"  # the bank wants the cardholder
    TRY_AGAIN_LATER = "try_again_later"  # Stripe: temporary decline (no pause)
    PROCESSING_ERROR = "processing_error"  # Stripe: temporary decline (no pause)
    ISSUER_NOT_AVAILABLE = "issuer_not_available"  # Stripe: temporary decline (no pause)
    REENTER_TRANSACTION = "reenter_transaction"  # Stripe: temporary decline (no pause)
    STRIPE_CHARGE_UNRESOLVED = "stripe_charge_unresolved"  # an operator settled it as failed
    STRIPE_CARD_MISSING = "stripe_card_missing"  # the charger found no card on record
    RESOURCE_MISSING = "resource_missing"  # the saved customer or card is gone at Stripe
    STRIPE_REQUEST_INVALID = "stripe_request_invalid"  # Stripe refused the request, no code


# Declines Stripe documents as temporary: published as failures, but Stripe is not paused.
TEMPORARY_DECLINES = frozenset(
    {
        FailureReason.TRY_AGAIN_LATER,
        FailureReason.PROCESSING_ERROR,
        FailureReason.ISSUER_NOT_AVAILABLE,
        FailureReason.REENTER_TRANSACTION,
    }
)


class NoticeType(StrEnum):
    """Type of an `auto-topup-notice` event (contract v2): one per customer, type and period."""

    MONTHLY_CAP_WARNING = "monthly_cap_warning"  # the month's top-ups reached 80% of the cap
    MONTHLY_CAP_REACHED = "monthly_cap_reached"  # the month's top-ups reached the cap
    STRIPE_PAUSED = "stripe_paused"  # a hard card failure: top up online with a working card
    INVOICE_OVERDUE = "invoice_overdue"  # a requested invoice is open longer than allowed
    TRIGGER_AMOUNT_TOO_LOW = "trigger_amount_too_low"  # the usage outgrows the Trigger Amount


class InvoiceOutcome(StrEnum):
    """What an invoice-status-changed record came to (logs, metrics)."""

    CLOSED = "closed"  # paid or void: the invoice no longer counts as open
    NOTED = "noted"  # issued: the invoice stays open
    UNKNOWN_INVOICE = "unknown_invoice"  # not an open invoice this service requested


class NextCode(StrEnum):
    """`auto-topup explain`: when the customer may next be topped up."""

    NO_SETTINGS = "no_settings"  # never, until settings arrive
    AUTO_TRIGGER_OFF = "auto_trigger_off"  # never, until the Finance app enables it
    STRIPE_PAUSED = "stripe_paused"  # after an online top-up brings new card details
    CURRENCY_MISMATCH = "currency_mismatch"  # never, while wallet and settings differ
    DAILY_KEY_TAKEN = "daily_key_taken"  # from the start of the next free business day
    BALANCE_UNKNOWN = "balance_unknown"  # as soon as a balance at or below the threshold arrives
    ABOVE_THRESHOLD = "above_threshold"  # as soon as a balance at or below the threshold arrives
    DUE_NOW = "due_now"  # the balance is already low: the next balance event triggers
    OTHER = "other"  # a rule this module does not name (the sentence says which)


class StripeCallOutcome(StrEnum):
    """Label `outcome` of auto_topup_stripe_call_seconds (`result` of ..._charges_total)."""

    SUCCEEDED = "succeeded"  # the charge succeeded
    FAILED = "failed"  # Stripe failed the charge for good (declined, authentication, ...)
    PENDING = "pending"  # accepted, not final yet: looked at again later
    ERROR = "error"  # no answer (network, 5xx, timeout): looked up, then retried
    SEARCH = "search"  # a lookup of a charge by its daily key (not a charge attempt)
    SEARCH_ERROR = "search_error"  # such a lookup that failed


class ChargePhase(StrEnum):
    """Phase of a daily key (table daily_keys, `auto-topup charges`)."""

    CLAIMED = "claimed"  # a Stripe charge is due; the charger has not started it yet
    CHARGING = "charging"  # the charger is charging (or will try again)
    DONE = "done"  # settled: the decision is made and its event queued
    NEEDS_REVIEW = "needs_review"  # past Stripe's 24 h key horizon: an operator settles it


class ClaimResult(StrEnum):
    """What a settled daily key came to (column daily_keys.result)."""

    INVOICE_REQUESTED = "invoice_requested"  # an invoice-requested event (Cheque/TT)
    CREDIT_ISSUED = "credit_issued"  # a credit-issued event (partner or Stripe)
    FAILED = "failed"  # a top-up-failed event


class OutboxState(StrEnum):
    """State of an outgoing record that is not published (`auto-topup outbox list`)."""

    RETRYING = "retrying"  # its last send failed; the relay tries again after a backoff
    SET_ASIDE = "set_aside"  # Kafka refused it for good; waits for `auto-topup outbox retry`


class ExitCode(IntEnum):
    """Exit codes of the `auto-topup` commands."""

    DONE = 0  # done; `run`: stopped by SIGTERM/SIGINT after finishing its work
    FAILED = 1  # a failure, or nothing to act on
    MISCONFIGURED = 2  # a bad setting or usage
    NOT_CO_PARTITIONED = 3  # `run`: the input topics are not co-partitioned
    SCHEMA_BEHIND = 4  # `run` with AUTO_TOPUP_MIGRATE_ON_START=false: migrations are missing
    TOPICS_MISSING = 5  # `run` with AUTO_TOPUP_CREATE_TOPICS=false: topics are missing
    INTERRUPTED = 130  # `replay` interrupted: what it applied is committed


class AdviceReason(StrEnum):
    """Why the notice `trigger_amount_too_low` was given (the Trigger Amount advisor)."""

    # after the top-up, the balance is still at or below the Limit Threshold
    BALANCE_STILL_AT_OR_BELOW_THRESHOLD = "balance_still_at_or_below_threshold"
    # the highest daily usage of the last 7 business days (and today) is above the Trigger Amount
    USAGE_ABOVE_TRIGGER_AMOUNT = "usage_above_trigger_amount"
