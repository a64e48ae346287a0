"""GET /api/v1/data-path/settings: what the data path applies to one database besides decisions."""

from __future__ import annotations

import pytest

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import Scope

pytestmark = pytest.mark.django_db

URL = "/api/v1/data-path/settings"


@pytest.fixture
def layer(api_client, demo):
    from tests.factories import make_token

    _, token = make_token([Scope.DECISIONS], account_name="sql-proxy")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


def test_it_answers_the_databases_project_and_guard(layer):
    from masking.models import Project
    from masking.services.projects import project_update

    answer = layer.get(URL, {"instance": "prod-pg", "database": "shop"})
    assert answer.status_code == 200
    assert answer.json() == {
        "instance": "prod-pg",
        "database": "shop",
        "project": "shop",
        "inference_guard": "refuse",
        "ttl_s": 60,
    }
    shop = Project.objects.get(key="shop")
    project_update(
        project=shop,
        title=shop.title,
        description="",
        inference_guard="audit",
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    assert layer.get(URL, {"instance": "prod-pg", "database": "shop"}).json()["inference_guard"] == "audit"


def test_a_database_veil_does_not_know_is_refused_mode(layer):
    answer = layer.get(URL, {"instance": "prod-pg", "database": "nope"}).json()
    assert answer["project"] is None and answer["inference_guard"] == "refuse"


def test_bad_input_names_the_field(layer):
    answer = layer.get(URL, {"instance": "prod-pg"})
    assert answer.status_code == 400
    assert "database" in answer.json()["error"]["fields"]


def test_it_needs_a_token_with_the_decisions_scope(api_client, demo):
    from tests.factories import make_token

    _, token = make_token([Scope.ACCESS_EVENTS])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get(URL, {"instance": "prod-pg", "database": "shop"}).status_code == 403
    api_client.credentials()
    assert api_client.get(URL, {"instance": "prod-pg", "database": "shop"}).status_code == 401


def test_an_unknown_guard_mode_is_refused_by_the_service(demo):
    from masking.models import Project
    from masking.services.projects import project_update

    shop = Project.objects.get(key="shop")
    with pytest.raises(ValueError, match="inference_guard"):
        project_update(
            project=shop,
            title=shop.title,
            description="",
            inference_guard="off",
            actor=SYSTEM,
            channel=Channel.CLI,
        )
