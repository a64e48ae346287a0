"""Audit test helpers: tampering "behind Veil's back", files kept in a temporary directory, the
personas and readers the compliance page tests share, and requests and grants as the apps record them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import ActorType, Channel
from audit.services import Actor, Target, record_event

CAROL = Actor(ActorType.USER, "local:3", "Carol Support")
ERIN = Actor(ActorType.USER, "local:5", "Erin Security")


@pytest.fixture(autouse=True)
def audit_files(settings, tmp_path):
    """Exports and archives go to the test's own directory."""
    settings.AUDIT_EXPORT_DIR = tmp_path / "exports"
    settings.AUDIT_ARCHIVE_DIR = tmp_path / "archive"
    return tmp_path


def raw_sql(sql: str, table: str = "audit_auditevent") -> None:
    """Change a table as a database superuser would: disable its triggers, run the SQL, re-enable."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(sql)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def rehash(exported: dict) -> str:
    """The chain hash of an event as an export wrote it, recomputed from its hashed fields."""
    from datetime import datetime

    from audit.chain import EVENT_FIELDS, canonical_event, chain_hash

    fields = {k: exported[k] for k in EVENT_FIELDS if k not in ("prev_hash", "hash")}
    fields["occurred_at"] = datetime.fromisoformat(exported["occurred_at"])
    return chain_hash(exported["prev_hash"], canonical_event(**fields))


@pytest.fixture
def people(shop):
    """Dave audits shop, alice may only unmask there, sam (staff) reads everything."""
    from tests.factories import grant_project_perm, make_project, make_user

    make_project("analytics")
    dave = make_user("dave", display_name="Dave Compliance")
    grant_project_perm(dave, "view_audit", shop)
    alice = make_user("alice")
    grant_project_perm(alice, "request_unmask", shop)
    staff = make_user("sam", is_staff=True)
    return {"dave": dave, "alice": alice, "staff": staff}


def page(client: Client, user, name: str, *args, **query) -> str:
    """The page `name` as `user` reads it (asserting it is there)."""
    client.force_login(user)
    response = client.get(reverse(name, args=args), query)
    assert response.status_code == 200
    return response.content.decode()


def record_approved_request(
    ref: int,
    who: Actor,
    *,
    project: str = "shop",
    approver: Actor = ERIN,
    reason: str = "INC-1",
    minutes: int = 0,
) -> None:
    """What jitaccess records for a request that gets approved, `minutes` after it was made, in the
    shapes it uses."""
    target = Target("request", str(ref), f"REQ-{ref} {project}")
    record_event(
        action="request.created",
        actor=who,
        channel=Channel.WEB,
        target=target,
        project=project,
        detail={"scope": f"{project} (email)", "duration_s": 7200, "reason": reason},
    )
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=minutes), tick=False):
        for action, detail in (
            ("request.approval_recorded", {"approvals": 1, "required": 1}),
            ("request.approved", {"approvers": [approver.id], "auto_approved": False}),
        ):
            record_event(
                action=action,
                actor=approver,
                channel=Channel.SLACK,
                target=target,
                project=project,
                detail=detail,
            )


def record_grant(
    grant_id: int,
    ref: int,
    principal: str,
    *,
    project: str = "shop",
    instance: str = "prod-pg",
    database: str = "shop",
    column: str = "email",
    days: int = 30,
    by: Actor = ERIN,
) -> None:
    """What masking records for the grant of request `ref`, ending `days` from now."""
    record_event(
        action="grant.created",
        actor=by,
        channel=Channel.SLACK,
        target=Target("grant", str(grant_id), f"REQ-{ref}"),
        project=project,
        detail={
            "principal": principal,
            "request": f"REQ-{ref}",
            "condition": f'resource.instance_id == "{instance}" && resource.database_name == "{database}"'
            f' && resource.column_name in ["{column}"]',
            "expires_at": (datetime.now(UTC) + timedelta(days=days)).isoformat(),
        },
    )
