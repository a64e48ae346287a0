"""The canonical form of an event and its chained hash. Pure functions, shared by writer and verifier."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64


# An event's fields, written once: those its hash covers, in the order the writer inserts them and
# the verifier reads them, then the chain links. The export's columns and the API's are these.
HASHED_EVENT_FIELDS = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_repr",
    "project",
    "channel",
    "detail",
)
EVENT_FIELDS = (*HASHED_EVENT_FIELDS, "prev_hash", "hash")
_HASHED = frozenset(HASHED_EVENT_FIELDS)


def canonical_event(**fields: Any) -> bytes:
    """Serialise the hashed fields (every one of `HASHED_EVENT_FIELDS`, by name) deterministically:
    sorted keys, no whitespace, UTC ISO time.

    `occurred_at` may come already as that ISO text (the verifier has the database format it).
    """
    if fields.keys() != _HASHED:
        wrong = sorted(_HASHED.symmetric_difference(fields))
        raise TypeError(f"canonical_event needs exactly the hashed fields; wrong: {', '.join(wrong)}")
    occurred_at = fields["occurred_at"]
    if not isinstance(occurred_at, str):
        fields["occurred_at"] = occurred_at.isoformat(timespec="microseconds")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


# Decision records and access events are sealed into the chain in batches (see
# `audit.services.seal_decisions`): their canonical forms, in id order, are digested with SHA-256.
DECISION_RECORD_FIELDS = (
    "id",
    "recorded_at",
    "service_account",
    "principal_type",
    "principal_id",
    "principal_name",
    "query_id",
    "policy_version",
    "asserted_groups",
    "unmasked",
)
ACCESS_EVENT_FIELDS = (
    "id",
    "received_at",
    "occurred_at",
    "service_account",
    "principal_type",
    "principal",
    "query_id",
    "unmasked_columns",
    "masked_columns",
    "row_count",
    "fingerprint",
    "tool_call",
)
# Fields added after rows were first sealed: left out of a row's canonical form while empty, so a
# row written before they existed digests as it did then and its seal still verifies.
ADDED_LATER = frozenset({"fingerprint", "tool_call"})


def canonical_row(fields: tuple[str, ...], values: tuple[Any, ...]) -> bytes:
    """A row's canonical form: the named fields as sorted-key JSON, times as UTC ISO microseconds
    (fields in `ADDED_LATER` only when they hold something)."""
    body = {
        name: value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value
        for name, value in zip(fields, values, strict=True)
        if name not in ADDED_LATER or value
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_json(value: Any) -> bytes:
    """What is signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
