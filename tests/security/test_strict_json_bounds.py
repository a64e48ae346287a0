"""`shared.strict_json.loads` walks a document for its depth only when the text holds more than
`MAX_DEPTH` opening brackets (the walk cost twice the parse on every decision request), and finds
duplicate keys by comparing the built dict's size with its pairs. Both short cuts must refuse
exactly what the full checks refused."""

from __future__ import annotations

import pytest

from shared.strict_json import MAX_DEPTH, JSONInputError, loads


def _nested(levels: int) -> str:
    return "[" * (levels - 1) + '{"a": 1}' + "]" * (levels - 1)


@pytest.mark.parametrize("encode", [str, lambda s: s.encode(), lambda s: s.encode("utf-16")])
def test_the_deepest_allowed_document_parses_and_one_level_more_is_refused(encode):
    assert loads(encode(_nested(MAX_DEPTH)))

    with pytest.raises(JSONInputError, match=f"nested more than {MAX_DEPTH} levels"):
        loads(encode(_nested(MAX_DEPTH + 1)))


def test_brackets_inside_strings_take_the_walk_and_a_shallow_document_still_parses():
    text = '{"column": "' + "[{" * MAX_DEPTH + '"}'

    assert loads(text) == {"column": "[{" * MAX_DEPTH}


def test_a_deep_document_with_a_shallow_start_is_refused():
    text = '{"columns": [' + ", ".join(['{"a": 1}'] * 40) + "], " + '"deep": ' + _nested(MAX_DEPTH) + "}"

    with pytest.raises(JSONInputError, match="nested more than"):
        loads(text)


@pytest.mark.parametrize(
    "text", ['{"a": 1, "b": 2, "a": 1}', '{"x": [{"c": 1, "c": 1}]}', '{"a": {"b": 1}, "a": {"b": 1}}']
)
def test_a_duplicate_key_is_named_wherever_it_is(text):
    with pytest.raises(JSONInputError) as refused:
        loads(text)

    assert str(refused.value) in ("duplicate key 'a'", "duplicate key 'c'")
