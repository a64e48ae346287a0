"""HTTP bench: POST /api/v1/decisions under wrk on loopback, against a bare WSGI endpoint.

gunicorn (2 workers; sync, then gthread) serves bench.wsgi: `/bare` is a plain WSGI function
returning a precomputed JSON body the size of a real 20-column decision response, everything
else is Veil's Django app on PostgreSQL (the bench database, see bench.db) with DEBUG=0. wrk
drives each endpoint for a bounded time at concurrency 1, 8 and 32, rotating over four
principals' 20-column queries (alice, bob and carol have grants or exemptions unmasking 4 or 5
of the columns, so their requests write a DecisionRecord; hank's unmasks nothing sensitive).
Reported: requests/s, p50 and p99 latency, and Veil's throughput as a ratio of the bare
endpoint's in the same run. Everything the bench starts, it stops.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import ROOT, SERVER_ENV, django_setup
from bench.policy_fixture import Fixture, build
from bench.timing import fmt_rate, table

CONCURRENCY = (1, 8, 32)
WORKERS = ("sync", "gthread")
THREADS = 4
GOAL_RATIO = 0.7
GOAL_P99_S = 0.010
CPU_RUNS = ("bare", "veil", "hank")  # compared by CPU per request at concurrency 8
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

    def __init__(self, worker_class: str, workdir: Path, bare_body: Path) -> None:
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
        env = {**os.environ, **SERVER_ENV, "BENCH_BARE_BODY_FILE": str(bare_body)}
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


def check_responses(fx: Fixture, server: Server, token: str) -> tuple[bytes, dict[str, int]]:
    """Each body's answers must match the in-process engine on the same policy; returns alice's
    response body (the bare endpoint's) and how many columns each principal gets unmasked."""
    from bench.engine import VeilWarm

    reference = VeilWarm(fx)
    first = b""
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
        first = first or raw
    return first, unmasked


class CpuMeter:
    """CPU time spent during a run, per request: the whole machine (from /proc/stat), gunicorn's
    workers, PostgreSQL's processes and wrk (this process's waited-for children). The HTTP runs
    are CPU-bound on two cores, so the bare endpoint's CPU per request over Veil's is the ratio
    the machine allows, whatever else is tuned."""

    TICK_S = 1 / os.sysconf("SC_CLK_TCK")

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

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
            elif comm == "postgres":
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
        out["idle_share"] = spent["idle"] / (spent["idle"] + spent["machine"])
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
        f"PostgreSQL {cpu['postgres']:.0f}, wrk {cpu['wrk']:.0f}), idle {cpu['idle_share']:.0%}"
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


def decision_records() -> int:
    from audit.models import DecisionRecord

    return DecisionRecord.objects.count()


def run(world: Any, fx: Fixture, *, seconds: int = 10, workers: Sequence[str] = WORKERS) -> dict[str, Any]:
    wrk = ensure_wrk()
    results: dict[tuple[str, int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        workdir = Path(tmp)
        bare_file = workdir / "bare.json"
        bodies = [request_body(fx, p, t) for p, t in BODIES]
        scripts = {
            "veil": lua_script(workdir, "veil", "/api/v1/decisions", bodies, world.token),
            "bare": lua_script(workdir, "bare", "/bare", bodies, world.token),
            "django": lua_script(workdir, "django", "/healthz", [], world.token),
            "hank": lua_script(workdir, "hank", "/api/v1/decisions", bodies[-1:], world.token),
        }
        unmasked: dict[str, int] = {}
        records = {}
        propagation: dict[str, list[float]] = {}
        for worker_class in workers:
            server = Server(worker_class, workdir, bare_file)
            meter = CpuMeter(server.proc.pid)
            try:
                raw, unmasked = check_responses(fx, server, world.token)
                bare_file.write_bytes(raw)  # read by the workers on their first /bare request
                if worker_class == workers[0]:
                    print(
                        f"  answers over HTTP match the engine; response {len(raw)} bytes; unmasked by grant/"
                        f"exemption per request: " + ", ".join(f"{p} {n}" for p, n in unmasked.items())
                    )
                for name in ("veil", "bare"):  # warm-up: policy snapshot, connections, first-use paths
                    run_wrk(wrk, scripts[name], server.url, 8, 2)
                before = decision_records()
                for c in CONCURRENCY:
                    # "django": GET /healthz through the same middleware, no DB: Django's own floor;
                    # "hank": only the query that unmasks nothing, so no DecisionRecord is written
                    for name in ("veil", "bare", "django", "hank") if c == 8 else ("veil", "bare"):
                        r = run_wrk(wrk, scripts[name], server.url, c, seconds, meter)
                        results[(worker_class, c, name)] = r
                        print(f"  {worker_class:7} c={c:<2} {name:6}: {run_line(r)}")
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


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    results = out["results"]
    rows = []
    verdicts = {}
    for worker_class in out["workers"]:
        for c in CONCURRENCY:
            veil, bare = results[(worker_class, c, "veil")], results[(worker_class, c, "bare")]
            ratio = veil["rps"] / bare["rps"]
            rows.append(
                [
                    worker_class,
                    c,
                    fmt_rate(veil["rps"]),
                    f"{veil['p50'] / 1000:.2f} / {veil['p99'] / 1000:.2f}",
                    fmt_rate(bare["rps"]),
                    f"{bare['p50'] / 1000:.2f} / {bare['p99'] / 1000:.2f}",
                    f"{ratio:.2f}x",
                    veil["errors"] + bare["errors"],
                ]
            )
            if c == 8:
                floor = results[(worker_class, c, "django")]
                no_record = results[(worker_class, c, "hank")]
                verdicts[worker_class] = {
                    "ratio": ratio,
                    "p99": veil["p99"] / 1e6,
                    "rps": veil["rps"],
                    "bare_rps": bare["rps"],
                    "django_rps": floor["rps"],
                    "django_p99": floor["p99"] / 1e6,
                    "no_record_rps": no_record["rps"],
                    "no_record_p99": no_record["p99"] / 1e6,
                    "cpu_us": {name: results[(worker_class, c, name)]["cpu"]["machine"] for name in CPU_RUNS},
                }
    print()
    print(
        table(
            [
                "workers",
                "conc.",
                "Veil req/s",
                "Veil p50 / p99 ms",
                "bare req/s",
                "bare p50 / p99 ms",
                "Veil/bare",
                "errors",
            ],
            rows,
        )
    )
    best = max(verdicts, key=lambda w: verdicts[w]["ratio"])
    v = verdicts[best]
    print(
        f"  at concurrency 8 ({best} workers): Veil {v['ratio']:.2f}x the bare endpoint's throughput "
        f"(goal >= {GOAL_RATIO}x: {'met' if v['ratio'] >= GOAL_RATIO else 'MISSED'}), "
        f"p99 {v['p99'] * 1000:.2f} ms (goal < 10 ms: {'met' if v['p99'] < GOAL_P99_S else 'MISSED'})"
    )
    for worker_class, v in verdicts.items():
        print(
            f"  Django floor at c=8 ({worker_class}): GET /healthz through the same middleware "
            f"{v['django_rps']:.0f} req/s = {v['django_rps'] / v['bare_rps']:.2f}x bare, "
            f"p99 {v['django_p99'] * 1000:.2f} ms; Veil is {v['rps'] / v['django_rps']:.2f}x of that floor"
        )
        print(
            f"  Veil without unmask records at c=8 ({worker_class}): hank's query only (nothing to "
            f"record) {v['no_record_rps']:.0f} req/s = {v['no_record_rps'] / v['bare_rps']:.2f}x bare, "
            f"p99 {v['no_record_p99'] * 1000:.2f} ms"
        )
    recording = sum(1 for n in out["unmasked"].values() if n) / len(out["unmasked"])
    for worker_class, v in verdicts.items():
        cpu = v["cpu_us"]
        v["cpu_per_record_us"] = (cpu["veil"] - cpu["hank"]) / recording
        print(
            f"  machine CPU per request at c=8 ({worker_class}): bare {cpu['bare']:.0f} µs, Veil's mix "
            f"{cpu['veil']:.0f} µs, hank's query {cpu['hank']:.0f} µs. CPU-bound, the mix can reach at most "
            f"{cpu['bare'] / cpu['veil']:.2f}x bare and hank's query {cpu['bare'] / cpu['hank']:.2f}x; each "
            f"unmask record costs the machine {v['cpu_per_record_us']:.0f} µs ({recording:.0%} of the mix)"
        )
    print(f"  DecisionRecord rows written: {out['records']}")
    return {"rows": rows, "verdicts": verdicts, "best": best}


def main(argv: Sequence[str] = (), world: Any = None) -> dict[str, Any]:
    quick = "--quick" in argv
    django_setup()
    from bench import db

    print("== HTTP: POST /api/v1/decisions vs bare WSGI, gunicorn on loopback, wrk ==")
    fx = build(2000, now=time.time())
    if world is None:
        world = db.prepare(fx)
        db.add_population(build(200_000, now=world.now), start=db.grant_rows())
    print(f"  grant rows in the database: {db.grant_rows():,}")
    out = run(world, fx, seconds=3 if quick else 10)
    out.update(summarize(out))
    from bench import breakdown

    out["breakdown"] = breakdown.main(world, fx, quick=quick)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
