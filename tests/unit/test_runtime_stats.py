"""The `runtime` log entry: the median time to apply a batch, from a bounded sample."""

from __future__ import annotations

from service.entrypoints.runtime_stats import ApplyTimes, GcPauses, runtime_entry


def test_no_batch_has_no_median() -> None:
    assert ApplyTimes().median_ms() is None


def test_median_of_the_batches_in_ms() -> None:
    times = ApplyTimes()
    for seconds in (0.004, 0.001, 0.003):
        times.add(seconds)
    assert times.median_ms() == 3.0
    assert times.batches == 3


def test_the_sample_is_bounded_and_counts_every_batch() -> None:
    times = ApplyTimes(size=100)
    for n in range(10_000):
        times.add(n / 1000)
    assert times.batches == 10_000
    assert len(times._sample) == 100
    # a uniform sample of 0 .. 9.999 s: its median is near 5 s, not near the last batches
    median = times.median_ms()
    assert median is not None
    assert 3_000 < median < 7_000


def test_reset_forgets() -> None:
    times = ApplyTimes()
    times.add(0.5)
    times.reset()
    assert times.median_ms() is None
    assert times.batches == 0


def test_runtime_entry_carries_the_median() -> None:
    times = ApplyTimes()
    times.add(0.0025)
    entry = runtime_entry(GcPauses(), times, 1000)
    assert entry["median_batch_apply_ms"] == 2.5
    assert entry["batches_applied"] == 1
    assert entry["longest_gc_pause_ms"] == 0.0
    assert entry["rss_kb_at_start"] == 1000
    assert entry["max_rss_kb"] > 0
    assert runtime_entry(GcPauses(), ApplyTimes(), None)["median_batch_apply_ms"] is None
