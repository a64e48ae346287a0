"""Audit streaming: a receiver on loopback verifies the signature and the chain of what it gets,
in order, across a destination's outage, duplicates, failures that disable it, and refused settings.

Delivery is called in this process here (the worker tests in `test_streams_workers.py` run it in real
Celery workers); the receiver is a real HTTP server (`tests/audit/stream_receiver.py`).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, AuditStream, ChainHead, Channel, StreamFormat
from audit.services import SYSTEM, record_event
from audit.streams.config import new_secret
from audit.streams.delivery import stream_deliver, streams_due
from audit.streams.services import stream_create, stream_replay
from tests.audit.conftest import CAROL
from tests.audit.stream_receiver import Receiver, receiving

pytestmark = pytest.mark.django_db

SECRET = new_secret()


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    """The receivers listen on loopback, which only an operator's allow-list opens."""
    settings.AUDIT_STREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.AUDIT_STREAM_TIMEOUT_S = 2
    settings.AUDIT_STREAM_BATCH_SIZE = 3


def _events(n: int, action: str = "grant.created") -> None:
    for i in range(n):
        record_event(action=action, actor=CAROL, channel=Channel.WEB, detail={"n": i, "why": "naïve ✓"})


def _stream(receiver: Receiver | str, **kwargs) -> AuditStream:
    url = receiver if isinstance(receiver, str) else receiver.url
    stream, _ = stream_create(
        name=kwargs.pop("name", "siem"),
        url=url,
        secret=SECRET,
        actor=CAROL,
        channel=Channel.CLI,
        **{"after_seq": 0, **kwargs},
    )
    return stream


def _head() -> int:
    return ChainHead.objects.get().seq


def _later(stream: AuditStream) -> time_machine.travel:
    """Past the stream's back-off, without waiting for it."""
    stream.refresh_from_db()
    return time_machine.travel((stream.next_attempt_at or timezone.now()) + timedelta(seconds=1), tick=False)


