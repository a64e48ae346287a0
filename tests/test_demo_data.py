"""The demo company loads, loads again without change, and decides as the README says."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit.models import AuditEvent, DecisionRecord
from audit.selectors import verify_chain
from identity.models import User
from masking.decisions.engine import ColumnKey
from masking.models import Column, Exemption, MaskingRule
from masking.selectors import load_policy, resolve_principal

pytestmark = pytest.mark.django_db


def test_demo_data_is_idempotent_and_consistent(capsys):
    call_command("demo_data", allow_public_passwords=True)
    counts = (
        User.objects.count(),
        Column.objects.count(),
        MaskingRule.objects.count(),
        Exemption.objects.count(),
    )
    events = AuditEvent.objects.exclude(action="catalog.upserted").count()

    call_command("demo_data", allow_public_passwords=True)

    assert (
        User.objects.count(),
        Column.objects.count(),
        MaskingRule.objects.count(),
        Exemption.objects.count(),
    ) == counts
    assert AuditEvent.objects.exclude(action="catalog.upserted").count() == events, (
        "nothing changed the second time"
    )
    assert verify_chain().ok
    assert "alice" in capsys.readouterr().out


def test_in_the_demo_support_sees_phone_numbers_and_engineers_do_not():
    call_command("demo_data", allow_public_passwords=True)
    policy = load_policy(1)
    phone = ColumnKey("prod-pg", "shop", "public", "customers", "phone")
    email = ColumnKey("prod-pg", "shop", "public", "customers", "email")

    carol_phone, carol_email = policy.decide(
        resolve_principal({"user": "carol@example.com"}), [phone, email], now=0
    )
    (alice_phone,) = policy.decide(resolve_principal({"user": "alice"}), [phone], now=0)

    assert (carol_phone.action, carol_phone.reason_kind) == ("unmask", "exemption")
    assert (carol_email.action, carol_email.semantic_type) == ("mask", "email")
    assert alice_phone.action == "mask"


def test_the_demo_has_unmask_records_and_someone_who_may_break_the_glass():
    from identity.selectors import role_names_of_user
    from jitaccess.models import ProjectAccessSettings

    call_command("demo_data", allow_public_passwords=True)
    records = list(DecisionRecord.objects.values_list("principal_name", "unmasked"))
    roles = set(
        ProjectAccessSettings.objects.get(project__key="shop").breakglass_roles.values_list("name", flat=True)
    )

    assert len(records) == 2 and all(name == "Alice Engineer" for name, _ in records), records
    assert {u["column"].rsplit(".", 1)[1] for _, unmasked in records for u in unmasked} == {
        "email",
        "birth_date",
    }
    assert roles & role_names_of_user(User.objects.get(username="erin"))
    assert not roles & role_names_of_user(User.objects.get(username="alice"))


def test_the_demo_token_answers_the_printed_commands_and_stays_revoked(client, settings, capsys):
    """`make run` prints the demo's public token with a curl command; the token decides, and once an
    administrator revokes it, loading the demo again neither re-creates it nor prints it."""
    from identity.models import ApiToken
    from identity.services import token_revoke
    from jitaccess.demo import DEMO_TOKEN

    settings.SITE_URL = "http://veil.test"
    call_command("demo_data", allow_public_passwords=True)
    printed = capsys.readouterr().out
    assert f"curl -s http://veil.test/api/v1/decisions -H 'Authorization: Bearer {DEMO_TOKEN}'" in printed
    body = printed.split("-d '", 1)[1].split("'", 1)[0]

    answer = client.post(
        "/api/v1/decisions", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {DEMO_TOKEN}"
    )
    assert answer.status_code == 200, answer.content
    email, phone = answer.json()["decisions"]
    assert (email["action"], email["reason"]["kind"], phone["action"]) == ("unmask", "grant", "mask")

    token_revoke(token=ApiToken.objects.get(prefix="demo"), revoked_by=None, channel="cli")
    call_command("demo_data", allow_public_passwords=True)
    assert DEMO_TOKEN not in capsys.readouterr().out
    assert ApiToken.objects.filter(prefix="demo").count() == 1


def test_the_home_page_shows_the_demo_token_to_token_managers_only(client):
    from jitaccess.demo import DEMO_TOKEN

    call_command("demo_data", allow_public_passwords=True)
    client.force_login(User.objects.get(username="admin"))
    assert DEMO_TOKEN in client.get("/").content.decode()
    client.force_login(User.objects.get(username="alice"))
    assert DEMO_TOKEN not in client.get("/").content.decode()
