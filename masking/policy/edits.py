"""Edits of a policy document, as the policy pages make them. Pure functions on documents.

Every page edits the live document (one item added, replaced, removed or moved) and sends the
result to review, so a form save, a move, a rollback and an applied file all go through the same
diff, confirmation and `policy_submit`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from masking.policy.document import section

Document = dict[str, list[dict[str, Any]]]


def upsert_item(
    document: Mapping[str, list[dict[str, Any]]], name: str, item: dict[str, Any], *, replacing: str | None
) -> Document:
    """Replace the item keyed `replacing` in place (its position kept), or add `item` at the end."""
    sec = section(name)
    result = copy.deepcopy(dict(document))
    items = result.setdefault(name, [])
    for index, existing in enumerate(items):
        if replacing is not None and sec.key(existing) == replacing:
            items[index] = item
            return result
    items.append(item)
    return result


def remove_item(document: Mapping[str, list[dict[str, Any]]], name: str, key: str) -> Document:
    sec = section(name)
    result = copy.deepcopy(dict(document))
    result[name] = [item for item in result.get(name, []) if sec.key(item) != key]
    return result


def move_item(document: Mapping[str, list[dict[str, Any]]], name: str, key: str, step: int) -> Document:
    """Swap an item with its neighbour in the same group (rules; one project's approval policies)."""
    sec = section(name)
    result = copy.deepcopy(dict(document))
    items = result.get(name, [])
    positions = {sec.key(item): index for index, item in enumerate(items)}
    if key not in positions:
        return result
    group = sec.group_of(items[positions[key]])
    peers = [index for index, item in enumerate(items) if sec.group_of(item) == group]
    at = peers.index(positions[key])
    if 0 <= at + step < len(peers):
        a, b = peers[at], peers[at + step]
        items[a], items[b] = items[b], items[a]
    return result


def find_item(document: Mapping[str, list[dict[str, Any]]], name: str, key: str) -> dict[str, Any] | None:
    sec = section(name)
    return next((item for item in document.get(name, []) if sec.key(item) == key), None)
