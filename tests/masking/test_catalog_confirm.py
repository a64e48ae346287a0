"""Confirming a suggested classification from the catalog page: a policy admin of the column's
project applies the suggested level (POST, CSRF), recorded like any classification change."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from masking.models import Column, DecisionEpoch
from masking.services.catalog import CatalogError, catalog_upsert, column_classify
from tests.factories import catalog_payload, grant_project_perm, make_project, make_user

pytestmark = pytest.mark.django_db
URL = reverse("masking:catalog")


@pytest.fixture
def columns(shop):
    """prod-pg/shop/public.customers: billing_email unclassified (suggested email, level 3), email
    classified 3, notes unclassified with no suggestion."""
    payload = catalog_payload(
        columns=[
            {"name": "billing_email", "data_type": "text"},
            {"name": "email", "data_type": "text", "classification_level": 3},
            {"name": "notes", "data_type": "text"},
        ]
    )
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    return {c.name: c for c in Column.objects.all()}


@pytest.fixture
def admin(shop):
    user = make_user("polly", display_name="Polly Policy")
    grant_project_perm(user, "administer_policy", shop)
    return user


def confirm(client, column, level=None):
    level = column.suggested_level if level is None else level
    return client.post(URL, {"column": column.pk, "level": level, "q": "email", "page": "1"})


# --- The service -------------------------------------------------------------------------------


def test_classifying_a_column_records_the_change_and_moves_the_epoch(columns):
    column = columns["billing_email"]
    epoch = DecisionEpoch.objects.get_or_create(id=1)[0].policy

    changed = column_classify(
        column=column, level=3, actor=SYSTEM, channel=Channel.WEB, detail={"source": "x"}
    )

    event = AuditEvent.objects.get(action="catalog.classification_changed")
    assert changed and Column.objects.get(pk=column.pk).classification_level == 3
    assert event.target_id == "prod-pg/shop/public.customers.billing_email"
    assert (event.project, event.channel) == ("shop", Channel.WEB)
    assert event.detail == {"source": "x", "before": None, "after": 3}
    assert DecisionEpoch.objects.get(id=1).policy > epoch


def test_classifying_at_the_same_level_changes_and_records_nothing(columns):
    assert not column_classify(column=columns["email"], level=3, actor=SYSTEM, channel=Channel.WEB)
    assert not AuditEvent.objects.filter(action="catalog.classification_changed").exists()


def test_a_level_outside_the_scale_is_refused(columns):
    with pytest.raises(CatalogError, match="classification_level: must be one of 0, 1, 2, 3, 4"):
        column_classify(column=columns["notes"], level=7, actor=SYSTEM, channel=Channel.WEB)
    assert Column.objects.get(name="notes").classification_level is None


# --- The page ----------------------------------------------------------------------------------


def test_a_policy_admin_sees_confirm_only_for_unclassified_suggestions(client, columns, admin):
    client.force_login(admin)

    page = client.get(URL).content.decode()

    assert page.count('class="confirm-suggestion"') == 1
    assert f'name="column" value="{columns["billing_email"].pk}"' in page
    assert 'aria-label="Confirm level 3 for billing_email"' in page


def test_confirming_applies_the_suggested_level_and_audits_who_did_it(client, columns, admin):
    client.force_login(admin)

    response = confirm(client, columns["billing_email"])

    assert response.status_code == 302 and response["Location"] == URL + "?q=email&page=1"
    assert Column.objects.get(name="billing_email").classification_level == 3
    event = AuditEvent.objects.get(action="catalog.classification_changed")
    assert (event.actor_name, event.channel) == ("Polly Policy", Channel.WEB)
    assert event.detail == {"source": "suggestion", "suggested_category": "email", "before": None, "after": 3}
    followed = client.get(response["Location"]).content.decode()
    assert "prod-pg/shop/public.customers.billing_email classified as 3 · Restricted (PII)." in followed


def test_someone_who_only_reads_the_project_sees_no_button_and_is_refused(client, columns, shop):
    auditor = make_user("audrey")
    grant_project_perm(auditor, "view_audit", shop)
    client.force_login(auditor)

    page = client.get(URL).content.decode()
    response = confirm(client, columns["billing_email"])

    assert "billing_email" in page and 'class="confirm-suggestion"' not in page
    assert response.status_code == 403
    assert "Only a policy administrator of project &#x27;shop&#x27;" in response.content.decode()
    assert Column.objects.get(name="billing_email").classification_level is None


def test_an_admin_of_another_project_is_refused(client, columns):
    other = make_user("olga")
    grant_project_perm(other, "administer_policy", make_project("other"))
    client.force_login(other)

    assert confirm(client, columns["billing_email"]).status_code == 403
    assert Column.objects.get(name="billing_email").classification_level is None


def test_a_suggestion_that_changed_since_the_page_was_shown_is_not_applied(client, columns, admin):
    client.force_login(admin)

    response = confirm(client, columns["billing_email"], level=2)

    assert Column.objects.get(name="billing_email").classification_level is None
    assert "has changed since the page was shown" in client.get(response["Location"]).content.decode()
    assert not AuditEvent.objects.filter(action="catalog.classification_changed").exists()


def test_an_already_classified_column_is_left_as_it_is(client, columns, admin):
    client.force_login(admin)
    email = columns["email"]
    Column.objects.filter(pk=email.pk).update(suggested_level=4, suggested_category="ssn")

    confirm(client, email, level=4)

    assert Column.objects.get(pk=email.pk).classification_level == 3
    assert not AuditEvent.objects.filter(action="catalog.classification_changed").exists()


def test_confirming_needs_the_csrf_token(columns, admin):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)

    response = confirm(strict, columns["billing_email"])

    assert response.status_code == 403
    assert Column.objects.get(name="billing_email").classification_level is None


def test_a_policy_admin_chooses_the_level_of_a_column_without_a_suggestion(client, columns, admin):
    client.force_login(admin)
    notes = columns["notes"]

    page = client.get(URL).content.decode()
    response = client.post(URL, {"column": notes.pk, "choose": "1", "level": "2"})

    assert page.count('class="classify"') == 2, "billing_email and notes are unclassified"
    assert f'id="level-{notes.pk}"' in page and f'id="level-{columns["email"].pk}"' not in page
    assert Column.objects.get(pk=notes.pk).classification_level == 2
    event = AuditEvent.objects.get(action="catalog.classification_changed")
    assert event.detail == {"source": "chosen", "suggested_category": "", "before": None, "after": 2}
    assert "classified as 2 · Confidential." in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("level", ["", "9", "two"])
def test_choosing_no_level_or_one_off_the_scale_changes_nothing(client, columns, admin, level):
    client.force_login(admin)

    response = client.post(URL, {"column": columns["notes"].pk, "choose": "1", "level": level})

    assert response.status_code == 302
    assert Column.objects.get(pk=columns["notes"].pk).classification_level is None
    assert "Choose a classification level for" in client.get(response["Location"]).content.decode()


def test_choosing_a_level_leaves_a_column_classified_meanwhile_as_it_is(client, columns, admin):
    client.force_login(admin)

    client.post(URL, {"column": columns["email"].pk, "choose": "1", "level": "0"})

    assert Column.objects.get(pk=columns["email"].pk).classification_level == 3
    assert not AuditEvent.objects.filter(action="catalog.classification_changed").exists()


def test_someone_who_only_reads_the_project_cannot_choose_a_level(client, columns, shop):
    auditor = make_user("audrey")
    grant_project_perm(auditor, "view_audit", shop)
    client.force_login(auditor)

    page = client.get(URL).content.decode()
    response = client.post(URL, {"column": columns["notes"].pk, "choose": "1", "level": "0"})

    assert 'class="classify"' not in page and response.status_code == 403
    assert Column.objects.get(pk=columns["notes"].pk).classification_level is None
