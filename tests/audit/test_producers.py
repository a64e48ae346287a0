"""The reports read what the other apps actually record: a real request, approval, grant and
decision, through their services, show up joined in "who saw unmasked data" and "in force"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from audit.filters import EVERYTHING, AuditFilter
from audit.models import Channel
from audit.reports import REPORTS, in_force_rows, unmask_rows
from audit.selectors import verify_chain
from audit.services import record_access_events, seal_decisions
from identity.models import Role
from jitaccess.models import ApprovalPolicy, ProjectAccessSettings
from jitaccess.selectors.scopes import Scope
from jitaccess.services.breakglass import breakglass_take
from jitaccess.services.grants import grant_end
from jitaccess.services.requests import request_approve, request_create
from masking.decisions.engine import ColumnKey
from masking.decisions.service import decide_columns
from masking.models import Database
from tests.factories import grant_project_perm, make_shop_policy, make_user

pytestmark = pytest.mark.django_db
EMAIL = ColumnKey("prod-pg", "shop", "public", "customers", "email")


def _email_decision(user: str, query_id: str) -> str:
    """What the SQL proxy is told for `user` reading the email column (recording the decision)."""
    result = decide_columns(
        service_account="sql-proxy",
        principal_spec={"user": user},
        asserted_groups=[],
        query_id=query_id,
        columns=[EMAIL],
    )
    return result.decisions[0].action


def _unmask_report() -> list[dict]:
    """The "who saw unmasked data" report, each row by column name."""
    return [
        dict(zip(REPORTS["unmasks"].columns, r, strict=True)) for r in unmask_rows(AuditFilter(), EVERYTHING)
    ]


@pytest.fixture
def approved_request(shop):
    make_shop_policy()
    alice, bob = make_user("alice", display_name="Alice Engineer"), make_user("bob", display_name="Bob Lead")
    alice.groups.add(Group.objects.create(name="engineering"))
    grant_project_perm(alice, "request_unmask", shop)
    approvers = Role.objects.create(name="pii-approvers")
    approvers.users.add(bob)
    policy = ApprovalPolicy.objects.create(
        project=shop, title="prod PII", condition="true", approvals_required=1
    )
    policy.approver_roles.add(approvers)
    request = request_create(
        requester=alice,
        scope=Scope(Database.objects.get(name="shop"), "public", "customers", ("email",)),
        duration=timedelta(hours=2),
        reason="INC-4711 refund mismatch",
        channel=Channel.WEB,
    )
    request_approve(request_id=request.pk, approver=bob, channel=Channel.SLACK)
    request.refresh_from_db()
    return request, alice, bob


def test_a_real_unmask_is_reported_with_its_request_and_approver(approved_request):
    request, _, _ = approved_request
    assert _email_decision("alice", "q-1") == "unmask"
    record_access_events(
        service_account="sql-proxy",
        events=[
            {
                "occurred_at": request.decided_at,
                "principal_type": "user",
                "principal": "alice",
                "query_id": "q-1",
                "unmasked_columns": [EMAIL.label()],
                "masked_columns": [],
                "row_count": 3,
            }
        ],
    )

    rows = _unmask_report()

    assert len(rows) == 1
    row = rows[0]
    assert (row["person"], row["project"], row["columns"]) == ("Alice Engineer", "shop", [EMAIL.label()])
    assert (row["request"], row["request_reason"], row["approved_by"]) == (
        request.ref,
        "INC-4711 refund mismatch",
        "Bob Lead",
    )
    assert row["duration"] == "2h 00m" and row["rows_returned"] == 3
    seal_decisions()
    assert verify_chain().ok


def test_a_real_grant_is_in_force_until_it_is_revoked(approved_request):
    request, _, bob = approved_request
    in_force = [r[0] for r in in_force_rows(AuditFilter(), EVERYTHING)]
    assert in_force == ["grant"]

    grant_end(request_id=request.pk, user=bob, action="revoke", channel=Channel.WEB)

    assert [r[0] for r in in_force_rows(AuditFilter(), EVERYTHING)] == []


def test_a_real_break_glass_unmask_is_reported_as_taken_without_approval(shop):
    make_shop_policy()
    erin = make_user("erin", display_name="Erin Oncall")
    oncall = Role.objects.create(name="security-oncall")
    oncall.users.add(erin)
    access = ProjectAccessSettings.objects.create(project=shop, breakglass_max_duration=timedelta(hours=1))
    access.breakglass_roles.add(oncall)
    request = breakglass_take(
        requester=erin,
        scope=Scope(Database.objects.get(name="shop"), "public", "customers", ("email",)),
        duration=timedelta(minutes=30),
        reason="SEV1 checkout down",
        channel=Channel.WEB,
    )
    assert _email_decision("erin", "q-sev1") == "unmask"

    rows = _unmask_report()

    assert [(r["person"], r["request"], r["request_reason"]) for r in rows] == [
        ("Erin Oncall", request.ref, "SEV1 checkout down")
    ]
    assert rows[0]["approved_by"] == "break-glass (no approval)"
    assert rows[0]["approved_at"] is None
    assert rows[0]["requested_at"] is not None
