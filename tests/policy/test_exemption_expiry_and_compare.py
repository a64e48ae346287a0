"""The exemption form refuses an expiry in the past; comparing versions refuses unknown ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM
from masking.models import Exemption, MaskingRule, PolicyVersion, SemanticType
from masking.services.policy import rule_save

pytestmark = pytest.mark.django_db


def exemption_form(expires_at: str) -> dict[str, str]:
    return {
        "project": "shop",
        "reason": "Fraud team checks chargebacks",
        "condition": 'resource.column_name == "email"',
        "roles": "support-agents",
        "expires_at": expires_at,
    }


# --- Exemption expiry --------------------------------------------------------------------------


def test_an_expiry_in_the_past_is_a_field_error_on_the_form(polly_client):
    exemptions = Exemption.objects.count()

    response = polly_client.post(reverse("policy:exemption-new"), exemption_form("2020-01-31T09:00"))

    assert response.status_code == 200
    assert "masking/exemption_form.html" in [t.name for t in response.templates], "not the review page"
    assert response.context["form"].errors["expires_at"] == [
        "Must be in the future (2020-01-31 09:00 has passed); leave it empty for no expiry."
    ]
    assert "No changes" not in response.content.decode()
    assert Exemption.objects.count() == exemptions


def test_an_expiry_in_the_future_goes_to_review(polly_client):
    tomorrow = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    response = polly_client.post(reverse("policy:exemption-new"), exemption_form(tomorrow))

    page = response.content.decode()
    assert "Review: Save exemption in shop" in page
    assert "Plan: 1 to create, 0 to update, 0 to delete." in page
    assert response.context["plan"].warnings == []


def test_no_expiry_is_still_allowed(polly_client):
    response = polly_client.post(reverse("policy:exemption-new"), exemption_form(""))

    assert "Plan: 1 to create, 0 to update, 0 to delete." in response.content.decode()


# --- Version compare ---------------------------------------------------------------------------


@pytest.fixture
def versions(policy_world):
    """At least three versions; returns their numbers, newest first."""
    rule_save(
        rule=MaskingRule.objects.get(title="Emails"),
        title="Emails",
        condition='resource.column_name in ["email", "mail"]',
        semantic_type=SemanticType.objects.get(key="email"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    numbers = list(PolicyVersion.objects.values_list("number", flat=True))
    assert len(numbers) >= 3
    return numbers


def test_an_unknown_or_malformed_version_is_refused_naming_the_parameter(polly_client, versions):
    response = polly_client.get(reverse("policy:compare"), {"a": "x", "b": "999"})

    page = response.content.decode()
    assert response.status_code == 400
    assert "Parameter a=&#x27;x&#x27; is not a version number." in page
    assert f"Parameter b=&#x27;999&#x27;: there is no version 999 (versions are {versions[-1]} to " in page
    assert response.context["plan"] is None, "no other versions compared in their place"
    assert "From v" not in page


def test_one_bad_parameter_is_enough_to_refuse(polly_client, versions):
    response = polly_client.get(reverse("policy:compare"), {"a": str(versions[-1]), "b": "0"})

    assert response.status_code == 400
    assert response.context["errors"] == [
        f"Parameter b='0': there is no version 0 (versions are {versions[-1]} to {versions[0]})."
    ]


def test_without_parameters_the_latest_two_versions_are_compared(polly_client, versions):
    response = polly_client.get(reverse("policy:compare"))

    assert response.status_code == 200
    assert (response.context["a"], response.context["b"]) == (versions[1], versions[0])
    assert (
        f"From v{versions[1]} to v{versions[0]}: Plan: 0 to create, 1 to update" in response.content.decode()
    )


def test_two_known_versions_are_compared(polly_client, versions):
    oldest, newest = versions[-1], versions[0]

    response = polly_client.get(reverse("policy:compare"), {"a": str(oldest), "b": str(newest)})

    assert response.status_code == 200
    assert (response.context["a"], response.context["b"], response.context["errors"]) == (oldest, newest, [])
    assert response.context["plan"].has_changes
