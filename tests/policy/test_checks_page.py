"""The policy checks page: coverage and drift of the live policy, for the projects one administers."""

from __future__ import annotations

from audit.models import Channel
from audit.services import SYSTEM
from masking.models import SemanticType
from masking.services.policy import rule_save
from tests.factories import grant_project_perm, make_project, make_user

URL = "/policy/checks/"


def test_the_page_lists_sensitive_columns_left_unmasked_and_drift(client, policy_world):
    client.force_login(policy_world.polly)

    before = client.get(URL).content.decode()
    rule_save(
        title="Notes in prod",
        condition='resource.column_name == "notes" && resource.environment_id == "prod"',
        semantic_type=SemanticType.objects.get(key="email"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    after = client.get(URL).content.decode()

    assert "prod-pg/shop/public.customers.notes" in before
    assert "staging-pg/shop/public.customers.notes" in before
    assert "tagged sensitive, not masked" in before
    assert "Drift between environments" in before and 'state-approved">none' in before
    assert "prod-pg/shop/public.customers.notes" not in after, "covered in prod now"
    assert "masked (email) in prod (prod-pg); not masked in staging (staging-pg)" in after


def test_findings_of_projects_one_does_not_administer_are_left_out(client, policy_world):
    other_admin = make_user("olga")
    grant_project_perm(other_admin, "administer_policy", make_project("billing"))
    client.force_login(other_admin)

    page = client.get(URL)

    assert page.status_code == 200
    assert "customers.notes" not in page.content.decode()


def test_someone_who_administers_nothing_is_refused(client, policy_world):
    client.force_login(policy_world.eve)

    assert client.get(URL).status_code == 403
