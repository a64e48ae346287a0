"""Masking inside free text (`redact_text`): recall and precision on a generated, labelled corpus
(tests/sdk/free_text_corpus.py), the checks a pattern alone cannot make, placeholders and keyed
pseudonyms, and validation. None of these tests needs the database.

Thresholds: every detector must find at least 99% of the labelled pieces (recall) and at least
99% of what it reports must be labelled (precision), per kind, on 2,000 notes (about 5,000
pieces and 4,000 look-alikes). The corpus is written in the formats the detectors promise to
find, so anything lower is a regression, not noise; the 1% left is for a generated look-alike
that happens to pass a checksum (a random tracking number passes mod-97 one time in 97), which a
new seed or template may produce without any change to the detectors. The look-alikes are hard
on purpose: card numbers one Luhn digit off, IBANs with a wrong checksum, never-issued SSNs,
dates, times, versions, IP addresses, UUIDs and commit hashes.
"""

from __future__ import annotations

from collections import Counter

import pytest
from veil_sdk import algorithms, free_text
from veil_sdk.algorithms import AlgorithmError, compile, validate

from tests.sdk.free_text_corpus import KINDS, card, corpus, iban, ssn

KEYS = {"notes": b"a key the data-access layer holds", "other": b"another key"}
MIN_RECALL = 0.99
MIN_PRECISION = 0.99


@pytest.fixture(scope="module")
def scored() -> dict[str, tuple[float, float, int]]:
    """(recall, precision, labelled pieces) per kind over the corpus."""
    found_right, missed, wrong = Counter[str](), Counter[str](), Counter[str]()
    for note in corpus(2000):
        found = set(free_text.find(note.text))
        labelled = set(note.spans)
        for kind, *_ in labelled & found:
            found_right[kind] += 1
        for kind, *_ in labelled - found:
            missed[kind] += 1
        for kind, *_ in found - labelled:
            wrong[kind] += 1
    return {
        kind: (
            found_right[kind] / (found_right[kind] + missed[kind]),
            found_right[kind] / max(1, found_right[kind] + wrong[kind]),
            found_right[kind] + missed[kind],
        )
        for kind in KINDS
    }


@pytest.mark.parametrize("kind", KINDS)
def test_each_detector_finds_what_the_corpus_labels(scored, kind):
    recall, precision, labelled = scored[kind]
    assert labelled > 500  # the corpus exercises the kind enough for the ratio to mean something
    assert recall >= MIN_RECALL, f"{kind}: recall {recall:.4f}"
    assert precision >= MIN_PRECISION, f"{kind}: precision {precision:.4f}"


def test_a_note_is_redacted_piece_by_piece_and_the_rest_is_kept():
    mask = compile({"type": "redact_text"})
    note = (
        "Call +44 20 7946 0958 or mail Jo.Smith@example.com; card 4111 1111 1111 1111, "
        "SSN 123-45-6789, IBAN GB82 WEST 1234 5698 7654 32, api_key=sk_live_abcdefghijklmnop1234. "
        "Order 123456789 on 2024-01-15 at 10:22, version 1.2.3."
    )
    assert mask(note) == (
        "Call <PHONE> or mail <EMAIL>; card <CARD>, SSN <NATIONAL_ID>, IBAN <IBAN>, "
        "api_key=<SECRET>. Order 123456789 on 2024-01-15 at 10:22, version 1.2.3."
    )


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("card 4111 1111 1111 1111", True),
        ("card 4111 1111 1111 1112", False),  # Luhn digit wrong
        ("card 9111 1111 1111 1119", False),  # Luhn right, no issuer starts with 9
        ("card 4111 1111-1111 1111", False),  # mixed separators: several numbers
        ("IBAN GB82 WEST 1234 5698 7654 32", True),
        ("IBAN GB83 WEST 1234 5698 7654 32", False),  # checksum wrong
        ("IBAN GB82 WEST 1234 5698 7654 3", False),  # too short for GB
        ("IBAN JD82 1234 5678 9012 34", False),  # no such country
        ("SSN 123-45-6789", True),
        ("SSN 000-45-6789", False),  # area 000 is never issued
        ("SSN 666-45-6789", False),
        ("SSN 123-00-6789", False),
        ("NI AB 12 34 56 C", True),
        ("NI GB 12 34 56 C", False),  # a prefix HMRC never issues
        ("call 555-123-4567", True),
        ("call 123456", False),  # a bare short run is no phone
        ("the monkey: abcdefghijkl", False),  # a label inside another word
        ("password: hunter2hunter2", True),
    ],
)
def test_checks_a_pattern_alone_cannot_make(text, found):
    assert bool(free_text.find(text)) is found


