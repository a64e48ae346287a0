"""What counting costs one decision request: `python -m bench.metrics_cost`.

Times `shared.metrics.count_decision_request` for a 20-column answer (four distinct action and
reason pairs, as a mixed query gives) plus one unmask record, in a single process and in
prometheus-client's multiprocess mode (each value a write to an mmapped file, as under gunicorn),
and puts it beside what the request itself costs (docs/operations.md: about 0.7 ms of CPU when
nothing is unmasked). No Django, no database: the counting alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

PAIRS = [("unmask", "grant")] * 5 + [("mask", "rule")] * 10 + [("mask", "unknown_column")] * 3
PAIRS += [("unmask", "not_sensitive")] * 2
REQUEST_CPU_S = 0.0007


def measure(n: int = 100_000) -> float:
    from shared.metrics import count_decision_request, count_unmask_record

    for _ in range(1000):  # bind the labelled children, warm the caches
        count_decision_request(iter(PAIRS), 0.0007, fail_closed=False)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            count_decision_request(iter(PAIRS), 0.0007, fail_closed=False)
            count_unmask_record(written=True)
        best = min(best, (time.perf_counter() - started) / n)
    return best


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        print(measure())
        return
    rows = []
    for mode in ("single process", "multiprocess (gunicorn)"):
        env = {**os.environ}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory() as directory:
            if mode.startswith("multi"):
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, "-m", "bench.metrics_cost", "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        seconds = float(out)
        rows.append((mode, seconds))
    for mode, seconds in rows:
        print(f"{mode:26} {seconds * 1e6:6.2f} us per request = {seconds / REQUEST_CPU_S:6.2%} of 0.7 ms")


if __name__ == "__main__":
    main()
