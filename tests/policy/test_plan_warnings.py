"""Plans warn about approval policies that cannot work: more approvals required than there are
active people who could approve. A warning, never a refusal: a role may gain members later."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from audit.models import Channel
from audit.services import SYSTEM
from jitaccess.models import ApprovalPolicy
from jitaccess.policy.services import approval_policy_save
from masking.policy.diff import plan_against_live
from masking.policy.document import export_document, parse_document, section
from masking.services.roles import role_save
from tests.factories import grant_project_perm, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def pii_approvers(policy_world):
    """A role with two active members, plus one who left (inactive)."""
    members = [make_user("ann"), make_user("bob"), make_user("gone", is_active=False)]
    return role_save(name="pii-approvers", users=members, actor=SYSTEM, channel=Channel.CLI)


def approval_form(**overrides):
    form = {
        "project": "shop",
        "title": "PII",
        "condition": "request.classification_level >= 3",
        "approver_roles": ["pii-approvers"],
        "approvals_required": "99",
        "max_duration": "1d",
        "enabled": "on",
    }
    return {**form, **overrides}


def plan_for(edit):
    document = copy.deepcopy(export_document())
    edit(document)
    return plan_against_live(parse_document(document))


def test_the_review_warns_when_a_policy_needs_more_approvals_than_its_role_has_members(
    polly_client, pii_approvers
):
    review = polly_client.post(reverse("policy:approval-policy-new"), approval_form())

    page = review.content.decode()
    assert review.status_code == 200 and "Review: Save approval policy" in page
    assert (
        "Warning: approval policy &#x27;shop: PII&#x27; needs 99 approvals, but its approver role "
        "&#x27;pii-approvers&#x27; has only 2 active members: requests it matches cannot be approved"
    ) in page, "the inactive member does not count"
    assert 'action="/policy/review/confirm"' in page, "a warning, not a refusal: it can still be applied"


def test_no_warning_when_the_role_has_enough_members(polly_client, pii_approvers):
    review = polly_client.post(reverse("policy:approval-policy-new"), approval_form(approvals_required="2"))

    warnings = review.context["plan"].warnings
    assert [w for w in warnings if "never applies" not in w] == [], "appended after the catch-all"


def test_members_through_an_idp_group_count_once(policy_world, pii_approvers):
    auditors = Group.objects.create(name="auditors")
    for username in ("ann", "cyd"):
        user = make_user(username) if username == "cyd" else pii_approvers.users.get(username="ann")
        user.groups.add(auditors)
    role_save(
        name="pii-approvers",
        users=list(pii_approvers.users.all()),
        groups=[auditors],
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    item = {**_item(), "approvals_required": 4}

    plan = plan_for(lambda d: d["approval_policies"].insert(0, item))  # before the catch-all

    assert plan.warnings == [
        "approval policy 'shop: PII' needs 4 approvals, but its approver role 'pii-approvers' has only "
        "3 active members: requests it matches cannot be approved until more people can approve them"
    ]


def test_taking_members_out_of_a_role_warns_about_the_policies_that_need_them(policy_world, pii_approvers):
    approval_policy_save(
        project=policy_world.project,
        title="PII",
        condition="true",
        approver_roles=[pii_approvers],
        approvals_required=2,
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    def drop_bob(document):
        role = next(r for r in document["roles"] if r["name"] == "pii-approvers")
        role["users"] = ["ann", "gone"]

    plan = plan_for(drop_bob)

    assert plan.warnings == [
        "approval policy 'shop: PII' needs 2 approvals, but its approver role 'pii-approvers' has only "
        "1 active member: requests it matches cannot be approved until more people can approve them"
    ]


def test_an_unrelated_change_does_not_repeat_the_warning_of_a_policy_it_leaves_alone(policy_world):
    assert ApprovalPolicy.objects.get(title="Prod PII").approvals_required == 2, (
        "the fixture's policy needs 2 approvals from a role with no member"
    )

    unrelated = plan_for(lambda d: d["rules"][0].update(enabled=False))
    touched = plan_for(lambda d: d["approval_policies"][0].update(slack_channel="#pii"))

    assert unrelated.warnings == []
    assert touched.warnings == [
        "approval policy 'shop: Prod PII' needs 2 approvals, but its approver role 'support-agents' has "
        "no active member: requests it matches cannot be approved until more people can approve them"
    ]


def test_auto_approving_and_disabled_policies_need_no_approvers(policy_world, pii_approvers):
    auto = {**_item(title="Auto"), "auto_approve": True}
    off = {**_item(title="Off"), "enabled": False}

    plan = plan_for(lambda d: d["approval_policies"].__setitem__(slice(0, 0), [auto, off]))

    assert plan.warnings == []


def test_without_approver_roles_the_project_approvers_are_counted(policy_world):
    approver = make_user("dee")
    grant_project_perm(approver, "approve_request", policy_world.project)
    grant_project_perm(make_user("eli", is_active=False), "approve_request", policy_world.project)
    two = {**_item(title="Two"), "approver_roles": [], "approvals_required": 2}
    one = {**_item(title="One"), "approver_roles": [], "approvals_required": 1}

    plan = plan_for(lambda d: d["approval_policies"].__setitem__(slice(0, 0), [two, one]))

    assert plan.warnings == [
        "approval policy 'shop: Two' needs 2 approvals, but only 1 active person may approve requests in "
        "project 'shop': requests it matches cannot be approved until more people can approve them"
    ]


def test_a_section_can_warn_about_the_items_a_plan_creates_or_updates(policy_world, monkeypatch):
    """The hook an owning app uses for limits only it knows (e.g. a project's duration cap)."""
    rules = section("rules")
    monkeypatch.setattr(rules, "warnings", lambda item: [f"rule {item['title']!r} looks odd"])

    plan = plan_for(lambda d: d["rules"][0].update(enabled=False))

    assert plan.warnings == ["rule 'Emails' looks odd"]
    assert "warning: rule 'Emails' looks odd" in plan.text()


def _item(title="PII"):
    return {
        "project": "shop",
        "title": title,
        "condition": "request.duration_hours > 1.0",  # not a catch-all: nothing after it is shadowed
        "approver_roles": ["pii-approvers"],
        "approvals_required": 99,
        "auto_approve": False,
        "max_duration": None,
        "slack_channel": "",
        "enabled": True,
    }


def test_a_policy_cap_above_the_projects_is_a_warning_naming_both(polly_client, pii_approvers):
    from jitaccess.models import ProjectAccessSettings
    from masking.models import Project

    ProjectAccessSettings.objects.update_or_create(
        project=Project.objects.get(key="shop"), defaults={"max_duration": timedelta(days=7)}
    )

    over = polly_client.post(
        reverse("policy:approval-policy-new"), approval_form(approvals_required="1", max_duration="1000d")
    )
    within = polly_client.post(
        reverse("policy:approval-policy-new"), approval_form(approvals_required="1", max_duration="2d")
    )

    assert "allows up to 1000d, but project shop caps every grant at 7d" in over.content.decode()
    assert "caps every grant" not in within.content.decode()


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ('request.duration_hours == "4"', "compares request.duration_hours, a number, with a string"),
        ("request.nonsense == 1", "known: environment_id, project_id"),
        ("request.environment_id ==", "is not valid CEL"),
    ],
)
def test_approval_policy_conditions_get_the_rule_checks_messages(polly_client, condition, says):
    page = polly_client.post(
        reverse("policy:approval-policy-new"), approval_form(condition=condition, approvals_required="1")
    ).content.decode()

    assert says in page
    assert "Review: Save approval policy" not in page
    assert not ApprovalPolicy.objects.filter(title="PII").exists()