def test_overlapping_pieces_are_replaced_as_one_and_none_is_left_in_clear():
    mask = compile({"type": "redact_text"})
    assert mask("token: 4111 1111 1111 1111 end") == "token: <CARD> end"


def test_detect_limits_what_is_replaced():
    mask = compile({"type": "redact_text", "detect": ["email"]})
    assert mask("jo@example.com +1-555-0101") == "<EMAIL> +1-555-0101"


def test_pseudonyms_are_keyed_deterministic_and_ignore_formatting():
    algorithm = {"type": "redact_text", "replace": "pseudonym", "key_id": "notes"}
    mask = compile(algorithm, keys=KEYS)
    first = mask("card 4111 1111 1111 1111 from Jo@Example.com")
    assert first == mask("card 4111-1111-1111-1111 from jo@example.com")  # same card, same person
    assert first.startswith("card <CARD:") and "<EMAIL:" in first
    assert mask("card 5555 5555 5555 4444") != mask("card 4111 1111 1111 1111")
    other_key = compile({**algorithm, "key_id": "other"}, keys=KEYS)
    assert other_key("jo@example.com") != mask("jo@example.com")
    assert len(compile({**algorithm, "length": 20}, keys=KEYS)("jo@example.com")) == len("<EMAIL:>") + 20


def test_a_pseudonym_without_its_key_does_not_compile():
    with pytest.raises(AlgorithmError, match="key 'missing' is not available"):
        compile({"type": "redact_text", "replace": "pseudonym", "key_id": "missing"}, keys=KEYS)


def test_values_that_are_not_text_follow_the_shared_rules():
    mask = compile({"type": "redact_text"})
    assert mask(None) == algorithms.FULL_MASK  # as every partial algorithm masks NULL
    assert mask(4111111111111111) == "<CARD>"  # a number's text form is searched too
    assert mask(b"mail jo@example.com") == "mail <EMAIL>"


@pytest.mark.parametrize(
    ("algorithm", "message"),
    [
        ({"type": "redact_text", "detect": []}, "detect: must be a non-empty list"),
        ({"type": "redact_text", "detect": "email"}, "detect: must be a non-empty list"),
        ({"type": "redact_text", "detect": ["email", "name"]}, r"detect\[1\]: unknown detector 'name'"),
        ({"type": "redact_text", "detect": ["email", "email"]}, "detect: names a detector twice"),
        ({"type": "redact_text", "replace": "hash"}, "replace: must be 'placeholder' or 'pseudonym'"),
        ({"type": "redact_text", "replace": "pseudonym"}, "key_id: is required"),
        ({"type": "redact_text", "key_id": "notes"}, "key_id: is only accepted with replace 'pseudonym'"),
        ({"type": "redact_text", "replace": "pseudonym", "key_id": "k", "length": 4}, "length: must be"),
        ({"type": "redact_text", "key": "raw secret"}, "key: unknown field"),
    ],
)
def test_validate_names_the_field_at_fault(algorithm, message):
    with pytest.raises(AlgorithmError, match=message):
        validate(algorithm)


def test_redact_text_is_listed_among_the_algorithm_types():
    assert "redact_text" in algorithms.ALGORITHM_TYPES


def test_generated_lookalikes_really_fail_their_checks():
    """The corpus's negatives are what they claim (otherwise precision would be flattered)."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        assert not free_text.find(f"x {card(rng, valid=False)} x", ("card",))
        assert not free_text.find(f"x {iban(rng, valid=False)} x", ("iban",))
        assert not free_text.find(f"x {ssn(rng, valid=False)} x", ("national_id",))
