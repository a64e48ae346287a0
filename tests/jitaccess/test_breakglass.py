"""Break-glass: immediate, capped, alerted, and reviewed by someone else afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit.models import AuditEvent, Channel
from identity.models import Role
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.models import Notification, ProjectAccessSettings
from jitaccess.selectors.requests import unreviewed_breakglass
from jitaccess.services.breakglass import breakglass_review, breakglass_take
from jitaccess.states import State

pytestmark = pytest.mark.django_db


@pytest.fixture
def oncall(world, settings):
    settings.NOTIFY_BY_EMAIL = True
    role = Role.objects.create(name="security-oncall")
    role.users.add(world.alice)
    access = ProjectAccessSettings.objects.create(
        project=world.project,
        breakglass_max_duration=timedelta(hours=1),
        security_emails="security@example.com",
    )
    access.breakglass_roles.add(role)
    return world


def _take(world, **kwargs):
    return breakglass_take(
        requester=kwargs.pop("requester", world.alice),
        scope=world.scope("email"),
        duration=kwargs.pop("duration", timedelta(minutes=30)),
        reason=kwargs.pop("reason", "SEV1 checkout down"),
        channel=Channel.WEB,
    )


def test_break_glass_grants_at_once_and_alerts_security(oncall):
    request = _take(oncall)

    assert (request.state, request.is_breakglass) == (State.APPROVED, True)
    assert request.grant is not None
    alerts = Notification.objects.filter(kind="breakglass")
    assert set(alerts.values_list("destination", flat=True)) >= {"security@example.com"}
    assert alerts.filter(recipient=oncall.dave).exists(), "project administrators see it in their inbox"
    assert AuditEvent.objects.filter(action="breakglass.taken").exists()
    assert alerts.filter(channel="email", destination="security@example.com").count() == 1


def test_break_glass_needs_the_role_a_reason_and_a_short_duration(oncall):
    with pytest.raises(NotAllowed):
        _take(oncall, requester=oncall.eve)
    with pytest.raises(RequestError, match="reason"):
        _take(oncall, reason=" ")
    with pytest.raises(RequestError, match="at most 1 hour"):
        _take(oncall, duration=timedelta(hours=2))


def test_the_grant_stays_flagged_until_someone_else_reviews_it(oncall):
    request = _take(oncall)
    assert list(unreviewed_breakglass(oncall.dave)) == [request]

    with pytest.raises(NotAllowed, match="other than"):
        breakglass_review(request_id=request.pk, reviewer=oncall.alice, notes="fine", channel=Channel.WEB)
    with pytest.raises(NotAllowed):
        breakglass_review(request_id=request.pk, reviewer=oncall.bob, notes="fine", channel=Channel.WEB)
    breakglass_review(
        request_id=request.pk, reviewer=oncall.dave, notes="Justified by SEV1-88", channel=Channel.WEB
    )

    assert not unreviewed_breakglass(oncall.dave).exists()
    assert AuditEvent.objects.get(action="breakglass.reviewed").detail == {"notes": "Justified by SEV1-88"}
    with pytest.raises(RequestError, match="already reviewed"):
        breakglass_review(request_id=request.pk, reviewer=oncall.dave, notes="again", channel=Channel.WEB)


def test_break_glass_is_recorded_as_taken_never_as_an_approval(oncall):
    before = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    request = _take(oncall)

    actions = list(AuditEvent.objects.filter(seq__gt=before).order_by("seq").values_list("action", flat=True))
    assert actions == ["breakglass.taken", "grant.created"]
    assert not Notification.objects.filter(kind="approved").exists(), "the taker is not told it was approved"
    assert Notification.objects.filter(request=request, kind="breakglass").exists()


def test_break_glass_on_a_scope_nothing_masks_is_refused_as_a_request_is(oncall):
    with pytest.raises(RequestError, match="nothing in this scope is masked for you; there is nothing to"):
        breakglass_take(
            requester=oncall.alice,
            scope=oncall.scope("id"),
            duration=timedelta(minutes=30),
            reason="SEV1 checkout down",
            channel=Channel.WEB,
        )

    assert not AuditEvent.objects.filter(action="breakglass.taken").exists()
    assert not Notification.objects.exists(), "nobody is alerted about access that unmasks nothing"


def test_break_glass_over_a_live_grant_names_the_grant(oncall):
    first = _take(oncall)

    with pytest.raises(RequestError, match=f"your grant {first.ref} already covers it"):
        _take(oncall)
