"""Finding 9a: a `decisions`-only token grew the catalog by 3,000 columns in three requests.

Each token may add at most `CATALOG_DISCOVERY_MAX` unknown columns to the catalog per window;
beyond it the columns are still answered `unknown_column` (masked) but not recorded, and the
policy admins of the project see on the checks page (and in the audit log) that it happened.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from audit.models import AuditEvent
from identity.models import Scope
from masking.models import Column, Schema, Table
from tests.factories import grant_project_perm, make_project, make_shop_policy, make_token, make_user

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions"
LIMIT = 50


@pytest.fixture(autouse=True)
def _small_budget(settings):
    settings.CATALOG_DISCOVERY_MAX = LIMIT
    settings.CATALOG_DISCOVERY_WINDOW_S = 3600


@pytest.fixture
def catalog(db, shop):
    make_shop_policy()
    make_user("alice")  # any principal Veil knows: the engine answers `unknown_principal` otherwise
    return shop


def _token_client(api_client_factory):
    _, token = make_token([Scope.DECISIONS])
    client = api_client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def new_client():
    from rest_framework.test import APIClient

    return lambda: _token_client(APIClient)


def _ask(client, request: int, count: int) -> list[dict]:
    columns = [
        {"instance": "prod-pg", "database": "shop", "schema": f"s{request}", "table": "t", "column": f"c{i}"}
        for i in range(count)
    ]
    response = client.post(URL, {"principal": {"user": "alice"}, "columns": columns}, format="json")
    assert response.status_code == 200
    return response.json()["decisions"]


def _discovered() -> int:
    return Column.objects.filter(discovered_by_decision=True).count()


def test_a_token_adds_at_most_its_budget_of_unknown_columns_and_all_are_still_masked(catalog, new_client):
    attacker = new_client()

    answers = [_ask(attacker, request, 40) for request in range(3)]

    assert _discovered() == LIMIT  # not 120
    assert all(d["action"] == "mask" and d["reason"]["kind"] == "unknown_column" for a in answers for d in a)
    # Schemas and tables are only created for the columns recorded.
    assert not Schema.objects.filter(name="s2").exists()
    assert Table.objects.filter(schema__name__in=["s0", "s1", "s2"]).count() == 2


def test_the_budget_is_per_token(catalog, new_client):
    _ask(new_client(), 0, LIMIT + 10)
    _ask(new_client(), 1, 10)

    assert _discovered() == LIMIT + 10
    assert Column.objects.filter(table__schema__name="s1").count() == 10


def test_throttling_is_audited_once_per_window_and_shown_to_the_projects_admins(catalog, new_client, client):
    attacker = new_client()
    for request in range(4):
        _ask(attacker, request, 40)

    [event] = AuditEvent.objects.filter(action="catalog.discoveries_throttled")
    assert event.project == "shop" and event.actor_type == "service_account"
    assert event.detail == {"limit": LIMIT, "window_s": 3600, "not_recorded": 30}

    polly = make_user("polly")
    grant_project_perm(polly, "administer_policy", catalog)
    client.force_login(polly)
    page = client.get(reverse("policy:checks")).content.decode()
    assert "Discovery throttled" in page and event.target_repr in page and "30 column(s)" in page

    olga = make_user("olga")
    grant_project_perm(olga, "administer_policy", make_project("mall"))
    client.force_login(olga)
    assert event.target_repr not in client.get(reverse("policy:checks")).content.decode()


def test_columns_left_out_are_recorded_in_a_later_window(catalog, new_client):
    """Left-out columns are not remembered as reported: a request in the next window records them."""
    client = new_client()
    _ask(client, 0, LIMIT + 5)
    assert _discovered() == LIMIT

    cache.clear()  # the window's counters expire
    _ask(client, 0, LIMIT + 5)

    assert _discovered() == LIMIT + 5
