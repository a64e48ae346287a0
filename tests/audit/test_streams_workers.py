"""Audit streams delivered by real Celery workers (beat included) on a private Redis, to receivers
on loopback: a destination that is down catches up in order once back, one that hangs holds up
nobody else, and two workers never send to one destination at the same time."""

from __future__ import annotations

import pytest

from audit.models import AuditStream, ChainHead, Channel
from audit.services import record_event
from audit.streams.config import new_secret
from audit.streams.services import stream_create
from tests.audit.conftest import CAROL
from tests.audit.stream_receiver import Receiver, receiving
from tests.jitaccess.workers import (
    celery_worker,
    free_port,
    private_redis,
    publishing_to,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECRET = new_secret()
STREAM_ENV = {
    "AUDIT_STREAM_ALLOWED_NETWORKS": "127.0.0.0/8",
    "AUDIT_STREAM_INTERVAL_S": "1",
    "AUDIT_STREAM_RETRY_BASE_S": "1",
    "AUDIT_STREAM_RETRY_MAX_S": "2",
    "AUDIT_STREAM_TIMEOUT_S": "1",
    "AUDIT_STREAM_BATCH_SIZE": "2",
}


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    settings.AUDIT_STREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def _events(n: int) -> None:
    for i in range(n):
        record_event(action="grant.created", actor=CAROL, channel=Channel.WEB, detail={"n": i})


def _stream(name: str, url: str) -> AuditStream:
    stream, _ = stream_create(
        name=name, url=url, secret=SECRET, after_seq=0, actor=CAROL, channel=Channel.CLI
    )
    return stream


def _head() -> int:
    return ChainHead.objects.get().seq


def _reached(*receivers: Receiver) -> int | None:
    """The chain head, if every receiver has reached it."""
    head = _head()
    return head if all(r.head_seq == head for r in receivers) else None


def test_a_destination_down_catches_up_in_order_and_one_that_hangs_holds_up_nobody(tmp_path):
    down_port = free_port()
    with receiving(SECRET) as fine, receiving(SECRET) as hanging:
        hanging.mode = "hang"
        _events(3)
        _stream("fine", fine.url)
        down = _stream("down", f"http://127.0.0.1:{down_port}/veil")
        hangs = _stream("hangs", hanging.url)
        with (
            private_redis(free_port()) as broker,
            publishing_to(broker),
            celery_worker(worker_env(broker, VEIL_VAR_DIR=str(tmp_path), **STREAM_ENV)),
        ):
            wait_until(lambda: _reached(fine), timeout=60, what="the working destination to get every event")
            wait_until(
                lambda: (
                    AuditStream.objects.get(pk=down.pk).failures >= 2
                    and AuditStream.objects.get(pk=hangs.pk).failures >= 1
                ),
                timeout=60,
                what="the worker to try the dead and the hanging destination",
            )
            _events(4)
            back = Receiver(SECRET, port=down_port).start()
            try:
                wait_until(lambda: _reached(fine, back), timeout=60, what="the destination back to catch up")
                head = _head()
            finally:
                back.stop()

    for receiver in (fine, back):
        assert receiver.problems == []
        assert receiver.arrivals[:head] == list(range(1, head + 1)), "every event, once, in chain order"
    hangs.refresh_from_db()
    assert hangs.last_seq == 0 and hangs.last_error == "no answer within 1 s"


def test_two_workers_never_send_to_one_destination_at_once(tmp_path):
    from audit.tasks import deliver_stream

    with receiving(SECRET) as receiver:
        receiver.mode = "slow"
        _events(120)
        stream = _stream("siem", receiver.url)
        with private_redis(free_port()) as broker, publishing_to(broker):
            for _ in range(8):  # queued before the workers start, so both find work at once
                deliver_stream.delay(stream.pk)
            env = worker_env(broker, VEIL_VAR_DIR=str(tmp_path), **STREAM_ENV)
            with celery_worker(env, beat=True), celery_worker(env, beat=False):
                wait_until(lambda: _reached(receiver), timeout=120, what="the destination to get every event")

    assert receiver.problems == []
    assert receiver.max_in_flight == 1, "one sender at a time"
    assert receiver.duplicates == 0, "a claimed batch is sent once when it succeeds"
