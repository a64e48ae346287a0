"""The canonical form of an event and its chained hash. Pure functions, shared by writer and verifier."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_event(
    *,
    seq: int,
    occurred_at: datetime | str,
    actor_type: str,
    actor_id: str,
    actor_name: str,
    action: str,
    target_type: str,
    target_id: str,
    target_repr: str,
    project: str,
    channel: str,
    detail: Any,
) -> bytes:
    """Serialise the hashed fields deterministically (sorted keys, no whitespace, UTC ISO time).

    `occurred_at` may come already as that ISO text (the verifier has the database format it).
    """
    body = {
        "seq": seq,
        "occurred_at": occurred_at
        if isinstance(occurred_at, str)
        else occurred_at.isoformat(timespec="microseconds"),
        "actor_type": actor_type,
        "actor_id": actor_id,
        "actor_name": actor_name,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "target_repr": target_repr,
        "project": project,
        "channel": channel,
        "detail": detail,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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
