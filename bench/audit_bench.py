"""Audit benchmarks: `python -m bench.audit_bench [--writes N] [--events N] [--threads N] [--fresh]`.

Three questions, each answered against a baseline measured in the same run:

1. What does the hash chain cost a writer? `record_event` (chain head locked FOR UPDATE, hash, insert,
   head update, commit) against a plain ORM insert of the same row into a twin table with the same
   columns and indexes (`CREATE TABLE ... (LIKE audit_auditevent INCLUDING ALL)`), one transaction
   per event, single-threaded and with several threads, in alternating rounds (median reported).
2. What does an export of a million events cost? The CSV and JSON Lines encoders over the events
   report (rows streamed with `iterator(chunk_size)`) against PostgreSQL's own
   `COPY (SELECT ...) TO STDOUT (FORMAT csv)` read through psycopg, each in its own process so its
   peak resident memory (`ru_maxrss`) is its own; and the same export at a tenth of the size, to show
   memory does not grow with it. Also timed: the full `write_export` (which verifies the whole log
   first) and `verify_chain` alone.
3. What do the trigram indexes give the event search? The first page (51 rows, newest first) of
   searches by person, role and column over the million events, for values found nowhere (the
   worst case: every event must be ruled out) and for a frequent one, against the same searches in
   a transaction that drops the four trigram indexes and is rolled back.

Owns one database, `AUDIT_BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1:5432/
veil_audit_bench), and refuses any other name. The million events are generated once with correct
chain hashes and COPYed in; later runs reuse them unless `--fresh`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DB_URL = os.environ.get("AUDIT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/veil_audit_bench")
ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": DB_URL,
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "STATIC_MANIFEST": "0",
    "LOG_LEVEL": "WARNING",
    "VEIL_SIGNING_KEY": "bench-signing-key",
}


def _django() -> None:
    os.environ.update(ENV)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _db_name() -> str:
    name = urlsplit(DB_URL).path.lstrip("/")
    if not name.startswith("veil_audit_bench"):
        raise SystemExit(f"refusing database {name!r}: this bench owns only veil_audit_bench*")
    return name


def _ensure_database(fresh: bool) -> None:
    import psycopg

    name = _db_name()
    admin = urlsplit(DB_URL)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if fresh and exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- 1. writes ---------------------------------------------------------------------------------


def _plain_model() -> Any:
    """An unmanaged model over the twin table: the same fields, no chain."""
    from django.db import connection, models

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_event")
        cursor.execute("CREATE TABLE bench_plain_event (LIKE audit_auditevent INCLUDING ALL)")

    from audit.models import AuditEvent

    attrs: dict[str, Any] = {"__module__": __name__}
    for field in AuditEvent._meta.concrete_fields:
        if field.name == "id":
            continue
        clone = field.clone()
        attrs[field.name] = clone
    attrs["Meta"] = type(
        "Meta", (), {"db_table": "bench_plain_event", "managed": False, "app_label": "audit"}
    )
    return type("BenchPlainEvent", (models.Model,), attrs)


def _reset_log() -> None:
    """Empty the audit tables past their triggers (this database belongs to the bench)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("TRUNCATE audit_auditevent, audit_chainhead, audit_checkpoint, audit_decisionrecord")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def _run_threads(threads: int, per_thread: int, write: Any) -> float:
    from django.db import connection

    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                write(offset + i)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(t * per_thread,)) for t in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return threads * per_thread / elapsed


