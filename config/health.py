"""`/healthz` (the process answers) and `/readyz` (it can do its work), for load balancers and compose.

Liveness says nothing about dependencies: restarting a web server because PostgreSQL is away would
only add a cold start to the outage. Readiness checks what a request needs: PostgreSQL answers and
every migration this code knows is applied (a node started on new code before `migrate` ran must
not take traffic). Whether the Celery broker accepts a connection is reported too, but does not
make a node unready: without the broker, decisions and approvals still work and notifications
wait in the outbox until it is back (docs/jit.md), so taking every node
out of the load balancer during a Redis outage would turn a delay into an outage (the
several-nodes test, tests/ops/test_several_nodes.py, runs one).

Both are unauthenticated, so an answer names the failing check but never the error's text (which
can carry host names); the details go to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# Once every migration is applied it stays so for this process's code: checked until true, then
# remembered, because loading the migration graph costs tens of milliseconds.
_migrations_applied = False


def database_reachable() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def migrations_applied() -> None:
    global _migrations_applied
    if _migrations_applied:
        return
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        raise RuntimeError(f"{len(plan)} migration(s) not applied, first {plan[0][0]}")
    _migrations_applied = True


def broker_reachable() -> None:
    """Opens (and closes) one connection to the broker, with the settings' connect timeout."""
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


CHECKS: dict[str, Callable[[], None]] = {
    "database": database_reachable,
    "migrations": migrations_applied,
    "broker": broker_reachable,
}
REQUIRED = ("database", "migrations")  # a node failing one of these must not take traffic


def readiness() -> dict[str, str]:
    """Each check's outcome, "ok" or "failed", in order; a check after a failed database is skipped."""
    outcome: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and outcome.get("database") != "ok":
            outcome[name] = "skipped"
            continue
        try:
            check()
        except Exception:
            logger.warning("readiness check %s failed", name, exc_info=True)
            outcome[name] = "failed"
        else:
            outcome[name] = "ok"
    return outcome


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness()
    ready = all(checks[name] == "ok" for name in REQUIRED)
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)
