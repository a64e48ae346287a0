"""`manage.py masking check` (coverage) and `manage.py masking drift` as CI gates."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import Channel
from audit.services import SYSTEM
from masking.models import SemanticType
from masking.services.policy import rule_save
from tests.policy.conftest import CUSTOMER_COLUMNS, push_catalog

pytestmark = pytest.mark.django_db


def masking(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("masking", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def add_rule(title: str, condition: str, semantic_type: str = "email") -> None:
    rule_save(
        title=title,
        condition=condition,
        semantic_type=SemanticType.objects.get(key=semantic_type),
        actor=SYSTEM,
        channel=Channel.CLI,
    )


def test_the_coverage_check_fails_on_an_uncovered_sensitive_column_and_passes_once_a_rule_covers_it(
    policy_world,
):
    code, output = masking("check")

    assert code == 1
    uncovered = [line for line in output.splitlines() if line.startswith("UNCOVERED")]
    assert uncovered == [
        "UNCOVERED  prod-pg/shop/public.customers.notes  (prod): tagged sensitive, not masked",
        "UNCOVERED  staging-pg/shop/public.customers.notes  (staging): tagged sensitive, not masked",
    ]

    add_rule("Support notes", 'resource.column_name == "notes"')
    code, output = masking("check")

    assert code == 0, output
    assert output.strip().endswith(
        "0 uncovered, 0 to review, 0 unclassified in clear (0 more masked by default), of 8 columns."
    )


def test_a_stricter_level_and_require_rule_find_more(policy_world):
    add_rule("Support notes", 'resource.column_name == "notes"')

    code, output = masking("check", "--require-rule", "--environment", "prod", "--format", "json")

    assert code == 1
    report = json.loads(output)
    assert [f["column"] for f in report["uncovered"]] == ["prod-pg/shop/public.customers.phone"]
    assert report["uncovered"][0]["why"] == "classified at level 3, only masked by the classification default"
    assert masking("check", "--min-level", "1")[0] == 1, "the level-1 id column is now in scope"


def test_unclassified_columns_that_look_sensitive_are_reported_for_review(policy_world):
    push_catalog("prod-pg", "prod", [*CUSTOMER_COLUMNS, {"name": "ssn", "data_type": "text"}])
    add_rule("Support notes", 'resource.column_name == "notes"')

    code, output = masking("check")

    assert code == 0, "a column nobody classified does not fail the gate; it is listed"
    expected = "UNREVIEWED prod-pg/shop/public.customers.ssn  (prod): unclassified; its name and type look"
    assert f"{expected} like level 4" in output


def test_drift_between_two_environments_is_reported_exactly(policy_world):
    assert masking("drift")[0] == 0, "identical catalogs under global rules do not drift"
    add_rule("Prod phones", 'resource.environment_id == "prod" && resource.column_name == "phone"', "phone")
    push_catalog("staging-pg", "staging", [*CUSTOMER_COLUMNS, {"name": "debug", "data_type": "text"}])

    code, output = masking("drift")

    assert code == 1
    assert output.splitlines() == [
        "DRIFT shop/public.customers.phone: masked (phone) in prod (prod-pg); "
        "masked (full mask by default) in staging (staging-pg)",
        "1 column(s) drift between environments.",
    ]


def test_drift_finds_a_column_masked_in_one_environment_only(policy_world):
    staging = [dict(c) for c in CUSTOMER_COLUMNS]
    staging[3] = {"name": "notes", "data_type": "text", "classification_level": 3, "tags": ["sensitive"]}
    push_catalog("staging-pg", "staging", staging)

    code, output = masking("drift", "--format", "json", "--environments", "prod,staging")

    assert code == 1
    drift = json.loads(output)["drift"]
    assert [d["column"] for d in drift] == ["shop/public.customers.notes"]
    assert [(i["environment"], i["masked"]) for i in drift[0]["instances"]] == [
        ("prod", False),
        ("staging", True),
    ]
