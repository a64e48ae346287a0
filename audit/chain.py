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
    occurred_at: datetime,
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
    """Serialise the hashed fields deterministically (sorted keys, no whitespace, UTC ISO time)."""
    body = {
        "seq": seq,
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
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
