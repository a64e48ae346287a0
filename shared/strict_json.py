"""JSON input that can mean only one thing.

Python's `json` (and orjson) keep the last of two equal keys without a word, so
`{"principal": {"user": "alice"}, "principal": {"user": "bob"}}` is read as whatever the last one
says, and a proxy or log that reads the first sees another request. Veil refuses such input with
a 400 naming the key. It also refuses nesting deeper than `MAX_DEPTH` (nothing Veil reads comes
close) before anything walks it: a deep document overflowed Python's stack in the walkers that
read policy files. Used by the API's parser (`StrictJSONParser`), the decision endpoint and the
policy importers.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


class JSONInputError(ValueError):
    """JSON that parses, but not to one meaning: a duplicate key, too deep, or NaN/Infinity."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)  # built in C; a duplicate shows as fewer keys than pairs
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONInputError(f"duplicate key {key!r}")
            seen.add(key)
    return found


def _no_constant(name: str) -> None:
    raise JSONInputError(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON, refusing duplicate keys, NaN/Infinity and nesting deeper than `MAX_DEPTH`.
    Raises ValueError (json's own, or JSONInputError) with a message for the client."""
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except RecursionError:
        raise JSONInputError(f"is nested more than {MAX_DEPTH} levels deep") from None
    if _openings(text) > MAX_DEPTH:  # each level opens with its own bracket: fewer cannot nest deeper
        check_depth(value)
    return value


def _openings(text: str | bytes) -> int:
    """How many `[` and `{` the text holds (in strings too): a bound on its nesting, counted in C.
    The walk costs more than the parse (65 µs against 35 µs for a 20-column decision request)."""
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{")
    return text.count("[") + text.count("{")


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse lists and mappings nested more than `limit` deep, walking without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            raise JSONInputError(f"is nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with `loads`' refusals, answered as DRF's 400 parse error."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            return loads(codecs.getreader(encoding)(stream).read())
        except LookupError:
            raise ParseError(f"Unsupported charset {encoding!r} in request Content-Type header.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
