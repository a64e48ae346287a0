"""`python -m bench.capacity`: the measured inputs of docs/scaling.md, in one run.

1. **How many unmask records PostgreSQL commits a second.** Veil's own writer
   (`audit.services.record_unmask_decisions`: one prepared INSERT in autocommit, as the decision
   path calls it before it answers) from 1, 4 and 16 connections, a thread each, against a bare
   commit from the same connections (a prepared INSERT of one integer into a one-column table: the
   least a durable write can be). Interleaved rounds; the median round is reported, with the ratio.
   No HTTP and no decision: this is the database's ceiling for unmask answers, not Veil's.
2. **What the data weighs on disk.** A small company goes through Veil's own services: people ask
   for four columns of a 20-column table (`request_create`), two approvers approve
   (`request_approve`), the grants expire (`requests_sweep`), with Slack on (outbox rows, nothing
   sent); the decision path answers 20-column questions, four columns unmasked by the grant
   (`decide_columns`, so each answer writes one unmask record); a data-access layer reports what
   each query returned (`record_access_events`); the records are sealed into the chain and a
   checkpoint is signed. Then, after VACUUM ANALYZE, bytes per row of each table: on disk
   (`pg_total_relation_size`, heap + indexes + TOAST, over the row count) and the row alone
   (`avg(pg_column_size(t.*))`), and how many audit events and outbox rows one request's life wrote.

Options: `--seconds=S` per timed run (default 3), `--rounds=N` (default 3), `--writers=1,4,16`,
`--requests=N` (default 400), `--records=N` unmask records and access events (default 10000); half
of each is written before the sizes are first read, half after.
Owns one database, `CAPACITY_BENCH_DATABASE_URL` (default
postgresql://postgres@127.0.0.1:5432/veil_bench_capacity), dropped and recreated on every run;
refuses any name that does not start with `veil_bench`.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from bench import ROOT
from bench.timing import table

DB_URL = os.environ.get(
    "CAPACITY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/veil_bench_capacity"
)
ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": DB_URL,
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "STATIC_MANIFEST": "0",
    "LOG_LEVEL": "WARNING",
    "VEIL_SIGNING_KEY": "bench-signing-key-not-for-production-0123456789",
    "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
    # Slack on, so requests write the outbox rows they write in production; nothing is sent.
    "SLACK_BOT_TOKEN": "xoxb-bench",
    "SLACK_SIGNING_SECRET": "bench",
    "SLACK_TEAM_ID": "T0BENCH",
    "SLACK_APP_ID": "A0BENCH",
    "SLACK_APPROVAL_CHANNEL": "C0BENCH",
    "CELERY_BROKER_URL": "memory://localhost/",
    "REDIS_URL": "",
}
COLUMNS = [f"c{n:02d}" for n in range(20)]
GRANTED = ("c01", "c05", "c09", "c13")  # four of the twenty, as in the HTTP bench's mix
SIZED_TABLES = {
    "audit_decisionrecord": "unmask record (4 columns unmasked)",
    "audit_accessevent": "access event (4 unmasked, 16 masked)",
    "audit_auditevent": "audit event (chained)",
    "jitaccess_accessrequest": "access request",
    "jitaccess_approval": "approval",
    "jitaccess_notification": "outbox row",
    "masking_exemption": "grant (exemption)",
}


def _option(argv: list[str], name: str, default: str) -> str:
    prefix = f"--{name}="
    return next((a[len(prefix) :] for a in argv if a.startswith(prefix)), default)


def _django() -> None:
    name = urlsplit(DB_URL).path.lstrip("/")
    if not name.startswith("veil_bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: this bench owns veil_bench* only")
    import psycopg

    admin = urlsplit(DB_URL)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.update(ENV)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- 2. a small company's data, through Veil's services --------------------------------------------


@dataclass
class Company:
    """The shop's catalog (one 20-column table), two approvers and an approval policy needing both."""

    project: Any
    database: Any
    approvers: tuple[Any, Any]
    serial: Iterator[int] = field(default_factory=itertools.count)


