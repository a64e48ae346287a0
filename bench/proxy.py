"""`python -m bench.proxy [--quick] [--markdown] [--rounds=N] [--seconds=S] [--proxies=LIST]`:
veil-proxy against pgbouncer and direct connections, all three in one run on the same PostgreSQL
(127.0.0.1:5432).

1. Point queries: `pgbench -f` with a 1-row, 5-column SELECT (one column masked), 8 clients
   (`-c 8 -j 2`, simple protocol, connections kept), through veil-proxy, through pgbouncer
   (Debian's, transaction pooling: a C proxy that masks nothing) and direct, interleaved round by
   round. Transactions/s (median of the rounds) and p99 latency (every transaction of every
   round, from `pgbench -l`). Goal: veil-proxy >= 0.6x pgbouncer.
2. Bulk: a 100k-row, 8-column SELECT with 3 columns masked, read by `psql` to /dev/null, through
   veil-proxy vs direct (median of interleaved rounds; psql's start-up is in both). Goal: >= 0.4x
   direct rows/s.
3. Memory: the proxy process's peak RSS (VmHWM) after streaming 100k rows, and in a fresh proxy
   after 1M rows (the same table read ten times by a CROSS JOIN), read by psycopg as they arrive.
   Constant memory means both peaks are about the same.

With point queries, the CPU time the proxy and pgbouncer processes used (/proc/PID/stat) per
transaction they relayed: on a machine others load, tx/s moves with whoever else runs, CPU per
transaction much less, and pgbouncer's over the proxy's is the point ratio each would reach with
a core of its own.

veil-proxy runs as people run it (`veil-proxy run --config FILE`, its own process, the real data
path); the report says which event loop it ran on, as its start-up log line says.
`--proxies=auto,asyncio:pure-python` measures several proxies in the same run, interleaved with
the others: each is an `event_loop` (`auto`, `uvloop`, `asyncio`), with `:pure-python` for the
row rewrite's pure-Python loop (`VEIL_PROXY_PURE_PYTHON=1`) instead of the compiled one. The first
is the one the goals are judged on; memory is measured for it only. Veil is a stand-in in a
process of its own, as in bench/datapath.py: it answers logins (any login, any token), the guard
setting, and decisions (mask the columns the demo masks, `ttl_s` 10), so what is measured is the
proxy, not Veil's HTTP API.
"""

from __future__ import annotations

import contextlib
import glob
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.string import TextLoader

from bench import datapath
from bench.timing import fmt_rate, table
from tests.datapath.pgbouncer import running_pgbouncer

SOURCE_DB = "veil_bench_proxy"
DIRECT = f"host=127.0.0.1 port=5432 user=postgres dbname={SOURCE_DB} sslmode=disable"
PGBENCH = shutil.which("pgbench", path="/usr/lib/postgresql/15/bin") or "pgbench"
PERSON, TOKEN = "alice@example.com", "veil_benchalice0001_notasecret"  # the stand-in takes any
POINT = "SELECT id, email, name, city, created_at FROM people WHERE id = 1;\n"  # email masked
BULK = "SELECT id, email, ssn, salary, city, created_at, score, note FROM bulk"  # email, ssn, salary masked
BULK_TIMES_10 = (
    "SELECT b.id, b.email, b.ssn, b.salary, b.city, b.created_at, b.score, b.note"
    " FROM bulk b CROSS JOIN generate_series(1, 10) AS copies(n)"
)
CLIENTS = 8


class _Veil(datapath._Decisions):
    """bench/datapath.py's stand-in for Veil, which also lets anyone log in through the proxy."""

    def do_POST(self) -> None:
        if not self.path.endswith("/query-logins"):
            super().do_POST()
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(200, {"valid": True, "principal": {"user": body["login"]}, "ttl_s": 60})


def _serve(port: multiprocessing.connection.Connection) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Veil)
    port.send(server.server_port)
    server.serve_forever()


@contextlib.contextmanager
def _standin_veil() -> Iterator[str]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ours.recv()}"
    finally:
        process.terminate()
        process.join()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    runs_on: str = ""
    """What its start-up log line says it runs on ("event loop: uvloop 0.23.0, row rewrite: compiled")."""

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


