"""How review pages show things: settings as updates, timestamps readable, reorder arrows only
where a move changes something, exemption previews and condition errors as the form says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM
from jitaccess.policy.services import approval_policy_save
from masking.decisions.cel import ConditionError, check_condition
from masking.models import Project
from masking.policy.diff import Change, FieldChange, shown_change
from masking.policy.display import field_value

pytestmark = pytest.mark.django_db


# --- 6. Project settings read as an update ------------------------------------------------------


def test_turning_on_the_two_person_rule_reads_as_an_update_of_the_projects_settings(polly_client):
    review = polly_client.post(reverse("policy:settings"), {"shop": "on"})

    page = review.content.decode()
    assert review.status_code == 200
    assert '<span class="section">project settings</span>' in page
    assert '<strong>update</strong> <span class="key">shop</span>' in page
    assert "<strong>create</strong>" not in page
    assert "<del>false</del>" in page and "<ins>true</ins>" in page
    assert "1 to update" in page and "1 to create" not in page


def test_a_settings_delete_reads_as_an_update_back_to_the_default(policy_world):
    change = Change(
        "projects",
        "delete",
        "shop",
        (FieldChange("key", "shop", None), FieldChange("two_person_rule", True, None)),
    )

    shown = shown_change(change)

    assert (shown["section"], shown["action"], shown["key"]) == ("project settings", "update", "shop")
    assert shown["fields"] == [{"field": "two_person_rule", "before": True, "after": False}]


def test_other_sections_are_shown_as_they_are(policy_world):
    change = Change("rules", "create", "X", (FieldChange("title", None, "X"),))

    assert shown_change(change) == change.as_json()


# --- 3. Exemption expiry and preview -----------------------------------------------------------


def test_a_timestamp_in_a_diff_is_human_readable_and_names_its_zone():
    change = {"field": "expires_at", "before": None, "after": "2026-12-31T10:00:00Z"}

    assert field_value(change, "after") == "2026-12-31 10:00 UTC"


def test_the_review_of_an_exemption_shows_its_expiry_readably(polly_client, policy_world):
    expires = (timezone.now() + timedelta(days=30)).replace(second=0, microsecond=0)
    review = polly_client.post(
        reverse("policy:exemption-new"),
        {
            "project": "shop",
            "reason": "Quarter close",
            "condition": "",
            "users": ["eve"],
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M"),
        },
    )

    page = review.content.decode()
    assert review.status_code == 200, page
    assert expires.strftime("%Y-%m-%d %H:%M UTC") in page
    assert f"<ins>{expires.strftime('%Y-%m-%dT%H:%M')}:00Z</ins>" not in page, (
        "the YAML diff may; the diff not"
    )


def test_the_expiry_field_names_the_time_zone(polly_client):
    page = polly_client.get(reverse("policy:exemption-new")).content.decode()

    assert "Expires at (UTC)" in page and "Date and time in UTC" in page


def test_an_empty_exemption_condition_previews_every_column_of_the_project(polly_client):
    page = polly_client.get(reverse("policy:exemption-new")).content.decode()
    project_columns = 4 + 4  # CUSTOMER_COLUMNS on prod-pg and staging-pg, both in shop

    assert "empty means every column" in page
    assert f"{project_columns} columns" in page and "0 columns" not in page


def test_the_live_check_previews_an_empty_exemption_condition_and_follows_the_project():
    script = Path("static/policy.js").read_text()

    assert "area.value.trim() || isExemption" in script
    assert 'projectField.addEventListener("change", recheck)' in script


# --- 4. Condition errors -----------------------------------------------------------------------


def test_syntax_errors_do_not_list_the_tokens_the_parser_expected():
    with pytest.raises(ConditionError) as raised:
        check_condition("resource.column_name ==")

    message = str(raised.value)
    assert "ends too early" in message and "mismatched input '<EOF>'" in message
    assert "expecting {" not in message and "NUM_FLOAT" not in message


def test_a_server_side_condition_error_is_shown_once_and_the_live_check_stays_quiet(polly_client):
    page = polly_client.post(
        reverse("policy:rule-new"),
        {
            "title": "Broken",
            "condition": "resource.column_name ==",
            "semantic_type": "email",
            "enabled": "on",
        },
    ).content.decode()

    assert page.count("ends too early") == 1
    assert "<div data-server-errors>" in page
    assert "NUM_FLOAT" not in page and "expecting {" not in page
    script = Path("static/policy.js").read_text()
    assert "[data-server-errors]" in script and "if (serverErrors) {" in script


# --- 5. Reorder arrows -------------------------------------------------------------------------


def test_approval_policy_arrows_are_offered_only_where_a_move_changes_the_order(polly_client, policy_world):
    mall = Project.objects.create(key="mall", title="Mall")
    approval_policy_save(project=mall, title="Only", condition="true", actor=SYSTEM, channel=Channel.CLI)
    from tests.factories import grant_project_perm

    grant_project_perm(policy_world.polly, "administer_policy", mall)

    page = polly_client.get(reverse("policy:approval-policies")).content.decode()

    assert 'aria-label="Move Prod PII up"' not in page, "first of shop"
    assert 'aria-label="Move Prod PII down"' in page
    assert 'aria-label="Move Everything else up"' in page
    assert 'aria-label="Move Everything else down"' not in page, "last of shop"
    assert 'aria-label="Move Only up"' not in page and 'aria-label="Move Only down"' not in page
