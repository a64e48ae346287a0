"""The policy API a CI pipeline uses: export, plan, apply on merge, and the two gates."""

from __future__ import annotations

import pytest

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import Scope, ServiceAccount
from masking.models import ChangeState, ProjectPolicySettings, SemanticType
from masking.services.policy import rule_save
from masking.services.policy_changes import NotAllowed, policy_change_approve
from tests.factories import grant_project_perm, make_project, make_token, make_user

pytestmark = pytest.mark.django_db


def test_a_pipeline_exports_plans_and_applies_on_merge(ci):
    exported = ci.get("/api/v1/policy/export").json()
    source = exported["yaml"].replace("title: Email\n", "title: Email address\n")

    unchanged = ci.post("/api/v1/policy/plan", {"policy": exported["yaml"]}, format="json").json()
    plan = ci.post("/api/v1/policy/plan", {"policy": source}, format="json").json()
    applied = ci.post(
        "/api/v1/policy/apply",
        {"policy": source, "message": "Merge !42: clearer title", "expected_version": exported["version"]},
        format="json",
    )

    assert not unchanged["has_changes"]
    assert plan["has_changes"] and plan["summary"] == {"create": 0, "update": 1, "delete": 0, "reorder": 0}
    assert plan["changes"][0]["fields"] == [{"field": "title", "before": "Email", "after": "Email address"}]
    assert applied.status_code == 200
    assert applied.json()["status"] == "applied" and applied.json()["version"] == exported["version"] + 1
    assert SemanticType.objects.get(key="email").title == "Email address"


def test_an_invalid_file_answers_the_one_error_shape_with_the_document_path(ci):
    response = ci.post(
        "/api/v1/policy/plan",
        {"policy": "rules:\n- title: x\n  condition: 'resource.nope'\n  semantic_type: email\n"},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("rules[0].condition: unknown field(s) resource.nope")
    assert list(error["fields"]) == ["rules[0].condition"]


def test_apply_against_a_moved_policy_is_a_conflict(ci):
    response = ci.post(
        "/api/v1/policy/apply",
        {"policy": "rules: []\n", "message": "x", "expected_version": 1},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_with_the_two_person_rule_a_pipeline_apply_waits_for_a_person(ci, policy_world):
    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)

    response = ci.post(
        "/api/v1/policy/apply", {"policy": "rules: []\n", "message": "Drop rules"}, format="json"
    )

    assert response.status_code == 202
    assert response.json()["status"] == "pending" and response.json()["change"]


def test_a_token_without_the_scope_and_a_person_without_policy_rights_are_refused(api_client, policy_world):
    _, token = make_token([Scope.DECISIONS])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get("/api/v1/policy/export").status_code == 403

    api_client.credentials()
    api_client.force_authenticate(policy_world.eve)
    assert api_client.get("/api/v1/policy/export").status_code == 403


def test_the_gates_over_http(ci):
    coverage = ci.get("/api/v1/policy/coverage").json()
    drift = ci.get("/api/v1/policy/drift?environments=prod,staging").json()

    assert not coverage["ok"]
    assert [f["column"] for f in coverage["uncovered"]] == [
        "prod-pg/shop/public.customers.notes",
        "staging-pg/shop/public.customers.notes",
    ]
    assert drift == {"ok": True, "drift": []}


def test_the_gates_over_a_session_list_only_the_projects_one_administers(api_client, policy_world):
    """The Checks page leaves out other projects' columns; the same gates over HTTP do too."""
    rule_save(
        title="Notes in prod",
        condition='resource.column_name == "notes" && resource.environment_id == "prod"',
        semantic_type=SemanticType.objects.get(key="email"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )  # shop's notes now drift between prod and staging, and staging's stays uncovered
    olga = make_user("olga")
    grant_project_perm(olga, "administer_policy", make_project("billing"))

    api_client.force_authenticate(olga)
    theirs = (api_client.get("/api/v1/policy/coverage").json(), api_client.get("/api/v1/policy/drift").json())
    api_client.force_authenticate(policy_world.polly)
    mine = (api_client.get("/api/v1/policy/coverage").json(), api_client.get("/api/v1/policy/drift").json())

    assert theirs == (
        {"ok": True, "uncovered": [], "unreviewed": [], "unclassified": []},
        {"ok": True, "drift": []},
    )
    assert [f["column"] for f in mine[0]["uncovered"]] == ["staging-pg/shop/public.customers.notes"]
    assert [d["column"] for d in mine[1]["drift"]] == ["shop/public.customers.notes"]


def test_the_owner_of_the_pipeline_that_submitted_a_held_change_cannot_approve_it(ci, policy_world):
    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)
    ServiceAccount.objects.filter(name="ci").update(owner=policy_world.polly)
    held = ci.post("/api/v1/policy/apply", {"policy": "rules: []\n", "message": "Drop rules"}, format="json")
    change_id = held.json()["change"]

    with pytest.raises(NotAllowed, match="You own ci, the service account that submitted this change"):
        policy_change_approve(change_id=change_id, approver=policy_world.polly, channel=Channel.WEB)
    approved = policy_change_approve(change_id=change_id, approver=policy_world.quinn, channel=Channel.WEB)

    assert approved.state == ChangeState.APPLIED