@dataclass(frozen=True)
class Variant:
    """How a measured proxy is started: its event loop (``veil-proxy run --event-loop``) and
    whether its row rewrite runs the pure-Python loop (``VEIL_PROXY_PURE_PYTHON=1``)."""

    event_loop: str = "auto"
    pure_python: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``auto``, ``asyncio:pure-python``..."""
        event_loop, _, rows = text.partition(":")
        if rows not in ("", "pure-python"):
            raise SystemExit(f"--proxies: {text!r}: after ':' only 'pure-python'")
        return cls(event_loop=event_loop, pure_python=rows == "pure-python")


@contextlib.contextmanager
def _veil_proxy(veil_url: str, folder: Path, variant: Variant = Variant()) -> Iterator[Proxy]:
    """`veil-proxy run` in its own process, in front of SOURCE_DB (instance `bench`)."""
    port = _free_port()
    config = folder / f"proxy-{port}.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n[veil]\nurl = "{veil_url}"\ntoken = "veil_benchproxy01_x"\n'
        f'[instances.bench]\nhost = "127.0.0.1"\nport = 5432\ndatabases = ["{SOURCE_DB}"]\n'
        'user = "postgres"\nsslmode = "disable"\n'
    )
    log = folder / f"proxy-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "veil_sdk.proxy.cli", "run", "--config", str(config)),
                *("--event-loop", variant.event_loop),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "VEIL_PROXY_PURE_PYTHON": "1" if variant.pure_python else ""},
        )
    proxy = Proxy(process, port, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            started = re.search(r"listening on \S+ \((.*)\)$", log.read_text(errors="replace"), re.M)
            if started:
                proxy.runs_on = started.group(1)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"veil-proxy did not start:\n{proxy.log_tail()}")
            time.sleep(0.1)
        yield proxy
    finally:
        process.terminate()
        process.wait(timeout=15)


def _proxy_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user={PERSON} password={TOKEN} dbname={SOURCE_DB} sslmode=disable"


def _probe(port: int) -> str | None:
    """None when the proxy answers the point query with email masked; else what went wrong."""
    done = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "|", "-c", POINT, _proxy_dsn(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return f"psql through veil-proxy: {done.stderr.strip()}"
    fields = done.stdout.strip().split("|")
    if len(fields) != 5 or fields[0] != "1" or fields[1] == "ann@example.net":
        return f"unexpected point row through veil-proxy: {done.stdout.strip()!r}"
    return None


def _pgbench(dsn: dict[str, str], script: Path, seconds: int, logs: Path) -> tuple[float, list[int]]:
    """Transactions/s and every transaction's latency (µs)."""
    logs.mkdir(parents=True, exist_ok=True)
    prefix = logs / "tx"
    env = {**os.environ, "PGPASSWORD": dsn.get("password", ""), "PGSSLMODE": "disable"}
    done = subprocess.run(
        [
            PGBENCH,
            "-n",
            "-f",
            str(script),
            "-c",
            str(CLIENTS),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-l",
            "--log-prefix",
            str(prefix),
            "-h",
            dsn["host"],
            "-p",
            dsn["port"],
            "-U",
            dsn["user"],
            dsn["dbname"],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 120,
    )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip() or done.stdout.strip()}")
    latencies = []
    for name in glob.glob(f"{prefix}*"):
        with open(name) as f:
            latencies += [int(line.split()[2]) for line in f]
        os.unlink(name)
    return float(match.group(1)), latencies


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time the process (all its threads) has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listening_pid(port: int) -> int:
    """The process listening on 127.0.0.1:port (pgbouncer runs as another user, behind runuser)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state, inode = line.split()[1], line.split()[3], line.split()[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:  # 0A: LISTEN
            inodes.add(f"socket:[{inode}]")
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                return int(fd.split("/")[2])
    raise RuntimeError(f"no process listens on port {port}")


def _p99(latencies: list[int]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] / 1e6


def _psql_seconds(dsn: str, query: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-o", "/dev/null", "-c", query, dsn], check=True, timeout=600
    )
    return time.perf_counter() - started


def _bulk_check(dsn: str, rows: int) -> None:
    """Before timing: psql gets every row, with the three masked columns masked."""
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", "|", "-c", BULK, dsn],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    lines = done.stdout.splitlines()
    first = dict(zip(["id", "email", "ssn", "salary"], lines[0].split("|")[:4], strict=True))
    if len(lines) != rows or first["email"].endswith("@example.net") or first["ssn"].isdigit():
        raise RuntimeError(f"veil-proxy returned {len(lines)} rows, first {lines[0]!r}")


def _stream(dsn: str, query: str) -> int:
    """Read a result row by row as it arrives (psycopg's single-row mode), every column as text: a
    masked number comes in text format as its masked text, which psycopg's int loader refuses."""
    count = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("int4", "int8", "float8", "timestamptz"):
            conn.adapters.register_loader(name, TextLoader)
        for _ in conn.cursor().stream(query):
            count += 1
    return count


def main(argv: list[str]) -> dict[str, Any]:
    quick = "--quick" in argv
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    rounds = int(options.get("rounds", 1 if quick else 3))
    seconds = int(options.get("seconds", 3 if quick else 15))
    variants = [Variant.parse(v) for v in options.get("proxies", "auto").split(",")]
    rows = 10_000 if quick else 100_000
    results: dict[str, Any] = {
        "rows": rows,
        "rounds": rounds,
        "seconds": seconds,
        "load_before": os.getloadavg(),
    }
    datapath.create_source(rows, SOURCE_DB)
    folder = Path(tempfile.mkdtemp(prefix="veil-bench-proxy-"))
    os.chmod(folder, 0o755)  # noqa: S103 - pgbouncer (as postgres) reads nothing here, pgbench writes its logs
    script = folder / "point.sql"
    script.write_text(POINT)
    try:
        with (
            _standin_veil() as veil_url,
            running_pgbouncer({"bench": SOURCE_DB}) as bouncer_port,
            contextlib.ExitStack() as proxies_running,
        ):
            targets: dict[str, dict[str, str]] = {
                "direct": {"host": "127.0.0.1", "port": "5432", "user": "postgres", "dbname": SOURCE_DB},
                "pgbouncer": {
                    "host": "127.0.0.1",
                    "port": str(bouncer_port),
                    "user": "postgres",
                    "dbname": "bench",
                },
            }
            # The proxies measured: "veil-proxy" (the goals' figure), then "veil-proxy 2", ...
            proxies: dict[str, Proxy] = {}
            results["proxies"], results["blocked"] = {}, {}
            for number, variant in enumerate(variants, 1):
                name = "veil-proxy" if number == 1 else f"veil-proxy {number}"
                proxy = proxies[name] = proxies_running.enter_context(_veil_proxy(veil_url, folder, variant))
                results["proxies"][name] = proxy.runs_on
                blocked = _probe(proxy.port)
                if blocked is not None:
                    results["blocked"][name] = f"{blocked}\n{proxy.log_tail()}"
                    continue
                targets[name] = {
                    "host": "127.0.0.1",
                    "port": str(proxy.port),
                    "user": PERSON,
                    "password": TOKEN,
                    "dbname": SOURCE_DB,
                }
            # 1. Point queries, the targets interleaved round by round.
            tps: dict[str, list[float]] = {name: [] for name in targets}
            latencies: dict[str, list[int]] = {name: [] for name in targets}
            pids = {name: proxy.process.pid for name, proxy in proxies.items()}
            pids["pgbouncer"] = _listening_pid(bouncer_port)
            cpu: dict[str, list[float]] = {name: [0.0, 0] for name in pids}  # seconds, transactions
            for r in range(rounds):
                for name, dsn in list(targets.items()):
                    used = _cpu_seconds(pids[name]) if name in pids else 0.0
                    try:
                        rate, times = _pgbench(dsn, script, seconds, folder / f"{name}-{r}")
                    except RuntimeError as exc:
                        if name not in proxies:
                            raise
                        results["blocked"][name] = f"{exc}\n{proxies[name].log_tail()}"
                        del targets[name]
                        continue
                    tps[name].append(rate)
                    latencies[name] += times
                    if name in pids:
                        cpu[name][0] += _cpu_seconds(pids[name]) - used
                        cpu[name][1] += len(times)
            results["cpu_per_tx"] = {name: used / max(count, 1) for name, (used, count) in cpu.items()}
            results["point"] = {
                name: (statistics.median(tps[name]), _p99(latencies[name]), tps[name]) for name in targets
            }
            # 2. Bulk rows through psql, every proxy interleaved with direct connections.
            through = {name: _proxy_dsn(proxies[name].port) for name in targets if name in proxies}
            for dsn in through.values():
                _bulk_check(dsn, rows)
            bulk: dict[str, list[float]] = {"direct": [], **{name: [] for name in through}}
            for _ in range(max(rounds, 3 if quick else 5)):
                bulk["direct"].append(_psql_seconds(DIRECT, BULK))
                for name, dsn in through.items():
                    bulk[name].append(_psql_seconds(dsn, BULK))
            results["bulk"] = {name: statistics.median(times) for name, times in bulk.items()}
        # 3. Memory: a fresh proxy per result size, peak RSS before and after streaming it.
        if "veil-proxy" in results["bulk"]:
            memory = {}
            for label, query, count in (
                (f"{rows:,}", BULK, rows),
                (f"{10 * rows:,}", BULK_TIMES_10, 10 * rows),
            ):
                with _standin_veil() as veil_url, _veil_proxy(veil_url, folder, variants[0]) as fresh:
                    _stream(_proxy_dsn(fresh.port), POINT)  # logged in, the data path imported and warm
                    before = fresh.peak_rss_kib()
                    streamed = _stream(_proxy_dsn(fresh.port), query)
                    if streamed != count:
                        raise RuntimeError(f"streamed {streamed} rows of {count}")
                    memory[label] = (before, fresh.peak_rss_kib())
            results["memory"] = memory
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    return results


def report(results: dict[str, Any], *, markdown: bool = False) -> str:
    point, bulk, rows = results["point"], results["bulk"], results["rows"]
    bouncer, direct = point["pgbouncer"], point["direct"]
    lines = []
    for name, runs_on in results["proxies"].items():
        proxy, through = point.get(name), bulk.get(name)
        label = f"{name} ({runs_on})"
        lines.append(
            [
                f"point query, {CLIENTS} clients (tx/s, p99): {label}",
                f"{fmt_rate(proxy[0])}/s, {proxy[1] * 1e3:.2f} ms" if proxy else "blocked",
                f"{fmt_rate(bouncer[0])}/s, {bouncer[1] * 1e3:.2f} ms",
                f"{fmt_rate(direct[0])}/s, {direct[1] * 1e3:.2f} ms",
                f"{proxy[0] / bouncer[0]:.2f}x pgbouncer" if proxy else "-",
                ">= 0.6x pgbouncer",
                ("met" if proxy[0] / bouncer[0] >= 0.6 else "MISSED") if proxy else "not measured",
            ]
        )
        lines.append(
            [
                f"bulk, psql, {rows:,} rows x 8 cols, 3 masked (rows/s): {label}",
                f"{fmt_rate(rows / through)}/s" if through else "blocked",
                "",
                f"{fmt_rate(rows / bulk['direct'])}/s",
                f"{bulk['direct'] / through:.2f}x direct" if through else "-",
                ">= 0.4x direct",
                ("met" if bulk["direct"] / through >= 0.4 else "MISSED") if through else "not measured",
            ]
        )
    for label, (before, after) in results.get("memory", {}).items():
        lines.append(
            [
                f"proxy peak RSS streaming {label} rows",
                f"{before / 1024:.0f} -> {after / 1024:.0f} MiB",
                "",
                "",
                "",
                "",
                "",
            ]
        )
    text = table(
        ["figure", "veil-proxy", "pgbouncer", "direct", "ratio", "goal", ""], lines, markdown=markdown
    )
    rounds = ", ".join(
        f"{name} " + "/".join(f"{t:.0f}" for t in figures[2]) for name, figures in results["point"].items()
    )
    text += f"\npoint tx/s per round ({results['rounds']} x {results['seconds']} s): {rounds}"
    cpu = dict(results["cpu_per_tx"])
    bouncer_cpu = cpu.pop("pgbouncer")
    text += f"\nCPU per point transaction: pgbouncer {bouncer_cpu * 1e6:.0f} µs; " + ", ".join(
        f"{name} {used * 1e6:.0f} µs ({bouncer_cpu / used:.2f}x pgbouncer with a core each)"
        for name, used in cpu.items()
        if used
    )
    for name, why in results["blocked"].items():
        text += f"\n{name} blocked: {why}"
    return text


if __name__ == "__main__":
    outcome = main(sys.argv[1:])
    print(report(outcome, markdown="--markdown" in sys.argv))
    before = " ".join(f"{x:.2f}" for x in outcome["load_before"])
    after = " ".join(f"{x:.2f}" for x in outcome["load_after"])
    print(f"load average before: {before}; after: {after}; {time.strftime('%Y-%m-%d %H:%M')}")
