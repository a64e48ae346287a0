"""Requests from creation to the end of their grant, through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent, Channel
from jitaccess.delivery import message_text
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.models import AccessRequest, ApprovalPolicy, Notification, ProjectAccessSettings
from jitaccess.selectors.requests import end_reason
from jitaccess.selectors.scopes import DurationLimit, Scope, duration_limit
from jitaccess.services.grants import grant_end, requests_sweep
from jitaccess.services.requests import request_approve, request_cancel, request_deny
from jitaccess.states import Action, InvalidTransition, State
from masking.decisions.engine import ColumnKey
from masking.selectors import decision_caches, load_grants, read_epochs

pytestmark = pytest.mark.django_db
EMAIL = ColumnKey("prod-pg", "shop", "public", "customers", "email")


def _decision_for_alice(world):
    epochs = read_epochs()
    principal = decision_caches.principal({"user": world.alice.username}, frozenset())
    policy = decision_caches.policy(epochs)
    return policy.decide(principal, [EMAIL], load_grants(principal), now=timezone.now().timestamp())[0]


def test_a_request_waits_for_an_approver_then_grants_until_its_expiry(world):
    request = world.request("email")

    assert request.state == State.PENDING
    assert request.policy_title == "prod PII"
    notified = set(
        Notification.objects.filter(kind="approval_needed").values_list("recipient__username", flat=True)
    )
    assert notified == {"bob", "carol"}, "the approvers, not the requester"
    assert _decision_for_alice(world).action == "mask"

    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)

    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert request.expires_at - request.decided_at == timedelta(hours=2)
    assert request.grant.expires_at == request.expires_at
    decision = _decision_for_alice(world)
    assert (decision.action, decision.reason_kind, decision.request_ref) == ("unmask", "grant", request.ref)
    assert Notification.objects.filter(kind="approved", recipient=world.alice).exists()
    actions = list(AuditEvent.objects.filter(target_type="request").values_list("action", flat=True))
    assert actions == ["request.created", "request.approval_recorded", "request.approved"]


def test_the_requester_never_approves_their_own_request(world):
    world.alice.groups.first().veil_roles.add(world.policy.approver_roles.first())
    request = world.request("email")

    with pytest.raises(NotAllowed, match="your own request"):
        request_approve(request_id=request.pk, approver=world.alice, channel=Channel.WEB)
    assert AccessRequest.objects.get(pk=request.pk).state == State.PENDING


def test_someone_who_is_not_an_approver_cannot_approve_or_deny(world):
    request = world.request("email")

    with pytest.raises(NotAllowed, match="not an approver"):
        request_approve(request_id=request.pk, approver=world.eve, channel=Channel.WEB)
    with pytest.raises(NotAllowed):
        request_deny(request_id=request.pk, approver=world.eve, reason="no", channel=Channel.WEB)


def test_quorum_counts_distinct_people_by_idp_subject(world):
    world.policy.approvals_required = 2
    world.policy.save()
    world.bob.oidc_subject = "sub-bob"
    world.bob.save()
    request = world.request("email")

    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.SLACK)
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)
    assert AccessRequest.objects.get(pk=request.pk).state == State.PENDING, "one person, however many clicks"
    assert list(
        AccessRequest.objects.get(pk=request.pk).approvals.values_list("approver_subject", flat=True)
    ) == ["oidc:sub-bob"]

    request_approve(request_id=request.pk, approver=world.carol, channel=Channel.WEB)
    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


def test_deny_needs_a_reason_and_tells_the_requester(world):
    request = world.request("email")

    with pytest.raises(RequestError, match="reason"):
        request_deny(request_id=request.pk, approver=world.bob, reason=" ", channel=Channel.WEB)
    request_deny(request_id=request.pk, approver=world.bob, reason="use staging", channel=Channel.WEB)

    request.refresh_from_db()
    assert (request.state, request.deny_reason) == (State.DENIED, "use staging")
    assert Notification.objects.filter(kind="denied", recipient=world.alice).exists()


@pytest.mark.parametrize("ending", ["deny", "cancel"])
def test_approving_a_decided_request_is_refused_with_its_state(world, ending):
    request = world.request("email")
    if ending == "deny":
        request_deny(request_id=request.pk, approver=world.carol, reason="no", channel=Channel.WEB)
    else:
        request_cancel(request_id=request.pk, requester=world.alice, channel=Channel.WEB)

    with pytest.raises(InvalidTransition, match=r"denied|cancelled"):
        request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)


def test_revoke_and_relinquish_take_effect_at_once(world):
    first, second = world.request("email"), world.request("email")
    request_approve(request_id=first.pk, approver=world.bob, channel=Channel.WEB)
    request_approve(request_id=second.pk, approver=world.bob, channel=Channel.WEB)

    grant_end(request_id=first.pk, user=world.carol, action=Action.REVOKE, channel=Channel.WEB)
    assert _decision_for_alice(world).action == "unmask", "the second grant still holds"
    with pytest.raises(NotAllowed):
        grant_end(request_id=second.pk, user=world.bob, action=Action.RELINQUISH, channel=Channel.WEB)
    grant_end(request_id=second.pk, user=world.alice, action=Action.RELINQUISH, channel=Channel.WEB)

    assert _decision_for_alice(world).action == "mask"
    states = set(AccessRequest.objects.values_list("state", flat=True))
    assert states == {State.REVOKED, State.RELINQUISHED}


def test_an_outsider_cannot_revoke(world):
    request = world.request("email")
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)

    with pytest.raises(NotAllowed):
        grant_end(request_id=request.pk, user=world.eve, action=Action.REVOKE, channel=Channel.WEB)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"duration": timedelta(days=30)}, "duration"),
        ({"duration": timedelta(0)}, "duration"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(world, kwargs, field):
    with pytest.raises(RequestError) as refused:
        world.request("email", **kwargs)

    assert refused.value.field == field
    assert not AccessRequest.objects.exists()


def test_unknown_columns_and_tables_are_refused(world):
    from jitaccess.services.requests import request_create

    with pytest.raises(RequestError, match="unknown column"):
        world.request("email", "shoe_size")
    with pytest.raises(RequestError, match="no table"):
        request_create(
            requester=world.alice,
            scope=Scope(world.database, "public", "nope", ()),
            duration=timedelta(hours=1),
            reason="x",
            channel=Channel.WEB,
        )


def test_a_scope_that_is_not_masked_for_the_requester_is_refused(world):
    with pytest.raises(RequestError, match="nothing in this scope is masked"):
        world.request("id")


def test_the_policy_cap_applies_on_top_of_the_project_cap(world):
    world.policy.max_duration = timedelta(hours=4)
    world.policy.save()

    with pytest.raises(RequestError) as refused:
        world.request("email", duration=timedelta(hours=5))

    assert refused.value.field == "duration"
    assert refused.value.message == "at most 4 hours under the policy 'prod PII' (you asked 5 hours)"


def test_the_project_cap_is_named_as_the_projects(world):
    with pytest.raises(RequestError) as refused:
        world.request("email", duration=timedelta(days=8))

    assert refused.value.message == "at most 7 days in this project (you asked 8 days)"


def test_the_duration_limit_of_a_scope_is_the_matching_policys_cap(world):
    world.policy.max_duration = timedelta(days=1)
    world.policy.save()

    exact = duration_limit(requester=world.alice, database=world.database, scope=world.scope("email"))
    unknown = duration_limit(requester=world.alice, database=world.database)

    assert exact == DurationLimit(timedelta(days=1), "prod PII", exact=True)
    assert unknown == DurationLimit(timedelta(days=7), "", exact=False), "a policy may allow less"
    world.policy.enabled = False
    world.policy.save()
    assert duration_limit(requester=world.alice, database=world.database).exact


def test_a_policy_matching_on_duration_caps_where_the_matched_policy_allows_itself(world):
    """A stricter policy for requests over two days that caps them at four hours: two days is the
    longest one can ask for; the refusal says so and names the policy that refused longer."""
    strict = ApprovalPolicy.objects.create(
        project=world.project,
        title="Long requests",
        condition="request.duration_hours > 48.0",
        max_duration=timedelta(hours=4),
        position=0,
    )
    world.policy.position = 1
    world.policy.save()

    limit = duration_limit(requester=world.alice, database=world.database, scope=world.scope("email"))
    with pytest.raises(RequestError) as refused:
        world.request("email", duration=timedelta(days=3))
    allowed = world.request("email", duration=timedelta(days=2))

    assert limit == DurationLimit(timedelta(days=2), strict.title)
    assert refused.value.message == "at most 2 days under the policy 'Long requests' (you asked 3 days)"
    assert allowed.policy == world.policy


def test_asking_for_what_ones_grant_covers_names_the_grant(world):
    grant = request_approve(request_id=world.request("email").pk, approver=world.bob, channel=Channel.WEB)

    with pytest.raises(RequestError, match=f"your grant {grant.ref} already covers it until"):
        world.request("email")
    with pytest.raises(RequestError, match="there is nothing to request"):
        world.request("id")


def test_no_matching_policy_means_a_project_administrator_approves(world):
    world.policy.condition = "request.environment_id == 'staging'"
    world.policy.save()
    request = world.request("email")

    assert request.policy is None
    with pytest.raises(NotAllowed):
        request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)
    request_approve(request_id=request.pk, approver=world.dave, channel=Channel.WEB)
    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


def test_auto_approval_where_the_policy_says_so(world):
    world.policy.auto_approve = True
    world.policy.save()

    request = world.request("email")

    assert request.state == State.APPROVED
    assert _decision_for_alice(world).action == "unmask"


def test_the_sweep_expires_grants_times_out_requests_and_warns_once(world):
    ProjectAccessSettings.objects.create(project=world.project, pending_timeout=timedelta(hours=1))
    granted, pending = world.request("email"), world.request("email")
    request_approve(request_id=granted.pk, approver=world.bob, channel=Channel.WEB)
    granted.refresh_from_db()

    warn = requests_sweep(now=granted.expires_at - timedelta(minutes=10))
    warn_again = requests_sweep(now=granted.expires_at - timedelta(minutes=9))
    assert (warn.expiry_notices, warn_again.expiry_notices) == (1, 0)
    assert warn.timed_out == 1
    done = requests_sweep(now=granted.expires_at)
    again = requests_sweep(now=granted.expires_at + timedelta(minutes=1))

    assert (done.expired, again.expired) == (1, 0)
    assert AccessRequest.objects.get(pk=granted.pk).state == State.EXPIRED
    assert AccessRequest.objects.get(pk=pending.pk).state == State.TIMED_OUT
    assert Notification.objects.filter(kind="expired", recipient=world.alice).count() == 1
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_an_extension_starts_where_the_grant_ends(world):
    first = world.request("email")
    request_approve(request_id=first.pk, approver=world.bob, channel=Channel.WEB)
    first.refresh_from_db()

    extension = world.request("email", duration=timedelta(hours=1), extends=first)
    request_approve(request_id=extension.pk, approver=world.bob, channel=Channel.WEB)

    extension.refresh_from_db()
    assert extension.expires_at == first.expires_at + timedelta(hours=1)
    assert extension.starts_at == extension.grant.starts_at == first.expires_at
    assert _decision_for_alice(world).request_ref == first.ref, "the extension waits for its start"
    with time_machine.travel(first.expires_at + timedelta(seconds=1), tick=False):
        assert _decision_for_alice(world).request_ref == extension.ref


@pytest.mark.parametrize(
    ("action", "who", "ended"),
    [(Action.REVOKE, "bob", State.REVOKED), (Action.RELINQUISH, "alice", State.RELINQUISHED)],
)
def test_ending_a_grant_ends_its_extensions(world, action, who, ended):
    first = world.request("email")
    request_approve(request_id=first.pk, approver=world.bob, channel=Channel.WEB)
    first.refresh_from_db()
    scheduled = world.request("email", duration=timedelta(hours=1), extends=first)
    request_approve(request_id=scheduled.pk, approver=world.bob, channel=Channel.WEB)
    further = world.request("email", duration=timedelta(hours=1), extends=scheduled)  # pending

    grant_end(request_id=first.pk, user=getattr(world, who), action=action, channel=Channel.WEB)

    states = {r.pk: r.state for r in AccessRequest.objects.all()}
    assert states == {first.pk: ended, scheduled.pk: ended, further.pk: State.CANCELLED}
    scheduled.refresh_from_db()
    assert scheduled.grant.revoked_at is not None
    assert _decision_for_alice(world).action == "mask"
    with time_machine.travel(first.expires_at + timedelta(minutes=1), tick=False):
        assert _decision_for_alice(world).action == "mask", "the extension never starts"
    because = AuditEvent.objects.get(action=f"request.{ended}", target_id=str(scheduled.pk)).detail
    assert because == {"because": f"{first.ref} was {ended}"}


def test_a_revocation_keeps_its_reason_for_the_requester(world):
    grant = request_approve(request_id=world.request("email").pk, approver=world.bob, channel=Channel.WEB)
    grant.refresh_from_db()
    extension = world.request("email", duration=timedelta(hours=1), extends=grant)

    grant_end(
        request_id=grant.pk,
        user=world.dave,
        action=Action.REVOKE,
        channel=Channel.WEB,
        reason=" Left the team ",
    )

    events = AuditEvent.objects.filter(action__in=["request.revoked", "request.cancelled"]).order_by("seq")
    assert [(e.target_id, e.detail.get("reason")) for e in events] == [
        (str(grant.pk), "Left the team"),
        (str(extension.pk), "Left the team"),
    ]
    assert end_reason(grant) == "Left the team"
    notice = Notification.objects.get(kind="revoked", channel="web", recipient=world.alice)
    assert "Revoked by dave, who wrote: Left the team" in message_text(notice)[1]


def test_a_revocation_without_a_reason_still_works(world):
    grant = request_approve(request_id=world.request("email").pk, approver=world.bob, channel=Channel.WEB)

    grant_end(request_id=grant.pk, user=world.dave, action=Action.REVOKE, channel=Channel.SLACK)

    assert end_reason(grant) == ""
    notice = Notification.objects.get(kind="revoked", channel="web", recipient=world.alice)
    assert "Revoked by dave.\n" in message_text(notice)[1]


def test_a_revocation_reason_has_a_length_limit(world):
    grant = request_approve(request_id=world.request("email").pk, approver=world.bob, channel=Channel.WEB)

    with pytest.raises(RequestError, match="at most 2000 characters"):
        grant_end(
            request_id=grant.pk, user=world.dave, action=Action.REVOKE, channel=Channel.WEB, reason="x" * 2001
        )
    assert AccessRequest.objects.get(pk=grant.pk).state == State.APPROVED


def test_a_grant_has_at_most_one_live_extension(world):
    first = world.request("email")
    request_approve(request_id=first.pk, approver=world.bob, channel=Channel.WEB)
    first.refresh_from_db()
    extension = world.request("email", duration=timedelta(hours=1), extends=first)

    with pytest.raises(
        RequestError, match=f"{extension.ref} already extends {first.ref}; extend {extension.ref}"
    ):
        world.request("email", duration=timedelta(hours=1), extends=first)
    request_approve(request_id=extension.pk, approver=world.bob, channel=Channel.WEB)
    further = world.request("email", duration=timedelta(hours=1), extends=extension)

    further.refresh_from_db()
    assert further.extends == extension, "more time is asked on the extension"
