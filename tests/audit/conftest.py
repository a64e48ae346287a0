"""Audit test helpers: tampering "behind Veil's back", files kept in a temporary directory, and the
personas and readers the compliance page tests share."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import ActorType
from audit.services import Actor

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

    from audit.chain import canonical_event, chain_hash
    from audit.selectors import EVENT_FIELDS

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
