"""Where one decision request's time goes, measured in process (no network, no load generator).

Calls Veil's WSGI application (`config.wsgi`: the decision endpoint in front of Django) directly
with the environ gunicorn would build, on the bench database, and reports:
- wall and CPU time per request for a body that unmasks (writes a DecisionRecord) and one that
  does not (the difference between wall and CPU is waiting on PostgreSQL);
- the SQL each request runs through Django (count and time, with a connection execute_wrapper;
  the DecisionRecord INSERT bypasses Django's cursor and is timed as a component);
- components timed alone: parsing, the engine, recording, building and encoding the response;
- a cProfile of the same requests, as shares of the request's time (cProfile inflates Python-heavy
  parts, so read it for proportions; the wall-time figures above are the unprofiled ones).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench import django_setup
from bench.http import BODIES, request_body
from bench.policy_fixture import Fixture
from bench.timing import fmt_us, measure, table

# (label, file suffix, function): cumulative time of these in the profile.
PROFILE_POINTS = [
    ("whole request (DecisionEndpoint.__call__)", "masking/decisions/endpoint.py", "__call__"),
    ("  answer_decisions", "masking/decisions/endpoint.py", "answer_decisions"),
    ("    authentication: token_authenticate", "identity/services.py", "token_authenticate"),
    ("    decoding: content type + orjson.loads", "masking/decisions/endpoint.py", "_decode"),
    ("    parsing: parse_decision_request", "masking/decisions/request.py", "parse_decision_request"),
    ("    decide_columns", "masking/decisions/service.py", "decide_columns"),
    ("      epochs (re-read every 250 ms)", "masking/selectors.py", "epochs"),
    ("      principal (cached 1 s)", "masking/selectors.py", "principal"),
    ("      Policy.decide (engine)", "masking/decisions/engine.py", "decide"),
    ("      record_unmask_decisions (INSERT)", "audit/services.py", "record_unmask_decisions"),
    ("    DecisionResult.encode (the response body)", "masking/decisions/service.py", "encode"),
    ("  connection upkeep (_end_request)", "masking/decisions/endpoint.py", "_end_request"),
]


def _environ(body: bytes, token: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/decisions",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _caller(token: str, body: bytes) -> Callable[[], bytes]:
    from config.wsgi import application

    def call() -> bytes:
        status: list[str] = []
        result = application(_environ(body, token), lambda s, h, *a: status.append(s))
        try:
            out = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
        if not status or not status[0].startswith("200"):
            raise SystemExit(f"in-process request failed: {status} {out[:200]!r}")
        return out

    return call


class _SqlTimer:
    def __init__(self) -> None:
        self.by_kind: dict[str, list[float]] = {}

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.by_kind.setdefault(_sql_kind(sql), []).append(time.perf_counter() - t0)


def _sql_kind(sql: str) -> str:
    verb = sql.split(None, 1)[0].upper()
    table_match = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql)
    return f"{verb} {table_match.group(1) if table_match else ''}".strip()


def _profile(calls: list[Callable[[], bytes]], n: int) -> dict[str, float]:
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        calls[i % len(calls)]()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    found: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for label, suffix, name in PROFILE_POINTS:
            if func == name and filename.endswith(suffix):
                found[label] = found.get(label, 0.0) + ct / n
    return found


def main(world: Any, fx: Fixture, *, quick: bool = False) -> dict[str, Any]:
    django_setup()
    from django.db import connection

    from audit.services import record_unmask_decisions
    from masking.decisions.engine import ColumnKey
    from masking.decisions.request import parse_decision_request
    from masking.decisions.service import DecisionResult
    from masking.selectors import decision_caches, read_epochs

    print("\n== where a request's time goes (in process, WSGI app called directly) ==")
    payloads = {p: request_body(fx, p, t) for p, t in BODIES}
    raw = {p: json.dumps(b).encode() for p, b in payloads.items()}
    calls = {p: _caller(world.token, raw[p]) for p in raw}
    n = 300 if quick else 1500
    for call in calls.values():
        for _ in range(100):
            call()

    # 1. Wall and CPU time, unprofiled.
    wall = {p: measure(calls[p], target_s=0.3 if quick else 1.0, repeats=5) for p in ("alice", "hank")}
    cpu = {p: _cpu_per_call(calls[p], n) for p in ("alice", "hank")}

    # 2. SQL per request (through Django's cursor).
    timer = _SqlTimer()
    with connection.execute_wrapper(timer):
        for i in range(n):
            calls[BODIES[i % len(BODIES)][0]]()
    sql_rows = []
    sql_total = 0.0
    for kind, samples in sorted(timer.by_kind.items(), key=lambda kv: -sum(kv[1])):
        per_request = sum(samples) / n
        sql_total += per_request
        sql_rows.append(
            [kind, f"{len(samples) / n:.3f}", fmt_us(statistics.median(samples)), fmt_us(per_request)]
        )
    queries_per_request = sum(len(s) for s in timer.by_kind.values()) / n

    # 3. Components alone.
    body = payloads["alice"]
    keys = [ColumnKey(**c) for c in body["columns"]]
    epochs = read_epochs()
    policy = decision_caches.policy(epochs)
    principal = decision_caches.principal({"user": "alice@example.com"}, frozenset())
    assert principal is not None
    grants = decision_caches.grants(epochs, principal)
    now = time.time()
    decisions = policy.decide(principal, keys, grants, now=now)
    result = DecisionResult(epochs.policy, decisions, now, 1)
    unmasked = [{"column": k.label(), "reason": "grant", "id": 1} for k in keys[:4]]

    def select_one() -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()

    def record() -> int:
        return record_unmask_decisions(
            service_account="sql-proxy",
            principal_type="user",
            principal_id=principal.id,
            principal_name=principal.name,
            query_id="bench",
            policy_version=epochs.policy,
            asserted_groups=[],
            unmasked=unmasked,
        )

    components = {
        "PostgreSQL round trip (SELECT 1, for scale)": measure(select_one),
        "parse_decision_request (20 columns)": measure(
            lambda: parse_decision_request(body, max_columns=1000)
        ),
        "read_epochs (one SELECT, every 250 ms)": measure(read_epochs),
        "Policy.decide (engine, warm)": measure(lambda: policy.decide(principal, keys, grants, now=now)),
        "record_unmask_decisions (INSERT, committed)": measure(record),
        "DecisionResult.encode (the response body)": measure(result.encode),
    }

    # 3b. What the record costs the rest of the request: alice's request with the INSERT replaced
    # by nothing, and by a sleep as long as the INSERT takes (blocking once, no PostgreSQL).
    insert_s = components["record_unmask_decisions (INSERT, committed)"].median
    stand_ins = {"no record": lambda values: 1, "sleep instead": lambda values: time.sleep(insert_s) or 1}
    blocking = {}
    for label, stand_in in stand_ins.items():
        with _record_written_by(stand_in):
            blocking[label] = _cpu_per_call(calls["alice"], n)

    # 4. Profile shares.
    profiled = _profile(list(calls.values()), 400 if quick else 2000)

    total_alice, total_hank = wall["alice"].median, wall["hank"].median
    print(
        f"  per request: {fmt_us(total_alice)} wall / {fmt_us(cpu['alice'])} CPU with unmasks (alice: "
        f"INSERT DecisionRecord), {fmt_us(total_hank)} wall / {fmt_us(cpu['hank'])} CPU without (hank); "
        f"SQL through Django {queries_per_request:.3f} queries, {fmt_us(sql_total)} per request"
    )
    print(
        f"  alice's request without its record: {fmt_us(blocking['no record'])} CPU; with the record "
        f"replaced by sleeping {fmt_us(insert_s)} (blocking once, no database): "
        f"{fmt_us(blocking['sleep instead'])} CPU"
    )
    print(table(["SQL statement (through Django)", "per request", "median", "time per request"], sql_rows))
    print()
    comp_rows = [
        [name, fmt_us(t.median), f"{t.median / total_alice * 100:.0f}%"] for name, t in components.items()
    ]
    print(table(["component, timed alone", "time", "of alice's request"], comp_rows))
    print()
    whole = profiled.get(PROFILE_POINTS[0][0], 0.0) or 1.0
    prof_rows = [
        [label, fmt_us(profiled.get(label, 0.0)), f"{profiled.get(label, 0.0) / whole * 100:.0f}%"]
        for label, _s, _f in PROFILE_POINTS
    ]
    print(
        table(["cProfile, cumulative per request (all four bodies)", "time (profiled)", "share"], prof_rows)
    )
    return {
        "wall": {p: t.median for p, t in wall.items()},
        "cpu": cpu,
        "blocking": blocking,
        "sql": {"rows": sql_rows, "queries": queries_per_request, "total": sql_total},
        "components": {name: t.median for name, t in components.items()},
        "profile": {label: profiled.get(label, 0.0) for label, _s, _f in PROFILE_POINTS},
        "profile_rows": prof_rows,
        "comp_rows": comp_rows,
    }


@contextmanager
def _record_written_by(stand_in: Callable[[Any], int]) -> Iterator[None]:
    """Swap the unmask record's writer (as `audit.services` calls it) for the duration."""
    import audit.services

    real = audit.services.write_decision_record
    audit.services.write_decision_record = stand_in
    try:
        yield
    finally:
        audit.services.write_decision_record = real


def _cpu_per_call(fn: Callable[[], Any], n: int) -> float:
    """Process CPU seconds per call (time spent waiting on PostgreSQL does not count)."""
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n
