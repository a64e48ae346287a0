"""Celery tasks: interfaces only (ids in, one service call). Schedules live in settings
(CELERY_BEAT_SCHEDULE); docs/audit.md lists the ones audit needs."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audit import services
from audit.exports import export_job_run, jobs_to_sweep
from audit.failures import failure_tallies_fold
from audit.streams.delivery import stream_deliver, streams_due
from audit.verification import verification_run_execute, verification_run_scheduled


@shared_task(ignore_result=True)
def seal_decisions(max_batches: int = 20) -> int:
    """Every AUDIT_SEAL_INTERVAL_S (60 s): seal new decision records and access events into the
    chain. Idempotency key: the last sealed ids in the chain, so overlapping runs seal nothing twice.
    Returns how many seal events were appended (one per batch of at most 50,000 rows per table)."""
    sealed = 0
    while sealed < max_batches and services.seal_decisions() is not None:
        sealed += 1
    return sealed


@shared_task(ignore_result=True)
def checkpoint() -> int | None:
    """Every AUDIT_CHECKPOINT_INTERVAL_S (300 s): sign the chain head. Idempotent: nothing is
    signed when the head has not moved. Returns the seq signed, if any."""
    made = services.checkpoint_create()
    return made.seq if made else None


@shared_task(acks_late=True, ignore_result=True)
def run_export(job_id: int) -> str:
    """Write one export job's file and manifest. Idempotency key: the job row, claimed from
    `pending` by a conditional update, so a redelivered message does nothing."""
    return export_job_run(job_id=job_id).state


@shared_task(ignore_result=True)
def run_pending_exports() -> int:
    """Every minute: run the export jobs no worker has (never enqueued because the broker was down,
    or stuck after a worker died). Idempotency key: the job row's conditional claim."""
    swept = jobs_to_sweep()
    for job_id in swept:
        export_job_run(job_id=job_id)
    return len(swept)


@shared_task(ignore_result=True)
def verify_log() -> bool:
    """Daily (optional): verify the whole log and log an error naming the first break, so an alert
    on error logs catches tampering between audits. The result is kept as a `VerificationRun`, so
    the compliance dashboard shows when the log was last verified."""
    run = verification_run_scheduled()
    return bool(run.ok)


@shared_task(acks_late=True, ignore_result=True)
def run_verification(run_id: int) -> str:
    """Verify the whole log for a reader who asked from the dashboard. Idempotency key: the run
    row, claimed from `pending` by a conditional update, so a redelivered message does nothing."""
    return verification_run_execute(run_id=run_id).state


@shared_task(ignore_result=True)
def fold_failures() -> int:
    """Every AUDIT_FAILURE_WINDOW_S (60 s): fold the closed windows' counts of unauthenticated
    failures into chained events. Idempotency key: the tally rows, deleted as they are folded.
    Returns how many events were appended."""
    return len(failure_tallies_fold())


@shared_task(ignore_result=True)
def deliver_streams() -> int:
    """Every AUDIT_STREAM_INTERVAL_S (5 s): one `deliver_stream` task per destination with events
    past its cursor, so a destination that hangs holds one worker, never the others' deliveries.
    The messages expire after two intervals: busy workers do not pile up stale ones. Returns how
    many were queued."""
    due = streams_due()
    for stream_id in due:
        deliver_stream.apply_async((stream_id,), expires=2 * settings.AUDIT_STREAM_INTERVAL_S)
    return len(due)


@shared_task(ignore_result=True)
def deliver_stream(stream_id: int) -> int:
    """Send one destination what follows its cursor. Idempotency key: the cursor, moved under the
    destination's row lock (FOR UPDATE SKIP LOCKED): a duplicate finds it locked or caught up."""
    return stream_deliver(stream_id=stream_id)
