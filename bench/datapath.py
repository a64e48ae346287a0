"""`python -m bench.datapath [--quick] [--markdown]`: the psycopg adapter against plain psycopg.

Three figures, each a ratio of two things measured in this process, interleaved round by round
(`measure_many`), on the same PostgreSQL (127.0.0.1:5432) with the same connection settings:

1. Point query, warm decision cache: a 1-row, 5-column SELECT with one masked column, through
   `veil_sdk.psycopg` vs plain psycopg (goal: >= 0.8x plain's queries/s).
2. Masking throughput: a 100k-row, 8-column SELECT with 3 masked columns, fetched whole
   (goal: >= 0.5x plain's rows/s).
3. The guard: parse, trace and check per query of the guard's case table (tests/datapath/
   test_guard.py: the refused probes and the harmless queries), catalog and decisions warm,
   p50/p99 over the cases, against the same queries' own round trip through plain psycopg
   (goal: the p99 below the median round trip).

Veil's decisions come from a loopback server (its own process) that answers as Veil does (mask
for the columns the demo masks for bob, unmask the rest, `ttl_s` 10): with a warm cache it is
asked about once per 10 s, so what is measured is the adapter, not Veil's HTTP API (`bench http`
measures that).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg import sql

from bench.timing import fmt_rate, fmt_us, measure_many, ratio, table

SOURCE_DB = "veil_bench_datapath"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DSN = f"host=127.0.0.1 port=5432 user=postgres dbname={SOURCE_DB}"
MASKED_NAMES = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "birth_date",
        "address",
        "card_number",
        "shipping_address",
        "ip_address",
        "ssn",
        "salary",
    }
)
POINT = "SELECT id, email, name, city, created_at FROM people WHERE id = 1"
BULK = "SELECT id, email, ssn, salary, city, created_at, score, note FROM bulk"


class _Decisions(BaseHTTPRequestHandler):
    """Veil's decision and access-event endpoints, answered as Veil would for bob."""

    def do_GET(self) -> None:  # the data path's settings: the default guard
        self._answer(200, {"project": "shop", "inference_guard": "refuse", "ttl_s": 60})

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/decisions"):
            answer = {
                "policy_version": 1,
                "decisions": [
                    {
                        "action": "mask",
                        "semantic_type": None,
                        "algorithm": {"type": "full", "substitution": "******"},
                        "reason": {"kind": "rule", "id": 1, "title": "PII"},
                        "ttl_s": 10,
                    }
                    if c["column"] in MASKED_NAMES
                    else {
                        "action": "unmask",
                        "semantic_type": None,
                        "algorithm": None,
                        "reason": {"kind": "not_sensitive"},
                        "ttl_s": 10,
                    }
                    for c in body["columns"]
                ],
            }
            status = 200
        else:
            answer, status = {"accepted": len(body.get("events", []))}, 202
        self._answer(status, answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(port: multiprocessing.connection.Connection) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Decisions)
    port.send(server.server_port)
    server.serve_forever()


