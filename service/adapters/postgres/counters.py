"""Resetting a wallet's runaway counter by hand (`auto-topup admin reset-sequence` and
`reset-version`), audited in counter_audit and in the log. The SQL is in queries.sql.

The highest `sequence` (balances) and `version` (settings) seen only rise: an event whose
counter is not above them is stale. A producer that once sent 2^63 - 1 (the largest the
contract allows) makes every later counted event of the wallet stale, for good. An operator
sets the counter back to what the producer really sent last; events above it apply again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection
from service.contract.types import MAX_COUNT

log = logging.getLogger("auto_topup.admin")

QUERY_TIMEOUT_SECONDS = 10.0


class Counter(StrEnum):
    SEQUENCE = "sequence"  # wallet-balance-changed: wallets.balance_sequence
    VERSION = "version"  # settings-updated: wallets.settings_version


_COLUMN = {Counter.SEQUENCE: "balance_sequence", Counter.VERSION: "settings_version"}
_RESET = {Counter.SEQUENCE: "reset_balance_sequence", Counter.VERSION: "reset_settings_version"}


@dataclass(frozen=True, slots=True)
class CounterReset:
    """What a reset did (also the audit row)."""

    customer_id: str
    counter: Counter
    old_value: int
    new_value: int
    reset_by: str
    why: str
    reset_at: datetime
    audit_id: int


class WalletNotFound(Exception):
    """No wallet of that customer."""


class CounterNotSet(Exception):
    """The wallet has seen no such counter: nothing to reset."""


async def reset_counter(
    conn: Connection,
    customer_id: str,
    counter: Counter,
    to: int,
    *,
    by: str,
    why: str,
    now: datetime,
) -> CounterReset:
    """Sets the wallet's highest `counter` seen to `to`, and writes the audit row, in one
    transaction under the wallet's lock. Raises WalletNotFound / CounterNotSet."""
    if not 0 <= to <= MAX_COUNT:
        raise ValueError(f"a {counter} is an integer from 0 to {MAX_COUNT}")
    if not by.strip() or not why.strip():
        raise ValueError("who resets it and why are required")
    t = QUERY_TIMEOUT_SECONDS
    async with conn.transaction():
        row = await conn.fetchrow(q("lock_counters"), customer_id, timeout=t)
        if row is None:
            raise WalletNotFound(customer_id)
        old = row[_COLUMN[counter]]
        if old is None:
            raise CounterNotSet(f"{customer_id} has seen no {counter}")
        await conn.execute(q(_RESET[counter]), customer_id, to, timeout=t)
        audit_id = await conn.fetchval(
            q("insert_counter_audit"), customer_id, str(counter), old, to, by, why, now, timeout=t
        )
    done = CounterReset(customer_id, counter, int(old), to, by, why, now, int(audit_id))
    log.warning(
        "%s of %s reset from %d to %d by %s",
        counter,
        customer_id,
        done.old_value,
        done.new_value,
        by,
        extra={"counter_reset": asdict(done)},
    )
    return done
