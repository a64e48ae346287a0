"""The insights page's one-click drafts, as a policy admin (or a stale page) posts them: bad input is
a 400 naming the parameter, never a 500 or a garbled draft, and a draft changes nothing."""

from __future__ import annotations

import pytest

from masking.models import MaskingRule, PolicyVersion

pytestmark = pytest.mark.django_db

RULE_CHANGE = "/policy/insights/draft-rule-change"
EXEMPTION = "/policy/insights/draft-exemption"


@pytest.fixture
def admin_client(world, client):
    client.force_login(world.dave)
    return client


def _rule() -> MaskingRule:
    return MaskingRule.objects.get(title="emails")


def test_a_rule_change_draft_shows_the_narrowed_condition_for_review(admin_client):
    response = admin_client.post(
        RULE_CHANGE, {"rule": str(_rule().pk), "condition": 'resource.table_name == "x"', "label": "x.email"}
    )

    assert response.status_code == 200
    assert "Draft: stop rule &#x27;emails&#x27; masking x.email" in response.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rule": "abc", "condition": "true"}, "'rule' must be a rule's id (a whole number), not 'abc'."),
        ({"rule": "-1", "condition": "true"}, "The parameter 'rule' must be a rule's id"),
        ({"condition": "true"}, "The parameter 'rule' is missing or empty"),
        ({"rule": "RULE", "condition": ""}, "The parameter 'condition' is missing or empty"),
    ],
)
def test_a_rule_change_draft_with_bad_input_is_a_400_naming_the_parameter(admin_client, data, message):
    versions = PolicyVersion.objects.count()
    data = {**data, "rule": str(_rule().pk)} if data.get("rule") == "RULE" else data

    response = admin_client.post(RULE_CHANGE, data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert PolicyVersion.objects.count() == versions


def test_a_rule_change_draft_for_a_rule_that_does_not_exist_is_404(admin_client):
    for pk in ("987654", "99999999999999999999999"):
        assert admin_client.post(RULE_CHANGE, {"rule": pk, "condition": "true"}).status_code == 404


COMPLETE = {
    "project": "shop",
    "role": "pii-approvers",
    "condition": 'resource.column_name == "email"',
    "label": "prod-pg/shop/public.customers.email",
    "requests": "7",
}


def test_an_exemption_draft_names_the_role_and_how_often_it_asked(admin_client):
    response = admin_client.post(EXEMPTION, COMPLETE)

    body = response.content.decode()
    assert response.status_code == 200
    assert "Draft: standing exemption for pii-approvers" in body
    assert "requested 7 times in 90 days" in body


@pytest.mark.parametrize("missing", ["project", "role", "condition", "label"])
def test_an_exemption_draft_missing_a_parameter_is_a_400_naming_it(admin_client, missing):
    response = admin_client.post(EXEMPTION, {**COMPLETE, missing: " "})

    assert response.status_code == 400
    assert response.content.decode() == (
        f"The parameter '{missing}' is missing or empty: draft from the insights page again."
    )


def test_an_exemption_draft_with_a_count_that_is_not_a_number_is_a_400(admin_client):
    response = admin_client.post(EXEMPTION, {**COMPLETE, "requests": "lots"})

    assert response.status_code == 400
    assert "The parameter 'requests' must be a whole number" in response.content.decode()