def test_a_receiver_verifies_the_signature_and_the_chain_of_every_event_from_the_first():
    _events(7)
    with receiving(SECRET) as receiver:
        stream = _stream(receiver)
        stream_deliver(stream_id=stream.pk)

    assert receiver.problems == []
    head = _head()
    assert receiver.arrivals == list(range(1, head + 1)), "the whole log, in chain order, no gap"
    assert receiver.requests == -(-head // 3), "in batches of AUDIT_STREAM_BATCH_SIZE"
    last = AuditEvent.objects.get(seq=head)
    assert receiver.head_hash == last.hash, "the receiver reached the chain head Veil holds"
    stream.refresh_from_db()
    assert (stream.last_seq, stream.failures, stream.last_error) == (head, 0, "")


def test_a_receiver_with_the_wrong_secret_refuses_and_the_cursor_stays():
    _events(2)
    with receiving(new_secret()) as receiver:
        stream = _stream(receiver)
        stream_deliver(stream_id=stream.pk)

    assert receiver.problems == ["request refused: signature does not match"]
    stream.refresh_from_db()
    assert (stream.last_seq, stream.failures) == (0, 1)
    assert stream.last_error == "HTTP 401 Unauthorized"


def test_a_destination_that_was_down_catches_up_in_order_without_gaps():
    _events(2)
    receiver = Receiver(SECRET).start()
    port = receiver.port
    stream = _stream(receiver)
    stream_deliver(stream_id=stream.pk)
    assert receiver.arrivals == [1, 2, 3]  # the stream's own `audit.stream_created` is #3
    receiver.stop()

    _events(4)
    stream_deliver(stream_id=stream.pk)  # refused: nobody listens
    stream.refresh_from_db()
    assert (stream.last_seq, stream.failures) == (3, 1)
    assert stream.last_error == "connection refused"
    assert stream.pk not in streams_due(), "backing off"
    assert stream_deliver(stream_id=stream.pk) == 0, "not tried again before its time"

    with _later(stream):
        stream_deliver(stream_id=stream.pk)  # still down
    stream.refresh_from_db()
    assert stream.failures == 2
    assert stream.next_attempt_at - stream.last_attempt_at == timedelta(seconds=10), "5 s, then 10 s"

    _events(3)
    back = Receiver(SECRET, port=port, anchor=(receiver.head_seq, receiver.head_hash)).start()
    try:
        with _later(stream):
            assert stream.pk in streams_due()
            stream_deliver(stream_id=stream.pk)
    finally:
        back.stop()

    assert back.problems == []
    assert back.arrivals == list(range(4, _head() + 1)), "resumed right after the cursor, in order"
    stream.refresh_from_db()
    assert (stream.last_seq, stream.failures, stream.next_attempt_at) == (_head(), 0, None)


def test_a_replayed_range_arrives_again_and_the_receiver_drops_the_duplicates_by_seq():
    _events(5)
    with receiving(SECRET) as receiver:
        stream = _stream(receiver)
        stream_deliver(stream_id=stream.pk)
        stream_replay(stream_id=stream.pk, after_seq=2, actor=CAROL, channel=Channel.CLI)
        stream_deliver(stream_id=stream.pk)

    assert receiver.problems == []
    head = _head()
    assert receiver.duplicates == 4, "#3 to #6 came twice"
    assert receiver.arrivals == list(range(1, head + 1)), "the replay itself (#7) came once, after them"
    replayed = AuditEvent.objects.get(action="audit.stream_replayed")
    assert replayed.detail == {"before": {"last_seq": 6}, "after": {"last_seq": 2}}
    assert replayed.actor_name == CAROL.name


def test_a_filtered_stream_gets_only_its_events_and_its_cursor_passes_the_others():
    _events(2, "grant.created")
    _events(2, "request.created")
    with receiving(SECRET, contiguous=False) as receiver:
        stream = _stream(receiver, action="request")
        stream_deliver(stream_id=stream.pk)

    assert receiver.problems == []
    assert [e["action"] for e in receiver.events.values()] == ["request.created", "request.created"]
    stream.refresh_from_db()
    assert stream.last_seq == _head(), "caught up, past the events the filter leaves out"


def test_repeated_failures_disable_the_stream_audited_and_visible_to_operators(settings, admin_client):
    settings.AUDIT_STREAM_MAX_FAILURES = 3
    _events(2)
    with receiving(SECRET) as receiver:
        receiver.mode = "fail"
        stream = _stream(receiver)
        for _ in range(3):
            with _later(stream):
                stream_deliver(stream_id=stream.pk)

    stream.refresh_from_db()
    assert not stream.enabled
    assert stream.disabled_reason == "3 failures in a row; last: HTTP 500 Internal Server Error"
    disabled = AuditEvent.objects.get(action="audit.stream_disabled")
    assert (disabled.actor_id, disabled.target_repr) == (SYSTEM.id, "siem")
    assert stream.pk not in streams_due()

    with pytest.raises(CommandError, match="audit streams disabled or failing: siem"):
        call_command("audit", "streams", "list", "--check")

    from config.metrics import exposition

    metrics = exposition().decode()
    assert 'veil_audit_stream_enabled{stream="siem"} 0.0' in metrics
    assert f'veil_audit_stream_behind_events{{stream="siem"}} {float(_head())}' in metrics

    page = admin_client.get(reverse("admin:audit_auditstream_changelist")).content.decode()
    assert "HTTP 500 Internal Server Error" in page

    call_command("audit", "streams", "enable", "siem")
    stream.refresh_from_db()
    assert (stream.enabled, stream.failures, stream.pk in streams_due()) == (True, 0, True)


def test_a_redirect_is_not_followed():
    _events(1)
    with receiving(SECRET) as target, receiving(SECRET) as receiver:
        receiver.mode, receiver.redirect_to = "redirect", "http://127.0.0.1:9/"
        stream = _stream(receiver)
        stream_deliver(stream_id=stream.pk)

    stream.refresh_from_db()
    assert stream.last_error == "HTTP 302: redirects are not followed; give the final URL"
    assert (stream.last_seq, target.requests) == (0, 0)


def test_a_destination_that_hangs_costs_one_timeout(settings):
    settings.AUDIT_STREAM_TIMEOUT_S = 1
    _events(1)
    with receiving(SECRET) as receiver:
        receiver.mode = "hang"
        stream = _stream(receiver)
        stream_deliver(stream_id=stream.pk)

    stream.refresh_from_db()
    assert (stream.last_seq, stream.failures, stream.last_error) == (0, 1, "no answer within 1 s")


def test_splunk_and_datadog_bodies_carry_each_event_intact():
    from audit.streams.delivery import next_batch, render
    from tests.audit.stream_receiver import event_hash_matches

    _events(2)
    stream = _stream("http://127.0.0.1:9/", format=StreamFormat.SPLUNK_HEC)
    batch = next_batch(stream, head=_head(), size=10)
    import json

    splunk = [json.loads(line) for line in render(stream, batch).decode().splitlines()]
    assert [e["sourcetype"] for e in splunk] == ["veil:audit"] * 3
    assert all(event_hash_matches(e["event"]) for e in splunk)
    stream.format = StreamFormat.DATADOG
    datadog = json.loads(render(stream, batch))
    assert datadog[0]["message"].startswith("#1 ") and datadog[0]["ddtags"] == "veil_stream:siem"
    assert all(event_hash_matches(e["audit"]) for e in datadog)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://127.0.0.1:8080/x"], "--url: 127.0.0.1 resolves to 127.0.0.1, a loopback"),
        (["--url", "https://10.1.2.3/x"], "--url: 10.1.2.3 resolves to 10.1.2.3, a loopback, private"),
        (["--url", "https://169.254.169.254/latest"], "a loopback, private or reserved address"),
        (["--url", "https://[::1]/x"], "resolves to ::1"),
        (["--url", "http://93.184.215.14/x"], "--url: http:// is allowed only inside"),
        (["--url", "ftp://93.184.215.14/x"], "--url: give an https:// URL"),
        (["--url", "https://u:p@93.184.215.14/x"], "--url: must not hold credentials"),
        (["--url", "https://93.184.215.14/x", "--action", "grant.creatd"], "--action: Veil records no event"),
        (["--url", "https://93.184.215.14/x", "--project", "nope"], "--project: no project 'nope'"),
        (["--url", "https://93.184.215.14/x", "--auth-header", "Host"], "--auth-header: 'Host' is not"),
        (["--url", "https://93.184.215.14/x", "--auth-header", "DD-API-KEY"], "--auth-value-file: give"),
    ],
)
def test_bad_configuration_is_refused_naming_the_setting_and_nothing_is_written(settings, args, message):
    settings.AUDIT_STREAM_ALLOWED_NETWORKS = []
    before = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("?", r"\?")):
        call_command("audit", "streams", "add", "siem", *args)
    assert not AuditStream.objects.exists()
    assert AuditEvent.objects.count() == before


