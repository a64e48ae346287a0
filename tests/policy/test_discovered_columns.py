"""Columns only seen in decision requests (`discovered_by_decision`) are not in the engine's
catalog: decisions answer `unknown_column` whatever their level. The checks page lists them as
findings; the catalog page does not offer to confirm a level for them (it would change nothing),
and a confirmed level shows as confirmed."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from masking.decisions.engine import ColumnKey
from masking.models import Column
from masking.services.catalog import catalog_record_discovered

pytestmark = pytest.mark.django_db
CATALOG = reverse("masking:catalog")


@pytest.fixture
def ssn(policy_world):
    catalog_record_discovered([ColumnKey("prod-pg", "shop", "public", "customers", "ssn")])
    column = Column.objects.get(name="ssn")
    assert column.discovered_by_decision and column.suggested_level == 4
    return column


def test_the_checks_page_lists_columns_seen_in_queries_but_not_in_the_catalog(polly_client, ssn):
    page = polly_client.get(reverse("policy:checks")).content.decode()

    assert "Seen in queries, not in the catalog" in page
    assert "prod-pg/shop/public.customers.ssn" in page
    assert "unknown_column" in page and "pushing the catalog" in page


def test_the_checks_page_says_none_without_discovered_columns(polly_client, policy_world):
    page = polly_client.get(reverse("policy:checks")).content.decode()

    assert "None: every column decisions name is in the catalog." in page


def test_discovered_columns_of_projects_one_does_not_administer_are_not_listed(client, ssn, policy_world):
    from tests.factories import grant_project_perm, make_project, make_user

    other = make_user("olga")
    grant_project_perm(other, "administer_policy", make_project("mall"))
    client.force_login(other)

    page = client.get(reverse("policy:checks")).content.decode()

    assert "customers.ssn" not in page


def test_the_catalog_offers_no_confirm_button_for_a_discovered_column(polly_client, ssn):
    page = polly_client.get(CATALOG, {"q": "ssn"}).content.decode()

    assert "seen in a query" in page
    assert "Confirm level 4 for ssn" not in page
    assert "register by pushing the catalog" in page


def test_confirming_a_discovered_column_is_refused_and_changes_nothing(polly_client, ssn):
    response = polly_client.post(CATALOG, {"column": ssn.pk, "level": "4"})

    ssn.refresh_from_db()
    assert response.status_code == 302 and ssn.classification_level is None
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "only seen in a query" in message and "pushing the catalog" in message


def test_a_confirmed_suggestion_shows_as_confirmed_not_as_a_question(polly_client, policy_world):
    from tests.policy.conftest import push_catalog

    push_catalog("prod-pg", "prod", [{"name": "national_id", "data_type": "text"}])
    column = Column.objects.get(name="national_id", table__schema__database__instance__key="prod-pg")
    assert not column.discovered_by_decision and column.suggested_level is not None
    level = column.suggested_level

    before = polly_client.get(CATALOG, {"q": "national_id"}).content.decode()
    polly_client.post(CATALOG, {"column": column.pk, "level": str(level)})
    after = polly_client.get(CATALOG, {"q": "national_id"}).content.decode()

    assert f"level {level}?" in before and f"Confirm level {level} for national_id" in before
    assert f"level {level}?" not in after and "✓ confirmed" in after
    assert f"Confirm level {level} for national_id" not in after


def _unknown(count: int, table: str) -> list[ColumnKey]:
    return [ColumnKey("prod-pg", "shop", "public", table, f"col_{i}") for i in range(count)]


def test_recording_discoveries_costs_the_same_queries_for_3_columns_as_for_60(policy_world):
    """The decision request that names them waits for this, so its cost must not grow per column."""
    with CaptureQueriesContext(connection) as few:
        assert catalog_record_discovered(_unknown(3, "ledger")) == 3
    with CaptureQueriesContext(connection) as many:
        assert catalog_record_discovered(_unknown(60, "journal") + _unknown(3, "ledger")) == 60

    assert len(many.captured_queries) == len(few.captured_queries)
    assert Column.objects.filter(table__name="journal", discovered_by_decision=True).count() == 60


def test_recording_discoveries_leaves_known_columns_and_unknown_databases_alone(policy_world):
    email = Column.objects.get(
        table__schema__database__instance__key="prod-pg", table__name="customers", name="email"
    )
    keys = [
        ColumnKey("prod-pg", "shop", "public", "customers", "email"),  # catalogued
        ColumnKey("prod-pg", "nowhere", "public", "t", "c"),  # a database Veil does not know
        ColumnKey("prod-pg", "shop", "billing", "invoices", "iban"),  # new schema and table
    ]

    assert catalog_record_discovered(keys) == 1
    assert catalog_record_discovered(keys) == 0

    assert Column.objects.get(pk=email.pk).discovered_by_decision is False
    iban = Column.objects.get(table__schema__name="billing", table__name="invoices", name="iban")
    assert iban.discovered_by_decision and iban.classification_level is None
    assert not Column.objects.filter(table__name="t").exists()
