"""A fetched batch applied in lanes: its records split by partition number into disjoint
groups, each applied in a transaction of its own, at the same time. While one lane's
transaction waits for PostgreSQL, another's records are decoded and decided: the database's
work and the service's overlap on a machine of two cores.

One customer's records are always in one lane: the input topics are co-partitioned (a
customer's key hashes to the same partition number of each), and a partition number goes to
one lane. Each lane keeps its records' order. What still joins two lanes is a partner's wallet
(a customer of one lane paid from a partner whose own records are in another): the row locks
serialize them. Each lane locks its customers and their partners in one statement, in
customer_id order (`lock_wallets` with `partners`), so two lanes never wait for each other in a
cycle. The daily key's unique index stays the last word on a second top-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from service.service_layer.handlers import BatchReport
from service.service_layer.ports import InputRecord
from service.service_layer.processor import Stopped

log = logging.getLogger(__name__)


def split(records: Sequence[InputRecord], lanes: int) -> list[list[InputRecord]]:
    """The records by lane (partition number modulo `lanes`), in their order; empty lanes
    left out."""
    if lanes <= 1:
        return [list(records)]
    groups: list[list[InputRecord]] = [[] for _ in range(lanes)]
    for record in records:
        groups[record.partition % lanes].append(record)
    return [g for g in groups if g]


def merged(reports: Sequence[BatchReport]) -> BatchReport:
    """One report of the lanes' reports."""
    if len(reports) == 1:
        return reports[0]
    out = BatchReport()
    for report in reports:
        out.counts.update(report.counts)
        out.log += report.log
        out.stripe_claims += report.stripe_claims
        out.outbox_rows += report.outbox_rows
        out.held += report.held
    return out


async def applied(
    process: Callable[[Sequence[InputRecord]], Awaitable[BatchReport]],
    records: Sequence[InputRecord],
    lanes: int,
) -> BatchReport:
    """The records applied in lanes at once, every lane done before this returns. A failure
    is raised once all are done (a lane that committed comes again after the restart and
    changes nothing then); a lane's real failure before another's shutdown (`Stopped`), and the
    others logged, so that none is lost."""
    groups = split(records, lanes)
    if len(groups) == 1:
        return await process(groups[0])
    done = await asyncio.gather(*(process(g) for g in groups), return_exceptions=True)
    failures = [o for o in done if isinstance(o, BaseException)]
    if failures:
        failures.sort(key=lambda f: isinstance(f, Stopped))  # a real failure first
        for other in failures[1:]:
            log.error("another lane failed too: %s: %s", type(other).__name__, other)
        raise failures[0]
    return merged([r for r in done if isinstance(r, BatchReport)])
