"""The bench database: recreated, migrated and loaded with bench.policy_fixture through Veil's
own services (catalog_upsert, semantic_type_save, rule_save, exemption_create, grant_create,
token_create); the grant population is bulk-inserted as the rows grant_create would write."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from bench import BENCH_DATABASE_URL, django_setup
from bench.policy_fixture import (
    EXEMPTIONS,
    INSTANCES,
    NAMED_GRANTS,
    NAMED_PRINCIPALS,
    PROJECTS,
    ROLES,
    RULES,
    SEMANTIC_TYPES,
    TRUE,
    Fixture,
    grant_cel,
    to_cel,
)


@dataclass
class World:
    """What the HTTP bench needs from the loaded database."""

    now: float
    token: str
    user_pks: dict[str, int]
    grant_rows: int


def _admin_connect() -> Any:
    import psycopg

    parts = urlsplit(BENCH_DATABASE_URL)
    name = parts.path.lstrip("/")
    if not name.startswith("veil_bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: the bench only owns veil_bench*")
    admin = parts._replace(path="/postgres").geturl()
    return psycopg.connect(admin, autocommit=True), name


def recreate() -> None:
    from django.db import connections

    connections.close_all()
    conn, name = _admin_connect()
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(fx: Fixture) -> World:
    """Drop and recreate the bench database, migrate it, load the fixture (its grants included)."""
    django_setup()
    from django.core.management import call_command

    t0 = time.perf_counter()
    recreate()
    call_command("migrate", verbosity=0, interactive=False)
    t1 = time.perf_counter()
    world = _load(fx)
    print(
        f"  database {urlsplit(BENCH_DATABASE_URL).path.lstrip('/')}: migrated in {t1 - t0:.1f}s, "
        f"fixture loaded in {time.perf_counter() - t1:.1f}s"
    )
    return world


def _catalog_payload(fx: Fixture, instance: str) -> list[dict[str, Any]]:
    databases: dict[str, dict[str, Any]] = {}
    for (inst, database, schema, table), columns in fx.tables.items():
        if inst != instance:
            continue
        db = databases.setdefault(database, {"name": database, "project": columns[0].project, "schemas": {}})
        db["schemas"].setdefault(schema, []).append(
            {
                "name": table,
                "columns": [
                    {
                        "name": c.key.column,
                        "data_type": c.data_type,
                        "classification_level": c.level,
                        "tags": list(c.tags),
                        "semantic_type": c.semantic_type,
                    }
                    for c in columns
                ],
            }
        )
    return [
        {**db, "schemas": [{"name": s, "tables": t} for s, t in db["schemas"].items()]}
        for db in databases.values()
    ]


def _load(fx: Fixture) -> World:
    from django.contrib.auth.models import Group
    from django.db import transaction
    from django.utils import timezone

    from audit.models import Channel
    from audit.services import SYSTEM
    from identity.models import Role, Scope, ServiceAccount, User
    from identity.services import token_create
    from masking.models import Exemption, ExemptionKind, Project
    from masking.services.catalog import catalog_upsert
    from masking.services.policy import exemption_create, grant_create, rule_save, semantic_type_save

    with transaction.atomic():
        projects = {k: Project.objects.create(key=k, title=t) for k, t in PROJECTS.items()}
        types = {
            key: semantic_type_save(key=key, title=title, algorithm=alg, actor=SYSTEM, channel=Channel.CLI)
            for key, title, alg in SEMANTIC_TYPES
        }
        for instance, environment, engine in INSTANCES:
            catalog_upsert(
                instance_spec={
                    "id": instance,
                    "engine": engine,
                    "environment": environment,
                    "title": instance,
                },
                databases=_catalog_payload(fx, instance),
                prune=False,
                actor=SYSTEM,
                channel=Channel.CLI,
            )
        for title, cond, st in RULES:
            rule_save(
                title=title,
                condition=to_cel(cond),
                semantic_type=types[st],
                actor=SYSTEM,
                channel=Channel.CLI,
            )
        groups = {
            g: Group.objects.create(name=g)
            for g in sorted(
                {g for p in NAMED_PRINCIPALS for g in p.groups} | {g for gs in ROLES.values() for g in gs}
            )
        }
        users: dict[str, User] = {}
        accounts: dict[str, ServiceAccount] = {}
        for spec in NAMED_PRINCIPALS:
            if spec.kind == "user":
                user = User.objects.create_user(username=spec.name, email=f"{spec.name}@example.com")
                user.groups.set([groups[g] for g in spec.groups])
                users[spec.name] = user
            else:
                accounts[spec.name] = ServiceAccount.objects.create(name=spec.name)
        proxy = ServiceAccount.objects.create(name="sql-proxy", description="the bench's data-access layer")
        roles = {}
        for name, role_groups in ROLES.items():
            role = roles[name] = Role.objects.create(name=name)
            role.groups.set([groups[g] for g in role_groups])
        for spec in NAMED_PRINCIPALS:
            for r in spec.direct_roles:
                roles[r].service_accounts.add(accounts[spec.name])
        now = timezone.now()
        for e in EXEMPTIONS:
            exemption_create(
                project=projects[e.project],
                reason=e.reason,
                condition="" if e.condition == TRUE else to_cel(e.condition),
                users=[users[u] for u in e.users],
                groups=[groups[g] for g in e.groups],
                roles=[roles[r] for r in e.roles],
                service_accounts=[accounts[s] for s in e.service_accounts],
                expires_at=None if e.expires_in is None else now + timedelta(seconds=e.expires_in),
                created_by=None,
                actor=SYSTEM,
                channel=Channel.CLI,
            )
        for g in fx.grants[: len(NAMED_GRANTS)]:
            who = next(p for p in NAMED_PRINCIPALS if p.key == g.principal_key)
            principal = users[who.name] if who.kind == "user" else accounts[who.name]
            expires_at = now + timedelta(seconds=g.expires_in)
            if g.expires_in > 0:
                grant_create(
                    project=projects[g.project],
                    principal=principal,
                    condition=grant_cel(g),
                    expires_at=expires_at,
                    reason="bench",
                    request_ref=g.request_ref,
                    actor=SYSTEM,
                    channel=Channel.SYSTEM,
                )
            else:  # a grant that has since expired (grant_create refuses a past expiry)
                key = f"user:{principal.pk}" if who.kind == "user" else f"sa:{who.name}"
                Exemption.objects.create(
                    kind=ExemptionKind.GRANT,
                    project=projects[g.project],
                    condition=grant_cel(g),
                    reason="bench",
                    principal_key=key,
                    expires_at=expires_at,
                    request_ref=g.request_ref,
                )
        _, token = token_create(
            service_account=proxy,
            name="bench",
            scopes=[Scope.DECISIONS],
            created_by=None,
            channel=Channel.CLI,
        )
    add_population(fx, start=len(NAMED_GRANTS))
    return World(now.timestamp(), token, {n: u.pk for n, u in users.items()}, grant_rows())


def attach() -> World:
    """The World of an already loaded bench database (a fresh token), for re-running one bench."""
    django_setup()
    from audit.models import Channel
    from identity.models import Scope, ServiceAccount, User
    from identity.services import token_create

    proxy = ServiceAccount.objects.get(name="sql-proxy")
    _, token = token_create(
        service_account=proxy, name="bench", scopes=[Scope.DECISIONS], created_by=None, channel=Channel.CLI
    )
    users = dict(User.objects.values_list("username", "pk"))
    return World(time.time(), token, users, grant_rows())


def add_population(fx: Fixture, *, start: int) -> None:
    """Bulk-insert fx.grants[start:] (other principals' grants), then ANALYZE and move the epoch."""
    from django.db import connection, transaction
    from django.utils import timezone

    from masking.models import Exemption, ExemptionKind, Project
    from masking.services.policy import bump_epoch

    t0 = time.perf_counter()
    projects = dict(Project.objects.values_list("key", "id"))
    now = datetime.fromtimestamp(fx.now, UTC) if fx.now else timezone.now()
    batch: list[Exemption] = []
    with transaction.atomic():
        for g in fx.grants[start:]:
            batch.append(
                Exemption(
                    kind=ExemptionKind.GRANT,
                    project_id=projects[g.project],
                    condition=grant_cel(g),
                    reason="bench",
                    principal_key=g.principal_key,
                    expires_at=now + timedelta(seconds=g.expires_in),
                    request_ref=g.request_ref,
                )
            )
            if len(batch) >= 5000:
                Exemption.objects.bulk_create(batch)
                batch = []
        Exemption.objects.bulk_create(batch)
        bump_epoch(grants=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE masking_exemption")
    print(f"  {len(fx.grants) - start:,} grants inserted in {time.perf_counter() - t0:.1f}s")


def grant_rows() -> int:
    from masking.models import Exemption, ExemptionKind

    return Exemption.objects.filter(kind=ExemptionKind.GRANT).count()


def time_load_grants(world: World, *, iterations: int) -> dict[str, Any]:
    """Median and p99 of `selectors.load_grants` for alice, its query count and query plan."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from masking.models import Exemption, ExemptionKind
    from masking.selectors import load_grants, resolve_principal

    principal = resolve_principal({"user": "alice@example.com"})
    assert principal is not None
    for _ in range(50):
        load_grants(principal)
    with CaptureQueriesContext(connection) as ctx:
        grants = load_grants(principal)
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        load_grants(principal)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    plan = Exemption.objects.filter(
        kind=ExemptionKind.GRANT,
        principal_key=f"user:{principal.id}",
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).explain()
    scan = next((line.strip(" ->") for line in plan.splitlines() if "Scan" in line), plan.splitlines()[0])
    return {
        "rows": grant_rows(),
        "live_for_principal": len(grants),
        "median": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99) - 1],
        "queries": len(ctx.captured_queries),
        "plan": scan.split("  (cost")[0],
    }
