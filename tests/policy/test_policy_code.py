"""Policy as code: export, plan and apply through `manage.py policy`, and Bytebase imports."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from veil_sdk.algorithms import apply as mask

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from identity.models import Role, ServiceAccount
from jitaccess.models import ApprovalPolicy
from masking.decisions.engine import ColumnKey, Principal
from masking.models import (
    Exemption,
    MaskingRule,
    PolicyVersion,
    ProjectPolicySettings,
    SemanticType,
)
from masking.policy.document import dump_yaml, export_document
from masking.selectors import load_policy
from masking.services.policy import exemption_create, rule_save
from masking.services.policy_changes import policy_submit

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str) -> tuple[int, str]:
    """Run `manage.py policy ...`; returns its exit code and what it printed."""
    out = StringIO()
    try:
        call_command("policy", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def richer_policy(world) -> None:
    """What the world lacks for a thorough round trip: order, a disabled rule, expiry, members."""
    rule_save(
        title="Phones",
        condition='resource.column_name == "phone"',
        semantic_type=SemanticType.objects.get(key="phone"),
        enabled=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    rule_save(
        title="Anything tagged sensitive",
        condition='"sensitive" in resource.tags',
        semantic_type=SemanticType.objects.get(key="email"),
        position=0,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    exemption_create(
        project=world.project,
        reason="ETL copies emails into the warehouse\nuntil the Q3 migration",
        condition='resource.column_name == "email"',
        users=[world.quinn],
        service_accounts=[ServiceAccount.objects.get(name="etl")],
        expires_at=timezone.now() + timedelta(days=30),
        created_by=None,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    ProjectPolicySettings.objects.create(project=world.project, two_person_rule=True)


def empty_the_policy() -> None:
    """An instance with the same catalog and people but no policy at all."""
    ApprovalPolicy.objects.all().delete()
    Exemption.objects.all().delete()
    MaskingRule.objects.all().delete()
    SemanticType.objects.all().delete()
    Role.objects.all().delete()
    ProjectPolicySettings.objects.all().delete()


def test_export_then_apply_on_an_empty_instance_then_export_gives_the_identical_file(policy_world, tmp_path):
    richer_policy(policy_world)
    exported = tmp_path / "policy.yaml"
    assert run("export", "--output", str(exported))[0] == 0
    first = exported.read_text()
    empty_the_policy()

    code, output = run("apply", str(exported), "-m", "Restore from git")
    second = StringIO()
    call_command("policy", "export", stdout=second)

    assert code == 0, output
    assert "Applied as policy version" in output
    assert second.getvalue() == first
    assert [r.title for r in MaskingRule.objects.order_by("position")] == [
        "Anything tagged sensitive",
        "Emails",
        "Phones",
    ]


def test_plan_on_an_unchanged_policy_reports_no_changes_and_exits_0(policy_world, tmp_path):
    exported = tmp_path / "policy.yaml"
    run("export", "--output", str(exported))

    code, output = run("plan", str(exported))

    assert code == 0
    assert output.strip().endswith("No changes.")


def test_plan_shows_field_diffs_and_exits_2_without_changing_anything(policy_world, tmp_path):
    text = dump_yaml(export_document())
    text = text.replace("algorithm: {type: show_last, n: 2}", "algorithm: {type: show_last, n: 4}")
    text = text.replace("- title: Emails\n", "- title: Emails everywhere\n")
    changed = tmp_path / "policy.yaml"
    changed.write_text(text)
    versions = PolicyVersion.objects.count()

    code, output = run("plan", str(changed))

    assert code == 2
    assert "~ update phone" in output
    assert 'algorithm: {"type": "show_last", "n": 2} -> {"type": "show_last", "n": 4}' in output
    assert "+ create Emails everywhere" in output and "- delete Emails" in output
    assert "Plan: 1 to create, 1 to update, 1 to delete." in output
    assert SemanticType.objects.get(key="phone").algorithm["n"] == 2
    assert PolicyVersion.objects.count() == versions


def test_apply_is_one_version_with_one_audit_trail(policy_world, tmp_path):
    text = dump_yaml(export_document()).replace("title: Email\n", "title: Email address\n")
    text = text.replace("approvals_required: 2", "approvals_required: 3")
    changed = tmp_path / "policy.yaml"
    changed.write_text(text)
    before = PolicyVersion.objects.count()

    code, output = run("apply", str(changed), "-m", "Tighten prod approvals")

    assert code == 0, output
    assert PolicyVersion.objects.count() == before + 1
    version = PolicyVersion.objects.first()
    assert version.message == "Tighten prod approvals"
    assert {(c["section"], c["action"]) for c in version.changes} == {
        ("semantic_types", "update"),
        ("approval_policies", "update"),
    }
    event = AuditEvent.objects.filter(action="policy.version_created").last()
    assert event.detail["number"] == version.number and event.detail["message"] == "Tighten prod approvals"
    assert AuditEvent.objects.filter(action="approval_policy.updated").exists()


def test_an_invalid_file_is_refused_with_its_path_and_nothing_changes(policy_world, tmp_path):
    text = dump_yaml(export_document())
    text = text.replace("title: Email\n", "title: Email address\n")  # a valid change...
    text = text.replace('condition: resource.column_name == "email"', "condition: resource.colour == 'red'")
    changed = tmp_path / "policy.yaml"
    changed.write_text(text)

    with pytest.raises(CommandError, match=r"rules\[0\]\.condition: unknown field"):
        call_command("policy", "apply", str(changed), "-m", "x")

    assert SemanticType.objects.get(key="email").title == "Email"


def test_a_section_left_out_of_the_file_is_left_as_it_is(policy_world, tmp_path):
    partial = tmp_path / "rules.yaml"
    partial.write_text(
        "rules:\n- title: Phones\n  condition: resource.column_name == 'phone'\n  semantic_type: phone\n"
    )

    code, output = run("plan", str(partial))

    assert code == 2
    assert "+ create Phones" in output and "- delete Emails" in output
    assert "note: section exemptions is not in the file; left as it is" in output
    assert "semantic_types:" not in output


def test_deleting_a_semantic_type_that_a_rule_left_out_of_the_file_uses_is_refused(policy_world, tmp_path):
    partial = tmp_path / "types.yaml"
    partial.write_text("semantic_types:\n- key: phone\n  title: Phone\n  algorithm: {type: full}\n")

    with pytest.raises(CommandError, match="unknown semantic type 'email' \\(by 'Emails'"):
        call_command("policy", "plan", str(partial))


def test_a_bytebase_export_is_imported_with_its_algorithms_and_conditions(policy_world):
    source = str(FIXTURES / "bytebase_export.json")

    code, output = run("plan", "--format", "bytebase", source)
    assert code == 2
    assert "+ create Emails in production" in output
    assert "+ create Bytebase rule 9e1b3d5f-7a2c-4e6a-8c0e-3f5a7c9e1b3d" in output

    code, output = run("apply", "--format", "bytebase", source, "-m", "Import from Bytebase")
    assert code == 0, output
    algorithms = {st.title: st.algorithm for st in SemanticType.objects.all()}
    assert algorithms["Email address"] == {
        "type": "range",
        "slices": [{"start": 2, "end": -1, "substitution": "***"}],
    }
    assert algorithms["Phone number"] == {
        "type": "inner",
        "prefix_len": 3,
        "suffix_len": 2,
        "substitution": "*",
    }
    assert algorithms["Card number"] == {
        "type": "outer",
        "prefix_len": 0,
        "suffix_len": 4,
        "substitution": "#",
    }
    assert algorithms["Customer id (hashed)"] == {"type": "md5", "salt": "veil-import"}
    assert algorithms["Default partial"] == {"type": "default_partial"}
    assert algorithms["Default"] == {"type": "full", "substitution": "******"}
    assert mask(algorithms["Phone number"], "5550123456") == "555*****56"
    assert mask(algorithms["Email address"], "jane@example.com") == "ja***"

    policy = load_policy(1)
    email = ColumnKey("prod-pg", "shop", "public", "customers", "email")
    staging_email = ColumnKey("staging-pg", "shop", "public", "customers", "email")
    nobody = Principal("user", "0", "nobody")
    prod, staging = policy.decide(nobody, [email, staging_email], now=timezone.now().timestamp())
    assert prod.semantic_type == "3f5c1a8e-0b7d-4a44-9a53-1c1f5b0f6e21"
    assert staging.reason_kind == "classification", "the rule is for prod only"
    assert run("plan", "--format", "bytebase", source)[0] == 0


def test_convert_prints_a_bytebase_export_as_a_veil_document(policy_world):
    code, output = run("convert", "--format", "bytebase", str(FIXTURES / "bytebase_export.json"))

    assert code == 0
    assert output.startswith("# Veil policy.")
    assert "- key: 8b2e6f0c-5d11-4f8e-a7c9-2f4d8e6b1a90\n  title: Phone number\n" in output
    assert "approval_policies" not in output


def test_with_the_two_person_rule_on_apply_files_a_pending_change(policy_world, tmp_path):
    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)
    text = dump_yaml(export_document()).replace("title: Email\n", "title: Email address\n")
    changed = tmp_path / "policy.yaml"
    changed.write_text(text)

    code, output = run("apply", str(changed), "-m", "Rename", "--author", "polly")

    assert code == 0
    assert "Held for a second person" in output
    assert SemanticType.objects.get(key="email").title == "Email"


def test_an_api_style_submission_without_changes_writes_nothing(policy_world):
    before = PolicyVersion.objects.count()

    submission = policy_submit(
        document=export_document(),
        message="no-op",
        actor=SYSTEM,
        channel=Channel.API,
        author=None,
        authorize=False,
    )

    assert submission.status == "unchanged"
    assert PolicyVersion.objects.count() == before
