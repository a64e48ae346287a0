"""`python -m bench [engine] [http] [options]`: run the benches, print a summary.

Options: `--quick`, `--no-db`, `--markdown`, `--wait-quiet`, `--rounds=N`, `--goal-only`.
With no bench named, runs both: the engine bench (in process, then load_grants against
PostgreSQL), then the HTTP bench (gunicorn + wrk on loopback) and the per-request breakdown.
`--quick` shortens every run (for trying the bench, not for figures); `--no-db` skips
everything that needs PostgreSQL; `--markdown` prints the summary as a Markdown table;
`--wait-quiet` first waits (up to 15 minutes) for the 1-minute load average to drop below 0.5,
since on a 2-core machine other processes move the figures a lot. HTTP only: `--rounds=N`
repeats the concurrency-8 runs N times, interleaved (their spread); `--goal-only` runs only what
the HTTP goals are read from (sync workers at concurrency 8, no breakdown).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from bench.timing import fmt_rate, table


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model
            )
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.platform()}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def summary(results: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    engines = results.get("engines")
    if engines:
        veil, fastest, dict_row = engines["veil"], engines["fastest"], engines["dict"]
        rows.append(
            [
                "engine: Veil vs fastest peer",
                f"{fmt_rate(veil.rate)} col/s",
                f"{fastest.engine.name}: {fmt_rate(fastest.rate)} col/s",
                f"{engines['ratio_peer']:.1f}x",
                ">= 15x",
                verdict(engines["ratio_peer"] >= 15),
            ]
        )
        rows.append(
            [
                "engine: Veil vs dict lookup",
                f"{fmt_rate(veil.rate)} col/s",
                f"dict: {fmt_rate(dict_row.rate)} col/s",
                f"{engines['ratio_dict']:.2f}x",
                ">= 0.4x",
                verdict(engines["ratio_dict"] >= 0.4),
            ]
        )
    scaling = results.get("scaling")
    if scaling:
        small, large = scaling["sizes"]
        for label, r in scaling["ratios"].items():
            t_small = scaling["timings"][f"{label}/{small}"].median
            t_large = scaling["timings"][f"{label}/{large}"].median
            rows.append(
                [
                    f"grants 2k -> 200k: decide, {label}",
                    f"{t_large * 1e6:.1f} µs/request",
                    f"{t_small * 1e6:.1f} µs/request",
                    f"{r:.2f}x",
                    "<= 1.5x",
                    verdict(r <= 1.5),
                ]
            )
    db = results.get("grants_db")
    if db:
        by = db["by_total"]
        rows.append(
            [
                "grants 2k -> 200k: load_grants (PostgreSQL)",
                f"{by[200_000]['median'] * 1e6:.0f} µs",
                f"{by[2000]['median'] * 1e6:.0f} µs",
                f"{db['ratio']:.2f}x",
                "<= 1.5x",
                verdict(db["ratio"] <= 1.5),
            ]
        )
    http = results.get("http")
    if http:
        best = http["best"]
        v = http["verdicts"][best]
        n = len(v["rounds"])
        spread = f" (median of {n} rounds)" if n > 1 else ""

        def low_high(key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
            values = [r[key] * scale for r in v["rounds"]]
            return f"({fmt.format(min(values))} to {fmt.format(max(values))})" if n > 1 else ""

        rows.append(
            [
                f"HTTP c=8 ({best}): the mix vs bare-commit{spread}",
                f"{v['rps']:.0f} req/s",
                f"bare-commit: {v['commit_rps']:.0f} req/s",
                f"{v['commit_ratio']:.2f}x " + low_high("commit_ratio"),
                ">= 0.9x",
                verdict(v["commit_ratio"] >= 0.9),
            ]
        )
        rows.append(
            [
                f"HTTP c=8 ({best}): the mix p99",
                f"{v['p99'] * 1000:.1f} ms " + low_high("p99", 1000, "{:.1f}"),
                f"bare-commit: {v['commit_p99'] * 1000:.1f} ms",
                "",
                "< 10 ms",
                verdict(v["p99"] < 0.010),
            ]
        )
        rows.append(
            [
                f"HTTP c=8 ({best}): hank's query (nothing to record) vs bare",
                f"{v['no_record_rps']:.0f} req/s",
                f"bare: {v['bare_rps']:.0f} req/s",
                f"{v['no_record_ratio']:.2f}x " + low_high("no_record_ratio"),
                ">= 0.7x",
                verdict(v["no_record_ratio"] >= 0.7),
            ]
        )
        rows.append(
            [
                f"HTTP c=8 ({best}): hank's query p99",
                f"{v['no_record_p99'] * 1000:.1f} ms " + low_high("no_record_p99", 1000, "{:.1f}"),
                f"bare: {v['bare_p99'] * 1000:.1f} ms",
                "",
                "< 10 ms",
                verdict(v["no_record_p99"] < 0.010),
            ]
        )
        rows.append(
            [
                f"HTTP c=8 ({best}): the mix vs bare",
                f"{v['rps']:.0f} req/s",
                f"bare: {v['bare_rps']:.0f} req/s",
                f"{v['ratio']:.2f}x",
                "(reference)",
                "",
            ]
        )
        cpu = v["cpu_us"]
        rows.append(
            [
                f"HTTP c=8 ({best}): machine CPU per request, the mix",
                f"{cpu['veil']:.0f} µs",
                f"bare-commit: {cpu['commit']:.0f} µs",
                f"{cpu['commit'] / cpu['veil']:.2f}x",
                "(ceiling when CPU-bound)",
                "",
            ]
        )
        slowest = max((*http["propagation"]["grant"], *http["propagation"]["revoke"]), default=0.0)
        rows.append(
            [
                "propagation to every worker (slowest)",
                f"{slowest * 1000:.0f} ms",
                "",
                "",
                "<= 1 s",
                verdict(slowest <= 1.0),
            ]
        )
    return rows


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or ["engine", "http"]
    unknown = set(names) - {"engine", "http"}
    if unknown:
        print(__doc__)
        return 2
    print(f"machine: {machine()}")
    if "--wait-quiet" in argv:
        deadline = time.monotonic() + 900
        while os.getloadavg()[0] >= 0.5 and time.monotonic() < deadline:
            time.sleep(15)
    print(f"load average at start: {load()}")
    if os.getloadavg()[0] > 0.5:
        print("  (other processes are busy on this machine: expect noisier figures)")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    world = None
    if "engine" in names:
        from bench import engine

        results.update(engine.main(argv))
        world = results.get("grants_db", {}).get("world")
    if "http" in names and "--no-db" not in argv:
        from bench import http

        results["http"] = http.main(argv, world=world)
    rows = summary(results)
    print(f"\n== summary ({time.perf_counter() - started:.0f}s; load average at end: {load()}) ==")
    headers = ["bench", "Veil", "baseline (same run)", "ratio", "goal", ""]
    print(table(headers, rows, markdown="--markdown" in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