def build_company() -> Company:
    from audit.models import Channel
    from audit.services import SYSTEM
    from identity.models import Role, User
    from jitaccess.models import ApprovalPolicy
    from masking.models import Database, Project
    from masking.services.catalog import catalog_upsert

    project = Project.objects.create(key="shop", title="Shop")
    table_spec = {
        "name": "customers",
        "columns": [{"name": c, "data_type": "text", "classification_level": 3} for c in COLUMNS],
    }
    catalog_upsert(
        instance_spec={"id": "prod-pg", "engine": "postgresql", "environment": "prod"},
        databases=[
            {"name": "shop", "project": "shop", "schemas": [{"name": "public", "tables": [table_spec]}]}
        ],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    approvers = Role.objects.create(name="pii-approvers")
    bob = User.objects.create_user(username="bob", email="bob@example.com", email_verified=True)
    carol = User.objects.create_user(username="carol", email="carol@example.com", email_verified=True)
    approvers.users.add(bob, carol)
    policy = ApprovalPolicy.objects.create(
        project=project, title="prod PII", condition="true", approvals_required=2
    )
    policy.approver_roles.add(approvers)
    return Company(project, Database.objects.get(name="shop"), (bob, carol))


def grow(company: Company, *, people: int, records: int) -> dict[str, float]:
    """`people` more engineers ask for four columns, both approvers approve, `records` decisions
    are answered for them (each an unmask record) and reported as access events, the grants
    expire, the records are sealed. Returns what one request's life wrote."""
    from django.utils import timezone
    from guardian.shortcuts import assign_perm

    from audit.models import AuditEvent, Channel
    from audit.services import record_access_events, seal_decisions
    from identity.models import User
    from jitaccess.models import AccessRequest, Notification
    from jitaccess.selectors.scopes import Scope
    from jitaccess.services.grants import requests_sweep
    from jitaccess.services.requests import request_approve, request_create
    from masking.decisions.engine import ColumnKey
    from masking.decisions.service import decide_columns

    bob, carol = company.approvers
    events_before, outbox_before = AuditEvent.objects.count(), Notification.objects.count()
    names = []
    for _ in range(people):
        name = f"engineer{next(company.serial):06d}"
        person = User.objects.create_user(username=name, email=f"{name}@example.com", email_verified=True)
        assign_perm("masking.request_unmask", person, company.project)
        request = request_create(
            requester=person,
            scope=Scope(company.database, "public", "customers", GRANTED),
            duration=timedelta(hours=2),
            reason="INC-4711 refund mismatch between the ledger and the shop",
            ticket="https://tickets.example.com/INC-4711",
            channel=Channel.WEB,
        )
        request_approve(request_id=request.pk, approver=bob, channel=Channel.SLACK)
        request_approve(request_id=request.pk, approver=carol, channel=Channel.WEB)
        names.append(name)

    keys = [ColumnKey("prod-pg", "shop", "public", "customers", c) for c in COLUMNS]
    labels = [k.label() for k in keys]
    unmasked = [label for label in labels if label.rsplit(".", 1)[1] in GRANTED]
    masked = [label for label in labels if label not in unmasked]
    events = []
    for n in range(records):
        query_id = f"q-{next(company.serial):09d}"
        result = decide_columns(
            service_account="sql-proxy",
            principal_spec={"user": names[n % len(names)]},
            asserted_groups=[],
            query_id=query_id,
            columns=keys,
        )
        assert sum(d.unmask for d in result.decisions) == len(GRANTED), "the grant did not unmask"
        events.append(
            {
                "occurred_at": timezone.now(),
                "principal_type": "user",
                "principal": names[n % len(names)],
                "query_id": query_id,
                "unmasked_columns": unmasked,
                "masked_columns": masked,
                "row_count": 12,
                "fingerprint": "a1b2c3d4e5f60718",
            }
        )
    for start in range(0, records, 1000):
        record_access_events(service_account="sql-proxy", events=events[start : start + 1000])
    requests_sweep(now=AccessRequest.objects.latest("pk").expires_at + timedelta(minutes=1))
    lifecycle_events = AuditEvent.objects.count() - events_before
    while seal_decisions() is not None:
        pass
    return {
        "audit events per request (created to expired)": lifecycle_events / people,
        "outbox rows per request": (Notification.objects.count() - outbox_before) / people,
    }


def table_sizes() -> dict[str, tuple[int, int, float]]:
    """Per table: rows, bytes on disk (heap, indexes, TOAST), the average row alone."""
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        for name in SIZED_TABLES:
            cursor.execute(
                f"SELECT count(*), pg_total_relation_size('{name}'), "  # noqa: S608 (our table names)
                f"coalesce(avg(pg_column_size(t.*)), 0) FROM {name} t"
            )
            sizes[name] = cursor.fetchone()
    return sizes


def row_sizes(
    before: dict[str, tuple[int, int, float]], after: dict[str, tuple[int, int, float]]
) -> list[list[str]]:
    """What each added row cost on disk (the difference between two sizes over the rows added),
    so pages every table has however small (an index's root, a GIN index's pending list) are not
    billed to the rows."""
    rows = []
    for name, what in SIZED_TABLES.items():
        (count0, total0, _), (count1, total1, alone) = before[name], after[name]
        added = count1 - count0
        rows.append(
            [
                what,
                f"{added:,}",
                f"{(total1 - total0) / added:,.0f} B" if added else "-",
                f"{alone:,.0f} B",
            ]
        )
    return rows


# --- 1. commits per second -------------------------------------------------------------------------


def _rate(write: Callable[[int], None], writers: int, seconds: float) -> float:
    """Commits per second from `writers` threads, each on its own connection, for `seconds`."""
    from django.db import connection

    counts = [0] * writers
    start = threading.Barrier(writers + 1)
    deadline: list[float] = []

    def run(slot: int) -> None:
        write(slot)  # connect and prepare outside the timed window
        start.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            write(slot)
            n += 1
        counts[slot] = n
        connection.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(writers)]
    for thread in threads:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def commit_rates(writer_counts: list[int], seconds: float, rounds: int) -> list[list[str]]:
    import psycopg
    from django.db import connection

    from audit.models import DecisionRecord
    from audit.services import record_unmask_decisions

    sample = DecisionRecord.objects.order_by("pk").first()
    assert sample is not None
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_bare_commit (id bigserial PRIMARY KEY, n integer NOT NULL)")

    def bare(slot: int) -> None:
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute("INSERT INTO bench_bare_commit (n) VALUES (%s)", [slot], prepare=True)

    def veil(slot: int) -> None:
        record_unmask_decisions(
            service_account=sample.service_account,
            principal_type=sample.principal_type,
            principal_id=sample.principal_id,
            principal_name=sample.principal_name,
            query_id=sample.query_id,
            policy_version=sample.policy_version,
            asserted_groups=sample.asserted_groups,
            unmasked=sample.unmasked,
        )

    rows = []
    for writers in writer_counts:
        runs: dict[str, list[float]] = {"bare": [], "veil": []}
        for _ in range(rounds):
            runs["bare"].append(_rate(bare, writers, seconds))
            runs["veil"].append(_rate(veil, writers, seconds))
        ratios = [v / b for v, b in zip(runs["veil"], runs["bare"], strict=True)]
        rows.append(
            [
                str(writers),
                f"{statistics.median(runs['veil']):,.0f}/s",
                f"{statistics.median(runs['bare']):,.0f}/s",
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
            ]
        )
    return rows


