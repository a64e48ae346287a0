"""Timing and table helpers shared by the benches."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median of `repeats` runs of `iterations` calls each (after warm-up)."""

    median: float
    low: float
    high: float
    iterations: int
    repeats: int
    samples: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median over the repeats."""
        return (self.high - self.low) / self.median if self.median else 0.0


def _warm_up(fn: Callable[[], Any], warmup_s: float) -> None:
    """Call `fn` for `warmup_s` (at least 3 times), so caches, memo tables and lazy imports are
    filled before anything is timed."""
    deadline = time.perf_counter() + warmup_s
    calls = 0
    while time.perf_counter() < deadline or calls < 3:
        fn()
        calls += 1


def measure(
    fn: Callable[[], Any], *, target_s: float = 0.3, repeats: int = 5, warmup_s: float = 0.2
) -> Timing:
    """Warm up for `warmup_s`, size a run to about `target_s`, then time `repeats` runs with
    time.perf_counter and report the median per call. The GC stays on (it is part of the cost)
    but is run before every repeat so a collection owed by setup is not billed to the engine."""
    _warm_up(fn, warmup_s)
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    iterations = max(1, int(target_s / one))
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(iterations):
            fn()
        samples.append((time.perf_counter() - t0) / iterations)
    return Timing(statistics.median(samples), min(samples), max(samples), iterations, repeats, tuple(samples))


def measure_many(
    fns: dict[str, Callable[[], Any]], *, target_s: float = 0.25, rounds: int = 7, warmup_s: float = 0.15
) -> dict[str, Timing]:
    """Like `measure`, but interleaved: every round times each function once, so drift and noise
    from other processes on the machine hit all of them alike. Ratios are best taken per round
    (see `ratio`)."""
    iterations: dict[str, int] = {}
    for name, fn in fns.items():
        _warm_up(fn, warmup_s)
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        iterations[name] = max(1, int(target_s / max((time.perf_counter() - t0) / 10, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = iterations[name]
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {
        name: Timing(statistics.median(s), min(s), max(s), iterations[name], rounds, tuple(s))
        for name, s in samples.items()
    }


def ratio(slow: Timing, fast: Timing) -> float:
    """Median over rounds of slow/fast per-call time (both from the same `measure_many`)."""
    if len(slow.samples) == len(fast.samples) and slow.samples:
        return statistics.median(s / f for s, f in zip(slow.samples, fast.samples, strict=True))
    return slow.median / fast.median


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if markdown:
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += [
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]
        ]
        return "\n".join(lines)
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(lines)
