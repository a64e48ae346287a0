"""The Django admin site stays one more way into the same services (audited, versioned), is
read-only for policy while the two-person rule is on, and for the catalog but for classification."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from identity.models import Role
from masking.decisions.engine import ColumnKey, Principal
from masking.models import Column, Exemption, Instance, PolicyVersion, ProjectPolicySettings
from masking.selectors import load_policy, read_epochs
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, policy_world):
    policy_world.polly.is_staff = policy_world.polly.is_superuser = True
    policy_world.polly.save()
    client.force_login(policy_world.polly)
    return client


def test_an_exemption_saved_in_the_admin_site_is_a_version_by_its_author(superuser_client, policy_world):
    response = superuser_client.post(
        reverse("admin:masking_exemption_add"),
        {
            "project": policy_world.project.pk,
            "condition": 'resource.column_name == "email"',
            "reason": "Fraud team checks sign-up emails",
            "roles": [Role.objects.get(name="support-agents").pk],
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    version = PolicyVersion.objects.first()
    assert version.author_name == "Polly Policy"
    assert [(c["section"], c["action"]) for c in version.changes] == [("exemptions", "create")]
    assert Exemption.objects.filter(reason="Fraud team checks sign-up emails").exists()


def test_a_duplicate_reason_is_refused_next_to_the_field(superuser_client, policy_world):
    response = superuser_client.post(
        reverse("admin:masking_exemption_add"),
        {
            "project": policy_world.project.pk,
            "reason": "Support confirms callers by phone number",
            "users": [policy_world.quinn.pk],
        },
    )

    assert response.status_code == 200
    assert "Another exemption of this project has this reason" in response.content.decode()


def test_with_the_two_person_rule_on_policy_is_read_only_in_the_admin_site(superuser_client, policy_world):
    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)

    assert superuser_client.get(reverse("admin:masking_maskingrule_add")).status_code == 403
    assert superuser_client.get(reverse("admin:masking_exemption_add")).status_code == 403


def notes_decision():
    column = ColumnKey("prod-pg", "shop", "public", "customers", "notes")
    policy = load_policy(read_epochs().policy)
    return policy.decide(Principal("user", "0", "nobody"), [column], now=timezone.now().timestamp())[0]


def test_a_classification_stated_in_the_admin_site_is_audited_and_decides_at_once(superuser_client):
    notes = Column.objects.get(name="notes", table__schema__database__instance__key="prod-pg")
    before = notes_decision()

    response = superuser_client.post(
        reverse("admin:masking_column_change", args=[notes.pk]), {"classification_level": 4}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert before.action == "unmask"
    assert notes_decision().action == "mask"
    event = AuditEvent.objects.get(action="catalog.classification_changed")
    assert event.actor_name == "Polly Policy" and event.detail["source"] == "admin site"


def test_the_catalog_is_read_only_in_the_admin_site_but_for_classification(superuser_client, policy_world):
    instance = Instance.objects.get(key="prod-pg")
    notes = Column.objects.get(name="notes", table__schema__database__instance__key="prod-pg")

    moved = superuser_client.post(
        reverse("admin:masking_instance_change", args=[instance.pk]),
        {"key": "prod-pg", "title": "", "engine": instance.engine, "environment": "staging"},
    )
    renamed = superuser_client.post(
        reverse("admin:masking_column_change", args=[notes.pk]),
        {"name": "renamed", "classification_level": 1},
    )

    assert moved.status_code == 403
    instance.refresh_from_db()
    notes.refresh_from_db()
    assert instance.environment == "prod" and notes.name == "notes"
    assert renamed.status_code == 302 and not AuditEvent.objects.filter(
        action="catalog.classification_changed"
    )


def test_staff_who_do_not_administer_the_project_cannot_classify_its_columns(client, policy_world):
    staff = make_user("stan")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_column", "change_column"]))
    client.force_login(staff)
    notes = Column.objects.get(name="notes", table__schema__database__instance__key="prod-pg")

    response = client.post(
        reverse("admin:masking_column_change", args=[notes.pk]), {"classification_level": 4}
    )

    assert response.status_code == 403
    notes.refresh_from_db()
    assert notes.classification_level == 1


@pytest.mark.parametrize("guarded", [False, True])
def test_revoking_in_the_admin_site_needs_the_change_permission_and_no_two_person_rule(
    client, policy_world, guarded
):
    """Admin actions without `permissions` are offered to anyone who may view the list: staff with
    view-only access could revoke standing exemptions (and grants), around the two-person rule."""
    from identity.models import ApiToken
    from identity.models import Scope as TokenScope
    from tests.factories import make_token

    make_token([TokenScope.DECISIONS], "sql-proxy")
    staff = make_user("stan")
    staff.is_staff = True
    staff.save()
    viewing = ["view_exemption", "view_apitoken"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=viewing))
    if guarded:
        staff.user_permissions.add(
            *Permission.objects.filter(codename__in=["change_exemption", "change_apitoken"])
        )
        ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)
    client.force_login(staff)
    exemption = Exemption.objects.get(kind="exemption")
    token = ApiToken.objects.get()

    client.post(
        reverse("admin:masking_exemption_changelist"),
        {"action": "revoke", "_selected_action": [exemption.pk]},
    )
    client.post(
        reverse("admin:identity_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )

    exemption.refresh_from_db()
    token.refresh_from_db()
    assert exemption.revoked_at is None
    assert (token.revoked_at is not None) is guarded, "a token is not policy: change permission suffices"


def test_a_role_saved_in_the_admin_site_is_an_audited_version_and_guarded(superuser_client, policy_world):
    """Role membership decides whom exemptions cover and who approves: the admin site once saved
    it straight to the table, with no audit event, no version and no two-person rule."""
    role = Role.objects.get(name="support-agents")
    url = reverse("admin:identity_role_change", args=[role.pk])
    versions = PolicyVersion.objects.count()

    saved = superuser_client.post(
        url,
        {
            "description": "Customer support",
            "users": [policy_world.eve.pk],
            "groups": [g.pk for g in role.groups.all()],
        },
    )

    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert list(role.users.all()) == [policy_world.eve]
    event = AuditEvent.objects.get(action="role.updated")
    assert "eve" not in str(event.detail["before"]["users"]) and event.detail["after"]["users"]
    assert PolicyVersion.objects.count() == versions + 1

    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)
    refused = superuser_client.post(url, {"description": "Customer support", "users": []})

    assert refused.status_code == 403
    assert list(role.users.all()) == [policy_world.eve]


def test_the_admin_revoke_action_leaves_grants_to_their_request_page(superuser_client, policy_world):
    """Revoking a bare grant here would leave its request saying it is approved and in force."""
    from datetime import timedelta

    from django.contrib.messages import get_messages

    from audit.models import Channel
    from audit.services import SYSTEM
    from masking.services.policy import grant_create

    grant = grant_create(
        project=policy_world.project,
        principal=policy_world.eve,
        condition="true",
        expires_at=timezone.now() + timedelta(hours=1),
        reason="INC-1",
        request_ref="REQ-9",
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    exemption = Exemption.objects.get(kind="exemption")

    response = superuser_client.post(
        reverse("admin:masking_exemption_changelist"),
        {"action": "revoke", "_selected_action": [exemption.pk, grant.pk]},
        follow=True,
    )

    exemption.refresh_from_db()
    grant.refresh_from_db()
    assert exemption.revoked_at is not None
    assert grant.revoked_at is None
    assert any("Not revoked here: REQ-9" in str(m) for m in get_messages(response.wsgi_request))