def main(argv: list[str]) -> int:
    seconds = float(_option(argv, "seconds", "3"))
    rounds = int(_option(argv, "rounds", "3"))
    writer_counts = [int(n) for n in _option(argv, "writers", "1,4,16").split(",")]
    requests = int(_option(argv, "requests", "400"))
    records = int(_option(argv, "records", "10000"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench.capacity: {os.cpu_count()} CPUs, load average {load}, database {urlsplit(DB_URL).path[1:]}")
    _django()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), current_setting('synchronous_commit'), current_setting('fsync')")
        version, synchronous_commit, fsync = cursor.fetchone()
    print(f"  {version.split(' on ')[0]}, synchronous_commit={synchronous_commit}, fsync={fsync}")
    t0 = time.perf_counter()
    company = build_company()
    grow(company, people=max(1, requests // 2), records=records // 2)
    before = table_sizes()
    counted = grow(company, people=max(1, requests // 2), records=records // 2)
    after = table_sizes()
    print(f"  company built in {time.perf_counter() - t0:.1f}s: {requests} requests, {records} decisions")
    print("  " + ", ".join(f"{k} {v:g}" for k, v in counted.items()))
    print("\nBytes per row (the second half's rows: on disk over the rows added; after VACUUM ANALYZE)")
    print(
        table(
            ["row", "rows added", "on disk (heap, indexes, TOAST)", "the row alone"],
            row_sizes(before, after),
            markdown="--markdown" in argv,
        )
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nCommits per second ({rounds} rounds of {seconds:g} s, median; load average before {load})")
    rates = commit_rates(writer_counts, seconds, rounds)
    print(
        table(
            ["connections", "unmask records", "bare commits", "records / bare"],
            rates,
            markdown="--markdown" in argv,
        )
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
