"""HTTP bench: POST /api/v1/decisions under wrk on loopback, against bare WSGI endpoints.

gunicorn (2 workers; sync, then gthread) serves bench.wsgi: `/bare` is a plain WSGI function
returning a precomputed JSON body the size of a real 20-column decision response; `/bare-commit`
is the same function committing, for each request whose principal Veil unmasks something for, the
row Veil recorded for it, through Veil's own record writer (what invariant 4 physically demands:
one prepared INSERT and its COMMIT before the answer); everything else is Veil's Django app on
PostgreSQL (the bench database, see bench.db) with DEBUG=0. wrk drives each endpoint for a bounded
time at concurrency 1, 8 and 32, rotating over four principals' 20-column queries (alice, bob and
carol have grants or exemptions unmasking 4 or 5 of the columns, so their requests write a
DecisionRecord; hank's unmasks nothing sensitive). Reported: requests/s, p50 and p99 latency, the
mix against the committing baseline, hank's query (nothing to record) against the bare endpoint,
and CPU per request. `--rounds=N` repeats the concurrency-8 runs N times, interleaved, to show
their spread; `--goal-only` runs only what the goals are read from (sync workers, concurrency 8,
no breakdown). Everything the bench starts, it stops.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import BENCH_DATABASE_URL, ROOT, SERVER_ENV, django_setup
from bench.policy_fixture import Fixture, build
from bench.timing import fmt_rate, table

CONCURRENCY = (1, 8, 32)
WORKERS = ("sync", "gthread")
THREADS = 4
GOAL_COMMIT_RATIO = 0.9  # the mix against /bare-commit
GOAL_NO_RECORD_RATIO = 0.7  # hank's query (nothing to record) against /bare
GOAL_P99_S = 0.010
CPU_RUNS = ("bare", "commit", "veil", "hank")  # compared by CPU per request at concurrency 8
C8_RUNS = ("veil", "commit", "bare", "hank", "django")  # one round at concurrency 8, in this order
# With DEBUG=0 Veil's WSGI application refuses to start on missing or public secrets (config.checks);
# the server gets throwaway ones unless the environment sets its own.
SERVER_SECRETS = {name: secrets.token_urlsafe(50) for name in ("SECRET_KEY", "VEIL_SIGNING_KEY")}
# principal -> the tables of their 20-column query: [(table, first n columns)]
BODIES: list[tuple[str, list[tuple[str, int]]]] = [
    ("alice", [("customers", 11), ("orders", 9)]),
    ("bob", [("customers", 12), ("payments", 8)]),
    ("carol", [("customers", 13), ("support_notes", 5), ("orders", 2)]),
    ("hank", [("customers", 11), ("orders", 9)]),
]

LUA = """
local bodies = {%(bodies)s}
local path = "%(path)s"
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  i = i + 1
  if i > #bodies then i = 1 end
  return wrk.format(nil, path, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"connect\\": %%d, \\"read\\": %%d, " ..
    "\\"write\\": %%d, \\"status\\": %%d, \\"timeout\\": %%d, \\"p50\\": %%d, \\"p90\\": %%d, " ..
    "\\"p99\\": %%d, \\"max\\": %%d, \\"mean\\": %%f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("  wrk not found: apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for the HTTP bench (Debian: apt-get install -y wrk)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """gunicorn serving bench.wsgi, in its own session so stopping it stops its workers."""

    def __init__(self, worker_class: str, workdir: Path, bare_body: Path, commit_file: Path) -> None:
        self.port = free_port()
        self.worker_class = worker_class
        cmd = [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "bench.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "2",
            "--worker-class",
            worker_class,
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            "--keep-alive",
            "5",
        ]
        if worker_class == "gthread":
            cmd += ["--threads", str(THREADS)]
        env = {
            **SERVER_SECRETS,
            **os.environ,
            **SERVER_ENV,
            "BENCH_BARE_BODY_FILE": str(bare_body),
            "BENCH_COMMIT_FILE": str(commit_file),
        }
        self.log = (workdir / f"gunicorn-{worker_class}.log").open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"gunicorn did not start; see {self.log.name}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session this bench started
                self.proc.wait(timeout=5)
        self.log.close()


def request_body(fx: Fixture, principal: str, tables: list[tuple[str, int]]) -> dict[str, Any]:
    keys = fx.query(tables)
    assert len(keys) == 20, (principal, len(keys))
    return {
        "principal": {"user": f"{principal}@example.com"},
        "query_id": f"bench-{principal}",
        "columns": [
            {
                "instance": k.instance,
                "database": k.database,
                "schema": k.schema,
                "table": k.table,
                "column": k.column,
            }
            for k in keys
        ],
    }


def post(url: str, token: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - loopback
        return r.status, r.read()


def check_responses(fx: Fixture, server: Server, token: str) -> tuple[dict[str, bytes], dict[str, int]]:
    """Each body's answers must match the in-process engine on the same policy; returns each
    principal's response body and how many columns each gets unmasked by a grant or exemption."""
    from bench.engine import VeilWarm

    reference = VeilWarm(fx)
    responses = {}
    unmasked = {}
    for principal, tables in BODIES:
        body = request_body(fx, principal, tables)
        status, raw = post(f"{server.url}/api/v1/decisions", token, body)
        if status != 200:
            raise SystemExit(f"decision request for {principal} answered {status}: {raw[:300]!r}")
        got = [(d["action"], d["semantic_type"], d["reason"]["kind"]) for d in json.loads(raw)["decisions"]]
        expected = [a[:3] for a in reference.answers(principal, fx.query(tables))]
        if got != expected:
            for n, (g, e) in enumerate(zip(got, expected, strict=True)):
                if g != e:
                    print(f"MISMATCH over HTTP for {principal}, column {n}: server {g}, engine {e}")
            raise SystemExit("the server's answers differ from the in-process engine's")
        unmasked[principal] = sum(1 for a in got if a[0] == "unmask" and a[2] in ("grant", "exemption"))
        responses[principal] = raw
    return responses, unmasked


def commit_entries(
    bodies: Sequence[dict[str, Any]], responses: dict[str, bytes], unmasked: dict[str, int], after: int
) -> list[dict[str, Any]]:
    """What `/bare-commit` answers each body with: Veil's response to it and, for a principal Veil
    recorded unmasks for, the arguments of `record_unmask_decisions` read back from the row Veil
    wrote after record id `after` (so the baseline's row has the same shape, JSON included). The
    body is the exact text wrk sends."""
    from audit.chain import DECISION_RECORD_FIELDS
    from audit.models import DecisionRecord

    entries = []
    for (principal, _), body in zip(BODIES, bodies, strict=True):
        rows = DecisionRecord.objects.filter(query_id=body["query_id"], id__gt=after)
        row = rows.order_by("-id").first()
        if (row is not None) != bool(unmasked[principal]):
            raise SystemExit(f"{principal}: Veil's record does not match its unmask answers")
        record = None
        if row is not None:
            record = {f: getattr(row, f) for f in DECISION_RECORD_FIELDS if f not in ("id", "recorded_at")}
        entries.append(
            {"body": json.dumps(body), "response": responses[principal].decode(), "record": record}
        )
    return entries


class CpuMeter:
    """CPU time spent during a run, per request: the whole machine (from /proc/stat), gunicorn's
    workers, PostgreSQL's processes and wrk (this process's waited-for children). The HTTP runs
    are CPU-bound on two cores, so the bare endpoint's CPU per request over Veil's is the ratio
    the machine allows, whatever else is tuned."""

    TICK_S = 1 / os.sysconf("SC_CLK_TCK")

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.database = urlsplit(BENCH_DATABASE_URL).path.lstrip("/")

    def _ours(self, entry: Path) -> bool:
        """PostgreSQL's shared processes (WAL writer, checkpointer, autovacuum) and the bench
        database's backends; not other people's sessions on other databases of the same server."""
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            return False
        client = len(title) >= 5 and ("(" in title[4] or title[4] == "[local]")
        return not client or title[3] == self.database

    def _read(self) -> dict[str, Any]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        busy = sum(fields[:7]) - idle  # user, nice, system, irq, softirq (not the hypervisor's steal)
        sample: dict[str, Any] = {"machine": busy * self.TICK_S, "idle": idle * self.TICK_S}
        sample["gunicorn"], sample["postgres"] = {}, {}  # pid -> CPU seconds so far
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # the process ended
                continue
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            seconds = (int(rest[11]) + int(rest[12])) * self.TICK_S  # utime + stime
            if int(rest[1]) == self.server_pid:  # ppid: gunicorn's workers
                sample["gunicorn"][entry.name] = seconds
            elif comm == "postgres" and self._ours(entry):
                sample["postgres"][entry.name] = seconds
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        sample["wrk"] = children.ru_utime + children.ru_stime
        return sample

    def start(self) -> None:
        self.before = self._read()

    def per_request(self, requests: int) -> dict[str, float]:
        """µs per request for each part, and the share of the machine left idle. A process that
        ended during the run (an autovacuum worker, say) is not counted, so the parts may fall a
        little short of the machine's figure."""
        after, before = self._read(), self.before
        spent = {k: after[k] - before[k] for k in ("machine", "idle", "wrk")}
        for group in ("gunicorn", "postgres"):
            spent[group] = sum(t - before[group].get(pid, 0.0) for pid, t in after[group].items())
        out = {k: v / requests * 1e6 for k, v in spent.items() if k != "idle"}
        out["others"] = out["machine"] - out["gunicorn"] - out["postgres"] - out["wrk"]
        out["idle_share"] = spent["idle"] / (spent["idle"] + spent["machine"])
        out["load"] = os.getloadavg()[0]
        return out


def run_wrk(
    wrk: str, script: Path, url: str, concurrency: int, seconds: int, meter: CpuMeter | None = None
) -> dict[str, Any]:
    threads = min(concurrency, 2)
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    if meter is not None:
        meter.start()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    r = json.loads(line[len("WRKJSON ") :])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    if meter is not None:
        r["cpu"] = meter.per_request(r["requests"])
    return r


def run_line(r: dict[str, Any]) -> str:
    cpu = r["cpu"]
    return (
        f"{r['rps']:8.0f} req/s  p50 {r['p50'] / 1000:6.2f} ms  p99 {r['p99'] / 1000:6.2f} ms  "
        f"errors {r['errors']}  CPU/request {cpu['machine']:5.0f} µs (gunicorn {cpu['gunicorn']:.0f}, "
        f"PostgreSQL {cpu['postgres']:.0f}, wrk {cpu['wrk']:.0f}, other processes {cpu['others']:.0f}), "
        f"idle {cpu['idle_share']:.0%}, load {cpu['load']:.2f}"
    )


def lua_script(workdir: Path, name: str, path: str, bodies: Sequence[dict[str, Any]], token: str) -> Path:
    quoted = ", ".join(f"[==[{json.dumps(b)}]==]" for b in bodies)
    script = workdir / f"{name}.lua"
    text = LUA % {"bodies": quoted, "path": path, "token": token}
    if not bodies:  # a GET
        text = text.replace('wrk.method = "POST"', 'wrk.method = "GET"').replace("bodies[i])", "nil)")
        text = text.replace("if i > #bodies then i = 1 end", "")
    script.write_text(text)
    return script


def last_record_id() -> int:
    from audit.models import DecisionRecord

    return DecisionRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0


def decision_records() -> int:
    from audit.models import DecisionRecord

    return DecisionRecord.objects.count()


def run(
    world: Any,
    fx: Fixture,
    *,
    seconds: int = 10,
    workers: Sequence[str] = WORKERS,
    concurrency: Sequence[int] = CONCURRENCY,
    rounds: int = 1,
) -> dict[str, Any]:
    """Every (workers, concurrency, endpoint) run, as a list of wrk results: one per round at
    concurrency 8 (the rounds interleave the endpoints, so each round's ratios are taken minutes
    apart at most), one elsewhere."""
    wrk = ensure_wrk()
    results: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        workdir = Path(tmp)
        bare_file, commit_file = workdir / "bare.json", workdir / "commit.json"
        bodies = [request_body(fx, p, t) for p, t in BODIES]
        scripts = {
            "veil": lua_script(workdir, "veil", "/api/v1/decisions", bodies, world.token),
            "commit": lua_script(workdir, "commit", "/bare-commit", bodies, world.token),
            "bare": lua_script(workdir, "bare", "/bare", bodies, world.token),
            "django": lua_script(workdir, "django", "/healthz", [], world.token),
            "hank": lua_script(workdir, "hank", "/api/v1/decisions", bodies[-1:], world.token),
        }
        unmasked: dict[str, int] = {}
        records = {}
        propagation: dict[str, list[float]] = {}
        for worker_class in workers:
            server = Server(worker_class, workdir, bare_file, commit_file)
            meter = CpuMeter(server.proc.pid)
            try:
                last_record = last_record_id()
                responses, unmasked = check_responses(fx, server, world.token)
                # read by the workers on their first /bare and /bare-commit requests
                bare_file.write_bytes(responses[BODIES[0][0]])
                commit_file.write_text(json.dumps(commit_entries(bodies, responses, unmasked, last_record)))
                if worker_class == workers[0]:
                    print(
                        f"  answers over HTTP match the engine; response {bare_file.stat().st_size} bytes; "
                        "unmasked by grant/exemption per request: "
                        + ", ".join(f"{p} {n}" for p, n in unmasked.items())
                    )
                for name in ("veil", "commit", "bare"):  # warm-up: policy snapshot, connections, first uses
                    run_wrk(wrk, scripts[name], server.url, 8, 2)
                before = decision_records()
                for c in concurrency:
                    # "commit": the bare endpoint committing Veil's record for the same requests;
                    # "django": GET /healthz through the same middleware, no DB: Django's own floor;
                    # "hank": only the query that unmasks nothing, so no DecisionRecord is written
                    for n in range(rounds if c == 8 else 1):
                        names = [x for x in C8_RUNS if x != "django" or n == 0] if c == 8 else C8_RUNS[:3]
                        for name in names:
                            r = run_wrk(wrk, scripts[name], server.url, c, seconds, meter)
                            results.setdefault((worker_class, c, name), []).append(r)
                            label = f"{name} #{n + 1}" if rounds > 1 and c == 8 else name
                            print(f"  {worker_class:7} c={c:<2} {label:9}: {run_line(r)}", flush=True)
                records[worker_class] = decision_records() - before
                if worker_class == workers[0]:
                    propagation = measure_propagation(fx, server, world.token)
            finally:
                server.stop()
    return {
        "results": results,
        "unmasked": unmasked,
        "records": records,
        "workers": list(workers),
        "concurrency": list(concurrency),
        "propagation": propagation,
    }


def measure_propagation(fx: Fixture, server: Server, token: str, trials: int = 5) -> dict[str, list[float]]:
    """Seconds from a grant committed in this process until every gunicorn worker answers with it,
    and from its revocation until none does (the issue's goal: within one second).

    Each trial grants hank one column he sees masked, polls the server until 20 answers in a row
    show the change (requests land on both workers), and records the time of the first of them."""
    from django.utils import timezone

    from audit.models import Channel
    from audit.services import SYSTEM
    from identity.models import User
    from masking.models import Database
    from masking.services.policy import exemption_revoke, grant_condition, grant_create

    hank = User.objects.get(username="hank")
    body = request_body(fx, "hank", dict(BODIES)["hank"])

    def action(column: dict[str, str]) -> str:
        status, raw = post(f"{server.url}/api/v1/decisions", token, {**body, "columns": [column]})
        assert status == 200, raw
        return str(json.loads(raw)["decisions"][0]["action"])

    column = next(c for c in body["columns"] if action(c) == "mask")
    database = Database.objects.select_related("project").get(
        instance__key=column["instance"], name=column["database"]
    )

    def seconds_until(wanted: str) -> float:
        start = time.perf_counter()
        first_seen, in_a_row = 0.0, 0
        while in_a_row < 20:
            if time.perf_counter() - start > 10:
                raise SystemExit(f"the server did not answer {wanted} within 10 s of the change")
            if action(column) == wanted:
                first_seen = first_seen or time.perf_counter() - start
                in_a_row += 1
            else:
                first_seen, in_a_row = 0.0, 0
        return first_seen

    out: dict[str, list[float]] = {"grant": [], "revoke": []}
    for _ in range(trials):
        grant = grant_create(
            project=database.project,
            principal=hank,
            condition=grant_condition(
                instance=column["instance"],
                database=column["database"],
                table=column["table"],
                columns=[column["column"]],
            ),
            expires_at=timezone.now() + timedelta(hours=1),
            reason="propagation bench",
            request_ref="",
            actor=SYSTEM,
            channel=Channel.CLI,
        )
        out["grant"].append(seconds_until("unmask"))
        exemption_revoke(exemption=grant, actor=SYSTEM, channel=Channel.CLI)
        out["revoke"].append(seconds_until("mask"))
    print(
        "  propagation to every worker (5 trials): grant "
        + ", ".join(f"{s * 1000:.0f}" for s in out["grant"])
        + " ms; revocation "
        + ", ".join(f"{s * 1000:.0f}" for s in out["revoke"])
        + " ms (goal: within 1 s)"
    )
    return out


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _ms(runs: list[dict[str, Any]], key: str) -> str:
    """The median of a latency percentile over runs, in ms."""
    return f"{_median([r[key] for r in runs]) / 1000:.2f}"


def _verdict(runs: dict[str, list[dict[str, Any]]], recording: float) -> dict[str, Any]:
    """The goals' figures at concurrency 8 for one worker class: per round (the endpoints of a round
    ran back to back) and their medians. Ratios are taken within a round, then the median."""
    rounds = []
    for n in range(len(runs["veil"])):
        veil, commit, bare, hank = (runs[name][n] for name in ("veil", "commit", "bare", "hank"))
        cpu = {name: runs[name][n]["cpu"]["machine"] for name in CPU_RUNS}
        rounds.append(
            {
                "rps": veil["rps"],
                "commit_rps": commit["rps"],
                "bare_rps": bare["rps"],
                "no_record_rps": hank["rps"],
                "p99": veil["p99"] / 1e6,
                "commit_p99": commit["p99"] / 1e6,
                "bare_p99": bare["p99"] / 1e6,
                "no_record_p99": hank["p99"] / 1e6,
                "commit_ratio": veil["rps"] / commit["rps"],
                "no_record_ratio": hank["rps"] / bare["rps"],
                "ratio": veil["rps"] / bare["rps"],
                "cpu_us": cpu,
                "cpu_per_record_us": (cpu["veil"] - cpu["hank"]) / recording,
                "idle": {name: runs[name][n]["cpu"]["idle_share"] for name in CPU_RUNS},
                "others_share": {
                    name: runs[name][n]["cpu"]["others"] / runs[name][n]["cpu"]["machine"]
                    for name in CPU_RUNS
                },
                "load": [runs[name][n]["cpu"]["load"] for name in CPU_RUNS],
                "own_us": {
                    name: sum(runs[name][n]["cpu"][k] for k in ("gunicorn", "postgres", "wrk"))
                    for name in CPU_RUNS
                },
            }
        )
    out: dict[str, Any] = {
        k: _median([r[k] for r in rounds])
        for k in rounds[0]
        if k not in ("cpu_us", "idle", "others_share", "load", "own_us")
    }
    out["cpu_us"] = {name: _median([r["cpu_us"][name] for r in rounds]) for name in CPU_RUNS}
    out["rounds"] = rounds
    floor = runs["django"][0]
    out["django_rps"], out["django_p99"] = floor["rps"], floor["p99"] / 1e6
    out["django_ratio"] = floor["rps"] / runs["bare"][0]["rps"]
    out["met"] = {
        "commit_ratio": out["commit_ratio"] >= GOAL_COMMIT_RATIO,
        "no_record_ratio": out["no_record_ratio"] >= GOAL_NO_RECORD_RATIO,
        "p99": out["p99"] < GOAL_P99_S,
        "no_record_p99": out["no_record_p99"] < GOAL_P99_S,
    }
    return out


def _spread(v: dict[str, Any], key: str, scale: float = 1.0, fmt: str = "{:.2f}x") -> str:
    """'median (min-max over N rounds)', or the one figure when there was one round."""
    values = [r[key] * scale for r in v["rounds"]]
    if len(values) == 1:
        return fmt.format(values[0])
    low, high = min(values), max(values)
    return f"{fmt.format(v[key] * scale)} ({fmt.format(low)} to {fmt.format(high)}, {len(values)} rounds)"


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    results = out["results"]
    rows = []
    verdicts = {}
    recording = sum(1 for n in out["unmasked"].values() if n) / len(out["unmasked"])
    for worker_class in out["workers"]:
        for c in out["concurrency"]:
            veil, commit, bare = (results[(worker_class, c, name)] for name in ("veil", "commit", "bare"))
            rps = {
                name: _median([r["rps"] for r in runs])
                for name, runs in (("veil", veil), ("commit", commit), ("bare", bare))
            }
            rows.append(
                [
                    worker_class,
                    c,
                    fmt_rate(rps["veil"]),
                    f"{_ms(veil, 'p50')} / {_ms(veil, 'p99')}",
                    fmt_rate(rps["commit"]),
                    _ms(commit, "p99"),
                    fmt_rate(rps["bare"]),
                    _ms(bare, "p99"),
                    f"{rps['veil'] / rps['commit']:.2f}x",
                    f"{rps['veil'] / rps['bare']:.2f}x",
                    sum(r["errors"] for r in (*veil, *commit, *bare)),
                ]
            )
            if c == 8:
                runs = {name: results[(worker_class, c, name)] for name in C8_RUNS}
                verdicts[worker_class] = _verdict(runs, recording)
    print()
    print(
        table(
            [
                "workers",
                "conc.",
                "Veil req/s",
                "Veil p50 / p99 ms",
                "commit req/s",
                "commit p99 ms",
                "bare req/s",
                "bare p99 ms",
                "Veil/commit",
                "Veil/bare",
                "errors",
            ],
            rows,
        )
    )
    for worker_class, v in verdicts.items():
        met = {k: "met" if ok else "MISSED" for k, ok in v["met"].items()}
        print(
            f"  c=8 ({worker_class}): the mix {_spread(v, 'rps', fmt='{:.0f} req/s')} vs bare-commit "
            f"{_spread(v, 'commit_rps', fmt='{:.0f} req/s')} = {_spread(v, 'commit_ratio')} "
            f"(goal >= {GOAL_COMMIT_RATIO}x: {met['commit_ratio']}), "
            f"p99 {_spread(v, 'p99', 1000, '{:.2f} ms')} (goal < 10 ms: {met['p99']})"
        )
        print(
            f"  c=8 ({worker_class}): hank's query (nothing to record) "
            f"{_spread(v, 'no_record_rps', fmt='{:.0f} req/s')} vs bare "
            f"{_spread(v, 'bare_rps', fmt='{:.0f} req/s')} = {_spread(v, 'no_record_ratio')} "
            f"(goal >= {GOAL_NO_RECORD_RATIO}x: {met['no_record_ratio']}), p99 "
            f"{_spread(v, 'no_record_p99', 1000, '{:.2f} ms')} (goal < 10 ms: {met['no_record_p99']})"
        )
        print(
            f"  c=8 ({worker_class}): the mix vs bare {_spread(v, 'ratio')} (reference); bare-commit p99 "
            f"{_spread(v, 'commit_p99', 1000, '{:.2f} ms')}; Django's floor (GET /healthz through the same "
            f"middleware) {v['django_rps']:.0f} req/s = {v['django_ratio']:.2f}x bare"
        )
        cpu = v["cpu_us"]
        print(
            f"  machine CPU per request at c=8 ({worker_class}, median): bare {cpu['bare']:.0f} µs, "
            f"bare-commit {cpu['commit']:.0f} µs, the mix {cpu['veil']:.0f} µs, hank's query "
            f"{cpu['hank']:.0f} µs. CPU-bound, the mix can reach at most {cpu['commit'] / cpu['veil']:.2f}x "
            f"bare-commit and hank's query {cpu['bare'] / cpu['hank']:.2f}x bare; each unmask record costs "
            f"the machine {v['cpu_per_record_us']:.0f} µs in Veil ({recording:.0%} of the mix records), "
            f"{(cpu['commit'] - cpu['bare']) / recording:.0f} µs in bare-commit"
        )
        own = {name: _median([r["own_us"][name] for r in v["rounds"]]) for name in CPU_RUNS}
        v["own_us"] = own
        print(
            f"  CPU per request of the bench's own processes (gunicorn, PostgreSQL, wrk; not other "
            f"people's) at c=8 ({worker_class}, median): bare {own['bare']:.0f} µs, bare-commit "
            f"{own['commit']:.0f} µs, the mix {own['veil']:.0f} µs, hank's query {own['hank']:.0f} µs: "
            f"on a machine to itself the mix could reach {own['commit'] / own['veil']:.2f}x bare-commit "
            f"and hank's query {own['bare'] / own['hank']:.2f}x bare"
        )
        loads = [x for r in v["rounds"] for x in r["load"]]
        others = [x for r in v["rounds"] for x in r["others_share"].values()]
        print(
            f"  machine load during the c=8 runs ({worker_class}): 1-minute load average {min(loads):.2f}-"
            f"{max(loads):.2f} at their ends; processes other than the bench's took {min(others):.0%} to "
            f"{max(others):.0%} of the machine's busy CPU"
        )
    print(f"  DecisionRecord rows written (Veil and bare-commit): {out['records']}")
    return {"rows": rows, "verdicts": verdicts, "best": out["workers"][0]}


def main(argv: Sequence[str] = (), world: Any = None) -> dict[str, Any]:
    quick = "--quick" in argv
    goal_only = "--goal-only" in argv
    rounds = int(next((a.split("=", 1)[1] for a in argv if a.startswith("--rounds=")), "1"))
    django_setup()
    from bench import db

    print("== HTTP: POST /api/v1/decisions vs bare WSGI (with and without the commit), gunicorn, wrk ==")
    fx = build(2000, now=time.time())
    if world is None:
        world = db.prepare(fx)
        db.add_population(build(200_000, now=world.now), start=db.grant_rows())
    print(f"  grant rows in the database: {db.grant_rows():,}")
    out = run(
        world,
        fx,
        seconds=3 if quick else 10,
        workers=WORKERS[:1] if goal_only else WORKERS,
        concurrency=(8,) if goal_only else CONCURRENCY,
        rounds=max(rounds, 1),
    )
    out.update(summarize(out))
    if not goal_only:
        from bench import breakdown

        out["breakdown"] = breakdown.main(world, fx, quick=quick)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
