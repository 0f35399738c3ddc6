"""What the split of a failed batch costs, in transactions (ADR 0011), with the processor tests'
KeyedHandler (no database): `.venv/bin/python -m tests.bench.split_cost`."""

from __future__ import annotations

import logging

from tests.unit.test_processor import KeyedHandler, _keyed, _run


def main() -> None:
    logging.disable(logging.CRITICAL)  # every split logs its failures
    for customers in (2000, 40, 1):
        worst = 0
        for bad in range(0, 2000, 7):
            handler = KeyedHandler(frozenset({bad}))
            _run(handler, _keyed(2000, customers))
            worst = max(worst, handler.transactions - 2)  # but the first and the dead letter
        print(
            f"one failing record in 2,000 records of {customers:,} customer(s), every seventh "
            f"position: at most {worst} more transactions (the partner read included: none "
            "for one customer)"
        )
    for what, failing in (("all", range(256)), ("every other one", range(0, 256, 2))):
        handler = KeyedHandler(frozenset(failing))
        _run(handler, _keyed(256, 1))
        print(f"one customer's 256 records, {what} failing: {handler.transactions} transactions")


if __name__ == "__main__":
    main()
