"""Verifying the whole log on request ("Verify the log now" on the dashboard) and keeping the result.

The verification is `audit.selectors.verify_chain`: exactly what `manage.py audit verify`, every
export manifest and the daily `audit.tasks.verify_log` run. It reads the whole log (about 21 s per
million events, docs/performance-audit.md): too long for a web request, so the dashboard queues a
`VerificationRun` that a Celery worker runs (`audit.tasks.run_verification`), and shows the latest
result. The daily task records its result as a run too, so "last verified" covers both.

One run at a time: asking while one is queued or running gets that one. If the broker cannot be
reached the run is marked as not run at once (the reader is told to try again or use the CLI) rather
than left queued for nobody.

Like `manage.py audit verify`, a verification appends nothing to the audit log: the chain is read,
not changed. The run row says who asked, when, and what was found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import VerificationRun, VerificationState
from audit.selectors import verify_chain

logger = logging.getLogger(__name__)

# A run queued this long has not been picked up by any worker; one running this long lost its worker.
QUEUE_WAIT = timedelta(minutes=15)
STALE_AFTER = timedelta(hours=1)
SCHEDULED = "Daily check"
_BROKER_DOWN = (
    "the task queue could not be reached, so the verification was not started; try again in a "
    "moment, or ask an operator to run manage.py audit verify"
)


def _in_flight_q(now: datetime) -> Q:
    return Q(state=VerificationState.PENDING, created_at__gte=now - QUEUE_WAIT) | Q(
        state=VerificationState.RUNNING, started_at__gte=now - STALE_AFTER
    )


def verification_run_request(*, user: Any) -> tuple[VerificationRun, bool]:
    """Queue a verification for a signed-in audit reader. Returns the run and whether it is new: a
    run already queued or running is returned as it is, and nothing more is queued."""
    now = timezone.now()
    current = VerificationRun.objects.filter(_in_flight_q(now)).order_by("-created_at").first()
    if current is not None:
        return current, False
    run = VerificationRun.objects.create(requested_by_pk=user.pk, requested_by=str(user))
    transaction.on_commit(lambda: _enqueue(run.pk))
    return run, True


def _enqueue(run_id: int) -> None:
    from audit.tasks import run_verification

    try:
        # No publish retries: the reader's request waits for this (as jitaccess's deliveries do).
        run_verification.apply_async((run_id,), retry=False)
    except Exception:
        logger.warning("audit verification %s not enqueued (broker unreachable)", run_id)
        VerificationRun.objects.filter(pk=run_id, state=VerificationState.PENDING).update(
            state=VerificationState.FAILED, error=_BROKER_DOWN, finished_at=timezone.now()
        )


def verification_run_execute(*, run_id: int) -> VerificationRun:
    """Run one queued verification. Idempotent: the run is claimed from `pending` (or from a
    `running` whose worker died, after STALE_AFTER) by a conditional update, so a redelivered
    message finds it claimed and does nothing."""
    now = timezone.now()
    claimed = (
        VerificationRun.objects.filter(pk=run_id)
        .filter(
            Q(state=VerificationState.PENDING)
            | Q(state=VerificationState.RUNNING, started_at__lt=now - STALE_AFTER)
        )
        .update(state=VerificationState.RUNNING, started_at=now)
    )
    run = VerificationRun.objects.get(pk=run_id)
    return _verify_into(run) if claimed else run


def verification_run_scheduled() -> VerificationRun:
    """The daily task's verification, kept as a run so that the dashboard shows it."""
    run = VerificationRun.objects.create(
        requested_by=SCHEDULED, state=VerificationState.RUNNING, started_at=timezone.now()
    )
    return _verify_into(run)


def _verify_into(run: VerificationRun) -> VerificationRun:
    try:
        result = verify_chain()
    except Exception as exc:
        logger.exception("audit verification %s could not run", run.pk)
        run.state, run.error, run.finished_at = VerificationState.FAILED, str(exc)[:2000], timezone.now()
        run.save(update_fields=["state", "error", "finished_at"])
        return run
    if result.ok:
        logger.info("%s", result.summary())
    else:
        logger.error("%s", result.summary())
    for warning in result.warnings:
        logger.warning("audit: %s", warning)
    breaks = sorted(result.breaks, key=lambda b: b.seq)
    run.state, run.ok, run.finished_at = VerificationState.DONE, result.ok, timezone.now()
    run.result = {
        **result.as_dict(),
        "breaks": [{"seq": b.seq, "reason": b.reason} for b in breaks],
    }
    run.save(update_fields=["state", "ok", "result", "finished_at"])
    return run


@dataclass(frozen=True)
class VerificationStatus:
    """What the dashboard says about verification: the latest result, and the latest request if it
    is newer (queued, running, not run, or never picked up by a worker)."""

    last_result: VerificationRun | None
    latest_request: VerificationRun | None
    now: datetime

    @property
    def in_flight(self) -> bool:
        run = self.latest_request
        if run is None:
            return False
        if run.state == VerificationState.PENDING:
            return run.created_at >= self.now - QUEUE_WAIT
        return run.state == VerificationState.RUNNING and (
            run.started_at is not None and run.started_at >= self.now - STALE_AFTER
        )

    @property
    def stuck(self) -> bool:
        """Asked for, but no worker took it (or the worker died)."""
        run = self.latest_request
        return (
            run is not None
            and run.state in (VerificationState.PENDING, VerificationState.RUNNING)
            and not self.in_flight
        )

    @property
    def not_run(self) -> bool:
        run = self.latest_request
        return run is not None and run.state == VerificationState.FAILED


def verification_status(*, now: datetime | None = None) -> VerificationStatus:
    now = now or timezone.now()
    last_result = (
        VerificationRun.objects.filter(state=VerificationState.DONE).order_by("-finished_at", "-pk").first()
    )
    latest = VerificationRun.objects.order_by("-created_at", "-pk").first()
    if latest is not None and latest.state == VerificationState.DONE:
        latest = None  # the newest request has finished: it is (or is older than) the last result
    return VerificationStatus(last_result=last_result, latest_request=latest, now=now)
