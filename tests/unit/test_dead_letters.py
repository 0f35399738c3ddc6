"""What a redrive publishes of the dead letters read (service_layer/dead_letters.py)."""

from __future__ import annotations

from collections.abc import Sequence

from service.adapters.memory import MemoryDatabase
from service.contract import messages
from service.service_layer.dead_letters import DeadLetter, plan_redrive
from service.service_layer.ports import SettingsKey

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


def test_a_redrive_marks_each_record_with_where_its_dead_letter_was_read() -> None:
    """The mark makes a rejected settings event be judged again, once per dead letter: an
    earlier redrive's mark is replaced, the original headers are kept, no dlq_* header goes."""
    once = dead(7, "settings-updated", 2, b"{}", (messages.REDRIVE, b"dlq/0/1"))

    headers = once.redrive_headers

    assert headers == (("ce_id", b"e1"), (messages.REDRIVE, b"dlq/0/7"))


async def test_the_in_memory_store_reads_rejections_through_once() -> None:
    """A dry-run replay sees the rejections PostgreSQL remembers, as the live service would."""
    known = {("c1", "s-1", "")}
    asked: list[list[SettingsKey]] = []

    async def rejections(keys: Sequence[SettingsKey]) -> set[SettingsKey]:
        wanted = list(keys)
        asked.append(wanted)
        return {k for k in wanted if k in known}

    db = MemoryDatabase(rejections=rejections)
    keys = [("c1", "s-1", ""), ("c1", "s-2", "")]
    for _ in range(2):
        async with db.unit_of_work() as uow:
            assert await uow.store.rejected_settings(keys) == {("c1", "s-1", "")}
            await uow.commit()
    assert asked == [keys]
