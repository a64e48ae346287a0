"""Finding 1: policy conditions could freeze or kill a worker.

Seven nested `[0..9].all(...)` froze a worker through `/policy/conditions/check`, a saved rule with
a nested condition stalled decisions, and a short nested `.map` exhausted memory. Every condition
now has a bounded cost (`masking.decisions.cel_cost`): refused wherever one is accepted (rule, exemption,
approval policy, policy-as-code import, the live check) and, when one saved before the limits is
met on the decision path, refused before it runs: the rule masks in full, the exemption is not
applied, the approval policy is skipped, and the rules page says why.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import Scope
from jitaccess.models import ApprovalPolicy
from jitaccess.policy.matching import REQUEST_FIELDS, match_approval_policy
from jitaccess.policy.services import approval_policy_save
from masking.decisions.cel_cost import MAX_CONDITION_CHARS
from masking.models import Exemption, MaskingRule, SemanticType
from masking.policy.insights import rule_usage
from masking.selectors import decision_caches
from masking.services.policy import PolicyError, bump_epoch, exemption_create, rule_save
from tests.factories import grant_project_perm, make_shop_policy, make_token, make_user

pytestmark = pytest.mark.django_db

TEN = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
HUNDRED = "[" + ", ".join(str(i) for i in range(100)) + "]"


def _nested_all(depth: int) -> str:
    names = "abcdefghij"
    expression = "true"
    for name in reversed(names[:depth]):
        expression = f"{TEN}.all({name}, {expression})"
    return expression


SEVEN_NESTED_ALL = _nested_all(7)  # the finding: ten million iterations
NESTED_ALL = _nested_all(3)  # cheap enough to run without the limits, so the tests fail fast
NESTED_MAP = f"size({TEN}.map(a, {TEN}.map(b, {TEN}.map(c, [a, b, c])))) > 0"
WIDE = f"{HUNDRED}.all(a, {HUNDRED}.all(b, a != b || a == b))"  # two deep, but 10,000 iterations
DEAR_REGEX = 'resource.column_name.matches("\\\\w{50}")'  # compiled on every call: ~15 ms each
UNBOUNDED_PATTERN = "resource.column_name.matches(resource.table_name)"
TOO_LONG = " || ".join(['resource.column_name == "c"'] * 300)

# (condition, what the refusal says)
COSTLY = [
    (NESTED_ALL, "nests comprehensions (all, exists, exists_one, map, filter) more than 2 deep"),
    (NESTED_MAP, "nests comprehensions"),
    (WIDE, "is too expensive to evaluate: an estimated"),
    (DEAR_REGEX, "is too expensive to evaluate"),
    (UNBOUNDED_PATTERN, "the pattern given to matches() must be a quoted string"),
    (TOO_LONG, f"characters long; at most {MAX_CONDITION_CHARS:,}"),
]


def _request_condition(condition: str) -> str:
    return condition.replace("resource.column_name", "request.table_name").replace(
        "resource.table_name", "request.database_name"
    )


@pytest.fixture
def shop_policy(db, shop):
    make_shop_policy()
    decision_caches.clear()
    return shop


@pytest.fixture
def admin_client(client, shop_policy):
    polly = make_user("polly")
    grant_project_perm(polly, "administer_policy", shop_policy)
    client.force_login(polly)
    return client


def test_the_live_check_refuses_seven_nested_alls_without_running_them(admin_client):
    response = admin_client.post(reverse("policy:condition-check"), {"condition": SEVEN_NESTED_ALL})

    assert response.status_code == 200
    assert response.json() == {
        "ok": False,
        "error": "nests comprehensions (all, exists, exists_one, map, filter) more than 2 deep",
    }


@pytest.mark.parametrize(("condition", "message"), COSTLY, ids=[m[:30] for _, m in COSTLY])
def test_a_rule_with_an_unbounded_condition_is_refused_at_save(shop_policy, condition, message):
    with pytest.raises(PolicyError) as refused:
        rule_save(
            title="Costly",
            condition=condition,
            semantic_type=SemanticType.objects.get(key="email"),
            actor=SYSTEM,
            channel=Channel.CLI,
        )

    assert refused.value.field == "condition"
    assert message in refused.value.message
    assert not MaskingRule.objects.filter(title="Costly").exists()


@pytest.mark.parametrize(("condition", "message"), COSTLY, ids=[m[:30] for _, m in COSTLY])
def test_an_exemption_scope_with_an_unbounded_condition_is_refused(shop_policy, condition, message):
    with pytest.raises(PolicyError) as refused:
        exemption_create(
            project=shop_policy,
            reason="Support reads phone numbers",
            condition=condition,
            users=[make_user("sam")],
            created_by=None,
            actor=SYSTEM,
            channel=Channel.CLI,
        )

    assert message in refused.value.message
    assert not Exemption.objects.exists()


@pytest.mark.parametrize(("condition", "message"), COSTLY, ids=[m[:30] for _, m in COSTLY])
def test_an_approval_policy_with_an_unbounded_condition_is_refused(shop_policy, condition, message):
    with pytest.raises(PolicyError) as refused:
        approval_policy_save(
            project=shop_policy,
            title="Costly",
            condition=_request_condition(condition),
            actor=SYSTEM,
            channel=Channel.CLI,
        )

    assert refused.value.field == "condition"
    assert message in refused.value.message
    assert not ApprovalPolicy.objects.filter(title="Costly").exists()


def test_policy_as_code_refuses_an_unbounded_condition_naming_where_it_is(api_client, shop_policy):
    _, token = make_token([Scope.POLICY_WRITE], "ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    source = f"rules:\n- title: Costly\n  condition: '{WIDE}'\n  semantic_type: email\n"

    response = api_client.post("/api/v1/policy/plan", {"policy": source}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["rules[0].condition"]
    assert "is too expensive to evaluate" in error["message"]


@pytest.mark.parametrize(
    "condition",
    [
        'resource.tags.exists(t, t == "pii")',
        '"pii" in resource.tags && resource.environment_id in ["prod", "staging"]',
        'resource.tags.exists(t, ["pii", "phi"].exists(p, t.startsWith(p)))',
        'resource.column_name.matches("^[a-z_]+_(id|email)$") || resource.column_name.matches("\\\\w+_pii")',
        " || ".join(f'resource.column_name == "c{i}"' for i in range(200)),
    ],
)
def test_everyday_conditions_stay_within_the_limits(shop_policy, condition):
    rule = rule_save(
        title="Everyday",
        condition=condition,
        semantic_type=SemanticType.objects.get(key="email"),
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    assert rule.condition == condition


def _column(name: str) -> dict[str, str]:
    return dict(instance="prod-pg", database="shop", schema="public", table="customers", column=name)


def _decide(api_client, columns: list[str]) -> list[dict]:
    _, token = make_token([Scope.DECISIONS], "sql-proxy")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = {"principal": {"user": "alice@example.com"}, "columns": [_column(c) for c in columns]}
    response = api_client.post("/api/v1/decisions", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["decisions"]


def _saved_before_the_limits(model, pk: int, condition: str) -> None:
    """A condition already in the database when the limits came: written past the services."""
    model.objects.filter(pk=pk).update(condition=condition)
    bump_epoch(policy=True, grants=True)


def test_a_saved_rule_over_the_limits_masks_in_full_and_the_rules_page_says_why(shop_policy, api_client):
    make_user("alice", email="alice@example.com")
    rule = MaskingRule.objects.get(title="emails")
    _saved_before_the_limits(MaskingRule, rule.pk, SEVEN_NESTED_ALL)

    decision = _decide(api_client, ["id"])[0]

    assert decision["action"] == "mask", "a column no rule masks is masked by the rule that cannot run"
    assert (decision["reason"]["kind"], decision["reason"]["id"]) == ("rule", rule.pk)
    (usage,) = rule_usage()
    assert usage.status == (
        "fails closed, masking in full every column it reaches: the condition nests comprehensions "
        "(all, exists, exists_one, map, filter) more than 2 deep"
    )


def test_a_saved_exemption_over_the_limits_is_not_applied(shop_policy, api_client):
    alice = make_user("alice", email="alice@example.com")
    exemption = exemption_create(
        project=shop_policy,
        reason="Alice reads emails",
        condition='resource.column_name == "email"',
        users=[alice],
        expires_at=timezone.now() + timedelta(days=1),
        created_by=None,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    assert _decide(api_client, ["email"])[0]["action"] == "unmask"

    _saved_before_the_limits(Exemption, exemption.pk, f'{NESTED_ALL} && resource.column_name == "email"')

    decision = _decide(api_client, ["email"])[0]
    assert (decision["action"], decision["reason"]["kind"]) == ("mask", "rule")


def test_a_saved_approval_policy_over_the_limits_is_skipped(shop_policy):
    costly = approval_policy_save(
        project=shop_policy, title="Prod", condition="true", actor=SYSTEM, channel=Channel.CLI
    )
    fallback = approval_policy_save(
        project=shop_policy, title="Everything else", condition="true", actor=SYSTEM, channel=Channel.CLI
    )
    _saved_before_the_limits(ApprovalPolicy, costly.pk, _request_condition(NESTED_ALL))

    assert match_approval_policy(project=shop_policy, variables=dict(REQUEST_FIELDS)) == fallback
