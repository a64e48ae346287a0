"""The bulk catalog upsert API: idempotent, validated, permission-checked, audited."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from identity.models import Scope
from masking.models import Column, Instance, SemanticType
from tests.factories import catalog_payload, grant_project_perm, make_project, make_token, make_user

pytestmark = pytest.mark.django_db
URL = "/api/v1/catalog"


@pytest.fixture
def catalog_client(api_client, shop):
    _, token = make_token([Scope.CATALOG_WRITE])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


def test_push_creates_the_catalog_with_suggestions(catalog_client):
    response = catalog_client.post(URL, catalog_payload(), format="json")

    assert response.status_code == 200, response.content
    assert response.json()["created"] == {"databases": 1, "tables": 1, "columns": 3}
    email = Column.objects.get(name="email")
    phone = Column.objects.get(name="phone")
    assert email.classification_level == 3
    assert (phone.suggested_category, phone.suggested_level) == ("phone", 3)
    assert phone.classification_level is None, "a suggestion must not become a classification"
    assert Instance.objects.get(key="prod-pg").environment == "prod"


def test_pushing_the_same_catalog_twice_changes_nothing(catalog_client):
    catalog_client.post(URL, catalog_payload(), format="json")
    response = catalog_client.post(URL, catalog_payload(), format="json")

    body = response.json()
    assert body["created"] == {"databases": 0, "tables": 0, "columns": 0}
    assert (body["updated_columns"], body["unchanged_columns"]) == (0, 3)
    assert Column.objects.count() == 3


def test_omitted_classification_keeps_the_admins_value(catalog_client):
    catalog_client.post(URL, catalog_payload(), format="json")
    Column.objects.filter(name="phone").update(classification_level=4, tags=["pii"])
    scanner_push = catalog_payload(columns=[{"name": "id"}, {"name": "email"}, {"name": "phone"}])

    catalog_client.post(URL, scanner_push, format="json")

    phone = Column.objects.get(name="phone")
    assert (phone.classification_level, phone.tags) == (4, ["pii"])


def test_a_classification_change_is_audited_with_before_and_after(catalog_client):
    catalog_client.post(URL, catalog_payload(), format="json")
    changed = catalog_payload(columns=[{"name": "email", "classification_level": 4}])

    catalog_client.post(URL, changed, format="json")

    event = AuditEvent.objects.get(action="catalog.classification_changed")
    assert event.detail == {"before": 3, "after": 4}
    assert event.target_id == "prod-pg/shop/public.customers.email"
    assert event.project == "shop"


def test_prune_deletes_columns_the_push_no_longer_lists(catalog_client):
    catalog_client.post(URL, catalog_payload(), format="json")
    smaller = {**catalog_payload(columns=[{"name": "id"}]), "prune": True}

    response = catalog_client.post(URL, smaller, format="json")

    assert response.json()["deleted_columns"] == 2
    assert list(Column.objects.values_list("name", flat=True)) == ["id"]


def test_semantic_type_is_set_by_key(catalog_client):
    SemanticType.objects.create(key="email", title="Email", algorithm={"type": "email"})
    payload = catalog_payload(columns=[{"name": "email", "semantic_type": "email"}])

    catalog_client.post(URL, payload, format="json")

    assert Column.objects.get(name="email").semantic_type.key == "email"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["instance"].pop("environment"), "instance.environment"),
        (lambda p: p["instance"].update(engine="oracle9"), "instance.engine"),
        (lambda p: p.update(colour="blue"), "colour"),
        (lambda p: p["databases"][0].update(colums=[]), "databases[0].colums"),
        (
            lambda p: p["databases"][0]["schemas"][0]["tables"][0]["columns"][1].pop("name"),
            "databases[0].schemas[0].tables[0].columns[1].name",
        ),
        (
            lambda p: p["databases"][0]["schemas"][0]["tables"][0]["columns"][0].update(
                classification_level=9
            ),
            "databases[0].schemas[0].tables[0].columns[0].classification_level",
        ),
        (
            lambda p: p["databases"][0]["schemas"][0]["tables"][0]["columns"].append({"name": "email"}),
            "databases[0].schemas[0].tables[0].columns",
        ),
        (lambda p: p.update(databases=[]), "databases"),
        (lambda p: p["databases"][0].update(project="nope"), "databases[0].project"),
        (lambda p: p["databases"][0].pop("project"), "databases[0].project"),
        (
            lambda p: p["databases"][0]["schemas"][0]["tables"][0]["columns"][0].update(semantic_type="nope"),
            "semantic_type",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(catalog_client, mutate, field):
    payload = catalog_payload()
    mutate(payload)

    response = catalog_client.post(URL, payload, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert error["message"].startswith(field)
    assert not Instance.objects.exists() and not Column.objects.exists()


def test_a_push_over_the_column_limit_is_refused(catalog_client, settings):
    settings.CATALOG_UPSERT_MAX_COLUMNS = 2

    response = catalog_client.post(URL, catalog_payload(), format="json")

    assert response.status_code == 400
    assert "at most 2" in response.json()["error"]["message"]


def test_malformed_json_is_a_400(catalog_client):
    response = catalog_client.generic("POST", URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_a_token_without_the_catalog_scope_is_forbidden(api_client, shop):
    _, token = make_token([Scope.DECISIONS])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert api_client.post(URL, catalog_payload(), format="json").status_code == 403


def test_anonymous_requests_are_unauthorized(api_client, shop):
    response = api_client.post(URL, catalog_payload(), format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_person_needs_administer_policy_on_the_project(api_client, shop):
    outsider, admin = make_user(), make_user()
    grant_project_perm(admin, "administer_policy", shop)

    api_client.force_authenticate(outsider)
    assert api_client.post(URL, catalog_payload(), format="json").status_code == 403
    api_client.force_authenticate(admin)
    assert api_client.post(URL, catalog_payload(), format="json").status_code == 200


def test_changing_a_shared_instance_needs_every_project_on_it(api_client, shop):
    """An instance's environment is read by every condition over its databases (an approval
    policy may auto-approve staging): an administrator of one project may not move another
    project's databases to staging by pushing their own database with a new environment."""
    catalog_client_token = make_token([Scope.CATALOG_WRITE])[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {catalog_client_token}")
    assert api_client.post(URL, catalog_payload(), format="json").status_code == 200
    api_client.credentials()
    analytics = make_project("analytics")
    theirs = catalog_payload(environment="prod")
    theirs["databases"][0].update(name="analytics", project="analytics")
    admin = make_user()
    grant_project_perm(admin, "administer_policy", analytics)
    api_client.force_authenticate(admin)

    assert api_client.post(URL, theirs, format="json").status_code == 200, "same environment: theirs only"
    theirs["instance"]["environment"] = "staging"
    refused = api_client.post(URL, theirs, format="json")

    assert refused.status_code == 403, refused.content
    assert "shop" in refused.json()["error"]["message"]
    assert Instance.objects.get(key="prod-pg").environment == "prod"
    grant_project_perm(admin, "administer_policy", shop)
    assert api_client.post(URL, theirs, format="json").status_code == 200
    assert Instance.objects.get(key="prod-pg").environment == "staging"
