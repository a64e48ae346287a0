"""An approval policy's on-call schedule as policy: the edit page, the policy document (export,
plan, apply, round trip) and the refusals, each naming the field at fault."""

from __future__ import annotations

import copy
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.models import ApprovalPolicy
from jitaccess.oncall import OnCallProvider
from jitaccess.policy.services import OnCallRule, approval_policy_save
from masking.models import Project
from masking.policy.diff import plan_against_live
from masking.policy.document import DocumentError, dump_yaml, export_document, parse_document
from masking.services.policy import PolicyError
from tests.policy.conftest import confirm

pytestmark = pytest.mark.django_db

RESPONDERS = OnCallRule(
    provider=OnCallProvider.PAGERDUTY,
    schedule_id="PSCHED1",
    responder_auto_approve=True,
    responder_max_duration=timedelta(hours=1),
)


def save(**fields):
    defaults = {"project": Project.objects.get(key="shop"), "title": "Incidents", "condition": "true"}
    return approval_policy_save(**{**defaults, **fields}, actor=SYSTEM, channel=Channel.CLI)


def export_text() -> str:
    out = StringIO()
    call_command("policy", "export", stdout=out)
    return out.getvalue()


def with_oncall(oncall):
    document = copy.deepcopy(export_document())
    [item] = [i for i in document["approval_policies"] if i["title"] == "Incidents"]
    item["oncall"] = oncall
    return {"approval_policies": document["approval_policies"]}


def test_the_document_carries_the_schedule_and_round_trips(policy_world, tmp_path, settings):
    settings.PAGERDUTY_API_TOKEN = "configured"
    save(max_duration=timedelta(hours=4), oncall=RESPONDERS)
    text = export_text()
    assert (
        "  oncall: {provider: pagerduty, responder_auto_approve: true, responder_max_duration: 1h, "
        "schedule: PSCHED1}\n"
    ) in text
    exported = tmp_path / "policy.yaml"
    exported.write_text(text)
    ApprovalPolicy.objects.all().delete()

    call_command("policy", "apply", str(exported), "-m", "Restore from git", stdout=StringIO())

    assert export_text() == text
    policy = ApprovalPolicy.objects.get(title="Incidents")
    assert (policy.oncall_provider, policy.oncall_schedule_id, policy.oncall_responder_max_duration) == (
        "pagerduty",
        "PSCHED1",
        timedelta(hours=1),
    )


def test_a_document_from_before_on_call_approval_plans_no_change(policy_world):
    save()
    document = copy.deepcopy(export_document())
    for item in document["approval_policies"]:
        assert item.pop("oncall") is None  # a policy without a schedule exports `oncall: null`

    assert not plan_against_live(parse_document(document)).has_changes


@pytest.mark.parametrize(
    ("oncall", "path", "message"),
    [
        (
            {"provider": "victorops", "schedule": "S1"},
            "oncall.provider",
            "must be one of pagerduty, opsgenie",
        ),
        ({"provider": "pagerduty"}, "oncall.schedule", "is required"),
        (
            {"provider": "pagerduty", "schedule": "../users"},
            "oncall.schedule",
            "must be the provider's schedule ID",
        ),
        (
            {"provider": "pagerduty", "schedule": "S1", "responder_auto_approve": True},
            "oncall.responder_max_duration",
            "is required to approve the responder at once",
        ),
        (
            {"provider": "pagerduty", "schedule": "S1", "responder_max_duration": "8h"},
            "oncall.responder_max_duration",
            "must be at most the policy's max_duration",
        ),
        (
            {"provider": "pagerduty", "schedule": "S1", "responder_max_duration": "soon"},
            "oncall.responder_max_duration",
            "must be a duration",
        ),
        ({"provider": "pagerduty", "schedule": "S1", "team": "dba"}, "oncall.team", "unknown field"),
        (
            {"provider": "pagerduty", "schedule": "S1", "responder_auto_approve": "yes"},
            "oncall.responder_auto_approve",
            "must be true or false",
        ),
    ],
)
def test_a_document_with_an_on_call_rule_that_cannot_work_is_refused_naming_the_field(
    policy_world, oncall, path, message
):
    save(max_duration=timedelta(hours=4))

    with pytest.raises(DocumentError) as refused:
        parse_document(with_oncall(oncall))

    assert refused.value.path.endswith(path)
    assert message in refused.value.message


