"""The only writer of the audit log.

Call `record_event` inside the transaction of the change it records: if the event cannot be
written the whole change rolls back, so nothing happens that the log does not show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from audit.chain import canonical_event, chain_hash
from audit.models import AccessEvent, ActorType, AuditEvent, ChainHead, DecisionRecord


@dataclass(frozen=True)
class Actor:
    """Who acted, as plain values so `audit` needs no other app's models."""

    type: str
    id: str = ""
    name: str = ""


SYSTEM = Actor(type=ActorType.SYSTEM, id="veil", name="Veil")
ANONYMOUS = Actor(type=ActorType.ANONYMOUS)


@dataclass(frozen=True)
class Target:
    type: str
    id: str
    repr: str = ""


def _jsonable(detail: dict[str, Any] | None) -> dict[str, Any]:
    """Normalise detail to what the JSON column gives back, so the stored row re-hashes the same."""
    return json.loads(json.dumps(detail or {}, cls=DjangoJSONEncoder))


@transaction.atomic
def record_event(
    *,
    action: str,
    actor: Actor,
    channel: str,
    target: Target | None = None,
    project: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain.

    Locking contract: takes the chain head FOR UPDATE, so concurrent writers append one at a time
    and the chain order is the commit order. Hold the lock briefly: call this last in a transaction.
    """
    head, _ = ChainHead.objects.select_for_update().get_or_create(id=1)
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "occurred_at": timezone.now(),
        "actor_type": actor.type,
        "actor_id": actor.id[:255],
        "actor_name": actor.name[:255],
        "action": action,
        "target_type": target.type if target else "",
        "target_id": str(target.id)[:255] if target else "",
        "target_repr": target.repr[:500] if target else "",
        "project": project,
        "channel": channel,
        "detail": _jsonable(detail),
    }
    digest = chain_hash(head.hash, canonical_event(**fields))
    event = AuditEvent.objects.create(prev_hash=head.hash, hash=digest, **fields)
    head.seq, head.hash = event.seq, digest
    head.save(update_fields=["seq", "hash"])
    return event


def record_unmask_decisions(
    *,
    service_account: str,
    principal_type: str,
    principal_id: str,
    principal_name: str,
    query_id: str,
    policy_version: int,
    asserted_groups: list[str],
    unmasked: list[dict[str, Any]],
) -> DecisionRecord:
    """One INSERT holding every unmask answer of one decision request. Raises if it cannot be
    written; the caller must then answer mask (an unmask is never sent unrecorded)."""
    return DecisionRecord.objects.create(
        recorded_at=timezone.now(),
        service_account=service_account,
        principal_type=principal_type,
        principal_id=principal_id,
        principal_name=principal_name[:255],
        query_id=query_id,
        policy_version=policy_version,
        asserted_groups=asserted_groups,
        unmasked=unmasked,
    )


def record_access_events(*, service_account: str, events: list[dict[str, Any]]) -> int:
    """Store a batch of what a data-access layer returned, in one INSERT. Returns how many."""
    now = timezone.now()
    AccessEvent.objects.bulk_create(
        [AccessEvent(received_at=now, service_account=service_account, **event) for event in events]
    )
    return len(events)
