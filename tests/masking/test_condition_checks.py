"""Condition checks (`masking.decisions.cel.check_condition`): messages that tell an admin what to fix.

Comparisons whose types can never match are refused (CEL never converts between types, so
`request.duration_hours == "x"` is always false), an unknown field lists the known ones for any
variable, and a CEL parse error becomes a sentence that keeps CEL's own detail.
"""

from __future__ import annotations

import pytest

from masking.decisions.cel import RESOURCE, ConditionError, ConditionVariable, check_condition

# A request-like variable, as approval policies describe theirs (jitaccess.policy.matching.REQUEST_FIELDS).
REQUEST = ConditionVariable(
    "request",
    {
        "environment_id": "Environment",
        "classification_level": "Highest level in scope, an int",
        "duration_hours": "Requested duration in hours, a double",
        "requester_roles": "Roles of the requester, a list of strings",
    },
    (
        {
            "environment_id": "prod",
            "classification_level": 3,
            "duration_hours": 2.0,
            "requester_roles": ["engineers"],
        },
    ),
)


def refusal(expression: str, variable: ConditionVariable = RESOURCE) -> str:
    with pytest.raises(ConditionError) as refused:
        check_condition(expression, variable)
    return str(refused.value)


@pytest.mark.parametrize(
    "expression",
    [
        'request.duration_hours == "x"',
        '"x" == request.duration_hours',
        'request.environment_id == "prod" && request.duration_hours == "4"',
        "request.requester_roles == 'admins'",
        'request.classification_level in ["3", "4"]',
        "3 in request.requester_roles",
    ],
)
def test_a_comparison_whose_types_never_match_is_refused(expression):
    message = refusal(expression, REQUEST)

    assert "CEL does not convert between types" in message
    assert "never true" in message


def test_the_refusal_names_both_types_and_suggests_the_fix():
    number = refusal('request.duration_hours == "4"', REQUEST)
    text = refusal("resource.classification_level == 3")

    assert number.startswith(
        '`request.duration_hours == "4"` compares request.duration_hours, a number, with a string'
    )
    assert number.endswith("(write 4, without quotes)")
    assert "resource.classification_level, a string, with a number" in text
    assert text.endswith('(write "3")')


def test_not_equal_across_types_is_always_true_and_an_ordering_cannot_be_evaluated():
    assert "so it is always true" in refusal('request.duration_hours != "x"', REQUEST)
    assert "so it cannot be evaluated" in refusal('request.duration_hours > "x"', REQUEST)


@pytest.mark.parametrize(
    "expression",
    [
        "request.duration_hours <= 4",
        "request.duration_hours <= 4.5 && request.classification_level >= 3",
        "request.classification_level == -1",
        '"engineers" in request.requester_roles',
        'request.environment_id in ["prod", "staging"]',
        "size(request.environment_id) == 4",
        "request.environment_id.size() == 4",
        'request.environment_id == "prod" ? request.duration_hours < 4.0 : true',
        'request.requester_roles.exists(r, r == "sre")',
    ],
)
def test_comparisons_of_matching_types_pass(expression):
    check_condition(expression, REQUEST)


@pytest.mark.parametrize(
    "expression",
    [
        'resource.classification_level == "3"',
        'resource.column_name in ["email", "mail"]',
        '"pii" in resource.tags',
        'resource.column_name.matches("(^|_)email$")',
        'resource.column_name == "a" + "b"',
    ],
)
def test_rule_conditions_of_matching_types_pass(expression):
    check_condition(expression)


def test_an_unknown_request_field_lists_the_known_ones_like_the_rule_check():
    message = refusal("request.nonsense == 1", REQUEST)

    assert message == (
        "unknown field(s) request.nonsense; "
        "known: environment_id, classification_level, duration_hours, requester_roles"
    )
    assert "cannot be evaluated" not in message


def test_a_type_error_only_the_evaluation_finds_is_still_reported():
    message = refusal("request.duration_hours + 1 > 2", REQUEST)

    assert message.startswith("cannot be evaluated: Unsupported operation: float + int")


@pytest.mark.parametrize(
    ("expression", "sentence"),
    [
        (
            "resource.column_name ==",
            "is not valid CEL: the condition ends too early, something is missing at column 24",
        ),
        ('resource.column_name == "email', "is not valid CEL: a quoted string is not closed at column 25"),
        (
            'resource.column_name = "email"',
            "is not valid CEL: `=` is not a comparison (use `==`) at column 22",
        ),
        ('resource.column_name == "a" resource', "is not valid CEL: 'resource' follows a complete condition"),
    ],
)
def test_a_parse_error_is_a_sentence_that_keeps_the_cel_detail(expression, sentence):
    message = refusal(expression)

    assert message.startswith(sentence)
    assert "(CEL: Syntax error: " in message, "CEL's own words are kept"
    assert "Failed to parse expression" not in message and "<input>" not in message


def test_a_parse_error_on_a_later_line_names_the_line():
    message = refusal('resource.column_name == "email" &&\n  resource.table_name ==')

    assert "at line 2, column " in message
