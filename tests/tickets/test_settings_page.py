"""The request settings pages, where a project's policy administrators say what a request's ticket
must be: saved through `ticket_rules_save`, recorded in the audit log as every change of the
project's request settings is, refused with the field named, and closed to everyone else."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent, Channel
from jitaccess.models import ProjectAccessSettings
from jitaccess.selectors.scopes import access_settings
from jitaccess.services.access_settings import ticket_rules_save
from masking.services.policy import PolicyError
from tests.test_accessibility import dangling_references, fetch, unlabelled_controls

pytestmark = pytest.mark.django_db
LIST = "/requests/settings/"
SHOP = "/requests/settings/shop/"
RULES = {
    "required": "on",
    "pattern": "OPS-[0-9]+",
    "hint": "an OPS issue key, such as OPS-123",
    "in_jira": "on",
}


def test_a_policy_administrator_sets_the_ticket_rules_and_the_change_is_audited(world, jira, client):
    client.force_login(world.dave)

    response = client.post(SHOP, RULES, follow=True)

    assert response.redirect_chain[-1][0] == SHOP
    assert "Request settings of shop saved." in response.content.decode()
    rules = access_settings(world.project)
    assert (rules.ticket_required, rules.ticket_pattern, rules.ticket_hint, rules.ticket_in_jira) == (
        True,
        "OPS-[0-9]+",
        "an OPS issue key, such as OPS-123",
        True,
    )
    event = AuditEvent.objects.get(action="project.access_settings_updated")
    assert (event.actor_name, event.channel, event.project) == ("dave", Channel.WEB, "shop")
    assert event.detail == {
        "before": {
            "ticket_required": False,
            "ticket_pattern": "",
            "ticket_hint": "",
            "ticket_in_jira": False,
        },
        "after": {
            "ticket_required": True,
            "ticket_pattern": "OPS-[0-9]+",
            "ticket_hint": "an OPS issue key, such as OPS-123",
            "ticket_in_jira": True,
        },
    }


def test_saving_the_same_rules_again_records_nothing(world, client):
    client.force_login(world.dave)
    client.post(SHOP, RULES)

    client.post(SHOP, RULES)

    assert AuditEvent.objects.filter(action="project.access_settings_updated").count() == 1


def test_the_other_request_settings_are_kept(world, client):
    settings = access_settings(world.project)
    settings.max_duration = settings.max_duration / 7
    settings.save()
    client.force_login(world.dave)

    client.post(SHOP, RULES)

    assert ProjectAccessSettings.objects.get(project=world.project).max_duration == settings.max_duration


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"pattern": "OPS-(["}, "pattern", "The pattern is not a regular expression Veil can use (unclosed"),
        (
            {"pattern": "(?<=OPS)-1"},
            "pattern",
            "look-around, including look-ahead and look-behind, is not supported",
        ),
        ({"pattern": "x" * 501}, "pattern", "Ensure this value has at most 500 characters"),
        ({"hint": "h" * 201}, "hint", "Ensure this value has at most 200 characters"),
    ],
)
def test_a_bad_rule_is_refused_next_to_its_field_and_nothing_is_saved(world, client, change, field, message):
    client.force_login(world.dave)

    page = client.post(SHOP, RULES | change)

    assert page.status_code == 400
    body = page.content.decode()
    error = body[body.index(f'id="id_{field}_error"') :]
    assert message in error[: error.index("</div>")]
    assert not ProjectAccessSettings.objects.filter(project=world.project).exists()
    assert not AuditEvent.objects.filter(action="project.access_settings_updated").exists()


def test_the_service_refuses_a_bad_pattern_whoever_calls_it(world):
    with pytest.raises(PolicyError) as raised:
        ticket_rules_save(
            project=world.project,
            required=True,
            pattern="(",
            hint="",
            in_jira=False,
            actor=world.dave,
            channel=Channel.API,
        )

    assert raised.value.field == "pattern"


def test_the_admin_site_refuses_a_bad_pattern_too(world):
    settings = ProjectAccessSettings(project=world.project, ticket_pattern="(a")

    with pytest.raises(ValidationError) as raised:
        settings.full_clean()

    assert list(raised.value.message_dict) == ["ticket_pattern"]


def test_someone_who_does_not_administer_the_project_may_not_see_or_change_its_rules(world, client):
    client.force_login(world.alice)

    shown = client.get(SHOP)
    posted = client.post(SHOP, RULES)
    listed = client.get(LIST).content.decode()

    assert (shown.status_code, posted.status_code) == (403, 403)
    assert "Request settings are for the project&#x27;s policy administrators." in posted.content.decode()
    assert not ProjectAccessSettings.objects.filter(project=world.project).exists()
    assert "You administer no project's policy." in listed


def test_the_list_shows_each_administered_projects_rules_and_warns_without_jira(world, client, settings):
    settings.JIRA_URL = settings.JIRA_EMAIL = settings.JIRA_API_TOKEN = ""
    ProjectAccessSettings.objects.create(project=world.project, ticket_required=True, ticket_in_jira=True)
    client.force_login(world.dave)

    listed = client.get(LIST).content.decode()
    page = client.get(SHOP).content.decode()

    assert f'href="{SHOP}"' in listed
    assert "required" in listed and "a Jira issue key such as OPS-123, or its link" in listed
    assert "Jira is not configured: tickets are refused" in listed
    assert "Veil has no Jira connection" in page


def test_policy_administrators_find_the_page_in_the_menu(world, client):
    client.force_login(world.dave)
    menu = client.get("/").content.decode()
    client.force_login(world.alice)
    engineer_menu = client.get("/").content.decode()

    assert f'<a href="{LIST}"' in menu and ">Request settings</a>" in menu
    assert ">Request settings</a>" not in engineer_menu


def test_the_settings_pages_label_every_control_and_caption_every_table(world, client):
    """The checks of tests/test_accessibility.py, on the request settings pages."""
    controls = 0
    for url in (
        reverse("jitaccess:request-settings-list"),
        reverse("jitaccess:request-settings", args=["shop"]),
    ):
        doc = fetch(client, world.dave, url)
        controls += len(doc.controls())
        assert unlabelled_controls(doc) == [] and dangling_references(doc) == [], url
        for table in doc.tables:
            assert table["caption"] and all(a.get("scope") == "col" for a, _ in table["th"]), url
    assert controls >= 4
