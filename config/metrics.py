"""`GET /metrics`: Veil in Prometheus' text format, for a scraper holding a token or on an allowed network.

Two kinds of series: counters and histograms each process keeps (`shared.metrics`; under gunicorn
merged from every worker's files by prometheus-client's multiprocess collector), and gauges read
from PostgreSQL at scrape time (`StateCollector`), which hold for the whole deployment whichever
node is scraped. A scrape that cannot reach PostgreSQL still answers, with `veil_state_up 0`.

Access: `METRICS_TOKEN` (sent as `Authorization: Bearer ...`) or `METRICS_ALLOWED_NETWORKS` (CIDRs
matched against the connecting address, never a forwarded header). With neither set the endpoint
refuses everyone: metrics name projects' request counts and the audit log's state.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from audit.models import AuditEvent, AuditStream, ChainHead, Checkpoint
from jitaccess.models import AccessRequest, DeliveryState, Notification
from jitaccess.states import State
from masking.models import Exemption, ExemptionKind
from shared.metrics import count_login_failure

logger = logging.getLogger(__name__)

SWEEP_LAST_RUN_KEY = "veil:metrics:sweep-last-run"
SWEEP_TASK = "jitaccess.tasks.sweep_requests"


class StateCollector(Collector):
    """Gauges of the deployment's state, each one query, read when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("veil_state_up", "1 if the state gauges below could be read from PostgreSQL")
        try:
            families = list(self._state())
        except Exception:
            logger.warning("metrics: could not read Veil's state from the database", exc_info=True)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        try:
            last_sweep = cache.get(SWEEP_LAST_RUN_KEY)
        except Exception:
            logger.warning("metrics: could not read the sweep's last run from the cache", exc_info=True)
            last_sweep = None
        if last_sweep is not None:
            yield GaugeMetricFamily(
                "veil_sweep_last_success_timestamp_seconds",
                "When beat's request sweep (expire grants, time out requests) last finished (Unix time)",
                value=float(last_sweep),
            )

    def _state(self) -> Iterator[Metric]:
        now = timezone.now()
        yield GaugeMetricFamily(
            "veil_requests_pending",
            "Unmask requests waiting for approval",
            value=AccessRequest.objects.filter(state=State.PENDING).count(),
        )
        yield GaugeMetricFamily(
            "veil_grants_in_force",
            "Grants in force now (started, not expired, not revoked)",
            value=Exemption.objects.filter(
                kind=ExemptionKind.GRANT, revoked_at__isnull=True, expires_at__gt=now
            )
            .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
            .count(),
        )
        backlog = GaugeMetricFamily(
            "veil_outbox_backlog",
            "Notifications written but not yet delivered, by channel",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "veil_outbox_oldest_age_seconds",
            "Age of the oldest undelivered notification, by channel",
            labels=["channel"],
        )
        failing = GaugeMetricFamily(
            "veil_outbox_delivery_failures",
            "Notifications whose delivery failed, by channel: still retrying, or gave_up",
            labels=["channel", "state"],
        )
        rows = (
            Notification.objects.filter(state=DeliveryState.PENDING)
            .values("channel")
            .annotate(n=Count("id"), oldest=Min("created_at"), retrying=Count("id", filter=~Q(last_error="")))
        )
        for row in rows:
            backlog.add_metric([row["channel"]], row["n"])
            oldest.add_metric([row["channel"]], (now - row["oldest"]).total_seconds())
            failing.add_metric([row["channel"], "retrying"], row["retrying"])
        gave_up = (
            Notification.objects.filter(state=DeliveryState.FAILED).values("channel").annotate(n=Count("id"))
        )
        for given_up in gave_up:
            failing.add_metric([given_up["channel"], "gave_up"], given_up["n"])
        yield backlog
        yield oldest
        yield failing
        yield from _audit_state(now)