def _decision_server() -> tuple[multiprocessing.Process, int]:
    """The stand-in for Veil in a process of its own, as Veil is: only the SDK's own work (its
    cache, and serializing and posting access events) shares this process with the adapter."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs,), daemon=True)
    process.start()
    return process, ours.recv()


def create_source(rows: int, dbname: str = SOURCE_DB) -> None:
    """The source database: `people` (the point query's table) and `bulk` (8 columns). The
    proxy's bench builds the same one under its own name."""
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}", autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE people (id bigint PRIMARY KEY, email text, name text, city text,"
            " created_at timestamptz)"
        )
        conn.execute("INSERT INTO people VALUES (1, 'ann@example.net', 'Ann', 'Lyon', now())")
        conn.execute(
            "CREATE TABLE bulk (id bigint, email text, ssn text, salary integer, city text,"
            " created_at timestamptz, score double precision, note text)"
        )
        conn.execute(
            "INSERT INTO bulk SELECT i, 'person' || i || '@example.net', lpad(i::text, 9, '0'),"
            " 30000 + i %% 90000, 'City ' || i %% 100, now() - i * interval '1 minute', i / 7.0,"
            " 'note ' || i FROM generate_series(1, %s) AS i",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE")


def _shop_source() -> str:
    """The shop source database the guard's cases run against (the tests' fixture builder)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from tests.datapath import shop_source

    name = "veil_bench_shop"
    shop_source.create_shop(name)
    return name


def main(argv: list[str]) -> dict[str, Any]:
    quick = "--quick" in argv
    rows = 10_000 if quick else 100_000
    create_source(rows)
    shop = _shop_source()
    server, port = _decision_server()

    from veil_sdk import VeilClient, user
    from veil_sdk.datapath import GuardRefusal
    from veil_sdk.psycopg import connect

    from tests.datapath.test_guard import ALLOWED, REFUSED

    client = VeilClient(f"http://127.0.0.1:{port}", "veil_bench_token")
    bob = user("bob@example.com")
    plain = psycopg.connect(DSN, autocommit=True)
    veiled = connect(DSN, client=client, principal=bob, instance="bench", database=SOURCE_DB, autocommit=True)
    results: dict[str, Any] = {"rows": rows}

    # 1. Point query, warm cache.
    timings = measure_many(
        {"plain": lambda: plain.execute(POINT).fetchall(), "veil": lambda: veiled.execute(POINT).fetchall()},
        target_s=0.1 if quick else 0.4,
        rounds=3 if quick else 9,
    )
    results["point"] = (timings, 1 / ratio(timings["veil"], timings["plain"]))

    # 2. Bulk rows.
    timings = measure_many(
        {"plain": lambda: plain.execute(BULK).fetchall(), "veil": lambda: veiled.execute(BULK).fetchall()},
        target_s=0.1 if quick else 0.5,
        rounds=3 if quick else 7,
    )
    results["bulk"] = (timings, 1 / ratio(timings["veil"], timings["plain"]))

    # 3. The guard's case table on the shop: guard cost per query vs the query's own round trip.
    shop_dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={shop}"
    guarded = connect(
        shop_dsn, client=client, principal=bob, instance="prod-pg", database="shop", autocommit=True
    )
    session = guarded._veil.session  # the connection's own session: its names are warm after one run
    shop_plain = psycopg.connect(shop_dsn, autocommit=False)
    lookups = psycopg.connect(shop_dsn, autocommit=True)  # the session's catalog queries
    costs, trips = [], []
    for _, query, *_ in [*REFUSED, *ALLOWED]:

        def guard(query: str = query) -> None:
            session._memos.clear()  # measure the parse, trace and check, not the memo of a repeat
            check = session.check(query, bob)
            while (lookup := check.next_lookup()) is not None:  # warm: nothing to look up
                check.feed(lookups.execute(lookup.sql).fetchall())
            with contextlib.suppress(GuardRefusal):  # a refusal is an answer too, and costs the same
                check.raise_if_refused()

        def trip(query: str = query) -> None:
            with contextlib.suppress(psycopg.Error):
                shop_plain.execute(query)
            shop_plain.rollback()  # the writes among the probes never land

        guard()
        t = measure_many(
            {"guard": guard, "trip": trip}, target_s=0.02 if quick else 0.05, rounds=3 if quick else 5
        )
        costs.append(t["guard"].median)
        trips.append(t["trip"].median)
    costs.sort()
    results["guard"] = {
        "cases": len(costs),
        "p50": statistics.median(costs),
        "p99": costs[min(len(costs) - 1, round(0.99 * (len(costs) - 1)))],
        "trip_median": statistics.median(trips),
        "trip_min": min(trips),
        "below_own_trip": sum(c < t for c, t in zip(costs, sorted(trips), strict=True)),
    }
    for conn in (plain, veiled, guarded, shop_plain, lookups):
        conn.close()
    client.close(timeout=2)
    server.terminate()
    server.join()
    return results


def report(results: dict[str, Any], *, markdown: bool = False) -> str:
    point_t, point_ratio = results["point"]
    bulk_t, bulk_ratio = results["bulk"]
    guard = results["guard"]
    rows = results["rows"]
    lines = [
        [
            "point query, warm cache (1 row, 5 cols, 1 masked)",
            f"{fmt_rate(1 / point_t['veil'].median)} q/s",
            f"{fmt_rate(1 / point_t['plain'].median)} q/s",
            f"{point_ratio:.2f}x",
            ">= 0.8x",
            "met" if point_ratio >= 0.8 else "MISSED",
        ],
        [
            f"bulk ({rows:,} rows, 8 cols, 3 masked)",
            f"{fmt_rate(rows / bulk_t['veil'].median)} rows/s",
            f"{fmt_rate(rows / bulk_t['plain'].median)} rows/s",
            f"{bulk_ratio:.2f}x",
            ">= 0.5x",
            "met" if bulk_ratio >= 0.5 else "MISSED",
        ],
        [
            f"guard, {guard['cases']} cases: p50 / p99 per query",
            f"{fmt_us(guard['p50'])} / {fmt_us(guard['p99'])}",
            f"round trip median {fmt_us(guard['trip_median'])} (min {fmt_us(guard['trip_min'])})",
            f"{guard['p99'] / guard['trip_median']:.2f}x",
            "p99 < round trip",
            "met" if guard["p99"] < guard["trip_median"] else "MISSED",
        ],
    ]
    return table(["figure", "through Veil", "baseline", "ratio", "goal", ""], lines, markdown=markdown)


if __name__ == "__main__":
    outcome = main(sys.argv[1:])
    print(report(outcome, markdown="--markdown" in sys.argv))
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after: {loads}; {time.strftime('%Y-%m-%d %H:%M')}")
