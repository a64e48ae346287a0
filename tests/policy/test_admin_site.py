"""The Django admin site stays one more way into the same services (audited, versioned), and is
read-only for policy while the two-person rule is on."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identity.models import Role
from masking.models import Exemption, PolicyVersion, ProjectPolicySettings

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