def bench_writes(writes: int, threads: int, rounds: int = 5) -> dict[str, Any]:
    from django.db import transaction
    from django.utils import timezone

    from audit.models import Channel
    from audit.selectors import verify_chain
    from audit.services import Actor, Target, record_event

    plain = _plain_model()
    actor = Actor(type="user", id="local:1", name="Bench User")
    detail = {"request": "REQ-1", "principal": "user:1", "condition": 'resource.column_name == "email"'}

    def chained(i: int) -> None:
        record_event(
            action="grant.created",
            actor=actor,
            channel=Channel.WEB,
            target=Target("grant", str(i)),
            project="shop",
            detail=detail,
        )

    ids = itertools.count(1)
    ids_lock = threading.Lock()

    def unchained(_: int) -> None:
        with ids_lock:
            i = next(ids)
        with transaction.atomic():
            plain.objects.create(
                seq=i,
                occurred_at=timezone.now(),
                actor_type="user",
                actor_id="local:1",
                actor_name="Bench User",
                action="grant.created",
                target_type="grant",
                target_id=str(i),
                target_repr="",
                project="shop",
                channel="web",
                detail=detail,
                prev_hash="0" * 64,
                hash=f"{i:064x}",
            )

    results: dict[str, Any] = {"writes": writes, "threads": threads, "rounds": rounds}
    for label, n_threads in (("single", 1), ("concurrent", threads)):
        per_thread = writes // rounds // n_threads
        _reset_log()
        plain.objects.all().delete()
        chained(0), unchained(0)  # warm up connections and caches
        chain_rates, plain_rates = [], []
        # Alternate short rounds so both see the same machine (this database server is shared).
        for _ in range(rounds):
            chain_rates.append(_run_threads(n_threads, per_thread, chained))
            plain_rates.append(_run_threads(n_threads, per_thread, unchained))
        assert verify_chain().ok
        results[label] = {
            "chain_per_s": round(statistics.median(chain_rates)),
            "plain_per_s": round(statistics.median(plain_rates)),
            "cost": round(statistics.median(p / c for p, c in zip(plain_rates, chain_rates, strict=True)), 2),
            "cost_per_round": [round(p / c, 2) for p, c in zip(plain_rates, chain_rates, strict=True)],
        }
    return results


# --- 2. exports --------------------------------------------------------------------------------

EVENT_INSERT_COLUMNS = (
    "seq, occurred_at, actor_type, actor_id, actor_name, action, target_type, target_id, target_repr,"
    " project, channel, detail, prev_hash, hash"
)


def populate(events: int) -> float:
    """Write `events` chained events (correct hashes, realistic detail) with COPY, unless present."""
    from django.db import connection

    from audit.chain import GENESIS_HASH, canonical_event, chain_hash
    from audit.models import AuditEvent, ChainHead

    if AuditEvent.objects.count() == events and ChainHead.objects.filter(seq=events).exists():
        return 0.0
    _reset_log()
    started = time.perf_counter()
    base = datetime(2025, 1, 1, tzinfo=UTC)
    actions = ["grant.created", "request.created", "request.approved", "auth.sign_in", "rule.updated"]
    prev = GENESIS_HASH
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY audit_auditevent ({EVENT_INSERT_COLUMNS}) FROM STDIN") as copy:
            for seq in range(1, events + 1):
                fields = {
                    "seq": seq,
                    "occurred_at": base + timedelta(seconds=seq * 3),
                    "actor_type": "user",
                    "actor_id": f"oidc:{seq % 500:08x}-subject",
                    "actor_name": f'Person {seq % 500}, Team "{seq % 7}"',
                    "action": actions[seq % len(actions)],
                    "target_type": "grant",
                    "target_id": str(seq),
                    "target_repr": f"REQ-{seq} prod-pg/shop (email, phone)",
                    "project": ("shop", "analytics")[seq % 2],
                    "channel": "web",
                    "detail": {
                        "request": f"REQ-{seq}",
                        "principal": f"user:{seq % 500}",
                        "condition": 'resource.instance_id == "prod-pg" && resource.column_name in ["email"]',
                        "expires_at": "2025-01-02T00:00:00Z",
                    },
                }
                digest = chain_hash(prev, canonical_event(**fields))
                copy.write_row((*list(fields.values())[:-1], json.dumps(fields["detail"]), prev, digest))
                prev = digest
        cursor.execute("INSERT INTO audit_chainhead (id, seq, hash) VALUES (1, %s, %s)", [events, prev])
        cursor.execute("ANALYZE audit_auditevent")
    return time.perf_counter() - started


