"""`masking.algorithms.describe`: every algorithm type in words, and never a secret."""

from __future__ import annotations

import pytest
from veil_sdk.algorithms import ALGORITHM_TYPES

from masking.algorithms import describe

CASES = [
    ({"type": "full"}, "Full: ******"),
    ({"type": "full", "substitution": "[hidden]"}, "Full: [hidden]"),
    ({"type": "full", "substitution": ""}, "Full: empty text"),
    (
        {"type": "range", "slices": [{"start": 0, "end": 3}, {"start": -5, "end": -1, "substitution": "#"}]},
        "Range: mask [0, 3) with '*', [end-4, end) with '#'",
    ),
    ({"type": "md5", "salt": "demo-salt"}, "MD5 with salt"),
    ({"type": "md5"}, "MD5 without salt"),
    ({"type": "inner", "prefix_len": 1, "suffix_len": 1}, "Keep first 1 and last 1, '*' between"),
    (
        {"type": "outer", "prefix_len": 2, "suffix_len": 3, "substitution": "X"},
        "Mask first 2 and last 3 with 'X', keep the middle",
    ),
    ({"type": "default_partial"}, "Default partial: the middle half between ** and **"),
    ({"type": "email"}, "Email: first character and domain (a****@example.com)"),
    ({"type": "show_first", "n": 3}, "Show first 3, '*' for the rest"),
    ({"type": "show_last", "n": 4, "substitution": "•"}, "Show last 4, '•' for the rest"),
    ({"type": "null"}, "NULL"),
    ({"type": "date_year"}, "Year only"),
    ({"type": "pseudonym", "key_id": "prod-2024"}, "Pseudonym: 16 hex digits (keyed HMAC-SHA256)"),
    (
        {"type": "pseudonym", "key_id": "prod-2024", "length": 12, "prefix": "cus_"},
        "Pseudonym: 'cus_' + 12 hex digits (keyed HMAC-SHA256)",
    ),
    ({"type": "redact_text"}, "Free text: all detectors replaced by placeholders"),
    (
        {"type": "redact_text", "detect": ["email", "phone"], "replace": "pseudonym", "key_id": "notes"},
        "Free text: email, phone replaced by keyed pseudonyms",
    ),
]


@pytest.mark.parametrize(("algorithm", "label"), CASES, ids=[str(a) for a, _ in CASES])
def test_each_algorithm_is_described_in_words(algorithm, label):
    assert describe(algorithm) == label


def test_every_algorithm_type_has_a_case_here():
    assert {a["type"] for a, _ in CASES} == set(ALGORITHM_TYPES)


def test_no_label_shows_a_salt_or_a_key_id():
    assert "demo-salt" not in describe({"type": "md5", "salt": "demo-salt"})
    assert "prod-2024" not in describe({"type": "pseudonym", "key_id": "prod-2024", "prefix": "p_"})


@pytest.mark.parametrize(
    ("algorithm", "label"),
    [
        ({}, "Invalid algorithm (type: is required)"),
        ({"type": "show_last"}, "Invalid algorithm (n: is required)"),
        ({"type": "md5", "salt": "s3cret", "sault": "s3cret"}, "Invalid algorithm (sault: unknown field"),
        ("not a mapping", "Invalid algorithm (algorithm: must be a JSON object)"),
    ],
)
def test_an_invalid_algorithm_is_labelled_without_its_values(algorithm, label):
    described = describe(algorithm)

    assert described.startswith(label)
    assert "s3cret" not in described
