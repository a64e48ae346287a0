"""Policy versions (author, message, diff, compare, rollback) and the two-person rule."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from identity.services import actor_for
from masking.decisions.engine import ColumnKey, Principal
from masking.models import (
    ChangeState,
    MaskingRule,
    PolicyChange,
    PolicyVersion,
    ProjectPolicySettings,
    SemanticType,
)
from masking.policy.diff import diff_documents
from masking.policy.document import export_document, parse_document
from masking.selectors import load_policy
from masking.services.policy import rule_save, semantic_type_save
from masking.services.policy_changes import (
    NotAllowed,
    policy_change_approve,
    policy_change_reject,
    policy_submit,
)
from masking.services.versions import snapshot_digest
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PHONE = ColumnKey("prod-pg", "shop", "public", "customers", "phone")


def with_rule(title: str, condition: str) -> dict:
    document = export_document()
    document["rules"].append(
        {"title": title, "condition": condition, "semantic_type": "phone", "enabled": True}
    )
    return parse_document(document)


def phone_decision():
    policy = load_policy(0)
    return policy.decide(Principal("user", "0", "nobody"), [PHONE], now=timezone.now().timestamp())[0]


def test_every_change_is_a_version_with_author_time_message_and_diff(policy_world):
    submission = policy_submit(
        document=with_rule("Phones", 'resource.column_name == "phone"'),
        message="Mask phones with the phone type",
        actor=actor_for(policy_world.polly),
        channel=Channel.WEB,
        author=policy_world.polly,
    )

    version = submission.version
    assert submission.status == "applied"
    assert (version.author_name, version.author_id) == ("Polly Policy", policy_world.polly.canonical_subject)
    assert version.message == "Mask phones with the phone type" and version.created_at is not None
    assert version.changes == [
        {
            "section": "rules",
            "action": "create",
            "key": "Phones",
            "fields": [
                {"field": "title", "before": None, "after": "Phones"},
                {"field": "condition", "before": None, "after": 'resource.column_name == "phone"'},
                {"field": "semantic_type", "before": None, "after": "phone"},
                {"field": "enabled", "before": None, "after": True},
            ],
        }
    ]
    event = AuditEvent.objects.get(action="policy.version_created", detail__number=version.number)
    assert event.detail["snapshot_sha256"] == snapshot_digest(version.snapshot)


def test_a_version_cannot_be_edited_in_the_database(policy_world):
    version = PolicyVersion.objects.first()

    with pytest.raises(Exception, match="policyversion_append_only"), connection.cursor() as cursor:
        cursor.execute("UPDATE masking_policyversion SET message = 'rewritten' WHERE id = %s", [version.pk])


def test_any_two_versions_compare_as_a_diff(policy_world):
    first = PolicyVersion.objects.first().number
    semantic_type_save(
        key="phone",
        title="Phone",
        description="",
        algorithm={"type": "full"},
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    rule_save(
        title="Phones",
        condition='resource.column_name == "phone"',
        semantic_type=SemanticType.objects.get(key="phone"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    older = PolicyVersion.objects.get(number=first).snapshot
    newer = PolicyVersion.objects.first().snapshot

    plan = diff_documents(older, newer)

    assert [(c.section, c.action, c.key) for c in plan.changes] == [
        ("semantic_types", "update", "phone"),
        ("rules", "create", "Phones"),
    ]
    assert plan.changes[0].fields[0].field == "description"


def test_rollback_is_a_new_audited_version_that_restores_the_old_policy(policy_world):
    target = PolicyVersion.objects.first()
    MaskingRule.objects.get(title="Emails").delete()  # an unversioned edit, then a versioned one
    policy_submit(
        document=with_rule("Phones", 'resource.column_name == "phone"'),
        message="Add phones",
        actor=SYSTEM,
        channel=Channel.CLI,
        author=None,
        authorize=False,
    )

    submission = policy_submit(
        document=target.snapshot,
        message=f"Roll back to version {target.number}",
        actor=actor_for(policy_world.polly),
        channel=Channel.WEB,
        author=policy_world.polly,
        rollback_of=target.number,
    )

    assert submission.version.rollback_of == target.number
    assert submission.version.snapshot == target.snapshot
    assert list(MaskingRule.objects.values_list("title", flat=True)) == ["Emails"]
    messages = list(PolicyVersion.objects.order_by("-number").values_list("message", flat=True)[:3])
    assert messages == [
        f"Roll back to version {target.number}",
        "Add phones",
        "Changes made outside Veil's policy services",
    ]
    assert AuditEvent.objects.filter(
        action="policy.version_created", detail__rollback_of=target.number
    ).exists()


def test_a_policy_admin_of_another_project_cannot_change_global_rules(policy_world):
    other = make_user("otto")

    with pytest.raises(NotAllowed, match="every project"):
        policy_submit(
            document=with_rule("Phones", "true"),
            message="x",
            actor=actor_for(other),
            channel=Channel.WEB,
            author=other,
        )


class TestTwoPersonRule:
    @pytest.fixture(autouse=True)
    def _two_person_rule(self, policy_world):
        ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)

    def submit(self, world, condition='resource.column_name == "phone"'):
        return policy_submit(
            document=with_rule("Phones", condition),
            message="Mask phones",
            actor=actor_for(world.polly),
            channel=Channel.WEB,
            author=world.polly,
        )

    def test_the_change_has_no_effect_until_a_second_person_approves_it(self, policy_world):
        versions = PolicyVersion.objects.count()

        submission = self.submit(policy_world)

        assert submission.status == "pending"
        assert not MaskingRule.objects.filter(title="Phones").exists()
        assert PolicyVersion.objects.count() == versions
        assert phone_decision().reason_kind == "classification", (
            "still masked by default, not by the new rule"
        )

        change = policy_change_approve(
            change_id=submission.change.pk, approver=policy_world.quinn, channel=Channel.WEB
        )

        assert change.state == ChangeState.APPLIED
        assert phone_decision().reason_title == "Phones"
        version = change.version
        assert (version.author_name, version.approved_by_name) == ("Polly Policy", "Quinn Second")

    def test_the_author_cannot_approve_their_own_change(self, policy_world):
        submission = self.submit(policy_world)

        with pytest.raises(NotAllowed, match="your own policy change"):
            policy_change_approve(
                change_id=submission.change.pk, approver=policy_world.polly, channel=Channel.WEB
            )

        assert PolicyChange.objects.get().state == ChangeState.PENDING
        assert not MaskingRule.objects.filter(title="Phones").exists()

    def test_not_even_a_superuser_can_approve_their_own_change(self, policy_world):
        policy_world.polly.is_superuser = True
        policy_world.polly.save()
        submission = self.submit(policy_world)

        with pytest.raises(NotAllowed, match="your own policy change"):
            policy_change_approve(
                change_id=submission.change.pk, approver=policy_world.polly, channel=Channel.WEB
            )

    def test_someone_without_policy_rights_cannot_approve(self, policy_world):
        submission = self.submit(policy_world)

        with pytest.raises(NotAllowed):
            policy_change_approve(
                change_id=submission.change.pk, approver=policy_world.eve, channel=Channel.WEB
            )

    def test_a_change_overtaken_by_another_is_superseded_not_applied(self, policy_world):
        submission = self.submit(policy_world)
        MaskingRule.objects.filter(title="Emails").update(enabled=False)

        change = policy_change_approve(
            change_id=submission.change.pk, approver=policy_world.quinn, channel=Channel.WEB
        )

        assert change.state == ChangeState.SUPERSEDED
        assert not MaskingRule.objects.filter(title="Phones").exists()

    def test_turning_the_rule_off_needs_the_second_person_too(self, policy_world):
        document = export_document()
        document["projects"] = []

        submission = policy_submit(
            document=document,
            message="Off",
            actor=actor_for(policy_world.polly),
            channel=Channel.WEB,
            author=policy_world.polly,
        )

        assert submission.status == "pending"
        assert ProjectPolicySettings.objects.get().two_person_rule

    def test_a_rejected_change_is_closed_and_the_author_can_withdraw_theirs(self, policy_world):
        first, second = self.submit(policy_world), self.submit(policy_world, "false")

        rejected = policy_change_reject(
            change_id=first.change.pk,
            user=policy_world.quinn,
            note="Use a rule per table",
            channel=Channel.WEB,
        )
        withdrawn = policy_change_reject(
            change_id=second.change.pk, user=policy_world.polly, note="", channel=Channel.WEB
        )

        assert (rejected.state, withdrawn.state) == (ChangeState.REJECTED, ChangeState.WITHDRAWN)
        assert AuditEvent.objects.filter(action="policy_change.rejected").exists()
