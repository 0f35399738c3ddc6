"""Configuration from the environment. A missing or malformed setting stops start-up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PostgresDsn,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.config.checks import describe_error, kafka_security_problem
from service.domain.calendar import is_valid_timezone
from service.domain.rules import Policy

__all__ = [
    "DAILY_KEY_MARGIN_DAYS",
    "Settings",
    "Topics",
    "describe_error",
    "kafka_security_problem",
]

# A daily key is kept at least AUTO_TOPUP_OLD_DAY_WINDOW_DAYS + this many days (see
# service/service_layer/retention.py): a day for the timezones behind UTC, a day for what the
# batch handler reads beyond that, a day of margin for clocks that disagree.
DAILY_KEY_MARGIN_DAYS = 3


class Topics(BaseModel):
    wallet_balance_changed: str = "wallet-balance-changed"
    settings_updated: str = "settings-updated"
    invoice_requested: str = "invoice-requested"
    credit_issued: str = "credit-issued"
    top_up_failed: str = "top-up-failed"
    dead_letter: str = "auto-topup-dead-letter"
    # since v2: an optional input, and the notices
    invoice_status_changed: str = "invoice-status-changed"
    auto_topup_notice: str = "auto-topup-notice"

    @property
    def inputs(self) -> tuple[str, str, str]:
        """The input topics (co-partitioned by customer_id)."""
        return (self.wallet_balance_changed, self.settings_updated, self.invoice_status_changed)

    @property
    def all(self) -> tuple[str, ...]:
        return (
            *self.inputs,
            self.invoice_requested,
            self.credit_issued,
            self.top_up_failed,
            self.auto_topup_notice,
            self.dead_letter,
        )


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _topic(name: str, default: str) -> str:
    return Field(
        default=default,
        validation_alias=f"AUTO_TOPUP_TOPIC_{name}",
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=False)

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1
    )
    # Kafka security (service/adapters/kafka/security.py turns them into client arguments).
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: str | None = Field(None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: str | None = Field(None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: str | None = Field(None, validation_alias="KAFKA_SSL_KEYFILE")
    database_url: PostgresDsn = Field(
        PostgresDsn("postgresql://postgres@127.0.0.1:54320/auto_topup"),
        validation_alias="DATABASE_URL",
    )
    # Required by `auto-topup run` (it charges cards); the operator commands do without it.
    stripe_api_key: SecretStr | None = Field(None, validation_alias="STRIPE_API_KEY")
    stripe_api_base: str | None = Field(None, validation_alias="STRIPE_API_BASE")
    default_timezone: str = Field("UTC", validation_alias="AUTO_TOPUP_DEFAULT_TIMEZONE")
    consumer_group: str = Field(
        "auto-topup", validation_alias="AUTO_TOPUP_CONSUMER_GROUP", min_length=1
    )

    topic_wallet_balance_changed: str = _topic("WALLET_BALANCE_CHANGED", "wallet-balance-changed")
    topic_settings_updated: str = _topic("SETTINGS_UPDATED", "settings-updated")
    topic_invoice_requested: str = _topic("INVOICE_REQUESTED", "invoice-requested")
    topic_credit_issued: str = _topic("CREDIT_ISSUED", "credit-issued")
    topic_top_up_failed: str = _topic("TOP_UP_FAILED", "top-up-failed")
    topic_dead_letter: str = _topic("AUTO_TOPUP_DEAD_LETTER", "auto-topup-dead-letter")
    topic_invoice_status_changed: str = _topic("INVOICE_STATUS_CHANGED", "invoice-status-changed")
    topic_auto_topup_notice: str = _topic("AUTO_TOPUP_NOTICE", "auto-topup-notice")

    # Rules of the contract that an operator may tune.
    future_skew_seconds: float = Field(300, ge=0, validation_alias="AUTO_TOPUP_FUTURE_SKEW_SECONDS")
    old_day_window_days: int = Field(1, ge=0, validation_alias="AUTO_TOPUP_OLD_DAY_WINDOW_DAYS")
    # A partner credit no balance event names (caused_by) stops being reserved after this.
    partner_credit_hold_seconds: float = Field(
        48 * 3600, gt=0, validation_alias="AUTO_TOPUP_PARTNER_CREDIT_HOLD_SECONDS"
    )

    # For tests and drills: the service's clock runs this many seconds ahead of (or behind,
    # when negative) the host's clock. Within a century either way.
    clock_offset_seconds: float = Field(
        0.0,
        ge=-3_155_760_000,
        le=3_155_760_000,
        allow_inf_nan=False,
        validation_alias="AUTO_TOPUP_CLOCK_OFFSET_SECONDS",
        description="for tests and drills: the service's clock runs this many seconds ahead "
        "of (or behind, when negative) the host's clock",
    )

    # Operational knobs.
    topic_partitions: int = Field(6, ge=1, validation_alias="AUTO_TOPUP_TOPIC_PARTITIONS")
    topic_replication_factor: int = Field(
        1, ge=1, validation_alias="AUTO_TOPUP_TOPIC_REPLICATION_FACTOR"
    )
    batch_max_records: int = Field(2000, ge=1, validation_alias="AUTO_TOPUP_BATCH_MAX_RECORDS")
    batch_timeout_ms: int = Field(20, ge=0, validation_alias="AUTO_TOPUP_BATCH_TIMEOUT_MS")
    # How long a record that would trigger a top-up waits for the other input topic's partition
    # to be read up to its time (contract v2, like Kafka Streams' max.task.idle.ms); 0: never.
    input_align_ms: int = Field(500, ge=0, le=60_000, validation_alias="AUTO_TOPUP_INPUT_ALIGN_MS")
    session_timeout_ms: int = Field(
        10000, ge=1000, validation_alias="AUTO_TOPUP_KAFKA_SESSION_TIMEOUT_MS"
    )
    db_pool_size: int = Field(4, ge=1, validation_alias="AUTO_TOPUP_DB_POOL_SIZE")
    # A fetched batch is applied in this many lanes at once, by partition number (lanes.py).
    batch_lanes: int = Field(2, ge=1, le=16, validation_alias="AUTO_TOPUP_BATCH_LANES")
    shutdown_timeout_seconds: float = Field(
        20, gt=0, validation_alias=AliasChoices("AUTO_TOPUP_SHUTDOWN_TIMEOUT_SECONDS")
    )
    stripe_timeout_seconds: float = Field(
        30, gt=0, validation_alias="AUTO_TOPUP_STRIPE_TIMEOUT_SECONDS"
    )
    stripe_retry_max_seconds: float = Field(
        300, gt=0, validation_alias="AUTO_TOPUP_STRIPE_RETRY_MAX_SECONDS"
    )
    stripe_concurrency: int = Field(8, ge=1, validation_alias="AUTO_TOPUP_STRIPE_CONCURRENCY")
    # The Stripe horizon, counted from a charge's first attempt: looked up by metadata.daily_key
    # before any request past the lookup age; never sent again past the key horizon (Stripe
    # keeps idempotency keys for 24 hours), then it waits for an operator (needs_review).
    stripe_lookup_after_seconds: float = Field(
        23 * 3600, gt=0, validation_alias="AUTO_TOPUP_STRIPE_LOOKUP_AFTER_SECONDS"
    )
    stripe_key_horizon_seconds: float = Field(
        24 * 3600, gt=0, le=24 * 3600, validation_alias="AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS"
    )
    # Retention (service/service_layer/retention.py, docs/operating.md "Retention"): days each
    # kind of row is kept past its time, 0 keeping it for ever; pruned every interval (0: only
    # by the `auto-topup prune` command), in batches.
    retention_interval_seconds: float = Field(
        600, ge=0, allow_inf_nan=False, validation_alias="AUTO_TOPUP_RETENTION_INTERVAL_SECONDS"
    )
    retention_batch_size: int = Field(
        1000, ge=1, le=100_000, validation_alias="AUTO_TOPUP_RETENTION_BATCH_SIZE"
    )
    retention_daily_keys_days: int = Field(
        35, ge=0, le=36_500, validation_alias="AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS"
    )
    retention_outbox_days: int = Field(
        7, ge=0, le=36_500, validation_alias="AUTO_TOPUP_RETENTION_OUTBOX_DAYS"
    )
    retention_dead_letters_days: int = Field(
        21, ge=0, le=36_500, validation_alias="AUTO_TOPUP_RETENTION_DEAD_LETTERS_DAYS"
    )
    retention_decision_summary_days: int = Field(
        400, ge=0, le=36_500, validation_alias="AUTO_TOPUP_RETENTION_DECISION_SUMMARY_DAYS"
    )
    retention_audit_days: int = Field(
        0, ge=0, le=36_500, validation_alias="AUTO_TOPUP_RETENTION_AUDIT_DAYS"
    )
    retention_history_days: int = Field(
        90, ge=0, le=36_500, validation_alias="AUTO_TOPUP_RETENTION_HISTORY_DAYS"
    )
    support_token: SecretStr | None = Field(  # the support page's bearer token (unset: off)
        None, min_length=16, validation_alias="AUTO_TOPUP_SUPPORT_TOKEN"
    )
    # Invoices (contract v2): an invoice open longer than this many days gets one
    # invoice_overdue notice; the worker that queues them looks every interval.
    invoice_overdue_days: int = Field(
        7, ge=1, le=36_500, validation_alias="AUTO_TOPUP_INVOICE_OVERDUE_DAYS"
    )
    invoice_overdue_interval_seconds: float = Field(
        60,
        gt=0,
        allow_inf_nan=False,
        validation_alias="AUTO_TOPUP_INVOICE_OVERDUE_INTERVAL_SECONDS",
    )
    http_host: str = Field("127.0.0.1", validation_alias="AUTO_TOPUP_HTTP_HOST", min_length=1)
    http_port: int = Field(8080, ge=0, le=65535, validation_alias="AUTO_TOPUP_HTTP_PORT")
    tracing: bool = Field(False, validation_alias="AUTO_TOPUP_TRACING")
    tracing_exporter: Literal["otlp", "console", "none"] = Field(
        "otlp", validation_alias="OTEL_TRACES_EXPORTER"
    )
    log_level: str = Field(
        "INFO", validation_alias="AUTO_TOPUP_LOG_LEVEL", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$"
    )

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not is_valid_timezone(value):
            raise ValueError(f"unknown IANA timezone {value!r}")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _asyncpg_scheme(cls, value: object) -> object:
        # What asyncpg accepts (PostgresDsn also lets SQLAlchemy's postgresql+asyncpg:// by).
        if isinstance(value, str):
            scheme, sep, _ = value.partition("://")
            if not sep or scheme not in ("postgresql", "postgres"):
                raise ValueError(
                    "must be a postgresql:// or postgres:// URL"
                    + (f", not {scheme[:40]}://" if sep else "")
                )
        return value

    @field_validator("stripe_api_key", "support_token")
    @classmethod
    def _non_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Settings:
        # One line per problem, naming the variables (describe_error prints it as it is).
        problem = kafka_security_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("stripe_key_horizon_seconds")
    @classmethod
    def _horizon_after_lookup(cls, value: float, info: ValidationInfo) -> float:
        lookup = info.data.get("stripe_lookup_after_seconds")
        if lookup is not None and value <= lookup:
            raise ValueError(
                "AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS must be greater than "
                "AUTO_TOPUP_STRIPE_LOOKUP_AFTER_SECONDS"
            )
        return value

    @field_validator("retention_daily_keys_days")
    @classmethod
    def _daily_keys_outlive_the_old_day_window(cls, value: int, info: ValidationInfo) -> int:
        # A daily key is what stops a second top-up on its day while an event can still act on
        # that day: keep it until the old-day guard refuses every event of its date, anywhere
        # on Earth, and a day past what a batch reads (service/service_layer/retention.py).
        window = info.data.get("old_day_window_days")
        if value and window is not None and value < window + DAILY_KEY_MARGIN_DAYS:
            raise ValueError(
                "must be 0 (keep for ever) or at least AUTO_TOPUP_OLD_DAY_WINDOW_DAYS + "
                f"{DAILY_KEY_MARGIN_DAYS} ({window + DAILY_KEY_MARGIN_DAYS}): a daily key "
                "younger than that can still stop a second top-up on its day"
            )
        return value

    @property
    def topics(self) -> Topics:
        return Topics(
            wallet_balance_changed=self.topic_wallet_balance_changed,
            settings_updated=self.topic_settings_updated,
            invoice_requested=self.topic_invoice_requested,
            credit_issued=self.topic_credit_issued,
            top_up_failed=self.topic_top_up_failed,
            dead_letter=self.topic_dead_letter,
            invoice_status_changed=self.topic_invoice_status_changed,
            auto_topup_notice=self.topic_auto_topup_notice,
        )

    @property
    def policy(self) -> Policy:
        return Policy(
            default_timezone=self.default_timezone,
            future_skew=timedelta(seconds=self.future_skew_seconds),
            old_day_window_days=self.old_day_window_days,
            credit_hold=timedelta(seconds=self.partner_credit_hold_seconds),
        )

    def clock(self) -> Callable[[], datetime]:
        """The service's clock: the host's UTC time moved by AUTO_TOPUP_CLOCK_OFFSET_SECONDS."""
        offset = timedelta(seconds=self.clock_offset_seconds)

        def now() -> datetime:
            return datetime.now(UTC) + offset

        return now

    @property
    def dsn(self) -> str:
        return str(self.database_url)

    # `run` applies the database migrations at start-up (true), or only checks that the schema
    # is current and stops if not (false: where a job with a role that may change the schema
    # runs `auto-topup migrate`, and the service's role may not).
    migrate_on_start: bool = Field(True, validation_alias="AUTO_TOPUP_MIGRATE_ON_START")

    # Topics (docs/operating.md "Topics"): false creates none, and `run` stops (exit code 5) if
    # one is missing; min.insync.replicas of those it creates (at most their replication factor).
    create_topics: bool = Field(True, validation_alias="AUTO_TOPUP_CREATE_TOPICS")
    topic_min_insync_replicas: int = Field(
        1, ge=1, validation_alias="AUTO_TOPUP_TOPIC_MIN_INSYNC_REPLICAS"
    )
