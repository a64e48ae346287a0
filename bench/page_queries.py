"""Queries per page as the data grows: finds pages whose query count grows with the data (N+1).

    .venv/bin/python -m bench.page_queries [--steps 3 30 300] [--events 50000]

Loads the demo company, then grows it through Veil's own services (people, catalog columns,
requests approved, denied and pending, break-glass grants, exemptions, service accounts and
their tokens, grants, audit events), and after each step loads every page as alice (engineer),
bob (approver), dave (compliance), erin (project administrator by object permission) and admin
(superuser) through Django's test client, counting queries (`CaptureQueriesContext`, on the
second load so per-process caches are warm). A page whose count moves between steps has an N+1.
Results and the dataset sizes: docs/performance.md, "Queries per page as the data grows".

Owns `PAGES_DATABASE_URL` (default postgresql://postgres@127.0.0.1:5432/veil_bench_pages), which
it drops and recreates; it refuses any database whose name does not start with `veil_bench`.
Query counts only: no timings (they would need a quiet machine; the counts do not).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

PAGES_DATABASE_URL = os.environ.get(
    "PAGES_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/veil_bench_pages"
)

USERS = ("alice", "bob", "dave", "erin", "admin")


def _setup() -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": PAGES_DATABASE_URL,
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "STATIC_MANIFEST": "0",
            "ALLOWED_HOSTS": "testserver",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()


def _recreate() -> None:
    import psycopg

    parts = urlsplit(PAGES_DATABASE_URL)
    name = parts.path.lstrip("/")
    if not name.startswith("veil_bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: this bench only owns veil_bench*")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _table(name: str, columns: int) -> dict[str, Any]:
    cols = [{"name": "id", "data_type": "bigint"}, {"name": "email", "data_type": "text"}]
    cols += [{"name": f"note_{i}", "data_type": "text"} for i in range(columns - 2)]
    return {"name": name, "columns": cols}


def grow(step: int, size: int, events: int) -> dict[str, int]:
    """Add `size` of everything (and `events` audit events), all through Veil's services."""
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from audit.models import AuditEvent, Channel
    from audit.services import SYSTEM, Actor, Target, record_event
    from identity.models import ApiToken, ServiceAccount, User
    from identity.models import Scope as TokenScope
    from identity.services import token_create
    from jitaccess.models import AccessRequest
    from jitaccess.selectors.scopes import Scope
    from jitaccess.services.breakglass import breakglass_take
    from jitaccess.services.requests import request_approve, request_create, request_deny
    from masking.models import Column, Database, Exemption, Project
    from masking.services.catalog import catalog_upsert
    from masking.services.policy import exemption_create, grant_condition, grant_create

    shop = Project.objects.get(key="shop")
    engineering = Group.objects.get(name="engineering")
    bob, erin, alice, admin = (User.objects.get(username=n) for n in ("bob", "erin", "alice", "admin"))
    tables = [_table(f"gen{step}_t{i}", 20) for i in range(size)]
    catalog_upsert(
        instance_spec={
            "id": "prod-pg",
            "engine": "postgresql",
            "environment": "prod",
            "title": "prod PostgreSQL",
        },
        databases=[
            {"name": "shop", "project": "shop", "schemas": [{"name": f"gen{step}", "tables": tables}]}
        ],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    prod_shop = Database.objects.get(instance__key="prod-pg", name="shop")
    people = []
    for i in range(size):
        user = User.objects.create_user(
            username=f"eng{step}_{i}", email=f"eng{step}_{i}@example.com", display_name=f"Engineer {step}-{i}"
        )
        user.groups.add(engineering)
        people.append(user)
    for i, table in enumerate(tables):
        for requester in (people[i], alice):
            scope = Scope(prod_shop, f"gen{step}", table["name"], ("email",))
            created = request_create(
                requester=requester,
                scope=scope,
                duration=timedelta(hours=2),
                reason=f"generated {step}-{i}",
                channel=Channel.WEB,
            )
            if i % 3 == 0:
                request_approve(request_id=created.pk, approver=bob, channel=Channel.WEB)
            elif i % 3 == 1:
                request_deny(request_id=created.pk, approver=bob, reason="no", channel=Channel.WEB)
        if i % 4 == 0:
            breakglass_take(
                requester=erin if i % 8 else admin,
                scope=Scope(prod_shop, f"gen{step}", table["name"], ("email",)),
                duration=timedelta(hours=1),
                reason=f"INC-{step}-{i}",
                channel=Channel.WEB,
            )
        if i % 5 == 0:
            exemption_create(
                project=shop,
                reason=f"generated exemption {step}-{i}",
                condition=f'resource.table_name == "{table["name"]}"',
                users=[people[i]],
                created_by=None,
                actor=SYSTEM,
                channel=Channel.CLI,
            )
            account = ServiceAccount.objects.create(name=f"svc-{step}-{i}", owner=people[i])
            for n in range(2):
                token_create(
                    service_account=account,
                    name=f"t{n}",
                    scopes=[TokenScope.DECISIONS],
                    created_by=None,
                    channel=Channel.CLI,
                )
    # Grants straight from the service too (as the API's integrations make them): ten per person.
    expires_at = timezone.now() + timedelta(days=1)
    for i in range(size * 10):
        table = tables[i % size]
        grant_create(
            project=shop,
            principal=people[i % size],
            condition=grant_condition(
                instance="prod-pg",
                database="shop",
                schema=f"gen{step}",
                table=table["name"],
                columns=[f"note_{i % 18}"],
            ),
            expires_at=expires_at,
            reason=f"generated grant {step}-{i}",
            request_ref="",
            actor=SYSTEM,
            channel=Channel.SYSTEM,
        )
    actor = Actor(type="user", id=str(alice.pk), name="alice")
    for i in range(events):
        record_event(
            action="request.viewed",
            actor=actor,
            channel=Channel.WEB,
            target=Target(type="access_request", id=str(i), repr=f"generated {i}"),
            project="shop",
            detail={"n": i},
        )
    return {
        "people": User.objects.count(),
        "catalog columns": Column.objects.count(),
        "requests": AccessRequest.objects.count(),
        "exemptions and grants": Exemption.objects.count(),
        "service accounts": ServiceAccount.objects.count(),
        "tokens": ApiToken.objects.count(),
        "audit events": AuditEvent.objects.count(),
    }


def pages() -> list[tuple[str, str, tuple[str, ...]]]:
    """(label, url, who may load it) for every page measured."""
    from audit.models import AuditEvent
    from audit.reports import REPORTS
    from jitaccess.models import AccessRequest
    from masking.models import PolicyVersion

    mine = AccessRequest.objects.filter(requester__username="alice").order_by("pk").first()
    assert mine is not None
    last_version = PolicyVersion.objects.order_by("-number").values_list("number", flat=True).first()
    last_event = (
        AuditEvent.objects.filter(action="request.created")
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    everyone = USERS
    admin_only = ("admin",)
    audit_readers = ("dave", "erin", "admin")
    admins = ("erin", "admin")
    rows = [
        ("home", "/", everyone),
        ("My requests", "/requests/", everyone),
        ("a request", f"/requests/{mine.pk}/", ("alice", "bob", "erin", "admin")),
        ("new request", "/requests/new/", everyone),
        ("Approvals", "/approvals/", ("bob", "erin", "admin")),
        ("break-glass", "/breakglass/", admins),
        ("break-glass reviews", "/breakglass/reviews/", admins),
        ("catalog", "/policy/catalog/", everyone),
        ("policy overview", "/policy/", admin_only),
        ("rules", "/policy/rules/", admin_only),
        ("semantic types", "/policy/semantic-types/", admin_only),
        ("exemptions", "/policy/exemptions/", admin_only),
        ("approval policies", "/policy/approval-policies/", admin_only),
        ("versions", "/policy/versions/", admin_only),
        ("a version", f"/policy/versions/{last_version}/", admin_only),
        ("changes", "/policy/changes/", admin_only),
        ("checks", "/policy/checks/", admin_only),
        ("insights", "/policy/insights/", admin_only),
        ("policy settings", "/policy/settings/", admin_only),
        ("audit dashboard", "/audit/", audit_readers),
        ("audit events", "/audit/events/", audit_readers),
        ("an audit event", f"/audit/events/{last_event}/", audit_readers),
        ("audit exports", "/audit/exports/", audit_readers),
        ("service accounts", "/service-accounts/", admin_only),
        ("API requests", "/api/v1/requests", everyone),
        ("API audit events", "/api/v1/audit/events", audit_readers),
    ]
    # The events report is the events page (/audit/events/); the others have a page of their own.
    rows += [(f"report {key}", f"/audit/reports/{key}/", audit_readers) for key in REPORTS if key != "events"]
    return rows


def measure() -> dict[tuple[str, str], tuple[int, int]]:
    """(page, user) -> (queries, HTTP status)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from identity.models import User

    out = {}
    for username in USERS:
        client = Client()
        client.force_login(User.objects.get(username=username))
        client.get("/")  # session and per-process caches warm, as for a person already logged in
        for label, url, who in pages():
            if username not in who:
                continue
            client.get(url)  # warm: per-process caches (the live policy) rebuild once per change
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(url)
            out[(label, username)] = (len(ctx.captured_queries), response.status_code)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 30], help="items added per step")
    parser.add_argument("--events", type=int, default=2000, help="audit events added per step")
    args = parser.parse_args(argv)
    _recreate()
    _setup()
    from django.core.management import call_command

    from jitaccess.demo import load_demo_data

    call_command("migrate", verbosity=0, interactive=False)
    load_demo_data()
    columns: list[dict[tuple[str, str], tuple[int, int]]] = []
    sizes = []
    for step, size in enumerate(args.steps):
        t0 = time.perf_counter()
        sizes.append(grow(step, size, args.events))
        print(f"step {step}: +{size} of each, {sizes[-1]} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        columns.append(measure())
    for step, size in enumerate(sizes):
        print(f"step {step}: " + ", ".join(f"{n:,} {what}" for what, n in size.items()) + "\n")
    print("| page | user | " + " | ".join(f"step {i}" for i in range(len(columns))) + " |")
    print("|---|---|" + "---|" * len(columns))
    for key in columns[0]:
        counts = [c.get(key, (0, 0)) for c in columns]
        grew = " **grows**" if len({q for q, _ in counts}) > 1 else ""
        cells = " | ".join(f"{q}" + ("" if s == 200 else f" ({s})") for q, s in counts)
        print(f"| {key[0]} | {key[1]} | {cells}{grew} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
