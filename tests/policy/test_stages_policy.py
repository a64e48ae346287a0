"""An approval policy's stages as policy: the policy document (export, plan, apply, round trip),
the edit page and the list, and the refusals, each naming the field at fault."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from identity.models import Role
from jitaccess.models import ApprovalPolicy, ApprovalStage
from jitaccess.policy.services import OnCallRule, StageRule, approval_policy_save
from masking.models import Project
from masking.policy.diff import plan_against_live
from masking.policy.document import DocumentError, dump_yaml, export_document, load_yaml, parse_document
from masking.services.policy import PolicyError
from masking.services.roles import role_save
from tests.policy.conftest import confirm

pytestmark = pytest.mark.django_db


@pytest.fixture
def roles(policy_world):
    """support-agents (the world's), and security."""
    security = role_save(name="security", description="Security", actor=SYSTEM, channel=Channel.CLI)
    return Role.objects.get(name="support-agents"), security


def save(**fields):
    defaults = {"project": Project.objects.get(key="shop"), "title": "Card data", "condition": "true"}
    return approval_policy_save(**{**defaults, **fields}, actor=SYSTEM, channel=Channel.CLI)


def two_stages(roles) -> list[StageRule]:
    agents, security = roles
    return [StageRule("Data owner", (agents,), 1), StageRule("Security", (security,), 2)]


def export_text() -> str:
    out = StringIO()
    call_command("policy", "export", stdout=out)
    return out.getvalue()


def with_stages(stages, **fields):
    """The live document's approval policies, "Card data" given `stages` (and `fields`)."""
    document = copy.deepcopy(export_document())
    [item] = [i for i in document["approval_policies"] if i["title"] == "Card data"]
    item.update(fields, stages=stages)
    return {"approval_policies": document["approval_policies"]}


def test_the_document_carries_the_stages_in_order_and_round_trips(roles, tmp_path):
    save(stages=two_stages(roles))
    text = export_text()
    assert (
        "  stages:\n"
        "  - name: Data owner\n"
        "    approver_roles:\n"
        "    - support-agents\n"
        "    approvals_required: 1\n"
        "  - name: Security\n"
        "    approver_roles:\n"
        "    - security\n"
        "    approvals_required: 2\n"
    ) in text
    assert not plan_against_live(load_yaml(text)).has_changes, "export, then plan: nothing to do"
    exported = tmp_path / "policy.yaml"
    exported.write_text(text)
    ApprovalPolicy.objects.filter(title="Card data").delete()

    call_command("policy", "apply", str(exported), "-m", "Restore from git", stdout=StringIO())

    assert export_text() == text
    stages = ApprovalStage.objects.filter(policy__title="Card data").order_by("position")
    assert [(s.name, [r.name for r in s.approver_roles.all()], s.approvals_required) for s in stages] == [
        ("Data owner", ["support-agents"], 1),
        ("Security", ["security"], 2),
    ]


def test_a_policy_without_stages_exports_as_before_and_an_old_document_plans_no_change(roles):
    save()
    document = export_document()
    assert all("stages" not in item for item in document["approval_policies"])
    assert "stages" not in export_text()

    assert not plan_against_live(parse_document(copy.deepcopy(document))).has_changes
    assert not plan_against_live(parse_document(with_stages([]))).has_changes, "stages: [] is no stages"


def test_changing_a_stage_is_a_diff_of_the_stages_and_requests_keep_theirs(roles):
    save(stages=two_stages(roles))
    stages = copy.deepcopy(export_document())
    [item] = [i for i in stages["approval_policies"] if i["title"] == "Card data"]
    changed = [dict(item["stages"][0]), {**item["stages"][1], "approvals_required": 1}]

    plan = plan_against_live(parse_document(with_stages(changed)))

    [change] = plan.changes
    assert (change.action, change.key, [f.field for f in change.fields]) == (
        "update",
        "shop: Card data",
        ["stages"],
    )
    assert change.fields[0].after[1]["approvals_required"] == 1


def test_the_audit_event_of_a_save_names_the_stages(roles):
    save(stages=two_stages(roles))

    event = AuditEvent.objects.get(action="approval_policy.created", target_repr="Card data")
    assert event.detail["after"]["stages"] == [
        {"name": "Data owner", "approver_roles": ["support-agents"], "approvals_required": 1},
        {"name": "Security", "approver_roles": ["security"], "approvals_required": 2},
    ]
    assert "stages" not in AuditEvent.objects.get(target_repr="Everything else").detail["after"]


STAGE = {"name": "Security", "approver_roles": ["security"], "approvals_required": 1}


@pytest.mark.parametrize(
    ("stages", "fields", "path", "message"),
    [
        ("Security", {}, "stages", "must be a list of mappings"),
        (["Security"], {}, "stages[0]", "must be a mapping"),
        ([{"approver_roles": ["security"]}], {}, "stages[0].name", "is required"),
        ([{**STAGE, "name": "  "}], {}, "stages[0].name", "must not be empty"),
        ([{**STAGE, "quorum": 2}], {}, "stages[0].quorum", "unknown field"),
        (
            [{**STAGE, "approvals_required": 0}],
            {},
            "stages[0].approvals_required",
            "must be an integer from 1",
        ),
        (
            [{**STAGE, "approver_roles": "security"}],
            {},
            "stages[0].approver_roles",
            "must be a list of names",
        ),
        ([STAGE, {**STAGE, "name": "security"}], {}, "stages", "two stages are named 'security'"),
        ([{**STAGE, "name": f"S{i}"} for i in range(5)], {}, "stages", "at most 4 stages"),
        (
            [STAGE],
            {"approver_roles": ["support-agents"]},
            "approver_roles",
            "names its approver roles in each",
        ),
        ([STAGE], {"approvals_required": 2}, "approvals_required", "sets how many approve in each stage"),
        ([STAGE], {"auto_approve": True}, "auto_approve", "approved stage by stage"),
    ],
)
def test_a_document_with_stages_that_cannot_work_is_refused_naming_the_field(
    roles, stages, fields, path, message
):
    save()

    with pytest.raises(DocumentError) as refused:
        parse_document(with_stages(stages, **fields))

    assert refused.value.path.endswith(f"].{path}"), refused.value.path
    assert message in refused.value.message


def test_a_stage_naming_an_unknown_role_is_refused_and_nothing_changes(roles, tmp_path):
    save()
    bad = tmp_path / "policy.yaml"
    bad.write_text(dump_yaml(with_stages([{**STAGE, "approver_roles": ["no-such-role"]}])))

    with pytest.raises(CommandError, match=r"approval_policies\[\d+\]\.stages.*no-such-role"):
        call_command("policy", "apply", str(bad), "-m", "x", stdout=StringIO())
    assert not ApprovalStage.objects.exists()


def test_the_service_refuses_the_same_rules(roles):
    agents, _ = roles
    with pytest.raises(PolicyError) as refused:
        save(stages=[StageRule("Data owner", (agents,)), StageRule("data owner")])
    assert (refused.value.field, refused.value.message) == ("stages", "two stages are named 'data owner'")
    assert not ApprovalPolicy.objects.filter(title="Card data").exists()


def test_an_on_call_schedule_may_go_with_stages(roles):
    """Whoever is on call counts at the stage waiting (docs/jit.md, on-call approval)."""
    save(stages=two_stages(roles), oncall=OnCallRule(provider="pagerduty", schedule_id="PSCHED1"))

    [item] = [i for i in export_document()["approval_policies"] if i["title"] == "Card data"]
    assert (item["oncall"]["schedule"], len(item["stages"])) == ("PSCHED1", 2)
    assert not plan_against_live(parse_document(copy.deepcopy(export_document()))).has_changes


# --- The edit page -----------------------------------------------------------------------------


def page_form(**overrides):
    form = {
        "project": "shop",
        "title": "Card data",
        "condition": "true",
        "approvals_required": "1",
        "enabled": "on",
        "stage_1_name": "Data owner",
        "stage_1_approver_roles": ["support-agents"],
        "stage_2_name": "Security",
        "stage_2_approver_roles": ["security"],
        "stage_2_approvals_required": "2",
    }
    return {**form, **overrides}


def test_the_edit_page_saves_the_stages_through_the_review_and_shows_them(roles, polly_client):
    review = polly_client.post(reverse("policy:approval-policy-new"), page_form())
    assert review.status_code == 200 and "Review: Save approval policy" in review.content.decode()

    confirm(polly_client, review)

    policy = ApprovalPolicy.objects.get(title="Card data")
    assert [(s.name, s.approvals_required) for s in policy.stages.all()] == [
        ("Data owner", 1),
        ("Security", 2),
    ]
    page = polly_client.get(reverse("policy:approval-policy", args=[policy.pk])).content.decode()
    assert 'name="stage_2_name" value="Security"' in page.replace("  ", " "), (
        "the form shows the saved stages"
    )
    listing = " ".join(polly_client.get(reverse("policy:approval-policies")).content.decode().split())
    assert "<li>Data owner: 1 of support-agents</li><li>Security: 2 of security</li>" in listing


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"stage_1_name": ""}, "stage_1_name", "Name this stage, or clear its roles and approvals."),
        ({"stage_2_name": "data owner"}, None, "Stages: two stages are named 'data owner'"),
        ({"approver_roles": ["support-agents"]}, "approver_roles", "names its approver roles in each stage"),
        ({"auto_approve": "on"}, "auto_approve", "approved stage by stage"),
        ({"stage_2_approvals_required": "0"}, "stage_2_approvals_required", "greater than or equal to 1"),
    ],
)
def test_the_edit_page_names_the_stage_field_at_fault(roles, polly_client, overrides, field, message):
    response = polly_client.post(reverse("policy:approval-policy-new"), page_form(**overrides))

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert message in " ".join(errors[field if field else "__all__"])
    assert not ApprovalPolicy.objects.filter(title="Card data").exists()


def test_a_plan_warns_about_a_stage_that_too_few_people_can_approve(roles):
    save()

    plan = plan_against_live(parse_document(with_stages([{**STAGE, "approvals_required": 2}])))

    assert (
        "approval policy 'shop: Card data' needs 2 approvals at stage 'Security', but its approver role "
        "'security' has no active member: requests it matches cannot be approved until more people can "
        "approve them"
    ) in plan.warnings
    assert not [w for w in plan.warnings if "needs 1 approval," in w], "not the policy's own, unused quorum"
