"""What a redrive publishes of the dead letters read (service_layer/dead_letters.py)."""

from __future__ import annotations

from service.contract import messages
from service.service_layer.dead_letters import DeadLetter, plan_redrive

INPUTS = ("wallet-balance-changed", "settings-updated")


def dead(
    offset: int,
    topic: str | None = "wallet-balance-changed",
    original_offset: int = 0,
    value: bytes | None = b"{}",
    *extra: tuple[str, bytes],
) -> DeadLetter:
    headers: list[tuple[str, bytes | None]] = [("ce_id", b"e1")]
    if topic is not None:
        headers += [
            (messages.DLQ_TOPIC, topic.encode()),
            (messages.DLQ_PARTITION, b"0"),
            (messages.DLQ_OFFSET, str(original_offset).encode()),
        ]
    headers += [(messages.DLQ_REASON, b"invalid_payload"), *extra]
    return DeadLetter("dlq", 0, offset, 1_000 + offset, b"c1", value, tuple(headers))


def test_publishes_in_the_original_order_and_skips_what_is_not_ours_to_redrive() -> None:
    later, earlier = (
        dead(0, original_offset=9, value=b"{}"),
        dead(1, original_offset=3, value=b"[]"),
    )
    foreign = dead(2, topic="somebody-elses")
    unmarked = dead(3, topic=None)
    cut = dead(4, "settings-updated", 5, b"{", (messages.DLQ_TRUNCATED, b"true"))
    empty = DeadLetter("dlq", 0, 5, 1_005, None, None, earlier.headers)  # no key, no value

    plan = plan_redrive([later, foreign, unmarked, cut, empty, earlier], INPUTS)

    assert plan.publish == [earlier, later]
    assert {d.offset: why.split(" ")[0] for d, why in plan.skipped} == {
        2: "original",
        3: "no",
        4: "it",
        5: "it",
    }
    assert plan.duplicates == 0


def test_the_same_record_dead_lettered_twice_is_published_once() -> None:
    first, again = dead(0, original_offset=7), dead(1, original_offset=7)

    plan = plan_redrive([again, first], INPUTS)

    assert plan.publish == [first]
    assert plan.duplicates == 1
    assert first.original_headers == (("ce_id", b"e1"),)
