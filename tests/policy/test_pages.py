"""The policy admin pages, as a policy admin uses them through the web (Django test client)."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.models import ApprovalPolicy
from masking.models import ChangeState, MaskingRule, PolicyChange, PolicyVersion, ProjectPolicySettings
from masking.services.catalog import catalog_upsert
from tests.factories import catalog_payload, grant_project_perm, make_project, make_user
from tests.policy.conftest import confirm

pytestmark = pytest.mark.django_db


def test_every_policy_page_opens_for_a_policy_admin(polly_client):
    rule = MaskingRule.objects.get()
    policy = ApprovalPolicy.objects.first()
    version = PolicyVersion.objects.first()
    pages = [
        reverse("policy:overview"),
        reverse("policy:semantic-types"),
        reverse("policy:semantic-type-new"),
        reverse("policy:semantic-type", args=["email"]),
        reverse("policy:rules"),
        reverse("policy:rule-new"),
        reverse("policy:rule", args=[rule.pk]),
        reverse("policy:exemptions"),
        reverse("policy:exemption-new"),
        reverse("policy:approval-policies"),
        reverse("policy:approval-policy", args=[policy.pk]),
        reverse("policy:versions"),
        reverse("policy:version", args=[version.number]),
        reverse("policy:compare") + f"?a=1&b={version.number}",
        reverse("policy:changes"),
        reverse("policy:code"),
        reverse("policy:settings"),
        reverse("policy:insights"),
        reverse("policy:export"),
    ]
    for url in pages:
        assert polly_client.get(url).status_code == 200, url


def test_someone_who_administers_no_policy_is_refused(client, policy_world):
    client.force_login(policy_world.eve)

    response = client.get(reverse("policy:rules"))

    assert response.status_code == 403
    assert "do not administer masking policy" in response.content.decode()


def test_a_bad_condition_stays_on_the_form_and_a_good_one_goes_to_review_then_a_version(polly_client):
    rule = MaskingRule.objects.get()
    url = reverse("policy:rule", args=[rule.pk])
    form = {"title": "Emails", "semantic_type": "email", "enabled": "on"}

    bad = polly_client.post(url, {**form, "condition": "resource.colour == 'red'"})
    assert bad.status_code == 200
    assert "unknown field(s) resource.colour" in bad.content.decode()

    review = polly_client.post(url, {**form, "condition": 'resource.column_name in ["email", "mail"]'})
    page = review.content.decode()
    assert "Review: Save rule" in page and "Plan: 0 to create, 1 to update, 0 to delete." in page
    assert "<del>resource.column_name == &quot;email&quot;</del>" in page
    assert MaskingRule.objects.get().condition == 'resource.column_name == "email"', (
        "nothing saved before confirm"
    )

    saved = confirm(polly_client, review, "Also catch legacy mail columns")
    version = PolicyVersion.objects.first()
    assert saved.status_code == 302
    assert MaskingRule.objects.get().condition == 'resource.column_name in ["email", "mail"]'
    assert (version.message, version.author_name) == ("Also catch legacy mail columns", "Polly Policy")


def test_the_condition_check_validates_and_lists_matching_columns(polly_client):
    url = reverse("policy:condition-check")

    bad = polly_client.post(url, {"condition": "resource.column_name ==", "kind": "rule"}).json()
    good = polly_client.post(url, {"condition": 'resource.column_name == "phone"', "kind": "rule"}).json()
    shadowed = polly_client.post(url, {"condition": 'resource.column_name != "id"', "kind": "rule"}).json()

    assert not bad["ok"] and bad["error"].startswith("is not valid CEL")
    assert good["ok"] and good["count"] == 2
    assert {m["column"] for m in good["matches"]} == {
        "prod-pg/shop/public.customers.phone",
        "staging-pg/shop/public.customers.phone",
    }
    assert shadowed["taken"] == 2, "both email columns are taken by the earlier Emails rule"


def test_condition_previews_list_only_the_columns_of_projects_one_administers(client, policy_world):
    mall = make_project("mall")
    payload = catalog_payload(instance="mall-pg", project="mall")
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    olga = make_user("olga")
    grant_project_perm(olga, "administer_policy", mall)
    client.force_login(olga)
    url = reverse("policy:condition-check")
    condition = 'resource.column_name == "phone"'

    rule = client.post(url, {"condition": condition, "kind": "rule"}).json()
    other = client.post(url, {"condition": condition, "kind": "exemption", "project": "shop"})
    own = client.post(url, {"condition": condition, "kind": "exemption", "project": "mall"}).json()

    assert {m["column"] for m in rule["matches"]} == {"mall-pg/shop/public.customers.phone"}
    assert other.status_code == 403 and other.json()["error"] == "project: you do not administer 'shop'"
    assert own["count"] == 1
    client.force_login(policy_world.polly)  # administers shop only: sees shop's two, not mall's
    assert {m["column"] for m in client.post(url, {"condition": condition}).json()["matches"]} == {
        "prod-pg/shop/public.customers.phone",
        "staging-pg/shop/public.customers.phone",
    }


def test_the_preview_masks_samples_without_keeping_or_logging_them(polly_client, caplog):
    events, versions = AuditEvent.objects.count(), PolicyVersion.objects.count()

    with caplog.at_level(logging.DEBUG):
        response = polly_client.post(
            reverse("policy:semantic-type-preview"),
            {"algorithm": '{"type": "show_last", "n": 4}', "samples": "4111111111111111\n5555-0100"},
        )

    assert response.json() == {
        "ok": True,
        "results": [
            {"input": "4111111111111111", "output": "************1111"},
            {"input": "5555-0100", "output": "*****0100"},
        ],
        "throwaway_key": False,
    }
    assert (AuditEvent.objects.count(), PolicyVersion.objects.count()) == (events, versions)
    assert "4111111111111111" not in caplog.text
    assert response["Cache-Control"].startswith("max-age=0")


def test_the_preview_reports_an_invalid_algorithm(polly_client):
    response = polly_client.post(
        reverse("policy:semantic-type-preview"), {"algorithm": '{"type": "show_last"}', "samples": "x"}
    )

    assert response.json() == {"ok": False, "error": "n: is required"}


def test_moving_a_rule_up_is_reviewed_as_a_reorder(polly_client, policy_world):
    empty = polly_client.post(reverse("policy:rule-new"), {})
    assert empty.templates[0].name == "masking/rule_form.html", "an empty form never reaches review"
    review = polly_client.post(
        reverse("policy:rule-new"),
        {
            "title": "Phones",
            "condition": 'resource.column_name == "phone"',
            "semantic_type": "phone",
            "enabled": "on",
        },
    )
    confirm(polly_client, review)
    phones = MaskingRule.objects.get(title="Phones")

    moved = polly_client.post(reverse("policy:rule-move", args=[phones.pk, "up"]))
    assert "Plan: 0 to create, 0 to update, 0 to delete, 1 to reorder." in moved.content.decode()
    confirm(polly_client, moved)

    assert list(MaskingRule.objects.order_by("position").values_list("title", flat=True)) == [
        "Phones",
        "Emails",
    ]


def test_a_review_overtaken_by_another_change_is_shown_again(polly_client, policy_world):
    review = polly_client.post(
        reverse("policy:semantic-type", args=["email"]),
        {"key": "email", "title": "Email address", "description": "", "algorithm": '{"type": "email"}'},
    )
    MaskingRule.objects.get().delete()
    other = polly_client.post(
        reverse("policy:semantic-type", args=["phone"]),
        {"key": "phone", "title": "Phone", "description": "", "algorithm": '{"type": "full"}'},
    )
    confirm(polly_client, other)

    again = confirm(polly_client, review)

    assert again.status_code == 200
    assert "The policy changed while you reviewed" in again.content.decode()


def test_with_the_two_person_rule_the_web_change_waits_and_only_someone_else_approves(client, policy_world):
    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)
    client.force_login(policy_world.polly)
    review = client.post(
        reverse("policy:semantic-type", args=["email"]),
        {"key": "email", "title": "Email address", "description": "", "algorithm": '{"type": "email"}'},
    )
    assert "Submit for approval" in review.content.decode()

    submitted = confirm(client, review, "Clearer title")
    change = PolicyChange.objects.get()
    page = client.get(submitted["Location"]).content.decode()
    assert "someone else must approve it" in page and "Approve and apply" not in page
    refused = client.post(reverse("policy:change-decide", args=[change.pk, "approve"]))
    assert refused.status_code == 403

    client.force_login(policy_world.quinn)
    assert "Approve and apply" in client.get(reverse("policy:change", args=[change.pk])).content.decode()
    client.post(reverse("policy:change-decide", args=[change.pk, "approve"]))

    change.refresh_from_db()
    assert change.state == ChangeState.APPLIED
    assert change.version.approved_by_name == "Quinn Second"


def test_a_policy_file_is_planned_and_applied_from_the_browser(polly_client):
    exported = polly_client.get(reverse("policy:export")).content.decode()
    edited = exported.replace("approvals_required: 2", "approvals_required: 1")

    review = polly_client.post(reverse("policy:code"), {"source": edited, "source_format": "veil"})
    assert "approvals_required" in review.content.decode()
    confirm(polly_client, review, "One approval is enough")
    again = polly_client.post(reverse("policy:code"), {"source": edited, "source_format": "veil"})

    assert ApprovalPolicy.objects.get(title="Prod PII").approvals_required == 1
    assert "No changes." in again.content.decode()


def test_a_broken_policy_file_is_shown_next_to_the_text(polly_client):
    response = polly_client.post(reverse("policy:code"), {"source": "rules: [{}]", "source_format": "veil"})

    assert "rules[0].title: is required" in response.content.decode()


def test_rollback_from_the_versions_page_restores_an_old_version(polly_client, policy_world):
    before = PolicyVersion.objects.first()
    review = polly_client.post(
        reverse("policy:semantic-type", args=["email"]),
        {"key": "email", "title": "Renamed", "description": "", "algorithm": '{"type": "email"}'},
    )
    confirm(polly_client, review)

    rollback = polly_client.post(reverse("policy:rollback", args=[before.number]))
    confirm(polly_client, rollback, f"Roll back to version {before.number}")

    latest = PolicyVersion.objects.first()
    assert latest.rollback_of == before.number and latest.snapshot == before.snapshot
