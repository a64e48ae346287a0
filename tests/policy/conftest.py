"""A small shop for policy tests: two environments of the same database, semantic types, rules,
roles, an exemption and approval policies, plus personas (two policy admins, an outsider)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import Scope, ServiceAccount, User
from jitaccess.policy.services import approval_policy_save
from masking.models import Project
from masking.services.catalog import catalog_upsert
from masking.services.policy import exemption_create, rule_save, semantic_type_save
from masking.services.roles import role_save
from tests.factories import catalog_payload, grant_project_perm, make_token, make_user

CUSTOMER_COLUMNS = [
    {"name": "id", "data_type": "bigint", "classification_level": 1},
    {"name": "email", "data_type": "text", "classification_level": 3},
    {"name": "phone", "data_type": "text", "classification_level": 3},
    {"name": "notes", "data_type": "text", "classification_level": 1, "tags": ["sensitive"]},
]


@dataclass
class PolicyWorld:
    project: Project
    polly: User  # policy admin
    quinn: User  # second policy admin
    eve: User  # outsider


def push_catalog(instance: str, environment: str, columns: list[dict] | None = None) -> None:
    payload = catalog_payload(instance=instance, environment=environment, columns=columns or CUSTOMER_COLUMNS)
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )


@pytest.fixture
def policy_world(db, shop) -> PolicyWorld:
    push_catalog("prod-pg", "prod")
    push_catalog("staging-pg", "staging")
    polly = make_user("polly", display_name="Polly Policy")
    quinn = make_user("quinn", display_name="Quinn Second")
    eve = make_user("eve")
    for admin in (polly, quinn):
        grant_project_perm(admin, "administer_policy", shop)
    support = Group.objects.create(name="support")
    ServiceAccount.objects.create(name="etl")

    email = semantic_type_save(
        key="email", title="Email", algorithm={"type": "email"}, actor=SYSTEM, channel=Channel.CLI
    )
    semantic_type_save(
        key="phone",
        title="Phone",
        description="Keeps the last two digits\nfor call-backs.",
        algorithm={"type": "show_last", "n": 2},
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    rule_save(
        title="Emails",
        condition='resource.column_name == "email"',
        semantic_type=email,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    agents = role_save(
        name="support-agents",
        description="Customer support",
        groups=[support],
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    exemption_create(
        project=shop,
        reason="Support confirms callers by phone number",
        condition='resource.column_name == "phone"',
        roles=[agents],
        created_by=None,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    approval_policy_save(
        project=shop,
        title="Prod PII",
        condition='request.environment_id == "prod"',
        approver_roles=[agents],
        approvals_required=2,
        max_duration=timedelta(hours=4),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    approval_policy_save(
        project=shop, title="Everything else", condition="true", actor=SYSTEM, channel=Channel.CLI
    )
    return PolicyWorld(shop, polly, quinn, eve)


@pytest.fixture
def ci(api_client, policy_world):
    """The API client of a CI pipeline holding a policy:write token."""
    _, token = make_token([Scope.POLICY_WRITE], "ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


@pytest.fixture
def polly_client(client, policy_world):
    """The test client, signed in as Polly, a policy admin of the shop."""
    client.force_login(policy_world.polly)
    return client


def confirm(client, review_response, message="Reviewed"):
    """Press the review page's confirm button."""
    payload = review_response.context["review_form"]["payload"].value()
    return client.post(reverse("policy:review-confirm"), {"payload": payload, "message": message})
