"""The feedback-loop insights: requested columns, over-masked roles, attempts, latency, dead policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from audit.models import Channel
from audit.services import ANONYMOUS, SYSTEM, record_event, record_unmask_decisions
from jitaccess.models import AccessRequest
from jitaccess.policy import insights
from jitaccess.states import State
from masking.models import Database, Exemption, SemanticType
from masking.policy.insights import exemptions_never_used, rule_usage
from masking.services.policy import rule_save
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def make_request(requester, state=State.APPROVED, columns=("phone",), created=None, decided_after=None):
    created = created or timezone.now() - timedelta(days=1)
    request = AccessRequest.objects.create(
        project_id=Database.objects.get(instance__key="prod-pg").project_id,
        requester=requester,
        database=Database.objects.get(instance__key="prod-pg"),
        schema_name="public",
        table_name="customers",
        column_names=list(columns),
        duration=timedelta(hours=1),
        reason="ticket",
        state=state,
        pending_until=created + timedelta(days=1),
        decided_at=created + decided_after if decided_after else None,
    )
    AccessRequest.objects.filter(pk=request.pk).update(created_at=created)
    return request


@pytest.fixture
def agent(policy_world):
    alice = make_user("alice")
    alice.groups.add(Group.objects.get(name="support"))
    return alice


def test_a_column_asked_for_again_and_again_by_one_role_is_a_standing_exemption_candidate(
    client, policy_world, agent
):
    for _ in range(3):
        make_request(agent, decided_after=timedelta(minutes=10))
    make_request(agent, columns=("email",), state=State.DENIED)
    since = timezone.now() - timedelta(days=90)

    top = insights.requested_columns(since)[0]

    assert (top.label, top.requests, top.approved, top.top_role) == (
        "prod-pg/shop/public.customers.phone",
        3,
        3,
        "support-agents",
    )
    assert top.candidate
    assert not insights.requested_columns(since)[1].candidate, "a denied column is no candidate"

    client.force_login(policy_world.polly)
    page = client.get(reverse("policy:insights")).content.decode()
    assert "Draft standing exemption for support-agents" in page
    draft = client.post(
        reverse("policy:draft-exemption"),
        {
            "project": "shop",
            "role": "support-agents",
            "condition": top.condition,
            "label": top.label,
            "requests": "3",
        },
    )
    body = draft.content.decode()
    assert "Draft: standing exemption for support-agents" in body
    assert "Plan: 1 to create, 0 to update, 0 to delete." in body
    assert Exemption.objects.count() == 1, "a draft changes nothing until confirmed"


def test_a_role_with_many_approvals_and_no_denials_is_flagged_over_masked(policy_world, agent):
    for _ in range(5):
        make_request(agent)
    eng = make_user("erin")
    make_request(eng, state=State.DENIED)

    loads = {load.role: load for load in insights.role_load(timezone.now() - timedelta(days=90))}

    assert loads["support-agents"].over_masked
    assert not loads["(no role)"].over_masked


def test_a_burst_of_failed_sign_ins_is_a_spike_against_the_principals_own_baseline(policy_world, agent):
    now = timezone.now()
    for _ in range(4):
        record_event(
            action="auth.sign_in_failed", actor=ANONYMOUS, channel=Channel.WEB, detail={"username": "mallory"}
        )
    make_request(agent, state=State.DENIED, created=now - timedelta(days=3))

    series = {s.principal: s for s in insights.attempts(now - timedelta(days=28), now)}

    assert series["mallory"].spikes == [timezone.localdate(now)]
    assert series["mallory"].total == 4
    assert series["alice"].spikes == [], "one denial is no spike"


def test_a_noisy_principal_needs_far_more_to_spike():
    days = [timezone.localdate() - timedelta(days=n) for n in range(10, -1, -1)]
    steady = {day: 5 for day in days[:-1]}
    steady[days[-1]] = 6

    marked = insights._mark_spikes(days, insights.Counter(steady))

    assert not any(spike for _, _, spike in marked)


def test_latency_and_backlog(policy_world, agent):
    make_request(agent, decided_after=timedelta(minutes=5))
    make_request(agent, decided_after=timedelta(hours=2))
    make_request(agent, state=State.PENDING, created=timezone.now() - timedelta(hours=3))

    latency = insights.latency(timezone.now() - timedelta(days=90))

    assert latency.decided == 0, "approved without recorded approvals: auto-approved, not waited for"
    assert latency.pending == 1 and latency.oldest_pending >= timedelta(hours=3)
    assert latency.pending_by_project == [("shop", 1)]


def test_rules_that_never_decide_and_exemptions_never_used(policy_world):
    rule_save(
        title="Nothing",
        condition='resource.column_name == "no-such-column"',
        semantic_type=SemanticType.objects.get(key="email"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    rule_save(
        title="Shadowed",
        condition='resource.column_name == "email"',
        semantic_type=SemanticType.objects.get(key="phone"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    since = timezone.now() - timedelta(days=90)
    exemption = Exemption.objects.get()

    statuses = {u.rule.title: u.status for u in rule_usage()}
    assert statuses == {
        "Emails": "",
        "Nothing": "matches no column",
        "Shadowed": "every column it matches is taken by an earlier rule",
    }
    assert exemptions_never_used(since) == [exemption]

    record_unmask_decisions(
        service_account="sql-proxy",
        principal_type="user",
        principal_id="1",
        principal_name="alice",
        query_id="q1",
        policy_version=1,
        asserted_groups=[],
        unmasked=[
            {"column": "x", "reason": "exemption", "id": exemption.pk, "expires_at": None, "request": ""}
        ],
    )
    assert exemptions_never_used(since) == []


def test_an_administrator_of_another_project_sees_none_of_the_shops_requests(client, policy_world, agent):
    """Like the Checks page, insights show the requests of the projects the reader administers:
    an administrator of another project saw who asked for which shop columns, who was denied,
    and every failed sign-in (a typo'd password is often typed as a username)."""
    from tests.factories import grant_project_perm, make_project

    for _ in range(3):
        make_request(agent, decided_after=timedelta(minutes=10))
    make_request(agent, columns=("email",), state=State.DENIED)
    make_request(agent, state=State.PENDING)
    record_event(
        action="auth.sign_in_failed",
        actor=ANONYMOUS,
        channel=Channel.WEB,
        detail={"username": "hunter2-typo"},
    )
    outsider = make_user("olga")
    grant_project_perm(outsider, "administer_policy", make_project("billing"))

    client.force_login(outsider)
    theirs = client.get(reverse("policy:insights")).content.decode()
    client.force_login(policy_world.polly)
    ours = client.get(reverse("policy:insights")).content.decode()

    for shown in ("prod-pg/shop/public.customers.phone", "shop: 1", "<td>alice</td>"):
        assert shown in ours
        assert shown not in theirs
    assert "hunter2-typo" not in theirs and "hunter2-typo" not in ours, "sign-ins: global admins only"