def _audit_state(now: Any) -> Iterator[Metric]:
    """How far the chain's head runs ahead of the last signed checkpoint, in events and in time."""
    head = ChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
    checkpoint = Checkpoint.objects.order_by("-seq").values("seq", "signed_at").first()
    covered = checkpoint["seq"] if checkpoint else 0
    yield GaugeMetricFamily(
        "veil_audit_events_since_checkpoint",
        "Audit events chained after the last signed checkpoint",
        value=max(head - covered, 0),
    )
    first_uncovered = (
        AuditEvent.objects.filter(seq__gt=covered)
        .order_by("seq")
        .values_list("occurred_at", flat=True)
        .first()
    )
    yield GaugeMetricFamily(
        "veil_audit_unchecked_age_seconds",
        "Age of the oldest audit event no signed checkpoint covers yet (0: the head is signed)",
        value=(now - first_uncovered).total_seconds() if first_uncovered else 0.0,
    )
    if checkpoint:
        yield GaugeMetricFamily(
            "veil_audit_checkpoint_timestamp_seconds",
            "When the last checkpoint was signed (Unix time)",
            value=checkpoint["signed_at"].timestamp(),
        )
    yield from _stream_state(head)


def _stream_state(head: int) -> Iterator[Metric]:
    """Per audit stream: how far its cursor is behind the chain head, whether it is enabled (a
    disabled one receives nothing until an operator enables it), and its failures in a row."""
    behind = GaugeMetricFamily(
        "veil_audit_stream_behind_events", "Audit events past the stream's cursor", labels=["stream"]
    )
    enabled = GaugeMetricFamily(
        "veil_audit_stream_enabled", "1 if the audit stream is enabled, 0 if disabled", labels=["stream"]
    )
    failures = GaugeMetricFamily(
        "veil_audit_stream_failures", "Consecutive failed deliveries to the audit stream", labels=["stream"]
    )
    for name, last_seq, on, failed in AuditStream.objects.values_list(
        "name", "last_seq", "enabled", "failures"
    ):
        behind.add_metric([name], max(head - last_seq, 0))
        enabled.add_metric([name], 1 if on else 0)
        failures.add_metric([name], failed)
    yield behind
    yield enabled
    yield failures


def exposition() -> bytes:
    """This process's counters, or every gunicorn worker's in multiprocess mode, then the state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged) + generate_latest(_state_registry)
    return generate_latest(REGISTRY) + generate_latest(_state_registry)


# Not the default registry: collecting it queries the database, which only a scrape may do.
_state_registry = CollectorRegistry()
_state_registry.register(StateCollector())


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
            return True
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net) for net in networks)
    return False


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not (settings.METRICS_TOKEN or settings.METRICS_ALLOWED_NETWORKS):
        return HttpResponse(
            "Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_NETWORKS.\n",
            status=403,
            content_type="text/plain",
        )
    if not _allowed(request):
        response = HttpResponse("A metrics token or an allowed address is required.\n", status=401)
        response["Content-Type"] = "text/plain"
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def record_sweep_success(**kwargs: Any) -> None:
    """Celery `task_success` receiver: remembers when beat's sweep last finished (shared cache)."""
    sender = kwargs.get("sender")
    if getattr(sender, "name", None) != SWEEP_TASK:
        return
    try:
        cache.set(SWEEP_LAST_RUN_KEY, time.time(), timeout=int(timedelta(days=7).total_seconds()))
    except Exception:
        logger.warning("metrics: could not record the sweep's run", exc_info=True)


def count_sign_in_failure(**kwargs: Any) -> None:
    """Django's `user_login_failed` receiver (password and IdP sign-ins)."""
    count_login_failure("failed")


def count_lockout(**kwargs: Any) -> None:
    """django-axes' `user_locked_out` receiver."""
    count_login_failure("locked_out")


def connect_signals() -> None:
    """Called once from the config app's ready()."""
    from axes.signals import user_locked_out
    from celery.signals import task_success
    from django.contrib.auth.signals import user_login_failed

    task_success.connect(record_sweep_success, weak=False, dispatch_uid="veil-metrics-sweep")
    user_login_failed.connect(count_sign_in_failure, weak=False, dispatch_uid="veil-metrics-login")
    user_locked_out.connect(count_lockout, weak=False, dispatch_uid="veil-metrics-lockout")
