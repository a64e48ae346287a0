"""Ordered sections (first enabled match wins): a plan warns about an enabled item placed after an
enabled item of its group whose condition is always true, since it can never apply."""

from __future__ import annotations

import copy

import pytest
from django.urls import reverse

from masking.policy.diff import plan_against_live
from masking.policy.document import export_document, parse_document
from tests.factories import make_project

pytestmark = pytest.mark.django_db

SHADOWED_POLICY = (
    "approval policy 'shop: Long requests need two' never applies: it comes after approval policy "
    "'shop: Everything else', whose condition is always true"
)


def plan_for(edit):
    document = copy.deepcopy(export_document())
    edit(document)
    return plan_against_live(parse_document(document))


def policy(title, condition="true", enabled=True, project="shop"):
    return {
        "project": project,
        "title": title,
        "condition": condition,
        "approver_roles": [],
        "approvals_required": 1,
        "auto_approve": True,
        "max_duration": None,
        "slack_channel": "",
        "enabled": enabled,
    }


def test_a_policy_created_after_a_catch_all_of_its_project_is_warned_about_naming_both(policy_world):
    new = policy("Long requests need two", "request.duration_hours > 1.0")

    plan = plan_for(lambda d: d["approval_policies"].append(new))

    assert [w for w in plan.warnings if "never applies" in w] == [
        SHADOWED_POLICY + ", and the first enabled approval policy that matches wins; move it above "
        "'shop: Everything else', or narrow or disable 'shop: Everything else'"
    ]


def test_the_review_page_shows_the_warning(client, policy_world):
    client.force_login(policy_world.polly)
    review = client.post(
        reverse("policy:approval-policy-new"),
        {
            "project": "shop",
            "title": "Long requests need two",
            "condition": "request.duration_hours > 1.0",
            "approvals_required": "1",
            "auto_approve": "on",
            "enabled": "on",
        },
    )

    assert review.status_code == 200
    assert "never applies" in review.content.decode()
    assert "&#x27;shop: Everything else&#x27;" in review.content.decode()


def test_an_empty_condition_counts_as_always_true(policy_world):
    def edit(document):
        document["approval_policies"] = [
            policy("Anything", condition="", enabled=True),
            policy("Later", "request.duration_hours > 2.0"),
        ]

    plan = plan_for(edit)

    assert any("'shop: Later' never applies" in w and "'shop: Anything'" in w for w in plan.warnings)


def test_no_warning_when_the_policy_comes_first_or_the_catch_all_is_disabled_or_in_another_project(
    policy_world,
):
    make_project("mall")
    first = policy("Long requests need two", "request.duration_hours > 1.0")

    placed_first = plan_for(lambda d: d["approval_policies"].insert(0, first))

    def disable_catch_all(document):
        for item in document["approval_policies"]:
            if item["title"] == "Everything else":
                item["enabled"] = False
        document["approval_policies"].append(first)

    disabled = plan_for(disable_catch_all)
    elsewhere = plan_for(
        lambda d: d["approval_policies"].append(policy("Long", "true == true", project="mall"))
    )

    for plan in (placed_first, disabled, elsewhere):
        assert not [w for w in plan.warnings if "never applies" in w], plan.warnings


def test_a_disabled_policy_after_a_catch_all_is_not_warned_about(policy_world):
    new = policy("Long requests need two", "request.duration_hours > 1.0", enabled=False)

    plan = plan_for(lambda d: d["approval_policies"].append(new))

    assert not [w for w in plan.warnings if "never applies" in w]


def test_an_unrelated_plan_says_nothing_about_a_standing_shadowed_policy(policy_world):
    plan_for(lambda d: None)  # nothing planned
    plan = plan_for(lambda d: d["roles"][0].update(description="changed"))

    assert not [w for w in plan.warnings if "never applies" in w]


def test_a_rule_after_a_rule_whose_condition_is_true_is_warned_about(policy_world):
    def edit(document):
        document["rules"].insert(
            0,
            {"title": "Everything", "condition": "true", "semantic_type": "email", "enabled": True},
        )

    plan = plan_for(edit)

    assert [w for w in plan.warnings if "never applies" in w] == [
        "rule 'Emails' never applies: it comes after rule 'Everything', whose condition is always true, "
        "and the first enabled rule that matches wins; move it above 'Everything', or narrow or "
        "disable 'Everything'"
    ]


def test_a_disabled_catch_all_rule_shadows_nothing(policy_world):
    def edit(document):
        document["rules"].insert(
            0,
            {"title": "Everything", "condition": "true", "semantic_type": "email", "enabled": False},
        )

    assert not [w for w in plan_for(edit).warnings if "never applies" in w]
