"""With real Celery workers on a real Redis: expiry on time, restarts, duplicates, broker outages.

And with no worker at all, the decision path still masks after expiry.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent, Channel
from jitaccess.models import AccessRequest, DeliveryState, Notification
from jitaccess.services.requests import request_approve
from jitaccess.states import State
from masking.decisions.engine import ColumnKey
from masking.decisions.service import decide_columns
from tests.jitaccess.workers import (
    celery_worker,
    finished,
    free_port,
    private_redis,
    publishing_to,
    start_worker,
    stop,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
EMAIL = ColumnKey("prod-pg", "shop", "public", "customers", "email")


def _approved_grant(world, *, seconds: int) -> AccessRequest:
    request = world.request("email")
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)
    # A short grant for the test: the request and its exemption end together.
    expires = timezone.now() + timedelta(seconds=seconds)
    AccessRequest.objects.filter(pk=request.pk).update(expires_at=expires)
    request.refresh_from_db()
    type(request.grant).objects.filter(pk=request.grant.pk).update(expires_at=expires)
    return request


def _state(request: AccessRequest) -> str:
    return AccessRequest.objects.get(pk=request.pk).state


def test_a_worker_expires_the_grant_on_time_and_a_duplicate_sweep_changes_nothing(world, tmp_path):
    with private_redis(free_port()) as broker, publishing_to(broker):
        env = worker_env(broker, VEIL_VAR_DIR=str(tmp_path))
        request = _approved_grant(world, seconds=2)
        with celery_worker(env):
            wait_until(
                lambda: _state(request) == State.EXPIRED, timeout=30, what="the sweep to expire the grant"
            )
            from jitaccess.tasks import sweep_requests

            duplicates = [sweep_requests.delay().id, sweep_requests.delay().id]
            wait_until(lambda: finished(broker, duplicates), timeout=30, what="both extra sweeps to run")
            wait_until(
                lambda: Notification.objects.filter(kind="expired", state=DeliveryState.SENT).exists(),
                timeout=30,
                what="the expiry notice to be delivered",
            )

    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(request.pk)).count() == 1
    assert Notification.objects.filter(request=request, kind="expired").count() == 1


def test_a_killed_and_restarted_worker_still_expires_the_grant(world, tmp_path):
    with private_redis(free_port()) as broker, publishing_to(broker):
        env = worker_env(broker, VEIL_VAR_DIR=str(tmp_path))
        first = start_worker(env)
        request = _approved_grant(world, seconds=3)
        stop(first, signal.SIGKILL)
        assert _state(request) == State.APPROVED

        with celery_worker(env):
            wait_until(
                lambda: _state(request) == State.EXPIRED, timeout=30, what="the restarted worker to expire it"
            )


def test_notifications_written_while_the_broker_is_down_are_delivered_once_when_it_is_back(
    world, tmp_path, settings
):
    settings.NOTIFY_BY_EMAIL = True
    mail_dir = tmp_path / "mail"
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    with publishing_to(broker):
        requests = [world.request("email"), world.request("email")]  # broker down: enqueue fails fast
        pending = Notification.objects.filter(request__in=requests)
        assert pending.count() == 8, "web and email, for bob and carol, per request"
        assert set(pending.values_list("state", flat=True)) == {DeliveryState.PENDING}

        with private_redis(port):
            env = worker_env(
                broker,
                VEIL_VAR_DIR=str(tmp_path),
                NOTIFY_BY_EMAIL="1",
                EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
                EMAIL_FILE_PATH=str(mail_dir),
            )
            with celery_worker(env):
                wait_until(
                    lambda: not Notification.objects.filter(state=DeliveryState.PENDING).exists(),
                    timeout=40,
                    what="every pending notification to be delivered",
                )
                from jitaccess.tasks import deliver_notification

                for notification in Notification.objects.all():  # a redelivery of every task
                    deliver_notification.delay(notification.pk)
                wait_until(lambda: _mail_count(mail_dir) >= 4, timeout=20, what="the emails")

    sent = Notification.objects.filter(state=DeliveryState.SENT)
    assert sent.count() == 8
    assert set(sent.values_list("attempts", flat=True)) == {1}, "each sent exactly once"
    assert _mail_count(mail_dir) == 4, "one email per approver per request, no duplicates"


def _mail_count(mail_dir) -> int:
    if not mail_dir.exists():
        return 0
    return sum(
        f.read_text().count("\nSubject: ") + f.read_text().startswith("Subject: ") for f in mail_dir.iterdir()
    )


def test_with_no_worker_at_all_the_decision_masks_after_expiry(world):
    request = world.request("email")
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)
    request.refresh_from_db()

    def decide() -> str:
        return (
            decide_columns(
                service_account="proxy",
                principal_spec={"user": "alice"},
                asserted_groups=[],
                query_id="",
                columns=[EMAIL],
            )
            .decisions[0]
            .action
        )

    assert decide() == "unmask"
    with time_machine.travel(request.expires_at, tick=False):
        assert decide() == "mask"
    assert _state(request) == State.APPROVED, "no worker ran: the state is stale, the decision is not"
