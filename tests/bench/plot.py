"""The latency distribution as a PNG: a percentile plot (HdrHistogram style) and a histogram."""

from __future__ import annotations

import math
from pathlib import Path


def latency_png(latencies_ms: list[float], rate: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    ordered = sorted(latencies_ms)
    n = len(ordered)
    # x: 1 / (1 - percentile), on a log scale, so that the tail is as wide as the median.
    xs = [1 / (1 - (i + 0.5) / n) for i in range(n)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(xs, ordered, linewidth=1.5)
    left.set_xscale("log")
    ticks = [p for p in (0.5, 0.9, 0.99, 0.999, 0.9999) if 1 / (1 - p) <= xs[-1] * 1.01]
    left.set_xticks([1 / (1 - p) for p in ticks])
    left.set_xticklabels([f"p{p * 100:g}" for p in ticks])
    left.set_ylabel("ms, balance event to acknowledged invoice")
    left.set_title(f"latency by percentile ({n} samples at {rate:,.0f} events/s)")
    left.grid(True, which="both", alpha=0.3)
    bins = max(10, int(math.sqrt(n)))
    right.hist(ordered, bins=bins)
    right.set_xlabel("ms")
    right.set_ylabel("events")
    right.set_title("histogram")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