def test_a_bad_secret_is_refused(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("hunter2")
    with pytest.raises(CommandError, match="--secret-file: must start with 'whsec_'"):
        call_command(
            "audit",
            "streams",
            "add",
            "siem",
            "--url",
            "http://127.0.0.1:9/",
            "--secret-file",
            str(secret_file),
        )


def test_the_cli_adds_lists_and_removes_streams_each_change_audited_without_secrets(capsys, tmp_path):
    value = tmp_path / "token"
    value.write_text("Splunk 11111111-2222-3333-4444-555555555555\n")
    call_command(
        "audit",
        "streams",
        "add",
        "splunk",
        "--url",
        "http://127.0.0.1:8088/services/collector/event",
        "--format",
        "splunk_hec",
        "--auth-header",
        "Authorization",
        "--auth-value-file",
        str(value),
    )
    out = capsys.readouterr().out
    assert "signing secret (shown once; give it to the receiver): whsec_" in out
    made = out.rsplit(": ", 1)[1].strip()
    stream = AuditStream.objects.get()
    assert made not in stream.secret and "Splunk 1111" not in stream.auth_value, "stored encrypted"

    call_command("audit", "streams", "list")
    assert "splunk\tenabled\tsplunk_hec" in capsys.readouterr().out
    call_command("audit", "streams", "disable", "splunk")
    call_command("audit", "streams", "remove", "splunk")
    events = list(AuditEvent.objects.filter(action__startswith="audit.stream_").order_by("seq"))
    assert [e.action for e in events] == [
        "audit.stream_created",
        "audit.stream_disabled",
        "audit.stream_deleted",
    ]
    assert events[0].detail["after"]["auth_header"] == "Authorization"
    for event in events:
        assert made not in str(event.detail) and "1111" not in str(event.detail)
        assert event.channel == Channel.CLI


def test_an_admin_adds_a_stream_on_the_admin_site_and_bad_settings_are_errors_on_the_form(admin_client):
    url = reverse("admin:audit_auditstream_add")
    form = {"name": "siem", "url": "http://10.0.0.7/x", "format": "veil", "secret_input": SECRET}
    refused = admin_client.post(url, form)
    assert refused.status_code == 200
    assert "resolves to 10.0.0.7, a loopback, private or reserved address" in refused.content.decode()
    assert not AuditStream.objects.exists()

    form["url"] = "http://127.0.0.1:9/x"
    assert admin_client.post(url, form).status_code == 302
    stream = AuditStream.objects.get()
    created = AuditEvent.objects.get(action="audit.stream_created")
    assert (created.actor_type, created.channel, created.target_id) == ("user", "web", str(stream.pk))

    change = reverse("admin:audit_auditstream_change", args=[stream.pk])
    changed = admin_client.post(
        change, {"url": "http://127.0.0.1:10/x", "format": "datadog", "action": "", "project": ""}
    )
    assert changed.status_code == 302, changed.content.decode()[-3000:]
    updated = AuditEvent.objects.get(action="audit.stream_updated")
    assert updated.detail["before"]["url"] == "http://127.0.0.1:9/x"
    assert updated.detail["after"]["format"] == "datadog"
    assert updated.detail["secret_rotated"] is False, "an empty secret field keeps the secret"