def test_apply_refuses_a_bad_file_with_its_path_and_changes_nothing(policy_world, tmp_path):
    save(max_duration=timedelta(hours=4))
    document = with_oncall({"provider": "pagerduty"})
    bad = tmp_path / "policy.yaml"
    bad.write_text(dump_yaml(document))

    with pytest.raises(CommandError, match=r"approval_policies\[\d+\]\.oncall\.schedule: is required"):
        call_command("policy", "apply", str(bad), "-m", "x", stdout=StringIO())
    assert ApprovalPolicy.objects.get(title="Incidents").oncall_schedule_id == ""


def test_the_service_refuses_the_same_rules(policy_world):
    with pytest.raises(PolicyError) as refused:
        save(oncall=OnCallRule(provider="", schedule_id="PSCHED1"))
    assert refused.value.field == "oncall_provider"
    with pytest.raises(PolicyError) as refused:
        save(oncall=OnCallRule(provider="pagerduty", schedule_id="PSCHED1", responder_auto_approve=True))
    assert refused.value.field == "oncall_responder_max_duration"


def test_a_plan_warns_when_the_provider_has_no_credential(policy_world, settings):
    settings.PAGERDUTY_API_TOKEN = ""
    save()

    plan = plan_against_live(parse_document(with_oncall({"provider": "pagerduty", "schedule": "PSCHED1"})))

    assert plan.has_changes
    assert (
        "approval policy shop: 'Incidents' names pagerduty schedule PSCHED1, but PAGERDUTY_API_TOKEN is "
        "not set: nobody counts as on call for it"
    ) in plan.warnings


# --- The edit page -----------------------------------------------------------------------------


def page_form(**overrides):
    form = {
        "project": "shop",
        "title": "Incidents",
        "condition": "true",
        "approvals_required": "1",
        "max_duration": "4h",
        "enabled": "on",
        "oncall_provider": "opsgenie",
        "oncall_schedule_id": "d875a1f4-9b4e-4219-a1f3-0c26936d18de",
        "oncall_responder_auto_approve": "on",
        "oncall_responder_max_duration": "30m",
    }
    return {**form, **overrides}


def test_the_edit_page_saves_the_schedule_through_the_review(polly_client, settings):
    settings.OPSGENIE_API_KEY = "configured"
    review = polly_client.post(reverse("policy:approval-policy-new"), page_form())
    assert review.status_code == 200 and "Review: Save approval policy" in review.content.decode()

    confirm(polly_client, review)

    policy = ApprovalPolicy.objects.get(title="Incidents")
    assert (policy.oncall_provider, policy.oncall_responder_auto_approve) == ("opsgenie", True)
    assert policy.oncall_responder_max_duration == timedelta(minutes=30)
    saved = AuditEvent.objects.get(action="approval_policy.created", target_repr="Incidents")
    assert saved.detail["after"]["oncall"] == {
        "provider": "opsgenie",
        "schedule": "d875a1f4-9b4e-4219-a1f3-0c26936d18de",
        "responder_auto_approve": True,
        "responder_max_duration_s": 1800,
    }
    page = polly_client.get(reverse("policy:approval-policy", args=[policy.pk])).content.decode()
    assert 'value="d875a1f4-9b4e-4219-a1f3-0c26936d18de"' in page, "the form shows the saved schedule"
    listing = polly_client.get(reverse("policy:approval-policies")).content.decode()
    assert "and whoever is on call for Opsgenie schedule d875a1f4-9b4e-4219-a1f3-0c26936d18de" in listing


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"oncall_schedule_id": ""}, "oncall_schedule_id", "name the schedule whose people approve"),
        ({"oncall_provider": ""}, "oncall_provider", "name the provider of the schedule"),
        ({"oncall_responder_max_duration": ""}, "oncall_responder_max_duration", "is required"),
        ({"oncall_responder_max_duration": "8h"}, "oncall_responder_max_duration", "at most the policy's"),
        ({"oncall_schedule_id": "a b"}, "oncall_schedule_id", "must be the provider's schedule ID"),
    ],
)
def test_the_edit_page_names_the_on_call_field_at_fault(polly_client, overrides, field, message):
    response = polly_client.post(reverse("policy:approval-policy-new"), page_form(**overrides))

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert not ApprovalPolicy.objects.filter(title="Incidents").exists()
