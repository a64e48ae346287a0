"""Notifications the outbox could not deliver: never lost silently, never retried forever unseen.

Email goes to a real SMTP client aimed at a port nobody listens on; the retry sweep runs as the
beat schedule runs it; the workers' broker is a Redis nobody runs, so handing rows to Celery fails
fast and the sweep is what delivers them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from jitaccess.delivery import MAX_ATTEMPTS
from jitaccess.models import DeliveryState, Notification, NotificationChannel
from jitaccess.tasks import deliver_pending_notifications
from tests.factories import make_user
from tests.jitaccess.workers import free_port, publishing_to

pytestmark = pytest.mark.django_db
NOTIFICATIONS_ADMIN = "/admin/jitaccess/notification/"


@pytest.fixture(autouse=True)
def _dead_broker():
    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        yield


@pytest.fixture
def smtp_down(settings):
    settings.NOTIFY_BY_EMAIL = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    return settings


@pytest.fixture
def operator(db):
    return make_user("ops", is_staff=True, is_superuser=True)


def _emails():
    return Notification.objects.filter(channel=NotificationChannel.EMAIL)


def _sweep_until_given_up(time_machine) -> None:
    """The every-minute retry sweep, run past every back-off until the rows stop retrying."""
    for _ in range(MAX_ATTEMPTS + 2):
        deliver_pending_notifications()
        time_machine.move_to(timezone.now() + timedelta(hours=2))


def _smtp_back(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_a_notification_that_gives_up_says_so_loudly_and_stops_retrying(
    world, smtp_down, time_machine, caplog
):
    request = world.request("email")

    with caplog.at_level(logging.WARNING, logger="jitaccess.delivery"):
        _sweep_until_given_up(time_machine)

    emails = _emails()
    assert emails.count() == 2, "one for each approver"
    assert set(emails.values_list("state", "attempts")) == {(DeliveryState.FAILED, MAX_ATTEMPTS)}
    assert all("ConnectionRefusedError" in e.last_error for e in emails)
    given_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(given_up) == 2
    assert "NOT DELIVERED" in given_up[0].getMessage() and request.ref in given_up[0].getMessage()
    assert "manage.py notifications retry" in given_up[0].getMessage()
    deliver_pending_notifications()
    assert set(emails.values_list("attempts", flat=True)) == {MAX_ATTEMPTS}, "no retry after giving up"


def test_operators_see_what_was_not_delivered_on_their_home_page(
    world, smtp_down, time_machine, operator, client
):
    world.request("email")
    client.force_login(world.alice)
    assert "Notifications not delivered" not in client.get("/").content.decode()

    _sweep_until_given_up(time_machine)

    client.force_login(operator)
    home = " ".join(client.get("/").content.decode().split())
    assert "Notifications not delivered" in home
    assert "Veil gave up sending 2 notifications (Email: 2)" in home
    assert f'href="{NOTIFICATIONS_ADMIN}?state__exact=failed"' in home
    client.force_login(world.alice)
    assert "Notifications not delivered" not in client.get("/").content.decode(), "for operators only"


def test_the_request_page_says_a_notification_was_not_delivered(world, smtp_down, time_machine, client):
    request = world.request("email")

    _sweep_until_given_up(time_machine)

    client.force_login(world.alice)
    page = " ".join(client.get(f"/requests/{request.pk}/").content.decode().split())
    assert f'Not delivered</span> <span class="muted">gave up after {MAX_ATTEMPTS} attempts' in page
    assert "an administrator can retry it" in page


def test_an_operator_retries_failed_notifications_from_the_admin(
    world, smtp_down, time_machine, operator, client
):
    world.request("email")
    _sweep_until_given_up(time_machine)
    failed = list(_emails().values_list("pk", flat=True))
    sent_web = Notification.objects.filter(channel=NotificationChannel.WEB).first()

    client.force_login(operator)
    listing = client.get(NOTIFICATIONS_ADMIN, {"state__exact": "failed"}).content.decode()
    response = client.post(
        NOTIFICATIONS_ADMIN,
        {"action": "retry_delivery", "_selected_action": [*failed, sent_web.pk]},
        follow=True,
    )

    assert "ConnectionRefusedError" in listing, "the list shows why"
    body = response.content.decode()
    assert "2 notification(s) put back in the outbox" in body
    assert "1 selected notification(s) left alone: only failed ones are retried" in body
    assert set(_emails().values_list("state", "attempts")) == {(DeliveryState.PENDING, 0)}
    assert Notification.objects.get(pk=sent_web.pk).state == DeliveryState.SENT
    _smtp_back(smtp_down)
    deliver_pending_notifications()
    assert set(_emails().values_list("state", flat=True)) == {DeliveryState.SENT}
    assert sorted(m.to[0] for m in mail.outbox) == ["bob@example.com", "carol@example.com"]


def test_an_admin_without_change_permission_cannot_retry(world, smtp_down, time_machine, client):
    from django.contrib.auth.models import Permission

    world.request("email")
    _sweep_until_given_up(time_machine)
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_notification"))

    client.force_login(viewer)
    client.post(
        NOTIFICATIONS_ADMIN,
        {"action": "retry_delivery", "_selected_action": list(_emails().values_list("pk", flat=True))},
    )

    assert set(_emails().values_list("state", flat=True)) == {DeliveryState.FAILED}
    assert "Notifications not delivered" not in client.get("/").content.decode()


def test_the_notifications_command_reports_failures_and_retries_them(world, smtp_down, time_machine, capsys):
    request = world.request("email")
    call_command("notifications", "check")
    assert "no notification failed" in capsys.readouterr().out
    _sweep_until_given_up(time_machine)
    first, second = _emails().order_by("pk")

    with pytest.raises(CommandError, match="2 notification\\(s\\) not delivered"):
        call_command("notifications", "check")
    report = capsys.readouterr().out
    assert f"FAIL  #{first.pk} {request.ref} Approval needed by email to" in report
    assert "ConnectionRefusedError" in report

    with pytest.raises(CommandError, match=f"left alone: {second.pk + 1000}"):
        call_command("notifications", "retry", str(first.pk), str(second.pk + 1000))
    assert Notification.objects.get(pk=first.pk).state == DeliveryState.PENDING
    assert Notification.objects.get(pk=second.pk).state == DeliveryState.FAILED
    call_command("notifications", "retry")
    assert "1 notification(s) put back" in capsys.readouterr().out
    _smtp_back(smtp_down)
    deliver_pending_notifications()
    call_command("notifications", "check")
    assert len(mail.outbox) == 2