def child(mode: str, limit: int | None, out_dir: str) -> dict[str, Any]:
    """One measurement in this (fresh) process; prints JSON for the parent."""
    _django()
    from django.db import connection

    from audit.exports import encode_rows, report_chunks, write_export
    from audit.filters import EVERYTHING, AuditFilter
    from audit.models import Channel
    from audit.reports import EVENT_COLUMNS, event_rows
    from audit.selectors import verify_chain
    from audit.services import SYSTEM

    traced = mode.endswith("+trace")
    mode = mode.removesuffix("+trace")
    if traced:
        tracemalloc.start()
    baseline = _peak_rss_mb()
    flt = (
        AuditFilter(date_to=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=3 * limit + 1))
        if limit
        else AuditFilter()
    )
    out = Path(out_dir) / f"{mode}-{limit or 'all'}.out"
    started = time.perf_counter()
    rows = size = 0
    if mode in ("csv", "jsonl", "csv-python"):
        if mode == "csv-python":  # the encoder SQLite and the other reports use, for comparison
            chunks = encode_rows("csv", EVENT_COLUMNS, event_rows(flt, EVERYTHING))
        else:
            chunks = report_chunks("events", mode, flt, EVERYTHING)
        with out.open("wb") as f:
            digest = hashlib.sha256()  # as write_export does
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
                size += len(chunk)
        rows = -1
    elif mode == "copy":
        where = f"WHERE seq <= {int(limit)}" if limit else ""
        with connection.cursor() as cursor, out.open("wb") as f:
            raw = cursor.cursor
            query = (
                f"COPY (SELECT {EVENT_INSERT_COLUMNS} FROM audit_auditevent {where} ORDER BY seq)"  # noqa: S608
                " TO STDOUT (FORMAT csv, HEADER)"
            )
            with raw.copy(query) as copy:
                for chunk in copy:
                    f.write(chunk)
                    size += len(chunk)
    elif mode == "write_export":
        result = write_export(
            report="events",
            fmt="csv",
            flt=flt,
            scope=EVERYTHING,
            out_path=out,
            actor=SYSTEM,
            channel=Channel.CLI,
        )
        size, rows = result.bytes, result.rows
    elif mode == "verify":
        result = verify_chain()
        rows = result.events_checked
        assert result.ok, result.summary()
    elapsed = time.perf_counter() - started
    out.unlink(missing_ok=True)
    heap = {"traced_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 2)} if traced else {}
    return {
        **heap,
        "mode": mode,
        "limit": limit,
        "seconds": round(elapsed, 2),
        "bytes": size,
        "rows": rows,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
    }


def _in_child(mode: str, limit: int | None, out_dir: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.audit_bench", "--child", mode, "--out-dir", out_dir]
    if limit:
        command += ["--limit", str(limit)]
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, check=True, timeout=1800
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_exports(events: int) -> dict[str, Any]:
    generated = populate(events)
    results: dict[str, Any] = {"events": events, "generated_s": round(generated, 1)}
    with tempfile.TemporaryDirectory(prefix="veil-audit-bench-") as out_dir:
        for mode in ("copy", "csv", "jsonl", "csv-python"):
            results[mode] = _in_child(mode, None, out_dir)
            results[f"{mode}_tenth"] = _in_child(mode, events // 10, out_dir)
        for mode in ("csv", "jsonl", "csv-python"):  # Python heap high-water mark (tracemalloc slows)
            results[f"{mode}_heap"] = _in_child(f"{mode}+trace", None, out_dir)
            results[f"{mode}_heap_tenth"] = _in_child(f"{mode}+trace", events // 10, out_dir)
        results["verify"] = _in_child("verify", None, out_dir)
        results["write_export"] = _in_child("write_export", None, out_dir)
    return results


SEARCHES = (
    ("person found nowhere", {"person": "nobody@example.com"}),
    ("role found nowhere", {"role": "dba"}),
    ("column found nowhere", {"column": "ssn"}),
    ("frequent person", {"person": "Person 17"}),
)


def _first_page_s(filters: dict[str, str], rounds: int) -> float:
    """Median seconds for the events page's query: the first 51 matches, newest first."""
    from audit.filters import EVERYTHING, AuditFilter, events_matching

    query = events_matching(AuditFilter.from_mapping(filters), EVERYTHING).order_by("-seq")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        list(query[:51])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_search(events: int, rounds: int = 5) -> dict[str, Any]:
    from django.db import connection, transaction

    from audit.models import AuditEvent

    populate(events)
    trigram = [
        index.name for index in AuditEvent._meta.indexes if index.name and index.name.endswith("_trgm")
    ]
    results: dict[str, Any] = {"events": events, "indexes": trigram}
    for label, filters in SEARCHES:
        indexed = _first_page_s(filters, rounds)
        with transaction.atomic():
            with connection.cursor() as cursor:
                for name in trigram:
                    cursor.execute(f'DROP INDEX "{name}"')
            unindexed = _first_page_s(filters, 3)
            transaction.set_rollback(True)
        results[label] = {"indexed_ms": indexed * 1000, "unindexed_ms": unindexed * 1000}
    return results


def report(
    writes: dict[str, Any] | None, exports: dict[str, Any] | None, search: dict[str, Any] | None = None
) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if writes:
        for label in ("single", "concurrent"):
            r = writes[label]
            threads = 1 if label == "single" else writes["threads"]
            verdict = "OK" if r["cost"] < 2 else "OVER GOAL"
            print(
                f"writes, {threads} thread(s): chain {r['chain_per_s']}/s, plain {r['plain_per_s']}/s, "
                f"chain costs {r['cost']}x, median of rounds {r['cost_per_round']} (goal < 2x: {verdict})"
            )
    if exports:
        copy = exports["copy"]
        for mode in ("csv", "jsonl", "csv-python"):
            r, tenth = exports[mode], exports[f"{mode}_tenth"]
            heap, heap_tenth = exports[f"{mode}_heap"], exports[f"{mode}_heap_tenth"]
            ratio = r["seconds"] / copy["seconds"]
            goal = "" if mode == "csv-python" else f" (goal < 3x: {'OK' if ratio < 3 else 'OVER GOAL'})"
            print(
                f"export {mode}: {exports['events']:,} events in {r['seconds']} s "
                f"({r['bytes'] / 1e6:.0f} MB), {ratio:.2f}x COPY{goal}; peak RSS {r['peak_rss_mb']} MB "
                f"(after imports {r['baseline_rss_mb']}), a tenth of the size {tenth['peak_rss_mb']} MB; "
                f"Python heap peak {heap['traced_peak_mb']} MB, a tenth {heap_tenth['traced_peak_mb']} MB"
            )
        print(
            f"COPY csv: {copy['seconds']} s ({copy['bytes'] / 1e6:.0f} MB), "
            f"peak RSS {copy['peak_rss_mb']} MB; "
            f"at a tenth {exports['copy_tenth']['seconds']} s"
        )
        print(
            f"verify_chain of {exports['verify']['rows']:,} events: {exports['verify']['seconds']} s, "
            f"peak RSS {exports['verify']['peak_rss_mb']} MB"
        )
        w = exports["write_export"]
        print(
            f"write_export (verify + CSV + manifest + audit event): {w['seconds']} s, "
            f"peak RSS {w['peak_rss_mb']} MB"
        )
    if search:
        for label, _ in SEARCHES:
            r = search[label]
            print(
                f"search, {label}, first page of {search['events']:,} events: {r['indexed_ms']:.1f} ms, "
                f"without the trigram indexes {r['unindexed_ms']:.1f} ms "
                f"({r['unindexed_ms'] / r['indexed_ms']:.0f}x faster with them)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fresh", action="store_true", help="Drop and recreate the bench database.")
    parser.add_argument("--only", choices=["writes", "exports", "search"])
    parser.add_argument("--json", action="store_true", help="Print the raw results as JSON too.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.limit, args.out_dir)))
        return
    _ensure_database(args.fresh)
    _django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    writes = bench_writes(args.writes, args.threads) if args.only in (None, "writes") else None
    exports = bench_exports(args.events) if args.only in (None, "exports") else None
    search = bench_search(args.events) if args.only in (None, "search") else None
    report(writes, exports, search)
    if args.json:
        print(json.dumps({"writes": writes, "exports": exports, "search": search}, indent=2))


if __name__ == "__main__":
    main()
